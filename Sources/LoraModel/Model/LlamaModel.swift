import Foundation
import LoraBase
import LoraOps
import OpenCLRuntime

/// Errors of LoRA injection and adapter files.
public enum LoraError: Error, CustomStringConvertible, Equatable {
    case noTargetMatched(targets: String, available: [String])
    case unsupportedModule(String)
    case adapter(path: String, reason: String)
    case batch(String)

    public var description: String {
        switch self {
        case .noTargetMatched(let t, let available):
            return "target_modules \(t) matched no module of the model; its module names are: " + available.joined(separator: ", ")
        case .unsupportedModule(let m): return m
        case .adapter(let p, let r): return "\(p): \(r)"
        case .batch(let r): return "batch: \(r)"
        }
    }
}

/// One decoder layer's weights.
public final class DecoderLayer {
    /// The norms before attention and before the MLP (Llama's input_layernorm and post_attention_layernorm,
    /// Gemma 3's input_layernorm and pre_feedforward_layernorm); with normPlusOne they hold 1 + w.
    public let inputNorm: DeviceBuffer<Float>
    public let postNorm: DeviceBuffer<Float>
    /// Per-head RMSNorm weights (D) on q and k before RoPE (ArchitectureTraits.qkNorm), else nil.
    public let qNorm, kNorm: DeviceBuffer<Float>?
    /// Sandwich norms (Gemma 3): on the attention's output (post_attention_layernorm) and the MLP's
    /// (post_feedforward_layernorm) before each residual add; nil otherwise.
    public let attnOutNorm, mlpOutNorm: DeviceBuffer<Float>?
    /// The attention's input projections: q, k and v apart, or one fused q|k|v (`qkv`, Phi-3); the MLP's
    /// gate and up apart, or fused gate|up (`gateUp`).
    public let q, k, v, qkv: Linear?
    public let o: Linear
    public let gate, up, gateUp: Linear?
    public let down: Linear
    public var linears: [Linear] { [q, k, v, qkv, o, gate, up, gateUp, down].compactMap { $0 } }
    /// `l`: the layer's linears by their name in the layer ("self_attn.q_proj", …).
    init(inputNorm: DeviceBuffer<Float>, postNorm: DeviceBuffer<Float>, qNorm: DeviceBuffer<Float>? = nil,
         kNorm: DeviceBuffer<Float>? = nil, attnOutNorm: DeviceBuffer<Float>? = nil, mlpOutNorm: DeviceBuffer<Float>? = nil,
         _ l: [String: Linear]) {
        self.inputNorm = inputNorm
        self.postNorm = postNorm
        self.qNorm = qNorm
        self.kNorm = kNorm
        self.attnOutNorm = attnOutNorm
        self.mlpOutNorm = mlpOutNorm
        (q, k, v, qkv) = (l["self_attn.q_proj"], l["self_attn.k_proj"], l["self_attn.v_proj"], l["self_attn.qkv_proj"])
        (gate, up, gateUp) = (l["mlp.gate_proj"], l["mlp.up_proj"], l["mlp.gate_up_proj"])
        (o, down) = (l["self_attn.o_proj"]!, l["mlp.down_proj"]!)
    }
}

/// A token batch (B, T) with causal-LM labels; shifted targets and the
/// embedding-backward grouping are built on the host here, once.
///
/// Packed and padded rows: `sequenceIDs` (B×T) says which sample of its row
/// each token belongs to (each id one contiguous run within its row, e.g.
/// 0 0 0 1 1 2 2 2 −1 −1 with −1 for trailing padding); attention never
/// crosses a sample boundary and the shift never makes the first token of a
/// sample the target of the last token of the previous one. `positionIDs`
/// (B×T) are the RoPE positions, usually restarting at 0 with each sample.
public struct TokenBatch {
    public let batch: Int
    public let seq: Int
    public let inputIDs: [Int32]
    public let labels: [Int32]
    /// targets[b·T + t] = labels[b, t+1], −100 at the last position of a row
    /// (transformers' shift) and at the last token of every packed sample.
    /// A sequence-classification batch: the label at each row's read-out token (0
    /// there for real-valued targets), −100 elsewhere. A token-classification
    /// batch: the labels as given (no shift).
    public internal(set) var targets: [Int32]
    /// A classification batch's read-out token of each row (B), else nil.
    public internal(set) var readout: [Int]?
    /// Whether targets are per-token class labels (a token-classification batch).
    public internal(set) var tokenLabels = false
    /// An extractive-QA batch's answer positions, (start, end) of each row in turn (2B).
    public internal(set) var answerPositions: [Int32]?
    /// Real-valued targets (regression, multi-label): C per counted row, in row order.
    public internal(set) var realTargets: [Float]?
    /// A contrastive batch (FEATURE_EXTRACTION), else nil.
    public internal(set) var contrastive: Contrastive?

