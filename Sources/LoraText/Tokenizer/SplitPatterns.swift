import Foundation
import LoraBase

// Patterns that split text, working on arrays of Unicode scalars (the unit the
// Rust library's regexes step by), never on Swift Characters (graphemes).
//
// The GPT-2, Llama-3 and Qwen2 split regexes get hand-written matchers that
// reproduce the regex engine's ordered alternation and backtracking exactly;
// any other regex goes through Swift Regex with Unicode-scalar semantics.

/// Scalar classes of the split regexes: \p{L}, \p{N}, \s (White_Space), or none.
enum ScalarClass: UInt8 {
    case other = 0, letter = 1, number = 2, space = 3
}

private let asciiClasses: [ScalarClass] = (0..<128).map { b -> ScalarClass in
    switch b {
    case 0x09...0x0D, 0x20: return .space
    case 0x30...0x39: return .number
    case 0x41...0x5A, 0x61...0x7A: return .letter
    default: return .other
    }
}

@inline(__always)
func scalarClass(_ s: Unicode.Scalar) -> ScalarClass {
    let v = s.value
    if v < 128 { return asciiClasses[Int(v)] }
    let p = s.properties
    if p.isWhitespace { return .space }
    switch p.generalCategory {
    case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return .letter
    case .decimalNumber, .letterNumber, .otherNumber: return .number
    default: return .other
    }
}

/// Rust regex `\w` (Unicode): Alphabetic, marks, decimal digits, connector punctuation, Join_Control.
func isWordScalar(_ s: Unicode.Scalar) -> Bool {
    let v = s.value
    if v < 128 {
        return (v >= 0x30 && v <= 0x39) || (v >= 0x41 && v <= 0x5A) || (v >= 0x61 && v <= 0x7A) || v == 0x5F
    }
    if v == 0x200C || v == 0x200D { return true }
    let p = s.properties
    if p.isAlphabetic { return true }
    switch p.generalCategory {
    case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
    default: return false
    }
}

/// Something that finds non-overlapping matches, left to right, in a scalar array.
protocol ScalarPattern {
    /// Matches as ranges of scalar offsets, in order, non-overlapping.
    func matches(in s: [Unicode.Scalar]) -> [Range<Int>]
}

extension ScalarPattern {
    /// The library's `find_matches`: the whole input covered by (range, isMatch) pieces.
    func findMatches(in s: [Unicode.Scalar]) -> [(Range<Int>, Bool)] {
        if s.isEmpty { return [(0..<0, false)] }
        var out: [(Range<Int>, Bool)] = []
        var prev = 0
        for m in matches(in: s) {
            if prev != m.lowerBound { out.append((prev..<m.lowerBound, false)) }
            out.append((m, true))
            prev = m.upperBound
        }
        if prev != s.count { out.append((prev..<s.count, false)) }
        return out
    }
}

/// One of the regexes real tokenizers use, matched by hand.
struct KnownRegexPattern: ScalarPattern {
    enum Kind { case gpt2, llama3, qwen2 }
    let kind: Kind

    static let gpt2Source = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    static let llama3Source =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let qwen2Source =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    init?(source: String) {
        if source == Self.gpt2Source { kind = .gpt2 }
        else if source == Self.llama3Source { kind = .llama3 }
        else if source == Self.qwen2Source { kind = .qwen2 }
        else { return nil }
    }

    init(kind: Kind) { self.kind = kind }

    func matches(in s: [Unicode.Scalar]) -> [Range<Int>] {
        var out: [Range<Int>] = []
        out.reserveCapacity(s.count / 3 + 1)
        var i = 0
        let n = s.count
        while i < n {
            let e: Int
            switch kind {
            case .gpt2: e = gpt2End(s, i, n)
            case .llama3: e = llamaEnd(s, i, n, maxDigits: 3)
            case .qwen2: e = llamaEnd(s, i, n, maxDigits: 1)
            }
            out.append(i..<e)
            i = e
        }
        return out
    }

