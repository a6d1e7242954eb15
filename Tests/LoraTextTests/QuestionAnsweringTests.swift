import Foundation
import LoraBase
@testable import LoraText
import XCTest

/// Extractive QA's data path against the real libraries (scripts/make_qa_fixtures.py): the QA
/// recipe's windows, start/end positions and context offsets from transformers' tokenizers; its
/// post-processing on fixed logits; SQuAD's exact match and F1 from torchmetrics.
final class QuestionAnsweringTests: XCTestCase {
    static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../Fixtures/qa/qa.json").standardized

    func records(_ doc: JSONValue) throws -> [QARecord] {
        let lines = try XCTUnwrap(doc["examples"]?.array).map { $0.serialized() }
        let path = try writeTempQA(lines.joined(separator: "\n"))
        return try QuestionAnsweringData.read(file: path)
    }

    func testFeaturesPredictionsAndScoresEqualTheRecipes() throws {
        let doc = try JSONValue.parse(try Data(contentsOf: Self.fixture))
        let recs = try records(doc)
        XCTAssertEqual(recs.count, 10)
        XCTAssertEqual(recs[4].answers, [])
        var windows = 0, predictions = 0, crossed = 0, outside = 0, recipeFailed = 0
        for c in try XCTUnwrap(doc["cases"]?.array) {
            let name = c["tokenizer"]!.string!, L = c["max_length"]!.int!, S = c["stride"]!.int!
            let tok = try Tokenizer.load(directory: tokenizerFixturesRoot + "/" + name)
            let feats = try QuestionAnsweringData.features(recs, file: "qa.jsonl", tokenizer: TokenizerDataAdapter(tok),
                                                           maxSeqLen: L, docStride: S)
            let want = try XCTUnwrap(c["features"]?.array)
            XCTAssertEqual(feats.count, want.count, "\(name) \(L)/\(S): windows")
            for (k, (f, w)) in zip(feats, want).enumerated() {
                let what = "\(name) \(L)/\(S) feature \(k)"
                XCTAssertEqual(f.record, w["example"]!.int!, what)
                XCTAssertEqual(f.inputIDs, w["input_ids"]!.array!.map { $0.int! }, what)
                // The recipe's positions where they are a span its post-processing can answer; else ours
                // (the fixture computes both from the library's offsets): walks kept inside the context,
                // a crossed pair (one character in byte pieces) swapped.
                let ours = w["lora_gpu_positions"]!.array!.map { $0.int! }
                XCTAssertEqual([f.start, f.end], ours, what)
                if let s = w["start_position"]!.int, let e = w["end_position"]!.int {
                    if s > e && [e, s] == ours { crossed += 1 } else if [s, e] != ours { outside += 1 }
                } else {
                    recipeFailed += 1
                }
                if f.start != 0 || f.end != 0 {
                    XCTAssertTrue(f.start <= f.end && f.contextOffsets[f.start] != nil && f.contextOffsets[f.end] != nil,
                                  "\(what): the span lies in the context")
                }
                let offsets = w["offsets"]!.array!.map { o -> Range<Int>? in o.isNull ? nil : o[0]!.int!..<o[1]!.int! }
                XCTAssertEqual(f.contextOffsets, offsets, what)
                windows += 1
            }
            // The recipe's post-processing on the fixture's logits.
            let starts = c["start_logits"]!.array!.map { $0.array!.map { Float($0.double!) } }
            let ends = c["end_logits"]!.array!.map { $0.array!.map { Float($0.double!) } }
            for post in c["postprocess"]!.array! {
                let v2 = post["version_2_with_negative"]!.bool!, nBest = post["n_best_size"]!.int!
                let maxLen = post["max_answer_length"]!.int!
                let expected = post["predictions"]!.array!.map { $0.string! }
                for (r, rec) in recs.enumerated() {
                    let ws = feats.indices.filter { feats[$0].record == r }.map {
                        QAPrediction.Window(start: starts[$0], end: ends[$0], contextOffsets: feats[$0].contextOffsets)
                    }
                    let a = QAPrediction.answer(context: rec.context!, windows: ws, allowNoAnswer: v2, nBest: nBest, maxAnswerLength: maxLen)
                    XCTAssertEqual(a.text, expected[r], "\(name) \(L)/\(S) v2=\(v2) n_best=\(nBest) max=\(maxLen) \(rec.id)")
                    predictions += 1
                }
            }
        }
        XCTAssertEqual(windows, 379)
        XCTAssertEqual(crossed, 12, "the one-character answer in byte pieces, in every tokenizer and length")
        XCTAssertEqual(outside, 3, "roberta: the recipe's start on the trailing </s>")
        XCTAssertEqual(recipeFailed, 3, "qwen2: the recipe's end walk runs through the question and raises")
        XCTAssertEqual(predictions, 12 * 4 * 10)
        let pairs = try XCTUnwrap(doc["squad_pairs"]?.array)
        for p in pairs {
            let pred = p["prediction"]!.string!, golds = p["answers"]!.array!.map { $0.string! }
            let s = SQuADScores.score(predictions: [pred], answers: [golds])
            XCTAssertEqual(s.exactMatch, p["exact_match"]!.double!, accuracy: 1e-4, "EM \(pred.debugDescription)")
            XCTAssertEqual(s.f1, p["f1"]!.double!, accuracy: 1e-4, "F1 \(pred.debugDescription)")
        }
        let all = SQuADScores.score(predictions: pairs.map { $0["prediction"]!.string! },
                                    answers: pairs.map { $0["answers"]!.array!.map { $0.string! } })
        XCTAssertEqual(all.exactMatch, doc["squad_all"]!["exact_match"]!.double!, accuracy: 1e-3)
        XCTAssertEqual(all.f1, doc["squad_all"]!["f1"]!.double!, accuracy: 1e-3)
    }

