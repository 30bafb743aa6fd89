import LMDB
import VecStoreKernels

/// The `pca:<collection id>` meta record (Spec/PCA.md): the projection a reduced collection applies to
/// every vector that enters it (documents and queries of the input dimension).
struct ProjectionRecord: Equatable {
    static let recordVersion: UInt8 = 1
    static let keyPrefix: [UInt8] = Array("pca:".utf8)
    /// The feature a store with a reduced collection declares (Spec/PCA.md §1): needed to write, since a
    /// writer without it would drop the record on compaction and leave it behind when dropping the collection.
    static let feature = "pca"
    /// Flag bit 0: `project` subtracts the mean first.
    static let flagSubtractMean: UInt8 = 1
    /// Flag bit 1: input vectors are scaled to unit length before projecting (cosine collections).
    static let flagNormalizeInput: UInt8 = 2
    /// Bytes before the float arrays.
    static let headerBytes = 20

    var pca: PCA
    var normalizesInput: Bool

    static func key(_ collection: UInt32) -> [UInt8] {
        var k = keyPrefix
        k.appendBE(collection)
        return k
    }

    /// Size of the record for these dimensions.
    static func size(input d: Int, output k: Int) -> Int { headerBytes + 4 * (d + k + k * d) }

    func encoded() -> [UInt8] {
        let d = pca.inputDimension, k = pca.outputDimension
        var b: [UInt8] = []
        b.reserveCapacity(Self.size(input: d, output: k))
        b.append(Self.recordVersion)
        b.append((pca.subtractsMean ? Self.flagSubtractMean : 0) | (normalizesInput ? Self.flagNormalizeInput : 0))
        b.appendLE(UInt16(0))
        b.appendLE(UInt32(d))
        b.appendLE(UInt32(k))
        b.appendLE(UInt32(clamping: pca.sampleCount))
        b.appendLE(pca.totalVariance)
        for x in pca.mean { b.appendLE(x) }
        for x in pca.explainedVariance { b.appendLE(x) }
        for x in pca.components { b.appendLE(x) }
        return b
    }

