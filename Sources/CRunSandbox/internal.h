// Shared declarations of the `efivarfs-bridge run` sandbox (see include/CRunSandbox.h).
#ifndef EFIVARFS_BRIDGE_RUN_INTERNAL_H
#define EFIVARFS_BRIDGE_RUN_INTERNAL_H

#define _GNU_SOURCE
#include <dirent.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/// include/uapi/linux/magic.h EFIVARFS_MAGIC: what statfs(2) reports for efivarfs, and what
/// libefivar (rhboot/efivar src/efivarfs.c efivarfs_probe) and go-efilib
/// (canonical/go-efilib vars_linux.go probeEfivarfs) compare f_type with.
#define EBR_EFIVARFS_MAGIC 0xde5e81e4UL

/// Where every tool looks (systemd src/basic/efivars.c EFIVAR_PATH, libefivar
/// get_efivarfs_path, fwupd fu_linux_efivars_get_path, go-efilib efivarfsPath).
#define EBR_EFIVARS_DIR "/sys/firmware/efi/efivars"

/// Messages: "efivarfs-bridge run: <text>" on stderr. The _errno variant appends
/// ": strerror(errno)" of the errno at the call.
void ebr_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void ebr_msg_errno(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
extern bool ebr_verbose;

/// close(2)/closedir(3) whose failure is reported (EINTR excepted: on Linux the descriptor
/// is closed then). Every system call here has its error checked; these keep the
/// cleanup paths short.
void ebr_close(int fd);
void ebr_closedir(DIR *d);

/// Paths built with snprintf; false (and errno ENAMETOOLONG) when the result did not fit.
bool ebr_path(char *out, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

// ---- namespace.c -------------------------------------------------------------------

/// unshare(CLONE_NEWNS) (as root) or CLONE_NEWUSER|CLONE_NEWNS mapping the caller to root
/// (as anyone else), then makes every mount private so nothing we mount propagates back to
/// the host. Returns 0, or -1 with errno set and a description of the step in *step.
int ebr_enter_private_mount_namespace(const char **step);

/// Container detection the way systemd's detect_container() (src/basic/virt.c) does it
/// for the marker files it checks: returns the root-level marker to hide ("/.dockerenv"),
/// or NULL. Markers we cannot hide are listed in *unhidden (static text, or NULL).
const char *ebr_container_marker(const char **unhidden);

/// pivot_root into a tmpfs root that bind-mounts every top-level entry of / except
/// `hide` (a root-level name such as "/.dockerenv"); keeps the working directory.
int ebr_pivot_without(const char *hide);

/// Gives the namespace a /sys/firmware/efi with an empty efivars/ mount point and the
/// files a tool needs to believe it booted with EFI (see the function's comment), unless
/// the machine really has /sys/firmware/efi. *made_tmpfs tells the caller to make
/// /sys/firmware read-only once the mount is in place (ebr_seal_firmware_dir).
int ebr_make_firmware_dir(bool *made_tmpfs);
int ebr_seal_firmware_dir(void);

/// Per-mount flags of the kernel's efivarfs mount (nosuid,nodev,noexec,relatime).
int ebr_set_efivarfs_mount_flags(const char *dir);

// ---- supervisor.c ------------------------------------------------------------------

/// Whether this kernel lets us use SECCOMP_RET_USER_NOTIF (0) or why not (-1, errno).
int ebr_seccomp_available(void);

/// In the child, before exec: installs the filter and returns the listener fd, or -1 with
/// errno set. Only statfs, fstatfs, open, openat and openat2 reach the supervisor.
int ebr_seccomp_install(void);

struct ebr_supervisor;
/// `dev`: st_dev of the efivars mount ("this mount"); `mntns`: the text of
/// readlink(/proc/self/ns/mnt), the namespace whose mount tables are rewritten.
struct ebr_supervisor *ebr_supervisor_new(int listener, dev_t dev, const char *mntns);
/// Receives and answers one notification. Never leaves the caller blocked: whatever
/// happens, the notification is answered (CONTINUE when in doubt) unless its task is gone.
/// Returns 0, or -1 (errno) when the listener itself failed and must not be used again
/// (closing it makes the kernel fail the calls of CMD that wait on it, never hang them).
int ebr_supervisor_handle_one(struct ebr_supervisor *s);
void ebr_supervisor_free(struct ebr_supervisor *s);

/// readlink(/proc/<pid>/ns/mnt) into out; false if the process is gone.
bool ebr_mntns_of(pid_t pid, char *out, size_t size);

#endif
