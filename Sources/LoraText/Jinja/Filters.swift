import Foundation
import LoraBase

// Jinja2's builtin filters and tests (the subset chat templates use), with transformers' tojson.

extension Builtins {
    static let filterNames: Set<String> = [
        "abs", "attr", "capitalize", "count", "d", "default", "dictsort", "e", "escape", "first", "float", "format",
        "indent", "int", "items", "join", "last", "length", "list", "lower", "map", "max", "min", "reject",
        "rejectattr", "replace", "reverse", "round", "safe", "select", "selectattr", "sort", "string", "sum",
        "title", "tojson", "trim", "unique", "upper", "wordcount", "batch", "center", "truncate", "forceescape",
    ]

    static let testNames: Set<String> = [
        "boolean", "callable", "defined", "divisibleby", "eq", "equalto", "==", "escaped", "even", "false", "filter",
        "float", "ge", ">=", "gt", ">", "greaterthan", "in", "integer", "iterable", "le", "<=", "lower", "lt", "<",
        "lessthan", "mapping", "ne", "!=", "none", "number", "odd", "sameas", "sequence", "string", "test", "true",
        "undefined", "upper",
    ]

    static func requireDefined(_ v: Value) throws {
        if case .undefined(let u) = v { throw RuntimeFailure(u.message) }
    }

    /// Attribute lookup used by map/selectattr/sort/...: dotted path, integer parts index.
    static func attribute(_ v: Value, _ path: String) throws -> Value {
        var cur = v
        for part in path.split(separator: ".", omittingEmptySubsequences: false) {
            if let i = Int(part) {
                cur = try getitem(cur, .int(i))
            } else {
                cur = try getitem(cur, .string(String(part)))
            }
            if cur.isUndefined { return cur }
        }
        return cur
    }

