import ArgumentParser
import Foundation
import LoraModel
import LoraTrain

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a PEFT LoRA adapter as a llama.cpp adapter GGUF (llama-cli --lora FILE, Ollama's ADAPTER).",
        discussion: """
            The file holds what llama.cpp's convert_lora_to_gguf.py writes: each LoRA pair under llama.cpp's \
            tensor names, adapter.lora.alpha, and for Llama/Mistral bases q's and k's B rows in llama.cpp's rotary \
            order. rsLoRA and alpha_pattern scales are folded into B (llama.cpp scales by alpha / r). Modules \
            trained in full (modules_to_save), trained biases and a LoRA on embed_tokens are refused: \
            `lora-gpu merge` writes those into a merged model.
            """)

    @Option(help: "The PEFT adapter directory (adapter_config.json + adapter_model.safetensors).") var adapter: String
    @Option(help: "The base model the adapter was trained on: a Hugging Face directory or a GGUF file (its config is read).")
    var model: String
    @Option(help: "The .gguf file to write (replaced whole if it exists).") var output: String
    @Option(help: "Only gguf (llama.cpp's adapter format).") var format = "gguf"
    @Option(help: "Tensor type: f32, f16 or q8_0 (a tensor whose rows do not split into blocks of 32 is written f16, as llama.cpp's converter does).")
    var outtype = "f32"

    func run() throws {
        guard format == "gguf" else { throw ValidationError("--format '\(format)' is not supported; supported: gguf") }
        let type: GGUFWriter.TensorType
        switch outtype {
        case "f32": type = .f32
        case "f16": type = .f16
        case "q8_0": type = .q8_0
        default: throw ValidationError("--outtype '\(outtype)' is not supported; supported: f32, f16, q8_0")
        }
        let r = try AdapterGGUFExport.export(adapter: adapter, model: model, output: output, type: type)
        if !r.folded.isEmpty {
            print("note: \(r.folded.count) module(s) scale differently from alpha / r (rsLoRA or alpha_pattern): "
                  + "the factor is folded into their lora_b")
        }
        print("wrote \(output): \(r.tensors) tensors (\(outtype)), architecture \(r.architecture), alpha \(r.alpha)")
        if !r.zeroScale.isEmpty { print("note: \(r.zeroScale.count) module(s) with scale 0 left out (they add nothing)") }
        let modelfile: String
        do { modelfile = try OllamaModelfile.write(base: model, adapter: output, adapterDirectory: adapter) } catch {
            throw ExportCommandError(description: "\(output) was written; the Modelfile \(OllamaModelfile.path(beside: output)) "
                                     + "could not be: \(error)")
        }
        print("wrote \(modelfile): `ollama create NAME -f \(modelfile)` (llama.cpp: llama-cli -m BASE.gguf --lora \(output))")
    }
}

struct ExportCommandError: Error, CustomStringConvertible {
    let description: String
}
