import Foundation
import LoraBase
import LoraModel
#if canImport(Glibc)
import Glibc
#endif

/// Errors of merging an adapter into its base model; each names the file or tensor.
public enum MergeError: Error, CustomStringConvertible, Equatable {
    case adapter(path: String, reason: String)
    case output(path: String, reason: String)

    public var description: String {
        switch self {
        case .adapter(let p, let r): return "\(p): \(r)"
        case .output(let p, let r): return "\(p): cannot write the merged model: \(r)"
        }
    }
}

/// The dtype the merged checkpoint is written in.
public enum MergeDType: String, Sendable, CaseIterable {
    case float32, bfloat16, float16

    var safetensorsName: String { self == .float32 ? "F32" : self == .bfloat16 ? "BF16" : "F16" }
    var size: Int { self == .float32 ? 4 : 2 }

    /// fp32 → bf16 bits, round to nearest, ties to even (NaN stays a quiet NaN), as torch's `.to(torch.bfloat16)`.
    public static func bfloat16Bits(_ x: Float) -> UInt16 {
        let b = x.bitPattern
        if x.isNaN { return UInt16(truncatingIfNeeded: b >> 16) | 0x0040 }
        let rounding: UInt32 = 0x7FFF + ((b >> 16) & 1)
        return UInt16(truncatingIfNeeded: (b &+ rounding) >> 16)
    }
}

/// What a merge did.
public struct MergeReport: Sendable {
    /// Files written, relative to the output directory.
    public var files: [String]
    /// Tensor names written, in model order.
    public var tensors: [String]
    /// Modules whose LoRA update was folded in.
    public var mergedModules: [String]
    /// Modules replaced by their modules_to_save copies, and biases replaced by trained ones.
    public var replaced: [String]
    /// Tied input/output embeddings kept tied.
    public var tied: Bool
    /// Why a tied base's embeddings were written as two tensors (nil: they were not, or were never tied).
    public var untied: String?
    public var warnings: [String]
}

/// Folds a PEFT LoRA adapter into its base model, on the host in fp32, as
/// PEFT's `merge_and_unload` does:
///   linear     W' = W + s·B·A              (A r×in, B out×r)
///   embedding  W' = W + s·(B·A)ᵀ           (lora_embedding_A r×V, lora_embedding_B H×r)
/// with s = alpha/r (alpha/√r with rsLoRA), rank and alpha per module from
/// rank_pattern / alpha_pattern; modules_to_save copies replace their
/// modules; biases trained under bias="all"/"lora_only" replace the base ones.
/// With tied embeddings both updates land on the one shared matrix (PEFT
/// merges into the shared parameter), which stays tied; a modules_to_save
/// copy of either side unties them.
public enum ModelMerger {
    public static let defaultMaxShardBytes = 2_000_000_000

    /// One output tensor: name, row-major shape, and how to compute it.
    struct Planned {
        let name: String
        let shape: [Int]
        let make: () throws -> [Float]
        var count: Int { shape.reduce(1, *) }
    }

