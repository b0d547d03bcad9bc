import EfiTypes
import Hardware
import MmWire
import SvsmAbi

/// Protocol 4, SVSM_UEFI_MM_PROTOCOL (COCONUT `kernel/src/protocols/uefivars.rs`): one call,
/// SVSM_UEFI_MM_REQUEST = 1, RCX = page-aligned GPA of an EFI_MM_COMMUNICATE buffer,
/// RDX = its size.
extension Svsm {
    func uefiMmProtocol(_ call: UInt32, apicId: UInt32, regs: inout SvsmRegisters) throws(SvsmError) {
        guard call == 1 else { throw .unsupportedCall }
        try uefiMmRequest(address: GuestPhysicalAddress(regs.rcx), size: regs.rdx, apicId: apicId)
    }

    /// The buffer checks, in COCONUT's order and with its codes.
    func uefiMmRequest(address: GuestPhysicalAddress, size: UInt64, apicId: UInt32) throws(SvsmError) {
        let b = protectedPages
        guard address.rawValue != 0 else { throw .invalidParameter }
        guard access.validPhysAddress(address, protected: b) else { throw .invalidAddress }
        guard address.pageAligned else { throw .invalidAddress }  // not INVALID_PARAMETER
        guard size >= Svsm.mmHeaderSize else { throw .invalidParameter }
        guard size <= Svsm.uefiMmBufferLimit else { throw .invalidParameter }
        // The header's two fields are read once, into values: later changes by the guest
        // cannot reach them.
        let (guid, messageLength) = try access.withBytes(GuestRegion(start: address, length: Svsm.mmHeaderSize), protected: b) { h in
            (h.loadGuid(at: MmCommunicateHeader.headerGuidOffset), h.loadLE(UInt64.self, at: MmCommunicateHeader.messageLengthOffset))
        }
        guard messageLength <= size - Svsm.mmHeaderSize else { throw .invalidParameter }
        // A private copy: the guest cannot change the request while it is processed.
        let body = address.advanced(by: Svsm.mmHeaderSize)
        let request = try access.read(GuestRegion(start: body, length: messageLength), protected: b)
        notifyMmRequest(apicId: apicId, headerGuid: guid, messageLength: messageLength, message: request)
        // COCONUT holds one global lock around the store for the request; here the handler
        // takes it (VariableService's store lock), so that a durable write can wait for its
        // fdatasync after releasing it (group commit).
        let response = mmService.handleMmRequest(headerGuid: guid, message: request, bufferSize: size)
        guard let rsp = response else { return }  // no handler: the buffer stays as it was
        // COCONUT asserts here (`assert!(rsp.len() <= bsize)`) and the SVSM aborts (panic =
        // 'abort'); its drafts answered SVSM_ERR_INVALID_REQUEST, which the model keeps as
        // the defined answer.
        guard UInt64(rsp.count) <= messageLength else { throw .responseTooLarge }
        // Only 24 + rsp.count bytes are written; the header is never rewritten.
        try access.write(body, rsp, protected: b)
    }
}
