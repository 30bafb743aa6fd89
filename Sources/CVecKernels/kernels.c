// Distance kernels for the HNSW hot path. The Swift SIMD kernels compile for the baseline x86-64 target
// (SSE2); these are compiled three times (AVX-512, AVX2+FMA, baseline) and the widest the CPU supports
// is picked once, at first call.
#include "CVecKernels.h"

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <immintrin.h>

__attribute__((target("avx512f")))
static float dot_avx512(const float *a, const float *b, size_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    }
    for (; i + 16 <= n; i += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    float s = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

__attribute__((target("avx512f")))
static float l2_avx512(const float *a, const float *b, size_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
        __m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16));
        s0 = _mm512_fmadd_ps(d0, d0, s0);
        s1 = _mm512_fmadd_ps(d1, d1, s1);
    }
    for (; i + 16 <= n; i += 16) {
        __m512 d = _mm512_sub_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
        s0 = _mm512_fmadd_ps(d, d, s0);
    }
    float s = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
    for (; i < n; i++) { float d = a[i] - b[i]; s += d * d; }
    return s;
}

__attribute__((target("avx2,fma")))
static float hsum256(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
    return _mm_cvtss_f32(lo);
}

__attribute__((target("avx2,fma")))
static float dot_avx2(const float *a, const float *b, size_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum256(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

__attribute__((target("avx2,fma")))
static float l2_avx2(const float *a, const float *b, size_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
        __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8));
        s0 = _mm256_fmadd_ps(d0, d0, s0);
        s1 = _mm256_fmadd_ps(d1, d1, s1);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 d = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
        s0 = _mm256_fmadd_ps(d, d, s0);
    }
    float s = hsum256(_mm256_add_ps(s0, s1));
    for (; i < n; i++) { float d = a[i] - b[i]; s += d * d; }
    return s;
}
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
#endif

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

static float dot_base(const float *a, const float *b, size_t n) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i]; s1 += a[i + 1] * b[i + 1]; s2 += a[i + 2] * b[i + 2]; s3 += a[i + 3] * b[i + 3];
    }
    float s = (s0 + s1) + (s2 + s3);
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static float l2_base(const float *a, const float *b, size_t n) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float d0 = a[i] - b[i], d1 = a[i + 1] - b[i + 1], d2 = a[i + 2] - b[i + 2], d3 = a[i + 3] - b[i + 3];
        s0 += d0 * d0; s1 += d1 * d1; s2 += d2 * d2; s3 += d3 * d3;
    }
    float s = (s0 + s1) + (s2 + s3);
    for (; i < n; i++) { float d = a[i] - b[i]; s += d * d; }
    return s;
}

typedef float (*kernel_fn)(const float *, const float *, size_t);
typedef float (*half_kernel_fn)(const float *, const unsigned short *, size_t);
static kernel_fn dot_impl = 0, l2_impl = 0;
static half_kernel_fn dot_h_impl = 0, l2_h_impl = 0;
static int width = 0;

static void choose(void) {
    kernel_fn d = dot_base, l = l2_base;
    half_kernel_fn dh = dot_h_base, lh = l2_h_base;
    int w = 128;
#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) {
        d = dot_avx512; l = l2_avx512; dh = dot_h_avx512; lh = l2_h_avx512; w = 512;
    } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        d = dot_avx2; l = l2_avx2; w = 256;
        // every AVX2 CPU has F16C, but ask
        if (__builtin_cpu_supports("f16c")) { dh = dot_h_avx2; lh = l2_h_avx2; }
    }
#endif
    // Benign race: every thread computes and stores the same values; dot_impl is published last.
    l2_impl = l;
    dot_h_impl = dh;
    l2_h_impl = lh;
    width = w;
    __atomic_store_n(&dot_impl, d, __ATOMIC_RELEASE);
}

float vs_dot_f32(const float *a, const float *b, size_t n) {
    kernel_fn f = __atomic_load_n(&dot_impl, __ATOMIC_ACQUIRE);
    if (!f) { choose(); f = dot_impl; }
    return f(a, b, n);
}

float vs_l2sq_f32(const float *a, const float *b, size_t n) {
    if (!__atomic_load_n(&dot_impl, __ATOMIC_ACQUIRE)) choose();
    return l2_impl(a, b, n);
}

int vs_kernel_width(void) {
    if (!__atomic_load_n(&dot_impl, __ATOMIC_ACQUIRE)) choose();
    return width;
}

float vs_dot_f16(const float *q, const unsigned short *h, size_t n) {
    if (!__atomic_load_n(&dot_impl, __ATOMIC_ACQUIRE)) choose();
    return dot_h_impl(q, h, n);
}

float vs_l2sq_f16(const float *q, const unsigned short *h, size_t n) {
    if (!__atomic_load_n(&dot_impl, __ATOMIC_ACQUIRE)) choose();
    return l2_h_impl(q, h, n);
}
