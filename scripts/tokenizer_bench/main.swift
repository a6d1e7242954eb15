// Tokenizer throughput, Swift side (built and run by scripts/bench_tokenizer.sh,
// compiled together with Sources/LoraText/Tokenizer/*.swift, -O).
// Reads corpus.bin and python.json written by scripts/bench_tokenizer.py, encodes
// every document with each tokenizer three times, checks the ids against the ones
// Python wrote (<name>/ids.bin), and prints MB/s and tokens/s by wall and CPU time.
// With --stages, also the CPU time of each encode stage.
import Foundation

let dir = CommandLine.arguments.count > 1 ? CommandLine.arguments[1] : "/tmp/tokbench"
guard let corpusData = FileManager.default.contents(atPath: dir + "/corpus.bin"),
      let pyData = FileManager.default.contents(atPath: dir + "/python.json"),
      let py = try JSONSerialization.jsonObject(with: pyData) as? [String: Any] else {
    print("run scripts/bench_tokenizer.py first")
    exit(1)
}
var docs: [String] = []
let bytes = [UInt8](corpusData)
var pos = 0
while pos + 4 <= bytes.count {
    let n = Int(bytes[pos]) | Int(bytes[pos + 1]) << 8 | Int(bytes[pos + 2]) << 16 | Int(bytes[pos + 3]) << 24
    pos += 4
    docs.append(String(decoding: bytes[pos..<pos + n], as: UTF8.self))
    pos += n
}
let mb = Double(docs.reduce(0) { $0 + $1.utf8.count }) / 1e6

/// Little-endian uint32s.
func readU32s(_ path: String) -> [UInt32] {
    guard let d = FileManager.default.contents(atPath: path) else { return [] }
    let b = [UInt8](d)
    var out: [UInt32] = []
    out.reserveCapacity(b.count / 4)
    var i = 0
    while i + 4 <= b.count {
        out.append(UInt32(b[i]) | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2]) << 16 | UInt32(b[i + 3]) << 24)
        i += 4
    }
    return out
}

/// CPU time of this process (the machine is shared: wall time is noisy).
func cpuSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

func firstDifference<T: Equatable>(_ a: [T], _ b: [T]) -> Int? {
    for i in 0..<min(a.count, b.count) where a[i] != b[i] { return i }
    return a.count == b.count ? nil : min(a.count, b.count)
}

