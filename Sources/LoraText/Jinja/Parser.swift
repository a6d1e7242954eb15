import Foundation

// Recursive-descent parser following Jinja2's grammar and precedence:
//   conditional  a if c else b          or / and / not
//   comparisons  == != < <= > >= in, not in
//   + -   then ~   then * / // %   then **   then unary - +
//   postfix .attr [index] [a:b:c] (call), then | filter and `is` test (bind tighter than operators).
// Filter and test names are checked while parsing, as Jinja2 does when compiling.

struct Parser {
    var toks: [Token]
    var i = 0
    var loopDepth = 0
    /// Inside an if-statement or an inline if-expression (Jinja2's "soft" frame): a filter or
    /// test it does not know is an error only when it runs, not when the template is read.
    var soft = false
    /// Unknown filter and test names met so far; those outside soft frames fail the parse.
    var unknownNames: [(message: String, token: Token, soft: Bool)] = []
    /// Current recursion depth of expression and block parsing, bounded by maxDepth.
    var depth = 0
    static let maxDepth = 200

    init(tokens: [Token]) { toks = tokens }

    mutating func nest() throws {
        depth += 1
        if depth > Parser.maxDepth { throw fail("template nested deeper than \(Parser.maxDepth) levels") }
    }

    var cur: Token { toks[i] }
    func peek(_ n: Int = 1) -> Token { toks[min(i + n, toks.count - 1)] }
    mutating func advance() { if i < toks.count - 1 { i += 1 } }

    func fail(_ msg: String, _ t: Token? = nil) -> TemplateSyntaxError {
        TemplateSyntaxError(loc: (t ?? cur).loc, message: msg)
    }

    func describe(_ t: Token) -> String {
        switch t.kind {
        case .text: return "template text"
        case .variableBegin: return "'{{'"
        case .variableEnd: return "end of print statement '}}'"
        case .blockBegin: return "'{%'"
        case .blockEnd: return "end of statement block '%}'"
        case .name(let n): return "'\(n)'"
        case .string(let s): return "string \(PyFormat.stringRepr(s))"
        case .int(let v): return "integer \(v)"
        case .float(let d): return "float \(PyFormat.floatRepr(d))"
        case .op(let o): return "'\(o)'"
        case .eof: return "end of template"
        }
    }

    func isName(_ n: String, _ t: Token? = nil) -> Bool {
        if case .name(let x) = (t ?? cur).kind { return x == n }
        return false
    }
    func isOp(_ o: String, _ t: Token? = nil) -> Bool {
        if case .op(let x) = (t ?? cur).kind { return x == o }
        return false
    }
    mutating func skipName(_ n: String) -> Bool {
        if isName(n) { advance(); return true }
        return false
    }
    mutating func skipOp(_ o: String) -> Bool {
        if isOp(o) { advance(); return true }
        return false
    }
    mutating func expectOp(_ o: String) throws {
        guard skipOp(o) else { throw fail("unexpected \(describe(cur)), expected '\(o)'") }
    }
    mutating func expectName() throws -> String {
        guard case .name(let n) = cur.kind else { throw fail("unexpected \(describe(cur)), expected a name") }
        advance()
        return n
    }
    mutating func expectBlockEnd() throws {
        guard case .blockEnd = cur.kind else { throw fail("unexpected \(describe(cur)), expected end of statement block '%}'") }
        advance()
    }

    // MARK: Statements

    mutating func parseTemplate() throws -> [Node] {
        let (body, end) = try subparse(endNames: [])
        _ = end
        // As Jinja2's compiler: an unknown filter or test outside an if is an error now.
        if let u = unknownNames.first(where: { !$0.soft }) { throw fail(u.message, u.token) }
        return body
    }

    /// Parses nodes until `{% <one of endNames>` (left unconsumed: the current token is that name).
    mutating func subparse(endNames: [String]) throws -> ([Node], String?) {
        var body: [Node] = []
        while true {
            let t = cur
            switch t.kind {
            case .eof:
                if !endNames.isEmpty {
                    throw fail("unexpected end of template, expected " + endNames.map { "'\($0)'" }.joined(separator: " or "))
                }
                return (body, nil)
            case .text(let s):
                body.append(Node(.text(s), t.loc))
                advance()
            case .variableBegin:
                advance()
                let e = try parseTuple()
                guard case .variableEnd = cur.kind else {
                    throw fail("unexpected \(describe(cur)), expected end of print statement '}}'")
                }
                advance()
                body.append(Node(.output(e), t.loc))
            case .blockBegin:
                advance()
                if case .name(let n) = cur.kind, endNames.contains(n) { return (body, n) }
                if let node = try parseStatement(endNames: endNames) { body.append(node) }
                try expectBlockEnd()
            default:
                throw fail("unexpected \(describe(t))")
            }
        }
    }

