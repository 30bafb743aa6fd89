import Foundation
import LMDB
import VecStoreKernels
import VecStoreQuant

/// IVF-Flat and IVF-PQ behind the index seam (Spec/IVF.md, Spec/PQ.md): the `ivf:<cid>` record in meta
/// (the trained header, or the parameters of an index not trained yet), centroids and codebooks in `ivf`,
/// list blocks in `ivf-lists`. Declares the store feature `ivf` (needed to read and to write).
enum IVFIndexKind: VectorIndexKind {
    static let name = "ivf"
    static let databases: [Schema.Entry] = [
        Schema.Entry(name: IVFFormat.DB.ivf, flags: [], owner: name, perCollection: true),
        Schema.Entry(name: IVFFormat.DB.lists, flags: [], owner: name, perCollection: true),
    ]
    static let metaPrefix = IVFFormat.keyPrefix
    static let feature: Format.Feature? = Format.Feature(name: IVFFormat.feature, neededToRead: true, neededToWrite: true)
    /// IVF-Flat with 4 lists, 3 probed: small enough to train (at 156 rows) in the contract tests' collections.
    static var defaultParameters: IndexKind { .ivf(IVFParameters(nlist: 4, nprobe: 3)) }
    /// IVF-Flat (float32 and binary16 lists) and IVF-PQ with 4-bit fast-scan codes (M = 16 on the contract's 16-d rows: 8 B a row, refine 8),
    /// of the raw vectors (the 4-bit default) and of the residuals.
    static var testParameters: [IndexKind] {
        [defaultParameters, .ivf(IVFParameters(nlist: 4, nprobe: 3, lists: .f16)),
         .ivf(IVFParameters(nlist: 4, coding: .pq(m: 16, bits: 4), nprobe: 3, refine: 8)),
         .ivf(IVFParameters(nlist: 4, coding: .pq(m: 16, bits: 4), nprobe: 3, refine: 8, pqResidual: true))]
    }

    static func accepts(_ parameters: IndexKind) -> Bool {
        if case .ivf = parameters { return true }
        return false
    }

    static func ivfParameters(_ parameters: IndexKind) throws(VecStoreError) -> IVFParameters {
        guard case .ivf(let p) = parameters else { throw .invalidArgument("\(parameters.name) parameters given to the IVF index") }
        return p
    }

    static func validate(_ parameters: IndexKind, dimension: Int, metric: Metric) throws(VecStoreError) {
        try ivfParameters(parameters).validate(dimension: dimension)
    }

    /// An untrained index: its parameters record. A collection that already has rows (`index build` through
    /// `buildIndex(kind:)`) trains in the batch that follows as soon as it has the minimum rows; a new one at
    /// `trainingThreshold`.
    static func create(_ txn: Transaction, _ dbs: Databases, _ record: CollectionRecord, parameters: IndexKind) throws {
        let p = try ivfParameters(parameters)
        let live = Int(record.liveCount)
        let trainAt = live > 0 ? p.minimumRows(nlist: p.nlist ?? IVFParameters.defaultNlist(rows: live)) : p.trainingThreshold
        let pending = IVFPendingRecord(parameters: p, metric: record.metric, trainAt: trainAt)
        try txn.put(dbs.meta, IVFFormat.headerKey(record.id), try pending.encode(dimension: record.dimension))
        try IVFFormat.declareCoding(raw: p.rawCodes, half: p.halfLists, txn, dbs)
    }

    /// Marks the untrained index of `record` to be trained only on request (`buildIVF`, the end of an
    /// import), not by a write batch: an import creates it so and trains once, on every row, at its end.
    static func deferTraining(_ txn: Transaction, _ dbs: Databases, _ record: CollectionRecord) throws {
        guard case .pending(var pending)? = try state(txn, dbs, record, name: "id \(record.id)") else { return }
        pending.trainAt = IVFPendingRecord.onRequest
        try txn.put(dbs.meta, IVFFormat.headerKey(record.id), try pending.encode(dimension: record.dimension))
    }

    /// The collection's IVF state: nil (no index), untrained parameters, or the trained model.
    enum State {
        case pending(IVFPendingRecord)
        case trained(IVFModel)
    }

