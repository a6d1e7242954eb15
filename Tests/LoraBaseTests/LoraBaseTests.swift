import Foundation
import LoraBase
import TestSupport
import XCTest

final class JSONTests: XCTestCase {
    /// The value below, written by Python 3.11's json module:
    ///   v = {"b": [1, 2.5, None, True, "é\u0301/\n"], "a": {"z": 1e-05, "y": []}, "\u00e9": 1, "e\u0301": 2,
    ///        "emoji": "🐧", "big": 1e16, "neg": -0.0}
    ///   json.dumps(v, ensure_ascii=False, separators=(",", ":")); json.dumps(v, indent=2, sort_keys=True,
    ///   ensure_ascii=False); json.dumps(v)
    let value: JSONValue = [
        "b": [1, 2.5, nil, true, "\u{e9}\u{301}/\n"], "a": ["z": 1e-05, "y": []], "\u{e9}": 1, "e\u{301}": 2,
        "emoji": "🐧", "big": 1e16, "neg": .double(-0.0),
    ]

    func testWriterMatchesPythonsJSONDumps() {
        XCTAssertEqual(value.serialized(), "{\"b\":[1,2.5,null,true,\"\u{e9}\u{301}/\\n\"],\"a\":{\"z\":1e-05,\"y\":[]},\"\u{e9}\":1,\"e\u{301}\":2,\"emoji\":\"\u{1f427}\",\"big\":1e+16,\"neg\":-0.0}")
        XCTAssertEqual(value.serialized(.prettySorted), "{\n  \"a\": {\n    \"y\": [],\n    \"z\": 1e-05\n  },\n  \"b\": [\n    1,\n    2.5,\n    null,\n    true,\n    \"\u{e9}\u{301}/\\n\"\n  ],\n  \"big\": 1e+16,\n  \"emoji\": \"\u{1f427}\",\n  \"e\u{301}\": 2,\n  \"neg\": -0.0,\n  \"\u{e9}\": 1\n}")
        XCTAssertEqual(value.serialized(JSONStyle(ensureASCII: true)), "{\"b\": [1, 2.5, null, true, \"\\u00e9\\u0301/\\n\"], \"a\": {\"z\": 1e-05, \"y\": []}, \"\\u00e9\": 1, \"e\\u0301\": 2, \"emoji\": \"\\ud83d\\udc27\", \"big\": 1e+16, \"neg\": -0.0}")
    }

    func testCanonicallyEquivalentKeysStayApartAndRoundTrip() throws {
        let parsed = try JSONValue.parse(value.serialized())
        XCTAssertEqual(parsed, value)
        let o = try XCTUnwrap(parsed.object)
        XCTAssertEqual(o.count, 7)
        XCTAssertEqual(o["\u{e9}"], 1)
        XCTAssertEqual(o["e\u{301}"], 2)
        XCTAssertEqual(o.keys.map { Array($0.unicodeScalars) }, ["b", "a", "\u{e9}", "e\u{301}", "emoji", "big", "neg"].map { Array($0.unicodeScalars) })
    }

    func testDuplicateKeysLastValueFirstPositionOrAnError() throws {
        let text = #"{"a": 1, "b": 2, "a": 3}"#
        XCTAssertEqual(try JSONValue.parse(text).object?.keys, ["a", "b"])
        XCTAssertEqual(try JSONValue.parse(text)["a"], 3)
        XCTAssertThrowsError(try JSONValue.parse(text, options: JSONParseOptions(rejectDuplicateKeys: true))) {
            let e = $0 as? JSONParseError
            XCTAssertEqual(e?.reason, "duplicate key 'a'")
            XCTAssertEqual(e?.offset, 17)
        }
        XCTAssertThrowsError(try JSONValue.parse("[[[1]]]", options: JSONParseOptions(maxDepth: 2)))
    }

    func testNumbersKeepIntegersApartFromFloats() throws {
        let v = try JSONValue.parse("[3, 3.0, -0, 1e2, 9223372036854775807, 9223372036854775808]")
        XCTAssertEqual(v.array, [.int(3), .double(3), .int(0), .double(100), .int(Int.max), .double(9223372036854775808)])
        XCTAssertEqual(v[1]?.integral, 3)
        XCTAssertNil(v[1]?.int)
        XCTAssertNil(JSONValue.double(2.5).integral)
    }

    func testLegacyMergeSplitsAtTheOneSpaceScalar() {
        XCTAssertTrue(splitLegacyMerge("र ्")! == ("र", "्"))
        XCTAssertTrue(splitLegacyMerge("Ġ t")! == ("Ġ", "t"))
        XCTAssertNil(splitLegacyMerge("ab"))
        XCTAssertNil(splitLegacyMerge("a b c"))
        XCTAssertNil(splitLegacyMerge("a  b"))
    }

