import Foundation
import LoraBase
import LoraModel
import LoraText

/// Errors of generation settings, naming the option.
public enum GenerationError: Error, CustomStringConvertible, Equatable {
    case invalidOption(String)
    case promptTooLong(tokens: Int, limit: Int)

    public var description: String {
        switch self {
        case .invalidOption(let s): return "generate: \(s)"
        case .promptTooLong(let t, let limit):
            return "generate: the prompt has \(t) tokens; the model takes at most \(limit) (max_position_embeddings) with at least one new token"
        }
    }
}

/// How the next token is chosen. temperature 0 is greedy (argmax, as
/// transformers' do_sample=False); otherwise transformers' logits warpers in
/// its order — temperature, then top-k, then top-p — and a draw from the
/// softmax with a seeded generator (reproducible, not torch's stream).
public struct SamplingOptions: Sendable, Equatable {
    public var temperature: Double
    /// nil or 0: no top-k filtering.
    public var topK: Int?
    /// nil or 1: no nucleus filtering.
    public var topP: Double?
    public var seed: UInt64

    public init(temperature: Double = 0, topK: Int? = nil, topP: Double? = nil, seed: UInt64 = 0) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.seed = seed
    }

    public var greedy: Bool { temperature == 0 }

    public func validate() throws {
        guard temperature.isFinite, temperature >= 0 else {
            throw GenerationError.invalidOption("temperature must be ≥ 0 (0 is greedy), got \(temperature)")
        }
        if let k = topK, k < 0 { throw GenerationError.invalidOption("top-k must be ≥ 0 (0 disables it), got \(k)") }
        if let p = topP, !(p > 0 && p <= 1) { throw GenerationError.invalidOption("top-p must be in (0, 1], got \(p)") }
    }
}

/// Picks tokens from logits; holds the seeded generator of one generation.
public struct Sampler {
    public let options: SamplingOptions
    var rng: SplitMix64  // the sampling stream, from the seed

    public init(_ options: SamplingOptions) throws {
        try options.validate()
        self.options = options
        rng = SplitMix64(seed: options.seed)
    }

    /// The first index of the largest logit (torch.argmax's tie rule).
    public static func argmax(_ logits: [Float]) -> Int {
        var best = 0
        for i in logits.indices.dropFirst() where logits[i] > logits[best] { best = i }
        return best
    }

    /// The warped scores: logits/temperature, then −∞ outside the top k (ties with
    /// the k-th value kept, as transformers' TopKLogitsWarper), then −∞ outside the
    /// smallest set whose probability exceeds top_p (TopPLogitsWarper: ascending
    /// sort, drop while the cumulative probability ≤ 1 − top_p, keep the largest).
    public static func warp(_ logits: [Float], _ o: SamplingOptions) -> [Double] {
        var s = logits.map { Double($0) / (o.temperature > 0 ? o.temperature : 1) }
        if let k0 = o.topK, k0 > 0, k0 < s.count {
            let kth = s.sorted(by: >)[k0 - 1]
            for i in s.indices where s[i] < kth { s[i] = -.infinity }
        }
        if let p = o.topP, p < 1 {
            let order = s.indices.sorted { s[$0] < s[$1] || (s[$0] == s[$1] && $0 < $1) }
            let probs = softmax(order.map { s[$0] })
            var cum = 0.0
            for (rank, i) in order.enumerated() where rank < order.count - 1 {
                cum += probs[rank]
                if cum <= 1 - p { s[i] = -.infinity }
            }
        }
        return s
    }

    static func softmax(_ s: [Double]) -> [Double] {
        let m = s.max() ?? 0
        let e = s.map { $0 == -.infinity ? 0 : Foundation.exp($0 - m) }
        let z = e.reduce(0, +)
        return e.map { $0 / z }
    }

    /// The next token: argmax when greedy, else a draw from softmax(warp(logits)).
    public mutating func next(_ logits: [Float]) -> Int {
        if options.greedy { return Self.argmax(logits) }
        let probs = Self.softmax(Self.warp(logits, options))
        let u = rng.unit()
        var cum = 0.0, lastKept = 0
        for (i, p) in probs.enumerated() where p > 0 {
            cum += p
            lastKept = i
            if u < cum { return i }
        }
        return lastKept  // u within rounding of 1
    }
}

