// Quantized-vector kernels, compiled for AVX-512BW, AVX2 and portable C and picked once at load time from the
// running CPU (the CDistance pattern; VECSTORE_KERNEL caps it, see vq_select), so one binary is fast on every
// x86-64 machine and correct elsewhere.
#include "vs_quant.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#define VQ_X86 1
#include <immintrin.h>
#endif
#define VQ_INLINE static inline __attribute__((always_inline))

// ---------------------------------------------------------------- PQ ADC (scalar: table look-ups)
// Eight rows per step keep eight independent dependency chains in flight, each summed in sub-quantizer order
// (so every row's value is the sequential sum, whatever the step). With four rows the compiler packed the four
// sums into one SSE register (four scalar loads and three shuffles per add) and the adds' latency bounded
// the loop; the empty asm below keeps each sum in its own register, so a look-up is one load-and-add.
#if defined(VQ_X86)
#define VQ_KEEP_SCALAR(a, b, c, d) __asm__("" : "+x"(a), "+x"(b), "+x"(c), "+x"(d))
#else
#define VQ_KEEP_SCALAR(a, b, c, d) ((void)0)
#endif
// With M a multiple of 4 (little-endian hosts), each row's codes are read four at a time as one 32-bit load and
// split with byte moves and shifts (clang uses movzbl of the low and high byte registers): 1.25 loads a look-up
// instead of 2. The look-ups were bound by the load ports (~0.7 cycles each on a Xeon with three; a C
// micro-benchmark at M = 48: 13.2 -> 11.5 ns a row); what is left is near the bound of two scalar adds a cycle.
// Each row is still summed in sub-quantizer order from 0, so the values are unchanged bit for bit. (Rows across
// AVX-512 / AVX2 lanes with gathers, 16 rows a chain and 64-bit code loads were all measured slower; gathers
// on an AMD EPYC (Zen 5) too: 15-24 ns a row at M = 48 against 9.) On CPUs with AVX-512 VBMI the byte-plane
// kernel below scores 64 rows a step with the same sums; this one serves the others and short tails.
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define VQ_PQ8_WORDS 1
#endif
void vq_pq8_scan(const float *lut, size_t m, const uint8_t *codes, size_t n, float *out) {
    size_t i = 0;
#ifdef VQ_PQ8_WORDS
    if (m % 4 == 0) {
        for (; i + 8 <= n; i += 8) {
            const uint8_t *c = codes + i * m;
            float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
            for (size_t j = 0; j < m; j += 4) {
                uint32_t w0, w1, w2, w3, w4, w5, w6, w7;
                memcpy(&w0, c + j, 4); memcpy(&w1, c + m + j, 4);
                memcpy(&w2, c + 2 * m + j, 4); memcpy(&w3, c + 3 * m + j, 4);
                memcpy(&w4, c + 4 * m + j, 4); memcpy(&w5, c + 5 * m + j, 4);
                memcpy(&w6, c + 6 * m + j, 4); memcpy(&w7, c + 7 * m + j, 4);
                const float *t = lut + j * 256;
#define VQ_PQ8_STEP(sh, off)                                                                                   \
    s0 += t[(off) + ((w0 >> (sh)) & 255)]; s1 += t[(off) + ((w1 >> (sh)) & 255)];                            \
    s2 += t[(off) + ((w2 >> (sh)) & 255)]; s3 += t[(off) + ((w3 >> (sh)) & 255)];                            \
    s4 += t[(off) + ((w4 >> (sh)) & 255)]; s5 += t[(off) + ((w5 >> (sh)) & 255)];                            \
    s6 += t[(off) + ((w6 >> (sh)) & 255)]; s7 += t[(off) + ((w7 >> (sh)) & 255)];                            \
    VQ_KEEP_SCALAR(s0, s1, s2, s3);                                                                            \
    VQ_KEEP_SCALAR(s4, s5, s6, s7);
                VQ_PQ8_STEP(0, 0)
                VQ_PQ8_STEP(8, 256)
                VQ_PQ8_STEP(16, 512)
                VQ_PQ8_STEP(24, 768)
#undef VQ_PQ8_STEP
            }
            out[i] = s0; out[i + 1] = s1; out[i + 2] = s2; out[i + 3] = s3;
            out[i + 4] = s4; out[i + 5] = s5; out[i + 6] = s6; out[i + 7] = s7;
        }
    }
#endif
    for (; i + 8 <= n; i += 8) {
        const uint8_t *c0 = codes + i * m, *c1 = c0 + m, *c2 = c1 + m, *c3 = c2 + m;
        const uint8_t *c4 = c3 + m, *c5 = c4 + m, *c6 = c5 + m, *c7 = c6 + m;
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
        for (size_t j = 0; j < m; j++) {
            const float *t = lut + j * 256;
            s0 += t[c0[j]]; s1 += t[c1[j]]; s2 += t[c2[j]]; s3 += t[c3[j]];
            s4 += t[c4[j]]; s5 += t[c5[j]]; s6 += t[c6[j]]; s7 += t[c7[j]];
            VQ_KEEP_SCALAR(s0, s1, s2, s3);
            VQ_KEEP_SCALAR(s4, s5, s6, s7);
        }
        out[i] = s0; out[i + 1] = s1; out[i + 2] = s2; out[i + 3] = s3;
        out[i + 4] = s4; out[i + 5] = s5; out[i + 6] = s6; out[i + 7] = s7;
    }
    for (; i < n; i++) {
        const uint8_t *c = codes + i * m;
        float s = 0;
        for (size_t j = 0; j < m; j++) s += lut[j * 256 + c[j]];
        out[i] = s;
    }
}
#undef VQ_KEEP_SCALAR

// ---------------------------------------------------------------- 8-bit ADC from byte planes (AVX-512 VBMI)
// The look-ups of the scalar kernel above are bound by two float adds a cycle with one add a look-up. Here 64 rows
// are scored in 64 byte lanes: the table of sub-quantizer j is kept as four byte planes (byte p of every entry's
// float bits, 256 bytes each, `vq_pq8_planes`), a plane look-up of 64 codes is two `vpermt2b` (entries 0-127 and
// 128-255, 7-bit indices) and a blend on the code's top bit, and the four planes interleave back into the 64
// entries' exact float bits. Each row's sum is still formed in sub-quantizer order from 0, one float add per
// sub-quantizer (in a vector lane of its own), so every value has the bits of the scalar kernel's. Codes are
// transposed 64 rows at a time (a 16 x 16 byte transpose per 128-bit lane in four unpack stages) into one
// 64-byte index vector per sub-quantizer. C micro-benchmark on an AMD EPYC (Zen 5) at M = 48, 256 rows a call:
// 8.1 -> 3.3 ns a row; at M = 16: 2.8 -> 1.0 ns (BENCHMARKS.md, "8-bit ADC from byte planes").
#ifdef VQ_X86
#define VQ_VBMI __attribute__((target("avx512f,avx512bw,avx512vbmi")))
// Rows of one transposed block, and the blocks a pass over the table reads.
#define VQ_PQ8_BLOCK 64
// Stack room for the transposed codes of one pass: four blocks at M <= 48 (a pass reads each sub-quantizer's
// 1 KB of planes once; at M = 48 the 48 KB of planes do not stay in L1 between passes), one block at M <= 192.
#define VQ_PQ8_PASS_BYTES 12288
// The largest M whose transposed block fits a pass (larger M scan with the scalar kernel and build no planes).
#define VQ_PQ8_PLANES_MAX_M (VQ_PQ8_PASS_BYTES / 64)
// A short last block of at least this many rows is padded with zero codes and scored in the pass like a full
// one; fewer go to the scalar kernel (a padded block costs about as much as this many scalar rows).
#define VQ_PQ8_PAD_MIN 20

// Byte planes of an 8-bit table: byte p of entry k of sub-quantizer j at planes[j * 1024 + p * 256 + k]. One
// `vpermt2b` takes planes p and p + 1 of 32 entries from two registers of 16 floats.
VQ_VBMI static void pq8_planes_vbmi(const float *lut, size_t m, uint8_t *planes) {
    uint8_t i01[64], i23[64];
    for (int e = 0; e < 32; e++) {
        i01[e] = (uint8_t)(4 * e); i01[32 + e] = (uint8_t)(4 * e + 1);
        i23[e] = (uint8_t)(4 * e + 2); i23[32 + e] = (uint8_t)(4 * e + 3);
    }
    const __m512i x01 = _mm512_loadu_si512((const void *)i01), x23 = _mm512_loadu_si512((const void *)i23);
    for (size_t j = 0; j < m; j++) {
        for (int r = 0; r < 4; r++) {
            const float *f = lut + j * 256 + r * 64;
            const __m512i f0 = _mm512_loadu_si512((const void *)f), f1 = _mm512_loadu_si512((const void *)(f + 16));
            const __m512i f2 = _mm512_loadu_si512((const void *)(f + 32)), f3 = _mm512_loadu_si512((const void *)(f + 48));
            const __m512i a = _mm512_permutex2var_epi8(f0, x01, f1), b = _mm512_permutex2var_epi8(f0, x23, f1);
            const __m512i c = _mm512_permutex2var_epi8(f2, x01, f3), d = _mm512_permutex2var_epi8(f2, x23, f3);
            uint8_t *o = planes + j * 1024 + r * 64;
            _mm512_storeu_si512((void *)o, _mm512_shuffle_i64x2(a, c, 0x44));
            _mm512_storeu_si512((void *)(o + 256), _mm512_shuffle_i64x2(a, c, 0xEE));
            _mm512_storeu_si512((void *)(o + 512), _mm512_shuffle_i64x2(b, d, 0x44));
            _mm512_storeu_si512((void *)(o + 768), _mm512_shuffle_i64x2(b, d, 0xEE));
        }
    }
}

