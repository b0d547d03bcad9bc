#!/bin/bash
# Benchmarks: the bridge against the FUSE limit (baselinefs), same machine, same run; FUSE
# requests per operation on both; the scale targets; SVSM calls per efivarfs operation for
# common tools; the driver cache's effect at three world-switch costs; the daemon's own work per
# file operation, in process.
# Usage: bash Benchmarks/run.sh [N] [runs]      (from the repository root; needs root for FUSE;
#        the calls table needs efibootmgr, efivar, openssl, efitools and chattr)
# Prints tables; not a test. Report the load average printed at the start and the end with
# any number taken from it: the machine is shared.
set -eu
N=${1:-1000}
RUNS=${2:-5}
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
work=$(mktemp -d)
mnt=$work/mnt
mkdir -p "$mnt"
cleanup() { fusermount3 -u -z "$mnt" 2>/dev/null || true; fusermount3 -u -z "$work/small" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "building (release) ..." >&2
(cd "$root" && swift build -c release >/dev/null)
bridge=$root/.build/release/efivarfs-bridge
# The baseline links the bridge's own worker pool (Sources/CFuseServer/cfuse_server.c).
cc -O2 -o "$work/baselinefs" "$here/baselinefs.c" "$root/Sources/CFuseServer/cfuse_server.c" -I "$root/Sources/CFuseServer/include" \
    $(pkg-config --cflags --libs fuse3) -lpthread
cc -O2 -o "$work/load" "$here/load.c" -lpthread

wait_mount() { for _ in $(seq 200); do grep -q " $mnt " /proc/mounts && return 0; sleep 0.02; done; echo "mount failed" >&2; return 1; }
start_baseline() { "$work/baselinefs" --threads 4 "$@" "$mnt" & wait_mount; find_daemon; }
start_bridge() { "$bridge" mount "$@" "$mnt"; wait_mount; find_daemon; }
stop() { fusermount3 -u "$mnt"; for _ in $(seq 100); do grep -q " $mnt " /proc/mounts || break; sleep 0.02; done; sleep 0.1; }
# The operations per second of one load.c workload on DIR.
ops_on() { local dir=$1 count rate; shift; load_fields "$("$work/load" "$dir" "$@")"; echo "$rate"; }
ops() { ops_on "$mnt" "$@"; }
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# The daemon serving $mnt, in $dpid (the bridge's daemon runs itself again with --ready-fd).
find_daemon() {
    dpid=$(pgrep -f -- " $mnt( --ready-fd [0-9]+)?\$" | head -1)
    [ -n "$dpid" ] || { echo "no daemon process found serving $mnt" >&2; exit 1; }
}
# Nanoseconds all of a process's threads have run, user and system together.
daemon_cpu() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { print s + 0 }'; }
# count and rate: the operations and the operations per second in a line of load.c's output.
load_fields() {
    count=$(echo "$1" | sed -n 's/.* ops=\([0-9]*\).*/\1/p'); rate=$(echo "$1" | sed -n 's/.*ops_per_s=\([0-9]*\).*/\1/p')
}
# One workload on the mounted filesystem: "name op/s daemon-CPU-ns-per-operation", per
# operation load.c made (a listing of the bridge stats its firmware variables too).
measure() {
    local name=$1 c0 out c1
    shift
    c0=$(daemon_cpu "$dpid")
    out=$("$work/load" "$mnt" "$@"); c1=$(daemon_cpu "$dpid")
    local count rate
    load_fields "$out"
    echo "$name $rate $(( (c1 - c0) / (count > 0 ? count : 1) ))"
}
# keep ARRAY LINE: files a measure line under ARRAY (op/s) and ARRAYcpu (CPU per operation).
keep() {
    local -n rate=$1 cpu=${1}cpu
    local k v c
    read -r k v c <<<"$2"
    rate[$k]+="$v "; cpu[$k]+="$c "
}

# One run of the in-memory workloads.
suite() {
    measure write write "$N"
    measure list list "$N"
    measure read read "$N"
    measure mixed-4 mixed "$N" 4 2000
    measure delete delete "$N"
}

declare -A pool mt brid poolcpu mtcpu bridcpu
# medians K: p, m and g, the medians of workload K on the pool baseline, the mt baseline and
# the bridge, and best, the better baseline (both tables below read them).
medians() {
    p=$(echo ${pool[$1]} | median); m=$(echo ${mt[$1]} | median); g=$(echo ${brid[$1]} | median)
    best=$(( p > m ? p : m ))
}
for r in $(seq "$RUNS"); do
    echo "run $r of $RUNS ..." >&2
    start_baseline --loop pool; while read -r line; do keep pool "$line"; done < <(suite); stop
    start_baseline --loop mt; while read -r line; do keep mt "$line"; done < <(suite); stop
    start_bridge --ephemeral; while read -r line; do keep brid "$line"; done < <(suite); stop
    # Durable: the baseline appends + fdatasyncs; the bridge uses its native store.
    for loop in pool mt; do
        start_baseline --loop $loop --durable "$work/base.log"
        keep $loop "$(measure durable-1 durable "$N" 1 300)"; keep $loop "$(measure durable-8 durable "$N" 8 300)"
        ops write "$N" >/dev/null; keep $loop "$(measure durable-delete delete "$N")"; stop
    done
    rm -rf "$work/store"; start_bridge --store "$work/store"
    keep brid "$(measure durable-1 durable "$N" 1 300)"; keep brid "$(measure durable-8 durable "$N" 8 300)"
    # Durable deletes: N variables created (each synced), then deleted as libefivar deletes.
    ops write "$N" >/dev/null; keep brid "$(measure durable-delete delete "$N")"; stop
    # Without Linux's efivars_lock (which serialises every SetVariable), so that concurrent
    # writes reach the store together and group commit can batch them.
    rm -rf "$work/store"; start_bridge --store "$work/store" --no-efivars-lock
    brid[nolock-1]+="$(ops durable "$N" 1 300) "; brid[nolock-8]+="$(ops durable "$N" 8 300) "; stop
done

echo
echo "== FUSE path: operations per second, median of $RUNS runs, N = $N; ratio = bridge / the better baseline"
printf "%-12s %12s %12s %12s %8s %8s\n" workload "base pool" "base mt" "bridge" ratio target
for k in write list read mixed-4 delete durable-1 durable-8 durable-delete; do
    medians "$k"
    case $k in mixed-4|durable-8) t="-" ;; *) t=">= 0.9" ;; esac
    printf "%-12s %12s %12s %12s %8s %8s\n" "$k" "$p" "$m" "$g" "$(ratio "$g" "$best")" "$t"
