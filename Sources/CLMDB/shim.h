#include <errno.h>
#include <sys/types.h>
#include <lmdb.h>

/* fallocate(2) is a Linux call that glibc declares only under _GNU_SOURCE, which a module header must not
   define (it changes the layout of shared types between modules); declared here with glibc's signature. */
extern int fallocate(int fd, int mode, off_t offset, off_t len);

/// Allocates disk blocks for bytes [0, length) of `fd` without changing the file's size
/// (fallocate with FALLOC_FL_KEEP_SIZE = 1). Returns 0, or an errno value (EOPNOTSUPP where the file
/// system has no fallocate).
static inline int vs_reserve_blocks(int fd, long long length) {
    return fallocate(fd, 1 /* FALLOC_FL_KEEP_SIZE */, 0, (off_t)length) == 0 ? 0 : errno;
}
