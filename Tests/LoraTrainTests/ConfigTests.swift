import Foundation
import LoraModel
import XCTest
@testable import LoraTrain

final class ConfigTests: XCTestCase {
    func testDefaultsAreTransformersAndPEFTs() {
        let c = TrainingConfig()
        XCTAssertEqual(c.learningRate, 5e-5)
        XCTAssertEqual(c.lrSchedulerType, .linear)
        XCTAssertEqual(c.weightDecay, 0)
        XCTAssertEqual([c.adamBeta1, c.adamBeta2, c.adamEpsilon], [0.9, 0.999, 1e-8])
        XCTAssertEqual(c.maxGradNorm, 1.0)
        XCTAssertEqual(c.perDeviceTrainBatchSize, 8)
        XCTAssertEqual(c.gradientAccumulationSteps, 1)
        XCTAssertEqual(c.numTrainEpochs, 3)
        XCTAssertEqual(c.maxSteps, -1)
        XCTAssertEqual(c.seed, 42)
        XCTAssertEqual(c.loggingSteps, 500)
        XCTAssertEqual(c.saveSteps, 500)
        XCTAssertEqual(c.metricForBestModel, "eval_loss")
        XCTAssertEqual(c.r, 8)
        XCTAssertEqual(c.loraAlpha, 8)
        XCTAssertEqual(c.loraDropout, 0)
        XCTAssertEqual(c.outputDir, "lora-gpu-output")
    }

