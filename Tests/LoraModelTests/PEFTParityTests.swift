import Foundation
@testable import LoraModel
import LoraOps
import Reference
import XCTest

/// Fixtures made by scripts/make_reference.py with torch + transformers + PEFT.
let fixturesRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Fixtures/reference").path

/// The task-head fixtures (scripts/make_task_fixtures.py), in the same shape.
let taskFixturesRoot = URL(fileURLWithPath: fixturesRoot).deletingLastPathComponent().appendingPathComponent("tasks").path

struct ReferenceCase {
    let name: String
    let root: String
    var dir: String { root + "/" + name }
    let json: [String: Any]

    init(_ name: String, root: String = fixturesRoot) throws {
        self.name = name
        self.root = root
        let data = try Data(contentsOf: URL(fileURLWithPath: root + "/\(name)/reference.json"))
        json = try JSONSerialization.jsonObject(with: data) as! [String: Any]
    }

    var batch: TokenBatch {
        get throws {
            let ids = json["input_ids"] as! [[Int]]
            if json["task_type"] as? String == "FEATURE_EXTRACTION" {
                // Rows: anchors, positives (, negatives), right-padded; "labels" holds each row's length.
                let c = json["contrastive"] as! [String: Any], B = (c["anchors"] as! NSNumber).intValue
                let lengths = json["labels"] as! [Int]
                let rows = zip(ids, lengths).map { Array($0.prefix($1)) }
                return try TokenBatch.contrastive(anchors: Array(rows[0..<B]), positives: Array(rows[B..<(2 * B)]),
                                                  negatives: rows.count > 2 * B ? Array(rows[(2 * B)...]) : nil, padTokenID: 0,
                                                  pooling: Pooling(rawValue: c["pooling"] as! String)!,
                                                  scale: (c["scale"] as! NSNumber).floatValue)
            }
            if json["task_type"] as? String == "QUESTION_ANS" {
                let spans = (json["labels"] as! [[Int]]).map { (start: $0[0], end: $0[1]) }
                return try TokenBatch.questionAnswering(inputIDs: ids, spans: spans)
            }
            if json["task_type"] as? String == "TOKEN_CLS" {
                return try TokenBatch.tokenClassification(inputIDs: ids, labels: json["labels"] as! [[Int]])
            }
            guard let problem = json["problem_type"] as? String else {
                return try TokenBatch(inputIDs: ids, labels: json["labels"] as? [[Int]])
            }
            // A sequence classifier: labels per row, read where transformers reads (config's pad_token_id).
            let pad = try ModelConfig.load(directory: dir + "/model").padTokenID
            let labels = json["labels"] as! [Any]
            let targets: TokenBatch.ClassTargets
            switch problem {
            case "single_label_classification": targets = .classes(labels.map { ($0 as! NSNumber).intValue })
            case "regression": targets = .reals(labels.map { [($0 as! NSNumber).floatValue] })
            default: targets = .reals(labels.map { ($0 as! [NSNumber]).map(\.floatValue) })
            }
            return try TokenBatch.sequenceClassification(inputIDs: ids, padTokenID: pad, targets: targets)
        }
    }
    var losses: [Double] { (json["losses"] as! [NSNumber]).map(\.doubleValue) }
    var gradNorms: [Double] { (json["grad_norms"] as! [NSNumber]).map(\.doubleValue) }
    var train: [String: Any] { json["train"] as! [String: Any] }
    var hyper: ComputeContext.AdamWHyper {
        let t = train, betas = (t["betas"] as! [NSNumber]).map(\.floatValue)
        return .init(lr: (t["lr"] as! NSNumber).floatValue, beta1: betas[0], beta2: betas[1],
                     eps: (t["eps"] as! NSNumber).floatValue, weightDecay: (t["weight_decay"] as! NSNumber).floatValue,
                     maxGradNorm: (t["max_grad_norm"] as! NSNumber).floatValue)
    }

