import Foundation
import LoraBase

/// A decoder maps the list of token strings to a new list (the library's decode_chain);
/// the final text is the concatenation.
protocol TokenDecoder {
    func decodeChain(_ tokens: [String]) -> [String]
}

/// Byte-alphabet tokens back to bytes, all tokens at once, then lossy UTF-8.
/// A token with a character outside the alphabet contributes its own UTF-8 bytes.
struct ByteLevelDecoder: TokenDecoder {
    func decodeChain(_ tokens: [String]) -> [String] {
        var bytes: [UInt8] = []
        for t in tokens {
            let start = bytes.count
            var ok = true
            for c in t.unicodeScalars {
                let v = c.value
                if v < 512, scalarToByte[Int(v)] >= 0 {
                    bytes.append(UInt8(scalarToByte[Int(v)]))
                } else {
                    ok = false
                    break
                }
            }
            if !ok {
                bytes.removeSubrange(start...)
                bytes.append(contentsOf: t.utf8)
            }
        }
        return [String(decoding: bytes, as: UTF8.self)]
    }
}

struct ReplaceDecoder: TokenDecoder {
    let pattern: ScalarPattern
    let content: String

    func decodeChain(_ tokens: [String]) -> [String] {
        tokens.map { t in
            let s = Array(t.unicodeScalars)
            var out = String.UnicodeScalarView()
            for (r, isMatch) in coveringMatches(pattern, s) {
                if isMatch { out.append(contentsOf: content.unicodeScalars) } else { out.append(contentsOf: s[r]) }
            }
            return String(out)
        }
    }
}

/// Runs of <0xNN> tokens become their UTF-8 text, or one U+FFFD per byte when invalid.
struct ByteFallbackDecoder: TokenDecoder {
    static func byteValue(_ t: String) -> UInt8? {
        let u = Array(t.utf8)
        guard u.count == 6, u[0] == 0x3C, u[1] == 0x30, u[2] == 0x78, u[5] == 0x3E else { return nil }
        func hex(_ b: UInt8) -> UInt8? {
            switch b {
            case 0x30...0x39: return b - 0x30
            case 0x41...0x46: return b - 0x41 + 10
            case 0x61...0x66: return b - 0x61 + 10
            default: return nil
            }
        }
        guard let hi = hex(u[3]), let lo = hex(u[4]) else { return nil }
        return hi << 4 | lo
    }

    func decodeChain(_ tokens: [String]) -> [String] {
        var out: [String] = []
        var pending: [UInt8] = []
        func flush() {
            guard !pending.isEmpty else { return }
            if let s = String(validatingUTF8Bytes: pending) {
                out.append(s)
            } else {
                for _ in pending { out.append("\u{FFFD}") }
            }
            pending.removeAll()
        }
        for t in tokens {
            if let b = Self.byteValue(t) {
                pending.append(b)
            } else {
                flush()
                out.append(t)
            }
        }
        flush()
        return out
    }
}

extension String {
    /// Strict UTF-8 decoding: nil when the bytes are not valid UTF-8.
    init?(validatingUTF8Bytes bytes: [UInt8]) {
        var it = bytes.makeIterator()
        var decoder = UTF8()
        var view = String.UnicodeScalarView()
        loop: while true {
            switch decoder.decode(&it) {
            case .scalarValue(let s): view.append(s)
            case .emptyInput: break loop
            case .error: return nil
            }
        }
        self = String(view)
    }
}

struct FuseDecoder: TokenDecoder {
    func decodeChain(_ tokens: [String]) -> [String] { [tokens.joined()] }
}

/// Removes up to `start` leading and `stop` trailing copies of `content` from each token.
struct StripDecoder: TokenDecoder {
    let content: Unicode.Scalar
    let start: Int
    let stop: Int

    func decodeChain(_ tokens: [String]) -> [String] {
        tokens.map { t in
            let chars = Array(t.unicodeScalars)
            var startCut = 0
            for i in 0..<min(start, chars.count) {
                if chars[i] == content { startCut = i + 1 } else { break }
            }
            var stopCut = chars.count
            for i in 0..<min(stop, chars.count) {
                let index = chars.count - i - 1
                if chars[index] == content { stopCut = index } else { break }
            }
            if stopCut < startCut { return "" }
            return scalarsToString(Array(chars[startCut..<stopCut]))
        }
    }
}

/// Replacement character back to spaces; the first token loses its replacements
/// unless the prepend scheme is "never".
struct MetaspaceDecoder: TokenDecoder {
    let replacement: Unicode.Scalar
    let prependNever: Bool

    func decodeChain(_ tokens: [String]) -> [String] {
        tokens.enumerated().map { (i, t) in
            var out = String.UnicodeScalarView()
            for c in t.unicodeScalars {
                if c == replacement {
                    if i == 0 && !prependNever { continue }
                    out.append(" ")
                } else {
                    out.append(c)
                }
            }
            return String(out)
        }
    }
}

/// BPEDecoder: the end-of-word suffix becomes a space (nothing in the last token).
struct SuffixDecoder: TokenDecoder {
    let suffix: String

    func decodeChain(_ tokens: [String]) -> [String] {
        guard !suffix.isEmpty else { return tokens }
        let pattern = LiteralPattern(needle: Array(suffix.unicodeScalars))
        return tokens.enumerated().map { (i, t) in
            let s = Array(t.unicodeScalars)
            var out = String.UnicodeScalarView()
            for (r, isMatch) in pattern.findMatches(in: s) {
                if isMatch { if i != tokens.count - 1 { out.append(" ") } } else { out.append(contentsOf: s[r]) }
            }
            return String(out)
        }
    }
}

struct SequenceDecoder: TokenDecoder {
    let steps: [TokenDecoder]

    func decodeChain(_ tokens: [String]) -> [String] {
        var t = tokens
        for s in steps { t = s.decodeChain(t) }
        return t
    }
}

func makeDecoder(_ json: JSONValue, context: String) throws -> TokenDecoder? {
    guard let type = try componentType(json, context: context) else { return nil }
    switch type {
    case "ByteLevel": return ByteLevelDecoder()
    case "Replace":
        guard let content = json["content"]?.string else { throw TokenizerError("\(context).content is missing") }
        return ReplaceDecoder(pattern: try makePattern(json["pattern"], context: "\(context).pattern"), content: content)
    case "ByteFallback": return ByteFallbackDecoder()
    case "Fuse": return FuseDecoder()
    case "BPEDecoder": return SuffixDecoder(suffix: json["suffix"]?.string ?? "</w>")
    case "Strip":
        guard let content = json["content"]?.string, content.unicodeScalars.count == 1,
              let c = content.unicodeScalars.first else {
            throw TokenizerError("\(context).content must be one character")
        }
        return StripDecoder(content: c, start: max(0, json["start"]?.integral ?? 0), stop: max(0, json["stop"]?.integral ?? 0))
    case "Metaspace":
        let rep = json["replacement"]?.string ?? "▁"
        guard rep.unicodeScalars.count == 1, let r = rep.unicodeScalars.first else {
            throw TokenizerError("\(context).replacement must be one character")
        }
        var never = json["prepend_scheme"]?.string == "never"
        if json["add_prefix_space"]?.bool == false { never = true }
        return MetaspaceDecoder(replacement: r, prependNever: never)
    case "Sequence":
        let steps = try sequenceSteps(json, "decoders", context: context, makeDecoder)
        return SequenceDecoder(steps: steps)
    default:
        throw TokenizerError("\(context).type '\(type)' is not supported yet")
    }
}
