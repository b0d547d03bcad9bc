// The seccomp supervisor of `efivarfs-bridge run`: CMD and everything it starts run under a
// filter that sends statfs, fstatfs, open, openat and openat2 to us (SECCOMP_RET_USER_NOTIF,
// include/uapi/linux/seccomp.h; Documentation/userspace-api/seccomp_filter.rst, "Userspace
// Notification"). We change exactly two answers, and only about the efivars mount:
//
//   * statfs/fstatfs of anything on the mount (same st_dev): f_type = EFIVARFS_MAGIC,
//     every other field as the FUSE mount reports it. This is what libefivar
//     (rhboot/efivar src/efivarfs.c efivarfs_probe) and go-efilib (canonical/go-efilib
//     vars_linux.go probeEfivarfs, a raw SYS_STATFS) check.
//   * opening a mount table (/proc/[self|thread-self|PID|PID/task/TID]/mounts|mountinfo,
//     /proc/mounts, /etc/mtab when it links there) of a process in our mount namespace: a
//     copy in which the mount's lines say type "efivarfs", source "efivarfs", as the
//     kernel's efivarfs would. efitools (mjg59/efitools lib/kernel_efivars.c
//     kernel_variable_init, via `mount -l`, i.e. util-linux reading
//     /proc/self/mountinfo) and scripts grepping /proc/mounts look there.
//
// Every other call, and every call about another path or process, is let through
// unchanged with SECCOMP_USER_NOTIF_FLAG_CONTINUE.
//
// TOCTOU: we look at the path (in the caller's memory) and at the filesystem after the
// caller asked, and the caller's memory or the tree may change in between. The header's
// warning about SECCOMP_USER_NOTIF_FLAG_CONTINUE applies: this is not a security boundary.
// That is acceptable here only because every answer we give is a read-only fact (a
// filesystem type, a copy of a mount table) about a mount that does not change while CMD
// runs; a racing caller can at worst get the fact about the other path, never access it
// did not have (the one exception: we stat/statfs as the supervisor, so a caller that
// could not search a directory on the way to the mount gets the answer anyway — the mount
// point itself is 0755 like the kernel's).
//
// Why one file of this length: every answer the supervisor gives goes through the same
// checks of the notification (SECCOMP_IOCTL_NOTIF_ID_VALID before and after reading the
// caller's memory, the caller's mount namespace), and the mount-table rewrites are only
// reached from there; keeping them together keeps those checks in one place.
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
#define SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (1UL << 5)  // Linux 6.0
#endif
#ifndef SECCOMP_ADDFD_FLAG_SEND
#define SECCOMP_ADDFD_FLAG_SEND (1UL << 1)  // Linux 5.14
#endif

#if defined(__x86_64__)
#define EBR_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define EBR_AUDIT_ARCH AUDIT_ARCH_AARCH64
#else
#error "efivarfs-bridge run: add this architecture's AUDIT_ARCH_* value"
#endif

int ebr_seccomp_available(void) {
    uint32_t action = SECCOMP_RET_USER_NOTIF;
    return (int)syscall(SYS_seccomp, SECCOMP_GET_ACTION_AVAIL, 0, &action) == 0 ? 0 : -1;
}

