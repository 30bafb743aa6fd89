#ifndef CVECKERNELS_H
#define CVECKERNELS_H

#include <stddef.h>

/// Inner product of two float vectors, using the widest vector unit the CPU has (AVX-512, AVX2+FMA or
/// SSE), chosen once at load time.
float vs_dot_f32(const float *a, const float *b, size_t n);

/// Squared Euclidean distance of two float vectors, dispatched like vs_dot_f32.
float vs_l2sq_f32(const float *a, const float *b, size_t n);

/// Inner product of a float query with a vector stored as IEEE binary16 (`h`, n halves).
float vs_dot_f16(const float *q, const unsigned short *h, size_t n);

/// Squared Euclidean distance of a float query and a binary16 vector.
float vs_l2sq_f16(const float *q, const unsigned short *h, size_t n);

/// Which kernel vs_dot_f32 / vs_l2sq_f32 use: 512, 256 or 128 (bits).
int vs_kernel_width(void);

/// Hints the CPU to bring `lines` cache lines from `p` on into L1.
static inline void vs_prefetch(const void *p, int lines) {
    const char *c = (const char *)p;
    for (int i = 0; i < lines; i++) __builtin_prefetch(c + 64 * i, 0, 3);
}

#endif
