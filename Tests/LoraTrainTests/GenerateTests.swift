import Foundation
@testable import LoraModel
import LoraOps
import LoraTrain
import Reference
import XCTest

/// Fixtures made by scripts/make_generate_fixtures.py with transformers + PEFT `generate`.
private let testsRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
private let referenceRoot = testsRoot.appendingPathComponent("Fixtures/reference").path
private let generateRoot = testsRoot.appendingPathComponent("Fixtures/generate").path

private struct GenerateCase {
    struct Run { let prompt: [Int]; let eos: Int?; let expected: [Int] }
    let name: String
    let runs: [Run]
    let mergedExpected: [Int]
    let maxNewTokens: Int
    var modelDir: String { referenceRoot + "/\(name)/model" }
    var adapterDir: String { referenceRoot + "/\(name)/adapter_final" }

    init(_ name: String) throws {
        self.name = name
        let data = try Data(contentsOf: URL(fileURLWithPath: generateRoot + "/\(name)/generate.json"))
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let runs = try XCTUnwrap(json["runs"] as? [[String: Any]])
        self.runs = try runs.map {
            Run(prompt: try XCTUnwrap($0["prompt"] as? [Int]), eos: $0["eos"] as? Int,
                expected: try XCTUnwrap($0["expected"] as? [Int]))
        }
        mergedExpected = try XCTUnwrap(json["merged_expected"] as? [Int])
        maxNewTokens = try XCTUnwrap(json["max_new_tokens"] as? Int)
    }

    func lora() throws -> LoraConfig { try LoraConfig.load(path: adapterDir + "/adapter_config.json") }

    /// The base model with the trained adapter, unmerged.
    func model() throws -> LlamaLoRAModel {
        let m = try LlamaLoRAModel(modelDirectory: modelDir, lora: try lora(), context: try ComputeContext.shared())
        try m.loadAdapter(directory: adapterDir)
        return m
    }
}

private func relErr(_ a: [Float], _ b: [Float]) -> Double { relativeError(a, b.map(Double.init)) }

final class GenerateTests: XCTestCase {
    static let cases = ["llama_gqa_untied", "qwen2_bias_lora_only", "mistral_embed_lm_head", "llama_tied_rslora_regex", "qwen3_qk_norm",
                        "smollm3_nope", "phi3_fused_longrope", "mistral_sliding_window", "gemma3_sliding",
                        "gemma3_softcap"]

    /// Greedy ids equal transformers' `generate` exactly, with and without an EOS
    /// (GQA, biases, tied embeddings, LoRA on the embedding and lm_head, llama3 RoPE).
    func testGreedyIDsEqualTransformers() throws {
        for name in Self.cases {
            let gc = try GenerateCase(name)
            let gen = try Generator(model: try gc.model(), chunkTokens: 8)   // the 23-token prompt runs in 3 chunks
            for run in gc.runs {
                var streamed: [Int] = []
                let r = try gen.generate(prompt: run.prompt,
                                         options: GenerationOptions(maxNewTokens: gc.maxNewTokens,
                                                                    stopIDs: Set(run.eos.map { [$0] } ?? [])),
                                         onToken: { streamed.append($0) })
                XCTAssertEqual(r.tokens, run.expected, "\(name): prompt \(run.prompt) eos \(String(describing: run.eos))")
                XCTAssertEqual(streamed, r.tokens, "\(name): onToken sees every token")
                if let eos = run.eos {
                    XCTAssertEqual(r.stopReason, .stopToken(eos), "\(name): stops at the EOS id")
                    XCTAssertEqual(r.tokens.last, eos)
                } else {
                    XCTAssertEqual(r.stopReason, .maxNewTokens)
                }
            }
        }
    }

    /// Review finding: a Generator reused across prompts that share a prefix, after a run that passed LongRoPE's
    /// original length (its cache rotated with the long factors), answers as a fresh one does — the kept prefix is
    /// recomputed with the factors the new run needs, not dropped.
    func testLongRopeCacheReusedAcrossPromptsEqualsAFreshOne() throws {
        let gc = try GenerateCase("phi3_fused_longrope")
        let options = GenerationOptions(maxNewTokens: 20, stopIDs: [])
        let reused = try Generator(model: try gc.model(), chunkTokens: 8)
        _ = try reused.generate(prompt: [5, 6, 7], options: options, onToken: { _ in })   // 23 positions: long factors
        for prompt in [[5, 6, 7, 8], [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21]] {
            let fresh = try Generator(model: try gc.model(), chunkTokens: 8)
            let a = try reused.generate(prompt: prompt, options: GenerationOptions(maxNewTokens: 6, stopIDs: []), onToken: { _ in })
            let b = try fresh.generate(prompt: prompt, options: GenerationOptions(maxNewTokens: 6, stopIDs: []), onToken: { _ in })
            XCTAssertEqual(a.tokens, b.tokens, "prompt of \(prompt.count)")
        }
    }

