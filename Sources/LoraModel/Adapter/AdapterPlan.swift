import Foundation
import LoraOps

/// One `nn.Linear` of the model: its path as `named_modules()` spells it.
public struct LinearSpec: Sendable {
    public let path: String
    public let inFeatures: Int
    public let outFeatures: Int
    public let hasBias: Bool
}

/// What PEFT does to a model under a LoraConfig, decided from the config
/// alone (no weights, no device): which modules get adapters, which are
/// trained fully (modules_to_save), and every trainable tensor by PEFT's name.
public struct AdapterPlan: Sendable {
    public static let prefix = "base_model.model."
    public static let embedPath = "model.embed_tokens"

    public let config: ModelConfig
    public let lora: LoraConfig
    /// Linear layers in model order (the head, lm_head or score, last).
    public let linears: [LinearSpec]
    /// Adapted module paths in model order (embed_tokens first when adapted).
    public let adapted: [String]
    public let embedAdapted: Bool
    public let embedSaved: Bool
    /// Whether the frozen token embedding is kept on the device: not when a
    /// trained copy (modules_to_save) replaces it and no frozen tied lm_head reads it.
    public var keepsFrozenEmbedding: Bool { !embedSaved || (config.tieWordEmbeddings && !isSaved("lm_head")) }
    /// The trainable (adapter) tensors, PEFT keys and shapes.
    public let tensors: [ParameterStore.Spec]
    /// What PEFT would warn about: list entries, pattern keys or exclusions that matched nothing.
    public let warnings: [String]

