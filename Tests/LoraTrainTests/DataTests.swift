import Foundation
import LoraModel
import LoraOps
import LoraText
import XCTest
@testable import LoraTrain

/// The trainer's data path: LoraText's Dataset behind `loadTrainingSamples`.
final class DataTests: XCTestCase {
    func config(_ data: String, maxSeqLen: Int = 8) -> TrainingConfig {
        var c = TrainingConfig()
        c.model = fixtureModel  // a bare checkpoint: no tokenizer
        c.data = [data]
        c.maxSeqLen = maxSeqLen
        return c
    }

    func testPretokenizedJSONLOnAModelWithoutTokenizer() throws {
        let dir = try temporaryDirectory("data")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p = dir + "/d.jsonl"
        try """
        {"input_ids": [1, 2, 3, 4, 5, 6], "labels": [-100, -100, 3, 4, 5, 6]}

        {"input_ids": [7, 8, 9]}
        """.write(toFile: p, atomically: true, encoding: .utf8)
        let s = try loadTrainingSamples(config(p, maxSeqLen: 4), vocabSize: 67).train
        XCTAssertEqual(s.count, 2)
        XCTAssertEqual(s[0], TokenizedSample(line: 1, inputIDs: [1, 2, 3, 4], labels: [-100, -100, 3, 4]), "truncated to max_seq_len")
        XCTAssertEqual(s[1], TokenizedSample(line: 3, inputIDs: [7, 8, 9], labels: [7, 8, 9]), "no labels: every token trained")

        func error(_ line: String) -> String {
            try? line.write(toFile: p, atomically: true, encoding: .utf8)
            do { _ = try loadTrainingSamples(config(p), vocabSize: 67); return "" } catch { return "\(error)" }
        }
        XCTAssertTrue(error("{\"input_ids\": [1, 99]}").contains("99 is outside the vocabulary"), error("{\"input_ids\": [1, 99]}"))
        XCTAssertTrue(error("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}")
                        .contains(p + ":1: messages samples need a tokenizer"))
        XCTAssertTrue(error("not json").contains(p + ":1"), error("not json"))
    }

    func testValidationSplitIsSeededAndDisjoint() throws {
        let dir = try temporaryDirectory("data")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p = dir + "/d.jsonl"
        try (1...20).map { "{\"input_ids\": [\($0), 2, 3]}" }.joined(separator: "\n").write(toFile: p, atomically: true, encoding: .utf8)
        var c = config(p)
        c.valSplit = 0.2
        let a = try loadTrainingSamples(c, vocabSize: 67), b = try loadTrainingSamples(c, vocabSize: 67)
        XCTAssertEqual(a.validation.count, 4)
        XCTAssertEqual(a.train.count, 16)
        XCTAssertEqual(a.validation, b.validation)
        XCTAssertTrue(Set(a.validation.map(\.line)).isDisjoint(with: Set(a.train.map(\.line))))
        c.seed = 7
        XCTAssertNotEqual(try loadTrainingSamples(c, vocabSize: 67).validation, a.validation)
    }
}

/// Issue 22, item 15 (GGUF case): a GGUF without tokenizer metadata (nor llama.vocab_size) trains on
/// pre-tokenized rows — the vocabulary counted from token_embd — and text rows are refused before
/// any weight is loaded.
final class GGUFWithoutTokenizerTests: XCTestCase {
    func testPreTokenizedRowsTrainTextRowsAreRefusedFirst() throws {
        let dir = try temporaryDirectory("gguf-notok")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let source = try GGUFFile(path: fixturesRoot + "/gguf/llama_f32.gguf")
        var w = GGUFWriter()
        for k in source.metadataKeys where !k.hasPrefix("tokenizer.") && k != "llama.vocab_size" && k != "general.alignment" {
            w.add(k, source.metadata[k]!)
        }
        for name in source.tensorNames {
            let t = source.tensors[name]!
            w.add(tensor: name, shape: t.shape, values: try source.floats(name), type: .f32)
        }
        let model = dir + "/bare.gguf"
        try w.write(to: model)
        let bare = try GGUFFile(path: model)
        XCTAssertNil(bare.metadata["tokenizer.ggml.tokens"])
        XCTAssertNil(bare.metadata["llama.vocab_size"])
        let vocab = try ModelConfig.load(gguf: bare).vocabSize
        XCTAssertEqual(vocab, try ModelConfig.load(gguf: source).vocabSize)
        let data = dir + "/d.jsonl"
        try writeSamples(data, count: 8)
        let c = try smallConfig(data: data, output: dir + "/out", ["model": model, "max_steps": "1", "target_modules": ["q_proj"]])
        _ = try Trainer(config: c, context: try ComputeContext.shared(), progress: Captured().printer(terminal: false)).run()
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/out/adapter_model.safetensors"))
        try #"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}"#
            .write(toFile: data, atomically: true, encoding: .utf8)
        let t = try smallConfig(data: data, output: dir + "/out2", ["model": model, "max_steps": "1"])
        XCTAssertThrowsError(try Trainer(config: t, context: try ComputeContext.shared(), progress: Captured().printer(terminal: false)).run()) { e in
            XCTAssertEqual("\(e)", data + ":1: messages samples need a tokenizer: " + "\(ModelTextError.noTokenizer(model))")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out2/adapter_model.safetensors"))
    }
}
