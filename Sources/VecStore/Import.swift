import Foundation
import VecStoreEmbed
import VecStoreIO
import VecStoreKernels

/// What to import and how.
public struct ImportOptions: Sendable {
    /// Records per transaction. Each batch commits whole or not at all.
    public var batchSize = 10_000
    /// Skip invalid records (and report them) instead of stopping at the first.
    public var skipInvalid = false
    /// Metric for a collection that the import creates.
    public var metric: Metric = .cosine
    /// Index of a collection that the import creates (HNSW by default).
    public var index: IndexKind = .hnswDefault
    /// Whether `metric` was chosen explicitly (then an existing collection must have it).
    public var metricIsExplicit = false
    /// JSONL field names.
    public var jsonl = JSONLReader.Options()
    /// A text file of ids, one per line, for vector files (`.fvecs`, `.bvecs`, `.npy`).
    public var idsFile: String?
    /// A vector file whose row *i* is the vector of JSONL line *i* (for JSONL without vectors).
    public var vectorsFile: String?
    /// First id given to rows of a vector file without an ids file (ids are row numbers from here).
    public var firstRowID = 0
    /// Keyword-index options: set on a collection the import creates, or applied to an existing one
    /// (re-analysing its texts) when they differ. Nil leaves the collection's options as they are.
    public var textIndex: TextIndexOptions?
    /// Dimensionality reduction of a collection the import creates: a PCA fitted on the first records is
    /// stored with the collection, and only projected vectors are kept (Spec/PCA.md). Importing into an
    /// existing collection requires it to have been created with the same reduction.
    public var pca: PCAReduction?
    /// Embeds the text of records that bring no vector with this model (records with a vector keep it,
    /// and must have the model's dimension). A collection the import creates gets the model's dimension,
    /// the cosine metric and an embedder record (Spec/EMBEDDER.md); an existing collection must have
    /// been created with the same model (`VectorCollection.embedder()` gives it back for later imports).
    public var embedder: Embedder?
    /// Texts per encoder batch when embedding.
    public var embedBatchSize = Embedder.defaultBatchSize
    /// Threads for embedding (default: all cores).
    public var embedThreads: Int?
    /// Threads that link rows into an HNSW graph and analyse a batch's texts for the keyword index (default:
    /// all cores; 1 links and analyses serially).
    public var indexThreads: Int?
    /// When an HNSW collection's batches are linked into its graph (Spec/HNSW.md §4.1); tests lower
    /// the thresholds to exercise several steps on small inputs.
    var tailPolicy = HNSWTailPolicy()
    /// Creates default options.
    public init() {}
}

/// How an import reduces the vectors of a collection it creates.
public struct PCAReduction: Sendable, Equatable {
    /// Dimension of the stored vectors: at least 1 and less than the input dimension.
    public var dimensions: Int
    /// How many records from the start of the input the PCA is fitted on (held in memory until then);
    /// more than `dimensions` are needed.
    public var sampleSize: Int
    /// Creates a reduction to `dimensions`, fitted on the first `sampleSize` records.
    public init(dimensions: Int, sampleSize: Int = 10_000) {
        self.dimensions = dimensions
        self.sampleSize = sampleSize
    }
}

/// Progress of a running import.
public struct ImportProgress: Sendable {
    /// Records committed.
    public var committed: Int
    /// Records skipped as invalid.
    public var skipped: Int
    /// Input bytes consumed and the total (when known).
    public var bytesRead: UInt64
    /// Total input bytes, when known.
    public var totalBytes: UInt64?
    /// Seconds since the start.
    public var elapsed: Double
    /// Texts embedded so far (with `ImportOptions.embedder`), including those of the batch being embedded.
    public var embedded: Int
    /// Creates a progress report.
    public init(committed: Int, skipped: Int, bytesRead: UInt64, totalBytes: UInt64?, elapsed: Double, embedded: Int = 0) {
        self.committed = committed
        self.skipped = skipped
        self.bytesRead = bytesRead
        self.totalBytes = totalBytes
        self.elapsed = elapsed
        self.embedded = embedded
    }
}