    public init(config c: ModelConfig, lora: LoraConfig) throws {
        do { try lora.validate() } catch let e as LoraConfig.SettingError {
            throw CheckpointError.config(path: "LoRA settings", field: e.key, reason: e.reason)
        }
        try Self.checkTask(config: c, lora: lora)
        let lora = lora.withTaskModules()
        // PEFT's target_modules default (None) is per family (q_proj, v_proj); for a family it has no entry for
        // (Phi-3, SmolLM3, and Gemma3ForConditionalGeneration: model_type gemma3) PEFT refuses to guess, and so does this.
        if !lora.targetModulesGiven && (!c.architecture.traits.peftHasDefaultTargets || c.conditionalClass != nil) {
            let leaves = Self.linearSpecs(c).map { String($0.path.split(separator: ".").last!) }.filter { $0 != "lm_head" }
            throw CheckpointError.config(path: "LoRA settings", field: "target_modules", reason: "missing: PEFT has no default "
                + "target_modules for \(c.conditionalClass ?? c.architecture.rawValue); name the modules to adapt (\(Array(Set(leaves)).sorted().joined(separator: ", ")), "
                + "or all-linear)")
        }
        config = c
        self.lora = lora
        let H = c.hiddenSize, V = c.vocabSize
        let specs = Self.linearSpecs(c)
        linears = specs
        let leaves = Set(specs.map { String($0.path.split(separator: ".").last!) })

        let saveable: [String]
        switch c.task.kind {
        case .causalLM: saveable = ["lm_head", "embed_tokens", "model.embed_tokens"]
        case .questionAnswering: saveable = ["qa_outputs", "embed_tokens", c.peftName("model.embed_tokens")]
        case .featureExtraction: saveable = ["embed_tokens"]
        default: saveable = ["score", "classifier", "embed_tokens", "model.embed_tokens"]
        }
        for m in lora.modulesToSave where !saveable.contains(m) {
            throw LoraError.unsupportedModule("modules_to_save: '\(m)' is not supported yet; supported: "
                                              + saveable.filter { !$0.hasSuffix(".embed_tokens") }.joined(separator: ", "))
        }
        if c.task.kind == .featureExtraction {
            // AutoModel has no lm_head: the vectors are the final norm's output.
            let named: Bool
            switch lora.targetModules {
            case .list(let l): named = l.contains("lm_head")
            case .regex(let r): named = LoraConfig.fullMatch(r, "lm_head")
            case .allLinear: named = false
            }
            if named {
                throw LoraError.unsupportedModule("target_modules: 'lm_head' is not part of a FEATURE_EXTRACTION model (transformers' "
                    + "AutoModel: the vectors are the final norm's output): leave it out")
            }
        } else if c.task.kind != .causalLM {
            // PEFT would put a LoRA on score and also save it in full, and then fail to load the adapter.
            let named: Bool
            switch lora.targetModules {
            case .list(let l): named = l.contains(c.headPath)
            case .regex(let r): named = LoraConfig.fullMatch(r, c.headPath)
            case .allLinear: named = false
            }
            if named {
                throw LoraError.unsupportedModule("target_modules: '\(c.headPath)' is the \(c.task.peftTaskType) head, trained in full "
                    + "(modules_to_save) and saved whole: leave it out of target_modules")
            }
        }
        var adapted = specs.map(\.path).filter {
            lora.targets(c.peftName($0), isLinear: true, isOutputLayer: $0 == c.headPath, linearLeafNames: leaves)
        }
        if lora.targets(c.peftName(Self.embedPath), isLinear: false, isOutputLayer: false, linearLeafNames: leaves) {
            adapted.insert(Self.embedPath, at: 0)
        }
        guard !adapted.isEmpty else {
            var loose = lora
            loose.excludeModules = nil
            loose.modulesToSave = []
            let wouldMatch = specs.map(\.path).filter {
                loose.targets(c.peftName($0), isLinear: true, isOutputLayer: $0 == c.headPath, linearLeafNames: leaves)
            }
            if !wouldMatch.isEmpty {
                throw LoraError.unsupportedModule(
                    "no module is left to adapt: target_modules matched \(wouldMatch.joined(separator: ", ")), "
                        + "but exclude_modules or modules_to_save removed every one")
            }
            let described: String
            switch lora.targetModules {
            case .list(let l): described = "[" + l.joined(separator: ", ") + "]"
            case .regex(let r): described = "'\(r)'"
            case .allLinear: described = "'all-linear'"
            }
            throw LoraError.noTargetMatched(targets: described, available: Self.moduleNames(c))
        }
        self.adapted = adapted
        var notes: [String] = []
        if case .list(let l) = lora.targetModules {
            let candidates = (specs.map(\.path) + [Self.embedPath]).map(c.peftName)
            let unmatched = l.filter { t in !candidates.contains { $0 == t || $0.hasSuffix("." + t) } }
            if !unmatched.isEmpty { notes.append("target_modules entries that match no module: " + unmatched.joined(separator: ", ")) }
        }
        let unusedPatterns = lora.unusedPatternKeys(adapted.map(c.peftName))
        if !unusedPatterns.isEmpty {
            notes.append("pattern keys that match no adapted module (ignored): " + unusedPatterns.joined(separator: ", "))
        }
        if case .list(let ex)? = lora.excludeModules {
            let all = (specs.map(\.path) + [Self.embedPath]).map(c.peftName)
            let unused = ex.filter { e in !all.contains { $0 == e || $0.hasSuffix("." + e) } }
            if !unused.isEmpty { notes.append("exclude_modules entries that match no module: " + unused.joined(separator: ", ")) }
        }
        warnings = notes
        embedAdapted = adapted.first == Self.embedPath
        embedSaved = Self.isSaved(c.peftName(Self.embedPath), lora)

        func key(_ path: String, _ suffix: String) -> String { Self.prefix + c.peftName(path) + suffix }
        var t: [ParameterStore.Spec] = []
        if embedAdapted {
            let (r, _) = lora.rankAndAlpha(for: c.peftName(Self.embedPath))
            t += [.init(key: key(Self.embedPath, ".lora_embedding_A"), shape: [r, V], decay: true),
                  .init(key: key(Self.embedPath, ".lora_embedding_B"), shape: [H, r], decay: true)]
        }
        if embedSaved { t.append(.init(key: key(Self.embedPath, ".weight"), shape: [V, H], decay: true)) }
        for s in specs {
            let isAdapted = adapted.contains(s.path)
            if isAdapted {
                let (r, _) = lora.rankAndAlpha(for: c.peftName(s.path))
                t += [.init(key: key(s.path, ".lora_A.weight"), shape: [r, s.inFeatures], decay: true),
                      .init(key: key(s.path, ".lora_B.weight"), shape: [s.outFeatures, r], decay: true)]
            }
            let saved = Self.isSaved(c.peftName(s.path), lora)
            if saved {
                t.append(.init(key: key(s.path, ".weight"), shape: [s.outFeatures, s.inFeatures], decay: true))
            }
            // A saved copy takes its bias along (PEFT copies the whole module), once.
            if s.hasBias && (saved || lora.bias == .all || (lora.bias == .loraOnly && isAdapted)) {
                t.append(.init(key: key(s.path, isAdapted ? ".base_layer.bias" : ".bias"), shape: [s.outFeatures], decay: true))
            }
        }
        tensors = t
    }

