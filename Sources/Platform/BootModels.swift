import Driver
import EfiTypes
import Guest
import Hardware
import MmWire
import SvsmAbi

/// The firmware's part of the boot (OVMF under an SVSM): it runs on the boot vCPU with the
/// CAA the secrets page names.
struct FirmwareModel {
    let allocator: PageAllocator
    let transport: SvsmCallTransport
    let bsp: Vcpu
    var memory: GuestMemory { allocator.memory }

    enum Failure: Error, CustomStringConvertible {
        case noSvsm, noUefiMm, call(SvsmCallError), memory(GuestMemoryError), setVariable(String, EfiStatus)
        var description: String {
            switch self {
            case .noSvsm: return "secrets page: SVSM_SIZE is 0"
            case .noUefiMm: return "QUERY_PROTOCOL(4, 1) answered 0"
            case .call(let e): return "\(e)"
            case .memory(let e): return "\(e)"
            case .setVariable(let n, let s): return "SetVariable(\(n)) failed: \(s.name)"
            }
        }
    }

    /// OVMF VirtMmCommunicationDxe: one 64 KiB runtime buffer (MAX_BUFFER_SIZE).
    static let mmBufferSize = 64 * 1024

    /// OVMF's BDS rebuilds BootOrder from the boot options it registers on every boot, so a
    /// store that holds Boot#### options but no BootOrder (Debian's OVMF_VARS_4M.ms.fd is
    /// one) has one after boot. Modelled as: BootOrder listing the existing Boot####
    /// numbers in ascending order (a QEMU VM with other devices would also register
    /// options for them).
    func ensureBootOrder(_ mm: (EfiGuid, [UInt8]) throws(Failure) -> [UInt8]) throws(Failure) {
        func status(_ reply: [UInt8]) -> EfiStatus { EfiStatus(rawValue: reply.loadLE(UInt64.self, at: SmmVariableHeader.returnStatusOffset)) }
        let bootOrder = VariableKey("BootOrder", .globalVariable)
        let probe = try mm(.smmVariableProtocol, SmmVariableHeader.message(.getVariable, payload:
            AccessVariablePayload.encode(guid: bootOrder.guid, name: bootOrder.name, attributes: 0, dataSize: 0)))
        guard status(probe) == .notFound else { return }
        var numbers: [UInt16] = []
        var previous = VariableKey(guid: .zero, name: [])
        while true {
            let reply = try mm(.smmVariableProtocol, SmmVariableHeader.message(.getNextVariableName, payload:
                GetNextVariableNamePayload.encode(guid: previous.guid, name: previous.name, nameBufferSize: 512)))
            guard status(reply) == .success else { break }
            let p = Array(reply[SmmVariableHeader.size...])
            let nameSize = Int(p.loadLE(UInt64.self, at: GetNextVariableNamePayload.nameSizeOffset))
            guard nameSize >= 2, GetNextVariableNamePayload.nameOffset + nameSize <= p.count,
                  let name = Ucs2.readNulTerminated(p, offset: GetNextVariableNamePayload.nameOffset, byteCount: nameSize) else { break }
            previous = VariableKey(guid: EfiGuid(bytes: p, at: GetNextVariableNamePayload.guidOffset), name: name)
            let text = Ucs2.string(name)
            if previous.guid == .globalVariable, text.count == 8, text.hasPrefix("Boot"),
               let n = UInt16(text.dropFirst(4), radix: 16), text.dropFirst(4).allSatisfy({ $0.isHexDigit && !$0.isLowercase }) {
                numbers.append(n)
            }
        }
        guard !numbers.isEmpty else { return }
        var data = [UInt8]()
        for n in numbers.sorted() { data.appendLE(n) }
        let reply = try mm(.smmVariableProtocol, SmmVariableHeader.message(.setVariable, payload:
            AccessVariablePayload.encode(guid: bootOrder.guid, name: bootOrder.name, attributes: VariableAttributes.nvBsRt.rawValue,
                                         dataSize: data.count, data: data)))
        guard status(reply) == .success else { throw .setVariable(bootOrder.description, status(reply)) }
    }

