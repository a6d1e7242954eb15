import Foundation
@testable import LoraText

/// A toy tokenizer for the dataset logic: every Unicode scalar is one token (id = scalar
/// value + 100), except the listed special strings (ids 0, 1, …), matched first; byte
/// offsets are exact. `bos` is added by its "post-processor" when asked.
struct ToyTokenizer: DataTokenizer {
    var specials: [String] = ["<s>", "</s>", "<|im_start|>", "<|im_end|>", "<|end|>", "<|user|>", "<|assistant|>", "<|endoftext|>"]
    var bos: Int? = 0
    var eos: Int? = 1
    var pad: Int? = 1
    var vocabularySize: Int { 0x110000 + 100 }
    var eosID: Int? { eos }
    var padID: Int? { pad }

    func encodeOffsets(_ text: String) throws -> [TokenOffset] {
        let b = Array(text.utf8)
        var out: [TokenOffset] = []
        var i = 0
        outer: while i < b.count {
            for (k, s) in specials.enumerated() {
                let sb = Array(s.utf8)
                if b.count - i >= sb.count, Array(b[i..<(i + sb.count)]) == sb {
                    out.append(TokenOffset(id: k, start: i, end: i + sb.count))
                    i += sb.count
                    continue outer
                }
            }
            let len = b[i] < 0x80 ? 1 : b[i] < 0xE0 ? 2 : b[i] < 0xF0 ? 3 : 4
            let scalar = String(decoding: b[i..<min(b.count, i + len)], as: UTF8.self).unicodeScalars.first!.value
            out.append(TokenOffset(id: Int(scalar) + 100, start: i, end: i + len))
            i += len
        }
        return out
    }
    func encodeIDs(_ text: String, addSpecialTokens: Bool) throws -> [Int] {
        let ids = try encodeOffsets(text).map(\.id)
        return addSpecialTokens && bos != nil ? [bos!] + ids : ids
    }
    func decodeIDs(_ ids: [Int]) -> String {
        ids.map { $0 < specials.count ? specials[$0] : String(UnicodeScalar(UInt32($0 - 100)).map(Character.init) ?? "?") }.joined()
    }
}

/// ChatML as Qwen2's template writes it (no default system turn).
struct ToyChatML: ConversationRenderer {
    var templateName = "toy-chatml"
    func renderConversation(_ m: [ChatMessage], addGenerationPrompt: Bool) throws -> String {
        var s = ""
        for x in m { s += "<|im_start|>\(x.role)\n\(x.content)<|im_end|>\n" }
        if addGenerationPrompt { s += "<|im_start|>assistant\n" }
        return s
    }
}

/// Phi-3's shape: eos_token written at the end when add_generation_prompt is false; raises on a
/// conversation that does not alternate, as Llama 2's template does.
struct ToyPhi3: ConversationRenderer {
    var templateName = "toy-phi3"
    func renderConversation(_ m: [ChatMessage], addGenerationPrompt: Bool) throws -> String {
        var s = ""
        for (i, x) in m.enumerated() {
            if i > 0, x.role == m[i - 1].role { throw TemplateRaised(message: "Conversation roles must alternate user/assistant/user/assistant/...") }
            s += "<|\(x.role)|>\n\(x.content)<|end|>\n"
        }
        s += addGenerationPrompt ? "<|assistant|>\n" : "<|endoftext|>"
        return s
    }
}

/// A template that rewrites earlier text: it numbers the turns in a header.
struct ToyRewriting: ConversationRenderer {
    var templateName = "toy-rewriting"
    func renderConversation(_ m: [ChatMessage], addGenerationPrompt: Bool) throws -> String {
        "turns=\(m.count)\n" + m.map { "\($0.role): \($0.content)\n" }.joined() + (addGenerationPrompt ? "assistant: " : "")
    }
}

func writeTemp(_ name: String, _ content: String) throws -> String {
    try writeTemp(name, Data(content.utf8))
}

func writeTemp(_ name: String, _ data: Data) throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lora-data-tests-\(getpid())")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    let url = dir.appendingPathComponent(name)
    try data.write(to: url)
    return url.path
}

/// The trained text of a sample under the toy tokenizer.
func trainedText(_ s: TokenizedSample, _ t: ToyTokenizer = ToyTokenizer()) -> [String] {
    var runs: [String] = [], cur: [Int] = []
    for l in s.labels {
        if l == -100 { if !cur.isEmpty { runs.append(t.decodeIDs(cur)); cur = [] } } else { cur.append(l) }
    }
    if !cur.isEmpty { runs.append(t.decodeIDs(cur)) }
    return runs
}

/// Qwen3's shape: the reply that ends the conversation gets an empty think block, earlier ones do not.
struct ToyThinkLast: ConversationRenderer {
    var templateName = "toy-think-last"
    func renderConversation(_ m: [ChatMessage], addGenerationPrompt: Bool) throws -> String {
        var s = ""
        for (i, x) in m.enumerated() {
            let think = x.role == "assistant" && i == m.count - 1 ? "<think></think>" : ""
            s += "<|im_start|>\(x.role)\n\(think)\(x.content)<|im_end|>\n"
        }
        if addGenerationPrompt { s += "<|im_start|>assistant\n" }
        return s
    }
}
