/// The identity of a variable: vendor GUID and name, compared as binary CHAR16 strings
/// (edk2 `FindVariableEx`: case-sensitive).
public struct VariableKey: Hashable, Sendable, CustomStringConvertible {
    public let guid: EfiGuid
    /// Code units without the terminating NUL.
    public let name: [UInt16]
    public init(guid: EfiGuid, name: [UInt16]) { self.guid = guid; self.name = name }
    public init(_ name: String, _ guid: EfiGuid) { self.init(guid: guid, name: Ucs2.units(name)) }

    /// StrSize: bytes including the NUL.
    public var nameSize: Int { name.count * 2 + 2 }
    public var description: String { "\(Ucs2.string(name))-\(guid)" }

    /// The name's bytes in one piece: Array's own hashing feeds the hasher one code unit
    /// at a time, and every store lookup hashes a key.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(guid.low)
        hasher.combine(guid.high)
        hasher.combine(name.count)
        name.withUnsafeBytes { hasher.combine(bytes: $0) }
    }
}

