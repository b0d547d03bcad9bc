import EfiTypes
import Hardware
import MmWire
import SvsmAbi

/// OVMF's runtime communicate buffer (OvmfPkg/VirtMmCommunicationDxe: `mCommunicateBuffer`,
/// MAX_BUFFER_SIZE = 64 KiB of runtime pages): the firmware writes it through the virtual
/// address SetVirtualAddressMap gave it and hands the SVSM its physical address
/// (`mCommunicateBufferPhys`, never converted).
public struct Edk2CommunicateBuffer: Sendable, Equatable {
    public static let size = 64 * 1024
    public let virtual: VirtualAddress
    public let physical: GuestPhysicalAddress
    public init(virtual: VirtualAddress, physical: GuestPhysicalAddress) { self.virtual = virtual; self.physical = physical }
}

/// How an MM round trip of the firmware ends when it does not fault: a status from
/// VirtMmCommunication2Communicate other than success.
public enum Edk2MmFailure: Error, Equatable, Sendable {
    case fault(EfiRuntimeFault)
    /// `VirtMmSvsmComm` answers EFI_DEVICE_ERROR when AmdSvsmUefiMmRequest fails.
    case status(EfiStatus)
}

/// One MM round trip as OVMF makes it at runtime (tianocore/edk2
/// OvmfPkg/VirtMmCommunicationDxe/VirtMmCommunication.c `VirtMmCommunication2Communicate`,
/// Svsm.c `VirtMmSvsmComm`, OvmfPkg/Library/AmdSvsmLib/AmdSvsmLib.c `AmdSvsmUefiMmRequest`
/// and `SvsmMsrProtocol`, MdePkg/Library/BaseLib/X64/VmgExitSvsm.nasm `AsmVmgExitSvsm`):
///
/// 1. copy the message into the communicate buffer (stores through efi_mm);
/// 2. RDMSR MSR_SVSM_CAA — a #VC the OS answers with this CPU's `svsm_caa_pa`;
/// 3. interrupts off, GHCB MSR = VMPL request, `mov byte [Caa], 1` with the physical
///    address as the pointer, VMGEXIT, `xchg` call_pending back;
/// 4. call_pending still set → `SnpTerminate`; an error result → EFI_DEVICE_ERROR;
/// 5. copy the reply back from the communicate buffer.
public struct Edk2SvsmMmChannel: MmBufferChannel {
    public typealias Failure = Edk2MmFailure

    public let context: EfiRuntimeContext
    public let buffer: Edk2CommunicateBuffer
    public let transport: SvsmCallTransport
    /// The vCPU whose #VC handler answers the RDMSR. Always the context's vCPU on Linux;
    /// another one only to show what a migration between RDMSR and VMGEXIT would do.
    public let rdmsrAnsweredOn: Vcpu

    public init(context: EfiRuntimeContext, buffer: Edk2CommunicateBuffer, transport: SvsmCallTransport, rdmsrAnsweredOn: Vcpu? = nil) {
        self.context = context; self.buffer = buffer; self.transport = transport
        self.rdmsrAnsweredOn = rdmsrAnsweredOn ?? context.vcpu
    }

    public func exchange(_ bytes: [UInt8], replyLength: Int, describing exchange: MmExchange) throws(Edk2MmFailure) -> [UInt8] {
        guard bytes.count <= Edk2CommunicateBuffer.size else { throw .status(.badBufferSize) }
        do { try context.store(buffer.virtual, bytes) } catch { throw .fault(error) }
        try uefiMmRequest(exchange)
        do {
            return try context.load(buffer.virtual.advanced(by: UInt64(MmCommunicateHeader.size)), count: replyLength)
        } catch { throw .fault(error) }
    }

    /// `AmdSvsmUefiMmRequest (mCommunicateBufferPhys, MAX_BUFFER_SIZE)`.
    func uefiMmRequest(_ exchange: MmExchange) throws(Edk2MmFailure) {
        let caaValue: UInt64
        do { caaValue = try context.vcHandler.rdmsrFromEfiRuntime(SvsmCaaMsr.index, on: rdmsrAnsweredOn) } catch { throw .fault(error) }
        // SvsmMsrProtocol: GetInterruptState / DisableInterrupts before the GHCB MSR is used.
        let wereEnabled = context.interruptsEnabled
        context.disableInterrupts()
        defer { if wereEnabled { context.enableInterrupts() } }
        // AsmVmgExitSvsm: `mov r10, [r12]; mov byte [r10], 1` — the MSR value is the pointer.
        let pointer = VirtualAddress(caaValue)
        let caa: GuestPhysicalAddress
        do { caa = try context.physicalForWrite(pointer, count: 1) } catch { throw .fault(error) }
        do {
            try transport.perform(.uefiMmRequest, rcx: buffer.physical.rawValue, rdx: UInt64(Edk2CommunicateBuffer.size),
                                  on: context.vcpu, caa: caa, mm: (exchange, buffer.physical))
        } catch {
            switch error {
            case .notExecuted:
                throw .fault(.guestTerminated("SvsmMsrProtocol: Pending != 0 after VMGEXIT → SnpTerminate ()"))
            case .badGhcbResponse:
                throw .fault(.guestTerminated("SvsmMsrProtocol: no VMPL response in the GHCB MSR → SnpTerminate ()"))
            case .failed, .retriesExhausted, .bufferNotInGuestMemory:
                // AmdSvsmUefiMmRequest returns FALSE. (edk2 repeats BUSY and INCOMPLETE
                // without bound where the transport stops; protocol 4 answers neither
                // unless faults are injected.)
                throw .status(.deviceError)
            }
        }
    }
}
