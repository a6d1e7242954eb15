import Foundation
@testable import LoraOps
import OpenCLRuntime
import Reference
import XCTest

/// Sharing one context across threads, checked kernel arguments, and buffers
/// past the device's allocation limit.
final class ReliabilityOpsTests: XCTestCase {
    /// Two threads, each running many matmuls (with their own buffers) on the one
    /// shared context: every product equals the float64 reference. Without the
    /// context's op lock the threads interleave argument-setting and scratch
    /// packing, and products come out wrong or the process crashes.
    func testTwoThreadsShareTheContext() throws {
        let ctx = try sharedContext()
        let rounds = 100
        final class Failures: @unchecked Sendable {
            let lock = NSLock()
            var text = ["", ""]
            func set(_ t: Int, _ s: String) { lock.lock(); text[t] = s; lock.unlock() }
        }
        let failures = Failures()
        let group = DispatchGroup()
        for t in 0..<2 {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                var rng = freshRandom("threads\(t)")
                // Different shapes per thread so a mixed-up scratch panel shows.
                let (m, n, k) = t == 0 ? (33, 47, 65) : (20, 71, 129)
                do {
                    for r in 0..<rounds {
                        let a = rng.uniform(m * k), b = rng.uniform(k * n)
                        let da = try ctx.buffer(a), db = try ctx.buffer(b), dc = try ctx.buffer(count: m * n)
                        try ctx.matmul(dc, da, db, m: m, n: n, k: k, transB: r % 2 == 0 ? .none : .transposed)
                        let ref = Reference.matmul(a, b, m: m, n: n, k: k, transA: false, transB: r % 2 == 1, alpha: 1)
                        let out = try dc.read()
                        let err = zip(out, ref).map { abs(Double($0) - $1) }.max() ?? 0
                        if err > 1e-3 { failures.set(t, "thread \(t) round \(r): max error \(err)"); return }
                    }
                } catch {
                    failures.set(t, "thread \(t): \(error)")
                }
            }
        }
        group.wait()
        XCTAssertEqual(failures.text, ["", ""])
    }

    /// Host sizes reach the kernels as 32-bit ints: a value past Int32 is a named
    /// error, not a trap.
    func testKernelIntArgumentsAreChecked() throws {
        XCTAssertNoThrow(try i32(Int(Int32.max)))
        XCTAssertNoThrow(try i32(-5))
        for bad in [Int(Int32.max) + 1, 1 << 40, Int(Int32.min) - 1] {
            XCTAssertThrowsError(try i32(bad)) { e in
                printMessage("\(e)")
                XCTAssertTrue("\(e)".contains("kernel launch") && "\(e)".contains("\(bad)"), "\(e)")
            }
        }
    }

    /// A buffer past CL_DEVICE_MAX_MEM_ALLOC_SIZE: the message names the buffer,
    /// its size and the limit (not CL_INVALID_BUFFER_SIZE alone); a size whose
    /// byte count overflows is refused the same way.
    func testBufferPastTheAllocationLimitIsNamed() throws {
        let ctx = try sharedContext()
        let limit = ctx.context.maxAllocationBytes
        XCTAssertGreaterThan(limit, 0)
        let count = limit / 4 + 1
        XCTAssertThrowsError(try ctx.buffer(count: count, label: "tensor 'model.embed_tokens.weight' [152064, 8192]")) { e in
            let text = "\(e)"
            printMessage(text)
            for part in ["model.embed_tokens.weight", "\(count * 4) bytes", "CL_DEVICE_MAX_MEM_ALLOC_SIZE", "\(limit)"] {
                XCTAssertTrue(text.contains(part), "'\(text)' should mention '\(part)'")
            }
        }
        XCTAssertThrowsError(try ctx.buffer(count: Int.max / 2, label: "activations")) { e in
            printMessage("\(e)")
            XCTAssertTrue("\(e)".contains("activations") && "\(e)".contains("not a valid size"), "\(e)")
        }
        XCTAssertThrowsError(try DeviceBuffer<Float>(queue: ctx.queue, count: -1)) { e in
            XCTAssertTrue("\(e)".contains("not a valid size"), "\(e)")
        }
    }
}

/// With LORA_GPU_PRINT_ERRORS set, prints an error message (for docs/ERRORS.md).
func printMessage(_ text: String) {
    if ProcessInfo.processInfo.environment["LORA_GPU_PRINT_ERRORS"] != nil { print("ERROR-MESSAGE: \(text)") }
}
