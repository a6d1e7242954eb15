import Foundation
import LoraModel
import LoraOps
import XCTest
@testable import LoraTrain

/// Issue 16 item 6, "one engine": the task heads go through the same checkpoints, resume and MPI
/// data parallelism as CAUSAL_LM. A run stopped and resumed ends with the bytes of an uninterrupted
/// run, head (modules_to_save) and AdamW moments included; two ranks end with the adapter of one
/// process with twice the accumulation.
final class TaskResumeTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws { dir = try temporaryDirectory("task-resume") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    /// Each task: its training lines (the CLI tests' generators) and its own settings.
    static func tasks() -> [(type: String, lines: String, extra: [String: Any])] {
        [("SEQ_CLS", SequenceClassificationCLITests.lines(20, seed: 3), [:]),
         ("TOKEN_CLS", TokenClassificationCLITests.sentences(20, seed: 4), [:]),
         ("QUESTION_ANS", SequenceClassificationCLITests.questions(16, seed: 5), ["max_seq_len": "48", "doc_stride": "8"]),
         ("FEATURE_EXTRACTION", SequenceClassificationCLITests.pairs(20, seed: 6), ["pooling": "last"])]
    }

    func testEveryTaskResumesBitIdentically() throws {
        for (task, lines, taskExtra) in Self.tasks() {
            let data = dir + "/\(task).jsonl"
            try lines.write(toFile: data, atomically: true, encoding: .utf8)
            let extra: [String: Any] = ["model": EndToEndTests.model, "task_type": task, "gradient_accumulation_steps": "2",
                                        "per_device_train_batch_size": "3", "lora_dropout": "0.1", "weight_decay": "0.01",
                                        "lr_scheduler_type": "cosine", "warmup_steps": "1", "max_steps": "4",
                                        "target_modules": ["q_proj", "v_proj", "down_proj"]].merging(taskExtra) { $1 }
            let out = Captured()
            let a = dir + "/\(task)-a", b = dir + "/\(task)-b"
            XCTAssertEqual(try Trainer(config: try smallConfig(data: data, output: a, extra), context: try ComputeContext.shared(),
                                       progress: out.printer(terminal: false)).run(), .completed(step: 4), task)
            let first = Trainer(config: try smallConfig(data: data, output: b, extra), context: try ComputeContext.shared(),
                                progress: out.printer(terminal: false))
            first.afterStep = { [unowned first] in if $0 == 2 { first.requestStop() } }
            guard case .interrupted(2, _, _) = try first.run() else { return XCTFail("\(task): expected a stop after step 2") }
            let resumed = try smallConfig(data: data, output: b, extra.merging(["resume_from_checkpoint": "latest"]) { $1 })
            XCTAssertEqual(try Trainer(config: resumed, context: try ComputeContext.shared(), progress: out.printer(terminal: false)).run(),
                           .completed(step: 4), task)
            XCTAssertTrue(out.text.contains("resumed from \(b)/checkpoint-2"), "\(task): \(out.text)")
            let adapter = try Data(contentsOf: URL(fileURLWithPath: a + "/adapter_model.safetensors"))
            XCTAssertEqual(adapter, try Data(contentsOf: URL(fileURLWithPath: b + "/adapter_model.safetensors")), "\(task): adapters differ")
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: a + "/checkpoint-4/optimizer.safetensors")),
                           try Data(contentsOf: URL(fileURLWithPath: b + "/checkpoint-4/optimizer.safetensors")), "\(task): moments differ")
            // The head is in it (a task adapter saves its head under modules_to_save; an embedder has none).
            let names = try SafeTensorsFile(path: a + "/adapter_model.safetensors").tensors.keys
            let head = ["SEQ_CLS": "score", "TOKEN_CLS": "score", "QUESTION_ANS": "qa_outputs"][task]
            if let head { XCTAssertTrue(names.contains { $0.contains(head + ".weight") }, "\(task): \(names.sorted())") }
            let la = try readLines(a + "/metrics.jsonl").compactMap { MetricsRecord(json: $0)?.loss }
            let lb = try readLines(b + "/metrics.jsonl").compactMap { MetricsRecord(json: $0)?.loss }
            XCTAssertEqual(la.count, 4, task)
            XCTAssertEqual(la, lb, task)
        }
    }
}
