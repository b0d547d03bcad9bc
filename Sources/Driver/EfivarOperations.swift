import EfiTypes
import Guest
import MmWire

extension SvsmVariableDriver {
    /// The efivar operations, bound to the vCPU the caller holds (`get_variable`,
    /// `get_next_variable`, `set_variable`, `query_variable_info`).
    public struct Cpu {
        let driver: SvsmVariableDriver
        public let vcpu: Vcpu
        /// This vCPU's MM buffer and CAA, set up once for all the calls the holder makes.
        let communicator: MmCommunicator<SvsmMmChannel>

        init(driver: SvsmVariableDriver, vcpu: Vcpu) {
            self.driver = driver
            self.vcpu = vcpu
            self.communicator = MmCommunicator(channel: SvsmMmChannel(transport: driver.transport, vcpu: vcpu, caa: vcpu.svsmCaa,
                                                                      buffer: driver.buffers[vcpu.apicId]!, bufferSize: driver.bufferSize))
        }

        /// VariablePayloadSize from the probe: the most one message carries.
        public var maxPayloadSize: Int { driver.maxPayloadSize }

        func call(_ function: SmmVariableFunction, _ payload: [UInt8]) throws(SvsmCallError) -> (EfiStatus, [UInt8]) {
            try communicator.variableCall(function, payload: payload)
        }

        /// `tee_get_variable`: the data size asked for is trimmed to what fits the payload.
        /// With the driver cache, a miss asks for at least `cacheFetchSize` bytes (a size
        /// query becomes a fetch), so that the answer — the data, or NOT_FOUND — can be kept;
        /// the caller gets what its own size would have got.
        public func getVariable(_ key: VariableKey, capacity: Int) throws(SvsmCallError) -> GetVariableResult {
            let nameSize = key.nameSize
            let room = driver.maxPayloadSize - AccessVariablePayload.nameOffset - nameSize
            guard room >= 0 else { return .error(.invalidParameter) }
            let asked = min(capacity, room)
            guard let cache = driver.cache, !key.name.isEmpty else { return try fetchVariable(key, asked: asked) }
            func answer(_ attrs: VariableAttributes, _ data: [UInt8]) -> GetVariableResult {
                data.count <= asked ? .found(attributes: attrs, data: data) : .bufferTooSmall(attributes: attrs, size: data.count)
            }
            switch cache.variable(key) {
            case .hit(.present(let attrs, let data)): return answer(attrs, data)
            case .hit(.absent): return .error(.notFound)
            case .miss(let token):
                let r = try fetchVariable(key, asked: max(asked, min(room, SvsmVariableDriver.cacheFetchSize)))
                switch r {
                case .found(let attrs, let data):
                    cache.fillVariable(key, .present(attrs, data), token)
                    return answer(attrs, data)
                case .error(.notFound):
                    cache.fillVariable(key, .absent, token)
                    return r
                default:
                    return r
                }
            }
        }

        func fetchVariable(_ key: VariableKey, asked: Int) throws(SvsmCallError) -> GetVariableResult {
            let payload = AccessVariablePayload.encode(guid: key.guid, name: key.name, attributes: 0, dataSize: asked)
            let (status, reply) = try call(.getVariable, payload)
            return MmVariableReply.getVariable(status: status, reply: reply, asked: asked)
        }

        /// Reads a whole variable: a size query, then the fetch, retried while it grows.
        /// A consistent snapshot, unlike the kernel's ignored second status.
        public func readVariable(_ key: VariableKey) throws(SvsmCallError) -> GetVariableResult {
            var capacity = 0
            for _ in 0..<8 {
                let r = try getVariable(key, capacity: capacity)
                guard case .bufferTooSmall(_, let size) = r else { return r }
                if size <= capacity { return .error(.deviceError) }  // cannot be read through the buffer
                capacity = size
            }
            return .error(.deviceError)
        }

        /// `tee_get_next_variable`.
        public func getNextVariable(after key: VariableKey, nameBufferSize: Int) throws(SvsmCallError) -> GetNextVariableNameResult {
            let inSize = key.nameSize
            guard nameBufferSize >= inSize, inSize <= driver.maxPayloadSize - GetNextVariableNamePayload.nameOffset else {
                return .error(.invalidParameter)
            }
            let out = min(nameBufferSize, driver.maxPayloadSize - GetNextVariableNamePayload.nameOffset)
            guard let cache = driver.cache else { return try fetchNextVariable(after: key, out: out) }
            switch cache.nextName(after: key) {
            case .hit(.next(let next)): return next.nameSize > out ? .bufferTooSmall(needed: next.nameSize) : .next(next)
            case .hit(.end): return .error(.notFound)
            case .hit(.unknownPrevious): return .error(.invalidParameter)
            case .miss(let token):
                let r = try fetchNextVariable(after: key, out: out)
                cache.recordWalkStep(after: key, r, token)
                return r
            }
        }

