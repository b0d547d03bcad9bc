#!/usr/bin/env bash
# Builds svsm_efivars.ko against the test kernel that scripts/kernel-test-deps.sh unpacked
# (Debian bookworm-backports 6.12), warning-free with W=1: any compiler or modpost warning
# fails the build.
#
# Usage: kernel/build.sh [--mainline] [--checkpatch]
#   --mainline    also build against the newest Debian kernel source (trixie-backports,
#                 prepared by kernel-test-deps.sh --mainline) and compile
#                 patches/0001-*.patch into that tree's arch/x86/coco/sev objects
#   --checkpatch  run checkpatch.pl --no-tree --strict on the sources and the patch
# The module is written to kernel/out/<kernel release>/svsm_efivars.ko; the sources are
# copied there first, so builds for different kernels do not share objects.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
cache=${EFIVARFS_KERNEL_CACHE:-/var/cache/efivarfs-bridge-kernel}
mainline=no
checkpatch=no
for arg in "$@"; do
	case $arg in
	--mainline) mainline=yes ;;
	--checkpatch) checkpatch=yes ;;
	*) echo "usage: $0 [--mainline] [--checkpatch]" >&2; exit 64 ;;
	esac
done

deps_args=()
[ "$mainline" = yes ] && deps_args+=(--mainline)
bash "$repo/scripts/kernel-test-deps.sh" "${deps_args[@]}" >/dev/null
# shellcheck disable=SC1091
. "$cache/current.env"

sources=(Makefile svsm_efivars_main.c shm.c svsm.c svsm_efivars.h mm_communication.h)

# build KDIR RELEASE: kbuild with W=1 in out/RELEASE; fail on any warning.
build() {
	local kdir=$1 release=$2 out=$here/out/$2 log
	mkdir -p "$out"
	for f in "${sources[@]}"; do
		cmp -s "$here/$f" "$out/$f" || cp "$here/$f" "$out/$f"
	done
	log=$out/build.log
	if ! make -C "$kdir" M="$out" W=1 -j"$(nproc)" modules >"$log" 2>&1; then
		cat "$log" >&2
		echo "build.sh: build against $release failed" >&2
		return 1
	fi
	if grep -E -i 'warning:|error:' "$log" >&2; then
		echo "build.sh: warnings building against $release (see $log)" >&2
		return 1
	fi
	echo "build.sh: $out/svsm_efivars.ko ($release, W=1, no warnings)"
}

build "$KDIR" "$KVER"

if [ "$mainline" = yes ]; then
	build "$MAINLINE_SRC" "$MAINLINE_VERSION"
	# The kernel patch: apply it to a hard-linked copy of the prepared tree (patch
	# replaces the files it changes instead of writing through the links) and compile
	# the objects it changes, warning-free with W=1.
	work=$here/out/patch-$MAINLINE_VERSION
	rm -rf "$work"
	mkdir -p "$work"
	cp -al "$MAINLINE_SRC" "$work/linux"
	for p in "$here"/patches/*.patch; do
		patch -d "$work/linux" -p1 --quiet --forward <"$p"
	done
	log=$work/build.log
	if ! make -C "$work/linux" W=1 -j"$(nproc)" arch/x86/coco/sev/ >"$log" 2>&1; then
		cat "$log" >&2
		echo "build.sh: the patched arch/x86/coco/sev does not build" >&2
		exit 1
	fi
	if grep -E -i 'warning:|error:' "$log" >&2; then
		echo "build.sh: warnings in the patched arch/x86/coco/sev (see $log)" >&2
		exit 1
	fi
	echo "build.sh: patches apply to Linux $MAINLINE_VERSION and arch/x86/coco/sev builds with W=1"
	# The module against the patched headers: the svsm transport then sees the
	# kernel's own declarations of the helpers.
	build "$work/linux" "$MAINLINE_VERSION-patched"
fi

if [ "$checkpatch" = yes ]; then
	cp_args=(--no-tree --strict --quiet)
	# The newest checkpatch.pl there is: the mainline tree's if it was prepared.
	[ -n "${MAINLINE_SRC:-}" ] && CHECKPATCH=$MAINLINE_SRC/scripts/checkpatch.pl
	status=0
	for f in "${sources[@]}"; do
		[ "$f" = Makefile ] && continue
		perl "$CHECKPATCH" "${cp_args[@]}" -f "$here/$f" || status=1
	done
	for p in "$here"/patches/*.patch; do
		perl "$CHECKPATCH" "${cp_args[@]}" "$p" || status=1
	done
	[ "$status" = 0 ] && echo "build.sh: checkpatch --strict: no errors, warnings or checks"
	exit $status
fi
