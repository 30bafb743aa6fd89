#include <cblas.h>

/* OpenBLAS's pthread server shutdown (exported by libopenblas; not in its headers): joins the worker
   threads its constructor started. The next call that needs them starts them again. */
int blas_thread_shutdown_(void);
