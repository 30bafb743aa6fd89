// Distance kernels, compiled three times (AVX-512F, AVX2+FMA, portable) and picked once at load time
// from the running CPU (or VECSTORE_KERNEL), so one binary is fast on every x86-64 machine and correct
// everywhere else. Each variant is one table (`vs_distance_variant`), which tests run side by side.
#include "vs_distance.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#define VS_X86 1
#include <immintrin.h>
#endif

// Requests the `bytes` bytes at `p` into every cache level, one 64-byte line at a time.
static inline void prefetch_bytes(const void *p, size_t bytes) {
    for (size_t o = 0; o < bytes; o += 64) __builtin_prefetch((const char *)p + o, 0, 3);
}

// ---------------------------------------------------------------- portable
static float dot_generic(const float *a, const float *b, size_t d) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= d; i += 4) {
        s0 += a[i] * b[i]; s1 += a[i + 1] * b[i + 1]; s2 += a[i + 2] * b[i + 2]; s3 += a[i + 3] * b[i + 3];
    }
    for (; i < d; i++) s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}
static float l2_generic(const float *a, const float *b, size_t d) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= d; i += 4) {
        float d0 = a[i] - b[i], d1 = a[i + 1] - b[i + 1], d2 = a[i + 2] - b[i + 2], d3 = a[i + 3] - b[i + 3];
        s0 += d0 * d0; s1 += d1 * d1; s2 += d2 * d2; s3 += d3 * d3;
    }
    for (; i < d; i++) { float t = a[i] - b[i]; s0 += t * t; }
    return (s0 + s1) + (s2 + s3);
}
static void dot_many_generic(const float *q, const float *x, size_t n, size_t d, float *out) {
    for (size_t r = 0; r < n; r++) out[r] = dot_generic(q, x + r * d, d);
}
static void l2_many_generic(const float *q, const float *x, size_t n, size_t d, float *out) {
    for (size_t r = 0; r < n; r++) out[r] = l2_generic(q, x + r * d, d);
}

// Two queries over the same rows: each query's values are its one-query kernel's (the generic and AVX-512
// variants call it twice; only the AVX2 variant has a fused two-query kernel).
static void dot_many2_generic(const float *qa, const float *qb, const float *x, size_t n, size_t d, float *oa,
                              float *ob) {
    dot_many_generic(qa, x, n, d, oa);
    dot_many_generic(qb, x, n, d, ob);
}
static void l2_many2_generic(const float *qa, const float *qb, const float *x, size_t n, size_t d, float *oa,
                             float *ob) {
    l2_many_generic(qa, x, n, d, oa);
    l2_many_generic(qb, x, n, d, ob);
}

static void dot_tile_generic(const float *q, size_t nq, const float *x, size_t nr, size_t d, float *out,
                             size_t ldo) {
    for (size_t r = 0; r < nr; r++)
        for (size_t i = 0; i < nq; i++) out[i * ldo + r] = dot_generic(q + i * d, x + r * d, d);
}

#ifdef VS_X86
// ---------------------------------------------------------------- AVX2 + FMA
__attribute__((target("avx2,fma"))) static inline float hsum256(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}
__attribute__((target("avx2,fma"))) static float dot_avx2(const float *a, const float *b, size_t d) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= d; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= d; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < d; i++) s += a[i] * b[i];
    return s;
}
__attribute__((target("avx2,fma"))) static float l2_avx2(const float *a, const float *b, size_t d) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= d; i += 32) {
        __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
        __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8));
        __m256 d2 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16));
        __m256 d3 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24));
        s0 = _mm256_fmadd_ps(d0, d0, s0); s1 = _mm256_fmadd_ps(d1, d1, s1);
        s2 = _mm256_fmadd_ps(d2, d2, s2); s3 = _mm256_fmadd_ps(d3, d3, s3);
    }
    for (; i + 8 <= d; i += 8) {
        __m256 t = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
        s0 = _mm256_fmadd_ps(t, t, s0);
    }
    float s = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < d; i++) { float t = a[i] - b[i]; s += t * t; }
    return s;
}
__attribute__((target("avx2,fma"))) static void dot_many_avx2(const float *q, const float *x, size_t n, size_t d,
                                                             float *out) {
    for (size_t r = 0; r < n; r++) out[r] = dot_avx2(q, x + r * d, d);
}
__attribute__((target("avx2,fma"))) static void l2_many_avx2(const float *q, const float *x, size_t n, size_t d,
                                                            float *out) {
    for (size_t r = 0; r < n; r++) out[r] = l2_avx2(q, x + r * d, d);
}

