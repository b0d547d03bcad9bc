import Driver
import EfiTypes
import Guest
import Hardware
import MmWire
import SvsmAbi

/// The problem this driver exists for, replayed step by step: after Linux moves each
/// vCPU's CAA off the firmware's pages (REMAP_CA, CREATE_VCPU), a UEFI runtime-services
/// call that still uses the firmware's CAA is not executed by the SVSM; the same call
/// through MSR discovery, and through the driver's own per-CPU CAA, works.
public struct CaaRelocationScenario {
    /// What one call looked like from both sides: the CAA the caller used, the CAA the
    /// SVSM's registry binds to that vCPU (the one it reads and clears), call_pending as the
    /// caller's xchg found it on resume, RAX, and the EFI status in the message.
    public struct CallObservation: Sendable, Equatable {
        public let vcpu: UInt32
        public let caaUsed: GuestPhysicalAddress
        public let caaServed: GuestPhysicalAddress?
        public let callPendingAtResume: UInt8
        public let rax: UInt64?
        public let efiStatus: EfiStatus?
        public let error: SvsmCallError?
    }

    public struct Step: Sendable {
        public let title: String
        public let lines: [String]
        public let expected: String
        public let observations: [CallObservation]
        /// The scenario's own verdict, for the command's exit status; tests check the
        /// observations themselves.
        public let ok: Bool
    }

    public let vcpuCount: Int
    /// The store behind protocol 4.
    public let profile: SvsmProfile
    public init(vcpuCount: Int, profile: SvsmProfile = .edk2) { self.vcpuCount = vcpuCount; self.profile = profile }

    /// A GET_VARIABLE(Timeout) message in a page of its own.
    static func timeoutRequest() -> [UInt8] {
        SmmVariableHeader.message(.getVariable, payload: AccessVariablePayload.encode(guid: .globalVariable, name: Ucs2.units("Timeout"),
                                                                                       attributes: 0, dataSize: 2))
    }

    /// Keeps the last call record the transport reports.
    final class LastCall: SvsmCallObserver, @unchecked Sendable {
        private let record = Locked<SvsmCallRecord?>(nil)
        func svsmCallCompleted(_ r: SvsmCallRecord) { record.withLock { $0 = r } }
        func take() -> SvsmCallRecord? { record.withLock { r in defer { r = nil }; return r } }
    }

