import Foundation
import SvsmEfiVars
import Testing
import TestSupport

/// The C module in kernel/ against the real Swift SVSM, in QEMU (TCG), on each SVSM profile.
/// kernel/build.sh builds the module (W=1, warning-free), then Selftests/kernel-vm.sh boots
/// the Debian 6.12 test kernel with OVMF and efi=noruntime and an ivshmem window served by
/// `efivarfs-bridge serve-svsm`. One session per profile, shared by the tests that read it:
///
/// * edk2 (two boots, fresh --store): mm-ops (the operations compared byte for byte with the
///   Swift driver), the kernel's efivarfs selftests, efivar, efibootmgr, bootorder
///   (efibootmgr -o and a new variable), a reboot (a new QEMU process and a restarted
///   serve-svsm on the same store) and persisted (the writes read back);
/// * qemu (one boot, fresh --store): the selftests, efivar, efibootmgr, bootorder;
/// * coconut (two boots, no store: COCONUT's is empty at every SVSM start): the same, a
///   reboot with a restarted serve-svsm, and forgotten (OVMF's defaults again).
///
/// What differs between the profiles is asserted as such; kernel/README.md ("Kernel module
/// on each profile") lists it.
@Suite("The C module under serve-svsm, in QEMU", .serialized)
struct KernelModuleTests {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    static let selftests = repo + "/Tests/IntegrationTests/Selftests"
    /// kernel-vm.sh's vendor GUID for its own variables.
    static let vmGuid = "7f3c0e2a-5b6d-4d1e-9a8b-2c4d6e8f0a1b"

    /// What a session left to look at (its work directory is removed).
    struct Session: Sendable {
        var vm: Shell.Result
        var seconds: Double
        /// Console output per boot.
        var consoles: [String]
        var hostLog: String
        /// The --store directory (removed with the work directory).
        var store: String
        /// serve-svsm --log-requests, every boot.
        var requests: [String]
        /// The host store after the run (nil without one): `get BootOrder-global --hex`,
        /// `get KvmPersist-… --raw`.
        var storeBootOrder: Shell.Result?
        var storePersist: Shell.Result?
        /// The end of a first run's console that panicked before the module was loaded
        /// (this session is the second run), else nil.
        var earlyPanic: String?
    }

    /// kernel/build.sh from a clean output directory, so that a warning from an earlier
    /// build cannot hide behind make's "nothing to do".
    static let build: Result<Shell.Result, any Error> = Result {
        try requirePrerequisites(.root, .kernelCache)
        let env = try String(contentsOfFile: Prerequisite.kernelCacheDirectory + "/current.env", encoding: .utf8)
        let kver = env.split(separator: "\n").first { $0.hasPrefix("KVER=") }.map { String($0.dropFirst(5)) } ?? ""
        guard !kver.isEmpty else { throw MmRequestComparison.BadLog(reason: "no KVER in \(Prerequisite.kernelCacheDirectory)/current.env") }
        try? FileManager.default.removeItem(atPath: repo + "/kernel/out/" + kver)
        return Shell.run("bash '\(repo)/kernel/build.sh' 2>&1")
    }

    static let edk2 = Result { try runSession(profile: [], store: true, steps: ["mm-ops", "selftests", "efivar", "efibootmgr", "bootorder", "reboot", "persisted"]) }
    static let qemu = Result { try runSession(profile: ["--svsm", "qemu"], store: true, steps: ["selftests", "efivar-append-refused", "efibootmgr", "bootorder"]) }
    static let coconut = Result {
        try runSession(profile: ["--svsm", "coconut"], store: false, steps: ["selftests", "efivar-append-refused", "efibootmgr", "bootorder", "reboot", "forgotten"])
    }

