#!/bin/bash
# Boots the svsm_efivars test kernel (Debian bookworm-backports 6.12, unpacked by
# scripts/kernel-test-deps.sh) in QEMU with OVMF (no Secure Boot) and efi=noruntime, an
# ivshmem-plain device on a /dev/shm file served by an SVSM host process (the shm
# transport, kernel/SHM-TRANSPORT.md), and a busybox initramfs that loads the module,
# mounts efivarfs at /sys/firmware/efi/efivars and runs the given steps. Each step's
# output is printed between
#     KVM-STEP-BEGIN <index> <step>
#     KVM-STEP-END <index> <step> rc=<exit code>
# and the run ends with KVM-DONE; then the VM powers off.
#
# Steps:
#   selftests      the kernel's tools/testing/selftests/efivarfs/efivarfs.sh (matching source)
#   efivar         efivar -w, -a, -p and -l on a variable (host binaries + libraries)
#   efivar-append-refused
#                  the same, on a store that appends only to the Secure Boot databases
#                  (--svsm qemu, coconut): efivar -a fails with EINVAL, the value is -w's
#   efibootmgr     efibootmgr -t 7 (writes Timeout), efibootmgr -v
#   rw             create, read, append, delete a variable through efivarfs
#   mm-ops         Selftests/mm-ops.sh: the operations whose MM requests KernelModuleTests
#                  compares with the Swift driver's (run it first, on a fresh store)
#   bootorder      efibootmgr -o 0002,0001,0000, and a variable KvmPersist-GUID = "persisted"
#   persisted      what bootorder wrote, read back (run it after a reboot)
#   forgotten      what bootorder wrote is gone: BootOrder is OVMF's 0001,0002,0000 again and
#                  KvmPersist does not exist (after a reboot, on a store that keeps nothing
#                  across SVSM starts: --svsm coconut without --coconut-persistence)
#   reboot         power the VM off and boot it again (a new QEMU process on the same shared
#                  memory, and a restarted host unless --keep-host); the steps after it run
#                  in the new boot
#   rmmod          unmount efivarfs, rmmod svsm_efivars (give-back), insmod it again, mount
#   dmesg          the kernel log lines of svsm_efivars and efivars
#   sh:COMMAND     any shell command (busybox sh)
# Usage:
#   kernel-vm.sh [--work DIR] [--shm FILE] [--host CMD | --no-host] [--keep-host] [--smp N]
#                [--params 'call_timeout_ms=1000 ...'] [--timeout SECONDS] STEP...
# --host CMD starts the host before each boot and stops it (SIGTERM) after; with
# --keep-host one host process serves every boot. {shm} and {work} in CMD are replaced; its
# output is appended to WORK/host.log. Default: efivarfs-bridge serve-svsm --shm {shm} --store {work}/store
# (.build/debug/efivarfs-bridge if built). Exit status 0 if the VM reached KVM-DONE and
# every step returned 0.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
cache=${EFIVARFS_KERNEL_CACHE:-/var/cache/efivarfs-bridge-kernel}
vm_debs=${EFIVARFS_VM_DEBS:-/var/cache/efivarfs-bridge-vm}

work=
shm=
bridge=efivarfs-bridge
[ -x "$repo/.build/debug/efivarfs-bridge" ] && bridge=$repo/.build/debug/efivarfs-bridge
host="$bridge serve-svsm --shm {shm} --store {work}/store"
smp=2
params=
timeout_s=300
keep_host=no
while [ $# -gt 0 ]; do
	case $1 in
	--work) work=$2; shift 2 ;;
	--shm) shm=$2; shift 2 ;;
	--host) host=$2; shift 2 ;;
	--no-host) host=; shift ;;
	--keep-host) keep_host=yes; shift ;;
	--smp) smp=$2; shift 2 ;;
	--params) params=$2; shift 2 ;;
	--timeout) timeout_s=$2; shift 2 ;;
	--) shift; break ;;
	-*) echo "kernel-vm.sh: unknown option $1 (see the top of $0)" >&2; exit 64 ;;
	*) break ;;
	esac