done
d1=$(echo ${brid[durable-1]} | median); d8=$(echo ${brid[durable-8]} | median)
n1=$(echo ${brid[nolock-1]} | median); n8=$(echo ${brid[nolock-8]} | median)
echo "durable, 8 clients vs 1: $(ratio "$d8" "$d1") x with efivars_lock; $(ratio "$n8" "$n1") x with --no-efivars-lock ($n1 -> $n8 op/s)"
echo
echo "== Where the gap is: time per operation against each daemon's CPU per operation, medians of $RUNS runs"
echo "   (time: 1 / op/s, the better baseline; CPU: user + system of all the daemon's threads, from"
echo "   /proc/PID/task/*/schedstat, the pool baseline, which runs the bridge's own worker pool."
echo "   One client waits for each request, so the daemon's CPU before a reply is on its path.)"
printf "%-15s %9s %9s %9s %11s %9s %9s %9s\n" workload "base us" "bridge us" "extra us" "0.9 allows" "base CPU" "brid CPU" "CPU extra"
for k in write list read delete durable-1 durable-delete; do
    medians "$k"
    pc=$(echo ${poolcpu[$k]} | median); gc=$(echo ${bridcpu[$k]} | median)
    awk -v k="$k" -v b="$best" -v g="$g" -v pc="$pc" -v gc="$gc" 'BEGIN {
        tb = 1e6 / b; tg = 1e6 / g
        printf "%-15s %9.1f %9.1f %9.1f %11.1f %9.1f %9.1f %9.1f\n", k, tb, tg, tg - tb, tb / 9, pc / 1000, gc / 1000, (gc - pc) / 1000 }'
done

