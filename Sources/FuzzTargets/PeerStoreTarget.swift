import SvsmEfiVars

/// (f) The peer stores — QEMU's uefi-vars and COCONUT's virtfw-varstore dialects — fed the
/// MM messages a hostile guest can send. The first byte picks the dialect and the buffer
/// size (RDX), the rest is up to eight messages as the mm-payload target reads them, each
/// to the store booted and at runtime.
///
/// Properties: the reply is exactly the message's length (QEMU writes 24 + MessageLength)
/// or at most it (COCONUT writes the reply only); a variable-protocol reply carries a
/// status; the store never uses more than its storage.
final class PeerStoreTarget: Sendable {
    static let shared = PeerStoreTarget()
    static let dialects: [UefiVarsStore.Dialect] = [.qemu, .virtfw]
    static let bufferSizes: [UInt64] = [4096, 16 * 1024, 64 * 1024, 256 * 1024]

    /// Each dialect's store after power-on, OVMF's writes and the boot events.
    let bases: [UefiVarsStore]

    init() {
        bases = PeerStoreTarget.dialects.map { d in
            var s = UefiVarsStore(dialect: d)
            s.powerOn(enrolment: d == .virtfw ? VirtfwEnrolment() : nil)
            for e in OvmfDefaults.entries {
                let payload = AccessVariablePayload.encode(guid: e.key.guid, name: e.key.name, attributes: e.attributes.rawValue,
                                                           dataSize: e.data.count, data: e.data)
                _ = s.handle(headerGuid: .smmVariableProtocol, message: SmmVariableHeader.message(.setVariable, payload: payload), bufferSize: 65536)
            }
            for g in [EfiGuid.endOfDxeEvent, .readyToBootEvent, .exitBootServicesEvent] { _ = s.handle(headerGuid: g, message: [0], bufferSize: 4096) }
            return s
        }
    }

    func run(_ data: [UInt8]) throws(PropertyViolation) {
        guard let selector = data.first else { return }
        let which = Int(selector & 1)
        var store = bases[which]
        let dialect = PeerStoreTarget.dialects[which]
        let bufferSize = PeerStoreTarget.bufferSizes[Int(selector >> 1) % PeerStoreTarget.bufferSizes.count]
        var input = FuzzInput(Array(data.dropFirst()))
        var steps = 0
        while !input.isExhausted && steps < 8 {
            steps += 1
            let guid = MmPayloadTarget.headerGuids[Int(input.u8()) % MmPayloadTarget.headerGuids.count]
            let message = input.block()
            guard let reply = store.handle(headerGuid: guid, message: message, bufferSize: bufferSize) else { continue }
            switch dialect.writeBack {
            case .wholeMessage: try require(reply.count == message.count, "\(dialect.name): a \(reply.count)-byte reply to a \(message.count)-byte message")
            case .replyOnly: try require(reply.count <= message.count, "\(dialect.name): a \(reply.count)-byte reply to a \(message.count)-byte message")
            }
            if guid == .smmVariableProtocol { try require(reply.count >= SmmVariableHeader.size, "\(dialect.name): a reply without its status") }
            try require(store.usedStorage <= store.configuration.maxStorage, "\(dialect.name): \(store.usedStorage) bytes used of \(store.configuration.maxStorage)")
        }
    }

    /// The mm-payload seeds, once per dialect, through a 64 KiB buffer.
    static func seeds() -> [(name: String, bytes: [UInt8])] {
        dialects.indices.flatMap { i in
            MmPayloadTarget.seeds().map { seed in ("\(dialects[i].name)-\(seed.name)", [UInt8(i) | 2 << 1] + seed.bytes) }
        }
    }
}
