import Foundation

// MARK: - Why did the boot hang? Candidates, not a verdict

/// The sources do not settle why the reported 120+ vCPU boot hung. Each candidate mechanism
/// predicts a number; the model computes it per policy, with the smallest vCPU count at which
/// the mechanism would trigger in this layout.
public struct HangAnalysis: Sendable, Codable {
    public let settled: Bool
    public let statement: String
    public let candidates: [HangCandidate]

    static func run(scenario: CaaAllocationScenario, figures: [CaaAllocationFigures], scanOnsets: Bool) throws(FirmwareBoot.BootError) -> HangAnalysis {
        let mechanisms = HangMechanism.allCases
        var predictions: [HangMechanism: [HangCandidate.Prediction]] = [:]
        for (policy, f) in zip(scenario.policies, figures) {
            var onset: [HangMechanism: (vcpus: Int, metrics: HangMetrics)] = [:]
            if scanOnsets {
                var open = Set(mechanisms)
                for n in FirmwareBoot.vcpuRange where !open.isEmpty {
                    let fn = HangMetrics(try scenario.boot(policy, vcpus: n))
                    for m in open where m.triggers(fn) {
                        onset[m] = (n, fn)
                        open.remove(m)
                    }
                }
            }
            let metrics = HangMetrics(f)
            for m in mechanisms {
                predictions[m, default: []].append(HangCandidate.Prediction(
                    policy: policy.name, figure: m.figure(metrics), triggered: m.triggers(metrics),
                    onsetVcpus: onset[m]?.vcpus, scanned: scanOnsets,
                    swiotlbIfItBites: m.triggers(metrics) ? m.swiotlbIfItBites(metrics) : nil,
                    swiotlbAtOnset: onset[m].flatMap { m.swiotlbIfItBites($0.metrics) }))
            }
        }
        return HangAnalysis(
            settled: false,
            statement: "The sources do not settle why the reported boot hung: the report gives no memory size, kernel version, NODES_SHIFT or log beyond \"hangs while allocating a 256 MiB memblock for SWIOTLB\" (the report is known only from Gerd Hoffmann's quote of it, svsm-devel 2025-May/000572). These are the mechanisms the sources allow, with the number each predicts for this layout; none is asserted as the cause.",
            candidates: mechanisms.map { m in
                HangCandidate(id: m.rawValue, mechanism: m.mechanism, trigger: m.trigger, source: m.source,
                              consequence: m.consequence, open: m.open, predictions: predictions[m] ?? [])
            })
    }
}

public struct HangCandidate: Sendable, Codable {
    public let id: String
    public let mechanism: String
    public let trigger: String
    public let source: String
    public let consequence: String
    public let open: String
    public let predictions: [Prediction]

    public struct Prediction: Sendable, Codable {
        public let policy: String
        public let figure: String
        public let triggered: Bool
        /// Smallest vCPU count (1...512) at which it triggers; nil: none, or not scanned.
        public let onsetVcpus: Int?
        public let scanned: Bool
        /// For the mechanisms that cost the kernel RAM, when they trigger: the SWIOTLB size
        /// the kernel would then compute (the thread says 256 MiB) — here, and at the onset.
        public let swiotlbIfItBites: UInt64?
        public let swiotlbAtOnset: UInt64?
    }
}

enum HangMechanism: String, CaseIterable, Sendable {
    case swiotlbNoBlock = "swiotlb-no-low-block"
    case e820TableFull = "kernel-e820-table-full"
    case e820TableFullMaxsmp = "kernel-e820-table-full-maxsmp"
    case memblockDoubling = "memblock-memory-doubling"
    case zeroPageOverflow = "boot-params-e820-overflow"

