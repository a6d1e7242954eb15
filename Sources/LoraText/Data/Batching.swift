import LoraBase
// Batches: tokenized samples → rectangular rows the model trains on.
//
// A sample's `labels` are unshifted, as transformers expects them: labels[t]
// is the id the model should predict *at* t (the model shifts: the target of
// token t is labels[t+1]); -100 marks a token that is not trained.
//
// Two layouts:
//   padded  — one sample per row, rows padded to the longest of the batch;
//   packed  — samples concatenated into rows of at most maxSeqLen tokens.
// Either way every token carries its position (restarting at 0 per sample)
// and a sequence id (0, 1, 2 … per sample of its row; the padding tail gets
// the next id, so ids never decrease along a row). Attention never crosses a
// sequence id and the shift never crosses a sample boundary, so a packed row
// trains exactly as its samples would alone. Padding is masked by position
// (label -100 there), never by token id: pad is often the EOS token, which is
// trained at the end of every assistant turn.

/// One tokenized sample; `line` is its 1-based line in the source file.
/// A sequence classifier's target for one sample.
public enum ClassTarget: Equatable, Sendable {
    /// single_label_classification: the class id.
    case classID(Int)
    /// regression (one value per label) or multi_label_classification (0/1, or soft, per label).
    case reals([Float])
}

/// An extractive-QA row's answer: token positions of its first and last token ((0, 0): no
/// answer in this window), and the feature (window) it is, for scoring per question.
public struct AnswerSpan: Equatable, Sendable {
    public var start: Int
    public var end: Int
    public var feature: Int
    public init(start: Int, end: Int, feature: Int) {
        self.start = start
        self.end = end
        self.feature = feature
    }
}

public struct TokenizedSample: Equatable, Sendable {
    public var line: Int
    public var inputIDs: [Int]
    /// Per-token labels (causal LM); all −100 for a classification sample.
    public var labels: [Int]
    /// A classification sample's target (read at its last non-pad token); nil for a causal-LM sample.
    public var classTarget: ClassTarget?
    /// A token classifier's labels: one per token as given (no shift).
    public var labelsAreUnshifted: Bool
    /// An extractive-QA window's answer (task_type QUESTION_ANS); nil otherwise.
    public var answerSpan: AnswerSpan?
    /// A contrastive sample's texts as ids: anchor, positive[, negative] (FEATURE_EXTRACTION); nil otherwise.
    public var contrastiveParts: [[Int]]?
    public init(line: Int, inputIDs: [Int], labels: [Int], classTarget: ClassTarget? = nil, labelsAreUnshifted: Bool = false,
                answerSpan: AnswerSpan? = nil) {
        self.line = line
        self.inputIDs = inputIDs
        self.labels = labels
        self.classTarget = classTarget
        self.labelsAreUnshifted = labelsAreUnshifted
        self.answerSpan = answerSpan
    }
    /// Tokens whose label is trained (the model's shift drops the first label;
    /// a token classifier's are not shifted); a sequence-classification sample
    /// counts its one read-out.
    public var trainedTokens: Int {
        if classTarget != nil { return 1 }
        if answerSpan != nil { return 2 }   // its start and its end
        if contrastiveParts != nil { return 1 }   // one loss term, its anchor's
        return (labelsAreUnshifted ? labels[...] : labels.dropFirst()).filter { $0 != -100 }.count
    }
}

/// B rows × T tokens, ready for the model's TokenBatch.
public struct BatchRows: Equatable, Sendable {
    public var inputIDs: [[Int]]
    public var labels: [[Int]]
    public var positionIDs: [[Int]]
    public var sequenceIDs: [[Int]]
    /// The source lines of the samples in this batch, in row order.
    public var lines: [Int]
    public var rows: Int { inputIDs.count }
    public var seqLen: Int { inputIDs.first?.count ?? 0 }
    /// Labels trained after the in-sample shift (what the loss averages over).
    public var trainedTokens: Int
    /// A classification batch: each row's target and sample length, in row order (nil otherwise).
    public var classTargets: [ClassTarget]? = nil
    public var lengths: [Int] = []
    /// An extractive-QA batch: each row's answer span, in row order (nil otherwise).
    public var answerSpans: [AnswerSpan]? = nil
    /// A contrastive batch: each sample's anchor, positive[, negative] ids, in row order (nil otherwise).
    public var contrastiveParts: [[[Int]]]? = nil
    /// The id rows are padded with.
    public var padTokenID = 0
}

