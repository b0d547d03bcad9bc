#if canImport(Glibc)
import Glibc
#endif
import SvsmEfiVars

/// (a) A hostile guest against the SVSM: each input is up to four calls on the boot vCPU.
/// For each, the guest writes bytes of its choosing at the page RCX names, loads RAX, RCX,
/// RDX and R8 (any values), sets call_pending and exits. After the SVSM ran, every byte of
/// guest RAM is compared with a shadow copy: the only bytes that may change are the ones
/// the call is allowed to write (the CAA's call_pending, the MM message area of a protocol 4
/// request, the new CAA header of REMAP_CA, a PVALIDATE list's progress and the pages it
/// validates). The SVSM must answer every call, and a successful protocol 4 request must
/// have passed COCONUT's buffer checks. The input's last byte picks the store behind
/// protocol 4 (edk2's, QEMU's, COCONUT's), so every profile meets the same hostile guest.
final class SvsmProtocolTarget: @unchecked Sendable {
    static let shared = SvsmProtocolTarget()

    // Small, so that comparing all of guest RAM after every call stays cheap: 1.5 MiB of
    // guest RAM, the SVSM's 512 KiB at the top.
    static let ramSize: UInt64 = 2 << 20
    static let svsmRegion = GuestRegion(start: GuestPhysicalAddress(0x18_0000), length: 0x8_0000)
    static let bootVmsa = svsmRegion.start.advanced(by: 4096)
    static let firmwareCaa = GuestPhysicalAddress(0xA000)
    static let bufferBase: UInt64 = 0x4_0000

    let memory = GuestMemory(ramSize: SvsmProtocolTarget.ramSize, svsmRegion: SvsmProtocolTarget.svsmRegion)
    /// What guest RAM must hold if the SVSM wrote nothing it should not have.
    var shadow: [UInt8]
    /// Pages written during the last input, zeroed before the next one.
    var dirty: Set<UInt64> = []
    /// The booted stores of the three profiles.
    let bases: [any MmVariableStore]

    init() {
        shadow = [UInt8](zeroed: Int(Self.ramSize))
        bases = [FuzzStores.bootedStore()] + PeerStoreTarget.shared.bases
    }

    func run(_ data: [UInt8]) throws(PropertyViolation) {
        reset()
        let service = VariableService(store: bases[Int(data.last ?? 0) % bases.count])
        let svsm = Svsm(memory: memory, mmService: service)
        do { try svsm.launch(bootVmsa: Self.bootVmsa, firmwareCaa: Self.firmwareCaa) } catch { fatalError("launch: \(error)") }
        var input = FuzzInput(data)
        var calls = 0
        while !input.isExhausted && calls < 4 {
            calls += 1
            try call(svsm, &input)
        }
    }

    /// Zeroes what the previous input wrote, in guest RAM and in the shadow.
    func reset() {
        for page in dirty {
            try? memory.fill(GuestPhysicalAddress(page), count: 4096, with: 0)
            shadow.withUnsafeMutableBytes { _ = memset($0.baseAddress! + Int(page), 0, 4096) }
        }
        dirty = []
    }

    func guestWrite(_ gpa: UInt64, _ bytes: [UInt8], svsm: Svsm) {
        let protected = svsm.protectedPages.vmsaPages
        for (i, b) in bytes.enumerated() {
            let a = gpa &+ UInt64(i)
            guard a < Self.ramSize, !Self.svsmRegion.contains(GuestRegion(start: GuestPhysicalAddress(a), length: 1)) else { break }
            // A VMSA page belongs to the hardware once registered: the guest cannot write it.
            if protected.contains(a & ~0xfff) { continue }
            try? memory.writeU8(GuestPhysicalAddress(a), b)
            shadow[Int(a)] = b
            dirty.insert(a & ~0xfff)
        }
    }

