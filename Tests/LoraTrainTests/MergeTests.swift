import Foundation
import LoraModel
import LoraOps
import LoraTrain
import Reference
import TestSupport
import XCTest

/// Fixtures: scripts/check_merge.py (PEFT's merge_and_unload logits) over the
/// cases of scripts/make_reference.py and scripts/make_gguf_fixtures.py.
private let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Fixtures").path

final class MergeTests: XCTestCase {
    func tempDir() throws -> String {
        let d = try temporaryDirectory("merge-tests")
        addTeardownBlock { try? FileManager.default.removeItem(atPath: d) }
        return d
    }

    func json(_ path: String) throws -> Any {
        try JSONSerialization.jsonObject(with: try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    /// (base, adapter, input_ids) of a case, as check_merge.py defines them.
    func paths(_ c: String) throws -> (base: String, adapter: String, ids: [[Int]]) {
        if c.hasPrefix("tied_") {
            let d = fixtures + "/reference/llama_tied_rslora_regex"
            let ids = (try json(d + "/reference.json") as! [String: Any])["input_ids"] as! [[Int]]
            return (d + "/model", fixtures + "/merge/\(c).adapter", ids)
        }
        if c.hasPrefix("gguf_") {
            let ids = (try json(fixtures + "/gguf/expected.json") as! [String: Any])["input_ids"] as! [[Int]]
            return (fixtures + "/gguf/\(c.dropFirst(5)).gguf", fixtures + "/merge/\(c).adapter", ids)
        }
        let d = fixtures + "/reference/" + c
        let ids = (try json(d + "/reference.json") as! [String: Any])["input_ids"] as! [[Int]]
        return (d + "/model", d + "/adapter_final", ids)
    }

    func logits(_ dir: String, _ ids: [[Int]]) throws -> [Float] {
        var lora = LoraConfig(targetModules: .list(["o_proj"]))
        lora.inferenceMode = true
        let m = try LlamaLoRAModel(modelDirectory: dir, lora: lora, context: try ComputeContext.shared())
        return try m.logits(try TokenBatch(inputIDs: ids))
    }

    func expectedLogits(_ c: String) throws -> [Double] {
        try SafeTensorsFile(path: fixtures + "/merge/\(c).safetensors").floats("logits").values.map(Double.init)
    }

    func testMergedLogitsMatchPEFTMergeAndUnload() throws {
        let cases = try json(fixtures + "/merge/cases.json") as! [String]
        XCTAssertEqual(cases.count, 19)
        let out = try tempDir()
        for c in cases {
            let (base, adapter, ids) = try paths(c)
            let report = try ModelMerger.merge(model: base, adapter: adapter, output: out + "/" + c)
            XCTAssertFalse(report.mergedModules.isEmpty, c)
            let e = relativeError(try logits(out + "/" + c, ids), try expectedLogits(c))
            // Where the adapter unties a tied base the fixture holds the unmerged PeftModel's logits (check_merge.py).
            XCTAssertLessThanOrEqual(e, 1e-5, "\(c): merged logits relative error \(e) against PEFT's")
        }
    }

    /// A Gemma3ForConditionalGeneration base (its language model trained, the adapter named as PEFT names that class's
    /// modules): the merge writes the language model as a Gemma3ForCausalLM checkpoint (text_config at the top, the text
    /// weights under "model."), whose logits are the unmerged adapter's.
    func testConditionalGenerationBaseMergesIntoItsCausalLM() throws {
        let base = fixtures + "/reference/gemma3_sliding/conditional_model"
        let lora = LoraConfig(r: 4, loraAlpha: 8, targetModules: .list(["q_proj", "down_proj", "embed_tokens"]), initLoraWeights: .random)
        let m = try LlamaLoRAModel(modelDirectory: base, lora: lora, context: try ComputeContext.shared())
        let out = try tempDir()
        try m.saveAdapter(directory: out + "/adapter", baseModel: base)
        let ids = [[5, 17, 0, 42, 3, 9, 11, 30, 66, 1]]
        let want = try m.logits(try TokenBatch(inputIDs: ids))
        let report = try ModelMerger.merge(model: base, adapter: out + "/adapter", output: out + "/merged")
        XCTAssertEqual(report.mergedModules.count, 2 * 2 + 1)
        let cfg = try json(out + "/merged/config.json") as! [String: Any]
        XCTAssertEqual(cfg["architectures"] as? [String], ["Gemma3ForCausalLM"])
        XCTAssertEqual(cfg["model_type"] as? String, "gemma3_text")
        XCTAssertNil(cfg["text_config"])
        let e = relativeError(try logits(out + "/merged", ids), want.map(Double.init))
        XCTAssertLessThanOrEqual(e, 1e-5, "conditional base: merged logits relative error \(e) against the unmerged model's")

        // PEFT on that class adapts the vision tower too (its q_proj, fc1…): such tensors are set aside with a note by
        // the loader and the merge, not refused; the language model's are unchanged.
        let file = try SafeTensorsFile(path: out + "/adapter/adapter_model.safetensors")
        var tensors = try file.tensors.keys.sorted().map { k in let t = try file.floats(k); return (name: k, shape: t.shape, values: t.values) }
        tensors.append((name: "base_model.model.model.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.lora_A.weight",
                        shape: [4, 16], values: [Float](repeating: 0.5, count: 64)))
        try FileManager.default.createDirectory(atPath: out + "/multimodal", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: out + "/adapter/adapter_config.json", toPath: out + "/multimodal/adapter_config.json")
        try SafeTensorsWriter.write(tensors, to: out + "/multimodal/adapter_model.safetensors")
        let loaded = try LlamaLoRAModel(modelDirectory: base, lora: lora, context: try ComputeContext.shared())
        try loaded.loadAdapter(directory: out + "/multimodal")
        XCTAssertEqual(loaded.adapterNotes, ["1 adapter tensor of the vision tower or projector set aside: only the language model is read "
                                             + "(they do not change text-only outputs)"])
        XCTAssertEqual(try loaded.logits(try TokenBatch(inputIDs: ids)), want)
        let r2 = try ModelMerger.merge(model: base, adapter: out + "/multimodal", output: out + "/merged2")
        XCTAssertTrue(r2.warnings.contains { $0.hasPrefix("1 adapter tensor of the vision tower") }, "\(r2.warnings)")

        // lora-gpu export: PEFT's model.language_model.layers.N names are llama.cpp's blk.N tensors.
        let linearOnly = try LlamaLoRAModel(modelDirectory: base, lora: LoraConfig(r: 4, loraAlpha: 8, targetModules: .list(["q_proj", "down_proj"]),
                                                                                 initLoraWeights: .random), context: try ComputeContext.shared())
        try linearOnly.saveAdapter(directory: out + "/linear", baseModel: base)
        let exported = try AdapterGGUFExport.export(adapter: out + "/linear", model: base, output: out + "/adapter.gguf", type: .f32)
        XCTAssertEqual(exported.tensors, 2 * (2 * 2))   // q_proj and down_proj of 2 layers, A and B each
        let g = try GGUFFile(path: out + "/adapter.gguf")
        XCTAssertEqual(try g.string("general.architecture"), "gemma3")
        for name in ["blk.0.attn_q.weight.lora_a", "blk.1.ffn_down.weight.lora_b"] { XCTAssertNotNil(g.tensors[name], name) }

        // inspect: the language model, shown as the Gemma3ForCausalLM merge writes, with a line saying so.
        let tree = ModelPrinter.render(try ModelConfig.load(directory: base))
        XCTAssertTrue(tree.hasPrefix("# the language model of Gemma3ForConditionalGeneration"), tree)
        XCTAssertTrue(tree.contains("\nGemma3ForCausalLM(\n  (model): Gemma3TextModel(\n"), tree)
    }

    func testTiedEmbeddingsStayTiedAndModulesToSaveReplace() throws {
        let out = try tempDir()
        let (base, adapter, _) = try paths("llama_tied_rslora_regex")
        let r = try ModelMerger.merge(model: base, adapter: adapter, output: out + "/tied")
        XCTAssertTrue(r.tied)
        let f = try SafeTensorsFile(path: out + "/tied/model.safetensors")
        XCTAssertNil(f.tensors["lm_head.weight"], "a tied model keeps no lm_head tensor")
        let cfg = try json(out + "/tied/config.json") as! [String: Any]
        XCTAssertEqual(cfg["tie_word_embeddings"] as? Bool, true)
        XCTAssertEqual(cfg["torch_dtype"] as? String, "float32")

        let (b2, a2, _) = try paths("llama_modules_to_save")
        let r2 = try ModelMerger.merge(model: b2, adapter: a2, output: out + "/saved")
        XCTAssertEqual(r2.replaced, ["lm_head"])
        let saved = try SafeTensorsFile(path: a2 + "/adapter_model.safetensors").floats("base_model.model.lm_head.weight").values
        XCTAssertEqual(try SafeTensorsFile(path: out + "/saved/model.safetensors").floats("lm_head.weight").values, saved)
        // The base's generation_config.json is carried over unchanged.
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: out + "/saved/generation_config.json")),
                       try Data(contentsOf: URL(fileURLWithPath: b2 + "/generation_config.json")))
    }

    /// A LoRA on the lm_head or the embedding of a tied base (issue 22): folded into the shared matrix it
    /// would reach both sides. The merged model keeps them apart and gives the unmerged adapter's logits.
    func testLoRAOnATiedHeadOrEmbeddingUntiesThemAndKeepsTheAdaptersLogits() throws {
        let out = try tempDir()
        let (base, _, ids) = try paths("llama_tied_rslora_regex")
        for targets in [["lm_head"], ["embed_tokens"], ["lm_head", "embed_tokens", "q_proj"]] {
            let name = targets.joined(separator: "+")
            let lora = LoraConfig(r: 4, loraAlpha: 8, targetModules: .list(targets), initLoraWeights: .random)
            let model = try LlamaLoRAModel(modelDirectory: base, lora: lora, context: try ComputeContext.shared())
            try model.initializeAdapters(seed: 11)
            try model.saveAdapter(directory: out + "/\(name).adapter", baseModel: base)
            let unmerged = try model.logits(try TokenBatch(inputIDs: ids))
            let r = try ModelMerger.merge(model: base, adapter: out + "/\(name).adapter", output: out + "/\(name).merged")
            XCTAssertFalse(r.tied, name)
            XCTAssertNotNil(r.untied, name)
            let cfg = try json(out + "/\(name).merged/config.json") as! [String: Any]
            XCTAssertEqual(cfg["tie_word_embeddings"] as? Bool, false, name)
            XCTAssertNotNil(try SafeTensorsFile(path: out + "/\(name).merged/model.safetensors").tensors["lm_head.weight"], name)
            let e = relativeError(try logits(out + "/\(name).merged", ids), unmerged.map(Double.init))
            XCTAssertLessThanOrEqual(e, 1e-5, "\(name): merged logits vs the unmerged adapter's: relative error \(e)")
        }
    }

    func testShardsAndIndexAsTransformersWritesThem() throws {
        let out = try tempDir()
        let (base, adapter, ids) = try paths("llama_gqa_untied")
        let r = try ModelMerger.merge(model: base, adapter: adapter, output: out + "/m", maxShardBytes: 8192)
        let shards = r.files.filter { $0.hasPrefix("model-") }
        XCTAssertGreaterThan(shards.count, 2)
        XCTAssertEqual(shards.first, String(format: "model-00001-of-%05d.safetensors", shards.count))
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/m/model.safetensors"))
        let index = try json(out + "/m/model.safetensors.index.json") as! [String: Any]
        let map = index["weight_map"] as! [String: String]
        XCTAssertEqual(Set(map.keys), Set(r.tensors))
        XCTAssertEqual(Set(map.values), Set(shards))
        let total = (index["metadata"] as! [String: Any])["total_size"] as! Int
        var sum = 0
        for s in shards {
            let f = try SafeTensorsFile(path: out + "/m/" + s)
            sum += f.tensors.values.reduce(0) { $0 + $1.end - $1.begin }
            // Only a tensor bigger than the limit may make a shard bigger than the limit.
            let bytes = f.tensors.values.reduce(0) { $0 + $1.end - $1.begin }
            XCTAssertTrue(bytes <= 8192 || f.tensors.count == 1, "\(s): \(bytes) bytes in \(f.tensors.count) tensors")
        }
        XCTAssertEqual(sum, total)
        let e = relativeError(try logits(out + "/m", ids), try expectedLogits("llama_gqa_untied"))
        XCTAssertLessThanOrEqual(e, 1e-5, "sharded output: logits relative error \(e)")
    }

    func testBFloat16RoundsToNearestEven() {
        func bits(_ u: UInt32) -> UInt16 { MergeDType.bfloat16Bits(Float(bitPattern: u)) }
        XCTAssertEqual(bits(0x3F80_0000), 0x3F80)       // 1
        XCTAssertEqual(bits(0x3F80_8000), 0x3F80)       // halfway, even below: down
        XCTAssertEqual(bits(0x3F81_8000), 0x3F82)       // halfway, odd below: up
        XCTAssertEqual(bits(0x3F80_8001), 0x3F81)       // past halfway: up
        XCTAssertEqual(bits(0x3F80_7FFF), 0x3F80)       // short of halfway: down
        XCTAssertEqual(bits(0xBF81_8000), 0xBF82)       // negative
        XCTAssertEqual(bits(0x7F7F_FFFF), 0x7F80)       // max float rounds to infinity, as torch does
        XCTAssertTrue(Float(bitPattern: UInt32(bits(0x7FC0_0001)) << 16).isNaN)
        XCTAssertTrue(Float(bitPattern: UInt32(bits(0x7F80_0001)) << 16).isNaN, "a signalling NaN stays a NaN")
    }

    func testHalfPrecisionOutputs() throws {
        let out = try tempDir()
        let (base, adapter, _) = try paths("llama_bias_all")
        try ModelMerger.merge(model: base, adapter: adapter, output: out + "/f32")
        let ref = try SafeTensorsFile(path: out + "/f32/model.safetensors")
        for dtype in [MergeDType.bfloat16, .float16] {
            try ModelMerger.merge(model: base, adapter: adapter, output: out + "/" + dtype.rawValue, dtype: dtype)
            let f = try SafeTensorsFile(path: out + "/\(dtype.rawValue)/model.safetensors")
            XCTAssertEqual(Set(f.tensors.keys), Set(ref.tensors.keys))
            for name in ref.tensors.keys.sorted() {
                XCTAssertEqual(f.tensors[name]!.dtype, dtype == .bfloat16 ? .bf16 : .f16, name)
                let want = try ref.floats(name).values.map {
                    dtype == .bfloat16 ? Float(bitPattern: UInt32(MergeDType.bfloat16Bits($0)) << 16) : Float(Float16($0))
                }
                XCTAssertEqual(try f.floats(name).values, want, "\(dtype) \(name)")
            }
            let cfg = try json(out + "/\(dtype.rawValue)/config.json") as! [String: Any]
            XCTAssertEqual(cfg["torch_dtype"] as? String, dtype.rawValue)
            XCTAssertEqual(cfg["dtype"] as? String, dtype.rawValue)
        }
    }

    func testGGUFBaseGetsConfigAndTokenizerFromMetadata() throws {
        let out = try tempDir()
        let (base, adapter, _) = try paths("gguf_llama_q")
        let r = try ModelMerger.merge(model: base, adapter: adapter, output: out + "/m")
        XCTAssertTrue(r.files.contains("tokenizer.json") && r.files.contains("tokenizer_config.json"), "\(r.files)")
        let files = try GGUFFile(path: base).tokenizerFiles()
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: out + "/m/tokenizer.json")), files.tokenizerJSON)
        let cfg = try ModelConfig.load(directory: out + "/m")
        let g = try GGUFCheckpoint(path: base).config
        XCTAssertEqual(cfg.architecture, g.architecture)
        XCTAssertEqual(cfg.vocabSize, g.vocabSize)
        XCTAssertEqual(cfg.headDim, g.headDim)
        XCTAssertEqual(cfg.numKVHeads, g.numKVHeads)
        XCTAssertEqual(cfg.tieWordEmbeddings, false)
    }

    func testAdapterErrorsNameTheTensorAndTheOutputIsReplacedWhole() throws {
        let out = try tempDir()
        let (base, adapter, _) = try paths("llama_bias_all")
        // An adapter missing one tensor.
        let bad = out + "/bad_adapter"
        try FileManager.default.createDirectory(atPath: bad, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: adapter + "/adapter_config.json", toPath: bad + "/adapter_config.json")
        let src = try SafeTensorsFile(path: adapter + "/adapter_model.safetensors")
        let dropped = src.tensors.keys.sorted().first!
        let kept = try src.tensors.keys.sorted().dropFirst().map { k in (name: k, shape: src.tensors[k]!.shape, values: try src.floats(k).values) }
        try SafeTensorsWriter.write(kept, to: bad + "/adapter_model.safetensors")
        XCTAssertThrowsError(try ModelMerger.merge(model: base, adapter: bad, output: out + "/x")) { e in
            XCTAssertTrue("\(e)".contains(dropped), "\(e)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/x"), "nothing is written on failure")
        // No safetensors at all.
        try FileManager.default.removeItem(atPath: bad + "/adapter_model.safetensors")
        XCTAssertThrowsError(try ModelMerger.merge(model: base, adapter: bad, output: out + "/x")) { e in
            XCTAssertTrue("\(e)".contains("adapter_model.safetensors"), "\(e)")
        }
        // An earlier merge in the output directory is replaced whole (a stale shard of it goes too).
        try FileManager.default.createDirectory(atPath: out + "/y", withIntermediateDirectories: true)
        try Data("stale".utf8).write(to: URL(fileURLWithPath: out + "/y/model-00002-of-00002.safetensors"))
        try ModelMerger.merge(model: base, adapter: adapter, output: out + "/y")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/y/model-00002-of-00002.safetensors"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/y/model.safetensors"))
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: out).filter { $0.hasPrefix(".") }
        XCTAssertEqual(leftovers, [], "no temporary directories left behind")
    }
}

