// `efivarfs-bridge run -- CMD`: the process the user started (same pid: RunCommand.swift
// execs us) sets up a private mount namespace with the variable store mounted at
// /sys/firmware/efi/efivars, runs CMD there under the seccomp supervisor, forwards
// signals to it, and tears everything down when it ends. Processes:
//
//   run (this process, "S")  — namespace owner, seccomp supervisor, signal forwarder,
//    |                          subreaper of everything CMD leaves behind
//    +-- server ("D")        — /proc/self/exe mount --ready-fd 3 ... (own session;
//    |                          PR_SET_PDEATHSIG SIGTERM: unmounts if S dies)
//    +-- janitor ("W")       — waits for S to die without saying goodbye (SIGKILL), then
//    |                          kills what is left in the namespace so that it and the
//    |                          mount go away, and removes the runtime directory
//    +-- CMD ("C")           — own process group (the terminal's foreground group when S
//                               had the terminal); PR_SET_PDEATHSIG SIGKILL
//
// Why one file of this length: the four processes' lifetimes are one state machine — the
// pids, pidfds, the forwarded signals and the shutdown order live in one static `state`
// that the signal handler, the reaper and the teardown all read. Split across files, that
// state would have to be shared by every piece, which is what keeping it private prevents.
#include "internal.h"
#include "CRunSandbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char marker[] = "--efivarfs-bridge-run-sandbox";
const char *ebr_run_sandbox_marker(void) { return marker; }

bool ebr_verbose = false;

void ebr_msg(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("efivarfs-bridge run: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void ebr_msg_errno(const char *fmt, ...) {
    int saved = errno;
    va_list ap;
    va_start(ap, fmt);
    fputs("efivarfs-bridge run: ", stderr);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, ": %s\n", strerror(saved));
    va_end(ap);
    errno = saved;
}

void ebr_close(int fd) {
    if (fd >= 0 && close(fd) != 0 && errno != EINTR) ebr_msg_errno("close(%d)", fd);
}

void ebr_closedir(DIR *d) {
    if (d && closedir(d) != 0) ebr_msg_errno("closedir");
}

bool ebr_path(char *out, size_t size, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, size, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= size) { errno = ENAMETOOLONG; return false; }
    return true;
}

// Signals sent to run's pid that CMD gets instead (SIGCHLD is ours; SIGKILL and SIGSTOP
// cannot be caught: see the janitor and the job-control handling for those).
static const int forwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT, SIGALRM, SIGPWR};

static struct {
    bool private_ns;
    char mntns[64];
    char runtime_dir[PATH_MAX];  // the server's XDG_RUNTIME_DIR (its control socket)
    char fallback_dir[PATH_MAX]; // without a namespace: where the server mounts
    char env_path[PATH_MAX];     // EFIVARFS_PATH for CMD when it needs one (ends with '/')
    char exe_path[PATH_MAX];     // our own binary, for the server's exec ...
    dev_t exe_dev;
    ino_t exe_ino;
    int exe_fd;                  // ... opened again inside the namespace
    int sigfd;
    sigset_t old_mask;
    pid_t server;
    int server_pidfd;
    pid_t janitor;
    int janitor_pipe;
    pid_t child;
    bool child_done;
    int child_status;
    int tty;                     // the terminal we handed to CMD, or -1
} S = {.exe_fd = -1, .sigfd = -1, .server_pidfd = -1, .janitor_pipe = -1, .tty = -1, .child_status = 1 << 8};

static long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int pidfd_open_(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }
static int pidfd_send_signal_(int pidfd, int sig) { return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0); }

// ---- the command -------------------------------------------------------------------

/// What execvp would find, checked before anything is set up: a missing command is
/// exit 127 and a non-executable one 126, as in a shell (POSIX 2.8.2).
static int check_command(const char *name) {
    if (strchr(name, '/')) {
        if (access(name, X_OK) == 0) return 0;
        ebr_msg_errno("%s", name);
        return errno == ENOENT || errno == ENOTDIR ? 127 : 126;
    }
    const char *path = getenv("PATH");
    if (!path || !*path) path = "/bin:/usr/bin";  // glibc execvp's default
    bool denied = false;
    for (const char *p = path;;) {
        const char *colon = strchr(p, ':');
        size_t n = colon ? (size_t)(colon - p) : strlen(p);
        char full[PATH_MAX];
        if (ebr_path(full, sizeof full, "%.*s/%s", (int)n, n ? p : ".", name)) {
            struct stat st;
            if (stat(full, &st) == 0 && S_ISREG(st.st_mode)) {
                if (access(full, X_OK) == 0) return 0;
                denied = true;
            }
        }
        if (!colon) break;
        p = colon + 1;
    }
    if (denied) { ebr_msg("%s: Permission denied", name); return 126; }
    ebr_msg("%s: command not found", name);
    return 127;
}

