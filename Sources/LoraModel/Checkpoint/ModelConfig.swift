import Foundation
import LoraBase
import LoraOps

/// What sets one model family apart from the Llama decoder, as data: config reading, loading,
/// forward, backward, decode, `inspect`, the memory plan and GGUF all read these fields instead of
/// asking which family a model is. A new family is a new `traits` entry (plus a kernel only where
/// it brings new math).
public struct ArchitectureTraits: Sendable, Equatable {
    /// Which projections carry biases.
    public enum Biases: Sendable, Equatable {
        /// None (Mistral).
        case none
        /// q, k and v always, o never (Qwen2).
        case qkv
        /// q, k, v and o when config.json's attention_bias is true (Llama, Qwen3).
        case attentionBiasKey
    }
    /// Where sliding-window attention applies.
    public enum Window: Sendable, Equatable {
        /// Never (Llama).
        case none
        /// config.json's sliding_window on every layer (Mistral).
        case everyLayer
        /// Only with use_sliding_window, on the layers layer_types (or max_window_layers) mark (Qwen2, Qwen3), else the NoPE layers (SmolLM3).
        case useSlidingWindowKey
        /// config.json's sliding_window on the layers layer_types marks "sliding_attention", else all but every
        /// sliding_window_pattern-th (default 6) layer (Gemma 3); those layers take their own RoPE.
        case layerTypes
    }
    public let biases: Biases
    /// Whether the MLP's biases follow config.json's mlp_bias (Llama); else there are none.
    public let mlpBiasKey: Bool
    /// Per-head RMSNorm on q and k (`self_attn.q_norm`, `k_norm`, weights over head_dim), after the
    /// projections and before RoPE (Qwen3).
    public let qkNorm: Bool
    public let window: Window
    /// transformers' base_model_prefix of the family's *ForQuestionAnswering: "transformer." (a
    /// backwards-compatible name) for most, "model." for Mistral's.
    public let questionAnsweringTrunk: String
    /// llama.cpp's `general.architecture`, and whether its converter permutes the q and k rows
    /// (the Llama layout only).
    public let ggufName: String
    public let ggufPermutesQK: Bool
    /// max_position_embeddings when a GGUF file has no context_length (transformers' config default).
    public let defaultMaxPositions: Int
    /// head_dim when config.json has none: nil for hidden_size / num_attention_heads, else the
    /// family config's own default (Qwen3Config's 128).
    public var defaultHeadDim: Int? = nil
    /// Whether some layers skip RoPE (NoPE layers, SmolLM3): config.json's no_rope_layers (1 = RoPE,
    /// 0 = none), else one NoPE layer every no_rope_layer_interval (default 4) layers — what llama.cpp's
    /// smollm3 graph assumes, since GGUF records no list.
    public var noRopeLayers = false
    /// Fused projections (Phi-3): `self_attn.qkv_proj` (H → NH·D + 2·NKV·D, q | k | v) and
    /// `mlp.gate_up_proj` (H → 2·I, gate | up) in place of q/k/v_proj and gate/up_proj; PEFT adapts the
    /// fused modules. The forward splits their output (copy_columns) and the backward joins the parts'
    /// gradients; print(model) lists o_proj before qkv_proj, as the class declares them.
    public var fusedProjections = false
    /// Whether PEFT has default target_modules (q_proj, v_proj) for the family: not for Phi-3 or SmolLM3.
    public var peftHasDefaultTargets = true
    /// Whether transformers has a *ForQuestionAnswering class for the family (Phi-3 has none).
    public var questionAnsweringClass = true
    /// What llama.cpp's `<arch>.rope.dimension_count` is: the head size (Llama), the rotary part of a head
    /// (Phi-3's partial rotary), or nothing read (the rest, as transformers' GGUF loader ignores it).
    public enum GGUFRopeDimension: Sendable, Equatable { case headDim, rotaryPart, ignored }
    public var ggufRopeDimension: GGUFRopeDimension = .ignored
    /// head_dim in `<arch>.attention.key_length` (Qwen3's converter writes it).
    public var ggufHeadDimFromKeyLength = false
    /// LongRoPE factors in rope_factors_long/short tensors, with rope.scaling metadata (Phi-3).
    public var ggufLongRopeTensors = false
    /// Gemma's RMSNorm: x·rstd·(1 + w), the 1 + w formed in fp32 (the norm buffers hold 1 + w, made at load);
    /// llama.cpp's converter stores the norm weights shifted by +1 (read back as stored − 1, as transformers reads them).
    public var normPlusOne = false
    /// Four norms per layer (Gemma 3): post_attention_layernorm on the attention's output and
    /// post_feedforward_layernorm on the MLP's, before each residual add; pre_feedforward_layernorm before the MLP
    /// (the norm Llama calls post_attention_layernorm).
    public var sandwichNorms = false
    /// The token embedding scaled by √hidden_size (Gemma3TextScaledWordEmbedding; PEFT scales a LoRA on it alike).
    public var scaledEmbedding = false
    /// The config key of the MLP's activation: hidden_act (most), hidden_activation (Gemma).
    public var activationKey = "hidden_act"
    /// The prefix of the text model's class names where it differs from the family's (Gemma 3: Gemma3TextModel,
    /// Gemma3TextScaledWordEmbedding), for print(model).
    public var textModelPrefix: String? = nil
    /// config.json's model_type when it is not the prefix in lower case (Gemma 3's text model: gemma3_text).
    public var modelType: String? = nil
    /// The family config class's defaults for keys config.json leaves out (the Hub's Gemma3ForConditionalGeneration
    /// configs nest a text_config of a few keys only: Gemma3TextConfig fills in the rest, and so does this).
    public var configDefaults: JSONObject = [:]
    /// The key of the scores' scale s^-½ in place of 1/√head_dim (Gemma 3's query_pre_attn_scalar), nil for none.
    public var attentionScaleKey: String? = nil
    /// The key of the causal LM's final-logit soft-capping (Gemma 3's final_logit_softcapping), nil for none.
    public var logitSoftcapKey: String? = nil
    /// Whether transformers has the family's *ForSequenceClassification, *ForTokenClassification and bare *Model
    /// under the family's prefix (Gemma 3's are Gemma3Text*: only CAUSAL_LM is trained for it).
    public var taskClasses = true
}

