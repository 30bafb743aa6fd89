import Foundation
import LMDB
import Synchronization
import VecStoreKernels

/// What one snapshot of a collection needs for search: its rows, its index's read view (if it has an
/// index) and recent filters' bitmaps, reused by every read transaction of the same snapshot.
final class CollectionSnapshot: @unchecked Sendable {
    let snapshotID: Int
    /// `Transaction.mapGeneration` of the transaction that resolved this snapshot.
    let mapGeneration: Int
    let record: CollectionRecord
    let view: CollectionView
    /// The collection's index opened in this snapshot, or nil for a flat collection.
    let index: (any VectorIndexView)?
    /// Exact search over the snapshot's rows (every collection has it).
    let exact: ExactScanView
    /// Where each row's docs record sits in this snapshot's map, filled as `resolve` looks rows up.
    let docsRecords: RowPointerTable
    /// Whether this snapshot was made for the `SnapshotCache` (a read transaction's): only then may `resolve`
    /// keep docs-record addresses in `docsRecords` (a write transaction's pages are private and move).
    let cached: Bool

    /// `docsRecords` when this snapshot is a cache entry (see `cached`), else nil. The table stays valid for
    /// every read transaction of the same LMDB snapshot and map generation (the only ones the cache hands
    /// this snapshot to), even after a newer snapshot replaced it in the cache; no lock or look-up needed.
    var recordTable: RowPointerTable? { cached ? docsRecords : nil }

    init(snapshotID: Int, mapGeneration: Int, record: CollectionRecord, view: CollectionView,
         index: (any VectorIndexView)?, cached: Bool = false) {
        self.cached = cached
        self.snapshotID = snapshotID
        self.mapGeneration = mapGeneration
        self.docsRecords = RowPointerTable(count: Int(record.nextInternalID))
        self.record = record
        self.view = view
        self.index = index
        self.exact = ExactScanView(rows: view, index: index)
    }

    /// One cached filter: its bitmap of live matching rows, their number, and (once an exact search over
    /// the matches asked for it) their gathered binary16 copies: listed in place by the first single
    /// query, copied into one buffer by the next search.
    private final class FilterEntry {
        let filter: Filter
        let words: [UInt64]
        let matches: Int
        var gathered: GatheredCopies?
        /// Set once gathering failed or the budget refused it: later searches scan the mask in place.
        var gatherRefused = false
        init(filter: Filter, words: [UInt64], matches: Int) {
            self.filter = filter
            self.words = words
            self.matches = matches
        }
    }

    private let filterLock = NSLock()
    private var filters: [FilterEntry] = []
    private var builds = 0
    private var gathers = 0
    private var inPlaceGathers = 0

    /// How many filter bitmaps this snapshot has evaluated (a repeated filter is served from the cache).
    var filterBuilds: Int {
        filterLock.lock()
        defer { filterLock.unlock() }
        return builds
    }

    /// How many gathered-copy buffers this snapshot has built (a repeated filter reuses its buffer).
    var gatheredBuilds: Int {
        filterLock.lock()
        defer { filterLock.unlock() }
        return gathers
    }

    /// How many in-place match lists (the first single query's form) this snapshot has built.
    var inPlaceGatherBuilds: Int {
        filterLock.lock()
        defer { filterLock.unlock() }
        return inPlaceGathers
    }

    /// The live matching rows of `filter` and their number, evaluated once per snapshot (the last 8
    /// filters are kept): a filter over half the collection costs far more to evaluate from the field
    /// index than the graph search it restricts.
    func filterBitmap(_ filter: Filter, evaluate: () throws -> [UInt64]) rethrows -> ([UInt64], Int) {
        filterLock.lock()
        if let hit = filters.first(where: { $0.filter == filter }) {
            filterLock.unlock()
            return (hit.words, hit.matches)
        }
        filterLock.unlock()
        let words = try evaluate()
        let matches = words.reduce(0) { $0 + $1.nonzeroBitCount }
        filterLock.lock()
        builds += 1
        if filters.count >= 8 { filters.removeFirst() }
        filters.append(FilterEntry(filter: filter, words: words, matches: matches))
        filterLock.unlock()
        return (words, matches)
    }

    /// Memory the gathered copies of one snapshot's cached filters may take together (Spec/HNSW.md §5.2,
    /// "Gathered matches"): 64 MiB holds 2.8 filters of the largest match set the planner sends to exact
    /// search at 954k rows (29,800 rows of 768 + 12 bytes), and 11 of docs1m's 0.8% `sphinx`.
    static let gatheredBudgetBytes = 64 << 20

