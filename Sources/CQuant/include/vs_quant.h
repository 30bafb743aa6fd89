// Kernels over quantized vectors (product-quantization codes, 4-bit fast-scan blocks, int8 scalar codes),
// with run-time CPU dispatch to AVX-512BW, AVX2 or portable C, chosen once at load time like CDistance.
#ifndef VS_QUANT_H
#define VS_QUANT_H
#include <stddef.h>
#include <stdint.h>

/// Rows per fast-scan block. Codes of 32 rows are interleaved so that one 32-byte load feeds two
/// 16-entry table look-ups (`vpshufb`) for 16 rows each.
#define VQ_FS_BLOCK_ROWS 32

/// ADC scan over 8-bit PQ codes: out[i] = sum_j lut[j*256 + codes[i*m + j]] for i in [0, n).
void vq_pq8_scan(const float *lut, size_t m, const uint8_t *codes, size_t n, float *out);
/// Bytes of the byte-plane form of an 8-bit ADC table with `m` sub-quantizers (`m * 1024`) when the dispatched
/// variant scans 8-bit codes from byte planes (AVX-512 VBMI; `m` a multiple of 16, at most 192), else 0: then
/// `vq_pq8_scan_planes` runs `vq_pq8_scan` and no planes need be built.
size_t vq_pq8_planes_size(size_t m);
/// Byte planes of an 8-bit table (`lut` as `vq_pq8_scan` reads it): byte p of the float bits of entry k of
/// sub-quantizer j at planes[j * 1024 + p * 256 + k]. Only when `vq_pq8_planes_size(m)` is nonzero.
void vq_pq8_planes(const float *lut, size_t m, uint8_t *planes);
/// `vq_pq8_scan` (the same values, bit for bit: each row summed in sub-quantizer order) from `planes` built by
/// `vq_pq8_planes` from `lut`, 64 rows a vector step; `planes` NULL (or `vq_pq8_planes_size(m)` 0) runs
/// `vq_pq8_scan`. Short tails read `lut`.
void vq_pq8_scan_planes(const float *lut, const uint8_t *planes, size_t m, const uint8_t *codes, size_t n, float *out);
/// ADC scan over packed 4-bit PQ codes (row i is (m+1)/2 bytes; sub-quantizer j is the low nibble of byte
/// j/2 when j is even, the high nibble when odd): out[i] = sum_j lut[j*16 + code_j(i)].
void vq_pq4_scan(const float *lut, size_t m, const uint8_t *codes, size_t n, float *out);

/// Fast scan of 4-bit codes in the interleaved block layout (Spec/PQ.md): `blocks` holds `nblocks` blocks
/// of `(mpad/2) * 32` bytes (mpad even, 2 <= mpad <= 256), `lut` holds mpad tables of 16 uint8 entries.
/// out[b*32 + r] = sum over sub-quantizers j of lut[j*16 + code_j(row r of block b)], exact in 16 bits.
void vq_fs4_scan(const uint8_t *blocks, size_t nblocks, size_t mpad, const uint8_t *lut, uint16_t *out);
/// The portable reference of `vq_fs4_scan` (same results bit for bit), exposed for tests.
void vq_fs4_scan_reference(const uint8_t *blocks, size_t nblocks, size_t mpad, const uint8_t *lut, uint16_t *out);

/// Positions of the sums at most `limit`: writes every i < n with v[i] <= limit to idx (ascending) and returns
/// their count (idx holds room for n). The fast-scan candidate filter: a vector compare per 32 (AVX-512BW)
/// or 16 (AVX2) sums instead of a branch per row.
size_t vq_u16_select_le(const uint16_t *v, size_t n, uint16_t limit, uint32_t *idx);
/// The portable reference of `vq_u16_select_le` (same results), exposed for tests.
size_t vq_u16_select_le_reference(const uint16_t *v, size_t n, uint16_t limit, uint32_t *idx);
/// The candidate filter of the float list scans (IVF-Flat, 8-bit PQ): writes to `idx` the positions i < n, in
/// ascending order, whose `v[i] + bias` (one float32 add) is at most `limit` (`le` nonzero) or at least `limit`
/// (`le` zero), and returns how many. A NaN sum is never selected. AVX2 where the CPU has it, else portable C.
size_t vq_f32_select(const float *v, size_t n, float bias, float limit, int le, uint32_t *idx);
/// The portable reference of `vq_f32_select` (same results), exposed for tests.
size_t vq_f32_select_reference(const float *v, size_t n, float bias, float limit, int le, uint32_t *idx);

