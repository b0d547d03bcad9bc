/// The untrusted host: it turns a vCPU's VMGEXIT into a run of VMPL0 (or, with a fault
/// injected, does not). It also plays the hardware's part: saving the vCPU's registers
/// into its VMSA on the exit and loading them back on resume.
public final class Hypervisor: Sendable {
    public let memory: GuestMemory
    public let svsm: Svsm
    let faults: FaultInjector

    public init(memory: GuestMemory, svsm: Svsm, faults: FaultPlan = FaultPlan()) {
        self.memory = memory
        self.svsm = svsm
        self.faults = FaultInjector(faults)
    }

    public var faultPlan: FaultPlan { faults.plan }

    /// `rep; vmmcall` with the GHCB MSR protocol: the MSR holds a request, the host answers
    /// in the MSR.
    public func vmgexit(_ vcpu: Vcpu) {
        let request = vcpu.ghcbMsr
        guard request & 0xfff == GhcbMsr.vmplRequest else {
            // Not a request this host serves: GHCB_MSR_TERM-style garbage back.
            vcpu.ghcbMsr = 0
            return
        }
        let level = UInt8(truncatingIfNeeded: request >> 32)
        // Hardware: save the VMPL2 registers into the VMSA.
        let r = vcpu.registers
        try? memory.writeU64(vcpu.vmsa.advanced(by: VmsaLayout.rax), r.rax)
        try? memory.writeU64(vcpu.vmsa.advanced(by: VmsaLayout.rcx), r.rcx)
        try? memory.writeU64(vcpu.vmsa.advanced(by: VmsaLayout.rdx), r.rdx)
        try? memory.writeU64(vcpu.vmsa.advanced(by: VmsaLayout.r8), r.r8)
        try? memory.writeU64(vcpu.vmsa.advanced(by: VmsaLayout.r9), r.r9)

        if level == 0, !faults.fires(faults.plan.dropExit) {
            if faults.fires(faults.plan.busy) {
                injectResult(vcpu, .busy)
            } else if faults.fires(faults.plan.incomplete) {
                injectResult(vcpu, .incomplete)
            } else {
                _ = svsm.enter(apicId: vcpu.apicId)
            }
            if faults.fires(faults.plan.spuriousEntry) {
                _ = svsm.enter(apicId: vcpu.apicId)
            }
        }
        // Hardware: resume from the VMSA.
        if let rax = try? memory.readU64(vcpu.vmsa.advanced(by: VmsaLayout.rax)),
           let rcx = try? memory.readU64(vcpu.vmsa.advanced(by: VmsaLayout.rcx)),
           let rdx = try? memory.readU64(vcpu.vmsa.advanced(by: VmsaLayout.rdx)),
           let r8 = try? memory.readU64(vcpu.vmsa.advanced(by: VmsaLayout.r8)) {
            vcpu.registers = SvsmRegisters(rax: rax, rcx: rcx, rdx: rdx, r8: r8, r9: r.r9)
        }
        vcpu.ghcbMsr = GhcbMsr.vmplResponse
    }

    /// A BUSY or INCOMPLETE answer for fault injection: the SVSM consumes call_pending and
    /// answers without doing the call, as a real SVSM that cannot serve it now would.
    private func injectResult(_ vcpu: Vcpu, _ code: SvsmResultCode) {
        guard let b = svsm.binding(apicId: vcpu.apicId) else { return }
        guard let pending = try? memory.readU8(b.caa), pending != 0 else { return }
        try? memory.writeU8(b.caa, 0)
        try? memory.writeU64(b.vmsa.advanced(by: VmsaLayout.rax), code.rax)
    }
}
