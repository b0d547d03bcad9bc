import Driver
import EfiTypes
import Guest
import MmWire

extension Efivarfs {
    /// `efivarfs_file_read`: every read fetches the variable afresh; NOT_FOUND is EOF. The
    /// non-root rate limit counts against the uid that opened `handle`.
    public func read(_ ino: UInt64, handle: UInt64?, offset: Int64, count: Int, caller: Caller) throws(Errno) -> [UInt8] {
        let n = try node(ino)
        let uid = handle.flatMap(opener) ?? caller.uid
        if uid != 0 { rateLimiter.wait(uid: uid) }
        let r: GetVariableResult
        do { r = try operation("read") { () throws(SvsmCallError) in try driver.onCpu { (cpu) throws(SvsmCallError) in try cpu.readVariable(n.key) } } } catch {
            throw .ioError  // the SVSM call failed: EFI_DEVICE_ERROR in Linux
        }
        switch r {
        case .found(let attrs, let data):
            // The file's bytes are the 4 attribute bytes and the data; only the asked-for
            // window of them is built (usually all of it: one read from offset 0).
            let total = 4 + data.count
            guard offset >= 0, offset < Int64(total) else { return [] }
            let start = Int(offset), end = min(total, start + count)
            var out = [UInt8]()
            out.reserveCapacity(end - start)
            if start < 4 { withUnsafeBytes(of: attrs.rawValue.littleEndian) { out.append(contentsOf: $0[start..<min(end, 4)]) } }
            if end > 4 { out.append(contentsOf: data[(max(start, 4) - 4)..<(end - 4)]) }
            return out
        case .error(.notFound):
            return []
        case .error(let s):
            throw efiStatusToErrno(s) ?? .ioError
        case .bufferTooSmall:
            throw .ioError
        }
    }

    /// `efivarfs_file_write`: one write(2) is one SetVariable.
    public func write(_ ino: UInt64, _ buffer: [UInt8]) throws(Errno) -> Int {
        if options.readOnly { throw .readOnlyFileSystem }
        guard buffer.count >= 4 else { throw .invalidArgument }
        let raw = buffer.loadLE(UInt32.self, at: 0)
        guard raw & ~VariableAttributes.linuxMask.rawValue == 0 else { throw .invalidArgument }
        let n = try node(ino)
        let data = Array(buffer[4...])
        guard EfivarfsValidation.validate(n.key, data: data) else { throw .invalidArgument }
        let newSize: Int? = try operation("write") { () throws(Errno) -> Int? in try underEfivarsLock { () throws(Errno) -> Int? in
            do {
                return try driver.onCpu { (cpu) throws(SvsmCallError) -> Result<Int?, Errno> in
                    if !data.isEmpty {
                        let s = try checkVariableSize(cpu, attributes: raw, size: data.count + n.key.name.count * 2)
                        if s != .success { return .failure(efiStatusToErrno(s) ?? .invalidArgument) }
                    }
                    let status = try cpu.setVariable(n.key, attributes: raw, data: data)
                    if status == .notFound { return .failure(.ioError) }
                    if let e = efiStatusToErrno(status) { return .failure(e) }
                    switch try cpu.getVariable(n.key, capacity: 0) {
                    case .bufferTooSmall(_, let size): return .success(size)
                    case .found(_, let d): return .success(d.count)
                    case .error(.notFound): return .success(nil)
                    case .error: return .success(0)
                    }
                }.get()
            } catch let e as Errno { throw e } catch { throw .ioError }
        } }
        table.withLock { _ in
            if let size = newSize {
                n.size = Int64(size + 4)
            } else {
                n.size = 0  // deleted: gone at last close
            }
            let now = EfivarfsNode.now()
            n.mtime = now
            n.ctime = now
        }
        return buffer.count
    }

    /// `check_var_size`: only non-volatile writes are checked, through the driver's own
    /// `query_variable_store`.
    func checkVariableSize(_ cpu: SvsmVariableDriver.Cpu, attributes: UInt32, size: Int) throws(SvsmCallError) -> EfiStatus {
        guard attributes & VariableAttributes.nonVolatile.rawValue != 0 else { return .success }
        return try cpu.queryVariableStore(attributes: attributes, size: size, reserve: options.reservedSpace)
    }

    /// `efivarfs_unlink`: delete with attributes 0; SUCCESS or NOT_FOUND count as success,
    /// any other failure is EINVAL.
    public func unlink(_ name: [UInt8]) throws(Errno) {
        if options.readOnly { throw .readOnlyFileSystem }
        guard EfivarfsName.isValid(name) else { throw .noSuchFile }
        let k = EfivarfsName.lookupKey(validName: name)
        let n = try table.withLock { (t: inout Table) throws(Errno) -> EfivarfsNode in
            guard let n = t.byName[k] else { throw .noSuchFile }
            if n.immutable { throw .notPermitted }
            return n
        }
        let status = operation("unlink") { underEfivarsLock { () -> EfiStatus in
            (try? driver.onCpu { (cpu) throws(SvsmCallError) in try cpu.setVariable(n.key, attributes: 0, data: []) }) ?? .deviceError
        } }
        guard status == .success || status == .notFound else { throw .invalidArgument }
        table.withLock { t in
            if t.byName[k] === n { t.byName[k] = nil }
            n.removed = true
            n.ctime = EfivarfsNode.now()
            if n.openCount == 0 && n.lookupCount == 0 { t.byIno[n.ino] = nil }
        }
    }
}
