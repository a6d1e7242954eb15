import Foundation
import LoraBase

/// A post-processor wraps the ids of one sequence, or joins a pair (sequence
/// A, sequence B) with its special tokens.
protocol PostProcessor {
    func process(_ a: [Int], pair b: [Int]?, addSpecialTokens: Bool) -> [Int]
    /// Whether it leaves ids as they are (ByteLevel): a pair is then A followed by B.
    var isIdentity: Bool { get }
    /// ByteLevel / RobertaProcessing with trim_offsets: offsets lose the spaces their tokens start
    /// or end with (`add_prefix_space`: a first token's single leading space is kept).
    var offsetTrim: OffsetTrim? { get }
}

struct OffsetTrim {
    let addPrefixSpace: Bool

    /// `tokenizers`' process_offsets: `token` is the token's string (byte-level alphabet), `range`
    /// its character range; `index` its place in the sequence.
    func trim(_ range: Range<Int>, token: String, index: Int) -> Range<Int> {
        func isSpace(_ c: Unicode.Scalar) -> Bool { c == "\u{120}" || c.properties.isWhitespace }
        var leading = token.unicodeScalars.prefix(while: isSpace).count
        let trailing = token.unicodeScalars.reversed().prefix(while: isSpace).count
        var lo = range.lowerBound, hi = range.upperBound
        if leading > 0 {
            if (index == 0 || lo == 0) && addPrefixSpace && leading == 1 { leading = 0 }
            lo = min(lo + leading, hi)
        }
        if trailing > 0 && hi >= trailing { hi = max(hi - trailing, lo) }
        return lo..<hi
    }
}

extension PostProcessor {
    func process(_ ids: [Int], addSpecialTokens: Bool) -> [Int] { process(ids, pair: nil, addSpecialTokens: addSpecialTokens) }
    var isIdentity: Bool { false }
    var offsetTrim: OffsetTrim? { nil }
    /// The special tokens it adds to one sequence, or to a pair (what truncation leaves room for).
    func addedTokens(pair: Bool) -> Int { process([], pair: pair ? [] : nil, addSpecialTokens: true).count }
}

/// TemplateProcessing: special-token pieces, "$A" and (in the pair template) "$B".
struct TemplatePostProcessor: PostProcessor {
    enum Item { case sequenceA, sequenceB, special([Int]) }
    let single: [Item]
    /// The pair template; nil when the tokenizer.json has none (then A's and B's single templates follow each other).
    let pair: [Item]?

    func process(_ a: [Int], pair b: [Int]?, addSpecialTokens: Bool) -> [Int] {
        guard let b else { return render(single, a, []) }
        guard let pair else { return render(single, a, []) + render(single, b, []) }
        return render(pair, a, b)

        func render(_ items: [Item], _ a: [Int], _ b: [Int]) -> [Int] {
            var out: [Int] = []
            out.reserveCapacity(a.count + b.count + 4)
            for item in items {
                switch item {
                case .sequenceA: out.append(contentsOf: a)
                case .sequenceB: out.append(contentsOf: b)
                case .special(let s): if addSpecialTokens { out.append(contentsOf: s) }
                }
            }
            return out
        }
    }
}

/// BertProcessing ([CLS] A [SEP] B [SEP]) / RobertaProcessing (<s> A </s></s> B </s>).
struct WrapPostProcessor: PostProcessor {
    let prefix: Int
    let suffix: Int
    let roberta: Bool
    var offsetTrim: OffsetTrim? = nil

    func process(_ a: [Int], pair b: [Int]?, addSpecialTokens: Bool) -> [Int] {
        guard addSpecialTokens else { return a + (b ?? []) }
        guard let b else { return [prefix] + a + [suffix] }
        return [prefix] + a + [suffix] + (roberta ? [suffix] : []) + b + [suffix]
    }
}

/// ByteLevel only trims offsets: ids unchanged (a pair: A then B).
struct IdentityPostProcessor: PostProcessor {
    var offsetTrim: OffsetTrim? = nil
    func process(_ a: [Int], pair b: [Int]?, addSpecialTokens: Bool) -> [Int] { a + (b ?? []) }
    var isIdentity: Bool { true }
}

