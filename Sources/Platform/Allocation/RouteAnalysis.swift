import Foundation

/// Which firmware CAA pages each route to the variable store needs after
/// ExitBootServices, whether the firmware's per-AP CAA pages could be boot-services memory
/// instead of Reserved, and what the map would then look like at 512 vCPUs.
public struct RouteAnalysis: Sendable, Codable {
    public let routes: [RouteFinding]
    /// What the SVSM and the firmware do with the firmware's AP pages, common to all routes.
    public let facts: [Fact]
    public let answer: String
    /// The map at `CaaAllocationScenario.routeVcpus` for upstream edk2 (both phases) with the
    /// kept pages Reserved, with only the CAA as EfiBootServicesData, and with both.
    public let variants: [VariantFigures]

    public struct Fact: Sendable, Codable {
        public enum Standing: String, Sendable, Codable { case sourced, derived, open }
        public let statement: String
        public let source: String
        public let standing: Standing
    }

    public struct RouteFinding: Sendable, Codable {
        public let id: String
        public let route: String
        public let caaUsed: String
        public let needsFirmwareApCaa: Bool
        public let bootServicesMemoryForTheRoute: String
        public let source: String
    }

    public struct VariantFigures: Sendable, Codable {
        public let policy: String
        public let vcpus: Int
        public let efiDescriptors: Int
        public let e820Entries: Int
        public let reservedPages: UInt64
        public let saveAreaReservedPages: UInt64
        public let memblockRegions: Int
        public let largestFreeBelow4GiB: UInt64
        public let swiotlbBytes: UInt64
        public let note: String
    }

    static func run(scenario: CaaAllocationScenario) throws(FirmwareBoot.BootError) -> RouteAnalysis {
        let n = CaaAllocationScenario.routeVcpus
        let notes: [KeptPageType: String] = [
            .reserved: "as edk2 does it: one Reserved block per phase (plus the Reserved bin)",
            .caaBootServicesData: "the VMSA must stay Reserved (still an SVSM-owned VMSA), so Reserved and usable pages alternate per AP: as fragmented as the reporter's map",
            .allBootServicesData: "sound only if the firmware DELETE_VCPUs its APs first; the save areas vanish into usable RAM",
        ]
        var variants: [VariantFigures] = []
        for kept in KeptPageType.allCases {
            let policy = SaveAreaPolicy(.upstream, phases: [.pei, .dxe], kept: kept)
            let f = CaaAllocationFigures(try scenario.boot(policy, vcpus: n))
            variants.append(VariantFigures(
                policy: policy.name, vcpus: n, efiDescriptors: f.efiDescriptors, e820Entries: f.e820Entries,
                reservedPages: f.reservedPages, saveAreaReservedPages: f.saveAreaReservedPages,
                memblockRegions: f.memblockRegions, largestFreeBelow4GiB: f.swiotlb.largestFreeBytes,
                swiotlbBytes: f.swiotlb.bytes, note: notes[kept] ?? ""))
        }
        return RouteAnalysis(routes: routes, facts: facts, answer: answer, variants: variants)
    }

    static let routes: [RouteFinding] = [
        RouteFinding(
            id: "a1", route: "MMIO trap into the SVSM",
            caaUsed: "none: the firmware would touch an emulated MMIO range and the access would trap",
            needsFirmwareApCaa: false,
            bootServicesMemoryForTheRoute: "yes, the route touches no CAA — but the route does not exist: MMIO #VC goes to the hypervisor, a VMPL fault is a #NPF to the hypervisor, COCONUT neither reflects nor emulates it, and Linux refuses ReflectVC",
            source: "torvalds/linux arch/x86/coco/sev/vc-handle.c vc_handle_exitcode → vc_handle_mmio (SVM_EXIT_NPF becomes SVM_VMGEXIT_MMIO_READ/WRITE to the hypervisor); arch/x86/boot/compressed/sev.c SNP_FEATURES_PRESENT / snp_get_unsupported_features (ReflectVC not among the features Linux accepts); coconut-svsm/svsm kernel/src/vmm/execloop.rs (only a VMGEXIT with call_pending is serviced), kernel/src/cpu/vc.rs handle_vc_exception (no NPF case); svsm-devel 2025-May/000573 (Jon Lange: REFLECT_VC not recommended)"),
        RouteFinding(
            id: "a2", route: "edk2 runtime services read MSR_SVSM_CAA and use the OS's CAA",
            caaUsed: "the OS's per-CPU CAA of the CPU running the runtime service: RDMSR 0xC001F000 traps (#VC) into Linux, which answers this_cpu_read(svsm_caa_pa); Linux maps every per-CPU CAA 1:1 in efi_mm",
            needsFirmwareApCaa: false,
            bootServicesMemoryForTheRoute: "yes: neither the firmware's AP CAAs nor its boot CAA are used at runtime",
            source: "tianocore/edk2 OvmfPkg/Library/AmdSvsmLib/AmdSvsmLib.c AmdSvsmUefiMmRequest; torvalds/linux arch/x86/coco/sev/vc-handle.c __vc_handle_msr_caa; core.c sev_es_efi_map_ghcbs_cas (commit a7549636f67f, merged for v6.17-rc1 by merge 14bed9bc81ba)"),
        RouteFinding(
            id: "b", route: "the Linux driver calls the SVSM through its own per-CPU CAA",
            caaUsed: "svsm_get_caa(): Linux's per-CPU CAA (memblock-allocated per CPU, handed to the SVSM by CREATE_VCPU for each AP)",
            needsFirmwareApCaa: false,
            bootServicesMemoryForTheRoute: "yes: the driver never sees a firmware CAA",
            source: "torvalds/linux arch/x86/coco/sev/core.c alloc_runtime_data (per-CPU CAA), wakeup_cpu_via_vmgexit → snp_set_vmsa (CREATE_VCPU with RDX = __pa(caa)); svsm.c snp_svsm_vtpm_send_command → svsm_perform_call_protocol with call.caa = svsm_get_caa()"),
    ]

