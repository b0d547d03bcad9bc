#!/usr/bin/env bash
# Fetches and unpacks what the svsm_efivars kernel module needs to be built and tested,
# into a cache directory of its own, without installing any kernel on this machine:
#
#   - the test kernel: Debian bookworm-backports' linux-image-amd64 (6.12), its
#     linux-headers (arch + common) and linux-kbuild, unpacked side by side, with the
#     headers' absolute /usr/src and /usr/lib paths rewritten to the cache;
#   - from the matching linux-source package only tools/testing/selftests/efivarfs and
#     checkpatch.pl (with its data files);
#   - with --mainline: the newest linux-source Debian has (trixie-backports), unpacked whole
#     and prepared for building external modules with this machine's gcc, for compiling
#     kernel/patches/*.patch and the module against current headers (kernel/build.sh
#     --mainline).
#
# Debian 6.1 (bookworm) is not usable: it has no efivars_generic_ops_register/unregister
# and its efivars_register() takes a kobject (kernel/README.md).
#
# Idempotent: a second run finds everything in place and asks no mirror. apt runs with a
# private configuration (its own sources list, lists and archive directory under the
# cache), so the machine's apt sources are not changed. Needs root only for the cache
# directory's location; run as root like the rest of the test set-up.
#
# Usage: scripts/kernel-test-deps.sh [--mainline] [--print-env]
#   EFIVARFS_KERNEL_CACHE   cache directory (default /var/cache/efivarfs-bridge-kernel)
#   EFIVARFS_KERNEL_VERSION Debian package version of the test kernel to pin
#                           (default: what bookworm-backports' linux-image-amd64 names)
# At the end it prints the file $cache/current.env (KVER, KDIR, VMLINUZ, ...), which
# kernel/build.sh and Tests/IntegrationTests/Selftests/kernel-vm.sh read.
set -euo pipefail

cache=${EFIVARFS_KERNEL_CACHE:-/var/cache/efivarfs-bridge-kernel}
mainline=no
print_env=no
for arg in "$@"; do
	case $arg in
	--mainline) mainline=yes ;;
	--print-env) print_env=yes ;;
	*) echo "usage: $0 [--mainline] [--print-env]" >&2; exit 64 ;;
	esac
done

log() { echo "kernel-test-deps: $*" >&2; }
need() {
	command -v "$1" >/dev/null 2>&1 || { log "missing $1 (apt-get install $2)"; exit 2; }
}
need dpkg-deb dpkg
need apt-get apt
need xz xz-utils
need sed sed
need make make
need gcc-12 gcc-12
need pahole dwarves	# the test kernel builds BTF for modules

mkdir -p "$cache"
aptdir=$cache/apt
debs=$cache/debs
mkdir -p "$aptdir/lists/partial" "$aptdir/archives/partial" "$aptdir/etc" "$debs"

# A private apt: its own sources (bookworm-backports, trixie-backports and trixie for the
# newest linux-source), its own lists, the machine's dpkg status (read only).
cat > "$aptdir/etc/sources.list" <<EOF
deb http://deb.debian.org/debian bookworm-backports main
deb http://deb.debian.org/debian trixie main
deb http://deb.debian.org/debian trixie-backports main
EOF
cat > "$aptdir/apt.conf" <<EOF
Dir::State "$aptdir";
Dir::State::Lists "$aptdir/lists";
Dir::State::status "/var/lib/dpkg/status";
Dir::Cache "$aptdir";
Dir::Cache::archives "$aptdir/archives";
Dir::Etc::SourceList "$aptdir/etc/sources.list";
Dir::Etc::SourceParts "$aptdir/etc/none";
Dir::Etc::Preferences "$aptdir/etc/none";
Dir::Etc::PreferencesParts "$aptdir/etc/none";
APT::Get::List-Cleanup "false";
APT::Sandbox::User "root";
Acquire::Languages "none";
EOF
mkdir -p "$aptdir/etc/none"
apt_() { APT_CONFIG=$aptdir/apt.conf DEBIAN_FRONTEND=noninteractive "$@"; }
updated=no
apt_update() {
	[ "$updated" = yes ] && return 0
	log "updating the private package lists"
	apt_ apt-get -qq update
	updated=yes
}

