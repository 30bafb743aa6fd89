import ArgumentParser
import Foundation
import VecStore
import VecStoreIO

extension Metric: ExpressibleByArgument {
    public init?(argument: String) { self.init(name: argument) }
    public static var allValueStrings: [String] { Metric.allCases.map(\.description) }
}

struct ImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Import documents from JSONL, .fvecs/.bvecs or .npy files.",
        discussion: """
            JSONL lines look like {"id": "a", "vector": [0.1, ...], "text": "...", "metadata": {"year": 2024}}. \
            The first import into a new collection creates it with the dimension of the data. \
            Records with an id already stored replace it. Each batch is one transaction: on an invalid \
            record the import stops, earlier batches stay committed and the failing batch is not written \
            (--skip-invalid skips and reports bad records instead). An HNSW graph is linked in a few large \
            steps rather than once per batch; rows not yet linked are searched exactly, and a finished import \
            leaves none.

            Examples:
              vecstore import demo.vecstore -c docs Samples/docs.jsonl
              vecstore import demo.vecstore -c exact --index flat Samples/docs.jsonl
              vecstore import demo.vecstore -c compressed --index ivf-pq \\
                Samples/docs.jsonl
              vecstore import demo.vecstore -c small --pca 4 Samples/docs.jsonl
              vecstore import demo.vecstore -c quarter --traversal int8 Samples/docs.jsonl
              vecstore import demo.vecstore -c questions Samples/queries.jsonl \\
                --vectors Samples/queries.fvecs --stemmer none
              vecstore import demo.vecstore -c raw --metric l2 Samples/queries.fvecs \\
                --ids Samples/queries_ids.txt
              vecstore import demo.vecstore -c notes Samples/notes.jsonl \\
                --embed all-minilm-l6-v2     # text only: embeds "text"; needs the model

            --pca D stores a PCA fitted on the first --pca-sample records with the new collection and keeps \
            only the D-dimensional projections; documents and queries of the input dimension are projected \
            automatically (and renormalised under cosine). D must be less than the input dimension.

            --index ivf or ivf-pq: the collection is searched exactly while the import runs, and the index is \
            trained at its end, when the collection has at least nlist rows (and 16 or 256 for 4- or 8-bit PQ); \
            an import into a collection whose index is still untrained trains it too. Later imports assign \
            new rows to the trained lists.

            With --embed MODEL, records without a "vector" get one by embedding their text (all-MiniLM-L6-v2, \
            384-d, text truncated to 256 tokens); a new collection gets dimension 384, metric cosine and a \
            record of the model (name and checksum). Later imports into that collection embed the same way \
            without --embed; records that bring a vector must have dimension 384.
            """)

    @OptionGroup var target: StoreArguments

    @OptionGroup(title: "Keyword index") var textIndex: ImportTextOptions

    @Argument(help: "Input files (.jsonl, .fvecs, .bvecs, .npy).")
    var files: [String]

    @Option(help: "Metric of a new collection: cosine, l2 or dot.")
    var metric: Metric?

    @Option(help: "JSONL field holding the id (default: id, else _id).")
    var idField: String?

    @Option(help: "JSONL field holding the vector.")
    var vectorField = "vector"

    @Option(help: "JSONL field(s) holding text; several are joined with a newline.")
    var textField: [String] = ["text"]

    @Option(help: "JSONL field holding the metadata object.")
    var metadataField = "metadata"

    @Option(help: "Vector file (.fvecs/.bvecs/.npy) whose row i is the vector of JSONL line i.")
    var vectors: String?

    @Option(help: "Text file of ids, one per line, for vector files (default: row numbers).")
    var ids: String?

    @Option(help: "Records per transaction.")
    var batchSize = 10_000

    @Option(help: "Index of a new collection: hnsw (approximate, default), flat (exact only), ivf or ivf-pq (trained at the end of the import).")
    var index: IndexChoice = .hnsw

    @OptionGroup(title: "IVF (--index ivf or ivf-pq)") var ivf: IVFTrainingOptions

    @Option(help: "HNSW links per node of a new collection (layer 0 keeps 2·M).")
    var m = 16

    @Option(help: "HNSW beam width while building.")
    var efConstruction = 200

    @Option(help: "Threads that link rows into the HNSW graph (default: all cores).")
    var indexThreads: Int?

    @Option(help: "HNSW default beam width of searches.")
    var efSearch = 64

    @Option(help: "HNSW traversal copies of a new collection: f16 (default; half the float32 bytes) or int8 (a quarter; quantizer trained on the first batch).")
    var traversal: HNSWTraversal?

    @Option(help: "Metadata fields of a new collection that get HNSW filter links, comma-separated (e.g. source): filtered searches pinning one of them to a value walk that value's own links. Each field must hold one value per document.")
    var filterLinks: String?

    @Option(help: "Reduce a new collection's vectors to this many dimensions with PCA (less than the input's).")
    var pca: Int?

    @Option(help: "Records from the start of the input that the PCA of --pca is fitted on.")
    var pcaSample = 10_000

    @Option(help: "Embed the text of records without a vector with this model (all-minilm-l6-v2; see `vecstore model list`).")
    var embed: String?

    @Flag(help: "Skip invalid records and report them instead of stopping.")
    var skipInvalid = false

    @Flag(help: "Print nothing but errors.")
    var quiet = false

    func validate() throws {
        if batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
        if let pca, pca < 1 { throw ValidationError("--pca must be at least 1") }
        if pcaSample < 2 { throw ValidationError("--pca-sample must be at least 2") }
        if let indexThreads, indexThreads < 1 { throw ValidationError("--index-threads must be at least 1") }
        if traversal != nil && index != .hnsw { throw ValidationError("--traversal applies to --index hnsw only") }
        if filterLinks != nil && index != .hnsw { throw ValidationError("--filter-links applies to --index hnsw only") }
        try ivf.rejectPQOptions(pq: index == .ivfPQ)
        if ivf.ivfLists != nil && index != .ivf { throw ValidationError("--ivf-lists applies to --index ivf only") }
        if files.count > 1 && (vectors != nil || ids != nil) {
            throw ValidationError("--vectors and --ids go with a single input file")
        }
    }

    func run() throws {
        let existed = FileManager.default.fileExists(atPath: target.store)
        var committedAny = false
        defer {
            // A store file this command created and never wrote a record to is removed again, unless
            // another process has it open or has put a collection in it meanwhile.
            if !existed && !committedAny { VecStore.removeIfEmpty(path: target.store) }
        }
        try reportingErrors {
            // The model is loaded and checked before the store is touched: a missing or damaged model writes nothing.
            let model = try embed.map { try Embedder(model: $0) }
            let store = try target.open(readOnly: false)
            var options = ImportOptions()
            options.batchSize = batchSize
            options.skipInvalid = skipInvalid
            options.metric = metric ?? .cosine
            options.metricIsExplicit = metric != nil
            options.jsonl = JSONLReader.Options(idField: idField, vectorField: vectorField, textFields: textField,
                                                metadataField: metadataField)
            options.vectorsFile = vectors
            switch index {
            case .flat: options.index = .flat
            case .hnsw:
                options.index = .hnsw(HNSWParameters(m: m, efConstruction: efConstruction, efSearch: efSearch,
                                                     traversal: traversal ?? .f16,
                                                     filterLinks: filterLinkFields(filterLinks)))
            case .ivf, .ivfPQ:
                options.index = .ivf(ivf.parameters(pq: index == .ivfPQ))
            }
            options.idsFile = ids
            options.indexThreads = indexThreads
            options.pca = pca.map { PCAReduction(dimensions: $0, sampleSize: pcaSample) }
            options.textIndex = try textIndex.options(store, collection: target.collection)
            // A collection filled from text embeds later imports the same way.
            options.embedder = try model ?? (try? store.collection(target.collection))?.embedder()
            for file in files {
                var reader = try VecStore.reader(for: file, options: options)
                let bar = ProgressBar(enabled: !quiet && isatty(STDERR_FILENO) == 1, label: file)
                let report: ImportReport
                do throws(ImportFailure) {
                    report = try store.importRecords(from: &reader, into: target.collection, options: options,
                                                         progress: bar.update)
                } catch {
                    if error.committedRecords > 0 { committedAny = true }
                    throw error
                }
                bar.finish()
                if report.imported > 0 { committedAny = true }
                if !quiet {
                    let rate = report.seconds > 0 ? Double(report.imported) / report.seconds : 0
                    var created = report.createdCollection ? " (new collection)" : ""
                    if report.createdCollection, let p = try? store.collection(report.collection).pca {
                        let kept = p.explainedVarianceRatio.reduce(0, +) * 100
                        created = String(format: " (new collection, PCA %d → %d dimensions keeping %.1f%% of the variance of %d records)",
                                         p.inputDimension, p.outputDimension, kept, p.sampleCount)
                    }
                    print("\(file): imported \(report.imported) records into '\(report.collection)'"
                          + "\(created) in \(report.batches) batch(es), "
                          + String(format: "%.2f s, %.0f records/s", report.seconds, rate))
                    switch report.ivf {
                    case .trained(let r)?:
                        print(String(format: "trained IVF index: nlist=%d over %d rows (sample %d), coarse error %.4g",
                                     r.nlist, r.rows, r.trainingRows, r.coarseError)
                              + (r.codeError > 0 ? String(format: ", PQ error %.4g", r.codeError) : ""))
                    case .notTrained(let rows, let needed)?:
                        print("IVF index not trained: \(rows) rows, \(needed) needed; searched exactly until `vecstore index build`")
                    case nil: break
                    }
                    if report.skipped > 0 {
                        print("skipped \(report.skipped) invalid record(s):")
                        for line in report.skippedExamples { print("  \(line)") }
                        if report.skipped > report.skippedExamples.count {
                            print("  … and \(report.skipped - report.skippedExamples.count) more")
                        }
                    }
                }
            }
        }
    }
}

