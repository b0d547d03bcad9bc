/* What a statically linked program that makes its own system calls sees: the
 * check go-efilib does before it uses efivarfs (canonical/go-efilib vars_linux.go
 * probeEfivarfs: unix.Statfs — a raw SYS_STATFS, no libc — then
 * `uint(st.Type) != uint(unix.EFIVARFS_MAGIC)`), the same through fstatfs, and the mount
 * table read with raw open/read. Built with `gcc -static`; libc is used only for printing.
 *
 *   efivarfs-probe PATH...   for each PATH: "statfs PATH: 0x<f_type>" or "statfs PATH: <errno text>",
 *                            then "fstatfs PATH: ..." the same way through an O_PATH descriptor;
 *                            then "statfs-ro PATH: <errno text>" for the first PATH with a
 *                            buffer in read-only memory (the kernel: EFAULT);
 *                            then "mountinfo: <line>" for every line of /proc/self/mountinfo
 *                            and "mounts: <line>" of /proc/self/mounts that mention efivars;
 *                            then "go-efilib: available" or "go-efilib: unavailable". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#define EFIVARFS_MAGIC 0xde5e81e4UL

static void show_statfs(const char *what, const char *path, long rc, const struct statfs *st)
{
	if (rc != 0) printf("%s %s: %s\n", what, path, strerror(errno));
	else printf("%s %s: 0x%lx\n", what, path, (unsigned long)st->f_type);
}

static void grep_table(const char *label, const char *path)
{
	static char buf[1 << 20];
	long fd = syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) { printf("%s: %s\n", label, strerror(errno)); return; }
	size_t used = 0;
	for (;;) {
		long n = syscall(SYS_read, fd, buf + used, sizeof buf - 1 - used);
		if (n < 0 && errno == EINTR) continue;
		if (n < 0) { printf("%s: read: %s\n", label, strerror(errno)); break; }
		if (n == 0 || used + (size_t)n >= sizeof buf - 1) { used += (size_t)(n > 0 ? n : 0); break; }
		used += (size_t)n;
	}
	buf[used] = 0;
	syscall(SYS_close, fd);
	for (char *line = buf, *end; *line; line = end + 1) {
		end = strchr(line, '\n');
		if (!end) end = line + strlen(line);
		char saved = *end;
		*end = 0;
		if (strstr(line, "efivars")) printf("%s: %s\n", label, line);
		if (!saved) break;
	}
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		struct statfs st;
		long rc = syscall(SYS_statfs, argv[i], &st);
		show_statfs("statfs", argv[i], rc, &st);
		long fd = syscall(SYS_openat, AT_FDCWD, argv[i], O_PATH | O_CLOEXEC);
		if (fd < 0) { printf("fstatfs %s: %s\n", argv[i], strerror(errno)); continue; }
		rc = syscall(SYS_fstatfs, fd, &st);
		show_statfs("fstatfs", argv[i], rc, &st);
		syscall(SYS_close, fd);
	}
	if (argc > 1) {
		void *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (ro == MAP_FAILED) { perror("mmap"); return 1; }
		long rc = syscall(SYS_statfs, argv[1], ro);
		printf("statfs-ro %s: %s\n", argv[1], rc == 0 ? "written" : strerror(errno));
	}
	grep_table("mountinfo", "/proc/self/mountinfo");
	grep_table("mounts", "/proc/self/mounts");
	/* go-efilib's probe, literally. */
	struct statfs st;
	int available = syscall(SYS_statfs, "/sys/firmware/efi/efivars", &st) == 0 &&
		(unsigned long)st.f_type == (unsigned long)EFIVARFS_MAGIC;
	printf("go-efilib: %s\n", available ? "available" : "unavailable");
	return 0;
}
