import Foundation

// Tree-walking evaluator with Jinja2's runtime semantics: scopes (a for-loop body gets a fresh
// scope per iteration, `if` opens none, macros see the scope they were defined in), Undefined
// handling as jinja2.Undefined, Python operators and truthiness, and ImmutableSandboxedEnvironment
// rules (no mutating list/dict methods).

/// A located runtime or syntax error.
struct JinjaError: Error {
    var loc: SrcLoc
    var message: String
    var isRaised: Bool
}

final class Scope {
    var vars: [String: Value] = [:]
    let parent: Scope?
    init(parent: Scope?) { self.parent = parent }

    func lookup(_ name: String) -> Value? {
        var s: Scope? = self
        while let cur = s {
            if let v = cur.vars[name] { return v }
            s = cur.parent
        }
        return nil
    }
}

enum Flow { case normal, breakLoop, continueLoop }

/// Records where the template's loop over the conversation writes each message (Masking's one-pass
/// spans): the first for-loop that writes something straight into the template's output and iterates
/// over the messages, or over a suffix of them (templates that take a system message out first iterate over
/// messages[1:]). Matching is by role and content, item by item.
final class TurnRecorder {
    let messages: [Value]
    var result: TurnOffsets?
    init(messages: [Value]) { self.messages = messages }

    /// The index of the message `items[0]` is, when `items` are the last items.count messages.
    func firstMessage(of items: [Value]) -> Int? {
        guard !items.isEmpty, items.count <= messages.count, items.count + 1 >= messages.count else { return nil }
        let first = messages.count - items.count
        for (k, item) in items.enumerated() {
            guard case .dict(let a) = item, case .dict(let b) = messages[first + k],
                  Self.same(a["role"], b["role"]), Self.same(a["content"], b["content"]) else { return nil }
        }
        return first
    }

    static func same(_ a: Value?, _ b: Value?) -> Bool {
        if case .string(let x)? = a, case .string(let y)? = b { return x == y }
        return false
    }
}

final class Interpreter {
    /// Macro calls in progress; bounded like Python's recursion limit so runaway recursion fails cleanly.
    var callDepth = 0
    static let maxCallDepth = 100
    /// Scopes holding a macro: the macro's closure keeps its defining scope, and the scope keeps the
    /// macro (a reference cycle that would leak the scope, its values and the macro's AST).
    var macroScopes: [Scope] = []
    /// Nested renders in progress: 1 while writing the template's own output (not a macro's, a block
    /// set's or a filter block's).
    var outputDepth = 0
    var turns: TurnRecorder?
    /// When recording: the UTF-8 byte ranges of the template's own output written inside `{% generation %}`
    /// blocks (transformers' assistant mask: return_assistant_tokens_mask).
    var generationSpans: [Range<Int>]?

    /// Breaks the macro ↔ scope cycles once a render is done (nothing of a render outlives it).
    func releaseScopes() {
        for s in macroScopes { s.vars.removeAll() }
        macroScopes.removeAll()
    }
    // MARK: Statements

    func exec(_ nodes: [Node], _ scope: Scope, _ out: inout String) throws -> Flow {
        for node in nodes {
            let f = try exec(node, scope, &out)
            if f != .normal { return f }
        }
        return .normal
    }

    func render(_ nodes: [Node], _ scope: Scope) throws -> String {
        outputDepth += 1
        defer { outputDepth -= 1 }
        var out = ""
        _ = try exec(nodes, scope, &out)
        return out
    }

    func located<T>(_ loc: SrcLoc, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let f as RuntimeFailure {
            throw JinjaError(loc: loc, message: f.message, isRaised: f.isRaised)
        }
    }

