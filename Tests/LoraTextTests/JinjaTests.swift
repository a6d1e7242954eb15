import Foundation
import LoraBase
import XCTest
@testable import LoraText

/// Interpreter behaviour against Jinja2 itself (Tests/Fixtures/text/templates/jinja_snippets.json,
/// rendered by the environment transformers builds), plus error locations and the JSON parser.
final class JinjaTests: XCTestCase {
    static let snippetsPath = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/text/templates/jinja_snippets.json")

    func render(_ source: String, _ variables: [String: JSONValue] = [:]) throws -> String {
        try ChatTemplate(source: source, name: "t").render(messages: [], addGenerationPrompt: false, variables: variables)
    }

    func testSnippetsMatchJinja2() throws {
        let doc = try JSONValue.parse(try Data(contentsOf: Self.snippetsPath))
        var variables: [String: JSONValue] = [:]
        for (k, v) in try XCTUnwrap(doc["context"]?.object).pairs { variables[k] = v }
        let snippets = try XCTUnwrap(doc["snippets"]?.array)
        XCTAssertGreaterThan(snippets.count, 80)
        var passed = 0
        for s in snippets {
            let name = try XCTUnwrap(s["name"]?.string)
            let source = try XCTUnwrap(s["template"]?.string)
            if let expected = s["expected"]?.string {
                do {
                    let got = try render(source, variables)
                    XCTAssertEqual(got, expected, name)
                    if got == expected { passed += 1 }
                } catch {
                    XCTFail("\(name): unexpected error \(error)")
                }
                continue
            }
            let err = try XCTUnwrap(s["error"])
            if err["syntax"]?.bool == true {
                do {
                    _ = try ChatTemplate(source: source, name: name)
                    XCTFail("\(name): expected a syntax error")
                } catch let e as ChatTemplateError {
                    XCTAssertEqual(e.line, err["line"]?.int, "\(name): \(e)")
                    XCTAssertFalse(e.isRaised, name)
                    if e.line == err["line"]?.int { passed += 1 }
                }
                continue
            }
            do {
                let got = try render(source, variables)
                XCTFail("\(name): expected error \(err.serialized()), rendered \(got.debugDescription)")
            } catch let e as ChatTemplateError {
                XCTAssertEqual(e.isRaised, err["raised"]?.bool ?? false, "\(name): \(e)")
                if err["check_message"]?.bool == true {
                    XCTAssertEqual(e.message, err["message"]?.string, name)
                }
                passed += 1
            }
        }
        print("jinja snippets: \(passed) of \(snippets.count) match Jinja2")
    }

    // MARK: Error locations (line:column of the failing tag or expression)

    func testSyntaxErrorLocation() {
        // (Inside an if, Jinja2 defers an unknown filter to run time: the jinja snippets pin that.)
        XCTAssertThrowsError(try ChatTemplate(source: "Hello\n{% for x in y %}\n  {{ y | foo }}\n{% endfor %}", name: "chat_template")) { e in
            guard let e = e as? ChatTemplateError else { return XCTFail("wrong error \(e)") }
            XCTAssertEqual(e.line, 3)
            XCTAssertEqual(e.column, 10)
            XCTAssertEqual(e.description, "chat_template:3:10: unknown filter 'foo'")
            XCTAssertFalse(e.isRaised)
        }
        XCTAssertThrowsError(try ChatTemplate(source: "{% for m in messages %}\nx\n{% endif %}")) { e in
            guard let e = e as? ChatTemplateError else { return XCTFail("wrong error \(e)") }
            XCTAssertEqual(e.line, 3)
            XCTAssertEqual(e.column, 4)
            XCTAssertTrue(e.message.contains("endif"), e.message)
        }
        XCTAssertThrowsError(try ChatTemplate(source: "{% if a %}\nnever closed")) { e in
            XCTAssertTrue("\(e)".contains("expected 'elif' or 'else' or 'endif'"), "\(e)")
        }
        XCTAssertThrowsError(try ChatTemplate(source: "ab {{ x is nope }}")) { e in
            XCTAssertEqual("\(e)", "chat_template:1:12: unknown test 'nope'")
        }
    }

