import EfiTypes
import MmWire

/// The UEFI variable store with edk2's semantics (MdeModulePkg Variable.c, VariableParsing.c)
/// and edk2's space accounting. A value type: `VariableService` owns it behind a lock.
///
/// Order for GetNextVariableName: all volatile variables, then all non-volatile ones, each
/// in insertion order, an update moving the variable to the end of its store as edk2's
/// append-then-delete does. This is a decision: UEFI asks only that each variable be
/// returned once, and edk2 walks its volatile store, then its HOB store, then its NV store
/// in record order (VariableParsing.c `VariableServiceGetNextVariableInternal`); this store
/// has no HOB store, so the same walk without it is edk2's order.
public struct VariableStore: Sendable {
    public var limits: StoreLimits
    public internal(set) var phase = BootPhase()
    var volatile = OrderedRecords<VariableKey, StoredVariable>()
    var nonVolatile = OrderedRecords<VariableKey, StoredVariable>()
    /// Bytes of records, by edk2's accounting.
    public internal(set) var volatileUsed = 0
    public internal(set) var nonVolatileUsed = 0
    public internal(set) var hwErrUsed = 0
    /// VarCheck properties registered for exact names.
    var properties: [VariableKey: VariableProperty] = [:]
    /// The cached LangCodes / PlatformLangCodes (`mVariableModuleGlobal`).
    var langCodes: [UInt8]?
    var platformLangCodes: [UInt8]?
    /// Secure Boot behaviour switches.
    public var secureBoot = SecureBootConfiguration()
    /// The open transaction: every variable changed since `beginTransaction`, with its
    /// value before (nil when none is open).
    var transaction: StoreTransaction?
    /// Variable policies (VariablePolicyLib).
    public internal(set) var policy = VariablePolicyEngine()

    public init(limits: StoreLimits = StoreLimits()) { self.limits = limits }

    public var count: Int { volatile.count + nonVolatile.count }

    // MARK: lookup

    /// The variable regardless of runtime visibility.
    public func find(_ key: VariableKey) -> StoredVariable? {
        volatile[key] ?? nonVolatile[key]
    }

    func isVisible(_ v: StoredVariable) -> Bool {
        !phase.atRuntime || v.attributes.contains(.runtimeAccess)
    }

    // MARK: GetVariable

    /// GetVariable (Variable.c `VariableServiceGetVariable`).
    public func getVariable(_ key: VariableKey, capacity: Int) -> GetVariableResult {
        guard !key.name.isEmpty else { return .error(.notFound) }
        guard let v = find(key), isVisible(v) else { return .error(.notFound) }
        if capacity >= v.data.count { return .found(attributes: v.attributes, data: v.data) }
        return .bufferTooSmall(attributes: v.attributes, size: v.data.count)
    }

    // MARK: GetNextVariableName

    /// GetNextVariableName (`VariableServiceGetNextVariableInternal`). `capacity` is the
    /// caller's name buffer in bytes.
    public func getNextVariableName(after key: VariableKey, capacity: Int) -> GetNextVariableNameResult {
        var candidate: VariableKey?
        if key.name.isEmpty {
            candidate = firstVisible(inVolatile: true, from: 0)
        } else if let i = volatile.slot(of: key) {
            guard isVisible(volatile.value(at: i)) else { return .error(.invalidParameter) }
            candidate = firstVisible(inVolatile: true, from: i + 1)
        } else if let i = nonVolatile.slot(of: key) {
            guard isVisible(nonVolatile.value(at: i)) else { return .error(.invalidParameter) }
            candidate = firstVisible(inVolatile: false, from: i + 1)
        } else {
            return .error(.invalidParameter)
        }
        guard let next = candidate else { return .error(.notFound) }
        if capacity < next.nameSize { return .bufferTooSmall(needed: next.nameSize) }
        return .next(next)
    }

    private func firstVisible(inVolatile: Bool, from start: Int) -> VariableKey? {
        if inVolatile {
            return volatile.first(from: start, where: isVisible) ?? firstVisible(inVolatile: false, from: 0)
        }
        return nonVolatile.first(from: start, where: isVisible)
    }

    /// Every variable visible now, in GetNextVariableName order.
    public var visibleKeys: [VariableKey] {
        (volatile.elements.filter { isVisible($0.value) }.map(\.key)) + (nonVolatile.elements.filter { isVisible($0.value) }.map(\.key))
    }

    // MARK: QueryVariableInfo

