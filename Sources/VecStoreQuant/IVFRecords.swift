import VecStoreKernels

/// The parameters of one IVF index (Spec/IVF.md §2): a fixed 64-byte little-endian record.
///
/// | offset | size | field |
/// |---:|---:|---|
/// | 0 | 1 | version (1) |
/// | 1 | 1 | payload kind (`IVFPayloadKind`) |
/// | 2 | 1 | metric (`Metric` raw value: 0 cosine, 1 l2, 2 dot) |
/// | 3 | 1 | flags: bit 0 = codes encode residuals against the coarse centroid (PQ kinds: 1 residual codes, 0 codes of the raw vectors; 0 for flat); other bits 0 |
/// | 4 | 4 | nlist, 1…65536 |
/// | 8 | 4 | dimension, 1…65535 |
/// | 12 | 2 | M (PQ sub-quantizers; 0 for flat) |
/// | 14 | 1 | bits per code (8 or 4; 0 for flat) |
/// | 15 | 1 | defaults: which parameters were chosen by the trainer, not given (`IVFHeader.Defaults`); bits 4–7 0 |
/// | 16 | 4 | block capacity: rows per full list block, a multiple of 32 in 32…65536 |
/// | 20 | 2 | default nprobe, 1…nlist |
/// | 22 | 2 | default refine factor (0 = no re-ranking) |
/// | 24 | 8 | k-means seed |
/// | 32 | 8 | coarse training error (mean squared distance to the nearest centroid, float64) |
/// | 40 | 8 | PQ training error (mean squared reconstruction error of the residuals, float64; 0 for flat) |
/// | 48 | 4 | training rows (after sampling) |
/// | 52 | 4 | k-means iterations |
/// | 56 | 8 | reserved, 0 |
public struct IVFHeader: Sendable, Equatable {
    /// Record length.
    public static let size = 64
    /// Layout version.
    public static let version: UInt8 = 1

    /// What list blocks carry.
    public var kind: IVFPayloadKind
    /// Collection metric.
    public var metric: Metric
    /// Coarse centroids (lists).
    public var nlist: Int
    /// Vector dimension.
    public var dimension: Int
    /// PQ sub-quantizers (0 for flat).
    public var subquantizers: Int
    /// Bits per PQ code (0 for flat).
    public var bits: Int
    /// Rows per full list block.
    public var blockCapacity: Int
    /// Lists probed when a query does not say.
    public var defaultNprobe: Int
    /// Re-ranking factor when a query does not say (0: report ADC scores).
    public var defaultRefine: Int
    /// k-means seed.
    public var seed: UInt64
    /// Coarse quantizer training error.
    public var coarseError: Double
    /// PQ training error (0 for flat).
    public var codeError: Double
    /// Rows the training used.
    public var trainingRows: Int
    /// k-means iterations.
    public var iterations: Int
    /// Which parameters the trainer chose rather than the caller (so the index reports its parameters as
    /// they were asked for).
    public var defaults: Defaults

    /// Bits of the `defaults` byte: a set bit means the field holds the trainer's default for the data.
    public struct Defaults: OptionSet, Sendable, Equatable {
        /// The byte.
        public let rawValue: UInt8
        /// Creates a set from its byte.
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        /// `nlist` was chosen from the number of rows.
        public static let nlist = Defaults(rawValue: 1)
        /// `M` was chosen from the dimension.
        public static let subquantizers = Defaults(rawValue: 2)
        /// `defaultNprobe` is the trainer's default.
        public static let nprobe = Defaults(rawValue: 4)
        /// `defaultRefine` is the trainer's default.
        public static let refine = Defaults(rawValue: 8)
    }

    /// Whether PQ codes encode the residual `x − c` against the row's coarse centroid (flags bit 0): one
    /// look-up table per probed list (L2) and a per-list constant. False for flat, and for PQ codes of the
    /// raw vectors (Spec/PQ.md §4: one table per query shared by every probed list, no constant).
    public var residual: Bool

