/* The FUSE limit for efivarfs-bridge: a minimal libfuse3 low-level filesystem serving
 * <Name>-<GUID> files (4 attribute bytes + data) from an in-memory table, with the FUSE
 * settings the bridge uses (direct I/O, noflush, zero entry and file attribute timeouts and a
 * long one for the unchanging root, the same max_write, no
 * async reads, no writeback cache, the same worker threads). With --durable every change is
 * appended to a log and fdatasync'd before the answer. It does no efivarfs checks and no
 * work: the same kernel path, nothing else. FS_IOC_GETFLAGS/SETFLAGS answer as for a file
 * that is not immutable (libefivar asks before every delete).
 *
 * --loop pool (default) serves with the bridge's own worker pool (Sources/CFuseServer/
 * cfuse_server.c, compiled in: fuse_session_receive_buf/process_buf workers); --loop mt with
 * libfuse's fuse_session_loop_mt. With --counts FILE (pool only), SIGUSR1 writes the FUSE
 * requests read so far, one "OPCODE count" per line, to FILE.
 *
 * Usage: baselinefs [--durable LOG] [--threads N] [--loop pool|mt] [--counts FILE] <mountpoint>
 *        (stays in the foreground)
 */
#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include "cfuse_server.h"
#include <errno.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <linux/fs.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_VARS 65536
#ifndef ROOT_ATTR_TIMEOUT
#define ROOT_ATTR_TIMEOUT 86400.0
#endif
struct var { char *name; unsigned char *data; size_t size; int used; };
static struct var vars[MAX_VARS + 2];          /* ino = index + 2 */
static int nvars;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int log_fd = -1;

/* Open-addressing hash index over names, so lookups stay O(1) as the table grows. */
#define HASH_SIZE (1 << 17)
static int hash_slot[HASH_SIZE];   /* index + 1, 0 = empty */
static unsigned hash_name(const char *s) { unsigned h = 2166136261u; while (*s) h = (h ^ (unsigned char)*s++) * 16777619u; return h; }
static int find(const char *name) {
    for (unsigned h = hash_name(name) & (HASH_SIZE - 1);; h = (h + 1) & (HASH_SIZE - 1)) {
        int i = hash_slot[h] - 1;
        if (i < 0) return -1;
        if (vars[i].used && strcmp(vars[i].name, name) == 0) return i;
    }
}
static void index_add(int i) {
    unsigned h = hash_name(vars[i].name) & (HASH_SIZE - 1);
    while (hash_slot[h]) h = (h + 1) & (HASH_SIZE - 1);
    hash_slot[h] = i + 1;
}

static void fill_stat(int i, struct stat *st) {
    memset(st, 0, sizeof *st);
    if (i < 0) { st->st_ino = 1; st->st_mode = S_IFDIR | 0755; st->st_nlink = 2; return; }
    st->st_ino = i + 2; st->st_mode = S_IFREG | 0644; st->st_nlink = 1; st->st_size = vars[i].size;
}

static void journal(const char *name, const unsigned char *data, size_t size) {
    if (log_fd < 0) return;
    size_t n = strlen(name);
    unsigned char hdr[8];
    memcpy(hdr, &n, 4); memcpy(hdr + 4, &size, 4);
    if (write(log_fd, hdr, 8) < 0 || write(log_fd, name, n) < 0 || (size && write(log_fd, data, size) < 0)) return;
    fdatasync(log_fd);
}

static void reply_entry(fuse_req_t req, int i) {
    struct fuse_entry_param e;
    memset(&e, 0, sizeof e);
    e.ino = i + 2; e.generation = 1;
    fill_stat(i, &e.attr);
    fuse_reply_entry(req, &e);
}

