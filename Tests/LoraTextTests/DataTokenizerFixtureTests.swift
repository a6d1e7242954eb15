import Foundation
import LoraBase
import XCTest
@testable import LoraText

/// The whole dataset path on the fixture families with the real tokenizer: ids equal transformers'
/// apply_chat_template(tokenize=True), labels equal the hand-marked masks, one BOS, the end-of-turn
/// token trained even where it is the pad token.
final class DataTokenizerFixtureTests: XCTestCase {
    func family(_ name: String) throws -> (Tokenizer, TokenizerDataAdapter, ChatTemplateRenderer) {
        let dir = DataFixtures.root.appendingPathComponent(name).path
        let tok = try Tokenizer.load(directory: dir)
        guard let r = try ChatTemplateSelection.resolve(option: nil, tokenizer: tok) else {
            throw DatasetError.invalidOption("\(name): no chat template")
        }
        return (tok, TokenizerDataAdapter(tok), r)
    }

    func testIDsAndMasksEqualTransformersAndTheHandMarks() throws {
        let fixtures = try DataFixtures.masks()
        var checked = 0, checkedBOS = 0
        for (name, f) in fixtures["families"]!.object!.pairs {
            let (tok, adapter, r) = try family(name)
            let processor = SampleProcessor(tokenizer: adapter, template: r, options: DatasetOptions(), file: name)
            let last = SampleProcessor(tokenizer: adapter, template: r, options: DatasetOptions(trainOn: .last), file: name)
            for c in f["cases"]!.array! where c["error"] == nil {
                let conv = c["conversation"]!.string!
                let messages = DataFixtures.messages(c["messages"]!)
                let p = try processor.process(.conversation(messages), format: .messages, line: 1)
                let ids = c["input_ids"]!.array!.map { $0.int! }
                let labels = c["labels"]!.array!.map { $0.int! }
                XCTAssertEqual(p.sample.inputIDs, ids, "\(name)/\(conv): ids")
                XCTAssertEqual(p.sample.labels, labels, "\(name)/\(conv): labels")
                XCTAssertEqual(try last.process(.conversation(messages), format: .messages, line: 1).sample.labels,
                               c["labels_last"]!.array!.map { $0.int! }, "\(name)/\(conv): --train-on last")
                // Trap 2: where the post-processor adds a BOS and the template writes one, the ids hold
                // exactly one (tokenizing the rendered text with the post-processor doubles it).
                let withPost = c["ids_with_post_processor"]!.array!.map { $0.int! }
                if withPost != ids, let bos = tok.config.bosToken, let bosID = tok.tokenID(bos), c["rendered"]!.string!.hasPrefix(bos) {
                    XCTAssertEqual(Array(withPost.prefix(2)), [bosID, bosID], "\(name)/\(conv): the trap the fixture shows")
                    XCTAssertEqual(p.sample.inputIDs.first, bosID)
                    XCTAssertNotEqual(p.sample.inputIDs.dropFirst().first, bosID, "\(name)/\(conv): one BOS")
                    XCTAssertEqual(tok.encode(c["rendered"]!.string!, addSpecialTokens: true), withPost)
                    checkedBOS += 1
                }
                // Trap 1: every end-of-turn/EOS token inside a trained span is trained, pad or not.
                if let eos = adapter.eosID {
                    for (t, id) in p.sample.inputIDs.enumerated() where id == eos && labels[t] != -100 {
                        XCTAssertEqual(p.sample.labels[t], eos)
                    }
                }
                checked += 1
            }
            for t in f["texts"]!.array! {
                let text = t["text"]!.string!
                let p = try processor.process(.text(text), format: .text, line: 1)
                XCTAssertEqual(p.sample.inputIDs, t["input_ids"]!.array!.map { $0.int! }, "\(name): text \(text.debugDescription)")
                XCTAssertEqual(p.sample.labels, p.sample.inputIDs)
            }
        }
        XCTAssertGreaterThanOrEqual(checked, 50)
        XCTAssertGreaterThanOrEqual(checkedBOS, 20)
    }