    /// One kernel-vm.sh session under `serve-svsm` with the `profile` options, on a fresh
    /// --store if `store` (else the profile's default: memory for coconut).
    static func runSession(profile: [String], store useStore: Bool, steps: [String]) throws -> Session {
        try requirePrerequisites(.root, .qemu, .ovmf, .kernelCache, .vmPackages, .gcc, .staticLibc, .efivar, .efibootmgr, .chattr)
        let built = try build.get()
        guard built.status == 0 else { throw MmRequestComparison.BadLog(reason: "kernel/build.sh failed:\n\(built.out)") }
        let first = runOnce(profile: profile, store: useStore, steps: steps)
        // QEMU 7.2 under TCG now and then oopses in early boot (kernel/README.md, "Open
        // points"). A boot that panicked before the module was loaded says nothing about
        // the module, so such a session is run once more.
        guard first.vm.status != 0, let last = first.consoles.last, last.contains("Kernel panic"), !last.contains("KVM-LOAD") else {
            return first
        }
        var again = runOnce(profile: profile, store: useStore, steps: steps)
        again.earlyPanic = String(last.suffix(1500))
        return again
    }

    static func runOnce(profile: [String], store useStore: Bool, steps: [String]) -> Session {
        let start = Date()
        let work = Bridge.makeTempDir()
        defer { try? FileManager.default.removeItem(atPath: work) }
        let store = work + "/store", requestLog = work + "/requests.log"
        let storeArguments = useStore ? ["--store", store] : []
        let host = ([Bridge.binary, "serve-svsm", "--shm", "{shm}"] + profile + storeArguments
                    + ["--log-requests", requestLog, "--log-level", "info"]).joined(separator: " ")
        let vm = Shell.run("bash '\(selftests)/kernel-vm.sh' --work '\(work)' --timeout 150 --host '\(host)' \(steps.joined(separator: " "))")
        func read(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }
        let consoles = (1...8).map { read("\(work)/console-\($0).log") }.filter { !$0.isEmpty }
        // The scripting commands open the store with the profile that wrote it.
        let cli = ([Bridge.binary] + profile).map { "'\($0)'" }
        func get(_ arguments: String) -> Shell.Result? {
            useStore ? Shell.run("\(cli[0]) get \(arguments) \(cli.dropFirst().joined(separator: " ")) --store '\(store)'") : nil
        }
        return Session(
            vm: vm, seconds: Date().timeIntervalSince(start), consoles: consoles, hostLog: read(work + "/host.log"), store: store,
            requests: read(requestLog).split(separator: "\n").map(String.init),
            storeBootOrder: get("BootOrder-global --hex"), storePersist: get("KvmPersist-\(vmGuid) --raw"))
    }

    /// The output of a step, between its KVM-STEP-BEGIN and KVM-STEP-END lines, and its exit
    /// status (nil when the step did not end).
    static func step(_ name: String, in console: String) -> (output: String, rc: Int?) {
        let lines = console.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard let begin = lines.firstIndex(where: { $0.hasPrefix("KVM-STEP-BEGIN ") && $0.hasSuffix(" " + name) }) else { return ("", nil) }
        let rest = lines[(begin + 1)...]
        guard let end = rest.firstIndex(where: { $0.hasPrefix("KVM-STEP-END ") && $0.contains(" \(name) rc=") }) else {
            return (rest.joined(separator: "\n"), nil)
        }
        return (lines[(begin + 1)..<end].joined(separator: "\n"), Int(lines[end].split(separator: "=").last ?? ""))
    }