print(String(format: "corpus: %d documents, %.2f MB", docs.count, mb))
for name in ["qwen2_32k", "llama2_32k"] {
    guard let r = py[name] as? [String: Any] else { continue }
    let t0 = Date()
    let tok = try Tokenizer.load(directory: dir + "/" + name)
    let loadS = Date().timeIntervalSince(t0)
    var times: [Double] = []
    var cpu: [Double] = []
    var all: [[Int]] = []
    for _ in 0..<3 {
        let s = Date()
        let c = cpuSeconds()
        all = docs.map { tok.encode($0) }
        times.append(Date().timeIntervalSince(s))
        cpu.append(cpuSeconds() - c)
    }
    let ntok = all.reduce(0) { $0 + $1.count }
    let pyTokens = r["tokens"] as? Int ?? -1
    // Python's ids, document by document.
    let flat = readU32s(dir + "/" + name + "/ids.bin")
    var expected: [[Int]] = []
    var k = 0
    while k < flat.count {
        let n = Int(flat[k])
        expected.append(flat[(k + 1)..<min(flat.count, k + 1 + n)].map { Int($0) })
        k += 1 + n
    }
    let same = expected == all
    let best = times.min() ?? 1
    let pyBest = r["best_s"] as? Double ?? 0
    let pyFirst = r["first_s"] as? Double ?? 0
    let pyBatch = r["batch_best_s"] as? Double ?? 0
    print(String(format: "%@: load %.2fs; ids %@ Python's (%d tokens)", name, loadS,
                 same ? "identical to" : "DIFFER from", ntok))
    let cpuBest = cpu.min() ?? 1
    let pyCPU = r["cpu_best_s"] as? Double ?? 0
    print(String(format: "  Swift  one by one: wall first %.2f MB/s, best %.2f MB/s, %.2f M tokens/s; CPU time best %.2f MB/s, %.2f M tokens/s",
                 mb / times[0], mb / best, Double(ntok) / best / 1e6, mb / cpuBest, Double(ntok) / cpuBest / 1e6))
    print(String(format: "  Python one by one: wall first %.2f MB/s, best %.2f MB/s, %.2f M tokens/s; CPU time best %.2f MB/s, %.2f M tokens/s; encode_batch wall %.2f MB/s",
                 mb / pyFirst, mb / pyBest, Double(pyTokens) / pyBest / 1e6, mb / pyCPU, Double(pyTokens) / pyCPU / 1e6, mb / pyBatch))
    // encodeWithOffsets (the loss mask's path): the same ids, with each token's byte range.
    var offCPU: [Double] = []
    var offIDs: [[Int]] = []
    for _ in 0..<2 {
        let c = cpuSeconds()
        offIDs = docs.map { tok.encodeWithOffsets($0, addSpecialTokens: true).map(\.id) }
        offCPU.append(cpuSeconds() - c)
    }
    print(String(format: "  Swift  encodeWithOffsets: CPU time best %.2f MB/s, %.2f M tokens/s; ids %@ encode's",
                 mb / (offCPU.min() ?? 1), Double(ntok) / (offCPU.min() ?? 1) / 1e6, offIDs == all ? "identical to" : "DIFFER from"))
    if !same, let i = firstDifference(expected, all) {
        let e = i < expected.count ? expected[i] : [], g = all[i]
        let j = firstDifference(e, g) ?? 0
        print("  first difference: document \(i), token \(j): python \(Array(e[max(0, j - 3)..<min(e.count, j + 5)])) swift \(Array(g[max(0, j - 3)..<min(g.count, j + 5)]))")
        print("  python tokens: \(e[max(0, j - 3)..<min(e.count, j + 5)].map { tok.token($0) ?? "?" })")
        print("  swift tokens:  \(g[max(0, j - 3)..<min(g.count, j + 5)].map { tok.token($0) ?? "?" })")
    }
}

// Where the time goes: the encode stages one by one (CPU seconds over the corpus).
if CommandLine.arguments.contains("--stages") {
    for name in ["qwen2_32k", "llama2_32k"] {
        let tok = try Tokenizer.load(directory: dir + "/" + name)
        _ = docs.map { tok.encode($0) }  // warm the cache
        var c = cpuSeconds()
        let scal = docs.map { Array($0.unicodeScalars) }
        let tScalars = cpuSeconds() - c
        c = cpuSeconds()
        let splits = scal.map { tok.rawMatcher.split($0) }
        let tAdded = cpuSeconds() - c
        c = cpuSeconds()
        let normed = scal.map { tok.normalizer?.normalize($0) ?? $0 }
        let tNorm = cpuSeconds() - c
        c = cpuSeconds()
        let words = normed.map { tok.preTokenizer?.preTokenize([TextPiece(text: $0, atStart: true)]) ?? [TextPiece(text: $0, atStart: true)] }
        let tPre = cpuSeconds() - c
        c = cpuSeconds()
        var n = 0
        for ws in words { var ids: [Int] = []; for w in ws { tok.model.tokenize(w.text, into: &ids) }; n += ids.count }
        let tModel = cpuSeconds() - c
        print(String(format: "%@ stages (CPU s): scalars %.3f, added-token split %.3f, normalize %.3f, pre-tokenize %.3f, model %.3f (%d splits, %d tokens)",
                     name, tScalars, tAdded, tNorm, tPre, tModel, splits.count, n))
    }
}