    func testOrderedMapRemovalKeepsOrderAndIndex() {
        var m: OrderedMap<Int> = ["x": 1, "y": 2, "z": 3]
        m["y"] = nil
        XCTAssertEqual(m.keys, ["x", "z"])
        m["y"] = 4
        XCTAssertEqual(m.keys, ["x", "z", "y"])
        XCTAssertEqual(m["z"], 3)
        m["x"] = 5
        XCTAssertEqual(m.pairs.map(\.1), [5, 3, 4])
        XCTAssertEqual(m, ["y": 4, "x": 5, "z": 3], "equality ignores order, as Python's dict")
    }
}

final class BaseHelperTests: XCTestCase {
    /// The first outputs of splitmix64.c (Vigna) from seed 0.
    func testSplitMix64MatchesTheReference() {
        var g = SplitMix64(seed: 0)
        XCTAssertEqual([g.next(), g.next(), g.next()], [0xE220_A839_7B1D_CDAF, 0x6E78_9E6A_A1B9_65F4, 0x06C4_5D18_8009_454F])
    }

    func testAtomicFileReplacesWholeAndLeavesNoTemporary() throws {
        let dir = try temporaryDirectory("atomic")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try AtomicFile.write("old", to: dir + "/f")
        try AtomicFile.write("new", to: dir + "/f")
        XCTAssertEqual(try String(contentsOfFile: dir + "/f", encoding: .utf8), "new")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["f"])
        XCTAssertThrowsError(try AtomicFile.write("x", to: dir + "/missing/f")) {
            XCTAssertTrue("\($0)".contains(dir + "/missing/"), "\($0)")
            XCTAssertFalse("\($0)".contains("NSCocoaErrorDomain"), "\($0)")
        }
    }

    func testAtomicFileCopyIsWholeInPiecesAndNamesAMissingSource() throws {
        let dir = try temporaryDirectory("atomic-copy")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Past one 4 MiB piece, not a multiple of it.
        let bytes = (0..<((4 << 20) + 12345)).map { UInt8(truncatingIfNeeded: $0 &* 2654435761 >> 7) }
        try Data(bytes).write(to: URL(fileURLWithPath: dir + "/src"))
        try AtomicFile.write("old", to: dir + "/dst")
        try AtomicFile.copy(from: dir + "/src", to: dir + "/dst")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dir + "/dst")), Data(bytes))
        try Data().write(to: URL(fileURLWithPath: dir + "/empty"))
        try AtomicFile.copy(from: dir + "/empty", to: dir + "/dst2")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dir + "/dst2")).count, 0)
        XCTAssertThrowsError(try AtomicFile.copy(from: dir + "/nope", to: dir + "/dst")) {
            XCTAssertTrue("\($0)".contains(dir + "/nope"), "\($0)")
        }
        // The destination is left as it was, and no temporary file stays.
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dir + "/dst")), Data(bytes))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(), ["dst", "dst2", "empty", "src"])
    }

    func testMappedFileNamesADirectoryAndMapsAnEmptyFile() throws {
        let dir = try temporaryDirectory("mapped")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        XCTAssertThrowsError(try MappedFile(path: dir)) { XCTAssertTrue("\($0)".contains("is a directory"), "\($0)") }
        _ = FileManager.default.createFile(atPath: dir + "/empty", contents: nil)
        XCTAssertEqual(try MappedFile(path: dir + "/empty").bytes.count, 0)
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: dir + "/three"))
        XCTAssertEqual(try MappedFile(path: dir + "/three").withBytes { Array($0) }, [1, 2, 3])
    }

    func testByteAlphabetIsGPT2s() {
        XCTAssertEqual(ByteAlphabet.scalars[0x20], "\u{120}")  // Ġ
        XCTAssertEqual(ByteAlphabet.scalars[0x0A], "\u{10A}")  // Ċ
        XCTAssertEqual(ByteAlphabet.scalars[0x41], "A")
        XCTAssertEqual(ByteAlphabet.spell(" é"), "\u{120}\u{C3}\u{A9}")
        XCTAssertTrue(ByteAlphabet.isSpelled("\u{120}hello"))
        XCTAssertFalse(ByteAlphabet.isSpelled("h\u{20AC}llo"))
        XCTAssertEqual(Escaping.html(#"<a href="x">&'"#), "&lt;a href=&#34;x&#34;&gt;&amp;&#39;")
    }
}