// ---- cleanup helpers ---------------------------------------------------------------

/// Signals every process in our mount namespace except the ones named; race-free with
/// pidfds (the namespace is checked again through the pidfd's process). Returns how many.
static int sweep(int sig, pid_t keep1, pid_t keep2, pid_t keep3) {
    DIR *d = opendir("/proc");
    if (!d) { ebr_msg_errno("opendir /proc"); return 0; }
    int count = 0;
    struct dirent *e;
    pid_t self = getpid();
    while ((e = readdir(d)) != NULL) {
        char *end;
        long v = strtol(e->d_name, &end, 10);
        if (*end || v <= 0) continue;
        pid_t pid = (pid_t)v;
        if (pid == self || pid == keep1 || pid == keep2 || pid == keep3) continue;
        char ns[64];
        if (!ebr_mntns_of(pid, ns, sizeof ns) || strcmp(ns, S.mntns)) continue;
        int fd = pidfd_open_(pid);
        if (fd < 0) continue;  // exited meanwhile
        if (ebr_mntns_of(pid, ns, sizeof ns) && !strcmp(ns, S.mntns)) {
            if (pidfd_send_signal_(fd, sig) == 0) count++;
            else if (errno != ESRCH) ebr_msg_errno("signalling process %d", (int)pid);
        }
        ebr_close(fd);
    }
    ebr_closedir(d);
    return count;
}

/// Removes our runtime directory (the server's socket directory, the fallback mount
/// point), never crossing into another filesystem: a mount point left mounted (a server
/// that died) is a variable store, not ours to empty.
static void remove_tree(const char *dir, dev_t dev, int depth) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[PATH_MAX];
        struct stat st;
        if (!ebr_path(p, sizeof p, "%s/%s", dir, e->d_name) || lstat(p, &st) != 0) continue;
        if (st.st_dev != dev) { ebr_msg("%s is still mounted; leaving it", p); continue; }
        if (S_ISDIR(st.st_mode) && depth > 0) remove_tree(p, dev, depth - 1);
        else if (!S_ISDIR(st.st_mode) && unlink(p) != 0 && errno != ENOENT) ebr_msg_errno("removing %s", p);
    }
    ebr_closedir(d);
    if (rmdir(dir) != 0 && errno != ENOENT) ebr_msg_errno("removing %s", dir);
}

