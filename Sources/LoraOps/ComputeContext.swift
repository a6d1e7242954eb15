import Foundation
import OpenCLRuntime

#if os(Linux)
/// glibc's mallopt (malloc.h, which Swift's Glibc module does not export); M_MMAP_THRESHOLD is −3 there.
@_silgen_name("mallopt") private func glibcMallopt(_ parameter: Int32, _ value: Int32) -> Int32
private let glibcMmapThreshold: Int32 = -3
#endif

/// Shape or argument errors of an op, naming the op and the operand.
public struct OpError: Error, CustomStringConvertible {
    public let op: String
    public let detail: String
    public var description: String { "\(op): \(detail)" }
}

/// Everything needed to run the kernels on one device: context, in-order
/// queue, the program (built once per process per device and reused) and its
/// kernels, and scratch buffers for packing.
///
/// Thread safety: `shared()` hands one context to every caller, so each public
/// op holds `opLock` (recursive: ops call ops) for its whole duration. An op
/// sets kernel arguments (state on the shared kernel object) and then enqueues,
/// and fills scratch buffers that later launches of the same op read; both
/// must not interleave with another thread's op. The in-order queue then runs
/// the ops' launches one op after another, so results are as if the threads
/// took turns. Buffers themselves are not guarded: two threads must not write
/// the same buffer (as with any shared memory).
public final class ComputeContext {
    public let device: Device
    public let context: CLContext
    public let queue: CommandQueue
    public let program: Program
    public let config: KernelConfig
    /// Held by every public op for its whole duration (see the type's comment).
    public let opLock = NSRecursiveLock()
    private var kernels: [String: Kernel] = [:]
    private var scratch: [Int: DeviceBuffer<Float>] = [:]
    /// Set to collect every launch's profiling event, by kernel name.
    public var profileLaunches = false
    /// What scratch slot 9 holds: the backward panels of FrozenLinear `serial` (see `backwardPanels`).
    var backwardPanelsHeld: (serial: UInt64, part: Int, rows: Range<Int>, widened: Bool, buffer: DeviceBuffer<Float>)?
    /// The most bytes scratch slot 9 (a frozen W's backward panels) may take: a larger part of W is transposed and
    /// multiplied in blocks of rows (`backwardBlockRows`), so an 8B model's lm_head (128256 × 4096 fp32, 2 GiB) needs
    /// 256 MiB of scratch, not 2 GiB. The plan (MemoryPlan) reads the same bound.
    public var backwardPanelBytesLimit = ComputeContext.defaultBackwardPanelBytesLimit
    public static let defaultBackwardPanelBytesLimit = 256 << 20
    /// The most bytes of fp32 panels the staged forward over quantized panels (`KernelConfig.quantStaged`)
    /// holds at once (scratch slot 10): W is dequantized and multiplied in blocks of columns within it.
    public var stagedPanelBytesLimit = ComputeContext.defaultStagedPanelBytesLimit
    /// The formats whose forward runs staged on this context: the config's `quantStaged`, changeable (the bench times
    /// both paths on the same panels).
    public var quantStaged: Set<WeightStorage>
    public static let defaultStagedPanelBytesLimit = 32 << 20
    static let stagedPanelsSlot = 10
    public private(set) var launchEvents: [(kernel: String, event: Event)] = []

    private static let lock = NSLock()
    nonisolated(unsafe) private static var shared: [String: ComputeContext] = [:]

    /// The process-wide context for `device` (default: `LORA_GPU_DEVICE`, else
    /// the first GPU, else the first CPU) with `config` (default: the one
    /// `KernelConfig.resolve` picks: LORA_GPU_KERNEL_CONFIG > the tuning cache >
    /// the device class). One context per device and config; the program is
    /// built on first use only.
    public static func shared(device: Device? = nil, config: KernelConfig? = nil,
                              origin: String? = nil) throws -> ComputeContext {
        let dev = try device ?? DeviceSelection.select(ProcessInfo.processInfo.environment[DeviceSelection.environmentVariable])
        let chosen: (KernelConfig, String)
        if let config {
            chosen = (config, origin ?? "given")
        } else {
            let r = try KernelConfig.resolve(device: dev)
            chosen = (r.config, r.origin)
        }
        let key = "\(dev.platform.index):\(dev.index) \(chosen.0.spec)"
        lock.lock()
        defer { lock.unlock() }
        if let ctx = shared[key] { return ctx }
        let ctx = try ComputeContext(device: dev, config: chosen.0, origin: chosen.1)
        shared[key] = ctx
        return ctx
    }

    /// Where `config` came from, in words ("tuning cache …", "LORA_GPU_KERNEL_CONFIG", …).
    public let configOrigin: String

    /// `kernelFiles`: build only these kernel files (plus common.cl), as the
    /// tuner does to keep a candidate's build short; nil builds all of them.
    /// Buffers of a CPU device (pocl) live in this process's heap: glibc raises its mmap threshold to the largest
    /// block freed (up to 32 MiB), so after the loader frees a weight's staging buffer, later buffers below that
    /// size come from the heap and freed ones stay resident. Fixing the threshold at 128 KiB keeps every larger
    /// buffer its own mapping, returned when freed: the 8B-shaped Q4_0 run's peak RSS fell by 1.2 GiB
    /// (Benchmarks/NOTES.md, 2026-12-07, quantized storage). Set once, before the first context.
    static let freedBuffersGoBack: Bool = {
        #if os(Linux)
        return glibcMallopt(glibcMmapThreshold, 128 * 1024) == 1
        #else
        return false
        #endif
    }()

