import Foundation

/// The module tree as transformers' `print(model)` shows it.
public enum ModelPrinter {
    /// Python's repr of a float, for eps (1e-05, 1e-06, 0.0001…).
    /// Swift's shortest round-trip description agrees with Python's repr except
    /// that Python pads the exponent to two digits ("1e-5" → "1e-05").
    static func pythonFloat(_ x: Double) -> String {
        let s = x.description
        guard let e = s.firstIndex(of: "e") else { return s }
        let mantissa = s[..<e], exponent = s[s.index(after: e)...]
        let sign = exponent.hasPrefix("-") ? "-" : "+"
        let digits = exponent.drop { $0 == "-" || $0 == "+" }
        return mantissa + "e" + sign + (digits.count < 2 ? "0" : "") + digits
    }

    public static func render(_ c: ModelConfig) -> String {
        let P = c.architecture.prefix
        let eps = pythonFloat(c.rmsNormEps)
        func linear(_ din: Int, _ dout: Int, _ bias: Bool) -> String {
            "Linear(in_features=\(din), out_features=\(dout), bias=\(bias ? "True" : "False"))"
        }
        let H = c.hiddenSize, I = c.intermediateSize, qd = c.numHeads * c.headDim, kvd = c.numKVHeads * c.headDim
        let norm = "\(P)RMSNorm((\(H),), eps=\(eps))"
        let act = c.activation == .silu ? "SiLUActivation()" : "GELUTanh()"
        let textPrefix = c.architecture.traits.textModelPrefix ?? P
        let layer = c.fusedProjections ? [
            // Phi-3: the class declares o_proj before qkv_proj, the MLP's activation as activation_fn, and two
            // residual dropouts (p = resid_pdrop, 0.0 here: other values are refused at load).
            "\(P)DecoderLayer(",
            "  (self_attn): \(P)Attention(",
            "    (o_proj): " + linear(qd, H, c.outputProjectionBias),
            "    (qkv_proj): " + linear(H, qd + 2 * kvd, c.attentionBias),
            "  )",
            "  (mlp): \(P)MLP(",
            "    (gate_up_proj): " + linear(H, 2 * I, c.mlpBias),
            "    (down_proj): " + linear(I, H, c.mlpBias),
            "    (activation_fn): SiLUActivation()",
            "  )",
            "  (input_layernorm): " + norm,
            "  (post_attention_layernorm): " + norm,
            "  (resid_attn_dropout): Dropout(p=0.0, inplace=False)",
            "  (resid_mlp_dropout): Dropout(p=0.0, inplace=False)",
            ")",
        ] : [
            "\(P)DecoderLayer(",
            "  (self_attn): \(P)Attention(",
            "    (q_proj): " + linear(H, qd, c.attentionBias),
            "    (k_proj): " + linear(H, kvd, c.attentionBias),
            "    (v_proj): " + linear(H, kvd, c.attentionBias),
            "    (o_proj): " + linear(qd, H, c.outputProjectionBias),
        ] + (c.qkNorm ? ["    (q_norm): \(P)RMSNorm((\(c.headDim),), eps=\(eps))", "    (k_norm): \(P)RMSNorm((\(c.headDim),), eps=\(eps))"] : []) + [
            "  )",
            "  (mlp): \(P)MLP(",
            "    (gate_proj): " + linear(H, I, c.mlpBias),
            "    (up_proj): " + linear(H, I, c.mlpBias),
            "    (down_proj): " + linear(I, H, c.mlpBias),
            "    (act_fn): " + act,
            "  )",
        ] + c.layerNorms.map { "  (\($0)): " + norm } + [
            ")",
        ]
        // ModuleList folds repeated identical children: "(0-29): 30 x Layer(".
        let label = c.numLayers == 1 ? "(0): " : "(0-\(c.numLayers - 1)): \(c.numLayers) x "
        let embedding = c.architecture.traits.scaledEmbedding ? "\(textPrefix)ScaledWordEmbedding" : "Embedding"
        // A multimodal checkpoint's language model is shown as the causal LM `lora-gpu merge` writes from it.
        let base = c.conditionalClass != nil ? "model" : String(c.peftBasePrefix.dropLast())
        var lines = (c.conditionalClass.map { ["# the language model of \($0) (its vision tower is not loaded), as the "
                                                + "\(c.architecture.rawValue) `lora-gpu merge` writes; PEFT names its modules "
                                                + c.peftBasePrefix + "…"] } ?? [])
            + ["\(c.architecture.className(for: c.task))(", "  (\(base)): \(textPrefix)Model(",
                     "    (embed_tokens): \(embedding)(\(c.vocabSize), \(H)\(c.padTokenID.map { ", padding_idx=\($0)" } ?? ""))",
                     "    (layers): ModuleList("]
        lines.append("      " + label + layer[0])
        lines += layer.dropFirst().map { "      " + $0 }
        lines += ["    )", "    (norm): " + norm, "    (rotary_emb): \(P)RotaryEmbedding()", "  )"]
        if c.task.kind == .featureExtraction {
            // The bare *Model (AutoModel): its children at the top, no head.
            return (["\(textPrefix)Model("] + lines[2..<(lines.count - 1)].map { String($0.dropFirst(2)) } + [")"]).joined(separator: "\n")
        }
        switch c.task {
        case .causalLM: lines.append("  (lm_head): " + linear(H, c.vocabSize, false))
        case .sequenceClassification(let cls): lines.append("  (score): " + linear(H, cls.numLabels, false))
        case .tokenClassification(let cls):
            lines.append("  (dropout): Dropout(p=\(pythonFloat(cls.dropout)), inplace=False)")
            lines.append("  (score): " + linear(H, cls.numLabels, cls.bias))
        case .questionAnswering: lines.append("  (qa_outputs): " + linear(H, 2, true))
        case .featureExtraction: break
        }
        lines.append(")")
        return lines.joined(separator: "\n")
    }