    /// The logits of every greedy step equal transformers' (output_logits).
    func testStepLogitsEqualTransformers() throws {
        for name in Self.cases {
            let gc = try GenerateCase(name)
            let ref = try SafeTensorsFile(path: generateRoot + "/\(name)/logits_first_prompt.safetensors").floats("logits")
            let V = ref.shape[1]
            var steps: [[Float]] = []
            let gen = try Generator(model: try gc.model())
            _ = try gen.generate(prompt: gc.runs[0].prompt, options: GenerationOptions(maxNewTokens: gc.maxNewTokens),
                                 onLogits: { steps.append($0) })
            XCTAssertEqual(steps.count, ref.shape[0])
            for (s, ours) in steps.enumerated() {
                let e = relErr(ours, Array(ref.values[(s * V)..<((s + 1) * V)]))
                XCTAssertLessThanOrEqual(e, 1e-5, "\(name): logits of step \(s), relative error \(e)")
            }
        }
    }

    /// Prefill (in chunks) then single-token decode steps give the full forward's
    /// logits at every position (Phi-3's 23-token prompt is past original_max_position_embeddings 16: both take the
    /// long factors throughout).
    func testPrefillAndDecodeEqualTheFullForward() throws {
        for name in ["llama_gqa_untied", "mistral_embed_lm_head", "qwen2_bias_lora_only", "qwen3_qk_norm", "smollm3_nope", "mistral_sliding_window",
                     "gemma3_sliding", "gemma3_softcap", "phi3_fused_longrope"] {
            let gc = try GenerateCase(name)
            let m = try gc.model()
            let seq = gc.runs[2].prompt + gc.runs[2].expected   // 23 + 20 tokens
            let full = try m.logits(try TokenBatch(inputIDs: [seq]))
            let V = m.config.vocabSize
            for chunk in [5, 16, 64] {
                let session = try InferenceSession(model: m, maxTokens: seq.count, chunkTokens: chunk)
                var ours = try session.appendReturningAllLogits(Array(seq[0..<23]))
                for t in seq[23...] {
                    let last = try session.append([t])
                    ours += last
                }
                XCTAssertEqual(ours.count, seq.count * V)
                for pos in 0..<seq.count {
                    let e = relErr(Array(ours[(pos * V)..<((pos + 1) * V)]), Array(full[(pos * V)..<((pos + 1) * V)]))
                    XCTAssertLessThanOrEqual(e, 1e-5, "\(name) chunk \(chunk): position \(pos), relative error \(e)")
                }
                XCTAssertEqual(session.length, seq.count)
                XCTAssertThrowsError(try session.append([1])) { e in
                    XCTAssertEqual(e as? InferenceError, .tooLong(tokens: seq.count + 1, limit: seq.count, what: "the session's length"))
                }
            }
        }
    }

