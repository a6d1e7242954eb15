import Foundation
import LoraBase
import LoraOps
import TestSupport
import XCTest
@testable import LoraModel
@testable import LoraTrain

/// Issue 17 item 6: GGUFs written by llama.cpp's own convert_hf_to_gguf.py (scripts/make_family_gguf_fixtures.py)
/// read as transformers reads the checkpoints they came from — the config, the weights, the logits and the
/// tokenizer's ids. Qwen3: head_dim from qwen3.attention.key_length, q_norm/k_norm, no q/k permutation.
/// SmolLM3: q/k rows permuted as Llama's (undone at load), NoPE on every 4th layer (GGUF records no list).
/// Phi-3: fused attn_qkv / ffn_up, partial rotary from rope.dimension_count, LongRoPE from the rope_factors tensors.
/// Llama 3.x: the RoPE scaling from rope_freqs.weight (before, the reader skipped it and the frequencies were unscaled).
final class FamilyGGUFTests: XCTestCase {
    static let families: [(name: String, arch: Architecture, permuted: Bool)] = [("qwen3", .qwen3, false), ("smollm3", .smollm3, true),
                                                                                  ("phi3", .phi3, false), ("gemma3", .gemma3, false),
                                                                                  ("llama3", .llama, true)]

    static func dir(_ family: String) -> String { testFixturesRoot + "/gguf/\(family)_convert" }

    func testConfigWeightsAndLogitsEqualTransformers() throws {
        for (family, arch, permuted) in Self.families {
            let d = Self.dir(family)
            let expected = try JSONValue.read(path: d + "/expected.json")
            let g = try GGUFCheckpoint(path: d + "/model.gguf")
            let c = g.config, want = try XCTUnwrap(expected["config"])
            XCTAssertEqual(c.architecture, arch, family)
            XCTAssertEqual(c.qkNorm, arch == .qwen3 || arch == .gemma3, family)
            if arch == .gemma3 {
                // llama.cpp's rules: every 6th layer full, the sliding layers' base rope.freq_base_swa, linear scaling on the
                // full layers, the scale 1/√key_length.
                XCTAssertEqual(c.slidingLayers, [true, true, true, true, true, false])
                XCTAssertEqual(c.slidingWindow, 4)
                XCTAssertEqual(c.rope, RopeSettings(theta: 1_000_000, kind: .linear(factor: 2)))
                XCTAssertEqual(c.slidingRope, RopeSettings(theta: 20000, kind: .default))
                XCTAssertEqual(c.attentionScale, 0.25)
                XCTAssertEqual(c.activation, .geluTanh)
            }
            XCTAssertEqual(c.headDim, want["head_dim"]?.integral, family)
            XCTAssertEqual(c.hiddenSize, want["hidden_size"]?.integral, family)
            XCTAssertEqual(c.numLayers, want["num_hidden_layers"]?.integral, family)
            XCTAssertEqual(c.numKVHeads, want["num_key_value_heads"]?.integral, family)
            XCTAssertEqual(c.vocabSize, want["vocab_size"]?.integral, family)
            XCTAssertTrue(c.tieWordEmbeddings, family)
            XCTAssertEqual(c.rmsNormEps, 1e-6, accuracy: 1e-12, family)
            if let rd = want["rotary_dim"]?.integral {
                XCTAssertEqual(c.rotaryDim, rd, family)
                guard case .longrope(_, _, let original, let factor) = c.rope.kind else { return XCTFail("\(family): not LongRoPE") }
                XCTAssertEqual(original, 8)
                XCTAssertEqual(factor, 2.0.squareRoot(), accuracy: 1e-6)
            }
            if family == "llama3" {
                // rope_freqs.weight (llama.cpp's form of rope_type llama3) divides each frequency: the same inv_freq,
                // within fp32 rounding, as transformers' llama3 remap of the config it came from.
                let llama3 = RopeSettings(theta: 10000, kind: .llama3(factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 16))
                let got = c.rope.inverseFrequencies(headDim: 16), ref = llama3.inverseFrequencies(headDim: 16)
                for (a, b) in zip(got, ref) { XCTAssertEqual(a, b, accuracy: 2e-7 * b, "llama3 inv_freq") }
                XCTAssertNotEqual(got, RopeSettings(theta: 10000, kind: .default).inverseFrequencies(headDim: 16), "the scaling is applied")
                XCTAssertFalse(c.rope.usesLongFactors(maxPosition: c.maxPositionEmbeddings - 1), "one set of factors at every position")
            }
            if let nope = want["no_rope_layers"]?.array {
                XCTAssertEqual((0..<c.numLayers).map { c.usesRope(layer: $0) }, nope.map { $0.integral == 1 }, family)
            }
            XCTAssertEqual(g.permutedQK, permuted, "\(family): llama.cpp permutes q/k rows for the llama layout only")
            XCTAssertEqual(g.unusedTensors, [], family)
            let ref = try SafeTensorsFile(path: d + "/expected.safetensors")
            for key in ref.tensors.keys.sorted() where key != "logits" {
                let (shape, w) = try ref.floats(key)
                let got = try g.hostFloats(key, shape: shape)
                if arch.traits.normPlusOne && key.hasSuffix("norm.weight") {
                    // Stored as 1 + w in f32: read back as (1 + w) − 1, within an ulp of 1.
                    XCTAssertLessThanOrEqual(zip(got, w).map { abs($0 - $1) }.max()!, Float(1).ulp, "\(family) \(key)")
                } else {
                    XCTAssertEqual(got, w, "\(family) \(key)")   // f32 both sides: exact
                }
            }
            var lora = LoraConfig(targetModules: .allLinear)
            lora.inferenceMode = true
            let m = try LlamaLoRAModel(modelDirectory: d + "/model.gguf", lora: lora, context: try ComputeContext.shared())
            let ids = try XCTUnwrap(expected["input_ids"]?.array).map { try XCTUnwrap($0.array).compactMap(\.integral) }
            let logits = try m.logits(try TokenBatch(inputIDs: ids))
            let r = try ref.floats("logits").values
            let scale = r.map(abs).max()!
            let err = zip(logits, r).map { abs($0 - $1) }.max()! / scale
            XCTAssertLessThanOrEqual(err, 1e-5, "\(family): logits relative error \(err)")
        }
    }

