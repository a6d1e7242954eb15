import Foundation
import LoraOps
import OpenCLRuntime
import XCTest
@testable import LoraModel

/// Issue 9: a frozen weight larger than one device buffer (CL_DEVICE_MAX_MEM_ALLOC_SIZE;
/// the fp32 embedding of a 150k-vocabulary 72B model is 5 GB) is kept in parts.
/// Here every fixture is loaded under a per-buffer limit that splits its
/// embedding (and an untied lm_head) into parts, and must still match
/// PyTorch + PEFT: logits, loss, gradients and the trained adapter — and give
/// the very logits of the model loaded whole.
final class SplitModelTests: XCTestCase {
    /// A limit that keeps every layer's matrix whole (the largest of them fits
    /// exactly) and splits the V = 67 rows of the embedding and an untied lm_head.
    func limit(_ m: LlamaLoRAModel) -> Int {
        m.layers.flatMap(\.linears).compactMap(\.frozen).map(\.deviceBytes).max() ?? 0
    }

    func testEveryFixtureMatchesPEFTWithItsEmbeddingInParts() throws {
        var splitCases = 0
        for name in PEFTParityTests.cases {
            let rc = try ReferenceCase(name)
            let whole = try rc.model()
            let bytes = limit(whole)
            // Phi-3's fused gate_up_proj (2·48 rows) outweighs its 67-row embedding: no limit splits the one alone.
            if let e = whole.embeddingTable, e.deviceBytes <= bytes { continue }
            splitCases += 1
            let split = try rc.model(bufferLimitBytes: bytes)
            XCTAssertEqual(whole.embeddingTable?.parts.count, 1, name)
            XCTAssertGreaterThanOrEqual(split.embeddingTable?.parts.count ?? 0, 2, "\(name): the embedding in parts")
            if !split.config.tieWordEmbeddings, let head = split.lmHead.frozen {
                XCTAssertGreaterThanOrEqual(head.parts.count, 2, "\(name): the untied lm_head in parts")
            }
            for l in split.layers.flatMap(\.linears) { XCTAssertLessThanOrEqual(l.frozen?.parts.count ?? 1, 1, "\(name): \(l.path)") }
            for f in split.frozenMatrices {
                for p in f.parts { XCTAssertLessThanOrEqual(p.panels.deviceBytes, bytes, "\(name): a part past the limit") }
            }
            XCTAssertEqual(split.frozenWeightBytes, whole.frozenWeightBytes, "\(name): parts pad no more than the whole")
            // Planned from the headers as loaded.
            let (config, source) = try ModelSource.open(rc.dir + "/model")
            let planned = try LlamaLoRAModel.frozenWeightPlan(config: config, lora: split.lora, checkpoint: source,
                                                              bufferLimitBytes: bytes)
            XCTAssertEqual(planned.bytes, split.frozenWeightBytes, "\(name): planned bytes of the parts")
            // The same logits as the model kept whole, bit for bit (each logit is the same sum).
            let b = try rc.batch
            XCTAssertEqual(try split.logits(b), try whole.logits(b), "\(name): logits split vs whole")
            // And PyTorch + PEFT's logits, loss, gradients and trained adapter.
            try checkLogitsAndLoss(rc, bufferLimitBytes: bytes)
            try checkGradients(rc, bufferLimitBytes: bytes)
            try checkTraining(rc, bufferLimitBytes: bytes)
        }
        let phi3 = PEFTParityTests.cases.filter { $0.hasPrefix("phi3_") }.count
        XCTAssertGreaterThanOrEqual(splitCases, PEFTParityTests.cases.count - phi3, "every fixture but Phi-3's splits its embedding")
    }

