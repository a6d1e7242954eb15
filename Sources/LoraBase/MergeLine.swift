/// A BPE merge in the legacy one-string form "a b": split at the one U+0020 scalar.
///
/// Split on Unicode scalars, not Characters: in "र ्" the space and the combining virama form one
/// grapheme, so `split(separator: " ")` on Characters sees no space at all (Hugging Face tokenizers
/// and llama.cpp both split on the scalar). Returns nil unless there is exactly one space.
public func splitLegacyMerge(_ s: String) -> (String, String)? {
    let scalars = s.unicodeScalars
    guard let sp = scalars.firstIndex(of: " ") else { return nil }
    let rest = scalars[scalars.index(after: sp)...]
    guard !rest.contains(" ") else { return nil }
    return (String(scalars[..<sp]), String(rest))
}