    /// End of the contraction at `i` ('s 't 're 've 'm 'll 'd), or nil.
    @inline(__always)
    private func contractionEnd(_ s: [Unicode.Scalar], _ i: Int, _ n: Int, caseInsensitive: Bool) -> Int? {
        guard s[i] == "'", i + 1 < n else { return nil }
        func low(_ c: Unicode.Scalar) -> UInt32 {
            guard caseInsensitive else { return c.value }
            let v = c.value
            if v >= 0x41 && v <= 0x5A { return v + 32 }
            if v == 0x17F { return 0x73 }  // ſ folds to s
            return v
        }
        let a = low(s[i + 1])
        if a == 0x73 || a == 0x74 || a == 0x6D || a == 0x64 { return i + 2 }  // s t m d
        if i + 2 < n {
            let b = low(s[i + 2])
            if (a == 0x72 && b == 0x65) || (a == 0x76 && b == 0x65) || (a == 0x6C && b == 0x6C) { return i + 3 }  // re ve ll
        }
        return nil
    }

    /// End of a `\s+(?!\S)|\s+` match of the whitespace run starting at `i`.
    @inline(__always)
    private func spaceEnd(_ s: [Unicode.Scalar], _ i: Int, _ n: Int) -> Int {
        var e = i + 1
        while e < n && scalarClass(s[e]) == .space { e += 1 }
        if e == n { return e }
        if e - i >= 2 { return e - 1 }
        return e
    }

    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    private func gpt2End(_ s: [Unicode.Scalar], _ i: Int, _ n: Int) -> Int {
        if let e = contractionEnd(s, i, n, caseInsensitive: false) { return e }
        var j = i
        if s[i] == " " && i + 1 < n && scalarClass(s[i + 1]) != .space { j = i + 1 }
        let k = scalarClass(s[j])
        if j > i || k != .space {
            var e = j + 1
            while e < n && scalarClass(s[e]) == k { e += 1 }
            return e
        }
        return spaceEnd(s, i, n)
    }

    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,D}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    private func llamaEnd(_ s: [Unicode.Scalar], _ i: Int, _ n: Int, maxDigits: Int) -> Int {
        if let e = contractionEnd(s, i, n, caseInsensitive: true) { return e }
        let c = s[i]
        let k = scalarClass(c)
        // [^\r\n\p{L}\p{N}]?\p{L}+
        var letterStart = -1
        if k == .letter { letterStart = i }
        else if k != .number && c != "\r" && c != "\n" && i + 1 < n && scalarClass(s[i + 1]) == .letter { letterStart = i + 1 }
        if letterStart >= 0 {
            var e = letterStart + 1
            while e < n && scalarClass(s[e]) == .letter { e += 1 }
            return e
        }
        // \p{N}{1,D}
        if k == .number {
            var e = i + 1
            while e < n && e - i < maxDigits && scalarClass(s[e]) == .number { e += 1 }
            return e
        }
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
        var j = i
        if c == " " && i + 1 < n && scalarClass(s[i + 1]) == .other { j = i + 1 }
        if scalarClass(s[j]) == .other {
            var e = j + 1
            while e < n && scalarClass(s[e]) == .other { e += 1 }
            while e < n && (s[e] == "\r" || s[e] == "\n") { e += 1 }
            return e
        }
        // Whitespace at i. `\s*[\r\n]+`: up to the last \r or \n of the run.
        var e = i + 1
        while e < n && scalarClass(s[e]) == .space { e += 1 }
        var t = e - 1
        while t >= i {
            if s[t] == "\r" || s[t] == "\n" { return t + 1 }
            t -= 1
        }
        // `\s+(?!\S)|\s+`
        if e == n { return e }
        if e - i >= 2 { return e - 1 }
        return e
    }
}

/// A literal string (the library escapes it into a regex).
struct LiteralPattern: ScalarPattern {
    let needle: [Unicode.Scalar]

    func matches(in s: [Unicode.Scalar]) -> [Range<Int>] {
        let m = needle.count
        guard m > 0, s.count >= m else { return [] }
        var out: [Range<Int>] = []
        let first = needle[0]
        var i = 0
        while i + m <= s.count {
            if s[i] == first {
                var ok = true
                var k = 1
                while k < m { if s[i + k] != needle[k] { ok = false; break }; k += 1 }
                if ok { out.append(i..<i + m); i += m; continue }
            }
            i += 1
        }
        return out
    }