/// Rearranges p[0, n) so that its first k elements are the k largest (in no particular order; keys are
/// distinct). The re-ranking candidates' selection (`CandidateReservoir`), portable C: quickselect with a
/// branch-free partition.
void vq_u64_select_largest(uint64_t *p, size_t n, size_t k);

/// PQ look-up table from transposed codebooks: `books_t` holds, per sub-quantizer j, dsub rows of ksub floats
/// (component t of every centroid k at books_t[(j*dsub + t)*ksub + k]). out[j*ksub + k] is
/// sum_t (q[j*dsub+t] - c)^2 when `l2` is nonzero, sum_t q[j*dsub+t] * c otherwise.
/// ksub is a multiple of 16 (16 or 256).
void vq_pq_table(const float *q, const float *books_t, size_t m, size_t ksub, size_t dsub, int l2, float *out);
/// `vq_pq_table` for `nq` queries at once (query g at q + g*q_stride), each table times `scale` (1, or -2 for
/// the residual L2 decomposition; a power of two, so exactly the scaled table): table g at out + g*m*ksub.
/// Each entry has the bits `vq_pq_table` gives it, scaled; one pass over the codebooks serves the batch.
void vq_pq_tables(const float *q, size_t nq, size_t q_stride, const float *books_t, size_t m, size_t ksub, size_t dsub,
                  int l2, float scale, float *out);

/// Quantizes a 4-bit ADC table for fast scan: t = sign * (a + b) (b may be NULL; sign is +1 or -1) for `m`
/// sub-quantizers of 16 entries; per sub-quantizer the minimum is subtracted, all entries are scaled by one
/// factor 255 / max range and rounded to the nearest byte. Writes `m * 16` bytes to `out` (the caller zeroes
/// padding), and out_scale / out_bias (sum of minima) so a row's distance is bias + sum / scale.
void vq_fs4_quantize_table(const float *a, const float *b, size_t m, float sign, uint8_t *out, float *out_scale,
                           float *out_bias);

/// sum_i q[i] * c[i] for a float query and int8 codes.
float vq_dot_f32_i8(const float *q, const int8_t *c, size_t n);
/// Portable reference of the int8 kernel, exposed for tests.
float vq_dot_f32_i8_reference(const float *q, const int8_t *c, size_t n);

/// Nearest of `k` candidates from a row of inner products: with `l2` nonzero the index of the smallest
/// norms[j] - 2 * dots[j] (squared distance less the row's own norm), otherwise of the largest dots[j]
/// (`norms` unused, may be NULL); the first such index on ties. Writes the winning value to *value.
/// k >= 1. The k-means assignment and PQ encoding step (one call per row).
size_t vq_nearest(const float *norms, const float *dots, size_t k, int l2, float *value);
/// The portable reference of `vq_nearest` (same results), exposed for tests.
size_t vq_nearest_reference(const float *norms, const float *dots, size_t k, int l2, float *value);

/// The k-means update's sums: for each of `n` rows of `d` floats at `rows`, adds the row to the float64 sum
/// of its cluster, sums[labels[i] * d + t] += (double)rows[i * d + t], and counts it, counts[labels[i]] += 1.
/// Neither array is zeroed first (a caller adds tile after tile). Every sum is taken in row order, so the
/// result is `vq_accumulate_rows_reference`'s bit for bit, whatever the instruction set.
void vq_accumulate_rows(const float *rows, size_t n, size_t d, const uint32_t *labels, double *sums, int64_t *counts);
/// The portable reference of `vq_accumulate_rows` (one component at a time), exposed for tests.
void vq_accumulate_rows_reference(const float *rows, size_t n, size_t d, const uint32_t *labels, double *sums,
                                  int64_t *counts);

