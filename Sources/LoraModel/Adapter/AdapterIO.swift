import Foundation
import LoraBase
#if canImport(Glibc)
import Glibc
#endif
import LoraOps
import OpenCLRuntime

extension LlamaLoRAModel {
    /// PEFT saves the base weights of embed_tokens / lm_head when they carry an
    /// adapter (save_embedding_layers="auto"): a list naming them, or a regex matching them.
    var savedEmbeddingBaseLayers: [String] {
        let targeted: Bool
        switch lora.targetModules {
        case .list(let l): targeted = l.contains("embed_tokens") || l.contains("lm_head")
        case .regex(let r): targeted = [AdapterPlan.embedPath, "lm_head"].contains { LoraConfig.fullMatch(r, $0) }
        case .allLinear: targeted = false
        }
        return targeted ? adaptedModules.filter { $0 == AdapterPlan.embedPath || $0 == "lm_head" } : []
    }

    /// Writes a PEFT adapter directory (adapter_config.json, adapter_model.safetensors)
    /// that PEFT's `PeftModel.from_pretrained` loads. Written to a temporary
    /// directory and swapped into place (`DirectoryReplace`), so an existing
    /// adapter is replaced whole or not at all.
    /// The LoraConfig as written: for TOKEN_CLS, "all-linear" spelled out as the
    /// adapted modules' leaf names. PEFT's all-linear leaves out the output layer
    /// only for SEQ_CLS, so on a token classifier it would target `score` as well as
    /// save it (modules_to_save), and fail to load; the list adapts the same modules.
    var savedConfig: LoraConfig {
        guard lora.taskType == "TOKEN_CLS" || lora.taskType == "QUESTION_ANS", case .allLinear = lora.targetModules else { return lora }
        var c = lora
        var leaves: [String] = []
        for path in adaptedModules {
            let leaf = String(path.split(separator: ".").last!)
            if !leaves.contains(leaf) { leaves.append(leaf) }
        }
        c.targetModules = .list(leaves)
        return c
    }

    public func saveAdapter(directory: String, baseModel: String) throws {
        // Read from the device tensor by tensor as the file is written: never the whole adapter on the host.
        var tensors = store.entries.map { e in SafeTensorsWriter.LazyTensor(name: e.key, shape: e.shape) { try e.param.read() } }
        for path in savedEmbeddingBaseLayers {
            let shape = [config.vocabSize, config.hiddenSize]
            tensors.append(.init(name: adapterPlan.key(path, ".base_layer.weight"), shape: shape) { [unowned self] in
                try self.frozenWeightValues(path)
            })
        }
        let fm = FileManager.default
        let dst = URL(fileURLWithPath: directory).standardizedFileURL
        try fm.createDirectory(at: dst.deletingLastPathComponent(), withIntermediateDirectories: true)
        let tmp = dst.deletingLastPathComponent().appendingPathComponent(".\(dst.lastPathComponent).tmp-\(getpid())")
        try? fm.removeItem(at: tmp)
        try fm.createDirectory(at: tmp, withIntermediateDirectories: false)
        do {
            try SafeTensorsWriter.write(lazy: tensors, metadata: ["format": "pt"], to: tmp.appendingPathComponent("adapter_model.safetensors").path)
            try savedConfig.peftJSON(baseModel: baseModel).write(to: tmp.appendingPathComponent("adapter_config.json"))
            if let cls = config.task.classifier {
                try Data(cls.labelsJSON(padTokenID: config.padTokenID, tokens: config.task.tokenClassifier != nil).utf8)
                    .write(to: tmp.appendingPathComponent(SequenceClassifier.labelsFile))
            }
            try DirectoryReplace.replace(dst.path, with: tmp.path)
        } catch {
            try? fm.removeItem(at: tmp)
            throw LoraError.adapter(path: directory, reason: "could not write the adapter: \(error)")
        }
    }
}

