import Foundation
import Testing
import TestSupport
import SvsmEfiVars

/// Parses a --trace file (JSON Lines).
func readTrace(_ path: String) throws -> [[String: Any]] {
    let text = try String(contentsOfFile: path, encoding: .utf8)
    return try text.split(separator: "\n").map { line in
        try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "not a JSON object: \(line)")
    }
}

@Suite("SVSM platform on a real mount", .serialized)
struct SvsmPlatformMountTests {
    @Test("scenario caa-relocation exits 0 and tells the story")
    func scenarioCommand() {
        let r = Shell.run("'\(Bridge.binary)' scenario caa-relocation --vcpus 4")
        #expect(r.status == 0, "\(r.out)\(r.err)")
        #expect(r.out.contains("xchg(call_pending, 0) on resume returned 1"))
        #expect(r.out.contains("RDMSR 0xC001F000"))
        #expect(r.out.contains("5 of 5 steps behaved as expected"))
        #expect(Shell.run("'\(Bridge.binary)' scenario caa-relocation --vcpus 0").status != 0)
    }

    @Test("--trace writes one JSON object per SVSM call whose counts match the operations done")
    func trace() throws {
        let tmp = Bridge.makeTempDir()
        defer { Shell.run("rm -rf '\(tmp)'") }
        let tracePath = "\(tmp)/trace.jsonl"
        var listed = 0
        try Bridge.withMount("--trace '\(tracePath)'") { dir in
            listed = Int(Shell.run("ls '\(dir)' | wc -l").out.trimmingCharacters(in: .whitespacesAndNewlines))!
            for _ in 0..<3 { Shell.run("stat -f '\(dir)' > /dev/null") }
            #expect(Shell.run("printf '\\x07\\x00\\x00\\x00hi' > '\(dir)/Traced-\(testGuid)'").status == 0)
        }
        let records = try readTrace(tracePath)
        for r in records {
            for field in ["t_ns", "dur_ns", "vcpu", "caa", "call", "in", "out", "result", "attempts"] {
                #expect(r[field] != nil, "missing \(field)")
            }
            #expect(r["result"] as? String == "SVSM_SUCCESS")
        }
        let mm = records.filter { $0["call"] as? String == "SVSM_UEFI_MM_REQUEST" }
        func count(_ f: String) -> Int { mm.filter { $0["mm_function"] as? String == f }.count }
        // 3 statfs + the storage check of one NV write.
        #expect(count("QUERY_VARIABLE_INFO") == 4)
        #expect(count("VAR_CHECK_VARIABLE_PROPERTY_GET") == 1)
        // Mount enumeration: one GET_NEXT per listed variable plus the final NOT_FOUND.
        #expect(count("GET_NEXT_VARIABLE_NAME") == listed + 1)
        // The firmware's boot-time writes plus ours.
        let sets = mm.filter { $0["mm_function"] as? String == "SET_VARIABLE" }
        // The firmware writes each of OVMF's defaults once, through the secrets-page CAA.
        #expect(sets.filter { ($0["caa"] as? String) == "0xa000" }.count == OvmfDefaults.entries.count)
        #expect(sets.count == OvmfDefaults.entries.count + 1)
        #expect(mm.filter { $0["efi_status"] as? String == "EFI_NOT_FOUND" }.count >= 1)
        #expect(records.contains { $0["call"] as? String == "SVSM_CORE_REMAP_CA" })
        #expect(records.filter { $0["call"] as? String == "SVSM_CORE_CREATE_VCPU" }.count == 6)  // 3 APs, firmware and OS
    }