    /// Rows [anchors (B); positives (B); negatives (B or none)], each sample right-padded; its
    /// length; how it is pooled into a vector; InfoNCE's scale (1 / temperature).
    public struct Contrastive: Sendable, Equatable {
        public let anchors: Int
        public let lengths: [Int]
        public let pooling: Pooling
        public let scale: Float
    }
    /// RoPE positions (B·T); 0…T−1 in every row unless given.
    public let positionIDs: [Int32]
    /// Sample ids (B·T); all 0 (one sample per row) unless given.
    public let sequenceIDs: [Int]
    /// Per token, the index within its row of its sample's first token (B·T).
    public let segmentStarts: [Int32]
    /// Whether some row holds more than one sample (else attention runs unmasked by samples).
    public let isPacked: Bool
    /// The longest run of one sample, in tokens (T when unpacked).
    public let longestSample: Int
    public var tokens: Int { batch * seq }
    public var countedTokens: Int {
        if let a = answerPositions { return a.count }   // every start and end position trains
        if let c = contrastive { return c.anchors }     // one loss term per anchor
        return targets.filter { $0 >= 0 }.count
    }

    public init(inputIDs: [[Int]], labels: [[Int]]? = nil, positionIDs: [[Int]]? = nil,
                sequenceIDs: [[Int]]? = nil) throws {
        guard let t = inputIDs.first?.count, t > 0, inputIDs.allSatisfy({ $0.count == t }) else {
            throw LoraError.batch("input_ids must be a non-empty rectangle")
        }
        let labels = labels ?? inputIDs
        guard labels.count == inputIDs.count, labels.allSatisfy({ $0.count == t }) else {
            throw LoraError.batch("labels must have the shape of input_ids")
        }
        for (name, x) in [("position_ids", positionIDs), ("sequence_ids", sequenceIDs)] {
            if let x = x, x.count != inputIDs.count || !x.allSatisfy({ $0.count == t }) {
                throw LoraError.batch("\(name) must have the shape of input_ids (\(inputIDs.count)×\(t))")
            }
        }
        batch = inputIDs.count
        seq = t
        /// Range-checked Int32 of every element (the vocabulary is checked against the model later).
        func int32(_ rows: [[Int]], _ name: String, allowed: ClosedRange<Int>) throws -> [Int32] {
            var out: [Int32] = []
            out.reserveCapacity(rows.count * t)
            for (b, row) in rows.enumerated() { for (i, x) in row.enumerated() {
                guard allowed.contains(x), let v = Int32(exactly: x) else {
                    throw LoraError.batch("\(name)[\(b)][\(i)] = \(x) is out of range")
                }
                out.append(v)
            } }
            return out
        }
        let any32 = Int(Int32.min)...Int(Int32.max)
        self.inputIDs = try int32(inputIDs, "input_ids", allowed: any32)
        self.labels = try int32(labels, "labels", allowed: any32)
        self.positionIDs = try positionIDs.map { try int32($0, "position_ids", allowed: 0...Int(Int32.max)) }
            ?? (0..<(batch * t)).map { Int32(truncatingIfNeeded: $0 % t) }
        let ids = sequenceIDs?.flatMap { $0 } ?? [Int](repeating: 0, count: batch * t)
        self.sequenceIDs = ids
        let starts: [Int32]
        do {
            starts = try ComputeContext.AttentionShape(batch: inputIDs.count, seq: t, heads: 1, kvHeads: 1, headDim: 1)
                .segmentStarts(sequenceIDs: ids)
        } catch let e as OpError {
            throw LoraError.batch(e.detail)
        }
        segmentStarts = starts
        isPacked = starts.contains { $0 != 0 }
        longestSample = starts.indices.map { $0 % t - Int(starts[$0]) + 1 }.max() ?? t
        // The shift stays within a sample: the last token of each has no target.
        let lab = self.labels
        var tg = [Int32](repeating: -100, count: lab.count)
        for i in 0..<lab.count where i % t + 1 < t && ids[i + 1] == ids[i] { tg[i] = lab[i + 1] }
        targets = tg
    }

    /// A token-classification batch (TOKEN_CLS): a label per token, not shifted
    /// (−100: not trained — padding, a word's later sub-tokens).
    public static func tokenClassification(inputIDs: [[Int]], labels: [[Int]]) throws -> TokenBatch {
        var b = try TokenBatch(inputIDs: inputIDs, labels: labels)
        if let i = b.labels.firstIndex(where: { $0 != -100 && $0 < 0 }) {
            throw LoraError.batch("label \(b.labels[i]) of row \(i / b.seq), token \(i % b.seq) is neither -100 nor a class id")
        }
        b.targets = b.labels   // the labels as they are: no shift
        b.tokenLabels = true
        return b
    }

