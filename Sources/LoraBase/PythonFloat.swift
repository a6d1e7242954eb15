// Python's text forms of floats, so that JSON and rendered templates print
// exactly what Python prints.

public enum PythonFloat {
    /// repr(float): shortest round-trip digits; fixed notation when -4 < exponent10 <= 16, else 'e'.
    public static func repr(_ d: Double) -> String {
        if d.isNaN { return "nan" }
        if d.isInfinite { return d < 0 ? "-inf" : "inf" }
        if d == 0 { return d.sign == .minus ? "-0.0" : "0.0" }
        let (negative, digits, decpt) = shortestDigits(d)
        var s = negative ? "-" : ""
        if decpt > -4 && decpt <= 16 {
            if decpt <= 0 {
                s += "0." + String(repeating: "0", count: -decpt) + digits
            } else if decpt >= digits.count {
                s += digits + String(repeating: "0", count: decpt - digits.count) + ".0"
            } else {
                let i = digits.index(digits.startIndex, offsetBy: decpt)
                s += digits[..<i] + "." + digits[i...]
            }
        } else {
            let exp = decpt - 1
            s += String(digits.first!)
            if digits.count > 1 { s += "." + digits.dropFirst() }
            s += "e" + (exp < 0 ? "-" : "+") + (abs(exp) < 10 ? "0" : "") + String(abs(exp))
        }
        return s
    }

    /// json.dumps float form: repr, with NaN / Infinity / -Infinity.
    public static func json(_ d: Double) -> String {
        if d.isNaN { return "NaN" }
        if d.isInfinite { return d < 0 ? "-Infinity" : "Infinity" }
        return repr(d)
    }

    /// Digits (no leading/trailing zeros) and decimal point position: |d| = 0.DIGITS × 10^decpt.
    /// Swift's description is already the shortest round-trip form; only its layout differs.
    static func shortestDigits(_ d: Double) -> (Bool, String, Int) {
        var text = "\(abs(d))"
        var exp = 0
        if let e = text.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            exp = Int(text[text.index(after: e)...]) ?? 0
            text = String(text[..<e])
        }
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        let intPart = String(parts[0])
        let fracPart = parts.count > 1 ? String(parts[1]) : ""
        var digits = intPart + fracPart
        var decpt = intPart.count + exp
        while digits.hasPrefix("0") {
            digits.removeFirst()
            decpt -= 1
        }
        while digits.hasSuffix("0") { digits.removeLast() }
        if digits.isEmpty { digits = "0" }
        return (d < 0, digits, decpt)
    }
}
