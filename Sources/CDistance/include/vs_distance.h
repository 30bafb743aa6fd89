// Float32 distance kernels with run-time CPU dispatch (AVX-512F, AVX2+FMA, or portable C).
#ifndef VS_DISTANCE_H
#define VS_DISTANCE_H
#include <stddef.h>

/// out[i] = dot(q, base + i*dim) for i in [0, n).
void vs_dot_many(const float *q, const float *base, size_t n, size_t dim, float *out);
/// out[i] = |q - (base + i*dim)|^2 for i in [0, n).
void vs_l2_many(const float *q, const float *base, size_t n, size_t dim, float *out);
/// Dot product of two vectors.
float vs_dot(const float *a, const float *b, size_t dim);
/// Squared Euclidean distance of two vectors.
float vs_l2(const float *a, const float *b, size_t dim);
/// Dot products of a tile of queries with a run of rows: out[i*ldo + r] = dot(q + i*dim, x + r*dim) for
/// i in [0, nq), r in [0, nr). The batch-search kernel (register-blocked 4 queries x 4 rows).
void vs_dot_tile(const float *q, size_t nq, const float *x, size_t nr, size_t dim, float *out, size_t ldo);
/// Name of the instruction set the kernels dispatched to ("avx512f", "avx2", "generic").
const char *vs_distance_isa(void);

#endif
