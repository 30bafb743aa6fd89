// Element-wise kernels of the text encoder (VecStoreEmbed) and SHA-256 for model checksums.
// Matrix products go through sgemm; everything between them is here, in C, so that it is vectorised
// (compiled for AVX2+FMA and portable code, picked once at load) and fast even in debug builds of Swift.
#ifndef VS_EMBED_H
#define VS_EMBED_H
#include <stddef.h>
#include <stdint.h>

/// x[r*ld + c] += bias[c] for r < rows, c < cols.
void ve_add_bias(float *x, size_t rows, size_t cols, size_t ld, const float *bias);
/// x[r*ld + c] = gelu(x[r*ld + c] + bias[c]) with the erf form of GELU (absolute error below 2e-7).
void ve_bias_gelu(float *x, size_t rows, size_t cols, size_t ld, const float *bias);
/// Each row of x (rows x dim, contiguous) becomes LayerNorm(x + bias + residual) * gamma + beta.
/// `bias` and `residual` may be NULL.
void ve_residual_layernorm(float *x, size_t rows, size_t dim, const float *bias, const float *residual,
                           const float *gamma, const float *beta, float eps);
/// Row-wise softmax of scale * s over the first `cols` entries of each row (row stride ld).
void ve_softmax_rows(float *s, size_t rows, size_t cols, size_t ld, float scale);
/// out[t] = word[ids[t]] + pos[positions[t]] + type0, for t < n (rows of dim floats).
void ve_embed_tokens(const int32_t *ids, const int32_t *positions, size_t n, const float *word, const float *pos,
                     const float *type0, size_t dim, float *out);
/// out = mean of the n rows of h (n x dim), scaled to unit length (left zero if the mean is zero).
void ve_mean_pool_normalize(const float *h, size_t n, size_t dim, float *out);
/// Number of entries of p that are NaN or infinite.
size_t ve_count_nonfinite(const float *p, size_t n);

/// The element-wise kernels of one instruction-set variant. The functions above call the variant picked
/// once at load (AVX2+FMA when the CPU has it, unless `VECSTORE_KERNEL=portable`); tests call each
/// variant through its table against a scalar reference.
typedef struct ve_kernels {
    /// "avx2" or "generic".
    const char *isa;
    /// `ve_add_bias`, `ve_bias_gelu`, `ve_residual_layernorm`, `ve_softmax_rows` of this variant.
    void (*add_bias)(float *x, size_t rows, size_t cols, size_t ld, const float *bias);
    void (*bias_gelu)(float *x, size_t rows, size_t cols, size_t ld, const float *bias);
    void (*layernorm)(float *x, size_t rows, size_t dim, const float *bias, const float *residual,
                      const float *gamma, const float *beta, float eps);
    void (*softmax)(float *s, size_t rows, size_t cols, size_t ld, float scale);
} ve_kernels;
/// The table of variant `isa` ("avx2", "generic" or "portable"), or NULL when this CPU or build lacks it.
const ve_kernels *ve_variant(const char *isa);

/// Streaming SHA-256 (FIPS 180-4).
typedef struct {
    uint32_t state[8];
    uint64_t length;
    uint8_t buffer[64];
    size_t used;
} ve_sha256;
void ve_sha256_init(ve_sha256 *ctx);
void ve_sha256_update(ve_sha256 *ctx, const void *data, size_t n);
void ve_sha256_final(ve_sha256 *ctx, uint8_t digest[32]);

#endif
