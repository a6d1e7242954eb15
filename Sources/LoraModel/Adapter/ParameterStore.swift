import LoraOps
import OpenCLRuntime

/// Every trainable tensor in one flat parameter buffer (with its gradient and
/// the AdamW moments in three more), as views at aligned offsets — so the
/// optimizer and the gradient norm are one launch each. When the tensors
/// together are larger than one device buffer may be (`bufferLimitBytes`:
/// CL_DEVICE_MAX_MEM_ALLOC_SIZE; e.g. a trained embedding and lm_head of a
/// 128k-vocabulary model, 4.2 GB), they are kept in several such groups of
/// buffers, and those launches run once per group.
public final class ParameterStore {
    public struct Entry {
        /// The name PEFT saves the tensor under (`base_model.model.….lora_A.weight`).
        public let key: String
        public let shape: [Int]
        /// The group holding the tensor, and its first element in the group's buffers.
        public let group: Int
        public let offset: Int
        public let param: DeviceBuffer<Float>
        public let grad: DeviceBuffer<Float>
        public var count: Int { shape.reduce(1, *) }
    }

    public struct Spec: Sendable {
        public let key: String
        public let shape: [Int]
        public let decay: Bool
    }

    /// One set of flat buffers: parameters, gradients, the two moments (`total` floats each) and the decay mask.
    public struct Group {
        public let params: DeviceBuffer<Float>
        public let grads: DeviceBuffer<Float>
        public let m: DeviceBuffer<Float>
        public let v: DeviceBuffer<Float>
        public let decayMask: DeviceBuffer<UInt8>
        /// Elements in each buffer, padding included.
        public let total: Int
    }

    public let entries: [Entry]
    public let groups: [Group]
    /// Elements in the flat buffers of all groups, padding included.
    public var total: Int { groups.reduce(0) { $0 + $1.total } }
    private let byKey: [String: Int]
    /// Set when an optimizer step failed after its AdamW launch (the device may
    /// have updated part of the parameters and moments): steps are refused
    /// until a resume restores them (`LlamaLoRAModel.restoreStep`).
    public internal(set) var lostState: StepError.Lost? = nil

    /// The grouping rule, shared with `MemoryPlan`: each tensor padded to
    /// `alignmentBytes`, in order, a new group started where the next tensor
    /// would take the group's fp32 buffers past `bufferLimitBytes` (≤ 0: one
    /// group). A tensor past the limit by itself gets a group of its own (its
    /// buffers cannot be made; the memory plan says so before loading).
    /// Returns each group's spec indices and its total elements.
    public static func grouping(counts: [Int], alignmentBytes: Int, bufferLimitBytes: Int) -> [(specs: Range<Int>, total: Int)] {
        let align = max(alignmentBytes / 4, 1)
        let limit = bufferLimitBytes > 0 ? bufferLimitBytes / 4 : Int.max
        var out: [(specs: Range<Int>, total: Int)] = []
        var first = 0, total = 0
        for (i, n) in counts.enumerated() {
            let (padded, o) = max(n, 0).addingReportingOverflow(align - 1)
            let size = o ? Int.max : padded / align * align
            if i > first && (total > limit - size || size > limit) {
                out.append((first..<i, max(total, 1)))
                (first, total) = (i, 0)
            }
            total = total > Int.max - size ? Int.max : total + size
        }
        out.append((first..<counts.count, max(total, 1)))
        return out
    }

    /// `bufferLimitBytes`: the most bytes one buffer may hold (≤ 0: no limit).
    public init(_ ctx: ComputeContext, specs: [Spec], bufferLimitBytes: Int = 0) throws {
        let align = max(ctx.device.baseAddressAlignmentBytes / 4, 1)
        let plan = Self.grouping(counts: specs.map { $0.shape.reduce(1, *) }, alignmentBytes: ctx.device.baseAddressAlignmentBytes,
                                 bufferLimitBytes: bufferLimitBytes)
        var es: [Entry] = []
        var keys: [String: Int] = [:]
        var gs: [Group] = []
        for (g, (range, total)) in plan.enumerated() {
            let of = plan.count == 1 ? "" : " (group \(g + 1) of \(plan.count): \(specs[range].map(\.key).joined(separator: ", ")))"
            let params = try ctx.buffer(count: total, label: "trainable parameters (\(total) floats)" + of)
            let grads = try ctx.buffer(count: total, label: "gradients of the trainable parameters" + of)
            let m = try ctx.buffer(count: total, label: "AdamW first moments" + of)
            let v = try ctx.buffer(count: total, label: "AdamW second moments" + of)
            for b in [params, grads, m, v] { try b.fill(0) }
            var mask = [UInt8](repeating: 0, count: total)
            var off = 0
            for s in specs[range] {
                let n = s.shape.reduce(1, *)
                if s.decay { for i in off..<(off + n) { mask[i] = 1 } }
                keys[s.key] = es.count
                es.append(Entry(key: s.key, shape: s.shape, group: g, offset: off,
                                param: try params.subBuffer(offset: off, count: n), grad: try grads.subBuffer(offset: off, count: n)))
                off += (n + align - 1) / align * align
            }
            gs.append(Group(params: params, grads: grads, m: m, v: v, decayMask: try DeviceBuffer(queue: ctx.queue, mask), total: total))
        }
        groups = gs
        entries = es
        byKey = keys
    }