static void remove_runtime_dirs(void) {
    if (S.fallback_dir[0]) {
        // Normally unmounted by the server; a server that died leaves the mount behind.
        if (umount2(S.fallback_dir, MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT)
            ebr_msg_errno("unmounting %s", S.fallback_dir);
    }
    struct stat st;
    if (S.runtime_dir[0] && lstat(S.runtime_dir, &st) == 0) remove_tree(S.runtime_dir, st.st_dev, 2);
}

/// Waits up to `ms` for the process behind `pidfd` to end (poll reports POLLIN then).
static bool wait_pidfd(int pidfd, int ms) {
    struct pollfd p = {.fd = pidfd, .events = POLLIN};
    long deadline = now_ms() + ms;
    for (;;) {
        long left = deadline - now_ms();
        if (left < 0) left = 0;
        int r = poll(&p, 1, (int)left);
        if (r > 0) return true;
        if (r == 0) return false;
        if (errno != EINTR) { ebr_msg_errno("poll"); return false; }
    }
}

// ---- the janitor -------------------------------------------------------------------

static void janitor_main(int pipe_rd) {
    if (prctl(PR_SET_NAME, "ebr-run-janitor") != 0) ebr_msg_errno("janitor: prctl(PR_SET_NAME)");
    // Out of the terminal's reach, and deaf to everything but SIGKILL: it has to outlive S.
    if (setsid() < 0) ebr_msg_errno("janitor: setsid");
    sigset_t all;
    sigfillset(&all);
    if (sigprocmask(SIG_BLOCK, &all, NULL) != 0) ebr_msg_errno("janitor: sigprocmask");
    char c;
    ssize_t n;
    do n = read(pipe_rd, &c, 1); while (n < 0 && errno == EINTR);
    if (n == 1) _exit(0);  // S finished its own cleanup
    // S is gone without cleaning up (SIGKILL, a crash). Its PDEATHSIG already sent
    // SIGKILL to CMD and SIGTERM to the server; what CMD started is still here.
    if (S.private_ns) {
        for (int round = 0; round < 50 && sweep(SIGKILL, S.server, 0, 0) > 0; round++) usleep(20000);
    }
    if (S.server_pidfd >= 0) {
        if (pidfd_send_signal_(S.server_pidfd, SIGTERM) != 0 && errno != ESRCH) ebr_msg_errno("janitor: stopping the server");
        if (!wait_pidfd(S.server_pidfd, 10000)) {
            ebr_msg("the FUSE server (pid %d) did not stop within 10 s of SIGTERM; killing it", (int)S.server);
            if (pidfd_send_signal_(S.server_pidfd, SIGKILL) != 0 && errno != ESRCH) ebr_msg_errno("janitor: killing the server");
            if (!wait_pidfd(S.server_pidfd, 5000)) ebr_msg("the FUSE server (pid %d) survives SIGKILL", (int)S.server);
        }
    }
    remove_runtime_dirs();
    _exit(0);
}

static int start_janitor(void) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) { ebr_msg_errno("pipe"); return -1; }
    pid_t pid = fork();
    if (pid < 0) { ebr_msg_errno("fork"); close(p[0]); close(p[1]); return -1; }
    if (pid == 0) {
        ebr_close(p[1]);
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null < 0 || dup2(null, 0) != 0 || dup2(null, 1) != 1) ebr_msg_errno("janitor: /dev/null");
        janitor_main(p[0]);
    }
    ebr_close(p[0]);
    S.janitor = pid;
    S.janitor_pipe = p[1];
    return 0;
}

// ---- the server --------------------------------------------------------------------

/// Starts `efivarfs-bridge mount ... --ready-fd 3 MOUNTPOINT` and waits until it is ready.
/// Returns 0, or the exit code run should end with (the server said why on stderr).
static int start_server(const char *mountpoint, char **mount_args, int n_args) {
    int ready[2];
    if (pipe2(ready, O_CLOEXEC) != 0) { ebr_msg_errno("pipe"); return 1; }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) { ebr_msg_errno("fork"); return 1; }
    if (pid == 0) {
        // Its own session: the terminal's signals (Ctrl-C) are for CMD, not for the mount.
        if (setsid() < 0) { ebr_msg_errno("setsid"); _exit(1); }
        // If run dies without stopping it (SIGKILL), the server unmounts and exits
        // (libfuse's SIGTERM handler ends the session loop).
        if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0) { ebr_msg_errno("prctl(PR_SET_PDEATHSIG)"); _exit(1); }
        if (getppid() != parent) _exit(1);
        if (sigprocmask(SIG_SETMASK, &S.old_mask, NULL) != 0) { ebr_msg_errno("sigprocmask"); _exit(1); }
        if (ready[1] == 3) {
            if (fcntl(3, F_SETFD, 0) != 0) { ebr_msg_errno("fcntl"); _exit(1); }
        } else if (dup2(ready[1], 3) != 3) { ebr_msg_errno("dup2"); _exit(1); }
        int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (null < 0 || dup2(null, 0) != 0) { ebr_msg_errno("/dev/null"); _exit(1); }
        // A control socket of its own: the default one is derived from the mount point,
        // which is the same for every `run`, in the shared /tmp.
        if (setenv("XDG_RUNTIME_DIR", S.runtime_dir, 1) != 0) { ebr_msg_errno("setenv"); _exit(1); }
        char **argv = calloc((size_t)n_args + 6, sizeof *argv);
        if (!argv) { ebr_msg_errno("calloc"); _exit(1); }
        int i = 0;
        argv[i++] = "efivarfs-bridge";
        argv[i++] = "mount";
        for (int k = 0; k < n_args; k++) argv[i++] = mount_args[k];
        argv[i++] = "--ready-fd";
        argv[i++] = "3";
        argv[i++] = (char *)mountpoint;
        argv[i] = NULL;
        extern char **environ;
        // Through the descriptor checked above (the path could be replaced meanwhile).
        syscall(SYS_execveat, S.exe_fd, "", argv, environ, AT_EMPTY_PATH);
        ebr_msg_errno("executing the mount server");
        _exit(127);
    }
    ebr_close(ready[1]);
    S.server = pid;
    S.server_pidfd = pidfd_open_(pid);
    if (S.server_pidfd < 0) ebr_msg_errno("pidfd_open(server)");

    // Wait for the ready byte, the end of the pipe (the server failed and said why), or a
    // signal meant to stop run.
    struct pollfd p[2] = {{.fd = ready[0], .events = POLLIN}, {.fd = S.sigfd, .events = POLLIN}};
    int rc = -1;
    while (rc < 0) {
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR) continue;
            ebr_msg_errno("poll");
            rc = 1;
            break;
        }
        if (p[0].revents) {
            char b;
            ssize_t n = read(ready[0], &b, 1);
            if (n == 1) { rc = 0; break; }
            int status = 0;
            if (waitpid(pid, &status, 0) < 0) ebr_msg_errno("waitpid(server)");
            S.server = 0;
            rc = WIFEXITED(status) && WEXITSTATUS(status) ? WEXITSTATUS(status) : 1;
            break;
        }
        if (p[1].revents) {
            struct signalfd_siginfo si;
            while (read(S.sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
                if (si.ssi_signo == SIGCHLD || si.ssi_signo == SIGWINCH || si.ssi_signo == SIGCONT) continue;
                ebr_msg("%s before CMD started: stopping", strsignal((int)si.ssi_signo));
                rc = 128 + (int)si.ssi_signo;
                break;
            }
        }
    }
    ebr_close(ready[0]);
    return rc;
}