/// What an import did.
public struct ImportReport: Sendable {
    /// Collection written to.
    public var collection: String
    /// Whether the import created the collection.
    public var createdCollection: Bool
    /// Records written.
    public var imported: Int
    /// Batches committed.
    public var batches: Int
    /// Records skipped with `skipInvalid`.
    public var skipped: Int
    /// The first skipped records' reasons (at most 20).
    public var skippedExamples: [String]
    /// Wall-clock seconds.
    public var seconds: Double
    /// When the collection has an IVF index that was not trained (one the import created, or one an earlier
    /// import left untrained): whether the import trained it at its end.
    public var ivf: IVFImportOutcome?
}

/// Whether an import trained the IVF index of the collection it created.
public enum IVFImportOutcome: Sendable {
    /// Trained over the imported rows.
    case trained(IVFBuildReport)
    /// Too few rows to train (`rows` < `needed`): the collection is searched exactly until `buildIVF`.
    case notTrained(rows: Int, needed: Int)
}

/// An import stopped at an invalid record or a storage error. Whole batches before the failing one
/// are committed; the failing batch was not written.
public struct ImportFailure: Error, Sendable, CustomStringConvertible {
    /// The cause.
    public var error: VecStoreError
    /// Records committed before the failing batch.
    public var committedRecords: Int
    /// Batches committed before the failing batch.
    public var committedBatches: Int
    /// A readable message naming the cause and what was committed.
    public var description: String {
        let state = committedBatches == 0
            ? "nothing was written: the store is exactly as before the import"
            : "\(committedBatches) earlier batch(es) with \(committedRecords) records were committed; the failing batch was not written"
        return "\(error)\nimport stopped: \(state)"
    }
}

/// Pairs JSONL records without vectors with the rows of a vector file.
struct VectorAttachingReader<Records: RecordReader, Vectors: RecordReader>: RecordReader {
    var records: Records
    var vectors: Vectors
    let vectorsPath: String

    var bytesRead: UInt64 { records.bytesRead }
    var totalBytes: UInt64? { records.totalBytes }
    var dimension: Int? { vectors.dimension }

    mutating func next() throws(ImportError) -> ImportRecord? {
        let record = try records.next()
        let row = try vectors.next()
        switch (record, row) {
        case (nil, nil): return nil
        case (var r?, let v?):
            r.vector = v.vector
            return r
        case (let r?, nil):
            throw ImportError(location: r.location, reason: "\(vectorsPath) has fewer vectors than there are records")
        case (nil, let v?):
            throw ImportError(location: v.location, reason: "\(vectorsPath) has more vectors than there are records")
        }
    }
}

/// A concrete wrapper around any reader, so readers chosen at run time compose with generic ones.
struct AnyRecordReader: RecordReader {
    var base: any RecordReader
    init(_ base: any RecordReader) { self.base = base }
    var bytesRead: UInt64 { base.bytesRead }
    var totalBytes: UInt64? { base.totalBytes }
    var dimension: Int? { base.dimension }
    mutating func next() throws(ImportError) -> ImportRecord? { try base.next() }
}

/// Rows of a vector file with ids counted from a start value.
struct NumberingReader<Base: RecordReader>: RecordReader {
    var base: Base
    var nextID: Int
    var bytesRead: UInt64 { base.bytesRead }
    var totalBytes: UInt64? { base.totalBytes }
    var dimension: Int? { base.dimension }
    mutating func next() throws(ImportError) -> ImportRecord? {
        guard var r = try base.next() else { return nil }
        if r.id == nil {
            r.id = String(nextID)
        }
        nextID += 1
        return r
    }
}

