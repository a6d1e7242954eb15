import Foundation
import LoraBase
#if canImport(Glibc)
import Glibc
#endif

/// Errors reading a GGUF file; each names the file and, where it applies, the key or tensor.
public enum GGUFError: Error, CustomStringConvertible, Equatable {
    case io(path: String, reason: String)
    case badMagic(path: String, found: String)
    case unsupportedVersion(path: String, version: UInt32)
    case truncated(path: String, what: String)
    case malformed(path: String, reason: String)
    case metadata(path: String, key: String, reason: String)
    case unsupportedType(path: String, tensor: String, type: String)
    case tensor(path: String, name: String, reason: String)

    public var description: String {
        switch self {
        case .io(let p, let r): return "\(p): \(r)"
        case .badMagic(let p, let f): return "\(p): not a GGUF file (magic \(f), expected \"GGUF\")"
        case .unsupportedVersion(let p, let v): return "\(p): GGUF version \(v) is not supported; supported: 2, 3"
        case .truncated(let p, let w): return "\(p): file is truncated: \(w)"
        case .malformed(let p, let r): return "\(p): not a valid GGUF file: \(r)"
        case .metadata(let p, let k, let r): return "\(p): metadata '\(k)': \(r)"
        case .unsupportedType(let p, let t, let ty):
            return "\(p): tensor '\(t)' has type \(ty), which is not supported; supported: "
                + GGMLType.supported.map(\.name).joined(separator: ", ")
        case .tensor(let p, let n, let r): return "\(p): tensor '\(n)': \(r)"
        }
    }
}

/// One metadata value, typed as the file types it.
public indirect enum GGUFValue: Sendable, Equatable {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16), uint32(UInt32), int32(Int32)
    case float32(Float), bool(Bool), string(String), array([GGUFValue]), uint64(UInt64), int64(Int64), float64(Double)

    /// Any integer type, as Int (nil for other types, or a UInt64 past Int.max).
    public var int: Int? {
        switch self {
        case .uint8(let v): return Int(v)
        case .int8(let v): return Int(v)
        case .uint16(let v): return Int(v)
        case .int16(let v): return Int(v)
        case .uint32(let v): return Int(v)
        case .int32(let v): return Int(v)
        case .uint64(let v): return Int(exactly: v)
        case .int64(let v): return Int(v)
        default: return nil
        }
    }
    /// Any number, as Double.
    public var double: Double? {
        switch self {
        case .float32(let v): return Double(v)
        case .float64(let v): return v
        default: return int.map(Double.init)
        }
    }
    public var string: String? { if case .string(let s) = self { return s }; return nil }
    public var bool: Bool? { if case .bool(let b) = self { return b }; return nil }
    public var array: [GGUFValue]? { if case .array(let a) = self { return a }; return nil }
    public var strings: [String]? { array?.compactMap(\.string) }
}

/// ggml tensor types (ggml.h's enum ggml_type).
public enum GGMLType: UInt32, Sendable, CaseIterable {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9
    case q2_K = 10, q3_K = 11, q4_K = 12, q5_K = 13, q6_K = 14, q8_K = 15
    case iq2_xxs = 16, iq2_xs = 17, iq3_xxs = 18, iq1_s = 19, iq4_nl = 20, iq3_s = 21, iq2_s = 22, iq4_xs = 23
    case i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28, iq1_m = 29, bf16 = 30
    case tq1_0 = 34, tq2_0 = 35, mxfp4 = 39

    /// "F32", "Q4_0", "Q6_K", … as ggml names them.
    public var name: String { String(describing: self).uppercased() }

    /// The types dequantized here.
    public static let supported: [GGMLType] = [.f32, .f16, .bf16, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q4_K, .q5_K, .q6_K]

