import Foundation
import PackagePlugin

/// Writes `BuildInfo.commit`, the git commit the CLI is built from (read from .git
/// without running git; "unknown" outside a checkout), for `lora-gpu --version`.
@main
struct BuildInfoPlugin: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let git = context.package.directoryURL.appending(path: ".git")
        var inputs: [URL] = []
        var commit = "unknown"
        let head = git.appending(path: "HEAD")
        if let text = try? String(contentsOf: head, encoding: .utf8) {
            inputs.append(head)
            let line = text.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.hasPrefix("ref: ") {
                let ref = String(line.dropFirst(5))
                let refFile = git.appending(path: ref)
                if let sha = try? String(contentsOf: refFile, encoding: .utf8) {
                    inputs.append(refFile)
                    commit = sha.trimmingCharacters(in: .whitespacesAndNewlines)
                } else if let packed = try? String(contentsOf: git.appending(path: "packed-refs"), encoding: .utf8),
                          let entry = packed.split(separator: "\n").first(where: { $0.hasSuffix(" " + ref) }) {
                    inputs.append(git.appending(path: "packed-refs"))
                    commit = String(entry.prefix { $0 != " " })
                }
            } else {
                commit = line
            }
        }
        let output = context.pluginWorkDirectoryURL.appending(path: "BuildInfo.swift")
        return [
            .buildCommand(
                displayName: "Recording the git commit \(commit.prefix(12))",
                executable: try context.tool(named: "EmbedKernels").url,
                arguments: ["--build-info", output.path, commit],
                inputFiles: inputs,
                outputFiles: [output])
        ]
    }
}
