import Foundation
import LoraBase

/// Open-addressing hash table UInt64 → UInt64 for the merge ranks (a Swift
/// Dictionary hashes with SipHash, which dominated BPE time).
struct PairTable {
    private var keys: [UInt64]
    private var values: [UInt64]
    private let mask: Int
    private static let empty = UInt64.max

    init(_ entries: [UInt64: UInt64]) {
        var cap = 16
        while cap < entries.count * 2 { cap <<= 1 }
        keys = [UInt64](repeating: Self.empty, count: cap)
        values = [UInt64](repeating: 0, count: cap)
        mask = cap - 1
        for (k, v) in entries {
            var i = Self.slot(k, mask)
            while keys[i] != Self.empty { i = (i + 1) & mask }
            keys[i] = k
            values[i] = v
        }
    }

    @inline(__always)
    private static func slot(_ k: UInt64, _ mask: Int) -> Int {
        Int(truncatingIfNeeded: (k &* 0x9E37_79B9_7F4A_7C15) >> 32) & mask
    }

    @inline(__always)
    subscript(_ k: UInt64) -> UInt64? {
        var i = Self.slot(k, mask)
        while true {
            let x = keys[i]
            if x == k { return values[i] }
            if x == Self.empty { return nil }
            i = (i + 1) & mask
        }
    }
}

/// A word as cache key: scalars with a precomputed hash.
struct WordKey: Hashable {
    let scalars: [Unicode.Scalar]
    let hash: UInt64

    init(_ s: [Unicode.Scalar]) {
        scalars = s
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for c in s { h = (h ^ UInt64(c.value)) &* 0x100_0000_01B3 }
        hash = h
    }

    static func == (a: WordKey, b: WordKey) -> Bool { a.hash == b.hash && a.scalars == b.scalars }
    func hash(into h: inout Hasher) { h.combine(hash) }
}

/// Byte-pair encoding with ranked merges, as the `tokenizers` BPE model does it.
///
/// A word (scalars) starts as one symbol per scalar (its vocab id, or its
/// <0xNN> byte tokens, or <unk>); then the adjacent pair with the lowest merge
/// rank (leftmost on ties) is merged until no pair has a merge.
final class BPEModel {
    let vocab: [ExactKey: Int]
    let idToToken: [Int: String]
    /// (left id << 32 | right id) → (rank << 32 | merged id).
    let merges: PairTable
    let unkToken: String?
    let continuingSubwordPrefix: String?
    let endOfWordSuffix: String?
    let fuseUnk: Bool
    let byteFallback: Bool
    let ignoreMerges: Bool
    /// Single-scalar tokens by scalar value (used when there is no prefix/suffix).
    private let scalarIDs: PairTable
    private let asciiIDs: [Int]
    /// <0xNN> ids, -1 where absent.
    private let byteIDs: [Int]

    private var cache: [WordKey: [Int]] = [:]
    private let cacheLock = NSLock()
    private let cacheCapacity = 100_000

