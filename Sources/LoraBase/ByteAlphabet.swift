// GPT-2's byte alphabet (`bytes_to_unicode` of the byte-level BPE tokenizers):
// the printable bytes 0x21–0x7E, 0xA1–0xAC and 0xAE–0xFF stand for themselves,
// the other 68 for U+0100 + n, n counting them in byte order. Byte-level
// vocabularies spell every token in it.

public enum ByteAlphabet {
    /// byte → its scalar.
    public static let scalars: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        var n: UInt32 = 0
        for b in 0..<256 {
            if (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b) {
                table[b] = Unicode.Scalar(UInt8(b))
            } else {
                table[b] = Unicode.Scalar(256 + n)!
                n += 1
            }
        }
        return table
    }()

    /// scalar value (< 512) → its byte; -1 where the scalar is not in the alphabet.
    public static let bytes: [Int16] = {
        var table = [Int16](repeating: -1, count: 512)
        for (b, s) in scalars.enumerated() { table[Int(s.value)] = Int16(b) }
        return table
    }()

    /// Whether every scalar of `s` is in the alphabet (the text is already spelled in it).
    public static func isSpelled(_ s: String) -> Bool {
        s.unicodeScalars.allSatisfy { $0.value < 512 && bytes[Int($0.value)] >= 0 }
    }

    /// The UTF-8 bytes of `s`, each spelled as its alphabet scalar.
    public static func spell(_ s: String) -> String {
        var out = String.UnicodeScalarView()
        for b in s.utf8 { out.append(scalars[Int(b)]) }
        return String(out)
    }
}
