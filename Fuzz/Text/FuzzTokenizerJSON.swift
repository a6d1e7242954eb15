import Foundation

/// tokenizer.json loading: parse the file into a tokenizer (model, normalizer, pre-tokenizer,
/// post-processor, decoder, added tokens), then encode, align and decode a fixed text with it.
func fuzzTokenizerJSON(_ data: UnsafeBufferPointer<UInt8>) {
    guard let tok = try? Tokenizer(tokenizerJSON: Data(data), source: "fuzz/tokenizer.json") else { return }
    let text = "Hello wörld, 12 345!\n  <|im_start|>user 你好 ▁x\u{301}"
    let ids = tok.encode(text)
    _ = tok.decode(ids)
    _ = tok.decode(ids, skipSpecialTokens: true)
    _ = try? TokenizerDataAdapter(tok).encodeOffsets(text)
    _ = tok.decode([0, 1, 2, -1, Int.max, Int.min])
}
