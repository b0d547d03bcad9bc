import ArgumentParser
import Driver
import EfiTypes
import Efivarfs
import Foundation
import Logging
import Guest
import MmWire
import Platform
import Trace
import VariableService

/// The cost of the model itself, in process: no FUSE, no kernel.
struct ModelBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench-model",
        abstract: "Measure the in-process cost of an SVSM call, of an MM round trip (GET_VARIABLE), and of efivarfs operations.",
        discussion: "Example:\n  efivarfs-bridge bench-model --iterations 200000\n  efivarfs-bridge bench-model --only efivarfs --variables 10000")
    @Option(help: "Calls per measurement.") var iterations = 100_000
    @Option(help: "Measure only one: svsm, mm, efivarfs (the daemon's work per file operation, without FUSE), or durable (group commit, writers straight into the variable service).") var only: String?
    @Option(help: "For efivarfs: how many variables each pass creates, reads, lists and deletes.") var variables = 10_000
    @Option(help: "For durable: the directory for a scratch store (default: a new one under /tmp).") var storeDirectory: String?

    func validate() throws {
        guard iterations > 0 else { throw ValidationError("--iterations must be positive") }
        guard only == nil || ["svsm", "mm", "efivarfs", "durable"].contains(only!) else { throw ValidationError("--only takes svsm, mm, efivarfs or durable") }
        guard variables > 0 else { throw ValidationError("--variables must be positive") }
    }

    /// Durable SetVariables from 1 and from 8 writers at once, straight into the variable
    /// service over a native store: what group commit does when requests are concurrent.
    /// (Through efivarfs they are not: Linux's efivars_lock serialises every SetVariable.)
    func durable() throws {
        let dir = storeDirectory ?? NSTemporaryDirectory() + "bench-durable-\(getpid())"
        defer { if storeDirectory == nil { try? FileManager.default.removeItem(atPath: dir) } }
        let vendor = EfiGuid("cfc8fc79-be2e-4ddc-97f0-9f98bfe298a0")!
        for writers in [1, 8] {
            try? FileManager.default.removeItem(atPath: dir)
            let (journal, _) = try NativeJournal.open(directory: dir)
            let service = VariableService(store: VariableStore(), journal: journal)
            let perWriter = max(1, min(iterations, 100_000) / writers)
            let t0 = DispatchTime.now().uptimeNanoseconds
            DispatchQueue.concurrentPerform(iterations: writers) { w in
                for i in 0..<perWriter {
                    let payload = AccessVariablePayload.encode(guid: vendor, name: Ucs2.units("W\(w)-\(i % 64)"), attributes: 7, dataSize: 64,
                                                               data: [UInt8](repeating: UInt8(i & 0xff), count: 64))
                    _ = service.handleMmRequest(headerGuid: .smmVariableProtocol, message: SmmVariableHeader.message(.setVariable, payload: payload))
                }
            }
            let s = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            let g = service.syncStatistics
            print(String(format: "durable SetVariable, %d writer(s): %.0f per second; %d fdatasyncs for %d writes (%.1f per sync)",
                         writers, Double(perWriter * writers) / s, g.syncs, Int(g.acknowledged), Double(g.acknowledged) / Double(max(g.syncs, 1))))
            service.releaseStore()
        }
    }

    /// The efivarfs calls one file operation of `Benchmarks/load.c` causes, in the order
    /// and number of the FUSE requests the kernel sends for it (BENCHMARKS.md, "FUSE requests
    /// per operation"), made straight on `Efivarfs` over a machine set up as `mount` sets it
    /// up (call statistics and the call log observing every SVSM call). This is the daemon's
    /// own work per operation with warm caches, without the FUSE adapter and the kernel: the
    /// part of a FUSE benchmark that this code decides, measured steadily.
    func efivarfsOperations() throws {
        var config = Machine.Configuration()
        config.nvStoreSize = 64 << 20
        config.observer = ObserverFanOut([CallStatistics(), LoggingObserver(logger: Logger(label: "bench-model"))])
        let m = try Machine(config)
        let fs = Efivarfs(driver: m.driver)
        try fs.populate()
        let root = Efivarfs.Caller(uid: 0, gid: 0)
        let names = (0..<variables).map { Array("Bench\($0)-cfc8fc79-be2e-4ddc-97f0-9f98bfe298a0".utf8) }
        let payload: [UInt8] = [7, 0, 0, 0] + [UInt8](repeating: 0x5a, count: 64)
        func pass(_ label: String, _ body: ([UInt8]) throws(Errno) -> Void) throws {
            let t0 = DispatchTime.now().uptimeNanoseconds
            for n in names { try body(n) }
            let ns = Double(DispatchTime.now().uptimeNanoseconds - t0) / Double(names.count)
            print(String(format: "efivarfs %@: %.0f ns per operation (%d operations)", label, ns, names.count))
        }
        // open(O_CREAT)/write/close: LOOKUP (negative), CREATE, GETATTR ×2, WRITE, RELEASE.
        try pass("create (4 + 64 bytes)") { (n) throws(Errno) in
            guard (try? fs.lookup(n)) == nil else { throw .fileExists }
            let (a, h) = try fs.create(n, mode: 0o644, caller: root)
            _ = try fs.getattr(a.ino); _ = try fs.getattr(a.ino)
            _ = try fs.write(a.ino, payload)
            fs.release(handle: h!)
        }
        // stat of a listed name: LOOKUP, GETATTR (the READDIR snapshot is taken once).
        _ = fs.list()
        try pass("stat of a listed name") { (n) throws(Errno) in
            _ = try fs.getattr(fs.lookup(n).ino)
        }
        // open/read/close: LOOKUP, GETATTR, OPEN, READ, RELEASE.
        try pass("read") { (n) throws(Errno) in
            let a = try fs.lookup(n)
            _ = try fs.getattr(a.ino)
            let h = try fs.open(a.ino, forWriting: false, truncate: false, caller: root)
            guard try fs.read(a.ino, handle: h, offset: 0, count: 4096, caller: root).count == payload.count else { throw .ioError }
            fs.release(handle: h)
        }
        // libefivar's delete: LOOKUP, GETATTR, OPEN; OPEN, IOCTL, RELEASE (GETFLAGS);
        // RELEASE; LOOKUP, GETATTR, UNLINK; FORGET.
        try pass("delete (libefivar)") { (n) throws(Errno) in
            let a = try fs.lookup(n)
            _ = try fs.getattr(a.ino)
            let h = try fs.open(a.ino, forWriting: false, truncate: false, caller: root)
            let h2 = try fs.open(a.ino, forWriting: false, truncate: false, caller: root)
            _ = try fs.ioctl(a.ino, .getFlags, input: [], outputSize: 4, caller: root)
            fs.release(handle: h2)
            fs.release(handle: h)
            _ = try fs.getattr(fs.lookup(n).ino)
            try fs.unlink(n)
            fs.forget(a.ino, count: 2)
        }
        m.service.releaseStore()
    }

    func run() throws {
        if only == "durable" { try durable(); return }
        if only == "efivarfs" { try efivarfsOperations(); return }
        let m = try Machine(Machine.Configuration())
        let key = VariableKey("Timeout", .globalVariable)
        func measure(_ name: String, _ body: () -> Void) {
            body()  // warm up
            let t0 = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<iterations { body() }
            let ns = Double(DispatchTime.now().uptimeNanoseconds - t0) / Double(iterations)
            print(String(format: "%@: %.0f ns per call (%d calls)", name, ns, iterations))
        }
        m.vcpus.withVcpu { v in
            if only != "mm" { measure("SVSM call (QUERY_PROTOCOL) through the CAA") {
                _ = try? m.transport.perform(.coreQueryProtocol, rcx: 4 << 32 | 1, on: v, caa: v.svsmCaa)
            } }
            if only != "svsm" { m.driver.onCpuHeld(v) { cpu in
                measure("MM round trip (GET_VARIABLE Timeout)") { _ = try? cpu.getVariable(key, capacity: 2) }
            } }
        }
    }
}
