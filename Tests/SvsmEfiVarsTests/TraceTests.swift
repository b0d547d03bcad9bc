import Foundation
import Testing
import TestSupport
@testable import Driver
@testable import EfiTypes
@testable import Efivarfs
@testable import Guest
@testable import Hardware
@testable import Host
@testable import MmWire
@testable import Platform
@testable import Svsm
@testable import SvsmAbi
@testable import Trace
@testable import VariableService

@Suite("Trace files")
struct TraceTests {
    static func record(_ vcpu: UInt32, _ dur: UInt64, function: SmmVariableFunction? = .getVariable, status: EfiStatus? = .success,
                       error: SvsmCallError? = nil) -> SvsmCallRecord {
        var r = SvsmCallRecord(startNanoseconds: 1_000_000 + dur, durationNanoseconds: dur, apicId: vcpu, caa: GuestPhysicalAddress(0x1000),
                               call: .uefiMmRequest, input: SvsmRegisters(rax: SvsmCallId.uefiMmRequest.rax, rcx: 0x2000, rdx: 0x10000),
                               output: SvsmRegisters(rax: 0, rcx: 0x2000, rdx: 0x10000), attempts: 1, callPendingAtResume: error == .notExecuted ? 1 : 0, error: error)
        r.mmFunction = function
        r.efiStatus = status
        return r
    }

    @Test("a trace line is one JSON object with the documented fields")
    func lineGolden() {
        let line = TraceWriter.line(Self.record(3, 1500, status: .notFound))
        #expect(line == #"{"t_ns":1001500,"dur_ns":1500,"vcpu":3,"caa":"0x1000","call":"SVSM_UEFI_MM_REQUEST","protocol":4,"call_id":1,"in":{"rax":"0x400000001","rcx":"0x2000","rdx":"0x10000","r8":"0x0"},"out":{"rax":"0x0","rcx":"0x2000","rdx":"0x10000","r8":"0x0"},"result":"SVSM_SUCCESS","attempts":1,"mm_function":"GET_VARIABLE","efi_status":"EFI_NOT_FOUND"}"# + "\n")
    }

    @Test("summaries count calls and errors and give nearest-rank percentiles")
    func summary() throws {
        let path = NSTemporaryDirectory() + "trace-\(UUID().uuidString).jsonl"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let w = try TraceWriter(path: path)
        for d in 1...100 { w.svsmCallCompleted(Self.record(UInt32(d % 2), UInt64(d))) }
        w.svsmCallCompleted(Self.record(0, 7, function: .setVariable, status: .writeProtected))
        w.svsmCallCompleted(Self.record(1, 9, function: nil, status: nil, error: .notExecuted))
        w.flush()
        let records = try TraceAnalysis.read(path: path)
        #expect(records.count == 102)
        let s = TraceAnalysis.summarize(records)
        let call = try #require(s.calls.first { $0.key == "SVSM_UEFI_MM_REQUEST" })
        #expect(call.count == 102 && call.errors == 1)
        let get = try #require(s.mmFunctions.first { $0.key == "GET_VARIABLE" })
        #expect(get.count == 100 && get.errors == 0 && get.p50 == 50 && get.p90 == 90 && get.p99 == 99 && get.max == 100)
        #expect(s.mmFunctions.first { $0.key == "SET_VARIABLE" }?.errors == 1)
        #expect(s.vcpus.map(\.count).reduce(0, +) == 102)
        #expect(TraceAnalysis.render(records).contains("102 SVSM calls, 1 failed"))
    }

    @Test("the Chrome trace-event export validates; the validator catches missing fields")
    func chromeTrace() throws {
        let path = NSTemporaryDirectory() + "trace-\(UUID().uuidString).jsonl"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let w = try TraceWriter(path: path)
        for v in 0..<4 { w.svsmCallCompleted(Self.record(UInt32(v), 2000)) }
        w.flush()
        let json = TraceAnalysis.chromeTrace(try TraceAnalysis.read(path: path))
        let round = try JSONSerialization.jsonObject(with: try JSONSerialization.data(withJSONObject: json))
        #expect(ChromeTraceValidator.validate(round).isEmpty)
        let events = (round as! [String: Any])["traceEvents"] as! [[String: Any]]
        #expect(Set(events.filter { $0["ph"] as? String == "X" }.compactMap { $0["tid"] as? Int }) == [0, 1, 2, 3])
        #expect(events.filter { $0["ph"] as? String == "M" && $0["name"] as? String == "thread_name" }.count == 4)
        #expect(!ChromeTraceValidator.validate(["traceEvents": [["ph": "X", "name": "x", "pid": 1, "tid": 1, "ts": 0]]]).isEmpty)
        #expect(!ChromeTraceValidator.validate(["events": []]).isEmpty)
    }

    @Test("a malformed trace line is a clear error with its line number")
    func badTrace() throws {
        let path = NSTemporaryDirectory() + "trace-\(UUID().uuidString).jsonl"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Data("{\"t_ns\":1}\nnot json\n".utf8).write(to: URL(fileURLWithPath: path))
        #expect(throws: TraceFileError.self) { try TraceAnalysis.read(path: path) }
        do { _ = try TraceAnalysis.read(path: path) } catch { #expect(error.description.contains("trace line 1")) }
    }
}
