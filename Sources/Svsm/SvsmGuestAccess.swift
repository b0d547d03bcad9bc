import EfiTypes
import Hardware
import MmWire
import SvsmAbi

/// Errors inside the SVSM, mapped to result codes in one place (COCONUT `errors.rs`).
public enum SvsmError: Error, Equatable, Sendable {
    case fault
    case invalidAddress
    case invalidParameter
    case invalidFormat
    case notSupported
    case unsupportedCall
    case unsupportedProtocol
    /// A handler produced a response larger than the request it answers. COCONUT asserts
    /// (panics the SVSM) here; an earlier COCONUT version returned INVALID_REQUEST, which is
    /// what this model does so that a guest can never crash it.
    case responseTooLarge
    /// A hardware-style failure code from PVALIDATE and friends.
    case sevSnp(UInt32)
    /// The manifest (0) or report (1) does not fit the guest's buffer: COCONUT's
    /// `SvsmError::Attestation(e)` becomes `PROTOCOL_BASE(e as u64)`. The variant numbers
    /// of COCONUT's `AttestError` were not read; 0 and 1 are the model's.
    case attestation(UInt32)

    public var resultCode: SvsmResultCode {
        switch self {
        case .fault, .invalidAddress: return .invalidAddress
        case .invalidParameter: return .invalidParameter
        case .invalidFormat: return .invalidFormat
        case .notSupported, .responseTooLarge: return .invalidRequest
        case .unsupportedCall: return .unsupportedCall
        case .unsupportedProtocol: return .unsupportedProtocol
        case .sevSnp(let rc), .attestation(let rc): return .protocolBase(rc)
        }
    }
}

/// One entry of the SVSM's per-CPU registry (COCONUT `PERCPU_VMSAS`): the VMSA the CPU runs
/// at the guest's VMPL and the CAA bound to it.
public struct VcpuBinding: Equatable, Sendable {
    public var apicId: UInt32
    public var vmsa: GuestPhysicalAddress
    public var caa: GuestPhysicalAddress
}

/// The pages the SVSM protects, derived from its registry: every registered VMSA page,
/// and every registered CAA (its page, and its first 8 bytes for region checks).
public struct ProtectedPages: Sendable, Equatable {
    public var vmsaPages: Set<UInt64> = []
    /// CAA GPAs by the page that holds them.
    var caaByPage: [UInt64: [UInt64]] = [:]
    /// Every VMSA and CAA page, sorted: a region check finds the first one at or after its
    /// start by binary search, so it costs the same for a 64 KiB MM buffer as for one
    /// byte, and for 512 vCPUs as for 4 (checking each page of the region against the
    /// sets hashed 32 times per 64 KiB check, three checks per MM request).
    private(set) var sortedPages: [UInt64] = []

    public init(_ bindings: some Sequence<VcpuBinding>) {
        for b in bindings {
            vmsaPages.insert(b.vmsa.page.rawValue)
            caaByPage[b.caa.page.rawValue, default: []].append(b.caa.rawValue)
        }
        sortedPages = vmsaPages.union(caaByPage.keys).sorted()
    }

    /// Whether `page` is a VMSA or CAA page.
    func contains(page: UInt64) -> Bool {
        let i = firstIndex(atOrAfter: page)
        return i < sortedPages.count && sortedPages[i] == page
    }

    /// The index in `sortedPages` of the first page at or after `page`.
    func firstIndex(atOrAfter page: UInt64) -> Int {
        var low = 0, high = sortedPages.count
        while low < high {
            let mid = (low + high) / 2
            if sortedPages[mid] < page { low = mid + 1 } else { high = mid }
        }
        return low
    }

    func caaHeads(onPage page: UInt64) -> [UInt64] { caaByPage[page] ?? [] }
}

/// How the SVSM reads and writes guest memory: by guest-physical address only, every range
/// checked first (COCONUT `mm/memory.rs` `valid_phys_address`/`valid_phys_region`,
/// `mm/guestmem.rs`). Nothing on the SVSM side holds a reference to a guest-side object.
public struct SvsmGuestAccess: Sendable {
    public let memory: GuestMemory
    /// COCONUT treats the launch VMSA address as never valid.
    public static let launchVmsaAddress = GuestPhysicalAddress(0xFFFF_FFFF_F000)

