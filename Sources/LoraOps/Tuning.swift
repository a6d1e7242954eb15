import Foundation
import LoraBase
import OpenCLRuntime

// Per-device kernel parameters: the spelling of a config, where a context's
// config comes from (flag > LORA_GPU_KERNEL_CONFIG > tuning cache > device
// class), and the cache that `lora-gpu tune` writes.

/// A bad kernel config string or tuning cache, naming where it came from.
public enum KernelConfigError: Error, CustomStringConvertible {
    /// `origin` is "--kernel-config", "LORA_GPU_KERNEL_CONFIG" or a cache path.
    case invalid(origin: String, value: String, reason: String)
    case cacheUnreadable(path: String, reason: String)
    case cacheUnwritable(path: String, reason: String)

    public var description: String {
        switch self {
        case let .invalid(origin, value, reason):
            return "\(origin): kernel config \"\(value)\" is invalid: \(reason) "
                + "(expected cpu, gpu or keys like \"mr=6,local=1x4,row=1,ew=64,pack=64,aq=4,ak=6,band=16,gemm=tiled,tile=64x64x16,wpt=4x4\", "
                + "optionally after cpu or gpu: \"gpu,gemm=packed\")"
        case let .cacheUnreadable(path, reason): return "tuning cache \(path): \(reason)"
        case let .cacheUnwritable(path, reason): return "tuning cache \(path): cannot write: \(reason)"
        }
    }
}

extension KernelConfig {
    /// The largest `GEMM_MR`: `gemm_packed` keeps GEMM_MR float16 accumulators
    /// in a private array; past 16 every device spills them.
    public static let maxRowsPerItem = 16

    /// The largest attention tile height (`aq`, `ak`): float16 score registers per work-item.
    public static let maxAttentionRows = 8

    /// The largest `band` (row groups per band of `gemm_packed`).
    public static let maxBand = 1024

    /// "mr=6,local=1x4,row=1,ew=64,pack=64,aq=4,ak=6,band=0,gemm=packed,tile=64x64x16,wpt=4x4":
    /// every field, parseable by `parse`.
    public var spec: String {
        let t = gemm.tile
        return "mr=\(gemmRowsPerItem),local=\(gemmLocal.0)x\(gemmLocal.1),row=\(rowWorkGroup),ew=\(elementwiseLocal),pack=\(packLocal)"
            + ",aq=\(attentionQueryRows),ak=\(attentionKeyRows),band=\(gemmBand)"
            + ",gemm=\(gemm.variant.rawValue),tile=\(t.tm)x\(t.tn)x\(t.tk),wpt=\(t.wm)x\(t.wn)"
    }