    /// The model with the initial adapter loaded, set up to train.
    /// `bufferLimitBytes`: frozen weights past it are kept in parts (nil: the device's limit).
    func model(checkpointing: Bool = false, bufferLimitBytes: Int? = nil) throws -> LlamaLoRAModel {
        var lora = try LoraConfig.load(path: dir + "/adapter_initial/adapter_config.json")
        lora.inferenceMode = false  // PEFT saves adapters with inference_mode = true
        var (config, source) = try ModelSource.open(dir + "/model")
        if lora.taskType == "FEATURE_EXTRACTION" { config.task = .featureExtraction }   // the causal checkpoint's trunk
        let m = try LlamaLoRAModel(config: config, checkpoint: source, lora: lora, context: try ComputeContext.shared(),
                                   bufferLimitBytes: bufferLimitBytes)
        m.gradientCheckpointing = checkpointing
        try m.loadAdapter(directory: dir + "/adapter_initial")
        return m
    }
}

func relErr(_ a: [Float], _ b: [Float]) -> Double {
    relativeError(a, b.map(Double.init))
}

/// The checks against PyTorch + PEFT's fixtures, for any test class (SplitModelTests runs them on split weights).
extension XCTestCase {
    func checkLogitsAndLoss(_ rc: ReferenceCase, bufferLimitBytes: Int? = nil) throws {
        let m = try rc.model(bufferLimitBytes: bufferLimitBytes)
        let b = try rc.batch
        let logits = try m.logits(b)
        let ref = try SafeTensorsFile(path: rc.dir + "/logits_step0.safetensors").floats("logits").values
        let e = relErr(logits, ref)
        XCTAssertLessThanOrEqual(e, 1e-5, "\(rc.name): logits relative error \(e)")
        let loss = try m.loss(b)
        XCTAssertEqual(Double(loss), rc.losses[0], accuracy: 1e-5 * rc.losses[0], "\(rc.name): loss")
    }

    func checkGradients(_ rc: ReferenceCase, checkpointing: Bool = false, bufferLimitBytes: Int? = nil) throws {
        let m = try rc.model(checkpointing: checkpointing, bufferLimitBytes: bufferLimitBytes)
        let loss = try m.computeGradients(try rc.batch)
        XCTAssertEqual(Double(loss), rc.losses[0], accuracy: 1e-5 * rc.losses[0], "\(rc.name): training-mode loss")
        let grads = try m.gradientTensors()
        let ref = try SafeTensorsFile(path: rc.dir + "/grads_step0.safetensors")
        XCTAssertEqual(Set(grads.keys), Set(ref.tensors.keys), "\(rc.name): trainable tensors differ from PEFT's")
        for (key, g) in grads.sorted(by: { $0.key < $1.key }) {
            guard ref.tensors[key] != nil else { continue }
            let r = try ref.floats(key).values
            let e = relErr(g, r)
            if ProcessInfo.processInfo.environment["PARITY_VERBOSE"] != nil {
                let maxAbs = zip(g, r).map { abs(Double($0) - Double($1)) }.max()!
                let minRef = r.map { abs($0) }.min()!
                print("GRAD \(rc.name) \(key) rel \(e) maxAbsErr \(maxAbs) min|ref| \(minRef)")
            }
            // A gradient that is zero in exact arithmetic (qa_outputs' bias: a constant added to every
            // position's logit leaves the softmax unchanged) is fp32 rounding on both sides: compare absolutely.
            if r.allSatisfy({ abs($0) < 1e-6 }) {
                let maxAbs = zip(g, r).map { abs(Double($0) - Double($1)) }.max() ?? 0
                XCTAssertLessThanOrEqual(maxAbs, 1e-6, "\(rc.name): gradient \(key), zero in exact arithmetic, is \(maxAbs) away")
                continue
            }
            XCTAssertLessThanOrEqual(e, 1e-4, "\(rc.name) ckpt=\(checkpointing): gradient \(key) relative error \(e)")
        }
    }