    /// The session ran every step, in `boots` boots, each loading the module with a
    /// serve-svsm of its own. `properties`: whether the SVSM keeps variable properties, as
    /// the load log says; then each SetVariable asks VAR_CHECK_VARIABLE_PROPERTY_GET first,
    /// else only the load does. `store`: how serve-svsm's log names its store.
    static func expectSession(_ s: Session, boots: Int, properties: Bool, store: String) throws {
        if let panic = s.earlyPanic { print("KernelModuleTests: run again after a panic before the module was loaded:\n\(panic)") }
        let tail = String(s.vm.out.suffix(3000))
        try #require(s.vm.status == 0, "kernel-vm.sh exit \(s.vm.status):\n\(tail)\n\(s.vm.err.suffix(2000))\nhost log:\n\(s.hostLog)")
        #expect(s.vm.out.contains("kernel-vm.sh: \(boots) boot(s), 0 failed step(s)"))
        try #require(s.consoles.count == boots, "expected \(boots) boot(s):\n\(tail)")
        for console in s.consoles {
            #expect(console.contains("KVM-LOAD rc=0") && console.contains("KVM-MOUNT rc=0"))
            #expect(console.contains("svsm_efivars: Using SVSM-based EFI runtime variable services (shm transport)"))
            #expect(console.contains("payload 65496 bytes, 65536-byte buffer per CPU, variable properties \(properties ? "used" : "not supported")"))
        }
        let requests = try MmRequestLog.parse(s.requests)
        let sets = requests.filter { $0.function == MmRequest.setVariable }.count
        let varChecks = requests.filter { $0.function == MmRequest.varCheckGet }.count
        #expect(sets > 10)
        #expect(properties ? varChecks == boots + sets : varChecks == boots, "\(varChecks) VAR_CHECK for \(sets) SET_VARIABLE in \(boots) boot(s)")
        #expect(s.consoles.last?.contains("KVM-DONE") == true)
        // The host: started for each boot; each boot's module load is a new generation.
        #expect(s.hostLog.components(separatedBy: "] \(store) ready;").count == boots + 1, "\(s.hostLog)")
        #expect(s.hostLog.components(separatedBy: "kernel-vm.sh: starting the host:").count == boots + 1, "\(s.hostLog)")
        for generation in 1...boots {
            #expect(s.hostLog.contains("attached: generation \(generation): 2 vCPUs"))
        }
    }

    /// The first boot's selftests, efivar (`appended`: efivar -a worked), efibootmgr and
    /// bootorder steps, as every profile runs them.
    static func expectTools(_ console: String, appended: Bool) {
        let selftests = step("selftests", in: console)
        #expect(selftests.rc == 0)
        for test in ["test_create", "test_create_empty", "test_create_read", "test_delete", "test_zero_size_delete",
                     "test_open_unlink", "test_valid_filenames", "test_invalid_filenames"] {
            #expect(selftests.output.contains("running \(test)"), "\(test) did not run")
        }
        #expect(selftests.output.components(separatedBy: "[PASS]").count - 1 == 8, "\(selftests.output)")
        #expect(!selftests.output.contains("[FAIL]"))

        let efivar = step(appended ? "efivar" : "efivar-append-refused", in: console)
        #expect(efivar.rc == 0, "\(efivar.output)")
        #expect(efivar.output.contains("Name: \"EfivarTool\""))
        #expect(efivar.output.contains("\(vmGuid)-EfivarTool"))
        if appended {
            #expect(efivar.output.contains("73 76 73 6d 73 76 73 6d") && efivar.output.contains("|svsmsvsm"))
        } else {
            #expect(efivar.output.contains("efivar: Invalid argument") && efivar.output.contains("append refused"), "\(efivar.output)")
            #expect(efivar.output.contains("|svsm") && !efivar.output.contains("svsmsvsm"), "\(efivar.output)")
        }

        let efibootmgr = step("efibootmgr", in: console)
        #expect(efibootmgr.rc == 0, "\(efibootmgr.output)")
        #expect(efibootmgr.output.contains("Timeout: 7 seconds"))
        #expect(efibootmgr.output.contains("BootOrder: 0001,0002,0000"))
        #expect(efibootmgr.output.contains("Boot0002* EFI Internal Shell"))
        #expect(efibootmgr.output.contains(" 07 00"))  // od of Timeout-…: attributes 7, 7 seconds

        let bootorder = step("bootorder", in: console)
        #expect(bootorder.rc == 0, "\(bootorder.output)")
        #expect(bootorder.output.contains("BootOrder: 0002,0001,0000"))
        #expect(bootorder.output.contains("KvmPersist: persisted"))
    }

