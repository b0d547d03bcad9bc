import EfiTypes
import Foundation
import Guest
import MmWire
import SvsmAbi

/// `--trace <file>`: one JSON object per SVSM call, one per line (JSON Lines).
///
/// Fields: `t_ns` (start, monotonic ns), `dur_ns`, `vcpu` (APIC ID), `caa` (GPA, hex),
/// `call` (name), `protocol`, `call_id`, `in` and `out` (`rax`, `rcx`, `rdx`, `r8` as hex
/// strings), `result` (SVSM result name, or NOT_EXECUTED / BAD_GHCB_RESPONSE),
/// `attempts`, and for protocol 4 `mm_function` and `efi_status` (names). When known:
/// `op` and `op_id` (the efivarfs or command operation that made the call), `req_bytes`
/// and `reply_bytes` (MM message bytes written to and read back from the MM buffer),
/// `ws_ns` (the modelled world-switch cost, `--world-switch`) and `model_ns` (the call's
/// modelled time: one world switch per attempt).
public final class TraceWriter: SvsmCallObserver {
    private let handle: FileHandle
    private let buffer = Locked([UInt8]())
    private let flushThreshold = 64 * 1024

    public struct OpenError: Error, CustomStringConvertible {
        public let path: String
        public let errno: Int32
        public var description: String { "cannot write the trace file \(path): \(String(cString: strerror(errno)))" }
    }

    public init(path: String) throws(OpenError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw OpenError(path: path, errno: errno) }
        handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
    }

    static func hex(_ v: UInt64) -> String { "\"0x" + String(v, radix: 16) + "\"" }

    static func line(_ r: SvsmCallRecord) -> String {
        func regs(_ x: SvsmRegisters) -> String {
            "{\"rax\":\(hex(x.rax)),\"rcx\":\(hex(x.rcx)),\"rdx\":\(hex(x.rdx)),\"r8\":\(hex(x.r8))}"
        }
        var s = "{\"t_ns\":\(r.startNanoseconds),\"dur_ns\":\(r.durationNanoseconds),\"vcpu\":\(r.apicId),"
        s += "\"caa\":\(hex(r.caa.rawValue)),\"call\":\"\(r.call.name)\",\"protocol\":\(r.call.protocolId),\"call_id\":\(r.call.callId),"
        s += "\"in\":\(regs(r.input)),\"out\":\(regs(r.output)),\"result\":\"\(r.resultName)\",\"attempts\":\(r.attempts)"
        if let f = r.mmFunction { s += ",\"mm_function\":\"\(f.name)\"" }
        if let st = r.efiStatus { s += ",\"efi_status\":\"\(st.name)\"" }
        if let op = r.operation { s += ",\"op\":\"\(op.kind)\",\"op_id\":\(op.id)" }
        if r.requestBytes > 0 || r.replyBytes > 0 { s += ",\"req_bytes\":\(r.requestBytes),\"reply_bytes\":\(r.replyBytes)" }
        if r.worldSwitchNanoseconds > 0 { s += ",\"ws_ns\":\(r.worldSwitchNanoseconds),\"model_ns\":\(r.modelledNanoseconds)" }
        return s + "}\n"
    }

    public func svsmCallCompleted(_ record: SvsmCallRecord) {
        let bytes = Array(TraceWriter.line(record).utf8)
        let full: [UInt8]? = buffer.withLock { b in
            b.append(contentsOf: bytes)
            guard b.count >= flushThreshold else { return nil }
            defer { b.removeAll(keepingCapacity: true) }
            return b
        }
        if let f = full { handle.write(Data(f)) }
    }

    /// Writes what is buffered.
    public func flush() {
        let pending = buffer.withLock { b -> [UInt8] in defer { b.removeAll() }; return b }
        if !pending.isEmpty { handle.write(Data(pending)) }
        try? handle.synchronize()
    }

    deinit { flush(); try? handle.close() }
}

/// Several observers as one.
public struct ObserverFanOut: SvsmCallObserver {
    public let observers: [any SvsmCallObserver]
    public let needsTiming: Bool
    public init(_ observers: [any SvsmCallObserver]) {
        self.observers = observers
        self.needsTiming = observers.contains { $0.needsTiming }
    }
    public func svsmCallCompleted(_ record: SvsmCallRecord) { for o in observers { o.svsmCallCompleted(record) } }
}

/// What the SVSM calls made for one kind of operation added up to.
public struct OperationCost: Sendable, Equatable {
    /// Distinct operations that made at least one call.
    public var operationsWithCalls = 0
    public var calls = 0
    /// Protocol-4 requests (SVSM_UEFI_MM_REQUEST): one MM round trip each.
    public var mmRoundTrips = 0
    /// World switches: the calls' attempts (a BUSY or INCOMPLETE answer costs another).
    public var worldSwitches = 0
    public var requestBytes = 0
    public var replyBytes = 0
    /// Simulated time at the configured world-switch cost.
    public var modelledNanoseconds: UInt64 = 0
    public init() {}

    public mutating func add(_ r: SvsmCallRecord) {
        calls += 1
        if r.call == .uefiMmRequest { mmRoundTrips += 1 }
        worldSwitches += r.attempts
        requestBytes += r.requestBytes
        replyBytes += r.replyBytes
        modelledNanoseconds &+= r.modelledNanoseconds
    }
}

