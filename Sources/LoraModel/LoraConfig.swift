import Foundation

/// PEFT's `LoraConfig`, field by field, as `adapter_config.json` spells it.
public struct LoraConfig: Sendable {
    public enum Targets: Sendable, Equatable {
        case list([String])     // exact module path, or a suffix ".name"
        case regex(String)      // must full-match the module path
        case allLinear          // every linear layer except lm_head
    }
    public enum Bias: String, Sendable { case none, all, loraOnly = "lora_only" }
    public enum Init: Sendable, Equatable { case kaiming, gaussian, random }

    public var r: Int = 8
    public var loraAlpha: Double = 8
    public var loraDropout: Double = 0
    public var targetModules: Targets = .list(["q_proj", "v_proj"])
    public var excludeModules: Targets? = nil
    public var bias: Bias = .none
    public var useRSLoRA = false
    public var initLoraWeights: Init = .kaiming
    public var layersToTransform: [Int]? = nil
    public var layersPattern: [String]? = nil
    public var rankPattern: [String: Int] = [:]
    public var alphaPattern: [String: Double] = [:]
    /// The pattern keys in the order the file lists them: PEFT takes the first that matches.
    public var rankPatternOrder: [String] = []
    public var alphaPatternOrder: [String] = []
    public var modulesToSave: [String] = []
    public var taskType: String = "CAUSAL_LM"
    public var inferenceMode = false

    public init() {}

    public static func load(path: String) throws -> LoraConfig {
        try parse(try readConfigFile(path), path: path)
    }