// Two queries against the same rows: out_a[r] = |qa - x_r|^2 and out_b[r] = |qb - x_r|^2, each summed with
// exactly the operations of `l2_avx2` (the same four accumulators, order, horizontal sum and tail), so each
// value is the one-query kernel's bits; each row chunk is loaded once for both queries. (Four accumulators a
// query: two queries fill 8 of the 16 ymm registers; three would spill.)
__attribute__((target("avx2,fma"))) static void l2_many2_avx2(const float *qa, const float *qb, const float *x,
                                                             size_t n, size_t d, float *oa, float *ob) {
    for (size_t r = 0; r < n; r++) {
        const float *b = x + r * d;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        size_t i = 0;
        for (; i + 32 <= d; i += 32) {
            __m256 v, t;
            v = _mm256_loadu_ps(b + i);
            t = _mm256_sub_ps(_mm256_loadu_ps(qa + i), v); a0 = _mm256_fmadd_ps(t, t, a0);
            t = _mm256_sub_ps(_mm256_loadu_ps(qb + i), v); b0 = _mm256_fmadd_ps(t, t, b0);
            v = _mm256_loadu_ps(b + i + 8);
            t = _mm256_sub_ps(_mm256_loadu_ps(qa + i + 8), v); a1 = _mm256_fmadd_ps(t, t, a1);
            t = _mm256_sub_ps(_mm256_loadu_ps(qb + i + 8), v); b1 = _mm256_fmadd_ps(t, t, b1);
            v = _mm256_loadu_ps(b + i + 16);
            t = _mm256_sub_ps(_mm256_loadu_ps(qa + i + 16), v); a2 = _mm256_fmadd_ps(t, t, a2);
            t = _mm256_sub_ps(_mm256_loadu_ps(qb + i + 16), v); b2 = _mm256_fmadd_ps(t, t, b2);
            v = _mm256_loadu_ps(b + i + 24);
            t = _mm256_sub_ps(_mm256_loadu_ps(qa + i + 24), v); a3 = _mm256_fmadd_ps(t, t, a3);
            t = _mm256_sub_ps(_mm256_loadu_ps(qb + i + 24), v); b3 = _mm256_fmadd_ps(t, t, b3);
        }
        for (; i + 8 <= d; i += 8) {
            __m256 v = _mm256_loadu_ps(b + i), t;
            t = _mm256_sub_ps(_mm256_loadu_ps(qa + i), v); a0 = _mm256_fmadd_ps(t, t, a0);
            t = _mm256_sub_ps(_mm256_loadu_ps(qb + i), v); b0 = _mm256_fmadd_ps(t, t, b0);
        }
        float sa = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
        float sb = hsum256(_mm256_add_ps(_mm256_add_ps(b0, b1), _mm256_add_ps(b2, b3)));
        for (size_t j = i; j < d; j++) { float t = qa[j] - b[j]; sa += t * t; }
        for (size_t j = i; j < d; j++) { float t = qb[j] - b[j]; sb += t * t; }
        oa[r] = sa;
        ob[r] = sb;
    }
}
// `dot_avx2`'s operations for two queries, each row chunk loaded once (see `l2_many2_avx2`).
__attribute__((target("avx2,fma"))) static void dot_many2_avx2(const float *qa, const float *qb, const float *x,
                                                              size_t n, size_t d, float *oa, float *ob) {
    for (size_t r = 0; r < n; r++) {
        const float *b = x + r * d;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        size_t i = 0;
        for (; i + 32 <= d; i += 32) {
            __m256 v;
            v = _mm256_loadu_ps(b + i);
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qa + i), v, a0); b0 = _mm256_fmadd_ps(_mm256_loadu_ps(qb + i), v, b0);
            v = _mm256_loadu_ps(b + i + 8);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(qa + i + 8), v, a1); b1 = _mm256_fmadd_ps(_mm256_loadu_ps(qb + i + 8), v, b1);
            v = _mm256_loadu_ps(b + i + 16);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(qa + i + 16), v, a2); b2 = _mm256_fmadd_ps(_mm256_loadu_ps(qb + i + 16), v, b2);
            v = _mm256_loadu_ps(b + i + 24);
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(qa + i + 24), v, a3); b3 = _mm256_fmadd_ps(_mm256_loadu_ps(qb + i + 24), v, b3);
        }
        for (; i + 8 <= d; i += 8) {
            __m256 v = _mm256_loadu_ps(b + i);
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qa + i), v, a0); b0 = _mm256_fmadd_ps(_mm256_loadu_ps(qb + i), v, b0);
        }
        float sa = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
        float sb = hsum256(_mm256_add_ps(_mm256_add_ps(b0, b1), _mm256_add_ps(b2, b3)));
        for (size_t j = i; j < d; j++) sa += qa[j] * b[j];
        for (size_t j = i; j < d; j++) sb += qb[j] * b[j];
        oa[r] = sa;
        ob[r] = sb;
    }
}
// 2 rows x 4 queries per step: 8 accumulators, each row chunk loaded once for four queries.
__attribute__((target("avx2,fma"))) static void dot_tile_avx2(const float *q, size_t nq, const float *x, size_t nr,
                                                             size_t d, float *out, size_t ldo) {
    size_t r = 0;
    size_t dv = d & ~(size_t)7;
    for (; r + 2 <= nr; r += 2) {
        const float *x0 = x + r * d, *x1 = x0 + d;
        size_t i = 0;
        for (; i + 4 <= nq; i += 4) {
            const float *q0 = q + i * d, *q1 = q0 + d, *q2 = q1 + d, *q3 = q2 + d;
            __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00,
                   a31 = a00;
            for (size_t k = 0; k < dv; k += 8) {
                __m256 v0 = _mm256_loadu_ps(x0 + k), v1 = _mm256_loadu_ps(x1 + k), u;
                u = _mm256_loadu_ps(q0 + k); a00 = _mm256_fmadd_ps(u, v0, a00); a01 = _mm256_fmadd_ps(u, v1, a01);
                u = _mm256_loadu_ps(q1 + k); a10 = _mm256_fmadd_ps(u, v0, a10); a11 = _mm256_fmadd_ps(u, v1, a11);
                u = _mm256_loadu_ps(q2 + k); a20 = _mm256_fmadd_ps(u, v0, a20); a21 = _mm256_fmadd_ps(u, v1, a21);
                u = _mm256_loadu_ps(q3 + k); a30 = _mm256_fmadd_ps(u, v0, a30); a31 = _mm256_fmadd_ps(u, v1, a31);
            }
            float t[8] = {hsum256(a00), hsum256(a01), hsum256(a10), hsum256(a11),
                          hsum256(a20), hsum256(a21), hsum256(a30), hsum256(a31)};
            for (size_t k = dv; k < d; k++) {
                t[0] += q0[k] * x0[k]; t[1] += q0[k] * x1[k]; t[2] += q1[k] * x0[k]; t[3] += q1[k] * x1[k];
                t[4] += q2[k] * x0[k]; t[5] += q2[k] * x1[k]; t[6] += q3[k] * x0[k]; t[7] += q3[k] * x1[k];
            }
            for (size_t j = 0; j < 4; j++) {
                out[(i + j) * ldo + r] = t[2 * j];
                out[(i + j) * ldo + r + 1] = t[2 * j + 1];
            }
        }
        for (; i < nq; i++) {
            out[i * ldo + r] = dot_avx2(q + i * d, x0, d);
            out[i * ldo + r + 1] = dot_avx2(q + i * d, x1, d);
        }
    }
    for (; r < nr; r++)
        for (size_t i = 0; i < nq; i++) out[i * ldo + r] = dot_avx2(q + i * d, x + r * d, d);
}

// ---------------------------------------------------------------- AVX-512F
// Tails use masked loads, so any dimension runs entirely in 512-bit registers.
__attribute__((target("avx512f"))) static float dot_avx512(const float *a, const float *b, size_t d) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 64 <= d; i += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), s3);
    }
    for (; i + 16 <= d; i += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    if (i < d) {
        __mmask16 m = (__mmask16)((1u << (d - i)) - 1);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}
__attribute__((target("avx512f"))) static float l2_avx512(const float *a, const float *b, size_t d) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 64 <= d; i += 64) {
        __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
        __m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16));
        __m512 d2 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32));
        __m512 d3 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48));
        s0 = _mm512_fmadd_ps(d0, d0, s0); s1 = _mm512_fmadd_ps(d1, d1, s1);
        s2 = _mm512_fmadd_ps(d2, d2, s2); s3 = _mm512_fmadd_ps(d3, d3, s3);
    }
    for (; i + 16 <= d; i += 16) {
        __m512 t = _mm512_sub_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
        s0 = _mm512_fmadd_ps(t, t, s0);
    }
    if (i < d) {
        __mmask16 m = (__mmask16)((1u << (d - i)) - 1);
        __m512 t = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i));
        s1 = _mm512_fmadd_ps(t, t, s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}
