import Foundation
import LoraBase

// Runtime values of the Jinja interpreter, modelled on the Python objects Jinja2 works with:
// None, bool, int, float, str, list, tuple, dict (insertion-ordered, string keys), Undefined,
// namespace objects and callables. Strings index and measure by Unicode code point, as Python does.

/// A Jinja2 `Undefined`: printing gives "", most other uses raise an UndefinedError with `message`.
struct Undefined {
    /// Python's UndefinedError text, e.g. "'x' is undefined" or "'dict object' has no attribute 'y'".
    var message: String
}

/// Insertion-ordered dictionary (Python dict order). Keys are strings, or `DictKey`'s encoding
/// of the other hashable values a template may use as keys (`{0: 0, 512: 128}`).
typealias VDict = OrderedMap<Value>

/// Non-string dict keys as Python compares them (1 and 1.0 are one key), stored in the
/// string-keyed dict after a NUL, which no template string key starts with.
enum DictKey {
    static func encode(_ v: Value) throws -> String {
        switch v {
        case .string(let s): return s
        case .int(let i): return "\u{0}n\(i)"
        case .bool(let b): return b ? "\u{0}bTrue" : "\u{0}bFalse"  // (Python would also merge True with 1)
        case .double(let d) where d.rounded() == d && abs(d) < 9.0e15: return "\u{0}n\(Int(d))"
        case .double(let d): return "\u{0}f" + PyFormat.floatRepr(d)
        case .none: return "\u{0}none"
        default: throw RuntimeFailure("unhashable type: '\(v.typeName)'")
        }
    }

    static func decode(_ k: String) -> Value {
        guard k.hasPrefix("\u{0}") else { return .string(k) }
        if k == "\u{0}none" { return .none }
        let tag = k.unicodeScalars.dropFirst().first, body = String(k.unicodeScalars.dropFirst(2))
        if tag == "n", let i = Int(body) { return .int(i) }
        if tag == "b" { return .bool(body == "True") }
        return .double(Double(body) ?? .nan)
    }

    /// A dict's (key, value) tuples, as `dict.items()` gives them.
    static func items(_ d: VDict) -> [Value] { d.pairs.map { .tuple([decode($0.0), $0.1]) } }

    /// The key as json.dumps writes it (int, float, bool and None keys become strings).
    static func jsonKey(_ k: String) -> String {
        switch decode(k) {
        case .string(let s): return s
        case .none: return "null"
        case .int(let i): return String(i)
        case .bool(let b): return b ? "true" : "false"
        case let v: return v.pyRepr
        }
    }
}

/// `namespace(...)` objects: attributes assignable with `{% set ns.attr = value %}` from any scope.
final class Namespace {
    var attrs: VDict
    init(_ attrs: VDict) { self.attrs = attrs }
}

/// The `loop` variable of a for loop.
final class LoopInfo {
    let items: [Value]
    var index0 = 0
    let depth0: Int
    var lastChanged: [Value]?
    init(items: [Value], depth0: Int) {
        self.items = items
        self.depth0 = depth0
    }
}

/// Anything callable from a template: builtin functions, bound methods, macros.
final class Callable {
    let name: String
    let call: (_ args: CallArgs, _ interp: Interpreter) throws -> Value
    init(name: String, _ call: @escaping (CallArgs, Interpreter) throws -> Value) {
        self.name = name
        self.call = call
    }
}

/// Evaluated call arguments: positional then keyword (in call order).
struct CallArgs {
    var positional: [Value] = []
    var keyword: [(String, Value)] = []

    func kw(_ name: String) -> Value? { keyword.last { $0.0 == name }?.1 }

    /// Argument `name` given by position `index` or keyword, else nil.
    func arg(_ index: Int, _ name: String) -> Value? {
        if index < positional.count { return positional[index] }
        return kw(name)
    }