// Codes of 64 rows (m a multiple of 16) -> m index vectors of 64 bytes at out + 64 j. Per 16 sub-quantizers: 16
// registers of four rows' 16 code bytes (one row a 128-bit lane), a 16 x 16 byte transpose in each lane (unpack
// stages pairing registers 8, 4, 2, 1 apart), register k then holding sub-quantizer 16 q + k. The stages leave
// register g's rows at byte position rev4(g) of each lane (rev4 reverses 4 bits), so register g loads rows
// 16 (rev4(g) >> 2) + (rev4(g) & 3) + 4 L into lane L: byte lane 16 L + 4 s + i then holds row 16 s + 4 L + i,
// the order in which `pq8_lookup`'s interleave leaves the sums (float 4 L + i of register s).
#define VQ_PQ8_LOAD4(p)                                                                                         \
    _mm512_inserti32x4(                                                                                         \
        _mm512_inserti32x4(_mm512_inserti32x4(_mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(p))),   \
                                              _mm_loadu_si128((const __m128i *)((p) + m4)), 1),                 \
                           _mm_loadu_si128((const __m128i *)((p) + 2 * m4)), 2),                                \
        _mm_loadu_si128((const __m128i *)((p) + 3 * m4)), 3)
VQ_VBMI __attribute__((noinline)) static void pq8_transpose64(const uint8_t *c, size_t m, uint8_t *out) {
    const size_t m4 = 4 * m;
    for (size_t q = 0; q < m / 16; q++) {
        const uint8_t *s = c + 16 * q;
        uint8_t *o = out + q * 1024;
        __m512i r0 = VQ_PQ8_LOAD4(s + 0 * m);
        __m512i r1 = VQ_PQ8_LOAD4(s + 32 * m);
        __m512i r2 = VQ_PQ8_LOAD4(s + 16 * m);
        __m512i r3 = VQ_PQ8_LOAD4(s + 48 * m);
        __m512i r4 = VQ_PQ8_LOAD4(s + 2 * m);
        __m512i r5 = VQ_PQ8_LOAD4(s + 34 * m);
        __m512i r6 = VQ_PQ8_LOAD4(s + 18 * m);
        __m512i r7 = VQ_PQ8_LOAD4(s + 50 * m);
        __m512i r8 = VQ_PQ8_LOAD4(s + 1 * m);
        __m512i r9 = VQ_PQ8_LOAD4(s + 33 * m);
        __m512i r10 = VQ_PQ8_LOAD4(s + 17 * m);
        __m512i r11 = VQ_PQ8_LOAD4(s + 49 * m);
        __m512i r12 = VQ_PQ8_LOAD4(s + 3 * m);
        __m512i r13 = VQ_PQ8_LOAD4(s + 35 * m);
        __m512i r14 = VQ_PQ8_LOAD4(s + 19 * m);
        __m512i r15 = VQ_PQ8_LOAD4(s + 51 * m);
        __m512i s0 = _mm512_unpacklo_epi8(r0, r8), s8 = _mm512_unpackhi_epi8(r0, r8);
        __m512i s1 = _mm512_unpacklo_epi8(r1, r9), s9 = _mm512_unpackhi_epi8(r1, r9);
        __m512i s2 = _mm512_unpacklo_epi8(r2, r10), s10 = _mm512_unpackhi_epi8(r2, r10);
        __m512i s3 = _mm512_unpacklo_epi8(r3, r11), s11 = _mm512_unpackhi_epi8(r3, r11);
        __m512i s4 = _mm512_unpacklo_epi8(r4, r12), s12 = _mm512_unpackhi_epi8(r4, r12);
        __m512i s5 = _mm512_unpacklo_epi8(r5, r13), s13 = _mm512_unpackhi_epi8(r5, r13);
        __m512i s6 = _mm512_unpacklo_epi8(r6, r14), s14 = _mm512_unpackhi_epi8(r6, r14);
        __m512i s7 = _mm512_unpacklo_epi8(r7, r15), s15 = _mm512_unpackhi_epi8(r7, r15);
        __m512i t0 = _mm512_unpacklo_epi16(s0, s4), t4 = _mm512_unpackhi_epi16(s0, s4);
        __m512i t1 = _mm512_unpacklo_epi16(s1, s5), t5 = _mm512_unpackhi_epi16(s1, s5);
        __m512i t2 = _mm512_unpacklo_epi16(s2, s6), t6 = _mm512_unpackhi_epi16(s2, s6);
        __m512i t3 = _mm512_unpacklo_epi16(s3, s7), t7 = _mm512_unpackhi_epi16(s3, s7);
        __m512i t8 = _mm512_unpacklo_epi16(s8, s12), t12 = _mm512_unpackhi_epi16(s8, s12);
        __m512i t9 = _mm512_unpacklo_epi16(s9, s13), t13 = _mm512_unpackhi_epi16(s9, s13);
        __m512i t10 = _mm512_unpacklo_epi16(s10, s14), t14 = _mm512_unpackhi_epi16(s10, s14);
        __m512i t11 = _mm512_unpacklo_epi16(s11, s15), t15 = _mm512_unpackhi_epi16(s11, s15);
        __m512i u0 = _mm512_unpacklo_epi32(t0, t2), u2 = _mm512_unpackhi_epi32(t0, t2);
        __m512i u1 = _mm512_unpacklo_epi32(t1, t3), u3 = _mm512_unpackhi_epi32(t1, t3);
        __m512i u4 = _mm512_unpacklo_epi32(t4, t6), u6 = _mm512_unpackhi_epi32(t4, t6);
        __m512i u5 = _mm512_unpacklo_epi32(t5, t7), u7 = _mm512_unpackhi_epi32(t5, t7);
        __m512i u8 = _mm512_unpacklo_epi32(t8, t10), u10 = _mm512_unpackhi_epi32(t8, t10);
        __m512i u9 = _mm512_unpacklo_epi32(t9, t11), u11 = _mm512_unpackhi_epi32(t9, t11);
        __m512i u12 = _mm512_unpacklo_epi32(t12, t14), u14 = _mm512_unpackhi_epi32(t12, t14);
        __m512i u13 = _mm512_unpacklo_epi32(t13, t15), u15 = _mm512_unpackhi_epi32(t13, t15);
        __m512i v0 = _mm512_unpacklo_epi64(u0, u1), v1 = _mm512_unpackhi_epi64(u0, u1);
        __m512i v2 = _mm512_unpacklo_epi64(u2, u3), v3 = _mm512_unpackhi_epi64(u2, u3);
        __m512i v4 = _mm512_unpacklo_epi64(u4, u5), v5 = _mm512_unpackhi_epi64(u4, u5);
        __m512i v6 = _mm512_unpacklo_epi64(u6, u7), v7 = _mm512_unpackhi_epi64(u6, u7);
        __m512i v8 = _mm512_unpacklo_epi64(u8, u9), v9 = _mm512_unpackhi_epi64(u8, u9);
        __m512i v10 = _mm512_unpacklo_epi64(u10, u11), v11 = _mm512_unpackhi_epi64(u10, u11);
        __m512i v12 = _mm512_unpacklo_epi64(u12, u13), v13 = _mm512_unpackhi_epi64(u12, u13);
        __m512i v14 = _mm512_unpacklo_epi64(u14, u15), v15 = _mm512_unpackhi_epi64(u14, u15);
        _mm512_storeu_si512(o + 0, v0); _mm512_storeu_si512(o + 64, v1); _mm512_storeu_si512(o + 128, v2); _mm512_storeu_si512(o + 192, v3);
        _mm512_storeu_si512(o + 256, v4); _mm512_storeu_si512(o + 320, v5); _mm512_storeu_si512(o + 384, v6); _mm512_storeu_si512(o + 448, v7);
        _mm512_storeu_si512(o + 512, v8); _mm512_storeu_si512(o + 576, v9); _mm512_storeu_si512(o + 640, v10); _mm512_storeu_si512(o + 704, v11);
        _mm512_storeu_si512(o + 768, v12); _mm512_storeu_si512(o + 832, v13); _mm512_storeu_si512(o + 896, v14); _mm512_storeu_si512(o + 960, v15);
    }
}
#undef VQ_PQ8_LOAD4

// Sums of `nb` (1 to 4, a constant at each call) transposed blocks (idx + b * m * 64) against the byte planes:
// each sub-quantizer's 16 plane registers are loaded once for the pass. Writes 64 * nb sums to out in row order.
VQ_VBMI VQ_INLINE void pq8_lookup_body(const uint8_t *planes, size_t m, const uint8_t *idx, const int nb, float *out) {
    __m512 acc[16];
    for (int b = 0; b < 4 * nb; b++) acc[b] = _mm512_setzero_ps();
    for (size_t j = 0; j < m; j++) {
        const uint8_t *t = planes + j * 1024;
        __m512i tab[16];
        for (int x = 0; x < 16; x++) tab[x] = _mm512_loadu_si512((const void *)(t + 64 * x));
        for (int b = 0; b < nb; b++) {
            const __m512i ix = _mm512_loadu_si512((const void *)(idx + ((size_t)b * m + j) * 64));
            const __mmask64 hi = _mm512_movepi8_mask(ix);
            // Byte p of each code's entry: entries 0-127 from one pair of registers, 128-255 from the other.
            const __m512i p0 = _mm512_mask_blend_epi8(hi, _mm512_permutex2var_epi8(tab[0], ix, tab[1]),
                                                      _mm512_permutex2var_epi8(tab[2], ix, tab[3]));
            const __m512i p1 = _mm512_mask_blend_epi8(hi, _mm512_permutex2var_epi8(tab[4], ix, tab[5]),
                                                      _mm512_permutex2var_epi8(tab[6], ix, tab[7]));
            const __m512i p2 = _mm512_mask_blend_epi8(hi, _mm512_permutex2var_epi8(tab[8], ix, tab[9]),
                                                      _mm512_permutex2var_epi8(tab[10], ix, tab[11]));
            const __m512i p3 = _mm512_mask_blend_epi8(hi, _mm512_permutex2var_epi8(tab[12], ix, tab[13]),
                                                      _mm512_permutex2var_epi8(tab[14], ix, tab[15]));
            // Interleaved back into floats: register s, 128-bit lane L, float i is byte lane 16 L + 4 s + i,
            // row 16 s + 4 L + i (see `pq8_transpose64`), so the sums come out in row order.
            const __m512i l01 = _mm512_unpacklo_epi8(p0, p1), h01 = _mm512_unpackhi_epi8(p0, p1);
            const __m512i l23 = _mm512_unpacklo_epi8(p2, p3), h23 = _mm512_unpackhi_epi8(p2, p3);
            acc[4 * b] = _mm512_add_ps(acc[4 * b], _mm512_castsi512_ps(_mm512_unpacklo_epi16(l01, l23)));
            acc[4 * b + 1] = _mm512_add_ps(acc[4 * b + 1], _mm512_castsi512_ps(_mm512_unpackhi_epi16(l01, l23)));
            acc[4 * b + 2] = _mm512_add_ps(acc[4 * b + 2], _mm512_castsi512_ps(_mm512_unpacklo_epi16(h01, h23)));
            acc[4 * b + 3] = _mm512_add_ps(acc[4 * b + 3], _mm512_castsi512_ps(_mm512_unpackhi_epi16(h01, h23)));
        }
    }
    for (int b = 0; b < 4 * nb; b++) _mm512_storeu_ps(out + 16 * b, acc[b]);
}
// One function per block count, so each gets its own register allocation (inlined into one switch, the
// four bodies spilled their accumulators).
VQ_VBMI __attribute__((noinline)) static void pq8_lookup1(const uint8_t *p, size_t m, const uint8_t *idx, float *out) {
    pq8_lookup_body(p, m, idx, 1, out);
}
VQ_VBMI __attribute__((noinline)) static void pq8_lookup2(const uint8_t *p, size_t m, const uint8_t *idx, float *out) {
    pq8_lookup_body(p, m, idx, 2, out);
}
VQ_VBMI __attribute__((noinline)) static void pq8_lookup3(const uint8_t *p, size_t m, const uint8_t *idx, float *out) {
    pq8_lookup_body(p, m, idx, 3, out);
}
VQ_VBMI __attribute__((noinline)) static void pq8_lookup4(const uint8_t *p, size_t m, const uint8_t *idx, float *out) {
    pq8_lookup_body(p, m, idx, 4, out);
}

