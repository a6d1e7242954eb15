import Foundation
import LoraBase

/// A Hugging Face `tokenizers` tokenizer read from tokenizer.json (BPE models).
///
/// encode: text → added tokens split out (the ones with normalized=false on the raw
/// text) → each other piece normalized → added tokens with normalized=true split out
/// of the normalized pieces → pre-tokenizer → BPE per word → post-processor.
/// decode: ids → token strings (added tokens by content, or their normalized form)
/// → decoder chain → concatenation (no decoder: joined with spaces).
///
/// Supported (anything else is a TokenizerError naming the field and type):
///   model           BPE (merges "a b" or [a, b]; unk_token, fuse_unk, byte_fallback,
///                   ignore_merges, continuing_subword_prefix, end_of_word_suffix; dropout null/0)
///   normalizer      NFC NFD NFKC NFKD Lowercase Strip Prepend Replace ByteLevel Sequence
///   pre_tokenizer   ByteLevel Split Metaspace Digits Whitespace WhitespaceSplit Punctuation Sequence
///   post_processor  TemplateProcessing (single) ByteLevel BertProcessing RobertaProcessing Sequence
///   decoder         ByteLevel Replace ByteFallback Fuse Strip Metaspace BPEDecoder Sequence
/// tokenizer.json's truncation and padding are ignored (encode never truncates or pads).
/// Thread-safe: the only mutable state, the BPE word cache, is locked.
public final class Tokenizer {
    public let config: TokenizerConfig

    let model: BPEModel
    let normalizer: TextNormalizer?
    let preTokenizer: PreTokenizer?
    let postProcessor: PostProcessor?
    let decoder: TokenDecoder?

    struct AddedToken {
        let id: Int
        let content: String
        let singleWord, lstrip, rstrip, normalized, special: Bool
    }
    /// Added tokens by id.
    let added: [Int: AddedToken]
    /// Added token ids by content.
    let addedIDs: [ExactKey: Int]
    /// The string decode uses for an added token (its normalized form when normalized=true).
    let addedDecodeForm: [Int: String]
    let specialContents: Set<ExactKey>
    /// Tokens added from tokenizer_config.json because tokenizer.json lacks them (content, id), as
    /// transformers adds them; `inspect` and `data preview` name them.
    public let configAddedTokens: [(content: String, id: Int)]
    let rawMatcher: AddedTokenMatcher
    let normalizedMatcher: AddedTokenMatcher
    private let maxID: Int

    /// Highest id + 1, added tokens included.
    public var vocabSize: Int { maxID + 1 }

    /// Reads `directory`/tokenizer.json and, when present, tokenizer_config.json and
    /// chat_template.jinja (whose template wins over the config's chat_template).
    public static func load(directory: String) throws -> Tokenizer {
        let dir = URL(fileURLWithPath: directory)
        let tokPath = dir.appendingPathComponent("tokenizer.json").path
        guard let data = FileManager.default.contents(atPath: tokPath) else {
            throw TokenizerError("\(tokPath): cannot read the file")
        }
        let cfgPath = dir.appendingPathComponent("tokenizer_config.json").path
        var config = FileManager.default.fileExists(atPath: cfgPath) ? try TokenizerConfig.load(path: cfgPath) : TokenizerConfig()
        let jinjaPath = dir.appendingPathComponent("chat_template.jinja").path
        if FileManager.default.fileExists(atPath: jinjaPath) {
            guard let t = FileManager.default.contents(atPath: jinjaPath), let s = String(data: t, encoding: .utf8) else {
                throw TokenizerError("\(jinjaPath): cannot read the file as UTF-8")
            }
            config.chatTemplate = s
        }
        return try Tokenizer(tokenizerJSON: data, config: config, source: tokPath)
    }

