import Foundation
import LoraOps
import OpenCLRuntime
import XCTest
@testable import LoraModel

/// Issue 8 (memory) and issue 9 (a batch that does not fit): the memory plan,
/// made from the configs and the checkpoint's headers before any weight is
/// loaded, against what the model really allocates (`CLContext.liveBytes`,
/// counted at clCreateBuffer), on every reference fixture (adapted and saved
/// modules, trained biases, the embedding adapter, tied weights, layer patterns).
final class MemoryPlanTests: XCTestCase {
    static let cases = ["llama_gqa_untied", "llama_tied_rslora_regex", "llama_layers_patterns", "qwen2_bias_lora_only",
                        "llama_modules_to_save", "mistral_embed_lm_head", "llama_bias_all", "qwen3_qk_norm",
                        "smollm3_nope", "phi3_fused_longrope", "phi3_untied_lm_head", "mistral_sliding_window", "gemma3_sliding",
                        "gemma3_softcap"]

    /// A context of its own: its scratch slots start empty, so what one step adds is measurable.
    func freshContext() throws -> ComputeContext {
        let shared = try ComputeContext.shared()
        return try ComputeContext(device: shared.device, config: shared.config)
    }

    func lora(_ name: String, dropout: Double = 0) throws -> LoraConfig {
        var l = try LoraConfig.load(path: fixturesRoot + "/\(name)/adapter_initial/adapter_config.json")
        l.inferenceMode = false
        l.loraDropout = dropout
        return l
    }

    /// The plan's worst case, made real: every id distinct while N ≤ V (else every
    /// id present), every label counted, one sample per row.
    /// Every id once before any repeats, the padding id (no gradient: left out of the embedding's groups) never.
    func worstCaseBatch(batch: Int, seq: Int, vocab: Int, pad: Int? = nil) throws -> TokenBatch {
        let usable = (0..<vocab).filter { $0 != pad }
        let ids = (0..<batch).map { b in (0..<seq).map { t in usable[(b * seq + t) % usable.count] } }
        return try TokenBatch(inputIDs: ids)
    }

    /// Activations (one step's ActivationPlan and the LoRA u buffers), the
    /// parameter store and the scratch of a training step equal the plan, byte
    /// for byte; a second step and an evaluation of the same shape allocate nothing more.
    func testPlannedBytesEqualWhatTheModelAllocates() throws {
        let shapes: [(b: Int, t: Int, chunk: Int, ckpt: Bool, dropout: Double)] = [
            (3, 20, 16, false, 0),       // N = 60 ≤ V: 60 unique ids; 57 counted rows = 3 chunks of 16 + 9
            (4, 32, 256, true, 0.1),     // N = 128 > V; checkpointing; dropout's scratch
            (1, 5, 2, false, 0.05),
        ]
        for name in Self.cases {
            for s in shapes {
                let what = "\(name) \(s)"
                let ctx = try freshContext()
                let (config, checkpoint) = try ModelSource.open(fixturesRoot + "/\(name)/model")
                let l = try lora(name, dropout: s.dropout)
                let plan = try MemoryPlan.make(
                    config: config, adapterPlan: try AdapterPlan(config: config, lora: l), checkpoint: checkpoint,
                    shape: .init(batch: s.b, seq: s.t, logitsChunkRows: s.chunk, gradientCheckpointing: s.ckpt),
                    alignmentBytes: ctx.device.baseAddressAlignmentBytes)
                let live = { ctx.context.liveBytes }

                var before = live()
                let store = try ParameterStore(ctx, specs: plan.adapterPlan.tensors)
                XCTAssertEqual(live() - before, plan.trainableBytes, "\(what): trainable + optimizer")
                XCTAssertEqual(store.total * 17, plan.trainableBytes, "\(what): 4 fp32 buffers and a byte mask")

                let m = try LlamaLoRAModel(config: config, checkpoint: checkpoint, lora: l, context: ctx)
                m.gradientCheckpointing = s.ckpt
                m.logitsChunkRows = s.chunk
                let batch = try worstCaseBatch(batch: s.b, seq: s.t, vocab: config.vocabSize, pad: config.padTokenID)
                before = live()
                _ = try m.prepare(batch)
                XCTAssertEqual(live() - before, plan.activationBytes, "\(what): activations")
                before = live()
                _ = try m.trainStep(batch, hyper: .init(lr: 1e-3))
                try ctx.finish()
                XCTAssertEqual(live() - before, plan.scratchBytes, "\(what): scratch of a training step")
                before = live()
                _ = try m.trainStep(batch, hyper: .init(lr: 1e-3))
                _ = try m.loss(batch)
                XCTAssertEqual(live() - before, 0, "\(what): a second step and an evaluation allocate nothing new")
            }
        }
    }

