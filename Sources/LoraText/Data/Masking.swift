import Foundation
import LoraBase

// Loss masks: which tokens of a sample are trained.
//
// The rule (default, TrainOn.assistant): every assistant turn's content AND the
// text the template writes to close that turn (its end-of-turn token(s), e.g.
// "<|im_end|>\n" for ChatML, "<|eot_id|>" for Llama 3, " </s>" for Llama 2) are
// trained; nothing of system/user turns or of the role headers is.
//
// The spans come from the template itself, not from hard-coded markers. For
// assistant message i (0-based, in the conversation `m`):
//   P = render(m[..<i],  add_generation_prompt: true)   — everything before the reply
//   F = render(m[...i],  add_generation_prompt: false)  — through the reply
//   W = render(m,        add_generation_prompt: false)  — the whole sample
// and the span is W[P.count ..< F.count] (UTF-8 bytes), i.e. F minus P: the
// reply plus whatever the template writes after it up to the next turn. This is
// what TRL's conversational prompt-completion masking trains too (the completion
// is the full rendering minus the prompt rendered with the generation prompt).
// Checked: W starts with P and F starts with P; otherwise the template rewrites
// earlier text and we throw DatasetError.templatePrefix naming template and turn.
// Some templates write a trailer only at the very end of a conversation (Phi-3
// appends eos_token when add_generation_prompt is false), so F is not a prefix of
// W for an inner turn: the span then ends where F and W part, moved back to the
// start of any token that straddles that point (never a piece of the next header).
// What F has beyond that point must also end W (a trailer); otherwise the template
// renders the turn differently once later turns follow (Qwen3 drops the empty
// <think></think> of earlier replies) and that is the error above — for which the
// dataset renders one sample per assistant turn instead (renderPerTurn).
//
// Tokens: W is tokenized once, WITHOUT the post-processor's special tokens (as
// transformers' apply_chat_template(tokenize=True) does, so a template that
// writes bos_token gets exactly one BOS), with each token's UTF-8 byte range.
// A token is trained iff its start byte lies inside a span (a token straddling a
// span's start is not trained; one straddling its end is). transformers'
// return_assistant_tokens_mask trains any token overlapping a span; the two agree
// whenever no token straddles a span boundary, as in every family of the fixtures.
//
// Labels are unshifted (labels[t] = inputIDs[t] or -100), as transformers expects.

/// What the dataset path needs of a tokenizer (LoraText's Tokenizer conforms through an adapter).
public protocol DataTokenizer {
    /// `tokenizers`' encode(text).ids; with `addSpecialTokens` the post-processor's tokens (BOS…).
    func encodeIDs(_ text: String, addSpecialTokens: Bool) throws -> [Int]
    /// ids without post-processor tokens, each with its UTF-8 byte range [start, end) in `text`.
    func encodeOffsets(_ text: String) throws -> [TokenOffset]
    /// decode(ids, skip_special_tokens=False).
    func decodeIDs(_ ids: [Int]) -> String
    var vocabularySize: Int { get }
    var eosID: Int? { get }
    var padID: Int? { get }
    /// Whether several threads may use it at once (Dataset.load then spreads lines over the CPUs).
    var concurrencySafe: Bool { get }
    /// transformers' `tokenizer(text, text_pair, truncation=True, max_length=)` ids (a classifier's input).
    func encodePair(_ text: String, _ pair: String?, maxLength: Int) throws -> (ids: [Int], truncated: Bool)
    /// transformers' `tokenizer(words, is_split_into_words=True, truncation=True, max_length=)`: ids and word ids.
    func encodeWords(_ words: [String], maxLength: Int) throws -> (ids: [Int], wordIDs: [Int?], truncated: Bool)
    /// transformers' `tokenizer(question, context, truncation="only_second", max_length=, stride=,
    /// return_overflowing_tokens=True, return_offsets_mapping=True)`: one row per window of the context.
    func encodeQuestionContext(_ question: String, _ context: String, maxLength: Int, stride: Int) throws -> [Tokenizer.PairRow]
}

extension DataTokenizer {
    /// Without the tokenizer's own word handling: not available.
    public func encodeWords(_ words: [String], maxLength: Int) throws -> (ids: [Int], wordIDs: [Int?], truncated: Bool) {
        throw DatasetError.invalidOption("the model has no tokenizer (tokenizer.json) to split words into sub-tokens: "
                                         + "give {\"input_ids\", \"labels\"} lines")
    }

