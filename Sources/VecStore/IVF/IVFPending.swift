import VecStoreKernels
import VecStoreQuant

/// The `ivf:<cid>` record of an IVF index that is not trained yet (Spec/IVF.md §2.1): the requested
/// parameters, 32 bytes (a trained index's header is 64). Its collection is searched exactly; no key of
/// the collection exists in `ivf` or `ivf-lists` until training replaces this record with the header.
///
/// | offset | size | field |
/// |---:|---:|---|
/// | 0 | 1 | version (1) |
/// | 1 | 1 | payload kind the index will write: 1 flat, 2 pq8, 4 pq4-fastscan, 5 flat16 |
/// | 2 | 1 | metric (the collection's) |
/// | 3 | 1 | flags: bit 0 = PQ codes of the raw vectors (`pqResidual` false; feature `ivf-pq-raw`), 0 for residual codes and flat; other bits 0 |
/// | 4 | 4 | nlist, 0…65536 (0: chosen from the rows at training) |
/// | 8 | 2 | M: 0 for flat; for PQ 0 (chosen from the dimension) or 1…256 dividing the dimension |
/// | 10 | 1 | bits: 0 flat, 8 pq8, 4 pq4-fastscan |
/// | 11 | 1 | reserved, 0 |
/// | 12 | 4 | live rows at which a write batch trains the index, ≥ 1; 0xFFFFFFFF: only on request |
/// | 16 | 2 | default nprobe (0: nlist / 16) |
/// | 18 | 2 | default refine (0xFFFF: 4 for PQ, 0 for flat) |
/// | 20 | 4 | k-means iterations, 1…1000 |
/// | 24 | 8 | seed |
struct IVFPendingRecord: Equatable {
    static let size = 32
    static let version: UInt8 = 1

    var parameters: IVFParameters
    var metric: Metric
    /// Live rows at which a write batch trains.
    var trainAt: Int
    /// `trainAt` of an index trained only by `buildIVF` or at the end of an import.
    static let onRequest = Int(UInt32.max)

    func encode(dimension: Int) throws(VecStoreError) -> [UInt8] {
        try parameters.validate(dimension: dimension)
        var out: [UInt8] = [Self.version, parameters.coding.payloadKind(lists: parameters.lists).rawValue, metric.rawValue,
                            parameters.rawCodes ? 1 : 0]
        out.appendLE(UInt32(parameters.nlist ?? 0))
        var m = 0, bits = 0
        if case .pq(let pm, let pb) = parameters.coding { (m, bits) = (pm, pb) }
        out.appendLE(UInt16(m))
        out.append(UInt8(bits))
        out.append(0)
        out.appendLE(UInt32(max(1, min(trainAt, Int(UInt32.max)))))
        out.appendLE(UInt16(parameters.nprobe ?? 0))
        out.appendLE(UInt16(parameters.refine ?? 0xFFFF))
        out.appendLE(UInt32(parameters.iterations))
        var seed: [UInt8] = []
        for i in 0..<8 { seed.append(UInt8((parameters.seed >> UInt64(8 * i)) & 0xff)) }
        return out + seed
    }

    /// Reads and checks a record of collection `name` (dimension `dimension`, metric `metric`).
    static func decode(_ b: UnsafeRawBufferPointer, dimension: Int, metric: Metric, name: String) throws(VecStoreError)
        -> IVFPendingRecord
    {
        func le<T: FixedWidthInteger>(_: T.Type, _ at: Int) -> T { T(littleEndian: b.loadUnaligned(fromByteOffset: at, as: T.self)) }
        func bad(_ offset: Int, _ reason: String) -> VecStoreError {
            .corrupt("collection \(name): damaged IVF parameters record at byte \(offset): \(reason)")
        }
        guard b.count == size else { throw bad(0, "length \(b.count), expected \(size)") }
        guard b[0] == version else { throw bad(0, "version \(b[0])") }
        guard b[3] <= 1, b[11] == 0 else { throw bad(b[3] <= 1 ? 11 : 3, "reserved bits are not 0") }
        guard b[2] == metric.rawValue else { throw bad(2, "metric \(b[2]), the collection's is \(metric)") }
        let m = Int(le(UInt16.self, 8)), bits = Int(b[10])
        let coding: IVFCoding
        var lists = IVFFlatLists.f32
        switch IVFPayloadKind(rawValue: b[1]) {
        case .flat?, .flat16?:
            guard m == 0, bits == 0 else { throw bad(8, "a flat index has M = 0 and bits = 0") }
            guard b[3] == 0 else { throw bad(3, "a flat index has no raw-code flag") }
            coding = .flat
            lists = b[1] == IVFPayloadKind.flat.rawValue ? .f32 : .f16
        case .pq8?, .pq4FastScan?:
            guard bits == (b[1] == IVFPayloadKind.pq8.rawValue ? 8 : 4) else { throw bad(10, "\(bits) bits for payload kind \(b[1])") }
            coding = .pq(m: m, bits: bits)
        default: throw bad(1, "unknown payload kind \(b[1])")
        }
        let nlist = Int(le(UInt32.self, 4)), nprobe = Int(le(UInt16.self, 16)), refine = Int(le(UInt16.self, 18))
        let trainAt = Int(le(UInt32.self, 12))
        guard trainAt >= 1 else { throw bad(12, "training threshold 0") }
        let p = IVFParameters(nlist: nlist == 0 ? nil : nlist, coding: coding, nprobe: nprobe == 0 ? nil : nprobe,
                              refine: refine == 0xFFFF ? nil : refine, seed: le(UInt64.self, 24),
                              iterations: Int(le(UInt32.self, 20)), pqResidual: b[3] == 0, lists: lists)
        do { try p.validate(dimension: dimension) } catch { throw bad(4, "\(error)") }
        return IVFPendingRecord(parameters: p, metric: metric, trainAt: trainAt)
    }
}
