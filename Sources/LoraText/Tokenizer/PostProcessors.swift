import Foundation
import LoraBase

/// A post-processor wraps the ids of one sequence (pairs are not supported).
protocol PostProcessor {
    func process(_ ids: [Int], addSpecialTokens: Bool) -> [Int]
}

/// TemplateProcessing's single template: special-token pieces and "$A".
struct TemplatePostProcessor: PostProcessor {
    enum Item { case sequence, special([Int]) }
    let single: [Item]

    func process(_ ids: [Int], addSpecialTokens: Bool) -> [Int] {
        var out: [Int] = []
        out.reserveCapacity(ids.count + 4)
        for item in single {
            switch item {
            case .sequence: out.append(contentsOf: ids)
            case .special(let s): if addSpecialTokens { out.append(contentsOf: s) }
            }
        }
        return out
    }
}

/// BertProcessing / RobertaProcessing: prefix and suffix ids.
struct WrapPostProcessor: PostProcessor {
    let prefix: Int
    let suffix: Int

    func process(_ ids: [Int], addSpecialTokens: Bool) -> [Int] {
        addSpecialTokens ? [prefix] + ids + [suffix] : ids
    }
}

/// ByteLevel only trims offsets: ids unchanged.
struct IdentityPostProcessor: PostProcessor {
    func process(_ ids: [Int], addSpecialTokens: Bool) -> [Int] { ids }
}

struct SequencePostProcessor: PostProcessor {
    let steps: [PostProcessor]

    func process(_ ids: [Int], addSpecialTokens: Bool) -> [Int] {
        var t = ids
        for s in steps { t = s.process(t, addSpecialTokens: addSpecialTokens) }
        return t
    }
}

func makePostProcessor(_ json: JSONValue, context: String) throws -> PostProcessor? {
    guard let type = try componentType(json, context: context) else { return nil }
    switch type {
    case "ByteLevel": return IdentityPostProcessor()
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
        guard let single = json["single"]?.array else { throw TokenizerError("\(context).single is missing") }
        var items: [TemplatePostProcessor.Item] = []
        for (i, piece) in single.enumerated() {
            if let seq = piece["Sequence"] {
                guard seq["id"]?.string == "A" else {
                    throw TokenizerError("\(context).single[\(i)]: only sequence A is supported in a single template")
                }
                items.append(.sequence)
            } else if let sp = piece["SpecialToken"], let name = sp["id"]?.string {
                guard let ids = specials[name] else {
                    throw TokenizerError("\(context).single[\(i)]: special token \(name.debugDescription) is not in special_tokens")
                }
                items.append(.special(ids))
            } else {
                throw TokenizerError("\(context).single[\(i)] must be {\"Sequence\": ...} or {\"SpecialToken\": ...}")
            }
        }
        return TemplatePostProcessor(single: items)
    case "BertProcessing", "RobertaProcessing":
        func idOf(_ key: String) throws -> Int {
            guard let pair = json[key]?.array, pair.count == 2, let id = pair[1].integral, id >= 0 else {
                throw TokenizerError("\(context).\(key) must be [token, id]")
            }
            return id
        }
        return WrapPostProcessor(prefix: try idOf("cls"), suffix: try idOf("sep"))
    case "Sequence":
        let steps = try sequenceSteps(json, "processors", context: context, makePostProcessor)
        return SequencePostProcessor(steps: steps)
    default:
        throw TokenizerError("\(context).type '\(type)' is not supported yet")
    }
}
