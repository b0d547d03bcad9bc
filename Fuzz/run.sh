#!/usr/bin/env bash
# Builds the libFuzzer binary and runs one target (or all) on its committed corpus.
#   bash Fuzz/run.sh TARGET|all [libFuzzer options...]
#   bash Fuzz/run.sh svsm-protocol -runs=10000000
#   bash Fuzz/run.sh all -max_total_time=5          # what CI runs
# New corpus entries go to .build-fuzz/corpus/TARGET (the committed seeds stay as they
# are); a crash leaves crash-* in the current directory and exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
targets="svsm-protocol mm-payload efivarfs-write variable-file auth-variable"
[ $# -ge 1 ] || { echo "usage: $0 TARGET|all [libFuzzer options]"; echo "targets: $targets"; exit 64; }
which="$1"; shift
[ "$which" = all ] || targets="$which"

swift build -c release --build-path .build-fuzz --product efivarfs-fuzz \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -DEFIVARFS_FUZZING 2>&1 | grep -v "Cannot export local symbol" || true
bin=.build-fuzz/release/efivarfs-fuzz
[ -x "$bin" ] || { echo "fuzz build failed"; exit 1; }

# A Swift runtime failure must end the process at once for libFuzzer to record the input
# (the backtracer would otherwise hold it); leaks are not checked (the targets keep caches).
export SWIFT_BACKTRACE=enable=no
export ASAN_OPTIONS=detect_leaks=0:${ASAN_OPTIONS:-}
for t in $targets; do
    [ -d "Fuzz/corpus/$t" ] || { echo "no such target: $t"; exit 64; }
    mkdir -p ".build-fuzz/corpus/$t"
    echo "== $t"
    EFIVARFS_FUZZ_TARGET="$t" "$bin" -print_final_stats=1 "$@" ".build-fuzz/corpus/$t" "Fuzz/corpus/$t" 2>&1 \
        | grep -E "INITED|DONE|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss|ERROR|Fatal error|property violated|SUMMARY|^Base64|Test unit written" \
        || true
    # grep hides the exit status: a crash file is the signal.
    if compgen -G "crash-*" >/dev/null || compgen -G "timeout-*" >/dev/null || compgen -G "oom-*" >/dev/null; then echo "== $t: failure, see the files above"; exit 1; fi
done
