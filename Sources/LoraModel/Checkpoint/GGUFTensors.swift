import Foundation
import LoraBase
import LoraOps

// MARK: the checkpoint abstraction

/// One tensor as a checkpoint hands it over: little-endian F32/F16/BF16
/// bytes (valid while the source lives), or fp32 values already on the host.
public enum CheckpointTensor {
    case raw(dtype: DType, bytes: UnsafeRawBufferPointer)
    case floats([Float])
    /// A matrix (rows, cols) in ggml blocks kept as they are (`WeightStorage.quantized`): row r is row
    /// `rowSource[r]` of `bytes` (llama.cpp's rotary order of q/k undone), or row r.
    case blocks(type: GGMLType, bytes: UnsafeRawBufferPointer, rows: Int, cols: Int, rowSource: [Int32]?)
    /// A matrix (rows, cols) quantized at load into the source blocks `reblock_q` reads (ggml's, or NF4's),
    /// held here (`QuantizingCheckpoint`).
    case ownedBlocks(storage: WeightStorage, bytes: [UInt8], rows: Int, cols: Int)

    /// The values as fp32 on the host.
    public func floats(path: String, name: String) throws -> [Float] {
        switch self {
        case .floats(let v): return v
        case .raw(let dtype, let bytes): return try SafeTensorsFile.toFloat(bytes, dtype: dtype, path: path, name: name)
        case .blocks(let type, let bytes, let rows, let cols, let rowSource):
            let w = GGMLDequantize.floats(bytes, type: type, count: rows * cols)
            guard let rowSource else { return w }
            return rowSource.flatMap { w[(Int($0) * cols)..<((Int($0) + 1) * cols)] }
        case .ownedBlocks(let storage, let bytes, let rows, let cols):
            return bytes.withUnsafeBytes { QuantizedBlocks.dequantize($0, storage: storage, count: rows * cols) }
        }
    }
}

/// Where a model's weights come from, by Hugging Face name: a safetensors
/// directory (`CheckpointStore`) or a llama.cpp GGUF file (`GGUFCheckpoint`).
public protocol CheckpointSource: AnyObject {
    /// The directory or file, for messages.
    var location: String { get }
    func contains(_ name: String) -> Bool
    /// The tensor `name` (an HF name), after checking it has `shape` (row-major).
    func checkpointTensor(_ name: String, shape: [Int]) throws -> CheckpointTensor
    /// Checks `name` is present with `shape` and a usable type, reading no
    /// weights; returns its type as the file names it.
    func validateTensor(_ name: String, shape: [Int]) throws -> String
    /// Every tensor name in the checkpoint (Hugging Face names where mapped).
    var tensorNames: [String] { get }
    /// The tensor as a frozen matrix (rows, cols) is loaded: `.blocks` where the source keeps a quantized
    /// type on the device (a GGUF file's Q8_0 … Q5_1, Q4_K, Q5_K, Q6_K, `GGUFCheckpoint.keepsQuantizedBlocks`), else `checkpointTensor`.
    func frozenTensor(_ name: String, shape: [Int]) throws -> CheckpointTensor
    /// The type a frozen matrix is kept in, as the memory plan records it: the file's ("BF16", "Q4_1"), or
    /// "Q6_K → F32" for a type dequantized at load.
    func frozenDType(_ name: String, shape: [Int]) throws -> String
}

extension CheckpointSource {
    public func frozenTensor(_ name: String, shape: [Int]) throws -> CheckpointTensor { try checkpointTensor(name, shape: shape) }
    public func frozenDType(_ name: String, shape: [Int]) throws -> String { try validateTensor(name, shape: shape) }

    /// The tensor as fp32 on the host.
    public func hostFloats(_ name: String, shape: [Int]) throws -> [Float] {
        try checkpointTensor(name, shape: shape).floats(path: location, name: name)
    }
}