    /// "cpu", "gpu", or comma-separated `key=value` pairs over `base`, or over
    /// the cpu or gpu preset when that comes first ("gpu,gemm=packed"). Keys:
    /// mr, local (AxB), row, ew, pack, aq, ak, band (0: none), gemm (packed or tiled),
    /// tile (TMxTNxTK), wpt (WMxWN). `origin` names the source in errors.
    public static func parse(_ text: String, base: KernelConfig, origin: String) throws -> KernelConfig {
        let t = text.trimmingCharacters(in: .whitespaces).lowercased()
        if t == "cpu" { return .cpu }
        if t == "gpu" { return .gpu }
        func bad(_ reason: String) -> KernelConfigError { .invalid(origin: origin, value: text, reason: reason) }
        func int(_ key: String, _ v: Substring) throws -> Int {
            guard let n = Int(v.trimmingCharacters(in: .whitespaces)), n >= 1 else {
                throw bad("\(key)=\(v) is not a positive integer")
            }
            return n
        }
        func ints(_ key: String, _ v: Substring, _ count: Int) throws -> [Int] {
            let parts = v.split(separator: "x", omittingEmptySubsequences: false)
            guard parts.count == count else {
                throw bad("\(key)=\(v) is not \(count == 2 ? "AxB" : "AxBxC")")
            }
            return try parts.map { try int(key, $0) }
        }
        var c = base
        var seen = Set<String>()
        var parts = t.split(separator: ",", omittingEmptySubsequences: true)
        if let first = parts.first?.trimmingCharacters(in: .whitespaces), first == "cpu" || first == "gpu" {
            c = first == "cpu" ? .cpu : .gpu
            parts.removeFirst()
            seen.insert(first)
        }
        for part in parts {
            let kv = part.split(separator: "=", maxSplits: 1)
            guard kv.count == 2 else { throw bad("\"\(part)\" is not key=value") }
            let key = kv[0].trimmingCharacters(in: .whitespaces)
            guard seen.insert(key).inserted else { throw bad("\(key) given twice") }
            switch key {
            case "mr":
                c.gemmRowsPerItem = try int(key, kv[1])
                guard c.gemmRowsPerItem <= maxRowsPerItem else { throw bad("mr must be 1…\(maxRowsPerItem)") }
            case "local":
                let ab = try ints(key, kv[1], 2)
                c.gemmLocal = (ab[0], ab[1])
            case "row":
                c.rowWorkGroup = try int(key, kv[1])
                guard c.rowWorkGroup & (c.rowWorkGroup - 1) == 0 else { throw bad("row must be a power of two") }
            case "ew": c.elementwiseLocal = try int(key, kv[1])
            case "pack": c.packLocal = try int(key, kv[1])
            case "gemm":
                let v = kv[1].trimmingCharacters(in: .whitespaces)
                guard let variant = GemmVariant(rawValue: v) else {
                    throw bad("gemm=\(v): expected " + GemmVariant.allCases.map(\.rawValue).joined(separator: " or "))
                }
                c.gemm.variant = variant
            case "tile":
                let v = try ints(key, kv[1], 3)
                (c.gemm.tile.tm, c.gemm.tile.tn, c.gemm.tile.tk) = (v[0], v[1], v[2])
            case "wpt":
                let v = try ints(key, kv[1], 2)
                (c.gemm.tile.wm, c.gemm.tile.wn) = (v[0], v[1])
            case "band":
                guard let n = Int(kv[1].trimmingCharacters(in: .whitespaces)), n >= 0, n <= maxBand else {
                    throw bad("band=\(kv[1]) is not a whole number 0…\(maxBand)")
                }
                c.gemmBand = n
            case "aq", "ak":
                let n = try int(key, kv[1])
                guard n <= maxAttentionRows else { throw bad("\(key) must be 1…\(maxAttentionRows)") }
                if key == "aq" { c.attentionQueryRows = n } else { c.attentionKeyRows = n }
            default: throw bad("unknown key \"\(key)\"")
            }
        }
        if seen.isEmpty { throw bad("empty") }
        if let problem = c.gemm.tile.problem { throw bad(problem) }
        return c
    }

    /// Whether every local size fits the device's work-group limit, and the
    /// tiled gemm's work-group and __local tiles fit the device.
    public func fits(_ device: Device) -> Bool {
        guard gemm.fits(device) else { return false }
        let limit = device.maxWorkGroupSize
        guard limit > 0 else { return true }
        return gemmLocal.0 * gemmLocal.1 <= limit && rowWorkGroup <= limit && elementwiseLocal <= limit && packLocal <= limit
    }