int ebr_seccomp_install(void) {
    // Native-ABI calls only: a 32-bit (i386 compat) or x32 caller has other numbers and is
    // let through unchanged (documented in docs/efivarfs-compatibility.md).
    const uint32_t nrs[] = {
        SYS_statfs, SYS_fstatfs, SYS_openat, SYS_openat2,
#ifdef SYS_open
        SYS_open,
#endif
    };
    enum { n = sizeof nrs / sizeof nrs[0] };
    struct sock_filter f[4 + n + 2];
    unsigned i = 0;
    f[i++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
    f[i++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, EBR_AUDIT_ARCH, 1, 0);
    f[i++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    f[i++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
    for (unsigned k = 0; k < n; k++)
        f[i++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nrs[k], (uint8_t)(n - k), 0);
    f[i++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    f[i++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF);
    struct sock_fprog prog = {.len = (unsigned short)i, .filter = f};

    // WAIT_KILLABLE_RECV: once we have received a call, only a fatal signal interrupts the
    // caller's wait, so a program that is signalled often (Go's SIGURG preemption) is not
    // sent back to restart the call again and again. Older kernels refuse the flag (EINVAL).
    unsigned long flags = SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
    bool tried_nnp = false;
    for (;;) {
        long fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
        if (fd >= 0) return (int)fd;
        if (errno == EINVAL && (flags & SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV)) {
            flags &= ~SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
            continue;
        }
        // Without CAP_SYS_ADMIN a filter needs no_new_privs. We set it only then: it would
        // also stop set-uid programs (sudo, fusermount3) from gaining privileges in CMD.
        if (errno == EACCES && !tried_nnp) {
            tried_nnp = true;
            if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -1;
            continue;
        }
        return -1;
    }
}

bool ebr_mntns_of(pid_t pid, char *out, size_t size) {
    char p[64];
    snprintf(p, sizeof p, "/proc/%d/ns/mnt", (int)pid);
    ssize_t n = readlink(p, out, size - 1);
    if (n < 0) return false;
    out[n] = 0;
    return true;
}

struct ebr_supervisor {
    int listener;
    dev_t dev;
    char mntns[64];
    struct seccomp_notif_sizes sizes;
    struct seccomp_notif *req;
    struct seccomp_notif_resp *resp;
    bool addfd_send;  // SECCOMP_ADDFD_FLAG_SEND works (5.14+)
    long page;
};

struct ebr_supervisor *ebr_supervisor_new(int listener, dev_t dev, const char *mntns) {
    struct ebr_supervisor *s = calloc(1, sizeof *s);
    if (!s) { ebr_msg_errno("allocating the supervisor"); return NULL; }
    s->listener = listener;
    s->dev = dev;
    snprintf(s->mntns, sizeof s->mntns, "%s", mntns);
    // The structures may grow in newer kernels: allocate what this kernel says.
    if (syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &s->sizes) != 0) {
        ebr_msg_errno("seccomp(SECCOMP_GET_NOTIF_SIZES)");
        free(s);
        return NULL;
    }
    size_t req_size = s->sizes.seccomp_notif > sizeof(struct seccomp_notif) ? s->sizes.seccomp_notif : sizeof(struct seccomp_notif);
    size_t resp_size = s->sizes.seccomp_notif_resp > sizeof(struct seccomp_notif_resp) ? s->sizes.seccomp_notif_resp : sizeof(struct seccomp_notif_resp);
    s->sizes.seccomp_notif = (__u16)req_size;
    s->sizes.seccomp_notif_resp = (__u16)resp_size;
    s->req = calloc(1, req_size);
    s->resp = calloc(1, resp_size);
    if (!s->req || !s->resp) {
        ebr_msg_errno("allocating notification buffers");
        ebr_supervisor_free(s);
        return NULL;
    }
    s->addfd_send = true;
    s->page = sysconf(_SC_PAGESIZE);
    if (s->page <= 0) s->page = 4096;
    return s;
}

void ebr_supervisor_free(struct ebr_supervisor *s) {
    if (!s) return;
    free(s->req);
    free(s->resp);
    free(s);
}

enum outcome {
    CONTINUE,  // let the kernel run the call as if we were not here
    REPLY,     // s->resp holds our answer
    ANSWERED,  // answered already (ADDFD with SEND)
    GONE,      // the caller is no longer waiting: nothing to answer
};

/// A NUL-terminated string at `addr` in the caller, read page by page so that a string
/// ending just before an unmapped page is still read.
static bool read_string(struct ebr_supervisor *s, int mem, uint64_t addr, char *out, size_t size) {
    size_t got = 0;
    while (got < size) {
        uint64_t a = addr + got;
        size_t page_left = (size_t)(s->page - (long)(a % (uint64_t)s->page));
        size_t want = page_left < size - got ? page_left : size - got;
        ssize_t n = pread(mem, out + got, want, (off_t)a);
        if (n <= 0) return false;
        if (memchr(out + got, 0, (size_t)n)) return true;
        got += (size_t)n;
    }
    return false;  // longer than PATH_MAX: the kernel answers ENAMETOOLONG itself
}

/// The caller's path as we can reach it: through /proc/<tid>/root for an absolute path
/// (right even if the caller is chrooted), /proc/<tid>/cwd or /proc/<tid>/fd/<dirfd> for a
/// relative one.
static bool caller_path(pid_t tid, int dirfd, const char *path, char *out, size_t size) {
    if (path[0] == '/') return ebr_path(out, size, "/proc/%d/root%s", (int)tid, path);
    if (dirfd == AT_FDCWD) return ebr_path(out, size, "/proc/%d/cwd/%s", (int)tid, path);
    if (dirfd < 0) return false;
    return ebr_path(out, size, "/proc/%d/fd/%d/%s", (int)tid, dirfd, path);
}

/// stat/statfs of `path` says it is on our mount: answer with EFIVARFS_MAGIC.
static enum outcome answer_statfs(struct ebr_supervisor *s, pid_t tid, const char *path, uint64_t buf) {
    struct stat st;
    if (stat(path, &st) != 0 || st.st_dev != s->dev) return CONTINUE;
    struct statfs sf;
    if (statfs(path, &sf) != 0) return CONTINUE;  // the kernel will give the caller the same error
    sf.f_type = (__fsword_t)EBR_EFIVARFS_MAGIC;
    // The kernel writes the same struct (asm-generic/statfs.h; glibc's struct statfs is it
    // on 64-bit), so the caller sees its fields as the real call would have filled them.
    // process_vm_writev, not the /proc/<tid>/mem descriptor: it honours page protections, so
    // a buffer the caller may not write gets EFAULT as from the kernel (a write through
    // /proc/<tid>/mem would force it). It names the task by pid, so ID_VALID is checked again
    // right before; a pid reused in between would need the pid space to wrap meanwhile.
    if (ioctl(s->listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &s->req->id) != 0) return GONE;
    struct iovec local = {.iov_base = &sf, .iov_len = sizeof sf};
    struct iovec remote = {.iov_base = (void *)(uintptr_t)buf, .iov_len = sizeof sf};
    ssize_t n = process_vm_writev(tid, &local, 1, &remote, 1, 0);
    if (n < 0 && errno != EFAULT && errno != ESRCH) ebr_msg_errno("process_vm_writev to %d", (int)tid);
    s->resp->flags = 0;
    s->resp->val = 0;
    s->resp->error = n == (ssize_t)sizeof sf ? 0 : -EFAULT;
    return REPLY;
}

static char *read_whole(const char *path, size_t *len) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NULL;
    size_t cap = 16384, used = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        if (used == cap) {
            char *bigger = realloc(buf, cap * 2 + 1);
            if (!bigger) { free(buf); buf = NULL; break; }
            buf = bigger;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + used, cap - used);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) { free(buf); buf = NULL; break; }
        if (n == 0) break;
        used += (size_t)n;
    }
    int saved = errno;
    ebr_close(fd);
    errno = saved;
    if (buf) { buf[used] = 0; *len = used; }
    return buf;
}

