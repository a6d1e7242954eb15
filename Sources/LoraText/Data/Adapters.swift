import LoraBase
// LoraText's tokenizer and chat template seen through the dataset protocols.

/// A template's raise_exception(msg): its description is exactly msg.
public struct TemplateRaised: Error, Equatable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

/// A ChatTemplate with the variables transformers passes besides the messages
/// (bos_token, eos_token and every other *_token of the tokenizer config, extra arguments).
public struct ChatTemplateRenderer: ConversationRenderer {
    public var template: ChatTemplate
    public var variables: [String: JSONValue]
    public var templateName: String { template.name }
    /// Each render runs its own interpreter over the immutable parsed template.
    public var concurrencySafe: Bool { true }

    public init(template: ChatTemplate, variables: [String: JSONValue]) {
        self.template = template
        self.variables = variables
    }

    /// Special tokens (name → content, e.g. "bos_token" → "<s>") as template variables.
    public init(template: ChatTemplate, specialTokens: [String: String]) {
        self.init(template: template, variables: specialTokens.mapValues { JSONValue.string($0) })
    }

    /// Messages as the template sees them: role, content and the message's other keys (a null content
    /// among them replaces the empty text, and is then dropped as transformers drops null keys).
    public static func messageValues(_ messages: [ChatMessage]) -> [JSONValue] {
        messages.map { m in
            var o = JSONObject([("role", .string(m.role)), ("content", .string(m.content))])
            for (k, v) in m.extra.pairs { o[k] = v }
            return .object(o)
        }
    }

    /// This renderer with more template variables (a conversation's `tools`, --chat-template-kwargs).
    public func with(variables more: [String: JSONValue]) -> ConversationRenderer {
        var r = self
        for (k, v) in more { r.variables[k] = v }
        return r
    }

    public func renderConversation(_ messages: [ChatMessage], addGenerationPrompt: Bool) throws -> String {
        try render(Self.messageValues(messages), addGenerationPrompt: addGenerationPrompt)
    }

    /// Renders raw message objects; raise_exception(msg) → TemplateRaised(msg).
    public func render(_ messages: [JSONValue], addGenerationPrompt: Bool) throws -> String {
        try raising { try template.render(messages: messages, addGenerationPrompt: addGenerationPrompt, variables: variables) }
    }

    func raising<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as ChatTemplateError where e.isRaised {
            throw TemplateRaised(message: e.message)
        }
    }

    /// The messages converted once; the whole rendering records where the template's loop wrote each.
    public func prepare(_ messages: [ChatMessage]) -> PreparedConversation {
        Prepared(renderer: self, messages: ChatTemplate.prepare(Self.messageValues(messages)))
    }

    struct Prepared: PreparedConversation {
        let renderer: ChatTemplateRenderer
        let messages: PreparedMessages
        func render(prefix count: Int, addGenerationPrompt: Bool) throws -> String {
            try renderer.raising {
                try renderer.template.render(messages, prefix: count, addGenerationPrompt: addGenerationPrompt,
                                             variables: renderer.variables).text
            }
        }
        func renderWhole() throws -> (text: String, turns: TurnOffsets?) {
            try renderer.raising {
                try renderer.template.render(messages, addGenerationPrompt: false, variables: renderer.variables, recordTurns: true)
            }
        }
        func generationSpans() throws -> (text: String, spans: [Range<Int>])? {
            guard renderer.template.hasGenerationBlocks else { return nil }
            return try renderer.raising { try renderer.template.renderGeneration(messages, variables: renderer.variables) }
        }
    }
}
