import Foundation
import LoraOps
import OpenCLRuntime

/// The device memory of a training run, computed from the model config, the
/// LoRA config, the checkpoint's tensor dtypes (headers only) and the training
/// shape — before any weight is loaded. Every buffer the model, its parameter
/// store, one step's `ActivationPlan` and the compute context's scratch slots
/// will hold is listed with its size, so the totals are what the model
/// allocates (tests compare them with `CLContext.liveBytes`), except the
/// frozen weights, which follow `frozenLinearBytes` (see there).
///
/// Not counted: transient buffers of loading (a tensor's 16-bit staging copy
/// and its fp32 copy before packing, freed tensor by tensor), an inference
/// session's KV caches, and what the driver itself keeps.
public struct MemoryPlan: Sendable {
    public enum Category: String, Sendable, CaseIterable {
        case weights = "weights"
        case trainable = "trainable + optimizer"
        case activations = "activations"
        case scratch = "scratch"
    }

    /// `copies` buffers of `bytes` each.
    public struct Item: Sendable, Equatable {
        public let category: Category
        public let name: String
        public let bytes: Int
        public let copies: Int
        /// Bytes of one element (4 for fp32 and int32, 2 for a 16-bit weight, 1 for the decay mask).
        public var elementBytes: Int = 4
        /// A frozen tensor kept in parts: its name and how many parts (this item: those of one height).
        public var split: (tensor: String, parts: Int)? { splitTensor.map { ($0, splitParts) } }
        var splitTensor: String? = nil
        var splitParts = 1
        /// The trainable tensor that takes this group of flat buffers past the buffer limit by itself.
        public var aloneTensor: String? = nil
        /// How many groups of flat buffers the trainable tensors take (on their items).
        public var trainableGroups = 1
        public var total: Int { sat(bytes, copies) }
        public var elements: Int { elementCount ?? bytes / max(elementBytes, 1) }
        /// Elements where they are not bytes / elementBytes (quantized weights).
        var elementCount: Int? = nil
    }

    /// The shape of one micro-batch and the settings that size its buffers.
    public struct Shape: Sendable, Equatable {
        /// Rows (per_device_train_batch_size) and tokens per row (max_seq_len).
        public var batch: Int
        public var seq: Int
        /// `LlamaLoRAModel.logitsChunkRows`.
        public var logitsChunkRows: Int
        public var gradientCheckpointing: Bool
        /// Backward included (its scratch); false plans forward-only use (`loss`, `logits`).
        public var training: Bool
        /// The positions the model's RoPE tables cover (`LlamaLoRAModel`'s ropePositions), nil: max_position_embeddings.
        public var ropePositions: Int?
        /// `ComputeContext.backwardPanelBytesLimit`: a frozen W's backward panels are made in blocks of rows within it.
        public var backwardPanelBytesLimit = ComputeContext.defaultBackwardPanelBytesLimit
        /// `KernelConfig.quantStaged` and `ComputeContext.stagedPanelBytesLimit`: the formats whose forward at
        /// `KernelConfig.quantStageMinRows` rows or more stages fp32 panels (scratch slot 10), in blocks within the limit.
        public var stagedFormats: Set<WeightStorage> = []
        public var stagedPanelBytesLimit = ComputeContext.defaultStagedPanelBytesLimit

        public init(batch: Int, seq: Int, logitsChunkRows: Int = 256, gradientCheckpointing: Bool = false, training: Bool = true,
                    ropePositions: Int? = nil) {
            self.batch = batch
            self.seq = seq
            self.logitsChunkRows = logitsChunkRows
            self.gradientCheckpointing = gradientCheckpointing
            self.training = training
            self.ropePositions = ropePositions
        }

        /// Tokens of a micro-batch, N = B·T (saturating: absurd settings give Int.max, never a trap).
        public var tokens: Int { sat(batch, seq) }
        /// Rows of logits alive at once, as `ActivationPlan.chunkRows`.
        public var chunkRows: Int { max(1, min(logitsChunkRows, tokens)) }
    }

    public let shape: Shape
    public let items: [Item]
    /// What the plan was made from, to plan another shape (`with(shape:)`).
    public let config: ModelConfig
    public let adapterPlan: AdapterPlan
    public let dtypes: [String: String]
    public let alignmentBytes: Int
    /// The most bytes one buffer of frozen weights holds (≤ 0: no limit): a
    /// larger W is planned in parts, as `LlamaLoRAModel` loads it (`frozenParts`).
    public let bufferLimitBytes: Int

    /// The same model and adapter with another micro-batch shape.
    public func with(shape: Shape) -> MemoryPlan {
        MemoryPlan(config: config, adapterPlan: adapterPlan, dtypes: dtypes, shape: shape, alignmentBytes: alignmentBytes,
                   bufferLimitBytes: bufferLimitBytes)
    }

