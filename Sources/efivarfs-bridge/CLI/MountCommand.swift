import ArgumentParser
import Driver
import EfiTypes
import Efivarfs
import EfivarfsFuse
import Foundation
import Guest
import MmWire
import Platform
import Trace
import VariableService

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
              efivarfs-bridge mount -o ro --from-fd vm/OVMF_VARS.fd /tmp/vm-vars
            """
    )

    @Argument(help: "Where to mount (an existing, empty directory).")
    var mountPoint: String

    @Flag(name: .long, help: "Stay in the foreground.")
    var foreground = false

    @Option(name: .short, help: ArgumentHelp("Mount options: uid=N, gid=N, allow_other, ro, rw.", valueName: "options"))
    var options: [String] = []

    @OptionGroup var machine: MachineOptions
    @OptionGroup var logging: LoggingOptions

    @OptionGroup var server: ServerOptions

    @Option(name: .customLong("log-requests"), help: ArgumentHelp("Append the hex of every UEFI MM request the SVSM receives from the driver probe on (header + message, one line each, before dispatch) to this file; serve-svsm writes the same.", valueName: "file"))
    var logRequests: String?

    @Option(name: .customLong("ready-fd"), help: .hidden)
    var readyFd: Int32?

    struct MountOptions {
        var uid: UInt32 = 0
        var gid: UInt32 = 0
        var allowOther = false
        var readOnly = false
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
                case "ro": m.readOnly = true
                case "rw": m.readOnly = false
                default: throw ValidationError("unknown mount option '\(opt)' (efivarfs takes uid=, gid=; also allow_other, ro, rw)")
                }
            }
        }
        return m
    }

    func validate() throws {
        _ = try parsedOptions()
        guard (1...1024).contains(server.fuseThreads) else { throw ValidationError("--fuse-threads must be between 1 and 1024") }
    }

    func run() throws {
        let opts = try parsedOptions()
        // FUSE worker threads do not follow the vCPU count: on a small host more threads only
        // contend (measured on 2 cores: 16 threads ran a mixed load at half the speed of 4,
        // whatever the vCPU count). Requests still rotate over every vCPU.
        let fuse = FuseMount(mountPoint: mountPoint, allowOther: opts.allowOther, readOnly: opts.readOnly, threads: server.fuseThreads)
        checkMountPoint(fuse)
        if let dir = server.enrollGenerate, !server.replaceKeys { try refuseExistingKeys(dir) }
        if !foreground && readyFd == nil {
            throw ExitCode(Daemon.spawnAndWait(arguments: Array(CommandLine.arguments.dropFirst())))
        }
        // A background server that is not up yet dies with the command that started it
        // (`mount` killed while it waits): it must not go on as an orphan.
        if readyFd != nil { Daemon.dieWithParentUntilReady() }
        var config = machine.configuration(alwaysCreate: true)
        var tracer: TraceWriter?
        if let path = server.trace {
            do { tracer = try TraceWriter(path: path) } catch { fail("\(error)") }
        }
        let logger = logging.bootstrap()
        let requestLog = try logRequests.map { try RequestLog(path: $0) }
        config.mmRequestObserver = requestLog?.observer
        config.lockNote = ControlSocket.path(forMountPoint: mountPoint)
        let statistics = CallStatistics()
        config.observer = ObserverFanOut([statistics, LoggingObserver(logger: logger)] + (tracer.map { [$0] } ?? []))
        config.recordBoot = logger.logLevel <= .debug
        logger.info("booting the modelled guest: \(machine.vcpus) vCPUs, store \(config.store.path ?? "in memory")")
        if let dir = server.enrollGenerate {
            // Written into `dir` by the boot, once the store has accepted them (a store that
            // already has a PK refuses them without --replace-keys).
            do { config.enrolledKeys = try KeyEnrollment.generate() } catch { fail("--enroll-generate: \(error)") }
            config.enrolledKeysDirectory = dir
            config.replaceKeys = server.replaceKeys
        }
        let machineInstance: Machine
        do { machineInstance = try Machine(config) } catch { fail(error.description) }
        for line in machineInstance.bootLog { logger.debug("\(line)") }
        var fsOptions = Efivarfs.Options()
        fsOptions.uid = opts.uid
        fsOptions.gid = opts.gid
        fsOptions.efivarsLock = !server.noEfivarsLock
        fsOptions.readOnly = opts.readOnly
        let fs = Efivarfs(driver: machineInstance.driver, options: fsOptions)
        do { try fs.populate() } catch { fail("mount: \(error)") }
        if case .nameTooLong(let needed) = fs.populated {
            logger.warning("efivars: Variable name size exceeds maximum (\(needed) > \(Efivarfs.nameBufferSize)): the listing stops there, as efivarfs does")
        }
        let control = ControlSocket.path(forMountPoint: mountPoint)
        let shutDown = {
            // Let the next mount of this store in now, not when this process has exited.
            machineInstance.service.releaseStore()
            unlink(control)
            tracer?.flush()
        }
        do {
            let vcpus = machineInstance.vcpus
            try fuse.serve(fs, ready: {
                let worldSwitch = config.worldSwitchNanoseconds
                ControlSocket.serve(path: control, stats: {
                    var extra = ",\"world_switch_ns\":\(worldSwitch),\"efivarfs_operations\":" + ControlSocket.counts(fs.operations)
                        + ",\"fuse_requests\":" + ControlSocket.counts(FuseRequestCounters.snapshot())
                    if let c = machineInstance.driver.cache?.statistics {
                        extra += ",\"driver_cache\":{\"hits\":\(c.hits),\"misses\":\(c.misses),\"bypasses\":\(c.bypasses),\"fills\":\(c.fills),"
                            + "\"dropped_fills\":\(c.droppedFills),\"invalidations\":\(c.invalidations)}"
                    }
                    return ControlSocket.report(statistics: statistics, vcpus: vcpus, service: machineInstance.service, extra: extra)
                },
                                    machine: machineInstance, readOnly: opts.readOnly)
                logger.info("mounted on \(mountPoint); statistics on \(control)")
                if let fd = readyFd { Daemon.signalReady(fd) }
            }, exitNow: {
                logger.warning("files were still open at shutdown and the FUSE connection could not be aborted (no fusectl): exiting to end it")
                shutDown()
                _exit(0)
            })
            shutDown()
            logger.info("unmounted \(mountPoint)")
        } catch { shutDown(); fail(error.description) }
        withExtendedLifetime((machineInstance, requestLog)) {}
    }

    /// The mount point checks stat it, and a stat of a FUSE mount whose server is stopped or
    /// hung never returns (the caller waits in the kernel for the server's answer). So when
    /// the mount table already lists the mount point, the checks run on a thread of their
    /// own, and `mount` gives up on them after a few seconds instead of hanging.
    func checkMountPoint(_ fuse: FuseMount) {
        let real = ControlSocket.realPath(ofMountPoint: mountPoint)
        let table = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        let listed = table.split(separator: "\n").contains { line in
            let fields = line.split(separator: " ")
            return fields.count > 4 && RunCommand.unescapeMountField(String(fields[4])) == real
        }
        guard listed else {
            do { try fuse.checkMountPoint() } catch { fail(error.description) }
            return
        }
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) let check = fuse
        nonisolated(unsafe) var outcome: String?
        Thread {
            do { try check.checkMountPoint() } catch { outcome = "\(error)" }
            done.signal()
        }.start()
        if done.wait(timeout: .now() + 3) == .timedOut {
            fail("mount point \(mountPoint) is a mount whose server does not answer (stopped or hung?); resume or end its server, or detach it with `umount -l \(mountPoint)`")
        }
        if let outcome { fail(outcome) }
    }

    /// `--enroll-generate` into a directory that already holds keys would overwrite them,
    /// and replace a store's PK: refuse unless told to.
    func refuseExistingKeys(_ dir: String) throws {
        let existing = ["PK.key", "KEK.key", "db.key"].filter { FileManager.default.fileExists(atPath: dir + "/" + $0) }
        if !existing.isEmpty {
            throw cliFail("--enroll-generate: \(dir) already holds \(existing.joined(separator: ", ")); pass --replace-keys to overwrite them and the store's PK")
        }
    }

    func fail(_ message: String) -> Never {
        printError(message)
        Foundation.exit(1)
    }
}