/// Appends to a growing buffer; false when out of memory.
struct text { char *p; size_t len, cap; };
static bool append(struct text *t, const char *s, size_t n) {
    if (t->len + n + 1 > t->cap) {
        size_t cap = (t->cap ? t->cap * 2 : 16384);
        while (cap < t->len + n + 1) cap *= 2;
        char *p = realloc(t->p, cap);
        if (!p) return false;
        t->p = p;
        t->cap = cap;
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = 0;
    return true;
}

/// One of our mounts in the table: its mount point (escaped as the table escapes it) and
/// its per-mount options (mountinfo field 6).
struct ours { char point[PATH_MAX]; char options[256]; };

/// A mount table rewritten line by line: `edit` appends a replacement for a line and
/// returns 1, returns 0 to keep the line as it is, or -1 when out of memory.
typedef int (*line_edit)(struct text *out, const char *line, size_t len, void *ctx);

static char *rewrite_lines(const char *orig, line_edit edit, void *ctx) {
    struct text out = {0};
    for (const char *line = orig; *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        int changed = edit(&out, line, len, ctx);
        if (changed < 0) goto oom;
        if (!changed && !append(&out, line, len)) goto oom;
        if (end && !append(&out, "\n", 1)) goto oom;
        line = end ? end + 1 : line + len;
    }
    if (!out.p && !append(&out, "", 0)) goto oom;
    return out.p;
oom:
    free(out.p);
    errno = ENOMEM;
    return NULL;
}

struct mountinfo_edit { const char *want; struct ours *found; int max; int *count; };

/// A NUL-terminated copy of one line for strtok_r; false when it does not fit (the caller
/// then leaves the line as it is).
static int copy_line(char *copy, size_t cap, const char *line, size_t len) {
    if (len >= cap) return 0;
    memcpy(copy, line, len);
    copy[len] = 0;
    return 1;
}

/// One mountinfo line: "id parent maj:min root mountpoint options [optional...] - fstype
/// source superopts"; ours (by device) becomes "... - efivarfs efivarfs rw|ro".
static int edit_mountinfo_line(struct text *out, const char *line, size_t len, void *ctx) {
    struct mountinfo_edit *e = ctx;
    char copy[8192];
    if (!copy_line(copy, sizeof copy, line, len)) return 0;
    char *fields[6] = {0};
    char *save = NULL, *tok = strtok_r(copy, " ", &save);
    for (int i = 0; i < 6 && tok; i++, tok = strtok_r(NULL, " ", &save)) fields[i] = tok;
    const char *dash = strstr(line, " - ");
    if (!fields[5] || strcmp(fields[2], e->want) != 0 || !dash || dash >= line + len) return 0;
    // superopts begin with "rw" or "ro".
    const char *super = dash + 3;
    const char *sp1 = memchr(super, ' ', (size_t)(line + len - super));
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(line + len - sp1 - 1)) : NULL;
    bool ro = sp2 && strncmp(sp2 + 1, "ro", 2) == 0;
    if (!append(out, line, (size_t)(dash - line)) || !append(out, " - efivarfs efivarfs ", 21) || !append(out, ro ? "ro" : "rw", 2))
        return -1;
    if (*e->count < e->max) {
        snprintf(e->found[*e->count].point, sizeof e->found[*e->count].point, "%s", fields[4]);
        snprintf(e->found[*e->count].options, sizeof e->found[*e->count].options, "%s", fields[5]);
        (*e->count)++;
    }
    return 1;
}

