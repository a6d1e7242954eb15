import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Operators, attribute/item access, filters, tests, globals and str/dict/list methods, with the
// behaviour of Jinja2 3.1 running under Python (and transformers' overrides: tojson,
// raise_exception, strftime_now, namespace, dict).

enum Builtins {
    // MARK: Access

    static let dictMethods: Set<String> = ["get", "items", "keys", "values", "copy"]
    static let unsafeDictMethods: Set<String> = ["pop", "popitem", "setdefault", "update", "clear"]
    static let listMethods: Set<String> = ["count", "index", "copy"]
    static let unsafeListMethods: Set<String> = ["append", "extend", "insert", "pop", "remove", "reverse", "sort", "clear"]
    static let strMethods: Set<String> = [
        "strip", "lstrip", "rstrip", "split", "rsplit", "splitlines", "startswith", "endswith", "title", "upper",
        "lower", "capitalize", "swapcase", "replace", "find", "rfind", "index", "rindex", "count", "format", "join",
        "isdigit", "isalpha", "isalnum", "isspace", "islower", "isupper", "isnumeric", "isdecimal", "istitle",
        "removeprefix", "removesuffix", "zfill", "center", "ljust", "rjust", "partition", "rpartition", "casefold",
        "encode",
    ]

    /// `obj.name`: Python attribute first (methods), then item (Jinja2's environment.getattr).
    static func getattr(_ obj: Value, _ name: String) throws -> Value {
        switch obj {
        case .undefined(let u):
            throw RuntimeFailure(u.message)
        case .dict(let d):
            if dictMethods.contains(name) { return boundMethod(obj, name) }
            if unsafeDictMethods.contains(name) {
                throw RuntimeFailure("access to attribute '\(name)' of 'dict' object is unsafe.")
            }
            return d[name] ?? .undef("'dict object' has no attribute '\(name)'")
        case .string:
            if strMethods.contains(name) { return boundMethod(obj, name) }
        case .list, .tuple:
            if listMethods.contains(name) { return boundMethod(obj, name) }
            if unsafeListMethods.contains(name), case .list = obj {
                throw RuntimeFailure("access to attribute '\(name)' of 'list' object is unsafe.")
            }
        case .namespace(let ns):
            return ns.attrs[name] ?? .undef("'Namespace object' has no attribute '\(name)'")
        case .loop(let l):
            if let v = loopAttr(l, name) { return v }
        default:
            break
        }
        return .undef("'\(obj.objectTypeRepr)' has no attribute '\(name)'")
    }

    /// `obj[key]`: item first, then attribute for string keys (Jinja2's environment.getitem).
    static func getitem(_ obj: Value, _ key: Value) throws -> Value {
        if case .undefined(let u) = obj { throw RuntimeFailure(u.message) }
        switch (obj, key) {
        case (.dict(let d), _):
            if let k = try? DictKey.encode(key), let v = d[k] { return v }
        case (.list(let a), _), (.tuple(let a), _):
            if let i = key.intValue, !(key.isString) {
                let j = i < 0 ? i + a.count : i
                if j >= 0 && j < a.count { return a[j] }
                return .undef("\(obj.objectTypeRepr) has no element \(key.pyRepr)")
            }
        case (.string(let s), _):
            if let i = key.intValue {
                let us = Array(s.unicodeScalars)
                let j = i < 0 ? i + us.count : i
                if j >= 0 && j < us.count { return .string(String(us[j])) }
                return .undef("str object has no element \(key.pyRepr)")
            }
        default:
            break
        }
        if case .string(let k) = key { return try getattr(obj, k) }
        return .undef("\(obj.objectTypeRepr) has no element \(key.pyRepr)")
    }

