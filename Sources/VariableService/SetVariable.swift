import EfiTypes
import MmWire

/// SetVariable: edk2's validation pipeline in edk2's order (tianocore/edk2
/// MdeModulePkg/Universal/Variable/RuntimeDxe/Variable.c `VariableServiceSetVariable`, then
/// `UpdateVariable`).
extension VariableStore {
    /// The EFI_VARIABLE_AUTHENTICATION_2 descriptor at the start of AT data.
    struct AuthenticationDescriptor {
        /// OFFSET_OF_AUTHINFO2_CERT_DATA: EFI_TIME (16) + WIN_CERTIFICATE_UEFI_GUID header (24).
        static let certDataOffset = 40
        let timestamp: EfiTime
        /// dwLength: WIN_CERTIFICATE header + CertType + CertData.
        let certificateLength: Int
        var totalLength: Int { 16 + certificateLength }
    }

    /// A SetVariable request from the MM buffer (every such request is "untrusted" for
    /// VarCheckLib).
    public mutating func setVariable(_ key: VariableKey, attributes raw: UInt32, data: [UInt8]) -> EfiStatus {
        let attrs = VariableAttributes(rawValue: raw)
        let aw = attrs.contains(.authenticatedWriteAccess)
        let at = attrs.contains(.timeBasedAuthenticatedWriteAccess)
        // 1. Name empty.
        guard !key.name.isEmpty else { return .invalidParameter }
        // 2. Reserved attribute bits.
        if raw & ~(VariableAttributes.edk2Mask.rawValue | VariableAttributes.authenticatedWriteAccess.rawValue) != 0 {
            return .invalidParameter
        }
        // 3. RT without BS; 4. NV alone.
        if attrs.intersection([.runtimeAccess, .bootserviceAccess]) == .runtimeAccess {
            return aw ? .unsupported : .invalidParameter
        }
        if raw & VariableAttributes.edk2Mask.rawValue == VariableAttributes.nonVolatile.rawValue {
            return aw ? .unsupported : .invalidParameter
        }
        // 5. Authenticated writes need AuthVariableLib; otherwise HR needs a hardware-error
        // store (one else-if chain in edk2).
        if at || aw {
            if !secureBoot.authSupport { return .invalidParameter }
        } else if attrs.contains(.hardwareErrorRecord) && limits.hwErrStorageSize == 0 {
            return .invalidParameter
        }
        // 6./7. Counter-based authentication is not supported (edk2 PR #4045).
        if aw { return .unsupported }
        var payload = data
        var descriptor: AuthenticationDescriptor?
        if at {
            guard data.count >= AuthenticationDescriptor.certDataOffset else { return .securityViolation }
            let dwLength = Int(data.loadLE(UInt32.self, at: 16))
            guard dwLength <= data.count - 16, dwLength >= 24 else { return .securityViolation }
            let d = AuthenticationDescriptor(timestamp: EfiTime(bytes: Array(data[0..<16])), certificateLength: dwLength)
            descriptor = d
            payload = Array(data[d.totalLength...])
        }
        // 8. Size limits on name + payload.
        let h = StoreLimits.variableHeaderSize
        let nameAndPayload = key.nameSize + payload.count
        let limit: Int
        if attrs.contains(.hardwareErrorRecord) { limit = limits.maxHardwareErrorVariableSize }
        else if at { limit = limits.maxAuthVariableSize }
        else if attrs.contains(.nonVolatile) { limit = limits.maxVariableSize }
        else { limit = effectiveMaxVolatile }
        if nameAndPayload > limit - h { return .invalidParameter }
        // 10. VarCheckLib: properties, UEFI-defined variables (after EndOfDxe only).
        if phase.endOfDxe {
            let status = varCheck(key, attributes: attrs, payload: payload)
            if status != .success { return status }
        }
        // 11. An existing variable: runtime protection and attribute mismatch.
        let existing = find(key)
        if let e = existing {
            if phase.atRuntime && !e.attributes.contains(.runtimeAccess) { return .writeProtected }
            if raw != 0 && attrs.subtracting(.appendWrite) != e.attributes { return .invalidParameter }
        }
        // 12. Lang / PlatformLang coupling.
        if let status = autoUpdateLangVariables(key, attributes: attrs, data: payload) { return status }
        // 13. Authenticated-variable processing (AuthVariableLibProcessVariable).
        if let status = processAuthentication(key, attributes: attrs, data: data, descriptor: descriptor, existing: existing) {
            return status
        }
        return updateVariable(key, attributes: attrs, payload: payload, timestamp: descriptor?.timestamp, existing: existing)
    }

