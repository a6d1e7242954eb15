import ArgumentParser
import Foundation
import LoraBase
import LoraText
import LoraTrain

struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Look at what training will see: masked samples, token ids, rendered chat templates.",
        subcommands: [DataPreview.self, DataTokenize.self, DataRender.self])
}

/// Writes to stderr and fails with exit code 1.
func dataFailure(_ message: String) -> ExitCode {
    FileHandle.standardError.write(Data((message + "\n").utf8))
    return ExitCode.failure
}

struct DataPreview: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "preview",
        abstract: "The first samples with trained tokens set apart (colour on a terminal, «…» otherwise), then the dataset's figures; --json: every sample's ids and labels.")

    @Option(help: "A tokenizer or model directory (tokenizer.json, tokenizer_config.json), or a GGUF file.") var tokenizer: String
    @Option(help: "JSONL dataset.") var data: String
    @Option(help: "Samples to show.") var n = 3
    @Option(name: .customLong("max-seq-len"), help: "Keep the first N tokens of each sample.") var maxSeqLen: Int?
    @Option(name: .customLong("train-on"), help: "assistant (every assistant turn), all, or last (the final assistant turn).")
    var trainOn = "assistant"
    @Option(name: .customLong("chat-template"), help: "A named template of the tokenizer config, or FILE.jinja.") var chatTemplate: String?
    @OptionGroup var templateKwargs: TemplateKwargsOption
    @Flag(help: "Every sample in file order, one JSON object per line: {\"line\", \"input_ids\", \"labels\"} or {\"line\", \"skipped\"}.")
    var json = false
    @Flag(name: .customLong("skip-bad-lines"), help: "Count bad lines instead of stopping at the first.") var skipBadLines = false
    @Option(name: .customLong("task-type"), help: "SEQ_CLS or TOKEN_CLS: preview a classifier's lines (tokens and labels); QUESTION_ANS: the questions' windows with their answer spans; instead of causal-LM samples.")
    var taskType: String?
    @Option(name: .customLong("doc-stride"), help: "QUESTION_ANS: overlap between a context's windows (training's doc_stride; default 128, a third of a shorter --max-seq-len). Windows are --max-seq-len tokens (default 384, run_qa.py's: give training's).")
    var docStrideOption: Int?
    var docStride: Int { docStrideOption ?? 128 }
    var docStrideGiven: Bool { docStrideOption != nil }
    @Option(name: .customLong("problem-type"), help: "SEQ_CLS: single_label_classification | regression | multi_label_classification.")
    var problemType: String?
    @Flag(name: .customLong("label-all-tokens"), help: "TOKEN_CLS: label every sub-token of a word.") var labelAllTokens = false

    func validate() throws {
        if let t = taskType, !["SEQ_CLS", "TOKEN_CLS", "QUESTION_ANS", "CAUSAL_LM"].contains(t) {
            throw ValidationError("--task-type must be CAUSAL_LM, SEQ_CLS, TOKEN_CLS or QUESTION_ANS (got \(t))")
        }
        if let p = problemType, ClassificationKind(rawValue: p) == nil {
            throw ValidationError("--problem-type must be single_label_classification, regression or multi_label_classification (got \(p))")
        }
        if TrainOn(rawValue: trainOn) == nil { throw ValidationError("--train-on must be assistant, all or last (got \(trainOn))") }
        if let m = maxSeqLen, m < 2 { throw ValidationError("--max-seq-len must be at least 2 (got \(m))") }
    }

    func run() throws {
        if let t = taskType, t != "CAUSAL_LM" {
            let text = try ModelText(model: tokenizer, chatTemplate: nil, needsTemplate: false)
            let adapter = TokenizerDataAdapter(text.tokenizer)
            let out: String
            do {
                // run_qa.py's max_seq_length 384 unless given (give --max-seq-len as training's); the default
                // stride falls to a third of a shorter window, as train's does; an explicit one must fit.
                let cap = maxSeqLen ?? 384
                if t == "QUESTION_ANS", docStride >= cap, docStrideGiven {
                    throw ValidationError("--doc-stride \(docStride) must be below --max-seq-len \(cap) (the overlap of a context's windows)")
                }
                out = t == "QUESTION_ANS"
                    ? try ClassifierPreview.answers(file: data, tokenizer: adapter, maxSeqLen: cap,
                                                    docStride: docStride < cap ? docStride : cap / 3,
                                                    n: max(0, n), json: json)
                    : t == "SEQ_CLS"
                    ? try ClassifierPreview.sequences(file: data, tokenizer: adapter, maxSeqLen: maxSeqLen ?? Int(Int32.max),
                                                      problemType: problemType.flatMap(ClassificationKind.init(rawValue:)),
                                                      n: max(0, n), json: json)
                    : try ClassifierPreview.tags(file: data, tokenizer: adapter, maxSeqLen: maxSeqLen ?? Int(Int32.max),
                                                 labelAllTokens: labelAllTokens, n: max(0, n), json: json)
            } catch let e as DatasetError {
                throw dataFailure("error: \(e)")
            }
            FileHandle.standardOutput.write(Data(out.utf8))
            return
        }
        let on = TrainOn(rawValue: trainOn) ?? .assistant
        let text = try ModelText(model: tokenizer, chatTemplate: chatTemplate, needsTemplate: false,
                                 templateVariables: try templateKwargs.variables())
        let tok = text.tokenizer, template = text.template
        let adapter = TokenizerDataAdapter(tok)
        let options = DatasetOptions(maxSeqLen: maxSeqLen, trainOn: on, skipBadLines: skipBadLines)
        let d: LoadedDataset
        do {
            d = try Dataset.load(file: data, tokenizer: adapter, template: template, options: options, previewCount: json ? 0 : max(0, n), allowEmpty: true)
        } catch let e as DatasetError {
            throw dataFailure("error: \(e)")
        }
        var out = ""
        if json {
            var s = d.samples.makeIterator(), k = d.skipped.makeIterator()
            var ns = s.next(), nk = k.next()
            while ns != nil || nk != nil {
                if let a = ns, nk == nil || a.line < nk!.line {
                    out += Preview.jsonLine(a) + "\n"; ns = s.next()
                } else if let b = nk {
                    out += Preview.jsonSkipped(line: b.line, reason: b.reason.description) + "\n"; nk = k.next()
                }
            }
        } else {
            let style: PreviewStyle = isatty(STDOUT_FILENO) != 0 ? .color : .brackets
            for note in text.notes { out += note + "\n" }
            if let note = DatasetHints.classifierNote(file: data) { out += "note: " + note + "\n" }
            out += "\(d.file): \(d.format.rawValue), train on \(on.rawValue)\(template.map { ", template \($0.templateName)" } ?? "")\n"
            for p in d.previews { out += Preview.render(p, tokenizer: adapter, style: style) }
            out += "──\n" + d.statistics.summary + "\n"
            for (line, reason) in d.skipped.prefix(10) { out += "  line \(line): \(reason)\n" }
            if d.skipped.count > 10 { out += "  … \(d.skipped.count - 10) more\n" }
        }
        FileHandle.standardOutput.write(Data(out.utf8))
    }
}

