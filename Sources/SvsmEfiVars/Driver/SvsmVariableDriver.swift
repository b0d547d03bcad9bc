/// The modelled Linux driver: an `efivar_operations` backend that sends each variable call
/// to the SVSM (protocol 4) through the current vCPU's own CAA. Built like
/// drivers/firmware/efi/stmm/tee_stmm_efi.c: size and build the message, communicate,
/// copy back and return the status.
///
/// Buffers: one page-aligned MM buffer per vCPU, in private guest memory, never a CAA
/// page. The CPU that holds the vCPU (interrupts off) owns its buffer, so no driver lock
/// is needed; the SVSM serialises the store itself. (tee_stmm_efi allocates per call and
/// relies on efivars_lock; a per-CPU buffer is the choice that lets calls from many vCPUs
/// proceed without a global lock.)
public final class SvsmVariableDriver: Sendable {
    public enum ProbeError: Error, CustomStringConvertible {
        case protocolNotSupported
        case callFailed(SvsmCallError)
        case payloadTooSmall(UInt64)
        case payloadStatus(EfiStatus)
        case memory(GuestMemoryError)
        public var description: String {
            switch self {
            case .protocolNotSupported: return "the SVSM does not offer protocol 4 (UEFI MM) version 1"
            case .callFailed(let e): return "SVSM call failed during probe: \(e)"
            case .payloadTooSmall(let n): return "GET_PAYLOAD_SIZE reported \(n) bytes (at least 72 needed)"
            case .payloadStatus(let s): return "GET_PAYLOAD_SIZE failed: \(s.name)"
            case .memory(let e): return "cannot allocate the MM buffer: \(e)"
            }
        }
    }

    public let vcpus: VcpuSet
    public let transport: SvsmCallTransport
    public let memory: GuestMemory
    /// VariablePayloadSize from GET_PAYLOAD_SIZE.
    public let maxPayloadSize: Int
    /// 24 + 16 + payload, rounded up to whole pages: what RDX names.
    public let bufferSize: Int

    /// Probe as Linux would: QUERY_PROTOCOL(4, 1), then GET_PAYLOAD_SIZE, then allocate
    /// the per-CPU buffers.
    public init(vcpus: VcpuSet, transport: SvsmCallTransport) throws(ProbeError) {
        self.vcpus = vcpus
        self.transport = transport
        self.memory = transport.memory
        let rcx: UInt64
        do {
            rcx = try vcpus.withVcpu { (v: Vcpu) throws(SvsmCallError) -> UInt64 in
                try transport.perform(.coreQueryProtocol, rcx: 4 << 32 | 1, on: v, caa: v.svsmCaa).rcx
            }
        } catch { throw .callFailed(error) }
        guard rcx != 0 else { throw .protocolNotSupported }
        // A one-page probe buffer for GET_PAYLOAD_SIZE, then the real ones.
        let probeBuffer: GuestPhysicalAddress
        do { probeBuffer = try memory.allocatePages(1) } catch { throw .memory(error) }
        let payload: UInt64
        do {
            let (status, reply) = try vcpus.withVcpu { (v: Vcpu) throws(SvsmCallError) in
                try SvsmVariableDriver.communicate(transport: transport, vcpu: v, buffer: probeBuffer, bufferSize: 4096,
                                                   function: .getPayloadSize, payload: [UInt8](repeating: 0, count: 8))
            }
            guard status == .success else { throw ProbeError.payloadStatus(status) }
            payload = reply.loadLE(UInt64.self, at: 0)
        } catch let e as ProbeError { throw e } catch let e as SvsmCallError { throw .callFailed(e) } catch { throw .protocolNotSupported }
        memory.freePage(probeBuffer)
        // tee_stmm_efi refuses less than 40 + 0x20.
        guard payload >= 72 else { throw .payloadTooSmall(payload) }
        self.maxPayloadSize = Int(payload)
        let pages = (MmCommunicateHeader.size + SmmVariableHeader.size + Int(payload) + 4095) / 4096
        self.bufferSize = pages * 4096
        for v in vcpus.vcpus {
            do { v.mmBuffer = try memory.allocatePages(pages) } catch { throw .memory(error) }
        }
    }

    /// Reuses a probed driver's buffers with another transport (the runtime one, with
    /// fault injection and tracing).
    public init(reusing other: SvsmVariableDriver, transport: SvsmCallTransport) {
        self.vcpus = other.vcpus
        self.transport = transport
        self.memory = other.memory
        self.maxPayloadSize = other.maxPayloadSize
        self.bufferSize = other.bufferSize
    }

