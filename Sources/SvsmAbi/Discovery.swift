/// SVSM discovery after boot (SVSM spec §4.2) by a guest component without the secrets page:
/// CPUID 0x8000_001F EAX bit 28 says an SVSM is present, and RDMSR 0xC001_F000 (MSR_SVSM_CAA)
/// traps (#VC) into the OS, whose handler returns the current vCPU's CAA.
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
}