    /// prompt/completion: with the template a user and an assistant turn; without one plain text
    /// with the post-processor's tokens, only the completion (and an appended EOS) trained.
    func testPromptCompletionWithAndWithoutTemplate() throws {
        let fixtures = try DataFixtures.masks()
        var checked = 0
        for (name, f) in fixtures["families"]!.object!.pairs {
            let (_, adapter, r) = try family(name)
            let chat = SampleProcessor(tokenizer: adapter, template: r, options: DatasetOptions(), file: name)
            let plain = SampleProcessor(tokenizer: adapter, template: nil, options: DatasetOptions(), file: name)
            for c in f["prompt_completion"]!.array! {
                let record = DatasetRecord.promptCompletion(prompt: c["prompt"]!.string!, completion: c["completion"]!.string!)
                let a = try chat.process(record, format: .promptCompletion, line: 1).sample
                XCTAssertEqual(a.inputIDs, c["chat_input_ids"]!.array!.map { $0.int! }, "\(name) chat ids")
                XCTAssertEqual(a.labels, c["chat_labels"]!.array!.map { $0.int! }, "\(name) chat labels")
                let b = try plain.process(record, format: .promptCompletion, line: 1).sample
                XCTAssertEqual(b.inputIDs, c["plain_input_ids"]!.array!.map { $0.int! }, "\(name) plain ids")
                XCTAssertEqual(b.labels, c["plain_labels"]!.array!.map { $0.int! }, "\(name) plain labels")
                checked += 1
            }
        }
        XCTAssertEqual(checked, 24)
    }

    /// A real template's raise_exception on a dataset line: file, line and the template's message.
    func testTemplateRejectionNamesTheLine() throws {
        let (_, adapter, r) = try family("llama2")
        let good = #"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}"#
        let bad = #"{"messages": [{"role": "user", "content": "Hi"}, {"role": "user", "content": "Again"}, {"role": "assistant", "content": "Yo"}]}"#
        let path = try writeTemp("llama2-bad.jsonl", [good, bad, good].joined(separator: "\n"))
        XCTAssertThrowsError(try Dataset.load(file: path, tokenizer: adapter, template: r, options: DatasetOptions())) { e in
            XCTAssertEqual("\(e)", "\(path):2: chat template 'chat_template': Conversation roles must alternate user/assistant/user/assistant/...")
        }
        let d = try Dataset.load(file: path, tokenizer: adapter, template: r, options: DatasetOptions(skipBadLines: true))
        XCTAssertEqual(d.samples.map(\.line), [1, 3])
        XCTAssertEqual(d.statistics.skipped, ["bad line": 1])
    }

