import Foundation

/// e820 types (torvalds/linux arch/x86/include/asm/e820/types.h).
public enum E820Type: UInt32, Sendable, Codable, CustomStringConvertible {
    case ram = 1, reserved = 2, acpi = 3, nvs = 4, unusable = 5, pmem = 7
    public var linuxName: String {
        switch self {
        case .ram: return "E820_TYPE_RAM"
        case .reserved: return "E820_TYPE_RESERVED"
        case .acpi: return "E820_TYPE_ACPI"
        case .nvs: return "E820_TYPE_NVS"
        case .unusable: return "E820_TYPE_UNUSABLE"
        case .pmem: return "E820_TYPE_PMEM"
        }
    }
    /// As `e820__print_table` prints it.
    public var description: String {
        switch self {
        case .ram: return "usable"
        case .reserved: return "reserved"
        case .acpi: return "ACPI data"
        case .nvs: return "ACPI NVS"
        case .unusable: return "unusable"
        case .pmem: return "persistent (type 7)"
        }
    }
}

public struct E820Entry: Sendable, Codable, Hashable, CustomStringConvertible {
    public let range: PageRange
    public let type: E820Type
    public var description: String { "\(range) \(type)" }
}

/// The EFI stub's conversion of the final EFI memory map (torvalds/linux
/// drivers/firmware/efi/libstub/x86-stub.c `setup_e820`).
public enum EfiStubE820 {
    /// The `switch (d->type)` of `setup_e820`; nil: the descriptor is skipped.
    /// EfiUnacceptedMemoryType is RAM with CONFIG_UNACCEPTED_MEMORY (assumed here: SNP
    /// guests need it); EFI_MEMORY_SP soft-reserve is not modelled.
    public static func e820Type(_ t: EfiMemoryType) -> E820Type? {
        switch t {
        case .reservedMemoryType, .runtimeServicesCode, .runtimeServicesData, .memoryMappedIo, .memoryMappedIoPortSpace, .palCode:
            return .reserved
        case .unusableMemory: return .unusable
        case .acpiReclaimMemory: return .acpi
        case .loaderCode, .loaderData, .bootServicesCode, .bootServicesData, .conventionalMemory, .unacceptedMemoryType:
            return .ram
        case .acpiMemoryNvs: return .nvs
        case .persistentMemory: return .pmem
        }
    }

    /// `setup_e820`: map each descriptor, and `if (prev && prev->type == e820_type &&
    /// prev->addr + prev->size == d->phys_addr)` grow the previous entry instead.
    public static func convert(_ map: [EfiMemoryDescriptor]) -> [E820Entry] {
        var out: [E820Entry] = []
        for d in map {
            guard let t = e820Type(d.type) else { continue }
            if let prev = out.last, prev.type == t, prev.range.end == d.range.first {
                out[out.count - 1] = E820Entry(range: PageRange(first: prev.range.first, count: prev.range.count + d.range.count), type: t)
            } else {
                out.append(E820Entry(range: d.range, type: t))
            }
        }
        return out
    }
}

/// The fixed sizes on the way into Linux.
public enum LinuxE820Limits {
    /// `E820_MAX_ENTRIES_ZEROPAGE`: `boot_params.e820_table` holds 128 entries; the stub puts
    /// the rest in a `SETUP_E820_EXT` setup_data node (x86-stub.c `allocate_e820`,
    /// `alloc_e820ext`; the stub itself sets no maximum).
    public static let zeroPageEntries = 128
    /// `E820_MAX_ENTRIES = E820_MAX_ENTRIES_ZEROPAGE + 3 * MAX_NUMNODES`, MAX_NUMNODES =
    /// 1 << NODES_SHIFT (arch/x86/include/asm/e820/types.h; arch/x86/Kconfig NODES_SHIFT:
    /// "10" if MAXSMP, "6" if X86_64).
    public static func kernelTableEntries(nodesShift: Int) -> Int { zeroPageEntries + 3 * (1 << nodesShift) }
    public static let nodesShifts = [6, 10]
    /// `INIT_MEMBLOCK_REGIONS`: memblock.memory starts with 128 slots; `e820__memblock_setup`
    /// calls `memblock_allow_resize()` first ("EFI might pass us more E820 entries than that")
    /// and runs with `memblock_set_current_limit(ISA_END_ADDRESS)` ("only the first megabyte
    /// is mapped for sure, the rest of the memory cannot be used for memblock resizing").
    public static let memblockInitialRegions = 128
}

