import Foundation

/// The figures of one policy's boot: the EFI memory map the OS receives, its e820 form, the
/// limits on the way into Linux, and SWIOTLB.
public struct CaaAllocationFigures: Sendable, Codable {
    public let policy: String
    public let summary: String
    public let vcpus: Int

    public let efiDescriptors: Int
    public let efiDescriptorsBelow4GiB: Int
    public let efiDescriptorsByType: [String: Int]
    public let reservedPages: UInt64
    public let saveAreaReservedPages: UInt64
    public let phases: [PhaseFigures]
    public let largestFreeBelow4GiB: PageRange?

    public let e820Entries: Int
    public let e820RamEntries: Int
    public let e820ReservedEntries: Int
    /// `boot_params.e820_table` entries and the `SETUP_E820_EXT` remainder.
    public let zeroPageEntries: Int
    public let setupE820ExtEntries: Int
    public let kernel: [KernelE820View]
    public let swiotlb: SwiotlbFigures

    /// Full tables, for scripts.
    public let efiMemoryMap: [EfiMemoryDescriptor]
    public let e820: [E820Entry]

    public struct PhaseFigures: Sendable, Codable {
        public let phase: FirmwarePhase
        public let saveAreas: Int
        /// Pages from the lowest to the highest save-area block.
        public let span: PageRange
        /// Reserved descriptors holding this phase's save-area pages.
        public let reservedBlocks: [PageRange]
        /// APs whose block took the erratum branch (third page freed).
        public let erratumAps: [Int]
        /// The longest run of single-page descriptors alternating Reserved / usable.
        public let alternatingRun: AlternatingRun?
    }

    public struct AlternatingRun: Sendable, Codable, Hashable {
        public let range: PageRange
        public let descriptors: Int
        public let reservedPages: Int
        public let usablePages: Int
    }

    public struct SwiotlbFigures: Sendable, Codable {
        /// NODES_SHIFT whose kernel view feeds the figures (6, the x86_64 default).
        public let nodesShift: Int
        public let sizing: SwiotlbSizing
        public let bytes: UInt64
        public let largestFreeBytes: UInt64
        public let fits: Bool
        /// What the halving loop would settle on; nil: SWIOTLB left empty.
        public let sizeAfterHalving: UInt64?
    }

    public init(_ boot: FirmwareBootResult) {
        policy = boot.policy.name
        summary = boot.policy.summary
        vcpus = boot.vcpus
        let map = boot.efiMemoryMap
        efiMemoryMap = map
        efiDescriptors = map.count
        efiDescriptorsBelow4GiB = map.filter { $0.range.first < LowMemoryAtSwiotlb.limit }.count
        efiDescriptorsByType = Dictionary(grouping: map, by: { $0.type.specName }).mapValues(\.count)
        reservedPages = map.filter { $0.type == .reservedMemoryType }.reduce(0) { $0 + $1.range.count }
        saveAreaReservedPages = boot.saveAreaReservedPages
        phases = boot.policy.phases.compactMap { phase in
            guard let span = boot.saveAreaSpan(phase) else { return nil }
            return PhaseFigures(
                phase: phase, saveAreas: boot.saveAreas(in: phase).count, span: span,
                reservedBlocks: boot.reservedBlocks(holding: phase),
                erratumAps: boot.saveAreas(in: phase).filter(\.erratumBranch).map(\.ap),
                alternatingRun: Self.longestAlternatingRun(in: map, within: span))
        }

        let e820 = EfiStubE820.convert(map)
        self.e820 = e820
        e820Entries = e820.count
        e820RamEntries = e820.filter { $0.type == .ram }.count
        e820ReservedEntries = e820.filter { $0.type == .reserved }.count
        zeroPageEntries = min(e820.count, LinuxE820Limits.zeroPageEntries)
        setupE820ExtEntries = max(0, e820.count - LinuxE820Limits.zeroPageEntries)
        kernel = LinuxE820Limits.nodesShifts.map { KernelE820View(e820: e820, nodesShift: $0) }

        let view = kernel[0]
        let kept = Array(e820.prefix(view.maxEntries))
        let free = LowMemoryAtSwiotlb.freeBlocks(efi: map, keptRam: kept)
        largestFreeBelow4GiB = LowMemoryAtSwiotlb.largest(free)
        let sizing = SwiotlbSizing(memBytes: view.ramBytes, possibleCpus: boot.vcpus)
        let largest = largestFreeBelow4GiB?.bytes ?? 0
        swiotlb = SwiotlbFigures(
            nodesShift: view.nodesShift, sizing: sizing, bytes: sizing.bytes, largestFreeBytes: largest,
            fits: largest >= sizing.bytes, sizeAfterHalving: sizing.sizeThatFits(largestFreeBytes: largest))
    }

    public var memblockRegions: Int { kernel[0].memblockRegions }

    /// Single-page descriptors alternating between Reserved and usable RAM (conventional,
    /// boot-services, loader) — the thread's "1 reserved and 1 usable page alternating".
    static func longestAlternatingRun(in map: [EfiMemoryDescriptor], within window: PageRange) -> AlternatingRun? {
        func kind(_ d: EfiMemoryDescriptor) -> Bool? {
            guard d.range.count == 1 else { return nil }
            if d.type == .reservedMemoryType { return true }
            return EfiStubE820.e820Type(d.type) == .ram ? false : nil
        }
        var best: ArraySlice<EfiMemoryDescriptor> = []
        var start = 0
        let inWindow = map.filter { $0.range.overlaps(window) }
        var i = 0
        while i < inWindow.count {
            guard let k = kind(inWindow[i]) else { i += 1; start = i; continue }
            if i > start, let prev = kind(inWindow[i - 1]), prev == k || inWindow[i - 1].range.end != inWindow[i].range.first {
                start = i
            }
            if i - start + 1 > best.count { best = inWindow[start...i] }
            i += 1
        }
        guard best.count >= 2, let first = best.first, let last = best.last else { return nil }
        let reserved = best.filter { $0.type == .reservedMemoryType }.count
        return AlternatingRun(range: PageRange(pages: first.range.first..<last.range.end), descriptors: best.count,
                              reservedPages: reserved, usablePages: best.count - reserved)
    }
}