    /// Decodes and checks the record: known version and flags, sizes that match the dimensions, finite
    /// values (a damaged record is reported, never trusted).
    static func decode(_ value: UnsafeRawBufferPointer, context: String) throws(VecStoreError) -> ProjectionRecord {
        var r = ByteReader(value, context: context)
        let version = try r.u8()
        guard version == recordVersion else { throw .corrupt("\(context): PCA record version \(version) is unknown") }
        let flags = try r.u8()
        guard flags & ~(flagSubtractMean | flagNormalizeInput) == 0 else {
            throw .corrupt("\(context): PCA flags \(flags) are unknown")
        }
        _ = try r.u16()
        let d = Int(try r.u32()), k = Int(try r.u32())
        let samples = Int(try r.u32())
        let total = try r.f32()
        guard (2...65_536).contains(d), k >= 1, k < d else {
            throw .corrupt("\(context): PCA dimensions \(d) → \(k) out of range (need 1 ≤ output < input ≤ 65536)")
        }
        guard value.count == size(input: d, output: k) else {
            throw .corrupt("\(context): PCA record has \(value.count) bytes, \(d) → \(k) dimensions need \(size(input: d, output: k))")
        }
        func floats(_ n: Int) throws(VecStoreError) -> [Float] {
            let bytes = try r.slice(n * 4)
            return (0..<n).map { Float(bitPattern: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
        }
        let mean = try floats(d)
        let variance = try floats(k)
        let components = try floats(k * d)
        do {
            let pca = try PCA(mean: mean, components: components, explainedVariance: variance, totalVariance: total,
                              sampleCount: samples, subtractsMean: flags & flagSubtractMean != 0)
            return ProjectionRecord(pca: pca, normalizesInput: flags & flagNormalizeInput != 0)
        } catch {
            throw .corrupt("\(context): \(error.description)")
        }
    }

    /// The collection's projection, or nil when it stores vectors as given.
    static func load(_ txn: Transaction, _ dbs: Databases, _ collection: UInt32) throws -> ProjectionRecord? {
        guard let v = try txn.get(dbs.meta, key(collection)) else { return nil }
        return try decode(v, context: "meta pca:\(collection)")
    }

    /// Writes the record and declares the `pca` feature, in the caller's transaction.
    func store(_ txn: Transaction, _ dbs: Databases, _ collection: UInt32) throws {
        try txn.put(dbs.meta, Self.key(collection), encoded())
        try Format.declare(Format.Feature(name: Self.feature, neededToRead: false, neededToWrite: true), txn, meta: dbs.meta)
    }

    /// `vector` as the collection stores it before cosine normalisation: projected when it has the input
    /// dimension (scaled to unit length first under cosine), unchanged when it has the reduced dimension.
    func reduce(_ vector: [Float], id: String?) throws(VecStoreError) -> [Float] {
        if vector.count == pca.outputDimension { return vector }
        guard vector.count == pca.inputDimension else {
            throw .dimensionMismatch(expected: pca.inputDimension, got: vector.count, id: id)
        }
        for (i, x) in vector.enumerated() where !x.isFinite {
            throw .invalidVector(id: id, reason: "component \(i) is \(x)")
        }
        guard normalizesInput else { return pca.project(vector) }
        let norm = squaredNorm(vector).squareRoot()
        guard norm > 0, norm.isFinite else {
            throw .invalidVector(id: id, reason: norm == 0 ? "all components are zero, which has no cosine direction"
                                                     : "its norm overflows float32")
        }
        return pca.project(vector.map { $0 / norm })
    }

    /// Faults of a stored record beyond decoding: the output dimension must be the collection's, and the
    /// components orthonormal (within 1e-3).
    func faults(collection name: String, dimension: Int) -> [String] {
        var faults: [String] = []
        if pca.outputDimension != dimension {
            faults.append("\(name): PCA record projects to \(pca.outputDimension) dimensions, the collection has \(dimension)")
        }
        let d = pca.inputDimension, k = pca.outputDimension
        let gram = pca.components.withUnsafeBufferPointer { w -> [Float] in
            var g = [Float](repeating: 0, count: k * k)
            for i in 0..<k {
                for j in i..<k {
                    var s: Float = 0
                    for t in 0..<d { s += w[i * d + t] * w[j * d + t] }
                    g[i * k + j] = s
                }
            }
            return g
        }
        outer: for i in 0..<k {
            for j in i..<k where abs(gram[i * k + j] - (i == j ? 1 : 0)) > 1e-3 {
                faults.append("\(name): PCA components \(i) and \(j) are not orthonormal (dot product \(gram[i * k + j]))")
                break outer
            }
        }
        return faults
    }
}

extension VecStore {
    /// The collection `name`, created if missing as a reduced collection: it stores `pca.outputDimension`-
    /// dimensional vectors, and documents and queries of `pca.inputDimension` floats are projected with
    /// `pca` (scaled to unit length first under cosine, renormalised after) — see Spec/PCA.md. Fit `pca`
    /// on vectors as the collection will see them (unit length under cosine). An existing collection must
    /// have the same metric and an equal projection.
    public func collection(_ name: String, reducing pca: PCA, metric: Metric = .cosine,
                           index: IndexKind = .hnswDefault) throws(VecStoreError) -> VectorCollection
    {
        guard pca.outputDimension < pca.inputDimension else {
            throw .invalidArgument("a PCA to \(pca.outputDimension) dimensions does not reduce \(pca.inputDimension)")
        }
        let projection = ProjectionRecord(pca: pca, normalizesInput: metric == .cosine)
        let c = try collection(name, dimension: pca.outputDimension, metric: metric, index: index, projection: projection)
        guard c.projection == projection else {
            throw .collectionMismatch("collection '\(name)' exists "
                + (c.pca == nil ? "without a PCA" : "with a different PCA") + "; a reduction is chosen when a collection is created")
        }
        return c
    }
}
