import Hardware
import SvsmAbi

/// A region the firmware's EFI memory map marks EFI_MEMORY_RUNTIME, as Linux maps it for
/// runtime services.
public struct EfiRuntimeRegion: Sendable, Equatable {
    public enum Kind: String, Sendable { case runtimeServicesCode = "EfiRuntimeServicesCode", runtimeServicesData = "EfiRuntimeServicesData" }
    public let name: String
    public let kind: Kind
    public let physicalStart: GuestPhysicalAddress
    public let pages: UInt64
    public init(name: String, kind: Kind, physicalStart: GuestPhysicalAddress, pages: UInt64) {
        self.name = name; self.kind = kind; self.physicalStart = physicalStart; self.pages = pages
    }
}

/// One CPU's per-CPU CAA as the OS knows it: `per_cpu(svsm_caa_pa, cpu)` and where the page
/// comes from.
public struct PerCpuCallingArea: Sendable, Equatable {
    public enum Home: Sendable, Equatable {
        /// `boot_svsm_ca_page` in the kernel image (.bss).
        case kernelImage
        /// `memblock_alloc_or_panic(sizeof(*caa), PAGE_SIZE)`: reached through the direct map.
        case memblock
    }
    public let apicId: UInt32
    public let physical: GuestPhysicalAddress
    public let home: Home
    public init(apicId: UInt32, physical: GuestPhysicalAddress, home: Home) {
        self.apicId = apicId; self.physical = physical; self.home = home
    }

    /// The address the kernel itself uses (`per_cpu(svsm_caa, cpu)`); nil for the kernel
    /// image, whose virtual base depends on where the image was loaded.
    public var kernelVirtual: VirtualAddress? {
        home == .memblock ? VirtualAddress(LinuxVirtualLayout.pageOffset &+ physical.rawValue) : nil
    }
}

/// The page tables of efi_mm, the address space Linux switches to for every runtime-service
/// call: what firmware code can reach by virtual address while it runs.
public struct EfiPageTables: Sendable {
    public struct Flags: OptionSet, Sendable, Hashable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let writable = Flags(rawValue: 1 << 0)
        public static let noExecute = Flags(rawValue: 1 << 1)
        /// The C-bit: the page is private (encrypted) guest memory.
        public static let encrypted = Flags(rawValue: 1 << 2)
    }

    /// Why a range is mapped, with the kernel function that maps it.
    public enum Origin: Sendable, Equatable, CustomStringConvertible {
        /// `efi_map_region` → `__map_region(md, md->phys_addr)`: the 1:1 "catch-all for
        /// b0rked firmware".
        case runtimeRegionIdentity(String)
        /// `efi_map_region` → `__map_region(md, efi_va)`: the address SetVirtualAddressMap
        /// gave the firmware.
        case runtimeRegionVirtual(String)
        /// `efi_setup_page_tables`: physical page 0, 1:1.
        case firstPage
        /// `sev_es_efi_map_ghcbs_cas`: a per-CPU CAA, 1:1 (a7549636f67f).
        case callingArea(apicId: UInt32)
        /// `efi_sync_low_kernel_mappings`: the kernel's direct map, shared from init_mm.
        case kernelDirectMap

        public var description: String {
            switch self {
            case .runtimeRegionIdentity(let n): return "\(n), 1:1 (efi_map_region)"
            case .runtimeRegionVirtual(let n): return "\(n) at its SetVirtualAddressMap address (efi_map_region)"
            case .firstPage: return "page 0, 1:1 (efi_setup_page_tables)"
            case .callingArea(let id): return "CPU \(id)'s CAA, 1:1 (sev_es_efi_map_ghcbs_cas)"
            case .kernelDirectMap: return "kernel direct map at PAGE_OFFSET (efi_sync_low_kernel_mappings)"
            }
        }
    }

    public struct Mapping: Sendable, Equatable {
        public let virtualStart: VirtualAddress
        public let physicalStart: GuestPhysicalAddress
        public let pages: UInt64
        public let flags: Flags
        public let origin: Origin

        public var byteCount: UInt64 { pages * GuestPhysicalAddress.pageSize }
        public func contains(_ va: VirtualAddress, count: UInt64 = 1) -> Bool {
            va.rawValue >= virtualStart.rawValue && va.rawValue - virtualStart.rawValue + count <= byteCount
        }
    }

    public enum Translation: Sendable, Equatable {
        case mapped(GuestPhysicalAddress, Mapping)
        /// No present PTE: the access raises #PF.
        case notPresent
        /// Present but read-only: a write raises #PF (protection violation).
        case readOnly(Mapping)
    }

    public let mappings: [Mapping]

    /// The translation of `count` bytes from `va` for a read or a write.
    public func translate(_ va: VirtualAddress, count: UInt64 = 1, write: Bool) -> Translation {
        guard let m = mappings.first(where: { $0.contains(va, count: max(count, 1)) }) else { return .notPresent }
        if write && !m.flags.contains(.writable) { return .readOnly(m) }
        return .mapped(m.physicalStart.advanced(by: va.rawValue - m.virtualStart.rawValue), m)
    }

    /// The identity (VA == PA) mappings in the lower half: the only place a physical
    /// address used as a pointer can land.
    public var identityMappings: [Mapping] { mappings.filter { $0.virtualStart.isLowerHalf } }
}

