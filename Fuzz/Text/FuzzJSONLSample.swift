import Foundation

/// One JSONL line through the line parser, the chat template of a fixture tokenizer
/// (FUZZ_TOKENIZER_DIR, default Tests/Fixtures/text/tokenizers/qwen2), the masker and truncation.
let fuzzSampleTokenizer: Tokenizer = {
    let dir = ProcessInfo.processInfo.environment["FUZZ_TOKENIZER_DIR"] ?? "Tests/Fixtures/text/tokenizers/qwen2"
    do { return try Tokenizer.load(directory: dir) } catch {
        fputs("cannot load the tokenizer of \(dir): \(error)\n", stderr)
        exit(2)
    }
}()
let fuzzSampleTemplate: ChatTemplateRenderer? = {
    do { return try ChatTemplateSelection.resolve(option: nil, tokenizer: fuzzSampleTokenizer) } catch {
        fputs("cannot load the chat template: \(error)\n", stderr)
        exit(2)
    }
}()

func fuzzJSONLSample(_ data: UnsafeBufferPointer<UInt8>) {
    let bytes = Array(data)
    guard let (format, record) = try? DatasetLineParser.parse(bytes, file: "fuzz.jsonl", line: 1) else { return }
    // The input's length picks the options, so every mode is reached.
    let trainOn = TrainOn.allCases[bytes.count % TrainOn.allCases.count]
    let maxSeqLen = [nil, 1, 7, 64][(bytes.count / 3) % 4]
    let p = SampleProcessor(tokenizer: TokenizerDataAdapter(fuzzSampleTokenizer), template: fuzzSampleTemplate,
                            options: DatasetOptions(maxSeqLen: maxSeqLen, trainOn: trainOn), file: "fuzz.jsonl")
    _ = try? p.process(record, format: format, line: 1)
}