    /// The binary16 copies of `filter`'s matches gathered for exact search over them (Spec/HNSW.md §5.2,
    /// "Gathered matches"), kept with the filter's bitmap, or nil: no binary16 copies (flat or int8
    /// collection, `VECSTORE_EXACT_SCAN=float32`), the filter not in the cache (evicted), or the
    /// snapshot's budget spent. Its rows are exactly the cached bitmap's. The first search of this
    /// snapshot and filter gets the in-place form (pointers into the map) when it asks for one query
    /// (`queries` 1): it reads the matches' pages once whichever form it scans, and copying them would
    /// only add the buffer's zeroing and writes to that first query. The next search (or a first search
    /// of several queries) gets them copied into one contiguous buffer, which replaces the in-place list.
    ///
    /// `file` gives the store file behind the map, asked only when a gather of at least
    /// `GatheredCopies.probeMinimum` rows is built: with it a large match set is read with `pread` when the
    /// map's page faults prove dear (`GatheredCopies.init`), and then even a first single query gets the
    /// copied form (the rows read from the file are already in the buffer).
    func gatheredMatches(_ filter: Filter, queries: Int = 2, file: () -> GatheredCopies.MappedFile? = { nil })
        -> GatheredCopies?
    {
        guard let halves = exact.halves else { return nil }
        filterLock.lock()
        defer { filterLock.unlock() }
        guard let entry = filters.first(where: { $0.filter == filter }) else { return nil }
        if let g = entry.gathered, !g.isInPlace { return g }
        if entry.gatherRefused { return nil }
        let inPlace = entry.gathered == nil && queries <= 1
        // The budget counts the copied form (so the same filters are copied whichever search comes
        // first), against the other entries' buffers as they are now.
        let used = filters.reduce(0) { $0 + ($1 === entry ? 0 : ($1.gathered?.bytes ?? 0)) }
        let rowBytes = GatheredCopies.bytes(rows: 1, stride: halves.stride)
        // Less the mapping's rounding to whole 2 MiB units, so the buffers' real memory stays in budget.
        let maxRows = max(0, Self.gatheredBudgetBytes - used - GatheredCopies.mappingSlack) / rowBytes
        guard entry.matches <= maxRows else {
            entry.gatherRefused = true
            entry.gathered = nil
            return nil
        }
        // Only a gather large enough to probe the map's fault cost can use the file (parsing /proc costs ~0.1 ms).
        let mappedFile = entry.matches >= GatheredCopies.probeMinimum ? file() : nil
        let built = entry.words.withUnsafeBufferPointer { w -> GatheredCopies? in
            guard let base = w.baseAddress else { return nil }
            let mask = CandidateMask(words: base, wordCount: w.count)
            return GatheredCopies(halves: halves, blocks: view.blocks, dimension: Int(record.dimension), mask: mask,
                                  maxRows: maxRows, inPlace: inPlace, file: mappedFile)
        }
        guard let built else {
            entry.gatherRefused = true
            entry.gathered = nil
            return nil
        }
        entry.gathered = built
        if built.isInPlace { inPlaceGathers += 1 } else { gathers += 1 }
        return built
    }

    /// Whether some rows are deleted (then results are checked against the live bitmap).
    var hasDeletions: Bool { record.liveCount != record.nextInternalID }
}

/// Per-store cache of `CollectionSnapshot`s by collection id. An entry is reused by a read transaction
/// of the same snapshot id and the same map generation (`Transaction.mapGeneration`): same snapshot
/// means the same bytes at the same map offsets, and the same generation means the map was not moved
/// (grown) since, so every pointer the entry holds is valid in the new transaction. A hit therefore
/// costs no LMDB lookup: the collection record was read and checked when the entry was made, and within
/// one snapshot it cannot change. Write transactions (whose pages are private until they commit)
/// neither use nor fill the cache.
final class SnapshotCache: Sendable {
    /// Under a `Mutex` rather than an `NSLock` beside a stored dictionary: the class property's dynamic
    /// exclusivity checks and `NSLock`'s calls were ~250 of a hit's ~550 instructions (callgrind).
    private let entries = Mutex<[UInt32: CollectionSnapshot]>([:])

    func snapshot(_ txn: Transaction, _ dbs: Databases, name: String, collectionID: UInt32) throws
        -> CollectionSnapshot
    {
        let sid = try txn.snapshotID()
        let cacheable = !txn.isWritable
        if cacheable {
            let cached = entries.withLock { $0[collectionID] }
            if let cached, cached.snapshotID == sid, cached.mapGeneration == txn.mapGeneration {
                return cached
            }
        }
        guard let value = try txn.get(dbs.meta, Format.collectionKey(name)) else {
            throw VecStoreError.collectionNotFound(name)
        }
        let record = try CollectionRecord.decode(value, name: name)
        guard record.id == collectionID else { throw VecStoreError.collectionNotFound(name) }
        let view = try CollectionView(txn, dbs, record, name: name)
        let index = try IndexRegistry.find(txn, dbs, record).map { found in
            try found.kind.openView(txn, dbs, record, name: name, view)
        }
        let entry = CollectionSnapshot(snapshotID: sid, mapGeneration: txn.mapGeneration, record: record, view: view,
                                       index: index, cached: cacheable)
        if cacheable {
            // A slow reader on an older snapshot does not replace a newer entry (same map generation).
            entries.withLock { table in
                if let newer = table[collectionID], newer.mapGeneration == entry.mapGeneration,
                   newer.snapshotID > sid { return }
                table[collectionID] = entry
            }
        }
        return entry
    }
}