    /// A frozen W's backward panels within a bound (issue 18): with backwardPanelBytesLimit 4 KiB the plan's scratch is
    /// what a training step allocates (the lm_head's and projections' panels in blocks of rows), smaller than without
    /// the bound, and the gradients agree with the unbounded ones.
    func testBoundedBackwardPanelsArePlannedAsAllocated() throws {
        for name in ["llama_gqa_untied", "qwen2_bias_lora_only"] {
            let (config, checkpoint) = try ModelSource.open(fixturesRoot + "/\(name)/model")
            let l = try lora(name)
            var grads: [[String: [Float]]] = []
            var scratch: [Int] = []
            for limit in [ComputeContext.defaultBackwardPanelBytesLimit, 4096] {
                let ctx = try freshContext()
                ctx.backwardPanelBytesLimit = limit
                var shape = MemoryPlan.Shape(batch: 2, seq: 9)
                shape.backwardPanelBytesLimit = limit
                let plan = try MemoryPlan.make(config: config, adapterPlan: try AdapterPlan(config: config, lora: l), checkpoint: checkpoint,
                                               shape: shape, alignmentBytes: ctx.device.baseAddressAlignmentBytes)
                let m = try LlamaLoRAModel(config: config, checkpoint: checkpoint, lora: l, context: ctx)
                let batch = try worstCaseBatch(batch: 2, seq: 9, vocab: config.vocabSize, pad: config.padTokenID)
                _ = try m.prepare(batch)
                let before = ctx.context.liveBytes
                _ = try m.computeGradients(batch)
                try ctx.finish()
                XCTAssertEqual(ctx.context.liveBytes - before, plan.scratchBytes, "\(name) limit \(limit): scratch")
                scratch.append(plan.scratchBytes)
                grads.append(try m.gradientTensors())
            }
            XCTAssertLessThan(scratch[1], scratch[0], name)
            for (k, g) in grads[0] {
                XCTAssertLessThanOrEqual(relErr(grads[1][k]!, g), 1e-6, "\(name) \(k)")
            }
        }
    }

    /// The staged forward's fp32 panels (scratch slot 10, issue 18): on llama_q.gguf's kept Q8_0/Q4_0/Q4_1 blocks with
    /// every format staged, the plan's scratch is what a training step at 2 × 40 tokens allocates, for a bound of one
    /// panel and for the default; with no format staged the slot is not planned (and not allocated).
    func testStagedPanelsArePlannedAsAllocated() throws {
        let gguf = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/gguf/llama_q.gguf").path
        let (config, checkpoint) = try ModelSource.open(gguf)
        var l = LoraConfig(r: 4, loraAlpha: 8, targetModules: .list(["q_proj", "v_proj", "down_proj"]))
        l.loraDropout = 0.1
        let shared = try ComputeContext.shared()
        var planned: [Int] = []
        for (staged, limit) in [(true, 4096), (true, ComputeContext.defaultStagedPanelBytesLimit), (false, 4096)] {
            var cfg = shared.config
            cfg.quantStaged = staged ? Set(WeightStorage.allCases.filter(\.isQuantized)) : []
            let ctx = try ComputeContext(device: shared.device, config: cfg)
            ctx.stagedPanelBytesLimit = limit
            var shape = MemoryPlan.Shape(batch: 2, seq: 40)
            shape.stagedFormats = cfg.quantStaged
            shape.stagedPanelBytesLimit = limit
            let plan = try MemoryPlan.make(config: config, adapterPlan: try AdapterPlan(config: config, lora: l), checkpoint: checkpoint,
                                           shape: shape, alignmentBytes: ctx.device.baseAddressAlignmentBytes)
            XCTAssertEqual(plan.lines(limits: try MemoryLimits(device: ctx.device)).isEmpty, false)
            XCTAssertEqual(plan.items.contains { $0.name.hasPrefix("scratch 10:") }, staged, "staged \(staged) limit \(limit)")
            let m = try LlamaLoRAModel(config: config, checkpoint: checkpoint, lora: l, context: ctx)
            let batch = try worstCaseBatch(batch: 2, seq: 40, vocab: config.vocabSize, pad: config.padTokenID)
            _ = try m.prepare(batch)
            let before = ctx.context.liveBytes
            _ = try m.computeGradients(batch)
            try ctx.finish()
            XCTAssertEqual(ctx.context.liveBytes - before, plan.scratchBytes, "staged \(staged) limit \(limit): scratch")
            planned.append(plan.scratchBytes)
        }
        XCTAssertGreaterThan(planned[1], planned[0], "a larger bound holds more panels")
        XCTAssertGreaterThan(planned[0], planned[2], "staging adds its slot")
    }