/// What the kernel keeps of the stub's e820 table for one `E820_MAX_ENTRIES`.
public struct KernelE820View: Sendable, Codable, Hashable {
    public let nodesShift: Int
    public let maxEntries: Int
    public let keptEntries: Int
    /// `__e820__range_add`: "too many entries; ignoring [mem ...]" — entries are appended in
    /// address order, so the highest ones are dropped.
    public let dropped: [E820Entry]
    /// memblock.memory regions after `e820__memblock_setup`: one per kept RAM entry (RAM
    /// entries never touch after the stub's merge and the sanitizer).
    public let memblockRegions: Int
    /// How often memblock.memory doubles from 128 (`memblock_double_array`).
    public let memblockDoublings: Int
    /// `memblock_phys_mem_size()`: the RAM the kernel keeps.
    public let ramBytes: UInt64

    public init(e820: [E820Entry], nodesShift: Int) {
        self.nodesShift = nodesShift
        maxEntries = LinuxE820Limits.kernelTableEntries(nodesShift: nodesShift)
        let kept = Array(e820.prefix(maxEntries))
        keptEntries = kept.count
        dropped = Array(e820.dropFirst(maxEntries))
        let ram = kept.filter { $0.type == .ram }
        memblockRegions = ram.count
        var slots = LinuxE820Limits.memblockInitialRegions, doublings = 0
        while slots < memblockRegions { slots *= 2; doublings += 1 }
        memblockDoublings = doublings
        ramBytes = ram.reduce(0) { $0 + $1.range.bytes }
    }
}

/// The default SWIOTLB size of an SEV guest and whether it fits.
public struct SwiotlbSizing: Sendable, Codable, Hashable {
    public static let ioTlbShift = 11                                  // 2 KiB slabs
    public static let ioTlbSegSize: UInt64 = 128
    public static let defaultSize: UInt64 = 64 * ByteCount.mib           // IO_TLB_DEFAULT_SIZE
    public static let minSlabs: UInt64 = (1 << 20) >> UInt64(ioTlbShift) // IO_TLB_MIN_SLABS

    public let memBytes: UInt64
    public let possibleCpus: Int
    /// `total_mem * 6 / 100` clamped to [IO_TLB_DEFAULT_SIZE, SZ_1G].
    public let requestedBytes: UInt64
    public let nareas: Int
    public let slabs: UInt64
    public var bytes: UInt64 { slabs << UInt64(Self.ioTlbShift) }

    /// arch/x86/mm/mem_encrypt.c `mem_encrypt_setup_arch` → kernel/dma/swiotlb.c
    /// `swiotlb_adjust_size` (`ALIGN(ALIGN(size, 2 KiB) >> IO_TLB_SHIFT, IO_TLB_SEGSIZE)`),
    /// then `swiotlb_init_remap` → `swiotlb_adjust_nareas(num_possible_cpus())` →
    /// `round_up_default_nslabs` (at least 128 slabs per area; else a power of two).
    public init(memBytes: UInt64, possibleCpus: Int) {
        self.memBytes = memBytes
        self.possibleCpus = possibleCpus
        let sixPercent = memBytes * 6 / 100
        requestedBytes = min(max(sixPercent, Self.defaultSize), ByteCount.gib)
        var nslabs = Self.align(Self.align(requestedBytes, 1 << UInt64(Self.ioTlbShift)) >> UInt64(Self.ioTlbShift), Self.ioTlbSegSize)
        let areas = Self.roundUpPowerOfTwo(UInt64(max(possibleCpus, 1)))
        nareas = Int(areas)
        if nslabs < Self.ioTlbSegSize * areas {
            nslabs = Self.ioTlbSegSize * areas
        } else if nslabs & (nslabs - 1) != 0 {
            nslabs = Self.roundUpPowerOfTwo(nslabs)
        }
        slabs = nslabs
    }

