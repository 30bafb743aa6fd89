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

/// Relaxed atomic load of a region counter (`MapReads`: several threads may count the same region).
static inline unsigned char vs_counter_load(const unsigned char *p) {
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

/// Adds one to a region counter unless it reached `cap` (relaxed; a lost update only delays a region's
/// switch to the map by one read).
static inline void vs_counter_bump(unsigned char *p, unsigned char cap) {
    unsigned char v = __atomic_load_n(p, __ATOMIC_RELAXED);
    if (v < cap) __atomic_store_n(p, (unsigned char)(v + 1), __ATOMIC_RELAXED);
}