# fetch PACKAGE VERSION: the .deb into $debs (once).
fetch() {
	local pkg=$1 ver=$2 file
	file=$(ls "$debs/${pkg}_"*.deb 2>/dev/null | grep -F "_$(echo "$ver" | sed 's/:/%3a/')_" | head -1 || true)
	if [ -n "$file" ]; then
		echo "$file"
		return 0
	fi
	apt_update
	log "downloading $pkg=$ver"
	(cd "$debs" && apt_ apt-get -qq download "$pkg=$ver" >&2)
	ls "$debs/${pkg}_"*.deb | grep -F "_$(echo "$ver" | sed 's/:/%3a/')_" | head -1
}

# --- the test kernel (bookworm-backports 6.12) ------------------------------------------
pkgver=${EFIVARFS_KERNEL_VERSION:-}
if [ -z "$pkgver" ] && [ -f "$cache/current.env" ]; then
	pkgver=$(sed -n 's/^PKGVER=//p' "$cache/current.env")
fi
if [ -z "$pkgver" ]; then
	apt_update
	pkgver=$(apt_ apt-cache madison linux-image-amd64 | awk '/bookworm-backports/ {print $3; exit}')
	[ -n "$pkgver" ] || { log "bookworm-backports has no linux-image-amd64"; exit 1; }
fi
tree=$cache/$pkgver
if [ ! -f "$tree/.complete" ]; then
	apt_update
	# The ABI name (e.g. 6.12.95+deb12) from the metapackage's dependency.
	kver=$(apt_ apt-cache show "linux-image-amd64=$pkgver" | sed -n 's/^Depends: .*linux-image-\([^ ,]*\)-amd64.*/\1/p' | head -1)
	[ -n "$kver" ] || { log "cannot find the kernel ABI of linux-image-amd64=$pkgver"; exit 1; }
	srcver=${kver%+*}
	srcver=${srcver%.*}
	log "test kernel $kver (package $pkgver)"
	rm -rf "$tree"
	mkdir -p "$tree/root" "$tree/src"
	for p in "linux-image-$kver-amd64" "linux-headers-$kver-amd64" "linux-headers-$kver-common" \
		"linux-kbuild-$kver"; do
		dpkg-deb -x "$(fetch "$p" "$pkgver")" "$tree/root"
	done
	# The headers name their common half and kbuild by absolute path: point them into the
	# cache. (The arch half's Makefile includes the common Makefile; scripts/ and tools/
	# are symlinks into linux-kbuild.)
	hdr=$tree/root/usr/src/linux-headers-$kver-amd64
	common=$tree/root/usr/src/linux-headers-$kver-common
	kbuild=$tree/root/usr/lib/linux-kbuild-${kver%+*}
	[ -d "$kbuild" ] || kbuild=$(ls -d "$tree"/root/usr/lib/linux-kbuild-* | head -1)
	grep -rlZ --include=Makefile "/usr/src/linux-headers-$kver-common" "$hdr" 2>/dev/null |
		xargs -0 -r sed -i "s|/usr/src/linux-headers-$kver-common|$common|g"
	for l in $(find "$hdr" "$common" -type l); do
		t=$(readlink "$l")
		case $t in
		/usr/*) ln -sfn "$tree/root$t" "$l" ;;
		esac
	done
	# The kernel's own source: selftests and checkpatch only.
	srcdeb=$(fetch "linux-source-$srcver" "$pkgver")
	tmp=$(mktemp -d)
	dpkg-deb --fsys-tarfile "$srcdeb" | tar -x -C "$tmp" --wildcards './usr/src/linux-source-*.tar.xz'
	tar -xJf "$tmp"/usr/src/linux-source-*.tar.xz -C "$tree/src" --strip-components=1 --wildcards \
		'*/tools/testing/selftests/efivarfs' '*/scripts/checkpatch.pl' '*/scripts/spelling.txt' \
		'*/scripts/const_structs.checkpatch'
	rm -rf "$tmp"
	vmlinuz=$(ls "$tree"/root/boot/vmlinuz-* | head -1)
	efivarfs=$(find "$tree/root/lib/modules" "$tree/root/usr/lib/modules" -name 'efivarfs.ko*' 2>/dev/null | head -1 || true)
	[ -n "$efivarfs" ] || { log "no efivarfs module in linux-image-$kver-amd64 (built in?)"; efivarfs=builtin; }
	cat > "$tree/kernel.env" <<EOF
