import EfiTypes

/// How a communicate buffer reaches an MM service: the caller's buffer in its memory and the
/// call that hands over the buffer's address — an SVSM call through a CAA (the Linux driver,
/// the firmware's runtime path), or anything else that carries the same bytes.
public protocol MmBufferChannel {
    associatedtype Failure: Error
    /// Writes `buffer` (EFI_MM_COMMUNICATE_HEADER and message) at the start of the MM
    /// buffer, hands the buffer to the MM service and returns the first `replyLength` bytes
    /// of the message area (at offset 24) afterwards. `exchange` describes the message for
    /// traces.
    func exchange(_ buffer: [UInt8], replyLength: Int, describing exchange: MmExchange) throws(Failure) -> [UInt8]

    /// One variable-protocol round trip: EFI_MM_COMMUNICATE_HEADER (gEfiSmmVariableProtocolGuid),
    /// SMM_VARIABLE_COMMUNICATE_HEADER (`function`, ReturnStatus 0) and `payload` at the
    /// start of the MM buffer; returns the ReturnStatus and the reply payload (as long as
    /// `payload`) as the service left them. The same bytes cross the boundary as through
    /// `exchange`; a channel over guest memory writes them there directly instead of
    /// joining them in an array first.
    func variableExchange(_ function: SmmVariableFunction, payload: [UInt8]) throws(Failure) -> (EfiStatus, [UInt8])
}

extension MmBufferChannel {
    /// Through `exchange`: the message built in one array, the reply split after.
    public func variableExchange(_ function: SmmVariableFunction, payload: [UInt8]) throws(Failure) -> (EfiStatus, [UInt8]) {
        let reply = try exchange(MmCommunicateHeader.encode(headerGuid: .smmVariableProtocol,
                                                            message: SmmVariableHeader.message(function, payload: payload)),
                                 replyLength: SmmVariableHeader.size + payload.count,
                                 describing: MmExchange(headerGuid: .smmVariableProtocol, function: function))
        return (EfiStatus(rawValue: reply.loadLE(UInt64.self, at: SmmVariableHeader.returnStatusOffset)),
                Array(reply[SmmVariableHeader.size...]))
    }
}

/// What a trace needs to know about one exchange, given before it happens.
public struct MmExchange: Sendable {
    public let headerGuid: EfiGuid
    /// The SMM variable function, for variable-protocol messages.
    public let function: SmmVariableFunction?
    /// Offset of ReturnStatus from the start of the buffer, for variable-protocol messages.
    public var returnStatusOffset: Int? { function == nil ? nil : MmCommunicateHeader.size + SmmVariableHeader.returnStatusOffset }
    public init(headerGuid: EfiGuid, function: SmmVariableFunction?) { self.headerGuid = headerGuid; self.function = function }
}

/// Builds and reads MM messages, the way edk2's VariableSmmRuntimeDxe and Linux's
/// tee_stmm_efi do: a header, the message, one exchange, the reply in place. Used by the
/// firmware model and the driver alike.
public struct MmCommunicator<Channel: MmBufferChannel> {
    public let channel: Channel

    public init(channel: Channel) { self.channel = channel }

    /// One round trip: returns the reply message, as long as `message`.
    public func communicate(headerGuid: EfiGuid, message: [UInt8]) throws(Channel.Failure) -> [UInt8] {
        var function: SmmVariableFunction?
        if headerGuid == .smmVariableProtocol, message.count >= SmmVariableHeader.size {
            function = SmmVariableFunction(rawValue: message.loadLE(UInt64.self, at: SmmVariableHeader.functionOffset))
        }
        return try channel.exchange(MmCommunicateHeader.encode(headerGuid: headerGuid, message: message),
                                    replyLength: message.count,
                                    describing: MmExchange(headerGuid: headerGuid, function: function))
    }

    /// A variable-protocol call: the ReturnStatus and the reply payload.
    public func variableCall(_ function: SmmVariableFunction, payload: [UInt8]) throws(Channel.Failure) -> (EfiStatus, [UInt8]) {
        try channel.variableExchange(function, payload: payload)
    }
}
