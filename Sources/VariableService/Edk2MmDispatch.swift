import EfiTypes
import MmWire

/// edk2's variable store behind protocol 4: the MM core's dispatch by HeaderGuid to the
/// variable protocol (VariableSmm.c `SmmVariableHandler`), the variable-policy MMI
/// (`VarCheckPolicyMmiHandler`) and the boot events edk2 signals into MM.
extension VariableStore: MmVariableStore {
    public mutating func handle(headerGuid: EfiGuid, message: consuming [UInt8], bufferSize: UInt64) -> [UInt8]? {
        switch headerGuid {
        case .smmVariableProtocol:
            return MmVariableHandler(payloadLimit: limits.payloadSize).handle(message, store: &self)
        case .varCheckPolicyMmiHandler:
            return MmPolicyHandler().handle(message, store: &self)
        case .endOfDxeEvent:
            signalEndOfDxe(); return message
        case .readyToBootEvent:
            signalReadyToBoot(); return message
        case .exitBootServicesEvent:
            signalExitBootServices(); return message
        default:
            // No handler: the message stays as it was (edk2's MmiManage finds no handler
            // and leaves the buffer alone).
            return nil
        }
    }

    public var nonVolatileExport: [ExportedVariable] { nonVolatileVariables.map { ExportedVariable($0.0, $0.1) } }
    public var everyVariable: [ExportedVariable] { allVariables.map { ExportedVariable($0.0, $0.1) } }

    /// The edk2 profile stands for a store that has what COCONUT's lacks: persistence when
    /// a journal is behind it, and PKCS#7, so db/dbx updates are possible once Secure Boot
    /// is on (COCONUT's comment: "should only be set in case secure boot is enabled").
    public func manifest(persistentStore: Bool) -> UefiMmManifest {
        let pk = find(VariableStore.pk) != nil
        return UefiMmManifest(persistentNvVariables: persistentStore, secureBootEnabled: pk,
                              secureBootDbUpdate: pk && secureBoot.authSupport)
    }
}
