import Foundation
import LoraBase
import XCTest
@testable import LoraText

/// Renders every case of Tests/Fixtures/text/templates/chat_templates.json (real Hugging Face chat
/// templates rendered by transformers' apply_chat_template; made by scripts/make_template_fixtures.py)
/// and compares the output exactly, or the raised error.
final class ChatTemplateTests: XCTestCase {
    static let fixturePath = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/text/templates/chat_templates.json")

    struct Outcome {
        var family: String
        var passed = 0
        var failed = 0
    }

    func loadFixture() throws -> JSONValue {
        try JSONValue.parse(try Data(contentsOf: Self.fixturePath))
    }

    func testAllTemplateCases() throws {
        let doc = try loadFixture()
        let templates = try XCTUnwrap(doc["templates"]?.object)
        let conversations = try XCTUnwrap(doc["conversations"]?.object)
        let tools = try XCTUnwrap(doc["tools"])
        let cases = try XCTUnwrap(doc["cases"]?.array)
        XCTAssertGreaterThan(cases.count, 300)

        var compiled: [String: ChatTemplate] = [:]
        var outcomes: [String: Outcome] = [:]
        for name in templates.keys {
            let t = try XCTUnwrap(templates[name])
            var template = try ChatTemplate(source: try XCTUnwrap(t["template"]?.string), name: name)
            // Templates printing today's date were rendered with datetime.now() fixed at this time.
            template.fixedNowUTC = t["fixed_now_utc"]?.int
            compiled[name] = template
            outcomes[name] = Outcome(family: t["family"]?.string ?? name)
        }
        var raisedChecked = 0
        for c in cases {
            let name = try XCTUnwrap(c["template"]?.string)
            let convName = try XCTUnwrap(c["conversation"]?.string)
            let agp = try XCTUnwrap(c["add_generation_prompt"]?.bool)
            let messages = try XCTUnwrap(conversations[convName]?.array)
            var variables: [String: JSONValue] = [:]
            for (k, v) in templates[name]?["variables"]?.object?.pairs ?? [] { variables[k] = v }
            if c["tools"]?.bool == true { variables["tools"] = tools }
            let label = "\(name) / \(convName) / add_generation_prompt=\(agp)"
            let template = try XCTUnwrap(compiled[name])
            var ok = false
            if let expected = c["expected"]?.string {
                do {
                    let got = try template.render(messages: messages, addGenerationPrompt: agp, variables: variables)
                    ok = got == expected
                    XCTAssertEqual(got, expected, label)
                } catch {
                    XCTFail("\(label): unexpected error \(error)")
                }
            } else {
                let err = try XCTUnwrap(c["error"])
                let raised = err["raised"]?.bool ?? false
                do {
                    let got = try template.render(messages: messages, addGenerationPrompt: agp, variables: variables)
                    XCTFail("\(label): expected error \(err.serialized()), rendered \(got.debugDescription)")
                } catch let e as ChatTemplateError {
                    if raised {
                        ok = e.isRaised && e.message == err["message"]?.string
                        XCTAssertTrue(e.isRaised, label)
                        XCTAssertEqual(e.message, err["message"]?.string, label)
                        raisedChecked += 1
                    } else {
                        ok = !e.isRaised
                        XCTAssertFalse(e.isRaised, "\(label): \(e)")
                        if err["type"]?.string == "UndefinedError" {
                            XCTAssertEqual(e.message, err["message"]?.string, label)
                            ok = ok && e.message == err["message"]?.string
                        }
                    }
                }
            }
            if ok { outcomes[name]!.passed += 1 } else { outcomes[name]!.failed += 1 }
        }
        XCTAssertGreaterThan(raisedChecked, 20)
        for name in templates.keys {
            let o = outcomes[name]!
            print("chat template \(name) (\(o.family)): \(o.passed) passed, \(o.failed) failed")
        }
    }
}