    /// Body up to one of `endNames`: expects the `%}` of the opening tag first. Returns the end name.
    mutating func parseBody(_ endNames: [String]) throws -> ([Node], String) {
        _ = skipOp(":")
        try expectBlockEnd()
        let (body, end) = try subparse(endNames: endNames)
        return (body, end!)
    }

    mutating func parseStatement(endNames: [String]) throws -> Node? {
        try nest()
        defer { depth -= 1 }
        let t = cur
        guard case .name(let tag) = t.kind else { throw fail("tag name expected") }
        advance()
        switch tag {
        case "if": return try parseIf(t)
        case "for": return try parseFor(t)
        case "set": return try parseSet(t)
        case "macro": return try parseMacro(t)
        case "call": return try parseCallBlock(t)
        case "filter":
            let f = try parseFilter(nil, startInline: true)
            let wasSoft = soft
            soft = false  // inner frames (filter, call, set and macro blocks, loops) are not soft
            defer { soft = wasSoft }
            let (body, _) = try parseBody(["endfilter"])
            advance()
            return Node(.filterBlock(filter: f, body: body), t.loc)
        case "generation":
            let (body, _) = try parseBody(["endgeneration"])
            advance()
            return Node(.generation(body), t.loc)
        case "break", "continue":
            if loopDepth == 0 { throw fail("'\(tag)' outside of a loop", t) }
            return Node(tag == "break" ? .breakLoop : .continueLoop, t.loc)
        default:
            if !endNames.isEmpty {
                throw fail("unexpected tag '\(tag)', expected " + endNames.map { "'\($0)'" }.joined(separator: " or "), t)
            }
            throw fail("unknown tag '\(tag)'", t)
        }
    }

    mutating func parseIf(_ t: Token) throws -> Node {
        let wasSoft = soft
        soft = true
        defer { soft = wasSoft }
        var branches: [(Expr, [Node])] = []
        var otherwise: [Node]?
        var test = try parseTuple(withCondexpr: false)
        while true {
            let (body, end) = try parseBody(["elif", "else", "endif"])
            branches.append((test, body))
            advance()
            if end == "elif" {
                test = try parseTuple(withCondexpr: false)
                continue
            }
            if end == "else" {
                let (eb, _) = try parseBody(["endif"])
                advance()
                otherwise = eb
            }
            break
        }
        return Node(.ifs(branches, otherwise: otherwise), t.loc)
    }

    mutating func parseFor(_ t: Token) throws -> Node {
        let target = try parseAssignTarget(endNames: ["in"])
        guard skipName("in") else { throw fail("unexpected \(describe(cur)), expected 'in'") }
        let iter = try parseTuple(withCondexpr: false, endNames: ["recursive", "if"])
        var filter: Expr?
        if skipName("if") { filter = try parseExpression() }
        if isName("recursive") { throw fail("recursive loops are not supported") }
        loopDepth += 1
        let wasSoft = soft
        soft = false  // the loop body is an inner frame in Jinja2: not soft
        let (body, end) = try parseBody(["endfor", "else"])
        soft = wasSoft
        loopDepth -= 1
        advance()
        var otherwise: [Node]?
        if end == "else" {
            let (eb, _) = try parseBody(["endfor"])
            advance()
            otherwise = eb
        }
        return Node(.forLoop(target: target, iter: iter, filter: filter, body: body, otherwise: otherwise), t.loc)
    }

    mutating func parseSet(_ t: Token) throws -> Node {
        let target: Target
        if case .name(let n) = cur.kind, isOp(".", peek()), case .name(let attr) = peek(2).kind {
            advance(); advance(); advance()
            target = .attr(n, attr)
        } else {
            target = try parseAssignTarget(endNames: [])
        }
        if skipOp("=") {
            return Node(.set(target, try parseTuple()), t.loc)
        }
        var filter: Expr?
        if isOp("|") { filter = try parseFilter(nil, startInline: false) }
        let wasSoft = soft
        soft = false
        defer { soft = wasSoft }
        let (body, _) = try parseBody(["endset"])
        advance()
        return Node(.setBlock(target, filter: filter, body: body), t.loc)
    }