    /// Lines spread over threads give exactly what one thread gives: samples, skips, statistics,
    /// previews, progress, and the first bad line's error (issue 22: loading on every CPU).
    func testLoadingOnSeveralThreadsEqualsOneThread() throws {
        let (_, adapter, r) = try family("qwen2")
        XCTAssertTrue(adapter.concurrencySafe && r.concurrencySafe)
        var lines: [String] = []
        for k in 0..<1_300 {
            let turns = (0..<(1 + k % 4)).map { t in
                #"{"role": "user", "content": "问题\#(k)-\#(t)？ Why \#(k)?"}, {"role": "assistant", "content": "答案 \#(k) \#(t)。"}"#
            }
            lines.append(k % 250 == 7 ? #"{"messages": [{"role": "user"}]}"# : #"{"messages": [\#(turns.joined(separator: ", "))]}"#)
        }
        let path = try writeTemp("threads.jsonl", lines.joined(separator: "\n"))
        var seen: [[Int]] = [[], []]
        func load(_ threads: Int, _ options: DatasetOptions) throws -> LoadedDataset {
            try Dataset.load(file: path, tokenizer: adapter, template: r, options: options, previewCount: 5, threads: threads) { done, _ in
                seen[threads == 1 ? 0 : 1].append(done)
            }
        }
        let skipping = DatasetOptions(maxSeqLen: 90, skipBadLines: true)
        let one = try load(1, skipping), many = try load(3, skipping)
        XCTAssertEqual(one.samples, many.samples)
        XCTAssertEqual(one.statistics.skipped["bad line"], 6)
        XCTAssertGreaterThan(one.statistics.truncated, 50, "max_seq_len cuts the longer conversations")
        XCTAssertEqual(one.skipped.map(\.line), many.skipped.map(\.line))
        XCTAssertEqual(one.skipped.map(\.reason), many.skipped.map(\.reason))
        XCTAssertEqual(one.statistics, many.statistics)
        XCTAssertEqual(one.previews.map(\.sample), many.previews.map(\.sample))
        XCTAssertEqual(seen[0], Array(0..<1_300))
        XCTAssertEqual(seen[1], seen[0])
        // Without skipping: the same first error, naming the first bad line.
        func error(_ threads: Int) -> String {
            do { _ = try load(threads, DatasetOptions()); return "no error" } catch { return "\(error)" }
        }
        XCTAssertEqual(error(1), error(3))
        XCTAssertTrue(error(3).hasPrefix("\(path):8: "), error(3))
    }

    /// Trap 1 with batching: SmolLM2's pad token is its end-of-turn token; padded rows mask the padding
    /// by position and keep every <|im_end|> of the replies trained.
    func testPadEqualsEndOfTurnStaysTrainedInBatches() throws {
        let (tok, adapter, r) = try family("smollm2")
        let imEnd = tok.tokenID("<|im_end|>")!
        XCTAssertEqual(adapter.padID, imEnd)
        let path = DataFixtures.root.appendingPathComponent("zh_pip.jsonl").path
        let d = try Dataset.load(file: path, tokenizer: adapter, template: r, options: DatasetOptions())
        for packing in [false, true] {
            let b = Batching.plan(d.samples, options: BatchingOptions(batchSize: 2, maxSeqLen: 256, packing: packing, padTokenID: imEnd), seed: 1, epoch: 0)
            let trainedEnds = b.flatMap { $0.labels.flatMap { $0 } }.filter { $0 == imEnd }.count
            XCTAssertEqual(trainedEnds, 4)  // two replies per conversation, one <|im_end|> each
            // Padding carries the same id and is masked by position.
            let maskedPads = b.flatMap { zip($0.inputIDs.joined(), $0.labels.joined()) }.filter { $0.0 == imEnd && $0.1 == -100 }.count
            XCTAssertGreaterThan(maskedPads, 0, "packing \(packing)")
        }
    }

    /// data preview on a real multi-turn Chinese conversation: the bracketed text is exactly the
    /// hand-marked trained pieces.
    func testPreviewOfChineseConversation() throws {
        let (_, adapter, r) = try family("qwen2")
        let path = DataFixtures.root.appendingPathComponent("zh_pip.jsonl").path
        let d = try Dataset.load(file: path, tokenizer: adapter, template: r, options: DatasetOptions(), previewCount: 3)
        XCTAssertEqual(d.previews.count, 2)
        let text = Preview.render(d.previews[0], tokenizer: adapter, style: .brackets)
        let marked = text.components(separatedBy: "«").dropFirst().map { String($0.prefix(while: { $0 != "»" })) }
        let qwen = try DataFixtures.masks()["families"]!["qwen2"]!["cases"]!.array!.first { $0["conversation"]!.string! == "zh_pip" }!
        XCTAssertEqual(marked, qwen["trained_pieces"]!.array!.map { $0.string! })
        XCTAssertTrue(text.hasPrefix("── line 1: 81 tokens, 26 trained\n<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n你好！<|im_end|>\n<|im_start|>assistant\n«Pip来啦！"), text)
        XCTAssertEqual(d.statistics.samples, 2)
    }
}

final class DataAlignmentTests: XCTestCase {
    /// Qwen2's NFC normalizer composes a decomposed accent: the ids are the tokenizer's, the text stays as
    /// written (the composed token stands for the "e", the combining mark joins the piece before it in the
    /// preview); a normalizer that rewrites more (the misc tokenizer's) masks by its offsets too.
    func testNormalizerThatRewritesTheText() throws {
        let tok = try Tokenizer.load(directory: DataFixtures.root.appendingPathComponent("qwen2").path)
        let r = try ChatTemplateSelection.resolve(option: nil, tokenizer: tok)!
        let line = #"{"messages": [{"role": "user", "content": "cafe\u0301?"}, {"role": "assistant", "content": "cafe\u0301!"}]}"#
        let d = try Dataset.load(file: try writeTemp("nfc.jsonl", line), tokenizer: TokenizerDataAdapter(tok), template: r,
                                 options: DatasetOptions(), previewCount: 1)
        let rendered = try r.renderConversation([ChatMessage(role: "user", content: "cafe\u{301}?"),
                                                 ChatMessage(role: "assistant", content: "cafe\u{301}!")], addGenerationPrompt: false)
        XCTAssertEqual(d.samples[0].inputIDs, tok.encode(rendered, addSpecialTokens: false))
        // Compared as scalars: Swift's String equality would take the composed form for the same text.
        XCTAssertEqual(Preview.pieces(d.previews[0], tokenizer: TokenizerDataAdapter(tok)).filter(\.trained).map { Array($0.text.unicodeScalars) },
                       [Array("cafe\u{301}!<|im_end|>\n".unicodeScalars)])
        // A normalizer that rewrites the text (NFKC, Lowercase, Strip, Replace) keeps its offsets: the
        // completion of a prompt/completion line is trained, the prompt is not.
        let misc = try Tokenizer.load(directory: DataFixtures.root.appendingPathComponent("../tokenizers/misc").standardized.path)
        let pc = try SampleProcessor(tokenizer: TokenizerDataAdapter(misc), template: nil, options: DatasetOptions(), file: "t")
            .process(.promptCompletion(prompt: "ABC  Def ", completion: "GHI ﬁne"), format: .promptCompletion, line: 1)
        let trained = pc.sample.inputIDs.indices.filter { pc.sample.labels[$0] != -100 }.map { pc.sample.inputIDs[$0] }
        XCTAssertEqual(trained.filter { !misc.isSpecial($0) }, misc.encode("GHI ﬁne", addSpecialTokens: false))
        // Text samples need no offsets: every token is trained.
        let t = try SampleProcessor(tokenizer: TokenizerDataAdapter(misc), template: nil, options: DatasetOptions(), file: "t")
            .process(.text("ABC def"), format: .text, line: 1)
        XCTAssertEqual(t.sample.inputIDs, misc.encode("ABC def"))
        XCTAssertEqual(t.sample.labels, t.sample.inputIDs)
    }
}

final class TrainingDataTests: XCTestCase {
    func testValidationFromSplitOrFile() throws {
        let dir = DataFixtures.root.appendingPathComponent("qwen2").path
        let lines = (0..<20).map { i in
            #"{"messages": [{"role": "user", "content": "q\#(i)"}, {"role": "assistant", "content": "a\#(i)"}]}"#
        }
        let train = try writeTemp("td-train.jsonl", lines.joined(separator: "\n"))
        let val = try writeTemp("td-val.jsonl", lines.prefix(3).joined(separator: "\n"))
        let split = try TrainingData.load(tokenizerDirectory: dir, dataFile: train, options: DatasetOptions(),
                                          validationFraction: 0.1, seed: 5)
        XCTAssertEqual(split.train.samples.count, 18)
        XCTAssertEqual(split.validation.count, 2)
        XCTAssertTrue(Set(split.train.samples.map(\.line)).isDisjoint(with: split.validation.map(\.line)))
        let again = try TrainingData.load(tokenizerDirectory: dir, dataFile: train, options: DatasetOptions(),
                                          validationFraction: 0.1, seed: 5)
        XCTAssertEqual(again.validation, split.validation)
        let file = try TrainingData.load(tokenizerDirectory: dir, dataFile: train, options: DatasetOptions(), validationFile: val)
        XCTAssertEqual(file.train.samples.count, 20)
        XCTAssertEqual(file.validation.map(\.line), [1, 2, 3])
        XCTAssertEqual(file.validationStatistics?.samples, 3)
        XCTAssertThrowsError(try TrainingData.load(tokenizerDirectory: dir, dataFile: train, options: DatasetOptions(),
                                                   validationFile: val, validationFraction: 0.1))
    }
}