// Prefetches the cache lines of rows [first, first + count) of 8-bit codes (m bytes a row). The transpose is the
// first to touch a list's codes (memory-mapped, usually out of L1/L2): in a store search it took twice the time
// of the look-ups until the codes of the pass after were requested ahead.
VQ_INLINE void pq8_prefetch_rows(const uint8_t *codes, size_t m, size_t first, size_t count) {
    if (count == 0) return;
    const char *p = (const char *)(codes + first * m), *end = (const char *)(codes + (first + count) * m);
    for (; p < end; p += 64) __builtin_prefetch(p, 0, 3);
    __builtin_prefetch(end - 1, 0, 3);
}

VQ_VBMI static void pq8_scan_planes_vbmi(const float *lut, const uint8_t *planes, size_t m, const uint8_t *codes,
                                         size_t n, float *out) {
    if (m == 0 || m % 16 != 0 || m > VQ_PQ8_PLANES_MAX_M) { vq_pq8_scan(lut, m, codes, n, out); return; }
    uint8_t idx[VQ_PQ8_PASS_BYTES] __attribute__((aligned(64)));
    float sums[4 * VQ_PQ8_BLOCK] __attribute__((aligned(64)));
    size_t cap = VQ_PQ8_PASS_BYTES / (m * VQ_PQ8_BLOCK);
    if (cap > 4) cap = 4;
    size_t i = 0;
    pq8_prefetch_rows(codes, m, 0, n < cap * VQ_PQ8_BLOCK ? n : cap * VQ_PQ8_BLOCK);
    while (i < n) {
        // One pass: up to `cap` blocks, the last one padded with zero codes when fewer than 64 rows are left
        // (and at least VQ_PQ8_PAD_MIN; nothing is read past the last row).
        size_t nb = 0, rows = 0;
        while (nb < cap && i + rows < n) {
            size_t left = n - i - rows;
            if (left >= VQ_PQ8_BLOCK) {
                pq8_transpose64(codes + (i + rows) * m, m, idx + nb * m * VQ_PQ8_BLOCK);
                rows += VQ_PQ8_BLOCK;
            } else if (left >= VQ_PQ8_PAD_MIN) {
                uint8_t pad[VQ_PQ8_BLOCK * 256] __attribute__((aligned(64)));
                memcpy(pad, codes + (i + rows) * m, left * m);
                memset(pad + left * m, 0, (VQ_PQ8_BLOCK - left) * m);
                pq8_transpose64(pad, m, idx + nb * m * VQ_PQ8_BLOCK);
                rows += left;
            } else {
                break;
            }
            nb++;
        }
        if (nb == 0) break;
        // The next pass's codes load while this pass's look-ups run.
        size_t next = i + rows, ahead = n - next < cap * VQ_PQ8_BLOCK ? n - next : cap * VQ_PQ8_BLOCK;
        pq8_prefetch_rows(codes, m, next, ahead);
        float *dst = rows == nb * VQ_PQ8_BLOCK ? out + i : sums;
        switch (nb) {
        case 4: pq8_lookup4(planes, m, idx, dst); break;
        case 3: pq8_lookup3(planes, m, idx, dst); break;
        case 2: pq8_lookup2(planes, m, idx, dst); break;
        default: pq8_lookup1(planes, m, idx, dst); break;
        }
        if (dst == sums) memcpy(out + i, sums, rows * sizeof(float));
        i += rows;
    }
    if (i < n) vq_pq8_scan(lut, m, codes + i * m, n - i, out + i);
}
#undef VQ_VBMI
#endif

void vq_pq4_scan(const float *lut, size_t m, const uint8_t *codes, size_t n, float *out) {
    size_t bytes = (m + 1) / 2, pairs = m / 2;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *c = codes + i * bytes;
        float s0 = 0, s1 = 0;
        for (size_t p = 0; p < pairs; p++) {
            s0 += lut[(2 * p) * 16 + (c[p] & 15)];
            s1 += lut[(2 * p + 1) * 16 + (c[p] >> 4)];
        }
        if (m & 1) s0 += lut[(m - 1) * 16 + (c[pairs] & 15)];
        out[i] = s0 + s1;
    }
}

// ---------------------------------------------------------------- fast scan, portable reference
// Block layout: for sub-quantizer pair p (j = 2p, 2p+1) the block holds 32 bytes at p*32; byte h*16 + i
// carries code_{2p+h} of row i in its low nibble and of row i+16 in its high nibble.
void vq_fs4_scan_reference(const uint8_t *blocks, size_t nblocks, size_t mpad, const uint8_t *lut, uint16_t *out) {
    size_t pairs = mpad / 2;
    for (size_t b = 0; b < nblocks; b++) {
        const uint8_t *blk = blocks + b * pairs * 32;
        for (size_t r = 0; r < 32; r++) {
            uint32_t s = 0;
            for (size_t j = 0; j < mpad; j++) {
                uint8_t byte = blk[(j / 2) * 32 + (j % 2) * 16 + (r % 16)];
                uint8_t code = r < 16 ? (byte & 15) : (byte >> 4);
                s += lut[j * 16 + code];
            }
            out[b * 32 + r] = (uint16_t)s;
        }
    }
}

// ---------------------------------------------------------------- fast-scan candidate filter
// Appends the positions i in [start, n) with v[i] <= limit to idx (branch-free); returns how many.
VQ_INLINE size_t select_le_tail(const uint16_t *v, size_t start, size_t n, uint16_t limit, uint32_t *idx) {
    size_t c = 0;
    for (size_t i = start; i < n; i++) {
        idx[c] = (uint32_t)i;  // written unconditionally, kept only when the test passes
        c += v[i] <= limit;
    }
    return c;
}
size_t vq_u16_select_le_reference(const uint16_t *v, size_t n, uint16_t limit, uint32_t *idx) {
    return select_le_tail(v, 0, n, limit, idx);
}

// Float candidate filter: positions i in [start, n) with v[i] + bias <= limit (le) or >= limit, branch-free.
// The comparisons are ordered (false for NaN), so a NaN sum is never selected.
VQ_INLINE size_t f32_select_tail(const float *v, size_t start, size_t n, float bias, float limit, int le,
                                 uint32_t *idx) {
    size_t c = 0;
    for (size_t i = start; i < n; i++) {
        float s = v[i] + bias;
        idx[c] = (uint32_t)i;
        c += le ? (s <= limit) : (s >= limit);
    }
    return c;
}
size_t vq_f32_select_reference(const float *v, size_t n, float bias, float limit, int le, uint32_t *idx) {
    return f32_select_tail(v, 0, n, bias, limit, le, idx);
}

// ---------------------------------------------------------------- top-k selection of 64-bit keys
// Quickselect with a median-of-three pivot and a branch-free Lomuto partition (the comparison feeds an add,
// not a jump: keys arrive in random order, so a branch would mispredict about every other key); ranges of
// at most 16 keys are finished by insertion sort, largest first.
void vq_u64_select_largest(uint64_t *p, size_t n, size_t k) {
    if (k == 0 || k >= n) return;
    size_t lo = 0, hi = n;  // the k-th largest lies in p[lo, hi); p[0, lo) are larger than p[lo, hi)
    while (hi - lo > 16) {
        size_t mid = lo + (hi - lo) / 2, last = hi - 1;
        uint64_t a = p[lo], b = p[mid], c = p[last];
        size_t m = a < b ? (b < c ? mid : (a < c ? last : lo)) : (a < c ? lo : (b < c ? last : mid));
        uint64_t pivot = p[m];
        p[m] = p[last];
        p[last] = pivot;
        size_t store = lo;
        for (size_t i = lo; i < last; i++) {
            uint64_t v = p[i];
            p[i] = p[store];
            p[store] = v;
            store += (size_t)(v > pivot);
        }
        p[last] = p[store];
        p[store] = pivot;  // p[lo, store) > pivot = p[store] > p[store + 1, hi)
        if (store == k || store + 1 == k) return;
        if (store > k) hi = store;
        else lo = store + 1;
    }
    for (size_t i = lo + 1; i < hi; i++) {
        uint64_t v = p[i];
        size_t j = i;
        while (j > lo && p[j - 1] < v) {
            p[j] = p[j - 1];
            j--;
        }
        p[j] = v;
    }
}

