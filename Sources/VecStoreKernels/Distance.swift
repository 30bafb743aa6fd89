import CDistance

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

// The arithmetic lives in the C target `CDistance`, compiled for AVX-512F, AVX2+FMA and portable code
// and dispatched once at load time. Swift `SIMD16<Float>` code compiled for the x86-64 baseline (no
// per-function target attributes in Swift) lowers to SSE and measured 99 q/s against 157 q/s for the C
// kernel on docs60k exact search (384-d, one thread); see BENCHMARKS.md.

/// Inner product of two `count`-element float vectors.
@inlinable @inline(__always)
public func dotProduct(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ count: Int) -> Float {
    vs_dot(a, b, count)
}

/// Squared Euclidean distance of two `count`-element float vectors.
@inlinable @inline(__always)
public func squaredL2(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ count: Int) -> Float {
    vs_l2(a, b, count)
}

/// The instruction set the distance kernels dispatched to on this CPU ("avx512f", "avx2" or "generic").
public var distanceKernelISA: String { String(cString: vs_distance_isa()) }

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
