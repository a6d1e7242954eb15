import Foundation
import LoraOps
import OpenCLRuntime

extension LoraConfig {
    /// adapter_config.json as PEFT writes it (sorted keys, 2-space indent).
    public func peftJSON(baseModel: String) throws -> Data {
        func targetsValue(_ t: Targets?) -> Any {
            switch t {
            case .none: return NSNull()
            case .list(let l)?: return l
            case .regex(let r)?: return r
            case .allLinear?: return "all-linear"
            }
        }
        let initValue: Any
        switch initLoraWeights {
        case .kaiming: initValue = true
        case .gaussian: initValue = "gaussian"
        case .random: initValue = false
        }
        let dict: [String: Any] = [
            "alpha_pattern": alphaPattern, "auto_mapping": NSNull(), "base_model_name_or_path": baseModel,
            "bias": bias.rawValue, "exclude_modules": targetsValue(excludeModules), "fan_in_fan_out": false,
            "inference_mode": true, "init_lora_weights": initValue,
            "layers_pattern": layersPattern.map { $0.count == 1 ? $0[0] as Any : $0 as Any } ?? NSNull(),
            "layers_to_transform": layersToTransform ?? NSNull() as Any, "lora_alpha": loraAlpha, "lora_bias": false,
            "lora_dropout": loraDropout, "modules_to_save": modulesToSave.isEmpty ? NSNull() as Any : modulesToSave,
            "peft_type": "LORA", "r": r, "rank_pattern": rankPattern, "revision": NSNull(),
            "target_modules": targetsValue(targetModules), "task_type": taskType, "use_dora": false,
            "use_rslora": useRSLoRA,
        ]
        return try JSONSerialization.data(withJSONObject: dict, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    }
}

extension LlamaLoRAModel {
    /// PEFT saves the base weights of embed_tokens / lm_head when they carry an
    /// adapter (save_embedding_layers="auto"): a list naming them, or a regex matching them.
    var savedEmbeddingBaseLayers: [String] {
        let targeted: Bool
        switch lora.targetModules {
        case .list(let l): targeted = l.contains("embed_tokens") || l.contains("lm_head")
        case .regex(let r): targeted = [AdapterPlan.embedPath, "lm_head"].contains { LoraConfig.fullMatch(r, $0) }
        case .allLinear: targeted = false
        }
        return targeted ? adaptedModules.filter { $0 == AdapterPlan.embedPath || $0 == "lm_head" } : []
    }

    /// Writes a PEFT adapter directory (adapter_config.json, adapter_model.safetensors)
    /// that PEFT's `PeftModel.from_pretrained` loads. Written to a temporary
    /// directory and renamed into place, so an existing adapter is replaced
    /// whole or not at all.
    public func saveAdapter(directory: String, baseModel: String) throws {
        var tensors: [(name: String, shape: [Int], values: [Float])] = []
        for e in store.entries { tensors.append((e.key, e.shape, try e.param.read())) }
        for path in savedEmbeddingBaseLayers {
            let w: DeviceBuffer<Float> = path == "lm_head" ? (lmHead.rawWeight ?? embedding) : embedding
            let shape = [config.vocabSize, config.hiddenSize]
            tensors.append((AdapterPlan.prefix + path + ".base_layer.weight", shape, try w.read()))
        }
        let fm = FileManager.default
        let dst = URL(fileURLWithPath: directory).standardizedFileURL
        try fm.createDirectory(at: dst.deletingLastPathComponent(), withIntermediateDirectories: true)
        let tmp = dst.deletingLastPathComponent().appendingPathComponent(".\(dst.lastPathComponent).tmp-\(getpid())")
        try? fm.removeItem(at: tmp)
        try fm.createDirectory(at: tmp, withIntermediateDirectories: false)
        do {
            try SafeTensorsWriter.write(tensors, metadata: ["format": "pt"], to: tmp.appendingPathComponent("adapter_model.safetensors").path)
            try lora.peftJSON(baseModel: baseModel).write(to: tmp.appendingPathComponent("adapter_config.json"))
            if fm.fileExists(atPath: dst.path) {
                let old = dst.deletingLastPathComponent().appendingPathComponent(".\(dst.lastPathComponent).old-\(getpid())")
                try fm.moveItem(at: dst, to: old)
                try fm.moveItem(at: tmp, to: dst)
                try? fm.removeItem(at: old)
            } else {
                try fm.moveItem(at: tmp, to: dst)
            }
        } catch {
            try? fm.removeItem(at: tmp)
            throw LoraError.adapter(path: directory, reason: "could not write the adapter: \(error)")
        }
    }
}
