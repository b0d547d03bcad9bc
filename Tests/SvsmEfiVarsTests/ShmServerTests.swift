import CShmAtomics
import Foundation
import Testing
@testable import EfiTypes
@testable import Hardware
@testable import MmWire
@testable import Platform
@testable import Svsm
@testable import SvsmAbi
@testable import SvsmShmHost
@testable import VariableService

/// serve-svsm's host side against a hostile guest, driven through the doorbell protocol of
/// kernel/SHM-TRANSPORT.md from the test (no QEMU): a file in /dev/shm, mapped once by the
/// server (`SharedWindow`, with guard pages on both sides) and once by this "guest".
/// Whatever the guest writes, the server answers with the SVSM's result codes, changes only
/// what the contract lets it change, and never reaches outside the window.
@Suite("serve-svsm shared window")
struct ShmServerTests {
    static let gpa: UInt64 = 0x8000_0000
    /// The smallest window the host takes: the tests compare all of it after every call.
    static let size = ShmLayout.minimumWindowSize
    static let buffers: UInt64 = ShmLayout.buffersOffset

    /// The guest's side of the window, and the server under test.
    final class Rig {
        let path: String
        let guest: UnsafeMutableRawPointer
        let size: Int
        let server: ShmSvsmServer
        let service: any MmService
        let requests = Locked<[[UInt8]]>([])
        let events = Locked<[ShmSvsmServer.Event]>([])
        var generation: UInt32 = 0

        init(size: Int = ShmServerTests.size, faults: ShmSvsmServer.Faults = ShmSvsmServer.Faults(), service: (any MmService)? = nil) throws {
            path = "/dev/shm/efivarfs-bridge-shm-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            let fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0o600)
            precondition(fd >= 0)
            precondition(ftruncate(fd, off_t(size)) == 0)
            let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
            close(fd)
            precondition(p != MAP_FAILED)
            guest = p!
            self.size = size
            self.service = service ?? VariableService(store: VariableStore())
            let window = try SharedWindow(path: path)
            let requests = self.requests, events = self.events
            server = ShmSvsmServer(window: window, mmService: self.service, faults: faults,
                                   mmRequestObserver: { _, bytes in requests.withLock { $0.append(bytes) } },
                                   events: { e in events.withLock { $0.append(e) } })
        }

        deinit {
            munmap(guest, size)
            unlink(path)
        }