    /// The config for `device`, first match wins:
    /// 1. `explicit` (the `--kernel-config` flag);
    /// 2. `LORA_GPU_KERNEL_CONFIG` in `environment`;
    /// 3. the tuning cache (`TuningCache.path(environment)`) entry for this
    ///    device, driver and kernel-source hash;
    /// 4. the device-class default (`deviceDefault`), with `untuned` set.
    /// A cache that cannot be read is skipped (the resolution says so); an
    /// invalid flag or environment value throws.
    public static func resolve(device: Device, explicit: String? = nil,
                               environment: [String: String] = ProcessInfo.processInfo.environment)
        throws -> KernelConfigResolution {
        let base = deviceDefault(device)
        func checked(_ c: KernelConfig, _ origin: String, _ text: String) throws -> KernelConfig {
            guard c.fits(device) else {
                let t = c.gemm.tile
                let reason = c.gemm.fits(device)
                    ? "a local size exceeds the device's max work-group size \(device.maxWorkGroupSize)"
                    : "the gemm tile \(t) needs a work-group of \(t.workGroupSize) work-items and \(t.localMemoryBytes) bytes "
                        + "of __local memory; the device allows \(device.maxWorkGroupSize) and \(device.localMemoryBytes)"
                throw KernelConfigError.invalid(origin: origin, value: text, reason: reason)
            }
            return c
        }
        if let explicit {
            let c = try checked(parse(explicit, base: base, origin: "--kernel-config"), "--kernel-config", explicit)
            return KernelConfigResolution(config: c, source: .flag, origin: "--kernel-config \(explicit)")
        }
        if let env = environment[kernelConfigEnvironmentVariable], !env.isEmpty {
            let c = try checked(parse(env, base: base, origin: kernelConfigEnvironmentVariable),
                                kernelConfigEnvironmentVariable, env)
            return KernelConfigResolution(config: c, source: .environment, origin: "\(kernelConfigEnvironmentVariable)=\(env)")
        }
        let path = TuningCache.path(environment)
        do {
            let key = TuningKey(device: device)
            if let entry = try TuningCache.load(path: path).entry(for: key) {
                let c = try parse(entry.config, base: base, origin: path)
                if c.fits(device) {
                    return KernelConfigResolution(config: c, source: .cache,
                                                  origin: "tuning cache \(path) (\(entry.mode), \(entry.date))")
                }
            }
            return KernelConfigResolution(config: base, source: .deviceDefault, origin: "device default (untuned)", untuned: true)
        } catch {
            return KernelConfigResolution(config: base, source: .deviceDefault,
                                          origin: "device default (cache skipped: \(error))", untuned: false)
        }
    }

    public static let kernelConfigEnvironmentVariable = "LORA_GPU_KERNEL_CONFIG"
}

/// Which rule of `KernelConfig.resolve` chose the config.
public enum KernelConfigSource: String, Sendable { case flag, environment, cache, deviceDefault }

public struct KernelConfigResolution: Sendable {
    public var config: KernelConfig
    public var source: KernelConfigSource
    /// In words, for logs: "tuning cache /…/tuning.json (quick, 2026-…)".
    public var origin: String
    /// True when nothing overrode the default and the cache holds no entry
    /// for this device (so a command may tune it).
    public var untuned: Bool = false
}

// MARK: the cache

/// What a tuning is valid for: the device, its driver, and the kernel
/// sources + build-options template it was measured with.
public struct TuningKey: Codable, Equatable, Sendable {
    public var device: String
    public var driver: String
    public var sourceHash: String

    public init(device: String, driver: String, sourceHash: String) {
        self.device = device
        self.driver = driver
        self.sourceHash = sourceHash
    }

    public init(device: Device) {
        self.init(device: device.name, driver: device.driverVersion, sourceHash: Self.currentSourceHash)
    }

    /// FNV-1a (64 bit) of every kernel file in program order and the build
    /// options template: any kernel edit invalidates the stored tunings.
    public static let currentSourceHash: String = {
        var text = KernelConfig.buildOptionsTemplate
        for f in ComputeContext.programFiles { text += "\n// ---- \(f.name)\n" + f.source }
        return fnv1a64(text)
    }()

    public static func fnv1a64(_ text: String) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            h ^= UInt64(byte)
            h = h &* 0x0000_0100_0000_01b3
        }
        return String(h, radix: 16).leftPad(16)
    }
}

extension String {
    fileprivate func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}

/// One measured candidate: its config spec and aggregate GFLOP/s over the
/// tuning shapes (nil with `rejected` when it failed the parity check or did not build).
public struct TuningCandidate: Codable, Sendable {
    public var config: String
    public var gflops: Double?
    /// GFLOP/s per shape, in the order of `TuningEntry.shapes`.
    public var perShape: [Double]
    public var rejected: String?

    public init(config: String, gflops: Double?, perShape: [Double], rejected: String?) {
        self.config = config
        self.gflops = gflops
        self.perShape = perShape
        self.rejected = rejected
    }
}

