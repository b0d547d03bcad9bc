import Testing
@testable import Driver
@testable import EfiTypes
@testable import Efivarfs
@testable import Guest
@testable import Hardware
@testable import Host
@testable import MmWire
@testable import Platform
@testable import Svsm
@testable import SvsmAbi
@testable import Trace
@testable import VariableService

/// Records what the CAA looked like when the SVSM dispatched the request.
final class CaaSpy: MmService, @unchecked Sendable {
    let memory: GuestMemory
    let caa: GuestPhysicalAddress
    var seen: [UInt8] = []
    init(memory: GuestMemory, caa: GuestPhysicalAddress) { self.memory = memory; self.caa = caa }
    func handleMmRequest(headerGuid: EfiGuid, message: [UInt8], bufferSize: UInt64) -> [UInt8]? {
        seen = try! memory.read(caa, count: 8)
        return message
    }
    func uefiMmManifest() -> UefiMmManifest { UefiMmManifest(persistentNvVariables: false, secureBootEnabled: false, secureBootDbUpdate: false) }
}

@Suite("SVSM calling convention and protocols")
struct SvsmProtocolTests {
    @Test("a CAA before, during and after a call: guest sets call_pending, SVSM clears it, RAX zero-extended")
    func caaAcrossACall() throws {
        let memory = GuestMemory()
        let caa = GuestPhysicalAddress(0xA000)
        let spy = CaaSpy(memory: memory, caa: caa)
        let svsm = Svsm(memory: memory, mmService: spy)
        try svsm.launch(bootVmsa: SvsmFixture.bootVmsa, firmwareCaa: caa)
        // bytes 1..7 belong to the SVSM; a guest write there must survive (only byte 0 changes)
        try memory.write(caa, hex("0000000000000000"))
        try memory.write(caa.advanced(by: 8), hex("a5a5"))
        let transport = SvsmCallTransport(processor: Processor(memory: memory, vmpl0: svsm), hypervisor: Hypervisor())
        let vcpu = Vcpu(apicId: 0, vmsa: SvsmFixture.bootVmsa, caa: caa)
        let buffer = try PageAllocator(memory: memory).allocatePages(1)
        try memory.write(buffer, MmCommunicateHeader.encode(headerGuid: .smmVariableProtocol, message: [UInt8](repeating: 0, count: 16)))
        #expect(Hex.encode(try memory.read(caa, count: 10)) == "0000000000000000a5a5")
        let out = try transport.perform(.uefiMmRequest, rcx: buffer.rawValue, rdx: 4096, on: vcpu, caa: caa)
        // During dispatch the SVSM had already cleared call_pending (COCONUT clears before dispatch).
        #expect(Hex.encode(spy.seen) == "0000000000000000")
        #expect(Hex.encode(try memory.read(caa, count: 10)) == "0000000000000000a5a5")
        #expect(out.rax == 0)
        #expect(out.rcx == buffer.rawValue && out.rdx == 4096)  // echoed
        // The VMSA holds the answer the hardware loaded back.
        #expect(try memory.readU64(SvsmFixture.bootVmsa.advanced(by: VmsaLayout.rax)) == 0)
    }

    @Test("a transport is a value: changing a copy's settings leaves the original's alone (its parts sit behind one shared reference)")
    func transportIsAValue() {
        let memory = GuestMemory()
        let svsm = Svsm(memory: memory, mmService: CaaSpy(memory: memory, caa: GuestPhysicalAddress(0xA000)))
        let original = SvsmCallTransport(processor: Processor(memory: memory, vmpl0: svsm), hypervisor: Hypervisor(), maxRetries: 3)
        var copy = original
        copy.maxRetries = 9
        copy.observer = CallStatistics()
        copy.worldSwitchNanoseconds = 4_000
        copy.spendsWorldSwitch = true
        #expect(original.maxRetries == 3 && original.observer == nil)
        #expect(original.worldSwitchNanoseconds == 0 && !original.spendsWorldSwitch)
        #expect(copy.maxRetries == 9 && copy.observer is CallStatistics)
        #expect(copy.worldSwitchNanoseconds == 4_000 && copy.spendsWorldSwitch)
        // The parts that are not settings stay shared.
        #expect(copy.memory === original.memory && copy.processor === original.processor)
        copy.observer = nil
        #expect(copy.observer == nil && copy.maxRetries == 9)
    }

