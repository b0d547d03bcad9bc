import EfiTypes
import MmWire

/// The SMM variable protocol handler (edk2 VariableSmm.c `SmmVariableHandler`): checks a
/// message, runs the store function, and writes the answer in place.
///
/// Decisions, where edk2 leaves a status unwritten or does not check: ReturnStatus is always
/// written when the message has room for it, so a caller never reads back a stale status
/// (edk2's handler returns without a status for a too-short message). A structurally short
/// payload gets EFI_BAD_BUFFER_SIZE, as QEMU answers it (qemu/qemu hw/uefi/var-service-vars.c);
/// the edk2 "size overflow / unterminated name" class gets EFI_ACCESS_DENIED, as edk2 answers
/// it. An odd NameSize gets EFI_ACCESS_DENIED too: edk2 does not test it, but no UCS-2 name
/// has an odd size, so it is the same malformed-name class.
struct MmVariableHandler {
    let payloadLimit: Int

    /// Answers in `message` itself: the caller hands its private copy over.
    func handle(_ message: consuming [UInt8], store: inout VariableStore) -> [UInt8] {
        var m = message
        guard m.count >= SmmVariableHeader.size else { return m }
        let function = SmmVariableFunction(rawValue: m.loadLE(UInt64.self, at: SmmVariableHeader.functionOffset))
        let payloadSize = m.count - SmmVariableHeader.size
        let status: EfiStatus
        if payloadSize > payloadLimit {
            status = .badBufferSize
        } else {
            status = dispatch(function, &m, payloadSize, &store)
        }
        m.storeLE(status.rawValue, at: SmmVariableHeader.returnStatusOffset)
        return m
    }

    private func dispatch(_ f: SmmVariableFunction, _ m: inout [UInt8], _ payloadSize: Int, _ store: inout VariableStore) -> EfiStatus {
        let p = SmmVariableHeader.size
        switch f {
        case .getVariable: return getVariable(&m, p, payloadSize, store)
        case .getNextVariableName: return getNextVariableName(&m, p, payloadSize, store)
        case .setVariable: return setVariable(m, p, payloadSize, &store)
        case .queryVariableInfo:
            guard payloadSize >= QueryVariableInfoPayload.size else { return .badBufferSize }
            let attrs = m.loadLE(UInt32.self, at: p + QueryVariableInfoPayload.attributesOffset)
            switch store.queryVariableInfo(attrs) {
            case .success(let info):
                m.storeLE(info.maximumVariableStorageSize, at: p + QueryVariableInfoPayload.maximumVariableStorageSizeOffset)
                m.storeLE(info.remainingVariableStorageSize, at: p + QueryVariableInfoPayload.remainingVariableStorageSizeOffset)
                m.storeLE(info.maximumVariableSize, at: p + QueryVariableInfoPayload.maximumVariableSizeOffset)
                return .success
            case .failure(let e): return e.status
            }
        case .readyToBoot:
            if store.phase.atRuntime { return .unsupported }
            store.signalReadyToBoot()
            return .success
        case .exitBootService:
            store.signalExitBootServices()
            return .success
        case .lockVariable: return lockVariable(m, p, payloadSize, &store)
        case .varCheckVariablePropertySet, .varCheckVariablePropertyGet:
            return property(f, &m, p, payloadSize, &store)
        case .getPayloadSize:
            guard payloadSize >= GetPayloadSizePayload.size else { return .badBufferSize }
            m.storeLE(UInt64(payloadLimit), at: p)
            return .success
        default:
            // GET_STATISTICS (statistics off), the runtime-cache functions, unknown ones.
            return .unsupported
        }
    }

    /// Decodes the name area of an access-style payload: NameSize >= 2, even, inside the
    /// payload, and NUL-terminated at NameSize.
    private func name(_ m: [UInt8], at offset: Int, size: UInt64, limit: Int) -> [UInt16]? {
        guard size >= 2, size % 2 == 0, size <= UInt64(limit - offset) else { return nil }
        let n = Int(size)
        guard m[offset + n - 2] == 0, m[offset + n - 1] == 0 else { return nil }
        return Ucs2.readNulTerminated(m, offset: offset, byteCount: n)
    }

    private func accessHeader(_ m: [UInt8], _ p: Int, _ payloadSize: Int) -> (guid: EfiGuid, dataSize: Int, nameSize: Int, name: [UInt16])? {
        let dataSize = m.loadLE(UInt64.self, at: p + AccessVariablePayload.dataSizeOffset)
        let nameSize = m.loadLE(UInt64.self, at: p + AccessVariablePayload.nameSizeOffset)
        let fixed = UInt64(AccessVariablePayload.nameOffset)
        let (s1, o1) = fixed.addingReportingOverflow(dataSize)
        let (total, o2) = s1.addingReportingOverflow(nameSize)
        guard !o1, !o2, total <= UInt64(payloadSize) else { return nil }
        guard let n = name(m, at: p + AccessVariablePayload.nameOffset, size: nameSize, limit: p + payloadSize) else { return nil }
        return (EfiGuid(bytes: m, at: p), Int(dataSize), Int(nameSize), n)
    }

