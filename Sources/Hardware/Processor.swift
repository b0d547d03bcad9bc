import SvsmAbi

/// The software that runs at VMPL0 on a vCPU when the hypervisor resumes that vCPU's VMPL0
/// context (the SVSM).
public protocol Vmpl0Software: Sendable {
    func run(apicId: UInt32)
}

/// The untrusted hypervisor's side of VMGEXIT. It sees what an SEV-SNP hypervisor sees: the
/// vCPU's APIC ID and its GHCB MSR value — the registers are in the encrypted VMSA. It may
/// ask `processor` to run VMPL0 for the vCPU (zero, one or more times) and returns the GHCB
/// MSR value the guest resumes with.
public protocol VmgexitHandler: Sendable {
    func handleVmgexit(apicId: UInt32, ghcbMsr: UInt64, processor: Processor) -> UInt64
}

/// The SEV-SNP processor: VMGEXIT saves the guest's registers into its VMSA and exits to the
/// hypervisor; a run of VMPL0 enters the SVSM; resuming the guest loads the registers back
/// from the VMSA. The save and load are the hardware's part, which the hypervisor cannot see
/// or change.
public final class Processor: Sendable {
    public let memory: GuestMemory
    let vmpl0: any Vmpl0Software

    public init(memory: GuestMemory, vmpl0: any Vmpl0Software) {
        self.memory = memory
        self.vmpl0 = vmpl0
    }

    /// `rep; vmmcall` on `cpu`: exit to `hypervisor`, then resume.
    public func vmgexit(_ cpu: VirtualCpu, to hypervisor: any VmgexitHandler) {
        let r = cpu.registers
        try? memory.writeU64(cpu.vmsa.advanced(by: VmsaLayout.rax), r.rax)
        try? memory.writeU64(cpu.vmsa.advanced(by: VmsaLayout.rcx), r.rcx)
        try? memory.writeU64(cpu.vmsa.advanced(by: VmsaLayout.rdx), r.rdx)
        try? memory.writeU64(cpu.vmsa.advanced(by: VmsaLayout.r8), r.r8)
        try? memory.writeU64(cpu.vmsa.advanced(by: VmsaLayout.r9), r.r9)
        cpu.ghcbMsr = hypervisor.handleVmgexit(apicId: cpu.apicId, ghcbMsr: cpu.ghcbMsr, processor: self)
        if let rax = try? memory.readU64(cpu.vmsa.advanced(by: VmsaLayout.rax)),
           let rcx = try? memory.readU64(cpu.vmsa.advanced(by: VmsaLayout.rcx)),
           let rdx = try? memory.readU64(cpu.vmsa.advanced(by: VmsaLayout.rdx)),
           let r8 = try? memory.readU64(cpu.vmsa.advanced(by: VmsaLayout.r8)) {
            cpu.registers = SvsmRegisters(rax: rax, rcx: rcx, rdx: rdx, r8: r8, r9: r.r9)
        }
    }

    /// VMRUN of the vCPU's VMPL0 context, on the hypervisor's request.
    public func runVmpl0(apicId: UInt32) {
        vmpl0.run(apicId: apicId)
    }
}
