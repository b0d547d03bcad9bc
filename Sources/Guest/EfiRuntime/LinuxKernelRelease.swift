/// A Linux kernel, reduced to the three changes that decide whether OVMF's runtime services
/// can reach the SVSM through the OS's per-CPU CAA (route a2).
public struct LinuxKernelRelease: Sendable, Equatable, CustomStringConvertible {
    /// Where the boot CPU's per-CPU CAA page lives.
    public enum BootCpuCallingArea: Sendable, Equatable {
        /// A memblock page like every other CPU's; the boot CPU switches to it with
        /// REMAP_CA (torvalds/linux arch/x86/coco/sev/core.c `sev_es_init_vc_handling`,
        /// before c54604fb7f25).
        case memblockPage
        /// `boot_svsm_ca_page`, a page-aligned object in the kernel image, kept as CPU 0's
        /// per-CPU CAA (c54604fb7f25 "x86/sev: Use boot SVSM CA for all startup and init
        /// code", `alloc_runtime_data`: `caa = cpu ? memblock_alloc_or_panic(...) :
        /// &boot_svsm_ca_page`; in the x86/apic pull for v6.18-rc1).
        case kernelImagePage
    }

    public let name: String
    /// The #VC handler decodes instructions of EFI runtime code through efi_mm, so that
    /// RDMSR 0xC001F000 from the firmware is answered (7b22e0432981 "x86/sev/vc: Fix EFI
    /// runtime instruction emulation", `vc_decode_insn`; v6.17-rc1; backported to
    /// linux-6.16.y as 8fbf23010d27).
    public let decodesEfiRuntimeInstructions: Bool
    /// efi_mm maps every per-CPU CAA 1:1, encrypted (a7549636f67f "x86/sev: Let
    /// sev_es_efi_map_ghcbs() map the CA pages too", `sev_es_efi_map_ghcbs_cas`; v6.17-rc1).
    public let mapsCallingAreasInEfiMm: Bool
    public let bootCpuCallingArea: BootCpuCallingArea

    public init(name: String, decodesEfiRuntimeInstructions: Bool, mapsCallingAreasInEfiMm: Bool,
                bootCpuCallingArea: BootCpuCallingArea) {
        self.name = name
        self.decodesEfiRuntimeInstructions = decodesEfiRuntimeInstructions
        self.mapsCallingAreasInEfiMm = mapsCallingAreasInEfiMm
        self.bootCpuCallingArea = bootCpuCallingArea
    }

    /// linux-6.16.y with the decode fix backported (8fbf23010d27) and without a7549636f67f:
    /// the firmware's RDMSR is answered, its store to the CAA is not mapped.
    public static let v6_16Stable = LinuxKernelRelease(
        name: "Linux 6.16.y (decode fix 8fbf23010d27 backported; no a7549636f67f)",
        decodesEfiRuntimeInstructions: true, mapsCallingAreasInEfiMm: false, bootCpuCallingArea: .memblockPage)

    /// Mainline from v6.18 on: both v6.17-rc1 commits, and CPU 0 keeps the boot CA page.
    public static let mainline = LinuxKernelRelease(
        name: "Linux mainline ≥ v6.18 (7b22e0432981 + a7549636f67f + c54604fb7f25)",
        decodesEfiRuntimeInstructions: true, mapsCallingAreasInEfiMm: true, bootCpuCallingArea: .kernelImagePage)

    public var description: String { name }
}
