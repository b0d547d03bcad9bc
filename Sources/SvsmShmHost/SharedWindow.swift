#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CShmAtomics

/// The file behind the guest's ivshmem BAR, mapped MAP_SHARED: byte n of the file is byte n
/// of the BAR. An empty (or new) file is sized to 16 MiB; an existing one keeps its size,
/// which must be a whole number of pages and at least 2 MiB.
///
/// Everything in it is written by the guest at any time. The host reads the announcing
/// fields (`guest_generation`, the doorbells) with acquire loads and writes its own with
/// release stores; everything else it reads through `GuestMemory`, whose accessors check
/// each range against the window.
public final class SharedWindow: @unchecked Sendable {
    public enum OpenError: Error, CustomStringConvertible, Equatable {
        case open(path: String, errno: Int32)
        case size(path: String, size: Int)
        case map(path: String, errno: Int32)
        public var description: String {
            switch self {
            case .open(let p, let e): return "cannot open \(p): \(String(cString: strerror(e)))"
            case .size(let p, let n):
                return "\(p) is \(n) bytes: a shared window is a whole number of 4 KiB pages, at least \(ShmLayout.minimumWindowSize) bytes and at most 4 GiB (an empty file is sized to 16 MiB)"
            case .map(let p, let e): return "cannot map \(p): \(String(cString: strerror(e)))"
            }
        }
    }

    public let path: String
    public let size: Int
    public let pointer: UnsafeMutableRawPointer

    public init(path: String, newSize: Int = ShmLayout.defaultWindowSize) throws(OpenError) {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .open(path: path, errno: errno) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .open(path: path, errno: errno) }
        var size = Int(st.st_size)
        if size == 0 {
            guard ftruncate(fd, off_t(newSize)) == 0 else { throw .open(path: path, errno: errno) }
            size = newSize
        }
        guard size >= ShmLayout.minimumWindowSize, size % Int(ShmLayout.pageSize) == 0, size <= 1 << 32 else {
            throw .size(path: path, size: size)
        }
        // An inaccessible page on each side: a stray access just outside the window faults
        // instead of reaching whatever the process has mapped next to it.
        let guardSize = Int(ShmLayout.pageSize)
        let reserved = mmap(nil, size + 2 * guardSize, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let reserved, reserved != MAP_FAILED else { throw .map(path: path, errno: errno) }
        let p = mmap(reserved + guardSize, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0)
        guard let p, p != MAP_FAILED else {
            let e = errno
            munmap(reserved, size + 2 * guardSize)
            throw .map(path: path, errno: e)
        }
        self.path = path
        self.size = size
        self.pointer = p
        self.reservation = reserved
    }

    /// The window and its two guard pages.
    private let reservation: UnsafeMutableRawPointer

    deinit { munmap(reservation, size + 2 * Int(ShmLayout.pageSize)) }

    // The announcing fields, at offsets the host computes itself (never guest-supplied).
    func loadAcquireU32(_ offset: Int) -> UInt32 {
        precondition(offset >= 0 && offset + 4 <= size && offset % 4 == 0)
        return UInt32(littleEndian: cshm_load_acquire_u32(pointer + offset))
    }
    func loadAcquireU64(_ offset: Int) -> UInt64 {
        precondition(offset >= 0 && offset + 8 <= size && offset % 8 == 0)
        return UInt64(littleEndian: cshm_load_acquire_u64(pointer + offset))
    }
    func storeReleaseU32(_ offset: Int, _ value: UInt32) {
        precondition(offset >= 0 && offset + 4 <= size && offset % 4 == 0)
        cshm_store_release_u32(pointer + offset, value.littleEndian)
    }
    func storeReleaseU64(_ offset: Int, _ value: UInt64) {
        precondition(offset >= 0 && offset + 8 <= size && offset % 8 == 0)
        cshm_store_release_u64(pointer + offset, value.littleEndian)
    }
    /// A plain load of a header field, after the acquire load of `guest_generation`.
    func loadU64(_ offset: Int) -> UInt64 {
        precondition(offset >= 0 && offset + 8 <= size && offset % 8 == 0)
        return UInt64(littleEndian: (pointer + offset).load(as: UInt64.self))
    }
    func loadU32(_ offset: Int) -> UInt32 {
        precondition(offset >= 0 && offset + 4 <= size && offset % 4 == 0)
        return UInt32(littleEndian: (pointer + offset).load(as: UInt32.self))
    }
}
