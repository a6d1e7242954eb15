import Foundation
import LoraModel
import LoraText

/// Errors of the text side of `generate`, naming the file or option.
enum GenerateTextError: Error, CustomStringConvertible {
    case noChatTemplate(String)
    case unknownTemplate(name: String, known: [String])

    var description: String {
        switch self {
        case .noChatTemplate(let dir):
            return "\(dir): the tokenizer has no chat template; pass --chat-template NAME|FILE or use --raw-prompt"
        case .unknownTemplate(let name, let known):
            return "--chat-template \(name): no such file, and tokenizer_config.json names no such template"
                + (known.isEmpty ? "" : " (it has: \(known.joined(separator: ", ")))")
        }
    }
}

/// The tokenizer and chat template of a model directory, as `generate` uses them.
struct GenerateText {
    typealias Message = JSONValue
    let tokenizer: Tokenizer
    let template: ChatTemplate?
    /// bos_token, eos_token, … of tokenizer_config.json, passed to the template as transformers does.
    let variables: [String: JSONValue]
    /// The tokenizer's EOS and the template's end-of-turn token.
    let stopIDs: Set<Int>

    static func message(_ role: String, _ content: String) -> Message {
        .object(JSONObject([("role", .string(role)), ("content", .string(content))]))
    }

    /// `needsTemplate`: --prompt and --chat need one; --raw-prompt does not.
    /// `dir` is a model directory, or a GGUF file whose tokenizer.ggml.* metadata
    /// gives the tokenizer (as transformers converts it).
    init(modelDirectory dir: String, chatTemplate option: String?, needsTemplate: Bool) throws {
        if ModelSource.isFile(dir) {
            let files = try GGUFFile(path: dir).tokenizerFiles()
            tokenizer = try Tokenizer(tokenizerJSON: files.tokenizerJSON,
                                      config: try TokenizerConfig.parse(files.tokenizerConfig, source: dir + " (tokenizer_config)"),
                                      source: dir + " (tokenizer.json)")
        } else {
            tokenizer = try Tokenizer.load(directory: dir)
        }
        var vars: [String: JSONValue] = [:]
        for (k, v) in tokenizer.config.specialTokens { vars[k] = .string(v) }
        variables = vars
        var source: (text: String, name: String)?
        if let option {
            if FileManager.default.fileExists(atPath: option) {
                guard let d = FileManager.default.contents(atPath: option), let s = String(data: d, encoding: .utf8) else {
                    throw GenerateTextError.unknownTemplate(name: option, known: [])
                }
                source = (s, option)
            } else if let s = tokenizer.config.namedChatTemplates[option] {
                source = (s, "chat_template[\(option)]")
            } else {
                throw GenerateTextError.unknownTemplate(name: option, known: tokenizer.config.namedChatTemplates.keys.sorted())
            }
        } else if let s = tokenizer.config.chatTemplate {
            source = (s, dir + "/chat_template")
        }
        if needsTemplate && source == nil { throw GenerateTextError.noChatTemplate(dir) }
        template = try source.map { try ChatTemplate(source: $0.text, name: $0.name) }
        var stops: Set<Int> = []
        if let eos = tokenizer.config.eosToken, let id = tokenizer.tokenID(eos) { stops.insert(id) }
        if let t = template, let id = Self.endOfTurn(t, tokenizer, vars) { stops.insert(id) }
        stopIDs = stops
    }

    /// The special token that the template writes right after an assistant
    /// message's content (<|im_end|>, <|eot_id|>, <end_of_turn>, </s>, …), found
    /// by rendering a two-turn conversation; nil when there is none.
    static func endOfTurn(_ t: ChatTemplate, _ tok: Tokenizer, _ vars: [String: JSONValue]) -> Int? {
        let marker = "lora-gpu end-of-turn probe"
        let conversation = [message("user", "hello"), message("assistant", marker)]
        guard let text = try? t.render(messages: conversation, addGenerationPrompt: false, variables: vars),
              let r = text.range(of: marker, options: .backwards) else { return nil }
        // Leading whitespace (" </s>" in Llama 2's template) is not the end-of-turn token.
        let after = String(text[r.upperBound...]).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let first = tok.encode(after, addSpecialTokens: false).first, tok.isSpecial(first) else { return nil }
        return first
    }

    /// The conversation rendered with add_generation_prompt and tokenized without
    /// adding special tokens again (the template writes them).
    func chatIDs(messages: [Message]) throws -> [Int] {
        guard let template else { throw GenerateTextError.noChatTemplate("the model") }
        let text = try template.render(messages: messages, addGenerationPrompt: true, variables: variables)
        return tokenizer.encode(text, addSpecialTokens: false)
    }

    /// Raw text with the tokenizer's default special tokens (e.g. BOS).
    func rawIDs(_ text: String) -> [Int] { tokenizer.encode(text, addSpecialTokens: true) }

    func decode(_ ids: [Int]) -> String { tokenizer.decode(ids, skipSpecialTokens: true) }
}
