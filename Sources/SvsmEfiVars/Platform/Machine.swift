/// A booted SEV-SNP guest under an SVSM, assembled and brought up the way the real boot
/// goes (svsm.md §6.4, §8): the SVSM launches firmware on the boot vCPU with the CAA from
/// the secrets page; firmware (OVMF) starts its APs, fills the variable store through
/// protocol 4, and signals EndOfDxe, ReadyToBoot and ExitBootServices; the OS remaps the
/// boot vCPU's CAA to its own pages with REMAP_CA, starts each AP with CREATE_VCPU naming
/// its per-CPU CAA, and probes the variable driver.
public final class Machine: Sendable {
    public struct Configuration: Sendable {
        public var vcpuCount = 4
        public var faults = FaultPlan()
        public var maxRetries = 16
        public var limits = StoreLimits()
        public var observer: (any SvsmCallObserver)?
        /// Record the boot steps for `scenario` output.
        public var recordBoot = false
        /// Secure Boot keys to find in the store at power-on.
        public var enrolledKeys: KeyEnrollment?
        /// The durable store's directory; nil keeps variables in memory only.
        public var storeDirectory: String?
        /// A VM's variable file served live instead of the native store.
        public var liveFile: (path: String, format: VariableFileFormat)?
        /// Written into the store's lock file: how to reach this server.
        public var lockNote = ""
        public init() {}
    }

    public enum BootError: Error, CustomStringConvertible {
        case vcpuCount(Int)
        case memory(GuestMemoryError)
        case svsm(String)
        case probe(SvsmVariableDriver.ProbeError)
        case store(any Error)
        public var description: String {
            switch self {
            case .vcpuCount(let n): return "--vcpus must be between 1 and 512 (got \(n))"
            case .memory(let e): return "guest memory: \(e)"
            case .svsm(let s): return "boot: \(s)"
            case .probe(let e): return "driver probe: \(e)"
            case .store(let e): return "store: \(e)"
            }
        }
    }

    /// Fixed guest-physical layout below the allocator (1 MiB).
    public static let secretsPage = GuestPhysicalAddress(0x0000_9000)
    public static let firmwareCaa = GuestPhysicalAddress(0x0000_A000)

    public let memory: GuestMemory
    public let service: VariableService
    public let svsm: Svsm
    public let hypervisor: Hypervisor
    public let vcpus: VcpuSet
    public let transport: SvsmCallTransport
    public let driver: SvsmVariableDriver
    public let bootLog: [String]
    /// The firmware's runtime MM buffer and the boot vCPU's kernel boot CA page.
    public let firmwareMmBuffer: GuestPhysicalAddress
    public let bootCaPage: GuestPhysicalAddress

    public init(_ config: Configuration = Configuration()) throws(BootError) {
        guard (1...512).contains(config.vcpuCount) else { throw .vcpuCount(config.vcpuCount) }
        var log: [String] = []
        func note(_ s: String) { if config.recordBoot { log.append(s) } }

        let memory = GuestMemory()
        var store = VariableStore(limits: config.limits)
        var file: (any PersistentBacking)?
        var firstBoot = true
        if let live = config.liveFile {
            do {
                let (f, saved): (any PersistentBacking, [ExportedVariable]) = live.format == .fd
                    ? try FirmwareVolumeBacking.open(path: live.path, note: config.lockNote)
                    : try WholeFileBacking.open(path: live.path, note: config.lockNote)
                store.restore(saved)
                file = f
                firstBoot = saved.isEmpty
            } catch { throw .store(error) }
        } else if let dir = config.storeDirectory {
            do {
                let (f, saved) = try NativeStoreFile.open(directory: dir, note: config.lockNote)
                store.restore(saved.map { ExportedVariable($0.0, $0.1) })
                file = f
                firstBoot = saved.isEmpty
            } catch { throw .store(error) }
        }
        config.enrolledKeys?.enroll(into: &store)
        store.initializeAuthVariables()
        // What power-on changed in the non-volatile store (AuthVariableLib's initial
        // variables, enrolled keys) is saved before the firmware runs.
        if let f = file { do { try f.saveAtPowerOn(store.nonVolatileVariables) } catch { throw .store(error) } }
        let service = VariableService(store: store, persistence: file)
        let svsm = Svsm(memory: memory, mmHandler: service)
        let hypervisor = Hypervisor(memory: memory, svsm: svsm, faults: FaultPlan())
        self.memory = memory; self.service = service; self.svsm = svsm
        // The boot vCPU's VMSA lives in the SVSM's own memory; like every VMSA it must not be
        // 2 MiB aligned (AMD erratum #1467).
        let bootVmsa = memory.svsmRegion.start.advanced(by: 4096)
        do {
            try memory.fill(Machine.firmwareCaa, count: 4096, with: 0)
            try SecretsPage.write(.init(base: memory.svsmRegion.start, size: memory.svsmRegion.length, caa: Machine.firmwareCaa,
                                        maxVersion: 1, guestVmpl: 2), to: Machine.secretsPage, in: memory)
            try svsm.launch(bootVmsa: bootVmsa, firmwareCaa: Machine.firmwareCaa)
        } catch { throw .svsm("launch failed: \(error)") }
        note("SVSM launch: boot vCPU 0, VMSA \(bootVmsa), CAA \(Machine.firmwareCaa) (secrets page SVSM_CAA)")

        // Firmware runs on the boot vCPU with the secrets-page CAA; no fault injection yet.
        let fwTransport = SvsmCallTransport(memory: memory, hypervisor: hypervisor, maxRetries: config.maxRetries, observer: config.observer)
        let bsp = Vcpu(apicId: 0, vmsa: bootVmsa, caa: Machine.firmwareCaa)
        var all = [bsp]
        let firmware = FirmwareModel(memory: memory, transport: fwTransport, bsp: bsp)
        let fwBuffer: GuestPhysicalAddress
        do {
            fwBuffer = try firmware.boot(apCount: config.vcpuCount - 1, defaults: OvmfDefaults.entries, firstBoot: firstBoot, note: note)
        } catch { throw .svsm("firmware: \(error)") }
        self.firmwareMmBuffer = fwBuffer

        // The OS takes over.
        let os = OsBootModel(memory: memory, transport: fwTransport, bsp: bsp)
        do {
            let (bootCa, aps) = try os.boot(apCount: config.vcpuCount - 1, note: note)
            self.bootCaPage = bootCa
            all += aps
        } catch { throw .svsm("OS: \(error)") }

        // From here on the configured faults and observer apply.
        let runtimeHypervisor = Hypervisor(memory: memory, svsm: svsm, faults: config.faults)
        self.hypervisor = runtimeHypervisor
        self.vcpus = VcpuSet(all)
        self.transport = SvsmCallTransport(memory: memory, hypervisor: runtimeHypervisor, maxRetries: config.maxRetries,
                                           observer: config.observer)
        do {
            // Probe without faults so that a mount with --fault still comes up.
            let probeTransport = SvsmCallTransport(memory: memory, hypervisor: hypervisor, maxRetries: config.maxRetries)
            let probed = try SvsmVariableDriver(vcpus: vcpus, transport: probeTransport)
            self.driver = SvsmVariableDriver(reusing: probed, transport: transport)
        } catch { throw .probe(error) }
        note("driver probe: QUERY_PROTOCOL(4,1) ok, payload \(driver.maxPayloadSize) bytes, \(vcpus.count) per-CPU MM buffers of \(driver.bufferSize) bytes")
        self.bootLog = log
    }
}