    /// The plan as `quantize` would load the frozen matrices (the "does not fit" advice): every mode but `none`
    /// keeps a GGUF file's block types the kernels read (where the plan had them dequantized, `--quantize none`);
    /// q8_0 / q4_0 / nf4 also quantize the 16/32-bit ones whose rows are whole blocks, as `QuantizingCheckpoint` does.
    public func with(quantize: QuantizeMode) -> MemoryPlan {
        var d = dtypes
        for (name, shape) in AdapterPlan.checkpointTensors(config) where shape.count == 2 {
            guard let t = d[name] else { continue }
            let stored = t.components(separatedBy: " → ")[0]
            if quantize != .none, let s = WeightStorage.quantized(ggmlName: stored), shape[1] % s.quantBlockRows == 0 {
                d[name] = stored
            } else if let s = quantize.storage, ["F32", "F16", "BF16"].contains(stored), shape[1] % s.quantBlockRows == 0 {
                d[name] = stored + " → " + s.rawValue.uppercased()
            }
        }
        return MemoryPlan(config: config, adapterPlan: adapterPlan, dtypes: d, shape: shape, alignmentBytes: alignmentBytes,
                          bufferLimitBytes: bufferLimitBytes)
    }

    public func bytes(_ c: Category) -> Int { items.filter { $0.category == c }.reduce(0) { satAdd($0, $1.total) } }
    public var weightBytes: Int { bytes(.weights) }
    public var trainableBytes: Int { bytes(.trainable) }
    public var activationBytes: Int { bytes(.activations) }
    public var scratchBytes: Int { bytes(.scratch) }
    public var totalBytes: Int { items.reduce(0) { satAdd($0, $1.total) } }
    /// The largest single buffer.
    public var largest: Item? { items.max { $0.bytes < $1.bytes } }

    // MARK: the frozen-weight rule

    /// Device bytes of one frozen matrix W (out, in) (a linear layer's weight or
    /// the token embedding, out = vocabulary) whose checkpoint tensor has `dtype`
    /// as the plan records it ("F16", "BF16", "F32", "… → F32" for GGUF): one
    /// packed layout, `PackedMatrix.count(k: in, n: out)` elements, of 2 bytes
    /// when the tensor is 16-bit (F16 / BF16 stay 16-bit on the device,
    /// `WeightStorage`) and 4 otherwise. This is `FrozenLinear`'s storage and
    /// `LlamaLoRAModel.frozenWeightBytes`; a tied lm_head shares the embedding's.
    /// A quantized one (a GGUF file's "Q8_0" … "Q5_1", kept) takes its chunks' bytes (`WeightStorage.bytes`).
    public static func frozenLinearBytes(inFeatures: Int, outFeatures: Int, dtype: String) -> Int {
        let storage = frozenStorage(dtype: dtype)
        if storage.isQuantized { return storage.bytes(k: inFeatures, n: outFeatures) }
        return sat(packedCount(k: inFeatures, n: outFeatures), frozenElementBytes(dtype: dtype))
    }

    /// The rule's bytes per element: 2 for a 16-bit checkpoint tensor, 4 otherwise (a quantized one's element
    /// is a fraction of a byte: `frozenLinearBytes`).
    public static func frozenElementBytes(dtype: String) -> Int { dtype == "F16" || dtype == "BF16" ? 2 : 4 }

    /// The device storage of a frozen matrix of `dtype` (as the plan records it).
    /// "A → B" (converted at load) is kept as B.
    public static func frozenStorage(dtype: String) -> WeightStorage {
        let kept = dtype.components(separatedBy: " → ").last ?? dtype
        return kept == "F16" ? .f16 : kept == "BF16" ? .bf16 : kept == "NF4" ? .nf4 : WeightStorage.quantized(ggmlName: kept) ?? .f32
    }

    /// Elements of op(B) (K,N) packed in panels of 16 columns: `PackedMatrix.count` (LoraOps).
    static func packedCount(k: Int, n: Int) -> Int { sat(satAdd(n, 15) / 16 * 16, k) }

    /// The blocks of rows a frozen W (out, in) of `dtype` is kept in under
    /// `bufferLimitBytes` (`FrozenLinear.splitRows`, the loader's rule); one
    /// block when W fits a buffer or no block height would (then the plan
    /// reports the whole W as the buffer past the limit).
    static func frozenParts(inFeatures: Int, outFeatures: Int, dtype: String, bufferLimitBytes: Int) -> [Range<Int>] {
        FrozenLinear.splitRows(outFeatures: outFeatures, inFeatures: inFeatures, storage: frozenStorage(dtype: dtype),
                               limitBytes: bufferLimitBytes) ?? [0..<max(outFeatures, 0)]
    }

    // MARK: planning

    /// Reads each weight's dtype from the checkpoint's headers (no weight is
    /// read; a missing tensor or a wrong shape is the error loading would give)
    /// and plans. `alignmentBytes`: the device's base address alignment
    /// (`Device.baseAddressAlignmentBytes`), which pads the parameter store.
    /// `bufferLimitBytes`: as the model will load (`LlamaLoRAModel.bufferLimit(for:)`); 0 plans no split.
    public static func make(config c: ModelConfig, adapterPlan: AdapterPlan, checkpoint: CheckpointSource,
                            shape: Shape, alignmentBytes: Int, bufferLimitBytes: Int = 0) throws -> MemoryPlan {
        MemoryPlan(config: c, adapterPlan: adapterPlan, dtypes: try checkpointDTypes(config: c, checkpoint: checkpoint),
                   shape: shape, alignmentBytes: alignmentBytes, bufferLimitBytes: bufferLimitBytes)
    }