    public init(device: Device, config: KernelConfig, origin: String = "given",
                kernelFiles: Set<String>? = nil) throws {
        _ = Self.freedBuffersGoBack
        self.device = device
        self.config = config
        quantStaged = config.quantStaged
        configOrigin = origin
        context = try CLContext(device: device)
        queue = try CommandQueue(context: context)
        let files = Self.programFiles.filter { kernelFiles == nil || $0.name == "common.cl" || kernelFiles!.contains($0.name) }
        program = try Program(context: context, source: Self.programSource(files), options: config.buildOptions)
    }

    /// The kernel files as one program source. Each file starts with a `#line 1 "name"`
    /// directive, so the device compiler's build log names the kernel file and its own
    /// line (`attention.cl:42:7: error: …`), not a line of the concatenation.
    public static func programSource(_ files: [(name: String, source: String)]) -> String {
        files.map { "#line 1 \"\($0.name)\"\n\($0.source)" }.joined(separator: "\n")
    }

    /// The kernel files in program order: common.cl (shared helpers) first, then the op families.
    static var programFiles: [(name: String, source: String)] {
        EmbeddedKernels.files.filter { $0.name == "common.cl" }.map { ($0.name, $0.source) }
            + EmbeddedKernels.files.filter { $0.name != "common.cl" }.map { ($0.name, $0.source) }
    }

    /// Names of the kernel files compiled into the program.
    public static var kernelFileNames: [String] { EmbeddedKernels.files.map(\.name) }

    public func kernel(_ name: String) throws -> Kernel {
        opLock.lock(); defer { opLock.unlock() }
        if let k = kernels[name] { return k }
        let k = try program.kernel(named: name)
        kernels[name] = k
        return k
    }

    func launch(_ name: String, _ args: [KernelArgument], global: [Int], local: [Int]) throws {
        opLock.lock(); defer { opLock.unlock() }
        let k = try kernel(name)
        try k.setArguments(args)
        if let e = try k.launch(on: queue, global: global, local: local, profile: profileLaunches) {
            launchEvents.append((name, e))
        }
    }

    /// Device time per kernel (seconds) of the collected launches, largest first; clears them.
    public func takeKernelProfile() throws -> [(kernel: String, seconds: Double, launches: Int)] {
        opLock.lock(); defer { opLock.unlock() }
        var total: [String: (Double, Int)] = [:]
        for (name, e) in launchEvents {
            let t = Double(try e.durationNanoseconds()) * 1e-9
            total[name, default: (0, 0)].0 += t
            total[name, default: (0, 0)].1 += 1
        }
        launchEvents.removeAll()
        return total.map { ($0.key, $0.value.0, $0.value.1) }.sorted { $0.seconds > $1.seconds }
    }

    public func buffer(count: Int, label: String? = nil) throws -> DeviceBuffer<Float> {
        try DeviceBuffer(queue: queue, count: count, label: label)
    }
    public func buffer(_ values: [Float]) throws -> DeviceBuffer<Float> { try DeviceBuffer(queue: queue, values) }

    /// A reusable scratch buffer with at least `count` floats. Slots let one op
    /// hold several at once; the in-order queue makes reuse across ops safe.
    /// Slots in use: 0 matmul's packed op(B); 1–3 LoRA forward (dropout(x), Aᵀ, Bᵀ
    /// panels); 4–8 LoRA backward (g, B, u, dropout(x), A panels); 9 a frozen W's backward
    /// panels (`backwardPanels`, 16-bit for 16-bit weights); 10 the staged forward's fp32 panels; 20 reduction
    /// partials; 30, 32, 33 attention's transposed K, Q, dO; 34, 35 its per-head dK, dV.
    func scratch(_ slot: Int, count: Int) throws -> DeviceBuffer<Float> {
        opLock.lock(); defer { opLock.unlock() }
        if let b = scratch[slot], b.count >= count { return b }
        scratch[slot] = nil   // the smaller buffer goes first: never both alive at once
        let b = try buffer(count: count)
        scratch[slot] = b
        return b
    }

    public func finish() throws { try queue.finish() }
}

/// A size, stride or index as a kernel's `int` argument. The kernels index
/// with 32-bit ints, so a host value past Int32's range is an error naming the
/// value, never a trap and never a silent wrap-around.
func i32(_ v: Int) throws -> KernelArgument {
    guard let x = Int32(exactly: v) else {
        throw OpError(op: "kernel launch", detail: "argument \(v) does not fit the kernels' 32-bit int (range \(Int32.min)…\(Int32.max)); split the work into smaller pieces")
    }
    return .int(x)
}

func require(_ cond: Bool, _ op: String, _ detail: @autoclosure () -> String) throws {
    if !cond { throw OpError(op: op, detail: detail()) }
}

func requireCount(_ buf: DeviceBuffer<Float>, atLeast n: Int, _ op: String, _ name: String) throws {
    if buf.count < n { throw OpError(op: op, detail: "\(name) has \(buf.count) elements, needs \(n)") }
}
