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
    ///
    /// A name that comes back ends the walk with `.duplicate`, as efivar_init's does (a
    /// firmware that loops). With `toleratingRepeats` the walk goes on from it instead: a
    /// variable rewritten during the walk moves to the end of the store (edk2 appends its
    /// new record, as this store's update order does), so the walk meets it once more — a
    /// listing beside a live mount must not fail for that. A name that follows itself, or
    /// more repeats than a rewrite per name could explain, is still a loop.
    public func enumerateVariables(nameBufferSize: Int, growing: Bool, toleratingRepeats: Bool = false) -> VariableEnumeration {
        var keys: [VariableKey] = []
        var seen = Set<VariableKey>()
        var repeats = 0
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
                if !seen.insert(key).inserted {
                    guard toleratingRepeats, key != previous, repeats < 4 * keys.count + 16 else {
                        return VariableEnumeration(keys: keys, end: .duplicate(key))
                    }
                    repeats += 1
                } else {
                    keys.append(key)
                }
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
