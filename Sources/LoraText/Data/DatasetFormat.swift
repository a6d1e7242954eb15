import Foundation
import LoraBase

// JSONL dataset lines → records. The format is detected per file from its
// first valid line; a later line of another shape is a line error.
//
//   messages           {"messages": [{"role": "system"|"user"|"assistant"|"tool", "content": "…"}, …]}
//   sharegpt           {"conversations": [{"from": "system"|"human"|"gpt", "value": "…"}, …]}
//                      (human → user, gpt → assistant)
//   prompt-completion  {"prompt": "…", "completion": "…"}
//   text               {"text": "…"}
//   pre-tokenized      {"input_ids": [Int…], "labels": [Int…]?}  (labels default: input_ids; -100 = not trained)
// Other keys on a line are ignored. Blank lines are skipped.

public enum DatasetFormat: String, Sendable, CaseIterable {
    case messages
    case sharegpt
    case promptCompletion = "prompt-completion"
    case text
    case preTokenized = "pre-tokenized"

    /// Chat shapes go through the chat template (prompt-completion only when there is one).
    public var isConversation: Bool { self == .messages || self == .sharegpt }
}

/// One chat turn. Roles are the chat-template roles (ShareGPT's are mapped).
public struct ChatMessage: Equatable, Sendable {
    public var role: String
    public var content: String
    /// The message's other keys, handed to the template as transformers hands them (reasoning_content,
    /// tool_calls, name, tool_call_id, …); `content: null` (a tool call without text) is kept here as null.
    public var extra: JSONObject
    public init(role: String, content: String, extra: JSONObject = JSONObject()) {
        self.role = role
        self.content = content
        self.extra = extra
    }
    public static let roles: Set<String> = ["system", "user", "assistant", "tool"]
}

public enum DatasetRecord: Equatable, Sendable {
    /// A conversation, and the line's `tools` list (the template's `tools` variable) when it has one.
    case conversation([ChatMessage], tools: JSONValue? = nil)
    case promptCompletion(prompt: String, completion: String)
    case text(String)
    case tokens(inputIDs: [Int], labels: [Int]?)
}

/// The raw lines of a JSONL file: (1-based line number, bytes), blank lines dropped.
public enum JSONLReader {
    public static func lines(of data: Data) -> [(line: Int, bytes: [UInt8])] {
        var out: [(Int, [UInt8])] = []
        var lineNo = 1
        var current: [UInt8] = []
        func flush() {
            var b = current
            if b.last == 0x0D { b.removeLast() }  // CRLF files
            if b.contains(where: { $0 != 0x20 && $0 != 0x09 && $0 != 0x0D }) { out.append((lineNo, b)) }
        }
        // A UTF-8 byte order mark at the start of the file (editors on Windows write one) is not data.
        let body = data.starts(with: [0xEF, 0xBB, 0xBF]) ? data.dropFirst(3) : data[...]
        for byte in body {
            if byte == 0x0A {
                flush()
                current.removeAll(keepingCapacity: true)
                lineNo += 1
            } else {
                current.append(byte)
            }
        }
        flush()
        return out
    }

    /// One line as a JSON object, and a maker of that line's errors ("FILE:LINE: reason") for the
    /// parser of its fields (the task-specific JSONL shapes).
    static func object(_ bytes: [UInt8], file: String, line: Int) throws
        -> (object: JSONObject, fail: (String) -> DatasetError) {
        func fail(_ reason: String, column: Int? = nil) -> DatasetError {
            .badLine(DatasetLineError(file: file, line: line, column: column, reason: reason))
        }
        let value: JSONValue
        do { value = try JSONValue.parse(Data(bytes)) } catch let e as JSONParseError {
            throw fail("not JSON: \(e.reason)", column: e.column)
        }
        guard let o = value.object else { throw fail("not a JSON object") }
        return (o, { fail($0) })
    }

    public static func read(file: String) throws -> [(line: Int, bytes: [UInt8])] {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: file, isDirectory: &isDirectory), isDirectory.boolValue {
            throw DatasetError.unreadable(file: file, reason: "is a directory; give a JSONL file (one sample per line)")
        }
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: file)) } catch {
            throw DatasetError.unreadable(file: file, reason: SystemError.describe(error))
        }
        let l = lines(of: data)
        if l.isEmpty { throw DatasetError.emptyFile(file: file) }
        return l
    }
}