    @Test("faults reach the mount as Linux would show them: EIO when the SVSM never runs the call")
    func faultsOnTheMount() throws {
        try Bridge.withMount("--fault drop-exit=1") { dir in
            // Enumeration failed at mount: the directory is empty, as a partial efivarfs listing.
            #expect(Shell.run("ls '\(dir)' | wc -l").out.trimmingCharacters(in: .whitespacesAndNewlines) == "0")
            let w = Shell.run("printf '\\x07\\x00\\x00\\x00x' > '\(dir)/F-\(testGuid)'")
            #expect(w.err.contains("Input/output error"), "\(w.err)")
            #expect(Shell.run("stat -f -c %b '\(dir)'").out.trimmingCharacters(in: .whitespacesAndNewlines) == "0")  // statfs never fails
        }
        try Bridge.withMount("--fault busy=0.5 --fault incomplete=0.3 --max-retries 64") { dir in
            // Retried with the same registers: the client never notices.
            for _ in 0..<20 {
                #expect(Shell.run("od -An -tx1 '\(dir)/BootOrder-\(globalGuid)'").out.contains("07 00 00 00 01 00 02 00 00 00"))
            }
        }
        try Bridge.withMount("--fault busy=1 --max-retries 2") { dir in
            #expect(Shell.run("printf '\\x07\\x00\\x00\\x00x' > '\(dir)/B-\(testGuid)'").err.contains("Input/output error"))
        }
        let bad = Shell.run("'\(Bridge.binary)' mount --fault nonsense=2 /tmp")
        #expect(bad.status != 0 && bad.err.contains("bad fault specification"))
    }

    @Test("--vcpus 512: every vCPU carries reads and writes at once, with zero failed calls")
    func fiveHundredTwelveVcpus() throws {
        let tmp = Bridge.makeTempDir()
        defer { Shell.run("rm -rf '\(tmp)'") }
        let tracePath = "\(tmp)/trace.jsonl"
        try Bridge.withMount("--vcpus 512 --trace '\(tracePath)'") { dir in
            let script = """
                for i in $(seq 1 512); do
                  ( f='\(dir)/Load'$i'-\(testGuid)'
                    printf '\\x07\\x00\\x00\\x00value'$i > "$f" || echo "write $i failed"
                    cat '\(dir)/BootOrder-\(globalGuid)' > /dev/null || echo "read $i failed"
                    [ "$(tail -c +5 "$f")" = "value$i" ] || echo "readback $i failed" ) &
                done
                wait
                """
            let r = Shell.run(script)
            #expect(r.out.isEmpty, "\(r.out)")
            #expect(Int(Shell.run("ls '\(dir)' | grep -c '^Load'").out.trimmingCharacters(in: .whitespacesAndNewlines)) == 512)
        }
        let records = try readTrace(tracePath)
        let failed = records.filter { $0["result"] as? String != "SVSM_SUCCESS" }
        #expect(failed.isEmpty, "\(failed.prefix(3))")
        let vcpus = Set(records.compactMap { $0["vcpu"] as? Int })
        #expect(vcpus.count == 512)
    }
}

@Suite("The README's prototyping example", .serialized)
struct PrototypingExampleTests {
    @Test("mount with --trace and --vcpus, run efibootmgr, summarize, export a timeline that validates")
    func prototyping() throws {
        try requirePrerequisites(.efibootmgr)
        let tmp = Bridge.makeTempDir()
        defer { Shell.run("rm -rf '\(tmp)'") }
        try Bridge.withMount("--vcpus 8 --trace '\(tmp)/svsm.jsonl'") { dir in
            #expect(Shell.run("efibootmgr -v", environment: ["EFIVARFS_PATH": dir + "/"]).status == 0)
        }
        let summary = Shell.run("'\(Bridge.binary)' trace summarize '\(tmp)/svsm.jsonl'")
        #expect(summary.status == 0 && summary.out.contains("per MM function") && summary.out.contains("GET_VARIABLE"))
        #expect(summary.out.contains(" 0 failed"))
        let export = Shell.run("'\(Bridge.binary)' trace export --perfetto '\(tmp)/svsm.jsonl' '\(tmp)/timeline.json'")
        #expect(export.status == 0, "\(export.err)")
        let json = try JSONSerialization.jsonObject(with: try Data(contentsOf: URL(fileURLWithPath: "\(tmp)/timeline.json")))
        let events = try #require((json as? [String: Any])?["traceEvents"] as? [[String: Any]])
        #expect(events.count > 10)
        for e in events {
            #expect(e["ph"] is String && e["name"] is String && e["pid"] is Int && e["tid"] is Int)
            if e["ph"] as? String == "X" { #expect(e["ts"] is NSNumber && e["dur"] is NSNumber) }
        }
        let bad = Shell.run("'\(Bridge.binary)' trace summarize /nonexistent.jsonl")
        #expect(bad.status != 0 && bad.err.contains("cannot read the trace file"))
    }
}
