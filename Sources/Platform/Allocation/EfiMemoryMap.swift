import Foundation

/// `EFI_MEMORY_TYPE` with the UEFI specification's names (UEFI 2.10 §7.2, `EFI_MEMORY_TYPE`;
/// MdePkg/Include/Uefi/UefiMultiPhase.h).
public enum EfiMemoryType: UInt32, Sendable, Codable, CaseIterable, CustomStringConvertible {
    case reservedMemoryType = 0
    case loaderCode = 1
    case loaderData = 2
    case bootServicesCode = 3
    case bootServicesData = 4
    case runtimeServicesCode = 5
    case runtimeServicesData = 6
    case conventionalMemory = 7
    case unusableMemory = 8
    case acpiReclaimMemory = 9
    case acpiMemoryNvs = 10
    case memoryMappedIo = 11
    case memoryMappedIoPortSpace = 12
    case palCode = 13
    case persistentMemory = 14
    case unacceptedMemoryType = 15

    /// The specification's spelling, e.g. `EfiReservedMemoryType`.
    public var specName: String {
        switch self {
        case .reservedMemoryType: return "EfiReservedMemoryType"
        case .loaderCode: return "EfiLoaderCode"
        case .loaderData: return "EfiLoaderData"
        case .bootServicesCode: return "EfiBootServicesCode"
        case .bootServicesData: return "EfiBootServicesData"
        case .runtimeServicesCode: return "EfiRuntimeServicesCode"
        case .runtimeServicesData: return "EfiRuntimeServicesData"
        case .conventionalMemory: return "EfiConventionalMemory"
        case .unusableMemory: return "EfiUnusableMemory"
        case .acpiReclaimMemory: return "EfiACPIReclaimMemory"
        case .acpiMemoryNvs: return "EfiACPIMemoryNVS"
        case .memoryMappedIo: return "EfiMemoryMappedIO"
        case .memoryMappedIoPortSpace: return "EfiMemoryMappedIOPortSpace"
        case .palCode: return "EfiPalCode"
        case .persistentMemory: return "EfiPersistentMemory"
        case .unacceptedMemoryType: return "EfiUnacceptedMemoryType"
        }
    }
    public var description: String { specName }

    /// Free memory as the DXE core's allocator sees it.
    public var isFree: Bool { self == .conventionalMemory }

    /// The `Special` column of `mMemoryTypeStatistics` (tianocore/edk2
    /// MdeModulePkg/Core/Dxe/Mem/Page.c): free memory lying wholly inside a bin of such a
    /// type is reported as that type by `CoreGetMemoryMap`, "to minimize EFI Memory Map
    /// changes across reboots". (One newer copy also marks EfiUnacceptedMemoryType; OVMF
    /// configures no bin for it, so it makes no difference here.)
    public var isSpecialBinType: Bool {
        switch self {
        case .reservedMemoryType, .runtimeServicesCode, .runtimeServicesData, .acpiReclaimMemory, .acpiMemoryNvs, .palCode:
            return true
        default:
            return false
        }
    }
}

/// One entry of a memory map: a page range and its type. Attributes are not modelled: every
/// range is taken to carry the same `Attribute`, so descriptors merge on type alone. edk2
/// merges on Type and Attribute (tianocore/edk2 MdeModulePkg/Core/Dxe/Mem/Page.c
/// `MergeMemoryMapDescriptor`); whether a Reserved range made from a PEI allocation HOB
/// (Gcd.c `CoreInitializeGcdServices` → `CoreAddMemoryDescriptor`) carries the same
/// Attribute as one DXE allocates is open: the attribute values each path sets were not
/// read. It matters only where two such ranges touch, which they do not in this layout.
public struct EfiMemoryDescriptor: Hashable, Sendable, Codable, CustomStringConvertible {
    public var range: PageRange
    public var type: EfiMemoryType
    public init(_ range: PageRange, _ type: EfiMemoryType) {
        self.range = range
        self.type = type
    }
    public var description: String { "\(range) \(type) \(ByteCount.pages(range.count))" }
}

/// The firmware's page-granular map of RAM: sorted, non-overlapping descriptors, adjacent
/// ones of the same type always merged — what edk2's `CoreAddRange` keeps in `gMemoryMap`
/// (MdeModulePkg/Core/Dxe/Mem/Page.c) and, for the model's purposes, what PEI's memory
/// allocation HOBs describe. Holes (the legacy area below 1 MiB, the PCI hole) are simply
/// not described.
public struct EfiMemoryMap: Sendable {
    public private(set) var descriptors: [EfiMemoryDescriptor]

