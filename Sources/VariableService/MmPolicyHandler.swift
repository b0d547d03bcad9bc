import EfiTypes
import MmWire

/// The variable policy MMI handler (edk2 VarCheckPolicyLib.c `VarCheckPolicyLibMmiHandler`).
struct MmPolicyHandler {
    /// Returns nil when the message is ignored without an answer (too short or too long).
    func handle(_ message: [UInt8], store: inout VariableStore) -> [UInt8]? {
        guard message.count >= VarCheckPolicyHeader.size,
              message.count <= VarCheckPolicyHeader.commBufferSize - MmCommunicateHeader.size else { return nil }
        var m = message
        let status: EfiStatus
        if m.loadLE(UInt32.self, at: 0) != VarCheckPolicyHeader.signature || m.loadLE(UInt32.self, at: 4) != VarCheckPolicyHeader.revision {
            status = .invalidParameter
        } else {
            let command = VarCheckPolicyCommand(rawValue: m.loadLE(UInt32.self, at: VarCheckPolicyHeader.commandOffset))
            if command != .dump { store.policy.dumpSnapshot = nil }  // any other command drops the snapshot
            status = run(command, &m, &store)
        }
        m.storeLE(status.rawValue, at: VarCheckPolicyHeader.resultOffset)
        return m
    }

    private func run(_ command: VarCheckPolicyCommand, _ m: inout [UInt8], _ store: inout VariableStore) -> EfiStatus {
        let p = VarCheckPolicyHeader.size
        switch command {
        case .disable:
            // PcdAllowVariablePolicyEnforcementDisable is FALSE in OVMF: never allowed.
            return store.policy.disabled ? .alreadyStarted : .writeProtected
        case .isEnabled:
            guard m.count >= p + 1 else { return .invalidParameter }
            m[p] = store.policy.disabled ? 0 : 1
            return .success
        case .register:
            guard m.count >= p + VariablePolicyEntryLayout.fixedSize else { return .invalidParameter }
            let size = Int(m.loadLE(UInt16.self, at: p + 4))
            guard m.loadLE(UInt32.self, at: p) == VariablePolicyEntryLayout.revision, size >= VariablePolicyEntryLayout.fixedSize,
                  p + size <= m.count, let entry = VariablePolicy(decoding: Array(m[p..<(p + size)])) else {
                return .invalidParameter
            }
            return store.policy.register(entry)
        case .lock:
            if store.policy.locked { return .writeProtected }
            store.policy.locked = true
            return .success
        case .dump:
            return dump(&m, &store)
        case .getInfo, .getLockVarStateInfo:
            return getInfo(command, &m, store)
        default:
            return .unsupported
        }
    }

    /// Paged DUMP: page 0 takes a snapshot and reports its size; pages 1... copy it out.
    private func dump(_ m: inout [UInt8], _ store: inout VariableStore) -> EfiStatus {
        let p = VarCheckPolicyHeader.size
        let pageSize = PolicyDumpParams.pageSize
        guard m.count >= p + PolicyDumpParams.size + pageSize else { return .invalidParameter }
        let requested = Int(m.loadLE(UInt32.self, at: p))
        if requested == 0 {
            let snap = store.policy.dumpBytes
            store.policy.dumpSnapshot = snap
            m.storeLE(UInt32(snap.count), at: p + 4)
            m.storeLE(UInt32(0), at: p + 8)
            m[p + 12] = snap.isEmpty ? 0 : 1
            return .success
        }
        guard let snap = store.policy.dumpSnapshot else { return .timeout }
        // edk2's page count; an exact multiple of the page size yields an empty last page,
        // which we reproduce.
        let pages = snap.count / pageSize + 1
        guard requested <= pages else { return .invalidParameter }
        let start = (requested - 1) * pageSize
        let chunk = Array(snap[min(start, snap.count)..<min(start + pageSize, snap.count)])
        m.replace(at: p + PolicyDumpParams.size, with: chunk)
        m.storeLE(UInt32(snap.count), at: p + 4)
        m.storeLE(UInt32(chunk.count), at: p + 8)
        m[p + 12] = requested < pages ? 1 : 0
        if requested >= pages { store.policy.dumpSnapshot = nil }
        return .success
    }

    /// GET_INFO / GET_LOCK_VAR_STATE_INFO (protocol revision 0x20000).
    private func getInfo(_ command: VarCheckPolicyCommand, _ m: inout [UInt8], _ store: VariableStore) -> EfiStatus {
        let p = VarCheckPolicyHeader.size
        let nameArea = VarCheckPolicyHeader.commBufferSize - (MmCommunicateHeader.size + p + 68)
        guard m.count >= p + 68 + nameArea else { return .invalidParameter }
        let guid = EfiGuid(bytes: m, at: p)
        let inNameSize = Int(m.loadLE(UInt32.self, at: p + 16))
        guard inNameSize >= 2, inNameSize <= nameArea,
              let name = Ucs2.readNulTerminated(m, offset: p + 68, byteCount: inNameSize) else { return .invalidParameter }
        guard let policy = store.policy.bestMatch(name: name, guid: guid) else { return .notFound }
        if command == .getLockVarStateInfo && policy.lockType != .lockOnVarState { return .notFound }
        let encoded = policy.encoded
        var out = [UInt8](zeroed: 44)
        let (outName, outEntry): ([UInt16]?, [UInt8])
        if command == .getInfo {
            outEntry = Array(encoded[0..<44]); outName = policy.name
        } else {
            outEntry = Array(encoded[44..<(44 + 18)]); outName = policy.stateName
        }
        out.replace(at: 0, with: outEntry)
        m.replace(at: p + 24, with: out)
        let nameBytes = outName.map { Ucs2.nulTerminatedBytes($0) } ?? []
        m.storeLE(UInt32(nameBytes.count), at: p + 20)
        guard inNameSize + nameBytes.count <= nameArea else { return .bufferTooSmall }
        m.replace(at: p + 68 + inNameSize, with: nameBytes)
        return .success
    }
}
