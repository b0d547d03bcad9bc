import Foundation
import Testing
import TestSupport

/// Linux efivarfs behaviour on the mount, checked with the kernel's own selftest cases and
/// with the real clients, on every SVSM profile. Where a profile's store answers
/// differently, the expectation names the docs/svsm-profiles.md row.
@Suite("efivarfs fidelity on a real mount", .serialized)
struct EfivarfsFidelityTests {
    /// The stores behind protocol 4 (`--svsm`).
    static let profiles = ["edk2", "coconut", "qemu"]

    static let selftestDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Selftests").path

    @Test("the kernel selftests (efivarfs.sh, create-read, open-unlink) pass with only the mount path changed", arguments: profiles)
    func kernelSelftests(_ svsm: String) throws {
        try requirePrerequisites(.gcc, .chattr)
        let helpers = Bridge.makeTempDir()
        defer { Shell.run("rm -rf '\(helpers)'") }
        for prog in ["create-read", "open-unlink"] {
            let cc = Shell.run("cc -O1 -o '\(helpers)/\(prog)' '\(Self.selftestDir)/\(prog).c'")
            try #require(cc.status == 0, "cc \(prog): \(cc.err)")
        }
        try Bridge.withMount("--svsm \(svsm)") { dir in
            let r = Shell.run("timeout 120 bash '\(Self.selftestDir)/efivarfs-selftest.sh' '\(dir)' '\(helpers)'")
            for t in ["create", "create_empty", "create_read", "delete", "zero_size_delete", "open_unlink", "valid_filenames",
                      "invalid_filenames", "no_set_size", "multiple_zero_size", "multiple_create", "multiple_delete_on_write"] {
                #expect(r.out.contains("PASS test_\(t)\n"), "test_\(t) did not pass:\n\(r.out)\n\(r.err)")
            }
            #expect(r.status == 0, "\(r.out)\n\(r.err)")
        }
    }

    @Test("efivar: -p -n, -w with its immutable handling, -a append", arguments: profiles)
    func efivarClient(_ svsm: String) throws {
        try requirePrerequisites(.efivar, .chattr)
        try Bridge.withMount("--svsm \(svsm)") { dir in
            let env = ["EFIVARFS_PATH": dir + "/"]
            let tmp = Bridge.makeTempDir()
            defer { Shell.run("rm -rf '\(tmp)'") }
            Shell.run("printf abc > '\(tmp)/a'; printf de > '\(tmp)/b'")
            let n = "\(testGuid)-Scripted"
            #expect(Shell.run("efivar -n \(n) -w -t 7 -f '\(tmp)/a'", environment: env).status == 0)
            // libefivar created it (O_CREAT|O_EXCL) and cleared the immutable flag through
            // FS_IOC_SETFLAGS, then restored it.
            #expect(Shell.run("od -An -tx1 '\(dir)/Scripted-\(testGuid)'").out.contains("07 00 00 00 61 62 63"))
            #expect(Shell.run("lsattr '\(dir)/Scripted-\(testGuid)'").out.hasPrefix("----i"))
            // -w on an existing immutable variable keeps its attributes and works.
            #expect(Shell.run("efivar -n \(n) -w -f '\(tmp)/b'", environment: env).status == 0)
            #expect(Shell.run("od -An -tx1 '\(dir)/Scripted-\(testGuid)'").out.contains("07 00 00 00 64 65"))
            // append-write: QEMU's store (and COCONUT's) appends only to PK, KEK, db and dbx.
            let append = Shell.run("efivar -n \(n) -a -f '\(tmp)/a'", environment: env)
            #expect((append.status == 0) == (svsm == "edk2"), "\(append.err)")
            let p = Shell.run("efivar -p -n \(n)", environment: env)
            #expect(p.out.contains(svsm == "edk2" ? "64 65 61 62 63" : "64 65"), "\(p.out)")
            #expect(p.out.contains("Non-Volatile") && p.out.contains("Runtime Service Access"))
            #expect(Shell.run("efivar -p -n \(globalGuid)-Timeout", environment: env).out.contains("00 00"))
        }
    }