    public enum MapError: Error, CustomStringConvertible, Equatable {
        case overlap(PageRange)
        case notDescribed(PageRange)
        case typeMismatch(PageRange, expected: EfiMemoryType)
        public var description: String {
            switch self {
            case .overlap(let r): return "range \(r) overlaps another"
            case .notDescribed(let r): return "range \(r) is not (entirely) RAM in the map"
            case .typeMismatch(let r, let t): return "range \(r) is not entirely \(t)"
            }
        }
    }

    /// Builds a map from ranges that must not overlap.
    public init(_ ranges: [EfiMemoryDescriptor]) throws(MapError) {
        let sorted = ranges.filter { !$0.range.isEmpty }.sorted { $0.range.first < $1.range.first }
        for (a, b) in zip(sorted, sorted.dropFirst()) where a.range.end > b.range.first {
            throw .overlap(b.range)
        }
        descriptors = []
        for d in sorted { append(d) }
    }

    private mutating func append(_ d: EfiMemoryDescriptor) {
        if let last = descriptors.last, last.type == d.type, last.range.end == d.range.first {
            descriptors[descriptors.count - 1].range = PageRange(first: last.range.first, count: last.range.count + d.range.count)
        } else {
            descriptors.append(d)
        }
    }

    /// Index of the descriptor holding `page`, if any (binary search).
    public func index(containing page: UInt64) -> Int? {
        var lo = 0, hi = descriptors.count
        while lo < hi {
            let mid = (lo + hi) / 2
            let r = descriptors[mid].range
            if page < r.first { hi = mid } else if page >= r.end { lo = mid + 1 } else { return mid }
        }
        return nil
    }

    public func type(at page: UInt64) -> EfiMemoryType? { index(containing: page).map { descriptors[$0].type } }

    /// True if every page of `range` is described and of type `type`.
    public func isEntirely(_ range: PageRange, _ type: EfiMemoryType) -> Bool {
        guard let i = index(containing: range.first) else { return false }
        let d = descriptors[i]
        return d.type == type && d.range.contains(range)   // merged: one descriptor or mixed
    }

    /// Changes the type of `range` (every page of it must be described; `from`, if given, is
    /// the type every page must have now), splitting and re-merging descriptors.
    public mutating func setType(_ range: PageRange, to type: EfiMemoryType, from expected: EfiMemoryType? = nil) throws(MapError) {
        guard !range.isEmpty else { return }
        guard let i = index(containing: range.first) else { throw .notDescribed(range) }
        var j = i, covered = descriptors[i].range.end
        while covered < range.end {
            j += 1
            guard j < descriptors.count, descriptors[j].range.first == covered else { throw .notDescribed(range) }
            covered = descriptors[j].range.end
        }
        if let expected, descriptors[i...j].contains(where: { $0.type != expected }) {
            throw .typeMismatch(range, expected: expected)
        }
        var pieces: [EfiMemoryDescriptor] = []
        let head = descriptors[i], tail = descriptors[j]
        if head.range.first < range.first {
            pieces.append(EfiMemoryDescriptor(PageRange(pages: head.range.first..<range.first), head.type))
        }
        pieces.append(EfiMemoryDescriptor(range, type))
        if tail.range.end > range.end {
            pieces.append(EfiMemoryDescriptor(PageRange(pages: range.end..<tail.range.end), tail.type))
        }
        // Re-merge with the neighbours on either side (CoreAddRange's merge).
        let lo = max(i - 1, 0), hi = min(j + 1, descriptors.count - 1)
        var merged: [EfiMemoryDescriptor] = []
        func push(_ d: EfiMemoryDescriptor) {
            if let last = merged.last, last.type == d.type, last.range.end == d.range.first {
                merged[merged.count - 1].range = PageRange(first: last.range.first, count: last.range.count + d.range.count)
            } else {
                merged.append(d)
            }
        }
        if lo < i { push(descriptors[lo]) }
        pieces.forEach(push)
        if hi > j { push(descriptors[hi]) }
        descriptors.replaceSubrange(lo...hi, with: merged)
    }

    /// The ranges of one type, in address order.
    public func ranges(of type: EfiMemoryType) -> [PageRange] { descriptors.filter { $0.type == type }.map(\.range) }
}