    public init(tokenizerJSON: Data, config: TokenizerConfig = TokenizerConfig(), source: String = "tokenizer.json") throws {
        self.config = config
        let json = try JSONValue.parse(tokenizerJSON, source: source)
        guard json.object?.pairs != nil else {
            throw TokenizerError("\(source): expected a JSON object at the top, found \(json.typeName)")
        }
        guard let modelJSON = json["model"], modelJSON.object?.pairs != nil else {
            throw TokenizerError("\(source): model is missing or not an object")
        }
        let modelType = modelJSON["type"]?.string ?? (modelJSON["merges"] != nil ? "BPE" : "unknown")
        guard modelType == "BPE" else {
            throw TokenizerError("\(source): model.type '\(modelType)' is not supported yet (only BPE)")
        }
        model = try BPEModel(json: modelJSON, source: source)
        normalizer = try json["normalizer"].map { try makeNormalizer($0, context: "\(source): normalizer") } ?? nil
        preTokenizer = try json["pre_tokenizer"].map { try makePreTokenizer($0, context: "\(source): pre_tokenizer") } ?? nil
        postProcessor = try json["post_processor"].map { try makePostProcessor($0, context: "\(source): post_processor") } ?? nil
        decoder = try json["decoder"].map { try makeDecoder($0, context: "\(source): decoder") } ?? nil

        // Added tokens, given ids the way AddedVocabulary::add_tokens does.
        var added: [Int: AddedToken] = [:]
        var addedIDs: [ExactKey: Int] = [:]
        var decodeForm: [Int: String] = [:]
        var specials = Set<ExactKey>()
        var maxID = model.idToToken.keys.max() ?? -1
        var nextID = model.vocab.count
        var fromConfig: [(content: String, id: Int)] = []
        var entries: [(token: AddedTokenSpec, fromConfig: Bool)] = []
        for (i, item) in (json["added_tokens"]?.array ?? []).enumerated() {
            guard let token = AddedTokenSpec(json: item) else {
                throw TokenizerError("\(source): added_tokens[\(i)].content is missing or not a string")
            }
            entries.append((token, false))
        }
        // Special tokens tokenizer_config.json names that tokenizer.json lacks: transformers adds them
        // (new ids after the vocabulary, or the vocabulary's id), special and matched whole.
        let listed = Set(entries.map { ExactKey($0.token.content) })
        var seen = Set<ExactKey>()
        for t in config.configTokens where !listed.contains(ExactKey(t.content)) && seen.insert(ExactKey(t.content)).inserted {
            entries.append((t, true))
        }
        for (e, isFromConfig) in entries {
            let content = e.content
            if content.isEmpty { continue }
            let key = ExactKey(content)
            let id: Int
            if let a = addedIDs[key] { id = a }
            else if let m = model.tokenID(content) { id = m }
            else { id = nextID; nextID += 1 }
            if isFromConfig { fromConfig.append((content, id)) }
            let tok = AddedToken(id: id, content: content, singleWord: e.singleWord, lstrip: e.lstrip, rstrip: e.rstrip,
                                 normalized: e.normalized, special: e.special)
            if e.normalized, let n = normalizer {
                let form = scalarsToString(n.normalize(Array(content.unicodeScalars)))
                if !form.utf8.elementsEqual(content.utf8) { decodeForm[id] = form } else { decodeForm[id] = nil }
            } else {
                decodeForm[id] = nil
            }
            addedIDs[key] = id
            if e.special { specials.insert(key) }
            added[id] = tok
            maxID = max(maxID, id)
        }
        self.added = added
        self.addedIDs = addedIDs
        self.configAddedTokens = fromConfig
        self.addedDecodeForm = decodeForm
        self.specialContents = specials
        self.maxID = maxID
        var raw: [([Unicode.Scalar], AddedToken)] = []
        var norm: [([Unicode.Scalar], AddedToken)] = []
        for (_, t) in added.sorted(by: { $0.key < $1.key }) {
            if t.normalized {
                norm.append((Array((decodeForm[t.id] ?? t.content).unicodeScalars), t))
            } else {
                raw.append((Array(t.content.unicodeScalars), t))
            }
        }
        rawMatcher = AddedTokenMatcher(raw)
        normalizedMatcher = AddedTokenMatcher(norm)
    }

    // MARK: - Encoding