    /// A record whose version byte this build does not know was written by a newer vecstore (FORMAT.md §20.2).
    static func checkVersion(_ value: UnsafeRawBufferPointer, name: String) throws(VecStoreError) {
        guard let version = value.first, version != IVFHeader.version else { return }
        throw .newerFormat("collection \(name): IVF record version \(version)")
    }

    static func state(_ txn: Transaction, _ dbs: Databases, _ record: CollectionRecord, name: String) throws -> State? {
        guard let value = try txn.get(dbs.meta, IVFFormat.headerKey(record.id)) else { return nil }
        try checkVersion(value, name: name)
        if value.count == IVFPendingRecord.size {
            let pending = try IVFPendingRecord.decode(value, dimension: record.dimension, metric: record.metric, name: name)
            try IVFFormat.checkCoding(raw: pending.parameters.rawCodes, half: pending.parameters.halfLists, txn, dbs, name: name)
            return .pending(pending)
        }
        guard let model = try IVFModel.load(txn, dbs, record, name: name) else { return nil }
        return .trained(model)
    }

    static func load(_ txn: Transaction, _ dbs: Databases, _ record: CollectionRecord) throws -> IndexKind? {
        guard let value = try txn.get(dbs.meta, IVFFormat.headerKey(record.id)) else { return nil }
        let name = "id \(record.id)"
        try checkVersion(value, name: name)
        let parameters: IVFParameters
        if value.count == IVFPendingRecord.size {
            parameters = try IVFPendingRecord.decode(value, dimension: record.dimension, metric: record.metric,
                                                     name: name).parameters
        } else {
            // Only the header: the centroids and lists are read (and checked) by the view and verify.
            do throws(QuantError) {
                let header = try IVFHeader.decode(value)
                guard header.metric == record.metric, header.dimension == record.dimension else {
                    throw QuantError.damaged(record: "IVF header", offset: 2, reason: "metric or dimension differs from the collection's")
                }
                parameters = IVFModel(header: header, centroids: [], quantizer: nil).parameters
            } catch {
                throw IVFFormat.corrupt(error, name)
            }
        }
        try IVFFormat.checkCoding(raw: parameters.rawCodes, half: parameters.halfLists, txn, dbs, name: name)
        return .ivf(parameters)
    }

    static func drop(_ txn: Transaction, _ dbs: Databases, collection: UInt32) throws {
        try IVFModel.drop(txn, dbs, collection)
    }

    static func verify(_ txn: Transaction, _ dbs: Databases, _ record: CollectionRecord, name: String,
                       _ view: CollectionView) throws -> (checked: Int, faults: [String]) {
        let current: State?
        do { current = try state(txn, dbs, record, name: name) } catch let e as VecStoreError { return (1, ["\(e)"]) }
        guard case .trained? = current else {
            // Untrained: no centroid, codebook or list key may exist yet.
            var faults: [String] = []
            let prefix = Format.prefix(record.id)
            for entry in databases {
                guard let db = dbs.handle(entry.name) else { continue }
                let stray = try txn.withCursor(db) { (c: Cursor) throws -> Bool in
                    guard let (key, _) = try c.seek(atLeast: prefix) else { return false }
                    return key.starts(with: prefix)
                }
                if stray { faults.append("\(name): \(entry.name) holds entries of an IVF index that is not trained") }
            }
            return (1, faults)
        }
        let (faults, checked) = try IVFVerify.faults(txn, dbs, record, view, name: name)
        return (checked, faults)
    }