// ---------------------------------------------------------------- PQ look-up tables
// Vectorised across centroids (the transposed layout makes the k loop contiguous), one broadcast per component.
// Every entry is summed over the dsub components in order (component 0 first) in a register and stored once,
// times `scale` (1, or -2 for the residual L2 decomposition: a power of two, so the product is exact and equal
// to scaling the stored table afterwards). Several queries share one pass over the codebooks: each block of
// centroids (dsub rows of 16 or 64 floats, 2 KB for dsub = 8) is read from L1 for every query of the batch
// instead of streaming all M x ksub x dsub floats (384 KB for d = 384, 8 bits) from L2 once per query.
static inline __attribute__((always_inline)) void pq_table_body(const float *q, size_t nq, size_t qs, const float *bt,
                                                                size_t m, size_t ksub, size_t dsub, int l2,
                                                                float scale, float *out) {
    for (size_t j = 0; j < m; j++) {
        for (size_t k0 = 0; k0 + 16 <= ksub; k0 += 16) {
            for (size_t g = 0; g < nq; g++) {
                const float *qj = q + g * qs + j * dsub;
                float acc[16] = {0};
                for (size_t t = 0; t < dsub; t++) {
                    const float *row = bt + (j * dsub + t) * ksub + k0;
                    float x = qj[t];
                    if (l2) {
                        for (size_t c = 0; c < 16; c++) { float d = x - row[c]; acc[c] += d * d; }
                    } else {
                        for (size_t c = 0; c < 16; c++) acc[c] += x * row[c];
                    }
                }
                float *o = out + g * m * ksub + j * ksub + k0;
                for (size_t c = 0; c < 16; c++) o[c] = acc[c] * scale;
            }
        }
    }
}
static void pq_tables_generic(const float *q, size_t nq, size_t qs, const float *bt, size_t m, size_t ksub,
                              size_t dsub, int l2, float scale, float *out) {
    pq_table_body(q, nq, qs, bt, m, ksub, dsub, l2, scale, out);
}
#ifdef VQ_X86
// Explicit 8-float kernels: 64 table entries (eight ymm accumulators) per pass over the dsub components, one
// broadcast of q per component. The compiler's version of pq_table_body kept one 16-entry accumulator whose
// dsub fused multiply-adds formed one dependency chain (latency-bound: ~40% of an 8-bit IVF-PQ query on
// docs60k at nprobe 1); eight independent chains keep both FMA pipes busy. Each entry is still summed in
// component order as fma(x, c, acc) or fma(x - c, x - c, acc), exactly what the contracted scalar loop
// computes, so the tables are unchanged bit for bit (QuantKernelVariantTests checks the fused sums exactly).
// ksub a multiple of 64: the 64 entries are centroids k0..k0+63 of one sub-quantizer. ksub = 16: four
// sub-quantizers, two accumulators each, with their own query components.
#define VQ_PQ_TABLE_STEP(acc, xv, rowp)                                                                        \
    do {                                                                                                       \
        __m256 y_ = _mm256_loadu_ps(rowp);                                                                     \
        if (l2) { y_ = _mm256_sub_ps((xv), y_); (acc) = _mm256_fmadd_ps(y_, y_, (acc)); }                    \
        else (acc) = _mm256_fmadd_ps((xv), y_, (acc));                                                        \
    } while (0)
#define VQ_PQ_TABLE_STORE8(o)                                                                                  \
    do {                                                                                                       \
        _mm256_storeu_ps((o), _mm256_mul_ps(a0, sc)); _mm256_storeu_ps((o) + 8, _mm256_mul_ps(a1, sc));       \
        _mm256_storeu_ps((o) + 16, _mm256_mul_ps(a2, sc)); _mm256_storeu_ps((o) + 24, _mm256_mul_ps(a3, sc)); \
        _mm256_storeu_ps((o) + 32, _mm256_mul_ps(a4, sc)); _mm256_storeu_ps((o) + 40, _mm256_mul_ps(a5, sc)); \
        _mm256_storeu_ps((o) + 48, _mm256_mul_ps(a6, sc)); _mm256_storeu_ps((o) + 56, _mm256_mul_ps(a7, sc)); \
    } while (0)
__attribute__((target("avx2,fma"))) VQ_INLINE void pq_tables_avx2_body(const float *q, size_t nq, size_t qs,
                                                                       const float *bt, size_t m, size_t ksub,
                                                                       size_t dsub, const int l2, float scale,
                                                                       float *out) {
    const __m256 sc = _mm256_set1_ps(scale);
    const size_t size = m * ksub;
    if (ksub % 64 == 0) {
        for (size_t j = 0; j < m; j++) {
            for (size_t k0 = 0; k0 < ksub; k0 += 64) {
                for (size_t g = 0; g < nq; g++) {
                    const float *qj = q + g * qs + j * dsub;
                    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
                    for (size_t t = 0; t < dsub; t++) {
                        const float *row = bt + (j * dsub + t) * ksub + k0;
                        const __m256 x = _mm256_set1_ps(qj[t]);
                        VQ_PQ_TABLE_STEP(a0, x, row);
                        VQ_PQ_TABLE_STEP(a1, x, row + 8);
                        VQ_PQ_TABLE_STEP(a2, x, row + 16);
                        VQ_PQ_TABLE_STEP(a3, x, row + 24);
                        VQ_PQ_TABLE_STEP(a4, x, row + 32);
                        VQ_PQ_TABLE_STEP(a5, x, row + 40);
                        VQ_PQ_TABLE_STEP(a6, x, row + 48);
                        VQ_PQ_TABLE_STEP(a7, x, row + 56);
                    }
                    VQ_PQ_TABLE_STORE8(out + g * size + j * ksub + k0);
                }
            }
        }
        return;
    }
    if (ksub != 16) { pq_table_body(q, nq, qs, bt, m, ksub, dsub, l2, scale, out); return; }
    size_t j = 0;
    for (; j + 4 <= m; j += 4) {
        for (size_t g = 0; g < nq; g++) {
            const float *qg = q + g * qs;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
            for (size_t t = 0; t < dsub; t++) {
                const __m256 x0 = _mm256_set1_ps(qg[j * dsub + t]), x1 = _mm256_set1_ps(qg[(j + 1) * dsub + t]);
                const __m256 x2 = _mm256_set1_ps(qg[(j + 2) * dsub + t]), x3 = _mm256_set1_ps(qg[(j + 3) * dsub + t]);
                const float *r0 = bt + (j * dsub + t) * 16, *r1 = r0 + dsub * 16, *r2 = r1 + dsub * 16,
                            *r3 = r2 + dsub * 16;
                VQ_PQ_TABLE_STEP(a0, x0, r0);
                VQ_PQ_TABLE_STEP(a1, x0, r0 + 8);
                VQ_PQ_TABLE_STEP(a2, x1, r1);
                VQ_PQ_TABLE_STEP(a3, x1, r1 + 8);
                VQ_PQ_TABLE_STEP(a4, x2, r2);
                VQ_PQ_TABLE_STEP(a5, x2, r2 + 8);
                VQ_PQ_TABLE_STEP(a6, x3, r3);
                VQ_PQ_TABLE_STEP(a7, x3, r3 + 8);
            }
            VQ_PQ_TABLE_STORE8(out + g * size + j * 16);
        }
    }
    for (; j < m; j++) {
        for (size_t g = 0; g < nq; g++) {
            __m256 a0 = _mm256_setzero_ps(), a1 = a0;
            for (size_t t = 0; t < dsub; t++) {
                const __m256 x = _mm256_set1_ps(q[g * qs + j * dsub + t]);
                const float *r = bt + (j * dsub + t) * 16;
                VQ_PQ_TABLE_STEP(a0, x, r);
                VQ_PQ_TABLE_STEP(a1, x, r + 8);
            }
            _mm256_storeu_ps(out + g * size + j * 16, _mm256_mul_ps(a0, sc));
            _mm256_storeu_ps(out + g * size + j * 16 + 8, _mm256_mul_ps(a1, sc));
        }
    }
}
#undef VQ_PQ_TABLE_STEP
#undef VQ_PQ_TABLE_STORE8
__attribute__((target("avx2,fma"))) static void pq_tables_avx2(const float *q, size_t nq, size_t qs, const float *bt,
                                                              size_t m, size_t ksub, size_t dsub, int l2, float scale,
                                                              float *out) {
    if (l2) pq_tables_avx2_body(q, nq, qs, bt, m, ksub, dsub, 1, scale, out);
    else pq_tables_avx2_body(q, nq, qs, bt, m, ksub, dsub, 0, scale, out);
}
// The AVX-512 variant: 8-bit codebooks (ksub a multiple of 128) with 16-float registers, 128 entries (eight zmm
// accumulators) per pass over the dsub components, each entry the same fused chain in component order as above
// (so the same bits; QuantKernelVariantTests compares the variants). Half the instructions of the 8-float kernel
// for the same loads. 4-bit codebooks (ksub 16) run the 8-float kernel (AVX-512F implies AVX2 and FMA).
#define VQ_PQ_TABLE_STEP16(acc, xv, rowp)                                                                      \
    do {                                                                                                       \
        __m512 y_ = _mm512_loadu_ps(rowp);                                                                     \
        if (l2) { y_ = _mm512_sub_ps((xv), y_); (acc) = _mm512_fmadd_ps(y_, y_, (acc)); }                    \
        else (acc) = _mm512_fmadd_ps((xv), y_, (acc));                                                        \
    } while (0)