    /// The ids transformers' `tokenizer(text, text_pair, truncation=True,
    /// max_length=maxLength)` gives: each text encoded alone, truncated as
    /// `tokenizers`' longest_first does so that the post-processor's special
    /// tokens still fit (the shorter text keeps at most half the room, the
    /// longer the rest), then joined by the post-processor. `truncated`:
    /// whether a token was dropped.
    public func encode(_ text: String, pair: String?, maxLength: Int) -> (ids: [Int], truncated: Bool) {
        var a = encode(text, addSpecialTokens: false)
        var b = pair.map { encode($0, addSpecialTokens: false) }
        let room = max(0, maxLength - (postProcessor?.addedTokens(pair: b != nil) ?? 0))
        let before = a.count + (b?.count ?? 0)
        if var second = b {
            if a.count + second.count > room {
                let firstIsLonger = a.count > second.count
                let short = min(firstIsLonger ? second.count : a.count, room / 2)
                let long = room - short
                if firstIsLonger { a.removeLast(a.count - long); second.removeLast(second.count - short) }
                else { a.removeLast(a.count - short); second.removeLast(second.count - long) }
            }
            b = second
        } else if a.count > room {
            a.removeLast(a.count - room)
        }
        let truncated = a.count + (b?.count ?? 0) < before
        let ids = postProcessor.map { $0.process(a, pair: b, addSpecialTokens: true) } ?? a + (b ?? [])
        return (ids, truncated)
    }

    /// Pre-split words as transformers' `tokenizer(words, is_split_into_words=True,
    /// truncation=True, max_length=maxLength)` gives them (token classification):
    /// each word encoded on its own, the sub-tokens cut to leave room for the
    /// post-processor's special tokens, then wrapped. `wordIDs[i]`: the word of
    /// token i, nil for a special token (`.word_ids()`).
    public func encode(words: [String], maxLength: Int) -> (ids: [Int], wordIDs: [Int?], truncated: Bool) {
        var ids: [Int] = [], words_: [Int] = []
        for (w, word) in words.enumerated() {
            let t = encode(word, addSpecialTokens: false)
            ids += t
            words_ += [Int](repeating: w, count: t.count)
        }
        let room = max(0, maxLength - (postProcessor?.addedTokens(pair: false) ?? 0))
        let truncated = ids.count > room
        if truncated { ids.removeLast(ids.count - room); words_.removeLast(words_.count - room) }
        let slots = layout(first: ids.count, second: nil, addSpecialTokens: true)
        return (slots.map { if case .first(let k) = $0 { return ids[k] }; if case .special(let id) = $0 { return id }; return 0 },
                slots.map { if case .first(let k) = $0 { return words_[k] }; return nil }, truncated)
    }

    /// Where the post-processor puts each token of a sequence (and of a pair's second one) and
    /// which special tokens it adds, in output order.
    enum Slot { case first(Int), second(Int), special(Int) }

    func layout(first n: Int, second m: Int?, addSpecialTokens: Bool) -> [Slot] {
        // Content tokens go through as negative markers (special ids are never negative).
        let a = (0..<n).map { -1 - $0 }, b = m.map { (0..<$0).map { -1 - n - $0 } }
        let marked = postProcessor?.process(a, pair: b, addSpecialTokens: addSpecialTokens) ?? a + (b ?? [])
        return marked.map { $0 >= 0 ? .special($0) : -1 - $0 < n ? .first(-1 - $0) : .second(-1 - n - $0) }
    }

    /// The ids `tokenizers`' `encode(text, add_special_tokens:).ids` gives.
    public func encode(_ text: String, addSpecialTokens: Bool = true) -> [Int] {
        let scalars = Array(text.unicodeScalars)
        var ids: [Int] = []
        ids.reserveCapacity(scalars.count / 3 + 4)
        var untracked: [Range<Int>]? = nil
        encodeBare(scalars, byteAt: nil, ids: &ids, offsets: &untracked)
        if let pp = postProcessor { return pp.process(ids, addSpecialTokens: addSpecialTokens) }
        return ids
    }

