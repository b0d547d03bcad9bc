import EfiTypes
import Efivarfs
import Guest
import Hardware
import MmWire
import SvsmAbi

/// Route a2 on one kernel release: OVMF's runtime variable services, called by Linux's
/// efivarfs through the runtime-service wrappers, reaching the SVSM through the CAA address
/// MSR_SVSM_CAA returns — dereferenced inside efi_mm.
public struct RuntimeServicesRoute: Sendable {
    /// The variable every run writes: a new non-volatile one, so that the write path makes
    /// its QueryVariableInfo too.
    public static let probeKey = VariableKey("CaaRoutesProbe", EfiGuid("210be57c-9849-4fc7-a635-e6382d1aec27")!)
    public static let probeData: [UInt8] = Array("hello".utf8)
    public static let timeout = VariableKey("Timeout", .globalVariable)

    public let kernel: LinuxKernelRelease
    public let vcpuCount: Int
    public let profile: SvsmProfile
    public init(kernel: LinuxKernelRelease, vcpuCount: Int, profile: SvsmProfile = .edk2) {
        self.kernel = kernel; self.vcpuCount = vcpuCount; self.profile = profile
    }

    /// What efi_mm holds for one CPU's CAA.
    public struct CallingAreaView: Sendable {
        public let area: PerCpuCallingArea
        /// The CAA the SVSM binds to the CPU.
        public let servedBySvsm: GuestPhysicalAddress?
        /// efi_mm's answer for a one-byte store at VA == the CAA's physical address.
        public let firmwareStore: EfiPageTables.Translation
    }

    public struct Run: Sendable {
        public let kernel: LinuxKernelRelease
        public let callingAreas: [CallingAreaView]
        public let pageTables: EfiPageTables
        public let communicateBuffer: Edk2CommunicateBuffer
        /// The boot log lines of the model's machine that differ from this kernel.
        public let modelNotes: [String]
        public let operations: [RouteOperation]
        /// EFI_RUNTIME_SERVICES at the end of the run.
        public let runtimeServicesEnabled: Bool
        public let workerFrozen: Bool
        /// Every CAA's call_pending byte at the end of the run.
        public let callPendingAtEnd: [UInt32: UInt8]
        public let migration: MigrationObservation?
    }

    public func run() throws -> Run {
        let log = SvsmCallLog()
        let m = try Machine(vcpuCount: vcpuCount, profile: profile, observer: log)
        var notes: [String] = []
        if kernel.bootCpuCallingArea == .kernelImagePage {
            try keepBootCaPage(m)
            notes.append("the model's boot replays ≤ v6.17 (REMAP_CA of CPU 0 to a memblock page); one REMAP_CA back to the boot CA page gives the v6.18+ end state, CPU 0 on boot_svsm_ca_page")
        }
        let areas = m.vcpus.vcpus.map { v in
            PerCpuCallingArea(apicId: v.apicId, physical: v.svsmCaa,
                              home: v.apicId == 0 && kernel.bootCpuCallingArea == .kernelImagePage ? .kernelImage : .memblock)
        }
        let region = EfiRuntimeRegion(name: "VirtMmCommunicationDxe mCommunicateBuffer", kind: .runtimeServicesData,
                                      physicalStart: m.firmwareMmBuffer, pages: UInt64(Edk2CommunicateBuffer.size) / GuestPhysicalAddress.pageSize)
        let tables = EfiPageTables.build(for: kernel, runtimeRegions: [region], callingAreas: areas, ramSize: m.memory.ramSize)
        guard let virtual = tables.mappings.first(where: { $0.origin == .runtimeRegionVirtual(region.name) })?.virtualStart else {
            throw RouteError.missingMapping(region.name)
        }
        let buffer = Edk2CommunicateBuffer(virtual: virtual, physical: m.firmwareMmBuffer)
        let wrappers = EfiRuntimeWrappers(kernel: kernel, vcpus: m.vcpus, pageTables: tables, memory: m.memory,
                                          firmware: Edk2RuntimeVariableServices(buffer: buffer, transport: m.transport))
        let efivarfs = RuntimeServicesEfivarfs(runtime: wrappers)
        log.setProbe { [wrappers, efivarfs] _ in
            let e = wrappers.execution
            return HeldAtCall(efivarsLock: efivarfs.efivarsLockHeld, efiRuntimeLock: e?.efiRuntimeLockHeld, vcpuHeld: e != nil,
                              interruptsEnabled: e?.interruptsEnabled)
        }
        let views = areas.map { a in
            CallingAreaView(area: a, servedBySvsm: m.svsm.binding(apicId: a.apicId)?.caa,
                            firmwareStore: tables.translate(VirtualAddress(sameNumberAs: a.physical), write: true))
        }

        func operation(_ name: String, _ body: () -> RouteOperation.Result) -> RouteOperation {
            let before = wrappers.snapshot
            let (result, entries) = log.measure(body)
            let after = wrappers.snapshot
            return RouteOperation(name: name, result: result,
                                  svsmCalls: log.observations(entries, servedCaa: { m.svsm.binding(apicId: $0)?.caa }),
                                  runtimeCalls: Array(after.calls.dropFirst(before.calls.count)),
                                  kernelLog: Array(after.kernelLog.dropFirst(before.kernelLog.count)))
        }
        var ops: [RouteOperation] = []
        ops.append(operation("read Timeout (efivarfs_file_read)") { Self.result(efivarfs.read(Self.timeout), RouteOperation.Result.read) })
        ops.append(operation("write \(Self.probeKey) nv,bs,rt \"hello\" (efivarfs_file_write)") {
            Self.result(efivarfs.write(Self.probeKey, attributes: VariableAttributes.nvBsRt.rawValue, data: Self.probeData), RouteOperation.Result.wrote)
        })
        ops.append(operation("read Timeout again") { Self.result(efivarfs.read(Self.timeout), RouteOperation.Result.read) })
        ops.append(operation("a new efivarfs mount lists the variables (efivar_init)") {
            Self.result(efivarfs.mountListing(), { RouteOperation.Result.listed($0.count) })
        })
        let migration = m.vcpus.count > 1 && wrappers.snapshot.runtimeServicesEnabled
            ? migrationBetweenRdmsrAndVmgexit(m, tables: tables, buffer: buffer, log: log) : nil
        var pending: [UInt32: UInt8] = [:]
        for a in areas { pending[a.apicId] = (try? m.memory.readU8(a.physical)) ?? 0xff }
        let end = wrappers.snapshot
        return Run(kernel: kernel, callingAreas: views, pageTables: tables, communicateBuffer: buffer, modelNotes: notes,
                   operations: ops, runtimeServicesEnabled: end.runtimeServicesEnabled, workerFrozen: end.workerFrozen,
                   callPendingAtEnd: pending, migration: migration)
    }