done
[ $# -gt 0 ] || { echo "kernel-vm.sh: no steps (see the top of $0)" >&2; exit 64; }
[ -n "$work" ] || work=$(mktemp -d /tmp/kernel-vm.XXXXXX)
own_shm=no
[ -n "$shm" ] || { shm=/dev/shm/efivarfs-kvm-$$; own_shm=yes; }
mkdir -p "$work"

for tool in qemu-system-x86_64 gcc cpio gzip xz ldd chattr efivar efibootmgr; do
	command -v "$tool" >/dev/null 2>&1 ||
		{ echo "kernel-vm.sh: missing $tool (apt-get install qemu-system-x86 gcc cpio e2fsprogs efivar efibootmgr)" >&2; exit 2; }
done
[ -f /usr/share/OVMF/OVMF_CODE_4M.fd ] || { echo "kernel-vm.sh: missing OVMF (apt-get install ovmf)" >&2; exit 2; }
[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || { echo "kernel-vm.sh: missing libc.a (apt-get install libc6-dev)" >&2; exit 2; }
busybox_deb=$(ls -t "$vm_debs"/busybox-static_*_amd64.deb /var/cache/apt/archives/busybox-static_*_amd64.deb 2>/dev/null | head -1 || true)
[ -n "$busybox_deb" ] || { echo "kernel-vm.sh: no busybox-static .deb in $vm_debs (scripts/setup.sh downloads it)" >&2; exit 2; }

# The kernel, its efivarfs module, the selftests, and the module built for it.
bash "$repo/scripts/kernel-test-deps.sh" >/dev/null
# shellcheck disable=SC1091
. "$cache/current.env"
module=$repo/kernel/out/$KVER/svsm_efivars.ko
bash "$repo/kernel/build.sh" >/dev/null

# --- the initramfs ---------------------------------------------------------------------
root=$work/initrd
rm -rf "$root"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,selftests}
dpkg-deb -x "$busybox_deb" "$work/busybox"
cp "$work/busybox/bin/busybox" "$root/bin/busybox"

# copy_bin FILE: the binary and the shared libraries ldd names, at their own paths.
copy_bin() {
	local f=$1 lib
	mkdir -p "$root$(dirname "$f")"
	cp -L "$f" "$root$f"
	for lib in $(ldd "$f" | awk '/=> \// {print $3} /^\t\/lib/ {print $1}'); do
		[ -e "$root$lib" ] && continue
		mkdir -p "$root$(dirname "$lib")"
		cp -L "$lib" "$root$lib"
	done
}
copy_bin "$(readlink -f /bin/bash)"
ln -sf "$(readlink -f /bin/bash)" "$root/bin/bash" 2>/dev/null || true
copy_bin "$(command -v chattr)"
copy_bin "$(command -v lsattr)"
copy_bin "$(command -v efivar)"
copy_bin "$(command -v efibootmgr)"
# mm-ops.sh runs the host's coreutils at /usr/bin, as on the host (busybox's are in /bin).
for tool in od stat ls rm; do
	copy_bin "/usr/bin/$tool"
done
cp "$here/mm-ops.sh" "$root/selftests/mm-ops.sh"

cp "$SELFTESTS/efivarfs.sh" "$root/selftests/"
for prog in create-read open-unlink; do
	gcc -static -O2 -Wall -o "$root/selftests/$prog" "$SELFTESTS/$prog.c"
done
cp "$module" "$root/svsm_efivars.ko"
case $EFIVARFS_KO in
builtin) ;;
*.xz) xz -dc "$EFIVARFS_KO" > "$root/efivarfs.ko" ;;
*) cp "$EFIVARFS_KO" "$root/efivarfs.ko" ;;
esac
printf '%s\n' "$params" > "$root/params"
printf '%s\n' "$@" > "$root/steps"

