import ArgumentParser
import Foundation
import SvsmEfiVars

@main
struct EfivarfsBridge: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "efivarfs-bridge",
        abstract: "A model of an SVSM-backed EFI variable driver, served as an efivarfs-compatible FUSE filesystem.",
        discussion: """
            The store lives behind a modelled SVSM (protocol 4, UEFI MM); every filesystem
            request becomes SVSM calls through a vCPU's own Calling Area.

            Examples:
              efivarfs-bridge mount /run/efivars
              EFIVARFS_PATH=/run/efivars/ efibootmgr -v
              fusermount3 -u /run/efivars
            """,
        subcommands: [MountCommand.self, RunCommand.self, ListCommand.self, GetCommand.self, SetCommand.self, DeleteCommand.self, InfoCommand.self, ImportCommand.self, ExportCommand.self, StatsCommand.self, ScenarioCommand.self, ModelBenchCommand.self, TraceCommand.self]
    )
}

/// `--store`, else $EFIVARFS_BRIDGE_STORE, else the per-user state directory.
func storeDirectoryFor(_ explicit: String?) -> String {
    if let s = explicit { return s }
    let env = ProcessInfo.processInfo.environment
    if let s = env["EFIVARFS_BRIDGE_STORE"], !s.isEmpty { return s }
    if let x = env["XDG_STATE_HOME"], !x.isEmpty { return x + "/efivarfs-bridge/store" }
    return (env["HOME"] ?? NSHomeDirectory()) + "/.local/state/efivarfs-bridge/store"
}

/// Options shared by every command that boots a machine.
struct MachineOptions: ParsableArguments {
    @Option(name: .long, help: "Number of vCPUs, 1 to 512.")
    var vcpus: Int = 4

    @Option(name: .customLong("fault"), help: ArgumentHelp("Inject a fault: drop-exit=P, busy=P, incomplete=P or spurious-entry=P (probability 0..1). Repeatable.", valueName: "name=P"))
    var faults: [String] = []

    @Option(name: .long, help: "Retries of an SVSM call answered BUSY or INCOMPLETE before the driver gives up.")
    var maxRetries: Int = 16

    @Option(name: .long, help: ArgumentHelp("The durable variable store (a directory). Default: $EFIVARFS_BRIDGE_STORE, else $XDG_STATE_HOME/efivarfs-bridge/store, else ~/.local/state/efivarfs-bridge/store.", valueName: "directory"))
    var store: String?

    @Flag(name: .long, help: "Keep variables in memory only: every mount starts from a freshly booted OVMF VM.")
    var ephemeral = false

    @Option(name: .long, help: ArgumentHelp("Size of the non-volatile variable store in bytes (default 0x3ffb8, a 4M OVMF_VARS.fd's). Larger stores do not fit an fd export.", valueName: "bytes"))
    var nvStoreSize: Int?

    @Option(name: .customLong("from-fd"), help: ArgumentHelp("Serve this OVMF_VARS.fd live: every change is written into it in place, as edk2 writes its flash (records appended, State bits flipped, a reclaim rewrites it when full); it keeps its size.", valueName: "file"))
    var fromFd: String?

    @Option(name: .customLong("from-json"), help: ArgumentHelp("Serve this QEMU uefi-vars JSON file live, rewritten atomically on each change.", valueName: "file"))
    var fromJson: String?

    /// `--from-fd` / `--from-json`, else $EFIVARFS_BRIDGE_FROM_FD / $EFIVARFS_BRIDGE_FROM_JSON
    /// (when no other store is named on the command line).
    var liveFd: String? {
        if let f = fromFd { return f }
        guard store == nil, fromJson == nil, !ephemeral else { return nil }
        return ProcessInfo.processInfo.environment["EFIVARFS_BRIDGE_FROM_FD"].flatMap { $0.isEmpty ? nil : $0 }
    }
    var liveJson: String? {
        if let j = fromJson { return j }
        guard store == nil, liveFd == nil, !ephemeral else { return nil }
        return ProcessInfo.processInfo.environment["EFIVARFS_BRIDGE_FROM_JSON"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// The store directory this invocation uses, or nil for --ephemeral or a live file.
    var storeDirectory: String? { ephemeral || liveFd != nil || liveJson != nil ? nil : storeDirectoryFor(store) }

    func validate() throws {
        guard (1...512).contains(vcpus) else { throw ValidationError("--vcpus must be between 1 and 512") }
        guard maxRetries >= 0 else { throw ValidationError("--max-retries must not be negative") }
        if let n = nvStoreSize, n < 0x1000 || n > 1 << 30 { throw ValidationError("--nv-store-size must be between 4 KiB and 1 GiB") }
        if [ephemeral, store != nil, fromFd != nil, fromJson != nil].filter({ $0 }).count > 1 {
            throw ValidationError("name one store: --store, --from-fd, --from-json or --ephemeral")
        }
        var plan = FaultPlan()
        for f in faults { do { try plan.add(f) } catch { throw ValidationError(error.description) } }
    }

    func configuration() -> Machine.Configuration {
        var c = Machine.Configuration()
        c.vcpuCount = vcpus
        c.maxRetries = maxRetries
        var plan = FaultPlan()
        for f in faults { try? plan.add(f) }
        c.faults = plan
        c.storeDirectory = storeDirectory
        if let n = nvStoreSize { c.limits.nvStoreSize = n }
        if let f = liveFd { c.liveFile = (f, .fd) }
        if let j = liveJson { c.liveFile = (j, .json) }
        return c
    }
}

struct MountCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mount",
        abstract: "Mount the variable store as an efivarfs-compatible filesystem.",
        discussion: """
            Returns once the mount is ready and keeps serving in the background; with
            --foreground it stays attached and unmounts on SIGINT or SIGTERM.
            Unmount with `fusermount3 -u <mountpoint>` or `umount <mountpoint>`.

            Examples:
              efivarfs-bridge mount /run/efivars
              efivarfs-bridge mount --foreground --vcpus 8 /tmp/efivars
              efivarfs-bridge mount -o uid=1000,gid=1000,allow_other /run/efivars
            """
    )

