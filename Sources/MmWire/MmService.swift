import EfiTypes

/// An MM service: what a communicate buffer's HeaderGuid and message are handed to, and
/// what answers them — edk2's MM core dispatch over its MMI handlers, COCONUT's
/// `core_request_dispatch` over its store, QEMU's `uefi_vars_cmd_mm`. The SVSM's protocol 4
/// calls it with a private copy of the message; every SVSM variable store (each profile)
/// implements it.
public protocol MmService: Sendable {
    /// The reply message, at most as long as `message`; nil when no handler serves
    /// `headerGuid` (the buffer then stays as it was).
    func handleMmRequest(headerGuid: EfiGuid, message: [UInt8]) -> [UInt8]?
}
