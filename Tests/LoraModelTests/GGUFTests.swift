import Foundation
import LoraModel
import LoraOps
import TestSupport
import XCTest

/// Fixtures made by scripts/make_gguf_fixtures.py with gguf-py, transformers and tokenizers.
let ggufFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Fixtures/gguf").path

final class GGUFTests: XCTestCase {
    static let models = ["llama_f32", "llama_f16", "llama_q", "mistral_q5", "qwen2_f32"]

    var expected: [String: Any] {
        get throws {
            let data = try Data(contentsOf: URL(fileURLWithPath: ggufFixtures + "/expected.json"))
            return try JSONSerialization.jsonObject(with: data) as! [String: Any]
        }
    }

    func tempDir() throws -> String {
        let d = try temporaryDirectory("gguf-tests")
        addTeardownBlock { try? FileManager.default.removeItem(atPath: d) }
        return d
    }

    // MARK: the container

    func testMetadataOfEveryValueType() throws {
        let f = try GGUFFile(path: ggufFixtures + "/quant_zoo.gguf")
        XCTAssertEqual(f.version, 3)
        XCTAssertEqual(f.alignment, 64)
        let m = f.metadata
        XCTAssertEqual(m["test.u8"], .uint8(200))
        XCTAssertEqual(m["test.i8"], .int8(-100))
        XCTAssertEqual(m["test.u16"], .uint16(60000))
        XCTAssertEqual(m["test.i16"], .int16(-30000))
        XCTAssertEqual(m["test.u32"], .uint32(4_000_000_000))
        XCTAssertEqual(m["test.i32"], .int32(-2_000_000_000))
        XCTAssertEqual(m["test.f32"], .float32(1.5))
        XCTAssertEqual(m["test.u64"], .uint64(UInt64(1) << 63 + 5))
        XCTAssertNil(m["test.u64"]?.int, "a u64 past Int.max has no Int value")
        XCTAssertEqual(m["test.i64"], .int64(-(Int64(1) << 62)))
        XCTAssertEqual(m["test.f64"], .float64(2.718281828459045))
        XCTAssertEqual(m["test.bool"], .bool(true))
        XCTAssertEqual(m["test.string"], .string("héllo"))
        XCTAssertEqual(m["test.array_i32"]?.array?.compactMap(\.int), [1, -2, 3])
        XCTAssertEqual(m["test.array_str"]?.strings, ["a", "bc", ""])
        XCTAssertEqual(m["test.array_f32"], .array([.float32(0.5), .float32(-0.25)]))
        XCTAssertEqual(m["test.array_nested"]?.array?.map { $0.array?.compactMap(\.int) ?? [] }, [[1, 2], [3]])
        XCTAssertEqual(f.metadataKeys.first, "general.architecture")
        XCTAssertEqual(f.tensors["t.q4_k"]?.dims, [256, 2])
        XCTAssertEqual(f.tensors["t.q4_k"]?.shape, [2, 256])
        for name in f.tensorNames { XCTAssertEqual(f.tensors[name]!.offset % 64, 0, name) }
    }

    func testDequantizationOfEveryTypeMatchesGGUFPy() throws {
        let f = try GGUFFile(path: ggufFixtures + "/quant_zoo.gguf")
        let ref = try SafeTensorsFile(path: ggufFixtures + "/quant_zoo.expected.safetensors")
        XCTAssertEqual(ref.tensors.count, GGMLType.supported.count)
        for name in ref.tensors.keys.sorted() {
            let want = try ref.floats(name).values
            let got = try f.floats(name)
            XCTAssertEqual(got.count, want.count, name)
            let mismatches = zip(got, want).filter { $0.0.bitPattern != $0.1.bitPattern }.count
            XCTAssertEqual(mismatches, 0, "\(name) (\(f.tensors[name]!.type.name)): \(mismatches) values differ from gguf-py's")
        }
    }

    func testUnsupportedTensorTypeNamesTheTensorAndType() throws {
        let f = try GGUFFile(path: ggufFixtures + "/quant_zoo.gguf")
        XCTAssertThrowsError(try f.floats("t.iq4_nl")) { e in
            let s = "\(e)"
            XCTAssertTrue(s.contains("t.iq4_nl") && s.contains("IQ4_NL") && s.contains("quant_zoo.gguf"), s)
        }
    }

    // MARK: the model