    /// Python slicing of list, tuple and str (code points).
    static func slice(_ obj: Value, _ start: Int?, _ stop: Int?, _ step: Int?) throws -> Value {
        let st = step ?? 1
        if st == 0 { throw RuntimeFailure("slice step cannot be zero") }
        func indices(_ n: Int) -> [Int] {
            func adjust(_ v: Int?, _ def: Int, lower: Int, upper: Int) -> Int {
                guard var x = v else { return def }
                if x < 0 { x += n }
                return Swift.min(Swift.max(x, lower), upper)
            }
            var out: [Int] = []
            if st > 0 {
                let a = adjust(start, 0, lower: 0, upper: n)
                let b = adjust(stop, n, lower: 0, upper: n)
                var i = a
                while i < b {
                    out.append(i)
                    let (n, o) = i.addingReportingOverflow(st)
                    if o { break }
                    i = n
                }
            } else {
                let a = adjust(start, n - 1, lower: -1, upper: n - 1)
                let b = adjust(stop, -1, lower: -1, upper: n - 1)
                var i = a
                while i > b {
                    out.append(i)
                    let (n, o) = i.addingReportingOverflow(st)
                    if o { break }
                    i = n
                }
            }
            return out
        }
        switch obj {
        case .list(let a): return .list(indices(a.count).map { a[$0] })
        case .tuple(let a): return .tuple(indices(a.count).map { a[$0] })
        case .string(let s):
            let us = Array(s.unicodeScalars)
            var v = String.UnicodeScalarView()
            for i in indices(us.count) { v.append(us[i]) }
            return .string(String(v))
        case .undefined(let u): throw RuntimeFailure(u.message)
        default: throw RuntimeFailure("'\(obj.typeName)' object is not subscriptable")
        }
    }

    static func loopAttr(_ l: LoopInfo, _ name: String) -> Value? {
        let n = l.items.count
        switch name {
        case "index": return .int(l.index0 + 1)
        case "index0": return .int(l.index0)
        case "revindex": return .int(n - l.index0)
        case "revindex0": return .int(n - l.index0 - 1)
        case "first": return .bool(l.index0 == 0)
        case "last": return .bool(l.index0 == n - 1)
        case "length": return .int(n)
        case "depth": return .int(l.depth0 + 1)
        case "depth0": return .int(l.depth0)
        case "previtem": return l.index0 > 0 ? l.items[l.index0 - 1] : .undef("there is no previous item")
        case "nextitem": return l.index0 + 1 < n ? l.items[l.index0 + 1] : .undef("there is no next item")
        case "cycle":
            return .callable(Callable(name: "cycle") { args, _ in
                guard !args.positional.isEmpty else { throw RuntimeFailure("no items for cycling given") }
                return args.positional[l.index0 % args.positional.count]
            })
        case "changed":
            return .callable(Callable(name: "changed") { args, _ in
                let cur = args.positional
                if let last = l.lastChanged, last.count == cur.count, zip(last, cur).allSatisfy({ Value.pyEqual($0, $1) }) {
                    return .bool(false)
                }
                l.lastChanged = cur
                return .bool(true)
            })
        default: return nil
        }
    }

    // MARK: Operators

