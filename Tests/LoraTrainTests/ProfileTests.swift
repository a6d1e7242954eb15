import Foundation
import LoraOps
import XCTest
@testable import LoraTrain

/// `lora-gpu train --profile`: device time per kernel family per step.
final class ProfileTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws { dir = try temporaryDirectory("profile") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    /// Family rows of one printed table: family → (ms per step, share %, launches per step).
    func rows(_ text: String, title: String) -> [String: (ms: Double, share: Double, launches: Double)] {
        let lines = text.split(separator: "\n").map(String.init)
        guard let start = lines.firstIndex(where: { $0.hasPrefix("profile: \(title):") }) else { return [:] }
        var d: [String: (Double, Double, Double)] = [:]
        for l in lines[(start + 1)...] {
            guard l.hasPrefix("profile:   "), !l.contains("all kernels") else { break }
            let body = l.dropFirst("profile:   ".count)
            let family = String(body.prefix(30)).trimmingCharacters(in: .whitespaces)
            let nums = body.dropFirst(30).split(separator: " ").compactMap { Double($0) }
            guard nums.count == 3 else { XCTFail("unreadable profile line: \(l)"); continue }
            d[family] = (nums[0], nums[1], nums[2])
        }
        return d
    }

    func testProfileTablesAfterThreeStepsAndAtTheEnd() throws {
        let data = dir + "/train.jsonl"
        try writeSamples(data, count: 20)
        let out = Captured()
        let ctx = try ComputeContext.shared()
        // val_split: evaluation runs between steps; its launches must not land in any step.
        let t = Trainer(config: try smallConfig(data: data, output: dir + "/o", ["max_steps": "5", "val_split": "0.2",
                                                                                 "eval_steps": "1", "lora_dropout": "0.1"]),
                        context: ctx, progress: out.printer(terminal: false))
        t.profile = true
        XCTAssertEqual(try t.run(), .completed(step: 5))
        XCTAssertFalse(ctx.profileLaunches, "profiling stays on after the run")
        XCTAssertTrue(ctx.launchEvents.isEmpty)

        let early = rows(out.text, title: "steps 1–3"), late = rows(out.text, title: "mean of steps 2–5")
        XCTAssertFalse(early.isEmpty, out.text)
        XCTAssertFalse(late.isEmpty, out.text)
        for f in ["matmul (gemm_\(ctx.config.gemm.variant.rawValue))", "attention forward", "attention backward", "cross-entropy (fwd+bwd)", "rope",
                  "rmsnorm (fwd+bwd)", "SwiGLU (fwd+bwd)", "AdamW", "embedding", "LoRA dropout"] {
            XCTAssertNotNil(late[f], "\(f) missing:\n\(out.text)")
            XCTAssertGreaterThan(late[f]?.launches ?? 0, 0, f)
        }
        for table in [early, late] {
            XCTAssertEqual(table.values.reduce(0) { $0 + $1.share }, 100, accuracy: 0.5 + 0.05 * Double(table.count))
            XCTAssertTrue(table.values.allSatisfy { $0.ms >= 0 && $0.share >= 0 })
        }
        // Every step launches the same kernels. Evaluation runs after every step: had its launches
        // leaked into the next step, steps 2–5 would each carry them and step 1 not, and the
        // per-step means of steps 1–3 and 2–5 would differ.
        XCTAssertEqual(Set(early.keys), Set(late.keys))
        for (f, e) in early { XCTAssertEqual(e.launches, late[f]?.launches ?? -1, accuracy: 1e-9, f) }
        XCTAssertTrue(out.text.contains("ms step wall time"))
        // Without the flag: no table.
        let quiet = Captured()
        let plain = Trainer(config: try smallConfig(data: data, output: dir + "/p", ["max_steps": "2"]), context: ctx,
                            progress: quiet.printer(terminal: false))
        XCTAssertEqual(try plain.run(), .completed(step: 2))
        XCTAssertFalse(quiet.text.contains("profile:"))
        XCTAssertFalse(ctx.profileLaunches)
    }

    func testFamiliesAndTable() {
        XCTAssertEqual(StepProfiler.family(of: "gemm_packed"), "matmul (gemm_packed)")
        XCTAssertEqual(StepProfiler.family(of: "attention_backward_dkv"), "attention backward")
        XCTAssertEqual(StepProfiler.family(of: "rmsnorm_backward_dw"), "rmsnorm (fwd+bwd)")
        XCTAssertEqual(StepProfiler.family(of: "swiglu_backward"), "SwiGLU (fwd+bwd)")
        XCTAssertEqual(StepProfiler.family(of: "something_new"), "something_new")
        let rows = StepProfiler.families([("gemm_packed", 3.0, 30), ("attention_backward_dq", 0.5, 2),
                                          ("attention_backward_dkv", 0.5, 2), ("rope_apply", 1.0, 4)])
        XCTAssertEqual(rows, [.init(family: "matmul (gemm_packed)", seconds: 3, launches: 30),
                              .init(family: "attention backward", seconds: 1, launches: 4),
                              .init(family: "rope", seconds: 1, launches: 4)])
        // Two steps: per-step means, shares of the kernel total, and the total against the wall time.
        let lines = StepProfiler.table(rows, steps: 2, wallSeconds: 10, title: "t")
        XCTAssertEqual(lines.count, 5)
        XCTAssertEqual(lines[0], "profile: t: device time per step by kernel family")
        XCTAssertTrue(lines[1].hasSuffix("1500.0 ms   60.0 %     15.0 launches"), lines[1])
        XCTAssertTrue(lines[4].contains("2500.0 ms of 5000.0 ms step wall time (50 %)"), lines[4])
    }
}
