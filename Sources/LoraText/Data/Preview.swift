import LoraBase
// What `lora-gpu data preview` shows: each sample's text with the trained tokens
// set apart from the masked ones, and JSON lines of ids and labels.

public enum PreviewStyle: Sendable {
    /// Trained text in green, masked text dim (a terminal).
    case color
    /// Trained text inside «…» (not a terminal).
    case brackets
}

public enum Preview {
    /// The sample as (text, trained) pieces in token order, adjacent pieces of the same kind merged.
    /// Text-based samples slice their source text by the tokens' byte ranges (a token added by the
    /// post-processor is decoded); pre-tokenized samples decode each run of tokens.
    public static func pieces(_ p: ProcessedSample, tokenizer: DataTokenizer) -> [(text: String, trained: Bool)] {
        let s = p.sample
        var out: [(text: String, trained: Bool)] = []
        func add(_ text: String, _ trained: Bool) {
            guard !text.isEmpty else { return }
            if let last = out.last, last.trained == trained { out[out.count - 1].text += text } else { out.append((text, trained)) }
        }
        if let text = p.text, let offsets = p.offsets {
            let bytes = Array(text.utf8)
            var cursor = 0
            var pending: [UInt8] = []
            var pendingTrained = false
            func flushPending() {
                add(String(decoding: pending, as: UTF8.self), pendingTrained)
                pending = []
            }
            for t in 0..<s.inputIDs.count {
                let trained = s.labels[t] != -100
                guard t < offsets.count, let r = offsets[t] else {
                    flushPending()
                    add(tokenizer.decodeIDs([s.inputIDs[t]]), trained)
                    continue
                }
                let lo = min(max(r.lowerBound, cursor), bytes.count), hi = min(max(r.upperBound, lo), bytes.count)
                // Bytes no token covers (a combining mark composed into the token before it, whitespace
                // an added token's lstrip/rstrip or the normalizer removed) go with the piece before them.
                if lo > cursor { pending += bytes[cursor..<lo] }
                if trained != pendingTrained { flushPending(); pendingTrained = trained }
                pending += bytes[lo..<hi]
                cursor = max(cursor, hi)
            }
            flushPending()
            return out
        }
        var run: [Int] = [], runTrained = false
        for (id, l) in zip(s.inputIDs, s.labels) {
            let trained = l != -100
            if trained != runTrained, !run.isEmpty { add(tokenizer.decodeIDs(run), runTrained); run = [] }
            runTrained = trained
            run.append(id)
        }
        if !run.isEmpty { add(tokenizer.decodeIDs(run), runTrained) }
        return out
    }

    public static func render(_ p: ProcessedSample, tokenizer: DataTokenizer, style: PreviewStyle) -> String {
        let s = p.sample
        var header = "── line \(s.line)"
        if let e = p.expansion { header += " (assistant turn \(e.turn) of \(e.of): the template rewrites earlier turns, so each turn is a sample)" }
        header += ": \(s.inputIDs.count) tokens, \(s.trainedTokens) trained"
        if p.truncated { header += ", truncated from \(p.fullLength)" }
        var body = ""
        for (text, trained) in pieces(p, tokenizer: tokenizer) {
            switch (style, trained) {
            case (.brackets, true): body += "«" + text + "»"
            case (.brackets, false): body += text
            case (.color, true): body += "\u{1B}[1;32m" + text + "\u{1B}[0m"
            case (.color, false): body += "\u{1B}[2m" + text + "\u{1B}[0m"
            }
        }
        return header + "\n" + body + (body.hasSuffix("\n") ? "" : "\n")
    }

    /// {"line": N, "input_ids": [...], "labels": [...]} (labels unshifted, -100 where masked).
    public static func jsonLine(_ s: TokenizedSample) -> String {
        "{\"line\": \(s.line), \"input_ids\": [\(s.inputIDs.map(String.init).joined(separator: ", "))], \"labels\": [\(s.labels.map(String.init).joined(separator: ", "))]}"
    }

    /// {"line": N, "skipped": "reason"}.
    public static func jsonSkipped(line: Int, reason: String) -> String {
        "{\"line\": \(line), \"skipped\": \(JSONValue.string(reason).serialized())}"
    }
}
