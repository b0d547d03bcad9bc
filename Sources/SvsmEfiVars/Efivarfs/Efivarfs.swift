import Foundation

/// efivarfs semantics, independent of FUSE: the directory of `<Name>-<GUID>` files, with
/// the behaviour of torvalds/linux fs/efivarfs (v6.15+) for every operation, calling the
/// variable layer through the driver. The FUSE adapter only translates.
public final class Efivarfs: @unchecked Sendable {
    public struct Options: Sendable {
        public var uid: UInt32 = 0
        public var gid: UInt32 = 0
        /// EFI_MIN_RESERVE, kept free by the x86 storage-paranoia check and subtracted
        /// from statfs f_bavail.
        public var reservedSpace: UInt64 = 5120
        /// Hold `efivars_lock` around each write's SetVariable and size query, and each
        /// unlink's delete, as Linux does. Off only as an experiment (`--no-efivars-lock`).
        public var efivarsLock = true
        public init() {}
    }

    public static let rootIno: UInt64 = 1
    /// FS_IMMUTABLE_FL.
    public static let immutableFlag: UInt32 = 0x10
    /// GetNextVariableName buffer (v6.9+).
    static let nameBufferSize = 512

    public let driver: SvsmVariableDriver
    public let options: Options
    let mountTime = EfivarfsNode.now()

    private struct Table {
        var byName: [[UInt8]: EfivarfsNode] = [:]
        var byIno: [UInt64: EfivarfsNode] = [:]
        var nextIno: UInt64 = 2
    }
    private let table = Locked(Table())
    /// `efivars_lock` for the set-then-size sequences, so each is atomic with respect to
    /// other efivarfs writers.
    private let efivarsLock = Lock()