__attribute__((target("avx512f"))) VQ_INLINE void pq_tables_avx512_body(const float *q, size_t nq, size_t qs,
                                                                        const float *bt, size_t m, size_t ksub,
                                                                        size_t dsub, const int l2, float scale,
                                                                        float *out) {
    const __m512 sc = _mm512_set1_ps(scale);
    const size_t size = m * ksub;
    for (size_t j = 0; j < m; j++) {
        for (size_t k0 = 0; k0 < ksub; k0 += 128) {
            for (size_t g = 0; g < nq; g++) {
                const float *qj = q + g * qs + j * dsub;
                __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
                for (size_t t = 0; t < dsub; t++) {
                    const float *row = bt + (j * dsub + t) * ksub + k0;
                    const __m512 x = _mm512_set1_ps(qj[t]);
                    VQ_PQ_TABLE_STEP16(a0, x, row);
                    VQ_PQ_TABLE_STEP16(a1, x, row + 16);
                    VQ_PQ_TABLE_STEP16(a2, x, row + 32);
                    VQ_PQ_TABLE_STEP16(a3, x, row + 48);
                    VQ_PQ_TABLE_STEP16(a4, x, row + 64);
                    VQ_PQ_TABLE_STEP16(a5, x, row + 80);
                    VQ_PQ_TABLE_STEP16(a6, x, row + 96);
                    VQ_PQ_TABLE_STEP16(a7, x, row + 112);
                }
                float *o = out + g * size + j * ksub + k0;
                _mm512_storeu_ps(o, _mm512_mul_ps(a0, sc)); _mm512_storeu_ps(o + 16, _mm512_mul_ps(a1, sc));
                _mm512_storeu_ps(o + 32, _mm512_mul_ps(a2, sc)); _mm512_storeu_ps(o + 48, _mm512_mul_ps(a3, sc));
                _mm512_storeu_ps(o + 64, _mm512_mul_ps(a4, sc)); _mm512_storeu_ps(o + 80, _mm512_mul_ps(a5, sc));
                _mm512_storeu_ps(o + 96, _mm512_mul_ps(a6, sc)); _mm512_storeu_ps(o + 112, _mm512_mul_ps(a7, sc));
            }
        }
    }
}
#undef VQ_PQ_TABLE_STEP16
__attribute__((target("avx512f"))) static void pq_tables_avx512(const float *q, size_t nq, size_t qs, const float *bt,
                                                               size_t m, size_t ksub, size_t dsub, int l2, float scale,
                                                               float *out) {
    if (ksub % 128 == 0) {
        if (l2) pq_tables_avx512_body(q, nq, qs, bt, m, ksub, dsub, 1, scale, out);
        else pq_tables_avx512_body(q, nq, qs, bt, m, ksub, dsub, 0, scale, out);
        return;
    }
    if (l2) pq_tables_avx2_body(q, nq, qs, bt, m, ksub, dsub, 1, scale, out);
    else pq_tables_avx2_body(q, nq, qs, bt, m, ksub, dsub, 0, scale, out);
}
#endif

// ---------------------------------------------------------------- fast-scan table quantization
// Written as plain loops over 16-entry rows so the compiler vectorizes them for each target below. `has_b` is
// a constant at every call (each wrapper calls the body once with b and once without), so the `b` test folds
// away: tested per entry at run time it kept the loops scalar (6x slower without b, 2 us for M = 32).
static inline __attribute__((always_inline)) void quantize_table_body(const float *a, const float *b, size_t m,
                                                                      float sign, uint8_t *out, float *out_scale,
                                                                      float *out_bias, const int has_b) {
    float range = 0, total = 0;
    float mins[256];
    for (size_t j = 0; j < m && j < 256; j++) {
        float lo = 3.4e38f, hi = -3.4e38f;
        for (int c = 0; c < 16; c++) {
            float v = sign * (a[j * 16 + c] + (has_b ? b[j * 16 + c] : 0.0f));
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        mins[j] = lo;
        total += lo;
        range = hi - lo > range ? hi - lo : range;
    }
    float s = (range > 0 && range < 3.4e38f) ? 255.0f / range : 1.0f;
    for (size_t j = 0; j < m && j < 256; j++) {
        for (int c = 0; c < 16; c++) {
            float v = (sign * (a[j * 16 + c] + (has_b ? b[j * 16 + c] : 0.0f)) - mins[j]) * s + 0.5f;
            v = v > 0.0f ? v : 0.0f;  // also maps NaN to 0
            v = v < 255.0f ? v : 255.0f;
            out[j * 16 + c] = (uint8_t)(int)v;
        }
    }
    *out_scale = s;
    *out_bias = total;
}
#define QUANTIZE_TABLE_DISPATCH                                                                                   \
    if (b) quantize_table_body(a, b, m, sign, out, sc, bi, 1);                                                    \
    else quantize_table_body(a, NULL, m, sign, out, sc, bi, 0);
static void quantize_table_generic(const float *a, const float *b, size_t m, float sign, uint8_t *out, float *sc,
                                   float *bi) {
    QUANTIZE_TABLE_DISPATCH
}
#ifdef VQ_X86
__attribute__((target("avx512f,avx512bw"))) static void quantize_table_avx512(const float *a, const float *b, size_t m,
                                                                           float sign, uint8_t *out, float *sc,
                                                                           float *bi) {
    QUANTIZE_TABLE_DISPATCH
}
__attribute__((target("avx2,fma"))) static void quantize_table_avx2(const float *a, const float *b, size_t m, float sign,
                                                                   uint8_t *out, float *sc, float *bi) {
    QUANTIZE_TABLE_DISPATCH
}
#endif

// ---------------------------------------------------------------- int8, scalar loops
// Adds elements [i, n) to `s`: the tail of the portable reference and of every SIMD kernel below. Always
// inlined, so in a SIMD kernel it compiles for its target (FMA contraction included).
VQ_INLINE float dot_f32_i8_tail(float s, const float *q, const int8_t *c, size_t i, size_t n) {
    for (; i < n; i++) s += q[i] * c[i];
    return s;
}

// ---------------------------------------------------------------- int8, portable reference
float vq_dot_f32_i8_reference(const float *q, const int8_t *c, size_t n) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += q[i] * c[i]; s1 += q[i + 1] * c[i + 1]; s2 += q[i + 2] * c[i + 2]; s3 += q[i + 3] * c[i + 3];
    }
    s0 = dot_f32_i8_tail(s0, q, c, i, n);
    return (s0 + s1) + (s2 + s3);
}

// ---------------------------------------------------------------- re-ranking rows, portable
void vq_score_rows_reference(const float *q, const float *const *rows, size_t n, size_t d, int l2, float *out) {
    for (size_t i = 0; i < n; i++) {
        const float *r = rows[i];
        float s = 0;
        if (l2) {
            for (size_t t = 0; t < d; t++) { float x = q[t] - r[t]; s += x * x; }
        } else {
            for (size_t t = 0; t < d; t++) s += q[t] * r[t];
        }
        out[i] = s;
    }
}

// Rows ahead of the group being scored whose lines are prefetched (two groups of four).
#define VQ_ROWS_AHEAD 8
// Prefetches the whole of a d-float row (its last line too when the row is not line-aligned).
VQ_INLINE void prefetch_row(const float *r, size_t d) {
    const char *c = (const char *)r;
    for (size_t o = 0; o < d * 4; o += 64) __builtin_prefetch(c + o, 0, 3);
    __builtin_prefetch(c + d * 4 - 1, 0, 3);
}

#ifdef VQ_X86
// ---------------------------------------------------------------- re-ranking rows, AVX-512 / AVX2
// One 16-float (AVX-512) or 8-float (AVX2) chunk of four rows per step, each step also prefetching the same
// chunk of the four rows VQ_ROWS_AHEAD ahead (the last row repeated near the end: a harmless re-prefetch).
__attribute__((target("avx512f"))) VQ_INLINE void score_rows_avx512_body(const float *q, const float *const *rows,
                                                                         size_t n, size_t d, const int l2,
                                                                         float *out) {
    const size_t full = d / 16;
    const __mmask16 tail = (__mmask16)((1u << (d % 16)) - 1);
    for (size_t j = 0; j < n && j < VQ_ROWS_AHEAD; j++) prefetch_row(rows[j], d);
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float *r0 = rows[i], *r1 = rows[i + 1], *r2 = rows[i + 2], *r3 = rows[i + 3];
        size_t a = i + VQ_ROWS_AHEAD;
        const char *p0 = (const char *)rows[a < n ? a : n - 1], *p1 = (const char *)rows[a + 1 < n ? a + 1 : n - 1];
        const char *p2 = (const char *)rows[a + 2 < n ? a + 2 : n - 1], *p3 = (const char *)rows[a + 3 < n ? a + 3 : n - 1];
        __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        for (size_t c = 0; c < full; c++) {
            __m512 x = _mm512_loadu_ps(q + 16 * c);
            __m512 y0 = _mm512_loadu_ps(r0 + 16 * c), y1 = _mm512_loadu_ps(r1 + 16 * c);
            __m512 y2 = _mm512_loadu_ps(r2 + 16 * c), y3 = _mm512_loadu_ps(r3 + 16 * c);
            __builtin_prefetch(p0 + 64 * c, 0, 3);
            __builtin_prefetch(p1 + 64 * c, 0, 3);
            __builtin_prefetch(p2 + 64 * c, 0, 3);
            __builtin_prefetch(p3 + 64 * c, 0, 3);
            if (l2) {
                y0 = _mm512_sub_ps(x, y0); y1 = _mm512_sub_ps(x, y1); y2 = _mm512_sub_ps(x, y2); y3 = _mm512_sub_ps(x, y3);
                s0 = _mm512_fmadd_ps(y0, y0, s0); s1 = _mm512_fmadd_ps(y1, y1, s1);
                s2 = _mm512_fmadd_ps(y2, y2, s2); s3 = _mm512_fmadd_ps(y3, y3, s3);
            } else {
                s0 = _mm512_fmadd_ps(x, y0, s0); s1 = _mm512_fmadd_ps(x, y1, s1);
                s2 = _mm512_fmadd_ps(x, y2, s2); s3 = _mm512_fmadd_ps(x, y3, s3);
            }
        }
        __builtin_prefetch(p0 + d * 4 - 1, 0, 3);
        __builtin_prefetch(p1 + d * 4 - 1, 0, 3);
        __builtin_prefetch(p2 + d * 4 - 1, 0, 3);
        __builtin_prefetch(p3 + d * 4 - 1, 0, 3);
        if (tail) {
            size_t o = full * 16;
            __m512 x = _mm512_maskz_loadu_ps(tail, q + o);
            __m512 y0 = _mm512_maskz_loadu_ps(tail, r0 + o), y1 = _mm512_maskz_loadu_ps(tail, r1 + o);
            __m512 y2 = _mm512_maskz_loadu_ps(tail, r2 + o), y3 = _mm512_maskz_loadu_ps(tail, r3 + o);
            if (l2) {
                y0 = _mm512_sub_ps(x, y0); y1 = _mm512_sub_ps(x, y1); y2 = _mm512_sub_ps(x, y2); y3 = _mm512_sub_ps(x, y3);
                s0 = _mm512_fmadd_ps(y0, y0, s0); s1 = _mm512_fmadd_ps(y1, y1, s1);
                s2 = _mm512_fmadd_ps(y2, y2, s2); s3 = _mm512_fmadd_ps(y3, y3, s3);
            } else {
                s0 = _mm512_fmadd_ps(x, y0, s0); s1 = _mm512_fmadd_ps(x, y1, s1);
                s2 = _mm512_fmadd_ps(x, y2, s2); s3 = _mm512_fmadd_ps(x, y3, s3);
            }
        }
        out[i] = _mm512_reduce_add_ps(s0);
        out[i + 1] = _mm512_reduce_add_ps(s1);
        out[i + 2] = _mm512_reduce_add_ps(s2);
        out[i + 3] = _mm512_reduce_add_ps(s3);
    }
    for (; i < n; i++) {
        const float *r = rows[i];
        __m512 s = _mm512_setzero_ps();
        for (size_t c = 0; c < full; c++) {
            __m512 x = _mm512_loadu_ps(q + 16 * c), y = _mm512_loadu_ps(r + 16 * c);
            if (l2) { y = _mm512_sub_ps(x, y); s = _mm512_fmadd_ps(y, y, s); } else s = _mm512_fmadd_ps(x, y, s);
        }
        if (tail) {
            __m512 x = _mm512_maskz_loadu_ps(tail, q + full * 16), y = _mm512_maskz_loadu_ps(tail, r + full * 16);
            if (l2) { y = _mm512_sub_ps(x, y); s = _mm512_fmadd_ps(y, y, s); } else s = _mm512_fmadd_ps(x, y, s);
        }
        out[i] = _mm512_reduce_add_ps(s);
    }
}
__attribute__((target("avx512f"))) static void score_rows_avx512(const float *q, const float *const *rows, size_t n,
                                                                 size_t d, int l2, float *out) {
    if (l2) score_rows_avx512_body(q, rows, n, d, 1, out);
    else score_rows_avx512_body(q, rows, n, d, 0, out);
}

