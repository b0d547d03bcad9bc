import EfiTypes

/// The native store's files (all little-endian):
/// - `checkpoint`: magic "EFBCKP01", generation u64, body length u64, CRC-32 of the body
///   u32, then the body: every non-volatile variable as a length-prefixed record body, in
///   GetNextVariableName order.
/// - `log`: magic "EFBLOG01", generation u64, then records: magic "EFVR" u32, body length
///   u32, CRC-32 of the body u32, body.
/// - A record body: op u8 (1 put, 2 delete, 3 put with a signer digest), vendor GUID (16),
///   name length in CHAR16 u32, name (UTF-16LE), attributes u32, has-timestamp u8, EFI_TIME
///   (16, if present), data length u32, data; for op 3 then digest length u32, digest.
/// - `config`: `nv-store-size=N`, the size the store was made with.
/// - `lock`: held with flock(2) while the store is served; it holds the owner's note.
enum NativeStoreFormat {
    static let checkpointMagic = Array("EFBCKP01".utf8)
    static let logMagic = Array("EFBLOG01".utf8)
    static let recordMagic: UInt32 = 0x5256_4645  // "EFVR"
    static let logHeaderSize = 16
    static let checkpointHeaderSize = 28
    static let recordHeaderSize = 12

    static func encode(_ change: VariableChange) -> [UInt8] {
        var b = [UInt8]()
        b.reserveCapacity(encodedSize(change))
        encode(change, into: &b)
        return b
    }

    /// The length of a record body, without building it.
    static func encodedSize(_ change: VariableChange) -> Int {
        let v = change.value
        return 1 + 16 + 4 + change.key.name.count * 2 + 4 + 1 + (v?.timestamp == nil ? 0 : 16) + 4 + (v?.data.count ?? 0)
            + (v?.digest.map { 4 + $0.count } ?? 0)
    }

    /// Appends the record body to `b`.
    static func encode(_ change: VariableChange, into b: inout [UInt8]) {
        let (key, v) = (change.key, change.value)
        b.append(v == nil ? 2 : v?.digest == nil ? 1 : 3)
        b.appendLE(key.guid.low)
        b.appendLE(key.guid.high)
        b.appendLE(UInt32(key.name.count))
        for u in key.name { b.appendLE(u) }
        b.appendLE(v?.attributes.rawValue ?? 0)
        if let t = v?.timestamp { b.append(1); b += t.bytes } else { b.append(0) }
        let data = v?.data ?? []
        b.appendLE(UInt32(data.count))
        b += data
        if let d = v?.digest {
            b.appendLE(UInt32(d.count))
            b += d
        }
    }

    static func decode(_ b: [UInt8], at start: Int, length: Int) -> VariableChange? {
        let end = start + length
        guard length >= 1 + 16 + 4, end <= b.count else { return nil }
        let op = b[start]
        guard (1...3).contains(op) else { return nil }
        let guid = EfiGuid(bytes: b, at: start + 1)
        let units = Int(b.loadLE(UInt32.self, at: start + 17))
        var i = start + 21
        guard units <= 0x10000, i + units * 2 + 5 <= end else { return nil }
        let name = (0..<units).map { b.loadLE(UInt16.self, at: i + 2 * $0) }
        i += units * 2
        let attrs = b.loadLE(UInt32.self, at: i); i += 4
        let hasTime = b[i]; i += 1
        var time: EfiTime?
        if hasTime == 1 {
            guard i + 16 <= end else { return nil }
            time = EfiTime(bytes: Array(b[i..<(i + 16)])); i += 16
        }
        guard i + 4 <= end else { return nil }
        let n = Int(b.loadLE(UInt32.self, at: i)); i += 4
        guard n <= end - i else { return nil }
        let data = Array(b[i..<(i + n)]); i += n
        var digest: [UInt8]?
        if op == 3 {
            guard i + 4 <= end else { return nil }
            let d = Int(b.loadLE(UInt32.self, at: i)); i += 4
            guard d == end - i else { return nil }
            digest = Array(b[i..<end]); i = end
        }
        guard i == end else { return nil }
        let key = VariableKey(guid: guid, name: name)
        return VariableChange(key: key, value: op == 2 ? nil : StoredVariable(attributes: VariableAttributes(rawValue: attrs), data: data,
                                                                             timestamp: time, digest: digest))
    }

    /// The log records of `changes`, each framed with magic, length and CRC.
    static func logRecords(_ changes: [VariableChange]) -> [UInt8] {
        var out = [UInt8]()
        for c in changes {
            let body = encode(c)
            out.appendLE(recordMagic)
            out.appendLE(UInt32(body.count))
            out.appendLE(Crc32.checksum(body))
            out += body
        }
        return out
    }

    /// The intact record at `offset` of `log` and where the next one starts, or nil when
    /// there is none (no magic, cut short, a bad CRC, a body that does not decode).
    static func record(in log: [UInt8], at offset: Int) -> (change: VariableChange, next: Int)? {
        guard offset + recordHeaderSize <= log.count, log.loadLE(UInt32.self, at: offset) == recordMagic else { return nil }
        let n = Int(log.loadLE(UInt32.self, at: offset + 4))
        let start = offset + recordHeaderSize
        guard n <= log.count - start else { return nil }
        let body = Array(log[start..<(start + n)])
        guard Crc32.checksum(body) == log.loadLE(UInt32.self, at: offset + 8), let c = decode(body, at: 0, length: n) else { return nil }
        return (c, start + n)
    }

    /// Every intact record from `start` on, up to the first that is not, and that end.
    static func scan(_ log: [UInt8], from start: Int) -> (changes: [VariableChange], validEnd: Int) {
        var changes: [VariableChange] = []
        var i = start
        while let (c, next) = record(in: log, at: i) {
            changes.append(c)
            i = next
        }
        return (changes, i)
    }

    /// The offset of the first intact record strictly after `start`, if any: a damaged
    /// record followed by good ones is damage, not a torn append.
    static func firstValidRecord(in log: [UInt8], after start: Int) -> Int? {
        var i = start + 1
        while i + recordHeaderSize <= log.count {
            if record(in: log, at: i) != nil { return i }
            i += 1
        }
        return nil
    }

    /// The checkpoint file for `generation` holding `variables`.
    /// Built in one buffer of the exact size: with 10,000 variables of 1 KiB the file is
    /// 10 MB, and growing a body and then joining it to the header held two to three times
    /// that at once (the daemon's peak RSS is a design number: BENCHMARKS.md).
    static func checkpoint(generation: UInt64, _ variables: [ExportedVariable]) -> [UInt8] {
        let changes = variables.lazy.map { VariableChange(key: $0.key, value: $0.value) }
        let bodyLength = changes.reduce(0) { $0 + 4 + encodedSize($1) }
        var file = [UInt8]()
        file.reserveCapacity(checkpointHeaderSize + bodyLength)
        file += checkpointMagic
        file.appendLE(generation)
        file.appendLE(UInt64(bodyLength))
        file.appendLE(UInt32(0))  // the CRC, once the body is in
        for c in changes {
            let start = file.count
            file.appendLE(UInt32(0))
            encode(c, into: &file)
            file.storeLE(UInt32(file.count - start - 4), at: start)
        }
        precondition(file.count == checkpointHeaderSize + bodyLength, "checkpoint: encodedSize disagrees with encode")
        let crc = file.withUnsafeBytes { Crc32.checksum(UnsafeRawBufferPointer(rebasing: $0[checkpointHeaderSize...])) }
        file.storeLE(crc, at: 24)
        return file
    }
}
