import ArgumentParser
import Foundation
import LoraModel
import LoraOps
import OpenCLRuntime

/// The context a command runs on: the selected device with the config from
/// `--kernel-config` > LORA_GPU_KERNEL_CONFIG > the tuning cache > a quick
/// automatic tune (unless LORA_GPU_AUTOTUNE=0) > the device default.
enum KernelSetup {
    /// `model`, `quantize`: the model the command loads and how its frozen weights are kept, so the formats it keeps
    /// get their per-format tune (an unreadable model is left for the loader to report).
    static func context(device selector: String?, kernelConfig: String?, model: String? = nil,
                        quantize: QuantizeMode = .auto) throws -> ComputeContext {
        let dev = try DeviceSelection.select(selector ?? ProcessInfo.processInfo.environment[DeviceSelection.environmentVariable])
        var formats: [WeightStorage] = []
        var linears: [TuningLinear]? = nil
        if let model, let (config, checkpoint) = try? ModelSource.open(model, quantize: quantize) {
            formats = (try? MemoryPlan.quantizedFormats(config: config, checkpoint: checkpoint)) ?? []
            linears = AdapterPlan.tuningLinears(config)
        }
        let r = try KernelConfig.resolveOrTune(device: dev, explicit: kernelConfig, formats: formats, linears: linears) {
            print($0); fflush(stdout)
        }
        return try ComputeContext.shared(device: dev, config: r.config, origin: r.origin)
    }
}

struct TuneCommandError: Error, CustomStringConvertible {
    let description: String
}

struct Tune: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Search the kernel parameters (GEMM_MR, local sizes, attention tile heights) on a device and store the fastest in the tuning cache.",
        discussion: """
            Every candidate is built and checked against a float64 reference before it is timed (median \
            after warm-up) on the linear layers' products (forward x·Wᵀ and input gradient dY·W) of --model, \
            or of a standard small Llama. The cache ($LORA_GPU_TUNING_CACHE, default ~/.cache/lora-gpu/tuning.json) \
            is keyed by device name, driver version and a hash of the kernel sources. For a quantized model \
            (a GGUF file's Q4_0 …, or --quantize q4_0/q8_0/nf4) the rows per work-item of the gemm over each \
            format it keeps are searched on their own (--format names formats without a model).
            """)

    @Option(name: .long, help: "OpenCL device: \"P:D\" indices, a name substring, \"gpu\" or \"cpu\" (default: $LORA_GPU_DEVICE, else the first GPU, else the first CPU).")
    var device: String?
    @Option(help: "Tune for this model's linear layers: a Hugging Face directory or a .gguf file.") var model: String?
    @Option(help: "Token count M of the timed products (default 512; 256 with --quick).") var tokens: Int?
    @Option(help: ArgumentHelp("Quantized formats whose gemm_packed rows per work-item are searched on their own: a comma list of "
                               + WeightStorage.allCases.filter(\.isQuantized).map(\.rawValue).joined(separator: ", ")
                               + ", or all (default: the formats --model keeps on the device; none without --model).", valueName: "formats"))
    var format: String?
    @OptionGroup var quantize: QuantizeOption
    @Flag(help: "The reduced search the automatic tune runs (a few seconds).") var quick = false
    @Flag(help: "Tune again even when the cache already holds this device.") var force = false

    /// "q4_0,nf4" or "all" → the formats, each named by `WeightStorage`'s raw value.
    static func formats(_ text: String) throws -> [WeightStorage] {
        let quantized = WeightStorage.allCases.filter(\.isQuantized)
        if text.trimmingCharacters(in: .whitespaces).lowercased() == "all" { return quantized }
        var out: [WeightStorage] = []
        for part in text.split(separator: ",") {
            let name = part.trimmingCharacters(in: .whitespaces).lowercased()
            guard let s = WeightStorage(rawValue: name), s.isQuantized else {
                throw ValidationError("--format: '\(name)' is not a quantized format (" + quantized.map(\.rawValue).joined(separator: ", ") + ", all)")
            }
            if !out.contains(s) { out.append(s) }
        }
        guard !out.isEmpty else { throw ValidationError("--format is empty") }
        return out
    }

    func run() throws {
        let dev = try DeviceSelection.select(device ?? ProcessInfo.processInfo.environment[DeviceSelection.environmentVariable])
        if let tokens, tokens < 1 { throw ValidationError("--tokens must be ≥ 1") }
        var linears = Tuner.standardLinears(quick: quick)
        var lmHead: (hidden: Int, vocab: Int, layers: Int)? = nil
        var formats = try format.map(Self.formats) ?? []
        if let model {
            let (config, checkpoint) = try ModelSource.open(model, quantize: try quantize.mode())
            linears = AdapterPlan.tuningLinears(config)
            lmHead = (config.hiddenSize, config.vocabSize, config.numLayers)
            print("shapes of \(model): " + linears.map { "\($0.name) \($0.inFeatures)→\($0.outFeatures)" }.joined(separator: ", "))
            if format == nil {
                formats = try MemoryPlan.quantizedFormats(config: config, checkpoint: checkpoint)
                if !formats.isEmpty { print("quantized formats it keeps: " + formats.map(\.rawValue).joined(separator: ", ")) }
            }
        } else if quantize.quantize.lowercased() != "auto" {
            throw ValidationError("--quantize applies to --model (the formats its weights get); use --format without a model")
        }
        let path = TuningCache.path()
        var cache: TuningCache
        do { cache = try TuningCache.load(path: path) } catch {
            guard force else { throw TuneCommandError(description: "\(error) (--force replaces it)") }
            cache = TuningCache()
        }
        let key = TuningKey(device: dev)
        if let e = cache.entry(for: key), !force {
            print("\(dev.name) is already tuned in \(path) (\(e.mode), \(e.date)): \(e.config), "
                  + String(format: "%.1f GFLOP/s; --force tunes again", e.gflops))
            return
        }
        let tuner = Tuner(device: dev, linears: linears, quick: quick, tokens: tokens, lmHead: lmHead, formats: formats) {
            print($0); fflush(stdout)
        }
        let entry = try tuner.run()
        cache.store(entry)
        try cache.save(path: path)
        let def = entry.defaultGflops.map { String(format: "%.1f", $0) } ?? "rejected"
        print(String(format: "winner %@: %.1f GFLOP/s (device default %@: %@); stored in %@",
                     entry.config, entry.gflops, entry.defaultConfig, def, path))
        print("load during the tune: \(entry.loadDescription)"
              + (entry.measuredUnderLoad ? " — measured under load: the choice may be poor; run `lora-gpu tune --force` again on an idle machine" : ""))
    }
}
