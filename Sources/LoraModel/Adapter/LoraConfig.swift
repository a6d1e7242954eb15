import Foundation
import LoraBase

/// PEFT's `LoraConfig`, field by field, as `adapter_config.json` spells it: the one
/// LoRA configuration type. adapter_config.json files, `--lora-config`, the training
/// settings (which hold one) and flags all set it through `set(_:_:)` and check it
/// with `validate()`; adapters are written from it by `peftJSON`.
public struct LoraConfig: Sendable, Equatable {
    public enum Targets: Sendable, Equatable {
        case list([String])     // exact module path, or a suffix ".name"
        case regex(String)      // must full-match the module path
        case allLinear          // every linear layer except lm_head
    }
    public enum Bias: String, Sendable { case none, all, loraOnly = "lora_only" }
    public enum Init: Sendable, Equatable { case kaiming, gaussian, random }

    public var r: Int
    public var loraAlpha: Double
    public var loraDropout: Double
    public var targetModules: Targets
    /// Whether target_modules was given (a file, a flag, an adapter_config.json, code). Not given, PEFT fills in
    /// its per-family default (q_proj, v_proj) and refuses a family it has none for (Phi-3, SmolLM3).
    public var targetModulesGiven: Bool
    public var excludeModules: Targets?
    public var bias: Bias
    public var useRSLoRA: Bool
    public var initLoraWeights: Init
    public var layersToTransform: [Int]?
    public var layersPattern: [String]?
    /// Pattern → rank / alpha, in the order the file lists them: PEFT takes the first that matches.
    public var rankPattern: OrderedMap<Int>
    public var alphaPattern: OrderedMap<Double>
    public var modulesToSave: [String]
    public var taskType: String
    public var inferenceMode: Bool

    /// PEFT's defaults.
    public init(r: Int = 8, loraAlpha: Double = 8, loraDropout: Double = 0,
                targetModules: Targets? = nil, excludeModules: Targets? = nil,
                bias: Bias = .none, useRSLoRA: Bool = false, initLoraWeights: Init = .kaiming,
                layersToTransform: [Int]? = nil, layersPattern: [String]? = nil,
                rankPattern: OrderedMap<Int> = [:], alphaPattern: OrderedMap<Double> = [:],
                modulesToSave: [String] = [], taskType: String = "CAUSAL_LM", inferenceMode: Bool = false) {
        self.r = r
        self.loraAlpha = loraAlpha
        self.loraDropout = loraDropout
        self.targetModules = targetModules ?? .list(["q_proj", "v_proj"])
        self.targetModulesGiven = targetModules != nil
        self.excludeModules = excludeModules
        self.bias = bias
        self.useRSLoRA = useRSLoRA
        self.initLoraWeights = initLoraWeights
        self.layersToTransform = layersToTransform
        self.layersPattern = layersPattern
        self.rankPattern = rankPattern
        self.alphaPattern = alphaPattern
        self.modulesToSave = modulesToSave
        self.taskType = taskType
        self.inferenceMode = inferenceMode
    }

    /// A bad value: the key and what is wrong (the caller names the file or flag it came from).
    public struct SettingError: Error, Equatable {
        public let key: String
        public let reason: String
        public init(_ key: String, _ reason: String) {
            self.key = key
            self.reason = reason
        }
    }

    // MARK: reading

    /// Keys that describe the adapter, in training_config.yaml's order (a run writes them all).
    public static let adapterKeys = ["r", "lora_alpha", "lora_dropout", "target_modules", "exclude_modules", "bias",
                                     "use_rslora", "init_lora_weights", "layers_to_transform", "layers_pattern",
                                     "rank_pattern", "alpha_pattern", "modules_to_save", "task_type"]

    /// What this trainer does with a key of PEFT's LoraConfig.
    public enum KeyUse: Sendable, Equatable {
        /// Read and applied.
        case honoured
        /// PEFT's bookkeeping, or a value that only matters with an option refused here: accepted, no effect.
        case bookkeeping
        /// Accepted at PEFT's default (null, false, an empty list or mapping); any other value is refused
        /// with this reason.
        case defaultOnly(String)
    }

