import Foundation
@testable import LoraModel
import LoraOps
import XCTest

/// Frozen weights on the device: one packed copy per matrix, in the
/// checkpoint's type (2 bytes per parameter for F16 / BF16, 4 for F32), and
/// the same numbers as the fp32 path (widening 16-bit values is exact).
final class FrozenStorageTests: XCTestCase {
    /// Elements of the panels of W (out, in): out padded to 16, times in.
    func padded(_ out: Int, _ din: Int) -> Int { (out + 15) / 16 * 16 * din }

    /// (panel elements, parameters) the model's frozen matrices must hold:
    /// the embedding, an untied lm_head, and every linear without a trained copy.
    func expectedFrozen(_ m: LlamaLoRAModel) -> (elements: Int, params: Int) {
        let c = m.config, V = c.vocabSize, H = c.hiddenSize
        var elements = padded(V, H), params = V * H
        var linears = m.layers.flatMap(\.linears)
        if !c.tieWordEmbeddings { linears.append(m.lmHead) }
        for l in linears where l.trainedWeight == nil {
            elements += padded(l.outFeatures, l.inFeatures)
            params += l.outFeatures * l.inFeatures
        }
        return (elements, params)
    }

    func testBytesPerFrozenParameter() throws {
        // The fixtures' checkpoint dtypes: BF16, F16, the rest F32.
        let bytes: [String: Int] = ["llama_tied_rslora_regex": 2, "qwen2_bias_lora_only": 2, "qwen3_qk_norm": 2, "smollm3_nope": 2, "gemma3_sliding": 2,
                                    "phi3_untied_lm_head": 2]
        for name in PEFTParityTests.cases {
            let m = try ReferenceCase(name).model()
            let per = bytes[name] ?? 4
            let (elements, params) = expectedFrozen(m)
            XCTAssertEqual(m.frozenWeightParameters, params, "\(name): frozen parameters")
            XCTAssertEqual(m.frozenWeightBytes, per * elements, "\(name): one copy of \(per) bytes per element")
            XCTAssertLessThanOrEqual(m.frozenWeightBytes, per * elements, "\(name): ≤ \(per) bytes per parameter + padding")
            // The plan from the checkpoint's headers, before loading, says the same.
            var lora = try LoraConfig.load(path: ReferenceCase(name).dir + "/adapter_initial/adapter_config.json")
            lora.inferenceMode = false
            let (config, source) = try ModelSource.open(ReferenceCase(name).dir + "/model")
            let planned = try LlamaLoRAModel.frozenWeightPlan(config: config, lora: lora, checkpoint: source)
            XCTAssertEqual(planned.bytes, m.frozenWeightBytes, "\(name): planned frozen bytes")
            XCTAssertEqual(planned.parameters, params, "\(name): planned frozen parameters")
            XCTAssertGreaterThan(planned.backwardScratchBytes, 0)
            print("\(name): \(m.frozenWeightBytes) frozen bytes for \(params) parameters "
                  + String(format: "(%.2f bytes each with padding)", Double(m.frozenWeightBytes) / Double(params)))
        }
    }