    /// The ids and offsets `tokenizers`' `encode(text, add_special_tokens:)` gives: each token's
    /// range in `text` in UTF-8 bytes (the Python binding counts characters; the bytes are the
    /// same boundaries), as the normalizer's alignments map it back — a token the normalizer or
    /// pre-tokenizer inserted ("▁", a prefix space) stands for the text's first character there,
    /// byte-fallback pieces of one character each stand for all of it, a ByteLevel post-processor
    /// with trim_offsets trims spaces off. Special tokens the post-processor adds get 0..<0.
    public func encodeWithOffsets(_ text: String, addSpecialTokens: Bool = false) -> [TokenOffset] {
        let bare = untrimmedOffsets(text)
        let ranges = trimmed(bare, 0..<bare.ids.count)
        return layout(first: bare.ids.count, second: nil, addSpecialTokens: addSpecialTokens).map {
            switch $0 {
            case .first(let k), .second(let k): return TokenOffset(id: bare.ids[k], start: ranges[k].lowerBound, end: ranges[k].upperBound)
            case .special(let id): return TokenOffset(id: id, start: 0, end: 0)
            }
        }
    }

    /// One row of a text pair with offsets: `ids`, the text each token comes from (`sequence`: 0 the
    /// first, 1 the second, nil a special token) and its byte range in that text (0..<0 for a special).
    public struct PairRow: Equatable, Sendable {
        public var ids: [Int]
        public var sequence: [Int?]
        public var offsets: [Range<Int>]
    }

    /// transformers' `tokenizer(first, second, truncation="only_second", max_length=maxLength,
    /// stride=stride, return_overflowing_tokens=True, return_offsets_mapping=True)` (the extractive-QA
    /// recipe): the first text whole in every row; the second cut into windows of the room left
    /// (maxLength − first − the pair's special tokens), each starting `room − stride` tokens after
    /// the one before, the last ending at the text's end. Throws when the first text leaves no room
    /// or the stride is not below the room (as the library does).
    public func encodeOverflowing(_ first: String, _ second: String, maxLength: Int, stride: Int) throws -> [PairRow] {
        let a = untrimmedOffsets(first), b = untrimmedOffsets(second)
        let special = postProcessor?.addedTokens(pair: true) ?? 0
        let room = maxLength - a.ids.count - special
        var windows: [Range<Int>] = [0..<b.ids.count]
        if b.ids.count > room {
            guard room > 0 else {
                throw TokenizerError("the first text takes \(a.ids.count) tokens (+\(special) special): no room for the second within "
                                     + "max_length \(maxLength)")
            }
            guard stride < room else {
                throw TokenizerError("stride \(stride) must be below the \(room) tokens left for the second text "
                                     + "(max_length \(maxLength) − \(a.ids.count) for the first − \(special) special)")
            }
            windows = []
            var start = 0
            while true {
                let stop = min(start + room, b.ids.count)
                windows.append(start..<stop)
                if stop == b.ids.count { break }
                start += room - stride
            }
        }
        let aRanges = trimmed(a, 0..<a.ids.count)
        return windows.map { w in
            // Each window is an encoding of its own: the post-processor trims it from its own first token.
            let bRanges = trimmed(b, w)
            var row = PairRow(ids: [], sequence: [], offsets: [])
            for slot in layout(first: a.ids.count, second: w.count, addSpecialTokens: true) {
                switch slot {
                case .special(let id): row.ids.append(id); row.sequence.append(nil); row.offsets.append(0..<0)
                case .first(let k): row.ids.append(a.ids[k]); row.sequence.append(0); row.offsets.append(aRanges[k])
                case .second(let j): row.ids.append(b.ids[w.lowerBound + j]); row.sequence.append(1); row.offsets.append(bRanges[j])
                }
            }
            return row
        }
    }

    /// Bare ids with each token's byte range before the post-processor's trim, and the text's
    /// byte ↔ character positions.
    private func untrimmedOffsets(_ text: String) -> (ids: [Int], ranges: [Range<Int>], index: CharacterIndex) {
        let scalars = Array(text.unicodeScalars)
        let index = CharacterIndex(scalars)
        var ids: [Int] = []
        var tracked: [Range<Int>]? = []
        encodeBare(scalars, byteAt: index.byteAt, ids: &ids, offsets: &tracked)
        return (ids, tracked ?? [], index)
    }

