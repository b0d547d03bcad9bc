import SvsmAbi

/// One vCPU's architectural state while the guest runs at its VMPL: the registers of the
/// call ABI, the GHCB MSR (0xC001_0130), and the VMSA page the processor saves them into
/// when the vCPU exits.
///
/// Used by one thread at a time: whoever holds the vCPU (the guest's model of "interrupts
/// off on this CPU", `VcpuSet.withVcpu`).
public final class VirtualCpu: @unchecked Sendable {
    public let apicId: UInt32
    // No dynamic exclusivity checks on the two fields every SVSM call writes and reads
    // several times: they cost 4 % of an MM round trip in a profile. No access to them
    // overlaps another (each is a plain load or store), and the thread sanitizer runs of
    // the suite still watch them for races between threads.
    @exclusivity(unchecked) public var registers = SvsmRegisters()
    @exclusivity(unchecked) public var ghcbMsr: UInt64 = 0
    /// The VMSA of this vCPU's guest VMPL.
    public let vmsa: GuestPhysicalAddress

    public init(apicId: UInt32, vmsa: GuestPhysicalAddress) {
        self.apicId = apicId
        self.vmsa = vmsa
    }
}
