import Foundation
import LoraBase
#if canImport(Glibc)
import Glibc
#endif

/// Errors reading checkpoints and adapters. Each names the file and, where it
/// applies, the tensor or field at fault.
public enum CheckpointError: Error, CustomStringConvertible, Equatable {
    case io(path: String, reason: String)
    case malformed(path: String, reason: String)
    case tensor(path: String, name: String, reason: String)
    case missingTensor(name: String, searched: String)
    case config(path: String, field: String, reason: String)

    public var description: String {
        switch self {
        case .io(let p, let r): return "\(p): \(r)"
        case .malformed(let p, let r): return "\(p): not a valid safetensors file: \(r)"
        case .tensor(let p, let n, let r): return "\(p): tensor '\(n)': \(r)"
        case .missingTensor(let n, let s): return "tensor '\(n)' not found in \(s)"
        case .config(let p, let f, let r): return "\(p): field '\(f)': \(r)"
        }
    }
}

public enum DType: String, Sendable, CaseIterable {
    case f32 = "F32", f16 = "F16", bf16 = "BF16", f64 = "F64", i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8",
         u8 = "U8", bool = "BOOL", u16 = "U16", u32 = "U32", u64 = "U64", f8e4m3 = "F8_E4M3", f8e5m2 = "F8_E5M2"
    public var size: Int {
        switch self {
        case .f64, .i64, .u64: return 8
        case .f32, .i32, .u32: return 4
        case .f16, .bf16, .i16, .u16: return 2
        case .i8, .u8, .bool, .f8e4m3, .f8e5m2: return 1
        }
    }
}

public struct TensorInfo: Sendable, Equatable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    /// Byte range inside the data section (after the header).
    public let begin: Int, end: Int
    /// Elements (checked not to overflow when the header was read).
    public var count: Int { shape.reduce(1, *) }
}

/// A memory-mapped safetensors file: 8-byte little-endian header length, a
/// JSON header {name: {dtype, shape, data_offsets: [begin, end]}}, then the
/// data. Everything in the header is validated against the file on open, as
/// safetensors itself does: no repeated key, integer shapes and offsets, each
/// tensor's bytes = elements × dtype size, and the byte ranges tiling the data
/// section exactly (from 0, no overlap, no gap, nothing after the last).
/// A tensor of a dtype this reader does not know is kept aside in
/// `unknownDTypes` and refused only when asked for.
public final class SafeTensorsFile {
    public let path: String
    public let tensors: [String: TensorInfo]
    /// Tensors whose dtype is not one of `DType` (name → the header's dtype).
    public let unknownDTypes: [String: String]
    public let metadata: [String: String]
    private let file: MappedFile
    private var base: UnsafeMutableRawPointer { file.base! }
    private let dataStart: Int

    /// The largest header safetensors accepts (100 MB).
    public static let maxHeaderBytes = 100_000_000

