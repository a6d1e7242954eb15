import Foundation
import LoraOps
import OpenCLRuntime

/// Moves checkpoint tensors to the device: small tensors (norms, biases) as fp32
/// buffers, frozen matrices as the gemm's panels in the checkpoint's storage type.
/// The mapped pages of each tensor are released once copied (`releaseMappedPages`).
struct CheckpointLoader {
    let checkpoint: CheckpointSource
    let ctx: ComputeContext
    /// The most bytes one device buffer of frozen weights may hold.
    let limitBytes: Int

    /// The tensor as fp32 on the device.
    func upload(_ tensor: CheckpointTensor, _ name: String, _ shape: [Int]) throws -> DeviceBuffer<Float> {
        let count = shape.reduce(1, *)
        let out = try ctx.buffer(count: count, label: "tensor '\(name)' \(shape)")
        switch tensor {
        case .floats(let values):
            guard values.count == count else {
                throw CheckpointError.tensor(path: checkpoint.location, name: name, reason: "\(values.count) values for shape \(shape)")
            }
            try out.write(values)
        case .raw(.f32, let bytes):
            try out.write(raw: bytes)
            releaseMappedPages(bytes)
        case .raw(let dtype, let bytes) where dtype == .f16 || dtype == .bf16:
            let raw = try DeviceBuffer<UInt16>(queue: ctx.queue, count: count, label: "tensor '\(name)' \(shape) (16-bit staging)")
            try raw.write(raw: bytes)
            releaseMappedPages(bytes)
            try ctx.convertHalf(raw, to: out, count: count, bfloat: dtype == .bf16)
            try ctx.finish()
        case .raw(let dtype, _):
            throw CheckpointError.tensor(path: checkpoint.location, name: name, reason: "dtype \(dtype.rawValue); supported: F32, F16, BF16")
        }
        return out
    }
    /// A frozen matrix W (rows, cols) as the panels of op(B) = Wᵀ (K = cols,
    /// N = rows): F16 / BF16 stay 16-bit (the bits are packed as they are),
    /// anything else becomes fp32. A W past `limitBytes` is kept in blocks of rows
    /// (`FrozenLinear.splitRows`), each uploaded, packed and its staging copy
    /// freed before the next, so no buffer — staging included — exceeds it.
    func frozen(_ name: String, rows: Int, cols: Int) throws -> FrozenLinear {
        let shape = [rows, cols]
        let tensor = try checkpoint.checkpointTensor(name, shape: shape)
        var storage = WeightStorage.f32
        if case .raw(let dtype, _) = tensor, dtype == .f16 || dtype == .bf16 { storage = dtype == .f16 ? .f16 : .bf16 }
        guard let blocks = FrozenLinear.splitRows(outFeatures: rows, inFeatures: cols, bytesPerElement: storage.bytesPerElement,
                                                  limitBytes: limitBytes) else {
            throw CheckpointError.tensor(path: checkpoint.location, name: name, reason:
                "kept in blocks of rows to fit the device's largest buffer (\(limitBytes) bytes), but even the smallest "
                + "block, 16 rows of \(cols) \(storage.rawValue) values (\(16 * ((cols + 15) / 16 * 16) * storage.bytesPerElement) "
                + "bytes as panels), is larger")
        }
        var parts: [FrozenLinear.Part] = []
        for block in blocks {
            let label = "tensor '\(name)' \(shape)" + (blocks.count == 1 ? "" : " rows \(block.lowerBound)..<\(block.upperBound)")
            let first = block.lowerBound * cols, count = block.count * cols
            let panels: PackedMatrix
            switch tensor {
            case .raw(let dtype, let bytes) where dtype == .f16 || dtype == .bf16 || dtype == .f32:
                let e = storage.bytesPerElement
                guard bytes.count >= (first + count) * e else {
                    throw CheckpointError.tensor(path: checkpoint.location, name: name, reason: "\(bytes.count) bytes for shape \(shape)")
                }
                let slice = UnsafeRawBufferPointer(rebasing: bytes[(first * e)..<((first + count) * e)])
                if storage == .f32 {
                    let w = try ctx.buffer(count: count, label: label)
                    try w.write(raw: slice)
                    releaseMappedPages(slice)
                    panels = try ctx.pack(w, k: cols, n: block.count, .transposed)
                } else {
                    let raw = try DeviceBuffer<UInt16>(queue: ctx.queue, count: count, label: label + " (16-bit)")
                    try raw.write(raw: slice)
                    releaseMappedPages(slice)
                    panels = try ctx.pack16(raw, storage: storage, k: cols, n: block.count, .transposed)
                }
            case .floats(let values):
                guard values.count == rows * cols else {
                    throw CheckpointError.tensor(path: checkpoint.location, name: name, reason: "\(values.count) values for shape \(shape)")
                }
                let w = try ctx.buffer(count: count, label: label)
                try values[first..<(first + count)].withUnsafeBytes { try w.write(raw: $0) }
                panels = try ctx.pack(w, k: cols, n: block.count, .transposed)
            case .raw(let dtype, _):
                throw CheckpointError.tensor(path: checkpoint.location, name: name, reason: "dtype \(dtype.rawValue); supported: F32, F16, BF16")
            }
            try ctx.finish()
            parts.append(FrozenLinear.Part(rows: block, panels: panels))
        }
        return try FrozenLinear(parts: parts)
    }

    /// A tensor of the checkpoint as fp32 on the device.
    func load(_ name: String, _ shape: [Int]) throws -> DeviceBuffer<Float> {
        try upload(try checkpoint.checkpointTensor(name, shape: shape), name, shape)
    }
}