    /// Every field of PEFT 0.21's and 0.22's LoraConfig (what a saved adapter_config.json carries), in PEFT's order;
    /// 0.22 adds astra_config, which every adapter it saves carries (null), so an unknown key there would refuse them.
    public static let peftKeys: [(key: String, use: KeyUse)] = [
        ("task_type", .honoured), ("peft_type", .honoured), ("auto_mapping", .bookkeeping), ("peft_version", .bookkeeping),
        ("base_model_name_or_path", .bookkeeping), ("revision", .bookkeeping), ("inference_mode", .honoured),
        ("r", .honoured), ("target_modules", .honoured), ("exclude_modules", .honoured), ("lora_alpha", .honoured),
        ("lora_dropout", .honoured),
        ("fan_in_fan_out", .defaultOnly("these models' linear layers store W as (out, in) (torch.nn.Linear), for which PEFT warns "
                                        + "and resets fan_in_fan_out to false; set it to false")),
        ("bias", .honoured), ("use_rslora", .honoured), ("modules_to_save", .honoured), ("init_lora_weights", .honoured),
        ("layers_to_transform", .honoured), ("layers_pattern", .honoured), ("rank_pattern", .honoured), ("alpha_pattern", .honoured),
        ("megatron_config", .defaultOnly("Megatron-LM's parallel linear layers are not used here; leave it null")),
        ("megatron_core", .bookkeeping),
        ("trainable_token_indices", .defaultOnly("training single token rows is not supported; modules_to_save: [embed_tokens] "
                                                 + "trains the whole embedding")),
        ("loftq_config", .defaultOnly("LoftQ initialisation is not supported; init_lora_weights: true, false or gaussian")),
        ("eva_config", .defaultOnly("EVA initialisation is not supported; init_lora_weights: true, false or gaussian")),
        ("corda_config", .defaultOnly("CorDA initialisation is not supported; init_lora_weights: true, false or gaussian")),
        ("astra_config", .defaultOnly("ASTRA initialisation is not supported; init_lora_weights: true, false or gaussian")),
        ("lora_ga_config", .defaultOnly("LoRA-GA initialisation is not supported; init_lora_weights: true, false or gaussian")),
        ("use_dora", .defaultOnly("DoRA is not supported; set use_dora to false for plain LoRA")),
        ("velora_config", .defaultOnly("VeLoRA is not supported; leave it null")),
        ("alora_invocation_tokens", .defaultOnly("activated LoRA (aLoRA) is not supported; leave it null")),
        ("use_qalora", .defaultOnly("QALoRA is not supported; set it to false")), ("qalora_group_size", .bookkeeping),
        ("monteclora_config", .defaultOnly("MonteCLoRA is not supported; leave it null")),
        ("layer_replication", .defaultOnly("layer replication is not supported; leave it null")),
        ("runtime_config", .bookkeeping),
        ("lora_bias", .defaultOnly("a trainable bias on lora_B (lora_bias) is not supported; `bias` trains the base layers' biases")),
        ("target_parameters", .defaultOnly("LoRA on bare parameters is not supported; name modules in target_modules")),
        ("use_bdlora", .defaultOnly("BD-LoRA is not supported; leave it null")),
        ("arrow_config", .defaultOnly("Arrow routing is not supported; leave it null")),
        ("kasa_config", .defaultOnly("KaSA is not supported; leave it null")),
        ("ensure_weight_tying", .defaultOnly("tied adapters for tied embeddings are not supported (merge writes a tied model's "
                                             + "embedding and lm_head apart); set it to false")),
    ]
    public static let peftKeyUse = Dictionary(uniqueKeysWithValues: peftKeys.map { ($0.key, $0.use) })

    /// PEFT's TaskType values; CAUSAL_LM, SEQ_CLS and TOKEN_CLS are trained here so far.
    public static let taskTypes = ["CAUSAL_LM", "SEQ_CLS", "SEQ_2_SEQ_LM", "TOKEN_CLS", "QUESTION_ANS", "FEATURE_EXTRACTION"]