    /// The memory plan of a split model equals what it allocates: the weights'
    /// parts and a step's scratch (the backward panels of the largest part only).
    func testPlanOfPartsEqualsWhatTheModelAllocates() throws {
        let shared = try ComputeContext.shared()
        for name in ["llama_gqa_untied", "llama_tied_rslora_regex", "mistral_embed_lm_head"] {
            let ctx = try ComputeContext(device: shared.device, config: shared.config)
            let (config, checkpoint) = try ModelSource.open(fixturesRoot + "/\(name)/model")
            var l = try LoraConfig.load(path: fixturesRoot + "/\(name)/adapter_initial/adapter_config.json")
            l.inferenceMode = false
            let probe = try LlamaLoRAModel(config: config, checkpoint: checkpoint, lora: l, context: ctx)
            let bytes = limit(probe)
            let wholePlan = try MemoryPlan.make(config: config, adapterPlan: try AdapterPlan(config: config, lora: l),
                                                checkpoint: checkpoint, shape: .init(batch: 2, seq: 16),
                                                alignmentBytes: ctx.device.baseAddressAlignmentBytes)
            let ctx2 = try ComputeContext(device: shared.device, config: shared.config)
            let plan = try MemoryPlan.make(config: config, adapterPlan: try AdapterPlan(config: config, lora: l),
                                           checkpoint: checkpoint, shape: .init(batch: 2, seq: 16),
                                           alignmentBytes: ctx2.device.baseAddressAlignmentBytes, bufferLimitBytes: bytes)
            XCTAssertEqual(plan.weightBytes, wholePlan.weightBytes, "\(name): the parts hold what the whole held")
            XCTAssertTrue(plan.items.contains { $0.name.contains("model.embed_tokens.weight") && $0.name.contains(" parts: ") },
                          "\(name): \(plan.items.map(\.name))")
            XCTAssertLessThanOrEqual(plan.largest?.bytes ?? 0, max(bytes, plan.items.filter { $0.category != .weights }
                                                                        .map(\.bytes).max() ?? 0))
            let m = try LlamaLoRAModel(config: config, checkpoint: checkpoint, lora: l, context: ctx2, bufferLimitBytes: bytes)
            let batch = try TokenBatch(inputIDs: (0..<2).map { r in (0..<16).map { (r * 16 + $0 * 5) % config.vocabSize } })
            _ = try m.prepare(batch)
            let before = ctx2.context.liveBytes
            _ = try m.trainStep(batch, hyper: .init(lr: 1e-3))
            try ctx2.finish()
            XCTAssertEqual(ctx2.context.liveBytes - before, plan.scratchBytes, "\(name): scratch of a step with parts")
            XCTAssertLessThan(plan.scratchBytes, wholePlan.scratchBytes, "\(name): smaller backward panels")
        }
    }

    /// Prefill and decode from a split model (the KV-cache path): the logits of the model kept whole.
    func testGenerationFromPartsEqualsWhole() throws {
        let rc = try ReferenceCase("mistral_embed_lm_head")
        let whole = try rc.model()
        let split = try rc.model(bufferLimitBytes: limit(whole))
        let prompt = [1, 5, 9, 33, 66, 2]
        let a = try InferenceSession(model: whole, maxTokens: 24)
        let b = try InferenceSession(model: split, maxTokens: 24)
        XCTAssertEqual(try b.appendReturningAllLogits(prompt), try a.appendReturningAllLogits(prompt), "prefill logits")
        for t in [7, 64, 31] { XCTAssertEqual(try b.append([t]), try a.append([t]), "decode of \(t)") }
    }