static void op_init(void *u, struct fuse_conn_info *conn) {
    (void)u;
    /* As the bridge (Sources/CFuse/shim.h cfuse_conn_set_max_write). */
    conn->max_write = 128 * 1024; conn->max_read = 0;
    conn->want &= ~FUSE_CAP_WRITEBACK_CACHE; conn->want &= ~FUSE_CAP_ASYNC_READ;
}
static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
    (void)parent;
    pthread_mutex_lock(&lock); int i = find(name); pthread_mutex_unlock(&lock);
    if (i < 0) fuse_reply_err(req, ENOENT); else reply_entry(req, i);
}
static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    (void)fi; struct stat st;
    pthread_mutex_lock(&lock); fill_stat(ino == 1 ? -1 : (int)ino - 2, &st); pthread_mutex_unlock(&lock);
    /* As the bridge: the root's attributes never change, so the kernel may keep them. */
    fuse_reply_attr(req, &st, ino == 1 ? ROOT_ATTR_TIMEOUT : 0);
}
static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *a, int set, struct fuse_file_info *fi) { (void)a; (void)set; op_getattr(req, ino, fi); }
static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) { (void)ino; fi->direct_io = 1; fi->noflush = 1; fuse_reply_open(req, fi); }
static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi) {
    (void)parent; (void)mode;
    pthread_mutex_lock(&lock);
    int i = find(name);
    if (i < 0 && nvars < MAX_VARS) { i = nvars++; vars[i].name = strdup(name); vars[i].data = NULL; vars[i].size = 0; vars[i].used = 1; index_add(i); }
    pthread_mutex_unlock(&lock);
    if (i < 0) { fuse_reply_err(req, ENOSPC); return; }
    struct fuse_entry_param e; memset(&e, 0, sizeof e); e.ino = i + 2; e.generation = 1; fill_stat(i, &e.attr);
    fi->direct_io = 1; fi->noflush = 1;
    fuse_reply_create(req, &e, fi);
}
static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
    (void)fi; unsigned char buf[65536 + 4]; size_t n = 0;
    pthread_mutex_lock(&lock);
    struct var *v = &vars[ino - 2];
    if (v->used && (size_t)off < v->size) { n = v->size - off; if (n > size) n = size; if (n > sizeof buf) n = sizeof buf; memcpy(buf, v->data + off, n); }
    pthread_mutex_unlock(&lock);
    fuse_reply_buf(req, (const char *)buf, n);
}
static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
    (void)off; (void)fi;
    if (size < 4) { fuse_reply_err(req, EINVAL); return; }
    pthread_mutex_lock(&lock);
    struct var *v = &vars[ino - 2];
    free(v->data);
    v->data = malloc(size); memcpy(v->data, buf, size); v->size = size;
    journal(v->name, v->data, size);
    pthread_mutex_unlock(&lock);
    fuse_reply_write(req, size);
}
static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name) {
    (void)parent;
    pthread_mutex_lock(&lock);
    int i = find(name);
    if (i >= 0) { vars[i].used = 0; free(vars[i].data); vars[i].data = NULL; vars[i].size = 0; journal(vars[i].name, NULL, 0); }
    pthread_mutex_unlock(&lock);
    fuse_reply_err(req, i < 0 ? ENOENT : 0);
}
static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
    (void)ino; (void)fi;
    char *buf = malloc(size); size_t used = 0;
    pthread_mutex_lock(&lock);
    for (int i = (int)off; i < nvars; i++) {
        if (!vars[i].used) continue;
        struct stat st; memset(&st, 0, sizeof st); st.st_ino = i + 2; st.st_mode = S_IFREG;
        size_t need = fuse_add_direntry(req, buf + used, size - used, vars[i].name, &st, i + 1);
        if (used + need > size) break;
        used += need;
    }
    pthread_mutex_unlock(&lock);
    fuse_reply_buf(req, buf, used);
    free(buf);
}
static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) { (void)ino; (void)fi; fuse_reply_err(req, 0); }
static void op_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void *arg, struct fuse_file_info *fi, unsigned flags,
                     const void *in, size_t in_size, size_t out_size) {
    (void)ino; (void)arg; (void)fi; (void)flags; (void)in; (void)in_size;
    if (cmd == FS_IOC_GETFLAGS) { unsigned int f = 0; fuse_reply_ioctl(req, 0, &f, out_size < sizeof f ? out_size : sizeof f); }
    else if (cmd == FS_IOC_SETFLAGS) fuse_reply_ioctl(req, 0, NULL, 0);
    else fuse_reply_err(req, ENOTTY);
}

/* SIGUSR1: the request counts so far into counts_path. */
static const char *counts_path;
static void *counts_thread(void *arg) {
    sigset_t *set = arg;
    for (;;) {
        int sig;
        if (sigwait(set, &sig) != 0) continue;
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", counts_path);
        FILE *f = fopen(tmp, "w");
        if (!f) continue;
        for (unsigned op = 0; op < CFUSE_OPCODE_SLOTS; op++)
            if (cfuse_request_count(op) && cfuse_opcode_name(op)) fprintf(f, "%s %llu\n", cfuse_opcode_name(op), (unsigned long long)cfuse_request_count(op));
        fclose(f);
        rename(tmp, counts_path);
    }
    return NULL;
}

int main(int argc, char **argv) {
    int threads = 4, pool = 1; const char *mnt = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--durable") && i + 1 < argc) { log_fd = open(argv[++i], O_WRONLY | O_CREAT | O_TRUNC, 0600); }
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--loop") && i + 1 < argc) pool = strcmp(argv[++i], "mt") != 0;
        else if (!strcmp(argv[i], "--counts") && i + 1 < argc) counts_path = argv[++i];
        else mnt = argv[i];
    }
    if (!mnt) { fprintf(stderr, "usage: baselinefs [--durable LOG] [--threads N] [--loop pool|mt] [--counts FILE] <mountpoint>\n"); return 2; }
    struct fuse_lowlevel_ops ops = {
        .init = op_init, .lookup = op_lookup, .getattr = op_getattr, .setattr = op_setattr, .open = op_open,
        .create = op_create, .read = op_read, .write = op_write, .unlink = op_unlink, .readdir = op_readdir,
        .release = op_release, .ioctl = op_ioctl,
    };
    char *fargv[] = { argv[0], "-o", "default_permissions,fsname=baselinefs", NULL };
    struct fuse_args args = FUSE_ARGS_INIT(3, fargv);
    struct fuse_session *se = fuse_session_new(&args, &ops, sizeof ops, NULL);
    if (!se) return 1;
    if (pool) {
        /* The bridge's serving path: its stop handlers, its workers, its shutdown. */
        static sigset_t usr1;
        sigemptyset(&usr1); sigaddset(&usr1, SIGUSR1);
        pthread_sigmask(SIG_BLOCK, &usr1, NULL);
        pthread_t t;
        if (counts_path) pthread_create(&t, NULL, counts_thread, &usr1);
        if (cfuse_install_stop_handlers() || fuse_session_mount(se, mnt)) return 1;
        int rc = cfuse_serve(se, mnt, (unsigned)threads, NULL, NULL);
        if (rc == 0) fuse_session_destroy(se);
        return rc;
    }
    if (fuse_set_signal_handlers(se) || fuse_session_mount(se, mnt)) return 1;
    struct fuse_loop_config *cfg = fuse_loop_cfg_create();
    fuse_loop_cfg_set_max_threads(cfg, threads);
    int rc = fuse_session_loop_mt(se, cfg);
    fuse_loop_cfg_destroy(cfg);
    fuse_session_unmount(se); fuse_remove_signal_handlers(se); fuse_session_destroy(se);
    return rc;
}