    static func result<V>(_ o: EfivarfsOutcome<V>, _ done: (V) -> RouteOperation.Result) -> RouteOperation.Result {
        switch o {
        case .completed(let v): return done(v)
        case .failed(let e): return .failed(e)
        case .halted(let f): return .halted(f)
        }
    }

    /// CPU 0 ends up on the boot CA page under v6.18+: bind it there again.
    func keepBootCaPage(_ m: Machine) throws {
        try m.vcpus.withVcpu(apicId: 0) { (v: Vcpu) throws(SvsmCallError) in
            try m.transport.perform(.coreRemapCA, rcx: m.bootCaPage.rawValue, on: v, caa: v.svsmCaa)
            v.svsmCaa = m.bootCaPage
        }
    }

    /// The firmware's GetVariable with RDMSR answered on vCPU 1 and the VMGEXIT on vCPU 0.
    /// Linux cannot produce this (the worker keeps preemption off across the whole call);
    /// it shows what the SVSM and edk2 would make of it.
    func migrationBetweenRdmsrAndVmgexit(_ m: Machine, tables: EfiPageTables, buffer: Edk2CommunicateBuffer,
                                         log: SvsmCallLog) -> MigrationObservation {
        let (_, entries) = log.measure { () -> Void in
            m.vcpus.withVcpu(apicId: 0) { v0 in
                m.vcpus.withVcpu(apicId: 1) { v1 in
                    let context = EfiRuntimeContext(vcpu: v0, pageTables: tables, memory: m.memory, vcHandler: LinuxVcHandler(kernel: kernel))
                    let channel = Edk2SvsmMmChannel(context: context, buffer: buffer, transport: m.transport, rdmsrAnsweredOn: v1)
                    let payload = AccessVariablePayload.encode(guid: Self.timeout.guid, name: Self.timeout.name, attributes: 0, dataSize: 0)
                    _ = try? MmCommunicator(channel: channel).variableCall(.getVariable, payload: payload)
                }
            }
        }
        let call = log.observations(entries, servedCaa: { m.svsm.binding(apicId: $0)?.caa }).first
        return MigrationObservation(
            caaChosenOn: 1, vmgexitOn: 0, call: call,
            consequence: "call_pending still 1 → edk2 SvsmMsrProtocol: Pending != 0 → SnpTerminate () (GHCB terminate request): the guest ends",
            whyNotOnThisRoute: "RDMSR, the CAA store and VMGEXIT run in one runtime call on the efi_rts_wq worker, with preemption off while efi_mm is borrowed (efi_64.c efi_enter_mm; efi_fpu_begin → kernel_fpu_begin_mask → fpregs_lock)")
    }
}

enum RouteError: Error, CustomStringConvertible {
    case missingMapping(String)
    var description: String {
        switch self {
        case .missingMapping(let n): return "efi_mm has no virtual mapping for \(n)"
        }
    }
}