        func u64(_ offset: UInt64) -> UInt64 { (guest + Int(offset)).load(as: UInt64.self) }
        func u32(_ offset: UInt64) -> UInt32 { (guest + Int(offset)).load(as: UInt32.self) }
        func u8(_ offset: UInt64) -> UInt8 { (guest + Int(offset)).load(as: UInt8.self) }
        func set(_ offset: UInt64, _ v: UInt64) { (guest + Int(offset)).storeBytes(of: v, as: UInt64.self) }
        func set(_ offset: UInt64, _ v: UInt32) { (guest + Int(offset)).storeBytes(of: v, as: UInt32.self) }
        func set(_ offset: UInt64, _ v: UInt8) { (guest + Int(offset)).storeBytes(of: v, as: UInt8.self) }
        func write(_ offset: UInt64, _ bytes: [UInt8]) {
            bytes.withUnsafeBytes { (guest + Int(offset)).copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        }
        func read(_ offset: UInt64, _ count: Int) -> [UInt8] { [UInt8](UnsafeRawBufferPointer(start: guest + Int(offset), count: count)) }
        func snapshot() -> [UInt8] { read(0, size) }

        /// §3, guest side, with any header values.
        func attach(vcpus: UInt32 = 2, gpa: UInt64 = ShmServerTests.gpa, windowSize: UInt64? = nil,
                    magic: UInt64 = ShmLayout.magic, version: UInt32 = 1) {
            generation = max(generation, u32(0x24)) &+ 1
            if generation == 0 { generation = 1 }
            for i in 0..<min(vcpus, ShmLayout.maxVcpus) {
                memset(guest + Int(ShmLayout.registerPage(i)), 0, 4096)
                memset(guest + Int(ShmLayout.caaPage(i)), 0, 4096)
            }
            set(0x00, magic); set(0x08, version); set(0x0C, vcpus)
            set(0x10, gpa); set(0x18, windowSize ?? UInt64(size))
            set(0x20, generation)
        }

        var attached: Bool { u32(0x24) == generation }

        struct Answer: Equatable {
            var doorbell: UInt64
            var rax: UInt64, rcx: UInt64, rdx: UInt64, r8: UInt64, r9: UInt64
            var callPending: UInt8
            var result: SvsmResultCode { SvsmResultCode(rawValue: UInt32(truncatingIfNeeded: rax)) }
        }

        /// §5.1 steps 2-4 on `vcpu` with any values, one server pass, what the guest sees.
        @discardableResult
        func call(vcpu: UInt32 = 0, rax: UInt64, rcx: UInt64 = 0, rdx: UInt64 = 0, r8: UInt64 = 0, r9: UInt64 = 0x9999,
                  callPending: UInt8 = 1, doorbell: UInt64 = ShmLayout.doorbellRequest) -> Answer {
            let regs = ShmLayout.registerPage(vcpu)
            set(regs + VmsaLayout.rax, rax); set(regs + VmsaLayout.rcx, rcx); set(regs + VmsaLayout.rdx, rdx)
            set(regs + VmsaLayout.r8, r8); set(regs + VmsaLayout.r9, r9)
            set(ShmLayout.caaPage(vcpu), callPending)
            set(regs + ShmLayout.doorbellOffset, doorbell)
            server.pollOnce()
            return answer(vcpu)
        }

        func answer(_ vcpu: UInt32) -> Answer {
            let regs = ShmLayout.registerPage(vcpu)
            return Answer(doorbell: u64(regs + ShmLayout.doorbellOffset), rax: u64(regs + VmsaLayout.rax), rcx: u64(regs + VmsaLayout.rcx),
                          rdx: u64(regs + VmsaLayout.rdx), r8: u64(regs + VmsaLayout.r8), r9: u64(regs + VmsaLayout.r9),
                          callPending: u8(ShmLayout.caaPage(vcpu)))
        }

        /// An MM request in the window at `offset` (header + message), then the call.
        func mmRequest(vcpu: UInt32 = 0, at offset: UInt64, message: [UInt8], guid: EfiGuid = .smmVariableProtocol,
                       messageLength: UInt64? = nil, rdx: UInt64 = 0x10000) -> Answer {
            var bytes = MmCommunicateHeader.encode(headerGuid: guid, message: message)
            if let l = messageLength { bytes.storeLE(l, at: 16) }
            write(offset, bytes)
            return call(vcpu: vcpu, rax: SvsmCallId.uefiMmRequest.rax, rcx: gpaOf(offset), rdx: rdx, r8: 0x88)
        }

        func gpaOf(_ offset: UInt64) -> UInt64 { u64(0x10) &+ offset }
    }

    static let getPayloadSize = SmmVariableHeader.message(.getPayloadSize, payload: [UInt8](repeating: 0, count: 8))

    /// The bytes a call on `vcpu` may change: its register page, its CAA's first 8 bytes,
    /// plus `extra` ranges (a request's message).
    static func expectOnlyChanged(_ before: [UInt8], _ after: [UInt8], vcpu: UInt32, extra: [Range<Int>] = [],
                                  sourceLocation: SourceLocation = #_sourceLocation) {
        let regs = Int(ShmLayout.registerPage(vcpu)), caa = Int(ShmLayout.caaPage(vcpu))
        let allowed = [regs..<regs + 4096, caa..<caa + 8] + extra
        var a = before, b = after
        for r in allowed where r.lowerBound >= 0 && r.upperBound <= a.count {
            a.replaceSubrange(r, with: repeatElement(0, count: r.count))
            b.replaceSubrange(r, with: repeatElement(0, count: r.count))
        }
        let same = a.count == b.count && a.withUnsafeBytes { x in b.withUnsafeBytes { y in memcmp(x.baseAddress!, y.baseAddress!, x.count) == 0 } }
        if same { return }
        var stray: [Int] = []
        for i in 0..<before.count where before[i] != after[i] && !allowed.contains(where: { $0.contains(i) }) {
            stray.append(i)
            if stray.count > 8 { break }
        }
        #expect(stray.isEmpty, "bytes changed outside the call's pages: offsets \(stray.map { "0x" + String($0, radix: 16) })",
                sourceLocation: sourceLocation)
    }