/// The supported causal-LM architectures and the class names `print(model)` uses.
public enum Architecture: String, Sendable, CaseIterable {
    case llama = "LlamaForCausalLM"
    case mistral = "MistralForCausalLM"
    case qwen2 = "Qwen2ForCausalLM"
    case qwen3 = "Qwen3ForCausalLM"
    case smollm3 = "SmolLM3ForCausalLM"
    case phi3 = "Phi3ForCausalLM"
    case gemma3 = "Gemma3ForCausalLM"

    /// The family's description (ArchitectureTraits).
    public var traits: ArchitectureTraits {
        switch self {
        case .llama:
            return ArchitectureTraits(biases: .attentionBiasKey, mlpBiasKey: true, qkNorm: false, window: .none,
                                      questionAnsweringTrunk: "transformer.", ggufName: "llama", ggufPermutesQK: true,
                                      defaultMaxPositions: 2048, ggufRopeDimension: .headDim)
        case .mistral:
            // llama.cpp writes Mistral as "llama"; reading such a file gives Llama (see hfConfig(gguf:)).
            return ArchitectureTraits(biases: .none, mlpBiasKey: false, qkNorm: false, window: .everyLayer,
                                      questionAnsweringTrunk: "model.", ggufName: "llama", ggufPermutesQK: true,
                                      defaultMaxPositions: 32768)
        case .qwen2:
            return ArchitectureTraits(biases: .qkv, mlpBiasKey: false, qkNorm: false, window: .useSlidingWindowKey,
                                      questionAnsweringTrunk: "transformer.", ggufName: "qwen2", ggufPermutesQK: false,
                                      defaultMaxPositions: 32768, configDefaults: Self.qwenWindowDefaults)
        case .qwen3:
            return ArchitectureTraits(biases: .attentionBiasKey, mlpBiasKey: false, qkNorm: true, window: .useSlidingWindowKey,
                                      questionAnsweringTrunk: "transformer.", ggufName: "qwen3", ggufPermutesQK: false,
                                      defaultMaxPositions: 32768, defaultHeadDim: 128, ggufHeadDimFromKeyLength: true,
                                      configDefaults: Self.qwenWindowDefaults)
        case .smollm3:
            return ArchitectureTraits(biases: .attentionBiasKey, mlpBiasKey: true, qkNorm: false, window: .useSlidingWindowKey,
                                      questionAnsweringTrunk: "transformer.", ggufName: "smollm3", ggufPermutesQK: true,
                                      defaultMaxPositions: 32768, noRopeLayers: true, peftHasDefaultTargets: false)
        case .phi3:
            // transformers has no Phi3ForQuestionAnswering: QUESTION_ANS on Phi-3 would name a class that does not exist.
            return ArchitectureTraits(biases: .none, mlpBiasKey: false, qkNorm: false, window: .everyLayer,
                                      questionAnsweringTrunk: "model.", ggufName: "phi3", ggufPermutesQK: false,
                                      defaultMaxPositions: 4096, fusedProjections: true, peftHasDefaultTargets: false,
                                      questionAnsweringClass: false, ggufRopeDimension: .rotaryPart, ggufLongRopeTensors: true)
        case .gemma3:
            return ArchitectureTraits(biases: .attentionBiasKey, mlpBiasKey: false, qkNorm: true, window: .layerTypes,
                                      questionAnsweringTrunk: "model.", ggufName: "gemma3", ggufPermutesQK: false,
                                      defaultMaxPositions: 131072, defaultHeadDim: 256, peftHasDefaultTargets: true,
                                      questionAnsweringClass: false, ggufHeadDimFromKeyLength: true, normPlusOne: true,
                                      sandwichNorms: true, scaledEmbedding: true, activationKey: "hidden_activation",
                                      textModelPrefix: "Gemma3Text", modelType: "gemma3_text",
                                      configDefaults: Self.gemma3TextDefaults, attentionScaleKey: "query_pre_attn_scalar",
                                      logitSoftcapKey: "final_logit_softcapping", taskClasses: false)
        }
    }

    /// Qwen2Config's and Qwen3Config's sliding_window default: a config that sets use_sliding_window and leaves the
    /// window out gets 4096 (null stays null: no window).
    static let qwenWindowDefaults: JSONObject = ["sliding_window": 4096]

    /// Gemma3TextConfig's defaults (transformers 5.25) for the keys its Hub configs leave out; the RoPE bases'
    /// defaults (10⁶ and 10⁴) are applied where rope_parameters is read.
    static let gemma3TextDefaults: JSONObject = [
        "vocab_size": 262_208, "hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26,
        "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256, "hidden_activation": "gelu_pytorch_tanh",
        "max_position_embeddings": 131_072, "rms_norm_eps": 1e-6, "pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 2,
        "tie_word_embeddings": true, "attention_bias": false, "attention_dropout": 0.0, "query_pre_attn_scalar": 256,
        "sliding_window": 4096,
    ]

    /// The architecture a GGUF file's general.architecture names (the first family written under it).
    public static func gguf(_ name: String) -> Architecture? { allCases.first { $0.traits.ggufName == name } }

    /// The GGUF architecture names read, once each.
    public static var ggufNames: [String] { allCases.map(\.traits.ggufName).reduce(into: []) { if !$0.contains($1) { $0.append($1) } } }

    /// "Llama", "Mistral", "Qwen2": the prefix of every module class name.
    public var prefix: String { String(rawValue.dropLast("ForCausalLM".count)) }

    /// The class transformers builds for `task` ("LlamaForSequenceClassification", …).
    public func className(for task: ModelTask) -> String { className(for: task.kind) }

    public func className(for kind: ModelTask.Kind) -> String { prefix + kind.classSuffix }

    /// The tasks whose checkpoints are read: not a bare `*Model` (FEATURE_EXTRACTION runs a causal
    /// checkpoint's trunk; a bare checkpoint has no "model." prefix and no lm_head, not read yet).
    static let readKinds = ModelTask.Kind.allCases.filter { $0 != .featureExtraction }

    /// Every class name read from `architectures`: each architecture with each task.
    static var classNames: [String] {
        allCases.flatMap { a in a.readKinds.map(a.className(for:)) } + Array(conditionalGeneration.keys)
    }

    /// The tasks whose checkpoints are read for this family.
    var readKinds: [ModelTask.Kind] {
        guard traits.taskClasses else { return [.causalLM] }
        return Self.readKinds.filter { $0 != .questionAnswering || traits.questionAnsweringClass }
    }

