#!/bin/bash
# The efivarfs operations whose UEFI MM requests KernelModuleTests compares byte for byte
# between the two drivers: the C module (kernel-vm.sh step mm-ops, efivarfs in the VM) and
# the Swift model (a FUSE mount of efivarfs-bridge). Both run this script with bash and the
# same coreutils/e2fsprogs binaries at /usr/bin (in the VM, the host's, copied by
# kernel-vm.sh), so the system calls are the same; only the driver below differs.
# Usage: mm-ops.sh EFIVARS_DIRECTORY
set -eu
d=$1
g=6d5c4b3a-2f1e-4d0c-9b8a-796857463524
f=$d/ByteCmp-$g

echo "mm-ops: create"
printf '\007\000\000\000hello' > "$f"
echo "mm-ops: read"
/usr/bin/od -An -c "$f"
echo "mm-ops: append"
# A new file is immutable until chattr -i (efivarfs, as the kernel's own rw tests do).
/usr/bin/chattr -i "$f"
printf '\107\000\000\000, world' >> "$f"
echo "mm-ops: read"
/usr/bin/od -An -c "$f"
echo "mm-ops: list"
/usr/bin/ls "$d" > /tmp/mm-ops-list
grep -c . /tmp/mm-ops-list
grep ByteCmp /tmp/mm-ops-list
echo "mm-ops: statfs"
/usr/bin/stat -f -c 'blocks %b free %f' "$d"
echo "mm-ops: delete"
/usr/bin/chattr -i "$f"
/usr/bin/rm "$f"
test ! -e "$f"
echo "mm-ops: end"
# The end marker: the comparison stops at its first request.
printf '\007\000\000\000end' > "$d/ByteCmpEnd-$g"
/usr/bin/chattr -i "$d/ByteCmpEnd-$g"
/usr/bin/rm "$d/ByteCmpEnd-$g"
echo "mm-ops: done"
