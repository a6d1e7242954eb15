import Foundation
import LoraBase

/// An error reading a tokenizer; the message names the file and the field.
public struct TokenizerError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// What `tokenizer_config.json` says about special tokens and chat templates.
public struct TokenizerConfig {
    public var bosToken: String?
    public var eosToken: String?
    public var padToken: String?
    public var unkToken: String?
    public var addBosToken: Bool?
    public var addEosToken: Bool?
    /// The default template: the string form, the entry named "default" of the
    /// list form, or chat_template.jinja beside the config (which wins).
    public var chatTemplate: String?
    /// The list-of-named-templates form, by name.
    public var namedChatTemplates: [String: String]
    public var modelMaxLength: Int?
    /// Every "*_token" key with a string value (AddedToken objects give their "content").
    public var specialTokens: [String: String]
    /// additional_special_tokens, in order.
    public var additionalSpecialTokens: [String] = []
    /// added_tokens_decoder's entries, by their id key: what transformers adds to the vocabulary
    /// when tokenizer.json lacks them.
    public var addedTokensDecoder: [(id: Int, token: AddedTokenSpec)] = []

    /// The tokens transformers adds to the vocabulary from this config when the tokenizer lacks them, in
    /// its order: added_tokens_decoder's, then bos, eos, unk, sep, pad, cls, mask, then
    /// additional_special_tokens (all special, not normalized, unless the decoder entry says otherwise).
    var configTokens: [AddedTokenSpec] {
        addedTokensDecoder.sorted { $0.id < $1.id }.map(\.token)
            + (["bos", "eos", "unk", "sep", "pad", "cls", "mask"].compactMap { specialTokens[$0 + "_token"] } + additionalSpecialTokens)
                .map { AddedTokenSpec(content: $0, special: true, normalized: false) }
    }

    public init() {
        namedChatTemplates = [:]
        specialTokens = [:]
    }

    /// Reads tokenizer_config.json at `path` (no chat_template.jinja lookup; see `Tokenizer.load`).
    public static func load(path: String) throws -> TokenizerConfig {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw TokenizerError("\(path): cannot read: \(SystemError.describe(error))")
        }
        return try parse(data, source: path)
    }

    /// Parses the contents of a tokenizer_config.json; `source` names it in errors.
    public static func parse(_ data: Data, source: String = "tokenizer_config.json") throws -> TokenizerConfig {
        let json = try JSONValue.parse(data, source: source)
        guard let pairs = json.object?.pairs else {
            throw TokenizerError("\(source): expected a JSON object at the top, found \(json.typeName)")
        }
        var c = TokenizerConfig()
        func tokenString(_ v: JSONValue, _ key: String) throws -> String? {
            switch v {
            case .string(let s): return s
            case .null: return nil
            case .object:
                guard let s = v["content"]?.string else {
                    throw TokenizerError("\(source): \(key).content is missing or not a string")
                }
                return s
            default:
                return nil
            }
        }
        for (key, value) in pairs {
            if key.hasSuffix("_token") {
                if let s = try tokenString(value, key) { c.specialTokens[key] = s }
            }
            switch key {
            case "bos_token": c.bosToken = try tokenString(value, key)
            case "eos_token": c.eosToken = try tokenString(value, key)
            case "pad_token": c.padToken = try tokenString(value, key)
            case "unk_token": c.unkToken = try tokenString(value, key)
            case "add_bos_token": c.addBosToken = value.bool
            case "additional_special_tokens":
                c.additionalSpecialTokens = try (value.array ?? []).enumerated().compactMap { try tokenString($1, "\(key)[\($0)]") }
            case "added_tokens_decoder":
                for (k, v) in value.object?.pairs ?? [] {
                    guard let id = Int(k), let token = AddedTokenSpec(json: v) else {
                        throw TokenizerError("\(source): added_tokens_decoder.\(k) needs an integer key and a string content")
                    }
                    c.addedTokensDecoder.append((id, token))
                }
            case "add_eos_token": c.addEosToken = value.bool
            case "model_max_length":
                // Often 1e30 ("no limit"): kept only when it fits an Int.
                if let d = value.double, d.rounded() == d, d >= 0, d < 9.0e15 { c.modelMaxLength = Int(d) }
            case "chat_template":
                switch value {
                case .string(let s): c.chatTemplate = s
                case .null: break
                case .array(let items):
                    for (i, item) in items.enumerated() {
                        guard let name = item["name"]?.string, let template = item["template"]?.string else {
                            throw TokenizerError("\(source): chat_template[\(i)] needs string fields 'name' and 'template'")
                        }
                        c.namedChatTemplates[name] = template
                    }
                    c.chatTemplate = c.namedChatTemplates["default"]
                default:
                    throw TokenizerError("\(source): chat_template is \(value.typeName), expected a string or a list of {name, template}")
                }
            default: break
            }
        }
        return c
    }
}

extension JSONValue {
    /// Parses a tokenizer file; a syntax error names `source` and its line and column
    /// (in bytes: tokenizer.json is often one long line).
    static func parse(_ data: Data, source: String) throws -> JSONValue {
        do { return try JSONValue.parse(data) } catch let e as JSONParseError {
            throw TokenizerError("\(source): line \(e.line), column \(e.column): invalid JSON: \(e.reason)")
        }
    }
}

/// An added token's options as tokenizer.json's added_tokens and tokenizer_config.json's
/// added_tokens_decoder write them; `normalized` defaults to not `special`, as the library reads them.
public struct AddedTokenSpec: Sendable {
    public var content: String
    public var special: Bool
    public var lstrip = false, rstrip = false
    public var normalized: Bool
    public var singleWord = false

    public init(content: String, special: Bool, normalized: Bool) {
        self.content = content
        self.special = special
        self.normalized = normalized
    }

    /// nil when "content" is missing or not a string.
    init?(json v: JSONValue) {
        guard let content = v["content"]?.string else { return nil }
        let special = v["special"]?.bool ?? false
        self.init(content: content, special: special, normalized: v["normalized"]?.bool ?? !special)
        lstrip = v["lstrip"]?.bool ?? false
        rstrip = v["rstrip"]?.bool ?? false
        singleWord = v["single_word"]?.bool ?? false
    }
}
