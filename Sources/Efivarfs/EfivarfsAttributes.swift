import Driver
import EfiTypes
import Foundation
import Guest
import MmWire

extension Efivarfs {
    public func getattr(_ ino: UInt64) throws(Errno) -> NodeAttributes {
        if ino == Efivarfs.rootIno { return rootAttributes }
        let n = try node(ino)
        return table.withLock { _ in n.attributes }
    }

    public struct AttributeChanges: Sendable {
        public var mode: UInt32?
        public var uid: UInt32?
        public var gid: UInt32?
        public var size: Int64?
        public var atime: timespec?
        public var mtime: timespec?
        public init() {}
        var isEmpty: Bool { mode == nil && uid == nil && gid == nil && size == nil && atime == nil && mtime == nil }
    }

    /// `efivarfs_setattr` (v6.14+): size changes succeed and change nothing; mode, owner and
    /// times live in memory only; an immutable file refuses all of them (the VFS's
    /// `notify_change`).
    public func setattr(_ ino: UInt64, _ c: AttributeChanges) throws(Errno) -> NodeAttributes {
        if ino == Efivarfs.rootIno { return rootAttributes }
        if options.readOnly && !c.isEmpty { throw .readOnlyFileSystem }
        let n = try node(ino)
        return try table.withLock { (_: inout Table) throws(Errno) -> NodeAttributes in
            if n.immutable && !c.isEmpty { throw .notPermitted }
            if let m = c.mode { n.mode = m & 0o7777 }
            if let u = c.uid { n.uid = u }
            if let g = c.gid { n.gid = g }
            if let a = c.atime { n.atime = a }
            if let m = c.mtime { n.mtime = m }
            if !c.isEmpty { n.ctime = EfivarfsNode.now() }
            return n.attributes
        }
    }

    // MARK: the flag ioctls

    /// The ioctls efivarfs answers through `efivarfs_fileattr_get/set` (the VFS's fileattr
    /// path turns both pairs into the same calls).
    public enum FlagIoctl: Sendable {
        case getFlags, setFlags, fsGetXattr, fsSetXattr
    }

    /// struct fsxattr (include/uapi/linux/fs.h): fsx_xflags u32, fsx_extsize u32,
    /// fsx_nextents u32, fsx_projid u32, fsx_cowextsize u32, 8 bytes of padding.
    static let fsxattrSize = 28
    /// FS_XFLAG_IMMUTABLE.
    static let xflagImmutable: UInt32 = 0x8

    /// One flag ioctl on `ino`: `input` is what the caller passed (the new flags), the
    /// answer is what goes back (`outputSize` bytes). Anything on the directory is ENOTTY
    /// in efivarfs (the FUSE kernel module answers EOPNOTSUPP for directories before asking).
    public func ioctl(_ ino: UInt64, _ command: FlagIoctl, input: [UInt8], outputSize: Int, caller: Caller) throws(Errno) -> [UInt8] {
        guard ino != Efivarfs.rootIno else { throw .noTTY }
        let n = try node(ino)
        let immutable = table.withLock { _ in n.immutable }
        switch command {
        case .getFlags:
            var out = [UInt8](zeroed: max(outputSize, 4))
            out.storeLE(immutable ? Efivarfs.immutableFlag : 0, at: 0)
            return Array(out.prefix(outputSize))
        case .fsGetXattr:
            var out = [UInt8](zeroed: max(outputSize, Efivarfs.fsxattrSize))
            out.storeLE(immutable ? Efivarfs.xflagImmutable : 0, at: 0)
            return Array(out.prefix(outputSize))
        case .setFlags:
            guard input.count >= 4 else { throw .invalidArgument }
            try setFlags(n, input.loadLE(UInt32.self, at: 0), caller: caller)
            return []
        case .fsSetXattr:
            guard input.count >= Efivarfs.fsxattrSize else { throw .invalidArgument }
            let xflags = input.loadLE(UInt32.self, at: 0)
            // fileattr_set_prepare/efivarfs: only FS_XFLAG_IMMUTABLE may be set; extsize,
            // projid, cowextsize or any other flag is EOPNOTSUPP.
            if xflags & ~Efivarfs.xflagImmutable != 0 || input.loadLE(UInt32.self, at: 4) != 0
                || input.loadLE(UInt32.self, at: 12) != 0 || input.loadLE(UInt32.self, at: 16) != 0 {
                throw .notSupported
            }
            try setFlags(n, xflags & Efivarfs.xflagImmutable != 0 ? Efivarfs.immutableFlag : 0, caller: caller)
            return []
        }
    }

    /// FS_IOC_SETFLAGS through `vfs_fileattr_set`: owner or CAP_FOWNER, then
    /// CAP_LINUX_IMMUTABLE to change the flag, then any other bit is EOPNOTSUPP.
    func setFlags(_ n: EfivarfsNode, _ flags: UInt32, caller: Caller) throws(Errno) {
        if options.readOnly { throw .readOnlyFileSystem }
        try table.withLock { (_: inout Table) throws(Errno) in
            if caller.uid != n.uid && !caller.isPrivileged { throw .notPermitted }
            let wantImmutable = flags & Efivarfs.immutableFlag != 0
            if wantImmutable != n.immutable && !caller.isPrivileged { throw .notPermitted }
            if flags & ~Efivarfs.immutableFlag != 0 { throw .notSupported }
            n.immutable = wantImmutable
            n.ctime = EfivarfsNode.now()
        }
    }

    /// Whether `ino` carries the immutable flag.
    public func isImmutable(_ ino: UInt64) throws(Errno) -> Bool {
        guard ino != Efivarfs.rootIno else { return false }
        let n = try node(ino)
        return table.withLock { _ in n.immutable }
    }

    // MARK: extended attributes

    /// setxattr(2) and removexattr(2): the VFS refuses any xattr write on an immutable inode
    /// with EPERM before the filesystem is asked (fs/xattr.c `xattr_permission` →
    /// `may_write_xattr`); efivarfs has no xattr handlers, so everything else is
    /// EOPNOTSUPP. (Through FUSE the kernel does not know the flag, so it is decided here.)
    public func writeXattr(_ ino: UInt64) -> Errno {
        if (try? isImmutable(ino)) == true { return .notPermitted }
        return .notSupported
    }

    /// getxattr(2): no handlers, EOPNOTSUPP. listxattr(2) lists nothing.
    public func readXattr(_ ino: UInt64) -> Errno { .notSupported }

    // MARK: statfs

    public struct StatFs: Sendable, Equatable {
        public var blockSize: UInt64 = 1
        public var blocks: UInt64 = 0
        public var blocksFree: UInt64 = 0
        public var blocksAvailable: UInt64 = 0
        public var nameMax: UInt64 = 255
    }

    /// `efivarfs_statfs`: QueryVariableInfo(NV|BS|RT); never fails.
    public func statfs() -> StatFs {
        var s = StatFs()
        let answer = operation("statfs") { try? driver.onCpu { (cpu) throws(SvsmCallError) in try cpu.queryVariableInfo(attributes: VariableAttributes.nvBsRt.rawValue) } }
        if case .success(let info)? = answer {
            s.blocks = info.maximumVariableStorageSize
            s.blocksFree = info.remainingVariableStorageSize
            s.blocksAvailable = info.remainingVariableStorageSize > options.reservedSpace ? info.remainingVariableStorageSize - options.reservedSpace : 0
        }
        return s
    }
}
