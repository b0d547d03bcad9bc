#!/bin/bash
# Lifecycle stress (issue #20): for SECONDS, the daemon of a --store mount is killed
# (SIGKILL), stopped (SIGSTOP, then SIGCONT 0.2-2 s later), stopped cleanly (SIGTERM) and
# restarted, while clients read and write through the mount and run the scripting commands
# (set, get, list) beside it. Every client operation runs under `timeout`: an operation
# that needs it has hung, and is a failure. Afterwards a remount must show every
# acknowledged write: its last acknowledged value or a later attempted one, never an older
# one (the argument of Selftests/crash-harness.sh: the daemon may make a write durable
# and die before answering it).
#
# Usage: lifecycle.sh <efivarfs-bridge binary> [seconds]
# Prints one line per failure and ends with a summary; exits 0 only without failures.
set -u
bin=$1
seconds=${2:-20}
T=10   # bound of every client operation: far above the longest legitimate wait (a 2 s stop,
       # the 2 s control timeout, the 1 s shutdown grace, a restart)
export EFIVARFS_BRIDGE_CONTROL_TIMEOUT=2
work=$(mktemp -d)
base=$work/base
mnt=$base/mnt
store=$work/store
# LINUX_EFI_CRASH_GUID: names under it are removable (not immutable), so they can be rewritten.
guid=cfc8fc79-be2e-4ddc-97f0-9f98bfe298a0
failures=$work/failures
: > "$failures"
fail() { echo "$*" >> "$failures"; }
msleep() { sleep "$(printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)))"; }
mounted() { grep -q " $mnt " /proc/self/mountinfo; }

# The mount point is a directory on a read-only tmpfs: while no bridge is mounted there a
# client's write fails (EROFS) instead of landing in the bare directory, where it would look
# acknowledged and would keep the next mount out ("not empty").
mkdir -p "$base"
mount -t tmpfs -o size=64k tmpfs "$base" || { echo "cannot mount a tmpfs on $base"; exit 2; }
mkdir "$mnt"
mount -o remount,ro "$base" || { umount "$base"; echo "cannot make $base read-only"; exit 2; }

dpid=
cleanup() {
	touch "$work/stop"
	[ -n "$dpid" ] && { kill -CONT "$dpid"; kill -9 "$dpid"; } 2>/dev/null
	wait 2>/dev/null
	mounted && fusermount3 -u -z "$mnt" 2>/dev/null
	umount "$base" 2>/dev/null || umount -l "$base"
	rm -rf "$work"
}
trap cleanup EXIT

# Starts the daemon in the foreground (a child of ours), retrying while the store is held by
# a scripting command that booted it itself.
start_daemon() {
	for _ in $(seq 100); do
		"$bin" mount --foreground --store "$store" "$mnt" 2>>"$work/daemon.err" &
		dpid=$!
		for _ in $(seq 150); do
			mounted && return 0
			kill -0 "$dpid" 2>/dev/null || break
			msleep 20
		done
		kill -9 "$dpid" 2>/dev/null; wait "$dpid" 2>/dev/null
		mounted && fusermount3 -u -z "$mnt"
		msleep 50
	done
	fail "the daemon did not come back: $(tail -n 1 "$work/daemon.err")"
	return 1
}

# One client operation under the bound; a timeout is recorded as a failure.
bounded() {
	local what=$1; shift
	timeout -k 1 "$T" "$@"
	local rc=$?
	if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then fail "hang: $what did not finish within $T s"; fi
	return $rc
}

# Writers through the mount: client c rewrites F<c>_0..F<c>_7 with value-<j>, j increasing.
fuse_writer() {
	local c=$1 n
	local j=$((c * 10000000))
	while [ ! -e "$work/stop" ]; do
		j=$((j + 1)); n=F${c}_$((j % 8))
		echo "$n $j" >> "$work/attempts.$c"
		if bounded "write $n" bash -c 'printf "\x07\x00\x00\x00value-%s" "$1" > "$2"' _ "$j" "$mnt/$n-$guid" 2>/dev/null; then
			echo "$n $j" >> "$work/acked.$c"
		fi
	done
}

# Readers through the mount: files and the directory.
fuse_reader() {
	while [ ! -e "$work/stop" ]; do
		bounded "read F0_$((RANDOM % 8))" cat "$mnt/F0_$((RANDOM % 8))-$guid" >/dev/null 2>&1
		bounded "ls" ls "$mnt" >/dev/null 2>&1
		echo . >> "$work/reads"
		msleep 20
	done
}

# A scripting command's answer: 0, or 1 saying who holds the store and why it did not answer
# (stopped, killed mid-request, not listening yet); `get` may also say "no such variable"
# (3) before the first set. A server shutting down may answer EFI_DEVICE_ERROR (4): the
# write was not made, and it says so. Anything else is a failure.
check_cli() {
	local what=$1 rc=$2 err=$3 allowed=$4
	case " $allowed " in *" $rc "*) ;; *) fail "$what: exit $rc: $err"; return ;; esac
	case $rc in
	1) [[ "$err" == *"is in use by process"* ]] || fail "$what: exit 1 without saying who holds the store: $err" ;;
	4) [[ "$err" == *"EFI_DEVICE_ERROR"* ]] || fail "$what: exit 4: $err" ;;
	esac
}

