// Element-wise encoder kernels. Each body is written once as plain C loops (no libm calls in the hot
// loops: exp and erf are evaluated with polynomials) and compiled twice, for AVX2+FMA and for portable
// code; the AVX2 version is picked once at load on CPUs that have it (VECSTORE_KERNEL=portable forces the
// other). Each variant is one table (`ve_variant`), which tests run side by side.
#include "vs_embed.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define VE_INLINE static inline __attribute__((always_inline))

// exp(x) for x in [-87, 88]: 2^n * p(r), x = n ln2 + r, |r| <= ln2/2, degree-7 Taylor polynomial
// (relative error below 2e-7). Written with plain arithmetic and a bit cast so loops vectorise.
VE_INLINE float ve_exp(float x) {
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    float n = __builtin_rintf(x * 1.44269504088896341f);
    float r = x - n * 0.693145751953125f;
    r = r - n * 1.428606765330187045e-06f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, 4);
    return p * scale;
}

// 0.5 x (1 + erf(x / sqrt 2)), erf by Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7).
VE_INLINE float ve_gelu(float x) {
    float u = x * 0.70710678118654752f;
    float a = u < 0 ? -u : u;
    float t = 1.0f / (1.0f + 0.3275911f * a);
    float poly = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
    float erfa = 1.0f - poly * ve_exp(-a * a);
    float erf = u < 0 ? -erfa : erfa;
    return 0.5f * x * (1.0f + erf);
}

VE_INLINE void add_bias_body(float *x, size_t rows, size_t cols, size_t ld, const float *bias) {
    for (size_t r = 0; r < rows; r++) {
        float *row = x + r * ld;
        for (size_t c = 0; c < cols; c++) row[c] += bias[c];
    }
}

VE_INLINE void bias_gelu_body(float *x, size_t rows, size_t cols, size_t ld, const float *bias) {
    for (size_t r = 0; r < rows; r++) {
        float *row = x + r * ld;
        for (size_t c = 0; c < cols; c++) row[c] = ve_gelu(row[c] + bias[c]);
    }
}

VE_INLINE void layernorm_body(float *x, size_t rows, size_t dim, const float *bias, const float *residual,
                              const float *gamma, const float *beta, float eps) {
#pragma clang fp reassociate(on)
    for (size_t r = 0; r < rows; r++) {
        float *row = x + r * dim;
        if (bias) for (size_t c = 0; c < dim; c++) row[c] += bias[c];
        if (residual) {
            const float *res = residual + r * dim;
            for (size_t c = 0; c < dim; c++) row[c] += res[c];
        }
        float sum = 0;
        for (size_t c = 0; c < dim; c++) sum += row[c];
        float mean = sum / (float)dim;
        float var = 0;
        for (size_t c = 0; c < dim; c++) { float d = row[c] - mean; var += d * d; }
        var /= (float)dim;
        float inv = 1.0f / sqrtf(var + eps);
        for (size_t c = 0; c < dim; c++) row[c] = (row[c] - mean) * inv * gamma[c] + beta[c];
    }
}

VE_INLINE void softmax_body(float *s, size_t rows, size_t cols, size_t ld, float scale) {
#pragma clang fp reassociate(on)
    for (size_t r = 0; r < rows; r++) {
        float *row = s + r * ld;
        float m = row[0];
        for (size_t c = 1; c < cols; c++) m = row[c] > m ? row[c] : m;
        float sum = 0;
        for (size_t c = 0; c < cols; c++) { float e = ve_exp((row[c] - m) * scale); row[c] = e; sum += e; }
        float inv = 1.0f / sum;
        for (size_t c = 0; c < cols; c++) row[c] *= inv;
    }
}

#define VE_VARIANTS(suffix, attr)                                                                              \
    attr static void add_bias_##suffix(float *x, size_t rows, size_t cols, size_t ld, const float *bias) {   \
        add_bias_body(x, rows, cols, ld, bias);                                                                \
    }                                                                                                          \
    attr static void bias_gelu_##suffix(float *x, size_t rows, size_t cols, size_t ld, const float *bias) {  \
        bias_gelu_body(x, rows, cols, ld, bias);                                                               \
    }                                                                                                          \
    attr static void layernorm_##suffix(float *x, size_t rows, size_t dim, const float *bias,                \
                                        const float *residual, const float *gamma, const float *beta,         \
                                        float eps) {                                                           \
        layernorm_body(x, rows, dim, bias, residual, gamma, beta, eps);                                        \
    }                                                                                                          \
    attr static void softmax_##suffix(float *s, size_t rows, size_t cols, size_t ld, float scale) {           \
        softmax_body(s, rows, cols, ld, scale);                                                                \
    }

VE_VARIANTS(generic, )
#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#define VE_X86 1
VE_VARIANTS(avx2, __attribute__((target("avx2,fma"))))
#endif

static const ve_kernels generic_kernels = {"generic", add_bias_generic, bias_gelu_generic, layernorm_generic,
                                           softmax_generic};
#ifdef VE_X86
static const ve_kernels avx2_kernels = {"avx2", add_bias_avx2, bias_gelu_avx2, layernorm_avx2, softmax_avx2};
static int has_avx2;
#endif
/// The kernels the entry points below call: a copy of one variant's table, written once at load.
static ve_kernels table;