    func call(_ svsm: Svsm, _ input: inout FuzzInput) throws(PropertyViolation) {
        let op = input.u8()
        let rax: UInt64
        switch op & 7 {
        case 0, 1, 2, 3: rax = SvsmCallId.uefiMmRequest.rax
        case 4: rax = SvsmCallId(protocol: 0, call: UInt32(op >> 3 & 7)).rax
        case 5: rax = SvsmCallId(protocol: 4, call: UInt32(input.u8())).rax
        case 6: rax = input.u64()
        default: rax = SvsmCallId.coreQueryProtocol.rax
        }
        let rcxSel = input.u8()
        let rcx: UInt64
        switch rcxSel & 7 {
        case 4: rcx = input.u64()
        case 5: rcx = Self.firmwareCaa.rawValue &+ UInt64(input.u8()) * 4096
        case 6: rcx = Self.svsmRegion.start.rawValue &+ UInt64(input.u16())
        case 7: rcx = Self.ramSize &- UInt64(input.u16()) * 16
        default: rcx = Self.bufferBase + UInt64(input.u8() % 192) * 4096 + (rcxSel & 0x80 != 0 ? UInt64(input.u16() & 0xfff) : 0)
        }
        let rdxSel = input.u8()
        let rdx: UInt64
        switch rdxSel & 3 {
        case 0: rdx = UInt64(input.u16())
        case 1: rdx = 4096 * UInt64(input.u8() % 65)
        case 2: rdx = input.u64()
        default: rdx = UInt64(input.u32())
        }
        let r8 = UInt64(input.u16())
        let blob = input.block()
        guestWrite(rcx & ~0xfff, blob, svsm: svsm)

        guard let me = svsm.binding(apicId: 0) else { throw violation("the boot vCPU lost its registration") }
        // The hypervisor loads the registers into the VMSA; the guest sets call_pending.
        let vmsa = me.vmsa
        try? memory.writeU64(vmsa.advanced(by: VmsaLayout.rax), rax)
        try? memory.writeU64(vmsa.advanced(by: VmsaLayout.rcx), rcx)
        try? memory.writeU64(vmsa.advanced(by: VmsaLayout.rdx), rdx)
        try? memory.writeU64(vmsa.advanced(by: VmsaLayout.r8), r8)
        guestWrite(me.caa.rawValue, [1], svsm: svsm)

        let id = SvsmCallId(rax: rax)
        let allowed = allowedWrites(id, rcx: rcx, rdx: rdx, caa: me.caa.rawValue)
        let protectedBefore = svsm.protectedPages
        let outcome = svsm.enter(apicId: 0)
        guard case .processed(let seenId, let result) = outcome else { throw violation("a pending call was not processed: \(outcome)") }
        try require(seenId == id, "dispatched \(seenId) for RAX 0x\(String(rax, radix: 16))")
        try require((try? memory.readU8(me.caa)) == 0, "call_pending still set after the call")
        if id == .uefiMmRequest && result == .success {
            try require(rcx != 0 && rcx & 0xfff == 0 && rdx >= 24 && rdx <= Svsm.uefiMmBufferLimit, "protocol 4 accepted RCX 0x\(String(rcx, radix: 16)) RDX \(rdx)")
            try require(svsm.access.validPhysRegion(GuestRegion(start: GuestPhysicalAddress(rcx), length: 24), protected: protectedBefore),
                    "protocol 4 accepted a buffer over a protected page")
        }
        try checkWrites(allowed: allowed, result: result)
    }