    /// An extractive-QA batch (QUESTION_ANS): each row's answer span as token
    /// positions (start, end); (0, 0) marks an unanswerable window, as transformers'
    /// QA recipe writes it. As transformers clamps positions to [0, T], a negative
    /// one (−100 included) is position 0 and trains; a position at or past T, which
    /// transformers leaves out of its start or end mean alone, is refused here (the
    /// two means would then average over different counts).
    public static func questionAnswering(inputIDs: [[Int]], spans: [(start: Int, end: Int)]) throws -> TokenBatch {
        var b = try TokenBatch(inputIDs: inputIDs, labels: inputIDs.map { $0.map { _ in -100 } })
        guard spans.count == b.batch else { throw LoraError.batch("\(spans.count) answer spans for \(b.batch) rows") }
        var a: [Int32] = []
        for (r, s) in spans.enumerated() {
            for p in [s.start, s.end] {
                guard p < b.seq else {
                    throw LoraError.batch("answer position \(p) of row \(r) is past the row's \(b.seq) tokens "
                                          + "(a window without the answer points at 0, 0)")
                }
                a.append(Int32(max(p, 0)))
            }
        }
        b.answerPositions = a
        return b
    }

    /// A contrastive batch (FEATURE_EXTRACTION, sentence-transformers' MultipleNegativesRankingLoss):
    /// each anchor's pooled, L2-normalised vector against every positive (and negative) of the
    /// batch, scaled cosine similarities, cross-entropy towards its own positive — the other rows'
    /// positives and all negatives are its in-batch negatives.
    public static func contrastive(anchors: [[Int]], positives: [[Int]], negatives: [[Int]]? = nil, padTokenID: Int,
                                   pooling: Pooling, scale: Float) throws -> TokenBatch {
        let B = anchors.count
        guard B > 0, positives.count == B, negatives.map({ $0.count == B }) ?? true else {
            throw LoraError.batch("a contrastive batch takes as many positives (and negatives) as anchors: "
                                  + "\(B), \(positives.count)\(negatives.map { ", \($0.count)" } ?? "")")
        }
        let rows = anchors + positives + (negatives ?? [])
        guard let width = rows.map(\.count).max(), rows.allSatisfy({ !$0.isEmpty }) else {
            throw LoraError.batch("every anchor, positive and negative needs at least one token")
        }
        guard scale.isFinite, scale > 0 else { throw LoraError.batch("the contrastive scale must be positive, got \(scale)") }
        let padded = rows.map { $0 + [Int](repeating: padTokenID, count: width - $0.count) }
        var b = try TokenBatch(inputIDs: padded, labels: padded.map { $0.map { _ in -100 } })
        b.contrastive = Contrastive(anchors: B, lengths: rows.map(\.count), pooling: pooling, scale: scale)
        return b
    }

    /// The targets of a sequence classifier, per row: a class id (single-label;
    /// −100 skips the row) or num_labels reals (regression, multi-label).
    public enum ClassTargets: Sendable {
        case classes([Int])
        case reals([[Float]])
    }

    /// A sequence-classification batch: rows of `inputIDs` (right-padded, one
    /// sample each), read at the rightmost token whose id is not `padTokenID`
    /// (token 0 when every one is), as transformers' GenericForSequenceClassification
    /// does; with no pad id, at each row's last token (`lengths`, else T).
    public static func sequenceClassification(inputIDs: [[Int]], padTokenID: Int?, lengths: [Int]? = nil,
                                              targets: ClassTargets) throws -> TokenBatch {
        let rows = inputIDs.count
        var b = try TokenBatch(inputIDs: inputIDs, labels: inputIDs.map { $0.map { _ in -100 } })
        if let lengths, lengths.count != rows || lengths.contains(where: { $0 < 1 || $0 > b.seq }) {
            throw LoraError.batch("lengths must give 1…\(b.seq) tokens for each of the \(rows) rows")
        }
        let readout: [Int] = inputIDs.enumerated().map { r, row in
            guard let pad = padTokenID else { return (lengths?[r] ?? row.count) - 1 }
            return row.lastIndex { $0 != pad } ?? 0
        }
        var tg = [Int32](repeating: -100, count: b.tokens)
        switch targets {
        case .classes(let c):
            guard c.count == rows else { throw LoraError.batch("\(c.count) labels for \(rows) rows") }
            for r in 0..<rows {
                guard c[r] == -100 || c[r] >= 0, let v = Int32(exactly: c[r]) else {
                    throw LoraError.batch("label \(c[r]) of row \(r) is neither -100 nor a class id")
                }
                tg[r * b.seq + readout[r]] = v
            }
        case .reals(let v):
            guard v.count == rows, let c = v.first?.count, c > 0, v.allSatisfy({ $0.count == c }) else {
                throw LoraError.batch("real-valued labels must be \(rows) rows of the same non-zero length")
            }
            for r in 0..<rows { tg[r * b.seq + readout[r]] = 0 }
            b.realTargets = v.flatMap { $0 }
        }
        b.targets = tg
        b.readout = readout
        return b
    }
}