const ve_kernels *ve_variant(const char *isa) {
    if (!isa) return NULL;
    if (!strcmp(isa, "generic") || !strcmp(isa, "portable")) return &generic_kernels;
#ifdef VE_X86
    if (!strcmp(isa, "avx2")) return has_avx2 ? &avx2_kernels : NULL;
#endif
    return NULL;
}

__attribute__((constructor)) static void ve_dispatch(void) {
    table = generic_kernels;
#ifdef VE_X86
    __builtin_cpu_init();
    has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (has_avx2) table = avx2_kernels;
#endif
    // VECSTORE_KERNEL=portable runs the portable variant (tests, measurement); avx2 and avx512 keep the
    // best this CPU runs (there is no AVX-512 variant here; CDistance reports a variant the CPU lacks).
    const char *forced = getenv("VECSTORE_KERNEL");
    if (forced && (!strcmp(forced, "portable") || !strcmp(forced, "generic"))) table = generic_kernels;
}

void ve_add_bias(float *x, size_t rows, size_t cols, size_t ld, const float *bias) {
    table.add_bias(x, rows, cols, ld, bias);
}
void ve_bias_gelu(float *x, size_t rows, size_t cols, size_t ld, const float *bias) {
    table.bias_gelu(x, rows, cols, ld, bias);
}
void ve_residual_layernorm(float *x, size_t rows, size_t dim, const float *bias, const float *residual,
                           const float *gamma, const float *beta, float eps) {
    table.layernorm(x, rows, dim, bias, residual, gamma, beta, eps);
}
void ve_softmax_rows(float *s, size_t rows, size_t cols, size_t ld, float scale) {
    table.softmax(s, rows, cols, ld, scale);
}

void ve_embed_tokens(const int32_t *ids, const int32_t *positions, size_t n, const float *word, const float *pos,
                     const float *type0, size_t dim, float *out) {
    for (size_t t = 0; t < n; t++) {
        const float *w = word + (size_t)ids[t] * dim, *p = pos + (size_t)positions[t] * dim;
        float *o = out + t * dim;
        for (size_t c = 0; c < dim; c++) o[c] = w[c] + p[c] + type0[c];
    }
}

void ve_mean_pool_normalize(const float *h, size_t n, size_t dim, float *out) {
    for (size_t c = 0; c < dim; c++) out[c] = 0;
    for (size_t t = 0; t < n; t++)
        for (size_t c = 0; c < dim; c++) out[c] += h[t * dim + c];
    double norm = 0;
    for (size_t c = 0; c < dim; c++) { out[c] /= (float)n; norm += (double)out[c] * out[c]; }
    if (norm > 0) {
        float inv = (float)(1.0 / sqrt(norm));
        for (size_t c = 0; c < dim; c++) out[c] *= inv;
    }
}

size_t ve_count_nonfinite(const float *p, size_t n) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, p + i, 4);
        bad += (bits & 0x7F800000u) == 0x7F800000u;
    }
    return bad;
}

// ---------------------------------------------------------------- SHA-256 (FIPS 180-4)
static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(uint32_t *s, const uint8_t *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROTR(w[i - 15], 7) ^ ROTR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROTR(w[i - 2], 17) ^ ROTR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = s[0], b = s[1], c = s[2], d = s[3], e = s[4], f = s[5], g = s[6], h = s[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (ROTR(e, 6) ^ ROTR(e, 11) ^ ROTR(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i];
        uint32_t t2 = (ROTR(a, 2) ^ ROTR(a, 13) ^ ROTR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    s[0] += a; s[1] += b; s[2] += c; s[3] += d; s[4] += e; s[5] += f; s[6] += g; s[7] += h;
}

void ve_sha256_init(ve_sha256 *ctx) {
    static const uint32_t init[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                     0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(ctx->state, init, sizeof init);
    ctx->length = 0;
    ctx->used = 0;
}

void ve_sha256_update(ve_sha256 *ctx, const void *data, size_t n) {
    const uint8_t *p = data;
    ctx->length += n;
    if (ctx->used) {
        size_t take = 64 - ctx->used < n ? 64 - ctx->used : n;
        memcpy(ctx->buffer + ctx->used, p, take);
        ctx->used += take; p += take; n -= take;
        if (ctx->used < 64) return;
        sha256_block(ctx->state, ctx->buffer);
        ctx->used = 0;
    }
    for (; n >= 64; p += 64, n -= 64) sha256_block(ctx->state, p);
    memcpy(ctx->buffer, p, n);
    ctx->used = n;
}

void ve_sha256_final(ve_sha256 *ctx, uint8_t digest[32]) {
    uint64_t bits = ctx->length * 8;
    uint8_t pad = 0x80;
    ve_sha256_update(ctx, &pad, 1);
    uint8_t zero = 0;
    while (ctx->used != 56) ve_sha256_update(ctx, &zero, 1);
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)(bits >> (56 - 8 * i));
    ve_sha256_update(ctx, len, 8);
    for (int i = 0; i < 8; i++) {
        digest[4 * i] = (uint8_t)(ctx->state[i] >> 24); digest[4 * i + 1] = (uint8_t)(ctx->state[i] >> 16);
        digest[4 * i + 2] = (uint8_t)(ctx->state[i] >> 8); digest[4 * i + 3] = (uint8_t)ctx->state[i];
    }
}
