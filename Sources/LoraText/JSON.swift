import Foundation

// JSON values that keep object key order (as Python dicts do), a strict RFC 8259 parser over UTF-8
// bytes, and a compact serializer matching Python's json.dumps(separators=(",", ":"), ensure_ascii=False).

/// An object whose keys keep their insertion order. Setting an existing key keeps its position;
/// setting nil removes the key.
public struct JSONObject: Equatable, Sendable {
    public private(set) var keys: [String]
    private var storage: [String: JSONValue]

    public init() {
        keys = []
        storage = [:]
    }

    /// Later duplicates overwrite the value but keep the first position (like a Python dict).
    public init(_ pairs: [(String, JSONValue)]) {
        self.init()
        for (k, v) in pairs { self[k] = v }
    }

    public subscript(key: String) -> JSONValue? {
        get { storage[key] }
        set {
            if let newValue {
                if storage.updateValue(newValue, forKey: key) == nil { keys.append(key) }
            } else if storage.removeValue(forKey: key) != nil {
                keys.removeAll { $0 == key }
            }
        }
    }

    public var count: Int { keys.count }
    public var isEmpty: Bool { keys.isEmpty }

    /// (key, value) pairs in key order.
    public var pairs: [(String, JSONValue)] { keys.map { ($0, storage[$0]!) } }

    /// Equal when the same keys map to equal values, regardless of order (Python dict equality).
    public static func == (a: JSONObject, b: JSONObject) -> Bool { a.storage == b.storage }
}

public indirect enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    public subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    public subscript(index: Int) -> JSONValue? {
        if case .array(let a) = self, index >= 0, index < a.count { return a[index] }
        return nil
    }

    public var string: String? { if case .string(let s) = self { return s }; return nil }
    public var int: Int? { if case .int(let i) = self { return i }; return nil }
    public var bool: Bool? { if case .bool(let b) = self { return b }; return nil }
    /// Ints widen to Double.
    public var double: Double? {
        switch self {
        case .double(let d): return d
        case .int(let i): return Double(i)
        default: return nil
        }
    }
    public var array: [JSONValue]? { if case .array(let a) = self { return a }; return nil }
    public var object: JSONObject? { if case .object(let o) = self { return o }; return nil }
    public var isNull: Bool { self == .null }

    /// Parses one JSON document (whitespace around it allowed, nothing else).
    public static func parse(_ data: Data) throws -> JSONValue {
        var p = JSONParser(bytes: [UInt8](data))
        return try p.parseDocument()
    }

    public static func parse(_ text: String) throws -> JSONValue {
        try parse(Data(text.utf8))
    }

    /// Compact form: `{"a":1,"b":[true,null]}`; non-ASCII kept as is; floats like Python repr.
    public func serialized() -> String {
        var out = ""
        JSONWriter.write(self, into: &out, ensureASCII: false)
        return out
    }
}

/// A JSON syntax error: byte offset (0-based) plus 1-based line and column (column counts bytes).
public struct JSONParseError: Error, CustomStringConvertible, Equatable {
    public let offset: Int
    public let line: Int
    public let column: Int
    public let reason: String
    public var description: String { "JSON parse error at line \(line), column \(column) (byte \(offset)): \(reason)" }
}

struct JSONParser {
    let bytes: [UInt8]
    var pos = 0
    var depth = 0
    static let maxDepth = 512

    init(bytes: [UInt8]) { self.bytes = bytes }

    func error(_ reason: String, at offset: Int? = nil) -> JSONParseError {
        let off = min(offset ?? pos, bytes.count)
        var line = 1
        var lineStart = 0
        for i in 0..<off where bytes[i] == 0x0A {
            line += 1
            lineStart = i + 1
        }
        return JSONParseError(offset: off, line: line, column: off - lineStart + 1, reason: reason)
    }

    mutating func parseDocument() throws -> JSONValue {
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { throw error("unexpected UTF-8 byte order mark") }
        skipWhitespace()
        let v = try parseValue()
        skipWhitespace()
        if pos < bytes.count { throw error("unexpected \(describe(bytes[pos])) after the JSON value") }
        return v
    }

