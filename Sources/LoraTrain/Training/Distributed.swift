import Foundation
import LoraModel
import LoraOps
import OpenCLRuntime
#if canImport(Glibc)
import Glibc
#endif

/// Data-parallel training over MPI, loaded at run time: `mpirun -np N lora-gpu
/// train …` starts N ranks; each computes its share of every optimizer step's
/// micro-batches, the flat gradient buffer (4 bytes × trainable parameters) is
/// summed over the ranks once per step, and every rank takes the same AdamW
/// step. Without mpirun (or with one rank) nothing here is loaded: libmpi is
/// opened with dlopen only when the launcher's environment says the job has
/// more than one rank, so a plain run needs no MPI installed.
///
/// Open MPI's handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM) are the addresses
/// of its global objects (ompi_mpi_comm_world, …), found with dlsym; MPICH's
/// are fixed integers (its ABI), used when those symbols are absent.
public final class Distributed {
    public let rank: Int
    public let size: Int
    /// The rank among the ranks of this machine (picks the GPU of a multi-GPU machine).
    public let localRank: Int
    /// The library that was opened.
    public let library: String
    /// True once any rank asked to stop (SIGINT/SIGTERM), as agreed at the last step.
    public private(set) var stopAgreed = false

    private let api: API
    private var finalized = false

    public enum Failure: Error, CustomStringConvertible {
        case noLibrary(tried: [String], reason: String)
        case missingSymbol(library: String, symbol: String)
        case call(function: String, code: Int32)
        case mismatch(what: String, reason: String)

        public var description: String {
            switch self {
            case .noLibrary(let t, let r):
                return "MPI: this process runs under mpirun with more than one rank, but no MPI library could be opened "
                    + "(tried \(t.joined(separator: ", ")); last error: \(r)). Install Open MPI (Debian: apt-get install "
                    + "openmpi-bin) or name the library in LORA_GPU_LIBMPI"
            case .missingSymbol(let l, let s): return "MPI: \(l) has no symbol \(s)"
            case .call(let f, let c): return "MPI: \(f) returned error code \(c)"
            case .mismatch(let w, let r): return "MPI: the ranks disagree on \(w): \(r)"
            }
        }
    }

    // MARK: the launcher's environment