    @Argument(help: "Where to mount (an existing, empty directory).")
    var mountPoint: String

    @Flag(name: .long, help: "Stay in the foreground.")
    var foreground = false

    @Option(name: .short, help: ArgumentHelp("Mount options: uid=N, gid=N, allow_other.", valueName: "options"))
    var options: [String] = []

    @OptionGroup var machine: MachineOptions
    @OptionGroup var logging: LoggingOptions

    @Option(name: .long, help: ArgumentHelp("Write one JSON line per SVSM call to this file (see the README).", valueName: "file"))
    var trace: String?

    @Option(name: .long, help: ArgumentHelp("Generate a lab PK, KEK and db (keys and certificates written to this directory) and boot with them enrolled: Secure Boot on.", valueName: "directory"))
    var enrollGenerate: String?

    @Option(name: .long, help: "FUSE worker threads (each request holds one vCPU while it runs).")
    var fuseThreads = 4

    @Flag(name: .long, help: "Do not serialise writes with Linux's efivars_lock (a driver-design experiment: lets concurrent SetVariables reach the store together, where group commit can batch their fdatasyncs).")
    var noEfivarsLock = false

    @Option(name: .customLong("ready-fd"), help: .hidden)
    var readyFd: Int32?

    struct MountOptions {
        var uid: UInt32 = 0
        var gid: UInt32 = 0
        var allowOther = false
    }

    func parsedOptions() throws -> MountOptions {
        var m = MountOptions()
        for group in options {
            for opt in group.split(separator: ",") {
                let kv = opt.split(separator: "=", maxSplits: 1).map(String.init)
                switch kv[0] {
                case "uid":
                    guard kv.count == 2, let v = UInt32(kv[1]) else { throw ValidationError("bad mount option '\(opt)': uid=N expected") }
                    m.uid = v
                case "gid":
                    guard kv.count == 2, let v = UInt32(kv[1]) else { throw ValidationError("bad mount option '\(opt)': gid=N expected") }
                    m.gid = v
                case "allow_other": m.allowOther = true
                default: throw ValidationError("unknown mount option '\(opt)' (efivarfs takes uid=, gid=; also allow_other)")
                }
            }
        }
        return m
    }

    func validate() throws {
        _ = try parsedOptions()
        guard (1...1024).contains(fuseThreads) else { throw ValidationError("--fuse-threads must be between 1 and 1024") }
    }

    func run() throws {
        let opts = try parsedOptions()
        // FUSE worker threads do not follow the vCPU count: on a small host more threads only
        // contend (measured on 2 cores: 16 threads ran a mixed load at half the speed of 4,
        // whatever the vCPU count). Requests still rotate over every vCPU.
        let fuse = FuseMount(mountPoint: mountPoint, allowOther: opts.allowOther, threads: fuseThreads)
        do { try fuse.checkMountPoint() } catch { fail(error.description) }
        if !foreground && readyFd == nil {
            throw ExitCode(Daemon.spawnAndWait(arguments: Array(CommandLine.arguments.dropFirst())))
        }
        var config = machine.configuration()
        var tracer: TraceWriter?
        if let path = trace {
            do { tracer = try TraceWriter(path: path) } catch { fail("cannot write the trace file \(path): \(error.localizedDescription)") }
        }
        let logger = logging.bootstrap()
        config.lockNote = ControlSocket.path(forMountPoint: mountPoint)
        let statistics = CallStatistics()
        config.observer = ObserverFanOut([statistics, LoggingObserver(logger: logger)] + (tracer.map { [$0] } ?? []))
        config.recordBoot = logger.logLevel <= .debug
        logger.info("booting the modelled guest: \(machine.vcpus) vCPUs, store \(machine.storeDirectory ?? config.liveFile?.path ?? "in memory")")
        if let dir = enrollGenerate {
            do { config.enrolledKeys = try KeyEnrollment.generate(into: dir) } catch { fail("--enroll-generate: \(error)") }
        }
        let machineInstance: Machine
        do { machineInstance = try Machine(config) } catch { fail(error.description) }
        for line in machineInstance.bootLog { logger.debug("\(line)") }
        var fsOptions = Efivarfs.Options()
        fsOptions.uid = opts.uid
        fsOptions.gid = opts.gid
        fsOptions.efivarsLock = !noEfivarsLock
        let fs = Efivarfs(driver: machineInstance.driver, options: fsOptions)
        do { try fs.populate() } catch { fail("mount: \(error)") }
        do {
            let vcpus = machineInstance.vcpus
            let control = ControlSocket.path(forMountPoint: mountPoint)
            try fuse.serve(fs) {
                ControlSocket.serve(path: control, stats: { ControlSocket.report(statistics: statistics, vcpus: vcpus, service: machineInstance.service) }, machine: machineInstance)
                logger.info("mounted on \(mountPoint); statistics on \(control)")
                if let fd = readyFd { Daemon.signalReady(fd) }
            }
            // Let the next mount of this store in now, not when this process has exited.
            machineInstance.service.releaseStore()
            unlink(control)
            logger.info("unmounted \(mountPoint)")
        } catch { tracer?.flush(); fail(error.description) }
        tracer?.flush()
        withExtendedLifetime(machineInstance) {}
    }

    func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("efivarfs-bridge: \(message)\n".utf8))
        Foundation.exit(1)
    }
}