__attribute__((target("avx512f"))) static void dot_many_avx512(const float *q, const float *x, size_t n, size_t d,
                                                              float *out) {
    // No software prefetch: on docs1m (238k x 384, rows streamed from the map) prefetching 4, 8 or 16 rows
    // ahead was 10-20% slower than leaving the stream to the hardware prefetcher (17.2 -> 14.7 ms a query).
    // Each row is `dot_avx512` exactly, so a row scored here and by `vs_dot` gets the same bits.
    for (size_t r = 0; r < n; r++) out[r] = dot_avx512(q, x + r * d, d);
}
__attribute__((target("avx512f"))) static void l2_many_avx512(const float *q, const float *x, size_t n, size_t d,
                                                             float *out) {
    for (size_t r = 0; r < n; r++) out[r] = l2_avx512(q, x + r * d, d);
}
// `dot_avx512`'s operations for two queries, each row chunk loaded once: every accumulator, tail and final
// sum is the one-query kernel's, so each query's value is its `dot_avx512` bits. One pass over the rows
// instead of two lets the second query's arithmetic overlap the first's loads of a row not yet in cache.
__attribute__((target("avx512f"))) static void dot_many2_avx512(const float *qa, const float *qb, const float *x,
                                                               size_t n, size_t d, float *oa, float *ob) {
    for (size_t r = 0; r < n; r++) {
        const float *b = x + r * d;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        size_t i = 0;
        for (; i + 64 <= d; i += 64) {
            __m512 v0 = _mm512_loadu_ps(b + i), v1 = _mm512_loadu_ps(b + i + 16);
            __m512 v2 = _mm512_loadu_ps(b + i + 32), v3 = _mm512_loadu_ps(b + i + 48);
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(qa + i), v0, a0);
            a1 = _mm512_fmadd_ps(_mm512_loadu_ps(qa + i + 16), v1, a1);
            a2 = _mm512_fmadd_ps(_mm512_loadu_ps(qa + i + 32), v2, a2);
            a3 = _mm512_fmadd_ps(_mm512_loadu_ps(qa + i + 48), v3, a3);
            b0 = _mm512_fmadd_ps(_mm512_loadu_ps(qb + i), v0, b0);
            b1 = _mm512_fmadd_ps(_mm512_loadu_ps(qb + i + 16), v1, b1);
            b2 = _mm512_fmadd_ps(_mm512_loadu_ps(qb + i + 32), v2, b2);
            b3 = _mm512_fmadd_ps(_mm512_loadu_ps(qb + i + 48), v3, b3);
        }
        for (; i + 16 <= d; i += 16) {
            __m512 v = _mm512_loadu_ps(b + i);
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(qa + i), v, a0);
            b0 = _mm512_fmadd_ps(_mm512_loadu_ps(qb + i), v, b0);
        }
        if (i < d) {
            __mmask16 m = (__mmask16)((1u << (d - i)) - 1);
            __m512 v = _mm512_maskz_loadu_ps(m, b + i);
            a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, qa + i), v, a1);
            b1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, qb + i), v, b1);
        }
        oa[r] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
        ob[r] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(b0, b1), _mm512_add_ps(b2, b3)));
    }
}
// `l2_avx512`'s operations for two queries, each row chunk loaded once (see `dot_many2_avx512`).
__attribute__((target("avx512f"))) static void l2_many2_avx512(const float *qa, const float *qb, const float *x,
                                                              size_t n, size_t d, float *oa, float *ob) {
    for (size_t r = 0; r < n; r++) {
        const float *b = x + r * d;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0, t;
        size_t i = 0;
        for (; i + 64 <= d; i += 64) {
            __m512 v0 = _mm512_loadu_ps(b + i), v1 = _mm512_loadu_ps(b + i + 16);
            __m512 v2 = _mm512_loadu_ps(b + i + 32), v3 = _mm512_loadu_ps(b + i + 48);
            t = _mm512_sub_ps(_mm512_loadu_ps(qa + i), v0); a0 = _mm512_fmadd_ps(t, t, a0);
            t = _mm512_sub_ps(_mm512_loadu_ps(qa + i + 16), v1); a1 = _mm512_fmadd_ps(t, t, a1);
            t = _mm512_sub_ps(_mm512_loadu_ps(qa + i + 32), v2); a2 = _mm512_fmadd_ps(t, t, a2);
            t = _mm512_sub_ps(_mm512_loadu_ps(qa + i + 48), v3); a3 = _mm512_fmadd_ps(t, t, a3);
            t = _mm512_sub_ps(_mm512_loadu_ps(qb + i), v0); b0 = _mm512_fmadd_ps(t, t, b0);
            t = _mm512_sub_ps(_mm512_loadu_ps(qb + i + 16), v1); b1 = _mm512_fmadd_ps(t, t, b1);
            t = _mm512_sub_ps(_mm512_loadu_ps(qb + i + 32), v2); b2 = _mm512_fmadd_ps(t, t, b2);
            t = _mm512_sub_ps(_mm512_loadu_ps(qb + i + 48), v3); b3 = _mm512_fmadd_ps(t, t, b3);
        }
        for (; i + 16 <= d; i += 16) {
            __m512 v = _mm512_loadu_ps(b + i);
            t = _mm512_sub_ps(_mm512_loadu_ps(qa + i), v); a0 = _mm512_fmadd_ps(t, t, a0);
            t = _mm512_sub_ps(_mm512_loadu_ps(qb + i), v); b0 = _mm512_fmadd_ps(t, t, b0);
        }
        if (i < d) {
            __mmask16 m = (__mmask16)((1u << (d - i)) - 1);
            __m512 v = _mm512_maskz_loadu_ps(m, b + i);
            t = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, qa + i), v); a1 = _mm512_fmadd_ps(t, t, a1);
            t = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, qb + i), v); b1 = _mm512_fmadd_ps(t, t, b1);
        }
        oa[r] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
        ob[r] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(b0, b1), _mm512_add_ps(b2, b3)));
    }
}
// Batch kernel, GEMM style: 32 rows are packed transposed into a panel (panel[k*32 + j] = row j's
// component k), then 8 queries x 32 rows are accumulated in 16 registers: per component k, two panel
// loads and eight broadcast query components feed 16 FMAs. No horizontal sums, no reloading of rows
// per query. Rows past `nr` are zero-padded in the panel and not stored.
__attribute__((target("avx512f"))) static void dot_tile_avx512(const float *q, size_t nq, const float *x,
                                                              size_t nr, size_t d, float *out, size_t ldo) {
    float *panel = aligned_alloc(64, ((d * 32 * sizeof(float)) + 63) & ~(size_t)63);
    if (!panel) { dot_tile_generic(q, nq, x, nr, d, out, ldo); return; }
    for (size_t r0 = 0; r0 < nr; r0 += 32) {
        size_t rows = nr - r0 < 32 ? nr - r0 : 32;
        for (size_t j = 0; j < 32; j++) {
            if (j < rows) {
                const float *row = x + (r0 + j) * d;
                for (size_t k = 0; k < d; k++) panel[k * 32 + j] = row[k];
            } else {
                for (size_t k = 0; k < d; k++) panel[k * 32 + j] = 0;
            }
        }
        __mmask16 m0 = rows >= 16 ? 0xFFFF : (__mmask16)((1u << rows) - 1);
        __mmask16 m1 = rows <= 16 ? 0 : rows >= 32 ? 0xFFFF : (__mmask16)((1u << (rows - 16)) - 1);
        size_t i = 0;
        for (; i + 8 <= nq; i += 8) {
            const float *qi = q + i * d;
            __m512 a0 = _mm512_setzero_ps(), b0 = a0, a1 = a0, b1 = a0, a2 = a0, b2 = a0, a3 = a0, b3 = a0;
            __m512 a4 = a0, b4 = a0, a5 = a0, b5 = a0, a6 = a0, b6 = a0, a7 = a0, b7 = a0;
            for (size_t k = 0; k < d; k++) {
                __m512 p0 = _mm512_load_ps(panel + k * 32), p1 = _mm512_load_ps(panel + k * 32 + 16), u;
                u = _mm512_set1_ps(qi[k]);         a0 = _mm512_fmadd_ps(u, p0, a0); b0 = _mm512_fmadd_ps(u, p1, b0);
                u = _mm512_set1_ps(qi[d + k]);     a1 = _mm512_fmadd_ps(u, p0, a1); b1 = _mm512_fmadd_ps(u, p1, b1);
                u = _mm512_set1_ps(qi[2 * d + k]); a2 = _mm512_fmadd_ps(u, p0, a2); b2 = _mm512_fmadd_ps(u, p1, b2);
                u = _mm512_set1_ps(qi[3 * d + k]); a3 = _mm512_fmadd_ps(u, p0, a3); b3 = _mm512_fmadd_ps(u, p1, b3);
                u = _mm512_set1_ps(qi[4 * d + k]); a4 = _mm512_fmadd_ps(u, p0, a4); b4 = _mm512_fmadd_ps(u, p1, b4);
                u = _mm512_set1_ps(qi[5 * d + k]); a5 = _mm512_fmadd_ps(u, p0, a5); b5 = _mm512_fmadd_ps(u, p1, b5);
                u = _mm512_set1_ps(qi[6 * d + k]); a6 = _mm512_fmadd_ps(u, p0, a6); b6 = _mm512_fmadd_ps(u, p1, b6);
                u = _mm512_set1_ps(qi[7 * d + k]); a7 = _mm512_fmadd_ps(u, p0, a7); b7 = _mm512_fmadd_ps(u, p1, b7);
            }
            float *o = out + i * ldo + r0;
            _mm512_mask_storeu_ps(o, m0, a0); _mm512_mask_storeu_ps(o + 16, m1, b0); o += ldo;
            _mm512_mask_storeu_ps(o, m0, a1); _mm512_mask_storeu_ps(o + 16, m1, b1); o += ldo;
            _mm512_mask_storeu_ps(o, m0, a2); _mm512_mask_storeu_ps(o + 16, m1, b2); o += ldo;
            _mm512_mask_storeu_ps(o, m0, a3); _mm512_mask_storeu_ps(o + 16, m1, b3); o += ldo;
            _mm512_mask_storeu_ps(o, m0, a4); _mm512_mask_storeu_ps(o + 16, m1, b4); o += ldo;
            _mm512_mask_storeu_ps(o, m0, a5); _mm512_mask_storeu_ps(o + 16, m1, b5); o += ldo;
            _mm512_mask_storeu_ps(o, m0, a6); _mm512_mask_storeu_ps(o + 16, m1, b6); o += ldo;
            _mm512_mask_storeu_ps(o, m0, a7); _mm512_mask_storeu_ps(o + 16, m1, b7);
        }
        for (; i < nq; i++) {
            const float *qi = q + i * d;
            __m512 a = _mm512_setzero_ps(), b = a;
            for (size_t k = 0; k < d; k++) {
                __m512 u = _mm512_set1_ps(qi[k]);
                a = _mm512_fmadd_ps(u, _mm512_load_ps(panel + k * 32), a);
                b = _mm512_fmadd_ps(u, _mm512_load_ps(panel + k * 32 + 16), b);
            }
            _mm512_mask_storeu_ps(out + i * ldo + r0, m0, a);
            _mm512_mask_storeu_ps(out + i * ldo + r0 + 16, m1, b);
        }
    }
    free(panel);
}

