import Driver
import EfiTypes
import Foundation
import Guest
import MmWire

/// efivarfs semantics, independent of FUSE: the directory of `<Name>-<GUID>` files, with
/// the behaviour of torvalds/linux fs/efivarfs (newest mainline) for every operation,
/// calling the variable layer through the driver. The VFS checks efivarfs relies on that a
/// FUSE daemon must make itself (the immutable flag, privileges) are made here too; the
/// FUSE adapter only converts types and replies.
///
/// Files: this one holds the namespace (population, lookup, create, open and release);
/// `EfivarfsIO.swift` reads, writes and unlinks; `EfivarfsAttributes.swift` answers stat,
/// setattr, the flag ioctls, xattrs and statfs.
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
        /// Mounted read-only (`-o ro`): every change answers EROFS, as the VFS does for a
        /// read-only mount.
        public var readOnly = false
        public init() {}
    }

    /// Who makes a request: the FUSE request's credentials.
    public struct Caller: Sendable {
        public var uid: UInt32
        public var gid: UInt32
        public init(uid: UInt32, gid: UInt32) { self.uid = uid; self.gid = gid }
        /// CAP_FOWNER and CAP_LINUX_IMMUTABLE: a FUSE daemon sees no capabilities, so root
        /// stands for them (a documented difference).
        var isPrivileged: Bool { uid == 0 }
    }

    public static let rootIno: UInt64 = 1
    /// FS_IMMUTABLE_FL.
    public static let immutableFlag: UInt32 = 0x10
    /// The name buffer efivar_init offers GetNextVariableName (fs/efivarfs/vars.c: 512
    /// bytes; a longer name ends the listing with a warning).
    public static let nameBufferSize = 512

    public let driver: SvsmVariableDriver
    public let options: Options
    let mountTime = EfivarfsNode.now()

    struct Table {
        var byName: [EfivarfsName.LookupKey: EfivarfsNode] = [:]
        var byIno: [UInt64: EfivarfsNode] = [:]
        var nextIno: UInt64 = 2
        /// Open descriptors: the inode and the opener's uid (`file->f_cred`), by handle.
        var open: [UInt64: (ino: UInt64, uid: UInt32)] = [:]
        var nextHandle: UInt64 = 1
    }
    let table = Locked(Table())
    /// `efivars_lock` for the set-then-size sequences, so each is atomic with respect to
    /// other efivarfs writers.
    private let efivarsLock = Lock()
    let rateLimiter = ReadRateLimiter()
    /// How the mount-time listing ended (a name longer than the buffer ends it early, as in
    /// the kernel).
    public private(set) var populated: VariableEnumeration.End = .complete
    /// Counts by kind, in a short list: there are five kinds, and comparing a small
    /// String is cheaper than hashing one on every operation.
    private let operationCounts = Locked([(kind: String, count: Int)]())

    /// How many operations of each kind that reach the variable layer (`read`, `write`,
    /// `unlink`, `statfs`, `enumerate`) this filesystem has run, whether they made SVSM
    /// calls or not (a driver-cache hit makes none).
    public var operations: [String: Int] {
        Dictionary(operationCounts.withLock { $0 }.map { ($0.kind, $0.count) }, uniquingKeysWith: +)
    }

    /// Runs one efivarfs operation: counted, and every SVSM call in it tagged with `kind`.
    func operation<R, E: Error>(_ kind: String, _ body: () throws(E) -> R) throws(E) -> R {
        operationCounts.withLock { list in
            if let i = list.firstIndex(where: { $0.kind == kind }) { list[i].count += 1 } else { list.append((kind, 1)) }
        }
        return try SvsmOperation.run(kind, body)
    }

    /// `efivar_lock()` … `efivar_unlock()`, or nothing when the experiment turns it off.
    func underEfivarsLock<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        guard options.efivarsLock else { return try body() }
        return try efivarsLock.withLock(body)
    }

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
    /// on a duplicate, on BUFFER_TOO_SMALL or another error (the kernel warns and mounts
    /// what it has); fail on UNSUPPORTED.
    public func populate() throws(PopulateError) {
        let (listing, sizes) = operation("enumerate") { driver.onCpu { cpu -> (VariableEnumeration, [Int]) in
            let listing = cpu.enumerateVariables(nameBufferSize: Efivarfs.nameBufferSize, growing: false)
            let sizes = listing.keys.map { key -> Int in
                if case .bufferTooSmall(_, let s)? = try? cpu.getVariable(key, capacity: 0) { return s }
                return 0
            }
            return (listing, sizes)
        } }
        if listing.end == .unsupported { throw .unsupported }
        populated = listing.end
        table.withLock { t in
            for (key, size) in zip(listing.keys, sizes) where key.guid != .linuxEfiRandomSeedTable {
                let name = EfivarfsName.fileName(for: key)
                let node = makeNode(&t, fileName: name, key: key, mode: 0o644, size: Int64(size + 4))
                t.byName[EfivarfsName.lookupKey(name)] = node
            }
        }
    }

    func makeNode(_ t: inout Table, fileName: [UInt8], key: VariableKey, mode: UInt32, size: Int64) -> EfivarfsNode {
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
            guard let node = t.byName[EfivarfsName.lookupKey(validName: name)] else { throw .noSuchFile }
            node.lookupCount += 1
            return node.attributes
        }
    }

    /// The node for `ino`. Its mutable fields are read and written with the table lock
    /// held (found by ThreadSanitizer: getattr raced a write's size update).
    func node(_ ino: UInt64) throws(Errno) -> EfivarfsNode {
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
    /// stable for one directory snapshot; the kernel's dcache order is not modelled).
    public func list() -> [([UInt8], UInt64)] {
        table.withLock { t in t.byName.values.sorted { $0.ino > $1.ino }.map { ($0.fileName, $0.ino) } }
    }

    /// `efivarfs_create`: name check, the random-seed GUID, no firmware call. Returns the
    /// new node and, unless `opened` is false (mknod(2), which creates the name without a
    /// descriptor: no release follows, so the size-0 file stays until unlinked or
    /// unmounted, as in the kernel), the handle of the creating descriptor.
    public func create(_ name: [UInt8], mode: UInt32, caller: Caller, opened: Bool = true) throws(Errno) -> (NodeAttributes, handle: UInt64?) {
        if options.readOnly { throw .readOnlyFileSystem }
        guard name.count <= EfivarfsName.nameMax else { throw .nameTooLong }
        guard let key = EfivarfsName.variableKey(forCreatedName: name) else { throw .invalidArgument }
        if key.guid == .linuxEfiRandomSeedTable { throw .notPermitted }
        return try table.withLock { (t: inout Table) throws(Errno) -> (NodeAttributes, handle: UInt64?) in
            let k = EfivarfsName.lookupKey(validName: name)  // variableKey(forCreatedName:) checked it
            if t.byName[k] != nil { throw .fileExists }
            let node = makeNode(&t, fileName: name, key: key, mode: mode & 0o7777, size: 0)
            node.lookupCount += 1
            t.byName[k] = node
            guard opened else { return (node.attributes, nil) }
            node.openCount += 1
            return (node.attributes, Self.addHandle(&t, ino: node.ino, uid: caller.uid))
        }
    }

    /// mkdir(2): efivarfs has no directories; the VFS answers EEXIST for a name that is
    /// there and EPERM otherwise (no `mkdir` inode operation).
    public func mkdir(_ name: [UInt8]) -> Errno {
        (try? lookupWithoutReference(name)) != nil ? .fileExists : .notPermitted
    }

    /// rmdir(2): ENOTDIR for a file that is there, ENOENT otherwise.
    public func rmdir(_ name: [UInt8]) -> Errno {
        (try? lookupWithoutReference(name)) != nil ? .notDirectory : .noSuchFile
    }

    private func lookupWithoutReference(_ name: [UInt8]) throws(Errno) -> EfivarfsNode {
        guard EfivarfsName.isValid(name) else { throw .noSuchFile }
        guard let n = table.withLock({ $0.byName[EfivarfsName.lookupKey(validName: name)] }) else { throw .noSuchFile }
        return n
    }

    // MARK: open / release

    private static func addHandle(_ t: inout Table, ino: UInt64, uid: UInt32) -> UInt64 {
        let h = t.nextHandle
        t.nextHandle += 1
        t.open[h] = (ino, uid)
        return h
    }

    /// Open of an existing file: the immutable flag refuses write access and O_TRUNC, a
    /// read-only mount refuses them with EROFS. Returns the descriptor's handle, which
    /// remembers the opener (the read rate limit is the opener's, `file->f_cred`).
    public func open(_ ino: UInt64, forWriting: Bool, truncate: Bool, caller: Caller) throws(Errno) -> UInt64 {
        let n = try node(ino)
        if (forWriting || truncate) && options.readOnly { throw .readOnlyFileSystem }
        return try table.withLock { (t: inout Table) throws(Errno) -> UInt64 in
            if (forWriting || truncate) && n.immutable { throw .notPermitted }
            n.openCount += 1
            return Self.addHandle(&t, ino: ino, uid: caller.uid)
        }
    }

    /// Last close of a file whose size is 0 (never committed, or deleted by a write) removes
    /// its name (v6.15+).
    public func release(handle: UInt64) {
        table.withLock { t in
            guard let (ino, _) = t.open.removeValue(forKey: handle), let n = t.byIno[ino] else { return }
            n.openCount -= 1
            if n.openCount == 0 && n.size == 0 && !n.removed {
                n.removed = true
                let k = EfivarfsName.lookupKey(n.fileName)
                if t.byName[k] === n { t.byName[k] = nil }
            }
            if n.openCount == 0 && n.removed && n.lookupCount == 0 { t.byIno[ino] = nil }
        }
    }

    /// The uid that opened `handle`.
    func opener(_ handle: UInt64) -> UInt32? { table.withLock { $0.open[handle]?.uid } }
}