static void stop_server(void) {
    if (S.server <= 0) return;
    if (kill(S.server, SIGTERM) != 0 && errno != ESRCH) ebr_msg_errno("stopping the mount server");
    bool gone = S.server_pidfd >= 0 ? wait_pidfd(S.server_pidfd, 10000) : true;
    if (!gone) {
        ebr_msg("the FUSE server (pid %d) did not stop within 10 s; killing it", (int)S.server);
        if (kill(S.server, SIGKILL) != 0 && errno != ESRCH) ebr_msg_errno("kill");
    }
    int status;
    if (waitpid(S.server, &status, 0) < 0 && errno != ECHILD) ebr_msg_errno("waitpid(server)");
    S.server = 0;
}

// ---- CMD ---------------------------------------------------------------------------

struct child_start { int listener; int error; int go_fd; int exec_fd; };

/// Forks CMD. It installs the seccomp filter itself (a filter applies to the calling
/// thread and what it starts), sends us the listener over a socket, and waits for our
/// go-ahead before exec, so that we answer its first openat (ld.so's) from the start.
static int start_child(char **cmd, bool want_seccomp, struct child_start *out) {
    int sp[2], ex[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0) { ebr_msg_errno("socketpair"); return -1; }
    if (pipe2(ex, O_CLOEXEC) != 0) { ebr_msg_errno("pipe"); close(sp[0]); close(sp[1]); return -1; }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) { ebr_msg_errno("fork"); return -1; }
    if (pid == 0) {
        ebr_close(sp[0]);
        ebr_close(ex[0]);
        if (setpgid(0, 0) != 0) { ebr_msg_errno("setpgid"); _exit(126); }
        // If run is killed, CMD goes with it (its own children: the janitor).
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) { ebr_msg_errno("prctl(PR_SET_PDEATHSIG)"); _exit(126); }
        if (getppid() != parent) _exit(126);
        int listener = -1, err = 0;
        if (want_seccomp) {
            listener = ebr_seccomp_install();
            if (listener < 0) err = errno;
        }
        char cbuf[CMSG_SPACE(sizeof(int))];
        memset(cbuf, 0, sizeof cbuf);
        struct iovec iov = {.iov_base = &err, .iov_len = sizeof err};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
        if (listener >= 0) {
            msg.msg_control = cbuf;
            msg.msg_controllen = sizeof cbuf;
            struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(sizeof(int));
            memcpy(CMSG_DATA(c), &listener, sizeof(int));
        }
        if (sendmsg(sp[1], &msg, 0) != (ssize_t)sizeof err) { ebr_msg_errno("sending the seccomp listener"); _exit(126); }
        if (listener >= 0) ebr_close(listener);  // CMD has no business with it
        char go;
        ssize_t n;
        do n = read(sp[1], &go, 1); while (n < 0 && errno == EINTR);
        if (n != 1) _exit(126);  // run went away
        if (go == 'P' && setenv("EFIVARFS_PATH", S.env_path, 1) != 0) {
            ebr_msg_errno("setenv EFIVARFS_PATH");
            _exit(126);
        }
        if (sigprocmask(SIG_SETMASK, &S.old_mask, NULL) != 0) { ebr_msg_errno("sigprocmask"); _exit(126); }
        execvp(cmd[0], cmd);
        int e = errno;
        // Tells run why; if even this fails, the exit code (127/126) still does.
        ssize_t w = write(ex[1], &e, sizeof e);
        (void)w;
        _exit(e == ENOENT || e == ENOTDIR ? 127 : 126);
    }
    ebr_close(sp[1]);
    ebr_close(ex[1]);
    if (setpgid(pid, pid) != 0 && errno != EACCES) ebr_msg_errno("setpgid");
    S.child = pid;
    int err = 0, listener = -1;
    char cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {.iov_base = &err, .iov_len = sizeof err};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    ssize_t n;
    do n = recvmsg(sp[0], &msg, MSG_CMSG_CLOEXEC); while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof err) {
        if (n < 0) ebr_msg_errno("receiving the seccomp listener");
        else ebr_msg("CMD's process ended before it started");
        ebr_close(sp[0]);
        ebr_close(ex[0]);
        return -1;
    }
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) memcpy(&listener, CMSG_DATA(c), sizeof(int));
    out->listener = listener;
    out->error = err;
    out->go_fd = sp[0];
    out->exec_fd = ex[0];
    return 0;
}

