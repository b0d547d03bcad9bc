import Foundation
import Testing
import TestSupport
import SvsmEfiVars

/// Persistence with the real firmware: OVMF (Debian's OVMF_CODE_4M.fd) in QEMU boots the same
/// OVMF_VARS.fd the bridge serves with --from-fd, and its UEFI shell's `dmpstore -all`
/// (printed on the serial console) is compared with the mount.
///
/// Secure Boot stays off (OVMF_VARS_4M.fd, no keys): with Microsoft's keys enrolled OVMF
/// refuses to start its own shell, so OVMF_VARS_4M.ms.fd cannot be inspected this way.
@Suite("QEMU + OVMF boots the bridge's variable file", .serialized)
struct QemuBootTests {
    static let vendor = "210be57c-9849-4fc7-a635-e6382d1aec27"

    struct DumpedVariable: Equatable, CustomStringConvertible {
        let attributes: UInt32
        let data: [UInt8]
        var bytes: [UInt8] { withUnsafeBytes(of: attributes.littleEndian, Array.init) + data }
        var description: String { String(format: "attr 0x%x, %d bytes", attributes, data.count) }
    }

    /// Boots OVMF with `vars` and a FAT disk whose startup.nsh runs `commands`, then
    /// `dmpstore -all`, then powers off. Returns the variables dmpstore printed, by name.
    static func boot(_ vars: String, commands: [String], work: String) throws -> [String: DumpedVariable] {
        let esp = work + "/esp"
        try? FileManager.default.removeItem(atPath: esp)
        try FileManager.default.createDirectory(atPath: esp, withIntermediateDirectories: true)
        let script = (commands + ["echo BRIDGE-DUMP-START", "dmpstore -all", "echo BRIDGE-DUMP-END", "reset -s"])
            .map { $0 + "\r\n" }.joined()
        try script.write(toFile: esp + "/startup.nsh", atomically: true, encoding: .utf8)
        let r = Shell.run("""
            timeout 300 qemu-system-x86_64 -machine q35 -m 256 -nographic -no-reboot -net none \
              -drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \
              -drive if=pflash,format=raw,unit=1,file='\(vars)' \
              -drive file=fat:rw:'\(esp)',format=raw,media=disk
            """)
        let console = r.out.replacingOccurrences(of: "\u{1b}\\[[0-9;]*m", with: "", options: .regularExpression)
        guard let start = console.range(of: "BRIDGE-DUMP-START\r\n"), let end = console.range(of: "BRIDGE-DUMP-END\r\n") else {
            throw BootFailure(console: String(console.suffix(2000)) + r.err)
        }
        return parseDmpstore(String(console[start.upperBound..<end.lowerBound]))
    }

    struct BootFailure: Error, CustomStringConvertible {
        let console: String
        var description: String { "no dmpstore output from the VM:\n\(console)" }
    }

    /// `Variable NV+RT+BS 'EFIGlobalVariable:BootOrder' DataSize = 0x08` then hex lines
    /// `  00000000: 00 00 01 00-02 00 03 00  *........*`.
    static func parseDmpstore(_ text: String) -> [String: DumpedVariable] {
        let bits: [Substring: UInt32] = ["NV": 1, "BS": 2, "RT": 4, "HR": 8, "AW": 0x10, "AT": 0x20]
        var out: [String: DumpedVariable] = [:]
        var name: String?, attributes: UInt32 = 0, data: [UInt8] = []
        func flush() { if let n = name { out[n] = DumpedVariable(attributes: attributes, data: data) } }
        for line in text.split(separator: "\r\n", omittingEmptySubsequences: true).flatMap({ $0.split(separator: "\n") }) {
            if line.hasPrefix("Variable "), let q1 = line.firstIndex(of: "'"), let q2 = line.lastIndex(of: "'"), q1 < q2 {
                flush()
                let attrText = line.dropFirst("Variable ".count).prefix { $0 != " " }
                attributes = attrText.split(separator: "+").reduce(0) { $0 | (bits[$1] ?? 0) }
                let quoted = line[line.index(after: q1)..<q2]
                name = quoted.lastIndex(of: ":").map { String(quoted[quoted.index(after: $0)...]) }
                data = []
            } else if name != nil, let colon = line.firstIndex(of: ":"), line.hasPrefix("  "), let star = line.firstIndex(of: "*") {
                data += line[line.index(after: colon)..<star].replacingOccurrences(of: "-", with: " ")
                    .split(separator: " ").compactMap { UInt8($0, radix: 16) }
            }
        }
        flush()
        return out
    }