/// Lines of stdin (without their newline), blank lines kept out.
/// stdin's non-empty lines as raw bytes (a trailing CR dropped): the JSON parser
/// checks their UTF-8 itself and names the bad byte's column, instead of a lossy decode.
func dataStdinLines() -> [Data] {
    let data = FileHandle.standardInput.readDataToEndOfFile()
    return data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true)
        .map { Data($0.last == UInt8(ascii: "\r") ? $0.dropLast() : $0) }
}

struct DataTokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "JSON strings on stdin, one per line → their ids as JSON arrays (special tokens added as the tokenizer's post-processor does); --decode: JSON arrays → JSON strings (special tokens kept).")

    @Argument(help: "A tokenizer or model directory (tokenizer.json, tokenizer_config.json), or a GGUF file.") var directory: String
    @Flag(help: "Decode id arrays instead.") var decode = false
    @Flag(name: .customLong("no-special-tokens"), help: "Encode without the post-processor's special tokens.") var noSpecialTokens = false

    func run() throws {
        let tok = try ModelText(model: directory, chatTemplate: nil, needsTemplate: false).tokenizer
        var out = ""
        for (i, line) in dataStdinLines().enumerated() {
            let v: JSONValue
            do { v = try JSONValue.parse(line) } catch { throw dataFailure("stdin:\(i + 1): not JSON: \(error)") }
            if decode {
                guard let a = v.array else { throw dataFailure("stdin:\(i + 1): expected a JSON array of ids") }
                var ids: [Int] = []
                for (k, x) in a.enumerated() {
                    guard let id = x.int, id >= 0, id < tok.vocabSize else {
                        throw dataFailure("stdin:\(i + 1): element \(k) is not an id of this tokenizer (0..<\(tok.vocabSize))")
                    }
                    ids.append(id)
                }
                out += JSONValue.string(tok.decode(ids, skipSpecialTokens: false)).serialized() + "\n"
            } else {
                guard let s = v.string else { throw dataFailure("stdin:\(i + 1): expected a JSON string") }
                out += "[" + tok.encode(s, addSpecialTokens: !noSpecialTokens).map(String.init).joined(separator: ", ") + "]\n"
            }
        }
        FileHandle.standardOutput.write(Data(out.utf8))
    }
}

struct DataRender: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "render",
        abstract: "One JSON object {\"messages\": [...]} on stdin → the chat template's text, exactly (nothing appended). A template's raise_exception exits 1 with its message.")

    @Argument(help: "A tokenizer or model directory (tokenizer.json, tokenizer_config.json), or a GGUF file.") var directory: String
    @Flag(name: .customLong("add-generation-prompt"), help: "End with the assistant's header.") var addGenerationPrompt = false
    @Option(name: .customLong("chat-template"), help: "A named template of the tokenizer config, or FILE.jinja.") var chatTemplate: String?
    @OptionGroup var templateKwargs: TemplateKwargsOption

    func run() throws {
        guard var r = try ModelText(model: directory, chatTemplate: chatTemplate, needsTemplate: false,
                                    templateVariables: try templateKwargs.variables()).template else {
            throw dataFailure(ChatTemplateSelection.missing(directory))
        }
        let input = FileHandle.standardInput.readDataToEndOfFile()
        let v: JSONValue
        do { v = try JSONValue.parse(input) } catch { throw dataFailure("stdin: not JSON: \(error)") }
        guard let messages = v["messages"]?.array else { throw dataFailure("stdin: expected {\"messages\": [...]}") }
        // Other keys (tools, documents, date_string, …) are template variables, as apply_chat_template's kwargs.
        if let o = v.object { for (k, x) in o.pairs where k != "messages" { r.variables[k] = x } }
        do {
            let text = try r.render(messages, addGenerationPrompt: addGenerationPrompt)
            FileHandle.standardOutput.write(Data(text.utf8))
        } catch let e as TemplateRaised {
            throw dataFailure(e.message)
        } catch {
            throw dataFailure("\(error)")
        }
    }
}
