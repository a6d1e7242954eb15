import Foundation

/// A strict JSON reader for the safetensors header. Unlike JSONSerialization it
/// keeps integers apart from floats and booleans (so `[true, 2.7]` is not read as
/// the shape `[1, 2]`), reports a key repeated in one object instead of silently
/// keeping the last, and bounds nesting, so a hostile header gives an error,
/// never a trap.
enum HeaderJSON: Equatable {
    case null
    case bool(Bool)
    /// An integer literal that fits in Int (no fraction, no exponent).
    case int(Int)
    /// Any other number (fraction, exponent, or an integer past Int's range).
    case number(String)
    case string(String)
    case array([HeaderJSON])
    /// Keys in the file's order.
    case object([(key: String, value: HeaderJSON)])

    static func == (a: HeaderJSON, b: HeaderJSON) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case (.bool(let x), .bool(let y)): return x == y
        case (.int(let x), .int(let y)): return x == y
        case (.number(let x), .number(let y)): return x == y
        case (.string(let x), .string(let y)): return x == y
        case (.array(let x), .array(let y)): return x == y
        case (.object(let x), .object(let y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        default: return false
        }
    }

    /// How the value looks in an error message.
    var shortDescription: String {
        switch self {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .number(let s): return s
        case .string(let s): return "\"\(s)\""
        case .array(let a): return "[" + a.map(\.shortDescription).joined(separator: ", ") + "]"
        case .object: return "{…}"
        }
    }

    struct ParseError: Error {
        let offset: Int
        let reason: String
    }

    /// Parses a whole document (trailing whitespace allowed, nothing else).
    static func parse(_ bytes: UnsafeRawBufferPointer, maxDepth: Int = 32) throws -> HeaderJSON {
        var p = Parser(b: bytes, i: 0, maxDepth: maxDepth)
        p.skipSpace()
        let v = try p.value(depth: 0)
        p.skipSpace()
        guard p.i == bytes.count else { throw ParseError(offset: p.i, reason: "unexpected data after the JSON value") }
        return v
    }

    private struct Parser {
        let b: UnsafeRawBufferPointer
        var i: Int
        let maxDepth: Int

        func fail(_ r: String) -> ParseError { ParseError(offset: i, reason: r) }

        mutating func skipSpace() {
            while i < b.count, [0x20, 0x09, 0x0A, 0x0D].contains(b[i]) { i += 1 }
        }

        mutating func literal(_ word: String, _ v: HeaderJSON) throws -> HeaderJSON {
            let w = Array(word.utf8)
            guard b.count - i >= w.count, (0..<w.count).allSatisfy({ b[i + $0] == w[$0] }) else { throw fail("invalid literal") }
            i += w.count
            return v
        }

