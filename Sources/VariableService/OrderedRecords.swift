/// Records in the order they were written, the way edk2's variable store keeps them: a new
/// or updated variable goes to the end, a deleted one leaves a gap (edk2 marks the record
/// VAR_DELETED and walks past it until reclaim: tianocore/edk2
/// MdeModulePkg/Universal/Variable/RuntimeDxe/Variable.c `UpdateVariable`, `Reclaim`). Lookup by key is a hash probe; removal is
/// O(1) (the slot becomes a gap, as the record's State does); the gaps are squeezed out
/// once they outnumber the records, so a walk never passes more gaps than records and the
/// cost of squeezing is spread over the removals that made the gaps.
///
/// (OrderedDictionary, used before, shifts every later element on each removal: O(n) per
/// update or delete, measured at 5.7 µs per delete with 8,000 variables — BENCHMARKS.md.)
struct OrderedRecords<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    /// Written order; nil where a record was removed.
    private var slots: [(key: Key, value: Value)?] = []
    /// Where each live key sits in `slots`.
    private var position: [Key: Int] = [:]

    var count: Int { position.count }

    subscript(key: Key) -> Value? {
        guard let i = position[key] else { return nil }
        return slots[i]!.value
    }

    /// The slot of `key`: a position that `first(from:where:)` walks on from.
    func slot(of key: Key) -> Int? { position[key] }

    /// The value in a live slot.
    func value(at slot: Int) -> Value { slots[slot]!.value }

    /// The first live record at or after `slot` whose value passes `test`.
    func first(from slot: Int, where test: (Value) -> Bool) -> Key? {
        var i = slot
        while i < slots.count {
            if let r = slots[i], test(r.value) { return r.key }
            i += 1
        }
        return nil
    }

    /// Appends `value` for a key that is not present (callers remove first: an update
    /// moves to the end).
    mutating func append(_ key: Key, _ value: Value) {
        precondition(position[key] == nil, "OrderedRecords.append: key already present")
        position[key] = slots.count
        slots.append((key, value))
    }

    @discardableResult
    mutating func removeValue(forKey key: Key) -> Value? {
        guard let i = position.removeValue(forKey: key) else { return nil }
        let old = slots[i]!.value
        slots[i] = nil
        if slots.count > 32 && slots.count > 2 * position.count { squeeze() }
        return old
    }

    /// Drops the gaps, keeping the order of the records.
    private mutating func squeeze() {
        var kept: [(key: Key, value: Value)?] = []
        kept.reserveCapacity(position.count)
        for case let r? in slots {
            position[r.key] = kept.count
            kept.append(r)
        }
        slots = kept
    }

    /// The records in written order.
    var elements: [(key: Key, value: Value)] { slots.compactMap { $0 } }
}
