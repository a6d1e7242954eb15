import Foundation
import LoraBase

/// A normalizer rewrites the text of one piece (scalars in, scalars out).
protocol TextNormalizer {
    func normalize(_ s: [Unicode.Scalar]) -> [Unicode.Scalar]
}

func scalarsToString(_ s: [Unicode.Scalar]) -> String {
    var view = String.UnicodeScalarView()
    view.append(contentsOf: s)
    return String(view)
}

/// Unicode normalization forms through Foundation.
struct UnicodeFormNormalizer: TextNormalizer {
    enum Form { case nfc, nfd, nfkc, nfkd }
    let form: Form

    func normalize(_ s: [Unicode.Scalar]) -> [Unicode.Scalar] {
        // Fast path: ASCII is stable under every form; below U+0300 is stable under NFC.
        let limit: UInt32 = form == .nfc ? 0x300 : 0x80
        if s.allSatisfy({ $0.value < limit }) { return s }
        let str = scalarsToString(s)
        let out: String
        switch form {
        case .nfc: out = str.precomposedStringWithCanonicalMapping
        case .nfd: out = str.decomposedStringWithCanonicalMapping
        case .nfkc: out = str.precomposedStringWithCompatibilityMapping
        case .nfkd: out = str.decomposedStringWithCompatibilityMapping
        }
        return Array(out.unicodeScalars)
    }
}

/// Full Unicode lowercase mapping per scalar (no context, like Rust's char::to_lowercase).
struct LowercaseNormalizer: TextNormalizer {
    func normalize(_ s: [Unicode.Scalar]) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(s.count)
        for c in s {
            let v = c.value
            if v < 128 {
                out.append(v >= 0x41 && v <= 0x5A ? Unicode.Scalar(UInt8(v + 32)) : c)
            } else {
                out.append(contentsOf: c.properties.lowercaseMapping.unicodeScalars)
            }
        }
        return out
    }
}

/// Strips White_Space on the left and/or right.
struct StripNormalizer: TextNormalizer {
    let left: Bool, right: Bool

    func normalize(_ s: [Unicode.Scalar]) -> [Unicode.Scalar] {
        var lo = 0, hi = s.count
        if left { while lo < hi && s[lo].properties.isWhitespace { lo += 1 } }
        if right { while hi > lo && s[hi - 1].properties.isWhitespace { hi -= 1 } }
        return Array(s[lo..<hi])
    }
}

/// Prepends a string to non-empty text.
struct PrependNormalizer: TextNormalizer {
    let prefix: [Unicode.Scalar]

    func normalize(_ s: [Unicode.Scalar]) -> [Unicode.Scalar] {
        s.isEmpty ? s : prefix + s
    }
}

/// Replaces every match of a pattern (literal or regex) with a string.
struct ReplaceNormalizer: TextNormalizer {
    let pattern: ScalarPattern
    let content: [Unicode.Scalar]

    func normalize(_ s: [Unicode.Scalar]) -> [Unicode.Scalar] {
        // Fast path for a one-scalar literal (" " → "▁").
        if let lit = pattern as? LiteralPattern, lit.needle.count == 1 {
            let needle = lit.needle[0]
            if !s.contains(needle) { return s }
            var out: [Unicode.Scalar] = []
            out.reserveCapacity(s.count + content.count)
            for c in s { if c == needle { out.append(contentsOf: content) } else { out.append(c) } }
            return out
        }
        var out: [Unicode.Scalar] = []
        for (r, isMatch) in coveringMatches(pattern, s) {
            if isMatch { out.append(contentsOf: content) } else { out.append(contentsOf: s[r]) }
        }
        return out
    }
}

/// The ByteLevel normalizer: UTF-8 bytes to the GPT-2 byte alphabet.
struct ByteLevelNormalizer: TextNormalizer {
    func normalize(_ s: [Unicode.Scalar]) -> [Unicode.Scalar] { byteLevelEncode(s) }
}

struct SequenceNormalizer: TextNormalizer {
    let steps: [TextNormalizer]

    func normalize(_ s: [Unicode.Scalar]) -> [Unicode.Scalar] {
        var t = s
        for n in steps { t = n.normalize(t) }
        return t
    }
}

func makeNormalizer(_ json: JSONValue, context: String) throws -> TextNormalizer? {
    guard let type = try componentType(json, context: context) else { return nil }
    switch type {
    case "NFC": return UnicodeFormNormalizer(form: .nfc)
    case "NFD": return UnicodeFormNormalizer(form: .nfd)
    case "NFKC": return UnicodeFormNormalizer(form: .nfkc)
    case "NFKD": return UnicodeFormNormalizer(form: .nfkd)
    case "Lowercase": return LowercaseNormalizer()
    case "Strip":
        return StripNormalizer(left: json["strip_left"]?.bool ?? true, right: json["strip_right"]?.bool ?? true)
    case "Prepend":
        guard let p = json["prepend"]?.string else { throw TokenizerError("\(context).prepend is missing") }
        return PrependNormalizer(prefix: Array(p.unicodeScalars))
    case "Replace":
        guard let content = json["content"]?.string else { throw TokenizerError("\(context).content is missing") }
        return ReplaceNormalizer(pattern: try makePattern(json["pattern"], context: "\(context).pattern"),
                                 content: Array(content.unicodeScalars))
    case "ByteLevel": return ByteLevelNormalizer()
    case "Sequence":
        let steps = try sequenceSteps(json, "normalizers", context: context, makeNormalizer)
        return SequenceNormalizer(steps: steps)
    default:
        throw TokenizerError("\(context).type '\(type)' is not supported yet")
    }
}
