import CBLAS
import CLAPACK

/// Why a PCA could not be fitted or built.
public struct PCAError: Error, Sendable, CustomStringConvertible {
    /// What went wrong.
    public var description: String
    /// Creates an error with a message.
    public init(_ description: String) { self.description = description }
}

/// Principal component analysis: a mean and the top eigenvectors of a sample's covariance matrix,
/// used to project vectors to fewer dimensions (FAISS's `PCAMatrix`, scikit-learn's `PCA`).
///
/// `fit` centres the sample, forms the covariance with one `sgemm` and takes the largest eigenpairs
/// with LAPACK's symmetric eigensolver `ssyevr` (both from the system OpenBLAS).
///
/// ```swift
/// let pca = try PCA.fit(samples, count: n, dimension: 384, components: 64)
/// let reduced = pca.project(vector)          // 64 floats
/// print(pca.explainedVarianceRatio.reduce(0, +))
/// ```
public struct PCA: Sendable, Equatable {
    /// Dimension of the vectors the PCA was fitted on (and projects from).
    public let inputDimension: Int
    /// Number of components: the dimension of projected vectors.
    public let outputDimension: Int
    /// The sample mean, `inputDimension` floats.
    public let mean: [Float]
    /// The principal axes, row-major `outputDimension × inputDimension`: row `i` is the unit eigenvector
    /// of the `i`-th largest eigenvalue. Signs are fixed so that each row's largest-magnitude entry is
    /// positive (the eigensolver's sign is arbitrary).
    public let components: [Float]
    /// Variance of the sample along each component (the eigenvalues, covariance with `n − 1`), descending.
    public let explainedVariance: [Float]
    /// Total variance of the sample (the trace of the covariance matrix).
    public let totalVariance: Float
    /// Number of sample vectors the PCA was fitted on.
    public let sampleCount: Int
    /// Whether `project` subtracts the mean first. Translation does not change Euclidean distances, but
    /// it does change inner products and cosines, so collections under cosine or dot keep it off.
    public let subtractsMean: Bool
    /// `W · mean`: what subtracting the mean before projecting takes off each projected vector.
    let projectedMean: [Float]

    /// The fraction of the total variance each component explains.
    public var explainedVarianceRatio: [Float] {
        totalVariance > 0 ? explainedVariance.map { $0 / totalVariance } : explainedVariance.map { _ in 0 }
    }

    /// Builds a PCA from its parts (for example as read back from a store), checking shapes and values.
    public init(mean: [Float], components: [Float], explainedVariance: [Float], totalVariance: Float,
                sampleCount: Int, subtractsMean: Bool) throws(PCAError)
    {
        let d = mean.count, k = explainedVariance.count
        guard d >= 1 else { throw PCAError("PCA: the mean is empty") }
        guard k >= 1, k <= d else { throw PCAError("PCA: \(k) components for dimension \(d) (need 1…\(d))") }
        guard components.count == k * d else {
            throw PCAError("PCA: \(components.count) component values, expected \(k) × \(d) = \(k * d)")
        }
        if let i = mean.firstIndex(where: { !$0.isFinite }) { throw PCAError("PCA: mean[\(i)] is \(mean[i])") }
        if let i = components.firstIndex(where: { !$0.isFinite }) {
            throw PCAError("PCA: component \(i / d) entry \(i % d) is \(components[i])")
        }
        if let i = explainedVariance.firstIndex(where: { !$0.isFinite || $0 < 0 }) {
            throw PCAError("PCA: explained variance \(i) is \(explainedVariance[i])")
        }
        guard totalVariance.isFinite, totalVariance >= 0 else { throw PCAError("PCA: total variance is \(totalVariance)") }
        guard sampleCount >= 0 else { throw PCAError("PCA: sample count \(sampleCount)") }
        self.inputDimension = d
        self.outputDimension = k
        self.mean = mean
        self.components = components
        self.explainedVariance = explainedVariance
        self.totalVariance = totalVariance
        self.sampleCount = sampleCount
        self.subtractsMean = subtractsMean
        self.projectedMean = Self.multiply(components, rows: k, columns: d, by: mean)
    }