/// Puts a finished directory at a path that may hold an older one, so that at
/// every instant the path holds either the old or the new complete directory.
///
/// On Linux: renameat2(RENAME_EXCHANGE) swaps the two atomically, then the old
/// one (now under the temporary name) is removed. Where exchange is not
/// available (other systems, filesystems without it) the fallback is two
/// renames (old aside, new in), with the old one renamed back if the second
/// fails; there the path is briefly empty between the two renames.
public enum DirectoryReplace {
    enum Stage: Sendable { case exchange, secondRename }
    #if ENABLE_TEST_HOOKS
    /// Test hooks (debug builds, ENABLE_TEST_HOOKS): make a stage fail as if the system call
    /// had (nil: none), and take the two-rename path even where exchange works.
    nonisolated(unsafe) static var injectFailure: Stage? = nil
    nonisolated(unsafe) static var forceFallback = false
    #else
    static var injectFailure: Stage? { nil }
    static var forceFallback: Bool { false }
    #endif

    public static func replace(_ dst: String, with src: String) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dst, isDirectory: &isDir) else {
            // Nothing to keep: one rename.
            guard rename(src, dst) == 0 else { throw CheckpointError.io(path: dst, reason: "rename failed: \(errnoText())") }
            return
        }
        if !isDir.boolValue {
            // A file at the target: never replaced by a directory (it is not an earlier
            // output); a file replaces it atomically with rename(2).
            var srcIsDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: src, isDirectory: &srcIsDir), srcIsDir.boolValue {
                throw CheckpointError.io(path: dst, reason: "exists and is not a directory; not replacing it")
            }
            guard rename(src, dst) == 0 else { throw CheckpointError.io(path: dst, reason: "rename failed: \(errnoText())") }
            return
        }
        if !forceFallback, let exchange = renameExchange {
            if injectFailure == .exchange {
                throw CheckpointError.io(path: dst, reason: "renameat2(RENAME_EXCHANGE) failed: injected failure (test hook)")
            }
            if exchange(AT_FDCWD, src, AT_FDCWD, dst, renameExchangeFlag) == 0 {
                // src now names the old directory.
                try? FileManager.default.removeItem(atPath: src)
                return
            }
            let e = errno
            guard e == EINVAL || e == ENOSYS || e == ENOTSUP || e == EOPNOTSUPP else {
                throw CheckpointError.io(path: dst, reason: "renameat2(RENAME_EXCHANGE) failed: \(String(cString: strerror(e)))")
            }
        }
        // Two renames; the old directory goes back if the second fails.
        let aside = src + ".old"
        guard rename(dst, aside) == 0 else { throw CheckpointError.io(path: dst, reason: "rename aside failed: \(errnoText())") }
        var failure: String? = nil
        if injectFailure == .secondRename { failure = "injected failure (test hook)" }
        else if rename(src, dst) != 0 { failure = errnoText() }
        if let failure {
            if rename(aside, dst) != 0 {
                throw CheckpointError.io(path: dst, reason: "rename failed (\(failure)) and the old directory could not be put back; it is at \(aside)")
            }
            throw CheckpointError.io(path: dst, reason: "rename failed: \(failure); the old directory is kept")
        }
        try? FileManager.default.removeItem(atPath: aside)
    }

    private static func errnoText() -> String { String(cString: strerror(errno)) }

    typealias RenameAt2 = @convention(c) (Int32, UnsafePointer<CChar>, Int32, UnsafePointer<CChar>, UInt32) -> Int32
    /// RENAME_EXCHANGE from linux/fs.h.
    static let renameExchangeFlag: UInt32 = 1 << 1
    /// glibc's renameat2 (2.28+), found at run time: Swift's Glibc module does not declare it.
    static let renameExchange: RenameAt2? = {
        #if os(Linux)
        guard let handle = dlopen(nil, RTLD_NOW), let sym = dlsym(handle, "renameat2") else { return nil }
        return unsafeBitCast(sym, to: RenameAt2.self)
        #else
        return nil
        #endif
    }()
}