// ---------------------------------------------------------------- binary16 vectors (HNSW traversal)
__attribute__((target("avx512f")))
static float dot_h_avx512(const float *q, const unsigned short *h, size_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 b0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + i)));
        __m512 b1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + i + 16)));
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), b0, s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i + 16), b1, s1);
    }
    for (; i + 16 <= n; i += 16) {
        __m512 b = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + i)));
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), b, s0);
    }
    float s = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
    for (; i < n; i++) s += q[i] * _cvtsh_ss(h[i]);
    return s;
}

__attribute__((target("avx512f")))
static float l2_h_avx512(const float *q, const unsigned short *h, size_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(q + i), _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + i))));
        __m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(q + i + 16),
                                  _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + i + 16))));
        s0 = _mm512_fmadd_ps(d0, d0, s0);
        s1 = _mm512_fmadd_ps(d1, d1, s1);
    }
    for (; i + 16 <= n; i += 16) {
        __m512 d = _mm512_sub_ps(_mm512_loadu_ps(q + i), _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + i))));
        s0 = _mm512_fmadd_ps(d, d, s0);
    }
    float s = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
    for (; i < n; i++) { float d = q[i] - _cvtsh_ss(h[i]); s += d * d; }
    return s;
}

__attribute__((target("avx2,fma,f16c")))
static float dot_h_avx2(const float *q, const unsigned short *h, size_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i + 8))), s1);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))), s0);
    float s = hsum256(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += q[i] * _cvtsh_ss(h[i]);
    return s;
}

__attribute__((target("avx2,fma,f16c")))
static float l2_h_avx2(const float *q, const unsigned short *h, size_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(q + i), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
        __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(q + i + 8), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i + 8))));
        s0 = _mm256_fmadd_ps(d0, d0, s0);
        s1 = _mm256_fmadd_ps(d1, d1, s1);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 d = _mm256_sub_ps(_mm256_loadu_ps(q + i), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
        s0 = _mm256_fmadd_ps(d, d, s0);
    }
    float s = hsum256(_mm256_add_ps(s0, s1));
    for (; i < n; i++) { float d = q[i] - _cvtsh_ss(h[i]); s += d * d; }
    return s;
}

// ---------------------------------------------------------------- binary16 rows, certified scan (pass 1)
// For each row r: a[r] = sum q_i h_i (or sum (q_i - h_i)^2 when l2) and b[r] = sum h_i^2, rows `stride`
// halves apart. The rows PREFETCH_HALF_BYTES ahead are prefetched: the scan streams the copies, and the
// hardware prefetcher stops at every 4 KiB page of the map.
#ifndef PREFETCH_HALF_BYTES
#define PREFETCH_HALF_BYTES 3072
#endif
// The components past the vector loop of a half_pass kernel (dimensions that are not a multiple of its
// width), added to the loop's sums s and t, which are then stored at *a and *b.
__attribute__((target("f16c")))
static inline void half_pass_rest(const float *q, const unsigned short *row, size_t i, size_t d, int l2, float s, float t,
                                  float *a, float *b) {
    for (; i < d; i++) {
        float x = _cvtsh_ss(row[i]);
        if (l2) { float e = q[i] - x; s += e * e; } else s += q[i] * x;
        t += x * x;
    }
    *a = s;
    *b = t;
}