    static func fileName(_ mount: String, _ name: String) -> String? {
        (try? FileManager.default.contentsOfDirectory(atPath: mount))?.first { $0.hasPrefix(name + "-") && $0.count == name.count + 37 }
    }

    @Test("the firmware's own writes read back through --from-fd; the mount's changes boot in OVMF and the firmware sees them")
    func roundTripThroughOvmf() throws {
        try requirePrerequisites(.qemu, .ovmf, .chattr)
        let work = Bridge.makeTempDir()
        defer { Shell.run("rm -rf '\(work)'") }
        let vars = work + "/OVMF_VARS.fd"
        try #require(Shell.run("cp /usr/share/OVMF/OVMF_VARS_4M.fd '\(vars)'").status == 0)
        let size = try FileManager.default.attributesOfItem(atPath: vars)[.size] as? Int

        // 1. OVMF initialises the store in place (edk2 records, State bits flipped) and the
        //    shell adds two variables of its own.
        let first = try Self.boot(vars, commands: [
            "setvar BridgeFromShell -guid \(Self.vendor) -nv -bs -rt =0x11223344",
            "setvar BridgeDeleted -guid \(Self.vendor) -nv -bs -rt =0x55",
        ], work: work)
        try #require(first["BridgeFromShell"] != nil && first["BootOrder"] != nil, "\(first.keys.sorted())")

        // 2. The mount shows every runtime-visible variable the firmware showed: the
        //    non-volatile ones and the platform-independent volatile ones byte for byte; the
        //    rest (console devices, BootCurrent) exist but describe this VM's hardware.
        let hardwareDependent: Set<String> = ["ConInDev", "ConOutDev", "ErrOutDev", "BootCurrent"]
        try Bridge.withMount("--from-fd '\(vars)'") { dir in
            for (name, v) in first where v.attributes & 4 != 0 {
                let file = Self.fileName(dir, name)
                #expect(file != nil, "\(name) (\(v)) is not in the mount")
                guard let file, !hardwareDependent.contains(name) else { continue }
                let ours = FileManager.default.contents(atPath: dir + "/" + file).map(Array.init)
                #expect(ours == v.bytes, "\(name): firmware \(v), mount \(ours?.count ?? -1) bytes")
            }
            // Changes through the mount: a new variable, a rewrite, a deletion.
            let new = "\(dir)/BridgeFromMount-\(Self.vendor)"
            #expect(Shell.run("printf '\\x07\\x00\\x00\\x00\\xaa\\xbb\\xcc' > '\(new)'").status == 0)
            let shellVar = "\(dir)/BridgeFromShell-\(Self.vendor)"
            Shell.run("chattr -i '\(shellVar)' '\(dir)/BridgeDeleted-\(Self.vendor)'")
            #expect(Shell.run("printf '\\x07\\x00\\x00\\x00\\x01\\x02' > '\(shellVar)'").status == 0)
            #expect(Shell.run("rm '\(dir)/BridgeDeleted-\(Self.vendor)'").status == 0)
        }
        #expect(try FileManager.default.attributesOfItem(atPath: vars)[.size] as? Int == size)

        // 3. OVMF boots the rewritten file and sees exactly those changes; what it wrote
        //    itself is still there (it did not reformat a store it found bad).
        let second = try Self.boot(vars, commands: [], work: work)
        #expect(second["BridgeFromMount"] == DumpedVariable(attributes: 7, data: [0xaa, 0xbb, 0xcc]))
        #expect(second["BridgeFromShell"] == DumpedVariable(attributes: 7, data: [0x01, 0x02]))
        #expect(second["BridgeDeleted"] == nil)
        // Debian's OVMF_CODE_4M.fd is Secure-Boot-capable: its first boot wrote AuthVariableLib's
        // variables itself, the mount took the build from the file, and wrote exactly what the
        // firmware writes — no AuthVariableLib variable appears or goes missing.
        for name in ["certdb", "certdbv", "VendorKeysNv", "SecureBootEnable", "CustomMode", "SetupMode", "SecureBoot"] {
            #expect((second[name] == nil) == (first[name] == nil), "\(name): first boot \(first[name].map { "\($0)" } ?? "absent"), after the mount \(second[name].map { "\($0)" } ?? "absent")")
        }
        #expect(first["certdb"] != nil, "Debian's OVMF_CODE_4M.fd writes certdb on its first boot")
        for name in ["Boot0000", "Boot0001", "BootOrder", "ConIn", "ConOut", "Lang", "PlatformLang", "Timeout"] {
            #expect(second[name] == first[name], "\(name) changed across the round trip")
        }
        // The monotonic counter's high word, read from our file and counted up once per boot.
        func mtc(_ d: [String: DumpedVariable]) -> UInt32? { d["MTC"].flatMap { $0.data.count >= 4 ? $0.data.loadLE(UInt32.self, at: 0) : nil } }
        #expect(mtc(second) == mtc(first).map { $0 + 1 })
    }

