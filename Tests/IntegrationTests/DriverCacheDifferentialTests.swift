import Foundation
import Testing
import TestSupport
import Driver
import EfiTypes
import Efivarfs
import Guest
import Host
import MmWire
import Platform
import Trace

/// The driver cache (`--driver-cache`) against the driver without it: the same operation
/// sequences on two freshly booted machines, one with the cache and one without, must give
/// identical answers at every step — reads, listings, sizes, statfs, refusals — through
/// Secure Boot mode changes (PK, KEK, db, dbx, PK deleted), with injected faults, and with
/// concurrent writers: no stale read, ever. (In process, with real efitools-signed updates.)
@Suite("Driver cache differential: cache on and off answer alike", .serialized)
struct DriverCacheDifferentialTests {
    static let root = Efivarfs.Caller(uid: 0, gid: 0)

    /// A booted machine with an efivarfs over its driver, and its call counter.
    struct Side {
        let machine: Machine
        let fs: Efivarfs
        let stats: CallStatistics

        /// The read-type calls the firmware and OS boot made, before the driver's first.
        let bootReads: Int

        init(cache: Machine.DriverCacheMode, faults: FaultPlan = FaultPlan(), maxRetries: Int = 16) throws {
            var c = Machine.Configuration()
            c.vcpuCount = 2
            c.driverCache = cache
            c.faults = faults
            c.maxRetries = maxRetries
            let stats = CallStatistics()
            c.observer = stats
            machine = try Machine(c)
            // A comparison of the cache with itself (or of two drivers without one) would pass
            // every check below and prove nothing.
            try #require((machine.driver.cache != nil) == (cache != .off), "driver cache \(cache) asked for, cache present: \(machine.driver.cache != nil)")
            bootReads = Side.reads(stats.snapshot)
            var o = Efivarfs.Options()
            o.efivarsLock = true
            fs = Efivarfs(driver: machine.driver, options: o)
            self.stats = stats
            try fs.populate()
        }

        /// SVSM calls for the functions the cache answers: each is one lookup that reached
        /// the SVSM (SET_VARIABLE and the boot events are never cached).
        static func reads(_ s: CallStatistics.Snapshot) -> Int {
            ["GET_VARIABLE", "GET_NEXT_VARIABLE_NAME", "QUERY_VARIABLE_INFO", "VAR_CHECK_VARIABLE_PROPERTY_GET"]
                .reduce(0) { $0 + s.perMmFunction[$1, default: 0] }
        }

        /// Read-type calls the driver made since boot.
        var driverReads: Int { Side.reads(stats.snapshot) - bootReads }

        var driver: SvsmVariableDriver { machine.driver }

        func fileName(_ key: VariableKey) -> [UInt8] { Array("\(Ucs2.string(key.name))-\(key.guid)".utf8) }

        /// efivarfs write(2) of one buffer, creating the file if needed.
        func write(_ name: String, _ bytes: [UInt8]) -> String {
            let n = Array(name.utf8)
            do {
                if let a = try? fs.lookup(n) {
                    let h = try fs.open(a.ino, forWriting: true, truncate: false, caller: DriverCacheDifferentialTests.root)
                    defer { fs.release(handle: h) }
                    return "write \(name): \(try fs.write(a.ino, bytes))"
                }
                let (a, h) = try fs.create(n, mode: 0o644, caller: DriverCacheDifferentialTests.root)
                defer { if let h { fs.release(handle: h) } }
                return "write \(name): \(try fs.write(a.ino, bytes)) (created)"
            } catch { return "write \(name): \(error)" }
        }

        /// efivarfs read(2) from offset 0, as a fresh file of the name would give it.
        func read(_ name: String) -> String {
            let n = Array(name.utf8)
            do {
                let a = try fs.lookup(n)
                let h = try fs.open(a.ino, forWriting: false, truncate: false, caller: DriverCacheDifferentialTests.root)
                defer { fs.release(handle: h) }
                let data = try fs.read(a.ino, handle: h, offset: 0, count: 1 << 20, caller: DriverCacheDifferentialTests.root)
                return "read \(name): " + Hex.encode(data)
            } catch { return "read \(name): \(error)" }
        }

        func unlink(_ name: String) -> String {
            do { try fs.unlink(Array(name.utf8)); return "unlink \(name): ok" } catch { return "unlink \(name): \(error)" }
        }

