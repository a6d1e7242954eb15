import Foundation
import LoraBase

// A JSONL file → tokenized samples with labels, truncated, with figures.
//
//   conversation (messages / sharegpt)  rendered by the chat template, masked by
//                                       Masking (TrainOn), tokenized once without
//                                       the post-processor's special tokens;
//   prompt-completion                   with a chat template: [user: prompt,
//                                       assistant: completion], as a conversation;
//                                       without: plain text prompt + completion
//                                       with the post-processor's tokens, only the
//                                       completion trained (and the EOS, appended
//                                       when the post-processor adds none, so the
//                                       model learns to stop);
//   text                                encode(text) with the post-processor's
//                                       tokens, every token trained;
//   pre-tokenized                       as given (labels default: input_ids).
// Truncation keeps the first maxSeqLen tokens. A sample left with no trained
// label (after the model's shift) is skipped and counted.

public struct DatasetOptions: Equatable, Sendable {
    /// Keep the first maxSeqLen tokens of each sample (nil: no limit).
    public var maxSeqLen: Int?
    public var trainOn: TrainOn
    /// Bad lines become a count with reasons instead of an error.
    public var skipBadLines: Bool
    public init(maxSeqLen: Int? = nil, trainOn: TrainOn = .assistant, skipBadLines: Bool = false) {
        self.maxSeqLen = maxSeqLen
        self.trainOn = trainOn
        self.skipBadLines = skipBadLines
    }
}

/// One processed sample with what a preview shows.
public struct ProcessedSample: Sendable {
    public var sample: TokenizedSample
    /// Tokens before truncation.
    public var fullLength: Int
    public var truncated: Bool { fullLength > sample.inputIDs.count }
    /// The text the ids come from and each kept token's byte range in it (nil for a
    /// token added by the post-processor); nil for pre-tokenized samples.
    public var text: String?
    public var offsets: [Range<Int>?]?
    /// A conversation whose template rewrites earlier turns becomes one sample per assistant turn
    /// (Masking.renderPerTurn): this sample's turn (1-based) and how many the line gave; nil otherwise.
    public var expansion: (turn: Int, of: Int)? = nil
}

/// Why a line gave no sample.
public enum SkipReason: Equatable, Hashable, Sendable, CustomStringConvertible {
    case badLine(String)
    case noTrainedTokens(truncated: Bool)
    public var category: String {
        switch self {
        case .badLine: return "bad line"
        case .noTrainedTokens(let t): return t ? "no trained token left after truncation" : "no trained token"
        }
    }
    public var description: String {
        switch self {
        case .badLine(let r): return r
        case .noTrainedTokens: return category
        }
    }
}

public struct DatasetStatistics: Equatable, Sendable {
    public var samples = 0
    public var tokens = 0
    public var trainedTokens = 0
    public var truncated = 0
    /// Skipped lines by category ("bad line", "no trained token", …).
    public var skipped: [String: Int] = [:]
    public var skippedTotal: Int { skipped.values.reduce(0, +) }
    /// Conversations rendered one sample per assistant turn (their template rewrites earlier turns), and
    /// the samples they gave (counted in `samples` where they train a token).
    public var expandedConversations = 0, expandedSamples = 0
    /// Turns of expanded conversations left with no trained token (cut off by max_seq_len): not samples.
    public var droppedTurns = 0
    /// Sample lengths (after truncation): min, median, p90, max (0 when empty).
    public var lengthMin = 0, lengthMedian = 0, lengthP90 = 0, lengthMax = 0

    public init() {}

    public init(samples s: [TokenizedSample], truncated: Int, skipped: [String: Int]) {
        samples = s.count
        tokens = s.reduce(0) { $0 + $1.inputIDs.count }
        trainedTokens = s.reduce(0) { $0 + $1.trainedTokens }
        self.truncated = truncated
        self.skipped = skipped
        let lengths = s.map { $0.inputIDs.count }.sorted()
        if !lengths.isEmpty {
            lengthMin = lengths[0]
            lengthMax = lengths[lengths.count - 1]
            lengthMedian = Self.percentile(lengths, 50)
            lengthP90 = Self.percentile(lengths, 90)
        }
    }

    /// Nearest-rank percentile of sorted values (the smallest value with at least p% at or below it).
    static func percentile(_ sorted: [Int], _ p: Int) -> Int {
        let rank = max(1, (p * sorted.count + 99) / 100)
        return sorted[min(rank, sorted.count) - 1]
    }

