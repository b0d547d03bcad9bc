import Foundation
import FuzzTargets
import Testing

/// The committed seed corpora of the fuzz targets, replayed through the same entry points
/// libFuzzer drives: every seed still runs clean (a broken property stops the process), and
/// the corpus on disk is still the one the seed builders make.
@Suite("Fuzz corpora")
struct FuzzCorpusTests {
    static let corpusRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../Fuzz/corpus").standardized.path

    @Test("every committed seed runs clean", arguments: FuzzTarget.allCases)
    func seedsRunClean(_ target: FuzzTarget) throws {
        let dir = Self.corpusRoot + "/" + target.rawValue
        let names = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        #expect(!names.isEmpty)
        for name in names {
            let data = try #require(FileManager.default.contents(atPath: dir + "/" + name))
            target.run(Array(data))
        }
    }

    @Test("the built-in seeds are committed", arguments: FuzzTarget.allCases)
    func seedsCommitted(_ target: FuzzTarget) {
        let dir = Self.corpusRoot + "/" + target.rawValue
        for seed in target.seeds() {
            let onDisk = FileManager.default.contents(atPath: dir + "/" + seed.name).map(Array.init)
            #expect(onDisk == seed.bytes, "\(target.rawValue)/\(seed.name) differs from its builder; run efivarfs-fuzz seeds")
        }
    }
}
