import Foundation
@testable import LoraModel
import LoraOps
import OpenCLRuntime
import XCTest

/// A failed optimizer step (issue 9): a failure before the AdamW launch, or of
/// the launch itself, leaves the parameters, AdamW moments and step as they
/// were, and the next step equals the step of a run that never failed; a
/// failure after the launch says the state is lost and refuses further steps
/// until a resume restores it. Failures come from the test hook
/// `LlamaLoRAModel.injectStepFailure`.
final class StepFailureTests: XCTestCase {
    override func tearDown() { LlamaLoRAModel.injectStepFailure = nil }

    /// The fixture model with dropout on (its masks depend on the step), set up to train.
    func model() throws -> LlamaLoRAModel {
        let rc = try ReferenceCase("llama_gqa_untied")
        var lora = try LoraConfig.load(path: rc.dir + "/adapter_initial/adapter_config.json")
        lora.inferenceMode = false
        lora.loraDropout = 0.1
        let m = try LlamaLoRAModel(modelDirectory: rc.dir + "/model", lora: lora, context: try ComputeContext.shared())
        try m.loadAdapter(directory: rc.dir + "/adapter_initial")
        m.seed = 7
        return m
    }

    struct State: Equatable {
        let params: [Float], m: [Float], v: [Float], step: Int
    }

    /// Parameters and moments read from the store's flat buffers, and the step.
    func state(_ m: LlamaLoRAModel) throws -> State {
        State(params: try m.store.read(\.params), m: try m.store.read(\.m), v: try m.store.read(\.v), step: m.step)
    }

    let hyper = ComputeContext.AdamWHyper(lr: 1e-2, weightDecay: 0.01, maxGradNorm: 1)

    /// Two micro-batches per step (gradient accumulation).
    func micro() throws -> [TokenBatch] {
        let b = try ReferenceCase("llama_gqa_untied").batch
        return [b, b]
    }

    /// Steps 1…3 of a run that never fails.
    func reference() throws -> [State] {
        let m = try model()
        var out: [State] = []
        for _ in 0..<3 {
            XCTAssertTrue(try m.trainStep(try micro(), hyper: hyper).applied)
            out.append(try state(m))
        }
        return out
    }

    func testFailureBeforeTheUpdateLeavesTheStateAndTheNextStepIsTheSame() throws {
        let ref = try reference()
        for stage in [StepFailureStage.accumulation, .adamwLaunch] {
            let m = try model()
            _ = try m.trainStep(try micro(), hyper: hyper)
            XCTAssertEqual(try state(m), ref[0])
            let before = try state(m), seed = m.seed
            LlamaLoRAModel.injectStepFailure = stage
            XCTAssertThrowsError(try m.trainStep(try micro(), hyper: hyper), "\(stage)") { error in
                guard case StepError.injected = error else { return XCTFail("\(stage): \(error)") }
            }
            LlamaLoRAModel.injectStepFailure = nil
            let after = try state(m)
            XCTAssertEqual(after.step, before.step, "\(stage): step")
            XCTAssertEqual(after.params, before.params, "\(stage): parameters")
            XCTAssertEqual(after.m, before.m, "\(stage): first moments")
            XCTAssertEqual(after.v, before.v, "\(stage): second moments")
            XCTAssertEqual(m.seed, seed, "\(stage): seed")
            // The retried step and the one after it are those of the run that never failed.
            XCTAssertTrue(try m.trainStep(try micro(), hyper: hyper).applied)
            XCTAssertEqual(try state(m), ref[1], "\(stage): the retried step")
            _ = try m.trainStep(try micro(), hyper: hyper)
            XCTAssertEqual(try state(m), ref[2], "\(stage): the step after")
        }
    }

