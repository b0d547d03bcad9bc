import EfiTypes
import MmWire

/// The MM service behind protocol 4: one profile's store (`MmVariableStore`: edk2's
/// VariableSmm, QEMU's uefi-vars, COCONUT's virtfw-varstore) behind one lock, as COCONUT
/// holds its `STORE` behind one spin lock for a whole request.
///
/// Durability: a request that changes the non-volatile store is staged in the journal
/// while the store lock is held, and answered only once the journal says it is durable.
/// Every request — a read too — waits for the newest change it could have seen to be
/// durable before it is answered, so no client ever sees a value a crash could take back.
/// If the journal loses changes (a failed fdatasync), they are undone, newest first; the
/// writers that made them answer EFI_DEVICE_ERROR (EFI_OUT_OF_RESOURCES for a full disk)
/// and the readers that saw them ask again.
public final class VariableService: MmService {
    private let state: Locked<State>
    /// Where non-volatile changes go before a request is answered (nil: memory only).
    public let journal: (any VariableJournal)?

    struct State {
        var store: any MmVariableStore
        /// Staged requests not yet known durable, oldest first, with what each changed:
        /// what is undone if the journal loses them.
        var unsynced: [(ticket: JournalTicket, changes: StoreTransaction)] = []
        /// Bumped by every request that may have changed what a reader sees, and by every
        /// undo: the driver cache's shared-generation design proposal reads it.
        var changeGeneration: UInt64 = 0
    }

    /// The store's change counter: moves whenever a request other than a pure read (GET,
    /// GET_NEXT, QUERY_VARIABLE_INFO, property get, payload size) was handled or a lost
    /// change was undone. A model-private side channel, not part of any MM message: it
    /// stands for the guest page a real SVSM would publish it in (BENCHMARKS.md, "The
    /// driver cache").
    public var storeGeneration: UInt64 { state.withLock { $0.changeGeneration } }

    static func isPureRead(_ headerGuid: EfiGuid, _ message: [UInt8]) -> Bool {
        guard headerGuid == .smmVariableProtocol, message.count >= SmmVariableHeader.size else { return false }
        switch SmmVariableFunction(rawValue: message.loadLE(UInt64.self, at: SmmVariableHeader.functionOffset)) {
        case .getVariable, .getNextVariableName, .queryVariableInfo, .getPayloadSize, .varCheckVariablePropertyGet: return true
        default: return false
        }
    }

    public init(store: any MmVariableStore = VariableStore(), journal: (any VariableJournal)? = nil) {
        self.state = Locked(State(store: store))
        self.journal = journal
    }

    /// At unmount: the store's files are closed and its lock released at once, so that the
    /// next mount of the same store need not wait for this process to exit. A variable
    /// change after this answers EFI_DEVICE_ERROR.
    public func releaseStore() {
        state.withLock { _ in journal?.release() }
    }

    /// fdatasync calls made for requests, and the requests they acknowledged.
    public var syncStatistics: (syncs: Int, acknowledged: UInt64) { journal?.syncStatistics ?? (0, 0) }

    public func uefiMmManifest() -> UefiMmManifest {
        state.withLock { $0.store.manifest(persistentStore: journal != nil) }
    }

    /// The store's non-volatile variables as they are now (for tests and `export`).
    public var nonVolatileVariables: [ExportedVariable] { state.withLock { $0.store.nonVolatileExport } }
    /// Every variable the store holds, volatile ones too (for tests and inspection).
    public var allVariables: [ExportedVariable] { state.withLock { $0.store.everyVariable } }

    public func handleMmRequest(headerGuid: EfiGuid, message: consuming [UInt8], bufferSize: UInt64) -> [UInt8]? {
        let pureRead = VariableService.isPureRead(headerGuid, message)
        // The handler answers in the request's own bytes. Behind a journal a request may
        // have to be asked again (below), so there it is kept aside; without one it is
        // handed down whole, and answered without a second copy.
        let again: [UInt8]? = journal != nil ? message : nil
        var request: [UInt8]? = consume message
        while true {
            let outcome = state.withLock { s in apply(headerGuid, request.take() ?? [], pureRead, bufferSize, &s) }
            guard let journal, let waitFor = outcome.waitFor else { return outcome.reply }
            if journal.awaitDurable(waitFor) { return outcome.reply }
            // The journal lost changes: undo them, then answer.
            state.withLock { s in
                if let lost = journal.discardUnsynced() {
                    for entry in s.unsynced.reversed() where lost.contains(entry.ticket) { s.store.undo(entry.changes) }
                    s.unsynced.removeAll { lost.contains($0.ticket) }
                    s.changeGeneration &+= 1
                }
            }
            // A request that saw lost changes (and made none of its own) asks again; a
            // writer whose changes were lost says so.
            guard outcome.ownTicket != nil else { request = again; continue }
            return outcome.reply.map { VariableService.marked($0, .deviceError) }
        }
    }

    struct Outcome {
        var reply: [UInt8]?
        /// The ticket this request must see durable before it is answered.
        var waitFor: JournalTicket?
        /// The ticket of this request's own changes, if it made any.
        var ownTicket: JournalTicket?
    }

    /// One request against the store, with the store lock held.
    private func apply(_ headerGuid: EfiGuid, _ message: consuming [UInt8], _ pureRead: Bool, _ bufferSize: UInt64, _ s: inout State) -> Outcome {
        if let journal { s.unsynced.removeAll { journal.isDurable($0.ticket) } }
        s.store.beginTransaction()
        let reply = s.store.handle(headerGuid: headerGuid, message: message, bufferSize: bufferSize)
        let transaction = s.store.endTransaction()
        if !transaction.isEmpty || !pureRead { s.changeGeneration &+= 1 }
        guard let journal else { return Outcome(reply: reply) }
        let changes = s.store.nonVolatileChanges(transaction)
        if changes.isEmpty {
            return Outcome(reply: reply, waitFor: journal.newestPendingTicket)
        }
        let store = s.store
        do {
            let ticket = try journal.stage(changes, wholeStore: { store.nonVolatileExport })
            s.unsynced.append((ticket, transaction))
            return Outcome(reply: reply, waitFor: ticket, ownTicket: ticket)
        } catch {
            s.store.undo(transaction)
            return Outcome(reply: reply.map { VariableService.marked($0, error.isOutOfSpace ? .outOfResources : .deviceError) })
        }
    }

    /// A variable-protocol reply with its ReturnStatus replaced. (Only variable-protocol
    /// requests change the non-volatile store, so only their replies are ever marked.)
    static func marked(_ reply: [UInt8], _ status: EfiStatus) -> [UInt8] {
        var r = reply
        if r.count >= SmmVariableHeader.size { r.storeLE(status.rawValue, at: SmmVariableHeader.returnStatusOffset) }
        return r
    }
}
