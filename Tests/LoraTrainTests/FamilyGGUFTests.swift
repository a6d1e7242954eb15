import Foundation
import LoraBase

import LoraOps
import XCTest
@testable import LoraModel
@testable import LoraTrain

/// Issue 17 item 2 / 6: a Qwen3 GGUF written by llama.cpp's own convert_hf_to_gguf.py
/// (scripts/make_qwen3_gguf_fixture.py) reads as transformers reads the checkpoint it came from:
/// the config (head_dim from qwen3.attention.key_length), the weights (q_norm and k_norm among them,
/// no q/k permutation to undo), the logits, and the tokenizer's ids.
final class Qwen3GGUFTests: XCTestCase {
    static let dir = testFixturesRoot + "/gguf/qwen3_convert"

    func expected() throws -> JSONValue { try JSONValue.read(path: Self.dir + "/expected.json") }

    func testConfigWeightsAndLogitsEqualTransformers() throws {
        let g = try GGUFCheckpoint(path: Self.dir + "/model.gguf")
        let c = g.config, want = try expected()["config"]!
        XCTAssertEqual(c.architecture, .qwen3)
        XCTAssertTrue(c.qkNorm)
        XCTAssertEqual(c.headDim, want["head_dim"]?.integral)
        XCTAssertEqual(c.hiddenSize, want["hidden_size"]?.integral)
        XCTAssertEqual(c.numKVHeads, want["num_key_value_heads"]?.integral)
        XCTAssertEqual(c.vocabSize, want["vocab_size"]?.integral)
        XCTAssertTrue(c.tieWordEmbeddings)
        XCTAssertEqual(c.rmsNormEps, 1e-6, accuracy: 1e-12)
        XCTAssertFalse(g.permutedQK, "llama.cpp permutes q/k rows for the llama layout only")
        XCTAssertEqual(g.unusedTensors, [])
        let ref = try SafeTensorsFile(path: Self.dir + "/expected.safetensors")
        for key in ref.tensors.keys.sorted() where key != "logits" {
            let (shape, w) = try ref.floats(key)
            XCTAssertEqual(try g.hostFloats(key, shape: shape), w, key)   // f32 both sides: exact
        }
        var lora = LoraConfig()
        lora.inferenceMode = true
        let m = try LlamaLoRAModel(modelDirectory: Self.dir + "/model.gguf", lora: lora, context: try ComputeContext.shared())
        let ids = try XCTUnwrap(try expected()["input_ids"]?.array).map { try XCTUnwrap($0.array).compactMap(\.integral) }
        let logits = try m.logits(try TokenBatch(inputIDs: ids))
        let r = try ref.floats("logits").values
        let scale = r.map(abs).max()!
        let err = zip(logits, r).map { abs($0 - $1) }.max()! / scale
        XCTAssertLessThanOrEqual(err, 1e-5, "logits relative error \(err)")
    }

    func testTokenizerIDsEqualTransformers() throws {
        let text = try ModelText(model: Self.dir + "/model.gguf", chatTemplate: nil, needsTemplate: false)
        let cases = try XCTUnwrap(try expected()["token_ids"]?.object)
        XCTAssertEqual(cases.pairs.count, 3)
        for (s, ids) in cases.pairs {
            XCTAssertEqual(try text.tokenizer.encode(s, addSpecialTokens: false), ids.array?.compactMap(\.integral), s)
        }
    }
}
