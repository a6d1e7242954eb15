import Foundation
import LoraBase
@testable import LoraModel
import LoraOps
import TestSupport
import XCTest

/// Malformed checkpoints, adapters and settings: each a named error (never a
/// trap, never a silent truncation), and failed loads / saves that leave
/// everything as it was.
final class ReliabilityTests: XCTestCase {
    var tmp: URL!

    override func setUpWithError() throws {
        tmp = URL(fileURLWithPath: try temporaryDirectory("rel"))
    }

    override func tearDownWithError() throws {
        DirectoryReplace.injectFailure = nil
        DirectoryReplace.forceFallback = false
        try? FileManager.default.removeItem(at: tmp)
    }

    /// A safetensors file from a raw header and data (header length given or computed).
    func raw(_ header: String, data: [UInt8] = [], headerLength: UInt64? = nil, name: String? = nil) throws -> String {
        let path = tmp.appendingPathComponent(name ?? "t\(UUID().uuidString).safetensors").path
        var bytes = [UInt8]()
        var len = (headerLength ?? UInt64(header.utf8.count)).littleEndian
        withUnsafeBytes(of: &len) { bytes += $0 }
        bytes += Array(header.utf8) + data
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    func zeros(_ n: Int) -> [UInt8] { [UInt8](repeating: 0, count: n) }

    // MARK: safetensors header

    func testHeaderLengthPastInt64AndPastTheFile() throws {
        for len: UInt64 in [1 << 63, UInt64.max, (1 << 63) + 8, 1 << 40, 100] {
            assertError({ _ = try SafeTensorsFile(path: try self.raw("{}", headerLength: len)) },
                        contains: ["header length \(len)", "does not fit"])
        }
    }

    func testShapeWhoseElementCountOverflows() throws {
        let h = #"{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}"#
        assertError({ _ = try SafeTensorsFile(path: try self.raw(h, data: self.zeros(4))) },
                    contains: ["'w'", "[4294967296, 4294967296]", "more elements than fit"])
        // The element count fits, the byte count (× 4) does not.
        let h2 = #"{"w":{"dtype":"F32","shape":[3037000499,3037000499],"data_offsets":[0,4]}}"#
        assertError({ _ = try SafeTensorsFile(path: try self.raw(h2, data: self.zeros(4))) }, contains: ["'w'", "needs more than"])
        // An integer literal past Int64 is not an integer shape.
        let h3 = #"{"w":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,4]}}"#
        assertError({ _ = try SafeTensorsFile(path: try self.raw(h3, data: self.zeros(4))) }, contains: ["'w'", "bad shape"])
    }

    func testDuplicateKeyIsNamed() throws {
        let h = #"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#
        assertError({ _ = try SafeTensorsFile(path: try self.raw(h, data: self.zeros(8))) }, contains: ["duplicate key 'w'"])
        let inner = #"{"w":{"dtype":"F32","dtype":"F16","shape":[1],"data_offsets":[0,4]}}"#
        assertError({ _ = try SafeTensorsFile(path: try self.raw(inner, data: self.zeros(4))) }, contains: ["duplicate key 'dtype'"])
    }

    func testFloatsAndBooleansInShapesAndOffsetsAreRefused() throws {
        let cases: [(String, [String])] = [
            (#"{"w":{"dtype":"F32","shape":[true,2.7],"data_offsets":[0,8]}}"#, ["'w'", "bad shape [true, 2.7]"]),
            (#"{"w":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}"#, ["'w'", "bad shape [2.0]"]),
            (#"{"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#, ["'w'", "bad shape [-2]"]),
            (#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8.0]}}"#, ["'w'", "bad data_offsets [0, 8.0]"]),
            (#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[false,8]}}"#, ["'w'", "bad data_offsets [false, 8]"]),
            (#"{"w":{"dtype":"F32","shape":"2","data_offsets":[0,8]}}"#, ["'w'", "shape is \"2\""]),
            (#"{"w":{"dtype":32,"shape":[2],"data_offsets":[0,8]}}"#, ["'w'", "dtype is 32"]),
            (#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#, ["'w'", "bad data_offsets [8, 0]"]),
            (#"{"__metadata__":{"format":1}}"#, ["__metadata__", "not a string"]),
        ]
        for (h, parts) in cases {
            assertError({ _ = try SafeTensorsFile(path: try self.raw(h, data: self.zeros(8))) }, contains: parts)
        }
    }

    func testOffsetsMustTileTheDataSection() throws {
        let gap = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}}"#
        assertError({ _ = try SafeTensorsFile(path: try self.raw(gap, data: self.zeros(20))) },
                    contains: ["'b'", "gap of 4 bytes after tensor 'a'"])
        let late = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
        assertError({ _ = try SafeTensorsFile(path: try self.raw(late, data: self.zeros(12))) },
                    contains: ["'a'", "gap of 4 bytes after the start of the data section"])
        let trailing = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
        assertError({ _ = try SafeTensorsFile(path: try self.raw(trailing, data: self.zeros(12))) },
                    contains: ["end at data byte 8", "has 12 bytes"])
        let overlap = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#
        assertError({ _ = try SafeTensorsFile(path: try self.raw(overlap, data: self.zeros(8))) },
                    contains: ["overlap tensor"])
        let wrongSize = #"{"a":{"dtype":"BF16","shape":[3],"data_offsets":[0,8]}}"#
        assertError({ _ = try SafeTensorsFile(path: try self.raw(wrongSize, data: self.zeros(8))) },
                    contains: ["'a'", "holds 8 bytes but BF16 [3] needs 6"])
        // Zero-element tensors take no bytes and may sit anywhere in the order.
        let empty = #"{"e":{"dtype":"F32","shape":[0,3],"data_offsets":[8,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
        let f = try SafeTensorsFile(path: try raw(empty, data: zeros(8)))
        XCTAssertEqual(f.tensors["e"]?.count, 0)
    }

    func testTruncatedCheckpointFileIsNamed() throws {
        // A real checkpoint cut short (a half-finished download).
        let dir = tmp.appendingPathComponent("model").path
        try FileManager.default.copyItem(atPath: fixturesRoot + "/llama_gqa_untied/model", toPath: dir)
        let shard = dir + "/model-00002-of-00010.safetensors"
        let data = try Data(contentsOf: URL(fileURLWithPath: shard))
        try data.prefix(data.count - 100).write(to: URL(fileURLWithPath: shard))
        assertError({ _ = try CheckpointStore(directory: dir) },
                    contains: ["model-00002-of-00010.safetensors", "outside", "truncated"])
        // Cut inside the header.
        try data.prefix(20).write(to: URL(fileURLWithPath: shard))
        assertError({ _ = try CheckpointStore(directory: dir) }, contains: ["model-00002-of-00010.safetensors", "header length"])
    }

    /// An unknown dtype only fails the tensor that has it: a model that never asks
    /// for that tensor loads.
    func testUnknownDTypeRejectsOnlyTheTensorAskedFor() throws {
        let dir = tmp.appendingPathComponent("model").path
        try FileManager.default.copyItem(atPath: fixturesRoot + "/llama_modules_to_save/model", toPath: dir)
        let file = try SafeTensorsFile(path: dir + "/model.safetensors")
        // Rewrite with two extra tensors: an fp8 one and one of a dtype nobody knows.
        var header: [String] = [], data: [UInt8] = []
        for name in file.tensors.keys.sorted() {
            let info = file.tensors[name]!
            let bytes = Array(file.bytes(info))
            header.append(#""\#(name)":{"dtype":"\#(info.dtype.rawValue)","shape":\#(info.shape),"data_offsets":[\#(data.count),\#(data.count + bytes.count)]}"#)
            data += bytes
        }
        header.append(#""extra.fp8":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[\#(data.count),\#(data.count + 4)]}"#)
        data += zeros(4)
        header.append(#""extra.q4":{"dtype":"Q4_K","shape":[4],"data_offsets":[\#(data.count),\#(data.count + 3)]}"#)
        data += zeros(3)
        try FileManager.default.removeItem(atPath: dir + "/model.safetensors")
        _ = try raw("{" + header.joined(separator: ",") + "}", data: data, name: "model/model.safetensors")
        let lora = LoraConfig(r: 4, targetModules: .list(["q_proj"]))
        let m = try LlamaLoRAModel(modelDirectory: dir, lora: lora, context: try ComputeContext.shared())
        XCTAssertEqual(m.adaptedModules.count, 2)
        let store = try CheckpointStore(directory: dir)
        assertError({ _ = try store.tensor("extra.q4", shape: [4]) }, contains: ["extra.q4", "unknown dtype Q4_K"])
        assertError({ _ = try store.tensor("extra.fp8", shape: [4]) }, contains: ["extra.fp8", "F8_E4M3", "supported: F32, F16, BF16"])
        XCTAssertTrue(store.contains("extra.q4"))
    }

    // MARK: settings

    func testRankAndAlphaValuesAreRangeChecked() throws {
        func lora(_ s: String) throws -> LoraConfig { try LoraConfig.parse(Data(s.utf8), path: "adapter_config.json") }
        for v in ["-1", "0", "2.5", "true", "\"4\"", "1e30"] {
            assertError({ _ = try lora(#"{"target_modules": ["q_proj"], "rank_pattern": {"q_proj": \#(v)}}"#) },
                        contains: ["adapter_config.json", "rank_pattern.q_proj", "positive integer"] + (v == "1e30" ? [] : ["got \(v)"]))
        }
        for v in ["-1", "true", "\"x\""] {
            assertError({ _ = try lora(#"{"target_modules": ["q_proj"], "alpha_pattern": {"v_proj": \#(v)}}"#) },
                        contains: ["alpha_pattern.v_proj", "non-negative number"])
        }
        for v in ["2.5", "-3", "true", "0"] {
            assertError({ _ = try lora(#"{"target_modules": ["q_proj"], "r": \#(v)}"#) }, contains: ["'r'", "positive integer", "got \(v)"])
        }
        assertError({ _ = try lora(#"{"target_modules": ["q_proj"], "lora_alpha": -16}"#) }, contains: ["lora_alpha", "non-negative"])
        XCTAssertEqual(try lora(#"{"target_modules": ["q_proj"], "r": 4.0, "alpha_pattern": {"q_proj": 2.5}}"#).r, 4)
        // Values set in code (flags) are checked when the plan is made.
        let c = try ModelConfig.load(directory: fixturesRoot + "/llama_gqa_untied/model")
        var l = try lora(#"{"target_modules": ["q_proj"]}"#)
        l.rankPattern = ["q_proj": -1]
        assertError({ _ = try AdapterPlan(config: c, lora: l) }, contains: ["rank_pattern.q_proj", "got -1"])
        l.rankPattern = [:]
        l.r = 0
        assertError({ _ = try AdapterPlan(config: c, lora: l) }, contains: ["'r'", "got 0"])
    }

    func testTokenIDsPastInt32AreRefused() throws {
        assertError({ _ = try TokenBatch(inputIDs: [[1, 1 << 31]]) }, contains: ["input_ids[0][1]", "out of range"])
        assertError({ _ = try TokenBatch(inputIDs: [[1, 2]], labels: [[1, 1 << 40]]) }, contains: ["labels[0][1]", "out of range"])
    }

    func testConfigIntegersRejectBooleansAndHugeValues() throws {
        let dir = tmp.appendingPathComponent("m").path
        try FileManager.default.copyItem(atPath: fixturesRoot + "/llama_gqa_untied/model", toPath: dir)
        for (k, v) in [("num_hidden_layers", "true"), ("hidden_size", "1e300"), ("vocab_size", "2.5")] {
            var j = try String(contentsOfFile: dir + "/config.json", encoding: .utf8)
            j = j.replacingOccurrences(of: #""\#(k)": "#, with: #""\#(k)": \#(v), "was_\#(k)": "#)
            let path = dir + "/config-\(k).json"
            try j.write(toFile: path, atomically: true, encoding: .utf8)
            assertError({ _ = try ModelConfig.parse(try Data(contentsOf: URL(fileURLWithPath: path)), path: path) },
                        contains: [k, "positive integer"] + (v == "1e300" ? [] : ["got \(v)"]))
        }
        // Past the kernels' 32-bit sizes (and so past what vocab × hidden may multiply to).
        var j = try String(contentsOfFile: dir + "/config.json", encoding: .utf8)
        j = j.replacingOccurrences(of: #""vocab_size": "#, with: #""vocab_size": 1099511627776, "was": "#)
        assertError({ _ = try ModelConfig.parse(Data(j.utf8), path: "config.json") },
                    contains: ["config.json", "vocab_size", "1099511627776 is past the largest supported size 2147483647"])
        assertError({ _ = try LoraConfig.parse(Data(#"{"target_modules": ["q_proj"], "r": 1099511627776}"#.utf8), path: "a.json") },
                    contains: ["'r'", "≤ 2147483647", "got 1099511627776"])
    }

    /// Gemma 3's config as Gemma3TextConfig reads it: the legacy keys (rope_theta, rope_scaling for the full layers,
    /// rope_local_base_freq, sliding_window_pattern) give what rope_parameters and layer_types give; the defaults
    /// (tied, head_dim 256, query_pre_attn_scalar 256, window 4096, GeGLU); and each value it cannot run named.
    func testGemma3ConfigKeysDefaultsAndErrors() throws {
        let base = try JSONValue.read(path: fixturesRoot + "/gemma3_sliding/model/config.json").object!
        func parse(_ edit: (inout JSONObject) -> Void) throws -> ModelConfig {
            var j = base
            edit(&j)
            return try ModelConfig.parse(object: j, path: "config.json")
        }
        let modern = try parse { _ in }
        XCTAssertEqual(modern.rope, RopeSettings(theta: 1_000_000, kind: .linear(factor: 2)))
        XCTAssertEqual(modern.slidingRope, RopeSettings(theta: 10000, kind: .default))
        XCTAssertEqual(modern.slidingLayers, [true, false])
        XCTAssertEqual(modern.attentionScale!, 1 / 12.0.squareRoot(), accuracy: 1e-15)
        let legacy = try parse { j in
            j["rope_parameters"] = nil
            j["layer_types"] = nil
            j["rope_theta"] = .double(1_000_000)
            j["rope_scaling"] = ["rope_type": "linear", "factor": 2.0]
            j["rope_local_base_freq"] = .double(10000)
            j["sliding_window_pattern"] = .int(2)
            j["_sliding_window_pattern"] = nil
        }
        XCTAssertEqual(legacy.rope, modern.rope)
        XCTAssertEqual(legacy.slidingRope, modern.slidingRope)
        XCTAssertEqual(legacy.slidingLayers, modern.slidingLayers)
        // Gemma3TextConfig's defaults.
        let defaults = try parse { j in
            for k in ["tie_word_embeddings", "head_dim", "query_pre_attn_scalar", "sliding_window", "hidden_activation", "rope_parameters",
                      "layer_types", "_sliding_window_pattern"] { j[k] = nil }
            j["num_hidden_layers"] = .int(7)
        }
        XCTAssertTrue(defaults.tieWordEmbeddings)
        XCTAssertEqual(defaults.headDim, 256)
        XCTAssertEqual(defaults.attentionScale, 1.0 / 16)
        XCTAssertEqual(defaults.slidingWindow, 4096)
        XCTAssertEqual(defaults.slidingLayers, [true, true, true, true, true, false, true])
        XCTAssertEqual(defaults.activation, .geluTanh)
        XCTAssertEqual(defaults.rope, RopeSettings(theta: 1_000_000, kind: .default))
        XCTAssertEqual(defaults.slidingRope, RopeSettings(theta: 10000, kind: .default))
        XCTAssertNil(defaults.finalLogitSoftcap)
        // attn_logit_softcapping is read and, as in transformers 5, not applied; final_logit_softcapping is.
        let capped = try parse { j in j["attn_logit_softcapping"] = .double(50); j["final_logit_softcapping"] = .double(30) }
        XCTAssertEqual(capped.finalLogitSoftcap, 30)
        XCTAssertEqual(capped.logitSoftcap, 30)
        for (key, value, message) in [("final_logit_softcapping", JSONValue.double(-1), "must be a positive number or null, got -1"),
                                      ("use_bidirectional_attention", .bool(true), "true is not supported"),
                                      ("sliding_window", .null, "null is not supported for Gemma 3"),
                                      ("hidden_activation", .string("gelu"), "'gelu' is not supported; supported: silu, gelu_pytorch_tanh"),
                                      ("query_pre_attn_scalar", .double(0), "must be positive"),
                                      ("attention_dropout", .double(0.1), "0.1 is not supported"),
                                      ("layer_types", ["full_attention"], "must list 2 entries")] {
            assertError({ _ = try parse { $0[key] = value } }, contains: ["config.json", key, message])
        }
        assertError({ _ = try parse { $0["rope_parameters"] = ["full_attention": ["rope_type": "linear", "factor": 0.5], "sliding_attention": [:]] } },
                    contains: ["rope_parameters.full_attention.factor", "must be 1 or more"])
        assertError({ _ = try parse { $0["rope_parameters"] = ["full_attention": ["rope_type": "yarn"], "sliding_attention": [:]] } },
                    contains: ["rope_parameters.full_attention.rope_type", "'yarn' is not supported"])
        // Only CAUSAL_LM trains on Gemma 3 (its task classes are Gemma3Text*, not named here).
        assertError({ _ = try AdapterPlan(config: modern, lora: LoraConfig(targetModules: .list(["q_proj"]), taskType: "SEQ_CLS")) },
                    contains: ["SEQ_CLS is not available for Gemma3ForCausalLM", "only CAUSAL_LM"])
        XCTAssertNil(modern.withoutLabelsHead(taskType: "QUESTION_ANS"))
        // The Hub's Gemma3ForConditionalGeneration configs (google/gemma-3-4b-it) nest a text_config of a few keys:
        // Gemma3TextConfig's defaults fill in the rest, as transformers 5.25 reads it (checked with Gemma3Config).
        let hub: JSONObject = ["architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3", "eos_token_id": [1, 106],
                               "text_config": ["hidden_size": 2560, "intermediate_size": 10240, "model_type": "gemma3_text",
                                               "num_hidden_layers": 34, "rope_scaling": ["factor": 8.0, "rope_type": "linear"],
                                               "sliding_window": 1024, "final_logit_softcapping": 30.0]]
        let four = try ModelConfig.parse(object: hub, path: "config.json")
        XCTAssertEqual(four.conditionalClass, "Gemma3ForConditionalGeneration")
        XCTAssertEqual([four.vocabSize, four.numHeads, four.numKVHeads, four.headDim, four.maxPositionEmbeddings, four.numLayers],
                       [262_208, 8, 4, 256, 131_072, 34])
        XCTAssertEqual(four.padTokenID, 0)
        XCTAssertTrue(four.tieWordEmbeddings)
        XCTAssertEqual(four.rmsNormEps, 1e-6)
        XCTAssertEqual(four.attentionScale, 1.0 / 16)
        XCTAssertEqual(four.rope, RopeSettings(theta: 1_000_000, kind: .linear(factor: 8)))
        XCTAssertEqual(four.slidingRope, RopeSettings(theta: 10000, kind: .default))
        XCTAssertEqual(four.slidingWindow, 1024)
        XCTAssertEqual((0..<34).filter { four.window(layer: $0) == nil }, [5, 11, 17, 23, 29])
        // Gemma3ForConditionalGeneration computes its logits uncapped: so here, whatever its text_config says.
        XCTAssertNil(four.finalLogitSoftcap)
        // PEFT has no default target_modules for model_type gemma3: name them.
        assertError({ _ = try AdapterPlan(config: four, lora: LoraConfig()) },
                    contains: ["target_modules", "missing: PEFT has no default target_modules for Gemma3ForConditionalGeneration"])
        // hidden_act is not Gemma 3's key: transformers ignores it, and so does this.
        XCTAssertEqual(try parse { $0["hidden_act"] = "gelu"; $0["hidden_activation"] = nil }.activation, .geluTanh)
        // A conditional-generation config without its text_config.
        assertError({ _ = try ModelConfig.parse(object: ["architectures": ["Gemma3ForConditionalGeneration"]], path: "config.json") },
                    contains: ["config.json", "text_config", "missing"])
    }

    /// Qwen2's use_sliding_window as transformers reads it: the window applies on
    /// layers from max_window_layers on (or as layer_types says); positions within the window see
    /// what full attention sees, later ones differ (the layer attends its window only).
    func testQwen2SlidingWindow() throws {
        let src = fixturesRoot + "/qwen2_bias_lora_only/model"
        func config(_ edit: (inout [String: Any]) -> Void) throws -> (String, ModelConfig) {
            let dir = tmp.appendingPathComponent("q\(UUID().uuidString)").path
            try FileManager.default.copyItem(atPath: src, toPath: dir)
            var j = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/config.json"))) as! [String: Any]
            edit(&j)
            try JSONSerialization.data(withJSONObject: j).write(to: URL(fileURLWithPath: dir + "/config.json"))
            return (dir, try ModelConfig.load(directory: dir))
        }
        XCTAssertNil(try config { $0["use_sliding_window"] = true; $0["sliding_window"] = 4 }.1.slidingWindow,
                     "layer_types says every layer is full attention")
        XCTAssertNil(try config { $0["use_sliding_window"] = true; $0["sliding_window"] = 4; $0["layer_types"] = nil }.1.slidingWindow,
                     "max_window_layers 28 ≥ 2 layers: no sliding layer")
        XCTAssertNil(try config { $0["use_sliding_window"] = false; $0["sliding_window"] = 4; $0["layer_types"] = nil; $0["max_window_layers"] = 0 }.1.slidingWindow)
        let (dir, c) = try config { $0["use_sliding_window"] = true; $0["sliding_window"] = 4; $0["layer_types"] = nil; $0["max_window_layers"] = 1 }
        XCTAssertEqual(c.slidingWindow, 4)
        XCTAssertEqual(try config { $0["use_sliding_window"] = true; $0["sliding_window"] = 4
            $0["layer_types"] = ["full_attention", "sliding_attention"] }.1.slidingWindow, 4)
        XCTAssertEqual(c.slidingLayers, [false, true])
        XCTAssertNil(c.window(layer: 0))
        XCTAssertEqual(c.window(layer: 1), 4)
        var lora = LoraConfig(r: 4, targetModules: .list(["q_proj"]))
        lora.inferenceMode = true
        let m = try LlamaLoRAModel(modelDirectory: dir, lora: lora, context: try ComputeContext.shared())
        let full = try LlamaLoRAModel(modelDirectory: src, lora: lora, context: try ComputeContext.shared())
        let ids = [[1, 2, 3, 4, 5, 6]]
        let a = try m.logits(try TokenBatch(inputIDs: ids)), b = try full.logits(try TokenBatch(inputIDs: ids))
        let V = c.vocabSize
        XCTAssertEqual(Array(a[0..<(4 * V)]), Array(b[0..<(4 * V)]), "within the window: full attention")
        XCTAssertNotEqual(Array(a[(4 * V)...]), Array(b[(4 * V)...]), "past the window: the sliding layer sees less")
    }

    /// Qwen3's sliding window as transformers 5.25's Qwen3Config derives it (its __post_init__: sliding_window only with
    /// use_sliding_window, default 4096; layer_types as given, else "sliding_attention" from max_window_layers on,
    /// default 28). Expected kinds printed by Qwen3Config(**keys).sliding_window / .layer_types for each case.
    func testQwen3SlidingWindowLayersAsQwen3ConfigDerivesThem() throws {
        let base = try JSONValue.read(path: fixturesRoot + "/qwen3_qk_norm/model/config.json").object!
        XCTAssertEqual(base["use_sliding_window"], false)
        func parse(_ keys: JSONObject) throws -> ModelConfig {
            var j = base
            for k in ["use_sliding_window", "sliding_window", "max_window_layers", "layer_types"] { j[k] = nil }
            for (k, v) in keys.pairs { j[k] = v }
            return try ModelConfig.parse(object: j, path: "config.json")
        }
        /// Each layer's window (nil: full attention).
        func windows(_ c: ModelConfig) -> [Int?] { (0..<c.numLayers).map { c.window(layer: $0) } }
        // (keys, Qwen3Config's sliding_window and layer_types as windows)
        let cases: [(JSONObject, [Int?])] = [
            (["use_sliding_window": true, "sliding_window": 3, "max_window_layers": 2, "num_hidden_layers": 4], [nil, nil, 3, 3]),
            // sliding_window left out: Qwen3Config's 4096.
            (["use_sliding_window": true, "max_window_layers": 1, "num_hidden_layers": 3], [nil, 4096, 4096]),
            (["use_sliding_window": false, "sliding_window": 3, "max_window_layers": 1, "num_hidden_layers": 3], [nil, nil, nil]),
            // layer_types wins over max_window_layers.
            (["use_sliding_window": true, "sliding_window": 3, "max_window_layers": 0, "num_hidden_layers": 3,
              "layer_types": ["full_attention", "sliding_attention", "full_attention"]], [nil, 3, nil]),
            (["use_sliding_window": true, "sliding_window": 3, "max_window_layers": 5, "num_hidden_layers": 3], [nil, nil, nil]),
            // max_window_layers left out: 28.
            (["use_sliding_window": true, "sliding_window": 3, "num_hidden_layers": 30], Array(repeating: nil, count: 28) + [3, 3]),
            // Qwen3-0.6B's own keys: no window anywhere.
            (["use_sliding_window": false, "sliding_window": .null, "max_window_layers": 28, "num_hidden_layers": 2], [nil, nil]),
        ]
        for (keys, want) in cases {
            XCTAssertEqual(windows(try parse(keys)), want, JSONValue.object(keys).serialized())
        }
        // Qwen2Config has the same default window (Qwen2Config(use_sliding_window=True, max_window_layers=1, num_hidden_layers=2)).
        var qwen2 = try JSONValue.read(path: fixturesRoot + "/qwen2_bias_lora_only/model/config.json").object!
        for k in ["sliding_window", "layer_types"] { qwen2[k] = nil }
        qwen2["use_sliding_window"] = true
        qwen2["max_window_layers"] = 1
        XCTAssertEqual(windows(try ModelConfig.parse(object: qwen2, path: "config.json")), [nil, 4096])
        assertError({ _ = try parse(["use_sliding_window": true, "sliding_window": 3, "layer_types": ["sliding_attention"]]) },
                    contains: ["config.json", "layer_types", "lists 1 layers, the model has 2"])
        assertError({ _ = try parse(["use_sliding_window": true, "sliding_window": 3, "max_window_layers": -1]) },
                    contains: ["config.json", "max_window_layers", "must be a non-negative integer, got -1"])
        // The derived window acts on the layer: within it, full attention's logits; past it, the layer sees less.
        let src = fixturesRoot + "/qwen3_qk_norm/model"
        let dir = tmp.appendingPathComponent("qwen3-sliding").path
        try FileManager.default.copyItem(atPath: src, toPath: dir)
        var j = base
        j["use_sliding_window"] = true
        j["sliding_window"] = 4
        j["layer_types"] = nil
        j["max_window_layers"] = 1
        try Data(JSONValue.object(j).serialized().utf8).write(to: URL(fileURLWithPath: dir + "/config.json"))
        var lora = LoraConfig(r: 4, targetModules: .list(["q_proj"]))
        lora.inferenceMode = true
        let sliding = try LlamaLoRAModel(modelDirectory: dir, lora: lora, context: try ComputeContext.shared())
        XCTAssertEqual(windows(sliding.config), [nil, 4])
        let full = try LlamaLoRAModel(modelDirectory: src, lora: lora, context: try ComputeContext.shared())
        let ids = [[1, 2, 3, 4, 5, 6]], V = sliding.config.vocabSize
        let a = try sliding.logits(try TokenBatch(inputIDs: ids)), b = try full.logits(try TokenBatch(inputIDs: ids))
        XCTAssertEqual(Array(a[0..<(4 * V)]), Array(b[0..<(4 * V)]), "within the window: full attention")
        XCTAssertNotEqual(Array(a[(4 * V)...]), Array(b[(4 * V)...]), "past the window: the sliding layer sees less")
    }

    /// SmolLM3's sliding window as transformers 5.25's SmolLM3Config derives it: only with use_sliding_window and a
    /// sliding_window (default none); layer_types as given, else the NoPE layers (no_rope_layers 0, by default every
    /// no_rope_layer_interval-th) — not Qwen's max_window_layers. Expected windows printed from SmolLM3Config(**keys)
    /// (sliding_window where use_sliding_window and layer_types[i] is "sliding_attention", as SmolLM3Attention reads it).
    func testSmolLM3SlidingWindowOnItsNoPELayers() throws {
        let base = try JSONValue.read(path: fixturesRoot + "/smollm3_nope/model/config.json").object!
        func windows(_ keys: JSONObject) throws -> [Int?] {
            var j = base
            for k in ["use_sliding_window", "sliding_window", "max_window_layers", "layer_types", "no_rope_layers"] { j[k] = nil }
            for (k, v) in keys.pairs { j[k] = v }
            let c = try ModelConfig.parse(object: j, path: "config.json")
            return (0..<c.numLayers).map { c.window(layer: $0) }
        }
        let cases: [(JSONObject, [Int?])] = [
            (["use_sliding_window": true, "sliding_window": 3, "num_hidden_layers": 8], [nil, nil, nil, 3, nil, nil, nil, 3]),
            (["use_sliding_window": true, "sliding_window": 3, "no_rope_layers": [1, 0, 0, 1], "num_hidden_layers": 4], [nil, 3, 3, nil]),
            (["use_sliding_window": true, "sliding_window": 3, "no_rope_layers": [1, 0, 0, 1], "max_window_layers": 0,
              "num_hidden_layers": 4], [nil, 3, 3, nil]),
            (["use_sliding_window": true, "num_hidden_layers": 4], [nil, nil, nil, nil]),
            (["use_sliding_window": false, "sliding_window": 3, "num_hidden_layers": 4], [nil, nil, nil, nil]),
            (["use_sliding_window": true, "sliding_window": 3, "no_rope_layer_interval": 2, "num_hidden_layers": 4], [nil, 3, nil, 3]),
            (["use_sliding_window": true, "sliding_window": 3, "num_hidden_layers": 4,
              "layer_types": ["sliding_attention", "full_attention", "full_attention", "full_attention"]], [3, nil, nil, nil]),
        ]
        for (keys, want) in cases {
            XCTAssertEqual(try windows(keys), want, JSONValue.object(keys).serialized())
        }
    }

    /// Phi-3's config as the Hub has it (microsoft/Phi-4-mini-instruct, transformers 4.x: rope_theta, rope_scaling
    /// {"type": "longrope", short_factor, long_factor}, top-level partial_rotary_factor and
    /// original_max_position_embeddings) is the model of transformers 5's rope_parameters form (Phi3Config 5.25 turns
    /// the one into the other): the same RoPE and bit-identical logits and gradients, past original_max_position_embeddings
    /// (the long factors: the fixture's 20 tokens) and within it (the short ones).
    func testPhi3HubConfigEqualsRopeParameters() throws {
        let rc = try ReferenceCase("phi3_fused_longrope")
        let modern = try JSONValue.read(path: rc.dir + "/model/config.json").object!
        let rp = try XCTUnwrap(modern["rope_parameters"]?.object)
        var hub = modern
        hub["rope_parameters"] = nil
        hub["rope_theta"] = rp["rope_theta"]!
        hub["partial_rotary_factor"] = rp["partial_rotary_factor"]!
        hub["rope_scaling"] = ["type": "longrope", "short_factor": rp["short_factor"]!, "long_factor": rp["long_factor"]!]
        XCTAssertEqual(hub["original_max_position_embeddings"], 16)
        let dir = tmp.appendingPathComponent("phi3-hub").path
        try FileManager.default.copyItem(atPath: rc.dir + "/model", toPath: dir)
        try Data(JSONValue.object(hub).serialized().utf8).write(to: URL(fileURLWithPath: dir + "/config.json"))
        let a = try ModelConfig.load(directory: dir), b = try ModelConfig.load(directory: rc.dir + "/model")
        XCTAssertEqual(a.rope, b.rope)
        XCTAssertEqual(a.partialRotaryDim, 6)
        XCTAssertEqual(b.partialRotaryDim, 6)
        var lora = try LoraConfig.load(path: rc.dir + "/adapter_initial/adapter_config.json")
        lora.inferenceMode = false
        let ctx = try ComputeContext.shared()
        let legacy = try LlamaLoRAModel(modelDirectory: dir, lora: lora, context: ctx)
        let current = try LlamaLoRAModel(modelDirectory: rc.dir + "/model", lora: lora, context: ctx)
        for m in [legacy, current] { try m.loadAdapter(directory: rc.dir + "/adapter_initial") }
        let long = try rc.batch
        XCTAssertGreaterThan(long.seq, 16)
        let short = try TokenBatch(inputIDs: [Array(try rc.batch.inputIDs.prefix(12).map(Int.init))])
        for (what, batch) in [("20 tokens (long factors)", long), ("12 tokens (short factors)", short)] {
            XCTAssertEqual(try legacy.logits(batch), try current.logits(batch), "\(what): logits")
            XCTAssertEqual(try legacy.computeGradients(batch), try current.computeGradients(batch), "\(what): loss")
            let ga = try legacy.gradientTensors(), gb = try current.gradientTensors()
            XCTAssertEqual(Set(ga.keys), Set(gb.keys))
            for (k, g) in ga { XCTAssertEqual(g, gb[k], "\(what): gradient \(k)") }
        }
        XCTAssertNotEqual(try current.logits(short), Array(try current.logits(long).prefix(12 * current.config.vocabSize)),
                          "the short and long factors differ: both were exercised")
    }

    /// PEFT has no default target_modules for model_type phi3 or smollm3 (absent from its
    /// TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING: get_peft_model raises "Please specify `target_modules`"):
    /// neither guesses here; the error names the key and the modules there are. Qwen3 and Gemma 3 text have q_proj, v_proj.
    func testPhi3AndSmolLM3WithoutTargetModulesNameThem() throws {
        for (name, cls, modules) in [("phi3_fused_longrope", "Phi3ForCausalLM", "down_proj, gate_up_proj, o_proj, qkv_proj"),
                                     ("smollm3_nope", "SmolLM3ForCausalLM", "down_proj, gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj")] {
            let c = try ModelConfig.load(directory: fixturesRoot + "/\(name)/model")
            assertError({ _ = try AdapterPlan(config: c, lora: LoraConfig()) },
                        contains: ["LoRA settings", "target_modules", "missing: PEFT has no default target_modules for \(cls); "
                                   + "name the modules to adapt (\(modules), or all-linear)"])
            XCTAssertNoThrow(try AdapterPlan(config: c, lora: LoraConfig(targetModules: .allLinear)), name)
        }
        for name in ["qwen3_qk_norm", "gemma3_sliding"] {
            let plan = try AdapterPlan(config: try ModelConfig.load(directory: fixturesRoot + "/\(name)/model"), lora: LoraConfig())
            XCTAssertEqual(Set(plan.adapted.map { String($0.split(separator: ".").last!) }), ["q_proj", "v_proj"], name)
        }
    }

    // MARK: adapters

    func adapterCopy(_ name: String = "llama_gqa_untied") throws -> String {
        let dst = tmp.appendingPathComponent("adapter-\(UUID().uuidString)").path
        try FileManager.default.copyItem(atPath: fixturesRoot + "/\(name)/adapter_initial", toPath: dst)
        return dst
    }

    func trainingModel() throws -> LlamaLoRAModel {
        let rc = try ReferenceCase("llama_gqa_untied")
        var lora = try LoraConfig.load(path: rc.dir + "/adapter_initial/adapter_config.json")
        lora.inferenceMode = false
        return try LlamaLoRAModel(modelDirectory: rc.dir + "/model", lora: lora, context: try ComputeContext.shared())
    }

    func flat(_ m: LlamaLoRAModel) throws -> [String: [Float]] { try m.adapterTensors().mapValues(\.values) }

    /// A bad tensor late in the file: nothing at all is written to the model.
    func testFailedAdapterLoadLeavesTheModelUnchanged() throws {
        let m = try trainingModel()
        let before = try flat(m)
        let dir = try adapterCopy()
        let file = try SafeTensorsFile(path: dir + "/adapter_model.safetensors")
        let names = file.tensors.keys.sorted()
        var tensors: [(name: String, shape: [Int], values: [Float])] = []
        for n in names {
            let t = try file.floats(n)
            tensors.append((n, t.shape, t.values.map { $0 + 1 }))
        }
        // The last tensor (in the store's order) gets a wrong shape; every other one is valid and different.
        let lastKey = m.store.entries.last!.key
        let i = tensors.firstIndex { $0.name == lastKey }!
        tensors[i] = (lastKey, [1, tensors[i].values.count], tensors[i].values)
        try SafeTensorsWriter.write(tensors, to: dir + "/adapter_model.safetensors")
        assertError({ try m.loadAdapter(directory: dir) }, contains: [lastKey, "has shape [1,", "expected"])
        XCTAssertEqual(try flat(m), before, "a failed load must not change any parameter")
        // A non-float dtype late in the file: same.
        let good = try adapterCopy()
        let g = try SafeTensorsFile(path: good + "/adapter_model.safetensors")
        var header: [String] = [], data: [UInt8] = []
        for n in g.tensors.keys.sorted() {
            let info = g.tensors[n]!
            let dtype = n == lastKey ? "I32" : "F32"
            header.append(#""\#(n)":{"dtype":"\#(dtype)","shape":\#(info.shape),"data_offsets":[\#(data.count),\#(data.count + info.end - info.begin)]}"#)
            data += Array(g.bytes(info))
        }
        try FileManager.default.removeItem(atPath: good + "/adapter_model.safetensors")
        let path = try raw("{" + header.joined(separator: ",") + "}", data: data)
        try FileManager.default.moveItem(atPath: path, toPath: good + "/adapter_model.safetensors")
        assertError({ try m.loadAdapter(directory: good) }, contains: [lastKey, "dtype I32"])
        XCTAssertEqual(try flat(m), before)
    }

    /// The adapter's own adapter_config.json must agree with the model's LoraConfig.
    func testAdapterConfigMismatchIsRefusedByName() throws {
        let m = try trainingModel()
        let before = try flat(m)
        func edited(_ edit: (inout [String: Any]) -> Void) throws -> String {
            let dir = try adapterCopy()
            let path = dir + "/adapter_config.json"
            var j = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
            edit(&j)
            try JSONSerialization.data(withJSONObject: j).write(to: URL(fileURLWithPath: path))
            return dir
        }
        let cases: [((inout [String: Any]) -> Void, [String])] = [
            ({ $0["lora_alpha"] = 32 }, ["adapter_config.json", "'lora_alpha'", "adapter has 32.0", "has 16.0"]),
            ({ $0["use_rslora"] = true }, ["'use_rslora'", "adapter has true", "has false"]),
            ({ $0["rank_pattern"] = ["model.layers.0.self_attn.q_proj": 8]; $0["alpha_pattern"] = ["v_proj": 4] },
             ["'alpha_pattern'", "lora_alpha=4.0 for model.layers.0.self_attn.v_proj", "lora_alpha=16.0"]),
            ({ $0["target_modules"] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"] },
             ["'target_modules'", "the adapter adapts lm_head, which this model's LoRA config does not"]),
            ({ $0["bias"] = "all" }, ["'bias'", "\"all\"", "\"none\""]),
            ({ $0["target_modules"] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj"] },
             ["'target_modules'", "this model's LoRA config adapts model.layers.0.mlp.down_proj, model.layers.1.mlp.down_proj, which the adapter does not"]),
            ({ $0["lora_alpha"] = -1 }, ["lora_alpha", "non-negative"]),
        ]
        for (edit, parts) in cases {
            let dir = try edited(edit)
            assertError({ try m.loadAdapter(directory: dir) }, contains: parts)
        }
        XCTAssertEqual(try flat(m), before)
        // Settings that do not change the math (dropout, inference_mode) are not compared.
        let fine = try edited { $0["lora_dropout"] = 0.1; $0["inference_mode"] = false }
        try m.loadAdapter(directory: fine)
    }

    /// After a load AdamW starts afresh: moments zero, step 0.
    func testLoadResetsTheOptimizer() throws {
        let m = try trainingModel()
        let rc = try ReferenceCase("llama_gqa_untied")
        try m.loadAdapter(directory: rc.dir + "/adapter_initial")
        _ = try m.trainStep(try rc.batch, hyper: rc.hyper)
        XCTAssertEqual(m.step, 1)
        XCTAssertTrue(try m.store.read(\.m).contains { $0 != 0 })
        try m.loadAdapter(directory: rc.dir + "/adapter_initial")
        XCTAssertEqual(m.step, 0)
        XCTAssertTrue(try m.store.read(\.m).allSatisfy { $0 == 0 })
        XCTAssertTrue(try m.store.read(\.v).allSatisfy { $0 == 0 })
        // And the step after a reload equals the first step from scratch.
        let fresh = try trainingModel()
        try fresh.loadAdapter(directory: rc.dir + "/adapter_initial")
        _ = try fresh.trainStep(try rc.batch, hyper: rc.hyper)
        _ = try m.trainStep(try rc.batch, hyper: rc.hyper)
        XCTAssertEqual(try flat(m), try flat(fresh))
    }

    /// Replacing an adapter directory: an injected failure at the swap leaves the
    /// old adapter complete at the target, with no temporary left behind.
    func testSaveAdapterNeverLosesTheOldOne() throws {
        let m = try trainingModel()
        let rc = try ReferenceCase("llama_gqa_untied")
        try m.loadAdapter(directory: rc.dir + "/adapter_initial")
        let target = tmp.appendingPathComponent("out/adapter").path
        try m.saveAdapter(directory: target, baseModel: "base")
        let oldBytes = try Data(contentsOf: URL(fileURLWithPath: target + "/adapter_model.safetensors"))
        _ = try m.trainStep(try rc.batch, hyper: rc.hyper)
        func listing() throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: tmp.appendingPathComponent("out").path).sorted() }
        for (stage, fallback) in [(DirectoryReplace.Stage.exchange, false), (.secondRename, true)] {
            DirectoryReplace.injectFailure = stage
            DirectoryReplace.forceFallback = fallback
            assertError({ try m.saveAdapter(directory: target, baseModel: "base") }, contains: ["adapter", "injected failure"])
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: target + "/adapter_model.safetensors")), oldBytes, "\(stage)")
            XCTAssertTrue(FileManager.default.fileExists(atPath: target + "/adapter_config.json"))
            XCTAssertEqual(try listing(), ["adapter"], "no temporary left after a failed \(stage)")
        }
        // Without failures both paths replace it whole.
        for fallback in [false, true] {
            DirectoryReplace.injectFailure = nil
            DirectoryReplace.forceFallback = fallback
            _ = try m.trainStep(try rc.batch, hyper: rc.hyper)
            try m.saveAdapter(directory: target, baseModel: "base")
            let now = try SafeTensorsFile(path: target + "/adapter_model.safetensors")
            let key = m.store.entries[0].key
            XCTAssertEqual(try now.floats(key).values, try m.adapterTensors()[key]!.values)
            XCTAssertEqual(try listing(), ["adapter"])
        }
        // A file at the target is not an earlier adapter: refused, left alone.
        let fileTarget = tmp.appendingPathComponent("out/file-target").path
        try Data("x".utf8).write(to: URL(fileURLWithPath: fileTarget))
        assertError({ try m.saveAdapter(directory: fileTarget, baseModel: "base") }, contains: ["file-target", "not a directory"])
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: fileTarget)), Data("x".utf8))
        XCTAssertEqual(try listing(), ["adapter", "file-target"])
    }

    // MARK: inspect

    /// `lora-gpu inspect`'s check: every tensor against the config, headers and
    /// byte ranges already checked on open, for safetensors and GGUF.
    func testCheckpointCheckNamesWhatIsWrong() throws {
        for name in ["llama_gqa_untied", "qwen2_bias_lora_only", "mistral_embed_lm_head"] {
            let (c, src) = try ModelSource.open(fixturesRoot + "/\(name)/model")
            let n = AdapterPlan.checkpointTensors(c).count
            XCTAssertTrue(try CheckpointCheck.run(config: c, checkpoint: src)
                            .hasPrefix("checkpoint: \(n) tensors, all present with the config's shapes"), name)
        }
        let gguf = URL(fileURLWithPath: fixturesRoot).deletingLastPathComponent().appendingPathComponent("gguf/llama_q.gguf").path
        let (gc, gs) = try ModelSource.open(gguf)
        XCTAssertEqual(try CheckpointCheck.run(config: gc, checkpoint: gs),
                       "checkpoint: 21 tensors, all present with the config's shapes (5 F32, 10 Q4_0, 4 Q4_1, 2 Q8_0)")
        // A config that disagrees with the weights.
        let dir = tmp.appendingPathComponent("m").path
        try FileManager.default.copyItem(atPath: fixturesRoot + "/llama_modules_to_save/model", toPath: dir)
        var j = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/config.json"))) as! [String: Any]
        j["num_hidden_layers"] = 3
        try JSONSerialization.data(withJSONObject: j).write(to: URL(fileURLWithPath: dir + "/config.json"))
        let (c3, s3) = try ModelSource.open(dir)
        assertError({ _ = try CheckpointCheck.run(config: c3, checkpoint: s3) }, contains: ["model.layers.2.input_layernorm.weight", "not found"])
        j["num_hidden_layers"] = 2
        j["vocab_size"] = 70
        try JSONSerialization.data(withJSONObject: j).write(to: URL(fileURLWithPath: dir + "/config.json"))
        let (c4, s4) = try ModelSource.open(dir)
        assertError({ _ = try CheckpointCheck.run(config: c4, checkpoint: s4) },
                    contains: ["model.embed_tokens.weight", "[67, 32]", "[70, 32]"])
        // Truncated files fail on open.
        let f = dir + "/model.safetensors"
        let data = try Data(contentsOf: URL(fileURLWithPath: f))
        try data.prefix(data.count - 1).write(to: URL(fileURLWithPath: f))
        assertError({ _ = try ModelSource.open(dir) }, contains: ["model.safetensors", "truncated"])
        let g = tmp.appendingPathComponent("cut.gguf").path
        let gdata = try Data(contentsOf: URL(fileURLWithPath: gguf))
        try gdata.prefix(gdata.count - 16).write(to: URL(fileURLWithPath: g))
        assertError({ _ = try ModelSource.open(g) }, contains: ["cut.gguf", "truncated"])
    }

    /// A GGUF tensor offset near Int.max: start + offset must not overflow (it trapped).
    func testGGUFOffsetNearIntMaxIsTruncationNotATrap() throws {
        let gguf = URL(fileURLWithPath: fixturesRoot).deletingLastPathComponent().appendingPathComponent("gguf/llama_q.gguf").path
        let f = try GGUFFile(path: gguf)
        let name = f.tensorNames.last!
        var data = try Data(contentsOf: URL(fileURLWithPath: gguf))
        // The tensor table entry: u64 name length, name, u32 rank, u64 dims, u32 type, u64 offset.
        var lenLE = UInt64(name.utf8.count).littleEndian
        let needle = withUnsafeBytes(of: &lenLE) { Data($0) } + Data(name.utf8)
        let at = try XCTUnwrap(data.range(of: needle)).upperBound
        let offsetAt = at + 4 + 8 * f.tensors[name]!.dims.count + 4
        var huge = UInt64(Int.max - 63).littleEndian
        data.replaceSubrange(offsetAt..<(offsetAt + 8), with: withUnsafeBytes(of: &huge) { Data($0) })
        let p = tmp.appendingPathComponent("huge-offset.gguf").path
        try data.write(to: URL(fileURLWithPath: p))
        assertError({ _ = try GGUFFile(path: p) }, contains: ["huge-offset.gguf", "truncated", name, "offset \(Int.max - 63)"])
    }
}
