// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "efivarfs-bridge",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "SvsmEfiVars", targets: ["SvsmEfiVars"]),
        .executable(name: "efivarfs-bridge", targets: ["efivarfs-bridge"]),
        .executable(name: "efivarfs-fuzz", targets: ["efivarfs-fuzz"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CFuse",
            pkgConfig: "fuse3",
            providers: [.apt(["libfuse3-dev"])]
        ),
        .systemLibrary(
            name: "CCrypto",
            pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]
        ),
        .target(
            name: "SvsmEfiVars",
            dependencies: [
                "CCrypto",
                .product(name: "OrderedCollections", package: "swift-collections"),
            ]
        ),
        // `efivarfs-bridge run` (issue #18): the private mount namespace, the seccomp
        // supervisor and everything else that needs raw syscalls or a single-threaded process.
        .target(name: "CRunSandbox"),
        .executableTarget(
            name: "efivarfs-bridge",
            dependencies: [
                "CFuse",
                "CRunSandbox",
                "SvsmEfiVars",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The fuzz targets of issue #10 (Fuzz/README.md): a library the unit tests replay the
        // seed corpora through, and the executable libFuzzer links against.
        .target(
            name: "FuzzTargets",
            dependencies: ["SvsmEfiVars"]
        ),
        .executableTarget(
            name: "efivarfs-fuzz",
            dependencies: ["FuzzTargets"]
        ),
        // What the tests need from the machine, checked before they start.
        .target(
            name: "TestSupport",
            path: "Tests/TestSupport"
        ),
        .testTarget(
            name: "SvsmEfiVarsTests",
            dependencies: ["SvsmEfiVars", "FuzzTargets", "TestSupport"]
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["SvsmEfiVars", "TestSupport"],
            exclude: ["Selftests", "Fixtures", "Stress"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