__attribute__((target("avx512f")))
static void half_pass_avx512(const float *q, const unsigned short *h, size_t n, size_t stride, size_t d, int l2,
                             float *a, float *b) {
    size_t rowBytes = stride * 2;
    for (size_t r = 0; r < n; r++) {
        const unsigned short *row = h + r * stride;
        // a streamed run of rows; gathered rows (n = 1) prefetch their own
        if (PREFETCH_HALF_BYTES > 0 && n > 1) prefetch_bytes((const char *)row + PREFETCH_HALF_BYTES, rowBytes);
        __m512 s0 = _mm512_setzero_ps(), s1 = s0, t0 = s0, t1 = s0;
        size_t i = 0;
        if (l2) {
            for (; i + 32 <= d; i += 32) {
                __m512 h0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(row + i)));
                __m512 h1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(row + i + 16)));
                __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(q + i), h0), d1 = _mm512_sub_ps(_mm512_loadu_ps(q + i + 16), h1);
                s0 = _mm512_fmadd_ps(d0, d0, s0); s1 = _mm512_fmadd_ps(d1, d1, s1);
                t0 = _mm512_fmadd_ps(h0, h0, t0); t1 = _mm512_fmadd_ps(h1, h1, t1);
            }
        } else {
            for (; i + 32 <= d; i += 32) {
                __m512 h0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(row + i)));
                __m512 h1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(row + i + 16)));
                s0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), h0, s0);
                s1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i + 16), h1, s1);
                t0 = _mm512_fmadd_ps(h0, h0, t0); t1 = _mm512_fmadd_ps(h1, h1, t1);
            }
        }
        float s = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1)), t = _mm512_reduce_add_ps(_mm512_add_ps(t0, t1));
        half_pass_rest(q, row, i, d, l2, s, t, a + r, b + r);
    }
}

__attribute__((target("avx2,fma,f16c")))
static void half_pass_avx2(const float *q, const unsigned short *h, size_t n, size_t stride, size_t d, int l2,
                           float *a, float *b) {
    size_t rowBytes = stride * 2;
    for (size_t r = 0; r < n; r++) {
        const unsigned short *row = h + r * stride;
        // a streamed run of rows; gathered rows (n = 1) prefetch their own
        if (PREFETCH_HALF_BYTES > 0 && n > 1) prefetch_bytes((const char *)row + PREFETCH_HALF_BYTES, rowBytes);
        // Four accumulators per sum, 32 components a step: with two, each sum was a chain of d/16
        // dependent FMAs (latency-bound, ~2x the FMA units' throughput at 384-d; perf on the gathered
        // scan). Any summation order is covered by the bound's gamma_(d+4).
        __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0, t0 = s0, t1 = s0, t2 = s0, t3 = s0;
        size_t i = 0;
        if (l2) {
            for (; i + 32 <= d; i += 32) {
                __m256 h0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + i)));
                __m256 h1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + i + 8)));
                __m256 h2 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + i + 16)));
                __m256 h3 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + i + 24)));
                __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(q + i), h0), d1 = _mm256_sub_ps(_mm256_loadu_ps(q + i + 8), h1);
                __m256 d2 = _mm256_sub_ps(_mm256_loadu_ps(q + i + 16), h2), d3 = _mm256_sub_ps(_mm256_loadu_ps(q + i + 24), h3);
                s0 = _mm256_fmadd_ps(d0, d0, s0); s1 = _mm256_fmadd_ps(d1, d1, s1);
                s2 = _mm256_fmadd_ps(d2, d2, s2); s3 = _mm256_fmadd_ps(d3, d3, s3);
                t0 = _mm256_fmadd_ps(h0, h0, t0); t1 = _mm256_fmadd_ps(h1, h1, t1);
                t2 = _mm256_fmadd_ps(h2, h2, t2); t3 = _mm256_fmadd_ps(h3, h3, t3);
            }
        } else {
            for (; i + 32 <= d; i += 32) {
                __m256 h0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + i)));
                __m256 h1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + i + 8)));
                __m256 h2 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + i + 16)));
                __m256 h3 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + i + 24)));
                s0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), h0, s0);
                s1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), h1, s1);
                s2 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 16), h2, s2);
                s3 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 24), h3, s3);
                t0 = _mm256_fmadd_ps(h0, h0, t0); t1 = _mm256_fmadd_ps(h1, h1, t1);
                t2 = _mm256_fmadd_ps(h2, h2, t2); t3 = _mm256_fmadd_ps(h3, h3, t3);
            }
        }
        for (; i + 8 <= d; i += 8) {
            __m256 h0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + i)));
            if (l2) {
                __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(q + i), h0);
                s0 = _mm256_fmadd_ps(d0, d0, s0);
            } else {
                s0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), h0, s0);
            }
            t0 = _mm256_fmadd_ps(h0, h0, t0);
        }
        float s = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
        float t = hsum256(_mm256_add_ps(_mm256_add_ps(t0, t1), _mm256_add_ps(t2, t3)));
        half_pass_rest(q, row, i, d, l2, s, t, a + r, b + r);
    }
}
#endif

// ---------------------------------------------------------------- binary16, portable

/// binary16 → binary32 without F16C (normals, subnormals, infinities, NaN).
static float half_to_float(unsigned short h) {
    unsigned int sign = (unsigned int)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0x1f) bits = sign | 0x7f800000 | (man << 13);
    else if (exp != 0) bits = sign | ((exp + 112) << 23) | (man << 13);
    else if (man == 0) bits = sign;
    else {
        int e = -1;
        do { man <<= 1; e++; } while (!(man & 0x400));
        bits = sign | ((unsigned int)(112 - e) << 23) | ((man & 0x3ff) << 13);
    }
    float f;
    __builtin_memcpy(&f, &bits, 4);
    return f;
}

static float dot_h_base(const float *q, const unsigned short *h, size_t n) {
    float s = 0;
    for (size_t i = 0; i < n; i++) s += q[i] * half_to_float(h[i]);
    return s;
}

static float l2_h_base(const float *q, const unsigned short *h, size_t n) {
    float s = 0;
    for (size_t i = 0; i < n; i++) { float d = q[i] - half_to_float(h[i]); s += d * d; }
    return s;
}


static void half_pass_base(const float *q, const unsigned short *h, size_t n, size_t stride, size_t d, int l2,
                           float *a, float *b) {
    for (size_t r = 0; r < n; r++) {
        const unsigned short *row = h + r * stride;
        float s = 0, t = 0;
        for (size_t i = 0; i < d; i++) {
            float x = half_to_float(row[i]);
            if (l2) { float e = q[i] - x; s += e * e; } else s += q[i] * x;
            t += x * x;
        }
        a[r] = s;
        b[r] = t;
    }
}

