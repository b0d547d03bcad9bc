import EfiTypes
import MmWire

/// OVMF_VARS*.fd: an edk2 firmware volume holding an authenticated variable store
/// (tianocore/edk2 OvmfPkg/Include/Fdf/VarStore.fdf.inc, MdeModulePkg/Include/Guid/VariableFormat.h,
/// MdeModulePkg/Universal/Variable/RuntimeDxe/VariableParsing.c).
public enum OvmfVarsFile {
    static let systemNvDataFvGuid = EfiGuid("fff12b8d-7696-4c8b-a985-2747075b4f50")!
    static let authenticatedVariableGuid = EfiGuid("aaf32c78-947b-439a-a180-2e144ec37792")!
    static let variableGuid = EfiGuid("ddcf3616-3275-4164-98b6-fe85707ffe7d")!
    static let headerSize = 60
    static let startId: UInt16 = 0x55AA
    static let stateAdded: UInt8 = 0x3F
    static let stateInDeletedTransition: UInt8 = 0x3E
    static let knownStates: Set<UInt8> = [0x7F, 0x3F, 0x3E, 0x3D, 0x3C]

    /// The variable store inside the volume: where records start and end.
    struct Layout { let storeHeader: Int; let firstRecord: Int; let end: Int }

    static func layout(_ b: [UInt8], path: String) throws(VariableFileError) -> Layout {
        func fail(_ at: Int, _ why: String) -> VariableFileError {
            VariableFileError(path: path, location: "offset 0x\(String(at, radix: 16))", reason: why)
        }
        guard b.count >= 0x48 + 28 else { throw fail(0, "file too short for a firmware volume (\(b.count) bytes)") }
        guard Array(b[0x28..<0x2c]) == Array("_FVH".utf8) else { throw fail(0x28, "no firmware volume signature \"_FVH\"") }
        guard EfiGuid(bytes: b, at: 0x10) == systemNvDataFvGuid else { throw fail(0x10, "FileSystemGuid is not gEfiSystemNvDataFvGuid") }
        let fvLength = b.loadLE(UInt64.self, at: 0x20)
        guard fvLength <= UInt64(b.count) else { throw fail(0x20, "FvLength 0x\(String(fvLength, radix: 16)) exceeds the file") }
        let headerLength = Int(b.loadLE(UInt16.self, at: 0x30))
        guard headerLength >= 0x48, headerLength % 2 == 0, headerLength + 28 <= b.count else { throw fail(0x30, "bad HeaderLength \(headerLength)") }
        var sum: UInt16 = 0
        for i in stride(from: 0, to: headerLength, by: 2) { sum &+= b.loadLE(UInt16.self, at: i) }
        guard sum == 0 else { throw fail(0x32, "firmware volume header checksum does not add up (sum 0x\(String(sum, radix: 16)))") }
        let h = headerLength
        let sig = EfiGuid(bytes: b, at: h)
        if sig == variableGuid { throw fail(h, "non-authenticated variable store format (not supported)") }
        guard sig == authenticatedVariableGuid else { throw fail(h, "no authenticated variable store signature") }
        let size = Int(b.loadLE(UInt32.self, at: h + 16))
        guard size >= 28, h + size <= b.count else { throw fail(h + 16, "store Size 0x\(String(size, radix: 16)) exceeds the file") }
        guard b[h + 20] == 0x5A else { throw fail(h + 20, "store Format 0x\(String(b[h + 20], radix: 16)) is not FORMATTED (0x5a)") }
        guard b[h + 21] == 0xFE else { throw fail(h + 21, "store State 0x\(String(b[h + 21], radix: 16)) is not HEALTHY (0xfe)") }
        return Layout(storeHeader: h, firstRecord: (h + 28 + 3) & ~3, end: h + size)
    }

    /// One record of the store as found: where it is, its State, its size on flash
    /// (aligned), and — for the states that can be live — what it holds.
    struct Record {
        let offset: Int
        let state: UInt8
        let size: Int
        let variable: ExportedVariable?
    }

    static let stateHeaderValidOnly: UInt8 = 0x7F
    /// What edk2 ANDs into State to delete a record (VAR_DELETED).
    static let deletedMask: UInt8 = 0xFD
    /// What edk2 ANDs into State while the record's replacement is written (VAR_IN_DELETED_TRANSITION).
    static let inDeletedTransitionMask: UInt8 = 0xFE

