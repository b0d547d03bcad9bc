import EfiTypes
import MmWire
import VariableService

/// The SMM variable protocol (`uefi_vars_mm_vars_proto`, hw/uefi/var-service-vars.c). Every
/// handler returns the reply length it computed (from the start of the message); the
/// status goes to the header's ReturnStatus field.
extension UefiVarsStore {
    /// sizeof(mm_variable): Function and ReturnStatus.
    static let header = 16
    /// sizeof(mm_variable_access) (packed): Guid, DataSize, NameSize, Attributes.
    static let access = 36
    /// sizeof(mm_next_variable) and sizeof(mm_lock_variable): Guid, NameSize.
    static let nameHeader = 24
    /// sizeof(mm_variable_info) (packed): three u64 and the attributes.
    static let info = 28

    /// Nil when the message is shorter than its header: UEFI_VARS_STS_ERR_BAD_BUFFER_SIZE,
    /// nothing written.
    mutating func variableProtocol(_ b: inout MessageBuffer) -> Int? {
        guard b.length >= UefiVarsStore.header else { return nil }
        let function = SmmVariableFunction(rawValue: b.u64(at: 0))
        var length: Int
        switch function {
        case .getVariable: length = getVariable(&b)
        case .getNextVariableName: length = getNextVariableName(&b)
        case .setVariable: length = setVariable(&b)
        case .queryVariableInfo: length = queryVariableInfo(&b)
        case .lockVariable: length = lockVariable(&b)
        case .getPayloadSize: length = getPayloadSize(&b)
        case .readyToBoot:
            readyToBoot = true
            b.set(EfiStatus.success.rawValue, at: 8)
            length = 0
        case .exitBootService:
            exitBootService = true
            b.set(EfiStatus.success.rawValue, at: 8)
            length = 0
        default:
            length = error(&b, .unsupported)
        }
        // A reply longer than MessageLength: BUFFER_TOO_SMALL, whatever the handler said.
        // virtfw has no such step: its reply is bounded by the request itself.
        if dialect.replyBound == .registeredBuffer, UInt64(b.length) < UInt64(length) {
            b.set(EfiStatus.bufferTooSmall.rawValue, at: 8)
        }
        return max(length, UefiVarsStore.header)
    }

    /// `uefi_vars_mm_error`: the status, and a reply of just the header.
    func error(_ b: inout MessageBuffer, _ status: EfiStatus) -> Int {
        b.set(status.rawValue, at: 8)
        return UefiVarsStore.header
    }

    /// `check_buffer_size`: what fits the buffer after the communicate header.
    func fitsBuffer(_ b: MessageBuffer, _ length: UInt64) -> Bool { UInt64(b.bytes.count) >= length }

    /// The name check of this dialect at `offset`, NameSize `size`.
    func nameIsValid(_ b: MessageBuffer, at offset: Int, size: UInt64) -> Bool {
        switch dialect.invalidNameStatus {
        case .badBufferSize: return UefiVarsName.virtfwCheck(b, at: offset, size: size) == .valid
        default: return UefiVarsName.qemuCheck(b, at: offset, len: size, mustBeTerminated: true) == .valid
        }
    }

    /// `check_access`: before ExitBootServices a variable needs BOOTSERVICE_ACCESS, after it
    /// RUNTIME_ACCESS.
    func accessible(_ a: VariableAttributes) -> Bool {
        exitBootService ? a.contains(.runtimeAccess) : a.contains(.bootserviceAccess)
    }

    /// The common start of GET and SET: sizes against `max_storage`, the name inside
    /// MessageLength, for SET the data too (before the name is checked, as QEMU orders it),
    /// then the name. Returns the name's raw bytes and key, or nil after writing the error.
    func accessRequest(_ b: inout MessageBuffer, withData: Bool) -> (name: [UInt8], key: VariableKey, dataSize: UInt64, length: UInt64)? {
        var length = UInt64(UefiVarsStore.header + UefiVarsStore.access)
        guard UInt64(b.length) >= length else { _ = error(&b, .badBufferSize); return nil }
        let p = UefiVarsStore.header
        let dataSize = b.u64(at: p + 16), nameSize = b.u64(at: p + 24)
        let max = UInt64(configuration.maxStorage)
        guard nameSize <= max, dataSize <= max else { _ = error(&b, .outOfResources); return nil }
        length += nameSize
        guard UInt64(b.length) >= length else { _ = error(&b, .badBufferSize); return nil }
        if withData {
            length += dataSize
            guard UInt64(b.length) >= length else { _ = error(&b, .badBufferSize); return nil }
        }
        let nameAt = p + UefiVarsStore.access
        guard nameIsValid(b, at: nameAt, size: nameSize) else { _ = error(&b, dialect.invalidNameStatus); return nil }
        let raw = b.slice(nameAt, Int(nameSize))
        let key = VariableKey(guid: EfiGuid(bytes: b.bytes, at: p), name: UefiVarsName.canonical(raw))
        return (raw, key, dataSize, length)
    }

    // MARK: GET_VARIABLE

