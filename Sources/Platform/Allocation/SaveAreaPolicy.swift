import Foundation

/// A firmware phase that runs MpInitLib and may create the APs' save areas: PEI (CpuMpPei)
/// and DXE (CpuDxe) in OVMF's AMD SEV build (tianocore/edk2 OvmfPkg/AmdSev/AmdSevX64.fdf at
/// 0172fbd4: UefiCpuPkg/CpuMpPei/CpuMpPei.inf in FV.PEIFV, UefiCpuPkg/CpuDxe/CpuDxe.inf in
/// FV.DXEFV).
public enum FirmwarePhase: String, Sendable, Codable, CaseIterable, CustomStringConvertible {
    case pei, dxe
    public var description: String { rawValue.uppercased() }
}

/// How a build lays out one AP's VMSA and CAA.
public enum SaveAreaScheme: String, Sendable, Codable, CaseIterable, CustomStringConvertible {
    /// The reporter's build as the thread describes it (svsm-devel 2025-May/000572, Gerd
    /// Hoffmann quoting the report): 1 Reserved (CAA) and 1 usable (a VMSA "allocated then
    /// freed") page alternating. The reporter's firmware source was not found, so this is
    /// a decision that reproduces the description: per AP `AllocateReservedPages (2)` → VMSA,
    /// CAA = VMSA + 4 KiB; once every AP of the phase has been started, each VMSA page is freed
    /// and the CAA kept. Freeing right after each allocation would not alternate: PEI returns
    /// a freed page at FreeMemoryTop to the bump range and DXE merges it with the free range
    /// below, so the next AP would land on it. Like the SVSM-aware code from before the
    /// erratum fix (svsm-vtpm/ovmf UefiCpuPkg/Library/MpInitLib/X64/AmdSev.c
    /// `SevSnpCreateSaveArea` at 6a673411: `AllocateReservedPages (PageCount)`, no 2 MiB
    /// test) it does not avoid 2 MiB-aligned VMSAs.
    case reporter
    /// Upstream edk2 (UefiCpuPkg/Library/MpInitLib/X64/AmdSev.c `SevSnpCreateSaveArea`):
    /// `AllocateReservedPages (PageCount + 1)` with PageCount = 2 under an SVSM; if
    /// `Pages + 4 KiB` is 2 MiB aligned the VMSA is `Pages` and the third page is freed
    /// (AMD erratum #1467), else the VMSA is `Pages + 4 KiB` and the first page is freed.
    /// The CAA is the page after the VMSA (AmdSvsmLib.c `SvsmVmsaRmpAdjust`, RDX = Vmsa + 4 KiB).
    case upstream
    public var description: String { rawValue }
}

/// What type the pages an AP keeps end up with. `reserved` is what both builds do; the other
/// two are hypothetical variants for the route analysis (`RouteAnalysis`): the same
/// placement, with the kept pages allocated as `EfiBootServicesData`, which the OS gets back
/// as usable RAM after ExitBootServices.
public enum KeptPageType: String, Sendable, Codable, CaseIterable, CustomStringConvertible {
    case reserved
    /// Only the CAA page is boot-services memory; the VMSA stays Reserved.
    case caaBootServicesData = "caa-bs-data"
    /// VMSA and CAA are boot-services memory (only sound if the firmware's VMSAs are deleted
    /// before the OS reuses them, see the route analysis).
    case allBootServicesData = "all-bs-data"
    public var description: String { rawValue }
}

/// A save-area allocation policy: scheme, the phases that create save areas, kept type.
/// Spelled `SCHEME[:PHASES[:KEPT]]`, e.g. `upstream:pei+dxe`, `reporter:dxe`,
/// `upstream:pei+dxe:caa-bs-data`.
public struct SaveAreaPolicy: Hashable, Sendable, Codable, CustomStringConvertible {
    public var scheme: SaveAreaScheme
    public var phases: [FirmwarePhase]
    public var kept: KeptPageType

    public init(_ scheme: SaveAreaScheme, phases: [FirmwarePhase], kept: KeptPageType = .reserved) {
        self.scheme = scheme
        self.phases = FirmwarePhase.allCases.filter(phases.contains)
        self.kept = kept
    }

    public var phasesName: String { phases.map(\.rawValue).joined(separator: "+") }
    public var name: String { "\(scheme):\(phasesName)" + (kept == .reserved ? "" : ":\(kept)") }
    public var description: String { name }

    /// The six policies the issue asks for: each scheme in PEI, in DXE, in both.
    public static let all: [SaveAreaPolicy] = SaveAreaScheme.allCases.flatMap { s in
        [[FirmwarePhase.pei], [.dxe], [.pei, .dxe]].map { SaveAreaPolicy(s, phases: $0) }
    }

