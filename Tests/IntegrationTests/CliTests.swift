import Foundation
import SvsmEfiVars
import Testing

@Suite("The scripting commands", .serialized)
struct CliTests {
    func cli(_ args: String) -> Shell.Result { Shell.run("'\(Bridge.binary)' \(args)") }

    @Test("list, get, set, delete and info on a store that is not mounted; the mount then sees the result")
    func subcommands() throws {
        let tmp = Bridge.makeTempDir()
        defer { Shell.run("rm -rf '\(tmp)'") }
        let s = "--store '\(tmp)/store'"
        try #require(cli("list --create \(s)").status == 0, "a scripting command makes a new store when told to")
        #expect(cli("list \(s)").out.contains("BootOrder-\(globalGuid)"))
        let list = try JSONSerialization.jsonObject(with: Data(cli("list --json \(s)").out.utf8)) as? [[String: Any]]
        #expect(list?.contains { $0["name"] as? String == "Timeout" && $0["attributes"] as? Int == 7 && $0["size"] as? Int == 2 } == true)
        #expect(cli("set Greeting-\(testGuid) --attributes nv,bs,rt --ascii hello \(s)").status == 0)
        #expect(cli("set \(testGuid)-Greeting --attributes nv,bs,rt --append --hex 2121 \(s)").status == 0)
        #expect(cli("get Greeting-\(testGuid) --raw \(s)").out == "hello!!")
        #expect(cli("get Greeting-\(testGuid) --hex \(s)").out == "68656c6c6f2121\n")
        let j = try JSONSerialization.jsonObject(with: Data(cli("get Timeout-global --json \(s)").out.utf8)) as? [String: Any]
        #expect(j?["data"] as? String == "0000" && j?["attributes"] as? Int == 7)
        #expect(cli("set Wide-\(testGuid) --attributes 7 --utf16 Hi \(s)").status == 0)
        #expect(cli("get Wide-\(testGuid) --hex \(s)").out == "480069000000\n")
        let info = try JSONSerialization.jsonObject(with: Data(cli("info --json \(s)").out.utf8)) as? [String: Any]
        #expect(info?["payload_size"] as? Int == 65496 && info?["setup_mode"] as? Int == 1)
        // The manifest is read through the SVSM's attestation call: the edk2 profile on a
        // durable store reports persistence; no PK yet, so neither Secure Boot nor db updates.
        let manifest = info?["manifest"] as? [String: Any]
        #expect(manifest?["bytes"] as? String == "0000000001000000")
        #expect(manifest?["secureboot_enabled"] as? Bool == false && manifest?["persistent_nv_vars"] as? Bool == true)
        #expect(manifest?["report_binds_manifest"] as? Bool == true && info?["profile"] as? String == "edk2")
        try Bridge.withMount(s) { dir in
            #expect(Shell.run("tail -c +5 '\(dir)/Greeting-\(testGuid)'").out == "hello!!")
            // Beside a live mount every command runs through that mount's own driver.
            #expect(cli("get Greeting-\(testGuid) --raw \(s)").out == "hello!!")
            #expect(cli("set Beside-\(testGuid) --attributes nv,bs,rt --ascii live \(s)").status == 0)
            #expect(cli("get Beside-\(testGuid) --raw \(s)").out == "live")
            #expect(cli("list \(s)").out.contains("Beside-\(testGuid)"))
            #expect(cli("get Nope-global \(s)").status == 3)
            let refused = cli("set SecureBoot-global --attributes bs,rt --hex 01 \(s)")
            #expect(refused.status == 4 && refused.err.contains("EFI_WRITE_PROTECTED"))
            #expect(cli("info --json \(s)").out.contains("\"payload_size\":65496"))
            // As in the kernel, a variable created behind efivarfs is not listed until a
            // remount; the driver reads it by name.
            #expect(!Shell.run("ls '\(dir)'").out.contains("Beside"))
            #expect(Shell.run("cat '\(dir)/Beside-\(testGuid)'").err.contains("No such file"))
            #expect(cli("delete Beside-\(testGuid) \(s)").status == 0)
        }
        #expect(cli("delete Greeting-\(testGuid) \(s)").status == 0)
        #expect(cli("get Greeting-\(testGuid) \(s)").status == 3)
    }

