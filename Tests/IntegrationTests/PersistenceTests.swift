import Foundation
import Testing
import TestSupport

@Suite("The durable store", .serialized)
struct PersistenceTests {
    static let harness = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Selftests/crash-harness.sh").path

    @Test("non-volatile variables survive a remount; volatile ones are recreated by the firmware; deletions stay")
    func remount() throws {
        try requirePrerequisites(.efibootmgr)
        let tmp = Bridge.makeTempDir()
        defer { Shell.run("rm -rf '\(tmp)'") }
        let store = "--store '\(tmp)/store'"
        try Bridge.withMount(store) { dir in
            #expect(Shell.run("printf '\\x07\\x00\\x00\\x00kept' > '\(dir)/Kept-\(testGuid)'").status == 0)
            #expect(Shell.run("efibootmgr -t 9", environment: ["EFIVARFS_PATH": dir + "/"]).status == 0)
            #expect(Shell.run("efibootmgr -b 0002 -B", environment: ["EFIVARFS_PATH": dir + "/"]).status == 0)
        }
        try Bridge.withMount(store) { dir in
            #expect(Shell.run("od -An -c '\(dir)/Kept-\(testGuid)'").out.contains("k   e   p   t"))
            let b = Shell.run("efibootmgr", environment: ["EFIVARFS_PATH": dir + "/"]).out
            #expect(b.contains("Timeout: 9 seconds"), "\(b)")
            #expect(!b.contains("Boot0002") && b.contains("BootOrder: 0001,0000"))
            #expect(Shell.run("test -e '\(dir)/BootCurrent-\(globalGuid)'").status == 0)
        }
        #expect(FileManager.default.fileExists(atPath: "\(tmp)/store/checkpoint"))
    }

    @Test("a PK enrolled through the mount turns Secure Boot on at the next boot")
    func secureBootAfterReboot() throws {
        try requirePrerequisites(.openssl, .efitools)
        let tmp = Bridge.makeTempDir()
        defer { Shell.run("rm -rf '\(tmp)'") }
        let lab = try KeyLab()
        defer { lab.cleanup() }
        let pk = try lab.signed("PK", esl: "PK.esl", signer: "PK", time: "2026-03-01 00:00:00", out: "pk")
        try Bridge.withMount("--store '\(tmp)/store'") { dir in
            #expect(Shell.run("cat '\(pk)' > '\(dir)/PK-\(globalGuid)'").status == 0)
            #expect(Shell.run("od -An -tx1 -j4 '\(dir)/SecureBoot-\(globalGuid)'").out.contains("00"))
        }
        try Bridge.withMount("--store '\(tmp)/store'") { dir in
            #expect(Shell.run("od -An -tx1 -j4 '\(dir)/SecureBoot-\(globalGuid)'").out.trimmingCharacters(in: .whitespacesAndNewlines) == "01")
            #expect(Shell.run("od -An -tx1 -j4 '\(dir)/SetupMode-\(globalGuid)'").out.trimmingCharacters(in: .whitespacesAndNewlines) == "00")
        }
    }

    @Test("two mounts never share a store: the second gets an error naming the first")
    func locking() throws {
        let tmp = Bridge.makeTempDir()
        defer { Shell.run("rm -rf '\(tmp)'") }
        try Bridge.withMount("--store '\(tmp)/store'") { _ in
            let other = Bridge.makeTempDir()
            defer { Bridge.unmount(other); rmdir(other) }
            let r = Shell.run("'\(Bridge.binary)' mount --store '\(tmp)/store' '\(other)'")
            #expect(r.status != 0)
            #expect(r.err.contains("is in use by process"), "\(r.err)")
        }
    }