    @Test("efibootmgr: -o, -n/-N, -t/-T, -a/-A, -b -B", arguments: profiles)
    func efibootmgrClient(_ svsm: String) throws {
        try requirePrerequisites(.efibootmgr)
        try Bridge.withMount("--svsm \(svsm)") { dir in
            let env = ["EFIVARFS_PATH": dir + "/"]
            func run(_ args: String) -> String {
                let r = Shell.run("efibootmgr \(args)", environment: env)
                #expect(r.status == 0, "efibootmgr \(args): \(r.err)")
                return r.out
            }
            #expect(run("-o 0002,0001,0000").contains("BootOrder: 0002,0001,0000"))
            #expect(run("-n 0002").contains("BootNext: 0002"))
            #expect(Shell.run("od -An -tx1 '\(dir)/BootNext-\(globalGuid)'").out.contains("07 00 00 00 02 00"))
            #expect(!run("-N").contains("BootNext"))
            #expect(run("-t 7").contains("Timeout: 7 seconds"))
            #expect(!run("-T").contains("Timeout:"))
            #expect(run("-A -b 0002").contains("Boot0002  EFI Internal Shell"))
            #expect(run("-a -b 0002").contains("Boot0002* EFI Internal Shell"))
            let deleted = run("-b 0002 -B")
            #expect(!deleted.contains("Boot0002") && deleted.contains("BootOrder: 0001,0000"))
            #expect(Shell.run("test -e '\(dir)/Boot0002-\(globalGuid)'").status != 0)
        }
    }

    @Test("efibootmgr -c creates an entry for a loader on a GPT disk image's ESP (loop device)", arguments: profiles)
    func efibootmgrCreate(_ svsm: String) throws {
        try requirePrerequisites(.efibootmgr, .sfdisk, .losetup)
        let tmp = Bridge.makeTempDir()
        defer { Shell.run("rm -rf '\(tmp)'") }
        let image = "\(tmp)/disk.img"
        try #require(Shell.run("truncate -s 64M '\(image)' && printf 'label: gpt\\n,32M,U\\n,,L\\n' | sfdisk -q '\(image)'").status == 0)
        let attach = Shell.run("losetup -f --show -P '\(image)'")
        try #require(attach.status == 0, "losetup: \(attach.err)")
        let loop = attach.out.trimmingCharacters(in: .whitespacesAndNewlines)
        defer { Shell.run("losetup -d '\(loop)'") }
        try Bridge.withMount("--svsm \(svsm)") { dir in
            let env = ["EFIVARFS_PATH": dir + "/"]
            let c = Shell.run("efibootmgr -c -d '\(loop)' -p 1 -L 'Test Loader' -l '\\EFI\\test\\grubx64.efi'", environment: env)
            #expect(c.status == 0, "\(c.err)")
            let v = Shell.run("efibootmgr -v", environment: env).out
            #expect(v.contains("Boot0003* Test Loader\tHD(1,GPT,"), "\(v)")
            #expect(v.contains("/File(\\EFI\\test\\grubx64.efi)"))
            #expect(v.contains("BootOrder: 0003,0001,0002,0000"))
        }
    }

    @Test("operations efivarfs does not have fail as efivarfs fails", arguments: profiles)
    func missingOperations(_ svsm: String) throws {
        try requirePrerequisites(.attr, .chattr, .python3)
        try Bridge.withMount("--svsm \(svsm)") { dir in
            let t = "\(dir)/Timeout-\(globalGuid)"
            #expect(Shell.run("mv '\(t)' '\(dir)/Other-\(globalGuid)'").err.contains("Operation not permitted"))
            #expect(Shell.run("ln '\(t)' '\(dir)/Hard-\(globalGuid)'").err.contains("Operation not permitted"))
            #expect(Shell.run("ln -s '\(t)' '\(dir)/Sym-\(globalGuid)'").err.contains("Operation not permitted"))
            #expect(Shell.run("mkdir '\(dir)/d-\(testGuid)'").err.contains("Operation not permitted"))
            #expect(Shell.run("mkdir '\(t)'").err.contains("File exists"))
            #expect(Shell.run("mkfifo '\(dir)/f-\(testGuid)'").err.contains("Operation not permitted"))
            // mknod of a regular file is a create without a descriptor: it stays, size 0.
            #expect(Shell.run("python3 -c \"import os; os.mknod('\(dir)/Node-\(testGuid)')\" && stat -c %s '\(dir)/Node-\(testGuid)'").out.trimmingCharacters(in: .whitespacesAndNewlines) == "0")
            #expect(Shell.run("rmdir '\(t)'").err.contains("Not a directory"))
            // xattr writes: the VFS answers EPERM for an immutable inode before asking the
            // filesystem (fs/xattr.c may_write_xattr); on a removable one efivarfs, which has
            // no xattr handlers, answers EOPNOTSUPP. Reads are EOPNOTSUPP either way.
            // SecureBoot is not in the kernel's removable list, so it is immutable; Timeout is.
            let immutable = "\(dir)/SecureBoot-\(globalGuid)"
            #expect(Shell.run("lsattr '\(immutable)'").out.hasPrefix("----i"))
            #expect(Shell.run("lsattr '\(t)'").out.hasPrefix("-----"))
            #expect(Shell.run("setfattr -n user.x -v 1 '\(immutable)'").err.contains("Operation not permitted"))
            #expect(Shell.run("setfattr -x user.x '\(immutable)'").err.contains("Operation not permitted"))
            #expect(Shell.run("getfattr -n user.x '\(immutable)'").err.contains("Operation not supported"))
            #expect(Shell.run("setfattr -n user.x -v 1 '\(t)'").err.contains("Operation not supported"))
            #expect(Shell.run("setfattr -x user.x '\(t)'").err.contains("Operation not supported"))
            #expect(Shell.run("getfattr -n user.x '\(t)'").err.contains("Operation not supported"))
            let list = Shell.run("getfattr -d '\(t)'")
            #expect(list.status == 0 && list.out.isEmpty)
            let long = String(repeating: "x", count: 256 - 37) + "-" + testGuid
            #expect(Shell.run("printf '\\x07\\x00\\x00\\x00x' > '\(dir)/\(long)'").err.contains("File name too long"))
            // Truncation succeeds and changes nothing.
            #expect(Shell.run("truncate -s 0 '\(t)' && stat -c %s '\(t)'").out.trimmingCharacters(in: .whitespacesAndNewlines) == "6")
            // A malformed name simply is not there; creating it is EINVAL.
            #expect(Shell.run("stat '\(dir)/foo'").err.contains("No such file"))
            #expect(Shell.run("touch '\(dir)/Seed-1ce1e5bc-7ceb-42f2-81e5-8aadf180f57b'").err.contains("Operation not permitted"))
        }
    }