    static let facts: [Fact] = [
        Fact(statement: "At ExitBootServices edk2 sends every AP into RelocateApLoop, where it stays parked; the AP still runs on the firmware's VMSA, which the SVSM has bound to the firmware's CAA (CREATE_VCPU with RDX = VMSA + 4 KiB).",
             source: "tianocore/edk2 UefiCpuPkg/Library/MpInitLib/DxeMpLib.c MpInitChangeApLoopCallback → WakeUpAP (…, RelocateApLoop, …); AmdSev.c SevSnpPerformApAction; OvmfPkg AmdSvsmLib.c SvsmVmsaRmpAdjust",
             standing: .sourced),
        Fact(statement: "CREATE_VCPU replaces the target CPU's binding: the SVSM then reads and writes only the new CAA for that CPU.",
             source: "coconut-svsm/svsm kernel/src/protocols/core.rs core_create_vcpu → PerCpuShared::update_guest_vmsa_caa (kernel/src/cpu/percpu.rs); kernel/src/vmm/execloop.rs reads the bound CAA",
             standing: .sourced),
        Fact(statement: "Only DELETE_VCPU takes a VMSA out of the SVSM's registry. Linux creates a fresh VMSA for each AP and deletes only its own previous one (per_cpu(sev_vmsa)); nothing deletes the firmware's VMSAs.",
             source: "coconut-svsm core.rs core_delete_vcpu → PERCPU_VMSAS.unregister; torvalds/linux arch/x86/coco/sev/core.c wakeup_cpu_via_vmgexit (\"A new VMSA is created each time\")",
             standing: .sourced),
        Fact(statement: "So every firmware AP VMSA stays an SVSM-owned VMSA page (RMP VMSA bit set, guest access revoked) for the life of the guest: it must stay Reserved whatever the route.",
             source: "core.rs core_create_vcpu (rmp_revoke_guest_access, rmp_set_guest_vmsa) and the facts above",
             standing: .derived),
        Fact(statement: "A firmware AP CAA is referenced by the SVSM only until the OS's CREATE_VCPU for that AP (never, for an AP the OS does not start: maxcpus=, nr_cpus=, offline). Where the registry records CAAs (register(paddr, pcaa, …)), the stale entry still names the page, so a later CREATE_VCPU naming it fails with INVALID_ADDRESS.",
             source: "coconut-svsm/svsm kernel/src/protocols/core.rs core_create_vcpu at 012480f3 (PERCPU_VMSAS.register (paddr, pcaa, …)?, whose error the call returns); the registry's conflict test itself was not read at that commit, and INVALID_ADDRESS for a CAA still in use is what AMD's SVSM specification (publication 58019, §6.3 SVSM_CORE_CREATE_VCPU) prescribes",
             standing: .derived),
        Fact(statement: "Boot-services memory returns to the OS in efi_free_boot_services (from __efi_enter_virtual_mode); whether that precedes the OS's CREATE_VCPU for every AP on the reporter's kernels was not re-read. If it does, a firmware CAA kept as EfiBootServicesData could be reused while the SVSM still binds it to a parked AP and writes call_pending into it on any VMPL0 entry of that vCPU.",
             source: "torvalds/linux arch/x86/platform/efi/quirks.c efi_reserve_boot_services (memblock_reserve of every boot-services region in setup_arch) / efi_free_boot_services (reached from __efi_enter_virtual_mode); coconut-svsm/svsm kernel/src/vmm/execloop.rs get_and_clear_caa_request_flag",
             standing: .open),
    ]

    static let answer = """
        No route needs the firmware's per-AP CAA pages after ExitBootServices: (a2) takes the OS's \
        CAA through MSR 0xC001F000, (b) uses the driver's own per-CPU CAAs, (a1) uses none and \
        does not exist. The constraint is the SVSM's: each page stays bound to a parked AP until \
        the OS's CREATE_VCPU for that AP, and the firmware VMSA beside it stays an SVSM-owned \
        VMSA for good because nothing deletes it. So the CAA could be boot-services memory only \
        if the firmware deleted its AP VMSAs (DELETE_VCPU) before handing over — then VMSA and \
        CAA both could be, and the save areas vanish from the map. Making only the CAA \
        boot-services memory keeps the Reserved VMSA and turns each AP's pair into a \
        Reserved/usable alternation: the reporter's fragmentation, at 512 vCPUs in both phases.
        """
}
