import Foundation
import Svsm

/// `--log-requests FILE` (mount and serve-svsm): one line per UEFI MM request the SVSM
/// received, the hex of its private copy of the EFI_MM_COMMUNICATE header and the message
/// (24 + MessageLength bytes), written before the MM service sees it. Appended to FILE, one
/// write(2) per line, so a restarted server continues the same file and a killed one leaves
/// every line it took. Both drivers' requests meet here, at the SVSM's protocol-4 handler:
/// compare the files to compare the drivers byte for byte.
final class RequestLog: Sendable {
    let fd: Int32
    let path: String

    init(path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw cliFail("--log-requests: cannot open \(path): \(String(cString: strerror(errno)))") }
        self.fd = fd
        self.path = path
    }

    deinit { close(fd) }

    static let digits = Array("0123456789abcdef".utf8)

    func record(_ bytes: [UInt8]) {
        var line = [UInt8](zeroed: bytes.count * 2 + 1)
        for (i, b) in bytes.enumerated() {
            line[2 * i] = RequestLog.digits[Int(b >> 4)]
            line[2 * i + 1] = RequestLog.digits[Int(b & 15)]
        }
        line[line.count - 1] = UInt8(ascii: "\n")
        var done = 0
        while done < line.count {
            let n = line.withUnsafeBytes { write(fd, $0.baseAddress! + done, line.count - done) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { printError("--log-requests: cannot write \(path): \(String(cString: strerror(errno)))"); return }
            done += n
        }
    }

    var observer: Svsm.MmRequestObserver { { [self] _, bytes in record(bytes) } }
}