    /// The unmerged adapter equals W + s·B·A merged by hand into a copy of the
    /// checkpoint (logits of every step, and transformers' merge_and_unload ids).
    func testUnmergedEqualsMergedByHand() throws {
        let gc = try GenerateCase("llama_gqa_untied")
        let unmerged = try gc.model()
        let dir = URL(fileURLWithPath: try temporaryDirectory("merged"))
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.copyItem(atPath: gc.modelDir + "/config.json", toPath: dir.appendingPathComponent("config.json").path)
        let store = try CheckpointStore(directory: gc.modelDir)
        let adapter = try unmerged.adapterTensors()
        let lora = try gc.lora()
        var tensors: [(name: String, shape: [Int], values: [Float])] = []
        var merged = 0
        for name in store.names {
            let info = try XCTUnwrap(store.info(name))
            XCTAssertEqual(info.dtype, .f32, "the fixture checkpoint is fp32")
            let t = try store.tensor(name, shape: info.shape)
            var w = Array(t.bytes.bindMemory(to: Float.self))
            let module = String(name.dropLast(".weight".count))
            if let a = adapter["base_model.model." + module + ".lora_A.weight"],
               let b = adapter["base_model.model." + module + ".lora_B.weight"] {
                let (r, alpha) = lora.rankAndAlpha(for: module)
                let s = lora.useRSLoRA ? alpha / Double(r).squareRoot() : alpha / Double(r)
                let (out, inF) = (info.shape[0], info.shape[1])
                let ba = Reference.matmul(b.values, a.values, m: out, n: inF, k: r)
                for i in 0..<(out * inF) { w[i] = Float(Double(w[i]) + s * ba[i]) }
                merged += 1
            }
            tensors.append((name, info.shape, w))
        }
        XCTAssertEqual(merged, unmerged.adaptedModules.count, "every adapted module merged")
        try SafeTensorsWriter.write(tensors, to: dir.appendingPathComponent("model.safetensors").path)
        // The same LoRA layout with B = 0 (PEFT's default init): the adapter adds nothing.
        var zero = lora
        zero.initLoraWeights = .kaiming
        let base = try LlamaLoRAModel(modelDirectory: dir.path, lora: zero, context: try ComputeContext.shared())
        var stepsU: [[Float]] = [], stepsM: [[Float]] = []
        let opts = GenerationOptions(maxNewTokens: gc.maxNewTokens)
        let prompt = gc.runs[0].prompt
        let ru = try Generator(model: unmerged).generate(prompt: prompt, options: opts, onLogits: { stepsU.append($0) })
        let rm = try Generator(model: base).generate(prompt: prompt, options: opts, onLogits: { stepsM.append($0) })
        XCTAssertEqual(ru.tokens, rm.tokens)
        XCTAssertEqual(rm.tokens, gc.mergedExpected, "transformers' merge_and_unload generates the same")
        for (s, (u, m)) in zip(stepsU, stepsM).enumerated() {
            XCTAssertLessThanOrEqual(relErr(u, m), 1e-5, "step \(s): unmerged vs merged logits")
        }
    }

    /// A prompt that extends the cached conversation only runs its new tokens and
    /// generates what a fresh session does.
    func testCachedPrefixIsReused() throws {
        let gc = try GenerateCase("llama_gqa_untied")
        let gen = try Generator(model: try gc.model())
        let prompt = gc.runs[1].prompt
        let first = try gen.generate(prompt: prompt, options: GenerationOptions(maxNewTokens: 20))
        XCTAssertEqual(first.prefilledTokens, prompt.count)
        XCTAssertEqual(gen.session?.maxTokens, 25, "sized for prompt + max_new_tokens")
        let opts = GenerationOptions(maxNewTokens: 6)
        let longer = prompt + first.tokens[0..<6] + [7, 9]
        let second = try gen.generate(prompt: longer, options: opts)
        XCTAssertEqual(second.prefilledTokens, 2, "the cache held the prompt and the first generated tokens")
        let fresh = try Generator(model: try gc.model()).generate(prompt: longer, options: opts)
        XCTAssertEqual(second.tokens, fresh.tokens)
        // A different conversation: only the shared first token is kept.
        let other = try gen.generate(prompt: [prompt[0], 5, 6], options: opts)
        XCTAssertEqual(other.prefilledTokens, 2)
        let otherFresh = try Generator(model: try gc.model()).generate(prompt: [prompt[0], 5, 6], options: opts)
        XCTAssertEqual(other.tokens, otherFresh.tokens)
    }

    /// The cache grows (at least doubling) when a conversation outgrows it, up to the model's limit,
    /// keeping what it held (`generate --chat`'s second turn runs only its new tokens).
    func testSessionGrowsWithTheConversation() throws {
        let gc = try GenerateCase("llama_gqa_untied")
        let gen = try Generator(model: try gc.model())
        let opts = GenerationOptions(maxNewTokens: 6)
        let a = try gen.generate(prompt: gc.runs[1].prompt, options: opts)
        XCTAssertEqual(gen.session?.maxTokens, 16)
        let longer = gc.runs[1].prompt + a.tokens + [1, 2, 3, 4]
        let b = try gen.generate(prompt: longer, options: opts)
        XCTAssertEqual(gen.session?.maxTokens, 32)
        // Issue 22: the conversation moves into the larger cache; only what was not cached runs (the
        // first call's last token was generated but never fed, and the four new ones).
        XCTAssertEqual(b.prefilledTokens, longer.count - (gc.runs[1].prompt.count + a.tokens.count - 1))
        XCTAssertEqual(b.prefilledTokens, 5)
        XCTAssertEqual(b.tokens, try Generator(model: try gc.model()).generate(prompt: longer, options: opts).tokens)
        _ = try gen.generate(prompt: longer, options: GenerationOptions(maxNewTokens: 1000))
        XCTAssertEqual(gen.session?.maxTokens, 64, "capped at max_position_embeddings")
        XCTAssertThrowsError(try Generator(model: try gc.model(), maxLength: 65)) { e in
            XCTAssertTrue("\(e)".contains("must be in 2...64"), "\(e)")
        }
    }