extension VecStore {
    /// Opens the right reader for `path` (by extension, or `format`), applying the sidecar options.
    public static func reader(for path: String, format: VectorFileFormat? = nil, options: ImportOptions) throws(VecStoreError)
        -> any RecordReader
    {
        guard let format = format ?? VectorFileFormat.detectFormat(path: path) else {
            throw .invalidArgument("\(path): unknown file type; use .jsonl, .fvecs, .bvecs or .npy (or name the format)")
        }
        do {
            switch format {
            case .jsonl:
                var jsonl = options.jsonl
                if options.embedder != nil { jsonl.vectorRequired = false }
                if let vectorsFile = options.vectorsFile {
                    jsonl.vectorRequired = false
                    let records = try JSONLReader(path: path, options: jsonl)
                    let vectors = try binaryReader(vectorsFile, VectorFileFormat.detectFormat(path: vectorsFile))
                    return VectorAttachingReader(records: records, vectors: vectors, vectorsPath: vectorsFile)
                }
                return try JSONLReader(path: path, options: jsonl)
            case .fvecs, .bvecs, .npy:
                let rows = try binaryReader(path, format)
                if let idsFile = options.idsFile {
                    return IdAttachingReader(base: rows, ids: try IdListReader(path: idsFile))
                }
                return NumberingReader(base: rows, nextID: options.firstRowID)
            }
        } catch let e as ImportError {
            throw .invalidInput(e)
        } catch let e as VecStoreError {
            throw e
        } catch {
            throw .io("\(error)")
        }
    }

    private static func binaryReader(_ path: String, _ format: VectorFileFormat?) throws -> AnyRecordReader {
        switch format {
        case .fvecs: return AnyRecordReader(try FvecsReader(path: path, format: .fvecs))
        case .bvecs: return AnyRecordReader(try FvecsReader(path: path, format: .bvecs))
        case .npy: return AnyRecordReader(try NpyReader(path: path))
        default: throw VecStoreError.invalidArgument("\(path): vectors must be .fvecs, .bvecs or .npy")
        }
    }

