import Foundation
import LoraBase

/// The Hugging Face tokenizer files a GGUF file's `tokenizer.ggml.*` metadata
/// describes, built as transformers' GGUF tokenizer converter builds them:
///   - model "gpt2": byte-level BPE with the file's merges; tokens spelled in
///     the byte alphabet; the split regex chosen by `tokenizer.ggml.pre`
///     (GPT-2's built-in one when the name is not in the table);
///   - model "llama": SentencePiece-style BPE with byte fallback, the merges
///     from the file or recovered from the vocabulary and scores, a
///     Metaspace pre-tokenizer (prepend "▁" to the first word);
/// control tokens (token_type 3) and the named bos/eos/unk/pad tokens become
/// special added tokens, user-defined ones (4) plain added tokens; BOS/EOS
/// are added by a TemplateProcessing post-processor per add_bos/add_eos_token.
public struct GGUFTokenizerFiles {
    /// tokenizer.json, in the `tokenizers` library's format.
    public let tokenizerJSON: Data
    /// tokenizer_config.json (special tokens, add_bos/eos_token, chat_template).
    public let tokenizerConfig: Data
    public let tokenizerObject: JSONValue
    public let configObject: JSONValue
}

/// The pre-tokenizer a `tokenizer.ggml.pre` name stands for: the regexes of the original tokenizer.json's
/// Split steps, applied in turn (each match isolated, the text between matches kept as its own piece),
/// then ByteLevel without its own regex. The lists are llama.cpp's (llama-vocab.cpp), which its
/// tokenizer suite checks against each model's original Hugging Face tokenizer.
enum GGUFPreTokenizer {
    static let llama3 = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let qwen2 = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let qwen35 = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let tekken = #"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let gpt4o = #"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    /// GPT-2's regex without its final `|\s+` (what is left between matches is a piece anyway).
    static let gpt2 = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"#
    /// StarCoder-style: every digit its own piece first ("½" too: it is \p{N}), then GPT-2's regex.
    static let digitsThenGPT2 = [#"\p{N}"#, gpt2]
    static let deepseekCoder = [#"[\r\n]"#, #"\s?\p{L}+"#, #"\s?\p{P}+"#, #"[一-龥ࠀ-一가-퟿]+"#, #"\p{N}"#]
    /// DeepSeek LLM: letters of the cased scripts only (CJK and others fall to the later steps). Its
    /// class has ranges such as Ὗ-ώ, compiled by code point (GeneralRegexPattern.codePointRanges).
    static let deepseekLLM = [
        #"[\r\n]"#,
        #"\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\#u{1F7D}ᾀ-ᾴᾶ-ᾼ\#u{1FBE}ῂ-ῄῆ-ῌῐ-\#u{1FD3}ῖ-\#u{1FDB}ῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤ\#u{2126}ℨ\#u{212A}-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+"#,
        #"\s?[!-/:-~！-／：-～‘-‟　-。]+"#,
        #"\s+$"#,
        #"[一-龥ࠀ-一가-퟿]+"#,
        #"\p{N}+"#,
    ]
    /// Falcon: runs of punctuation, GPT-2's regex, then digits in threes.
    static let falcon = [#"[\p{P}\$\+<=>\^~\|`]+"#, gpt2, #"[0-9][0-9][0-9]"#]

    static let splits: [String: [String]] = {
        var m: [String: [String]] = [:]
        for (names, list) in [
            (["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano",
              "dbrx", "smaug-bpe"], [llama3]),
            (["tekken"], [tekken]),
            (["qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez"], [qwen2]),
            (["qwen35"], [qwen35]),
            (["gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"], [gpt4o]),
            (["starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b", "mellum2"], digitsThenGPT2),
            (["deepseek-coder"], deepseekCoder),
            (["deepseek-llm"], deepseekLLM),
            (["falcon"], falcon),
        ] as [([String], [String])] {
            for n in names { m[n] = list }
        }
        return m
    }()

    /// Pre-tokenizer names whose original tokenizer.json sets `ignore_merges`: a piece that is itself in
    /// the vocabulary is that one token, whatever the merges would make of it (llama.cpp sets the same).
    static let ignoreMerges: Set<String> = [
        "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano", "tekken",
    ]
}

extension GGUFFile {
    /// tokenizer.json and tokenizer_config.json for this file's tokenizer.
    public func tokenizerFiles() throws -> GGUFTokenizerFiles {
        let model = try string("tokenizer.ggml.model")
        guard let tokens = metadata["tokenizer.ggml.tokens"]?.strings,
              tokens.count == metadata["tokenizer.ggml.tokens"]?.array?.count, !tokens.isEmpty else {
            throw GGUFError.metadata(path: path, key: "tokenizer.ggml.tokens", reason: "missing or not a non-empty array of strings")
        }
        var types: [Int] = []
        if let tt = metadata["tokenizer.ggml.token_type"] {
            guard let a = tt.array, a.count == tokens.count, case let ints = a.compactMap(\.int), ints.count == a.count else {
                throw GGUFError.metadata(path: path, key: "tokenizer.ggml.token_type", reason: "must be \(tokens.count) integers")
            }
            types = ints
        }
        func tokenID(_ key: String) throws -> Int? {
            guard let id = try int("tokenizer.ggml." + key) else { return nil }
            guard id >= 0, id < tokens.count else {
                throw GGUFError.metadata(path: path, key: "tokenizer.ggml." + key, reason: "id \(id) is outside the \(tokens.count)-token vocabulary")
            }
            return id
        }
        var fileMerges: [(String, String)]? = nil
        if let m = metadata["tokenizer.ggml.merges"] {
            guard let list = m.strings, list.count == m.array?.count else {
                throw GGUFError.metadata(path: path, key: "tokenizer.ggml.merges", reason: "must be an array of strings")
            }
            fileMerges = try list.enumerated().map { i, s in
                guard let pair = splitLegacyMerge(s) else {
                    throw GGUFError.metadata(path: path, key: "tokenizer.ggml.merges", reason: "entry \(i) '\(s)' is not two tokens separated by one space")
                }
                return pair
            }
        }

        func type(_ i: Int) -> Int? { i < types.count ? types[i] : nil }
        func requiredMerges() throws -> [(String, String)] {
            guard let fm = fileMerges else {
                throw GGUFError.metadata(path: path, key: "tokenizer.ggml.merges", reason: "missing (a \"\(model)\" tokenizer needs its merges)")
            }
            return fm
        }
        func isolatedSplit(_ regex: String) -> JSONValue {
            ["type": "Split", "pattern": ["Regex": .string(regex)], "behavior": "Isolated", "invert": false]
        }
        // SentencePiece spelling (llama, gemma4): raw-UTF-8 BPE with byte fallback, spaces as "▁".
        let sentencePieceBPE: JSONObject = [
            "type": "BPE", "dropout": JSONValue.null, "unk_token": JSONValue.null, "continuing_subword_prefix": JSONValue.null,
            "end_of_word_suffix": JSONValue.null, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false]
        let spacesAsMetaspace: JSONValue = ["type": "Replace", "pattern": ["String": " "], "content": "\u{2581}"]
        let metaspaceDecoders: [JSONValue] = [
            ["type": "Replace", "pattern": ["String": "\u{2581}"], "content": " "], ["type": "ByteFallback"], ["type": "Fuse"]]

        let byteLevel: Bool
        var vocabTokens = tokens
        var merges: [(String, String)]
        var modelObj: JSONObject
        var preTokenizer: JSONValue
        var normalizer: JSONValue = .null
        let decoder: JSONValue
        switch model {
        case "gpt2":
            byteLevel = true
            // Tokens stored raw are respelled in the byte alphabet, except user-defined ones (type 4): those
            // are added tokens, kept in the vocabulary as the raw text they match ("  " in GPT-NeoX/MPT).
            vocabTokens = tokens.enumerated().map { i, t in
                ByteAlphabet.isSpelled(t) || type(i) == 4 ? t : ByteAlphabet.spell(t)
            }
            merges = try requiredMerges()
            modelObj = ["type": "BPE", "dropout": JSONValue.null, "unk_token": JSONValue.null, "continuing_subword_prefix": "",
                        "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false]
            preTokenizer = ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true]
            decoder = ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true]
        case "llama":
            byteLevel = false
            if let fm = fileMerges { merges = fm } else {
                guard let sv = metadata["tokenizer.ggml.scores"]?.array, sv.count == tokens.count,
                      case let scores = sv.compactMap(\.double), scores.count == tokens.count else {
                    throw GGUFError.metadata(path: path, key: "tokenizer.ggml.scores",
                                             reason: "missing or not \(tokens.count) numbers (needed to recover the merges)")
                }
                merges = Self.sentencePieceMerges(tokens: tokens, scores: scores)
            }
            modelObj = sentencePieceBPE
            // SentencePiece's dummy prefix: "▁" before the text of every fragment that is not an added token
            // (so after a special token too), spaces as "▁" — as the original Llama tokenizer.json's normalizer
            // does and llama.cpp's add_space_prefix. A Metaspace pre-tokenizer (transformers' GGUF conversion)
            // would not prefix a text that already starts with a space: " Hello" would lose its "▁".
            let addSpacePrefix = try bool("tokenizer.ggml.add_space_prefix") ?? true
            normalizer = addSpacePrefix
                ? ["type": "Sequence", "normalizers": [["type": "Prepend", "prepend": "\u{2581}"], spacesAsMetaspace]] : spacesAsMetaspace
            preTokenizer = .null
            decoder = ["type": "Sequence", "decoders": .array(metaspaceDecoders + [["type": "Strip", "content": " ", "start": 1, "stop": 0]])]
        case "gemma4":
            // Gemma 4: BPE over raw UTF-8 (not byte-level) with SentencePiece spelling: spaces become "▁"
            // (no dummy prefix), bytes the vocabulary lacks fall back to <0xNN>. No word-level split: only
            // runs of newlines are pieces of their own (as llama.cpp's GEMMA4 pre-tokenizer splits).
            byteLevel = false
            merges = try requiredMerges()
            modelObj = sentencePieceBPE
            normalizer = spacesAsMetaspace
            preTokenizer = isolatedSplit("\n+")
            decoder = ["type": "Sequence", "decoders": .array(metaspaceDecoders)]
        default:
            throw GGUFError.metadata(path: path, key: "tokenizer.ggml.model", reason: "'\(model)' is not supported; supported: gpt2, llama, gemma4")
        }
        // A split regex named by tokenizer.ggml.pre replaces the pre-tokenizer, whatever the model (as transformers does).
        if let pre = try? string("tokenizer.ggml.pre"), let regexes = GGUFPreTokenizer.splits[pre] {
            preTokenizer = ["type": "Sequence", "pretokenizers": .array(regexes.map(isolatedSplit) + [
                ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false],
            ])]
            if GGUFPreTokenizer.ignoreMerges.contains(pre) { modelObj["ignore_merges"] = true }
        }
        // Keys compared by bytes: a vocabulary may hold canonically equivalent tokens.
        var vocab = OrderedMap<Int>()
        vocab.reserveCapacity(vocabTokens.count)
        for (i, t) in vocabTokens.enumerated() { vocab[t] = i }
        modelObj["vocab"] = .object(JSONObject(vocab.pairs.map { ($0.0, .int($0.1)) }))
        modelObj["merges"] = .array(merges.map { [.string($0.0), .string($0.1)] })

        // Special tokens named by id.
        let bos = try tokenID("bos_token_id"), eos = try tokenID("eos_token_id")
        let unk = try tokenID("unknown_token_id"), pad = try tokenID("padding_token_id")
        let addBOS = try bool("tokenizer.ggml.add_bos_token") ?? (model == "llama")
        let addEOS = try bool("tokenizer.ggml.add_eos_token") ?? false

        // Added tokens: control ones special (byte-level: only those spelled in the byte alphabet),
        // the named ones special, user-defined ones plain.
        var added: [Int: (content: String, special: Bool)] = [:]
        for (i, t) in tokens.enumerated() where type(i) == 3 {
            if !byteLevel || ByteAlphabet.isSpelled(t) { added[i] = (t, true) }
        }
        for id in [unk, bos, eos, pad].compactMap({ $0 }) {
            let t = tokens[id]
            if let v = vocab[t] { added[v] = (t, true) }
        }
        for (i, t) in tokens.enumerated() where type(i) == 4 {
            if let v = vocab[t], added[v] == nil { added[v] = (t, false) }
        }
        let addedTokens: [JSONValue] = added.keys.sorted().map { id in
            ["id": .int(id), "content": .string(added[id]!.content), "single_word": false, "lstrip": false, "rstrip": false,
             "normalized": false, "special": .bool(added[id]!.special)]
        }

        // Post-processor: BOS / EOS around each sequence.
        var single: [JSONValue] = [], pair: [JSONValue] = []
        var specials = JSONObject()
        func special(_ id: Int?, _ typeID: Int) -> JSONValue? {
            guard let id else { return nil }
            let t = tokens[id]
            specials[t] = ["id": .string(t), "ids": [.int(id)], "tokens": [.string(t)]]
            return ["SpecialToken": ["id": .string(t), "type_id": .int(typeID)]]
        }
        if addBOS, let s = special(bos, 0) { single.append(s); pair.append(s) }
        single.append(["Sequence": ["id": "A", "type_id": 0]])
        pair.append(["Sequence": ["id": "A", "type_id": 0]])
        if addEOS, let s = special(eos, 0) { single.append(s); pair.append(s) }
        if addBOS, let s = special(bos, 1) { pair.append(s) }
        pair.append(["Sequence": ["id": "B", "type_id": 1]])
        if addEOS, let s = special(eos, 1) { pair.append(s) }
        let post: JSONValue = ["type": "TemplateProcessing", "single": .array(single), "pair": .array(pair), "special_tokens": .object(specials)]

        let tokenizer: JSONValue = [
            "version": "1.0", "truncation": JSONValue.null, "padding": JSONValue.null, "added_tokens": .array(addedTokens),
            "normalizer": normalizer, "pre_tokenizer": preTokenizer, "post_processor": post, "decoder": decoder,
            "model": .object(modelObj),
        ]
        func name(_ id: Int?) -> JSONValue { id.map { .string(tokens[$0]) } ?? .null }
        var config: JSONObject = [
            "add_bos_token": .bool(addBOS), "add_eos_token": .bool(addEOS), "bos_token": name(bos), "eos_token": name(eos),
            "unk_token": name(unk), "pad_token": name(pad), "clean_up_tokenization_spaces": false,
            "tokenizer_class": "PreTrainedTokenizerFast",
        ]
        if let arch = try? string("general.architecture"), let n = try int(arch + ".context_length") { config["model_max_length"] = .int(n) }
        if let t = metadata["tokenizer.chat_template"] {
            guard let s = t.string else { throw GGUFError.metadata(path: path, key: "tokenizer.chat_template", reason: "must be a string") }
            config["chat_template"] = .string(s)
        }
        return GGUFTokenizerFiles(tokenizerJSON: Data(tokenizer.serialized(.prettySorted).utf8),
                                  tokenizerConfig: Data(JSONValue.object(config).serialized(.prettySorted).utf8),
                                  tokenizerObject: tokenizer, configObject: .object(config))
    }

    /// Merges recovered from a SentencePiece vocabulary, as transformers'
    /// generate_merges does with scores: every split of every token into two
    /// vocabulary tokens (per token ordered by the parts' ids), then all of
    /// them ordered by the token's score, then the parts' lengths in code
    /// points, all descending, ties kept in that order.
    public static func sentencePieceMerges(tokens: [String], scores: [Double]) -> [(String, String)] {
        var vocab: [String: Int] = [:]
        for (i, t) in tokens.enumerated() { vocab[t] = i }
        // Python's dict(zip(tokens, scores)): first position, last value.
        var scoreOf: [String: Double] = [:]
        var order: [String] = []
        for (t, s) in zip(tokens, scores) {
            if scoreOf[t] == nil { order.append(t) }
            scoreOf[t] = s
        }
        struct Candidate { let l: String, r: String, score: Double, ll: Int, lr: Int, seq: Int }
        var all: [Candidate] = []
        for t in order {
            let scalars = Array(t.unicodeScalars)
            guard scalars.count > 1 else { continue }
            var local: [(String, String, Int, Int)] = []
            for i in 1..<scalars.count {
                var l = String.UnicodeScalarView(), r = String.UnicodeScalarView()
                l.append(contentsOf: scalars[..<i])
                r.append(contentsOf: scalars[i...])
                let ls = String(l), rs = String(r)
                if let li = vocab[ls], let ri = vocab[rs] { local.append((ls, rs, li, ri)) }
            }
            local.sort { ($0.2, $0.3) < ($1.2, $1.3) }
            for (ls, rs, _, _) in local {
                all.append(Candidate(l: ls, r: rs, score: scoreOf[t]!, ll: ls.unicodeScalars.count, lr: rs.unicodeScalars.count, seq: all.count))
            }
        }
        all.sort { a, b in
            if a.score != b.score { return a.score > b.score }
            if a.ll != b.ll { return a.ll > b.ll }
            if a.lr != b.lr { return a.lr > b.lr }
            return a.seq < b.seq
        }
        return all.map { ($0.l, $0.r) }
    }
}
