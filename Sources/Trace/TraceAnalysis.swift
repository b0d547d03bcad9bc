import EfiTypes
import Foundation
import Guest
import MmWire
import SvsmAbi

/// Reading `--trace` files back: summaries for people, and the Chrome trace-event format
/// that Perfetto and chrome://tracing open.
public struct TraceRecord: Sendable, Equatable {
    public var startNanoseconds: UInt64
    public var durationNanoseconds: UInt64
    public var vcpu: Int
    public var caa: String
    public var call: String
    public var result: String
    public var attempts: Int
    public var mmFunction: String?
    public var efiStatus: String?
    public var registersIn: [String: String]
    public var registersOut: [String: String]
    /// The operation that made the call, if the trace names it (`op`, `op_id`).
    public var operation: String? = nil
    public var operationId: UInt64? = nil
    public var requestBytes = 0
    public var replyBytes = 0
    /// The world-switch cost the trace was written with (`ws_ns`; 0 when not modelled).
    public var worldSwitchNanoseconds: UInt64 = 0

    public var failed: Bool { result != "SVSM_SUCCESS" }
    public var isMmRequest: Bool { call == "SVSM_UEFI_MM_REQUEST" }
}

public enum TraceFileError: Error, CustomStringConvertible {
    case unreadable(String)
    case badLine(Int, String)
    public var description: String {
        switch self {
        case .unreadable(let p): return "cannot read the trace file \(p)"
        case .badLine(let n, let why): return "trace line \(n): \(why)"
        }
    }
}

