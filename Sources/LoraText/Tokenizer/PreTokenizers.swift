import Foundation
import LoraBase

/// One piece of the text on its way to the model.
struct TextPiece {
    var text: [Unicode.Scalar]
    /// The piece begins at offset 0 of the original text (Metaspace's "first" scheme).
    var atStart: Bool
    /// Per scalar of `text`, the UTF-8 byte range of the original text it stands for
    /// (`tokenizers`' alignments); only `encodeWithOffsets` tracks it, nil otherwise.
    var align: [Range<Int>]? = nil

    /// The scalars in `r` (a split).
    func slice(_ r: Range<Int>) -> TextPiece {
        TextPiece(text: Array(text[r]), atStart: atStart && r.lowerBound == 0, align: align.map { Array($0[r]) })
    }

    /// `prefix` put in front, standing for the first scalar's range (the library's `prepend`).
    mutating func prepend(_ prefix: [Unicode.Scalar]) {
        if var a = align, let first = a.first {
            a.insert(contentsOf: repeatElement(first, count: prefix.count), at: 0)
            align = a
        }
        text.insert(contentsOf: prefix, at: 0)
    }

    /// The scalars in `r` as GPT-2 byte-alphabet scalars, each byte standing for its scalar's range.
    func byteLevel(_ r: Range<Int>) -> TextPiece {
        TextPiece(text: byteLevelEncode(text[r]), atStart: atStart && r.lowerBound == 0,
                  align: align.map { byteLevelAlignment(text[r], $0[r]) })
    }
}

/// The alignment of `byteLevelEncode(s)`: each UTF-8 byte of a scalar gets that scalar's range.
func byteLevelAlignment(_ s: ArraySlice<Unicode.Scalar>, _ a: ArraySlice<Range<Int>>) -> [Range<Int>] {
    var out: [Range<Int>] = []
    out.reserveCapacity(s.count)
    for (c, r) in zip(s, a) { out.append(contentsOf: repeatElement(r, count: UTF8.width(c))) }
    return out
}

/// The GPT-2 byte alphabet (LoraBase.ByteAlphabet): byte → scalar, and scalar value (< 512) → byte or -1.
let byteToScalar = ByteAlphabet.scalars
let scalarToByte = ByteAlphabet.bytes

/// UTF-8 bytes of the scalars, each mapped to its byte-alphabet scalar.
func byteLevelEncode<S: Collection>(_ s: S) -> [Unicode.Scalar] where S.Element == Unicode.Scalar {
    var out: [Unicode.Scalar] = []
    out.reserveCapacity(s.count)
    for c in s {
        let v = c.value
        if v < 0x80 {
            out.append(byteToScalar[Int(v)])
        } else {
            for b in UTF8.encode(c)! { out.append(byteToScalar[Int(b)]) }
        }
    }
    return out
}

/// A pre-tokenizer splits pieces into smaller ones (and may rewrite them).
protocol PreTokenizer {
    func preTokenize(_ pieces: [TextPiece]) -> [TextPiece]
}

/// Splits every piece by `ranges`, dropping empty results (as PreTokenizedString::split does).
@inline(__always)
func appendSplits(_ piece: TextPiece, _ ranges: [Range<Int>], into out: inout [TextPiece]) {
    for r in ranges where !r.isEmpty { out.append(piece.slice(r)) }
}

struct SplitPreTokenizer: PreTokenizer {
    let pattern: ScalarPattern
    let behavior: SplitBehavior
    let invert: Bool

    func preTokenize(_ pieces: [TextPiece]) -> [TextPiece] {
        var out: [TextPiece] = []
        out.reserveCapacity(pieces.count * 4)
        for p in pieces {
            var m = coveringMatches(pattern, p.text)
            if invert { m = m.map { ($0.0, !$0.1) } }
            appendSplits(p, behavior.apply(m), into: &out)
        }
        return out
    }
}