    /// What Linux's efivarfs shows in a VM: "VAR <file> <hex>" lines between two markers.
    static func parseEfivarfsDump(_ console: String) -> [String: [UInt8]] {
        guard let start = console.range(of: "BRIDGE-EFIVARFS-START"), let end = console.range(of: "BRIDGE-EFIVARFS-END") else { return [:] }
        var out: [String: [UInt8]] = [:]
        for line in console[start.upperBound..<end.lowerBound].split(whereSeparator: \.isNewline) {
            let parts = line.trimmingCharacters(in: .whitespaces).split(separator: " ")
            guard parts.count >= 2, parts[0] == "VAR" else { continue }
            out[String(parts[1])] = parts.count > 2 ? Hex.decode(String(parts[2])) ?? [] : []
        }
        return out
    }

    @Test("Linux with Secure Boot on, booted from OVMF_VARS_4M.ms.fd through Debian's signed shim, GRUB and kernel: its efivarfs shows what a mount of the same file shows")
    func linuxEfivarfsMatchesMount() throws {
        try requirePrerequisites(.qemu, .ovmf, .vmPackages)
        let work = Bridge.makeTempDir()
        defer { Shell.run("rm -rf '\(work)'") }
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Selftests/linux-vm.sh").path
        try #require(Shell.run("cp /usr/share/OVMF/OVMF_VARS_4M.ms.fd '\(work)/vm.fd' && cp /usr/share/OVMF/OVMF_VARS_4M.ms.fd '\(work)/ours.fd'").status == 0)
        let vm = Shell.run("bash '\(script)' '\(work)/vm.fd' '\(work)'")
        let console = vm.out.replacingOccurrences(of: "\r", with: "")
        try #require(console.contains("secureboot: Secure boot enabled"), "the kernel did not boot with Secure Boot on:\n\(console.suffix(3000))\(vm.err)")
        let linux = Self.parseEfivarfsDump(console)
        try #require(linux.count > 20, "no efivarfs listing from the VM:\n\(console.suffix(3000))")

        // Created by the boot path, not by the firmware from the variable file: shim's
        // Mok*RT and SbatLevelRT; the options, consoles and BootCurrent of this VM's
        // devices (Boot0001.., BootOrder, ConIn/ConOut/ErrOut and their *Dev twins); the
        // monotonic counter, one more per boot.
        let bootLoader: Set<String> = ["MokListRT", "MokListTrustedRT", "MokListXRT", "SbatLevelRT"]
        let hardware: Set<String> = ["Boot0001", "Boot0002", "Boot0003", "Boot0004", "BootOrder", "BootCurrent", "ConIn", "ConOut", "ErrOut",
                                      "ConInDev", "ConOutDev", "ErrOutDev", "MTC"]
        func short(_ file: String) -> String { String(file.dropLast(37)) }
        try Bridge.withMount("--from-fd '\(work)/ours.fd'") { dir in
            let ours = Dictionary(uniqueKeysWithValues: try FileManager.default.contentsOfDirectory(atPath: dir).map { name in
                (name, FileManager.default.contents(atPath: dir + "/" + name).map(Array.init) ?? [])
            })
            var identical = 0
            for (file, bytes) in linux.sorted(by: { $0.key < $1.key }) where !bootLoader.contains(short(file)) {
                if hardware.contains(short(file)) {
                    if short(file) != "Boot0003" && short(file) != "Boot0004" { #expect(ours[file] != nil, "\(file) is not in the mount") }
                    continue
                }
                #expect(ours[file] == bytes, "\(file): the VM shows \(bytes.count) bytes, the mount \(ours[file]?.count ?? -1)")
                identical += 1
            }
            // Everything the mount shows, the VM shows too.
            for file in ours.keys { #expect(linux[file] != nil, "\(file) is in the mount but not in the VM") }
            #expect(identical >= 20, "only \(identical) variables compared byte for byte")
            print("linux efivarfs: \(linux.count) variables; \(identical) identical to the mount byte for byte")
        }
    }
}
