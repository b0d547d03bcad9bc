import ArgumentParser
import EfiTypes
import Foundation
import Guest
import Logging
import MmWire
import Platform
import Svsm
import SvsmAbi
import SvsmShmHost
import Trace

/// `serve-svsm --shm FILE`: the host of the C module's shm transport
/// (kernel/SHM-TRANSPORT.md). The SVSM that answers is this model's `Svsm`, over the shared
/// window, with the variable service of a booted `Machine`: the same request loop, checks
/// and store the FUSE mount's calls reach.
struct ServeSvsmCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve-svsm",
        abstract: "Serve the svsm_efivars kernel module's SVSM calls over an ivshmem shared-memory file.",
        discussion: """
            Maps FILE (created and sized to 16 MiB if it is empty or missing) and serves the
            shm transport of kernel/SHM-TRANSPORT.md: waits for the guest's module to attach,
            registers its vCPUs, and answers every doorbell with the modelled SVSM (protocol 4
            and QUERY_PROTOCOL) in front of the variable store. Runs in the foreground until
            SIGINT or SIGTERM. The number of vCPUs is the guest's (its header's vcpu_count).

            The store behind protocol 4 is chosen as for mount: --svsm edk2 (default), coconut
            or qemu, with --firmware, --coconut-secureboot and --coconut-persistence.
            COCONUT without its persistence feature serves a store that is empty at every
            start, in memory, and refuses a store path.

            Polling: after a call the doorbells are watched continuously for 50 µs, then
            every 20 µs until 200 ms pass without a call, then every 1 ms until 2 s, then
            every 10 ms. A call in a burst waits tens of µs, the first after a quiet spell at
            most 10 ms (the guest gives up after 5 s); an idle server wakes 100 times a
            second (measured: 0.6% of a core, debug build, nested VM).

            Examples:
              efivarfs-bridge serve-svsm --shm /dev/shm/vm1 --store /var/lib/vm1-vars
              qemu-system-x86_64 ... \\
                -object memory-backend-file,id=shm,share=on,mem-path=/dev/shm/vm1,size=16M \\
                -device ivshmem-plain,memdev=shm
            """
    )

    @Option(name: .long, help: ArgumentHelp("The shared-memory file (QEMU's memory-backend-file mem-path).", valueName: "file"))
    var shm: String

    @Option(name: .long, help: ArgumentHelp("The durable variable store (a directory, created if missing). Default: as for mount.", valueName: "directory"))
    var store: String?

    @Flag(name: .long, help: "Keep variables in memory only: a freshly booted OVMF VM's store, gone when the server stops.")
    var ephemeral = false

    @Option(name: .customLong("from-fd"), help: ArgumentHelp("Serve this OVMF_VARS.fd live, written in place.", valueName: "file"))
    var fromFd: String?

    @Option(name: .customLong("from-json"), help: ArgumentHelp("Serve this QEMU uefi-vars JSON file live.", valueName: "file"))
    var fromJson: String?

    @Option(name: .long, help: ArgumentHelp("Size of the non-volatile variable store (as for mount).", valueName: "size"))
    var nvStoreSize: String?

    @Option(name: .long, help: ArgumentHelp("Write one JSON line per SVSM call served to this file (the mount's --trace format).", valueName: "file"))
    var trace: String?

    @Option(name: .customLong("log-requests"), help: ArgumentHelp("Append the hex of every UEFI MM request the SVSM receives (header + message, one line each, before dispatch) to this file.", valueName: "file"))
    var logRequests: String?

    @Option(name: .customLong("fault"), help: ArgumentHelp("Misbehave, to test the module: no-answer (never answer a call), no-answer-after=N, busy=P or incomplete=P (probability 0..1). Repeatable.", valueName: "fault"))
    var faults: [String] = []

    @OptionGroup var profile: ProfileOptions

    @OptionGroup var logging: LoggingOptions

    /// Whether the command line names a store; the default directory is not one.
    var storeNamed: Bool { store != nil || fromFd != nil || fromJson != nil }

    func storeChoice() -> StoreChoice {
        if ephemeral { return .memory }
        if let f = fromFd { return .firmwareVolume(path: f) }
        if let j = fromJson { return .qemuJson(path: j) }
        return .native(directory: storeDirectoryFor(store), create: true)
    }

    func parsedFaults() throws -> ShmSvsmServer.Faults {
        var f = ShmSvsmServer.Faults()
        for item in faults.flatMap({ $0.split(separator: ",").map(String.init) }) {
            let kv = item.split(separator: "=", maxSplits: 1).map(String.init)
            switch (kv[0], kv.count == 2 ? kv[1] : nil) {
            case ("no-answer", nil): f.answerLimit = 0
            case ("no-answer-after", let n?):
                guard let v = Int(n), v >= 0 else { throw ValidationError("--fault no-answer-after=N: N is a number of calls") }
                f.answerLimit = v
            case ("busy", let p?), ("incomplete", let p?):
                guard let v = Double(p), (0...1).contains(v) else { throw ValidationError("--fault \(kv[0])=P: P is a probability 0..1") }
                if kv[0] == "busy" { f.svsm.busy = v } else { f.svsm.incomplete = v }
            default:
                throw ValidationError("unknown --fault '\(item)' (no-answer, no-answer-after=N, busy=P, incomplete=P)")
            }
        }
        return f
    }

    func validate() throws {
        if [ephemeral, store != nil, fromFd != nil, fromJson != nil].filter({ $0 }).count > 1 {
            throw ValidationError("name one store: --store, --from-fd, --from-json or --ephemeral")
        }
        if let t = nvStoreSize {
            guard let n = parseByteSize(t), n >= 0x1000, n <= 1 << 30 else { throw ValidationError("--nv-store-size: '\(t)' is not a size between 4 KiB and 1 GiB") }
        }
        _ = try parsedFaults()
    }

    func run() throws {
        let logger = logging.bootstrap()
        let faults = try parsedFaults()

        // The variable service of a booted machine: a new store gets OVMF's defaults and
        // power-on variables exactly as a mount's would. The machine's own vCPUs and
        // memory are not used after its boot. It boots before the window is mapped, so that
        // a store the profile refuses leaves no shared-memory file behind.
        var config = Machine.Configuration()
        config.vcpuCount = 1
        config.nvStoreSize = nvStoreSize.flatMap(parseByteSize)
        profile.apply(to: &config, store: storeChoice(), storeNamed: storeNamed)
        let machine: Machine
        do { machine = try Machine(config) } catch { throw cliFail(error.description) }
        for note in machine.storeNotes { logger.info("\(note)") }

        let window: SharedWindow
        do { window = try SharedWindow(path: shm) } catch { throw cliFail(error.description) }
        let requestLog = try logRequests.map { try RequestLog(path: $0) }
        var tracer: TraceWriter?
        if let path = trace {
            do { tracer = try TraceWriter(path: path) } catch { throw cliFail("\(error)") }
        }
        logger.info("\(config.profile.rawValue) store \(config.store.path ?? "in memory") ready; serving \(shm) (\(window.size) bytes)")

        let observers: [any SvsmCallObserver] = [LoggingObserver(logger: logger)] + (tracer.map { [$0] } ?? [])
        let server = ShmSvsmServer(window: window, mmService: machine.service, faults: faults,
                                   mmRequestObserver: requestLog?.observer) { event in
            switch event {
            case .attached(let a): logger.info("guest attached: \(a)")
            case .refused(let r): logger.warning("\(r) (waiting for the next generation)")
            case .served(let call):
                guard let record = call.record else {
                    logger.debug("vCPU \(call.apicId): doorbell without call_pending (spurious), answered")
                    return
                }
                for o in observers { o.svsmCallCompleted(record) }
            }
        }

        let stop = Locked(false)
        var sources: [any DispatchSourceSignal] = []
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            s.setEventHandler { stop.withLock { $0 = true } }
            s.resume()
            sources.append(s)
        }
        server.serve { !stop.withLock { $0 } }
        sources.forEach { $0.cancel() }
        machine.service.releaseStore()
        tracer?.flush()
        logger.info("stopped")
        withExtendedLifetime((machine, requestLog)) {}
    }
}

extension ShmSvsmServer.ServedCall {
    /// The call as the mount's trace and logging see one (nil for a spurious doorbell).
    var record: SvsmCallRecord? {
        guard case .processed(let id, let result) = outcome else { return nil }
        return SvsmCallRecord(
            startNanoseconds: startNanoseconds, durationNanoseconds: durationNanoseconds, apicId: apicId, caa: caa,
            call: id, input: input, output: output, attempts: 1, callPendingAtResume: 0,
            error: result == .success ? nil : .failed(result),
            mmFunction: mmFunction.map { SmmVariableFunction(rawValue: $0) }, efiStatus: efiStatus.map { EfiStatus(rawValue: $0) })
    }
}
