// Float32 distance kernels with run-time CPU dispatch (AVX-512F, AVX2+FMA, or portable C).
#ifndef VS_DISTANCE_H
#define VS_DISTANCE_H
#include <stddef.h>

/// out[i] = dot(q, base + i*dim) for i in [0, n).
void vs_dot_many(const float *q, const float *base, size_t n, size_t dim, float *out);
/// out[i] = |q - (base + i*dim)|^2 for i in [0, n).
void vs_l2_many(const float *q, const float *base, size_t n, size_t dim, float *out);
/// `vs_dot_many` for two queries over the same rows: out_a[i] = dot(qa, base + i*dim), out_b[i] =
/// dot(qb, base + i*dim), each the bits `vs_dot_many` gives that query alone (each row read once for both).
void vs_dot_many2(const float *qa, const float *qb, const float *base, size_t n, size_t dim, float *out_a,
                  float *out_b);
/// `vs_l2_many` for two queries over the same rows (each the bits `vs_l2_many` gives that query alone).
void vs_l2_many2(const float *qa, const float *qb, const float *base, size_t n, size_t dim, float *out_a,
                 float *out_b);
/// Dot product of two vectors.
float vs_dot(const float *a, const float *b, size_t dim);
/// Squared Euclidean distance of two vectors.
float vs_l2(const float *a, const float *b, size_t dim);
/// Dot products of a tile of queries with a run of rows: out[i*ldo + r] = dot(q + i*dim, x + r*dim) for
/// i in [0, nq), r in [0, nr). The batch-search kernel (register-blocked 4 queries x 4 rows).
void vs_dot_tile(const float *q, size_t nq, const float *x, size_t nr, size_t dim, float *out, size_t ldo);
/// Inner product of a float query with a vector stored as IEEE binary16 (`h`, n halves).
float vs_dot_f16(const float *q, const unsigned short *h, size_t n);
/// Squared Euclidean distance of a float query and a binary16 vector.
float vs_l2sq_f16(const float *q, const unsigned short *h, size_t n);
/// Converts `n` floats to IEEE binary16 (`h`), rounding to nearest with ties to even, as Swift's
/// `Float16(x)` does bit for bit (±inf past 65504, subnormals, NaN kept a quiet NaN with its sign and
/// top payload bits). The binary16 traversal copies are written with it (F16C where the CPU has it).
void vs_f32_to_f16(const float *x, unsigned short *h, size_t n);
/// Upper bounds for the certified two-pass exact scan (Spec/HNSW.md §3.3): `n` rows stored as
/// binary16, row `r` at `h + r * stride` (halves), each the round-to-nearest conversion of a float32 row
/// `x_r`. `ub[r]` is never below the score the float32 kernels compute for `x_r` (`vs_dot(q, x_r)`, or
/// `-vs_l2(q, x_r)` when `l2` is non-zero), whatever their summation order, provided no partial sum of
/// `vs_dot` overflows (true whenever |q|_2 is below 2^64, as every query's finite norm check ensures:
/// finite copies bound |x_i| by 65520); +inf when a copy, a pass-1 sum or `qn2`/`qn1` is not finite.
/// `qn2` and `qn1` are upper bounds of |q|_2 and |q|_1. Assumes IEEE gradual underflow (no FTZ/DAZ).
void vs_f16_upper_many(const float *q, double qn2, double qn1, const unsigned short *h, size_t n, size_t stride,
                       size_t dim, int l2, float *ub);
/// `vs_f16_upper_many` for `n` scattered rows, row `r`'s copy (`dim` halves) at `rows[r]`. The copies of
/// the rows `ahead` places on are prefetched while a row is summed (the first `ahead` before any).
void vs_f16_upper_ptrs(const float *q, double qn2, double qn1, const unsigned short *const *rows, size_t n,
                       size_t dim, int l2, size_t ahead, float *ub);
