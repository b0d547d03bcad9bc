import Driver
import EfiTypes
import Guest
import Hardware
import Host
import MmWire
import PeerVariableStores
import Svsm
import SvsmAbi
import VariableService

/// Which variable store a machine boots with.
public enum StoreChoice: Sendable, Equatable {
    /// In memory only: a fresh OVMF VM every time.
    case memory
    /// The durable native store in a directory; `create` allows making a new one.
    case native(directory: String, create: Bool)
    /// A VM's OVMF_VARS.fd, written in place.
    case firmwareVolume(path: String)
    /// A VM's QEMU uefi-vars JSON file, rewritten on each change.
    case qemuJson(path: String)

    /// The path that names the store, if it has one.
    public var path: String? {
        switch self {
        case .memory: return nil
        case .native(let d, _): return d
        case .firmwareVolume(let p), .qemuJson(let p): return p
        }
    }
}

/// A booted SEV-SNP guest under an SVSM, assembled and brought up the way the real boot
/// goes: the SVSM launches firmware on the boot vCPU with the CAA from the secrets page;
/// firmware (OVMF) starts its APs, fills the variable store through protocol 4, and signals
/// EndOfDxe, ReadyToBoot and ExitBootServices; the OS remaps the boot vCPU's CAA to its own
/// pages with REMAP_CA, starts each AP with CREATE_VCPU naming its per-CPU CAA, and probes
/// the variable driver.
public final class Machine: Sendable {
    public struct Configuration: Sendable {
        public var vcpuCount = 4
        public var faults = FaultPlan()
        public var maxRetries = 16
        public var limits = StoreLimits()
        /// The non-volatile store's size asked for on the command line (nil: what the store
        /// recorded when it was made, else the default).
        public var nvStoreSize: Int?
        public var observer: (any SvsmCallObserver)?
        /// Sees every UEFI MM request the SVSM receives from the driver probe on (the boot's
        /// firmware traffic is not shown): `mount --log-requests`.
        public var mmRequestObserver: Svsm.MmRequestObserver?
        /// Let `mmRequestObserver` see the firmware's boot traffic too (a conformance corpus
        /// replays the whole boot).
        public var observeFirmwareRequests = false
        /// Record the boot steps for `scenario` output.
        public var recordBoot = false
        /// Secure Boot keys to find in the store at power-on.
        public var enrolledKeys: KeyEnrollment?
        /// Where `enrolledKeys` (certificates and private keys) are written, once the store
        /// has accepted them.
        public var enrolledKeysDirectory: String?
        /// Let `enrolledKeys` replace a PK the store already has (else the boot is refused).
        public var replaceKeys = false
        public var store: StoreChoice = .memory
        /// Written into the store's lock: how to reach this server.
        public var lockNote = ""
        /// The store behind protocol 4.
        public var profile: SvsmProfile = .edk2
        /// The edk2 firmware build (nil: detected from a VM's file, else Secure Boot).
        public var firmware: FirmwareBuild?
        /// COCONUT's cargo features (profile `coconut`).
        public var coconut = CoconutFeatures()
        /// QEMU's device properties (profile `qemu`).
        public var qemu = UefiVarsStore.Configuration()
        /// The modelled cost of one world switch, charged to every SVSM call as simulated
        /// time (`--world-switch`); with `spendWorldSwitch` also spent, spinning.
        public var worldSwitchNanoseconds: UInt64 = 0
        public var spendWorldSwitch = false
        /// The driver's runtime variable cache (`--driver-cache`).
        public var driverCache: DriverCacheMode = .off
        public init() {}
    }

    /// Whether the driver keeps a runtime variable cache, and how it stays coherent.
    public enum DriverCacheMode: Sendable, Equatable {
        case off
        /// Emptied by every SetVariable through the driver (the design).
        case invalidateOnWrite
        /// Also emptied whenever the SVSM's store generation moved: the design proposal of
        /// a generation the SVSM publishes in a guest page, modelled as a direct read.
        case sharedGeneration
    }

    public enum BootError: Error, CustomStringConvertible {
        case vcpuCount(Int)
        case memory(GuestMemoryError)
        case svsm(String)
        case probe(SvsmVariableDriver.ProbeError)
        case store(StoreOpenError)
        case storeSize(String)
        case profile(String)
        /// Keys to enrol into a store that already has a PK, without `replaceKeys`.
        case platformKeyPresent(store: String)
        case keys(String)
        public var description: String {
            switch self {
            case .vcpuCount(let n): return "--vcpus must be between 1 and 512 (got \(n))"
            case .memory(let e): return "guest memory: \(e)"
            case .svsm(let s): return "boot: \(s)"
            case .probe(let e): return "driver probe: \(e)"
            case .store(let e): return e.description
            case .storeSize(let s): return s
            case .profile(let s): return s
            case .platformKeyPresent(let s):
                return "the store \(s) already has a PK; --enroll-generate would replace it, KEK and db, taking Secure Boot away from whoever holds that PK's key. Pass --replace-keys to do that"
            case .keys(let s): return "--enroll-generate: \(s)"
            }
        }
    }

    /// Fixed guest-physical layout below the allocator (1 MiB).
    public static let secretsPage = GuestPhysicalAddress(0x0000_9000)
    public static let firmwareCaa = GuestPhysicalAddress(0x0000_A000)

