import Foundation
import Testing
import MmWire
import TestSupport

/// `stats` and `trace summarize` against a workload whose SVSM calls follow from the code:
/// a mount's enumeration (efivar_init: one GET_NEXT_VARIABLE_NAME per name and the final
/// NOT_FOUND, then a size query per name) and reads of BootOrder (efivarfs_file_read: a
/// size query and a fetch, two GET_VARIABLEs). Each read is one read(2) of the whole file;
/// the bridge opens files with direct I/O, so that is one FUSE READ and one efivarfs read.
@Suite("Per-operation accounting: stats and trace summarize", .serialized)
struct OperationAccountingTests {
    static let reads = 5
    static let variable = "BootOrder"
    /// UTF-16 with its NUL, as the MM payload carries the name.
    static let nameSize = (variable.utf16.count + 1) * 2

    /// What the mount shows before the workload: the files listed and BootOrder's data size.
    struct Store { let names: Int; let dataSize: Int }

    static func look(_ dir: String) throws -> Store {
        let names = try #require(Int(Shell.run("ls '\(dir)' | wc -l").out.trimmingCharacters(in: .whitespacesAndNewlines)))
        let size = try #require(Int(Shell.run("stat -c %s '\(dir)/\(variable)-\(globalGuid)'").out.trimmingCharacters(in: .whitespacesAndNewlines)))
        return Store(names: names, dataSize: size - 4)
    }

    static func readBootOrder(_ dir: String, times: Int) {
        for _ in 0..<times {
            let r = Shell.run("timeout 30 dd if='\(dir)/\(variable)-\(globalGuid)' of=/dev/null bs=4096 count=1 status=none")
            #expect(r.status == 0, "\(r.err)")
        }
    }

    /// MM bytes of one GetVariable of BootOrder asking for `asked` data bytes: the guest
    /// writes the communicate header, the SMM variable header and the access payload with
    /// its name and data area, and reads the message part back.
    static func getVariableBytes(asked: Int) -> (request: Int, reply: Int) {
        let message = SmmVariableHeader.size + AccessVariablePayload.nameOffset + nameSize + asked
        return (MmCommunicateHeader.size + message, message)
    }

    /// Bytes one efivarfs read of BootOrder moves: the size query (0 bytes asked) and the fetch.
    static func bytesPerRead(_ store: Store) -> (request: Int, reply: Int) {
        let q = getVariableBytes(asked: 0), f = getVariableBytes(asked: store.dataSize)
        return (q.request + f.request, q.reply + f.reply)
    }

    static func statsJson(_ dir: String) throws -> [String: Any] {
        let r = Shell.run("timeout 30 '\(Bridge.binary)' stats --json '\(dir)'")
        try #require(r.status == 0, "\(r.err)")
        return try #require(try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any], "\(r.out)")
    }

    /// The whitespace-separated cells of the first line of `text` whose first cell is `key`,
    /// within the lines after `header`.
    static func row(_ key: String, in text: String, after header: String) -> [String]? {
        guard let start = text.range(of: header) else { return nil }
        return text[start.upperBound...].split(separator: "\n").lazy
            .map { $0.split(separator: " ").map(String.init) }
            .first { $0.first == key }
    }