    /// Every record up to the end of the used area (the first slot without StartId), and
    /// that end. A header-only record (State 0x7f: its writer was cut off) whose sizes do
    /// not fit ends the scan instead of failing it: edk2 ignores such a record, and this is
    /// what a crash in the middle of an append leaves.
    static func scan(_ b: [UInt8], path: String) throws(VariableFileError) -> (layout: Layout, records: [Record], end: Int) {
        let l = try layout(b, path: path)
        func fail(_ at: Int, _ why: String) -> VariableFileError {
            VariableFileError(path: path, location: "record at offset 0x\(String(at, radix: 16))", reason: why)
        }
        var records: [Record] = []
        var i = l.firstRecord
        while i + headerSize <= l.end, b.loadLE(UInt16.self, at: i) == startId {
            let state = b[i + 2]
            guard knownStates.contains(state) else { throw fail(i, "unknown record State 0x\(String(state, radix: 16))") }
            let nameSize = Int(b.loadLE(UInt32.self, at: i + 36))
            let dataSize = Int(b.loadLE(UInt32.self, at: i + 40))
            let total = headerSize + nameSize + dataSize
            guard nameSize <= l.end, dataSize <= l.end, i + total <= l.end else {
                if state == stateHeaderValidOnly { break }
                throw fail(i, "NameSize \(nameSize) + DataSize \(dataSize) run past the end of the store")
            }
            var variable: ExportedVariable?
            if state == stateAdded || state == stateInDeletedTransition {
                let nameStart = i + headerSize
                guard nameSize >= 2, nameSize % 2 == 0, b[nameStart + nameSize - 2] == 0, b[nameStart + nameSize - 1] == 0,
                      let name = Ucs2.readNulTerminated(b, offset: nameStart, byteCount: nameSize), name.count * 2 + 2 == nameSize else {
                    throw fail(i, "name is not a NUL-terminated UCS-2 string of NameSize bytes")
                }
                let attrs = VariableAttributes(rawValue: b.loadLE(UInt32.self, at: i + 4))
                guard attrs.contains(.nonVolatile) else { throw fail(i, "a volatile variable in a non-volatile store") }
                let time = EfiTime(bytes: Array(b[(i + 16)..<(i + 32)]))
                let key = VariableKey(guid: EfiGuid(bytes: b, at: i + 44), name: name)
                variable = ExportedVariable(key, StoredVariable(attributes: attrs.subtracting(.appendWrite),
                                                                data: Array(b[(nameStart + nameSize)..<(nameStart + nameSize + dataSize)]),
                                                                timestamp: attrs.contains(.timeBasedAuthenticatedWriteAccess) ? time : (time == .zero ? nil : time)))
            }
            let size = (total + 3) & ~3
            records.append(Record(offset: i, state: state, size: size, variable: variable))
            i += size
        }
        return (l, records, min(i, l.end))
    }

    /// The live records, in record order (edk2 `FindVariableEx` liveness: State 0x3f, or
    /// 0x3e when no 0x3f twin exists).
    static func liveRecords(_ records: [Record], path: String) throws(VariableFileError) -> [Record] {
        var added: [VariableKey: Int] = [:]
        for r in records where r.state == stateAdded {
            let key = r.variable!.key
            if added[key] != nil {
                throw VariableFileError(path: path, location: "record at offset 0x\(String(r.offset, radix: 16))", reason: "duplicate variable \(key)")
            }
            added[key] = r.offset
        }
        // Without a 0x3f twin, the last record in transition is the one (edk2's
        // FindVariableEx keeps overwriting InDeletedVariable as it walks the store). Two
        // such records are what a crash during an update of a variable leaves when an
        // older crash had already left a stale copy.
        var lastInTransition: [VariableKey: Int] = [:]
        for r in records where r.state == stateInDeletedTransition && added[r.variable!.key] == nil {
            lastInTransition[r.variable!.key] = r.offset
        }
        return records.filter { r in
            r.state == stateAdded || (r.state == stateInDeletedTransition && lastInTransition[r.variable!.key] == r.offset)
        }
    }

    /// The live variables, in record order.
    public static func read(_ b: [UInt8], path: String) throws(VariableFileError) -> [ExportedVariable] {
        let (_, records, _) = try scan(b, path: path)
        return try liveRecords(records, path: path).map { $0.variable! }
    }

    /// A record as edk2 writes it (authenticated header, name, data, 0xff padding to 4).
    static func record(_ v: ExportedVariable, state: UInt8) -> [UInt8] {
        let name = Ucs2.nulTerminatedBytes(v.key.name)
        var r = [UInt8](zeroed: headerSize)
        r.storeLE(startId, at: 0)
        r[2] = state
        r.storeLE(v.value.attributes.rawValue, at: 4)
        if let t = v.value.timestamp { r.replace(at: 16, with: t.bytes) }
        r.storeLE(UInt32(name.count), at: 36)
        r.storeLE(UInt32(v.value.data.count), at: 40)
        r.store(v.key.guid, at: 44)
        r += name + v.value.data
        while r.count % 4 != 0 { r.append(0xFF) }
        return r
    }

    /// Rewrites the store of `template` with `variables` (virt-firmware's writer rules):
    /// everything before the first record and after the store is kept byte for byte, the
    /// variables go in sorted by name as State 0x3f records padded with 0xff, and the rest
    /// of the store is 0xff.
    public static func write(_ variables: [ExportedVariable], template: [UInt8], path: String) throws(VariableFileError) -> [UInt8] {
        let l = try layout(template, path: path)
        var out = template
        var i = l.firstRecord
        for v in variables.sorted(by: { Ucs2.string($0.key.name) < Ucs2.string($1.key.name) }) {
            let r = record(v, state: stateAdded)
            guard i + r.count <= l.end else {
                let needed = variables.reduce(0) { $0 + StoreLimits.recordSize(nameSize: $1.key.nameSize, dataSize: $1.value.data.count) }
                throw VariableFileError(path: path, location: "variable store", reason: "the variables need \(needed) bytes; the volume's store holds \(l.end - l.firstRecord)")
            }
            out.replaceSubrange(i..<(i + r.count), with: r)
            i += r.count
        }
        for j in i..<l.end { out[j] = 0xFF }
        return out
    }
}
