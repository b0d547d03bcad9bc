import Foundation

/// `efivarfs-bridge scenario caa-allocation`: the memory map the OS receives with N vCPUs
/// under each save-area policy, how it compares with the limits on the way into Linux, and
/// which firmware CAA pages each route to the variable store needs (`RouteAnalysis`).
public struct CaaAllocationScenario: Sendable {
    public let vcpus: Int
    public let policies: [SaveAreaPolicy]
    public let layout: GuestMemoryLayout
    public let plan: FirmwareAllocationPlan

    /// The thread's default comparison: the reporter's leak in the first phase (PEI) and
    /// upstream edk2 as the code runs it (both phases).
    public static let defaultPolicies = [
        SaveAreaPolicy(.reporter, phases: [.pei]), SaveAreaPolicy(.upstream, phases: [.pei, .dxe]),
    ]
    /// The route analysis computes the map at this many vCPUs.
    public static let routeVcpus = 512

    public init(vcpus: Int, policies: [SaveAreaPolicy] = defaultPolicies, layout: GuestMemoryLayout,
                plan: FirmwareAllocationPlan = FirmwareAllocationPlan()) throws(FirmwareBoot.BootError) {
        guard FirmwareBoot.vcpuRange.contains(vcpus) else { throw .vcpus(vcpus) }
        self.vcpus = vcpus
        self.policies = policies.isEmpty ? Self.defaultPolicies : policies
        self.layout = layout
        self.plan = plan
    }

    public func boot(_ policy: SaveAreaPolicy, vcpus n: Int? = nil) throws(FirmwareBoot.BootError) -> FirmwareBootResult {
        try FirmwareBoot(vcpus: n ?? vcpus, policy: policy, layout: layout, plan: plan).run()
    }

    /// Runs every policy, the checks, the hang candidates (with a scan over 1...512 vCPUs
    /// for their onsets unless `scanOnsets` is false) and the route analysis.
    public func run(scanOnsets: Bool = true) throws(FirmwareBoot.BootError) -> (report: CaaAllocationReport, boots: [FirmwareBootResult]) {
        var boots: [FirmwareBootResult] = []
        for p in policies { boots.append(try boot(p)) }
        let figures = boots.map(CaaAllocationFigures.init)
        let checks = zip(boots, figures).flatMap { SourceChecks.run($0, $1) }
        let hang = try HangAnalysis.run(scenario: self, figures: figures, scanOnsets: scanOnsets)
        let routes = try RouteAnalysis.run(scenario: self)
        let report = CaaAllocationReport(
            vcpus: vcpus, layout: LayoutSummary(layout: layout, plan: plan, vcpus: vcpus, boot: boots.first),
            policies: figures, checks: checks, hang: hang, routes: routes)
        return (report, boots)
    }
}

/// Everything the command prints, as one document (`--json`).
public struct CaaAllocationReport: Sendable, Codable {
    public let vcpus: Int
    public let layout: LayoutSummary
    public let policies: [CaaAllocationFigures]
    public let checks: [SourceCheck]
    public let hang: HangAnalysis
    public let routes: RouteAnalysis

    /// Exit 0 only if no figure contradicts what the sources and the thread say.
    public var figuresMatchSources: Bool { !checks.contains { $0.verdict == .mismatch } }
}

public struct LayoutSummary: Sendable, Codable {
    public let ramBytes: UInt64
    public let lowRam: PageRange
    public let highRam: PageRange?
    public let peiMemory: PageRange?
    public let fixedRegions: [GuestMemoryLayout.FixedRegion]
    public let bins: [MemoryTypeBin]
    public let plan: FirmwareAllocationPlan
    /// The SWIOTLB size band this RAM size falls in.
    public let swiotlbBand: String

    init(layout: GuestMemoryLayout, plan: FirmwareAllocationPlan, vcpus: Int, boot: FirmwareBootResult?) {
        ramBytes = layout.ramBytes
        lowRam = layout.lowRam
        highRam = layout.highRam
        peiMemory = boot?.peiMemory
        fixedRegions = GuestMemoryLayout.fixedRegions
        bins = boot?.bins ?? []
        self.plan = plan
        let size = SwiotlbSizing(memBytes: layout.ramBytes, possibleCpus: vcpus).bytes
        if let band = SwiotlbSizing.memoryBand(forBytes: size) {
            swiotlbBand = "\(ByteCount.format(size)) for \(ByteCount.format(band.lowerBound)) to \(ByteCount.format(band.upperBound)) of memblock memory"
        } else {
            swiotlbBand = ByteCount.format(size)
        }
    }
}