# Scripting writer: S_0..S_3 with `set` (beside the live mount, or booting the store itself).
cli_writer() {
	local j=0 n err rc
	while [ ! -e "$work/stop" ]; do
		j=$((j + 1)); n=S_$((j % 4))
		echo "$n $j" >> "$work/attempts.cli"
		err=$(bounded "set $n" "$bin" set "$n-$guid" --attributes nv,bs,rt --ascii "value-$j" --store "$store" 2>&1)
		rc=$?
		if [ $rc -eq 0 ]; then echo "$n $j" >> "$work/acked.cli"; else check_cli "set $n" $rc "$err" "0 1 4 124 137"; fi
		msleep 100   # each command starts a process: leave the machine to the rest of the suite
	done
}

# Scripting readers: get and list.
cli_reader() {
	local err rc
	while [ ! -e "$work/stop" ]; do
		err=$(bounded "get S_0" "$bin" get "S_0-$guid" --hex --store "$store" 2>&1 >/dev/null); rc=$?
		check_cli "get S_0" $rc "$err" "0 1 3 124 137"
		err=$(bounded "list" "$bin" list --store "$store" 2>&1 >/dev/null); rc=$?
		check_cli "list" $rc "$err" "0 1 124 137"
		echo . >> "$work/cli-reads"
		msleep 100
	done
}

start_daemon || exit 1
fuse_writer 0 & fuse_writer 1 & fuse_reader & cli_writer & cli_reader &

kills=0 stops=0 terms=0 round=0
end=$(($(date +%s) + seconds))
while [ "$(date +%s)" -lt "$end" ]; do
	msleep $((200 + RANDOM % 600))
	# In turn, so that every kind of fault happens in a short run; the moments are random.
	round=$((round + 1))
	case $((round % 3)) in
	0)	kill -9 "$dpid"; wait "$dpid" 2>/dev/null
		fusermount3 -u -z "$mnt" 2>/dev/null
		kills=$((kills + 1))
		start_daemon || break ;;
	1)	kill -STOP "$dpid"
		msleep $((200 + RANDOM % 1800))
		kill -CONT "$dpid"
		stops=$((stops + 1)) ;;
	2)	kill -TERM "$dpid"
		for _ in $(seq 100); do kill -0 "$dpid" 2>/dev/null || break; msleep 50; done
		if kill -0 "$dpid" 2>/dev/null; then fail "the daemon did not exit within 5 s of SIGTERM"; kill -9 "$dpid"; fi
		wait "$dpid" 2>/dev/null
		mounted && { fail "SIGTERM left the mount behind"; fusermount3 -u -z "$mnt"; }
		terms=$((terms + 1))
		start_daemon || break ;;
	esac
done

# Let every client finish its last operation (each is bounded), then stop cleanly.
touch "$work/stop"
for p in $(jobs -p); do [ "$p" != "$dpid" ] && wait "$p"; done
kill -TERM "$dpid"; wait "$dpid"; dpid=

# Every acknowledged write, after a remount: the last acknowledged value or a later attempt.
start_daemon || { cat "$failures"; exit 1; }
checked=0
for c in 0 1 cli; do
	[ -f "$work/acked.$c" ] || { fail "client $c: no write was acknowledged"; continue; }
	names=8; [ "$c" = cli ] && names=4
	declare -A last=() latest=()
	while read -r n v; do last[$n]=$v; done < "$work/acked.$c"
	while read -r n v; do [[ "$v" =~ ^[0-9]+$ ]] && [ "$v" -gt "${latest[$n]:-0}" ] && latest[$n]=$v; done < "$work/attempts.$c"
	for n in "${!last[@]}"; do
		v=
		IFS= read -r v < "$mnt/$n-$guid" 2>/dev/null   # bash drops the NUL attribute bytes
		got=${v#$'\x07'value-}
		if [[ "$v" != $'\x07'value-* ]] || ! [[ "$got" =~ ^[0-9]+$ ]] || [ "$got" -lt "${last[$n]}" ] \
			|| [ "$got" -gt "${latest[$n]}" ] || [ "${n#*_}" != "$((got % names))" ]; then
			fail "$n holds '${v#?}': last acknowledged value-${last[$n]}, latest attempt value-${latest[$n]}"
		fi
		checked=$((checked + 1))
	done
	unset last latest
done
kill -TERM "$dpid"; wait "$dpid"; dpid=

acked=$(cat "$work"/acked.* 2>/dev/null | wc -l)
reads=$(cat "$work/reads" "$work/cli-reads" 2>/dev/null | wc -l)
sort "$failures" | uniq -c | sed 's/^ *//'
nfail=$(wc -l < "$failures")
echo "lifecycle: $seconds s, $kills SIGKILL, $stops SIGSTOP, $terms SIGTERM; $acked acknowledged writes, $checked variables checked after a remount, $reads read rounds; $nfail failures"
[ "$nfail" -eq 0 ]