    init(json: JSONValue, source: String) throws {
        let ctx = "\(source): model"
        guard let vocabPairs = json["vocab"]?.object?.pairs else {
            throw TokenizerError("\(ctx).vocab is missing or not an object")
        }
        var vocab: [ExactKey: Int] = [:]
        vocab.reserveCapacity(vocabPairs.count)
        var idToToken: [Int: String] = [:]
        idToToken.reserveCapacity(vocabPairs.count)
        for (token, idValue) in vocabPairs {
            guard let id = idValue.integral, id >= 0, id < Int(Int32.max) else {
                throw TokenizerError("\(ctx).vocab[\(token.debugDescription)] is not a valid id")
            }
            vocab[ExactKey(token)] = id
            idToToken[id] = token
        }
        self.vocab = vocab
        self.idToToken = idToToken
        func optString(_ key: String) throws -> String? {
            guard let v = json[key], !v.isNull else { return nil }
            guard let s = v.string else { throw TokenizerError("\(ctx).\(key) must be a string or null") }
            return s
        }
        unkToken = try optString("unk_token")
        continuingSubwordPrefix = try optString("continuing_subword_prefix")
        endOfWordSuffix = try optString("end_of_word_suffix")
        fuseUnk = json["fuse_unk"]?.bool ?? false
        byteFallback = json["byte_fallback"]?.bool ?? false
        ignoreMerges = json["ignore_merges"]?.bool ?? false
        if let p = json["dropout"]?.double, p > 0 {
            throw TokenizerError("\(ctx).dropout \(p) is not supported (only null or 0)")
        }

        guard let mergeItems = json["merges"]?.array else {
            throw TokenizerError("\(ctx).merges is missing or not an array")
        }
        let prefixLen = continuingSubwordPrefix?.utf8.count ?? 0
        var merges: [UInt64: UInt64] = [:]
        merges.reserveCapacity(mergeItems.count)
        for (rank, item) in mergeItems.enumerated() {
            let a: String, b: String
            if let s = item.string {
                // Legacy "a b": exactly one space.
                guard let pair = splitLegacyMerge(s) else {
                    throw TokenizerError("\(ctx).merges[\(rank)] \(s.debugDescription) is not two tokens separated by one space")
                }
                (a, b) = pair
            } else if let pair = item.array, pair.count == 2, let x = pair[0].string, let y = pair[1].string {
                a = x; b = y
            } else {
                throw TokenizerError("\(ctx).merges[\(rank)] must be \"a b\" or [a, b]")
            }
            guard let aID = vocab[ExactKey(a)] else {
                throw TokenizerError("\(ctx).merges[\(rank)]: token \(a.debugDescription) is not in the vocab")
            }
            guard let bID = vocab[ExactKey(b)] else {
                throw TokenizerError("\(ctx).merges[\(rank)]: token \(b.debugDescription) is not in the vocab")
            }
            let bBytes = Array(b.utf8)
            let bTail = prefixLen <= bBytes.count ? String(decoding: bBytes[prefixLen...], as: UTF8.self) : ""
            let merged = a + bTail
            guard let newID = vocab[ExactKey(merged)] else {
                throw TokenizerError("\(ctx).merges[\(rank)]: merged token \(merged.debugDescription) is not in the vocab")
            }
            merges[UInt64(aID) << 32 | UInt64(bID)] = UInt64(rank) << 32 | UInt64(newID)
        }
        self.merges = PairTable(merges)

        var scalarIDs: [UInt32: Int] = [:]
        var asciiIDs = [Int](repeating: -1, count: 128)
        for (k, id) in vocab {
            let scalars = k.string.unicodeScalars
            if scalars.count == 1, let c = scalars.first {
                scalarIDs[c.value] = id
                if c.value < 128 { asciiIDs[Int(c.value)] = id }
            }
        }
        self.scalarIDs = PairTable(Dictionary(uniqueKeysWithValues: scalarIDs.map { (UInt64($0.key), UInt64($0.value)) }))
        self.asciiIDs = asciiIDs
        var byteIDs = [Int](repeating: -1, count: 256)
        for b in 0..<256 {
            let hex = String(b, radix: 16, uppercase: true)
            let name = "<0x" + (hex.count == 1 ? "0" + hex : hex) + ">"
            byteIDs[b] = vocab[ExactKey(name)] ?? -1
        }
        self.byteIDs = byteIDs
        if let unk = unkToken, vocab[ExactKey(unk)] == nil {
            throw TokenizerError("\(ctx).unk_token \(unk.debugDescription) is not in the vocab")
        }
    }

    func tokenID(_ token: String) -> Int? { vocab[ExactKey(token)] }

    /// Ids of one pre-tokenized word (non-empty), appended to `out`.
    func tokenize(_ word: [Unicode.Scalar], into out: inout [Int]) {
        if word.isEmpty { return }
        let cacheable = word.count < 256
        let key = cacheable ? WordKey(word) : nil
        if let key = key {
            cacheLock.lock()
            let hit = cache[key]
            cacheLock.unlock()
            if let hit = hit { out.append(contentsOf: hit); return }
        }
        var ids: [Int]
        if ignoreMerges, let id = vocab[ExactKey(scalarsToString(word))] {
            ids = [id]
        } else {
            ids = mergeWord(word).map(\.id)
        }
        out.append(contentsOf: ids)
        if let key = key {
            cacheLock.lock()
            if cache.count < cacheCapacity { cache[key] = ids }
            cacheLock.unlock()
        }
    }

    /// The tokens of one word with the scalars of `word` each stands for (`encodeWithOffsets`):
    /// a byte-fallback piece stands for its whole scalar, a fused unknown for its run.
    func tokenizeSpans(_ word: [Unicode.Scalar]) -> [(id: Int, scalars: Range<Int>)] {
        if word.isEmpty { return [] }
        if ignoreMerges, let id = vocab[ExactKey(scalarsToString(word))] { return [(id, 0..<word.count)] }
        return mergeWord(word)
    }