public struct GenerationOptions: Sendable {
    public var maxNewTokens: Int
    public var sampling: SamplingOptions
    /// Generation stops after emitting any of these (EOS ids and the chat
    /// template's end-of-turn); the stop token is part of `tokens` (as
    /// transformers returns it) but is never streamed as text.
    public var stopIDs: Set<Int>

    public init(maxNewTokens: Int = 256, sampling: SamplingOptions = .init(), stopIDs: Set<Int> = []) {
        self.maxNewTokens = maxNewTokens
        self.sampling = sampling
        self.stopIDs = stopIDs
    }
}

public enum StopReason: Equatable, Sendable {
    case stopToken(Int)
    case maxNewTokens
    /// prompt + new tokens reached max_position_embeddings (or the session's length).
    case maxLength
}

public struct GenerationResult: Sendable {
    /// The new tokens, the stop token included when one ended generation.
    public var tokens: [Int]
    public var stopReason: StopReason
    public var promptTokens: Int
    /// Prompt tokens actually run (fewer when the cache held a shared prefix).
    public var prefilledTokens: Int
    public var prefillSeconds: Double
    public var decodeSeconds: Double
}

/// Generation on one model. The KV cache grows with the conversation (to the
/// prompt + max_new_tokens of the longest call, at least doubling) up to
/// `maxLength` (default: max_position_embeddings, or the sliding window); the
/// cache is reused across calls, so a prompt that extends the previous
/// conversation only runs its new tokens.
public final class Generator {
    public let model: LlamaLoRAModel
    public let maxLength: Int
    let chunkTokens: Int
    public private(set) var session: InferenceSession?
    /// The model's training step when the session's adapters were packed.
    var adapterStep: Int

    /// Forgets the cached conversation and repacks the adapters: call it after
    /// loading other adapter weights into the model (training is noticed by itself).
    public func reset() throws {
        session?.reset()
        try session?.refreshAdapters()
        adapterStep = model.step
    }

    public init(model: LlamaLoRAModel, maxLength: Int? = nil, chunkTokens: Int = 128) throws {
        self.model = model
        let limit = model.config.maxPositionEmbeddings
        if let m = maxLength, m < 2 || m > limit {
            throw GenerationError.invalidOption("max length \(m) must be in 2...\(limit) (the model's limit)")
        }
        self.maxLength = maxLength ?? limit
        self.chunkTokens = chunkTokens
        adapterStep = model.step
    }

    /// A session that holds `needed` positions (capped at maxLength), keeping the current one when it does.
    func session(holding needed: Int) throws -> InferenceSession {
        let want = min(needed, maxLength)
        if let s = session, s.maxTokens >= want { return s }
        let size = min(maxLength, max(want, 2 * (session?.maxTokens ?? 0), 16))
        let s = try InferenceSession(model: model, maxTokens: size, chunkTokens: chunkTokens)
        // The conversation so far moves into the larger cache (its adapters are the ones packed now
        // unless training moved on, which `generate` notices and then resets).
        if let old = session, model.step == adapterStep { try s.adoptCache(of: old) }
        session = s
        adapterStep = model.step  // packed just now
        return s
    }

