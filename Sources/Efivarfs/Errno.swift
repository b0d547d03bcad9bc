#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import EfiTypes

/// A POSIX errno, as a typed value (after swift-system's `Errno`).
public struct Errno: RawRepresentable, Error, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }

    public static let notPermitted = Errno(rawValue: EPERM)
    public static let noSuchFile = Errno(rawValue: ENOENT)
    public static let interrupted = Errno(rawValue: EINTR)
    public static let ioError = Errno(rawValue: EIO)
    public static let permissionDenied = Errno(rawValue: EACCES)
    public static let fileExists = Errno(rawValue: EEXIST)
    public static let notDirectory = Errno(rawValue: ENOTDIR)
    public static let invalidArgument = Errno(rawValue: EINVAL)
    public static let noSpace = Errno(rawValue: ENOSPC)
    public static let readOnlyFileSystem = Errno(rawValue: EROFS)
    public static let nameTooLong = Errno(rawValue: ENAMETOOLONG)
    public static let notSupported = Errno(rawValue: EOPNOTSUPP)
    public static let noTTY = Errno(rawValue: ENOTTY)
    public static let noDevice = Errno(rawValue: ENODEV)
    public static let illegalSeek = Errno(rawValue: ESPIPE)
    public static let badFileDescriptor = Errno(rawValue: EBADF)

    public var description: String { String(cString: strerror(rawValue)) }
}

/// `efi_status_to_err` (torvalds/linux: drivers/firmware/efi/efi.c): the one place an
/// EFI_STATUS becomes an errno.
public func efiStatusToErrno(_ status: EfiStatus) -> Errno? {
    switch status {
    case .success: return nil
    case .invalidParameter: return .invalidArgument
    case .outOfResources: return .noSpace
    case .deviceError: return .ioError
    case .writeProtected: return .readOnlyFileSystem
    case .securityViolation: return .permissionDenied
    case .notFound: return .noSuchFile
    case .aborted: return .interrupted
    default: return .invalidArgument
    }
}
