import CFuse
import Efivarfs
import Foundation

/// The libfuse3 low-level adapter: it translates FUSE requests into `Efivarfs` calls and
/// their results into replies. All efivarfs logic lives in `Efivarfs`; this file only
/// converts types and chooses the FUSE settings efivarfs semantics need: direct I/O so one
/// write(2) is one request, a large max_write, and zero entry and attribute timeouts, so
/// that the kernel asks again on every lookup and stat. With zero timeouts a name removed
/// at last close or by unlink is gone for the next lookup without a dentry invalidation;
/// the adapter sends none, because `fuse_lowlevel_notify_inval_entry` waits for the
/// directory's lock, and a daemon killed while a create holds that lock would leave the
/// notifying thread, and the mount, hung for good.
final class FuseAdapter: @unchecked Sendable {
    let fs: Efivarfs
    /// Largest single write: must hold the largest variable plus the 4 attribute bytes.
    static let maxWrite: UInt32 = 128 * 1024
    /// How long the kernel may keep the root directory's attributes: they never change
    /// (efivarfs-bridge reports the mount time and fixed modes for it), so keeping them saves
    /// the GETATTR of the root that every path walk's permission check would otherwise send
    /// (default_permissions with a zero timeout). Files keep a zero timeout: their ctime
    /// changes with the immutable flag, which the kernel does not see change.
    static let rootAttributeTimeout = 86400.0
    static func attributeTimeout(_ ino: fuse_ino_t) -> Double { ino == fuse_ino_t(Efivarfs.rootIno) ? rootAttributeTimeout : 0 }
    private let dirLock = NSLock()
    private var dirSnapshots: [UInt64: [([UInt8], UInt64)]] = [:]
    private var nextDirHandle: UInt64 = 1

    init(fs: Efivarfs) { self.fs = fs }

    static func from(_ req: fuse_req_t?) -> FuseAdapter {
        Unmanaged<FuseAdapter>.fromOpaque(fuse_req_userdata(req)!).takeUnretainedValue()
    }

    // MARK: conversions

    static func stat(_ a: NodeAttributes) -> stat {
        var st = Glibc.stat()
        st.st_ino = UInt(a.ino)
        st.st_mode = (a.isDirectory ? S_IFDIR : S_IFREG) | a.mode
        st.st_nlink = UInt(a.nlink)
        st.st_uid = a.uid
        st.st_gid = a.gid
        st.st_size = Int(a.size)
        st.st_blksize = 4096
        st.st_blocks = 0
        st.st_atim = a.atime
        st.st_mtim = a.mtime
        st.st_ctim = a.ctime
        return st
    }

    static func entry(_ a: NodeAttributes) -> fuse_entry_param {
        var e = fuse_entry_param()
        e.ino = fuse_ino_t(a.ino)
        e.generation = 1
        e.attr = stat(a)
        e.attr_timeout = 0
        e.entry_timeout = 0
        return e
    }

    static func bytes(_ name: UnsafePointer<CChar>?) -> [UInt8] {
        guard let n = name else { return [] }
        return Array(UnsafeRawBufferPointer(start: n, count: strlen(n)))
    }

    static func caller(_ req: fuse_req_t?) -> Efivarfs.Caller {
        guard let ctx = fuse_req_ctx(req) else { return Efivarfs.Caller(uid: 0, gid: 0) }
        return Efivarfs.Caller(uid: ctx.pointee.uid, gid: ctx.pointee.gid)
    }

    static func reply(_ req: fuse_req_t?, _ e: Errno) { fuse_reply_err(req, e.rawValue) }
    static func reply(_ req: fuse_req_t?, _ e: any Error) { fuse_reply_err(req, (e as? Errno)?.rawValue ?? EIO) }

    // MARK: the operation table

