import Foundation
import LoraBase
import LoraOps

/// How the frozen weights are kept on the device (`--quantize`, settings key `quantize`).
public enum QuantizeMode: String, CaseIterable, Sendable {
    /// A GGUF base keeps its Q8_0 … Q5_1 and Q4_K/Q5_K/Q6_K blocks (its other types dequantized to fp32 at load); a safetensors
    /// base keeps its dtype (16-bit stays 16-bit). The default.
    case auto
    /// Nothing quantized: 16-bit stays 16-bit, a GGUF file is dequantized to fp32 at load (the path before
    /// quantized storage; a run on it gives the same numbers, bit for bit, as `auto` on a GGUF base).
    case none
    /// Each frozen matrix of a 16/32-bit checkpoint (safetensors, or a GGUF file's F32/F16/BF16 tensors) quantized
    /// at load: q8_0 / q4_0 as gguf-py's `quantize` does (`GGMLQuantize`), nf4 as bitsandbytes' `quantize_4bit`
    /// (`NF4Quantize`); a GGUF file's quantized blocks are kept as they are.
    case q8_0, q4_0, nf4

    /// The storage a 16/32-bit matrix is quantized to, nil for `auto` and `none`.
    public var storage: WeightStorage? {
        switch self {
        case .auto, .none: return nil
        case .q8_0: return .q8_0
        case .q4_0: return .q4_0
        case .nf4: return .nf4
        }
    }

    public static func parse(_ s: String, key: String = "quantize") throws -> QuantizeMode {
        guard let m = QuantizeMode(rawValue: s.lowercased()) else {
            throw CheckpointError.config(path: "settings", field: key, reason: "'\(s)' is not one of "
                                         + allCases.map(\.rawValue).joined(separator: ", "))
        }
        return m
    }
}

/// ggml's Q8_0 and Q4_0 quantizers, transcribed from gguf-py's numpy `quantize` with its fp32 operations in its
/// order (the bytes are checked against gguf-py's by a fixture, `scripts/make_quantize_fixture.py`).
public enum GGMLQuantize {
    /// W (rows, cols) row-major, cols a multiple of 32, into ggml blocks of `type` (rows × cols/32 blocks).
    public static func quantize(_ w: UnsafeBufferPointer<Float>, type: GGMLType) -> [UInt8] {
        let (be, bb) = type.blockLayout
        precondition(be == 32 && w.count % 32 == 0 && (type == .q8_0 || type == .q4_0), "GGMLQuantize: Q8_0 or Q4_0 over whole blocks")
        let n = w.count / 32
        var out = [UInt8](repeating: 0, count: n * bb)
        out.withUnsafeMutableBufferPointer { o in
            for b in 0..<n {
                let x = UnsafeBufferPointer(rebasing: w[(b * 32)..<(b * 32 + 32)])
                let dst = UnsafeMutableBufferPointer(rebasing: o[(b * bb)..<(b * bb + bb)])
                if type == .q8_0 { q8_0(x, dst) } else { q4_0(x, dst) }
            }
        }
        return out
    }

    @inline(__always) static func putHalf(_ v: Float, _ o: UnsafeMutableBufferPointer<UInt8>) {
        let bits = Float16(v).bitPattern
        o[0] = UInt8(bits & 0xFF)
        o[1] = UInt8(bits >> 8)
    }

    /// d = max|x| / 127, id = 1/d (0 when d = 0), q = roundf(x·id) (half away from zero, as np_roundf), d as f16.
    static func q8_0(_ x: UnsafeBufferPointer<Float>, _ o: UnsafeMutableBufferPointer<UInt8>) {
        var amax: Float = 0
        for v in x { amax = max(amax, abs(v)) }
        let d = amax / 127
        let id: Float = d == 0 ? 0 : 1 / d
        putHalf(d, o)
        for j in 0..<32 {
            let t = x[j] * id
            let a = abs(t), f = a.rounded(.down)
            let r = f + (2 * (a - f)).rounded(.down)
            let q = t < 0 ? -r : (t > 0 ? r : 0)
            o[2 + j] = UInt8(truncatingIfNeeded: Int(q))
        }
    }

