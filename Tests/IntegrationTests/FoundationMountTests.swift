import Foundation
import Testing
import TestSupport

@Suite("A real FUSE mount", .serialized)
struct FoundationMountTests {
    @Test("the default store reads like a freshly booted OVMF VM")
    func defaults() throws {
        try Bridge.withMount { dir in
            let ls = Shell.run("ls '\(dir)'").out
            for name in ["Boot0000", "Boot0001", "Boot0002", "BootOrder", "BootCurrent", "Timeout", "Lang", "PlatformLang",
                         "LangCodes", "PlatformLangCodes", "ConIn", "ConOut", "ErrOut", "OsIndicationsSupported",
                         "SecureBoot", "SetupMode"] {
                #expect(ls.contains("\(name)-\(globalGuid)"), "\(name) missing")
            }
            #expect(ls.contains("MTC-eb704011-1402-11d3-8e77-00a0c969723b"))
            #expect(!ls.contains("MemoryTypeInformation"))  // NV|BS: hidden after ExitBootServices
            let od = Shell.run("od -An -tx1 '\(dir)/BootOrder-\(globalGuid)'").out
            #expect(od.split(separator: " ").joined(separator: " ").trimmingCharacters(in: .whitespacesAndNewlines) == "07 00 00 00 01 00 02 00 00 00")
            #expect(Shell.run("stat -c %s '\(dir)/BootOrder-\(globalGuid)'").out.trimmingCharacters(in: .whitespacesAndNewlines) == "10")
            #expect(Shell.run("od -An -tx1 '\(dir)/SecureBoot-\(globalGuid)'").out.contains("06 00 00 00 00"))
        }
    }

    @Test("printf creates a variable that od reads back byte for byte; rm deletes it")
    func createReadDelete() throws {
        try requirePrerequisites(.chattr)
        try Bridge.withMount { dir in
            let f = "\(dir)/Greeting-\(testGuid)"
            #expect(Shell.run("printf '\\x07\\x00\\x00\\x00hello\\xff\\x00' > '\(f)'").status == 0)
            #expect(Shell.run("od -An -tx1 '\(f)'").out.split(whereSeparator: { $0 == " " || $0 == "\n" }).joined(separator: " ")
                    == "07 00 00 00 68 65 6c 6c 6f ff 00")
            #expect(Shell.run("lsattr '\(f)'").out.hasPrefix("----i"))
            #expect(Shell.run("rm -f '\(f)'").status != 0)  // immutable
            #expect(Shell.run("chattr -i '\(f)' && rm '\(f)'").status == 0)
            #expect(Shell.run("test -e '\(f)'").status != 0)
        }
    }

    @Test("efivar -l and efibootmgr work through EFIVARFS_PATH")
    func realClients() throws {
        try requirePrerequisites(.efivar, .efibootmgr)
        try Bridge.withMount { dir in
            let env = ["EFIVARFS_PATH": dir + "/"]
            let l = Shell.run("efivar -l", environment: env)
            #expect(l.status == 0, "\(l.err)")
            #expect(l.out.contains("\(globalGuid)-BootOrder"))
            #expect(l.out.contains("\(globalGuid)-Boot0001"))
            let p = Shell.run("efivar -p -n \(globalGuid)-Timeout", environment: env)
            #expect(p.status == 0 && p.out.contains("Attributes:"), "\(p.err)")
            let b = Shell.run("efibootmgr -v", environment: env)
            #expect(b.status == 0, "\(b.err)")
            #expect(b.out.contains("BootOrder: 0001,0002,0000"))
            #expect(b.out.contains("Boot0002* EFI Internal Shell"))
        }
    }

    @Test("bad input gets Linux efivarfs' errno, never a crash")
    func badInput() throws {
        try Bridge.withMount { dir in
            let short = Shell.run("printf '\\x07' > '\(dir)/Short-\(testGuid)'")
            #expect(short.status != 0 && short.err.contains("Invalid argument"))
            let bits = Shell.run("printf '\\x80\\x00\\x00\\x00x' > '\(dir)/Bits-\(testGuid)'")
            #expect(bits.status != 0 && bits.err.contains("Invalid argument"))
            let name = Shell.run("printf '\\x07\\x00\\x00\\x00x' > '\(dir)/not-a-variable'")
            #expect(name.status != 0 && name.err.contains("Invalid argument"))
            #expect(Shell.run("stat '\(dir)/not-a-variable'").err.contains("No such file"))
            // None of them left a file behind, and the bridge still answers.
            #expect(!Shell.run("ls '\(dir)'").out.contains(testGuid))
            #expect(Shell.run("cat '\(dir)/Timeout-\(globalGuid)' | wc -c").out.trimmingCharacters(in: .whitespacesAndNewlines) == "6")
        }
    }

    @Test("a missing or busy mount point is a clear error and a non-zero exit")
    func mountPointErrors() throws {
        let missing = Shell.run("'\(Bridge.binary)' mount /nonexistent/efivars-\(UUID().uuidString)")
        #expect(missing.status != 0 && missing.err.contains("No such file or directory") && missing.err.contains("/nonexistent/efivars-"))
        try Bridge.withMount { dir in
            let busy = Shell.run("'\(Bridge.binary)' mount '\(dir)'")
            #expect(busy.status != 0 && busy.err.contains("busy"))
        }
    }

    @Test("in the foreground, SIGTERM unmounts cleanly")
    func foregroundSignal() throws {
        let dir = Bridge.makeTempDir()
        defer { Bridge.unmount(dir); rmdir(dir) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Bridge.binary)
        p.arguments = ["mount", "--foreground", "--ephemeral", dir]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        for _ in 0..<100 where !Bridge.isMounted(dir) { usleep(50_000) }
        try #require(Bridge.isMounted(dir))
        p.terminate()
        p.waitUntilExit()
        #expect(!Bridge.isMounted(dir))
        #expect(p.terminationStatus == 0)
    }
}