    /// Without the tokenizer's own offsets: not available.
    public func encodeQuestionContext(_ question: String, _ context: String, maxLength: Int, stride: Int) throws -> [Tokenizer.PairRow] {
        throw DatasetError.invalidOption("the model has no tokenizer (tokenizer.json) to split a question and its context into "
                                         + "tokens: give {\"input_ids\", \"start_positions\", \"end_positions\"} lines")
    }

    /// Without the tokenizer's post-processor: the text's ids (with special tokens) cut to maxLength; no pairs.
    public func encodePair(_ text: String, _ pair: String?, maxLength: Int) throws -> (ids: [Int], truncated: Bool) {
        guard pair == nil else { throw DatasetError.invalidOption("this tokenizer cannot encode text pairs") }
        let ids = try encodeIDs(text, addSpecialTokens: true)
        return (Array(ids.prefix(maxLength)), ids.count > maxLength)
    }
}

extension DataTokenizer {
    public var concurrencySafe: Bool { false }
}

/// What the dataset path needs of a chat template.
public protocol ConversationRenderer {
    /// Names the template in errors (its name or file).
    var templateName: String { get }
    /// The template's text for `messages`, as apply_chat_template(tokenize=False) gives it.
    func renderConversation(_ messages: [ChatMessage], addGenerationPrompt: Bool) throws -> String
    /// `messages` made ready for several renders of their prefixes.
    func prepare(_ messages: [ChatMessage]) -> PreparedConversation
    /// Whether several threads may render with it at once.
    var concurrencySafe: Bool { get }
    /// This renderer with more template variables (a conversation's `tools`); a renderer without
    /// variables returns itself.
    func with(variables: [String: JSONValue]) -> ConversationRenderer
}

/// One conversation, rendered whole and by prefixes (Masking renders two prefixes per assistant turn).
public protocol PreparedConversation {
    /// The text of messages[..<count].
    func render(prefix count: Int, addGenerationPrompt: Bool) throws -> String
    /// The whole conversation's text (no generation prompt) and, where the renderer can tell, where
    /// its loop over the messages wrote each one.
    func renderWhole() throws -> (text: String, turns: TurnOffsets?)
    /// For a template with `{% generation %}` blocks: the whole text and the byte ranges the blocks wrote
    /// (transformers' assistant mask); nil for any other.
    func generationSpans() throws -> (text: String, spans: [Range<Int>])?
}

extension PreparedConversation {
    public func generationSpans() throws -> (text: String, spans: [Range<Int>])? { nil }
}

extension ConversationRenderer {
    public var concurrencySafe: Bool { false }
    public func with(variables: [String: JSONValue]) -> ConversationRenderer { self }
    public func prepare(_ messages: [ChatMessage]) -> PreparedConversation { SlicingConversation(renderer: self, messages: messages) }
}

/// A renderer's prefixes by slicing the messages (no turn offsets).
struct SlicingConversation<R: ConversationRenderer>: PreparedConversation {
    let renderer: R
    let messages: [ChatMessage]
    func render(prefix count: Int, addGenerationPrompt: Bool) throws -> String {
        try renderer.renderConversation(Array(messages.prefix(count)), addGenerationPrompt: addGenerationPrompt)
    }
    func renderWhole() throws -> (text: String, turns: TurnOffsets?) {
        (try renderer.renderConversation(messages, addGenerationPrompt: false), nil)
    }
}

public enum TrainOn: String, Sendable, CaseIterable {
    /// Every assistant turn (content + end-of-turn).
    case assistant
    /// Every token.
    case all
    /// Only the final assistant turn.
    case last
}

/// A rendered conversation and the byte spans to train.
public struct RenderedConversation: Equatable, Sendable {
    public var text: String
    /// UTF-8 byte ranges of `text`, ascending, one per trained assistant turn.
    public var spans: [Range<Int>]
    /// Where F was not a prefix of the whole rendering (an end-of-conversation trailer):
    /// the span's end is moved back to the start of a token straddling it.
    public var snapEnds: Set<Int>
}

