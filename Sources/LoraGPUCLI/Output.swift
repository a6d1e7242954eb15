import Foundation
import LoraBase

/// What the inference commands (predict, embed) share: a counter on a terminal's
/// stderr while they work, and their output to a file (atomically) or stdout.
enum CommandOutput {
    /// `verb done/all` rewritten in place on a terminal's stderr (nothing otherwise).
    static func counter(_ verb: String) -> (Int, Int) -> Void {
        { done, all in if isatty(2) != 0 { FileHandle.standardError.write(Data("\r\u{1B}[K\(verb) \(done)/\(all)".utf8)) } }
    }

    /// Clears the counter's line.
    static func endCounter() {
        if isatty(2) != 0 { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    }

    /// `data` to `path` (whole or not at all, with "wrote N <what> to PATH" on stderr), or to stdout.
    static func write(_ data: Data, to path: String?, count: Int, what: String) throws {
        guard let path else { return FileHandle.standardOutput.write(data) }
        try AtomicFile.write(data, to: path)
        FileHandle.standardError.write(Data("wrote \(count) \(what) to \(path)\n".utf8))
    }
}
