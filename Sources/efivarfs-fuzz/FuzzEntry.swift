// The fuzzing entry points. Built two ways:
//  - normally: a replay tool (`efivarfs-fuzz run TARGET FILE|DIR...`, `efivarfs-fuzz seeds
//    TARGET DIR`), so the targets always compile and any crash file can be replayed;
//  - with -DEFIVARFS_FUZZING and -sanitize=fuzzer (Fuzz/run.sh): libFuzzer's main drives
//    LLVMFuzzerTestOneInput, the target named by EFIVARFS_FUZZ_TARGET.
import Foundation
import FuzzTargets

#if EFIVARFS_FUZZING
nonisolated(unsafe) var selectedTarget: FuzzTarget?

@_cdecl("LLVMFuzzerInitialize")
public func fuzzerInitialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> CInt {
    let name = ProcessInfo.processInfo.environment["EFIVARFS_FUZZ_TARGET"] ?? ""
    guard let t = FuzzTarget(rawValue: name) else {
        FileHandle.standardError.write(Data("set EFIVARFS_FUZZ_TARGET to one of: \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", "))\n".utf8))
        exit(64)
    }
    selectedTarget = t
    // Build the target's fixed state before the first timed input.
    do { try t.run([]) } catch { fatalError("\(error)") }
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size))
    // A broken property must crash the process: that is how libFuzzer records the input.
    do { try selectedTarget!.run(bytes) } catch { fatalError("\(error)") }
    return 0
}

// SwiftPM links an executable with `main` pointing at `<module>_main`; hand control to
// libFuzzer's driver from there.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

@_cdecl("efivarfs_fuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var c = argc
    var v = argv
    return LLVMFuzzerRunDriver(&c, &v) { fuzzerTestOneInput($0, $1) }
}
#else
@main
struct FuzzReplay {
    static func main() {
        let args = Array(CommandLine.arguments.dropFirst())
        guard args.count >= 2, let target = FuzzTarget(rawValue: args[1]) else { usage() }
        switch args[0] {
        case "run":
            var count = 0
            for path in args.dropFirst(2) {
                for file in files(path) {
                    guard let data = FileManager.default.contents(atPath: file) else { fail("cannot read \(file)") }
                    do { try target.run(Array(data)) } catch { fail("\(file): \(error)") }
                    count += 1
                }
            }
            print("\(target.rawValue): \(count) inputs ran clean")
        case "seeds":
            guard args.count == 3 else { usage() }
            let dir = args[2]
            try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let seeds = target.seeds()
            for s in seeds {
                guard FileManager.default.createFile(atPath: dir + "/" + s.name, contents: Data(s.bytes)) else { fail("cannot write \(dir)/\(s.name)") }
            }
            print("\(target.rawValue): \(seeds.count) seeds in \(dir)")
        default:
            usage()
        }
    }

    static func files(_ path: String) -> [String] {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { fail("no such file: \(path)") }
        guard isDir.boolValue else { return [path] }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        return names.sorted().map { path + "/" + $0 }
    }

    static func usage() -> Never {
        fail("usage: efivarfs-fuzz run TARGET FILE|DIR... | efivarfs-fuzz seeds TARGET DIR\ntargets: \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", "))", code: 64)
    }

    static func fail(_ message: String, code: Int32 = 1) -> Never {
        FileHandle.standardError.write(Data((message + "\n").utf8))
        exit(code)
    }
}
#endif
