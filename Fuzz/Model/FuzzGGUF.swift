import Foundation

/// GGUF metadata: open the file (header, key/value metadata, tensor infos), derive the model
/// config and the tokenizer files from the metadata, and dequantize every small tensor.
func fuzzGGUF(_ data: UnsafeRawBufferPointer) {
    withInputFile(data, ext: "gguf") { path in
        guard let f = try? GGUFFile(path: path) else { return }
        _ = try? ModelConfig.load(gguf: f)
        _ = try? f.tokenizerFiles()
        for name in f.tensorNames {
            guard let info = f.tensors[name], info.count <= 1 << 16 else { continue }
            _ = try? f.floats(name)
        }
    }
}