cat > "$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
efivars=/sys/firmware/efi/efivars
step=0
for arg in $(cat /proc/cmdline); do
	case $arg in kvm_step=*) step=${arg#kvm_step=} ;; esac
done
echo "KVM-BOOT step=$step cpus=$(nproc)"

load() {
	# shellcheck disable=SC2046
	insmod /svsm_efivars.ko $(cat /params)
	echo "KVM-LOAD rc=$?"
	dmesg | grep -e svsm_efivars -e 'efivars:' | tail -n 8
	mount -t efivarfs efivarfs $efivars
	echo "KVM-MOUNT rc=$?"
}
[ -f /efivarfs.ko ] && insmod /efivarfs.ko
load

guid=7f3c0e2a-5b6d-4d1e-9a8b-2c4d6e8f0a1b
run_step() {
	case $1 in
	selftests)
		(cd /selftests && ./efivarfs.sh) ;;
	efivar|efivar-append-refused)
		# efivar -w edits an existing variable: create it through efivarfs first.
		printf '\007\000\000\000old' > $efivars/EfivarTool-$guid &&
		printf 'svsm' > /tmp/val &&
		efivar -w -n $guid-EfivarTool -f /tmp/val &&
		if [ "$1" = efivar ]; then
			efivar -a -n $guid-EfivarTool -f /tmp/val && value=svsmsvsm
		else
			# EFI_UNSUPPORTED from the store, which efivarfs reports as EINVAL.
			! efivar -a -n $guid-EfivarTool -f /tmp/val && echo "append refused" && value=svsm
		fi &&
		efivar -p -n $guid-EfivarTool &&
		test "$(tail -c +5 $efivars/EfivarTool-$guid)" = $value &&
		efivar -l | grep -x $guid-EfivarTool &&
		chattr -i $efivars/EfivarTool-$guid && rm $efivars/EfivarTool-$guid &&
		! efivar -l | grep -q EfivarTool ;;
	efibootmgr)
		efibootmgr -t 7 && efibootmgr -v &&
		od -An -tx1 $efivars/Timeout-8be4df61-93ca-11d2-aa0d-00e098032b8c ;;
	mm-ops)
		bash /selftests/mm-ops.sh $efivars ;;
	bootorder)
		efibootmgr -o 0002,0001,0000 &&
		printf '\007\000\000\000persisted' > $efivars/KvmPersist-$guid &&
		echo "KvmPersist: $(tail -c +5 $efivars/KvmPersist-$guid)" ;;
	persisted)
		efibootmgr &&
		efibootmgr | grep -qx 'BootOrder: 0002,0001,0000' &&
		echo "KvmPersist: $(tail -c +5 $efivars/KvmPersist-$guid)" &&
		test "$(tail -c +5 $efivars/KvmPersist-$guid)" = persisted ;;
	forgotten)
		efibootmgr &&
		efibootmgr | grep -qx 'BootOrder: 0001,0002,0000' &&
		! test -e $efivars/KvmPersist-$guid &&
		echo "KvmPersist: absent" ;;
	rw)
		f=$efivars/KvmRw-$guid
		printf '\007\000\000\000hello' > $f &&
		od -An -c $f &&
		chattr -i $f &&
		printf '\107\000\000\000 world' >> $f &&
		test "$(tail -c +5 $f)" = "hello world" &&
		echo "read back: $(tail -c +5 $f)" &&
		chattr -i $f && rm $f && ! test -e $f ;;
	rmmod)
		umount $efivars &&
		rmmod svsm_efivars &&
		dmesg | tail -n 3 &&
		if mount -t efivarfs efivarfs $efivars 2>/dev/null; then
			echo "efivarfs mounted without a backend"; false
		else
			echo "no backend after rmmod: mount refused"
		fi &&
		load ;;
	dmesg)
		dmesg | grep -e svsm_efivars -e 'efivars:' ;;
	sh:*)
		sh -c "${1#sh:}" ;;
	*)
		echo "unknown step $1"; false ;;
	esac
}