    public init(path: String) throws {
        self.path = path
        file = try MappedFile.map(path, atLeast: 8, ioError: { CheckpointError.io(path: path, reason: $0) }, tooShort: {
            CheckpointError.malformed(path: path, reason: "file is \($0) bytes, shorter than the 8-byte header length")
        })
        let size = file.size, p = file.base!
        // Compared as UInt64 first: a length ≥ 2⁶³ does not fit in Int.
        let rawLen = UInt64(littleEndian: p.loadUnaligned(as: UInt64.self))
        guard rawLen > 0, rawLen <= UInt64(size - 8) else {
            throw CheckpointError.malformed(path: path, reason: "header length \(rawLen) does not fit in the \(size)-byte file (truncated file?)")
        }
        let headerLen = Int(rawLen)
        guard headerLen <= Self.maxHeaderBytes else {
            throw CheckpointError.malformed(path: path, reason: "header length \(headerLen) exceeds the \(Self.maxHeaderBytes)-byte limit")
        }
        dataStart = 8 + headerLen
        // Strict: a key repeated in one object is an error, not silently the last value;
        // nesting is bounded, so a hostile header gives an error, never a trap.
        let root: JSONValue
        do {
            root = try JSONValue.parse(bytes: UnsafeRawBufferPointer(start: p + 8, count: headerLen),
                                       options: JSONParseOptions(rejectDuplicateKeys: true, maxDepth: 32))
        } catch let e as JSONParseError {
            throw CheckpointError.malformed(path: path, reason: "header is not valid JSON: \(e.reason) at header byte \(e.offset)")
        }
        guard case .object(let entries) = root else {
            throw CheckpointError.malformed(path: path, reason: "header is not a JSON object")
        }
        var infos: [String: TensorInfo] = [:]
        var unknown: [String: String] = [:]
        var ranges: [(name: String, begin: Int, end: Int)] = []
        var meta: [String: String] = [:]
        let dataSize = size - dataStart
        for (name, value) in entries.pairs {
            func fail(_ r: String) -> CheckpointError { .tensor(path: path, name: name, reason: r) }
            if name == "__metadata__" {
                guard case .object(let kv) = value else {
                    throw CheckpointError.malformed(path: path, reason: "__metadata__ is not an object")
                }
                for (k, v) in kv.pairs {
                    guard case .string(let s) = v else {
                        throw CheckpointError.malformed(path: path, reason: "__metadata__ '\(k)' is \(v.shortDescription), not a string")
                    }
                    meta[k] = s
                }
                continue
            }
            guard case .object(let fields) = value else { throw fail("header entry is not an object") }
            let field = fields
            guard case .string(let dts)? = field["dtype"] else {
                throw fail("dtype is \(field["dtype"]?.shortDescription ?? "missing"), not a string")
            }
            guard case .array(let shapeItems)? = field["shape"] else {
                throw fail("shape is \(field["shape"]?.shortDescription ?? "missing"), not a list of integers")
            }
            var shape: [Int] = []
            var count = 1
            for item in shapeItems {
                guard case .int(let d) = item, d >= 0 else {
                    throw fail("bad shape \(JSONValue.array(shapeItems).shortDescription): dimensions must be non-negative integers")
                }
                let (m, o) = count.multipliedReportingOverflow(by: d)
                guard !o else { throw fail("shape \(JSONValue.array(shapeItems).shortDescription) has more elements than fit in 64 bits") }
                count = m
                shape.append(d)
            }
            guard case .array(let offs)? = field["data_offsets"], offs.count == 2,
                  case .int(let b) = offs[0], case .int(let e) = offs[1], b >= 0, e >= b else {
                throw fail("bad data_offsets \(field["data_offsets"]?.shortDescription ?? "(missing)"): must be two integers [begin, end] with 0 ≤ begin ≤ end")
            }
            guard e <= dataSize else {
                throw fail("data_offsets [\(b), \(e)] outside the \(dataSize)-byte data section (truncated file?)")
            }
            ranges.append((name, b, e))
            guard let dtype = DType(rawValue: dts) else {
                unknown[name] = dts
                continue
            }
            let (expected, o) = count.multipliedReportingOverflow(by: dtype.size)
            guard !o, e - b == expected else {
                throw fail("holds \(e - b) bytes but \(dtype.rawValue) \(shape) needs \(o ? "more than 2⁶³" : String(expected))")
            }
            infos[name] = TensorInfo(name: name, dtype: dtype, shape: shape, begin: b, end: e)
        }
        // The byte ranges tile the data section: from 0, no overlap, no gap, nothing after.
        let sorted = ranges.sorted { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }
        var expectedBegin = 0
        var previous: String? = nil
        for r in sorted {
            if r.begin < expectedBegin {
                throw CheckpointError.tensor(path: path, name: r.name,
                                             reason: "data_offsets [\(r.begin), \(r.end)] overlap tensor '\(previous ?? "")' (which ends at \(expectedBegin))")
            }
            if r.begin > expectedBegin {
                throw CheckpointError.tensor(path: path, name: r.name,
                                             reason: "data_offsets [\(r.begin), \(r.end)] leave a gap of \(r.begin - expectedBegin) bytes after "
                                                + (previous.map { "tensor '\($0)'" } ?? "the start of the data section"))
            }
            expectedBegin = r.end
            previous = r.name
        }
        guard expectedBegin == dataSize else {
            throw CheckpointError.malformed(path: path, reason: "the tensors end at data byte \(expectedBegin) but the data section has \(dataSize) bytes")
        }
        tensors = infos
        unknownDTypes = unknown
        metadata = meta
    }

    /// The raw bytes of one tensor (valid while this file is alive).
    public func bytes(_ info: TensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base + dataStart + info.begin, count: info.end - info.begin)
    }

    /// A tensor converted to fp32 on the host (adapters and small tensors;
    /// model weights are converted on the device).
    public func floats(_ name: String) throws -> (shape: [Int], values: [Float]) {
        guard let info = tensors[name] else {
            if let d = unknownDTypes[name] { throw CheckpointError.tensor(path: path, name: name, reason: "unknown dtype \(d)") }
            throw CheckpointError.missingTensor(name: name, searched: path)
        }
        return (info.shape, try Self.toFloat(bytes(info), dtype: info.dtype, path: path, name: name))
    }

    static func toFloat(_ raw: UnsafeRawBufferPointer, dtype: DType, path: String, name: String) throws -> [Float] {
        let n = raw.count / dtype.size
        switch dtype {
        case .f32: return (0..<n).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
        case .f16:
            return (0..<n).map { Float(Float16(bitPattern: UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self)))) }
        case .bf16:
            return (0..<n).map { Float(bitPattern: UInt32(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self))) << 16) }
        case .f64: return (0..<n).map { Float(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self)))) }
        default:
            throw CheckpointError.tensor(path: path, name: name, reason: "dtype \(dtype.rawValue) is not a floating-point type")
        }
    }
}