/// Counters of SVSM calls: totals and failures per call and per MM function.
public final class CallStatistics: SvsmCallObserver {
    public struct Snapshot: Sendable, Equatable {
        /// By operation kind (`read`, `write`, ... ; calls made outside any operation under
        /// "untagged").
        public var perOperation: [String: OperationCost] = [:]
        /// The operation ids seen last per kind, to count operations that made calls.
        var lastOperationId: [String: UInt64] = [:]
        public var calls = 0
        public var failedCalls = 0
        public var perCall: [String: Int] = [:]
        public var perMmFunction: [String: Int] = [:]
        public var efiErrors = 0
        /// Error statuses by name (NOT_FOUND and BUFFER_TOO_SMALL are a normal part of reads
        /// and listings; the others are worth a look).
        public var perEfiStatus: [String: Int] = [:]
        public var vcpusUsed = Set<UInt32>()
    }
    /// What the lock guards: counters keyed by the calls' own typed values, named only when
    /// a snapshot is taken. Every SVSM call passes through here, so the common keys (a few
    /// call IDs, sixteen MM functions, a handful of operation kinds, APIC IDs) sit in short
    /// lists and arrays instead of hashed dictionaries: hashing five keys per call was a
    /// measurable part of a call's cost.
    private struct Tally {
        var perOperation: [(kind: String, cost: OperationCost, lastId: UInt64?)] = []
        var calls = 0
        var failedCalls = 0
        var perCall: [(SvsmCallId, count: Int)] = []
        /// By SmmVariableFunction raw value below 32; others in `otherMmFunctions`.
        var perMmFunction = [Int](repeating: 0, count: 32)
        var otherMmFunctions: [SmmVariableFunction: Int] = [:]
        var efiErrors = 0
        /// A short list too: every read's size query answers BUFFER_TOO_SMALL.
        var perEfiStatus: [(EfiStatus, count: Int)] = []
        /// APIC IDs seen below 4096, as a bitmap (the model's are small and dense); any
        /// larger one (a guest of serve-svsm chooses its own) in `otherVcpus`.
        var vcpusUsed: [Bool] = []
        var otherVcpus = Set<UInt32>()

        /// One more of `key` in a short counted list.
        static func count<K: Equatable>(_ key: K, in list: inout [(K, count: Int)]) {
            if let i = list.firstIndex(where: { $0.0 == key }) { list[i].count += 1 } else { list.append((key, 1)) }
        }
    }
    private let state = Locked(Tally())
    public init() {}
    /// Counts only: no times.
    public var needsTiming: Bool { false }
    public func svsmCallCompleted(_ r: SvsmCallRecord) {
        state.withLock { s in
            s.calls += 1
            if r.error != nil { s.failedCalls += 1 }
            Tally.count(r.call, in: &s.perCall)
            if let f = r.mmFunction {
                if f.rawValue < 32 { s.perMmFunction[Int(f.rawValue)] += 1 } else { s.otherMmFunctions[f, default: 0] += 1 }
            }
            if let st = r.efiStatus, st.isError {
                s.efiErrors += 1
                Tally.count(st, in: &s.perEfiStatus)
            }
            let apic = Int(r.apicId)
            if apic < 4096 {
                if apic >= s.vcpusUsed.count { s.vcpusUsed += [Bool](repeating: false, count: apic + 1 - s.vcpusUsed.count) }
                s.vcpusUsed[apic] = true
            } else {
                s.otherVcpus.insert(r.apicId)
            }
            let kind = r.operation?.kind ?? "untagged"
            let i: Int
            if let found = s.perOperation.firstIndex(where: { $0.kind == kind }) { i = found } else {
                s.perOperation.append((kind, OperationCost(), nil)); i = s.perOperation.count - 1
            }
            s.perOperation[i].cost.add(r)
            // Calls of one operation come from one thread in order; operations of one kind
            // may interleave, so this counts an operation again when another of its kind
            // came in between (exact for one client; the efivarfs counters are exact).
            if let id = r.operation?.id, s.perOperation[i].lastId != id {
                s.perOperation[i].lastId = id
                s.perOperation[i].cost.operationsWithCalls += 1
            }
        }
    }
    public var snapshot: Snapshot {
        let t = state.withLock { $0 }
        var s = Snapshot()
        for o in t.perOperation {
            s.perOperation[o.kind] = o.cost
            if let id = o.lastId { s.lastOperationId[o.kind] = id }
        }
        s.calls = t.calls
        s.failedCalls = t.failedCalls
        s.efiErrors = t.efiErrors
        s.vcpusUsed = Set(t.vcpusUsed.indices.filter { t.vcpusUsed[$0] }.map(UInt32.init)).union(t.otherVcpus)
        for (k, v) in t.perCall { s.perCall[k.name, default: 0] += v }
        for (raw, v) in t.perMmFunction.enumerated() where v > 0 {
            s.perMmFunction[SmmVariableFunction(rawValue: UInt64(raw)).name, default: 0] += v
        }
        for (k, v) in t.otherMmFunctions { s.perMmFunction[k.name, default: 0] += v }
        for (k, v) in t.perEfiStatus { s.perEfiStatus[k.name, default: 0] += v }
        return s
    }
}