    /// The LoraConfig's task_type and the model's head agree: a classifier for
    /// SEQ_CLS (from a *ForSequenceClassification checkpoint or given num_labels),
    /// lm_head for CAUSAL_LM.
    static func checkTask(config c: ModelConfig, lora: LoraConfig) throws {
        guard let wanted = ModelTask.Kind(peftTaskType: lora.taskType) else {
            throw CheckpointError.config(path: "LoRA settings", field: "task_type", reason: "'\(lora.taskType)' is not supported yet; "
                                            + "supported: " + ModelTask.Kind.allCases.map(\.peftTaskType).joined(separator: ", "))
        }
        if wanted != .causalLM && !c.architecture.traits.taskClasses {
            throw CheckpointError.config(path: "LoRA settings", field: "task_type", reason: "\(lora.taskType) is not available for "
                                            + "\(c.architecture.rawValue) (its task classes are not under that family's name here): "
                                            + "only CAUSAL_LM is trained for it")
        }
        let theirs = c.task.peftTaskType
        guard lora.taskType != theirs else { return }
        if c.task.kind != .causalLM {
            throw CheckpointError.config(path: "LoRA settings", field: "task_type",
                                         reason: "\(lora.taskType), but the model is a \(c.architecture.className(for: c.task)) "
                                            + "(\(c.task.kind == .causalLM ? "" : "no lm_head; ")its task is \(theirs)): set task_type \(theirs)")
        }
        let head = "a *\(wanted.classSuffix) checkpoint"
        throw CheckpointError.config(path: "LoRA settings", field: "task_type",
                                     reason: "\(lora.taskType) needs its head: \(head)"
                                        + (wanted == .questionAnswering ? "" : ", or the training data's labels to make one from (lora-gpu train does)"))
    }

    static func isSaved(_ path: String, _ lora: LoraConfig) -> Bool {
        lora.modulesToSave.contains { path == $0 || path.hasSuffix("." + $0) }
    }

    /// Whether modules_to_save trains `path` in full (matched on PEFT's name of it).
    public func isSaved(_ path: String) -> Bool { Self.isSaved(config.peftName(path), lora) }

    /// Whether an adapter tensor belongs to the other towers of a multimodal base (PEFT on Gemma3ForConditionalGeneration
    /// also adapts the vision tower's q_proj, fc1…, and the projector): only the language model is read here, and
    /// those tensors cannot change its text-only outputs, so they are set aside (and counted in a note).
    public func isOtherTowerTensor(_ key: String) -> Bool {
        guard config.conditionalClass != nil else { return false }
        return ["model.vision_tower.", "model.multi_modal_projector."].contains { key.hasPrefix(Self.prefix + $0) }
    }

