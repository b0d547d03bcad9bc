/* Write a variable, clear its immutable flag, open it, unlink it, and check that the
 * still-open descriptor reads nothing (the kernel selftest open-unlink.c case, written anew). */
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	unsigned char data[5] = { 0x07, 0x00, 0x00, 0x00, 0x00 };
	char buf[5];
	int flags;
	if (argc < 2) { fprintf(stderr, "usage: %s <variable file>\n", argv[0]); return 1; }
	const char *path = argv[1];
	int fd = open(path, O_WRONLY | O_CREAT, 0600);
	if (fd < 0) { perror("open for write"); return 1; }
	if (write(fd, data, sizeof data) != sizeof data) { perror("write"); return 1; }
	close(fd);
	fd = open(path, O_RDONLY);
	if (fd < 0) { perror("open for flags"); return 1; }
	if (ioctl(fd, FS_IOC_GETFLAGS, &flags) < 0) { perror("FS_IOC_GETFLAGS"); return 1; }
	if (flags & FS_IMMUTABLE_FL) {
		flags &= ~FS_IMMUTABLE_FL;
		if (ioctl(fd, FS_IOC_SETFLAGS, &flags) < 0) { perror("FS_IOC_SETFLAGS"); return 1; }
	}
	close(fd);
	fd = open(path, O_RDONLY);
	if (fd < 0) { perror("open for read"); return 1; }
	if (unlink(path) < 0) { perror("unlink"); return 1; }
	ssize_t n = read(fd, buf, sizeof buf);
	if (n > 0) { fprintf(stderr, "reading from an unlinked variable shouldn't be possible\n"); return 1; }
	close(fd);
	return 0;
}