    static func filter(_ name: String, _ v: Value, _ args: CallArgs, _ interp: Interpreter) throws -> Value {
        switch name {
        case "abs":
            switch v {
            case .int(let i): return i == Int.min ? .double(-Double(i)) : .int(abs(i))
            case .bool(let b): return .int(b ? 1 : 0)
            case .double(let d): return .double(abs(d))
            default:
                try requireDefined(v)
                throw RuntimeFailure("bad operand type for abs(): '\(v.typeName)'")
            }
        case "attr":
            guard case .string(let n)? = args.arg(0, "name") else { throw RuntimeFailure("attr() needs a name") }
            return try getattr(v, n)
        case "capitalize":
            return .string(pyCapitalize(v.pyStr))
        case "count", "length":
            switch v {
            case .undefined: return .int(0)
            case .string(let s): return .int(s.unicodeScalars.count)
            case .list(let a), .tuple(let a): return .int(a.count)
            case .dict(let d): return .int(d.count)
            case .namespace(let ns): return .int(ns.attrs.count)
            default: throw RuntimeFailure("object of type '\(v.typeName)' has no len()")
            }
        case "d", "default":
            let def = args.arg(0, "default_value") ?? .string("")
            let boolean = args.arg(1, "boolean")?.truthy ?? false
            if v.isUndefined || (boolean && !v.truthy) { return def }
            return v
        case "dictsort":
            guard case .dict(let d) = v else { throw RuntimeFailure("dictsort filter requires a mapping, got \(v.typeName)") }
            let caseSensitive = args.arg(0, "case_sensitive")?.truthy ?? false
            let byValue: Bool
            switch args.arg(1, "by") {
            case .string("value")?: byValue = true
            case .string("key")?, nil: byValue = false
            default: throw RuntimeFailure("You can only sort by either \"key\" or \"value\"")
            }
            let reverse = args.arg(2, "reverse")?.truthy ?? false
            let pairs = try stableSort(DictKey.items(d), reverse: reverse) { item in
                guard case .tuple(let kv) = item else { return item }
                return foldCase(byValue ? kv[1] : kv[0], caseSensitive)
            }
            return .list(pairs)
        case "e", "escape", "forceescape":
            return .string(Escaping.html(v.pyStr))
        case "first":
            let items = try v.iterate()
            return items.first ?? .undef("No first item, sequence was empty.")
        case "last":
            let items = try v.iterate()
            return items.last ?? .undef("No last item, sequence was empty.")
        case "float":
            let def = args.arg(0, "default") ?? .double(0)
            switch v {
            case .double: return v
            case .int(let i): return .double(Double(i))
            case .bool(let b): return .double(b ? 1 : 0)
            case .string(let s):
                let t = PyFormat.strip(s, chars: nil, left: true, right: true).replacingOccurrences(of: "_", with: "")
                if let d = Double(t), !t.isEmpty, !t.hasPrefix("0x") { return .double(d) }
                switch t.lowercased() {
                case "inf", "+inf", "infinity", "+infinity": return .double(.infinity)
                case "-inf", "-infinity": return .double(-.infinity)
                case "nan", "+nan", "-nan": return .double(.nan)
                default: return def
                }
            default: return def
            }
        case "format":
            return .string(try pyPercentFormat(v.pyStr, args))
        case "indent":
            let width = args.arg(0, "width") ?? .int(4)
            let first = args.arg(1, "first")?.truthy ?? false
            let blank = args.arg(2, "blank")?.truthy ?? false
            let ind: String
            if case .string(let w) = width {
                ind = w
            } else {
                let n = max(0, width.intValue ?? 4)
                if n > 10_000 { throw RuntimeFailure("indent width is too large") }
                ind = String(repeating: " ", count: n)
            }
            let s = v.pyStr + "\n"
            var rv: String
            if blank {
                rv = PyFormat.splitlines(s).joined(separator: "\n" + ind)
            } else {
                var lines = PyFormat.splitlines(s)
                rv = lines.isEmpty ? "" : lines.removeFirst()
                if !lines.isEmpty {
                    rv += "\n" + lines.map { $0.isEmpty ? $0 : ind + $0 }.joined(separator: "\n")
                }
            }
            if first { rv = ind + rv }
            return .string(rv)
        case "int":
            let def = args.arg(0, "default") ?? .int(0)
            switch v {
            case .int: return v
            case .bool(let b): return .int(b ? 1 : 0)
            case .double(let d):
                guard d.isFinite, let i = Int(exactly: d.rounded(.towardZero)) else { return def }
                return .int(i)
            case .string(let s):
                let t = PyFormat.strip(s, chars: nil, left: true, right: true).replacingOccurrences(of: "_", with: "")
                if let i = Int(t) { return .int(i) }
                if let d = Double(t), d.isFinite, let i = Int(exactly: d.rounded(.towardZero)) { return .int(i) }
                return def
            default: return def
            }
        case "items":
            switch v {
            case .undefined: return .list([])
            case .dict(let d): return .list(DictKey.items(d))
            default: throw RuntimeFailure("Can only get item pairs from a mapping.")
            }
        case "join":
            let sep = args.arg(0, "d")?.pyStr ?? ""
            var items = try v.iterate()
            if case .string(let attr)? = args.arg(1, "attribute") {
                items = try items.map { try attribute($0, attr) }
            }
            return .string(items.map(\.pyStr).joined(separator: sep))
        case "list":
            return .list(try v.iterate())
        case "lower":
            return .string(v.pyStr.lowercased())
        case "upper":
            return .string(v.pyStr.uppercased())
        case "title":
            return .string(jinjaTitle(v.pyStr))
        case "trim":
            let chars = try str(args.arg(0, "chars"), "trim chars")
            return .string(PyFormat.strip(v.pyStr, chars: chars, left: true, right: true))
        case "map":
            // Jinja2's map, select, reject, selectattr, rejectattr iterate only a true sequence
            // (`if seq:`): none, false or an empty one gives nothing.
            let items = v.truthy ? try v.iterate() : []
            if case .string(let attr)? = args.kw("attribute") {
                let def = args.kw("default")
                return .list(try items.map {
                    let x = try attribute($0, attr)
                    if x.isUndefined, let def { return def }
                    return x
                })
            }
            guard case .string(let fname)? = args.positional.first else {
                throw RuntimeFailure("map requires a filter argument")
            }
            guard filterNames.contains(fname) else { throw RuntimeFailure("No filter named '\(fname)'.") }
            var rest = args
            rest.positional.removeFirst()
            return .list(try items.map { try filter(fname, $0, rest, interp) })
        case "select", "reject", "selectattr", "rejectattr":
            let items = v.truthy ? try v.iterate() : []
            let byAttr = name.hasSuffix("attr")
            var rest = args.positional
            var attr: String?
            if byAttr {
                guard case .string(let a)? = rest.first else { throw RuntimeFailure("\(name) requires an attribute name") }
                attr = a
                rest.removeFirst()
            }
            var testName: String?
            if !rest.isEmpty {
                guard case .string(let t) = rest.removeFirst() else { throw RuntimeFailure("test name must be a string") }
                guard testNames.contains(t) else { throw RuntimeFailure("No test named '\(t)'.") }
                testName = t
            }
            let wantTrue = name.hasPrefix("select")
            let testArgs = CallArgs(positional: rest, keyword: args.keyword)
            return .list(try items.filter { item in
                let x = try attr.map { try attribute(item, $0) } ?? item
                let r = try testName.map { try test($0, x, testArgs, interp) } ?? x.truthy
                return r == wantTrue
            })
        case "max", "min":
            let caseSensitive = args.arg(0, "case_sensitive")?.truthy ?? false
            let attr = args.arg(1, "attribute")
            var items = try v.iterate()
            if items.isEmpty { return .undef("No aggregated item, sequence was empty.") }
            items = try stableSort(items, reverse: false) { item in
                let x = try attr.map { try attribute(item, $0.pyStr) } ?? item
                return foldCase(x, caseSensitive)
            }
            return name == "min" ? items.first! : items.last!
        case "replace":
            guard case .string(let old)? = args.arg(0, "old"), case .string(let new)? = args.arg(1, "new") else {
                throw RuntimeFailure("replace() arguments must be str")
            }
            let count = args.arg(2, "count")?.intValue ?? -1
            return .string(pyReplace(v.pyStr, old, new, count: count))
        case "reverse":
            switch v {
            case .string(let s): return .string(String(String.UnicodeScalarView(s.unicodeScalars.reversed())))
            default: return .list(try v.iterate().reversed())
            }
        case "round":
            let precision = args.arg(0, "precision")?.intValue ?? 0
            let method = args.arg(1, "method")?.pyStr ?? "common"
            guard let x = v.number else {
                try requireDefined(v)
                throw RuntimeFailure("type \(v.typeName) doesn't define __round__ method")
            }
            let scale = pow(10.0, Double(precision))
            var r: Double
            switch method {
            case "common": r = (x * scale).rounded(.toNearestOrEven) / scale
            case "ceil": r = (x * scale).rounded(.up) / scale
            case "floor": r = (x * scale).rounded(.down) / scale
            default: throw RuntimeFailure("method must be common, ceil or floor")
            }
            if method == "common", case .int = v { return v }
            if r == 0 { r = 0 * (x < 0 ? -1 : 1) }
            return .double(r)
        case "safe", "string":
            if case .string = v { return v }
            return .string(v.pyStr)
        case "sort":
            let reverse = args.arg(0, "reverse")?.truthy ?? false
            let caseSensitive = args.arg(1, "case_sensitive")?.truthy ?? false
            let attr = args.arg(2, "attribute")
            return .list(try stableSort(try v.iterate(), reverse: reverse) { item in
                let x = try attr.map { try attribute(item, $0.pyStr) } ?? item
                return foldCase(x, caseSensitive)
            })
        case "sum":
            var items = try v.iterate()
            if case .string(let attr)? = args.arg(0, "attribute") { items = try items.map { try attribute($0, attr) } }
            var total = args.arg(1, "start") ?? .int(0)
            for x in items { total = try binary("+", total, x) }
            return total
        case "tojson":
            return .string(try toJSONString(v, args))
        case "unique":
            let caseSensitive = args.arg(0, "case_sensitive")?.truthy ?? false
            let attr = args.arg(1, "attribute")
            var seen: [Value] = []
            var out: [Value] = []
            for item in try v.iterate() {
                let key = foldCase(try attr.map { try attribute(item, $0.pyStr) } ?? item, caseSensitive)
                if !seen.contains(where: { Value.pyEqual($0, key) }) {
                    seen.append(key)
                    out.append(item)
                }
            }
            return .list(out)
        case "wordcount":
            var n = 0
            var inWord = false
            for u in v.pyStr.unicodeScalars {
                let w = u == "_" || u.properties.isAlphabetic || u.properties.numericType != nil
                if w && !inWord { n += 1 }
                inWord = w
            }
            return .int(n)
        case "batch":
            guard let size = args.arg(0, "linecount")?.intValue, size > 0 else { throw RuntimeFailure("batch needs a positive size") }
            let items = try v.iterate()
            var out: [Value] = []
            var i = 0
            while i < items.count {
                var chunk = Array(items[i..<min(i + size, items.count)])
                if chunk.count < size, let fill = args.arg(1, "fill_with") {
                    chunk += Array(repeating: fill, count: size - chunk.count)
                }
                out.append(.list(chunk))
                i += size
            }
            return .list(out)
        case "center":
            let width = args.arg(0, "width")?.intValue ?? 80
            return try stringMethod(v.pyStr, "center", CallArgs(positional: [.int(width)]))
        case "truncate":
            let s = Array(v.pyStr.unicodeScalars)
            let length = args.arg(0, "length")?.intValue ?? 255
            let killwords = args.arg(1, "killwords")?.truthy ?? false
            let end = args.arg(2, "end")?.pyStr ?? "..."
            let leeway = args.arg(3, "leeway")?.intValue ?? 5
            if s.count <= length + leeway { return .string(v.pyStr) }
            let cut = max(0, length - end.unicodeScalars.count)
            var head = String(String.UnicodeScalarView(s[0..<min(cut, s.count)]))
            if !killwords, let sp = head.lastIndex(of: " ") { head = String(head[..<sp]) }
            return .string(head + end)
        default:
            throw RuntimeFailure("unknown filter '\(name)'")
        }
    }

