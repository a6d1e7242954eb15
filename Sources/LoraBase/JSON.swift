import Foundation

// The project's one JSON: a value that keeps object keys in file order (as Python
// dicts do) and compares them by their bytes; a strict RFC 8259 reader over UTF-8
// bytes; and a writer in Python's json.dumps forms. safetensors headers,
// tokenizer.json, config.json, adapter_config.json, JSONL data and the Jinja
// interpreter's JSON all go through it.

public typealias JSONObject = OrderedMap<JSONValue>

public indirect enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    /// An integer literal that fits in Int (no fraction, no exponent).
    case int(Int)
    /// Any other number.
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
    /// An integral number that fits in Int, written either way (`3` or `3.0`).
    public var integral: Int? {
        switch self {
        case .int(let i): return i
        case .double(let d): return d.rounded() == d ? Int(exactly: d) : nil
        default: return nil
        }
    }
    public var array: [JSONValue]? { if case .array(let a) = self { return a }; return nil }
    public var object: JSONObject? { if case .object(let o) = self { return o }; return nil }
    public var isNull: Bool { self == .null }
    /// An array of strings, else nil.
    public var strings: [String]? {
        guard let a = array else { return nil }
        let s = a.compactMap(\.string)
        return s.count == a.count ? s : nil
    }

    /// "a string", "an object", … for error messages.
    public var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .int, .double: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }

    /// How the value looks in an error message: JSON for scalars and lists, `{…}` for an object.
    public var shortDescription: String {
        switch self {
        case .object: return "{…}"
        case .array(let a): return "[" + a.map(\.shortDescription).joined(separator: ", ") + "]"
        default: return serialized()
        }
    }

    /// Parses one JSON document (whitespace around it allowed, nothing else).
    public static func parse(_ data: Data, options: JSONParseOptions = .init()) throws -> JSONValue {
        try data.withUnsafeBytes { try parse(bytes: $0, options: options) }
    }

    public static func parse(_ text: String, options: JSONParseOptions = .init()) throws -> JSONValue {
        try parse(Data(text.utf8), options: options)
    }

    public static func parse(bytes: UnsafeRawBufferPointer, options: JSONParseOptions = .init()) throws -> JSONValue {
        var p = JSONParser(bytes: bytes, options: options)
        return try p.parseDocument()
    }

    /// Compact form as json.dumps(separators=(",", ":"), ensure_ascii=False): `{"a":1,"b":[true,null]}`.
    public func serialized() -> String { serialized(.compact) }

    public func serialized(_ style: JSONStyle) -> String {
        var out = ""
        JSONWriter(style: style).write(self, into: &out, depth: 0)
        return out
    }
}

/// How the reader treats what RFC 8259 leaves open.
public struct JSONParseOptions: Sendable {
    /// A key repeated in one object: an error, or (Python's json) the last value at the first position.
    public var rejectDuplicateKeys: Bool
    public var maxDepth: Int
    public init(rejectDuplicateKeys: Bool = false, maxDepth: Int = 512) {
        self.rejectDuplicateKeys = rejectDuplicateKeys
        self.maxDepth = maxDepth
    }
}

/// The writer's layout, named for the Python call that gives the same bytes.
public struct JSONStyle: Sendable {
    /// The text of one indentation level (Python's indent=2 is "  "); nil writes everything on one line.
    public var indent: String?
    public var sortKeys: Bool
    public var ensureASCII: Bool
    /// The separators between items and after keys on one line.
    public var itemSeparator: String
    public var keySeparator: String

    public init(indent: String? = nil, sortKeys: Bool = false, ensureASCII: Bool = false,
                itemSeparator: String = ", ", keySeparator: String = ": ") {
        self.indent = indent
        self.sortKeys = sortKeys
        self.ensureASCII = ensureASCII
        self.itemSeparator = itemSeparator
        self.keySeparator = keySeparator
    }

    /// json.dumps(v, separators=(",", ":"), ensure_ascii=False).
    public static let compact = JSONStyle(itemSeparator: ",", keySeparator: ":")
    /// json.dumps(v, indent=2, sort_keys=True, ensure_ascii=False).
    public static let prettySorted = JSONStyle(indent: "  ", sortKeys: true, itemSeparator: ",")
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
    let bytes: UnsafeRawBufferPointer
    let options: JSONParseOptions
    var pos = 0
    var depth = 0

