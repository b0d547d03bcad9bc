import EfiTypes
import MmWire
import VariableService

/// The variable store of Gerd Hoffmann's design, in the two implementations that exist:
/// QEMU's `hw/uefi` uefi-vars device (C) and the virtfw-varstore crate (Rust) that
/// COCONUT-SVSM's protocol 4 runs on. virtfw-varstore is the Rust rework of the same store
/// ("replacing QEMU's store", its README); one engine serves both, and `Dialect` holds
/// every behaviour in which they are known, or modelled, to differ.
///
/// Everything here follows QEMU's source (`hw/uefi/var-service-*.c`); where virtfw-varstore's
/// source could not be read, the dialect says which choices are open (`Dialect.openQuestions`).
public struct UefiVarsStore: Sendable {
    public struct Configuration: Sendable, Equatable {
        /// The device's `size` property: the storage the variables may use (`max_storage`,
        /// default 256 KiB, hw/uefi/var-service-sysbus.c).
        public var maxStorage = 256 * 1024
        /// `force-secure-boot`: SecureBootEnable is kept at 1.
        public var forceSecureBoot = false
        /// `disable-custom-mode`: writes of CustomMode are refused.
        public var disableCustomMode = false
        /// COCONUT built with cargo feature `persistence` and storage present: the store is
        /// read at SVSM start and written after each request, and the shim quirk is not set.
        public var persistence = false
        public init() {}
    }

    public let dialect: Dialect
    public let configuration: Configuration
    var list = UefiVarsList()
    var endOfDxe = false
    var readyToBoot = false
    var exitBootService = false
    var policyLocked = false
    var policies: [UefiVarsPolicy] = []

    public init(dialect: Dialect, configuration: Configuration = Configuration()) {
        self.dialect = dialect
        self.configuration = configuration
    }

    /// QEMU's MAX_BUFFER_SIZE: the largest buffer the firmware can register
    /// (include/hw/uefi/var-service.h).
    public static let maxBufferSize: UInt64 = 64 * 1024

    // MARK: the store's life

    /// Loads saved variables as the JSON loader does (`uefi_vars_json_load`): appended in
    /// file order, no checks.
    public mutating func restore(_ variables: some Sequence<ExportedVariable>) {
        for v in variables { list.put(UefiVarRecord(key: v.key, value: v.value)) }
    }

    /// What the store does when its VM or SVSM starts: QEMU's `uefi_vars_hard_reset` (flags,
    /// volatile variables and policies cleared, then `uefi_vars_auth_init`); for virtfw
    /// COCONUT's `uefi_mm_protocol_init` on a store that starts empty.
    public mutating func powerOn(enrolment: VirtfwEnrolment? = nil) {
        endOfDxe = false
        readyToBoot = false
        exitBootService = false
        policyLocked = false
        policies = []
        list.removeAll { !$0.value.attributes.contains(.nonVolatile) }
        switch dialect.initialVariables {
        case .qemuAuthInit:
            authInit()
        case .virtfwReset:
            virtfwInit(enrolment: enrolment)
        }
    }

    /// Every variable in list order (for tests and `export`).
    public var allVariables: [ExportedVariable] { list.records.map { ExportedVariable($0.key, $0.value) } }

    /// Bytes the variables use by QEMU's accounting.
    public var usedStorage: Int { list.usedStorage }

    /// The variable regardless of access.
    public func find(_ key: VariableKey) -> StoredVariable? { list.find(key)?.value }
}

extension UefiVarsStore: MmVariableStore {
    /// `uefi_vars_cmd_mm`: HeaderGuid dispatch over a private copy of the buffer.
    public mutating func handle(headerGuid: EfiGuid, message: consuming [UInt8], bufferSize: UInt64) -> [UInt8]? {
        // What bounds the request and its reply: the registered buffer, capped at 64 KiB
        // (QEMU), or only the request itself (virtfw sees nothing else).
        let bufSize: UInt64
        switch dialect.replyBound {
        case .registeredBuffer: bufSize = min(bufferSize, UefiVarsStore.maxBufferSize)
        case .request: bufSize = UInt64(MmCommunicateHeader.size + message.count)
        }
        // 24 + MessageLength beyond the buffer: UEFI_VARS_STS_ERR_BAD_BUFFER_SIZE, nothing
        // processed. The device status has no protocol-4 form; the buffer stays as it was.
        guard UInt64(MmCommunicateHeader.size) + UInt64(message.count) <= bufSize else { return nil }
        var buffer = MessageBuffer(message: copy message, capacity: Int(bufSize) - MmCommunicateHeader.size)
        let replyLength: Int
        switch headerGuid {
        case .smmVariableProtocol:
            guard let n = variableProtocol(&buffer) else { return nil }
            replyLength = n
        case .varCheckPolicyMmiHandler:
            guard let n = policyProtocol(&buffer) else { return nil }
            replyLength = n
        case .endOfDxeEvent:
            endOfDxe = true; return message
        case .readyToBootEvent:
            readyToBoot = true; return message
        case .exitBootServicesEvent:
            exitBootService = true; return message
        default:
            // QEMU: UEFI_VARS_STS_ERR_NOT_SUPPORTED with the request written back unchanged;
            // virtfw: an empty reply, so COCONUT writes nothing. Either way the guest's
            // buffer holds what it sent.
            return nil
        }
        switch dialect.writeBack {
        case .wholeMessage:
            // QEMU copies 24 + MessageLength bytes back, whatever the handler used.
            return Array(buffer.bytes[0..<message.count])
        case .replyOnly:
            // COCONUT copies exactly the reply vector; the rest of the guest's buffer keeps
            // the request's bytes.
            return Array(buffer.bytes[0..<min(replyLength, buffer.bytes.count)])
        }
    }