    /// Multimodal classes whose language model is read as the family's causal LM: the class, and the prefix
    /// of its text weights in place of "model." (transformers 5 writes "model.language_model.", earlier versions
    /// "language_model.model."; the tied head is the text embedding). config.json nests the text config in text_config.
    static let conditionalGeneration: [String: Architecture] = ["Gemma3ForConditionalGeneration": .gemma3]

    /// The architecture and task of a class name in `architectures`.
    static func parse(className: String) -> (Architecture, ModelTask.Kind)? {
        if let a = conditionalGeneration[className] { return (a, .causalLM) }
        for a in allCases {
            for kind in a.readKinds where a.className(for: kind) == className { return (a, kind) }
        }
        return nil
    }
}

/// transformers' `problem_type` of a sequence classifier (ForSequenceClassificationLoss).
public enum ProblemType: String, Sendable, CaseIterable {
    /// One class per sample: cross-entropy over the num_labels logits.
    case singleLabel = "single_label_classification"
    /// num_labels real targets per sample: mean squared error.
    case regression
    /// num_labels independent yes/no targets: binary cross-entropy with logits.
    case multiLabel = "multi_label_classification"
}

/// The head on top of the decoder's final norm.
public enum ModelTask: Sendable, Equatable {
    /// lm_head (V, H) on every token: next-token logits.
    case causalLM
    /// score (num_labels, H), no bias, on one token per sample: the rightmost one
    /// whose id is not pad_token_id (GenericForSequenceClassification).
    case sequenceClassification(SequenceClassifier)
    /// dropout, then score (num_labels, H) with a bias, on every token
    /// (GenericForTokenClassification): a label per token.
    case tokenClassification(SequenceClassifier)
    /// qa_outputs (2, H) with a bias on every token: start and end logits of an
    /// extractive answer span (GenericForQuestionAnswering). `inCheckpoint`: read
    /// from a *ForQuestionAnswering checkpoint, else made at load.
    case questionAnswering(inCheckpoint: Bool)
    /// No head: the final norm's output (transformers' `*Model`, `last_hidden_state`),
    /// pooled per sample into a vector; trained contrastively (TokenBatch.contrastive).
    case featureExtraction

    public enum Kind: Sendable, CaseIterable {
        case causalLM, sequenceClassification, tokenClassification, questionAnswering, featureExtraction

        /// PEFT's task_type.
        public var peftTaskType: String {
            switch self {
            case .causalLM: return "CAUSAL_LM"
            case .sequenceClassification: return "SEQ_CLS"
            case .tokenClassification: return "TOKEN_CLS"
            case .questionAnswering: return "QUESTION_ANS"
            case .featureExtraction: return "FEATURE_EXTRACTION"
            }
        }

        /// The task of a PEFT task_type trained here (nil: not supported).
        public init?(peftTaskType: String) {
            guard let k = Self.allCases.first(where: { $0.peftTaskType == peftTaskType }) else { return nil }
            self = k
        }

        /// The suffix of transformers' class for the task ("ForCausalLM", "ForTokenClassification", …).
        public var classSuffix: String {
            switch self {
            case .causalLM: return "ForCausalLM"
            case .sequenceClassification: return "ForSequenceClassification"
            case .tokenClassification: return "ForTokenClassification"
            case .questionAnswering: return "ForQuestionAnswering"
            case .featureExtraction: return "Model"
            }
        }
    }
    public var kind: Kind {
        switch self {
        case .causalLM: return .causalLM
        case .sequenceClassification: return .sequenceClassification
        case .tokenClassification: return .tokenClassification
        case .questionAnswering: return .questionAnswering
        case .featureExtraction: return .featureExtraction
        }
    }
    /// The classifier head's settings (either classifier task).
    public var classifier: SequenceClassifier? {
        switch self {
        case .causalLM, .questionAnswering, .featureExtraction: return nil
        case .sequenceClassification(let c), .tokenClassification(let c): return c
        }
    }
    /// Whether the head (score, qa_outputs) is made at load rather than read from the checkpoint.
    public var headIsNew: Bool {
        switch self {
        case .causalLM, .featureExtraction: return false
        case .sequenceClassification(let c), .tokenClassification(let c): return !c.inCheckpoint
        case .questionAnswering(let inCheckpoint): return !inCheckpoint
        }
    }
    /// A sequence classifier's settings (one read-out per sample), else nil.
    public var sequenceClassifier: SequenceClassifier? {
        if case .sequenceClassification(let c) = self { return c }
        return nil
    }
    /// A token classifier's settings (a label per token), else nil.
    public var tokenClassifier: SequenceClassifier? {
        if case .tokenClassification(let c) = self { return c }
        return nil
    }
    /// PEFT's task_type.
    public var peftTaskType: String { kind.peftTaskType }
}

/// A classifier head's settings (sequence or token classification), as config.json carries them.
public struct SequenceClassifier: Sendable, Equatable {
    public var problemType: ProblemType
    /// id2label in id order (num_labels names).
    public var labels: [String]
    /// Whether score.weight is read from the checkpoint (a *ForSequenceClassification
    /// one) or made here (transformers' init: N(0, initializer_range²), seeded).
    public var inCheckpoint: Bool
    /// Whether score has a bias (a token classifier's token_classification_bias, default true).
    public var bias = false
    /// Dropout on the hidden states before score in training (a token classifier's
    /// classifier_dropout, else hidden_dropout, else 0.1).
    public var dropout = 0.0
    public var numLabels: Int { labels.count }

    /// Whether problem_type was left to inference (config.json's null): transformers
    /// then decides by the labels (one label: regression; float labels: multi-label).
    public var problemTypeInferred = false

    public init(labels: [String], problemType: ProblemType? = nil, inCheckpoint: Bool = false) {
        self.labels = labels
        // transformers' inference when problem_type is None: one label is a regression.
        self.problemType = problemType ?? (labels.count == 1 ? .regression : .singleLabel)
        self.problemTypeInferred = problemType == nil
        self.inCheckpoint = inCheckpoint
    }

    /// A token classifier (TOKEN_CLS): single-label per token, score with a bias, dropout 0.1 unless given.
    public static func tokens(labels: [String], dropout: Double = 0.1, bias: Bool = true, inCheckpoint: Bool = false) -> SequenceClassifier {
        var c = SequenceClassifier(labels: labels, problemType: .singleLabel, inCheckpoint: inCheckpoint)
        c.dropout = dropout
        c.bias = bias
        return c
    }

    /// transformers' default names: LABEL_0, LABEL_1, …
    public static func defaultLabels(_ n: Int) -> [String] { (0..<n).map { "LABEL_\($0)" } }
}