public struct TuningEntry: Codable, Sendable {
    public var key: TuningKey
    /// The winner's spec.
    public var config: String
    public var gflops: Double
    /// The device default's spec and GFLOP/s measured in the same run.
    public var defaultConfig: String
    public var defaultGflops: Double?
    /// "quick" (the automatic one) or "full" (`lora-gpu tune`).
    public var mode: String
    /// ISO 8601, UTC.
    public var date: String
    public var tokens: Int
    /// "name M×N×K" of each timed product.
    public var shapes: [String]
    /// packLocal's measured pack_b GB/s per option, when it was searched.
    public var packGBps: [String: Double]?
    public var candidates: [TuningCandidate]
    /// The configs timed together last, among which the winner was chosen
    /// (full: the three best and the default; quick: the best MR at each quick
    /// local size); their `candidates` figures are from that run.
    public var playoff: [String]?
    /// Attention GFLOP/s per tile height ("forward aq=4", "backward ak=2"), when searched.
    public var attentionGflops: [String: Double]?
    /// GFLOP/s of the products and the lm_head per `band` value, when searched.
    public var bandGflops: [String: Double]?

    public init(key: TuningKey, config: String, gflops: Double, defaultConfig: String, defaultGflops: Double?,
                mode: String, date: String, tokens: Int, shapes: [String], packGBps: [String: Double]?,
                candidates: [TuningCandidate], playoff: [String]? = nil, attentionGflops: [String: Double]? = nil,
                bandGflops: [String: Double]? = nil) {
        self.key = key
        self.config = config
        self.gflops = gflops
        self.defaultConfig = defaultConfig
        self.defaultGflops = defaultGflops
        self.mode = mode
        self.date = date
        self.tokens = tokens
        self.shapes = shapes
        self.packGBps = packGBps
        self.candidates = candidates
        self.playoff = playoff
        self.attentionGflops = attentionGflops
        self.bandGflops = bandGflops
    }
}

/// The tuning cache file: `{"version": 1, "entries": [...]}`, one entry per key.
public struct TuningCache: Codable, Sendable {
    public static let version = 1
    public static let environmentVariable = "LORA_GPU_TUNING_CACHE"
    public var version = TuningCache.version
    public var entries: [TuningEntry] = []

    public init() {}

    /// $LORA_GPU_TUNING_CACHE, else ~/.cache/lora-gpu/tuning.json (XDG_CACHE_HOME respected).
    public static func path(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let p = environment[environmentVariable], !p.isEmpty { return p }
        let base = environment["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? ((environment["HOME"] ?? NSHomeDirectory()) + "/.cache")
        return base + "/lora-gpu/tuning.json"
    }

    /// An absent file is an empty cache; an unreadable or malformed one throws.
    public static func load(path: String) throws -> TuningCache {
        guard FileManager.default.fileExists(atPath: path) else { return TuningCache() }
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw KernelConfigError.cacheUnreadable(path: path, reason: "\(error.localizedDescription)")
        }
        let cache: TuningCache
        do { cache = try JSONDecoder().decode(TuningCache.self, from: data) } catch {
            throw KernelConfigError.cacheUnreadable(path: path, reason: "not a tuning cache (\(error))")
        }
        guard cache.version == version else {
            throw KernelConfigError.cacheUnreadable(path: path, reason: "version \(cache.version), expected \(version)")
        }
        return cache
    }

    public func entry(for key: TuningKey) -> TuningEntry? { entries.last { $0.key == key } }

    /// Replaces the entry of the same device and driver (an older source hash
    /// is stale), or appends.
    public mutating func store(_ e: TuningEntry) {
        entries.removeAll { $0.key.device == e.key.device && $0.key.driver == e.key.driver }
        entries.append(e)
    }

    /// Written atomically (LoraBase.AtomicFile): a reader never sees half a file.
    public func save(path: String) throws {
        do {
            let url = URL(fileURLWithPath: path)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            try AtomicFile.write(try enc.encode(self), to: path)
        } catch let e as AtomicFile.WriteError {
            throw KernelConfigError.cacheUnwritable(path: path, reason: e.reason)
        } catch {
            throw KernelConfigError.cacheUnwritable(path: path, reason: SystemError.describe(error))
        }
    }
}