    func testRuntimeErrorLocationAndRaise() throws {
        let t = try ChatTemplate(source: "line one\n{%- for m in messages %}\n  {{- raise_exception('bad role: ' + m.role) }}\n{%- endfor %}", name: "tpl")
        XCTAssertThrowsError(try t.render(messages: [.object(JSONObject([("role", .string("x"))]))], addGenerationPrompt: false)) { e in
            guard let e = e as? ChatTemplateError else { return XCTFail("wrong error \(e)") }
            XCTAssertTrue(e.isRaised)
            XCTAssertEqual(e.message, "bad role: x")
            XCTAssertEqual(e.template, "tpl")
            XCTAssertEqual(e.line, 3)
            XCTAssertEqual(e.column, 7)
        }
        XCTAssertThrowsError(try render("{{ 1 }}\n{{ messages[0].content.upper() + 1 }}")) { e in
            guard let e = e as? ChatTemplateError else { return XCTFail("wrong error \(e)") }
            XCTAssertFalse(e.isRaised)
            XCTAssertEqual(e.line, 2)
            XCTAssertEqual(e.message, "list object has no element 0")
        }
    }

    // MARK: Direct checks of pieces the fixtures lean on

    func testWhitespaceControlAndTrimBlocks() throws {
        XCTAssertEqual(try render("{% for i in [1, 2] %}\n    {{ i }}\n{% endfor %}\n"), "    1\n    2\n")
        XCTAssertEqual(try render("a\n  {%- if true %} b {% endif -%}\n c"), "a b c")
        XCTAssertEqual(try render("x\n    {# note #}\ny"), "x\ny")
    }

    func testNamespaceMacrosSlicing() throws {
        XCTAssertEqual(try render("{% set ns = namespace(i=0) %}{% for x in range(4) %}{% set ns.i = ns.i + x %}{% endfor %}{{ ns.i }}"), "6")
        XCTAssertEqual(try render("{% macro m(a, b=2) %}{{ a * b }}{% endmacro %}{{ m(3) }},{{ m(3, b=4) }}"), "6,12")
        XCTAssertEqual(try render("{{ [1, 2, 3, 4][::-1][1:] }}|{{ 'abc'[-1] }}"), "[3, 2, 1]|c")
    }

    func testToJSONSpacing() throws {
        let v: [String: JSONValue] = ["x": .object(JSONObject([("b", .int(1)), ("a", .array([.double(1.0), .string("é")]))]))]
        XCTAssertEqual(try render("{{ x | tojson }}", v), "{\"b\": 1, \"a\": [1.0, \"é\"]}")
        XCTAssertEqual(try render("{{ x | tojson(indent=2) }}", v), "{\n  \"b\": 1,\n  \"a\": [\n    1.0,\n    \"é\"\n  ]\n}")
    }

    func testToolsAndDocumentsDefaultToNone() throws {
        XCTAssertEqual(try render("{{ tools is none }}{{ documents is none }}{{ tools is defined }}"), "TrueTrueTrue")
        let t = try ChatTemplate(source: "{% for m in messages %}{{ m.keys() | list }}{% endfor %}")
        let msg = JSONValue.object(JSONObject([("role", .string("assistant")), ("content", .null), ("reasoning", .string("r"))]))
        XCTAssertEqual(try t.render(messages: [msg], addGenerationPrompt: true),
                       "['thinking', 'role', 'reasoning', 'reasoning_content']")
    }