    /// An adapter_config.json, or the one in an adapter directory.
    public static func load(path: String) throws -> LoraConfig {
        var isDir: ObjCBool = false
        let file = FileManager.default.fileExists(atPath: path, isDirectory: &isDir) && isDir.boolValue
            ? path + "/adapter_config.json" : path
        return try parse(try readConfigFile(file), path: file)
    }

    /// adapter_config.json: every key PEFT writes is read or checked; a value that
    /// changes the math and is not supported is refused, naming the key.
    public static func parse(_ data: Data, path: String) throws -> LoraConfig {
        let j = try jsonObject(data, path: path)
        var c = LoraConfig()
        do {
            guard j["target_modules"].map({ !$0.isNull }) ?? false else {
                throw SettingError("target_modules", "missing: name the modules to adapt (a list, a regex or \"all-linear\")")
            }
            let savedByPEFT = j["peft_type"] != nil
            for (k, v) in j.pairs {
                if peftKeyUse[k] == nil {
                    if let e = unknownKey(k, v, savedByPEFT: savedByPEFT) { throw e }
                    continue
                }
                if v.isNull { continue }  // null: PEFT's default
                try c.set(k, v, fromText: false)
            }
            try c.validate()
        } catch let e as SettingError {
            throw CheckpointError.config(path: path, field: e.key, reason: e.reason)
        }
        return c
    }

