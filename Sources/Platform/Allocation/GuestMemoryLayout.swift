import Foundation

/// The guest whose memory map the model builds: a QEMU q35 machine with OVMF (AMD SEV
/// build) under an SVSM. Sourced rules are cited; the rest are decisions, written down in
/// docs/caa-allocation.md ("Layout") with the reasons.
public struct GuestMemoryLayout: Sendable, Codable, Hashable {
    /// Guest RAM (`-m`). Decision: 4 GiB by default — the thread's 256 MiB SWIOTLB is what
    /// the SEV sizing rule gives for about 2.1 to 4.2 GiB: 6 % of memblock memory clamped to
    /// [64 MiB, 1 GiB] (torvalds/linux arch/x86/mm/mem_encrypt.c `mem_encrypt_setup_arch`),
    /// then rounded up to a power of two of slabs (kernel/dma/swiotlb.c
    /// `round_up_default_nslabs`), and 256 MiB is the result for 6 % in (128, 256] MiB.
    public let ramBytes: UInt64

    public static let defaultRamBytes: UInt64 = 4 * ByteCount.gib
    public static let minimumRamBytes: UInt64 = 512 * ByteCount.mib
    public static let maximumRamBytes: UInt64 = 1 << 40

    public enum LayoutError: Error, CustomStringConvertible {
        case ram(UInt64)
        public var description: String {
            switch self {
            case .ram(let b): return "RAM must be between 512 MiB and 1 TiB and a whole number of MiB (got \(b) bytes)"
            }
        }
    }

    public init(ramBytes: UInt64 = defaultRamBytes) throws(LayoutError) {
        guard (Self.minimumRamBytes...Self.maximumRamBytes).contains(ramBytes), ramBytes % ByteCount.mib == 0 else {
            throw .ram(ramBytes)
        }
        self.ramBytes = ramBytes
    }

    /// RAM below 4 GiB. qemu/qemu hw/i386/pc_q35.c `pc_q35_init`: `if (machine->ram_size >=
    /// 0xb0000000) lowmem = 0x80000000; else lowmem = 0xb0000000;` capped by
    /// `max_ram_below_4g` (default 4 GiB); the rest goes above 4 GiB.
    public var lowRamBytes: UInt64 {
        let lowmem: UInt64 = ramBytes >= 0xB000_0000 ? 0x8000_0000 : 0xB000_0000
        return min(ramBytes, lowmem)
    }
    public var highRamBytes: UInt64 { ramBytes - lowRamBytes }
    public var lowRam: PageRange { PageRange(first: 0, count: lowRamBytes / PhysicalAddress.pageSize) }
    public var highRam: PageRange? {
        highRamBytes == 0 ? nil : PageRange(first: Self.fourGiB.page, count: highRamBytes / PhysicalAddress.pageSize)
    }
    public static let fourGiB = PhysicalAddress(1 << 32)

    /// Fixed firmware areas and holes (decisions; OVMF places its MEMFD at
    /// MEMFD_BASE_ADDRESS = 8 MiB — tianocore/edk2 OvmfPkg/OvmfPkgX64.fdf `[FD.MEMFD]` at
    /// commit 00f18da1, size 0xA00000; OvmfPkg/AmdSev/AmdSevX64.fdf at 0172fbd4 has size
    /// 0xD00000 with the GHCB, SEV-ES work area and launch-secret pages in its first 64 KiB.
    /// The SNP secrets and CPUID pages of an IGVM boot under COCONUT are not sourced here).
    public struct FixedRegion: Sendable, Codable, Hashable {
        public let range: PageRange
        /// nil: not described in the EFI memory map at all (a hole).
        public let type: EfiMemoryType?
        public let what: String
    }

    public static let fixedRegions: [FixedRegion] = [
        FixedRegion(range: PageRange(pages: 0xA0..<0x100), type: nil,
                    what: "legacy VGA, option ROM and BIOS area: not RAM in the map"),
        FixedRegion(range: PageRange(pages: 0x800..<0x810), type: .reservedMemoryType,
                    what: "MEMFD: SEC page tables, GHCB, SNP secrets and CPUID pages"),
        FixedRegion(range: PageRange(pages: 0x810..<0x1200), type: .bootServicesData,
                    what: "MEMFD: temporary RAM and decompressed firmware volumes"),
    ]