    /// The note for `n` such tensors set aside, nil for none.
    public static func otherTowerNote(_ n: Int) -> String? {
        n == 0 ? nil : "\(n) adapter tensor\(n == 1 ? "" : "s") of the vision tower or projector set aside: only the language model "
            + "is read (they do not change text-only outputs)"
    }

    /// PEFT's key of a trainable bias: under `base_layer` when the module is wrapped.
    public func biasKey(_ path: String) -> String { key(path, adapted.contains(path) ? ".base_layer.bias" : ".bias") }

    /// The adapter tensor of `path` under PEFT's name: "base_model.model." + the module as PEFT
    /// names it on the task's class (`ModelConfig.peftName`) + `suffix`.
    public func key(_ path: String, _ suffix: String) -> String { Self.prefix + config.peftName(path) + suffix }

    /// The module's name as PEFT and the LoraConfig's patterns see it.
    public func peftName(_ path: String) -> String { config.peftName(path) }

    /// Every module name of the model, as named_modules() lists them.
    public static func moduleNames(_ c: ModelConfig) -> [String] {
        var names = ["model.embed_tokens", "model.layers"]
        for l in 0..<c.numLayers {
            let p = "model.layers.\(l)"
            if c.fusedProjections {
                names += [p, p + ".self_attn", p + ".self_attn.o_proj", p + ".self_attn.qkv_proj", p + ".mlp", p + ".mlp.gate_up_proj",
                          p + ".mlp.down_proj", p + ".mlp.activation_fn", p + ".input_layernorm", p + ".post_attention_layernorm",
                          p + ".resid_attn_dropout", p + ".resid_mlp_dropout"]
                continue
            }
            names += [p, p + ".self_attn", p + ".self_attn.q_proj", p + ".self_attn.k_proj", p + ".self_attn.v_proj",
                      p + ".self_attn.o_proj"]
            if c.qkNorm { names += [p + ".self_attn.q_norm", p + ".self_attn.k_norm"] }
            names += [p + ".mlp", p + ".mlp.gate_proj", p + ".mlp.up_proj", p + ".mlp.down_proj", p + ".mlp.act_fn"]
                + c.layerNorms.map { p + "." + $0 }
        }
        // PEFT's names: the base under the task class's prefix ("model", or "transformer" for Llama's QA class).
        return [String(c.peftBasePrefix.dropLast())] + (names + ["model.norm", "model.rotary_emb", c.headPath]).map(c.peftName)
    }

    // MARK: counting, as PEFT's print_trainable_parameters

    /// Parameters of the base model (tied weights counted once).
    public var baseParameterCount: Int {
        let c = config
        var n = c.vocabSize * c.hiddenSize + c.hiddenSize                  // embed_tokens, norm
        // A FEATURE_EXTRACTION model (AutoModel) has no lm_head; a tied one shares the embedding.
        for s in linears where !(s.path == "lm_head" && (c.tieWordEmbeddings || c.task.kind == .featureExtraction)) {
            n += s.inFeatures * s.outFeatures + (s.hasBias ? s.outFeatures : 0)
        }
        n += c.numLayers * c.layerNorms.count * c.hiddenSize                // two RMSNorms per layer (four: Gemma 3)
        if c.qkNorm { n += c.numLayers * 2 * c.headDim }                    // q_norm, k_norm
        return n
    }

    /// Trainable parameters (0 in inference mode).
    public var trainableCount: Int {
        lora.inferenceMode ? 0 : tensors.reduce(0) { $0 + $1.shape.reduce(1, *) }
    }

    /// Base parameters plus the adapter's own (LoRA tensors and modules_to_save copies; trained biases are base ones).
    public var allCount: Int {
        // A saved copy's bias is the copy's own (PEFT counts it); other trained biases are the base's.
        let savedBiases = Set(linears.filter { $0.hasBias && isSaved($0.path) }.map { key($0.path, ".bias") })
        return baseParameterCount + tensors.filter { !$0.key.hasSuffix("bias") || savedBiases.contains($0.key) }
            .reduce(0) { $0 + $1.shape.reduce(1, *) }
    }

