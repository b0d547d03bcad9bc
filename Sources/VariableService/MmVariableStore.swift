import EfiTypes
import MmWire

/// One SVSM implementation's variable store: its variables, how it answers an MM request,
/// and what one request changed. `VariableService` holds one behind its lock and adds what
/// every profile shares — the journal, durability before the answer, undo of lost changes —
/// so a new profile plugs in here and nowhere else.
public protocol MmVariableStore: Sendable {
    /// Answers one request (nil: no handler for `headerGuid`). `bufferSize` is the guest's
    /// communicate buffer (RDX).
    mutating func handle(headerGuid: EfiGuid, message: consuming [UInt8], bufferSize: UInt64) -> [UInt8]?

    /// Starts recording changes, so that one request's effect can be listed and undone.
    mutating func beginTransaction()
    /// Ends the recording: what the request changed.
    mutating func endTransaction() -> StoreTransaction
    /// Puts back every variable `t` changed. Newer transactions are undone first.
    mutating func undo(_ t: StoreTransaction)
    /// The non-volatile changes in `t`, in order, each with the variable's value now.
    func nonVolatileChanges(_ t: StoreTransaction) -> [VariableChange]
    /// Every non-volatile variable, in the store's own order (what a journal rewrites).
    var nonVolatileExport: [ExportedVariable] { get }
    /// Every variable, volatile ones too, regardless of visibility (inspection and tests).
    var everyVariable: [ExportedVariable] { get }

    /// The manifest flags this store's SVSM reports; `persistentStore` says whether the
    /// service has a journal behind it.
    func manifest(persistentStore: Bool) -> UefiMmManifest
}

/// The variables one request changed, each with its value before the request.
public struct StoreTransaction: Sendable {
    // `Dictionary()` rather than `[:]`: every request begins a transaction, and the literal
    // went through `init(dictionaryLiteral:)` with an empty array each time.
    package var order: [VariableKey] = []
    package var before = [VariableKey: StoredVariable?]()
    /// Where a store whose order matters kept each variable before, and the raw name it
    /// had, so that an undo puts it back in its place.
    package var placement = [VariableKey: (index: Int, name: [UInt8])]()
    package init() {}
    public var isEmpty: Bool { order.isEmpty }

    /// Records `key`'s value (and place) before its first change in this transaction.
    package mutating func note(_ key: VariableKey, before value: StoredVariable?, placement place: (index: Int, name: [UInt8])? = nil) {
        guard before[key] == nil else { return }
        before[key] = .some(value)
        if let place { placement[key] = place }
        order.append(key)
    }
}