/// Gives back the resident pages of a read-only file mapping once a tensor's
/// bytes have been copied out (to the device, or dequantized): the mapping stays
/// valid and a later read faults the pages in again from the page cache. Without
/// it the whole checkpoint stays resident beside its device copy for the run
/// (on a CPU device both count: about +0.5 GB for a 135M-parameter fp32 model).
/// The mapping is never written, so its pages are clean and nothing is lost.
func releaseMappedPages(_ bytes: UnsafeRawBufferPointer) {
    guard let start = bytes.baseAddress, bytes.count > 0 else { return }
    let page = max(Int(sysconf(Int32(_SC_PAGESIZE))), 1)
    let lo = Int(bitPattern: start) / page * page
    let hi = (Int(bitPattern: start) + bytes.count + page - 1) / page * page
    _ = madvise(UnsafeMutableRawPointer(bitPattern: lo), hi - lo, MADV_DONTNEED)
}

/// Writes safetensors files: u64 header length, the JSON header (tensors by name,
/// data in that order, optional `__metadata__`, padded with spaces to 8 bytes as the
/// reference writer does), then the little-endian data.
public enum SafeTensorsWriter {
    /// One fp32 tensor whose values are produced only when the writer reaches it (read from the device,
    /// say), so that a file of many tensors never has more than one of them on the host at a time.
    public struct LazyTensor {
        public let name: String
        public let shape: [Int]
        public let values: () throws -> [Float]
        public init(name: String, shape: [Int], values: @escaping () throws -> [Float]) {
            (self.name, self.shape, self.values) = (name, shape, values)
        }
    }

    /// fp32 tensors, written atomically (temp file, then rename), tensor by tensor: the file is never held whole
    /// in memory (an 8B model's optimizer state is 336 MB at r 16).
    public static func write(_ tensors: [(name: String, shape: [Int], values: [Float])], metadata: [String: String] = [:],
                             to path: String) throws {
        for t in tensors { precondition(t.shape.reduce(1, *) == t.values.count, "shape of \(t.name)") }
        try write(lazy: tensors.map { t in LazyTensor(name: t.name, shape: t.shape) { t.values } }, metadata: metadata, to: path)
    }

    /// fp32 tensors produced one at a time as they are written (sorted by name, as the eager write stores them);
    /// each producer must return exactly its shape's element count.
    public static func write(lazy tensors: [LazyTensor], metadata: [String: String] = [:], to path: String) throws {
        let ordered = tensors.sorted { $0.name < $1.name }
        do {
            try AtomicFile.write(to: path) { append in
                try append(header(ordered.map { ($0.name, "F32", $0.shape, 4 * $0.shape.reduce(1, *)) }, metadata: metadata))
                for t in ordered {
                    let values = try t.values()
                    guard values.count == t.shape.reduce(1, *) else {
                        throw CheckpointError.io(path: path, reason: "tensor '\(t.name)' has \(values.count) values for shape \(t.shape)")
                    }
                    #if _endian(big)
                    try values.map { $0.bitPattern.littleEndian }.withUnsafeBytes { try append(Data($0)) }
                    #else
                    try values.withUnsafeBytes { try append(Data($0)) }
                    #endif
                }
            }
        } catch let e as AtomicFile.WriteError {
            throw CheckpointError.io(path: e.path, reason: e.reason)
        }
    }

    /// The length and header for tensors stored in the order given.
    public static func header(_ tensors: [(name: String, dtype: String, shape: [Int], bytes: Int)],
                              metadata: [String: String]) -> Data {
        var header = JSONObject()
        if !metadata.isEmpty {
            header["__metadata__"] = .object(JSONObject(metadata.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) }))
        }
        var offset = 0
        for t in tensors {
            header[t.name] = ["dtype": .string(t.dtype), "shape": JSONValue(t.shape), "data_offsets": JSONValue([offset, offset + t.bytes])]
            offset += t.bytes
        }
        var json = Data(JSONValue.object(header).serialized(JSONStyle(sortKeys: true, itemSeparator: ",", keySeparator: ":")).utf8)
        while json.count % 8 != 0 { json.append(0x20) }
        var out = Data(capacity: 8 + json.count + offset)
        var len = UInt64(json.count).littleEndian
        withUnsafeBytes(of: &len) { out.append(contentsOf: $0) }
        out.append(json)
        return out
    }
}