    static func binary(_ op: String, _ a: Value, _ b: Value) throws -> Value {
        if case .undefined(let u) = a { throw RuntimeFailure(u.message) }
        if case .undefined(let u) = b { throw RuntimeFailure(u.message) }
        func unsupported() -> RuntimeFailure {
            RuntimeFailure("unsupported operand type(s) for \(op): '\(a.typeName)' and '\(b.typeName)'")
        }
        switch op {
        case "+":
            switch (a, b) {
            case (.string(let x), .string(let y)): return .string(x + y)
            case (.list(let x), .list(let y)): return .list(x + y)
            case (.tuple(let x), .tuple(let y)): return .tuple(x + y)
            case (.string, _), (_, .string):
                if a.isString { throw RuntimeFailure("can only concatenate str (not \"\(b.typeName)\") to str") }
                throw unsupported()
            case (.list, _):
                throw RuntimeFailure("can only concatenate list (not \"\(b.typeName)\") to list")
            default: break
            }
        case "%":
            if case .string(let f) = a {
                // printf-style: a tuple gives the arguments, anything else is the one argument.
                if case .tuple(let items) = b { return .string(try pyPercentFormat(f, CallArgs(positional: items))) }
                return .string(try pyPercentFormat(f, CallArgs(positional: [b])))
            }
        case "*":
            if let n = b.intValue, a.isSequence { return try repeatSeq(a, n) }
            if let n = a.intValue, b.isSequence { return try repeatSeq(b, n) }
        default: break
        }
        guard let x = a.number, let y = b.number else { throw unsupported() }
        let ints = a.intValue != nil && b.intValue != nil
        let i = a.intValue ?? 0
        let j = b.intValue ?? 0
        switch op {
        case "+":
            if ints {
                let (r, o) = i.addingReportingOverflow(j)
                if !o { return .int(r) }
            }
            return .double(x + y)
        case "-":
            if ints {
                let (r, o) = i.subtractingReportingOverflow(j)
                if !o { return .int(r) }
            }
            return .double(x - y)
        case "*":
            if ints {
                let (r, o) = i.multipliedReportingOverflow(by: j)
                if !o { return .int(r) }
            }
            return .double(x * y)
        case "/":
            if y == 0 { throw RuntimeFailure(ints ? "division by zero" : "float division by zero") }
            return .double(x / y)
        case "//":
            if y == 0 { throw RuntimeFailure(ints ? "integer division or modulo by zero" : "float floor division by zero") }
            if ints && !(i == Int.min && j == -1) {
                var q = i / j
                if (i % j != 0) && ((i < 0) != (j < 0)) { q -= 1 }
                return .int(q)
            }
            return .double((x / y).rounded(.down))
        case "%":
            if y == 0 { throw RuntimeFailure(ints ? "integer division or modulo by zero" : "float modulo") }
            if ints && !(i == Int.min && j == -1) {
                var r = i % j
                if r != 0 && ((r < 0) != (j < 0)) { r += j }
                return .int(r)
            }
            var r = fmod(x, y)
            if r != 0 && ((r < 0) != (y < 0)) { r += y }
            return .double(r)
        case "**":
            if ints && j >= 0 {
                // Exponentiation by squaring; past Int range the result is a float (Python has big ints).
                var result = 1
                var base = i
                var e = j
                var overflow = false
                while e > 0 && !overflow {
                    if e & 1 == 1 {
                        let (m, o) = result.multipliedReportingOverflow(by: base)
                        overflow = overflow || o
                        result = m
                    }
                    e >>= 1
                    if e > 0 {
                        let (b2, o) = base.multipliedReportingOverflow(by: base)
                        overflow = overflow || o
                        base = b2
                    }
                }
                if !overflow { return .int(result) }
                return .double(pow(x, y))
            }
            return .double(pow(x, y))
        default:
            throw unsupported()
        }
    }

    /// Largest sequence `*` may build (a guard against runaway memory, not a Python rule).
    static let maxRepeatedCount = 10_000_000

    static func repeatSeq(_ v: Value, _ n: Int) throws -> Value {
        let k = Swift.max(0, n)
        let unit: Int
        switch v {
        case .string(let s): unit = s.unicodeScalars.count
        case .list(let a), .tuple(let a): unit = a.count
        default: unit = 0
        }
        if unit > 0 && k > maxRepeatedCount / unit { throw RuntimeFailure("repeated sequence is too large") }
        switch v {
        case .string(let s): return .string(String(repeating: s, count: k))
        case .list(let a): return .list(Array([[Value]](repeating: a, count: k).joined()))
        case .tuple(let a): return .tuple(Array([[Value]](repeating: a, count: k).joined()))
        default: return v
        }
    }

