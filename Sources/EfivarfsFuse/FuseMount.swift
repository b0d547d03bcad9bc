import CFuse
import CFuseServer
import Efivarfs
import Foundation

/// Mounting and serving: the libfuse session's life from mount to unmount.
public struct FuseMount {
    public enum MountError: Error, CustomStringConvertible {
        case mountPointMissing(String, String)
        case notADirectory(String)
        case notEmpty(String)
        case busy(String)
        case stale(String)
        case fuse(String)
        public var description: String {
            switch self {
            case .mountPointMissing(let p, let e): return "mount point \(p): \(e)"
            case .notADirectory(let p): return "mount point \(p) is not a directory"
            case .notEmpty(let p): return "mount point \(p) is not empty (efivarfs mounts on an empty directory)"
            case .busy(let p): return "mount point \(p) is busy (something is already mounted there)"
            case .stale(let p): return "mount point \(p) is a stale FUSE mount whose server is gone; run `fusermount3 -u \(p)` first"
            case .fuse(let s): return s
            }
        }
    }

    public let mountPoint: String
    public let allowOther: Bool
    public let readOnly: Bool
    public let threads: Int

    public init(mountPoint: String, allowOther: Bool, readOnly: Bool, threads: Int) {
        self.mountPoint = mountPoint; self.allowOther = allowOther; self.readOnly = readOnly; self.threads = threads
    }

    /// Refuses a missing, non-directory, non-empty, already-mounted or stale mount point
    /// with a clear message.
    public func checkMountPoint() throws(MountError) {
        // Ask the server first: the kernel answers a FUSE mount's statfs only from its
        // server, while a stat of the mount's root may come from the attributes it keeps
        // (this bridge lets it keep them, FuseAdapter.rootAttributeTimeout). A server that
        // died answers ENOTCONN; a stopped one does not answer (the caller's time limit).
        var fsInfo = statvfs()
        if statvfs(mountPoint, &fsInfo) != 0, errno == ENOTCONN { throw .stale(mountPoint) }
        var st = stat()
        guard stat(mountPoint, &st) == 0 else {
            let e = errno
            // A FUSE mount whose server died answers every stat with ENOTCONN.
            if e == ENOTCONN { throw .stale(mountPoint) }
            throw .mountPointMissing(mountPoint, String(cString: strerror(e)))
        }
        guard st.st_mode & S_IFMT == S_IFDIR else { throw .notADirectory(mountPoint) }
        var parent = stat()
        let parentPath = (mountPoint as NSString).appendingPathComponent("..")
        if stat(parentPath, &parent) == 0, parent.st_dev != st.st_dev || (parent.st_ino == st.st_ino && mountPoint != "/") {
            throw .busy(mountPoint)
        }
        if let entries = try? FileManager.default.contentsOfDirectory(atPath: mountPoint), !entries.isEmpty {
            throw .notEmpty(mountPoint)
        }
    }

    /// Mounts, calls `ready` once the kernel has the mount, serves until unmounted or
    /// signalled (SIGINT/SIGTERM/SIGHUP), then unmounts cleanly. If the connection cannot be
    /// ended while files are still open (no fusectl to abort it), `exitNow` ends the process
    /// instead — closing /dev/fuse ends the connection, and the session must not be freed
    /// under workers still reading it.
    public func serve(_ fs: Efivarfs, ready: () -> Void, exitNow: () -> Never) throws(MountError) {
        let adapter = FuseAdapter(fs: fs)
        var options = "default_permissions,fsname=efivarfs-bridge,subtype=efivarfs"
        if allowOther { options += ",allow_other" }
        if readOnly { options += ",ro" }
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
        // Before the workers exist, so that they inherit the open signal mask.
        guard cfuse_install_stop_handlers() == 0 else { throw .fuse("cannot install signal handlers: \(String(cString: strerror(errno)))") }
        guard fuse_session_mount(se, mountPoint) == 0 else {
            throw .fuse("cannot mount on \(mountPoint) (see the libfuse message above; fusermount3 and /dev/fuse are needed)")
        }
        // `ready` runs once the mount answers and the server's own stat of it is done
        // (cfuse_serve): a caller that unmounts as soon as `mount` returns must not find
        // that stat still holding the mount (EBUSY).
        let served = withoutActuallyEscaping(ready) { (ready) -> Int32 in
            let box = ReadyCallback(ready)
            return withExtendedLifetime(box) {
                cfuse_serve(se, mountPoint, UInt32(threads), { context in
                    Unmanaged<ReadyCallback>.fromOpaque(context!).takeUnretainedValue().call()
                }, Unmanaged.passUnretained(box).toOpaque())
            }
        }
        if served != 0 { exitNow() }
    }
}

/// A Swift closure handed through C as a context pointer, for cfuse_serve's ready call.
private final class ReadyCallback {
    let call: () -> Void
    init(_ call: @escaping () -> Void) { self.call = call }
}