    static func foldCase(_ v: Value, _ caseSensitive: Bool) -> Value {
        if !caseSensitive, case .string(let s) = v { return .string(s.lowercased()) }
        return v
    }

    /// Stable sort by key with Python ordering (TypeError for unorderable keys).
    static func stableSort(_ items: [Value], reverse: Bool, key: (Value) throws -> Value) throws -> [Value] {
        let keyed = try items.enumerated().map { ($0.offset, try key($0.element), $0.element) }
        var failure: Error?
        let sorted = keyed.sorted { a, b in
            do {
                let c = try Value.pyCompare(a.1, b.1, op: "<")
                if c != 0 { return reverse ? c > 0 : c < 0 }
            } catch {
                failure = error
            }
            return a.0 < b.0
        }
        if let failure { throw failure }
        return sorted.map(\.2)
    }

    /// Jinja2's title filter: capitalize each word, words split after runs of `-`, whitespace, ( { [ <.
    static func jinjaTitle(_ s: String) -> String {
        var out = ""
        var atStart = true
        for u in s.unicodeScalars {
            let sepChar = u == "-" || u == "(" || u == "{" || u == "[" || u == "<" || PyFormat.isSpace(u)
            if sepChar {
                out.unicodeScalars.append(u)
                atStart = true
            } else {
                out += atStart ? String(u).uppercased() : String(u).lowercased()
                atStart = false
            }
        }
        return out
    }