    @Test("immutable files: EPERM for open-for-write, unlink, chmod, chown, touch, truncate; lsattr -d is ENOTTY", arguments: profiles)
    func immutable(_ svsm: String) throws {
        try requirePrerequisites(.chattr)
        try Bridge.withMount("--svsm \(svsm)") { dir in
            let f = "\(dir)/OsIndicationsSupported-\(globalGuid)"
            #expect(Shell.run("lsattr '\(f)'").out.hasPrefix("----i"))
            #expect(Shell.run("printf '\\x06\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00' > '\(f)'").err.contains("Operation not permitted"))
            #expect(Shell.run("rm -f '\(f)'").err.contains("Operation not permitted"))
            #expect(Shell.run("chmod 600 '\(f)'").err.contains("Operation not permitted"))
            #expect(Shell.run("chown 1:1 '\(f)'").err.contains("Operation not permitted"))
            #expect(Shell.run("touch '\(f)'").err.contains("Operation not permitted"))
            #expect(Shell.run("truncate -s 0 '\(f)'").err.contains("Operation not permitted"))
            #expect(Shell.run("lsattr -d '\(dir)'").status != 0)
            // Removable variables are not immutable.
            #expect(Shell.run("lsattr '\(dir)/BootOrder-\(globalGuid)'").out.hasPrefix("-----"))
            // chattr +i makes one immutable, -i clears it again.
            #expect(Shell.run("chattr +i '\(dir)/BootOrder-\(globalGuid)' && lsattr '\(dir)/BootOrder-\(globalGuid)'").out.hasPrefix("----i"))
            #expect(Shell.run("chattr -i '\(dir)/BootOrder-\(globalGuid)'").status == 0)
            #expect(Shell.run("chattr +a '\(dir)/BootOrder-\(globalGuid)'").err.contains("Operation not supported"))
        }
    }

    @Test("write errors map as efivarfs maps them: EROFS, EINVAL, EIO", arguments: profiles)
    func writeErrnos(_ svsm: String) throws {
        try requirePrerequisites(.chattr)
        try Bridge.withMount("--svsm \(svsm)") { dir in
            // Read-only by property: SecureBoot (after chattr -i) → EROFS.
            let sb = "\(dir)/SecureBoot-\(globalGuid)"
            Shell.run("chattr -i '\(sb)'")
            let sbWrite = Shell.run("printf '\\x06\\x00\\x00\\x00\\x01' > '\(sb)'")
            if svsm == "edk2" {
                #expect(sbWrite.err.contains("Read-only file system"))
            } else {
                // uefi-variable-checks: no VarCheck, so the OS may rewrite SecureBoot.
                #expect(sbWrite.status == 0, "\(sbWrite.err)")
            }
            // A Boot#### that is not a load option: EINVAL from the kernel's validation.
            #expect(Shell.run("printf '\\x07\\x00\\x00\\x00\\x01' > '\(dir)/Boot0001-\(globalGuid)'").err.contains("Invalid argument"))
            // Deleting a variable that is not there through a fresh file: EIO on edk2
            // (NOT_FOUND); delete-missing: the other stores answer SUCCESS.
            let ghost = Shell.run("printf '\\x07\\x00\\x00\\x00' > '\(dir)/Ghost-\(testGuid)'")
            #expect(svsm == "edk2" ? ghost.err.contains("Input/output error") : ghost.status == 0, "\(ghost.err)")
            #expect(Shell.run("test -e '\(dir)/Ghost-\(testGuid)'").status != 0)
            // Unlink failures are EINVAL: PK does not exist in setup mode, so unlink a
            // read-only one instead (uefi-variable-checks: elsewhere SetupMode is deleted).
            Shell.run("chattr -i '\(dir)/SetupMode-\(globalGuid)'")
            let rm = Shell.run("rm '\(dir)/SetupMode-\(globalGuid)'")
            #expect(svsm == "edk2" ? rm.err.contains("Invalid argument") : rm.status == 0, "\(rm.err)")
        }
    }