    public var summary: String {
        var lines = [
            "samples        \(samples)",
            "tokens         \(tokens)",
            "trained tokens \(trainedTokens)\(tokens > 0 ? String(format: " (%.1f%%)", 100 * Double(trainedTokens) / Double(tokens)) : "")",
            "truncated      \(truncated)",
        ]
        if expandedConversations > 0 {
            lines.append("expanded       \(expandedConversations) conversation(s) into \(expandedSamples) samples, one per assistant turn "
                         + "(the template renders earlier turns differently once later ones follow)"
                         + (droppedTurns > 0 ? "; \(droppedTurns) turn(s) left no trained token within max_seq_len and were dropped" : ""))
        }
        lines += [
            "skipped        \(skippedTotal)",
        ]
        for (k, v) in skipped.sorted(by: { $0.key < $1.key }) { lines.append("  \(k): \(v)") }
        lines.append("length         min \(lengthMin), median \(lengthMedian), p90 \(lengthP90), max \(lengthMax)")
        return lines.joined(separator: "\n")
    }
}

public struct LoadedDataset: Sendable {
    public var file: String
    public var format: DatasetFormat
    /// Kept samples in file order.
    public var samples: [TokenizedSample]
    /// Every line that gave no sample, in file order: (line, reason).
    public var skipped: [(line: Int, reason: SkipReason)]
    public var statistics: DatasetStatistics
    /// The first `previewCount` kept samples with their text (for `data preview`).
    public var previews: [ProcessedSample] = []
}

/// Turns records into tokenized samples for one tokenizer, template and options.
public struct SampleProcessor {
    public var tokenizer: DataTokenizer
    public var template: ConversationRenderer?
    public var options: DatasetOptions
    public var file: String

    public init(tokenizer: DataTokenizer, template: ConversationRenderer?, options: DatasetOptions, file: String) {
        self.tokenizer = tokenizer
        self.template = template
        self.options = options
        self.file = file
    }

    /// The sample of one record (truncated; may have no trained token: the caller decides); the first
    /// of `processAll`'s when a conversation is expanded per turn.
    public func process(_ record: DatasetRecord, format: DatasetFormat, line: Int) throws -> ProcessedSample {
        try processAll(record, format: format, line: line)[0]
    }

    /// The samples of one record: one, or one per assistant turn of a conversation whose template
    /// rewrites earlier turns (Masking.renderPerTurn).
    public func processAll(_ record: DatasetRecord, format: DatasetFormat, line: Int) throws -> [ProcessedSample] {
        let messages: [ChatMessage]
        var tools: JSONValue? = nil
        switch record {
        case .conversation(let m, let t): messages = m; tools = t
        case .promptCompletion(let prompt, let completion) where template != nil:
            messages = [ChatMessage(role: "user", content: prompt), ChatMessage(role: "assistant", content: completion)]
        default: return [try process(record, format: format, line: line, conversation: nil)]
        }
        guard var t = template else { throw DatasetError.noChatTemplate(file: file, line: line, format: format.rawValue) }
        if let tools { t = t.with(variables: ["tools": tools]) }
        let parts = try conversations(messages, template: t, line: line)
        return try parts.enumerated().map { k, part in
            var p = try process(record, format: format, line: line, conversation: part)
            if parts.count > 1 || part.expanded { p.expansion = (k + 1, parts.count) }
            return p
        }
    }

    /// `conversation`: the record's rendered, masked and tokenized conversation (one of processAll's).
    func process(_ record: DatasetRecord, format: DatasetFormat, line: Int,
                 conversation rendered: (ids: [Int], labels: [Int], text: String, offsets: [Range<Int>?], expanded: Bool)?) throws -> ProcessedSample {
        var ids: [Int], labels: [Int]
        var text: String? = nil
        var offsets: [Range<Int>?]? = nil
        switch record {
        case .conversation:
            guard let r = rendered else { throw DatasetError.noChatTemplate(file: file, line: line, format: format.rawValue) }
            (ids, labels, text, offsets) = (r.ids, r.labels, r.text, r.offsets)
        case .promptCompletion(let prompt, let completion):
            if let r = rendered {
                (ids, labels, text, offsets) = (r.ids, r.labels, r.text, r.offsets)
            } else {
                (ids, labels, text, offsets) = try plain(prompt: prompt, completion: completion, line: line)
                if options.trainOn == .all { labels = ids }
            }
        case .text(let s):
            if let t = try? plain(prompt: "", completion: s, appendEOS: false, line: line) {
                (ids, labels, text, offsets) = t
            } else {
                // Every token is trained: no offsets needed (a preview decodes the ids).
                ids = try tokenizer.encodeIDs(s, addSpecialTokens: true)
                labels = ids
            }
        case .tokens(let inputIDs, let given):
            let v = tokenizer.vocabularySize
            if let k = inputIDs.firstIndex(where: { $0 >= v }) {
                throw DatasetLineError(file: file, line: line, reason: "input_ids[\(k)] = \(inputIDs[k]) is outside the vocabulary (size \(v))")
            }
            if let g = given, let k = g.firstIndex(where: { $0 >= v }) {
                throw DatasetLineError(file: file, line: line, reason: "labels[\(k)] = \(g[k]) is outside the vocabulary (size \(v))")
            }
            ids = inputIDs
            labels = given ?? inputIDs
        }
        let full = ids.count
        if let m = options.maxSeqLen, ids.count > m {
            ids.removeSubrange(m...)
            labels.removeSubrange(m...)
            offsets?.removeSubrange(m...)
        }
        return ProcessedSample(sample: TokenizedSample(line: line, inputIDs: ids, labels: labels),
                               fullLength: full, text: text, offsets: offsets)
    }

