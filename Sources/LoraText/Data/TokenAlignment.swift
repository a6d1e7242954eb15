import Foundation

// Token byte offsets by alignment — a STOPGAP until the tokenizer reports offsets itself
// (Tokenizer.encodeWithOffsets, planned on the tokenizer's side).
//
// The ids of `encode(text, addSpecialTokens: false)` are laid back onto the text: each
// token's surface bytes (an added token's content; a byte-level token's bytes through the
// GPT-2 byte alphabet; otherwise "<0xNN>" → the byte, "▁" → a space) must continue the text
// at the cursor. A SentencePiece-style token whose leading space was prepended by the
// normalizer (Prepend("▁")) matches without it: its range starts where its text does, as
// the library's offsets do. Byte-fallback pieces of one character each get one byte of it
// (the library gives each the whole character; the start-inside mask rule decides the same,
// since spans never start inside a character). Texts are put in NFC first where the normalizer
// composes (alignableText). Another normalizer that rewrites the text (Lowercase, NFKC, …)
// cannot be aligned: that is an error naming the position.

public struct TokenAlignmentError: Error, CustomStringConvertible {
    public var byteOffset: Int
    public var token: String
    public var description: String {
        "cannot align token \(token.debugDescription) with the text at byte \(byteOffset) (the tokenizer's normalizer rewrote the text)"
    }
}

extension Tokenizer {
    var decodesByteLevel: Bool {
        func has(_ d: TokenDecoder?) -> Bool {
            if d is ByteLevelDecoder { return true }
            if let s = d as? SequenceDecoder { return s.steps.contains { has($0) } }
            return false
        }
        return has(decoder)
    }

    var normalizerPrepends: Bool {
        func has(_ n: TextNormalizer?) -> Bool {
            if n is PrependNormalizer { return true }
            if let s = n as? SequenceNormalizer { return s.steps.contains { has($0) } }
            return false
        }
        return has(normalizer)
    }

    /// Whether the normalizer composes to NFC (Qwen2's does): then texts are put in NFC before
    /// alignment, which gives the same ids (NFC is idempotent) and text the tokens line up with.
    var normalizerComposesNFC: Bool {
        func has(_ n: TextNormalizer?) -> Bool {
            if let u = n as? UnicodeFormNormalizer { return u.form == .nfc }
            if let s = n as? SequenceNormalizer { return s.steps.contains { has($0) } }
            return false
        }
        return has(normalizer)
    }

    /// `s` as the alignment needs it (NFC where the normalizer composes; unchanged otherwise).
    public func alignableText(_ s: String) -> String {
        guard normalizerComposesNFC, s.unicodeScalars.contains(where: { $0.value >= 0x300 }) else { return s }
        return s.precomposedStringWithCanonicalMapping
    }

    /// The bytes token `id` stands for in the text it came from.
    func surfaceBytes(_ id: Int, byteLevel: Bool) -> [UInt8] {
        if let a = added[id] { return Array(a.content.utf8) }
        guard let t = model.idToToken[id] else { return [] }
        if byteLevel {
            var out: [UInt8] = []
            for c in t.unicodeScalars {
                let v = c.value
                if v < 512, scalarToByte[Int(v)] >= 0 { out.append(UInt8(scalarToByte[Int(v)])) } else { return Array(t.utf8) }
            }
            return out
        }
        if let b = ByteFallbackDecoder.byteValue(t) { return [b] }
        return Array(t.replacingOccurrences(of: "\u{2581}", with: " ").utf8)
    }

    /// ids of encode(text, addSpecialTokens: false), each with its UTF-8 byte range in `text`.
    public func alignedTokens(_ text: String) throws -> [TokenOffset] {
        let ids = encode(text, addSpecialTokens: false)
        let w = Array(text.utf8)
        let byteLevel = decodesByteLevel
        let prepends = normalizerPrepends
        var out: [TokenOffset] = []
        out.reserveCapacity(ids.count)
        var cursor = 0
        func matches(_ b: ArraySlice<UInt8>, at i: Int) -> Bool {
            i + b.count <= w.count && w[i..<(i + b.count)].elementsEqual(b)
        }
        func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D }
        var segmentStart = true  // at the text's start or right after an added token
        for id in ids {
            let b = surfaceBytes(id, byteLevel: byteLevel)
            defer { segmentStart = added[id] != nil }
            if prepends, segmentStart, added[id] == nil, b.first == 0x20, matches(b.dropFirst(), at: cursor) {
                // The normalizer's Prepend("▁"): the first token of a segment carries a space the text lacks.
                out.append(TokenOffset(id: id, start: cursor, end: cursor + b.count - 1))
                cursor += b.count - 1
                continue
            }
            var start = cursor
            if let a = added[id], a.lstrip { while start < w.count, isSpace(w[start]), !matches(b[...], at: start) { start += 1 } }
            if matches(b[...], at: start) {
                var end = start + b.count
                if let a = added[id], a.rstrip { while end < w.count, isSpace(w[end]) { end += 1 } }
                out.append(TokenOffset(id: id, start: cursor, end: end))
                cursor = end
            } else if b.first == 0x20, matches(b.dropFirst(), at: cursor) {
                out.append(TokenOffset(id: id, start: cursor, end: cursor + b.count - 1))
                cursor += b.count - 1
            } else {
                throw TokenAlignmentError(byteOffset: cursor, token: token(id) ?? "#\(id)")
            }
        }
        return out
    }
}
