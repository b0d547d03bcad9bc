import Foundation

/// What a firmware phase's page allocator offers the save-area code: `AllocatePages`,
/// `FreePages`, and — for the hypothetical "kept as boot-services memory" variants only —
/// changing the type of pages already held.
public protocol FirmwarePageAllocator {
    var map: EfiMemoryMap { get }
    /// `AllocatePages (AllocateAnyPages, Type, Pages, ...)`: the first page of the block.
    mutating func allocatePages(_ pages: UInt64, type: EfiMemoryType) throws(FirmwareAllocationError) -> UInt64
    /// `FreePages (Memory, Pages)`.
    mutating func freePages(_ range: PageRange) throws(FirmwareAllocationError)
    /// Not an edk2 service: re-types pages this phase allocated (a variant of
    /// `SevSnpCreateSaveArea` that keeps a page as boot-services memory would allocate it so).
    mutating func retype(_ range: PageRange, to type: EfiMemoryType) throws(FirmwareAllocationError)
}

public enum FirmwareAllocationError: Error, CustomStringConvertible, Equatable {
    case outOfResources(pages: UInt64, type: EfiMemoryType)
    case map(EfiMemoryMap.MapError)
    case notAllocated(PageRange)
    public var description: String {
        switch self {
        case .outOfResources(let p, let t): return "EFI_OUT_OF_RESOURCES allocating \(ByteCount.pages(p)) of \(t)"
        case .map(let e): return "memory map: \(e)"
        case .notAllocated(let r): return "FreePages on \(r), which is not allocated"
        }
    }
}

// MARK: - PEI

/// PEI's allocator over permanent memory (tianocore/edk2 MdeModulePkg/Core/Pei/Memory/
/// MemoryServices.c):
/// - `PeiAllocatePages` bumps `FreeMemoryTop` down by the request and records a memory
///   allocation HOB; only when the PHIT free range is exhausted does
///   `FindFreeMemoryFromMemoryAllocationHob` take the top of a freed HOB.
/// - `PeiFreePages` turns the pages into an `EfiConventionalMemory` HOB; if they start at
///   `FreeMemoryTop`, `FreeMemoryAllocationHob` gives them back to the bump range, and keeps
///   doing so for any free HOB that now touches the new top. Otherwise they stay a hole.
/// PEI has no bins and no AllocateAddress here. The DXE core later turns every HOB into a
/// descriptor of the same type (Gcd.c `CoreInitializeGcdServices` → `CoreAddMemoryDescriptor`).
public struct PeiPageAllocator: FirmwarePageAllocator {
    public private(set) var map: EfiMemoryMap
    /// PEI permanent memory: PHIT `[EfiMemoryBottom, EfiMemoryTop)`.
    public let memory: PageRange
    /// PHIT `EfiFreeMemoryTop`; `[memory.first, freeMemoryTop)` is the bump range.
    public private(set) var freeMemoryTop: UInt64

    public init(map: EfiMemoryMap, memory: PageRange) throws(FirmwareAllocationError) {
        guard map.isEntirely(memory, .conventionalMemory) else { throw .map(.notDescribed(memory)) }
        self.map = map
        self.memory = memory
        freeMemoryTop = memory.end
    }

    /// The PHIT free range DXE starts from: `[EfiFreeMemoryBottom, EfiFreeMemoryTop)`.
    public var freeRange: PageRange { PageRange(pages: memory.first..<freeMemoryTop) }

    public mutating func allocatePages(_ pages: UInt64, type: EfiMemoryType) throws(FirmwareAllocationError) -> UInt64 {
        let first: UInt64
        if freeMemoryTop - memory.first >= pages {
            freeMemoryTop -= pages
            first = freeMemoryTop
        } else if let hole = freedHobs().last(where: { $0.count >= pages }) {
            first = hole.end - pages   // the top of the free HOB
        } else {
            throw .outOfResources(pages: pages, type: type)
        }
        do { try map.setType(PageRange(first: first, count: pages), to: type, from: .conventionalMemory) } catch { throw .map(error) }
        return first
    }

    public mutating func freePages(_ range: PageRange) throws(FirmwareAllocationError) {
        guard memory.contains(range), range.first >= freeMemoryTop, map.type(at: range.first) != .conventionalMemory else {
            throw .notAllocated(range)
        }
        do { try map.setType(range, to: .conventionalMemory) } catch { throw .map(error) }
        if range.first == freeMemoryTop, let i = map.index(containing: range.first) {
            // Back to the bump range, with every free HOB that now touches the new top.
            freeMemoryTop = min(map.descriptors[i].range.end, memory.end)
        }
    }

    public mutating func retype(_ range: PageRange, to type: EfiMemoryType) throws(FirmwareAllocationError) {
        guard memory.contains(range), range.first >= freeMemoryTop else { throw .notAllocated(range) }
        do { try map.setType(range, to: type) } catch { throw .map(error) }
    }

    /// Conventional HOBs above the bump range: pages freed that did not touch the top.
    private func freedHobs() -> [PageRange] {
        map.ranges(of: .conventionalMemory).compactMap { $0.clamped(to: PageRange(pages: freeMemoryTop..<memory.end)) }
    }
}

// MARK: - DXE