    // MARK: attaching

    @Test("a sound header is served: host_generation, QUERY_PROTOCOL, a GET_PAYLOAD_SIZE round trip, the request observed")
    func attachAndServe() throws {
        let rig = try Rig()
        // A new, zeroed file: no guest yet, nothing to refuse.
        #expect(rig.server.pollOnce() == 0 && rig.events.withLock { $0.isEmpty } && rig.u32(0x24) == 0)
        rig.attach(vcpus: 3)
        #expect(rig.server.pollOnce() == 1)
        #expect(rig.attached)
        #expect(rig.server.svsm?.bindings.count == 3)

        let q = rig.call(vcpu: 2, rax: SvsmCallId.coreQueryProtocol.rax, rcx: 4 << 32 | 1, rdx: 0x1234, r8: 0x5678)
        #expect(q == Rig.Answer(doorbell: 0x17, rax: 0, rcx: 0x0000_0001_0000_0001, rdx: 0x1234, r8: 0x5678, r9: 0x9999, callPending: 0))
        #expect(rig.call(vcpu: 1, rax: SvsmCallId.coreQueryProtocol.rax, rcx: 5 << 32 | 1).rcx == 0)

        let offset = Self.buffers + 0x10000
        rig.write(offset, MmCommunicateHeader.encode(headerGuid: .smmVariableProtocol, message: Self.getPayloadSize))
        let before = rig.snapshot()
        let a = rig.call(vcpu: 1, rax: SvsmCallId.uefiMmRequest.rax, rcx: rig.gpaOf(offset), rdx: 0x10000, r8: 0x88)
        #expect(a.doorbell == 0x17 && a.result == .success && a.rcx == Self.gpa + offset && a.rdx == 0x10000 && a.r8 == 0x88)
        let reply = rig.read(offset + 24, 24)
        #expect(EfiStatus(rawValue: reply.loadLE(UInt64.self, at: 8)) == .success)
        #expect(reply.loadLE(UInt64.self, at: 16) == 65496)
        Self.expectOnlyChanged(before, rig.snapshot(), vcpu: 1, extra: [Int(offset) + 24..<Int(offset) + 48])
        #expect(rig.requests.withLock { $0 } == [MmCommunicateHeader.encode(headerGuid: .smmVariableProtocol, message: Self.getPayloadSize)])
    }

    enum BadHeader: String, CaseIterable, Sendable {
        case badMagic, version2, vcpus0, vcpus128, vcpus1000, vcpusMax, unalignedGpa, wrappingWindow, sizeLargerThanFile, sizeSmallerThanFile
        func attach(_ r: Rig) {
            switch self {
            case .badMagic: r.attach(magic: 0x1234)
            case .version2: r.attach(version: 2)
            case .vcpus0: r.attach(vcpus: 0)
            case .vcpus128: r.attach(vcpus: 128)
            case .vcpus1000: r.attach(vcpus: 1000)
            case .vcpusMax: r.attach(vcpus: 0xFFFF_FFFF)
            case .unalignedGpa: r.attach(gpa: ShmServerTests.gpa + 0x800)
            case .wrappingWindow: r.attach(gpa: 0xFFFF_FFFF_FFF0_0000)
            case .sizeLargerThanFile: r.attach(windowSize: UInt64(ShmServerTests.size) * 2)
            case .sizeSmallerThanFile: r.attach(windowSize: UInt64(ShmServerTests.size) / 2)
            }
        }
    }

