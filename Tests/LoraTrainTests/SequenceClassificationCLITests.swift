import Foundation
import LoraBase
import TestSupport
import XCTest
@testable import LoraModel
@testable import LoraTrain

/// `lora-gpu train --task-type SEQ_CLS`, `predict`, `merge` and a continued run,
/// through the built binary, on the tiny ChatML fixture model (a causal
/// checkpoint: the classifier is made here) and a keyword task it can learn in
/// a few dozen steps: the text's last word says the class.
final class SequenceClassificationCLITests: XCTestCase {
    static let model = EndToEndTests.model

    /// Deterministic lines: filler words then a class word (Chinese and English).
    static func lines(_ n: Int, seed: UInt64) -> String {
        var rng = SplitMix64(seed: seed)
        let fill = ["the", "movie", "was", "food", "service", "这个", "电影", "我", "今天", "really", "quite", "and", "so"]
        let words = ["positive": ["yes", "好", "棒"], "negative": ["no", "差", "坏"]]
        var out = ""
        for _ in 0..<n {
            let label = rng.next() % 2 == 0 ? "positive" : "negative"
            let count = 2 + Int(rng.next() % 5)
            let text = (0..<count).map { _ in fill[Int(rng.next() % UInt64(fill.count))] }.joined(separator: " ")
                + " " + words[label]![Int(rng.next() % 3)]
            out += JSONValue.object(["text": .string(text), "label": .string(label)]).serialized(JSONStyle()) + "\n"
        }
        return out
    }

