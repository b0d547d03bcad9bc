import Synchronization

/// The MM service behind protocol 4: dispatch by HeaderGuid to the variable protocol or
/// the boot events, over one store (COCONUT's `core_request_dispatch` over `STORE`).
public final class VariableService: UefiMmRequestHandler {
    private let state: Mutex<VariableStore>
    private let variables: MmVariableHandler
    private let policies = MmPolicyHandler()

    public init(store: VariableStore = VariableStore()) {
        self.variables = MmVariableHandler(payloadLimit: store.limits.payloadSize)
        self.state = Mutex(store)
    }

    public func handleMmRequest(headerGuid: EfiGuid, message: [UInt8]) -> [UInt8]? {
        state.withLock { store -> [UInt8]? in
            switch headerGuid {
            case .smmVariableProtocol:
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
