import LoraOps
import OpenCLRuntime
import XCTest

final class RuntimeTests: XCTestCase {
    func testDevicesAreListedAndDefaultIsSelectable() throws {
        let devices = try DeviceSelection.allDevices()
        XCTAssertFalse(devices.isEmpty, "pocl must provide a CPU device")
        let d = try DeviceSelection.select(nil)
        XCTAssertTrue(d.kind == .gpu || !devices.contains { $0.kind == .gpu }, "default prefers a GPU")
        XCTAssertGreaterThan(d.computeUnits, 0)
        XCTAssertGreaterThan(d.maxAllocationBytes, 0)
        let byIndex = try DeviceSelection.select("\(d.platform.index):\(d.index)")
        XCTAssertEqual(byIndex.name, d.name)
        let byName = try DeviceSelection.select(String(d.name.prefix(6)).uppercased())
        XCTAssertEqual(byName.name, d.name)
    }

    func testUnknownDeviceSelectorListsWhatExists() throws {
        XCTAssertThrowsError(try DeviceSelection.select("no-such-device-xyz")) { error in
            guard case OpenCLRuntimeError.deviceSelectorNotFound(let sel, let available) = error else {
                return XCTFail("\(error)")
            }
            XCTAssertEqual(sel, "no-such-device-xyz")
            XCTAssertFalse(available.isEmpty)
            XCTAssertTrue("\(error)".contains("available"))
        }
    }

    func testBuildFailureCarriesTheBuildLog() throws {
        let ctx = try sharedContext()
        XCTAssertThrowsError(try Program(context: ctx.context, source: "__kernel void k(__global float* x) { x[0] = undefined_name; }",
                                         options: "")) { error in
            guard case OpenCLRuntimeError.buildFailed(_, _, let log) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(log.contains("undefined_name"), log)
        }
    }

    func testCLErrorsCarryTheCodeNameAndOperation() throws {
        let ctx = try sharedContext()
        XCTAssertThrowsError(try ctx.kernel("no_such_kernel")) { error in
            guard let e = error as? CLError else { return XCTFail("\(error)") }
            XCTAssertEqual(e.name, "CL_INVALID_KERNEL_NAME")
            XCTAssertTrue(e.description.contains("clCreateKernel(no_such_kernel)"), e.description)
        }
        // An illegal local size reaches the driver and comes back as a typed error, not a crash.
        let k = try ctx.kernel("silu_forward")
        let b = try ctx.buffer(count: 4)
        try k.setArguments([.int(4), .buffer(b), .buffer(b)])
        XCTAssertThrowsError(try k.launch(on: ctx.queue, global: [1 << 20], local: [1 << 20])) { error in
            guard let e = error as? CLError else { return XCTFail("\(error)") }
            XCTAssertTrue(e.name.hasPrefix("CL_INVALID_WORK"), e.description)
        }
        XCTAssertEqual(CLError(code: -5, operation: "x").name, "CL_OUT_OF_RESOURCES")
        XCTAssertEqual(CLError(code: -9999, operation: "x").name, "CL_UNKNOWN_ERROR")
    }

    func testBuffersRoundTripAndRejectWrongSizes() throws {
        let ctx = try sharedContext()
        let b = try ctx.buffer([1, 2, 3])
        XCTAssertEqual(try b.read(), [1, 2, 3])
        XCTAssertThrowsError(try b.write([1, 2]))
        try b.fill(7)
        XCTAssertEqual(try b.read(), [7, 7, 7])
        let c = try ctx.buffer(count: 3)
        try c.copy(from: b)
        XCTAssertEqual(try c.read(), [7, 7, 7])
    }

    func testProgramIsBuiltOncePerProcessAndEveryKernelFileIsEmbedded() throws {
        let a = try ComputeContext.shared(), b = try ComputeContext.shared()
        XCTAssertTrue(a === b)
        XCTAssertTrue(a.program === b.program)
        XCTAssertEqual(Set(ComputeContext.kernelFileNames),
                       ["activations.cl", "attention.cl", "common.cl", "convert.cl", "crossentropy.cl", "decode.cl",
                        "embedding.cl", "matmul.cl", "matmul_tiled.cl", "optimizer.cl", "rmsnorm.cl", "rope.cl"])
        for name in ["pack_b", "gemm_packed", "gemm_tiled", "gemm_tiled_f16", "gemm_tiled_bf16", "colsum", "rmsnorm_forward", "rmsnorm_backward_dx", "rmsnorm_backward_dw",
                     "silu_forward", "silu_backward", "swiglu_forward", "swiglu_backward", "geglu_tanh_forward", "geglu_tanh_backward", "scale_elements", "softcap_forward", "softcap_backward", "dropout_forward",
                     "attention_forward", "attention_transpose", "attention_backward", "attention_backward_reduce",
                     "f16_to_f32", "bf16_to_f32", "cross_entropy_fused", "real_target_loss", "embedding_forward", "embedding_backward",
                     "sum_partial", "sum_finalize", "adamw_step", "rope_apply", "copy_columns",
                     "kv_cache_append", "decode_attention_partial", "decode_attention_combine"] {
            XCTAssertNoThrow(try a.kernel(name), name)
        }
    }

    func testEventProfilingGivesDeviceTime() throws {
        let ctx = try sharedContext()
        let k = try ctx.kernel("silu_forward")
        let n = 1 << 16
        let x = try ctx.buffer(count: n), y = try ctx.buffer(count: n)
        try x.fill(1)
        try k.setArguments([.int(Int32(n)), .buffer(x), .buffer(y)])
        let event = try XCTUnwrap(try k.launch(on: ctx.queue, global: [n], local: [64], profile: true))
        XCTAssertGreaterThan(try event.durationNanoseconds(), 0)
    }
}