# The same CPU split into user and system time. The kernel keeps the split in clock ticks
# (/proc/PID/stat, utime and stime), so this takes 10 N operations per workload, and three
# rounds with the two daemons taking turns. Equal system time with equal FUSE requests says
# the kernel does the same work for both; the rest of the gap is the daemon's own code.
SPLIT_N=$((N * 10))
tick_us=$(( 1000000 / $(getconf CLK_TCK) ))
# "user system" clock ticks of all of a process's threads (fields 14 and 15, counted after
# the command name, which may hold spaces).
daemon_ticks() { sed 's/.*) //' /proc/"$1"/stat | awk '{ print $12, $13 }'; }
# split NAME LOAD-ARGS...: "name op/s user-us-per-op system-us-per-op" for the mounted daemon.
split_measure() {
    local name=$1 u0 s0 u1 s1 out count rate
    shift
    read -r u0 s0 < <(daemon_ticks "$dpid")
    out=$("$work/load" "$mnt" "$@"); read -r u1 s1 < <(daemon_ticks "$dpid")
    load_fields "$out"
    case $out in *" errors=0 "*) ;; *) echo "FAILED $name: $out"; return ;; esac
    echo "$name $rate $(( (u1 - u0) * tick_us * 1000 / count )) $(( (s1 - s0) * tick_us * 1000 / count ))"
}
split_suite() {
    split_measure write write "$SPLIT_N"
    split_measure list list "$SPLIT_N"
    split_measure read read "$SPLIT_N"
    split_measure delete delete "$SPLIT_N"
}
declare -A srate suser ssys
for r in 1 2 3; do
    for d in base bridge; do
        if [ $d = base ]; then start_baseline --loop pool; else start_bridge --ephemeral --nv-store-size 67108864; fi
        while read -r k v u s; do
            [ "$k" != FAILED ] || { echo "the user/system split on $d: $v $u $s" >&2; exit 1; }
            srate[$d/$k]+="$v "; suser[$d/$k]+="$u "; ssys[$d/$k]+="$s "
        done < <(split_suite)
        stop
    done
done
echo
echo "== The CPU per operation split into user and system time (pool baseline; N = $SPLIT_N, medians"
echo "   of 3 interleaved rounds; from clock ticks: one tick is $(awk -v t="$tick_us" -v n="$SPLIT_N" 'BEGIN { printf "%.1f", t / n }') us per operation at this N; \"0.9 allows\" is"
echo "   a ninth of the baseline's time per operation in these rounds)"
printf "%-9s %10s %10s %12s %12s %11s %11s %11s\n" workload "base user" "base sys" "bridge user" "bridge sys" "user extra" "sys extra" "0.9 allows"
for k in write list read delete; do
    bu=$(echo ${suser[base/$k]} | median); bs=$(echo ${ssys[base/$k]} | median)
    gu=$(echo ${suser[bridge/$k]} | median); gs=$(echo ${ssys[bridge/$k]} | median)
    br=$(echo ${srate[base/$k]} | median)
    awk -v k="$k" -v bu="$bu" -v bs="$bs" -v gu="$gu" -v gs="$gs" -v br="$br" 'BEGIN {
        printf "%-9s %10.1f %10.1f %12.1f %12.1f %11.1f %11.1f %11.1f\n", k, bu / 1000, bs / 1000, gu / 1000, gs / 1000,
            (gu - bu) / 1000, (gs - bs) / 1000, 1e6 / br / 9 }'
done

echo
echo "== FUSE requests per operation (counted by each daemon's worker pool, N = 200)"
for w in baseline bridge; do
    echo "$w:"
    bash "$here/fuse-requests.sh" "$work/baselinefs" "$work/load" "$bridge" $w "$mnt" 200 | sed 's/^/  /'
done

echo
echo "== Scale"
set +e
big="--nv-store-size 67108864"
# Two mounts side by side, 10 N and N variables, listed in turn $RUNS times; the ratio of the
# medians. (One listing of each, taken a minute apart, once read 15 x when a slow phase of
# the host fell on the larger one.)
small="$work/small"; mkdir -p "$small"
start_bridge --ephemeral $big; "$work/load" "$mnt" write $((N * 10)) >/dev/null
"$bridge" mount --ephemeral $big "$small"
for _ in $(seq 200); do grep -q " $small " /proc/mounts && break; sleep 0.02; done
"$work/load" "$small" write "$N" >/dev/null
l10s=""; l1s=""
for r in $(seq "$RUNS"); do
    l10s+="$(ops list $((N * 10))) "
    l1s+="$(ops_on "$small" list "$N") "