    /// A task fixture (scripts/make_task_fixtures.py): logits and loss, gradients, three
    /// AdamW steps and PEFT's trainable-parameter line; returns the model at the initial adapter.
    @discardableResult
    func checkTaskCase(_ name: String) throws -> LlamaLoRAModel {
        let rc = try ReferenceCase(name, root: taskFixturesRoot)
        try checkLogitsAndLoss(rc)
        try checkGradients(rc)
        try checkTraining(rc)
        let m = try rc.model()
        XCTAssertEqual(m.adapterPlan.trainableLine, rc.json["trainable_line"] as? String, name)
        return m
    }

    func checkTraining(_ rc: ReferenceCase, bufferLimitBytes: Int? = nil) throws {
        let m = try rc.model(bufferLimitBytes: bufferLimitBytes)
        let b = try rc.batch
        let steps = (rc.train["steps"] as! NSNumber).intValue
        for s in 0..<steps {
            let r = try m.trainStep(b, hyper: rc.hyper)
            if ProcessInfo.processInfo.environment["PARITY_VERBOSE"] != nil {
                print("STEP \(rc.name) \(s + 1) loss \(r.loss) ref \(rc.losses[s]) norm \(r.gradNorm) ref \(rc.gradNorms[s])")
            }
            // A contrastive loss near 0 is logsumexp over logits of size up to `scale` minus one of them: fp32 rounds
            // it to about scale·2⁻²³ absolute, which a relative 1e-5 of a loss of 0.002 is below.
            let floor = ((rc.json["contrastive"] as? [String: Any])?["scale"] as? NSNumber).map { $0.doubleValue * 0x1p-23 } ?? 0
            XCTAssertEqual(Double(r.loss), rc.losses[s], accuracy: max(1e-5 * rc.losses[s], floor), "\(rc.name): loss at step \(s + 1)")
            XCTAssertEqual(Double(r.gradNorm), rc.gradNorms[s], accuracy: 1e-4 * rc.gradNorms[s], "\(rc.name): grad norm at step \(s + 1)")
        }
        let final = try SafeTensorsFile(path: rc.dir + "/adapter_final/adapter_model.safetensors")
        let exact = try SafeTensorsFile(path: rc.dir + "/adapter_final_f64.safetensors")
        let torchError = rc.json["torch_fp32_vs_fp64"] as! [String: NSNumber]
        let grads = try SafeTensorsFile(path: rc.dir + "/grads_step0.safetensors")
        for (key, t) in try m.adapterTensors().sorted(by: { $0.key < $1.key }) {
            let e = relErr(t.values, try final.floats(key).values)
            let torchOwn = torchError[key]!.doubleValue
            // A tensor whose gradient is zero in exact arithmetic (qa_outputs' bias: a constant on every
            // position's logit leaves the softmax unchanged) moves by Adam's normalised fp32 noise, up to lr a
            // step on either side, in PyTorch's run and ours alike: it must stay within that of fp64's.
            if key.hasSuffix("qa_outputs.bias"), try grads.floats(key).values.allSatisfy({ abs($0) < 1e-6 }) {
                let exactValues = try exact.floats(key).values
                let maxAbs = zip(t.values, exactValues).map { abs(Double($0) - Double($1)) }.max() ?? 0
                XCTAssertLessThanOrEqual(maxAbs, Double(steps) * Double(rc.hyper.lr) * 1.01,
                                         "\(rc.name): \(key), zero gradient in exact arithmetic, moved \(maxAbs) from fp64's")
                continue
            }
            if torchOwn <= 1e-5 {
                // Well-conditioned: PyTorch fp32 is itself within 1e-5 of fp64, so we must be within 1e-4 of it.
                XCTAssertLessThanOrEqual(e, 1e-4, "\(rc.name): adapter tensor \(key) after \(steps) steps, relative error \(e)")
            } else {
                // A gradient element near Adam's eps makes this tensor ill-conditioned for any fp32
                // run (PyTorch's own fp32 run is \(torchOwn) from fp64): we must be no further from
                // the fp64 answer than twice PyTorch's fp32 run is.
                let eExact = relErr(t.values, try exact.floats(key).values)
                XCTAssertLessThanOrEqual(eExact, max(1e-4, 2 * torchOwn),
                                         "\(rc.name): ill-conditioned tensor \(key): \(eExact) from fp64, PyTorch fp32 \(torchOwn)")
            }
        }
    }
}