/// Terminal job control: CMD has the terminal while it runs (so Ctrl-C and Ctrl-Z reach
/// it, and an interactive shell can read), we take it back when it stops or ends.
static void give_terminal(pid_t pgrp) {
    if (S.tty < 0) return;
    // tcsetpgrp from a background group raises SIGTTOU: block it for the call.
    sigset_t ttou, old;
    sigemptyset(&ttou);
    sigaddset(&ttou, SIGTTOU);
    if (sigprocmask(SIG_BLOCK, &ttou, &old) != 0) { ebr_msg_errno("sigprocmask"); return; }
    if (tcsetpgrp(S.tty, pgrp) != 0) ebr_msg_errno("tcsetpgrp");
    if (sigprocmask(SIG_SETMASK, &old, NULL) != 0) ebr_msg_errno("sigprocmask");
}

static void reap(bool shutting_down) {
    for (;;) {
        int status;
        pid_t p = waitpid(-1, &status, WNOHANG | WUNTRACED);
        if (p <= 0) {
            if (p < 0 && errno != ECHILD) ebr_msg_errno("waitpid");
            return;
        }
        if (p == S.child) {
            if (WIFSTOPPED(status)) {
                // Ctrl-Z: stop ourselves too, so that the shell that started run gets the
                // terminal back; on `fg` (SIGCONT) CMD gets it again.
                if (S.tty >= 0) {
                    give_terminal(getpgrp());
                    if (kill(getpid(), SIGSTOP) != 0) ebr_msg_errno("stopping with CMD");
                    give_terminal(S.child);
                    if (kill(-S.child, SIGCONT) != 0 && errno != ESRCH) ebr_msg_errno("continuing CMD");
                }
                continue;
            }
            S.child_done = true;
            S.child_status = status;
        } else if (p == S.server) {
            S.server = 0;
            if (!shutting_down)
                ebr_msg("the FUSE server exited while CMD runs (%s %d): the variables are gone",
                        WIFSIGNALED(status) ? "signal" : "status", WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        } else if (p == S.janitor) {
            S.janitor = 0;
        }
        // Anything else: a process CMD left behind, reparented to us (subreaper).
    }
}

// ---- main --------------------------------------------------------------------------

struct options {
    bool keep_container;
    const char *reuse_dir;
    const char *reuse_pid;
    char **mount_args;
    int n_mount_args;
    char **cmd;
};

static int parse(int argc, char **argv, struct options *o) {
    int i = 0;
    for (; i < argc && strcmp(argv[i], "--"); i++) {
        if (!strcmp(argv[i], "--keep-container")) o->keep_container = true;
        else if (!strcmp(argv[i], "--verbose")) ebr_verbose = true;
        else if (!strcmp(argv[i], "--reuse") && i + 2 < argc) { o->reuse_dir = argv[++i]; o->reuse_pid = argv[++i]; }
        else { ebr_msg("internal: unknown sandbox option %s", argv[i]); return -1; }
    }
    if (i++ >= argc) { ebr_msg("internal: missing --"); return -1; }
    o->mount_args = argv + i;
    for (; i < argc && strcmp(argv[i], "--"); i++) o->n_mount_args++;
    if (i++ >= argc || i >= argc) { ebr_msg("internal: no command"); return -1; }
    o->cmd = argv + i;
    return 0;
}

/// Ends run the way CMD ended: its exit code, or the same signal (128+N instead for
/// signals that would make us dump core, as a shell reports them).
static void exit_like(int status) {
    fflush(stdout);
    fflush(stderr);
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        if (sig == SIGQUIT || sig == SIGILL || sig == SIGABRT || sig == SIGFPE || sig == SIGSEGV || sig == SIGBUS ||
            sig == SIGSYS || sig == SIGTRAP || sig == SIGXCPU || sig == SIGXFSZ)
            _exit(128 + sig);
        if (signal(sig, SIG_DFL) == SIG_ERR) ebr_msg_errno("signal(%d)", sig);
        sigset_t one;
        sigemptyset(&one);
        sigaddset(&one, sig);
        if (sigprocmask(SIG_UNBLOCK, &one, NULL) != 0 || kill(getpid(), sig) != 0) ebr_msg_errno("ending by %s", strsignal(sig));
        _exit(128 + sig);
    }
    _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}

