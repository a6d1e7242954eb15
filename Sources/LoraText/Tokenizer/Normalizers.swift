import Foundation
import LoraBase

/// A normalizer rewrites the text of one piece (scalars in, scalars out).
protocol TextNormalizer {
    func normalize(_ s: [Unicode.Scalar]) -> [Unicode.Scalar]
    /// The same rewrite carrying each scalar's original byte range along (`TextPiece.align`),
    /// as `tokenizers`' NormalizedString aligns it: a scalar that replaces n originals stands for
    /// the first of them; one inserted after it stands for the original before it; removed
    /// scalars take their ranges with them.
    func normalize(aligned p: inout TextPiece)
}

extension TextNormalizer {
    /// Scalar by scalar: each scalar's output stands for that scalar (Lowercase, ByteLevel).
    func normalizeEachScalar(_ p: inout TextPiece) {
        guard let a = p.align else { p.text = normalize(p.text); return }
        var text: [Unicode.Scalar] = [], align: [Range<Int>] = []
        text.reserveCapacity(p.text.count)
        align.reserveCapacity(p.text.count)
        for (c, r) in zip(p.text, a) {
            let out = normalize([c])
            text += out
            align += repeatElement(r, count: out.count)
        }
        p.text = text
        p.align = align
    }
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

    /// Positional, as the library's normalization with alignments gives it: the text's full
    /// decomposition (NFD / NFKD) repeats each scalar's range once per scalar it decomposes into,
    /// and canonical reordering keeps those ranges in place; composing (NFC / NFKC), an output scalar
    /// that absorbed k decomposed scalars stands for the first range of its run, the next output
    /// continues after the run. (Checked against the whole piece's form; failing that, every output
    /// scalar stands for the whole piece.)
    func normalize(aligned p: inout TextPiece) {
        guard let a = p.align else { p.text = normalize(p.text); return }
        let whole = normalize(p.text)
        if whole == p.text { return }
        let compat = form == .nfkc || form == .nfkd
        func decomposed(_ s: [Unicode.Scalar]) -> [Unicode.Scalar] {
            let str = scalarsToString(s)
            return Array((compat ? str.decomposedStringWithCompatibilityMapping : str.decomposedStringWithCanonicalMapping).unicodeScalars)
        }
        var runs: [Range<Int>] = []
        for (c, r) in zip(p.text, a) {
            runs += repeatElement(r, count: c.value < 0x80 ? 1 : decomposed([c]).count)
        }
        var align: [Range<Int>] = []
        align.reserveCapacity(whole.count)
        var pos = 0
        for c in whole {
            guard pos < runs.count else { break }
            align.append(runs[pos])
            pos += form == .nfc || form == .nfkc ? (c.value < 0x80 ? 1 : decomposed([c]).count) : 1
        }
        guard align.count == whole.count, pos == runs.count else {
            let all = (a.first?.lowerBound ?? 0)..<(a.last?.upperBound ?? 0)
            p.text = whole
            p.align = [Range<Int>](repeating: all, count: whole.count)
            return
        }
        p.text = whole
        p.align = align
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

    func normalize(aligned p: inout TextPiece) { normalizeEachScalar(&p) }
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

    func normalize(aligned p: inout TextPiece) {
        var lo = 0, hi = p.text.count
        if left { while lo < hi && p.text[lo].properties.isWhitespace { lo += 1 } }
        if right { while hi > lo && p.text[hi - 1].properties.isWhitespace { hi -= 1 } }
        let atStart = p.atStart
        p = p.slice(lo..<hi)
        p.atStart = atStart
    }
}

/// Prepends a string to non-empty text.
struct PrependNormalizer: TextNormalizer {
    let prefix: [Unicode.Scalar]

    func normalize(_ s: [Unicode.Scalar]) -> [Unicode.Scalar] {
        s.isEmpty ? s : prefix + s
    }

    func normalize(aligned p: inout TextPiece) { if !p.text.isEmpty { p.prepend(prefix) } }
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

    /// A match's replacement stands for the match's last scalar (the library removes the match,
    /// then inserts the content after it).
    func normalize(aligned p: inout TextPiece) {
        guard let a = p.align else { p.text = normalize(p.text); return }
        var text: [Unicode.Scalar] = [], align: [Range<Int>] = []
        for (r, isMatch) in coveringMatches(pattern, p.text) {
            if !isMatch {
                text += p.text[r]
                align += a[r]
            } else if !content.isEmpty {
                let at = r.isEmpty ? (r.lowerBound > 0 ? a[r.lowerBound - 1] : (a.first.map { $0.lowerBound..<$0.lowerBound } ?? 0..<0))
                                   : a[r.upperBound - 1]
                text += content
                align += repeatElement(at, count: content.count)
            }
        }
        p.text = text
        p.align = align
    }
}

/// The ByteLevel normalizer: UTF-8 bytes to the GPT-2 byte alphabet.
struct ByteLevelNormalizer: TextNormalizer {
    func normalize(_ s: [Unicode.Scalar]) -> [Unicode.Scalar] { byteLevelEncode(s) }
    func normalize(aligned p: inout TextPiece) { p = p.byteLevel(0..<p.text.count) }
}

struct SequenceNormalizer: TextNormalizer {
    let steps: [TextNormalizer]

    func normalize(_ s: [Unicode.Scalar]) -> [Unicode.Scalar] {
        var t = s
        for n in steps { t = n.normalize(t) }
        return t
    }

    func normalize(aligned p: inout TextPiece) { for n in steps { n.normalize(aligned: &p) } }
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