public enum DatasetLineParser {
    /// Parses one line: UTF-8 check (column = 1-based byte of the first bad byte), JSON (column
    /// of the syntax error), an object, a known shape. Returns the line's format and record.
    public static func parse(_ bytes: [UInt8], file: String, line: Int) throws -> (DatasetFormat, DatasetRecord) {
        func fail(_ reason: String, column: Int? = nil) -> DatasetLineError {
            DatasetLineError(file: file, line: line, column: column, reason: reason)
        }
        if let bad = firstInvalidUTF8(bytes) {
            throw fail("invalid UTF-8 (byte 0x\(String(bytes[bad], radix: 16, uppercase: true)))", column: bad + 1)
        }
        let value: JSONValue
        do {
            value = try JSONValue.parse(Data(bytes))
        } catch let e as JSONParseError {
            throw fail("not JSON: \(e.reason)", column: e.column)
        }
        guard case .object(let dict) = value else {
            throw fail("expected a JSON object, got \(typeName(value))")
        }
        if let m = dict["messages"] {
            var tools: JSONValue? = nil
            if let t = dict["tools"], !t.isNull {
                guard t.array != nil else { throw fail("\"tools\" is \(typeName(t)), not a list (of the functions the assistant may call)") }
                tools = t
            }
            return (.messages, .conversation(try messages(m, roleKey: "role", contentKey: "content", field: "messages", fail: fail),
                                             tools: tools))
        }
        if let c = dict["conversations"] {
            return (.sharegpt, .conversation(try messages(c, roleKey: "from", contentKey: "value", field: "conversations", fail: fail)))
        }
        if let ids = dict["input_ids"] {
            let inputIDs = try intArray(ids, field: "input_ids", fail: fail)
            var labels: [Int]? = nil
            if let l = dict["labels"], !l.isNull {
                let lab = try intArray(l, field: "labels", fail: fail)
                guard lab.count == inputIDs.count else {
                    throw fail("labels has \(lab.count) entries but input_ids has \(inputIDs.count)")
                }
                if let k = lab.firstIndex(where: { $0 < 0 && $0 != -100 }) {
                    throw fail("labels[\(k)] = \(lab[k]): a label is a token id or -100")
                }
                labels = lab
            }
            if inputIDs.isEmpty { throw fail("input_ids is empty") }
            if let k = inputIDs.firstIndex(where: { $0 < 0 }) { throw fail("input_ids[\(k)] = \(inputIDs[k]) is negative") }
            return (.preTokenized, .tokens(inputIDs: inputIDs, labels: labels))
        }
        if dict["prompt"] != nil || dict["completion"] != nil {
            guard let p = dict["prompt"] else { throw fail("missing field \"prompt\" (the line has \"completion\")") }
            guard let c = dict["completion"] else { throw fail("missing field \"completion\" (the line has \"prompt\")") }
            guard let ps = p.string else { throw fail("\"prompt\" is \(typeName(p)), not a string") }
            guard let cs = c.string else { throw fail("\"completion\" is \(typeName(c)), not a string") }
            return (.promptCompletion, .promptCompletion(prompt: ps, completion: cs))
        }
        if let t = dict["text"] {
            guard let s = t.string else { throw fail("\"text\" is \(typeName(t)), not a string") }
            return (.text, .text(s))
        }
        let keys = dict.keys.sorted().map { "\"\($0)\"" }.joined(separator: ", ")
        let tagging = dict["tokens"] != nil && ["tags", "ner_tags", "pos_tags"].contains { dict[$0] != nil }
        throw fail("missing fields: expected \"messages\", \"conversations\", \"prompt\"+\"completion\", \"text\" or \"input_ids\"; the line has \(keys.isEmpty ? "no keys" : keys)"
                   + (tagging ? " (a token-classification line: train it with --task-type TOKEN_CLS)" : ""))
    }

