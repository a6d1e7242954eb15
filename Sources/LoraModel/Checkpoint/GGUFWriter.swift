import Foundation
import LoraBase

/// Writes a GGUF file (version 3, little-endian), the layout GGUFFile reads and gguf-py writes:
///   "GGUF", version u32, tensor count u64, key/value count u64,
///   each key/value: key (u64 length + UTF-8), value type u32, value (arrays: element type u32,
///   count u64, elements),
///   each tensor: name, n_dims u32, dims u64 × n_dims (ne order: dims[0] varies fastest),
///   ggml type u32, data offset u64 (from the start of the data section, aligned),
///   padding to `general.alignment` (32), then the tensors' data, each padded to the alignment.
/// Tensors are F32 or F16 (rounded to nearest even, as numpy's astype(float16)). The file is
/// written whole to a temporary path and renamed (AtomicFile): a reader never sees half a file.
public struct GGUFWriter {
    /// q8_0: ggml's blocks of 32 (an f16 scale d = max|x|/127, 32 int8 q = round(x/d)),
    /// bit-identical to gguf-py's quantize; only for tensors whose rows hold a
    /// multiple of 32 values (`canHold`).
    public enum TensorType: Sendable { case f32, f16, q8_0 }

    /// Whether a tensor of `shape` (row-major) can be stored as `type`.
    public static func canHold(_ type: TensorType, shape: [Int]) -> Bool {
        type != .q8_0 || (shape.last ?? 0) % 32 == 0
    }

    /// gguf-py's Q8_0.quantize_blocks: per block of 32, d = max|x|/127 and q =
    /// np_roundf(x·(1/d)) in float32 (round half away from zero), d stored as f16.
    static func q8_0(_ values: [Float]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(values.count / 32 * 34)
        for start in stride(from: 0, to: values.count, by: 32) {
            let block = values[start..<(start + 32)]
            let d = block.reduce(Float(0)) { Swift.max($0, abs($1)) } / 127
            let id: Float = d == 0 ? 0 : 1 / d
            withUnsafeBytes(of: Float16(d).bitPattern.littleEndian) { out.append(contentsOf: $0) }
            for x in block {
                let n = x * id, a = abs(n), f = a.rounded(.down)
                let q = (f + (2 * (a - f)).rounded(.down)) * (n < 0 ? -1 : n > 0 ? 1 : 0)
                out.append(UInt8(bitPattern: Int8(q)))
            }
        }
        return out
    }

    struct Tensor {
        let name: String
        let shape: [Int]          // row-major shape (numpy order); GGUF dims are its reverse
        let values: [Float]
        let type: TensorType
    }

    public static let alignment = 32
    var metadata: [(String, GGUFValue)] = []
    var tensors: [Tensor] = []

    public init() {}

    /// Appends a key/value (in the order given, as the file lists them). Arrays are non-empty and of
    /// one element type (as gguf-py requires); `general.alignment` is fixed at 32 here.
    public mutating func add(_ key: String, _ value: GGUFValue) {
        if case .array(let a) = value {
            precondition(!a.isEmpty, "GGUF \(key): an empty array has no element type")
            precondition(a.allSatisfy { String(describing: $0).prefix(while: { $0 != "(" }) == String(describing: a[0]).prefix(while: { $0 != "(" }) },
                         "GGUF \(key): array elements of several types")
        }
        precondition(key != "general.alignment", "GGUF general.alignment: this writer aligns to 32")
        metadata.append((key, value))
    }

    /// Appends a tensor of row-major `shape` (as numpy and safetensors give it).
    /// A tensor stored as `type`; q8_0 where its rows do not split into blocks of 32
    /// falls back to f16, as llama.cpp's converters do.
    public mutating func add(tensor name: String, shape: [Int], values: [Float], type: TensorType) {
        precondition(shape.reduce(1, *) == values.count, "tensor \(name): \(values.count) values for shape \(shape)")
        tensors.append(Tensor(name: name, shape: shape, values: values, type: Self.canHold(type, shape: shape) ? type : .f16))
    }

    public func data() -> Data {
        var out = Data()
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func string(_ s: String) { u64(UInt64(s.utf8.count)); out.append(contentsOf: Array(s.utf8)) }
        func typeCode(_ v: GGUFValue) -> UInt32 {
            switch v {
            case .uint8: return 0
            case .int8: return 1
            case .uint16: return 2
            case .int16: return 3
            case .uint32: return 4
            case .int32: return 5
            case .float32: return 6
            case .bool: return 7
            case .string: return 8
            case .array: return 9
            case .uint64: return 10
            case .int64: return 11
            case .float64: return 12
            }
        }
        func value(_ v: GGUFValue) {
            switch v {
            case .uint8(let x): out.append(x)
            case .int8(let x): out.append(UInt8(bitPattern: x))
            case .uint16(let x): withUnsafeBytes(of: x.littleEndian) { out.append(contentsOf: $0) }
            case .int16(let x): withUnsafeBytes(of: x.littleEndian) { out.append(contentsOf: $0) }
            case .uint32(let x): u32(x)
            case .int32(let x): u32(UInt32(bitPattern: x))
            case .float32(let x): u32(x.bitPattern)
            case .bool(let b): out.append(b ? 1 : 0)
            case .string(let s): string(s)
            case .array(let a):
                u32(a.first.map(typeCode) ?? 8)
                u64(UInt64(a.count))
                for e in a { value(e) }
            case .uint64(let x): u64(x)
            case .int64(let x): u64(UInt64(bitPattern: x))
            case .float64(let x): u64(x.bitPattern)
            }
        }
        func pad() { while out.count % Self.alignment != 0 { out.append(0) } }
        func bytes(_ t: Tensor) -> Int {
            switch t.type { case .f32: return t.values.count * 4; case .f16: return t.values.count * 2; case .q8_0: return t.values.count / 32 * 34 }
        }
        out.append(contentsOf: Array("GGUF".utf8))
        u32(3)
        u64(UInt64(tensors.count))
        u64(UInt64(metadata.count))
        for (k, v) in metadata {
            string(k)
            u32(typeCode(v))
            value(v)
        }
        var offset = 0
        for t in tensors {
            string(t.name)
            u32(UInt32(t.shape.count))
            for d in t.shape.reversed() { u64(UInt64(d)) }
            u32((t.type == .f32 ? GGMLType.f32 : t.type == .f16 ? GGMLType.f16 : GGMLType.q8_0).rawValue)
            u64(UInt64(offset))
            offset += (bytes(t) + Self.alignment - 1) / Self.alignment * Self.alignment
        }
        pad()
        for t in tensors {
            switch t.type {
            case .f32: for x in t.values { u32(x.bitPattern) }
            case .f16: for x in t.values { withUnsafeBytes(of: Float16(x).bitPattern.littleEndian) { out.append(contentsOf: $0) } }
            case .q8_0: out.append(contentsOf: Self.q8_0(t.values))
            }
            pad()
        }
        return out
    }

    /// Writes the file atomically.
    public func write(to path: String) throws {
        do { try AtomicFile.write(data(), to: path) } catch let e as AtomicFile.WriteError {
            throw GGUFWriteError(path: path, reason: e.reason)
        }
    }
}

public struct GGUFWriteError: Error, CustomStringConvertible {
    public let path: String
    public let reason: String
    public var description: String { "\(path): cannot write: \(reason)" }
}
