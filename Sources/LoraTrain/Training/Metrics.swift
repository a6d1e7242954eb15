import Foundation
import LoraBase

/// One line of metrics.jsonl: a logged step (train fields) and, when the step
/// was evaluated, eval_loss and eval_perplexity.
public struct MetricsRecord: Equatable, Sendable {
    public var step: Int
    public var epoch: Double
    public var loss: Double
    public var gradNorm: Double
    public var learningRate: Double
    public var tokensPerSecond: Double
    public var elapsedSeconds: Double
    public var evalLoss: Double?
    /// A classifier's validation accuracy and F1 (macro over classes; micro over labels for multi-label).
    public var evalAccuracy: Double?
    /// Extractive QA: SQuAD's exact match (percent; eval_f1 is then SQuAD's F1, percent too).
    public var evalExactMatch: Double?
    public var evalF1: Double?
    /// Whether eval_loss is a token cross-entropy (its exp a perplexity): not for a classifier.
    public var lossIsTokenCrossEntropy = true
    public var evalPerplexity: Double? { lossIsTokenCrossEntropy ? evalLoss.map { exp($0) } : nil }

    /// `{"step": …, "epoch": …, …}` in a fixed key order; non-finite numbers as null.
    public var json: String {
        func num(_ d: Double) -> String { d.isFinite ? "\(d)" : "null" }
        var parts = ["\"step\": \(step)", "\"epoch\": \(num((epoch * 1e4).rounded() / 1e4))", "\"loss\": \(num(loss))",
                     "\"grad_norm\": \(num(gradNorm))", "\"learning_rate\": \(num(learningRate))",
                     "\"tokens_per_second\": \(num((tokensPerSecond * 10).rounded() / 10))",
                     "\"elapsed_seconds\": \(num((elapsedSeconds * 1000).rounded() / 1000))"]
        if let e = evalLoss { parts.append("\"eval_loss\": \(num(e))") }
        if let p = evalPerplexity { parts.append("\"eval_perplexity\": \(num(p))") }
        if let a = evalAccuracy { parts.append("\"eval_accuracy\": \(num(a))") }
        if let m = evalExactMatch { parts.append("\"eval_exact_match\": \(num(m))") }
        if let f = evalF1 { parts.append("\"eval_f1\": \(num(f))") }
        return "{" + parts.joined(separator: ", ") + "}"
    }

    /// Reads one line back (nil when it is not a record).
    public init?(json line: String) {
        guard let o = (try? JSONValue.parse(line))?.object, let step = o["step"]?.integral else { return nil }
        func d(_ k: String) -> Double { o[k]?.double ?? .nan }
        self.step = step
        epoch = d("epoch"); loss = d("loss"); gradNorm = d("grad_norm"); learningRate = d("learning_rate")
        tokensPerSecond = d("tokens_per_second"); elapsedSeconds = d("elapsed_seconds")
        evalLoss = o["eval_loss"]?.double
        evalAccuracy = o["eval_accuracy"]?.double
        evalExactMatch = o["eval_exact_match"]?.double
        evalF1 = o["eval_f1"]?.double
        lossIsTokenCrossEntropy = evalLoss == nil || o["eval_perplexity"] != nil
    }

    public init(step: Int, epoch: Double, loss: Double, gradNorm: Double, learningRate: Double,
                tokensPerSecond: Double, elapsedSeconds: Double, evalLoss: Double? = nil) {
        self.step = step; self.epoch = epoch; self.loss = loss; self.gradNorm = gradNorm
        self.learningRate = learningRate; self.tokensPerSecond = tokensPerSecond
        self.elapsedSeconds = elapsedSeconds; self.evalLoss = evalLoss
    }
}

/// Writes `data` to `path` atomically (LoraBase.AtomicFile); a failure names the path.
func writeAtomically(_ data: Data, to path: String) throws {
    do { try AtomicFile.write(data, to: path) } catch let e as AtomicFile.WriteError {
        throw TrainError.checkpoint(path: path, reason: "cannot write: \(e.reason)")
    }
}