    func testFileThenFlagsAFlagWins() throws {
        let dir = try temporaryDirectory("config")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let yaml = dir + "/train.yaml"
        try """
        # a comment
        model: /models/tiny
        data: [a.jsonl, b.jsonl]
        learning_rate: 1e-4
        r: 16
        lora_alpha: 32
        target_modules: all-linear
        packing: true
        lr_scheduler_type: cosine
        warmup_steps: 0.1
        modules_to_save: [lm_head]
        """.write(toFile: yaml, atomically: true, encoding: .utf8)
        let c = try TrainingConfig.resolve(file: yaml, overrides: ["learning_rate": "3e-4", "output_dir": "out"])
        XCTAssertEqual(c.model, "/models/tiny")
        XCTAssertEqual(c.data, ["a.jsonl", "b.jsonl"])
        XCTAssertEqual(c.learningRate, 3e-4, "the flag wins over the file")
        XCTAssertEqual(c.r, 16)
        XCTAssertEqual(c.loraAlpha, 32)
        XCTAssertEqual(c.targetModules, .allLinear)
        XCTAssertTrue(c.packing)
        XCTAssertEqual(c.lrSchedulerType, .cosine)
        XCTAssertEqual(c.warmup(total: 37), 4)
        XCTAssertEqual(c.outputDir, "out")
        let lora = c.loraSettings()
        XCTAssertEqual(lora.r, 16)
        XCTAssertEqual(lora.loraAlpha, 32)
        XCTAssertEqual(lora.targetModules, .allLinear)
        XCTAssertEqual(lora.modulesToSave, ["lm_head"])
        XCTAssertFalse(lora.inferenceMode)

        // JSON reads the same way; a regex string stays a regex (PEFT's full match).
        let json = dir + "/train.json"
        try #"{"model": "m", "data": "d.jsonl", "target_modules": ".*\\.(q|v)_proj", "max_steps": 10, "gradient_checkpointing": true}"#
            .write(toFile: json, atomically: true, encoding: .utf8)
        let j = try TrainingConfig.resolve(file: json, overrides: [:])
        XCTAssertEqual(j.data, ["d.jsonl"])
        XCTAssertEqual(j.targetModules, .regex(#".*\.(q|v)_proj"#))
        XCTAssertEqual(j.maxSteps, 10)
        XCTAssertTrue(j.gradientCheckpointing)

        // The resolved settings round-trip through training_config.yaml.
        let back = try TrainingConfig.resolve(file: nil, overrides: [:].merging(
            try TrainingConfig.readMapping({ let p = dir + "/resolved.yaml"; try c.yaml().write(toFile: p, atomically: true, encoding: .utf8); return p }())
                .reduce(into: [String: Any]()) { $0[$1.0] = $1.1 }) { a, _ in a })
        XCTAssertEqual(back.learningRate, c.learningRate)
        XCTAssertEqual(back.targetModules, c.targetModules)
        XCTAssertEqual(back.data, c.data)
        XCTAssertEqual(back.warmupSteps, c.warmupSteps)
    }

    func testUnknownKeyNamesTheClosestKnownOne() throws {
        let dir = try temporaryDirectory("config")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let yaml = dir + "/bad.yaml"
        try "model: m\ndata: d\nlearning_rat: 1e-4\n".write(toFile: yaml, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try TrainingConfig.resolve(file: yaml, overrides: [:])) { e in
            let s = "\(e)"
            XCTAssertTrue(s.contains(yaml), s)
            XCTAssertTrue(s.contains("learning_rat"), s)
            XCTAssertTrue(s.contains("did you mean 'learning_rate'"), s)
        }
        XCTAssertThrowsError(try TrainingConfig.resolve(file: nil, overrides: ["model": "m", "data": "d", "warmup_step": "3"])) { e in
            XCTAssertTrue("\(e)".contains("did you mean 'warmup_steps'"), "\(e)")
        }
    }

    func testBadValuesNameTheirKey() {
        func message(_ o: [String: Any]) -> String {
            do { _ = try TrainingConfig.resolve(file: nil, overrides: ["model": "m", "data": "d"].merging(o) { _, n in n }); return "" }
            catch { return "\(error)" }
        }
        XCTAssertTrue(message(["r": "abc"]).contains("r: must be an integer"), message(["r": "abc"]))
        XCTAssertTrue(message(["lr_scheduler_type": "polynomial"]).contains("lr_scheduler_type"))
        XCTAssertTrue(message(["packing": "maybe"]).contains("packing: must be true or false"))
        XCTAssertTrue(message(["val_split": "1.5"]).contains("val_split"))
        let adapter = fixturesRoot + "/reference/llama_gqa_untied/adapter_initial"
        XCTAssertTrue(message(["adapter": adapter, "r": "5"]).contains("adapter: the adapter's adapter_config.json fixes the LoRA settings; r is 8 there, 5 here"),
                      message(["adapter": adapter, "r": "5"]))
        XCTAssertTrue(message(["adapter": adapter, "r": "8"]).isEmpty, "agreeing with the adapter is fine")
        XCTAssertTrue(message(["load_best_model_at_end": "true"]).contains("needs evaluation data"))
        XCTAssertTrue(message(["num_train_epochs": "1e300"]).contains("num_train_epochs"))
        XCTAssertTrue(message(["save_steps": "1e40"]).contains("save_steps"))
        XCTAssertTrue(message(["max_steps": "1e40"]).contains("max_steps: must be an integer"))
        XCTAssertTrue(message([:]).isEmpty)
        do { _ = try TrainingConfig.resolve(file: nil, overrides: ["data": "d"]); XCTFail("model is required") }
        catch { XCTAssertTrue("\(error)".contains("model: missing"), "\(error)") }
    }

    func testLoraConfigFileWithOverrides() throws {
        let file = fixturesRoot + "/reference/llama_gqa_untied/adapter_initial/adapter_config.json"
        let fromFile = try LoraConfig.load(path: file)
        // PEFT saved it with inference_mode: true, which does not train (issue 16): said, and set false here.
        XCTAssertThrowsError(try TrainingConfig.resolve(file: nil, overrides: ["model": "m", "data": "d", "lora_config": file])) { e in
            XCTAssertTrue("\(e)".hasPrefix(file + ": inference_mode: true loads the adapter frozen"), "\(e)")
        }
        let c = try TrainingConfig.resolve(file: nil, overrides: ["model": "m", "data": "d", "lora_config": file, "r": "3",
                                                                 "inference_mode": "false"])
        let l = c.loraSettings()
        XCTAssertEqual(l.r, 3, "a LoRA key given overrides the file")
        XCTAssertEqual(l.targetModules, fromFile.targetModules, "the rest comes from the file")
        XCTAssertEqual(l.loraAlpha, fromFile.loraAlpha)
        XCTAssertFalse(l.inferenceMode)
        // Every key is written, and the yaml reads back to the same settings.
        let lines = c.yaml().split(separator: "\n")
        XCTAssertEqual(lines.map { String($0.prefix { $0 != ":" }) }, TrainingConfig.keys)
    }
}

final class SettingsNullTests: XCTestCase {
    /// A null target_modules (as training_config.yaml of earlier versions wrote it) means the default.
    func testNullTargetModulesIsTheDefault() throws {
        let c = try TrainingConfig.resolve(file: nil, overrides: ["model": "m", "data": "d", "target_modules": NSNull(), "r": "4"])
        XCTAssertEqual(c.lora.targetModules, .list(["q_proj", "v_proj"]))
        XCTAssertEqual(c.r, 4)
        // Settings text is read per key: YAML's and the flags' spellings of booleans.
        XCTAssertTrue(try TrainingConfig.resolve(file: nil, overrides: ["model": "m", "data": "d", "use_rslora": "yes"]).lora.useRSLoRA)
    }
}

final class SettingSourceTests: XCTestCase {
    func testValueErrorsNameTheFileOrTheFlagsThatSetThem() throws {
        let dir = try temporaryDirectory("source")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "r: 0\n".write(toFile: dir + "/c.yaml", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try TrainingConfig.resolve(file: dir + "/c.yaml", overrides: ["model": "m", "data": ["d"]])) {
            XCTAssertTrue("\($0)".hasPrefix(dir + "/c.yaml: r: must be a positive integer"), "\($0)")
        }
        XCTAssertThrowsError(try TrainingConfig.resolve(file: dir + "/c.yaml",
                                                        overrides: ["model": "m", "data": ["d"], "r": "4", "lora_dropout": "1.5"])) {
            XCTAssertTrue("\($0)".contains("lora_dropout: must be in [0, 1)") && !"\($0)".hasPrefix(dir), "\($0)")
        }
    }
}
