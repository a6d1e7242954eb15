import Foundation
import LoraBase
import LoraModel
import LoraOps
import LoraText
@_exported import TestSupport
import XCTest
@testable import LoraTrain

let fixturesRoot = testFixturesRoot
let fixtureModel = fixturesRoot + "/reference/llama_gqa_untied/model"

/// `n` pre-tokenized samples over the fixture vocabulary (67): a prompt part
/// with labels -100 and a trained completion; `untrained` of them have no trained label.
func writeSamples(_ path: String, count n: Int, seed: UInt64 = 7, untrained: Set<Int> = []) throws {
    var rng = SplitMix64(seed: seed)
    var lines: [String] = []
    for i in 0..<n {
        let len = 5 + Int(rng.next() % 10)
        let ids = (0..<len).map { _ in 3 + Int(rng.next() % 64) }
        let prompt = 1 + Int(rng.next() % UInt64(len - 2))
        let labels = untrained.contains(i) ? ids.map { _ in -100 } : ids.enumerated().map { $0.offset < prompt ? -100 : $0.element }
        lines.append(JSONValue.object(["input_ids": JSONValue(ids), "labels": JSONValue(labels)]).serialized())
    }
    try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
}

/// Settings for a short run on the fixture model.
func smallConfig(data: String, output: String, _ extra: [String: Any] = [:]) throws -> TrainingConfig {
    var o: [String: Any] = ["model": fixtureModel, "data": [data], "output_dir": output, "per_device_train_batch_size": "4",
                            "learning_rate": "1e-2", "logging_steps": "1", "save_steps": "100", "max_steps": "6",
                            "target_modules": "all-linear"]
    o.merge(extra) { _, new in new }
    return try TrainingConfig.resolve(file: nil, overrides: o)
}

/// Collects what the trainer prints.
final class Captured: @unchecked Sendable {
    var text = ""
    func printer(terminal: Bool) -> ProgressPrinter { ProgressPrinter(isTerminal: terminal) { [self] in text += $0 } }
}

func readLines(_ path: String) throws -> [String] {
    try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map(String.init)
}