    /// An empty literal matches nothing: one non-match piece over everything.
    func findMatchesLiteral(in s: [Unicode.Scalar]) -> [(Range<Int>, Bool)] {
        if needle.isEmpty { return [(0..<s.count, false)] }
        return findMatches(in: s)
    }
}

/// Each scalar satisfying a predicate is a match of its own.
struct PredicatePattern: ScalarPattern {
    let test: (Unicode.Scalar) -> Bool

    func matches(in s: [Unicode.Scalar]) -> [Range<Int>] {
        var out: [Range<Int>] = []
        for (i, c) in s.enumerated() where test(c) { out.append(i..<i + 1) }
        return out
    }
}

/// Any other regex, through Swift Regex with Unicode-scalar semantics.
struct GeneralRegexPattern: ScalarPattern {
    let regex: Regex<AnyRegexOutput>

    init(source: String, context: String) throws {
        do {
            regex = try Regex(Self.codePointRanges(Self.scriptProperties(source))).matchingSemantics(.unicodeScalar)
        } catch {
            throw TokenizerError("\(context): cannot compile the regex \(source.debugDescription): \(error)")
        }
    }

    /// Oniguruma reads a bare `\p{Han}` as the Script property; Swift Regex as
    /// Script_Extensions (which puts "。" in Han). Bare names that are scripts
    /// become `\p{Script=Name}`; general categories and binary properties stay.
    static func scriptProperties(_ source: String) -> String {
        let chars = Array(source.unicodeScalars)
        var out = String.UnicodeScalarView()
        var i = 0
        while i < chars.count {
            let c = chars[i]
            if c == "\\", i + 1 < chars.count {
                let d = chars[i + 1]
                if (d == "p" || d == "P"), i + 2 < chars.count, chars[i + 2] == "{",
                   let close = chars[(i + 3)...].firstIndex(of: "}") {
                    let name = scalarsToString(Array(chars[(i + 3)..<close]))
                    if !name.contains("=") && !name.contains(":") && name.count > 2,
                       (try? Regex("\\p{Script=\(name)}")) != nil {
                        out.append(contentsOf: "\\\(d){Script=\(name)}".unicodeScalars)
                    } else {
                        out.append(contentsOf: chars[i...close])
                    }
                    i = close + 1
                    continue
                }
                out.append(c)
                out.append(d)
                i += 2
                continue
            }
            out.append(c)
            i += 1
        }
        return String(out)
    }

    /// Oniguruma orders a class range's ends by code point; Swift Regex compares them as Characters,
    /// canonically, so an end that NFC changes (a singleton: U+1F7D ώ → U+03CE, U+212A K → K) is
    /// refused ("must compare less than or equal") or misplaced. Such a range is rewritten as the
    /// same code points: runs of NFC-stable scalars as ranges, each unstable one on its own, all as
    /// `\x{…}`. Ranges with stable ends are left as written. (DeepSeek LLM's letter class has Ὗ-ώ.)
    static func codePointRanges(_ source: String) -> String {
        let c = Array(source.unicodeScalars)
        func stable(_ s: Unicode.Scalar) -> Bool {
            String(String.UnicodeScalarView([s])).precomposedStringWithCanonicalMapping.unicodeScalars.elementsEqual([s])
        }
        func isLiteral(_ s: Unicode.Scalar) -> Bool { s != "\\" && s != "[" && s != "]" && s != "-" }
        var out = String.UnicodeScalarView()
        var inClass = false
        var i = 0
        while i < c.count {
            let x = c[i]
            if x == "\\", i + 1 < c.count {
                out.append(x); out.append(c[i + 1]); i += 2; continue
            }
            if !inClass {
                if x == "[" { inClass = true }
                out.append(x); i += 1; continue
            }
            if x == "]" { inClass = false; out.append(x); i += 1; continue }
            if i + 2 < c.count, c[i + 1] == "-", isLiteral(x), isLiteral(c[i + 2]), x.value <= c[i + 2].value,
               !stable(x) || !stable(c[i + 2]) {
                var v = x.value
                let end = c[i + 2].value
                func hex(_ u: UInt32) -> String { "\\x{" + String(u, radix: 16, uppercase: true) + "}" }
                while v <= end {
                    guard let s = Unicode.Scalar(v), stable(s) else {
                        if Unicode.Scalar(v) != nil { out.append(contentsOf: hex(v).unicodeScalars) }
                        v += 1
                        continue
                    }
                    var w = v
                    while w < end, let n = Unicode.Scalar(w + 1), stable(n) { w += 1 }
                    out.append(contentsOf: (w == v ? hex(v) : hex(v) + "-" + hex(w)).unicodeScalars)
                    v = w + 1
                }
                i += 3
                continue
            }
            out.append(x)
            i += 1
        }
        return String(out)
    }