public struct BatchingOptions: Equatable, Sendable {
    public var batchSize: Int
    public var maxSeqLen: Int
    public var packing: Bool
    public var padTokenID: Int
    public var shuffle: Bool
    public init(batchSize: Int, maxSeqLen: Int, packing: Bool = false, padTokenID: Int = 0, shuffle: Bool = true) {
        self.batchSize = batchSize
        self.maxSeqLen = maxSeqLen
        self.packing = packing
        self.padTokenID = padTokenID
        self.shuffle = shuffle
    }
}

public enum Batching {
    /// The order of samples in one epoch: a seeded Fisher–Yates shuffle of
    /// 0..<n that depends only on (seed, epoch), so a resumed run sees the same.
    public static func order(count n: Int, seed: UInt64, epoch: Int, shuffle: Bool) -> [Int] {
        var idx = Array(0..<n)
        guard shuffle, n > 1 else { return idx }
        var rng = SplitMix64(seed: seed ^ (UInt64(truncatingIfNeeded: epoch) &* SplitMix64.golden))
        for i in stride(from: n - 1, to: 0, by: -1) {
            let j = Int(rng.next() % UInt64(i + 1))
            idx.swapAt(i, j)
        }
        return idx
    }

    /// Every batch of one epoch, deterministic in (samples, options, seed, epoch).
    /// Samples must already be truncated to `maxSeqLen`; the last batch may have fewer rows.
    public static func plan(_ samples: [TokenizedSample], options o: BatchingOptions, seed: UInt64, epoch: Int) -> [BatchRows] {
        precondition(o.batchSize > 0 && o.maxSeqLen > 0)
        let order = Self.order(count: samples.count, seed: seed, epoch: epoch, shuffle: o.shuffle).map { samples[$0] }
        // Rows: a list of samples each.
        var rows: [[TokenizedSample]] = []
        if o.packing {
            var current: [TokenizedSample] = [], used = 0
            for s in order {
                if used + s.inputIDs.count > o.maxSeqLen, !current.isEmpty {
                    rows.append(current)
                    current = []; used = 0
                }
                current.append(s); used += s.inputIDs.count
            }
            if !current.isEmpty { rows.append(current) }
        } else {
            rows = order.map { [$0] }
        }
        var batches: [BatchRows] = []
        var start = 0
        while start < rows.count {
            let group = rows[start..<min(start + o.batchSize, rows.count)]
            start += o.batchSize
            let width = o.packing ? o.maxSeqLen : group.map { $0.reduce(0) { $0 + $1.inputIDs.count } }.max() ?? 0
            var b = BatchRows(inputIDs: [], labels: [], positionIDs: [], sequenceIDs: [], lines: [], trainedTokens: 0)
            b.padTokenID = o.padTokenID
            for row in group {
                var ids: [Int] = [], labels: [Int] = [], pos: [Int] = [], seq: [Int] = []
                for (k, s) in row.enumerated() {
                    ids += s.inputIDs
                    labels += s.labels
                    pos += 0..<s.inputIDs.count
                    seq += Array(repeating: k, count: s.inputIDs.count)
                    b.lines.append(s.line)
                    b.trainedTokens += s.trainedTokens
                    if let t = s.classTarget { b.classTargets = (b.classTargets ?? []) + [t] }
                    if let a = s.answerSpan { b.answerSpans = (b.answerSpans ?? []) + [a] }
                    if let c = s.contrastiveParts { b.contrastiveParts = (b.contrastiveParts ?? []) + [c] }
                }
                b.lengths.append(ids.count)
                let pad = width - ids.count
                ids += Array(repeating: o.padTokenID, count: pad)
                labels += Array(repeating: -100, count: pad)
                pos += 0..<pad
                seq += Array(repeating: row.count, count: pad)
                b.inputIDs.append(ids); b.labels.append(labels); b.positionIDs.append(pos); b.sequenceIDs.append(seq)
            }
            batches.append(b)
        }
        return batches
    }
}