    func testConfigFromMetadata() throws {
        let models = try expected["models"] as! [String: Any]
        for name in Self.models {
            let want = (models[name] as! [String: Any])["config"] as! [String: Any]
            let g = try GGUFCheckpoint(path: ggufFixtures + "/\(name).gguf")
            XCTAssertEqual(g.unusedTensors, [], name)
            let c = g.config
            XCTAssertEqual(c.architecture.rawValue, want["architectures"] as? String, name)
            XCTAssertEqual(c.tieWordEmbeddings, want["tie_word_embeddings"] as? Bool, name)
            XCTAssertEqual(c.vocabSize, want["vocab_size"] as? Int, name)
            XCTAssertEqual(c.hiddenSize, want["hidden_size"] as? Int, name)
            XCTAssertEqual(c.numKVHeads, want["num_key_value_heads"] as? Int, name)
            XCTAssertEqual(c.headDim, want["head_dim"] as? Int, name)
            XCTAssertEqual(c.maxPositionEmbeddings, want["max_position_embeddings"] as? Int, name)
            XCTAssertEqual(c.rmsNormEps, (want["rms_norm_eps"] as! NSNumber).doubleValue, name)
            XCTAssertEqual(c.numLayers, 2)
            XCTAssertEqual(c.numHeads, 4)
        }
    }

    func testDequantizedWeightsMatchTransformers() throws {
        for name in Self.models {
            let g = try GGUFCheckpoint(path: ggufFixtures + "/\(name).gguf")
            let ref = try SafeTensorsFile(path: ggufFixtures + "/\(name).expected.safetensors")
            for key in ref.tensors.keys.sorted() where key != "logits" {
                let (shape, want) = try ref.floats(key)
                let got = try g.hostFloats(key, shape: shape)
                let e = relErr(got, want)
                XCTAssertLessThanOrEqual(e, 1e-7, "\(name) \(key): relative error \(e)")
            }
        }
    }

    func testLogitsMatchTransformers() throws {
        let ids = try expected["input_ids"] as! [[Int]]
        for name in Self.models {
            var lora = LoraConfig()
            lora.inferenceMode = true  // B = 0: the logits are the base model's
            let m = try LlamaLoRAModel(modelDirectory: ggufFixtures + "/\(name).gguf", lora: lora,
                                       context: try ComputeContext.shared())
            let logits = try m.logits(try TokenBatch(inputIDs: ids))
            let ref = try SafeTensorsFile(path: ggufFixtures + "/\(name).expected.safetensors").floats("logits").values
            let e = relErr(logits, ref)
            XCTAssertLessThanOrEqual(e, 1e-5, "\(name): logits relative error \(e)")
        }
    }

    // MARK: the tokenizer

    func testTokenizerFilesMatchTransformersConversion() throws {
        for name in Self.models {
            let f = try GGUFFile(path: ggufFixtures + "/\(name).gguf")
            let files = try f.tokenizerFiles()
            // Well-formed JSON, as written.
            let mine = try JSONSerialization.jsonObject(with: files.tokenizerJSON) as! [String: Any]
            let config = try JSONSerialization.jsonObject(with: files.tokenizerConfig) as! [String: Any]
            let refData = try Data(contentsOf: URL(fileURLWithPath: ggufFixtures + "/\(name).tokenizer/tokenizer.json"))
            let ref = try JSONSerialization.jsonObject(with: refData) as! [String: Any]
            // Where we follow the original tokenizer rather than transformers' conversion (llama.cpp's
            // suite checks those: GGUFVocabSuiteTests): a SentencePiece vocabulary gets the original Llama
            // tokenizer.json's normalizer (dummy prefix "▁" on every fragment, spaces as "▁") and no
            // pre-tokenizer, where transformers writes a Metaspace pre-tokenizer; Llama 3's "llama-bpe"
            // sets ignore_merges as its original does.
            let sentencePiece = f.metadata["tokenizer.ggml.model"]?.string == "llama"
            let pre = f.metadata["tokenizer.ggml.pre"]?.string
            var keys = ["post_processor", "decoder", "added_tokens"]
            if sentencePiece {
                let n = try XCTUnwrap(mine["normalizer"] as? [String: Any], name)
                XCTAssertEqual(n["type"] as? String, "Sequence", name)
                let steps = try XCTUnwrap(n["normalizers"] as? [[String: Any]], name)
                XCTAssertEqual(steps.map { $0["type"] as? String }, ["Prepend", "Replace"], name)
                XCTAssertEqual(steps[0]["prepend"] as? String, "\u{2581}", name)
                XCTAssertTrue(mine["pre_tokenizer"] is NSNull, name)
                XCTAssertEqual((ref["pre_tokenizer"] as? [String: Any])?["type"] as? String, "Metaspace", name)
            } else {
                keys += ["normalizer", "pre_tokenizer"]
            }
            for key in keys {
                XCTAssertEqual(mine[key] as? NSObject, ref[key] as? NSObject, "\(name): tokenizer.json '\(key)' differs")
            }
            let mm = mine["model"] as! [String: Any], rm = ref["model"] as! [String: Any]
            for key in rm.keys.sorted() where key != "merges" {
                if key == "ignore_merges" && pre == "llama-bpe" {
                    XCTAssertEqual(mm[key] as? Bool, true, "\(name): llama-bpe sets ignore_merges")
                    continue
                }
                XCTAssertEqual(mm[key] as? NSObject, rm[key] as? NSObject, "\(name): model.\(key) differs")
            }
            // Merges in the same order (the reference may write pairs or "a b" strings).
            let rMerges = (rm["merges"] as! [Any]).map { ($0 as? [String])?.joined(separator: " ") ?? ($0 as! String) }
            let mMerges = (mm["merges"] as! [[String]]).map { $0.joined(separator: " ") }
            XCTAssertEqual(mMerges, rMerges, "\(name): merges differ")
            let refConfigData = try Data(contentsOf: URL(fileURLWithPath: ggufFixtures + "/\(name).tokenizer/tokenizer_config.json"))
            let refConfig = try JSONSerialization.jsonObject(with: refConfigData) as! [String: Any]
            for key in ["bos_token", "eos_token", "unk_token", "pad_token"] {
                XCTAssertEqual(config[key] as? NSObject, refConfig[key] as? NSObject, "\(name): tokenizer_config '\(key)'")
            }
            XCTAssertEqual(config["chat_template"] as? String, f.metadata["tokenizer.chat_template"]?.string, name)
        }
    }

