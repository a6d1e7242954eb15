import Foundation
@testable import LoraModel
import LoraOps
import XCTest

/// PEFT's init_lora_weights: true (Kaiming-uniform A, zero B), "gaussian"
/// (A ~ N(0, (1/r)²), zero B), false (both random); the embedding the other
/// way round (A zero, B ~ N(0, 1)). With B = 0 training starts from the base model.
final class InitTests: XCTestCase {
    func model(_ initValue: String, targets: String = #"["q_proj", "down_proj", "embed_tokens"]"#) throws -> LlamaLoRAModel {
        let json = #"{"r": 8, "lora_alpha": 16, "target_modules": \#(targets), "init_lora_weights": \#(initValue)}"#
        let lora = try LoraConfig.parse(Data(json.utf8), path: "test")
        return try LlamaLoRAModel(modelDirectory: fixturesRoot + "/llama_gqa_untied/model", lora: lora,
                                  context: try ComputeContext.shared())
    }

    func stats(_ xs: [Float]) -> (mean: Double, std: Double, maxAbs: Double) {
        let m = xs.reduce(0) { $0 + Double($1) } / Double(xs.count)
        let v = xs.reduce(0) { $0 + (Double($1) - m) * (Double($1) - m) } / Double(xs.count)
        return (m, v.squareRoot(), xs.map { abs(Double($0)) }.max() ?? 0)
    }

    func testKaimingUniformGaussianAndRandom() throws {
        let P = "base_model.model.model."
        // true: A ~ U(±1/√in), B = 0.
        var t = try model("true").adapterTensors()
        let a = t[P + "layers.0.mlp.down_proj.lora_A.weight"]!.values   // in = 48
        let bound = 1 / 48.0.squareRoot()
        let sa = stats(a)
        XCTAssertLessThanOrEqual(sa.maxAbs, bound)
        XCTAssertEqual(sa.std, bound / 3.0.squareRoot(), accuracy: 0.2 * bound / 3.0.squareRoot())
        XCTAssertTrue(t[P + "layers.0.mlp.down_proj.lora_B.weight"]!.values.allSatisfy { $0 == 0 })
        XCTAssertTrue(t[P + "embed_tokens.lora_embedding_A"]!.values.allSatisfy { $0 == 0 })
        let eb = stats(t[P + "embed_tokens.lora_embedding_B"]!.values)
        XCTAssertEqual(eb.std, 1, accuracy: 0.2)
        // "gaussian": A ~ N(0, 1/r) in PEFT's sense: std = 1/r.
        t = try model(#""gaussian""#).adapterTensors()
        let ga = stats(t[P + "layers.1.self_attn.q_proj.lora_A.weight"]!.values)   // 8 × 32 values
        XCTAssertEqual(ga.std, 1.0 / 8, accuracy: 0.3 / 8)
        XCTAssertTrue(t[P + "layers.1.self_attn.q_proj.lora_B.weight"]!.values.allSatisfy { $0 == 0 })
        // false: both random (B ~ U(±1/√r) as nn.Linear's default init).
        t = try model("false").adapterTensors()
        let rb = stats(t[P + "layers.0.self_attn.q_proj.lora_B.weight"]!.values)
        XCTAssertGreaterThan(rb.std, 0.1)
        XCTAssertLessThanOrEqual(rb.maxAbs, 1 / 8.0.squareRoot())
    }

    func testZeroBStartsFromTheBaseModel() throws {
        let b = try ReferenceCase("llama_gqa_untied").batch
        // Two different adapters, both with B = 0 (and A_emb = 0): both are the base model.
        let one = try model("true").logits(b)
        let two = try model(#""gaussian""#, targets: #"["v_proj", "gate_proj", "lm_head"]"#).logits(b)
        XCTAssertEqual(one, two)
        let random = try model("false").logits(b)
        XCTAssertNotEqual(one, random)
    }
}
