import Foundation
import LoraBase
import LoraModel
import LoraText

/// Errors of a model's text side, naming the model or the option.
public enum ModelTextError: Error, CustomStringConvertible {
    case noTokenizer(String)
    case noChatTemplate(String)

    public var description: String {
        switch self {
        case .noTokenizer(let m):
            return "\(m): no tokenizer.json beside the model (and not a GGUF file with tokenizer.ggml.* metadata); "
                + "only pre-tokenized {\"input_ids\": …} data can be used"
        case .noChatTemplate(let m):
            return "\(m): the tokenizer has no chat template; pass --chat-template NAME|FILE or use --raw-prompt"
        }
    }
}

/// A model's text side: its tokenizer — tokenizer.json beside a Hugging Face
/// checkpoint, or a GGUF file's tokenizer.ggml.* metadata converted as
/// transformers converts it — and its chat template (the model's own, or
/// `--chat-template NAME|FILE`; there is never a silent default).
public struct ModelText {
    public typealias Message = JSONValue
    public let tokenizer: Tokenizer
    public let template: ChatTemplateRenderer?
    /// The tokenizer's EOS and the template's end-of-turn token.
    public let stopIDs: Set<Int>

    /// What a user should know about the tokenizer (tokens added from tokenizer_config.json).
    public var notes: [String] {
        let added = tokenizer.configAddedTokens
        guard !added.isEmpty else { return [] }
        return ["tokenizer: " + added.map { "\($0.content) (id \($0.id))" }.joined(separator: ", ")
            + " named in tokenizer_config.json but not in tokenizer.json: added as special tokens, as transformers does"]
    }

    /// The tokenizer of `model`: tokenizer.json beside a checkpoint, or a GGUF file's tokenizer.ggml.*
    /// metadata (read from its header, no weight touched); `ModelTextError.noTokenizer` when it has none.
    /// `needsTemplate`: chat prompts need one; raw text and pre-tokenized data do not.
    /// `templateVariables`: extra template arguments (`--chat-template-kwargs`, transformers'
    /// apply_chat_template(**kwargs): enable_thinking, …), given to every render.
    public init(model: String, chatTemplate option: String?, needsTemplate: Bool,
                templateVariables: JSONObject = JSONObject()) throws {
        if ModelSource.isFile(model) {
            guard let gguf = try? GGUFFile(path: model), gguf.metadata["tokenizer.ggml.model"] != nil else {
                throw ModelTextError.noTokenizer(model)
            }
            let files = try gguf.tokenizerFiles()
            tokenizer = try Tokenizer(tokenizerJSON: files.tokenizerJSON,
                                      config: try TokenizerConfig.parse(files.tokenizerConfig, source: model + " (tokenizer_config)"),
                                      source: model + " (tokenizer.json)")
        } else {
            guard FileManager.default.fileExists(atPath: model + "/tokenizer.json") else { throw ModelTextError.noTokenizer(model) }
            tokenizer = try Tokenizer.load(directory: model)
        }
        var selected = try ChatTemplateSelection.resolve(option: option, tokenizer: tokenizer)
        for (k, v) in templateVariables.pairs { selected?.variables[k] = v }
        template = selected
        if needsTemplate && template == nil { throw ModelTextError.noChatTemplate(model) }
        var stops: Set<Int> = []
        if let eos = tokenizer.config.eosToken, let id = tokenizer.tokenID(eos) { stops.insert(id) }
        if let t = template, let id = Self.endOfTurn(t, tokenizer) { stops.insert(id) }
        stopIDs = stops
    }

    public static func message(_ role: String, _ content: String) -> Message {
        .object(JSONObject([("role", .string(role)), ("content", .string(content))]))
    }

    /// The special token that the template writes right after an assistant
    /// message's content (<|im_end|>, <|eot_id|>, <end_of_turn>, </s>, …), found
    /// by rendering a two-turn conversation; nil when there is none.
    static func endOfTurn(_ t: ChatTemplateRenderer, _ tok: Tokenizer) -> Int? {
        let marker = "lora-gpu end-of-turn probe"
        let conversation = [message("user", "hello"), message("assistant", marker)]
        guard let text = try? t.render(conversation, addGenerationPrompt: false),
              let r = text.range(of: marker, options: .backwards) else { return nil }
        // Leading whitespace (" </s>" in Llama 2's template) is not the end-of-turn token.
        let after = String(text[r.upperBound...]).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let first = tok.encode(after, addSpecialTokens: false).first, tok.isSpecial(first) else { return nil }
        return first
    }

    /// The conversation rendered with add_generation_prompt and tokenized without
    /// adding special tokens again (the template writes them), as
    /// apply_chat_template(tokenize=True) does.
    public func chatIDs(messages: [Message], model: String = "the model") throws -> [Int] {
        guard let template else { throw ModelTextError.noChatTemplate(model) }
        let text = try template.render(messages, addGenerationPrompt: true)
        return tokenizer.encode(text, addSpecialTokens: false)
    }

    /// Raw text with the tokenizer's default special tokens (e.g. BOS).
    public func rawIDs(_ text: String) -> [Int] { tokenizer.encode(text, addSpecialTokens: true) }

    public func decode(_ ids: [Int]) -> String { tokenizer.decode(ids, skipSpecialTokens: true) }
}