extension CheckpointStore: CheckpointSource {
    public var location: String { directory }
    public func contains(_ name: String) -> Bool { location(of: name) != nil }
    public func checkpointTensor(_ name: String, shape: [Int]) throws -> CheckpointTensor {
        let t = try tensor(name, shape: shape)
        return .raw(dtype: t.info.dtype, bytes: t.bytes)
    }
    public func validateTensor(_ name: String, shape: [Int]) throws -> String {
        // tensor(_:shape:) checks shape and dtype and hands back mapped bytes without touching them.
        try tensor(name, shape: shape).info.dtype.rawValue
    }
    public var tensorNames: [String] { names }
}

/// A model on disk: a Hugging Face directory, or a `.gguf` file.
public enum ModelSource {
    /// The config and the weights of the model at `path` (a directory with
    /// config.json and safetensors, or a GGUF file).
    /// `quantize`: how the frozen matrices are kept on the device (`QuantizeMode`).
    public static func open(_ path: String, quantize: QuantizeMode = .auto) throws -> (config: ModelConfig, checkpoint: CheckpointSource) {
        let (config, source) = try open(path, keepBlocks: quantize != .none)
        switch quantize {
        case .auto, .none: return (config, source)
        case .q8_0, .q4_0, .nf4: return (config, QuantizingCheckpoint(source, storage: quantize.storage!))
        }
    }

    static func open(_ path: String, keepBlocks: Bool) throws -> (config: ModelConfig, checkpoint: CheckpointSource) {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue {
            let g = try GGUFCheckpoint(path: path)
            g.keepsQuantizedBlocks = keepBlocks
            return (g.config, g)
        }
        let store = try CheckpointStore(directory: path)
        let config = try ModelConfig.load(directory: path)
        if let cls = config.conditionalClass {
            // A multimodal checkpoint's language model: transformers 5 saves it under "model.language_model.",
            // earlier versions under "language_model.model.".
            for prefix in ["model.language_model.", "language_model.model."] where store.contains(prefix + "embed_tokens.weight") {
                return (config, PrefixedCheckpoint(store, prefix: prefix))
            }
            throw CheckpointError.config(path: path + "/config.json", field: "architectures", reason: "\(cls), but no "
                                            + "model.language_model.embed_tokens.weight (or language_model.model.…) in the checkpoint")
        }
        // Llama/Qwen2 *ForQuestionAnswering save their base under "transformer." (transformers' BC prefix).
        if !store.contains("model.embed_tokens.weight"), store.contains("transformer.embed_tokens.weight") {
            return (config, PrefixedCheckpoint(store, prefix: "transformer."))
        }
        return (config, store)
    }

    /// Whether `path` names a single file (a GGUF) rather than a model directory.
    public static func isFile(_ path: String) -> Bool {
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDir) && !isDir.boolValue
    }
}

/// A checkpoint whose base-model tensors are saved under another prefix than
/// "model." (transformers' `base_model_prefix`, e.g. "transformer." for Llama's
/// question-answering class), read under the "model." names the model asks for.
final class PrefixedCheckpoint: CheckpointSource {
    let base: CheckpointSource
    let prefix: String

    init(_ base: CheckpointSource, prefix: String) {
        self.base = base
        self.prefix = prefix
    }

    func stored(_ name: String) -> String { name.hasPrefix("model.") ? prefix + name.dropFirst("model.".count) : name }
    var location: String { base.location }
    func contains(_ name: String) -> Bool { base.contains(stored(name)) }
    func checkpointTensor(_ name: String, shape: [Int]) throws -> CheckpointTensor { try base.checkpointTensor(stored(name), shape: shape) }
    func validateTensor(_ name: String, shape: [Int]) throws -> String { try base.validateTensor(stored(name), shape: shape) }
    func frozenTensor(_ name: String, shape: [Int]) throws -> CheckpointTensor { try base.frozenTensor(stored(name), shape: shape) }
    func frozenDType(_ name: String, shape: [Int]) throws -> String { try base.frozenDType(stored(name), shape: shape) }
    var tensorNames: [String] {
        base.tensorNames.map { $0.hasPrefix(prefix) ? "model." + $0.dropFirst(prefix.count) : $0 }
    }
}

// MARK: GGUF as a checkpoint