    /// Streams records from `reader` into `collection` (created from the first record's dimension if
    /// missing), `options.batchSize` per transaction, upserting by id. Memory stays constant: one batch
    /// is held at a time. On an invalid record the import stops (throwing `ImportFailure`, earlier
    /// batches committed) unless `options.skipInvalid` is set.
    public func importRecords(from reader: inout some RecordReader, into collection: String,
                              options: ImportOptions = ImportOptions(),
                              progress: ((ImportProgress) -> Void)? = nil) throws(ImportFailure) -> ImportReport {
        let started = Date()
        var report = ImportReport(collection: collection, createdCollection: false, imported: 0, batches: 0, skipped: 0,
                                  skippedExamples: [], seconds: 0)
        var target: VectorCollection?
        var batch: [CollectionWriter.Prepared] = []
        var seen = Set<String>()
        var lastLocation: SourceLocation?
        // Records read ahead to fit a PCA (`options.pca`), handed out again before the reader's.
        var readAhead: ArraySlice<ImportRecord> = []
        // Records of `batch` whose vector is still to be embedded: (index in batch, text, location).
        var pending: [(index: Int, text: String, location: SourceLocation)] = []
        var embedded = 0

        // A new collection is created in the transaction of the first batch: a failure before that
        // commits leaves the store exactly as before, and of several importers creating the same
        // collection at once exactly one reports it as new.
        var pendingCreation = false
        func fail(_ e: VecStoreError) -> ImportFailure {
            ImportFailure(error: e, committedRecords: report.imported, committedBatches: report.batches)
        }
        func skip(_ message: String) {
            report.skipped += 1
            if report.skippedExamples.count < 20 { report.skippedExamples.append(message) }
        }
        func embedPending(_ target: VectorCollection) throws(ImportFailure) {
            guard let embedder = options.embedder, !pending.isEmpty else { return }
            let texts = pending.map(\.text)
            let base = embedded
            let imported = report.imported, skipped = report.skipped
            let bytes = reader.bytesRead, total = reader.totalBytes
            let vectors: [[Float]]
            do {
                vectors = try embedder.embed(texts, batchSize: options.embedBatchSize, threads: options.embedThreads) { done, _ in
                    progress?(ImportProgress(committed: imported, skipped: skipped, bytesRead: bytes, totalBytes: total,
                                             elapsed: Date().timeIntervalSince(started), embedded: base + done))
                }
            } catch { throw fail(.embedding(error)) }
            for (p, vector) in zip(pending, vectors) {
                do {
                    let (stored, norm) = try target.storedForm(vector, id: batch[p.index].id)
                    batch[p.index].stored = stored
                    batch[p.index].norm = norm
                } catch {
                    throw fail(.invalidInput(ImportError(location: p.location, reason: "\(error)")))
                }
            }
            embedded += pending.count
            pending.removeAll(keepingCapacity: true)
        }
        /// Commits `batch`. `last` says no record follows it: its graph update then links the whole tail,
        /// where earlier batches add their rows to it and link it only in large steps (Spec/HNSW.md §4.1).
        func flush(last: Bool) throws(ImportFailure) {
            guard let current = target, !batch.isEmpty else { return }
            try embedPending(current)
            let prepared = batch
            let creating = pendingCreation
            do {
                let (record, created) = try write { txn -> (CollectionRecord, Bool) in
                    var record: CollectionRecord
                    var created = false
                    if creating {
                        (record, created) = try findOrCreate(txn, collection, dimension: current.dimension,
                                                             metric: current.metric, index: options.index,
                                                             projection: current.projection,
                                                             embedder: options.embedder.map(EmbedderInfo.init))
                    } else {
                        record = try current.currentRecord(txn)
                    }
                    var writer = try CollectionWriter(txn, dbs, name: collection, record: record)
                    // Batches join the graph's unlinked tail, linked in large steps and at the end
                    // (Spec/HNSW.md §4.1), instead of rewriting the whole graph in every batch.
                    writer.indexLinking = IndexLinking(mode: last ? .all : .deferred, policy: options.tailPolicy)
                    if let threads = options.indexThreads { writer.indexThreads = max(1, threads) }
                    if created, let text = options.textIndex { writer.text.setOptions(text) }
                    // An IVF index is trained once, at the end, on every imported row (a batch crossing the
                    // training threshold would train on the first batches only).
                    if created, case .ivf = options.index { try IVFIndexKind.deferTraining(txn, dbs, record) }
                    try writer.append(prepared, replace: true)
                    try writer.finish()
                    return (record, created)
                }
                if creating {
                    target = VectorCollection(store: self, name: collection, record: record,
                                              projection: current.projection)
                    report.createdCollection = created
                    pendingCreation = false
                }
            } catch { throw fail(error) }
            report.imported += batch.count
            report.batches += 1
            batch.removeAll(keepingCapacity: true)
            seen.removeAll(keepingCapacity: true)
            progress?(ImportProgress(committed: report.imported, skipped: report.skipped, bytesRead: reader.bytesRead,
                                     totalBytes: reader.totalBytes, elapsed: Date().timeIntervalSince(started),
                                     embedded: embedded))
        }

        /// The reader's next record, skipping unreadable ones when `options.skipInvalid` allows it.
        func readRecord() throws(ImportFailure) -> ImportRecord? {
            while true {
                do {
                    return try reader.next()
                } catch {
                    // Line-based input can go on after a bad line; a damaged binary file cannot.
                    if options.skipInvalid, let line = error.location?.line, line != lastLocation?.line {
                        lastLocation = error.location
                        skip(error.description)
                        continue
                    }
                    // A full batch waiting for the next record is committed before the import stops.
                    if batch.count >= options.batchSize { try flush(last: true) }
                    throw fail(.invalidInput(error))
                }
            }
        }

        /// The collection the first record goes to: the existing one, or a provisional handle of the one
        /// the first batch creates (with a PCA fitted on records read ahead from `first` on).
        func openTarget(for first: ImportRecord) throws(ImportFailure) -> VectorCollection {
            do {
                let existing = try existingCollection(collection)
                var projection: ProjectionRecord?
                if let reduction = options.pca, existing == nil {
                    if options.embedder != nil {
                        throw VecStoreError.invalidArgument("a reduced collection cannot be created from embedded text "
                            + "in one import yet: embed the text first, then import the vectors with the reduction")
                    }
                    // Read ahead the records the PCA is fitted on; they are imported next, as usual.
                    var sample = [first]
                    while sample.count < reduction.sampleSize, let r = try readRecord() { sample.append(r) }
                    projection = try Self.fitProjection(sample, dimension: first.vector.count, reduction: reduction,
                                                        metric: options.metric)
                    readAhead = sample.dropFirst()
                }
                let dimension = options.embedder?.dimension ?? first.vector.count
                pendingCreation = existing == nil
                return try prepareTarget(collection, existing: existing, dimension: dimension, options: options,
                                         projection: projection)
            } catch let e as ImportFailure {
                throw e
            } catch let e as VecStoreError {
                throw fail(e)
            } catch {
                throw fail(.io("\(error)"))
            }
        }

        while true {
            let record: ImportRecord
            if let r = readAhead.popFirst() {
                record = r
                if readAhead.isEmpty { readAhead = [] }  // frees the sample
            } else {
                guard let r = try readRecord() else { break }
                record = r
            }
            lastLocation = record.location
            if target == nil { target = try openTarget(for: record) }
            guard let target else { break }
            // A full batch is committed once the next record has been read, so the last batch is known.
            if batch.count >= options.batchSize { try flush(last: false) }
            let id = record.id ?? String(record.location.record)
            do {
                try VectorCollection.validateID(id)
                if seen.contains(id) { throw VecStoreError.duplicateIDInBatch(id) }
                var (stored, norm): ([Float], Float) = ([], 0)
                if record.vector.isEmpty, options.embedder != nil {
                    guard let text = record.text else {
                        throw VecStoreError.invalidArgument("record has neither a vector nor text to embed")
                    }
                    pending.append((batch.count, text, record.location))
                } else {
                    (stored, norm) = try target.storedForm(record.vector, id: id)
                }
                let metadata = record.metadata ?? [:]
                var json: [UInt8] = []
                if !metadata.isEmpty {
                    try VectorCollection.validateMetadata(metadata, id: id)
                    JSONValue.object(metadata).serialized(into: &json)
                }
                seen.insert(id)
                batch.append(.init(id: id, stored: stored, norm: norm, text: record.text, metadata: metadata,
                                   metadataJSON: json))
            } catch {
                let located = ImportError(location: record.location, reason: String(describing: error))
                if options.skipInvalid {
                    skip(located.description)
                    continue
                }
                throw fail(.invalidInput(located))
            }
        }
        try flush(last: true)
        if let target { report.ivf = try trainImported(target, report: report) }
        report.seconds = Date().timeIntervalSince(started)
        return report
    }