        mutating func value(depth: Int) throws -> HeaderJSON {
            guard depth <= maxDepth else { throw fail("nested deeper than \(maxDepth) levels") }
            guard i < b.count else { throw fail("unexpected end of the header") }
            switch b[i] {
            case UInt8(ascii: "{"):
                i += 1
                var items: [(key: String, value: HeaderJSON)] = []
                var seen = Set<String>()
                skipSpace()
                if i < b.count, b[i] == UInt8(ascii: "}") { i += 1; return .object(items) }
                while true {
                    skipSpace()
                    guard i < b.count, b[i] == UInt8(ascii: "\"") else { throw fail("expected a string key") }
                    let keyOffset = i
                    let k = try string()
                    guard seen.insert(k).inserted else {
                        throw ParseError(offset: keyOffset, reason: "duplicate key '\(k)'")
                    }
                    skipSpace()
                    guard i < b.count, b[i] == UInt8(ascii: ":") else { throw fail("expected ':'") }
                    i += 1
                    skipSpace()
                    items.append((k, try value(depth: depth + 1)))
                    skipSpace()
                    guard i < b.count else { throw fail("unexpected end of the header") }
                    if b[i] == UInt8(ascii: ",") { i += 1; continue }
                    if b[i] == UInt8(ascii: "}") { i += 1; return .object(items) }
                    throw fail("expected ',' or '}'")
                }
            case UInt8(ascii: "["):
                i += 1
                var items: [HeaderJSON] = []
                skipSpace()
                if i < b.count, b[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
                while true {
                    skipSpace()
                    items.append(try value(depth: depth + 1))
                    skipSpace()
                    guard i < b.count else { throw fail("unexpected end of the header") }
                    if b[i] == UInt8(ascii: ",") { i += 1; continue }
                    if b[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
                    throw fail("expected ',' or ']'")
                }
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): return try literal("true", .bool(true))
            case UInt8(ascii: "f"): return try literal("false", .bool(false))
            case UInt8(ascii: "n"): return try literal("null", .null)
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
            default: throw fail("unexpected character")
            }
        }

        mutating func number() throws -> HeaderJSON {
            let start = i
            var integral = true
            if b[i] == UInt8(ascii: "-") { i += 1 }
            func digits(_ p: inout Parser) -> Int {
                let s = p.i
                while p.i < p.b.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(p.b[p.i]) { p.i += 1 }
                return p.i - s
            }
            guard digits(&self) > 0 else { throw fail("invalid number") }
            if i < b.count, b[i] == UInt8(ascii: ".") {
                integral = false
                i += 1
                guard digits(&self) > 0 else { throw fail("invalid number") }
            }
            if i < b.count, b[i] == UInt8(ascii: "e") || b[i] == UInt8(ascii: "E") {
                integral = false
                i += 1
                if i < b.count, b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") { i += 1 }
                guard digits(&self) > 0 else { throw fail("invalid number") }
            }
            let text = String(decoding: UnsafeRawBufferPointer(rebasing: b[start..<i]), as: UTF8.self)
            if integral, let v = Int(text) { return .int(v) }
            return .number(text)
        }

        mutating func hex4() throws -> UInt32 {
            guard b.count - i >= 4 else { throw fail("truncated \\u escape") }
            var v: UInt32 = 0
            for _ in 0..<4 {
                let c = b[i]
                let d: UInt8
                switch c {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): d = c - UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): d = c - UInt8(ascii: "a") + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): d = c - UInt8(ascii: "A") + 10
                default: throw fail("invalid \\u escape")
                }
                v = v << 4 | UInt32(d)
                i += 1
            }
            return v
        }

        mutating func string() throws -> String {
            i += 1  // opening quote
            var out = [UInt8]()
            while true {
                guard i < b.count else { throw fail("unterminated string") }
                let c = b[i]
                if c == UInt8(ascii: "\"") { i += 1; break }
                if c < 0x20 { throw fail("control character in a string") }
                if c != UInt8(ascii: "\\") { out.append(c); i += 1; continue }
                i += 1
                guard i < b.count else { throw fail("unterminated string") }
                let e = b[i]
                i += 1
                switch e {
                case UInt8(ascii: "\""): out.append(0x22)
                case UInt8(ascii: "\\"): out.append(0x5C)
                case UInt8(ascii: "/"): out.append(0x2F)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try hex4()
                    if (0xD800..<0xDC00).contains(scalar) {
                        guard b.count - i >= 6, b[i] == UInt8(ascii: "\\"), b[i + 1] == UInt8(ascii: "u") else {
                            throw fail("unpaired surrogate")
                        }
                        i += 2
                        let low = try hex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw fail("unpaired surrogate") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    }
                    guard let u = Unicode.Scalar(scalar) else { throw fail("unpaired surrogate") }
                    out += Array(String(Character(u)).utf8)
                default: throw fail("invalid escape")
                }
            }
            guard let s = String(validating: out, as: UTF8.self) else { throw fail("invalid UTF-8 in a string") }
            return s
        }
    }
}