/// A Llama-family causal LM on the device, adapted the way PEFT adapts it.
public final class LlamaLoRAModel {
    public let ctx: ComputeContext
    public let config: ModelConfig
    public let lora: LoraConfig
    public let store: ParameterStore
    public let layers: [DecoderLayer]
    /// The output head: lm_head (V, H), or a classifier's score (num_labels, H).
    public let lmHead: Linear
    /// The frozen token embedding E (V, H) as a frozen linear (in = H, out = V):
    /// the panels of op(B) = Eᵀ in the checkpoint's storage type, in parts when
    /// E exceeds one device buffer; a tied lm_head shares them. Rows are
    /// gathered from the panels (`ComputeContext.gatherRows`). nil when a trained
    /// copy (modules_to_save) replaces it and no frozen tied lm_head reads it.
    public let embeddingTable: FrozenLinear?
    public private(set) var embeddingLoRA: LoRAPair?  // A (r, V), B (H, r)
    public private(set) var trainedEmbedding: ParameterStore.Entry?
    public let finalNorm: DeviceBuffer<Float>
    public let adapterPlan: AdapterPlan
    /// Module paths that got a LoRA adapter, in model order.
    public var adaptedModules: [String] { adapterPlan.adapted }
    public var gradientCheckpointing = false
    /// Rows of logits alive at once in training.
    public var logitsChunkRows = 256
    let rope: (cos: DeviceBuffer<Float>, sin: DeviceBuffer<Float>)
    /// LongRoPE's long-factor tables (Phi-3), used by a batch reaching past original_max_position_embeddings.
    let ropeLong: (cos: DeviceBuffer<Float>, sin: DeviceBuffer<Float>)?
    /// The tables of the batch being run (set by `prepare`).
    var ropeInUse: (cos: DeviceBuffer<Float>, sin: DeviceBuffer<Float>)
    /// The positions the RoPE tables cover (0 ..< ropePositions).
    public let ropePositions: Int
    /// The sliding-window layers' own tables (Gemma 3's local base), nil when they take `rope`.
    let ropeSliding: (cos: DeviceBuffer<Float>, sin: DeviceBuffer<Float>)?

    /// Layer `l`'s RoPE tables for the batch being run.
    func ropeTables(layer l: Int) -> (cos: DeviceBuffer<Float>, sin: DeviceBuffer<Float>) {
        config.usesSlidingRope(layer: l) ? (ropeSliding ?? ropeInUse) : ropeInUse
    }

    /// The embedding's padding_idx (config.json's pad_token_id, as transformers builds embed_tokens).
    var paddingIndex: Int32? { config.padTokenID.flatMap { $0 < config.vocabSize ? Int32($0) : nil } }

    /// √hidden_size as fp32 (Gemma3TextScaledWordEmbedding's embed_scale), nil without a scaled embedding.
    var embeddingScale: Float? { config.architecture.traits.scaledEmbedding ? Float(Double(config.hiddenSize).squareRoot()) : nil }

    /// The RoPE tables for a run whose positions reach `maxPosition`.
    func ropeTables(maxPosition: Int) -> (cos: DeviceBuffer<Float>, sin: DeviceBuffer<Float>) {
        config.rope.usesLongFactors(maxPosition: maxPosition) ? (ropeLong ?? rope) : rope
    }
    var plan: ActivationPlan?
    public internal(set) var step = 0
    public var seed: UInt32 = 0
    /// NEFTune: in training, U(−1, 1)·alpha/√(T·H) noise on the embedding output (nil: off).
    public var neftuneNoiseAlpha: Float?

    public var trainable: Bool { !lora.inferenceMode }
    /// What the last `loadAdapter` set aside (a multimodal adapter's other towers), for the caller to print.
    public private(set) var adapterNotes: [String] = []
    static let prefix = AdapterPlan.prefix

    // MARK: loading

    /// `modelDirectory`: a Hugging Face model directory, or a GGUF file.
    /// `bufferLimitBytes`: see the designated initializer.
    public convenience init(modelDirectory: String, lora: LoraConfig, context: ComputeContext,
                            bufferLimitBytes: Int? = nil) throws {
        let (config, source) = try ModelSource.open(modelDirectory)
        try self.init(config: config, checkpoint: source, lora: lora, context: context, bufferLimitBytes: bufferLimitBytes)
    }