    /// The quantized formats the model's frozen matrices keep on the device, in `WeightStorage` order
    /// (what `lora-gpu tune --model` searches `gemm_packed`'s rows per work-item for).
    public static func quantizedFormats(config c: ModelConfig, checkpoint: CheckpointSource) throws -> [WeightStorage] {
        let kept = Set(try checkpointDTypes(config: c, checkpoint: checkpoint).values.map { frozenStorage(dtype: $0) })
        return WeightStorage.allCases.filter { $0.isQuantized && kept.contains($0) }
    }

    /// Checkpoint tensor name → dtype as the plan records it, from the headers
    /// (a missing tensor or a wrong shape is the error loading would give).
    /// A GGUF file's Q8_0 … Q5_1, Q4_K, Q5_K, Q6_K matrices stay quantized ("Q4_1"); its other types are dequantized to fp32
    /// on the host ("Q6_K → F32"; all of them with `--quantize none`).
    static func checkpointDTypes(config c: ModelConfig, checkpoint: CheckpointSource) throws -> [String: String] {
        var dtypes: [String: String] = [:]
        for (name, shape) in AdapterPlan.checkpointTensors(c) {
            let dtype = try checkpoint.validateTensor(name, shape: shape)
            _ = dtype
            dtypes[name] = try checkpoint.frozenDType(name, shape: shape)
        }
        return dtypes
    }

    /// The distinct frozen matrices the model keeps (`LlamaLoRAModel.init`): the
    /// token embedding table (unless a trained copy replaces it,
    /// `AdapterPlan.keepsFrozenEmbedding`), and every linear without a trained
    /// copy except a tied lm_head (it shares the table). W is (outFeatures, inFeatures).
    static func frozenMatrices(config c: ModelConfig, adapterPlan plan: AdapterPlan, dtypes: [String: String])
        -> [(tensor: String, inFeatures: Int, outFeatures: Int, dtype: String)] {
        let embed = "model.embed_tokens.weight"
        var out = [(tensor: embed, inFeatures: c.hiddenSize, outFeatures: c.vocabSize, dtype: dtypes[embed] ?? "F32")]
        if !plan.keepsFrozenEmbedding { out.removeAll() }
        for spec in plan.linears where !plan.isSaved(spec.path) && !(spec.path == "lm_head" && c.tieWordEmbeddings) {
            let name = spec.path + ".weight"
            out.append((name, spec.inFeatures, spec.outFeatures, dtypes[name] ?? "F32"))
        }
        return out
    }

    /// `dtypes`: checkpoint tensor name → dtype name (a missing one counts as fp32).
    public init(config c: ModelConfig, adapterPlan plan: AdapterPlan, dtypes: [String: String], shape s: Shape,
                alignmentBytes: Int, bufferLimitBytes: Int = 0) {
        shape = s
        config = c
        adapterPlan = plan
        self.dtypes = dtypes
        self.alignmentBytes = alignmentBytes
        self.bufferLimitBytes = bufferLimitBytes
        var list = ItemList()
        Self.planWeights(&list, c, plan, dtypes, ropePositions: c.ropeTablePositions(s.ropePositions), bufferLimitBytes: bufferLimitBytes)
        Self.planTrainable(&list, plan, alignmentBytes: alignmentBytes, bufferLimitBytes: bufferLimitBytes)
        Self.planActivations(&list, c, plan, s)
        Self.planScratch(&list, c, plan, dtypes, s, bufferLimitBytes: bufferLimitBytes)
        items = list.items
    }

    /// Items in the order they are planned.
    struct ItemList {
        var items: [Item] = []
        mutating func add(_ cat: Category, _ name: String, _ bytes: Int, copies: Int = 1, element: Int = 4) {
            if copies > 0 { items.append(Item(category: cat, name: name, bytes: bytes, copies: copies, elementBytes: element)) }
        }
        /// Marks the items just added (`count` of them).
        mutating func mark(_ count: Int, _ f: (inout Item) -> Void) {
            for i in items.indices.suffix(count) { f(&items[i]) }
        }
    }

