import Foundation

/// The Jinja lexer and parser: any UTF-8 text either parses or gives a ChatTemplateError with a
/// line and column. (Rendering is reached through jsonl_sample with a real template; arbitrary
/// templates can legitimately loop or allocate without bound, so they are parsed only.)
func fuzzJinja(_ data: UnsafeBufferPointer<UInt8>) {
    guard let source = String(validating: data, as: UTF8.self) else { return }
    do {
        _ = try ChatTemplate(source: source, name: "fuzz.jinja")
    } catch let e as ChatTemplateError {
        precondition(e.line >= 1 && e.column >= 1, "a syntax error without a position: \(e)")
    } catch {}
}
