import Foundation
import LoraBase
import LoraModel
import XCTest
@testable import LoraTrain

/// Issue 16, item 1: every key of PEFT's LoraConfig in every settings path — settings files (YAML
/// and JSON), `--lora-config`, flags, `inspect` — honoured or refused with a reason naming it;
/// unknown keys are errors with the nearest known key; inference_mode: true does not train.
final class LoraConfigKeysTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws { dir = try temporaryDirectory("lorakeys") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    func write(_ name: String, _ text: String) throws -> String {
        let p = dir + "/" + name
        try text.write(toFile: p, atomically: true, encoding: .utf8)
        return p
    }

    func resolve(_ file: String?, _ o: [String: Any] = [:]) -> Result<TrainingConfig, Error> {
        Result { try TrainingConfig.resolve(file: file, overrides: ["model": "m", "data": "d"].merging(o) { $1 }) }
    }

    func message(_ file: String?, _ o: [String: Any] = [:]) -> String {
        switch resolve(file, o) {
        case .success: return "no error"
        case .failure(let e): return "\(e)"
        }
    }

    static let writeUpYAML = """
        r: 16
        lora_alpha: 32
        lora_dropout: 0.05
        bias: "none"
        target_modules: ['up_proj', 'gate_proj', 'q_proj', 'o_proj', 'down_proj', 'v_proj', 'k_proj']
        task_type: TaskType.CAUSAL_LM
        inference_mode: False

        """

    static let writeUpJSON = """
        {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "bias": "none",
         "target_modules": ["up_proj", "gate_proj", "q_proj", "o_proj", "down_proj", "v_proj", "k_proj"],
         "task_type": "CAUSAL_LM", "inference_mode": false}
        """

    /// The write-up's LoraConfig, as a YAML settings file, a JSON settings file and a --lora-config JSON.
    func testTheWriteUpsConfigurationIsReadInEveryForm() throws {
        let yaml = try write("writeup.yaml", Self.writeUpYAML)
        let json = try write("writeup.json", Self.writeUpJSON)
        for l in [try resolve(yaml).get().lora, try resolve(json).get().lora,
                  try resolve(nil, ["lora_config": json]).get().lora, try resolve(nil, ["lora_config": yaml]).get().lora,
                  try TrainingConfig.loraConfigFile(path: yaml).lora, try TrainingConfig.loraConfigFile(path: json).lora] {
            XCTAssertEqual(l.r, 16)
            XCTAssertEqual(l.loraAlpha, 32)
            XCTAssertEqual(l.loraDropout, 0.05)
            XCTAssertEqual(l.bias, .none)
            XCTAssertEqual(l.targetModules, .list(["up_proj", "gate_proj", "q_proj", "o_proj", "down_proj", "v_proj", "k_proj"]))
            XCTAssertEqual(l.taskType, "CAUSAL_LM")
            XCTAssertFalse(l.inferenceMode)
        }
        // training_config.yaml writes the adapter's keys, task_type among them, and reads back the same.
        let c = try resolve(yaml).get()
        let back = try write("back.yaml", c.yaml())
        XCTAssertEqual(try resolve(back).get().lora, c.lora)
        XCTAssertTrue(c.yaml().contains("\ntask_type: \"CAUSAL_LM\"\n"), c.yaml())
    }

    /// The write-up's YAML trains a CAUSAL_LM adapter through the command line; its adapter_config.json
    /// carries PEFT's keys and the settings.
    func testTheWriteUpsYAMLTrains() throws {
        let yaml = try write("writeup.yaml", Self.writeUpYAML)
        let data = dir + "/train.jsonl"
        try writeSamples(data, count: 8)
        let out = dir + "/out"
        let r = try CLI.run(["train", "--config", yaml, "--model", fixtureModel, "--data", data, "--output-dir", out,
                             "--max-steps", "1", "--per-device-train-batch-size", "2", "--device", "cpu"])
        XCTAssertEqual(r.status, 0, r.stderr + r.stdout)
        let saved = try JSONValue.parse(try Data(contentsOf: URL(fileURLWithPath: out + "/adapter_config.json")))
        XCTAssertEqual(saved["task_type"], "CAUSAL_LM")
        XCTAssertEqual(saved["r"], 16)
        XCTAssertEqual(saved["inference_mode"], true, "saved for inference, as PEFT saves")
        XCTAssertEqual(saved["lora_dropout"], .double(0.05))
        // What PEFT saves, loaded back by the strict reader (every key known).
        XCTAssertEqual(try LoraConfig.load(path: out).r, 16)
    }

