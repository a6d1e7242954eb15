import Foundation

/// Errors of the trainer: settings, data, checkpoints and the run itself.
public enum TrainError: Error, CustomStringConvertible, Equatable {
    /// A setting: where it came from (a file path or "command line"), its key, what is wrong.
    case setting(source: String, key: String, reason: String)
    case data(path: String, line: Int, reason: String)
    case checkpoint(path: String, reason: String)
    case nonFinite(step: Int, epoch: Int, batch: Int, loss: Float, gradNorm: Float, lastCheckpoint: String?)

    public var description: String {
        switch self {
        case .setting(let s, let k, let r): return "\(s): \(k): \(r)"
        case .data(let p, let l, let r): return l > 0 ? "\(p):\(l): \(r)" : "\(p): \(r)"
        case .checkpoint(let p, let r): return "\(p): \(r)"
        case .nonFinite(let step, let e, let b, let loss, let norm, let last):
            return "step \(step) (epoch \(e), batch \(b)): the loss is \(loss) and the gradient norm \(norm); stopped "
                + "without updating the adapter. "
                + (last.map { "The last good checkpoint is \($0)." } ?? "No checkpoint had been saved yet.")
                + " Try a lower learning_rate, max_grad_norm > 0 or warmup."
        }
    }
}