    /// Creates a header; `validate` is applied by `encode` and `decode`. `residual` nil means residual
    /// codes for the PQ kinds (false for flat).
    public init(kind: IVFPayloadKind, metric: Metric, nlist: Int, dimension: Int, subquantizers: Int, bits: Int,
                blockCapacity: Int, defaultNprobe: Int, defaultRefine: Int, seed: UInt64, coarseError: Double,
                codeError: Double, trainingRows: Int, iterations: Int, defaults: Defaults = [],
                residual: Bool? = nil) {
        self.defaults = defaults
        self.residual = residual ?? !kind.isFlat
        self.kind = kind
        self.metric = metric
        self.nlist = nlist
        self.dimension = dimension
        self.subquantizers = subquantizers
        self.bits = bits
        self.blockCapacity = blockCapacity
        self.defaultNprobe = defaultNprobe
        self.defaultRefine = defaultRefine
        self.seed = seed
        self.coarseError = coarseError
        self.codeError = codeError
        self.trainingRows = trainingRows
        self.iterations = iterations
    }

    /// The first field that is out of range, as (offset, reason), or nil.
    func problem() -> (Int, String)? {
        if nlist < 1 || nlist > 65536 { return (4, "nlist \(nlist) outside 1…65536") }
        if dimension < 1 || dimension > 65535 { return (8, "dimension \(dimension) outside 1…65535") }
        switch kind {
        case .flat, .flat16:
            if subquantizers != 0 || bits != 0 { return (12, "a flat index has M = 0 and bits = 0") }
            if residual { return (3, "a flat index has no residual codes") }
        case .pq8, .pq4, .pq4FastScan:
            if subquantizers < 1 || subquantizers > 256 || dimension % subquantizers != 0 {
                return (12, "M \(subquantizers) must be 1…256 and divide the dimension \(dimension)")
            }
            if bits != (kind == .pq8 ? 8 : 4) { return (14, "\(bits) bits for a \(kind) index") }
        }
        if blockCapacity < 32 || blockCapacity > 65536 || blockCapacity % 32 != 0 {
            return (16, "block capacity \(blockCapacity) is not a multiple of 32 in 32…65536")
        }
        if defaultNprobe < 1 || defaultNprobe > min(nlist, 65535) { return (20, "default nprobe \(defaultNprobe) outside 1…nlist") }
        if defaultRefine < 0 || defaultRefine > 65535 { return (22, "default refine \(defaultRefine) out of range") }
        if !(coarseError.isFinite && coarseError >= 0) { return (32, "coarse training error is not a finite non-negative number") }
        if !(codeError.isFinite && codeError >= 0) { return (40, "PQ training error is not a finite non-negative number") }
        if trainingRows < 0 || trainingRows > Int(UInt32.max) { return (48, "training rows out of range") }
        if iterations < 0 || iterations > Int(UInt32.max) { return (52, "iterations out of range") }
        return nil
    }

    /// The 64-byte record.
    ///
    /// - Throws: `QuantError.invalidParameter` when a field is out of range.
    public func encode() throws(QuantError) -> [UInt8] {
        if let (_, reason) = problem() { throw .invalidParameter("IVF header: \(reason)") }
        var out: [UInt8] = [Self.version, kind.rawValue, metric.rawValue, residual ? 1 : 0]
        out.appendLE(UInt32(nlist))
        out.appendLE(UInt32(dimension))
        out.appendLE(UInt16(subquantizers))
        out.append(UInt8(bits))
        out.append(defaults.rawValue)
        out.appendLE(UInt32(blockCapacity))
        out.appendLE(UInt16(defaultNprobe))
        out.appendLE(UInt16(defaultRefine))
        out.appendLE(seed)
        out.appendLE(coarseError.bitPattern)
        out.appendLE(codeError.bitPattern)
        out.appendLE(UInt32(trainingRows))
        out.appendLE(UInt32(iterations))
        out.appendLE(UInt64(0))
        return out
    }