    func exec(_ node: Node, _ scope: Scope, _ out: inout String) throws -> Flow {
        switch node.kind {
        case .text(let s):
            out += s
        case .output(let e):
            out += try eval(e, scope).pyStr
        case .ifs(let branches, let otherwise):
            for (test, body) in branches where try eval(test, scope).truthy {
                return try exec(body, scope, &out)
            }
            if let otherwise { return try exec(otherwise, scope, &out) }
        case .forLoop(let target, let iterExpr, let filter, let body, let otherwise):
            let iterable = try eval(iterExpr, scope)
            var items = try located(iterExpr.loc) { try iterable.iterate() }
            if let filter {
                items = try items.filter { item in
                    let s = Scope(parent: scope)
                    try located(node.loc) { try assign(target, item, in: s) }
                    return try eval(filter, s).truthy
                }
            }
            if items.isEmpty {
                if let otherwise { return try exec(otherwise, scope, &out) }
                return .normal
            }
            // Jinja2 counts depth only through recursive loops (not supported): always depth 1.
            let loop = LoopInfo(items: items, depth0: 0)
            var record: (first: Int, starts: [Int], from: Int)? = nil
            if let t = turns, t.result == nil, outputDepth == 1, let first = t.firstMessage(of: items) {
                record = (first, [], out.utf8.count)
            }
            for (idx, item) in items.enumerated() {
                loop.index0 = idx
                let s = Scope(parent: scope)
                try located(node.loc) { try assign(target, item, in: s) }
                s.vars["loop"] = .loop(loop)
                record?.starts.append(out.utf8.count)
                if try exec(body, s, &out) == .breakLoop { break }
            }
            // A loop that wrote nothing (one that only looks for a system message) is not the one.
            if let r = record, out.utf8.count > r.from {
                turns?.result = TurnOffsets(firstMessage: r.first, starts: r.starts, end: out.utf8.count)
            }
        case .set(let target, let e):
            let v = try eval(e, scope)
            try located(node.loc) { try assign(target, v, in: scope) }
        case .setBlock(let target, let filter, let body):
            var v = Value.string(try render(body, scope))
            if let filter { v = try applyFilterChain(filter, to: v, scope) }
            try located(node.loc) { try assign(target, v, in: scope) }
        case .macro(let m):
            scope.vars[m.name] = .callable(makeMacro(m, scope: scope))
        case .callBlock(let call, let params, let body):
            let caller = makeMacro(Macro(name: "caller", params: params, body: body), scope: scope)
            guard case .call(let callee, let args) = call.kind else { return .normal }
            let f = try eval(callee, scope)
            var a = try evalArgs(args, scope)
            a.keyword.append(("caller", .callable(caller)))
            out += try located(call.loc) { try callValue(f, a) }.pyStr
        case .filterBlock(let filter, let body):
            let v = try applyFilterChain(filter, to: .string(try render(body, scope)), scope)
            out += v.pyStr
        case .generation(let body):
            guard generationSpans != nil, outputDepth == 1 else { return try exec(body, scope, &out) }
            let start = out.utf8.count
            let flow = try exec(body, scope, &out)
            if out.utf8.count > start { generationSpans!.append(start..<out.utf8.count) }
            return flow
        case .breakLoop:
            return .breakLoop
        case .continueLoop:
            return .continueLoop
        }
        return .normal
    }

    /// Applies a filter chain whose innermost operand is nil (a filter block or block set) to `v`.
    func applyFilterChain(_ e: Expr, to v: Value, _ scope: Scope) throws -> Value {
        guard case .filter(let operand, let name, let args) = e.kind else { return v }
        let inner = try operand.map { try applyFilterChain($0, to: v, scope) } ?? v
        let a = try evalArgs(args, scope)
        return try located(e.loc) { try Builtins.filter(name, inner, a, self) }
    }

    func assign(_ target: Target, _ v: Value, in scope: Scope) throws {
        switch target {
        case .name(let n):
            scope.vars[n] = v
        case .tuple(let targets):
            let items: [Value]
            switch v {
            case .list(let a), .tuple(let a): items = a
            case .undefined(let u): throw RuntimeFailure(u.message)
            default: items = try v.iterate()
            }
            if items.count < targets.count {
                throw RuntimeFailure("not enough values to unpack (expected \(targets.count), got \(items.count))")
            }
            if items.count > targets.count {
                throw RuntimeFailure("too many values to unpack (expected \(targets.count))")
            }
            for (t, x) in zip(targets, items) { try assign(t, x, in: scope) }
        case .attr(let n, let attr):
            guard case .namespace(let ns)? = scope.lookup(n) else {
                throw RuntimeFailure("cannot assign attribute on non-namespace object")
            }
            if attr.hasPrefix("_") {
                throw RuntimeFailure(
                    "Chat templates cannot store underscore-prefixed attributes on a namespace, but got '\(attr)'. Please rename the attribute.")
            }
            ns.attrs[attr] = v
        }
    }

