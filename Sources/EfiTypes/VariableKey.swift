/// The identity of a variable: vendor GUID and name, compared as binary CHAR16 strings
/// (edk2 `FindVariableEx`: case-sensitive).
public struct VariableKey: Hashable, Sendable, CustomStringConvertible {
    public let guid: EfiGuid
    /// Code units without the terminating NUL.
    public let name: [UInt16]
    /// The key's hash, taken once when the key is made. A request's key is looked up
    /// several times (the record, the volatile and non-volatile lists, its VarCheck
    /// property, the transaction log), and hashing the name's bytes again for each lookup
    /// was the largest single item of a store update. `Hasher` is seeded per process, so
    /// names a guest chooses cannot be made to collide on purpose.
    private let digest: Int

    public init(guid: EfiGuid, name: [UInt16]) {
        self.guid = guid
        self.name = name
        var h = Hasher()
        h.combine(guid.low)
        h.combine(guid.high)
        h.combine(name.count)
        name.withUnsafeBytes { h.combine(bytes: $0) }
        self.digest = h.finalize()
    }
    public init(_ name: String, _ guid: EfiGuid) { self.init(guid: guid, name: Ucs2.units(name)) }

    /// StrSize: bytes including the NUL.
    public var nameSize: Int { name.count * 2 + 2 }
    public var description: String { "\(Ucs2.string(name))-\(guid)" }

    public func hash(into hasher: inout Hasher) { hasher.combine(digest) }

    /// Equal GUIDs and names; the digests are compared first, so that most unequal keys
    /// are told apart without reading their names.
    public static func == (a: VariableKey, b: VariableKey) -> Bool {
        a.digest == b.digest && a.guid == b.guid && a.name == b.name
    }
}