    /// What bootorder wrote, in the host store after serve-svsm has gone.
    static func expectStore(_ s: Session) {
        #expect(s.storeBootOrder?.status == 0 && s.storeBootOrder?.out.trimmingCharacters(in: .whitespacesAndNewlines) == "020001000000",
                "BootOrder in the store: \(s.storeBootOrder?.out ?? "no store") \(s.storeBootOrder?.err ?? "")")
        #expect(s.storePersist?.status == 0 && s.storePersist?.out == "persisted", "\(s.storePersist?.out ?? "no store") \(s.storePersist?.err ?? "")")
    }

    @Test("kernel/build.sh is warning-free with W=1")
    func kernelBuild() throws {
        let b = try Self.build.get()
        #expect(b.status == 0, "kernel/build.sh failed:\n\(b.out)")
        #expect(b.out.contains("no warnings"), "kernel/build.sh:\n\(b.out)")
    }

    @Test("edk2: two boots; the efivarfs selftests, efivar, efibootmgr; BootOrder and a new variable survive a reboot with a restarted host")
    func bootAndReboot() throws {
        let s = try Self.edk2.get()
        try Self.expectSession(s, boots: 2, properties: true, store: "edk2 store \(s.store)")
        let (first, second) = (s.consoles[0], s.consoles[1])
        Self.expectTools(first, appended: true)

        // The second boot: a new QEMU process, a new serve-svsm on the same store.
        #expect(second.contains("KVM-BOOT step=6"))
        let persisted = Self.step("persisted", in: second)
        #expect(persisted.rc == 0, "\(persisted.output)")
        #expect(persisted.output.contains("BootOrder: 0002,0001,0000"))
        #expect(persisted.output.contains("Timeout: 7 seconds"))
        #expect(persisted.output.contains("KvmPersist: persisted"))
        Self.expectStore(s)
        // Its duration is reported, not asserted: kernel-vm.sh bounds each boot (--timeout).
        print("KernelModuleTests: the session took \(Int(s.seconds)) s")
    }

    @Test("qemu: the selftests, efivar, efibootmgr; no variable properties, and APPEND_WRITE refused outside the Secure Boot databases")
    func qemuProfile() throws {
        let s = try Self.qemu.get()
        try Self.expectSession(s, boots: 1, properties: false, store: "qemu store \(s.store)")
        Self.expectTools(s.consoles[0], appended: false)
        Self.expectStore(s)
        // Its duration is reported, not asserted: kernel-vm.sh bounds each boot (--timeout).
        print("KernelModuleTests: the session took \(Int(s.seconds)) s")
    }

    @Test("coconut: the selftests, efivar, efibootmgr; no variable properties, APPEND_WRITE refused; a reboot with a restarted serve-svsm finds OVMF's defaults again")
    func coconutProfile() throws {
        let s = try Self.coconut.get()
        try Self.expectSession(s, boots: 2, properties: false, store: "coconut store in memory")
        Self.expectTools(s.consoles[0], appended: false)
        #expect(s.hostLog.components(separatedBy: "COCONUT keeps no variables across SVSM starts: the store starts empty").count == 3, "\(s.hostLog)")

        // The second boot: a new serve-svsm, whose store holds only what OVMF writes.
        #expect(s.consoles[1].contains("KVM-BOOT step=5"))
        let forgotten = Self.step("forgotten", in: s.consoles[1])
        #expect(forgotten.rc == 0, "\(forgotten.output)")
        #expect(forgotten.output.contains("BootOrder: 0001,0002,0000"))
        #expect(forgotten.output.contains("Timeout: 0 seconds"))
        #expect(forgotten.output.contains("KvmPersist: absent"))
        // Its duration is reported, not asserted: kernel-vm.sh bounds each boot (--timeout).
        print("KernelModuleTests: the session took \(Int(s.seconds)) s")
    }

    @Test("byte for byte: the C module's MM requests for mm-ops.sh are the Swift driver's, but for the differences kernel/README.md lists")
    func byteForByte() throws {
        let s = try Self.edk2.get()
        try #require(s.vm.status == 0, "the VM session failed (see the other test)")
        let vmOps = Self.step("mm-ops", in: s.consoles.first ?? "")
        try #require(vmOps.rc == 0, "mm-ops in the VM:\n\(vmOps.output)")

        // The same script through the Swift driver: a FUSE mount of a fresh store.
        let logDir = Bridge.makeTempDir()
        defer { try? FileManager.default.removeItem(atPath: logDir) }
        let swiftLog = logDir + "/requests.log"
        var swiftOps = Shell.Result(status: -1, out: "", err: "")
        try Bridge.withMount("--log-requests '\(swiftLog)'") { dir in
            swiftOps = Shell.run("bash '\(Self.selftests)/mm-ops.sh' '\(dir)'")
        }
        try #require(swiftOps.status == 0, "mm-ops on the mount: \(swiftOps.out)\n\(swiftOps.err)")

        // What the tools printed: the same, but for statfs (statfs-query).
        let statfs = { (line: Substring) in line.hasPrefix("blocks ") }
        let vmLines = vmOps.output.split(separator: "\n"), swiftLines = swiftOps.out.split(separator: "\n")
        #expect(vmLines.filter { !statfs($0) } == swiftLines.filter { !statfs($0) }, "VM:\n\(vmOps.output)\nmount:\n\(swiftOps.out)")
        #expect(vmLines.contains("blocks 0 free 0"))
        #expect(swiftLines.contains { statfs($0) && $0 != "blocks 0 free 0" })

        let cRequests = try MmRequestLog.parse(s.requests)
        let swiftRequests = try MmRequestLog.parse((try String(contentsOfFile: swiftLog, encoding: .utf8)).split(separator: "\n").map(String.init))
        let report = try MmRequestComparison(c: cRequests, swift: swiftRequests)
        #expect(report.unexplained.isEmpty, "differences kernel/README.md does not list:\n\(report.text)")
        let unused = MmRequestComparison.Difference.allCases.filter { !report.seen.contains($0) }
        #expect(unused.isEmpty, "kernel/README.md lists differences that did not occur (update the table): \(unused)\n\(report.text)")
        let readme = try String(contentsOfFile: Self.repo + "/kernel/README.md", encoding: .utf8)
        for d in MmRequestComparison.Difference.allCases {
            let listed = readme.contains("| `\(d.rawValue)` |")
            #expect(listed, "kernel/README.md has no table row for `\(d.rawValue)`")
        }
        if ProcessInfo.processInfo.environment["EFIVARFS_SHOW_COMPARISON"] != nil { print(report.text) }
        #expect(report.matched > 60, "only \(report.matched) requests compared:\n\(report.text)")
    }
}

