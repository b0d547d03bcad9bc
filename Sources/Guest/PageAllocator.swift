import EfiTypes
import Hardware
import SvsmAbi

/// The guest's page allocator, shared by its firmware and its OS: contiguous, page-aligned,
/// zeroed pages of guest RAM, handed out bottom-up and never over the SVSM's range; single
/// pages can be given back. The firmware's reserved ranges are recorded for the boot story.
public final class PageAllocator: Sendable {
    public let memory: GuestMemory
    private let state: Locked<State>

    struct State {
        var next: UInt64
        var freeSingles: [UInt64] = []
        var reserved: [GuestRegion] = []
    }

    /// - Parameter firstAllocatable: where allocation starts (below it: fixed pages such as
    ///   the secrets page and the firmware's CAA).
    public init(memory: GuestMemory, firstAllocatable: UInt64 = 0x0010_0000) {
        self.memory = memory
        self.state = Locked(State(next: firstAllocatable))
    }

    /// Allocates `count` contiguous, page-aligned, zeroed pages of guest RAM.
    public func allocatePages(_ count: Int = 1, alignment: UInt64 = GuestPhysicalAddress.pageSize) throws(GuestMemoryError) -> GuestPhysicalAddress {
        let svsm = memory.svsmRegion
        let limit = memory.ramSize
        let result: GuestPhysicalAddress? = state.withLock { a in
            if count == 1, alignment == GuestPhysicalAddress.pageSize, let p = a.freeSingles.popLast() {
                return GuestPhysicalAddress(p)
            }
            var start = (a.next + alignment - 1) / alignment * alignment
            let bytes = UInt64(count) * GuestPhysicalAddress.pageSize
            if GuestRegion(start: GuestPhysicalAddress(start), length: bytes).overlaps(svsm) {
                start = (svsm.end! + alignment - 1) / alignment * alignment
            }
            guard start + bytes <= limit else { return nil }
            a.next = start + bytes
            return GuestPhysicalAddress(start)
        }
        guard let gpa = result else { throw .outOfMemory(pages: count) }
        try memory.fill(gpa, count: count * GuestMemory.pageSize, with: 0)
        return gpa
    }

    /// Returns one page.
    public func freePage(_ gpa: GuestPhysicalAddress) {
        precondition(gpa.pageAligned)
        state.withLock { $0.freeSingles.append(gpa.rawValue) }
    }

    /// Records pages the firmware keeps reserved in the memory map it hands the OS.
    public func reserve(_ region: GuestRegion) {
        state.withLock { $0.reserved.append(region) }
    }

    public var reservedRegions: [GuestRegion] { state.withLock { $0.reserved } }
}
