// Errors of the dataset path. Every one names the file; line errors name the
// 1-based line (and the 1-based byte column where there is one) and the reason.

/// One bad JSONL line: `file:line[:column]: reason`.
public struct DatasetLineError: Error, Equatable, Sendable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int?
    public var reason: String
    public init(file: String, line: Int, column: Int? = nil, reason: String) {
        self.file = file
        self.line = line
        self.column = column
        self.reason = reason
    }
    public var description: String {
        if let c = column { return "\(file):\(line):\(c): \(reason)" }
        return "\(file):\(line): \(reason)"
    }
}

public enum DatasetError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A line that could not become a sample (only thrown without `skipBadLines`).
    case badLine(DatasetLineError)
    case unreadable(file: String, reason: String)
    /// No non-blank line at all.
    case emptyFile(file: String)
    /// Every line was bad or skipped: nothing to train on.
    case noSamples(file: String, reason: String)
    /// A chat-shaped dataset and no chat template (the tokenizer has none and none was given).
    case noChatTemplate(file: String, line: Int, format: String)
    /// The template breaks the prefix property the assistant spans rely on.
    case templatePrefix(template: String, file: String, line: Int, turn: Int, detail: String)
    case invalidOption(String)

    public var description: String {
        switch self {
        case .badLine(let e): return e.description
        case .unreadable(let f, let r): return "\(f): cannot read: \(r)"
        case .emptyFile(let f): return "\(f): empty file (no JSONL line)"
        case .noSamples(let f, let r): return "\(f): no sample left to train on (\(r))"
        case .noChatTemplate(let f, let l, let fmt):
            return "\(f):\(l): \(fmt) samples need a chat template, and the tokenizer has none: pass --chat-template NAME (one of the tokenizer config's named templates) or FILE.jinja"
        case .templatePrefix(let t, let f, let l, let turn, let d):
            return "\(f):\(l): chat template '\(t)' cannot be split into turns at message \(turn) (0-based): \(d). Assistant spans are found by rendering the conversation before and through each assistant turn; this template rewrites earlier text, so the mask cannot be derived from it (use --train-on all, or a template with {% generation %} blocks)"
        case .invalidOption(let s): return s
        }
    }
}
