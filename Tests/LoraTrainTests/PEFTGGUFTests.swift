import Foundation
import LoraModel
import LoraOps
import LoraTrain
import Reference
import XCTest

/// An adapter trained by `lora-gpu train` on a GGUF base, loaded by the real PEFT on the same model's
/// Hugging Face safetensors (scripts/check_peft_gguf.py → Tests/Fixtures/peft_gguf/): the adapter uses
/// the HF module names, and our model with it (built from the GGUF file or from the HF directory) gives
/// PEFT's logits.
final class PEFTGGUFTests: XCTestCase {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/peft_gguf").path

    func testAdapterTrainedOnGGUFLoadsInPEFTOnTheSafetensorsModel() throws {
        let dir = Self.dir
        let meta = try XCTUnwrap(
            try JSONSerialization.jsonObject(with: try Data(contentsOf: URL(fileURLWithPath: dir + "/peft_gguf.json")))
                as? [String: Any])
        // What the script saw: HF/PEFT key names only, PEFT loaded every tensor unchanged, the GGUF and the
        // safetensors are the same model to transformers, and the adapter moves the logits.
        XCTAssertEqual(meta["ok"] as? Bool, true)
        let keys = try XCTUnwrap(meta["adapter_keys"] as? [String: Any])
        XCTAssertEqual(keys["all_hf_peft_names"] as? Bool, true)
        XCTAssertEqual(keys["expected_set"] as? Bool, true)
        XCTAssertEqual((keys["gguf_names"] as? [String])?.isEmpty, true)
        let loaded = try XCTUnwrap(meta["loaded"] as? [String: Any])
        XCTAssertEqual(loaded["same_keys"] as? Bool, true)
        XCTAssertEqual(loaded["identical"] as? Bool, true)
        XCTAssertEqual(Set(try XCTUnwrap(loaded["adapted_modules"] as? [String])),
                       ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
        let same = try XCTUnwrap(meta["gguf_vs_hf_base"] as? [String: Any])
        XCTAssertLessThanOrEqual(try XCTUnwrap(same["relative_norm"] as? Double), 1e-6)

        // The committed adapter file itself: every key is a PEFT name of an HF module, none a GGUF name.
        let adapter = dir + "/adapter"
        let names = try SafeTensorsFile(path: adapter + "/adapter_model.safetensors").tensors.keys
        XCTAssertEqual(names.count, 28)
        for n in names {
            XCTAssertTrue(n.hasPrefix("base_model.model.model.layers."), n)
            XCTAssertTrue(n.hasSuffix(".lora_A.weight") || n.hasSuffix(".lora_B.weight"), n)
            XCTAssertFalse(n.contains("blk.") || n.contains("attn_") || n.contains("ffn_"), n)
        }

        let ids = try XCTUnwrap(meta["input_ids"] as? [[Int]])
        let vocab = try XCTUnwrap(meta["vocab_size"] as? Int)
        let lora = try LoraConfig.load(path: adapter + "/adapter_config.json")
        XCTAssertEqual(lora.loraDropout, 0)
        let peft = try SafeTensorsFile(path: dir + "/logits.safetensors").floats("logits")
        XCTAssertEqual(peft.shape, [ids.count, ids[0].count, vocab])
        let want = peft.values.map(Double.init)

        for base in [dir + "/model.gguf", dir + "/hf_model"] {
            let model = try LlamaLoRAModel(modelDirectory: base, lora: lora, context: try ComputeContext.shared())
            try model.loadAdapter(directory: adapter)
            let e = relativeError(try model.logits(try TokenBatch(inputIDs: ids)), want)
            print("PEFTGGUFTests: \(URL(fileURLWithPath: base).lastPathComponent): relative error of our logits against PEFT's: \(e)")
            XCTAssertLessThanOrEqual(e, 1e-5, "\(base) with the adapter trained on the GGUF vs PEFT's: relative error \(e)")
            // The adapter matters: without it the logits are far from PEFT's.
            let plain = try LlamaLoRAModel(modelDirectory: base, lora: lora, context: try ComputeContext.shared())
            let e0 = relativeError(try plain.logits(try TokenBatch(inputIDs: ids)), want)
            XCTAssertGreaterThan(e0, 1e3 * max(e, 1e-9), "\(base) without the adapter: relative error \(e0)")
        }
    }
}