    /// One kind of flat buffer (`\.params`, `\.grads`, `\.m`, `\.v`) of every group, read and joined.
    public func read(_ kind: KeyPath<Group, DeviceBuffer<Float>>) throws -> [Float] {
        try groups.flatMap { try $0[keyPath: kind].read() }
    }

    /// Writes what `read(kind)` returns (all groups' elements, joined).
    public func write(_ kind: KeyPath<Group, DeviceBuffer<Float>>, _ values: [Float]) throws {
        guard values.count == total else {
            throw LoraError.batch("ParameterStore.write: \(values.count) values for \(total) elements")
        }
        var at = 0
        for g in groups {
            try g[keyPath: kind].write(Array(values[at..<(at + g.total)]))
            at += g.total
        }
    }

    /// Fills one kind of flat buffer of every group.
    public func fill(_ kind: KeyPath<Group, DeviceBuffer<Float>>, _ value: Float) throws {
        for g in groups { try g[keyPath: kind].fill(value) }
    }

    public func entry(_ key: String) -> Entry? { byKey[key].map { entries[$0] } }

    public var parameterCount: Int { entries.reduce(0) { $0 + $1.count } }

    public func zeroGradients() throws { try fill(\.grads, 0) }

    // MARK: weight decay and optimizer state

    /// Whether HF Trainer decays a parameter (`get_decay_parameter_names`):
    /// not when its lower-cased name contains "bias", "layernorm", "rmsnorm",
    /// or a "norm" / "_norm" segment. LoRA A/B and modules_to_save weights decay.
    public static func trainerDecays(_ key: String) -> Bool {
        let k = key.lowercased()
        if k.contains("bias") || k.contains("layernorm") || k.contains("rmsnorm") { return false }
        let segments = k.split(separator: ".", omittingEmptySubsequences: false)
        return !segments.contains { $0 == "norm" || $0.hasSuffix("_norm") }
    }

    /// Rewrites the weight-decay mask: element i decays iff `decays(key of its tensor)`.
    /// (The store starts with every tensor's Spec.decay, as plain torch.optim.AdamW.)
    public func setDecayMask(_ decays: (String) -> Bool) throws {
        var masks = groups.map { [UInt8](repeating: 0, count: $0.total) }
        for e in entries where decays(e.key) { for i in e.offset..<(e.offset + e.count) { masks[e.group][i] = 1 } }
        for (g, mask) in zip(groups, masks) { try g.decayMask.write(mask) }
    }

    /// The decay flag of every tensor as the mask holds it now.
    public func decayFlags() throws -> [String: Bool] {
        let masks = try groups.map { try $0.decayMask.read() }
        var out: [String: Bool] = [:]
        for e in entries { out[e.key] = e.count > 0 && masks[e.group][e.offset] != 0 }
        return out
    }

    /// One tensor's AdamW first (`\.m`) or second (`\.v`) moment, read from its group's buffer alone
    /// (a checkpoint writes them one at a time; `moments()` holds them all).
    public func moment(_ kind: KeyPath<Group, DeviceBuffer<Float>>, of e: Entry) throws -> [Float] {
        try groups[e.group][keyPath: kind].read(count: e.count, offset: e.offset)
    }

    /// AdamW's first and second moments of every tensor, by key.
    public func moments() throws -> (m: [String: [Float]], v: [String: [Float]]) {
        let fm = try groups.map { try $0.m.read() }, fv = try groups.map { try $0.v.read() }
        var om: [String: [Float]] = [:], ov: [String: [Float]] = [:]
        for e in entries {
            om[e.key] = Array(fm[e.group][e.offset..<(e.offset + e.count)])
            ov[e.key] = Array(fv[e.group][e.offset..<(e.offset + e.count)])
        }
        return (om, ov)
    }

    /// Restores the moments saved by `moments()`; every tensor must be present with its element count.
    public func restoreMoments(m ms: [String: [Float]], v vs: [String: [Float]], source: String) throws {
        var fm = groups.map { [Float](repeating: 0, count: $0.total) }, fv = fm
        for e in entries {
            for (name, dict) in [("m", ms), ("v", vs)] {
                guard let values = dict[e.key] else {
                    throw LoraError.adapter(path: source, reason: "optimizer state '\(name)' has no tensor '\(e.key)'")
                }
                guard values.count == e.count else {
                    throw LoraError.adapter(path: source, reason: "optimizer state '\(name)' of '\(e.key)' has \(values.count) elements, expected \(e.count)")
                }
            }
            fm[e.group].replaceSubrange(e.offset..<(e.offset + e.count), with: ms[e.key]!)
            fv[e.group].replaceSubrange(e.offset..<(e.offset + e.count), with: vs[e.key]!)
        }
        for (g, (a, b)) in zip(groups, zip(fm, fv)) {
            try g.m.write(a)
            try g.v.write(b)
        }
    }
}