    /// A copy of a fixture model directory with every tensor rewritten: `dtype`
    /// "F32" (the values widened) or "BF16" (the fp32 values truncated to bf16).
    func rewrite(_ rc: ReferenceCase, dtype: String) throws -> (dir: String, values: [String: [Float]]) {
        let fm = FileManager.default
        let dir = fm.temporaryDirectory.appendingPathComponent("frozen-storage-\(rc.name)-\(dtype)-\(getpid())").path
        try? fm.removeItem(atPath: dir)
        try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let src = rc.dir + "/model"
        for f in ["config.json", "generation_config.json"] where fm.fileExists(atPath: src + "/" + f) {
            try fm.copyItem(atPath: src + "/" + f, toPath: dir + "/" + f)
        }
        let files = try fm.contentsOfDirectory(atPath: src).filter { $0.hasSuffix(".safetensors") }
        var tensors: [(name: String, shape: [Int], values: [Float])] = []
        for f in files {
            let st = try SafeTensorsFile(path: src + "/" + f)
            for name in st.tensors.keys.sorted() {
                let (shape, values) = try st.floats(name)
                tensors.append((name, shape, values))
            }
        }
        var out: [String: [Float]] = [:]
        if dtype == "F32" {
            try SafeTensorsWriter.write(tensors, to: dir + "/model.safetensors")
            for t in tensors { out[t.name] = t.values }
        } else {
            // A minimal BF16 safetensors writer: header, then the top 16 bits of each fp32.
            var header: [String: Any] = [:], data = Data(), offset = 0
            for t in tensors.sorted(by: { $0.name < $1.name }) {
                let bits = t.values.map { UInt16(truncatingIfNeeded: $0.bitPattern >> 16) }
                header[t.name] = ["dtype": "BF16", "shape": t.shape, "data_offsets": [offset, offset + 2 * bits.count]]
                offset += 2 * bits.count
                for b in bits { var le = b.littleEndian; withUnsafeBytes(of: &le) { data.append(contentsOf: $0) } }
                out[t.name] = bits.map { Float(bitPattern: UInt32($0) << 16) }
            }
            var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
            while json.count % 8 != 0 { json.append(0x20) }
            var file = Data(), len = UInt64(json.count).littleEndian
            withUnsafeBytes(of: &len) { file.append(contentsOf: $0) }
            file.append(json)
            file.append(data)
            try file.write(to: URL(fileURLWithPath: dir + "/model.safetensors"))
        }
        return (dir, out)
    }

    func model(_ rc: ReferenceCase, directory: String) throws -> LlamaLoRAModel {
        var lora = try LoraConfig.load(path: rc.dir + "/adapter_initial/adapter_config.json")
        lora.inferenceMode = false
        let m = try LlamaLoRAModel(modelDirectory: directory, lora: lora, context: try ComputeContext.shared())
        try m.loadAdapter(directory: rc.dir + "/adapter_initial")
        return m
    }

    /// The 16-bit fixtures give bit-identical logits and gradients to the same
    /// model rewritten in F32, at half the frozen bytes.
    func testSixteenBitEqualsWidenedFP32() throws {
        for name in ["llama_tied_rslora_regex", "qwen2_bias_lora_only"] {
            let rc = try ReferenceCase(name)
            let half = try rc.model()
            let (dir, _) = try rewrite(rc, dtype: "F32")
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let full = try model(rc, directory: dir)
            XCTAssertEqual(half.frozenWeightBytes * 2, full.frozenWeightBytes, "\(name): 16-bit holds half the bytes")
            let b = try rc.batch
            XCTAssertEqual(try half.logits(b), try full.logits(b), "\(name): logits differ from the fp32 copy")
            XCTAssertEqual(try half.computeGradients(b), try full.computeGradients(b), "\(name): loss")
            let g16 = try half.gradientTensors(), g32 = try full.gradientTensors()
            XCTAssertEqual(Set(g16.keys), Set(g32.keys))
            for (k, g) in g16 { XCTAssertEqual(g, g32[k], "\(name): gradient \(k) differs from the fp32 copy") }
            // Generation (KV cache, packed LoRA, prefill then single-token steps) reads the 16-bit panels too.
            let prompt = Array(try rc.batch.inputIDs.prefix(9).map(Int.init))
            let s16 = try InferenceSession(model: half, maxTokens: 16, chunkTokens: 4)
            let s32 = try InferenceSession(model: full, maxTokens: 16, chunkTokens: 4)
            XCTAssertEqual(try s16.appendReturningAllLogits(prompt), try s32.appendReturningAllLogits(prompt), "\(name): prefill")
            XCTAssertEqual(try s16.append([3]), try s32.append([3]), "\(name): decode step")
            print("\(name): generation identical over \(prompt.count) + 1 tokens")
        }
    }