    /// (elements per block, bytes per block), as ggml's type traits give them.
    public var blockLayout: (elements: Int, bytes: Int) {
        let qk = 256
        switch self {
        case .f32, .i32: return (1, 4)
        case .f16, .bf16, .i16: return (1, 2)
        case .i8: return (1, 1)
        case .i64, .f64: return (1, 8)
        case .q4_0: return (32, 18)
        case .q4_1: return (32, 20)
        case .q5_0: return (32, 22)
        case .q5_1: return (32, 24)
        case .q8_0: return (32, 34)
        case .q8_1: return (32, 40)
        case .q2_K: return (qk, 2 + 2 + qk / 16 + qk / 4)
        case .q3_K: return (qk, 2 + qk / 4 + qk / 8 + 12)
        case .q4_K: return (qk, 2 + 2 + qk / 2 + 12)
        case .q5_K: return (qk, 2 + 2 + qk / 2 + qk / 8 + 12)
        case .q6_K: return (qk, 2 + qk / 2 + qk / 4 + qk / 16)
        case .q8_K: return (qk, 4 + qk + qk / 8)
        case .iq2_xxs: return (qk, 2 + qk / 4)
        case .iq2_xs: return (qk, 2 + qk / 4 + qk / 32)
        case .iq3_xxs: return (qk, 2 + qk / 4 + qk / 8)
        case .iq1_s: return (qk, 2 + qk / 8 + qk / 16)
        case .iq4_nl: return (32, 18)
        case .iq3_s: return (qk, 2 + qk / 4 + qk / 8 + qk / 32 + 4)
        case .iq2_s: return (qk, 2 + qk / 4 + qk / 16)
        case .iq4_xs: return (qk, 2 + 2 + qk / 2 + qk / 64)
        case .iq1_m: return (qk, qk / 8 + qk / 16 + qk / 32)
        case .tq1_0: return (qk, 2 + 4 * 13)
        case .tq2_0: return (qk, 2 + 64)
        case .mxfp4: return (32, 1 + 16)
        }
    }
}

/// One entry of the tensor table. `dims` in ggml order (ne0 innermost);
/// `shape` is the row-major (PyTorch) order, dims reversed.
public struct GGUFTensorInfo: Sendable, Equatable {
    public let name: String
    public let dims: [Int]
    public let type: GGMLType
    /// Byte offset inside the data section.
    public let offset: Int
    public let byteCount: Int
    public var shape: [Int] { dims.reversed() }
    public var count: Int { dims.reduce(1, *) }
}

/// A memory-mapped GGUF file (llama.cpp's format, versions 2 and 3):
/// magic "GGUF", u32 version, u64 tensor count, u64 metadata count, the
/// metadata key/values, the tensor table, padding to `general.alignment`
/// (default 32), then the tensor data. All little-endian.
public final class GGUFFile {
    public let path: String
    public let version: UInt32
    public let metadata: [String: GGUFValue]
    /// Metadata keys in file order.
    public let metadataKeys: [String]
    public let tensors: [String: GGUFTensorInfo]
    /// Tensor names in file order.
    public let tensorNames: [String]
    public let alignment: Int
    private let file: MappedFile
    private let dataStart: Int

