import EfiTypes
import MmWire

/// The driver's runtime variable cache (`--driver-cache`, off by default): GetVariable,
/// GetNextVariableName, the VAR_CHECK property query and QueryVariableInfo answered from
/// memory once the SVSM has answered them, so that reading and listing variables stops
/// costing a world switch per call. Writes still go to the SVSM.
///
/// Coherence, the whole argument (BENCHMARKS.md "The driver cache" has it at length):
///
/// 1. Everything the store changes by itself changes because of a request: SetupMode,
///    SecureBoot, VendorKeys, certdb and the variables a policy locks change inside a
///    SetVariable; runtime visibility changes at ExitBootServices, which is over before the
///    driver exists. So every SetVariable through this driver empties the whole cache —
///    not just the name written — and the cache refills on demand. Nothing is derived.
/// 2. A SetVariable in flight makes the cache step aside: from just before the SET until
///    just after it returned, lookups go to the SVSM and nothing is filled, so no reader
///    can see the old value after another reader saw the new one. Fills carry the cache
///    generation they started at and are dropped if a write began or ended since.
/// 3. Only answers that describe the store are kept: a variable's data or its absence
///    (NOT_FOUND), a complete name walk (ended by NOT_FOUND, every step at one
///    generation), a property, a QueryVariableInfo result. Errors, BUFFER_TOO_SMALL for a
///    variable larger than the MM payload, and failed SVSM calls are never kept.
/// 4. The rest is an assumption the model enforces and a real driver must state: every
///    SetVariable that reaches the store goes through this one driver instance. In the
///    model, commands sent to a live mount's control socket run on the mount's driver;
///    the firmware model writes only before the driver is probed; a second Machine cannot
///    open the same store (its lock). A real SVSM with other clients (another VMPL, a
///    host-side tool, firmware runtime services called around the driver) breaks it; then
///    `sharedGeneration` is the remedy, a design proposal modelled privately: the SVSM
///    bumps a counter on every change of its store and publishes it in a guest page the
///    driver registered (as edk2's VariableSmm publishes CACHE_INFO_FLAG.PendingUpdate in
///    runtime memory), and the cache empties itself whenever the counter moved. Reading it
///    costs a memory load, not a world switch; no MM message changes.
///
/// Values read from the SVSM are durable (VariableService answers a read only once every
/// change it could see is on disk), so the cache never holds a value a crash could undo.
extension SvsmVariableDriver {
    /// What a cache miss asks GetVariable for at least: one page of data. Asking for the
    /// whole payload (64 KiB) would copy it across the boundary twice for every miss; a
    /// larger variable answers BUFFER_TOO_SMALL with its size and is fetched again at that
    /// size, as without the cache.
    public static let cacheFetchSize = 4096
}

public final class DriverVariableCache: @unchecked Sendable {
    public struct Statistics: Sendable, Equatable {
        /// Answered from the cache.
        public var hits = 0
        /// Sent to the SVSM because the cache did not know the answer.
        public var misses = 0
        /// Sent to the SVSM because a write was in flight.
        public var bypasses = 0
        /// Answers kept.
        public var fills = 0
        /// Fills dropped because a write began or ended while they were fetched.
        public var droppedFills = 0
        /// Times the whole cache was emptied (by a write, or a moved shared generation).
        public var invalidations = 0
    }

    enum Cached: Sendable { case present(VariableAttributes, [UInt8]), absent }

    /// What a lookup found: the answer, or a ticket to fill it after asking the SVSM (nil:
    /// do not fill, a write is in flight).
    enum Lookup<T> {
        case hit(T)
        case miss(FillToken?)
    }

    struct FillToken: Sendable {
        let generation: UInt64
        let shared: UInt64?
    }

    /// A GetNextVariableName answer from the cached walk.
    enum NameAnswer: Sendable {
        case next(VariableKey)
        /// After the last name: NOT_FOUND.
        case end
        /// The previous name is not one the walk returned: INVALID_PARAMETER, as the store
        /// answers for a name it does not have (or hides at runtime).
        case unknownPrevious
    }

    private struct State {
        var generation: UInt64 = 0
        var writersInFlight = 0
        var sharedSeen: UInt64?
        var variables: [VariableKey: Cached] = [:]
        /// The store's names in GetNextVariableName order, once a whole walk was seen.
        var names: [VariableKey]?
        var nameIndex: [VariableKey: Int] = [:]
        /// Walks being recorded, by the last name they returned (the empty key: started).
        var walks: [VariableKey: (generation: UInt64, shared: UInt64?, keys: [VariableKey])] = [:]
        var properties: [VariableKey: VariableProperty] = [:]
        var storageInfo: [UInt32: VariableStorageInfo] = [:]
        var statistics = Statistics()

        mutating func clear() {
            variables.removeAll(keepingCapacity: true)
            names = nil
            nameIndex.removeAll(keepingCapacity: true)
            walks.removeAll()
            properties.removeAll()
            storageInfo.removeAll()
            statistics.invalidations += 1
        }
    }

    private let state = Locked(State())
    /// The design proposal's shared page, if modelled: the SVSM's store generation.
    private let sharedGeneration: (@Sendable () -> UInt64)?

