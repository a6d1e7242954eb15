import Foundation
import LoraOps

/// `lora-gpu train --profile`: device time per kernel family per optimizer step,
/// from the OpenCL profiling events of every launch (`ComputeContext.profileLaunches`).
/// Only launches between the start and the end of `trainStep` are counted;
/// evaluation, checkpoints and the model's set-up are dropped. Copies between
/// host and device are not kernels and are not in the table; the step's wall
/// time is printed beside the kernel total so the gap shows.
final class StepProfiler {
    /// One family's device time and launch count, summed over `steps` steps.
    struct Row: Equatable {
        var family: String
        var seconds: Double
        var launches: Int
    }

    let ctx: ComputeContext
    let progress: ProgressPrinter
    /// A first table after this many steps; the final one averages every step after the first.
    let earlyAfter: Int
    private(set) var steps = 0
    private var early: [String: (Double, Int)] = [:]
    private var late: [String: (Double, Int)] = [:]
    private var earlyWall = 0.0, lateWall = 0.0
    private var stepStart = Date()

    init(context: ComputeContext, progress: ProgressPrinter, earlyAfter: Int = 3) {
        ctx = context
        self.progress = progress
        self.earlyAfter = max(earlyAfter, 1)
        ctx.profileLaunches = true
    }

    /// Kernel name → the family it is reported under.
    static func family(of kernel: String) -> String {
        switch kernel {
        case _ where kernel.hasPrefix("gemm_packed"): return "matmul (gemm_packed)"
        case _ where kernel.hasPrefix("gemm_tiled"): return "matmul (gemm_tiled)"
        case "pack_b": return "matmul packing (pack_b)"
        case _ where kernel.hasPrefix("transpose_panels"): return "frozen W backward panels (transpose_panels)"
        case "attention_forward": return "attention forward"
        case "attention_transpose": return "attention transposes"
        case _ where kernel.hasPrefix("attention_backward"): return "attention backward"
        case "cross_entropy_fused": return "cross-entropy (fwd+bwd)"
        case "real_target_loss": return "regression / multi-label loss (fwd+bwd)"
        case "rope_apply": return "rope"
        case _ where kernel.hasPrefix("rmsnorm"): return "rmsnorm (fwd+bwd)"
        case _ where kernel.hasPrefix("silu") || kernel.hasPrefix("swiglu"): return "SwiGLU (fwd+bwd)"
        case _ where kernel.hasPrefix("geglu"): return "GeGLU (fwd+bwd)"
        case "dropout_forward": return "LoRA dropout"
        case "embedding_forward", "embedding_backward", "add_uniform_noise": return "embedding"
        case _ where kernel.hasPrefix("panel_rows"): return "embedding"
        case "adamw_step": return "AdamW"
        case "colsum", "sum_partial", "sum_finalize": return "reductions (grad norm, sums)"
        case "f16_to_f32", "bf16_to_f32": return "16-bit → fp32 conversion"
        default: return kernel
        }
    }

    /// Per-kernel totals → per-family rows, largest first.
    static func families(_ profile: [(kernel: String, seconds: Double, launches: Int)]) -> [Row] {
        var d: [String: Row] = [:]
        for p in profile {
            let f = family(of: p.kernel)
            d[f, default: Row(family: f, seconds: 0, launches: 0)].seconds += p.seconds
            d[f, default: Row(family: f, seconds: 0, launches: 0)].launches += p.launches
        }
        return d.values.sorted { $0.seconds != $1.seconds ? $0.seconds > $1.seconds : $0.family < $1.family }
    }

    /// The printed table: a heading, one line per family (ms per step, share of
    /// the kernel time, launches per step) and the total against the wall time.
    static func table(_ rows: [Row], steps: Int, wallSeconds: Double, title: String) -> [String] {
        let n = Double(max(steps, 1))
        let total = rows.reduce(0) { $0 + $1.seconds }
        var lines = ["profile: \(title): device time per step by kernel family"]
        for r in rows {
            lines.append("profile:   " + r.family.padding(toLength: 30, withPad: " ", startingAt: 0)
                + String(format: "%10.1f ms %6.1f %%  %7.1f launches", r.seconds / n * 1e3,
                         total > 0 ? 100 * r.seconds / total : 0, Double(r.launches) / n))
        }
        lines.append("profile:   " + "all kernels".padding(toLength: 30, withPad: " ", startingAt: 0)
            + String(format: "%10.1f ms of %.1f ms step wall time (%.0f %%)", total / n * 1e3, wallSeconds / n * 1e3,
                     wallSeconds > 0 ? 100 * total / wallSeconds : 0))
        return lines
    }

    /// Before `trainStep`: drops the launches since the last step (evaluation, set-up).
    func beforeStep() throws {
        _ = try ctx.takeKernelProfile()
        stepStart = Date()
    }

    /// After `trainStep` (which has read its loss back, so every launch has ended).
    func afterStep() throws {
        try ctx.finish()
        let wall = Date().timeIntervalSince(stepStart)
        let p = try ctx.takeKernelProfile()
        steps += 1
        func add(_ d: inout [String: (Double, Int)]) {
            for k in p { d[k.kernel, default: (0, 0)].0 += k.seconds; d[k.kernel, default: (0, 0)].1 += k.launches }
        }
        if steps <= earlyAfter {
            add(&early)
            earlyWall += wall
            if steps == earlyAfter { print(early, steps: steps, wall: earlyWall, title: "steps 1–\(steps)") }
        }
        if steps > 1 {
            add(&late)
            lateWall += wall
        }
    }

    /// After the loop: the mean over every step after the first (the first alone when there was one).
    func finish() {
        ctx.profileLaunches = false
        _ = try? ctx.takeKernelProfile()
        if steps > 1 {
            print(late, steps: steps - 1, wall: lateWall, title: "mean of steps 2–\(steps)")
        } else if steps == 1 && earlyAfter > 1 {
            print(early, steps: 1, wall: earlyWall, title: "step 1")
        }
    }

    private func print(_ d: [String: (Double, Int)], steps: Int, wall: Double, title: String) {
        let rows = Self.families(d.map { ($0.key, $0.value.0, $0.value.1) })
        for l in Self.table(rows, steps: steps, wallSeconds: wall, title: title) { progress.message(l) }
    }
}
