import Foundation
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
         u8 = "U8", bool = "BOOL"
    public var size: Int {
        switch self {
        case .f64, .i64: return 8
        case .f32, .i32: return 4
        case .f16, .bf16, .i16: return 2
        case .i8, .u8, .bool: return 1
        }
    }
}

public struct TensorInfo: Sendable, Equatable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    /// Byte range inside the data section (after the header).
    public let begin: Int, end: Int
    public var count: Int { shape.reduce(1, *) }
}

/// A memory-mapped safetensors file: 8-byte little-endian header length, a
/// JSON header {name: {dtype, shape, data_offsets: [begin, end]}}, then the
/// data. Everything in the header is validated against the file on open.
public final class SafeTensorsFile {
    public let path: String
    public let tensors: [String: TensorInfo]
    public let metadata: [String: String]
    private let base: UnsafeMutableRawPointer
    private let mappedSize: Int
    private let dataStart: Int

    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw CheckpointError.io(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw CheckpointError.io(path: path, reason: String(cString: strerror(errno))) }
        let size = Int(st.st_size)
        guard size >= 8 else { throw CheckpointError.malformed(path: path, reason: "file is \(size) bytes, shorter than the 8-byte header length") }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw CheckpointError.io(path: path, reason: "mmap failed: \(String(cString: strerror(errno)))")
        }
        base = p
        mappedSize = size
        do {
            let headerLen = Int(UInt64(littleEndian: p.loadUnaligned(as: UInt64.self)))
            guard headerLen > 0, headerLen <= size - 8 else {
                throw CheckpointError.malformed(path: path, reason: "header length \(headerLen) does not fit in \(size) bytes")
            }
            dataStart = 8 + headerLen
            let headerData = Data(bytes: p + 8, count: headerLen)
            guard let json = try? JSONSerialization.jsonObject(with: headerData) as? [String: Any] else {
                throw CheckpointError.malformed(path: path, reason: "header is not a JSON object")
            }
            var infos: [String: TensorInfo] = [:]
            var meta: [String: String] = [:]
            let dataSize = size - dataStart
            for (name, value) in json {
                if name == "__metadata__" {
                    for (k, v) in value as? [String: Any] ?? [:] { meta[k] = "\(v)" }
                    continue
                }
                guard let entry = value as? [String: Any] else {
                    throw CheckpointError.tensor(path: path, name: name, reason: "header entry is not an object")
                }
                guard let dts = entry["dtype"] as? String, let dtype = DType(rawValue: dts) else {
                    throw CheckpointError.tensor(path: path, name: name, reason: "unknown dtype \(entry["dtype"] ?? "nil")")
                }
                guard let shapeAny = entry["shape"] as? [Any], let shape = shapeAny.map({ ($0 as? NSNumber)?.intValue }) as? [Int],
                      shape.allSatisfy({ $0 >= 0 }) else {
                    throw CheckpointError.tensor(path: path, name: name, reason: "bad shape \(entry["shape"] ?? "nil")")
                }
                guard let offs = entry["data_offsets"] as? [Any], offs.count == 2,
                      let b = (offs[0] as? NSNumber)?.intValue, let e = (offs[1] as? NSNumber)?.intValue else {
                    throw CheckpointError.tensor(path: path, name: name, reason: "bad data_offsets \(entry["data_offsets"] ?? "nil")")
                }
                guard b >= 0, e >= b, e <= dataSize else {
                    throw CheckpointError.tensor(path: path, name: name,
                                                 reason: "data_offsets [\(b), \(e)] outside the \(dataSize)-byte data section")
                }
                let expected = shape.reduce(1, *) * dtype.size
                guard e - b == expected else {
                    throw CheckpointError.tensor(path: path, name: name,
                                                 reason: "holds \(e - b) bytes but \(dtype.rawValue) \(shape) needs \(expected)")
                }
                infos[name] = TensorInfo(name: name, dtype: dtype, shape: shape, begin: b, end: e)
            }
            // Tensors may not overlap.
            let sorted = infos.values.filter { $0.end > $0.begin }.sorted { $0.begin < $1.begin }
            for (a, b) in zip(sorted, sorted.dropFirst()) where b.begin < a.end {
                throw CheckpointError.tensor(path: path, name: b.name, reason: "overlaps tensor '\(a.name)'")
            }
            tensors = infos
            metadata = meta
        } catch {
            munmap(p, size)
            throw error
        }
    }

    deinit { munmap(base, mappedSize) }

    /// The raw bytes of one tensor (valid while this file is alive).
    public func bytes(_ info: TensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base + dataStart + info.begin, count: info.end - info.begin)
    }

    /// A tensor converted to fp32 on the host (adapters and small tensors;
    /// model weights are converted on the device).
    public func floats(_ name: String) throws -> (shape: [Int], values: [Float]) {
        guard let info = tensors[name] else { throw CheckpointError.missingTensor(name: name, searched: path) }
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

/// Writes fp32 tensors as a safetensors file, atomically (temp file, then rename).
public enum SafeTensorsWriter {
    public static func write(_ tensors: [(name: String, shape: [Int], values: [Float])], metadata: [String: String] = [:],
                             to path: String) throws {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        let ordered = tensors.sorted { $0.name < $1.name }
        for t in ordered {
            precondition(t.shape.reduce(1, *) == t.values.count, "shape of \(t.name)")
            header[t.name] = ["dtype": "F32", "shape": t.shape, "data_offsets": [offset, offset + 4 * t.values.count]]
            offset += 4 * t.values.count
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }  // pad with spaces, as the reference writer does
        var out = Data()
        var len = UInt64(json.count).littleEndian
        withUnsafeBytes(of: &len) { out.append(contentsOf: $0) }
        out.append(json)
        for t in ordered {
            t.values.withUnsafeBufferPointer { p in
                p.withMemoryRebound(to: UInt32.self) { u in
                    for v in u { var le = v.littleEndian; withUnsafeBytes(of: &le) { out.append(contentsOf: $0) } }
                }
            }
        }
        try AtomicFile.write(out, to: path)
    }
}

enum AtomicFile {
    /// Writes next to the destination, then renames over it.
    static func write(_ data: Data, to path: String) throws {
        let url = URL(fileURLWithPath: path)
        let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
        do { try data.write(to: tmp) } catch {
            throw CheckpointError.io(path: tmp.path, reason: "\(error.localizedDescription)")
        }
        guard rename(tmp.path, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(tmp.path)
            throw CheckpointError.io(path: path, reason: reason)
        }
    }
}

/// All tensors of a Hugging Face model directory: `model.safetensors`, or the
/// shards named by `model.safetensors.index.json`.
public final class CheckpointStore {
    public let directory: String
    private var files: [SafeTensorsFile] = []
    private var index: [String: (file: SafeTensorsFile, info: TensorInfo)] = [:]

    public init(directory: String) throws {
        self.directory = directory
        let fm = FileManager.default
        let single = directory + "/model.safetensors"
        let indexPath = directory + "/model.safetensors.index.json"
        if fm.fileExists(atPath: indexPath) {
            guard let data = fm.contents(atPath: indexPath),
                  let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                  let map = json["weight_map"] as? [String: String] else {
                throw CheckpointError.config(path: indexPath, field: "weight_map", reason: "missing or not an object of strings")
            }
            var opened: [String: SafeTensorsFile] = [:]
            for shard in Set(map.values).sorted() {
                guard !shard.contains("/") else {
                    throw CheckpointError.config(path: indexPath, field: "weight_map", reason: "shard name '\(shard)' is not a file name")
                }
                opened[shard] = try SafeTensorsFile(path: directory + "/" + shard)
            }
            for (name, shard) in map {
                let f = opened[shard]!
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
        } else {
            throw CheckpointError.io(path: directory, reason: "no model.safetensors or model.safetensors.index.json (only safetensors checkpoints are supported)")
        }
    }

    public var names: [String] { index.keys.sorted() }

    public func info(_ name: String) -> TensorInfo? { index[name]?.info }

    /// The tensor's bytes, dtype and shape, after checking the shape.
    public func tensor(_ name: String, shape: [Int]) throws -> (info: TensorInfo, bytes: UnsafeRawBufferPointer, file: String) {
        guard let (f, info) = index[name] else { throw CheckpointError.missingTensor(name: name, searched: directory) }
        guard info.shape == shape else {
            throw CheckpointError.tensor(path: f.path, name: name, reason: "shape \(info.shape) but the config implies \(shape)")
        }
        guard [.f32, .f16, .bf16].contains(info.dtype) else {
            throw CheckpointError.tensor(path: f.path, name: name, reason: "dtype \(info.dtype.rawValue); supported: F32, F16, BF16")
        }
        return (info, f.bytes(info), f.path)
    }
}