    mutating func skipWhitespace() {
        while pos < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[pos]) { pos += 1 }
    }

    func describe(_ b: UInt8) -> String {
        if b >= 0x21 && b < 0x7F { return "character '\(Character(Unicode.Scalar(b)))'" }
        return String(format: "byte 0x%02X", b)
    }

    mutating func parseValue() throws -> JSONValue {
        guard pos < bytes.count else { throw error("unexpected end of input, expected a value") }
        switch bytes[pos] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw error("unexpected \(describe(bytes[pos])), expected a value")
        }
    }

    mutating func literal(_ word: String) throws {
        let w = Array(word.utf8)
        guard pos + w.count <= bytes.count, Array(bytes[pos..<pos + w.count]) == w else {
            throw error("invalid literal, expected '\(word)'")
        }
        pos += w.count
    }

    mutating func enter() throws {
        depth += 1
        if depth > JSONParser.maxDepth { throw error("nesting deeper than \(JSONParser.maxDepth) levels") }
    }

    mutating func parseObject() throws -> JSONValue {
        try enter()
        defer { depth -= 1 }
        pos += 1
        var obj = JSONObject()
        skipWhitespace()
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "}") {
            pos += 1
            return .object(obj)
        }
        while true {
            skipWhitespace()
            guard pos < bytes.count else { throw error("unexpected end of input in object") }
            guard bytes[pos] == UInt8(ascii: "\"") else {
                throw error("unexpected \(describe(bytes[pos])), expected a string key")
            }
            let key = try parseString()
            skipWhitespace()
            guard pos < bytes.count, bytes[pos] == UInt8(ascii: ":") else {
                throw error(pos < bytes.count ? "unexpected \(describe(bytes[pos])), expected ':'" : "unexpected end of input, expected ':'")
            }
            pos += 1
            skipWhitespace()
            obj[key] = try parseValue()
            skipWhitespace()
            guard pos < bytes.count else { throw error("unexpected end of input in object, expected ',' or '}'") }
            if bytes[pos] == UInt8(ascii: ",") {
                pos += 1
                continue
            }
            if bytes[pos] == UInt8(ascii: "}") {
                pos += 1
                return .object(obj)
            }
            throw error("unexpected \(describe(bytes[pos])) in object, expected ',' or '}'")
        }
    }

    mutating func parseArray() throws -> JSONValue {
        try enter()
        defer { depth -= 1 }
        pos += 1
        var items: [JSONValue] = []
        skipWhitespace()
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "]") {
            pos += 1
            return .array(items)
        }
        while true {
            skipWhitespace()
            items.append(try parseValue())
            skipWhitespace()
            guard pos < bytes.count else { throw error("unexpected end of input in array, expected ',' or ']'") }
            if bytes[pos] == UInt8(ascii: ",") {
                pos += 1
                continue
            }
            if bytes[pos] == UInt8(ascii: "]") {
                pos += 1
                return .array(items)
            }
            throw error("unexpected \(describe(bytes[pos])) in array, expected ',' or ']'")
        }
    }

    mutating func parseNumber() throws -> JSONValue {
        let start = pos
        var isFloat = false
        if bytes[pos] == UInt8(ascii: "-") { pos += 1 }
        func digit(_ i: Int) -> Bool { i < bytes.count && bytes[i] >= 0x30 && bytes[i] <= 0x39 }
        guard digit(pos) else { throw error("invalid number: expected a digit") }
        if bytes[pos] == UInt8(ascii: "0") {
            pos += 1
            if digit(pos) { throw error("invalid number: leading zero") }
        } else {
            while digit(pos) { pos += 1 }
        }
        if pos < bytes.count, bytes[pos] == UInt8(ascii: ".") {
            isFloat = true
            pos += 1
            guard digit(pos) else { throw error("invalid number: expected a digit after '.'") }
            while digit(pos) { pos += 1 }
        }
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "e") || bytes[pos] == UInt8(ascii: "E") {
            isFloat = true
            pos += 1
            if pos < bytes.count, bytes[pos] == UInt8(ascii: "+") || bytes[pos] == UInt8(ascii: "-") { pos += 1 }
            guard digit(pos) else { throw error("invalid number: expected a digit in the exponent") }
            while digit(pos) { pos += 1 }
        }
        let text = String(decoding: bytes[start..<pos], as: UTF8.self)
        if !isFloat, let i = Int(text) { return .int(i) }
        guard let d = Double(text) else { throw error("invalid number '\(text)'", at: start) }
        return .double(d)
    }

    mutating func hex4() throws -> UInt32 {
        guard pos + 4 <= bytes.count else { throw error("unexpected end of input in \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let b = bytes[pos]
            let d: UInt32
            switch b {
            case 0x30...0x39: d = UInt32(b - 0x30)
            case 0x41...0x46: d = UInt32(b - 0x41 + 10)
            case 0x61...0x66: d = UInt32(b - 0x61 + 10)
            default: throw error("invalid hex digit \(describe(b)) in \\u escape")
            }
            v = v * 16 + d
            pos += 1
        }
        return v
    }

    /// Reads a string starting at the opening quote. Validates UTF-8 (no overlongs, no surrogates).
    mutating func parseString() throws -> String {
        pos += 1
        var scalars = String.UnicodeScalarView()
        while true {
            guard pos < bytes.count else { throw error("unterminated string") }
            let b = bytes[pos]
            if b == UInt8(ascii: "\"") {
                pos += 1
                return String(scalars)
            }
            if b == UInt8(ascii: "\\") {
                let escStart = pos
                pos += 1
                guard pos < bytes.count else { throw error("unterminated string") }
                let e = bytes[pos]
                pos += 1
                switch e {
                case UInt8(ascii: "\""): scalars.append("\"")
                case UInt8(ascii: "\\"): scalars.append("\\")
                case UInt8(ascii: "/"): scalars.append("/")
                case UInt8(ascii: "b"): scalars.append("\u{08}")
                case UInt8(ascii: "f"): scalars.append("\u{0C}")
                case UInt8(ascii: "n"): scalars.append("\n")
                case UInt8(ascii: "r"): scalars.append("\r")
                case UInt8(ascii: "t"): scalars.append("\t")
                case UInt8(ascii: "u"):
                    var code = try hex4()
                    if code >= 0xD800 && code < 0xDC00 {
                        // A high surrogate must be followed by an escaped low surrogate.
                        if pos + 1 < bytes.count, bytes[pos] == UInt8(ascii: "\\"), bytes[pos + 1] == UInt8(ascii: "u") {
                            pos += 2
                            let low = try hex4()
                            guard low >= 0xDC00 && low < 0xE000 else {
                                throw error("unpaired surrogate in \\u escape", at: escStart)
                            }
                            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                        } else {
                            throw error("unpaired surrogate in \\u escape", at: escStart)
                        }
                    } else if code >= 0xDC00 && code < 0xE000 {
                        throw error("unpaired surrogate in \\u escape", at: escStart)
                    }
                    scalars.append(Unicode.Scalar(code)!)
                default:
                    throw error("invalid escape '\\\(Character(Unicode.Scalar(e)))'", at: escStart)
                }
                continue
            }
            if b < 0x20 { throw error("unescaped control character \(String(format: "0x%02X", b)) in string") }
            if b < 0x80 {
                scalars.append(Unicode.Scalar(b))
                pos += 1
                continue
            }
            scalars.append(try decodeUTF8())
        }
    }

    /// One multi-byte UTF-8 sequence at pos.
    mutating func decodeUTF8() throws -> Unicode.Scalar {
        let b0 = bytes[pos]
        let need: Int
        var code: UInt32
        let minCode: UInt32
        switch b0 {
        case 0xC2...0xDF: need = 1; code = UInt32(b0 & 0x1F); minCode = 0x80
        case 0xE0...0xEF: need = 2; code = UInt32(b0 & 0x0F); minCode = 0x800
        case 0xF0...0xF4: need = 3; code = UInt32(b0 & 0x07); minCode = 0x10000
        default: throw error(String(format: "invalid UTF-8: byte 0x%02X cannot start a character", b0))
        }
        guard pos + need < bytes.count else { throw error("invalid UTF-8: truncated multi-byte sequence") }
        for i in 1...need {
            let c = bytes[pos + i]
            guard c & 0xC0 == 0x80 else {
                throw error(String(format: "invalid UTF-8: byte 0x%02X is not a continuation byte", c), at: pos + i)
            }
            code = (code << 6) | UInt32(c & 0x3F)
        }
        guard code >= minCode else { throw error("invalid UTF-8: overlong encoding") }
        guard code <= 0x10FFFF, !(0xD800..<0xE000).contains(code), let s = Unicode.Scalar(code) else {
            throw error(String(format: "invalid UTF-8: encoded surrogate or out-of-range code point U+%04X", code))
        }
        pos += need + 1
        return s
    }
}

