import Foundation
import Testing
import TestSupport

/// The variables of a uefi-vars JSON file as comparable strings (guid, name, attr, data,
/// and time where the file has one).
func jsonVariables(_ path: String, withTime: Bool = true) throws -> Set<String> {
    let root = try JSONSerialization.jsonObject(with: try Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any]
    let vars = try #require(root?["variables"] as? [[String: Any]])
    return Set(vars.map { v in
        let time = withTime ? ((v["time"] as? String).map { " time=\($0)" } ?? "") : ""
        return "\(v["guid"] as! String) \(v["name"] as! String) attr=\(v["attr"] as! Int) data=\(v["data"] as! String)\(time)"
    })
}

@Suite("OVMF_VARS.fd and JSON, cross-checked with virt-fw-vars", .serialized)
struct VariableFileTests {
    static let ovmf = "/usr/share/OVMF"
    func cli(_ args: String) -> Shell.Result { Shell.run("'\(Bridge.binary)' \(args)") }

    @Test("import each Debian 4M store; every variable equals what virt-fw-vars reports", arguments: ["OVMF_VARS_4M.fd", "OVMF_VARS_4M.ms.fd", "OVMF_VARS.ms.fd"])
    func importMatchesVirtFwVars(_ name: String) throws {
        try requirePrerequisites(.ovmf, .virtFirmware)
        let tmp = Bridge.makeTempDir()
        defer { Shell.run("rm -rf '\(tmp)'") }
        let file = "\(Self.ovmf)/\(name)"
        let imp = cli("import '\(file)' --store '\(tmp)/store'")
        try #require(imp.status == 0, "\(imp.err)")
        #expect(cli("export --format json --store '\(tmp)/store' '\(tmp)/ours.json'").status == 0)
        let ref = Shell.run("virt-fw-vars -i '\(file)' --output-json '\(tmp)/theirs.json'")
        try #require(ref.status == 0, "virt-fw-vars: \(ref.err)")
        let ours = try jsonVariables("\(tmp)/ours.json"), theirs = try jsonVariables("\(tmp)/theirs.json")
        // virt-fw-vars writes "time" only for a non-zero EFI_TIME; compare time where it has one.
        #expect(try jsonVariables("\(tmp)/ours.json", withTime: false) == (try jsonVariables("\(tmp)/theirs.json", withTime: false)))
        #expect(theirs.subtracting(ours).allSatisfy { !$0.contains(" time=") } || theirs.isSubset(of: ours), "\(theirs.subtracting(ours))")
        if name.contains("ms") { #expect(ours.count == 31) } else { #expect(ours.isEmpty) }
    }

    @Test("export to fd and JSON, read both back with virt-fw-vars, import the export: the same variables")
    func roundTrip() throws {
        try requirePrerequisites(.ovmf, .virtFirmware)
        let tmp = Bridge.makeTempDir()
        defer { Shell.run("rm -rf '\(tmp)'") }
        let s = "--store '\(tmp)/store'"
        try #require(cli("import '\(Self.ovmf)/OVMF_VARS_4M.ms.fd' \(s)").status == 0)
        #expect(cli("set Added-\(testGuid) --attributes nv,bs,rt --ascii round-trip \(s)").status == 0)
        #expect(cli("export --format json \(s) '\(tmp)/a.json'").status == 0)
        let fd = cli("export --format fd --template '\(Self.ovmf)/OVMF_VARS_4M.fd' \(s) '\(tmp)/vars.fd'")
        #expect(fd.status == 0, "\(fd.err)")
        #expect(Shell.run("stat -c %s '\(tmp)/vars.fd'").out.trimmingCharacters(in: .whitespacesAndNewlines) == "540672")
        #expect(Shell.run("virt-fw-vars -i '\(tmp)/vars.fd' --output-json '\(tmp)/from-fd.json'").status == 0)
        #expect(Shell.run("virt-fw-vars -i '\(tmp)/a.json' --output-json '\(tmp)/from-json.json'").status == 0)
        let ours = try jsonVariables("\(tmp)/a.json", withTime: false)
        #expect(ours.contains { $0.contains("Added") })
        #expect(try jsonVariables("\(tmp)/from-fd.json", withTime: false) == ours)
        #expect(try jsonVariables("\(tmp)/from-json.json", withTime: false) == ours)
        // Import the exports into fresh stores: the same again.
        for (f, store) in [("vars.fd", "s2"), ("a.json", "s3")] {
            #expect(cli("import '\(tmp)/\(f)' --store '\(tmp)/\(store)'").status == 0)
            #expect(cli("export --format json --store '\(tmp)/\(store)' '\(tmp)/\(store).json'").status == 0)
            #expect(try jsonVariables("\(tmp)/\(store).json", withTime: false) == ours)
        }
    }

    @Test("a mount of OVMF_VARS_4M.ms.fd shows what efivarfs shows in a VM booted with it, Secure Boot on")
    func mountMsStore() throws {
        try requirePrerequisites(.ovmf)
        let tmp = Bridge.makeTempDir()
        defer { Shell.run("rm -rf '\(tmp)'") }
        try #require(cli("import '\(Self.ovmf)/OVMF_VARS_4M.ms.fd' --store '\(tmp)/store'").status == 0)
        try Bridge.withMount("--store '\(tmp)/store'") { dir in
            let ls = Shell.run("ls '\(dir)'").out
            for n in ["PK-\(globalGuid)", "KEK-\(globalGuid)", "db-d719b2cb-3d3a-4596-a3bc-dad00e67656f", "dbx-d719b2cb-3d3a-4596-a3bc-dad00e67656f",
                      "Boot0000-\(globalGuid)", "Key0001-\(globalGuid)", "certdb-d9bee56e-75dc-49d9-b4d7-b534210f637a", "MTC-eb704011-1402-11d3-8e77-00a0c969723b"] {
                #expect(ls.contains(n), "\(n)")
            }
            // NV|BS variables (iSCSI attempts, SecureBootEnable, CustomMode, VendorKeysNv) are hidden at runtime.
            #expect(!ls.contains("Attempt") && !ls.contains("SecureBootEnable") && !ls.contains("VendorKeysNv"))
            #expect(Shell.run("od -An -tx1 -j4 '\(dir)/SecureBoot-\(globalGuid)'").out.trimmingCharacters(in: .whitespacesAndNewlines) == "01")
            // The bytes of a variable are the file's (4 attribute bytes, then data).
            #expect(Shell.run("stat -c %s '\(dir)/KEK-\(globalGuid)'").out.trimmingCharacters(in: .whitespacesAndNewlines) == "\(4 + 2565)")
        }
    }

    @Test("Microsoft's signed dbx update: accepted once, a no-op when appended again, refused tampered or without APPEND")
    func microsoftDbxUpdate() throws {
        try requirePrerequisites(.ovmf, .chattr)
        let tmp = Bridge.makeTempDir()
        defer { Shell.run("rm -rf '\(tmp)'") }
        let update = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/DBXUpdate-amd64.bin").path
        #expect(Shell.run("sha256sum '\(update)'").out.hasPrefix("2089e3125e611376cb44326b5765674255443b2484f88de97251939d18055f68"))
        try #require(cli("import '\(Self.ovmf)/OVMF_VARS_4M.ms.fd' --store '\(tmp)/store'").status == 0)
        Shell.run("(printf '\\x67\\x00\\x00\\x00'; cat '\(update)') > '\(tmp)/append.var'; (printf '\\x27\\x00\\x00\\x00'; cat '\(update)') > '\(tmp)/replace.var'")
        Shell.run("cp '\(tmp)/append.var' '\(tmp)/tampered.var'; printf '\\x00' | dd of='\(tmp)/tampered.var' bs=1 seek=20000 conv=notrunc 2>/dev/null")
        try Bridge.withMount("--store '\(tmp)/store'") { dir in
            let dbx = "\(dir)/dbx-d719b2cb-3d3a-4596-a3bc-dad00e67656f"
            func size() -> String { Shell.run("cat '\(dbx)' | wc -c").out.trimmingCharacters(in: .whitespacesAndNewlines) }
            #expect(size() == "80")
            Shell.run("chattr -i '\(dbx)'")
            #expect(Shell.run("cat '\(tmp)/tampered.var' > '\(dbx)'").err.contains("Permission denied"))
            #expect(Shell.run("cat '\(tmp)/append.var' > '\(dbx)'").status == 0)
            #expect(size() == "\(80 + 28 + 443 * 48)")
            #expect(Shell.run("cat '\(tmp)/append.var' > '\(dbx)'").status == 0)
            #expect(size() == "\(80 + 28 + 443 * 48)")
            #expect(Shell.run("cat '\(tmp)/replace.var' > '\(dbx)'").err.contains("Permission denied"))
        }
    }

    @Test("bad files: a clear error naming the file and offset or field; the store and the file unchanged", arguments: [
        ("truncated", "head -c 100 OVMF_VARS_4M.ms.fd > bad", "offset 0x20: FvLength"),
        ("not a volume", "head -c 30 OVMF_VARS_4M.ms.fd > bad", "neither a firmware volume nor JSON"),
        ("bad FV checksum", "cp OVMF_VARS_4M.ms.fd bad; printf '\\x00\\x00' | dd of=bad bs=1 seek=50 conv=notrunc", "offset 0x32"),
        ("bad store state", "cp OVMF_VARS_4M.ms.fd bad; printf '\\x00' | dd of=bad bs=1 seek=93 conv=notrunc", "offset 0x5d"),
        ("bad record state", "cp OVMF_VARS_4M.ms.fd bad; printf '\\x11' | dd of=bad bs=1 seek=102 conv=notrunc", "record at offset 0x64"),
        ("record overrun", "cp OVMF_VARS_4M.ms.fd bad; printf '\\xff\\xff\\xff\\x00' | dd of=bad bs=1 seek=\(0x64 + 40) conv=notrunc", "run past the end"),
        ("bad JSON hex", "printf '{\"version\":2,\"variables\":[{\"guid\":\"\(testGuid)\",\"name\":\"A\",\"attr\":7,\"data\":\"0g\"}]}' > bad", "variables[0].data"),
        ("duplicate JSON", "printf '{\"version\":2,\"variables\":[{\"guid\":\"\(testGuid)\",\"name\":\"A\",\"attr\":7,\"data\":\"00\"},{\"guid\":\"\(testGuid)\",\"name\":\"A\",\"attr\":7,\"data\":\"01\"}]}' > bad", "duplicate variable"),
        ("JSON version", "printf '{\"version\":1,\"variables\":[]}' > bad", "version"),
    ])
    func badFiles(_ label: String, _ make: String, _ expected: String) throws {
        try requirePrerequisites(.ovmf)
        let tmp = Bridge.makeTempDir()
        defer { Shell.run("rm -rf '\(tmp)'") }
        Shell.run("cd '\(tmp)' && cp '\(Self.ovmf)/OVMF_VARS_4M.ms.fd' . && { \(make); } 2>/dev/null")
        try #require(cli("set Keep-\(testGuid) --attributes 7 --ascii k --create --store '\(tmp)/store'").status == 0)
        let before = Shell.run("md5sum '\(tmp)/bad'").out
        let r = cli("import '\(tmp)/bad' --store '\(tmp)/store'")
        #expect(r.status != 0 && r.err.contains(expected) && r.err.contains("/bad"), "\(label): \(r.err)")
        #expect(Shell.run("md5sum '\(tmp)/bad'").out == before)
        #expect(cli("get Keep-\(testGuid) --raw --store '\(tmp)/store'").out == "k")
    }

    @Test("an fd export that does not fit the volume is refused with the sizes")
    func exportTooBig() throws {
        try requirePrerequisites(.ovmf)
        let tmp = Bridge.makeTempDir()
        defer { Shell.run("rm -rf '\(tmp)'") }
        let s = "--store '\(tmp)/store'"
        try #require(cli("list --create \(s)").status == 0)
        for i in 0..<4 {
            #expect(cli("set Big\(i)-\(testGuid) --attributes nv,bs,rt --hex \(String(repeating: "ab", count: 16000)) \(s)").status == 0)
        }
        let r = cli("export --format fd --template '\(Self.ovmf)/OVMF_VARS.fd' \(s) '\(tmp)/small.fd'")
        #expect(r.status != 0 && r.err.contains("the variables need"), "\(r.err)")
        #expect(!FileManager.default.fileExists(atPath: "\(tmp)/small.fd"))
    }
}

@Suite("Live variable files (--from-fd, --from-json)", .serialized)
struct LiveFileTests {
    @Test("--from-fd: changes land in the same OVMF_VARS.fd, same size, readable by virt-fw-vars; one server per file")
    func liveFd() throws {
        try requirePrerequisites(.ovmf, .efibootmgr, .virtFirmware)
        let tmp = Bridge.makeTempDir()
        defer { Shell.run("rm -rf '\(tmp)'") }
        Shell.run("cp /usr/share/OVMF/OVMF_VARS_4M.ms.fd '\(tmp)/vm.fd'")
        try Bridge.withMount("--from-fd '\(tmp)/vm.fd'") { dir in
            #expect(Shell.run("efibootmgr -t 7", environment: ["EFIVARFS_PATH": dir + "/"]).status == 0)
            #expect(Shell.run("printf '\\x07\\x00\\x00\\x00live' > '\(dir)/Live-\(testGuid)'").status == 0)
            let other = Bridge.makeTempDir()
            defer { Bridge.unmount(other); rmdir(other) }
            let second = Shell.run("'\(Bridge.binary)' mount --from-fd '\(tmp)/vm.fd' '\(other)'")
            #expect(second.status != 0 && second.err.contains("in use by process"))
        }
        #expect(Shell.run("stat -c %s '\(tmp)/vm.fd'").out.trimmingCharacters(in: .whitespacesAndNewlines) == "540672")
        #expect(Shell.run("virt-fw-vars -i '\(tmp)/vm.fd' --output-json '\(tmp)/v.json'").status == 0)
        let vars = try jsonVariables("\(tmp)/v.json", withTime: false)
        #expect(vars.contains("8be4df61-93ca-11d2-aa0d-00e098032b8c Timeout attr=7 data=0700"))
        #expect(vars.contains("\(testGuid) Live attr=7 data=6c697665"))
        #expect(vars.contains { $0.contains(" PK ") })
        // Serving it again shows the change: the file is the store.
        try Bridge.withMount("--from-fd '\(tmp)/vm.fd'") { dir in
            #expect(Shell.run("tail -c +5 '\(dir)/Live-\(testGuid)'").out == "live")
        }
    }

