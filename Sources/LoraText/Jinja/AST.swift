import Foundation

// Syntax tree of a parsed template. Every expression and statement keeps its source location
// (1-based line and column) for error messages.

struct Arg {
    enum Kind { case positional, keyword(String), splat, kwsplat }
    var kind: Kind
    var value: Expr
}

/// Immutable after parsing, so templates can be shared across threads.
final class Expr: @unchecked Sendable {
    enum Kind {
        case literal(Value)
        case name(String)
        case list([Expr])
        case tuple([Expr])
        case dict([(Expr, Expr)])
        case getattr(Expr, String)
        case getitem(Expr, Expr)
        case slice(Expr, Expr?, Expr?, Expr?)
        case call(Expr, [Arg])
        /// `operand | name(args)`; a nil operand stands for the body of a filter block.
        case filter(Expr?, String, [Arg])
        case test(Expr, String, [Arg], negated: Bool)
        case neg(Expr)
        case pos(Expr)
        case not(Expr)
        case binary(String, Expr, Expr)
        case and(Expr, Expr)
        case or(Expr, Expr)
        case compare(Expr, [(String, Expr)])
        case concat([Expr])
        case cond(test: Expr, then: Expr, otherwise: Expr?)
    }
    let kind: Kind
    let loc: SrcLoc
    init(_ kind: Kind, _ loc: SrcLoc) {
        self.kind = kind
        self.loc = loc
    }
}

indirect enum Target {
    case name(String)
    case tuple([Target])
    /// `ns.attr` (namespace attribute assignment).
    case attr(String, String)
}

struct Macro {
    var name: String
    var params: [(String, Expr?)]
    var body: [Node]
}

final class Node: @unchecked Sendable {
    enum Kind {
        case text(String)
        case output(Expr)
        case ifs([(Expr, [Node])], otherwise: [Node]?)
        case forLoop(target: Target, iter: Expr, filter: Expr?, body: [Node], otherwise: [Node]?)
        case set(Target, Expr)
        /// `{% set x %}...{% endset %}` with optional filters applied to the body (nil-operand chain).
        case setBlock(Target, filter: Expr?, body: [Node])
        case macro(Macro)
        /// `{% call(params) callee(args) %}body{% endcall %}`.
        case callBlock(call: Expr, callerParams: [(String, Expr?)], body: [Node])
        case filterBlock(filter: Expr, body: [Node])
        case breakLoop
        case continueLoop
        /// transformers' `{% generation %}` block: renders its body unchanged; a render can record where (the assistant mask).
        case generation([Node])
    }
    let kind: Kind
    let loc: SrcLoc
    init(_ kind: Kind, _ loc: SrcLoc) {
        self.kind = kind
        self.loc = loc
    }
}
