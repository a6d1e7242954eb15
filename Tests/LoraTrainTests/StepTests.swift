import Foundation
@testable import LoraModel
import LoraOps
import XCTest
@testable import LoraTrain

/// The model-side pieces the trainer relies on: accumulation, the decay mask, non-finite steps.
final class StepTests: XCTestCase {
    func model(_ fixture: String = "llama_gqa_untied", configure: (inout LoraConfig) -> Void = { _ in }) throws -> LlamaLoRAModel {
        var lora = LoraConfig()
        lora.targetModules = .allLinear
        lora.initLoraWeights = .random  // B ≠ 0: every gradient is non-zero
        configure(&lora)
        let m = try LlamaLoRAModel(modelDirectory: fixturesRoot + "/reference/\(fixture)/model", lora: lora,
                                   context: try ComputeContext.shared())
        try m.initializeAdapters(seed: 3)
        return m
    }

    /// Rows of different lengths and trained-token counts (0 pads, -100 unlabeled).
    static let rows: [(ids: [Int], labels: [Int])] = [
        ([5, 9, 12, 30], [-100, -100, -100, 30]),                                  // 1 trained token
        ([7, 8, 9, 10, 11, 40, 41], [-100, -100, 9, 10, -100, 40, 41]),
        ([3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13], [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]),
        ([60, 61, 62, 63, 64], [-100, 61, 62, 63, 64]),
    ]

    static func batch(_ r: ArraySlice<(ids: [Int], labels: [Int])>) throws -> TokenBatch {
        let t = r.map(\.ids.count).max()!
        return try TokenBatch(inputIDs: r.map { $0.ids + Array(repeating: 0, count: t - $0.ids.count) },
                              labels: r.map { $0.labels + Array(repeating: -100, count: t - $0.labels.count) })
    }

    func testAccumulatedGradientsEqualOneBigBatchs() throws {
        let m = try model()
        let big = try Self.batch(Self.rows[0...]), b1 = try Self.batch(Self.rows[0..<2]), b2 = try Self.batch(Self.rows[2..<4])
        let bigLoss = try m.computeGradients(big)
        let want = try m.gradientTensors()
        try m.store.zeroGradients()
        let total = b1.countedTokens + b2.countedTokens
        XCTAssertEqual(total, big.countedTokens)
        let s1 = try m.accumulateGradients(b1, normalizer: total)
        let s2 = try m.accumulateGradients(b2, normalizer: total)
        XCTAssertEqual((s1 + s2) / Float(total), bigLoss, accuracy: 1e-5)
        let got = try m.gradientTensors()
        var worst = 0.0
        for (k, w) in want {
            let g = got[k]!
            let num = zip(g, w).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +).squareRoot()
            let den = max(w.map { Double($0) * Double($0) }.reduce(0, +).squareRoot(), 1e-12)
            worst = max(worst, num / den)
        }
        XCTAssertLessThan(worst, 1e-5, "accumulated gradients differ from the big batch's")

        // Averaging each micro-batch on its own (the pre-4.46 way) would not match: the counts differ (5 vs 14).
        try m.store.zeroGradients()
        _ = try m.accumulateGradients(b1, normalizer: b1.countedTokens)
        _ = try m.accumulateGradients(b2, normalizer: b2.countedTokens)
        let naive = try m.gradientTensors()
        let k = want.keys.sorted().first { $0.contains("lora_B") }!
        XCTAssertGreaterThan(zip(naive[k]!, want[k]!).map { abs($0 - $1) }.max()!, 1e-4)

