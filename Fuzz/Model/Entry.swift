import Foundation

// libFuzzer entry for the checkpoint readers (compiled by scripts/fuzz.sh together with
// Sources/LoraModel's file-format sources into one module; FUZZ_TARGET picks the target).

/// The input as a file: the readers mmap a path. One file per process, rewritten each run.
let fuzzScratch = (ProcessInfo.processInfo.environment["FUZZ_SCRATCH_DIR"] ?? "/tmp") + "/lora-gpu-fuzz-\(getpid())"

func withInputFile(_ data: UnsafeRawBufferPointer, ext: String, _ body: (String) -> Void) {
    let path = fuzzScratch + "." + ext
    _ = FileManager.default.createFile(atPath: path, contents: Data(data))
    body(path)
}

let fuzzTarget = ProcessInfo.processInfo.environment["FUZZ_TARGET"] ?? ""

@_cdecl("LLVMFuzzerTestOneInput")
public func LLVMFuzzerTestOneInput(_ bytes: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let data = UnsafeRawBufferPointer(start: bytes, count: count)
    switch fuzzTarget {
    case "safetensors": fuzzSafetensors(data)
    case "gguf": fuzzGGUF(data)
    default:
        fputs("FUZZ_TARGET must be safetensors or gguf (got '\(fuzzTarget)')\n", stderr)
        exit(2)
    }
    return 0
}