/// TOKEN_CLS heads (score with a bias on every token) against transformers + PEFT.
final class TokenClassificationParityTests: XCTestCase {
    func runCase(_ name: String) throws {
        let m = try checkTaskCase(name)
        XCTAssertEqual(m.lmHead.trainedBias?.key, "base_model.model.score.bias")
    }

    func testLlamaFiveTags() throws { try runCase("llama_token_cls") }
    func testQwen2ThreeTagsBiasLoraOnlyBF16() throws { try runCase("qwen2_token_cls") }

    /// Dropout before score (classifier_dropout): the same mask scales the hidden
    /// states forward and dhf backward, so the gradient is the derivative of the
    /// loss the step computed (finite differences on score's bias with a fixed seed).
    func testHeadDropoutIsDifferentiatedConsistently() throws {
        let rc = try ReferenceCase("llama_token_cls", root: taskFixturesRoot)
        var c = try ModelConfig.load(directory: rc.dir + "/model")
        guard case .tokenClassification(var cls) = c.task else { return XCTFail("not a token classifier") }
        cls.dropout = 0.3
        c.task = .tokenClassification(cls)
        var lora = try LoraConfig.load(path: rc.dir + "/adapter_initial/adapter_config.json")
        lora.inferenceMode = false
        let (_, source) = try ModelSource.open(rc.dir + "/model")
        let m = try LlamaLoRAModel(config: c, checkpoint: source, lora: lora, context: try ComputeContext.shared())
        try m.loadAdapter(directory: rc.dir + "/adapter_initial")
        let b = try rc.batch
        let loss0 = try m.computeGradients(b)
        let bias = try XCTUnwrap(m.lmHead.trainedBias)
        let g = try bias.grad.read(), p0 = try bias.param.read()
        // Training-mode loss as a function of the bias, same step (same masks).
        func lossAt(_ p: [Float]) throws -> Float {
            try bias.param.write(p)
            return try m.computeGradients(b)
        }
        let h: Float = 1e-2
        for i in 0..<p0.count {
            var up = p0, down = p0
            up[i] += h; down[i] -= h
            let fd = (try lossAt(up) - lossAt(down)) / (2 * h)
            XCTAssertEqual(fd, g[i], accuracy: 2e-3 + 1e-2 * abs(g[i]), "dL/dbias[\(i)] with dropout 0.3")
        }
        try bias.param.write(p0)
        XCTAssertNotEqual(loss0, try m.loss(b), "dropout changes the training-mode loss, not the eval one")
    }
}

/// FEATURE_EXTRACTION trained contrastively (sentence-transformers' MultipleNegativesRankingLoss on the
/// pooled, normalised hidden states of AutoModel + PEFT): the scaled similarities, the loss, every
/// gradient and three AdamW steps against PyTorch.
final class ContrastiveParityTests: XCTestCase {
    func testLlamaMeanPoolingWithHardNegatives() throws {
        let m = try checkTaskCase("llama_contrastive_mean")
        XCTAssertEqual(m.adapterPlan.key("model.layers.0.self_attn.q_proj", ".lora_A.weight"),
                       "base_model.model.layers.0.self_attn.q_proj.lora_A.weight", "AutoModel's PEFT names: no \"model.\"")
    }

    func testQwen2LastTokenPoolingBiasLoraOnly() throws { try checkTaskCase("qwen2_contrastive_last") }