    public let memory: GuestMemory
    public let allocator: PageAllocator
    public let service: VariableService
    public let svsm: Svsm
    public let processor: Processor
    public let hypervisor: Hypervisor
    public let vcpus: VcpuSet
    public let transport: SvsmCallTransport
    public let driver: SvsmVariableDriver
    public let bootLog: [String]
    /// The firmware's runtime MM buffer and the boot vCPU's kernel boot CA page.
    public let firmwareMmBuffer: GuestPhysicalAddress
    public let bootCaPage: GuestPhysicalAddress
    /// The store's non-volatile size in use.
    public let nvStoreSize: Int
    public let profile: SvsmProfile
    /// What the store choice meant for this profile (the firmware build found, a store that
    /// starts empty), for the command's output.
    public let storeNotes: [String]

    public init(_ config: Configuration = Configuration()) throws(BootError) {
        guard (1...512).contains(config.vcpuCount) else { throw .vcpuCount(config.vcpuCount) }
        var log: [String] = []
        func note(_ s: String) { if config.recordBoot { log.append(s) } }

        let memory = GuestMemory()
        let allocator = PageAllocator(memory: memory)
        let opened = try Machine.openStore(config)
        let (journal, firstBoot) = (opened.journal, opened.firstBoot)
        self.nvStoreSize = opened.nvStoreSize
        self.profile = config.profile
        self.storeNotes = opened.notes
        let service = VariableService(store: opened.store, journal: journal)
        let svsm = Svsm(memory: memory, mmService: service)
        if config.observeFirmwareRequests { svsm.observeMmRequests(config.mmRequestObserver) }
        let processor = Processor(memory: memory, vmpl0: svsm)
        let bootHypervisor = Hypervisor()
        self.memory = memory; self.allocator = allocator; self.service = service; self.svsm = svsm; self.processor = processor
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
        var bootTransport = SvsmCallTransport(processor: processor, hypervisor: bootHypervisor, maxRetries: config.maxRetries,
                                              observer: config.observer)
        bootTransport.worldSwitchNanoseconds = config.worldSwitchNanoseconds
        let bsp = Vcpu(apicId: 0, vmsa: bootVmsa, caa: Machine.firmwareCaa)
        var all = [bsp]
        let firmware = FirmwareModel(allocator: allocator, transport: bootTransport, bsp: bsp)
        let fwBuffer: GuestPhysicalAddress
        do {
            fwBuffer = try SvsmOperation.run("boot") { () throws -> GuestPhysicalAddress in
                try firmware.boot(apCount: config.vcpuCount - 1, defaults: OvmfDefaults.entries, firstBoot: firstBoot, note: note)
            }
        } catch { throw .svsm("firmware: \(error)") }
        self.firmwareMmBuffer = fwBuffer

        // The OS takes over.
        let os = OsBootModel(allocator: allocator, transport: bootTransport, bsp: bsp)
        do {
            let (bootCa, aps) = try SvsmOperation.run("boot") { () throws in try os.boot(apCount: config.vcpuCount - 1, note: note) }
            self.bootCaPage = bootCa
            all += aps
        } catch { throw .svsm("OS: \(error)") }

        // From here on the configured faults and observer apply.
        self.vcpus = VcpuSet(all)
        self.hypervisor = Hypervisor(faults: config.faults.host)
        var transport = SvsmCallTransport(processor: processor, hypervisor: hypervisor, maxRetries: config.maxRetries,
                                          observer: config.observer)
        transport.worldSwitchNanoseconds = config.worldSwitchNanoseconds
        transport.spendsWorldSwitch = config.spendWorldSwitch
        self.transport = transport
        svsm.observeMmRequests(config.mmRequestObserver)
        do {
            // Probe without faults so that a mount with --fault still comes up.
            let probeTransport = SvsmCallTransport(processor: processor, hypervisor: bootHypervisor, maxRetries: config.maxRetries)
            let vcpuSet = vcpus
            let probed = try SvsmOperation.run("probe") { () throws(SvsmVariableDriver.ProbeError) in
                try SvsmVariableDriver(vcpus: vcpuSet, transport: probeTransport, allocator: allocator)
            }
            let cache: DriverVariableCache?
            switch config.driverCache {
            case .off: cache = nil
            case .invalidateOnWrite: cache = DriverVariableCache()
            case .sharedGeneration: cache = DriverVariableCache(sharedGeneration: { [service] in service.storeGeneration })
            }
            self.driver = SvsmVariableDriver(reusing: probed, transport: transport, cache: cache)
        } catch { throw .probe(error) }
        svsm.injectFaults(config.faults.svsm)
        note("driver probe: QUERY_PROTOCOL(4,1) ok, payload \(driver.maxPayloadSize) bytes, \(vcpus.count) per-CPU MM buffers of \(driver.bufferSize) bytes"
             + (driver.hasVarCheckProperties ? "" : "; no VAR_CHECK properties"))
        self.bootLog = log
    }

    /// A machine with an in-memory store: what the scenarios boot.
    public convenience init(vcpuCount: Int, profile: SvsmProfile, observer: (any SvsmCallObserver)? = nil) throws(BootError) {
        var config = Configuration()
        config.vcpuCount = vcpuCount
        config.profile = profile
        config.observer = observer
        try self.init(config)
    }
}