    func testTrainPredictMergeAndContinueAClassifier() throws {
        let dir = try temporaryDirectory("seqcls")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Self.lines(48, seed: 2).write(toFile: dir + "/train.jsonl", atomically: true, encoding: .utf8)
        try Self.lines(24, seed: 9).write(toFile: dir + "/val.jsonl", atomically: true, encoding: .utf8)
        let out = dir + "/adapter"
        let args = ["train", "--model", Self.model, "--data", dir + "/train.jsonl", "--val-data", dir + "/val.jsonl",
                    "--task-type", "SEQ_CLS", "--output-dir", out, "--max-steps", "60", "--per-device-train-batch-size", "8",
                    "--learning-rate", "2e-2", "--r", "4", "--lora-alpha", "8", "--target-modules", "all-linear",
                    "--logging-steps", "20", "--eval-steps", "20", "--save-steps", "1000", "--device", "cpu"]
        let r = try CLI.run(args)
        XCTAssertEqual(r.status, 0, r.stderr + r.stdout)
        let log = r.stdout + r.stderr
        XCTAssertTrue(log.contains("labels (single_label_classification): 0 negative, 1 positive"), log)
        XCTAssertTrue(log.contains("no pad_token_id"), log)

        // The adapter as PEFT writes a SEQ_CLS one: task_type, modules_to_save with score, the head's weight.
        let cfg = try JSONValue.read(path: out + "/adapter_config.json")
        XCTAssertEqual(cfg["task_type"]?.string, "SEQ_CLS")
        XCTAssertEqual(cfg["modules_to_save"]?.strings, ["classifier", "score"])
        let st = try SafeTensorsFile(path: out + "/adapter_model.safetensors")
        XCTAssertEqual(st.tensors["base_model.model.score.weight"]?.shape, [2, 32])
        let labels = try JSONValue.read(path: out + "/labels.json")
        XCTAssertEqual(labels["id2label"]?["1"]?.string, "positive")
        XCTAssertEqual(labels["problem_type"]?.string, "single_label_classification")
        XCTAssertTrue(try String(contentsOfFile: out + "/README.md", encoding: .utf8).contains("AutoPeftModelForSequenceClassification"))

        // Learned: validation accuracy well above chance, in metrics.jsonl.
        let records = try String(contentsOfFile: out + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
            .compactMap { MetricsRecord(json: String($0)) }
        let accuracy = try XCTUnwrap(records.last?.evalAccuracy)
        XCTAssertGreaterThanOrEqual(accuracy, 0.9, "eval accuracy after 60 steps (chance: 0.5)")
        XCTAssertNil(records.last?.evalPerplexity, "a classifier's loss has no perplexity")

        // predict: one line per input, the scores equal to the last evaluation's.
        let p = try CLI.run(["predict", "--model", Self.model, "--adapter", out, "--data", dir + "/val.jsonl", "--device", "cpu"])
        XCTAssertEqual(p.status, 0, p.stderr)
        let preds = p.stdout.split(separator: "\n").map { try? JSONValue.parse(String($0)) }
        XCTAssertEqual(preds.count, 24)
        XCTAssertEqual(preds.first??["line"]?.integral, 1)
        XCTAssertTrue(p.stderr.contains("single_label_classification: 24 labelled, accuracy \(String(format: "%.4f", accuracy))"), p.stderr)

        // A classifier does not generate; merge writes a LlamaForSequenceClassification.
        let g = try CLI.run(["generate", "--model", Self.model, "--adapter", out, "--raw-prompt", "hi", "--device", "cpu"])
        XCTAssertNotEqual(g.status, 0)
        XCTAssertTrue(g.stderr.contains("run it with `lora-gpu predict`"), g.stderr)
        let m = try CLI.run(["merge", "--model", Self.model, "--adapter", out, "--output", dir + "/merged"])
        XCTAssertEqual(m.status, 0, m.stderr)
        let merged = try ModelConfig.load(directory: dir + "/merged")
        XCTAssertEqual(merged.task.classifier?.labels, ["negative", "positive"])
        XCTAssertEqual(merged.padTokenID, labels["pad_token_id"]?.integral)

        // Continuing from the adapter keeps its labels (labels.json) even when the new data lacks a class.
        try Self.lines(48, seed: 2).split(separator: "\n").filter { $0.contains("positive") }.map { $0 + "\n" }.joined()
            .write(toFile: dir + "/only_positive.jsonl", atomically: true, encoding: .utf8)
        let c = try CLI.run(["train", "--model", Self.model, "--adapter", out, "--data", dir + "/only_positive.jsonl",
                             "--task-type", "SEQ_CLS", "--output-dir", dir + "/continued", "--max-steps", "2",
                             "--save-steps", "1000", "--device", "cpu"])
        XCTAssertEqual(c.status, 0, c.stderr + c.stdout)
        XCTAssertEqual(try JSONValue.read(path: dir + "/continued/labels.json")["id2label"]?["1"]?.string, "positive")

        // predict: a label the classifier lacks names its line (no crash); so does one of another shape.
        for (line, expected) in [(#"{"text": "a b", "label": 5}"#, "bad.jsonl:2: label does not fit the classifier's labels"),
                                 (#"{"text": "a b", "label": [1, 0]}"#, "bad.jsonl:2: label does not fit")] {
            try (#"{"text": "好"}"# + "\n" + line + "\n").write(toFile: dir + "/bad.jsonl", atomically: true, encoding: .utf8)
            let b = try CLI.run(["predict", "--model", Self.model, "--adapter", out, "--data", dir + "/bad.jsonl", "--device", "cpu"])
            XCTAssertNotEqual(b.status, 0)
            XCTAssertTrue(b.stderr.contains(expected), b.stderr)
        }
    }

    /// Regression (whole-number stars with problem_type regression) and multi-label, end to end:
    /// the loss falls, predict prints the task's score, labels.json records the kind.
    func testRegressionAndMultiLabelThroughTheCLI() throws {
        let dir = try temporaryDirectory("seqcls-kinds")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var stars = "", tags = ""
        for i in 0..<32 {
            let good = i % 2 == 0
            stars += #"{"text": "review \#(i) \#(good ? "好" : "差")", "label": \#(good ? 5 : 1)}"# + "\n"
            tags += #"{"text": "item \#(i) \#(good ? "yes" : "no")", "label": [\#(good ? 1 : 0), \#(i % 3 == 0 ? 1 : 0), 0]}"# + "\n"
        }
        try stars.write(toFile: dir + "/stars.jsonl", atomically: true, encoding: .utf8)
        try tags.write(toFile: dir + "/tags.jsonl", atomically: true, encoding: .utf8)
        for (data, extra, kind, score) in [("stars", ["--problem-type", "regression"], "regression", "MSE"),
                                           ("tags", [], "multi_label_classification", "accuracy")] {
            let out = dir + "/" + data
            let r = try CLI.run(["train", "--model", Self.model, "--data", dir + "/\(data).jsonl", "--task-type", "SEQ_CLS",
                                 "--output-dir", out, "--max-steps", "16", "--per-device-train-batch-size", "8",
                                 "--learning-rate", "2e-2", "--r", "4", "--lora-alpha", "8", "--logging-steps", "1",
                                 "--save-steps", "1000", "--device", "cpu"] + extra)
            XCTAssertEqual(r.status, 0, r.stderr + r.stdout)
            XCTAssertEqual(try JSONValue.read(path: out + "/labels.json")["problem_type"]?.string, kind)
            let losses = try String(contentsOfFile: out + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
                .compactMap { MetricsRecord(json: String($0))?.loss }
            XCTAssertLessThan(losses.last!, losses.first!, "\(kind): the loss falls")
            let p = try CLI.run(["predict", "--model", Self.model, "--adapter", out, "--data", dir + "/\(data).jsonl", "--device", "cpu"])
            XCTAssertEqual(p.status, 0, p.stderr)
            XCTAssertTrue(p.stderr.contains("\(kind): 32 labelled, \(score)"), p.stderr)
        }
        // A classifier's score as the best-model metric of a regression is refused.
        let bad = try CLI.run(["train", "--model", Self.model, "--data", dir + "/stars.jsonl", "--task-type", "SEQ_CLS",
                               "--problem-type", "regression", "--metric-for-best-model", "eval_accuracy",
                               "--output-dir", dir + "/bad", "--device", "cpu"])
        XCTAssertTrue(bad.stderr.contains("not a regression"), bad.stderr)
    }

    /// A quantized GGUF base (llama_q.gguf: Q4/Q8 blocks, its tokenizer in the metadata) trains a classifier,
    /// predicts, and merges to a *ForSequenceClassification checkpoint (transformers reads its logits
    /// within 8e-7 of predict's: NOTES.md).
    func testGGUFBase() throws {
        let dir = try temporaryDirectory("seqcls-gguf")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let gguf = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/gguf/llama_q.gguf").path
        try Self.lines(16, seed: 4).write(toFile: dir + "/t.jsonl", atomically: true, encoding: .utf8)
        let r = try CLI.run(["train", "--model", gguf, "--data", dir + "/t.jsonl", "--task-type", "SEQ_CLS",
                             "--output-dir", dir + "/a", "--max-steps", "2", "--save-steps", "1000", "--device", "cpu"])
        XCTAssertEqual(r.status, 0, r.stderr + r.stdout)
        let p = try CLI.run(["predict", "--model", gguf, "--adapter", dir + "/a", "--data", dir + "/t.jsonl", "--device", "cpu"])
        XCTAssertEqual(p.status, 0, p.stderr)
        XCTAssertEqual(p.stdout.split(separator: "\n").count, 16)
        let m = try CLI.run(["merge", "--model", gguf, "--adapter", dir + "/a", "--output", dir + "/merged"])
        XCTAssertEqual(m.status, 0, m.stderr)
        XCTAssertEqual(try ModelConfig.load(directory: dir + "/merged").task.sequenceClassifier?.labels, ["negative", "positive"])
    }

    /// Deterministic QA lines: filler words, then "code is X", then more filler; the question asks for X.
    static func questions(_ n: Int, seed: UInt64) -> String {
        var rng = SplitMix64(seed: seed)
        let fill = ["the", "movie", "was", "food", "service", "这个", "电影", "我", "今天", "really", "quite", "and", "so"]
        let keys = ["apple", "river", "stone", "猫", "山", "green"]
        func words() -> String { (0..<(2 + Int(rng.next() % 6))).map { _ in fill[Int(rng.next() % UInt64(fill.count))] }.joined(separator: " ") }
        var out = ""
        for i in 0..<n {
            let pre = words() + " code is ", key = keys[Int(rng.next() % UInt64(keys.count))]
            let o: [String: JSONValue] = ["id": .string("q\(i)"), "question": .string("what is the code?"),
                                          "context": .string(pre + key + " " + words()),
                                          "answers": .object(["text": .array([.string(key)]),
                                                              "answer_start": .array([.int(pre.unicodeScalars.count)])])]
            out += JSONValue.object(OrderedMap(o.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })).serialized(JSONStyle()) + "\n"
        }
        return out
    }

    /// QUESTION_ANS from the CLI on the tiny causal fixture (qa_outputs made here): SQuAD-shaped lines,
    /// exact match rising well above the untrained head's, the adapter as PEFT writes a QA one, `predict`
    /// scoring as evaluation did, `merge` writing the *ForQuestionAnswering names ("transformer." trunk).
    /// (PEFT and transformers on the adapter and the merge: scripts/check_peft_classifiers.py, NOTES.md.)
    func testTrainPredictAndMergeExtractiveQA() throws {
        let dir = try temporaryDirectory("qa")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Self.questions(64, seed: 1).write(toFile: dir + "/train.jsonl", atomically: true, encoding: .utf8)
        try Self.questions(24, seed: 2).write(toFile: dir + "/val.jsonl", atomically: true, encoding: .utf8)
        let out = dir + "/adapter"
        let r = try CLI.run(["train", "--model", Self.model, "--data", dir + "/train.jsonl", "--val-data", dir + "/val.jsonl",
                             "--task-type", "QUESTION_ANS", "--output-dir", out, "--max-steps", "60", "--per-device-train-batch-size", "8",
                             "--learning-rate", "2e-2", "--r", "4", "--lora-alpha", "8", "--target-modules", "all-linear",
                             "--logging-steps", "20", "--eval-steps", "20", "--save-steps", "1000", "--eval-on-start", "--device", "cpu"])
        XCTAssertEqual(r.status, 0, r.stderr + r.stdout)
        let log = r.stdout + r.stderr
        XCTAssertTrue(log.contains("64 questions, 64 windows (64 holding the answer), 0 unanswerable"), log)
        XCTAssertTrue(log.contains("doc_stride 128 (the default) set to 42"), log)
        let before = try XCTUnwrap(log.components(separatedBy: "before training:").last?.components(separatedBy: "eval_exact_match ")
            .dropFirst().first.flatMap { Double($0.prefix(while: { $0 != " " })) })
        let records = try String(contentsOfFile: out + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
            .compactMap { MetricsRecord(json: String($0)) }
        let after = try XCTUnwrap(records.last?.evalExactMatch)
        XCTAssertLessThan(before, 20, log)
        XCTAssertGreaterThan(after, 40, log)
        let cfg = try JSONValue.read(path: out + "/adapter_config.json")
        XCTAssertEqual(cfg["task_type"]?.string, "QUESTION_ANS")
        XCTAssertEqual(cfg["modules_to_save"]?.strings, ["qa_outputs"])
        let st = try SafeTensorsFile(path: out + "/adapter_model.safetensors")
        XCTAssertEqual(st.tensors["base_model.model.qa_outputs.weight"]?.shape, [2, 32])
        XCTAssertNotNil(st.tensors["base_model.model.transformer.layers.0.self_attn.q_proj.lora_A.weight"])
        XCTAssertTrue(try String(contentsOfFile: out + "/README.md", encoding: .utf8).contains("AutoPeftModelForQuestionAnswering"))

        // --adapter continues from it, qa_outputs included: the first evaluation is the last one's.
        let cont = try CLI.run(["train", "--model", Self.model, "--data", dir + "/train.jsonl", "--val-data", dir + "/val.jsonl",
                                "--task-type", "QUESTION_ANS", "--adapter", out, "--output-dir", dir + "/cont", "--max-steps", "1",
                                "--learning-rate", "0", "--save-steps", "1000", "--eval-on-start", "--device", "cpu"])
        XCTAssertEqual(cont.status, 0, cont.stderr)
        let last = try XCTUnwrap(records.last)
        XCTAssertTrue((cont.stdout + cont.stderr).contains(String(format: "before training: eval_loss %.4f | eval_exact_match %.2f",
                                                                  try XCTUnwrap(last.evalLoss), after)), cont.stdout + cont.stderr)

        // predict: the answers evaluation picked, scored the same.
        let p = try CLI.run(["predict", "--model", Self.model, "--adapter", out, "--data", dir + "/val.jsonl", "--device", "cpu"])
        XCTAssertEqual(p.status, 0, p.stderr)
        let answers = p.stdout.split(separator: "\n").compactMap { try? JSONValue.parse(Data($0.utf8)) }
        XCTAssertEqual(answers.count, 24)
        XCTAssertNotNil(answers.first?["prediction_text"]?.string)
        XCTAssertTrue(p.stderr.contains("exact match " + String(format: "%.2f", after)), p.stderr)
        let m = try CLI.run(["merge", "--model", Self.model, "--adapter", out, "--output", dir + "/merged"])
        XCTAssertEqual(m.status, 0, m.stderr)
        let names = Set(try SafeTensorsFile(path: dir + "/merged/model.safetensors").tensors.keys)
        XCTAssertTrue(names.contains("qa_outputs.weight") && names.contains("qa_outputs.bias"))
        XCTAssertTrue(names.contains("transformer.layers.0.self_attn.q_proj.weight"))
        XCTAssertFalse(names.contains { $0.hasPrefix("model.") })
        XCTAssertEqual(try ModelConfig.load(directory: dir + "/merged").task, .questionAnswering(inCheckpoint: true))

        // Refusals name the setting.
        for (extra, expected) in [(["--packing"], "packing is not available with task_type QUESTION_ANS"),
                                  (["--doc-stride", "200"], "doc_stride: 200 must be below max_seq_len")] {
            let t = try CLI.run(["train", "--model", Self.model, "--data", dir + "/train.jsonl", "--task-type", "QUESTION_ANS",
                                 "--output-dir", dir + "/x", "--max-steps", "1", "--device", "cpu"] + extra)
            XCTAssertNotEqual(t.status, 0)
            XCTAssertTrue(t.stderr.contains(expected), t.stderr)
        }
        let v2 = try CLI.run(["train", "--model", Self.model, "--data", dir + "/train.jsonl", "--version-2-with-negative",
                              "--output-dir", dir + "/y", "--max-steps", "1", "--device", "cpu"])
        XCTAssertTrue(v2.stderr.contains("version_2_with_negative: an extractive-QA setting"), v2.stderr)
    }

    /// Deterministic contrastive lines: FAQ-style questions (English and Chinese) and their answers, with a
    /// hard negative from another topic.
    static func pairs(_ n: Int, seed: UInt64) -> String {
        var rng = SplitMix64(seed: seed)
        let topics: [(q: [String], a: String)] = [
            (["reset password", "forgot password", "密码 重置"], "open settings and click forgot password"),
            (["money back", "refund order", "退款 申请"], "refunds are paid within five days"),
            (["track parcel", "shipping cost", "快递 物流"], "parcels arrive in three days"),
            (["delete account", "close profile", "注销 账号"], "accounts can be deleted in the profile page")]
        let tails = ["please", "help", "how", "?", "急"]
        var out = ""
        for _ in 0..<n {
            let t = Int(rng.next() % 4), other = (t + 1 + Int(rng.next() % 3)) % 4
            let q = topics[t].q[Int(rng.next() % 3)] + " " + tails[Int(rng.next() % 5)]
            let o: [(String, JSONValue)] = [("anchor", .string(q)), ("positive", .string(topics[t].a)),
                                            ("negative", .string(topics[other].a))]
            out += JSONValue.object(OrderedMap(o)).serialized(JSONStyle()) + "\n"
        }
        return out
    }

    /// FEATURE_EXTRACTION from the CLI: contrastive training on (anchor, positive, negative) lines raises the
    /// validation set's retrieval accuracy@1; the adapter is PEFT's FEATURE_EXTRACTION one (AutoModel's names),
    /// `embed` runs it, `merge` keeps the causal names and gives the same vectors. (PEFT on them:
    /// scripts/check_peft_classifiers.py; the loss and gradients: ContrastiveParityTests.)
    func testTrainEmbedAndMergeAnEmbedder() throws {
        let dir = try temporaryDirectory("fe")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Self.pairs(64, seed: 5).write(toFile: dir + "/train.jsonl", atomically: true, encoding: .utf8)
        try Self.pairs(16, seed: 6).write(toFile: dir + "/val.jsonl", atomically: true, encoding: .utf8)
        let out = dir + "/adapter"
        let r = try CLI.run(["train", "--model", Self.model, "--data", dir + "/train.jsonl", "--val-data", dir + "/val.jsonl",
                             "--task-type", "FEATURE_EXTRACTION", "--output-dir", out, "--max-steps", "20",
                             "--per-device-train-batch-size", "8", "--learning-rate", "2e-2", "--r", "4", "--lora-alpha", "8",
                             "--target-modules", "all-linear", "--logging-steps", "10", "--eval-steps", "10", "--save-steps", "1000",
                             "--eval-on-start", "--device", "cpu"])
        XCTAssertEqual(r.status, 0, r.stderr + r.stdout)
        let log = r.stdout + r.stderr
        XCTAssertTrue(log.contains("64 anchors with a positive and a hard negative each"), log)
        let before = try XCTUnwrap(log.components(separatedBy: "before training:").last?.components(separatedBy: "eval_accuracy ")
            .dropFirst().first.flatMap { Double($0.prefix(while: { $0 != "\n" && $0 != " " })) })
        let records = try String(contentsOfFile: out + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
            .compactMap { MetricsRecord(json: String($0)) }
        let after = try XCTUnwrap(records.last?.evalAccuracy)
        XCTAssertGreaterThanOrEqual(after - before, 0.25, log)
        XCTAssertGreaterThanOrEqual(after, 0.8, log)
        let cfg = try JSONValue.read(path: out + "/adapter_config.json")
        XCTAssertEqual(cfg["task_type"]?.string, "FEATURE_EXTRACTION")
        let st = try SafeTensorsFile(path: out + "/adapter_model.safetensors")
        XCTAssertNotNil(st.tensors["base_model.model.layers.0.self_attn.q_proj.lora_A.weight"])
        XCTAssertFalse(st.tensors.keys.contains { $0.contains("lm_head") || $0.contains(".model.model.") })
        XCTAssertTrue(try String(contentsOfFile: out + "/README.md", encoding: .utf8).contains("AutoPeftModelForFeatureExtraction"))

        try "{\"text\": \"reset password please\"}\n{\"text\": \"退款 申请 急\"}\n".write(toFile: dir + "/texts.jsonl", atomically: true, encoding: .utf8)
        // --adapter continues from it: the first evaluation is the last one's.
        let cont = try CLI.run(["train", "--model", Self.model, "--data", dir + "/train.jsonl", "--val-data", dir + "/val.jsonl",
                                "--task-type", "FEATURE_EXTRACTION", "--adapter", out, "--output-dir", dir + "/cont", "--max-steps", "1",
                                "--learning-rate", "0", "--save-steps", "1000", "--eval-on-start", "--device", "cpu"])
        XCTAssertEqual(cont.status, 0, cont.stderr)
        XCTAssertTrue((cont.stdout + cont.stderr).contains(String(format: "before training: eval_loss %.4f | eval_accuracy %.4f",
                                                                  try XCTUnwrap(records.last?.evalLoss), after)),
                      cont.stdout + cont.stderr)

        // Without --pooling: the adapter's own (mean, from its training_config.yaml), as trained.
        let e1 = try CLI.run(["embed", "--model", Self.model, "--adapter", out, "--data", dir + "/texts.jsonl", "--normalize", "--device", "cpu"])
        XCTAssertEqual(e1.status, 0, e1.stderr)
        let m = try CLI.run(["merge", "--model", Self.model, "--adapter", out, "--output", dir + "/merged"])
        XCTAssertEqual(m.status, 0, m.stderr)
        let e2 = try CLI.run(["embed", "--model", dir + "/merged", "--data", dir + "/texts.jsonl", "--pooling", "mean", "--normalize",
                              "--device", "cpu"])
        XCTAssertEqual(e2.status, 0, e2.stderr)
        func vectors(_ s: String) -> [[Double]] {
            s.split(separator: "\n").compactMap { try? JSONValue.parse(Data($0.utf8)) }.map { $0["embedding"]!.array!.map { $0.double! } }
        }
        let (v1, v2) = (vectors(e1.stdout), vectors(e2.stdout))
        XCTAssertEqual(v1.count, 2)
        XCTAssertEqual(v1.count, v2.count)
        for (a, b) in zip(v1, v2) { XCTAssertLessThan(zip(a, b).map { abs($0 - $1) }.max()!, 1e-5, "merged vs adapter vectors") }

        // Refusals name the setting or the line.
        for (extra, expected) in [(["--packing"], "packing is not available with task_type FEATURE_EXTRACTION"),
                                  (["--temperature", "0"], "temperature: must be a positive number")] {
            let t = try CLI.run(["train", "--model", Self.model, "--data", dir + "/train.jsonl", "--task-type", "FEATURE_EXTRACTION",
                                 "--output-dir", dir + "/x", "--max-steps", "1", "--device", "cpu"] + extra)
            XCTAssertNotEqual(t.status, 0)
            XCTAssertTrue(t.stderr.contains(expected), t.stderr)
        }
        let p = try CLI.run(["train", "--model", Self.model, "--data", dir + "/train.jsonl", "--pooling", "last",
                             "--output-dir", dir + "/y", "--max-steps", "1", "--device", "cpu"])
        XCTAssertNotEqual(p.status, 0)
        XCTAssertTrue(p.stderr.contains("pooling: a contrastive (embedding) setting: it needs task_type FEATURE_EXTRACTION"), p.stderr)
        try "{\"anchor\": \"a\", \"positive\": \"b\", \"negative\": \"c\"}\n{\"anchor\": \"a\", \"positive\": \"b\"}\n"
            .write(toFile: dir + "/mixed.jsonl", atomically: true, encoding: .utf8)
        let mixed = try CLI.run(["train", "--model", Self.model, "--data", dir + "/mixed.jsonl", "--task-type", "FEATURE_EXTRACTION",
                                 "--output-dir", dir + "/z", "--max-steps", "1", "--device", "cpu"])
        XCTAssertTrue(mixed.stderr.contains("mixed.jsonl:2: no \"negative\" here, one on line 1"), mixed.stderr)
        try "{\"query\": \"a\", \"positive\": \"b\"}\n".write(toFile: dir + "/bad.jsonl", atomically: true, encoding: .utf8)
        let bad = try CLI.run(["train", "--model", Self.model, "--data", dir + "/bad.jsonl", "--task-type", "FEATURE_EXTRACTION",
                               "--output-dir", dir + "/w", "--max-steps", "1", "--device", "cpu"])
        XCTAssertTrue(bad.stderr.contains("bad.jsonl:1: a contrastive line is {\"anchor\""), bad.stderr)
    }

    func testBadClassificationLinesNameTheLine() throws {
        let dir = try temporaryDirectory("seqcls-bad")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cases: [(String, String)] = [
            ("{\"text\": \"a\", \"label\": \"x\"}\n{\"text\": \"b\"}\n", "train.jsonl:2: no \"label\""),
            ("{\"text\": \"a\", \"label\": \"x\"}\n{\"text\": \"b\", \"label\": 1}\n", "train.jsonl:2: label a class id, but"),
            ("{\"text\": \"a\", \"label\": \"x\"}\n{\"text\": \"b\", \"label\": \"x\"}\n", "a classifier needs at least two classes"),
            ("{\"text\": \"a\", \"label\": [1, 0]}\n{\"text\": \"b\", \"label\": [1]}\n", "train.jsonl:2: label a list of 1 numbers"),
        ]
        for (data, expected) in cases {
            try data.write(toFile: dir + "/train.jsonl", atomically: true, encoding: .utf8)
            let r = try CLI.run(["train", "--model", Self.model, "--data", dir + "/train.jsonl", "--task-type", "SEQ_CLS",
                                 "--output-dir", dir + "/out", "--max-steps", "1", "--device", "cpu"])
            XCTAssertNotEqual(r.status, 0)
            XCTAssertTrue(r.stderr.contains(expected), "expected \(expected.debugDescription) in: \(r.stderr)")
        }
        let packed = try CLI.run(["train", "--model", Self.model, "--data", dir + "/train.jsonl", "--task-type", "SEQ_CLS",
                                  "--packing", "--output-dir", dir + "/out2", "--max-steps", "1", "--device", "cpu"])
        XCTAssertTrue(packed.stderr.contains("packing is not available with task_type SEQ_CLS"), packed.stderr)
    }
}

/// `lora-gpu train --task-type TOKEN_CLS`, `predict` and `merge` through the built
/// binary on the tiny ChatML fixture model: person and place names tagged in
/// Chinese and English sentences, learned in a few dozen steps.
final class TokenClassificationCLITests: XCTestCase {
    static let model = EndToEndTests.model

    static func sentences(_ n: Int, seed: UInt64) -> String {
        var rng = SplitMix64(seed: seed)
        func pick<T>(_ a: [T]) -> T { a[Int(rng.next() % UInt64(a.count))] }
        let people = [["张", "三"], ["李", "四"], ["John"], ["Mary"], ["Wang", "Wei"]]
        let places = [["北", "京"], ["上", "海"], ["London"], ["New", "York"]]
        var out = ""
        for _ in 0..<n {
            let p = pick(people), l = pick(places)
            let chinese = rng.next() % 2 == 0
            let middle = chinese ? ["在"] : ["lives", "in"], end = chinese ? ["工", "作", "。"] : ["."]
            let words = p + middle + l + end
            let tags = ["B-PER"] + Array(repeating: "I-PER", count: p.count - 1) + middle.map { _ in "O" }
                + ["B-LOC"] + Array(repeating: "I-LOC", count: l.count - 1) + end.map { _ in "O" }
            out += JSONValue.object(["tokens": .array(words.map { .string($0) }), "tags": .array(tags.map { .string($0) })])
                .serialized(JSONStyle()) + "\n"
        }
        return out
    }

    func testTrainPredictAndMergeATagger() throws {
        let dir = try temporaryDirectory("tokcls")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Self.sentences(48, seed: 5).write(toFile: dir + "/train.jsonl", atomically: true, encoding: .utf8)
        try Self.sentences(16, seed: 6).write(toFile: dir + "/val.jsonl", atomically: true, encoding: .utf8)
        let out = dir + "/adapter"
        let r = try CLI.run(["train", "--model", Self.model, "--data", dir + "/train.jsonl", "--val-data", dir + "/val.jsonl",
                             "--task-type", "TOKEN_CLS", "--output-dir", out, "--max-steps", "40",
                             "--per-device-train-batch-size", "8", "--learning-rate", "2e-2", "--r", "4", "--lora-alpha", "8",
                             "--target-modules", "all-linear", "--logging-steps", "10", "--eval-steps", "10",
                             "--save-steps", "1000", "--eval-on-start", "--device", "cpu"])
        XCTAssertEqual(r.status, 0, r.stderr + r.stdout)
        let log = r.stdout + r.stderr
        XCTAssertTrue(log.contains("tags: 0 B-LOC, 1 B-PER, 2 I-LOC, 3 I-PER, 4 O"), log)
        XCTAssertTrue(log.contains("before training: eval_loss"), log)
        let cfg = try JSONValue.read(path: out + "/adapter_config.json")
        XCTAssertEqual(cfg["task_type"]?.string, "TOKEN_CLS")
        // all-linear spelled out (without score), as PEFT can load it for a token classifier.
        XCTAssertEqual(Set(cfg["target_modules"]?.strings ?? []), ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
        XCTAssertEqual(cfg["modules_to_save"]?.strings, ["classifier", "score"])
        let st = try SafeTensorsFile(path: out + "/adapter_model.safetensors")
        XCTAssertEqual(st.tensors["base_model.model.score.weight"]?.shape, [5, 32])
        XCTAssertEqual(st.tensors["base_model.model.score.bias"]?.shape, [5])
        XCTAssertEqual(try JSONValue.read(path: out + "/labels.json")["classifier_dropout"]?.double, 0.1)
        XCTAssertTrue(try String(contentsOfFile: out + "/README.md", encoding: .utf8).contains("AutoPeftModelForTokenClassification"))

        let records = try String(contentsOfFile: out + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
            .compactMap { MetricsRecord(json: String($0)) }
        let f1 = try XCTUnwrap(records.last?.evalF1)
        XCTAssertGreaterThanOrEqual(f1, 0.8, "entity F1 after 40 steps")

        let p = try CLI.run(["predict", "--model", Self.model, "--adapter", out, "--data", dir + "/val.jsonl", "--device", "cpu"])
        XCTAssertEqual(p.status, 0, p.stderr)
        let first = try JSONValue.parse(String(p.stdout.split(separator: "\n")[0]))
        let valFirst = try JSONValue.parse(String(Self.sentences(16, seed: 6).split(separator: "\n")[0]))
        XCTAssertEqual(first["prediction"]?.array?.count, valFirst["tokens"]?.array?.count, "a tag per input word")
        XCTAssertTrue(p.stderr.contains("token_classification: 16 labelled") && p.stderr.contains("F1 \(String(format: "%.4f", f1))"),
                      p.stderr)

        // A word that gives no token, an untrained word (-100), and a line cut by --max-seq-len: still a
        // prediction entry per word (null where there is none), the truncation said.
        try (#"{"tokens": ["张", "", "三"], "ner_tags": [1, 4, -100]}"# + "\n"
             + #"{"tokens": ["John", "lives", "in", "New", "York", "."], "tags": ["B-PER", "O", "O", "B-LOC", "I-LOC", "O"]}"# + "\n")
            .write(toFile: dir + "/edge.jsonl", atomically: true, encoding: .utf8)
        let e = try CLI.run(["predict", "--model", Self.model, "--adapter", out, "--data", dir + "/edge.jsonl",
                             "--max-seq-len", "6", "--device", "cpu"])
        XCTAssertEqual(e.status, 0, e.stderr)
        let edge = try e.stdout.split(separator: "\n").map { try JSONValue.parse(String($0)) }
        XCTAssertEqual(edge[0]["prediction"]?.array?.count, 3)
        XCTAssertEqual(edge[0]["prediction"]?.array?[1], .null, "the empty word has no prediction")
        XCTAssertEqual(edge[0]["label"]?.array?[2], .null, "-100: no true tag")
        XCTAssertEqual(edge[1]["prediction"]?.array?.count, 6)
        XCTAssertEqual(edge[1]["truncated"], .bool(true))
        XCTAssertEqual(edge[1]["prediction"]?.array?.last, .null, "the cut words have no prediction")
        XCTAssertTrue(e.stderr.contains("1 line(s) truncated at 6 tokens"), e.stderr)

        let m = try CLI.run(["merge", "--model", Self.model, "--adapter", out, "--output", dir + "/merged"])
        XCTAssertEqual(m.status, 0, m.stderr)
        let merged = try ModelConfig.load(directory: dir + "/merged")
        XCTAssertEqual(merged.task.tokenClassifier?.labels, ["B-LOC", "B-PER", "I-LOC", "I-PER", "O"])
        // A classifier checkpoint whose names are LABEL_k takes the names training wrote in labels.json.
        var generic = try JSONValue.read(path: dir + "/merged/config.json").object!
        generic["id2label"] = .object(OrderedMap((0..<5).map { (String($0), JSONValue.string("LABEL_\($0)")) }))
        generic["label2id"] = .object(OrderedMap((0..<5).map { ("LABEL_\($0)", JSONValue.int($0)) }))
        let genericConfig = try ModelConfig.parse(object: generic, path: "config.json")
        XCTAssertEqual(genericConfig.task.tokenClassifier?.labels.first, "LABEL_0")
        let named = try genericConfig.forAdapter(out, lora: try LoraConfig.load(path: out), basePath: "merged")
        XCTAssertEqual(named.task.tokenClassifier?.labels, ["B-LOC", "B-PER", "I-LOC", "I-PER", "O"])
        // score as a LoRA target is refused: it is trained in full.
        let t = try CLI.run(["train", "--model", Self.model, "--data", dir + "/train.jsonl", "--task-type", "TOKEN_CLS",
                             "--target-modules", "q_proj,score", "--output-dir", dir + "/bad", "--device", "cpu"])
        XCTAssertTrue(t.stderr.contains("target_modules: 'score' is the TOKEN_CLS head"), t.stderr)
        XCTAssertTrue(try SafeTensorsFile(path: dir + "/merged/model.safetensors").tensors["score.bias"] != nil)
    }

    func testBadTaggingLinesNameTheLine() throws {
        let dir = try temporaryDirectory("tokcls-bad")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let good = #"{"tokens": ["a", "b"], "tags": ["B-X", "O"]}"#
        let cases: [(String, String)] = [
            (#"{"tokens": ["a", "b"], "tags": ["O"]}"#, #"train.jsonl:2: "tags" has 1 entries for 2 tokens: a tag per word"#),
            (#"{"text": "a b"}"#, #"train.jsonl:2: no "tokens""#),
            (#"{"tokens": ["a"], "tags": [1]}"#, "tag names here, class ids at"),
            (#"{"tokens": ["a", 3], "tags": ["O", "O"]}"#, #""tokens" must be a non-empty list of strings"#),
            (#"{"input_ids": [1, 2], "labels": [0]}"#, #""labels" has 1 entries for 2 input_ids"#),
        ]
        for (bad, expected) in cases {
            try (good + "\n" + bad + "\n").write(toFile: dir + "/train.jsonl", atomically: true, encoding: .utf8)
            let r = try CLI.run(["train", "--model", Self.model, "--data", dir + "/train.jsonl", "--task-type", "TOKEN_CLS",
                                 "--output-dir", dir + "/out", "--max-steps", "1", "--device", "cpu"])
            XCTAssertNotEqual(r.status, 0)
            XCTAssertTrue(r.stderr.contains(expected), "expected \(expected.debugDescription) in: \(r.stderr)")
        }
    }
}

/// `lora-gpu embed`: JSONL and .npy outputs agree, --normalize gives unit vectors,
/// pre-tokenized lines, bad lines named (the vectors themselves are checked
/// against transformers + PEFT by PoolingTests and scripts/check_peft_classifiers.py).
final class EmbedCLITests: XCTestCase {
    func testJSONLAndNpyOutputs() throws {
        let dir = try temporaryDirectory("embed")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "{\"text\": \"hello world\"}\n{\"text\": \"你好，世界\"}\n{\"input_ids\": [5, 6, 7]}\n"
            .write(toFile: dir + "/t.jsonl", atomically: true, encoding: .utf8)
        let model = EndToEndTests.model
        let j = try CLI.run(["embed", "--model", model, "--data", dir + "/t.jsonl", "--normalize", "--pooling", "mean", "--device", "cpu"])
        XCTAssertEqual(j.status, 0, j.stderr)
        let rows = try j.stdout.split(separator: "\n").map { try JSONValue.parse(String($0)) }
        XCTAssertEqual(rows.map { $0["line"]?.integral }, [1, 2, 3])
        let vectors = rows.map { $0["embedding"]!.array!.map { Float($0.double!) } }
        XCTAssertEqual(vectors[0].count, 32)
        for v in vectors { XCTAssertEqual(v.reduce(0) { $0 + Double($1 * $1) }.squareRoot(), 1, accuracy: 1e-5) }
        let n = try CLI.run(["embed", "--model", model, "--data", dir + "/t.jsonl", "--normalize", "--pooling", "mean",
                             "--output", dir + "/v.npy", "--device", "cpu"])
        XCTAssertEqual(n.status, 0, n.stderr)
        let npy = try Data(contentsOf: URL(fileURLWithPath: dir + "/v.npy"))
        XCTAssertEqual(Array(npy.prefix(8)), [0x93] + Array("NUMPY".utf8) + [1, 0])
        let headerLength = Int(npy[8]) | Int(npy[9]) << 8
        XCTAssertEqual((10 + headerLength) % 64, 0, "the data is 64-byte aligned")
        let header = String(decoding: npy[10..<(10 + headerLength)], as: UTF8.self)
        XCTAssertTrue(header.contains("'descr': '<f4'") && header.contains("'shape': (3, 32)"), header)
        let floats = npy[(10 + headerLength)...].withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        XCTAssertEqual(floats, vectors.flatMap { $0 })
        try "{\"text\": \"a\"}\n{\"prompt\": \"b\"}\n".write(toFile: dir + "/bad.jsonl", atomically: true, encoding: .utf8)
        let bad = try CLI.run(["embed", "--model", model, "--data", dir + "/bad.jsonl", "--device", "cpu"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("bad.jsonl:2: no \"text\""), bad.stderr)
    }
}

/// `data preview --task-type`: a classifier's samples as training reads them; the
/// causal path says when lines look like a classifier's.
final class ClassifierPreviewCLITests: XCTestCase {
    func testPreviewShowsLabelsAndHints() throws {
        let dir = try temporaryDirectory("cls-preview")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = EndToEndTests.model
        try "{\"text\": \"good film\", \"label\": \"pos\"}\n{\"text\": \"bad film\", \"label\": \"neg\"}\n"
            .write(toFile: dir + "/s.jsonl", atomically: true, encoding: .utf8)
        try "{\"tokens\": [\"张\", \"三\", \"在\"], \"tags\": [\"B-PER\", \"I-PER\", \"O\"]}\n"
            .write(toFile: dir + "/t.jsonl", atomically: true, encoding: .utf8)
        let s = try CLI.run(["data", "preview", "--tokenizer", model, "--data", dir + "/s.jsonl", "--task-type", "SEQ_CLS"])
        XCTAssertEqual(s.status, 0, s.stderr)
        XCTAssertTrue(s.stdout.contains("── line 1: ") && s.stdout.contains("→ pos") && s.stdout.contains("«good film»"), s.stdout)
        XCTAssertTrue(s.stdout.contains("  0 neg: 1\n  1 pos: 1"), s.stdout)
        let t = try CLI.run(["data", "preview", "--tokenizer", model, "--data", dir + "/t.jsonl", "--task-type", "TOKEN_CLS", "--json"])
        XCTAssertEqual(t.status, 0, t.stderr)
        let j = try JSONValue.parse(String(t.stdout.split(separator: "\n")[0]))
        XCTAssertEqual(j["input_ids"]?.array?.count, j["labels"]?.array?.count)
        XCTAssertEqual(j["labels"]?.array?.filter { ($0.integral ?? -100) >= 0 }.count, 3, "one label per word")
        let causal = try CLI.run(["data", "preview", "--tokenizer", model, "--data", dir + "/s.jsonl"])
        XCTAssertTrue(causal.stdout.contains("a classifier is trained with --task-type SEQ_CLS"), causal.stdout)
        let tagsAsText = try CLI.run(["data", "preview", "--tokenizer", model, "--data", dir + "/t.jsonl"])
        XCTAssertTrue(tagsAsText.stderr.contains("train it with --task-type TOKEN_CLS"), tagsAsText.stderr)
    }
}