    var mechanism: String {
        switch self {
        case .swiotlbNoBlock: return "memblock_alloc_low finds no free block of the SWIOTLB size below 4 GiB"
        case .e820TableFull: return "the kernel's e820 table is full (NODES_SHIFT=6: 320 entries)"
        case .e820TableFullMaxsmp: return "the kernel's e820 table is full (NODES_SHIFT=10, MAXSMP: 3200 entries)"
        case .memblockDoubling: return "memblock.memory outgrows its 128 initial regions while e820__memblock_setup runs"
        case .zeroPageOverflow: return "more e820 entries than boot_params holds (128): the rest travel in SETUP_E820_EXT"
        }
    }
    var trigger: String {
        switch self {
        case .swiotlbNoBlock: return "largest free block below 4 GiB < SWIOTLB size"
        case .e820TableFull: return "e820 entries > 320"
        case .e820TableFullMaxsmp: return "e820 entries > 3200"
        case .memblockDoubling: return "RAM entries kept > 128"
        case .zeroPageOverflow: return "e820 entries > 128"
        }
    }
    var source: String {
        switch self {
        case .swiotlbNoBlock: return "kernel/dma/swiotlb.c swiotlb_memblock_alloc (memblock_alloc_low without SWIOTLB_ANY), swiotlb_init_remap"
        case .e820TableFull, .e820TableFullMaxsmp: return "arch/x86/kernel/e820.c __e820__range_add (\"too many entries; ignoring\"); asm/e820/types.h E820_MAX_ENTRIES"
        case .memblockDoubling: return "arch/x86/kernel/e820.c e820__memblock_setup (memblock_allow_resize, current limit ISA_END_ADDRESS); mm/memblock.c memblock_double_array"
        case .zeroPageOverflow: return "drivers/firmware/efi/libstub/x86-stub.c allocate_e820, alloc_e820ext; arch/x86/kernel/e820.c parse_e820_ext"
        }
    }
    var consequence: String {
        switch self {
        case .swiotlbNoBlock: return "current kernels halve the size until a block fits (\"SWIOTLB bounce buffer size adjusted\"); with nothing left every DMA bounce fails — a stall waiting for the root disk is plausible, a hang inside the allocation is not what the code does"
        case .e820TableFull, .e820TableFullMaxsmp: return "the highest entries are dropped: RAM above 4 GiB and the top of low RAM vanish, so the kernel sees less memory (and sizes SWIOTLB smaller)"
        case .memblockDoubling: return "memblock_double_array must find the doubled array below 1 MiB (the current limit during e820__memblock_setup); if it cannot, \"Failed to double memory array\" and memblock_add fails for the remaining RAM"
        case .zeroPageOverflow: return "harmless through the EFI stub, which allocates the extension; only a loader that fills boot_params itself without SETUP_E820_EXT would lose the rest"
        }
    }
    var open: String {
        switch self {
        case .swiotlbNoBlock: return "the reporter's memory size and low-memory layout"
        case .e820TableFull, .e820TableFullMaxsmp: return "NODES_SHIFT of the reporter's kernels"
        case .memblockDoubling: return "which pages below 1 MiB are free at that point; whether the failure hangs rather than panics"
        case .zeroPageOverflow: return "the reporter's boot path (stub or not)"
        }
    }

    func triggers(_ f: HangMetrics) -> Bool {
        switch self {
        case .swiotlbNoBlock: return f.largestFreeBytes < f.swiotlbBytes
        case .e820TableFull: return f.e820Entries > LinuxE820Limits.kernelTableEntries(nodesShift: 6)
        case .e820TableFullMaxsmp: return f.e820Entries > LinuxE820Limits.kernelTableEntries(nodesShift: 10)
        case .memblockDoubling: return f.memblockRegions > LinuxE820Limits.memblockInitialRegions
        case .zeroPageOverflow: return f.e820Entries > LinuxE820Limits.zeroPageEntries
        }
    }

    func swiotlbIfItBites(_ f: HangMetrics) -> UInt64? {
        switch self {
        case .e820TableFull: return f.swiotlbBytes                 // the NODES_SHIFT=6 view already drops
        case .memblockDoubling: return f.swiotlbBytesWithin128Regions
        default: return nil
        }
    }

    func figure(_ f: HangMetrics) -> String {
        switch self {
        case .swiotlbNoBlock: return "largest \(ByteCount.format(f.largestFreeBytes)) vs \(ByteCount.format(f.swiotlbBytes))"
        case .e820TableFull, .e820TableFullMaxsmp, .zeroPageOverflow: return "\(f.e820Entries) e820 entries"
        case .memblockDoubling: return "\(f.memblockRegions) RAM regions"
        }
    }
}

/// The few numbers the hang candidates test, computed without the rest of the figures (the
/// onset scan boots the model up to 512 times per policy).
struct HangMetrics {
    let e820Entries: Int
    let memblockRegions: Int
    let largestFreeBytes: UInt64
    let swiotlbBytes: UInt64
    /// SWIOTLB if memblock.memory could not grow past 128 regions: only the first 128 RAM
    /// entries count.
    let swiotlbBytesWithin128Regions: UInt64

    init(_ boot: FirmwareBootResult) {
        self.init(e820: EfiStubE820.convert(boot.efiMemoryMap), efi: boot.efiMemoryMap, vcpus: boot.vcpus)
    }

    init(_ f: CaaAllocationFigures) {
        self.init(e820: f.e820, efi: f.efiMemoryMap, vcpus: f.vcpus)
    }

    private init(e820: [E820Entry], efi: [EfiMemoryDescriptor], vcpus: Int) {
        let view = KernelE820View(e820: e820, nodesShift: 6)
        let kept = Array(e820.prefix(view.maxEntries))
        e820Entries = e820.count
        memblockRegions = view.memblockRegions
        largestFreeBytes = LowMemoryAtSwiotlb.largest(LowMemoryAtSwiotlb.freeBlocks(efi: efi, keptRam: kept))?.bytes ?? 0
        swiotlbBytes = SwiotlbSizing(memBytes: view.ramBytes, possibleCpus: vcpus).bytes
        let first128 = kept.filter { $0.type == .ram }.prefix(LinuxE820Limits.memblockInitialRegions).reduce(0) { $0 + $1.range.bytes }
        swiotlbBytesWithin128Regions = SwiotlbSizing(memBytes: first128, possibleCpus: vcpus).bytes
    }
}
