import Foundation

/// Writes a file so that a reader never sees half of it: the bytes go to a
/// temporary file beside the destination (`.NAME.tmp-PID`), which rename(2) then
/// puts over the destination. On failure the temporary file is removed and the
/// destination is left as it was.
public enum AtomicFile {
    public struct WriteError: Error, CustomStringConvertible {
        /// The path that could not be written (the temporary one when the write failed).
        public let path: String
        public let reason: String
        public var description: String { "\(path): \(reason)" }
    }

    public static func write(_ data: Data, to path: String) throws {
        try replace(path) { try data.write(to: $0) }
    }

    public static func write(_ text: String, to path: String) throws { try write(Data(text.utf8), to: path) }

    /// The same, the bytes given piece by piece to `append` by `body` (a large file never held whole in memory).
    public static func write(to path: String, _ body: (_ append: (Data) throws -> Void) throws -> Void) throws {
        try replace(path) { tmp in
            guard FileManager.default.createFile(atPath: tmp.path, contents: nil) else {
                throw WriteError(path: tmp.path, reason: String(cString: strerror(errno)))
            }
            let h = try FileHandle(forWritingTo: tmp)
            defer { try? h.close() }
            try body { try h.write(contentsOf: $0) }
            try h.synchronize()
        }
    }

    /// A copy of the file at `source`, read and written in pieces of 4 MiB (an adapter with trained embeddings is
    /// gigabytes: never held whole in memory).
    public static func copy(from source: String, to path: String) throws {
        guard let h = FileHandle(forReadingAtPath: source) else {
            throw WriteError(path: source, reason: "cannot be read: " + String(cString: strerror(errno)))
        }
        defer { try? h.close() }
        try write(to: path) { append in
            while let piece = try h.read(upToCount: 4 << 20), !piece.isEmpty { try append(piece) }
        }
    }

    /// `fill` writes the temporary file beside `path`, which rename(2) then puts over `path`; on any failure the
    /// temporary file is removed and the error names it (a failed rename: `path`).
    private static func replace(_ path: String, _ fill: (URL) throws -> Void) throws {
        let url = URL(fileURLWithPath: path)
        let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
        do { try fill(tmp) } catch {
            try? FileManager.default.removeItem(at: tmp)
            // A file-system error names the temporary file; an error of the bytes' producer (a tensor read from a
            // device, say) is passed on as it is: the file was never the problem.
            let ns = error as NSError
            guard error is WriteError || ns.domain == NSCocoaErrorDomain || ns.domain == NSPOSIXErrorDomain else { throw error }
            throw error as? WriteError ?? WriteError(path: tmp.path, reason: SystemError.describe(error))
        }
        guard rename(tmp.path, url.path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(tmp.path)
            throw WriteError(path: path, reason: reason)
        }
    }
}

/// An error in the project's own words: an OS error as its strerror text ("No space left on
/// device", with the file when Foundation names one), never "NSCocoaErrorDomain error 256";
/// the project's own errors as they describe themselves.
public enum SystemError {
    public static func describe(_ error: Error) -> String {
        if let p = error as? POSIXError { return String(cString: strerror(p.code.rawValue)) }
        let ns = error as NSError
        if ns.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(truncatingIfNeeded: ns.code))) }
        if let u = ns.userInfo[NSUnderlyingErrorKey] as? NSError, u.domain == NSPOSIXErrorDomain {
            let file = (ns.userInfo[NSFilePathErrorKey] as? String).map { "\($0): " } ?? ""
            return file + String(cString: strerror(Int32(truncatingIfNeeded: u.code)))
        }
        guard ns.domain == NSCocoaErrorDomain else { return "\(error)" }
        // Foundation's own text is "The operation could not be completed. (NSCocoaErrorDomain error 256.)".
        switch ns.code {
        case NSFileNoSuchFileError, NSFileReadNoSuchFileError: return "no such file"
        case NSFileReadNoPermissionError, NSFileWriteNoPermissionError: return "permission denied"
        case NSFileWriteOutOfSpaceError: return "no space left on the device"
        case NSFileReadCorruptFileError, NSFileReadInapplicableStringEncodingError: return "not readable as text"
        default: return ns.code < NSFileWriteUnknownError ? "cannot read the file" : "cannot write the file"
        }
    }
}