    /// A training step between two calls: the next call uses the new adapter
    /// (repacked, cache dropped), as a fresh generator on the trained model does.
    func testTrainingBetweenCallsIsNoticed() throws {
        let gc = try GenerateCase("llama_gqa_untied")
        var lora = try gc.lora()
        lora.inferenceMode = false
        let m = try LlamaLoRAModel(modelDirectory: gc.modelDir, lora: lora, context: try ComputeContext.shared())
        try m.loadAdapter(directory: gc.adapterDir)
        let gen = try Generator(model: m)
        let prompt = gc.runs[2].prompt
        var before: [[Float]] = [], after: [[Float]] = [], fresh: [[Float]] = []
        let opts = GenerationOptions(maxNewTokens: 4)
        _ = try gen.generate(prompt: prompt, options: opts, onLogits: { before.append($0) })
        for _ in 0..<3 {
            _ = try m.trainStep(try TokenBatch(inputIDs: [prompt]), hyper: .init(lr: 0.05))
        }
        let a = try gen.generate(prompt: prompt, options: opts, onLogits: { after.append($0) })
        XCTAssertEqual(a.prefilledTokens, prompt.count, "the old cache is dropped")
        let f = try Generator(model: m).generate(prompt: prompt, options: opts, onLogits: { fresh.append($0) })
        XCTAssertEqual(a.tokens, f.tokens)
        XCTAssertGreaterThan(relErr(after[0], before[0]), 1e-3, "training changed the logits")
        for (x, y) in zip(after, fresh) { XCTAssertLessThanOrEqual(relErr(x, y), 1e-6) }
    }

    func testSamplingIsSeededAndTopKOneIsGreedy() throws {
        let gc = try GenerateCase("llama_tied_rslora_regex")
        let gen = try Generator(model: try gc.model())
        let prompt = gc.runs[1].prompt
        func sample(_ s: SamplingOptions) throws -> [Int] {
            try gen.generate(prompt: prompt, options: GenerationOptions(maxNewTokens: 16, sampling: s)).tokens
        }
        let s1 = SamplingOptions(temperature: 1.5, topK: 40, topP: 0.95, seed: 123)
        let a = try sample(s1), b = try sample(s1)
        XCTAssertEqual(a, b, "the same seed gives the same tokens")
        let others = try (1...4).map { try sample(SamplingOptions(temperature: 1.5, topK: 40, topP: 0.95, seed: 1000 + UInt64($0))) }
        XCTAssertTrue(others.contains { $0 != a }, "other seeds give other tokens")
        XCTAssertEqual(try sample(SamplingOptions(temperature: 1, topK: 1, seed: 9)), gc.runs[1].expected.prefix(16).map { $0 },
                       "top-k = 1 is greedy")
        XCTAssertEqual(try sample(SamplingOptions(temperature: 0.7, topP: 1e-6, seed: 9)), gc.runs[1].expected.prefix(16).map { $0 },
                       "a tiny top-p keeps only the argmax")
    }

    func testStopIDsAndLimits() throws {
        let gc = try GenerateCase("llama_tied_rslora_regex")
        let gen = try Generator(model: try gc.model())
        let run = gc.runs[0]
        // Any of several stop ids ends generation at its first occurrence.
        let stops: Set<Int> = [run.expected[4], 66]
        let r = try gen.generate(prompt: run.prompt, options: GenerationOptions(maxNewTokens: 20, stopIDs: stops))
        let firstStop = run.expected.firstIndex { stops.contains($0) }!
        XCTAssertEqual(r.tokens, Array(run.expected[0...firstStop]))
        XCTAssertEqual(r.stopReason, .stopToken(run.expected[firstStop]))
        let short = try gen.generate(prompt: run.prompt, options: GenerationOptions(maxNewTokens: 3))
        XCTAssertEqual(short.tokens, Array(run.expected[0..<3]))
        XCTAssertEqual(try gen.generate(prompt: run.prompt, options: GenerationOptions(maxNewTokens: 0)).tokens, [])
        // The model's 64 positions: generation stops when the cache is full.
        let long = try gen.generate(prompt: Array(repeating: 5, count: 60), options: GenerationOptions(maxNewTokens: 20))
        XCTAssertEqual(long.tokens.count, 4, "60 + 4 = 64 positions")
        XCTAssertEqual(long.stopReason, .maxLength)
        XCTAssertThrowsError(try gen.generate(prompt: Array(repeating: 5, count: 64), options: GenerationOptions())) { e in
            XCTAssertEqual(e as? GenerationError, .promptTooLong(tokens: 64, limit: 64))
        }
        XCTAssertThrowsError(try gen.generate(prompt: [67], options: GenerationOptions())) { e in
            XCTAssertEqual(e as? InferenceError, .tokenOutOfVocabulary(id: 67, vocabSize: 67))
        }
        for bad in [SamplingOptions(temperature: -1), SamplingOptions(temperature: 1, topK: -2),
                    SamplingOptions(temperature: 1, topP: 0), SamplingOptions(temperature: 1, topP: 1.5)] {
            XCTAssertThrowsError(try gen.generate(prompt: [1], options: GenerationOptions(sampling: bad)), "\(bad)")
        }
        XCTAssertEqual(try ModelStopIDs.load(modelDirectory: gc.modelDir), [2])
    }