    /// `bufferLimitBytes`: the most bytes one device buffer of frozen weights
    /// may hold; a larger W is kept in parts (`FrozenLinear.splitRows`). nil:
    /// the device's CL_DEVICE_MAX_MEM_ALLOC_SIZE, or a smaller one that
    /// `LORA_GPU_DEVICE_MEMORY` gives (`bufferLimit(for:)`).
    /// `ropePositions`: the positions the run reaches at most (a training run's widest row); the RoPE tables cover
    /// those only (nil: max_position_embeddings — a 128k-position model's tables are 128 MiB a pair at head_dim 128,
    /// 512 MiB for Gemma 3's two pairs of 256). A batch past them is refused.
    public init(config c: ModelConfig, checkpoint: CheckpointSource, lora: LoraConfig, context ctx: ComputeContext,
                bufferLimitBytes: Int? = nil, ropePositions: Int? = nil) throws {
        self.ctx = ctx
        self.config = c
        self.ropePositions = c.ropeTablePositions(ropePositions)
        let H = c.hiddenSize, V = c.vocabSize
        let limit = try bufferLimitBytes ?? Self.bufferLimit(for: ctx.device)

        let loader = CheckpointLoader(checkpoint: checkpoint, ctx: ctx, limitBytes: limit)
        func load(_ name: String, _ shape: [Int]) throws -> DeviceBuffer<Float> { try loader.load(name, shape) }

        let plan = try AdapterPlan(config: c, lora: lora)
        let embedPath = AdapterPlan.embedPath
        self.adapterPlan = plan
        self.lora = plan.lora   // with the task's modules_to_save (SEQ_CLS: score)
        store = try ParameterStore(ctx, specs: plan.tensors, bufferLimitBytes: limit)

        // Weights.
        let table = plan.keepsFrozenEmbedding ? try loader.frozen("model.embed_tokens.weight", rows: V, cols: H) : nil
        embeddingTable = table
        /// A trained copy's start: W from the frozen panels when they are kept, else from the checkpoint.
        func initialize(_ e: ParameterStore.Entry, from tensor: String, rows: Int, cols: Int, panels: FrozenLinear?) throws {
            if let panels { try ctx.unpackWeight(panels, into: e.param) } else { try e.param.copy(from: load(tensor, [rows, cols])) }
        }
        /// A norm's weights as the kernels apply them: w, or 1 + w (Gemma's norms, the sum in fp32 as transformers forms it).
        func norm(_ name: String, _ size: Int) throws -> DeviceBuffer<Float> {
            let w = try load(name, [size])
            if c.architecture.traits.normPlusOne { try w.write(try w.read().map { 1 + $0 }) }
            return w
        }
        finalNorm = try norm("model.norm.weight", H)
        let linears = try Self.makeLinears(plan: plan, store: store, loader: loader, table: table,
                                           initialize: { try initialize($0, from: $1, rows: V, cols: H, panels: table) })
        var ls: [DecoderLayer] = []
        for l in 0..<c.numLayers {
            let p = "model.layers.\(l)."
            let sandwich = c.architecture.traits.sandwichNorms
            ls.append(DecoderLayer(inputNorm: try norm(p + "input_layernorm.weight", H),
                                   postNorm: try norm(p + (sandwich ? "pre_feedforward_layernorm.weight" : "post_attention_layernorm.weight"), H),
                                   qNorm: c.qkNorm ? try norm(p + "self_attn.q_norm.weight", c.headDim) : nil,
                                   kNorm: c.qkNorm ? try norm(p + "self_attn.k_norm.weight", c.headDim) : nil,
                                   attnOutNorm: sandwich ? try norm(p + "post_attention_layernorm.weight", H) : nil,
                                   mlpOutNorm: sandwich ? try norm(p + "post_feedforward_layernorm.weight", H) : nil,
                                   Dictionary(uniqueKeysWithValues: linears.filter { $0.key.hasPrefix(p) }
                                    .map { (String($0.key.dropFirst(p.count)), $0.value) })))
        }
        layers = ls
        lmHead = linears[c.headPath]!
        if plan.embedAdapted {
            // PEFT applies no dropout on the embedding branch.
            embeddingLoRA = LoRAPair(a: store.entry(plan.key(embedPath, ".lora_embedding_A"))!,
                                     b: store.entry(plan.key(embedPath, ".lora_embedding_B"))!,
                                     settings: lora.settings(for: plan.peftName(embedPath), dropout: false))
        }
        if plan.embedSaved, let e = store.entry(plan.key(embedPath, ".weight")) {
            try initialize(e, from: "model.embed_tokens.weight", rows: V, cols: H, panels: table)
            trainedEmbedding = e
        }
        let tables = c.rope.tables(positions: self.ropePositions, headDim: c.rotaryDim)
        rope = (try ctx.buffer(tables.cos), try ctx.buffer(tables.sin))
        if case .longrope = c.rope.kind {
            let long = c.rope.tables(positions: self.ropePositions, headDim: c.rotaryDim, long: true)
            ropeLong = (try ctx.buffer(long.cos), try ctx.buffer(long.sin))
        } else {
            ropeLong = nil
        }
        ropeInUse = rope
        if let local = c.slidingRope {
            let t = local.tables(positions: self.ropePositions, headDim: c.rotaryDim)
            ropeSliding = (try ctx.buffer(t.cos), try ctx.buffer(t.sin))
        } else {
            ropeSliding = nil
        }
        try initializeAdapters(seed: 0)
        try ctx.finish()
    }