    /// The bare model's tree as transformers prints AutoModel's (no head).
    func testTreeIsAutoModels() throws {
        for name in ["llama_contrastive_mean", "qwen2_contrastive_last"] {
            var c = try ModelConfig.load(directory: taskFixturesRoot + "/\(name)/model")
            c.task = .featureExtraction
            let expected = try String(contentsOfFile: taskFixturesRoot + "/\(name)/print_model.txt", encoding: .utf8)
            XCTAssertEqual(ModelPrinter.render(c) + "\n", expected, name)
        }
    }
}

/// QUESTION_ANS heads (qa_outputs with a bias; the mean of the start and end
/// cross-entropies over positions) against transformers + PEFT.
final class QuestionAnsweringParityTests: XCTestCase {
    func testLlamaAnswerSpans() throws {
        let m = try checkTaskCase("llama_question_ans")
        XCTAssertEqual(m.lmHead.path, "qa_outputs")
        XCTAssertEqual(m.lora.modulesToSave, ["qa_outputs"])
    }

    /// Qwen2: q/k/v biases trained (bias lora_only), bf16 weights, every projection adapted.
    func testQwen2AnswerSpans() throws {
        let m = try checkTaskCase("qwen2_question_ans")
        XCTAssertEqual(m.lmHead.path, "qa_outputs")
    }

    /// The checkpoint keeps its base under "transformer." (Llama's QA class); the model reads it
    /// under "model." names, and PEFT's adapter keys follow the class's prefix.
    func testTransformerPrefixedCheckpointAndAdapterKeys() throws {
        let rc = try ReferenceCase("llama_question_ans", root: taskFixturesRoot)
        let (config, source) = try ModelSource.open(rc.dir + "/model")
        XCTAssertEqual(config.task, .questionAnswering(inCheckpoint: true))
        XCTAssertTrue(source.contains("model.embed_tokens.weight"))
        XCTAssertTrue(source.tensorNames.contains("model.layers.0.self_attn.q_proj.weight"))
        let plan = try AdapterPlan(config: config, lora: try LoraConfig.load(path: rc.dir + "/adapter_initial"))
        XCTAssertEqual(plan.key("model.layers.1.mlp.down_proj", ".lora_A.weight"),
                       "base_model.model.transformer.layers.1.mlp.down_proj.lora_A.weight")
        XCTAssertEqual(plan.key("qa_outputs", ".bias"), "base_model.model.qa_outputs.bias")
        XCTAssertTrue(AdapterPlan.moduleNames(config).contains("transformer.layers.1.mlp.down_proj"))
        // modules_to_save matches PEFT's names: the embedding is "transformer.embed_tokens" on this class.
        var lora = LoraConfig(r: 4, loraAlpha: 8, targetModules: .list(["q_proj"]), modulesToSave: ["transformer.embed_tokens"])
        lora.taskType = "QUESTION_ANS"
        let saved = try AdapterPlan(config: config, lora: lora)
        XCTAssertTrue(saved.embedSaved)
        XCTAssertTrue(saved.tensors.contains { $0.key == "base_model.model.transformer.embed_tokens.weight" })
        XCTAssertTrue(saved.warnings.isEmpty, "\(saved.warnings)")
    }

    func testPositionsClampAsTransformersDoes() throws {
        let b = try TokenBatch.questionAnswering(inputIDs: [[1, 2, 3], [4, 5, 6]], spans: [(1, 2), (-100, 0)])
        XCTAssertEqual(b.answerPositions, [1, 2, 0, 0], "transformers clamps to [0, T]: −100 is position 0")
        XCTAssertEqual(b.countedTokens, 4)
        XCTAssertThrowsError(try TokenBatch.questionAnswering(inputIDs: [[1, 2, 3]], spans: [(0, 3)])) {
            XCTAssertTrue("\($0)".contains("answer position 3 of row 0 is past the row's 3 tokens"), "\($0)")
        }
    }
}