    static func compare(_ op: String, _ a: Value, _ b: Value) throws -> Bool {
        switch op {
        case "==": return Value.pyEqual(a, b)
        case "!=": return !Value.pyEqual(a, b)
        case "<": return try Value.pyCompare(a, b, op: op) < 0
        case "<=": return try Value.pyCompare(a, b, op: op) <= 0
        case ">": return try Value.pyCompare(a, b, op: op) > 0
        case ">=": return try Value.pyCompare(a, b, op: op) >= 0
        case "in": return try contains(b, a)
        case "not in": return !(try contains(b, a))
        default: throw RuntimeFailure("unknown operator \(op)")
        }
    }

    /// Python `item in container`.
    static func contains(_ container: Value, _ item: Value) throws -> Bool {
        switch container {
        case .string(let s):
            guard case .string(let sub) = item else {
                if case .undefined(let u) = item { throw RuntimeFailure(u.message) }
                throw RuntimeFailure("'in <string>' requires string as left operand, not \(item.typeName)")
            }
            return sub.isEmpty || s.unicodeScalars.count >= sub.unicodeScalars.count && scalarFind(s, sub, from: 0) != nil
        case .list(let a), .tuple(let a): return a.contains { Value.pyEqual($0, item) }
        case .dict(let d):
            return (try? DictKey.encode(item)).map { d[$0] != nil } ?? false
        case .undefined: return false
        case .namespace(let ns):
            if case .string(let k) = item { return ns.attrs[k] != nil }
            return false
        default: throw RuntimeFailure("argument of type '\(container.typeName)' is not iterable")
        }
    }

    /// Index (in code points) of `sub` in `s` at or after `from`.
    static func scalarFind(_ s: String, _ sub: String, from: Int) -> Int? {
        let a = Array(s.unicodeScalars)
        let b = Array(sub.unicodeScalars)
        if b.isEmpty { return from <= a.count ? from : nil }
        if a.count < b.count { return nil }
        var i = Swift.max(0, from)
        while i + b.count <= a.count {
            if a[i] == b[0] && Array(a[i..<i + b.count]) == b { return i }
            i += 1
        }
        return nil
    }

    // MARK: Globals

    static func globals(fixedNowUTC: Int? = nil) -> [String: Value] {
        var g: [String: Value] = [:]
        g["range"] = .callable(Callable(name: "range") { args, _ in
            let ints = try args.positional.map { v -> Int in
                guard let i = v.intValue else { throw RuntimeFailure("'\(v.typeName)' object cannot be interpreted as an integer") }
                return i
            }
            var start = 0
            var stop = 0
            var step = 1
            switch ints.count {
            case 1: stop = ints[0]
            case 2: start = ints[0]; stop = ints[1]
            case 3: start = ints[0]; stop = ints[1]; step = ints[2]
            default: throw RuntimeFailure("range expected 1 to 3 arguments, got \(ints.count)")
            }
            if step == 0 { throw RuntimeFailure("range() arg 3 must not be zero") }
            var out: [Value] = []
            var i = start
            while step > 0 ? i < stop : i > stop {
                out.append(.int(i))
                if out.count > 100_000 { throw RuntimeFailure("Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).") }
                let (n, o) = i.addingReportingOverflow(step)
                if o { break }
                i = n
            }
            return .list(out)
        })
        g["namespace"] = .callable(Callable(name: "namespace") { args, _ in
            var d = VDict()
            for p in args.positional {
                guard case .dict(let pd) = p else { throw RuntimeFailure("namespace() positional argument must be a dict") }
                for (k, v) in pd.pairs { d[k] = v }
            }
            for (k, v) in args.keyword { d[k] = v }
            for k in d.keys where k.hasPrefix("_") {
                throw RuntimeFailure(
                    "Chat templates cannot store underscore-prefixed attributes on a namespace, but got '\(k)'. Please rename the attribute.")
            }
            return .namespace(Namespace(d))
        })
        g["dict"] = .callable(Callable(name: "dict") { args, _ in
            var d = VDict()
            for p in args.positional {
                switch p {
                case .dict(let pd): for (k, v) in pd.pairs { d[k] = v }
                default:
                    for item in try p.iterate() {
                        let kv = try item.iterate()
                        guard kv.count == 2, case .string(let k) = kv[0] else {
                            throw RuntimeFailure("dictionary update sequence element has wrong length or key type")
                        }
                        d[k] = kv[1]
                    }
                }
            }
            for (k, v) in args.keyword { d[k] = v }
            return .dict(d)
        })
        g["raise_exception"] = .callable(Callable(name: "raise_exception") { args, _ in
            throw RuntimeFailure(args.arg(0, "message")?.pyStr ?? "", isRaised: true)
        })
        g["strftime_now"] = .callable(Callable(name: "strftime_now") { args, _ in
            guard case .string(let fmt)? = args.arg(0, "format") else {
                throw RuntimeFailure("strftime_now() argument must be a string")
            }
            return .string(strftimeNow(fmt, fixedUTC: fixedNowUTC))
        })
        return g
    }