    /// Every linear of the plan: its frozen panels (or trained copy), bias and LoRA pair.
    /// `initialize(entry, tensor)` starts a trained copy of the embedding (a tied head's).
    static func makeLinears(plan: AdapterPlan, store: ParameterStore, loader: CheckpointLoader, table: FrozenLinear?,
                            initialize: (ParameterStore.Entry, String) throws -> Void) throws -> [String: Linear] {
            var linears: [String: Linear] = [:]
            let c = plan.config, lora = plan.lora
            for (i, spec) in plan.linears.enumerated() {
                let (path, din, dout, hasBias) = (spec.path, spec.inFeatures, spec.outFeatures, spec.hasBias)
                let saved = plan.isSaved(path)
                let tiedHead = path == "lm_head" && c.tieWordEmbeddings
                // A new classifier's bias starts at zero (transformers' init); every other bias is the checkpoint's.
                let newHead = path == c.headPath && c.task.headIsNew
                let bias = !hasBias ? nil : newHead ? try loader.ctx.buffer([Float](repeating: 0, count: dout)) : try loader.load(path + ".bias", [dout])
                var frozen: FrozenLinear? = nil
                var trained: ParameterStore.Entry? = nil
                if saved, let e = store.entry(plan.key(path, ".weight")) {
                    // modules_to_save: a trained fp32 copy starts from W; no frozen copy is kept.
                    if tiedHead { try initialize(e, "model.embed_tokens.weight") }
                    else if newHead {}  // a new head: initializeAdapters draws it
                    else { try e.param.copy(from: loader.load(path + ".weight", [dout, din])) }
                    trained = e
                } else if tiedHead {
                    // A frozen tied lm_head keeps the table (AdapterPlan.keepsFrozenEmbedding).
                    guard let table else { throw LoraError.batch("internal: a frozen tied lm_head without the embedding table") }
                    frozen = table
                } else {
                    frozen = try loader.frozen(path + ".weight", rows: dout, cols: din)
                }
                let lin = Linear(path: path, inFeatures: din, outFeatures: dout, frozen: frozen, bias: bias, index: i + 1)
                lin.trainedWeight = trained
                if let b = bias, let e = store.entry(plan.biasKey(path)) {
                    try e.param.copy(from: b)
                    lin.trainedBias = e
                    lin.frozenBias = nil
                }
                if plan.adapted.contains(path) {
                    lin.lora = LoRAPair(a: store.entry(plan.key(path, ".lora_A.weight"))!, b: store.entry(plan.key(path, ".lora_B.weight"))!,
                                        settings: lora.settings(for: plan.peftName(path)))
                }
                linears[path] = lin
            }
        return linears
    }

    // MARK: frozen weights

    /// The distinct frozen matrices on the device: the embedding table and
    /// every frozen linear's panels (a tied lm_head shares the table's).
    var frozenMatrices: [FrozenLinear] {
        var seen = Set<ObjectIdentifier>()
        var out: [FrozenLinear] = []
        for f in ([embeddingTable] + (layers.flatMap(\.linears) + [lmHead]).map(\.frozen)).compactMap({ $0 })
        where seen.insert(ObjectIdentifier(f)).inserted { out.append(f) }
        return out
    }

    /// Device bytes held by the frozen weight matrices (embedding table and
    /// linear layers, each kept once, in panels padded to 16 columns). Norm
    /// weights and frozen biases (fp32, O(hidden) each) are not counted.
    public var frozenWeightBytes: Int { frozenMatrices.reduce(0) { $0 + $1.deviceBytes } }

    /// Parameters of those matrices (unpadded), each shared matrix once.
    public var frozenWeightParameters: Int { frozenMatrices.reduce(0) { $0 + $1.inFeatures * $1.outFeatures } }

    /// What the frozen matrices of `config` under `lora` will hold on the device
    /// once loaded from `checkpoint`, read from its headers only (no weights):
    /// `bytes` as `frozenWeightBytes` will report it, `parameters` as
    /// `frozenWeightParameters`, and `backwardScratchBytes` the transient
    /// panels of the largest frozen W that dX = dY·W makes per call (scratch slot 9).
    /// `bufferLimitBytes` as the model loads (a W past the limit is kept in
    /// parts: their bytes summed, the scratch of the largest).
    static func frozenWeightPlan(config c: ModelConfig, lora: LoraConfig, checkpoint: CheckpointSource,
                                        bufferLimitBytes: Int = 0) throws
        -> (bytes: Int, parameters: Int, backwardScratchBytes: Int) {
        // The memory plan's rule (MemoryPlan.frozenMatrices), the one place it is written.
        let plan = try AdapterPlan(config: c, lora: lora)
        let dtypes = try MemoryPlan.checkpointDTypes(config: c, checkpoint: checkpoint)
        let kept = MemoryPlan.frozenMatrices(config: c, adapterPlan: plan, dtypes: dtypes)
        let bytes = kept.reduce(0) { total, m in
            MemoryPlan.frozenParts(inFeatures: m.inFeatures, outFeatures: m.outFeatures, dtype: m.dtype,
                                   bufferLimitBytes: bufferLimitBytes).reduce(total) {
                $0 + MemoryPlan.frozenLinearBytes(inFeatures: m.inFeatures, outFeatures: $1.count, dtype: m.dtype)
            }
        }
        let params = kept.reduce(0) { $0 + $1.inFeatures * $1.outFeatures }
        let scratch = plan.linears.filter { !plan.isSaved($0.path) }
            .map { 4 * MemoryPlan.backwardPanelFloats($0, c, dtypes, bufferLimitBytes: bufferLimitBytes,
                                                      blockLimitBytes: ComputeContext.defaultBackwardPanelBytesLimit) }.max() ?? 0
        return (bytes, params, scratch)
    }

