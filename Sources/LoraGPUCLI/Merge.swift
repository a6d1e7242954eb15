import ArgumentParser
import Foundation
import LoraTrain

struct Merge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fold a PEFT LoRA adapter into its base model and write a Hugging Face checkpoint.")

    @Option(help: "The base model: a Hugging Face directory (config.json + safetensors) or a GGUF file.") var model: String
    @Option(help: "The PEFT adapter directory (adapter_config.json + adapter_model.safetensors).") var adapter: String
    @Option(help: "The directory to write (replaced whole if it exists).") var output: String
    @Option(help: "The dtype of the written weights: float32, bfloat16 or float16.") var dtype = "float32"
    @Option(name: .customLong("max-shard-bytes"), help: "Split model.safetensors into shards of at most this many bytes.")
    var maxShardBytes = ModelMerger.defaultMaxShardBytes

    func run() throws {
        guard let d = MergeDType(rawValue: dtype) else {
            throw ValidationError("--dtype '\(dtype)' is not one of: " + MergeDType.allCases.map(\.rawValue).joined(separator: ", "))
        }
        guard maxShardBytes > 0 else { throw ValidationError("--max-shard-bytes must be positive") }
        let report = try ModelMerger.merge(model: model, adapter: adapter, output: output, dtype: d, maxShardBytes: maxShardBytes)
        for w in report.warnings { print("warning: \(w)") }
        print("merged \(report.mergedModules.count) LoRA module(s)" + (report.replaced.isEmpty ? "" : "; replaced " + report.replaced.joined(separator: ", ")))
        if let why = report.untied {
            print("note: the base ties lm_head to embed_tokens; the adapter has \(why), so the merged model keeps them as "
                + "two tensors (tie_word_embeddings: false) and gives the adapter's logits")
        }
        print("wrote \(output): " + report.files.joined(separator: ", ") + (report.tied ? " (embeddings tied)" : ""))
    }
}