    /// The ranges of tokens `window` (one encoding) after a ByteLevel/Roberta post-processor's
    /// trim_offsets. transformers gets offsets in characters and the post-processor trims them
    /// there, so the trim counts characters: a byte-level space token over a multi-byte character
    /// loses all of it.
    private func trimmed(_ e: (ids: [Int], ranges: [Range<Int>], index: CharacterIndex), _ window: Range<Int>) -> [Range<Int>] {
        let ranges = Array(e.ranges[window])
        guard let trim = postProcessor?.offsetTrim else { return ranges }
        let x = e.index
        return ranges.enumerated().map { k, r in
            let t = trim.trim(x.character(atByte: r.lowerBound)..<x.character(atByte: r.upperBound),
                              token: token(e.ids[window.lowerBound + k]) ?? "", index: k)
            return x.byteAt[t.lowerBound]..<x.byteAt[t.upperBound]
        }
    }

    /// Added tokens, normalizer, pre-tokenizer and model over the text (no post-processor).
    /// With `byteAt` (each scalar's UTF-8 offset, and the end) every token's original byte range
    /// is appended to `offsets` too.
    private func encodeBare(_ scalars: [Unicode.Scalar], byteAt: [Int]?, ids: inout [Int], offsets: inout [Range<Int>]?) {
        /// The original bytes scalars `r` of an aligned piece stand for.
        func span(_ align: [Range<Int>], _ r: Range<Int>) -> Range<Int> {
            let lo = align[r.lowerBound].lowerBound
            return lo..<max(lo, align[r.upperBound - 1].upperBound)
        }
        for (r, id, content) in rawMatcher.split(scalars) {
            if let id = id {
                // An added token stands for its content; whitespace lstrip/rstrip took stands for none.
                ids.append(id)
                if let b = byteAt { offsets?.append(b[content.lowerBound]..<b[content.upperBound]) }
                continue
            }
            if r.isEmpty { continue }
            var piece = TextPiece(text: Array(scalars[r]), atStart: r.lowerBound == 0,
                                  align: byteAt.map { b in r.map { b[$0]..<b[$0 + 1] } })
            if let n = normalizer {
                if piece.align != nil { n.normalize(aligned: &piece) } else { piece.text = n.normalize(piece.text) }
            }
            if piece.text.isEmpty { continue }
            for (r2, id2, content2) in normalizedMatcher.split(piece.text) {
                if let id2 = id2 {
                    ids.append(id2)
                    if let a = piece.align { offsets?.append(span(a, content2)) }
                    continue
                }
                if r2.isEmpty { continue }
                let p = piece.slice(r2)
                let words = preTokenizer.map { $0.preTokenize([p]) } ?? [p]
                for w in words {
                    guard let a = w.align else { model.tokenize(w.text, into: &ids); continue }
                    for t in model.tokenizeSpans(w.text) {
                        ids.append(t.id)
                        offsets?.append(span(a, t.scalars))
                    }
                }
            }
        }
    }

    // MARK: - Decoding

    /// The text `tokenizers`' `decode(ids, skip_special_tokens:)` gives; unknown ids are skipped.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) -> String {
        var tokens: [String] = []
        tokens.reserveCapacity(ids.count)
        for id in ids {
            let t: String
            if let a = added[id] { t = addedDecodeForm[id] ?? a.content }
            else if let m = model.idToToken[id] { t = m }
            else { continue }
            if skipSpecialTokens && specialContents.contains(ExactKey(t)) { continue }
            tokens.append(t)
        }
        if let d = decoder { return d.decodeChain(tokens).joined() }
        return tokens.joined(separator: " ")
    }

    // MARK: - Vocabulary

    /// The id of a token (added tokens first, then the model's vocabulary).
    public func tokenID(_ token: String) -> Int? {
        addedIDs[ExactKey(token)] ?? model.tokenID(token)
    }

    /// The token of an id (an added token's content, or the model's token).
    public func token(_ id: Int) -> String? {
        added[id]?.content ?? model.idToToken[id]
    }

    /// Whether `id` is an added token marked special.
    public func isSpecial(_ id: Int) -> Bool {
        added[id]?.special ?? false
    }
}