    mutating func parseSignature() throws -> [(String, Expr?)] {
        var params: [(String, Expr?)] = []
        try expectOp("(")
        while !isOp(")") {
            if !params.isEmpty { try expectOp(",") }
            if isOp(")") { break }
            let n = try expectName()
            var def: Expr?
            if skipOp("=") { def = try parseExpression() }
            params.append((n, def))
        }
        try expectOp(")")
        return params
    }

    mutating func parseMacro(_ t: Token) throws -> Node {
        let name = try expectName()
        let params = try parseSignature()
        let saved = loopDepth, wasSoft = soft
        loopDepth = 0
        soft = false
        let (body, _) = try parseBody(["endmacro"])
        loopDepth = saved
        soft = wasSoft
        advance()
        return Node(.macro(Macro(name: name, params: params, body: body)), t.loc)
    }

    mutating func parseCallBlock(_ t: Token) throws -> Node {
        let params = isOp("(") ? try parseSignature() : []
        let call = try parseExpression()
        guard case .call = call.kind else { throw fail("expected a call after 'call'", t) }
        let saved = loopDepth
        loopDepth = 0
        let wasSoft = soft
        soft = false
        defer { soft = wasSoft }
        let (body, _) = try parseBody(["endcall"])
        loopDepth = saved
        advance()
        return Node(.callBlock(call: call, callerParams: params, body: body), t.loc)
    }

    /// A name or a (possibly parenthesized) tuple of names.
    mutating func parseAssignTarget(endNames: [String]) throws -> Target {
        let e = try parseTuple(simplified: true, endNames: endNames)
        func convert(_ e: Expr) throws -> Target {
            switch e.kind {
            case .name(let n): return .name(n)
            case .tuple(let items): return .tuple(try items.map(convert))
            default: throw TemplateSyntaxError(loc: e.loc, message: "cannot assign to this expression")
            }
        }
        return try convert(e)
    }

    // MARK: Expressions

    func isTupleEnd(_ endNames: [String]) -> Bool {
        switch cur.kind {
        case .variableEnd, .blockEnd, .eof: return true
        case .op(let o): return o == ")"
        case .name(let n): return endNames.contains(n)
        default: return false
        }
    }

    /// Comma-separated expressions; a single one without a comma is returned as is.
    mutating func parseTuple(simplified: Bool = false, withCondexpr: Bool = true, endNames: [String] = [],
                             explicitParens: Bool = false) throws -> Expr {
        let loc = cur.loc
        var items: [Expr] = []
        var isTuple = false
        while true {
            if !items.isEmpty { try expectOp(",") }
            if isTupleEnd(endNames) { break }
            if simplified {
                items.append(try parsePrimary())
            } else {
                items.append(withCondexpr ? try parseExpression() : try parseOr())
            }
            if isOp(",") { isTuple = true } else { break }
        }
        if !isTuple {
            if let e = items.first { return e }
            if !explicitParens { throw fail("expected an expression, got \(describe(cur))") }
        }
        return Expr(.tuple(items), loc)
    }

    mutating func parseExpression() throws -> Expr {
        try nest()
        defer { depth -= 1 }
        let mark = unknownNames.count
        var e = try parseOr()
        while isName("if") {
            // An inline if-expression is a soft frame as a whole (its first operand included).
            for k in mark..<unknownNames.count { unknownNames[k].soft = true }
            let loc = cur.loc, wasSoft = soft
            soft = true
            defer { soft = wasSoft }
            advance()
            let test = try parseOr()
            var otherwise: Expr?
            if skipName("else") { otherwise = try parseExpression() }
            e = Expr(.cond(test: test, then: e, otherwise: otherwise), loc)
        }
        return e
    }

    mutating func parseOr() throws -> Expr {
        var left = try parseAnd()
        while isName("or") {
            let loc = cur.loc
            advance()
            left = Expr(.or(left, try parseAnd()), loc)
        }
        return left
    }

    mutating func parseAnd() throws -> Expr {
        var left = try parseNot()
        while isName("and") {
            let loc = cur.loc
            advance()
            left = Expr(.and(left, try parseNot()), loc)
        }
        return left
    }

    mutating func parseNot() throws -> Expr {
        try nest()
        defer { depth -= 1 }
        if isName("not") {
            let loc = cur.loc
            advance()
            return Expr(.not(try parseNot()), loc)
        }
        return try parseCompare()
    }