    /// Merges `adapter` (a PEFT adapter directory) into `model` (a Hugging Face
    /// directory or a GGUF file) and writes a Hugging Face checkpoint to
    /// `output`, via a temporary directory renamed into place.
    @discardableResult
    public static func merge(model: String, adapter: String, output: String, dtype: MergeDType = .float32,
                             maxShardBytes: Int = defaultMaxShardBytes) throws -> MergeReport {
        guard maxShardBytes > 0 else { throw MergeError.output(path: output, reason: "the shard size limit must be positive") }
        try checkOutput(output, model: model, adapter: adapter)
        let (base, source) = try ModelSource.open(model)
        let lora = try LoraConfig.load(path: adapter)
        let config = try base.forAdapter(adapter, lora: lora, basePath: model)
        let plan = try AdapterPlan(config: config, lora: lora)
        let adapterPath = adapter + "/adapter_model.safetensors"
        guard FileManager.default.fileExists(atPath: adapterPath) else {
            throw MergeError.adapter(path: adapter, reason: "no adapter_model.safetensors (only safetensors adapters are supported)")
        }
        let file = try SafeTensorsFile(path: adapterPath)
        try check(file, against: plan)
        var report = MergeReport(files: [], tensors: [], mergedModules: plan.adapted, replaced: [], tied: false, untied: nil,
                                 warnings: plan.warnings)
        if let note = AdapterPlan.otherTowerNote(file.tensors.keys.filter(plan.isOtherTowerTensor).count) { report.warnings.append(note) }
        // Saved under the task class's base_model_prefix ("transformer." for Llama's and Qwen2's QA class).
        let planned = try Self.outputTensors(config: config, source: source, lora: lora, adapterPlan: plan, adapter: file, report: &report)
            // An embedder (FEATURE_EXTRACTION) keeps the causal checkpoint's names, head included: transformers'
            // AutoModel reads its trunk from them (and sentence-transformers with it), and so does lora-gpu.
            // A multimodal checkpoint's language model (Gemma3ForConditionalGeneration) is written as the family's causal LM.
            .map { Planned(name: config.task.kind == .featureExtraction || config.conditionalClass != nil ? $0.name : config.peftName($0.name),
                           shape: $0.shape, make: $0.make) }
        report.tensors = planned.map(\.name)

        // config.json: the base's (or the GGUF's, rebuilt), with the output dtype and the tying.
        var cfg: JSONObject
        let ggufFile = (source as? GGUFCheckpoint)?.file
        if let g = ggufFile { cfg = try ModelConfig.hfConfig(gguf: g) } else {
            let path = model + "/config.json"
            guard let j = (try? JSONValue.read(path: path))?.object else {
                throw CheckpointError.config(path: path, field: "(root)", reason: "not a JSON object")
            }
            cfg = j
            if config.conditionalClass != nil, var text = j["text_config"]?.object {
                // Its text config at the top, as the causal LM's config.json (the vision tower is not written).
                text["architectures"] = .array([.string(config.architecture.rawValue)])
                text["model_type"] = .string(config.architecture.traits.modelType ?? config.architecture.prefix.lowercased())
                // The multimodal class never caps its logits; its causal LM would (Gemma3ForCausalLM): keep them uncapped.
                if let key = config.architecture.traits.logitSoftcapKey, text[key] != nil { text[key] = .null }
                cfg = text
            }
        }
        cfg["torch_dtype"] = .string(dtype.rawValue)
        if cfg["dtype"] != nil || ggufFile != nil { cfg["dtype"] = .string(dtype.rawValue) }
        cfg["tie_word_embeddings"] = .bool(report.tied)
        if config.task.kind == .questionAnswering {
            // A *ForQuestionAnswering checkpoint (its trunk under "transformer." where the class names it so).
            cfg["architectures"] = .array([.string(config.architecture.className(for: config.task))])
        }
        if let cls = config.task.classifier {
            // A *ForSequenceClassification checkpoint: its class, labels, problem type and read-out pad id.
            cfg["architectures"] = .array([.string(config.architecture.className(for: config.task))])
            var id2label = OrderedMap<JSONValue>(), label2id = OrderedMap<JSONValue>()
            for (i, n) in cls.labels.enumerated() { id2label[String(i)] = .string(n); label2id[n] = .int(i) }
            cfg["id2label"] = .object(id2label)
            cfg["label2id"] = .object(label2id)
            if config.task.sequenceClassifier != nil {
                cfg["problem_type"] = .string(cls.problemType.rawValue)
                if let pad = config.padTokenID { cfg["pad_token_id"] = .int(pad) }
            } else {
                cfg["classifier_dropout"] = .double(cls.dropout)
            }
        }

        var extra: [(name: String, data: Data)] = []
        extra.append(("config.json", Data(JSONValue.object(cfg).serialized(.prettySorted).utf8)))
        if let g = ggufFile {
            do {
                let t = try g.tokenizerFiles()
                extra.append(("tokenizer.json", t.tokenizerJSON))
                extra.append(("tokenizer_config.json", t.tokenizerConfig))
            } catch {
                report.warnings.append("no tokenizer written: \(error)")
            }
        } else {
            for name in ["generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                         "tokenizer.model", "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja",
                         "chat_template.json"] {
                let p = model + "/" + name
                if FileManager.default.fileExists(atPath: p) {
                    guard let d = FileManager.default.contents(atPath: p) else {
                        throw CheckpointError.io(path: p, reason: "cannot read the file")
                    }
                    extra.append((name, d))
                }
            }
        }
        report.files = try write(planned, extra: extra, dtype: dtype, maxShardBytes: maxShardBytes, to: output)
        return report
    }