        /// Driver-level: the whole GetNextVariableName walk, every variable's size query and
        /// data, a too-small name buffer, an unknown previous name, statfs.
        func survey() -> [String] {
            var out: [String] = []
            driver.onCpu { cpu in
                let walk = cpu.enumerateVariables(nameBufferSize: 512, growing: true)
                out.append("walk: \(walk.keys.map { "\(Ucs2.string($0.name))-\($0.guid)" }.joined(separator: ",")) end \(walk.end)")
                for k in walk.keys {
                    out.append("size \(k): \(String(describing: try? cpu.getVariable(k, capacity: 0)))")
                    out.append("get2 \(k): \(String(describing: try? cpu.getVariable(k, capacity: 2)))")
                    out.append("read \(k): \(String(describing: try? cpu.readVariable(k)))")
                    out.append("prop \(k): \(String(describing: try? cpu.getProperty(k)))")
                }
                if let first = walk.keys.first {
                    out.append("next-small: \(String(describing: try? cpu.getNextVariable(after: first, nameBufferSize: 4)))")
                }
                out.append("next-unknown: \(String(describing: try? cpu.getNextVariable(after: VariableKey("NoSuchName", .linuxEfiCrash), nameBufferSize: 512)))")
                out.append("absent: \(String(describing: try? cpu.readVariable(VariableKey("NoSuchName", .linuxEfiCrash))))")
                for a: UInt32 in [7, 3, 0x27] {
                    out.append("qvi \(a): \(String(describing: try? cpu.queryVariableInfo(attributes: a)))")
                }
            }
            let s = fs.statfs()
            out.append("statfs: \(s.blocks) \(s.blocksFree) \(s.blocksAvailable)")
            return out
        }
    }

    static let global = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
    static let security = "d719b2cb-3d3a-4596-a3bc-dad00e67656f"
    static let crash = "cfc8fc79-be2e-4ddc-97f0-9f98bfe298a0"

