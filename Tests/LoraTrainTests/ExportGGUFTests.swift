import Foundation
import LoraBase
import XCTest
@testable import LoraTrain
@testable import LoraModel

/// Issue 19, item 1: `lora-gpu export` writes what llama.cpp's convert_lora_to_gguf.py writes
/// (Tests/Fixtures/export_gguf, made by scripts/make_export_fixtures.py with llama.cpp's converter),
/// except where the converter drops this adapter's scale (rsLoRA, alpha_pattern): there the factor
/// our scale / (alpha / r) is in lora_b, so llama.cpp's alpha / r gives the adapter's product.
final class ExportGGUFTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws { dir = try temporaryDirectory("export") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    func export(_ name: String, _ type: GGUFWriter.TensorType = .f32) throws -> (GGUFFile, AdapterGGUFExport.Report) {
        let out = dir + "/\(name).gguf"
        let r = try AdapterGGUFExport.export(adapter: fixturesRoot + "/reference/\(name)/adapter_final",
                                             model: fixturesRoot + "/reference/\(name)/model", output: out, type: type)
        return (try GGUFFile(path: out), r)
    }

    func testTensorsAndMetadataEqualLlamaCppsConverter() throws {
        for (name, outtype) in [("llama_gqa_untied", "f32"), ("llama_gqa_untied", "f16"), ("llama_layers_patterns", "f32"),
                                ("llama_tied_rslora_regex", "f32"), ("llama_gqa_untied", "q8_0")] {
            let ref = try GGUFFile(path: fixturesRoot + "/export_gguf/\(name).\(outtype).gguf")
            let (ours, report) = try export(name, outtype == "f16" ? .f16 : outtype == "q8_0" ? .q8_0 : .f32)
            let what = "\(name) \(outtype)"
            for key in ["general.architecture", "general.type", "adapter.type", "adapter.lora.alpha"] {
                XCTAssertEqual(ours.metadata[key], ref.metadata[key], "\(what): \(key)")
            }
            XCTAssertEqual(ref.metadata["general.type"], .string("adapter"))
            XCTAssertEqual(Set(ours.tensorNames), Set(ref.tensorNames), what)
            XCTAssertEqual(report.tensors, ref.tensorNames.count)
            let lora = try LoraConfig.load(path: fixturesRoot + "/reference/\(name)/adapter_final")
            var folded = 0
            for t in ref.tensorNames {
                let a = try XCTUnwrap(ref.tensors[t]), b = try XCTUnwrap(ours.tensors[t])
                XCTAssertEqual(b.dims, a.dims, "\(what) \(t)")
                XCTAssertEqual(b.type, a.type, "\(what) \(t)")
                let x = try ref.floats(t), y = try ours.floats(t)
                // The module and its scale: llama.cpp applies alpha / r (r = lora_a's rows).
                let module = try XCTUnwrap(Self.modulePath(t))
                let r = a.dims.count == 2 && t.hasSuffix(".lora_b") ? a.dims[0] : 0
                let factor = t.hasSuffix(".lora_b") ? Float(lora.scale(for: module) / (lora.loraAlpha / Double(r))) : 1
                if factor != 1 { folded += 1 }
                // Bit for bit where nothing is folded: the same f16 rounding and q8_0 blocks as gguf-py's quantize.
                if factor == 1 { XCTAssertEqual(Array(ours.bytes(b)), Array(ref.bytes(a)), "\(what) \(t): bytes") }
                XCTAssertEqual(y, x.map { factor == 1 ? $0 : $0 * factor }, "\(what) \(t) (factor \(factor))")
            }
            switch name {
            case "llama_layers_patterns": XCTAssertEqual(folded, 2, "alpha_pattern's up_proj in both layers")
            case "llama_tied_rslora_regex": XCTAssertEqual(folded, ref.tensorNames.count / 2, "rsLoRA: every module")
            default: XCTAssertEqual(folded, 0)
            }
            XCTAssertEqual(report.folded.count, folded, what)
        }
    }

    /// "blk.3.ffn_up.weight.lora_b" → "model.layers.3.mlp.up_proj".
    static func modulePath(_ tensor: String) -> String? {
        let p = tensor.split(separator: ".")
        guard p.count == 5, p[0] == "blk" else { return tensor.hasPrefix("output.weight") ? "lm_head" : nil }
        let names = AdapterGGUFExport.layerNames.first { $0.value == String(p[2]) }
        return names.map { "model.layers.\(p[1]).\($0.key)" }
    }