/// A GGUF model file read as a Hugging Face checkpoint: llama.cpp's tensor
/// names mapped to transformers', frozen matrices of Q8_0 … Q6_K kept in their
/// blocks (`frozenTensor`), other tensors dequantized to fp32 at load, and
/// llama.cpp's rotary permutation of q and k undone (as transformers'
/// GGUF loader does).
public final class GGUFCheckpoint: CheckpointSource {
    public let file: GGUFFile
    public let config: ModelConfig
    /// Whether q/k rows are in llama.cpp's interleaved rotary order (the "llama" architecture).
    let permutedQK: Bool
    /// Whether frozen matrices of a type the kernels read (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K) stay in their blocks
    /// on the device (the default; `--quantize none` sets it false: every tensor dequantized to fp32 at load).
    public var keepsQuantizedBlocks = true

    public var location: String { file.path }

    public convenience init(path: String) throws {
        try self.init(file: try GGUFFile(path: path))
    }

    public init(file: GGUFFile) throws {
        self.file = file
        config = try ModelConfig.load(gguf: file)
        permutedQK = (try? file.string("general.architecture")).flatMap(Architecture.gguf)?.traits.ggufPermutesQK ?? false
    }

    /// llama.cpp's name for this file's HF tensor name (its family's norm names).
    func ggufName(_ hf: String) -> String? { Self.ggufName(hf, sandwichNorms: config.architecture.traits.sandwichNorms) }

    /// llama.cpp's name for an HF tensor name, or nil for a name it has no tensor for. With sandwich norms
    /// (Gemma 3) post_attention_layernorm is llama.cpp's post_attention_norm, pre_feedforward_layernorm its ffn_norm
    /// and post_feedforward_layernorm its post_ffw_norm.
    public static func ggufName(_ hf: String, sandwichNorms: Bool = false) -> String? {
        switch hf {
        case "model.embed_tokens.weight": return "token_embd.weight"
        case "model.norm.weight": return "output_norm.weight"
        case "lm_head.weight": return "output.weight"
        default: break
        }
        let parts = hf.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard parts.count >= 5, parts[0] == "model", parts[1] == "layers", let layer = Int(parts[2]), layer >= 0,
              let leaf = parts.last, leaf == "weight" || leaf == "bias" else { return nil }
        let module = parts[3..<(parts.count - 1)].joined(separator: ".")
        let names = ["self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
                     "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
                     "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
                     "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm",
                     // Phi-3's fused projections (llama.cpp keeps them fused: gate|up is its ffn_up).
                     "self_attn.qkv_proj": "attn_qkv", "mlp.gate_up_proj": "ffn_up"]
        let sandwich = ["post_attention_layernorm": "post_attention_norm", "pre_feedforward_layernorm": "ffn_norm",
                        "post_feedforward_layernorm": "post_ffw_norm"]
        guard let g = (sandwichNorms ? sandwich[module] : nil) ?? names[module] else { return nil }
        return "blk.\(layer).\(g).\(leaf)"
    }

    public func contains(_ name: String) -> Bool { ggufName(name).map { file.tensors[$0] != nil } ?? false }

    /// GGUF tensors the model does not read (e.g. `rope_freqs.weight`, or biases
    /// the config has no place for), as transformers' loader also skips them.
    public var unusedTensors: [String] {
        guard let plan = try? AdapterPlan(config: config, lora: LoraConfig(targetModules: .list(["o_proj"]))) else { return [] }
        var used: Set<String> = ["token_embd.weight", "output_norm.weight"]
        if case .longrope = config.rope.kind { used.formUnion(["rope_factors_long.weight", "rope_factors_short.weight", "rope_freqs.weight"]) }
        if !config.tieWordEmbeddings { used.insert("output.weight") }
        for s in plan.linears where s.path != "lm_head" {
            if let g = ggufName(s.path + ".weight") { used.insert(g) }
            if s.hasBias, let g = ggufName(s.path + ".bias") { used.insert(g) }
        }
        for l in 0..<config.numLayers {
            used.formUnion(config.layerNorms.compactMap { ggufName("model.layers.\(l).\($0).weight") })
            if config.qkNorm { used.formUnion(["blk.\(l).attn_q_norm.weight", "blk.\(l).attn_k_norm.weight"]) }
        }
        return file.tensorNames.filter { !used.contains($0) }
    }