    /// The sharded (data-parallel) step shares the step counter and applyGradients: same guarantees.
    func testShardedStepFailureBeforeTheUpdateLeavesTheState() throws {
        let ref = try reference()
        let m = try model()
        let shard = try micro().enumerated().map { (index: $0.offset, batch: $0.element) }
        let tokens = shard.reduce(0) { $0 + $1.batch.countedTokens }
        let sum: ([(buffer: DeviceBuffer<Float>, count: Int)], Float) throws -> Float = { _, s in s }
        _ = try m.trainStep(shard: shard, globalTokens: tokens, hyper: hyper, reduce: sum)
        XCTAssertEqual(try state(m), ref[0])
        // A failing reduce (an MPI error, ranks that disagree) comes before the AdamW launch.
        struct ReduceFailed: Error {}
        XCTAssertThrowsError(try m.trainStep(shard: shard, globalTokens: tokens, hyper: hyper) { _, _ in throw ReduceFailed() })
        XCTAssertEqual(try state(m), ref[0])
        LlamaLoRAModel.injectStepFailure = .adamwLaunch
        XCTAssertThrowsError(try m.trainStep(shard: shard, globalTokens: tokens, hyper: hyper, reduce: sum))
        LlamaLoRAModel.injectStepFailure = .accumulation
        XCTAssertThrowsError(try m.trainStep(shard: shard, globalTokens: tokens, hyper: hyper, reduce: sum))
        LlamaLoRAModel.injectStepFailure = nil
        XCTAssertEqual(try state(m), ref[0])
        _ = try m.trainStep(shard: shard, globalTokens: tokens, hyper: hyper, reduce: sum)
        XCTAssertEqual(try state(m), ref[1])
    }

    func testFailureAfterTheLaunchSaysTheStateIsLostUntilRestored() throws {
        let ref = try reference()
        let m = try model()
        _ = try m.trainStep(try micro(), hyper: hyper)
        let saved = try state(m)
        LlamaLoRAModel.injectStepFailure = .adamwCompletion
        var message = ""
        XCTAssertThrowsError(try m.trainStep(try micro(), hyper: hyper)) { error in
            message = "\(error)"
            guard case StepError.stateLost(let lost) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(lost.step, 2)
        }
        LlamaLoRAModel.injectStepFailure = nil
        for part in ["optimizer step 2", "AdamW", "training state is lost", "resume from the last checkpoint"] {
            XCTAssertTrue(message.contains(part), "'\(message)' should mention '\(part)'")
        }
        if ProcessInfo.processInfo.environment["LORA_GPU_PRINT_ERRORS"] != nil { print("ERROR-MESSAGE: \(message)") }
        // The update did run here (the parameters moved): the step is not counted and nothing continues silently.
        XCTAssertNotEqual(try m.store.read(\.params), saved.params)
        XCTAssertEqual(m.step, saved.step)
        XCTAssertNotNil(m.store.lostState)
        for attempt in 0..<2 {
            XCTAssertThrowsError(try m.trainStep(try micro(), hyper: hyper), "attempt \(attempt)") { error in
                guard case StepError.refused(let lost) = error else { return XCTFail("\(error)") }
                XCTAssertEqual(lost.step, 2)
                XCTAssertTrue("\(error)".contains("lost at optimizer step 2"), "\(error)")
            }
        }
        let tokens = try micro().reduce(0) { $0 + $1.countedTokens }
        XCTAssertThrowsError(try m.trainStep(shard: [(index: 0, batch: try micro()[0])], globalTokens: tokens,
                                             hyper: hyper) { _, s in s })
        // A resume (parameters and moments written back, then restoreStep) ends the refusal; training goes on as before.
        try m.store.write(\.params, saved.params)
        try m.store.write(\.m, saved.m)
        try m.store.write(\.v, saved.v)
        m.restoreStep(saved.step)
        XCTAssertNil(m.store.lostState)
        _ = try m.trainStep(try micro(), hyper: hyper)
        XCTAssertEqual(try state(m), ref[1])
    }

    /// The hook is inert unless set: a run with it nil is the reference run (and steps count up).
    func testHookIsInertByDefault() throws {
        XCTAssertNil(LlamaLoRAModel.injectStepFailure)
        let ref = try reference()
        XCTAssertEqual(ref.map(\.step), [1, 2, 3])
        XCTAssertNotEqual(ref[0].params, ref[1].params)
    }
}
