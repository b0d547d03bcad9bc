import EfiTypes
import Hardware
import MmWire
import SvsmAbi

/// Protocol 0, with COCONUT's checks in COCONUT's order (`kernel/src/protocols/core.rs`).
/// Where COCONUT and the SVSM spec disagree, COCONUT wins and the spec's wording is noted.
extension Svsm {
    static let coreVersion: ClosedRange<UInt32> = 1...1
    static let uefiMmVersion: ClosedRange<UInt32> = 1...1

    func coreProtocol(_ call: UInt32, apicId: UInt32, regs: inout SvsmRegisters) throws(SvsmError) {
        switch call {
        case 0: try remapCA(apicId: apicId, regs: regs)
        case 1: try pvalidate(regs: regs)
        case 2: try createVcpu(callerApicId: apicId, regs: regs)
        case 3: try deleteVcpu(callerApicId: apicId, regs: regs)
        case 4, 5: throw .unsupportedCall // DEPOSIT_MEM / WITHDRAW_MEM: "not yet supported"
        case 6: regs.rcx = queryProtocol(regs.rcx)
        case 7: try configureVtom(regs: &regs)
        default: throw .unsupportedCall
        }
    }

    /// SVSM_CORE_REMAP_CA. COCONUT zeroes the new CAA's first 8 bytes before any conflict
    /// check, so even a failing remap clears them.
    func remapCA(apicId: UInt32, regs: SvsmRegisters) throws(SvsmError) {
        let new = GuestPhysicalAddress(regs.rcx)
        guard new.pageAligned else { throw .invalidParameter }
        guard access.memory.isGuestRam(GuestRegion(start: new, length: CallingArea.headerSize)) else { throw .invalidAddress }
        try access.setCaaHeader(new, 0)
        try updateRegistry { (r: inout [UInt32: VcpuBinding]) throws(SvsmError) in
            guard var me = r[apicId] else { throw .invalidAddress }
            if me.caa == new { return }
            for (id, b) in r where id != apicId {
                if b.caa == new { throw .invalidAddress }
            }
            for b in r.values where GuestRegion(start: b.vmsa, length: GuestPhysicalAddress.pageSize)
                .overlaps(GuestRegion(start: new, length: CallingArea.headerSize)) {
                throw .invalidAddress
            }
            me.caa = new
            r[apicId] = me
        }
    }

    /// SVSM_CORE_PVALIDATE: the list format and its errors (SVSM spec §6.2; COCONUT
    /// `core_pvalidate`). Pages named for validation are zeroed; the model keeps no RMP, so
    /// the hardware step always succeeds.
    func pvalidate(regs: SvsmRegisters) throws(SvsmError) {
        let listGpa = GuestPhysicalAddress(regs.rcx)
        guard listGpa.rawValue & 7 == 0 else { throw .invalidParameter }
        let pageRemaining = GuestPhysicalAddress.pageSize - (listGpa.rawValue & (GuestPhysicalAddress.pageSize - 1))
        let header = try access.read(GuestRegion(start: listGpa, length: 8), protected: protectedPages)
        let entries = UInt64(header.loadLE(UInt16.self, at: 0))
        let next = UInt64(header.loadLE(UInt16.self, at: 2))
        let maxEntries = (pageRemaining - 8) / 8
        guard entries != 0, entries <= maxEntries, entries > next else { throw .invalidParameter }
        let list = try access.read(GuestRegion(start: listGpa.advanced(by: 8), length: entries * 8), protected: protectedPages)
        var progress = next
        for i in Int(next)..<Int(entries) {
            let entry = list.loadLE(UInt64.self, at: i * 8)
            guard entry & 0xff0 == 0 else { throw .invalidParameter }
            let size = entry & 3
            guard size <= 1 else { throw .invalidParameter }
            let gpa = GuestPhysicalAddress(entry & ~0xfff)
            let length: UInt64 = size == 1 ? 2 << 20 : 4096
            if size == 1, gpa.rawValue % length != 0 { throw .invalidParameter }
            let region = GuestRegion(start: gpa, length: length)
            guard access.validPhysRegion(region, protected: protectedPages) else { throw .invalidAddress }
            if entry & 4 != 0 {
                do { try access.memory.fill(gpa, count: Int(length), with: 0) } catch { throw .fault }
            }
            progress += 1
            var h = [UInt8](zeroed: 2)
            h.storeLE(UInt16(progress), at: 0)
            try access.write(listGpa.advanced(by: 2), h, protected: protectedPages)
        }
    }

