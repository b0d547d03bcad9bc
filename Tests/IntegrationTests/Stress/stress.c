/*
 * Concurrency stress for an efivarfs mount: P processes x T threads, each
 * thread a client doing a random mix of create, write, append, read, delete, list, chattr
 * and stat on two private variables and on four shared ones, for a bounded time.
 *
 *   stress MOUNT PROCESSES THREADS SECONDS MODEL_DIR
 *
 * Private variables are checked against a model of the client's acknowledged operations
 * after every read and stat. Shared variables hold self-checking values
 * (magic, writer, sequence, checksum), so a read must return some value a client wrote.
 * Each process writes MODEL_DIR/model-<p>: one line per private variable, "name hex" or
 * "name -" when absent, for a check after remounting. Exit status 0 only if every
 * operation answered as efivarfs must and every check held; the last line printed is
 *   ops=<n> errors=<n> clients=<n> seconds=<n>
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define GUID "6a2e1b4c-0f3d-4e5a-9b8c-7d6e5f4a3b2c"
#define NV_BS_RT 0x7u
#define APPEND 0x40u
#define MAX_DATA 256
#define SHARED 4

static const char *mnt;
static int seconds;
static volatile long total_ops, total_errors;

struct model { int present; size_t len; unsigned char data[MAX_DATA + 64]; };
struct client {
    int id;
    unsigned seed;
    char names[2][128];
    struct model m[2];
    long ops, errors;
};

static void complain(struct client *c, const char *what, const char *name, int err) {
    c->errors++;
    fprintf(stderr, "client %d: %s %s: %s\n", c->id, what, name, err ? strerror(err) : "mismatch");
}

/* efivarfs makes a variable it does not know (not in its validation table) immutable;
 * clients clear the flag before writing or deleting, as libefivar does. */
static int make_mutable_fd(int fd) {
    int flags = 0;
    if (ioctl(fd, FS_IOC_GETFLAGS, &flags) != 0) return errno;
    if (!(flags & FS_IMMUTABLE_FL)) return 0;
    flags &= ~FS_IMMUTABLE_FL;
    return ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0 ? 0 : errno;
}

static int make_mutable(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return errno;
    int e = make_mutable_fd(fd);
    close(fd);
    return e;
}

static int write_var(const char *path, uint32_t attrs, const unsigned char *data, size_t len, int create) {
    unsigned char buf[4 + MAX_DATA + 64];
    memcpy(buf, &attrs, 4);
    memcpy(buf + 4, data, len);
    int me = make_mutable(path);
    if (me && me != ENOENT) return me;
    int fd = open(path, O_WRONLY | (create ? O_CREAT : 0), 0644);
    if (fd < 0) return errno;
    ssize_t n = write(fd, buf, 4 + len);
    if (n == (ssize_t)(4 + len) && create) {
        int e = make_mutable_fd(fd);
        if (e) { close(fd); return e; }
    }
    int e = n == (ssize_t)(4 + len) ? 0 : (n < 0 ? errno : EIO);
    close(fd);
    return e;
}

/* Reads the whole file; returns its length or -errno. */
static ssize_t read_var(const char *path, unsigned char *buf, size_t cap) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -errno;
    ssize_t total = 0, n;
    while ((n = read(fd, buf + total, cap - total)) > 0) total += n;
    int e = errno;
    close(fd);
    return n < 0 ? -e : total;
}

static uint32_t shared_sum(const unsigned char *v) {
    uint32_t s = 0x9e3779b9;
    for (int i = 0; i < 12; i++) s = (s ^ v[i]) * 16777619u;
    return s;
}

