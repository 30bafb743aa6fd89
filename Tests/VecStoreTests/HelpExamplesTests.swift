import Foundation
import Testing
@testable import VecStore

/// One example of a help text: the command as shown (continuation lines included) and what it needs.
private struct HelpExample {
    /// The example's lines as printed, without the help's indentation of the first line.
    var script: String
    /// The example on one line (continuations joined), for its markers and for messages.
    var joined: String

    /// The exit status the help documents ("# exit status N"), else 0.
    var expectedStatus: Int32 {
        guard let range = joined.range(of: #"# .*exit status ([0-9]+)"#, options: .regularExpression) else { return 0 }
        return Int32(joined[range].split(separator: " ").last ?? "") ?? -1
    }

    /// The optional things the example is marked as needing ("# needs the model", "# needs rsvg-convert").
    var needs: [String] {
        guard let hash = joined.firstIndex(of: "#") else { return [] }
        return joined[hash...].components(separatedBy: "needs ").dropFirst()
            .map { $0.components(separatedBy: CharacterSet(charactersIn: ";,")).first ?? "" }
            .map { $0.trimmingCharacters(in: .whitespaces) }
    }
}

/// The lines of `help` that start with `vecstore ` (after indentation), each with its `\` continuations.
private func examples(in help: String) -> [HelpExample] {
    let lines = help.components(separatedBy: "\n")
    var result: [HelpExample] = []
    var i = 0
    while i < lines.count {
        let first = lines[i].trimmingCharacters(in: .whitespaces)
        i += 1
        guard first.hasPrefix("vecstore ") else { continue }
        var script = [first], joined = first
        while joined.hasSuffix("\\"), i < lines.count {
            script.append(lines[i])
            joined = String(joined.dropLast()).trimmingCharacters(in: .whitespaces) + " "
                + lines[i].trimmingCharacters(in: .whitespaces)
            i += 1
        }
        result.append(HelpExample(script: script.joined(separator: "\n"), joined: joined))
    }
    return result
}

/// The subcommand names listed in a help text's SUBCOMMANDS section, in order.
private func subcommands(in help: String) -> [String] {
    guard let section = help.components(separatedBy: "SUBCOMMANDS:\n").dropFirst().first else { return [] }
    var names: [String] = []
    for line in section.components(separatedBy: "\n") {
        if line.trimmingCharacters(in: .whitespaces).isEmpty { break }
        // Entries are indented by two spaces; wrapped descriptions by more.
        guard line.hasPrefix("  "), !line.hasPrefix("   "), let name = line.split(separator: " ").first else { continue }
        names.append(String(name))
    }
    return names
}

/// The help of `vecstore <path> --help` printed for a terminal `columns` wide.
private func help(_ path: [String], columns: Int) throws -> String {
    let r = try runProcess(vecstoreBinary, path + ["--help"], environment: ["COLUMNS": "\(columns)"])
    #expect(r.status == 0, "vecstore \((path + ["--help"]).joined(separator: " ")) exited \(r.status): \(r.stderr)")
    return r.stdout
}

/// Whether an executable named `name` is on PATH.
private func onPath(_ name: String) -> Bool {
    (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":")
        .contains { FileManager.default.isExecutableFile(atPath: "\($0)/\(name)") }
}

/// Issue 11 item 8: every example in `--help` runs as written against Samples/.
@Suite("--help examples")
struct HelpExamplesTests {
    @Test("every --help example runs as written, in command order, against Samples/ in a fresh directory")
    func helpExamplesRun() throws {
        // Every command, depth first in the order the help lists them: the top level, import, query, ...
        var commands: [[String]] = []
        func visit(_ path: [String]) throws {
            commands.append(path)
            for name in subcommands(in: try help(path, columns: 1000)) { try visit(path + [name]) }
        }
        try visit([])
        #expect(commands.count >= 20, "found only \(commands.count) commands: \(commands)")

        // What the examples are marked as needing, and whether this machine has it.
        let available: [String: Bool] = [
            "the model": (try? EmbeddingModels.locate(EmbeddingModels.miniLM.name)) != nil,
            "rsvg-convert": onPath("rsvg-convert"),
        ]

        let dir = try TempDir()
        try FileManager.default.copyItem(at: packageRoot.appendingPathComponent("Samples"),
                                         to: dir.url.appendingPathComponent("Samples"))
        let binDir = URL(fileURLWithPath: vecstoreBinary).deletingLastPathComponent().path
        let path = binDir + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
        var ran = 0, skipped: [String] = []
        for command in commands {
            let name = (["vecstore"] + command).joined(separator: " ")
            let wide = examples(in: try help(command, columns: 1000))
            // A reader's 80-column terminal shows the same lines: no example is wrapped.
            let narrow = examples(in: try help(command, columns: 80))
            #expect(narrow.map(\.joined) == wide.map(\.joined), "\(name) --help wraps an example at 80 columns")
            let isLeaf = subcommands(in: try help(command, columns: 1000)).isEmpty
            if isLeaf { #expect(!wide.isEmpty, "\(name) --help shows no example") }
            for example in wide {
                #expect(command.isEmpty || example.joined == name || example.joined.hasPrefix(name + " "),
                        "\(name) --help shows an example of another command: \(example.joined)")
                let needs = example.needs
                for need in needs { #expect(available[need] != nil, "unknown requirement '\(need)' in: \(example.joined)") }
                if needs.contains(where: { available[$0] != true }) {
                    skipped.append(example.joined)
                    continue
                }
                let r = try runProcess("/bin/sh", ["-c", example.script], in: dir.url, environment: ["PATH": path])
                #expect(r.status == example.expectedStatus,
                        "\(example.joined)\nexited \(r.status), documented \(example.expectedStatus)\n\(r.stderr)")
                ran += 1
            }
        }
        #expect(ran + skipped.count >= 40, "only \(ran + skipped.count) examples found")
        print("help examples: \(ran) ran, \(skipped.count) skipped (optional tool missing)")
    }
}
