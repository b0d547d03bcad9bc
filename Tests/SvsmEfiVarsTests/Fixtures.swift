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

/// A bare platform: guest memory, an SVSM with a variable service, one launched boot vCPU.
struct SvsmFixture {
    let memory: GuestMemory
    let allocator: PageAllocator
    let service: VariableService
    let svsm: Svsm
    let processor: Processor
    let hypervisor: Hypervisor
    let transport: SvsmCallTransport
    let bsp: Vcpu
    static let bootVmsa = GuestPhysicalAddress(0x0800_0000)
    static let caa = GuestPhysicalAddress(0xA000)

    init(store: VariableStore = VariableStore(), faults: FaultPlan = FaultPlan(), maxRetries: Int = 4) {
        memory = GuestMemory()
        allocator = PageAllocator(memory: memory)
        service = VariableService(store: store)
        svsm = Svsm(memory: memory, mmService: service)
        svsm.injectFaults(faults.svsm)
        processor = Processor(memory: memory, vmpl0: svsm)
        hypervisor = Hypervisor(faults: faults.host)
        transport = SvsmCallTransport(processor: processor, hypervisor: hypervisor, maxRetries: maxRetries)
        try! svsm.launch(bootVmsa: SvsmFixture.bootVmsa, firmwareCaa: SvsmFixture.caa)
        bsp = Vcpu(apicId: 0, vmsa: SvsmFixture.bootVmsa, caa: SvsmFixture.caa)
    }

    /// Issues a call on the boot vCPU through its CAA and returns the result code and registers.
    func call(_ id: SvsmCallId, rcx: UInt64 = 0, rdx: UInt64 = 0, r8: UInt64 = 0) -> (SvsmResultCode, SvsmRegisters) {
        do {
            let out = try transport.perform(id, rcx: rcx, rdx: rdx, r8: r8, on: bsp, caa: bsp.svsmCaa)
            return (.success, out)
        } catch {
            if case .failed(let r) = error { return (r, bsp.cpu.registers) }
            Issue.record("unexpected call failure \(error)")
            return (.invalidRequest, bsp.cpu.registers)
        }
    }

    /// A page-aligned MM buffer holding `bytes`.
    func buffer(_ bytes: [UInt8], pages: Int = 16) -> GuestPhysicalAddress {
        let gpa = try! allocator.allocatePages(pages)
        try! memory.write(gpa, bytes)
        return gpa
    }
}

func hex(_ s: String) -> [UInt8] { Hex.decode(s)! }

extension VariableStore {
    /// A store after boot: the given variables written at boot time, then EndOfDxe and
    /// (optionally) ExitBootServices.
    static func booted(_ vars: [(String, EfiGuid, VariableAttributes, [UInt8])], runtime: Bool = true) -> VariableStore {
        var s = VariableStore()
        for (n, g, a, d) in vars {
            let st = s.setVariable(VariableKey(n, g), attributes: a.rawValue, data: d)
            precondition(st == .success, "seed \(n): \(st)")
        }
        s.signalEndOfDxe()
        s.signalReadyToBoot()
        if runtime { s.signalExitBootServices() }
        return s
    }
}