    /// printf-style formatting (`"%s: %d" % (a, b)` and the format filter): conversions s r d i f
    /// with optional `-`/`0` flags, width and precision; `%(name)s` takes keys from a dict argument.
    static func pyPercentFormat(_ fmt: String, _ args: CallArgs) throws -> String {
        var out = ""
        var next = 0
        let mapping: VDict? = {
            if args.positional.count == 1, case .dict(let d) = args.positional[0] { return d }
            return nil
        }()
        let cs = Array(fmt.unicodeScalars)
        var i = 0
        func digits() -> Int? {
            var v: Int?
            while i < cs.count, let d = Int(String(cs[i])), cs[i].isASCII {
                v = (v ?? 0) * 10 + d
                if v! > 10_000 { v = 10_000 }
                i += 1
            }
            return v
        }
        while i < cs.count {
            guard cs[i] == "%" else {
                out.unicodeScalars.append(cs[i])
                i += 1
                continue
            }
            i += 1
            guard i < cs.count else { throw RuntimeFailure("incomplete format") }
            if cs[i] == "%" {
                out += "%"
                i += 1
                continue
            }
            var value: Value?
            if cs[i] == "(" {
                guard let close = cs[i...].firstIndex(of: ")") else { throw RuntimeFailure("incomplete format key") }
                let key = String(String.UnicodeScalarView(cs[(i + 1)..<close]))
                guard let mapping else { throw RuntimeFailure("format requires a mapping") }
                guard let v = mapping[key] else { throw RuntimeFailure("KeyError: '\(key)'") }
                value = v
                i = close + 1
            }
            var leftAlign = false
            var zeroPad = false
            while i < cs.count, cs[i] == "-" || cs[i] == "0" || cs[i] == " " || cs[i] == "+" || cs[i] == "#" {
                if cs[i] == "-" { leftAlign = true }
                if cs[i] == "0" { zeroPad = true }
                i += 1
            }
            let width = digits() ?? 0
            var precision: Int?
            if i < cs.count, cs[i] == "." {
                i += 1
                precision = digits() ?? 0
            }
            guard i < cs.count else { throw RuntimeFailure("incomplete format") }
            let conv = cs[i]
            i += 1
            if value == nil {
                guard next < args.positional.count else { throw RuntimeFailure("not enough arguments for format string") }
                value = args.positional[next]
                next += 1
            }
            let v = value!
            var text: String
            switch conv {
            case "s": text = v.pyStr
            case "r": text = v.pyRepr
            case "d", "i":
                guard let n = v.number, let k = Int(exactly: n.rounded(.towardZero)) else {
                    throw RuntimeFailure("%\(conv) format: a real number is required, not \(v.typeName)")
                }
                text = String(k)
            case "f", "F":
                guard let n = v.number else { throw RuntimeFailure("must be real number, not \(v.typeName)") }
                text = String(format: "%.\(precision ?? 6)f", n)
            default:
                throw RuntimeFailure("unsupported format character '\(conv)'")
            }
            if conv == "s" || conv == "r", let precision { text = String(String.UnicodeScalarView(text.unicodeScalars.prefix(precision))) }
            let pad = width - text.unicodeScalars.count
            if pad > 0 {
                if leftAlign {
                    text += String(repeating: " ", count: pad)
                } else if zeroPad && conv != "s" && conv != "r" {
                    let neg = text.hasPrefix("-")
                    text = (neg ? "-" : "") + String(repeating: "0", count: pad) + (neg ? String(text.dropFirst()) : text)
                } else {
                    text = String(repeating: " ", count: pad) + text
                }
            }
            out += text
        }
        if mapping == nil && next < args.positional.count {
            throw RuntimeFailure("not all arguments converted during string formatting")
        }
        return out
    }

