import EfiTypes
import VariableService

/// One variable as `struct uefi_variable` holds it: the name as the caller sent it
/// (NameSize bytes; anything after its NUL is kept), attributes without APPEND_WRITE, data,
/// the timestamp and, for authenticated variables that are not Secure Boot databases, the
/// signer digest.
struct UefiVarRecord: Sendable {
    var key: VariableKey
    var name: [UInt8]
    var value: StoredVariable

    init(key: VariableKey, name: [UInt8]? = nil, value: StoredVariable) {
        self.key = key
        self.name = name ?? Ucs2.nulTerminatedBytes(key.name)
        self.value = value
    }

    /// `variable_size`: sizeof(struct uefi_variable) on a 64-bit host (96: GUID 16, name
    /// pointer 8, name_size 4, attributes 4, data pointer 8, data_size 4, efi_time 16,
    /// padding 4, digest pointer 8, digest_size 4, padding 4, list links 16) plus the three
    /// buffers.
    static let hostStructSize = 96
    var storageSize: Int { UefiVarRecord.hostStructSize + name.count + value.data.count + (value.digest?.count ?? 0) }
}

/// The variable list (`uv->variables`, a QTAILQ) with QEMU's storage accounting, and the
/// record of what one request changed so `VariableService` can undo it.
struct UefiVarsList: Sendable {
    private(set) var records: [UefiVarRecord] = []
    private(set) var usedStorage = 0
    var transaction: StoreTransaction?

    func index(of key: VariableKey) -> Int? { records.firstIndex { $0.key == key } }
    func find(_ key: VariableKey) -> UefiVarRecord? { index(of: key).map { records[$0] } }

    private mutating func noteChange(_ key: VariableKey) {
        guard transaction != nil else { return }
        let i = index(of: key)
        transaction!.note(key, before: i.map { records[$0].value }, placement: i.map { ($0, records[$0].name) })
    }

    /// Adds at the tail (QTAILQ_INSERT_TAIL); the key must not be present.
    mutating func append(_ r: UefiVarRecord) {
        noteChange(r.key)
        records.append(r)
        usedStorage += r.storageSize
    }

    mutating func remove(_ key: VariableKey) {
        guard let i = index(of: key) else { return }
        noteChange(key)
        usedStorage -= records[i].storageSize
        records.remove(at: i)
    }

    /// Replaces a present variable in its place.
    mutating func replaceInPlace(_ r: UefiVarRecord) {
        guard let i = index(of: r.key) else { return append(r) }
        noteChange(r.key)
        usedStorage += r.storageSize - records[i].storageSize
        records[i] = r
    }

    /// `uefi_vars_set_variable`, the store's own write: delete the old one, add at the
    /// tail.
    mutating func put(_ r: UefiVarRecord) {
        remove(r.key)
        append(r)
    }

    mutating func removeAll(where predicate: (UefiVarRecord) -> Bool) {
        for r in records where predicate(r) { remove(r.key) }
    }

    /// Puts back what `t` changed, newest change first, each variable in its old place
    /// (list order is GetNextVariableName order).
    mutating func undo(_ t: StoreTransaction) {
        let open = transaction
        transaction = nil
        for key in t.order.reversed() {
            remove(key)
            if let old = t.before[key] ?? nil {
                let place = t.placement[key]
                let r = UefiVarRecord(key: key, name: place?.name, value: old)
                records.insert(r, at: min(place?.index ?? records.count, records.count))
                usedStorage += r.storageSize
            }
        }
        transaction = open
    }
}
