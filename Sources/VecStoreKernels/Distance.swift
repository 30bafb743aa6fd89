/// Distance metrics supported by collections. The raw values are the on-disk codes (Spec/FORMAT.md).
public enum Metric: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// Cosine similarity. Vectors are stored unit-normalised, so the score is one dot product.
    case cosine = 0
    /// Squared Euclidean distance (lower is closer), as FAISS `IndexFlatL2` reports it.
    case l2 = 1
    /// Inner product (higher is closer).
    case dot = 2

    /// The metric's name as the CLI and the library spell it.
    public var description: String {
        switch self {
        case .cosine: "cosine"
        case .l2: "l2"
        case .dot: "dot"
        }
    }

    /// Parses `cosine`, `l2` or `dot`.
    public init?(name: String) {
        switch name.lowercased() {
        case "cosine", "cos": self = .cosine
        case "l2", "euclidean": self = .l2
        case "dot", "ip", "inner_product": self = .dot
        default: return nil
        }
    }

    /// Whether a larger reported score means closer (true for cosine and dot, false for l2).
    public var higherIsCloser: Bool { self != .l2 }
}

/// Inner product of two `count`-element float vectors (SIMD16 with four accumulators and a scalar tail).
@inlinable @inline(__always)
public func dotProduct(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ count: Int) -> Float {
    let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
    var s0 = SIMD16<Float>(), s1 = SIMD16<Float>(), s2 = SIMD16<Float>(), s3 = SIMD16<Float>()
    var i = 0
    let stride = MemoryLayout<SIMD16<Float>>.stride
    while i + 64 <= count {
        let o = i * 4
        s0 += ra.loadUnaligned(fromByteOffset: o, as: SIMD16<Float>.self)
            * rb.loadUnaligned(fromByteOffset: o, as: SIMD16<Float>.self)
        s1 += ra.loadUnaligned(fromByteOffset: o + stride, as: SIMD16<Float>.self)
            * rb.loadUnaligned(fromByteOffset: o + stride, as: SIMD16<Float>.self)
        s2 += ra.loadUnaligned(fromByteOffset: o + 2 * stride, as: SIMD16<Float>.self)
            * rb.loadUnaligned(fromByteOffset: o + 2 * stride, as: SIMD16<Float>.self)
        s3 += ra.loadUnaligned(fromByteOffset: o + 3 * stride, as: SIMD16<Float>.self)
            * rb.loadUnaligned(fromByteOffset: o + 3 * stride, as: SIMD16<Float>.self)
        i += 64
    }
    while i + 16 <= count {
        let o = i * 4
        s0 += ra.loadUnaligned(fromByteOffset: o, as: SIMD16<Float>.self)
            * rb.loadUnaligned(fromByteOffset: o, as: SIMD16<Float>.self)
        i += 16
    }
    var sum = ((s0 + s1) + (s2 + s3)).sum()
    while i < count {
        sum += a[i] * b[i]
        i += 1
    }
    return sum
}

/// Squared Euclidean distance of two `count`-element float vectors.
@inlinable @inline(__always)
public func squaredL2(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ count: Int) -> Float {
    let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
    var s0 = SIMD16<Float>(), s1 = SIMD16<Float>(), s2 = SIMD16<Float>(), s3 = SIMD16<Float>()
    var i = 0
    let stride = MemoryLayout<SIMD16<Float>>.stride
    while i + 64 <= count {
        let o = i * 4
        let d0 = ra.loadUnaligned(fromByteOffset: o, as: SIMD16<Float>.self)
            - rb.loadUnaligned(fromByteOffset: o, as: SIMD16<Float>.self)
        let d1 = ra.loadUnaligned(fromByteOffset: o + stride, as: SIMD16<Float>.self)
            - rb.loadUnaligned(fromByteOffset: o + stride, as: SIMD16<Float>.self)
        let d2 = ra.loadUnaligned(fromByteOffset: o + 2 * stride, as: SIMD16<Float>.self)
            - rb.loadUnaligned(fromByteOffset: o + 2 * stride, as: SIMD16<Float>.self)
        let d3 = ra.loadUnaligned(fromByteOffset: o + 3 * stride, as: SIMD16<Float>.self)
            - rb.loadUnaligned(fromByteOffset: o + 3 * stride, as: SIMD16<Float>.self)
        s0 += d0 * d0; s1 += d1 * d1; s2 += d2 * d2; s3 += d3 * d3
        i += 64
    }
    while i + 16 <= count {
        let o = i * 4
        let d = ra.loadUnaligned(fromByteOffset: o, as: SIMD16<Float>.self)
            - rb.loadUnaligned(fromByteOffset: o, as: SIMD16<Float>.self)
        s0 += d * d
        i += 16
    }
    var sum = ((s0 + s1) + (s2 + s3)).sum()
    while i < count {
        let d = a[i] - b[i]
        sum += d * d
        i += 1
    }
    return sum
}

/// The ranking score of a stored vector for a query: larger is closer for every metric
/// (`dot` for cosine and dot product, `-squaredL2` for l2).
@inlinable @inline(__always)
public func rankingScore(_ metric: Metric, _ query: UnsafePointer<Float>, _ vector: UnsafePointer<Float>,
                         _ count: Int) -> Float {
    metric == .l2 ? -squaredL2(query, vector, count) : dotProduct(query, vector, count)
}

/// Squared Euclidean norm of a vector.
@inlinable
public func squaredNorm(_ a: UnsafePointer<Float>, _ count: Int) -> Float { dotProduct(a, a, count) }