    /// The most bytes one buffer of frozen weights may hold on `device`
    /// (`MemoryLimits.bufferLimit`: CL_DEVICE_MAX_MEM_ALLOC_SIZE, or less by `LORA_GPU_DEVICE_MEMORY`).
    public static func bufferLimit(for device: Device) throws -> Int { try MemoryLimits.bufferLimit(device: device) }

    /// out (N, H) = E[ids]: the token embedding rows (the trained copy's, or
    /// gathered from the frozen table's panels).
    func embedTokens(out: DeviceBuffer<Float>, ids: DeviceBuffer<Int32>, tokens n: Int) throws {
        let H = config.hiddenSize
        if let t = trainedEmbedding {
            try ctx.embeddingForward(out: out, ids: ids, table: t.param, layout: .rows(cols: H), tokens: n, cols: H)
        } else if let table = embeddingTable {
            try ctx.gatherRows(out: out, table: table, ids: ids, rows: n)
        } else {
            throw LoraError.batch("internal: neither a trained nor a frozen token embedding")
        }
    }

    /// The frozen W (out, in) of `path` ("lm_head" or the embedding) as fp32 on the host,
    /// read back from its panels.
    func frozenWeightValues(_ path: String) throws -> [Float] {
        guard let w = path == "lm_head" ? (lmHead.frozen ?? embeddingTable) : embeddingTable else {
            throw LoraError.batch("internal: no frozen '\(path)' weight is kept (a trained copy replaces it)")
        }
        // Part by part (a buffer of the whole W may exceed the device's largest allocation).
        var values = [Float]()
        values.reserveCapacity(w.outFeatures * w.inFeatures)
        for part in w.parts {
            let out = try ctx.buffer(count: part.rows.count * w.inFeatures,
                                     label: "frozen '\(path)' weight rows \(part.rows.lowerBound)..<\(part.rows.upperBound) (read back)")
            try ctx.panelRows(out: out, packed: part.panels, ids: nil, rows: part.rows.count)
            values += try out.read()
        }
        return values
    }

    // MARK: adapters

    /// PEFT's initialisation (and a new classifier's score, see below): A Kaiming-uniform (a = √5, so U(±1/√in)) or
    /// N(0, (1/r)²) for "gaussian", B zero; the embedding the other way round
    /// (A zero, B N(0, 1)); with init_lora_weights=false both random.
    public func initializeAdapters(seed: UInt64) throws {
        var rng = SplitMix64.adapterInit(seed: seed)
        if config.task.headIsNew, let w = lmHead.trainedWeight {
            // A new classifier: transformers' _init_weights, N(0, initializer_range²), from its own stream.
            var headRNG = SplitMix64(seed: seed &+ 0x5C0_4E)
            try w.param.write(headRNG.scaledNormal(w.count, std: Float(config.initializerRange)))
        }
        for lin in layers.flatMap(\.linears) + [lmHead] {
            guard let pair = lin.lora else { continue }
            let r = pair.settings.rank, din = lin.inFeatures
            let bound = 1 / Float(din).squareRoot()
            switch lora.initLoraWeights {
            case .kaiming:
                try pair.a.param.write(rng.scaledUniform(r * din, bound))
                try pair.b.param.fill(0)
            case .gaussian:
                try pair.a.param.write(rng.scaledNormal(r * din, std: 1 / Float(r)))
                try pair.b.param.fill(0)
            case .random:
                try pair.a.param.write(rng.scaledUniform(r * din, bound))
                try pair.b.param.write(rng.scaledUniform(lin.outFeatures * r, 1 / Float(r).squareRoot()))
            }
        }
        if let e = embeddingLoRA {
            let n = e.a.count, m = e.b.count
            switch lora.initLoraWeights {
            case .kaiming, .gaussian:
                try e.a.param.fill(0)
                try e.b.param.write(rng.scaledNormal(m, std: 1))
            case .random:
                try e.a.param.write(rng.scaledNormal(n, std: 1))
                try e.b.param.write(rng.scaledNormal(m, std: 1))
            }
        }
    }