    /// `efivar_lock()` … `efivar_unlock()`, or nothing when the experiment turns it off.
    private func underEfivarsLock<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        guard options.efivarsLock else { return try body() }
        return try efivarsLock.withLock(body)
    }
    private let rateLimiter = ReadRateLimiter()

    public init(driver: SvsmVariableDriver, options: Options = Options()) {
        self.driver = driver
        self.options = options
    }

    // MARK: mount-time population

    public enum PopulateError: Error, CustomStringConvertible {
        case unsupported
        public var description: String { "GetNextVariableName is not supported by the backend (EOPNOTSUPP)" }
    }

    /// `efivar_init` with `efivarfs_callback`: enumerate with a 512-byte name buffer; stop
    /// quietly on a duplicate, on BUFFER_TOO_SMALL or another error; fail on UNSUPPORTED.
    public func populate() throws(PopulateError) {
        let found: [(VariableKey, Int)] = try driver.onCpu { (cpu: SvsmVariableDriver.Cpu) -> Result<[(VariableKey, Int)], PopulateError> in
            var out: [(VariableKey, Int)] = []
            var seen = Set<[UInt8]>()
            var previous = VariableKey(guid: .zero, name: [])
            while true {
                switch cpu.getNextVariable(after: previous, nameBufferSize: Efivarfs.nameBufferSize) {
                case .next(let key):
                    previous = key
                    let name = EfivarfsName.lookupKey(EfivarfsName.fileName(for: key))
                    if !seen.insert(name).inserted { return .success(out) }  // "duplicate variable": stop
                    if key.guid == .linuxEfiRandomSeedTable { continue }
                    var size = 0
                    if case .bufferTooSmall(_, let s) = cpu.getVariable(key, capacity: 0) { size = s }
                    out.append((key, size))
                case .error(.unsupported): return .failure(.unsupported)
                default: return .success(out)  // NOT_FOUND ends; other errors truncate
                }
            }
        }.get()
        table.withLock { t in
            for (key, size) in found {
                let name = EfivarfsName.fileName(for: key)
                let node = makeNode(&t, fileName: name, key: key, mode: 0o644, size: Int64(size + 4))
                t.byName[EfivarfsName.lookupKey(name)] = node
            }
        }
    }

    private func makeNode(_ t: inout Table, fileName: [UInt8], key: VariableKey, mode: UInt32, size: Int64) -> EfivarfsNode {
        let ino = t.nextIno
        t.nextIno += 1
        let removable = EfivarfsValidation.isRemovable(key, utf8Name: Array(fileName[..<(fileName.count - EfivarfsName.guidLength - 1)]))
        let node = EfivarfsNode(ino: ino, fileName: fileName, key: key, mode: mode, uid: options.uid, gid: options.gid,
                                size: size, immutable: !removable)
        t.byIno[ino] = node
        return node
    }

    // MARK: namespace

    public var rootAttributes: NodeAttributes {
        NodeAttributes(ino: Efivarfs.rootIno, isDirectory: true, mode: 0o755, uid: options.uid, gid: options.gid,
                       size: 0, nlink: 2, atime: mountTime, mtime: mountTime, ctime: mountTime)
    }

    /// Lookup: a malformed name is simply not there (ENOENT, v6.13+).
    public func lookup(_ name: [UInt8]) throws(Errno) -> NodeAttributes {
        guard name.count <= EfivarfsName.nameMax else { throw .nameTooLong }
        guard EfivarfsName.isValid(name) else { throw .noSuchFile }
        return try table.withLock { (t: inout Table) throws(Errno) -> NodeAttributes in
            guard let node = t.byName[EfivarfsName.lookupKey(name)] else { throw .noSuchFile }
            node.lookupCount += 1
            return node.attributes
        }
    }

    public func getattr(_ ino: UInt64) throws(Errno) -> NodeAttributes {
        if ino == Efivarfs.rootIno { return rootAttributes }
        let n = try node(ino)
        return table.withLock { _ in n.attributes }
    }

    /// The node for `ino`. Its mutable fields are read and written with the table lock
    /// held (found by ThreadSanitizer: getattr raced a write's size update).
    private func node(_ ino: UInt64) throws(Errno) -> EfivarfsNode {
        guard let n = table.withLock({ $0.byIno[ino] }) else { throw .noSuchFile }
        return n
    }

    /// The kernel forgets `count` references; an inode no longer named is dropped.
    public func forget(_ ino: UInt64, count: UInt64) {
        table.withLock { t in
            guard let n = t.byIno[ino] else { return }
            n.lookupCount = n.lookupCount > count ? n.lookupCount - count : 0
            if n.lookupCount == 0 && n.removed && n.openCount == 0 { t.byIno[ino] = nil }
        }
    }

    /// Directory listing: (name, ino) of every name, newest inode first (the order is
    /// stable for a directory snapshot; the kernel's dcache order is not modelled).
    public func list() -> [([UInt8], UInt64)] {
        table.withLock { t in t.byName.values.sorted { $0.ino > $1.ino }.map { ($0.fileName, $0.ino) } }
    }

    /// `efivarfs_create`: name check, the random-seed GUID, no firmware call. `opened` is
    /// false for mknod(2), which creates the name without a descriptor: no release will
    /// follow, so the size-0 file stays until unlinked or unmounted, as in the kernel.
    public func create(_ name: [UInt8], mode: UInt32, opened: Bool = true) throws(Errno) -> NodeAttributes {
        guard name.count <= EfivarfsName.nameMax else { throw .nameTooLong }
        guard let key = EfivarfsName.variableKey(forCreatedName: name) else { throw .invalidArgument }
        if key.guid == .linuxEfiRandomSeedTable { throw .notPermitted }
        return try table.withLock { (t: inout Table) throws(Errno) -> NodeAttributes in
            let k = EfivarfsName.lookupKey(name)
            if t.byName[k] != nil { throw .fileExists }
            let node = makeNode(&t, fileName: name, key: key, mode: mode & 0o7777, size: 0)
            node.lookupCount += 1
            if opened { node.openCount += 1 }  // the creating open
            t.byName[k] = node
            return node.attributes
        }
    }

    // MARK: open / release

    /// Open of an existing file: the immutable flag refuses write access and O_TRUNC.
    public func open(_ ino: UInt64, forWriting: Bool, truncate: Bool) throws(Errno) {
        let n = try node(ino)
        try table.withLock { (_: inout Table) throws(Errno) in
            if (forWriting || truncate) && n.immutable { throw .notPermitted }
            n.openCount += 1
        }
    }

    /// Last close of a file whose size is 0 (never committed, or deleted by a write) removes
    /// its name (v6.15+).
    public func release(_ ino: UInt64) {
        table.withLock { t in
            guard let n = t.byIno[ino] else { return }
            n.openCount -= 1
            if n.openCount == 0 && n.size == 0 && !n.removed {
                n.removed = true
                let k = EfivarfsName.lookupKey(n.fileName)
                if t.byName[k] === n { t.byName[k] = nil }
            }
            if n.openCount == 0 && n.removed && n.lookupCount == 0 { t.byIno[ino] = nil }
        }
    }

    // MARK: read / write

    /// `efivarfs_file_read`: every read fetches the variable afresh; NOT_FOUND is EOF.
    public func read(_ ino: UInt64, offset: Int64, count: Int, uid: UInt32) throws(Errno) -> [UInt8] {
        let n = try node(ino)
        if uid != 0 { rateLimiter.wait(uid: uid) }
        let r = driver.onCpu { $0.readVariable(n.key) }
        switch r {
        case .found(let attrs, let data):
            var out = [UInt8](repeating: 0, count: 4)
            out.storeLE(attrs.rawValue, at: 0)
            out.append(contentsOf: data)
            guard offset >= 0, offset < Int64(out.count) else { return [] }
            let start = Int(offset)
            return Array(out[start..<min(out.count, start + count)])
        case .error(.notFound):
            return []
        case .error(let s):
            throw efiStatusToErrno(s) ?? .ioError
        case .bufferTooSmall:
            throw .ioError
        }
    }

    /// `efivarfs_file_write`: one write(2) is one SetVariable.
    public func write(_ ino: UInt64, _ buffer: [UInt8]) throws(Errno) -> Int {
        guard buffer.count >= 4 else { throw .invalidArgument }
        let raw = buffer.loadLE(UInt32.self, at: 0)
        guard raw & ~VariableAttributes.linuxMask.rawValue == 0 else { throw .invalidArgument }
        let n = try node(ino)
        let data = Array(buffer[4...])
        guard EfivarfsValidation.validate(n.key, data: data) else { throw .invalidArgument }
        let newSize: Int? = try underEfivarsLock { () throws(Errno) -> Int? in
            try driver.onCpu { (cpu: SvsmVariableDriver.Cpu) -> Result<Int?, Errno> in
                if !data.isEmpty {
                    let s = checkVariableSize(cpu, attributes: raw, size: data.count + n.key.name.count * 2)
                    if s != .success { return .failure(efiStatusToErrno(s) ?? .invalidArgument) }
                }
                let status = cpu.setVariable(n.key, attributes: raw, data: data)
                if status == .notFound { return .failure(.ioError) }
                if let e = efiStatusToErrno(status) { return .failure(e) }
                switch cpu.getVariable(n.key, capacity: 0) {
                case .bufferTooSmall(_, let size): return .success(size)
                case .found(_, let d): return .success(d.count)
                case .error(.notFound): return .success(nil)
                case .error: return .success(0)
                }
            }.get()
        }
        table.withLock { _ in
            if let size = newSize {
                n.size = Int64(size + 4)
            } else {
                n.size = 0  // deleted: gone at last close
            }
            let now = EfivarfsNode.now()
            n.mtime = now
            n.ctime = now
        }
        return buffer.count
    }

    /// `check_var_size` with the x86 `efi_query_variable_store` (arch/x86/platform/efi/
    /// quirks.c): only for non-volatile writes, refuse one that would leave less than
    /// EFI_MIN_RESERVE bytes. The subtraction wraps as the kernel's u64 does, so a write
    /// larger than the space left passes here and the store answers OUT_OF_RESOURCES. The
    /// garbage-collection dummy write the kernel tries first is not modelled: the store
    /// has no garbage to collect.
    func checkVariableSize(_ cpu: SvsmVariableDriver.Cpu, attributes: UInt32, size: Int) -> EfiStatus {
        guard attributes & VariableAttributes.nonVolatile.rawValue != 0 else { return .success }
        switch cpu.queryVariableInfo(attributes: attributes) {
        case .failure(let e): return e.status
        case .success(let info):
            if options.reservedSpace > 0 && info.remainingVariableStorageSize &- UInt64(size) < options.reservedSpace {
                return .outOfResources
            }
            return .success
        }
    }

    // MARK: unlink

    /// `efivarfs_unlink`: delete with attributes 0; SUCCESS or NOT_FOUND count as success,
    /// any other failure is EINVAL.
    public func unlink(_ name: [UInt8]) throws(Errno) {
        guard EfivarfsName.isValid(name) else { throw .noSuchFile }
        let k = EfivarfsName.lookupKey(name)
        let n = try table.withLock { (t: inout Table) throws(Errno) -> EfivarfsNode in
            guard let n = t.byName[k] else { throw .noSuchFile }
            if n.immutable { throw .notPermitted }
            return n
        }
        let status = underEfivarsLock { driver.onCpu { $0.setVariable(n.key, attributes: 0, data: []) } }
        guard status == .success || status == .notFound else { throw .invalidArgument }
        table.withLock { t in
            if t.byName[k] === n { t.byName[k] = nil }
            n.removed = true
            n.ctime = EfivarfsNode.now()
            if n.openCount == 0 && n.lookupCount == 0 { t.byIno[n.ino] = nil }
        }
    }

    // MARK: setattr

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
    /// times live in memory only; an immutable file refuses all of them.
    public func setattr(_ ino: UInt64, _ c: AttributeChanges) throws(Errno) -> NodeAttributes {
        if ino == Efivarfs.rootIno { return rootAttributes }
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

    // MARK: flags

    public func getFlags(_ ino: UInt64) throws(Errno) -> UInt32 {
        guard ino != Efivarfs.rootIno else { throw .noTTY }
        let n = try node(ino)
        return table.withLock { _ in n.immutable } ? Efivarfs.immutableFlag : 0
    }

    /// FS_IOC_SETFLAGS through `vfs_fileattr_set`: owner or CAP_FOWNER, then
    /// CAP_LINUX_IMMUTABLE to change the flag, then any other bit is EOPNOTSUPP.
    public func setFlags(_ ino: UInt64, _ flags: UInt32, callerUid: UInt32, privileged: Bool) throws(Errno) {
        guard ino != Efivarfs.rootIno else { throw .noTTY }
        let n = try node(ino)
        try table.withLock { (_: inout Table) throws(Errno) in
            if callerUid != n.uid && !privileged { throw .notPermitted }
            let wantImmutable = flags & Efivarfs.immutableFlag != 0
            if wantImmutable != n.immutable && !privileged { throw .notPermitted }
            if flags & ~Efivarfs.immutableFlag != 0 { throw .notSupported }
            n.immutable = wantImmutable
            n.ctime = EfivarfsNode.now()
        }
    }

    // MARK: extended attributes

    /// setxattr(2) and removexattr(2): the VFS refuses any xattr write on an immutable inode
    /// with EPERM before the filesystem is asked (fs/xattr.c `xattr_permission` →
    /// `may_write_xattr`); efivarfs has no xattr handlers, so everything else is
    /// EOPNOTSUPP. (Through FUSE the kernel does not know the flag, so it is decided here.)
    public func writeXattr(_ ino: UInt64) throws(Errno) -> Never {
        if ino != Efivarfs.rootIno {
            let n = try node(ino)
            if table.withLock({ _ in n.immutable }) { throw .notPermitted }
        }
        throw .notSupported
    }

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
        if case .success(let info) = driver.onCpu({ $0.queryVariableInfo(attributes: VariableAttributes.nvBsRt.rawValue) }) {
            s.blocks = info.maximumVariableStorageSize
            s.blocksFree = info.remainingVariableStorageSize
            s.blocksAvailable = info.remainingVariableStorageSize > options.reservedSpace ? info.remainingVariableStorageSize - options.reservedSpace : 0
        }
        return s
    }
}

