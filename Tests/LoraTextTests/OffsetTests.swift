import Foundation
import LoraBase
@testable import LoraText
import XCTest

/// Tokenizer.encodeWithOffsets against transformers' `return_offsets_mapping` (issue 16, item 7):
/// every tokenizer fixture on its test texts and a slice of the multilingual corpus, and the
/// data fixtures' tokenizers on rendered conversations, with and without special tokens.
/// Fixture by scripts/make_offset_fixtures.py (the library's character offsets stored as UTF-8 bytes).
final class OffsetTests: XCTestCase {
    static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../Fixtures/text/offsets.json").standardized

    func check(_ tok: Tokenizer, _ cases: [JSONValue], _ name: String) throws -> Int {
        var checked = 0, reported = 0
        for c in cases {
            let text = try XCTUnwrap(c["text"]?.string)
            for (key, special) in [("plain", false), ("special", true)] {
                let want = try XCTUnwrap(c[key])
                let ids = try XCTUnwrap(want["ids"]?.array).map { $0.int! }
                let offsets = try XCTUnwrap(want["offsets"]?.array).map { [$0[0]!.int!, $0[1]!.int!] }
                let got = tok.encodeWithOffsets(text, addSpecialTokens: special)
                checked += 1
                if got.map(\.id) != ids || got.map({ [$0.start, $0.end] }) != offsets {
                    reported += 1
                    if reported <= 3 {
                        let ours = got.map { [$0.id, $0.start, $0.end] }, library = zip(ids, offsets).map { [$0] + $1 }
                        let k = zip(ours, library).enumerated().first { $0.element.0 != $0.element.1 }?.offset
                            ?? min(ours.count, library.count)
                        XCTFail("\(name) \(key) \(text.debugDescription): first difference at token \(k): "
                                + "ours \(got.dropFirst(k).prefix(3).map { [$0.id, $0.start, $0.end] }), "
                                + "library \(zip(ids, offsets).dropFirst(k).prefix(3).map { [$0] + $1 })")
                    }
                }
            }
        }
        if reported > 3 { XCTFail("\(name): \(reported) cases differ in all") }
        return checked
    }

    func testOffsetsEqualTheLibrarysOnEveryTokenizerFixture() throws {
        let doc = try JSONValue.parse(try Data(contentsOf: Self.fixture))
        var checked = 0
        for (name, cases) in try XCTUnwrap(doc["tokenizers"]?.object?.pairs) {
            let tok = try Tokenizer.load(directory: tokenizerFixturesRoot + "/" + name)
            checked += try check(tok, try XCTUnwrap(cases.array), name)
        }
        XCTAssertGreaterThan(checked, 1800)
    }

    func testOffsetsEqualTheLibrarysOnRenderedConversations() throws {
        let doc = try JSONValue.parse(try Data(contentsOf: Self.fixture))
        var checked = 0
        for (name, cases) in try XCTUnwrap(doc["data"]?.object?.pairs) {
            let tok = try Tokenizer.load(directory: DataFixtures.root.appendingPathComponent(name).path)
            checked += try check(tok, try XCTUnwrap(cases.array), name)
        }
        XCTAssertGreaterThan(checked, 80)
    }
}
