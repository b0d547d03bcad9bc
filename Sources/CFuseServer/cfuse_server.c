// The FUSE worker pool and its shutdown (see cfuse_server.h).
//
// Why not libfuse's own loop and signal handlers: fuse_set_signal_handlers' handler calls
// fuse_session_exit(), after which fuse_session_receive_buf() drops a request it has
// already read from /dev/fuse (it returns 0 when it finds the session exited after the
// read): that request is never answered, and its caller sits in request_wait_answer for
// good. fuse_session_loop_mt() also cancels idle workers blocked in read(2) with
// pthread_cancel, which ThreadSanitizer reports. Here a signal only wakes the main thread;
// workers keep answering until the connection itself goes away.
#define FUSE_USE_VERSION 312
#define _GNU_SOURCE
#include "cfuse_server.h"

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static int stop_pipe[2] = { -1, -1 };

// Requests read from /dev/fuse, by opcode (slot 0: opcodes past the table), counted from the
// fuse_in_header of each request a worker reads: what the kernel asked, before libfuse
// answers anything (an ENOSYS for an operation the filesystem lacks is counted too).
static uint64_t request_counts[CFUSE_OPCODE_SLOTS];

static const char *const opcode_names[CFUSE_OPCODE_SLOTS] = {
    [0] = "OTHER", [1] = "LOOKUP", [2] = "FORGET", [3] = "GETATTR", [4] = "SETATTR", [5] = "READLINK",
    [6] = "SYMLINK", [8] = "MKNOD", [9] = "MKDIR", [10] = "UNLINK", [11] = "RMDIR", [12] = "RENAME",
    [13] = "LINK", [14] = "OPEN", [15] = "READ", [16] = "WRITE", [17] = "STATFS", [18] = "RELEASE",
    [20] = "FSYNC", [21] = "SETXATTR", [22] = "GETXATTR", [23] = "LISTXATTR", [24] = "REMOVEXATTR",
    [25] = "FLUSH", [26] = "INIT", [27] = "OPENDIR", [28] = "READDIR", [29] = "RELEASEDIR",
    [30] = "FSYNCDIR", [31] = "GETLK", [32] = "SETLK", [33] = "SETLKW", [34] = "ACCESS", [35] = "CREATE",
    [36] = "INTERRUPT", [37] = "BMAP", [38] = "DESTROY", [39] = "IOCTL", [40] = "POLL",
    [41] = "NOTIFY_REPLY", [42] = "BATCH_FORGET", [43] = "FALLOCATE", [44] = "READDIRPLUS",
    [45] = "RENAME2", [46] = "LSEEK", [47] = "COPY_FILE_RANGE", [48] = "SETUPMAPPING",
    [49] = "REMOVEMAPPING", [50] = "SYNCFS", [51] = "TMPFILE",
};

uint64_t cfuse_request_count(unsigned opcode) {
    return opcode < CFUSE_OPCODE_SLOTS ? __atomic_load_n(&request_counts[opcode], __ATOMIC_RELAXED) : 0;
}

const char *cfuse_opcode_name(unsigned opcode) {
    return opcode < CFUSE_OPCODE_SLOTS ? opcode_names[opcode] : NULL;
}

// The opcode is the second u32 of struct fuse_in_header (len, opcode, unique, ...).
static void count_request(const struct fuse_buf *buf, int size) {
    if ((buf->flags & FUSE_BUF_IS_FD) || buf->mem == NULL || size < 8) return;
    uint32_t opcode;
    memcpy(&opcode, (const char *)buf->mem + 4, sizeof opcode);
    __atomic_fetch_add(&request_counts[opcode < CFUSE_OPCODE_SLOTS ? opcode : 0], 1, __ATOMIC_RELAXED);
}

static void on_stop_signal(int sig) {
    (void)sig;
    int saved = errno;
    char b = 's';
    if (write(stop_pipe[1], &b, 1) < 0) { /* the pipe is full: a wake-up is already pending */ }
    errno = saved;
}

int cfuse_install_stop_handlers(void) {
    if (stop_pipe[0] < 0 && pipe2(stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0) return -1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGHUP, &sa, NULL) != 0) return -1;
    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    return pthread_sigmask(SIG_UNBLOCK, &set, NULL) == 0 ? 0 : -1;
}

struct worker {
    pthread_t thread;
    struct fuse_session *se;
    int done;
};

