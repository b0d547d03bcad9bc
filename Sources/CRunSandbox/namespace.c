// The private mount namespace of `efivarfs-bridge run`: what CMD's view of the filesystem
// looks like, built without changing anything the host sees.
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    size_t len = strlen(text);
    ssize_t n = write(fd, text, len);
    int saved = errno;
    if (close(fd) != 0 && n == (ssize_t)len) return -1;
    errno = saved;
    return n == (ssize_t)len ? 0 : -1;
}

int ebr_enter_private_mount_namespace(const char **step) {
    if (geteuid() == 0) {
        *step = "unshare(CLONE_NEWNS)";
        if (unshare(CLONE_NEWNS) != 0) return -1;
    } else {
        // An unprivileged caller needs a user namespace to own the mount namespace. The
        // caller becomes root inside it (like `unshare -r`): the FUSE server we exec then
        // keeps its capabilities and can mount(2) itself (fusermount3, being set-uid to an
        // unmapped root, would not work inside).
        uid_t uid = geteuid();
        gid_t gid = getegid();
        *step = "unshare(CLONE_NEWUSER|CLONE_NEWNS)";
        if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) return -1;
        char map[64];
        *step = "writing /proc/self/setgroups";
        if (write_file("/proc/self/setgroups", "deny") != 0) return -1;
        *step = "writing /proc/self/uid_map";
        snprintf(map, sizeof map, "0 %u 1", (unsigned)uid);
        if (write_file("/proc/self/uid_map", map) != 0) return -1;
        *step = "writing /proc/self/gid_map";
        snprintf(map, sizeof map, "0 %u 1", (unsigned)gid);
        if (write_file("/proc/self/gid_map", map) != 0) return -1;
    }
    // Nothing mounted from now on may propagate to the host's namespace (the host's / is
    // usually MS_SHARED under systemd, and a copy inherits the peer group).
    *step = "making / private (mount MS_REC|MS_PRIVATE)";
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) return -1;
    return 0;
}

const char *ebr_container_marker(const char **unhidden) {
    // systemd src/basic/virt.c detect_container() (v252 and main) checks, in order:
    // /proc/vz, a "proot" tracer, /run/host/container-manager, /run/systemd/container,
    // PID 1's $container, then detect_container_files(): /run/.containerenv (podman) and
    // /.dockerenv (docker); v252 then running_in_cgroupns(), main running_in_pidns().
    // Only a root-level file can be left out of a pivoted root cheaply, so /.dockerenv is
    // the one we hide; the others are reported, not hidden (bootctl will still refuse).
    static char others[256];
    others[0] = 0;
    const char *candidates[] = {"/run/host/container-manager", "/run/systemd/container", "/run/.containerenv"};
    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++) {
        if (access(candidates[i], F_OK) == 0) {
            if (others[0]) strncat(others, ", ", sizeof others - strlen(others) - 1);
            strncat(others, candidates[i], sizeof others - strlen(others) - 1);
        }
    }
    *unhidden = others[0] ? others : NULL;
    return access("/.dockerenv", F_OK) == 0 ? "/.dockerenv" : NULL;
}

static int bind_entry(const char *newroot, const char *name) {
    char src[PATH_MAX], dst[PATH_MAX];
    if (!ebr_path(src, sizeof src, "/%s", name) || !ebr_path(dst, sizeof dst, "%s/%s", newroot, name)) {
        ebr_msg_errno("/%s", name);
        return -1;
    }
    struct stat st;
    if (lstat(src, &st) != 0) {
        if (errno == ENOENT) return 0;  // vanished meanwhile
        ebr_msg_errno("lstat %s", src);
        return -1;
    }
    if (S_ISLNK(st.st_mode)) {
        // /bin -> usr/bin and friends: the same link, not a bind of its target.
        char target[PATH_MAX];
        ssize_t n = readlink(src, target, sizeof target - 1);
        if (n < 0) { ebr_msg_errno("readlink %s", src); return -1; }
        target[n] = 0;
        if (symlink(target, dst) != 0) { ebr_msg_errno("symlink %s", dst); return -1; }
        return 0;
    }
    if (S_ISDIR(st.st_mode)) {
        if (mkdir(dst, st.st_mode & 07777) != 0) { ebr_msg_errno("mkdir %s", dst); return -1; }
    } else {
        int fd = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0) { ebr_msg_errno("creating %s", dst); return -1; }
        if (close(fd) != 0) { ebr_msg_errno("close %s", dst); return -1; }
    }
    // MS_REC: /proc, /sys, /dev and anything mounted below come along. Our new root is
    // MS_UNBINDABLE, so the recursive bind of /tmp (where it sits) leaves it out.
    if (mount(src, dst, NULL, MS_BIND | MS_REC, NULL) != 0) {
        ebr_msg_errno("bind-mounting %s on %s", src, dst);
        return -1;
    }
    return 0;
}

