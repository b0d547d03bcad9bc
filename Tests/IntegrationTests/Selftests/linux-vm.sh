#!/bin/bash
# Boots Debian's signed shim, GRUB and kernel in QEMU with OVMF (Secure Boot code) and the
# given OVMF_VARS.fd, from a FAT disk whose initramfs (busybox) mounts efivarfs and prints
# every variable as "VAR <file name> <hex of the file>" between two marker lines, then
# powers off. The packages are only downloaded, never installed (.ci/run does this):
#   mkdir -p /var/cache/efivarfs-bridge-vm/partial
#   apt-get install --download-only -o Dir::Cache::archives=/var/cache/efivarfs-bridge-vm \
#       shim-signed grub-efi-amd64-signed linux-image-amd64 busybox-static
# Usage: linux-vm.sh <OVMF_VARS.fd> <work directory>
set -eu
vars=$1
work=$2
cache=${EFIVARFS_VM_DEBS:-/var/cache/efivarfs-bridge-vm}
deb() { ls -t $cache/$1 /var/cache/apt/archives/$1 2>/dev/null | head -1; }
x=$work/x
mkdir -p "$x"
for pattern in 'shim-signed_*_amd64.deb' 'grub-efi-amd64-signed_*_amd64.deb' 'linux-image-[0-9]*-amd64_*_amd64.deb' 'busybox-static_*_amd64.deb'; do
	d=$(deb "$pattern")
	[ -n "$d" ] || { echo "missing $pattern in $cache: see the top of $0 (or run .ci/run)" >&2; exit 2; }
	dpkg-deb -x "$d" "$x"
done
kernel=$(ls "$x"/boot/vmlinuz-* | head -1)
module=$(find "$x"/lib/modules -name 'efivarfs.ko*' | head -1)
initrd=$work/initrd
esp=$work/esp
rm -rf "$initrd" "$esp"
mkdir -p "$initrd"/bin "$initrd"/proc "$initrd"/sys "$initrd"/dev "$esp"/EFI/BOOT
cp "$x"/bin/busybox "$initrd"/bin/
cp "$module" "$initrd"/efivarfs.ko
cat > "$initrd"/init <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs dev /dev
insmod /efivarfs.ko
mount -t efivarfs efivarfs /sys/firmware/efi/efivars
echo BRIDGE-EFIVARFS-START
cd /sys/firmware/efi/efivars
for f in *; do echo "VAR $f $(od -An -v -tx1 "$f" | tr -d ' \n')"; done
echo BRIDGE-EFIVARFS-END
poweroff -f
INIT
chmod +x "$initrd"/init
(cd "$initrd" && find . | ./bin/busybox cpio -o -H newc 2>/dev/null | gzip -9 > "$esp"/initrd.gz)
cp "$kernel" "$esp"/vmlinuz
cp "$x"/usr/lib/shim/shimx64.efi.signed "$esp"/EFI/BOOT/BOOTX64.EFI
cp "$x"/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed "$esp"/EFI/BOOT/grubx64.efi
printf 'set timeout=0\nlinux /vmlinuz console=ttyS0 panic=-1\ninitrd /initrd.gz\nboot\n' > "$esp"/EFI/BOOT/grub.cfg
timeout 600 qemu-system-x86_64 -machine q35,smm=on -global driver=cfi.pflash01,property=secure,value=on \
	-m 1024 -nographic -no-reboot -net none \
	-drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.secboot.fd \
	-drive if=pflash,format=raw,unit=1,file="$vars" \
	-drive file=fat:rw:"$esp",format=raw,media=disk