    /// transformers' tojson: json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False).
    static func toJSONString(_ v: Value, _ args: CallArgs) throws -> String {
        let ensureASCII = args.arg(0, "ensure_ascii")?.truthy ?? false
        let indentArg = args.arg(1, "indent")
        let sepArg = args.arg(2, "separators")
        let sortKeys = args.arg(3, "sort_keys")?.truthy ?? false
        var indent: String?
        switch indentArg {
        case nil, .none?: indent = nil
        case .string(let s)?: indent = s
        case let x?:
            guard let n = x.intValue else { throw RuntimeFailure("indent must be an int or a string") }
            if n > 10_000 { throw RuntimeFailure("indent is too large") }
            indent = String(repeating: " ", count: max(0, n))
        }
        var itemSep = indent == nil ? ", " : ","
        var keySep = ": "
        if let sepArg, !sepArg.isNone {
            let parts = try sepArg.iterate()
            guard parts.count == 2, case .string(let a) = parts[0], case .string(let b) = parts[1] else {
                throw RuntimeFailure("separators must be a pair of strings")
            }
            itemSep = a
            keySep = b
        }
        let style = JSONStyle(indent: indent, sortKeys: sortKeys, ensureASCII: ensureASCII,
                              itemSeparator: itemSep, keySeparator: keySep)
        return try v.toJSON().serialized(style)
    }