/// One UEFI MM request as `--log-requests` wrote it: EFI_MM_COMMUNICATE header + message.
struct MmRequest: Equatable, CustomStringConvertible {
    var bytes: [UInt8]

    var messageLength: UInt64 { bytes.loadLE(UInt64.self, at: 16) }
    var message: [UInt8] { Array(bytes[24...]) }
    var function: UInt64 { bytes.count >= 32 ? bytes.loadLE(UInt64.self, at: 24) : 0 }
    var returnStatus: UInt64 { bytes.count >= 40 ? bytes.loadLE(UInt64.self, at: 32) : 0 }
    var payload: [UInt8] { bytes.count > 40 ? Array(bytes[40...]) : [] }

    static let getVariable: UInt64 = 1, getNext: UInt64 = 2, setVariable: UInt64 = 3, queryInfo: UInt64 = 4
    static let varCheckGet: UInt64 = 10, getPayloadSize: UInt64 = 11

    func u64(_ offset: Int) -> UInt64? { payload.count >= offset + 8 ? payload.loadLE(UInt64.self, at: offset) : nil }
    func u32(_ offset: Int) -> UInt32? { payload.count >= offset + 4 ? payload.loadLE(UInt32.self, at: offset) : nil }

    /// The variable name the request names (GET/SET_VARIABLE, VAR_CHECK, GET_NEXT's previous).
    var variableName: String? {
        let (offset, sizeAt): (Int, Int)
        switch function {
        case Self.getVariable, Self.setVariable: (offset, sizeAt) = (36, 24)
        case Self.varCheckGet: (offset, sizeAt) = (48, 16)
        case Self.getNext: (offset, sizeAt) = (24, 16)
        default: return nil
        }
        guard let size = u64(sizeAt), payload.count >= offset else { return nil }
        let bytes = payload[offset..<min(payload.count, offset + Int(min(size, 4096)))]
        var units: [UInt16] = []
        var i = bytes.startIndex
        while i + 1 < bytes.endIndex {
            let u = UInt16(bytes[i]) | UInt16(bytes[i + 1]) << 8
            if u == 0 { break }
            units.append(u)
            i += 2
        }
        return String(decoding: units, as: UTF16.self)
    }