    static func planWeights(_ list: inout ItemList, _ c: ModelConfig, _ plan: AdapterPlan, _ dtypes: [String: String], ropePositions P: Int,
                            bufferLimitBytes: Int) {
        let H = c.hiddenSize, L = c.numLayers, D = c.headDim
        let trainedKeys = Set(plan.tensors.map(\.key))
        // Weights (LlamaLoRAModel.init): the embedding and each frozen linear by the rule above (a tied
        // lm_head shares the embedding's panels), norms, RoPE tables and frozen biases in fp32.
        // A W past the buffer limit is kept in blocks of rows: one item per block height.
        for m in Self.frozenMatrices(config: c, adapterPlan: plan, dtypes: dtypes) {
            let parts = Self.frozenParts(inFeatures: m.inFeatures, outFeatures: m.outFeatures, dtype: m.dtype,
                                         bufferLimitBytes: bufferLimitBytes)
            let name = "\(m.tensor) [\(m.outFeatures), \(m.inFeatures)] packed (\(m.dtype))"
            // A quantized W's elements are not its bytes over a whole element size: the item counts them.
            let quantized = Self.frozenStorage(dtype: m.dtype).isQuantized
            if parts.count == 1 {
                list.add(.weights, name, Self.frozenLinearBytes(inFeatures: m.inFeatures, outFeatures: m.outFeatures, dtype: m.dtype),
                    element: Self.frozenElementBytes(dtype: m.dtype))
                if quantized { list.mark(1) { $0.elementCount = Self.packedCount(k: m.inFeatures, n: m.outFeatures) } }
                continue
            }
            for height in Set(parts.map(\.count)).sorted(by: >) {
                list.add(.weights, name + ", in \(parts.count) parts: \(height) rows",
                    Self.frozenLinearBytes(inFeatures: m.inFeatures, outFeatures: height, dtype: m.dtype),
                    copies: parts.filter { $0.count == height }.count, element: Self.frozenElementBytes(dtype: m.dtype))
                list.mark(1) { $0.splitTensor = m.tensor; $0.splitParts = parts.count }
                if quantized { list.mark(1) { $0.elementCount = Self.packedCount(k: m.inFeatures, n: height) } }
            }
        }
        list.add(.weights, "model.norm.weight [\(H)]", f32(H))
        list.add(.weights, "model.layers.*.{\(c.layerNorms.map { $0.replacingOccurrences(of: "_layernorm", with: "") }.joined(separator: ","))}_layernorm.weight [\(H)]",
                 f32(H), copies: c.layerNorms.count * L)
        if c.qkNorm {
            list.add(.weights, "model.layers.*.self_attn.{q,k}_norm.weight [\(c.headDim)]", f32(c.headDim), copies: 2 * L)
        }
        // Over the rotary dims (partial rotary: fewer than D); LongRoPE keeps a second pair (the long factors').
        var longrope = false
        if case .longrope = c.rope.kind { longrope = true }
        // Gemma 3's sliding layers keep a pair of their own (the local base).
        list.add(.weights, "RoPE cos and sin tables [\(P), \(c.rotaryDim)]", f32(P, c.rotaryDim),
                 copies: longrope || c.slidingRope != nil ? 4 : 2)
        for spec in plan.linears {
            if spec.hasBias && !trainedKeys.contains(plan.biasKey(spec.path)) {
                list.add(.weights, "\(spec.path).bias [\(spec.outFeatures)]", f32(spec.outFeatures))
            }
        }
    }

    static func planTrainable(_ list: inout ItemList, _ plan: AdapterPlan, alignmentBytes: Int, bufferLimitBytes: Int) {
        // Trainable tensors (ParameterStore): four flat fp32 buffers and the decay mask, each tensor padded to
        // the alignment; in groups of such buffers when together they are past the buffer limit.
        let groups = ParameterStore.grouping(counts: plan.tensors.map { $0.shape.reduce(1, sat) }, alignmentBytes: alignmentBytes,
                                             bufferLimitBytes: bufferLimitBytes)
        for (g, group) in groups.enumerated() {
            let total = group.total, specs = plan.tensors[group.specs]
            var of = groups.count == 1 ? "" : ", group \(g + 1) of \(groups.count)"
            var alone: String? = nil
            if bufferLimitBytes > 0, f32(total) > bufferLimitBytes, let big = specs.first {
                // Only a tensor past the limit by itself makes a group past it.
                of += ": '\(big.key)' \(big.shape) alone"
                alone = big.key
            }
            for what in ["trainable parameters", "their gradients", "AdamW first moments", "AdamW second moments"] {
                list.add(.trainable, "\(what) (\(total) floats\(of))", f32(total))
            }
            list.add(.trainable, "weight-decay mask (\(total) bytes\(of))", total, element: 1)
            list.mark(5) { $0.aloneTensor = alone; $0.trainableGroups = groups.count }
        }
    }

