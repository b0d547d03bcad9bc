/* Load driver: runs one workload against a mounted efivarfs-like directory with plain
 * syscalls and prints operations per second and latency percentiles.
 *
 * Usage: load <dir> <write|list|read|delete|mixed|durable> <N> [threads] [ops per thread]
 *   write   create N variables Bench<i> (4 attribute bytes + 64 bytes of data)
 *   list    readdir + stat of every entry
 *   read    open/read/close each of the N variables
 *   delete  delete each of the N variables as libefivar does (efivarfs_del_variable): open
 *           O_RDONLY, FS_IOC_GETFLAGS, FS_IOC_SETFLAGS only if immutable, close, unlink
 *   mixed   T threads: a random mix of read (60%), rewrite (30%) and stat (10%) over the N
 *   durable T threads rewriting their own variables (a durable store syncs every one)
 * Variables live under LINUX_EFI_CRASH_GUID, whose names efivarfs never makes immutable.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/ioctl.h>
#include <linux/fs.h>
#include <time.h>
#include <unistd.h>

static const char *GUID = "cfc8fc79-be2e-4ddc-97f0-9f98bfe298a0";
static const char *dir;
static int n_vars, ops_per_thread;
static unsigned char payload[4 + 64];

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return x < y ? -1 : x > y; }
static void path(char *out, int i) { snprintf(out, 512, "%s/Bench%d-%s", dir, i, GUID); }

static int op_write_data(int i, int flags, const unsigned char *data) {
    char p[512]; path(p, i);
    int fd = open(p, O_WRONLY | flags, 0644);
    if (fd < 0) return -1;
    int ok = write(fd, data, sizeof payload) == (ssize_t)sizeof payload;
    close(fd);
    return ok ? 0 : -1;
}
static int op_write(int i, int flags) { return op_write_data(i, flags, payload); }
static int op_read(int i) {
    char p[512], buf[256]; path(p, i);
    int fd = open(p, O_RDONLY);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    return n == (ssize_t)sizeof payload ? 0 : -1;
}
static int op_delete(int i) {
    char p[512]; path(p, i);
    int fd = open(p, O_RDONLY);
    if (fd >= 0) {
        unsigned long flags = 0;
        if (ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0 && (flags & FS_IMMUTABLE_FL)) {
            flags &= ~(unsigned long)FS_IMMUTABLE_FL;
            ioctl(fd, FS_IOC_SETFLAGS, &flags);
        }
        close(fd);
    }
    return unlink(p);
}
static int op_stat(int i) { char p[512]; struct stat st; path(p, i); return stat(p, &st); }

struct result { double *lat; int n; int errors; int id; };

static void *mixed_thread(void *arg) {
    struct result *r = arg;
    unsigned seed = 12345u + (unsigned)r->id;
    for (int k = 0; k < ops_per_thread; k++) {
        int i = rand_r(&seed) % n_vars, what = rand_r(&seed) % 10;
        double t0 = now();
        int rc = what < 6 ? op_read(i) : what < 9 ? op_write(i, O_TRUNC) : op_stat(i);
        r->lat[r->n++] = now() - t0;
        if (rc) r->errors++;
    }
    return NULL;
}
static void *durable_thread(void *arg) {
    struct result *r = arg;
    unsigned char data[sizeof payload];
    memcpy(data, payload, sizeof data);
    for (int k = 0; k < ops_per_thread; k++) {
        /* A new value every time: a store may skip a rewrite of identical data. */
        memcpy(data + 4, &k, sizeof k);
        double t0 = now();
        int rc = op_write_data(r->id, O_CREAT | O_TRUNC, data);
        r->lat[r->n++] = now() - t0;
        if (rc) r->errors++;
    }
    return NULL;
}

static void report(const char *name, double *lat, int n, int errors, double secs) {
    qsort(lat, n, sizeof *lat, cmp);
    double p50 = n ? lat[n / 2] : 0, p99 = n ? lat[(int)(n * 0.99) < n ? (int)(n * 0.99) : n - 1] : 0;
    printf("%s ops=%d errors=%d secs=%.4f ops_per_s=%.0f p50_us=%.1f p99_us=%.1f\n", name, n, errors, secs, n / secs, p50 * 1e6, p99 * 1e6);
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: load <dir> <workload> <N> [threads] [ops per thread]\n"); return 2; }
    dir = argv[1]; const char *w = argv[2]; n_vars = atoi(argv[3]);
    int threads = argc > 4 ? atoi(argv[4]) : 1;
    ops_per_thread = argc > 5 ? atoi(argv[5]) : 1000;
    payload[0] = 7; for (int i = 4; i < (int)sizeof payload; i++) payload[i] = (unsigned char)i;
    double *lat = calloc(n_vars > ops_per_thread * threads ? n_vars + 16 : ops_per_thread * threads + 16, sizeof *lat);
    int n = 0, errors = 0;
    double t0 = now();
    if (!strcmp(w, "write") || !strcmp(w, "read") || !strcmp(w, "delete")) {
        for (int i = 0; i < n_vars; i++) {
            double s = now();
            int rc = w[0] == 'w' ? op_write(i, O_CREAT) : w[0] == 'r' ? op_read(i) : op_delete(i);
            lat[n++] = now() - s;
            if (rc) errors++;
        }
    } else if (!strcmp(w, "list")) {
        DIR *d = opendir(dir);
        struct dirent *e;
        char p[1024];
        int cap = n_vars + 16;
        while (d && (e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            if (n == cap) { cap *= 2; lat = realloc(lat, cap * sizeof *lat); }  /* the directory may hold more than N */
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            struct stat st;
            double s = now();
            if (stat(p, &st)) errors++;
            lat[n++] = now() - s;
        }
        if (d) closedir(d);
    } else if (!strcmp(w, "mixed") || !strcmp(w, "durable")) {
        pthread_t tid[256];
        struct result res[256];
        for (int t = 0; t < threads; t++) {
            res[t].lat = calloc(ops_per_thread, sizeof(double)); res[t].n = 0; res[t].errors = 0; res[t].id = t;
            pthread_create(&tid[t], NULL, w[0] == 'm' ? mixed_thread : durable_thread, &res[t]);
        }
        for (int t = 0; t < threads; t++) {
            pthread_join(tid[t], NULL);
            memcpy(lat + n, res[t].lat, res[t].n * sizeof(double)); n += res[t].n; errors += res[t].errors;
        }
    } else { fprintf(stderr, "unknown workload %s\n", w); return 2; }
    report(w, lat, n, errors, now() - t0);
    return errors ? 1 : 0;
}