    /// Every tensor the plan expects must be in the adapter with its shape; nothing else may be.
    static func check(_ file: SafeTensorsFile, against plan: AdapterPlan) throws {
        for spec in plan.tensors {
            guard let info = file.tensors[spec.key] else {
                throw MergeError.adapter(path: file.path, reason: "tensor '\(spec.key)' is missing; the adapter does not match its adapter_config.json")
            }
            guard info.shape == spec.shape else {
                throw MergeError.adapter(path: file.path, reason: "tensor '\(spec.key)' has shape \(info.shape), expected \(spec.shape)")
            }
        }
        let known = Set(plan.tensors.map(\.key))
        let unexpected = file.tensors.keys.filter { !known.contains($0) && !$0.hasSuffix(".base_layer.weight") && !plan.isOtherTowerTensor($0) }
            .sorted()
        if !unexpected.isEmpty {
            throw MergeError.adapter(path: file.path, reason: "unexpected tensors for its adapter_config.json: " + unexpected.joined(separator: ", "))
        }
    }

    /// The output tensors in model order, each computed when written.
    static func outputTensors(config c: ModelConfig, source: CheckpointSource, lora: LoraConfig, adapterPlan plan: AdapterPlan,
                     adapter: SafeTensorsFile, report: inout MergeReport) throws -> [Planned] {
        let embedPath = AdapterPlan.embedPath
        let H = c.hiddenSize, V = c.vocabSize
        func adapterFloats(_ key: String) throws -> [Float] { try adapter.floats(key).values }
        func scale(_ path: String) -> Float { Float(lora.scale(for: plan.peftName(path))) }
        let adapted = Set(plan.adapted)

        /// Δ = s·B·A (out×in), B out×r, A r×in.
        func linearDelta(_ path: String, out: Int, inF: Int) throws -> [Float] {
            let a = try adapterFloats(plan.key(path, ".lora_A.weight")), b = try adapterFloats(plan.key(path, ".lora_B.weight"))
            let r = a.count / inF
            return product(b, a, rows: out, inner: r, cols: inF, scale: scale(path), transposed: false)
        }
        /// Δ = s·(B·A)ᵀ (V×H), B H×r, A r×V.
        func embedDelta() throws -> [Float] {
            let a = try adapterFloats(plan.key(embedPath, ".lora_embedding_A")), b = try adapterFloats(plan.key(embedPath, ".lora_embedding_B"))
            let r = a.count / V
            return product(b, a, rows: H, inner: r, cols: V, scale: scale(embedPath), transposed: true)
        }
        let tiedIn = c.tieWordEmbeddings
        // Tied stays tied unless the adapter makes the two sides differ: a modules_to_save copy, or a LoRA
        // on one of them (the unmerged model adds the embedding's LoRA to the lookup and lm_head's to the
        // head, each on the shared E; folded into E both would reach both sides). Then each side is written
        // as its own tensor and tie_word_embeddings is false, so the merged model gives the adapter's logits.
        report.untied = untyingReason(plan, tied: tiedIn)
        let tied = tiedIn && report.untied == nil
        report.tied = tied

        var out: [Planned] = []
        // Embedding (the shared matrix when tied).
        out.append(Planned(name: "model.embed_tokens.weight", shape: [V, H]) {
            var w = plan.embedSaved ? try adapterFloats(plan.key(embedPath, ".weight"))
                                    : try source.hostFloats("model.embed_tokens.weight", shape: [V, H])
            if plan.embedAdapted { add(&w, try embedDelta()) }
            return w
        })
        if plan.embedSaved { report.replaced.append(embedPath) }
        for l in 0..<c.numLayers {
            let p = "model.layers.\(l)."
            let norm = { (name: String) in Planned(name: name, shape: [H]) { try source.hostFloats(name, shape: [H]) } }
            for spec in plan.linears where spec.path.hasPrefix(p) { out += linear(spec) }
            for name in c.layerNorms { out.append(norm(p + name + ".weight")) }
            if c.qkNorm {
                for name in ["self_attn.q_norm.weight", "self_attn.k_norm.weight"] {
                    out.append(Planned(name: p + name, shape: [c.headDim]) { try source.hostFloats(p + name, shape: [c.headDim]) })
                }
            }
        }
        out.append(Planned(name: "model.norm.weight", shape: [H]) { try source.hostFloats("model.norm.weight", shape: [H]) })
        if let head = plan.linears.last, head.path != "lm_head" || !tied { out += linear(head) }

        func linear(_ spec: LinearSpec) -> [Planned] {
            let path = spec.path, shape = [spec.outFeatures, spec.inFeatures]
            let saved = plan.isSaved(path)
            if saved { report.replaced.append(path) }
            var items = [Planned(name: path + ".weight", shape: shape) {
                var w: [Float]
                if saved { w = try adapterFloats(plan.key(path, ".weight")) }
                else if path == "lm_head" && tiedIn { w = try source.hostFloats("model.embed_tokens.weight", shape: shape) }
                else { w = try source.hostFloats(path + ".weight", shape: shape) }
                if adapted.contains(path) { add(&w, try linearDelta(path, out: spec.outFeatures, inF: spec.inFeatures)) }
                return w
            }]
            if spec.hasBias {
                let key = plan.biasKey(path)
                let trained = plan.tensors.contains { $0.key == key }
                if trained { report.replaced.append(path + ".bias") }
                items.append(Planned(name: path + ".bias", shape: [spec.outFeatures]) {
                    trained ? try adapterFloats(key) : try source.hostFloats(path + ".bias", shape: [spec.outFeatures])
                })
            }
            return items
        }
        return out
    }