    /// QueryVariableInfo (`VariableServiceQueryVariableInfo` and `…Internal`).
    public func queryVariableInfo(_ raw: UInt32) -> Result<VariableStorageInfo, EfiStatusError> {
        let a = VariableAttributes(rawValue: raw)
        if raw == 0 { return .failure(.invalidParameter) }
        if a.contains(.authenticatedWriteAccess) { return .failure(.unsupported) }
        let masked = raw & VariableAttributes.edk2Mask.rawValue
        if masked == 0 { return .failure(.unsupported) }
        if masked == VariableAttributes.nonVolatile.rawValue { return .failure(.invalidParameter) }
        if a.contains(.runtimeAccess) && !a.contains(.bootserviceAccess) { return .failure(.invalidParameter) }
        if phase.atRuntime && !a.contains(.runtimeAccess) { return .failure(.invalidParameter) }
        if a.contains(.hardwareErrorRecord) && !a.contains(.nonVolatile) { return .failure(.invalidParameter) }
        if a.contains(.timeBasedAuthenticatedWriteAccess) {
            if !secureBoot.authSupport { return .failure(.unsupported) }
        } else if a.contains(.hardwareErrorRecord) && limits.hwErrStorageSize == 0 {
            return .failure(.unsupported)
        }

        let h = StoreLimits.variableHeaderSize
        var maxStorage: Int
        var maxVariable: Int
        let used: Int
        if a.contains(.hardwareErrorRecord) {
            maxStorage = limits.hwErrStorageSize
            maxVariable = limits.maxHardwareErrorVariableSize - h
            used = hwErrUsed
        } else if a.contains(.nonVolatile) {
            maxStorage = commonVariableSpace
            maxVariable = (a.contains(.timeBasedAuthenticatedWriteAccess) ? limits.maxAuthVariableSize : limits.maxVariableSize) - h
            used = nonVolatileUsed
        } else {
            maxStorage = limits.volatileStoreSize - StoreLimits.storeHeaderSize
            maxVariable = effectiveMaxVolatile - h
            used = volatileUsed
        }
        let remaining = max(0, maxStorage - used)
        if remaining < h { maxVariable = 0 } else { maxVariable = min(maxVariable, remaining - h) }
        return .success(VariableStorageInfo(maximumVariableStorageSize: UInt64(maxStorage),
                                     remainingVariableStorageSize: UInt64(remaining),
                                     maximumVariableSize: UInt64(maxVariable)))
    }

    /// CommonVariableSpace = NV store Size - 28 - PcdHwErrStorageSize.
    public var commonVariableSpace: Int { limits.nvStoreSize - StoreLimits.storeHeaderSize - limits.hwErrStorageSize }
    var effectiveMaxVolatile: Int { limits.maxVolatileVariableSize == 0 ? limits.maxVariableSize : limits.maxVolatileVariableSize }

    // MARK: boot phases

    /// EndOfDxe: VarCheck enforcement starts and the MM variable driver locks the policy
    /// interface (VariableSmm.c `SmmEndOfDxeCallback`).
    public mutating func signalEndOfDxe() {
        phase.endOfDxe = true
        policy.locked = true
    }
    public mutating func signalReadyToBoot() {
        if !phase.endOfDxe { signalEndOfDxe() }
        phase.readyToBoot = true
    }
    public mutating func signalExitBootServices() { phase.atRuntime = true }

    // MARK: raw record maintenance (accounting kept in one place)

    /// Starts recording changes, so that one request's effect can be listed and undone.
    public mutating func beginTransaction() {
        transaction = StoreTransaction()
    }

    /// Ends the transaction: what it changed (to persist, or to undo later).
    public mutating func endTransaction() -> StoreTransaction {
        defer { transaction = nil }
        return transaction ?? StoreTransaction()
    }

    /// Puts every variable `t` changed back as it was before, newest change last undone
    /// first. Nothing else may have changed those variables since, unless undone first.
    public mutating func undo(_ t: StoreTransaction) {
        let open = transaction
        transaction = nil
        for key in t.order.reversed() {
            if let old = t.before[key] ?? nil { putRecord(key, old) } else { removeRecord(key) }
        }
        transaction = open
    }

    /// The non-volatile changes `t` made, in order: each changed key with its new value,
    /// or nil where it was deleted.
    public func nonVolatileChanges(_ t: StoreTransaction) -> [VariableChange] {
        t.order.compactMap { key in
            if let a = find(key), a.attributes.contains(.nonVolatile) { return VariableChange(key: key, value: a) }
            if let b = t.before[key] ?? nil, b.attributes.contains(.nonVolatile) { return VariableChange(key: key, value: nil) }
            return nil
        }
    }

    private mutating func noteChange(_ key: VariableKey) {
        guard transaction != nil else { return }
        let old = find(key)
        transaction!.note(key, before: old)
    }

    /// The non-volatile variables in GetNextVariableName order (what a checkpoint holds).
    public var nonVolatileVariables: [(VariableKey, StoredVariable)] { nonVolatile.elements.map { ($0.key, $0.value) } }

    mutating func removeRecord(_ key: VariableKey) {
        noteChange(key)
        if let old = volatile.removeValue(forKey: key) {
            volatileUsed -= StoreLimits.recordSize(nameSize: key.nameSize, dataSize: old.data.count)
        } else if let old = nonVolatile.removeValue(forKey: key) {
            let size = StoreLimits.recordSize(nameSize: key.nameSize, dataSize: old.data.count)
            if old.attributes.contains(.hardwareErrorRecord) { hwErrUsed -= size } else { nonVolatileUsed -= size }
        }
    }

    /// Appends (or moves to the end) a record, as edk2's append-then-delete does.
    mutating func putRecord(_ key: VariableKey, _ v: StoredVariable) {
        noteChange(key)
        removeRecord(key)
        let size = StoreLimits.recordSize(nameSize: key.nameSize, dataSize: v.data.count)
        if v.attributes.contains(.nonVolatile) {
            nonVolatile.append(key, v)
            if v.attributes.contains(.hardwareErrorRecord) { hwErrUsed += size } else { nonVolatileUsed += size }
        } else {
            volatile.append(key, v)
            volatileUsed += size
        }
    }

    /// Loads saved records as they are, the way an offline editor places them (no checks,
    /// no timestamps changed): the store file, a VM's variable file or a fuzz target's seed.
    public mutating func restore(_ variables: some Sequence<ExportedVariable>) {
        for v in variables { putRecord(v.key, v.value) }
    }

    /// Every variable, volatile first (for export and tests).
    public var allVariables: [(VariableKey, StoredVariable)] {
        (volatile.elements + nonVolatile.elements).map { ($0.key, $0.value) }
    }
}

