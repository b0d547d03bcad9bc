/// The MM service behind protocol 4: dispatch by HeaderGuid to the variable protocol or
/// the boot events, over one store (COCONUT's `core_request_dispatch` over `STORE`).
public final class VariableService: UefiMmRequestHandler {
    private let state: Locked<VariableStore>
    private let variables: MmVariableHandler
    private let policies = MmPolicyHandler()

    /// Where non-volatile changes go before a SetVariable returns (nil: memory only).
    private let persistence: (any PersistentBacking)?
    /// The native store's log, written with group commit (see `GroupCommit`).
    private let journal: NativeStoreFile?
    private let group = GroupCommit()
    /// Appended but not yet synced requests, oldest first, with what each changed: what a
    /// failed fdatasync rolls back. Touched only with `state` held.
    private let pending = Locked<(entries: [(ticket: UInt64, changes: VariableStore.ChangeSet)], syncedLogEnd: Int)>(([], 0))

    public init(store: VariableStore = VariableStore(), persistence: (any PersistentBacking)? = nil) {
        self.variables = MmVariableHandler(payloadLimit: store.limits.payloadSize)
        self.state = Locked(store)
        self.persistence = persistence
        self.journal = persistence as? NativeStoreFile
        if let j = journal { pending.withLock { $0.syncedLogEnd = j.logEnd } }
    }

    /// At unmount: the store's files are closed and its lock released at once, so that the
    /// next mount of the same store need not wait for this process to exit. A variable
    /// change after this answers EFI_DEVICE_ERROR.
    public func releaseStore() {
        state.withLock { _ in persistence?.release() }
    }

    /// fdatasync calls made for SetVariables, and the SetVariables they acknowledged.
    public var groupCommitStatistics: (syncs: Int, acknowledged: UInt64) { (group.syncs, group.acknowledged) }

    static func markDeviceError(_ reply: inout [UInt8]) {
        if reply.count >= SmmVariableHeader.size {
            reply.storeLE(EfiStatus.deviceError.rawValue, at: SmmVariableHeader.returnStatusOffset)
        }
    }

    /// A variable-protocol request against the native store: applied and appended to the
    /// log with the store lock held, then acknowledged once a (shared) fdatasync has made
    /// the append durable. If that fdatasync fails, every request appended since the last
    /// good one is rolled back and answers EFI_DEVICE_ERROR.
    private func groupCommittedRequest(_ message: [UInt8], _ log: NativeStoreFile) -> [UInt8] {
        let (applied, ticket) = state.withLock { store -> ([UInt8], UInt64?) in
            store.tracking = VariableStore.ChangeSet()
            var reply = variables.handle(message, store: &store)
            let changes = store.nonVolatileChanges
            guard !changes.isEmpty, let undo = store.tracking else { store.tracking = nil; return (reply, nil) }
            do {
                let end = try log.stage(changes)
                let t = group.publish(logEnd: end)
                pending.withLock { $0.entries.append((t, undo)) }
                store.tracking = nil
                return (reply, t)
            } catch {
                store.rollBack()
                VariableService.markDeviceError(&reply)
                return (reply, nil)
            }
        }
        guard let ticket else { return applied }
        let durable = group.wait(for: ticket, sync: { log.syncLog() }, settle: { ok, target, end in
            settle(ok, through: target, logEnd: end, log)
        })
        if durable { return applied }
        var reply = applied
        VariableService.markDeviceError(&reply)
        return reply
    }

    /// After an fdatasync (leader only): forget what it made durable and compact when the
    /// log has grown; or, when it failed, roll back every request not yet durable, newest
    /// first, and cut the log back to its last synced end.
    private func settle(_ ok: Bool, through target: UInt64, logEnd end: Int, _ log: NativeStoreFile) -> UInt64 {
        state.withLock { store -> UInt64 in
            pending.withLock { p -> UInt64 in
                if ok {
                    p.syncedLogEnd = end
                    p.entries.removeAll { $0.ticket <= target }
                    // A checkpoint holds everything appended so far, synced or not.
                    if log.needsCompaction, (try? log.compact(store.nonVolatileVariables)) != nil {
                        p.entries.removeAll()
                        p.syncedLogEnd = log.logEnd
                        return group.newestTicket
                    }
                    return target
                }
                for e in p.entries.reversed() {
                    store.tracking = e.changes
                    store.rollBack()
                }
                p.entries.removeAll()
                log.truncateLog(to: p.syncedLogEnd)
                return group.newestTicket
            }
        }
    }

    /// A variable-protocol request against a live VM variable file: the whole file is
    /// rewritten before the answer goes back; if that fails, the store is rolled back and
    /// the caller sees EFI_DEVICE_ERROR.
    private func persistentRequest(_ message: [UInt8], _ store: inout VariableStore, _ file: any PersistentBacking) -> [UInt8] {
        store.tracking = VariableStore.ChangeSet()
        var reply = variables.handle(message, store: &store)
        let changes = store.nonVolatileChanges
        do {
            try file.commit(changes, all: file.wantsWholeStore(with: changes) ? store.nonVolatileVariables : nil)
            store.tracking = nil
        } catch {
            store.rollBack()
            VariableService.markDeviceError(&reply)
            return reply
        }
        return reply
    }

    public func handleMmRequest(headerGuid: EfiGuid, message: [UInt8]) -> [UInt8]? {
        // The durability wait happens outside the store lock, so this path takes it itself.
        if headerGuid == .smmVariableProtocol, let log = journal { return groupCommittedRequest(message, log) }
        return state.withLock { store -> [UInt8]? in
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
