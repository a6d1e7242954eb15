import Foundation
import LoraBase
import LoraModel
import Yams

// The settings file: one flat YAML (or JSON, a subset of YAML) mapping of
// setting: value, read into JSON values (YAML scalars stay text, read per key),
// and training_config.yaml written back in the same form.

extension TrainingConfig {
    /// One flat mapping from a YAML or JSON file.
    public static func readMapping(_ path: String) throws -> [(String, JSONValue)] {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw TrainError.setting(source: path, key: "(file)", reason: "cannot read the config file")
        }
        let node: Node?
        do { node = try Yams.compose(yaml: text) } catch {
            throw TrainError.setting(source: path, key: "(file)", reason: "not valid YAML or JSON: \(error)")
        }
        guard let node else { return [] }
        guard let mapping = node.mapping else {
            throw TrainError.setting(source: path, key: "(file)", reason: "must be one flat mapping of setting: value")
        }
        var out: [(String, JSONValue)] = []
        var lines: [String: Int] = [:]
        for (k, v) in mapping {
            guard let key = k.string else { throw TrainError.setting(source: path, key: "\(k)", reason: "keys must be strings") }
            // YAML would keep the last of a repeated key without a word; a settings file gives each once.
            if let first = lines[key] {
                throw TrainError.setting(source: path, key: key, reason: "given twice, on line \(first) and on line "
                    + "\(k.mark?.line ?? 0); give each setting once")
            }
            lines[key] = k.mark?.line ?? 0
            out.append((key, value(v)))
        }
        return out
    }

    /// A YAML node as a JSON value: every scalar a string (read per key), null for YAML's nulls.
    static func value(_ n: Node) -> JSONValue {
        switch n {
        case .scalar(let s):
            // YAML's nulls, and Python's None (settings copied from a LoraConfig(...) call).
            if s.style == .plain, ["null", "~", "Null", "NULL", "", "None"].contains(s.string) { return .null }
            return .string(s.string)
        case .sequence(let seq): return .array(seq.map { value($0) })
        case .mapping(let m): return .object(JSONObject(m.map { ($0.key.string ?? "\($0.key)", value($0.value)) }))
        }
    }

    /// A flag's or a test's value (String, number, Bool, list, NSNull or a JSONValue) as a JSON value.
    static func value(any v: Any) -> JSONValue {
        switch v {
        case let j as JSONValue: return j
        case is NSNull: return .null
        case let b as Bool: return .bool(b)
        case let i as Int: return .int(i)
        case let d as Double: return .double(d)
        case let s as String: return .string(s)
        case let a as [Any]: return .array(a.map { value(any: $0) })
        default: return .string("\(v)")
        }
    }

    /// `--lora-option KEY=VALUE`: any key of PEFT's LoraConfig from the command line, its value read as a
    /// settings file reads it (YAML: `{}`, `[1, 2]`, `{loftq_bits: 4}`, `null`, text). The key must be
    /// LoraConfig's (a near miss names the key meant); training settings have their own flags.
    public static func loraOption(_ item: String) throws -> (key: String, value: JSONValue) {
        let (raw, text) = try keyValue(item, option: "lora_option", example: "use_dora=false")
        let key = raw.replacingOccurrences(of: "-", with: "_")
        guard LoraConfig.peftKeyUse[key] != nil else {
            let reason = LoraConfig.unknownKey(key, .null, savedByPEFT: false)?.reason ?? "not a key of PEFT's LoraConfig"
            throw TrainError.setting(source: "command line", key: key, reason: reason
                + (fieldOf[key] != nil ? "; it is a training setting: give it as --\(key.replacingOccurrences(of: "_", with: "-"))" : ""))
        }
        return (key, try yamlValue(text, key: key))
    }

    /// A `--option KEY=VALUE` item split at its first "=" (an error naming the option otherwise).
    static func keyValue(_ item: String, option: String, example: String) throws -> (key: String, text: String) {
        guard let eq = item.firstIndex(of: "="), eq != item.startIndex else {
            throw TrainError.setting(source: "command line", key: option, reason: "'\(item)' is not KEY=VALUE (e.g. --"
                                     + option.replacingOccurrences(of: "_", with: "-") + " " + example + ")")
        }
        return (String(item[..<eq]), String(item[item.index(after: eq)...]))
    }

    /// A flag's VALUE read as a settings file reads a value (YAML; scalars stay text); an error names `key`.
    static func yamlValue(_ text: String, key: String) throws -> JSONValue {
        let node: Node?
        do { node = try Yams.compose(yaml: text) } catch {
            throw TrainError.setting(source: "command line", key: key, reason: "'\(text)' is not a YAML value: \(error)")
        }
        return node.map { value($0) } ?? .null
    }

    /// Text scalars read as YAML's core schema types them ("false" → false, "3" → 3, "null" → null), in
    /// lists and mappings too; other values as they are. For values that reach a template as they would
    /// from Python (chat_template_kwargs).
    static func typedScalars(_ v: JSONValue) -> JSONValue {
        switch v {
        case .string(let s):
            guard let any = try? Yams.load(yaml: s) else { return v }
            switch any {
            case let b as Bool: return .bool(b)
            case let i as Int: return .int(i)
            case let d as Double: return .double(d)
            case is String: return v
            default: return v
            }
        case .array(let a): return .array(a.map(typedScalars))
        case .object(let o): return .object(JSONObject(o.pairs.map { ($0.0, typedScalars($0.1)) }))
        default: return v
        }
    }

    /// `--chat-template-kwargs KEY=VALUE` items (VALUE in YAML: false, 3, a string, [1, 2], {a: b}) as a mapping.
    public static func templateKwargs(_ items: [String]) throws -> JSONObject {
        var out = JSONObject()
        for item in items {
            let (key, text) = try keyValue(item, option: "chat_template_kwargs", example: "enable_thinking=false")
            out[key] = typedScalars(try yamlValue(text, key: "chat_template_kwargs"))
        }
        return out
    }

    /// The resolved settings as YAML (training_config.yaml): every key in `keys`
    /// order, null for an unset one; reads back through `resolve`. Values are
    /// written in JSON's flow form, which YAML reads as the same values; the
    /// names of a choice (cosine, all-linear, gaussian) bare, numbers of a float
    /// setting with their fraction (lora_alpha: 8.0).
    public func yaml() -> String {
        Self.keys.map { key in
            var v = value(forKey: key)
            if key == "lora_alpha" { v = .double(lora.loraAlpha) }
            let bare = key == "lr_scheduler_type" || v == "all-linear" || (key == "init_lora_weights" && v == "gaussian")
            return "\(key): " + (bare ? v.string! : v.serialized(JSONStyle()))
        }.joined(separator: "\n") + "\n"
    }
}

/// The settings of the run that wrote an adapter (its training_config.yaml), so that predict and
/// embed work as that run's evaluation did; nil when the file is not there or cannot be read.
public struct SavedRunSettings {
    let pairs: [(String, JSONValue)]

    public init?(adapter: String) {
        let path = adapter + "/training_config.yaml"
        guard FileManager.default.fileExists(atPath: path), let pairs = try? TrainingConfig.readMapping(path) else { return nil }
        self.pairs = pairs
    }

    func value(_ key: String) -> JSONValue? { pairs.first { $0.0 == key }?.1 }
    public func int(_ key: String) -> Int? { value(key).flatMap { $0.integral ?? $0.string.flatMap { Int($0) } } }
    public func string(_ key: String) -> String? { value(key)?.string }
    public func bool(_ key: String) -> Bool? { value(key).flatMap { $0.bool ?? $0.string.flatMap { Bool($0) } } }
}
