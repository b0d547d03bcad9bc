import EfiTypes
import Foundation

/// What stat reports for a node.
public struct NodeAttributes: Sendable, Equatable {
    public var ino: UInt64
    public var isDirectory: Bool
    public var mode: UInt32        // permission bits only
    public var uid: UInt32
    public var gid: UInt32
    public var size: Int64
    public var nlink: UInt32
    public var atime: timespec
    public var mtime: timespec
    public var ctime: timespec

    public static func == (a: NodeAttributes, b: NodeAttributes) -> Bool {
        a.ino == b.ino && a.mode == b.mode && a.uid == b.uid && a.gid == b.gid && a.size == b.size && a.nlink == b.nlink
    }
}

extension timespec: @retroactive @unchecked Sendable {}

/// One efivarfs inode: the variable it names and the kernel's in-memory state for it
/// (`i_size`, mode, owner, times, the immutable flag, `open_count`, `removed`).
final class EfivarfsNode: @unchecked Sendable {  // state guarded by the Efivarfs table lock
    let ino: UInt64
    /// The name as the directory lists it (the spelling typed at create, or the firmware form).
    let fileName: [UInt8]
    let key: VariableKey
    var mode: UInt32
    var uid: UInt32
    var gid: UInt32
    /// The cached `i_size`: 4 + data size after mount or a write, 0 when uncommitted.
    var size: Int64
    var immutable: Bool
    var atime: timespec
    var mtime: timespec
    var ctime: timespec
    var openCount = 0
    /// Dropped from the directory (last close of an empty file, or unlink).
    var removed = false
    /// Kernel references (lookup counts) not yet forgotten.
    var lookupCount: UInt64 = 0

    init(ino: UInt64, fileName: [UInt8], key: VariableKey, mode: UInt32, uid: UInt32, gid: UInt32, size: Int64, immutable: Bool) {
        self.ino = ino
        self.fileName = fileName
        self.key = key
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.size = size
        self.immutable = immutable
        let now = EfivarfsNode.now()
        atime = now; mtime = now; ctime = now
    }

    static func now() -> timespec {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return ts
    }

    var attributes: NodeAttributes {
        NodeAttributes(ino: ino, isDirectory: false, mode: mode, uid: uid, gid: gid, size: size,
                       nlink: removed ? 0 : 1, atime: atime, mtime: mtime, ctime: ctime)
    }
}
