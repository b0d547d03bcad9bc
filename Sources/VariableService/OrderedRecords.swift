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
    /// Written order: each slot's key, and its value or nil where the record was removed.
    /// Two arrays rather than one of optional (key, value) pairs: reading a value out of a
    /// pair copied and destroyed the whole pair through the tuple's value witnesses, a
    /// measurable part of every GetVariable in a profile.
    private var keys: [Key] = []
    private var values: [Value?] = []
    /// Where each live key sits in `keys` and `values`.
    private var position: [Key: Int] = [:]

    var count: Int { position.count }

    subscript(key: Key) -> Value? {
        guard let i = position[key] else { return nil }
        return values[i]
    }

    /// The slot of `key`: a position that `first(from:where:)` walks on from.
    func slot(of key: Key) -> Int? { position[key] }

    /// The value in a live slot.
    func value(at slot: Int) -> Value { values[slot]! }

    /// The first live record at or after `slot` whose value passes `test`.
    func first(from slot: Int, where test: (Value) -> Bool) -> Key? {
        var i = slot
        while i < values.count {
            if let v = values[i], test(v) { return keys[i] }
            i += 1
        }
        return nil
    }

    /// Appends `value` for a key that is not present (callers remove first: an update
    /// moves to the end).
    mutating func append(_ key: Key, _ value: Value) {
        precondition(position[key] == nil, "OrderedRecords.append: key already present")
        position[key] = keys.count
        keys.append(key)
        values.append(value)
    }

    @discardableResult
    mutating func removeValue(forKey key: Key) -> Value? {
        guard let i = position.removeValue(forKey: key) else { return nil }
        let old = values[i].take()
        if values.count > 32 && values.count > 2 * position.count { squeeze() }
        return old
    }

    /// Drops the gaps, keeping the order of the records.
    private mutating func squeeze() {
        var keptKeys: [Key] = []
        var keptValues: [Value?] = []
        keptKeys.reserveCapacity(position.count)
        keptValues.reserveCapacity(position.count)
        for i in values.indices where values[i] != nil {
            position[keys[i]] = keptKeys.count
            keptKeys.append(keys[i])
            keptValues.append(values[i])
        }
        keys = keptKeys
        values = keptValues
    }

    /// The records in written order.
    var elements: [(key: Key, value: Value)] { values.indices.compactMap { i in values[i].map { (keys[i], $0) } } }
}
