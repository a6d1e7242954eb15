import Foundation
import LoraBase
import OpenCLRuntime

// The kernels' parameters, in one place: what they are (KernelConfig), how a
// string spells them, which one a device gets (flag > LORA_GPU_KERNEL_CONFIG >
// tuning cache > device default) and the automatic quick tune of an untuned device.

/// Per-device tile sizes and local sizes, passed to the kernels as `-D`
/// defines so each device gets its own (see Benchmarks/NOTES.md for how the
/// pocl values were chosen).
public struct KernelConfig: Equatable, Sendable {
    /// Rows of C per work-item in `gemm_packed` (each row is a float16 accumulator).
    public var gemmRowsPerItem: Int
    /// Local size of `gemm_packed`: (panels, row tiles).
    public var gemmLocal: (Int, Int)
    /// Work-items per row in the RMSNorm kernels (power of two).
    public var rowWorkGroup: Int
    /// Local size of elementwise and column kernels.
    public var elementwiseLocal: Int
    /// Panel rows per work-group in `pack_b`.
    public var packLocal: Int
    /// Which gemm kernel runs (`gemm_packed` or `gemm_tiled`) and the tiled one's tile sizes (GemmVariants.swift).
    public var gemm: GemmChoice
    /// Query rows per work-item in `attention_forward` (ATT_MQ) and key rows per
    /// tile in `attention_backward` (ATT_MK): float16 score registers each.
    public var attentionQueryRows = 4, attentionKeyRows = 6
    /// Row groups per band in `gemm_packed` (GEMM_BAND; 0: none): the work-groups
    /// walk every panel for one band of rows before the next, so a panel is read
    /// once per band rather than once per row group (large N: the lm_head).
    public var gemmBand = 0
    /// `gemm_packed`'s rows per work-item for panels of one quantized format (build option
    /// GEMM_MR_<FORMAT>), where the tuner found another count faster than `gemmRowsPerItem` for it:
    /// dequantizing in registers takes some of the registers the accumulator rows use. Spelled
    /// "mr.q4_0=6"; a format not listed uses `gemmRowsPerItem`.
    public var quantRowsPerItem: [WeightStorage: Int] = [:]

    /// Quantized formats whose forward product at `quantStageMinRows` rows or more dequantizes W once per
    /// call into fp32 panels (in blocks within `ComputeContext.stagedPanelBytesLimit`) that the fp32 gemm
    /// streams, instead of dequantizing each panel in registers once per row group: the tuner's choice
    /// per format and device (where the gemm is compute-bound, as on a CPU, the repeated dequantization is
    /// what costs; where memory is the limit, in registers wins). Spelled "stage.q4_0=1". Bit-identical
    /// either way (the same fp32 values, the same accumulation order).
    public var quantStaged: Set<WeightStorage> = []
    /// Below this many rows (decoding: 1) the forward never stages: the in-register path reads W's blocks once.
    public static let quantStageMinRows = 64

    /// The rows per work-item of `gemm_packed` over panels of `storage`.
    public func rowsPerItem(_ storage: WeightStorage) -> Int {
        storage.isQuantized ? quantRowsPerItem[storage] ?? gemmRowsPerItem : gemmRowsPerItem
    }

    public init(gemmRowsPerItem: Int, gemmLocal: (Int, Int), rowWorkGroup: Int, elementwiseLocal: Int, packLocal: Int,
                gemm: GemmChoice = .packed) {
        self.gemmRowsPerItem = gemmRowsPerItem
        self.gemmLocal = gemmLocal
        self.rowWorkGroup = rowWorkGroup
        self.elementwiseLocal = elementwiseLocal
        self.packLocal = packLocal
        self.gemm = gemm
    }

    public static func == (a: KernelConfig, b: KernelConfig) -> Bool {
        a.gemmRowsPerItem == b.gemmRowsPerItem && a.gemmLocal == b.gemmLocal
            && a.rowWorkGroup == b.rowWorkGroup && a.elementwiseLocal == b.elementwiseLocal
            && a.packLocal == b.packLocal && a.gemm == b.gemm
            && a.attentionQueryRows == b.attentionQueryRows && a.attentionKeyRows == b.attentionKeyRows
            && a.gemmBand == b.gemmBand && a.quantRowsPerItem == b.quantRowsPerItem && a.quantStaged == b.quantStaged
    }

