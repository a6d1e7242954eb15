import Foundation
import LoraBase

// Hugging Face chat templates, rendered as transformers'
// apply_chat_template(messages, tokenize=False, add_generation_prompt=...) renders them:
// Jinja2 with trim_blocks, lstrip_blocks and loop controls; globals raise_exception, strftime_now,
// namespace, dict, range; the tojson filter as json.dumps(ensure_ascii=False).

/// A template syntax or render error. `isRaised` marks errors from the template's raise_exception(msg),
/// whose `message` is exactly msg.
public struct ChatTemplateError: Error, CustomStringConvertible, Sendable {
    public let template: String
    public let line: Int
    public let column: Int
    public let message: String
    public let isRaised: Bool

    public var description: String { "\(template):\(line):\(column): \(message)" }
}

public struct ChatTemplate: Sendable {
    public let name: String
    let nodes: [Node]
    /// Whether the template marks assistant output with `{% generation %}` blocks (TRL's *_training.jinja).
    public let hasGenerationBlocks: Bool
    /// Tests only: strftime_now() formats this instant (seconds since the epoch) as UTC wall-clock time
    /// instead of the local current time.
    var fixedNowUTC: Int?

    /// Parses `source`; syntax errors throw ChatTemplateError with the template's line and column.
    public init(source: String, name: String = "chat_template") throws {
        self.name = name
        do {
            let (tokens, _) = try Lexer.tokenize(source)
            var parser = Parser(tokens: tokens)
            nodes = try parser.parseTemplate()
            hasGenerationBlocks = Self.hasGenerationBlocks(nodes)
        } catch let e as TemplateSyntaxError {
            throw ChatTemplateError(template: name, line: e.loc.line, column: e.loc.column, message: e.message, isRaised: false)
        }
    }

    /// Renders the conversation. `variables` carries bos_token, eos_token and other special tokens,
    /// `tools`, and any extra template arguments (e.g. date_string). As in transformers, `tools` and
    /// `documents` are None unless given, message keys whose value is null are dropped, and a message's
    /// reasoning (reasoning_content / thinking / reasoning) is also exposed under `thinking` and
    /// `reasoning_content`.
    public func render(messages: [JSONValue], addGenerationPrompt: Bool, variables: [String: JSONValue] = [:]) throws -> String {
        try render(Self.prepare(messages), addGenerationPrompt: addGenerationPrompt, variables: variables).text
    }

    /// Messages in the template's own values, made once for several renders of their prefixes.
    public static func prepare(_ messages: [JSONValue]) -> PreparedMessages {
        PreparedMessages(values: messages.map { prepareMessage($0) })
    }

    /// Renders the first `prefix` prepared messages (all when nil). `recordTurns`: also where the
    /// template's loop over the messages wrote each one (nil when no loop writing into the output
    /// iterates over them).
    public func render(_ prepared: PreparedMessages, prefix: Int? = nil, addGenerationPrompt: Bool,
                       variables: [String: JSONValue] = [:], recordTurns: Bool = false) throws -> (text: String, turns: TurnOffsets?) {
        let r = try renderRecording(prepared, prefix: prefix, addGenerationPrompt: addGenerationPrompt, variables: variables,
                                    recordTurns: recordTurns, recordGeneration: false)
        return (r.text, r.turns)
    }

    /// Whether `nodes` hold a `{% generation %}` block anywhere.
    static func hasGenerationBlocks(_ nodes: [Node]) -> Bool {
        func has(_ nodes: [Node]) -> Bool {
            nodes.contains { n in
                switch n.kind {
                case .generation: return true
                case .ifs(let branches, let otherwise): return branches.contains { has($0.1) } || has(otherwise ?? [])
                case .forLoop(_, _, _, let body, let otherwise): return has(body) || has(otherwise ?? [])
                case .setBlock(_, _, let body), .filterBlock(_, let body), .callBlock(_, _, let body): return has(body)
                case .macro(let m): return has(m.body)
                default: return false
                }
            }
        }
        return has(nodes)
    }

    /// The whole conversation's text and the byte ranges its `{% generation %}` blocks wrote.
    public func renderGeneration(_ prepared: PreparedMessages, variables: [String: JSONValue] = [:]) throws -> (text: String, spans: [Range<Int>]) {
        let r = try renderRecording(prepared, prefix: nil, addGenerationPrompt: false, variables: variables, recordTurns: false,
                                    recordGeneration: true)
        return (r.text, r.generation ?? [])
    }

    func renderRecording(_ prepared: PreparedMessages, prefix: Int?, addGenerationPrompt: Bool, variables: [String: JSONValue],
                         recordTurns: Bool, recordGeneration: Bool) throws -> (text: String, turns: TurnOffsets?, generation: [Range<Int>]?) {
        let values = prefix.map { Array(prepared.values.prefix($0)) } ?? prepared.values
        let globals = Scope(parent: nil)
        for (k, v) in Builtins.globals(fixedNowUTC: fixedNowUTC) { globals.vars[k] = v }
        let context = Scope(parent: globals)
        context.vars["tools"] = Value.none
        context.vars["documents"] = Value.none
        for (k, v) in variables { context.vars[k] = Value(json: v) }
        context.vars["messages"] = .list(values)
        context.vars["add_generation_prompt"] = .bool(addGenerationPrompt)
        let interp = Interpreter()
        if recordTurns { interp.turns = TurnRecorder(messages: values) }
        if recordGeneration { interp.generationSpans = [] }
        defer { interp.releaseScopes() }
        do {
            let text = try interp.render(nodes, Scope(parent: context))
            return (text, interp.turns?.result, interp.generationSpans)
        } catch let e as JinjaError {
            throw ChatTemplateError(template: name, line: e.loc.line, column: e.loc.column, message: e.message, isRaised: e.isRaised)
        } catch let f as RuntimeFailure {
            throw ChatTemplateError(template: name, line: 0, column: 0, message: f.message, isRaised: f.isRaised)
        }
    }

    static let reasoningFields = ["reasoning_content", "thinking", "reasoning"]

    /// transformers' message normalization: drop null-valued keys; alias reasoning fields.
    static func prepareMessage(_ m: JSONValue) -> Value {
        guard case .object(let o) = m else { return Value(json: m) }
        var kept = JSONObject(o.pairs.filter { !$0.1.isNull })
        if let reasoning = reasoningFields.lazy.compactMap({ kept[$0] }).first {
            // {"thinking": r, **message, "reasoning_content": r}
            var aliased = JSONObject([("thinking", reasoning)])
            for (k, v) in kept.pairs { aliased[k] = v }
            aliased["reasoning_content"] = reasoning
            kept = aliased
        }
        return Value(json: .object(kept))
    }
}

/// Messages converted to the template's values once (ChatTemplate.prepare).
public struct PreparedMessages: @unchecked Sendable {
    let values: [Value]
    public var count: Int { values.count }
}

/// Where a render's loop over the messages wrote each one: iteration k (message `firstMessage + k`)
/// began at UTF-8 offset `starts[k]`; the loop ended at `end`.
public struct TurnOffsets: Equatable, Sendable {
    public var firstMessage: Int
    public var starts: [Int]
    public var end: Int
}