    /// At the end of an import, trains the collection's IVF index if it has one that is not trained yet
    /// (Spec/IVF.md §5 "When an index is trained"): when it has the rows the parameters need; otherwise it
    /// stays searched exactly and the outcome says why. Nil when the collection has no untrained IVF index.
    private func trainImported(_ target: VectorCollection, report: ImportReport) throws(ImportFailure)
        -> IVFImportOutcome?
    {
        do {
            guard let parameters = try target.untrainedIVF() else { return nil }
            let live = try target.count()
            let nlist = parameters.nlist ?? IVFParameters.defaultNlist(rows: live)
            let need = parameters.minimumRows(nlist: nlist)
            guard live >= need else { return .notTrained(rows: live, needed: need) }
            return .trained(try target.buildIVF(parameters))
        } catch {
            throw ImportFailure(error: error, committedRecords: report.imported, committedBatches: report.batches)
        }
    }

    /// The collection `name`, or nil when there is none.
    private func existingCollection(_ name: String) throws(VecStoreError) -> VectorCollection? {
        do {
            return try collection(name)
        } catch .collectionNotFound {
            return nil
        }
    }

    /// Checks `existing` (the collection `name`, or nil) against the import's options and returns the
    /// collection to import into; a missing one is returned as a provisional handle (its record is
    /// created by the first batch, `findOrCreate`).
    private func prepareTarget(_ name: String, existing: VectorCollection?, dimension: Int, options: ImportOptions,
                               projection: ProjectionRecord?) throws(VecStoreError) -> VectorCollection
    {
        if let embedder = options.embedder, options.metricIsExplicit, options.metric != .cosine {
            throw .invalidArgument("text embedded with \(embedder.name) is searched by cosine; metric \(options.metric) does not apply")
        }
        if let existing {
            if let embedder = options.embedder {
                guard try existing.embedderInfo() != nil else {
                    throw .collectionMismatch("collection '\(name)' has no embedder: its vectors did not come from "
                                              + "\(embedder.name); import into a new collection to embed text")
                }
                _ = try existing.resolveEmbedder(embedder)
            }
            if options.metricIsExplicit && existing.metric != options.metric {
                throw .collectionMismatch("collection '\(name)' uses metric \(existing.metric), not \(options.metric)")
            }
            if let reduction = options.pca, existing.pca?.outputDimension != reduction.dimensions {
                throw .collectionMismatch("collection '\(name)' exists "
                    + (existing.pca.map { "with a PCA to \($0.outputDimension) dimensions" } ?? "without a PCA")
                    + ", not one to \(reduction.dimensions): a reduction is chosen when a collection is created")
            }
            if existing.dimension != dimension && existing.pca?.inputDimension != dimension {
                throw .dimensionMismatch(expected: existing.pca?.inputDimension ?? existing.dimension, got: dimension, id: nil)
            }
            if let text = options.textIndex, try existing.textIndexOptions() != text { try existing.configureTextIndex(text) }
            return existing
        }
        try Self.validateCollectionName(name)
        guard (1...65_536).contains(dimension) else {
            throw .invalidArgument("dimension \(dimension) is out of range 1...65536")
        }
        try IndexRegistry.kind(for: options.index)?.validate(
            options.index, dimension: projection?.pca.outputDimension ?? dimension,
            metric: options.embedder == nil ? options.metric : .cosine)
        if let text = options.textIndex { try TextIndexOptions.validate(text) }
        let stored = projection?.pca.outputDimension ?? dimension
        if case .ivf(let p) = options.index { try p.validate(dimension: options.embedder?.dimension ?? stored) }
        let provisional = CollectionRecord(id: 0, dimension: stored, metric: options.embedder == nil ? options.metric : .cosine,
                                           blockShift: Format.blockShift(dimension: stored),
                                           nextInternalID: 0, liveCount: 0)
        return VectorCollection(store: self, name: name, record: provisional, projection: projection)
    }