    /// Rejects arguments beyond the named ones (Python's TypeError for unexpected arguments).
    func check(_ fn: String, names: [String]) throws {
        if positional.count > names.count {
            throw RuntimeFailure("\(fn)() takes at most \(names.count) argument(s) (\(positional.count) given)")
        }
        for (k, _) in keyword where !names.contains(k) {
            throw RuntimeFailure("\(fn)() got an unexpected keyword argument '\(k)'")
        }
    }
}

/// A runtime error before it is given a source location.
struct RuntimeFailure: Error {
    var message: String
    var isRaised = false
    init(_ message: String, isRaised: Bool = false) {
        self.message = message
        self.isRaised = isRaised
    }
}

indirect enum Value {
    case undefined(Undefined)
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case list([Value])
    case tuple([Value])
    case dict(VDict)
    case namespace(Namespace)
    case loop(LoopInfo)
    case callable(Callable)

    static func undef(_ message: String) -> Value { .undefined(Undefined(message: message)) }

    init(json: JSONValue) {
        switch json {
        case .null: self = .none
        case .bool(let b): self = .bool(b)
        case .int(let i): self = .int(i)
        case .double(let d): self = .double(d)
        case .string(let s): self = .string(s)
        case .array(let a): self = .list(a.map(Value.init(json:)))
        case .object(let o): self = .dict(VDict(o.pairs.map { ($0.0, Value(json: $0.1)) }))
        }
    }

    var isUndefined: Bool { if case .undefined = self { return true }; return false }
    var isNone: Bool { if case .none = self { return true }; return false }

    /// Python's type name, for error messages ("str", "int", "list", ...).
    var typeName: String {
        switch self {
        case .undefined: return "Undefined"
        case .none: return "NoneType"
        case .bool: return "bool"
        case .int: return "int"
        case .double: return "float"
        case .string: return "str"
        case .list: return "list"
        case .tuple: return "tuple"
        case .dict: return "dict"
        case .namespace: return "Namespace"
        case .loop: return "LoopContext"
        case .callable: return "function"
        }
    }

    /// Jinja2's object_type_repr: "None" for None, else "<type> object".
    var objectTypeRepr: String { isNone ? "None" : "\(typeName) object" }

    /// Python truthiness.
    var truthy: Bool {
        switch self {
        case .undefined, .none: return false
        case .bool(let b): return b
        case .int(let i): return i != 0
        case .double(let d): return d != 0
        case .string(let s): return !s.isEmpty
        case .list(let a), .tuple(let a): return !a.isEmpty
        case .dict(let d): return d.count > 0
        case .namespace, .loop, .callable: return true
        }
    }

    /// Numeric view (bool is an int in Python).
    var number: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        case .bool(let b): return b ? 1 : 0
        default: return nil
        }
    }

    var intValue: Int? {
        switch self {
        case .int(let i): return i
        case .bool(let b): return b ? 1 : 0
        default: return nil
        }
    }

    /// Python str(value); Undefined prints as "".
    var pyStr: String {
        switch self {
        case .undefined: return ""
        case .string(let s): return s
        default: return pyRepr
        }
    }

    /// Python repr(value).
    var pyRepr: String {
        switch self {
        case .undefined: return ""
        case .none: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .int(let i): return String(i)
        case .double(let d): return PyFormat.floatRepr(d)
        case .string(let s): return PyFormat.stringRepr(s)
        case .list(let a): return "[" + a.map(\.pyRepr).joined(separator: ", ") + "]"
        case .tuple(let a):
            return a.count == 1 ? "(" + a[0].pyRepr + ",)" : "(" + a.map(\.pyRepr).joined(separator: ", ") + ")"
        case .dict(let d):
            return "{" + d.pairs.map { DictKey.decode($0.0).pyRepr + ": " + $0.1.pyRepr }.joined(separator: ", ") + "}"
        case .namespace(let ns):
            return "<Namespace " + Value.dict(ns.attrs).pyRepr + ">"
        case .loop: return "<LoopContext>"
        case .callable(let c): return "<function \(c.name)>"
        }
    }

    /// Items produced by iterating (Python iter()): strings give code points, dicts give keys,
    /// Undefined gives nothing.
    func iterate() throws -> [Value] {
        switch self {
        case .undefined: return []
        case .list(let a), .tuple(let a): return a
        case .dict(let d): return d.keys.map(DictKey.decode)
        case .string(let s): return s.unicodeScalars.map { .string(String($0)) }
        case .namespace, .loop, .callable, .none, .bool, .int, .double:
            throw RuntimeFailure("'\(typeName)' object is not iterable")
        }
    }

    /// Converts back to JSON (for tojson); Undefined and non-data objects are not serializable.
    func toJSON() throws -> JSONValue {
        switch self {
        case .none: return .null
        case .bool(let b): return .bool(b)
        case .int(let i): return .int(i)
        case .double(let d): return .double(d)
        case .string(let s): return .string(s)
        case .list(let a), .tuple(let a): return .array(try a.map { try $0.toJSON() })
        case .dict(let d): return .object(JSONObject(try d.pairs.map { (DictKey.jsonKey($0.0), try $0.1.toJSON()) }))
        case .undefined: throw RuntimeFailure("Object of type Undefined is not JSON serializable")
        case .namespace, .loop, .callable:
            throw RuntimeFailure("Object of type \(typeName) is not JSON serializable")
        }
    }
}