    /// Returns the firmware's runtime MM buffer.
    func boot(apCount: Int, defaults: [OvmfDefaults.Entry], firstBoot: Bool, note: (String) -> Void) throws(Failure) -> GuestPhysicalAddress {
        let secrets: SecretsPage.SvsmFields
        do { secrets = try SecretsPage.read(from: Machine.secretsPage, in: memory) } catch { throw .memory(error) }
        guard secrets.size != 0 else { throw .noSvsm }
        let caa = secrets.caa  // AmdSvsmSnpGetCaa()
        do {
            let rcx = try transport.perform(.coreQueryProtocol, rcx: 4 << 32 | 1, on: bsp, caa: caa).rcx
            guard rcx != 0 else { throw Failure.noUefiMm }
            note("firmware: QUERY_PROTOCOL(4,1) through CAA \(caa) -> RCX 0x\(String(rcx, radix: 16))")
        } catch let e as Failure { throw e } catch let e as SvsmCallError { throw .call(e) } catch { throw .noUefiMm }

        // MpInitLib: three reserved pages per AP; VMSA and CAA adjacent; the 2 MiB erratum.
        for ap in 1...max(1, apCount) where apCount > 0 {
            do {
                let pages = try allocator.allocatePages(3)
                let vmsa: GuestPhysicalAddress
                if pages.advanced(by: 4096).rawValue % (2 << 20) == 0 {
                    vmsa = pages
                    allocator.freePage(pages.advanced(by: 8192))
                } else {
                    vmsa = pages.advanced(by: 4096)
                    allocator.freePage(pages)
                }
                let apCaa = vmsa.advanced(by: 4096)
                allocator.reserve(GuestRegion(start: vmsa, length: 8192))
                try VmsaSetup.prepare(vmsa, in: memory)
                try transport.perform(.coreCreateVcpu, rcx: vmsa.rawValue, rdx: apCaa.rawValue, r8: UInt64(ap), on: bsp, caa: caa)
                if ap == 1 || ap == apCount { note("firmware: AP \(ap) started, VMSA \(vmsa), CAA \(apCaa) (reserved)") }
            } catch let e as GuestMemoryError { throw .memory(e) } catch let e as SvsmCallError { throw .call(e) } catch { throw .noUefiMm }
        }

        let buffer: GuestPhysicalAddress
        do { buffer = try allocator.allocatePages(FirmwareModel.mmBufferSize / 4096) } catch { throw .memory(error) }
        allocator.reserve(GuestRegion(start: buffer, length: UInt64(FirmwareModel.mmBufferSize)))
        // VirtMmCommunicationDxe: the runtime buffer, handed to the SVSM with RDX = 64 KiB
        // through the CAA AmdSvsmLib knows (the secrets page's, before the OS moves it).
        let communicator = MmCommunicator(channel: SvsmMmChannel(transport: transport, vcpu: bsp, caa: caa, buffer: buffer,
                                                                 bufferSize: FirmwareModel.mmBufferSize))
        func mm(_ guid: EfiGuid, _ message: [UInt8]) throws(Failure) -> [UInt8] {
            do { return try communicator.communicate(headerGuid: guid, message: message) } catch { throw .call(error) }
        }
        for entry in defaults {
            // Non-volatile defaults are created on the first boot of a store only (as OVMF's
            // BDS fills a fresh OVMF_VARS.fd); later boots keep what the store holds, deletions
            // included. Volatile variables are created on every boot.
            if entry.attributes.contains(.nonVolatile) && !firstBoot { continue }
            let payload = AccessVariablePayload.encode(guid: entry.key.guid, name: entry.key.name, attributes: entry.attributes.rawValue,
                                                       dataSize: entry.data.count, data: entry.data)
            let reply = try mm(.smmVariableProtocol, SmmVariableHeader.message(.setVariable, payload: payload))
            let status = EfiStatus(rawValue: reply.loadLE(UInt64.self, at: SmmVariableHeader.returnStatusOffset))
            guard status == .success else { throw .setVariable(entry.key.description, status) }
        }
        if !firstBoot { try ensureBootOrder(mm) }
        note("firmware: \(firstBoot ? "first boot of this store: default" : "volatile default") variables written with SET_VARIABLE through protocol 4")
        // VirtMmCommunicationDxe forwards the event groups; VariableSmmRuntimeDxe sends its
        // own READY_TO_BOOT and EXIT_BOOT_SERVICE functions too. All are idempotent.
        _ = try mm(.endOfDxeEvent, [0])
        _ = try mm(.readyToBootEvent, [0])
        _ = try mm(.smmVariableProtocol, SmmVariableHeader.message(.readyToBoot, payload: []))
        _ = try mm(.exitBootServicesEvent, [0])
        _ = try mm(.smmVariableProtocol, SmmVariableHeader.message(.exitBootService, payload: []))
        note("firmware: EndOfDxe, ReadyToBoot, ExitBootServices sent; boot-service-only variables are now hidden")
        return buffer
    }
}

