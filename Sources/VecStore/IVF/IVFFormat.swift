import Foundation
import LMDB
import VecStoreKernels
import VecStoreQuant

/// What an IVF index keeps in its inverted lists.
public enum IVFCoding: Sendable, Equatable, CustomStringConvertible {
    /// The float32 vectors (IVF-Flat): list scans score exactly.
    case flat
    /// Product-quantization codes of the residuals against the list's centroid (IVF-PQ): `m` sub-quantizers
    /// of `bits` bits (8, or 4 in the 32-row fast-scan layout); `m` 0 picks
    /// `IVFParameters.defaultSubquantizers(dimension:)`. Scores are approximate (ADC) and re-ranked
    /// with the float32 vectors (`SearchOptions.refine`).
    case pq(m: Int, bits: Int)

    /// `flat`, `pq8` or `pq4` (as `index show` prints it).
    public var description: String {
        switch self {
        case .flat: "flat"
        case .pq(let m, let bits): "pq\(bits) M=\(m)"
        }
    }

    /// The list payload this coding writes with flat lists of `lists` (4-bit codes are always stored in the
    /// fast-scan layout).
    func payloadKind(lists: IVFFlatLists) -> IVFPayloadKind {
        switch self {
        case .flat: lists == .f16 ? .flat16 : .flat
        case .pq(_, let bits): bits == 8 ? .pq8 : .pq4FastScan
        }
    }
}

/// Element type of an IVF-Flat index's lists (Spec/IVF.md §4.2), as `--ivf-lists` names it.
public enum IVFFlatLists: String, Sendable, Equatable, CaseIterable {
    /// IEEE binary16 copies of the rows with a per-row error bound and norm (payload kind 5, `flat16`):
    /// about half the list bytes. A scan bounds each row's float32 score from its copy (certified for any
    /// rounding) and scores exactly, from the float32 rows, only the rows whose bound still reaches the k-th
    /// score, so results (ids and scores) are those of float32 lists. Smaller indexes; not faster at one
    /// thread on the measured data (README "Choosing an index").
    case f16
    /// The float32 vectors themselves (payload kind 1, `flat`). The default.
    case f32
}

/// Parameters of an IVF index (Spec/IVF.md).
public struct IVFParameters: Sendable, Equatable {
    /// Lists (coarse centroids); nil picks `IVFParameters.defaultNlist(rows:)` from the collection size.
    public var nlist: Int?
    /// What the lists carry.
    public var coding: IVFCoding
    /// Lists probed when a search does not say (`SearchOptions.nprobe`); nil: max(1, nlist / 16).
    public var nprobe: Int?
    /// Re-ranking factor when a search does not say (`SearchOptions.refine`); nil: 4 for PQ, 0 for flat.
    public var refine: Int?
    /// Seed of the training sample and of k-means.
    public var seed: UInt64
    /// Coarse k-means iterations.
    public var iterations: Int
    /// PQ codings: codes of the residual `x − c` against the row's coarse centroid (true) or of the raw
    /// vectors (false: one look-up table per query serves every probed list). Ignored (false) for flat.
    /// Defaults to `IVFParameters.defaultResidual(for:)`.
    public var pqResidual: Bool
    /// IVF-Flat: element type of the lists, float32 (the default) or binary16. PQ codings have no such
    /// lists: always `.f32` there (ignored).
    public var lists: IVFFlatLists

    /// Parameters; every field but `coding` has a default chosen from the data when the index is trained.
    /// `pqResidual` nil takes `defaultResidual(for: coding)`; `lists` applies to `.flat` only.
    public init(nlist: Int? = nil, coding: IVFCoding = .flat, nprobe: Int? = nil, refine: Int? = nil,
                seed: UInt64 = 1234, iterations: Int = 10, pqResidual: Bool? = nil, lists: IVFFlatLists = .f32) {
        self.pqResidual = coding == .flat ? false : (pqResidual ?? Self.defaultResidual(for: coding))
        self.lists = coding == .flat ? lists : .f32
        self.nlist = nlist
        self.coding = coding
        self.nprobe = nprobe
        self.refine = refine
        self.seed = seed
        self.iterations = iterations
    }

    /// Whether a coding codes residuals when the caller does not say: 8-bit PQ codes residuals (as FAISS
    /// `IndexIVFPQ`); 4-bit fast scan codes the raw vectors (as FAISS 1.15's `IndexIVFPQFastScan` default),
    /// which measured higher recall and QPS on siftsmall, docs60k and docs1m (BENCHMARKS.md, IVF section);
    /// flat has no codes (false).
    public static func defaultResidual(for coding: IVFCoding) -> Bool {
        switch coding {
        case .flat: false
        case .pq(_, let bits): bits == 8
        }
    }