    /// Initial symbols, then merges; each token with the scalars it covers.
    private func mergeWord(_ word: [Unicode.Scalar]) -> [(id: Int, scalars: Range<Int>)] {
        var symbols: [Int] = []
        symbols.reserveCapacity(word.count)
        var spans: [Range<Int>] = []  // the scalars of each initial symbol
        spans.reserveCapacity(word.count)
        var unkSpan = 0..<0  // the scalars the pending unk stands for
        var unk: Int? = nil  // pending unk id (fused runs collapse into it)
        let unkID = unkToken.flatMap { vocab[ExactKey($0)] }
        let plain = continuingSubwordPrefix == nil && endOfWordSuffix == nil
        for (i, c) in word.enumerated() {
            var id: Int? = nil
            var piece: String? = nil
            if plain {
                if c.value < 128 {
                    let a = asciiIDs[Int(c.value)]
                    id = a >= 0 ? a : nil
                } else {
                    id = scalarIDs[UInt64(c.value)].map { Int($0) }
                }
            } else {
                var s = String(Character(c))
                if i > 0, let p = continuingSubwordPrefix { s = p + s }
                if i == word.count - 1, let x = endOfWordSuffix { s += x }
                piece = s
                id = vocab[ExactKey(s)]
            }
            if let id = id {
                if let u = unk { symbols.append(u); spans.append(unkSpan); unk = nil }
                symbols.append(id)
                spans.append(i..<(i + 1))
                continue
            }
            if byteFallback {
                let bytes: [UInt8] = piece.map { Array($0.utf8) } ?? Array(UTF8.encode(c)!)
                var ok = true
                for b in bytes where byteIDs[Int(b)] < 0 { ok = false; break }
                if ok {
                    // As the library does, a pending unk waits for the next vocabulary symbol.
                    for b in bytes { symbols.append(byteIDs[Int(b)]); spans.append(i..<(i + 1)) }
                    continue
                }
            }
            if let u = unkID {
                if let pending = unk, !fuseUnk {
                    symbols.append(pending)
                    spans.append(unkSpan)
                    unkSpan = i..<(i + 1)
                } else {
                    unkSpan = unk == nil ? i..<(i + 1) : unkSpan.lowerBound..<(i + 1)
                }
                unk = u
            }
        }
        if let u = unk { symbols.append(u); spans.append(unkSpan) }
        if symbols.count < 2 { return zip(symbols, spans).map { ($0, $1) } }
        let (ids, starts) = merge(symbols)
        return ids.indices.map { k in
            let last = k + 1 < starts.count ? starts[k + 1] - 1 : symbols.count - 1
            let lo = spans[starts[k]].lowerBound
            return (ids[k], lo..<max(lo, spans[last].upperBound))
        }
    }

    /// Applies the merges: lowest rank first, leftmost on ties (the library's heap order).
    /// Symbols form a linked list over the initial positions; a merge keeps the left slot.
    /// Returns the final ids and the initial position each starts at.
    private func merge(_ initial: [Int]) -> (ids: [Int], starts: [Int]) {
        let n = initial.count
        var c = initial
        var prev = [Int32](repeating: -1, count: n)
        var next = [Int32](repeating: -1, count: n)
        var alive = [Bool](repeating: true, count: n)
        for i in 0..<n {
            prev[i] = Int32(i - 1)
            next[i] = i + 1 < n ? Int32(i + 1) : -1
        }
        var heap = MergeHeap()
        heap.reserve(n)
        for i in 0..<(n - 1) {
            if let m = merges[UInt64(c[i]) << 32 | UInt64(c[i + 1])] {
                heap.push(key: (m >> 32) << 32 | UInt64(i), newID: Int32(truncatingIfNeeded: m))
            }
        }
        while let top = heap.pop() {
            let pos = Int(top.key & 0xFFFF_FFFF)
            guard alive[pos] else { continue }
            let right = Int(next[pos])
            guard right >= 0 else { continue }
            guard let m = merges[UInt64(c[pos]) << 32 | UInt64(c[right])],
                  Int32(truncatingIfNeeded: m) == top.newID else { continue }
            c[pos] = Int(top.newID)
            alive[right] = false
            let after = Int(next[right])
            next[pos] = Int32(after)
            if after >= 0 { prev[after] = Int32(pos) }
            let before = Int(prev[pos])
            if before >= 0, let m2 = merges[UInt64(c[before]) << 32 | UInt64(c[pos])] {
                heap.push(key: (m2 >> 32) << 32 | UInt64(before), newID: Int32(truncatingIfNeeded: m2))
            }
            if after >= 0, let m3 = merges[UInt64(c[pos]) << 32 | UInt64(c[after])] {
                heap.push(key: (m3 >> 32) << 32 | UInt64(pos), newID: Int32(truncatingIfNeeded: m3))
            }
        }
        var out: [Int] = [], starts: [Int] = []
        out.reserveCapacity(n)
        starts.reserveCapacity(n)
        var i = 0
        while i >= 0 && i < n {
            out.append(c[i])
            starts.append(i)
            i = Int(next[i])
        }
        return (out, starts)
    }
}

/// Binary min-heap of pending merges keyed by (rank << 32 | position).
struct MergeHeap {
    private var keys: [UInt64] = []
    private var ids: [Int32] = []

    mutating func reserve(_ n: Int) {
        keys.reserveCapacity(n)
        ids.reserveCapacity(n)
    }

    mutating func push(key: UInt64, newID: Int32) {
        keys.append(key)
        ids.append(newID)
        var i = keys.count - 1
        while i > 0 {
            let p = (i - 1) >> 1
            if keys[p] <= keys[i] { break }
            keys.swapAt(p, i)
            ids.swapAt(p, i)
            i = p
        }
    }

    mutating func pop() -> (key: UInt64, newID: Int32)? {
        guard let topKey = keys.first else { return nil }
        let topID = ids[0]
        let lastKey = keys.removeLast()
        let lastID = ids.removeLast()
        let m = keys.count
        if m > 0 {
            keys[0] = lastKey
            ids[0] = lastID
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var s = i
                if l < m && keys[l] < keys[s] { s = l }
                if r < m && keys[r] < keys[s] { s = r }
                if s == i { break }
                keys.swapAt(s, i)
                ids.swapAt(s, i)
                i = s
            }
        }
        return (topKey, topID)
    }
}