public enum Masking {
    /// Renders `messages` and finds the assistant spans (see the rule above).
    /// `file`/`line` only name the sample in errors.
    /// `byteLimit(whole)`: the byte where truncation will cut the whole rendering (nil: none); turns
    /// starting there or later are not rendered (their tokens would be cut), so a conversation far
    /// longer than max_seq_len costs only the renders of the turns that are kept.
    public static func render(_ messages: [ChatMessage], with r: ConversationRenderer, trainOn: TrainOn,
                              file: String = "-", line: Int = 0,
                              byteLimit: ((String) throws -> Int?)? = nil) throws -> RenderedConversation {
        let conversation = r.prepare(messages)
        // A template that marks assistant output with {% generation %} (TRL's *_training.jinja) gives the spans
        // itself, as transformers' return_assistant_tokens_mask takes them.
        // A template whose blocks wrote nothing here (a block inside a macro, not the template's own output) falls
        // back to the rule below.
        if trainOn != .all, let g = try conversation.generationSpans(), !g.spans.isEmpty {
            let spans = trainOn == .last ? Array(g.spans.suffix(1)) : g.spans
            return RenderedConversation(text: g.text, spans: spans, snapEnds: [])
        }
        let (whole, turns) = try conversation.renderWhole()
        let w = Array(whole.utf8)
        let limit = try byteLimit?(whole) ?? Int.max
        var assistant = messages.indices.filter { messages[$0].role == "assistant" }
        if trainOn == .all { return RenderedConversation(text: whole, spans: [0..<w.count], snapEnds: []) }
        if trainOn == .last, let l = assistant.last { assistant = [l] }
        let turn = TurnSpans(conversation: conversation, w: w, limit: limit, template: r.templateName, file: file, line: line)
        if assistant.count > onePassTurns, let turns,
           let (spans, snapped) = try turn.onePass(assistant, messages: messages, turns: turns) {
            return RenderedConversation(text: whole, spans: spans, snapEnds: snapped)
        }
        var spans: [Range<Int>] = []
        var snap: Set<Int> = []
        for i in assistant {
            guard let (p, end, snapped) = try turn.exact(i) else { break }  // this turn and every later one start past the truncation
            if snapped { snap.insert(spans.count) }
            if let last = spans.last, p < last.upperBound {
                throw turn.error(i, "this turn's span starts inside the previous assistant turn's span")
            }
            if end > p { spans.append(p..<end) }
        }
        return RenderedConversation(text: whole, spans: spans, snapEnds: snap)
    }

    /// One sample per trained assistant turn, for a template that renders earlier turns differently
    /// once later ones follow (Qwen3 drops the reasoning of replies before the last user message): sample
    /// k is the conversation through assistant turn k rendered as the template renders it when that turn
    /// is the last — F_k = render(m[...i_k]) — with only turn k trained: F_k minus P_k = render(m[..<i_k],
    /// add_generation_prompt: true). So each reply is trained in the form the model produces it at
    /// inference, earlier turns in the form it then sees them. F_k must start with P_k; a template that
    /// rewrites even that is the error `render` gives. `trainOn` .last: the last turn's sample alone.
    public static func renderPerTurn(_ messages: [ChatMessage], with r: ConversationRenderer, trainOn: TrainOn,
                                     file: String = "-", line: Int = 0) throws -> [RenderedConversation] {
        let conversation = r.prepare(messages)
        var assistant = messages.indices.filter { messages[$0].role == "assistant" }
        if trainOn == .last, let l = assistant.last { assistant = [l] }
        return try assistant.map { i in
            let p = try conversation.render(prefix: i, addGenerationPrompt: true)
            let f = try conversation.render(prefix: i + 1, addGenerationPrompt: false)
            let pb = p.utf8.count, fb = f.utf8.count
            guard f.utf8.starts(with: p.utf8) else {
                throw DatasetError.templatePrefix(template: r.templateName, file: file, line: line, turn: i, detail:
                    "even with this turn last, the conversation rendered through it does not start with the conversation rendered before it (with the generation prompt)")
            }
            return RenderedConversation(text: f, spans: fb > pb ? [pb..<fb] : [], snapEnds: [])
        }
    }

    /// Above this many assistant turns, spans come from one pass (TurnSpans.onePass).
    static let onePassTurns = 8

    /// One conversation's assistant spans, turn by turn (`exact`) or from one render (`onePass`).
    struct TurnSpans {
        let conversation: PreparedConversation
        let w: [UInt8]
        let limit: Int
        let template, file: String
        let line: Int

        func error(_ i: Int, _ detail: String) -> DatasetError {
            .templatePrefix(template: template, file: file, line: line, turn: i, detail: detail)
        }