    public func validateTensor(_ name: String, shape: [Int]) throws -> String {
        guard let g = ggufName(name), let info = file.tensors[g] else {
            throw CheckpointError.missingTensor(name: name + (ggufName(name).map { " (GGUF '\($0)')" } ?? ""), searched: file.path)
        }
        guard info.shape == shape else {
            throw GGUFError.tensor(path: file.path, name: g, reason: "shape \(info.shape) (ggml dims \(info.dims)) but the config implies \(shape)")
        }
        return info.type.name
    }

    public var tensorNames: [String] { file.tensorNames }

    /// The storage a frozen matrix of `info`'s type is kept in, nil when dequantized at load.
    func keptStorage(_ info: GGUFTensorInfo) -> WeightStorage? {
        guard keepsQuantizedBlocks, info.shape.count == 2, let s = WeightStorage.quantized(ggmlName: info.type.name),
              info.shape[1] % s.quantBlockRows == 0 else { return nil }
        return s
    }

    public func frozenDType(_ name: String, shape: [Int]) throws -> String {
        let type = try validateTensor(name, shape: shape)
        guard let g = ggufName(name), let info = file.tensors[g], keptStorage(info) != nil else { return type + " → F32" }
        return type
    }

    public func frozenTensor(_ name: String, shape: [Int]) throws -> CheckpointTensor {
        _ = try validateTensor(name, shape: shape)
        guard let g = ggufName(name), let info = file.tensors[g], keptStorage(info) != nil else {
            return try checkpointTensor(name, shape: shape)
        }
        var rowSource: [Int32]? = nil
        if permutedQK {
            // Row r of the HF matrix is GGUF row rowSource[r]: the rotary permutation applied to the row numbers.
            let heads = g.hasSuffix(".attn_q.weight") ? config.numHeads : g.hasSuffix(".attn_k.weight") ? config.numKVHeads : 0
            if heads > 0 {
                rowSource = Self.rotaryRows((0..<shape[0]).map(Float.init), rows: shape[0], heads: heads, toGGUF: false).map { Int32($0) }
            }
        }
        let bytes = file.bytes(info)
        guard bytes.count >= shape[0] * shape[1] / info.type.blockLayout.elements * info.type.blockLayout.bytes else {
            throw GGUFError.tensor(path: file.path, name: g, reason: "\(bytes.count) bytes of data for shape \(shape) in \(info.type.name)")
        }
        return .blocks(type: info.type, bytes: bytes, rows: shape[0], cols: shape[1], rowSource: rowSource)
    }

    public func checkpointTensor(_ name: String, shape: [Int]) throws -> CheckpointTensor {
        guard let g = ggufName(name), let info = file.tensors[g] else {
            throw CheckpointError.missingTensor(name: name + (ggufName(name).map { " (GGUF '\($0)')" } ?? ""), searched: file.path)
        }
        guard info.shape == shape else {
            throw GGUFError.tensor(path: file.path, name: g, reason: "shape \(info.shape) (ggml dims \(info.dims)) but the config implies \(shape)")
        }
        var values = try file.floats(g)
        // llama.cpp's converter stores Gemma's norm weights as 1 + w: read back as w, as transformers' GGUF loader does.
        if config.architecture.traits.normPlusOne && name.hasSuffix("norm.weight") { values = values.map { $0 - 1 } }
        if permutedQK {
            if g.hasSuffix(".attn_q.weight") || g.hasSuffix(".attn_q.bias") {
                values = Self.rotaryRows(values, rows: shape[0], heads: config.numHeads, toGGUF: false)
            } else if g.hasSuffix(".attn_k.weight") || g.hasSuffix(".attn_k.bias") {
                values = Self.rotaryRows(values, rows: shape[0], heads: config.numKVHeads, toGGUF: false)
            }
        }
        return .floats(values)
    }