static void op_private(struct client *c, int which, int kind) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", mnt, c->names[which]);
    struct model *m = &c->m[which];
    unsigned char data[MAX_DATA];
    size_t len = 1 + rand_r(&c->seed) % 64;
    for (size_t i = 0; i < len; i++) data[i] = rand_r(&c->seed);
    unsigned char buf[4 + MAX_DATA + 128];
    switch (kind) {
    case 0: /* create or overwrite */ {
        int e = write_var(path, NV_BS_RT, data, len, 1);
        if (e) { complain(c, "write", c->names[which], e); return; }
        m->present = 1; m->len = len; memcpy(m->data, data, len);
        break;
    }
    case 1: /* append (or write when absent or grown large) */ {
        if (!m->present || m->len + len > MAX_DATA) { op_private(c, which, 0); return; }
        int e = write_var(path, NV_BS_RT | APPEND, data, len, 0);
        if (e) { complain(c, "append", c->names[which], e); return; }
        memcpy(m->data + m->len, data, len); m->len += len;
        break;
    }
    case 2: /* read */ {
        ssize_t n = read_var(path, buf, sizeof buf);
        if (!m->present) { if (n != -ENOENT) complain(c, "read of a deleted variable", c->names[which], n < 0 ? (int)-n : 0); return; }
        if (n < 0) { complain(c, "read", c->names[which], (int)-n); return; }
        uint32_t attrs; memcpy(&attrs, buf, 4);
        if ((size_t)n != 4 + m->len || attrs != NV_BS_RT || memcmp(buf + 4, m->data, m->len) != 0)
            complain(c, "read", c->names[which], 0);
        break;
    }
    case 3: /* delete */ {
        int me = make_mutable(path);
        if (me && me != ENOENT) { complain(c, "make mutable", c->names[which], me); return; }
        if (unlink(path) == 0) { if (!m->present) complain(c, "unlink of a deleted variable succeeded", c->names[which], 0); m->present = 0; }
        else if (errno != ENOENT || m->present) complain(c, "unlink", c->names[which], errno);
        break;
    }
    case 4: /* stat */ {
        struct stat st;
        if (stat(path, &st) == 0) {
            if (!m->present || (size_t)st.st_size != 4 + m->len) complain(c, "stat size", c->names[which], 0);
        } else if (errno != ENOENT || m->present) complain(c, "stat", c->names[which], errno);
        break;
    }
    case 5: /* chattr +i then -i: an immutable file refuses writes meanwhile */ {
        if (!m->present) return;
        int fd = open(path, O_RDONLY);
        if (fd < 0) { complain(c, "open for chattr", c->names[which], errno); return; }
        int flags = 0;
        if (ioctl(fd, FS_IOC_GETFLAGS, &flags) != 0) { complain(c, "getflags", c->names[which], errno); close(fd); return; }
        flags |= FS_IMMUTABLE_FL;
        if (ioctl(fd, FS_IOC_SETFLAGS, &flags) != 0) complain(c, "setflags +i", c->names[which], errno);
        int wfd = open(path, O_WRONLY);
        if (wfd >= 0 || errno != EPERM) complain(c, "open for writing an immutable file", c->names[which], wfd >= 0 ? 0 : errno);
        if (wfd >= 0) close(wfd);
        flags &= ~FS_IMMUTABLE_FL;
        if (ioctl(fd, FS_IOC_SETFLAGS, &flags) != 0) complain(c, "setflags -i", c->names[which], errno);
        close(fd);
        break;
    }
    }
}

static void op_shared(struct client *c, int kind, uint32_t *seq) {
    int which = rand_r(&c->seed) % SHARED;
    char path[512];
    snprintf(path, sizeof path, "%s/StressShared%d-%s", mnt, which, GUID);
    unsigned char v[16];
    if (kind == 0) {
        uint32_t magic = 0x53545253, id = c->id, s = ++*seq;
        memcpy(v, &magic, 4); memcpy(v + 4, &id, 4); memcpy(v + 8, &s, 4);
        uint32_t sum = shared_sum(v); memcpy(v + 12, &sum, 4);
        int e = write_var(path, NV_BS_RT, v, 16, 1);
        /* Another client may have just created it (immutable until its creator clears
         * the flag): clear it and try once more, as a client racing a creator would. */
        if (e == EPERM) e = write_var(path, NV_BS_RT, v, 16, 1);
        if (e) complain(c, "shared write", path, e);
    } else {
        unsigned char buf[64];
        ssize_t n = read_var(path, buf, sizeof buf);
        if (n == -ENOENT) return;  /* not written yet */
        if (n < 0) { complain(c, "shared read", path, (int)-n); return; }
        uint32_t magic, sum;
        if (n == 0) return;  /* created by another client, its write not yet done */
        memcpy(&magic, buf + 4, 4); memcpy(&sum, buf + 16, 4);
        if (n != 20 || magic != 0x53545253 || sum != shared_sum(buf + 4)) complain(c, "shared value", path, 0);
    }
}

