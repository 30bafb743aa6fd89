#include <cblas.h>

#include <dlfcn.h>

/* OpenBLAS's pthread server shutdown (exported by the pthread builds of libopenblas, not in its headers):
   joins the worker threads its constructor started; the next call that needs them starts them again.
   Looked up at run time, so a build of OpenBLAS without it (the OpenMP variant) links and loads, and the
   call is skipped. Returns whether the symbol was found and called. */
static inline int vs_openblas_join_workers(void) {
    int (*shutdown)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "blas_thread_shutdown_");
    if (!shutdown) return 0;
    (void)shutdown();
    return 1;
}
