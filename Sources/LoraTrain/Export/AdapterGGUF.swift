import Foundation
import LoraBase
import LoraModel

// A PEFT LoRA adapter as llama.cpp's adapter file (issue 19, item 1): what llama.cpp's own
// convert_lora_to_gguf.py writes, so `llama-cli --lora adapter.gguf` (and Ollama's ADAPTER) apply it.
//
//   metadata: general.architecture (llama for Llama and Mistral, qwen2), general.type = adapter,
//             adapter.type = lora, adapter.lora.alpha (float32), general.name, general.quantization_version
//   tensors:  blk.N.attn_q.weight.lora_a (r, in) and .lora_b (out, r) — PEFT's A and B as they are —
//             under llama.cpp's names (attn_q/k/v/output, ffn_gate/up/down, output for lm_head);
//             for the "llama" architecture the rows of q's and k's B are put in llama.cpp's rotary
//             order, as its converter permutes the base weights.
//
// llama.cpp scales each product by alpha / r (r read from the tensor). Where this adapter's scale
// differs — rsLoRA (alpha / √r), alpha_pattern — the factor is folded into B, so the product is the
// adapter's exactly. Trained full modules (modules_to_save) and biases have no place in a LoRA
// GGUF: refused, with the way out (`lora-gpu merge`).