    mutating func parseCompare() throws -> Expr {
        let loc = cur.loc
        let first = try parseMath1()
        var ops: [(String, Expr)] = []
        while true {
            if case .op(let o) = cur.kind, ["==", "!=", "<", "<=", ">", ">="].contains(o) {
                advance()
                ops.append((o, try parseMath1()))
            } else if isName("in") {
                advance()
                ops.append(("in", try parseMath1()))
            } else if isName("not") && isName("in", peek()) {
                advance(); advance()
                ops.append(("not in", try parseMath1()))
            } else {
                break
            }
        }
        return ops.isEmpty ? first : Expr(.compare(first, ops), loc)
    }

    mutating func parseMath1() throws -> Expr {
        var left = try parseConcat()
        while case .op(let o) = cur.kind, o == "+" || o == "-" {
            let loc = cur.loc
            advance()
            left = Expr(.binary(o, left, try parseConcat()), loc)
        }
        return left
    }

    mutating func parseConcat() throws -> Expr {
        let loc = cur.loc
        var items = [try parseMath2()]
        while isOp("~") {
            advance()
            items.append(try parseMath2())
        }
        return items.count == 1 ? items[0] : Expr(.concat(items), loc)
    }

    mutating func parseMath2() throws -> Expr {
        var left = try parsePow()
        while case .op(let o) = cur.kind, ["*", "/", "//", "%"].contains(o) {
            let loc = cur.loc
            advance()
            left = Expr(.binary(o, left, try parsePow()), loc)
        }
        return left
    }

    mutating func parsePow() throws -> Expr {
        var left = try parseUnary()
        while isOp("**") {
            let loc = cur.loc
            advance()
            left = Expr(.binary("**", left, try parseUnary()), loc)
        }
        return left
    }

    mutating func parseUnary(withFilter: Bool = true) throws -> Expr {
        try nest()
        defer { depth -= 1 }
        let loc = cur.loc
        var node: Expr
        if isOp("-") {
            advance()
            node = Expr(.neg(try parseUnary(withFilter: false)), loc)
        } else if isOp("+") {
            advance()
            node = Expr(.pos(try parseUnary(withFilter: false)), loc)
        } else {
            node = try parsePrimary()
        }
        node = try parsePostfix(node)
        if withFilter { node = try parseFilterExpr(node) }
        return node
    }

    mutating func parsePrimary() throws -> Expr {
        let t = cur
        switch t.kind {
        case .name(let n):
            advance()
            switch n {
            case "true", "True": return Expr(.literal(.bool(true)), t.loc)
            case "false", "False": return Expr(.literal(.bool(false)), t.loc)
            case "none", "None": return Expr(.literal(.none), t.loc)
            default: return Expr(.name(n), t.loc)
            }
        case .string(var s):
            advance()
            while case .string(let more) = cur.kind {
                s += more
                advance()
            }
            return Expr(.literal(.string(s)), t.loc)
        case .int(let v):
            advance()
            return Expr(.literal(.int(v)), t.loc)
        case .float(let d):
            advance()
            return Expr(.literal(.double(d)), t.loc)
        case .op("("):
            advance()
            let e = try parseTuple(explicitParens: true)
            try expectOp(")")
            return e
        case .op("["):
            advance()
            var items: [Expr] = []
            while !isOp("]") {
                if !items.isEmpty { try expectOp(",") }
                if isOp("]") { break }
                items.append(try parseExpression())
            }
            try expectOp("]")
            return Expr(.list(items), t.loc)
        case .op("{"):
            advance()
            var items: [(Expr, Expr)] = []
            while !isOp("}") {
                if !items.isEmpty { try expectOp(",") }
                if isOp("}") { break }
                let k = try parseExpression()
                try expectOp(":")
                items.append((k, try parseExpression()))
            }
            try expectOp("}")
            return Expr(.dict(items), t.loc)
        default:
            throw fail("unexpected \(describe(t))")
        }
    }

