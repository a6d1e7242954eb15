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
}