    @Test("headers that must not be served: nothing written, no doorbell answered; the next sound generation is served",
          arguments: BadHeader.allCases)
    func refusedHeaders(_ bad: BadHeader) throws {
        let name = bad.rawValue
        let rig = try Rig()
        bad.attach(rig)
        let before = rig.snapshot()
        rig.set(ShmLayout.caaPage(0), UInt8(1))
        rig.set(ShmLayout.registerPage(0) + ShmLayout.doorbellOffset, ShmLayout.doorbellRequest)
        var expected = before
        expected[Int(ShmLayout.caaPage(0))] = 1
        expected.storeLE(ShmLayout.doorbellRequest, at: Int(ShmLayout.registerPage(0) + ShmLayout.doorbellOffset))
        for _ in 0..<3 { rig.server.pollOnce() }
        #expect(!rig.attached, "\(name)")
        let unchanged = rig.snapshot() == expected
        #expect(unchanged, "\(name): the window changed")
        #expect(rig.events.withLock { $0 }.contains { if case .refused = $0 { return true }; return false })
        rig.attach(vcpus: 1)
        rig.server.pollOnce()
        #expect(rig.attached)
        #expect(rig.call(rax: SvsmCallId.coreQueryProtocol.rax, rcx: 4 << 32 | 1).rcx == 0x0000_0001_0000_0001)
    }

    @Test("the highest window that fits below 2^64 is served; addresses that wrap are refused")
    func windowAtTheTop() throws {
        let rig = try Rig()
        let top = UInt64.max - UInt64(Self.size) + 1  // window_gpa + size == 2^64 would wrap: one page less
        rig.attach(vcpus: 1, gpa: top - 4096)
        rig.server.pollOnce()
        #expect(rig.attached)
        let last = UInt64(Self.size) - 4096
        #expect(rig.mmRequest(at: last, message: Self.getPayloadSize, rdx: 4096).result == .success)
        #expect(rig.call(rax: SvsmCallId.uefiMmRequest.rax, rcx: rig.gpaOf(UInt64(Self.size)), rdx: 4096).result == .invalidAddress)
        #expect(rig.call(rax: SvsmCallId.uefiMmRequest.rax, rcx: 0xFFFF_FFFF_FFFF_F000, rdx: 4096).result == .invalidAddress)
        rig.write(last, MmCommunicateHeader.encode(headerGuid: .smmVariableProtocol, message: Self.getPayloadSize))
        rig.write(last + 16, [UInt8](repeating: 0xFF, count: 8))  // MessageLength 2^64-1
        #expect(rig.call(rax: SvsmCallId.uefiMmRequest.rax, rcx: rig.gpaOf(last), rdx: 0x40000).result == .invalidParameter)
    }

    @Test("a new generation forgets the old vCPUs; the previous generation's doorbells are not served")
    func newGenerationForgets() throws {
        let rig = try Rig()
        rig.attach(vcpus: 4)
        rig.server.pollOnce()
        #expect(rig.call(vcpu: 3, rax: SvsmCallId.coreQueryProtocol.rax, rcx: 4 << 32 | 1).doorbell == 0x17)
        rig.attach(vcpus: 2)  // zeroes pages 0-1 only
        rig.server.pollOnce()
        #expect(rig.attached && rig.server.svsm?.bindings.count == 2)
        let a = rig.call(vcpu: 3, rax: SvsmCallId.coreQueryProtocol.rax, rcx: 4 << 32 | 1)
        #expect(a.doorbell == ShmLayout.doorbellRequest && a.callPending == 1 && a.rcx == 4 << 32 | 1)
    }

    // MARK: registers and doorbells