// ---------------------------------------------------------------- certified bounds (pass 1 -> pass 2)
// Row x (float32) and its copy h = binary16(x), rounded to nearest: |x_i - h_i| <= U|h_i| + S for every
// finite h_i, with U = 2^-11 (binary16's unit roundoff, normal range) and S = 2^-25 (half the subnormal
// spacing). A float32 sum of d products (or squared differences), in any order, with or without FMA, is
// within g = gamma_(d+4) = (d+4)u/(1-(d+4)u), u = 2^-24, relative to the sum of the terms' magnitudes
// (Higham, Accuracy and Stability of Numerical Algorithms, §3.1). With m >= sum |q_i||h_i| (Cauchy-Schwarz:
// |q|_2 |h|_2, |h|_2 from b = fl(sum h_i^2) <= (1+g) |h|_2^2 ... so |h|_2 <= sqrt(b/(1-g))):
//   dot:  fl32(q.x) <= q.x + g sum|q_i x_i|,  q.x <= q.h + U m + S|q|_1,  q.h <= a + g m,
//         sum|q_i x_i| <= (1+U) m + S|q|_1   =>  ub = a + m(U + 3g) + S|q|_1(1+g)
//   l2:   |q-h|^2 >= a/(1+g),  |x-h|_2 <= U|h|_2 + S sqrt(d) = delta,  |q-x| >= |q-h| - delta = L,
//         fl32(|q-x|^2) >= (1-g) L^2                                     =>  ub = -(1-g) L^2
// An absolute slack of (d+4)2^-140 covers float32 underflow. The bound is evaluated in double with a
// relative margin far above double rounding, then rounded up to float. A non-finite a or b (a copy that
// overflowed binary16, or a query that overflows) gives +inf: the row is always re-scored.
#define VS_HALF_U 0x1p-11
#define VS_HALF_S 0x1p-25
static void half_bounds(const float *a, const float *b, size_t n, size_t d, double qn2, double qn1, int l2,
                        float *ub) {
    double g = (double)(d + 4) * 0x1p-24;
    g = g / (1 - g);
    double tiny = (double)(d + 4) * 0x1p-140;
    for (size_t r = 0; r < n; r++) {
        double A = a[r], B = b[r];
        if (!isfinite(A) || !isfinite(B) || !isfinite(qn2) || !isfinite(qn1)) { ub[r] = INFINITY; continue; }
        double hn = sqrt(B / (1 - g)) * (1 + 0x1p-40) + tiny;
        double v;
        if (!l2) {
            double e = qn2 * hn * (VS_HALF_U + 3 * g) + qn1 * VS_HALF_S * (1 + g) + tiny;
            v = A + e * (1 + 0x1p-30) + fabs(A) * 0x1p-50;
        } else {
            double delta = (VS_HALF_U * hn + VS_HALF_S * sqrt((double)d)) * (1 + 0x1p-30);
            double lower = A - tiny > 0 ? sqrt((A - tiny) / (1 + g)) * (1 - 0x1p-40) : 0;
            double L = lower > delta ? lower - delta : 0;
            v = -(1 - g) * L * L * (1 - 0x1p-30) + tiny;
        }
        float f = (float)v;
        if ((double)f < v) f = nextafterf(f, INFINITY);
        ub[r] = f;
    }
}


#ifdef VS_X86
// half_bounds in eight double lanes (the same formulas and margins), rounded up to float by the
// conversion's own rounding mode: the per-row scalar version cost a third of the scan.
__attribute__((target("avx512f")))
static void half_bounds_avx512(const float *a, const float *b, size_t n, size_t d, double qn2, double qn1, int l2,
                               float *ub) {
    double g = (double)(d + 4) * 0x1p-24;
    g = g / (1 - g);
    double tiny = (double)(d + 4) * 0x1p-140;
    const __m512d inv1mg = _mm512_set1_pd(1 / (1 - g)), up40 = _mm512_set1_pd(1 + 0x1p-40),
                  tinyv = _mm512_set1_pd(tiny), zero = _mm512_setzero_pd(), inf = _mm512_set1_pd(INFINITY);
    const __m512d c1 = _mm512_set1_pd(qn2 * (VS_HALF_U + 3 * g) * (1 + 0x1p-30));
    const __m512d c0 = _mm512_set1_pd((qn1 * VS_HALF_S * (1 + g) + tiny) * (1 + 0x1p-30));
    const __m512d rel = _mm512_set1_pd(0x1p-50);
    const __m512d du = _mm512_set1_pd(VS_HALF_U * (1 + 0x1p-30)),
                  ds = _mm512_set1_pd(VS_HALF_S * sqrt((double)d) * (1 + 0x1p-30) * (1 + 0x1p-40));
    const __m512d inv1pg = _mm512_set1_pd(1 / (1 + g)), down40 = _mm512_set1_pd(1 - 0x1p-40),
                  shrink = _mm512_set1_pd(-(1 - g) * (1 - 0x1p-30));
    // `a` and `b` hold at least n rounded up to 8 values; `ub` too.
    for (size_t r = 0; r < n; r += 8) {
        __m512d A = _mm512_cvtps_pd(_mm256_loadu_ps(a + r)), B = _mm512_cvtps_pd(_mm256_loadu_ps(b + r));
        // x - x is 0 for finite x, NaN for ±inf and NaN.
        __mmask8 finite = _mm512_cmp_pd_mask(_mm512_sub_pd(A, A), zero, _CMP_EQ_OQ) &
                          _mm512_cmp_pd_mask(_mm512_sub_pd(B, B), zero, _CMP_EQ_OQ);
        __m512d hn = _mm512_add_pd(_mm512_mul_pd(_mm512_sqrt_pd(_mm512_mul_pd(B, inv1mg)), up40), tinyv);
        __m512d v;
        if (!l2) {
            __m512d e = _mm512_fmadd_pd(hn, c1, c0);
            v = _mm512_add_pd(_mm512_add_pd(A, e), _mm512_mul_pd(_mm512_abs_pd(A), rel));
        } else {
            __m512d delta = _mm512_fmadd_pd(hn, du, ds);
            __m512d lower = _mm512_mul_pd(_mm512_sqrt_pd(_mm512_mul_pd(_mm512_max_pd(_mm512_sub_pd(A, tinyv), zero), inv1pg)),
                                          down40);
            __m512d L = _mm512_max_pd(_mm512_sub_pd(lower, delta), zero);
            v = _mm512_add_pd(_mm512_mul_pd(_mm512_mul_pd(L, L), shrink), tinyv);
        }
        v = _mm512_mask_blend_pd(finite, inf, v);
        _mm256_storeu_ps(ub + r, _mm512_cvt_roundpd_ps(v, _MM_FROUND_TO_POS_INF | _MM_FROUND_NO_EXC));
    }
}