    /// llama.cpp's rotary order of q/k rows: within each head of `rows / heads` rows, GGUF row
    /// i·2 + j holds HF row j·(d/2) + i (d the head's rows). `toGGUF`: HF → GGUF, as llama.cpp's
    /// converters permute (`lora-gpu export` for LoRA B); otherwise GGUF → HF, as transformers'
    /// reverse_permute_weights undoes it (loading a GGUF).
    public static func rotaryRows(_ w: [Float], rows: Int, heads: Int, toGGUF: Bool) -> [Float] {
        guard heads > 0, rows % heads == 0, (rows / heads) % 2 == 0, rows > 0 else { return w }
        let cols = w.count / rows, d = rows / heads, half = d / 2
        var out = w
        for h in 0..<heads {
            for i in 0..<half {
                for j in 0..<2 {
                    let gguf = (h * d + i * 2 + j) * cols, hf = (h * d + j * half + i) * cols
                    let (src, dst) = toGGUF ? (hf, gguf) : (gguf, hf)
                    for c in 0..<cols { out[dst + c] = w[src + c] }
                }
            }
        }
        return out
    }
}

// MARK: the config from GGUF metadata

extension ModelConfig {
    /// The config a GGUF file's `<arch>.*` metadata describes, as transformers'
    /// GGUF loader builds it (tied when the file has no `output.weight`).
    public static func load(gguf f: GGUFFile) throws -> ModelConfig {
        try parse(object: try hfConfig(gguf: f), path: f.path)
    }

