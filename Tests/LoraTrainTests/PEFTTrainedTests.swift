import Foundation
import LoraModel
import LoraOps
import LoraTrain
import Reference
import XCTest

/// An adapter trained by `lora-gpu train`, loaded by the real PEFT
/// (scripts/check_peft_trained.py → Tests/Fixtures/peft_trained/): our model
/// with that adapter gives PEFT's logits.
final class PEFTTrainedTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures").path

    func testOurLogitsWithTheTrainedAdapterEqualPEFTsFromPretrained() throws {
        let dir = Self.root + "/peft_trained"
        let meta = try XCTUnwrap(
            try JSONSerialization.jsonObject(with: try Data(contentsOf: URL(fileURLWithPath: dir + "/peft_trained.json")))
                as? [String: Any])
        // What the script saw: PEFT loaded every tensor unchanged, the adapter moves the logits, and
        // lora-gpu's merge loaded by transformers agrees with PEFT.
        XCTAssertEqual(meta["ok"] as? Bool, true)
        let loaded = try XCTUnwrap(meta["loaded"] as? [String: Any])
        XCTAssertEqual(loaded["same_keys"] as? Bool, true)
        XCTAssertEqual(loaded["identical"] as? Bool, true)
        XCTAssertEqual(Set(try XCTUnwrap(loaded["adapted_modules"] as? [String])),
                       ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
        let merged = try XCTUnwrap(meta["merged_vs_peft"] as? [String: Any])
        XCTAssertLessThanOrEqual(try XCTUnwrap(merged["relative_norm"] as? Double), 1e-5)

        let base = Self.root + "/" + (try XCTUnwrap(meta["base_model"] as? String))
        let adapter = dir + "/adapter"
        let ids = try XCTUnwrap(meta["input_ids"] as? [[Int]])
        let lora = try LoraConfig.load(path: adapter + "/adapter_config.json")
        XCTAssertEqual(lora.loraDropout, 0)
        let model = try LlamaLoRAModel(modelDirectory: base, lora: lora, context: try ComputeContext.shared())
        try model.loadAdapter(directory: adapter)
        let ours = try model.logits(try TokenBatch(inputIDs: ids))

        let peft = try SafeTensorsFile(path: dir + "/logits.safetensors").floats("logits")
        XCTAssertEqual(peft.shape, [ids.count, ids[0].count, 400])
        let want = peft.values.map(Double.init)
        let e = relativeError(ours, want)
        print("PEFTTrainedTests: relative error of our logits against PEFT's: \(e)")
        XCTAssertLessThanOrEqual(e, 1e-5, "our logits with the lora-gpu-trained adapter vs PEFT's: relative error \(e)")
        // The adapter matters: without it the logits are far from PEFT's.
        let plain = try LlamaLoRAModel(modelDirectory: base, lora: lora, context: try ComputeContext.shared())
        let e0 = relativeError(try plain.logits(try TokenBatch(inputIDs: ids)), want)
        XCTAssertGreaterThan(e0, 1e3 * max(e, 1e-9), "without the adapter: relative error \(e0)")
    }
}
