import EfiTypes
import Guest
import MmWire

/// Every variable name GetNextVariableName yields, in its order, and why the walk ended.
public struct VariableEnumeration: Sendable {
    public enum End: Equatable, Sendable {
        /// EFI_NOT_FOUND after the last name.
        case complete
        /// A name came back a second time (some firmware loops); the walk stopped there.
        case duplicate(VariableKey)
        /// The next name needs a larger name buffer than the walk may use (NameSize needed).
        case nameTooLong(needed: Int)
        /// The service answered EFI_UNSUPPORTED.
        case unsupported
        /// Another EFI status.
        case failed(EfiStatus)
        /// The SVSM call itself failed.
        case svsmCallFailed(SvsmCallError)
    }
    public var keys: [VariableKey]
    public var end: End
}

extension SvsmVariableDriver.Cpu {
    /// Walks GetNextVariableName from the empty name. `nameBufferSize` is the name buffer
    /// offered; with `growing`, a BUFFER_TOO_SMALL answer is retried with the size the
    /// service asked for, up to what the MM payload can carry (a UEFI caller may do this;
    /// Linux's efivar_init does not, and stops).
    public func enumerateVariables(nameBufferSize: Int, growing: Bool) -> VariableEnumeration {
        var keys: [VariableKey] = []
        var seen = Set<VariableKey>()
        var previous = VariableKey(guid: .zero, name: [])
        let largest = driver.maxPayloadSize - GetNextVariableNamePayload.nameOffset
        var size = nameBufferSize
        while true {
            let answer: GetNextVariableNameResult
            do { answer = try getNextVariable(after: previous, nameBufferSize: max(size, previous.nameSize)) } catch {
                return VariableEnumeration(keys: keys, end: .svsmCallFailed(error))
            }
            switch answer {
            case .next(let key):
                guard seen.insert(key).inserted else { return VariableEnumeration(keys: keys, end: .duplicate(key)) }
                keys.append(key)
                previous = key
            case .bufferTooSmall(let needed):
                guard growing, needed > size, needed <= largest else {
                    return VariableEnumeration(keys: keys, end: .nameTooLong(needed: needed))
                }
                size = needed
            case .error(.notFound): return VariableEnumeration(keys: keys, end: .complete)
            case .error(.unsupported): return VariableEnumeration(keys: keys, end: .unsupported)
            case .error(let status): return VariableEnumeration(keys: keys, end: .failed(status))
            }
        }
    }
}