    /// One MM communicate round trip: header + message into the buffer, RCX = its GPA,
    /// RDX = its size, the message read back. Used by the driver and the firmware model.
    /// The trace record of a variable-protocol message carries its function and status.
    public static func mmCommunicate(transport: SvsmCallTransport, vcpu: Vcpu, caa: GuestPhysicalAddress,
                                     buffer: GuestPhysicalAddress, bufferSize: Int, headerGuid: EfiGuid,
                                     message: [UInt8]) throws(SvsmCallError) -> [UInt8] {
        try? transport.memory.write(buffer, MmCommunicateHeader.encode(headerGuid: headerGuid, message: message))
        let body = buffer.advanced(by: UInt64(MmCommunicateHeader.size))
        var reply: [UInt8]?
        try transport.perform(.uefiMmRequest, rcx: buffer.rawValue, rdx: UInt64(bufferSize), on: vcpu, caa: caa) { record in
            // Read the answer here so the trace carries what the message says.
            reply = try? transport.memory.read(body, count: message.count)
            guard headerGuid == .smmVariableProtocol, message.count >= SmmVariableHeader.size else { return }
            record.mmFunction = SmmVariableFunction(rawValue: message.loadLE(UInt64.self, at: SmmVariableHeader.functionOffset))
            if record.error == nil, let r = reply {
                record.efiStatus = EfiStatus(rawValue: r.loadLE(UInt64.self, at: SmmVariableHeader.returnStatusOffset))
            }
        }
        if let r = reply { return r }
        return (try? transport.memory.read(body, count: message.count)) ?? message
    }

    /// Communicate for the variable protocol: an SVSM-level failure becomes
    /// EFI_DEVICE_ERROR (as edk2's VirtMmCommunication does; tee_stmm_efi does the same
    /// for a failed invocation).
    static func communicate(transport: SvsmCallTransport, vcpu: Vcpu, buffer: GuestPhysicalAddress, bufferSize: Int,
                            function: SmmVariableFunction, payload: [UInt8]) throws(SvsmCallError) -> (EfiStatus, [UInt8]) {
        let message = SmmVariableHeader.message(function, payload: payload)
        let reply = try mmCommunicate(transport: transport, vcpu: vcpu, caa: vcpu.svsmCaa, buffer: buffer, bufferSize: bufferSize,
                                      headerGuid: .smmVariableProtocol, message: message)
        let status = EfiStatus(rawValue: reply.loadLE(UInt64.self, at: SmmVariableHeader.returnStatusOffset))
        return (status, Array(reply[SmmVariableHeader.size...]))
    }

    /// Runs `body` holding one vCPU: every SVSM call it makes goes through that vCPU's CAA.
    public func onCpu<R>(_ body: (Cpu) -> R) -> R {
        vcpus.withVcpu { v in body(Cpu(driver: self, vcpu: v)) }
    }

    /// Runs `body` on a vCPU the caller already holds.
    public func onCpuHeld<R>(_ vcpu: Vcpu, _ body: (Cpu) -> R) -> R { body(Cpu(driver: self, vcpu: vcpu)) }

    /// The efivar operations, bound to the vCPU the caller holds.
    public struct Cpu {
        let driver: SvsmVariableDriver
        public let vcpu: Vcpu

        func communicate(_ function: SmmVariableFunction, _ payload: [UInt8]) -> (EfiStatus, [UInt8]) {
            guard let buffer = vcpu.mmBuffer else { return (.deviceError, []) }
            do {
                return try SvsmVariableDriver.communicate(transport: driver.transport, vcpu: vcpu, buffer: buffer,
                                                          bufferSize: driver.bufferSize, function: function, payload: payload)
            } catch {
                return (.deviceError, [])
            }
        }

        /// `tee_get_variable`: the data size asked for is trimmed to what fits the payload.
        public func getVariable(_ key: VariableKey, capacity: Int) -> VariableStore.GetResult {
            let nameSize = key.nameSize
            let room = driver.maxPayloadSize - AccessVariablePayload.nameOffset - nameSize
            guard room >= 0 else { return .error(.invalidParameter) }
            let asked = min(capacity, room)
            let payload = AccessVariablePayload.encode(guid: key.guid, name: key.name, attributes: 0, dataSize: asked)
            let (status, reply) = communicate(.getVariable, payload)
            guard status == .success || status == .bufferTooSmall else { return .error(status) }
            let size = Int(clamping: reply.loadLE(UInt64.self, at: AccessVariablePayload.dataSizeOffset))
            let attrs = VariableAttributes(rawValue: reply.loadLE(UInt32.self, at: AccessVariablePayload.attributesOffset))
            if status == .bufferTooSmall { return .bufferTooSmall(attributes: attrs, size: size) }
            let replyNameSize = Int(clamping: reply.loadLE(UInt64.self, at: AccessVariablePayload.nameSizeOffset))
            let start = AccessVariablePayload.nameOffset + replyNameSize
            guard size <= asked, start + size <= reply.count else { return .error(.deviceError) }
            return .found(attributes: attrs, data: Array(reply[start..<(start + size)]))
        }