/// Copies the file `source` to `path` atomically, piece by piece (AtomicFile.copy); a failure names the path.
func copyAtomically(from source: String, to path: String) throws {
    do { try AtomicFile.copy(from: source, to: path) } catch let e as AtomicFile.WriteError {
        throw TrainError.checkpoint(path: path, reason: "cannot copy \(source): \(e.reason)")
    }
}

/// loss.svg: the train loss (line) and eval loss (line with points) against
/// the step, with ticked axes, labels and a legend.
public enum LossPlot {
    /// "Nice" tick values (1, 2, 5 × 10^k apart) covering [lo, hi].
    static func ticks(_ lo: Double, _ hi: Double, count: Int = 8) -> [Double] {
        guard hi > lo, lo.isFinite, hi.isFinite else { return [lo] }
        let raw = (hi - lo) / Double(max(count - 1, 1))
        let mag = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 5, 10].map { $0 * mag }.first { $0 >= raw } ?? 10 * mag
        var t = (lo / step).rounded(.down) * step
        var out: [Double] = []
        while t <= hi + step * 1e-9 {
            if t >= lo - step * 1e-9 { out.append(abs(t) < step * 1e-9 ? 0 : t) }
            t += step
        }
        return out
    }

    static func label(_ v: Double) -> String {
        if v == v.rounded() && abs(v) < 1e7 { return String(Int(v)) }
        let s = String(format: "%.4g", v)
        return s
    }

    public static func svg(train: [(step: Int, loss: Double)], eval: [(step: Int, loss: Double)], title: String) -> String {
        let W = 720.0, H = 420.0, left = 70.0, right = 20.0, top = 40.0, bottom = 55.0
        let pw = W - left - right, ph = H - top - bottom
        let pts = (train + eval).filter { $0.loss.isFinite }
        let maxStep = Double(max(pts.map(\.step).max() ?? 1, 1))
        var lo = pts.map(\.loss).min() ?? 0, hi = pts.map(\.loss).max() ?? 1
        if hi - lo < 1e-9 { lo -= 0.5; hi += 0.5 }
        let pad = (hi - lo) * 0.05
        lo = max(0, lo - pad); hi += pad
        let xt = ticks(0, maxStep).filter { $0 == $0.rounded() }
        let yt = ticks(lo, hi)
        let y0 = yt.first.map { min($0, lo) } ?? lo, y1 = yt.last.map { max($0, hi) } ?? hi
        func x(_ s: Double) -> Double { left + pw * s / maxStep }
        func y(_ l: Double) -> Double { top + ph * (1 - (l - y0) / max(y1 - y0, 1e-12)) }
        func f(_ v: Double) -> String { String(format: "%.1f", v) }
        var s = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(W))" height="\(Int(H))" viewBox="0 0 \(Int(W)) \(Int(H))" font-family="sans-serif" font-size="12">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(f(W / 2))" y="22" text-anchor="middle" font-size="15">\(escape(title))</text>

        """
        for t in yt {
            s += "<line x1=\"\(f(left))\" y1=\"\(f(y(t)))\" x2=\"\(f(left + pw))\" y2=\"\(f(y(t)))\" stroke=\"#e4e4e4\"/>\n"
            s += "<text x=\"\(f(left - 6))\" y=\"\(f(y(t) + 4))\" text-anchor=\"end\">\(label(t))</text>\n"
        }
        for t in xt {
            s += "<line x1=\"\(f(x(t)))\" y1=\"\(f(top + ph))\" x2=\"\(f(x(t)))\" y2=\"\(f(top + ph + 5))\" stroke=\"black\"/>\n"
            s += "<text x=\"\(f(x(t)))\" y=\"\(f(top + ph + 19))\" text-anchor=\"middle\">\(label(t))</text>\n"
        }
        s += "<line x1=\"\(f(left))\" y1=\"\(f(top))\" x2=\"\(f(left))\" y2=\"\(f(top + ph))\" stroke=\"black\"/>\n"
        s += "<line x1=\"\(f(left))\" y1=\"\(f(top + ph))\" x2=\"\(f(left + pw))\" y2=\"\(f(top + ph))\" stroke=\"black\"/>\n"
        s += "<text x=\"\(f(left + pw / 2))\" y=\"\(f(H - 12))\" text-anchor=\"middle\">step</text>\n"
        s += "<text x=\"18\" y=\"\(f(top + ph / 2))\" text-anchor=\"middle\" transform=\"rotate(-90 18 \(f(top + ph / 2)))\">loss</text>\n"
        func path(_ series: [(step: Int, loss: Double)], color: String, dots: Bool) {
            let p = series.filter { $0.loss.isFinite }
            guard !p.isEmpty else { return }
            let d = p.enumerated().map { ($0.offset == 0 ? "M" : "L") + "\(f(x(Double($0.element.step)))),\(f(y($0.element.loss)))" }
            s += "<path d=\"\(d.joined(separator: " "))\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"1.8\"/>\n"
            if dots || p.count == 1 {
                for q in p { s += "<circle cx=\"\(f(x(Double(q.step))))\" cy=\"\(f(y(q.loss)))\" r=\"3\" fill=\"\(color)\"/>\n" }
            }
        }
        path(train, color: "#1f77b4", dots: false)
        path(eval, color: "#d62728", dots: true)
        // legend
        let lx = left + pw - 130, ly = top + 10
        s += "<rect x=\"\(f(lx))\" y=\"\(f(ly))\" width=\"120\" height=\"\(eval.isEmpty ? 24 : 42)\" fill=\"white\" stroke=\"#999\"/>\n"
        s += "<line x1=\"\(f(lx + 8))\" y1=\"\(f(ly + 13))\" x2=\"\(f(lx + 32))\" y2=\"\(f(ly + 13))\" stroke=\"#1f77b4\" stroke-width=\"2\"/>"
        s += "<text x=\"\(f(lx + 40))\" y=\"\(f(ly + 17))\">train loss</text>\n"
        if !eval.isEmpty {
            s += "<line x1=\"\(f(lx + 8))\" y1=\"\(f(ly + 31))\" x2=\"\(f(lx + 32))\" y2=\"\(f(ly + 31))\" stroke=\"#d62728\" stroke-width=\"2\"/>"
            s += "<circle cx=\"\(f(lx + 20))\" cy=\"\(f(ly + 31))\" r=\"3\" fill=\"#d62728\"/>"
            s += "<text x=\"\(f(lx + 40))\" y=\"\(f(ly + 35))\">eval loss</text>\n"
        }
        return s + "</svg>\n"
    }

    static func escape(_ t: String) -> String {
        Escaping.html(t)
    }
}

/// Progress on the console: on a terminal one bar rewritten in place
/// (step/total, loss, lr, tokens/s, ETA); otherwise a plain line per logged step.
public struct ProgressPrinter {
    public let isTerminal: Bool
    let write: (String) -> Void

    public init(isTerminal: Bool, write: @escaping (String) -> Void) {
        self.isTerminal = isTerminal
        self.write = write
    }

    /// Standard output, a terminal or not.
    public static var standard: ProgressPrinter {
        ProgressPrinter(isTerminal: isatty(STDOUT_FILENO) != 0) { s in
            FileHandle.standardOutput.write(Data(s.utf8))
        }
    }

    static func duration(_ s: Double) -> String {
        guard s.isFinite, s >= 0 else { return "--:--" }
        let t = Int(s.rounded())
        return t >= 3600 ? String(format: "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60) : String(format: "%02d:%02d", t / 60, t % 60)
    }

    /// After every step (terminal only).
    func bar(step: Int, total: Int, loss: Double, lr: Double, tokensPerSecond: Double, eta: Double) {
        guard isTerminal else { return }
        let width = 24, done = total > 0 ? min(width, width * step / total) : 0
        let b = String(repeating: "█", count: done) + String(repeating: "░", count: width - done)
        write("\r\u{1B}[K" + "\(b) \(step)/\(total) | loss \(String(format: "%.4f", loss)) | lr \(String(format: "%.3e", lr)) | "
            + "\(String(format: "%.0f", tokensPerSecond)) tok/s | ETA \(Self.duration(eta))")
    }

    /// A logged step: a plain line (on a terminal it is printed above the bar).
    func line(_ r: MetricsRecord, total: Int) {
        var s = "step \(r.step)/\(total) | epoch \(String(format: "%.2f", r.epoch)) | loss \(String(format: "%.4f", r.loss)) | "
            + "grad_norm \(String(format: "%.4f", r.gradNorm)) | lr \(String(format: "%.3e", r.learningRate)) | "
            + "\(String(format: "%.0f", r.tokensPerSecond)) tok/s | \(Self.duration(r.elapsedSeconds))"
        if let e = r.evalLoss { s += " | eval_loss \(String(format: "%.4f", e))" }
        if let p = r.evalPerplexity { s += " | eval_ppl \(String(format: "%.3f", p))" }
        if let a = r.evalAccuracy { s += " | eval_accuracy \(String(format: "%.4f", a))" }
        if let m = r.evalExactMatch { s += " | eval_exact_match \(String(format: "%.2f", m))" }
        if let f = r.evalF1 { s += " | eval_f1 \(String(format: r.evalExactMatch != nil ? "%.2f" : "%.4f", f))" }
        message(s)
    }

    /// A dataset being read (terminal only, at most every 0.2 s): lines done of all, samples/s.
    func loading(_ file: String) -> (Int, Int) -> Void {
        guard isTerminal else { return { _, _ in } }
        let started = Date()
        var shown = Date.distantPast
        return { done, total in
            let now = Date()
            guard now.timeIntervalSince(shown) >= 0.2 || done + 1 == total else { return }
            shown = now
            let rate = Double(done + 1) / max(now.timeIntervalSince(started), 1e-6)
            write("\r\u{1B}[K" + "data: reading \(file): \(done + 1)/\(total) lines, \(String(format: "%.0f", rate)) lines/s")
        }
    }

    /// A message on its own line.
    func message(_ s: String) {
        write((isTerminal ? "\r\u{1B}[K" : "") + s + "\n")
    }
}

/// A classifier's scores over a validation set, as scikit-learn computes them:
/// accuracy and macro-F1 over classes (single-label); subset accuracy and
/// micro-F1 over every label decision, logit > 0 (multi-label).
public enum ClassificationScores {
    /// Single-label: predictions = argmax of each row's logits (first on ties).
    public static func singleLabel(logits: [Float], labels: [Int], classes: Int) -> (accuracy: Double, macroF1: Double) {
        var tp = [Int](repeating: 0, count: classes), fp = tp, fn = tp
        var correct = 0, n = 0
        for (r, y) in labels.enumerated() where y >= 0 {
            let p = Sampler.argmax(Array(logits[(r * classes)..<((r + 1) * classes)]))
            n += 1
            if p == y { correct += 1; tp[y] += 1 } else { fp[p] += 1; fn[y] += 1 }
        }
        // sklearn's f1_score(average="macro"): classes present in labels or predictions; 0 where undefined.
        let present = (0..<classes).filter { tp[$0] + fp[$0] + fn[$0] > 0 }
        let f1 = present.map { c -> Double in
            let d = Double(2 * tp[c] + fp[c] + fn[c])
            return d > 0 ? Double(2 * tp[c]) / d : 0
        }
        return (n > 0 ? Double(correct) / Double(n) : .nan, present.isEmpty ? .nan : f1.reduce(0, +) / Double(present.count))
    }

    /// Multi-label: targets ≥ 0.5 are positive.
    public static func multiLabel(logits: [Float], targets: [[Float]]) -> (accuracy: Double, microF1: Double) {
        var tp = 0, fp = 0, fn = 0, exact = 0
        for (r, t) in targets.enumerated() {
            var all = true
            for (c, y) in t.enumerated() {
                let p = logits[r * t.count + c] > 0, truth = y >= 0.5
                if p != truth { all = false }
                if p && truth { tp += 1 } else if p { fp += 1 } else if truth { fn += 1 }
            }
            if all { exact += 1 }
        }
        let d = Double(2 * tp + fp + fn)
        return (targets.isEmpty ? .nan : Double(exact) / Double(targets.count), d > 0 ? Double(2 * tp) / d : 0)
    }
}

/// A token classifier's scores, as seqeval computes them: entity-level
/// precision, recall and F1 over every sentence (micro), entities read from
/// IOB2/IOB1/IOBES tags by seqeval's default (lenient) chunking; and the
/// accuracy over every labelled token.
public enum TaggingScores {
    /// (type, first, last) of each entity in a tag sequence (seqeval's get_entities, no suffix).
    public static func entities(_ tags: [String]) -> [(String, Int, Int)] {
        var chunks: [(String, Int, Int)] = []
        var prevTag = "O", prevType = "", begin = 0
        for (i, chunk) in (tags + ["O"]).enumerated() {
            let tag = chunk.isEmpty ? "O" : String(chunk.prefix(1))
            let rest = chunk.dropFirst()
            let type = rest.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false).last.map(String.init) ?? ""
            let type_ = type.isEmpty ? "_" : type
            if endOfChunk(prevTag, tag, prevType, type_) { chunks.append((prevType, begin, i - 1)) }
            if startOfChunk(prevTag, tag, prevType, type_) { begin = i }
            prevTag = tag
            prevType = type_
        }
        return chunks
    }

    static func endOfChunk(_ prevTag: String, _ tag: String, _ prevType: String, _ type: String) -> Bool {
        if prevTag == "E" || prevTag == "S" { return true }
        if (prevTag == "B" || prevTag == "I") && (tag == "B" || tag == "S" || tag == "O") { return true }
        return prevTag != "O" && prevTag != "." && prevType != type
    }

    static func startOfChunk(_ prevTag: String, _ tag: String, _ prevType: String, _ type: String) -> Bool {
        if tag == "B" || tag == "S" { return true }
        if (prevTag == "E" || prevTag == "S" || prevTag == "O") && (tag == "E" || tag == "I") { return true }
        return tag != "O" && tag != "." && prevType != type
    }

    /// Over sentences of (predicted, true) tags: token accuracy and entity precision, recall, F1.
    public static func score(predicted: [[String]], truth: [[String]]) -> (accuracy: Double, precision: Double, recall: Double, f1: Double) {
        var tokens = 0, correct = 0, predictedCount = 0, trueCount = 0, hits = 0
        for (p, t) in zip(predicted, truth) {
            tokens += t.count
            correct += zip(p, t).filter { $0 == $1 }.count
            let pe = entities(p), te = entities(t)
            predictedCount += pe.count
            trueCount += te.count
            var pool = te.map { "\($0.0)|\($0.1)|\($0.2)" }
            for e in pe { if let i = pool.firstIndex(of: "\(e.0)|\(e.1)|\(e.2)") { hits += 1; pool.remove(at: i) } }
        }
        let precision = predictedCount > 0 ? Double(hits) / Double(predictedCount) : 0
        let recall = trueCount > 0 ? Double(hits) / Double(trueCount) : 0
        let f1 = precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0
        return (tokens > 0 ? Double(correct) / Double(tokens) : .nan, precision, recall, f1)
    }
}

/// What an evaluation scores besides its loss: a classifier's accuracy and F1 (fractions), or
/// extractive QA's exact match and F1 (SQuAD's, percent).
struct EvalScores {
    var accuracy: Double? = nil
    var exactMatch: Double? = nil
    var f1: Double? = nil

    /// " | eval_accuracy A | eval_f1 F" (or eval_exact_match), as the progress line prints them.
    var shown: String {
        if let m = exactMatch { return " | eval_exact_match \(String(format: "%.2f", m)) | eval_f1 \(String(format: "%.2f", f1 ?? .nan))" }
        return " | eval_accuracy \(String(format: "%.4f", accuracy ?? .nan))" + (f1.map { " | eval_f1 \(String(format: "%.4f", $0))" } ?? "")
    }
}
