import XCTest
@testable import LoraText

final class DataTests: XCTestCase {
    let tok = ToyTokenizer()

    func load(_ name: String, _ content: String, template: ConversationRenderer? = ToyChatML(),
              _ options: DatasetOptions = DatasetOptions()) throws -> LoadedDataset {
        try Dataset.load(file: try writeTemp(name, content), tokenizer: tok, template: template, options: options)
    }

    /// The error text of loading `content` (after the temp directory prefix).
    func errorText(_ content: String, template: ConversationRenderer? = ToyChatML(), file: String = "bad.jsonl") -> String {
        do {
            _ = try load(file, content, template: template)
            return "no error"
        } catch {
            let s = "\(error)"
            guard let r = s.range(of: file) else { return s }
            return String(s[r.lowerBound...])
        }
    }

    func testFormatsDetectedPerFile() throws {
        let m = try load("m.jsonl", #"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}"# + "\n\n")
        XCTAssertEqual(m.format, .messages)
        XCTAssertEqual(trainedText(m.samples[0]), ["yo<|im_end|>\n"])
        let s = try load("s.jsonl", #"{"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}"#)
        XCTAssertEqual(s.format, .sharegpt)
        XCTAssertEqual(tok.decodeIDs(s.samples[0].inputIDs), "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n")
        XCTAssertEqual(trainedText(s.samples[0]), ["yo<|im_end|>\n"])
        // Prompt-completion with a template: a user and an assistant turn.
        let pc = try load("pc.jsonl", #"{"prompt": "Q?", "completion": "A."}"#)
        XCTAssertEqual(pc.format, .promptCompletion)
        XCTAssertEqual(trainedText(pc.samples[0]), ["A.<|im_end|>\n"])
        // Without a template: plain text, the post-processor's BOS, only the completion and an EOS trained.
        let plain = try load("pc2.jsonl", #"{"prompt": "Q? ", "completion": "A."}"#, template: nil)
        XCTAssertEqual(tok.decodeIDs(plain.samples[0].inputIDs), "<s>Q? A.</s>")
        XCTAssertEqual(trainedText(plain.samples[0]), ["A.</s>"])
        let plainAll = try load("pc3.jsonl", #"{"prompt": "Q? ", "completion": "A."}"#, template: nil, DatasetOptions(trainOn: .all))
        XCTAssertEqual(plainAll.samples[0].labels, plainAll.samples[0].inputIDs)
        // Text: every token (BOS as the post-processor adds it).
        let t = try load("t.jsonl", #"{"text": "ab"}"# + "\n" + #"{"text": "cd", "meta": 1}"#, template: nil)
        XCTAssertEqual(t.format, .text)
        XCTAssertEqual(t.samples[1].inputIDs, [0, 99 + 100, 100 + 100])
        XCTAssertEqual(t.samples[1].labels, t.samples[1].inputIDs)
        // A byte order mark and CRLF line ends.
        let bom = try Dataset.load(file: try writeTemp("bom.jsonl", Data([0xEF, 0xBB, 0xBF]) + Data("{\"text\": \"ab\"}\r\n{\"text\": \"c\"}\r\n".utf8)),
                                   tokenizer: tok, template: nil, options: DatasetOptions())
        XCTAssertEqual(bom.samples.map(\.inputIDs), [[0, 197, 198], [0, 199]])
        // Pre-tokenized, labels optional.
        let p = try load("p.jsonl", #"{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}"# + "\n" + #"{"input_ids": [8, 9]}"#)
        XCTAssertEqual(p.format, .preTokenized)
        XCTAssertEqual(p.samples, [TokenizedSample(line: 1, inputIDs: [5, 6, 7], labels: [-100, 6, 7]),
                                   TokenizedSample(line: 2, inputIDs: [8, 9], labels: [8, 9])])
    }

    func testBadLinesNameFileLineAndReason() throws {
        let ok = #"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}"#
        XCTAssertEqual(errorText(ok + "\n{\"messages\": [}\n"), "bad.jsonl:2:15: not JSON: unexpected character '}', expected a value")
        XCTAssertEqual(errorText(#"{"messages": [{"role": "bot", "content": "x"}]}"#),
                       "bad.jsonl:1: unknown role \"bot\" in messages[0].role (expected system, user, assistant or tool)")
        XCTAssertEqual(errorText(#"{"conversations": [{"from": "robot", "value": "x"}]}"#),
                       "bad.jsonl:1: unknown role \"robot\" in conversations[0].from (expected human, gpt or system)")
        XCTAssertEqual(errorText(#"{"messages": []}"#), "bad.jsonl:1: empty conversation (\"messages\" is [])")
        XCTAssertEqual(errorText(#"{"messages": [{"role": "user", "content": 3}]}"#),
                       "bad.jsonl:1: messages[0].content is a number, not a string")
        XCTAssertEqual(errorText(#"{"messages": [{"role": "user"}]}"#), "bad.jsonl:1: messages[0] is missing \"content\"")
        XCTAssertEqual(errorText(#"{"prompt": "x"}"#), "bad.jsonl:1: missing field \"completion\" (the line has \"prompt\")")
        XCTAssertEqual(errorText(#"{"txt": "x", "id": 3}"#),
                       "bad.jsonl:1: missing fields: expected \"messages\", \"conversations\", \"prompt\"+\"completion\", \"text\" or \"input_ids\"; the line has \"id\", \"txt\"")
        XCTAssertEqual(errorText(#"{"text": null}"#), "bad.jsonl:1: \"text\" is null, not a string")
        XCTAssertEqual(errorText("[1, 2]"), "bad.jsonl:1: expected a JSON object, got a list")
        XCTAssertEqual(errorText(ok + "\n" + #"{"text": "x"}"#),
                       "bad.jsonl:2: a text line in a messages file (format detected on line 1); one file holds one format")
        XCTAssertEqual(errorText(#"{"input_ids": [1, 2.5]}"#), "bad.jsonl:1: input_ids[1] = 2.5 is not an integer")
        XCTAssertEqual(errorText(#"{"input_ids": [1, true]}"#), "bad.jsonl:1: input_ids[1] is a boolean, not an integer")
        XCTAssertEqual(errorText(#"{"input_ids": [1, 2], "labels": [1]}"#), "bad.jsonl:1: labels has 1 entries but input_ids has 2")
        XCTAssertEqual(errorText(#"{"input_ids": [1, 2], "labels": [-5, 2]}"#), "bad.jsonl:1: labels[0] = -5: a label is a token id or -100")
        XCTAssertEqual(errorText(#"{"input_ids": [1, 1114300]}"#), "bad.jsonl:1: input_ids[1] = 1114300 is outside the vocabulary (size 1114212)")
        XCTAssertEqual(errorText("\n \n"), "bad.jsonl: empty file (no JSONL line)")
        XCTAssertEqual(errorText(#"{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}"#, template: ToyPhi3()),
                       "bad.jsonl:1: chat template 'toy-phi3': Conversation roles must alternate user/assistant/user/assistant/...")
        XCTAssertEqual(errorText(ok, template: nil),
                       "bad.jsonl:1: messages samples need a chat template, and the tokenizer has none: pass --chat-template NAME (one of the tokenizer config's named templates) or FILE.jinja")
        // Invalid UTF-8: the column is the first bad byte.
        var bytes = Data(#"{"text": "ab"#.utf8)
        bytes.append(contentsOf: [0xE4, 0xBD, 0x41])
        bytes.append(contentsOf: Array(#""}"#.utf8))
        let path = try writeTemp("utf8.jsonl", bytes)
        XCTAssertThrowsError(try Dataset.load(file: path, tokenizer: tok, template: nil, options: DatasetOptions())) { e in
            XCTAssertEqual("\(e)", "\(path):1:13: invalid UTF-8 (byte 0xE4)")
        }
        XCTAssertThrowsError(try Dataset.load(file: "/nonexistent/x.jsonl", tokenizer: tok, template: nil, options: DatasetOptions())) { e in
            XCTAssertTrue("\(e)".hasPrefix("/nonexistent/x.jsonl: cannot read"), "\(e)")
        }
    }

    func testSkipBadLinesCountsReasons() throws {
        let ok = #"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}"#
        let noAssistant = #"{"messages": [{"role": "user", "content": "hi"}]}"#
        let content = [ok, "not json", noAssistant, #"{"messages": [{"role": "x", "content": "y"}]}"#, ok].joined(separator: "\n")
        let d = try load("skip.jsonl", content, DatasetOptions(skipBadLines: true))
        XCTAssertEqual(d.samples.map(\.line), [1, 5])
        XCTAssertEqual(d.statistics.skipped, ["bad line": 2, "no trained token": 1])
        XCTAssertEqual(d.skipped.map(\.line), [2, 3, 4])
        XCTAssertTrue("\(d.skipped[0].reason)".hasSuffix("skip.jsonl:2:1: not JSON: invalid literal, expected 'null'"), "\(d.skipped[0].reason)")
        XCTAssertEqual(d.statistics.skippedTotal, 3)
        // Without the option the first bad line throws.
        XCTAssertThrowsError(try load("skip2.jsonl", content))
        // Nothing left at all.
        XCTAssertThrowsError(try load("skip3.jsonl", noAssistant)) { e in
            XCTAssertTrue("\(e)".hasSuffix("skip3.jsonl: no sample left to train on (no trained token: 1)"), "\(e)")
        }
    }

    func testTruncationKeepsTheStartAndCounts() throws {
        // "<|im_start|>user\nhi<|im_end|>\n" is 10 tokens, "<|im_start|>assistant\n" 11, the reply 2 + 2.
        let short = #"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}"#
        let long = #"{"messages": [{"role": "user", "content": "hello there, a long question"}, {"role": "assistant", "content": "yo"}]}"#
        let d = try load("trunc.jsonl", [short, long, short].joined(separator: "\n"),
                         DatasetOptions(maxSeqLen: 23, skipBadLines: false))
        // Line 1: 10 + 11 + 4 = 25 tokens → 23: "yo" kept, end-of-turn cut.
        XCTAssertEqual(d.samples.map(\.line), [1, 3])
        XCTAssertEqual(d.samples[0].inputIDs.count, 23)
        XCTAssertEqual(trainedText(d.samples[0]), ["yo"])
        XCTAssertEqual(d.statistics.truncated, 2)
        XCTAssertEqual(d.statistics.skipped, ["no trained token left after truncation": 1])
        XCTAssertEqual(d.skipped.map(\.line), [2])
        let full = try load("trunc2.jsonl", short)
        XCTAssertEqual(full.samples[0].inputIDs.count, 25)
        XCTAssertEqual(Array(full.samples[0].inputIDs.prefix(23)), d.samples[0].inputIDs)
    }

    func testStatistics() {
        let s = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3].enumerated().map { i, n in
            TokenizedSample(line: i + 1, inputIDs: Array(repeating: 7, count: n), labels: [-100] + Array(repeating: 7, count: n - 1))
        }
        let st = DatasetStatistics(samples: s, truncated: 2, skipped: ["bad line": 1])
        XCTAssertEqual(st.samples, 10)
        XCTAssertEqual(st.tokens, 39)
        XCTAssertEqual(st.trainedTokens, 29)  // n - 1 per sample: the shift drops the first label
        XCTAssertEqual([st.lengthMin, st.lengthMedian, st.lengthP90, st.lengthMax], [1, 3, 6, 9])
        XCTAssertTrue(st.summary.contains("length         min 1, median 3, p90 6, max 9"), st.summary)
    }

    func testValidationSplitIsSeededAndDeterministic() throws {
        let s = (1...40).map { TokenizedSample(line: $0, inputIDs: [1, 2], labels: [1, 2]) }
        let (a, va) = try Dataset.split(s, validationFraction: 0.1, seed: 7)
        let (b, vb) = try Dataset.split(s, validationFraction: 0.1, seed: 7)
        let (_, vc) = try Dataset.split(s, validationFraction: 0.1, seed: 8)
        XCTAssertEqual(va.count, 4)
        XCTAssertEqual(a.count, 36)
        XCTAssertEqual(va, vb)
        XCTAssertEqual(a, b)
        XCTAssertNotEqual(va.map(\.line), vc.map(\.line))
        XCTAssertEqual(Set(a.map(\.line)).union(va.map(\.line)), Set(1...40))
        XCTAssertEqual(va.map(\.line), va.map(\.line).sorted())
        XCTAssertEqual(try Dataset.split(Array(s.prefix(3)), validationFraction: 0.05, seed: 1).validation.count, 1)
        XCTAssertEqual(try Dataset.split(s, validationFraction: 0, seed: 1).validation.count, 0)
        XCTAssertThrowsError(try Dataset.split(s, validationFraction: 1.5, seed: 1))
    }

    func testPackedAndPaddedRowsKeepEachSample() throws {
        // pad == the end-of-turn token <|im_end|> (as SmolLM2 and many others ship): it must stay trained.
        let tok = ToyTokenizer(pad: 3)
        let convs = (0..<7).map { i in
            #"{"messages": [{"role": "user", "content": "q\#(i)\#(String(repeating: "x", count: i))"}, {"role": "assistant", "content": "a\#(i)"}]}"#
        }
        let d = try Dataset.load(file: try writeTemp("pack.jsonl", convs.joined(separator: "\n")), tokenizer: tok,
                                 template: ToyChatML(), options: DatasetOptions())
        for packing in [false, true] {
            let o = BatchingOptions(batchSize: 2, maxSeqLen: 64, packing: packing, padTokenID: tok.padID!, shuffle: true)
            let batches = Batching.plan(d.samples, options: o, seed: 3, epoch: 1)
            var seen: [Int] = []
            var trained = 0
            for b in batches {
                trained += b.trainedTokens
                var lineIndex = 0
                for r in 0..<b.rows {
                    // Walk the row's sequences: each must equal its sample, positions restart at 0.
                    var t = 0
                    while t < b.seqLen {
                        let sid = b.sequenceIDs[r][t]
                        var e = t
                        while e < b.seqLen, b.sequenceIDs[r][e] == sid { e += 1 }
                        if lineIndex < b.lines.count, let s = d.samples.first(where: { $0.line == b.lines[lineIndex] }),
                           s.inputIDs.count == e - t, Array(b.inputIDs[r][t..<e]) == s.inputIDs {
                            XCTAssertEqual(Array(b.labels[r][t..<e]), s.labels)
                            XCTAssertEqual(Array(b.positionIDs[r][t..<e]), Array(0..<(e - t)))
                            seen.append(s.line)
                            lineIndex += 1
                        } else {
                            // Padding: never trained, pad id (== EOS here) but masked by position.
                            XCTAssertEqual(Array(b.labels[r][t..<e]), Array(repeating: -100, count: e - t))
                            XCTAssertEqual(Array(b.inputIDs[r][t..<e]), Array(repeating: tok.padID!, count: e - t))
                        }
                        t = e
                    }
                }
            }
            XCTAssertEqual(seen.sorted(), d.samples.map(\.line), "packing \(packing)")
            XCTAssertEqual(trained, d.statistics.trainedTokens)
            // The end-of-turn token (== pad id) is trained in every sample.
            XCTAssertTrue(d.samples.allSatisfy { $0.labels.dropLast().last == tok.padID! })
        }
    }

    func testPreviewMarksTrainedText() throws {
        let content = #"{"messages": [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "Pip来啦！"}]}"# + "\n" +
            #"{"text": "x"}"#
        XCTAssertThrowsError(try load("pv0.jsonl", content))  // mixed formats
        let d = try Dataset.load(file: try writeTemp("pv.jsonl", String(content.split(separator: "\n")[0])), tokenizer: tok,
                                 template: ToyChatML(), options: DatasetOptions(maxSeqLen: 28), previewCount: 3)
        XCTAssertEqual(d.previews.count, 1)
        XCTAssertEqual(Preview.render(d.previews[0], tokenizer: tok, style: .brackets),
                       "── line 1: 28 tokens, 7 trained, truncated from 29\n<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n«Pip来啦！<|im_end|>»\n")
        let colored = Preview.render(d.previews[0], tokenizer: tok, style: .color)
        XCTAssertTrue(colored.contains("\u{1B}[1;32mPip来啦！<|im_end|>\u{1B}[0m"), colored)
        XCTAssertEqual(Preview.jsonLine(TokenizedSample(line: 4, inputIDs: [1, 2], labels: [-100, 2])),
                       #"{"line": 4, "input_ids": [1, 2], "labels": [-100, 2]}"#)
        XCTAssertEqual(Preview.jsonSkipped(line: 2, reason: "no \"trained\" token"), #"{"line": 2, "skipped": "no \"trained\" token"}"#)
        // Pre-tokenized: runs decoded.
        let p = ProcessedSample(sample: TokenizedSample(line: 1, inputIDs: [0, 104 + 100, 105 + 100, 1], labels: [-100, -100, 205, 1]),
                                fullLength: 4, text: nil, offsets: nil)
        XCTAssertEqual(Preview.render(p, tokenizer: tok, style: .brackets), "── line 1: 4 tokens, 2 trained\n<s>h«i</s>»\n")
    }
}