        /// Reads a whole variable: a size query, then the fetch, retried while it grows.
        /// A consistent snapshot, unlike the kernel's ignored second status.
        public func readVariable(_ key: VariableKey) -> VariableStore.GetResult {
            var capacity = 0
            for _ in 0..<8 {
                let r = getVariable(key, capacity: capacity)
                guard case .bufferTooSmall(_, let size) = r else { return r }
                if size <= capacity { return .error(.deviceError) }  // cannot be read through the buffer
                capacity = size
            }
            return .error(.deviceError)
        }

        /// `tee_get_next_variable`.
        public func getNextVariable(after key: VariableKey, nameBufferSize: Int) -> VariableStore.NextResult {
            let inSize = key.nameSize
            guard nameBufferSize >= inSize, inSize <= driver.maxPayloadSize - GetNextVariableNamePayload.nameOffset else {
                return .error(.invalidParameter)
            }
            let out = min(nameBufferSize, driver.maxPayloadSize - GetNextVariableNamePayload.nameOffset)
            let payload = GetNextVariableNamePayload.encode(guid: key.guid, name: key.name, nameBufferSize: out)
            let (status, reply) = communicate(.getNextVariableName, payload)
            let size = Int(clamping: reply.count >= 24 ? reply.loadLE(UInt64.self, at: GetNextVariableNamePayload.nameSizeOffset) : 0)
            switch status {
            case .success:
                guard let name = Ucs2.readNulTerminated(reply, offset: GetNextVariableNamePayload.nameOffset,
                                                        byteCount: min(size, reply.count - GetNextVariableNamePayload.nameOffset)) else {
                    return .error(.deviceError)
                }
                return .next(VariableKey(guid: EfiGuid(bytes: reply, at: 0), name: name))
            case .bufferTooSmall: return .bufferTooSmall(needed: size)
            default: return .error(status)
            }
        }

        /// `get_property_int`: NOT_FOUND means "no property" (all zero).
        public func getProperty(_ key: VariableKey) -> Result<VariableProperty, EfiStatusError> {
            let payload = VarCheckPropertyPayload.encode(guid: key.guid, name: key.name, property: VariableProperty(revision: 0, minSize: 0, maxSize: 0))
            guard payload.count <= driver.maxPayloadSize else { return .failure(.invalidParameter) }
            let (status, reply) = communicate(.varCheckVariablePropertyGet, payload)
            if status == .notFound { return .success(VariableProperty(revision: 0, minSize: 0, maxSize: 0)) }
            guard status == .success else { return .failure(EfiStatusError(status)) }
            return .success(VariableProperty(decoding: reply, at: VarCheckPropertyPayload.propertyOffset))
        }

        /// `tee_set_variable`: payload limit, property check (READ_ONLY → WRITE_PROTECTED,
        /// also for deletes), then SET_VARIABLE.
        public func setVariable(_ key: VariableKey, attributes: UInt32, data: [UInt8]) -> EfiStatus {
            guard !key.name.isEmpty else { return .invalidParameter }
            let size = AccessVariablePayload.nameOffset + key.nameSize + data.count
            guard size <= driver.maxPayloadSize else { return .invalidParameter }
            switch getProperty(key) {
            case .failure(let e): return e.status
            case .success(let p): if p.isReadOnly { return .writeProtected }
            }
            let payload = AccessVariablePayload.encode(guid: key.guid, name: key.name, attributes: attributes,
                                                       dataSize: data.count, data: data)
            return communicate(.setVariable, payload).0
        }

        /// `tee_query_variable_info`.
        public func queryVariableInfo(attributes: UInt32) -> Result<VariableStore.VariableInfo, EfiStatusError> {
            let (status, reply) = communicate(.queryVariableInfo, QueryVariableInfoPayload.encode(attributes: attributes))
            guard status == .success else { return .failure(EfiStatusError(status.isError ? status : .deviceError)) }
            return .success(VariableStore.VariableInfo(
                maximumVariableStorageSize: reply.loadLE(UInt64.self, at: QueryVariableInfoPayload.maximumVariableStorageSizeOffset),
                remainingVariableStorageSize: reply.loadLE(UInt64.self, at: QueryVariableInfoPayload.remainingVariableStorageSizeOffset),
                maximumVariableSize: reply.loadLE(UInt64.self, at: QueryVariableInfoPayload.maximumVariableSizeOffset)))
        }
    }
}