    /// The world size the launcher announces (Open MPI: OMPI_COMM_WORLD_SIZE;
    /// MPICH/Hydra, Slurm PMI: PMI_SIZE), or nil outside mpirun.
    public static func launcherSize(_ env: [String: String] = ProcessInfo.processInfo.environment) -> Int? {
        for k in ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"] {
            if let v = env[k], let n = Int(v.trimmingCharacters(in: .whitespaces)) { return n }
        }
        return nil
    }

    static func localRank(_ env: [String: String]) -> Int? {
        for k in ["OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "PMI_LOCAL_RANK", "SLURM_LOCALID"] {
            if let v = env[k], let n = Int(v.trimmingCharacters(in: .whitespaces)) { return n }
        }
        return nil
    }

    private nonisolated(unsafe) static var worldState: Result<Distributed?, Error>?
    private static let lock = NSLock()

    /// The MPI world of this process: nil unless it was started by mpirun with
    /// more than one rank; then MPI_Init runs once (on first use) and a
    /// library or call failure is thrown.
    public static func world() throws -> Distributed? {
        lock.lock()
        defer { lock.unlock() }
        if let s = worldState { return try s.get() }
        let env = ProcessInfo.processInfo.environment
        let r: Result<Distributed?, Error>
        if let n = launcherSize(env), n > 1 {
            r = Result { try Distributed(env: env, openMPI: env["OMPI_COMM_WORLD_SIZE"] != nil) }
        } else {
            r = .success(nil)
        }
        worldState = r
        return try r.get()
    }

    // MARK: the library

    private typealias InitFn = @convention(c) (UnsafeMutablePointer<Int32>?, UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?) -> Int32
    private typealias FinalizeFn = @convention(c) () -> Int32
    // Open MPI: handles are pointers.
    private typealias OCommIntFn = @convention(c) (UnsafeMutableRawPointer?, UnsafeMutablePointer<Int32>?) -> Int32
    private typealias OAllreduceFn = @convention(c) (UnsafeRawPointer?, UnsafeMutableRawPointer?, Int32,
                                                     UnsafeMutableRawPointer?, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Int32
    // MPICH: handles are ints.
    private typealias MCommIntFn = @convention(c) (Int32, UnsafeMutablePointer<Int32>?) -> Int32
    private typealias MAllreduceFn = @convention(c) (UnsafeRawPointer?, UnsafeMutableRawPointer?, Int32, Int32, Int32, Int32) -> Int32

    private enum API {
        case openMPI(rank: OCommIntFn, size: OCommIntFn, allreduce: OAllreduceFn, finalize: FinalizeFn,
                     world: UnsafeMutableRawPointer, float: UnsafeMutableRawPointer, double: UnsafeMutableRawPointer,
                     sum: UnsafeMutableRawPointer)
        case mpich(rank: MCommIntFn, size: MCommIntFn, allreduce: MAllreduceFn, finalize: FinalizeFn)
    }

    // MPICH's mpi.h constants (its stable ABI).
    private static let mpichCommWorld: Int32 = 0x4400_0000
    private static let mpichFloat: Int32 = 0x4c00_040a
    private static let mpichDouble: Int32 = 0x4c00_080b
    private static let mpichSum: Int32 = 0x5800_0003

    private init(env: [String: String], openMPI: Bool) throws {
        var names = openMPI ? ["libmpi.so.40", "libmpi.so", "libmpich.so.12"] : ["libmpich.so.12", "libmpi.so.12", "libmpi.so", "libmpi.so.40"]
        if let lib = env["LORA_GPU_LIBMPI"], !lib.isEmpty { names.insert(lib, at: 0) }
        var handle: UnsafeMutableRawPointer?
        var opened = "", lastError = "not found"
        for n in names {
            // RTLD_GLOBAL: Open MPI's own plugins resolve libmpi's symbols.
            if let h = dlopen(n, RTLD_NOW | RTLD_GLOBAL) {
                handle = h
                opened = n
                break
            }
            lastError = dlerror().map { String(cString: $0) } ?? "not found"
        }
        guard let h = handle else { throw Failure.noLibrary(tried: names, reason: lastError) }
        library = opened
        func sym(_ s: String) throws -> UnsafeMutableRawPointer {
            guard let p = dlsym(h, s) else { throw Failure.missingSymbol(library: opened, symbol: s) }
            return p
        }
        let initFn = unsafeBitCast(try sym("MPI_Init"), to: InitFn.self)
        let finalize = unsafeBitCast(try sym("MPI_Finalize"), to: FinalizeFn.self)
        if dlsym(h, "ompi_mpi_comm_world") != nil {
            api = .openMPI(rank: unsafeBitCast(try sym("MPI_Comm_rank"), to: OCommIntFn.self),
                           size: unsafeBitCast(try sym("MPI_Comm_size"), to: OCommIntFn.self),
                           allreduce: unsafeBitCast(try sym("MPI_Allreduce"), to: OAllreduceFn.self),
                           finalize: finalize,
                           world: try sym("ompi_mpi_comm_world"), float: try sym("ompi_mpi_float"),
                           double: try sym("ompi_mpi_double"), sum: try sym("ompi_mpi_op_sum"))
        } else {
            api = .mpich(rank: unsafeBitCast(try sym("MPI_Comm_rank"), to: MCommIntFn.self),
                         size: unsafeBitCast(try sym("MPI_Comm_size"), to: MCommIntFn.self),
                         allreduce: unsafeBitCast(try sym("MPI_Allreduce"), to: MAllreduceFn.self),
                         finalize: finalize)
        }
        let rc = initFn(nil, nil)
        guard rc == 0 else { throw Failure.call(function: "MPI_Init", code: rc) }
        var r: Int32 = -1, n: Int32 = -1
        switch api {
        case .openMPI(let rankFn, let sizeFn, _, _, let world, _, _, _):
            try Self.check("MPI_Comm_rank", rankFn(world, &r))
            try Self.check("MPI_Comm_size", sizeFn(world, &n))
        case .mpich(let rankFn, let sizeFn, _, _):
            try Self.check("MPI_Comm_rank", rankFn(Self.mpichCommWorld, &r))
            try Self.check("MPI_Comm_size", sizeFn(Self.mpichCommWorld, &n))
        }
        rank = Int(r)
        size = Int(n)
        localRank = Self.localRank(env) ?? Int(r)
    }

    private static func check(_ f: String, _ rc: Int32) throws {
        guard rc == 0 else { throw Failure.call(function: f, code: rc) }
    }

    // MARK: collectives

    /// Sums `count` floats at `buffer` over the ranks, in place (chunks of at most 2^30 elements).
    public func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
        var tmp = [Float](repeating: 0, count: min(count, 1 << 30))
        var off = 0
        while off < count {
            let n = min(count - off, 1 << 30)
            try tmp.withUnsafeMutableBufferPointer { t in
                try reduce(UnsafeRawPointer(buffer + off), t.baseAddress!, Int32(n), double: false)
            }
            tmp.withUnsafeBufferPointer { t in (buffer + off).update(from: t.baseAddress!, count: n) }
            off += n
        }
    }

    /// Sums small double vectors over the ranks (counts, loss sums, flags).
    public func allreduceSum(_ values: [Double]) throws -> [Double] {
        var out = [Double](repeating: 0, count: values.count)
        try values.withUnsafeBufferPointer { v in
            try out.withUnsafeMutableBufferPointer { o in
                try reduce(UnsafeRawPointer(v.baseAddress!), o.baseAddress!, Int32(values.count), double: true)
            }
        }
        return out
    }

    private func reduce(_ send: UnsafeRawPointer, _ recv: UnsafeMutableRawPointer, _ n: Int32, double: Bool) throws {
        switch api {
        case .openMPI(_, _, let allreduce, _, let world, let float, let dbl, let sum):
            try Self.check("MPI_Allreduce", allreduce(send, recv, n, double ? dbl : float, sum, world))
        case .mpich(_, _, let allreduce, _):
            try Self.check("MPI_Allreduce", allreduce(send, recv, n, double ? Self.mpichDouble : Self.mpichFloat,
                                                      Self.mpichSum, Self.mpichCommWorld))
        }
    }

    /// True on every rank when it is true on any (the early-stopping decision of rank 0, …).
    public func any(_ flag: Bool) throws -> Bool {
        try allreduceSum([flag ? 1 : 0])[0] > 0
    }

    /// Ends MPI (every rank, after the last collective); later calls do nothing.
    public func finalize() {
        guard !finalized else { return }
        finalized = true
        switch api {
        case .openMPI(_, _, _, let f, _, _, _, _): _ = f()
        case .mpich(_, _, _, let f): _ = f()
        }
    }

    // MARK: the training step

    /// One optimizer step over the whole accumulated set `micro` (every rank
    /// holds the same list): this rank runs micro-batches rank, rank+N, …, the
    /// gradient buffer and the loss are summed over the ranks, and every rank
    /// applies the same update — what one process running all of `micro` as
    /// gradient accumulation computes, up to the order of float additions.
    /// The ranks' stop requests are agreed here (see `stopAgreed`).
    public func trainStep(_ model: LlamaLoRAModel, _ micro: [TokenBatch], hyper: ComputeContext.AdamWHyper,
                          stopRequested: Bool) throws -> StepResult {
        let shard = micro.enumerated().filter { $0.offset % size == rank }.map { (index: $0.offset, batch: $0.element) }
        // Every rank holds the whole set, so the global trained-token count needs no message;
        // it is summed anyway (with the loss and the stop flags) to catch ranks that read different data.
        let localTokens = shard.reduce(0) { $0 + $1.batch.countedTokens }
        let expected = micro.reduce(0) { $0 + $1.countedTokens }
        // Everything that can fail here (the MPI calls, the data check) fails inside `reduce`, before
        // the AdamW launch, so this rank's parameters, moments and step are left as they were.
        let r = try model.trainStep(shard: shard, globalTokens: expected, hyper: hyper) { groups, lossSum in
            // Each group of the gradient buffers (one unless the trainable tensors exceed one device buffer).
            var summed: [[Float]] = []
            for (grads, count) in groups {
                var g = try grads.read()
                try g.withUnsafeMutableBufferPointer { try allreduceSum($0.baseAddress!, count: min(count, $0.count)) }
                summed.append(g)
            }
            let s = try allreduceSum([Double(lossSum), Double(localTokens), stopRequested ? 1 : 0])
            guard s[1].rounded() == Double(expected) else {
                throw Failure.mismatch(what: "the training data", reason: "the ranks' micro-batches hold \(s[1]) "
                    + "trained tokens, this rank's plan \(expected): every rank must read the same data files")
            }
            for ((grads, _), g) in zip(groups, summed) { try grads.write(g) }
            stopAgreed = stopAgreed || s[2] > 0
            return Float(s[0])
        }
        return r
    }

    // MARK: devices

    /// The device of this rank on a machine with several GPUs: with no
    /// selector (or "gpu"), the local rank's GPU (local rank mod GPU count);
    /// any other selector as usual. Nil outside mpirun.
    public func device(selector: String?) throws -> Device? {
        let sel = selector?.trimmingCharacters(in: .whitespaces).lowercased() ?? ""
        guard sel.isEmpty || sel == "gpu" else { return nil }
        let gpus = try DeviceSelection.allDevices().filter { $0.kind == .gpu }
        guard !gpus.isEmpty else { return nil }
        return gpus[localRank % gpus.count]
    }

    /// The compute context of this rank when it runs under mpirun on a
    /// machine with GPUs and no device was named (see `device(selector:)`);
    /// nil otherwise (the caller chooses as without MPI).
    public static func rankContext(selector: String?) throws -> ComputeContext? {
        let sel = selector ?? ProcessInfo.processInfo.environment[DeviceSelection.environmentVariable]
        guard let w = try world(), let d = try w.device(selector: sel) else { return nil }
        return try ComputeContext.shared(device: d)
    }
}