    public init(path: String) throws {
        self.path = path
        file = try MappedFile.map(path, atLeast: 4, ioError: { GGUFError.io(path: path, reason: $0) },
                                   tooShort: { GGUFError.truncated(path: path, what: "\($0) bytes, shorter than the magic") })
        let size = file.size, p = file.base!
        var r = GGUFReader(buffer: UnsafeRawBufferPointer(start: p, count: size), path: path)
        let magic = try r.bytes(4, "the magic")
        guard Array(magic) == Array("GGUF".utf8) else {
            let shown = magic.map { (0x20..<0x7f).contains($0) ? String(UnicodeScalar($0)) : String(format: "\\x%02x", $0) }.joined()
            throw GGUFError.badMagic(path: path, found: "\"\(shown)\"")
        }
        version = try r.u32("the version")
        guard version == 2 || version == 3 else { throw GGUFError.unsupportedVersion(path: path, version: version) }
        let nTensors = try r.count("the tensor count", limit: size)
        let nKV = try r.count("the metadata count", limit: size)
        var meta: [String: GGUFValue] = [:]
        var keys: [String] = []
        for i in 0..<nKV {
            let key = try r.string("metadata key \(i)")
            let type = try r.u32("the type of '\(key)'")
            let value = try r.value(type: type, key: key, depth: 0)
            if meta[key] == nil { keys.append(key) }
            meta[key] = value
        }
        var align = 32
        if let a = meta["general.alignment"] {
            guard let n = a.int, n > 0, n & (n - 1) == 0 else {
                throw GGUFError.metadata(path: path, key: "general.alignment", reason: "must be a power of two, got \(a)")
            }
            align = n
        }
        var infos: [String: GGUFTensorInfo] = [:]
        var names: [String] = []
        for i in 0..<nTensors {
            let name = try r.string("the name of tensor \(i)")
            let nDims = try r.u32("the rank of '\(name)'")
            guard nDims >= 1, nDims <= 4 else {
                throw GGUFError.tensor(path: path, name: name, reason: "rank \(nDims); GGUF tensors have 1 to 4 dimensions")
            }
            var dims: [Int] = []
            for _ in 0..<nDims {
                let d = try r.u64("a dimension of '\(name)'")
                guard let di = Int(exactly: d), di >= 0, di <= size * 8 else {
                    throw GGUFError.tensor(path: path, name: name, reason: "dimension \(d) is out of range")
                }
                dims.append(di)
            }
            let rawType = try r.u32("the type of '\(name)'")
            guard let type = GGMLType(rawValue: rawType) else {
                throw GGUFError.unsupportedType(path: path, tensor: name, type: "ggml type \(rawType) (unknown)")
            }
            let off = try r.u64("the offset of '\(name)'")
            guard let offset = Int(exactly: off), offset % align == 0 else {
                throw GGUFError.tensor(path: path, name: name, reason: "offset \(off) is not a multiple of the alignment \(align)")
            }
            let (be, bb) = type.blockLayout
            guard dims[0] % be == 0 else {
                throw GGUFError.tensor(path: path, name: name,
                                       reason: "ne0 = \(dims[0]) is not a multiple of the \(type.name) block size \(be)")
            }
            var count = 1
            for d in dims {
                let (m, o) = count.multipliedReportingOverflow(by: d)
                guard !o, m <= size * 8 else { throw GGUFError.tensor(path: path, name: name, reason: "dimensions \(dims) are too large") }
                count = m
            }
            guard infos[name] == nil else { throw GGUFError.tensor(path: path, name: name, reason: "listed twice in the tensor table") }
            infos[name] = GGUFTensorInfo(name: name, dims: dims, type: type, offset: offset, byteCount: count / be * bb)
            names.append(name)
        }
        let start = (r.position + align - 1) / align * align
        dataStart = start
        for name in names {
            let t = infos[name]!
            // Overflow-safe: the offset comes from the file and may be near Int.max.
            let (e1, o1) = start.addingReportingOverflow(t.offset)
            let (end, o2) = e1.addingReportingOverflow(t.byteCount)
            guard !o1, !o2, end <= size else {
                throw GGUFError.truncated(path: path, what: "tensor '\(name)' at offset \(t.offset) needs \(t.byteCount) bytes past data byte \(start) but the file has \(size)")
            }
        }
        metadata = meta
        metadataKeys = keys
        tensors = infos
        tensorNames = names
        alignment = align
    }

    /// The raw bytes of one tensor (valid while this file is alive).
    public func bytes(_ info: GGUFTensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: file.base! + dataStart + info.offset, count: info.byteCount)
    }

    /// A tensor dequantized to fp32 exactly as ggml (and gguf-py) does, in
    /// ggml order (ne0 fastest), which is row-major order of `shape`.
    public func floats(_ name: String) throws -> [Float] {
        guard let info = tensors[name] else { throw GGUFError.tensor(path: path, name: name, reason: "not in the file") }
        guard GGMLType.supported.contains(info.type) else {
            throw GGUFError.unsupportedType(path: path, tensor: name, type: info.type.name)
        }
        let raw = bytes(info)
        defer { releaseMappedPages(raw) }
        return GGMLDequantize.floats(raw, type: info.type, count: info.count)
    }

    // MARK: typed metadata access

    public func string(_ key: String) throws -> String {
        guard let v = metadata[key] else { throw GGUFError.metadata(path: path, key: key, reason: "missing") }
        guard let s = v.string else { throw GGUFError.metadata(path: path, key: key, reason: "must be a string") }
        return s
    }

    /// nil when absent, an error when not a string.
    public func string(optional key: String) throws -> String? { try optional(key, \.string, "must be a string") }
    public func int(_ key: String) throws -> Int? { try optional(key, \.int, "must be an integer") }
    public func double(_ key: String) throws -> Double? { try optional(key, \.double, "must be a number") }
    public func bool(_ key: String) throws -> Bool? { try optional(key, \.bool, "must be true or false") }

    /// nil when the key is absent; an error naming the key when its value is not of the kind asked.
    private func optional<T>(_ key: String, _ value: (GGUFValue) -> T?, _ reason: String) throws -> T? {
        guard let v = metadata[key] else { return nil }
        guard let x = value(v) else { throw GGUFError.metadata(path: path, key: key, reason: reason) }
        return x
    }
}