    /// A fixture's model written twice: every tensor in `dtype` ("F16": fp32 rounded to the nearest half,
    /// "BF16": the top 16 bits of each fp32), and the same 16-bit values widened back to fp32 (exact either way).
    func sixteenBitAndWidened(_ rc: ReferenceCase, dtype: String) throws -> (half: String, full: String) {
        let fm = FileManager.default
        let src = rc.dir + "/model"
        var tensors: [(name: String, shape: [Int], values: [Float])] = []
        for f in try fm.contentsOfDirectory(atPath: src).filter({ $0.hasSuffix(".safetensors") }) {
            let st = try SafeTensorsFile(path: src + "/" + f)
            for name in st.tensors.keys.sorted() {
                let (shape, values) = try st.floats(name)
                tensors.append((name, shape, values))
            }
        }
        tensors.sort { $0.name < $1.name }
        func directory(_ kind: String) throws -> String {
            let dir = fm.temporaryDirectory.appendingPathComponent("frozen-storage-\(rc.name)-\(dtype)-\(kind)-\(getpid())").path
            try? fm.removeItem(atPath: dir)
            try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
            for f in ["config.json", "generation_config.json"] where fm.fileExists(atPath: src + "/" + f) {
                try fm.copyItem(atPath: src + "/" + f, toPath: dir + "/" + f)
            }
            return dir
        }
        let half = try directory(dtype), full = try directory("widened")
        var header: [String: Any] = [:], data = Data(), offset = 0, widened: [(name: String, shape: [Int], values: [Float])] = []
        for t in tensors {
            let bits: [UInt16] = dtype == "F16" ? t.values.map { Float16($0).bitPattern }
                : t.values.map { UInt16(truncatingIfNeeded: $0.bitPattern >> 16) }
            header[t.name] = ["dtype": dtype, "shape": t.shape, "data_offsets": [offset, offset + 2 * bits.count]]
            offset += 2 * bits.count
            for b in bits { var le = b.littleEndian; withUnsafeBytes(of: &le) { data.append(contentsOf: $0) } }
            widened.append((t.name, t.shape, dtype == "F16" ? bits.map { Float(Float16(bitPattern: $0)) }
                                                            : bits.map { Float(bitPattern: UInt32($0) << 16) }))
            XCTAssertTrue(widened.last!.values.allSatisfy(\.isFinite), "\(rc.name) \(t.name): representable in \(dtype)")
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }
        var file = Data(), len = UInt64(json.count).littleEndian
        withUnsafeBytes(of: &len) { file.append(contentsOf: $0) }
        file.append(json)
        file.append(data)
        try file.write(to: URL(fileURLWithPath: half + "/model.safetensors"))
        try SafeTensorsWriter.write(widened, to: full + "/model.safetensors")
        return (half, full)
    }

