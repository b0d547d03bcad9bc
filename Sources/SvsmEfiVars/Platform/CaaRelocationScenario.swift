/// The problem this driver exists for, replayed step by step: after Linux moves each
/// vCPU's CAA off the firmware's pages (REMAP_CA, CREATE_VCPU), a UEFI runtime-services
/// call that still uses the firmware's CAA is not executed by the SVSM; the same call
/// through MSR discovery, and through the driver's own per-CPU CAA, works.
public struct CaaRelocationScenario {
    public struct Step: Sendable {
        public let title: String
        public let lines: [String]
        public let expected: String
        public let ok: Bool
    }

    public let vcpuCount: Int
    public init(vcpuCount: Int) { self.vcpuCount = vcpuCount }

    /// A GET_VARIABLE(Timeout) message in a page of its own.
    static func timeoutRequest() -> [UInt8] {
        SmmVariableHeader.message(.getVariable, payload: AccessVariablePayload.encode(guid: .globalVariable, name: Ucs2.units("Timeout"),
                                                                                       attributes: 0, dataSize: 2))
    }

    public func run() throws -> (boot: [String], steps: [Step]) {
        var config = Machine.Configuration()
        config.vcpuCount = vcpuCount
        config.recordBoot = true
        let m = try Machine(config)
        var steps: [Step] = []
        let secrets = try SecretsPage.read(from: Machine.secretsPage, in: m.memory)
        let request = CaaRelocationScenario.timeoutRequest()

        /// One MM request through `caa` on `vcpu`, described in lines.
        func attempt(_ vcpu: Vcpu, caa: GuestPhysicalAddress) -> (lines: [String], result: Result<EfiStatus, SvsmCallError>) {
            var lines: [String] = []
            let before = (try? m.memory.readU8(caa)) ?? 0xff
            lines.append("vCPU \(vcpu.apicId), CAA \(caa): call_pending before = \(before)")
            let vcpuRegisteredCaa = m.svsm.binding(apicId: vcpu.apicId)?.caa
            let reply: [UInt8]
            do {
                reply = try SvsmVariableDriver.mmCommunicate(transport: m.transport, vcpu: vcpu, caa: caa, buffer: m.firmwareMmBuffer,
                                                             bufferSize: 64 * 1024, headerGuid: .smmVariableProtocol, message: request)
            } catch {
                if error == .notExecuted {
                    lines.append("the SVSM served the CAA registered for vCPU \(vcpu.apicId) (\(vcpuRegisteredCaa.map { "\($0)" } ?? "none")), not \(caa)")
                    lines.append("xchg(call_pending, 0) returned 1: not executed — Linux: -EINVAL; edk2 AmdSvsmLib: SnpTerminate()")
                } else {
                    lines.append("call failed: \(error)")
                }
                return (lines, .failure(error))
            }
            let status = EfiStatus(rawValue: reply.loadLE(UInt64.self, at: SmmVariableHeader.returnStatusOffset))
            lines.append("SVSM_UEFI_MM_REQUEST RCX=\(m.firmwareMmBuffer) RDX=0x10000 → RAX=0x\(String(vcpu.registers.rax, radix: 16)) (SVSM_SUCCESS), ReturnStatus \(status.name)")
            lines.append("call_pending after = \((try? m.memory.readU8(caa)) ?? 0xff)")
            return (lines, .success(status))
        }

        // 1. Where things stand after boot.
        let bsp = m.vcpus.vcpus[0]
        let registered = m.svsm.binding(apicId: 0)?.caa
        steps.append(Step(title: "After boot the SVSM serves vCPU 0 through the OS's per-CPU CAA",
                          lines: ["secrets page SVSM_CAA = \(secrets.caa) (the firmware's CAA)",
                                  "SVSM registry: vCPU 0 → CAA \(registered.map { "\($0)" } ?? "none")",
                                  "OS per_cpu(svsm_caa_pa) of CPU 0 = \(bsp.svsmCaa)"],
                          expected: "registry CAA = OS per-CPU CAA ≠ firmware CAA",
                          ok: registered == bsp.svsmCaa && registered != secrets.caa))

        // 2. An EFI runtime call made the pre-fix way: the CAA from the secrets page.
        let (l2, r2) = m.vcpus.withVcpu(apicId: 0) { v in attempt(v, caa: secrets.caa) }
        var notExecuted = false
        if case .failure(.notExecuted) = r2 { notExecuted = true }
        steps.append(Step(title: "UEFI runtime GetVariable through the firmware's CAA (secrets page), as AmdSvsmLib did before the fix",
                          lines: l2, expected: "not executed: call_pending stays 1", ok: notExecuted))

        // 3. The edk2 fix: read MSR_SVSM_CAA, which the OS's #VC handler answers.
        let cpuid = SvsmDiscovery.cpuidEax(svsmPresent: secrets.size != 0)
        let (l3, r3) = m.vcpus.withVcpu(apicId: 0) { v -> ([String], Result<EfiStatus, SvsmCallError>) in
            let msr = SvsmDiscovery.rdmsr(SvsmCaaMsr.index, on: v) ?? 0
            var (lines, r) = attempt(v, caa: GuestPhysicalAddress(msr))
            lines.insert("CPUID 0x8000001F EAX = 0x\(String(cpuid, radix: 16)) (bit 28: SVSM present = \(cpuid & SvsmDiscovery.cpuidSvsmBit != 0))", at: 0)
            lines.insert("RDMSR 0xC001F000 → #VC → OS returns 0x\(String(msr, radix: 16))", at: 1)
            return (lines, r)
        }
        var ok3 = false
        if case .success(.success) = r3 { ok3 = true }
        steps.append(Step(title: "The same call after discovering the CAA with RDMSR 0xC001F000 (edk2 PR #12662)",
                          lines: l3, expected: "executed, EFI_SUCCESS", ok: ok3))

        // 4. A call whose CAA belongs to another vCPU (a migration between CAA selection and VMGEXIT).
        var ok4 = true
        if m.vcpus.count > 1 {
            let other = m.vcpus.vcpus[1].svsmCaa
            let (l4, r4) = m.vcpus.withVcpu(apicId: 0) { v in attempt(v, caa: other) }
            ok4 = false
            if case .failure(.notExecuted) = r4 { ok4 = true }
            steps.append(Step(title: "A call on vCPU 0 through vCPU 1's CAA (task migrated between CAA selection and VMGEXIT)",
                              lines: l4, expected: "not executed", ok: ok4))
        }

        // 5. The driver's way: hold a vCPU, then use its own per-CPU CAA — on every vCPU.
        var lines5: [String] = []
        var ok5 = true
        for v in m.vcpus.vcpus {
            let r = m.vcpus.withVcpu(apicId: v.apicId) { held in m.driver.onCpuHeld(held) { $0.getVariable(VariableKey("Timeout", .globalVariable), capacity: 2) } }
            let good: Bool
            if case .found(_, let d) = r { good = d.count == 2 } else { good = false }
            ok5 = ok5 && good
            if v.apicId < 2 || v.apicId == UInt32(m.vcpus.count - 1) || !good {
                lines5.append("vCPU \(v.apicId): CAA \(v.svsmCaa), MM buffer \(v.mmBuffer.map { "\($0)" } ?? "-") → \(good ? "EFI_SUCCESS" : "failed: \(r)")")
            }
        }
        if m.vcpus.count > 3 { lines5.insert("(\(m.vcpus.count - 3) more vCPUs, all EFI_SUCCESS)", at: 2) }
        steps.append(Step(title: "The driver's GetVariable on each vCPU through that vCPU's own per-CPU CAA",
                          lines: lines5, expected: "executed on every vCPU", ok: ok5))
        return (m.bootLog, steps)
    }
}