        /// Turn i's span [start, end) in the whole rendering W by the rule at the top of this file
        /// (two prefix renders); `snapped` when F was not a prefix of W (an end-of-conversation
        /// trailer). nil when the turn starts at or past the truncation.
        func exact(_ i: Int) throws -> (start: Int, end: Int, snapped: Bool)? {
            let p = Array(try conversation.render(prefix: i, addGenerationPrompt: true).utf8)
            if p.count >= limit { return nil }
            let f = Array(try conversation.render(prefix: i + 1, addGenerationPrompt: false).utf8)
            guard w.starts(with: p) else {
                throw error(i, "the conversation rendered before this assistant turn (with the generation prompt) is not a prefix of the whole conversation")
            }
            guard f.starts(with: p) else {
                throw error(i, "the conversation rendered through this assistant turn does not start with the conversation rendered before it (with the generation prompt)")
            }
            if w.starts(with: f) { return (p.count, f.count, false) }
            var k = p.count
            while k < f.count, k < w.count, f[k] == w[k] { k += 1 }
            // Only a trailer the template writes at the very end of a conversation may differ:
            // the rest of F must end the whole rendering too.
            guard w.count >= f.count - k, w[(w.count - (f.count - k))...].elementsEqual(f[k...]) else {
                throw error(i, "the conversation rendered through this assistant turn is not a prefix of the whole conversation (the template renders the turn differently once later turns follow)")
            }
            return (p.count, k, true)
        }

        /// `text`'s UTF-8 without leading and trailing ASCII whitespace (a template that trims other
        /// whitespace fails the check below and is done turn by turn: slower, never wrong).
        func trimmedUTF8(_ text: String) -> [UInt8] {
            let b = Array(text.utf8)
            func space(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D }
            guard let lo = b.firstIndex(where: { !space($0) }), let hi = b.lastIndex(where: { !space($0) }) else { return [] }
            return Array(b[lo...hi])
        }

        /// Whether w[range] holds `needle` (empty: yes).
        func contains(_ w: [UInt8], _ range: Range<Int>, _ needle: [UInt8]) -> Bool {
            guard let first = needle.first else { return true }
            guard range.count >= needle.count else { return false }
            return w.withUnsafeBufferPointer { h in
                needle.withUnsafeBufferPointer { n in
                    var i = range.lowerBound
                    let last = range.upperBound - n.count
                    while i <= last {
                        if h[i] == first, memcmp(h.baseAddress! + i, n.baseAddress!, n.count) == 0 { return true }
                        i += 1
                    }
                    return false
                }
            }
        }

