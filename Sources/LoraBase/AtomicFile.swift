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
        let url = URL(fileURLWithPath: path)
        let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
        do { try data.write(to: tmp) } catch {
            try? FileManager.default.removeItem(at: tmp)
            throw WriteError(path: tmp.path, reason: SystemError.describe(error))
        }
        guard rename(tmp.path, url.path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(tmp.path)
            throw WriteError(path: path, reason: reason)
        }
    }

    public static func write(_ text: String, to path: String) throws { try write(Data(text.utf8), to: path) }
}

/// Foundation's errors in the project's own words (never "NSCocoaErrorDomain error 256").
public enum SystemError {
    public static func describe(_ error: Error) -> String {
        let ns = error as NSError
        if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(underlying.code)))
        }
        if ns.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(ns.code))) }
        return error.localizedDescription
    }
}