    @Test("call_pending still set after the exit means 'not executed'")
    func droppedExit() throws {
        var plan = FaultPlan(); plan.host.dropExit = 1
        let f = SvsmFixture(faults: plan)
        #expect(throws: SvsmCallError.notExecuted) {
            try f.transport.perform(.coreQueryProtocol, rcx: 4 << 32 | 1, on: f.bsp, caa: f.bsp.svsmCaa)
        }
        // The guest's xchg disarmed the request.
        #expect(try f.memory.readU8(f.bsp.svsmCaa) == 0)
    }

    @Test("BUSY and INCOMPLETE are retried with the same registers, up to the bound")
    func busyRetries() {
        var plan = FaultPlan(); plan.svsm.busy = 1
        let f = SvsmFixture(faults: plan, maxRetries: 3)
        #expect(throws: SvsmCallError.retriesExhausted(.busy, attempts: 4)) {
            try f.transport.perform(.coreQueryProtocol, rcx: 4 << 32 | 1, on: f.bsp, caa: f.bsp.svsmCaa)
        }
        var p2 = FaultPlan(); p2.svsm.incomplete = 0.5; p2.svsm.seed = 7
        let g = SvsmFixture(faults: p2, maxRetries: 64)
        for _ in 0..<20 {
            let r = try? g.transport.perform(.coreQueryProtocol, rcx: 4 << 32 | 1, on: g.bsp, caa: g.bsp.svsmCaa)
            #expect(r?.rcx == 0x0000_0001_0000_0001)
        }
    }

    @Test("a spurious SVSM entry with call_pending clear changes nothing")
    func spuriousEntry() {
        var plan = FaultPlan(); plan.host.spuriousEntry = 1
        let f = SvsmFixture(faults: plan)
        let (r, out) = f.call(.coreQueryProtocol, rcx: 4 << 32 | 1)
        #expect(r == .success && out.rcx == 0x0000_0001_0000_0001)
        #expect(f.svsm.enter(apicId: 0) == .notPending)
    }

    @Test("a bad GHCB MSR response is refused like Linux does")
    func badGhcbResponse() {
        let f = SvsmFixture()
        f.bsp.cpu.ghcbMsr = 0
        // A request code the host does not serve gets garbage back.
        let (pending, _) = f.transport.issue(SvsmRegisters(rax: 0), on: f.bsp.cpu, caa: f.bsp.svsmCaa)
        #expect(pending == 1)
        #expect(f.bsp.cpu.ghcbMsr == 0)
    }

    static let queryCases: [(UInt64, UInt64)] = [
        (0x0000_0000_0000_0001, 0x0000_0001_0000_0001),
        (0x0000_0004_0000_0001, 0x0000_0001_0000_0001),
        (0x0000_0004_0000_0002, 0),
        // The attestation protocol, version 1 (COCONUT core.rs `core_query_protocol`).
        (0x0000_0001_0000_0001, 0x0000_0001_0000_0001),
        (0x0000_0001_0000_0002, 0),
        (0x0000_0009_0000_0001, 0),
    ]
    @Test("QUERY_PROTOCOL: max << 32 | min, or 0", arguments: queryCases)
    func queryProtocol(_ rcx: UInt64, _ expected: UInt64) {
        let (r, out) = SvsmFixture().call(.coreQueryProtocol, rcx: rcx)
        #expect(r == .success && out.rcx == expected)
    }

    @Test("unknown protocol and call IDs")
    func unknownIds() {
        let f = SvsmFixture()
        #expect(f.call(SvsmCallId(protocol: 9, call: 0)).0 == .unsupportedProtocol)
        #expect(f.call(SvsmCallId(protocol: 0, call: 99)).0 == .unsupportedCall)
        #expect(f.call(SvsmCallId(protocol: 4, call: 2)).0 == .unsupportedCall)
        #expect(f.call(.coreDepositMem).0 == .unsupportedCall)
        #expect(f.call(.coreWithdrawMem).0 == .unsupportedCall)
    }

    @Test("CONFIGURE_VTOM: query answers RCX 0, configuration INVALID_REQUEST")
    func configureVtom() {
        let f = SvsmFixture()
        let (r, out) = f.call(.coreConfigureVtom, rcx: 1)
        #expect(r == .success && out.rcx == 0)
        #expect(f.call(.coreConfigureVtom, rcx: 0x1000_0002).0 == .invalidRequest)
    }

    @Test("REMAP_CA: alignment, zeroing before the conflict check, conflicts, success moves the binding")
    func remapCA() throws {
        let f = SvsmFixture()
        #expect(f.call(.coreRemapCA, rcx: 0x1234_5008).0 == .invalidParameter)
        #expect(f.call(.coreRemapCA, rcx: 0x0800_0000).0 == .invalidAddress)  // SVSM range: not guest RAM
        let newCaa = try f.allocator.allocatePages(1)
        try f.memory.write(newCaa, hex("ffffffffffffffffff"))
        #expect(f.call(.coreRemapCA, rcx: newCaa.rawValue).0 == .success)
        #expect(Hex.encode(try f.memory.read(newCaa, count: 9)) == "0000000000000000ff")
        #expect(f.svsm.binding(apicId: 0)?.caa == newCaa)
        // The old CAA is now dead: a call through it is not executed.
        #expect(throws: SvsmCallError.notExecuted) { try f.transport.perform(.coreQueryProtocol, on: f.bsp, caa: SvsmFixture.caa) }
        f.bsp.svsmCaa = newCaa
        #expect(f.call(.coreRemapCA, rcx: newCaa.rawValue).0 == .success)  // same CAA: no-op
    }

    @Test("CREATE_VCPU and DELETE_VCPU with COCONUT's checks")
    func createDeleteVcpu() throws {
        let f = SvsmFixture()
        let vmsa = try f.allocator.allocatePages(1), caa = try f.allocator.allocatePages(1)
        try VmsaSetup.prepare(vmsa, in: f.memory)
        #expect(f.call(.coreCreateVcpu, rcx: vmsa.rawValue + 8, rdx: caa.rawValue, r8: 1).0 == .invalidAddress)
        #expect(f.call(.coreCreateVcpu, rcx: vmsa.rawValue, rdx: vmsa.rawValue, r8: 1).0 == .invalidAddress)
        #expect(f.call(.coreCreateVcpu, rcx: vmsa.rawValue, rdx: caa.rawValue, r8: 9999).0 == .invalidParameter)
        #expect(f.call(.coreCreateVcpu, rcx: vmsa.rawValue, rdx: SvsmFixture.caa.rawValue, r8: 1).0 == .invalidAddress)  // CAA in use
        let badVmsa = try f.allocator.allocatePages(1)
        #expect(f.call(.coreCreateVcpu, rcx: badVmsa.rawValue, rdx: caa.rawValue, r8: 1).0 == .invalidParameter)  // VMPL 0, no SVME
        #expect(f.call(.coreCreateVcpu, rcx: vmsa.rawValue, rdx: caa.rawValue, r8: 1).0 == .success)
        #expect(f.svsm.binding(apicId: 1) == VcpuBinding(apicId: 1, vmsa: vmsa, caa: caa))
        // The VMSA page is now the SVSM's: naming it as an MM buffer is an invalid address.
        #expect(f.call(.uefiMmRequest, rcx: vmsa.rawValue, rdx: 4096).0 == .invalidAddress)
        #expect(f.call(.coreDeleteVcpu, rcx: vmsa.rawValue + 1).0 == .invalidParameter)
        #expect(f.call(.coreDeleteVcpu, rcx: badVmsa.rawValue).0 == .invalidParameter)
        #expect(f.call(.coreDeleteVcpu, rcx: SvsmFixture.bootVmsa.rawValue).0 == .invalidParameter)  // startup vCPU
        #expect(f.call(.coreDeleteVcpu, rcx: vmsa.rawValue).0 == .success)
        #expect(f.svsm.binding(apicId: 1) == nil)
    }

    @Test("PVALIDATE list format and errors")
    func pvalidate() throws {
        let f = SvsmFixture()
        let list = try f.allocator.allocatePages(1)
        let page = try f.allocator.allocatePages(1)
        try f.memory.write(page, [0xAA])
        func entries(_ count: UInt16, next: UInt16 = 0, _ e: [UInt64]) {
            var b = [UInt8](); b.appendLE(count); b.appendLE(next); b.appendLE(UInt32(0))
            for x in e { b.appendLE(x) }
            try! f.memory.write(list, b)
        }
        #expect(f.call(.corePvalidate, rcx: list.rawValue + 4).0 == .invalidParameter)
        entries(0, []); #expect(f.call(.corePvalidate, rcx: list.rawValue).0 == .invalidParameter)
        entries(1, next: 1, [page.rawValue | 4]); #expect(f.call(.corePvalidate, rcx: list.rawValue).0 == .invalidParameter)
        entries(1, [page.rawValue | 4 | 0x10]); #expect(f.call(.corePvalidate, rcx: list.rawValue).0 == .invalidParameter)
        entries(1, [page.rawValue | 4 | 2]); #expect(f.call(.corePvalidate, rcx: list.rawValue).0 == .invalidParameter)
        entries(1, [page.rawValue | 4 | 1]); #expect(f.call(.corePvalidate, rcx: list.rawValue).0 == .invalidParameter)  // 2M misaligned
        entries(1, [0x0800_0000 | 4]); #expect(f.call(.corePvalidate, rcx: list.rawValue).0 == .invalidAddress)
        entries(1, [page.rawValue | 4]); #expect(f.call(.corePvalidate, rcx: list.rawValue).0 == .success)
        #expect(try f.memory.readU8(page) == 0)  // validated pages are zeroed
        #expect(try f.memory.read(list.advanced(by: 2), count: 2) == [1, 0])  // next advanced
    }

    @Test("protocol 4 buffer checks in COCONUT's order, each with its code", arguments: [
        ("null", UInt64(0), UInt64(4096), SvsmResultCode.invalidParameter),
        ("outside RAM", UInt64(0x10_0000_0000), UInt64(4096), .invalidAddress),
        ("the SVSM's own range", UInt64(0x0800_1000), UInt64(4096), .invalidAddress),
        ("the CAA page", UInt64(0xA000), UInt64(4096), .invalidAddress),
        ("the launch VMSA address", UInt64(0xFFFF_FFFF_F000), UInt64(4096), .invalidAddress),
        ("misaligned (INVALID_ADDRESS, not PARAMETER)", UInt64(0x20_0010), UInt64(4096), .invalidAddress),
        ("size below 24", UInt64(0x20_0000), UInt64(23), .invalidParameter),
        ("size above 256 KiB", UInt64(0x20_0000), UInt64(256 * 1024 + 1), .invalidParameter),
        ("MessageLength beyond RDX", UInt64(0x20_0000), UInt64(24 + 15), .invalidParameter),
    ])
    func uefiMmChecks(_ label: String, _ rcx: UInt64, _ rdx: UInt64, _ expected: SvsmResultCode) throws {
        let f = SvsmFixture()
        // A well-formed 16-byte message at 0x200000 so only the named check can fail.
        try f.memory.write(GuestPhysicalAddress(0x20_0000), MmCommunicateHeader.encode(headerGuid: .smmVariableProtocol, message: [UInt8](repeating: 0, count: 16)))
        #expect(f.call(.uefiMmRequest, rcx: rcx, rdx: rdx).0 == expected, "\(label)")
    }

    @Test("protocol 4 writes only 24 + response bytes, never the header, and RAX is SUCCESS even for EFI errors")
    func uefiMmWritesOnlyTheMessage() throws {
        let f = SvsmFixture()
        let payload = AccessVariablePayload.encode(guid: .globalVariable, name: Ucs2.units("Nope"), attributes: 0, dataSize: 4)
        let message = SmmVariableHeader.message(.getVariable, payload: payload)
        var bytes = MmCommunicateHeader.encode(headerGuid: .smmVariableProtocol, message: message)
        bytes += [UInt8](repeating: 0xEE, count: 64)  // after the message: must stay
        let buf = f.buffer(bytes, pages: 1)
        let (r, _) = f.call(.uefiMmRequest, rcx: buf.rawValue, rdx: 4096)
        #expect(r == .success)
        let after = try f.memory.read(buf, count: bytes.count)
        #expect(Array(after[0..<24]) == Array(bytes[0..<24]))
        #expect(after.loadLE(UInt64.self, at: 32) == EfiStatus.notFound.rawValue)
        #expect(Array(after[(24 + message.count)...]) == [UInt8](repeating: 0xEE, count: 64))
    }

    @Test("a response larger than the request is refused, not a crash (COCONUT panics here)")
    func oversizeResponse() throws {
        struct Greedy: MmService {
            func handleMmRequest(headerGuid: EfiGuid, message: [UInt8], bufferSize: UInt64) -> [UInt8]? { message + [1] }
            func uefiMmManifest() -> UefiMmManifest { UefiMmManifest(persistentNvVariables: false, secureBootEnabled: false, secureBootDbUpdate: false) }
        }
        let memory = GuestMemory()
        let svsm = Svsm(memory: memory, mmService: Greedy())
        try svsm.launch(bootVmsa: SvsmFixture.bootVmsa, firmwareCaa: SvsmFixture.caa)
        let transport = SvsmCallTransport(processor: Processor(memory: memory, vmpl0: svsm), hypervisor: Hypervisor())
        let buf = try PageAllocator(memory: memory).allocatePages(1)
        try memory.write(buf, MmCommunicateHeader.encode(headerGuid: .smmVariableProtocol, message: [7, 7]) + [0x55])
        let vcpu = Vcpu(apicId: 0, vmsa: SvsmFixture.bootVmsa, caa: SvsmFixture.caa)
        #expect(throws: SvsmCallError.failed(.invalidRequest)) {
            try transport.perform(.uefiMmRequest, rcx: buf.rawValue, rdx: 4096, on: vcpu, caa: SvsmFixture.caa)
        }
        #expect(try memory.read(buf.advanced(by: 24), count: 3) == [7, 7, 0x55])
    }
}
