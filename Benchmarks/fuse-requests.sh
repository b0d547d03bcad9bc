#!/bin/bash
# FUSE requests per operation, counted in the daemons (the worker pool counts each request's
# opcode as it reads it): N creates, N open/read/close, a listing of N (readdir + stat each),
# N rewrites of one existing variable (open O_CREAT|O_TRUNC, write, close: load.c's durable
# workload with one thread), N libefivar-style deletes. Prints "workload total/op
# OPCODE=n/op ..." for one filesystem.
# Usage: fuse-requests.sh <baselinefs> <load> <efivarfs-bridge> <baseline|bridge> <mountpoint> [N] [bridge args...]
set -eu
baselinefs=$1 load=$2 bridge=$3 which=$4 mnt=$5 N=${6:-200}
shift 6 || shift $#
counts=$(mktemp)
wait_mount() { for _ in $(seq 200); do grep -q " $mnt " /proc/mounts && return 0; sleep 0.02; done; echo "mount failed" >&2; return 1; }
if [ "$which" = baseline ]; then
    "$baselinefs" --counts "$counts" "$mnt" & pid=$!
    wait_mount
    snapshot() { rm -f "$counts"; kill -USR1 "$pid"; for _ in $(seq 100); do [ -s "$counts" ] && break; sleep 0.01; done; sort "$counts"; }
else
    "$bridge" mount --ephemeral "$@" "$mnt"
    wait_mount
    snapshot() {
        "$bridge" stats --json "$mnt" | python3 -c 'import json,sys; [print(k, v) for k, v in sorted(json.load(sys.stdin)["fuse_requests"].items())]'
    }
fi
diff_per_op() {  # before after n
    join -a2 -e0 -o 0,1.2,2.2 "$1" "$2" | awk -v n="$3" '{d=$3-$2; if (d > 0) {t+=d; s=s sprintf(" %s=%.2f", $1, d/n)}} END {printf "%.2f%s\n", t/n, s}'
}
before=$(mktemp) after=$(mktemp)
for w in write read list rewrite delete; do
    snapshot > "$before"
    if [ "$w" = rewrite ]; then "$load" "$mnt" durable "$N" 1 "$N" >/dev/null; else "$load" "$mnt" "$w" "$N" >/dev/null; fi
    sleep 0.1   # RELEASE and FORGET are asynchronous
    snapshot > "$after"
    echo "$w $(diff_per_op "$before" "$after" "$N")"
done
fusermount3 -u "$mnt"
if [ "$which" = baseline ]; then wait "$pid" 2>/dev/null || true; fi
rm -f "$counts" "$before" "$after"