    /// The conversation rendered, masked and tokenized: one sample, or — when the template renders
    /// earlier turns differently once later ones follow and every assistant turn is trained — one per
    /// assistant turn (Masking.renderPerTurn; `expanded`).
    func conversations(_ messages: [ChatMessage], template t: ConversationRenderer, line: Int) throws
        -> [(ids: [Int], labels: [Int], text: String, offsets: [Range<Int>?], expanded: Bool)]
    {
        var parts: [RenderedConversation]
        var expanded = false
        // With max_seq_len the whole rendering is tokenized first: turns past the cut are not rendered.
        var whole: [TokenOffset]? = nil
        let limit: ((String) throws -> Int?)? = options.maxSeqLen.map { m in { text in
            let toks = try self.offsets(text, line: line)
            whole = toks
            return toks.count > m ? toks[m].start : nil
        } }
        do {
            do {
                parts = [try Masking.render(messages, with: t, trainOn: options.trainOn, file: file, line: line, byteLimit: limit)]
            } catch DatasetError.templatePrefix where options.trainOn != .all {
                parts = try Masking.renderPerTurn(messages, with: t, trainOn: options.trainOn, file: file, line: line)
                expanded = true
                whole = nil
            }
        } catch let e as DatasetError {
            throw e
        } catch {
            // Masking renders the conversation before each trained assistant turn too; a template may render the whole
            // conversation yet fail on such a part (Qwen3's on one opening with an assistant turn: nothing before it).
            // Then --train-on all, which renders only the whole, trains on it: the error says so when that render works.
            let wholeRenders = options.trainOn != .all
                && (try? Masking.render(messages, with: t, trainOn: .all, file: file, line: line)) != nil
            throw DatasetLineError(file: file, line: line, reason: Self.templateFailure(
                t.templateName, error, messages, wholeRendersFor: wholeRenders ? options.trainOn : nil))
        }
        return try parts.map { rendered in
            let toks = try whole ?? offsets(rendered.text, line: line)
            let labels = Masking.labels(toks, spans: rendered.spans, snapEnds: rendered.snapEnds)
            return (toks.map(\.id), labels, rendered.text, toks.map { $0.start..<$0.end }, expanded)
        }
    }

    /// A template that raised (raise_exception) or failed on a line: its message, and in plain words
    /// what about the conversation it likely met. `wholeRendersFor`: the --train-on mode that failed, when the
    /// whole conversation renders (so --train-on all trains on it).
    static func templateFailure(_ name: String, _ error: Error, _ messages: [ChatMessage],
                                wholeRendersFor trainOn: TrainOn? = nil) -> String {
        var reason = "chat template '\(name)': \(error)"
        let roles = messages.map(\.role)
        var said = true
        if let first = roles.first(where: { $0 != "system" }), first != "user" {
            reason += " — the conversation opens with a\(first == "assistant" ? "n" : "") \(first) turn, and this template expects the first "
                + "turn after any system message to be the user's: start each conversation with a user message"
        } else if !roles.contains("user") {
            reason += " — the conversation has no user turn"
        } else {
            said = false
        }
        if let trainOn {
            reason += (said ? ", or" : " —") + " train on every token of it with --train-on all (the template renders the whole "
                + "conversation; --train-on \(trainOn.rawValue) also renders the part before each trained assistant turn, and that fails)"
        }
        return reason
    }

    /// Token offsets (bare ids, each with its byte range in `text`).
    func offsets(_ text: String, line: Int) throws -> [TokenOffset] { try tokenizer.encodeOffsets(text) }