    func matches(in s: [Unicode.Scalar]) -> [Range<Int>] {
        var view = String.UnicodeScalarView()
        view.append(contentsOf: s)
        let text = String(view)
        let scalars = text.unicodeScalars
        var out: [Range<Int>] = []
        var lastIndex = scalars.startIndex
        var lastOffset = 0
        for m in text.matches(of: regex) {
            let lo = lastOffset + scalars.distance(from: lastIndex, to: m.range.lowerBound)
            let hi = lo + scalars.distance(from: m.range.lowerBound, to: m.range.upperBound)
            out.append(lo..<hi)
            lastIndex = m.range.upperBound
            lastOffset = hi
        }
        return out
    }
}

/// A regex or literal from tokenizer.json ({"String": ...} or {"Regex": ...}).
func makePattern(_ json: JSONValue?, context: String) throws -> ScalarPattern {
    guard let json = json else { throw TokenizerError("\(context) is missing") }
    if let s = json["String"]?.string {
        return LiteralPattern(needle: Array(s.unicodeScalars))
    }
    if let r = json["Regex"]?.string {
        if let known = KnownRegexPattern(source: r) { return known }
        return try GeneralRegexPattern(source: r, context: context)
    }
    throw TokenizerError("\(context) must be {\"String\": ...} or {\"Regex\": ...}")
}

/// The library's `find_matches` for a pattern, with the empty-literal special case.
func coveringMatches(_ p: ScalarPattern, _ s: [Unicode.Scalar]) -> [(Range<Int>, Bool)] {
    if let lit = p as? LiteralPattern { return lit.findMatchesLiteral(in: s) }
    return p.findMatches(in: s)
}

/// How a split treats the matched delimiters.
enum SplitBehavior {
    case removed, isolated, mergedWithPrevious, mergedWithNext, contiguous

    init(name: String, context: String) throws {
        switch name {
        case "Removed": self = .removed
        case "Isolated": self = .isolated
        case "MergedWithPrevious": self = .mergedWithPrevious
        case "MergedWithNext": self = .mergedWithNext
        case "Contiguous": self = .contiguous
        default: throw TokenizerError("\(context) '\(name)' is not a known split behavior")
        }
    }

    /// The library's NormalizedString::split: ranges to keep, in order (may be empty ones).
    func apply(_ matches: [(Range<Int>, Bool)]) -> [Range<Int>] {
        switch self {
        case .isolated:
            return matches.map { $0.0 }
        case .removed:
            return matches.filter { !$0.1 }.map { $0.0 }
        case .contiguous:
            var acc: [Range<Int>] = []
            var previous = false
            for (r, isMatch) in matches {
                if isMatch == previous, let last = acc.last {
                    acc[acc.count - 1] = last.lowerBound..<r.upperBound
                } else {
                    acc.append(r)
                }
                previous = isMatch
            }
            return acc
        case .mergedWithPrevious:
            var acc: [Range<Int>] = []
            var previous = false
            for (r, isMatch) in matches {
                if isMatch && !previous, let last = acc.last {
                    acc[acc.count - 1] = last.lowerBound..<r.upperBound
                } else {
                    acc.append(r)
                }
                previous = isMatch
            }
            return acc
        case .mergedWithNext:
            var acc: [Range<Int>] = []
            var previous = false
            for (r, isMatch) in matches.reversed() {
                if isMatch && !previous, let last = acc.last {
                    acc[acc.count - 1] = r.lowerBound..<last.upperBound
                } else {
                    acc.append(r)
                }
                previous = isMatch
            }
            return acc.reversed()
        }
    }
}
