#!/usr/bin/env bash
# Builds the libFuzzer binary and runs one target (or all) on its committed corpus.
#   bash Fuzz/run.sh TARGET|all [libFuzzer options...]
#   bash Fuzz/run.sh svsm-protocol -runs=10000000
#   bash Fuzz/run.sh all -max_total_time=5          # what CI runs
# New corpus entries go to .build-fuzz/corpus/TARGET (the committed seeds stay as they
# are); a crash leaves crash-* in .build-fuzz/artifacts. The script fails when the build
# fails, when a fuzzer exits non-zero (a crash, a timeout, a leak, a fuzzer that did not
# start), when it leaves an artifact, and when it executed no input at all.
set -euo pipefail
cd "$(dirname "$0")/.."
targets="svsm-protocol mm-payload efivarfs-write variable-file auth-variable peer-store"
[ $# -ge 1 ] || { echo "usage: $0 TARGET|all [libFuzzer options]"; echo "targets: $targets"; exit 64; }
which="$1"; shift
[ "$which" = all ] || targets="$which"

mkdir -p .build-fuzz
build_log=.build-fuzz/build.log
echo "== building the fuzzer (release, -sanitize=fuzzer,address)"
if ! swift build -c release --build-path .build-fuzz --product efivarfs-fuzz \
        -Xswiftc -sanitize=fuzzer,address -Xswiftc -DEFIVARFS_FUZZING >"$build_log" 2>&1; then
    # The linker's "Cannot export local symbol" lines are noise of the sanitizer build.
    sed '/Cannot export local symbol/d' "$build_log" | tail -40
    echo "fuzz build failed (full log: $build_log)"
    exit 1
fi
bin=.build-fuzz/release/efivarfs-fuzz

# A Swift runtime failure must end the process at once for libFuzzer to record the input
# (the backtracer would otherwise hold it); leaks are not checked (the targets keep caches).
export SWIFT_BACKTRACE=enable=no
export ASAN_OPTIONS=detect_leaks=0:${ASAN_OPTIONS:-}
for t in $targets; do
    [ -d "Fuzz/corpus/$t" ] || { echo "no such target: $t"; exit 64; }
    artifacts=".build-fuzz/artifacts/$t"
    rm -rf "$artifacts"
    mkdir -p ".build-fuzz/corpus/$t" "$artifacts"
    log=".build-fuzz/$t.log"
    echo "== $t"
    status=0
    EFIVARFS_FUZZ_TARGET="$t" "$bin" -print_final_stats=1 -artifact_prefix="$artifacts/" "$@" \
        ".build-fuzz/corpus/$t" "Fuzz/corpus/$t" >"$log" 2>&1 || status=$?
    sed -n -E '/INITED|DONE|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss|ERROR|Fatal error|property violated|SUMMARY|^Base64|Test unit written/p' "$log"
    executed=$(sed -n -E 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$log" | tail -1)
    if [ "$status" -ne 0 ]; then
        tail -20 "$log"
        echo "== $t: the fuzzer exited with status $status (log: $log)"
        exit 1
    fi
    if compgen -G "$artifacts/*" >/dev/null; then
        ls "$artifacts"
        echo "== $t: the fuzzer left artifacts in $artifacts"
        exit 1
    fi
    if [ -z "$executed" ] || [ "$executed" -eq 0 ]; then
        tail -20 "$log"
        echo "== $t: no input was executed (log: $log)"
        exit 1
    fi
    echo "== $t: $executed inputs executed"
done
