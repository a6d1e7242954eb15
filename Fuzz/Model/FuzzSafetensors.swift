import Foundation

/// The safetensors header and byte ranges: open the file (header parse, dtype, shape,
/// offset tiling checks), then convert every tensor small enough to read.
func fuzzSafetensors(_ data: UnsafeRawBufferPointer) {
    withInputFile(data, ext: "safetensors") { path in
        guard let f = try? SafeTensorsFile(path: path) else { return }
        for name in f.tensors.keys.sorted() {
            guard let info = f.tensors[name], info.count <= 1 << 16 else { continue }
            _ = try? f.floats(name)
        }
    }
}