    /// Each newer family's 16-bit storage, F16 and BF16 alike, gives bit-identical logits, loss, gradients and
    /// generation to the same weights widened to fp32, at half the frozen bytes: Qwen3's q/k norms, SmolLM3's NoPE
    /// layer (with biases), Phi-3's fused qkv_proj / gate_up_proj split from one 16-bit panel each (LongRoPE,
    /// partial rotary), Gemma 3's sliding and full layers, four norms and scaled embedding.
    func testNewFamiliesSixteenBitEqualsWidenedFP32() throws {
        for name in ["qwen3_qk_norm", "smollm3_nope", "phi3_fused_longrope", "gemma3_sliding"] {
            for dtype in ["F16", "BF16"] {
                let rc = try ReferenceCase(name), what = "\(name) \(dtype)"
                let (halfDir, fullDir) = try sixteenBitAndWidened(rc, dtype: dtype)
                defer { for d in [halfDir, fullDir] { try? FileManager.default.removeItem(atPath: d) } }
                let half = try model(rc, directory: halfDir), full = try model(rc, directory: fullDir)
                XCTAssertEqual(half.frozenWeightBytes, 2 * expectedFrozen(half).elements, "\(what): 2 bytes per element")
                XCTAssertEqual(half.frozenWeightBytes * 2, full.frozenWeightBytes, "\(what): 16-bit holds half the bytes")
                if name == "phi3_fused_longrope" {
                    // The fused projections are the ones stored: qkv_proj and gate_up_proj of each layer.
                    XCTAssertEqual(Set(half.layers.flatMap(\.linears).map(\.path).filter { $0.contains("qkv_proj") || $0.contains("gate_up_proj") }).count, 4, what)
                }
                let b = try rc.batch
                XCTAssertEqual(try half.logits(b), try full.logits(b), "\(what): logits differ from the fp32 copy")
                XCTAssertEqual(try half.computeGradients(b), try full.computeGradients(b), "\(what): loss")
                let g16 = try half.gradientTensors(), g32 = try full.gradientTensors()
                XCTAssertEqual(Set(g16.keys), Set(g32.keys), what)
                XCTAssertFalse(g16.isEmpty, what)
                for (k, g) in g16 { XCTAssertEqual(g, g32[k], "\(what): gradient \(k) differs from the fp32 copy") }
                let prompt = Array(try rc.batch.inputIDs.prefix(9).map(Int.init))
                let s16 = try InferenceSession(model: half, maxTokens: 16, chunkTokens: 4)
                let s32 = try InferenceSession(model: full, maxTokens: 16, chunkTokens: 4)
                XCTAssertEqual(try s16.appendReturningAllLogits(prompt), try s32.appendReturningAllLogits(prompt), "\(what): prefill")
                XCTAssertEqual(try s16.append([3]), try s32.append([3]), "\(what): decode step")
            }
        }
    }

    /// PEFT's saved base layers (embed_tokens / lm_head targeted) are read back
    /// from the 16-bit panels exactly.
    func testSavedBaseLayersFromSixteenBitPanels() throws {
        let rc = try ReferenceCase("mistral_embed_lm_head")
        let (dir, values) = try rewrite(rc, dtype: "BF16")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let m = try model(rc, directory: dir)
        let (_, params) = expectedFrozen(m)
        XCTAssertEqual(m.frozenWeightBytes, 2 * expectedFrozen(m).elements, "bf16 copy: 2 bytes per element")
        XCTAssertEqual(m.frozenWeightParameters, params)
        let out = dir + "/adapter"
        try m.saveAdapter(directory: out, baseModel: dir)
        let saved = try SafeTensorsFile(path: out + "/adapter_model.safetensors")
        for (path, tensor) in [("model.embed_tokens", "model.embed_tokens.weight"), ("lm_head", "lm_head.weight")] {
            let key = "base_model.model." + path + ".base_layer.weight"
            XCTAssertNotNil(saved.tensors[key], "\(key) saved")
            XCTAssertEqual(try saved.floats(key).values, values[tensor], "\(key): the bf16 weight read back")
        }
    }
}

final class FrozenStorageGGUFTests: XCTestCase {
    /// GGUF tensors of F16/F32 (and every type with `--quantize none`) are dequantized on the host: fp32 storage,
    /// 4 bytes per element; a quantized file's blocks are kept by default (QuantizedModelTests), under 1.1 bytes
    /// per parameter here. The header-only plan agrees either way.
    func testGGUFIsStoredFP32AndPlanned() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/gguf").path
        for (file, mode) in [("llama_f16.gguf", QuantizeMode.auto), ("llama_q.gguf", .none), ("llama_q.gguf", .auto)] {
            let lora = LoraConfig(r: 2, loraAlpha: 4, targetModules: .list(["q_proj"]))
            let (config, source) = try ModelSource.open(dir + "/" + file, quantize: mode)
            let m = try LlamaLoRAModel(config: config, checkpoint: source, lora: lora, context: try ComputeContext.shared())
            let plan = try LlamaLoRAModel.frozenWeightPlan(config: config, lora: lora, checkpoint: source)
            XCTAssertEqual(plan.bytes, m.frozenWeightBytes, "\(file) \(mode): planned bytes")
            XCTAssertEqual(plan.parameters, m.frozenWeightParameters, "\(file) \(mode): planned parameters")
            let perParameter = Double(m.frozenWeightBytes) / Double(m.frozenWeightParameters)
            if file == "llama_q.gguf" && mode == .auto {
                XCTAssertLessThan(perParameter, 1.1, "\(file): its Q8_0/Q4_0/Q4_1 blocks kept")
            } else {
                XCTAssertGreaterThanOrEqual(perParameter, 4.0, "\(file) \(mode): fp32")
            }
        }
    }
}

