import SvsmAbi

extension Vcpu {
    /// RDMSR on this vCPU while the OS owns it: the OS's #VC handler answers. Only
    /// MSR_SVSM_CAA is emulated here (Linux `__vc_handle_msr_caa`: `this_cpu_read(svsm_caa_pa)`;
    /// writes are ignored); nil stands for the #GP any other MSR would get.
    public func rdmsr(_ index: UInt32) -> UInt64? {
        guard index == SvsmCaaMsr.index else { return nil }
        return svsmCaa.rawValue
    }
}