        func fetchNextVariable(after key: VariableKey, out: Int) throws(SvsmCallError) -> GetNextVariableNameResult {
            let payload = GetNextVariableNamePayload.encode(guid: key.guid, name: key.name, nameBufferSize: out)
            let (status, reply) = try call(.getNextVariableName, payload)
            return MmVariableReply.getNextVariableName(status: status, reply: reply)
        }

        /// `get_property_int`: NOT_FOUND means "no property" (all zero). Nil when the
        /// service has no VAR_CHECK properties (probed once at load).
        public func getProperty(_ key: VariableKey) throws(SvsmCallError) -> Result<VariableProperty, EfiStatusError>? {
            guard driver.hasVarCheckProperties else { return nil }
            guard let cache = driver.cache else { return try fetchProperty(key) }
            switch cache.property(key) {
            case .hit(let p): return .success(p)
            case .miss(let token):
                let r = try fetchProperty(key)
                if case .success(let p)? = r { cache.fillProperty(key, p, token) }
                return r
            }
        }

        func fetchProperty(_ key: VariableKey) throws(SvsmCallError) -> Result<VariableProperty, EfiStatusError>? {
            let payload = VarCheckPropertyPayload.encode(guid: key.guid, name: key.name, property: VariableProperty(revision: 0, minSize: 0, maxSize: 0))
            guard payload.count <= driver.maxPayloadSize else { return .failure(.invalidParameter) }
            let (status, reply) = try call(.varCheckVariablePropertyGet, payload)
            if status == .notFound { return .success(VariableProperty(revision: 0, minSize: 0, maxSize: 0)) }
            guard status == .success else { return .failure(EfiStatusError(status.isError ? status : .deviceError)) }
            guard reply.count >= VarCheckPropertyPayload.propertyOffset + VariableProperty.size else { return .failure(.deviceError) }
            return .success(VariableProperty(decoding: reply, at: VarCheckPropertyPayload.propertyOffset))
        }

        /// `tee_set_variable`: payload limit, property check where the service has one
        /// (READ_ONLY → WRITE_PROTECTED, also for deletes), then SET_VARIABLE.
        public func setVariable(_ key: VariableKey, attributes: UInt32, data: [UInt8]) throws(SvsmCallError) -> EfiStatus {
            guard !key.name.isEmpty else { return .invalidParameter }
            let size = AccessVariablePayload.nameOffset + key.nameSize + data.count
            guard size <= driver.maxPayloadSize else { return .invalidParameter }
            switch try getProperty(key) {
            case .failure(let e)?: return e.status
            case .success(let p)?: if p.isReadOnly { return .writeProtected }
            case nil: break
            }
            let payload = AccessVariablePayload.encode(guid: key.guid, name: key.name, attributes: attributes,
                                                       dataSize: data.count, data: data)
            // The cache steps aside for the SET and is emptied on both sides of it: the store
            // may change more than this name (SetupMode after PK, certdb, ...).
            driver.cache?.beginWrite()
            defer { driver.cache?.endWrite() }
            return try call(.setVariable, payload).0
        }

        /// The driver's `query_variable_store` (`efivar_operations.query_variable_store`),
        /// built on QUERY_VARIABLE_INFO through the SVSM. x86's `efi_query_variable_store`
        /// (arch/x86/platform/efi/quirks.c) asks the firmware's runtime services — the path
        /// this driver exists to avoid — so the driver answers itself, with the same rule:
        /// refuse a write that would leave less than `reserve` bytes (EFI_MIN_RESERVE, 5 KiB).
        /// The subtraction wraps as the kernel's u64 does, so a write larger than the space
        /// left passes here and the store answers OUT_OF_RESOURCES. The kernel's
        /// garbage-collection dummy write is not made: an SVSM store has no flash to reclaim.
        public func queryVariableStore(attributes: UInt32, size: Int, reserve: UInt64) throws(SvsmCallError) -> EfiStatus {
            switch try queryVariableInfo(attributes: attributes) {
            case .failure(let e): return e.status
            case .success(let info):
                if reserve > 0 && info.remainingVariableStorageSize &- UInt64(size) < reserve { return .outOfResources }
                return .success
            }
        }

        /// `tee_query_variable_info`.
        public func queryVariableInfo(attributes: UInt32) throws(SvsmCallError) -> Result<VariableStorageInfo, EfiStatusError> {
            guard let cache = driver.cache else { return try fetchVariableInfo(attributes: attributes) }
            switch cache.storageInfo(attributes) {
            case .hit(let info): return .success(info)
            case .miss(let token):
                let r = try fetchVariableInfo(attributes: attributes)
                if case .success(let info) = r { cache.fillStorageInfo(attributes, info, token) }
                return r
            }
        }

        func fetchVariableInfo(attributes: UInt32) throws(SvsmCallError) -> Result<VariableStorageInfo, EfiStatusError> {
            let (status, reply) = try call(.queryVariableInfo, QueryVariableInfoPayload.encode(attributes: attributes))
            return MmVariableReply.queryVariableInfo(status: status, reply: reply)
        }
    }
}

extension EfiStatusError {
    static let deviceError = EfiStatusError(.deviceError)
}
