import Foundation
import LoraModel
import LoraOps
import XCTest
@testable import LoraTrain

final class TrainerTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws { dir = try temporaryDirectory("trainer") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    func bytes(_ p: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: p)) }

    /// 6 steps straight vs 3, a stop (checkpoint), and 3 more resumed from it:
    /// the same adapter bytes, with dropout, NEFTune noise, accumulation and weight decay on.
    func testResumeIsBitIdentical() throws {
        let data = dir + "/train.jsonl"
        try writeSamples(data, count: 22)
        let extra: [String: Any] = ["gradient_accumulation_steps": "2", "per_device_train_batch_size": "3",
                                    "lora_dropout": "0.1", "neftune_noise_alpha": "5", "weight_decay": "0.01",
                                    "lr_scheduler_type": "cosine", "warmup_steps": "2", "max_steps": "6"]
        let out = Captured()
        let straight = Trainer(config: try smallConfig(data: data, output: dir + "/a", extra), context: try ComputeContext.shared(),
                               progress: out.printer(terminal: false))
        XCTAssertEqual(try straight.run(), .completed(step: 6))

        let first = Trainer(config: try smallConfig(data: data, output: dir + "/b", extra), context: try ComputeContext.shared(),
                            progress: out.printer(terminal: false))
        first.afterStep = { [unowned first] in if $0 == 3 { first.requestStop() } }  // unowned: no cycle (ASan run)
        guard case .interrupted(3, _, let ckpt) = try first.run() else { return XCTFail("expected a stop after step 3") }
        XCTAssertEqual(ckpt, dir + "/b/checkpoint-3")
        for f in ["adapter_model.safetensors", "adapter_config.json", "optimizer.safetensors", "trainer_state.json"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: ckpt + "/" + f), f)
        }
        let st = try Checkpoints.state(ckpt)
        XCTAssertEqual(st.globalStep, 3)
        XCTAssertEqual(st.rng.dropoutStep, 3)
        XCTAssertEqual(st.scheduler.totalSteps, 6)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/b/adapter_model.safetensors"), "no final adapter yet")

        let resumed = try smallConfig(data: data, output: dir + "/b", extra.merging(["resume_from_checkpoint": "latest"]) { _, n in n })
        XCTAssertEqual(try Trainer(config: resumed, context: try ComputeContext.shared(), progress: out.printer(terminal: false)).run(),
                       .completed(step: 6))
        XCTAssertEqual(try bytes(dir + "/a/adapter_model.safetensors"), try bytes(dir + "/b/adapter_model.safetensors"),
                       "the resumed run's adapter differs from the uninterrupted run's")
        XCTAssertEqual(try bytes(dir + "/a/checkpoint-6/optimizer.safetensors"), try bytes(dir + "/b/checkpoint-6/optimizer.safetensors"))
        // The logs agree too (timings aside).
        let la = try readLines(dir + "/a/metrics.jsonl").compactMap { MetricsRecord(json: $0) }
        let lb = try readLines(dir + "/b/metrics.jsonl").compactMap { MetricsRecord(json: $0) }
        XCTAssertEqual(la.map(\.step), [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(la.map(\.loss), lb.map(\.loss))
        XCTAssertEqual(la.map(\.learningRate), lb.map(\.learningRate))
        XCTAssertEqual(la.map(\.epoch), lb.map(\.epoch))
    }

    func testOutputDirectoryAndPlainProgress() throws {
        let data = dir + "/train.jsonl"
        try writeSamples(data, count: 10)
        let out = Captured()
        let c = try smallConfig(data: data, output: dir + "/o", ["max_steps": "4", "logging_steps": "2", "save_steps": "2",
                                                                 "val_split": "0.2", "save_total_limit": "1"])
        XCTAssertEqual(try Trainer(config: c, context: try ComputeContext.shared(), progress: out.printer(terminal: false)).run(),
                       .completed(step: 4))
        // Without a terminal: one plain line per logged step, no carriage returns.
        XCTAssertFalse(out.text.contains("\r"))
        let steps = out.text.split(separator: "\n").filter { $0.hasPrefix("step ") }
        XCTAssertEqual(steps.count, 2, out.text)
        XCTAssertTrue(steps[0].hasPrefix("step 2/4 | epoch "), String(steps[0]))
        for field in ["loss ", "grad_norm ", "lr ", "tok/s", "eval_loss "] { XCTAssertTrue(steps[1].contains(field), field) }

        let o = dir + "/o"
        let names = Set(try FileManager.default.contentsOfDirectory(atPath: o))
        for f in ["adapter_config.json", "adapter_model.safetensors", "metrics.jsonl", "loss.svg", "training_config.yaml", "README.md",
                  "checkpoint-4"] {
            XCTAssertTrue(names.contains(f), f)
        }
        XCTAssertFalse(names.contains("checkpoint-2"), "save_total_limit 1 prunes the older checkpoint")
        let recs = try readLines(o + "/metrics.jsonl")
        XCTAssertEqual(recs.count, 2)
        let first = try JSONSerialization.jsonObject(with: Data(recs[0].utf8)) as! [String: Any]
        for k in ["step", "epoch", "loss", "grad_norm", "learning_rate", "tokens_per_second", "elapsed_seconds", "eval_loss",
                  "eval_perplexity"] {
            XCTAssertNotNil(first[k], k)
        }
        let evalLoss = (first["eval_loss"] as! NSNumber).doubleValue
        XCTAssertEqual((first["eval_perplexity"] as! NSNumber).doubleValue, exp(evalLoss), accuracy: 1e-9)
        XCTAssertEqual((first["learning_rate"] as! NSNumber).doubleValue, 1e-2 * 0.75, accuracy: 1e-12,
                       "the rate step 2 used: linear over 4 steps, λ(1) = 3/4")
        let svg = try String(contentsOfFile: o + "/loss.svg", encoding: .utf8)
        XCTAssertTrue(svg.hasPrefix("<svg"))
        for s in ["train loss", "eval loss", ">step<", ">loss<", "<path"] { XCTAssertTrue(svg.contains(s), s) }
        let yaml = try String(contentsOfFile: o + "/training_config.yaml", encoding: .utf8)
        XCTAssertTrue(yaml.contains("learning_rate: 0.01"), yaml)
        XCTAssertTrue(yaml.contains("max_steps: 4"))
        let readme = try String(contentsOfFile: o + "/README.md", encoding: .utf8)
        XCTAssertTrue(readme.contains(fixtureModel))
        XCTAssertTrue(readme.contains("Final train loss"))
        XCTAssertTrue(readme.contains("Final eval loss"))
        // The adapter loads back as PEFT's.
        let saved = try LoraConfig.load(path: o + "/adapter_config.json")
        XCTAssertEqual(saved.targetModules, .allLinear)

        // A second fresh run into the same directory is refused (it would mix checkpoints).
        XCTAssertThrowsError(try Trainer(config: c, context: try ComputeContext.shared(), progress: out.printer(terminal: false)).run()) {
            XCTAssertTrue("\($0)".contains("--resume-from-checkpoint latest"), "\($0)")
        }
    }

    func testTokenizerFilesAreCopied() throws {
        let model = dir + "/model"
        try FileManager.default.copyItem(atPath: fixtureModel, toPath: model)
        for f in ["tokenizer.json", "tokenizer_config.json"] {
            try FileManager.default.copyItem(atPath: fixturesRoot + "/text/tokenizers/gpt2/" + f, toPath: model + "/" + f)
        }
        let data = dir + "/train.jsonl"
        try writeSamples(data, count: 4)
        var o: [String: Any] = ["max_steps": "1"]
        o["model"] = model
        let c = try smallConfig(data: data, output: dir + "/tok", o)
        _ = try Trainer(config: c, context: try ComputeContext.shared(), progress: Captured().printer(terminal: false)).run()
        for f in ["tokenizer.json", "tokenizer_config.json"] {
            XCTAssertEqual(try bytes(dir + "/tok/" + f), try bytes(model + "/" + f), f)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/tok/tokenizer.model"))
    }

    func testTerminalProgressBar() throws {
        let data = dir + "/train.jsonl"
        try writeSamples(data, count: 8)
        let out = Captured()
        let c = try smallConfig(data: data, output: dir + "/t", ["max_steps": "2", "logging_steps": "100"])
        _ = try Trainer(config: c, context: try ComputeContext.shared(), progress: out.printer(terminal: true)).run()
        XCTAssertTrue(out.text.contains("\r\u{1B}[K"))
        XCTAssertTrue(out.text.contains(" 1/2 | loss "), out.text)
        XCTAssertTrue(out.text.contains("ETA "))
        XCTAssertTrue(out.text.contains("tok/s"))
        // Logging every step: each bar drawn after a logged step shows that step's rate, never 0 tok/s.
        let logged = Captured()
        let every = try smallConfig(data: data, output: dir + "/t1", ["max_steps": "3", "logging_steps": "1"])
        _ = try Trainer(config: every, context: try ComputeContext.shared(), progress: logged.printer(terminal: true)).run()
        let bars = logged.text.components(separatedBy: "\r\u{1B}[K").filter { $0.contains("| ETA ") }
        XCTAssertEqual(bars.count, 3, logged.text)
        for b in bars { XCTAssertFalse(b.contains("| 0 tok/s"), b) }
    }

    func testNonFiniteLossStopsAndKeepsTheLastGoodCheckpoint() throws {
        let data = dir + "/train.jsonl"
        try writeSamples(data, count: 8)
        let c = try smallConfig(data: data, output: dir + "/n", ["learning_rate": "1e30", "max_grad_norm": "0", "save_steps": "1",
                                                                 "max_steps": "20", "per_device_train_batch_size": "8"])
        let out = Captured()
        do {
            _ = try Trainer(config: c, context: try ComputeContext.shared(), progress: out.printer(terminal: false)).run()
            XCTFail("a learning rate of 1e30 must blow up")
        } catch let TrainError.nonFinite(step, _, _, _, _, last) {
            XCTAssertGreaterThanOrEqual(step, 2)
            XCTAssertEqual(last, dir + "/n/checkpoint-\(step - 1)")
            let err = "\(TrainError.nonFinite(step: step, epoch: 0, batch: 0, loss: .nan, gradNorm: .nan, lastCheckpoint: last))"
            XCTAssertTrue(err.contains("step \(step)") && err.contains("checkpoint-\(step - 1)"), err)
            XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/n/checkpoint-\(step - 1)/adapter_model.safetensors"))
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/n/checkpoint-\(step)"))
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/n/adapter_model.safetensors"))
            // The kept checkpoint is finite.
            let f = try SafeTensorsFile(path: dir + "/n/checkpoint-\(step - 1)/adapter_model.safetensors")
            for k in f.tensors.keys { XCTAssertTrue(try f.floats(k).values.allSatisfy(\.isFinite), k) }
        }
    }

    func testSamplesWithoutTrainedLabelsAreSkippedAndCounted() throws {
        let data = dir + "/train.jsonl"
        try writeSamples(data, count: 6, untrained: [1, 4])
        let out = Captured()
        let c = try smallConfig(data: data, output: dir + "/s", ["per_device_train_batch_size": "1", "num_train_epochs": "1",
                                                                 "max_steps": "-1"])
        // 6 samples, 2 of them with no trained label: the loader drops those (never a zero-loss step), 4 optimizer steps.
        XCTAssertEqual(try Trainer(config: c, context: try ComputeContext.shared(), progress: out.printer(terminal: false)).run(),
                       .completed(step: 4))
        XCTAssertTrue(out.text.contains("(pre-tokenized): 4 samples") && out.text.contains(", 2 skipped;"), out.text)
        XCTAssertEqual(try Checkpoints.state(dir + "/s/checkpoint-4").skippedBatches, 0)
    }

    func testLoadBestModelAtEndLeavesTheBestAdapter() throws {
        let data = dir + "/train.jsonl"
        try writeSamples(data, count: 12)
        let out = Captured()
        // A learning rate this high makes the eval loss go up after a while; the best checkpoint is an early one.
        let c = try smallConfig(data: data, output: dir + "/best", ["val_split": "0.25", "max_steps": "8", "eval_steps": "2",
                                                                    "save_steps": "2", "load_best_model_at_end": "true",
                                                                    "learning_rate": "0.3", "save_total_limit": "1"])
        _ = try Trainer(config: c, context: try ComputeContext.shared(), progress: out.printer(terminal: false)).run()
        let recs = try readLines(dir + "/best/metrics.jsonl").compactMap { MetricsRecord(json: $0) }.filter { $0.evalLoss != nil }
        let best = recs.min { $0.evalLoss! < $1.evalLoss! }!
        XCTAssertTrue(out.text.contains("at step \(best.step) (checkpoint-\(best.step))"), out.text)
        XCTAssertEqual(try bytes(dir + "/best/adapter_model.safetensors"),
                       try bytes(dir + "/best/checkpoint-\(best.step)/adapter_model.safetensors"))
        // save_total_limit 1 keeps the newest checkpoint and never deletes the best.
        let kept = Checkpoints.list(dir + "/best").map(\.step)
        XCTAssertEqual(kept, best.step == 8 ? [8] : [best.step, 8])
    }

    func testEarlyStoppingAfterPatienceEvaluations() throws {
        let data = dir + "/train.jsonl"
        try writeSamples(data, count: 12)
        let out = Captured()
        // A threshold no evaluation can beat: every evaluation after the first counts against the patience.
        let c = try smallConfig(data: data, output: dir + "/es", ["val_split": "0.25", "max_steps": "20", "eval_steps": "2",
                                                                  "early_stopping_patience": "2", "early_stopping_threshold": "100"])
        XCTAssertEqual(try Trainer(config: c, context: try ComputeContext.shared(), progress: out.printer(terminal: false)).run(),
                       .stoppedEarly(step: 6))
        XCTAssertTrue(out.text.contains("early stopping at step 6"), out.text)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/es/checkpoint-6/trainer_state.json"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/es/adapter_model.safetensors"))
    }

    func testStartingFromAnExistingAdapter() throws {
        let data = dir + "/train.jsonl"
        try writeSamples(data, count: 8)
        let out = Captured()
        let first = try smallConfig(data: data, output: dir + "/first", ["max_steps": "2", "target_modules": ["q_proj", "o_proj"],
                                                                         "r": "4"])
        _ = try Trainer(config: first, context: try ComputeContext.shared(), progress: out.printer(terminal: false)).run()
        // learning_rate 0: AdamW moves nothing, so the adapter comes out as it went in.
        let again = try TrainingConfig.resolve(file: nil, overrides: [
            "model": fixtureModel, "data": data, "output_dir": dir + "/again", "max_steps": "1", "learning_rate": "0",
            "adapter": dir + "/first"])
        XCTAssertEqual(again.loraSettings().targetModules, .list(["q_proj", "o_proj"]))
        XCTAssertEqual(again.loraSettings().r, 4)
        _ = try Trainer(config: again, context: try ComputeContext.shared(), progress: out.printer(terminal: false)).run()
        XCTAssertEqual(try bytes(dir + "/first/adapter_model.safetensors"), try bytes(dir + "/again/adapter_model.safetensors"))
        // training_config.yaml shows the LoRA settings in force and reads back as a --config file.
        let back = try TrainingConfig.resolve(file: dir + "/again/training_config.yaml", overrides: [:])
        XCTAssertEqual(back.r, 4)
        XCTAssertEqual(back.targetModules, .list(["q_proj", "o_proj"]))
        XCTAssertEqual(back.adapter, dir + "/first")
    }

    /// Steps per epoch = ⌈batches / accumulation⌉ and the logged epoch as transformers count them.
    func testStepsPerEpochAndEpochFractions() throws {
        let data = dir + "/train.jsonl"
        try writeSamples(data, count: 10)  // batches of 3: 4 per epoch; accumulation 3: 2 steps per epoch
        let out = Captured()
        let c = try smallConfig(data: data, output: dir + "/e", ["per_device_train_batch_size": "3", "gradient_accumulation_steps": "3",
                                                                 "max_steps": "-1", "num_train_epochs": "2"])
        XCTAssertEqual(try Trainer(config: c, context: try ComputeContext.shared(), progress: out.printer(terminal: false)).run(),
                       .completed(step: 4))
        let recs = try readLines(dir + "/e/metrics.jsonl").compactMap { MetricsRecord(json: $0) }
        XCTAssertEqual(recs.map(\.epoch), [0.75, 1, 1.75, 2])
        let frac = try smallConfig(data: data, output: dir + "/f", ["per_device_train_batch_size": "3", "gradient_accumulation_steps": "3",
                                                                    "max_steps": "-1", "num_train_epochs": "1.5"])
        XCTAssertEqual(try Trainer(config: frac, context: try ComputeContext.shared(), progress: out.printer(terminal: false)).run(),
                       .completed(step: 3), "⌈1.5 × 2⌉ steps")
    }
}

final class SequenceLengthTests: XCTestCase {
    func testMaxSeqLenBeyondTheModelIsRefusedBeforeAnythingIsWrittenAndTheDefaultIsCapped() throws {
        let dir = try temporaryDirectory("seqlen")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let data = dir + "/train.jsonl"
        try writeSamples(data, count: 4)
        let explicit = try smallConfig(data: data, output: dir + "/x", ["max_seq_len": "4096", "max_steps": "1"])
        XCTAssertThrowsError(try Trainer(config: explicit, context: try ComputeContext.shared(),
                                         progress: Captured().printer(terminal: false)).run()) {
            XCTAssertTrue("\($0)".contains("max_seq_len") && "\($0)".contains("exceeds the model's max_position_embeddings"), "\($0)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/x"), "nothing written")
        let out = Captured()
        let capped = try smallConfig(data: data, output: dir + "/y", ["max_steps": "1"])  // default 1024
        _ = try Trainer(config: capped, context: try ComputeContext.shared(), progress: out.printer(terminal: false)).run()
        XCTAssertTrue(out.text.contains("max_seq_len 1024 capped at the model's max_position_embeddings"), out.text)
    }
}