int ebr_pivot_without(const char *hide) {
    char cwd[PATH_MAX];
    bool have_cwd = getcwd(cwd, sizeof cwd) != NULL;

    char newroot[] = "/tmp/efivarfs-bridge-root.XXXXXX";
    if (mkdtemp(newroot) == NULL) { ebr_msg_errno("mkdtemp %s", newroot); return -1; }
    int rc = -1;
    bool mounted = false;
    if (mount("efivarfs-bridge-root", newroot, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") != 0) {
        ebr_msg_errno("mounting a tmpfs on %s", newroot);
        goto out;
    }
    mounted = true;
    if (mount(NULL, newroot, NULL, MS_UNBINDABLE, NULL) != 0) {
        ebr_msg_errno("making %s unbindable", newroot);
        goto out;
    }
    DIR *d = opendir("/");
    if (!d) { ebr_msg_errno("opendir /"); goto out; }
    const char *hidden_name = hide[0] == '/' ? hide + 1 : hide;
    struct dirent *e;
    int failed = 0;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || !strcmp(e->d_name, hidden_name)) continue;
        if (bind_entry(newroot, e->d_name) != 0) { failed = 1; break; }
        errno = 0;
    }
    if (!failed && errno != 0) { ebr_msg_errno("readdir /"); failed = 1; }
    if (closedir(d) != 0 && !failed) { ebr_msg_errno("closedir /"); failed = 1; }
    if (failed) goto out;

    char put_old[PATH_MAX];
    if (!ebr_path(put_old, sizeof put_old, "%s/.efivarfs-bridge-old-root", newroot)) { ebr_msg_errno("put_old"); goto out; }
    if (mkdir(put_old, 0700) != 0) { ebr_msg_errno("mkdir %s", put_old); goto out; }
    if (syscall(SYS_pivot_root, newroot, put_old) != 0) { ebr_msg_errno("pivot_root(%s)", newroot); goto out; }
    mounted = false;  // it is the root now
    if (chdir("/") != 0) { ebr_msg_errno("chdir /"); return -1; }
    // The tmpfs no longer sits on the old /tmp/efivarfs-bridge-root.*: that is an empty
    // directory of the host's /tmp again, which we remove before letting go of the old root.
    char old_dir[PATH_MAX];
    if (ebr_path(old_dir, sizeof old_dir, "/.efivarfs-bridge-old-root%s", newroot) && rmdir(old_dir) != 0)
        ebr_msg_errno("removing %s", old_dir + strlen("/.efivarfs-bridge-old-root"));
    if (umount2("/.efivarfs-bridge-old-root", MNT_DETACH) != 0) { ebr_msg_errno("detaching the old root"); return -1; }
    if (rmdir("/.efivarfs-bridge-old-root") != 0) { ebr_msg_errno("rmdir /.efivarfs-bridge-old-root"); return -1; }
    // Top-level writes would land in our tmpfs and vanish: refuse them instead (EROFS).
    if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) != 0) {
        ebr_msg_errno("making the new root read-only");
        return -1;
    }
    if (have_cwd && chdir(cwd) != 0) ebr_msg_errno("chdir %s (staying in /)", cwd);
    return 0;
out:
    if (mounted && umount2(newroot, MNT_DETACH) != 0) ebr_msg_errno("umount %s", newroot);
    if (rmdir(newroot) != 0) ebr_msg_errno("rmdir %s", newroot);
    return rc;
}

