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

    /// What token `id` stands for in the text it came from, byte by byte; `-1` is a "▁" of a
    /// SentencePiece-style token, which stands for a space (the normalizer's Replace) or for
    /// a "▁" the text itself holds.
    /// `asModelToken`: the model vocabulary's token of that id, even where an added token has the same id.
    func surfacePattern(_ id: Int, byteLevel: Bool, asModelToken: Bool = false) -> [Int] {
        func spacePattern(_ t: String) -> [Int] {
            var out: [Int] = []
            for c in t.unicodeScalars {
                if c == "\u{2581}" { out.append(-1) } else { out += String(c).utf8.map(Int.init) }
            }
            return out
        }
        if !asModelToken, let a = added[id] {
            // A normalized added token is matched in its normalized form (e.g. "▁<extra>" after Prepend/Replace).
            guard a.normalized, let form = addedDecodeForm[id] else { return a.content.utf8.map(Int.init) }
            return byteLevel ? form.utf8.map(Int.init) : spacePattern(form)
        }
        guard let t = model.idToToken[id] else { return [] }
        if byteLevel {
            var out: [Int] = []
            for c in t.unicodeScalars {
                let v = c.value
                if v < 512, scalarToByte[Int(v)] >= 0 { out.append(Int(scalarToByte[Int(v)])) } else { return t.utf8.map(Int.init) }
            }
            return out
        }
        if let b = ByteFallbackDecoder.byteValue(t) { return [Int(b)] }
        return spacePattern(t)
    }

    /// `surfacePattern` of every id (and whether it is an added token), made once: alignment looks
    /// one up per token.
    var surfaces: SurfaceTable {
        surfaceLock.lock()
        defer { surfaceLock.unlock() }
        if let t = surfaceCache { return t }
        let byteLevel = decodesByteLevel
        var values: [Int32] = [], starts: [Int32] = [0], isAdded: [Bool] = []
        var modelPatterns: [Int: ArraySlice<Int32>] = [:]
        for id in 0..<vocabSize {
            values += surfacePattern(id, byteLevel: byteLevel).map { Int32($0) }
            starts.append(Int32(values.count))
            isAdded.append(added[id] != nil)
            // An added token that is also a model token (some tokenizer.json files list the byte-fallback
            // pieces <0x00>…<0xFF> among added_tokens): the model may produce it for text that is not its content.
            if added[id] != nil, model.idToToken[id] != nil {
                modelPatterns[id] = ArraySlice(surfacePattern(id, byteLevel: byteLevel, asModelToken: true).map { Int32($0) })
            }
        }
        let t = SurfaceTable(values: values, starts: starts, isAdded: isAdded, modelPatterns: modelPatterns)
        surfaceCache = t
        return t
    }

    /// ids of encode(text, addSpecialTokens: false), each with its UTF-8 byte range in `text`.
    public func alignedTokens(_ text: String) throws -> [TokenOffset] {
        let ids = encode(text, addSpecialTokens: false)
        let w = Array(text.utf8)
        let table = surfaces
        let prepends = normalizerPrepends
        var out: [TokenOffset] = []
        out.reserveCapacity(ids.count)
        var cursor = 0
        /// The end of `p` matched at byte i, or nil.
        func match(_ p: ArraySlice<Int32>, at i: Int) -> Int? {
            var j = i
            for u in p {
                if u >= 0 {
                    guard j < w.count, Int(w[j]) == u else { return nil }
                    j += 1
                } else if j < w.count, w[j] == 0x20 {
                    j += 1
                } else if j + 2 < w.count, w[j] == 0xE2, w[j + 1] == 0x96, w[j + 2] == 0x81 {
                    j += 3
                } else {
                    return nil
                }
            }
            return j
        }
        func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D }
        var segmentStart = true  // at the text's start or right after an added token
        /// Where token `id` read as pattern `p` (an added token's or a model token's) ends, or nil.
        func end(_ id: Int, _ p: ArraySlice<Int32>, isAdded: Bool) -> Int? {
            if prepends, segmentStart, !isAdded, p.first == -1, let e = match(p.dropFirst(), at: cursor) {
                // The normalizer's Prepend("▁"): the first token of a segment carries a space the text lacks.
                return e
            }
            var start = cursor
            let a = isAdded ? added[id] : nil
            if let a, a.lstrip { while start < w.count, isSpace(w[start]), match(p, at: start) == nil { start += 1 } }
            if var e = match(p, at: start) {
                if let a, a.rstrip { while e < w.count, isSpace(w[e]) { e += 1 } }
                return e
            }
            if !isAdded, p.first == -1, let e = match(p.dropFirst(), at: cursor) { return e }  // a Metaspace pre-tokenizer's "▁"
            return nil
        }
        for id in ids {
            let isAdded = table.isAdded(id)
            if let e = end(id, table.pattern(id), isAdded: isAdded) {
                segmentStart = isAdded
                out.append(TokenOffset(id: id, start: cursor, end: e))
                cursor = e
            } else if isAdded, let m = table.modelPatterns[id], let e = end(id, m, isAdded: false) {
                segmentStart = false
                out.append(TokenOffset(id: id, start: cursor, end: e))
                cursor = e
            } else {
                throw TokenAlignmentError(byteOffset: cursor, token: token(id) ?? "#\(id)")
            }
        }
        return out
    }
}

/// Surface patterns of every id, flat: id's pattern is values[starts[id] ..< starts[id + 1]].
struct SurfaceTable {
    let values: [Int32]
    let starts: [Int32]
    let isAdded: [Bool]
    /// The model token's pattern of ids that are added tokens too.
    let modelPatterns: [Int: ArraySlice<Int32>]
    func pattern(_ id: Int) -> ArraySlice<Int32> {
        guard id >= 0, id + 1 < starts.count else { return [] }
        return values[Int(starts[id])..<Int(starts[id + 1])]
    }
    func isAdded(_ id: Int) -> Bool { id >= 0 && id < isAdded.count && isAdded[id] }
}