    // MARK: Tests

    static func test(_ name: String, _ v: Value, _ args: CallArgs, _ interp: Interpreter) throws -> Bool {
        func other() throws -> Value {
            guard let o = args.arg(0, "other") else { throw RuntimeFailure("test '\(name)' needs an argument") }
            return o
        }
        switch name {
        case "defined": return !v.isUndefined
        case "undefined": return v.isUndefined
        case "none": return v.isNone
        case "boolean": if case .bool = v { return true }; return false
        case "true": if case .bool(true) = v { return true }; return false
        case "false": if case .bool(false) = v { return true }; return false
        case "integer": if case .int = v { return true }; return false
        case "float": if case .double = v { return true }; return false
        case "number":
            switch v {
            case .int, .double, .bool: return true
            default: return false
            }
        case "string": return v.isString
        case "mapping": if case .dict = v { return true }; return false
        case "iterable":
            switch v {
            case .string, .list, .tuple, .dict, .undefined: return true
            default: return false
            }
        case "sequence":
            switch v {
            case .string, .list, .tuple, .dict: return true
            default: return false
            }
        case "callable": if case .callable = v { return true }; return false
        case "odd", "even":
            guard let i = v.intValue else {
                try requireDefined(v)
                throw RuntimeFailure("unsupported operand type(s) for %: '\(v.typeName)' and 'int'")
            }
            let odd = ((i % 2) + 2) % 2 == 1
            return name == "odd" ? odd : !odd
        case "divisibleby":
            let d = try other()
            let r = try binary("%", v, d)
            return Value.pyEqual(r, .int(0))
        case "eq", "equalto", "==": return Value.pyEqual(v, try other())
        case "ne", "!=": return !Value.pyEqual(v, try other())
        case "lt", "lessthan", "<": return try compare("<", v, try other())
        case "le", "<=": return try compare("<=", v, try other())
        case "gt", "greaterthan", ">": return try compare(">", v, try other())
        case "ge", ">=": return try compare(">=", v, try other())
        case "in": return try contains(try other(), v)
        case "sameas":
            let o = try other()
            switch (v, o) {
            case (.none, .none): return true
            case (.bool(let a), .bool(let b)): return a == b
            case (.namespace(let a), .namespace(let b)): return a === b
            case (.callable(let a), .callable(let b)): return a === b
            case (.int(let a), .int(let b)): return a == b && a >= -5 && a <= 256
            default: return false
            }
        case "lower":
            let s = v.pyStr
            return s == s.lowercased()
        case "upper":
            let s = v.pyStr
            return s == s.uppercased()
        case "escaped": return false
        case "filter":
            guard case .string(let n) = v else { return false }
            return filterNames.contains(n)
        case "test":
            guard case .string(let n) = v else { return false }
            return testNames.contains(n)
        default:
            throw RuntimeFailure("unknown test '\(name)'")
        }
    }
}