/// /proc/<pid>/mountinfo with our mount's lines saying what efivarfs's would:
/// "... - efivarfs efivarfs rw" (fs/proc_namespace.c show_mountinfo: fstype, source, then
/// the superblock's rw/ro and the filesystem's options; efivarfs shows uid=/gid= only when
/// set, FUSE's user_id=,group_id=,default_permissions are dropped).
static char *rewrite_mountinfo(struct ebr_supervisor *s, const char *orig, struct ours *found, int max, int *count) {
    *count = 0;
    char want[32];
    snprintf(want, sizeof want, "%u:%u", major(s->dev), minor(s->dev));
    struct mountinfo_edit e = { want, found, max, count };
    return rewrite_lines(orig, edit_mountinfo_line, &e);
}

struct mounts_edit { const struct ours *found; int count; };

/// One /proc/<pid>/mounts line: "source point type options 0 0"; ours (by mount point and
/// a fuse type) becomes "efivarfs <point> efivarfs <options> 0 0".
static int edit_mounts_line(struct text *out, const char *line, size_t len, void *ctx) {
    struct mounts_edit *e = ctx;
    char copy[8192];
    if (!copy_line(copy, sizeof copy, line, len)) return 0;
    char *save = NULL;
    strtok_r(copy, " ", &save);
    char *point = strtok_r(NULL, " ", &save);
    char *type = strtok_r(NULL, " ", &save);
    for (int i = 0; point && type && i < e->count; i++) {
        if (strncmp(type, "fuse", 4) != 0 || strcmp(point, e->found[i].point) != 0) continue;
        if (!append(out, "efivarfs ", 9) || !append(out, point, strlen(point)) || !append(out, " efivarfs ", 10) ||
            !append(out, e->found[i].options, strlen(e->found[i].options)) || !append(out, " 0 0", 4))
            return -1;
        return 1;
    }
    return 0;
}

