import Foundation
import LoraBase
import TestSupport
import XCTest

@testable import LoraText

/// Fixtures made by scripts/make_tokenizer_fixtures.py with the real `tokenizers` library.
let tokenizerFixturesRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Fixtures/text/tokenizers").path

let tokenizerFixtureNames = ["gpt2", "qwen2", "llama3", "llama2", "llama2_metaspace", "misc", "metaspace_always", "roberta",
                             "misc_suffix"]

func loadExpected(_ name: String) throws -> [String: Any] {
    let path = tokenizerFixturesRoot + "/\(name)/expected.json"
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    // Not JSONSerialization: it drops a leading U+FEFF (raw UTF-8 BOM bytes) from string values.
    guard let obj = plainValue(try JSONValue.parse(data, source: path)) as? [String: Any] else {
        throw TokenizerError("\(path): not an object")
    }
    return obj
}

/// JSON values as native Swift values (integral numbers as Int).
func plainValue(_ j: JSONValue) -> Any {
    switch j {
    case .null: return NSNull()
    case .bool(let b): return b
    case .int(let i): return i
    case .double(let d): return j.integral ?? d
    case .string(let s): return s
    case .array(let a): return a.map(plainValue)
    case .object(let o):
        var d: [String: Any] = [:]
        for (k, v) in o.pairs { d[k] = plainValue(v) }
        return d
    }
}

/// Compare scalar by scalar (String == is canonical equivalence).
func scalarsEqual(_ a: String, _ b: String) -> Bool {
    Array(a.unicodeScalars) == Array(b.unicodeScalars)
}

func describeScalars(_ s: String) -> String {
    s.unicodeScalars.map { $0.value < 128 && $0.value >= 32 ? String($0) : String(format: "\\u{%X}", $0.value) }.joined()
}

final class TokenizerTests: XCTestCase {

    func checkFixture(_ name: String) throws {
        let tok = try Tokenizer.load(directory: tokenizerFixturesRoot + "/" + name)
        let expected = try loadExpected(name)
        XCTAssertEqual(tok.vocabSize, expected["vocab_size"] as? Int, "\(name): vocabSize")
        let cases = try XCTUnwrap(expected["cases"] as? [[String: Any]])
        XCTAssertGreaterThan(cases.count, 50)
        var failures = 0
        for (i, c) in cases.enumerated() {
            let text = try XCTUnwrap(c["text"] as? String)
            let ids = try XCTUnwrap(c["ids"] as? [Int])
            let idsNoSpecial = try XCTUnwrap(c["ids_no_special"] as? [Int])
            let decoded = try XCTUnwrap(c["decoded"] as? String)
            let decodedSkip = try XCTUnwrap(c["decoded_skip_special"] as? String)
            let got = tok.encode(text, addSpecialTokens: true)
            let gotNo = tok.encode(text, addSpecialTokens: false)
            let dec = tok.decode(ids, skipSpecialTokens: false)
            let decSkip = tok.decode(ids, skipSpecialTokens: true)
            let ok = got == ids && gotNo == idsNoSpecial && scalarsEqual(dec, decoded) && scalarsEqual(decSkip, decodedSkip)
            if !ok {
                failures += 1
                if failures <= 5 {
                    let tokens = ids.map { tok.token($0) ?? "?" }
                    XCTFail("""
                        \(name) case \(i) \(describeScalars(text)):
                          ids      \(ids)
                          got      \(got)
                          no-spec  \(idsNoSpecial) got \(gotNo)
                          want tok \(tokens.map(describeScalars))
                          got tok  \(got.map { describeScalars(tok.token($0) ?? "?") })
                          decoded  \(describeScalars(decoded)) | got \(describeScalars(dec))
                          skip     \(describeScalars(decodedSkip)) | got \(describeScalars(decSkip))
                        """)
                }
            }
        }
        XCTAssertEqual(failures, 0, "\(name): \(failures) of \(cases.count) cases differ")
        let fuzz = try XCTUnwrap(expected["fuzz"] as? [[String: Any]])
        XCTAssertGreaterThan(fuzz.count, 100)
        var fuzzFailures = 0
        for (i, c) in fuzz.enumerated() {
            let text = try XCTUnwrap(c["text"] as? String)
            let ids = try XCTUnwrap(c["ids"] as? [Int])
            let got = tok.encode(text)
            let dec = tok.decode(ids)
            let want = try XCTUnwrap(c["decoded"] as? String)
            if got != ids || !scalarsEqual(dec, want) {
                fuzzFailures += 1
                if fuzzFailures <= 5 {
                    XCTFail("\(name) fuzz \(i) \(describeScalars(text)): ids \(ids) got \(got); decoded \(describeScalars(c["decoded"] as? String ?? "")) got \(describeScalars(dec))")
                }
            }
        }
        XCTAssertEqual(fuzzFailures, 0, "\(name): \(fuzzFailures) of \(fuzz.count) fuzz cases differ")
        let decodeCases = try XCTUnwrap(expected["decode_cases"] as? [[String: Any]])
        for (i, c) in decodeCases.enumerated() {
            let ids = try XCTUnwrap(c["ids"] as? [Int])
            let d = tok.decode(ids)
            let ds = tok.decode(ids, skipSpecialTokens: true)
            XCTAssertTrue(scalarsEqual(d, try XCTUnwrap(c["decoded"] as? String)),
                          "\(name) decode case \(i) \(ids): got \(describeScalars(d)) want \(describeScalars(c["decoded"] as? String ?? ""))")
            XCTAssertTrue(scalarsEqual(ds, try XCTUnwrap(c["decoded_skip_special"] as? String)),
                          "\(name) decode(skip) case \(i) \(ids): got \(describeScalars(ds))")
        }
    }

