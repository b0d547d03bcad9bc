import EfiTypes
import VariableService

/// SET_VARIABLE (`uefi_vars_mm_set_variable`, `check_update`, `append_write`): sizes, name,
/// the new record built (authenticated data checked), then access, attributes, policy and
/// Secure Boot rules against the old one, APPEND as a signature-list merge, storage, commit.
extension UefiVarsStore {
    static let supportedAttributes: VariableAttributes = [.nonVolatile, .bootserviceAccess, .runtimeAccess, .hardwareErrorRecord,
                                                          .timeBasedAuthenticatedWriteAccess, .appendWrite]

    mutating func setVariable(_ b: inout MessageBuffer) -> Int {
        guard let r = accessRequest(&b, withData: true) else { return UefiVarsStore.header }
        let p = UefiVarsStore.header
        let raw = VariableAttributes(rawValue: b.u32(at: p + 32))
        let data = b.slice(p + UefiVarsStore.access + r.name.count, Int(r.dataSize))
        let old = list.find(r.key)
        var new: UefiVarRecord?
        if !data.isEmpty {
            // add_variable strips APPEND_WRITE from what is stored.
            var record = UefiVarRecord(key: r.key, name: r.name, value: StoredVariable(attributes: raw.subtracting(.appendWrite), data: []))
            if raw.contains(.authenticatedWriteAccess) {
                return error(&b, .unsupported)
            } else if raw.contains(.timeBasedAuthenticatedWriteAccess) {
                let request = AuthenticatedWrite(name: r.name, guid: r.key.guid, attributes: raw.rawValue, data: data)
                let status = checkAuthentication2(&record, request)
                guard status == .success else { return error(&b, status) }
                if let old {
                    if !raw.contains(.appendWrite), let was = old.value.timestamp, let now = record.value.timestamp,
                       UefiVarsAuth.compare(was, now) > 0 {
                        return error(&b, .securityViolation)
                    }
                    if old.value.digest != nil || record.value.digest != nil {
                        guard let a = old.value.digest, let c = record.value.digest, a == c else { return error(&b, .securityViolation) }
                    }
                }
            } else {
                record.value.data = data
            }
            // An authenticated write whose payload is empty is a delete.
            if !record.value.data.isEmpty { new = record }
        }
        guard old != nil || new != nil else {
            // Deleting a variable that does not exist: nothing to do.
            b.set(EfiStatus.success.rawValue, at: 8)
            return UefiVarsStore.header
        }
        let status = checkUpdate(old: old, new: new)
        guard status == .success else { return error(&b, status) }
        if raw.contains(.appendWrite), let old, var merged = new {
            guard UefiVarsAuth.isSecureBootDatabase(merged.key) else { return error(&b, .unsupported) }
            merged.value.data = UefiVarsSignatureLists(old.value.data, merged.value.data).encoded
            new = merged
        }
        var storage = list.usedStorage
        if let old { storage -= old.storageSize }
        if let new { storage += new.storageSize }
        guard storage <= configuration.maxStorage else { return error(&b, .outOfResources) }
        // Commit.
        if let new {
            if dialect.updateInPlace && old != nil { list.replaceInPlace(new) } else {
                list.remove(r.key)
                list.append(new)
            }
            if new.key == UefiVarsAuth.pk { afterPkWrite() }
        } else {
            list.remove(r.key)
        }
        b.set(EfiStatus.success.rawValue, at: 8)
        return UefiVarsStore.header
    }

    /// `check_update`.
    func checkUpdate(old: UefiVarRecord?, new: UefiVarRecord?) -> EfiStatus {
        if let old, !accessible(old.value.attributes) { return .accessDenied }
        if let new {
            if !new.value.attributes.subtracting(UefiVarsStore.supportedAttributes).isEmpty { return .unsupported }
            if !accessible(new.value.attributes) { return .accessDenied }
        }
        if let old, let new, old.value.attributes != new.value.attributes { return .invalidParameter }
        let checked = (new ?? old)!
        let policy = policyCheck(checked, isNew: old == nil)
        guard policy == .success else { return policy }
        return checkSecureBoot(checked)
    }
}