    public static func parse(_ data: Data, path: String) throws -> LoraConfig {
        let j = try jsonObject(data, path: path)
        func fail(_ f: String, _ r: String) -> CheckpointError { .config(path: path, field: f, reason: r) }
        func present(_ k: String) -> Any? { j[k] is NSNull ? nil : j[k] }
        func strings(_ k: String, _ v: Any) throws -> [String] {
            guard let a = v as? [Any], let s = a as? [String] else { throw fail(k, "must be a list of strings") }
            return s
        }
        func targets(_ k: String, _ v: Any) throws -> Targets {
            if let s = v as? String {
                if s == "all-linear" { return .allLinear }
                do { _ = try Regex(s) } catch { throw fail(k, "invalid regular expression '\(s)': \(error)") }
                return .regex(s)
            }
            return .list(try strings(k, v))
        }
        var c = LoraConfig()
        if let t = present("peft_type") as? String, t != "LORA" { throw fail("peft_type", "'\(t)' is not supported; supported: LORA") }
        if let t = present("task_type") {
            guard let s = t as? String else { throw fail("task_type", "must be a string") }
            guard s == "CAUSAL_LM" else {
                throw fail("task_type", "'\(s)' is not supported yet; supported: CAUSAL_LM")
            }
            c.taskType = s
        }
        if let v = present("r") {
            guard let n = jsonInteger(v), n > 0, n <= Int(Int32.max) else {
                throw fail("r", "must be a positive integer ≤ \(Int32.max), got \(jsonText(v))")
            }
            c.r = n
        }
        if let v = present("lora_alpha") {  // PEFT's default is 8
            guard let a = jsonNumber(v), a.isFinite, a >= 0 else {
                throw fail("lora_alpha", "must be a non-negative number, got \(jsonText(v))")
            }
            c.loraAlpha = a
        }
        if let v = present("lora_dropout") {
            guard let n = jsonNumber(v), n >= 0, n < 1 else { throw fail("lora_dropout", "must be in [0, 1), got \(jsonText(v))") }
            c.loraDropout = n
        }
        if let v = present("target_modules") { c.targetModules = try targets("target_modules", v) }
        else { throw fail("target_modules", "missing: name the modules to adapt (a list, a regex or \"all-linear\")") }
        if let v = present("exclude_modules") { c.excludeModules = try targets("exclude_modules", v) }
        if let v = present("bias") {
            guard let s = v as? String, let b = Bias(rawValue: s) else { throw fail("bias", "must be \"none\", \"all\" or \"lora_only\"") }
            c.bias = b
        }
        if let v = present("use_rslora") {
            guard let b = v as? Bool else { throw fail("use_rslora", "must be true or false") }
            c.useRSLoRA = b
        }
        if let v = present("init_lora_weights") {
            if let b = v as? Bool { c.initLoraWeights = b ? .kaiming : .random }
            else if let s = v as? String, s.lowercased() == "gaussian" { c.initLoraWeights = .gaussian }
            else { throw fail("init_lora_weights", "\(v) is not supported; supported: true, false, \"gaussian\"") }
        }
        if let v = present("layers_to_transform") {
            if let n = jsonInteger(v), n >= 0 { c.layersToTransform = [n] }
            else if let a = v as? [Any], case let ns = a.compactMap(jsonInteger), ns.count == a.count, ns.allSatisfy({ $0 >= 0 }) {
                c.layersToTransform = ns
            }
            else { throw fail("layers_to_transform", "must be an integer or a list of integers") }
        }
        if let v = present("layers_pattern") {
            if let s = v as? String { c.layersPattern = [s] } else { c.layersPattern = try strings("layers_pattern", v) }
        }
        if let v = present("rank_pattern") {
            guard let d = v as? [String: Any] else { throw fail("rank_pattern", "must map patterns to positive integers") }
            for (k, x) in d.sorted(by: { $0.key < $1.key }) {
                guard let n = jsonInteger(x), n > 0, n <= Int(Int32.max) else {
                    throw fail("rank_pattern.\(k)", "must be a positive integer ≤ \(Int32.max), got \(jsonText(x))")
                }
                c.rankPattern[k] = n
            }
            c.rankPatternOrder = keyOrder(Array(d.keys), in: data, after: "\"rank_pattern\"")
        }
        if let v = present("alpha_pattern") {
            guard let d = v as? [String: Any] else { throw fail("alpha_pattern", "must map patterns to non-negative numbers") }
            for (k, x) in d.sorted(by: { $0.key < $1.key }) {
                guard let a = jsonNumber(x), a.isFinite, a >= 0 else {
                    throw fail("alpha_pattern.\(k)", "must be a non-negative number, got \(jsonText(x))")
                }
                c.alphaPattern[k] = a
            }
            c.alphaPatternOrder = keyOrder(Array(d.keys), in: data, after: "\"alpha_pattern\"")
        }
        if let v = present("modules_to_save") { c.modulesToSave = try strings("modules_to_save", v) }
        if let v = present("inference_mode") {
            guard let b = v as? Bool else { throw fail("inference_mode", "must be true or false") }
            c.inferenceMode = b
        }
        for f in ["use_dora", "fan_in_fan_out", "lora_bias"] where (present(f) as? Bool) == true {
            throw fail(f, "true is not supported yet")
        }
        if let v = present("layer_replication"), !(v is NSNull) { throw fail("layer_replication", "is not supported yet") }
        return c
    }

