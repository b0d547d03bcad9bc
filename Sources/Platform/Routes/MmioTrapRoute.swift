import EfiTypes
import Guest
import Hardware
import SvsmAbi

/// Route a1: "emulate an MMIO device by letting the guest's access to a page trap into the
/// SVSM". Each step as far as the sources go; a step they do not settle is `open`, with what
/// is missing. One step the model can run: an exit the SVSM did not get a call for.
public struct MmioTrapRoute: Sendable {
    public enum Standing: String, Sendable { case sourced, open }

    public struct Step: Sendable {
        public let question: String
        public let answer: String
        public let standing: Standing
        public let source: String
    }

    public struct Run: Sendable {
        public let steps: [Step]
        /// The model's SVSM entered for a VMGEXIT whose CAA has call_pending = 0 (an exit
        /// that is not an SVSM call): did it run anything?
        public let exitWithoutCallRanAnything: Bool
        public let raxBefore: UInt64
        public let raxAfter: UInt64
    }

    public let vcpuCount: Int
    public let profile: SvsmProfile
    public init(vcpuCount: Int, profile: SvsmProfile = .edk2) { self.vcpuCount = vcpuCount; self.profile = profile }

    public func run() throws -> Run {
        let m = try Machine(vcpuCount: vcpuCount, profile: profile)
        // A VMGEXIT with protocol 4 in RAX but call_pending left 0: what an access trap
        // would look like to the SVSM if a host forwarded one as a plain exit.
        let (before, after) = m.vcpus.withVcpu(apicId: 0) { v -> (UInt64, UInt64) in
            let request = SvsmRegisters(rax: SvsmCallId.uefiMmRequest.rax, rcx: m.firmwareMmBuffer.rawValue, rdx: 0x10000, r8: 0, r9: 0)
            v.cpu.registers = request
            let saved = v.cpu.ghcbMsr
            v.cpu.ghcbMsr = GhcbMsr.vmplRequest(level: 0)
            m.processor.vmgexit(v.cpu, to: m.hypervisor)
            v.cpu.ghcbMsr = saved
            return (request.rax, v.cpu.registers.rax)
        }
        return Run(steps: Self.steps, exitWithoutCallRanAnything: before != after, raxBefore: before, raxAfter: after)
    }

    static let steps: [Step] = [
        Step(question: "A VMPL2 access to a page the host marks as MMIO (NPT entry with reserved bits): who takes it?",
             answer: "a #VC in the guest (exit code SVM_EXIT_NPF); Linux's handler emulates it with VMGEXIT MMIO_READ/MMIO_WRITE through the GHCB, to the hypervisor, not to VMPL0",
             standing: .sourced,
             source: "torvalds/linux arch/x86/coco/sev/vc-handle.c vc_handle_exitcode (case SVM_EXIT_NPF: vc_handle_mmio), vc_do_mmio"),
        Step(question: "…and if the page is private (encrypted) guest memory?",
             answer: "Linux refuses to emulate it: vc_slow_virt_to_phys returns ES_UNSUPPORTED for a PTE with _PAGE_ENC",
             standing: .sourced,
             source: "torvalds/linux arch/x86/coco/sev/vc-handle.c vc_slow_virt_to_phys (\"Emulated MMIO to/from encrypted memory not supported\")"),
        Step(question: "A VMPL2 access to a private page whose VMPL2 permission VMPL0 took away (RMPADJUST)?",
             answer: "a nested page fault (#VMEXIT(NPF)) to the hypervisor, its error code carrying the RMP and VMPL bits; it is not a #VC and does not enter VMPL0",
             standing: .sourced,
             source: "torvalds/linux arch/x86/include/asm/kvm_host.h PFERR_GUEST_RMP_BIT 31, PFERR_GUEST_VMPL_BIT 36 (\"KVM: x86: Define RMP page fault error bits for #NPF\")"),
        Step(question: "Does any hypervisor hand that #NPF on to the SVSM at VMPL0?",
             answer: "open: no source in reach defines such forwarding (the AMD APM text is not in the stored corpus; upstream KVM handles RMP #NPFs itself)",
             standing: .open,
             source: "missing: an APM/GHCB-spec or hypervisor source for NPF-to-VMPL0 forwarding"),
        Step(question: "Which guest exit makes the SVSM act?",
             answer: "only a VMGEXIT whose CAA (the one bound to that vCPU) has call_pending set; any other exit resumes the guest untouched",
             standing: .sourced,
             source: "coconut-svsm/svsm kernel/src/vmm/execloop.rs get_svsm_request_message, get_and_clear_caa_request_flag"),
        Step(question: "Could the guest's #VC go to VMPL0 instead (ReflectVC)?",
             answer: "not with Linux: MSR_AMD64_SNP_REFLECT_VC is in SNP_FEATURES_IMPL_REQ and not in SNP_FEATURES_PRESENT, so a guest started with it stops at boot",
             standing: .sourced,
             source: "torvalds/linux arch/x86/boot/compressed/sev.c snp_check_features / snp_get_unsupported_features"),
        Step(question: "An SVSM call to register an emulated MMIO range; calls per efivarfs read/write; locks; migration",
             answer: "open: no SVSM protocol or guest driver for it exists, so there is nothing to count",
             standing: .open,
             source: "missing: a protocol definition; coconut-svsm/svsm kernel/src/protocols/ holds core, attest, vtpm, apic, memmap, reboot, uefivars and others, none for MMIO ranges"),
    ]
}