/// A token and the UTF-8 byte range of the text it stands for.
public struct TokenOffset: Equatable, Sendable {
    public var id: Int
    public var start: Int
    public var end: Int
    public init(id: Int, start: Int, end: Int) {
        self.id = id
        self.start = start
        self.end = end
    }
}

/// Finds added tokens in text: leftmost-longest, non-overlapping (as the library's
/// Aho-Corasick matcher), then single_word / lstrip / rstrip applied per match.
struct AddedTokenMatcher {
    private var asciiFirst = [[Int]](repeating: [], count: 128)
    private var otherFirst: [UInt32: [Int]] = [:]
    private let patterns: [[Unicode.Scalar]]
    private let tokens: [Tokenizer.AddedToken]
    let isEmpty: Bool

    init(_ items: [([Unicode.Scalar], Tokenizer.AddedToken)]) {
        let kept = items.filter { !$0.0.isEmpty }
        patterns = kept.map { $0.0 }
        tokens = kept.map { $0.1 }
        isEmpty = kept.isEmpty
        // Candidates per first scalar, longest first.
        let order = patterns.indices.sorted { patterns[$0].count > patterns[$1].count }
        for i in order {
            let f = patterns[i][0].value
            if f < 128 { asciiFirst[Int(f)].append(i) } else { otherFirst[f, default: []].append(i) }
        }
    }

    /// The text covered by (range, added token id or nil) pieces, in order; an added token's
    /// range includes the whitespace lstrip/rstrip take, `content` is where its text itself is.
    func split(_ s: [Unicode.Scalar]) -> [(Range<Int>, Int?, content: Range<Int>)] {
        if isEmpty || s.isEmpty { return [(0..<s.count, nil, 0..<s.count)] }
        var out: [(Range<Int>, Int?, content: Range<Int>)] = []
        var startOffset = 0
        var i = 0
        let n = s.count
        while i < n {
            let v = s[i].value
            let cands = v < 128 ? asciiFirst[Int(v)] : (otherFirst[v] ?? [])
            var found = -1
            for c in cands {
                let p = patterns[c]
                if i + p.count <= n {
                    var ok = true
                    var k = 1
                    while k < p.count { if s[i + k] != p[k] { ok = false; break }; k += 1 }
                    if ok { found = c; break }
                }
            }
            if found < 0 { i += 1; continue }
            var start = i
            var stop = i + patterns[found].count
            i = stop
            let tok = tokens[found]
            if tok.singleWord {
                let startSpace = start == 0 || !isWordScalar(s[start - 1])
                let stopSpace = stop == n || !isWordScalar(s[stop])
                if !startSpace || !stopSpace { continue }
            }
            if tok.lstrip {
                var ns = start
                while ns > 0 && s[ns - 1].properties.isWhitespace { ns -= 1 }
                start = max(ns, startOffset)
            }
            if tok.rstrip {
                while stop < n && s[stop].properties.isWhitespace { stop += 1 }
            }
            if startOffset < start { out.append((startOffset..<start, nil, startOffset..<start)) }
            out.append((start..<stop, tok.id, (i - patterns[found].count)..<i))
            startOffset = stop
        }
        if startOffset != n { out.append((startOffset..<n, nil, startOffset..<n)) }
        return out
    }
}

// MARK: tokenizer.json components

/// A component's "type" (normalizer, pre-tokenizer, post-processor, decoder); nil for a null component.
func componentType(_ json: JSONValue, context: String) throws -> String? {
    if json.isNull { return nil }
    guard let type = json["type"]?.string else { throw TokenizerError("\(context).type is missing") }
    return type
}

/// A "Sequence" component's steps (`key`: "normalizers", "decoders", …), each made by `make`; null ones skipped.
func sequenceSteps<T>(_ json: JSONValue, _ key: String, context: String,
                      _ make: (JSONValue, String) throws -> T?) throws -> [T] {
    guard let items = json[key]?.array else { throw TokenizerError("\(context).\(key) is missing") }
    return try items.enumerated().compactMap { try make($1, "\(context).\(key)[\($0)]") }
}
