import Foundation
import LoraModel
import LoraOps
import XCTest

final class InspectTests: XCTestCase {
    func testModuleTreeMatchesTransformersPrint() throws {
        for name in PEFTParityTests.cases {
            let dir = fixturesRoot + "/" + name
            let expected = try String(contentsOfFile: dir + "/print_model.txt", encoding: .utf8)
                .trimmingCharacters(in: .newlines)
            let config = try ModelConfig.load(directory: dir + "/model")
            XCTAssertEqual(ModelPrinter.render(config), expected, "print(model) of \(name)")
        }
    }

    func testTrainableLineMatchesPEFT() throws {
        for name in PEFTParityTests.cases {
            let rc = try ReferenceCase(name)
            var lora = try LoraConfig.load(path: rc.dir + "/adapter_initial/adapter_config.json")
            lora.inferenceMode = false  // as when PEFT printed it, before saving
            let plan = try AdapterPlan(config: try ModelConfig.load(directory: rc.dir + "/model"), lora: lora)
            XCTAssertEqual(plan.trainableLine, rc.json["trainable_line"] as? String, name)
            // The planned tensors are exactly the ones PEFT trained (and saved).
            let saved = try SafeTensorsFile(path: rc.dir + "/grads_step0.safetensors")
            XCTAssertEqual(Set(plan.tensors.map(\.key)), Set(saved.tensors.keys), name)
            for t in plan.tensors { XCTAssertEqual(saved.tensors[t.key]?.shape, t.shape, "\(name) \(t.key)") }
        }
    }

    func testInferenceModeTrainsNothing() throws {
        let rc = try ReferenceCase("llama_gqa_untied")
        let lora = try LoraConfig.load(path: rc.dir + "/adapter_initial/adapter_config.json")
        XCTAssertTrue(lora.inferenceMode, "PEFT saves adapters with inference_mode = true")
        let plan = try AdapterPlan(config: try ModelConfig.load(directory: rc.dir + "/model"), lora: lora)
        XCTAssertTrue(plan.trainableLine.hasPrefix("trainable params: 0 || all params: 27,232 || trainable%: 0.0000"),
                      plan.trainableLine)
    }

    func testSingleLayerAndOtherEpsRender() throws {
        var c = try ModelConfig.load(directory: fixturesRoot + "/llama_gqa_untied/model")
        c.numLayers = 1
        c.rmsNormEps = 1e-6
        let text = ModelPrinter.render(c)
        XCTAssertTrue(text.contains("      (0): LlamaDecoderLayer(\n"), text)
        XCTAssertTrue(text.contains("LlamaRMSNorm((32,), eps=1e-06)"), text)
    }
}

/// The classifier models' module trees equal transformers' print(model) (score, dropout,
/// padding_idx from pad_token_id): the task fixtures' print_model.txt.
final class ClassifierInspectTests: XCTestCase {
    func testClassifierTreesEqualTransformers() throws {
        for name in ["llama_seq_cls", "qwen2_seq_cls", "llama_regression", "llama_multi_label", "llama_token_cls", "qwen2_token_cls",
                     "llama_question_ans", "qwen2_question_ans"] {
            let dir = taskFixturesRoot + "/" + name
            let expected = try String(contentsOfFile: dir + "/print_model.txt", encoding: .utf8)
            let c = try ModelConfig.load(directory: dir + "/model")
            XCTAssertEqual(ModelPrinter.render(c) + "\n", expected, name)
        }
    }
}

final class TuningShapeTests: XCTestCase {
    /// `lora-gpu tune --model` times each family's own products: Phi-3's fused q|k|v and gate|up, Qwen3's head_dim
    /// apart from hidden/heads, Gemma 3's 4 heads of 16 over 2.
    func testTunedProductsAreTheFamilysProjections() throws {
        func shapes(_ name: String) throws -> [String] {
            let c = try ModelConfig.load(directory: fixturesRoot + "/\(name)/model")
            return AdapterPlan.tuningLinears(c).map { "\($0.name) \($0.inFeatures)→\($0.outFeatures) ×\($0.count)" }
        }
        XCTAssertEqual(try shapes("phi3_fused_longrope"), ["o_proj 32→32 ×1", "qkv_proj 32→64 ×1", "gate_up_proj 32→96 ×1", "down_proj 48→32 ×1"])
        XCTAssertEqual(try shapes("qwen3_qk_norm"), ["q_proj 32→64 ×1", "k_proj/v_proj 32→32 ×2", "o_proj 64→32 ×1",
                                                     "gate_proj/up_proj 32→48 ×2", "down_proj 48→32 ×1"])
        XCTAssertEqual(try shapes("gemma3_sliding"), try shapes("qwen3_qk_norm"))
    }
}