// AVX2: the same four-row scheme over 8-float chunks; the d % 8 tail is summed in scalar code.
__attribute__((target("avx2,fma"))) VQ_INLINE float score_tail(float s, const float *q, const float *r, size_t from,
                                                               size_t d, const int l2) {
    for (size_t t = from; t < d; t++) {
        float x = q[t] - r[t];
        s += l2 ? x * x : q[t] * r[t];
    }
    return s;
}
__attribute__((target("avx2,fma"))) static inline float hsum256_r(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}
__attribute__((target("avx2,fma"))) VQ_INLINE void score_rows_avx2_body(const float *q, const float *const *rows,
                                                                        size_t n, size_t d, const int l2,
                                                                        float *out) {
    const size_t full = d / 8;
    for (size_t j = 0; j < n && j < VQ_ROWS_AHEAD; j++) prefetch_row(rows[j], d);
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float *r[4] = {rows[i], rows[i + 1], rows[i + 2], rows[i + 3]};
        const char *p[4];
        for (int k = 0; k < 4; k++) {
            size_t a = i + VQ_ROWS_AHEAD + (size_t)k;
            p[k] = (const char *)rows[a < n ? a : n - 1];
        }
        __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        for (size_t c = 0; c < full; c++) {
            __m256 x = _mm256_loadu_ps(q + 8 * c);
            __m256 y0 = _mm256_loadu_ps(r[0] + 8 * c), y1 = _mm256_loadu_ps(r[1] + 8 * c);
            __m256 y2 = _mm256_loadu_ps(r[2] + 8 * c), y3 = _mm256_loadu_ps(r[3] + 8 * c);
            if ((c & 1) == 0)
                for (int k = 0; k < 4; k++) __builtin_prefetch(p[k] + 32 * c, 0, 3);
            if (l2) {
                y0 = _mm256_sub_ps(x, y0); y1 = _mm256_sub_ps(x, y1); y2 = _mm256_sub_ps(x, y2); y3 = _mm256_sub_ps(x, y3);
                s0 = _mm256_fmadd_ps(y0, y0, s0); s1 = _mm256_fmadd_ps(y1, y1, s1);
                s2 = _mm256_fmadd_ps(y2, y2, s2); s3 = _mm256_fmadd_ps(y3, y3, s3);
            } else {
                s0 = _mm256_fmadd_ps(x, y0, s0); s1 = _mm256_fmadd_ps(x, y1, s1);
                s2 = _mm256_fmadd_ps(x, y2, s2); s3 = _mm256_fmadd_ps(x, y3, s3);
            }
        }
        for (int k = 0; k < 4; k++) __builtin_prefetch(p[k] + d * 4 - 1, 0, 3);
        out[i] = score_tail(hsum256_r(s0), q, r[0], full * 8, d, l2);
        out[i + 1] = score_tail(hsum256_r(s1), q, r[1], full * 8, d, l2);
        out[i + 2] = score_tail(hsum256_r(s2), q, r[2], full * 8, d, l2);
        out[i + 3] = score_tail(hsum256_r(s3), q, r[3], full * 8, d, l2);
    }
    for (; i < n; i++) {
        __m256 s = _mm256_setzero_ps();
        for (size_t c = 0; c < full; c++) {
            __m256 x = _mm256_loadu_ps(q + 8 * c), y = _mm256_loadu_ps(rows[i] + 8 * c);
            if (l2) { y = _mm256_sub_ps(x, y); s = _mm256_fmadd_ps(y, y, s); } else s = _mm256_fmadd_ps(x, y, s);
        }
        out[i] = score_tail(hsum256_r(s), q, rows[i], full * 8, d, l2);
    }
}
__attribute__((target("avx2,fma"))) static void score_rows_avx2(const float *q, const float *const *rows, size_t n,
                                                                size_t d, int l2, float *out) {
    if (l2) score_rows_avx2_body(q, rows, n, d, 1, out);
    else score_rows_avx2_body(q, rows, n, d, 0, out);
}

// ---------------------------------------------------------------- fast scan, AVX2
// One 32-byte load of a pair's codes: low nibbles are rows 0-15, high nibbles rows 16-31; lane 0 holds
// sub-quantizer 2p, lane 1 sub-quantizer 2p+1, matching the table register (lane 0 = table 2p, lane 1 =
// table 2p+1). Look-ups give bytes; viewed as 16-bit lanes, a look-up result is e + 256 o (e the even row's
// byte, o the odd row's). The kernel adds the whole lanes (`sum`, wrapping mod 2^16) and the odd bytes
// (`odd` = the lane shifted right by 8), three operations a look-up instead of four (no mask of the even
// bytes); at the end the even rows' sums are sum - 256 odd (mod 2^16, exact because they are below 2^16).
// Four accumulator pairs hold rows {0,2,..,14}, {1,3,..,15}, {16,18,..}, {17,19,..}; the two 128-bit lanes
// are summed at the end. Sums stay below 255 * 256 < 65536 for mpad <= 256, so the results are exact.
__attribute__((target("avx2"))) static inline void fs4_store_avx2(__m256i even, __m256i odd, uint16_t *dst) {
    __m128i e = _mm_add_epi16(_mm256_castsi256_si128(even), _mm256_extracti128_si256(even, 1));
    __m128i o = _mm_add_epi16(_mm256_castsi256_si128(odd), _mm256_extracti128_si256(odd, 1));
    _mm_storeu_si128((__m128i *)dst, _mm_unpacklo_epi16(e, o));
    _mm_storeu_si128((__m128i *)(dst + 8), _mm_unpackhi_epi16(e, o));
}

__attribute__((target("avx2"))) static void fs4_scan_avx2(const uint8_t *blocks, size_t nblocks, size_t mpad,
                                                         const uint8_t *lut, uint16_t *out) {
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    size_t pairs = mpad / 2;
    for (size_t b = 0; b < nblocks; b++) {
        const uint8_t *blk = blocks + b * pairs * 32;
        __m256i ls = _mm256_setzero_si256(), lo = ls, hs = ls, ho = ls;
        for (size_t p = 0; p < pairs; p++) {
            __m256i codes = _mm256_loadu_si256((const __m256i *)(blk + p * 32));
            __m256i table = _mm256_loadu_si256((const __m256i *)(lut + p * 32));
            __m256i rl = _mm256_shuffle_epi8(table, _mm256_and_si256(codes, low4));
            __m256i rh = _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(codes, 4), low4));
            ls = _mm256_add_epi16(ls, rl);
            lo = _mm256_add_epi16(lo, _mm256_srli_epi16(rl, 8));
            hs = _mm256_add_epi16(hs, rh);
            ho = _mm256_add_epi16(ho, _mm256_srli_epi16(rh, 8));
        }
        fs4_store_avx2(_mm256_sub_epi16(ls, _mm256_slli_epi16(lo, 8)), lo, out + b * 32);
        fs4_store_avx2(_mm256_sub_epi16(hs, _mm256_slli_epi16(ho, 8)), ho, out + b * 32 + 16);
    }
}