    @Test("bench-model --only efivarfs runs every operation's calls and prints a time per operation; bad options are usage errors")
    func benchModelEfivarfs() {
        let r = cli("bench-model --only efivarfs --variables 50")
        #expect(r.status == 0, "\(r.err)")
        let lines = r.out.split(separator: "\n").map(String.init)
        for op in ["create", "stat", "read", "delete"] {
            // "efivarfs read: 4395 ns per operation (50 operations)"; a failed call makes the command fail.
            let line = lines.first { $0.hasPrefix("efivarfs \(op)") }
            #expect(line?.hasSuffix("ns per operation (50 operations)") == true, "\(op): \(line ?? "missing")")
            let ns = line?.split(separator: ":").last?.split(separator: " ").first.flatMap { Int($0) }
            #expect((ns ?? 0) > 0, "\(op): \(line ?? "missing")")
        }
        #expect(cli("bench-model --only efivarfs --variables 0").status == 64)
        #expect(cli("bench-model --only nonsense").status == 64)
    }

    @Test("exit codes: 3 not found, 4 refused (with the EFI_STATUS name), 64 usage; nothing changed")
    func exitCodes() throws {
        let tmp = Bridge.makeTempDir()
        defer { Shell.run("rm -rf '\(tmp)'") }
        let s = "--store '\(tmp)/store'"
        try #require(cli("list --create \(s)").status == 0, "a scripting command makes a new store when told to")
        #expect(cli("get Nope-global \(s)").status == 3)
        #expect(cli("delete Nope-\(testGuid) \(s)").status == 3)
        let refused = cli("set SecureBoot-global --attributes bs,rt --hex 01 \(s)")
        #expect(refused.status == 4 && refused.err.contains("EFI_WRITE_PROTECTED"))
        let bad = cli("set Timeout-global --attributes nv,bs,rt --hex 123 \(s)")
        #expect(bad.status == 64 && bad.err.contains("odd number of digits"))
        #expect(cli("get NotAName \(s)").status == 64)
        #expect(cli("set Timeout-global --attributes nv,zz --hex 00 \(s)").status == 64)
        #expect(cli("get Timeout-global --hex \(s)").out == "0000\n")
    }

    @Test("the README's profile comparison: three info commands show each store's payload, VAR_CHECK, manifest and open questions")
    func compareProfiles() throws {
        func info(_ args: String) throws -> [String: Any] {
            let r = cli("info --json \(args) --ephemeral")
            try #require(r.status == 0, "info \(args): \(r.err)")
            return try #require(JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any])
        }
        let edk2 = try info("--svsm edk2"), coconut = try info("--svsm coconut --coconut-secureboot"), qemu = try info("--svsm qemu")
        #expect(edk2["profile"] as? String == "edk2" && coconut["profile"] as? String == "coconut" && qemu["profile"] as? String == "qemu")
        #expect(edk2["var_check_properties"] as? Bool == true)
        #expect(coconut["var_check_properties"] as? Bool == false && qemu["var_check_properties"] as? Bool == false)
        #expect((coconut["manifest"] as? [String: Any])?["bytes"] as? String == "0000000002000000")
        #expect((edk2["manifest"] as? [String: Any])?["bytes"] as? String == "0000000000000000")
        #expect(coconut["secure_boot"] as? Int == 1 && coconut["pk"] as? Bool == true)
        #expect((coconut["open_questions"] as? [String])?.isEmpty == false)
        #expect((qemu["open_questions"] as? [String])?.isEmpty == true)
        #expect(((qemu["query_variable_info"] as? [String: Any])?["nv,bs,rt"] as? [String: Any])?["maximum_storage"] as? Int == 262_144)
        // COCONUT keeps nothing across SVSM starts: a store path is refused, with the reason.
        let refused = cli("list --svsm coconut --store /nonexistent/store")
        #expect(refused.status != 0 && refused.err.contains("--coconut-persistence"), "\(refused.err)")
    }