// MARK: - Python comparison semantics

extension Value {
    /// Python ==.
    static func pyEqual(_ a: Value, _ b: Value) -> Bool {
        switch (a, b) {
        case (.undefined, .undefined), (.none, .none): return true
        case (.string(let x), .string(let y)): return x.unicodeScalars.elementsEqual(y.unicodeScalars)
        case (.list(let x), .list(let y)), (.tuple(let x), .tuple(let y)):
            return x.count == y.count && zip(x, y).allSatisfy { pyEqual($0, $1) }
        case (.dict(let x), .dict(let y)):
            guard x.count == y.count else { return false }
            for (k, v) in x.pairs {
                guard let w = y[k], pyEqual(v, w) else { return false }
            }
            return true
        case (.namespace(let x), .namespace(let y)): return x === y
        case (.loop(let x), .loop(let y)): return x === y
        case (.callable(let x), .callable(let y)): return x === y
        default:
            if let x = a.number, let y = b.number {
                if case .int(let i) = a, case .int(let j) = b { return i == j }
                return x == y
            }
            return false
        }
    }

    /// Python <, >, <=, >= (as a three-way comparison); TypeError for unorderable types.
    static func pyCompare(_ a: Value, _ b: Value, op: String) throws -> Int {
        switch (a, b) {
        case (.string(let x), .string(let y)):
            return lexCompare(Array(x.unicodeScalars.map(\.value)), Array(y.unicodeScalars.map(\.value)))
        case (.list(let x), .list(let y)), (.tuple(let x), .tuple(let y)):
            for (p, q) in zip(x, y) where !pyEqual(p, q) {
                return try pyCompare(p, q, op: op)
            }
            return x.count < y.count ? -1 : (x.count > y.count ? 1 : 0)
        default:
            if case .int(let i) = a, case .int(let j) = b { return i < j ? -1 : (i > j ? 1 : 0) }
            if let x = a.number, let y = b.number { return x < y ? -1 : (x > y ? 1 : 0) }
            if case .undefined(let u) = a { throw RuntimeFailure(u.message) }
            if case .undefined(let u) = b { throw RuntimeFailure(u.message) }
            throw RuntimeFailure("'\(op)' not supported between instances of '\(a.typeName)' and '\(b.typeName)'")
        }
    }

    static func lexCompare(_ x: [UInt32], _ y: [UInt32]) -> Int {
        for (p, q) in zip(x, y) where p != q { return p < q ? -1 : 1 }
        return x.count < y.count ? -1 : (x.count > y.count ? 1 : 0)
    }
}