/// Writes a file through LoraBase's AtomicFile; a failure is a CheckpointError naming the path.
func writeCheckpointFile(_ data: Data, to path: String) throws {
    do { try AtomicFile.write(data, to: path) } catch let e as AtomicFile.WriteError {
        throw CheckpointError.io(path: e.path, reason: e.reason)
    }
}

/// All tensors of a Hugging Face model directory: `model.safetensors`, or the
/// shards named by `model.safetensors.index.json`.
public final class CheckpointStore {
    public let directory: String
    private var files: [SafeTensorsFile] = []
    private var index: [String: (file: SafeTensorsFile, info: TensorInfo)] = [:]
    /// Tensors of a dtype the reader does not know: refused only when asked for.
    private var unknown: [String: (file: SafeTensorsFile, dtype: String)] = [:]

    public init(directory: String) throws {
        self.directory = directory
        let fm = FileManager.default
        let single = directory + "/model.safetensors"
        let indexPath = directory + "/model.safetensors.index.json"
        if fm.fileExists(atPath: indexPath) {
            guard let json = try? JSONValue.read(path: indexPath), let weights = json["weight_map"]?.object,
                  case let shards = weights.values.compactMap(\.string), shards.count == weights.count else {
                throw CheckpointError.config(path: indexPath, field: "weight_map", reason: "missing or not an object of strings")
            }
            let map = Dictionary(zip(weights.keys, shards), uniquingKeysWith: { a, _ in a })
            var opened: [String: SafeTensorsFile] = [:]
            for shard in Set(map.values).sorted() {
                guard !shard.contains("/") else {
                    throw CheckpointError.config(path: indexPath, field: "weight_map", reason: "shard name '\(shard)' is not a file name")
                }
                opened[shard] = try SafeTensorsFile(path: directory + "/" + shard)
            }
            for (name, shard) in map.sorted(by: { $0.key < $1.key }) {
                guard let f = opened[shard] else { continue }
                if let d = f.unknownDTypes[name] { unknown[name] = (f, d); continue }
                guard let info = f.tensors[name] else {
                    throw CheckpointError.tensor(path: f.path, name: name, reason: "listed in model.safetensors.index.json but absent from the shard")
                }
                index[name] = (f, info)
            }
            files = Array(opened.values)
        } else if fm.fileExists(atPath: single) {
            let f = try SafeTensorsFile(path: single)
            files = [f]
            for (n, info) in f.tensors { index[n] = (f, info) }
            for (n, d) in f.unknownDTypes { unknown[n] = (f, d) }
        } else {
            throw CheckpointError.io(path: directory, reason: "no model.safetensors or model.safetensors.index.json (only safetensors checkpoints are supported)")
        }
    }

    public var names: [String] { (Array(index.keys) + Array(unknown.keys)).sorted() }

    public func info(_ name: String) -> TensorInfo? { index[name]?.info }

    /// The shard file holding `name`, and its dtype as the header spells it.
    public func location(of name: String) -> (file: String, dtype: String)? {
        if let (f, info) = index[name] { return (f.path, info.dtype.rawValue) }
        if let (f, d) = unknown[name] { return (f.path, d) }
        return nil
    }

    /// The tensor's bytes, dtype and shape, after checking the shape.
    public func tensor(_ name: String, shape: [Int]) throws -> (info: TensorInfo, bytes: UnsafeRawBufferPointer, file: String) {
        guard let (f, info) = index[name] else {
            if let (f, d) = unknown[name] {
                throw CheckpointError.tensor(path: f.path, name: name, reason: "unknown dtype \(d); supported: F32, F16, BF16")
            }
            throw CheckpointError.missingTensor(name: name, searched: directory)
        }
        guard info.shape == shape else {
            throw CheckpointError.tensor(path: f.path, name: name, reason: "shape \(info.shape) but the config implies \(shape)")
        }
        guard [.f32, .f16, .bf16].contains(info.dtype) else {
            throw CheckpointError.tensor(path: f.path, name: name, reason: "dtype \(info.dtype.rawValue); supported: F32, F16, BF16")
        }
        return (info, f.bytes(info), f.path)
    }
}