/// RoPE frequency settings (`rope_theta` and `rope_scaling`, or transformers 5's `rope_parameters`).
public struct RopeSettings: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case `default`
        case llama3(factor: Double, lowFreqFactor: Double, highFreqFactor: Double, originalMaxPositions: Int)
        /// Linear position interpolation: inv_freq / factor (Gemma 3's global layers, factor 8 on 4B and up).
        case linear(factor: Double)
        /// LongRoPE (Phi-3 / Phi-4-mini): inv_freq divided per frequency by short_factor, or by long_factor when
        /// the batch reaches past original_max_position_embeddings (transformers picks by max(position_ids) + 1),
        /// cos and sin scaled by attentionFactor (√(1 + ln f / ln original), f = max_position / original).
        case longrope(short: [Double], long: [Double], originalMaxPositions: Int, attentionFactor: Double)
    }
    public var theta: Double
    public var kind: Kind

    public init(theta: Double, kind: Kind) {
        self.theta = theta
        self.kind = kind
    }

    /// Whether a batch whose positions reach `maxPosition` uses LongRoPE's long factors.
    public func usesLongFactors(maxPosition: Int) -> Bool {
        if case .longrope(_, _, let original, _) = kind { return maxPosition + 1 > original }
        return false
    }

    /// inv_freq (headDim/2; headDim is the rotary dim), computed as transformers does (fp32 powers, then the
    /// llama3 remap, or LongRoPE's per-frequency factors: the long ones when `long`).
    public func inverseFrequencies(headDim d: Int, long: Bool = false) -> [Float] {
        if case .longrope(let short, let longFactors, _, _) = kind {
            // transformers: 1.0 / (ext_factors * base ** (arange(0, dim, 2).float() / dim)), all in fp32.
            let ext = long ? longFactors : short
            return (0..<(d / 2)).map { i in 1 / (Float(ext[i]) * powf(Float(theta), Float(2 * i) / Float(d))) }
        }
        // transformers: 1 / base ** (arange(0, dim, 2).float() / dim), in fp32.
        var inv = (0..<(d / 2)).map { i in 1 / powf(Float(theta), Float(2 * i) / Float(d)) }
        // transformers' linear type: inv_freq /= factor, in fp32.
        if case .linear(let factor) = kind { inv = inv.map { $0 / Float(factor) } }
        if case .llama3(let factor, let low, let high, let oldLen) = kind {
            let lowWavelen = Double(oldLen) / low, highWavelen = Double(oldLen) / high
            inv = inv.map { f in
                let wavelen = 2 * Double.pi / Double(f)
                var out = wavelen > lowWavelen ? Double(f) / factor : Double(f)
                let smooth = (Double(oldLen) / wavelen - low) / (high - low)
                let isMedium = !(wavelen < highWavelen) && !(wavelen > lowWavelen)
                if isMedium { out = (1 - smooth) * out / factor + smooth * out }
                return Float(out)
            }
        }
        return inv
    }

    /// cos and sin tables (positions, headDim; headDim is the rotary dim), the two halves repeating the
    /// frequencies; LongRoPE's scaled by its attention factor (the long factors' when `long`).
    public func tables(positions: Int, headDim d: Int, long: Bool = false) -> (cos: [Float], sin: [Float]) {
        let inv = inverseFrequencies(headDim: d, long: long)
        var scale: Float = 1
        if case .longrope(_, _, _, let f) = kind { scale = Float(f) }
        var c = [Float](repeating: 0, count: positions * d), s = c
        for p in 0..<positions {
            for i in 0..<(d / 2) {
                let angle = Float(p) * inv[i]
                let cv = cosf(angle) * scale, sv = sinf(angle) * scale
                c[p * d + i] = cv; c[p * d + i + d / 2] = cv
                s[p * d + i] = sv; s[p * d + i + d / 2] = sv
            }
        }
        return (c, s)
    }
}

/// What `config.json` says about the model, validated.
public struct ModelConfig: Sendable {
    public var architecture: Architecture
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numLayers: Int
    public var numHeads: Int
    public var numKVHeads: Int
    public var headDim: Int
    public var rmsNormEps: Double
    public var rope: RopeSettings
    public var vocabSize: Int
    public var tieWordEmbeddings: Bool
    public var maxPositionEmbeddings: Int
    public var attentionBias: Bool   // q, k, v (and o for Llama) carry biases
    public var outputProjectionBias: Bool
    public var mlpBias: Bool
    /// The window of sliding-window attention: a key j is attended from query t only when t − j < window.
    public var slidingWindow: Int?
    /// Which layers attend through the window (nil with a window: every layer).
    public var slidingLayers: [Bool]? = nil
    /// The window layer `l` attends through, nil for full attention.
    public func window(layer l: Int) -> Int? { slidingLayers.map { $0[l] } ?? true ? slidingWindow : nil }
    /// With partial rotary (Phi-3's partial_rotary_factor): int(head_dim · factor) values of each head rotate.
    public var partialRotaryDim: Int? = nil
    /// How many of each head's values RoPE rotates.
    public var rotaryDim: Int { partialRotaryDim ?? headDim }
    /// Which layers apply RoPE to q and k (NoPE layers: false); nil when every layer does.
    public var ropeLayers: [Bool]? = nil
    /// The RoPE of the sliding-window layers when it differs from `rope` (Gemma 3's local base,
    /// rope_local_base_freq or rope_parameters.sliding_attention); nil: every layer takes `rope`.
    public var slidingRope: RopeSettings? = nil
    /// Whether layer `l` takes `slidingRope`.
    public func usesSlidingRope(layer l: Int) -> Bool { slidingRope != nil && window(layer: l) != nil }
    /// The MLP's activation (hidden_act, or Gemma's hidden_activation).
    public var activation: GatedActivation = .silu
    /// Gemma's final_logit_softcapping: lm_head's logits become cap·tanh(logits / cap) (a causal LM's only), nil for none.
    public var finalLogitSoftcap: Double? = nil
    /// The cap on the head's logits in use (the causal LM head's).
    public var logitSoftcap: Float? { task.kind == .causalLM ? finalLogitSoftcap.map(Float.init) : nil }
    /// The attention scores' scale when it is not 1/√head_dim: query_pre_attn_scalar^-½ (Gemma 3).
    public var attentionScale: Double? = nil
    /// Read from a multimodal checkpoint's language model (Architecture.conditionalGeneration): the class name,
    /// nil for a plain causal LM.
    public var conditionalClass: String? = nil
    /// The head the model is built with (config.json's architecture decides; a
    /// causal checkpoint can be given a new classifier with `classifying`).
    public var task: ModelTask = .causalLM
    /// The head the checkpoint itself holds.
    public var checkpointTask: ModelTask.Kind = .causalLM
    /// pad_token_id (the classifier's read-out skips it); nil when config.json has none.
    public var padTokenID: Int?
    /// The std of transformers' normal init (a new classifier's score).
    public var initializerRange: Double = 0.02

