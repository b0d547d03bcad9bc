#!/bin/bash
# Benchmarks: the bridge against the FUSE limit (baselinefs), same machine, same run.
# Usage: bash Benchmarks/run.sh [N] [runs]      (from the repository root; needs root for FUSE)
# Prints one table: operations per second (median of the runs) per workload, for the
# baseline and the bridge, and the ratio bridge/baseline. Not a test: numbers only.
set -eu
N=${1:-1000}
RUNS=${2:-3}
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
work=$(mktemp -d)
mnt=$work/mnt
mkdir -p "$mnt"
cleanup() { fusermount3 -u -z "$mnt" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

echo "building (release) ..." >&2
(cd "$root" && swift build -c release >/dev/null)
bridge=$root/.build/release/efivarfs-bridge
cc -O2 -o "$work/baselinefs" "$here/baselinefs.c" $(pkg-config --cflags --libs fuse3) -lpthread
cc -O2 -o "$work/load" "$here/load.c" -lpthread

wait_mount() { for _ in $(seq 200); do grep -q " $mnt " /proc/mounts && return 0; sleep 0.02; done; echo "mount failed" >&2; return 1; }
start_baseline() { "$work/baselinefs" --threads 4 "$@" "$mnt" & wait_mount; }
start_bridge() { "$bridge" mount "$@" "$mnt"; wait_mount; }
stop() { fusermount3 -u "$mnt"; for _ in $(seq 100); do grep -q " $mnt " /proc/mounts || return 0; sleep 0.02; done; }
ops() { "$work/load" "$mnt" "$@" | sed -n 's/.*ops_per_s=\([0-9]*\).*/\1/p'; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# One run of the in-memory workloads on the mounted filesystem: prints "name ops/s" lines.
suite() {
    echo "write $(ops write "$N")"
    echo "list $(ops list "$N")"
    echo "read $(ops read "$N")"
    echo "mixed-4 $(ops mixed "$N" 4 2000)"
    echo "delete $(ops delete "$N")"
}

declare -A base brid
nolock1=""; nolock8=""
for r in $(seq "$RUNS"); do
    start_baseline; while read -r k v; do base[$k]+="$v "; done < <(suite); stop
    start_bridge --ephemeral; while read -r k v; do brid[$k]+="$v "; done < <(suite); stop
    # Durable: the baseline appends + fdatasyncs; the bridge uses its native store.
    start_baseline --durable "$work/base.log"
    base[durable-1]+="$(ops durable "$N" 1 300) "; base[durable-8]+="$(ops durable "$N" 8 300) "; stop
    rm -rf "$work/store"; start_bridge --store "$work/store"
    brid[durable-1]+="$(ops durable "$N" 1 300) "; brid[durable-8]+="$(ops durable "$N" 8 300) "; stop
    # The same without Linux's efivars_lock (which serialises every SetVariable), so that
    # concurrent writes reach the store together and group commit can batch them.
    rm -rf "$work/store"; start_bridge --store "$work/store" --no-efivars-lock
    nolock1+="$(ops durable "$N" 1 300) "; nolock8+="$(ops durable "$N" 8 300) "; stop
done

printf "%-12s %14s %14s %8s\n" workload "baseline op/s" "bridge op/s" ratio
for k in write list read mixed-4 delete durable-1 durable-8; do
    b=$(echo ${base[$k]} | tr ' ' '\n' | median); g=$(echo ${brid[$k]} | tr ' ' '\n' | median)
    printf "%-12s %14s %14s %8s\n" "$k" "$b" "$g" "$(awk -v g="$g" -v b="$b" 'BEGIN { printf "%.2f", g / b }')"
done

d1=$(echo ${brid[durable-1]} | tr ' ' '\n' | median); d8=$(echo ${brid[durable-8]} | tr ' ' '\n' | median)
n1=$(echo $nolock1 | tr ' ' '\n' | median); n8=$(echo $nolock8 | tr ' ' '\n' | median)
echo "durable, 8 clients vs 1: $(awk -v a="$d8" -v b="$d1" 'BEGIN { printf "%.2f", a / b }') x with efivars_lock; $(awk -v a="$n8" -v b="$n1" 'BEGIN { printf "%.2f", a / b }') x with --no-efivars-lock ($n1 -> $n8 op/s) (target >= 2)"

# Listing 10x more variables; memory and start-up at 10,000 x 1 KiB. These need a store
# larger than OVMF's 256 KiB.
set +e
big="--nv-store-size 67108864"
start_bridge --ephemeral $big; "$work/load" "$mnt" write $((N * 10)) >/dev/null
l10=$(ops list $((N * 10))); stop
start_bridge --ephemeral $big; "$work/load" "$mnt" write "$N" >/dev/null; l1=$(ops list "$N"); stop
echo "list of $((N * 10)) takes $(awk -v a="$l1" -v b="$l10" -v n=10 'BEGIN { printf "%.1f", n * a / b }') x the time of $N (target <= 11)"

rm -rf "$work/big"; start_bridge --store "$work/big" $big
python3 - "$mnt" <<'PY' 2>/dev/null || true
import os, sys
d = sys.argv[1]
data = b"\x07\x00\x00\x00" + bytes(1024)
for i in range(10000):
    with open(f"{d}/Big{i}-cfc8fc79-be2e-4ddc-97f0-9f98bfe298a0", "wb", buffering=0) as f:
        f.write(data)
PY
pid=$(pgrep -f "efivarfs-bridge mount --store $work/big" | head -1)
echo "variables stored: $(ls "$mnt" | grep -c '^Big')"
echo "peak RSS serving 10,000 x 1 KiB: $(awk '/VmHWM/ {printf "%.1f MiB", $2/1024}' /proc/$pid/status)"
stop
t0=$(date +%s.%N); start_bridge --store "$work/big" $big; stat "$mnt/Big9999-cfc8fc79-be2e-4ddc-97f0-9f98bfe298a0" >/dev/null; t1=$(date +%s.%N)
echo "mount to first stat with 10,000 variables: $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f s", b - a }')"
stop