    public init(sharedGeneration: (@Sendable () -> UInt64)? = nil) {
        self.sharedGeneration = sharedGeneration
    }

    public var statistics: Statistics { state.withLock { $0.statistics } }

    /// With the lock held: empty the cache if the shared generation moved; the token a fill
    /// started now must carry.
    private func check(_ s: inout State) -> FillToken? {
        if let probe = sharedGeneration {
            let g = probe()
            if s.sharedSeen != g {
                if s.sharedSeen != nil { s.clear() }
                s.sharedSeen = g
            }
        }
        guard s.writersInFlight == 0 else { return nil }
        return FillToken(generation: s.generation, shared: s.sharedSeen)
    }

    /// Whether a fill that started with `token` may be kept now.
    private func stillValid(_ token: FillToken, _ s: inout State) -> Bool {
        guard s.writersInFlight == 0, s.generation == token.generation else { return false }
        if let probe = sharedGeneration {
            let g = probe()
            guard g == token.shared, s.sharedSeen == g else { return false }
        }
        return true
    }

    private func lookup<T>(_ find: (inout State) -> T?) -> Lookup<T> {
        state.withLock { s in
            let token = check(&s)
            guard let token else { s.statistics.bypasses += 1; return .miss(nil) }
            if let v = find(&s) { s.statistics.hits += 1; return .hit(v) }
            s.statistics.misses += 1
            return .miss(token)
        }
    }

    private func fill(_ token: FillToken?, _ body: (inout State) -> Void) {
        guard let token else { return }
        state.withLock { s in
            guard stillValid(token, &s) else { s.statistics.droppedFills += 1; return }
            body(&s)
            s.statistics.fills += 1
        }
    }

    // MARK: variables

    func variable(_ key: VariableKey) -> Lookup<Cached> { lookup { $0.variables[key] } }

    func fillVariable(_ key: VariableKey, _ value: Cached, _ token: FillToken?) {
        fill(token) { $0.variables[key] = value }
    }

    // MARK: names

    func nextName(after key: VariableKey) -> Lookup<NameAnswer> {
        lookup { s -> NameAnswer? in
            guard let names = s.names else { return nil }
            let next: Int
            if key.name.isEmpty { next = 0 } else {
                guard let i = s.nameIndex[key] else { return .unknownPrevious }
                next = i + 1
            }
            return next < names.count ? .next(names[next]) : .end
        }
    }

    /// Records one step of a walk the caller made through the SVSM; a walk seen whole, at
    /// one generation, becomes the cached name list.
    func recordWalkStep(after key: VariableKey, _ answer: GetNextVariableNameResult, _ token: FillToken?) {
        guard let token else { return }
        state.withLock { s in
            guard stillValid(token, &s) else { s.walks.removeAll(); return }
            let from = key.name.isEmpty ? VariableKey(guid: .zero, name: []) : key
            var walk: (generation: UInt64, shared: UInt64?, keys: [VariableKey])
            if key.name.isEmpty {
                walk = (token.generation, token.shared, [])
            } else {
                guard let w = s.walks[from], w.generation == token.generation, w.shared == token.shared else { return }
                walk = w
            }
            switch answer {
            case .next(let k):
                if !key.name.isEmpty { s.walks[from] = nil }
                if s.walks.count > 64 { s.walks.removeAll() }  // abandoned walks
                walk.keys.append(k)
                s.walks[k] = walk
            case .error(.notFound):
                s.walks[from] = nil
                var index: [VariableKey: Int] = [:]
                for (i, k) in walk.keys.enumerated() {
                    guard index[k] == nil else { return }  // a name twice: not a store's walk
                    index[k] = i
                }
                s.names = walk.keys
                s.nameIndex = index
                s.statistics.fills += 1
            case .bufferTooSmall:
                if key.name.isEmpty { s.walks[from] = walk }  // the same step again, larger
            case .error:
                s.walks[from] = nil
            }
        }
    }

    // MARK: properties and QueryVariableInfo

    func property(_ key: VariableKey) -> Lookup<VariableProperty> { lookup { $0.properties[key] } }

    func fillProperty(_ key: VariableKey, _ p: VariableProperty, _ token: FillToken?) {
        fill(token) { $0.properties[key] = p }
    }

    func storageInfo(_ attributes: UInt32) -> Lookup<VariableStorageInfo> { lookup { $0.storageInfo[attributes] } }

    func fillStorageInfo(_ attributes: UInt32, _ info: VariableStorageInfo, _ token: FillToken?) {
        fill(token) { $0.storageInfo[attributes] = info }
    }

    // MARK: writes

    /// Just before a SetVariable goes to the SVSM: empty the cache and step aside.
    func beginWrite() {
        state.withLock { s in
            s.writersInFlight += 1
            s.generation &+= 1
            s.clear()
        }
    }

    /// Just after the SetVariable returned (or failed): empty the cache again — readers
    /// that bypassed it may have fetched either value — and let fills in again.
    func endWrite() {
        state.withLock { s in
            s.generation &+= 1
            s.clear()
            s.writersInFlight -= 1
        }
    }

    /// Empties the cache (for callers that change the store some other way).
    public func invalidate() {
        state.withLock { s in s.generation &+= 1; s.clear() }
    }
}
