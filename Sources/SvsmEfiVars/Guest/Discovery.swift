/// SVSM discovery after boot (SVSM spec §4.2), as a guest component without the secrets
/// page sees it: CPUID 0x8000_001F EAX bit 28 says an SVSM is present, and RDMSR
/// 0xC001_F000 traps (#VC) into the OS, whose handler returns the current vCPU's CAA
/// (Linux `__vc_handle_msr_caa`: `this_cpu_read(svsm_caa_pa)`; writes are ignored).
public enum SvsmDiscovery {
    /// CPUID leaf 0x8000_001F, EAX bit 28.
    public static let cpuidLeaf: UInt32 = 0x8000_001F
    public static let cpuidSvsmBit: UInt32 = 1 << 28

    /// EAX of CPUID 0x8000_001F as the OS's CPUID table answers it: SEV, SEV-ES, SNP bits
    /// (0, 1, 4) and, with an SVSM, bit 28.
    public static func cpuidEax(svsmPresent: Bool) -> UInt32 {
        let snp: UInt32 = 1 << 0 | 1 << 1 | 1 << 4
        return svsmPresent ? snp | cpuidSvsmBit : snp
    }

    /// RDMSR on `vcpu`: the #VC handler of whoever owns the vCPU now answers. Only
    /// MSR_SVSM_CAA is emulated here; nil stands for the #GP any other MSR would get.
    public static func rdmsr(_ index: UInt32, on vcpu: Vcpu) -> UInt64? {
        guard index == SvsmCaaMsr.index else { return nil }
        return vcpu.svsmCaa.rawValue
    }
}