    /// The map before PEI allocates from permanent memory: RAM as conventional memory with
    /// the fixed regions carved out.
    public func baseMap() throws(EfiMemoryMap.MapError) -> EfiMemoryMap {
        var ram = [EfiMemoryDescriptor(lowRam, .conventionalMemory)]
        if let highRam { ram.append(EfiMemoryDescriptor(highRam, .conventionalMemory)) }
        var map = try EfiMemoryMap(ram)
        for region in Self.fixedRegions {
            if let type = region.type {
                try map.setType(region.range, to: type, from: .conventionalMemory)
            }
        }
        // Holes are removed by rebuilding without them.
        let holes = Self.fixedRegions.filter { $0.type == nil }.map(\.range)
        var kept: [EfiMemoryDescriptor] = []
        for d in map.descriptors {
            var pieces = [d.range]
            for hole in holes {
                pieces = pieces.flatMap { r -> [PageRange] in
                    guard r.overlaps(hole) else { return [r] }
                    var out: [PageRange] = []
                    if r.first < hole.first { out.append(PageRange(pages: r.first..<hole.first)) }
                    if r.end > hole.end { out.append(PageRange(pages: hole.end..<r.end)) }
                    return out
                }
            }
            kept += pieces.map { EfiMemoryDescriptor($0, d.type) }
        }
        return try EfiMemoryMap(kept)
    }
}

/// Sizes of the firmware's own allocations around the save areas. Sourced where noted,
/// otherwise decisions (docs/caa-allocation.md "Layout"): they set where the save areas land
/// and how large the free block below them is, not how the save areas fragment.
public struct FirmwareAllocationPlan: Sendable, Codable, Hashable {
    /// `PcdCpuApStackSize` = 32 KiB: OVMF's PlatformPei `GetPeiMemoryCap` comment "With 32k
    /// stacks and 4096 vcpus this lands at 128 MB".
    public var apStackPages: UInt64 = 8
    /// PEI core and the PEIMs before CpuMpPei (stack, heap, HOBs, page tables): decision.
    public var peiBeforeCpuMpPages: UInt64 = 1024
    /// CPU_MP_DATA, the per-CPU arrays and the AP reset vector beside the AP stacks: decision.
    public var mpDataPages: UInt64 = 8
    /// DXE IPL: the DXE core image, its stack and page tables (EfiBootServicesCode): decision.
    public var dxeIplPages: UInt64 = 1024
    /// Later DXE drivers, BDS and the boot loader (EfiBootServicesData): decision.
    public var laterDxePages: UInt64 = 2048
    /// Kernel and initrd as the EFI stub leaves them (EfiLoaderData), top-down: decision.
    public var loaderPages: UInt64 = 16384
    /// PEI memory cap: `GetPeiMemoryCap` = page tables + max CPUs x AP stack + 64 MiB
    /// (tianocore/edk2 OvmfPkg/PlatformPei/MemDetect.c, with the AP-stack term added by
    /// tianocore/edk2 PR #5418, 2024; `PublishPeiMemory` puts PEI memory at the top of low
    /// RAM); the page-table term is left out — the cap only sets PEI memory's base, and
    /// everything here fits in 64 MiB.
    public func peiMemoryPages(vcpus: Int) -> UInt64 { 64 * ByteCount.mib / PhysicalAddress.pageSize + UInt64(vcpus) * apStackPages }
    /// MpInitLib's buffer in each phase: one AP stack per CPU plus CPU_MP_DATA (both phases
    /// allocate one: tianocore/edk2 UefiCpuPkg/Library/MpInitLib/MpLib.c `MpInitLibInitialize`
    /// at 189dedb2, `MpBuffer = AllocatePages (...)`).
    public func mpBufferPages(vcpus: Int) -> UInt64 { UInt64(vcpus) * apStackPages + mpDataPages }

    /// OVMF's `mDefaultMemoryTypeInformation` (OvmfPkg/PlatformPei/Platform.c), in pages and
    /// in table order — the order the DXE core carves the bins top-down.
    public static let ovmfMemoryTypeInformation: [(EfiMemoryType, UInt64)] = [
        (.acpiMemoryNvs, 0x004), (.acpiReclaimMemory, 0x008), (.reservedMemoryType, 0x004),
        (.runtimeServicesData, 0x024), (.runtimeServicesCode, 0x030),
        (.bootServicesCode, 0x180), (.bootServicesData, 0xF00),
    ]
    /// Decision: the DXE drivers loaded before CpuDxe fill every bin but the Reserved one,
    /// so CpuDxe's first save area lands in the Reserved bin (4 pages in
    /// `mDefaultMemoryTypeInformation` above: room for one 3-page block) and the rest spill
    /// below the bins.
    public var binsFilledBeforeCpuDxe: [EfiMemoryType] = [
        .acpiMemoryNvs, .acpiReclaimMemory, .runtimeServicesData, .runtimeServicesCode, .bootServicesCode, .bootServicesData,
    ]

    public init() {}
}