    /// `valid_phys_address`: false when the page is a registered VMSA or CAA page, when it is
    /// the launch VMSA address, or when it is outside the memory map.
    public func validPhysAddress(_ pa: GuestPhysicalAddress, protected: ProtectedPages) -> Bool {
        if pa.page == SvsmGuestAccess.launchVmsaAddress { return false }
        if protected.contains(page: pa.page.rawValue) { return false }
        return memory.isGuestRam(GuestRegion(start: pa, length: 1))
    }

    /// `valid_phys_region`: inside one memory-map entry and not overlapping a VMSA page or the
    /// first 8 bytes of any CAA.
    public func validPhysRegion(_ region: GuestRegion, protected: ProtectedPages) -> Bool {
        guard let end = region.end, memory.isGuestRam(region) else { return false }
        guard region.length > 0 else { return true }
        // Only the protected pages the region reaches need a look.
        var i = protected.firstIndex(atOrAfter: region.start.page.rawValue)
        while i < protected.sortedPages.count, protected.sortedPages[i] < end {
            let page = protected.sortedPages[i]
            if protected.vmsaPages.contains(page) { return false }
            for head in protected.caaHeads(onPage: page)
            where region.overlaps(GuestRegion(start: GuestPhysicalAddress(head), length: CallingArea.headerSize)) {
                return false
            }
            i += 1
        }
        return true
    }

    public func read(_ region: GuestRegion, protected: ProtectedPages) throws(SvsmError) -> [UInt8] {
        guard validPhysRegion(region, protected: protected) else { throw .invalidAddress }
        do { return try memory.read(region.start, count: Int(region.length)) } catch { throw .fault }
    }

    /// The checked range read in place: `body` takes what it needs (values, not the
    /// pointer) and returns it, so no array is made for a header read field by field.
    public func withBytes<R>(_ region: GuestRegion, protected: ProtectedPages, _ body: (UnsafeRawBufferPointer) -> R) throws(SvsmError) -> R {
        guard validPhysRegion(region, protected: protected) else { throw .invalidAddress }
        do { return try memory.withBytes(region.start, count: Int(region.length), body) } catch { throw .fault }
    }

    public func write(_ gpa: GuestPhysicalAddress, _ bytes: [UInt8], protected: ProtectedPages) throws(SvsmError) {
        guard validPhysRegion(GuestRegion(start: gpa, length: UInt64(bytes.count)), protected: protected) else { throw .invalidAddress }
        do { try memory.write(gpa, bytes) } catch { throw .fault }
    }

    // The CAA header and the VMSA are the SVSM's own business: it touches them directly, but
    // still only by GPA and only inside RAM.
    /// The CAA's first 8 bytes (call_pending, mem_available, reserved) as one
    /// little-endian word: byte 0 is call_pending.
    func caaHeader(_ caa: GuestPhysicalAddress) throws(SvsmError) -> UInt64 {
        do { return try memory.readU64(caa) } catch { throw .fault }
    }
    func setCaaHeader(_ caa: GuestPhysicalAddress, _ header: UInt64) throws(SvsmError) {
        do { try memory.writeU64(caa, header) } catch { throw .fault }
    }
    func vmsaU64(_ vmsa: GuestPhysicalAddress, _ offset: UInt64) throws(SvsmError) -> UInt64 {
        do { return try memory.readU64(vmsa.advanced(by: offset)) } catch { throw .fault }
    }
    func setVmsaU64(_ vmsa: GuestPhysicalAddress, _ offset: UInt64, _ v: UInt64) throws(SvsmError) {
        do { try memory.writeU64(vmsa.advanced(by: offset), v) } catch { throw .fault }
    }
    func vmsaU8(_ vmsa: GuestPhysicalAddress, _ offset: UInt64) throws(SvsmError) -> UInt8 {
        do { return try memory.readU8(vmsa.advanced(by: offset)) } catch { throw .fault }
    }
}
