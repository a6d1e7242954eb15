// Text escaping shared by the JSON writer, the YAML writer, Jinja's `escape`
// filter and the SVG plot.

public enum Escaping {
    /// A double-quoted string body as JSON (and YAML's double-quoted style) spells it:
    /// `"` `\` and control characters escaped (\n \r \t \b \f, else \u00XX, lowercase
    /// hex as Python writes it); non-ASCII as \uXXXX (surrogate pairs) only when `ensureASCII`.
    public static func appendQuoted(_ s: String, to out: inout String, ensureASCII: Bool = false) {
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
                    out += hex4(u.value)
                } else if ensureASCII && u.value > 0x7E {
                    if u.value >= 0x10000 {
                        let v = u.value - 0x10000
                        out += hex4(0xD800 + (v >> 10)) + hex4(0xDC00 + (v & 0x3FF))
                    } else {
                        out += hex4(u.value)
                    }
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        out += "\""
    }

    /// `\uXXXX` with lowercase hex.
    static func hex4(_ v: UInt32) -> String {
        let h = String(v, radix: 16)
        return "\\u" + String(repeating: "0", count: max(0, 4 - h.count)) + h
    }

    /// HTML/XML text as markupsafe escapes it: & < > " ' → &amp; &lt; &gt; &#34; &#39;.
    public static func html(_ s: String) -> String {
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&#34;"
            case "'": out += "&#39;"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }
}
