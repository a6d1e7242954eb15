import Foundation
import LoraModel
import LoraOps

/// The one way the inference commands (generate, predict, embed) open a model:
/// the base at `path` (a Hugging Face directory or a GGUF file) with the PEFT
/// adapter at `adapter`, unmerged, built as its task needs (a classifier's head
/// from the checkpoint or the adapter's labels.json: `ModelConfig.forAdapter`).
/// `accept` refuses an adapter the command cannot run (its task). Without an
/// adapter: a rank-1 adapter on o_proj (every family has one) whose B is zero, which adds exactly nothing.
public enum AdapterModel {
    /// `quantize`: how the frozen weights are kept on the device (`QuantizeMode`).
    public static func load(_ path: String, adapter: String?, context ctx: ComputeContext, quantize: QuantizeMode = .auto,
                            accept: (_ lora: LoraConfig, _ adapter: String) throws -> Void = { _, _ in }) throws -> LlamaLoRAModel {
        let (base, checkpoint) = try ModelSource.open(path, quantize: quantize)
        guard let adapter else {
            let lora = LoraConfig(r: 1, loraAlpha: 1, targetModules: .list(["o_proj"]))
            return try LlamaLoRAModel(config: base, checkpoint: checkpoint, lora: lora, context: ctx)
        }
        let lora = try LoraConfig.load(path: adapter)
        try accept(lora, adapter)
        let config = try base.forAdapter(adapter, lora: lora, basePath: path)
        let m = try LlamaLoRAModel(config: config, checkpoint: checkpoint, lora: lora, context: ctx)
        try m.loadAdapter(directory: adapter)
        return m
    }
}