// One worker: reads and processes requests until the connection is gone (read fails with
// ENODEV after an unmount or an abort), then wakes the main thread.
static void *worker_main(void *arg) {
    struct worker *w = arg;
    // Workers never take the stop signals: the main thread does.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    struct fuse_buf buf = { .mem = NULL };
    for (;;) {
        int res = fuse_session_receive_buf(w->se, &buf);
        if (res == -EINTR || res == -EAGAIN) continue;
        if (res <= 0) break;
        count_request(&buf, res);
        fuse_session_process_buf(w->se, &buf);
    }
    free(buf.mem);
    __atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
    char b = 'w';
    if (write(stop_pipe[1], &b, 1) < 0) { /* already woken */ }
    return NULL;
}

static int all_done(struct worker *ws, unsigned n) {
    for (unsigned i = 0; i < n; i++)
        if (!__atomic_load_n(&ws[i].done, __ATOMIC_ACQUIRE)) return 0;
    return 1;
}

// Waits up to `ms` for every worker to finish (they all see the connection end at once,
// so this is usually immediate).
static int wait_done(struct worker *ws, unsigned n, int ms) {
    for (int waited = 0; waited < ms * 10; waited++) {
        if (all_done(ws, n)) return 1;
        usleep(100);
    }
    return all_done(ws, n);
}

// Ends the connection through fusectl (Documentation/filesystems/fuse.rst, "Aborting a
// filesystem connection"): every request still waiting fails with ENOTCONN and every
// worker's read returns ENODEV. fusectl is mounted if it is not (root only).
static int abort_connection(dev_t dev) {
    char path[96];
    snprintf(path, sizeof path, "/sys/fs/fuse/connections/%u/abort", minor(dev));
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        if (mount("fusectl", "/sys/fs/fuse/connections", "fusectl", 0, NULL) == 0)
            fd = open(path, O_WRONLY | O_CLOEXEC);
    }
    if (fd < 0) return -1;
    int ok = write(fd, "1", 1) == 1;
    close(fd);
    return ok ? 0 : -1;
}

// Detaches the mount lazily, as libfuse's fuse_kern_unmount does (umount2 MNT_DETACH as
// root, else `fusermount3 -u -z`), but keeps /dev/fuse open: fuse_session_unmount() also
// closes the session's descriptor, after which a worker's reply to a request that still
// arrives from an open file fails with EBADF and its caller waits for the abort instead of
// getting its answer during the grace period.
static void detach_mount(const char *mountpoint) {
    if (umount2(mountpoint, MNT_DETACH) == 0 || errno != EPERM) return;
    char *argv[] = { "fusermount3", "-u", "-q", "-z", "--", (char *)mountpoint, NULL };
    pid_t pid;
    if (posix_spawnp(&pid, "fusermount3", NULL, NULL, argv, environ) == 0) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    }
}

int cfuse_serve(struct fuse_session *se, const char *mountpoint, unsigned threads,
                void (*ready)(void *context), void *context) {
    if (threads < 1) threads = 1;
    if (threads > 1024) threads = 1024;
    struct worker *ws = calloc(threads, sizeof *ws);
    if (ws == NULL) return -1;
    unsigned started = 0;
    for (; started < threads; started++) {
        ws[started].se = se;
        if (pthread_create(&ws[started].thread, NULL, worker_main, &ws[started]) != 0) break;
    }
    if (started == 0) { free(ws); return -1; }
    // The connection's number, for an abort later: the device of the mounted root. Asked
    // only now that workers answer, since the stat is a request to this very server.
    struct stat st;
    dev_t dev = stat(mountpoint, &st) == 0 ? st.st_dev : 0;
    // Only now is the mount ready: the kernel's INIT is answered, and this process holds
    // no reference to the mount any more. Told earlier, a caller that unmounted at once
    // could meet this stat still in flight and fail with EBUSY.
    if (ready) ready(context);
    // Sleep until a stop signal or a worker that lost the connection wakes us.
    for (;;) {
        struct pollfd p = { .fd = stop_pipe[0], .events = POLLIN };
        if (poll(&p, 1, 1000) > 0) {
            char b;
            if (read(stop_pipe[0], &b, 1) == 1) break;
        }
        if (all_done(ws, started)) break;
    }
    // Unmount (lazily, as libfuse does for root). With no file open the connection ends and
    // the workers stop; with files open it stays, and is aborted after a short grace period
    // in which those files' requests are still answered.
    detach_mount(mountpoint);
    int rc = 0;
    if (!wait_done(ws, started, 1000)) {
        if (dev == 0 || abort_connection(dev) != 0 || !wait_done(ws, started, 5000)) rc = 1;
    }
    if (rc == 0) {
        for (unsigned i = 0; i < started; i++) pthread_join(ws[i].thread, NULL);
        free(ws);
        // The connection is gone (the descriptor polls POLLERR), so this only closes it.
        fuse_session_unmount(se);
    }
    return rc;
}
