import Synchronization

/// The MM service behind protocol 4: dispatch by HeaderGuid to the variable protocol or
/// the boot events, over one store (COCONUT's `core_request_dispatch` over `STORE`).
public final class VariableService: UefiMmRequestHandler {
    private let state: Mutex<VariableStore>
    private let variables: MmVariableHandler
    private let policies = MmPolicyHandler()

    /// Where non-volatile changes go before a SetVariable returns (nil: memory only).
    private let persistence: (any PersistentBacking)?

    public init(store: VariableStore = VariableStore(), persistence: (any PersistentBacking)? = nil) {
        self.variables = MmVariableHandler(payloadLimit: store.limits.payloadSize)
        self.state = Mutex(store)
        self.persistence = persistence
    }

    /// A variable-protocol request against a persistent store: the non-volatile changes it
    /// made are appended and synced before the answer goes back; if that fails, the store
    /// is rolled back and the caller sees EFI_DEVICE_ERROR.
    private func persistentRequest(_ message: [UInt8], _ store: inout VariableStore, _ file: any PersistentBacking) -> [UInt8] {
        store.tracking = VariableStore.ChangeSet()
        var reply = variables.handle(message, store: &store)
        let changes = store.nonVolatileChanges
        do {
            try file.commit(changes, all: file.wantsWholeStore(with: changes) ? store.nonVolatileVariables : nil)
            store.tracking = nil
        } catch {
            store.rollBack()
            if reply.count >= SmmVariableHeader.size {
                reply.storeLE(EfiStatus.deviceError.rawValue, at: SmmVariableHeader.returnStatusOffset)
            }
            return reply
        }
        return reply
    }

    public func handleMmRequest(headerGuid: EfiGuid, message: [UInt8]) -> [UInt8]? {
        state.withLock { store -> [UInt8]? in
            switch headerGuid {
            case .smmVariableProtocol:
                if let file = persistence { return persistentRequest(message, &store, file) }
                return variables.handle(message, store: &store)
            case .varCheckPolicyMmiHandler:
                return policies.handle(message, store: &store)
            case .endOfDxeEvent:
                store.signalEndOfDxe(); return message
            case .readyToBootEvent:
                store.signalReadyToBoot(); return message
            case .exitBootServicesEvent:
                store.signalExitBootServices(); return message
            default:
                // Decision (uefi-variables.md §1.4): no handler, the message stays as it was.
                return nil
            }
        }
    }

    /// Direct access for the host-side tools (export, inspection in tests). The guest
    /// never reaches this: it goes through protocol 4.
    public func withStore<R>(_ body: (inout VariableStore) -> R) -> R {
        state.withLock { body(&$0) }
    }
}
