#!/bin/bash
# Crash harness for the durable store: a client writes variables as fast as it can and
# records each write that returned; the bridge is killed with SIGKILL at a random moment;
# after a restart every recorded write must be there with its value, and the store must
# open (no corruption error).
# Usage: crash-harness.sh <efivarfs-bridge binary> <rounds>
set -u
bin=$1
rounds=${2:-20}
work=$(mktemp -d)
mnt=$work/mnt
store=$work/store
acked=$work/acked
mkdir -p "$mnt"
: > "$acked"
guid=210be57c-9849-4fc7-a635-e6382d1aec27
failures=0
n=0
cleanup() { fusermount3 -u -z "$mnt" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

for round in $(seq 1 "$rounds"); do
	before=$(wc -l < "$acked" 2>/dev/null || echo 0)
	"$bin" mount --foreground --store "$store" "$mnt" 2>>"$work/bridge.err" &
	pid=$!
	for _ in $(seq 100); do grep -q " $mnt " /proc/mounts && break; sleep 0.02; done
	# The writer: one variable per write, recorded only after write() returned success.
	( i=$n
	  while :; do
		i=$((i + 1))
		if printf "\x07\x00\x00\x00value-$i" > "$mnt/Crash$i-$guid" 2>/dev/null; then echo "$i" >> "$acked"; fi
	  done ) 2>/dev/null &
	writer=$!
	sleep "0.$(( (RANDOM % 40) + 5 ))"
	kill -9 "$pid"
	# SIGKILL: a test runner may have started us with SIGTERM blocked.
	kill -9 "$writer" 2>/dev/null; wait "$writer" 2>/dev/null
	wait "$pid" 2>/dev/null
	fusermount3 -u -z "$mnt" 2>/dev/null
	n=$(( $(tail -n 1 "$acked" 2>/dev/null || echo $n) + 1000 ))
	# Restart and check every acknowledged write.
	"$bin" mount --store "$store" "$mnt" 2>>"$work/bridge.err" || { echo "round $round: the store did not open: $(tail -n 1 "$work/bridge.err")"; failures=$((failures + 1)); continue; }
	missing=0
	# bash's read drops the NUL attribute bytes and keeps 0x07: no process per file.
	while read -r i; do
		v=
		IFS= read -r v < "$mnt/Crash$i-$guid" 2>/dev/null
		[ "$v" = $'\x07'"value-$i" ] || missing=$((missing + 1))
	done < "$acked"
	fusermount3 -u "$mnt"
	new=$(( $(wc -l < "$acked") - before ))
	if [ "$missing" -ne 0 ]; then echo "round $round: $missing acknowledged writes missing"; failures=$((failures + 1));
	elif [ "$new" -eq 0 ]; then echo "round $round: no write was acknowledged, nothing was tested"; failures=$((failures + 1));
	else echo "round $round: $new new acknowledged writes, all $(wc -l < "$acked") present"; fi
done
total=$(wc -l < "$acked")
echo "$rounds rounds, $total acknowledged writes checked after every round"
echo "$((rounds - failures)) passed, $failures failed"
[ "$failures" -eq 0 ]
