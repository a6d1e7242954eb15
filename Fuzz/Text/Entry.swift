import Foundation

// libFuzzer entry for the text readers (compiled by scripts/fuzz.sh together with
// Sources/LoraText into one module; FUZZ_TARGET picks the target).

let fuzzTarget = ProcessInfo.processInfo.environment["FUZZ_TARGET"] ?? ""

/// Loads the jsonl_sample tokenizer and template before the first input, so libFuzzer's per-input
/// leak check does not count their one-time allocation against that input.
@_cdecl("LLVMFuzzerInitialize")
public func LLVMFuzzerInitialize(_ argc: UnsafeMutablePointer<CInt>?,
                                 _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?) -> CInt {
    if fuzzTarget == "jsonl_sample" {
        _ = fuzzSampleTokenizer
        _ = fuzzSampleTemplate
    }
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func LLVMFuzzerTestOneInput(_ bytes: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let data = UnsafeBufferPointer(start: bytes, count: count)
    switch fuzzTarget {
    case "tokenizer_json": fuzzTokenizerJSON(data)
    case "jsonl_sample": fuzzJSONLSample(data)
    case "jinja": fuzzJinja(data)
    default:
        fputs("FUZZ_TARGET must be tokenizer_json, jsonl_sample or jinja (got '\(fuzzTarget)')\n", stderr)
        exit(2)
    }
    return 0
}