    func testHostileInputFailsCleanly() throws {
        // Deep nesting, runaway recursion and huge repetitions are errors, not crashes.
        XCTAssertThrowsError(try ChatTemplate(source: "{{ " + String(repeating: "(", count: 500) + "1" + String(repeating: ")", count: 500) + " }}"))
        XCTAssertThrowsError(try ChatTemplate(source: "{{ " + String(repeating: "not ", count: 1000) + "x }}"))
        XCTAssertThrowsError(try ChatTemplate(source: String(repeating: "{% if x %}", count: 1000)))
        XCTAssertThrowsError(try render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}")) { e in
            XCTAssertTrue("\(e)".contains("recursion"), "\(e)")
        }
        XCTAssertThrowsError(try render("{{ 'ab' * 100000000000 }}"))
        XCTAssertThrowsError(try render("{{ range(1000000) | length }}"))
        XCTAssertEqual(try render("{{ 1 ** 100000000000 }} {{ 2 ** 64 }} {{ -9223372036854775807 - 1 }}"), "1 1.8446744073709552e+19 -9223372036854775808")
        XCTAssertEqual(try render("{{ l[::9223372036854775807] }}", ["l": .array([.int(1), .int(2)])]), "[1]")
    }

    // MARK: JSON

    func testJSONParseOrderAndTypes() throws {
        let v = try JSONValue.parse(Data(#"{"z": 1, "a": [true, null, 1.5, -0, 1e3, "\u00e9\ud83d\ude00\n"], "m": {}}"#.utf8))
        XCTAssertEqual(v.object?.keys, ["z", "a", "m"])
        XCTAssertEqual(v["z"], .int(1))
        XCTAssertEqual(v["a"]?.array?.count, 6)
        XCTAssertEqual(v["a"]?[2], .double(1.5))
        XCTAssertEqual(v["a"]?[4], .double(1000))
        XCTAssertEqual(v["a"]?[5]?.string, "é😀\n")
        XCTAssertEqual(v.serialized(), #"{"z":1,"a":[true,null,1.5,0,1000.0,"é😀\n"],"m":{}}"#)
    }

    func testJSONLiteralsAndAccessors() throws {
        let v: JSONValue = ["role": "user", "n": 2, "x": 1.5, "ok": true, "none": nil, "list": [1, "a"]]
        XCTAssertEqual(v.object?.keys, ["role", "n", "x", "ok", "none", "list"])
        XCTAssertEqual(v["role"]?.string, "user")
        XCTAssertEqual(v["n"]?.int, 2)
        XCTAssertEqual(v["n"]?.double, 2.0)
        XCTAssertEqual(v["x"]?.double, 1.5)
        XCTAssertEqual(v["ok"]?.bool, true)
        XCTAssertEqual(v["none"]?.isNull, true)
        XCTAssertEqual(v["list"]?[1]?.string, "a")
        XCTAssertNil(v["missing"])
        XCTAssertEqual(v.serialized(), #"{"role":"user","n":2,"x":1.5,"ok":true,"none":null,"list":[1,"a"]}"#)
        var o = JSONObject()
        o["b"] = 1
        o["a"] = 2
        o["b"] = 3
        XCTAssertEqual(o.keys, ["b", "a"])
        o["b"] = nil
        XCTAssertEqual(o.keys, ["a"])
        XCTAssertEqual(JSONValue.string("\u{1}\"\\\t").serialized(), #""\u0001\"\\\t""#)
    }

    func testJSONDuplicateKeysKeepFirstPosition() throws {
        let v = try JSONValue.parse(Data(#"{"a": 1, "b": 2, "a": 3}"#.utf8))
        XCTAssertEqual(v.object?.keys, ["a", "b"])
        XCTAssertEqual(v["a"], .int(3))
    }

    func testJSONErrorsHaveLineAndColumn() {
        func err(_ s: [UInt8]) -> JSONParseError? {
            do {
                _ = try JSONValue.parse(Data(s))
                return nil
            } catch {
                return error as? JSONParseError
            }
        }
        let e1 = err(Array("{\n  \"a\": 1,\n  \"b\": tru\n}".utf8))
        XCTAssertEqual(e1?.line, 3)
        XCTAssertEqual(e1?.column, 8)
        XCTAssertEqual(e1?.offset, 19)
        let e2 = err(Array("[1, 2,]".utf8))
        XCTAssertEqual(e2?.line, 1)
        XCTAssertEqual(e2?.column, 7)
        XCTAssertTrue(e2?.reason.contains("expected a value") ?? false)
        let e3 = err(Array("{\"a\": 1} x".utf8))
        XCTAssertEqual(e3?.column, 10)
        let bad = err([0x22, 0x61, 0xFF, 0x22])
        XCTAssertEqual(bad?.offset, 2)
        XCTAssertEqual(bad?.reason, "invalid UTF-8: byte 0xFF cannot start a character")
        let overlong = err([0x22, 0xC0, 0xAF, 0x22])
        XCTAssertTrue(overlong?.reason.hasPrefix("invalid UTF-8") ?? false)
        let truncated = err([0x22, 0xE2, 0x82])
        XCTAssertTrue(truncated?.reason.hasPrefix("invalid UTF-8") ?? false)
        XCTAssertNotNil(err(Array("\"\\ud800\"".utf8)))
        XCTAssertNotNil(err(Array("01".utf8)))
        XCTAssertNotNil(err(Array("\"a\nb\"".utf8)))
        XCTAssertNotNil(err(Array("".utf8)))
        XCTAssertEqual(err(Array("{\"a\":".utf8))?.reason, "unexpected end of input, expected a value")
    }

    func testPythonFloatRepr() {
        XCTAssertEqual(PyFormat.floatRepr(1.0), "1.0")
        XCTAssertEqual(PyFormat.floatRepr(1e16), "1e+16")
        XCTAssertEqual(PyFormat.floatRepr(1e15), "1000000000000000.0")
        XCTAssertEqual(PyFormat.floatRepr(0.0001), "0.0001")
        XCTAssertEqual(PyFormat.floatRepr(0.00001), "1e-05")
        XCTAssertEqual(PyFormat.floatRepr(-2.5e-300), "-2.5e-300")
        XCTAssertEqual(PyFormat.floatRepr(123.456), "123.456")
    }
}
