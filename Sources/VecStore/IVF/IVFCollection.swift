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
    /// Payload bytes per vector in the lists (4·d for flat, the PQ code size otherwise).
    public var codeSize: Int
    /// Rows per full list block.
    public var blockCapacity: Int

    /// Smallest, median and largest list size.
    public var listSizeSummary: (min: Int, median: Int, max: Int) {
        let s = listSizes.sorted()
        guard let first = s.first, let last = s.last else { return (0, 0, 0) }
        return (first, s[s.count / 2], last)
    }

    /// Equal when every field is.
    public static func == (a: IVFIndexInfo, b: IVFIndexInfo) -> Bool {
        a.parameters == b.parameters && a.listSizes == b.listSizes && a.coarseError == b.coarseError
            && a.codeError == b.codeError && a.trainingRows == b.trainingRows && a.codeSize == b.codeSize
            && a.blockCapacity == b.blockCapacity
    }
}

extension IVFModel {
    /// The parameters the model was trained with.
    var parameters: IVFParameters {
        let h = header
        let coding: IVFCoding = h.kind == .flat ? .flat : .pq(m: h.subquantizers, bits: h.bits)
        return IVFParameters(nlist: h.nlist, coding: coding, nprobe: h.defaultNprobe, refine: h.defaultRefine,
                             seed: h.seed, iterations: h.iterations)
    }
}

extension VectorCollection {
    /// Trains an IVF index on the collection's live rows and writes it, in one transaction: a seeded
    /// sample (at most 256 rows per list) trains the coarse centroids (and, for `.pq`, the codebooks on the
    /// residuals), then every live row is assigned to its nearest centroid and written to its list.
    /// Replaces any previous index (HNSW graph or IVF lists); readers keep the old one until the commit.
    /// Later writes keep the lists up to date (new rows are assigned to the trained centroids).
    ///
    /// - Throws: `invalidArgument` for parameters the collection cannot take (an `nlist` above its live rows,
    ///   an M that does not divide the dimension) or too few rows to train.
    @discardableResult
    public func buildIVF(_ parameters: IVFParameters, threads: Int = ProcessInfo.processInfo.activeProcessorCount,
                         progress: (@Sendable (IVFBuildProgress) -> Void)? = nil) throws(VecStoreError) -> IVFBuildReport {
        try parameters.validate(dimension: dimension)
        return try store.write { txn in
            let record = try currentRecord(txn)
            let view = try CollectionView(txn, store.dbs, record, name: name)
            let live = (0..<record.nextInternalID).filter { view.isLive($0) }
            let model = try IVFTraining.train(view, live: live, parameters: parameters, threads: max(1, threads),
                                              progress: progress)
            try IVFTraining.write(txn, store.dbs, view, model: model, name: name, threads: max(1, threads),
                                  progress: progress)
            return IVFBuildReport(nlist: model.header.nlist, trainingRows: model.header.trainingRows, rows: live.count,
                                  coarseError: model.header.coarseError, codeError: model.header.codeError)
        }
    }

    /// The collection's IVF index as stored, or nil when it has none.
    public func ivfInfo() throws(VecStoreError) -> IVFIndexInfo? {
        try store.read { txn in
            let record = try currentRecord(txn)
            guard let model = try IVFModel.load(txn, store.dbs, record, name: name) else { return nil }
            let view = try IVFView(txn, store.dbs, record: record, model: model, name: name)
            let h = model.header
            return IVFIndexInfo(parameters: model.parameters, listSizes: view.listSizes, coarseError: h.coarseError,
                                codeError: h.codeError, trainingRows: h.trainingRows, codeSize: model.codeSize,
                                blockCapacity: h.blockCapacity)
        }
    }

    /// Removes the IVF index (the collection is searched exactly from now on); false when it had none.
    @discardableResult
    public func dropIVF() throws(VecStoreError) -> Bool {
        try store.write { txn in
            guard try txn.get(store.dbs.meta, IVFFormat.headerKey(collectionID)) != nil else { return false }
            try IVFModel.drop(txn, store.dbs, collectionID)
            return true
        }
    }
}

extension CollectionWriter {
    /// Brings the collection's IVF lists (if it has an index) up to date with this batch, inside its
    /// transaction: rows appended by the batch and still live are assigned and appended to their lists.
    /// Deleted rows stay in their lists (searches skip them through the live bitmap; compaction drops them).
    /// The appended rows' vectors are copied out of the tail vector blocks this transaction wrote, right
    /// before the list writes (no pointer into a written page is kept across a write).
    /// Returns the list blocks written.
    @discardableResult
    mutating func updateIVF() throws -> Int {
        guard let model = try IVFModel.load(txn, dbs, record, name: name) else { return 0 }
        let first = initialNextID, end = record.nextInternalID
        guard end > first else { return 0 }
        let d = record.dimension
        let live = try CollectionView.liveWords(txn, dbs, record, name: name)
        var rows: [UInt32] = []
        var vectors: [Float] = []
        var block = first >> UInt32(record.blockShift)
        while (block << UInt32(record.blockShift)) < end {
            let blockStart = block << UInt32(record.blockShift)
            guard let value = try txn.get(dbs.vectors, Format.key(record.id, block)) else {
                throw VecStoreError.corrupt("collection \(name): vector block \(block) missing after an append")
            }
            let count = value.count / ((d + 1) * 4)
            for r in max(first, blockStart)..<min(end, blockStart + UInt32(count)) {
                guard (live[Int(r >> 6)] >> UInt64(r & 63)) & 1 == 1 else { continue }
                rows.append(r)
                let offset = Int(r - blockStart) * d * 4
                for t in 0..<d {
                    vectors.append(Float(bitPattern: UInt32(littleEndian: value.loadUnaligned(fromByteOffset: offset + 4 * t, as: UInt32.self))))
                }
            }
            block += 1
        }
        var writer = try IVFListWriter(txn, dbs, model: model, cid: record.id, name: name)
        try vectors.withUnsafeBufferPointer { v in
            guard let base = v.baseAddress else { return }
            try writer.append(rows: rows, vectors: base)
        }
        return writer.blocksWritten
    }
}

extension VecStore {
    /// Compaction: gives collection `name` of this (new) store the IVF index `record` has in `old` (read in
    /// `txn`), with the same trained centroids and codebooks, its lists rebuilt from the renumbered rows.
    func copyIVF(from txn: Transaction, old: VecStore, record: CollectionRecord, name: String) throws {
        guard let model = try IVFModel.load(txn, old.dbs, record, name: name) else { return }
        try write { t in
            guard let fresh = try self.record(t, name) else { throw VecStoreError.collectionNotFound(name) }
            let view = try CollectionView(t, dbs, fresh, name: name)
            try IVFTraining.write(t, dbs, view, model: model, name: name,
                                  threads: ProcessInfo.processInfo.activeProcessorCount, progress: nil)
        }
    }
}
