import Foundation
import Testing
import TestSupport

/// Rows of docs/bad-input.md that no other suite covers: mount options, CLI arguments and
/// ioctls, each with its exact response.
@Suite("Bad input")
struct BadInputTests {
    static let usage: Int32 = 64

    @Test("bad mount options: a usage error (64) naming the option, nothing mounted", arguments: [
        ("-o bogus", usage, "unknown mount option 'bogus'"),
        ("-o uid=abc", usage, "bad mount option 'uid=abc': uid=N expected"),
        ("-o gid=-1", usage, "bad mount option 'gid=-1': gid=N expected"),
        ("--vcpus 0", usage, "--vcpus must be between 1 and 512"),
        ("--vcpus 513", usage, "--vcpus must be between 1 and 512"),
        ("--fault nonsense", usage, "bad fault specification 'nonsense'"),
        ("--fault busy=2", usage, "bad fault specification 'busy=2'"),
        ("--store /tmp/x --ephemeral", usage, "name one store"),
        ("--nv-store-size 12", usage, "--nv-store-size must be between 4 KiB and 1 GiB"),
        ("--fuse-threads 0", usage, "--fuse-threads must be between 1 and 1024"),
        ("--log-level loud", usage, "--log-level must be one of"),
        ("--from-fd /nonexistent.fd", 1, "/nonexistent.fd: file: No such file or directory"),
        ("--from-json /etc/passwd", 1, "/etc/passwd: top level: not a JSON object"),
    ])
    func badMountOptions(_ args: String, _ code: Int32, _ message: String) {
        let dir = Bridge.makeTempDir()
        defer { Bridge.unmount(dir); rmdir(dir) }
        let r = Shell.run("'\(Bridge.binary)' mount \(args) '\(dir)'")
        #expect(r.status == code, "\(r.err)")
        #expect(r.err.contains(message), "\(r.err)")
        #expect(!Bridge.isMounted(dir))
    }

    @Test("bad CLI arguments: exit code and message, store untouched", arguments: [
        ("get NoSuchName", usage, "'NoSuchName' is not a variable name"),
        ("get BootOrder-nosuchguid", usage, "is not a variable name"),
        ("set Foo-210be57c-9849-4fc7-a635-e6382d1aec27 --hex 00", usage, "Missing expected argument '--attributes"),
        ("set Foo-210be57c-9849-4fc7-a635-e6382d1aec27 --attributes bogus --hex 00", usage, "bogus"),
        ("delete Nope-8be4df61-93ca-11d2-aa0d-00e098032b8c", 3, "no such variable"),
        ("import /etc/hostname", 1, "neither a firmware volume nor JSON"),
        ("export --format xml /tmp/never-written", usage, "--format must be fd or json"),
    ])
    func badCliArguments(_ args: String, _ code: Int32, _ message: String) throws {
        let tmp = Bridge.makeTempDir()
        defer { Shell.run("rm -rf '\(tmp)'") }
        let before = Shell.run("'\(Bridge.binary)' list --create --store '\(tmp)/s'")
        try #require(before.status == 0, "\(before.err)")
        let r = Shell.run("'\(Bridge.binary)' \(args) --store '\(tmp)/s'")
        #expect(r.status == code, "\(r.err)")
        #expect(r.err.contains(message), "\(r.err)")
        #expect(Shell.run("'\(Bridge.binary)' list --store '\(tmp)/s'").out == before.out)
    }

    @Test("ioctls: an unknown one is ENOTTY, FS_APPEND_FL is EOPNOTSUPP, the directory's flags are EOPNOTSUPP through FUSE")
    func badIoctls() throws {
        try requirePrerequisites(.chattr, .python3)
        try Bridge.withMount { dir in
            let f = "\(dir)/BootOrder-\(globalGuid)"
            let unknown = Shell.run("python3 -c \"import fcntl, os; fcntl.ioctl(os.open('\(f)', os.O_RDONLY), 0x80087601, bytes(8))\"")
            #expect(unknown.err.contains("Inappropriate ioctl"))
            #expect(Shell.run("chattr +a '\(f)'").err.contains("Operation not supported"))
            #expect(Shell.run("chattr +i '\(dir)'").err.contains("Operation not supported"))
            // Nothing changed.
            #expect(Shell.run("lsattr '\(f)'").out.hasPrefix("-----"))
        }
    }
}