    /// config.json's fields for a GGUF model (what merge writes for a GGUF base).
    public static func hfConfig(gguf f: GGUFFile) throws -> JSONObject {
        let arch = try f.string("general.architecture")
        // llama.cpp writes Mistral as "llama" too; transformers loads every such file as Llama (its
        // general.name == "mistral" branch needs a gguf-py model type that does not exist), and so do we
        // (Architecture.gguf takes the first family of a name). The difference is Mistral's 4096-token
        // sliding window, which GGUF does not record.
        guard let hfArch = Architecture.gguf(arch) else {
            throw GGUFError.metadata(path: f.path, key: "general.architecture",
                                     reason: "'\(arch)' is not supported; supported: " + Architecture.ggufNames.joined(separator: ", "))
        }
        func required(_ k: String) throws -> Int {
            guard let v = try f.int(arch + "." + k) else {
                throw GGUFError.metadata(path: f.path, key: arch + "." + k, reason: "missing")
            }
            return v
        }
        var c: JSONObject = [
            "architectures": [.string(hfArch.rawValue)],
            "model_type": .string(hfArch.traits.modelType ?? hfArch.prefix.lowercased()),
            "hidden_size": .int(try required("embedding_length")),
            "num_hidden_layers": .int(try required("block_count")),
            "intermediate_size": .int(try required("feed_forward_length")),
            "num_attention_heads": .int(try required("attention.head_count")),
            hfArch.traits.activationKey: .string(hfArch.traits.activationKey == "hidden_act" ? "silu" : "gelu_pytorch_tanh"),
            "tie_word_embeddings": .bool(f.tensors["output.weight"] == nil),
            "torch_dtype": "float32",
        ]
        if let kv = try f.int(arch + ".attention.head_count_kv") { c["num_key_value_heads"] = .int(kv) }
        if let e = try f.double(arch + ".attention.layer_norm_rms_epsilon") { c["rms_norm_eps"] = .double(e) }
        c["rope_theta"] = .double(try f.double(arch + ".rope.freq_base") ?? 10000.0)
        if let n = try f.int(arch + ".context_length") { c["max_position_embeddings"] = .int(n) }
        else { c["max_position_embeddings"] = .int(hfArch.traits.defaultMaxPositions) }
        // rope.dimension_count: the head size for llama/mistral (transformers ignores it for qwen2), the rotary part
        // of a head for phi3 (partial rotary).
        let t = hfArch.traits
        switch t.ggufRopeDimension {
        case .headDim: if let hd = try f.int(arch + ".rope.dimension_count") { c["head_dim"] = .int(hd) }
        case .rotaryPart:
            let heads = try required("attention.head_count"), hidden = try required("embedding_length")
            if let rd = try f.int(arch + ".rope.dimension_count"), rd != hidden / heads {
                c["partial_rotary_factor"] = .double(Double(rd) / Double(hidden / heads))
            }
        case .ignored: break
        }
        // Qwen3's converter writes head_dim as attention.key_length (transformers' GGUF loader leaves it to
        // Qwen3Config's default 128, which every released Qwen3 dense model has; the key is exact).
        if t.ggufHeadDimFromKeyLength, let hd = try f.int(arch + ".attention.key_length") { c["head_dim"] = .int(hd) }
        if t.window == .everyLayer, let w = try f.int(arch + ".attention.sliding_window"), w > 0 { c["sliding_window"] = .int(w) }
        if t.window == .layerTypes {
            // Gemma 3 as llama.cpp runs it: sliding layers only with attention.sliding_window > 0 (else every layer full, at
            // the global base); which ones from attention.sliding_window_pattern (a per-layer list, or n: every n-th layer
            // full, 0: none), else every 6th full (the converter writes no pattern); the sliding layers' RoPE base
            // rope.freq_base_swa (default 10000), linear scaling on the full layers only, and scores scaled by
            // 1/√key_length (1/√(hidden/heads) for the 62-layer 27B, whose query_pre_attn_scalar is that).
            let layers = try required("block_count")
            var sliding = [Bool](repeating: false, count: layers)
            if let w = try f.int(arch + ".attention.sliding_window"), w > 0 {
                c["sliding_window"] = .int(w)
                let key = arch + ".attention.sliding_window_pattern"
                if let list = f.metadata[key]?.array {
                    let flags = list.compactMap(\.bool)
                    guard list.count == layers, flags.count == layers else {
                        throw GGUFError.metadata(path: f.path, key: key, reason: "must list true or false for each of the \(layers) layers")
                    }
                    sliding = flags
                } else {
                    let n = try f.int(key) ?? 6
                    guard n >= 0 else { throw GGUFError.metadata(path: f.path, key: key, reason: "must be ≥ 0, got \(n)") }
                    sliding = (0..<layers).map { n == 0 || $0 % n < n - 1 }
                }
            }
            c["layer_types"] = .array(sliding.map { .string($0 ? "sliding_attention" : "full_attention") })
            c["rope_local_base_freq"] = .double(try f.double(arch + ".rope.freq_base_swa") ?? 10000)
            if let type = try f.string(optional: arch + ".rope.scaling.type"), type == "linear",
               let factor = try f.double(arch + ".rope.scaling.factor"), factor != 1 {
                c["rope_scaling"] = ["rope_type": "linear", "factor": .double(factor)]
            }
            let heads = try required("attention.head_count"), hidden = try required("embedding_length")
            let keyLength = try f.int(arch + ".attention.key_length") ?? hidden / heads
            c["query_pre_attn_scalar"] = .int(try required("block_count") == 62 ? hidden / heads : keyLength)
            if let cap = try f.double(arch + ".final_logit_softcapping") { c["final_logit_softcapping"] = .double(cap) }
        }
        if t.ggufLongRopeTensors {
            // LongRoPE's factors are the rope_factors_long/short tensors, with the original length and attention factor.
            if f.tensors["rope_factors_long.weight"] != nil, f.tensors["rope_factors_short.weight"] != nil {
                guard let original = try f.int(arch + ".rope.scaling.original_context_length") else {
                    throw GGUFError.metadata(path: f.path, key: arch + ".rope.scaling.original_context_length",
                                             reason: "missing, and the file has LongRoPE factors")
                }
                var rope: JSONObject = ["rope_type": "longrope", "original_max_position_embeddings": .int(original),
                                        "long_factor": .array(try f.floats("rope_factors_long.weight").map { .double(Double($0)) }),
                                        "short_factor": .array(try f.floats("rope_factors_short.weight").map { .double(Double($0)) })]
                if let a = try f.double(arch + ".rope.scaling.attn_factor") { rope["attention_factor"] = .double(a) }
                c["rope_scaling"] = .object(rope)
                c["original_max_position_embeddings"] = .int(original)
            }
        }
        if c["rope_scaling"] == nil, let freqs = f.tensors["rope_freqs.weight"] {
            // Llama 3.x's RoPE scaling: llama.cpp's converter writes no scaling keys but the per-frequency divisors
            // (transformers' llama3 remap as inv_freq / factor[i], in fp32), and llama.cpp divides each frequency by
            // them at every position. The same as LongRoPE with one set of factors that never switches: both sets
            // these, the original length the whole context, no attention factor.
            let factors = try f.floats("rope_freqs.weight").map { JSONValue.double(Double($0)) }
            guard freqs.dims.count == 1, factors.count * 2 == (try f.int(arch + ".rope.dimension_count") ?? factors.count * 2),
                  factors.allSatisfy({ ($0.double ?? 0) > 0 }) else {
                throw GGUFError.metadata(path: f.path, key: "rope_freqs.weight",
                                         reason: "must hold one positive divisor per rotary frequency (rope.dimension_count / 2)")
            }
            let n = c["max_position_embeddings"]?.integral ?? hfArch.traits.defaultMaxPositions
            c["rope_scaling"] = ["rope_type": "longrope", "original_max_position_embeddings": .int(n), "attention_factor": 1.0,
                                 "short_factor": .array(factors), "long_factor": .array(factors)]
            c["original_max_position_embeddings"] = .int(n)
        }
        if let v = try f.int(arch + ".vocab_size") { c["vocab_size"] = .int(v) }
        else if let tokens = f.metadata["tokenizer.ggml.tokens"]?.array { c["vocab_size"] = .int(tokens.count) }
        // No tokenizer metadata (pre-tokenized data needs none): the embedding's rows (ggml dims [hidden, vocab]).
        else if let e = f.tensors["token_embd.weight"], e.dims.count == 2 { c["vocab_size"] = .int(e.dims[1]) }
        else {
            throw GGUFError.metadata(path: f.path, key: "tokenizer.ggml.tokens",
                                     reason: "missing, and no \(arch).vocab_size or token_embd.weight to count the vocabulary")
        }
        for (key, field) in [("bos_token_id", "bos_token_id"), ("eos_token_id", "eos_token_id"),
                             ("padding_token_id", "pad_token_id")] {
            if let id = try f.int("tokenizer.ggml." + key) { c[field] = .int(id) }
        }
        return c
    }
}

