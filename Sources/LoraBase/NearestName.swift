import Foundation

/// The did-you-mean of unknown keys (settings files, flags, adapter_config.json).
public enum NearestName {
    /// The known name nearest to `key` by edit distance (case and `-`/`_` ignored): only a near miss
    /// (a third of the key's letters at most), so `bf16` suggests nothing rather than `bias`.
    public static func closest(_ key: String, among known: [String]) -> String? {
        func distance(_ a: [Character], _ b: [Character]) -> Int {
            if a.isEmpty { return b.count }
            if b.isEmpty { return a.count }
            var prev = Array(0...b.count)
            for i in 1...a.count {
                var cur = [i] + Array(repeating: 0, count: b.count)
                for j in 1...b.count {
                    cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
                }
                prev = cur
            }
            return prev[b.count]
        }
        let k = Array(key.lowercased().replacingOccurrences(of: "-", with: "_"))
        let scored = known.map { ($0, distance(k, Array($0.lowercased().replacingOccurrences(of: "-", with: "_")))) }
            .min { ($0.1, $0.0) < ($1.1, $1.0) }
        guard let best = scored, best.1 <= max(1, k.count / 3) else { return nil }
        return best.0
    }

    /// "; did you mean 'x'?" or "".
    public static func suggestion(_ key: String, among known: [String]) -> String {
        closest(key, among: known).map { "; did you mean '\($0)'?" } ?? ""
    }
}
