#!/bin/bash
# Crash harness for the durable store: a client rewrites a set of variables as fast as it
# can and records each write that returned; the bridge is killed with SIGKILL at a random
# moment; after a restart every variable must hold its last acknowledged value or the
# value of a later write that was attempted but not acknowledged (the bridge may die after
# making a write durable and before answering it), never an older one, and the store must
# open.
# Usage: crash-harness.sh <efivarfs-bridge binary> <rounds> [native|fd|reads]
# "fd" serves a copy of Debian's OVMF_VARS_4M.fd with --from-fd (in-place edk2 writes and
# reclaims) instead of the native store.
# "reads" (native store) also runs readers beside the writer and records every value any
# of them saw; after the SIGKILL and the reopen, each variable must hold the newest value
# a reader saw or a later attempted one: a read must never show a value a crash can take
# back (the store answers a read only once every change it could see is durable).
set -u
bin=$1
rounds=${2:-20}
kind=${3:-native}
names=64
work=$(mktemp -d)
mnt=$work/mnt
store=$work/store
acked=$work/acked          # "<name> <value>" per acknowledged write
attempts=$work/attempts    # every value about to be written, appended before the write
seen=$work/seen            # "<name> <value>" per value a reader saw (reads mode)
readers=2
mkdir -p "$mnt"
: > "$acked"
if [ "$kind" = fd ]; then
	# Fails at once when the template is missing, instead of mounting nothing 20 times.
	[ -f /usr/share/OVMF/OVMF_VARS_4M.fd ] || { echo "missing /usr/share/OVMF/OVMF_VARS_4M.fd (Debian package ovmf; bash scripts/setup.sh)"; exit 2; }
	cp /usr/share/OVMF/OVMF_VARS_4M.fd "$work/OVMF_VARS.fd"
	storeargs=(--from-fd "$work/OVMF_VARS.fd")
else
	storeargs=(--store "$store")