    static func planActivations(_ list: inout ItemList, _ c: ModelConfig, _ plan: AdapterPlan, _ s: Shape) {
        let H = c.hiddenSize, I = c.intermediateSize, V = c.vocabSize, L = c.numLayers
        let NH = c.numHeads, qd = sat(c.numHeads, c.headDim), kvd = sat(c.numKVHeads, c.headDim)
        let lora = plan.lora
        // Activations (ActivationPlan.init), N = B·T tokens.
        let B = s.batch, T = s.seq, n = s.tokens, chunk = s.chunkRows
        // Names give one buffer's shape, N = B·T tokens spelled out; `copies` says how many there are.
        let N = "\(n)"
        list.add(.activations, "residual stream, one per layer boundary (\(N), \(H))", f32(n, H), copies: L + 1)
        let k = s.gradientCheckpointing ? 1 : L
        let per = s.gradientCheckpointing ? "one layer's" : "each layer's"
        list.add(.activations, "\(per) h1, x_mid or h2 (\(N), \(H))", f32(n, H), copies: 3 * k)
        list.add(.activations, "\(per) q or attention output (\(N), \(qd))", f32(n, qd), copies: 2 * k)
        list.add(.activations, "\(per) k or v (\(N), \(kvd))", f32(n, kvd), copies: 2 * k)
        list.add(.activations, "\(per) gate, up or act (\(N), \(I))", f32(n, I), copies: 3 * k)
        list.add(.activations, "\(per) RMSNorm rstd (\(N))", f32(n), copies: 2 * k)
        list.add(.activations, "\(per) attention log-sum-exp (\(B), \(NH), \(T))", f32(B, NH, T), copies: k)
        if c.qkNorm {
            list.add(.activations, "\(per) q before q_norm (\(N), \(qd))", f32(n, qd), copies: k)
            list.add(.activations, "\(per) k before k_norm (\(N), \(kvd))", f32(n, kvd), copies: k)
            list.add(.activations, "\(per) q_norm rstd (\(N)·\(NH))", f32(n, NH), copies: k)
            list.add(.activations, "\(per) k_norm rstd (\(N)·\(c.numKVHeads))", f32(n, c.numKVHeads), copies: k)
        }
        if c.architecture.traits.sandwichNorms {
            list.add(.activations, "\(per) o_proj or down_proj output before its norm (\(N), \(H))", f32(n, H), copies: 2 * k)
            list.add(.activations, "\(per) post-attention or post-feedforward norm rstd (\(N))", f32(n), copies: 2 * k)
        }
        list.add(.activations, "input ids, positions, sample starts or targets (\(N))", i32(n), copies: 4)
        if c.slidingWindow != nil { list.add(.activations, "sliding-window starts (\(N))", i32(n)) }
        // TokenGroups of the ids: U unique ids, U+1 offsets, N positions; U ≤ min(N, V), the padding id left out
        // (it takes no gradient), so U ≤ V − 1 with one (a batch without it is the worst case).
        let unique = min(n, max(1, V - (c.padTokenID.map { $0 < V } == true ? 1 : 0)))
        list.add(.activations, "embedding groups' unique ids (\(unique))", i32(unique))
        list.add(.activations, "embedding groups' offsets (\(unique) + 1)", i32(satAdd(unique, 1)))
        list.add(.activations, "embedding groups' token positions (\(N))", i32(n))
        list.add(.activations, "final norm output (\(N), \(H))", f32(n, H))
        list.add(.activations, "final norm rstd (\(N))", f32(n))
        if plan.embedAdapted {
            let er = lora.rankAndAlpha(for: plan.peftName(AdapterPlan.embedPath)).r
            list.add(.activations, "embedding LoRA A rows or their gradient (\(N), \(er))", f32(n, er), copies: 2)
        }
        list.add(.activations, "gradient dres, dh or dhf (\(N), \(H))", f32(n, H), copies: 3)
        list.add(.activations, "gradient dq or dattn (\(N), \(qd))", f32(n, qd), copies: 2)
        list.add(.activations, "gradient dk or dv (\(N), \(kvd))", f32(n, kvd), copies: 2)
        list.add(.activations, "gradient dgate, dup or dact (\(N), \(I))", f32(n, I), copies: 3)
        list.add(.activations, "attention backward delta (\(B), \(NH), \(T))", f32(B, NH, T))
        if c.fusedProjections {
            list.add(.activations, "fused q|k|v or gate|up output or its gradient (\(N), \(c.fusedWidth))", f32(n, c.fusedWidth), copies: 2)
        }
        if c.architecture.traits.sandwichNorms {
            list.add(.activations, "gradient at o_proj's or down_proj's output (\(N), \(H))", f32(n, H))
        }
        // HeadRows: the counted rows' targets and one TokenGroups per chunk of them. At most
        // B·(T−1) rows are counted (the shift leaves the last token of each row without a target).
        let counted = sat(B, max(T - 1, 0))
        list.add(.activations, "counted rows' targets (\(counted))", i32(counted))
        let fullChunks = counted / chunk, rest = counted % chunk
        for (rows, copies) in [(chunk, fullChunks), (rest, rest > 0 ? 1 : 0)] {
            list.add(.activations, "lm_head chunk's row indices or positions (\(rows))", i32(rows), copies: 2 * copies)
            list.add(.activations, "lm_head chunk's row offsets (\(rows) + 1)", i32(satAdd(rows, 1)), copies: copies)
        }
        list.add(.activations, "hidden-state chunk or its gradient (\(chunk), \(H))", f32(chunk, H), copies: 2)
        // The head's rows: the vocabulary (lm_head) or a classifier's num_labels (score).
        let headRows = c.headOutFeatures
        list.add(.activations, "logits chunk (\(chunk), \(headRows))", f32(chunk, headRows))
        if c.logitSoftcap != nil { list.add(.activations, "soft-capped logits' tanh (\(chunk), \(headRows))", f32(chunk, headRows)) }
        list.add(.activations, "per-token losses (\(N))", f32(n))
        list.add(.activations, "loss and gradient-norm scalars", f32(2))
        // Linear.u of each adapted layer: dropout(x)·Aᵀ, kept for backward.
        for spec in plan.linears where plan.adapted.contains(spec.path) {
            let r = lora.rankAndAlpha(for: plan.peftName(spec.path)).r
            list.add(.activations, "\(spec.path) LoRA u (\(N), \(r))", f32(max(n, chunk), r))
        }
    }