    func testGPT2ByteLevel() throws { try checkFixture("gpt2") }

    /// A legacy "a b" merge whose second part starts with a combining mark ("र ्": the space and the
    /// virama are one grapheme). Expected ids are what Hugging Face tokenizers 0.23.3 gives for this
    /// tokenizer.json (Tokenizer.from_file(...).encode(s, add_special_tokens=False)).
    func testLegacyMergeSplitsOnTheSpaceScalarNotTheGrapheme() throws {
        let json = #"""
        {"added_tokens": [], "normalizer": null, "pre_tokenizer": null, "post_processor": null, "decoder": null,
         "model": {"type": "BPE", "unk_token": null, "fuse_unk": false, "byte_fallback": false,
                   "vocab": {"र": 0, "्": 1, "क": 2, "र्": 3, "र्क": 4}, "merges": ["र ्", "र् क"]}}
        """#
        let tok = try Tokenizer(tokenizerJSON: Data(json.utf8))
        XCTAssertEqual(tok.encode("र्क", addSpecialTokens: false), [4])
        XCTAssertEqual(tok.encode("र्", addSpecialTokens: false), [3])
        XCTAssertEqual(tok.encode("कर्", addSpecialTokens: false), [2, 3])
        XCTAssertThrowsError(try Tokenizer(tokenizerJSON: Data(json.replacingOccurrences(of: "\"र ्\"", with: "\"र  ्\"").utf8))) { e in
            XCTAssertEqual("\(e)", "tokenizer.json: model.merges[0] \"र  ्\" is not two tokens separated by one space")
        }
    }
    func testQwen2() throws { try checkFixture("qwen2") }
    func testLlama3() throws { try checkFixture("llama3") }
    func testLlama2Legacy() throws { try checkFixture("llama2") }
    func testLlama2Metaspace() throws { try checkFixture("llama2_metaspace") }
    func testMiscNormalizersAndSplits() throws { try checkFixture("misc") }
    func testMetaspaceAlwaysDigitsNFD() throws { try checkFixture("metaspace_always") }
    func testRobertaPrefixSpace() throws { try checkFixture("roberta") }
    func testMiscSuffixDecoder() throws { try checkFixture("misc_suffix") }

    func testEveryFixtureHasATest() {
        let dirs = (try? FileManager.default.contentsOfDirectory(atPath: tokenizerFixturesRoot)) ?? []
        XCTAssertEqual(Set(dirs.filter { !$0.hasPrefix(".") && $0 != "VERSION" }), Set(tokenizerFixtureNames + ["config_specials", "byte_fallback_added"]))  // the last: ByteFallbackAddedTokensTests
    }

    func testVocabularyLookups() throws {
        let tok = try Tokenizer.load(directory: tokenizerFixturesRoot + "/qwen2")
        let imStart = try XCTUnwrap(tok.tokenID("<|im_start|>"))
        XCTAssertEqual(tok.token(imStart), "<|im_start|>")
        XCTAssertTrue(tok.isSpecial(imStart))
        let a = try XCTUnwrap(tok.tokenID("a"))
        XCTAssertFalse(tok.isSpecial(a))
        XCTAssertNil(tok.tokenID("definitely not a token"))
        XCTAssertNil(tok.token(-1))
        XCTAssertNil(tok.token(tok.vocabSize))
        XCTAssertEqual(tok.encode("<|im_start|>", addSpecialTokens: true), [imStart])

        let gpt2 = try Tokenizer.load(directory: tokenizerFixturesRoot + "/gpt2")
        let foo = try XCTUnwrap(gpt2.tokenID("foo"))
        XCTAssertFalse(gpt2.isSpecial(foo), "a non-special added token")
        XCTAssertTrue(gpt2.isSpecial(try XCTUnwrap(gpt2.tokenID("[MASK]"))))
    }

    func testConfigForms() throws {
        // String template + AddedToken objects.
        let gpt2 = try Tokenizer.load(directory: tokenizerFixturesRoot + "/gpt2").config
        XCTAssertEqual(gpt2.bosToken, "<|endoftext|>")
        XCTAssertEqual(gpt2.eosToken, "<|endoftext|>")
        XCTAssertNil(gpt2.padToken)
        XCTAssertEqual(gpt2.addBosToken, false)
        XCTAssertEqual(gpt2.modelMaxLength, 1024)
        XCTAssertEqual(gpt2.specialTokens["mask_token"], "[MASK]")
        XCTAssertEqual(gpt2.chatTemplate, "{% for m in messages %}{{ m['content'] }}{{ eos_token }}{% endfor %}")

        // chat_template.jinja beside the config wins.
        let qwen = try Tokenizer.load(directory: tokenizerFixturesRoot + "/qwen2").config
        XCTAssertEqual(qwen.eosToken, "<|im_end|>")
        XCTAssertEqual(qwen.padToken, "<|endoftext|>")
        XCTAssertNil(qwen.bosToken)
        XCTAssertEqual(qwen.modelMaxLength, 32768)
        let jinja = try String(contentsOfFile: tokenizerFixturesRoot + "/qwen2/chat_template.jinja", encoding: .utf8)
        XCTAssertEqual(qwen.chatTemplate, jinja)
        XCTAssertTrue(qwen.chatTemplate?.hasPrefix("{% for message in messages %}") ?? false)

        // List of named templates.
        let llama3 = try Tokenizer.load(directory: tokenizerFixturesRoot + "/llama3").config
        XCTAssertEqual(Set(llama3.namedChatTemplates.keys), ["default", "tool_use"])
        XCTAssertEqual(llama3.chatTemplate, llama3.namedChatTemplates["default"])
        XCTAssertEqual(llama3.namedChatTemplates["tool_use"], "{{ bos_token }}TOOLS{{ tools | tojson }}")

        // AddedToken objects with "__type"; a model_max_length of 1e30 is dropped.
        let llama2 = try TokenizerConfig.load(path: tokenizerFixturesRoot + "/llama2/tokenizer_config.json")
        XCTAssertEqual(llama2.bosToken, "<s>")
        XCTAssertEqual(llama2.eosToken, "</s>")
        XCTAssertEqual(llama2.unkToken, "<unk>")
        XCTAssertEqual(llama2.addBosToken, true)
        XCTAssertEqual(llama2.addEosToken, false)
        XCTAssertNil(llama2.modelMaxLength)
        XCTAssertEqual(llama2.specialTokens["bos_token"], "<s>")
    }

    func assertThrows(_ body: () throws -> Void, contains parts: [String], file: StaticString = #filePath, line: UInt = #line) {
        do {
            try body()
            XCTFail("expected an error", file: file, line: line)
        } catch {
            let msg = String(describing: error)
            for p in parts {
                XCTAssertTrue(msg.contains(p), "error \(msg.debugDescription) lacks \(p.debugDescription)", file: file, line: line)
            }
        }
    }

    func testErrors() throws {
        assertThrows({ _ = try Tokenizer(tokenizerJSON: Data("{\"model\": ".utf8), source: "bad/tokenizer.json") },
                     contains: ["bad/tokenizer.json", "invalid JSON"])
        assertThrows({ _ = try Tokenizer(tokenizerJSON: Data("{\n\"model\": {\"type\": \"BPE\", }".utf8), source: "t.json") },
                     contains: ["t.json", "line 2"])
        assertThrows({ _ = try Tokenizer(tokenizerJSON: Data("[1, 2]".utf8), source: "t.json") }, contains: ["t.json", "object"])
        let wordPiece = #"{"model": {"type": "WordPiece", "vocab": {"a": 0}}}"#
        assertThrows({ _ = try Tokenizer(tokenizerJSON: Data(wordPiece.utf8), source: "wp/tokenizer.json") },
                     contains: ["wp/tokenizer.json", "model.type", "'WordPiece'", "not supported yet"])
        let unigram = #"{"model": {"type": "Unigram", "vocab": [["a", 0.0]]}}"#
        assertThrows({ _ = try Tokenizer(tokenizerJSON: Data(unigram.utf8)) }, contains: ["tokenizer.json", "'Unigram'"])
        let badMerge = #"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b"]}}"#
        assertThrows({ _ = try Tokenizer(tokenizerJSON: Data(badMerge.utf8)) }, contains: ["merges[0]", "\"ab\"", "not in the vocab"])
        let badMergeForm = #"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b c"]}}"#
        assertThrows({ _ = try Tokenizer(tokenizerJSON: Data(badMergeForm.utf8)) }, contains: ["merges[0]"])
        let badNorm = #"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "normalizer": {"type": "BertNormalizer"}}"#
        assertThrows({ _ = try Tokenizer(tokenizerJSON: Data(badNorm.utf8)) }, contains: ["normalizer.type", "'BertNormalizer'"])
        let badPre = #"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"String": "x"}, "behavior": "Sideways"}]}}"#
        assertThrows({ _ = try Tokenizer(tokenizerJSON: Data(badPre.utf8)) }, contains: ["pre_tokenizer.pretokenizers[0].behavior", "Sideways"])
        let badUnk = #"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [], "unk_token": "<unk>"}}"#
        assertThrows({ _ = try Tokenizer(tokenizerJSON: Data(badUnk.utf8)) }, contains: ["unk_token", "<unk>"])
        assertThrows({ _ = try Tokenizer.load(directory: "/nonexistent/dir") }, contains: ["/nonexistent/dir/tokenizer.json"])
        assertThrows({ _ = try TokenizerConfig.parse(Data(#"{"chat_template": 3}"#.utf8), source: "cfg.json") },
                     contains: ["cfg.json", "chat_template"])
    }

    func testConcurrentEncodeMatchesSerial() throws {
        let tok = try Tokenizer.load(directory: tokenizerFixturesRoot + "/qwen2")
        let cases = try XCTUnwrap(loadExpected("qwen2")["fuzz"] as? [[String: Any]])
        let texts = cases.compactMap { $0["text"] as? String }
        let want = cases.compactMap { $0["ids"] as? [Int] }
        XCTAssertEqual(texts.count, want.count)
        var got = [[Int]](repeating: [], count: texts.count)
        let lock = NSLock()
        DispatchQueue.concurrentPerform(iterations: texts.count) { i in
            let ids = tok.encode(texts[i])
            lock.lock(); got[i] = ids; lock.unlock()
        }
        XCTAssertEqual(got, want)
    }

    func testLoadWithoutConfig() throws {
        let dir = URL(fileURLWithPath: try temporaryDirectory("tok"))
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.copyItem(atPath: tokenizerFixturesRoot + "/gpt2/tokenizer.json",
                                         toPath: dir.appendingPathComponent("tokenizer.json").path)
        let tok = try Tokenizer.load(directory: dir.path)
        XCTAssertNil(tok.config.chatTemplate)
        XCTAssertTrue(tok.config.specialTokens.isEmpty)
        XCTAssertEqual(tok.decode(tok.encode("Hello world!")), "Hello world!")
    }

    func testCanonicallyEquivalentTokensStayDistinct() throws {
        // "é" precomposed and decomposed are different tokens.
        let json = #"{"model": {"type": "BPE", "vocab": {"e": 0, "\u0301": 1, "\u00e9": 2, "e\u0301": 3}, "merges": [["e", "\u0301"]]}}"#
        let tok = try Tokenizer(tokenizerJSON: Data(json.utf8))
        XCTAssertEqual(tok.encode("\u{e9}"), [2])
        XCTAssertEqual(tok.encode("e\u{301}"), [3])
        XCTAssertEqual(tok.tokenID("e\u{301}"), 3)
        XCTAssertEqual(tok.tokenID("\u{e9}"), 2)
        XCTAssertEqual(tok.vocabSize, 4)
    }
}

final class TokenizerRegexTests: XCTestCase {
    /// The hand-written matchers of the three known split regexes agree with the
    /// general path (Swift Regex on Unicode scalars) on every fixture text.
    func testKnownPatternsAgreeWithGeneralRegex() throws {
        let expected = try loadExpected("gpt2")
        var texts = try XCTUnwrap(expected["cases"] as? [[String: Any]]).compactMap { $0["text"] as? String }
        texts += ["x  \t\n\n  y", "a\r\n\r\nb", "   ", "\n", "'S 'Ll 'VE ſ 'ſ", "1234567 ١٢٣٤", "\u{301}\u{301}a", "a\u{2028}b"]
        for kind in [KnownRegexPattern.Kind.gpt2, .llama3, .qwen2] {
            let source: String
            switch kind {
            case .gpt2: source = KnownRegexPattern.gpt2Source
            case .llama3: source = KnownRegexPattern.llama3Source
            case .qwen2: source = KnownRegexPattern.qwen2Source
            }
            let fast = KnownRegexPattern(kind: kind)
            let general = try GeneralRegexPattern(source: source, context: "test")
            for t in texts {
                let s = Array(t.unicodeScalars)
                XCTAssertEqual(fast.matches(in: s), general.matches(in: s), "\(kind) on \(describeScalars(t))")
            }
        }
    }

    /// Splits the library gives (tokenizers 0.23.3, llama3 fixture's pre_tokenize_str):
    /// the case-insensitive contractions fold "ſ" to "s".
    func testLlama3CaseFoldedContractions() {
        let p = KnownRegexPattern(kind: .llama3)
        func split(_ t: String) -> [String] {
            let s = Array(t.unicodeScalars)
            return p.matches(in: s).map { scalarsToString(Array(s[$0])) }
        }
        XCTAssertEqual(split("x'\u{17F}"), ["x", "'\u{17F}"])
        XCTAssertEqual(split("'\u{17F}a"), ["'\u{17F}", "a"])
        XCTAssertEqual(split("'ST"), ["'S", "T"])
        XCTAssertEqual(split("'Ve"), ["'Ve"])
        XCTAssertEqual(split("'\u{212A}a"), ["'\u{212A}a"])
    }

    /// Class ranges by code point, as Oniguruma (and Python's re) compare them, even where an end has a
    /// singleton decomposition (U+1F7D ώ → U+03CE, U+212A KELVIN SIGN → K, U+2126 OHM → Ω) that Swift
    /// Regex would compare canonically (DeepSeek LLM's class). Expected values are Python 3's
    /// re.fullmatch("[\u1f5f-\u1f7d\u2126\u212a-\u212d]+", s).
    func testClassRangesCompareCodePoints() throws {
        let pattern = try GeneralRegexPattern(source: "[\u{1F5F}-\u{1F7D}\u{2126}\u{212A}-\u{212D}]+", context: "test")
        let want: [(UInt32, Bool)] = [(0x1F70, true), (0x1F7D, true), (0x3CE, false), (0x1F5F, true), (0x2126, true),
                                      (0x3A9, false), (0x212A, true), (0x4B, false), (0x212B, true), (0x212C, true),
                                      (0xC5, false)]
        for (v, matches) in want {
            let s = [Unicode.Scalar(v)!]
            XCTAssertEqual(pattern.matches(in: s) == [0..<1], matches, "U+\(String(v, radix: 16))")
        }
        // Ranges with stable ends are left as written.
        XCTAssertEqual(GeneralRegexPattern.codePointRanges("[a-zÀ-Ö]\\[x-y]"), "[a-zÀ-Ö]\\[x-y]")
    }

    func testScriptPropertyRewrite() {
        XCTAssertEqual(GeneralRegexPattern.scriptProperties(#"[^\p{Han}]+\p{L}\P{Latin}\p{Script=Greek}\\p{Han}"#),
                       #"[^\p{Script=Han}]+\p{L}\P{Script=Latin}\p{Script=Greek}\\p{Han}"#)
    }
}

/// Special tokens named only in tokenizer_config.json (issue 22): transformers adds them to the
/// vocabulary, special and matched whole (scripts/make_config_specials_fixture.py).
final class ConfigSpecialTokenTests: XCTestCase {
    func testTokensNamedOnlyInTheConfigAreAddedAsTransformersAddsThem() throws {
        let dir = tokenizerFixturesRoot + "/config_specials"
        let tok = try Tokenizer.load(directory: dir)
        let expected = try loadExpected("config_specials")
        let ids = try XCTUnwrap(expected["token_ids"] as? [String: Int])
        for (content, id) in ids { XCTAssertEqual(tok.tokenID(content), id, content) }
        for (text, want) in try XCTUnwrap(expected["encode"] as? [String: [Int]]) {
            XCTAssertEqual(tok.encode(text, addSpecialTokens: false), want, text)
        }
        for (text, want) in try XCTUnwrap(expected["decode"] as? [String: String]) {
            XCTAssertTrue(scalarsEqual(tok.decode(tok.encode(text, addSpecialTokens: false)), want), text)
        }
        XCTAssertEqual(tok.configAddedTokens.map(\.content), ["<x_dec>", "<|begin_of_text|>", "<unk_x>", "<pad>", "<tool>", "\u{120}the"])
    }
}

/// A tokenizer.json listing its byte-fallback pieces among added_tokens (issue 16, item 7: the loss-mask
/// alignment failed on it with "cannot align token "<0x75>""). Fixture by
/// scripts/make_byte_fallback_added_fixture.py with the real `tokenizers`.
final class ByteFallbackAddedTokensTests: XCTestCase {
    func testIdsAndOffsetsAgreeWithTokenizersAndADatasetLoads() throws {
        let dir = tokenizerFixturesRoot + "/byte_fallback_added"
        let tok = try Tokenizer.load(directory: dir)
        let doc = try JSONValue.parse(try Data(contentsOf: URL(fileURLWithPath: dir + "/expected.json")))
        let cases = try XCTUnwrap(doc["cases"]?.array)
        XCTAssertEqual(cases.count, 4)
        for c in cases {
            let text = try XCTUnwrap(c["text"]?.string)
            let ids = try XCTUnwrap(c["ids"]?.array).map { $0.int! }
            XCTAssertEqual(tok.encode(text, addSpecialTokens: false), ids, text)
            // The library's offsets count characters: converted to UTF-8 bytes here. Each byte-fallback
            // piece of a multi-byte character stands for the whole character.
            let scalars = Array(text.unicodeScalars)
            var byteAt = [0]
            for s in scalars { byteAt.append(byteAt.last! + String(s).utf8.count) }
            let ours = tok.encodeWithOffsets(text)
            XCTAssertEqual(ours.map(\.id), ids, text)
            let theirs = try XCTUnwrap(c["offsets"]?.array).map { [byteAt[$0[0]!.int!], byteAt[$0[1]!.int!]] }
            XCTAssertEqual(ours.map { [$0.start, $0.end] }, theirs, text)
        }
        // The literal text "<0x5B>" is the added token; "[" is the model's byte piece with the same id.
        XCTAssertEqual(tok.encodeWithOffsets("<0x5B> literally, then [").map { [$0.start, $0.end] }.first, [0, 6])
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("bf-added-\(getpid()).jsonl").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try #"{"messages": [{"role": "user", "content": "hi [x]"}, {"role": "assistant", "content": "hello [world] 你好"}]}"#
            .write(toFile: path, atomically: true, encoding: .utf8)
        let template = try XCTUnwrap(try ChatTemplateSelection.resolve(option: nil, tokenizer: tok))
        let d = try Dataset.load(file: path, tokenizer: TokenizerDataAdapter(tok), template: template, options: DatasetOptions())
        let s = try XCTUnwrap(d.samples.first)
        let trained = s.inputIDs.indices.filter { s.labels[$0] != -100 }.map { s.inputIDs[$0] }
        XCTAssertEqual(tok.decode(trained, skipSpecialTokens: false), "assistant: hello [world] 你好\n")
    }
}

/// The cases of a fixture file beside the tokenizer fixtures, each with its tokenizer (loaded once per name).
func tokenizerCases(_ file: String) throws -> [([String: Any], Tokenizer)] {
    let path = tokenizerFixturesRoot + "/../" + file
    let root = plainValue(try JSONValue.parse(try Data(contentsOf: URL(fileURLWithPath: path)), source: path)) as! [String: Any]
    var tokenizers: [String: Tokenizer] = [:]
    return try (root["cases"] as! [[String: Any]]).map { c in
        let name = c["tokenizer"] as! String
        let tok = try tokenizers[name] ?? Tokenizer.load(directory: tokenizerFixturesRoot + "/" + name)
        tokenizers[name] = tok
        return (c, tok)
    }
}

/// Text pairs and truncation (a sequence classifier's inputs) against transformers'
/// fast tokenizers: Tests/Fixtures/text/pairs.json from scripts/make_pair_fixtures.py.
final class TokenizerPairTests: XCTestCase {
    func testPairsAndTruncationEqualTransformers() throws {
        var checked = 0
        for (c, tok) in try tokenizerCases("pairs.json") {
            let name = c["tokenizer"] as! String
            let text = c["text"] as! String, pair = c["text_pair"] as? String, L = c["max_length"] as! Int
            let expected = c["ids"] as! [Int]
            let got = tok.encode(text, pair: pair, maxLength: L)
            XCTAssertEqual(got.ids, expected, "\(name) max_length \(L): \(text.debugDescription) + \(pair.debugDescription)")
            let full = tok.encode(text, pair: pair, maxLength: 1 << 20).ids
            XCTAssertEqual(got.truncated, full.count > got.ids.count, "\(name) truncated flag, max_length \(L)")
            checked += 1
        }
        XCTAssertEqual(checked, 216)
    }
}

/// Pre-split words (token classification) against transformers' fast tokenizers:
/// Tests/Fixtures/text/words.json from scripts/make_word_fixtures.py.
final class TokenizerWordsTests: XCTestCase {
    func testWordsAndWordIDsEqualTransformers() throws {
        var checked = 0
        for (c, tok) in try tokenizerCases("words.json") {
            let name = c["tokenizer"] as! String
            let words = c["words"] as! [String], L = c["max_length"] as! Int
            let got = tok.encode(words: words, maxLength: L)
            XCTAssertEqual(got.ids, c["ids"] as! [Int], "\(name) max_length \(L): \(words)")
            let expectedWords = (c["word_ids"] as! [Any]).map { $0 as? Int }
            XCTAssertEqual(got.wordIDs, expectedWords, "\(name) word ids, max_length \(L): \(words)")
            checked += 1
        }
        XCTAssertEqual(checked, 96)
    }
}