public enum TraceAnalysis {
    public static func read(path: String) throws(TraceFileError) -> [TraceRecord] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw .unreadable(path) }
        var out: [TraceRecord] = []
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: true).enumerated() {
            guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                throw .badLine(i + 1, "not a JSON object")
            }
            func need<T>(_ k: String, _ t: T.Type) throws(TraceFileError) -> T {
                guard let v = obj[k] as? T else { throw .badLine(i + 1, "missing or mistyped field '\(k)'") }
                return v
            }
            let t: NSNumber = try need("t_ns", NSNumber.self)
            let d: NSNumber = try need("dur_ns", NSNumber.self)
            var r = TraceRecord(startNanoseconds: t.uint64Value, durationNanoseconds: d.uint64Value,
                                vcpu: try need("vcpu", Int.self), caa: try need("caa", String.self),
                                call: try need("call", String.self), result: try need("result", String.self),
                                attempts: try need("attempts", Int.self),
                                mmFunction: obj["mm_function"] as? String, efiStatus: obj["efi_status"] as? String,
                                registersIn: try need("in", [String: String].self), registersOut: try need("out", [String: String].self))
            r.operation = obj["op"] as? String
            r.operationId = (obj["op_id"] as? NSNumber)?.uint64Value
            r.requestBytes = (obj["req_bytes"] as? NSNumber)?.intValue ?? 0
            r.replyBytes = (obj["reply_bytes"] as? NSNumber)?.intValue ?? 0
            r.worldSwitchNanoseconds = (obj["ws_ns"] as? NSNumber)?.uint64Value ?? 0
            out.append(r)
        }
        return out
    }

    public struct Row: Sendable, Equatable {
        public var key: String
        public var count: Int
        public var errors: Int
        public var p50: UInt64
        public var p90: UInt64
        public var p99: UInt64
        public var max: UInt64
    }

    static func percentile(_ sorted: [UInt64], _ p: Double) -> UInt64 {
        guard !sorted.isEmpty else { return 0 }
        let rank = Int((p * Double(sorted.count)).rounded(.up)) - 1
        return sorted[Swift.max(0, Swift.min(sorted.count - 1, rank))]
    }

    static func rows(_ records: [TraceRecord], key: (TraceRecord) -> String?, error: (TraceRecord) -> Bool) -> [Row] {
        var groups: [String: [TraceRecord]] = [:]
        for r in records { if let k = key(r) { groups[k, default: []].append(r) } }
        return groups.map { k, rs in
            let d = rs.map(\.durationNanoseconds).sorted()
            return Row(key: k, count: rs.count, errors: rs.filter(error).count,
                       p50: percentile(d, 0.5), p90: percentile(d, 0.9), p99: percentile(d, 0.99), max: d.last ?? 0)
        }.sorted { $0.count != $1.count ? $0.count > $1.count : $0.key < $1.key }
    }

    /// Per SVSM call, per MM function (errors = EFI error statuses), per vCPU.
    public static func summarize(_ records: [TraceRecord]) -> (calls: [Row], mmFunctions: [Row], vcpus: [Row]) {
        (rows(records, key: { $0.call }, error: { $0.failed }),
         rows(records, key: { $0.mmFunction }, error: { ($0.efiStatus ?? "EFI_SUCCESS") != "EFI_SUCCESS" || $0.failed }),
         rows(records, key: { "vCPU \($0.vcpu)" }, error: { $0.failed }))
    }

    /// What each kind of operation cost: operations (distinct `op_id`), SVSM calls, MM round
    /// trips, world switches (attempts) and bytes across the boundary.
    public struct OperationRow: Sendable, Equatable {
        public var operation: String
        public var operations = 0
        public var calls = 0
        public var mmRoundTrips = 0
        public var worldSwitches = 0
        public var requestBytes = 0
        public var replyBytes = 0
        /// Modelled time at `costNanoseconds` per world switch.
        public func modelledNanoseconds(costNanoseconds: UInt64) -> UInt64 { UInt64(worldSwitches) * costNanoseconds }
    }

    public static func operations(_ records: [TraceRecord]) -> [OperationRow] {
        var rows: [String: OperationRow] = [:]
        var ids: [String: Set<UInt64>] = [:]
        for r in records {
            let k = r.operation ?? "untagged"
            var row = rows[k] ?? OperationRow(operation: k)
            row.calls += 1
            if r.isMmRequest { row.mmRoundTrips += 1 }
            row.worldSwitches += r.attempts
            row.requestBytes += r.requestBytes
            row.replyBytes += r.replyBytes
            rows[k] = row
            if let id = r.operationId { ids[k, default: []].insert(id) }
        }
        for (k, set) in ids { rows[k]!.operations = set.count }
        return rows.values.sorted { $0.calls != $1.calls ? $0.calls > $1.calls : $0.operation < $1.operation }
    }

    /// The per-operation table: per operation kind, count, calls and round trips (total and
    /// per operation), bytes per operation, and modelled time per operation at each cost.
    public static func renderOperations(_ records: [TraceRecord], costs: [UInt64]) -> String {
        func pad(_ s: String, _ w: Int, left: Bool = false) -> String {
            let fill = String(repeating: " ", count: Swift.max(0, w - s.count))
            return left ? s + fill : fill + s
        }
        func per(_ n: Int, _ ops: Int) -> String { ops == 0 ? "-" : String(format: "%.2f", Double(n) / Double(ops)) }
        var out = "per operation (modelled time per operation at each world-switch cost)\n"
        out += "  " + pad("operation", 12, left: true) + pad("ops", 7) + pad("calls", 8) + pad("calls/op", 10) + pad("MM/op", 8)
            + pad("bytes/op", 10) + costs.map { pad("@\($0)ns µs/op", 16) }.joined() + "\n"
        for row in operations(records) {
            let bytes = row.requestBytes + row.replyBytes
            out += "  " + pad(row.operation, 12, left: true) + pad("\(row.operations)", 7) + pad("\(row.calls)", 8)
                + pad(per(row.calls, row.operations), 10) + pad(per(row.mmRoundTrips, row.operations), 8) + pad(per(bytes, row.operations), 10)
                + costs.map { c in
                    pad(row.operations == 0 ? "-" : String(format: "%.2f", Double(row.modelledNanoseconds(costNanoseconds: c)) / Double(row.operations) / 1000), 16)
                }.joined() + "\n"
        }
        return out
    }

    public static func render(_ records: [TraceRecord], costs: [UInt64] = []) -> String {
        let s = summarize(records)
        var out = "\(records.count) SVSM calls, \(records.filter(\.failed).count) failed\n"
        let recorded = Set(records.map(\.worldSwitchNanoseconds)).filter { $0 > 0 }.sorted()
        let modelled = costs.isEmpty ? recorded : costs
        if !modelled.isEmpty || records.contains(where: { $0.operation != nil }) {
            let total = records.reduce(0) { $0 + $1.attempts }
            out += "world switches: \(total)" + modelled.map { String(format: "; %.3f ms at %d ns each", Double(total * Int($0)) / 1e6, Int($0)) }.joined() + "\n\n"
            out += renderOperations(records, costs: modelled)
        }
        func pad(_ s: String, _ w: Int, left: Bool = false) -> String {
            let fill = String(repeating: " ", count: Swift.max(0, w - s.count))
            return left ? s + fill : fill + s
        }
        func table(_ title: String, _ rows: [Row]) {
            out += "\n\(title)\n"
            out += "  " + pad("name", 36, left: true) + pad("count", 8) + pad("errors", 8) + pad("p50 ns", 11) + pad("p90 ns", 11)
                + pad("p99 ns", 11) + pad("max ns", 11) + "\n"
            for r in rows {
                out += "  " + pad(r.key, 36, left: true) + pad("\(r.count)", 8) + pad("\(r.errors)", 8) + pad("\(r.p50)", 11)
                    + pad("\(r.p90)", 11) + pad("\(r.p99)", 11) + pad("\(r.max)", 11) + "\n"
            }
        }
        table("per SVSM call", s.calls)
        table("per MM function (errors: EFI status other than EFI_SUCCESS)", s.mmFunctions)
        table("per vCPU", s.vcpus)
        return out
    }

    /// The Chrome trace-event JSON object format: one complete ("X") event per call on a
    /// track per vCPU, timestamps in microseconds, plus thread-name metadata.
    public static func chromeTrace(_ records: [TraceRecord]) -> [String: Any] {
        let origin = records.map(\.startNanoseconds).min() ?? 0
        var events: [[String: Any]] = []
        for v in Set(records.map(\.vcpu)).sorted() {
            events.append(["name": "thread_name", "ph": "M", "pid": 1, "tid": v, "args": ["name": "vCPU \(v)"]])
        }
        events.append(["name": "process_name", "ph": "M", "pid": 1, "tid": 0, "args": ["name": "SVSM calls"]])
        for r in records {
            var args: [String: Any] = ["caa": r.caa, "result": r.result, "attempts": r.attempts,
                                       "rax_in": r.registersIn["rax"] ?? "", "rcx_in": r.registersIn["rcx"] ?? "",
                                       "rdx_in": r.registersIn["rdx"] ?? "", "r8_in": r.registersIn["r8"] ?? "",
                                       "rax_out": r.registersOut["rax"] ?? "", "rcx_out": r.registersOut["rcx"] ?? ""]
            if let f = r.mmFunction { args["mm_function"] = f }
            if let s = r.efiStatus { args["efi_status"] = s }
            events.append(["name": r.mmFunction.map { "\(r.call) \($0)" } ?? r.call, "cat": r.failed ? "svsm,error" : "svsm",
                           "ph": "X", "ts": Double(r.startNanoseconds - origin) / 1000, "dur": Double(r.durationNanoseconds) / 1000,
                           "pid": 1, "tid": r.vcpu, "args": args])
        }
        return ["traceEvents": events, "displayTimeUnit": "ns"]
    }
}