        // trainStep over two micro-batches: the big batch's loss and (to float rounding) its update.
        let a = try model(), b = try model()
        let hyper = ComputeContext.AdamWHyper(lr: 1e-2, weightDecay: 0.01, maxGradNorm: 1)
        let ra = try a.trainStep([b1, b2], hyper: hyper)
        let rb = try b.trainStep(big, hyper: hyper)
        XCTAssertEqual(ra.loss, rb.loss, accuracy: 1e-5)
        XCTAssertEqual(ra.gradNorm, rb.gradNorm, accuracy: 1e-4 * rb.gradNorm)
        XCTAssertEqual(ra.trainedTokens, 19)
        let pa = try a.adapterTensors(), pb = try b.adapterTensors()
        for (key, v) in pb { XCTAssertLessThan(zip(pa[key]!.values, v.values).map { abs($0 - $1) }.max()!, 1e-5, key) }
    }

    func testWeightDecaySkipsBiasesAndNorms() throws {
        // HF Trainer's get_decay_parameter_names, on PEFT's names.
        XCTAssertTrue(ParameterStore.trainerDecays("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"))
        XCTAssertTrue(ParameterStore.trainerDecays("base_model.model.model.embed_tokens.lora_embedding_B"))
        XCTAssertTrue(ParameterStore.trainerDecays("base_model.model.lm_head.weight"))
        XCTAssertFalse(ParameterStore.trainerDecays("base_model.model.model.layers.0.self_attn.q_proj.base_layer.bias"))
        XCTAssertFalse(ParameterStore.trainerDecays("base_model.model.model.layers.1.mlp.down_proj.bias"))
        XCTAssertFalse(ParameterStore.trainerDecays("model.norm.weight"))
        XCTAssertFalse(ParameterStore.trainerDecays("model.layers.0.input_layernorm.weight"))
        XCTAssertFalse(ParameterStore.trainerDecays("model.layers.0.self_attn.q_norm.weight"))
        XCTAssertTrue(ParameterStore.trainerDecays("model.layers.0.self_attn.normal_proj.weight"))

        // On the device: with zero gradients AdamW only decays, p ← p·(1 − lr·wd), and never a bias.
        let m = try model("llama_bias_all") { $0.bias = .all; $0.modulesToSave = ["lm_head"] }
        try m.store.setDecayMask(ParameterStore.trainerDecays)
        let flags = try m.store.decayFlags()
        XCTAssertTrue(flags.keys.contains { $0.hasSuffix("bias") })
        for (k, d) in flags { XCTAssertEqual(d, !k.hasSuffix("bias"), k) }
        XCTAssertEqual(flags["base_model.model.lm_head.weight"], true)
        let before = try m.adapterTensors()
        let silent = try TokenBatch(inputIDs: [[5, 6, 7]], labels: [[-100, -100, -100]])
        try m.store.zeroGradients()
        _ = try m.accumulateGradients(silent, normalizer: 0)
        let (norm, applied) = try m.applyGradients(hyper: .init(lr: 0.1, weightDecay: 0.5, maxGradNorm: 0))
        XCTAssertEqual(norm, 0)
        XCTAssertTrue(applied)
        let after = try m.adapterTensors()
        for (k, v) in before {
            let factor: Float = k.hasSuffix("bias") ? 1 : 0.95
            for (x, y) in zip(v.values, after[k]!.values) { XCTAssertEqual(y, x * factor, accuracy: 1e-6 * max(abs(x), 1), k) }
        }
    }

    func testNonFiniteStepUpdatesNothing() throws {
        let m = try model()
        let b = try Self.batch(Self.rows[0...])
        let e = m.store.entries.first { $0.key.contains("lora_B") }!
        // A NaN in one adapter weight: the loss and the gradient are NaN.
        var w = try e.param.read()
        w[0] = .nan
        try e.param.write(w)
        let before = try m.adapterTensors(), momentsBefore = try m.store.moments()
        let r = try m.trainStep(b, hyper: .init(lr: 1e-2))
        XCTAssertFalse(r.applied)
        XCTAssertTrue(r.loss.isNaN)
        XCTAssertEqual(m.step, 0)
        let after = try m.adapterTensors()
        for (k, v) in before {
            XCTAssertEqual(v.values.map(\.bitPattern), after[k]!.values.map(\.bitPattern), k)
        }
        XCTAssertEqual(try m.store.moments().m, momentsBefore.m)
    }

    func testMomentsRoundTrip() throws {
        let m = try model()
        let b = try Self.batch(Self.rows[0...])
        for _ in 0..<2 { _ = try m.trainStep(b, hyper: .init(lr: 1e-2)) }
        let (mm, vv) = try m.store.moments()
        XCTAssertTrue(mm.values.contains { $0.contains { $0 != 0 } })
        let fresh = try model()
        try fresh.store.restoreMoments(m: mm, v: vv, source: "test")
        let back = try fresh.store.moments()
        XCTAssertEqual(back.m, mm)
        XCTAssertEqual(back.v, vv)
        var missing = mm
        missing.removeValue(forKey: mm.keys.sorted()[0])
        XCTAssertThrowsError(try fresh.store.restoreMoments(m: missing, v: vv, source: "opt.safetensors")) { e in
            XCTAssertTrue("\(e)".contains("opt.safetensors"), "\(e)")
        }
    }

    func testNEFTuneNoiseOnlyInTraining() throws {
        let b = try Self.batch(Self.rows[0...])
        let plain = try model(), noisy = try model()
        noisy.neftuneNoiseAlpha = 5
        // Eval mode: no noise.
        XCTAssertEqual(try noisy.logits(b), try plain.logits(b))
        XCTAssertEqual(try noisy.loss(b), try plain.loss(b))
        // Training: the noise changes the loss and the gradients, deterministically per (seed, step).
        let l0 = try plain.computeGradients(b), g0 = try plain.gradientTensors()
        let l1 = try noisy.computeGradients(b), g1 = try noisy.gradientTensors()
        XCTAssertNotEqual(l0, l1)
        let k = g0.keys.sorted()[0]
        XCTAssertNotEqual(g0[k]!, g1[k]!)
        XCTAssertEqual(try noisy.computeGradients(b), l1, "the same (seed, step) draws the same noise")
        noisy.seed = 99
        XCTAssertNotEqual(try noisy.computeGradients(b), l1)
        // alpha/√(T·H) is small against unit-scale embeddings: the loss moves a little, not wildly.
        XCTAssertLessThan(abs(l1 - l0), 0.5)
    }

    /// The decay flag of every trainable tensor equals Trainer.get_decay_parameter_names'
    /// on the PEFT model (scripts/make_decay_fixture.py).
    func testDecayMaskMatchesTransformers() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: fixturesRoot + "/decay/decay.json"))
        let cases = (try JSONSerialization.jsonObject(with: data) as! [String: Any])["cases"] as! [String: [String: Bool]]
        XCTAssertEqual(cases.count, 4)
        for (name, want) in cases {
            var lora = try LoraConfig.load(path: fixturesRoot + "/reference/\(name)/adapter_initial/adapter_config.json")
            lora.inferenceMode = false
            let m = try LlamaLoRAModel(modelDirectory: fixturesRoot + "/reference/\(name)/model", lora: lora,
                                       context: try ComputeContext.shared())
            try m.store.setDecayMask(ParameterStore.trainerDecays)
            XCTAssertEqual(try m.store.decayFlags(), want, name)
        }
    }
}
