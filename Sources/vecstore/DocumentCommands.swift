import ArgumentParser
import Foundation
import VecStore
import VecStoreIO

/// JSON object of one document, as `get` and `export` print it.
func documentJSON(_ doc: Document) -> JSONValue {
    var object: [String: JSONValue] = ["id": .string(doc.id), "vector": .array(doc.vector.map { .number(shortestDouble($0)) })]
    if let text = doc.text { object["text"] = .string(text) }
    if !doc.metadata.isEmpty { object["metadata"] = .object(doc.metadata) }
    return .object(object)
}

struct GetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "get", abstract: "Print stored documents as JSONL.",
        discussion: """
            Exits with status 1 if an id is not stored (the others are still printed).
            Examples:
              vecstore get demo.vecstore -c docs cooking/risotto/tip astronomy/mars/tip
              vecstore get demo.vecstore -c docs astronomy/pluto/overview   # exit status 1
            """)

    @OptionGroup var target: StoreArguments
    @Argument(help: "Document ids.") var ids: [String]

    func run() throws {
        try reportingErrors {
            let docs = try target.open().collection(target.collection).get(ids: ids)
            var missing = 0
            for (id, doc) in zip(ids, docs) {
                if let doc { print(documentJSON(doc).serialized()) } else {
                    printError("not found: \(id)")
                    missing += 1
                }
            }
            if missing > 0 { throw ExitCode.failure }
        }
    }
}

struct DeleteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete", abstract: "Delete documents by id (one transaction).",
        discussion: """
            Deleted documents disappear from every search at once; their space is reclaimed by compact.
            Examples:
              vecstore delete demo.vecstore -c docs travel/museum-passes/tip
              vecstore delete demo.vecstore -c questions --ids-file Samples/queries_ids.txt
            """)

    @OptionGroup var target: StoreArguments
    @Argument(help: "Document ids.") var ids: [String] = []
    @Option(help: "File with one id per line.") var idsFile: String?

    func validate() throws {
        if ids.isEmpty && idsFile == nil { throw ValidationError("give ids or --ids-file") }
    }

    func run() throws {
        try reportingErrors {
            var all = ids
            if let idsFile {
                var reader = try IdListReader(path: idsFile)
                while let id = try reader.next() { all.append(id) }
            }
            let deleted = try target.open(readOnly: false).collection(target.collection).delete(ids: all)
            print("deleted \(deleted) of \(all.count) id(s)")
        }
    }
}

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export", abstract: "Write a collection's documents as JSONL or .fvecs.",
        discussion: """
            JSONL lines carry id, vector, text and metadata and can be imported again.
            Examples:
              vecstore export demo.vecstore -c docs > docs-export.jsonl
              vecstore export demo.vecstore -c docs --format fvecs -o docs.fvecs
            """)

    enum ExportFormat: String, ExpressibleByArgument, CaseIterable { case jsonl, fvecs }

    @OptionGroup var target: StoreArguments
    @Option(name: .shortAndLong, help: "Output file (default: standard output).") var output: String?
    @Option(help: "jsonl or fvecs.") var format: ExportFormat = .jsonl

    func run() throws {
        try reportingErrors {
            let collection = try target.open().collection(target.collection)
            let handle: FileHandle
            if let output {
                guard FileManager.default.createFile(atPath: output, contents: nil) else {
                    throw VecStoreError.io("cannot create \(output)")
                }
                guard let h = FileHandle(forWritingAtPath: output) else { throw VecStoreError.io("cannot open \(output)") }
                handle = h
            } else {
                handle = FileHandle.standardOutput
            }
            var count = 0
            try collection.forEachBatch(batchSize: 1000) { docs in
                var bytes: [UInt8] = []
                for doc in docs {
                    switch format {
                    case .jsonl:
                        documentJSON(doc).serialized(into: &bytes)
                        bytes.append(0x0A)
                    case .fvecs:
                        withUnsafeBytes(of: Int32(doc.vector.count).littleEndian) { bytes.append(contentsOf: $0) }
                        doc.vector.withUnsafeBytes { bytes.append(contentsOf: $0) }
                    }
                }
                handle.write(Data(bytes))
                count += docs.count
            }
            if output != nil {
                try handle.close()
                printError("exported \(count) documents to \(output ?? "")")
            }
        }
    }
}

/// The double that prints like `x` does as a Float (0.047946, not 0.04794599860906601), so exported
/// vectors are as short as their float32 values allow and parse back to the same float.
func shortestDouble(_ x: Float) -> Double {
    Double(x.description) ?? Double(x)
}
