import EfiTypes
import MmWire
import SvsmAbi

/// The variable services OVMF installs for the OS (tianocore/edk2
/// MdeModulePkg/Universal/Variable/RuntimeDxe/VariableSmmRuntimeDxe.c), as they run after
/// ExitBootServices: without the runtime cache (VirtMmCommunicationDxe stops in
/// `CpuDeadLoop` if PcdEnableVariableRuntimeCache is set), every call is one MM round trip
/// (`FindVariableInSmm`, `RuntimeServiceSetVariable`, ... → `SendCommunicateBuffer`), and
/// `mVariableServicesLock` is taken only at boot time (`AcquireLockOnlyAtBootTime`).
public struct Edk2RuntimeVariableServices: Sendable {
    public let buffer: Edk2CommunicateBuffer
    public let transport: SvsmCallTransport

    public init(buffer: Edk2CommunicateBuffer, transport: SvsmCallTransport) {
        self.buffer = buffer; self.transport = transport
    }

    func call(_ function: SmmVariableFunction, _ payload: [UInt8], in context: EfiRuntimeContext) throws(Edk2MmFailure) -> (EfiStatus, [UInt8]) {
        try MmCommunicator(channel: Edk2SvsmMmChannel(context: context, buffer: buffer, transport: transport))
            .variableCall(function, payload: payload)
    }

    /// `RuntimeServiceGetVariable`: NOT_FOUND for an empty name without a call, else one
    /// GET_VARIABLE; BUFFER_TOO_SMALL carries the size needed.
    public func getVariable(_ key: VariableKey, dataSize: Int, in context: EfiRuntimeContext) throws(EfiRuntimeFault) -> GetVariableResult {
        guard !key.name.isEmpty else { return .error(.notFound) }
        let payload = AccessVariablePayload.encode(guid: key.guid, name: key.name, attributes: 0, dataSize: dataSize)
        let status: EfiStatus, reply: [UInt8]
        do { (status, reply) = try call(.getVariable, payload, in: context) } catch { return try Self.status(error, as: GetVariableResult.error) }
        return MmVariableReply.getVariable(status: status, reply: reply)
    }

    /// `RuntimeServiceSetVariable`: one SET_VARIABLE (no property check at runtime).
    public func setVariable(_ key: VariableKey, attributes: UInt32, data: [UInt8], in context: EfiRuntimeContext) throws(EfiRuntimeFault) -> EfiStatus {
        let payload = AccessVariablePayload.encode(guid: key.guid, name: key.name, attributes: attributes, dataSize: data.count, data: data)
        do { return try call(.setVariable, payload, in: context).0 } catch { return try Self.status(error, as: { $0 }) }
    }

    /// `RuntimeServiceQueryVariableInfo`: one QUERY_VARIABLE_INFO.
    public func queryVariableInfo(attributes: UInt32, in context: EfiRuntimeContext) throws(EfiRuntimeFault) -> Result<VariableStorageInfo, EfiStatusError> {
        let status: EfiStatus, reply: [UInt8]
        do { (status, reply) = try call(.queryVariableInfo, QueryVariableInfoPayload.encode(attributes: attributes), in: context) } catch {
            return try Self.status(error, as: { .failure(EfiStatusError($0)) })
        }
        return MmVariableReply.queryVariableInfo(status: status, reply: reply)
    }

    /// `RuntimeServiceGetNextVariableName`: one GET_NEXT_VARIABLE_NAME.
    public func getNextVariableName(after key: VariableKey, nameBufferSize: Int, in context: EfiRuntimeContext) throws(EfiRuntimeFault) -> GetNextVariableNameResult {
        let payload = GetNextVariableNamePayload.encode(guid: key.guid, name: key.name, nameBufferSize: nameBufferSize)
        let status: EfiStatus, reply: [UInt8]
        do { (status, reply) = try call(.getNextVariableName, payload, in: context) } catch { return try Self.status(error, as: GetNextVariableNameResult.error) }
        return MmVariableReply.getNextVariableName(status: status, reply: reply)
    }

    /// A failed round trip: a status becomes the service's result, a fault goes on to the OS.
    static func status<R>(_ failure: Edk2MmFailure, as result: (EfiStatus) -> R) throws(EfiRuntimeFault) -> R {
        switch failure {
        case .status(let s): return result(s)
        case .fault(let f): throw f
        }
    }
}
