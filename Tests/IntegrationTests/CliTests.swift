import Foundation
import Testing

@Suite("The scripting commands", .serialized)
struct CliTests {
    func cli(_ args: String) -> Shell.Result { Shell.run("'\(Bridge.binary)' \(args)") }

    @Test("list, get, set, delete and info on a store that is not mounted; the mount then sees the result")
    func subcommands() throws {
        let tmp = Bridge.makeTempDir()
        defer { Shell.run("rm -rf '\(tmp)'") }
        let s = "--store '\(tmp)/store'"
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
        #expect((info?["manifest"] as? [String: Any])?["persistent_nv_vars"] as? Bool == true)
        try Bridge.withMount(s) { dir in
            #expect(Shell.run("tail -c +5 '\(dir)/Greeting-\(testGuid)'").out == "hello!!")
            // Beside a live mount the store is locked: one clear line, exit 1.
            let locked = cli("get Greeting-\(testGuid) \(s)")
            #expect(locked.status == 1 && locked.err.contains("in use by process"))
        }
        #expect(cli("delete Greeting-\(testGuid) \(s)").status == 0)
        #expect(cli("get Greeting-\(testGuid) \(s)").status == 3)
    }

    @Test("exit codes: 3 not found, 4 refused (with the EFI_STATUS name), 64 usage; nothing changed")
    func exitCodes() throws {
        let tmp = Bridge.makeTempDir()
        defer { Shell.run("rm -rf '\(tmp)'") }
        let s = "--store '\(tmp)/store'"
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
}