    static func stats(_ txn: Transaction, _ dbs: Databases, _ record: CollectionRecord, name: String,
                      depth: IndexStatsDepth) throws -> IndexStats
    {
        switch try state(txn, dbs, record, name: name) {
        case nil: throw VecStoreError.corrupt("collection \(name): no IVF record")
        case .pending(let pending)?:
            let p = pending.parameters
            let until = pending.trainAt == IVFPendingRecord.onRequest ? "" : " \(pending.trainAt) live rows,"
            return IndexStats(kind: Self.name, lines: [
                .init("coding", p.codingSummary),
                .init("nlist", p.nlist.map(String.init) ?? "from the rows"),
                .init("state", "not trained: searched exactly until\(until) the end of an import or `index build`"),
            ])
        case .trained(let model)?:
            let info = try IVFIndexInfo(txn, dbs, record, model: model, name: name)  // resolved values
            let (lo, median, hi) = info.listSizeSummary
            let p = info.parameters
            // Re-ranking and the PQ training error apply to PQ codings only (flat lists score exactly).
            let pq = p.coding != .flat
            var lines: [IndexStats.Line] = [.init("coding", p.codingSummary), .init("nlist", "\(p.nlist ?? 0)"),
                                            .init("nprobe", "\(p.nprobe ?? 0)")]
            if pq { lines.append(.init("refine", "\(p.refine ?? 0)")) }
            lines += [
                .init("rows in lists", "\(info.listSizes.reduce(0, +))"),
                .init("list sizes", "min \(lo) / median \(median) / max \(hi)"),
                .init("code size", "\(info.codeSize) bytes per vector"),
                .init("training rows", "\(info.trainingRows)"),
                .init("coarse error", String(format: "%.6g", info.coarseError)),
            ]
            if pq { lines.append(.init("PQ error", String(format: "%.6g", info.codeError))) }
            return IndexStats(kind: Self.name, lines: lines)
        }
    }

    static func makeWriter(_ txn: Transaction, _ dbs: Databases, _ record: CollectionRecord, name: String) throws
        -> any VectorIndexWriter
    {
        guard let state = try state(txn, dbs, record, name: name) else {
            throw VecStoreError.corrupt("collection \(name): no IVF record")
        }
        return IVFBatchWriter(txn: txn, dbs: dbs, name: name, state: state)
    }

    static func openView(_ txn: Transaction, _ dbs: Databases, _ record: CollectionRecord, name: String,
                         _ rows: CollectionView) throws -> any VectorIndexView {
        switch try state(txn, dbs, record, name: name) {
        case .trained(let model)?:
            return IVFIndexView(list: try IVFView(txn, dbs, record: record, model: model, name: name), rows: rows)
        default:
            return ExactScanView(rows: rows)  // not trained yet: searched exactly
        }
    }

    /// Carries the index over unchanged: the same record, centroids and codebooks, and every list rewritten
    /// with its rows renumbered (deleted rows dropped) and their codes as they were (a code depends only on
    /// the row's vector, which compaction copies as stored).
    static func remap(_ source: IndexRemapSource, into txn: Transaction, _ dbs: Databases,
                      _ record: CollectionRecord, name: String) throws -> IndexRemapOutcome {
        guard let state = try state(source.txn, source.dbs, source.record, name: name) else { return .remapped }
        guard case .trained(let model) = state else {
            if case .pending(let pending) = state {
                try txn.put(dbs.meta, IVFFormat.headerKey(record.id), try pending.encode(dimension: record.dimension))
                let p = pending.parameters
                try IVFFormat.declareCoding(raw: p.rawCodes, half: p.halfLists, txn, dbs)
            }
            return .remapped
        }
        try IVFModel.drop(txn, dbs, record.id)
        try model.store(txn, dbs, record.id)
        let old = try IVFView(source.txn, source.dbs, record: source.record, model: model, name: name)
        var writer = try IVFListWriter(txn, dbs, model: model, cid: record.id, name: name)
        for (list, blocks) in old.blocks.enumerated() {
            var rows: [UInt32] = []
            var codes: [UInt8] = []
            for block in blocks {
                let blockCodes = writer.rowCodes(block)
                for i in 0..<block.count {
                    let oldRow = Int(block.rowID(i))
                    guard oldRow < source.newRow.count else {
                        throw VecStoreError.corrupt("collection \(name): IVF list \(list) holds row \(oldRow) ≥ the collection's rows")
                    }
                    let new = source.newRow[oldRow]
                    if new == IndexRemapSource.gone { continue }
                    rows.append(new)
                    codes += blockCodes[(i * writer.rowBytes)..<((i + 1) * writer.rowBytes)]
                }
            }
            if !rows.isEmpty { try writer.append(list: list, rows: rows, codes: codes) }
        }
        return .remapped
    }
}

