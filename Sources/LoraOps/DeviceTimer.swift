import Foundation

/// The one timer of the tuner and the benchmarks: median wall time of a body
/// (followed by `sync`, e.g. clFinish, so queued kernels are counted) over `runs`
/// timed repeats after `warmup` untimed ones. Several bodies are timed in
/// interleaved rounds, so a load that comes and goes shifts them alike.
public struct DeviceTimer: Sendable {
    public var warmup: Int
    public var runs: Int
    /// A pause before timing (µs): OpenBLAS's and pocl's worker threads keep
    /// spinning for a while after a call; measuring right after would halve the figure.
    public var settleMicroseconds: UInt32

    public init(warmup: Int, runs: Int, settleMicroseconds: UInt32 = 0) {
        self.warmup = warmup
        self.runs = max(runs, 1)
        self.settleMicroseconds = settleMicroseconds
    }

    public func settle() { if settleMicroseconds > 0 { usleep(settleMicroseconds) } }

    /// The median seconds of each body, timed in interleaved rounds.
    public func medians(_ bodies: [() throws -> Void], sync: () throws -> Void) throws -> [Double] {
        settle()
        var ts = [[Double]](repeating: [], count: bodies.count)
        for round in 0..<(warmup + runs) {
            for (i, body) in bodies.enumerated() {
                let t0 = DispatchTime.now().uptimeNanoseconds
                try body()
                try sync()
                if round >= warmup { ts[i].append(Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9) }
            }
        }
        return ts.map { $0.sorted()[$0.count / 2] }
    }

    public func median(_ body: () throws -> Void, sync: () throws -> Void) throws -> Double {
        try withoutActuallyEscaping(body) { try medians([$0], sync: sync)[0] }
    }
}

extension ComputeContext {
    /// `timer`'s median of `body` with this context's queue finished after each run.
    public func time(_ timer: DeviceTimer, _ body: () throws -> Void) throws -> Double {
        try timer.median(body, sync: { try finish() })
    }
}
