import Foundation
import LoraModel
import LoraOps
import LoraText

extension Generator {
    /// The model at `path` (a Hugging Face directory or a GGUF file) with the
    /// PEFT adapter at `adapter`, unmerged — or, without one, with a rank-1
    /// adapter on q_proj whose B is zero, which adds exactly nothing.
    public static func loadModel(_ path: String, adapter: String?, context ctx: ComputeContext,
                                 quantize: QuantizeMode = .auto) throws -> LlamaLoRAModel {
        try AdapterModel.load(path, adapter: adapter, context: ctx, quantize: quantize) { lora, adapter in
            guard lora.taskType == "CAUSAL_LM" else {
                throw TrainError.setting(source: adapter + "/adapter_config.json", key: "task_type",
                                         reason: "\(lora.taskType): this adapter does not generate text; run it with "
                                            + (lora.taskType == "FEATURE_EXTRACTION" ? "`lora-gpu embed`" : "`lora-gpu predict`"))
            }
        }
    }

    /// Generates after `prompt` and returns the answer's text (stop tokens left
    /// out); `onText` receives it piece by piece as tokens arrive, never
    /// splitting a multi-byte character.
    public func answer(prompt ids: [Int], options: GenerationOptions, text: ModelText,
                       onText: (String) -> Void = { _ in }) throws -> (text: String, result: GenerationResult) {
        var stream = TextStream { text.decode($0) }
        let result = try generate(prompt: ids, options: options, onToken: { id in
            if options.stopIDs.contains(id) { return }
            let piece = try stream.push(id)
            if !piece.isEmpty { onText(piece) }
        })
        let rest = try stream.finish()
        if !rest.isEmpty { onText(rest) }
        return (text.decode(stream.ids.filter { !options.stopIDs.contains($0) }), result)
    }
}

extension GenerationResult {
    /// "[12 prompt tokens (12 run) in 0.31 s, 20 new tokens at 14.2 tokens/s, stopped by stop token 2]"
    public var summary: String {
        let n = tokens.count
        let rate = decodeSeconds > 0 ? Double(max(n - 1, 0)) / decodeSeconds : 0
        let why: String
        switch stopReason {
        case .stopToken(let t): why = "stop token \(t)"
        case .maxNewTokens: why = "max_new_tokens"
        case .maxLength: why = "the model's maximum length"
        }
        return String(format: "[%d prompt tokens (%d run) in %.2f s, %d new tokens at %.1f tokens/s, stopped by %@]",
                      promptTokens, prefilledTokens, prefillSeconds, n, rate, why as NSString)
    }
}