/// Each step in turn; the first that is not an identity joins a pair.
struct SequencePostProcessor: PostProcessor {
    let steps: [PostProcessor]

    func process(_ a: [Int], pair b: [Int]?, addSpecialTokens: Bool) -> [Int] {
        var t = a, rest = b
        for s in steps where !(s.isIdentity && rest != nil) {
            t = s.process(t, pair: rest, addSpecialTokens: addSpecialTokens)
            rest = nil
        }
        return rest.map { t + $0 } ?? t
    }
    var isIdentity: Bool { steps.allSatisfy(\.isIdentity) }
    var offsetTrim: OffsetTrim? { steps.lazy.compactMap(\.offsetTrim).first }
}

/// trim_offsets / add_prefix_space of a ByteLevel or RobertaProcessing post-processor (both default true).
private func offsetTrim(_ json: JSONValue) -> OffsetTrim? {
    (json["trim_offsets"]?.bool ?? true) ? OffsetTrim(addPrefixSpace: json["add_prefix_space"]?.bool ?? true) : nil
}

func makePostProcessor(_ json: JSONValue, context: String) throws -> PostProcessor? {
    guard let type = try componentType(json, context: context) else { return nil }
    switch type {
    case "ByteLevel": return IdentityPostProcessor(offsetTrim: offsetTrim(json))
    case "TemplateProcessing":
        var specials: [String: [Int]] = [:]
        if let pairs = json["special_tokens"]?.object?.pairs {
            for (name, value) in pairs {
                guard let idsJSON = value["ids"]?.array else {
                    throw TokenizerError("\(context).special_tokens[\(name.debugDescription)].ids is missing")
                }
                var ids: [Int] = []
                for v in idsJSON {
                    guard let i = v.integral, i >= 0 else {
                        throw TokenizerError("\(context).special_tokens[\(name.debugDescription)].ids holds a bad id")
                    }
                    ids.append(i)
                }
                specials[name] = ids
            }
        }
        func template(_ key: String) throws -> [TemplatePostProcessor.Item]? {
            guard let pieces = json[key]?.array else { return nil }
            var items: [TemplatePostProcessor.Item] = []
            for (i, piece) in pieces.enumerated() {
                if let seq = piece["Sequence"] {
                    switch seq["id"]?.string {
                    case "A": items.append(.sequenceA)
                    case "B" where key == "pair": items.append(.sequenceB)
                    default: throw TokenizerError("\(context).\(key)[\(i)]: sequence \(seq["id"]?.shortDescription ?? "?") "
                                                  + "is not allowed in a \(key) template")
                    }
                } else if let sp = piece["SpecialToken"], let name = sp["id"]?.string {
                    guard let ids = specials[name] else {
                        throw TokenizerError("\(context).\(key)[\(i)]: special token \(name.debugDescription) is not in special_tokens")
                    }
                    items.append(.special(ids))
                } else {
                    throw TokenizerError("\(context).\(key)[\(i)] must be {\"Sequence\": ...} or {\"SpecialToken\": ...}")
                }
            }
            return items
        }
        guard let single = try template("single") else { throw TokenizerError("\(context).single is missing") }
        return TemplatePostProcessor(single: single, pair: try template("pair"))
    case "BertProcessing", "RobertaProcessing":
        func idOf(_ key: String) throws -> Int {
            guard let pair = json[key]?.array, pair.count == 2, let id = pair[1].integral, id >= 0 else {
                throw TokenizerError("\(context).\(key) must be [token, id]")
            }
            return id
        }
        return WrapPostProcessor(prefix: try idOf("cls"), suffix: try idOf("sep"), roberta: type == "RobertaProcessing",
                                 offsetTrim: type == "RobertaProcessing" ? offsetTrim(json) : nil)
    case "Sequence":
        let steps = try sequenceSteps(json, "processors", context: context, makePostProcessor)
        return SequencePostProcessor(steps: steps)
    default:
        throw TokenizerError("\(context).type '\(type)' is not supported yet")
    }
}