    static func planScratch(_ list: inout ItemList, _ c: ModelConfig, _ plan: AdapterPlan, _ dtypes: [String: String],
                            _ s: Shape, bufferLimitBytes: Int) {
        let L = c.numLayers, NH = c.numHeads, D = c.headDim, qd = sat(c.numHeads, c.headDim)
        let lora = plan.lora, B = s.batch, T = s.seq, n = s.tokens, chunk = s.chunkRows
        let H = c.hiddenSize
        let counted = sat(B, max(T - 1, 0))
        // Scratch (ComputeContext.scratch): per slot the largest request of one step.
        var slots: [Int: Int] = [:]
        func need(_ slot: Int, _ floats: Int) { slots[slot] = max(slots[slot] ?? 0, floats) }
        let dropout = s.training && lora.loraDropout > 0
        let lowest = Self.lowestTrainedLayer(plan, layers: L)
        if plan.embedAdapted {
            let er = lora.rankAndAlpha(for: plan.peftName(AdapterPlan.embedPath)).r
            need(0, Self.packedCount(k: er, n: H))                    // forward: after·B_embᵀ
            if s.training {
                need(0, Self.packedCount(k: n, n: er))                // dB_emb = dresᵀ·after
                need(0, Self.packedCount(k: H, n: er))                // dAfter = dres·B_emb
            }
        }
        // lm_head runs on the counted rows only, at most a chunk of them at a time.
        let headRows = min(chunk, counted)
        for spec in plan.linears {
            let rows = spec.path == "lm_head" ? headRows : n, din = spec.inFeatures, dout = spec.outFeatures
            if rows == 0 { continue }
            let layerIndex = spec.path == "lm_head" ? L : Self.layerIndex(spec.path) ?? 0
            let backward = s.training && layerIndex >= lowest
            if plan.isSaved(spec.path) {
                need(0, Self.packedCount(k: din, n: dout))
                if backward {
                    need(0, Self.packedCount(k: rows, n: din))        // dW = dYᵀ·x
                    need(0, Self.packedCount(k: dout, n: din))        // dx = dY·W
                }
            } else if plan.adapted.contains(spec.path) {
                let r = lora.rankAndAlpha(for: plan.peftName(spec.path)).r
                if dropout { need(1, sat(rows, din)) }
                need(2, Self.packedCount(k: din, n: r))
                need(3, Self.packedCount(k: r, n: dout))
                if backward {
                    need(9, Self.backwardPanelFloats(spec, c, dtypes, bufferLimitBytes: bufferLimitBytes, blockLimitBytes: s.backwardPanelBytesLimit))
                    need(4, sat(rows, r))
                    need(5, Self.packedCount(k: dout, n: r))
                    need(6, Self.packedCount(k: rows, n: r))
                    need(7, Self.packedCount(k: rows, n: din))
                    need(8, Self.packedCount(k: r, n: din))
                }
            }
        }
        // The staged forward over a staged format's panels (ComputeContext.gemm): a block of fp32 panels of the
        // largest part of W, within the bound.
        for spec in plan.linears where !plan.isSaved(spec.path) {
            let rows = spec.path == "lm_head" ? headRows : n
            let floats = Self.stagedPanelFloats(spec, c, dtypes, formats: s.stagedFormats, bufferLimitBytes: bufferLimitBytes,
                                                blockLimitBytes: s.stagedPanelBytesLimit)
            if rows >= KernelConfig.quantStageMinRows && floats > 0 { need(10, floats) }
        }
        // A frozen linear without an adapter still gives dX = dY·W when a layer below trains.
        for spec in plan.linears where !plan.isSaved(spec.path) && !plan.adapted.contains(spec.path) {
            let rows = spec.path == "lm_head" ? headRows : n
            let layerIndex = spec.path == "lm_head" ? L : Self.layerIndex(spec.path) ?? 0
            if rows > 0 && s.training && layerIndex >= lowest {
                need(9, Self.backwardPanelFloats(spec, c, dtypes, bufferLimitBytes: bufferLimitBytes, blockLimitBytes: s.backwardPanelBytesLimit))
            }
        }
        need(20, 256)                                                  // ComputeContext.reductionWidth partial sums
        let tp = satAdd(T, 15) / 16 * 16
        if L > 0 {
            need(30, sat(sat(B, c.numKVHeads), sat(D, tp)))            // kᵀ in the forward
            if s.training && lowest < L {
                need(32, sat(sat(B, NH), sat(D, tp)))                  // q and dO as panels (attention_backward)
                need(33, sat(sat(B, NH), sat(D, tp)))
                if NH != c.numKVHeads {                                 // per-head dK, dV before the group sum
                    need(34, sat(n, qd))
                    need(35, sat(n, qd))
                }
            }
        }
        let slotNames = [0: "matmul's packed B", 1: "LoRA dropout(x)", 2: "LoRA Aᵀ panels", 3: "LoRA Bᵀ panels",
                         4: "LoRA g = s·dY·B", 5: "LoRA B panels", 6: "LoRA u panels", 7: "LoRA dropout(x) panels",
                         8: "LoRA A panels", 9: "a frozen W's backward panels", 10: "a quantized W's staged fp32 panels", 20: "reduction partials", 30: "attention kᵀ", 32: "attention qᵀ",
                         33: "attention dOᵀ", 34: "attention per-head dK", 35: "attention per-head dV"]
        for (slot, floats) in slots.sorted(by: { $0.key < $1.key }) {
            list.add(.scratch, "scratch \(slot): \(slotNames[slot] ?? "")", f32(floats))
        }
    }

