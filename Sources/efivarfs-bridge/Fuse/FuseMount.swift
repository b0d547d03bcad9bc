import CFuse
import Foundation
import SvsmEfiVars

/// Mounting and serving: the libfuse session's life from mount to unmount.
struct FuseMount {
    enum MountError: Error, CustomStringConvertible {
        case mountPointMissing(String)
        case notADirectory(String)
        case busy(String)
        case fuse(String)
        var description: String {
            switch self {
            case .mountPointMissing(let p): return "mount point \(p) does not exist"
            case .notADirectory(let p): return "mount point \(p) is not a directory"
            case .busy(let p): return "mount point \(p) is busy (something is already mounted there)"
            case .fuse(let s): return s
            }
        }
    }

    let mountPoint: String
    let allowOther: Bool
    let threads: Int

    /// Refuses a missing, non-directory or already-mounted mount point with a clear message.
    func checkMountPoint() throws(MountError) {
        var st = stat()
        guard stat(mountPoint, &st) == 0 else { throw .mountPointMissing(mountPoint) }
        guard st.st_mode & S_IFMT == S_IFDIR else { throw .notADirectory(mountPoint) }
        var parent = stat()
        let parentPath = (mountPoint as NSString).appendingPathComponent("..")
        if stat(parentPath, &parent) == 0, parent.st_dev != st.st_dev || (parent.st_ino == st.st_ino && mountPoint != "/") {
            throw .busy(mountPoint)
        }
    }

    /// Mounts, calls `ready` once the kernel has the mount, serves until unmounted or
    /// signalled (SIGINT/SIGTERM/SIGHUP), then unmounts cleanly.
    func serve(_ fs: Efivarfs, ready: () -> Void) throws(MountError) {
        let adapter = FuseAdapter(fs: fs)
        var options = "default_permissions,fsname=efivarfs-bridge,subtype=efivarfs"
        if allowOther { options += ",allow_other" }
        let argv = ["efivarfs-bridge", "-o", options]
        var cargs = argv.map { strdup($0) }
        defer { cargs.forEach { free($0) } }
        var args = fuse_args(argc: Int32(cargs.count), argv: cargs.withUnsafeMutableBufferPointer { $0.baseAddress }, allocated: 0)
        // fuse_session_new copies the arguments it rewrites into memory of its own (found
        // by LeakSanitizer); only that copy is freed here, ours by the defer above.
        defer { fuse_opt_free_args(&args) }
        var ops = FuseAdapter.operations()
        let userdata = Unmanaged.passRetained(adapter).toOpaque()
        defer { Unmanaged<FuseAdapter>.fromOpaque(userdata).release() }
        guard let se = fuse_session_new(&args, &ops, MemoryLayout<fuse_lowlevel_ops>.size, userdata) else {
            throw .fuse("cannot create the FUSE session (is /dev/fuse available?)")
        }
        defer { fuse_session_destroy(se) }
        adapter.session = se
        // A parent may have started us with these signals blocked (the mask is inherited);
        // unblock them before libfuse's threads exist so that they inherit the open mask.
        var unblock = sigset_t()
        sigemptyset(&unblock)
        for sig in [SIGINT, SIGTERM, SIGHUP] { sigaddset(&unblock, sig) }
        pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
        guard fuse_set_signal_handlers(se) == 0 else { throw .fuse("cannot install signal handlers") }
        defer { fuse_remove_signal_handlers(se) }
        guard fuse_session_mount(se, mountPoint) == 0 else {
            throw .fuse("cannot mount on \(mountPoint) (see the libfuse message above; fusermount3 and /dev/fuse are needed)")
        }
        ready()
        _ = cfuse_session_loop_workers(se, UInt32(threads))
        adapter.session = nil
        fuse_session_unmount(se)
    }
}