done
fusermount3 -u "$small"; stop
l10=$(echo $l10s | median); l1=$(echo $l1s | median)
echo "list of $((N * 10)) takes $(awk -v a="$l1" -v b="$l10" -v n=10 'BEGIN { printf "%.1f", n * a / b }') x the time of $N, medians of $RUNS interleaved listings (target <= 11)"

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
echo "peak RSS serving 10,000 x 1 KiB: $(awk '/VmHWM/ {printf "%.1f MiB", $2/1024}' /proc/$pid/status) (target <= 64 MiB)"
stop
t0=$(date +%s.%N); start_bridge --store "$work/big" $big; stat "$mnt/Big9999-cfc8fc79-be2e-4ddc-97f0-9f98bfe298a0" >/dev/null; t1=$(date +%s.%N)
echo "mount to first stat with 10,000 variables: $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f s", b - a }') (target <= 0.5 s)"
stop
# 512 vCPUs against 4: the same mixed load (8 threads x 2000 operations), runs interleaved,
# three times RUNS of them. The host's speed flips between two levels within seconds (one
# round gives 25-26 or 29-31 thousand op/s on either vCPU count), and with 5 rounds a median
# once fell on the slow level for 512 only and read 1.18 x; 9 rounds of the same code then
# read 1.04 x.
v4=""; v512=""
for r in $(seq $((RUNS * 3))); do
    for v in 4 512; do
        start_bridge --ephemeral --vcpus $v; "$work/load" "$mnt" write "$N" >/dev/null
        x=$(ops mixed "$N" 8 2000); stop
        if [ $v = 4 ]; then v4+="$x "; else v512+="$x "; fi
    done
done
m4=$(echo $v4 | median); m512=$(echo $v512 | median)
echo "mixed load, 4 vCPUs $m4 op/s, 512 vCPUs $m512 op/s (medians of $((RUNS * 3)) interleaved rounds): 512 cost $(ratio "$m4" "$m512") x the time of 4 (target <= 1.1)"
set -e

echo
echo "== SVSM calls per efivarfs operation (driver cache off, then on)"
if command -v efibootmgr >/dev/null && command -v efivar >/dev/null && command -v sign-efi-sig-list >/dev/null; then
    bash "$here/calls.sh" "$bridge" "$mnt"
else
    echo "(skipped: needs efibootmgr, efivar and efitools)"
fi

echo
echo "== The driver cache: reads (open/read/close of $N variables) with the world switch spent, median of $RUNS"
printf "%-10s %14s %14s %10s %14s %14s\n" "switch" "op/s no cache" "op/s cache" "speed-up" "calls no cache" "calls cache"
for cost in 0 1000 5000 20000; do
    declare -A tput=() calls=()
    for cache in off on; do
        flags="--world-switch $cost"; [ "$cost" -gt 0 ] && flags+=" --world-switch-delay"; [ $cache = on ] && flags+=" --driver-cache"
        start_bridge --ephemeral $flags; "$work/load" "$mnt" write "$N" >/dev/null
        # First pass fills the cache (a booted system's cache is warm); then measure.
        "$work/load" "$mnt" read "$N" >/dev/null
        before=$("$bridge" stats --json "$mnt" | python3 -c 'import json,sys; print(json.load(sys.stdin)["svsm_calls"])')
        xs=""; for r in $(seq "$RUNS"); do xs+="$(ops read "$N") "; done
        after=$("$bridge" stats --json "$mnt" | python3 -c 'import json,sys; print(json.load(sys.stdin)["svsm_calls"])')
        stop
        tput[$cache]=$(echo $xs | median); calls[$cache]=$(( (after - before) / RUNS ))
    done
    printf "%-10s %14s %14s %10s %14s %14s\n" "${cost} ns" "${tput[off]}" "${tput[on]}" "$(ratio "${tput[on]}" "${tput[off]}")x" "${calls[off]}" "${calls[on]}"
done
echo
echo "== The daemon's own work per file operation, in process (no FUSE, no kernel), median of $RUNS"
# bench-model --only efivarfs makes the efivarfs calls each load.c operation causes, in the
# order and number of its FUSE requests, over 10,000 variables: the part of a FUSE number
# that this code decides, measured without the kernel's noise.
declare -A inproc=()
for r in $(seq "$RUNS"); do
    while read -r op ns; do inproc[$op]+="$ns "; done < <("$bridge" bench-model --only efivarfs --variables 10000 |
        sed -E 's/^efivarfs ([a-z]+).*: ([0-9]+) ns.*/\1 \2/')
done
for op in create stat read delete; do printf "%-8s %8s ns\n" "$op" "$(echo ${inproc[$op]} | median)"; done
echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