/// /proc/<pid>/mounts: "efivarfs <point> efivarfs rw,nosuid,nodev,noexec,relatime 0 0"
/// for our mount (fs/proc_namespace.c show_vfsmnt: source, point, type, the mount's
/// options — the superblock's rw/ro, then per-mount flags — and "0 0").
static char *rewrite_mounts(const char *orig, const struct ours *found, int count) {
    struct mounts_edit e = { found, count };
    return rewrite_lines(orig, edit_mounts_line, &e);
}

/// Lexical normalisation of an absolute path: "//", "." and ".." removed.
static void normalize(const char *in, char *out, size_t size) {
    size_t o = 0;
    out[0] = 0;
    const char *p = in;
    while (*p) {
        while (*p == '/') p++;
        if (!*p) break;
        const char *q = strchr(p, '/');
        size_t n = q ? (size_t)(q - p) : strlen(p);
        if (n == 1 && p[0] == '.') {
        } else if (n == 2 && p[0] == '.' && p[1] == '.') {
            while (o > 0 && out[o - 1] != '/') o--;
            if (o > 0) o--;
            out[o] = 0;
        } else if (o + n + 2 < size) {
            out[o++] = '/';
            memcpy(out + o, p, n);
            o += n;
            out[o] = 0;
        }
        p += n;
    }
    if (o == 0 && size > 1) { out[0] = '/'; out[1] = 0; }
}

static bool all_digits(const char *s, size_t n) {
    if (n == 0) return false;
    for (size_t i = 0; i < n; i++) if (s[i] < '0' || s[i] > '9') return false;
    return true;
}

/// Which process's mount table `abs` names, and which format: 1 = mounts, 2 = mountinfo.
static int classify(const char *abs, pid_t tid, pid_t *which) {
    const char *rest;
    if (strcmp(abs, "/proc/mounts") == 0) { *which = tid; return 1; }
    if (strncmp(abs, "/proc/", 6) != 0) return 0;
    rest = abs + 6;
    const char *slash = strchr(rest, '/');
    if (!slash) return 0;
    size_t n = (size_t)(slash - rest);
    if ((n == 4 && !strncmp(rest, "self", 4)) || (n == 11 && !strncmp(rest, "thread-self", 11))) {
        *which = tid;
    } else if (all_digits(rest, n)) {
        *which = (pid_t)atoi(rest);
        // /proc/<pid>/task/<tid>/...
        if (!strncmp(slash, "/task/", 6)) {
            const char *t = slash + 6, *ts = strchr(t, '/');
            if (!ts || !all_digits(t, (size_t)(ts - t))) return 0;
            *which = (pid_t)atoi(t);
            slash = ts;
        }
    } else {
        return 0;
    }
    if (!strcmp(slash, "/mounts")) return 1;
    if (!strcmp(slash, "/mountinfo")) return 2;
    return 0;
}

/// A read-only descriptor of `text`, installed in the caller as the result of its open.
static enum outcome answer_with_file(struct ebr_supervisor *s, const char *name, const char *text, int open_flags) {
    int mfd = memfd_create(name, MFD_CLOEXEC);
    if (mfd < 0) { ebr_msg_errno("memfd_create"); return CONTINUE; }
    size_t len = strlen(text), done = 0;
    while (done < len) {
        ssize_t n = write(mfd, text + done, len - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) { ebr_msg_errno("writing the mount table copy"); close(mfd); return CONTINUE; }
        done += (size_t)n;
    }
    // Reopened read-only, as the caller asked: a write to it fails with EBADF as on /proc.
    char p[64];
    snprintf(p, sizeof p, "/proc/self/fd/%d", mfd);
    int ro = open(p, O_RDONLY | O_CLOEXEC);
    int saved = errno;
    if (close(mfd) != 0) ebr_msg_errno("close memfd");
    if (ro < 0) { errno = saved; ebr_msg_errno("reopening the mount table copy"); return CONTINUE; }