    /// RoPE tables for the positions a run reaches (issue 18: plan for what the run needs): a model made with
    /// ropePositions 20 allocates exactly the planned tables less than one made for max_position_embeddings (64), gives
    /// the same logits bit for bit on a 20-token batch (LongRoPE's long pair and Gemma 3's sliding pair too), and refuses
    /// position 20 naming the limit.
    func testRoPETablesCoverThePositionsAsked() throws {
        for name in ["llama_gqa_untied", "phi3_fused_longrope", "gemma3_sliding"] {
            let (c, checkpoint) = try ModelSource.open(fixturesRoot + "/\(name)/model")
            let l = try lora(name)
            let ctx = try freshContext()
            var before = ctx.context.liveBytes
            let full = try LlamaLoRAModel(config: c, checkpoint: checkpoint, lora: l, context: ctx)
            let fullBytes = ctx.context.liveBytes - before
            before = ctx.context.liveBytes
            let short = try LlamaLoRAModel(config: c, checkpoint: checkpoint, lora: l, context: ctx, ropePositions: 20)
            let shortBytes = ctx.context.liveBytes - before
            XCTAssertEqual(short.ropePositions, 20)
            let ap = try AdapterPlan(config: c, lora: l)
            func planned(_ positions: Int?) throws -> Int {
                try MemoryPlan.make(config: c, adapterPlan: ap, checkpoint: checkpoint,
                                    shape: .init(batch: 1, seq: 20, ropePositions: positions), alignmentBytes: ctx.device.baseAddressAlignmentBytes).weightBytes
            }
            XCTAssertGreaterThan(fullBytes, shortBytes, name)
            XCTAssertEqual(fullBytes - shortBytes, try planned(nil) - planned(20), "\(name): tables planned as allocated")
            let ids = [(0..<20).map { ($0 * 7 + 3) % c.vocabSize }]
            XCTAssertEqual(try short.logits(try TokenBatch(inputIDs: ids)), try full.logits(try TokenBatch(inputIDs: ids)), name)
            XCTAssertThrowsError(try short.logits(try TokenBatch(inputIDs: [ids[0] + [5]]))) {
                XCTAssertTrue("\($0)".contains("position id 20 (row 0, token 20) is not below the 20 positions this model's RoPE tables "
                                                + "were made for"), "\($0)")
            }
            XCTAssertThrowsError(try InferenceSession(model: short, maxTokens: 21))
        }
    }