    /// A macro as a callable: positional then keyword arguments bind to parameters; missing ones take
    /// their defaults (evaluated in the macro scope) or are Undefined; surplus arguments are allowed only
    /// when the body reads `varargs` / `kwargs`. A call block passes `caller` as a keyword.
    func makeMacro(_ m: Macro, scope defScope: Scope) -> Callable {
        macroScopes.append(defScope)
        let takesVarargs = usesName("varargs", m.body)
        let takesKwargs = usesName("kwargs", m.body)
        return Callable(name: m.name) { [unowned self] args, _ in
            if self.callDepth >= Interpreter.maxCallDepth {
                throw RuntimeFailure("maximum recursion depth exceeded in macro '\(m.name)'")
            }
            self.callDepth += 1
            defer { self.callDepth -= 1 }
            let s = Scope(parent: defScope)
            let names = m.params.map(\.0)
            for (name, v) in zip(names, args.positional) { s.vars[name] = v }
            let extra = Array(args.positional.dropFirst(names.count))
            var extraKeywords = VDict()
            for (k, v) in args.keyword {
                if k == "caller" {
                    s.vars["caller"] = v
                } else if let idx = names.firstIndex(of: k) {
                    if idx < args.positional.count {
                        throw RuntimeFailure("macro '\(m.name)' takes no keyword argument '\(k)'")
                    }
                    s.vars[k] = v
                } else {
                    extraKeywords[k] = v
                }
            }
            if !extra.isEmpty && !takesVarargs {
                throw RuntimeFailure("macro '\(m.name)' takes not more than \(names.count) argument(s)")
            }
            if let k = extraKeywords.keys.first, !takesKwargs {
                throw RuntimeFailure("macro '\(m.name)' takes no keyword argument '\(k)'")
            }
            for (name, def) in m.params where s.vars[name] == nil {
                if let def {
                    s.vars[name] = try self.eval(def, s)
                } else {
                    s.vars[name] = .undef("parameter '\(name)' was not provided")
                }
            }
            s.vars["varargs"] = .tuple(extra)
            s.vars["kwargs"] = .dict(extraKeywords)
            return .string(try self.render(m.body, s))
        }
    }

    /// Whether `name` is referenced anywhere in the nodes (rough check used for varargs/kwargs).
    func usesName(_ name: String, _ nodes: [Node]) -> Bool {
        func inExpr(_ e: Expr?) -> Bool {
            guard let e else { return false }
            switch e.kind {
            case .name(let n): return n == name
            case .literal: return false
            case .list(let xs), .tuple(let xs), .concat(let xs): return xs.contains { inExpr($0) }
            case .dict(let kv): return kv.contains { inExpr($0.0) || inExpr($0.1) }
            case .getattr(let o, _), .neg(let o), .pos(let o), .not(let o): return inExpr(o)
            case .getitem(let a, let b), .and(let a, let b), .or(let a, let b), .binary(_, let a, let b):
                return inExpr(a) || inExpr(b)
            case .slice(let o, let a, let b, let c): return inExpr(o) || inExpr(a) || inExpr(b) || inExpr(c)
            case .call(let f, let args): return inExpr(f) || args.contains { inExpr($0.value) }
            case .filter(let o, _, let args): return inExpr(o) || args.contains { inExpr($0.value) }
            case .test(let o, _, let args, _): return inExpr(o) || args.contains { inExpr($0.value) }
            case .compare(let a, let ops): return inExpr(a) || ops.contains { inExpr($0.1) }
            case .cond(let t, let a, let b): return inExpr(t) || inExpr(a) || inExpr(b)
            }
        }
        for node in nodes {
            switch node.kind {
            case .text, .breakLoop, .continueLoop, .macro: continue
            case .output(let e), .set(_, let e): if inExpr(e) { return true }
            case .ifs(let branches, let otherwise):
                if branches.contains(where: { inExpr($0.0) || usesName(name, $0.1) }) { return true }
                if let otherwise, usesName(name, otherwise) { return true }
            case .forLoop(_, let iter, let filter, let body, let otherwise):
                if inExpr(iter) || inExpr(filter) || usesName(name, body) || usesName(name, otherwise ?? []) { return true }
            case .setBlock(_, let f, let body): if inExpr(f) || usesName(name, body) { return true }
            case .callBlock(let c, _, let body): if inExpr(c) || usesName(name, body) { return true }
            case .filterBlock(let f, let body): if inExpr(f) || usesName(name, body) { return true }
            case .generation(let body): if usesName(name, body) { return true }
            }
        }
        return false
    }

    // MARK: Expressions

    func eval(_ e: Expr, _ scope: Scope) throws -> Value {
        do {
            return try evalInner(e, scope)
        } catch let f as RuntimeFailure {
            throw JinjaError(loc: e.loc, message: f.message, isRaised: f.isRaised)
        }
    }