    /// datetime.now().strftime(fmt) in local time, via the C library (as CPython does).
    /// With fixedUTC, that instant is formatted as UTC wall-clock time instead.
    static func strftimeNow(_ fmt: String, fixedUTC: Int? = nil) -> String {
        var tmv = tm()
        if let fixedUTC {
            var t = time_t(fixedUTC)
            gmtime_r(&t, &tmv)
        } else {
            var t = time(nil)
            localtime_r(&t, &tmv)
        }
        var buf = [Int8](repeating: 0, count: 512)
        let n = strftime(&buf, buf.count, fmt, &tmv)
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    // MARK: Methods

    static func boundMethod(_ obj: Value, _ name: String) -> Value {
        .callable(Callable(name: name) { args, _ in try callMethod(obj, name, args) })
    }

    static func str(_ v: Value?, _ what: String) throws -> String? {
        guard let v, !v.isNone else { return nil }
        guard case .string(let s) = v else { throw RuntimeFailure("\(what) must be str or None, not \(v.typeName)") }
        return s
    }

    static func callMethod(_ obj: Value, _ name: String, _ args: CallArgs) throws -> Value {
        switch obj {
        case .dict(let d):
            switch name {
            case "get":
                guard let key = args.arg(0, "key") else { throw RuntimeFailure("get expected at least 1 argument, got 0") }
                if let k = try? DictKey.encode(key), let v = d[k] { return v }
                return args.arg(1, "default") ?? .none
            case "items": return .list(DictKey.items(d))
            case "keys": return .list(d.keys.map(DictKey.decode))
            case "values": return .list(d.values)
            case "copy": return obj
            default: break
            }
        case .list(let a), .tuple(let a):
            switch name {
            case "count":
                guard let x = args.arg(0, "value") else { throw RuntimeFailure("count() takes exactly one argument (0 given)") }
                return .int(a.filter { Value.pyEqual($0, x) }.count)
            case "index":
                guard let x = args.arg(0, "value") else { throw RuntimeFailure("index expected at least 1 argument, got 0") }
                guard let i = a.firstIndex(where: { Value.pyEqual($0, x) }) else {
                    throw RuntimeFailure("\(x.pyRepr) is not in list")
                }
                return .int(i)
            case "copy": return obj
            default: break
            }
        case .string(let s):
            return try stringMethod(s, name, args)
        default: break
        }
        throw RuntimeFailure("'\(obj.typeName)' object has no attribute '\(name)'")
    }

    static func prefixArg(_ v: Value?, _ fn: String) throws -> [String] {
        switch v {
        case .string(let p)?: return [p]
        case .tuple(let items)?, .list(let items)?:
            return try items.map {
                guard case .string(let p) = $0 else { throw RuntimeFailure("tuple for \(fn) must only contain str, not \($0.typeName)") }
                return p
            }
        default: throw RuntimeFailure("\(fn) first arg must be str or a tuple of str, not \(v?.typeName ?? "nothing")")
        }
    }

    static func stringMethod(_ s: String, _ name: String, _ args: CallArgs) throws -> Value {
        let us = Array(s.unicodeScalars)
        func scalars(_ x: ArraySlice<Unicode.Scalar>) -> String {
            var v = String.UnicodeScalarView()
            v.append(contentsOf: x)
            return String(v)
        }
        switch name {
        case "strip", "lstrip", "rstrip":
            let chars = try str(args.arg(0, "chars"), "strip arg")
            return .string(PyFormat.strip(s, chars: chars, left: name != "rstrip", right: name != "lstrip"))
        case "split", "rsplit":
            let sep = try str(args.arg(0, "sep"), "sep")
            let maxsplit = args.arg(1, "maxsplit")?.intValue ?? -1
            return .list(try pySplit(s, sep: sep, maxsplit: maxsplit, fromRight: name == "rsplit").map { .string($0) })
        case "splitlines":
            return .list(PyFormat.splitlines(s).map { .string($0) })
        case "startswith", "endswith":
            let prefixes = try prefixArg(args.arg(0, "prefix"), name)
            let start = args.arg(1, "start")?.intValue ?? 0
            let sub = start == 0 ? s : (try slice(.string(s), start, nil, nil)).pyStr
            return .bool(prefixes.contains { p in
                name == "startswith" ? sub.unicodeScalars.starts(with: p.unicodeScalars)
                    : Array(sub.unicodeScalars).reversed().starts(with: Array(p.unicodeScalars).reversed())
            })
        case "title": return .string(pyTitle(s))
        case "upper": return .string(s.uppercased())
        case "lower": return .string(s.lowercased())
        case "casefold": return .string(s.lowercased())
        case "capitalize": return .string(pyCapitalize(s))
        case "swapcase":
            return .string(s.map { c in
                let t = String(c)
                return t == t.uppercased() ? t.lowercased() : t.uppercased()
            }.joined())
        case "replace":
            guard case .string(let old)? = args.arg(0, "old"), case .string(let new)? = args.arg(1, "new") else {
                throw RuntimeFailure("replace() arguments must be str")
            }
            let count = args.arg(2, "count")?.intValue ?? -1
            return .string(pyReplace(s, old, new, count: count))
        case "find", "index", "rfind", "rindex", "count":
            guard case .string(let sub)? = args.arg(0, "sub") else { throw RuntimeFailure("\(name)() argument must be str") }
            if name == "count" {
                if sub.isEmpty { return .int(us.count + 1) }
                var n = 0
                var i = 0
                while let j = scalarFind(s, sub, from: i) {
                    n += 1
                    i = j + sub.unicodeScalars.count
                }
                return .int(n)
            }
            var found: Int?
            if name.hasPrefix("r") {
                var i = 0
                while let j = scalarFind(s, sub, from: i) {
                    found = j
                    i = j + 1
                }
            } else {
                found = scalarFind(s, sub, from: 0)
            }
            if let found { return .int(found) }
            if name.hasSuffix("index") { throw RuntimeFailure("substring not found") }
            return .int(-1)
        case "join":
            guard let it = args.arg(0, "iterable") else { throw RuntimeFailure("join() takes exactly one argument (0 given)") }
            return .string(try it.iterate().map {
                guard case .string(let x) = $0 else {
                    throw RuntimeFailure("sequence item: expected str instance, \($0.typeName) found")
                }
                return x
            }.joined(separator: s))
        case "isdigit", "isdecimal", "isnumeric":
            return .bool(!us.isEmpty && us.allSatisfy { $0.properties.numericType != nil })
        case "isalpha": return .bool(!us.isEmpty && us.allSatisfy { $0.properties.isAlphabetic })
        case "isalnum":
            return .bool(!us.isEmpty && us.allSatisfy { $0.properties.isAlphabetic || $0.properties.numericType != nil })
        case "isspace": return .bool(!us.isEmpty && us.allSatisfy(PyFormat.isSpace))
        case "islower":
            let cased = us.filter { $0.properties.isCased }
            return .bool(!cased.isEmpty && cased.allSatisfy { $0.properties.isLowercase })
        case "isupper":
            let cased = us.filter { $0.properties.isCased }
            return .bool(!cased.isEmpty && cased.allSatisfy { $0.properties.isUppercase })
        case "istitle": return .bool(!s.isEmpty && pyTitle(s) == s)
        case "removeprefix":
            guard case .string(let p)? = args.arg(0, "prefix") else { throw RuntimeFailure("removeprefix() argument must be str") }
            return .string(s.unicodeScalars.starts(with: p.unicodeScalars) ? scalars(us.dropFirst(p.unicodeScalars.count)) : s)
        case "removesuffix":
            guard case .string(let p)? = args.arg(0, "suffix") else { throw RuntimeFailure("removesuffix() argument must be str") }
            let ps = Array(p.unicodeScalars)
            if !ps.isEmpty && us.count >= ps.count && Array(us[(us.count - ps.count)...]) == ps {
                return .string(scalars(us.dropLast(ps.count)))
            }
            return .string(s)
        case "zfill", "center", "ljust", "rjust":
            guard let width = args.arg(0, "width")?.intValue else { throw RuntimeFailure("\(name)() needs an integer width") }
            let fill = (try str(args.arg(1, "fillchar"), "fillchar")) ?? (name == "zfill" ? "0" : " ")
            let pad = Swift.max(0, width - us.count)
            if pad > maxRepeatedCount { throw RuntimeFailure("\(name)() width is too large") }
            switch name {
            case "ljust": return .string(s + String(repeating: fill, count: pad))
            case "rjust", "zfill": return .string(String(repeating: fill, count: pad) + s)
            default:
                let left = pad / 2 + (pad & width & 1)
                return .string(String(repeating: fill, count: left) + s + String(repeating: fill, count: pad - left))
            }
        case "partition", "rpartition":
            guard case .string(let sep)? = args.arg(0, "sep") else { throw RuntimeFailure("\(name)() argument must be str") }
            let parts = try pySplit(s, sep: sep, maxsplit: 1, fromRight: name == "rpartition")
            if parts.count == 2 { return .tuple([.string(parts[0]), .string(sep), .string(parts[1])]) }
            return name == "partition" ? .tuple([.string(s), .string(""), .string("")]) : .tuple([.string(""), .string(""), .string(s)])
        case "format":
            return .string(try pyFormat(s, args))
        case "encode":
            return .string(s)
        default:
            throw RuntimeFailure("'str' object has no attribute '\(name)'")
        }
    }

    static func pySplit(_ s: String, sep: String?, maxsplit: Int, fromRight: Bool) throws -> [String] {
        let us = Array(s.unicodeScalars)
        func str(_ a: Int, _ b: Int) -> String {
            var v = String.UnicodeScalarView()
            v.append(contentsOf: us[a..<b])
            return String(v)
        }
        if let sep {
            let sp = Array(sep.unicodeScalars)
            if sp.isEmpty { throw RuntimeFailure("empty separator") }
            var parts: [String] = []
            if !fromRight {
                var start = 0
                var i = 0
                while i + sp.count <= us.count && (maxsplit < 0 || parts.count < maxsplit) {
                    if Array(us[i..<i + sp.count]) == sp {
                        parts.append(str(start, i))
                        i += sp.count
                        start = i
                    } else {
                        i += 1
                    }
                }
                parts.append(str(start, us.count))
                return parts
            }
            var end = us.count
            var i = us.count - sp.count
            while i >= 0 && (maxsplit < 0 || parts.count < maxsplit) {
                if Array(us[i..<i + sp.count]) == sp {
                    parts.append(str(i + sp.count, end))
                    end = i
                    i -= sp.count
                } else {
                    i -= 1
                }
            }
            parts.append(str(0, end))
            return parts.reversed()
        }
        // Whitespace splitting: runs of whitespace separate, no empty strings.
        var parts: [String] = []
        if !fromRight {
            var i = 0
            while i < us.count {
                while i < us.count && PyFormat.isSpace(us[i]) { i += 1 }
                if i >= us.count { break }
                if maxsplit >= 0 && parts.count >= maxsplit {
                    // The remainder keeps its trailing whitespace.
                    parts.append(str(i, us.count))
                    break
                }
                let st = i
                while i < us.count && !PyFormat.isSpace(us[i]) { i += 1 }
                parts.append(str(st, i))
            }
            return parts
        }
        var i = us.count
        while i > 0 {
            while i > 0 && PyFormat.isSpace(us[i - 1]) { i -= 1 }
            if i == 0 { break }
            if maxsplit >= 0 && parts.count >= maxsplit {
                parts.append(str(0, i))
                break
            }
            let en = i
            while i > 0 && !PyFormat.isSpace(us[i - 1]) { i -= 1 }
            parts.append(str(i, en))
        }
        return parts.reversed()
    }

    static func pyReplace(_ s: String, _ old: String, _ new: String, count: Int) -> String {
        let us = Array(s.unicodeScalars)
        let o = Array(old.unicodeScalars)
        var out = String.UnicodeScalarView()
        var n = 0
        if o.isEmpty {
            // Inserted before every code point and at the end.
            for u in us {
                if count < 0 || n < count { out.append(contentsOf: new.unicodeScalars); n += 1 }
                out.append(u)
            }
            if count < 0 || n < count { out.append(contentsOf: new.unicodeScalars) }
            return String(out)
        }
        var i = 0
        while i < us.count {
            if (count < 0 || n < count) && i + o.count <= us.count && Array(us[i..<i + o.count]) == o {
                out.append(contentsOf: new.unicodeScalars)
                i += o.count
                n += 1
            } else {
                out.append(us[i])
                i += 1
            }
        }
        return String(out)
    }

    /// Python str.title(): uppercase the first cased letter after a non-cased one, lowercase the rest.
    static func pyTitle(_ s: String) -> String {
        var out = ""
        var prevCased = false
        for u in s.unicodeScalars {
            let c = String(u)
            out += prevCased ? c.lowercased() : c.uppercased()
            prevCased = u.properties.isCased
        }
        return out
    }

    static func pyCapitalize(_ s: String) -> String {
        guard let f = s.unicodeScalars.first else { return s }
        return String(f).uppercased() + String(String.UnicodeScalarView(s.unicodeScalars.dropFirst())).lowercased()
    }

    /// str.format with `{}`, `{0}`, `{name}` and `{{`/`}}` (format specs are not supported).
    static func pyFormat(_ s: String, _ args: CallArgs) throws -> String {
        var out = ""
        var auto = 0
        let cs = Array(s)
        var i = 0
        while i < cs.count {
            let c = cs[i]
            if c == "{" {
                if i + 1 < cs.count && cs[i + 1] == "{" { out.append("{"); i += 2; continue }
                guard let close = cs[i...].firstIndex(of: "}") else { throw RuntimeFailure("Single '{' encountered in format string") }
                let field = String(cs[(i + 1)..<close])
                if field.contains(":") || field.contains("!") { throw RuntimeFailure("format specs are not supported") }
                let v: Value?
                if field.isEmpty {
                    v = auto < args.positional.count ? args.positional[auto] : nil
                    auto += 1
                } else if let n = Int(field) {
                    v = n < args.positional.count ? args.positional[n] : nil
                } else {
                    v = args.kw(field)
                }
                guard let v else { throw RuntimeFailure("Replacement index \(field) out of range for positional args tuple") }
                out += v.pyStr
                i = close + 1
            } else if c == "}" {
                if i + 1 < cs.count && cs[i + 1] == "}" { out.append("}"); i += 2; continue }
                throw RuntimeFailure("Single '}' encountered in format string")
            } else {
                out.append(c)
                i += 1
            }
        }
        return out
    }
}

extension Value {
    var isString: Bool { if case .string = self { return true }; return false }
    var isSequence: Bool {
        switch self {
        case .string, .list, .tuple: return true
        default: return false
        }
    }
}
