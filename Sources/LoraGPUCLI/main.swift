import ArgumentParser
import Foundation
import KernelBench
import LoraBase
import LoraModel
import LoraOps
import LoraTrain
import OpenCLRuntime

struct DeviceOption: ParsableArguments {
    @Option(name: .long, help: "OpenCL device: \"P:D\" indices, a name substring, \"gpu\" or \"cpu\" (default: $LORA_GPU_DEVICE, else the first GPU, else the first CPU).")
    var device: String?
    @Option(name: .customLong("kernel-config"), help: "Kernel parameters: cpu, gpu, \"mr=6,local=1x4,row=1,band=16\", \"gemm=tiled,tile=64x64x16,wpt=4x4\" or \"gpu,gemm=packed\" (default: $LORA_GPU_KERNEL_CONFIG, else the tuning cache, else a quick tune).")
    var kernelConfig: String?

    func context() throws -> ComputeContext { try KernelSetup.context(device: device, kernelConfig: kernelConfig) }
    /// The context for a command that loads `model` with `quantize` (its quantized formats tuned if they are not yet).
    func context(model: String, quantize: QuantizeMode) throws -> ComputeContext {
        try KernelSetup.context(device: device, kernelConfig: kernelConfig, model: model, quantize: quantize)
    }
}

/// `--quantize` of the commands that load a model for inference (generate, predict, embed).
struct QuantizeOption: ParsableArguments {
    @Option(help: ArgumentHelp("How the frozen weights are kept on the device: auto (a GGUF file keeps its Q8_0/Q4_0/Q4_1/Q5_0/Q5_1/Q4_K/Q5_K/Q6_K "
                               + "blocks; safetensors keep their dtype), none (a GGUF file dequantized to fp32), q8_0 or q4_0 "
                               + "(16/32-bit weights quantized at load, as gguf-py does) or nf4 (as bitsandbytes does: QLoRA).", valueName: "mode"))
    var quantize: String = "auto"

    func mode() throws -> QuantizeMode {
        guard let m = QuantizeMode(rawValue: quantize.lowercased()) else {
            throw ValidationError("--quantize must be one of " + QuantizeMode.allCases.map(\.rawValue).joined(separator: ", ")
                                  + ", got '\(quantize)'")
        }
        return m
    }
}

/// `--chat-template-kwargs KEY=VALUE` of the commands that render chat templates (data, generate).
struct TemplateKwargsOption: ParsableArguments {
    @Option(name: .customLong("chat-template-kwargs"), help: ArgumentHelp("A chat-template argument (e.g. enable_thinking=false), as apply_chat_template(**kwargs); repeat.", valueName: "key=value"))
    var chatTemplateKwargs: [String] = []

    func variables() throws -> JSONObject { try TrainingConfig.templateKwargs(chatTemplateKwargs) }
}

@main
struct LoraGPU: ParsableCommand {
    /// The release; `--version` adds the commit (BuildInfo plugin) and the OpenCL device.
    static let version = "0.15.0"
    static let configuration = CommandConfiguration(
        commandName: "lora-gpu",
        abstract: "LoRA fine-tuning for Llama-family models on any OpenCL device.",
        subcommands: [Train.self, DataCommand.self, Generate.self, Predict.self, Embed.self, Merge.self, Export.self, Inspect.self, Tune.self, Devices.self, Bench.self])

    @Flag(help: "Print the version, the git commit it was built from and the OpenCL device it would use.")
    var version = false

    func run() throws {
        guard version else { throw CleanExit.helpRequest(self) }
        print("lora-gpu \(Self.version) (commit \(BuildInfo.commit))")
        do {
            let d = try DeviceSelection.select(ProcessInfo.processInfo.environment[DeviceSelection.environmentVariable])
            print("OpenCL: \(d.platform.name) (\(d.platform.version)), device \(d.label)")
        } catch {
            print("OpenCL: no device (\(error))")
        }
    }
}