int ebr_make_firmware_dir(bool *made_tmpfs) {
    *made_tmpfs = false;
    struct stat st;
    if (stat("/sys/firmware/efi", &st) == 0) {
        // Booted with EFI for real: efivars/ exists (drivers/firmware/efi/efi.c,
        // sysfs_create_mount_point(efi_kobj, "efivars")) and our mount covers the
        // kernel's efivarfs in this namespace only. Nothing else to provide.
        if (stat(EBR_EFIVARS_DIR, &st) != 0) { ebr_msg_errno("%s", EBR_EFIVARS_DIR); return -1; }
        return 0;
    }
    if (errno != ENOENT) { ebr_msg_errno("stat /sys/firmware/efi"); return -1; }

    // Keep what /sys/firmware already has (acpi/ — bootctl reads acpi/tables/TPM2 —,
    // dmi/, memmap/ ...): open each entry before the tmpfs hides it, then bind it back
    // through /proc/self/fd.
    enum { max_entries = 64 };
    int fds[max_entries];
    char names[max_entries][NAME_MAX + 1];
    int count = 0;
    DIR *d = opendir("/sys/firmware");
    if (!d) { ebr_msg_errno("opendir /sys/firmware"); return -1; }
    struct dirent *e;
    int rc = -1;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (count == max_entries) { ebr_msg("/sys/firmware has more than %d entries", max_entries); goto close_all; }
        int fd = openat(dirfd(d), e->d_name, O_PATH | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) { ebr_msg_errno("open /sys/firmware/%s", e->d_name); goto close_all; }
        fds[count] = fd;
        snprintf(names[count], sizeof names[count], "%s", e->d_name);
        count++;
    }
    if (closedir(d) != 0) { d = NULL; ebr_msg_errno("closedir /sys/firmware"); goto close_all; }
    d = NULL;

    if (mount("efivarfs-bridge-firmware", "/sys/firmware", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=64k") != 0) {
        ebr_msg_errno("mounting a tmpfs on /sys/firmware");
        goto close_all;
    }
    *made_tmpfs = true;
    for (int i = 0; i < count; i++) {
        char dst[PATH_MAX], src[64];
        struct stat est;
        if (fstat(fds[i], &est) != 0) { ebr_msg_errno("fstat /sys/firmware/%s", names[i]); goto close_all; }
        ebr_path(dst, sizeof dst, "/sys/firmware/%s", names[i]);
        if (S_ISDIR(est.st_mode)) {
            if (mkdir(dst, 0755) != 0) { ebr_msg_errno("mkdir %s", dst); goto close_all; }
        } else {
            int f = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
            if (f < 0 || close(f) != 0) { ebr_msg_errno("creating %s", dst); goto close_all; }
        }
        snprintf(src, sizeof src, "/proc/self/fd/%d", fds[i]);
        if (mount(src, dst, NULL, MS_BIND | MS_REC, NULL) != 0) { ebr_msg_errno("bind-mounting %s back", dst); goto close_all; }
    }

    // What the kernel would show, limited to what a tool needs (docs/efivarfs-compatibility.md):
    // - efi/: systemd's is_efi_boot() (src/basic/efivars.c) is access("/sys/firmware/efi/");
    // - efi/efivars/: the mount point (fwupd fu_linux_efivars_supported() wants a directory);
    // - efi/fw_platform_size: bootctl's "Firmware Arch" (src/bootctl/bootctl-util.c
    //   get_efi_arch(): read_one_line_file, "64" = x64) and fwupd's bitness checks. The
    //   kernel prints "%d\n" of 64 or 32 (drivers/firmware/efi/efi.c fw_platform_size_show);
    //   the modelled SEV-SNP guest boots 64-bit firmware.
    // Not provided: systab, fw_vendor, runtime, config_table, mok-variables/ (no surveyed
    // tool needs them; mokutil falls back to efivarfs, src/mokutil.c list_keys_in_var).
    if (mkdir("/sys/firmware/efi", 0755) != 0) { ebr_msg_errno("mkdir /sys/firmware/efi"); goto close_all; }
    if (mkdir(EBR_EFIVARS_DIR, 0755) != 0) { ebr_msg_errno("mkdir %s", EBR_EFIVARS_DIR); goto close_all; }
    int f = open("/sys/firmware/efi/fw_platform_size", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
    if (f < 0) { ebr_msg_errno("creating /sys/firmware/efi/fw_platform_size"); goto close_all; }
    const char *bits = sizeof(void *) == 8 ? "64\n" : "32\n";
    if (write(f, bits, 3) != 3) { ebr_msg_errno("writing /sys/firmware/efi/fw_platform_size"); close(f); goto close_all; }
    if (close(f) != 0) { ebr_msg_errno("closing /sys/firmware/efi/fw_platform_size"); goto close_all; }
    rc = 0;
close_all:
    ebr_closedir(d);
    for (int i = 0; i < count; i++) ebr_close(fds[i]);
    return rc;
}

int ebr_seal_firmware_dir(void) {
    // sysfs refuses writes to these entries; a read-only tmpfs refuses them too (EROFS).
    if (mount(NULL, "/sys/firmware", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) {
        ebr_msg_errno("making /sys/firmware read-only");
        return -1;
    }
    return 0;
}

int ebr_set_efivarfs_mount_flags(const char *dir) {
    // systemd mounts efivarfs with MS_NOSUID|MS_NOEXEC|MS_NODEV (relatime is the default):
    // the mount table then reads "rw,nosuid,nodev,noexec,relatime" as on a host. Only the
    // per-mount flags change (MS_BIND remount); the FUSE superblock is untouched.
    if (mount(NULL, dir, NULL, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RELATIME, NULL) != 0) {
        ebr_msg_errno("setting nosuid,nodev,noexec on %s", dir);
        return -1;
    }
    return 0;
}