    /// pocl on a CPU: one thread runs a whole work-group, so small groups and
    /// no barriers; 8 float16 accumulators fit the 32 AVX-512 registers.
    public static let cpu = KernelConfig(gemmRowsPerItem: 8, gemmLocal: (1, 4), rowWorkGroup: 1, elementwiseLocal: 64, packLocal: 64)
    /// GPUs: many work-items per group, a cooperative row reduction, the
    /// local-memory tiled gemm.
    public static let gpu = KernelConfig(gemmRowsPerItem: 4, gemmLocal: (16, 4), rowWorkGroup: 128, elementwiseLocal: 256, packLocal: 64,
                                         gemm: .tiledDefault)

    /// The device-class default: `.cpu` on CPU devices, `.gpu` elsewhere.
    /// What a device gets when nothing overrides it and it has not been tuned.
    public static func deviceDefault(_ device: Device) -> KernelConfig {
        device.kind == .cpu ? .cpu : .gpu
    }

    /// The config `ComputeContext.shared` would use for `device` (see
    /// `KernelConfig.resolve`: LORA_GPU_KERNEL_CONFIG > tuning cache > device
    /// default); the device default when the environment value is invalid.
    public static func forDevice(_ device: Device) -> KernelConfig {
        (try? resolve(device: device).config) ?? deviceDefault(device)
    }

    /// The build options with `{mr}` and `{row}` to fill in. Part of the tuning
    /// cache key (with the kernel sources): a new template invalidates old tunings.
    // -w: pocl on AVX2 hosts warns ~300 times that its own float16 builtins "change the ABI" without avx512f
    // (harmless, see Benchmarks/NOTES.md); errors still reach the build log.
    public static let buildOptionsTemplate = "-cl-std=CL1.2 -w -DGEMM_MR={mr} -DROW_WG={row} -DATT_MQ={aq} -DATT_MK={ak} -DGEMM_BAND={band} "
        + GemmChoice.buildOptionsTemplate

    public var buildOptions: String {
        gemm.fillBuildOptions(Self.buildOptionsTemplate
            .replacingOccurrences(of: "{mr}", with: "\(gemmRowsPerItem)")
            .replacingOccurrences(of: "{row}", with: "\(rowWorkGroup)")
            .replacingOccurrences(of: "{aq}", with: "\(attentionQueryRows)").replacingOccurrences(of: "{ak}", with: "\(attentionKeyRows)")
            .replacingOccurrences(of: "{band}", with: "\(gemmBand)"))
            + quantRowsPerItem.sorted { $0.key.rawValue < $1.key.rawValue }
                .map { " -DGEMM_MR_\($0.key.rawValue.uppercased())=\($0.value)" }.joined()
    }
}

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
                + "(expected cpu, gpu or keys like \"mr=6,local=1x4,row=1,ew=64,pack=64,aq=4,ak=6,band=16,gemm=tiled,tile=64x64x16,wpt=4x4,mr.q4_0=5,stage.q4_0=1\", "
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
            + quantRowsPerItem.sorted { $0.key.rawValue < $1.key.rawValue }.map { ",mr.\($0.key.rawValue)=\($0.value)" }.joined()
            + quantStaged.map(\.rawValue).sorted().map { ",stage.\($0)=1" }.joined()
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
            case _ where key.hasPrefix("mr."):
                let name = String(key.dropFirst(3))
                guard let storage = WeightStorage(rawValue: name), storage.isQuantized else {
                    throw bad("\(key): \(name) is not a quantized format ("
                              + WeightStorage.allCases.filter(\.isQuantized).map(\.rawValue).joined(separator: ", ") + ")")
                }
                let n = try int(key, kv[1])
                guard n <= maxRowsPerItem else { throw bad("\(key) must be 1…\(maxRowsPerItem)") }
                c.quantRowsPerItem[storage] = n
            case _ where key.hasPrefix("stage."):
                let name = String(key.dropFirst(6))
                guard let storage = WeightStorage(rawValue: name), storage.isQuantized else {
                    throw bad("\(key): \(name) is not a quantized format ("
                              + WeightStorage.allCases.filter(\.isQuantized).map(\.rawValue).joined(separator: ", ") + ")")
                }
                switch kv[1].trimmingCharacters(in: .whitespaces) {
                case "1": c.quantStaged.insert(storage)
                case "0": c.quantStaged.remove(storage)
                default: throw bad("\(key)=\(kv[1]) is not 0 or 1")
                }
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