/// A trained copy of the token embedding (modules_to_save) replaces the frozen
/// table: the table is not kept unless a frozen tied lm_head reads it.
final class SavedEmbeddingStorageTests: XCTestCase {
    func lora(_ name: String, saved: [String]) throws -> LoraConfig {
        var l = try LoraConfig.load(path: fixturesRoot + "/\(name)/adapter_initial/adapter_config.json")
        l.inferenceMode = false
        l.modulesToSave = saved
        return l
    }

    func testASavedEmbeddingDropsTheFrozenTableUnlessATiedHeadReadsIt() throws {
        let ctx = try ComputeContext.shared()
        // (fixture, tied lm_head?)
        for (name, tied) in [("llama_gqa_untied", false), ("llama_tied_rslora_regex", true)] {
            let dir = fixturesRoot + "/\(name)/model"
            let (config, source) = try ModelSource.open(dir)
            XCTAssertEqual(config.tieWordEmbeddings, tied, name)
            let plain = try LlamaLoRAModel(modelDirectory: dir, lora: try lora(name, saved: []), context: ctx)
            let saved = try LlamaLoRAModel(modelDirectory: dir, lora: try lora(name, saved: ["embed_tokens"]), context: ctx)
            XCTAssertNotNil(saved.trainedEmbedding, name)
            XCTAssertEqual(saved.embeddingTable == nil, !tied, "\(name): the frozen table is kept only for a frozen tied lm_head")
            let tableBytes = plain.embeddingTable?.deviceBytes ?? 0
            XCTAssertGreaterThan(tableBytes, 0)
            XCTAssertEqual(saved.frozenWeightBytes, plain.frozenWeightBytes - (tied ? 0 : tableBytes), name)
            // Planned from the headers as loaded.
            let planned = try LlamaLoRAModel.frozenWeightPlan(config: config, lora: saved.lora, checkpoint: source)
            XCTAssertEqual(planned.bytes, saved.frozenWeightBytes, "\(name): planned frozen bytes")
            // The trained copy starts as W, read from the checkpoint: B = 0, so both give the base model's logits.
            let batch = try ReferenceCase(name).batch
            XCTAssertEqual(try saved.logits(batch), try plain.logits(batch), "\(name): logits with a trained copy at its start")
            let table = try saved.trainedEmbedding!.param.read()
            XCTAssertEqual(table.count, config.vocabSize * config.hiddenSize)
            // It trains: a step moves the copy.
            _ = try saved.trainStep(batch, hyper: .init(lr: 1e-2))
            XCTAssertNotEqual(try saved.trainedEmbedding!.param.read(), table, "\(name): the trained embedding moved")
        }
        // A tied lm_head saved too: nothing reads the frozen table.
        let both = try LlamaLoRAModel(modelDirectory: fixturesRoot + "/llama_tied_rslora_regex/model",
                                      lora: try lora("llama_tied_rslora_regex", saved: ["embed_tokens", "lm_head"]), context: ctx)
        XCTAssertNil(both.embeddingTable)
        XCTAssertNotNil(both.lmHead.trainedWeight)
    }
}
