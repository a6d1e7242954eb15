import Foundation
import LoraBase

// Python's text forms of values: repr(float), repr(str), str.isspace, str.splitlines,
// used so that rendered templates print exactly what Jinja2 (running on Python) prints.
enum PyFormat {
    /// repr(float) (see PythonFloat).
    static func floatRepr(_ d: Double) -> String { PythonFloat.repr(d) }

    /// str.isspace for one code point (Unicode White_Space plus the ASCII separators 0x1C-0x1F).
    static func isSpace(_ u: Unicode.Scalar) -> Bool {
        if u.value >= 0x1C && u.value <= 0x1F { return true }
        return u.properties.isWhitespace
    }

    /// Python str.strip/lstrip/rstrip: `chars` nil means whitespace.
    static func strip(_ s: String, chars: String?, left: Bool, right: Bool) -> String {
        let set = chars.map { Set($0.unicodeScalars) }
        func drop(_ u: Unicode.Scalar) -> Bool { set.map { $0.contains(u) } ?? isSpace(u) }
        let us = Array(s.unicodeScalars)
        var lo = 0
        var hi = us.count
        if left { while lo < hi && drop(us[lo]) { lo += 1 } }
        if right { while hi > lo && drop(us[hi - 1]) { hi -= 1 } }
        var v = String.UnicodeScalarView()
        v.append(contentsOf: us[lo..<hi])
        return String(v)
    }

    static func isLineBreak(_ u: Unicode.Scalar) -> Bool {
        switch u.value {
        case 0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029: return true
        default: return false
        }
    }

    /// str.splitlines(keepends=False).
    static func splitlines(_ s: String) -> [String] {
        let us = Array(s.unicodeScalars)
        var lines: [String] = []
        var cur = String.UnicodeScalarView()
        var i = 0
        while i < us.count {
            let u = us[i]
            if isLineBreak(u) {
                lines.append(String(cur))
                cur = String.UnicodeScalarView()
                if u == "\r" && i + 1 < us.count && us[i + 1] == "\n" { i += 1 }
            } else {
                cur.append(u)
            }
            i += 1
        }
        if !cur.isEmpty { lines.append(String(cur)) }
        return lines
    }

    /// repr(str): single quotes unless the text has ' and no ", escapes for non-printables.
    static func stringRepr(_ s: String) -> String {
        let hasSingle = s.unicodeScalars.contains("'")
        let hasDouble = s.unicodeScalars.contains("\"")
        let q: Unicode.Scalar = (hasSingle && !hasDouble) ? "\"" : "'"
        var out = String.UnicodeScalarView()
        out.append(q)
        for u in s.unicodeScalars {
            switch u {
            case "\\": out.append(contentsOf: "\\\\".unicodeScalars)
            case "\n": out.append(contentsOf: "\\n".unicodeScalars)
            case "\r": out.append(contentsOf: "\\r".unicodeScalars)
            case "\t": out.append(contentsOf: "\\t".unicodeScalars)
            default:
                if u == q {
                    out.append("\\")
                    out.append(u)
                } else if isPrintable(u) {
                    out.append(u)
                } else if u.value < 0x100 {
                    out.append(contentsOf: String(format: "\\x%02x", u.value).unicodeScalars)
                } else if u.value < 0x10000 {
                    out.append(contentsOf: String(format: "\\u%04x", u.value).unicodeScalars)
                } else {
                    out.append(contentsOf: String(format: "\\U%08x", u.value).unicodeScalars)
                }
            }
        }
        out.append(q)
        return String(out)
    }

    /// str.isprintable for one code point: not Cc/Cf/Cs/Co/Cn/Zl/Zp, and Zs only for ' '.
    static func isPrintable(_ u: Unicode.Scalar) -> Bool {
        if u == " " { return true }
        switch u.properties.generalCategory {
        case .control, .format, .surrogate, .privateUse, .unassigned, .lineSeparator, .paragraphSeparator,
            .spaceSeparator:
            return false
        default:
            return true
        }
    }
}