        /// Spans of many assistant turns in time linear in the conversation's length. The whole
        /// rendering recorded where the template's loop wrote each message (TurnOffsets). For a
        /// template whose loop writes each turn on its own (most real templates), a span sits at the
        /// same place relative to its turn's iteration in every turn but the last: the first assistant
        /// turn's exact span [p₀, f₀) gives the offsets δp = p₀ − starts[k₀] (after the header the
        /// assistant iteration writes, or before a header the previous iteration wrote) and
        /// δf = f₀ − starts[k₀+1], and turn i's candidate is [starts[k] + δp, starts[k+1] + δf),
        /// provided the bytes between each boundary and its offset repeat turn 0's (a trailer the
        /// template writes only at the end — turn 0 snapped — carries over as a snapped end).
        /// The first three assistant turns, the last two and three spread between are done exactly;
        /// a candidate that differs from its exact span returns nil and the caller does every turn
        /// exactly. The last turn (which templates may close differently) and every turn whose
        /// neighbouring roles differ from turn 0's (two assistant turns in a row, a turn after a tool
        /// result…) take their exact spans. So a template is trusted turn-local only where these checks
        /// agree. Each candidate must also hold its reply's text (trimmed) as written, so a template
        /// that rewrites a reply in the whole rendering (drops its reasoning, escapes it) is done
        /// turn by turn. What remains trusted, not checked, on the unchecked turns of the same
        /// placement: that the prefix renders would put the same header and closing there.
        /// Returns the spans (empty ones dropped) and the indices of snapped ones among them.
        func onePass(_ assistant: [Int], messages: [ChatMessage], turns: TurnOffsets) throws -> (spans: [Range<Int>], snapped: Set<Int>)? {
            let roles = messages.map(\.role)
            guard let i0 = assistant.first else { return ([], []) }
            /// A turn's neighbours: templates write a turn by its context (the generation prompt only after a
            /// user turn, a separator unless an assistant turn follows…): only turns placed as turn 0 is
            /// take its offsets; any other is done exactly.
            func neighbours(_ i: Int) -> String {
                (i > 0 ? roles[i - 1] : "^") + "|" + (i + 1 < roles.count ? roles[i + 1] : "$")
            }
            let placed = neighbours(i0)
            func boundary(_ k: Int) -> Int? {
                guard k >= 0, k <= turns.starts.count else { return nil }
                return k < turns.starts.count ? turns.starts[k] : turns.end
            }
            guard let e0 = try? exact(i0),
                  let s0 = boundary(i0 - turns.firstMessage), let n0 = boundary(i0 - turns.firstMessage + 1) else { return nil }
            let dp = e0.start - s0, df = e0.end - n0
            /// The bytes between boundary b and b + d (either order), or nil outside W.
            func between(_ b: Int, _ d: Int) -> ArraySlice<UInt8>? {
                let lo = min(b, b + d), hi = max(b, b + d)
                guard lo >= 0, hi <= w.count else { return nil }
                return w[lo..<hi]
            }
            guard let headerBytes = between(s0, dp), let closingBytes = between(n0, df) else { return nil }
            func candidate(_ i: Int) -> Range<Int>? {
                let k = i - turns.firstMessage
                guard let s = boundary(k), let n = boundary(k + 1), s + dp <= n + df,
                      between(s, dp)?.elementsEqual(headerBytes) == true,
                      between(n, df)?.elementsEqual(closingBytes) == true else { return nil }
                // The reply itself must be there as written (trimmed): a template that rewrites a reply
                // (drops its reasoning, escapes it) is done turn by turn.
                if !contains(w, (s + dp)..<(n + df), trimmedUTF8(messages[i].content)) { return nil }
                return (s + dp)..<(n + df)
            }
            var spans: [Range<Int>] = []
            var snapped: [Bool] = []
            var done: Set<Int> = []  // turns whose span is exact already
            let last = assistant.count - 1
            for (j, i) in assistant.enumerated() {
                if j == last || neighbours(i) != placed {
                    // The last turn (closed as only the last is) and turns placed otherwise: exactly. An error
                    // goes to the caller's turn-by-turn pass, which reports the first failing turn.
                    let e: (start: Int, end: Int, snapped: Bool)?
                    do { e = try exact(i) } catch { return nil }
                    guard let e else { break }  // at or past the truncation
                    spans.append(e.start..<e.end)
                    snapped.append(e.snapped)
                    done.insert(j)
                    continue
                }
                guard let c = candidate(i) else { return nil }
                if c.lowerBound >= limit { break }
                spans.append(c)
                snapped.append(e0.snapped)
            }
            for j in 1..<max(spans.count, 1) where spans[j].lowerBound < spans[j - 1].upperBound { return nil }
            let n = spans.count
            if n == 0 { return ([], []) }
            var checks = Set(Array(0..<n).prefix(3) + Array(0..<n).suffix(2))
            for q in 1...3 { checks.insert(min(n - 1, q * n / 4)) }
            for j in checks.sorted() where !done.contains(j) {
                // An error here is left to the caller's turn-by-turn pass, which reports the first failing turn.
                guard let e = try? exact(assistant[j]), e.snapped == snapped[j],
                      e.start == spans[j].lowerBound, e.end == spans[j].upperBound else { return nil }
            }
            var kept: [Range<Int>] = [], snap: Set<Int> = []
            for (span, s) in zip(spans, snapped) where !span.isEmpty {
                if s { snap.insert(kept.count) }
                kept.append(span)
            }
            return (kept, snap)
        }
    }

    /// labels for tokens with byte offsets: token t is trained iff its start lies in a span.
    /// Spans in `snapEnds` end at the start of a token that straddles their end.
    public static func labels(_ tokens: [TokenOffset], spans: [Range<Int>], snapEnds: Set<Int> = []) -> [Int] {
        var spans = spans
        for k in snapEnds where k < spans.count {
            let e = spans[k].upperBound
            if let t = tokens.first(where: { $0.start < e && $0.end > e }) {
                spans[k] = spans[k].lowerBound..<max(spans[k].lowerBound, t.start)
            }
        }
        var out = [Int](repeating: -100, count: tokens.count)
        var s = 0, previousStart = 0
        for (t, tok) in tokens.enumerated() {
            if tok.start < previousStart { s = 0 }  // offsets are ascending; be safe if not
            previousStart = tok.start
            while s < spans.count, spans[s].upperBound <= tok.start { s += 1 }
            if s < spans.count, spans[s].contains(tok.start) { out[t] = tok.id }
        }
        return out
    }
}