// MARK: - Checks against the sources and the thread

/// One comparison of a model figure with what a source or the thread says.
public struct SourceCheck: Sendable, Codable {
    public enum Verdict: String, Sendable, Codable {
        /// The figure is what the source says.
        case match
        /// The figure differs from a sentence of the thread for a reason the sources give
        /// (explained in `note`); not a failure.
        case differs
        /// The figure contradicts the source: the model is wrong somewhere. Exit 1.
        case mismatch
    }
    public let policy: String
    public let claim: String
    public let source: String
    public let expected: String
    public let observed: String
    public let verdict: Verdict
    public let note: String
}

enum SourceChecks {
    static let thread = "svsm-devel 2025-May/000572 (Gerd Hoffmann quoting the report)"

    static func run(_ boot: FirmwareBootResult, _ f: CaaAllocationFigures) -> [SourceCheck] {
        var out: [SourceCheck] = []
        let a = boot.apCount, name = boot.policy.name
        let phases = boot.policy.phases
        func add(_ claim: String, _ source: String, _ expected: String, _ observed: String, _ v: SourceCheck.Verdict, _ note: String = "") {
            out.append(SourceCheck(policy: name, claim: claim, source: source, expected: expected, observed: observed, verdict: v, note: note))
        }

        // Internal consistency of the stub's conversion.
        add("the EFI stub's e820 table has no more entries than the EFI map", "torvalds/linux x86-stub.c setup_e820",
            "≤ \(f.efiDescriptors)", "\(f.e820Entries)", f.e820Entries <= f.efiDescriptors ? .match : .mismatch)

        guard a > 0 else { return out }
        let reservedKept = boot.policy.kept == .reserved
        switch boot.policy.scheme {
        case .upstream:
            let shapeOK = boot.saveAreas.allSatisfy {
                $0.allocated.count == 3 && $0.freed.map(\.count).reduce(0, +) == 1 && $0.kept.map(\.count).reduce(0, +) == 2
                    && $0.caa.value == $0.vmsa.value + PhysicalAddress.pageSize
            }
            add("each AP: 3 pages allocated, 1 freed, VMSA + CAA (= VMSA + 4 KiB) kept, per phase",
                "tianocore/edk2 UefiCpuPkg/Library/MpInitLib/X64/AmdSev.c SevSnpCreateSaveArea; OvmfPkg AmdSvsmLib.c SvsmVmsaRmpAdjust",
                "\(a) APs × \(phases.count) phase(s)", "\(boot.saveAreas.count) save areas, shape \(shapeOK ? "as coded" : "WRONG")",
                shapeOK && boot.saveAreas.count == a * phases.count ? .match : .mismatch)
            if reservedKept {
                let want = UInt64(2 * a * phases.count)
                add("two Reserved pages per AP per phase", "AmdSev.c SevSnpCreateSaveArea (AllocateReservedPages)",
                    "\(want) pages", "\(f.saveAreaReservedPages) pages", f.saveAreaReservedPages == want ? .match : .mismatch)
            }
            let aligned = boot.saveAreas.filter(\.vmsa.is2MiBAligned)
            add("no VMSA on a 2 MiB boundary", "AMD erratum #1467, AmdSev.c (\"VMSA cannot be on a 2MB boundary\")",
                "0 aligned VMSAs", "\(aligned.count)", aligned.isEmpty ? .match : .mismatch)
            if reservedKept {
                // Top-down allocation packs a phase's save areas: one Reserved block, split
                // only where an erratum hole lies between two APs, plus the Reserved bin that
                // holds DXE's first save area.
                let reservedBin = boot.bins.first { $0.type == .reservedMemoryType }?.range
                for p in f.phases {
                    let areas = boot.saveAreas(in: p.phase)
                    let inBin = areas.filter { a in reservedBin.map { $0.contains(a.allocated) } ?? false }
                    let run = areas.filter { a in !inBin.contains(a) }
                    let splits = run.dropFirst().filter(\.erratumBranch).count
                    let want = (run.isEmpty ? 0 : 1 + splits) + (inBin.isEmpty ? 0 : 1)
                    add("top-down allocation packs the \(p.phase) save areas next to each other",
                        "Page.c CoreFindFreePagesI / MemoryServices.c PeiAllocatePages (top-down); \(thread), Gerd Hoffmann",
                        "\(want) Reserved block(s): 1" + (splits > 0 ? " + \(splits) split by erratum holes" : "") + (inBin.isEmpty ? "" : " + the Reserved bin"),
                        "\(p.reservedBlocks.count)", p.reservedBlocks.count == want ? .match : .mismatch)
                }
                let blocks = f.phases.flatMap(\.reservedBlocks)
                var reasons: [String] = []
                if phases.count > 1 { reasons.append("edk2 allocates again in DXE: CpuDxe's CPU_MP_DATA starts zeroed, so every AP gets a second save area (tianocore/edk2 UefiCpuPkg/Library/MpInitLib/MpLib.c MpInitLibInitialize at 189dedb2: ZeroMem (MpBuffer, BufferSize), save-area pointers not handed over from PEI); one block per phase") }
                if phases.contains(.dxe) { reasons.append("DXE's first save area goes to the 4-page Reserved bin (Page.c FindFreePages tries the type's bin first), the rest below the bins") }
                for p in f.phases where !p.erratumAps.isEmpty {
                    reasons.append("\(p.phase): AP \(p.erratumAps.map(String.init).joined(separator: ", ")) took the erratum branch, whose freed third page is a hole splitting the block")
                }
                add("\"a single reserved memory block with two pages per processor (except boot processor)\"", "\(thread), Gerd Hoffmann",
                    "1 block, \(2 * a) pages", "\(blocks.count) block(s), \(f.saveAreaReservedPages) pages",
                    blocks.count == 1 ? .match : .differs, reasons.joined(separator: "; "))
            }
        case .reporter:
            if reservedKept {
                let want = UInt64(a * phases.count)
                add("the Reserved pages are the CAA pages; the VMSA pages were freed", thread,
                    "\(want) Reserved pages (one CAA per AP per phase)", "\(f.saveAreaReservedPages)",
                    f.saveAreaReservedPages == want ? .match : .mismatch)
                if a >= 4 {
                    let target = 2 * boot.vcpus, slack = max(8, target / 20)
                    for p in f.phases {
                        let run = p.alternatingRun?.descriptors ?? 0
                        add("\"a section of about 2x #vcpus where there is 1 reserved and 1 usable page alternating\" (\(p.phase))", thread,
                            "about \(target) single pages (±\(slack))",
                            "\(run) (\(p.alternatingRun?.reservedPages ?? 0) Reserved, \(p.alternatingRun?.usablePages ?? 0) usable)",
                            abs(run - target) <= slack ? .match : .mismatch,
                            "the run's ends: the lowest VMSA merges with the free memory below it; in DXE the first two APs sit in the Reserved bin, whose free pages the map reports as Reserved")
                    }
                }
                add("\"it's only the CAA pages from the first allocation that are getting leaked\"", thread,
                    "one phase (the first) leaks", "\(phases.map(\.description).joined(separator: " and ")) leak(s)",
                    phases == [.pei] ? .match : .differs,
                    phases == [.pei] ? "" : "this policy leaks in \(phases.map(\.description).joined(separator: " and ")), not only in the first phase")
            }
        }

        let band = SwiotlbSizing.memoryBand(forBytes: 256 * ByteCount.mib)
        add("the SWIOTLB that failed was 256 MiB", "\(thread); arch/x86/mm/mem_encrypt.c mem_encrypt_setup_arch, kernel/dma/swiotlb.c",
            "256 MiB", ByteCount.format(f.swiotlb.bytes), f.swiotlb.bytes == 256 * ByteCount.mib ? .match : .differs,
            f.swiotlb.bytes == 256 * ByteCount.mib ? "" : "6 % of the RAM the kernel keeps rounds to \(ByteCount.format(f.swiotlb.bytes)); 256 MiB needs \(band.map { "\(ByteCount.format($0.lowerBound)) to \(ByteCount.format($0.upperBound))" } ?? "?") of memblock memory"
                + (f.kernel[0].dropped.isEmpty ? "" : " — here the e820 table overflowed and dropped \(ByteCount.format(f.kernel[0].dropped.filter { $0.type == .ram }.reduce(0) { $0 + $1.range.bytes })) of RAM"))
        add("the kernel hung allocating that block from low memory", thread,
            "no free \(ByteCount.format(f.swiotlb.bytes)) block below 4 GiB", "largest free block \(ByteCount.format(f.swiotlb.largestFreeBytes))",
            f.swiotlb.fits ? .differs : .match,
            f.swiotlb.fits ? "in this layout the fragmentation sits in a few MiB at the top of low RAM; the block still fits, so the map alone does not explain the hang (see the candidates)" : "")
        return out
    }
}
