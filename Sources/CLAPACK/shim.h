// The LAPACK routines vecstore calls, from Debian's OpenBLAS (libopenblas ships LAPACK; no
// lapacke.h is needed). Fortran calling convention: every argument by pointer, column-major
// matrices, and one hidden length argument per character argument at the end.
#ifndef VECSTORE_CLAPACK_SHIM_H
#define VECSTORE_CLAPACK_SHIM_H
#include <stddef.h>

// Selected eigenvalues and eigenvectors of a real symmetric matrix (MRRR algorithm).
void ssyevr_(const char *jobz, const char *range, const char *uplo, const int *n, float *a, const int *lda,
             const float *vl, const float *vu, const int *il, const int *iu, const float *abstol, int *m,
             float *w, float *z, const int *ldz, int *isuppz, float *work, const int *lwork, int *iwork,
             const int *liwork, int *info, size_t jobz_len, size_t range_len, size_t uplo_len);

#endif
