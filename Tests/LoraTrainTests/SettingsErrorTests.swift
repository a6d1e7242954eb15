import Foundation
import LoraOps
import XCTest
@testable import LoraTrain

/// Issue 9, bad settings: each gives one error naming the setting, before any training, and
/// leaves no checkpoint, adapter or metrics in the output directory.
final class SettingsErrorTests: XCTestCase {
    func testBadLoRASettingsNameTheKeyAndWriteNothing() throws {
        let dir = try temporaryDirectory("settings")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeSamples(dir + "/train.jsonl", count: 8)
        let out = dir + "/out"
        func message(_ o: [String: Any]) -> String {
            do {
                let c = try smallConfig(data: dir + "/train.jsonl", output: out, o)
                _ = try Trainer(config: c, context: try ComputeContext.shared(), progress: Captured().printer(terminal: false)).run()
                return "no error"
            } catch {
                if ProcessInfo.processInfo.environment["LORA_GPU_PRINT_ERRORS"] != nil { print("ERROR:", error) }
                return "\(error)"
            }
        }
        let cases: [([String: Any], [String])] = [
            (["r": "0"], ["r", "must be a positive integer, got 0"]),
            (["r": "-4"], ["r", "got -4"]),
            (["lora_alpha": "-16"], ["lora_alpha", "-16"]),
            (["lora_dropout": "1"], ["lora_dropout", "[0, 1)", "got 1"]),
            (["lora_dropout": "-0.1"], ["lora_dropout", "[0, 1)"]),
            (["target_modules": "['nonexistent_proj']"], ["target_modules", "nonexistent_proj", "matched no module", "q_proj"]),
            (["max_seq_len": "1"], ["max_seq_len", "at least 2"]),
            (["lerning_rate": "1e-4"], ["lerning_rate", "did you mean 'learning_rate'"]),
            (["load_best_model_at_end": "true"], ["load_best_model_at_end", "needs evaluation data"]),
            (["quantize": "q3_k"], ["quantize", "'q3_k' is not one of auto, none, q8_0, q4_0, nf4"]),
        ]
        for (o, parts) in cases {
            let m = message(o)
            for p in parts { XCTAssertTrue(m.contains(p), "\(o): '\(p)' not in: \(m)") }
            let left = (try? FileManager.default.contentsOfDirectory(atPath: out)) ?? []
            XCTAssertTrue(Checkpoints.list(out).isEmpty, "\(o): \(left)")
            for f in ["adapter_model.safetensors", "metrics.jsonl"] {
                XCTAssertFalse(left.contains(f), "\(o) left \(f) in the output directory")
            }
        }
    }
}
