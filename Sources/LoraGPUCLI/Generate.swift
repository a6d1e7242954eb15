import ArgumentParser
import Foundation
import LoraModel
import LoraOps
import LoraTrain

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate text with a model and (optionally) a LoRA adapter, unmerged, streaming the answer to stdout.",
        discussion: """
            --prompt renders one user turn through the model's chat template (add_generation_prompt) and \
            tokenizes it without adding special tokens again, as apply_chat_template(tokenize=True) does. \
            --raw-prompt continues the text as it is (with the tokenizer's default special tokens). \
            --chat reads one user turn per line from stdin and answers each, keeping the conversation; EOF ends it. \
            Temperature 0 is greedy; otherwise temperature, top-k and top-p are applied in transformers' order. \
            Generation stops at the model's EOS ids, the template's end-of-turn token, or --max-new-tokens.
            """)

    @OptionGroup var deviceOption: DeviceOption
    @Option(help: "A Hugging Face model directory (config.json, safetensors, tokenizer.json) or a GGUF file.") var model: String
    @Option(help: "A PEFT adapter directory (adapter_config.json + adapter_model.safetensors).") var adapter: String?
    @Option(help: "One user message, rendered with the chat template.") var prompt: String?
    @Option(name: .customLong("raw-prompt"), help: "Text continued as is, without a chat template.") var rawPrompt: String?
    @Flag(help: "An interactive conversation on stdin (one user turn per line).") var chat = false
    @Option(help: "0 is greedy.") var temperature: Double = 0
    @Option(name: .customLong("top-k"), help: "Keep the k most likely tokens (default off; transformers' own default is 50 when sampling).") var topK: Int?
    @Option(name: .customLong("top-p"), help: "Keep the smallest set of tokens whose probability exceeds p.") var topP: Double?
    @Option(help: "Seed of the sampling generator.") var seed: UInt64 = 0
    @Option(name: .customLong("max-new-tokens")) var maxNewTokens: Int = 256
    @Option(name: .customLong("chat-template"),
            help: "A named template of tokenizer_config.json, or a Jinja template file, instead of the default one.")
    var chatTemplate: String?

    func validate() throws {
        let modes = [prompt != nil, rawPrompt != nil, chat].filter { $0 }.count
        guard modes == 1 else { throw ValidationError("give exactly one of --prompt, --raw-prompt, --chat") }
        guard maxNewTokens >= 1 else { throw ValidationError("--max-new-tokens must be ≥ 1, got \(maxNewTokens)") }
        do {
            try SamplingOptions(temperature: temperature, topK: topK, topP: topP, seed: seed).validate()
        } catch {
            throw ValidationError("\(error)")
        }
    }

    func run() throws {
        let ctx = try deviceOption.context()
        let text = try GenerateText(modelDirectory: model, chatTemplate: chatTemplate, needsTemplate: rawPrompt == nil)
        let lm = try loadModel(ctx)
        let generator = try Generator(model: lm)
        var stops = try ModelStopIDs.load(modelDirectory: model)
        stops.formUnion(text.stopIDs)
        let options = GenerationOptions(maxNewTokens: maxNewTokens,
                                        sampling: SamplingOptions(temperature: temperature, topK: topK, topP: topP, seed: seed),
                                        stopIDs: stops)
        if let rawPrompt {
            _ = try answer(generator, prompt: text.rawIDs(rawPrompt), options: options, text: text)
        } else if let prompt {
            _ = try answer(generator, prompt: try text.chatIDs(messages: [GenerateText.message("user", prompt)]),
                           options: options, text: text)
        } else {
            var messages: [GenerateText.Message] = []
            while true {
                FileHandle.standardError.write(Data("> ".utf8))
                guard let line = readLine(strippingNewline: true) else { break }
                if line.trimmingCharacters(in: .whitespaces).isEmpty { continue }
                messages.append(GenerateText.message("user", line))
                let reply = try answer(generator, prompt: try text.chatIDs(messages: messages), options: options, text: text)
                messages.append(GenerateText.message("assistant", reply))
            }
        }
    }

    /// Streams the answer to stdout and returns its text (the stop token left out).
    func answer(_ generator: Generator, prompt ids: [Int], options: GenerationOptions, text: GenerateText) throws -> String {
        var stream = TextStream { text.decode($0) }
        let result = try generator.generate(prompt: ids, options: options, onToken: { id in
            if options.stopIDs.contains(id) { return }
            let piece = try stream.push(id)
            if !piece.isEmpty { FileHandle.standardOutput.write(Data(piece.utf8)) }
        })
        let rest = try stream.finish()
        FileHandle.standardOutput.write(Data((rest + "\n").utf8))
        let n = result.tokens.count
        let rate = result.decodeSeconds > 0 ? Double(max(n - 1, 0)) / result.decodeSeconds : 0
        let why: String
        switch result.stopReason {
        case .stopToken(let t): why = "stop token \(t)"
        case .maxNewTokens: why = "max_new_tokens"
        case .maxLength: why = "the model's maximum length"
        }
        FileHandle.standardError.write(Data(String(
            format: "[%d prompt tokens (%d run) in %.2f s, %d new tokens at %.1f tokens/s, stopped by %@]\n",
            result.promptTokens, result.prefilledTokens, result.prefillSeconds, n, rate, why as NSString).utf8))
        return text.decode(stream.ids.filter { !options.stopIDs.contains($0) })
    }

    /// The model with the adapter, or (no --adapter) with a rank-1 adapter on
    /// q_proj whose B is zero, which adds exactly nothing.
    func loadModel(_ ctx: ComputeContext) throws -> LlamaLoRAModel {
        let (config, checkpoint) = try ModelSource.open(model)
        guard let adapter else {
            let lora = try LoraConfig.parse(Data(#"{"r": 1, "lora_alpha": 1, "target_modules": ["q_proj"]}"#.utf8),
                                            path: "(no adapter)")
            return try LlamaLoRAModel(config: config, checkpoint: checkpoint, lora: lora, context: ctx)
        }
        let lora = try LoraConfig.load(path: adapter + "/adapter_config.json")
        let m = try LlamaLoRAModel(config: config, checkpoint: checkpoint, lora: lora, context: ctx)
        try m.loadAdapter(directory: adapter)
        return m
    }
}
