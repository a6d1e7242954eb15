import Foundation
import LoraModel
import LoraText

// The trainer's data entry points: the training (and validation) files read by
// LoraText's Dataset — JSONL of messages, ShareGPT conversations,
// prompt/completion, plain text or pre-tokenized ids, rendered through the
// model's chat template and masked so that only the assistant turns train —
// and the one place a planned batch becomes the model's TokenBatch.

/// A model without a tokenizer (a bare checkpoint): only pre-tokenized
/// `{"input_ids": …}` lines can be trained; any text line names the problem.
struct PreTokenizedOnly: DataTokenizer {
    let model: String
    let vocabularySize: Int
    var eosID: Int? { nil }
    var padID: Int? { nil }
    func encodeIDs(_ text: String, addSpecialTokens: Bool) throws -> [Int] { throw ModelTextError.noTokenizer(model) }
    func encodeOffsets(_ text: String) throws -> [TokenOffset] { throw ModelTextError.noTokenizer(model) }
    func decodeIDs(_ ids: [Int]) -> String { ids.map(String.init).joined(separator: " ") }
    func prepareText(_ s: String) -> String { s }
}

/// Training and validation samples, with what the loader counted.
struct TrainingSamples {
    var train: [TokenizedSample] = []
    var validation: [TokenizedSample] = []
    /// One line per file: "FILE: N samples, T tokens (K trained), …".
    var summaries: [String] = []
    var padTokenID = 0
    /// Every line that gave no sample (with --skip-bad-lines, or with no trained token), in file order.
    var skipped: [(file: String, line: Int, reason: SkipReason)] = []
}

/// Reads every `data` file (and `val_data`, or splits `val_split` off the
/// training samples, seeded), truncated to `max_seq_len` and masked by
/// `train_on`. `vocabSize` bounds pre-tokenized ids.
func loadTrainingSamples(_ c: TrainingConfig, vocabSize: Int, progress: ProgressPrinter? = nil) throws -> TrainingSamples {
    var out = TrainingSamples()
    let tokenizer: DataTokenizer
    var template: ConversationRenderer? = nil
    let modelText: ModelText?
    do {
        modelText = try ModelText(model: c.model, chatTemplate: c.chatTemplate, needsTemplate: false)
    } catch ModelTextError.noTokenizer {
        modelText = nil
    }
    if let text = modelText {
        out.summaries += text.notes
        tokenizer = TokenizerDataAdapter(text.tokenizer)
        template = text.template
    } else {
        if c.chatTemplate != nil {
            throw TrainError.setting(source: "settings", key: "chat_template",
                                     reason: "\(c.model) has no tokenizer to render a chat template with")
        }
        tokenizer = PreTokenizedOnly(model: c.model, vocabularySize: vocabSize)
    }
    guard let trainOn = TrainOn(rawValue: c.trainOn) else {
        throw TrainError.setting(source: "settings", key: "train_on", reason: "'\(c.trainOn)' is not one of "
            + TrainOn.allCases.map(\.rawValue).joined(separator: ", "))
    }
    let options = DatasetOptions(maxSeqLen: c.maxSeqLen, trainOn: trainOn, skipBadLines: c.skipBadLines)
    out.padTokenID = tokenizer.padID ?? tokenizer.eosID ?? 0
    func read(_ file: String) throws -> [TokenizedSample] {
        let d: LoadedDataset
        do {
            d = try Dataset.load(file: file, tokenizer: tokenizer, template: template, options: options,
                                 progress: progress?.loading(file))
        } catch DatasetError.noChatTemplate(let f, let line, let format) where tokenizer is PreTokenizedOnly {
            throw TrainError.data(path: f, line: line, reason: "\(format) samples need a tokenizer: \(ModelTextError.noTokenizer(c.model))")
        }
        if let bad = d.samples.lazy.flatMap(\.inputIDs).first(where: { $0 >= vocabSize }) {
            throw TrainError.data(path: file, line: 0, reason: "token id \(bad) is outside the model's vocabulary (size \(vocabSize))")
        }
        out.skipped += d.skipped.map { (file, $0.line, $0.reason) }
        let st = d.statistics
        out.summaries.append("\(file) (\(d.format.rawValue)): \(st.samples) samples, \(st.tokens) tokens, "
            + "\(st.trainedTokens) trained, \(st.truncated) truncated, \(st.skippedTotal) skipped; "
            + "length median \(st.lengthMedian), max \(st.lengthMax)")
        return d.samples
    }
    for f in c.data { out.train += try read(f) }
    if let v = c.valData {
        out.validation = try read(v)
    } else if c.valSplit > 0 {
        (out.train, out.validation) = try Dataset.split(out.train, validationFraction: c.valSplit, seed: UInt64(c.seed))
    }
    return out
}

/// The one place a planned batch becomes the model's TokenBatch: positions
/// restart per packed sample, and attention and the label shift never cross
/// a sequence id.
func tokenBatch(_ rows: BatchRows) throws -> TokenBatch {
    try TokenBatch(inputIDs: rows.inputIDs, labels: rows.labels, positionIDs: rows.positionIDs, sequenceIDs: rows.sequenceIDs)
}
