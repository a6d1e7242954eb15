import Foundation

/// transformers' get_scheduler learning-rate lambdas (LambdaLR), computed in
/// double as Python does: the rate of optimizer step k (0-based) is
/// base · λ(k), with
///   warmup (k < W):        k / max(1, W)
///   linear:                max(0, (N − k) / max(1, N − W))
///   cosine (0.5 cycles):   max(0, ½(1 + cos(π · 2 · 0.5 · (k − W) / max(1, N − W))))
///   constant:              1 (no warmup)
///   constant_with_warmup:  1 after warmup
public struct LRSchedule: Sendable, Equatable {
    public let type: TrainingConfig.Scheduler
    public let baseLR: Double
    public let warmupSteps: Int
    public let totalSteps: Int

    public init(type: TrainingConfig.Scheduler, baseLR: Double, warmupSteps: Int, totalSteps: Int) {
        self.type = type
        self.baseLR = baseLR
        self.warmupSteps = warmupSteps
        self.totalSteps = totalSteps
    }

    /// λ(k) for the 0-based optimizer step k.
    public func multiplier(_ k: Int) -> Double {
        let w = warmupSteps, n = totalSteps
        switch type {
        case .constant:
            return 1
        case .constantWithWarmup:
            return k < w ? Double(k) / max(1.0, Double(w)) : 1
        case .linear:
            if k < w { return Double(k) / Double(max(1, w)) }
            return max(0.0, Double(n - k) / Double(max(1, n - w)))
        case .cosine:
            if k < w { return Double(k) / Double(max(1, w)) }
            let progress = Double(k - w) / Double(max(1, n - w))
            return max(0, 0.5 * (1.0 + cos(Double.pi * 0.5 * 2.0 * progress)))
        }
    }

    /// The learning rate of 0-based optimizer step k.
    public func lr(_ k: Int) -> Double { baseLR * multiplier(k) }
}

extension TrainingConfig {
    /// warmup steps for `total` steps: warmup_steps when ≥ 1 (a fraction below 1
    /// is a ratio, as transformers 5), else ⌈warmup_ratio·total⌉ (transformers 4).
    public func warmup(total: Int) -> Int {
        if warmupSteps >= 1 { return Int(warmupSteps) }
        let ratio = warmupSteps > 0 ? warmupSteps : warmupRatio
        return Int((ratio * Double(total)).rounded(.up))
    }

    /// A step interval: ≥ 1 a count, below 1 a fraction of the total (ceil), as transformers.
    static func interval(_ v: Double, total: Int) -> Int {
        v >= 1 ? Int(v) : max(1, Int((v * Double(total)).rounded(.up)))
    }
}