    /// prompt + completion as plain text with the post-processor's tokens; tokens starting
    /// in the completion are trained, and the post-processor's trailing tokens (EOS) too;
    /// with `appendEOS` an EOS is appended (and trained) when the sequence does not end in one.
    func plain(prompt: String, completion: String, appendEOS: Bool = true, line: Int) throws -> ([Int], [Int], String, [Range<Int>?]) {
        let text = prompt + completion
        let toks = try offsets(text, line: line)
        let withSpecial = try tokenizer.encodeIDs(text, addSpecialTokens: true)
        let bare = toks.map(\.id)
        // The post-processor adds tokens around the bare ids: find where they sit.
        var lead = 0
        if withSpecial.count >= bare.count {
            lead = (0...(withSpecial.count - bare.count)).first { k in withSpecial[k..<(k + bare.count)].elementsEqual(bare) } ?? 0
        }
        let start = prompt.utf8.count
        var ids: [Int] = [], labels: [Int] = [], offsets: [Range<Int>?] = []
        for k in 0..<withSpecial.count {
            let id = withSpecial[k]
            if k >= lead, k < lead + bare.count {
                let t = toks[k - lead]
                ids.append(id); offsets.append(t.start..<t.end)
                labels.append(t.start >= start ? id : -100)
            } else {
                ids.append(id); offsets.append(nil)
                labels.append(k >= lead + bare.count ? id : (prompt.isEmpty ? id : -100))
            }
        }
        if appendEOS, let eos = tokenizer.eosID, ids.last != eos {
            ids.append(eos); labels.append(eos); offsets.append(nil)
        }
        return (ids, labels, text, offsets)
    }
}

public enum Dataset {
    /// Loads and tokenizes a JSONL file. Without `skipBadLines` the first bad line throws
    /// DatasetError.badLine; with it, bad lines are counted (reasons kept in `skipped`).
    /// Template errors that are not about one line's content (a template that breaks
    /// the prefix property) always throw. No sample at all throws unless `allowEmpty`
    /// (what a preview wants, to show why every line was skipped).
    /// `progress(linesDone, linesTotal)` after every line (a caller shows it at its own pace).
    ///
    /// Lines are parsed, rendered and tokenized on `threads` threads (default: every CPU) where the
    /// tokenizer and the template say they are safe to share (`concurrencySafe`), in batches whose
    /// outcomes are then taken in file order — so samples, skips, errors (the first bad line's) and
    /// progress are exactly those of one thread.
    public static func load(file: String, tokenizer: DataTokenizer, template: ConversationRenderer?,
                            options: DatasetOptions, previewCount: Int = 0, allowEmpty: Bool = false,
                            threads: Int? = nil, progress: ((Int, Int) -> Void)? = nil) throws -> LoadedDataset {
        if let m = options.maxSeqLen, m < 2 { throw DatasetError.invalidOption("max sequence length must be at least 2 (got \(m))") }
        let lines = try JSONLReader.read(file: file)
        let processor = SampleProcessor(tokenizer: tokenizer, template: template, options: options, file: file)
        let shared = tokenizer.concurrencySafe && (template?.concurrencySafe ?? true)
        let workers = shared ? max(1, threads ?? ProcessInfo.processInfo.activeProcessorCount) : 1
        /// One line's parse and processing, computed ahead (possibly on another thread).
        struct Outcome {
            var parsed: Result<DatasetFormat, Error>
            var processed: Result<[ProcessedSample], Error>?
        }
        func outcome(_ k: Int) -> Outcome {
            let (lineNo, bytes) = lines[k]
            do {
                let (f, record) = try DatasetLineParser.parse(bytes, file: file, line: lineNo)
                return Outcome(parsed: .success(f), processed: Result { try processor.processAll(record, format: f, line: lineNo) })
            } catch {
                return Outcome(parsed: .failure(error), processed: nil)
            }
        }
        let batch = workers == 1 ? 1 : 1024
        var ahead: [Outcome?] = []
        var aheadStart = 0
        var format: DatasetFormat? = nil, formatLine = 0
        var samples: [TokenizedSample] = []
        var skipped: [(line: Int, reason: SkipReason)] = []
        var truncated = 0
        var counts: [String: Int] = [:]
        var previews: [ProcessedSample] = []
        var expandedLines = 0, expandedSamples = 0, droppedTurns = 0
        for (done, (lineNo, _)) in lines.enumerated() {
            progress?(done, lines.count)
            if done == aheadStart + ahead.count {
                // The next batch, spread over the workers.
                aheadStart = done
                let n = min(batch, lines.count - done)
                ahead = [Outcome?](repeating: nil, count: n)
                ahead.withUnsafeMutableBufferPointer { slots in
                    DispatchQueue.concurrentPerform(iterations: min(workers, n)) { w in
                        for j in stride(from: w, to: n, by: workers) { slots[j] = outcome(done + j) }
                    }
                }
            }
            let o = ahead[done - aheadStart]!
            do {
                let f = try o.parsed.get()
                if let known = format, known != f {
                    throw DatasetLineError(file: file, line: lineNo, reason: "a \(f.rawValue) line in a \(known.rawValue) file (format detected on line \(formatLine)); one file holds one format")
                }
                if format == nil { format = f; formatLine = lineNo }
                let all = try o.processed!.get()
                let kept = all.filter { $0.sample.trainedTokens > 0 }
                if all.count > 1 || all.first?.expansion != nil {
                    // Counted as kept: a turn cut off by max_seq_len (no trained token left) is a dropped turn.
                    expandedLines += 1; expandedSamples += kept.count; droppedTurns += all.count - kept.count
                }
                if kept.isEmpty, let p = all.first {
                    let r = SkipReason.noTrainedTokens(truncated: all.contains { $0.truncated } || p.truncated)
                    skipped.append((lineNo, r)); counts[r.category, default: 0] += 1
                    continue
                }
                for p in kept {
                    if p.truncated { truncated += 1 }
                    samples.append(p.sample)
                    if previews.count < previewCount { previews.append(p) }
                }
            } catch let e as DatasetLineError {
                guard options.skipBadLines else { throw DatasetError.badLine(e) }
                skipped.append((lineNo, .badLine(e.description))); counts["bad line", default: 0] += 1
            }
        }
        if samples.isEmpty, !allowEmpty {
            let why = counts.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ")
            throw DatasetError.noSamples(file: file, reason: why)
        }
        var statistics = DatasetStatistics(samples: samples, truncated: truncated, skipped: counts)
        statistics.expandedConversations = expandedLines
        statistics.expandedSamples = expandedSamples
        statistics.droppedTurns = droppedTurns
        return LoadedDataset(file: file, format: format ?? .text, samples: samples, skipped: skipped,
                             statistics: statistics, previews: previews)
    }