static int run_main(int argc, char **argv) {
    struct options o = {0};
    if (parse(argc, argv, &o) != 0) return 64;
    // We were exec'd as /proc/self/exe, which ps would show as "exe".
    if (prctl(PR_SET_NAME, "efivarfs-bridge") != 0) ebr_msg_errno("prctl(PR_SET_NAME)");
    int rc = check_command(o.cmd[0]);
    if (rc) return rc;

    // The server is this binary again. It must be exec'd through a path opened inside the
    // namespace: exec of a file whose mount belongs to another mount namespace (our
    // /proc/self/exe after unshare, or the detached old root after pivot_root) fails with
    // EACCES (observed on 6.18). So: remember the path and identity now, reopen later.
    {
        ssize_t n = readlink("/proc/self/exe", S.exe_path, sizeof S.exe_path - 1);
        struct stat st;
        if (n < 0 || stat("/proc/self/exe", &st) != 0) { ebr_msg_errno("/proc/self/exe"); return 1; }
        S.exe_path[n] = 0;
        S.exe_dev = st.st_dev;
        S.exe_ino = st.st_ino;
    }
    // Every signal meant for CMD is read from a signalfd; the mask is restored in children.
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++) sigaddset(&mask, forwarded[i]);
    if (sigprocmask(SIG_BLOCK, &mask, &S.old_mask) != 0) { ebr_msg_errno("sigprocmask"); return 1; }
    S.sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (S.sigfd < 0) { ebr_msg_errno("signalfd"); return 1; }
    // What CMD leaves running when it ends becomes our child: we stop and reap it.
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) { ebr_msg_errno("prctl(PR_SET_CHILD_SUBREAPER)"); return 1; }
    if (isatty(0) && tcgetpgrp(0) == getpgrp()) S.tty = 0;

    snprintf(S.runtime_dir, sizeof S.runtime_dir, "/tmp/efivarfs-bridge-run.XXXXXX");
    if (!mkdtemp(S.runtime_dir)) { ebr_msg_errno("mkdtemp %s", S.runtime_dir); S.runtime_dir[0] = 0; return 1; }

    const char *step = NULL;
    if (ebr_enter_private_mount_namespace(&step) == 0) {
        S.private_ns = true;
    } else {
        int why = errno;
        if (!ebr_path(S.fallback_dir, sizeof S.fallback_dir, "%s/efivars", S.runtime_dir) || mkdir(S.fallback_dir, 0755) != 0) {
            ebr_msg_errno("%s", S.fallback_dir);
            S.fallback_dir[0] = 0;
            remove_runtime_dirs();
            return 1;
        }
        ebr_msg("no private mount namespace (%s: %s): the variables are mounted at %s, which the host sees while CMD runs; "
                "CMD finds them through EFIVARFS_PATH (libefivar: efibootmgr, efivar, mokutil) and the mount table (efitools), "
                "not at /sys/firmware/efi/efivars (bootctl, fwupd, go-efilib)",
                step, strerror(why), S.fallback_dir);
    }
    if (!ebr_mntns_of(getpid(), S.mntns, sizeof S.mntns)) { ebr_msg_errno("readlink /proc/self/ns/mnt"); goto fail; }

    bool made_tmpfs = false;
    if (S.private_ns) {
        const char *unhidden = NULL;
        const char *container = o.keep_container ? NULL : ebr_container_marker(&unhidden);
        if (container) {
            // systemd's is_efi_boot() answers false in any container (src/basic/efivars.c),
            // so bootctl says "Not booted with EFI" whatever /sys shows; CMD gets a root
            // without the marker. Only when the marker is there, and said every time.
            ebr_msg("container detected (%s): CMD gets a root without it so that systemd's bootctl accepts EFI (--keep-container to keep it)", container);
            if (ebr_pivot_without(container) != 0) goto fail;
        }
        if (unhidden && !o.keep_container) ebr_msg("container markers left visible: %s (bootctl will still refuse)", unhidden);
        if (ebr_make_firmware_dir(&made_tmpfs) != 0) goto fail;
    }
    const char *efivars = S.private_ns ? EBR_EFIVARS_DIR : S.fallback_dir;

    if (o.reuse_dir) {
        ebr_msg("the store is served by the live mount at %s (process %s): CMD uses that mount; run's mount options do not apply",
                o.reuse_dir, o.reuse_pid);
        if (S.private_ns) {
            if (mount(o.reuse_dir, efivars, NULL, MS_BIND, NULL) != 0) { ebr_msg_errno("bind-mounting %s on %s", o.reuse_dir, efivars); goto fail; }
        } else {
            if (rmdir(S.fallback_dir) != 0) ebr_msg_errno("rmdir %s", S.fallback_dir);
            S.fallback_dir[0] = 0;  // not ours to unmount
            efivars = o.reuse_dir;
        }
    } else {
        if (S.private_ns) {
            // Booted with EFI for real: the kernel's efivarfs leaves our namespace (only).
            struct stat a, b;
            if (stat(EBR_EFIVARS_DIR, &a) == 0 && stat("/sys/firmware/efi", &b) == 0 && a.st_dev != b.st_dev &&
                umount2(EBR_EFIVARS_DIR, MNT_DETACH) != 0) {
                ebr_msg_errno("unmounting the kernel's efivarfs in the private namespace");
                goto fail;
            }
        }
        struct stat xst;
        S.exe_fd = open(S.exe_path, O_RDONLY | O_CLOEXEC);
        if (S.exe_fd < 0 || fstat(S.exe_fd, &xst) != 0) { ebr_msg_errno("%s (this binary, seen from the namespace)", S.exe_path); goto fail; }
        if (xst.st_dev != S.exe_dev || xst.st_ino != S.exe_ino) {
            ebr_msg("%s is another file inside the namespace than the binary that runs; cannot start the mount server", S.exe_path);
            goto fail;
        }
        rc = start_server(efivars, o.mount_args, o.n_mount_args);
        if (rc) goto fail_rc;
    }
    if (S.private_ns) {
        if (ebr_set_efivarfs_mount_flags(efivars) != 0) goto fail;
        if (made_tmpfs && ebr_seal_firmware_dir() != 0) goto fail;
    }
    struct stat est;
    if (stat(efivars, &est) != 0) { ebr_msg_errno("stat %s", efivars); goto fail; }
    // libefivar builds "%s%s-%s" from EFIVARFS_PATH (rhboot/efivar src/efivarfs.c): the
    // trailing slash is needed.
    if (!ebr_path(S.env_path, sizeof S.env_path, "%s/", efivars)) { ebr_msg_errno("%s", efivars); goto fail; }
    if (start_janitor() != 0) goto fail;
    if (ebr_verbose)
        ebr_msg("%s mounted (st_dev %u:%u) in mount namespace %s; server pid %d, janitor pid %d",
                efivars, major(est.st_dev), minor(est.st_dev), S.mntns, (int)S.server, (int)S.janitor);

    bool seccomp_ok = ebr_seccomp_available() == 0;
    int seccomp_errno = errno;
    struct child_start cs = {.listener = -1};
    if (start_child(o.cmd, seccomp_ok, &cs) != 0) goto fail;
    if (seccomp_ok && cs.listener < 0) { seccomp_ok = false; seccomp_errno = cs.error; }
    bool set_path = !seccomp_ok || !S.private_ns;
    if (!seccomp_ok)
        ebr_msg("seccomp user notification is not available (%s): statfs and the mount table show FUSE; "
                "EFIVARFS_PATH=%s is set for libefivar tools, efitools and go-efilib will not accept the mount",
                strerror(seccomp_errno), S.env_path);
    struct ebr_supervisor *sup = NULL;
    if (cs.listener >= 0) {
        sup = ebr_supervisor_new(cs.listener, est.st_dev, S.mntns);
        if (!sup) {
            if (kill(S.child, SIGKILL) != 0) ebr_msg_errno("stopping CMD");
            goto fail;
        }
    }
    give_terminal(S.child);
    char go = set_path ? 'P' : 'G';
    if (write(cs.go_fd, &go, 1) != 1) ebr_msg_errno("starting CMD");
    ebr_close(cs.go_fd);

    // Until CMD ends: answer its calls, forward signals, reap.
    struct pollfd p[3] = {
        {.fd = S.sigfd, .events = POLLIN},
        {.fd = cs.listener, .events = POLLIN},
        {.fd = cs.exec_fd, .events = POLLIN},
    };
    long stop_deadline = -1;  // after CMD ended: until when leftovers get SIGTERM, not SIGKILL
    for (;;) {
        if (S.child_done) {
            if (stop_deadline < 0) {
                stop_deadline = now_ms() + 2000;
                if (S.private_ns) sweep(SIGTERM, S.server, S.janitor, 0);
            }
            int left = S.private_ns ? sweep(0, S.server, S.janitor, 0) : 0;
            if (left == 0) break;
            if (now_ms() > stop_deadline) {
                sweep(SIGKILL, S.server, S.janitor, 0);
                if (now_ms() > stop_deadline + 3000) {
                    ebr_msg("%d processes of the namespace survive SIGKILL; leaving them", left);
                    break;
                }
            }
        }
        int r = poll(p, 3, S.child_done ? 50 : -1);
        if (r < 0) {
            if (errno == EINTR) continue;
            ebr_msg_errno("poll");
            break;
        }
        if (p[0].revents) {
            struct signalfd_siginfo si;
            while (read(S.sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
                if (si.ssi_signo == SIGCHLD) continue;
                if (!S.child_done && kill(S.child, (int)si.ssi_signo) != 0 && errno != ESRCH)
                    ebr_msg_errno("forwarding %s", strsignal((int)si.ssi_signo));
            }
            reap(false);
        }
        if (p[1].fd >= 0 && (p[1].revents & POLLIN)) {
            if (ebr_supervisor_handle_one(sup) != 0) {
                ebr_msg("the seccomp listener failed; CMD's statfs/open calls now fail with ENOSYS");
                ebr_close(cs.listener);
                cs.listener = -1;
                p[1].fd = -1;
            }
        } else if (p[1].fd >= 0 && (p[1].revents & (POLLHUP | POLLERR))) {
            p[1].fd = -1;  // no filtered process is left, and none can appear
        }
        if (p[2].fd >= 0 && p[2].revents) {
            int e;
            if (read(cs.exec_fd, &e, sizeof e) == (ssize_t)sizeof e) {
                errno = e;
                ebr_msg_errno("%s", o.cmd[0]);
            }
            ebr_close(cs.exec_fd);
            p[2].fd = -1;
        }
    }
    give_terminal(getpgrp());
    reap(true);
    stop_server();
    reap(true);
    ebr_close(cs.listener);
    ebr_supervisor_free(sup);
    // Tell the janitor all is done, and wait for it.
    if (write(S.janitor_pipe, "x", 1) != 1) ebr_msg_errno("janitor");
    ebr_close(S.janitor_pipe);
    if (S.janitor > 0 && waitpid(S.janitor, NULL, 0) < 0) ebr_msg_errno("waitpid(janitor)");
    remove_runtime_dirs();
    exit_like(S.child_status);
    return 1;

fail:
    rc = 1;
fail_rc:
    stop_server();
    if (S.janitor_pipe >= 0) {
        if (write(S.janitor_pipe, "x", 1) != 1) ebr_msg_errno("janitor");
        ebr_close(S.janitor_pipe);
        if (S.janitor > 0 && waitpid(S.janitor, NULL, 0) < 0) ebr_msg_errno("waitpid(janitor)");
    }
    remove_runtime_dirs();
    return rc;
}

/// Runs before Swift's main (glibc passes argc/argv/envp to ELF constructors). Any other
/// invocation of the binary returns at once and goes on to the Swift command line.
__attribute__((constructor)) static void ebr_run_sandbox_entry(int argc, char **argv, char **envp) {
    (void)envp;
    if (argc < 2 || strcmp(argv[1], marker) != 0) return;
    int rc = run_main(argc - 2, argv + 2);
    fflush(stdout);
    fflush(stderr);
    _exit(rc);
}
