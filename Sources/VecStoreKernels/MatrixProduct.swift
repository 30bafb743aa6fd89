import CBLAS
import CDistance

/// Dense products of row-major float matrices with the kernel batch search uses: OpenBLAS `sgemm` when it
/// runs a kernel tuned for this CPU, vecstore's register-blocked `vs_dot_tile` otherwise (`BatchKernel`).
public enum MatrixProduct {
    /// `out[i * ldo + r] = dot(a + i * dimension, b + r * dimension)` for `i < aRows`, `r < bRows`
    /// (A · Bᵀ). Runs on the calling thread (BLAS is switched to single-threaded mode).
    public static func dotTile(_ a: UnsafePointer<Float>, aRows: Int, _ b: UnsafePointer<Float>, bRows: Int,
                               dimension: Int, into out: UnsafeMutablePointer<Float>, ldo: Int) {
        dotTile(a, aRows: aRows, b, bRows: bRows, dimension: dimension, into: out, ldo: ldo, kernel: BatchKernel.current)
    }

    /// `dotTile` with the kernel named by the caller (`BatchKernel.current`, or `computeKernel` for products
    /// bound by arithmetic).
    public static func dotTile(_ a: UnsafePointer<Float>, aRows: Int, _ b: UnsafePointer<Float>, bRows: Int,
                               dimension: Int, into out: UnsafeMutablePointer<Float>, ldo: Int, kernel: BatchKernel) {
        guard aRows > 0, bRows > 0, dimension > 0 else { return }
        if kernel == .blas {
            BLAS.useSingleThread()
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(aRows), Int32(bRows), Int32(dimension), 1,
                        a, Int32(dimension), b, Int32(dimension), 0, out, Int32(ldo))
        } else {
            vs_dot_tile(a, aRows, b, bRows, dimension, out, ldo)
        }
    }

    /// The kernel `dotTile` uses in this process: "blas" or "simd".
    public static var kernelName: String { BatchKernel.current == .blas ? "blas" : "simd" }

    /// The kernel for products bound by arithmetic, where every row of a large tile meets every row of the other
    /// side (k-means assignment, batched exact search, the near-duplicate self-join, the text encoder's larger
    /// linear layers): `vs_dot_tile` when its AVX-512 variant runs and OpenBLAS runs only an AVX2
    /// core, otherwise `BatchKernel.current`. Debian's OpenBLAS 0.3.21 runs CPUs it does not know, AMD Zen 4
    /// and Zen 5 among them, on its Haswell (AVX2) kernels: k-means over docs60k (59,647 × 384 against 256
    /// centroids, 10 iterations) took 1.37 s with that `sgemm` and 0.78 s with `vs_dot_tile` on a Zen 5 EPYC.
    /// `VECSTORE_BATCH_KERNEL=blas|simd` overrides it as it does `BatchKernel.current`.
    public static let computeKernel: BatchKernel = {
        if BatchKernel.overridden { return BatchKernel.current }
        if BatchKernel.current == .blas && String(cString: vs_distance_isa()) == "avx512f" && !BatchKernel.blasRunsAVX512 {
            return .simd
        }
        return BatchKernel.current
    }()

    /// The name of `computeKernel`: "blas" or "simd".
    public static var computeKernelName: String { computeKernel == .blas ? "blas" : "simd" }
}