    /// PEFT 0.21.2's saved adapter_config.json (a fixture written by the real library) holds exactly the
    /// keys known here, but runtime_config (a field PEFT does not save) and astra_config (PEFT 0.22's); PEFT 0.22.0's
    /// (the phi3_untied_lm_head reference fixture) holds those with astra_config, and the strict reader loads it.
    func testEveryKeyPEFTSavesIsKnown() throws {
        let newer = testFixturesRoot + "/reference/phi3_untied_lm_head/adapter_initial/adapter_config.json"
        let saved22 = try JSONValue.parse(try Data(contentsOf: URL(fileURLWithPath: newer)))
        XCTAssertEqual(saved22["peft_version"], "0.22.0")
        let keys22 = Set(try XCTUnwrap(saved22.object).keys)
        XCTAssertEqual(keys22.count, 42)
        XCTAssertEqual(Set(LoraConfig.peftKeys.map(\.key)).subtracting(keys22), ["runtime_config"])
        XCTAssertEqual(try LoraConfig.load(path: newer).r, 8)
        let saved = try JSONValue.parse(try Data(contentsOf: URL(fileURLWithPath:
            testFixturesRoot + "/generate/cli_chatml/adapter/adapter_config.json")))
        XCTAssertEqual(saved["peft_version"], "0.21.2")
        let keys = Set(try XCTUnwrap(saved.object).keys)
        XCTAssertEqual(keys.count, 41)
        XCTAssertEqual(Set(LoraConfig.peftKeys.map(\.key)).subtracting(keys), ["runtime_config", "astra_config"])
        XCTAssertTrue(keys.isSubset(of: Set(LoraConfig.peftKeys.map(\.key))))
        // And each one is a setting: the whole saved file, as a YAML settings file, is accepted
        // (with inference_mode set false to train), values as PEFT wrote them.
        var pairs = try XCTUnwrap(saved.object).pairs
        pairs = pairs.map { $0.0 == "inference_mode" ? ($0.0, .bool(false)) : $0 }
        let yaml = pairs.map { "\($0.0): \($0.1.serialized(JSONStyle()))" }.joined(separator: "\n")
        let c = try resolve(try write("saved.yaml", yaml)).get()
        XCTAssertEqual(c.lora, try { var l = try LoraConfig.load(path: testFixturesRoot + "/generate/cli_chatml/adapter")
                                     l.inferenceMode = false; return l }())
    }