/// SEQ_CLS heads (single-label, regression, multi-label) against transformers + PEFT.
final class SequenceClassificationParityTests: XCTestCase {
    func runCase(_ name: String) throws { _ = try checkTaskCase(name) }

    func testLlamaThreeClassesPaddedReadout() throws { try runCase("llama_seq_cls") }
    func testQwen2TwoClassesAllLinearBiasLoraOnlyF16() throws { try runCase("qwen2_seq_cls") }
    func testLlamaRegressionMSE() throws { try runCase("llama_regression") }
    func testLlamaMultiLabelBCE() throws { try runCase("llama_multi_label") }

    func testReadoutIsTheRightmostNonPadToken() throws {
        let b = try TokenBatch.sequenceClassification(inputIDs: [[5, 6, 0, 0], [5, 0, 7, 8], [0, 0, 0, 0], [5, 6, 7, 0]],
                                                      padTokenID: 0, targets: .classes([1, 0, 1, -100]))
        XCTAssertEqual(b.readout, [1, 3, 0, 2])
        XCTAssertEqual(b.countedTokens, 3)
        XCTAssertEqual(b.targets[0 * 4 + 1], 1)
        let noPad = try TokenBatch.sequenceClassification(inputIDs: [[5, 6, 0, 0], [5, 0, 7, 8]], padTokenID: nil,
                                                          lengths: [2, 4], targets: .classes([0, 1]))
        XCTAssertEqual(noPad.readout, [1, 3])
    }

    func testTaskTypeAndHeadMustAgree() throws {
        let rc = try ReferenceCase("llama_seq_cls", root: taskFixturesRoot)
        var lora = LoraConfig(r: 4, loraAlpha: 8, targetModules: .list(["q_proj"]))
        XCTAssertThrowsError(try LlamaLoRAModel(modelDirectory: rc.dir + "/model", lora: lora, context: try ComputeContext.shared())) {
            XCTAssertTrue("\($0)".contains("set task_type SEQ_CLS"), "\($0)")
        }
        lora.taskType = "SEQ_CLS"
        let causal = try ReferenceCase("llama_gqa_untied")
        XCTAssertThrowsError(try LlamaLoRAModel(modelDirectory: causal.dir + "/model", lora: lora, context: try ComputeContext.shared())) {
            XCTAssertTrue("\($0)".contains("SEQ_CLS needs its head: a *ForSequenceClassification checkpoint"), "\($0)")
        }
        // A causal checkpoint given a classifier: score is new (N(0, initializer_range²)), lm_head unused.
        let c = try ModelConfig.load(directory: causal.dir + "/model")
            .classifying(SequenceClassifier(labels: ["neg", "pos", "mixed"]))
        let (_, source) = try ModelSource.open(causal.dir + "/model")
        let m = try LlamaLoRAModel(config: c, checkpoint: source, lora: lora, context: try ComputeContext.shared())
        XCTAssertEqual(m.lmHead.path, "score")
        XCTAssertEqual(m.lora.modulesToSave, ["classifier", "score"])
        let w = try m.lmHead.trainedWeight!.param.read()
        XCTAssertEqual(w.count, 3 * c.hiddenSize)
        let std = (w.reduce(0) { $0 + Double($1 * $1) } / Double(w.count)).squareRoot()
        XCTAssertEqual(std, c.initializerRange, accuracy: 0.35 * c.initializerRange)
        let b = try TokenBatch.sequenceClassification(inputIDs: [[1, 2, 3], [4, 5, 0]], padTokenID: 0, targets: .classes([2, 0]))
        XCTAssertEqual(try m.logits(b).count, 2 * 3)
        XCTAssertTrue(try m.loss(b).isFinite)
        XCTAssertThrowsError(try m.loss(try TokenBatch.sequenceClassification(inputIDs: [[1, 2]], padTokenID: 0,
                                                                              targets: .classes([3])))) {
            XCTAssertTrue("\($0)".contains("not a class id (num_labels 3)"), "\($0)")
        }
    }
}

