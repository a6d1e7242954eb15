import Foundation

// How much of the host's CPU time OTHER processes use while we measure.
//
// A timing taken while something else runs (a build, another training) is a
// poor basis for a cached speed decision (Benchmarks/NOTES.md: a quick tune
// under a build chose mr=5, which then ran at 0.8× OpenBLAS). The tuner
// samples this over its whole run and records it with the cache entry.
//
//   others = (Δbusy(allowed CPUs) − Δcpu(this process)) / Δtotal(allowed CPUs)
//
// from /proc/stat's per-CPU `cpuN` lines of the CPUs in this process's affinity set (busy =
// everything but idle and iowait; a cgroup CPU quota is not seen)
// and /proc/self/stat's utime + stime, all in clock ticks. 0 is an idle host,
// 1 is every allowed CPU kept busy by someone else. Where /proc is absent (not Linux)
// the figure is nil and nothing is decided on it.

public struct HostLoadSample: Sendable {
    /// Jiffies since boot, summed over the CPUs.
    var total: UInt64
    var busy: UInt64
    /// This process's user + system jiffies.
    var own: UInt64

    /// The current counters over the CPUs this process may run on (its affinity set: a container
    /// pinned to a few CPUs of a large host measures those), or nil where /proc cannot be read.
    public static func now() -> HostLoadSample? {
        guard let stat = try? String(contentsOfFile: "/proc/stat", encoding: .utf8) else { return nil }
        let allowed = allowedCPUs()
        var total: UInt64 = 0, busy: UInt64 = 0, counted = 0
        for line in stat.split(separator: "\n") where line.hasPrefix("cpu") && !line.hasPrefix("cpu ") {
            let fields = line.split(separator: " ")
            guard let n = Int(fields[0].dropFirst(3)), allowed?.contains(n) ?? true else { continue }
            // user nice system idle iowait irq softirq steal [guest guest_nice: already inside user/nice]
            let v = fields.dropFirst().prefix(8).compactMap { UInt64($0) }
            guard v.count >= 5 else { continue }
            let t = v.reduce(0, +)
            total += t
            busy += t - v[3] - v[4]
            counted += 1
        }
        guard counted > 0, let own = ownJiffies() else { return nil }
        return HostLoadSample(total: total, busy: busy, own: own)
    }

    /// The CPUs of /proc/self/status's Cpus_allowed_list ("0-3,8"), or nil where it cannot be read.
    public static func allowedCPUs() -> Set<Int>? {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed_list:") }) else { return nil }
        var out = Set<Int>()
        for part in line.dropFirst("Cpus_allowed_list:".count).trimmingCharacters(in: .whitespaces).split(separator: ",") {
            let ends = part.split(separator: "-").compactMap { Int($0) }
            if ends.count == 1 { out.insert(ends[0]) } else if ends.count == 2, ends[0] <= ends[1] { out.formUnion(ends[0]...ends[1]) }
        }
        return out.isEmpty ? nil : out
    }

    /// utime + stime (fields 14 and 15) of /proc/self/stat; the command name (field 2) may hold spaces,
    /// so fields are counted after its closing parenthesis.
    static func ownJiffies() -> UInt64? {
        guard let s = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
              let close = s.lastIndex(of: ")") else { return nil }
        let rest = s[s.index(after: close)...].split(separator: " ")
        // rest[0] is field 3 (state); utime is field 14 → rest[11], stime → rest[12].
        guard rest.count > 12, let u = UInt64(rest[11]), let k = UInt64(rest[12]) else { return nil }
        return u + k
    }

    /// The share of all CPUs' time that other processes used between `self` and `later`, in 0…1
    /// (nil when no time passed).
    public func othersLoad(until later: HostLoadSample) -> Double? {
        guard later.total > total else { return nil }
        let busy = Double(later.busy &- busy), own = Double(later.own &- own)
        return min(max((busy - own) / Double(later.total - total), 0), 1)
    }

    /// Other processes' share of the CPUs over the next `seconds` (this thread sleeps meanwhile).
    public static func measureOthers(seconds: Double) -> Double? {
        guard let a = now() else { return nil }
        usleep(UInt32(max(seconds, 0.01) * 1e6))
        guard let b = now() else { return nil }
        return a.othersLoad(until: b)
    }
}

/// The thresholds the automatic tune decides on (TuningEntry.measuredUnderLoad, KernelConfig.resolveOrTune).
public enum TuneLoadPolicy {
    /// Other processes used more than this share of the CPUs during a tune: it was taken under load.
    public static let busyShare = 0.15
    /// Where the load cannot be read: a relative spread of the playoff's rounds above this means
    /// the timings were disturbed (an idle host spreads 10–30 %).
    public static let unsteadySpread = 0.5
    /// A cached winner re-timed at a speed this far (relative) from the recorded one is not reproduced.
    public static let reproduceTolerance = 0.25
}
