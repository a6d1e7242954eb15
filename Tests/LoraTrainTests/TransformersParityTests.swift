import Foundation
import LoraModel
import LoraOps
import LoraText
import XCTest
@testable import LoraTrain

/// lora-gpu train against transformers' Trainer on the same samples, order and
/// settings (scripts/make_trainer_fixture.py): accumulation normalised over the
/// step's tokens, the schedule, HF's decay mask and clipping, composed.
final class TransformersParityTests: XCTestCase {
    func testThreeStepsMatchTransformersTrainer() throws {
        try check(gradientCheckpointing: false)
    }

    func testGradientCheckpointingChangesNothing() throws {
        try check(gradientCheckpointing: true)
    }

    func check(gradientCheckpointing: Bool) throws {
        let fx = fixturesRoot + "/trainer"
        let doc = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: fx + "/trainer.json"))) as! [String: Any]
        let settings = doc["settings"] as! [String: Any]
        let dir = try temporaryDirectory("parity")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var o: [String: Any] = ["model": fixtureModel, "data": fx + "/train.jsonl", "output_dir": dir + "/out",
                                "adapter": fixturesRoot + "/reference/llama_gqa_untied/adapter_initial",
                                "logging_steps": "1", "save_steps": "100", "val_data": fx + "/val.jsonl",
                                "per_device_eval_batch_size": "2", "eval_steps": "1",
                                "gradient_checkpointing": "\(gradientCheckpointing)"]
        for (k, v) in settings { o[k] = "\(v)" }
        let c = try TrainingConfig.resolve(file: nil, overrides: o)
        XCTAssertEqual(c.gradientAccumulationSteps, 2)
        let out = Captured()
        XCTAssertEqual(try Trainer(config: c, context: try ComputeContext.shared(), progress: out.printer(terminal: false)).run(),
                       .completed(step: 3))

        // The order the fixture used is Batching's.
        XCTAssertEqual(Batching.order(count: 12, seed: 42, epoch: 0, shuffle: true),
                       (doc["order"] as! [NSNumber]).map(\.intValue))
        let want = doc["steps"] as! [[String: Any]]
        let wantLR = (doc["learning_rates_repr"] as! [String]).map { Double($0)! }
        let got = try readLines(dir + "/out/metrics.jsonl").compactMap { MetricsRecord(json: $0) }
        XCTAssertEqual(got.count, 3)
        for (i, (g, w)) in zip(got, want).enumerated() {
            XCTAssertEqual(g.step, (w["step"] as! NSNumber).intValue)
            XCTAssertEqual(g.epoch, (w["epoch"] as! NSNumber).doubleValue, accuracy: 1e-4)
            XCTAssertEqual(g.learningRate, wantLR[i], "step \(g.step)")
            let wl = (w["loss"] as! NSNumber).doubleValue, wn = (w["grad_norm"] as! NSNumber).doubleValue
            XCTAssertEqual(g.loss, wl, accuracy: 2e-5 * wl, "loss, step \(g.step)")
            XCTAssertEqual(g.gradNorm, wn, accuracy: 1e-4 * wn, "grad_norm, step \(g.step)")
        }
        let wantEval = (doc["eval"] as! [[String: Any]]).map { ($0["eval_loss"] as! NSNumber).doubleValue }
        XCTAssertEqual(got.compactMap(\.evalLoss).count, 3)
        for (g, w) in zip(got.compactMap(\.evalLoss), wantEval) { XCTAssertEqual(g, w, accuracy: 2e-5 * w, "eval_loss") }
        let ours = try SafeTensorsFile(path: dir + "/out/adapter_model.safetensors")
        let theirs = try SafeTensorsFile(path: fx + "/adapter_final/adapter_model.safetensors")
        XCTAssertEqual(Set(ours.tensors.keys), Set(theirs.tensors.keys))
        for k in theirs.tensors.keys.sorted() {
            let a = try ours.floats(k).values, b = try theirs.floats(k).values
            let num = zip(a, b).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +).squareRoot()
            let den = max(b.map { Double($0) * Double($0) }.reduce(0, +).squareRoot(), 1e-12)
            XCTAssertLessThan(num / den, 1e-4, k)
        }
    }
}
