/* Creating a variable and reading it before any write must give EOF
 * (the kernel selftest create-read.c case, written anew). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	char buf[4];
	if (argc < 2) { fprintf(stderr, "usage: %s <variable file>\n", argv[0]); return 1; }
	int fd = open(argv[1], O_RDWR | O_CREAT, 0600);
	if (fd < 0) { perror("open"); return 1; }
	ssize_t n = read(fd, buf, sizeof buf);
	if (n != 0) { fprintf(stderr, "reading a new variable should return EOF, got %zd (%s)\n", n, n < 0 ? strerror(errno) : "data"); close(fd); return 1; }
	close(fd);
	return 0;
}