    /// The adapted modules with their rank, alpha and scale, one per line.
    public static func targets(_ plan: AdapterPlan) -> String {
        var lines = ["LoRA targets (\(plan.adapted.count) modules):"]
        for path in plan.adapted {
            let (r, a) = plan.lora.rankAndAlpha(for: plan.peftName(path))
            let s = plan.lora.scale(for: plan.peftName(path))
            lines.append("  \(path)  r=\(r) lora_alpha=\(pythonFloat(a)) scale=\(pythonFloat(s))")
        }
        if !plan.lora.modulesToSave.isEmpty {
            lines.append("modules_to_save (trained in full): " + plan.lora.modulesToSave.joined(separator: ", "))
        }
        if plan.lora.bias != .none { lines.append("bias: \(plan.lora.bias.rawValue)") }
        lines += plan.warnings.map { "warning: " + $0 }
        return lines.joined(separator: "\n")
    }
}

/// `lora-gpu inspect`'s checkpoint check: every tensor the config implies is
/// present with its shape and a usable dtype, and (already on open) every
/// header, byte range and shard is valid — without reading any weight.
public enum CheckpointCheck {
    /// The summary line, or the first error naming the file and tensor.
    public static func run(config c: ModelConfig, checkpoint: CheckpointSource) throws -> String {
        let expected = AdapterPlan.checkpointTensors(c)
        var dtypes: [String: Int] = [:]
        for (name, shape) in expected { dtypes[try checkpoint.validateTensor(name, shape: shape), default: 0] += 1 }
        var line = "checkpoint: \(expected.count) tensors, all present with the config's shapes ("
            + dtypes.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ") + ")"
        if checkpoint is CheckpointStore {
            let used = Set(expected.map(\.name))
            let unused = checkpoint.tensorNames.filter { !used.contains($0) }
            if !unused.isEmpty {
                line += "\n\(unused.count) more tensor\(unused.count == 1 ? "" : "s") not used by the model: "
                    + unused.prefix(5).joined(separator: ", ") + (unused.count > 5 ? ", …" : "")
            }
        }
        return line
    }
}