// MARK: the automatic tune

extension KernelConfig {
    /// Whether `LORA_GPU_AUTOTUNE` allows the automatic quick tune (unset, or
    /// anything but 0 / false / off / no).
    public static func autoTuneEnabled(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        guard let v = environment["LORA_GPU_AUTOTUNE"]?.lowercased() else { return true }
        return !["0", "false", "off", "no"].contains(v)
    }

    /// `resolve`, and then, when auto-tune is on:
    /// - the device untuned: a quick tune on the standard shapes, stored in the cache and used;
    /// - an automatic (quick) cache entry not yet confirmed, checked while the host is idle
    ///   (`hostLoad`, other processes' share of the CPUs, at most `TuneLoadPolicy.busyShare`):
    ///   one measured under load, or whose winner re-times more than `reproduceTolerance` away
    ///   from its recorded speed, is tuned again; one that holds is marked confirmed and not
    ///   checked again. A busy host postpones the check to a later run.
    /// - a `lora-gpu tune` (full) entry measured under load: a line saying so, and how to redo it.
    /// `log` gets one line before a tune and one after. A failed tune is logged and falls back to the
    /// device default (the cached config may be the one that failed its check); a failed cache write
    /// is logged and the new tuning used for this run only.
    ///
    /// `formats`: the quantized formats the command's model keeps on the device. Where the cached entry has no
    /// per-format figures for one of them, the tuner's per-format stage runs for those formats alone on the cached
    /// config (a few seconds: the rows per work-item of their gemm and staged or in-register) and the entry is
    /// updated; a flag's or the environment's config is used as given.
    public static func resolveOrTune(device: Device, explicit: String? = nil,
                                     environment: [String: String] = ProcessInfo.processInfo.environment,
                                     hostLoad: () -> Double? = { HostLoadSample.measureOthers(seconds: 0.3) },
                                     formats: [WeightStorage] = [], linears: [TuningLinear]? = nil,
                                     log: (String) -> Void) throws -> KernelConfigResolution {
        let r = try resolveOrTuneShared(device: device, explicit: explicit, environment: environment, hostLoad: hostLoad, log: log)
        guard autoTuneEnabled(environment), r.source == .cache, !formats.isEmpty else { return r }
        let path = TuningCache.path(environment)
        guard var cache = try? TuningCache.load(path: path), var entry = cache.entry(for: TuningKey(device: device)) else { return r }
        let missing = formats.filter { $0.isQuantized && entry.formatGflops?[$0.rawValue] == nil }
        guard !missing.isEmpty else { return r }
        let names = missing.map { $0.rawValue.uppercased() }.joined(separator: ", ")
        // Timed beside other work, the choice would be poor and kept: postponed to an idle run, as the quick tune's check is.
        if let busy = hostLoad(), busy > TuneLoadPolicy.busyShare {
            log(String(format: "lora-gpu: other processes use %.0f %% of the CPUs: the gemm over %@ panels is tuned on a later, idle run", 100 * busy, names))
            return r
        }
        log("lora-gpu: tuning the gemm over \(names) panels for \(device.name) (a few seconds; `lora-gpu tune --model` searches fully, "
            + "LORA_GPU_AUTOTUNE=0 skips this)")
        let tuner = Tuner(device: device, linears: linears ?? Tuner.standardLinears(quick: true), quick: true, formats: missing)
        var config = r.config
        let rates = tuner.tuneFormats(&config, space: Tuner.searchSpace(for: device, quick: true, tiled: config.gemm.variant == .tiled)) ?? [:]
        guard !rates.isEmpty else {
            log("lora-gpu: the per-format tune of \(names) found nothing to use; the cached \(r.config.spec) is used")
            return r
        }
        entry.config = config.spec
        entry.formatGflops = (entry.formatGflops ?? [:]).merging(rates) { $1 }
        cache.store(entry)
        do { try cache.save(path: path) } catch {
            log("lora-gpu: \(error); the tuning is used for this run only")
        }
        log("lora-gpu: tuned \(config.spec)")
        var out = r
        out.config = config
        return out
    }