    /// A saved adapter that carries the embedding's and lm_head's base layers
    /// (PEFT saves them when they are targeted) reads them back part by part:
    /// the same file as from the model kept whole.
    func testSavedBaseLayersFromPartsEqualWhole() throws {
        let rc = try ReferenceCase("mistral_embed_lm_head")
        let whole = try rc.model()
        let split = try rc.model(bufferLimitBytes: limit(whole))
        XCTAssertFalse(whole.savedEmbeddingBaseLayers.isEmpty, "the fixture saves base layers")
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("split-save-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try whole.saveAdapter(directory: dir + "/whole", baseModel: "m")
        try split.saveAdapter(directory: dir + "/split", baseModel: "m")
        let a = try Data(contentsOf: URL(fileURLWithPath: dir + "/whole/adapter_model.safetensors"))
        let b = try Data(contentsOf: URL(fileURLWithPath: dir + "/split/adapter_model.safetensors"))
        XCTAssertGreaterThan(a.count, whole.config.vocabSize * whole.config.hiddenSize * 4)
        XCTAssertEqual(a, b, "adapter files from the whole and the split model")
    }

    /// The grouping rule of the trainable tensors' flat buffers.
    func testTrainableGroupingRule() {
        // No limit, or everything fits: one group (alignment 128 bytes = 32 floats pads each tensor).
        XCTAssertEqual(ParameterStore.grouping(counts: [10, 40, 5], alignmentBytes: 128, bufferLimitBytes: 0).map(\.total), [128])
        XCTAssertEqual(ParameterStore.grouping(counts: [10, 40, 5], alignmentBytes: 128, bufferLimitBytes: 512).map(\.specs),
                       [0..<3])
        // 96 floats per buffer: [32, 64] then [32].
        let g = ParameterStore.grouping(counts: [10, 40, 5], alignmentBytes: 128, bufferLimitBytes: 96 * 4)
        XCTAssertEqual(g.map(\.specs), [0..<2, 2..<3])
        XCTAssertEqual(g.map(\.total), [96, 32])
        // A tensor past the limit by itself: a group of its own, whatever its neighbours.
        let h = ParameterStore.grouping(counts: [10, 500, 5, 7], alignmentBytes: 128, bufferLimitBytes: 96 * 4)
        XCTAssertEqual(h.map(\.specs), [0..<1, 1..<2, 2..<4])
        XCTAssertEqual(h.map(\.total), [32, 512, 64])
        XCTAssertEqual(ParameterStore.grouping(counts: [], alignmentBytes: 128, bufferLimitBytes: 64).map(\.total), [1])
    }

    /// A limit small enough that the trainable tensors (LoRA pairs, trained biases,
    /// a trained lm_head copy, the embedding adapter) take several groups of flat
    /// buffers — and frozen weights parts — still matches PyTorch + PEFT: the
    /// gradient norm (clipping) is summed over the groups, AdamW runs on each.
    func testEveryFixtureMatchesPEFTWithTrainablesInGroups() throws {
        for name in PEFTParityTests.cases {
            let rc = try ReferenceCase(name)
            let whole = try rc.model()
            let align = max(whole.ctx.device.baseAddressAlignmentBytes / 4, 1)
            let largest = whole.store.entries.map { ($0.count + align - 1) / align * align * 4 }.max() ?? 0
            let bytes = max(largest, limit(whole))
            let grouped = try rc.model(bufferLimitBytes: bytes)
            XCTAssertEqual(whole.store.groups.count, 1, name)
            XCTAssertGreaterThanOrEqual(grouped.store.groups.count, 2, "\(name): the trainable tensors in groups")
            for g in grouped.store.groups { XCTAssertLessThanOrEqual(g.total * 4, bytes, "\(name): a group past the limit") }
            XCTAssertEqual(grouped.store.parameterCount, whole.store.parameterCount, name)
            try checkLogitsAndLoss(rc, bufferLimitBytes: bytes)
            try checkGradients(rc, bufferLimitBytes: bytes)
            try checkTraining(rc, bufferLimitBytes: bytes)
        }
    }

    /// Grouped buffers: the plan's trainable bytes are what the store allocates,
    /// the optimizer state round-trips by key, and the sharded step (the
    /// data-parallel path, here one rank) equals the plain step.
    func testGroupedStoreIsPlannedSavedAndShardedLikeOne() throws {
        let rc = try ReferenceCase("llama_modules_to_save")
        let whole = try rc.model()
        let align = max(whole.ctx.device.baseAddressAlignmentBytes / 4, 1)
        let bytes = max(whole.store.entries.map { ($0.count + align - 1) / align * align * 4 }.max() ?? 0, limit(whole))
        let (config, checkpoint) = try ModelSource.open(rc.dir + "/model")
        let shared = try ComputeContext.shared()
        let ctx = try ComputeContext(device: shared.device, config: shared.config)
        let plan = try MemoryPlan.make(config: config, adapterPlan: whole.adapterPlan, checkpoint: checkpoint,
                                       shape: .init(batch: 1, seq: 8), alignmentBytes: ctx.device.baseAddressAlignmentBytes,
                                       bufferLimitBytes: bytes)
        let before = ctx.context.liveBytes
        let store = try ParameterStore(ctx, specs: whole.adapterPlan.tensors, bufferLimitBytes: bytes)
        XCTAssertGreaterThanOrEqual(store.groups.count, 2)
        XCTAssertEqual(ctx.context.liveBytes - before, plan.trainableBytes, "planned trainable bytes of the groups")
        XCTAssertEqual(plan.items.filter { $0.name.hasPrefix("AdamW first moments") }.count, store.groups.count)

        let a = try rc.model(bufferLimitBytes: bytes), b = try rc.model(bufferLimitBytes: bytes)
        let batch = try rc.batch
        _ = try a.trainStep(batch, hyper: rc.hyper)
        _ = try b.trainStep(shard: [(index: 0, batch: batch)], globalTokens: batch.countedTokens, hyper: rc.hyper) { _, s in s }
        XCTAssertEqual(try b.store.read(\.params), try a.store.read(\.params), "sharded step with groups")
        XCTAssertEqual(try b.store.read(\.m), try a.store.read(\.m))
        let (m, v) = try a.store.moments()
        try b.store.fill(\.m, 0)
        try b.store.fill(\.v, 0)
        try b.store.restoreMoments(m: m, v: v, source: "test")
        XCTAssertEqual(try b.store.read(\.m), try a.store.read(\.m), "moments restored by key across groups")
        XCTAssertEqual(try b.store.read(\.v), try a.store.read(\.v))
    }

    /// GGUF tensors are dequantized on the host to fp32 (the case that makes a
    /// 72B embedding 5 GB): uploaded block by block, they give transformers' logits.
    func testGGUFDequantizedWeightsInParts() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: ggufFixtures + "/expected.json"))
        let ids = try XCTUnwrap((try JSONSerialization.jsonObject(with: data) as? [String: Any])?["input_ids"] as? [[Int]])
        for name in GGUFTests.models {
            var lora = LoraConfig()
            lora.inferenceMode = true  // B = 0: the logits are the base model's
            let path = ggufFixtures + "/\(name).gguf"
            let whole = try LlamaLoRAModel(modelDirectory: path, lora: lora, context: try ComputeContext.shared())
            let split = try LlamaLoRAModel(modelDirectory: path, lora: lora, context: try ComputeContext.shared(),
                                           bufferLimitBytes: limit(whole))
            XCTAssertGreaterThanOrEqual(split.embeddingTable?.parts.count ?? 0, 2, name)
            let batch = try TokenBatch(inputIDs: ids)
            let logits = try split.logits(batch)
            XCTAssertEqual(logits, try whole.logits(batch), "\(name): split vs whole")
            let ref = try SafeTensorsFile(path: ggufFixtures + "/\(name).expected.safetensors").floats("logits").values
            XCTAssertLessThanOrEqual(relErr(logits, ref), 1e-5, "\(name): against transformers")
        }
    }

    /// A limit below one block of rows is an error naming the tensor, not a crash.
    func testLimitBelowOneBlockIsNamed() throws {
        let rc = try ReferenceCase("llama_gqa_untied")
        XCTAssertThrowsError(try rc.model(bufferLimitBytes: 1000)) { e in
            XCTAssertTrue("\(e)".contains("model.embed_tokens.weight"), "\(e)")
            XCTAssertTrue("\(e)".contains("1000 bytes"), "\(e)")
        }
    }
}