    @Test("a corrupt store is refused with the file and offset, and is not modified")
    func corruptStore() throws {
        let tmp = Bridge.makeTempDir()
        defer { Shell.run("rm -rf '\(tmp)'") }
        try Bridge.withMount("--store '\(tmp)/store'") { _ in }
        Shell.run("printf 'XXXX' | dd of='\(tmp)/store/checkpoint' bs=1 seek=30 conv=notrunc 2>/dev/null")
        let before = try Data(contentsOf: URL(fileURLWithPath: "\(tmp)/store/checkpoint"))
        let dir = Bridge.makeTempDir()
        defer { Bridge.unmount(dir); rmdir(dir) }
        let r = Shell.run("'\(Bridge.binary)' mount --store '\(tmp)/store' '\(dir)'")
        #expect(r.status != 0 && r.err.contains("checkpoint: corrupted at offset 24"), "\(r.err)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: "\(tmp)/store/checkpoint")) == before)
    }

    @Test("stats counts fdatasyncs: with Linux's efivars_lock each SetVariable has its own; --no-efivars-lock still persists every write")
    func groupCommitStats() throws {
        let tmp = Bridge.makeTempDir()
        defer { Shell.run("rm -rf '\(tmp)'") }
        for (args, label) in [("", "lock"), ("--no-efivars-lock", "nolock")] {
            try Bridge.withMount("--store '\(tmp)/\(label)' \(args)") { dir in
                func counts() throws -> (syncs: Int, acked: Int) {
                    let stats = Shell.run("'\(Bridge.binary)' stats --json '\(dir)'")
                    let json = try #require(try JSONSerialization.jsonObject(with: Data(stats.out.utf8)) as? [String: Any])
                    let store = try #require(json["store"] as? [String: Int])
                    return (try #require(store["fdatasyncs"]), try #require(store["writes_acknowledged"]))
                }
                let before = try counts()  // the firmware's writes at boot
                let writes = Shell.run("""
                    for w in 1 2 3 4; do ( for i in $(seq 20); do printf '\\x07\\x00\\x00\\x00v'$i > '\(dir)/dump-type0-'$w'-'$i'-1-cfc8fc79-be2e-4ddc-97f0-9f98bfe298a0' || exit 1; done ) & done; wait
                    """)
                #expect(writes.status == 0, "\(writes.err)")
                let after = try counts()
                let syncs = after.syncs - before.syncs, acked = after.acked - before.acked
                #expect(acked == 80)
                if label == "lock" { #expect(syncs == acked) } else { #expect(syncs >= 1 && syncs <= acked) }
            }
            // Every write is there after a remount.
            try Bridge.withMount("--store '\(tmp)/\(label)'") { dir in
                #expect(Shell.run("ls '\(dir)' | grep -c '^dump-type0-'").out.trimmingCharacters(in: .whitespacesAndNewlines) == "80")
            }
        }
    }

    @Test("crash harness on --from-fd: in-place edk2 writes and reclaims keep every acknowledged write (20 rounds)")
    func crashHarnessFd() throws {
        try requirePrerequisites(.ovmf)
        let r = Shell.run("timeout 600 bash '\(Self.harness)' '\(Bridge.binary)' 20 fd")
        #expect(r.status == 0, "\(r.out)\n\(r.err)")
        #expect(r.out.contains("20 passed, 0 failed"))
    }

    @Test("crash harness: SIGKILL at random moments, every acknowledged write survives (20 rounds)")
    func crashHarness() {
        let r = Shell.run("timeout 600 bash '\(Self.harness)' '\(Bridge.binary)' 20")
        #expect(r.status == 0, "\(r.out)\n\(r.err)")
        #expect(r.out.contains("20 passed, 0 failed"))
    }

    @Test("crash harness, reads mode: readers beside the writer; no value a reader saw is lost to a SIGKILL (8 rounds)")
    func crashHarnessReads() {
        let r = Shell.run("timeout 600 bash '\(Self.harness)' '\(Bridge.binary)' 8 reads")
        #expect(r.status == 0, "\(r.out)\n\(r.err)")
        #expect(r.out.contains("8 passed, 0 failed"))
    }
}