    /// Loads `adapter_model.safetensors` of a PEFT adapter directory into the
    /// trainable tensors. The whole adapter is checked before anything is
    /// written: every tensor present with its shape and a floating-point dtype,
    /// no tensor this LoRA config does not have, and the directory's own
    /// `adapter_config.json` (when there is one) agreeing with this model's
    /// LoraConfig on every setting that changes the math (r, lora_alpha,
    /// use_rslora, bias, the adapted modules, rank_pattern / alpha_pattern).
    /// A failed load leaves the model as it was. A successful one resets the
    /// optimizer: AdamW moments to zero, the step counter to 0.
    public func loadAdapter(directory: String) throws {
        let path = directory + "/adapter_model.safetensors"
        guard FileManager.default.fileExists(atPath: path) else {
            throw LoraError.adapter(path: directory, reason: "no adapter_model.safetensors (only safetensors adapters are supported)")
        }
        let file = try SafeTensorsFile(path: path)
        var staged: [(entry: ParameterStore.Entry, values: [Float])] = []
        for e in store.entries {
            if let d = file.unknownDTypes[e.key] {
                throw LoraError.adapter(path: path, reason: "tensor '\(e.key)' has unknown dtype \(d); supported: F32, F16, BF16, F64")
            }
            guard let info = file.tensors[e.key] else {
                throw LoraError.adapter(path: path, reason: "tensor '\(e.key)' is missing; the adapter does not match this LoRA config")
            }
            guard info.shape == e.shape else {
                throw LoraError.adapter(path: path, reason: "tensor '\(e.key)' has shape \(info.shape), expected \(e.shape)")
            }
            guard [.f32, .f16, .bf16, .f64].contains(info.dtype) else {
                throw LoraError.adapter(path: path, reason: "tensor '\(e.key)' has dtype \(info.dtype.rawValue); supported: F32, F16, BF16, F64")
            }
            staged.append((e, try file.floats(e.key).values))
        }
        let known = Set(store.entries.map(\.key))
        // PEFT also stores the base embedding / lm_head weights when they are targeted: those are not ours to load.
        let others = (Array(file.tensors.keys) + Array(file.unknownDTypes.keys)).filter(adapterPlan.isOtherTowerTensor)
        let unexpected = (Array(file.tensors.keys) + Array(file.unknownDTypes.keys))
            .filter { !known.contains($0) && !$0.hasSuffix(".base_layer.weight") && !adapterPlan.isOtherTowerTensor($0) }.sorted()
        if !unexpected.isEmpty {
            throw LoraError.adapter(path: path, reason: "unexpected tensors for this LoRA config: " + unexpected.joined(separator: ", "))
        }
        let configPath = directory + "/adapter_config.json"
        if FileManager.default.fileExists(atPath: configPath) {
            let theirs = try LoraConfig.load(path: configPath)
            if let (field, reason) = adapterPlan.mismatch(with: theirs) {
                throw LoraError.adapter(path: configPath, reason: "field '\(field)': \(reason)")
            }
        }
        // Everything checked: one write of the whole flat parameter buffer, then the optimizer reset.
        var flat = try store.groups.map { try $0.params.read() }
        for (e, values) in staged { flat[e.group].replaceSubrange(e.offset..<(e.offset + e.count), with: values) }
        for (g, values) in zip(store.groups, flat) { try g.params.write(values) }
        try resetOptimizer()
        adapterNotes = AdapterPlan.otherTowerNote(others.count).map { [$0] } ?? []
    }

    /// AdamW starts afresh: moments zero, step 0 (after loading an adapter).
    /// (A checkpoint resume restores moments and step after the load.)
    public func resetOptimizer() throws {
        try store.fill(\.m, 0)
        try store.fill(\.v, 0)
        try store.zeroGradients()
        step = 0
    }

    /// Every trainable tensor, read back to the host, by PEFT key.
    func adapterTensors() throws -> [String: (shape: [Int], values: [Float])] {
        var out: [String: (shape: [Int], values: [Float])] = [:]
        for e in store.entries { out[e.key] = (e.shape, try e.param.read()) }
        return out
    }

    /// Every gradient, by PEFT key.
    func gradientTensors() throws -> [String: [Float]] {
        var out: [String: [Float]] = [:]
        for e in store.entries { out[e.key] = try e.grad.read() }
        return out
    }
}

/// Adapter initialisation draws (SplitMix64 seeded with seed + 0x5EED).
extension SplitMix64 {
    static func adapterInit(seed: UInt64) -> SplitMix64 { SplitMix64(seed: seed &+ 0x5EED) }
    /// U(±bound) from 53-bit units.
    mutating func scaledUniform(_ n: Int, _ bound: Float) -> [Float] { (0..<n).map { _ in Float((unit() * 2 - 1)) * bound } }
    /// N(0, std²) by Box–Muller on 53-bit units.
    mutating func scaledNormal(_ n: Int, std: Float) -> [Float] {
        (0..<n).map { _ in
            let u1 = max(unit(), 1e-300), u2 = unit()
            return Float((-2 * log(u1)).squareRoot() * cos(2 * .pi * u2)) * std
        }
    }
}
