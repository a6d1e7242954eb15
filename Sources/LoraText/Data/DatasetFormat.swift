import Foundation

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
    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }
    public static let roles: Set<String> = ["system", "user", "assistant", "tool"]
}

public enum DatasetRecord: Equatable, Sendable {
    case conversation([ChatMessage])
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
        for byte in data {
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

    public static func read(file: String) throws -> [(line: Int, bytes: [UInt8])] {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: file)) } catch {
            throw DatasetError.unreadable(file: file, reason: error.localizedDescription)
        }
        let l = lines(of: data)
        if l.isEmpty { throw DatasetError.emptyFile(file: file) }
        return l
    }
}

public enum DatasetLineParser {
    /// Parses one line: UTF-8 check (column = 1-based byte of the first bad byte), JSON,
    /// an object, a known shape. Returns the line's format and record.
    public static func parse(_ bytes: [UInt8], file: String, line: Int) throws -> (DatasetFormat, DatasetRecord) {
        func fail(_ reason: String, column: Int? = nil) -> DatasetLineError {
            DatasetLineError(file: file, line: line, column: column, reason: reason)
        }
        if let bad = firstInvalidUTF8(bytes) {
            throw fail("invalid UTF-8 (byte 0x\(String(bytes[bad], radix: 16, uppercase: true)))", column: bad + 1)
        }
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])
        } catch {
            let (col, msg) = describeJSONError(error, bytes: bytes)
            throw fail("not JSON: \(msg)", column: col)
        }
        guard let dict = object as? [String: Any] else {
            throw fail("expected a JSON object, got \(typeName(object))")
        }
        if let m = dict["messages"] {
            return (.messages, .conversation(try messages(m, roleKey: "role", contentKey: "content", field: "messages", fail: fail)))
        }
        if let c = dict["conversations"] {
            return (.sharegpt, .conversation(try messages(c, roleKey: "from", contentKey: "value", field: "conversations", fail: fail)))
        }
        if let ids = dict["input_ids"] {
            let inputIDs = try intArray(ids, field: "input_ids", fail: fail)
            var labels: [Int]? = nil
            if let l = dict["labels"], !(l is NSNull) {
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
            guard let ps = p as? String else { throw fail("\"prompt\" is \(typeName(p)), not a string") }
            guard let cs = c as? String else { throw fail("\"completion\" is \(typeName(c)), not a string") }
            return (.promptCompletion, .promptCompletion(prompt: ps, completion: cs))
        }
        if let t = dict["text"] {
            guard let s = t as? String else { throw fail("\"text\" is \(typeName(t)), not a string") }
            return (.text, .text(s))
        }
        let keys = dict.keys.sorted().map { "\"\($0)\"" }.joined(separator: ", ")
        throw fail("missing fields: expected \"messages\", \"conversations\", \"prompt\"+\"completion\", \"text\" or \"input_ids\"; the line has \(keys.isEmpty ? "no keys" : keys)")
    }

    static func messages(_ value: Any, roleKey: String, contentKey: String, field: String,
                         fail: (String, Int?) -> DatasetLineError) throws -> [ChatMessage] {
        guard let list = value as? [Any] else { throw fail("\"\(field)\" is \(typeName(value)), not a list", nil) }
        if list.isEmpty { throw fail("empty conversation (\"\(field)\" is [])", nil) }
        var out: [ChatMessage] = []
        for (i, item) in list.enumerated() {
            guard let m = item as? [String: Any] else {
                throw fail("\(field)[\(i)] is \(typeName(item)), not an object", nil)
            }
            guard let r = m[roleKey] else { throw fail("\(field)[\(i)] is missing \"\(roleKey)\"", nil) }
            guard let role = r as? String else { throw fail("\(field)[\(i)].\(roleKey) is \(typeName(r)), not a string", nil) }
            guard let c = m[contentKey] else { throw fail("\(field)[\(i)] is missing \"\(contentKey)\"", nil) }
            guard let content = c as? String else {
                throw fail("\(field)[\(i)].\(contentKey) is \(typeName(c)), not a string", nil)
            }
            let mapped: String?
            if roleKey == "from" {
                mapped = ["human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"][role]
                if mapped == nil {
                    throw fail("unknown role \"\(role)\" in \(field)[\(i)].from (expected human, gpt or system)", nil)
                }
            } else {
                mapped = ChatMessage.roles.contains(role) ? role : nil
                if mapped == nil {
                    throw fail("unknown role \"\(role)\" in \(field)[\(i)].role (expected system, user, assistant or tool)", nil)
                }
            }
            out.append(ChatMessage(role: mapped!, content: content))
        }
        return out
    }

    static func intArray(_ value: Any, field: String, fail: (String, Int?) -> DatasetLineError) throws -> [Int] {
        guard let list = value as? [Any] else { throw fail("\"\(field)\" is \(typeName(value)), not a list of integers", nil) }
        var out: [Int] = []
        out.reserveCapacity(list.count)
        for (k, v) in list.enumerated() {
            guard let n = v as? NSNumber, !isBool(n) else {
                throw fail("\(field)[\(k)] is \(typeName(v)), not an integer", nil)
            }
            let d = n.doubleValue
            guard d.rounded() == d, abs(d) < 9.0e15 else { throw fail("\(field)[\(k)] = \(n) is not an integer", nil) }
            out.append(Int(d))
        }
        return out
    }

    static func isBool(_ n: NSNumber) -> Bool {
        #if canImport(Darwin)
        return CFGetTypeID(n) == CFBooleanGetTypeID()
        #else
        return String(describing: type(of: n)) == "__NSCFBoolean"
        #endif
    }

    static func typeName(_ v: Any) -> String {
        switch v {
        case is NSNull: return "null"
        case is String: return "a string"
        case is [Any]: return "a list"
        case is [String: Any]: return "an object"
        case let n as NSNumber: return isBool(n) ? "a boolean" : "a number"
        default: return "\(type(of: v))"
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

    /// Column (1-based byte) and message of a JSONSerialization error, where Foundation gives one.
    static func describeJSONError(_ error: Error, bytes: [UInt8]) -> (Int?, String) {
        let ns = error as NSError
        let debug = (ns.userInfo["NSDebugDescription"] as? String) ?? ns.localizedDescription
        // "… around character 12." / "… around line 1, column 12."
        var column: Int? = nil
        if let r = debug.range(of: "column ") {
            column = Int(debug[r.upperBound...].prefix(while: { $0.isNumber }))
        } else if let r = debug.range(of: "character ") {
            column = Int(debug[r.upperBound...].prefix(while: { $0.isNumber })).map { $0 + 1 }
        }
        let msg = debug.hasSuffix(".") ? String(debug.dropLast()) : debug
        return (column, msg)
    }
}