    /// Each refused key names itself and the way out; the same in a settings file, a flag and a --lora-config.
    func testRefusedKeysNameThemselvesAndTheWayOut() throws {
        let cases: [(String, String, String)] = [
            ("use_dora", "true", "use_dora: true is not supported: DoRA is not supported; set use_dora to false for plain LoRA"),
            ("fan_in_fan_out", "true", "fan_in_fan_out: true is not supported: these models' linear layers store W as (out, in) "
                + "(torch.nn.Linear), for which PEFT warns and resets fan_in_fan_out to false; set it to false"),
            ("lora_bias", "true", "lora_bias: true is not supported: a trainable bias on lora_B (lora_bias) is not supported; "
                + "`bias` trains the base layers' biases"),
            ("layer_replication", "[[0, 2]]", "layer_replication: [[0, 2]] is not supported: layer replication is not supported; leave it null"),
            ("astra_config", "{cache_file: c.pt}", "astra_config: {cache_file: c.pt} is not supported: ASTRA initialisation is not supported; "
                + "init_lora_weights: true, false or gaussian"),
            ("task_type", "SEQ_2_SEQ_LM", "task_type: 'SEQ_2_SEQ_LM' is not supported yet; supported: CAUSAL_LM, SEQ_CLS, TOKEN_CLS, "
                + "QUESTION_ANS, FEATURE_EXTRACTION"),
            ("task_type", "CAUSAL", "task_type: 'CAUSAL' is not a PEFT task type; PEFT's are CAUSAL_LM, SEQ_CLS, SEQ_2_SEQ_LM, "
                + "TOKEN_CLS, QUESTION_ANS, FEATURE_EXTRACTION"),
            ("task_type", "CAUSAL_L", "task_type: 'CAUSAL_L' is not a PEFT task type; did you mean 'CAUSAL_LM'?; PEFT's are "
                + "CAUSAL_LM, SEQ_CLS, SEQ_2_SEQ_LM, TOKEN_CLS, QUESTION_ANS, FEATURE_EXTRACTION"),
            ("peft_type", "LOHA", "peft_type: 'LOHA' is not supported; supported: LORA"),
            ("init_lora_weights", "pissa", "init_lora_weights: pissa is not supported; supported: true, false, \"gaussian\""),
        ]
        for (key, value, expected) in cases {
            let yaml = try write("r.yaml", "\(key): \(value)\n")
            XCTAssertEqual(message(yaml), dir + "/r.yaml: " + expected)
            XCTAssertEqual(message(nil, [key: value]), "command line: " + expected)
        }
        // At PEFT's defaults they are accepted (as every saved adapter_config.json has them).
        let defaults = try write("d.yaml", "use_dora: false\nfan_in_fan_out: false\nlora_bias: false\nlayer_replication: null\n"
                                 + "megatron_config: null\nloftq_config: {}\ntrainable_token_indices: null\npeft_type: LORA\n"
                                 + "base_model_name_or_path: whatever\nrevision: null\nauto_mapping: null\n")
        XCTAssertEqual(message(defaults), "no error")
        // In a --lora-config JSON, named by its file: hand-written (a settings file) and PEFT-saved (typed).
        let j = try write("a.json", #"{"r": 4, "target_modules": ["q_proj"], "use_dora": true}"#)
        XCTAssertEqual(message(nil, ["lora_config": j]),
                       j + ": use_dora: true is not supported: DoRA is not supported; set use_dora to false for plain LoRA")
        let saved = try write("p.json", #"{"peft_type": "LORA", "r": 4, "target_modules": ["q_proj"], "use_dora": true}"#)
        XCTAssertEqual(message(nil, ["lora_config": saved]),
                       saved + ": field 'use_dora': true is not supported: DoRA is not supported; set use_dora to false for plain LoRA")
    }

    /// A misspelt key is an error with the nearest key in every path (a --lora-config JSON silently
    /// trained with lora_alpha 8 before).
    func testMisspeltKeysAreErrorsEverywhere() throws {
        let j = try write("a.json", #"{"r": 16, "lora_aplha": 32, "target_modules": ["q_proj"]}"#)
        XCTAssertEqual(message(nil, ["lora_config": j]), j + ": lora_aplha: unknown setting; did you mean 'lora_alpha'?")
        let y = try write("s.yaml", "lora_aplha: 32\n")
        XCTAssertEqual(message(y), y + ": lora_aplha: unknown setting; did you mean 'lora_alpha'?")
        XCTAssertEqual(message(nil, ["use_doRa": "false"]), "command line: use_doRa: unknown setting; did you mean 'use_dora'?")
        XCTAssertThrowsError(try TrainingConfig.loraConfigFile(path: j)) { e in
            XCTAssertEqual("\(e)", j + ": lora_aplha: unknown setting; did you mean 'lora_alpha'?")
        }
        // A training key misspelt in a --lora-config JSON names the training key meant, as --config does.
        let lr = try write("lr.json", #"{"r": 4, "target_modules": ["q_proj"], "learning_rat": 0.001}"#)
        XCTAssertEqual(message(nil, ["lora_config": lr]), lr + ": learning_rat: unknown setting; did you mean 'learning_rate'?")
        XCTAssertEqual(message(lr), lr + ": learning_rat: unknown setting; did you mean 'learning_rate'?")
        // A near miss at a default-like value is a typo too (init_lora_weights: false was silently dropped),
        // in a hand-written JSON, in one PEFT wrote (peft_type), in YAML, in a flag: train and inspect agree.
        for extra in ["", #", "peft_type": "LORA""#] {
            // PEFT-saved: read as PEFT reads it (typed, "field"); hand-written: a settings file.
            let expected = extra.isEmpty ? "init_lora_weight: unknown setting; did you mean 'init_lora_weights'?"
                : "field 'init_lora_weight': not a key of PEFT's LoraConfig; did you mean 'init_lora_weights'?"
            let f = try write("t.json", #"{"r": 4, "target_modules": ["q_proj"], "init_lora_weight": false"# + extra + "}")
            XCTAssertEqual(message(nil, ["lora_config": f]), f + ": " + expected)
            XCTAssertThrowsError(try TrainingConfig.loraConfigFile(path: f)) { XCTAssertEqual("\($0)", f + ": " + expected) }
            let dirAdapter = dir + "/adapter"
            try FileManager.default.createDirectory(atPath: dirAdapter, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: f, toPath: dirAdapter + "/adapter_config.json")
            XCTAssertEqual(message(nil, ["adapter": dirAdapter]), dirAdapter + "/adapter_config.json: "
                           + "field 'init_lora_weight': not a key of PEFT's LoraConfig; did you mean 'init_lora_weights'?")
            try FileManager.default.removeItem(atPath: dirAdapter)
        }
        let ty = try write("t.yaml", "init_lora_weight: false\n")
        XCTAssertEqual(message(ty), ty + ": init_lora_weight: unknown setting; did you mean 'init_lora_weights'?")
        XCTAssertEqual(message(nil, ["lora_config": ty]), message(ty))
        XCTAssertThrowsError(try TrainingConfig.loraConfigFile(path: ty)) { XCTAssertEqual("\($0)", message(ty)) }
    }

    /// Review findings: a hand-written LoraConfig JSON without target_modules reads as a settings file in
    /// every path (PEFT's default targets); a PEFT-saved file's unknown default is ignored through --config
    /// too; an empty --lora-config file is an error; an adapter named in a --lora-config file is said to
    /// give its settings only.
    func testEveryPathReadsTheSameFileTheSameWay() throws {
        let nt = try write("nt.json", #"{"r": 4, "lora_alpha": 16}"#)
        let a = try resolve(nil, ["lora_config": nt]).get().lora, b = try resolve(nt).get().lora
        XCTAssertEqual(a, b)
        XCTAssertEqual(try TrainingConfig.loraConfigFile(path: nt).lora, a)
        XCTAssertEqual(try TrainingConfig.loraSettings(file: nt), a)
        XCTAssertEqual(a.targetModules, LoraConfig().targetModules)
        let old = try write("saved.json", #"{"peft_type": "LORA", "r": 4, "target_modules": ["q_proj"], "enable_lora": null, "merge_weights": false, "inference_mode": false}"#)
        XCTAssertEqual(try resolve(old).get().lora, try resolve(nil, ["lora_config": old]).get().lora)
        XCTAssertEqual(try TrainingConfig.loraSettings(file: old).r, 4)
        let bad = try write("saved-bad.json", #"{"peft_type": "LORA", "r": 4, "target_modules": ["q_proj"], "merge_weights": true}"#)
        XCTAssertEqual(message(bad), bad + ": merge_weights: unknown setting")
        let empty = try write("empty.yaml", "")
        XCTAssertEqual(message(nil, ["lora_config": empty]), empty + ": (file): holds no setting: give the LoRA settings (r, "
                       + "lora_alpha, target_modules, …) or an adapter_config.json")
        let withAdapter = try write("wa.yaml", "adapter: \(testFixturesRoot)/reference/llama_gqa_untied/adapter_initial\n")
        let c = try resolve(nil, ["lora_config": withAdapter]).get()
        XCTAssertEqual(c.notes.count, 1)
        XCTAssertTrue(c.notes[0].contains("(adapter) are not") && c.notes[0].contains("not its weights: this run starts a new adapter"),
                      c.notes[0])
    }

    /// `train --lora-config` reads what `inspect --lora-config` reads: a settings file gives its LoRA keys
    /// (its training keys are checked, not applied, and the run says so); a lora_config loop is an error.
    func testTrainLoraConfigTakesTheSettingsFileInspectTakes() throws {
        let yaml = try write("writeup.yaml", Self.writeUpYAML + "learning_rate: 3e-4\nnum_train_epochs: 2\n")
        let c = try resolve(nil, ["lora_config": yaml]).get()
        XCTAssertEqual(c.lora, try TrainingConfig.loraConfigFile(path: yaml).lora)
        XCTAssertEqual(c.lora.r, 16)
        XCTAssertEqual(c.learningRate, 5e-5, "a --lora-config file's training keys are not applied")
        XCTAssertEqual(c.notes, ["lora_config \(yaml) is a settings file: its LoRA settings are used, its other settings "
                                 + "(learning_rate, num_train_epochs) are not; give it with --config to train with them"])
        // A bad training value in it is still an error, named by the file.
        let bad = try write("bad.yaml", "r: 4\nlearning_rat: 1\n")
        XCTAssertEqual(message(nil, ["lora_config": bad]), bad + ": learning_rat: unknown setting; did you mean 'learning_rate'?")
        // A loop of lora_config files.
        let a = dir + "/a.yaml", b = dir + "/b.yaml"
        try "lora_config: \(b)\n".write(toFile: a, atomically: true, encoding: .utf8)
        try "lora_config: \(a)\n".write(toFile: b, atomically: true, encoding: .utf8)
        XCTAssertTrue(message(nil, ["lora_config": a]).hasSuffix("lora_config: \(a) leads back to a file already read (a loop)"),
                      message(nil, ["lora_config": a]))
        // Through the command line: the run trains and prints the note.
        let data = dir + "/train.jsonl"
        try writeSamples(data, count: 4)
        let r = try CLI.run(["train", "--lora-config", yaml, "--model", fixtureModel, "--data", data, "--output-dir", dir + "/out",
                             "--max-steps", "1", "--per-device-train-batch-size", "2", "--device", "cpu"])
        XCTAssertEqual(r.status, 0, r.stderr + r.stdout)
        XCTAssertTrue((r.stderr + r.stdout).contains("note: lora_config \(yaml) is a settings file"), r.stderr + r.stdout)
        XCTAssertEqual(try LoraConfig.load(path: dir + "/out").r, 16)
    }

    /// The refused keys have flags, parsed by the real command line: PEFT's default is accepted (the run
    /// trains), any other value is refused with the reason, as in a settings file.
    func testRefusedKeysThroughTheCommandLine() throws {
        let base = ["train", "--model", fixtureModel, "--data", dir + "/none.jsonl", "--device", "cpu"]
        let cases: [([String], String)] = [
            (["--use-dora"], "command line: use_dora: true is not supported: DoRA is not supported; set use_dora to false for plain LoRA"),
            (["--fan-in-fan-out"], "command line: fan_in_fan_out: true is not supported: these models' linear layers store W"),
            (["--lora-bias"], "command line: lora_bias: true is not supported: a trainable bias on lora_B"),
            (["--use-qalora"], "command line: use_qalora: true is not supported: QALoRA is not supported"),
            (["--ensure-weight-tying"], "command line: ensure_weight_tying: true is not supported"),
            (["--target-parameters", "mlp.experts.gate_up_proj"], "command line: target_parameters: [mlp.experts.gate_up_proj] is not supported"),
            (["--trainable-token-indices", "1,2"], "command line: trainable_token_indices: [1, 2] is not supported"),
            (["--peft-type", "LOHA"], "command line: peft_type: 'LOHA' is not supported; supported: LORA"),
            (["--lora-option", "loftq_config={loftq_bits: 4}"], "command line: loftq_config: {loftq_bits: 4} is not supported: LoftQ"),
            (["--lora-option", "init_lora_weight=false"], "command line: init_lora_weight: not a key of PEFT's LoraConfig; did you mean 'init_lora_weights'?"),
            (["--lora-option", "learning_rate=1"], "command line: learning_rate: not a key of PEFT's LoraConfig; it is a training setting: give it as --learning-rate"),
            (["--lora-option", "use_dora"], "command line: lora_option: 'use_dora' is not KEY=VALUE"),
            (["--inference-mode", "true"], "command line: inference_mode: true loads the adapter frozen"),
        ]
        for (args, expected) in cases {
            let r = try CLI.run(base + args)
            XCTAssertNotEqual(r.status, 0, args.joined(separator: " "))
            XCTAssertTrue(r.stderr.contains(expected), "\(args): \(r.stderr)")
        }
        // At PEFT's defaults: accepted, and the run trains.
        let data = dir + "/train.jsonl"
        try writeSamples(data, count: 4)
        let r = try CLI.run(["train", "--model", fixtureModel, "--data", data, "--output-dir", dir + "/out", "--max-steps", "1",
                             "--per-device-train-batch-size", "2", "--device", "cpu", "--no-use-dora", "--no-fan-in-fan-out",
                             "--no-lora-bias", "--peft-type", "LORA", "--lora-option", "loftq_config={}",
                             "--lora-option", "megatron_config=null", "--inference-mode", "false"])
        XCTAssertEqual(r.status, 0, r.stderr + r.stdout)
        // Every key of PEFT's LoraConfig is reachable from the real command line: a flag of its own (in
        // --help), or --lora-option KEY=null, accepted by the parser and the settings (the run then stops at the
        // missing data file, past every setting).
        let help = try CLI.run(["train", "--help"]).stdout
        var viaOption: [String] = []
        for key in LoraConfig.peftKeys.map(\.key) {
            let flag = "--" + key.replacingOccurrences(of: "_", with: "-")
            if help.contains(flag + " ") || help.contains(flag + "/") || help.contains(flag + "\n") { continue }
            viaOption.append(key)
            let r = try CLI.run(base + ["--lora-option", key + "=null"])
            XCTAssertTrue(r.stderr.contains("none.jsonl"), "\(key): \(r.stderr)")
        }
        XCTAssertEqual(viaOption.count, 20, "\(viaOption)")
        // One key, one value: --lora-option beside the key's own flag is an error, in either order.
        for args in [["--r", "2", "--lora-option", "r=8"], ["--lora-option", "r=8", "--r", "2"],
                     ["--use-dora", "--lora-option", "use_dora=false"], ["--lora-option", "r=1", "--lora-option", "r=2"]] {
            let r = try CLI.run(base + args)
            XCTAssertNotEqual(r.status, 0, "\(args)")
            XCTAssertTrue(r.stderr.contains("is given twice"), "\(args): \(r.stderr)")
        }
    }

    /// inference_mode: true does not train, from any path; continuing a saved adapter (saved with
    /// inference_mode: true, as PEFT saves) trains it, as PeftModel.from_pretrained(is_trainable=True).
    func testInferenceModeTrueIsRefusedForTraining() throws {
        let reason = "true loads the adapter frozen, for inference: PEFT trains nothing with it (its parameters do not "
            + "require gradients); set inference_mode: false to train"
        let y = try write("s.yaml", "inference_mode: true\n")
        XCTAssertEqual(message(y), y + ": inference_mode: " + reason)
        XCTAssertEqual(message(nil, ["inference_mode": "true"]), "command line: inference_mode: " + reason)
        let saved = testFixturesRoot + "/reference/llama_gqa_untied/adapter_initial/adapter_config.json"
        XCTAssertEqual(message(nil, ["lora_config": saved]), saved + ": inference_mode: " + reason)
        XCTAssertEqual(message(nil, ["lora_config": saved, "inference_mode": "false"]), "no error")
        XCTAssertEqual(message(nil, ["adapter": testFixturesRoot + "/reference/llama_gqa_untied/adapter_initial"]), "no error")
    }

    /// `inspect` reads the settings file `train` reads, and says what inference_mode: true means.
    func testInspectTakesTheTrainSettingsFile() throws {
        let model = fixtureModel
        let yaml = try write("writeup.yaml", Self.writeUpYAML)
        for args in [["--config", yaml], ["--lora-config", yaml]] {
            let r = try CLI.run(["inspect", model] + args)
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertTrue(r.stdout.contains("trainable params: "), r.stdout)
            XCTAssertFalse(r.stdout.contains("inference_mode"), r.stdout)
        }
        let frozen = try write("frozen.yaml", "r: 4\ninference_mode: true\n")
        let r = try CLI.run(["inspect", model, "--config", frozen])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("trainable params: 0 ||"), r.stdout)
        XCTAssertTrue(r.stdout.contains("inference_mode: true — the adapter is loaded frozen"), r.stdout)
        XCTAssertTrue(r.stdout.contains("`train --lora-config` refuses it: set inference_mode: false to train"), r.stdout)
        let bad = try CLI.run(["inspect", model, "--config", try write("bad.yaml", "use_dora: true\n")])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("bad.yaml: use_dora: true is not supported: DoRA is not supported"), bad.stderr)
    }

    /// The flags for the keys that had none.
    func testPatternAndTaskFlags() throws {
        let r = try CLI.run(["train", "--help"])
        for flag in ["--rank-pattern", "--alpha-pattern", "--layers-pattern", "--task-type", "--inference-mode"] {
            XCTAssertTrue(r.stdout.contains(flag), flag)
        }
        let c = try resolve(nil, ["rank_pattern": JSONValue.object(["q_proj": "4", "model.layers.0.mlp.up_proj": "2"]),
                                  "alpha_pattern": JSONValue.object(["v_proj": "3.5"]), "task_type": "CAUSAL_LM"]).get()
        XCTAssertEqual(c.lora.rankPattern.pairs.map { "\($0.0)=\($0.1)" }, ["q_proj=4", "model.layers.0.mlp.up_proj=2"])
        XCTAssertEqual(c.lora.alphaPattern["v_proj"], 3.5)
    }
}

/// Review findings on issue 16 item 1: adapters of other PEFT versions load; Python's None in YAML;
/// `inspect --config` with a JSON settings file; a resumed run from before the new keys.
final class LoraConfigCompatibilityTests: XCTestCase {
    func testOtherPEFTVersionsKeysAtDefaultsAreIgnored() throws {
        let dir = try temporaryDirectory("lorakeys-compat")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // alpaca-lora's adapter_config.json (PEFT 0.2 era) and a field a newer PEFT might add, at defaults.
        let old = dir + "/adapter_config.json"
        try #"{"base_model_name_or_path": "decapoda-research/llama-7b-hf", "bias": "none", "enable_lora": null, "fan_in_fan_out": false, "inference_mode": true, "lora_alpha": 16, "lora_dropout": 0.05, "merge_weights": false, "modules_to_save": null, "peft_type": "LORA", "r": 16, "target_modules": ["q_proj", "v_proj"], "task_type": "CAUSAL_LM", "use_future_thing": false}"#
            .write(toFile: old, atomically: true, encoding: .utf8)
        let l = try LoraConfig.load(path: old)
        XCTAssertEqual(l.r, 16)
        XCTAssertTrue(l.inferenceMode)
        // inspect --lora-config takes such a file as an adapter config too (it has peft_type).
        let inspected = try CLI.run(["inspect", fixtureModel, "--lora-config", old])
        XCTAssertEqual(inspected.status, 0, inspected.stderr)
        XCTAssertTrue(inspected.stdout.contains("trainable params: 0 ||"), inspected.stdout)
        // With a value that may change the math: an error.
        try #"{"r": 16, "target_modules": ["q_proj"], "merge_weights": true}"#.write(toFile: old, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try LoraConfig.load(path: old)) { e in
            XCTAssertEqual("\(e)", old + ": field 'merge_weights': not a key of PEFT's LoraConfig")
        }
        // Python's None in a YAML settings file is null.
        let y = dir + "/s.yaml"
        try "task_type: None\nmodules_to_save: None\nlayers_pattern: None\nrank_pattern: null\n".write(toFile: y, atomically: true, encoding: .utf8)
        let c = try TrainingConfig.resolve(file: y, overrides: ["model": "m", "data": "d"])
        XCTAssertEqual(c.lora.taskType, "CAUSAL_LM")
        XCTAssertEqual(c.lora.modulesToSave, [])
        XCTAssertNil(c.lora.layersPattern)
        // inspect --config reads a JSON settings file as train does (no target_modules needed).
        let j = dir + "/s.json"
        try #"{"r": 16}"#.write(toFile: j, atomically: true, encoding: .utf8)
        let r = try CLI.run(["inspect", fixtureModel, "--config", j])
        XCTAssertEqual(r.status, 0, r.stderr)
        // A checkpoint's training_config.yaml written before task_type and the pattern keys existed:
        // the missing keys held their defaults, so resuming with defaults is no change.
        let now = TrainingConfig().yaml()
        let before = now.split(separator: "\n").filter {
            !["task_type", "layers_pattern", "rank_pattern", "alpha_pattern"].contains(String($0.prefix { $0 != ":" }))
        }.joined(separator: "\n") + "\n"
        try FileManager.default.createDirectory(atPath: dir + "/ckpt", withIntermediateDirectories: true)
        try before.write(toFile: dir + "/ckpt/training_config.yaml", atomically: true, encoding: .utf8)
        XCTAssertEqual(Trainer.changedSettings(checkpoint: dir + "/ckpt", now: now), [])
    }
}