/// One memory-type bin, from `gMemoryTypeInformation` (OVMF's PlatformPei Platform.c
/// `mDefaultMemoryTypeInformation`).
public struct MemoryTypeBin: Sendable, Codable, Hashable {
    public let type: EfiMemoryType
    public let range: PageRange
}

/// The DXE core's allocator (tianocore/edk2 MdeModulePkg/Core/Dxe/Mem/Page.c):
/// - bins: at the first `CoreAddMemoryDescriptor`, one block per `gMemoryTypeInformation`
///   entry is allocated top-down "from the top of available memory" and freed again; each
///   type remembers `[BaseAddress, MaximumAddress]`, and `mDefaultMaximumAddress` becomes the
///   lowest bin's base - 1;
/// - `FindFreePages` tries the type's own bin, then `[0, mDefaultMaximumAddress]`, then
///   anything up to MaxAddress;
/// - `CoreFindFreePagesI` keeps the free descriptor whose clipped end is highest and returns
///   `end - size`: top-down;
/// - `CoreGetMemoryMap` reports free memory wholly inside a bin of a `Special` type as that
///   type, then merges neighbours (`MergeMemoryMapDescriptor`).
public struct DxePageAllocator: FirmwarePageAllocator {
    public private(set) var map: EfiMemoryMap
    public private(set) var bins: [MemoryTypeBin] = []
    /// One past `mDefaultMaximumAddress`, in pages.
    public private(set) var defaultLimit: UInt64 = .max

    /// `firstMemory` is the range `CoreInitializeMemoryServices` hands to the first
    /// `CoreAddMemoryDescriptor` (tianocore/edk2 MdeModulePkg/Core/Dxe/Gcd/Gcd.c: the range
    /// above the PHIT's EfiMemoryTop if it is big enough, else PEI's free range
    /// [EfiFreeMemoryBottom, EfiFreeMemoryTop); on OVMF PEI memory ends at the top of low RAM,
    /// so it is the latter);
    /// the bins are carved from its top in `memoryTypeInformation` order.
    public init(map: EfiMemoryMap, firstMemory: PageRange, memoryTypeInformation: [(EfiMemoryType, UInt64)]) throws(FirmwareAllocationError) {
        self.map = map
        var carved: [MemoryTypeBin] = []
        for (type, pages) in memoryTypeInformation where pages > 0 {
            guard let first = findFreePages(pages, below: firstMemory.end, from: firstMemory.first) else {
                throw .outOfResources(pages: pages, type: type)
            }
            let range = PageRange(first: first, count: pages)
            do { try self.map.setType(range, to: type, from: .conventionalMemory) } catch { throw .map(error) }
            carved.append(MemoryTypeBin(type: type, range: range))
        }
        for bin in carved {
            do { try self.map.setType(bin.range, to: .conventionalMemory) } catch { throw .map(error) }
        }
        bins = carved
        defaultLimit = carved.map(\.range.first).min() ?? .max
    }

    public func bin(for type: EfiMemoryType) -> MemoryTypeBin? { bins.first { $0.type == type } }

    /// `CoreFindFreePagesI`: the highest free block of `pages` inside `[from, below)`.
    public func findFreePages(_ pages: UInt64, below limit: UInt64, from floor: UInt64 = 0) -> UInt64? {
        var target: UInt64?
        for d in map.descriptors where d.type.isFree {
            let lo = max(d.range.first, floor), hi = min(d.range.end, limit)
            guard hi > lo, hi - lo >= pages else { continue }
            if target.map({ hi > $0 }) ?? true { target = hi }
        }
        return target.map { $0 - pages }
    }

    public mutating func allocatePages(_ pages: UInt64, type: EfiMemoryType) throws(FirmwareAllocationError) -> UInt64 {
        // FindFreePages: the type's bin, the default range, then anywhere.
        let first = bin(for: type).flatMap { findFreePages(pages, below: $0.range.end, from: $0.range.first) }
            ?? findFreePages(pages, below: defaultLimit)
            ?? findFreePages(pages, below: .max)
        guard let first else { throw .outOfResources(pages: pages, type: type) }
        do { try map.setType(PageRange(first: first, count: pages), to: type, from: .conventionalMemory) } catch { throw .map(error) }
        return first
    }

    public mutating func freePages(_ range: PageRange) throws(FirmwareAllocationError) {
        guard let t = map.type(at: range.first), !t.isFree else { throw .notAllocated(range) }
        do { try map.setType(range, to: .conventionalMemory) } catch { throw .map(error) }
    }

    public mutating func retype(_ range: PageRange, to type: EfiMemoryType) throws(FirmwareAllocationError) {
        guard let t = map.type(at: range.first), !t.isFree else { throw .notAllocated(range) }
        do { try map.setType(range, to: type) } catch { throw .map(error) }
    }

    /// `GetMemoryMap` as the OS receives it at ExitBootServices.
    public func memoryMap() -> [EfiMemoryDescriptor] {
        var out: [EfiMemoryDescriptor] = []
        for var d in map.descriptors {
            if d.type.isFree, let bin = bins.first(where: { $0.type.isSpecialBinType && $0.range.contains(d.range) }) {
                d.type = bin.type
            }
            if let last = out.last, last.type == d.type, last.range.end == d.range.first {
                out[out.count - 1].range = PageRange(first: last.range.first, count: last.range.count + d.range.count)
            } else {
                out.append(d)
            }
        }
        return out
    }
}