    func testBadLinesNameTheLineAndField() throws {
        func message(_ line: String) -> String {
            let path = try! writeTempQA(line)
            do { _ = try QuestionAnsweringData.read(file: path); return "no error" } catch {
                XCTAssertTrue("\(error)".hasPrefix(path + ":1:"), "names the file and line: \(error)")
                return "\(error)"
            }
        }
        XCTAssertTrue(message(#"{"question": "q", "context": "abc", "answers": {"text": ["bc"], "answer_start": [0]}}"#)
            .contains("the context there reads \"ab\", not the answer \"bc\""))
        XCTAssertTrue(message(#"{"question": "q", "context": "abc", "answers": {"text": ["bc"], "answer_start": [2]}}"#)
            .contains("past the context's 3 characters"))
        XCTAssertTrue(message(#"{"question": "q", "context": "abc"}"#).contains("no \"answers\""))
        XCTAssertTrue(message(#"{"text": "q"}"#).contains("keys here: text"))
        XCTAssertTrue(message(#"{"input_ids": [1, 2, 3], "start_positions": 2, "end_positions": 1}"#).contains("before"))
        XCTAssertTrue(message(#"{"input_ids": [1, 2, 3], "start_positions": 3, "end_positions": 3}"#).contains("not a token position"))
        XCTAssertTrue(message(#"{"question": "q", "context": "abc", "answers": {"text": ["b"], "answer_start": [1]}}"#) == "no error")
        // A question that leaves no room for its context names the line.
        let tok = try Tokenizer.load(directory: tokenizerFixturesRoot + "/qwen2")
        let recs = try QuestionAnsweringData.read(file: try writeTempQA(
            #"{"question": "a rather long question with many words in it", "context": "short context here", "answers": {"text": [], "answer_start": []}}"#))
        XCTAssertThrowsError(try QuestionAnsweringData.features(recs, file: "f.jsonl", tokenizer: TokenizerDataAdapter(tok),
                                                                 maxSeqLen: 8, docStride: 2)) { e in
            XCTAssertTrue("\(e)".contains("f.jsonl:1") && "\(e)".contains("no room for the second"), "\(e)")
        }
    }
}

func writeTempQA(_ text: String) throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("qa-\(getpid())-\(UUID().uuidString).jsonl").path
    try text.write(toFile: path, atomically: true, encoding: .utf8)
    return path
}