PKGVER=$pkgver
KVER=$kver-amd64
KDIR=$hdr
VMLINUZ=$vmlinuz
EFIVARFS_KO=$efivarfs
SELFTESTS=$tree/src/tools/testing/selftests/efivarfs
CHECKPATCH=$tree/src/scripts/checkpatch.pl
EOF
	touch "$tree/.complete"
fi
cp "$tree/kernel.env" "$cache/current.env.tmp"
mv "$cache/current.env.tmp" "$cache/current.env"

# --- the newest kernel source, for the patch (optional) ---------------------------------
if [ "$mainline" = yes ]; then
	# Building a kernel tree's scripts needs these (apt-get install flex bison bc libelf-dev).
	need flex flex
	need bison bison
	need bc bc
	[ -f /usr/include/libelf.h ] || { log "missing libelf.h (apt-get install libelf-dev)"; exit 2; }
	[ -f /usr/include/openssl/ssl.h ] || { log "missing openssl headers (apt-get install libssl-dev)"; exit 2; }
	ml=$cache/mainline
	if [ ! -f "$ml/.complete" ]; then
		apt_update
		# The newest linux-source-X.Y any of the three suites has.
		srcpkg=$(apt_ apt-cache search --names-only '^linux-source-[0-9]+\.[0-9]+$' | awk '{print $1}' |
			sort -V | tail -1)
		srcpkgver=$(apt_ apt-cache madison "$srcpkg" | awk '{print $3}' | sort -V | tail -1)
		log "mainline source $srcpkg=$srcpkgver"
		rm -rf "$ml"
		mkdir -p "$ml"
		srcdeb=$(fetch "$srcpkg" "$srcpkgver")
		tmp=$(mktemp -d)
		dpkg-deb --fsys-tarfile "$srcdeb" | tar -x -C "$tmp" --wildcards './usr/src/linux-source-*.tar.xz'
		tar -xJf "$tmp"/usr/src/linux-source-*.tar.xz -C "$ml"
		rm -rf "$tmp"
		src=$(ls -d "$ml"/linux-source-* | head -1)
		# Debian's amd64 configuration from the matching headers package, then a tree
		# prepared for external modules with this machine's compiler (Rust off).
		hdrpkg="linux-headers-$(apt_ apt-cache show "$srcpkg=$srcpkgver" >/dev/null; apt_ apt-cache search --names-only "^linux-headers-${srcpkgver%%-*}.*-amd64$" | awk '{print $1}' | grep -v -e cloud -e rt | head -1 | sed 's/^linux-headers-//')"
		hdrdeb=$(fetch "$hdrpkg" "$srcpkgver")
		tmp=$(mktemp -d)
		dpkg-deb -x "$hdrdeb" "$tmp"
		cp "$tmp"/usr/src/linux-headers-*/.config "$src/.config"
		# Debian's exports, so that modpost can resolve an external module's symbols.
		cp "$tmp"/usr/src/linux-headers-*/Module.symvers "$src/Module.symvers"
		rm -rf "$tmp"
		log "preparing $src (make olddefconfig modules_prepare; a few minutes)"
		make -C "$src" -s olddefconfig >/dev/null
		"$src/scripts/config" --file "$src/.config" -d RUST -d DEBUG_INFO_BTF -d MODULE_SIG \
			-d MODULE_SIG_ALL --set-str SYSTEM_TRUSTED_KEYS '' --set-str SYSTEM_REVOCATION_KEYS '' \
			--set-str MODULE_SIG_KEY ''
		make -C "$src" -s olddefconfig >/dev/null
		make -C "$src" -s -j"$(nproc)" modules_prepare >/dev/null
		echo "MAINLINE_SRC=$src" > "$ml/mainline.env"
		echo "MAINLINE_VERSION=$(make -C "$src" -s kernelversion)" >> "$ml/mainline.env"
		touch "$ml/.complete"
	fi
	cat "$ml/mainline.env" >> "$cache/current.env"
fi

if [ "$print_env" = yes ]; then
	cat "$cache/current.env"
fi
log "ready: $cache/current.env"
