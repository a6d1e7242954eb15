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

    public static func messageValues(_ messages: [ChatMessage]) -> [JSONValue] {
        messages.map { .object(JSONObject([("role", .string($0.role)), ("content", .string($0.content))])) }
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
    }
}
