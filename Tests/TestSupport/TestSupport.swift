import Foundation
import XCTest

// What the test targets share: where the fixtures are, fresh temporary
// directories, the error assertion, and the one way to run the built `lora-gpu` binary.

/// Asserts `body` throws and its message holds every part; returns the message (for docs/ERRORS.md:
/// LORA_GPU_PRINT_ERRORS=1 prints it).
@discardableResult
public func assertError(_ body: () throws -> Void, contains parts: [String], file: StaticString = #filePath,
                        line: UInt = #line) -> String {
    var text = ""
    XCTAssertThrowsError(try body(), file: file, line: line) { error in
        text = "\(error)"
        for p in parts { XCTAssertTrue(text.contains(p), "'\(text)' should mention '\(p)'", file: file, line: line) }
    }
    if ProcessInfo.processInfo.environment["LORA_GPU_PRINT_ERRORS"] != nil { print("ERROR-MESSAGE: \(text)") }
    return text
}

/// Tests/Fixtures.
public let testFixturesRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures").path

/// A fresh temporary directory `lora-gpu-TAG-UUID`; the caller removes it.
public func temporaryDirectory(_ tag: String) throws -> String {
    let d = FileManager.default.temporaryDirectory.appendingPathComponent("lora-gpu-\(tag)-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    return d
}

public struct CLIError: Error, CustomStringConvertible {
    public let description: String
}

/// The built `lora-gpu` binary, run as a user runs it.
public enum CLI {
    /// How a run ended and what it printed.
    public struct Run {
        public var reason: Process.TerminationReason
        public var status: Int32
        public var stdoutData: Data
        public var stderr: String
        public var stdout: String { String(decoding: stdoutData, as: UTF8.self) }
    }

    /// lora-gpu beside the test bundle (swift build --build-tests builds both).
    public static func binary() throws -> String {
        let bundle = Bundle.main.bundleURL
        let candidates = [bundle, bundle.deletingLastPathComponent(),
                          URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()]
            .map { $0.appendingPathComponent("lora-gpu").path }
        guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw CLIError(description: "lora-gpu is not built (looked at \(candidates.joined(separator: ", ")))")
        }
        return found
    }

    /// The test's environment with `changes` applied (a nil value removes the variable)
    /// and every variable starting with one of `dropping` removed.
    public static func environment(_ changes: [String: String?] = [:], dropping: [String] = []) -> [String: String] {
        var env = ProcessInfo.processInfo.environment.filter { v in !dropping.contains { v.key.hasPrefix($0) } }
        for (k, v) in changes { env[k] = v }
        return env
    }

    /// Starts `executable` (lora-gpu by default) with `args`; output to the files named
    /// (created empty), else discarded; stdin from a file, else empty.
    public static func start(_ args: [String], executable: String? = nil, environment: [String: String]? = nil,
                             stdout: String? = nil, stderr: String? = nil, stdin: String? = nil) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try executable ?? binary())
        p.arguments = args
        if let environment { p.environment = environment }
        func sink(_ path: String?) throws -> FileHandle {
            guard let path else { return FileHandle.nullDevice }
            if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
            let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            h.seekToEndOfFile()
            return h
        }
        p.standardOutput = try sink(stdout)
        p.standardError = stderr == stdout && stdout != nil ? p.standardOutput : try sink(stderr)
        p.standardInput = try stdin.map { try FileHandle(forReadingFrom: URL(fileURLWithPath: $0)) } ?? FileHandle.nullDevice
        try p.run()
        return p
    }

    /// Runs to the end with `stdin` as input; stdout and stderr through files, so nothing
    /// blocks on a full pipe (`mergeOutput`: stderr into stdout, in the order written).
    public static func run(_ args: [String], stdin: String = "", executable: String? = nil,
                           environment: [String: String]? = nil, mergeOutput: Bool = false) throws -> Run {
        let dir = try temporaryDirectory("cli-run")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try stdin.write(toFile: dir + "/in", atomically: true, encoding: .utf8)
        let p = try start(args, executable: executable, environment: environment, stdout: dir + "/out",
                          stderr: mergeOutput ? dir + "/out" : dir + "/err", stdin: dir + "/in")
        p.waitUntilExit()
        return Run(reason: p.terminationReason, status: p.terminationStatus,
                   stdoutData: (try? Data(contentsOf: URL(fileURLWithPath: dir + "/out"))) ?? Data(),
                   stderr: mergeOutput ? "" : (try? String(contentsOfFile: dir + "/err", encoding: .utf8)) ?? "")
    }
}