    /// The frozen weights follow the rule of `MemoryPlan.frozenLinearBytes`: one packed
    /// layout per frozen matrix (the embedding and every frozen linear; a tied lm_head
    /// shares the embedding's), 2 bytes an element for an F16/BF16 checkpoint, 4
    /// otherwise; norms, RoPE tables and frozen biases in fp32. The model allocates
    /// exactly this (`LlamaLoRAModel.frozenWeightBytes` counts the packed part).
    func testFrozenWeightsFollowTheRule() throws {
        for name in Self.cases {
            let (c, checkpoint) = try ModelSource.open(fixturesRoot + "/\(name)/model")
            let l = try lora(name)
            let ap = try AdapterPlan(config: c, lora: l)
            let shape = MemoryPlan.Shape(batch: 2, seq: 8)
            let plan = try MemoryPlan.make(config: c, adapterPlan: ap, checkpoint: checkpoint, shape: shape, alignmentBytes: 128)
            // The rule, written out: panels of 16 output columns, `in` rows each.
            func packed(_ din: Int, _ dout: Int, _ bytes: Int) -> Int { (dout + 15) / 16 * 16 * din * bytes }
            let H = c.hiddenSize, trainedKeys = Set(ap.tensors.map(\.key))
            func expected(bytes: Int) -> Int {
                // Norm weights (final, two per layer (Gemma 3: four), and q_norm and k_norm of D per layer) stay fp32; RoPE
                // tables (a second pair for LongRoPE's long factors or Gemma 3's sliding layers).
                let norms = H + c.layerNorms.count * c.numLayers * H + (c.qkNorm ? 2 * c.numLayers * c.headDim : 0)
                var tables = 2 * c.maxPositionEmbeddings * c.rotaryDim
                if case .longrope = c.rope.kind { tables *= 2 }
                if c.slidingRope != nil { tables *= 2 }
                var e = 4 * (norms + tables) + packed(H, c.vocabSize, bytes)
                for s in ap.linears {
                    if !ap.isSaved(s.path) && !(s.path == "lm_head" && c.tieWordEmbeddings) {
                        e += packed(s.inFeatures, s.outFeatures, bytes)
                    }
                    if s.hasBias && !trainedKeys.contains(ap.biasKey(s.path)) { e += 4 * s.outFeatures }
                }
                return e
            }
            // The fixtures are stored in one dtype each (F32, F16 or BF16), read from the headers.
            let stored = Set(plan.dtypes.values)
            XCTAssertEqual(stored.count, 1, name)
            let bytes = stored.isSubset(of: ["F16", "BF16"]) ? 2 : 4
            XCTAssertEqual(plan.weightBytes, expected(bytes: bytes), "\(name): \(stored) checkpoint")
            for (dtype, bytes) in [("F32", 4), ("BF16", 2), ("F16", 2)] {
                let p = MemoryPlan(config: c, adapterPlan: ap, dtypes: plan.dtypes.mapValues { _ in dtype }, shape: shape,
                                   alignmentBytes: 128)
                XCTAssertEqual(p.weightBytes, expected(bytes: bytes), "\(name) as a \(dtype) checkpoint")
            }
            XCTAssertEqual(MemoryPlan.frozenLinearBytes(inFeatures: 4096, outFeatures: 4096, dtype: "F16"), 4096 * 4096 * 2)
            XCTAssertEqual(MemoryPlan.frozenLinearBytes(inFeatures: 10, outFeatures: 17, dtype: "F32"), 10 * 32 * 4)

            let ctx = try freshContext()
            let before = ctx.context.liveBytes
            let m = try LlamaLoRAModel(config: c, checkpoint: checkpoint, lora: l, context: ctx)
            let allocated = ctx.context.liveBytes - before - plan.trainableBytes
            XCTAssertEqual(allocated, plan.weightBytes, name)
            if ProcessInfo.processInfo.environment["LORA_GPU_PRINT_MEMORY"] != nil {
                print("MEMORY \(name): frozen weights allocated \(allocated) B, planned \(plan.weightBytes) B")
            }
            XCTAssertEqual(m.logitsChunkRows, MemoryPlan.Shape(batch: 1, seq: 1).logitsChunkRows,
                           "the trainer plans with the model's default logits chunk")
        }
    }