    /// Sets one key from a value. `fromText`: YAML scalars and flags arrive as strings and
    /// are read per key; otherwise (adapter_config.json) numbers must be JSON numbers.
    /// Ranges are checked by `validate`, after every source. Every key of PEFT's LoraConfig
    /// is known (`peftKeys`): honoured, bookkeeping, or refused away from its default with a
    /// reason; any other key is an error with the nearest known one.
    public mutating func set(_ key: String, _ v: JSONValue, fromText: Bool = true) throws {
        func fail(_ r: String) -> SettingError { SettingError(key, r) }
        guard let use = Self.peftKeyUse[key] else {
            if let e = Self.unknownKey(key, v, savedByPEFT: false) { throw e }
            return
        }
        switch use {
        case .honoured: break
        case .bookkeeping: return
        case .defaultOnly(let reason):
            if Self.isDefault(v) { return }
            throw fail("\(fromText ? Self.plain(v) : v.shortDescription) is not supported: \(reason)")
        }
        /// A number as PEFT's types take it; text only from YAML and flags.
        func number<T>(_ v: JSONValue, _ key: String, _ exact: (JSONValue) -> T?, _ text: (JSONValue, String) throws -> T,
                       _ expected: String) throws -> T {
            if case .bool = v {} else if let x = exact(v) { return x }
            if fromText, case .string = v { return try text(v, key) }
            throw SettingError(key, "must be \(expected), got \(v.shortDescription)")
        }
        let positive = "a positive integer ≤ \(Int32.max)", nonNegative = "a non-negative number"
        /// true / false; YAML's and the flags' spellings (yes, on, 1, …) only from text.
        func flag(_ v: JSONValue) throws -> Bool {
            if let b = v.bool { return b }
            guard fromText else { throw fail("must be true or false") }
            return try Setting.bool(v, key)
        }
        /// A list of strings; from text also one string (a list of one).
        func names(_ v: JSONValue) throws -> [String] {
            if !fromText, v.strings == nil { throw fail("must be a list of strings") }
            return try Setting.strings(v, key)
        }
        /// A list of names, a regex (full match) or "all-linear".
        func modules(_ v: JSONValue) throws -> Targets {
            if v.array != nil { return .list(try names(v)) }
            guard fromText || v.string != nil else { throw fail("must be a list of strings, a regex or \"all-linear\"") }
            return try Self.targets(text: try Setting.text(v, key), key)
        }
        func rank(_ v: JSONValue, _ key: String) throws -> Int { try number(v, key, { $0.integral }, Setting.int, positive) }
        func alpha(_ v: JSONValue, _ key: String) throws -> Double { try number(v, key, { $0.double }, Setting.double, nonNegative) }
        switch key {
        case "peft_type":
            if let t = v.string, t != "LORA" { throw fail("'\(t)' is not supported; supported: LORA") }
        case "task_type":
            if v.isNull { taskType = "CAUSAL_LM"; break }   // PEFT's default (None): a causal LM here
            guard var s = v.string else { throw fail("must be a string") }
            if fromText, s.hasPrefix("TaskType.") { s.removeFirst("TaskType.".count) }  // as the Python enum is written
            guard Self.taskTypes.contains(s) else {
                throw fail("'\(s)' is not a PEFT task type" + NearestName.suggestion(s, among: Self.taskTypes)
                           + "; PEFT's are " + Self.taskTypes.joined(separator: ", "))
            }
            guard ModelTask.Kind(peftTaskType: s) != nil else {
                throw fail("'\(s)' is not supported yet; supported: " + ModelTask.Kind.allCases.map(\.peftTaskType).joined(separator: ", "))
            }
            taskType = s
        case "r": r = try rank(v, key)
        case "lora_alpha": loraAlpha = try alpha(v, key)
        case "lora_dropout": loraDropout = try number(v, key, { $0.double }, Setting.double, "in [0, 1)")
        case "target_modules": if !v.isNull { targetModules = try modules(v); targetModulesGiven = true }  // null: the default (or lora_config's)
        case "exclude_modules": excludeModules = v.isNull ? nil : try modules(v)
        case "bias":
            let s = try Setting.text(v, key)
            guard let b = Bias(rawValue: s) else { throw fail("must be none, all or lora_only, got '\(s)'") }
            bias = b
        case "use_rslora": useRSLoRA = try flag(v)
        case "init_lora_weights":
            if !fromText, v.string?.lowercased() != "gaussian", v.bool == nil {
                throw fail("\(v.shortDescription) is not supported; supported: true, false, \"gaussian\"")
            }
            switch try Setting.text(v, key).lowercased() {
            case "true": initLoraWeights = .kaiming
            case "false": initLoraWeights = .random
            case "gaussian": initLoraWeights = .gaussian
            case let t: throw fail("\(t) is not supported; supported: true, false, \"gaussian\"")
            }
        case "layers_to_transform":
            if v.isNull { layersToTransform = nil; break }
            if !fromText, v.integral == nil, v.array?.allSatisfy({ $0.integral != nil }) != true {
                throw fail("must be an integer or a list of integers")
            }
            let items: [JSONValue] = try v.array ?? Setting.text(v, key).split(separator: ",").map { .string(String($0)) }
            layersToTransform = try items.map { try Setting.int($0, key) }
        case "layers_pattern":
            layersPattern = try v.isNull ? nil : v.string.map { [$0] } ?? names(v)
        case "rank_pattern":
            if v.isNull { rankPattern = [:]; break }
            guard let d = v.object else { throw fail("must map patterns to positive integers") }
            rankPattern = OrderedMap(try d.pairs.map { ($0.0, try rank($0.1, "rank_pattern.\($0.0)")) })
        case "alpha_pattern":
            if v.isNull { alphaPattern = [:]; break }
            guard let d = v.object else { throw fail("must map patterns to non-negative numbers") }
            alphaPattern = OrderedMap(try d.pairs.map { ($0.0, try alpha($0.1, "alpha_pattern.\($0.0)")) })
        case "modules_to_save": modulesToSave = v.isNull ? [] : try names(v)
        case "inference_mode": inferenceMode = try flag(v)
        default: break
        }
    }

    /// A value from YAML or a flag as the user wrote it (scalars are text there: no quotes).
    static func plain(_ v: JSONValue) -> String {
        switch v {
        case .string(let s): return s
        case .array(let a): return "[" + a.map(plain).joined(separator: ", ") + "]"
        case .object(let o): return "{" + o.pairs.map { "\($0.0): \(plain($0.1))" }.joined(separator: ", ") + "}"
        default: return v.shortDescription
        }
    }

