import Foundation
import LoraOps
import OpenCLRuntime
import Reference
import XCTest

/// The process-wide context (pocl here and in CI) shared by every test.
func sharedContext() throws -> ComputeContext { try ComputeContext.shared() }

/// Fresh random inputs each run; the seed is printed so a failure can be replayed
/// with LORA_GPU_TEST_SEED.
func freshRandom(_ test: String) -> SeededRandom {
    let seed = ProcessInfo.processInfo.environment["LORA_GPU_TEST_SEED"].flatMap(UInt64.init)
        ?? UInt64.random(in: 1...UInt64.max)
    print("[\(test)] seed \(seed)")
    return SeededRandom(seed: seed)
}

/// A device buffer filled with NaN, so an element the kernel does not write fails.
func poisoned(_ ctx: ComputeContext, _ count: Int) throws -> DeviceBuffer<Float> {
    let b = try ctx.buffer(count: count)
    try b.fill(.nan)
    return b
}

let parityTolerance = 1e-5

/// ‖out − ref‖ / ‖ref‖ ≤ tol and no NaN. `floor` replaces ‖ref‖ when the result is
/// a cancellation of much larger terms (then fp32 can only promise tol × those terms).
func assertClose(_ out: [Float], _ ref: [Double], tol: Double = parityTolerance, floor: Double = 0,
                 _ what: @autoclosure () -> String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(out.count, ref.count, "\(what()): size", file: file, line: line)
    XCTAssertFalse(out.contains { $0.isNaN }, "\(what()): NaN in output (unwritten element?)", file: file, line: line)
    let refNorm = ref.reduce(0) { $0 + $1 * $1 }.squareRoot()
    let err = relativeError(out, ref) * (refNorm == 0 ? 1 : refNorm / max(refNorm, floor))
    XCTAssertLessThanOrEqual(err, tol, "\(what()): relative error \(err)", file: file, line: line)
}

func toDouble(_ xs: [Float]) -> [Double] { xs.map(Double.init) }

/// Central finite difference of a float64 scalar function at a few coordinates.
/// Returns (analytic, numeric) pairs for the sampled indices.
func finiteDifference(_ x: [Double], samples: [Int], h: Double = 1e-5, _ f: ([Double]) -> Double) -> [Double] {
    samples.map { i in
        var xp = x, xm = x
        xp[i] += h
        xm[i] -= h
        return (f(xp) - f(xm)) / (2 * h)
    }
}

/// Checks sampled entries of `grad` (from a kernel) against finite differences of `loss`.
func assertGradient(_ grad: [Float], at x: [Double], samples: Int, rng: inout SeededRandom, tol: Double = 1e-4,
                    floor: Double = 1e-6, _ what: String, file: StaticString = #filePath, line: UInt = #line, loss: ([Double]) -> Double) {
    let idx = (0..<min(samples, x.count)).map { _ in Int.random(in: 0..<x.count, using: &rng) }
    let fd = finiteDifference(x, samples: idx, loss)
    let scale = max(grad.map { abs(Double($0)) }.max() ?? 0, floor)
    for (k, i) in idx.enumerated() {
        let diff = abs(Double(grad[i]) - fd[k]) / scale
        XCTAssertLessThanOrEqual(diff, tol, "\(what)[\(i)]: kernel \(grad[i]) vs finite difference \(fd[k])",
                                 file: file, line: line)
    }
}

func dot(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).reduce(0) { $0 + $1.0 * $1.1 } }