    @Test("statfs: block size 1, totals from QueryVariableInfo, less 5120 available, name length 255", arguments: profiles)
    func statfs(_ svsm: String) throws {
        try Bridge.withMount("--svsm \(svsm)") { dir in
            let s = Shell.run("stat -f -c '%S %b %f %a %l' '\(dir)'").out.split(separator: " ").map { UInt64($0.trimmingCharacters(in: .whitespacesAndNewlines))! }
            #expect(s[0] == 1)
            // query-info: edk2's common NV space (0x3ffb8 − 28); QEMU's max_storage.
            #expect(s[1] == (svsm == "edk2" ? 0x3ff9c : 0x40000))
            #expect(s[2] > 0 && s[2] < s[1])
            #expect(s[3] == s[2] - 5120)
            #expect(s[4] == 255)
        }
    }

    @Test("mount options uid= and gid= own every file; modes are 0644 and 0755")
    func ownership() throws {
        try Bridge.withMount("-o uid=65534,gid=65534") { dir in
            #expect(Shell.run("stat -c '%u %g %a' '\(dir)'").out.trimmingCharacters(in: .whitespacesAndNewlines) == "65534 65534 755")
            #expect(Shell.run("stat -c '%u %g %a' '\(dir)/BootOrder-\(globalGuid)'").out.trimmingCharacters(in: .whitespacesAndNewlines) == "65534 65534 644")
        }
    }

    @Test("allow_other: a non-root user reads but cannot write root-owned variables")
    func nonRootUser() throws {
        try Bridge.withMount("-o allow_other") { dir in
            let f = "\(dir)/BootOrder-\(globalGuid)"
            let read = Shell.run("runuser -u nobody -- od -An -tx1 '\(f)'")
            #expect(read.status == 0 && read.out.contains("07 00 00 00"), "\(read.err)")
            #expect(Shell.run("runuser -u nobody -- sh -c \"printf '\\\\x07\\\\x00\\\\x00\\\\x00\\\\x01\\\\x00' > '\(f)'\"").err.contains("Permission denied"))
            #expect(Shell.run("runuser -u nobody -- touch '\(dir)/New-\(testGuid)'").err.contains("Permission denied"))
        }
        try Bridge.withMount { dir in
            // Without allow_other, other users cannot even look.
            #expect(Shell.run("runuser -u nobody -- ls '\(dir)'").status != 0)
        }
    }

    @Test("every read fetches afresh; stat's size stays as the kernel's cached i_size", arguments: profiles)
    func freshReads(_ svsm: String) throws {
        try requirePrerequisites(.chattr)
        try Bridge.withMount("--svsm \(svsm)") { dir in
            let f = "\(dir)/Fresh-\(testGuid)"
            Shell.run("printf '\\x07\\x00\\x00\\x00ab' > '\(f)'")
            // Two descriptors: the write through one is seen by a read through the other.
            let r = Shell.run("exec 3<'\(f)'; chattr -i '\(f)'; printf '\\x07\\x00\\x00\\x00xyz' > '\(f)'; od -An -c <&3")
            #expect(r.out.contains("x   y   z"), "\(r.out)")
            #expect(Shell.run("stat -c %s '\(f)'").out.trimmingCharacters(in: .whitespacesAndNewlines) == "7")
            // A successful write sets mtime and ctime; chmod lives in memory.
            let t = "\(dir)/Timeout-\(globalGuid)"
            Shell.run("touch -d '2001-01-01' '\(t)'")
            #expect(Shell.run("stat -c %Y '\(t)'").out.trimmingCharacters(in: .whitespacesAndNewlines) == "978307200")
            Shell.run("printf '\\x07\\x00\\x00\\x00\\x03\\x00' > '\(t)'")
            let mtime = Double(Shell.run("stat -c %Y '\(t)'").out.trimmingCharacters(in: .whitespacesAndNewlines))!
            #expect(abs(mtime - Date().timeIntervalSince1970) < 60)
            #expect(Shell.run("chmod 600 '\(t)' && stat -c %a '\(t)'").out.trimmingCharacters(in: .whitespacesAndNewlines) == "600")
            Shell.run("chattr -i '\(f)'; rm '\(f)'")
        }
    }
}