    /// SVSM_CORE_CREATE_VCPU. COCONUT returns INVALID_ADDRESS for a misaligned address where
    /// the SVSM spec says INVALID_PARAMETER.
    func createVcpu(callerApicId: UInt32, regs: SvsmRegisters) throws(SvsmError) {
        let vmsa = GuestPhysicalAddress(regs.rcx)
        let caa = GuestPhysicalAddress(regs.rdx)
        let target = UInt32(truncatingIfNeeded: regs.r8)
        guard vmsa.pageAligned, caa.pageAligned else { throw .invalidAddress }
        let vmsaRegion = GuestRegion(start: vmsa, length: GuestPhysicalAddress.pageSize)
        let caaRegion = GuestRegion(start: caa, length: GuestPhysicalAddress.pageSize)
        guard !vmsaRegion.overlaps(caaRegion),
              access.memory.isGuestRam(vmsaRegion), access.memory.isGuestRam(caaRegion) else { throw .invalidAddress }
        guard Int(target) < configuration.maxVcpus else { throw .invalidParameter }
        // check_vmsa reads the guest-prepared page before the SVSM takes it over.
        let vmpl = try access.vmsaU8(vmsa, VmsaLayout.vmpl)
        let efer = try access.vmsaU64(vmsa, VmsaLayout.efer)
        let features = try access.vmsaU64(vmsa, VmsaLayout.sevFeatures)
        try updateRegistry { (r: inout [UInt32: VcpuBinding]) throws(SvsmError) in
            for b in r.values {
                let other = GuestRegion(start: b.vmsa, length: GuestPhysicalAddress.pageSize)
                let otherCaa = GuestRegion(start: b.caa, length: CallingArea.headerSize)
                let newCaaHead = GuestRegion(start: caa, length: CallingArea.headerSize)
                if vmsaRegion.overlaps(other) || vmsaRegion.overlaps(otherCaa)
                    || newCaaHead.overlaps(other) || newCaaHead.overlaps(otherCaa) {
                    throw .invalidAddress
                }
            }
            guard vmpl == configuration.guestVmpl, efer & VmsaLayout.eferSvme != 0, features == sevFeatures else {
                throw .invalidParameter
            }
            r[target] = VcpuBinding(apicId: target, vmsa: vmsa, caa: caa)
        }
    }

    /// SVSM_CORE_DELETE_VCPU: not page aligned, or not an in-use VMSA → INVALID_PARAMETER.
    func deleteVcpu(callerApicId: UInt32, regs: SvsmRegisters) throws(SvsmError) {
        let vmsa = GuestPhysicalAddress(regs.rcx)
        guard vmsa.pageAligned else { throw .invalidParameter }
        try updateRegistry { (r: inout [UInt32: VcpuBinding]) throws(SvsmError) in
            guard let (id, _) = r.first(where: { $0.value.vmsa == vmsa }) else { throw .invalidParameter }
            // The startup vCPU cannot be deleted (SVSM spec §6.4).
            guard id != 0 else { throw .invalidParameter }
            r[id] = nil
        }
    }

    /// SVSM_CORE_QUERY_PROTOCOL: RCX[63:32] protocol, RCX[31:0] version in; out RCX = max
    /// << 32 | min, or 0 if that version is unavailable. Always SUCCESS.
    func queryProtocol(_ rcx: UInt64) -> UInt64 {
        let proto = UInt32(rcx >> 32)
        let version = UInt32(truncatingIfNeeded: rcx)
        let range: ClosedRange<UInt32>?
        switch proto {
        case 0: range = Svsm.coreVersion
        case 1: range = configuration.attestationEnabled ? Svsm.attestVersion : nil
        case 4: range = configuration.uefiMmEnabled ? Svsm.uefiMmVersion : nil
        default: range = nil
        }
        guard let r = range, r.contains(version) else { return 0 }
        return UInt64(r.lowerBound) | UInt64(r.upperBound) << 32
    }

    /// SVSM_CORE_CONFIGURE_VTOM: COCONUT answers a query with RCX = 0 (unsupported) and
    /// refuses configuration with INVALID_REQUEST.
    func configureVtom(regs: inout SvsmRegisters) throws(SvsmError) {
        if regs.rcx & 1 != 0 { regs.rcx = 0; return }
        throw .notSupported
    }
}
