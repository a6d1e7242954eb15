import Foundation
import LoraBase
import OpenCLRuntime

// The tuning cache that `lora-gpu tune` and the automatic quick tune write
// (KernelConfig.swift says how a config is chosen from it).

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
        // The host-side rules a stored choice depends on too (the staged forward's threshold and block bound).
        var text = KernelConfig.buildOptionsTemplate
            + "\n// host: quantStageMinRows=\(KernelConfig.quantStageMinRows) stagedPanelBytes=\(ComputeContext.defaultStagedPanelBytesLimit)"
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
    /// The share of the host's CPU time other processes used during the tune (HostLoad.swift; nil: unknown).
    public var othersLoad: Double?
    /// The largest relative spread of the playoff's interleaved rounds ((best − worst) / best).
    public var spread: Double?
    /// The final config's own GFLOP/s on the products, timed as `Tuner.retime` times it (the playoff's
    /// `gflops` is of the config before the band and attention stages): what the automatic check compares.
    public var finalGflops: Double?
    /// Set once an automatic check on an idle host re-timed the winner at its recorded speed
    /// (KernelConfig.resolveOrTune); a confirmed entry is not checked again.
    public var confirmed: Bool?
    /// GFLOP/s of the forward products over each quantized format's panels per rows-per-work-item
    /// tried ("q4_0" → "mr=4" → …), when formats were searched (`lora-gpu tune --model` of a quantized
    /// model, or `--format`).
    public var formatGflops: [String: [String: Double]]?

    /// Whether the figures were taken while other processes used the CPUs (where that was measured;
    /// elsewhere: whether the rounds were wildly unsteady): such an entry is re-tuned when the host is
    /// idle (automatic tunes) or reported (`lora-gpu tune`). The spread alone does not decide where the
    /// load is known: on an idle 2-core host pocl's rounds already spread 10–30 % (Benchmarks/NOTES.md).
    public var measuredUnderLoad: Bool {
        if let o = othersLoad { return o > TuneLoadPolicy.busyShare }
        return (spread ?? 0) > TuneLoadPolicy.unsteadySpread
    }

    /// In words, for logs: "other processes used 62 % of the CPUs, rounds spread 31 %".
    public var loadDescription: String {
        var parts: [String] = []
        if let o = othersLoad { parts.append(String(format: "other processes used %.0f %% of the CPUs", 100 * o)) }
        if let s = spread { parts.append(String(format: "the timing rounds spread %.0f %%", 100 * s)) }
        return parts.isEmpty ? "no load figures recorded" : parts.joined(separator: ", ")
    }

    public init(key: TuningKey, config: String, gflops: Double, defaultConfig: String, defaultGflops: Double?,
                mode: String, date: String, tokens: Int, shapes: [String], packGBps: [String: Double]?,
                candidates: [TuningCandidate], playoff: [String]? = nil, attentionGflops: [String: Double]? = nil,
                bandGflops: [String: Double]? = nil, othersLoad: Double? = nil, spread: Double? = nil,
                finalGflops: Double? = nil, confirmed: Bool? = nil, formatGflops: [String: [String: Double]]? = nil) {
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
        self.othersLoad = othersLoad
        self.spread = spread
        self.finalGflops = finalGflops
        self.confirmed = confirmed
        self.formatGflops = formatGflops
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
            throw KernelConfigError.cacheUnreadable(path: path, reason: SystemError.describe(error))
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