/// A VMSA page as a guest prepares it for CREATE_VCPU: VMPL 2, EFER.SVME, SEV_FEATURES
/// equal to the boot vCPU's.
enum VmsaSetup {
    static func prepare(_ vmsa: GuestPhysicalAddress, in memory: GuestMemory) throws(GuestMemoryError) {
        try memory.fill(vmsa, count: 4096, with: 0)
        try memory.writeU8(vmsa.advanced(by: VmsaLayout.vmpl), 2)
        try memory.writeU64(vmsa.advanced(by: VmsaLayout.efer), VmsaLayout.eferSvme | 0x500)
        try memory.writeU64(vmsa.advanced(by: VmsaLayout.sevFeatures), 1)
    }
}

/// Linux's part (arch/x86/boot/startup/sev-startup.c `svsm_setup`, arch/x86/coco/sev/core.c
/// `sev_es_init_vc_handling`, `wakeup_cpu_via_vmgexit`).
struct OsBootModel {
    let allocator: PageAllocator
    let transport: SvsmCallTransport
    let bsp: Vcpu
    var memory: GuestMemory { allocator.memory }

    enum Failure: Error, CustomStringConvertible {
        case call(String, SvsmCallError), memory(GuestMemoryError)
        var description: String {
            switch self {
            case .call(let what, let e): return "\(what): \(e)"
            case .memory(let e): return "\(e)"
            }
        }
    }

    func boot(apCount: Int, note: (String) -> Void) throws(Failure) -> (bootCa: GuestPhysicalAddress, aps: [Vcpu]) {
        let bootCa: GuestPhysicalAddress
        var percpu: [GuestPhysicalAddress] = []
        do {
            bootCa = try allocator.allocatePages(1)
            for _ in 0...apCount { percpu.append(try allocator.allocatePages(1)) }
        } catch { throw .memory(error) }
        // Early kernel: REMAP_CA to boot_svsm_ca_page through the firmware's CAA (MSR protocol).
        let firmwareCaa = bsp.svsmCaa
        do { try transport.perform(.coreRemapCA, rcx: bootCa.rawValue, on: bsp, caa: firmwareCaa) } catch { throw .call("REMAP_CA to the boot CA", error) }
        bsp.svsmCaa = bootCa
        note("OS: REMAP_CA \(firmwareCaa) -> \(bootCa) (boot_svsm_ca_page), issued through the firmware CAA")
        // sev_es_init_vc_handling: per-CPU CAAs, then REMAP_CA on the BSP.
        do { try transport.perform(.coreRemapCA, rcx: percpu[0].rawValue, on: bsp, caa: bootCa) } catch { throw .call("REMAP_CA to the per-CPU CA", error) }
        bsp.svsmCaa = percpu[0]
        note("OS: REMAP_CA \(bootCa) -> \(percpu[0]) (per_cpu(svsm_caa_pa) of CPU 0)")
        var aps: [Vcpu] = []
        for ap in 0..<apCount {
            let apic = UInt32(ap + 1)
            do {
                // snp_alloc_vmsa_page: an 8 KiB allocation, the first page freed, so the
                // VMSA is never 2 MiB aligned.
                let pair = try allocator.allocatePages(2)
                allocator.freePage(pair)
                let vmsa = pair.advanced(by: 4096)
                try VmsaSetup.prepare(vmsa, in: memory)
                try transport.perform(.coreCreateVcpu, rcx: vmsa.rawValue, rdx: percpu[ap + 1].rawValue, r8: UInt64(apic),
                                      on: bsp, caa: bsp.svsmCaa)
                aps.append(Vcpu(apicId: apic, vmsa: vmsa, caa: percpu[ap + 1]))
                if ap == 0 || ap == apCount - 1 { note("OS: CREATE_VCPU APIC \(apic), VMSA \(vmsa), CAA \(percpu[ap + 1])") }
            } catch let e as GuestMemoryError { throw .memory(e) } catch let e as SvsmCallError { throw .call("CREATE_VCPU \(apic)", e) } catch {
                throw .memory(.outOfMemory(pages: 2))
            }
        }
        return (bootCa, aps)
    }
}