    mutating func parsePostfix(_ start: Expr) throws -> Expr {
        var node = start
        while true {
            let t = cur
            if isOp(".") {
                advance()
                switch cur.kind {
                case .name(let n):
                    advance()
                    node = Expr(.getattr(node, n), t.loc)
                case .int(let v):
                    advance()
                    node = Expr(.getitem(node, Expr(.literal(.int(v)), t.loc)), t.loc)
                default:
                    throw fail("expected name or number after '.'")
                }
            } else if isOp("[") {
                advance()
                var args: [Expr] = []
                while !isOp("]") {
                    if !args.isEmpty { try expectOp(",") }
                    args.append(try parseSubscribed())
                }
                try expectOp("]")
                let index = args.count == 1 ? args[0] : Expr(.tuple(args), t.loc)
                if case .slice = index.kind {
                    // parseSubscribed built a slice over a placeholder: attach the object.
                    if case .slice(_, let a, let b, let c) = index.kind { node = Expr(.slice(node, a, b, c), t.loc) }
                } else {
                    node = Expr(.getitem(node, index), t.loc)
                }
            } else if isOp("(") {
                // Calls are located at the start of the callee (e.g. the `r` of raise_exception).
                node = Expr(.call(node, try parseCallArgs()), start.loc)
            } else {
                return node
            }
        }
    }

    /// An index or a slice `a:b:c` (parts optional). Slices come back as .slice over a placeholder.
    mutating func parseSubscribed() throws -> Expr {
        let loc = cur.loc
        var parts: [Expr?] = []
        if isOp(":") {
            advance()
            parts.append(nil)
        } else {
            let e = try parseExpression()
            if !isOp(":") { return e }
            advance()
            parts.append(e)
        }
        // stop
        if isOp("]") || isOp(",") {
            parts.append(nil)
        } else if isOp(":") {
            parts.append(nil)
        } else {
            parts.append(try parseExpression())
        }
        // step
        if skipOp(":") {
            if isOp("]") || isOp(",") { parts.append(nil) } else { parts.append(try parseExpression()) }
        } else {
            parts.append(nil)
        }
        let placeholder = Expr(.literal(.none), loc)
        return Expr(.slice(placeholder, parts[0], parts[1], parts[2]), loc)
    }

    mutating func parseCallArgs() throws -> [Arg] {
        try expectOp("(")
        var args: [Arg] = []
        while !isOp(")") {
            if !args.isEmpty { try expectOp(",") }
            if isOp(")") { break }
            if skipOp("*") {
                args.append(Arg(kind: .splat, value: try parseExpression()))
            } else if skipOp("**") {
                args.append(Arg(kind: .kwsplat, value: try parseExpression()))
            } else if case .name(let n) = cur.kind, isOp("=", peek()) {
                advance(); advance()
                args.append(Arg(kind: .keyword(n), value: try parseExpression()))
            } else {
                args.append(Arg(kind: .positional, value: try parseExpression()))
            }
        }
        try expectOp(")")
        return args
    }

    mutating func parseFilterExpr(_ start: Expr) throws -> Expr {
        var node = start
        while true {
            if isOp("|") {
                node = try parseFilter(node, startInline: false)
            } else if isName("is") {
                node = try parseTest(node)
            } else if isOp("(") {
                node = Expr(.call(node, try parseCallArgs()), start.loc)
            } else {
                return node
            }
        }
    }

    /// `| name(args)` chains; with startInline the first name has no leading '|'.
    mutating func parseFilter(_ operand: Expr?, startInline: Bool) throws -> Expr {
        var node = operand
        var inline = startInline
        while isOp("|") || inline {
            if !inline { advance() }
            inline = false
            let t = cur
            var name = try expectName()
            while isOp(".") {
                advance()
                name += "." + (try expectName())
            }
            if !Builtins.filterNames.contains(name) { unknownNames.append(("unknown filter '\(name)'", t, soft)) }
            let args = isOp("(") ? try parseCallArgs() : []
            node = Expr(.filter(node, name, args), t.loc)
        }
        return node!
    }

    mutating func parseTest(_ operand: Expr) throws -> Expr {
        let loc = cur.loc
        advance()  // 'is'
        let negated = skipName("not")
        let t = cur
        let name = try expectName()
        if !Builtins.testNames.contains(name) { unknownNames.append(("unknown test '\(name)'", t, soft)) }
        var args: [Arg] = []
        if isOp("(") {
            args = try parseCallArgs()
        } else {
            var startsPrimary = false
            switch cur.kind {
            case .name(let n): startsPrimary = !["else", "or", "and"].contains(n)
            case .string, .int, .float: startsPrimary = true
            case .op(let o): startsPrimary = o == "(" || o == "[" || o == "{"
            default: break
            }
            if startsPrimary {
                if isName("is") { throw fail("cannot chain multiple tests with 'is'") }
                let arg = try parsePostfix(try parsePrimary())
                args = [Arg(kind: .positional, value: arg)]
            }
        }
        return Expr(.test(operand, name, args, negated: negated), loc)
    }
}