    /// Generates after `prompt`; `onToken` sees each new token as it is chosen
    /// (the stop token included). The logits of every step can be observed with
    /// `onLogits` (tests).
    public func generate(prompt: [Int], options: GenerationOptions,
                         onLogits: (([Float]) throws -> Void)? = nil,
                         onToken: (Int) throws -> Void = { _ in }) throws -> GenerationResult {
        guard options.maxNewTokens >= 0 else {
            throw GenerationError.invalidOption("max_new_tokens must be ≥ 0, got \(options.maxNewTokens)")
        }
        guard !prompt.isEmpty else { throw GenerationError.invalidOption("the prompt is empty") }
        guard prompt.count < maxLength else {
            throw GenerationError.promptTooLong(tokens: prompt.count, limit: maxLength)
        }
        var sampler = try Sampler(options.sampling)
        var result = GenerationResult(tokens: [], stopReason: .maxNewTokens, promptTokens: prompt.count,
                                      prefilledTokens: 0, prefillSeconds: 0, decodeSeconds: 0)
        if options.maxNewTokens == 0 { return result }
        let session = try session(holding: prompt.count + options.maxNewTokens)
        if model.step != adapterStep {
            // Trained since the last call: new A and B, and a cache computed with the old ones.
            try session.refreshAdapters()
            session.reset()
            adapterStep = model.step
        }
        // Reuse the cached prefix; at least the last prompt token runs again (its logits are needed).
        var shared = 0
        let cached = session.tokens
        while shared < min(cached.count, prompt.count - 1) && cached[shared] == prompt[shared] { shared += 1 }
        session.truncate(to: shared)
        let t0 = DispatchTime.now().uptimeNanoseconds
        var logits = try session.append(Array(prompt[shared...]))
        let t1 = DispatchTime.now().uptimeNanoseconds
        result.prefilledTokens = prompt.count - shared
        result.prefillSeconds = Double(t1 - t0) * 1e-9
        while true {
            try onLogits?(logits)
            let next = sampler.next(logits)
            result.tokens.append(next)
            try onToken(next)
            if options.stopIDs.contains(next) { result.stopReason = .stopToken(next); break }
            if result.tokens.count >= options.maxNewTokens { result.stopReason = .maxNewTokens; break }
            // prompt + new tokens never exceed the session's length (max_position_embeddings).
            if session.length + 1 >= session.maxTokens { result.stopReason = .maxLength; break }
            logits = try session.append([next])
        }
        result.decodeSeconds = Double(DispatchTime.now().uptimeNanoseconds - t1) * 1e-9
        return result
    }
}

/// Turns generated ids into text pieces as they arrive without ever splitting
/// a multi-byte character: each step decodes the whole generated prefix and
/// emits what was added since the last emission, holding back a trailing
/// U+FFFD (a byte sequence that the next token may complete).
public struct TextStream {
    let decode: ([Int]) throws -> String
    public private(set) var ids: [Int] = []
    var emitted: [Unicode.Scalar] = []

    public init(decode: @escaping ([Int]) throws -> String) { self.decode = decode }

    /// Adds a token; returns the text that is now final ("" when none).
    public mutating func push(_ id: Int) throws -> String {
        ids.append(id)
        return try emit(final: false)
    }

    /// Everything not yet emitted, trailing U+FFFD included.
    public mutating func finish() throws -> String { try emit(final: true) }

    mutating func emit(final: Bool) throws -> String {
        let now = Array(try decode(ids).unicodeScalars)
        // A decoder may rewrite earlier text (e.g. a leading-space rule): emit only
        // past the common prefix, and nothing while the emitted text is not a prefix.
        var common = 0
        while common < min(now.count, emitted.count) && now[common] == emitted[common] { common += 1 }
        if common < emitted.count && !final { return "" }
        var end = now.count
        if !final { while end > common && now[end - 1] == "\u{FFFD}" { end -= 1 } }
        guard end > common else { return "" }
        let piece = now[common..<end]
        emitted = Array(now[0..<end])
        var s = String.UnicodeScalarView()
        s.append(contentsOf: piece)
        return String(s)
    }
}

/// The end-of-sequence ids a model declares: `eos_token_id` (a number or a
/// list) of generation_config.json and config.json in the model directory.
public enum ModelStopIDs {
    public static func load(modelDirectory dir: String) throws -> Set<Int> {
        var ids: Set<Int> = []
        for name in ["generation_config.json", "config.json"] {
            let path = dir + "/" + name
            guard FileManager.default.fileExists(atPath: path) else { continue }
            guard let obj = (try? JSONValue.read(path: path))?.object else {
                throw GenerationError.invalidOption("\(path): not a JSON object")
            }
            let value = obj["eos_token_id"] ?? .null
            if let n = value.integral { ids.insert(n) }
            else if let list = value.array, case let ns = list.compactMap(\.integral), ns.count == list.count { ids.formUnion(ns) }
            else if !value.isNull {
                throw GenerationError.invalidOption("\(path): eos_token_id is neither a number nor a list of numbers")
            }
        }
        return ids
    }
}
