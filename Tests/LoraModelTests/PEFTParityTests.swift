import Foundation
@testable import LoraModel
import LoraOps
import Reference
import XCTest

/// Fixtures made by scripts/make_reference.py with torch + transformers + PEFT.
let fixturesRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Fixtures/reference").path

struct ReferenceCase {
    let name: String
    var dir: String { fixturesRoot + "/" + name }
    let json: [String: Any]

    init(_ name: String) throws {
        self.name = name
        let data = try Data(contentsOf: URL(fileURLWithPath: fixturesRoot + "/\(name)/reference.json"))
        json = try JSONSerialization.jsonObject(with: data) as! [String: Any]
    }

    var batch: TokenBatch {
        get throws {
            try TokenBatch(inputIDs: json["input_ids"] as! [[Int]], labels: json["labels"] as? [[Int]])
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
        let m = try LlamaLoRAModel(modelDirectory: dir + "/model", lora: lora, context: try ComputeContext.shared(),
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
            XCTAssertLessThanOrEqual(e, 1e-4, "\(rc.name) ckpt=\(checkpointing): gradient \(key) relative error \(e)")
        }
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
            XCTAssertEqual(Double(r.loss), rc.losses[s], accuracy: 1e-5 * rc.losses[s], "\(rc.name): loss at step \(s + 1)")
            XCTAssertEqual(Double(r.gradNorm), rc.gradNorms[s], accuracy: 1e-4 * rc.gradNorms[s], "\(rc.name): grad norm at step \(s + 1)")
        }
        let final = try SafeTensorsFile(path: rc.dir + "/adapter_final/adapter_model.safetensors")
        let exact = try SafeTensorsFile(path: rc.dir + "/adapter_final_f64.safetensors")
        let torchError = rc.json["torch_fp32_vs_fp64"] as! [String: NSNumber]
        for (key, t) in try m.adapterTensors().sorted(by: { $0.key < $1.key }) {
            let e = relErr(t.values, try final.floats(key).values)
            let torchOwn = torchError[key]!.doubleValue
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

final class PEFTParityTests: XCTestCase {
    static let cases = ["llama_gqa_untied", "llama_tied_rslora_regex", "llama_layers_patterns", "qwen2_bias_lora_only",
                        "llama_modules_to_save", "mistral_embed_lm_head", "llama_bias_all"]

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

    func testGradientCheckpointingGivesTheSameGradients() throws {
        for name in ["llama_gqa_untied", "mistral_embed_lm_head"] {
            try checkGradients(try ReferenceCase(name), checkpointing: true)
        }
    }
}
