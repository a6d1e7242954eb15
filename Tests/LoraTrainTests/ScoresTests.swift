import Foundation
import LoraBase
import XCTest
@testable import LoraTrain

/// The classifiers' evaluation figures against the libraries users compare
/// with: seqeval (entities, token accuracy) and scikit-learn (accuracy,
/// macro-F1). Fixture: scripts/make_seqeval_fixture.py.
final class ScoresTests: XCTestCase {
    static let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tasks/scores.json").path

    func testTaggingScoresEqualSeqeval() throws {
        let root = try JSONValue.read(path: Self.path)
        let cases = try XCTUnwrap(root["tagging"]?.array)
        XCTAssertEqual(cases.count, 40)
        for (k, c) in cases.enumerated() {
            let truth = c["truth"]!.array!.map { $0.strings! }, predicted = c["predicted"]!.array!.map { $0.strings! }
            for (s, expected) in zip(truth, c["entities"]!.array!) {
                let got = TaggingScores.entities(s).map { "\($0.0) \($0.1) \($0.2)" }
                let want = expected.array!.map { e in "\(e[0]!.string!) \(e[1]!.integral!) \(e[2]!.integral!)" }
                XCTAssertEqual(got, want, "case \(k): entities of \(s)")
            }
            let r = TaggingScores.score(predicted: predicted, truth: truth)
            for (name, value) in [("accuracy", r.accuracy), ("precision", r.precision), ("recall", r.recall), ("f1", r.f1)] {
                XCTAssertEqual(value, c[name]!.double!, accuracy: 1e-12, "case \(k): \(name)")
            }
        }
    }

    func testClassScoresEqualScikitLearn() throws {
        let root = try JSONValue.read(path: Self.path)
        let cases = try XCTUnwrap(root["classes"]?.array)
        XCTAssertEqual(cases.count, 30)
        for (k, c) in cases.enumerated() {
            let n = c["classes"]!.integral!
            let y = c["truth"]!.array!.map { $0.integral! }, p = c["predicted"]!.array!.map { $0.integral! }
            // One-hot logits of the predictions.
            let logits = p.flatMap { q in (0..<n).map { Float($0 == q ? 1 : 0) } }
            let r = ClassificationScores.singleLabel(logits: logits, labels: y, classes: n)
            XCTAssertEqual(r.accuracy, c["accuracy"]!.double!, accuracy: 1e-12, "case \(k): accuracy")
            XCTAssertEqual(r.macroF1, c["macro_f1"]!.double!, accuracy: 1e-12, "case \(k): macro F1")
        }
    }
}