    /// Splits samples into (train, validation): round(fraction × n) samples, at least 1
    /// when fraction > 0 and n ≥ 2, chosen by a seeded shuffle; both keep file order.
    /// Deterministic in (samples, fraction, seed).
    /// `group`: samples with the same key go to the same side, the fraction counting groups
    /// (an extractive-QA question's windows).
    /// `groupKeys` (one per sample): samples with the same key go to the same side (a conversation's per-turn
    /// samples; an extractive-QA question's windows), the fraction counting groups.
    public static func split(_ samples: [TokenizedSample], validationFraction f: Double, seed: UInt64, groupKeys: [Int])
        throws -> (train: [TokenizedSample], validation: [TokenizedSample])
    {
        var keys: [Int] = [], index: [Int: Int] = [:]
        for k in groupKeys where index[k] == nil { index[k] = keys.count; keys.append(k) }
        let picked = try split(keys.indices.map { TokenizedSample(line: $0, inputIDs: [], labels: []) },
                               validationFraction: f, seed: seed).validation.map(\.line)
        let val = Set(picked)
        var train: [TokenizedSample] = [], validation: [TokenizedSample] = []
        for (s, k) in zip(samples, groupKeys) {
            if val.contains(index[k]!) { validation.append(s) } else { train.append(s) }
        }
        return (train, validation)
    }

    public static func split(_ samples: [TokenizedSample], validationFraction f: Double, seed: UInt64,
                             group: ((TokenizedSample) -> Int)? = nil)
        throws -> (train: [TokenizedSample], validation: [TokenizedSample])
    {
        guard f >= 0, f < 1, f.isFinite else { throw DatasetError.invalidOption("validation split must be in [0, 1) (got \(f))") }
        if let group { return try split(samples, validationFraction: f, seed: seed, groupKeys: samples.map(group)) }
        let n = samples.count
        var k = Int((f * Double(n)).rounded())
        if f > 0, n >= 2 { k = max(k, 1) }
        k = min(k, n - 1)
        guard k > 0 else { return (samples, []) }
        let order = Batching.order(count: n, seed: seed ^ 0x5641_4C5F_5350_4C54, epoch: 0, shuffle: true)
        let val = Set(order.prefix(k))
        var train: [TokenizedSample] = [], validation: [TokenizedSample] = []
        for (i, s) in samples.enumerated() {
            if val.contains(i) { validation.append(s) } else { train.append(s) }
        }
        return (train, validation)
    }
}