// half_bounds in four double lanes (the same formulas and margins as the scalar one). AVX2 has no
// conversion with a rounding mode: the nearest float is taken, and a lane whose float came out below its
// double is moved one float up (bits + 1 above zero, - 1 below, the smallest subnormal from ±0), which
// is nextafterf(f, +inf). The scalar version was 20% of a gathered exact scan (perf, AVX2 machine).
__attribute__((target("avx2,fma")))
static void half_bounds_avx2(const float *a, const float *b, size_t n, size_t d, double qn2, double qn1, int l2,
                             float *ub) {
    double g = (double)(d + 4) * 0x1p-24;
    g = g / (1 - g);
    double tiny = (double)(d + 4) * 0x1p-140;
    const __m256d inv1mg = _mm256_set1_pd(1 / (1 - g)), up40 = _mm256_set1_pd(1 + 0x1p-40),
                  tinyv = _mm256_set1_pd(tiny), zero = _mm256_setzero_pd(), inf = _mm256_set1_pd(INFINITY);
    const __m256d c1 = _mm256_set1_pd(qn2 * (VS_HALF_U + 3 * g) * (1 + 0x1p-30));
    const __m256d c0 = _mm256_set1_pd((qn1 * VS_HALF_S * (1 + g) + tiny) * (1 + 0x1p-30));
    const __m256d rel = _mm256_set1_pd(0x1p-50), absmask = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7fffffffffffffffLL));
    const __m256d du = _mm256_set1_pd(VS_HALF_U * (1 + 0x1p-30)),
                  ds = _mm256_set1_pd(VS_HALF_S * sqrt((double)d) * (1 + 0x1p-30) * (1 + 0x1p-40));
    const __m256d inv1pg = _mm256_set1_pd(1 / (1 + g)), down40 = _mm256_set1_pd(1 - 0x1p-40),
                  shrink = _mm256_set1_pd(-(1 - g) * (1 - 0x1p-30));
    const __m128 fzero = _mm_setzero_ps();
    const __m128i one = _mm_set1_epi32(1);
    // `a` and `b` hold at least n rounded up to 8 values; `ub` too.
    for (size_t r = 0; r < n; r += 4) {
        __m256d A = _mm256_cvtps_pd(_mm_loadu_ps(a + r)), B = _mm256_cvtps_pd(_mm_loadu_ps(b + r));
        // x - x is 0 for finite x, NaN for ±inf and NaN.
        __m256d finite = _mm256_and_pd(_mm256_cmp_pd(_mm256_sub_pd(A, A), zero, _CMP_EQ_OQ),
                                       _mm256_cmp_pd(_mm256_sub_pd(B, B), zero, _CMP_EQ_OQ));
        __m256d hn = _mm256_add_pd(_mm256_mul_pd(_mm256_sqrt_pd(_mm256_mul_pd(B, inv1mg)), up40), tinyv);
        __m256d v;
        if (!l2) {
            __m256d e = _mm256_fmadd_pd(hn, c1, c0);
            v = _mm256_add_pd(_mm256_add_pd(A, e), _mm256_mul_pd(_mm256_and_pd(A, absmask), rel));
        } else {
            __m256d delta = _mm256_fmadd_pd(hn, du, ds);
            __m256d lower = _mm256_mul_pd(_mm256_sqrt_pd(_mm256_mul_pd(_mm256_max_pd(_mm256_sub_pd(A, tinyv), zero), inv1pg)),
                                          down40);
            __m256d L = _mm256_max_pd(_mm256_sub_pd(lower, delta), zero);
            v = _mm256_add_pd(_mm256_mul_pd(_mm256_mul_pd(L, L), shrink), tinyv);
        }
        v = _mm256_blendv_pd(inf, v, finite);
        __m128 f = _mm256_cvtpd_ps(v);
        // Lanes rounded down, (double)f < v: the 64-bit compare lanes packed to 32 bits.
        __m256i low64 = _mm256_castpd_si256(_mm256_cmp_pd(_mm256_cvtps_pd(f), v, _CMP_LT_OQ));
        __m128i low = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(low64, _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6)));
        __m128i bits = _mm_castps_si128(f);
        __m128i pos = _mm_castps_si128(_mm_cmp_ps(f, fzero, _CMP_GT_OQ));
        __m128i neg = _mm_castps_si128(_mm_cmp_ps(f, fzero, _CMP_LT_OQ));
        __m128i up = _mm_add_epi32(bits, one), down = _mm_sub_epi32(bits, one);
        // ±0 goes to the smallest positive subnormal.
        __m128i bumped = _mm_or_si128(_mm_and_si128(pos, up), _mm_or_si128(_mm_and_si128(neg, down),
                                      _mm_andnot_si128(_mm_or_si128(pos, neg), one)));
        __m128i out = _mm_or_si128(_mm_andnot_si128(low, bits), _mm_and_si128(low, bumped));
        _mm_storeu_ps(ub + r, _mm_castsi128_ps(out));
    }
}
#endif



// ---------------------------------------------------------------- binary32 -> binary16 (traversal copies)

/// binary32 → binary16, rounding to nearest with ties to even (IEEE 754 default, what Swift's
/// `Float16(x)` and F16C's `vcvtps2ph` with imm 0 give): overflow to ±inf, gradual underflow to
/// subnormals and ±0, a NaN stays a quiet NaN with the sign and the top 9 payload bits kept.
static unsigned short float_to_half(float f) {
    unsigned int x;
    __builtin_memcpy(&x, &f, 4);
    unsigned int sign = (x >> 16) & 0x8000, a = x & 0x7fffffff;
    if (a >= 0x7f800000) return (unsigned short)(sign | (a == 0x7f800000 ? 0x7c00 : 0x7e00 | ((a >> 13) & 0x3ff)));
    if (a >= 0x477ff000) return (unsigned short)(sign | 0x7c00);  // 65520 and up round to inf (the tie too)
    if (a >= 0x38800000) {                                           // a binary16 normal
        unsigned int h = (a - 0x38000000) >> 13, rest = a & 0x1fff;
        if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;       // a carry into the exponent is right
        return (unsigned short)(sign | h);
    }
    if (a <= 0x33000000) return (unsigned short)sign;                // at most 2^-25: ±0 (the tie to even)
    unsigned int e = a >> 23, m = (a & 0x7fffff) | 0x800000, shift = 126 - e;  // shift 14 ... 24
    unsigned int h = m >> shift, rest = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rest > half || (rest == half && (h & 1))) h++;                // 0x400 is the smallest normal
    return (unsigned short)(sign | h);
}

static void f32_to_f16_base(const float *x, unsigned short *h, size_t n) {
    for (size_t i = 0; i < n; i++) h[i] = float_to_half(x[i]);
}

#ifdef VS_X86
__attribute__((target("avx2,f16c"))) static void f32_to_f16_f16c(const float *x, unsigned short *h, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(h + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < n; i++) h[i] = float_to_half(x[i]);
}
__attribute__((target("avx512f"))) static void f32_to_f16_avx512(const float *x, unsigned short *h, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(h + i),
                            _mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < n; i++) h[i] = float_to_half(x[i]);
}
#endif

// ---------------------------------------------------------------- dispatch
static vs_distance_kernels generic_kernels = {
    "generic", dot_generic, l2_generic, dot_many_generic, l2_many_generic, dot_tile_generic,
    dot_h_base, l2_h_base, half_pass_base, half_bounds, f32_to_f16_base,
    dot_many2_generic, l2_many2_generic,
};
#ifdef VS_X86
static vs_distance_kernels avx2_kernels = {
    "avx2", dot_avx2, l2_avx2, dot_many_avx2, l2_many_avx2, dot_tile_avx2,
    dot_h_avx2, l2_h_avx2, half_pass_avx2, half_bounds_avx2, f32_to_f16_f16c,
    dot_many2_avx2, l2_many2_avx2,
};
static vs_distance_kernels avx512_kernels = {
    "avx512f", dot_avx512, l2_avx512, dot_many_avx512, l2_many_avx512, dot_tile_avx512,
    dot_h_avx512, l2_h_avx512, half_pass_avx512, half_bounds_avx512, f32_to_f16_avx512,
    dot_many2_avx512, l2_many2_avx512,
};
static int has_avx2, has_avx512;
#endif
/// The kernels every entry point below calls: a copy of one variant's table, written once at load.
static vs_distance_kernels active;

const vs_distance_kernels *vs_distance_variant(const char *isa) {
    if (!isa) return NULL;
    if (!strcmp(isa, "generic") || !strcmp(isa, "portable")) return &generic_kernels;
#ifdef VS_X86
    if (!strcmp(isa, "avx2")) return has_avx2 ? &avx2_kernels : NULL;
    if (!strcmp(isa, "avx512f") || !strcmp(isa, "avx512")) return has_avx512 ? &avx512_kernels : NULL;
#endif
    return NULL;
}

