import CShmAtomics
import Foundation
import SvsmEfiVars
import Testing
import TestSupport

/// `efivarfs-bridge serve-svsm` as a process, with this test as the guest (no QEMU): the
/// command creates and sizes the file, attaches, answers doorbells, writes --trace and
/// --log-requests, releases its store on SIGTERM; --fault no-answer never answers.
@Suite("serve-svsm, the command", .serialized)
struct ServeSvsmTests {
    static let gpa: UInt64 = 0xE0_0000_0000
    static let magic: UInt64 = 0x314D_4853_4D53_5653

    /// The guest's view of the file.
    final class Guest {
        let base: UnsafeMutableRawPointer
        let size: Int
        init(path: String) throws {
            let fd = open(path, O_RDWR)
            guard fd >= 0 else { throw POSIXError(.ENOENT) }
            defer { close(fd) }
            var st = stat()
            fstat(fd, &st)
            size = Int(st.st_size)
            let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
            guard let p, p != MAP_FAILED else { throw POSIXError(.ENOMEM) }
            base = p
        }
        deinit { munmap(base, size) }

        func put<T: FixedWidthInteger>(_ offset: Int, _ v: T) { (base + offset).storeBytes(of: v.littleEndian, as: T.self) }
        func get<T: FixedWidthInteger>(_ offset: Int, as: T.Type = T.self) -> T { T(littleEndian: (base + offset).load(as: T.self)) }

        /// SHM-TRANSPORT.md §3, guest side; true once the host has served the generation.
        func attach(vcpus: UInt32, generation: UInt32, timeout: TimeInterval = 10) -> Bool {
            put(0x00, ServeSvsmTests.magic); put(0x08, UInt32(1)); put(0x0C, vcpus)
            put(0x10, ServeSvsmTests.gpa); put(0x18, UInt64(size))
            cshm_store_release_u32(base + 0x20, generation)
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline {
                if cshm_load_acquire_u32(base + 0x24) == generation { return true }
                usleep(1000)
            }
            return false
        }

        /// §5.1 on vCPU `i`; nil when no answer came within `timeout`.
        func call(vcpu i: Int, rax: UInt64, rcx: UInt64 = 0, rdx: UInt64 = 0, timeout: TimeInterval = 5) -> (rax: UInt64, rcx: UInt64)? {
            let regs = (1 + 2 * i) * 4096, caa = (2 + 2 * i) * 4096
            put(regs + 0x1F8, rax); put(regs + 0x308, rcx); put(regs + 0x310, rdx); put(regs + 0x340, UInt64(0)); put(regs + 0x348, UInt64(0))
            put(caa, UInt8(1))
            cshm_store_release_u64(base + regs + 0xFF0, 0x16)
            let deadline = Date().addingTimeInterval(timeout)
            while cshm_load_acquire_u64(base + regs + 0xFF0) != 0x17 {
                if Date() > deadline { return nil }
                usleep(50)
            }
            return (get(regs + 0x1F8), get(regs + 0x308))
        }

        /// A UEFI MM request in vCPU 0's buffer (window offset 1 MiB; `bufferSize` is RDX):
        /// the reply's ReturnStatus and the first `payload.count` bytes of its payload, nil
        /// when the SVSM call failed or was not answered.
        func mm(_ function: SmmVariableFunction, _ payload: [UInt8], bufferSize: UInt64 = 0x1_0000) -> (status: UInt64, payload: [UInt8])? {
            let at = 0x10_0000
            let request = MmCommunicateHeader.encode(headerGuid: .smmVariableProtocol, message: SmmVariableHeader.message(function, payload: payload))
            request.withUnsafeBytes { (base + at).copyMemory(from: $0.baseAddress!, byteCount: request.count) }
            guard call(vcpu: 0, rax: 4 << 32 | 1, rcx: ServeSvsmTests.gpa + UInt64(at), rdx: bufferSize)?.rax == 0 else { return nil }
            return (get(at + 24 + 8), (0..<payload.count).map { get(at + 40 + $0) })
        }
    }