    /// The one rule for a key that is not a field of PEFT 0.21's LoraConfig, in every path (settings
    /// files, flags, `--lora-config`, `inspect`, `--adapter`): nil when it is ignored, else the error.
    /// - A near miss of a known key (`lora_aplha`, `init_lora_weight`) is a typo: an error naming the
    ///   key meant, whatever its value — a typo at a default-like value would otherwise drop a setting.
    /// - In an adapter_config.json PEFT saved (it carries peft_type) an unknown key at a default-like
    ///   value (null, false, empty) is ignored, as PEFT ignores keys it does not know: adapters of
    ///   other PEFT versions (alpaca-lora's enable_lora: null, merge_weights: false; fields newer
    ///   releases add) still load.
    /// - Any other unknown key is an error: it may change the math.
    /// `known`: the keys of the path (a settings file adds the training keys).
    public static func unknownKey(_ key: String, _ v: JSONValue, savedByPEFT: Bool,
                                  known: [String] = peftKeys.map(\.key)) -> SettingError? {
        if let near = NearestName.closest(key, among: known) {
            return SettingError(key, "not a key of PEFT's LoraConfig; did you mean '\(near)'?")
        }
        if savedByPEFT && isDefault(v) { return nil }
        return SettingError(key, "not a key of PEFT's LoraConfig")
    }

    /// PEFT's default for the keys refused away from it: null, false, or an empty list or mapping
    /// (from YAML and flags also the text false).
    static func isDefault(_ v: JSONValue) -> Bool {
        switch v {
        case .null: return true
        case .bool(let b): return !b
        case .array(let a): return a.isEmpty
        case .object(let o): return o.pairs.isEmpty
        case .string(let s): return ["false", "no", "off", "0", "null", "none"].contains(s.lowercased())
        default: return false
        }
    }

    static func targets(text s: String, _ key: String) throws -> Targets {
        if s == "all-linear" { return .allLinear }
        do { _ = try Regex(s) } catch { throw SettingError(key, "invalid regular expression '\(s)': \(error)") }
        return .regex(s)
    }

    /// The ranges PEFT allows: r and every rank_pattern value positive, alphas finite and
    /// non-negative, dropout in [0, 1), layer indices non-negative.
    public func validate() throws {
        func fail(_ f: String, _ r: String) -> SettingError { SettingError(f, r) }
        guard r > 0 else { throw fail("r", "must be a positive integer, got \(r)") }
        guard r <= Int(Int32.max) else { throw fail("r", "must be a positive integer ≤ \(Int32.max), got \(r)") }
        guard loraAlpha.isFinite, loraAlpha >= 0 else { throw fail("lora_alpha", "must be a non-negative number, got \(loraAlpha)") }
        guard loraDropout >= 0, loraDropout < 1 else { throw fail("lora_dropout", "must be in [0, 1), got \(loraDropout)") }
        if let l = layersToTransform, let bad = l.first(where: { $0 < 0 }) {
            throw fail("layers_to_transform", "must be non-negative layer indices, got \(bad)")
        }
        for (k, n) in rankPattern.pairs where n <= 0 || n > Int(Int32.max) {
            throw fail("rank_pattern.\(k)", "must be a positive integer ≤ \(Int32.max), got \(n)")
        }
        for (k, a) in alphaPattern.pairs where !(a.isFinite && a >= 0) {
            throw fail("alpha_pattern.\(k)", "must be a non-negative number, got \(a)")
        }
    }

    // MARK: writing

    /// A key's value as adapter_config.json spells it (training_config.yaml too).
    public func value(forKey key: String) -> JSONValue {
        func targets(_ t: Targets?) -> JSONValue {
            switch t {
            case .none: return .null
            case .list(let l)?: return JSONValue(l)
            case .regex(let r)?: return .string(r)
            case .allLinear?: return "all-linear"
            }
        }
        switch key {
        case "r": return .int(r)
        case "lora_alpha": return JSONValue(number: loraAlpha)
        case "lora_dropout": return .double(loraDropout)
        case "target_modules": return targets(targetModules)
        case "exclude_modules": return targets(excludeModules)
        case "bias": return .string(bias.rawValue)
        case "use_rslora": return .bool(useRSLoRA)
        case "init_lora_weights":
            switch initLoraWeights {
            case .kaiming: return true
            case .gaussian: return "gaussian"
            case .random: return false
            }
        case "layers_to_transform": return layersToTransform.map { JSONValue($0) } ?? .null
        case "layers_pattern": return layersPattern.map { $0.count == 1 ? .string($0[0]) : JSONValue($0) } ?? .null
        case "rank_pattern": return .object(JSONObject(rankPattern.pairs.map { ($0.0, .int($0.1)) }))
        case "alpha_pattern": return .object(JSONObject(alphaPattern.pairs.map { ($0.0, JSONValue(number: $0.1)) }))
        case "modules_to_save": return modulesToSave.isEmpty ? .null : JSONValue(modulesToSave)
        case "task_type": return .string(taskType)
        case "inference_mode": return .bool(inferenceMode)
        default: return .null
        }
    }