// Runs before main (and before any thread exists), so the tables are never written concurrently.
__attribute__((constructor)) static void vs_distance_select(void) {
    const vs_distance_kernels *best = &generic_kernels;
#ifdef VS_X86
    __builtin_cpu_init();
    has_avx512 = __builtin_cpu_supports("avx512f");
    has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (has_avx2 && !__builtin_cpu_supports("f16c")) {
        // The binary16 kernels need F16C; without it the AVX2 variant converts halves portably.
        avx2_kernels.dot_f16 = dot_h_base; avx2_kernels.l2sq_f16 = l2_h_base; avx2_kernels.half_pass = half_pass_base;
        avx2_kernels.f32_to_f16 = f32_to_f16_base;
    }
    if (has_avx512) best = &avx512_kernels;
    else if (has_avx2) best = &avx2_kernels;
#endif
    // VECSTORE_KERNEL=portable|avx2|avx512 runs this process on another variant (tests, measurement),
    // provided the CPU has it; otherwise the best variant is kept and the reason printed.
    const char *forced = getenv("VECSTORE_KERNEL");
    if (forced && *forced) {
        const vs_distance_kernels *k = vs_distance_variant(forced);
        if (k) best = k;
        else fprintf(stderr, "vecstore: VECSTORE_KERNEL=%s is not a kernel variant this CPU runs (portable, avx2, "
                             "avx512); using %s\n", forced, best->isa);
    }
    active = *best;
}

void vs_dot_many(const float *q, const float *base, size_t n, size_t dim, float *out) {
    active.dot_many(q, base, n, dim, out);
}
void vs_l2_many(const float *q, const float *base, size_t n, size_t dim, float *out) {
    active.l2_many(q, base, n, dim, out);
}
void vs_dot_many2(const float *qa, const float *qb, const float *base, size_t n, size_t dim, float *out_a,
                  float *out_b) {
    active.dot_many2(qa, qb, base, n, dim, out_a, out_b);
}
void vs_l2_many2(const float *qa, const float *qb, const float *base, size_t n, size_t dim, float *out_a,
                 float *out_b) {
    active.l2_many2(qa, qb, base, n, dim, out_a, out_b);
}
void vs_dot_tile(const float *q, size_t nq, const float *x, size_t nr, size_t dim, float *out, size_t ldo) {
    active.dot_tile(q, nq, x, nr, dim, out, ldo);
}
float vs_dot(const float *a, const float *b, size_t dim) { return active.dot(a, b, dim); }
float vs_l2(const float *a, const float *b, size_t dim) { return active.l2(a, b, dim); }
const char *vs_distance_isa(void) { return active.isa; }
float vs_dot_f16(const float *q, const unsigned short *h, size_t n) { return active.dot_f16(q, h, n); }
float vs_l2sq_f16(const float *q, const unsigned short *h, size_t n) { return active.l2sq_f16(q, h, n); }
void vs_f32_to_f16(const float *x, unsigned short *h, size_t n) { active.f32_to_f16(x, h, n); }

// The bounds of `m` (at most 64) rows from pass 1's sums `a` and `b`, stored at `ub`: computed in whole groups
// of 8 into `u`, then copied out; all +inf when `qn2` or `qn1` is not finite.
static inline void store_bounds(const vs_distance_kernels *k, const float *a, const float *b, size_t m, size_t dim,
                         double qn2, double qn1, int l2, float *ub) {
    if (isfinite(qn2) && isfinite(qn1)) {
        float u[64];
        k->half_bounds(a, b, m, dim, qn2, qn1, l2, u);
        for (size_t r = 0; r < m; r++) ub[r] = u[r];
    } else {
        for (size_t r = 0; r < m; r++) ub[r] = INFINITY;
    }
}

void vs_f16_upper_many_with(const vs_distance_kernels *k, const float *q, double qn2, double qn1,
                            const unsigned short *h, size_t n, size_t stride, size_t dim, int l2, float *ub) {
    // Scores and squared norms in chunks of 64 rows (the callers pass at most one mask word's rows).
    float a[64] = {0}, b[64] = {0};
    for (size_t r0 = 0; r0 < n; r0 += 64) {
        size_t m = n - r0 < 64 ? n - r0 : 64;
        k->half_pass(q, h + r0 * stride, m, stride, dim, l2, a, b);
        store_bounds(k, a, b, m, dim, qn2, qn1, l2, ub + r0);
    }
}

void vs_f16_upper_rows_with(const vs_distance_kernels *k, const float *q, double qn2, double qn1,
                            const unsigned short *h, const unsigned int *rows, size_t n, size_t stride, size_t dim,
                            int l2, float *ub) {
    float a[64] = {0}, b[64] = {0};
    for (size_t r0 = 0; r0 < n; r0 += 64) {
        size_t m = n - r0 < 64 ? n - r0 : 64;
        for (size_t i = 0; i < m; i++) {
            // The copies of the rows 4 places ahead are fetched while this one is summed.
            if (r0 + i + 4 < n) prefetch_bytes(h + (size_t)rows[r0 + i + 4] * stride, stride * 2);
            k->half_pass(q, h + (size_t)rows[r0 + i] * stride, 1, stride, dim, l2, a + i, b + i);
        }
        store_bounds(k, a, b, m, dim, qn2, qn1, l2, ub + r0);
    }
}

void vs_f16_upper_ptrs_with(const vs_distance_kernels *k, const float *q, double qn2, double qn1,
                            const unsigned short *const *rows, size_t n, size_t dim, int l2, size_t ahead, float *ub) {
    float a[64] = {0}, b[64] = {0};
    size_t bytes = dim * 2;
    // The first `ahead` rows are requested at once, then each row `ahead` places on while one is summed:
    // scattered rows (each on its own page) then overlap their TLB walks and cache misses.
    for (size_t i = 0; i < ahead && i < n; i++) prefetch_bytes(rows[i], bytes);
    for (size_t r0 = 0; r0 < n; r0 += 64) {
        size_t m = n - r0 < 64 ? n - r0 : 64;
        for (size_t i = 0; i < m; i++) {
            if (r0 + i + ahead < n) prefetch_bytes(rows[r0 + i + ahead], bytes);
            k->half_pass(q, rows[r0 + i], 1, dim, dim, l2, a + i, b + i);
        }
        store_bounds(k, a, b, m, dim, qn2, qn1, l2, ub + r0);
    }
}

void vs_f16_upper_many(const float *q, double qn2, double qn1, const unsigned short *h, size_t n, size_t stride,
                       size_t dim, int l2, float *ub) {
    vs_f16_upper_many_with(&active, q, qn2, qn1, h, n, stride, dim, l2, ub);
}
void vs_f16_upper_ptrs(const float *q, double qn2, double qn1, const unsigned short *const *rows, size_t n,
                       size_t dim, int l2, size_t ahead, float *ub) {
    vs_f16_upper_ptrs_with(&active, q, qn2, qn1, rows, n, dim, l2, ahead, ub);
}