    /// A new batch shape releases the old activation plan before building its own:
    /// the peak of the switch is the larger of the two, never both.
    func testANewShapeReleasesTheOldActivationsFirst() throws {
        let ctx = try freshContext()
        let name = "llama_gqa_untied"
        let m = try LlamaLoRAModel(modelDirectory: fixturesRoot + "/\(name)/model", lora: try lora(name), context: ctx)
        let a = try worstCaseBatch(batch: 2, seq: 32, vocab: 67), b = try worstCaseBatch(batch: 2, seq: 30, vocab: 67)
        _ = try m.trainStep(a, hyper: .init(lr: 1e-3))
        try ctx.finish()
        let withA = ctx.context.liveBytes
        ctx.context.resetPeakBytes()
        _ = try m.trainStep(b, hyper: .init(lr: 1e-3))
        try ctx.finish()
        let withB = ctx.context.liveBytes
        XCTAssertLessThan(withB, withA, "the smaller shape's activations replaced the larger's")
        XCTAssertEqual(ctx.context.peakBytes, max(withA, withB), "both activation plans were alive at once")
        // Growing: a larger shape than any before (activations, LoRA u buffers and scratch
        // slots all grow) frees each smaller buffer before making its replacement.
        let c = try worstCaseBatch(batch: 3, seq: 32, vocab: 67)
        ctx.context.resetPeakBytes()
        _ = try m.trainStep(c, hyper: .init(lr: 1e-3))
        try ctx.finish()
        let withC = ctx.context.liveBytes
        XCTAssertGreaterThan(withC, withA)
        XCTAssertEqual(ctx.context.peakBytes, withC, "a smaller buffer outlived its larger replacement")
        // One adapted linear's u (N, r) growing on its own: the old one is freed first.
        let lin = try XCTUnwrap(m.layers.flatMap(\.linears).first { $0.lora != nil })
        let r = try XCTUnwrap(lin.lora).settings.rank, old = try XCTUnwrap(lin.u).count
        ctx.context.resetPeakBytes()
        try lin.plan(ctx, tokens: 4 * old / r)
        XCTAssertEqual(ctx.context.liveBytes, withC + 4 * (4 * old - old))
        XCTAssertEqual(ctx.context.peakBytes, ctx.context.liveBytes, "the old u outlived the new one's allocation")
    }

    /// Each adapted linear's u is sized for the current batch shape both ways: a smaller shape
    /// after a larger one shrinks it (issue 22, item 13). An inference session keeps its own u,
    /// so a training plan resizing Linear.u while a session lives changes nothing it computes.
    func testUFollowsTheShapeBothWaysAndASessionKeepsItsOwn() throws {
        let ctx = try freshContext()
        let name = "llama_gqa_untied"
        let m = try LlamaLoRAModel(modelDirectory: fixturesRoot + "/\(name)/model", lora: try lora(name), context: ctx)
        let adapted = (m.layers.flatMap(\.linears) + [m.lmHead]).filter { $0.lora != nil }
        XCTAssertFalse(adapted.isEmpty)
        func uRows() -> Set<Int> { Set(adapted.map { ($0.u?.count ?? -1) / $0.lora!.settings.rank }) }
        let prompt = [5, 9, 13, 2, 40, 7]
        let session = try InferenceSession(model: m, maxTokens: 16, chunkTokens: 4)
        let expected = try session.append(prompt)
        _ = try m.trainStep(try worstCaseBatch(batch: 3, seq: 32, vocab: 67), hyper: .init(lr: 0))
        XCTAssertEqual(uRows(), [96])
        let large = ctx.context.liveBytes
        _ = try m.trainStep(try worstCaseBatch(batch: 1, seq: 5, vocab: 67), hyper: .init(lr: 0))
        try ctx.finish()
        XCTAssertEqual(uRows(), [5], "u shrank to the smaller shape")
        let uBytes = adapted.map { 4 * $0.lora!.settings.rank }.reduce(0, +)
        XCTAssertLessThanOrEqual(ctx.context.liveBytes, large - 91 * uBytes, "the larger u buffers were freed")
        // The session (made when u held other sizes) still computes the same logits.
        session.reset()
        XCTAssertEqual(try session.append(prompt), expected)
    }