    /// The ranges `id` may write, computed from the shadow (what the guest put there).
    func allowedWrites(_ id: SvsmCallId, rcx: UInt64, rdx: UInt64, caa: UInt64) -> [Range<UInt64>] {
        var ranges: [Range<UInt64>] = [caa..<caa + 8]
        func shadowU64(_ a: UInt64) -> UInt64 {
            guard a + 8 <= Self.ramSize else { return 0 }
            return shadow.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: Int(a), as: UInt64.self) }
        }
        func shadowU16(_ a: UInt64) -> UInt64 {
            guard a + 2 <= Self.ramSize else { return 0 }
            return UInt64(shadow.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: Int(a), as: UInt16.self) })
        }
        switch id {
        case .uefiMmRequest where rcx < Self.ramSize:
            let length = shadowU64(rcx + 16)
            let start = rcx + 24
            if length <= Self.ramSize { ranges.append(start..<start + length) }
        case .coreRemapCA where rcx < Self.ramSize:
            ranges.append(rcx..<rcx + 8)
        case .corePvalidate where rcx < Self.ramSize:
            ranges.append(rcx + 2..<rcx + 4)
            let entries = shadowU16(rcx), next = shadowU16(rcx + 2)
            if next < min(entries, 512) {
                for i in next..<min(entries, 512) {
                    let e = shadowU64(rcx + 8 + i * 8)
                    let gpa = e & ~0xfff
                    let length: UInt64 = e & 3 == 1 ? 2 << 20 : 4096
                    if e & 4 != 0, gpa < Self.ramSize { ranges.append(gpa..<gpa + length) }
                }
            }
        default: break
        }
        return ranges
    }

    /// Compares guest RAM (outside the SVSM's own range) with the shadow; every difference
    /// must lie in an allowed range. The shadow then takes the new contents.
    func checkWrites(allowed: [Range<UInt64>], result: SvsmResultCode) throws(PropertyViolation) {
        let svsmStart = Int(Self.svsmRegion.start.rawValue), svsmEnd = Int(Self.svsmRegion.end!)
        var changed: [Int] = []
        memory.withHostView { ram in
            shadow.withUnsafeBytes { sh in
                for (lo, hi) in [(0, svsmStart), (svsmEnd, Int(Self.ramSize))] {
                    if memcmp(ram.baseAddress! + lo, sh.baseAddress! + lo, hi - lo) == 0 { continue }
                    var page = lo
                    while page < hi {
                        if memcmp(ram.baseAddress! + page, sh.baseAddress! + page, 4096) != 0 {
                            for i in page..<page + 4096 where ram[i] != sh[i] { changed.append(i) }
                        }
                        page += 4096
                    }
                }
            }
        }
        guard !changed.isEmpty else { return }
        let bytes = memory.withHostView { ram in changed.map { ram[$0] } }
        for (i, a) in changed.enumerated() {
            try require(allowed.contains { $0.contains(UInt64(a)) },
                    "the SVSM wrote guest byte 0x\(String(a, radix: 16)) outside what the call may write (result \(result))")
            shadow[a] = bytes[i]
            dirty.insert(UInt64(a) & ~0xfff)
        }
    }

    static func seeds() -> [(name: String, bytes: [UInt8])] {
        var out: [(String, [UInt8])] = []
        func mm(_ name: String, _ message: [UInt8], rdx: UInt64 = 0x10000, page: UInt8 = 0) {
            var s = FuzzSeed()
            s.u8(0)                // protocol 4 request
            s.u8(0); s.u8(page)    // RCX: buffer page
            s.u8(2); s.u64(rdx)    // RDX raw
            s.u16(0)               // R8
            s.block(MmCommunicateHeader.encode(headerGuid: FuzzMessages.all.first { $0.0 == name }?.1 ?? .smmVariableProtocol, message: message))
            out.append(("mm-" + name, s.bytes))
        }
        for (name, _, message) in FuzzMessages.all { mm(name, message) }
        // Core calls: query, remap to a fresh page, PVALIDATE a list, CREATE_VCPU with a
        // prepared VMSA, then a request through the moved CAA.
        var q = FuzzSeed(); q.u8(7); q.u8(4); q.u64(4 << 32 | 1); q.u8(0); q.u16(0); q.u16(0); q.block([])
        out.append(("core-query", q.bytes))
        var remap = FuzzSeed(); remap.u8(4 | 0 << 3); remap.u8(0); remap.u8(9); remap.u8(0); remap.u16(0); remap.u16(0); remap.block([])
        let get = FuzzMessages.all[0].2
        remap.u8(0); remap.u8(0); remap.u8(1); remap.u8(2); remap.u64(0x1000); remap.u16(0)
        remap.block(MmCommunicateHeader.encode(headerGuid: .smmVariableProtocol, message: get))
        out.append(("core-remap-then-mm", remap.bytes))
        var pv = FuzzSeed(); pv.u8(4 | 1 << 3); pv.u8(0); pv.u8(3); pv.u8(0); pv.u16(0); pv.u16(0)
        var list = [UInt8](zeroed: 8 + 16)
        list.storeLE(UInt16(2), at: 0)
        list.storeLE(UInt64(bufferBase + 5 * 4096 | 4), at: 8)
        list.storeLE(UInt64(bufferBase + 6 * 4096), at: 16)
        pv.block(list)
        out.append(("core-pvalidate", pv.bytes))
        var cv = FuzzSeed(); cv.u8(4 | 2 << 3); cv.u8(0); cv.u8(7); cv.u8(2); cv.u64(bufferBase + 8 * 4096); cv.u16(1)
        var vmsa = [UInt8](zeroed: 4096)
        vmsa[Int(VmsaLayout.vmpl)] = 2
        vmsa.storeLE(VmsaLayout.eferSvme, at: Int(VmsaLayout.efer))
        vmsa.storeLE(UInt64(1), at: Int(VmsaLayout.sevFeatures))
        cv.block(vmsa)
        out.append(("core-create-vcpu", cv.bytes))
        var over = FuzzSeed(); over.u8(0); over.u8(5); over.u8(0); over.u8(1); over.u8(1); over.u16(0)
        over.block(MmCommunicateHeader.encode(headerGuid: .smmVariableProtocol, message: get))
        out.append(("mm-over-caa", over.bytes))
        return out
    }
}
