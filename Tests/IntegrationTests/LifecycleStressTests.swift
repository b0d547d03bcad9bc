import Foundation
import Testing
import TestSupport

/// Issue #20, the daemon's lifecycle under load (`Stress/lifecycle.sh`): for 20 s
/// (EFIVARFS_LIFECYCLE_SECONDS for longer) the daemon of a `--store` mount is killed with
/// SIGKILL, stopped with SIGSTOP and continued, stopped with SIGTERM, and restarted, while
/// clients read and write through the mount and run `set`, `get` and `list` beside it with
/// EFIVARFS_BRIDGE_CONTROL_TIMEOUT=2. Every client operation runs under `timeout` (a
/// timeout is a failure: something hung); every scripting answer must be 0 or say who holds
/// the store; after a remount every acknowledged write must be there.
@Suite("Lifecycle stress", .serialized)
struct LifecycleStressTests {
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Stress/lifecycle.sh").path

    /// `mount` returned as soon as the kernel had the mount, while the daemon still had its
    /// own stat of the mount point to make (for the connection number it aborts by). An
    /// unmount right after `mount` could meet that stat in flight: fusermount3 answered
    /// EBUSY, 1 or 2 times in 40 on this machine when it was busy (never when idle), and
    /// `enrollGenerate` failed now and then on it. `mount` now returns after that stat. The
    /// race is timing-dependent, so this catches the old code often, not always.
    @Test("mount and unmount at once, 100 times: every first fusermount3 -u succeeds")
    func unmountRightAfterMount() throws {
        try requirePrerequisites(.fusermount)
        let dir = Bridge.makeTempDir()
        defer { Bridge.unmount(dir); try? FileManager.default.removeItem(atPath: dir) }
        let r = Shell.run("""
            busy=0
            for i in $(seq 100); do
              '\(Bridge.binary)' mount --ephemeral '\(dir)' || { echo "mount failed"; exit 2; }
              if ! fusermount3 -u '\(dir)'; then busy=$((busy + 1)); sleep 0.5; fusermount3 -u '\(dir)'; fi
            done
            echo "busy=$busy"
            """)
        #expect(r.status == 0 && r.out.hasSuffix("busy=0\n"), "\(r.out)\(r.err)")
        #expect(!Bridge.isMounted(dir))
    }

    @Test("SIGKILL, SIGSTOP/SIGCONT and SIGTERM of a live --store mount under readers, writers and scripting commands: nothing hangs, nothing acknowledged is lost")
    func killStopRestart() throws {
        try requirePrerequisites(.fusermount)
        let seconds = Int(ProcessInfo.processInfo.environment["EFIVARFS_LIFECYCLE_SECONDS"] ?? "") ?? 20
        // The watchdog: the script bounds every operation, so it must be done well before this.
        let r = Shell.run("timeout -s KILL \(seconds + 90) bash '\(Self.script)' '\(Bridge.binary)' \(seconds)")
        let summary = r.out.split(separator: "\n").last.map(String.init) ?? ""
        print(summary)
        #expect(r.status != 137, "watchdog: the lifecycle script itself hung\n\(r.out)")
        #expect(r.status == 0, "\(r.out)\n\(r.err.split(separator: "\n").suffix(10).joined(separator: "\n"))")
        #expect(summary.hasSuffix("; 0 failures"), "\(r.out)")
        // It did what it says: every kind of fault, writes acknowledged and checked.
        func count(_ label: String) -> Int {
            guard let range = summary.range(of: " " + label) else { return 0 }
            return Int(summary[..<range.lowerBound].split(whereSeparator: { !$0.isNumber }).last ?? "") ?? 0
        }
        #expect(count("SIGKILL") > 0 && count("SIGSTOP") > 0 && count("SIGTERM") > 0, "\(summary)")
        #expect(count("acknowledged writes") > 0, "\(summary)")
        // Every acknowledged name is checked (the script fails a client with none). The two
        // FUSE writers acknowledge hundreds of writes round-robin over 8 names each, so all
        // 16 of theirs are there; the scripting writer starts a process per `set` and may,
        // on a slow machine, see all of one name's attempts land in a stop or a restart, so
        // its 4 names are not all required (a CI run acknowledged 3 of them: 19 checked).
        #expect(count("variables checked after a remount") >= 17, "\(summary)")
    }
}