    var description: String {
        let names = [1: "GET_VARIABLE", 2: "GET_NEXT_VARIABLE_NAME", 3: "SET_VARIABLE", 4: "QUERY_VARIABLE_INFO",
                     10: "VAR_CHECK_VARIABLE_PROPERTY_GET", 11: "GET_PAYLOAD_SIZE"]
        var s = "\(names[Int(function)] ?? "function \(function)") MessageLength=\(messageLength)"
        if returnStatus != 0 { s += " ReturnStatus=0x\(String(returnStatus, radix: 16))" }
        if let n = variableName { s += " '\(n)'" }
        switch function {
        case Self.getVariable, Self.setVariable:
            s += " DataSize=\(u64(16) ?? 0) NameSize=\(u64(24) ?? 0) Attributes=0x\(String(u32(32) ?? 0, radix: 16))"
        case Self.getNext: s += " NameSize=\(u64(16) ?? 0)"
        case Self.queryInfo: s += " Attributes=0x\(String(u32(24) ?? 0, radix: 16))"
        default: break
        }
        return s
    }
}

enum MmRequestLog {
    struct BadLine: Error, CustomStringConvertible {
        let line: Int, reason: String
        var description: String { "request log line \(line + 1): \(reason)" }
    }

    static func parse(_ lines: [String]) throws -> [MmRequest] {
        try lines.enumerated().map { i, line in
            guard let bytes = Hex.decode(line.trimmingCharacters(in: .whitespaces)) else { throw BadLine(line: i, reason: "not hex") }
            let r = MmRequest(bytes: bytes)
            guard bytes.count >= 24, UInt64(bytes.count - 24) == r.messageLength else {
                throw BadLine(line: i, reason: "\(bytes.count) bytes for MessageLength \(bytes.count >= 24 ? r.messageLength : 0)")
            }
            return r
        }
    }
}

/// The comparison of the two drivers' requests for the same operations, from the probe to
/// mm-ops.sh's end marker: each difference must be one that kernel/README.md's table lists
/// (the cases of `Difference`, its rows).
struct MmRequestComparison {
    enum Difference: String, CaseIterable, Sendable {
        /// The module presets ReturnStatus to EFI_DEVICE_ERROR; the Swift driver leaves 0.
        case returnStatus = "return-status"
        /// GET/SET_VARIABLE: the module's access header is sizeof (40, tee_stmm_efi), the
        /// Swift driver's OFFSET_OF(Name) (36, edk2): 4 more zero bytes at the end.
        case accessPadding = "access-padding"
        /// The load-time VAR_CHECK_VARIABLE_PROPERTY_GET probe names a different variable.
        case probeName = "probe-name"
        /// The mount-time walk: Linux asks each size as it walks, the model after the walk.
        case walkOrder = "walk-order"
        /// statfs: QueryVariableInfo from the Swift model; none from 6.12 under efi=noruntime.
        case statfsQuery = "statfs-query"
    }

    var matched = 0
    var seen: Set<Difference> = []
    var unexplained: [String] = []
    var lines: [String] = []
    var text: String { lines.joined(separator: "\n") }

    static let deviceError: UInt64 = 0x8000_0000_0000_0007
    static let endMarker = "ByteCmpEnd"