// MARK: dequantization

/// ggml's block formats, dequantized to fp32 with the same fp32 operations
/// in the same order as ggml's reference dequantizers (and gguf-py's).
enum GGMLDequantize {
    @inline(__always) static func half(_ p: UnsafeRawBufferPointer, _ o: Int) -> Float {
        Float(Float16(bitPattern: UInt16(littleEndian: p.loadUnaligned(fromByteOffset: o, as: UInt16.self))))
    }

    static func floats(_ raw: UnsafeRawBufferPointer, type: GGMLType, count n: Int) -> [Float] {
        var out = [Float](repeating: 0, count: n)
        let (be, bb) = type.blockLayout
        out.withUnsafeMutableBufferPointer { o in
            switch type {
            case .f32:
                for i in 0..<n { o[i] = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
            case .f16:
                for i in 0..<n { o[i] = half(raw, 2 * i) }
            case .bf16:
                for i in 0..<n {
                    o[i] = Float(bitPattern: UInt32(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) << 16)
                }
            default:
                for b in 0..<(n / be) {
                    let blk = UnsafeRawBufferPointer(rebasing: raw[(b * bb)..<((b + 1) * bb)])
                    let dst = UnsafeMutableBufferPointer(rebasing: o[(b * be)..<((b + 1) * be)])
                    block(blk, type: type, into: dst)
                }
            }
        }
        return out
    }

    /// One block. Layouts (bytes): Q4_0 d·f16, qs[16] (element j < 16 the low
    /// nibble of qs[j], j ≥ 16 the high nibble of qs[j-16]), x = d·(q − 8);
    /// Q4_1 d, m, qs[16], x = d·q + m; Q5_0 d, qh·u32, qs[16], the fifth bit of
    /// element j is bit j of qh, x = d·(q − 16); Q5_1 d, m, qh, qs, x = d·q + m;
    /// Q8_0 d, qs·i8[32], x = q·d; Q4_K d, dmin, scales[12] (eight 6-bit scale
    /// and min pairs), qs[128] (32-byte chunks, sub-blocks low then high
    /// nibbles), x = (d·sc)·q − dmin·m; Q5_K adds qh[32] (bit s of qh[j] for
    /// sub-block s) before qs; Q6_K ql[128], qh[64], scales·i8[16], d,
    /// x = (d·scale)·(q − 32).
    static func block(_ p: UnsafeRawBufferPointer, type: GGMLType, into o: UnsafeMutableBufferPointer<Float>) {
        switch type {
        case .q4_0:
            let d = half(p, 0)
            for j in 0..<16 {
                let q = p[2 + j]
                o[j] = d * Float(Int8(q & 0x0F) - 8)
                o[j + 16] = d * Float(Int8(q >> 4) - 8)
            }
        case .q4_1:
            let d = half(p, 0), m = half(p, 2)
            for j in 0..<16 {
                let q = p[4 + j]
                o[j] = d * Float(q & 0x0F) + m
                o[j + 16] = d * Float(q >> 4) + m
            }
        case .q5_0, .q5_1:
            let hasMin = type == .q5_1
            let d = half(p, 0), m: Float = hasMin ? half(p, 2) : 0
            let qhOff = hasMin ? 4 : 2
            let qh = UInt32(littleEndian: p.loadUnaligned(fromByteOffset: qhOff, as: UInt32.self))
            for j in 0..<32 {
                let byte = p[qhOff + 4 + (j % 16)]
                let lo = j < 16 ? byte & 0x0F : byte >> 4
                let q = lo | UInt8((qh >> UInt32(j)) & 1) << 4
                o[j] = hasMin ? d * Float(q) + m : d * Float(Int8(q) - 16)
            }
        case .q8_0:
            let d = half(p, 0)
            for j in 0..<32 { o[j] = Float(Int8(bitPattern: p[2 + j])) * d }
        case .q4_K, .q5_K:
            let d = half(p, 0), dmin = half(p, 2)
            let (sc, mn) = kScaleMin(p, 4)
            let hasHigh = type == .q5_K
            let qsOff = hasHigh ? 48 : 16
            for s in 0..<8 {
                let ds = d * Float(sc[s]), dm = dmin * Float(mn[s])
                for j in 0..<32 {
                    let byte = p[qsOff + 32 * (s / 2) + j]
                    var q = s % 2 == 0 ? byte & 0x0F : byte >> 4
                    if hasHigh { q |= ((p[16 + j] >> UInt8(s)) & 1) << 4 }
                    o[32 * s + j] = ds * Float(q) - dm
                }
            }
        case .q6_K:
            let d = half(p, 208)
            for e in 0..<256 {
                let h = e / 128, r = e % 128
                let lo = (p[h * 64 + r % 64] >> UInt8(4 * (r / 64))) & 0x0F
                let hi = (p[128 + h * 32 + r % 32] >> UInt8(2 * (r / 32))) & 0x03
                let q = Int8(lo | hi << 4) - 32
                let scale = Float(Int8(bitPattern: p[192 + e / 16]))
                o[e] = (d * scale) * Float(q)
            }
        default:
            preconditionFailure("GGMLDequantize.block: \(type.name) is not in GGMLType.supported")
        }
    }

    /// Q4_K / Q5_K's 12 scale bytes: scale s < 4 is the low 6 bits of byte s,
    /// min s < 4 the low 6 bits of byte s+4; for s ≥ 4, the low (scale) and
    /// high (min) nibbles of byte s+4 with the top two bits of bytes s−4 and s.
    static func kScaleMin(_ p: UnsafeRawBufferPointer, _ off: Int) -> ([UInt8], [UInt8]) {
        var sc = [UInt8](repeating: 0, count: 8), mn = sc
        for i in 0..<4 {
            let dB = p[off + i], mB = p[off + 4 + i], mdB = p[off + 8 + i]
            sc[i] = dB & 0x3F
            mn[i] = mB & 0x3F
            sc[4 + i] = (mdB & 0x0F) | ((dB >> 2) & 0x30)
            mn[4 + i] = (mdB >> 4) | ((mB >> 2) & 0x30)
        }
        return (sc, mn)
    }
}