    static func start(_ arguments: [String]) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Bridge.binary)
        p.arguments = ["serve-svsm"] + arguments
        p.standardError = FileHandle.nullDevice
        try p.run()
        return p
    }

    static func waitForFile(_ path: String, size: Int) -> Bool {
        for _ in 0..<200 {
            if let a = try? FileManager.default.attributesOfItem(atPath: path), (a[.size] as? Int) == size { return true }
            usleep(50_000)
        }
        return false
    }

    static func stop(_ p: Process) {
        if p.isRunning { p.terminate() }
        p.waitUntilExit()
    }

    @Test("a new file is sized to 16 MiB; the guest attaches, calls QUERY_PROTOCOL and GET_PAYLOAD_SIZE; --trace and --log-requests; SIGTERM releases the store")
    func serves() throws {
        try requirePrerequisites(.root)
        let dir = Bridge.makeTempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let shm = "/dev/shm/efivarfs-bridge-serve-test-\(getpid())"
        defer { unlink(shm) }
        let store = dir + "/new-store"  // does not exist: serve-svsm may create it, as mount does
        let p = try Self.start(["--shm", shm, "--store", store, "--trace", dir + "/trace.jsonl", "--log-requests", dir + "/requests.log"])
        defer { Self.stop(p) }
        try #require(Self.waitForFile(shm, size: 16 << 20), "serve-svsm did not create the 16 MiB file")
        let guest = try Guest(path: shm)
        try #require(guest.attach(vcpus: 2, generation: 1), "no host_generation")

        let q = try #require(guest.call(vcpu: 1, rax: 6, rcx: 4 << 32 | 1))
        #expect(q.rax == 0 && q.rcx == 0x0000_0001_0000_0001)
        // GET_PAYLOAD_SIZE in vCPU 0's buffer (0x100000).
        let message = SmmVariableHeader.message(.getPayloadSize, payload: [UInt8](repeating: 0, count: 8))
        let request = MmCommunicateHeader.encode(headerGuid: .smmVariableProtocol, message: message)
        request.withUnsafeBytes { (guest.base + 0x10_0000).copyMemory(from: $0.baseAddress!, byteCount: request.count) }
        let mm = try #require(guest.call(vcpu: 0, rax: 4 << 32 | 1, rcx: Self.gpa + 0x10_0000, rdx: 0x1_0000))
        #expect(mm.rax == 0)
        #expect(guest.get(0x10_0000 + 24 + 8, as: UInt64.self) == 0 && guest.get(0x10_0000 + 24 + 16, as: UInt64.self) == 65496)
        // A hostile one: the header page as a buffer.
        #expect(guest.call(vcpu: 0, rax: 4 << 32 | 1, rcx: Self.gpa, rdx: 0x1000)?.rax == 0x8000_0003)

        p.terminate()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        let log = try String(contentsOfFile: dir + "/requests.log", encoding: .utf8)
        #expect(log == Hex.encode(request) + "\n")
        let trace = try String(contentsOfFile: dir + "/trace.jsonl", encoding: .utf8).split(separator: "\n")
        try #require(trace.count == 3, "\(trace)")
        #expect(trace[0].contains("\"vcpu\":1") && trace[0].contains("\"call\":\"SVSM_CORE_QUERY_PROTOCOL\"") && trace[0].contains("\"result\":\"SVSM_SUCCESS\""))
        #expect(trace[1].contains("\"call\":\"SVSM_UEFI_MM_REQUEST\"") && trace[1].contains("\"mm_function\":\"GET_PAYLOAD_SIZE\"")
                && trace[1].contains("\"efi_status\":\"EFI_SUCCESS\"") && trace[1].contains("\"caa\":\"0xe000002000\""))
        #expect(trace[2].contains("\"result\":\"SVSM_ERR_INVALID_ADDRESS\""))
        // The store was created and released: a scripting command opens it.
        let get = Shell.run("'\(Bridge.binary)' get Timeout-global --hex --store '\(store)'")
        #expect(get.status == 0 && get.out == "0000\n", "\(get.out)\(get.err)")
    }

    /// One profile's expected answers (`{store}` in the arguments is a fresh directory).
    struct ProfileCase: Sendable, CustomTestStringConvertible {
        var arguments: [String]
        /// GET_PAYLOAD_SIZE asked through a 4 KiB buffer.
        var payloadIn4K: UInt64
        /// VAR_CHECK_VARIABLE_PROPERTY_GET for a variable without a property.
        var varCheck: UInt64
        /// Whether a variable written before a restart of serve-svsm is there after it.
        var persists: Bool
        var testDescription: String { arguments.joined(separator: " ") }
    }

    static let efiUnsupported: UInt64 = 0x8000_0000_0000_0003, efiBufferTooSmall: UInt64 = 0x8000_0000_0000_0005
    static let efiNotFound: UInt64 = 0x8000_0000_0000_000E

    @Test("--svsm reaches the store: the payload size, VAR_CHECK and persistence across a restart are the profile's",
          arguments: [
              ProfileCase(arguments: ["--store", "{store}"], payloadIn4K: 65496, varCheck: efiNotFound, persists: true),
              // QEMU's uefi-vars answers relative to the buffer and has no VAR_CHECK handler.
              ProfileCase(arguments: ["--svsm", "qemu", "--store", "{store}"], payloadIn4K: 4096 - 40, varCheck: efiUnsupported, persists: true),
              // COCONUT without its persistence feature: an in-memory store, empty at every start.
              ProfileCase(arguments: ["--svsm", "coconut"], payloadIn4K: 65496, varCheck: efiUnsupported, persists: false),
              ProfileCase(arguments: ["--svsm", "coconut", "--coconut-persistence", "--store", "{store}"], payloadIn4K: 65496, varCheck: efiUnsupported, persists: true),
          ])
    func profiles(_ c: ProfileCase) throws {
        try requirePrerequisites(.root)
        let dir = Bridge.makeTempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let shm = "/dev/shm/efivarfs-bridge-serve-test-\(getpid())-profile"
        defer { unlink(shm) }
        let arguments = ["--shm", shm] + c.arguments.map { $0 == "{store}" ? dir + "/store" : $0 }
        let guid = try #require(EfiGuid("5f1e7a3c-2b4d-4e6f-8a9b-0c1d2e3f4a5b"))
        let name = Ucs2.units("ServeSvsmProfile")

        var p = try Self.start(arguments)
        defer { Self.stop(p) }
        try #require(Self.waitForFile(shm, size: 16 << 20), "serve-svsm did not create the file")
        let guest = try Guest(path: shm)
        try #require(guest.attach(vcpus: 1, generation: 1), "no host_generation")
        let size = try #require(guest.mm(.getPayloadSize, [UInt8](repeating: 0, count: 8), bufferSize: 0x1000))
        #expect(size.status == 0 && size.payload.loadLE(UInt64.self, at: 0) == c.payloadIn4K)
        #expect(guest.mm(.varCheckVariablePropertyGet, VarCheckPropertyPayload.encode(guid: guid, name: name))?.status == c.varCheck)
        let set = AccessVariablePayload.encode(guid: guid, name: name, attributes: 7, dataSize: 2, data: Array("on".utf8))
        #expect(guest.mm(.setVariable, set)?.status == 0)

        p.terminate()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        p = try Self.start(arguments)
        try #require(guest.attach(vcpus: 1, generation: 2), "no host_generation after the restart")
        let get = try #require(guest.mm(.getVariable, AccessVariablePayload.encode(guid: guid, name: name, attributes: 0, dataSize: 0)))
        #expect(get.status == (c.persists ? Self.efiBufferTooSmall : Self.efiNotFound))
        #expect(get.payload.loadLE(UInt64.self, at: AccessVariablePayload.dataSizeOffset) == (c.persists ? 2 : 0))
    }

    @Test("a store the profile cannot have is refused before the shared-memory file is made")
    func profileRefusals() throws {
        let dir = Bridge.makeTempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let shm = "/dev/shm/efivarfs-bridge-serve-test-\(getpid())-refused"
        defer { unlink(shm) }
        let coconut = Shell.run("'\(Bridge.binary)' serve-svsm --shm '\(shm)' --svsm coconut --store '\(dir)/store'")
        #expect(coconut.status == 1 && coconut.err.contains("--svsm coconut keeps no variables across SVSM starts"), "\(coconut.err)")
        #expect(coconut.err.contains("add --coconut-persistence"))
        #expect(!FileManager.default.fileExists(atPath: dir + "/store"))
        let qemu = Shell.run("'\(Bridge.binary)' serve-svsm --shm '\(shm)' --svsm qemu --coconut-persistence --ephemeral")
        #expect(qemu.status == 1 && qemu.err.contains("apply to --svsm coconut only"), "\(qemu.err)")
        #expect(!FileManager.default.fileExists(atPath: shm))
    }

    @Test("--fault no-answer: attached, but no doorbell is answered")
    func noAnswer() throws {
        try requirePrerequisites(.root)
        let shm = "/dev/shm/efivarfs-bridge-serve-test-\(getpid())-quiet"
        defer { unlink(shm) }
        let p = try Self.start(["--shm", shm, "--ephemeral", "--fault", "no-answer"])
        defer { Self.stop(p) }
        try #require(Self.waitForFile(shm, size: 16 << 20))
        let guest = try Guest(path: shm)
        try #require(guest.attach(vcpus: 1, generation: 7))
        #expect(guest.call(vcpu: 0, rax: 6, rcx: 4 << 32 | 1, timeout: 0.5) == nil)
    }

    @Test("a file that cannot be a window is refused with a message")
    func badFile() throws {
        let dir = Bridge.makeTempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let small = dir + "/small"
        try #require(FileManager.default.createFile(atPath: small, contents: Data(count: 4096)))
        let r = Shell.run("'\(Bridge.binary)' serve-svsm --shm '\(small)' --ephemeral")
        #expect(r.status == 1 && r.err.contains("a shared window is a whole number of 4 KiB pages, at least 2097152 bytes"), "\(r.err)")
        let both = Shell.run("'\(Bridge.binary)' serve-svsm --shm '\(small)' --ephemeral --store '\(dir)'")
        #expect(both.status == 64 && both.err.contains("name one store"))
    }
}