// ---------------------------------------------------------------- fast scan, AVX-512BW
// Two pairs (four sub-quantizers, one per 128-bit lane) per 64-byte load; an odd last pair runs in the low
// 256 bits with the upper half of codes and table zeroed (table entry 0 looked up by code 0 adds 0).
// One step: table look-ups of 32 rows for the sub-quantizers in `codes` / `table`, widened into the four
// 16-bit accumulators (as in the AVX2 kernel).
__attribute__((target("avx512f,avx512bw"))) VQ_INLINE void fs4_step_avx512(__m512i codes, __m512i table, __m512i *le,
                                                                          __m512i *lo, __m512i *he, __m512i *ho) {
    const __m512i low4 = _mm512_set1_epi8(0x0f), low8 = _mm512_set1_epi16(0x00ff);
    __m512i rl = _mm512_shuffle_epi8(table, _mm512_and_si512(codes, low4));
    __m512i rh = _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(codes, 4), low4));
    *le = _mm512_add_epi16(*le, _mm512_and_si512(rl, low8));
    *lo = _mm512_add_epi16(*lo, _mm512_srli_epi16(rl, 8));
    *he = _mm512_add_epi16(*he, _mm512_and_si512(rh, low8));
    *ho = _mm512_add_epi16(*ho, _mm512_srli_epi16(rh, 8));
}
__attribute__((target("avx512f,avx512bw,avx2"))) static void fs4_scan_avx512(const uint8_t *blocks, size_t nblocks,
                                                                           size_t mpad, const uint8_t *lut,
                                                                           uint16_t *out) {
    size_t pairs = mpad / 2;
    for (size_t b = 0; b < nblocks; b++) {
        const uint8_t *blk = blocks + b * pairs * 32;
        __m512i le = _mm512_setzero_si512(), lo = le, he = le, ho = le;
        size_t p = 0;
        for (; p + 2 <= pairs; p += 2)
            fs4_step_avx512(_mm512_loadu_si512((const void *)(blk + p * 32)),
                            _mm512_loadu_si512((const void *)(lut + p * 32)), &le, &lo, &he, &ho);
        if (p < pairs)
            fs4_step_avx512(_mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)(blk + p * 32))),
                            _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)(lut + p * 32))), &le, &lo,
                            &he, &ho);
        __m256i le2 = _mm256_add_epi16(_mm512_castsi512_si256(le), _mm512_extracti64x4_epi64(le, 1));
        __m256i lo2 = _mm256_add_epi16(_mm512_castsi512_si256(lo), _mm512_extracti64x4_epi64(lo, 1));
        __m256i he2 = _mm256_add_epi16(_mm512_castsi512_si256(he), _mm512_extracti64x4_epi64(he, 1));
        __m256i ho2 = _mm256_add_epi16(_mm512_castsi512_si256(ho), _mm512_extracti64x4_epi64(ho, 1));
        fs4_store_avx2(le2, lo2, out + b * 32);
        fs4_store_avx2(he2, ho2, out + b * 32 + 16);
    }
}

// ---------------------------------------------------------------- candidate filter, AVX2 / AVX-512BW
// One compare per 16 / 32 sums; most rows fail once the heap is full, so the set bits are few.
__attribute__((target("avx2,bmi2"))) static size_t select_le_avx2(const uint16_t *v, size_t n, uint16_t limit,
                                                                  uint32_t *idx) {
    const __m256i lim = _mm256_set1_epi16((short)limit);
    size_t c = 0, i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i x = _mm256_loadu_si256((const __m256i *)(v + i));
        // x <= limit (unsigned) exactly when min(x, limit) == x; two mask bits per 16-bit lane.
        uint32_t bits = (uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi16(_mm256_min_epu16(x, lim), x));
        uint32_t m = _pext_u32(bits, 0x55555555u);
        while (m) {
            idx[c++] = (uint32_t)(i + (size_t)__builtin_ctz(m));
            m &= m - 1;
        }
    }
    return c + select_le_tail(v, i, n, limit, idx + c);
}
__attribute__((target("avx512f,avx512bw"))) static size_t select_le_avx512(const uint16_t *v, size_t n,
                                                                          uint16_t limit, uint32_t *idx) {
    const __m512i lim = _mm512_set1_epi16((short)limit);
    size_t c = 0, i = 0;
    for (; i + 32 <= n; i += 32) {
        uint32_t m = (uint32_t)_mm512_cmple_epu16_mask(_mm512_loadu_si512((const void *)(v + i)), lim);
        while (m) {
            idx[c++] = (uint32_t)(i + (size_t)__builtin_ctz(m));
            m &= m - 1;
        }
    }
    return c + select_le_tail(v, i, n, limit, idx + c);
}
// Eight sums per compare; once the top k is full most rows fail, so the set bits are few.
__attribute__((target("avx2"))) static size_t f32_select_avx2(const float *v, size_t n, float bias, float limit,
                                                              int le, uint32_t *idx) {
    const __m256 b = _mm256_set1_ps(bias), lim = _mm256_set1_ps(limit);
    size_t c = 0, i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 s = _mm256_add_ps(_mm256_loadu_ps(v + i), b);
        __m256 ok = le ? _mm256_cmp_ps(s, lim, _CMP_LE_OQ) : _mm256_cmp_ps(s, lim, _CMP_GE_OQ);
        unsigned m = (unsigned)_mm256_movemask_ps(ok);
        while (m) {
            idx[c++] = (uint32_t)(i + (size_t)__builtin_ctz(m));
            m &= m - 1;
        }
    }
    return c + f32_select_tail(v, i, n, bias, limit, le, idx + c);
}
// ---------------------------------------------------------------- int8, AVX2
__attribute__((target("avx2,fma"))) static inline float hsum256_q(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}
__attribute__((target("avx2,fma"))) static float dot_f32_i8_avx2(const float *q, const int8_t *c, size_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i raw = _mm_loadu_si128((const __m128i *)(c + i));
        __m256 c0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(raw));
        __m256 c1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(raw, 8)));
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), c0, s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), c1, s1);
    }
    return dot_f32_i8_tail(hsum256_q(_mm256_add_ps(s0, s1)), q, c, i, n);
}

// ---------------------------------------------------------------- int8, AVX-512
__attribute__((target("avx512f"))) static float dot_f32_i8_avx512(const float *q, const int8_t *c, size_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 c0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(c + i))));
        __m512 c1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(c + i + 16))));
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), c0, s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i + 16), c1, s1);
    }
    for (; i + 16 <= n; i += 16) {
        __m512 c0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(c + i))));
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), c0, s0);
    }
    return dot_f32_i8_tail(_mm512_reduce_add_ps(_mm512_add_ps(s0, s1)), q, c, i, n);
}
#endif

// ---------------------------------------------------------------- nearest candidate (k-means, PQ encode)
// Two passes: the extreme value (vector min/max), then the first index holding it (vector compare). 2 * x is
// exact in float, so norms - 2 * dots rounds the same whether or not the compiler fuses it.
size_t vq_nearest_reference(const float *norms, const float *dots, size_t k, int l2, float *value) {
    size_t best = 0;
    float bv = l2 ? norms[0] - 2.0f * dots[0] : dots[0];
    for (size_t j = 1; j < k; j++) {
        float v = l2 ? norms[j] - 2.0f * dots[j] : dots[j];
        if (l2 ? v < bv : v > bv) { bv = v; best = j; }
    }
    *value = bv;
    return best;
}

#ifdef VQ_X86
__attribute__((target("avx512f"))) static size_t nearest_avx512(const float *norms, const float *dots, size_t k,
                                                                int l2, float *value) {
    if (k < 16) return vq_nearest_reference(norms, dots, k, l2, value);
    const __m512 two = _mm512_set1_ps(2.0f);
    __m512 ext = l2 ? _mm512_sub_ps(_mm512_loadu_ps(norms), _mm512_mul_ps(two, _mm512_loadu_ps(dots)))
                    : _mm512_loadu_ps(dots);
    size_t j = 16;
    for (; j + 16 <= k; j += 16) {
        __m512 v = l2 ? _mm512_sub_ps(_mm512_loadu_ps(norms + j), _mm512_mul_ps(two, _mm512_loadu_ps(dots + j)))
                      : _mm512_loadu_ps(dots + j);
        ext = l2 ? _mm512_min_ps(ext, v) : _mm512_max_ps(ext, v);
    }
    float bv = l2 ? _mm512_reduce_min_ps(ext) : _mm512_reduce_max_ps(ext);
    for (; j < k; j++) {
        float v = l2 ? norms[j] - 2.0f * dots[j] : dots[j];
        if (l2 ? v < bv : v > bv) bv = v;
    }
    const __m512 target = _mm512_set1_ps(bv);
    size_t i = 0;
    for (; i + 16 <= k; i += 16) {
        __m512 v = l2 ? _mm512_sub_ps(_mm512_loadu_ps(norms + i), _mm512_mul_ps(two, _mm512_loadu_ps(dots + i)))
                      : _mm512_loadu_ps(dots + i);
        __mmask16 hit = _mm512_cmp_ps_mask(v, target, _CMP_EQ_OQ);
        if (hit) { *value = bv; return i + (size_t)__builtin_ctz(hit); }
    }
    for (; i < k; i++) {
        float v = l2 ? norms[i] - 2.0f * dots[i] : dots[i];
        if (v == bv) { *value = bv; return i; }
    }
    return vq_nearest_reference(norms, dots, k, l2, value);  // NaN input: no value equals the extreme
}

__attribute__((target("avx2"))) static size_t nearest_avx2(const float *norms, const float *dots, size_t k, int l2,
                                                           float *value) {
    if (k < 8) return vq_nearest_reference(norms, dots, k, l2, value);
    const __m256 two = _mm256_set1_ps(2.0f);
    __m256 ext = l2 ? _mm256_sub_ps(_mm256_loadu_ps(norms), _mm256_mul_ps(two, _mm256_loadu_ps(dots)))
                    : _mm256_loadu_ps(dots);
    size_t j = 8;
    for (; j + 8 <= k; j += 8) {
        __m256 v = l2 ? _mm256_sub_ps(_mm256_loadu_ps(norms + j), _mm256_mul_ps(two, _mm256_loadu_ps(dots + j)))
                      : _mm256_loadu_ps(dots + j);
        ext = l2 ? _mm256_min_ps(ext, v) : _mm256_max_ps(ext, v);
    }
    float lanes[8];
    _mm256_storeu_ps(lanes, ext);
    float bv = lanes[0];
    for (int t = 1; t < 8; t++) bv = l2 ? (lanes[t] < bv ? lanes[t] : bv) : (lanes[t] > bv ? lanes[t] : bv);
    for (; j < k; j++) {
        float v = l2 ? norms[j] - 2.0f * dots[j] : dots[j];
        if (l2 ? v < bv : v > bv) bv = v;
    }
    const __m256 target = _mm256_set1_ps(bv);
    size_t i = 0;
    for (; i + 8 <= k; i += 8) {
        __m256 v = l2 ? _mm256_sub_ps(_mm256_loadu_ps(norms + i), _mm256_mul_ps(two, _mm256_loadu_ps(dots + i)))
                      : _mm256_loadu_ps(dots + i);
        int hit = _mm256_movemask_ps(_mm256_cmp_ps(v, target, _CMP_EQ_OQ));
        if (hit) { *value = bv; return i + (size_t)__builtin_ctz((unsigned)hit); }
    }
    for (; i < k; i++) {
        float v = l2 ? norms[i] - 2.0f * dots[i] : dots[i];
        if (v == bv) { *value = bv; return i; }
    }
    return vq_nearest_reference(norms, dots, k, l2, value);
}
#endif

