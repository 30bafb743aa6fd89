#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>

/// Allocates disk blocks for bytes [0, length) of `fd` without changing the file's size
/// (fallocate with FALLOC_FL_KEEP_SIZE, a Linux call Swift's Glibc module does not import).
/// Returns 0, or an errno value (EOPNOTSUPP where the file system has no fallocate).
static inline int vs_reserve_blocks(int fd, long long length) {
#ifdef FALLOC_FL_KEEP_SIZE
    return fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)length) == 0 ? 0 : errno;
#else
    (void)fd; (void)length;
    return EOPNOTSUPP;
#endif
}