    /// Fits a PCA with `components` axes on `count` row-major vectors of `dimension` floats.
    ///
    /// Needs more samples than components (`count > components`), finite values, and
    /// `1 ≤ components ≤ dimension`. Memory: one centred copy of the sample plus a `min(count, dimension)²`
    /// matrix.
    public static func fit(_ samples: UnsafeBufferPointer<Float>, count: Int, dimension: Int, components: Int,
                           subtractsMean: Bool = true) throws(PCAError) -> PCA
    {
        let n = count, d = dimension, k = components
        guard d >= 1, samples.count >= n * d, n >= 0 else {
            throw PCAError("PCA: \(samples.count) values do not hold \(n) vectors of dimension \(d)")
        }
        guard (1...d).contains(k) else { throw PCAError("PCA: \(k) components for dimension \(d) (need 1…\(d))") }
        guard n > k else {
            throw PCAError("PCA: \(n) sample vector(s) cannot fit \(k) component(s); at least \(k + 1) are needed")
        }
        guard let base = samples.baseAddress else { throw PCAError("PCA: empty sample") }
        // Mean in double precision (a sum of many floats), then a centred float copy.
        var sums = [Double](repeating: 0, count: d)
        for r in 0..<n {
            let row = base + r * d
            for j in 0..<d {
                let x = row[j]
                guard x.isFinite else { throw PCAError("PCA: sample \(r) component \(j) is \(x)") }
                sums[j] += Double(x)
            }
        }
        let mean = sums.map { Float($0 / Double(n)) }
        var centred = [Float](repeating: 0, count: n * d)
        for r in 0..<n {
            for j in 0..<d { centred[r * d + j] = base[r * d + j] - mean[j] }
        }
        BLAS.useSingleThread()
        let (values, vectors, trace) = try (n <= d
            ? gramEigenpairs(centred, count: n, dimension: d, components: k)
            : covarianceEigenpairs(centred, count: n, dimension: d, components: k))
        // Descending order, deterministic signs.
        var rows = [Float](repeating: 0, count: k * d)
        var variances = [Float](repeating: 0, count: k)
        for i in 0..<k {
            let source = k - 1 - i  // ssyevr returns ascending eigenvalues
            variances[i] = max(0, values[source])
            var largest: Float = 0
            for j in 0..<d where abs(vectors[source * d + j]) > abs(largest) { largest = vectors[source * d + j] }
            let sign: Float = largest < 0 ? -1 : 1
            for j in 0..<d { rows[i * d + j] = sign * vectors[source * d + j] }
        }
        return try PCA(mean: mean, components: rows, explainedVariance: variances, totalVariance: Float(max(0, trace)),
                       sampleCount: n, subtractsMean: subtractsMean)
    }

    /// Fits on vectors held in an array (`count = samples.count / dimension`).
    public static func fit(_ samples: [Float], dimension: Int, components: Int,
                           subtractsMean: Bool = true) throws(PCAError) -> PCA
    {
        guard dimension >= 1 else { throw PCAError("PCA: dimension \(dimension)") }
        return try samples.withUnsafeBufferPointer { (b) throws(PCAError) -> PCA in
            try fit(b, count: samples.count / dimension, dimension: dimension, components: components,
                    subtractsMean: subtractsMean)
        }
    }