// ---------------------------------------------------------------- k-means update sums
// Each component's float64 sum gets its rows in row order (the vector code only widens and adds eight or
// sixteen independent components a step), so every variant gives the reference's sums bit for bit. The scalar
// Swift loop this replaces took 10.8 ms an iteration on docs60k (59,647 x 384), 6% of k-means training.
void vq_accumulate_rows_reference(const float *rows, size_t n, size_t d, const uint32_t *labels, double *sums,
                                  int64_t *counts) {
    for (size_t i = 0; i < n; i++) {
        const float *row = rows + i * d;
        double *acc = sums + (size_t)labels[i] * d;
        counts[labels[i]] += 1;
        for (size_t t = 0; t < d; t++) acc[t] += (double)row[t];
    }
}

#ifdef VQ_X86
__attribute__((target("avx512f"))) static void accumulate_rows_avx512(const float *rows, size_t n, size_t d,
                                                                      const uint32_t *labels, double *sums,
                                                                      int64_t *counts) {
    for (size_t i = 0; i < n; i++) {
        const float *row = rows + i * d;
        double *acc = sums + (size_t)labels[i] * d;
        counts[labels[i]] += 1;
        size_t t = 0;
        for (; t + 16 <= d; t += 16) {
            __m512d lo = _mm512_cvtps_pd(_mm256_loadu_ps(row + t));
            __m512d hi = _mm512_cvtps_pd(_mm256_loadu_ps(row + t + 8));
            _mm512_storeu_pd(acc + t, _mm512_add_pd(_mm512_loadu_pd(acc + t), lo));
            _mm512_storeu_pd(acc + t + 8, _mm512_add_pd(_mm512_loadu_pd(acc + t + 8), hi));
        }
        for (; t < d; t++) acc[t] += (double)row[t];
    }
}

__attribute__((target("avx2"))) static void accumulate_rows_avx2(const float *rows, size_t n, size_t d,
                                                                 const uint32_t *labels, double *sums,
                                                                 int64_t *counts) {
    for (size_t i = 0; i < n; i++) {
        const float *row = rows + i * d;
        double *acc = sums + (size_t)labels[i] * d;
        counts[labels[i]] += 1;
        size_t t = 0;
        for (; t + 8 <= d; t += 8) {
            __m256d lo = _mm256_cvtps_pd(_mm_loadu_ps(row + t));
            __m256d hi = _mm256_cvtps_pd(_mm_loadu_ps(row + t + 4));
            _mm256_storeu_pd(acc + t, _mm256_add_pd(_mm256_loadu_pd(acc + t), lo));
            _mm256_storeu_pd(acc + t + 4, _mm256_add_pd(_mm256_loadu_pd(acc + t + 4), hi));
        }
        for (; t < d; t++) acc[t] += (double)row[t];
    }
}
#endif

// ---------------------------------------------------------------- variant tables and dispatch
static const vq_quant_kernels generic_kernels = {
    "generic", vq_fs4_scan_reference, quantize_table_generic, pq_tables_generic, vq_dot_f32_i8_reference,
    vq_nearest_reference, vq_u16_select_le_reference, vq_score_rows_reference, NULL, NULL,
    vq_accumulate_rows_reference,
};
#ifdef VQ_X86
// The byte-plane 8-bit scan needs AVX-512 VBMI as well; vq_variant_setup clears it without.
static vq_quant_kernels avx512_kernels = {
    "avx512bw", fs4_scan_avx512, quantize_table_avx512, pq_tables_avx512, dot_f32_i8_avx512,
    nearest_avx512, select_le_avx512, score_rows_avx512, pq8_planes_vbmi, pq8_scan_planes_vbmi,
    accumulate_rows_avx512,
};
// The AVX2 candidate filter needs BMI2 (pext) as well; vq_variant_setup swaps in the portable one without it.
static vq_quant_kernels avx2_kernels = {
    "avx2", fs4_scan_avx2, quantize_table_avx2, pq_tables_avx2, dot_f32_i8_avx2,
    nearest_avx2, select_le_avx2, score_rows_avx2, NULL, NULL, accumulate_rows_avx2,
};
static int has_avx512, has_avx2;
#endif
// Starts as the portable variant, so a call before the constructor below is still correct.
static vq_quant_kernels active = {
    "generic", vq_fs4_scan_reference, quantize_table_generic, pq_tables_generic, vq_dot_f32_i8_reference,
    vq_nearest_reference, vq_u16_select_le_reference, vq_score_rows_reference, NULL, NULL,
    vq_accumulate_rows_reference,
};
static int vq_ready;
// Whether `vq_f32_select` uses its AVX2 filter (the chosen variant is not the portable one).
static int f32_select_simd;

// Reads the CPU once (the constructor below runs it before main and before any thread exists).
static void vq_variant_setup(void) {
    if (vq_ready) return;
#ifdef VQ_X86
    __builtin_cpu_init();
    has_avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
    has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (has_avx2 && !__builtin_cpu_supports("bmi2")) avx2_kernels.select_le = vq_u16_select_le_reference;
    if (!__builtin_cpu_supports("avx512vbmi")) {
        avx512_kernels.pq8_planes = NULL;
        avx512_kernels.pq8_scan_planes = NULL;
    }
#endif
    vq_ready = 1;
}

const vq_quant_kernels *vq_quant_variant(const char *isa) {
    if (!isa) return NULL;
    vq_variant_setup();
    if (!strcmp(isa, "generic") || !strcmp(isa, "portable")) return &generic_kernels;
#ifdef VQ_X86
    if (!strcmp(isa, "avx2")) return has_avx2 ? &avx2_kernels : NULL;
    if (!strcmp(isa, "avx512bw") || !strcmp(isa, "avx512")) return has_avx512 ? &avx512_kernels : NULL;
#endif
    return NULL;
}

// VECSTORE_KERNEL=portable|avx2|avx512 (as CDistance reads it; CDistance also reports a name this CPU does not
// run) picks the variant for tests and measurement; otherwise the best this CPU runs.
__attribute__((constructor)) static void vq_select(void) {
    vq_variant_setup();
    const vq_quant_kernels *best = &generic_kernels;
#ifdef VQ_X86
    if (has_avx512) best = &avx512_kernels;
    else if (has_avx2) best = &avx2_kernels;
#endif
    const char *forced = getenv("VECSTORE_KERNEL");
    if (forced && *forced) {
        const vq_quant_kernels *k = vq_quant_variant(forced);
        if (k) best = k;
    }
    active = *best;
    f32_select_simd = best != &generic_kernels && has_avx2;
}

void vq_fs4_scan(const uint8_t *blocks, size_t nblocks, size_t mpad, const uint8_t *lut, uint16_t *out) {
    active.fs4_scan(blocks, nblocks, mpad, lut, out);
}
void vq_pq_table(const float *q, const float *books_t, size_t m, size_t ksub, size_t dsub, int l2, float *out) {
    active.pq_tables(q, 1, 0, books_t, m, ksub, dsub, l2, 1.0f, out);
}
void vq_pq_tables(const float *q, size_t nq, size_t q_stride, const float *books_t, size_t m, size_t ksub, size_t dsub,
                  int l2, float scale, float *out) {
    active.pq_tables(q, nq, q_stride, books_t, m, ksub, dsub, l2, scale, out);
}
void vq_fs4_quantize_table(const float *a, const float *b, size_t m, float sign, uint8_t *out, float *out_scale,
                           float *out_bias) {
    active.quantize_table(a, b, m, sign, out, out_scale, out_bias);
}
float vq_dot_f32_i8(const float *q, const int8_t *c, size_t n) { return active.dot_f32_i8(q, c, n); }
size_t vq_nearest(const float *norms, const float *dots, size_t k, int l2, float *value) {
    return active.nearest(norms, dots, k, l2, value);
}
void vq_accumulate_rows(const float *rows, size_t n, size_t d, const uint32_t *labels, double *sums, int64_t *counts) {
    active.accumulate_rows(rows, n, d, labels, sums, counts);
}
size_t vq_u16_select_le(const uint16_t *v, size_t n, uint16_t limit, uint32_t *idx) {
    return active.select_le(v, n, limit, idx);
}
size_t vq_f32_select(const float *v, size_t n, float bias, float limit, int le, uint32_t *idx) {
#ifdef VQ_X86
    // The AVX2 filter on every variant but the portable one (AVX-512 CPUs have AVX2).
    if (f32_select_simd) return f32_select_avx2(v, n, bias, limit, le, idx);
#endif
    return vq_f32_select_reference(v, n, bias, limit, le, idx);
}
void vq_score_rows(const float *q, const float *const *rows, size_t n, size_t d, int l2, float *out) {
    if (n > 0 && d > 0) active.score_rows(q, rows, n, d, l2, out);
}
size_t vq_pq8_planes_size(size_t m) {
    return active.pq8_planes && m > 0 && m % 16 == 0 && m <= VQ_PQ8_PLANES_MAX_M ? m * 1024 : 0;
}
void vq_pq8_planes(const float *lut, size_t m, uint8_t *planes) {
    if (vq_pq8_planes_size(m)) active.pq8_planes(lut, m, planes);
}
void vq_pq8_scan_planes(const float *lut, const uint8_t *planes, size_t m, const uint8_t *codes, size_t n, float *out) {
    if (planes && vq_pq8_planes_size(m)) active.pq8_scan_planes(lut, planes, m, codes, n, out);
    else vq_pq8_scan(lut, m, codes, n, out);
}
const char *vq_isa(void) { return active.isa; }