final class PEFTParityTests: XCTestCase {
    static let cases = ["llama_gqa_untied", "llama_tied_rslora_regex", "llama_layers_patterns", "qwen2_bias_lora_only",
                        "llama_modules_to_save", "mistral_embed_lm_head", "llama_bias_all", "qwen3_qk_norm",
                        "smollm3_nope", "phi3_fused_longrope", "phi3_untied_lm_head", "mistral_sliding_window", "qwen2_sliding_layers",
                        "gemma3_sliding", "gemma3_softcap"]

    func runCase(_ name: String) throws {
        let rc = try ReferenceCase(name)
        try checkLogitsAndLoss(rc)
        try checkGradients(rc)
        try checkTraining(rc)
    }

    func testGQAUntied() throws { try runCase("llama_gqa_untied") }
    func testTiedRSLoRARegexLlama3RopeBF16() throws { try runCase("llama_tied_rslora_regex") }
    func testLayersToTransformRankAlphaPatterns() throws { try runCase("llama_layers_patterns") }
    func testQwen2BiasLoraOnlyAllLinearF16() throws { try runCase("qwen2_bias_lora_only") }
    func testModulesToSaveLMHead() throws { try runCase("llama_modules_to_save") }
    func testMistralLoRAOnEmbeddingAndLMHead() throws { try runCase("mistral_embed_lm_head") }
    func testLlamaBiasAll() throws { try runCase("llama_bias_all") }
    /// Qwen3: per-head q/k RMSNorm before RoPE (perturbed norm weights), explicit head_dim 16, tied, bf16, all-linear.
    func testQwen3QKNormAllLinearBF16() throws { try runCase("qwen3_qk_norm") }
    /// SmolLM3: a NoPE layer (no_rope_layers [1, 0]), attention biases trained (lora_only), rank_pattern, tied, f16.
    func testSmolLM3NoPELayerF16() throws { try runCase("smollm3_nope") }
    /// Phi-3: fused qkv_proj / gate_up_proj adapted, partial rotary 0.75, LongRoPE's long factors (20 tokens > 16), tied.
    func testPhi3FusedProjectionsPartialRotaryLongRoPE() throws { try runCase("phi3_fused_longrope") }
    /// Phi-3-mini's layout: an untied lm_head with its own LoRA (besides qkv_proj, o_proj, gate_up_proj, down_proj),
    /// full rotary with default RoPE, bf16.
    func testPhi3UntiedLMHeadBF16() throws { try runCase("phi3_untied_lm_head") }
    /// Sliding-window attention shorter than the sequence: Mistral's window 3 on every layer (20 tokens).
    func testMistralSlidingWindowShorterThanTheSequence() throws { try runCase("mistral_sliding_window") }
    /// Qwen2's use_sliding_window on the layers from max_window_layers (the second of two), window 4, all-linear.
    func testQwen2SlidingWindowOnTheLaterLayers() throws { try runCase("qwen2_sliding_layers") }
    /// Gemma 3: (1 + w) norms (perturbed), four per layer, q/k norms, GeGLU, the √H embedding scale (LoRA on
    /// embed_tokens too), scores scaled by query_pre_attn_scalar 12^-½, a sliding layer (window 4 of 20 tokens, local
    /// RoPE base 10⁴) and a full one (base 10⁶, linear scaling 2), tied, bf16.
    func testGemma3SlidingAndFullLayers() throws { try runCase("gemma3_sliding") }
    /// Gemma 3 with final_logit_softcapping 1.0 (the loss and lm_head's LoRA gradient through the tanh) and
    /// attn_logit_softcapping 50, which transformers does not apply; layers from sliding_window_pattern 3, untied, fp32.
    func testGemma3FinalLogitSoftcapping() throws { try runCase("gemma3_softcap") }

