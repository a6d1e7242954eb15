import Foundation

/// A whole file mapped read-only (mmap, MAP_PRIVATE); unmapped when the owner goes.
public final class MappedFile: @unchecked Sendable {
    public struct OpenError: Error, CustomStringConvertible {
        public let path: String
        public let reason: String
        public var description: String { "\(path): \(reason)" }
    }

    public let path: String
    public let base: UnsafeMutableRawPointer?
    public let size: Int

    /// Maps `path` (an empty file maps to no bytes).
    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw OpenError(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw OpenError(path: path, reason: String(cString: strerror(errno))) }
        if (st.st_mode & S_IFMT) == S_IFDIR { throw OpenError(path: path, reason: "is a directory, not a file") }
        size = Int(st.st_size)
        if size == 0 {
            base = nil
            return
        }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw OpenError(path: path, reason: "mmap failed: \(String(cString: strerror(errno)))")
        }
        base = p
    }

    /// Maps `path`, which must hold at least `minimumSize` bytes; the caller's errors for a
    /// file that cannot be opened or mapped (`ioError(reason)`) and for one too short (`tooShort(size)`).
    public static func map(_ path: String, atLeast minimumSize: Int, ioError: (String) -> Error,
                            tooShort: (Int) -> Error) throws -> MappedFile {
        let file: MappedFile
        do { file = try MappedFile(path: path) } catch let e as OpenError { throw ioError(e.reason) }
        guard file.size >= minimumSize else { throw tooShort(file.size) }
        return file
    }

    /// The mapped bytes (empty for an empty file), valid while this object lives: an owner
    /// keeps it in a stored property, a caller that does not uses `withBytes`.
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: size) }

    /// `body` over the bytes, the mapping kept alive until it returns.
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withExtendedLifetime(self) { try body(bytes) }
    }

    deinit { if let base { munmap(base, size) } }
}