    /// What a LoRA GGUF cannot hold is refused, naming it and the way out; nothing is written.
    func testUnexportableAdaptersAreRefused() throws {
        let cases = [("llama_modules_to_save", "'lm_head.weight' is trained in full (modules_to_save or a bias), which a llama.cpp "
                      + "LoRA file cannot hold; `lora-gpu merge` writes the merged model instead"),
                     ("llama_bias_all", "is trained in full (modules_to_save or a bias)"),
                     ("mistral_embed_lm_head", "a LoRA on embed_tokens is not exported to GGUF yet; `lora-gpu merge` writes the merged model")]
        for (name, expected) in cases {
            XCTAssertThrowsError(try export(name)) { e in
                XCTAssertTrue("\(e)".contains(expected), "\(name): \(e)")
                XCTAssertTrue("\(e)".hasPrefix(fixturesRoot + "/reference/\(name)/adapter_final/adapter_model.safetensors: "), "\(e)")
            }
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/\(name).gguf"))
        }
    }

    /// The command as a user runs it.
    func testCommandLine() throws {
        let out = dir + "/a.gguf"
        let r = try CLI.run(["export", "--adapter", fixturesRoot + "/reference/llama_gqa_untied/adapter_final",
                             "--model", fixturesRoot + "/reference/llama_gqa_untied/model", "--output", out])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout, "wrote \(out): 28 tensors (f32), architecture llama, alpha 16.0\n"
                       + "wrote \(dir)/a.Modelfile: `ollama create NAME -f \(dir)/a.Modelfile` (llama.cpp: llama-cli -m BASE.gguf --lora \(out))\n")
        // The fixture model has no tokenizer: no stop parameter.
        XCTAssertEqual(try String(contentsOfFile: dir + "/a.Modelfile", encoding: .utf8),
                       "# Ollama: ollama create NAME -f THIS_FILE  (written by lora-gpu export)\n"
                       + "# Ollama applies the base model's own prompt template; for another chat format write a TEMPLATE\n"
                       + "# (Ollama's Go template syntax).\n"
                       + "FROM \(URL(fileURLWithPath: fixturesRoot + "/reference/llama_gqa_untied/model").standardized.path)\n"
                       + "ADAPTER \(out)\n")
        // A base with a tokenizer and a chat template: its EOS and end-of-turn are stop parameters.
        let text = OllamaModelfile.text(base: fixturesRoot + "/generate/cli_chatml/model", adapter: out)
        XCTAssertTrue(text.hasSuffix("PARAMETER stop \"<|endoftext|>\"\nPARAMETER stop \"<|im_end|>\"\n"), text)
        // The tokenizer train writes into the adapter directory wins over the base's (a custom chat template's
        // end-of-turn): here the base has none and the adapter directory has the ChatML one.
        let trained = dir + "/trained"
        try FileManager.default.createDirectory(atPath: trained, withIntermediateDirectories: true)
        for f in ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja"] {
            try FileManager.default.copyItem(atPath: fixturesRoot + "/generate/cli_chatml/model/" + f, toPath: trained + "/" + f)
        }
        let withTrained = OllamaModelfile.text(base: fixturesRoot + "/reference/llama_gqa_untied/model", adapter: out,
                                               adapterDirectory: trained)
        XCTAssertTrue(withTrained.hasSuffix("PARAMETER stop \"<|im_end|>\"\n"), withTrained)
        // Ollama's parser takes quoted values without escapes; a quote inside needs triple quotes.
        XCTAssertEqual(OllamaModelfile.quoted("a\\b"), "\"a\\b\"")
        XCTAssertEqual(OllamaModelfile.quoted("say \"x\""), "\"\"\"say \"x\"\"\"\"")
        let bad = try CLI.run(["export", "--adapter", fixturesRoot + "/reference/llama_gqa_untied/adapter_final",
                               "--model", fixturesRoot + "/reference/llama_gqa_untied/model", "--output", out, "--outtype", "q4_k"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("--outtype 'q4_k' is not supported; supported: f32, f16, q8_0"), bad.stderr)
    }
}

/// q8_0 blocks as gguf-py's Q8_0.quantize_blocks makes them: ties round away from zero
/// (np_roundf), a zero block has d = 0 and q = 0, d is stored as f16.
final class Q8_0BlockTests: XCTestCase {
    func testRoundingAndZeroBlocks() {
        var block = [Float](repeating: 0, count: 32)
        block[0] = 127; block[1] = 2.5; block[2] = -3.5; block[3] = -0.5; block[4] = 0.5; block[5] = 1.5; block[6] = -127
        let out = GGUFWriter.q8_0(block + [Float](repeating: 0, count: 32))
        XCTAssertEqual(out.count, 68)
        XCTAssertEqual(Array(out[0..<2]), [0x00, 0x3C], "d = 1.0 as f16")
        XCTAssertEqual(Array(out[2..<9]).map { Int8(bitPattern: $0) }, [127, 3, -4, -1, 1, 2, -127])
        XCTAssertEqual(Array(out[34..<68]), [UInt8](repeating: 0, count: 34), "a zero block")
        XCTAssertTrue(GGUFWriter.canHold(.q8_0, shape: [8, 64]))
        XCTAssertFalse(GGUFWriter.canHold(.q8_0, shape: [64, 8]))
    }
}
