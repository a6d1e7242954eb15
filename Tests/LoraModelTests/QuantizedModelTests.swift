import Foundation
import LoraBase
@testable import LoraModel
import LoraOps
import XCTest

/// Issue 18's exactness rule, model by model: a run on quantized storage gives, bit for bit, the numbers of the same
/// run with the weights dequantized to fp32 at load — the logits, the loss and every LoRA gradient, and the adapter
/// after AdamW steps with dropout — for a GGUF base's kept blocks (Q8_0, Q4_0, Q4_1 in llama_q.gguf; Q5_0, Q5_1
/// with a Q8_0 embedding in mistral_q5.gguf; Q4_K, Q5_K, Q6_K quantized by llama.cpp's ggml in llama_kquant.gguf) and for the formats made at load (q8_0, q4_0, nf4) from a safetensors base.
final class QuantizedModelTests: XCTestCase {
    let gguf = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/gguf").path

    /// LoRA on every linear and lm_head, with dropout (the masked extension term of the quantized gemm).
    var lora: LoraConfig {
        var l = LoraConfig(r: 4, loraAlpha: 8, targetModules: .list(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                                      "down_proj", "lm_head"]))
        l.loraDropout = 0.1
        return l
    }

    /// The same checkpoint with every frozen matrix handed over as fp32 values already dequantized: the
    /// "dequantized at load" path of a format made at load (`--quantize none` is that path for a GGUF base).
    final class DequantizedAtLoad: CheckpointSource {
        let base: CheckpointSource
        init(_ base: CheckpointSource) { self.base = base }
        var location: String { base.location }
        func contains(_ name: String) -> Bool { base.contains(name) }
        func checkpointTensor(_ name: String, shape: [Int]) throws -> CheckpointTensor { try base.checkpointTensor(name, shape: shape) }
        func validateTensor(_ name: String, shape: [Int]) throws -> String { try base.validateTensor(name, shape: shape) }
        var tensorNames: [String] { base.tensorNames }
        func frozenTensor(_ name: String, shape: [Int]) throws -> CheckpointTensor {
            .floats(try base.frozenTensor(name, shape: shape).floats(path: location, name: name))
        }
        func frozenDType(_ name: String, shape: [Int]) throws -> String { "F32" }
    }

    /// Runs both models the same way and requires equal numbers; returns the quantized model's storages.
    func checkSame(_ q: LlamaLoRAModel, _ f: LlamaLoRAModel, _ tag: String, checkpointing: Bool = false, rowLength: Int = 13) throws {
        q.gradientCheckpointing = checkpointing
        f.gradientCheckpointing = checkpointing
        let V = q.config.vocabSize
        let ids = (0..<2).map { r in (0..<rowLength).map { (r * 29 + $0 * 11 + 3) % V } }
        let b = try TokenBatch(inputIDs: ids)
        XCTAssertEqual(try q.logits(b), try f.logits(b), "\(tag): logits")
        XCTAssertEqual(try q.computeGradients(b), try f.computeGradients(b), "\(tag): loss")
        let gq = try q.gradientTensors(), gf = try f.gradientTensors()
        XCTAssertEqual(Set(gq.keys), Set(gf.keys))
        for (k, g) in gq { XCTAssertEqual(g, gf[k], "\(tag): gradient \(k)") }
        for s in 0..<3 {
            let rq = try q.trainStep(b, hyper: .init(lr: 1e-2, maxGradNorm: 1))
            let rf = try f.trainStep(b, hyper: .init(lr: 1e-2, maxGradNorm: 1))
            XCTAssertEqual(rq.loss, rf.loss, "\(tag): loss at step \(s + 1)")
            XCTAssertEqual(rq.gradNorm, rf.gradNorm, "\(tag): grad norm at step \(s + 1)")
        }
        let aq = try q.adapterTensors(), af = try f.adapterTensors()
        for (k, t) in aq { XCTAssertEqual(t.values, af[k]?.values, "\(tag): adapter \(k) after 3 steps") }
        XCTAssertEqual(try q.logits(b), try f.logits(b), "\(tag): logits after training")
    }

    func testGGUFBlocksKeptEqualTheDequantizedRun() throws {
        let ctx = try ComputeContext.shared()
        for (file, kinds) in [("llama_q", Set<WeightStorage>([.q8_0, .q4_0, .q4_1])), ("mistral_q5", [.q8_0, .q5_0, .q5_1]),
                              ("llama_kquant", [.q4_k, .q5_k, .q6_k, .q8_0])] {
            for checkpointing in [false, true] {
                let (cq, sq) = try ModelSource.open(gguf + "/\(file).gguf")
                let (cf, sf) = try ModelSource.open(gguf + "/\(file).gguf", quantize: .none)
                let q = try LlamaLoRAModel(config: cq, checkpoint: sq, lora: lora, context: ctx)
                let f = try LlamaLoRAModel(config: cf, checkpoint: sf, lora: lora, context: ctx)
                let kept = Set(q.frozenMatrices.map(\.storage))
                XCTAssertEqual(kept.subtracting([.f32]), kinds, "\(file): the file's block types kept")
                XCTAssertEqual(Set(f.frozenMatrices.map(\.storage)), [.f32], "\(file): --quantize none dequantizes")
                XCTAssertLessThan(q.frozenWeightBytes * 3, f.frozenWeightBytes, "\(file): far fewer bytes")
                let planned = try LlamaLoRAModel.frozenWeightPlan(config: cq, lora: lora, checkpoint: sq)
                XCTAssertEqual(planned.bytes, q.frozenWeightBytes, "\(file): planned = allocated")
                try checkSame(q, f, "\(file) checkpointing \(checkpointing)", checkpointing: checkpointing)
            }
        }
    }

    /// The staged forward (`KernelConfig.quantStaged`: W dequantized once per call into fp32 panels, in blocks of
    /// one panel here) on every format of the three files, at 2 × 40 tokens (staging starts at 64 rows; the
    /// lm_head's 78 counted rows stage too): bit-identical to the dequantized run, LoRA dropout included.
    func testStagedForwardEqualsTheDequantizedRun() throws {
        var cfg = KernelConfig.cpu
        cfg.quantStaged = Set(WeightStorage.allCases.filter(\.isQuantized))
        let ctx = try ComputeContext(device: try ComputeContext.shared().device, config: cfg)
        ctx.stagedPanelBytesLimit = 4096
        XCTAssertEqual(ctx.quantStaged, cfg.quantStaged, "the context starts from its config's choice")
        for file in ["llama_q", "mistral_q5", "llama_kquant"] {
            let (cq, sq) = try ModelSource.open(gguf + "/\(file).gguf")
            let (cf, sf) = try ModelSource.open(gguf + "/\(file).gguf", quantize: .none)
            let q = try LlamaLoRAModel(config: cq, checkpoint: sq, lora: lora, context: ctx)
            let f = try LlamaLoRAModel(config: cf, checkpoint: sf, lora: lora, context: ctx)
            ctx.profileLaunches = true
            try checkSame(q, f, "\(file) staged", rowLength: 40)
            ctx.profileLaunches = false
            let widened = Set(try ctx.takeKernelProfile().map(\.kernel).filter { $0.hasPrefix("widen_panels_") })
            let kinds = Set(q.frozenMatrices.map(\.storage).filter(\.isQuantized).map { "widen_panels_" + $0.rawValue })
            XCTAssertEqual(widened, kinds, "\(file): every kept format ran staged")
        }
    }

    /// Under a per-buffer limit that splits the embedding and lm_head, kept blocks are split where the fp32 copy
    /// is (`FrozenLinear.splitRows(storage:)`): every product adds the same parts in the same order, so the run is
    /// still bit-identical to the dequantized one.
    func testKeptBlocksInPartsEqualTheDequantizedRun() throws {
        let ctx = try ComputeContext.shared()
        let (cq, sq) = try ModelSource.open(gguf + "/llama_q.gguf")
        let (cf, sf) = try ModelSource.open(gguf + "/llama_q.gguf", quantize: .none)
        let whole = try LlamaLoRAModel(config: cf, checkpoint: sf, lora: lora, context: ctx)
        let limit = whole.layers.flatMap(\.linears).compactMap(\.frozen).map(\.deviceBytes).max()!
        let q = try LlamaLoRAModel(config: cq, checkpoint: sq, lora: lora, context: ctx, bufferLimitBytes: limit)
        let f = try LlamaLoRAModel(config: cf, checkpoint: sf, lora: lora, context: ctx, bufferLimitBytes: limit)
        let qe = try XCTUnwrap(q.embeddingTable), fe = try XCTUnwrap(f.embeddingTable)
        XCTAssertGreaterThanOrEqual(qe.parts.count, 2, "the Q8_0 embedding in parts")
        XCTAssertEqual(qe.parts.map(\.rows), fe.parts.map(\.rows), "the same parts as the fp32 copy")
        let planned = try LlamaLoRAModel.frozenWeightPlan(config: cq, lora: lora, checkpoint: sq, bufferLimitBytes: limit)
        XCTAssertEqual(planned.bytes, q.frozenWeightBytes, "planned = allocated in parts")
        try checkSame(q, f, "llama_q in parts")
    }

    /// A 16/32-bit matrix whose rows are not whole blocks keeps its dtype (the fixture's down_proj, in = 48, under
    /// q8_0; everything under nf4, in = 32 or 48): the plan says which, and the run equals the dequantized one.
    func testMatricesOfPartialBlocksKeepTheirType() throws {
        let ctx = try ComputeContext.shared()
        let dir = fixturesRoot + "/llama_gqa_untied/model"
        for mode in [QuantizeMode.q8_0, .nf4] {
            let (c, s) = try ModelSource.open(dir, quantize: mode)
            XCTAssertEqual(try s.frozenDType("model.layers.0.mlp.down_proj.weight", shape: [c.hiddenSize, c.intermediateSize]), "F32")
            XCTAssertEqual(try s.frozenDType("model.layers.0.mlp.up_proj.weight", shape: [c.intermediateSize, c.hiddenSize]),
                           mode == .q8_0 ? "F32 → Q8_0" : "F32")
            let q = try LlamaLoRAModel(config: c, checkpoint: s, lora: lora, context: ctx)
            let kinds = Set(q.frozenMatrices.map(\.storage))
            XCTAssertEqual(kinds, mode == .q8_0 ? [.f32, .q8_0] : [.f32], "\(mode)")
            let planned = try LlamaLoRAModel.frozenWeightPlan(config: c, lora: lora, checkpoint: s)
            XCTAssertEqual(planned.bytes, q.frozenWeightBytes, "\(mode): planned = allocated")
            try checkSame(q, try LlamaLoRAModel(config: c, checkpoint: DequantizedAtLoad(s), lora: lora, context: ctx), "\(mode) partial")
        }
    }

    /// The K-quant file (made by llama.cpp's own quantizer) gives transformers' logits, read from its kept blocks.
    func testKQuantFileGivesTransformersLogits() throws {
        let ids = try (JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: gguf + "/expected.json"))) as! [String: Any])["input_ids"] as! [[Int]]
        var l = LoraConfig()
        l.inferenceMode = true
        let m = try LlamaLoRAModel(modelDirectory: gguf + "/llama_kquant.gguf", lora: l, context: try ComputeContext.shared())
        XCTAssertEqual(Set(m.frozenMatrices.map(\.storage)), [.q4_k, .q5_k, .q6_k, .q8_0])
        let logits = try m.logits(try TokenBatch(inputIDs: ids))
        let ref = try SafeTensorsFile(path: gguf + "/llama_kquant.expected.safetensors").floats("logits").values
        let e = relErr(logits, ref)
        XCTAssertLessThanOrEqual(e, 1e-5, "logits relative error \(e)")
    }

    /// A safetensors Llama with hidden 64 and intermediate 128 (so every matrix holds whole NF4 blocks), random weights.
    func wideModel() throws -> String {
        let fm = FileManager.default
        let dir = fm.temporaryDirectory.appendingPathComponent("quantized-model-\(getpid())").path
        try? fm.removeItem(atPath: dir)
        try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: fixturesRoot + "/llama_gqa_untied/model/config.json"))) as! [String: Any]
        json["hidden_size"] = 64
        json["intermediate_size"] = 128
        json["head_dim"] = 16
        json["vocab_size"] = 96
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: dir + "/config.json"))
        let config = try ModelConfig.load(directory: dir)
        var rng = SplitMix64(seed: 18)
        var tensors: [(name: String, shape: [Int], values: [Float])] = []
        for t in AdapterPlan.checkpointTensors(config) {
            let norm = t.name.hasSuffix("norm.weight")
            var values: [Float] = []
            for _ in 0..<t.shape.reduce(1, *) {
                let u = Float(Int(rng.next() % 2001) - 1000) / 1000
                values.append(norm ? 1 + u / 5 : u / 8)
            }
            tensors.append((t.name, t.shape, values))
        }
        try SafeTensorsWriter.write(tensors, to: dir + "/model.safetensors")
        return dir
    }

    func testFormatsMadeAtLoadEqualTheirDequantizedRun() throws {
        let ctx = try ComputeContext.shared()
        let dir = try wideModel()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for mode in [QuantizeMode.q8_0, .q4_0, .nf4] {
            let (c, s) = try ModelSource.open(dir, quantize: mode)
            let q = try LlamaLoRAModel(config: c, checkpoint: s, lora: lora, context: ctx)
            let f = try LlamaLoRAModel(config: c, checkpoint: DequantizedAtLoad(s), lora: lora, context: ctx)
            XCTAssertEqual(Set(q.frozenMatrices.map(\.storage)), [mode.storage!], "\(mode): every matrix quantized")
            let planned = try LlamaLoRAModel.frozenWeightPlan(config: c, lora: lora, checkpoint: s)
            XCTAssertEqual(planned.bytes, q.frozenWeightBytes, "\(mode): planned = allocated")
            // Bytes per parameter within 3 % of the format's own (Q8_0 1.0625, Q4_0 0.5625, NF4 0.5 + 4/64).
            let per = Double(q.frozenWeightBytes) / Double(q.frozenWeightParameters)
            let own = ["q8_0": 1.0625, "q4_0": 0.5625, "nf4": 0.5625][mode.rawValue]!
            XCTAssertEqual(per, own, accuracy: 0.03 * own, "\(mode): \(per) bytes per parameter")
            try checkSame(q, f, "\(mode)")
            // Quantized a block of rows at a time (the bound of the fp32 copy; an 8B lm_head is converted 64 MiB at a
            // time): the same blocks, byte for byte, as the whole matrix at once — at one row a block and at three.
            for name in ["model.embed_tokens.weight", "model.layers.0.mlp.down_proj.weight"] {
                let shape = try XCTUnwrap(AdapterPlan.checkpointTensors(c).first { $0.name == name }?.shape)
                let whole = try s.frozenTensor(name, shape: shape)
                let saved = QuantizingCheckpoint.blockBytes
                defer { QuantizingCheckpoint.blockBytes = saved }
                for rowsPerBlock in [1, 3] {
                    QuantizingCheckpoint.blockBytes = rowsPerBlock * 4 * shape[1]
                    let (_, s2) = try ModelSource.open(dir, quantize: mode)
                    guard case .ownedBlocks(_, let a, _, _) = whole, case .ownedBlocks(_, let b, _, _) = try s2.frozenTensor(name, shape: shape) else {
                        return XCTFail("\(mode) \(name): not quantized blocks")
                    }
                    XCTAssertEqual(a, b, "\(mode) \(name): \(rowsPerBlock) row(s) a block")
                }
            }
        }
    }
}
