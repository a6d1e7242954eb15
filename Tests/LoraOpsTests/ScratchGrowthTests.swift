import OpenCLRuntime
import XCTest
@testable import LoraOps

/// A scratch slot that grows frees its smaller buffer before making the larger
/// one: the peak (`CLContext.peakBytes`) never holds both. Slot 9 also keeps
/// the held backward panels of the last frozen weight; growing it for a larger
/// weight must not keep the old panels alive either.
final class ScratchGrowthTests: XCTestCase {
    func context() throws -> ComputeContext {
        let device = try sharedContext().device
        return try ComputeContext(device: device, config: .cpu, kernelFiles: ["matmul.cl"])
    }

    func testAGrowingSlotNeverHoldsBothBuffers() throws {
        let ctx = try context()
        _ = try ctx.scratch(5, count: 1000)
        let live = ctx.context.liveBytes
        ctx.context.resetPeakBytes()
        _ = try ctx.scratch(5, count: 3000)
        XCTAssertEqual(ctx.context.liveBytes, live - 4000 + 12000, "the larger buffer replaces the smaller")
        XCTAssertEqual(ctx.context.peakBytes, live - 4000 + 12000, "peak: never both buffers at once")
    }

    func testBackwardPanelsOfALargerWeightFreeTheHeldOnes() throws {
        let ctx = try context()
        func frozen(_ out: Int, _ din: Int) throws -> FrozenLinear {
            let w = try ctx.buffer(count: out * din)
            try w.write((0..<(out * din)).map { Float($0 % 7) })
            return try FrozenLinear(ctx, weight: w, outFeatures: out, inFeatures: din)
        }
        let small = try frozen(16, 32), large = try frozen(48, 64)
        _ = try ctx.backwardPanels(small)
        try ctx.finish()
        let smallBytes = PackedMatrix.count(k: 16, n: 32) * 4
        let largeBytes = PackedMatrix.count(k: 48, n: 64) * 4
        let live = ctx.context.liveBytes
        ctx.context.resetPeakBytes()
        let panels = try ctx.backwardPanels(large)
        try ctx.finish()
        XCTAssertEqual(panels.k, 48)
        XCTAssertEqual(panels.n, 64)
        XCTAssertEqual(ctx.context.liveBytes, live - smallBytes + largeBytes)
        XCTAssertEqual(ctx.context.peakBytes, live - smallBytes + largeBytes, "peak: the small panels were freed first")
    }
}
