/* deny-syscalls seccomp|unshare[,..] -- CMD ARGS: runs CMD where the named system calls
 * fail — seccomp(2) with ENOSYS (a kernel without CONFIG_SECCOMP_FILTER), unshare(2) with
 * EPERM (Docker's default seccomp profile, or no user namespaces) — to test the fallbacks
 * of `efivarfs-bridge run` (RunTests) without changing the machine. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 4 || strcmp(argv[2], "--")) { fprintf(stderr, "usage: %s seccomp|unshare[,...] -- CMD...\n", argv[0]); return 2; }
	int deny_seccomp = strstr(argv[1], "seccomp") != NULL, deny_unshare = strstr(argv[1], "unshare") != NULL;
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, deny_seccomp ? SYS_seccomp : 0xffffff, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, deny_unshare ? SYS_unshare : 0xffffff, 2, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
	};
	struct sock_fprog prog = { .len = sizeof f / sizeof f[0], .filter = f };
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) { perror("prctl(PR_SET_NO_NEW_PRIVS)"); return 1; }
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) { perror("prctl(PR_SET_SECCOMP)"); return 1; }
	execvp(argv[3], argv + 3);
	fprintf(stderr, "%s: %s\n", argv[3], strerror(errno));
	return 127;
}
