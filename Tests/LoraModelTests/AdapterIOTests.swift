import Foundation
import LoraModel
import LoraOps
import TestSupport
import XCTest

final class AdapterIOTests: XCTestCase {
    /// After training, our adapter directory holds what PEFT's holds: the same
    /// tensors (names, shapes, values within the parity tolerance) and a config
    /// that reads back to the same plan.
    func testSavedAdapterMatchesPEFTsLayout() throws {
        // LORA_GPU_KEEP_ADAPTERS=DIR keeps them, for scripts/check_peft_load.py.
        let keep = ProcessInfo.processInfo.environment["LORA_GPU_KEEP_ADAPTERS"]
        let out = keep.map { URL(fileURLWithPath: $0) }
            ?? FileManager.default.temporaryDirectory.appendingPathComponent("lora-gpu-adapter-\(UUID().uuidString)")
        defer { if keep == nil { try? FileManager.default.removeItem(at: out) } }
        for name in PEFTParityTests.cases {
            let rc = try ReferenceCase(name)
            let m = try rc.model()
            for _ in 0..<(rc.train["steps"] as! NSNumber).intValue { _ = try m.trainStep(try rc.batch, hyper: rc.hyper) }
            let dir = out.appendingPathComponent(name).path
            try m.saveAdapter(directory: dir, baseModel: rc.dir + "/model")
            let ours = try SafeTensorsFile(path: dir + "/adapter_model.safetensors")
            let peft = try SafeTensorsFile(path: rc.dir + "/adapter_final/adapter_model.safetensors")
            XCTAssertEqual(Set(ours.tensors.keys), Set(peft.tensors.keys), name)
            XCTAssertEqual(ours.metadata["format"], "pt")
            for (k, info) in peft.tensors {
                XCTAssertEqual(ours.tensors[k]?.shape, info.shape, "\(name) \(k)")
                if k.hasSuffix(".base_layer.weight") {
                    XCTAssertEqual(try ours.floats(k).values, try peft.floats(k).values, "\(name) \(k): the base weight")
                }
            }
            // The saved config describes the same adapter.
            var back = try LoraConfig.load(path: dir + "/adapter_config.json")
            XCTAssertTrue(back.inferenceMode)
            back.inferenceMode = false
            let plan = try AdapterPlan(config: m.config, lora: back)
            XCTAssertEqual(plan.tensors.map(\.key), m.adapterPlan.tensors.map(\.key), name)
            // And loads back into a model giving the same logits.
            let m2 = try LlamaLoRAModel(modelDirectory: rc.dir + "/model", lora: back, context: try ComputeContext.shared())
            try m2.loadAdapter(directory: dir)
            XCTAssertEqual(try m2.logits(try rc.batch), try m.logits(try rc.batch), name)
        }
    }

    func testSavingReplacesAWholeDirectoryAtomically() throws {
        let rc = try ReferenceCase("llama_gqa_untied")
        let m = try rc.model()
        let dir = URL(fileURLWithPath: try temporaryDirectory("replace"))
        defer { try? FileManager.default.removeItem(at: dir) }
        try Data("stale".utf8).write(to: dir.appendingPathComponent("stale.txt"))
        try m.saveAdapter(directory: dir.path, baseModel: "base")
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
        XCTAssertEqual(names, ["adapter_config.json", "adapter_model.safetensors"])
        let siblings = try FileManager.default.contentsOfDirectory(atPath: dir.deletingLastPathComponent().path)
        XCTAssertFalse(siblings.contains { $0.hasPrefix(".\(dir.lastPathComponent).") }, "no temporary left behind")
    }
}