/// Applies write batches to a collection's IVF index inside the writer's transaction. Untrained: trains
/// (and fills every list) in the batch after which the collection has the record's threshold of live
/// rows. Trained: appended rows still live are assigned and appended to their lists' last blocks;
/// deleted rows stay in their lists (the live bitmap hides them; compaction drops them).
struct IVFBatchWriter: VectorIndexWriter {
    let txn: Transaction
    let dbs: Databases
    let name: String
    var state: IVFIndexKind.State
    private(set) var blocksWritten = 0

    init(txn: Transaction, dbs: Databases, name: String, state: IVFIndexKind.State) {
        self.txn = txn
        self.dbs = dbs
        self.name = name
        self.state = state
    }

    mutating func apply(_ batch: IndexBatch) throws {
        let record = batch.record
        let rows = IVFRows(vectors: batch.vectors, liveWords: batch.liveWords, count: record.nextInternalID)
        switch state {
        case .pending(let pending):
            guard pending.trainAt != IVFPendingRecord.onRequest, Int(record.liveCount) >= pending.trainAt else { return }
            let live = rows.live
            let p = pending.parameters
            guard live.count >= p.minimumRows(nlist: p.nlist ?? IVFParameters.defaultNlist(rows: live.count)) else { return }
            let model = try IVFTraining.train(rows, live: live, dimension: record.dimension, metric: record.metric,
                                              parameters: p, threads: batch.threads, progress: nil)
            try IVFTraining.write(txn, dbs, cid: record.id, rows, model: model, name: name, threads: batch.threads,
                                  progress: nil)
            state = .trained(model)
        case .trained(let model):
            let appended = batch.appended.filter(rows.isLive)
            guard !appended.isEmpty else { blocksWritten = 0; return }
            let d = record.dimension
            var vectors = [Float](repeating: 0, count: appended.count * d)
            vectors.withUnsafeMutableBufferPointer { v in
                guard let base = v.baseAddress else { return }
                for (i, row) in appended.enumerated() { (base + i * d).update(from: batch.vectors.vector(row), count: d) }
            }
            var writer = try IVFListWriter(txn, dbs, model: model, cid: record.id, name: name)
            try vectors.withUnsafeBufferPointer { v in
                guard let base = v.baseAddress else { return }
                try writer.append(rows: appended, vectors: base, threads: batch.threads)
            }
            blocksWritten = writer.blocksWritten
        }
    }
}

/// A trained index opened in one snapshot, with the collection's float32 rows (re-ranking reads them).
final class IVFIndexView: VectorIndexView, @unchecked Sendable {
    let list: IVFView
    /// Keeps the vector blocks the re-ranking reads alive; its live bitmap is the mask of unfiltered searches.
    let rows: CollectionView

    init(list: IVFView, rows: CollectionView) {
        self.list = list
        self.rows = rows
    }

    func nprobe(_ options: SearchOptions) -> Int {
        min(options.nprobe ?? list.model.header.defaultNprobe, list.model.header.nlist)
    }

    func search(queries: UnsafePointer<Float>, count: Int, k: Int, mask: CandidateMask?, options: SearchOptions,
                threads: Int) -> [TopK] {
        let refine = options.refine ?? list.model.header.defaultRefine, p = nprobe(options)
        // Lists keep deleted rows until compaction: without a mask, the live rows are the mask. (Two calls rather
        // than one stored closure: its context was a heap allocation a search.)
        if let mask {
            return list.search(queries: queries, count: count, k: k, mask: mask, nprobe: p, refine: refine, vectors: rows,
                               threads: threads)
        }
        return CandidateMask.with(rows.liveWords) { m in
            list.search(queries: queries, count: count, k: k, mask: m, nprobe: p, refine: refine, vectors: rows,
                        threads: threads)
        }
    }

    /// Every search ends by rescoring its final rows with `resolve`'s kernels (`IVFView.rescored`): flat scans
    /// use a many-row kernel, re-ranking a four-row one, and PQ without refine is approximate until then.
    var scoresAreExact: Bool { true }

    /// A filter is answered exactly over its matches when they are fewer than the rows the probed lists hold
    /// (≈ live · nprobe / nlist): that scan is cheaper, and exact; otherwise the lists are scanned under the mask.
    func prefersExact(matches: Int, live: Int, k: Int, options: SearchOptions) -> Bool {
        Double(matches) * Double(list.model.header.nlist) <= Double(live) * Double(nprobe(options))
    }
}
