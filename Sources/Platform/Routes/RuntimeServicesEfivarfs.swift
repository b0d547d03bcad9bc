import EfiTypes
import Efivarfs
import Guest
import MmWire

/// How one efivarfs operation ended on route a2.
public enum EfivarfsOutcome<Value: Sendable & Equatable>: Sendable, Equatable {
    case completed(Value)
    case failed(Errno)
    /// The firmware stopped the model (the guest terminated, or a step the sources leave
    /// open).
    case halted(EfiRuntimeFault)

    public var errno: Errno? { if case .failed(let e) = self { return e }; return nil }
    public var value: Value? { if case .completed(let v) = self { return v }; return nil }
}

/// Linux's efivarfs on top of the firmware's runtime services (torvalds/linux
/// fs/efivarfs/file.c `efivarfs_file_read`, `efivarfs_file_write`; fs/efivarfs/vars.c
/// `efivar_entry_size`, `efivar_entry_get`, `efivar_entry_set_get_size`, `efivar_init`;
/// drivers/firmware/efi/vars.c `efivar_set_variable_locked`; arch/x86/platform/efi/quirks.c
/// `efi_query_variable_store`), reduced to the calls each operation makes into
/// `efi.get_variable` & co. and the errno it returns. Every call is made holding
/// `efivars_lock` (`efivar_lock`).
public final class RuntimeServicesEfivarfs: Sendable {
    /// EFI_MIN_RESERVE (quirks.c).
    public static let minimumReserve: UInt64 = 5120

    public let runtime: EfiRuntimeWrappers
    /// `efivars_lock`, a semaphore the calling task sleeps on.
    let efivarsLock = Lock()
    private let held = Locked(false)

    public init(runtime: EfiRuntimeWrappers) { self.runtime = runtime }

    /// Whether a task holds `efivars_lock` now.
    public var efivarsLockHeld: Bool { held.withLock { $0 } }

    func locked<R>(_ body: () throws(EfiRuntimeFault) -> R) throws(EfiRuntimeFault) -> R {
        try efivarsLock.withLock { () throws(EfiRuntimeFault) -> R in
            held.withLock { $0 = true }
            defer { held.withLock { $0 = false } }
            return try body()
        }
    }

    /// `efivarfs_file_read`: the size (GetVariable with size 0), then the data; NOT_FOUND
    /// on the size query is EOF. The second call's status is not checked by the kernel
    /// (`efivar_entry_get` returns 0).
    public func read(_ key: VariableKey) -> EfivarfsOutcome<[UInt8]> {
        do {
            let size = try locked { () throws(EfiRuntimeFault) in try runtime.getVariable(key, dataSize: 0) }
            let needed: Int
            switch size {
            case .bufferTooSmall(_, let n): needed = n
            case .found: needed = 0
            case .error(.notFound): return .completed([])
            case .error(let s): return .failed(efiStatusToErrno(s) ?? .invalidArgument)
            }
            let got = try locked { () throws(EfiRuntimeFault) in try runtime.getVariable(key, dataSize: needed) }
            guard case .found(let attributes, let data) = got else { return .completed([UInt8](zeroed: 4 + needed)) }
            var out = [UInt8](zeroed: 4)
            out.storeLE(attributes.rawValue, at: 0)
            return .completed(out + data)
        } catch {
            return .halted(error)
        }
    }

    /// `efivarfs_file_write` → `efivar_entry_set_get_size`: the space check for data
    /// (`check_var_size` → `efi_query_variable_store`, a QueryVariableInfo for a
    /// non-volatile variable), SetVariable, then GetVariable with size 0 for the new size.
    /// Returns the bytes written.
    public func write(_ key: VariableKey, attributes: UInt32, data: [UInt8]) -> EfivarfsOutcome<Int> {
        do {
            return try locked { () throws(EfiRuntimeFault) -> EfivarfsOutcome<Int> in
                if !data.isEmpty {
                    let space = try queryVariableStore(attributes: attributes, size: data.count + 2 * key.name.count)
                    if space != .success { return .failed(efiStatusToErrno(space) ?? .invalidArgument) }
                }
                let set = try runtime.setVariable(key, attributes: attributes, data: data)
                // `if (!set) { if (bytes == -ENOENT) bytes = -EIO; ... }`
                if set == .notFound { return .failed(.ioError) }
                if let e = efiStatusToErrno(set) { return .failed(e) }
                switch try runtime.getVariable(key, dataSize: 0) {
                case .bufferTooSmall, .found, .error(.notFound): return .completed(4 + data.count)
                case .error(let s): return .failed(efiStatusToErrno(s) ?? .invalidArgument)
                }
            }
        } catch {
            return .halted(error)
        }
    }

    /// `efi_query_variable_store` (non-blocking path not taken): volatile data needs no
    /// call; otherwise QueryVariableInfo and the EFI_MIN_RESERVE rule. The kernel's
    /// dummy-variable garbage collection below the reserve is not modelled.
    func queryVariableStore(attributes: UInt32, size: Int) throws(EfiRuntimeFault) -> EfiStatus {
        guard attributes & VariableAttributes.nonVolatile.rawValue != 0 else { return .success }
        switch try runtime.queryVariableInfo(attributes: attributes) {
        case .failure(let e): return e.status
        case .success(let info):
            return info.remainingVariableStorageSize &- UInt64(size) < Self.minimumReserve ? .outOfResources : .success
        }
    }

    /// `efivar_init` at mount: GetNextVariableName until NOT_FOUND; another error ends the
    /// listing with "efivars: get_next_variable: status=…" and the mount goes on with what
    /// it has.
    public func mountListing(nameBufferSize: Int = 1024) -> EfivarfsOutcome<[VariableKey]> {
        do {
            return try locked { () throws(EfiRuntimeFault) -> EfivarfsOutcome<[VariableKey]> in
                var keys: [VariableKey] = []
                var previous = VariableKey(guid: .zero, name: [])
                while true {
                    switch try runtime.getNextVariableName(after: previous, nameBufferSize: nameBufferSize) {
                    case .next(let k): keys.append(k); previous = k
                    case .error(.notFound): return .completed(keys)
                    case .error(.unsupported): return .failed(.notSupported)
                    case .error, .bufferTooSmall: return .completed(keys)
                    }
                }
            }
        } catch {
            return .halted(error)
        }
    }
}