    /// max = the x of largest |x| (the first), d = max / −8, id = 1/d (0 when d = 0),
    /// q = min(15, trunc(x·id + 8.5)); element j < 16 the low nibble of byte j, j ≥ 16 the high one of byte j − 16.
    static func q4_0(_ x: UnsafeBufferPointer<Float>, _ o: UnsafeMutableBufferPointer<UInt8>) {
        var m: Float = 0, amax: Float = -1
        for v in x where abs(v) > amax { amax = abs(v); m = v }
        let d = m / -8
        let id: Float = d == 0 ? 0 : 1 / d
        putHalf(d, o)
        func q(_ j: Int) -> UInt8 { UInt8(min(15, max(0, (x[j] * id + 8.5).rounded(.towardZero)))) }
        for j in 0..<16 { o[2 + j] = q(j) | q(j + 16) << 4 }
    }
}

/// QLoRA's NF4 as bitsandbytes 0.50's `quantize_4bit(blocksize=64, quant_type="nf4")` makes it (its default and
/// CPU kernels): per block of 64 values absmax = max|x|, x·(1/absmax) clamped to [−1, 1], q the bucket of the
/// sorted code values' midpoints (a value on a midpoint goes below), two per byte with the first in the high
/// nibble; the value back is code[q]·absmax. Checked against bitsandbytes by `scripts/make_quantize_fixture.py`.
/// The source blocks `reblock_q` reads: absmax (fp32, little-endian), then the 32 packed bytes.
public enum NF4Quantize {
    /// bitsandbytes' NF4 code values, bit for bit (also Kernels/common.cl's NF4_CODE).
    public static let code: [Float] = [
        -0x1.0p+0, -0x1.647362p-1, -0x1.0cd66p-1, -0x1.94654p-2, -0x1.23449ap-2, -0x1.7a6a7ep-3, -0x1.74f0e2p-4, 0,
        0x1.45f5fep-4, 0x1.4995c6p-3, 0x1.f809bap-3, 0x1.5a0674p-2, 0x1.c3497p-2, 0x1.200f56p-1, 0x1.722766p-1, 0x1.0p+0,
    ]
    /// The midpoints between neighbouring code values, in fp32 ((a + b) / 2, as torch computes them).
    static let midpoints: [Float] = (0..<15).map { (code[$0] + code[$0 + 1]) / 2 }

    /// W (rows, cols) row-major, cols a multiple of 64, into NF4 source blocks (rows × cols/64 × 36 bytes).
    public static func quantize(_ w: UnsafeBufferPointer<Float>) -> [UInt8] {
        precondition(w.count % 64 == 0, "NF4Quantize: whole blocks of 64")
        let n = w.count / 64
        var out = [UInt8](repeating: 0, count: n * 36)
        for b in 0..<n {
            var amax: Float = 0
            for j in 0..<64 { amax = max(amax, abs(w[b * 64 + j])) }
            withUnsafeBytes(of: amax.bitPattern.littleEndian) { for j in 0..<4 { out[b * 36 + j] = $0[j] } }
            let inv = 1 / max(amax, 1e-38)
            func q(_ j: Int) -> UInt8 {
                let x = min(1, max(-1, w[b * 64 + j] * inv))
                var i = 0
                while i < 15 && midpoints[i] < x { i += 1 }
                return UInt8(i)
            }
            for j in 0..<32 { out[b * 36 + 4 + j] = q(2 * j) << 4 | q(2 * j + 1) }
        }
        return out
    }

    /// The values of `count` elements of NF4 source blocks.
    public static func dequantize(_ raw: UnsafeRawBufferPointer, count: Int) -> [Float] {
        (0..<count).map { e in
            let b = e / 64, j = e % 64
            let amax = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: b * 36, as: UInt32.self)))
            let byte = raw[b * 36 + 4 + j / 2]
            return code[Int(j % 2 == 0 ? byte >> 4 : byte & 0x0F)] * amax
        }
    }
}

/// The host's view of the source blocks of a quantized storage.
public enum QuantizedBlocks {
    /// `count` values of source blocks of `storage` (ggml's for Q8_0 … Q6_K, NF4's).
    public static func dequantize(_ raw: UnsafeRawBufferPointer, storage: WeightStorage, count: Int) -> [Float] {
        if storage == .nf4 { return NF4Quantize.dequantize(raw, count: count) }
        let type = GGMLType.allCases.first { $0.name == storage.rawValue.uppercased() }!
        return GGMLDequantize.floats(raw, type: type, count: count)
    }

    /// W (rows, cols) quantized into source blocks of `storage` (Q8_0, Q4_0 or NF4).
    public static func quantize(_ w: UnsafeBufferPointer<Float>, storage: WeightStorage) -> [UInt8] {
        switch storage {
        case .q8_0: return GGMLQuantize.quantize(w, type: .q8_0)
        case .q4_0: return GGMLQuantize.quantize(w, type: .q4_0)
        case .nf4: return NF4Quantize.quantize(w)
        default: preconditionFailure("QuantizedBlocks.quantize: \(storage) is not made at load")
        }
    }
}