    /// temperature → top-k → top-p exactly as transformers' warpers. Where equal
    /// logits straddle the top-p cut, torch's unstable sort decides which of them
    /// survive (we keep the later indices): there the kept multiset must match
    /// and every untied token must match exactly.
    func testWarpersEqualTransformers() throws {
        let file = try SafeTensorsFile(path: generateRoot + "/warpers.safetensors")
        let data = try Data(contentsOf: URL(fileURLWithPath: generateRoot + "/warpers.json"))
        let combos = try XCTUnwrap((try JSONSerialization.jsonObject(with: data) as? [String: Any])?["combos"] as? [[String: Any]])
        let logits = try file.floats("logits")
        let (rows, V) = (logits.shape[0], logits.shape[1])
        var tieCases = 0
        for (i, c) in combos.enumerated() {
            let o = SamplingOptions(temperature: (c["temperature"] as? Double) ?? 1, topK: c["top_k"] as? Int,
                                    topP: c["top_p"] as? Double)
            let expect = try file.floats("warped_\(i)").values
            for r in 0..<rows {
                let row = Array(logits.values[(r * V)..<((r + 1) * V)])
                let ours = Sampler.warp(row, o)
                let theirs = (0..<V).map { Double(expect[r * V + $0]) }
                let kept = { (xs: [Double]) in xs.filter { $0 > -.infinity }.sorted() }
                XCTAssertEqual(kept(ours).count, kept(theirs).count, "combo \(c) row \(r): tokens kept")
                for (a, b) in zip(kept(ours), kept(theirs)) { XCTAssertEqual(a, b, accuracy: 1e-6 * max(1, abs(b))) }
                for j in 0..<V {
                    let tied = row.indices.contains { $0 != j && row[$0] == row[j] }
                    if tied && o.topP != nil && (ours[j] == -.infinity) != (theirs[j] == -.infinity) { tieCases += 1; continue }
                    if theirs[j] == -.infinity {
                        XCTAssertEqual(ours[j], -.infinity, "combo \(c) row \(r) token \(j): kept, transformers removes it")
                    } else {
                        XCTAssertEqual(ours[j], theirs[j], accuracy: 1e-6 * max(1, abs(theirs[j])), "combo \(c) row \(r) token \(j)")
                    }
                }
            }
        }
        print("warpers: \(tieCases) tied tokens where only the kept count is comparable")
    }

    /// Multi-byte characters split across tokens are emitted whole, once.
    func testTextStreamNeverSplitsACharacter() throws {
        // A byte-level "tokenizer": token id = one byte.
        let text = "aé€😀 ok ñ"
        let bytes = Array(text.utf8)
        var stream = TextStream { ids in String(decoding: ids.map { UInt8($0) }, as: UTF8.self) }
        var pieces: [String] = []
        for b in bytes { pieces.append(try stream.push(Int(b))) }
        pieces.append(try stream.finish())
        XCTAssertEqual(pieces.joined(), text)
        XCTAssertFalse(pieces.contains { $0.contains("\u{FFFD}") }, "\(pieces)")
        XCTAssertEqual(pieces.filter { !$0.isEmpty }.count, text.unicodeScalars.count, "one piece per character")
        // A truncated character is flushed (as U+FFFD) by finish.
        var cut = TextStream { ids in String(decoding: ids.map { UInt8($0) }, as: UTF8.self) }
        XCTAssertEqual(try cut.push(0x61), "a")
        XCTAssertEqual(try cut.push(0xE2), "")
        XCTAssertEqual(try cut.finish(), "\u{FFFD}")
    }
}
