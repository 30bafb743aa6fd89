import CBLAS
import CDistance

/// Dense products of row-major float matrices with the kernel batch search uses: OpenBLAS `sgemm` when it
/// runs a kernel tuned for this CPU, vecstore's register-blocked `vs_dot_tile` otherwise (`BatchKernel`).
public enum MatrixProduct {
    /// `out[i * ldo + r] = dot(a + i * dimension, b + r * dimension)` for `i < aRows`, `r < bRows`
    /// (A · Bᵀ). Runs on the calling thread (BLAS is switched to single-threaded mode).
    public static func dotTile(_ a: UnsafePointer<Float>, aRows: Int, _ b: UnsafePointer<Float>, bRows: Int,
                               dimension: Int, into out: UnsafeMutablePointer<Float>, ldo: Int) {
        guard aRows > 0, bRows > 0, dimension > 0 else { return }
        if BatchKernel.current == .blas {
            BLAS.useSingleThread()
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(aRows), Int32(bRows), Int32(dimension), 1,
                        a, Int32(dimension), b, Int32(dimension), 0, out, Int32(ldo))
        } else {
            vs_dot_tile(a, aRows, b, bRows, dimension, out, ldo)
        }
    }

    /// The kernel `dotTile` uses in this process: "blas" or "simd".
    public static var kernelName: String { BatchKernel.current == .blas ? "blas" : "simd" }
}