    init(bytes: UnsafeRawBufferPointer, options: JSONParseOptions) {
        self.bytes = bytes
        self.options = options
    }

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
        if bytes.count >= 3, bytes[0] == 0xEF, bytes[1] == 0xBB, bytes[2] == 0xBF {
            throw error("unexpected UTF-8 byte order mark")
        }
        skipWhitespace()
        let v = try parseValue()
        skipWhitespace()
        if pos < bytes.count { throw error("unexpected \(describe(bytes[pos])) after the JSON value") }
        return v
    }

    mutating func skipWhitespace() {
        while pos < bytes.count {
            let b = bytes[pos]
            guard b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D else { return }
            pos += 1
        }
    }

    func describe(_ b: UInt8) -> String {
        if b >= 0x21 && b < 0x7F { return "character '\(Character(Unicode.Scalar(b)))'" }
        return "byte " + hexByte(b)
    }

    func hexByte(_ b: UInt8) -> String { String(format: "0x%02X", b) }

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

    mutating func literal(_ word: StaticString) throws {
        let n = word.utf8CodeUnitCount
        guard pos + n <= bytes.count,
              (0..<n).allSatisfy({ bytes[pos + $0] == word.utf8Start[$0] }) else {
            throw error("invalid literal, expected '\(word)'")
        }
        pos += n
    }

    mutating func enter() throws {
        depth += 1
        if depth > options.maxDepth { throw error("nesting deeper than \(options.maxDepth) levels") }
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
            let keyOffset = pos
            let key = try parseString()
            skipWhitespace()
            guard pos < bytes.count, bytes[pos] == UInt8(ascii: ":") else {
                throw error(pos < bytes.count ? "unexpected \(describe(bytes[pos])), expected ':'" : "unexpected end of input, expected ':'")
            }
            pos += 1
            skipWhitespace()
            let value = try parseValue()
            if options.rejectDuplicateKeys {
                guard obj.insertNew(key, value) else { throw error("duplicate key '\(key)'", at: keyOffset) }
            } else {
                obj[key] = value
            }
            if try closesAfterItem("}", in: "object") { return .object(obj) }
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
            if try closesAfterItem("]", in: "array") { return .array(items) }
        }
    }

    /// After an object's or array's item: a ',' (false: another item follows) or the closing bracket
    /// (true), either consumed; anything else is an error.
    mutating func closesAfterItem(_ close: Unicode.Scalar, in what: String) throws -> Bool {
        skipWhitespace()
        guard pos < bytes.count else { throw error("unexpected end of input in \(what), expected ',' or '\(close)'") }
        let b = bytes[pos]
        guard b == UInt8(ascii: ",") || b == UInt8(ascii: close) else {
            throw error("unexpected \(describe(b)) in \(what), expected ',' or '\(close)'")
        }
        pos += 1
        return b != UInt8(ascii: ",")
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
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<pos]), as: UTF8.self)
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

    /// Reads a string starting at the opening quote. Validates UTF-8 (no overlongs, no
    /// surrogates). A string without escapes is decoded from the bytes in one go.
    mutating func parseString() throws -> String {
        pos += 1
        let start = pos
        while pos < bytes.count {
            let b = bytes[pos]
            if b == UInt8(ascii: "\"") {
                let s = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<pos]), as: UTF8.self)
                pos += 1
                return s
            }
            if b == UInt8(ascii: "\\") { break }
            if b < 0x20 { throw error("unescaped control character \(hexByte(b)) in string") }
            if b < 0x80 { pos += 1 } else { _ = try decodeUTF8() }
        }
        var scalars = String.UnicodeScalarView()
        scalars.append(contentsOf: String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<pos]), as: UTF8.self).unicodeScalars)
        while true {
            guard pos < bytes.count else { throw error("unterminated string") }
            let b = bytes[pos]
            if b == UInt8(ascii: "\"") {
                pos += 1
                return String(scalars)
            }
            if b == UInt8(ascii: "\\") {
                scalars.append(try escape())
                continue
            }
            if b < 0x20 { throw error("unescaped control character \(hexByte(b)) in string") }
            if b < 0x80 {
                scalars.append(Unicode.Scalar(b))
                pos += 1
                continue
            }
            scalars.append(try decodeUTF8())
        }
    }

    /// One escape sequence at pos (the backslash).
    mutating func escape() throws -> Unicode.Scalar {
        let escStart = pos
        pos += 1
        guard pos < bytes.count else { throw error("unterminated string") }
        let e = bytes[pos]
        pos += 1
        switch e {
        case UInt8(ascii: "\""): return "\""
        case UInt8(ascii: "\\"): return "\\"
        case UInt8(ascii: "/"): return "/"
        case UInt8(ascii: "b"): return "\u{08}"
        case UInt8(ascii: "f"): return "\u{0C}"
        case UInt8(ascii: "n"): return "\n"
        case UInt8(ascii: "r"): return "\r"
        case UInt8(ascii: "t"): return "\t"
        case UInt8(ascii: "u"):
            var code = try hex4()
            if code >= 0xD800 && code < 0xDC00 {
                // A high surrogate must be followed by an escaped low surrogate.
                guard pos + 1 < bytes.count, bytes[pos] == UInt8(ascii: "\\"), bytes[pos + 1] == UInt8(ascii: "u") else {
                    throw error("unpaired surrogate in \\u escape", at: escStart)
                }
                pos += 2
                let low = try hex4()
                guard low >= 0xDC00 && low < 0xE000 else { throw error("unpaired surrogate in \\u escape", at: escStart) }
                code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
            } else if code >= 0xDC00 && code < 0xE000 {
                throw error("unpaired surrogate in \\u escape", at: escStart)
            }
            return Unicode.Scalar(code)!
        default:
            throw error("invalid escape '\\\(Character(Unicode.Scalar(e)))'", at: escStart)
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
        default: throw error("invalid UTF-8: byte \(hexByte(b0)) cannot start a character")
        }
        guard pos + need < bytes.count else { throw error("invalid UTF-8: truncated multi-byte sequence") }
        for i in 1...need {
            let c = bytes[pos + i]
            guard c & 0xC0 == 0x80 else {
                throw error("invalid UTF-8: byte \(hexByte(c)) is not a continuation byte", at: pos + i)
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
struct JSONWriter {
    let style: JSONStyle

    func newline(_ out: inout String, _ depth: Int) {
        guard let indent = style.indent else { return }
        out += "\n" + String(repeating: indent, count: depth)
    }

    /// Between items: the item separator, then a newline when indenting.
    func separator(_ out: inout String, _ depth: Int) {
        out += style.itemSeparator
        newline(&out, depth)
    }

    func write(_ v: JSONValue, into out: inout String, depth: Int) {
        switch v {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d): out += PythonFloat.json(d)
        case .string(let s): Escaping.appendQuoted(s, to: &out, ensureASCII: style.ensureASCII)
        case .array(let a):
            out += "["
            if a.isEmpty { out += "]"; return }
            newline(&out, depth + 1)
            for (i, x) in a.enumerated() {
                if i > 0 { separator(&out, depth + 1) }
                write(x, into: &out, depth: depth + 1)
            }
            newline(&out, depth)
            out += "]"
        case .object(let o):
            out += "{"
            if o.isEmpty { out += "}"; return }
            newline(&out, depth + 1)
            var pairs = o.pairs
            if style.sortKeys { pairs.sort { $0.0.unicodeScalars.lexicographicallyPrecedes($1.0.unicodeScalars) } }
            for (i, (k, x)) in pairs.enumerated() {
                if i > 0 { separator(&out, depth + 1) }
                Escaping.appendQuoted(k, to: &out, ensureASCII: style.ensureASCII)
                out += style.keySeparator
                write(x, into: &out, depth: depth + 1)
            }
            newline(&out, depth)
            out += "}"
        }
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

extension JSONValue {
    /// A list of strings.
    public init(_ strings: [String]) { self = .array(strings.map { .string($0) }) }
    /// A list of integers.
    public init(_ ints: [Int]) { self = .array(ints.map { .int($0) }) }
    /// A number: `.int` when it is integral and within 2^53 (as Python writes `32` for alpha 32), else `.double`.
    public init(number d: Double) {
        if d.rounded() == d, abs(d) < 9.0e15 { self = .int(Int(d)) } else { self = .double(d) }
    }
    /// Reads a whole file as JSON.
    public static func read(path: String, options: JSONParseOptions = .init()) throws -> JSONValue {
        try MappedFile(path: path).withBytes { try parse(bytes: $0, options: options) }
    }
}