    /// Gemma 3's layer pattern as llama.cpp reads it: attention.sliding_window_pattern n (every n-th layer full, 0: none)
    /// or a per-layer list, else every 6th; no sliding window (absent or 0) makes every layer full, at the global base.
    func testGemma3SlidingPatternAsLlamaCppReadsIt() throws {
        let source = try GGUFFile(path: Self.dir("gemma3") + "/model.gguf")
        let dir = try temporaryDirectory("gemma3-gguf")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func config(_ edit: (inout [String: GGUFValue]) -> Void) throws -> ModelConfig {
            var metadata = source.metadata
            edit(&metadata)
            var w = GGUFWriter()
            for k in metadata.keys.sorted() where k != "general.alignment" { w.add(k, metadata[k]!) }
            for name in source.tensorNames {
                w.add(tensor: name, shape: source.tensors[name]!.shape, values: try source.floats(name), type: .f32)
            }
            let path = dir + "/edited.gguf"
            try w.write(to: path)
            return try GGUFCheckpoint(path: path).config
        }
        let key = "gemma3.attention.sliding_window_pattern"
        func fullLayers(_ c: ModelConfig) -> [Int] { (0..<c.numLayers).filter { c.window(layer: $0) == nil } }
        XCTAssertEqual(fullLayers(try config { _ in }), [5])
        XCTAssertEqual(fullLayers(try config { $0[key] = .uint32(3) }), [2, 5])
        XCTAssertEqual(fullLayers(try config { $0[key] = .uint32(0) }), [])
        XCTAssertEqual(fullLayers(try config { $0[key] = .array([true, false, true, true, false, true].map(GGUFValue.bool)) }), [1, 4])
        let dense = try config { $0["gemma3.attention.sliding_window"] = nil }
        XCTAssertNil(dense.slidingWindow)
        XCTAssertNil(dense.slidingRope)
        XCTAssertEqual(fullLayers(dense), [0, 1, 2, 3, 4, 5])
        XCTAssertEqual(fullLayers(try config { $0["gemma3.attention.sliding_window"] = .uint32(0) }), [0, 1, 2, 3, 4, 5])
        XCTAssertThrowsError(try config { $0[key] = .array([.bool(true)]) }) {
            XCTAssertTrue("\($0)".contains("must list true or false for each of the 6 layers"), "\($0)")
        }
    }

    func testTokenizerIDsEqualTransformers() throws {
        for (family, _, _) in Self.families {
            let text = try ModelText(model: Self.dir(family) + "/model.gguf", chatTemplate: nil, needsTemplate: false)
            let cases = try XCTUnwrap(try JSONValue.read(path: Self.dir(family) + "/expected.json")["token_ids"]?.object)
            XCTAssertEqual(cases.pairs.count, 3)
            for (s, ids) in cases.pairs {
                XCTAssertEqual(try text.tokenizer.encode(s, addSpecialTokens: false), ids.array?.compactMap(\.integral), "\(family): \(s)")
            }
        }
    }
}