final class MergeOutputSafetyTests: XCTestCase {
    func testNeverReplacesSomebodysDirectoryOrTheInputs() throws {
        let dir = try temporaryDirectory("merge-safety")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = fixturesRoot + "/reference/llama_gqa_untied/model"
        let adapter = fixturesRoot + "/reference/llama_gqa_untied/adapter_final"
        // A directory with the user's own file: refused, the file kept.
        try FileManager.default.createDirectory(atPath: dir + "/mine/sub", withIntermediateDirectories: true)
        try "x".write(toFile: dir + "/mine/sub/thesis.txt", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ModelMerger.merge(model: model, adapter: adapter, output: dir + "/mine")) {
            XCTAssertTrue("\($0)".contains("holds files a merge does not write (sub)"), "\($0)")
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/mine/sub/thesis.txt"))
        // The base model or the adapter as the output: refused.
        for p in [model, adapter, fixturesRoot + "/reference/llama_gqa_untied"] {
            XCTAssertThrowsError(try ModelMerger.merge(model: model, adapter: adapter, output: p)) {
                XCTAssertTrue("\($0)".contains("choose another --output"), "\($0)")
            }
        }
        // A previous merge is replaced whole.
        try ModelMerger.merge(model: model, adapter: adapter, output: dir + "/merged")
        try ModelMerger.merge(model: model, adapter: adapter, output: dir + "/merged")
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/merged/model.safetensors"))
    }
}