    static func operations() -> fuse_lowlevel_ops {
        var ops = fuse_lowlevel_ops()
        ops.`init` = { userdata, conn in
            guard let conn else { return }
            cfuse_conn_set_max_write(conn, FuseAdapter.maxWrite)
        }
        ops.lookup = { req, parent, name in
            let a = FuseAdapter.from(req)
            guard parent == fuse_ino_t(Efivarfs.rootIno) else { return FuseAdapter.reply(req, .notDirectory) }
            do {
                var e = FuseAdapter.entry(try a.fs.lookup(FuseAdapter.bytes(name)))
                fuse_reply_entry(req, &e)
            } catch { FuseAdapter.reply(req, error) }
        }
        ops.forget = { req, ino, nlookup in
            FuseAdapter.from(req).fs.forget(UInt64(ino), count: nlookup)
            fuse_reply_none(req)
        }
        ops.forget_multi = { req, count, forgets in
            let a = FuseAdapter.from(req)
            if let f = forgets {
                for i in 0..<count { a.fs.forget(UInt64(f[i].ino), count: f[i].nlookup) }
            }
            fuse_reply_none(req)
        }
        ops.getattr = { req, ino, _ in
            do {
                var st = FuseAdapter.stat(try FuseAdapter.from(req).fs.getattr(UInt64(ino)))
                fuse_reply_attr(req, &st, FuseAdapter.attributeTimeout(ino))
            } catch { FuseAdapter.reply(req, error) }
        }
        ops.setattr = { req, ino, attr, toSet, _ in
            var c = Efivarfs.AttributeChanges()
            let s = toSet
            if let attr {
                if s & FUSE_SET_ATTR_MODE != 0 { c.mode = attr.pointee.st_mode & 0o7777 }
                if s & FUSE_SET_ATTR_UID != 0 { c.uid = attr.pointee.st_uid }
                if s & FUSE_SET_ATTR_GID != 0 { c.gid = attr.pointee.st_gid }
                if s & FUSE_SET_ATTR_SIZE != 0 { c.size = Int64(attr.pointee.st_size) }
                var now = timespec(); clock_gettime(CLOCK_REALTIME, &now)
                if s & FUSE_SET_ATTR_ATIME != 0 { c.atime = s & FUSE_SET_ATTR_ATIME_NOW != 0 ? now : attr.pointee.st_atim }
                if s & FUSE_SET_ATTR_MTIME != 0 { c.mtime = s & FUSE_SET_ATTR_MTIME_NOW != 0 ? now : attr.pointee.st_mtim }
            }
            do {
                var st = FuseAdapter.stat(try FuseAdapter.from(req).fs.setattr(UInt64(ino), c))
                fuse_reply_attr(req, &st, FuseAdapter.attributeTimeout(ino))
            } catch { FuseAdapter.reply(req, error) }
        }
        ops.mknod = { req, parent, name, mode, _ in
            // mknod(S_IFREG) is efivarfs_create; special files are refused.
            guard mode & S_IFMT == S_IFREG else { return FuseAdapter.reply(req, .notPermitted) }
            do {
                let (attrs, _) = try FuseAdapter.from(req).fs.create(FuseAdapter.bytes(name), mode: mode & 0o7777, caller: FuseAdapter.caller(req), opened: false)
                var e = FuseAdapter.entry(attrs)
                fuse_reply_entry(req, &e)
            } catch { FuseAdapter.reply(req, error) }
        }
        ops.mkdir = { req, _, name, _ in
            FuseAdapter.reply(req, FuseAdapter.from(req).fs.mkdir(FuseAdapter.bytes(name)))
        }
        ops.unlink = { req, parent, name in
            do {
                try FuseAdapter.from(req).fs.unlink(FuseAdapter.bytes(name))
                fuse_reply_err(req, 0)
            } catch { FuseAdapter.reply(req, error) }
        }
        ops.rmdir = { req, _, name in
            FuseAdapter.reply(req, FuseAdapter.from(req).fs.rmdir(FuseAdapter.bytes(name)))
        }
        ops.symlink = { req, _, _, _ in FuseAdapter.reply(req, .notPermitted) }
        ops.rename = { req, _, _, _, _, _ in FuseAdapter.reply(req, .notPermitted) }
        ops.link = { req, _, _, _ in FuseAdapter.reply(req, .notPermitted) }
        ops.open = { req, ino, fi in
            guard let fi else { return FuseAdapter.reply(req, .invalidArgument) }
            let flags = cfuse_fi_flags(fi)
            let writing = flags & O_ACCMODE != O_RDONLY
            do {
                let handle = try FuseAdapter.from(req).fs.open(UInt64(ino), forWriting: writing, truncate: flags & O_TRUNC != 0,
                                                              caller: FuseAdapter.caller(req))
                cfuse_fi_set_fh(fi, handle)
                cfuse_fi_set_direct_io(fi)
                cfuse_fi_set_noflush(fi)
                fuse_reply_open(req, fi)
            } catch { FuseAdapter.reply(req, error) }
        }
        ops.create = { req, parent, name, mode, fi in
            guard let fi else { return FuseAdapter.reply(req, .invalidArgument) }
            do {
                let (attrs, handle) = try FuseAdapter.from(req).fs.create(FuseAdapter.bytes(name), mode: mode & 0o7777, caller: FuseAdapter.caller(req))
                var e = FuseAdapter.entry(attrs)
                cfuse_fi_set_fh(fi, handle ?? 0)
                cfuse_fi_set_direct_io(fi)
                cfuse_fi_set_noflush(fi)
                fuse_reply_create(req, &e, fi)
            } catch { FuseAdapter.reply(req, error) }
        }
        ops.read = { req, ino, size, off, fi in
            do {
                let data = try FuseAdapter.from(req).fs.read(UInt64(ino), handle: fi.map { cfuse_fi_fh($0) }, offset: Int64(off), count: size,
                                                            caller: FuseAdapter.caller(req))
                data.withUnsafeBytes { p in _ = fuse_reply_buf(req, p.baseAddress?.assumingMemoryBound(to: CChar.self), data.count) }
            } catch { FuseAdapter.reply(req, error) }
        }
        ops.write = { req, ino, buf, size, _, _ in
            let data = buf.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) } ?? []
            do {
                let n = try FuseAdapter.from(req).fs.write(UInt64(ino), data)
                fuse_reply_write(req, n)
            } catch { FuseAdapter.reply(req, error) }
        }
        ops.release = { req, _, fi in
            if let fi { FuseAdapter.from(req).fs.release(handle: cfuse_fi_fh(fi)) }
            fuse_reply_err(req, 0)
        }
        ops.fsync = { req, _, _, _ in FuseAdapter.reply(req, .invalidArgument) }
        ops.opendir = { req, ino, fi in
            guard let fi else { return FuseAdapter.reply(req, .invalidArgument) }
            let a = FuseAdapter.from(req)
            let entries: [([UInt8], UInt64)] = [(Array(".".utf8), Efivarfs.rootIno), (Array("..".utf8), Efivarfs.rootIno)] + a.fs.list()
            a.dirLock.lock()
            let h = a.nextDirHandle
            a.nextDirHandle += 1
            a.dirSnapshots[h] = entries
            a.dirLock.unlock()
            cfuse_fi_set_fh(fi, h)
            fuse_reply_open(req, fi)
        }
        ops.readdir = { req, _, size, off, fi in
            let a = FuseAdapter.from(req)
            let h = fi.map { cfuse_fi_fh($0) } ?? 0
            a.dirLock.lock()
            let entries = a.dirSnapshots[h] ?? []
            a.dirLock.unlock()
            var buffer = [CChar](repeating: 0, count: size)
            var used = 0
            var index = Int(off)
            while index < entries.count {
                let (name, ino) = entries[index]
                var st = Glibc.stat()
                st.st_ino = UInt(ino)
                st.st_mode = index < 2 ? S_IFDIR : S_IFREG
                let cname = name.map { CChar(bitPattern: $0) } + [0]
                let needed = buffer.withUnsafeMutableBufferPointer { b in
                    fuse_add_direntry(req, b.baseAddress! + used, size - used, cname, &st, off_t(index + 1))
                }
                if used + needed > size { break }
                used += needed
                index += 1
            }
            buffer.withUnsafeBufferPointer { b in _ = fuse_reply_buf(req, b.baseAddress, used) }
        }
        ops.releasedir = { req, _, fi in
            let a = FuseAdapter.from(req)
            if let fi {
                a.dirLock.lock(); a.dirSnapshots[cfuse_fi_fh(fi)] = nil; a.dirLock.unlock()
            }
            fuse_reply_err(req, 0)
        }
        ops.statfs = { req, _ in
            let s = FuseAdapter.from(req).fs.statfs()
            var v = statvfs()
            v.f_bsize = UInt(s.blockSize)
            v.f_frsize = UInt(s.blockSize)
            v.f_blocks = UInt(s.blocks)
            v.f_bfree = UInt(s.blocksFree)
            v.f_bavail = UInt(s.blocksAvailable)
            v.f_namemax = UInt(s.nameMax)
            fuse_reply_statfs(req, &v)
        }
        ops.setxattr = { req, ino, _, _, _, _ in FuseAdapter.reply(req, FuseAdapter.from(req).fs.writeXattr(UInt64(ino))) }
        // efivarfs has no xattr handlers, so getxattr(2) fails with EOPNOTSUPP
        // (`Efivarfs.readXattr`). Through FUSE that answer goes as ENOSYS: the kernel turns it
        // into EOPNOTSUPP for the caller and from then on answers every getxattr on the mount
        // itself (fs/fuse/xattr.c `fuse_getxattr`, fc->no_getxattr). Answered as EOPNOTSUPP,
        // it cost a GETXATTR request on every open(O_TRUNC) of a variable, where the kernel
        // asks for security.capability before it clears privileges (security/commoncap.c
        // `cap_inode_need_killpriv`): one request in six of a rewrite. listxattr stays
        // (efivarfs lists nothing, ENOSYS would fail it), and so do setxattr and removexattr
        // (EPERM on an immutable file).
        ops.getxattr = { req, ino, _, _ in
            let answer = FuseAdapter.from(req).fs.readXattr(UInt64(ino))
            fuse_reply_err(req, answer == .notSupported ? ENOSYS : answer.rawValue)
        }
        ops.listxattr = { req, _, size in
            if size == 0 { fuse_reply_xattr(req, 0) } else { fuse_reply_buf(req, nil, 0) }
        }
        ops.removexattr = { req, ino, _ in FuseAdapter.reply(req, FuseAdapter.from(req).fs.writeXattr(UInt64(ino))) }
        ops.ioctl = { req, ino, cmd, _, _, flags, inBuf, inSize, outSize in
            FuseAdapter.from(req).ioctl(req, UInt64(ino), UInt(cmd), inBuf, inSize, outSize)
        }
        return ops
    }

    /// The flag ioctls by number (FS_IOC_GETFLAGS/SETFLAGS, FS_IOC_FSGETXATTR/FSSETXATTR);
    /// any other number is ENOTTY.
    func ioctl(_ req: fuse_req_t?, _ ino: UInt64, _ cmd: UInt, _ inBuf: UnsafeRawPointer?, _ inSize: Int, _ outSize: Int) {
        let command: Efivarfs.FlagIoctl
        switch cmd {
        case cfuse_ioc_getflags(): command = .getFlags
        case cfuse_ioc_setflags(): command = .setFlags
        case cfuse_ioc_fsgetxattr(): command = .fsGetXattr
        case cfuse_ioc_fssetxattr(): command = .fsSetXattr
        default: return FuseAdapter.reply(req, Errno.noTTY)
        }
        let input = inBuf.map { Array(UnsafeRawBufferPointer(start: $0, count: inSize)) } ?? []
        do {
            let out = try fs.ioctl(ino, command, input: input, outputSize: outSize, caller: FuseAdapter.caller(req))
            out.withUnsafeBytes { p in _ = fuse_reply_ioctl(req, 0, out.isEmpty ? nil : p.baseAddress, out.count) }
        } catch {
            FuseAdapter.reply(req, error)
        }
    }
}
