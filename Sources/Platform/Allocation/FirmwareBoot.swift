import Foundation

/// A firmware allocation other than a save area, with what it stands for.
public struct LabelledAllocation: Sendable, Codable, Hashable {
    public let range: PageRange
    public let type: EfiMemoryType
    public let phase: FirmwarePhase
    public let what: String
}

/// The firmware's boot, PEI then DXE, as far as page allocations go — run for one save-area
/// policy — ending with the memory map `GetMemoryMap` returns at ExitBootServices.
public struct FirmwareBoot: Sendable {
    public let vcpus: Int
    public let policy: SaveAreaPolicy
    public let layout: GuestMemoryLayout
    public let plan: FirmwareAllocationPlan

    public static let vcpuRange = 1...512

    public enum BootError: Error, CustomStringConvertible {
        case vcpus(Int)
        case layout(String)
        case allocation(FirmwareAllocationError)
        public var description: String {
            switch self {
            case .vcpus(let n): return "--vcpus must be between 1 and 512 (got \(n))"
            case .layout(let s): return "layout: \(s)"
            case .allocation(let e): return "firmware allocation: \(e)"
            }
        }
    }

    public init(vcpus: Int, policy: SaveAreaPolicy, layout: GuestMemoryLayout, plan: FirmwareAllocationPlan = FirmwareAllocationPlan()) throws(BootError) {
        guard Self.vcpuRange.contains(vcpus) else { throw .vcpus(vcpus) }
        self.vcpus = vcpus
        self.policy = policy
        self.layout = layout
        self.plan = plan
    }

    public var apCount: Int { vcpus - 1 }

    public func run() throws(BootError) -> FirmwareBootResult {
        let base: EfiMemoryMap
        do { base = try layout.baseMap() } catch { throw .layout("\(error)") }
        do {
            return try boot(from: base)
        } catch {
            throw .allocation(error)
        }
    }

    private func boot(from base: EfiMemoryMap) throws(FirmwareAllocationError) -> FirmwareBootResult {
        var labelled: [LabelledAllocation] = []
        var areas: [FirmwareSaveArea] = []

        // PEI: permanent memory is the top of low RAM (OvmfPkg/PlatformPei/MemDetect.c
        // PublishPeiMemory: MemoryBase = LowerMemorySize - PeiMemoryCap).
        let peiPages = plan.peiMemoryPages(vcpus: vcpus)
        let low = layout.lowRam
        guard low.count > peiPages + 0x1200 else { throw .outOfResources(pages: peiPages, type: .conventionalMemory) }
        let peiMemory = PageRange(first: low.end - peiPages, count: peiPages)
        var pei = try PeiPageAllocator(map: base, memory: peiMemory)
        func peiAlloc(_ pages: UInt64, _ type: EfiMemoryType, _ what: String) throws(FirmwareAllocationError) {
            let first = try pei.allocatePages(pages, type: type)
            labelled.append(LabelledAllocation(range: PageRange(first: first, count: pages), type: type, phase: .pei, what: what))
        }
        try peiAlloc(plan.peiBeforeCpuMpPages, .bootServicesData, "PEI core and PEIMs before CpuMpPei")
        try peiAlloc(plan.mpBufferPages(vcpus: vcpus), .bootServicesData, "CpuMpPei: AP stacks and CPU_MP_DATA")
        if policy.phases.contains(.pei) {
            areas += try SaveAreaCreation.run(policy, phase: .pei, apCount: apCount, allocator: &pei)
        }
        try peiAlloc(plan.dxeIplPages, .bootServicesCode, "DXE IPL: DXE core image, stack, page tables")

        // DXE: the core starts from PEI's free range and carves the bins from its top.
        var dxe = try DxePageAllocator(map: pei.map, firstMemory: pei.freeRange,
                                       memoryTypeInformation: FirmwareAllocationPlan.ovmfMemoryTypeInformation)
        func dxeAlloc(_ pages: UInt64, _ type: EfiMemoryType, _ what: String) throws(FirmwareAllocationError) {
            let first = try dxe.allocatePages(pages, type: type)
            labelled.append(LabelledAllocation(range: PageRange(first: first, count: pages), type: type, phase: .dxe, what: what))
        }
        for bin in dxe.bins where plan.binsFilledBeforeCpuDxe.contains(bin.type) {
            try dxeAlloc(bin.range.count, bin.type, "DXE drivers before CpuDxe (\(bin.type) bin)")
        }
        try dxeAlloc(plan.mpBufferPages(vcpus: vcpus), .bootServicesData, "CpuDxe: AP stacks and CPU_MP_DATA")
        if policy.phases.contains(.dxe) {
            areas += try SaveAreaCreation.run(policy, phase: .dxe, apCount: apCount, allocator: &dxe)
        }
        try dxeAlloc(plan.laterDxePages, .bootServicesData, "later DXE drivers, BDS, boot loader")
        try dxeAlloc(plan.loaderPages, .loaderData, "kernel and initrd (EFI stub)")

        return FirmwareBootResult(
            vcpus: vcpus, policy: policy, layout: layout, efiMemoryMap: dxe.memoryMap(),
            saveAreas: areas, allocations: labelled, bins: dxe.bins, peiMemory: peiMemory)
    }
}

/// What the firmware hands over at ExitBootServices.
public struct FirmwareBootResult: Sendable {
    public let vcpus: Int
    public let policy: SaveAreaPolicy
    public let layout: GuestMemoryLayout
    /// `GetMemoryMap` at ExitBootServices: ascending, merged.
    public let efiMemoryMap: [EfiMemoryDescriptor]
    public let saveAreas: [FirmwareSaveArea]
    public let allocations: [LabelledAllocation]
    public let bins: [MemoryTypeBin]
    public let peiMemory: PageRange

    public var apCount: Int { vcpus - 1 }

    public func saveAreas(in phase: FirmwarePhase) -> [FirmwareSaveArea] { saveAreas.filter { $0.phase == phase } }

    /// The pages spanned by a phase's save-area blocks (allocated blocks, lowest to highest).
    public func saveAreaSpan(_ phase: FirmwarePhase) -> PageRange? {
        let blocks = saveAreas(in: phase).map(\.allocated)
        guard let lo = blocks.map(\.first).min(), let hi = blocks.map(\.end).max() else { return nil }
        return PageRange(pages: lo..<hi)
    }

    /// EFI descriptors overlapping `window`.
    public func descriptors(overlapping window: PageRange) -> [EfiMemoryDescriptor] {
        efiMemoryMap.filter { $0.range.overlaps(window) }
    }

    /// Reserved pages the save areas still hold.
    public var saveAreaReservedPages: UInt64 {
        saveAreas.flatMap(\.kept).flatMap { Array($0.pages) }.reduce(0) { n, page in
            n + (type(at: page) == .reservedMemoryType ? 1 : 0)
        }
    }

    public func type(at page: UInt64) -> EfiMemoryType? {
        var lo = 0, hi = efiMemoryMap.count
        while lo < hi {
            let mid = (lo + hi) / 2, r = efiMemoryMap[mid].range
            if page < r.first { hi = mid } else if page >= r.end { lo = mid + 1 } else { return efiMemoryMap[mid].type }
        }
        return nil
    }

    /// Reserved runs (descriptors) holding any save-area page of a phase.
    public func reservedBlocks(holding phase: FirmwarePhase) -> [PageRange] {
        let pages = Set(saveAreas(in: phase).flatMap(\.kept).flatMap { Array($0.pages) })
        return efiMemoryMap.filter { d in d.type == .reservedMemoryType && d.range.pages.contains(where: pages.contains) }.map(\.range)
    }
}