    /// Floats of scratch slot 9 for dX = dY·W of a frozen linear: the panels
    /// of W's largest part (K = its rows, N = in) in its storage, 16-bit ones
    /// two to a float (`ComputeContext.backwardPanels`), in blocks of rows within `blockLimitBytes`
    /// (`ComputeContext.backwardBlockRows`).
    static func backwardPanelFloats(_ spec: LinearSpec, _ c: ModelConfig, _ dtypes: [String: String],
                                    bufferLimitBytes: Int, blockLimitBytes: Int) -> Int {
        let source = spec.path == "lm_head" && c.tieWordEmbeddings ? "model.embed_tokens.weight" : spec.path + ".weight"
        let dtype = dtypes[source] ?? "F32"
        // Quantized panels are widened to fp32 for the backward (`bytesPerElement` 4).
        let bytes = frozenStorage(dtype: dtype).bytesPerElement
        let rows = frozenParts(inFeatures: spec.inFeatures, outFeatures: spec.outFeatures, dtype: dtype,
                               bufferLimitBytes: bufferLimitBytes).map {
            ComputeContext.backwardBlockRows(rows: $0.count, inFeatures: spec.inFeatures, bytes: bytes, limitBytes: blockLimitBytes)
        }.max() ?? 0
        return (sat(packedCount(k: rows, n: spec.inFeatures), bytes) + 3) / 4
    }

    /// Floats of scratch slot 10 for the staged forward x·Wᵀ of a frozen linear kept in a staged format
    /// (`ComputeContext.gemm`): the fp32 panels of as many of the largest part's 16-row panels as fit
    /// `blockLimitBytes` (at least one); 0 for any other storage.
    static func stagedPanelFloats(_ spec: LinearSpec, _ c: ModelConfig, _ dtypes: [String: String], formats: Set<WeightStorage>,
                                  bufferLimitBytes: Int, blockLimitBytes: Int) -> Int {
        let source = spec.path == "lm_head" && c.tieWordEmbeddings ? "model.embed_tokens.weight" : spec.path + ".weight"
        let dtype = dtypes[source] ?? "F32"
        let storage = frozenStorage(dtype: dtype)
        guard storage.isQuantized && formats.contains(storage) else { return 0 }
        let perPanel = sat(spec.inFeatures, 16)
        let panels = frozenParts(inFeatures: spec.inFeatures, outFeatures: spec.outFeatures, dtype: dtype,
                                 bufferLimitBytes: bufferLimitBytes).map { ($0.count + 15) / 16 }.max() ?? 0
        return sat(max(1, min(panels, blockLimitBytes / max(sat(4, perPanel), 1))), perPanel)
    }

    /// As `LlamaLoRAModel.lowestTrainedLayer`: backward stops below it.
    static func lowestTrainedLayer(_ plan: AdapterPlan, layers: Int) -> Int {
        if plan.embedAdapted || plan.embedSaved { return 0 }
        let trainedKeys = Set(plan.tensors.map(\.key))
        var lowest = layers
        for spec in plan.linears where spec.path != "lm_head" {
            let trains = plan.adapted.contains(spec.path) || plan.isSaved(spec.path)
                || (spec.hasBias && trainedKeys.contains(plan.biasKey(spec.path)))
            if trains, let l = layerIndex(spec.path) { lowest = min(lowest, l) }
        }
        return lowest
    }

    /// 3 for "model.layers.3.mlp.up_proj".
    static func layerIndex(_ path: String) -> Int? {
        let parts = path.split(separator: ".")
        guard parts.count > 2, parts[0] == "model", parts[1] == "layers" else { return nil }
        return Int(parts[2])
    }

    // MARK: the report

    /// The start-up lines: one per category, the total against the device, the largest buffer against its limit.
    public func lines(limits: MemoryLimits) -> [String] {
        func row(_ name: String, _ b: Int, _ tail: String = "") -> String {
            "  " + name.padding(toLength: 22, withPad: " ", startingAt: 0) + Self.format(b).leftPadded(10) + tail
        }
        var out = ["memory plan for \(limits.deviceName), micro-batch \(shape.batch) × \(shape.seq) tokens"
                   + (shape.gradientCheckpointing ? ", gradient checkpointing" : "") + ":"]
        for cat in Category.allCases { out.append(row(cat.rawValue, bytes(cat))) }
        out.append(row("total", totalBytes, "  of \(Self.format(limits.globalBytes)) (\(limits.globalSource))"))
        if let big = largest {
            out.append(row("largest buffer", big.bytes,
                           "  of \(Self.format(limits.maxAllocationBytes)) per buffer (\(limits.allocationSource)): \(big.name)"))
        }
        // What is kept in several buffers because one would be past the per-buffer limit.
        var split: [String] = []
        for (tensor, parts) in items.compactMap(\.split) where !split.contains("\(tensor) in \(parts) parts") {
            split.append("\(tensor) in \(parts) parts")
        }
        let groups = items.first { $0.category == .trainable }?.trainableGroups ?? 1
        if groups > 1 { split.append("the trainable tensors in \(groups) groups of buffers") }
        if !split.isEmpty { out.append("  kept in parts (one buffer each ≤ the per-buffer limit): " + split.joined(separator: "; ")) }
        return out
    }

    /// What does not fit `limits`, or nil when everything does: the total past
    /// the device memory, and the largest single buffer past the allocation limit.
    public func problems(limits: MemoryLimits) -> Problems {
        let total = limits.globalBytes > 0 && totalBytes > limits.globalBytes
        let tooBig = limits.maxAllocationBytes > 0
            ? items.filter { $0.bytes > limits.maxAllocationBytes }.max { $0.bytes < $1.bytes } : nil
        let tooMany = items.filter { $0.elements > Int(Int32.max) }.max { $0.elements < $1.elements }
        return Problems(total: total, buffer: tooBig, elements: tooMany)
    }