    /// The top `k` eigenpairs (ascending, each eigenvector `d` contiguous floats) of the covariance
    /// `C = Xcᵀ Xc / (n − 1)` (d × d) of the centred rows `xc`, and its trace.
    static func covarianceEigenpairs(_ xc: [Float], count n: Int, dimension d: Int, components k: Int)
        throws(PCAError) -> ([Float], [Float], Double)
    {
        var cov = [Float](repeating: 0, count: d * d)  // symmetric, so row- and column-major agree
        xc.withUnsafeBufferPointer { x in
            cov.withUnsafeMutableBufferPointer { c in
                guard let xp = x.baseAddress, let cp = c.baseAddress else { return }
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(d), Int32(d), Int32(n),
                            1 / Float(n - 1), xp, Int32(d), xp, Int32(d), 0, cp, Int32(d))
            }
        }
        var trace: Double = 0
        for j in 0..<d { trace += Double(cov[j * d + j]) }
        let (values, vectors) = try largestEigenpairs(&cov, dimension: d, count: k)
        return (values, vectors, trace)
    }

    /// The same eigenpairs from the n × n Gram matrix `G = Xc Xcᵀ / (n − 1)`, for samples with no more rows
    /// than dimensions: C has rank ≤ n − 1, and `G u = λ u` gives `C (Xcᵀ u) = λ (Xcᵀ u)`, so the
    /// eigenvectors of C are the normalised `Xcᵀ u` and trace(C) = trace(G). Memory grows with n², not d²
    /// (the covariance of a 65,536-dimensional collection alone would take 17 GB).
    static func gramEigenpairs(_ xc: [Float], count n: Int, dimension d: Int, components k: Int)
        throws(PCAError) -> ([Float], [Float], Double)
    {
        var gram = [Float](repeating: 0, count: n * n)
        xc.withUnsafeBufferPointer { x in
            gram.withUnsafeMutableBufferPointer { g in
                guard let xp = x.baseAddress, let gp = g.baseAddress else { return }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), Int32(n), Int32(d),
                            1 / Float(n - 1), xp, Int32(d), xp, Int32(d), 0, gp, Int32(n))
            }
        }
        var trace: Double = 0
        for i in 0..<n { trace += Double(gram[i * n + i]) }
        let (values, u) = try largestEigenpairs(&gram, dimension: n, count: k)
        // V = U Xc (k × d): row i is Xcᵀ u_i, then scaled to unit length.
        var vectors = [Float](repeating: 0, count: k * d)
        u.withUnsafeBufferPointer { up in
            xc.withUnsafeBufferPointer { x in
                vectors.withUnsafeMutableBufferPointer { v in
                    guard let upp = up.baseAddress, let xp = x.baseAddress, let vp = v.baseAddress else { return }
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(k), Int32(d), Int32(n), 1,
                                upp, Int32(n), xp, Int32(d), 0, vp, Int32(d))
                }
            }
        }
        for i in 0..<k {
            var norm: Double = 0
            for j in 0..<d { norm += Double(vectors[i * d + j]) * Double(vectors[i * d + j]) }
            guard norm > 0 else { continue }
            let scale = Float(1 / norm.squareRoot())
            for j in 0..<d { vectors[i * d + j] *= scale }
        }
        return (values, vectors, trace)
    }

    /// The `count` largest eigenvalues (ascending) and their eigenvectors (one contiguous `dimension`-float
    /// run each) of the symmetric matrix `matrix`, which LAPACK overwrites.
    static func largestEigenpairs(_ matrix: inout [Float], dimension d: Int, count k: Int) throws(PCAError)
        -> ([Float], [Float])
    {
        var n = Int32(d), lda = Int32(d), ldz = Int32(d)
        var il = Int32(d - k + 1), iu = Int32(d)
        var vl: Float = 0, vu: Float = 0, abstol: Float = 0
        var found: Int32 = 0, info: Int32 = 0
        var values = [Float](repeating: 0, count: d)
        var vectors = [Float](repeating: 0, count: d * k)
        var support = [Int32](repeating: 0, count: 2 * max(1, k))
        var jobz = Int8(UInt8(ascii: "V")), range = Int8(UInt8(ascii: "I")), uplo = Int8(UInt8(ascii: "U"))
        // Workspace query, then the solve.
        var workSize: Float = 0, iworkSize: Int32 = 0
        var lwork: Int32 = -1, liwork: Int32 = -1
        ssyevr_(&jobz, &range, &uplo, &n, &matrix, &lda, &vl, &vu, &il, &iu, &abstol, &found, &values, &vectors,
                &ldz, &support, &workSize, &lwork, &iworkSize, &liwork, &info, 1, 1, 1)
        guard info == 0 else { throw PCAError("PCA: LAPACK ssyevr workspace query failed (info \(info))") }
        lwork = max(Int32(workSize.rounded(.up)), 26 * n)
        liwork = max(iworkSize, 10 * n)
        var work = [Float](repeating: 0, count: Int(lwork))
        var iwork = [Int32](repeating: 0, count: Int(liwork))
        ssyevr_(&jobz, &range, &uplo, &n, &matrix, &lda, &vl, &vu, &il, &iu, &abstol, &found, &values, &vectors,
                &ldz, &support, &work, &lwork, &iwork, &liwork, &info, 1, 1, 1)
        guard info == 0 else { throw PCAError("PCA: LAPACK ssyevr failed (info \(info))") }
        guard Int(found) == k else { throw PCAError("PCA: LAPACK ssyevr found \(found) of \(k) eigenpairs") }
        return (Array(values.prefix(k)), vectors)
    }

    /// Projects one vector of `inputDimension` floats to `outputDimension` floats: `W (x − mean)`, or `W x`
    /// when `subtractsMean` is false.
    public func project(_ vector: [Float]) -> [Float] {
        precondition(vector.count == inputDimension, "PCA.project: vector of \(vector.count) floats, expected \(inputDimension)")
        var out = [Float](repeating: 0, count: outputDimension)
        vector.withUnsafeBufferPointer { x in
            out.withUnsafeMutableBufferPointer { y in
                guard let xp = x.baseAddress, let yp = y.baseAddress else { return }
                project(xp, count: 1, into: yp)
            }
        }
        return out
    }

    /// Projects `count` row-major vectors at `input` into `output` (`count × outputDimension` floats) with
    /// one matrix product.
    public func project(_ input: UnsafePointer<Float>, count: Int, into output: UnsafeMutablePointer<Float>) {
        guard count > 0 else { return }
        let d = inputDimension, k = outputDimension
        BLAS.useSingleThread()
        components.withUnsafeBufferPointer { w in
            guard let wp = w.baseAddress else { return }
            // Y = X Wᵀ  (count × k)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(count), Int32(k), Int32(d), 1, input, Int32(d),
                        wp, Int32(d), 0, output, Int32(k))
        }
        guard subtractsMean else { return }
        let shift = projectedMean
        for r in 0..<count {
            let row = output + r * k
            for j in 0..<k { row[j] -= shift[j] }
        }
    }

    /// `matrix · vector` for a row-major `rows × columns` matrix.
    static func multiply(_ matrix: [Float], rows: Int, columns: Int, by vector: [Float]) -> [Float] {
        var out = [Float](repeating: 0, count: rows)
        matrix.withUnsafeBufferPointer { a in
            vector.withUnsafeBufferPointer { x in
                out.withUnsafeMutableBufferPointer { y in
                    guard let ap = a.baseAddress, let xp = x.baseAddress, let yp = y.baseAddress else { return }
                    cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(rows), Int32(columns), 1, ap, Int32(columns), xp, 1,
                                0, yp, 1)
                }
            }
        }
        return out
    }

    /// The same PCA with `subtractsMean` set as given.
    public func subtractingMean(_ on: Bool) -> PCA {
        // Shapes and values were checked when `self` was built.
        (try? PCA(mean: mean, components: components, explainedVariance: explainedVariance,
                  totalVariance: totalVariance, sampleCount: sampleCount, subtractsMean: on)) ?? self
    }
}
