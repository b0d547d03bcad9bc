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

    public var failed: Bool { result != "SVSM_SUCCESS" }
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
            out.append(TraceRecord(startNanoseconds: t.uint64Value, durationNanoseconds: d.uint64Value,
                                   vcpu: try need("vcpu", Int.self), caa: try need("caa", String.self),
                                   call: try need("call", String.self), result: try need("result", String.self),
                                   attempts: try need("attempts", Int.self),
                                   mmFunction: obj["mm_function"] as? String, efiStatus: obj["efi_status"] as? String,
                                   registersIn: try need("in", [String: String].self), registersOut: try need("out", [String: String].self)))
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

    public static func render(_ records: [TraceRecord]) -> String {
        let s = summarize(records)
        var out = "\(records.count) SVSM calls, \(records.filter(\.failed).count) failed\n"
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