/// A 16/32-bit checkpoint whose frozen matrices are quantized at load (`QuantizeMode.q8_0`, `.q4_0`, `.nf4`): each
/// comes back as `.ownedBlocks`; a matrix whose rows are not whole blocks (in not a multiple of 32, 64 for NF4),
/// or a GGUF file's already-quantized tensor, is left as the base gives it.
final class QuantizingCheckpoint: CheckpointSource {
    let base: CheckpointSource
    let storage: WeightStorage

    /// The most fp32 bytes of a matrix converted at once for quantizing (a block of whole rows, at least one row).
    nonisolated(unsafe) static var blockBytes = 64 << 20

    init(_ base: CheckpointSource, storage: WeightStorage) {
        self.base = base
        self.storage = storage
    }

    var location: String { base.location }
    func contains(_ name: String) -> Bool { base.contains(name) }
    func checkpointTensor(_ name: String, shape: [Int]) throws -> CheckpointTensor { try base.checkpointTensor(name, shape: shape) }
    func validateTensor(_ name: String, shape: [Int]) throws -> String { try base.validateTensor(name, shape: shape) }
    var tensorNames: [String] { base.tensorNames }

    /// Whether the matrix is quantized here: whole blocks, and a 16/32-bit type in the file.
    func quantizes(_ name: String, shape: [Int]) throws -> Bool {
        guard shape.count == 2, shape[1] % storage.quantBlockRows == 0 else { return false }
        let stored = try base.frozenDType(name, shape: shape)
        return ["F32", "F16", "BF16", "F32 → F32", "F16 → F32", "BF16 → F32"].contains(stored)
    }

    func frozenDType(_ name: String, shape: [Int]) throws -> String {
        let stored = try base.frozenDType(name, shape: shape)
        guard try quantizes(name, shape: shape) else { return stored }
        return stored.components(separatedBy: " → ")[0] + " → " + storage.rawValue.uppercased()
    }

    func frozenTensor(_ name: String, shape: [Int]) throws -> CheckpointTensor {
        guard try quantizes(name, shape: shape) else { return try base.frozenTensor(name, shape: shape) }
        let t = try base.frozenTensor(name, shape: shape)
        let (rows, cols) = (shape[0], shape[1])
        guard case .raw(let dtype, let bytes) = t else {
            let w = try t.floats(path: location, name: name)
            return .ownedBlocks(storage: storage, bytes: w.withUnsafeBufferPointer { QuantizedBlocks.quantize($0, storage: storage) },
                                rows: rows, cols: cols)
        }
        // A block of rows at a time (blocks never cross a row: cols is a whole number of them), so the fp32 copies held
        // are a few blocks', not the matrix's (an 8B model's lm_head: 2.1 GB in fp32), and a block's mapped pages are
        // released once it is quantized (as the loader releases them after a copy). The blocks run on every core, each
        // writing its own bytes of the result: byte for byte the whole matrix's result, in any order.
        let rowBytes = cols * dtype.size, blockRows = max(1, min(rows, Self.blockBytes / max(4 * cols, 1)))
        let outRowBytes = cols / storage.quantBlockRows * storage.sourceBlockBytes
        let starts = Array(stride(from: 0, to: rows, by: blockRows))
        var out = [UInt8](repeating: 0, count: rows * outRowBytes)
        let failure = NSLock()
        var firstError: Error? = nil
        out.withUnsafeMutableBytes { dst in
            let base = dst.baseAddress!
            DispatchQueue.concurrentPerform(iterations: starts.count) { i in
                let r0 = starts[i], r1 = min(rows, r0 + blockRows)
                let slice = UnsafeRawBufferPointer(rebasing: bytes[(r0 * rowBytes)..<(r1 * rowBytes)])
                do {
                    let w = try SafeTensorsFile.toFloat(slice, dtype: dtype, path: location, name: name)
                    let q = w.withUnsafeBufferPointer { QuantizedBlocks.quantize($0, storage: storage) }
                    q.withUnsafeBytes { (base + r0 * outRowBytes).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                } catch {
                    failure.lock(); if firstError == nil { firstError = error }; failure.unlock()
                }
                releaseMappedPages(slice)
            }
        }
        if let firstError { throw firstError }
        return .ownedBlocks(storage: storage, bytes: out, rows: rows, cols: cols)
    }
}
