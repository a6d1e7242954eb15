import LoraOps
import OpenCLRuntime

/// Every trainable tensor in one flat parameter buffer (with its gradient and
/// the AdamW moments in three more), as views at aligned offsets — so the
/// optimizer and the gradient norm are one launch each.
public final class ParameterStore {
    public struct Entry {
        /// The name PEFT saves the tensor under (`base_model.model.….lora_A.weight`).
        public let key: String
        public let shape: [Int]
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

    public let entries: [Entry]
    public let params: DeviceBuffer<Float>
    public let grads: DeviceBuffer<Float>
    public let m: DeviceBuffer<Float>
    public let v: DeviceBuffer<Float>
    public let decayMask: DeviceBuffer<UInt8>
    /// Elements in the flat buffers, padding included.
    public let total: Int
    private let byKey: [String: Int]
    /// Set when an optimizer step failed after its AdamW launch (the device may
    /// have updated part of the parameters and moments): steps are refused
    /// until a resume restores them (`LlamaLoRAModel.restoreStep`).
    public internal(set) var lostState: StepError.Lost? = nil

    public init(_ ctx: ComputeContext, specs: [Spec]) throws {
        let align = max(ctx.device.baseAddressAlignmentBytes / 4, 1)
        var offsets: [Int] = []
        var off = 0
        for s in specs {
            offsets.append(off)
            off += (s.shape.reduce(1, *) + align - 1) / align * align
        }
        total = max(off, 1)
        params = try ctx.buffer(count: total, label: "trainable parameters (\(total) floats)")
        grads = try ctx.buffer(count: total, label: "gradients of the trainable parameters")
        m = try ctx.buffer(count: total, label: "AdamW first moments")
        v = try ctx.buffer(count: total, label: "AdamW second moments")
        for b in [params, grads, m, v] { try b.fill(0) }
        var mask = [UInt8](repeating: 0, count: total)
        var es: [Entry] = []
        var keys: [String: Int] = [:]
        for (s, o) in zip(specs, offsets) {
            let n = s.shape.reduce(1, *)
            if s.decay { for i in o..<(o + n) { mask[i] = 1 } }
            keys[s.key] = es.count
            es.append(Entry(key: s.key, shape: s.shape, offset: o,
                            param: try params.subBuffer(offset: o, count: n), grad: try grads.subBuffer(offset: o, count: n)))
        }
        decayMask = try DeviceBuffer(queue: ctx.queue, mask)
        entries = es
        byKey = keys
    }

    public func entry(_ key: String) -> Entry? { byKey[key].map { entries[$0] } }

    public var parameterCount: Int { entries.reduce(0) { $0 + $1.count } }

    public func zeroGradients() throws { try grads.fill(0) }

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
        var mask = [UInt8](repeating: 0, count: total)
        for e in entries where decays(e.key) { for i in e.offset..<(e.offset + e.count) { mask[i] = 1 } }
        try decayMask.write(mask)
    }

    /// The decay flag of every tensor as the mask holds it now.
    public func decayFlags() throws -> [String: Bool] {
        let mask = try decayMask.read()
        var out: [String: Bool] = [:]
        for e in entries { out[e.key] = e.count > 0 && mask[e.offset] != 0 }
        return out
    }

    /// AdamW's first and second moments of every tensor, by key.
    public func moments() throws -> (m: [String: [Float]], v: [String: [Float]]) {
        let fm = try m.read(), fv = try v.read()
        var om: [String: [Float]] = [:], ov: [String: [Float]] = [:]
        for e in entries {
            om[e.key] = Array(fm[e.offset..<(e.offset + e.count)])
            ov[e.key] = Array(fv[e.offset..<(e.offset + e.count)])
        }
        return (om, ov)
    }

    /// Restores the moments saved by `moments()`; every tensor must be present with its element count.
    public func restoreMoments(m ms: [String: [Float]], v vs: [String: [Float]], source: String) throws {
        var fm = [Float](repeating: 0, count: total), fv = [Float](repeating: 0, count: total)
        for e in entries {
            for (name, dict) in [("m", ms), ("v", vs)] {
                guard let values = dict[e.key] else {
                    throw LoraError.adapter(path: source, reason: "optimizer state '\(name)' has no tensor '\(e.key)'")
                }
                guard values.count == e.count else {
                    throw LoraError.adapter(path: source, reason: "optimizer state '\(name)' of '\(e.key)' has \(values.count) elements, expected \(e.count)")
                }
            }
            fm.replaceSubrange(e.offset..<(e.offset + e.count), with: ms[e.key]!)
            fv.replaceSubrange(e.offset..<(e.offset + e.count), with: vs[e.key]!)
        }
        try m.write(fm)
        try v.write(fv)
    }
}