fi
# LINUX_EFI_CRASH_GUID: every name under it is removable (not immutable), so it can be rewritten.
guid=cfc8fc79-be2e-4ddc-97f0-9f98bfe298a0
failures=0
total=0
totalreads=0
i=0
cleanup() { fusermount3 -u -z "$mnt" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

for round in $(seq 1 "$rounds"); do
	: > "$acked"
	: > "$attempts"
	: > "$seen"
	"$bin" mount --foreground "${storeargs[@]}" "$mnt" 2>>"$work/bridge.err" &
	pid=$!
	for _ in $(seq 1500); do
		grep -q " $mnt " /proc/mounts && break
		# A bridge that exited will never mount: stop the harness with its message.
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "round $round: the bridge exited before mounting:"; tail -5 "$work/bridge.err"
			exit 2
		fi
		sleep 0.02
	done
	# Never write before the mount is up: the writes would land in the bare directory.
	if ! grep -q " $mnt " /proc/mounts; then
		echo "round $round: the bridge did not mount within 30 s"; failures=$((failures + 1))
		kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; continue
	fi
	# The writer: Crash0..Crash63 rewritten in turn; a write is recorded only after it returned.
	( j=$i
	  while :; do
		j=$((j + 1))
		n=Crash$((j % names))
		echo "$j" >> "$attempts"
		if printf "\x07\x00\x00\x00value-$j" > "$mnt/$n-$guid"; then echo "$n $j" >> "$acked"; fi
	  done ) 2>/dev/null &
	writer=$!
	pids=()
	if [ "$kind" = reads ]; then
		# Readers: each value is recorded only after the read returned it.
		for r in $(seq "$readers"); do
			( k=$r
			  while :; do
				k=$((k + 7))
				n=Crash$((k % names))
				# One read(2) of the whole file (dd, not bash's read, which reads in pieces:
				# each read(2) is a fresh snapshot, as on efivarfs, so a value that grew
				# between two pieces would read as a mix of both). The 4 attribute bytes go.
				v=$(dd if="$mnt/$n-$guid" bs=4096 count=1 status=none 2>/dev/null | tail -c +5)
				got=${v#value-}
				[[ "$v" == value-* && "$got" =~ ^[0-9]+$ ]] && echo "$n $got" >> "$seen"
			  done ) 2>/dev/null &
			pids+=($!)
		done
	fi
	# The random moment counts from the first acknowledged write: on a loaded machine (the
	# whole suite in parallel) the writer may otherwise not get one in before the kill.
	for _ in $(seq 500); do [ -s "$acked" ] && break; sleep 0.02; done
	sleep "0.$(( (RANDOM % 40) + 5 ))"
	kill -9 "$pid"
	# SIGKILL: a test runner may have started us with SIGTERM blocked.
	kill -9 "$writer" "${pids[@]}" 2>/dev/null; wait "$writer" "${pids[@]}" 2>/dev/null
	wait "$pid" 2>/dev/null
	fusermount3 -u -z "$mnt" 2>/dev/null
	i=$((i + 100000))
	# Restart and check the last acknowledged value of every variable.
	"$bin" mount "${storeargs[@]}" "$mnt" 2>>"$work/bridge.err" || { echo "round $round: the store did not open: $(tail -n 1 "$work/bridge.err")"; failures=$((failures + 1)); continue; }
	declare -A last=() maxseen=()
	while read -r n v; do last[$n]=$v; done < "$acked"
	# A line cut short by the kill reads as a smaller number or a name that is not there: it
	# can only weaken the check, never fail it wrongly.
	while read -r n v; do
		[[ "$v" =~ ^[0-9]+$ && "$n" =~ ^Crash[0-9]+$ ]] || continue
		[ "$v" -gt "${maxseen[$n]:-0}" ] && maxseen[$n]=$v
		[ -n "${last[$n]:-}" ] || last[$n]=0
	done < "$seen"
	# The latest attempt; a line cut short by the kill can only read smaller, so max() is safe.
	latest=0
	while read -r a; do [[ "$a" =~ ^[0-9]+$ ]] && [ "$a" -gt "$latest" ] && latest=$a; done < "$attempts"
	bad=0
	for n in "${!last[@]}"; do
		v=
		IFS= read -r v < "$mnt/$n-$guid" 2>/dev/null   # bash drops the NUL attribute bytes
		got=${v#$'\x07'value-}
		# Values for CrashK are K mod 64; acceptable: the last acknowledged one or any later attempt.
		if [[ "$v" != $'\x07'value-* ]] || ! [[ "$got" =~ ^[0-9]+$ ]] || [ "$got" -lt "${last[$n]}" ] || [ "$got" -gt "$latest" ] \
			|| [ "Crash$((got % names))" != "$n" ]; then
			echo "round $round: $n holds '${v#?}', last acknowledged value-${last[$n]}, latest attempt $latest"
			bad=$((bad + 1))
		elif [ -n "${maxseen[$n]:-}" ] && [ "$got" -lt "${maxseen[$n]}" ]; then
			echo "round $round: $n holds value-$got, but a reader saw value-${maxseen[$n]} before the crash"
			bad=$((bad + 1))
		fi
	done
	fusermount3 -u "$mnt"
	# The next round's mount needs the store: wait for this round's server to let it go.
	for _ in $(seq 250); do pgrep -f -- "mount ${storeargs[*]} $mnt --ready-fd" >/dev/null || break; sleep 0.02; done
	writes=$(wc -l < "$acked")
	reads=$(wc -l < "$seen")
	total=$((total + writes))
	totalreads=$((totalreads + reads))
	if [ "$bad" -ne 0 ]; then failures=$((failures + 1));
	elif [ "$writes" -eq 0 ]; then echo "round $round: no write was acknowledged, nothing was tested"; failures=$((failures + 1));
	elif [ "$kind" = reads ] && [ "$reads" -eq 0 ]; then echo "round $round: no reader saw a value, nothing was tested"; failures=$((failures + 1));
	elif [ "$kind" = reads ]; then echo "round $round: $writes acknowledged writes, $reads values read, ${#maxseen[@]} variables read, all present or newer"
	else echo "round $round: $writes acknowledged writes to ${#last[@]} variables, all present"; fi
	unset last maxseen
done
echo "$rounds rounds, $total acknowledged writes checked$([ "$kind" = reads ] && echo ", $totalreads values read checked")"
echo "$((rounds - failures)) passed, $failures failed"
[ "$failures" -eq 0 ]