    /// Checks values set in code (flags) the way `parse` checks the file's:
    /// r and every rank_pattern value positive, alphas finite and non-negative.
    public func validate(path: String = "LoRA settings") throws {
        func fail(_ f: String, _ r: String) -> CheckpointError { .config(path: path, field: f, reason: r) }
        guard r > 0, r <= Int(Int32.max) else { throw fail("r", "must be a positive integer ≤ \(Int32.max), got \(r)") }
        guard loraAlpha.isFinite, loraAlpha >= 0 else { throw fail("lora_alpha", "must be a non-negative number, got \(loraAlpha)") }
        guard loraDropout >= 0, loraDropout < 1 else { throw fail("lora_dropout", "must be in [0, 1), got \(loraDropout)") }
        for (k, n) in rankPattern.sorted(by: { $0.key < $1.key }) where n <= 0 || n > Int(Int32.max) {
            throw fail("rank_pattern.\(k)", "must be a positive integer ≤ \(Int32.max), got \(n)")
        }
        for (k, a) in alphaPattern.sorted(by: { $0.key < $1.key }) where !(a.isFinite && a >= 0) {
            throw fail("alpha_pattern.\(k)", "must be a non-negative number, got \(a)")
        }
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
    static func patternKey<V>(_ patterns: [String: V], order: [String], _ key: String) -> (pattern: String, value: V)? {
        let keys = order.filter { patterns[$0] != nil } + patterns.keys.filter { !order.contains($0) }.sorted()
        for p in keys where fullMatch("(.*\\.)?(\(p))", key) { return (p, patterns[p]!) }
        return nil
    }

    /// Rank and alpha for one adapted module.
    public func rankAndAlpha(for key: String) -> (r: Int, alpha: Double) {
        (Self.patternKey(rankPattern, order: rankPatternOrder, key)?.value ?? r,
         Self.patternKey(alphaPattern, order: alphaPatternOrder, key)?.value ?? loraAlpha)
    }

    /// rank_pattern / alpha_pattern keys that match none of `modules` (PEFT warns about them).
    public func unusedPatternKeys(_ modules: [String]) -> [String] {
        var used = Set<String>()
        for m in modules {
            if let p = Self.patternKey(rankPattern, order: rankPatternOrder, m) { used.insert("rank_pattern." + p.pattern) }
            if let p = Self.patternKey(alphaPattern, order: alphaPatternOrder, m) { used.insert("alpha_pattern." + p.pattern) }
        }
        let all = rankPattern.keys.map { "rank_pattern." + $0 } + alphaPattern.keys.map { "alpha_pattern." + $0 }
        return all.filter { !used.contains($0) }.sorted()
    }

    /// s = alpha / r, or alpha / √r with rsLoRA.
    public func scale(for key: String) -> Double {
        let (r, a) = rankAndAlpha(for: key)
        return useRSLoRA ? a / Double(r).squareRoot() : a / Double(r)
    }
}

/// The order in which `keys` first appear in the raw JSON after `anchor`
/// (JSONSerialization drops object order; PEFT's pattern lookup depends on it).
func keyOrder(_ keys: [String], in data: Data, after anchor: String) -> [String] {
    guard let text = String(data: data, encoding: .utf8), let start = text.range(of: anchor)?.upperBound else {
        return keys.sorted()
    }
    let tail = text[start...]
    func position(_ k: String) -> String.Index {
        // The key as JSON spells it (backslashes and quotes escaped).
        let spelled = "\"" + k.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
        return tail.range(of: spelled)?.lowerBound ?? text.endIndex
    }
    return keys.sorted { (position($0), $0) < (position($1), $1) }
}

// MARK: JSON numbers as JSONSerialization hands them over

/// Whether a JSONSerialization value is a JSON boolean (on Linux `true` is an
/// NSNumber that also casts to Int, so `as? NSNumber` alone would read it as 1).
func jsonIsBool(_ v: Any) -> Bool {
    guard let n = v as? NSNumber else { return false }
    return String(cString: n.objCType) == "c"
}

/// A JSON number (not a boolean) as Double.
func jsonNumber(_ v: Any) -> Double? {
    guard !jsonIsBool(v), let n = v as? NSNumber else { return nil }
    return n.doubleValue
}

/// A JSON number with an integral value that fits in Int (2.5, true, 1e30: nil).
func jsonInteger(_ v: Any) -> Int? {
    guard let d = jsonNumber(v), d.rounded() == d, let n = Int(exactly: d) else { return nil }
    if let exact = (v as? NSNumber)?.int64Value, Double(exact) == d { return Int(exact) }
    return n
}

/// A value as the error message shows it.
func jsonText(_ v: Any) -> String {
    if jsonIsBool(v) { return (v as? NSNumber)?.boolValue == true ? "true" : "false" }
    if v is NSNull { return "null" }
    if let s = v as? String { return "\"\(s)\"" }
    return "\(v)"
}
