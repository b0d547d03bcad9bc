#ifndef EFIVARFS_BRIDGE_CFUSE_SHIM_H
#define EFIVARFS_BRIDGE_CFUSE_SHIM_H

// The low-level libfuse3 API at version 3.12 (ioctl's cmd is unsigned).
#define FUSE_USE_VERSION 312
#include <stddef.h>
#include <stdint.h>
#include <fuse_lowlevel.h>
#include <pthread.h>
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
static inline int cfuse_fi_flags(const struct fuse_file_info *fi) { return fi->flags; }
static inline uint64_t cfuse_fi_fh(const struct fuse_file_info *fi) { return fi->fh; }
static inline void cfuse_fi_set_fh(struct fuse_file_info *fi, uint64_t fh) { fi->fh = fh; }

// One worker: reads and processes requests until the session ends. A failed read (the
// connection gone at unmount: ENODEV) ends the session, so the others stop too.
static inline void *cfuse_worker(void *arg) {
    struct fuse_session *se = (struct fuse_session *)arg;
    struct fuse_buf buf = { .mem = NULL };
    while (!fuse_session_exited(se)) {
        int res = fuse_session_receive_buf(se, &buf);
        if (res == -EINTR) continue;
        if (res <= 0) { fuse_session_exit(se); break; }
        fuse_session_process_buf(se, &buf);
    }
    free(buf.mem);
    return NULL;
}

// A fixed pool of workers instead of fuse_session_loop_mt, which ends its idle workers with
// pthread_cancel while they block in read(2) on /dev/fuse: ThreadSanitizer reports that and
// ends the process at unmount. Here the calling thread waits for the session to end (a
// signal handler's fuse_session_exit, or a worker's failed read), unmounts — which aborts
// the connection, so every worker still blocked in read(2) returns ENODEV — and joins them.
static inline int cfuse_session_loop_workers(struct fuse_session *se, unsigned n) {
    pthread_t threads[1024];
    unsigned started = 0;
    if (n > 1024) n = 1024;
    for (; started < n; started++)
        if (pthread_create(&threads[started], NULL, cfuse_worker, se) != 0) break;
    if (started == 0) return -1;
    while (!fuse_session_exited(se)) usleep(20000);
    fuse_session_unmount(se);
    for (unsigned i = 0; i < started; i++) pthread_join(threads[i], NULL);
    return 0;
}

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