extension SequenceClassifier {
    /// The classifier's settings beside a SEQ_CLS adapter, in config.json's vocabulary
    /// (num_labels, id2label, label2id, problem_type, pad_token_id): what a causal
    /// base needs to be rebuilt as the classifier the adapter was trained on.
    public static let labelsFile = "labels.json"

    /// `tokens`: a token classifier's (classifier_dropout instead of problem_type and the read-out's pad id).
    public func labelsJSON(padTokenID: Int?, tokens: Bool = false) -> String {
        var id2label = OrderedMap<JSONValue>(), label2id = OrderedMap<JSONValue>()
        for (i, n) in labels.enumerated() { id2label[String(i)] = .string(n); label2id[n] = .int(i) }
        var pairs: [(String, JSONValue)] = [("num_labels", .int(numLabels))]
        if tokens { pairs.append(("classifier_dropout", .double(dropout))) } else { pairs.append(("problem_type", .string(problemType.rawValue))) }
        pairs += [("id2label", .object(id2label)), ("label2id", .object(label2id))]
        if !tokens { pairs.append(("pad_token_id", padTokenID.map { .int($0) } ?? .null)) }
        let o: JSONValue = .object(OrderedMap(pairs))
        return o.serialized(JSONStyle(indent: "  ", itemSeparator: ",")) + "\n"
    }

    /// A SEQ_CLS adapter's labels.json (nil when the directory has none).
    public static func load(adapterDirectory dir: String) throws -> (classifier: SequenceClassifier, padTokenID: Int?)? {
        let path = dir + "/" + labelsFile
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let j = try jsonObject(try readConfigFile(path), path: path)
        let c = try ModelConfig.classifier(j, path: path)
        var pad: Int? = nil
        if let v = j["pad_token_id"], !v.isNull {
            guard let n = v.integral else { throw CheckpointError.config(path: path, field: "pad_token_id", reason: "must be an integer") }
            pad = n
        }
        return (SequenceClassifier(labels: c.labels, problemType: c.problemType), pad)
    }

    /// The model card's classifier section: labels, read-out, and how PEFT loads it.
    public func readmeSection(architecture: Architecture, padTokenID: Int?, tokens: Bool = false) -> String {
        let names = labels.enumerated().map { "| \($0.offset) | \($0.element) |" }.joined(separator: "\n")
        let id2label = "{" + labels.enumerated().map { "\($0.offset): \(pythonString($0.element))" }.joined(separator: ", ") + "}"
        let task: ModelTask = tokens ? .tokenClassification(self) : .sequenceClassification(self)
        let what = tokens
            ? "\(numLabels) tags. The head (`score`, with its bias) is trained in full and saved under `modules_to_save`; "
                + "each word is tagged at its first sub-token (dropout \(dropout) before `score` in training)."
            : "problem type `\(problemType.rawValue)`, \(numLabels) output(s). The head (`score`) is trained in full and saved "
                + "under `modules_to_save`; each sample is read at its last token whose id is not pad_token_id "
                + "(\(padTokenID.map(String.init) ?? "none"))."
        let extra = tokens ? "" : ", problem_type=\"\(problemType.rawValue)\"" + (padTokenID.map { ", pad_token_id=\($0)" } ?? "")
        return """
        ## \(tokens ? "Token classifier (task_type TOKEN_CLS)" : "Sequence classifier (task_type SEQ_CLS)")

        `\(architecture.className(for: task))`: \(what)
        `labels.json` holds these settings in config.json's vocabulary.

        | id | label |
        |---:|:------|
        \(names)

        ```python
        from peft import \(tokens ? "AutoPeftModelForTokenClassification" : "AutoPeftModelForSequenceClassification")
        model = \(tokens ? "AutoPeftModelForTokenClassification" : "AutoPeftModelForSequenceClassification").from_pretrained(
            "ADAPTER_DIR", num_labels=\(numLabels), id2label=\(id2label)\(extra))
        ```

        """
    }
}

/// A Python string literal: JSON's double-quoted spelling is one (\n, \", \\, \uXXXX).
private func pythonString(_ s: String) -> String {
    var out = ""
    Escaping.appendQuoted(s, to: &out)
    return out
}
