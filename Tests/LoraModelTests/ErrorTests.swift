import Foundation
import LoraModel
import LoraOps
import TestSupport
import XCTest

/// Every bad input gets a clear error naming the file, field or tensor.
final class ErrorTests: XCTestCase {
    var tmp: URL!

    override func setUpWithError() throws {
        tmp = URL(fileURLWithPath: try temporaryDirectory("errors"))
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    /// A copy of a fixture model directory to break.
    func modelCopy(_ name: String = "llama_modules_to_save") throws -> String {
        let dst = tmp.appendingPathComponent(name).path
        try FileManager.default.copyItem(atPath: fixturesRoot + "/\(name)/model", toPath: dst)
        return dst
    }

    func editConfig(_ dir: String, _ edit: (inout [String: Any]) -> Void) throws {
        let path = dir + "/config.json"
        var j = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
        edit(&j)
        try JSONSerialization.data(withJSONObject: j).write(to: URL(fileURLWithPath: path))
    }

    func lora(_ json: String) throws -> LoraConfig { try LoraConfig.parse(Data(json.utf8), path: "adapter_config.json") }

    // MARK: config.json

    func testUnsupportedArchitectureNamesTheSupportedOnes() throws {
        let dir = try modelCopy()
        try editConfig(dir) { $0["architectures"] = ["GPT2LMHeadModel"] }
        assertError({ _ = try ModelConfig.load(directory: dir) },
                    contains: ["config.json", "architectures", "GPT2LMHeadModel", "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"])
    }

    func testBadConfigFieldsAreNamed() throws {
        let dir = try modelCopy()
        try editConfig(dir) { $0["num_key_value_heads"] = 3 }
        assertError({ _ = try ModelConfig.load(directory: dir) }, contains: ["num_key_value_heads", "does not divide"])
        try editConfig(dir) { $0["num_key_value_heads"] = 2; $0["hidden_size"] = "big" }
        assertError({ _ = try ModelConfig.load(directory: dir) }, contains: ["hidden_size", "positive integer"])
        try editConfig(dir) { $0["hidden_size"] = 32; $0["rope_parameters"] = ["rope_type": "yarn", "rope_theta": 10000.0] }
        assertError({ _ = try ModelConfig.load(directory: dir) }, contains: ["rope_type", "yarn", "llama3"])
        try editConfig(dir) { $0["rope_parameters"] = ["rope_type": "default", "rope_theta": 10000.0]; $0["hidden_act"] = "gelu" }
        assertError({ _ = try ModelConfig.load(directory: dir) }, contains: ["hidden_act", "gelu"])
        assertError({ _ = try ModelConfig.load(directory: self.tmp.path + "/nowhere") }, contains: ["config.json"])
    }

    func testOlderTransformersConfigSpelling() throws {
        let dir = try modelCopy()
        try editConfig(dir) {
            $0["rope_parameters"] = nil
            $0["rope_theta"] = 500000.0
            $0["rope_scaling"] = ["rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                  "original_max_position_embeddings": 8192]
        }
        let c = try ModelConfig.load(directory: dir)
        XCTAssertEqual(c.rope.theta, 500000)
        XCTAssertEqual(c.rope.kind, .llama3(factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192))
    }

    // MARK: safetensors

    func writeRaw(_ header: String, data: [UInt8] = [], headerLength: UInt64? = nil) throws -> String {
        let path = tmp.appendingPathComponent("t\(UUID().uuidString).safetensors").path
        var bytes = [UInt8]()
        var len = (headerLength ?? UInt64(header.utf8.count)).littleEndian
        withUnsafeBytes(of: &len) { bytes += $0 }
        bytes += Array(header.utf8) + data
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    func testMalformedSafetensorsNameTheFileAndTensor() throws {
        let short = tmp.appendingPathComponent("short.safetensors").path
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: short))
        assertError({ _ = try SafeTensorsFile(path: short) }, contains: ["short.safetensors", "8-byte"])
        assertError({ _ = try SafeTensorsFile(path: try self.writeRaw("{}", headerLength: 1 << 40)) }, contains: ["header length"])
        assertError({ _ = try SafeTensorsFile(path: try self.writeRaw("not json")) }, contains: ["not valid JSON"])
        let w = #"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#
        assertError({ _ = try SafeTensorsFile(path: try self.writeRaw(w, data: [UInt8](repeating: 0, count: 8))) },
                    contains: ["'w'", "outside"])
        let sizeBad = #"{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,16]}}"#
        assertError({ _ = try SafeTensorsFile(path: try self.writeRaw(sizeBad, data: [UInt8](repeating: 0, count: 16))) },
                    contains: ["'w'", "needs 24"])
        let dtypeBad = #"{"w":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}}"#
        // An unknown dtype is refused when the tensor is asked for, not on open.
        let unknown = try SafeTensorsFile(path: try self.writeRaw(dtypeBad, data: [0]))
        assertError({ _ = try unknown.floats("w") }, contains: ["'w'", "unknown dtype Q4"])
        let overlap = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
        assertError({ _ = try SafeTensorsFile(path: try self.writeRaw(overlap, data: [UInt8](repeating: 0, count: 12))) },
                    contains: ["'b'", "overlap tensor 'a'"])
        // A good one round-trips through our writer.
        let good = tmp.appendingPathComponent("good.safetensors").path
        try SafeTensorsWriter.write([("x", [2, 3], [1, 2, 3, 4, 5, 6])], metadata: ["format": "pt"], to: good)
        let f = try SafeTensorsFile(path: good)
        XCTAssertEqual(try f.floats("x").values, [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(f.metadata["format"], "pt")
        // The lazy write (tensors produced as they are written) gives the same bytes, in name order,
        // each producer called once; a producer with the wrong count fails and leaves the file as it was.
        let lazy = tmp.appendingPathComponent("lazy.safetensors").path
        var calls: [String] = []
        try SafeTensorsWriter.write(lazy: [
            .init(name: "y", shape: [1]) { calls.append("y"); return [7] },
            .init(name: "x", shape: [2, 3]) { calls.append("x"); return [1, 2, 3, 4, 5, 6] },
        ], metadata: ["format": "pt"], to: lazy)
        XCTAssertEqual(calls, ["x", "y"])
        var eager = good + ".2"
        try SafeTensorsWriter.write([("y", [1], [7]), ("x", [2, 3], [1, 2, 3, 4, 5, 6])], metadata: ["format": "pt"], to: eager)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: lazy)), try Data(contentsOf: URL(fileURLWithPath: eager)))
        eager = lazy
        assertError({ try SafeTensorsWriter.write(lazy: [.init(name: "x", shape: [2]) { [1, 2, 3] }], to: eager) },
                    contains: ["'x'", "3 values for shape [2]"])
        XCTAssertEqual(try SafeTensorsFile(path: lazy).floats("y").values, [7])
    }