    static func resolveOrTuneShared(device: Device, explicit: String?, environment: [String: String],
                                    hostLoad: () -> Double?, log: (String) -> Void) throws -> KernelConfigResolution {
        let r = try resolve(device: device, explicit: explicit, environment: environment)
        guard autoTuneEnabled(environment) else { return r }
        let path = TuningCache.path(environment)
        func quickTuner() -> Tuner { Tuner(device: device, linears: Tuner.standardLinears(quick: true), quick: true) }
        let fallback = KernelConfigResolution(config: deviceDefault(device), source: .deviceDefault,
                                              origin: "device default (the quick tune failed)")
        func tune(_ why: String) -> KernelConfigResolution {
            log(why + " (a few seconds; `lora-gpu tune` searches fully, LORA_GPU_AUTOTUNE=0 skips this)")
            do {
                let entry = try quickTuner().run()
                var cache = (try? TuningCache.load(path: path)) ?? TuningCache()
                cache.store(entry)
                do { try cache.save(path: path) } catch {
                    log("lora-gpu: \(error); the tuning is used for this run only")
                }
                let c = try parse(entry.config, base: deviceDefault(device), origin: path)
                log(String(format: "lora-gpu: tuned %@: %.1f GFLOP/s (device default %@: %@)", entry.config, entry.gflops,
                           entry.defaultConfig, entry.defaultGflops.map { String(format: "%.1f", $0) } ?? "rejected")
                    + (entry.measuredUnderLoad ? "; measured under load (\(entry.loadDescription)): tuned again once the host is idle" : ""))
                return KernelConfigResolution(config: c, source: .cache, origin: "tuning cache \(path) (quick, \(entry.date))")
            } catch {
                // Not the cached config: it may be the one that failed its check.
                log("lora-gpu: quick tune failed (\(error)); using the device default \(fallback.config.spec)")
                return fallback
            }
        }
        if r.untuned {
            return tune("lora-gpu: no kernel tuning for \(device.name) in \(path): running a quick tune")
        }
        guard r.source == .cache, var cache = try? TuningCache.load(path: path),
              var entry = cache.entry(for: TuningKey(device: device)) else { return r }
        let decision = checkCachedTune(entry, cachePath: path, hostLoad: hostLoad) {
            try quickTuner().retime(r.config)
        }
        switch decision {
        case .keep: break
        case .report(let line): log(line)
        case .retune(let why): return tune(why)
        case .confirm:
            entry.confirmed = true
            cache.store(entry)
            try? cache.save(path: path)  // unwritable: checked again next time, nothing lost
        }
        return r
    }

    /// What `resolveOrTune` does with a cached entry (see there); `retime` re-times its winner.
    public enum CachedTuneDecision: Equatable, Sendable {
        case keep, confirm
        case report(String)
        case retune(String)
    }

    public static func checkCachedTune(_ entry: TuningEntry, cachePath: String, hostLoad: () -> Double?,
                                       retime: () throws -> Double) -> CachedTuneDecision {
        if entry.confirmed == true { return .keep }
        if entry.mode != "quick" {
            guard entry.measuredUnderLoad else { return .keep }
            return .report("lora-gpu: the kernel tuning in \(cachePath) was measured under load (\(entry.loadDescription)); "
                           + "run `lora-gpu tune --force` on an idle machine")
        }
        if let busy = hostLoad(), busy > TuneLoadPolicy.busyShare { return .keep }  // judged on a later, idle run
        if entry.measuredUnderLoad {
            return .retune("lora-gpu: the cached kernel tuning for \(entry.key.device) was measured under load "
                           + "(\(entry.loadDescription)): tuning again")
        }
        let now: Double
        do { now = try retime() } catch {
            return .retune("lora-gpu: the cached kernel tuning \(entry.config) failed its check (\(error)): tuning again")
        }
        let recorded = entry.finalGflops ?? entry.gflops
        guard recorded > 0, abs(now / recorded - 1) <= TuneLoadPolicy.reproduceTolerance else {
            return .retune(String(format: "lora-gpu: the cached kernel tuning %@ was recorded at %.1f GFLOP/s and re-times at %.1f: tuning again",
                                  entry.config, recorded, now))
        }
        return .confirm
    }
}
