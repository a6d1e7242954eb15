import Foundation

// Tokenizer for Jinja2 templates, configured as transformers configures its environment:
// trim_blocks=True (a newline right after a block or comment tag is dropped), lstrip_blocks=True
// (spaces and tabs from the start of a line up to a block or comment tag are dropped), `-`/`+`
// whitespace control on every tag, {% raw %} blocks, newlines normalized to "\n", and one trailing
// newline of the template removed (keep_trailing_newline=False).

struct SrcLoc: Equatable {
    var line: Int
    var column: Int
}

struct TemplateSyntaxError: Error {
    var loc: SrcLoc
    var message: String
}

enum TokKind: Equatable {
    case text(String)
    case variableBegin
    case variableEnd
    case blockBegin
    case blockEnd
    case name(String)
    case string(String)
    case int(Int)
    case float(Double)
    case op(String)
    case eof
}

struct Token {
    var kind: TokKind
    var loc: SrcLoc
}

struct Lexer {
    /// Deepest bracket nesting accepted inside one tag (keeps the recursive parser's stack bounded).
    static let maxNesting = 100
    let src: [Unicode.Scalar]
    var pos = 0
    var tokens: [Token] = []
    /// Line-start offsets, for turning a position into line/column.
    var lineStarts: [Int] = [0]

    init(source: String) {
        // Normalize \r\n and \r to \n, and drop one trailing newline.
        var scalars: [Unicode.Scalar] = []
        scalars.reserveCapacity(source.unicodeScalars.count)
        let it = Array(source.unicodeScalars)
        var i = 0
        while i < it.count {
            let u = it[i]
            if u == "\r" {
                scalars.append("\n")
                if i + 1 < it.count && it[i + 1] == "\n" { i += 1 }
            } else {
                scalars.append(u)
            }
            i += 1
        }
        if scalars.last == "\n" { scalars.removeLast() }
        src = scalars
        for (j, u) in src.enumerated() where u == "\n" { lineStarts.append(j + 1) }
    }