    /// Fits the PCA of a reduced collection on the usable vectors of `records` (those of `dimension`
    /// finite components; scaled to unit length under cosine, as the collection will see them).
    static func fitProjection(_ records: [ImportRecord], dimension: Int, reduction: PCAReduction, metric: Metric)
        throws(VecStoreError) -> ProjectionRecord
    {
        let k = reduction.dimensions
        guard k >= 1, k < dimension else {
            throw .invalidArgument("a PCA to \(k) dimensions: the reduced dimension must be at least 1 and less than the input dimension \(dimension)")
        }
        var sample: [Float] = []
        sample.reserveCapacity(records.count * dimension)
        var usable = 0
        for r in records where r.vector.count == dimension && r.vector.allSatisfy(\.isFinite) {
            if metric == .cosine {
                let norm = squaredNorm(r.vector).squareRoot()
                guard norm > 0, norm.isFinite else { continue }
                sample.append(contentsOf: r.vector.map { $0 / norm })
            } else {
                sample.append(contentsOf: r.vector)
            }
            usable += 1
        }
        guard usable > k else {
            throw .invalidArgument("a PCA to \(k) dimensions: fitting \(k) components needs more than \(k) vectors; the first "
                + "\(records.count) records hold \(usable) usable ones (give more data or a larger PCA sample)")
        }
        do {
            // Euclidean distances do not change when the mean is subtracted; inner products and cosines do,
            // and keep more of their neighbours without it (Spec/PCA.md).
            let pca = try PCA.fit(sample, dimension: dimension, components: k, subtractsMean: metric == .l2)
            return ProjectionRecord(pca: pca, normalizesInput: metric == .cosine)
        } catch {
            throw .invalidArgument(error.description)
        }
    }
}
