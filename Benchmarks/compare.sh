#!/bin/bash
# Two builds of the bridge on the same FUSE workloads, interleaved run by run so that load on
# the machine falls on both alike: e.g. the tree before and after a restructuring.
# Usage: bash Benchmarks/compare.sh OLD_BINARY NEW_BINARY [N] [runs]
#   (from the repository root, as root; OLD_BINARY and NEW_BINARY are release builds of
#   efivarfs-bridge, e.g. from `git worktree add /tmp/old REV && swift build -c release`)
# Prints operations per second (median of the runs) per workload and the ratio new / old.
# Not a test.
set -eu
old=$1; new=$2; N=${3:-1000}; RUNS=${4:-5}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
mnt=$work/mnt
mkdir -p "$mnt"
cleanup() { fusermount3 -u -z "$mnt" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
cc -O2 -o "$work/load" "$here/load.c" -lpthread

wait_mount() { for _ in $(seq 200); do grep -q " $mnt " /proc/mounts && return 0; sleep 0.02; done; echo "mount failed" >&2; return 1; }
stop() { fusermount3 -u "$mnt"; for _ in $(seq 100); do grep -q " $mnt " /proc/mounts || break; sleep 0.02; done; sleep 0.1; }
ops() { "$work/load" "$mnt" "$@" | sed -n 's/.*ops_per_s=\([0-9]*\).*/\1/p'; }
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
declare -A res
for r in $(seq "$RUNS"); do
    echo "run $r of $RUNS ..." >&2
    for which in old new; do
        bin=$old; [ $which = new ] && bin=$new
        "$bin" mount --ephemeral "$mnt"; wait_mount
        res[$which-write]+="$(ops write "$N") "; res[$which-list]+="$(ops list "$N") "
        res[$which-read]+="$(ops read "$N") "; res[$which-mixed-4]+="$(ops mixed "$N" 4 2000) "
        res[$which-delete]+="$(ops delete "$N") "; stop
        rm -rf "$work/store"; "$bin" mount --store "$work/store" "$mnt"; wait_mount
        res[$which-durable-1]+="$(ops durable "$N" 1 300) "; res[$which-durable-8]+="$(ops durable "$N" 8 300) "
        ops write "$N" >/dev/null; res[$which-durable-delete]+="$(ops delete "$N") "; stop
    done
done
printf "%-12s %12s %12s %8s\n" workload old new "new/old"
for k in write list read mixed-4 delete durable-1 durable-8 durable-delete; do
    o=$(echo ${res[old-$k]} | median); n=$(echo ${res[new-$k]} | median)
    printf "%-12s %12s %12s %8s\n" "$k" "$o" "$n" "$(awk -v a="$n" -v b="$o" 'BEGIN { printf "%.2f", a / b }')"
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