    mutating func getVariable(_ b: inout MessageBuffer) -> Int {
        guard let r = accessRequest(&b, withData: false) else { return UefiVarsStore.header }
        guard let v = list.find(r.key) else { return error(&b, .notFound) }
        guard accessible(v.value.attributes) else { return error(&b, .accessDenied) }
        var length = r.length
        let (sum, overflow) = length.addingReportingOverflow(r.dataSize)
        guard !overflow, fitsBuffer(b, sum) else { return error(&b, .badBufferSize) }
        length = sum
        let p = UefiVarsStore.header
        b.set(v.value.attributes.rawValue, at: p + 32)
        let actual = UInt64(v.value.data.count)
        if r.dataSize < actual {
            b.set(actual, at: p + 16)
            // QEMU subtracts the new DataSize (u64, wrapping), not the one asked for; only its
            // final MessageLength check reads the result, as it writes the whole message back.
            // A store that sends just its reply (virtfw) must cover header, access and name.
            if dialect.writeBack == .wholeMessage { length &-= actual } else { length -= r.dataSize }
            b.set(EfiStatus.bufferTooSmall.rawValue, at: 8)
        } else {
            b.set(actual, at: p + 16)
            b.set(v.value.data, at: p + UefiVarsStore.access + r.name.count)
            b.set(EfiStatus.success.rawValue, at: 8)
        }
        return Int(clamping: length)
    }

    // MARK: GET_NEXT_VARIABLE_NAME

    mutating func getNextVariableName(_ b: inout MessageBuffer) -> Int {
        var length = UInt64(UefiVarsStore.header + UefiVarsStore.nameHeader)
        guard UInt64(b.length) >= length else { return error(&b, .badBufferSize) }
        let p = UefiVarsStore.header
        let nameSize = b.u64(at: p + 16)
        guard nameSize <= UInt64(configuration.maxStorage) else { return error(&b, .outOfResources) }
        length += nameSize
        guard UInt64(b.length) >= length else { return error(&b, .badBufferSize) }
        let nameAt = p + UefiVarsStore.nameHeader
        guard nameIsValid(b, at: nameAt, size: nameSize) else { return error(&b, dialect.invalidNameStatus) }
        let previous = UefiVarsName.canonical(b.slice(nameAt, Int(nameSize)))
        var i: Int
        if previous.isEmpty {
            i = 0
        } else {
            // The previous name is looked up regardless of access; only the step skips.
            guard let at = list.index(of: VariableKey(guid: EfiGuid(bytes: b.bytes, at: p), name: previous)) else {
                return error(&b, .invalidParameter)
            }
            i = at + 1
        }
        while i < list.records.count && !accessible(list.records[i].value.attributes) { i += 1 }
        guard i < list.records.count else { return error(&b, .notFound) }
        let next = list.records[i]
        length = UInt64(UefiVarsStore.header + UefiVarsStore.nameHeader + next.name.count)
        guard fitsBuffer(b, length) else { return error(&b, .badBufferSize) }
        b.set(next.key.guid.bytes, at: p)
        b.set(UInt64(next.name.count), at: p + 16)
        b.set(next.name, at: nameAt)
        b.set(EfiStatus.success.rawValue, at: 8)
        return Int(length)
    }

    // MARK: QUERY_VARIABLE_INFO, GET_PAYLOAD_SIZE, LOCK_VARIABLE

    /// `uefi_vars_mm_variable_info`: the attributes asked about are ignored and written
    /// back as 0.
    mutating func queryVariableInfo(_ b: inout MessageBuffer) -> Int {
        let length = UefiVarsStore.header + UefiVarsStore.info
        guard fitsBuffer(b, UInt64(length)) else { return error(&b, .badBufferSize) }
        let p = UefiVarsStore.header
        let max = UInt64(configuration.maxStorage)
        b.set(max, at: p)
        b.set(max &- UInt64(list.usedStorage), at: p + 8)
        b.set(max >> 2, at: p + 16)
        b.set(UInt32(0), at: p + 24)
        b.set(EfiStatus.success.rawValue, at: 8)
        return length
    }

    mutating func getPayloadSize(_ b: inout MessageBuffer) -> Int {
        let length = UefiVarsStore.header + 8
        guard fitsBuffer(b, UInt64(length)) else { return error(&b, .badBufferSize) }
        let size: UInt64
        switch dialect.payloadSize {
        case .bufferMinus40: size = UInt64(b.bytes.count) - UInt64(UefiVarsStore.header)
        case .constant(let n): size = n
        }
        b.set(size, at: UefiVarsStore.header)
        b.set(EfiStatus.success.rawValue, at: 8)
        return length
    }

    /// `uefi_vars_mm_lock_variable`: a LOCK_NOW policy for the name, SUCCESS even after
    /// EndOfDxe and for a name already locked (no EndOfDxe check, no duplicate check).
    mutating func lockVariable(_ b: inout MessageBuffer) -> Int {
        var length = UInt64(UefiVarsStore.header + UefiVarsStore.nameHeader)
        guard UInt64(b.length) >= length else { return error(&b, .badBufferSize) }
        let p = UefiVarsStore.header
        let nameSize = b.u64(at: p + 16)
        let (sum, overflow) = length.addingReportingOverflow(nameSize)
        guard !overflow, UInt64(b.length) >= sum else { return error(&b, .badBufferSize) }
        length = sum
        guard UInt64(UefiVarsPolicy.entrySize) + nameSize <= UInt64(UInt16.max) else { return error(&b, .badBufferSize) }
        let raw = b.slice(p + UefiVarsStore.nameHeader, Int(nameSize))
        addPolicy(UefiVarsPolicy(namespace: EfiGuid(bytes: b.bytes, at: p), name: raw, minSize: 0, maxSize: UInt32.max,
                                 mustHave: 0, cantHave: 0, lock: .lockNow))
        b.set(EfiStatus.success.rawValue, at: 8)
        return Int(length)
    }
}