    public static func parse(_ text: String) -> SaveAreaPolicy? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard (1...3).contains(parts.count), let scheme = SaveAreaScheme(rawValue: parts[0]) else { return nil }
        var phases: [FirmwarePhase] = [.pei, .dxe]
        if parts.count >= 2 {
            let names = parts[1].split(separator: "+").map(String.init)
            let parsed = names.compactMap(FirmwarePhase.init(rawValue:))
            guard !names.isEmpty, parsed.count == names.count, Set(parsed).count == parsed.count else { return nil }
            phases = parsed
        }
        var kept = KeptPageType.reserved
        if parts.count == 3 {
            guard let k = KeptPageType(rawValue: parts[2]) else { return nil }
            kept = k
        }
        return SaveAreaPolicy(scheme, phases: phases, kept: kept)
    }

    /// One line for people.
    public var summary: String {
        let how: String
        switch scheme {
        case .reporter: how = "the reporter's build: per AP 2 Reserved pages (VMSA, CAA), the VMSA freed after all APs started"
        case .upstream: how = "upstream edk2: per AP 3 Reserved pages, VMSA + CAA kept, one freed (first, or third on the 2 MiB erratum)"
        }
        let keptText: String
        switch kept {
        case .reserved: keptText = ""
        case .caaBootServicesData: keptText = "; variant: the CAA page kept as EfiBootServicesData"
        case .allBootServicesData: keptText = "; variant: VMSA and CAA pages kept as EfiBootServicesData"
        }
        return "\(how); in \(phases.map(\.description).joined(separator: " and "))\(keptText)"
    }
}

/// One AP's save area as a phase left it.
public struct FirmwareSaveArea: Sendable, Codable, Hashable {
    /// 1-based AP index (`CpuData[Index]`, the BSP has none).
    public let ap: Int
    public let phase: FirmwarePhase
    /// The block `AllocateReservedPages` returned.
    public let allocated: PageRange
    public let vmsa: PhysicalAddress
    public let caa: PhysicalAddress
    /// The page(s) given back with `FreePages`.
    public let freed: [PageRange]
    /// Upstream: `Pages + 4 KiB` was 2 MiB aligned, so the third page was freed.
    public let erratumBranch: Bool
    /// The pages this AP still holds after the phase.
    public let kept: [PageRange]
}

/// Creates the save areas of one phase for APs 1...apCount with a policy, through that
/// phase's allocator — the policies as functions of (AP index, phase).
public enum SaveAreaCreation {
    public static func run<A: FirmwarePageAllocator>(
        _ policy: SaveAreaPolicy, phase: FirmwarePhase, apCount: Int, allocator: inout A
    ) throws(FirmwareAllocationError) -> [FirmwareSaveArea] {
        guard apCount > 0 else { return [] }
        var areas: [FirmwareSaveArea] = []
        switch policy.scheme {
        case .upstream:
            for ap in 1...apCount {
                areas.append(try upstream(ap: ap, phase: phase, allocator: &allocator))
            }
        case .reporter:
            var pairs: [(Int, UInt64)] = []
            for ap in 1...apCount {
                pairs.append((ap, try allocator.allocatePages(2, type: .reservedMemoryType)))
            }
            // After every AP has been started, the VMSA pages are freed; the CAAs leak.
            for (ap, first) in pairs {
                let vmsa = PageRange(first: first, count: 1)
                try allocator.freePages(vmsa)
                areas.append(FirmwareSaveArea(
                    ap: ap, phase: phase, allocated: PageRange(first: first, count: 2),
                    vmsa: vmsa.base, caa: PhysicalAddress(page: first + 1), freed: [vmsa],
                    erratumBranch: false, kept: [PageRange(first: first + 1, count: 1)]))
            }
        }
        try applyKeptType(policy.kept, to: areas, allocator: &allocator)
        return areas
    }

    /// `SevSnpCreateSaveArea` on its first call for an AP (later calls reuse the area).
    static func upstream<A: FirmwarePageAllocator>(ap: Int, phase: FirmwarePhase, allocator: inout A) throws(FirmwareAllocationError) -> FirmwareSaveArea {
        let pageCount: UInt64 = 2                      // AmdSvsmIsSvsmPresent () ? 2 : 1
        let pages = try allocator.allocatePages(pageCount + 1, type: .reservedMemoryType)
        let erratum = PhysicalAddress(page: pages + 1).is2MiBAligned   // _IS_ALIGNED (Pages + EFI_PAGE_SIZE, SIZE_2MB)
        let vmsa = erratum ? pages : pages + 1
        let freed = PageRange(first: erratum ? pages + pageCount : pages, count: 1)
        try allocator.freePages(freed)
        return FirmwareSaveArea(
            ap: ap, phase: phase, allocated: PageRange(first: pages, count: pageCount + 1),
            vmsa: PhysicalAddress(page: vmsa), caa: PhysicalAddress(page: vmsa + 1), freed: [freed],
            erratumBranch: erratum, kept: [PageRange(first: vmsa, count: pageCount)])
    }

    private static func applyKeptType<A: FirmwarePageAllocator>(_ kept: KeptPageType, to areas: [FirmwareSaveArea], allocator: inout A) throws(FirmwareAllocationError) {
        guard kept != .reserved else { return }
        for area in areas {
            for range in area.kept {
                for page in range.pages where kept == .allBootServicesData || page == area.caa.page {
                    try allocator.retype(PageRange(first: page, count: 1), to: .bootServicesData)
                }
            }
        }
    }
}