    /// `UpdateVariable`: create, replace, append, delete, with the space check.
    mutating func updateVariable(_ key: VariableKey, attributes attrs: VariableAttributes, payload: [UInt8],
                                 timestamp: EfiTime?, existing: StoredVariable?) -> EfiStatus {
        let append = attrs.contains(.appendWrite)
        let h = StoreLimits.variableHeaderSize
        if let e = existing {
            if phase.atRuntime {
                if !e.attributes.contains(.nonVolatile) { return .writeProtected }
                if !e.attributes.contains(.runtimeAccess) { return .invalidParameter }
            }
            if (payload.isEmpty && !append) || attrs.intersection([.bootserviceAccess, .runtimeAccess]).isEmpty {
                removeRecord(key)
                return .success
            }
            if !append && timestamp == nil && e.data == payload { return .success }
            var newData = payload
            var newTime = timestamp ?? e.timestamp
            if append {
                if payload.isEmpty { return .success }
                let limit = e.attributes.contains(.hardwareErrorRecord) ? limits.maxHardwareErrorVariableSize
                    : e.attributes.contains(.timeBasedAuthenticatedWriteAccess) ? limits.maxAuthVariableSize
                    : e.attributes.contains(.nonVolatile) ? limits.maxVariableSize : effectiveMaxVolatile
                if e.data.count + payload.count > limit - (h + key.nameSize) { return .invalidParameter }
                newData = e.data + payload
                if let old = e.timestamp, let new = timestamp { newTime = max(old, new) }
            }
            let v = StoredVariable(attributes: e.attributes, data: newData, timestamp: newTime)
            guard hasSpace(for: key, v, replacing: e) else { return .outOfResources }
            putRecord(key, v)
            return .success
        }
        if append && payload.isEmpty { return .success }
        if payload.isEmpty || attrs.intersection([.bootserviceAccess, .runtimeAccess]).isEmpty { return .notFound }
        if phase.atRuntime && !(attrs.contains(.runtimeAccess) && attrs.contains(.nonVolatile)) { return .invalidParameter }
        let v = StoredVariable(attributes: attrs.subtracting(.appendWrite), data: payload, timestamp: timestamp)
        guard hasSpace(for: key, v, replacing: nil) else { return .outOfResources }
        putRecord(key, v)
        return .success
    }

    /// Only live records count, at boot time and at runtime alike. This is a decision: edk2
    /// counts every record at runtime, deleted ones included, because flash cannot be
    /// reclaimed then (Variable.c `VariableServiceQueryVariableInfoInternal`); a store without
    /// flash removes a record when it is deleted, so it has nothing to reclaim.
    func hasSpace(for key: VariableKey, _ v: StoredVariable, replacing old: StoredVariable?) -> Bool {
        let newSize = StoreLimits.recordSize(nameSize: key.nameSize, dataSize: v.data.count)
        let oldSize = old.map { StoreLimits.recordSize(nameSize: key.nameSize, dataSize: $0.data.count) } ?? 0
        if v.attributes.contains(.nonVolatile) {
            if v.attributes.contains(.hardwareErrorRecord) {
                return hwErrUsed - oldSize + newSize <= limits.hwErrStorageSize
            }
            return nonVolatileUsed - oldSize + newSize <= commonVariableSpace
        }
        return volatileUsed - oldSize + newSize <= limits.volatileStoreSize - StoreLimits.storeHeaderSize
    }

    /// A write by the firmware itself (AuthVariableLib updating SetupMode and friends):
    /// trusted, so VarCheck does not apply.
    public mutating func firmwareWrite(_ key: VariableKey, attributes: VariableAttributes, data: [UInt8]?) {
        if let d = data, !d.isEmpty { putRecord(key, StoredVariable(attributes: attributes, data: d)) } else { removeRecord(key) }
    }
}
