import Foundation
import LoraOps
import OpenCLRuntime
import TestSupport
import XCTest

/// Issue 9, the device: no OpenCL platform (the CLI says which package provides
/// pocl, exits non-zero, writes nothing) and a kernel that fails to build (the
/// error carries the compiler's log with the line at fault).
final class DeviceErrorTests: XCTestCase {
    static let fixtures = testFixturesRoot

    /// Runs lora-gpu with the ICD loader pointed at `vendors` (ocl-icd reads OCL_ICD_VENDORS
    /// instead of /etc/OpenCL/vendors).
    func run(_ args: [String], vendors: String) throws -> CLI.Run {
        try CLI.run(args, environment: CLI.environment(["OCL_ICD_VENDORS": vendors, "OCL_ICD_FILENAMES": nil,
                                                        DeviceSelection.environmentVariable: nil]))
    }

    func testNoOpenCLPlatformNamesThePoclPackageAndWritesNothing() throws {
        let dir = try temporaryDirectory("noplatform")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let vendors = dir + "/vendors"  // an ICD directory with no .icd file
        try FileManager.default.createDirectory(atPath: vendors, withIntermediateDirectories: true)
        let model = Self.fixtures + "/generate/cli_chatml/model"
        let data = Self.fixtures + "/e2e/chat.jsonl"
        let out = dir + "/out"
        let commands: [[String]] = [
            ["devices"],
            ["train", "--model", model, "--data", data, "--output-dir", out, "--max-steps", "1"],
            ["bench", "--quick"],
            ["tune"],
            ["generate", "--model", model, "--prompt", "hi", "--max-new-tokens", "1"],
        ]
        for args in commands {
            let r = try run(args, vendors: vendors)
            XCTAssertEqual(r.reason, .exit, "\(args): killed by a signal (a crash), stderr: \(r.stderr)")
            XCTAssertNotEqual(r.status, 0, "\(args)")
            for part in ["no OpenCL platform found", "pocl-opencl-icd"] {
                XCTAssertTrue(r.stderr.contains(part), "\(args): '\(part)' not in: \(r.stderr)")
            }
            XCTAssertFalse(r.stderr.contains("Fatal error"), "\(args): \(r.stderr)")
            if ProcessInfo.processInfo.environment["LORA_GPU_PRINT_ERRORS"] != nil { print("ERROR-MESSAGE \(args[0]): \(r.stderr)") }
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "train wrote into its output directory")
        // inspect checks a checkpoint on the host: it needs no device and still works.
        let r = try run(["inspect", model], vendors: vendors)
        XCTAssertEqual(r.reason, .exit)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("all present with the config's shapes"), r.stdout)
    }

    /// A kernel source with an error on its fourth line: the build error carries
    /// the device compiler's log, which names that line.
    func testBrokenKernelGivesTheBuildLogWithTheLine() throws {
        let ctx = try ComputeContext.shared()
        let source = """
            __kernel void scale(int n, __global float* x) {
                int i = get_global_id(0);
                if (i >= n) return;
                x[i] = x[i] * not_declared_anywhere;
            }
            """
        XCTAssertThrowsError(try Program(context: ctx.context, source: source, options: "-cl-std=CL1.2")) { error in
            guard case OpenCLRuntimeError.buildFailed(let device, let options, let log) = error else {
                return XCTFail("\(error)")
            }
            XCTAssertEqual(device, ctx.device.name)
            XCTAssertEqual(options, "-cl-std=CL1.2")
            let text = "\(error)"
            XCTAssertTrue(text.hasPrefix("OpenCL program build failed on \(ctx.device.name) with options '-cl-std=CL1.2':"), text)
            XCTAssertTrue(text.contains(log))
            // The compiler's diagnostic: line 4 (clang style "<source>:4:COL: error: …") and the name at fault.
            let line4 = log.split(separator: "\n").first { $0.contains(":4:") && $0.contains("error") }
            XCTAssertNotNil(line4, "no line-4 error in the build log:\n\(log)")
            XCTAssertTrue(log.contains("not_declared_anywhere"), log)
            if ProcessInfo.processInfo.environment["LORA_GPU_PRINT_ERRORS"] != nil { print("ERROR-MESSAGE: \(text)") }
        }
    }

    /// The project's kernels are built as one program of several files: the build log
    /// names the kernel file and its own line, not a line of the concatenation.
    func testBuildLogNamesTheKernelFileAndItsLine() throws {
        let ctx = try ComputeContext.shared()
        let good = "float twice(float x) {\n    return 2.0f * x;\n}\n"
        let broken = "__kernel void k(__global float* x) {\n    x[0] = twice(x[0]);\n    x[1] = missing_helper(x[1]);\n}\n"
        let source = ComputeContext.programSource([("common.cl", good), ("broken.cl", broken)])
        XCTAssertThrowsError(try Program(context: ctx.context, source: source, options: "-cl-std=CL1.2")) { error in
            guard case OpenCLRuntimeError.buildFailed(_, _, let log) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(log.contains("broken.cl:3:"), "the log should name broken.cl line 3:\n\(log)")
            XCTAssertTrue(log.contains("missing_helper"), log)
            if ProcessInfo.processInfo.environment["LORA_GPU_PRINT_ERRORS"] != nil { print("ERROR-MESSAGE: \(error)") }
        }
        // The real program still builds with the directives (the shared context above did).
        XCTAssertNoThrow(try ctx.kernel("adamw_step"))
    }
}