    func loc(_ p: Int) -> SrcLoc {
        // Binary search for the last line start <= p.
        var lo = 0
        var hi = lineStarts.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if lineStarts[mid] <= p { lo = mid } else { hi = mid - 1 }
        }
        return SrcLoc(line: lo + 1, column: p - lineStarts[lo] + 1)
    }

    func at(_ p: Int, _ s: String) -> Bool {
        var q = p
        for u in s.unicodeScalars {
            guard q < src.count, src[q] == u else { return false }
            q += 1
        }
        return true
    }

    func isWS(_ p: Int) -> Bool { p < src.count && PyFormat.isSpace(src[p]) }

    func text(_ a: Int, _ b: Int) -> String {
        var v = String.UnicodeScalarView()
        v.append(contentsOf: src[a..<b])
        return String(v)
    }

    mutating func emitText(_ a: Int, _ b: Int, sign: Unicode.Scalar?, lstrip: Bool, lineStarting: Bool) {
        var end = b
        if sign == "-" {
            while end > a && PyFormat.isSpace(src[end - 1]) { end -= 1 }
        } else if sign != "+" && lstrip {
            // Start of the text after its last newline.
            var l = b
            while l > a && src[l - 1] != "\n" { l -= 1 }
            if l > a || lineStarting {
                if l < b && (l..<b).allSatisfy({ PyFormat.isSpace(src[$0]) }) { end = l }
            }
        }
        if end > a { tokens.append(Token(kind: .text(text(a, end)), loc: loc(a))) }
    }

    /// Matches `{%[-+]?\s*word\s*` then one of `+%}`, `-%}\s*`, `%}\n?` (the last when `trim`) at p.
    /// Returns (sign before the word, end position) or nil.
    func matchSimpleBlock(_ p: Int, word: String, trim: Bool) -> (Unicode.Scalar?, Int)? {
        guard at(p, "{%") else { return nil }
        var q = p + 2
        var sign: Unicode.Scalar?
        if q < src.count, src[q] == "-" || src[q] == "+" {
            sign = src[q]
            q += 1
        }
        while isWS(q) { q += 1 }
        guard at(q, word) else { return nil }
        q += word.unicodeScalars.count
        while isWS(q) { q += 1 }
        if at(q, "+%}") { return (sign, q + 3) }
        if at(q, "-%}") {
            q += 3
            while isWS(q) { q += 1 }
            return (sign, q)
        }
        if at(q, "%}") {
            q += 2
            if trim && q < src.count && src[q] == "\n" { q += 1 }
            return (sign, q)
        }
        // The word must be followed by the tag end (so `rawx` is not `raw`).
        return nil
    }

    static func tokenize(_ source: String) throws -> (tokens: [Token], lexer: Lexer) {
        var lx = Lexer(source: source)
        try lx.run()
        return (lx.tokens, lx)
    }

    mutating func run() throws {
        var lineStarting = true
        while pos < src.count {
            // Find the next tag opener.
            var p = pos
            var found = -1
            while p + 1 < src.count {
                if src[p] == "{" && (src[p + 1] == "{" || src[p + 1] == "%" || src[p + 1] == "#") {
                    found = p
                    break
                }
                p += 1
            }
            if found < 0 {
                tokens.append(Token(kind: .text(text(pos, src.count)), loc: loc(pos)))
                pos = src.count
                break
            }
            let kindChar = src[found + 1]
            var sign: Unicode.Scalar?
            if found + 2 < src.count, src[found + 2] == "-" || src[found + 2] == "+" { sign = src[found + 2] }

            // {% raw %} ... {% endraw %}
            if kindChar == "%", let (rawSign, rawEnd) = matchSimpleBlock(found, word: "raw", trim: false) {
                emitText(pos, found, sign: rawSign, lstrip: true, lineStarting: lineStarting)
                let rawStartLine = src[rawEnd - 1] == "\n"
                var q = rawEnd
                var endMatch: (Unicode.Scalar?, Int)?
                var endAt = -1
                while q < src.count {
                    if src[q] == "{", let m = matchSimpleBlock(q, word: "endraw", trim: true) {
                        endMatch = m
                        endAt = q
                        break
                    }
                    q += 1
                }
                guard let (endSign, endEnd) = endMatch else {
                    throw TemplateSyntaxError(loc: loc(found), message: "missing end of raw directive")
                }
                emitText(rawEnd, endAt, sign: endSign, lstrip: true, lineStarting: rawStartLine)
                pos = endEnd
                lineStarting = src[endEnd - 1] == "\n"
                continue
            }

            emitText(pos, found, sign: sign, lstrip: kindChar != "{", lineStarting: lineStarting)
            var q = found + 2 + (sign == nil ? 0 : 1)

            if kindChar == "#" {
                // Comment: the first `#}` ends it; `-#}` eats following whitespace, `#}` one newline.
                let bodyStart = q
                var end = -1
                while q + 1 < src.count {
                    if src[q] == "#" && src[q + 1] == "}" { end = q; break }
                    q += 1
                }
                guard end >= 0 else { throw TemplateSyntaxError(loc: loc(found), message: "missing end of comment tag") }
                var after = end + 2
                if end > bodyStart && src[end - 1] == "-" {
                    while isWS(after) { after += 1 }
                } else if end > bodyStart && src[end - 1] == "+" {
                    // keep
                } else if after < src.count && src[after] == "\n" {
                    after += 1
                }
                pos = after
                lineStarting = src[after - 1] == "\n"
                continue
            }

            let isBlock = kindChar == "%"
            tokens.append(Token(kind: isBlock ? .blockBegin : .variableBegin, loc: loc(found)))
            pos = q
            try lexTagBody(isBlock: isBlock, open: found)
            lineStarting = src[pos - 1] == "\n"
        }
        tokens.append(Token(kind: .eof, loc: loc(src.count)))
    }

    /// Expression tokens up to the end of a `{{ }}` or `{% %}` tag; ends only with brackets balanced.
    mutating func lexTagBody(isBlock: Bool, open: Int) throws {
        var balance: [Unicode.Scalar] = []
        while true {
            guard pos < src.count else {
                throw TemplateSyntaxError(
                    loc: loc(open), message: isBlock ? "unexpected end of template, expected '%}'" : "unexpected end of template, expected '}}'")
            }
            if balance.isEmpty {
                if isBlock {
                    if at(pos, "+%}") {
                        tokens.append(Token(kind: .blockEnd, loc: loc(pos)))
                        pos += 3
                        return
                    }
                    if at(pos, "-%}") {
                        tokens.append(Token(kind: .blockEnd, loc: loc(pos)))
                        pos += 3
                        while isWS(pos) { pos += 1 }
                        return
                    }
                    if at(pos, "%}") {
                        tokens.append(Token(kind: .blockEnd, loc: loc(pos)))
                        pos += 2
                        if pos < src.count && src[pos] == "\n" { pos += 1 }
                        return
                    }
                } else {
                    if at(pos, "-}}") {
                        tokens.append(Token(kind: .variableEnd, loc: loc(pos)))
                        pos += 3
                        while isWS(pos) { pos += 1 }
                        return
                    }
                    if at(pos, "}}") {
                        tokens.append(Token(kind: .variableEnd, loc: loc(pos)))
                        pos += 2
                        return
                    }
                }
            }
            let u = src[pos]
            if PyFormat.isSpace(u) {
                pos += 1
                continue
            }
            let start = pos
            if isDigit(u) {
                tokens.append(Token(kind: lexNumber(), loc: loc(start)))
                continue
            }
            if isNameStart(u) {
                while pos < src.count && isNameChar(src[pos]) { pos += 1 }
                tokens.append(Token(kind: .name(text(start, pos)), loc: loc(start)))
                continue
            }
            if u == "'" || u == "\"" {
                tokens.append(Token(kind: .string(try lexString(quote: u)), loc: loc(start)))
                continue
            }
            for op in ["//", "**", "==", "!=", ">=", "<="] where at(pos, op) {
                tokens.append(Token(kind: .op(op), loc: loc(start)))
                pos += 2
                break
            }
            if pos != start { continue }
            guard "+-/*%~[](){}><=.:|,;".unicodeScalars.contains(u) else {
                throw TemplateSyntaxError(loc: loc(start), message: "unexpected char '\(Character(u))'")
            }
            if balance.count >= Lexer.maxNesting && (u == "(" || u == "[" || u == "{") {
                throw TemplateSyntaxError(loc: loc(start), message: "brackets nested deeper than \(Lexer.maxNesting) levels")
            }
            switch u {
            case "(": balance.append(")")
            case "[": balance.append("]")
            case "{": balance.append("}")
            case ")", "]", "}":
                guard let want = balance.popLast() else {
                    throw TemplateSyntaxError(loc: loc(start), message: "unexpected '\(Character(u))'")
                }
                if want != u {
                    throw TemplateSyntaxError(loc: loc(start), message: "unexpected '\(Character(u))', expected '\(Character(want))'")
                }
            default: break
            }
            tokens.append(Token(kind: .op(String(Character(u))), loc: loc(start)))
            pos += 1
        }
    }

    func isDigit(_ u: Unicode.Scalar) -> Bool { u.value >= 0x30 && u.value <= 0x39 }
    func isNameStart(_ u: Unicode.Scalar) -> Bool {
        u == "_" || (u.value < 0x80 ? u.properties.isAlphabetic : u.properties.isXIDStart)
    }
    func isNameChar(_ u: Unicode.Scalar) -> Bool {
        u == "_" || isDigit(u) || (u.value < 0x80 ? u.properties.isAlphabetic : u.properties.isXIDContinue)
    }

    /// Integer or float literal (digits with optional `_` separators; `1.` is int 1 then '.').
    mutating func lexNumber() -> TokKind {
        let start = pos
        func digits() {
            while pos < src.count && (isDigit(src[pos]) || (src[pos] == "_" && pos + 1 < src.count && isDigit(src[pos + 1]))) {
                pos += 1
            }
        }
        digits()
        var isFloat = false
        // A float may not follow a '.', so `x.0.1` is x . 0 . 1.
        let afterDot = start > 0 && src[start - 1] == "."
        if !afterDot && pos + 1 < src.count && src[pos] == "." && isDigit(src[pos + 1]) {
            isFloat = true
            pos += 1
            digits()
        }
        if !afterDot && pos < src.count && (src[pos] == "e" || src[pos] == "E") {
            var q = pos + 1
            if q < src.count && (src[q] == "+" || src[q] == "-") { q += 1 }
            if q < src.count && isDigit(src[q]) {
                isFloat = true
                pos = q
                digits()
            }
        }
        let t = text(start, pos).replacingOccurrences(of: "_", with: "")
        if isFloat { return .float(Double(t) ?? 0) }
        if let i = Int(t) { return .int(i) }
        return .float(Double(t) ?? 0)
    }

    /// A quoted string with Python escapes (\n \t \\ \' \" \xhh \uXXXX \UXXXXXXXX, octal; unknown kept).
    mutating func lexString(quote: Unicode.Scalar) throws -> String {
        let start = pos
        pos += 1
        var out = String.UnicodeScalarView()
        while true {
            guard pos < src.count else { throw TemplateSyntaxError(loc: loc(start), message: "unterminated string") }
            let u = src[pos]
            if u == quote {
                pos += 1
                return String(out)
            }
            if u == "\\" && pos + 1 < src.count {
                let e = src[pos + 1]
                pos += 2
                switch e {
                case "n": out.append("\n")
                case "t": out.append("\t")
                case "r": out.append("\r")
                case "\\": out.append("\\")
                case "'": out.append("'")
                case "\"": out.append("\"")
                case "a": out.append("\u{07}")
                case "b": out.append("\u{08}")
                case "f": out.append("\u{0C}")
                case "v": out.append("\u{0B}")
                case "\n": break
                case "x", "u", "U":
                    let n = e == "x" ? 2 : (e == "u" ? 4 : 8)
                    guard pos + n <= src.count, let v = UInt32(text(pos, pos + n), radix: 16), let s = Unicode.Scalar(v) else {
                        throw TemplateSyntaxError(loc: loc(pos - 2), message: "invalid \\\(Character(e)) escape in string")
                    }
                    out.append(s)
                    pos += n
                case "0"..."7":
                    var v = e.value - 0x30
                    var k = 0
                    while k < 2 && pos < src.count && src[pos].value >= 0x30 && src[pos].value <= 0x37 {
                        v = v * 8 + src[pos].value - 0x30
                        pos += 1
                        k += 1
                    }
                    out.append(Unicode.Scalar(v)!)
                default:
                    out.append("\\")
                    out.append(e)
                }
                continue
            }
            out.append(u)
            pos += 1
        }
    }
}