    @Test("--from-fd takes the firmware build from the file: booted without AuthVariableLib → plain, no certdb written; blank or enrolled → Secure Boot; --firmware overrides")
    func firmwareBuildFromTheFile() throws {
        try requirePrerequisites(.ovmf, .virtFirmware)
        let tmp = Bridge.makeTempDir()
        defer { Shell.run("rm -rf '\(tmp)'") }
        func names(_ file: String) throws -> Set<String> {
            try #require(Shell.run("virt-fw-vars -i '\(file)' --output-json '\(file).json'").status == 0)
            return try jsonVariables("\(file).json", withTime: false)
        }
        func firmware(_ file: String) -> String { Shell.run("'\(Bridge.binary)' info --from-fd '\(file)'").out }
        // A blank store no firmware has booted: the distributions' builds are Secure-Boot-capable.
        Shell.run("cp /usr/share/OVMF/OVMF_VARS_4M.fd '\(tmp)/blank.fd'")
        #expect(firmware("\(tmp)/blank.fd").contains("firmware: secure-boot (no firmware has booted the file yet"))
        // Booted by a build without Secure Boot (--firmware plain): variables, but none of
        // AuthVariableLib's. The next mount sees that and writes none either.
        Shell.run("cp /usr/share/OVMF/OVMF_VARS_4M.fd '\(tmp)/plain.fd'")
        try Bridge.withMount("--from-fd '\(tmp)/plain.fd' --firmware plain") { dir in
            #expect(Shell.run("test -e '\(dir)/SecureBoot-\(globalGuid)'").status != 0)
        }
        #expect(firmware("\(tmp)/plain.fd").contains("firmware: plain"))
        try Bridge.withMount("--from-fd '\(tmp)/plain.fd'") { dir in
            #expect(Shell.run("test -e '\(dir)/SecureBoot-\(globalGuid)'").status != 0)
            #expect(Shell.run("printf '\\x07\\x00\\x00\\x00x' > '\(dir)/Plain-\(testGuid)'").status == 0)
        }
        let plain = try names("\(tmp)/plain.fd")
        #expect(plain.contains("\(testGuid) Plain attr=7 data=78"))
        #expect(!plain.contains { $0.contains(" certdb ") || $0.contains(" certdbv ") || $0.contains(" VendorKeysNv ") })
        // The blank file mounted as it is: AuthVariableLib's variables, as OVMF's first boot writes them.
        try Bridge.withMount("--from-fd '\(tmp)/blank.fd'") { dir in
            #expect(Shell.run("test -e '\(dir)/SecureBoot-\(globalGuid)'").status == 0)
        }
        #expect(try names("\(tmp)/blank.fd").contains { $0.contains(" certdb ") })
        // Microsoft's keys enrolled: only a Secure-Boot build writes PK, so that is the build.
        Shell.run("cp /usr/share/OVMF/OVMF_VARS_4M.ms.fd '\(tmp)/ms.fd'")
        #expect(firmware("\(tmp)/ms.fd").contains("firmware: secure-boot (the file holds "))
    }

    @Test("--from-json: rewritten on each change; volatile variables never written")
    func liveJson() throws {
        try requirePrerequisites(.virtFirmware)
        let tmp = Bridge.makeTempDir()
        defer { Shell.run("rm -rf '\(tmp)'") }
        Shell.run("printf '{\"version\": 2, \"variables\": []}' > '\(tmp)/vars.json'")
        try Bridge.withMount("--from-json '\(tmp)/vars.json'") { dir in
            // An empty store boots like a fresh OVMF VM and writes its defaults to the file.
            #expect(Shell.run("printf '\\x07\\x00\\x00\\x00json' > '\(dir)/Live-\(testGuid)'").status == 0)
            let vars = try jsonVariables("\(tmp)/vars.json", withTime: false)
            #expect(vars.contains("\(testGuid) Live attr=7 data=6a736f6e"))
            #expect(vars.contains { $0.contains(" BootOrder ") })
            #expect(!vars.contains { $0.contains(" BootCurrent ") || $0.contains(" SecureBoot ") })  // volatile
        }
        #expect(Shell.run("virt-fw-vars -i '\(tmp)/vars.json' --output-json '\(tmp)/check.json'").status == 0)
    }
}