    func testRecoveredSentencePieceMergesOrder() throws {
        // generate_merges by hand: "ab" (score −1) → (a, b); "abc" (score −0.5) → (a, bc), (ab, c) by ids.
        let merges = GGUFFile.sentencePieceMerges(tokens: ["a", "b", "c", "ab", "bc", "abc"],
                                                  scores: [0, 0, 0, -1, -2, -0.5])
        XCTAssertEqual(merges.map { "\($0.0) \($0.1)" }, ["ab c", "a bc", "a b", "b c"])
    }

    // MARK: errors

    /// A tokenizer model we do not build (WordPiece "bert") is named with the ones we do.
    func testUnsupportedTokenizerModelIsNamed() throws {
        var d = Data("GGUF".utf8)
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
        func str(_ s: String) { u64(UInt64(s.utf8.count)); d.append(contentsOf: Array(s.utf8)) }
        u32(3); u64(0); u64(2)                                   // version, tensors, metadata entries
        str("tokenizer.ggml.model"); u32(8); str("bert")          // type 8: string
        str("tokenizer.ggml.tokens"); u32(9); u32(8); u64(2); str("[CLS]"); str("a")  // type 9: array of strings
        let p = try tempDir() + "/bert.gguf"
        try d.write(to: URL(fileURLWithPath: p))
        XCTAssertThrowsError(try GGUFFile(path: p).tokenizerFiles()) { e in
            XCTAssertEqual("\(e)", "\(p): metadata 'tokenizer.ggml.model': 'bert' is not supported; supported: gpt2, llama, gemma4")
        }
    }

    func testBadMagicNamesTheFile() throws {
        let p = try tempDir() + "/bad.gguf"
        try Data("GGUX\u{3}\0\0\0".utf8).write(to: URL(fileURLWithPath: p))
        XCTAssertThrowsError(try GGUFFile(path: p)) { e in
            guard case GGUFError.badMagic(let path, _) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(path, p)
        }
    }

    func testVersionsTwoAndThreeOnly() throws {
        let src = try Data(contentsOf: URL(fileURLWithPath: ggufFixtures + "/llama_q.gguf"))
        let d = try tempDir()
        for (v, ok) in [(UInt8(1), false), (2, true), (4, false)] {
            var data = src
            data[4] = v
            let p = d + "/v\(v).gguf"
            try data.write(to: URL(fileURLWithPath: p))
            if ok {
                let f = try GGUFFile(path: p)
                XCTAssertEqual(f.version, 2)
                XCTAssertEqual(try f.floats("blk.0.attn_q.weight"),
                               try GGUFFile(path: ggufFixtures + "/llama_q.gguf").floats("blk.0.attn_q.weight"))
            } else {
                XCTAssertThrowsError(try GGUFFile(path: p)) { e in
                    XCTAssertEqual(e as? GGUFError, .unsupportedVersion(path: p, version: UInt32(v)))
                }
            }
        }
    }

    func testTruncatedFileNamesTheFileAndTensor() throws {
        let src = try Data(contentsOf: URL(fileURLWithPath: ggufFixtures + "/llama_q.gguf"))
        let d = try tempDir()
        // Cut in the tensor data: the last tensor no longer fits.
        let p = d + "/cut.gguf"
        try src.prefix(src.count - 100).write(to: URL(fileURLWithPath: p))
        XCTAssertThrowsError(try GGUFFile(path: p)) { e in
            guard case GGUFError.truncated(let path, let what) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(path, p)
            XCTAssertTrue(what.contains("tensor '"), what)
        }
        // Cut in the metadata.
        let q = d + "/cut2.gguf"
        try src.prefix(200).write(to: URL(fileURLWithPath: q))
        XCTAssertThrowsError(try GGUFFile(path: q)) { e in
            guard case GGUFError.truncated(let path, _) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(path, q)
        }
        // A missing file.
        XCTAssertThrowsError(try GGUFFile(path: d + "/absent.gguf")) { e in
            XCTAssertTrue("\(e)".contains("absent.gguf"), "\(e)")
        }
    }
}
