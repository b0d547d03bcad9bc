#!/bin/bash
# SVSM calls per efivarfs operation for common workloads, with the driver cache off and on,
# and their modelled time at three world-switch costs. Counted by the bridge itself (stats:
# per-operation SVSM calls, MM round trips, bytes across the boundary, world switches);
# the modelled time is world switches x cost, so one run gives every cost exactly.
# Usage: calls.sh <efivarfs-bridge> <mountpoint> [costs in ns, default "1000 5000 20000"]
# Needs efibootmgr, efivar, openssl, efitools (sign-efi-sig-list), chattr.
set -eu
bridge=$1 mnt=$2
costs=${3:-1000 5000 20000}
work=$(mktemp -d)
trap 'fusermount3 -u "$mnt" 2>/dev/null || true; rm -rf "$work"' EXIT
export EFIVARFS_PATH=$mnt/
g=8be4df61-93ca-11d2-aa0d-00e098032b8c
stats() { "$bridge" stats --json "$mnt" > "$1"; }
# delta <before> <after> <label>: one line per operation kind that changed.
delta() {
    python3 - "$1" "$2" "$3" "$costs" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
label, costs = sys.argv[3], [int(c) for c in sys.argv[4].split()]
ops_a, ops_b = a.get("operations", {}), b.get("operations", {})
cnt_a, cnt_b = a.get("efivarfs_operations", {}), b.get("efivarfs_operations", {})
fuse = sum(b.get("fuse_requests", {}).values()) - sum(a.get("fuse_requests", {}).values())
total_calls = total_sw = 0
rows = []
for k in sorted(set(ops_b) | set(cnt_b)):
    if k in ("boot", "probe", "enumerate"): continue
    o, p = ops_a.get(k, {}), ops_b.get(k, {})
    d = {f: p.get(f, 0) - o.get(f, 0) for f in ("svsm_calls", "mm_round_trips", "world_switches", "request_bytes", "reply_bytes")}
    n = cnt_b.get(k, 0) - cnt_a.get(k, 0)
    if n == 0 and d["svsm_calls"] == 0: continue
    total_calls += d["svsm_calls"]; total_sw += d["world_switches"]
    per = lambda v: f"{v / n:.2f}" if n else "-"
    rows.append(f"    {k:<8} ops {n:>4}  calls {d['svsm_calls']:>5} ({per(d['svsm_calls'])}/op)  MM {d['mm_round_trips']:>5}  bytes {d['request_bytes'] + d['reply_bytes']:>8}  "
                + "  ".join(f"{d['world_switches'] * c / 1000:.0f} µs@{c // 1000}µs" for c in costs))
print(f"  {label}: {total_calls} SVSM calls, {fuse} FUSE requests; modelled " + ", ".join(f"{total_sw * c / 1000:.0f} µs at {c // 1000} µs" for c in costs))
for r in rows: print(r)
PY
}
run() {  # label command...
    local label=$1; shift
    stats "$work/a"; "$@" >/dev/null 2>&1 || echo "  ($label: exit $?)"; stats "$work/b"; delta "$work/a" "$work/b" "$label"
}
read_all() { for f in "$mnt"/*; do cat "$f" > /dev/null 2>&1 || true; done; }
keys=$work/keys
for cache in "" "--driver-cache"; do
    echo "driver cache: ${cache:-off}"
    rm -rf "$keys"; mkdir -p "$keys"
    "$bridge" mount --ephemeral --enroll-generate "$keys" --world-switch 1000 $cache "$mnt"
    # Warm-up a cache the way a booted system would have it: one listing and read of everything.
    run "warm-up: read every variable" read_all
    run "efibootmgr -v" efibootmgr -v
    run "efivar -l" efivar -l
    run "read every variable (cat each file)" read_all
    run "efivar -l, then efivar -p of every name" sh -c 'for n in $(efivar -l); do efivar -p -n "$n"; done'
    run "one BootOrder write (efibootmgr -o 0001,0000)" efibootmgr -o 0001,0000
    run "one BootOrder write (raw write(2))" bash -c "chattr -i '$mnt/BootOrder-$g'; printf '\\x07\\x00\\x00\\x00\\x00\\x00\\x01\\x00' > '$mnt/BootOrder-$g'"
    (cd "$keys" && sign-efi-sig-list -a -k KEK.key -c KEK.crt db db.esl a.auth >/dev/null 2>&1 && (printf '\x67\x00\x00\x00'; cat a.auth) > a.var)
    run "db append (signed by KEK)" sh -c "chattr -i '$mnt/db-d719b2cb-3d3a-4596-a3bc-dad00e67656f'; cat '$keys/a.var' > '$mnt/db-d719b2cb-3d3a-4596-a3bc-dad00e67656f'"
    run "efibootmgr -v after the writes" efibootmgr -v
    run "statfs (df)" df "$mnt"
    "$bridge" stats "$mnt" | grep "driver cache" || true
    fusermount3 -u "$mnt"
    for _ in $(seq 100); do grep -q " $mnt " /proc/mounts || break; sleep 0.02; done
done