/// A one-line progress bar with rate and ETA, drawn on standard error only when it is a terminal.
final class ProgressBar {
    let enabled: Bool
    let label: String
    init(enabled: Bool, label: String) {
        self.enabled = enabled
        self.label = label
    }

    func update(_ p: ImportProgress) {
        guard enabled else { return }
        let rate = p.elapsed > 0 ? Double(max(p.committed, p.embedded)) / p.elapsed : 0
        let embedding = p.embedded > 0 ? " (\(p.embedded) embedded)" : ""
        var line = "\(label): \(p.committed) records\(embedding), \(Int(rate)) records/s"
        if let total = p.totalBytes, total > 0 {
            let fraction = min(1, Double(p.bytesRead) / Double(total))
            let width = 30
            let filled = Int(fraction * Double(width))
            let eta = fraction > 0 ? p.elapsed * (1 - fraction) / fraction : 0
            line = "\(label) [" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
                + "] \(Int(fraction * 100))% \(p.committed) records\(embedding), \(Int(rate))/s, ETA \(Int(eta.rounded())) s"
        }
        FileHandle.standardError.write(Data(("\r\u{1B}[K" + line).utf8))
    }

    func finish() {
        if enabled { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    }
}

/// `--index` values.
enum IndexChoice: String, ExpressibleByArgument, CaseIterable {
    case hnsw, flat, ivf
    case ivfPQ = "ivf-pq"
}
