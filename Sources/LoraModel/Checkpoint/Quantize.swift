import Foundation
import LoraBase
import LoraOps

/// How the frozen weights are kept on the device (`--quantize`, settings key `quantize`).
public enum QuantizeMode: String, CaseIterable, Sendable {
    /// A GGUF base keeps its Q8_0 … Q5_1 blocks (its other types dequantized to fp32 at load); a safetensors
    /// base keeps its dtype (16-bit stays 16-bit). The default.
    case auto
    /// Nothing quantized: 16-bit stays 16-bit, a GGUF file is dequantized to fp32 at load (the path before
    /// quantized storage; a run on it gives the same numbers, bit for bit, as `auto` on a GGUF base).
    case none
    /// Each frozen matrix of a 16/32-bit checkpoint (safetensors, or a GGUF file's F32/F16/BF16 tensors) quantized
    /// at load as gguf-py's `quantize` does (`GGMLQuantize`); a GGUF file's quantized blocks are kept as they are.
    case q8_0, q4_0

    /// The storage a 16/32-bit matrix is quantized to, nil for `auto` and `none`.
    public var storage: WeightStorage? {
        switch self {
        case .auto, .none: return nil
        case .q8_0: return .q8_0
        case .q4_0: return .q4_0
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

/// A 16/32-bit checkpoint whose frozen matrices are quantized at load (`QuantizeMode.q8_0`, `.q4_0`): each comes
/// back as `.ownedBlocks` in ggml's block layout; a matrix whose rows are not whole blocks (in not a multiple of
/// 32), or a GGUF file's already-quantized tensor, is left as the base gives it.
final class QuantizingCheckpoint: CheckpointSource {
    let base: CheckpointSource
    let type: GGMLType

    init(_ base: CheckpointSource, type: GGMLType) {
        self.base = base
        self.type = type
    }

    var location: String { base.location }
    func contains(_ name: String) -> Bool { base.contains(name) }
    func checkpointTensor(_ name: String, shape: [Int]) throws -> CheckpointTensor { try base.checkpointTensor(name, shape: shape) }
    func validateTensor(_ name: String, shape: [Int]) throws -> String { try base.validateTensor(name, shape: shape) }
    var tensorNames: [String] { base.tensorNames }

    /// Whether the matrix is quantized here: whole blocks, and a 16/32-bit type in the file.
    func quantizes(_ name: String, shape: [Int]) throws -> Bool {
        guard shape.count == 2, shape[1] % 32 == 0 else { return false }
        let stored = try base.frozenDType(name, shape: shape)
        return ["F32", "F16", "BF16", "F32 → F32", "F16 → F32", "BF16 → F32"].contains(stored)
    }

    func frozenDType(_ name: String, shape: [Int]) throws -> String {
        let stored = try base.frozenDType(name, shape: shape)
        guard try quantizes(name, shape: shape) else { return stored }
        return stored.components(separatedBy: " → ")[0] + " → " + type.name
    }

    func frozenTensor(_ name: String, shape: [Int]) throws -> CheckpointTensor {
        guard try quantizes(name, shape: shape) else { return try base.frozenTensor(name, shape: shape) }
        let w = try base.hostFloats(name, shape: shape)
        return .ownedBlocks(type: type, bytes: w.withUnsafeBufferPointer { GGMLQuantize.quantize($0, type: type) },
                            rows: shape[0], cols: shape[1])
    }
}