    /// What separates a tied base's input and output embeddings in `plan` (nil: nothing).
    public static func untyingReason(_ plan: AdapterPlan, tied: Bool) -> String? {
        guard tied else { return nil }
        let sides = [plan.isSaved("lm_head") ? "a trained copy of lm_head (modules_to_save)" : nil,
                     plan.embedSaved ? "a trained copy of embed_tokens (modules_to_save)" : nil,
                     plan.adapted.contains("lm_head") ? "a LoRA on lm_head" : nil,
                     plan.embedAdapted ? "a LoRA on embed_tokens" : nil].compactMap { $0 }
        return sides.isEmpty ? nil : sides.joined(separator: " and ")
    }

    static func add(_ w: inout [Float], _ d: [Float]) {
        precondition(w.count == d.count, "merge: delta size")
        for i in 0..<w.count { w[i] += d[i] }
    }

    /// s·(X·Y) (rows×cols), or its transpose (cols×rows); X rows×inner, Y inner×cols,
    /// accumulated in fp32 and scaled after, as PEFT's get_delta_weight computes it.
    static func product(_ x: [Float], _ y: [Float], rows: Int, inner: Int, cols: Int, scale: Float, transposed: Bool) -> [Float] {
        var out = [Float](repeating: 0, count: rows * cols)
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeBufferPointer { yp in
                out.withUnsafeMutableBufferPointer { op in
                    var row = [Float](repeating: 0, count: cols)
                    for i in 0..<rows {
                        for j in 0..<cols { row[j] = 0 }
                        for k in 0..<inner {
                            let xv = xp[i * inner + k]
                            let base = k * cols
                            for j in 0..<cols { row[j] += xv * yp[base + j] }
                        }
                        if transposed { for j in 0..<cols { op[j * rows + i] = row[j] * scale } }
                        else { for j in 0..<cols { op[i * cols + j] = row[j] * scale } }
                    }
                }
            }
        }
        return out
    }

    // MARK: writing

    /// Shards as huggingface_hub's split_torch_state_dict_into_shards does: in
    /// order, a tensor larger than the limit alone, otherwise a new shard when
    /// the next tensor would pass the limit.
    static func shards(_ sizes: [Int], limit: Int) -> [[Int]] {
        var out: [[Int]] = [], cur: [Int] = [], curSize = 0
        for (i, s) in sizes.enumerated() {
            if s > limit { out.append([i]); continue }
            if curSize + s > limit, !cur.isEmpty { out.append(cur); cur = []; curSize = 0 }
            cur.append(i)
            curSize += s
        }
        if !cur.isEmpty { out.append(cur) }
        return out
    }

    /// The files a merge writes; an existing output directory holding anything
    /// else is somebody's data and is never replaced.
    static func isMergeProduct(_ name: String) -> Bool {
        ["config.json", "generation_config.json", "model.safetensors.index.json", "chat_template.jinja",
         "special_tokens_map.json", "added_tokens.json", "tokenizer.model", "merges.txt", "vocab.json"].contains(name)
            || name.hasPrefix("tokenizer") || (name.hasPrefix("model") && name.hasSuffix(".safetensors"))
    }

    /// Refuses an output that is the base model or the adapter (or holds them),
    /// a file, or a directory with files a merge does not write.
    static func checkOutput(_ output: String, model: String, adapter: String) throws {
        func real(_ p: String) -> String { URL(fileURLWithPath: p).resolvingSymlinksInPath().standardizedFileURL.path }
        let out = real(output)
        for (what, p) in [("the base model", real(model)), ("the adapter", real(adapter))]
        where p == out || p.hasPrefix(out + "/") {
            throw MergeError.output(path: output, reason: "it is (or holds) \(what); choose another --output")
        }
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: out, isDirectory: &isDir) else { return }
        guard isDir.boolValue else { throw MergeError.output(path: output, reason: "it is a file; choose a directory") }
        let others = (try FileManager.default.contentsOfDirectory(atPath: out)).filter { !isMergeProduct($0) }.sorted()
        if !others.isEmpty {
            throw MergeError.output(path: output, reason: "the directory holds files a merge does not write ("
                + others.prefix(5).joined(separator: ", ") + (others.count > 5 ? ", …" : "")
                + "); choose a new or empty directory")
        }
    }

    static func write(_ planned: [Planned], extra: [(name: String, data: Data)], dtype: MergeDType, maxShardBytes: Int,
                      to output: String) throws -> [String] {
        let fm = FileManager.default
        let dst = URL(fileURLWithPath: output).standardizedFileURL
        let parent = dst.deletingLastPathComponent()
        let tmp = parent.appendingPathComponent(".\(dst.lastPathComponent).tmp-\(getpid())")
        do {
            try fm.createDirectory(at: parent, withIntermediateDirectories: true)
            try? fm.removeItem(at: tmp)
            try fm.createDirectory(at: tmp, withIntermediateDirectories: false)
        } catch {
            throw MergeError.output(path: output, reason: SystemError.describe(error))
        }
        do {
            var files: [String] = []
            let groups = shards(planned.map { $0.count * dtype.size }, limit: maxShardBytes)
            var weightMap: [String: String] = [:]
            for (g, members) in groups.enumerated() {
                let name = groups.count == 1 ? "model.safetensors"
                    : String(format: "model-%05d-of-%05d.safetensors", g + 1, groups.count)
                var tensors: [(name: String, shape: [Int], values: [Float])] = []
                for i in members {
                    let t = planned[i]
                    let v = try t.make()
                    guard v.count == t.count else {
                        throw MergeError.output(path: output, reason: "tensor '\(t.name)' has \(v.count) values, expected \(t.count)")
                    }
                    tensors.append((t.name, t.shape, v))
                    weightMap[t.name] = name
                }
                try encode(tensors, dtype: dtype).write(to: tmp.appendingPathComponent(name))
                files.append(name)
            }
            if groups.count > 1 {
                let total = planned.reduce(0) { $0 + $1.count }
                let index: JSONValue = ["metadata": ["total_parameters": .int(total), "total_size": .int(total * dtype.size)],
                                        "weight_map": .object(JSONObject(weightMap.map { ($0.key, .string($0.value)) }))]
                let data = Data(index.serialized(.prettySorted).utf8)
                try data.write(to: tmp.appendingPathComponent("model.safetensors.index.json"))
                files.append("model.safetensors.index.json")
            }
            for e in extra {
                try e.data.write(to: tmp.appendingPathComponent(e.name))
                files.append(e.name)
            }
            // At every instant the output path holds the old or the new complete directory.
            try DirectoryReplace.replace(dst.path, with: tmp.path)
            return files
        } catch {
            try? fm.removeItem(at: tmp)
            if let e = error as? MergeError { throw e }
            if error is CheckpointError || error is GGUFError { throw error }
            throw MergeError.output(path: output, reason: SystemError.describe(error))
        }
    }

    /// A safetensors file: u64 header length, the JSON header (tensors by
    /// name, data in that order, `__metadata__` {"format": "pt"}, padded with
    /// spaces to 8 bytes), then the little-endian data.
    static func encode(_ tensors: [(name: String, shape: [Int], values: [Float])], dtype: MergeDType) throws -> Data {
        let ordered = tensors.sorted { $0.name < $1.name }
        var out = SafeTensorsWriter.header(ordered.map { ($0.name, dtype.safetensorsName, $0.shape, $0.values.count * dtype.size) },
                                           metadata: ["format": "pt"])
        for t in ordered {
            switch dtype {
            case .float32:
                var le = t.values.map { $0.bitPattern.littleEndian }
                le.withUnsafeMutableBytes { out.append(contentsOf: $0) }
            case .bfloat16:
                var le = t.values.map { MergeDType.bfloat16Bits($0).littleEndian }
                le.withUnsafeMutableBytes { out.append(contentsOf: $0) }
            case .float16:
                var le = t.values.map { Float16($0).bitPattern.littleEndian }
                le.withUnsafeMutableBytes { out.append(contentsOf: $0) }
            }
        }
        return out
    }
}
