import EfiTypes
import Foundation

/// A variable as the file formats carry it: always non-volatile.
public struct ExportedVariable: Equatable, Sendable {
    public var key: VariableKey
    public var value: StoredVariable
    public init(_ key: VariableKey, _ value: StoredVariable) { self.key = key; self.value = value }
}

/// Why a variable file was refused: always names the file and the offset or field.
public struct VariableFileError: Error, CustomStringConvertible, Equatable {
    public let path: String
    public let location: String
    public let reason: String
    public var description: String { "\(path): \(location): \(reason)" }
}

public enum VariableFileFormat: String, Sendable, CaseIterable {
    case fd, json

    /// `--format auto`: an edk2 firmware volume has "_FVH" at 0x28; JSON starts with '{'.
    public static func detect(_ bytes: [UInt8]) -> VariableFileFormat? {
        if bytes.count > 0x2c, Array(bytes[0x28..<0x2c]) == Array("_FVH".utf8) { return .fd }
        if let first = bytes.first(where: { ![0x20, 0x09, 0x0a, 0x0d].contains($0) }), first == UInt8(ascii: "{") { return .json }
        return nil
    }
}