/// Split(known regex, Isolated) then ByteLevel(use_regex: false, no prefix space),
/// fused: each regex match is byte-encoded straight into its piece (Qwen2, Llama-3).
struct KnownSplitByteLevelPreTokenizer: PreTokenizer {
    let pattern: KnownRegexPattern

    func preTokenize(_ pieces: [TextPiece]) -> [TextPiece] {
        var out: [TextPiece] = []
        for p in pieces {
            out.reserveCapacity(out.count + p.text.count / 3 + 1)
            for r in pattern.matches(in: p.text) where !r.isEmpty {
                out.append(p.byteLevel(r))
            }
        }
        return out
    }
}

struct ByteLevelPreTokenizer: PreTokenizer {
    let addPrefixSpace: Bool
    let useRegex: Bool
    private let regex = KnownRegexPattern(kind: .gpt2)

    init(addPrefixSpace: Bool, useRegex: Bool) {
        self.addPrefixSpace = addPrefixSpace
        self.useRegex = useRegex
    }

    func preTokenize(_ pieces: [TextPiece]) -> [TextPiece] {
        var out: [TextPiece] = []
        out.reserveCapacity(pieces.count * 4)
        for var p in pieces {
            if addPrefixSpace && p.text.first != " " { p.prepend([" "]) }
            if useRegex {
                for r in regex.matches(in: p.text) where !r.isEmpty { out.append(p.byteLevel(r)) }
            } else if !p.text.isEmpty {
                out.append(p.byteLevel(0..<p.text.count))
            }
        }
        return out
    }
}

struct MetaspacePreTokenizer: PreTokenizer {
    enum Scheme { case always, first, never }
    let replacement: Unicode.Scalar
    let scheme: Scheme
    let split: Bool

    func preTokenize(_ pieces: [TextPiece]) -> [TextPiece] {
        var out: [TextPiece] = []
        for var p in pieces {
            for i in p.text.indices where p.text[i] == " " { p.text[i] = replacement }
            switch scheme {
            case .always: if p.text.first != replacement { p.prepend([replacement]) }
            case .first: if p.text.first != replacement && p.atStart { p.prepend([replacement]) }
            case .never: break
            }
            if split {
                let m = PredicatePattern(test: { [replacement] in $0 == replacement }).findMatches(in: p.text)
                appendSplits(p, SplitBehavior.mergedWithNext.apply(m), into: &out)
            } else if !p.text.isEmpty {
                out.append(p)
            }
        }
        return out
    }
}

/// Digits: each number scalar alone, or runs of them.
struct DigitsPreTokenizer: PreTokenizer {
    let individual: Bool

    func preTokenize(_ pieces: [TextPiece]) -> [TextPiece] {
        var out: [TextPiece] = []
        let pattern = PredicatePattern(test: { scalarClass($0) == .number })
        for p in pieces {
            appendSplits(p, (individual ? SplitBehavior.isolated : .contiguous).apply(pattern.findMatches(in: p.text)),
                         into: &out)
        }
        return out
    }
}

/// Rust `char::is_ascii_punctuation() || is_punctuation()` (the P* categories).
func isPunctuationScalar(_ c: Unicode.Scalar) -> Bool {
    let v = c.value
    if v < 128 {
        return (v >= 0x21 && v <= 0x2F) || (v >= 0x3A && v <= 0x40) || (v >= 0x5B && v <= 0x60) || (v >= 0x7B && v <= 0x7E)
    }
    switch c.properties.generalCategory {
    case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation, .initialPunctuation,
         .finalPunctuation, .otherPunctuation:
        return true
    default:
        return false
    }
}

/// Splits by a scalar predicate with a behavior (WhitespaceSplit, Punctuation).
struct PredicateSplitPreTokenizer: PreTokenizer {
    let test: (Unicode.Scalar) -> Bool
    let behavior: SplitBehavior