    func bytes(_ path: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: path))) }

    /// The scripted sequence: plain writes, appends, deletes, a BootOrder change, then Secure
    /// Boot: PK (SetupMode 1 → 0, VendorKeys), KEK, db, a db append, a dbx append, refused
    /// updates, PK deleted (back to setup mode). After each step every file the mount shows
    /// is read and the driver-level survey is taken.
    func script(_ lab: KeyLab) throws -> [(String, (Side) -> [String])] {
        let g = Self.global, sec = Self.security, c = Self.crash
        let pk = try bytes(try lab.signed("PK", esl: "PK.esl", signer: "PK", time: "2026-01-01 00:00:01", out: "d-pk"))
        let kek = try bytes(try lab.signed("KEK", esl: "KEK.esl", signer: "PK", time: "2026-01-01 00:00:02", out: "d-kek"))
        let db = try bytes(try lab.signed("db", esl: "db.esl", signer: "KEK", time: "2026-01-01 00:00:03", out: "d-db"))
        let dbAppend = try bytes(try lab.signed("db", esl: "Rogue.esl", signer: "KEK", time: "2026-01-01 00:00:04", append: true, out: "d-dba"))
        let dbx = try bytes(try lab.signed("dbx", esl: "hash.esl", signer: "KEK", time: "2026-01-01 00:00:05", append: true, out: "d-dbx"))
        let rogue = try bytes(try lab.signed("db", esl: "Rogue.esl", signer: "Rogue", time: "2026-01-01 00:00:06", out: "d-rogue"))
        let pkDelete = try bytes(try lab.signed("PK", esl: "empty.esl", signer: "PK", time: "2026-01-01 00:00:07", out: "d-pkdel"))
        let v: [UInt8] = [7, 0, 0, 0]
        return [
            ("nothing yet", { _ in [] }),
            ("plain writes", { s in [s.write("A-\(c)", v + [1, 2, 3]), s.write("B-\(c)", v + Array(repeating: 9, count: 5000)),
                                     s.write("A-\(c)", v + [4])] }),
            ("append", { s in [s.write("A-\(c)", [0x47, 0, 0, 0, 5, 6])] }),
            ("BootOrder", { s in [s.write("BootOrder-\(g)", v + [1, 0, 0, 0]), s.write("Timeout-\(g)", v + [3, 0])] }),
            ("delete by write and unlink", { s in [s.write("A-\(c)", v), s.unlink("B-\(c)"), s.unlink("B-\(c)")] }),
            ("refused writes", { s in [s.write("SecureBoot-\(g)", v + [1]), s.write("C-\(c)", [0x07, 0, 0, 0x80, 1])] }),
            ("PK enrolled", { s in [s.write("PK-\(g)", pk)] }),
            ("KEK", { s in [s.write("KEK-\(g)", kek)] }),
            ("db", { s in [s.write("db-\(sec)", db)] }),
            ("db append", { s in [s.write("db-\(sec)", dbAppend)] }),
            ("dbx append", { s in [s.write("dbx-\(sec)", dbx)] }),
            ("rogue db refused, replay refused", { s in [s.write("db-\(sec)", rogue), s.write("db-\(sec)", db)] }),
            ("PK deleted", { s in [s.write("PK-\(g)", pkDelete)] }),
        ]
    }

    /// Everything a client could observe after a step.
    func observe(_ s: Side) -> [String] {
        var out = s.survey()
        for (name, _) in s.fs.list() { out.append(s.read(String(decoding: name, as: UTF8.self))) }
        for n in ["SetupMode", "SecureBoot", "VendorKeys", "PK", "KEK", "certdb", "BootOrder", "Timeout"] {
            let guid = n == "certdb" ? "d9bee56e-75dc-49d9-b4d7-b534210f637a" : Self.global
            out.append(s.read("\(n)-\(guid)"))
        }
        return out
    }

    @Test("the same sequence, Secure Boot mode changes included, gives identical answers with the cache on and off; the cache saves calls")
    func identicalAnswers() throws {
        try requirePrerequisites(.openssl, .efitools)
        let lab = try KeyLab()
        defer { lab.cleanup() }
        let off = try Side(cache: .off), on = try Side(cache: .invalidateOnWrite)
        for (step, body) in try script(lab) {
            let a = body(off) + observe(off) + observe(off)
            let b = body(on) + observe(on) + observe(on)
            #expect(a.count == b.count, "step \(step)")
            for (x, y) in zip(a, b) where x != y { Issue.record("step \(step): without cache \(x)\n  with cache \(y)") }
        }
        // Both sides asked the driver the same questions in the same order (the answers are
        // equal, and efivarfs and the survey decide what to ask from the answers). With the
        // cache every question is a lookup: a hit costs no call, a miss or a bypass costs
        // one. Without it every question costs one call. So, exactly:
        let cache = on.driver.cache!.statistics
        #expect(cache.bypasses == 0)  // one thread: no lookup while a SET is in flight
        #expect(on.driverReads == cache.misses + cache.bypasses, "calls with the cache \(on.driverReads), \(cache)")
        #expect(off.driverReads == cache.hits + cache.misses + cache.bypasses, "calls without the cache \(off.driverReads), \(cache)")
        let offS = off.stats.snapshot, onS = on.stats.snapshot
        #expect(onS.perMmFunction["SET_VARIABLE"] == offS.perMmFunction["SET_VARIABLE"])
        #expect(offS.calls - onS.calls == cache.hits)
        // The sequence reads each step's state twice, so most questions are asked again
        // before the next write: the cache must answer most of them.
        #expect(cache.hits > cache.misses, "\(cache)")
    }

    @Test("the cache's savings, counted: a workload whose calls follow from the driver's code, with and without the cache")
    func countedSavings() throws {
        let off = try Side(cache: .off), on = try Side(cache: .invalidateOnWrite)
        try #require(off.driver.hasVarCheckProperties && on.driver.hasVarCheckProperties)
        let key = VariableKey("Counted", .linuxEfiCrash)
        var walked: [Int] = []
        func workload(_ s: Side) throws -> [String: Int] {
            let before = s.stats.snapshot.perMmFunction
            try s.driver.onCpu { (cpu) throws(SvsmCallError) in
                // VAR_CHECK property (to refuse a read-only variable), then SET. The SET empties
                // the cache: what populate filled is gone.
                #expect(try cpu.setVariable(key, attributes: 7, data: [1, 2, 3]) == .success)
                // readVariable is a size query (capacity 0: BUFFER_TOO_SMALL, 3) and a fetch:
                // 2 GET_VARIABLEs each without the cache. With it the first size query misses
                // and fetches a page's worth, so it keeps the data; everything after is a hit.
                for _ in 0..<10 {
                    #expect(try cpu.readVariable(key) == .found(attributes: [.nonVolatile, .bootserviceAccess, .runtimeAccess], data: [1, 2, 3]))
                }
                // A whole walk: one GET_NEXT_VARIABLE_NAME per name and the final NOT_FOUND;
                // with the cache, the first walk is recorded and the next two are answered.
                for _ in 0..<3 {
                    let walk = cpu.enumerateVariables(nameBufferSize: 512, growing: true)
                    #expect(walk.end == .complete)
                    walked.append(walk.keys.count)
                }
                for _ in 0..<5 { _ = try cpu.queryVariableInfo(attributes: 7) }
                // The property was fetched before the SET; the SET emptied the cache.
                for _ in 0..<4 { _ = try cpu.getProperty(key) }
            }
            return s.stats.snapshot.perMmFunction.merging(before) { $0 - $1 }.filter { $0.value != 0 }
        }
        let callsOff = try workload(off), callsOn = try workload(on)
        let names = try #require(walked.first)
        #expect(walked == Array(repeating: names, count: 6))
        #expect(callsOff == ["VAR_CHECK_VARIABLE_PROPERTY_GET": 1 + 4, "SET_VARIABLE": 1, "GET_VARIABLE": 10 * 2,
                             "GET_NEXT_VARIABLE_NAME": 3 * (names + 1), "QUERY_VARIABLE_INFO": 5])
        #expect(callsOn == ["VAR_CHECK_VARIABLE_PROPERTY_GET": 1 + 1, "SET_VARIABLE": 1, "GET_VARIABLE": 1,
                            "GET_NEXT_VARIABLE_NAME": names + 1, "QUERY_VARIABLE_INFO": 1])
    }

    // The time limit names the test in the log if a retry loop ever stops ending.
    @Test("BUSY and INCOMPLETE answers, retried: identical answers with the cache on and off, and the same calls saved",
          .timeLimit(.minutes(2)))
    func identicalUnderRetriedFaults() throws {
        try requirePrerequisites(.openssl, .efitools)
        let lab = try KeyLab()
        defer { lab.cleanup() }
        var plan = FaultPlan()
        try plan.add("busy=0.3")
        try plan.add("incomplete=0.2")
        let off = try Side(cache: .off, faults: plan, maxRetries: 10_000)
        let on = try Side(cache: .invalidateOnWrite, faults: plan, maxRetries: 10_000)
        for (step, body) in try script(lab) {
            let a = body(off) + observe(off)
            let b = body(on) + observe(on)
            #expect(a.count == b.count, "step \(step)")
            for (x, y) in zip(a, b) where x != y { Issue.record("step \(step): without cache \(x)\n  with cache \(y)") }
        }
        // A retried call is still one call (its attempts are world switches, not calls), so
        // the accounting of the fault-free run holds.
        let cache = on.driver.cache!.statistics
        #expect(on.driverReads == cache.misses + cache.bypasses, "\(cache)")
        #expect(off.driverReads == cache.hits + cache.misses + cache.bypasses, "\(off.driverReads), \(cache)")
        let offS = off.stats.snapshot, onS = on.stats.snapshot
        #expect(offS.failedCalls == 0 && onS.failedCalls == 0)
        // The faults fired: some calls took more than one world switch.
        #expect(offS.perOperation.values.reduce(0) { $0 + $1.worldSwitches } > offS.calls)
    }

    @Test("calls the host drops (drop-exit): every read that succeeds through the cache equals the store's value, and failures are never kept")
    func noStaleReadUnderDroppedExits() throws {
        var plan = FaultPlan()
        try plan.add("drop-exit=0.25")
        let on = try Side(cache: .invalidateOnWrite, faults: plan)
        // The truth: the same store through a driver without cache, faults or tags.
        let truth = SvsmVariableDriver(reusing: on.driver, transport: SvsmCallTransport(processor: on.machine.processor, hypervisor: Hypervisor()))
        let keys = (0..<6).map { VariableKey("Drop\($0)", .linuxEfiCrash) }
        var successes = 0, failures = 0
        for round in 0..<300 {
            let k = keys[round % keys.count]
            if round % 3 == 0 {
                _ = try? on.driver.onCpu { (cpu) throws(SvsmCallError) in
                    try cpu.setVariable(k, attributes: 7, data: round % 9 == 0 ? [] : [UInt8(round & 0xff), 1])
                }
            }
            for key in keys {
                let cached = try? on.driver.onCpu { (cpu) throws(SvsmCallError) in try cpu.readVariable(key) }
                let real = try truth.onCpu { (cpu) throws(SvsmCallError) in try cpu.readVariable(key) }
                if let cached { successes += 1; #expect(cached == real, "round \(round) \(key)") } else { failures += 1 }
            }
            let listed = on.driver.onCpu { $0.enumerateVariables(nameBufferSize: 512, growing: true) }
            if listed.end == .complete {
                #expect(listed.keys == truth.onCpu { $0.enumerateVariables(nameBufferSize: 512, growing: true) }.keys, "round \(round)")
            }
        }
        #expect(successes > 0 && failures > 0)
    }

    @Test("concurrent writers and readers: no reader ever sees a value older than one acknowledged before its read began")
    func noStaleReadUnderConcurrency() throws {
        for mode in [Machine.DriverCacheMode.invalidateOnWrite, .sharedGeneration] {
            let on = try Side(cache: mode)
            let writers = 3, perWriter = 300
            let keys = (0..<writers).map { VariableKey("Conc\($0)", .linuxEfiCrash) }
            // acknowledged[w]: the last value writer w saw succeed; attempted[w]: the last it began.
            let acknowledged = Locked([Int](repeating: 0, count: writers)), attempted = Locked([Int](repeating: 0, count: writers))
            let stale = Locked([String]())
            let done = Locked(0)
            // Real threads: a pool as small as the machine's cores could run only readers.
            let group = DispatchGroup()
            for t in 0..<(writers + 3) {
                group.enter()
                Thread {
                    defer { group.leave() }
                    if t < writers {
                        for value in 1...perWriter {
                            attempted.withLock { $0[t] = value }
                            let bytes = withUnsafeBytes(of: UInt32(value).littleEndian) { Array($0) }
                            let s = try? on.driver.onCpu { (cpu) throws(SvsmCallError) in try cpu.setVariable(keys[t], attributes: 7, data: bytes) }
                            if s == .success { acknowledged.withLock { $0[t] = value } }
                        }
                        done.withLock { $0 += 1 }
                    } else {
                        var n = 0
                        while done.withLock({ $0 }) < writers {
                            let w = (n + t) % writers
                            n += 1
                            let floor = acknowledged.withLock { $0[w] }
                            let r = try? on.driver.onCpu { (cpu) throws(SvsmCallError) in try cpu.readVariable(keys[w]) }
                            let ceiling = attempted.withLock { $0[w] }
                            var got = 0
                            if case .found(_, let d)? = r, d.count == 4 { got = Int(d.loadLE(UInt32.self, at: 0)) }
                            if got < floor || got > ceiling {
                                stale.withLock { $0.append("\(mode) \(keys[w]): read \(got), acknowledged \(floor), attempted \(ceiling)") }
                            }
                        }
                    }
                }.start()
            }
            group.wait()
            #expect(stale.withLock { $0 }.isEmpty, "\(stale.withLock { $0.prefix(5) })")
            #expect(on.driver.cache!.statistics.hits > 0)
        }
    }

    @Test("a writer that bypasses the driver: the shared-generation proposal empties the cache when the store changed behind it")
    func foreignWriter() throws {
        let on = try Side(cache: .sharedGeneration)
        let key = VariableKey("Foreign", .linuxEfiCrash)
        // Another client of the same SVSM and store: a second driver without a cache.
        let foreign = SvsmVariableDriver(reusing: on.driver, transport: on.machine.transport)
        func read() -> GetVariableResult? { try? on.driver.onCpu { (cpu) throws(SvsmCallError) in try cpu.readVariable(key) } }
        let nvBsRt: VariableAttributes = [.nonVolatile, .bootserviceAccess, .runtimeAccess]
        #expect(try on.driver.onCpu { (cpu) throws(SvsmCallError) in try cpu.setVariable(key, attributes: 7, data: [1]) } == .success)
        #expect(read() == .found(attributes: nvBsRt, data: [1]))
        #expect(read() == .found(attributes: nvBsRt, data: [1]))
        #expect(try foreign.onCpu { (cpu) throws(SvsmCallError) in try cpu.setVariable(key, attributes: 7, data: [2]) } == .success)
        #expect(read() == .found(attributes: nvBsRt, data: [2]))
    }
}
