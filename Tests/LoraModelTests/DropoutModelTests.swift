import Foundation
@testable import LoraModel
import LoraOps
import XCTest

/// With lora_dropout > 0 PyTorch parity is not exact (its RNG is not ours);
/// what must hold: eval mode disables dropout, training mode applies it,
/// the mask is a function of (seed, step, module) so recomputation
/// (gradient checkpointing) sees the same mask.
final class DropoutModelTests: XCTestCase {
    func model(dropout: Double, checkpointing: Bool = false) throws -> LlamaLoRAModel {
        let rc = try ReferenceCase("llama_gqa_untied")
        var lora = try LoraConfig.load(path: rc.dir + "/adapter_initial/adapter_config.json")
        lora.inferenceMode = false
        lora.loraDropout = dropout
        let m = try LlamaLoRAModel(modelDirectory: rc.dir + "/model", lora: lora, context: try ComputeContext.shared())
        try m.loadAdapter(directory: rc.dir + "/adapter_initial")
        m.gradientCheckpointing = checkpointing
        return m
    }

    func testEvalModeDisablesDropout() throws {
        let b = try ReferenceCase("llama_gqa_untied").batch
        let plain = try model(dropout: 0), dropped = try model(dropout: 0.3)
        XCTAssertEqual(try dropped.logits(b), try plain.logits(b), "eval logits ignore lora_dropout")
        XCTAssertEqual(try dropped.loss(b), try plain.loss(b))
        // Training mode does drop: the training loss and gradients differ from the p = 0 ones.
        let l0 = try plain.computeGradients(b), l1 = try dropped.computeGradients(b)
        XCTAssertNotEqual(l0, l1, "training-mode loss with dropout")
        let g0 = try plain.gradientTensors(), g1 = try dropped.gradientTensors()
        let key = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
        XCTAssertGreaterThan(relErr(g1[key]!, g0[key]!), 1e-3)
    }

    func testSameStepSameMaskAndCheckpointingRecomputesIt() throws {
        let b = try ReferenceCase("llama_gqa_untied").batch
        let a = try model(dropout: 0.2), c = try model(dropout: 0.2, checkpointing: true)
        let la = try a.computeGradients(b), lc = try c.computeGradients(b)
        XCTAssertEqual(la, lc)
        let ga = try a.gradientTensors(), gc = try c.gradientTensors()
        for (k, g) in ga { XCTAssertLessThanOrEqual(relErr(gc[k]!, g), 1e-6, k) }
        // A second pass at the same step reproduces the mask; the next step draws a new one.
        XCTAssertEqual(try a.computeGradients(b), la)
        _ = try a.trainStep(b, hyper: .init(lr: 0))
        XCTAssertNotEqual(try a.computeGradients(b), la, "a new step draws a new mask")
    }
}

extension DropoutModelTests {
    /// lm_head and the cross-entropy run in chunks of rows: without dropout the
    /// chunk size changes nothing; with dropout (each chunk seeded on its first
    /// row, so chunks do not repeat one mask) training stays finite.
    func testLMHeadChunkingIsExactWithoutDropout() throws {
        let rc = try ReferenceCase("mistral_embed_lm_head")
        var lora = try LoraConfig.load(path: rc.dir + "/adapter_initial/adapter_config.json")
        lora.inferenceMode = false
        let b = try rc.batch
        func gradients(chunk: Int, dropout: Double) throws -> (Float, [String: [Float]]) {
            var l = lora
            l.loraDropout = dropout
            let m = try LlamaLoRAModel(modelDirectory: rc.dir + "/model", lora: l, context: try ComputeContext.shared())
            try m.loadAdapter(directory: rc.dir + "/adapter_initial")
            m.logitsChunkRows = chunk
            return (try m.computeGradients(b), try m.gradientTensors())
        }
        // Without dropout, chunking changes nothing (up to summation order).
        let (l1, g1) = try gradients(chunk: 256, dropout: 0)
        let (l3, g3) = try gradients(chunk: 3, dropout: 0)
        XCTAssertEqual(Double(l1), Double(l3), accuracy: 1e-6)
        for (k, g) in g1 { XCTAssertLessThanOrEqual(relErr(g3[k]!, g), 1e-5, k) }
        let (ld, _) = try gradients(chunk: 1, dropout: 0.5)
        XCTAssertTrue(ld.isFinite)
        XCTAssertNotEqual(ld, l1)
    }
}