/// A bounds-checked little-endian cursor over the mapped file.
struct GGUFReader {
    let buffer: UnsafeRawBufferPointer
    let path: String
    var position = 0

    init(buffer: UnsafeRawBufferPointer, path: String) {
        self.buffer = buffer
        self.path = path
    }

    mutating func bytes(_ n: Int, _ what: @autoclosure () -> String) throws -> UnsafeRawBufferPointer {
        guard n >= 0, n <= buffer.count - position else {
            throw GGUFError.truncated(path: path, what: "reading \(what()) at byte \(position)")
        }
        defer { position += n }
        return UnsafeRawBufferPointer(rebasing: buffer[position..<(position + n)])
    }

    mutating func load<T: FixedWidthInteger>(_: T.Type, _ what: @autoclosure () -> String) throws -> T {
        let b = try bytes(MemoryLayout<T>.size, what())
        return T(littleEndian: b.loadUnaligned(as: T.self))
    }

    mutating func u32(_ what: @autoclosure () -> String) throws -> UInt32 { try load(UInt32.self, what()) }
    mutating func u64(_ what: @autoclosure () -> String) throws -> UInt64 { try load(UInt64.self, what()) }

    /// A u64 count that must fit in the file (each item takes at least one byte).
    mutating func count(_ what: @autoclosure () -> String, limit: Int) throws -> Int {
        let v = try u64(what())
        guard let n = Int(exactly: v), n <= limit else {
            throw GGUFError.malformed(path: path, reason: "\(what()) \(v) is larger than the file")
        }
        return n
    }

    mutating func string(_ what: @autoclosure () -> String) throws -> String {
        let n = try count("the length of \(what())", limit: buffer.count)
        let b = try bytes(n, what())
        return String(decoding: b, as: UTF8.self)
    }

    /// One value of GGUF value type `type` (0 u8 … 12 f64; 9 array of a type, u64 count).
    mutating func value(type: UInt32, key: String, depth: Int) throws -> GGUFValue {
        let what = "the value of '\(key)'"
        switch type {
        case 0: return .uint8(try load(UInt8.self, what))
        case 1: return .int8(try load(Int8.self, what))
        case 2: return .uint16(try load(UInt16.self, what))
        case 3: return .int16(try load(Int16.self, what))
        case 4: return .uint32(try load(UInt32.self, what))
        case 5: return .int32(try load(Int32.self, what))
        case 6: return .float32(Float(bitPattern: try load(UInt32.self, what)))
        case 7:
            let b = try load(UInt8.self, what)
            guard b <= 1 else { throw GGUFError.metadata(path: path, key: key, reason: "bool byte \(b) is neither 0 nor 1") }
            return .bool(b == 1)
        case 8: return .string(try string(what))
        case 9:
            guard depth < 8 else { throw GGUFError.metadata(path: path, key: key, reason: "arrays nested too deep") }
            let itemType = try u32("the item type of '\(key)'")
            let n = try count("the length of '\(key)'", limit: buffer.count - position)
            var items: [GGUFValue] = []
            items.reserveCapacity(n)
            for _ in 0..<n { items.append(try value(type: itemType, key: key, depth: depth + 1)) }
            return .array(items)
        case 10: return .uint64(try load(UInt64.self, what))
        case 11: return .int64(try load(Int64.self, what))
        case 12: return .float64(Double(bitPattern: try load(UInt64.self, what)))
        default: throw GGUFError.metadata(path: path, key: key, reason: "unknown value type \(type)")
        }
    }
}