    public mutating func beginTransaction() { list.transaction = StoreTransaction() }

    public mutating func endTransaction() -> StoreTransaction {
        defer { list.transaction = nil }
        return list.transaction ?? StoreTransaction()
    }

    public mutating func undo(_ t: StoreTransaction) { list.undo(t) }

    public func nonVolatileChanges(_ t: StoreTransaction) -> [VariableChange] {
        t.order.compactMap { key in
            if let now = list.find(key), now.value.attributes.contains(.nonVolatile) { return VariableChange(key: key, value: now.value) }
            if let was = t.before[key] ?? nil, was.attributes.contains(.nonVolatile) { return VariableChange(key: key, value: nil) }
            return nil
        }
    }

    public var everyVariable: [ExportedVariable] { allVariables }

    public var nonVolatileExport: [ExportedVariable] {
        list.records.filter { $0.value.attributes.contains(.nonVolatile) }.map { ExportedVariable($0.key, $0.value) }
    }

    /// COCONUT `uefi_mm_get_manifest`: persistent_nv_vars and secureboot_db_update are
    /// hard-coded false, secureboot_enabled is "PK exists". QEMU has no manifest (it is not
    /// an SVSM); the model reports what its store offers behind the same call: persistence
    /// when a JSON file (journal) is behind it, and db updates when PK exists (QEMU verifies
    /// PKCS#7).
    public func manifest(persistentStore: Bool) -> UefiMmManifest {
        let pk = list.find(UefiVarsAuth.pk) != nil
        switch dialect.manifestRule {
        case .coconut:
            return UefiMmManifest(persistentNvVariables: false, secureBootEnabled: pk, secureBootDbUpdate: false)
        case .storeCapabilities:
            return UefiMmManifest(persistentNvVariables: persistentStore, secureBootEnabled: pk, secureBootDbUpdate: pk && dialect.verifiesPkcs7)
        }
    }
}

/// QEMU's private copy of the communicate buffer, from the byte after the header: the
/// message, then zeros up to the buffer's size (`memset(uv->buffer + size, 0, …)`).
/// Handlers read and write inside it; reads past its end see zero, as no access in QEMU
/// goes past the buffer except `uefi_str_is_valid`'s over-long scan (see `UefiVarsName`).
struct MessageBuffer {
    var bytes: [UInt8]
    /// MessageLength.
    let length: Int

    init(message: [UInt8], capacity: Int) {
        bytes = message + [UInt8](zeroed: max(0, capacity - message.count))
        length = message.count
    }

    func u16(at offset: Int) -> UInt16 { offset + 2 <= bytes.count ? bytes.loadLE(UInt16.self, at: offset) : 0 }
    func u32(at offset: Int) -> UInt32 { offset + 4 <= bytes.count ? bytes.loadLE(UInt32.self, at: offset) : 0 }
    func u64(at offset: Int) -> UInt64 { offset + 8 <= bytes.count ? bytes.loadLE(UInt64.self, at: offset) : 0 }
    func slice(_ offset: Int, _ count: Int) -> [UInt8] {
        guard offset < bytes.count else { return [UInt8](zeroed: count) }
        let end = min(bytes.count, offset + count)
        return Array(bytes[offset..<end]) + [UInt8](zeroed: count - (end - offset))
    }
    mutating func set(_ value: some FixedWidthInteger, at offset: Int) {
        if offset + MemoryLayout.size(ofValue: value) <= bytes.count { bytes.storeLE(value, at: offset) }
    }
    mutating func set(_ data: [UInt8], at offset: Int) {
        guard offset <= bytes.count else { return }
        let n = min(data.count, bytes.count - offset)
        bytes.replaceSubrange(offset..<(offset + n), with: data[0..<n])
    }
}