    func testCheckpointShapeDtypeAndMissingTensorsAreNamed() throws {
        let ctx = try ComputeContext.shared()
        let lora = try self.lora(#"{"r": 4, "target_modules": ["q_proj"]}"#)
        // A config that disagrees with the weights.
        let dir = try modelCopy()
        try editConfig(dir) { $0["intermediate_size"] = 64 }
        assertError({ _ = try LlamaLoRAModel(modelDirectory: dir, lora: lora, context: ctx) },
                    contains: ["model.layers.0.mlp.gate_proj.weight", "shape [48, 32]", "[64, 32]"])
        // A missing tensor.
        let dir2 = try modelCopy("llama_bias_all")
        let file = try SafeTensorsFile(path: dir2 + "/model.safetensors")
        var kept: [(name: String, shape: [Int], values: [Float])] = []
        for name in file.tensors.keys.sorted() where name != "model.norm.weight" {
            let t = try file.floats(name)
            kept.append((name, t.shape, t.values))
        }
        try SafeTensorsWriter.write(kept, to: dir2 + "/model.safetensors")
        assertError({ _ = try LlamaLoRAModel(modelDirectory: dir2, lora: lora, context: ctx) },
                    contains: ["model.norm.weight", "not found"])
        // A dtype the trainer does not take.
        let i64 = tmp.appendingPathComponent("i64").path
        try FileManager.default.createDirectory(atPath: i64, withIntermediateDirectories: true)
        let raw = try writeRaw(#"{"model.norm.weight":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}}"#,
                               data: [UInt8](repeating: 0, count: 16))
        try FileManager.default.moveItem(atPath: raw, toPath: i64 + "/model.safetensors")
        assertError({ _ = try CheckpointStore(directory: i64).tensor("model.norm.weight", shape: [2]) },
                    contains: ["model.norm.weight", "I64", "F32, F16, BF16"])
        // No checkpoint at all, and a shard index naming a missing shard.
        let empty = tmp.appendingPathComponent("empty").path
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        assertError({ _ = try CheckpointStore(directory: empty) }, contains: ["model.safetensors"])
        let sharded = tmp.appendingPathComponent("sharded").path
        try FileManager.default.copyItem(atPath: fixturesRoot + "/llama_gqa_untied/model", toPath: sharded)
        try FileManager.default.removeItem(atPath: sharded + "/model-00003-of-00010.safetensors")
        assertError({ _ = try CheckpointStore(directory: sharded) }, contains: ["model-00003-of-00010.safetensors"])
    }

    // MARK: LoraConfig

    func testLoraConfigErrors() throws {
        assertError({ _ = try self.lora(#"{"task_type": "SEQ_2_SEQ_LM", "target_modules": ["q_proj"]}"#) },
                    contains: ["task_type", "SEQ_2_SEQ_LM", "not supported yet", "CAUSAL_LM, SEQ_CLS, TOKEN_CLS, QUESTION_ANS, FEATURE_EXTRACTION"])
        assertError({ _ = try self.lora(#"{"r": 0, "target_modules": ["q_proj"]}"#) }, contains: ["'r'"])
        assertError({ _ = try self.lora(#"{"target_modules": ["q_proj"], "bias": "some"}"#) }, contains: ["bias", "lora_only"])
        assertError({ _ = try self.lora(#"{"target_modules": "(unclosed"}"#) }, contains: ["target_modules", "regular expression"])
        assertError({ _ = try self.lora(#"{"target_modules": ["q_proj"], "use_dora": true}"#) }, contains: ["use_dora"])
        assertError({ _ = try self.lora(#"{"target_modules": ["q_proj"], "lora_dropout": 1.5}"#) }, contains: ["lora_dropout"])
        assertError({ _ = try self.lora(#"{"r": 8}"#) }, contains: ["target_modules", "missing"])
    }

    func testTargetsMatchingNothingNameTargetsAndModules() throws {
        let c = try ModelConfig.load(directory: fixturesRoot + "/llama_gqa_untied/model")
        assertError({ _ = try AdapterPlan(config: c, lora: try self.lora(#"{"target_modules": ["q_prj", "c_attn"]}"#)) },
                    contains: ["q_prj", "c_attn", "model.layers.0.self_attn.q_proj", "lm_head"])
        assertError({ _ = try AdapterPlan(config: c, lora: try self.lora(#"{"target_modules": ".*\\.attn\\.q"}"#)) },
                    contains: [#".*\.attn\.q"#, "model.layers.1.mlp.down_proj"])
        assertError({ _ = try AdapterPlan(config: c, lora: try self.lora(#"{"target_modules": ["q_proj"], "layers_to_transform": [7]}"#)) },
                    contains: ["q_proj", "matched no module"])
        assertError({ _ = try AdapterPlan(config: c, lora: try self.lora(#"{"target_modules": ["q_proj"], "modules_to_save": ["norm"]}"#)) },
                    contains: ["modules_to_save", "norm"])
    }

    func testPEFTMatchingRules() throws {
        let c = try ModelConfig.load(directory: fixturesRoot + "/llama_layers_patterns/model")
        // Suffix match, exact path match, exclude_modules and layers_pattern.
        var plan = try AdapterPlan(config: c, lora: try lora(#"{"target_modules": ["v_proj", "model.layers.0.mlp.down_proj"], "exclude_modules": ["model.layers.1.self_attn.v_proj"]}"#))
        XCTAssertEqual(plan.adapted, ["model.layers.0.self_attn.v_proj", "model.layers.0.mlp.down_proj", "model.layers.2.self_attn.v_proj"])
        plan = try AdapterPlan(config: c, lora: try lora(#"{"target_modules": ["o_proj"], "layers_to_transform": 1, "layers_pattern": "layers"}"#))
        XCTAssertEqual(plan.adapted, ["model.layers.1.self_attn.o_proj"])
        // all-linear never includes lm_head; a list may name it.
        plan = try AdapterPlan(config: c, lora: try lora(#"{"target_modules": "all-linear"}"#))
        XCTAssertEqual(plan.adapted.count, 21)
        XCTAssertFalse(plan.adapted.contains("lm_head"))
        plan = try AdapterPlan(config: c, lora: try lora(#"{"target_modules": ["lm_head"], "r": 4, "lora_alpha": 8}"#))
        XCTAssertEqual(plan.adapted, ["lm_head"])
        // rank_pattern / alpha_pattern keys match as PEFT's (.*\.)?(key)$.
        let l = try lora(#"{"target_modules": ["q_proj", "v_proj"], "r": 8, "lora_alpha": 16, "rank_pattern": {"layers.1.self_attn.v_proj": 2}, "alpha_pattern": {"q_proj": 4}}"#)
        XCTAssertEqual(l.rankAndAlpha(for: "model.layers.1.self_attn.v_proj").r, 2)
        XCTAssertEqual(l.rankAndAlpha(for: "model.layers.2.self_attn.v_proj").r, 8)
        XCTAssertEqual(l.rankAndAlpha(for: "model.layers.0.self_attn.q_proj").alpha, 4)
        XCTAssertEqual(try lora(#"{"target_modules": ["q_proj"], "use_rslora": true, "r": 16, "lora_alpha": 8}"#).scale(for: "x"), 2)
    }

    func testPEFTStyleWarningsPatternOrderAndAllExcluded() throws {
        let c = try ModelConfig.load(directory: fixturesRoot + "/llama_gqa_untied/model")
        let l = try lora(#"{"target_modules": ["q_proj", "q_prj"], "exclude_modules": ["nothing_here"], "rank_pattern": {"v_proj": 2, "q_proj": 4}}"#)
        let plan = try AdapterPlan(config: c, lora: l)
        XCTAssertEqual(plan.adapted.count, 2)
        let w = plan.warnings.joined(separator: "\n")
        XCTAssertTrue(w.contains("q_prj"), w)
        XCTAssertTrue(w.contains("rank_pattern.v_proj"), w)
        XCTAssertTrue(w.contains("nothing_here"), w)
        XCTAssertFalse(w.contains("rank_pattern.q_proj"), w)
        // The first key in the file's order wins when several match (PEFT's dict order).
        let ordered = try lora(#"{"target_modules": ["q_proj"], "rank_pattern": {"layers.0.self_attn.q_proj": 2, "q_proj": 4}}"#)
        XCTAssertEqual(ordered.rankAndAlpha(for: "model.layers.0.self_attn.q_proj").r, 2)
        let reversed = try lora(#"{"target_modules": ["q_proj"], "rank_pattern": {"q_proj": 4, "layers.0.self_attn.q_proj": 2}}"#)
        XCTAssertEqual(reversed.rankAndAlpha(for: "model.layers.0.self_attn.q_proj").r, 4)
        // Everything matched was excluded: say so.
        assertError({ _ = try AdapterPlan(config: c, lora: try self.lora(#"{"target_modules": ["q_proj"], "exclude_modules": "model\\.layers\\.[01]\\..*"}"#)) },
                    contains: ["no module is left to adapt", "exclude_modules"])
    }

    // MARK: adapters and batches

    func testAdapterMismatchAndInferenceModeAndBadBatches() throws {
        let rc = try ReferenceCase("llama_gqa_untied")
        let ctx = try ComputeContext.shared()
        // An adapter made for another LoraConfig.
        let other = try lora(#"{"target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], "r": 4}"#)
        let m = try LlamaLoRAModel(modelDirectory: rc.dir + "/model", lora: other, context: ctx)
        assertError({ try m.loadAdapter(directory: rc.dir + "/adapter_initial") }, contains: ["adapter_model.safetensors", "lora_A.weight", "shape"])
        let fewer = try lora(#"{"target_modules": ["q_proj"], "r": 8}"#)
        let m2 = try LlamaLoRAModel(modelDirectory: rc.dir + "/model", lora: fewer, context: ctx)
        assertError({ try m2.loadAdapter(directory: rc.dir + "/adapter_initial") }, contains: ["unexpected tensors", "v_proj"])
        assertError({ try m2.loadAdapter(directory: self.tmp.path) }, contains: ["no adapter_model.safetensors"])
        // inference_mode: nothing to train.
        let frozen = try LoraConfig.load(path: rc.dir + "/adapter_initial/adapter_config.json")
        let m3 = try LlamaLoRAModel(modelDirectory: rc.dir + "/model", lora: frozen, context: ctx)
        try m3.loadAdapter(directory: rc.dir + "/adapter_initial")
        assertError({ _ = try m3.trainStep(try rc.batch, hyper: .init(lr: 1e-3)) }, contains: ["inference_mode"])
        XCTAssertNoThrow(try m3.logits(try rc.batch), "inference still runs")
        // Batches.
        assertError({ _ = try m3.logits(try TokenBatch(inputIDs: [[1, 2, 67]])) }, contains: ["token id 67", "vocabulary"])
        assertError({ _ = try m3.loss(try TokenBatch(inputIDs: [[1, 2, 3]], labels: [[1, -5, 2]])) }, contains: ["label -5"])
        assertError({ _ = try TokenBatch(inputIDs: [[1, 2], [3]]) }, contains: ["rectangle"])
        assertError({ _ = try m3.logits(try TokenBatch(inputIDs: [[Int](repeating: 1, count: 65)])) },
                    contains: ["max_position_embeddings"])
    }
}
