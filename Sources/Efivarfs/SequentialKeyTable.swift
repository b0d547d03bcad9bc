/// A table keyed by numbers this filesystem hands out itself, in increasing order: inode
/// numbers and file handles. A key's slot is its low bits (linear probing), so keys handed
/// out one after another land in slots one after another and a lookup touches one slot.
/// `Dictionary` hashed each key with SipHash first; the tables are consulted on every
/// GETATTR, OPEN, READ, WRITE and RELEASE. The keys are never chosen by a user, so the
/// unhashed slot cannot be steered into collisions.
///
/// Deletion shifts later entries of the same run back (no tombstones), so lookups stay
/// short however many keys come and go.
struct SequentialKeyTable<Value> {
    /// 0 marks an empty slot: keys start at 1.
    private var keys: [UInt64]
    private var values: [Value?]
    private(set) var count = 0

    init() {
        keys = [UInt64](repeating: 0, count: 16)
        values = [Value?](repeating: nil, count: 16)
    }

    private var mask: Int { keys.count - 1 }

    /// The slot holding `key`, or the empty slot where it would go.
    private func slot(_ key: UInt64) -> Int {
        var i = Int(truncatingIfNeeded: key) & mask
        while keys[i] != 0 && keys[i] != key { i = (i + 1) & mask }
        return i
    }

    subscript(key: UInt64) -> Value? {
        get {
            precondition(key != 0, "keys start at 1")
            let i = slot(key)
            return keys[i] == key ? values[i] : nil
        }
        set {
            guard let v = newValue else { removeValue(forKey: key); return }
            precondition(key != 0, "keys start at 1")
            var i = slot(key)
            if keys[i] != key {
                // Grow at half full: runs stay short.
                if (count + 1) * 2 > keys.count { grow(); i = slot(key) }
                keys[i] = key
                count += 1
            }
            values[i] = v
        }
    }

    @discardableResult
    mutating func removeValue(forKey key: UInt64) -> Value? {
        guard key != 0 else { return nil }
        var i = slot(key)
        guard keys[i] == key else { return nil }
        let old = values[i]
        count -= 1
        // Backward shift: move each later entry of the run whose home slot is not between
        // the hole and itself into the hole.
        var j = i
        while true {
            j = (j + 1) & mask
            if keys[j] == 0 { break }
            let home = Int(truncatingIfNeeded: keys[j]) & mask
            let stays = i <= j ? (i < home && home <= j) : (i < home || home <= j)
            if !stays {
                keys[i] = keys[j]
                values[i] = values[j]
                i = j
            }
        }
        keys[i] = 0
        values[i] = nil
        return old
    }

    private mutating func grow() {
        let oldKeys = keys, oldValues = values
        keys = [UInt64](repeating: 0, count: oldKeys.count * 2)
        values = [Value?](repeating: nil, count: oldKeys.count * 2)
        for (k, v) in zip(oldKeys, oldValues) where k != 0 {
            let i = slot(k)
            keys[i] = k
            values[i] = v
        }
    }

    /// Every (key, value), in slot order.
    var entries: [(key: UInt64, value: Value)] {
        zip(keys, values).compactMap { k, v in k == 0 ? nil : (k, v!) }
    }
}