    /// logits() keeps one chunk of rows × V on the device (the plan's logits chunk) and
    /// gives the same values whatever the chunk: bit for bit, and against transformers.
    func testLogitsAreChunkedWithoutChangingThem() throws {
        for name in ["llama_gqa_untied", "mistral_embed_lm_head", "llama_modules_to_save"] {
            let rc = try ReferenceCase(name)
            let m = try rc.model()
            let b = try rc.batch
            m.logitsChunkRows = 4096
            let whole = try m.logits(b)
            let ref = try SafeTensorsFile(path: rc.dir + "/logits_step0.safetensors").floats("logits").values
            XCTAssertLessThanOrEqual(relErr(whole, ref), 1e-5, name)
            for chunk in [1, 3, 5] {
                m.logitsChunkRows = chunk
                XCTAssertEqual(try m.logits(b), whole, "\(name): logits with chunks of \(chunk) rows")
            }
            // Same shape again: no new tokens × vocabulary buffer (only the batch's small id groups are remade).
            let ctx = m.ctx.context
            _ = try m.logits(b)
            let before = ctx.liveBytes
            ctx.resetPeakBytes()
            _ = try m.logits(b)
            XCTAssertEqual(ctx.liveBytes, before, name)
            XCTAssertLessThan(ctx.peakBytes - before, b.tokens * m.config.vocabSize * 4 / 4, "\(name): logits() allocated tokens × V")
        }
    }

    /// LORA_GPU_DEVICE_MEMORY overrides the device's numbers; a bad value names the variable.
    func testLimitsOverride() throws {
        let device = try ComputeContext.shared().device
        let plain = try MemoryLimits(device: device, environment: [:])
        XCTAssertEqual(plain.globalBytes, device.globalMemoryBytes)
        XCTAssertEqual(plain.maxAllocationBytes, device.maxAllocationBytes)
        XCTAssertGreaterThan(plain.globalBytes, 0)
        let both = try MemoryLimits(device: device, environment: ["LORA_GPU_DEVICE_MEMORY": "1.5G, 512m"])
        XCTAssertEqual(both.globalBytes, 1536 << 20)
        XCTAssertEqual(both.maxAllocationBytes, 512 << 20)
        XCTAssertEqual(both.globalSource, "LORA_GPU_DEVICE_MEMORY")
        let one = try MemoryLimits(device: device, environment: ["LORA_GPU_DEVICE_MEMORY": "65536"])
        XCTAssertEqual(one.globalBytes, 65536)
        XCTAssertEqual(one.maxAllocationBytes, device.maxAllocationBytes)
        for bad in ["lots", "-1G", "1G,2G,3G", "1G,x", "0"] {
            XCTAssertThrowsError(try MemoryLimits(device: device, environment: ["LORA_GPU_DEVICE_MEMORY": bad])) { e in
                XCTAssertTrue("\(e)".contains("LORA_GPU_DEVICE_MEMORY=\(bad)"), "\(e)")
            }
        }
    }

    /// Absurd shapes saturate instead of trapping, and are reported as not fitting.
    func testAbsurdShapesDoNotTrap() throws {
        let (c, checkpoint) = try ModelSource.open(fixturesRoot + "/llama_gqa_untied/model")
        let plan = try MemoryPlan.make(config: c, adapterPlan: try AdapterPlan(config: c, lora: try lora("llama_gqa_untied")),
                                       checkpoint: checkpoint, shape: .init(batch: Int.max / 2, seq: 64), alignmentBytes: 128)
        XCTAssertEqual(plan.totalBytes, Int.max)
        XCTAssertEqual(MemoryPlan.format(plan.totalBytes), "> 8 EiB")
        let limits = MemoryLimits(deviceName: "test", globalBytes: 1 << 40, maxAllocationBytes: 1 << 38)
        XCTAssertTrue(plan.problems(limits: limits).total)
        XCTAssertNotNil(plan.problems(limits: limits).buffer)
        // Past the kernels' 32-bit indices even where the device would allocate it:
        // 700000 × 64 tokens × intermediate 48 = 2150400000 elements > Int32.max.
        let wide = plan.with(shape: .init(batch: 700_000, seq: 64))
        let huge = MemoryLimits(deviceName: "test", globalBytes: 1 << 60, maxAllocationBytes: 1 << 60)
        let p = wide.problems(limits: huge)
        XCTAssertFalse(p.fit)
        XCTAssertEqual(p.elements?.elements, 2_150_400_000)
        XCTAssertEqual(p.elements?.name, "each layer's gate, up or act (44800000, 48)")
        XCTAssertTrue(plan.with(shape: .init(batch: 600_000, seq: 64)).problems(limits: huge).fit)
    }
}
