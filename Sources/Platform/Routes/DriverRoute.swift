import Driver
import EfiTypes
import Efivarfs
import Guest
import MmWire
import SvsmAbi

/// Route b: the project's Linux driver (`SvsmVariableDriver`) as the efivars backend under
/// efivarfs: each request holds one vCPU and calls the SVSM through that vCPU's own CAA.
public struct DriverRoute: Sendable {
    public let vcpuCount: Int
    public let profile: SvsmProfile
    public init(vcpuCount: Int, profile: SvsmProfile = .edk2) { self.vcpuCount = vcpuCount; self.profile = profile }

    public struct Run: Sendable {
        /// One read per vCPU (requests are spread over the vCPUs), then a write and a
        /// read-back of the probe variable.
        public let reads: [RouteOperation]
        public let write: RouteOperation
        public let readBack: RouteOperation
        public let vcpusServed: Set<UInt32>
        /// Whether the store answers VAR_CHECK_VARIABLE_PROPERTY_GET (the driver then asks
        /// before each write, as tee_stmm_efi does).
        public let hasVarCheckProperties: Bool
        public let migration: MigrationObservation?
    }

    public func run() throws -> Run {
        let log = SvsmCallLog()
        let m = try Machine(vcpuCount: vcpuCount, profile: profile, observer: log)
        log.setProbe { [vcpus = m.vcpus] _ in
            HeldAtCall(efivarsLock: nil, efiRuntimeLock: nil, vcpuHeld: vcpus.usage.inUse > 0, interruptsEnabled: nil)
        }
        let fs = Efivarfs(driver: m.driver)
        try fs.populate()
        let root = Efivarfs.Caller(uid: 0, gid: 0)
        let served: (UInt32) -> GuestPhysicalAddress? = { m.svsm.binding(apicId: $0)?.caa }

        func operation(_ name: String, _ body: () -> RouteOperation.Result) -> RouteOperation {
            let (result, entries) = log.measure(body)
            return RouteOperation(name: name, result: result, svsmCalls: log.observations(entries, servedCaa: served),
                                  runtimeCalls: [], kernelLog: [])
        }
        func read(_ key: VariableKey) -> RouteOperation.Result {
            do throws(Errno) {
                let ino = try fs.lookup(EfivarfsName.fileName(for: key)).ino
                return .read(try fs.read(ino, handle: nil, offset: 0, count: 1 << 16, caller: root))
            } catch { return .failed(error) }
        }
        let timeout = RuntimeServicesRoute.timeout, probe = RuntimeServicesRoute.probeKey
        let reads = (0..<m.vcpus.count).map { _ in operation("read Timeout (Efivarfs.read)") { read(timeout) } }
        let write = operation("write \(probe) nv,bs,rt \"hello\" (Efivarfs.write)") {
            do throws(Errno) {
                let (attributes, _) = try fs.create(EfivarfsName.fileName(for: probe), mode: 0o644, caller: root)
                var bytes = [UInt8](zeroed: 4)
                bytes.storeLE(VariableAttributes.nvBsRt.rawValue, at: 0)
                return .wrote(try fs.write(attributes.ino, bytes + RuntimeServicesRoute.probeData))
            } catch { return .failed(error) }
        }
        let readBack = operation("read \(probe) back") { read(probe) }
        let all = reads + [write, readBack]
        return Run(reads: reads, write: write, readBack: readBack, vcpusServed: Set(all.flatMap { $0.svsmCalls.map { $0.apicId } }),
                   hasVarCheckProperties: m.driver.hasVarCheckProperties,
                   migration: m.vcpus.count > 1 ? migration(m, log: log, served: served) : nil)
    }

    /// A GetVariable on vCPU 0 through vCPU 1's CAA: a task that chose its CAA on one CPU
    /// and issued VMGEXIT on another.
    func migration(_ m: Machine, log: SvsmCallLog, served: (UInt32) -> GuestPhysicalAddress?) -> MigrationObservation {
        let (_, entries) = log.measure { () -> Void in
            m.vcpus.withVcpu(apicId: 0) { v0 in
                guard let buffer = m.driver.buffer(forApicId: 0) else { return }
                let channel = SvsmMmChannel(transport: m.transport, vcpu: v0, caa: m.vcpus.vcpus[1].svsmCaa, buffer: buffer,
                                            bufferSize: m.driver.bufferSize)
                let payload = AccessVariablePayload.encode(guid: RuntimeServicesRoute.timeout.guid, name: RuntimeServicesRoute.timeout.name,
                                                           attributes: 0, dataSize: 0)
                _ = try? MmCommunicator(channel: channel).variableCall(.getVariable, payload: payload)
            }
        }
        return MigrationObservation(
            caaChosenOn: 1, vmgexitOn: 0, call: log.observations(entries, servedCaa: served).first,
            consequence: "call_pending still 1 → the call fails (Linux svsm_perform_ghcb_protocol: -EINVAL); nothing was done in the SVSM, so it can be repeated",
            whyNotOnThisRoute: "the driver takes the vCPU first (VcpuSet.withVcpu, the model of interrupts off) and reads that vCPU's CAA after; a Linux helper must likewise select the CAA under local_irq_save, as snp_issue_svsm_attest_req does")
    }
}