    public func run() throws -> (boot: [String], steps: [Step]) {
        var config = Machine.Configuration()
        config.vcpuCount = vcpuCount
        config.profile = profile
        config.recordBoot = true
        let last = LastCall()
        config.observer = last
        let m = try Machine(config)
        var steps: [Step] = []
        let secrets = try SecretsPage.read(from: Machine.secretsPage, in: m.memory)
        let request = CaaRelocationScenario.timeoutRequest()

        /// One MM request through `caa` on `vcpu`, observed and described in lines.
        func attempt(_ vcpu: Vcpu, caa: GuestPhysicalAddress) -> (lines: [String], observation: CallObservation) {
            var lines: [String] = []
            let before = (try? m.memory.readU8(caa)) ?? 0xff
            lines.append("vCPU \(vcpu.apicId), CAA \(caa): call_pending before = \(before)")
            let served = m.svsm.binding(apicId: vcpu.apicId)?.caa
            var status: EfiStatus?
            var failure: SvsmCallError?
            do {
                let channel = SvsmMmChannel(transport: m.transport, vcpu: vcpu, caa: caa, buffer: m.firmwareMmBuffer, bufferSize: 64 * 1024)
                let reply = try MmCommunicator(channel: channel).communicate(headerGuid: .smmVariableProtocol, message: request)
                status = EfiStatus(rawValue: reply.loadLE(UInt64.self, at: SmmVariableHeader.returnStatusOffset))
            } catch {
                failure = error
            }
            let record = last.take()
            let pending = record?.callPendingAtResume ?? 0xff
            let rax = record.map { $0.output.rax }
            lines.append("the SVSM reads and clears the CAA its registry binds to vCPU \(vcpu.apicId): \(served.map { "\($0)" } ?? "none")")
            lines.append("xchg(call_pending, 0) on resume returned \(pending)")
            if let s = status, let rax {
                lines.append("SVSM_UEFI_MM_REQUEST RCX=\(m.firmwareMmBuffer) RDX=0x10000 → RAX=0x\(String(rax, radix: 16)) (\(SvsmResultCode(rawValue: UInt32(truncatingIfNeeded: rax)).name)), ReturnStatus \(s.name)")
            } else if failure == .notExecuted {
                lines.append("not executed — Linux: -EINVAL; edk2 AmdSvsmLib: SnpTerminate()")
            } else if let failure {
                lines.append("call failed: \(failure)")
            }
            return (lines, CallObservation(vcpu: vcpu.apicId, caaUsed: caa, caaServed: served, callPendingAtResume: pending,
                                           rax: failure == nil ? rax : nil, efiStatus: status, error: failure))
        }

        // 1. Where things stand after boot.
        let bsp = m.vcpus.vcpus[0]
        let registered = m.svsm.binding(apicId: 0)?.caa
        steps.append(Step(title: "After boot the SVSM serves vCPU 0 through the OS's per-CPU CAA",
                          lines: ["secrets page SVSM_CAA = \(secrets.caa) (the firmware's CAA)",
                                  "SVSM registry: vCPU 0 → CAA \(registered.map { "\($0)" } ?? "none")",
                                  "OS per_cpu(svsm_caa_pa) of CPU 0 = \(bsp.svsmCaa)"],
                          expected: "registry CAA = OS per-CPU CAA ≠ firmware CAA", observations: [],
                          ok: registered == bsp.svsmCaa && registered != secrets.caa))

        // 2. An EFI runtime call made the pre-fix way: the CAA from the secrets page.
        let (l2, o2) = m.vcpus.withVcpu(apicId: 0) { v in attempt(v, caa: secrets.caa) }
        steps.append(Step(title: "UEFI runtime GetVariable through the firmware's CAA (secrets page), as AmdSvsmLib did before the fix",
                          lines: l2, expected: "not executed: call_pending stays 1", observations: [o2],
                          ok: o2.error == .notExecuted && o2.callPendingAtResume == 1))

        // 3. The edk2 fix: read MSR_SVSM_CAA, which the OS's #VC handler answers.
        let cpuid = SvsmDiscovery.cpuidEax(svsmPresent: secrets.size != 0)
        let (l3, o3) = m.vcpus.withVcpu(apicId: 0) { v -> ([String], CallObservation) in
            let msr = v.rdmsr(SvsmCaaMsr.index) ?? 0
            var (lines, o) = attempt(v, caa: GuestPhysicalAddress(msr))
            lines.insert("CPUID 0x8000001F EAX = 0x\(String(cpuid, radix: 16)) (bit 28: SVSM present = \(cpuid & SvsmDiscovery.cpuidSvsmBit != 0))", at: 0)
            lines.insert("RDMSR 0xC001F000 → #VC → OS returns 0x\(String(msr, radix: 16))", at: 1)
            return (lines, o)
        }
        steps.append(Step(title: "The same call after discovering the CAA with RDMSR 0xC001F000 (edk2 PR #12662) — the SVSM side only; whether the firmware's store reaches the CAA inside efi_mm: scenario caa-routes",
                          lines: l3, expected: "executed, EFI_SUCCESS", observations: [o3],
                          ok: o3.rax == 0 && o3.efiStatus == .success && o3.caaUsed == o3.caaServed))

        // 4. A call whose CAA belongs to another vCPU (a migration between CAA selection and VMGEXIT).
        if m.vcpus.count > 1 {
            let other = m.vcpus.vcpus[1].svsmCaa
            let (l4, o4) = m.vcpus.withVcpu(apicId: 0) { v in attempt(v, caa: other) }
            steps.append(Step(title: "A call on vCPU 0 through vCPU 1's CAA (task migrated between CAA selection and VMGEXIT)",
                              lines: l4, expected: "not executed", observations: [o4],
                              ok: o4.error == .notExecuted && o4.callPendingAtResume == 1))
        }

        // 5. The driver's way: hold a vCPU, then use its own per-CPU CAA — on every vCPU.
        var lines5: [String] = []
        var observations5: [CallObservation] = []
        for v in m.vcpus.vcpus {
            let o = m.vcpus.withVcpu(apicId: v.apicId) { held -> CallObservation in
                let served = m.svsm.binding(apicId: held.apicId)?.caa
                _ = try? m.driver.onCpuHeld(held) { (cpu) throws(SvsmCallError) in try cpu.getVariable(VariableKey("Timeout", .globalVariable), capacity: 2) }
                let r = last.take()
                return CallObservation(vcpu: held.apicId, caaUsed: r?.caa ?? GuestPhysicalAddress(0), caaServed: served,
                                       callPendingAtResume: r?.callPendingAtResume ?? 0xff, rax: r?.error == nil ? r?.output.rax : nil,
                                       efiStatus: r?.efiStatus, error: r?.error)
            }
            observations5.append(o)
            let good = o.rax == 0 && o.efiStatus == .success
            if v.apicId < 2 || v.apicId == UInt32(m.vcpus.count - 1) || !good {
                lines5.append("vCPU \(v.apicId): CAA \(v.svsmCaa) → \(good ? "EFI_SUCCESS" : "failed: \(o)")")
            }
        }
        if m.vcpus.count > 3 { lines5.insert("(\(m.vcpus.count - 3) more vCPUs, all EFI_SUCCESS)", at: 2) }
        steps.append(Step(title: "GetVariable on each vCPU through that vCPU's own per-CPU CAA, as the driver makes it",
                          lines: lines5, expected: "executed on every vCPU", observations: observations5,
                          ok: observations5.allSatisfy { $0.rax == 0 && $0.efiStatus == .success && $0.caaUsed == $0.caaServed }))
        return (m.bootLog, steps)
    }
}