    struct seccomp_notif_addfd add = {
        .id = s->req->id,
        .flags = s->addfd_send ? SECCOMP_ADDFD_FLAG_SEND : 0,
        .srcfd = (__u32)ro,
        .newfd = 0,
        .newfd_flags = (__u32)(open_flags & O_CLOEXEC),
    };
    enum outcome result = CONTINUE;
    int r = ioctl(s->listener, SECCOMP_IOCTL_NOTIF_ADDFD, &add);
    if (r < 0 && errno == EINVAL && s->addfd_send) {
        // Before 5.14 there is no SEND flag: install, then answer with the number. (If the
        // caller is interrupted in between, it keeps an fd it does not know about.)
        s->addfd_send = false;
        add.flags = 0;
        r = ioctl(s->listener, SECCOMP_IOCTL_NOTIF_ADDFD, &add);
        if (r >= 0) {
            s->resp->flags = 0;
            s->resp->error = 0;
            s->resp->val = r;
            result = REPLY;
        }
    } else if (r >= 0) {
        result = ANSWERED;
    }
    if (r < 0) {
        if (errno == ENOENT) result = GONE;
        else ebr_msg_errno("SECCOMP_IOCTL_NOTIF_ADDFD");
    }
    if (close(ro) != 0) ebr_msg_errno("close");
    return result;
}

static enum outcome answer_open(struct ebr_supervisor *s, int mem, pid_t tid, int dirfd, uint64_t path_addr, uint64_t flags) {
    // Only plain reads of an existing file can be a tool reading the mount table.
    if ((flags & O_ACCMODE) != O_RDONLY || (flags & (O_PATH | O_DIRECTORY | O_CREAT | __O_TMPFILE))) return CONTINUE;
    char path[PATH_MAX];
    if (!read_string(s, mem, path_addr, path, sizeof path)) return CONTINUE;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    // Cheap test first: every other open goes straight back to the kernel.
    if (strcmp(base, "mounts") && strcmp(base, "mountinfo") && strcmp(base, "mtab")) return CONTINUE;

    char joined[PATH_MAX * 2], abs[PATH_MAX * 2];
    if (path[0] == '/') {
        snprintf(joined, sizeof joined, "%s", path);
    } else {
        char link[64], dir[PATH_MAX];
        if (dirfd == AT_FDCWD) snprintf(link, sizeof link, "/proc/%d/cwd", (int)tid);
        else if (dirfd >= 0) snprintf(link, sizeof link, "/proc/%d/fd/%d", (int)tid, dirfd);
        else return CONTINUE;
        ssize_t n = readlink(link, dir, sizeof dir - 1);
        if (n < 0) return CONTINUE;
        dir[n] = 0;
        if (!ebr_path(joined, sizeof joined, "%s/%s", dir, path)) return CONTINUE;
    }
    normalize(joined, abs, sizeof abs);
    if (strcmp(abs, "/etc/mtab") == 0) {
        // Debian, like most distributions since util-linux 2.22, has /etc/mtab ->
        // ../proc/self/mounts; an old-style regular /etc/mtab is the caller's own file.
        char link[64], target[PATH_MAX];
        snprintf(link, sizeof link, "/proc/%d/root/etc/mtab", (int)tid);
        ssize_t n = readlink(link, target, sizeof target - 1);
        if (n < 0) return CONTINUE;
        target[n] = 0;
        size_t tl = strlen(target);
        if (!(tl >= 16 && !strcmp(target + tl - 16, "proc/self/mounts")) && !(tl >= 11 && !strcmp(target + tl - 11, "proc/mounts")))
            return CONTINUE;
        snprintf(abs, sizeof abs, "/proc/self/mounts");
    }
    pid_t which = 0;
    int kind = classify(abs, tid, &which);
    if (!kind) return CONTINUE;
    // Only tables of our namespace: a process elsewhere cannot see our mount anyway, and
    // its table must stay the real file (same fd type, poll(2) on changes, ...).
    char ns[64];
    if (!ebr_mntns_of(which, ns, sizeof ns) || strcmp(ns, s->mntns) != 0) return CONTINUE;

    // The table as `which` sees it (mount points relative to its root:
    // fs/proc_namespace.c mounts_open_common takes the task's fs root).
    char src[64];
    size_t len = 0;
    snprintf(src, sizeof src, "/proc/%d/mountinfo", (int)which);
    char *info = read_whole(src, &len);
    if (!info) return CONTINUE;
    struct ours found[8];
    int count = 0;
    char *rewritten = rewrite_mountinfo(s, info, found, 8, &count);
    free(info);
    if (!rewritten) { ebr_msg_errno("rewriting %s", src); return CONTINUE; }
    if (kind == 1) {
        free(rewritten);
        snprintf(src, sizeof src, "/proc/%d/mounts", (int)which);
        char *mounts = read_whole(src, &len);
        if (!mounts) return CONTINUE;
        rewritten = rewrite_mounts(mounts, found, count);
        free(mounts);
        if (!rewritten) { ebr_msg_errno("rewriting %s", src); return CONTINUE; }
    }
    enum outcome o = answer_with_file(s, kind == 1 ? "mounts" : "mountinfo", rewritten, (int)flags);
    free(rewritten);
    return o;
}