    /// `trainable params: N || all params: M || trainable%: P`, as PEFT prints it.
    public var trainableLine: String {
        let pct = allCount == 0 ? 0 : 100 * Double(trainableCount) / Double(allCount)
        return "trainable params: \(grouped(trainableCount)) || all params: \(grouped(allCount)) || trainable%: "
            + String(format: "%.4f", pct)
    }
}

/// 1234567 → "1,234,567" (Python's `{:,d}`).
func grouped(_ n: Int) -> String {
    let s = String(n)
    var out = ""
    for (i, ch) in s.reversed().enumerated() {
        if i > 0 && i % 3 == 0 { out.append(",") }
        out.append(ch)
    }
    return String(out.reversed())
}

extension AdapterPlan {
    /// Every nn.Linear of the model in model order (lm_head last).
    public static func linearSpecs(_ c: ModelConfig) -> [LinearSpec] {
        let H = c.hiddenSize, I = c.intermediateSize
        let qOut = c.numHeads * c.headDim, kvOut = c.numKVHeads * c.headDim
        var specs: [LinearSpec] = []
        for l in 0..<c.numLayers {
            let p = "model.layers.\(l)."
            if c.fusedProjections {
                // Phi-3: o_proj before qkv_proj, as the class declares them (named_modules' order).
                specs += [LinearSpec(path: p + "self_attn.o_proj", inFeatures: qOut, outFeatures: H, hasBias: c.outputProjectionBias),
                          LinearSpec(path: p + "self_attn.qkv_proj", inFeatures: H, outFeatures: qOut + 2 * kvOut, hasBias: c.attentionBias),
                          LinearSpec(path: p + "mlp.gate_up_proj", inFeatures: H, outFeatures: 2 * I, hasBias: c.mlpBias),
                          LinearSpec(path: p + "mlp.down_proj", inFeatures: I, outFeatures: H, hasBias: c.mlpBias)]
                continue
            }
            specs += [LinearSpec(path: p + "self_attn.q_proj", inFeatures: H, outFeatures: qOut, hasBias: c.attentionBias),
                      LinearSpec(path: p + "self_attn.k_proj", inFeatures: H, outFeatures: kvOut, hasBias: c.attentionBias),
                      LinearSpec(path: p + "self_attn.v_proj", inFeatures: H, outFeatures: kvOut, hasBias: c.attentionBias),
                      LinearSpec(path: p + "self_attn.o_proj", inFeatures: qOut, outFeatures: H, hasBias: c.outputProjectionBias),
                      LinearSpec(path: p + "mlp.gate_proj", inFeatures: H, outFeatures: I, hasBias: c.mlpBias),
                      LinearSpec(path: p + "mlp.up_proj", inFeatures: H, outFeatures: I, hasBias: c.mlpBias),
                      LinearSpec(path: p + "mlp.down_proj", inFeatures: I, outFeatures: H, hasBias: c.mlpBias)]
        }
        specs.append(LinearSpec(path: c.headPath, inFeatures: H, outFeatures: c.headOutFeatures, hasBias: c.headHasBias))
        return specs
    }

    /// Every tensor the model reads from its checkpoint, with the shape the
    /// config implies (lm_head.weight only when the embeddings are untied).
    public static func checkpointTensors(_ c: ModelConfig) -> [(name: String, shape: [Int])] {
        let H = c.hiddenSize
        var out: [(name: String, shape: [Int])] = [("model.embed_tokens.weight", [c.vocabSize, H]), ("model.norm.weight", [H])]
        for l in 0..<c.numLayers {
            out += c.layerNorms.map { ("model.layers.\(l).\($0).weight", [H]) }
            if c.qkNorm {
                out += [("model.layers.\(l).self_attn.q_norm.weight", [c.headDim]), ("model.layers.\(l).self_attn.k_norm.weight", [c.headDim])]
            }
        }
        for s in linearSpecs(c) {
            if s.path == "lm_head" && c.tieWordEmbeddings { continue }
            if s.path == c.headPath && c.task.headIsNew { continue }  // made at load
            out.append((s.path + ".weight", [s.outFeatures, s.inFeatures]))
            if s.hasBias { out.append((s.path + ".bias", [s.outFeatures])) }
        }
        return out
    }