struct Devices: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List OpenCL platforms and devices with their key limits.")

    func run() throws {
        let platforms = try Platform.all()
        if platforms.isEmpty { throw OpenCLRuntimeError.noPlatforms }
        let chosen = try? DeviceSelection.select(ProcessInfo.processInfo.environment[DeviceSelection.environmentVariable])
        for p in platforms {
            print("platform \(p.index): \(p.name) — \(p.vendor) — \(p.version)")
            for d in try p.devices() {
                let mark = (chosen.map { $0.platform.index == p.index && $0.index == d.index } ?? false) ? " (default)" : ""
                print("  device \(p.index):\(d.index): \(d.name) [\(d.kind.rawValue)]\(mark)")
                print("    \(d.version), driver \(d.driverVersion)")
                print("    compute units \(d.computeUnits), clock \(d.maxClockMHz) MHz, max work-group \(d.maxWorkGroupSize)")
                print("    global memory \(d.globalMemoryBytes >> 20) MiB, max allocation \(d.maxAllocationBytes >> 20) MiB, local memory \(d.localMemoryBytes >> 10) KiB")
                print("    preferred float vector width \(d.preferredFloatVectorWidth), kernel config \(KernelConfig.forDevice(d).buildOptions)")
            }
        }
    }
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time every kernel (median after warm-up) beside OpenBLAS sgemm in the same run.")

    @OptionGroup var deviceOption: DeviceOption
    @Option(help: "Timed runs per row (median reported).") var runs = 7
    @Option(help: "Write the table as JSON to this path as well.") var json: String?
    @Flag(help: "Small shapes only (a smoke test, not a measurement).") var quick = false
    @Option(help: "Only these row groups, comma-separated: \(KernelBench.groups.joined(separator: ", ")).")
    var only: String?

    func run() throws {
        let ctx = try deviceOption.context()
        let coretype = ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] ?? "(unset)"
        print("device: \(ctx.device.label)")
        print("kernel config: \(ctx.config.spec) from \(ctx.configOrigin)")
        print("gemm kernel: \(ctx.gemmKernelDescription)")
        print("OPENBLAS_CORETYPE: \(coretype); OpenBLAS threads: \(ProcessInfo.processInfo.environment["OPENBLAS_NUM_THREADS"] ?? "(default)")")
        print(KernelBench.header)
        let bench = KernelBench(context: ctx, runs: runs) { print($0); fflush(stdout) }
        var groups: Set<String>? = nil
        if let only {
            groups = Set(only.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
            let unknown = groups!.subtracting(KernelBench.groups)
            guard unknown.isEmpty else {
                throw ValidationError("unknown bench group(s) \(unknown.sorted().joined(separator: ", ")); known: \(KernelBench.groups.joined(separator: ", "))")
            }
        }
        let report = try bench.runAll(quick: quick, only: groups)
        if let json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            // Atomically: a reader never sees a half-written table.
            do { try AtomicFile.write(try enc.encode(report), to: json) } catch let e as AtomicFile.WriteError {
                throw ValidationError("cannot write \(json): \(e.reason)")
            }
            print("wrote \(json)")
        }
    }
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a model's module tree as transformers does, the LoRA targets and PEFT's trainable-parameter line.")

    @Argument(help: "A Hugging Face model directory (config.json + safetensors) or a GGUF file; its checkpoint is validated too.")
    var modelDirectory: String
    @Option(name: .customLong("lora-config"),
            help: "A PEFT adapter_config.json, an adapter directory holding one, or a train settings file (YAML or JSON).")
    var loraConfig: String?
    @Option(name: .customLong("config"), help: ArgumentHelp("The settings file `train --config` reads: its LoRA settings.",
                                                            valueName: "file")) var settings: String?

    func run() throws {
        if loraConfig != nil, settings != nil { throw ValidationError("give --lora-config or --config, not both") }
        // Settings first: a bad one is reported before the checkpoint is read.
        let lora = try loraConfig.map { try TrainingConfig.loraConfigFile(path: $0).lora }
            ?? settings.map { try TrainingConfig.loraSettings(file: $0) }
        let (base, checkpoint) = try ModelSource.open(modelDirectory)
        let (config, note) = try lora.map { try base.forInspection(lora: $0, path: loraConfig) } ?? (base, nil)
        let check = try CheckpointCheck.run(config: config, checkpoint: checkpoint)
        print(ModelPrinter.render(config))
        print(check)
        if let note { print("note: " + note) }
        guard let lora else { return }
        let plan = try AdapterPlan(config: config, lora: lora)
        print(ModelPrinter.targets(plan))
        print(plan.trainableLine)
        if lora.inferenceMode {
            print("inference_mode: true — the adapter is loaded frozen, as PEFT loads a saved adapter for inference; "
                  + "`train --adapter` continues training a saved adapter (PEFT's is_trainable=True), while "
                  + "`train --lora-config` refuses it: set inference_mode: false to train with these settings")
        }
    }
}