static enum outcome decide(struct ebr_supervisor *s) {
    struct seccomp_notif *req = s->req;
    pid_t tid = (pid_t)req->pid;
    if (tid <= 0) return CONTINUE;  // not visible in our pid namespace: nothing to look at
    char p[64];
    snprintf(p, sizeof p, "/proc/%d/mem", (int)tid);
    // On any failure below the answer is CONTINUE: if the caller is gone, SEND fails with
    // ENOENT and nothing happens; if it is not, it must not be left waiting.
    int mem = open(p, O_RDWR | O_CLOEXEC);
    if (mem < 0) return CONTINUE;
    // The descriptor pins the caller's memory. The caller could have died and its pid been
    // reused between RECV and the open; ID_VALID after the open proves that the task is
    // still the one waiting in this notification, so every read through `mem` comes from
    // the caller (seccomp_unotify(2), "SECCOMP_IOCTL_NOTIF_ID_VALID").
    if (ioctl(s->listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &req->id) != 0) {
        ebr_close(mem);
        return CONTINUE;
    }
    enum outcome o = CONTINUE;
    const __u64 *a = req->data.args;
    int nr = req->data.nr;
    char path[PATH_MAX], where[PATH_MAX + 64];
    if (nr == SYS_statfs) {
        if (read_string(s, mem, a[0], path, sizeof path) && path[0] && caller_path(tid, AT_FDCWD, path, where, sizeof where))
            o = answer_statfs(s, tid, where, a[1]);
    } else if (nr == SYS_fstatfs) {
        int fd = (int)a[0];
        if (fd >= 0 && ebr_path(where, sizeof where, "/proc/%d/fd/%d", (int)tid, fd))
            o = answer_statfs(s, tid, where, a[1]);
    } else if (nr == SYS_openat) {
        o = answer_open(s, mem, tid, (int)a[0], a[1], a[2]);
#ifdef SYS_open
    } else if (nr == SYS_open) {
        o = answer_open(s, mem, tid, AT_FDCWD, a[0], a[1]);
#endif
    } else if (nr == SYS_openat2) {
        struct open_how how;
        // RESOLVE_* flags change how the path resolves; leave those calls to the kernel.
        if (a[3] >= sizeof how && pread(mem, &how, sizeof how, (off_t)a[2]) == (ssize_t)sizeof how && how.resolve == 0)
            o = answer_open(s, mem, tid, (int)a[0], a[1], how.flags);
    }
    if (close(mem) != 0) ebr_msg_errno("close /proc/%d/mem", (int)tid);
    return o;
}

int ebr_supervisor_handle_one(struct ebr_supervisor *s) {
    memset(s->req, 0, s->sizes.seccomp_notif);  // RECV wants a zeroed buffer
    if (ioctl(s->listener, SECCOMP_IOCTL_NOTIF_RECV, s->req) != 0) {
        // ENOENT: the caller was killed or interrupted between poll and RECV.
        if (errno == EINTR || errno == ENOENT) return 0;
        ebr_msg_errno("SECCOMP_IOCTL_NOTIF_RECV");
        return -1;
    }
    memset(s->resp, 0, s->sizes.seccomp_notif_resp);
    s->resp->id = s->req->id;
    enum outcome o = decide(s);
    if (o == ANSWERED || o == GONE) return 0;
    if (o == CONTINUE) {
        s->resp->flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
        s->resp->val = 0;
        s->resp->error = 0;
    }
    if (ioctl(s->listener, SECCOMP_IOCTL_NOTIF_SEND, s->resp) != 0 && errno != ENOENT)
        ebr_msg_errno("SECCOMP_IOCTL_NOTIF_SEND");
    return 0;
}
