import CDistance
import CQuant

/// int8 scalar quantization, meant for HNSW traversal copies (a quarter of the float32 size).
///
/// Component `t` of a vector is stored as `c_t = round((x_t − offset_t) / scale_t)` clamped to −127…127,
/// and decoded as `offset_t + scale_t · c_t`. With `.perDimension`, each component has its own offset
/// (the midpoint of its training range) and scale (half the range over 127); with `.global`, one pair
/// covers all components. Values outside the trained range clamp. A query stays float: scores use
/// `q · x̂ = q · offset + Σ (q_t · scale_t) · c_t` and `|q − x̂|² = Σ scale_t² ((q_t − offset_t)/scale_t − c_t)²`,
/// each one dispatched int8 kernel call (`CQuant`) after a per-query preparation (`Query`).
public struct ScalarQuantizer8: Sendable, Equatable {
    /// How offsets and scales are shared.
    public enum Granularity: UInt8, Sendable {
        /// One offset and scale for all components.
        case global = 0
        /// An offset and scale per component.
        case perDimension = 1
    }

    /// Components per vector.
    public let dimension: Int
    /// Sharing of offsets and scales.
    public let granularity: Granularity
    /// Offset per component (`dimension` values, equal under `.global`).
    public let offsets: [Float]
    /// Scale per component (`dimension` values, > 0).
    public let scales: [Float]

    /// A quantizer with explicit parameters.
    ///
    /// - Throws: `QuantError.invalidParameter` when the arrays do not have `dimension` values, or a value
    ///   is not finite, or a scale is not positive.
    public init(dimension: Int, granularity: Granularity, offsets: [Float], scales: [Float]) throws(QuantError) {
        guard dimension >= 1, offsets.count == dimension, scales.count == dimension else {
            throw .invalidParameter("int8 quantizer needs \(dimension) offsets and scales")
        }
        if let bad = offsets.firstIndex(where: { !$0.isFinite }) {
            throw .invalidParameter("int8 offset \(bad) is not finite")
        }
        if let bad = scales.firstIndex(where: { !($0.isFinite && $0 > 0) }) {
            throw .invalidParameter("int8 scale \(bad) is not a finite positive number")
        }
        self.dimension = dimension
        self.granularity = granularity
        self.offsets = offsets
        self.scales = scales
    }

    /// Trains offsets and scales from the range of `count` contiguous rows (see `train(count:dimension:granularity:row:)`).
    public static func train(_ data: UnsafePointer<Float>, count: Int, dimension: Int,
                             granularity: Granularity) throws(QuantError) -> ScalarQuantizer8 {
        try train(count: count, dimension: dimension, granularity: granularity) { data + $0 * dimension }
    }

    /// Trains offsets and scales from the range of rows `row(0) … row(count − 1)` (`dimension` floats
    /// each): per component (or over all, `.global`) `offset = lo/2 + hi/2` and `scale = (hi/2 − lo/2)/127`
    /// (halves first, so no range overflows), then every scale raised to at least 2⁻²⁰ of the widest (1
    /// when none is positive): a component constant over the sample keeps usable codes for later rows that
    /// vary there, and per-query terms like `(q − offset)/scale` stay far from overflow and underflow.
    ///
    /// - Throws: `QuantError.invalidParameter` for no rows, a zero dimension or a non-finite value.
    public static func train(count: Int, dimension: Int, granularity: Granularity,
                             row: (Int) -> UnsafePointer<Float>) throws(QuantError) -> ScalarQuantizer8 {
        guard count >= 1, dimension >= 1 else { throw .invalidParameter("int8 training needs rows and a dimension") }
        var lo = [Float](repeating: .infinity, count: dimension), hi = [Float](repeating: -.infinity, count: dimension)
        for i in 0..<count {
            let v = row(i)
            for t in 0..<dimension {
                let x = v[t]
                guard x.isFinite else { throw .invalidParameter("int8 training row \(i) component \(t) is not finite") }
                lo[t] = min(lo[t], x)
                hi[t] = max(hi[t], x)
            }
        }
        if granularity == .global {
            let l = lo.min() ?? 0, h = hi.max() ?? 0
            lo = [Float](repeating: l, count: dimension)
            hi = [Float](repeating: h, count: dimension)
        }
        let offsets = (0..<dimension).map { lo[$0] / 2 + hi[$0] / 2 }
        var scales = (0..<dimension).map { (hi[$0] / 2 - lo[$0] / 2) / 127 }
        let widest = scales.filter { $0.isFinite && $0 > 0 }.max() ?? 1
        let floor = widest * 0x1p-20
        for t in 0..<dimension where !(scales[t].isFinite && scales[t] >= floor) { scales[t] = floor }
        return try ScalarQuantizer8(dimension: dimension, granularity: granularity, offsets: offsets, scales: scales)
    }

    /// Encodes `count` rows into `count × dimension` int8 codes.
    public func encode(_ data: UnsafePointer<Float>, count: Int, into codes: UnsafeMutablePointer<Int8>) {
        for i in 0..<count {
            for t in 0..<dimension {
                let v = ((data[i * dimension + t] - offsets[t]) / scales[t]).rounded()
                codes[i * dimension + t] = v.isNaN ? 0 : Int8(min(max(v, -127), 127))
            }
        }
    }

    /// Decodes `count` rows of codes into floats.
    public func decode(_ codes: UnsafePointer<Int8>, count: Int, into out: UnsafeMutablePointer<Float>) {
        for i in 0..<count {
            for t in 0..<dimension { out[i * dimension + t] = offsets[t] + scales[t] * Float(codes[i * dimension + t]) }
        }
    }

    /// Largest error of one decoded component inside the trained range (half a step).
    public var componentErrorBound: Float { (scales.max() ?? 0) / 2 }

    /// Instruction set of the int8 and fast-scan kernels ("avx512bw", "avx2" or "generic").
    public static var kernelISA: String { String(cString: vq_isa()) }
}