/// Python json.dumps-compatible writer.
enum JSONWriter {
    static func write(_ v: JSONValue, into out: inout String, ensureASCII: Bool) {
        switch v {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d): out += PyFormat.jsonFloat(d)
        case .string(let s): writeString(s, into: &out, ensureASCII: ensureASCII)
        case .array(let a):
            out += "["
            for (i, x) in a.enumerated() {
                if i > 0 { out += "," }
                write(x, into: &out, ensureASCII: ensureASCII)
            }
            out += "]"
        case .object(let o):
            out += "{"
            for (i, (k, x)) in o.pairs.enumerated() {
                if i > 0 { out += "," }
                writeString(k, into: &out, ensureASCII: ensureASCII)
                out += ":"
                write(x, into: &out, ensureASCII: ensureASCII)
            }
            out += "}"
        }
    }

    /// Python's json string escaping: `"` `\` and control characters; non-ASCII as \uXXXX
    /// (lowercase hex, surrogate pairs) only when ensureASCII.
    static func writeString(_ s: String, into out: inout String, ensureASCII: Bool) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if u.value < 0x20 {
                    out += String(format: "\\u%04x", u.value)
                } else if ensureASCII && u.value > 0x7E {
                    if u.value >= 0x10000 {
                        let v = u.value - 0x10000
                        out += String(format: "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF))
                    } else {
                        out += String(format: "\\u%04x", u.value)
                    }
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        out += "\""
    }
}

// Literal conveniences: `let v: JSONValue = ["role": "user", "content": "hi"]`.
extension JSONValue: ExpressibleByNilLiteral, ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByStringLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    public init(nilLiteral: ()) { self = .null }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(integerLiteral value: Int) { self = .int(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(stringLiteral value: String) { self = .string(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) { self = .object(JSONObject(elements)) }
}
