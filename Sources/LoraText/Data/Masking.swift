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
// <think></think> of earlier replies) and that is the error above.
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
    /// A sample's strings as the tokenizer will see them (e.g. NFC where its normalizer composes,
    /// so that token offsets line up with the text); the ids are the same either way.
    func prepareText(_ s: String) -> String
}

extension DataTokenizer {
    public func prepareText(_ s: String) -> String { s }
}

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

/// What the dataset path needs of a chat template.
public protocol ConversationRenderer {
    /// Names the template in errors (its name or file).
    var templateName: String { get }
    /// The template's text for `messages`, as apply_chat_template(tokenize=False) gives it.
    func renderConversation(_ messages: [ChatMessage], addGenerationPrompt: Bool) throws -> String
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
        let whole = try r.renderConversation(messages, addGenerationPrompt: false)
        let w = Array(whole.utf8)
        let limit = try byteLimit?(whole) ?? Int.max
        var assistant = messages.indices.filter { messages[$0].role == "assistant" }
        if trainOn == .all { return RenderedConversation(text: whole, spans: [0..<w.count], snapEnds: []) }
        if trainOn == .last, let l = assistant.last { assistant = [l] }
        var spans: [Range<Int>] = []
        var snap: Set<Int> = []
        for i in assistant {
            let p = Array(try r.renderConversation(Array(messages[..<i]), addGenerationPrompt: true).utf8)
            if p.count >= limit { break }  // this turn and every later one start past the truncation
            let f = Array(try r.renderConversation(Array(messages[...i]), addGenerationPrompt: false).utf8)
            guard w.starts(with: p) else {
                throw DatasetError.templatePrefix(
                    template: r.templateName, file: file, line: line, turn: i,
                    detail: "the conversation rendered before this assistant turn (with the generation prompt) is not a prefix of the whole conversation")
            }
            guard f.starts(with: p) else {
                throw DatasetError.templatePrefix(
                    template: r.templateName, file: file, line: line, turn: i,
                    detail: "the conversation rendered through this assistant turn does not start with the conversation rendered before it (with the generation prompt)")
            }
            var end = f.count
            if !w.starts(with: f) {
                var k = p.count
                while k < f.count, k < w.count, f[k] == w[k] { k += 1 }
                // Only a trailer the template writes at the very end of a conversation may differ:
                // the rest of F must end the whole rendering too.
                guard w.count >= f.count - k, w[(w.count - (f.count - k))...].elementsEqual(f[k...]) else {
                    throw DatasetError.templatePrefix(
                        template: r.templateName, file: file, line: line, turn: i,
                        detail: "the conversation rendered through this assistant turn is not a prefix of the whole conversation (the template renders the turn differently once later turns follow)")
                }
                end = k
                snap.insert(spans.count)
            }
            if let last = spans.last, p.count < last.upperBound {
                throw DatasetError.templatePrefix(
                    template: r.templateName, file: file, line: line, turn: i,
                    detail: "this turn's span starts inside the previous assistant turn's span")
            }
            if end > p.count { spans.append(p.count..<end) }
        }
        return RenderedConversation(text: whole, spans: spans, snapEnds: snap)
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
