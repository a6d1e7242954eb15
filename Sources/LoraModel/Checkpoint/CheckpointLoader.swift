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
        case .blocks, .ownedBlocks:
            try out.write(try tensor.floats(path: checkpoint.location, name: name))
        }
        return out
    }
    /// A frozen matrix W (rows, cols) as the panels of op(B) = Wᵀ (K = cols,
    /// N = rows): F16 / BF16 stay 16-bit (the bits are packed as they are), a
    /// GGUF file's Q8_0 … Q6_K stay in their blocks (re-blocked on the device),
    /// anything else becomes fp32. A W past `limitBytes` is kept in blocks of rows
    /// (`FrozenLinear.splitRows`), each uploaded, packed and its staging copy
    /// freed before the next, so no buffer — staging included — exceeds it.
    func frozen(_ name: String, rows: Int, cols: Int) throws -> FrozenLinear {
        let shape = [rows, cols]
        let tensor = try checkpoint.frozenTensor(name, shape: shape)
        var storage = WeightStorage.f32
        if case .raw(let dtype, _) = tensor, dtype == .f16 || dtype == .bf16 { storage = dtype == .f16 ? .f16 : .bf16 }
        if case .blocks(let type, _, _, _, _) = tensor, let s = WeightStorage.quantized(ggmlName: type.name) { storage = s }
        if case .ownedBlocks(let s, _, _, _) = tensor { storage = s }
        guard let blocks = FrozenLinear.splitRows(outFeatures: rows, inFeatures: cols, storage: storage, limitBytes: limitBytes) else {
            throw CheckpointError.tensor(path: checkpoint.location, name: name, reason:
                "kept in blocks of rows to fit the device's largest buffer (\(limitBytes) bytes), but even the smallest "
                + "block, 16 rows of \(cols) \(storage.rawValue) values (\(storage.bytes(k: cols, n: 16)) "
                + "bytes as panels), is larger")
        }
        if case .blocks(let type, let bytes, _, _, let rowSource) = tensor {
            _ = type
            return try FrozenLinear(parts: try quantizedParts(name, shape, storage: storage, bytes: bytes,
                                                              mapped: true, rowSource: rowSource, blocks: blocks))
        }
        if case .ownedBlocks(_, let bytes, _, _) = tensor {
            return try FrozenLinear(parts: try bytes.withUnsafeBytes {
                try quantizedParts(name, shape, storage: storage, bytes: $0, mapped: false, rowSource: nil, blocks: blocks)
            })
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
            case .blocks, .ownedBlocks:
                preconditionFailure("quantized tensors are loaded by quantizedParts")
            }
            try ctx.finish()
            parts.append(FrozenLinear.Part(rows: block, panels: panels))
        }
        return try FrozenLinear(parts: parts)
    }

    /// The parts of a W kept in its ggml blocks: each block of rows staged as the file holds it (with mapped rows,
    /// q/k of llama.cpp's rotary order: the file's rows from the least to the greatest the part reads, no more
    /// than the part and one head), re-blocked, staging freed before the next part.
    /// `mapped`: the bytes are a mapped file's (their pages released once copied), not memory of the caller's.
    func quantizedParts(_ name: String, _ shape: [Int], storage: WeightStorage, bytes: UnsafeRawBufferPointer,
                        mapped: Bool, rowSource: [Int32]?, blocks: [Range<Int>]) throws -> [FrozenLinear.Part] {
        let cols = shape[1], rowBytes = cols / storage.quantBlockRows * storage.sourceBlockBytes
        let type = storage.rawValue.uppercased()
        var parts: [FrozenLinear.Part] = []
        for block in blocks {
            let label = "tensor '\(name)' \(shape) \(type)" + (blocks.count == 1 ? "" : " rows \(block.lowerBound)..<\(block.upperBound)")
            let panels: PackedMatrix
            if let rowSource {
                let rows = rowSource[block].map(Int.init)
                let lo = rows.min()!, hi = rows.max()! + 1
                let slice = UnsafeRawBufferPointer(rebasing: bytes[(lo * rowBytes)..<(hi * rowBytes)])
                let staging = try DeviceBuffer<UInt8>(queue: ctx.queue, count: slice.count, label: label + " (blocks)")
                try staging.write(raw: slice)
                if mapped { releaseMappedPages(slice) }
                let map = try DeviceBuffer<Int32>(queue: ctx.queue, rows.map { Int32($0 - lo) })
                panels = try ctx.packQuantized(staging, storage: storage, rows: block.count, cols: cols, rowSource: map, label: label)
            } else {
                let slice = UnsafeRawBufferPointer(rebasing: bytes[(block.lowerBound * rowBytes)..<(block.upperBound * rowBytes)])
                let staging = try DeviceBuffer<UInt8>(queue: ctx.queue, count: slice.count, label: label + " (blocks)")
                try staging.write(raw: slice)
                if mapped { releaseMappedPages(slice) }
                panels = try ctx.packQuantized(staging, storage: storage, rows: block.count, cols: cols, label: label)
            }
            try ctx.finish()
            parts.append(FrozenLinear.Part(rows: block, panels: panels))
        }
        return parts
    }

    /// A tensor of the checkpoint as fp32 on the device.
    func load(_ name: String, _ shape: [Int]) throws -> DeviceBuffer<Float> {
        try upload(try checkpoint.checkpointTensor(name, shape: shape), name, shape)
    }
}