/// Hints the CPU to bring `lines` cache lines from `p` on into L1.
static inline void vs_prefetch(const void *p, int lines) {
    const char *c = (const char *)p;
    for (int i = 0; i < lines; i++) __builtin_prefetch(c + 64 * i, 0, 3);
}
/// Reads one byte of every 4 KiB page in `[p, p + bytes)` and its last byte (so each page is mapped,
/// faulting it in if needed); returns their sum, which a caller may ignore (the loads are volatile).
static inline unsigned vs_touch(const void *p, size_t bytes) {
    const volatile unsigned char *c = (const volatile unsigned char *)p;
    unsigned sum = 0;
    if (bytes == 0) return 0;
    for (size_t i = 0; i < bytes; i += 4096) sum += c[i];
    return sum + c[bytes - 1];
}
/// A release fence: stores before it are visible to any thread that later reads a pointer published
/// after it (HNSW's parallel insert publishes copied link blocks this way).
static inline void vs_release_fence(void) { __atomic_thread_fence(__ATOMIC_RELEASE); }
/// Atomic load (acquire) of a pointer slot: the value a concurrent `vs_store_pointer` published, or an
/// older one, never a torn mix.
static inline const void *vs_load_pointer(const void *const *slot) {
    return __atomic_load_n(slot, __ATOMIC_ACQUIRE);
}
/// Atomic store (release) of a pointer slot.
static inline void vs_store_pointer(const void **slot, const void *value) {
    __atomic_store_n(slot, value, __ATOMIC_RELEASE);
}
/// Name of the instruction set the kernels dispatched to ("avx512f", "avx2", "generic").
const char *vs_distance_isa(void);

/// The kernels of one instruction-set variant. The functions above call the variant picked once at load:
/// the best this CPU runs, or the one `VECSTORE_KERNEL=portable|avx2|avx512` names when the CPU runs it.
/// Tests call every variant through its table against a scalar reference.
typedef struct vs_distance_kernels {
    /// "avx512f", "avx2" or "generic".
    const char *isa;
    /// `vs_dot`, `vs_l2`, `vs_dot_many`, `vs_l2_many`, `vs_dot_tile`, `vs_dot_f16`, `vs_l2sq_f16` of this variant.
    float (*dot)(const float *a, const float *b, size_t dim);
    float (*l2)(const float *a, const float *b, size_t dim);
    void (*dot_many)(const float *q, const float *base, size_t n, size_t dim, float *out);
    void (*l2_many)(const float *q, const float *base, size_t n, size_t dim, float *out);
    void (*dot_tile)(const float *q, size_t nq, const float *x, size_t nr, size_t dim, float *out, size_t ldo);
    float (*dot_f16)(const float *q, const unsigned short *h, size_t n);
    float (*l2sq_f16)(const float *q, const unsigned short *h, size_t n);
    /// Pass 1 of the certified scan: for `n` binary16 rows `stride` halves apart, a[r] = q·h_r (or
    /// |q - h_r|^2 when `l2`) and b[r] = |h_r|^2, in float32.
    void (*half_pass)(const float *q, const unsigned short *h, size_t n, size_t stride, size_t dim, int l2,
                      float *a, float *b);
    /// The bounds from pass 1's sums (`a`, `b` and `ub` hold `n` rounded up to 8 values).
    void (*half_bounds)(const float *a, const float *b, size_t n, size_t dim, double qn2, double qn1, int l2,
                        float *ub);
    /// `vs_f32_to_f16` of this variant.
    void (*f32_to_f16)(const float *x, unsigned short *h, size_t n);
    /// `vs_dot_many2` and `vs_l2_many2` of this variant.
    void (*dot_many2)(const float *qa, const float *qb, const float *base, size_t n, size_t dim, float *out_a,
                      float *out_b);
    void (*l2_many2)(const float *qa, const float *qb, const float *base, size_t n, size_t dim, float *out_a,
                     float *out_b);
} vs_distance_kernels;

/// The table of variant `isa` ("avx512f" or "avx512", "avx2", "generic" or "portable"), or NULL when this
/// CPU (or this build's target) does not run it.
const vs_distance_kernels *vs_distance_variant(const char *isa);
/// `vs_f16_upper_many` with the kernels of `kernels`.
void vs_f16_upper_many_with(const vs_distance_kernels *kernels, const float *q, double qn2, double qn1,
                            const unsigned short *h, size_t n, size_t stride, size_t dim, int l2, float *ub);
/// `vs_f16_upper_many_with` for the rows listed in `rows` (row numbers from `h`, stride `stride` halves).
/// Only tests call it (the scan gathers row pointers: `vs_f16_upper_ptrs`).
void vs_f16_upper_rows_with(const vs_distance_kernels *kernels, const float *q, double qn2, double qn1,
                            const unsigned short *h, const unsigned int *rows, size_t n, size_t stride, size_t dim,
                            int l2, float *ub);
/// `vs_f16_upper_ptrs` with the kernels of `kernels`.
void vs_f16_upper_ptrs_with(const vs_distance_kernels *kernels, const float *q, double qn2, double qn1,
                            const unsigned short *const *rows, size_t n, size_t dim, int l2, size_t ahead, float *ub);

#endif