    /// The output head's module path: lm_head, score for a classifier, qa_outputs for extractive QA.
    public var headPath: String {
        switch task.kind {
        case .causalLM, .featureExtraction: return "lm_head"   // feature extraction: the checkpoint's lm_head, never run
        case .questionAnswering: return "qa_outputs"
        default: return "score"
        }
    }
    /// The output head's rows: the vocabulary, num_labels, or 2 (start, end).
    public var headOutFeatures: Int { task.kind == .questionAnswering ? 2 : task.classifier?.numLabels ?? vocabSize }
    /// transformers' base_model_prefix of the task's class, as PEFT names its modules:
    /// "transformer." for Llama's and Qwen2's *ForQuestionAnswering (a BC name), "" for the bare
    /// `*Model` of feature extraction (AutoModel), else "model.".
    public var peftBasePrefix: String {
        if task.kind == .featureExtraction { return "" }
        if conditionalClass != nil { return "model.language_model." }   // PEFT on Gemma3ForConditionalGeneration
        return task.kind == .questionAnswering ? architecture.traits.questionAnsweringTrunk : "model."
    }

    /// Per-head RMSNorm on q and k before RoPE (ArchitectureTraits.qkNorm).
    public var qkNorm: Bool { architecture.traits.qkNorm }

    /// Fused q|k|v and gate|up projections (ArchitectureTraits.fusedProjections).
    public var fusedProjections: Bool { architecture.traits.fusedProjections }
    /// The widest fused projection output (q|k|v or gate|up), 0 without fused projections.
    public var fusedWidth: Int {
        fusedProjections ? max(numHeads * headDim + 2 * numKVHeads * headDim, 2 * intermediateSize) : 0
    }

    /// The per-layer norms over hidden_size, as the layer names them: input_layernorm and post_attention_layernorm
    /// (before the MLP, Llama); with sandwich norms (Gemma 3) post_attention_layernorm is on the attention's output,
    /// then pre_feedforward_layernorm and post_feedforward_layernorm.
    public var layerNorms: [String] {
        ["input_layernorm", "post_attention_layernorm"]
            + (architecture.traits.sandwichNorms ? ["pre_feedforward_layernorm", "post_feedforward_layernorm"] : [])
    }

    /// The rows of the RoPE tables for positions below `positions` (at least 1, at most max_position_embeddings;
    /// nil: every position the config allows).
    public func ropeTablePositions(_ positions: Int?) -> Int { min(max(positions ?? maxPositionEmbeddings, 1), maxPositionEmbeddings) }

    /// Whether layer `l` rotates q and k (false on a NoPE layer).
    public func usesRope(layer l: Int) -> Bool { ropeLayers.map { $0[l] } ?? true }

    /// A module path ("model.layers.0.self_attn.q_proj", "lm_head") as PEFT names it on the task's class.
    public func peftName(_ path: String) -> String {
        path.hasPrefix("model.") ? peftBasePrefix + path.dropFirst("model.".count) : path
    }

    /// Whether the head has a bias: a token classifier's (by default) and qa_outputs.
    public var headHasBias: Bool { task.kind == .questionAnswering || (task.classifier?.bias ?? false) }

    /// A causal config as a task whose head needs no labels takes it: QUESTION_ANS a new
    /// qa_outputs (made at load, or read from an adapter), FEATURE_EXTRACTION the trunk alone
    /// (AutoModel). nil for another task type, or when this config is not a causal LM's.
    public func withoutLabelsHead(taskType: String) -> ModelConfig? {
        guard task.kind == .causalLM else { return nil }
        var out = self
        switch taskType {
        case "QUESTION_ANS":
            guard architecture.traits.questionAnsweringClass else { return nil }   // Phi-3: no *ForQuestionAnswering
            out.task = .questionAnswering(inCheckpoint: false)
        case "FEATURE_EXTRACTION": out.task = .featureExtraction
        default: return nil
        }
        return out
    }

    /// This config with a new sequence classifier on top (its score is made at load).
    public func classifying(_ c: SequenceClassifier) -> ModelConfig {
        var out = self
        var c = c
        c.inCheckpoint = false
        out.task = .sequenceClassification(c)
        return out
    }

    /// This config with a new token classifier on top (score and its bias made at load).
    public func tagging(_ c: SequenceClassifier) -> ModelConfig {
        var out = self
        var c = c
        c.inCheckpoint = false
        c.problemType = .singleLabel
        out.task = .tokenClassification(c)
        return out
    }

    public static func load(directory: String) throws -> ModelConfig {
        let path = directory + "/config.json"
        return try parse(try readConfigFile(path), path: path)
    }

    public static func parse(_ data: Data, path: String) throws -> ModelConfig {
        try parse(object: try jsonObject(data, path: path), path: path)
    }