    init(c cAll: [MmRequest], swift swiftAll: [MmRequest]) throws {
        // From the first request to mm-ops.sh's end marker.
        func untilEnd(_ r: [MmRequest], _ who: String) throws -> [MmRequest] {
            guard let end = r.firstIndex(where: { $0.variableName == Self.endMarker }) else {
                throw BadLog(reason: "no request for \(Self.endMarker) in the \(who) log (\(r.count) requests)")
            }
            return Array(r[..<end])
        }
        var c = try untilEnd(cAll, "C module's"), s = try untilEnd(swiftAll, "Swift driver's")

        // return-status
        for i in c.indices where c[i].returnStatus == Self.deviceError && c[i].bytes.count >= 40 {
            c[i].bytes.replaceSubrange(32..<40, with: [UInt8](repeating: 0, count: 8))
            seen.insert(.returnStatus)
        }
        // access-padding
        for i in c.indices where c[i].function == MmRequest.getVariable || c[i].function == MmRequest.setVariable {
            guard let dataSize = c[i].u64(16), let nameSize = c[i].u64(24), dataSize < 1 << 20, nameSize < 1 << 20 else { continue }
            let swiftLength = 16 + 36 + nameSize + dataSize
            if c[i].messageLength == swiftLength + 4, c[i].bytes.suffix(4) == [0, 0, 0, 0] {
                c[i].bytes.removeLast(4)
                c[i].bytes.storeLE(swiftLength, at: 16)
                seen.insert(.accessPadding)
            }
        }
        // probe-name: the VAR_CHECK probe, before the mount's walk.
        func dropProbe(_ r: inout [MmRequest]) -> MmRequest? {
            let walk = r.firstIndex { $0.function == MmRequest.getNext } ?? r.endIndex
            guard let i = r[..<walk].firstIndex(where: { $0.function == MmRequest.varCheckGet }) else { return nil }
            return r.remove(at: i)
        }
        let (cProbe, sProbe) = (dropProbe(&c), dropProbe(&s))
        if let cp = cProbe, let sp = sProbe {
            if cp != sp { seen.insert(.probeName) }
            lines.append("probe: C \(cp) / Swift \(sp)")
        } else {
            unexplained.append("a VAR_CHECK probe in one log only: C \(cProbe.map(String.init(describing:)) ?? "none"), Swift \(sProbe.map(String.init(describing:)) ?? "none")")
        }
        // walk-order: the run of GET_NEXT/GET_VARIABLE from the first GET_NEXT, names first.
        func walkFirst(_ r: inout [MmRequest]) {
            guard let start = r.firstIndex(where: { $0.function == MmRequest.getNext }) else { return }
            let end = r[start...].firstIndex { $0.function != MmRequest.getNext && $0.function != MmRequest.getVariable } ?? r.endIndex
            let run = r[start..<end]
            r.replaceSubrange(start..<end, with: run.filter { $0.function == MmRequest.getNext } + run.filter { $0.function != MmRequest.getNext })
        }
        let (cBefore, sBefore) = (c, s)
        walkFirst(&c); walkFirst(&s)
        if c != cBefore || s != sBefore { seen.insert(.walkOrder) }

        // The rest in order: a longest common subsequence, and what is left on each side.
        let n = c.count, m = s.count
        var lcs = [[Int]](repeating: [Int](repeating: 0, count: m + 1), count: n + 1)
        for i in stride(from: n - 1, through: 0, by: -1) {
            for j in stride(from: m - 1, through: 0, by: -1) {
                lcs[i][j] = c[i] == s[j] ? lcs[i + 1][j + 1] + 1 : max(lcs[i + 1][j], lcs[i][j + 1])
            }
        }
        var i = 0, j = 0
        var statfsQueries = 0
        while i < n || j < m {
            if i < n, j < m, c[i] == s[j] {
                lines.append("  = \(c[i])")
                matched += 1; i += 1; j += 1
            } else if j < m, i == n || lcs[i][j + 1] >= lcs[i + 1][j] {
                if s[j].function == MmRequest.queryInfo, s[j].u32(24) == 7, statfsQueries == 0 {
                    statfsQueries += 1
                    seen.insert(.statfsQuery)
                    lines.append("  + Swift only (statfs-query): \(s[j])")
                } else {
                    unexplained.append("Swift only: \(s[j])")
                    lines.append("  + Swift only: \(s[j])")
                }
                j += 1
            } else {
                unexplained.append("C only: \(c[i])")
                lines.append("  - C only: \(c[i])")
                i += 1
            }
        }
    }

    struct BadLog: Error, CustomStringConvertible {
        let reason: String
        var description: String { reason }
    }
}