    public struct Problems: Sendable, Equatable {
        /// The total is past the device memory.
        public let total: Bool
        /// The largest buffer past the per-buffer allocation limit.
        public let buffer: Item?
        /// The largest buffer with more elements than the kernels' 32-bit int indices reach.
        public let elements: Item?
        public var fit: Bool { !total && buffer == nil && elements == nil }
    }

    /// 1536 → "1.5 KiB"; binary units, one decimal.
    public static func format(_ bytes: Int) -> String {
        if bytes == Int.max { return "> 8 EiB" }
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
        var v = Double(bytes), u = 0
        while v >= 1024 && u < units.count - 1 { v /= 1024; u += 1 }
        return u == 0 ? "\(bytes) B" : String(format: "%.1f %@", v, units[u])
    }
}

/// The device limits a plan is checked against: CL_DEVICE_GLOBAL_MEM_SIZE and
/// CL_DEVICE_MAX_MEM_ALLOC_SIZE, or what `LORA_GPU_DEVICE_MEMORY` says.
public struct MemoryLimits: Sendable, Equatable {
    public static let environmentVariable = "LORA_GPU_DEVICE_MEMORY"
    public var deviceName: String
    public var globalBytes: Int
    public var maxAllocationBytes: Int
    /// Where each number came from, for messages.
    public var globalSource: String
    public var allocationSource: String

    public init(deviceName: String, globalBytes: Int, maxAllocationBytes: Int,
                globalSource: String = "CL_DEVICE_GLOBAL_MEM_SIZE", allocationSource: String = "CL_DEVICE_MAX_MEM_ALLOC_SIZE") {
        self.deviceName = deviceName
        self.globalBytes = globalBytes
        self.maxAllocationBytes = maxAllocationBytes
        self.globalSource = globalSource
        self.allocationSource = allocationSource
    }

    /// The most bytes one buffer may hold: the allocation limit (with
    /// `LORA_GPU_DEVICE_MEMORY`'s, when it gives one), never above the
    /// device's own; 0 when neither says.
    public static func bufferLimit(device: Device, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> Int {
        let asked = try MemoryLimits(device: device, environment: environment).maxAllocationBytes
        let own = device.maxAllocationBytes
        return asked > 0 && own > 0 ? min(asked, own) : max(asked, own, 0)
    }

    /// The device's own limits, overridden by `LORA_GPU_DEVICE_MEMORY=SIZE[,MAX_ALLOC]`
    /// (bytes, or with a K/M/G/T suffix, binary): plan against less than the
    /// device reports (a GPU shared with other work), or test the check.
    public init(device: Device, environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        self.init(deviceName: device.name, globalBytes: device.globalMemoryBytes, maxAllocationBytes: device.maxAllocationBytes)
        guard let raw = environment[Self.environmentVariable], !raw.trimmingCharacters(in: .whitespaces).isEmpty else { return }
        let parts = raw.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        guard parts.count <= 2, let g = Self.parseSize(parts[0]), parts.count == 1 || Self.parseSize(parts[1]) != nil else {
            throw MemoryPlanError(message: "\(Self.environmentVariable)=\(raw): expected SIZE or SIZE,MAX_ALLOC "
                + "(bytes, or a number with K, M, G or T, e.g. 16G,4G)")
        }
        globalBytes = g
        globalSource = Self.environmentVariable
        if parts.count == 2, let a = Self.parseSize(parts[1]) {
            maxAllocationBytes = a
            allocationSource = Self.environmentVariable
        }
    }

    /// "4096", "512K", "1.5G" → bytes (binary units); nil when not a positive size.
    static func parseSize(_ s: String) -> Int? {
        var t = s.uppercased()
        if t.hasSuffix("IB") { t.removeLast(2) } else if t.hasSuffix("B") { t.removeLast() }
        let scale: Double
        switch t.last {
        case "K": scale = 1024
        case "M": scale = 1024 * 1024
        case "G": scale = 1024 * 1024 * 1024
        case "T": scale = 1024 * 1024 * 1024 * 1024
        default: scale = 1
        }
        if scale > 1 { t.removeLast() }
        guard let v = Double(t), v.isFinite, v > 0, v * scale < 9e18 else { return nil }
        return Int(v * scale)
    }
}

/// A plan that does not fit, or a bad limits override.
public struct MemoryPlanError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
}

// MARK: saturating sizes (absurd settings give Int.max, never a trap)

fileprivate func sat(_ a: Int, _ b: Int) -> Int {
    let (p, o) = a.multipliedReportingOverflow(by: b)
    return o || p < 0 ? Int.max : p
}
fileprivate func satAdd(_ a: Int, _ b: Int) -> Int {
    let (s, o) = a.addingReportingOverflow(b)
    return o ? Int.max : s
}
/// Bytes of a fp32 / int32 buffer of the product of `dims` elements (DeviceBuffer allocates at least one).
fileprivate func f32(_ dims: Int...) -> Int { sat(max(dims.reduce(1, sat), 1), 4) }
fileprivate func i32(_ dims: Int...) -> Int { sat(max(dims.reduce(1, sat), 1), 4) }

fileprivate extension String {
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}