    /// config.json's fields (`path` names the file in errors).
    public static func parse(object top: JSONObject, path: String) throws -> ModelConfig {
        // A multimodal checkpoint (Gemma3ForConditionalGeneration): its language model's config is text_config.
        let topArchs = top["architectures"]?.strings ?? []
        let conditional = topArchs.first { Architecture.conditionalGeneration[$0] != nil }
        var j = top
        if let conditional {
            guard let text = top["text_config"]?.object else {
                throw CheckpointError.config(path: path, field: "text_config", reason: "missing (a \(conditional) config nests its language model's there)")
            }
            j = text
            j["architectures"] = .array([.string(conditional)])
            if j["tie_word_embeddings"] == nil, let t = top["tie_word_embeddings"] { j["tie_word_embeddings"] = t }
        }
        func int(_ k: String) throws -> Int {
            guard let v = j[k]?.integral, v > 0 else {
                throw CheckpointError.config(path: path, field: k, reason: j[k] == nil ? "missing" : "must be a positive integer, got \(j[k]!.shortDescription)")
            }
            // Sizes reach the kernels as 32-bit ints; products of two always fit in Int then.
            guard v <= Int(Int32.max) else {
                throw CheckpointError.config(path: path, field: k, reason: "\(v) is past the largest supported size \(Int32.max)")
            }
            return v
        }
        func optInt(_ k: String) throws -> Int? { j[k] == nil || j[k] == .null ? nil : try int(k) }
        func bool(_ k: String, _ d: Bool) throws -> Bool {
            guard let v = j[k] else { return d }
            guard let b = v.bool else { throw CheckpointError.config(path: path, field: k, reason: "must be true or false, got \(v.shortDescription)") }
            return b
        }
        func double(_ obj: JSONObject, _ k: String, _ field: String) throws -> Double {
            guard let v = obj[k]?.double else {
                throw CheckpointError.config(path: path, field: field, reason: obj[k] == nil ? "missing" : "must be a number")
            }
            return v
        }
        func positiveInt(_ d: Double, _ field: String) throws -> Int {
            guard let n = Int(exactly: d), n > 0 else {
                throw CheckpointError.config(path: path, field: field, reason: "must be a positive integer, got \(d)")
            }
            return n
        }
        let archs = j["architectures"]?.strings ?? []
        guard let (arch, checkpointKind) = archs.compactMap(Architecture.parse(className:)).first else {
            throw CheckpointError.config(path: path, field: "architectures",
                                         reason: "\(archs.isEmpty ? "missing" : archs.joined(separator: ", ")) is not supported; supported: "
                                            + Architecture.classNames.joined(separator: ", "))
        }
        // The family config class's defaults under what config.json gives (keys it leaves out).
        for (k, v) in arch.traits.configDefaults.pairs where j[k] == nil { j[k] = v }
        if arch.traits.fusedProjections {
            // Phi-3's residual and embedding dropouts act in training; every released Phi-3 / Phi-4-mini sets them to 0.
            for k in ["resid_pdrop", "embd_pdrop", "attention_dropout"] {
                if let p = j[k]?.double, p != 0 {
                    throw CheckpointError.config(path: path, field: k, reason: "\(p) is not supported (dropout outside the LoRA branch); set it to 0.0")
                }
            }
        }
        // The family's own key only (Gemma3TextConfig has no hidden_act: transformers ignores one there).
        let actKey = arch.traits.activationKey
        let activation: GatedActivation
        if let v = j[actKey], !v.isNull {
            guard let name = v.string, let a = GatedActivation(rawValue: name) else {
                throw CheckpointError.config(path: path, field: actKey, reason: "\(v.string.map { "'\($0)'" } ?? v.shortDescription) is not supported; supported: "
                                                + GatedActivation.allCases.map(\.rawValue).joined(separator: ", "))
            }
            activation = a
        } else {
            activation = arch.traits.activationKey == "hidden_act" ? .silu : .geluTanh
        }
        // Final-logit soft-capping: Gemma3ForCausalLM caps its logits; Gemma3ForConditionalGeneration does not (its forward
        // computes lm_head and the loss uncapped), nor here for its language model. Gemma 3's attn_logit_softcapping is read
        // but not applied by transformers' Gemma3Attention (it never reaches the attention call), so not here either.
        // Every released Gemma 3 config sets both to null.
        var finalLogitSoftcap: Double? = nil
        if let key = arch.traits.logitSoftcapKey, conditional == nil, let v = j[key], !v.isNull {
            guard let cap = v.double, cap > 0 else {
                throw CheckpointError.config(path: path, field: key, reason: "must be a positive number or null, got \(v.shortDescription)")
            }
            finalLogitSoftcap = cap
        }
        if try bool("use_bidirectional_attention", false) {
            throw CheckpointError.config(path: path, field: "use_bidirectional_attention",
                                         reason: "true is not supported (an encoder; a causal LM attends to the left)")
        }
        // Dropout on the attention probabilities (outside the LoRA branch) is not implemented: every family's released configs set 0.
        if let p = j["attention_dropout"]?.double, p != 0 {
            throw CheckpointError.config(path: path, field: "attention_dropout", reason: "\(p) is not supported; set it to 0.0")
        }
        let hidden = try int("hidden_size"), heads = try int("num_attention_heads")
        let kv = try optInt("num_key_value_heads") ?? heads
        guard heads % kv == 0 else {
            throw CheckpointError.config(path: path, field: "num_key_value_heads",
                                         reason: "\(kv) does not divide num_attention_heads \(heads)")
        }
        let headDim = try optInt("head_dim") ?? arch.traits.defaultHeadDim ?? hidden / heads
        guard headDim % 2 == 0, headDim <= 256 else {
            throw CheckpointError.config(path: path, field: "head_dim", reason: "\(headDim) must be even and ≤ 256")
        }
        // RoPE: transformers ≥ 5 writes rope_parameters; earlier versions rope_theta + rope_scaling.
        var ropeObj = JSONObject()
        var ropeField = "rope_scaling"
        if let rp = j["rope_parameters"]?.object { ropeObj = rp; ropeField = "rope_parameters" }
        else if let rs = j["rope_scaling"]?.object { ropeObj = rs }
        /// One RoPE description: rope_theta (else `defaultTheta`) and rope_type with its parameters.
        func ropeSettings(_ ropeObj: JSONObject, _ ropeField: String, defaultTheta: Double) throws -> RopeSettings {
        let theta = ropeObj["rope_theta"] != nil ? try double(ropeObj, "rope_theta", ropeField + ".rope_theta") : defaultTheta
        let ropeType = ropeObj["rope_type"]?.string ?? ropeObj["type"]?.string ?? "default"
        let kind: RopeSettings.Kind
        switch ropeType {
        case "default": kind = .default
        case "linear":
            let factor = try double(ropeObj, "factor", ropeField + ".factor")
            guard factor >= 1 else {
                throw CheckpointError.config(path: path, field: ropeField + ".factor", reason: "must be 1 or more, got \(factor)")
            }
            kind = .linear(factor: factor)
        case "llama3":
            kind = .llama3(factor: try double(ropeObj, "factor", ropeField + ".factor"),
                           lowFreqFactor: try double(ropeObj, "low_freq_factor", ropeField + ".low_freq_factor"),
                           highFreqFactor: try double(ropeObj, "high_freq_factor", ropeField + ".high_freq_factor"),
                           originalMaxPositions: try positiveInt(double(ropeObj, "original_max_position_embeddings",
                                                                        ropeField + ".original_max_position_embeddings"),
                                                                 ropeField + ".original_max_position_embeddings"))
        case "longrope":
            let field = ropeField + ".original_max_position_embeddings"
            let original = try positiveInt(ropeObj["original_max_position_embeddings"] != nil ? double(ropeObj, "original_max_position_embeddings", field)
                                           : double(j, "original_max_position_embeddings", "original_max_position_embeddings"), field)
            let maxPositions = Double(try optInt("max_position_embeddings") ?? 2048)
            let factor = ropeObj["factor"]?.double ?? maxPositions / Double(original)
            let attention = ropeObj["attention_factor"]?.double
                ?? (factor <= 1 ? 1 : (1 + Foundation.log(factor) / Foundation.log(Double(original))).squareRoot())
            func factors(_ k: String) throws -> [Double] {
                guard let list = ropeObj[k]?.array, !list.isEmpty, list.allSatisfy({ $0.double.map { $0 > 0 } ?? false }) else {
                    throw CheckpointError.config(path: path, field: ropeField + "." + k, reason: "must be a list of positive numbers")
                }
                return list.map { $0.double! }
            }
            kind = .longrope(short: try factors("short_factor"), long: try factors("long_factor"), originalMaxPositions: original,
                             attentionFactor: attention)
        default:
            throw CheckpointError.config(path: path, field: ropeField + ".rope_type",
                                         reason: "'\(ropeType)' is not supported; supported: default, linear, llama3, longrope")
        }
        return RopeSettings(theta: theta, kind: kind)
        }
        var slidingRope: RopeSettings? = nil
        let rope: RopeSettings
        if arch.traits.window == .layerTypes {
            // Gemma 3: full_attention and sliding_attention each their own (rope_parameters), or rope_theta (default 1e6)
            // with rope_scaling for the global layers and rope_local_base_freq (default 10000) for the sliding ones.
            let localBase = j["rope_local_base_freq"]?.double ?? 10000
            if let full = ropeObj["full_attention"]?.object {
                rope = try ropeSettings(full, "rope_parameters.full_attention", defaultTheta: j["rope_theta"]?.double ?? 1_000_000)
                slidingRope = try ropeSettings(ropeObj["sliding_attention"]?.object ?? [:], "rope_parameters.sliding_attention",
                                               defaultTheta: localBase)
            } else {
                rope = try ropeSettings(ropeObj, ropeField, defaultTheta: j["rope_theta"]?.double ?? 1_000_000)
                slidingRope = RopeSettings(theta: localBase, kind: .default)
            }
        } else {
            rope = try ropeSettings(ropeObj, ropeField, defaultTheta: j["rope_theta"]?.double ?? 10000)
        }
        let kind = rope.kind
        // Partial rotary (Phi-3, Phi-4-mini): transformers rotates int(head_dim · partial_rotary_factor) values.
        let partial = ropeObj["partial_rotary_factor"]?.double ?? j["partial_rotary_factor"]?.double ?? 1
        let rotaryDim = Int(Double(headDim) * partial)
        guard partial > 0, partial <= 1, rotaryDim >= 2, rotaryDim % 2 == 0 else {
            throw CheckpointError.config(path: path, field: "partial_rotary_factor",
                                         reason: "\(partial) gives \(rotaryDim) rotary values of head_dim \(headDim): must be even, 2 or more")
        }
        if case .longrope(let short, let long, _, _) = kind, short.count != rotaryDim / 2 || long.count != rotaryDim / 2 {
            throw CheckpointError.config(path: path, field: ropeField + ".short_factor",
                                         reason: "short_factor and long_factor must hold rotary_dim/2 = \(rotaryDim / 2) values, got \(short.count) and \(long.count)")
        }
        /// SmolLM3: which layers apply RoPE (no_rope_layers 1), else all but every no_rope_layer_interval-th (1-based).
        func ropeLayers() throws -> [Bool] {
            let layers = try int("num_hidden_layers")
            if let v = j["no_rope_layers"], !v.isNull {
                guard let list = v.array, list.count == layers, list.allSatisfy({ $0.integral == 0 || $0.integral == 1 }) else {
                    throw CheckpointError.config(path: path, field: "no_rope_layers",
                                                 reason: "must list 0 (no RoPE) or 1 (RoPE) for each of the \(layers) layers, got \(v.shortDescription)")
                }
                return list.map { $0.integral == 1 }
            }
            let every = try optInt("no_rope_layer_interval") ?? 4
            return (0..<layers).map { ($0 + 1) % every != 0 }
        }
        /// The sliding window and the layers it applies to. Mistral (and Phi-3): sliding_window on every
        /// layer. Qwen2 (as transformers reads it), Qwen3, SmolLM3: only with use_sliding_window, on the layers
        /// layer_types marks "sliding_attention", else those from max_window_layers on (SmolLM3: its NoPE layers).
        func slidingWindow() throws -> (window: Int, layers: [Bool])? {
            let layers = try int("num_hidden_layers")
            switch arch.traits.window {
            case .everyLayer:
                return try optInt("sliding_window").map { ($0, [Bool](repeating: true, count: layers)) }
            case .useSlidingWindowKey:
                guard try bool("use_sliding_window", false), let w = try optInt("sliding_window") else { return nil }
                var sliding: [Bool]
                if let types = j["layer_types"]?.array {
                    guard types.count == layers else {
                        throw CheckpointError.config(path: path, field: "layer_types", reason: "lists \(types.count) layers, the model has \(layers)")
                    }
                    sliding = types.map { $0.string == "sliding_attention" }
                } else if arch.traits.noRopeLayers {
                    // SmolLM3Config: the sliding layers are the NoPE ones (it has no max_window_layers).
                    sliding = try ropeLayers().map { !$0 }
                } else {
                    var from = 28
                    if let v = j["max_window_layers"], !v.isNull {
                        guard let n = v.integral, n >= 0 else {
                            throw CheckpointError.config(path: path, field: "max_window_layers", reason: "must be a non-negative integer, got \(v.shortDescription)")
                        }
                        from = n
                    }
                    sliding = (0..<layers).map { $0 >= from }
                }
                return sliding.contains(true) ? (w, sliding) : nil
            case .layerTypes:
                // Gemma 3: no switch; layer_types, else every sliding_window_pattern-th layer (1-based) full.
                if let v = j["sliding_window"], v.isNull {
                    throw CheckpointError.config(path: path, field: "sliding_window", reason: "null is not supported for Gemma 3 (its "
                                                    + "sliding layers take the local RoPE; give the window, Gemma3TextConfig's default is 4096)")
                }
                let w = try optInt("sliding_window") ?? 4096
                let sliding: [Bool]
                if let types = j["layer_types"]?.array {
                    guard types.count == layers, types.allSatisfy({ $0.string == "sliding_attention" || $0.string == "full_attention" }) else {
                        throw CheckpointError.config(path: path, field: "layer_types", reason: "must list \(layers) entries, each "
                                                        + "\"sliding_attention\" or \"full_attention\"")
                    }
                    sliding = types.map { $0.string == "sliding_attention" }
                } else {
                    // The Hub's configs' sliding_window_pattern (transformers 5 also saves _sliding_window_pattern beside
                    // layer_types, and reads neither back: layer_types is always saved).
                    let pattern = try optInt("sliding_window_pattern") ?? 6
                    sliding = (0..<layers).map { ($0 + 1) % pattern != 0 }
                }
                return sliding.contains(true) ? (w, sliding) : nil
            case .none: return nil
            }
        }
        let attnBias: Bool
        let oBias: Bool
        switch arch.traits.biases {
        case .qkv: attnBias = true; oBias = false
        case .attentionBiasKey: attnBias = try bool("attention_bias", false); oBias = attnBias
        case .none: attnBias = false; oBias = false
        }
        var config = ModelConfig(
            architecture: arch, hiddenSize: hidden, intermediateSize: try int("intermediate_size"),
            numLayers: try int("num_hidden_layers"), numHeads: heads, numKVHeads: kv, headDim: headDim,
            rmsNormEps: j["rms_norm_eps"]?.double ?? 1e-6,
            rope: rope, vocabSize: try int("vocab_size"),
            tieWordEmbeddings: try bool("tie_word_embeddings", false),
            maxPositionEmbeddings: try optInt("max_position_embeddings") ?? 2048,
            attentionBias: attnBias, outputProjectionBias: oBias,
            mlpBias: arch.traits.mlpBiasKey ? try bool("mlp_bias", false) : false,
            slidingWindow: try slidingWindow()?.window)
        config.checkpointTask = checkpointKind
        config.activation = activation
        config.finalLogitSoftcap = finalLogitSoftcap
        config.conditionalClass = conditional
        if let key = arch.traits.attentionScaleKey, let v = j[key], !v.isNull {
            // transformers: scaling = query_pre_attn_scalar ** -0.5.
            guard let q = v.double, q > 0 else {
                throw CheckpointError.config(path: path, field: key, reason: "must be positive, got \(v.shortDescription)")
            }
            config.attentionScale = Foundation.pow(q, -0.5)
        }
        if let w = try slidingWindow(), w.layers.contains(false) { config.slidingLayers = w.layers }
        if config.slidingWindow != nil, let local = slidingRope, local != rope { config.slidingRope = local }
        if rotaryDim != headDim { config.partialRotaryDim = rotaryDim }
        if arch.traits.noRopeLayers {
            config.ropeLayers = try ropeLayers()
            if config.ropeLayers!.allSatisfy({ $0 }) { config.ropeLayers = nil }
        }
        if let v = j["pad_token_id"], !v.isNull {
            // A list (some configs) or a number; a negative one means none.
            if let n = v.integral { config.padTokenID = n >= 0 ? n : nil }
            else if let n = v.array?.first?.integral { config.padTokenID = n >= 0 ? n : nil }
            else { throw CheckpointError.config(path: path, field: "pad_token_id", reason: "must be an integer, got \(v.shortDescription)") }
        }
        if let r = j["initializer_range"]?.double { config.initializerRange = r }
        switch checkpointKind {
        case .sequenceClassification: config.task = .sequenceClassification(try classifier(j, path: path))
        case .tokenClassification:
            let c = try classifier(j, path: path)
            // GenericForTokenClassification: classifier_dropout, else hidden_dropout, else 0.1; bias unless token_classification_bias is false.
            let p = [j["classifier_dropout"], j["hidden_dropout"]].compactMap { $0?.double }.first ?? 0.1
            guard (0..<1).contains(p) else {
                throw CheckpointError.config(path: path, field: "classifier_dropout", reason: "must be in [0, 1), got \(p)")
            }
            config.task = .tokenClassification(.tokens(labels: c.labels, dropout: p, bias: try bool("token_classification_bias", true),
                                                       inCheckpoint: true))
        case .questionAnswering: config.task = .questionAnswering(inCheckpoint: true)
        case .causalLM, .featureExtraction: break
        }
        return config
    }