    /// `info` prints the manifest the model's SVSM returns, not flags of its own: every flag it
    /// shows is the bit of the bytes it read (COCONUT's `{u32 version; u32 flags}`, bit 0
    /// persistent_nv_vars, 1 secureboot_enabled, 2 secureboot_db_update), and the bytes are
    /// those docs/svsm-profiles.md's table gives for each profile and store. The cases include
    /// those where "a store path was given" and "Secure Boot updates are always possible" are
    /// wrong: COCONUT with persistence still reports 0 in bit 0, and no profile sets bit 2
    /// without a PK.
    @Test("info's manifest flags are the bits of the manifest bytes the SVSM returned, per profile and store", arguments: [
        // (info arguments, expected flags), the flags written down from the table:
        ("--svsm edk2 --ephemeral", 0),                  // no journal, no PK
        ("--svsm edk2 --store S --create", 1),           // journal; no PK
        ("--svsm edk2 --store K", 7),                    // journal; PK (lab keys); AuthVariableLib
        ("--svsm qemu --store S --create", 1),           // journal; no PK
        ("--svsm coconut --coconut-secureboot --ephemeral", 2),   // PK from the secureboot feature; bits 0 and 2 hard-coded 0
        ("--svsm coconut --coconut-secureboot --coconut-persistence --store S --create", 2),
    ])
    func manifestFlagsAreTheBytes(args: String, flags: Int) throws {
        let tmp = Bridge.makeTempDir()
        defer { Shell.run("rm -rf '\(tmp)'") }
        if args.hasSuffix("--store K") {
            // A store with lab keys enrolled: one mount with --enroll-generate (into an
            // existing, empty directory).
            try #require(Shell.run("mkdir '\(tmp)/keys'").status == 0)
            try Bridge.withMount("--store '\(tmp)/K' --enroll-generate '\(tmp)/keys'") { _ in }
        }
        let resolved = args.replacingOccurrences(of: "--store S", with: "--store '\(tmp)/S'")
            .replacingOccurrences(of: "--store K", with: "--store '\(tmp)/K'")
        let r = cli("info --json \(resolved)")
        try #require(r.status == 0, "info \(args): \(r.err)")
        let info = try #require(JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any])
        let manifest = try #require(info["manifest"] as? [String: Any])
        let hex = try #require(manifest["bytes"] as? String)
        #expect(hex == String(format: "00000000%02x000000", flags), "\(args): manifest \(hex)")
        // The printed fields, decoded from the printed bytes (little-endian u32s).
        let bytes = try #require(Hex.decode(hex), "\(args): \(hex)")
        try #require(bytes.count == 8, "\(args): \(hex)")
        let version = Int(bytes.loadLE(UInt32.self, at: 0)), bits = Int(bytes.loadLE(UInt32.self, at: 4))
        #expect(manifest["version"] as? Int == version)
        #expect(manifest["persistent_nv_vars"] as? Bool == (bits & 1 != 0), "\(args)")
        #expect(manifest["secureboot_enabled"] as? Bool == (bits & 2 != 0), "\(args)")
        #expect(manifest["secureboot_db_update"] as? Bool == (bits & 4 != 0), "\(args)")
        // The text form prints the same bytes and flags.
        let text = cli("info \(resolved)").out
        #expect(text.contains(hex) && text.contains("secureboot_db_update=\(bits & 4 != 0 ? 1 : 0)"), "\(text)")
    }
}

@Suite("Live-mount tools: stats, logging, completions", .serialized)
struct LiveToolsTests {
    @Test("stats on a live mount counts calls per call and MM function, errors and vCPU use")
    func stats() throws {
        try Bridge.withMount("--vcpus 6") { dir in
            for _ in 0..<5 { Shell.run("cat '\(dir)/Timeout-\(globalGuid)' > /dev/null") }
            let r = Shell.run("'\(Bridge.binary)' stats --json '\(dir)'")
            #expect(r.status == 0, "\(r.err)")
            let o = try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any]
            let perMm = try #require(o?["per_mm_function"] as? [String: Int])
            #expect((perMm["GET_VARIABLE"] ?? 0) >= 10)
            #expect(o?["failed_calls"] as? Int == 0)
            #expect((o?["vcpus"] as? [String: Any])?["count"] as? Int == 6)
            #expect(Shell.run("'\(Bridge.binary)' stats '\(dir)'").out.contains("per MM function"))
        }
        let gone = Shell.run("'\(Bridge.binary)' stats /nonexistent-mount")
        #expect(gone.status == 1 && gone.err.contains("no efivarfs-bridge answers"))
    }

    @Test("quiet by default; --verbose logs the mount, a failing SVSM call is a warning")
    func logging() throws {
        let dir = Bridge.makeTempDir()
        defer { Bridge.unmount(dir); rmdir(dir) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Bridge.binary)
        p.arguments = ["mount", "--foreground", "--ephemeral", "--verbose", "--fault", "drop-exit=1", dir]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        for _ in 0..<100 where !Bridge.isMounted(dir) { usleep(50_000) }
        Shell.run("cat '\(dir)/x-\(testGuid)' 2>/dev/null; printf '\\x07\\x00\\x00\\x00x' > '\(dir)/F-\(testGuid)'")
        Bridge.unmount(dir)
        p.waitUntilExit()
        let log = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(log.contains("info efivarfs-bridge") && log.contains("mounted on"))
        #expect(log.contains("warning") && log.contains("not executed"))
        let quiet = Shell.run("'\(Bridge.binary)' list --ephemeral")
        #expect(quiet.err.isEmpty)
    }

    @Test("shell completions are generated by the argument parser")
    func completions() {
        for shell in ["bash", "zsh", "fish"] {
            let r = Shell.run("'\(Bridge.binary)' --generate-completion-script \(shell)")
            #expect(r.status == 0 && r.out.contains("efivarfs-bridge") && r.out.contains("mount"))
        }
    }
}