i=0
exec 3< /steps
while read -r s <&3; do
	if [ $i -ge "$step" ]; then
		if [ "$s" = reboot ]; then
			echo "KVM-STEP-BEGIN $i reboot"
			umount $efivars
			echo "KVM-STEP-END $i reboot rc=0"
			echo "KVM-REBOOT next=$((i + 1))"
			poweroff -f
		fi
		echo "KVM-STEP-BEGIN $i $s"
		run_step "$s" < /dev/null
		echo "KVM-STEP-END $i $s rc=$?"
	fi
	i=$((i + 1))
done
echo KVM-DONE
poweroff -f
INIT
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc 2>/dev/null | gzip -1 > "$work/initrd.gz")

# --- the host and the VM ---------------------------------------------------------------
host_pid=
start_host() {
	[ -n "$host" ] && [ -z "$host_pid" ] || return 0
	local cmd=${host//\{shm\}/$shm}
	cmd=${cmd//\{work\}/$work}
	echo "kernel-vm.sh: starting the host: $cmd" >> "$work/host.log"
	# shellcheck disable=SC2086
	$cmd >> "$work/host.log" 2>&1 &
	host_pid=$!
	sleep 0.5
	kill -0 "$host_pid" 2>/dev/null || { cat "$work/host.log" >&2; echo "kernel-vm.sh: the host did not start: $cmd" >&2; exit 1; }
}
stop_host() {
	if [ -n "$host_pid" ]; then
		kill "$host_pid" 2>/dev/null || true
		wait "$host_pid" 2>/dev/null || true
		host_pid=
	fi
}
cleanup() {
	stop_host
	# The shared-memory file this script named itself goes with it.
	[ "$own_shm" = no ] || rm -f "$shm"
}
trap cleanup EXIT
if [ -n "$host" ]; then
	rm -f "$shm" "$work/host.log"
	truncate -s 16M "$shm"
	mkdir -p "$work/store"
fi
cp /usr/share/OVMF/OVMF_VARS_4M.fd "$work/OVMF_VARS.fd"
# TCG by default: KVM on this project's (nested) machines fails in OVMF's first FPU
# instructions. EFIVARFS_KVM=1 uses KVM where it works.
accel=(-accel tcg)
[ "${EFIVARFS_KVM:-0}" = 1 ] && accel=(-accel kvm)

step=0
boots=0
status=1
while :; do
	boots=$((boots + 1))
	log=$work/console-$boots.log
	start_host
	timeout "$timeout_s" qemu-system-x86_64 -machine q35 "${accel[@]}" -smp "$smp" -m 512 \
		-nographic -no-reboot -net none \
		-drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \
		-drive if=pflash,format=raw,unit=1,file="$work/OVMF_VARS.fd" \
		-kernel "$VMLINUZ" -initrd "$work/initrd.gz" \
		-append "console=ttyS0 efi=noruntime panic=-1 quiet kvm_step=$step" \
		-object memory-backend-file,id=shm,share=on,mem-path="$shm",size=16M \
		-device ivshmem-plain,memdev=shm </dev/null 2>&1 | tr -d '\r' | tee "$log" || true
	next=$(sed -n 's/^KVM-REBOOT next=\([0-9]*\).*/\1/p' "$log" | tail -1)
	if [ -n "$next" ] && [ "$boots" -lt 8 ]; then
		step=$next
		[ "$keep_host" = yes ] || stop_host
		continue
	fi
	if grep -q '^KVM-DONE' "$log"; then
		status=0
	fi
	break
done
failed=$(cat "$work"/console-*.log | grep -c '^KVM-STEP-END .* rc=[1-9]' || true)
[ "$failed" = 0 ] || status=1
grep -q '^KVM-LOAD rc=0' "$work/console-1.log" || status=1
stop_host
echo "kernel-vm.sh: $boots boot(s), $failed failed step(s), work directory $work, exit $status"
exit $status