    @Test("stats: a read costs two GET_VARIABLEs, the enumeration 2 × names + 1 calls; bytes and modelled time follow")
    func statsWithoutCache() throws {
        let ws = 5_000
        try Bridge.withMount("--world-switch 5us") { dir in
            let store = try Self.look(dir)
            Self.readBootOrder(dir, times: Self.reads)
            let o = try Self.statsJson(dir)
            #expect(o["world_switch_ns"] as? Int == ws)
            let counted = try #require(o["efivarfs_operations"] as? [String: Int])
            #expect(counted["read"] == Self.reads && counted["enumerate"] == 1, "\(counted)")
            let ops = try #require(o["operations"] as? [String: [String: Int]])
            let bytes = Self.bytesPerRead(store)
            #expect(ops["read"] == ["operations_with_calls": Self.reads, "svsm_calls": 2 * Self.reads, "mm_round_trips": 2 * Self.reads,
                                    "world_switches": 2 * Self.reads, "request_bytes": Self.reads * bytes.request,
                                    "reply_bytes": Self.reads * bytes.reply, "modelled_ns": 2 * Self.reads * ws])
            let enumerate = try #require(ops["enumerate"])
            let walk = 2 * store.names + 1
            #expect(enumerate["svsm_calls"] == walk && enumerate["world_switches"] == walk && enumerate["modelled_ns"] == walk * ws
                    && enumerate["operations_with_calls"] == 1, "\(enumerate), \(store.names) names")
            #expect(o["driver_cache"] == nil)

            let text = Shell.run("timeout 30 '\(Bridge.binary)' stats '\(dir)'")
            #expect(text.status == 0, "\(text.err)")
            #expect(text.out.contains("modelled at \(ws) ns per world switch"), "\(text.out)")
            // operation, ops, calls, MM trips, switches, bytes, modelled µs (total)
            let r = Self.row("read", in: text.out, after: "per operation")
            #expect(r == ["read", "\(Self.reads)", "\(2 * Self.reads)", "\(2 * Self.reads)", "\(2 * Self.reads)",
                          "\(Self.reads * (bytes.request + bytes.reply))", String(format: "%.1f", Double(2 * Self.reads * ws) / 1000)],
                    "\(text.out)")
            #expect(Self.row("enumerate", in: text.out, after: "per operation")?.prefix(5) == ["enumerate", "1", "\(walk)", "\(walk)", "\(walk)"])
        }
    }

    @Test("stats with --driver-cache: the enumeration fills the cache (2 × names + 1 misses), every read after it is two hits and no call")
    func statsWithCache() throws {
        try Bridge.withMount("--driver-cache") { dir in
            let store = try Self.look(dir)
            Self.readBootOrder(dir, times: Self.reads)
            let o = try Self.statsJson(dir)
            let counted = try #require(o["efivarfs_operations"] as? [String: Int])
            #expect(counted["read"] == Self.reads, "\(counted)")
            let ops = try #require(o["operations"] as? [String: [String: Int]])
            #expect(ops["read"] == nil, "reads reached the SVSM: \(ops["read"] ?? [:])")
            #expect(ops["enumerate"]?["svsm_calls"] == 2 * store.names + 1)
            let cache = try #require(o["driver_cache"] as? [String: Int])
            // The walk's steps and the size queries miss once each; a read is a size query
            // and a fetch, both answered from what the enumeration kept.
            #expect(cache["misses"] == 2 * store.names + 1 && cache["hits"] == 2 * Self.reads && cache["bypasses"] == 0, "\(cache)")

            let text = Shell.run("timeout 30 '\(Bridge.binary)' stats '\(dir)'")
            #expect(text.out.contains("driver cache: \(2 * Self.reads) hits, \(2 * store.names + 1) misses"), "\(text.out)")
            // An operation without calls is still listed, with its count.
            #expect(Self.row("read", in: text.out, after: "per operation") == ["read", "\(Self.reads)", "0"], "\(text.out)")
        }
    }

    @Test("trace summarize --world-switch: per operation, calls and MM trips per operation, bytes per operation, modelled µs per operation at each cost")
    func traceSummarizePerOperation() throws {
        let tmp = Bridge.makeTempDir()
        defer { Shell.run("rm -rf '\(tmp)'") }
        let trace = "\(tmp)/svsm.jsonl"
        var seen: Store?
        try Bridge.withMount("--world-switch 5us --trace '\(trace)'") { dir in
            seen = try Self.look(dir)
            Self.readBootOrder(dir, times: Self.reads)
        }
        let store = try #require(seen)
        let bytes = Self.bytesPerRead(store)
        let walk = 2 * store.names + 1
        func perOp(_ n: Int, _ ops: Int) -> String { String(format: "%.2f", Double(n) / Double(ops)) }

        let r = Shell.run("timeout 60 '\(Bridge.binary)' trace summarize --world-switch 1us,slow-host '\(trace)'")
        #expect(r.status == 0, "\(r.err)")
        let first = try #require(r.out.split(separator: "\n").first)
        let calls = try #require(Int(first.split(separator: " ")[0]))
        #expect(first.hasSuffix(" 0 failed"))
        // No faults: one world switch per call.
        #expect(r.out.contains(String(format: "world switches: %d; %.3f ms at 1000 ns each; %.3f ms at 20000 ns each",
                                      calls, Double(calls) * 1e3 / 1e6, Double(calls) * 2e4 / 1e6)), "\(r.out)")
        // operation, ops, calls, calls/op, MM/op, bytes/op, µs/op at 1 µs, µs/op at 20 µs
        #expect(Self.row("read", in: r.out, after: "per operation") == [
            "read", "\(Self.reads)", "\(2 * Self.reads)", "2.00", "2.00", perOp(Self.reads * (bytes.request + bytes.reply), Self.reads),
            "2.00", "40.00"], "\(r.out)")
        let e = try #require(Self.row("enumerate", in: r.out, after: "per operation"), "\(r.out)")
        #expect(e.prefix(5) == ["enumerate", "1", "\(walk)", "\(walk).00", "\(walk).00"] && e.suffix(2) == [perOp(walk, 1), perOp(walk * 20, 1)], "\(e)")

        // Without --world-switch: at the cost the trace was written with.
        let own = Shell.run("timeout 60 '\(Bridge.binary)' trace summarize '\(trace)'")
        #expect(Self.row("read", in: own.out, after: "per operation")?.last == "10.00", "\(own.out)")
        #expect(own.out.contains(String(format: "; %.3f ms at 5000 ns each", Double(calls) * 5e3 / 1e6)))

        let bad = Shell.run("'\(Bridge.binary)' trace summarize --world-switch fast '\(trace)'")
        #expect(bad.status != 0 && bad.err.contains("--world-switch"))
    }

    @Test("a rewrite of a variable (open with O_TRUNC, write, close) asks the daemon for no xattr: GETXATTR is answered ENOSYS once, and getxattr(2) still fails with EOPNOTSUPP")
    func rewriteAsksNoXattr() throws {
        try requirePrerequisites(.attr)
        try Bridge.withMount("") { dir in
            let t = "\(dir)/Timeout-\(globalGuid)"
            func rewrite() { #expect(Shell.run("printf '\\x07\\x00\\x00\\x00\\x05\\x00' > '\(t)'").status == 0) }
            func requests() throws -> [String: Int] {
                try #require(try Self.statsJson(dir)["fuse_requests"] as? [String: Int])
            }
            rewrite()   // the kernel's first GETXATTR (security.capability) is answered here
            let before = try requests()
            let rewrites = 10
            for _ in 0..<rewrites { rewrite() }
            let after = try requests()
            // Before the fix every rewrite sent one (answered EOPNOTSUPP, which the kernel
            // does not remember).
            #expect((after["GETXATTR"] ?? 0) - (before["GETXATTR"] ?? 0) == 0, "\(before) -> \(after)")
            #expect((after["OPEN"] ?? 0) - (before["OPEN"] ?? 0) == rewrites && (after["WRITE"] ?? 0) - (before["WRITE"] ?? 0) == rewrites)
            #expect(Shell.run("getfattr -n security.capability '\(t)'").err.contains("Operation not supported"))
            #expect(Shell.run("getfattr -n user.x '\(t)'").err.contains("Operation not supported"))
            #expect(Shell.run("od -An -tx1 '\(t)'").out.split(separator: " ").map(String.init).joined(separator: " ").hasPrefix("07 00 00 00 05 00"))
        }
    }
}
