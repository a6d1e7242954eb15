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
    @OptionGroup var quantizeOption: QuantizeOption
    @Option(help: "A Hugging Face model directory (config.json, safetensors, tokenizer.json) or a GGUF file.") var model: String
    @Option(help: "A PEFT adapter directory (adapter_config.json + adapter_model.safetensors).") var adapter: String?
    @Option(help: "One user message, rendered with the chat template.") var prompt: String?
    @Option(name: .customLong("raw-prompt"), help: "Text continued as is, without a chat template.") var rawPrompt: String?
    @Flag(help: "An interactive conversation on stdin (one user turn per line).") var chat = false
    @Option(parsing: .unconditional, help: "0 is greedy.") var temperature: Double = 0
    @Option(name: .customLong("top-k"), parsing: .unconditional, help: "Keep the k most likely tokens (default off; transformers' own default is 50 when sampling).") var topK: Int?
    @Option(name: .customLong("top-p"), parsing: .unconditional, help: "Keep the smallest set of tokens whose probability exceeds p.") var topP: Double?
    @Option(help: "Seed of the sampling generator.") var seed: UInt64 = 0
    @Option(name: .customLong("max-new-tokens"), parsing: .unconditional) var maxNewTokens: Int = 256
    @Option(name: .customLong("chat-template"),
            help: "A named template of tokenizer_config.json, or a Jinja template file, instead of the default one.")
    var chatTemplate: String?
    @OptionGroup var templateKwargs: TemplateKwargsOption

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
        let ctx = try deviceOption.context(model: model, quantize: try quantizeOption.mode())
        let text = try ModelText(model: model, chatTemplate: chatTemplate, needsTemplate: rawPrompt == nil,
                                 templateVariables: try templateKwargs.variables())
        let loaded = try Generator.loadModel(model, adapter: adapter, context: ctx, quantize: try quantizeOption.mode())
        for note in loaded.adapterNotes { FileHandle.standardError.write(Data("note: \(note)\n".utf8)) }
        let generator = try Generator(model: loaded)
        var stops = ModelSource.isFile(model) ? [] : try ModelStopIDs.load(modelDirectory: model)
        stops.formUnion(text.stopIDs)
        let options = GenerationOptions(maxNewTokens: maxNewTokens,
                                        sampling: SamplingOptions(temperature: temperature, topK: topK, topP: topP, seed: seed),
                                        stopIDs: stops)
        func answer(_ ids: [Int]) throws -> String {
            let (reply, result) = try generator.answer(prompt: ids, options: options, text: text) {
                FileHandle.standardOutput.write(Data($0.utf8))
            }
            FileHandle.standardOutput.write(Data("\n".utf8))
            FileHandle.standardError.write(Data((result.summary + "\n").utf8))
            return reply
        }
        if let rawPrompt {
            _ = try answer(text.rawIDs(rawPrompt))
        } else if let prompt {
            _ = try answer(try text.chatIDs(messages: [ModelText.message("user", prompt)], model: model))
        } else {
            var messages: [ModelText.Message] = []
            while true {
                FileHandle.standardError.write(Data("> ".utf8))
                guard let line = readLine(strippingNewline: true) else { break }
                if line.trimmingCharacters(in: .whitespaces).isEmpty { continue }
                messages.append(ModelText.message("user", line))
                let reply = try answer(try text.chatIDs(messages: messages, model: model))
                messages.append(ModelText.message("assistant", reply))
            }
        }
    }
}
