import Foundation
import LoraText
import XCTest
@testable import LoraTrain

final class DataTests: XCTestCase {
    func testPretokenizedJSONL() throws {
        let dir = try temporaryDirectory("data")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p = dir + "/d.jsonl"
        try """
        {"input_ids": [1, 2, 3, 4, 5, 6], "labels": [-100, -100, 3, 4, 5, 6]}

        {"input_ids": [7, 8, 9]}
        """.write(toFile: p, atomically: true, encoding: .utf8)
        let s = try loadSamples(paths: [p], maxSeqLen: 4, vocabSize: 67)
        XCTAssertEqual(s.count, 2)
        XCTAssertEqual(s[0], TokenizedSample(line: 1, inputIDs: [1, 2, 3, 4], labels: [-100, -100, 3, 4]), "truncated to max_seq_len")
        XCTAssertEqual(s[1], TokenizedSample(line: 3, inputIDs: [7, 8, 9], labels: [7, 8, 9]), "no labels: every token trained")

        func error(_ line: String) -> String {
            try? line.write(toFile: p, atomically: true, encoding: .utf8)
            do { _ = try loadSamples(paths: [p], maxSeqLen: 8, vocabSize: 67); return "" } catch { return "\(error)" }
        }
        XCTAssertTrue(error("{\"input_ids\": [1, 99]}").hasPrefix(p + ":1: token id 99 is outside"), error("{\"input_ids\": [1, 99]}"))
        XCTAssertTrue(error("{\"input_ids\": [1, 2], \"labels\": [1]}").contains(":1: \"labels\" has 1 entries"))
        XCTAssertTrue(error("{\"messages\": []}").contains("only pre-tokenized JSONL"))
        XCTAssertTrue(error("{\"input_ids\": [1, 2.5]}").contains("must be a list of integers"))
        XCTAssertTrue(error("not json").contains(":1: not a JSON object"))
    }

    func testValidationSplitIsSeededAndDisjoint() {
        let samples = (0..<20).map { TokenizedSample(line: $0 + 1, inputIDs: [$0 + 1, 2], labels: [$0 + 1, 2]) }
        let (t1, v1) = split(samples, fraction: 0.2, seed: 42)
        let (t2, v2) = split(samples, fraction: 0.2, seed: 42)
        XCTAssertEqual(v1.count, 4)
        XCTAssertEqual(t1.count, 16)
        XCTAssertEqual(v1, v2)
        XCTAssertEqual(t1, t2)
        XCTAssertTrue(Set(v1.map(\.line)).isDisjoint(with: Set(t1.map(\.line))))
        XCTAssertNotEqual(split(samples, fraction: 0.2, seed: 7).val, v1)
    }
}