static void op_list(struct client *c) {
    DIR *d = opendir(mnt);
    if (!d) { complain(c, "opendir", mnt, errno); return; }
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || n++ > 16) continue;
        char path[512];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", mnt, e->d_name);
        /* Another client may delete it between readdir and stat. */
        if (stat(path, &st) != 0 && errno != ENOENT) complain(c, "stat after readdir", e->d_name, errno);
    }
    closedir(d);
}

static void *client_main(void *arg) {
    struct client *c = arg;
    uint32_t seq = 0;
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    do {
        int r = rand_r(&c->seed) % 20;
        if (r < 12) op_private(c, rand_r(&c->seed) % 2, r % 6);
        else if (r < 17) op_shared(c, r % 2, &seq);
        else op_list(c);
        c->ops++;
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while (now.tv_sec - start.tv_sec < seconds);
    return NULL;
}

static int run_process(int p, int threads, const char *model_dir) {
    struct client *clients = calloc(threads, sizeof *clients);
    pthread_t *tids = calloc(threads, sizeof *tids);
    for (int t = 0; t < threads; t++) {
        struct client *c = &clients[t];
        c->id = p * threads + t;
        c->seed = 0x5eed + c->id * 7919 + (unsigned)getpid();
        for (int w = 0; w < 2; w++) snprintf(c->names[w], sizeof c->names[w], "Stress%d_%d-%s", c->id, w, GUID);
        pthread_create(&tids[t], NULL, client_main, c);
    }
    long ops = 0, errors = 0;
    char path[512];
    snprintf(path, sizeof path, "%s/model-%d", model_dir, p);
    FILE *f = fopen(path, "w");
    for (int t = 0; t < threads; t++) {
        pthread_join(tids[t], NULL);
        ops += clients[t].ops; errors += clients[t].errors;
        for (int w = 0; w < 2; w++) {
            struct model *m = &clients[t].m[w];
            fprintf(f, "%s ", clients[t].names[w]);
            if (!m->present) fprintf(f, "-");
            for (size_t i = 0; m->present && i < m->len; i++) fprintf(f, "%02x", m->data[i]);
            fprintf(f, "\n");
        }
    }
    fclose(f);
    printf("process %d: ops=%ld errors=%ld\n", p, ops, errors);
    fflush(stdout);
    /* Report through the exit status (capped) and a counts file. */
    snprintf(path, sizeof path, "%s/counts-%d", model_dir, p);
    f = fopen(path, "w"); fprintf(f, "%ld %ld\n", ops, errors); fclose(f);
    return errors ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc != 6) { fprintf(stderr, "usage: stress MOUNT PROCESSES THREADS SECONDS MODEL_DIR\n"); return 64; }
    mnt = argv[1];
    int processes = atoi(argv[2]), threads = atoi(argv[3]);
    seconds = atoi(argv[4]);
    const char *model_dir = argv[5];
    for (int p = 0; p < processes; p++) {
        pid_t pid = fork();
        if (pid == 0) _exit(run_process(p, threads, model_dir));
        if (pid < 0) { perror("fork"); return 1; }
    }
    int failed = 0;
    for (int p = 0; p < processes; p++) {
        int st;
        wait(&st);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) failed = 1;
    }
    long ops = 0, errors = 0;
    for (int p = 0; p < processes; p++) {
        char path[512]; long o = 0, e = 0;
        snprintf(path, sizeof path, "%s/counts-%d", model_dir, p);
        FILE *f = fopen(path, "r");
        if (!f || fscanf(f, "%ld %ld", &o, &e) != 2) { failed = 1; e = 1; }
        if (f) fclose(f);
        ops += o; errors += e;
    }
    printf("ops=%ld errors=%ld clients=%d seconds=%d\n", ops, errors, processes * threads, seconds);
    return failed || errors ? 1 : 0;
}
