import Foundation
import LoraBase
import XCTest

@testable import LoraText

/// SEQ_CLS JSONL: line shapes, label resolution over a run's files, targets and errors.
final class ClassificationDataTests: XCTestCase {
    func records(_ lines: [String], file: String = "t.jsonl", requireLabel: Bool = true) throws -> [ClassificationRecord] {
        try lines.enumerated().map {
            try ClassificationData.parse(Array($0.element.utf8), file: file, line: $0.offset + 1, requireLabel: requireLabel)
        }
    }

    func message(_ body: () throws -> Void) -> String {
        do { try body() } catch { return "\(error)" }
        return "(no error)"
    }

    func testLineShapes() throws {
        let r = try records([#"{"text": "好看", "label": "positive"}"#, #"{"text": "a", "text_pair": "b", "label": 2}"#,
                             #"{"text": "a", "label": 0.5}"#, #"{"text": "a", "label": [1, 0.0, 1]}"#,
                             #"{"input_ids": [5, 6], "label": 1.0, "extra": true}"#])
        XCTAssertEqual(r[0].label, .name("positive"))
        XCTAssertEqual(r[0].text, "好看")
        XCTAssertEqual(r[1].textPair, "b")
        XCTAssertEqual(r[1].label, .integer(2))
        XCTAssertEqual(r[2].label, .number(0.5))
        XCTAssertEqual(r[3].label, .list([1, 0, 1]))
        XCTAssertEqual(r[4].inputIDs, [5, 6])
        XCTAssertEqual(r[4].label, .number(1), "1.0 is a number (Python's json gives a float: run_glue's regression)")
        XCTAssertNil(try records([#"{"text": "x"}"#], requireLabel: false)[0].label)
    }

    func testBadLinesNameTheLineAndTheField() {
        let cases: [(String, String)] = [
            (#"{"text": "x"}"#, #"t.jsonl:1: no "label""#),
            (#"{"text": "x", "label": true}"#, #"t.jsonl:1: "label" must be a class name, a class id, a number (regression) or a list of numbers (multi-label), got true"#),
            (#"{"text": "x", "label": ""}"#, "must be a class name"),
            (#"{"text": "x", "label": []}"#, "must be a class name"),
            (#"{"text": "x", "label": [1, "a"]}"#, #""label" list must hold numbers only"#),
            (#"{"label": 1}"#, #"no "text" (or "input_ids")"#),
            (#"{"text": 3, "label": 1}"#, #""text" must be a string"#),
            (#"{"text": "a", "text_pair": 3, "label": 1}"#, #""text_pair" must be a string"#),
            (#"{"input_ids": [1, -2], "label": 1}"#, "input_ids[1] = -2 is not a token id"),
            (#"{"input_ids": [], "label": 1}"#, #""input_ids" must be a non-empty list"#),
            (#"[1]"#, "not a JSON object"),
            (#"{"text": "a", "label": 1"#, "t.jsonl:1:"),
        ]
        for (line, expected) in cases {
            let m = message { _ = try self.records([line]) }
            XCTAssertTrue(m.contains(expected), "\(line): \(m)")
        }
    }

    func testLabelsOverTheRunsFiles() throws {
        // Names: sorted over every file (a class seen only in validation still gets its id).
        let train = try records([#"{"text": "a", "label": "正面"}"#, #"{"text": "b", "label": "负面"}"#])
        let val = try records([#"{"text": "c", "label": "neutral"}"#], file: "v.jsonl")
        let names = try ClassificationData.labels([("t.jsonl", train), ("v.jsonl", val)])
        XCTAssertEqual(names, ClassificationLabels(kind: .singleLabel, names: ["neutral", "正面", "负面"]))
        XCTAssertEqual(ClassificationData.target(train[1], names), .classID(2))
        // Ids: 0…max; -100 skips a line.
        let ids = try records([#"{"text": "a", "label": 0}"#, #"{"text": "b", "label": 3}"#, #"{"text": "c", "label": -100}"#])
        XCTAssertTrue(message { _ = try ClassificationData.labels([("t.jsonl", [ids[2]])]) }.contains("every label is -100"))
        let l = try ClassificationData.labels([("t.jsonl", ids)])
        XCTAssertEqual(l.names, ["LABEL_0", "LABEL_1", "LABEL_2", "LABEL_3"])
        // A non-integer anywhere makes the run a regression (integers are values then).
        let reg = try records([#"{"text": "a", "label": 1}"#, #"{"text": "b", "label": 0.25}"#])
        let rl = try ClassificationData.labels([("t.jsonl", reg)])
        XCTAssertEqual(rl.kind, .regression)
        XCTAssertEqual(ClassificationData.target(reg[0], rl), .reals([1]))
        let multi = try ClassificationData.labels([("t.jsonl", try records([#"{"text": "a", "label": [1, 0]}"#]))])
        XCTAssertEqual(multi, ClassificationLabels(kind: .multiLabel, names: ["LABEL_0", "LABEL_1"]))
        // problem_type given: whole-number targets as a regression; lists of reals as a multi-output regression.
        let stars = try records([#"{"text": "a", "label": 1}"#, #"{"text": "b", "label": 5}"#])
        let sl = try ClassificationData.labels([("t.jsonl", stars)], problemType: .regression)
        XCTAssertEqual(sl, ClassificationLabels(kind: .regression, names: ["LABEL_0"]))
        XCTAssertEqual(ClassificationData.target(stars[1], sl), .reals([5]))
        let outputs = try records([#"{"text": "a", "label": [7, -2]}"#])
        XCTAssertEqual(try ClassificationData.labels([("t.jsonl", outputs)], problemType: .regression).kind, .regression)
        XCTAssertTrue(message { _ = try ClassificationData.labels([("t.jsonl", outputs)]) }
            .contains("t.jsonl:1: multi-label targets must lie in [0, 1] (binary cross-entropy), got 7.0"))
        XCTAssertTrue(message { _ = try ClassificationData.labels([("t.jsonl", stars)], problemType: .multiLabel) }
            .contains("problem_type multi_label_classification does not fit this label (a class id)"))
    }

    /// A label that does not fit the run's labels has no target (predict names its line).
    func testTargetsOutsideTheLabelsAreNil() throws {
        let labels = ClassificationLabels(kind: .singleLabel, names: ["a", "b"])
        let r = try records([#"{"text": "x", "label": 5}"#, #"{"text": "x", "label": [1, 0]}"#, #"{"text": "x", "label": "c"}"#,
                             #"{"text": "x", "label": 1}"#, #"{"text": "x", "label": -100}"#])
        XCTAssertEqual(r.map { ClassificationData.target($0, labels) }, [nil, nil, nil, .classID(1), .classID(-100)])
        let multi = ClassificationLabels(kind: .multiLabel, names: ["a", "b", "c"])
        XCTAssertNil(ClassificationData.target(r[1], multi), "a list of another length")
    }

    func testLabelErrors() throws {
        let mixed = try records([#"{"text": "a", "label": "x"}"#, #"{"text": "b", "label": 1}"#])
        XCTAssertEqual(message { _ = try ClassificationData.labels([("t.jsonl", mixed)]) },
                       "t.jsonl:2: label a class id, but t.jsonl:1 has a class name; every line of a run labels the same way")
        let lists = try records([#"{"text": "a", "label": [1, 0]}"#, #"{"text": "b", "label": [1]}"#])
        XCTAssertTrue(message { _ = try ClassificationData.labels([("t.jsonl", lists)]) }.contains("t.jsonl:2: label a list of 1 numbers"))
        let known = ClassificationLabels(kind: .singleLabel, names: ["negative", "neutral", "positive"])
        let typo = try records([#"{"text": "a", "label": "positive"}"#, #"{"text": "b", "label": "neutrl"}"#])
        XCTAssertEqual(message { _ = try ClassificationData.labels([("t.jsonl", typo)], known: known) },
                       "t.jsonl:2: label 'neutrl' is not one of the model's labels (id2label): negative, neutral, positive; did you mean 'neutral'?")
        let past = try records([#"{"text": "a", "label": 3}"#])
        XCTAssertEqual(message { _ = try ClassificationData.labels([("t.jsonl", past)], known: known) },
                       "t.jsonl:1: class id 3 is not below the model's num_labels 3")
        let negative = try records([#"{"text": "a", "label": 1}"#, #"{"text": "a", "label": -2}"#])
        XCTAssertTrue(message { _ = try ClassificationData.labels([("t.jsonl", negative)]) }.contains("class id -2 is negative"))
        let one = try records([#"{"text": "a", "label": "x"}"#])
        XCTAssertTrue(message { _ = try ClassificationData.labels([("t.jsonl", one)]) }.contains("at least two classes"))
        // The model's known labels are kept, in its order.
        XCTAssertEqual(try ClassificationData.labels([("t.jsonl", try records([#"{"text": "a", "label": "positive"}"#]))], known: known),
                       known)
    }

    func testSamplesTruncateAndSkipIgnoredLines() throws {
        let r = try records([#"{"input_ids": [1, 2, 3, 4, 5], "label": 1}"#, #"{"input_ids": [7], "label": -100}"#,
                             #"{"input_ids": [8, 9], "label": 0}"#])
        let labels = try ClassificationData.labels([("t.jsonl", r)])
        let tok = FakeTokenizer()
        let (samples, truncated) = try ClassificationData.samples(r, file: "t.jsonl", labels: labels, tokenizer: tok, maxSeqLen: 3)
        XCTAssertEqual(samples.map(\.inputIDs), [[1, 2, 3], [8, 9]])
        XCTAssertEqual(samples.map(\.classTarget), [.classID(1), .classID(0)])
        XCTAssertEqual(samples.map(\.line), [1, 3])
        XCTAssertEqual(samples.map(\.trainedTokens), [1, 1], "one read-out each")
        XCTAssertEqual(truncated, 1)
    }

    /// Pre-tokenized lines only; a text pair is refused by the protocol's default.
    struct FakeTokenizer: DataTokenizer {
        func encodeIDs(_ text: String, addSpecialTokens: Bool) throws -> [Int] { text.unicodeScalars.map { Int($0.value) % 50 } }
        func encodeOffsets(_ text: String) throws -> [TokenOffset] { [] }
        func decodeIDs(_ ids: [Int]) -> String { "" }
        var vocabularySize: Int { 50 }
        var eosID: Int? { nil }
        var padID: Int? { nil }
        var concurrencySafe: Bool { true }
    }

    func testTextPairsNeedAPairCapableTokenizer() throws {
        let r = try records([#"{"text": "ab", "text_pair": "c", "label": "x"}"#, #"{"text": "ab", "label": "y"}"#])
        let labels = try ClassificationData.labels([("t.jsonl", r)])
        XCTAssertTrue(message { _ = try ClassificationData.samples(r, file: "t.jsonl", labels: labels, tokenizer: FakeTokenizer(),
                                                                   maxSeqLen: 8) }.contains("cannot encode text pairs"))
        let single = try ClassificationData.samples([r[1]], file: "t.jsonl", labels: labels, tokenizer: FakeTokenizer(), maxSeqLen: 1)
        XCTAssertEqual(single.samples[0].inputIDs.count, 1)
    }
}

/// TOKEN_CLS JSONL: tags on words' first sub-tokens, label_all_tokens, -100, label lists.
final class TaggingDataTests: XCTestCase {
    func records(_ lines: [String]) throws -> [TaggedRecord] {
        try lines.enumerated().map { try TaggingData.parse(Array($0.element.utf8), file: "t.jsonl", line: $0.offset + 1) }
    }

    func message(_ body: () throws -> Void) -> String {
        do { try body() } catch { return "\(error)" }
        return "(no error)"
    }

    /// Words of two sub-tokens each ("ab" → [a, b]): a fake tokenizer that splits every word into its characters.
    struct CharTokenizer: DataTokenizer {
        func encodeIDs(_ text: String, addSpecialTokens: Bool) throws -> [Int] { text.unicodeScalars.map { Int($0.value) % 97 } }
        func encodeOffsets(_ text: String) throws -> [TokenOffset] { [] }
        func decodeIDs(_ ids: [Int]) -> String { "" }
        var vocabularySize: Int { 97 }
        var eosID: Int? { nil }
        var padID: Int? { nil }
        var concurrencySafe: Bool { true }
        func encodeWords(_ words: [String], maxLength: Int) throws -> (ids: [Int], wordIDs: [Int?], truncated: Bool) {
            var ids: [Int] = [], w: [Int?] = []
            for (i, word) in words.enumerated() { for s in word.unicodeScalars { ids.append(Int(s.value) % 97); w.append(i) } }
            let cut = ids.count > maxLength
            return (Array(ids.prefix(maxLength)), Array(w.prefix(maxLength)), cut)
        }
    }

    func testFirstSubTokenLabelAllTokensAndUntrainedWords() throws {
        let r = try records([#"{"tokens": ["ab", "c", "", "de"], "tags": ["B-PER", "O", "O", "B-LOC"]}"#,
                             #"{"tokens": ["xy", "z"], "ner_tags": [-100, 1]}"#])
        let names = try TaggingData.labels([("t.jsonl", [r[0]])])
        XCTAssertEqual(names, ["B-LOC", "B-PER", "O"], "sorted, as run_ner's get_label_list")
        let (s, _) = try TaggingData.samples([r[0]], file: "t.jsonl", labels: names, tokenizer: CharTokenizer(), maxSeqLen: 64)
        XCTAssertEqual(s[0].labels, [1, -100, 2, 0, -100], "a tag on each word's first sub-token; the empty word has none")
        XCTAssertEqual(s[0].trainedTokens, 3, "unshifted: every labelled token counts")
        let withInside = ["B-PER", "I-PER", "O"]
        let r2 = try records([#"{"tokens": ["ab", "cd"], "tags": ["B-PER", "O"]}"#])
        let (all, _) = try TaggingData.samples(r2, file: "t.jsonl", labels: withInside, tokenizer: CharTokenizer(), maxSeqLen: 64,
                                               labelAllTokens: true)
        XCTAssertEqual(all[0].labels, [0, 1, 2, 2], "label_all_tokens: B-PER's later sub-tokens get I-PER")
        let counted = try TaggingData.samplesCounting([r[0]], file: "t.jsonl", labels: names, tokenizer: CharTokenizer(), maxSeqLen: 64)
        XCTAssertEqual(counted.emptyWords, 1)
        // -100 in ner_tags leaves a word untrained, alongside class ids.
        let ids = try TaggingData.labels([("t.jsonl", [r[1]])], known: ["O", "B-X"])
        let (u, _) = try TaggingData.samples([r[1]], file: "t.jsonl", labels: ids, tokenizer: CharTokenizer(), maxSeqLen: 64)
        XCTAssertEqual(u[0].labels, [-100, -100, 1])
        // Truncation keeps the labels of the sub-tokens left.
        let (cut, n) = try TaggingData.samples([r[0]], file: "t.jsonl", labels: names, tokenizer: CharTokenizer(), maxSeqLen: 3)
        XCTAssertEqual(cut[0].labels, [1, -100, 2])
        XCTAssertEqual(n, 1)
    }

    func testLabelErrorsNameTheFile() throws {
        let one = try records([#"{"tokens": ["a"], "tags": ["O"]}"#])
        XCTAssertEqual(message { _ = try TaggingData.labels([("t.jsonl", one)]) }, "t.jsonl: every tag is 'O': a tagger needs at least two tags")
        let mixed = try records([#"{"tokens": ["a"], "tags": ["O"]}"#, #"{"tokens": ["a"], "tags": [1]}"#])
        XCTAssertTrue(message { _ = try TaggingData.labels([("t.jsonl", mixed)]) }
            .contains("t.jsonl:1: tag names here, class ids at t.jsonl:2"))
        let namesAndUntrained = try records([#"{"tokens": ["a", "b"], "ner_tags": ["B-X", -100]}"#, #"{"tokens": ["a"], "tags": ["O"]}"#])
        XCTAssertEqual(try TaggingData.labels([("t.jsonl", namesAndUntrained)]), ["B-X", "O"], "-100 sits alongside names")
        let known = ["B-LOC", "O"]
        let typo = try records([#"{"tokens": ["a"], "tags": ["B-LOK"]}"#])
        XCTAssertTrue(message { _ = try TaggingData.labels([("t.jsonl", typo)], known: known) }.contains("did you mean 'B-LOC'?"))
        XCTAssertTrue(message { _ = try self.records([#"{"tokens": ["a"], "tags": "O"}"#]) }.contains(#""tags" must be a list"#))
    }
}