extension EfiPageTables {
    /// What a kernel release puts into efi_mm (torvalds/linux arch/x86/platform/efi/efi_64.c
    /// `efi_setup_page_tables`, `efi_map_region`, `efi_sync_low_kernel_mappings`;
    /// arch/x86/coco/sev/core.c `sev_es_efi_map_ghcbs_cas`). Parts without a place in the
    /// model's guest memory are left out and named by `notPlaced`: the new memmap and the
    /// per-CPU GHCB pages (the model's guest speaks the GHCB MSR protocol).
    public static func build(for kernel: LinuxKernelRelease, runtimeRegions: [EfiRuntimeRegion],
                             callingAreas: [PerCpuCallingArea], ramSize: UInt64) -> EfiPageTables {
        var mappings: [Mapping] = []
        let dataFlags: Flags = [.writable, .noExecute, .encrypted]
        // efi_setup_page_tables: page 0.
        mappings.append(Mapping(virtualStart: VirtualAddress(0), physicalStart: GuestPhysicalAddress(0), pages: 1,
                                flags: dataFlags, origin: .firstPage))
        // sev_es_efi_map_ghcbs_cas: with an SVSM, each CPU's CAA, 1:1, pflags_enc =
        // cc_mkenc(_PAGE_NX | _PAGE_RW).
        if kernel.mapsCallingAreasInEfiMm {
            for caa in callingAreas {
                mappings.append(Mapping(virtualStart: VirtualAddress(sameNumberAs: caa.physical.page), physicalStart: caa.physical.page,
                                        pages: 1, flags: dataFlags, origin: .callingArea(apicId: caa.apicId)))
            }
        }
        // efi_map_region for each runtime region: 1:1, then at the next efi_va.
        var efiVa = LinuxVirtualLayout.efiVaStart
        for region in runtimeRegions {
            var flags: Flags = [.writable, .encrypted]
            if region.kind != .runtimeServicesCode { flags.insert(.noExecute) }
            mappings.append(Mapping(virtualStart: VirtualAddress(sameNumberAs: region.physicalStart), physicalStart: region.physicalStart,
                                    pages: region.pages, flags: flags, origin: .runtimeRegionIdentity(region.name)))
            efiVa = nextEfiVa(below: efiVa, physical: region.physicalStart, size: region.pages * GuestPhysicalAddress.pageSize)
            mappings.append(Mapping(virtualStart: VirtualAddress(efiVa), physicalStart: region.physicalStart, pages: region.pages,
                                    flags: flags, origin: .runtimeRegionVirtual(region.name)))
        }
        // efi_sync_low_kernel_mappings: the kernel half of init_mm, direct map included.
        mappings.append(Mapping(virtualStart: VirtualAddress(LinuxVirtualLayout.pageOffset), physicalStart: GuestPhysicalAddress(0),
                                pages: ramSize / GuestPhysicalAddress.pageSize, flags: dataFlags, origin: .kernelDirectMap))
        return EfiPageTables(mappings: mappings)
    }

    /// What the model leaves out of efi_mm because it has no place in guest memory.
    public static let notPlaced = [
        "the new EFI memmap, 1:1 (efi_setup_page_tables)",
        "each CPU's GHCB page, 1:1 unencrypted (sev_es_efi_map_ghcbs_cas; every SEV-ES kernel)",
        "the kernel image and modules, shared from init_mm (efi_sync_low_kernel_mappings)",
    ]

    /// `efi_map_region`'s top-down allocation: below the previous address, keeping the
    /// physical address's offset within a 2 MiB page.
    static func nextEfiVa(below previous: UInt64, physical: GuestPhysicalAddress, size: UInt64) -> UInt64 {
        let pmdMask = ~(LinuxVirtualLayout.pmdSize - 1)
        var va = previous - size
        let offset = physical.rawValue & (LinuxVirtualLayout.pmdSize - 1)
        if offset == 0 {
            va &= pmdMask
        } else {
            let candidate = (va & pmdMask) + offset
            va = candidate > va ? candidate - LinuxVirtualLayout.pmdSize : candidate
        }
        return va
    }
}