/// An Ollama Modelfile for an exported adapter (issue 19, item 3): `ollama create NAME -f FILE`.
public enum OllamaModelfile {
    /// FROM the base (absolute path), ADAPTER the adapter file, and a stop parameter for each stop token
    /// (the EOS and the chat template's end-of-turn, as `generate` stops) of the tokenizer the adapter
    /// was trained with — the one `train` writes into the adapter directory, else the base's; none
    /// where neither has one. Ollama's TEMPLATE is a Go template, not Jinja: not written (a comment says so).
    public static func text(base: String, adapter: String, adapterDirectory: String? = nil) -> String {
        func absolute(_ p: String) -> String { URL(fileURLWithPath: p).standardized.path }
        var lines = ["# Ollama: ollama create NAME -f THIS_FILE  (written by lora-gpu export)",
                     "# Ollama applies the base model's own prompt template; for another chat format write a TEMPLATE",
                     "# (Ollama's Go template syntax).",
                     "FROM \(absolute(base))", "ADAPTER \(absolute(adapter))"]
        let trained = adapterDirectory.flatMap { d in
            FileManager.default.fileExists(atPath: d + "/tokenizer.json") ? try? ModelText(model: d, chatTemplate: nil, needsTemplate: false) : nil
        }
        if let text = trained ?? (try? ModelText(model: base, chatTemplate: nil, needsTemplate: false)) {
            for id in text.stopIDs.sorted() {
                if let t = text.tokenizer.token(id) { lines.append("PARAMETER stop " + quoted(t)) }
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// A value as Ollama's Modelfile parser reads it: between double quotes, no escapes (it does not
    /// decode backslashes); triple quotes where the value holds a double quote.
    static func quoted(_ s: String) -> String { s.contains("\"") ? "\"\"\"" + s + "\"\"\"" : "\"" + s + "\"" }

    /// The Modelfile's path beside `output` ("adapter.gguf" → "adapter.Modelfile").
    public static func path(beside output: String) -> String {
        let u = URL(fileURLWithPath: output)
        return u.deletingPathExtension().path + ".Modelfile"
    }

    /// Writes the Modelfile beside the exported `adapter` file (atomically) and returns its path.
    @discardableResult
    public static func write(base: String, adapter: String, adapterDirectory: String?) throws -> String {
        let file = path(beside: adapter)
        try AtomicFile.write(text(base: base, adapter: adapter, adapterDirectory: adapterDirectory), to: file)
        return file
    }
}

public enum AdapterGGUFExport {
    public struct Report: Sendable {
        public var tensors: Int
        public var alpha: Double
        public var architecture: String
        /// Modules whose B carries a folded scale factor (rsLoRA, alpha_pattern).
        public var folded: [String]
        /// Modules left out: their scale is 0 (alpha 0), so they add nothing.
        public var zeroScale: [String]
    }

    public struct ExportError: Error, CustomStringConvertible {
        public let description: String
    }

    /// HF module leaf → llama.cpp tensor name part (the unfused projections; `GGUFCheckpoint.ggufName` maps every name).
    static let layerNames = ["self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
                             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
                             "mlp.down_proj": "ffn_down"]


    /// Writes `adapter` (a PEFT adapter directory) for the base model at `model` (a Hugging Face
    /// directory or a GGUF file) to `output` as F32 or F16 tensors.
    public static func export(adapter: String, model: String, output: String, type: GGUFWriter.TensorType) throws -> Report {
        let lora = try LoraConfig.load(path: adapter)
        guard lora.taskType == "CAUSAL_LM" else {
            throw TrainError.setting(source: adapter + "/adapter_config.json", key: "task_type",
                                     reason: "\(lora.taskType): llama.cpp LoRA adapters are for causal LMs; "
                                        + (lora.taskType == "FEATURE_EXTRACTION" ? "an embedder adapter is run with `lora-gpu embed`"
                                            : "a classifier adapter is run with `lora-gpu predict`") + ", or merged with `lora-gpu merge`")
        }
        // Only the base's config and architecture are read (no weights).
        let config: ModelConfig, architecture: String
        if ModelSource.isFile(model) {
            let g = try GGUFCheckpoint(path: model)
            config = g.config
            architecture = try g.file.string("general.architecture")
        } else {
            config = try ModelConfig.load(directory: model)
            architecture = config.architecture.traits.ggufName
        }
        let permuted = Architecture.gguf(architecture)?.traits.ggufPermutesQK ?? false
        let weights = adapter + "/adapter_model.safetensors"
        let file = try SafeTensorsFile(path: weights)
        let P = AdapterPlan.prefix
        var paths: [String] = []
        for key in file.tensors.keys.sorted() {
            guard key.hasPrefix(P) else { throw ExportError(description: "\(weights): tensor '\(key)' is not a PEFT adapter tensor") }
            let name = String(key.dropFirst(P.count))
            if name.hasSuffix(".base_layer.weight") {
                continue  // PEFT's copy of a targeted embedding's or lm_head's frozen weight: the base's, not the adapter's
            } else if name.hasSuffix(".lora_A.weight") {
                paths.append(String(name.dropLast(".lora_A.weight".count)))
            } else if name.hasSuffix(".lora_B.weight") {
                continue
            } else if name.contains("lora_embedding_") {
                throw ExportError(description: "\(weights): a LoRA on embed_tokens is not exported to GGUF yet; "
                                  + "`lora-gpu merge` writes the merged model")
            } else {
                throw ExportError(description: "\(weights): '\(name)' is trained in full (modules_to_save or a bias), which a "
                                  + "llama.cpp LoRA file cannot hold; `lora-gpu merge` writes the merged model instead")
            }
        }
        // PEFT's module names on a multimodal class ("model.language_model.layers…" on Gemma3ForConditionalGeneration)
        // are its language model's "model.layers…", the names llama.cpp's tensors come from.
        func hfPath(_ p: String) -> String {
            config.conditionalClass != nil && p.hasPrefix(config.peftBasePrefix) ? "model." + p.dropFirst(config.peftBasePrefix.count) : p
        }
        // Layers in numeric order, then the module names.
        func order(_ p: String) -> (Int, String) {
            let parts = hfPath(p).split(separator: ".")
            return (parts.count > 2 ? Int(parts[2]) ?? Int.max : Int.max, p)
        }
        paths.sort { order($0) < order($1) }
        var w = GGUFWriter()
        w.add("general.architecture", .string(architecture))
        w.add("general.type", .string("adapter"))
        w.add("adapter.type", .string("lora"))
        w.add("general.name", .string(URL(fileURLWithPath: adapter).standardized.lastPathComponent))
        w.add("adapter.lora.alpha", .float32(Float(lora.loraAlpha)))
        w.add("general.quantization_version", .uint32(2))
        var folded: [String] = [], zeroScale: [String] = []
        for path in paths {
            guard let g = GGUFCheckpoint.ggufName(hfPath(path) + ".weight") else {
                throw ExportError(description: "\(weights): no llama.cpp tensor for module '\(path)'")
            }
            if path == "lm_head", config.tieWordEmbeddings {
                throw ExportError(description: "\(weights): a LoRA on lm_head of a model with tied embeddings has no llama.cpp "
                                  + "output tensor to apply to (llama.cpp's converter refuses it too); `lora-gpu merge` writes it")
            }
            let a = try file.floats(P + path + ".lora_A.weight"), b = try file.floats(P + path + ".lora_B.weight")
            guard a.shape.count == 2, b.shape.count == 2, b.shape[1] == a.shape[0] else {
                throw ExportError(description: "\(weights): '\(path)': lora_A \(a.shape) and lora_B \(b.shape) do not pair")
            }
            let r = a.shape[0]
            let ours = lora.scale(for: path), llama = lora.loraAlpha != 0 ? lora.loraAlpha / Double(r) : 1
            if ours == 0 { zeroScale.append(path); continue }  // adds nothing (alpha 0): not written
            var bv = b.values
            if ours != llama {
                let f = Float(ours / llama)
                bv = bv.map { $0 * f }
                folded.append(path)
            }
            if permuted, path.hasSuffix("self_attn.q_proj") {
                bv = GGUFCheckpoint.rotaryRows(bv, rows: b.shape[0], heads: config.numHeads, toGGUF: true)
            }
            if permuted, path.hasSuffix("self_attn.k_proj") {
                bv = GGUFCheckpoint.rotaryRows(bv, rows: b.shape[0], heads: config.numKVHeads, toGGUF: true)
            }
            w.add(tensor: g + ".lora_a", shape: a.shape, values: a.values, type: type)
            w.add(tensor: g + ".lora_b", shape: b.shape, values: bv, type: type)
        }
        if paths.count == zeroScale.count {
            throw ExportError(description: "\(weights): no LoRA tensor to export" + (paths.isEmpty ? "" : " (every module's scale is 0)"))
        }
        try w.write(to: output)
        return Report(tensors: 2 * (paths.count - zeroScale.count), alpha: lora.loraAlpha, architecture: architecture,
                      folded: folded, zeroScale: zeroScale)
    }
}