    /// adapter_config.json as PEFT writes it (sorted keys, 2-space indent), saved for inference.
    public func peftJSON(baseModel: String) -> Data {
        var o = JSONObject()
        for k in Self.adapterKeys { o[k] = value(forKey: k) }
        for (k, v): (String, JSONValue) in [("auto_mapping", .null), ("base_model_name_or_path", .string(baseModel)),
                                            ("fan_in_fan_out", false), ("inference_mode", true), ("lora_bias", false),
                                            ("peft_type", "LORA"), ("revision", .null), ("use_dora", false)] {
            o[k] = v
        }
        return Data(JSONValue.object(o).serialized(.prettySorted).utf8)
    }

    // MARK: PEFT's matching rules

    static func fullMatch(_ pattern: String, _ key: String) -> Bool {
        guard let re = try? Regex(pattern) else { return false }
        return (try? re.wholeMatch(in: key)) != nil
    }

    static func matchesList(_ names: [String], _ key: String) -> Bool {
        names.contains(key) || names.contains { key.hasSuffix("." + $0) }
    }

    /// The layer index in a module path, found as PEFT finds it: the first
    /// numbered segment (`.*?\.[^.]*\.(\d+)\.`), or the one after a `layers_pattern` name.
    func layerIndex(of key: String) -> Int? {
        let patterns = (layersPattern?.isEmpty ?? true) ? [#".*?\.[^.]*\."#] : layersPattern!.map { #"(?:^|.*?\.)"# + $0 + #"\."# }
        for p in patterns {
            guard let re = try? Regex(p + #"(?<idx>\d+)\."#), let m = try? re.prefixMatch(in: key),
                  let idx = m["idx"]?.substring else { continue }
            return Int(idx)
        }
        return nil
    }

    /// As PEFT's PeftModelForSequenceClassification (and …ForTokenClassification): SEQ_CLS and TOKEN_CLS train the head in
    /// full, so "classifier" and "score" join modules_to_save (each once here;
    /// PEFT extends the list again on every load).
    public func withTaskModules() -> LoraConfig {
        let heads: [String]
        switch taskType {
        case "SEQ_CLS", "TOKEN_CLS": heads = ["classifier", "score"]
        case "QUESTION_ANS": heads = ["qa_outputs"]   // PeftModelForQuestionAnswering
        default: return self
        }
        var out = self
        for m in heads where !out.modulesToSave.contains(m) { out.modulesToSave.append(m) }
        return out
    }

    /// Whether PEFT would put a LoRA adapter on the module at `key`
    /// (`linearLeafNames`: the leaf names of the model's linear layers, for all-linear).
    public func targets(_ key: String, isLinear: Bool, isOutputLayer: Bool, linearLeafNames: Set<String>) -> Bool {
        if let ex = excludeModules {
            switch ex {
            case .regex(let p): if Self.fullMatch(p, key) { return false }
            case .list(let l): if Self.matchesList(l, key) { return false }
            case .allLinear: break
            }
        }
        // Adapters never go on modules_to_save modules: PEFT's (^|.*\.)m($|\..*).
        if modulesToSave.contains(where: { m in
            (try? Regex("(^|.*\\.)" + m + "($|\\..*)").prefixMatch(in: key)) != nil
        }) {
            return false
        }
        switch targetModules {
        case .regex(let p):
            return Self.fullMatch(p, key)
        case .list(let l):
            if l.contains(key) { return true }
            return Self.matchesList(l, key) && layerAllowed(key)
        case .allLinear:
            // PEFT turns all-linear into the leaf names of every linear layer except the output layer.
            let leaf = String(key.split(separator: ".").last ?? "")
            return isLinear && linearLeafNames.contains(leaf) && !isOutputLayer && layerAllowed(key)
        }
    }

    func layerAllowed(_ key: String) -> Bool {
        guard let allowed = layersToTransform, !allowed.isEmpty else { return true }
        guard let idx = layerIndex(of: key) else { return false }
        return allowed.contains(idx)
    }

    /// PEFT's get_pattern_key: the first pattern p, in the file's order, with re.match(rf"(.*\.)?({p})$", key).
    static func patternKey<V>(_ patterns: OrderedMap<V>, _ key: String) -> (pattern: String, value: V)? {
        for (p, v) in patterns.pairs where fullMatch("(.*\\.)?(\(p))", key) { return (p, v) }
        return nil
    }

    /// Rank and alpha for one adapted module.
    public func rankAndAlpha(for key: String) -> (r: Int, alpha: Double) {
        (Self.patternKey(rankPattern, key)?.value ?? r,
         Self.patternKey(alphaPattern, key)?.value ?? loraAlpha)
    }

    /// rank_pattern / alpha_pattern keys that match none of `modules` (PEFT warns about them).
    public func unusedPatternKeys(_ modules: [String]) -> [String] {
        var used = Set<String>()
        for m in modules {
            if let p = Self.patternKey(rankPattern, m) { used.insert("rank_pattern." + p.pattern) }
            if let p = Self.patternKey(alphaPattern, m) { used.insert("alpha_pattern." + p.pattern) }
        }
        let all = rankPattern.keys.map { "rank_pattern." + $0 } + alphaPattern.keys.map { "alpha_pattern." + $0 }
        return all.filter { !used.contains($0) }.sorted()
    }

    /// s = alpha / r, or alpha / √r with rsLoRA (LoRAScale, the one formula).
    public func scale(for key: String) -> Double {
        let (r, a) = rankAndAlpha(for: key)
        return LoRAScale.of(alpha: a, rank: r, rsLoRA: useRSLoRA)
    }
}

/// Reading setting values that arrive typed (JSON) or as text (YAML scalars, flags).
public enum Setting {
    public static func text(_ v: JSONValue, _ key: String) throws -> String {
        switch v {
        case .string(let s): return s
        case .int(let i): return String(i)
        case .double(let d): return PythonFloat.repr(d)
        case .bool(let b): return b ? "true" : "false"
        default: throw LoraConfig.SettingError(key, "must be a single value, got \(v.shortDescription)")
        }
    }

    public static func int(_ v: JSONValue, _ key: String) throws -> Int {
        if let i = v.integral { return i }
        let t = try text(v, key).trimmingCharacters(in: .whitespaces)
        if let i = Int(t) { return i }
        if let d = Double(t), d == d.rounded(), abs(d) < 1e15 { return Int(d) }
        throw LoraConfig.SettingError(key, "must be an integer, got '\(t)'")
    }

    public static func double(_ v: JSONValue, _ key: String) throws -> Double {
        if let d = v.double { return d }
        let t = try text(v, key).trimmingCharacters(in: .whitespaces)
        guard let d = Double(t), d.isFinite else { throw LoraConfig.SettingError(key, "must be a number, got '\(t)'") }
        return d
    }

    public static func bool(_ v: JSONValue, _ key: String) throws -> Bool {
        if let b = v.bool { return b }
        switch try text(v, key).lowercased() {
        case "true", "yes", "on", "1": return true
        case "false", "no", "off", "0": return false
        case let t: throw LoraConfig.SettingError(key, "must be true or false, got '\(t)'")
        }
    }

    /// A list of strings, or one string as a list of one.
    public static func strings(_ v: JSONValue, _ key: String) throws -> [String] {
        guard let a = v.array else { return [try text(v, key)] }
        return try a.map { x in
            guard x.array == nil, x.object == nil, !x.isNull else {
                throw LoraConfig.SettingError(key, "must be a list of strings")
            }
            return try text(x, key)
        }
    }
}