    /// Reads and checks a record; any inconsistency gives `QuantError.damaged`.
    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(QuantError) -> IVFHeader {
        let record = "IVF header"
        guard bytes.count == size else {
            throw .damaged(record: record, offset: 0, reason: "length \(bytes.count), expected \(size)")
        }
        guard bytes[0] == version else { throw .damaged(record: record, offset: 0, reason: "version \(bytes[0])") }
        guard let kind = IVFPayloadKind(rawValue: bytes[1]) else {
            throw .damaged(record: record, offset: 1, reason: "unknown payload kind \(bytes[1])")
        }
        guard let metric = Metric(rawValue: bytes[2]) else {
            throw .damaged(record: record, offset: 2, reason: "unknown metric \(bytes[2])")
        }
        guard bytes[3] == 0 || (bytes[3] == 1 && !kind.isFlat) else {
            throw .damaged(record: record, offset: 3, reason: "flags \(bytes[3]) do not match the \(kind) kind")
        }
        guard bytes[15] & 0xF0 == 0 else { throw .damaged(record: record, offset: 15, reason: "unknown defaults bits") }
        guard bytes.loadLE(UInt64.self, at: 56) == 0 else {
            throw .damaged(record: record, offset: 56, reason: "reserved field is not 0")
        }
        let header = IVFHeader(
            kind: kind, metric: metric, nlist: Int(bytes.loadLE(UInt32.self, at: 4)),
            dimension: Int(bytes.loadLE(UInt32.self, at: 8)), subquantizers: Int(bytes.loadLE(UInt16.self, at: 12)),
            bits: Int(bytes[14]), blockCapacity: Int(bytes.loadLE(UInt32.self, at: 16)),
            defaultNprobe: Int(bytes.loadLE(UInt16.self, at: 20)), defaultRefine: Int(bytes.loadLE(UInt16.self, at: 22)),
            seed: bytes.loadLE(UInt64.self, at: 24),
            coarseError: Double(bitPattern: bytes.loadLE(UInt64.self, at: 32)),
            codeError: Double(bitPattern: bytes.loadLE(UInt64.self, at: 40)),
            trainingRows: Int(bytes.loadLE(UInt32.self, at: 48)), iterations: Int(bytes.loadLE(UInt32.self, at: 52)),
            defaults: Defaults(rawValue: bytes[15]), residual: bytes[3] == 1)
        if let (offset, reason) = header.problem() { throw .damaged(record: record, offset: offset, reason: reason) }
        return header
    }
}

/// Codec of float32 matrices stored as one value (coarse centroids: `nlist × dimension`; PQ codebooks:
/// `M × 2^bits × dimension/M`), little-endian, no header: the shape comes from the `IVFHeader`.
public enum FloatMatrixRecord {
    /// The little-endian bytes of `values`.
    public static func encode(_ values: [Float]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(values.count * 4)
        for v in values { out.appendLE(v.bitPattern) }
        return out
    }

    /// Reads exactly `count` finite floats; a wrong length or a non-finite value gives `QuantError.damaged`
    /// naming `record`. A `count` that is negative or whose byte size overflows matches no value (an error,
    /// not a trap: the count comes from stored header fields).
    public static func decode(_ bytes: UnsafeRawBufferPointer, count: Int, record: String) throws(QuantError) -> [Float] {
        let size = count.multipliedReportingOverflow(by: 4)
        guard count >= 0, !size.overflow, bytes.count == size.partialValue else {
            throw .damaged(record: record, offset: 0, reason: "length \(bytes.count), expected \(count) floats")
        }
        var out = [Float](repeating: 0, count: count)
        for i in 0..<count {
            let v = Float(bitPattern: bytes.loadLE(UInt32.self, at: 4 * i))
            guard v.isFinite else { throw .damaged(record: record, offset: 4 * i, reason: "value \(i) is not finite") }
            out[i] = v
        }
        return out
    }
}