/// Exact scores of scattered float32 rows (the re-ranking step): out[i] = sum_t (q[t] - rows[i][t])^2 when `l2`
/// is nonzero, sum_t q[t] * rows[i][t] otherwise, for i in [0, n). Four rows are scored together (four
/// independent load streams) while the rows a few steps ahead are prefetched line by line, so the cache
/// misses of scattered rows overlap. Equal to `vq_score_rows_reference` up to float rounding.
void vq_score_rows(const float *q, const float *const *rows, size_t n, size_t d, int l2, float *out);
/// The portable reference of `vq_score_rows` (one row at a time, sequential sums), exposed for tests.
void vq_score_rows_reference(const float *q, const float *const *rows, size_t n, size_t d, int l2, float *out);

/// Name of the instruction set the quantized kernels dispatched to ("avx512bw", "avx2", "generic"). The
/// "avx512bw" variant scans 8-bit codes from byte planes only when the CPU also has AVX-512 VBMI.
const char *vq_isa(void);

/// The quantized kernels of one instruction-set variant. The functions above call the variant picked once at
/// load: the best this CPU runs, or the one `VECSTORE_KERNEL=portable|avx2|avx512` names when the CPU runs it.
/// Tests call every variant through its table against the portable references.
typedef struct vq_quant_kernels {
    /// "avx512bw", "avx2" or "generic".
    const char *isa;
    /// `vq_fs4_scan` of this variant.
    void (*fs4_scan)(const uint8_t *blocks, size_t nblocks, size_t mpad, const uint8_t *lut, uint16_t *out);
    /// `vq_fs4_quantize_table` of this variant.
    void (*quantize_table)(const float *a, const float *b, size_t m, float sign, uint8_t *out, float *out_scale,
                           float *out_bias);
    /// `vq_pq_tables` of this variant.
    void (*pq_tables)(const float *q, size_t nq, size_t q_stride, const float *books_t, size_t m, size_t ksub,
                      size_t dsub, int l2, float scale, float *out);
    /// `vq_dot_f32_i8` of this variant.
    float (*dot_f32_i8)(const float *q, const int8_t *c, size_t n);
    /// `vq_nearest` of this variant.
    size_t (*nearest)(const float *norms, const float *dots, size_t k, int l2, float *value);
    /// `vq_u16_select_le` of this variant.
    size_t (*select_le)(const uint16_t *v, size_t n, uint16_t limit, uint32_t *idx);
    /// `vq_score_rows` of this variant (n >= 1, d >= 1).
    void (*score_rows)(const float *q, const float *const *rows, size_t n, size_t d, int l2, float *out);
    /// `vq_pq8_planes` of this variant, NULL when it has no byte-plane scan (all but AVX-512 with VBMI).
    void (*pq8_planes)(const float *lut, size_t m, uint8_t *planes);
    /// `vq_pq8_scan_planes` of this variant (`planes` non-NULL), NULL with `pq8_planes`.
    void (*pq8_scan_planes)(const float *lut, const uint8_t *planes, size_t m, const uint8_t *codes, size_t n,
                            float *out);
    /// `vq_accumulate_rows` of this variant (every variant gives the reference's sums bit for bit).
    void (*accumulate_rows)(const float *rows, size_t n, size_t d, const uint32_t *labels, double *sums,
                            int64_t *counts);
} vq_quant_kernels;

/// The table of variant `isa` ("avx512bw" or "avx512", "avx2", "generic" or "portable"), or NULL when the name
/// is unknown or this CPU cannot run it.
const vq_quant_kernels *vq_quant_variant(const char *isa);

#endif
