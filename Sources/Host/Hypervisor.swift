import EfiTypes
import Hardware
import SvsmAbi

/// Faults the untrusted host can cause on a VMGEXIT, each with a probability.
public struct HostFaults: Sendable, Equatable {
    /// The host does not run VMPL0 for an exit: call_pending stays set.
    public var dropExit: Double = 0
    /// The host runs VMPL0 once more after the exit, with call_pending already clear.
    public var spuriousEntry: Double = 0
    public var seed: UInt64 = 0x5eed
    public init() {}
}

/// The untrusted host: it turns a vCPU's VMGEXIT into a run of VMPL0 — or, with a fault
/// injected, does not, or does it twice. It sees only the APIC ID and the GHCB MSR value.
public final class Hypervisor: VmgexitHandler {
    public let faults: HostFaults
    private let random: SeededRandom

    public init(faults: HostFaults = HostFaults()) {
        self.faults = faults
        self.random = SeededRandom(seed: faults.seed)
    }

    /// The GHCB MSR protocol's VMPL request (0x016, VMPL in bits 63:32): run that VMPL and
    /// answer 0x017. Anything else is not a request this host serves: 0 comes back.
    public func handleVmgexit(apicId: UInt32, ghcbMsr: UInt64, processor: Processor) -> UInt64 {
        guard ghcbMsr & 0xfff == GhcbMsr.vmplRequest else { return 0 }
        let level = UInt8(truncatingIfNeeded: ghcbMsr >> 32)
        if level == 0, !random.fires(faults.dropExit) {
            processor.runVmpl0(apicId: apicId)
            if random.fires(faults.spuriousEntry) { processor.runVmpl0(apicId: apicId) }
        }
        return GhcbMsr.vmplResponse
    }
}