    /// PQ codes of the raw vectors (a PQ coding without `pqResidual`): what feature `ivf-pq-raw` and the
    /// records' raw-codes flag say.
    var rawCodes: Bool { coding != .flat && !pqResidual }

    /// IVF-Flat with binary16 lists: what feature `ivf-flat16` says.
    var halfLists: Bool { coding == .flat && lists == .f16 }

    /// The coding as `index show` prints it: `flat`, or e.g. `pq4 M=96, codes of the raw vectors`.
    var codingSummary: String {
        coding == .flat ? coding.description + (lists == .f16 ? ", binary16 lists" : ", float32 lists")
            : coding.description + (pqResidual ? ", residual codes" : ", codes of the raw vectors")
    }

    /// Training rows needed per list: FAISS warns below 39 (k-means then has too few points per centroid).
    public static let rowsPerList = 39

    /// The default number of lists for `rows` vectors: 4·√rows rounded to the nearest power of two, at most
    /// `rows / 39` (so k-means has ≥ 39 training rows per centroid), and within 1…65536.
    public static func defaultNlist(rows: Int) -> Int {
        guard rows > 0 else { return 1 }
        let target = 4 * Double(rows).squareRoot()
        var nlist = 1 << Int(log2(max(target, 1)).rounded())
        nlist = min(nlist, max(1, rows / rowsPerList), 65536)
        return max(1, nlist)
    }

    /// The default PQ sub-quantizers for `dimension`: the largest divisor of the dimension that is at most
    /// min(64, dimension / 4), so a 4-bit code takes at most 1/16 of the float32 vector (8-bit: 1/8).
    public static func defaultSubquantizers(dimension: Int) -> Int {
        var m = max(1, min(64, dimension / 4))
        while dimension % m != 0 { m -= 1 }
        return m
    }

    /// These parameters with `m` 0 replaced by the default for `dimension`.
    func resolved(dimension: Int) -> IVFParameters {
        var p = self
        if case .pq(0, let bits) = coding { p.coding = .pq(m: Self.defaultSubquantizers(dimension: dimension), bits: bits) }
        return p
    }

    /// The live rows at which a write batch trains an untrained index of these parameters: 39 per list with
    /// an explicit `nlist` (and at least `minimumRows`), 10,000 when `nlist` is chosen from the data (where
    /// the default `nlist` is 256). `buildIVF` and `index build` train at any size from `minimumRows` on.
    public var trainingThreshold: Int {
        guard let nlist else { return 10_000 }
        return max(minimumRows(nlist: nlist), Self.rowsPerList * nlist)
    }

    /// The fewest live rows an index with these parameters can be trained on: `nlist` (one row per centroid)
    /// and, for PQ, the `2^bits` rows a codebook needs.
    public func minimumRows(nlist: Int) -> Int {
        switch coding {
        case .flat: nlist
        case .pq(_, let bits): max(nlist, 1 << bits)
        }
    }

    /// Checks the ranges of the explicit fields that do not depend on the collection (the one place they are
    /// checked; the CLI calls it to reject bad options before opening a store): `nlist` 1…65536, `nprobe`
    /// 1…65535, `refine` 0…65535, iterations 1…1000, PQ bits 8 or 4, PQ `m` 0 (the default) or 1…256.
    ///
    /// - Throws: `VecStoreError.invalidArgument` naming the option.
    public func validateRanges() throws(VecStoreError) {
        if let nlist, !(1...65536).contains(nlist) { throw .invalidArgument("--nlist \(nlist) is outside 1…65536") }
        if let nprobe, !(1...65535).contains(nprobe) { throw .invalidArgument("--nprobe \(nprobe) is outside 1…65535") }
        if let refine, !(0...65535).contains(refine) { throw .invalidArgument("--refine \(refine) is outside 0…65535") }
        guard (1...1000).contains(iterations) else { throw .invalidArgument("IVF k-means iterations \(iterations) outside 1…1000") }
        if case .pq(let m, let bits) = coding {
            guard bits == 8 || bits == 4 else { throw .invalidArgument("--pq-bits must be 8 or 4 (got \(bits))") }
            guard (0...256).contains(m) else { throw .invalidArgument("--pq-m \(m) is outside 1…256") }
        }
    }

    /// Checks the explicit fields against a collection of `dimension` (`validateRanges`, then that `m`
    /// divides the dimension).
    func validate(dimension: Int) throws(VecStoreError) {
        try validateRanges()
        if case .pq(let m, _) = resolved(dimension: dimension).coding {
            guard (1...256).contains(m), dimension % m == 0 else {
                throw .invalidArgument("--pq-m \(m) must be 1…256 and divide the dimension \(dimension)")
            }
        }
    }
}