    /// A *ForSequenceClassification config's num_labels, id2label and problem_type.
    static func classifier(_ j: JSONObject, path: String) throws -> SequenceClassifier {
        var labels: [String]
        if let m = j["id2label"]?.object, !m.pairs.isEmpty {
            labels = [String](repeating: "", count: m.pairs.count)
            for (k, v) in m.pairs {
                guard let i = Int(k), labels.indices.contains(i), let name = v.string else {
                    throw CheckpointError.config(path: path, field: "id2label",
                                                 reason: "must map the ids 0…\(m.pairs.count - 1) to names, got key '\(k)'")
                }
                labels[i] = name
            }
        } else if let n = j["num_labels"]?.integral, n > 0 {
            labels = SequenceClassifier.defaultLabels(n)
        } else {
            labels = SequenceClassifier.defaultLabels(2)   // PretrainedConfig's default
        }
        if let n = j["num_labels"]?.integral, n != labels.count {
            throw CheckpointError.config(path: path, field: "num_labels", reason: "\(n), but id2label names \(labels.count) labels")
        }
        var problem: ProblemType? = nil
        if let v = j["problem_type"], !v.isNull {
            guard let s = v.string, let p = ProblemType(rawValue: s) else {
                throw CheckpointError.config(path: path, field: "problem_type",
                                             reason: "\(v.shortDescription) is not one of " + ProblemType.allCases.map(\.rawValue).joined(separator: ", "))
            }
            problem = p
        }
        return SequenceClassifier(labels: labels, problemType: problem, inCheckpoint: true)
    }
}

/// The bytes of a JSON config file, or an error naming it.
func readConfigFile(_ path: String) throws -> Data {
    guard let data = FileManager.default.contents(atPath: path) else {
        throw CheckpointError.io(path: path, reason: "cannot read the file")
    }
    return data
}

/// A JSON object, or an error naming the file.
func jsonObject(_ data: Data, path: String) throws -> JSONObject {
    guard let j = (try? JSONValue.parse(data))?.object else {
        throw CheckpointError.config(path: path, field: "(root)", reason: "not a JSON object")
    }
    return j
}