    private func getVariable(_ m: inout [UInt8], _ p: Int, _ payloadSize: Int, _ store: VariableStore) -> EfiStatus {
        guard payloadSize >= AccessVariablePayload.nameOffset else { return .badBufferSize }
        guard let h = accessHeader(m, p, payloadSize) else { return .accessDenied }
        let key = VariableKey(guid: h.guid, name: h.name)
        switch store.getVariable(key, capacity: h.dataSize) {
        case .found(let attrs, let data):
            m.replace(at: p + AccessVariablePayload.nameOffset + h.nameSize, with: data)
            m.storeLE(UInt64(data.count), at: p + AccessVariablePayload.dataSizeOffset)
            m.storeLE(attrs.rawValue, at: p + AccessVariablePayload.attributesOffset)
            return .success
        case .bufferTooSmall(let attrs, let size):
            m.storeLE(UInt64(size), at: p + AccessVariablePayload.dataSizeOffset)
            m.storeLE(attrs.rawValue, at: p + AccessVariablePayload.attributesOffset)
            return .bufferTooSmall
        case .error(let s):
            return s
        }
    }

    private func getNextVariableName(_ m: inout [UInt8], _ p: Int, _ payloadSize: Int, _ store: VariableStore) -> EfiStatus {
        let nameOffset = GetNextVariableNamePayload.nameOffset
        guard payloadSize >= nameOffset else { return .badBufferSize }
        let nameSize = m.loadLE(UInt64.self, at: p + GetNextVariableNamePayload.nameSizeOffset)
        let (info, overflow) = UInt64(nameOffset).addingReportingOverflow(nameSize)
        guard !overflow, info <= UInt64(payloadSize) else { return .accessDenied }
        // edk2 checks the NUL at the end of the whole name area, then the store checks
        // that the string ends within NameSize.
        let area = payloadSize - nameOffset
        guard area >= 2, m[p + nameOffset + (area & ~1) - 2] == 0, m[p + nameOffset + (area & ~1) - 1] == 0 else { return .accessDenied }
        guard let previous = Ucs2.readNulTerminated(m, offset: p + nameOffset, byteCount: Int(nameSize)) else { return .invalidParameter }
        let key = VariableKey(guid: EfiGuid(bytes: m, at: p), name: previous)
        switch store.getNextVariableName(after: key, capacity: Int(nameSize)) {
        case .next(let next):
            let bytes = Ucs2.nulTerminatedBytes(next.name)
            m.replace(at: p + nameOffset, with: bytes)
            m.store(next.guid, at: p + GetNextVariableNamePayload.guidOffset)
            m.storeLE(UInt64(bytes.count), at: p + GetNextVariableNamePayload.nameSizeOffset)
            return .success
        case .bufferTooSmall(let needed):
            m.storeLE(UInt64(needed), at: p + GetNextVariableNamePayload.nameSizeOffset)
            return .bufferTooSmall
        case .error(let s):
            return s
        }
    }

    private func setVariable(_ m: [UInt8], _ p: Int, _ payloadSize: Int, _ store: inout VariableStore) -> EfiStatus {
        guard payloadSize >= AccessVariablePayload.nameOffset else { return .badBufferSize }
        guard let h = accessHeader(m, p, payloadSize) else { return .accessDenied }
        let attrs = m.loadLE(UInt32.self, at: p + AccessVariablePayload.attributesOffset)
        let start = p + AccessVariablePayload.nameOffset + h.nameSize
        let data = Array(m[start..<(start + h.dataSize)])
        return store.setVariable(VariableKey(guid: h.guid, name: h.name), attributes: attrs, data: data)
    }

    /// LOCK_VARIABLE (the deprecated VariableLock protocol, VariableLockRequestToLock.c):
    /// refused after EndOfDxe; otherwise a LOCK_NOW policy for exactly this name, which
    /// takes effect at EndOfDxe. Registering the same lock twice succeeds only if the
    /// existing policy already write-protects the variable.
    private func lockVariable(_ m: [UInt8], _ p: Int, _ payloadSize: Int, _ store: inout VariableStore) -> EfiStatus {
        guard payloadSize >= GetNextVariableNamePayload.nameOffset else { return .badBufferSize }
        let nameSize = m.loadLE(UInt64.self, at: p + GetNextVariableNamePayload.nameSizeOffset)
        guard let n = name(m, at: p + GetNextVariableNamePayload.nameOffset, size: nameSize, limit: p + payloadSize) else { return .accessDenied }
        if store.phase.endOfDxe { return .accessDenied }
        let guid = EfiGuid(bytes: m, at: p)
        var lock = VariablePolicy(namespace: guid, name: n, lockType: .lockNow)
        lock.maxSize = VariablePolicyEntryLayout.noMaxSize
        let status = store.policy.register(lock)
        if status == .alreadyStarted {
            let existing = store.policy.bestMatch(name: n, guid: guid)
            return existing?.lockType == .lockNow ? .success : .accessDenied
        }
        return status
    }

    private func property(_ f: SmmVariableFunction, _ m: inout [UInt8], _ p: Int, _ payloadSize: Int, _ store: inout VariableStore) -> EfiStatus {
        let nameOffset = VarCheckPropertyPayload.nameOffset
        guard payloadSize >= nameOffset else { return .badBufferSize }
        let nameSize = m.loadLE(UInt64.self, at: p + VarCheckPropertyPayload.nameSizeOffset)
        guard let n = name(m, at: p + nameOffset, size: nameSize, limit: p + payloadSize) else { return .accessDenied }
        let key = VariableKey(guid: EfiGuid(bytes: m, at: p), name: n)
        if f == .varCheckVariablePropertySet {
            return store.setVariableProperty(key, VariableProperty(decoding: m, at: p + VarCheckPropertyPayload.propertyOffset))
        }
        guard let prop = store.variableProperty(key) else { return .notFound }
        prop.store(into: &m, at: p + VarCheckPropertyPayload.propertyOffset)
        return .success
    }
}