    /// `swiotlb_init_remap`'s loop on failure: halve (`ALIGN(nslabs >> 1, IO_TLB_SEGSIZE)`)
    /// until `memblock_alloc_low` finds a block; nil when even IO_TLB_MIN_SLABS does not fit
    /// (SWIOTLB left empty).
    public func sizeThatFits(largestFreeBytes: UInt64) -> UInt64? {
        var n = slabs
        while n << UInt64(Self.ioTlbShift) > largestFreeBytes {
            if n <= Self.minSlabs { return nil }
            n = Self.align(n >> 1, Self.ioTlbSegSize)
        }
        return n << UInt64(Self.ioTlbShift)
    }

    /// Which 6 % band gives this size — e.g. 256 MiB for about 2.1 to 4.2 GiB.
    public static func memoryBand(forBytes target: UInt64) -> ClosedRange<UInt64>? {
        // 6 % of mem must round up to `target`: (target/2, target] after clamping.
        guard target & (target - 1) == 0, target >= defaultSize, target <= ByteCount.gib else { return nil }
        let lo = (target / 2) * 100 / 6 + 1, hi = target * 100 / 6
        return lo...hi
    }

    static func align(_ v: UInt64, _ a: UInt64) -> UInt64 { (v + a - 1) / a * a }
    static func roundUpPowerOfTwo(_ v: UInt64) -> UInt64 {
        var p: UInt64 = 1
        while p < v { p <<= 1 }
        return p
    }
}

/// Low memory at SWIOTLB time (mem_init → pci_iommu_alloc → swiotlb_init_remap with
/// SWIOTLB_FORCE and no SWIOTLB_ANY → `memblock_alloc_low`, below ARCH_LOW_ADDRESS_LIMIT
/// = 4 GiB): free is EFI conventional (and unaccepted) memory the kernel kept, outside the
/// first 1 MiB (`reserve_real_mode` → `memblock_reserve(0, SZ_1M)`). Boot-services memory
/// is still reserved then (`efi_reserve_boot_services`, freed only from
/// `__efi_enter_virtual_mode`); the EfiLoaderData block (kernel, initrd) counts as used.
/// The kernel's own early memblock allocations go top-down from the highest RAM and are
/// not subtracted (decision).
public enum LowMemoryAtSwiotlb {
    public static let limit = GuestMemoryLayout.fourGiB.page
    public static let firstMiB = PageRange(first: 0, count: 256)

    public static func freeBlocks(efi: [EfiMemoryDescriptor], keptRam: [E820Entry]) -> [PageRange] {
        // Both lists are in address order: one sweep.
        let ram = keptRam.filter { $0.type == .ram }.map(\.range)
        var blocks: [PageRange] = []
        var j = 0
        for d in efi where d.type == .conventionalMemory || d.type == .unacceptedMemoryType {
            guard let below4G = d.range.clamped(to: PageRange(pages: firstMiB.end..<limit)) else { continue }
            while j < ram.count, ram[j].end <= below4G.first { j += 1 }
            var k = j
            while k < ram.count, ram[k].first < below4G.end {
                if let r = below4G.clamped(to: ram[k]) {
                    if let last = blocks.last, last.end == r.first {
                        blocks[blocks.count - 1] = PageRange(first: last.first, count: last.count + r.count)
                    } else {
                        blocks.append(r)
                    }
                }
                k += 1
            }
        }
        return blocks
    }

    public static func largest(_ blocks: [PageRange]) -> PageRange? {
        blocks.max { a, b in a.count != b.count ? a.count < b.count : a.first > b.first }
    }
}