    /// The first setting on which an adapter's own LoraConfig (`theirs`, from its
    /// adapter_config.json) changes the math of this plan: the field and a
    /// sentence giving both values, or nil when the adapter computes the same
    /// function here.
    public func mismatch(with theirs: LoraConfig) -> (field: String, reason: String)? {
        let ours = lora
        func differ(_ f: String, _ a: String, _ b: String) -> (field: String, reason: String) {
            (f, "the adapter has \(a) but this model's LoRA config has \(b)")
        }
        if theirs.r != ours.r { return differ("r", "\(theirs.r)", "\(ours.r)") }
        if theirs.loraAlpha != ours.loraAlpha { return differ("lora_alpha", "\(theirs.loraAlpha)", "\(ours.loraAlpha)") }
        if theirs.useRSLoRA != ours.useRSLoRA { return differ("use_rslora", "\(theirs.useRSLoRA)", "\(ours.useRSLoRA)") }
        if theirs.bias != ours.bias { return differ("bias", "\"\(theirs.bias.rawValue)\"", "\"\(ours.bias.rawValue)\"") }
        let theirPlan: AdapterPlan
        do { theirPlan = try AdapterPlan(config: config, lora: theirs) } catch {
            return ("target_modules", "the adapter's targets do not work on this model: \(error)")
        }
        if theirPlan.adapted != adapted {
            let onlyTheirs = theirPlan.adapted.filter { !adapted.contains($0) }
            let onlyOurs = adapted.filter { !theirPlan.adapted.contains($0) }
            if !onlyTheirs.isEmpty {
                return ("target_modules", "the adapter adapts \(onlyTheirs.joined(separator: ", ")), which this model's LoRA config does not")
            }
            if !onlyOurs.isEmpty {
                return ("target_modules", "this model's LoRA config adapts \(onlyOurs.joined(separator: ", ")), which the adapter does not")
            }
            return ("target_modules", "the adapted modules come in a different order")
        }
        for m in adapted {
            let (tr, ta) = theirs.rankAndAlpha(for: peftName(m)), (or, oa) = ours.rankAndAlpha(for: peftName(m))
            if tr != or { return differ("rank_pattern", "r=\(tr) for \(m)", "r=\(or)") }
            if ta != oa { return differ("alpha_pattern", "lora_alpha=\(ta) for \(m)", "lora_alpha=\(oa)") }
        }
        return nil
    }
}

extension AdapterPlan {
    /// The products `lora-gpu tune --model` times: one decoder layer's projections as the family has them (q/k/v and
    /// gate/up apart, or Phi-3's fused qkv_proj and gate_up_proj), equal shapes merged with their counts summed.
    /// lm_head is left out: its vocabulary-wide product would dominate the tuning time.
    public static func tuningLinears(_ c: ModelConfig) -> [TuningLinear] {
        var out: [TuningLinear] = []
        for s in linearSpecs(c) where s.path.hasPrefix("model.layers.0.") {
            let name = String(s.path.split(separator: ".").last!)
            if let i = out.firstIndex(where: { $0.inFeatures == s.inFeatures && $0.outFeatures == s.outFeatures }) {
                out[i].name += "/" + name
                out[i].count += 1
            } else {
                out.append(TuningLinear(name, in: s.inFeatures, out: s.outFeatures))
            }
        }
        return out
    }
}