/// Keys, database names and constants of the IVF layout (Spec/IVF.md §1).
enum IVFFormat {
    /// The store feature an IVF collection declares: needed to read (a reader without it would ignore the
    /// lists and search a collection whose writes it cannot keep in step) and to write.
    static let feature = "ivf"
    /// The store feature an IVF-PQ collection with codes of the raw vectors declares (Spec/IVF.md §2): needed
    /// to read and to write, so builds that only know residual codes refuse the store instead of reporting
    /// its header (flags bit 0 clear on a PQ kind) as damaged or scoring its codes as residuals.
    static let rawCodesFeature = Format.Feature(name: "ivf-pq-raw", neededToRead: true, neededToWrite: true)
    /// The store feature an IVF-Flat collection with binary16 lists (payload kind 5) declares (Spec/IVF.md
    /// §4.2): needed to read and to write, so builds that only know float32 lists refuse the store as written
    /// by a newer vecstore instead of reporting its records as damaged.
    static let halfListsFeature = Format.Feature(name: "ivf-flat16", neededToRead: true, neededToWrite: true)
    /// Declares `rawCodesFeature` when an index writes (or will write) PQ codes of the raw vectors, and
    /// `halfListsFeature` when it writes binary16 lists.
    static func declareCoding(raw: Bool, half: Bool = false, _ txn: Transaction, _ dbs: Databases) throws {
        if raw { try Format.declare(rawCodesFeature, txn, meta: dbs.meta) }
        if half { try Format.declare(halfListsFeature, txn, meta: dbs.meta) }
    }
    /// Checks a record's coding against the store's features: PQ codes of the raw vectors are only written
    /// with `rawCodesFeature` declared, binary16 lists only with `halfListsFeature`, so a flag or kind without
    /// its feature is a damaged byte (a residual index whose bit 0 was cleared would otherwise be scored as
    /// raw codes), reported as corrupt.
    static func checkCoding(raw: Bool, half: Bool = false, _ txn: Transaction, _ dbs: Databases, name: String) throws {
        guard raw || half else { return }
        // `Format.declares` walks the record in place: this runs on every model load of such an index, and
        // the record itself was checked when the store opened.
        let features = try txn.get(dbs.meta, Format.featuresKey)
        if raw, !(features.map { Format.declares(rawCodesName, in: $0) } ?? false) {
            throw VecStoreError.corrupt("collection \(name): IVF record offset 3: flags say PQ codes of the raw "
                                        + "vectors, but the store does not declare feature \(rawCodesFeature.name)")
        }
        if half, !(features.map { Format.declares(halfListsName, in: $0) } ?? false) {
            throw VecStoreError.corrupt("collection \(name): IVF record: kind says binary16 lists, but the store "
                                        + "does not declare feature \(halfListsFeature.name)")
        }
    }
    /// `rawCodesFeature`'s name as bytes.
    static let rawCodesName: [UInt8] = Array(rawCodesFeature.name.utf8)
    /// `halfListsFeature`'s name as bytes.
    static let halfListsName: [UInt8] = Array(halfListsFeature.name.utf8)
    /// Meta key prefix of the header record `ivf:<BE32 cid>`.
    static let keyPrefix: [UInt8] = Array("ivf:".utf8)

    /// Named databases.
    enum DB {
        /// Centroids (`BE32(cid)·0x00`) and PQ codebooks (`BE32(cid)·0x01`).
        static let ivf = "ivf"
        /// List blocks `BE32(cid)·BE32(list)·BE32(block)`.
        static let lists = "ivf-lists"
    }

    /// Rows per full list block: 256 for flat lists (a 128-d float32 block is 128 KiB, binary16 64 KiB),
    /// 1024 for PQ codes.
    static func blockCapacity(_ kind: IVFPayloadKind) -> Int { kind.isFlat ? 256 : 1024 }

    static func headerKey(_ cid: UInt32) -> [UInt8] { keyPrefix + Format.prefix(cid) }
    static func centroidKey(_ cid: UInt32) -> [UInt8] { Format.prefix(cid) + [0] }
    static func codebookKey(_ cid: UInt32) -> [UInt8] { Format.prefix(cid) + [1] }

    static func blockKey(_ cid: UInt32, list: Int, block: Int) -> [UInt8] {
        var k: [UInt8] = []
        k.reserveCapacity(12)
        k.appendBE(cid)
        k.appendBE(UInt32(list))
        k.appendBE(UInt32(block))
        return k
    }

    /// The handles of the two IVF databases.
    static func handles(_ dbs: Databases) throws(VecStoreError) -> (ivf: Database, lists: Database) {
        guard let ivf = dbs.handle(DB.ivf), let lists = dbs.handle(DB.lists) else {
            throw .corrupt("the store has no IVF databases (opened read-only before they were created)")
        }
        return (ivf, lists)
    }

    /// A damaged-record error of the quantization codecs as a store error naming the collection.
    static func corrupt(_ error: QuantError, _ name: String) -> VecStoreError {
        .corrupt("collection \(name): \(error)")
    }
}