    func preTokenize(_ pieces: [TextPiece]) -> [TextPiece] {
        var out: [TextPiece] = []
        let pattern = PredicatePattern(test: test)
        for p in pieces { appendSplits(p, behavior.apply(pattern.findMatches(in: p.text)), into: &out) }
        return out
    }
}

/// Whitespace: keeps the matches of `\w+|[^\w\s]+`, drops the rest.
struct WhitespacePreTokenizer: PreTokenizer {
    func preTokenize(_ pieces: [TextPiece]) -> [TextPiece] {
        var out: [TextPiece] = []
        for p in pieces {
            let s = p.text
            var i = 0
            while i < s.count {
                if s[i].properties.isWhitespace { i += 1; continue }
                let word = isWordScalar(s[i])
                var e = i + 1
                while e < s.count && isWordScalar(s[e]) == word && (word || !s[e].properties.isWhitespace) { e += 1 }
                out.append(p.slice(i..<e))
                i = e
            }
        }
        return out
    }
}

struct SequencePreTokenizer: PreTokenizer {
    let steps: [PreTokenizer]

    func preTokenize(_ pieces: [TextPiece]) -> [TextPiece] {
        var p = pieces
        for s in steps { p = s.preTokenize(p) }
        return p
    }
}

func makePreTokenizer(_ json: JSONValue, context: String) throws -> PreTokenizer? {
    guard let type = try componentType(json, context: context) else { return nil }
    switch type {
    case "ByteLevel":
        return ByteLevelPreTokenizer(addPrefixSpace: json["add_prefix_space"]?.bool ?? true,
                                     useRegex: json["use_regex"]?.bool ?? true)
    case "Split":
        guard let b = json["behavior"]?.string else { throw TokenizerError("\(context).behavior is missing") }
        return SplitPreTokenizer(pattern: try makePattern(json["pattern"], context: "\(context).pattern"),
                                 behavior: try SplitBehavior(name: b, context: "\(context).behavior"),
                                 invert: json["invert"]?.bool ?? false)
    case "Metaspace":
        let rep = json["replacement"]?.string ?? "▁"
        guard rep.unicodeScalars.count == 1, let r = rep.unicodeScalars.first else {
            throw TokenizerError("\(context).replacement must be one character")
        }
        var scheme = MetaspacePreTokenizer.Scheme.always
        switch json["prepend_scheme"]?.string {
        case nil, "always": scheme = .always
        case "first": scheme = .first
        case "never": scheme = .never
        case let other?: throw TokenizerError("\(context).prepend_scheme '\(other)' is not known")
        }
        if json["add_prefix_space"]?.bool == false { scheme = .never }
        return MetaspacePreTokenizer(replacement: r, scheme: scheme, split: json["split"]?.bool ?? true)
    case "WhitespaceSplit":
        return PredicateSplitPreTokenizer(test: { $0.properties.isWhitespace }, behavior: .removed)
    case "Whitespace":
        return WhitespacePreTokenizer()
    case "Punctuation":
        let b = try SplitBehavior(name: json["behavior"]?.string ?? "Isolated", context: "\(context).behavior")
        return PredicateSplitPreTokenizer(test: isPunctuationScalar, behavior: b)
    case "Digits":
        return DigitsPreTokenizer(individual: json["individual_digits"]?.bool ?? false)
    case "Sequence":
        let steps = try sequenceSteps(json, "pretokenizers", context: context, makePreTokenizer)
        if steps.count == 2, let split = steps[0] as? SplitPreTokenizer, let known = split.pattern as? KnownRegexPattern,
           split.behavior == .isolated, !split.invert, let bl = steps[1] as? ByteLevelPreTokenizer,
           !bl.addPrefixSpace, !bl.useRegex {
            return KnownSplitByteLevelPreTokenizer(pattern: known)
        }
        return SequencePreTokenizer(steps: steps)
    default:
        throw TokenizerError("\(context).type '\(type)' is not supported yet")
    }
}