    static func messages(_ value: JSONValue, roleKey: String, contentKey: String, field: String,
                         fail: (String, Int?) -> DatasetLineError) throws -> [ChatMessage] {
        guard let list = value.array else { throw fail("\"\(field)\" is \(typeName(value)), not a list", nil) }
        if list.isEmpty { throw fail("empty conversation (\"\(field)\" is [])", nil) }
        var out: [ChatMessage] = []
        for (i, item) in list.enumerated() {
            guard let m = item.object else {
                throw fail("\(field)[\(i)] is \(typeName(item)), not an object", nil)
            }
            guard let r = m[roleKey] else { throw fail("\(field)[\(i)] is missing \"\(roleKey)\"", nil) }
            guard let role = r.string else { throw fail("\(field)[\(i)].\(roleKey) is \(typeName(r)), not a string", nil) }
            // The messages format: every other key goes to the template (reasoning_content, tool_calls, …); an
            // assistant turn that calls tools may have no text (content null or missing), as transformers allows.
            var extra = JSONObject()
            if roleKey == "role" { for (k, v) in m.pairs where k != roleKey && k != contentKey { extra[k] = v } }
            let callsTools = extra["tool_calls"].map { !$0.isNull } ?? false
            let content: String
            if let c = m[contentKey], let text = c.string {
                content = text
            } else if callsTools, m[contentKey]?.isNull ?? true {
                content = ""
                extra["content"] = .null
            } else if let c = m[contentKey] {
                throw fail("\(field)[\(i)].\(contentKey) is \(typeName(c)), not a string", nil)
            } else {
                throw fail("\(field)[\(i)] is missing \"\(contentKey)\"", nil)
            }
            let mapped: String
            if roleKey == "from" {
                guard let m = ["human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"][role] else {
                    throw fail("unknown role \"\(role)\" in \(field)[\(i)].from (expected human, gpt or system)", nil)
                }
                mapped = m
            } else {
                guard ChatMessage.roles.contains(role) else {
                    throw fail("unknown role \"\(role)\" in \(field)[\(i)].role (expected system, user, assistant or tool)", nil)
                }
                mapped = role
            }
            out.append(ChatMessage(role: mapped, content: content, extra: extra))
        }
        return out
    }

    static func intArray(_ value: JSONValue, field: String, fail: (String, Int?) -> DatasetLineError) throws -> [Int] {
        guard let list = value.array else { throw fail("\"\(field)\" is \(typeName(value)), not a list of integers", nil) }
        var out: [Int] = []
        out.reserveCapacity(list.count)
        for (k, v) in list.enumerated() {
            switch v {
            case .int(let n): out.append(n)
            case .double(let d): throw fail("\(field)[\(k)] = \(d) is not an integer", nil)
            default: throw fail("\(field)[\(k)] is \(typeName(v)), not an integer", nil)
            }
        }
        return out
    }

    static func typeName(_ v: JSONValue) -> String {
        switch v {
        case .null: return "null"
        case .string: return "a string"
        case .array: return "a list"
        case .object: return "an object"
        case .bool: return "a boolean"
        case .int, .double: return "a number"
        }
    }

    /// Index of the first byte that does not start or continue a valid UTF-8 sequence.
    public static func firstInvalidUTF8(_ b: [UInt8]) -> Int? {
        var i = 0
        let n = b.count
        while i < n {
            let c = b[i]
            if c < 0x80 { i += 1; continue }
            var len = 0
            var lo: UInt8 = 0x80, hi: UInt8 = 0xBF
            switch c {
            case 0xC2...0xDF: len = 2
            case 0xE0: len = 3; lo = 0xA0
            case 0xE1...0xEC, 0xEE...0xEF: len = 3
            case 0xED: len = 3; hi = 0x9F
            case 0xF0: len = 4; lo = 0x90
            case 0xF1...0xF3: len = 4
            case 0xF4: len = 4; hi = 0x8F
            default: return i
            }
            guard i + len <= n else { return i }
            if b[i + 1] < lo || b[i + 1] > hi { return i }
            for k in 2..<len where b[i + k] < 0x80 || b[i + k] > 0xBF { return i }
            i += len
        }
        return nil
    }
}

/// What a file's first line suggests about the task it was written for, when that
/// is not a causal LM's: a note for a run that reads it as causal-LM text.
public enum DatasetHints {
    public static func classifierNote(file: String) -> String? {
        guard let first = try? JSONLReader.read(file: file).first,
              let o = (try? JSONValue.parse(Data(first.bytes)))?.object else { return nil }
        if o["text"] != nil && (o["label"] != nil || o["labels"] != nil) {
            return "\(file): the lines carry \"label\": this run trains a causal LM on \"text\" and ignores it; "
                + "a classifier is trained with --task-type SEQ_CLS"
        }
        return nil
    }
}