    @Test("any register values: the SVSM's result codes, RCX/RDX/R8 echoed, R9 untouched, nothing else written")
    func hostileRegisters() throws {
        let rig = try Rig()
        rig.attach(vcpus: 2)
        rig.server.pollOnce()
        let cases: [(UInt64, SvsmResultCode)] = [
            (0x0000_0000_0000_0000, .unsupportedCall),      // REMAP_CA: not offered here
            (0x0000_0000_0000_0001, .unsupportedCall),      // PVALIDATE
            (0x0000_0000_0000_0002, .unsupportedCall),      // CREATE_VCPU
            (0x0000_0000_0000_0003, .unsupportedCall),      // DELETE_VCPU
            (0x0000_0000_0000_0007, .unsupportedCall),      // CONFIGURE_VTOM
            (0x0000_0000_FFFF_FFFF, .unsupportedCall),
            (0x0000_0004_0000_0000, .unsupportedCall),
            (0x0000_0004_0000_0002, .unsupportedCall),
            (0x0000_0001_0000_0000, .unsupportedProtocol),  // attestation
            (0x0000_0002_0000_0000, .unsupportedProtocol),  // vTPM
            (0xFFFF_FFFF_FFFF_FFFF, .unsupportedProtocol),
        ]
        var random = XorShift(seed: 21)
        for (rax, expected) in cases {
            let rcx = random.next(), rdx = random.next(), r8 = random.next()
            let before = rig.snapshot()
            let a = rig.call(vcpu: 1, rax: rax, rcx: rcx, rdx: rdx, r8: r8)
            #expect(a == Rig.Answer(doorbell: 0x17, rax: expected.rax, rcx: rcx, rdx: rdx, r8: r8, r9: 0x9999, callPending: 0),
                    "RAX 0x\(String(rax, radix: 16))")
            Self.expectOnlyChanged(before, rig.snapshot(), vcpu: 1)
        }
        // Random values for everything, protocol 4 call 1 included.
        for _ in 0..<300 {
            let rax = random.next() % 3 == 0 ? SvsmCallId.uefiMmRequest.rax : random.next() >> (random.next() % 64)
            let rcx = random.next() % 2 == 0 ? random.next() : Self.gpa &+ (random.next() % (UInt64(Self.size) + 0x20_0000)) &- 0x10_0000
            let rdx = random.next() % 2 == 0 ? random.next() : random.next() % 0x50000
            let before = rig.snapshot()
            let a = rig.call(vcpu: 0, rax: rax, rcx: rcx, rdx: rdx, r8: random.next())
            #expect(a.doorbell == 0x17 && a.callPending == 0 && a.r9 == 0x9999)
            #expect(a.rax >> 32 == 0, "RAX is a zero-extended result code")
            // No message was ever written into the window, so nothing but vCPU 0's pages may change.
            Self.expectOnlyChanged(before, rig.snapshot(), vcpu: 0)
        }
    }

    @Test("doorbell values other than 0x016 are not requests; call_pending 0 is a spurious entry; other CAA bytes survive")
    func hostileDoorbellsAndCallPending() throws {
        let rig = try Rig()
        rig.attach(vcpus: 1)
        rig.server.pollOnce()
        for garbage: UInt64 in [0, 0x17, 0x15, 0x16 | 1 << 32, 0x0000_0016_0000_0000, 0xDEAD_BEEF_DEAD_BEEF, .max] {
            let before = rig.snapshot()
            let a = rig.call(rax: SvsmCallId.coreQueryProtocol.rax, rcx: 4 << 32 | 1, doorbell: garbage)
            #expect(a.doorbell == garbage && a.callPending == 1 && a.rcx == 4 << 32 | 1, "doorbell 0x\(String(garbage, radix: 16))")
            #expect(rig.server.pollOnce() == 0)
            var expected = before
            let regs = Int(ShmLayout.registerPage(0))
            expected.storeLE(SvsmCallId.coreQueryProtocol.rax, at: regs + Int(VmsaLayout.rax))
            expected.storeLE(UInt64(4 << 32 | 1), at: regs + Int(VmsaLayout.rcx))
            expected.storeLE(UInt64(0), at: regs + Int(VmsaLayout.rdx))
            expected.storeLE(UInt64(0), at: regs + Int(VmsaLayout.r8))
            expected.storeLE(UInt64(0x9999), at: regs + Int(VmsaLayout.r9))
            expected.storeLE(garbage, at: regs + Int(ShmLayout.doorbellOffset))
            expected[Int(ShmLayout.caaPage(0))] = 1
            let unchanged = rig.snapshot() == expected
            #expect(unchanged, "doorbell 0x\(String(garbage, radix: 16)): the host wrote something")
        }
        // call_pending 0: answered, nothing executed, registers as they were.
        let spurious = rig.call(rax: SvsmCallId.coreQueryProtocol.rax, rcx: 4 << 32 | 1, callPending: 0)
        #expect(spurious == Rig.Answer(doorbell: 0x17, rax: SvsmCallId.coreQueryProtocol.rax, rcx: 4 << 32 | 1, rdx: 0, r8: 0, r9: 0x9999, callPending: 0))
        // Garbage in call_pending and the reserved CAA bytes: any non-zero byte 0 is a call;
        // only byte 0 is cleared (COCONUT writes bytes 0-7 back).
        rig.write(ShmLayout.caaPage(0) + 1, [0xAB, 0xCD, 1, 2, 3, 4, 5])
        let garbage = rig.call(rax: SvsmCallId.coreQueryProtocol.rax, rcx: 4 << 32 | 1, callPending: 0xFF)
        #expect(garbage.result == .success && garbage.rcx == 0x0000_0001_0000_0001 && garbage.callPending == 0)
        #expect(rig.read(ShmLayout.caaPage(0), 8) == [0, 0xAB, 0xCD, 1, 2, 3, 4, 5])
    }

    // MARK: MM buffers

    @Test("MM buffer addresses and sizes: COCONUT's checks against the window, in its order")
    func hostileBuffers() throws {
        let rig = try Rig()
        rig.attach(vcpus: 2)
        rig.server.pollOnce()
        let size = UInt64(Self.size)
        let good = Self.buffers + 0x20000
        rig.write(good, MmCommunicateHeader.encode(headerGuid: .smmVariableProtocol, message: Self.getPayloadSize))
        // Every page that is not an MM buffer page: the header, the register and CAA pages.
        let last = size - 4096
        rig.write(last, MmCommunicateHeader.encode(headerGuid: .smmVariableProtocol, message: Self.getPayloadSize))
        let cases: [(String, UInt64, UInt64, SvsmResultCode)] = [
            ("RCX 0", 0, 0x10000, .invalidParameter),
            ("the header page", rig.gpaOf(0), 0x1000, .invalidAddress),
            ("vCPU 0's register page", rig.gpaOf(ShmLayout.registerPage(0)), 0x1000, .invalidAddress),
            ("vCPU 1's CAA page", rig.gpaOf(ShmLayout.caaPage(1)), 0x1000, .invalidAddress),
            ("an unused per-vCPU page", rig.gpaOf(ShmLayout.registerPage(100)), 0x1000, .invalidAddress),
            ("the page below the MM area", rig.gpaOf(Self.buffers - 4096), 0x2000, .invalidAddress),
            ("below the window", Self.gpa - 4096, 0x1000, .invalidAddress),
            ("far below the window", 0x1000, 0x1000, .invalidAddress),
            ("the window's end", rig.gpaOf(size), 0x1000, .invalidAddress),
            ("above the window", rig.gpaOf(size + 0x10_0000), 0x1000, .invalidAddress),
            ("the top page of the address space", 0xFFFF_FFFF_FFFF_F000, 0x1000, .invalidAddress),
            ("not page aligned", rig.gpaOf(good + 8), 0x10000, .invalidAddress),
            ("RDX 0", rig.gpaOf(good), 0, .invalidParameter),
            ("RDX 23", rig.gpaOf(good), 23, .invalidParameter),
            ("RDX 256 KiB + 1", rig.gpaOf(good), 0x40001, .invalidParameter),
            ("RDX 2^64-1", rig.gpaOf(good), .max, .invalidParameter),
            ("RDX < 24 + MessageLength", rig.gpaOf(good), 24 + 16 + 8 - 1, .invalidParameter),
            // COCONUT reads MessageLength bytes and nothing of RDX beyond them.
            ("the last page, RDX past the window's end", rig.gpaOf(last), 0x10000, .success),
            ("the last page, RDX exact", rig.gpaOf(last), 4096, .success),
        ]
        for (name, rcx, rdx, expected) in cases {
            let before = rig.snapshot()
            let a = rig.call(vcpu: 1, rax: SvsmCallId.uefiMmRequest.rax, rcx: rcx, rdx: rdx, r8: 7)
            #expect(a.doorbell == 0x17 && a.result == expected && a.rcx == rcx && a.rdx == rdx && a.r8 == 7, "\(name): \(a.result)")
            let body = Int(truncatingIfNeeded: rcx &- Self.gpa &+ 24)
            Self.expectOnlyChanged(before, rig.snapshot(), vcpu: 1, extra: expected == .success ? [body..<body + 24] : [])
        }
        // A MessageLength that runs past the window's end: INVALID_ADDRESS, nothing written.
        for length: UInt64 in [4096 - 24 + 1, 0x10000 - 24, 0x40000 - 24] {
            rig.write(last + 16, withUnsafeBytes(of: length.littleEndian, Array.init))
            let before = rig.snapshot()
            let a = rig.call(vcpu: 1, rax: SvsmCallId.uefiMmRequest.rax, rcx: rig.gpaOf(last), rdx: 0x40000)
            #expect(a.result == .invalidAddress, "MessageLength \(length)")
            Self.expectOnlyChanged(before, rig.snapshot(), vcpu: 1)
        }
        // A MessageLength past the window from a buffer the guest itself placed at the edge
        // of the MM area is the only way out, and it is refused: the guard pages of
        // SharedWindow were never touched (the test process would have crashed).
    }

    /// A service that answers with one byte more than it was sent.
    struct OversizedService: MmService {
        func handleMmRequest(headerGuid: EfiGuid, message: [UInt8], bufferSize: UInt64) -> [UInt8]? { message + [0xEE] }
        func uefiMmManifest() -> UefiMmManifest { UefiMmManifest(persistentNvVariables: false, secureBootEnabled: false, secureBootDbUpdate: false) }
    }

    @Test("a response that does not fit MessageLength is not written: INVALID_REQUEST")
    func oversizedResponse() throws {
        let rig = try Rig(service: OversizedService())
        rig.attach(vcpus: 1)
        rig.server.pollOnce()
        // GET_PAYLOAD_SIZE with MessageLength 16: the 24-byte answer does not fit.
        let offset = Self.buffers
        var request = MmCommunicateHeader.encode(headerGuid: .smmVariableProtocol, message: Self.getPayloadSize)
        request.storeLE(UInt64(16), at: 16)
        rig.write(offset, request)
        let before = rig.snapshot()
        let a = rig.call(rax: SvsmCallId.uefiMmRequest.rax, rcx: rig.gpaOf(offset), rdx: 0x1000)
        #expect(a.result == .invalidRequest)
        Self.expectOnlyChanged(before, rig.snapshot(), vcpu: 0)
    }

    // MARK: faults and the real loop

    @Test("--fault no-answer-after=N: N calls answered, then the doorbells stay rung")
    func answerLimit() throws {
        var f = ShmSvsmServer.Faults()
        f.answerLimit = 2
        let rig = try Rig(faults: f)
        rig.attach(vcpus: 1)
        rig.server.pollOnce()
        #expect(rig.call(rax: SvsmCallId.coreQueryProtocol.rax, rcx: 4 << 32 | 1).doorbell == 0x17)
        #expect(rig.call(rax: SvsmCallId.coreQueryProtocol.rax, rcx: 4 << 32 | 1).doorbell == 0x17)
        let third = rig.call(rax: SvsmCallId.coreQueryProtocol.rax, rcx: 4 << 32 | 1)
        #expect(third.doorbell == 0x16 && third.callPending == 1)
    }

    @Test("the polling policy: spin, then 20 µs naps, 1 ms naps, 10 ms naps as the quiet spell grows")
    func pollingPolicy() {
        let p = ShmSvsmServer.PollingPolicy()
        #expect(p.nap(afterIdle: 0) == nil && p.nap(afterIdle: 49_999) == nil)
        #expect(p.nap(afterIdle: 50_000) == 20_000 && p.nap(afterIdle: 199_999_999) == 20_000)
        #expect(p.nap(afterIdle: 200_000_000) == 1_000_000 && p.nap(afterIdle: 1_999_999_999) == 1_000_000)
        #expect(p.nap(afterIdle: 2_000_000_000) == 10_000_000 && p.nap(afterIdle: .max) == 10_000_000)
        // Every nap is far inside the guest's 5 s call timeout.
        #expect([p.shortNapNanoseconds, p.napNanoseconds, p.idleNapNanoseconds].allSatisfy { $0 < 5_000_000_000 / 100 })
    }

    @Test("serve() on its own thread: an attach and 2000 calls from two guest threads, each answered quickly; stops when told")
    func servingLoop() throws {
        let rig = try Rig()
        let stop = Locked(false)
        let done = DispatchSemaphore(value: 0)
        let server = rig.server
        Thread.detachNewThread {
            server.serve { !stop.withLock { $0 } }
            done.signal()
        }
        defer {
            stop.withLock { $0 = true }
            done.wait()
        }
        rig.attach(vcpus: 2)
        let deadline = Date().addingTimeInterval(5)
        while !rig.attached && Date() < deadline { usleep(100) }
        try #require(rig.attached)
        let worst = Locked<UInt64>(0)
        // Issues are collected here and checked on the test's own thread.
        let problems = Locked<[String]>([])
        let group = DispatchGroup()
        nonisolated(unsafe) let guest = rig.guest
        for vcpu: UInt32 in 0..<2 {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                let regs = guest + Int(ShmLayout.registerPage(vcpu)), caa = guest + Int(ShmLayout.caaPage(vcpu))
                for n in 0..<1000 {
                    // Now and then a pause longer than the short-nap window, once longer than
                    // the nap window: the next call finds the server in its longer naps.
                    if n % 250 == 249 { usleep(n == 499 ? 2_100_000 : 250_000) }
                    regs.storeBytes(of: SvsmCallId.coreQueryProtocol.rax, toByteOffset: Int(VmsaLayout.rax), as: UInt64.self)
                    regs.storeBytes(of: UInt64(4 << 32 | 1), toByteOffset: Int(VmsaLayout.rcx), as: UInt64.self)
                    caa.storeBytes(of: UInt8(1), as: UInt8.self)
                    let start = ShmSvsmServer.now()
                    cshmStoreRelease(regs + Int(ShmLayout.doorbellOffset), ShmLayout.doorbellRequest)
                    while cshmLoadAcquire(regs + Int(ShmLayout.doorbellOffset)) != ShmLayout.doorbellResponse {
                        if ShmSvsmServer.now() - start > 5_000_000_000 {
                            problems.withLock { $0.append("vCPU \(vcpu) call \(n): no answer in 5 s") }
                            return
                        }
                    }
                    let took = ShmSvsmServer.now() - start
                    worst.withLock { $0 = max($0, took) }
                    let rcx = regs.load(fromByteOffset: Int(VmsaLayout.rcx), as: UInt64.self), pending = caa.load(as: UInt8.self)
                    if rcx != 0x0000_0001_0000_0001 || pending != 0 {
                        problems.withLock { $0.append("vCPU \(vcpu) call \(n): RCX 0x\(String(rcx, radix: 16)), call_pending \(pending)") }
                    }
                }
            }
        }
        group.wait()
        #expect(problems.withLock { $0 }.isEmpty, "\(problems.withLock { $0.prefix(5) })")
        // Generous for a loaded 2-core machine; the policy's bound is one 1 ms nap.
        #expect(worst.withLock { $0 } < 1_000_000_000)
    }
}

/// xorshift64*, for reproducible register values.
struct XorShift {
    var state: UInt64
    init(seed: UInt64) { state = seed | 1 }
    mutating func next() -> UInt64 {
        state ^= state >> 12; state ^= state << 25; state ^= state >> 27
        return state &* 2685821657736338717
    }
}

func cshmStoreRelease(_ p: UnsafeMutableRawPointer, _ v: UInt64) { cshm_store_release_u64(p, v) }
func cshmLoadAcquire(_ p: UnsafeMutableRawPointer) -> UInt64 { cshm_load_acquire_u64(p) }
