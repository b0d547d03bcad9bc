#ifndef EFIVARFS_BRIDGE_CFUSE_SHIM_H
#define EFIVARFS_BRIDGE_CFUSE_SHIM_H

// The low-level libfuse3 API at version 3.12 (ioctl's cmd is unsigned).
#define FUSE_USE_VERSION 312
#include <stddef.h>
#include <stdint.h>
#include <fuse_lowlevel.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/statvfs.h>
#include <sys/stat.h>
#include <linux/fs.h>

// Swift cannot reach C bitfields or function-like macros reliably; these
// helpers give it the few it needs.
static inline void cfuse_fi_set_direct_io(struct fuse_file_info *fi) { fi->direct_io = 1; fi->keep_cache = 0; }
// FOPEN_NOFLUSH: the filesystem has no flush; the kernel need not send FLUSH at close(2)
// (without it, the first close of the mount still sends one and learns ENOSYS).
static inline void cfuse_fi_set_noflush(struct fuse_file_info *fi) { fi->noflush = 1; }
static inline int cfuse_fi_flags(const struct fuse_file_info *fi) { return fi->flags; }
static inline uint64_t cfuse_fi_fh(const struct fuse_file_info *fi) { return fi->fh; }
static inline void cfuse_fi_set_fh(struct fuse_file_info *fi, uint64_t fh) { fi->fh = fh; }

static inline void cfuse_conn_set_max_write(struct fuse_conn_info *conn, unsigned max_write) {
    conn->max_write = max_write;
    conn->max_read = 0;
    // Writes must reach the daemon whole: one write(2), one SetVariable.
    conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
    conn->want &= ~FUSE_CAP_ASYNC_READ;
}

static inline const unsigned long cfuse_ioc_getflags(void) { return FS_IOC_GETFLAGS; }
static inline const unsigned long cfuse_ioc_setflags(void) { return FS_IOC_SETFLAGS; }
static inline const unsigned long cfuse_ioc_fsgetxattr(void) { return FS_IOC_FSGETXATTR; }
static inline const unsigned long cfuse_ioc_fssetxattr(void) { return FS_IOC_FSSETXATTR; }

#endif
