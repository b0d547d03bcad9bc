#!/usr/bin/env bash
# Installs everything the build and the test suite need on Debian 12, without prompts, and
# only what is missing (a second run installs nothing and takes a second):
#   - Debian packages: the build (libfuse3, libcrypto), the clients the integration tests
#     drive (efivar, efibootmgr, efitools, openssl, attr, fdisk, e2fsprogs; for
#     `efivarfs-bridge run`: mokutil, systemd-boot for bootctl, fwupd for fwupdtool), the firmware
#     and emulator the boot tests use (ovmf, qemu-system-x86), gcc for the C test helpers;
#   - from PyPI: virt-firmware (virt-fw-vars, the reference reader of OVMF_VARS.fd);
#   - downloaded only, never installed: Debian's signed shim, GRUB and kernel and a static
#     busybox, which QemuBootTests unpack into a VM (Tests/IntegrationTests/Selftests/linux-vm.sh);
#   - the svsm_efivars test kernel (bookworm-backports 6.12: image, headers, efivarfs
#     selftests), unpacked into its own cache by scripts/kernel-test-deps.sh, and what
#     building the module takes (make, gcc-12, dwarves); KernelModuleTests boots it;
#   - the /dev/fuse node, which some containers lack.
# Every failure stops the script with the step that failed.
set -euo pipefail

packages=(libfuse3-dev fuse3 pkg-config libssl-dev openssl efivar efibootmgr efitools e2fsprogs
          attr fdisk gcc libc6-dev ovmf qemu-system-x86 mokutil systemd-boot fwupd
          make gcc-12 dwarves xz-utils cpio)
vm_packages=(shim-signed grub-efi-amd64-signed linux-image-amd64 busybox-static)
vm_cache=${EFIVARFS_VM_DEBS:-/var/cache/efivarfs-bridge-vm}

if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: run as root (apt-get, /dev/fuse, loop devices)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
updated=no
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup.sh: installing ${missing[*]}"
    apt-get update -qq
    updated=yes
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The VM's packages: downloaded into a cache of their own, unpacked by the test itself.
have_vm_debs=yes
for p in shim-signed grub-efi-amd64-signed 'linux-image-[0-9]*-amd64' busybox-static; do
    compgen -G "$vm_cache/${p}_*_amd64.deb" >/dev/null || have_vm_debs=no
done
if [ "$have_vm_debs" = no ]; then
    echo "setup.sh: downloading ${vm_packages[*]} into $vm_cache"
    [ "$updated" = yes ] || apt-get update -qq
    mkdir -p "$vm_cache/partial"
    apt-get install -y -qq --no-install-recommends --download-only \
        -o Dir::Cache::archives="$vm_cache" "${vm_packages[@]}" >/dev/null
fi

if ! command -v virt-fw-vars >/dev/null 2>&1; then
    echo "setup.sh: installing virt-firmware from PyPI"
    if ! python3 -m pip --version >/dev/null 2>&1; then
        [ "$updated" = yes ] || apt-get update -qq
        apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
    fi
    # Debian's own python3 refuses pip installs outside a virtual environment (PEP 668);
    # the tests need virt-fw-vars on the PATH, so that refusal is overridden.
    python3 -m pip install -q --disable-pip-version-check virt-firmware \
        || python3 -m pip install -q --disable-pip-version-check --break-system-packages virt-firmware
fi
command -v virt-fw-vars >/dev/null 2>&1 || { echo "setup.sh: virt-fw-vars is not on the PATH after pip install" >&2; exit 1; }

# The kernel module's test kernel (idempotent: a second run downloads nothing).
bash "$(dirname "$0")/kernel-test-deps.sh" >/dev/null

if [ ! -e /dev/fuse ]; then mknod -m 666 /dev/fuse c 10 229; fi
echo "setup.sh: the machine has what the tests need"