/// The kernel's per-UID read rate limit for non-root readers: 100 reads per second, burst
/// 100; an over-limit read sleeps in 50 ms steps and never fails (kernel/user.c
/// `ratelimit_state_init(HZ, 100)`, fs/efivarfs/file.c).
final class ReadRateLimiter: Sendable {
    static let burst = 100
    static let intervalNanoseconds: UInt64 = 1_000_000_000
    static let sleepMicroseconds: UInt32 = 50_000

    private let windows = Locked([UInt32: (start: UInt64, count: Int)]())
    private let now: @Sendable () -> UInt64
    private let sleep: @Sendable (UInt32) -> Void

    init(now: @escaping @Sendable () -> UInt64 = { DispatchTime.now().uptimeNanoseconds },
         sleep: @escaping @Sendable (UInt32) -> Void = { usleep($0) }) {
        self.now = now
        self.sleep = sleep
    }

    /// `__ratelimit`: true if this read may go now.
    func tryAcquire(uid: UInt32) -> Bool {
        let t = now()
        return windows.withLock { w -> Bool in
            var entry = w[uid] ?? (t, 0)
            if t &- entry.start >= ReadRateLimiter.intervalNanoseconds { entry = (t, 0) }
            defer { w[uid] = entry }
            guard entry.count < ReadRateLimiter.burst else { return false }
            entry.count += 1
            return true
        }
    }

    /// Blocks until the read may go: `while (!__ratelimit(...)) msleep(50)`.
    func wait(uid: UInt32) {
        while !tryAcquire(uid: uid) { sleep(ReadRateLimiter.sleepMicroseconds) }
    }
}