    func evalArgs(_ args: [Arg], _ scope: Scope) throws -> CallArgs {
        var a = CallArgs()
        for arg in args {
            let v = try eval(arg.value, scope)
            switch arg.kind {
            case .positional: a.positional.append(v)
            case .keyword(let k): a.keyword.append((k, v))
            case .splat: a.positional.append(contentsOf: try located(arg.value.loc) { try v.iterate() })
            case .kwsplat:
                guard case .dict(let d) = v else { throw JinjaError(loc: arg.value.loc, message: "argument after ** must be a mapping", isRaised: false) }
                a.keyword.append(contentsOf: d.pairs)
            }
        }
        return a
    }

    func callValue(_ f: Value, _ args: CallArgs) throws -> Value {
        switch f {
        case .callable(let c): return try c.call(args, self)
        case .undefined(let u): throw RuntimeFailure(u.message)
        default: throw RuntimeFailure("'\(f.typeName)' object is not callable")
        }
    }

    func evalInner(_ e: Expr, _ scope: Scope) throws -> Value {
        switch e.kind {
        case .literal(let v):
            return v
        case .name(let n):
            return scope.lookup(n) ?? .undef("'\(n)' is undefined")
        case .list(let items):
            return .list(try items.map { try eval($0, scope) })
        case .tuple(let items):
            return .tuple(try items.map { try eval($0, scope) })
        case .dict(let pairs):
            var d = VDict()
            for (k, v) in pairs {
                d[try DictKey.encode(try eval(k, scope))] = try eval(v, scope)
            }
            return .dict(d)
        case .getattr(let o, let name):
            return try Builtins.getattr(try eval(o, scope), name)
        case .getitem(let o, let idx):
            return try Builtins.getitem(try eval(o, scope), try eval(idx, scope))
        case .slice(let o, let a, let b, let c):
            let obj = try eval(o, scope)
            func opt(_ x: Expr?) throws -> Int? {
                guard let x else { return nil }
                let v = try eval(x, scope)
                if v.isNone { return nil }
                guard let i = v.intValue else { throw RuntimeFailure("slice indices must be integers or None") }
                return i
            }
            return try Builtins.slice(obj, try opt(a), try opt(b), try opt(c))
        case .call(let callee, let args):
            let f = try eval(callee, scope)
            let a = try evalArgs(args, scope)
            return try callValue(f, a)
        case .filter(let operand, let name, let args):
            let v = try operand.map { try eval($0, scope) } ?? .undef("missing filter operand")
            let a = try evalArgs(args, scope)
            return try Builtins.filter(name, v, a, self)
        case .test(let operand, let name, let args, let negated):
            let v = try eval(operand, scope)
            let a = try evalArgs(args, scope)
            let r = try Builtins.test(name, v, a, self)
            return .bool(negated ? !r : r)
        case .neg(let o):
            let v = try eval(o, scope)
            switch v {
            case .int(let i): return i == Int.min ? .double(-Double(i)) : .int(-i)
            case .bool(let b): return .int(b ? -1 : 0)
            case .double(let d): return .double(-d)
            case .undefined(let u): throw RuntimeFailure(u.message)
            default: throw RuntimeFailure("bad operand type for unary -: '\(v.typeName)'")
            }
        case .pos(let o):
            let v = try eval(o, scope)
            switch v {
            case .int, .double: return v
            case .bool(let b): return .int(b ? 1 : 0)
            case .undefined(let u): throw RuntimeFailure(u.message)
            default: throw RuntimeFailure("bad operand type for unary +: '\(v.typeName)'")
            }
        case .not(let o):
            return .bool(!(try eval(o, scope).truthy))
        case .and(let a, let b):
            let l = try eval(a, scope)
            return l.truthy ? try eval(b, scope) : l
        case .or(let a, let b):
            let l = try eval(a, scope)
            return l.truthy ? l : try eval(b, scope)
        case .binary(let op, let a, let b):
            return try Builtins.binary(op, try eval(a, scope), try eval(b, scope))
        case .concat(let items):
            return .string(try items.map { try eval($0, scope).pyStr }.joined())
        case .compare(let first, let ops):
            var left = try eval(first, scope)
            for (op, rhs) in ops {
                let right = try eval(rhs, scope)
                if !(try Builtins.compare(op, left, right)) { return .bool(false) }
                left = right
            }
            return .bool(true)
        case .cond(let test, let then, let otherwise):
            if try eval(test, scope).truthy { return try eval(then, scope) }
            if let otherwise { return try eval(otherwise, scope) }
            return .undef("the inline if-expression evaluated to false and no else section was defined.")
        }
    }
}
