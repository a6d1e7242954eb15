import Foundation

// LoraText's Tokenizer and tokenizer directories for the dataset path.

/// The tokenizer seen through DataTokenizer.
public struct TokenizerDataAdapter: DataTokenizer {
    public let tokenizer: Tokenizer
    public init(_ tokenizer: Tokenizer) { self.tokenizer = tokenizer }

    public func encodeIDs(_ text: String, addSpecialTokens: Bool) throws -> [Int] {
        tokenizer.encode(text, addSpecialTokens: addSpecialTokens)
    }
    public func encodeOffsets(_ text: String) throws -> [TokenOffset] {
        tokenizer.encodeWithOffsets(text, addSpecialTokens: false)
    }
    public func decodeIDs(_ ids: [Int]) -> String { tokenizer.decode(ids, skipSpecialTokens: false) }
    public func encodePair(_ text: String, _ pair: String?, maxLength: Int) throws -> (ids: [Int], truncated: Bool) {
        tokenizer.encode(text, pair: pair, maxLength: maxLength)
    }
    public func encodeWords(_ words: [String], maxLength: Int) throws -> (ids: [Int], wordIDs: [Int?], truncated: Bool) {
        tokenizer.encode(words: words, maxLength: maxLength)
    }
    public func encodeQuestionContext(_ question: String, _ context: String, maxLength: Int, stride: Int) throws -> [Tokenizer.PairRow] {
        try tokenizer.encodeOverflowing(question, context, maxLength: maxLength, stride: stride)
    }
    public var vocabularySize: Int { tokenizer.vocabSize }
    public var eosID: Int? { tokenizer.config.eosToken.flatMap { tokenizer.tokenID($0) } }
    public var padID: Int? { tokenizer.config.padToken.flatMap { tokenizer.tokenID($0) } }
    /// Tokenizer is thread-safe (its only mutable state, the BPE word cache, is locked).
    public var concurrencySafe: Bool { true }
}

public enum ChatTemplateSelection {
    /// The chat template for a tokenizer directory: `option` is a name from the tokenizer config's
    /// named templates, or a file (FILE.jinja); nil takes the tokenizer's own template, or none:
    /// there is never a silent default.
    public static func resolve(option: String?, tokenizer: Tokenizer) throws -> ChatTemplateRenderer? {
        let config = tokenizer.config
        let source: String, name: String
        if let o = option {
            if let named = config.namedChatTemplates[o] {
                source = named; name = o
            } else if o.hasSuffix(".jinja") || FileManager.default.fileExists(atPath: o) {
                guard let data = FileManager.default.contents(atPath: o), let s = String(data: data, encoding: .utf8) else {
                    throw DatasetError.invalidOption("--chat-template \(o): cannot read the file (UTF-8 text expected)")
                }
                source = s; name = o
            } else {
                let names = config.namedChatTemplates.keys.sorted()
                throw DatasetError.invalidOption("--chat-template \(o): not a file and not a named template of the tokenizer config (named: \(names.isEmpty ? "none" : names.joined(separator: ", ")))")
            }
        } else if let t = config.chatTemplate {
            source = t; name = "chat_template"
        } else {
            return nil
        }
        return ChatTemplateRenderer(template: try ChatTemplate(source: source, name: name), specialTokens: config.specialTokens)
    }

    /// The message for a directory without a template.
    public static func missing(_ directory: String) -> String {
        "\(directory): the tokenizer has no chat template: pass --chat-template NAME (one of the tokenizer config's named templates) or FILE.jinja"
    }
}

/// Everything `train` needs from the data options in one call: the tokenizer, its chat template
/// (or the one chosen), the training samples and the validation samples (a separate file, or a
/// seeded fraction of the training file).
public struct TrainingData {
    public var tokenizer: Tokenizer
    public var template: ChatTemplateRenderer?
    public var train: LoadedDataset
    /// Validation samples: from `validationFile`, else split off `train` (then `train.samples`
    /// no longer holds them), else empty.
    public var validation: [TokenizedSample]
    public var validationStatistics: DatasetStatistics?

    public static func load(tokenizerDirectory: String, dataFile: String, chatTemplate: String? = nil,
                            options: DatasetOptions, validationFile: String? = nil,
                            validationFraction: Double = 0, seed: UInt64 = 0) throws -> TrainingData {
        let tok = try Tokenizer.load(directory: tokenizerDirectory)
        let template = try ChatTemplateSelection.resolve(option: chatTemplate, tokenizer: tok)
        let adapter = TokenizerDataAdapter(tok)
        var train = try Dataset.load(file: dataFile, tokenizer: adapter, template: template, options: options)
        var validation: [TokenizedSample] = []
        var vstats: DatasetStatistics? = nil
        if let v = validationFile {
            if validationFraction > 0 { throw DatasetError.invalidOption("give either a validation file or a validation split, not both") }
            let vd = try Dataset.load(file: v, tokenizer: adapter, template: template, options: options)
            validation = vd.samples
            vstats = vd.statistics
        } else if validationFraction > 0 {
            let (t, v) = try Dataset.split(train.samples, validationFraction: validationFraction, seed: seed)
            train.samples = t
            validation = v
        }
        return TrainingData(tokenizer: tok, template: template, train: train, validation: validation, validationStatistics: vstats)
    }
}
