import Foundation
import LMDB
import VecStoreKernels
import VecStoreQuant

/// What `index show` prints about a collection's IVF index.
public struct IVFIndexInfo: Sendable, Equatable {
    /// Parameters (nlist, coding, default nprobe and refine, seed, iterations) as trained.
    public var parameters: IVFParameters
    /// Rows in each list.
    public var listSizes: [Int]
    /// Mean squared distance of the training rows to their centroid.
    public var coarseError: Double
    /// Mean squared PQ reconstruction error of the training residuals (0 for flat).
    public var codeError: Double
    /// Rows the coarse k-means trained on.
    public var trainingRows: Int
    /// Payload bytes per vector in the lists (4·d for float32 flat lists, 8 + 2·d for binary16: the halves, the error bound and the norm; the PQ code size otherwise).
    public var codeSize: Int
    /// Rows per full list block.
    public var blockCapacity: Int

    /// Smallest, median and largest list size.
    public var listSizeSummary: (min: Int, median: Int, max: Int) {
        let s = listSizes.sorted()
        guard let first = s.first, let last = s.last else { return (0, 0, 0) }
        return (first, s[s.count / 2], last)
    }

    /// Reads the list sizes of `model`'s index in `txn`.
    init(_ txn: Transaction, _ dbs: Databases, _ record: CollectionRecord, model: IVFModel, name: String) throws {
        let view = try IVFView(txn, dbs, record: record, model: model, name: name)
        let h = model.header
        self.init(parameters: model.effectiveParameters, listSizes: view.listSizes, coarseError: h.coarseError,
                  codeError: h.codeError, trainingRows: h.trainingRows, codeSize: model.codeSize,
                  blockCapacity: h.blockCapacity)
    }

    /// Creates an info value.
    public init(parameters: IVFParameters, listSizes: [Int], coarseError: Double, codeError: Double, trainingRows: Int,
                codeSize: Int, blockCapacity: Int) {
        self.parameters = parameters
        self.listSizes = listSizes
        self.coarseError = coarseError
        self.codeError = codeError
        self.trainingRows = trainingRows
        self.codeSize = codeSize
        self.blockCapacity = blockCapacity
    }

    /// Equal when every field is.
    public static func == (a: IVFIndexInfo, b: IVFIndexInfo) -> Bool {
        a.parameters == b.parameters && a.listSizes == b.listSizes && a.coarseError == b.coarseError
            && a.codeError == b.codeError && a.trainingRows == b.trainingRows && a.codeSize == b.codeSize
            && a.blockCapacity == b.blockCapacity
    }
}

extension IVFModel {
    /// The parameters the index was trained with, every field as the trainer resolved it.
    var effectiveParameters: IVFParameters {
        let h = header
        let coding: IVFCoding = h.kind.isFlat ? .flat : .pq(m: h.subquantizers, bits: h.bits)
        return IVFParameters(nlist: h.nlist, coding: coding, nprobe: h.defaultNprobe, refine: h.defaultRefine,
                             seed: h.seed, iterations: h.iterations, pqResidual: h.residual,
                             lists: h.kind == .flat16 ? .f16 : .f32)
    }

    /// The parameters as they were asked for: fields the trainer chose (`IVFHeader.defaults`) are nil (M 0),
    /// so `indexKind()` equals the `IndexKind` the index was created or built with.
    var parameters: IVFParameters {
        var p = effectiveParameters
        let d = header.defaults
        if d.contains(.nlist) { p.nlist = nil }
        if d.contains(.subquantizers), case .pq(_, let bits) = p.coding { p.coding = .pq(m: 0, bits: bits) }
        if d.contains(.nprobe) { p.nprobe = nil }
        if d.contains(.refine) { p.refine = nil }
        return p
    }
}

extension VectorCollection {
    /// Trains an IVF index on the collection's live rows now and writes it, in one transaction: a seeded
    /// sample (at most 256 rows per list) trains the coarse centroids (and, for `.pq`, the codebooks on the
    /// residuals), then every live row is assigned to its nearest centroid and written to its list.
    /// Replaces any previous index (a collection has one); readers keep the old one until the commit.
    /// Later writes keep the lists up to date (new rows are assigned to the trained centroids); call it again
    /// to retrain when the data has drifted.
    ///
    /// - Throws: `invalidArgument` for parameters the collection cannot take (an M that does not divide the
    ///   dimension) or fewer live rows than `IVFParameters.minimumRows`.
    @discardableResult
    public func buildIVF(_ parameters: IVFParameters, threads: Int = ProcessInfo.processInfo.activeProcessorCount,
                         progress: (@Sendable (IVFBuildProgress) -> Void)? = nil) throws(VecStoreError) -> IVFBuildReport {
        try parameters.validate(dimension: dimension)
        return try store.write { txn in
            let record = try currentRecord(txn)
            // Resolved before any write: no vector page is written by this transaction.
            let view = try CollectionView(txn, store.dbs, record, name: name)
            let vectors = VectorTable(view)
            defer { vectors.deallocate() }
            let rows = IVFRows(vectors: vectors, liveWords: view.liveWords, count: record.nextInternalID)
            let live = rows.live
            let model = try IVFTraining.train(rows, live: live, dimension: record.dimension, metric: record.metric,
                                              parameters: parameters, threads: max(1, threads), progress: progress)
            try store.dropIndex(txn, record)
            if let feature = IVFIndexKind.feature { try Format.declare(feature, txn, meta: store.dbs.meta) }
            try IVFTraining.write(txn, store.dbs, cid: record.id, rows, model: model, name: name,
                                  threads: max(1, threads), progress: progress)
            return IVFBuildReport(nlist: model.header.nlist, trainingRows: model.header.trainingRows, rows: live.count,
                                  coarseError: model.header.coarseError, codeError: model.header.codeError)
        }
    }

    /// The parameters of the collection's IVF index when it is not trained yet, else nil.
    func untrainedIVF() throws(VecStoreError) -> IVFParameters? {
        try store.read { txn in
            guard case .pending(let p)? = try IVFIndexKind.state(txn, store.dbs, try currentRecord(txn), name: name) else {
                return nil
            }
            return p.parameters
        }
    }

    /// The collection's trained IVF index as stored, or nil when it has none (or it is not trained yet).
    public func ivfInfo() throws(VecStoreError) -> IVFIndexInfo? {
        try store.read { txn in
            let record = try currentRecord(txn)
            guard case .trained(let model)? = try IVFIndexKind.state(txn, store.dbs, record, name: name) else { return nil }
            return try IVFIndexInfo(txn, store.dbs, record, model: model, name: name)
        }
    }
}
