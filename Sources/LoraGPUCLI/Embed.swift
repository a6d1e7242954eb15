import ArgumentParser
import Foundation
import LoraBase
import LoraModel
import LoraTrain

struct Embed: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "One vector per JSONL line: the model's final hidden states (with an adapter, if given), pooled.",
        discussion: """
            Lines are {"text": …} (tokenized with the tokenizer's special tokens, truncated to --max-seq-len) or \
            {"input_ids": […]}. The vector is transformers' AutoModel last_hidden_state (the final norm's output) at \
            each text's last token (--pooling last, as decoder embedders pool) or averaged over its tokens \
            (--pooling mean); --normalize divides it by its L2 norm (F.normalize). An adapter of any trained task \
            applies its LoRA to the hidden states. Output: JSONL {"line", "embedding"} on stdout or to --output \
            FILE.jsonl, or a float32 (N, hidden) array to --output FILE.npy.
            """)

    @OptionGroup var deviceOption: DeviceOption
    @OptionGroup var quantizeOption: QuantizeOption
    @Option(help: "A Hugging Face model directory or a GGUF file.") var model: String
    @Option(help: "A PEFT adapter directory (optional).") var adapter: String?
    @Option(help: "JSONL lines to embed.") var data: String
    @Option(help: "FILE.jsonl or FILE.npy (default: JSONL on stdout).") var output: String?
    @Option(name: .customLong("pooling"), help: "last | mean (default: a FEATURE_EXTRACTION adapter's training pooling, else last).")
    var poolingOption: String?
    var pooling: String { poolingOption ?? trained?.string("pooling") ?? "last" }

    /// A setting of the run that wrote a FEATURE_EXTRACTION adapter (its training_config.yaml), so that its
    /// vectors are made as training made them.
    var trained: SavedRunSettings? {
        guard let a = adapter, (try? LoraConfig.load(path: a))?.taskType == "FEATURE_EXTRACTION" else { return nil }
        return SavedRunSettings(adapter: a)
    }
    @Flag(help: "Divide each vector by its L2 norm.") var normalize = false
    @Option(name: .customLong("batch-size"), parsing: .unconditional) var batchSize: Int = 8
    @Option(name: .customLong("max-seq-len"), parsing: .unconditional, help: "Texts are truncated to this many tokens (default: the model's positions).")
    var maxSeqLen: Int?

    func validate() throws {
        guard Pooling(rawValue: pooling) != nil else {
            throw ValidationError("--pooling must be one of " + Pooling.allCases.map(\.rawValue).joined(separator: ", ") + ", got '\(pooling)'")
        }
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be ≥ 1, got \(batchSize)") }
        if let m = maxSeqLen, m < 1 { throw ValidationError("--max-seq-len must be ≥ 1, got \(m)") }
        if let o = output, !o.hasSuffix(".jsonl"), !o.hasSuffix(".npy") {
            throw ValidationError("--output must end in .jsonl or .npy, got '\(o)'")
        }
    }

    func run() throws {
        let ctx = try deviceOption.context(model: model, quantize: try quantizeOption.mode())
        let m = try Embedder.loadModel(model, adapter: adapter, context: ctx, quantize: try quantizeOption.mode())
        let tokenizer = try ClassifierPrediction.tokenizer(model: model, vocabularySize: m.config.vocabSize)
        let maxLen = min(maxSeqLen ?? trained?.int("max_seq_len") ?? m.config.maxPositionEmbeddings,
                         m.config.maxPositionEmbeddings)
        let (lines, vectors) = try Embedder.run(model: m, file: data, tokenizer: tokenizer, maxSeqLen: maxLen,
                                                pooling: Pooling(rawValue: pooling)!, normalize: normalize, batchSize: batchSize,
                                                progress: CommandOutput.counter("embedded"))
        CommandOutput.endCounter()
        let bytes = output?.hasSuffix(".npy") == true ? Embedder.npy(vectors) : Data(Embedder.jsonl(vectors, lines: lines).utf8)
        try CommandOutput.write(bytes, to: output, count: vectors.count, what: "vectors of \(m.config.hiddenSize)")
    }
}