    /// Gemma's activations overflow fp16 (transformers#39972): here the residual stream reaches 1.26e5 (fp16's largest is
    /// 65504; transformers' fp16 forward of this checkpoint gives non-finite logits). The device path keeps every
    /// activation in fp32 (bf16/f16 checkpoints only store the frozen weights narrower, widened in the kernels), so the
    /// logits are finite and equal transformers' fp32 ones.
    func testGemma3ActivationsPastFP16RangeStayExact() throws {
        let dir = fixturesRoot + "/gemma3_sliding/large_activations"
        let expected = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/expected.json"))) as! [String: Any]
        let residual = (expected["residual_max_fp32"] as! [NSNumber]).map(\.doubleValue)
        XCTAssertGreaterThan(residual.max()!, 65504, "the fixture must reach past fp16's range")
        XCTAssertEqual(expected["fp16_logits_finite"] as? Bool, false, "transformers' fp16 forward overflows on this fixture")
        let m = try LlamaLoRAModel(modelDirectory: dir + "/model", lora: LoraConfig(targetModules: .list(["q_proj"])),
                                   context: try ComputeContext.shared())
        let logits = try m.logits(try TokenBatch(inputIDs: [expected["input_ids"] as! [Int]]))
        XCTAssertTrue(logits.allSatisfy(\.isFinite))
        let want = try SafeTensorsFile(path: dir + "/expected.safetensors").floats("logits").values
        let e = relErr(logits, want)
        XCTAssertLessThanOrEqual(e, 1e-5, "logits past fp16's range: relative error \(e)")
    }

    /// A Gemma3ForConditionalGeneration checkpoint (scripts/make_gemma3_conditional.py: a tiny SigLIP tower around
    /// gemma3_sliding's text weights, saved under the Hub's "language_model.model." prefix, the text config nested in
    /// text_config) trains its language model: transformers' text-only logits, and PEFT's module names on that class
    /// ("model.language_model.layers…").
    func testGemma3ConditionalGenerationReadsItsLanguageModel() throws {
        let rc = try ReferenceCase("gemma3_sliding")
        let dir = rc.dir + "/conditional_model"
        let expected = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: rc.dir + "/conditional_expected.json"))) as! [String: Any]
        let (config, source) = try ModelSource.open(dir)
        XCTAssertEqual(config.architecture, .gemma3)
        XCTAssertEqual(config.conditionalClass, "Gemma3ForConditionalGeneration")
        XCTAssertEqual(config.slidingLayers, [true, false])
        XCTAssertTrue(config.tieWordEmbeddings)
        let lora = LoraConfig(targetModules: .list(["q_proj", "down_proj"]))
        let m = try LlamaLoRAModel(config: config, checkpoint: source, lora: lora, context: try ComputeContext.shared())
        let ids = expected["input_ids"] as! [[Int]]
        let want = (expected["text_only_logits"] as! [[[NSNumber]]]).flatMap { $0.flatMap { $0.map(\.floatValue) } }
        let e = relErr(try m.logits(try TokenBatch(inputIDs: ids)), want)
        XCTAssertLessThanOrEqual(e, 1e-5, "conditional: logits relative error \(e)")
        XCTAssertTrue(m.adapterPlan.tensors.map(\.key).contains("base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.weight"),
                      "\(m.adapterPlan.tensors.map(\.key))")
        // The same weights read as the causal checkpoint give the same logits.
        let causal = try LlamaLoRAModel(modelDirectory: rc.dir + "/model", lora: lora, context: try ComputeContext.shared())
        XCTAssertLessThanOrEqual(relErr(try causal.logits(try TokenBatch(inputIDs: ids)), want), 1e-5)
    }

    func testGradientCheckpointingGivesTheSameGradients() throws {
        for name in ["llama_gqa_untied", "mistral_embed_lm_head", "qwen3_qk_norm", "smollm3_nope", "phi3_fused_longrope",
                     "phi3_untied_lm_head", "mistral_sliding_window", "gemma3_sliding", "gemma3_softcap"] {
            try checkGradients(try ReferenceCase(name), checkpointing: true)
        }
    }
}
