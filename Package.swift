// swift-tools-version:6.1
import PackageDescription

// One target per layer of the real system. ARCHITECTURE.md draws the target graph, lists
// every target with its direct dependencies (ArchitectureDocTests fails when that list and
// this file disagree), and shows how the build rejects an import across the layers.
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
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        .systemLibrary(name: "CFuse", pkgConfig: "fuse3", providers: [.apt(["libfuse3-dev"])]),
        // prctl for the background server (variadic in C, so not callable from Swift).
        .target(name: "CProcess"),
        // `run`: the private mount namespace and the seccomp supervisor that makes the mount
        // look like efivarfs to CMD.
        .target(name: "CRunSandbox"),
        // The FUSE worker pool and its shutdown, in C: signals, libfuse's session, fusectl.
        .target(name: "CFuseServer", dependencies: ["CFuse"], linkerSettings: [.linkedLibrary("fuse3")]),
        // serve-svsm's shared window: acquire/release loads and stores, the spin hint.
        .target(name: "CShmAtomics"),
        // PKCS#7 and X.509 through OpenSSL's libcrypto: the C side of AuthVariableLib's checks.
        .target(name: "CCrypto", linkerSettings: [.linkedLibrary("crypto")]),

        // EFI_GUID, EFI_STATUS, attributes, UCS-2 names, the variable key, byte coding, locks.
        .target(name: "EfiTypes"),
        // The SVSM call ABI: registers, call and result codes, CAA, VMSA and secrets-page layouts.
        .target(name: "SvsmAbi", dependencies: ["EfiTypes"]),
        // What the hardware provides: guest-physical memory and the vCPU's register file,
        // VMGEXIT and the run of VMPL0.
        .target(name: "Hardware", dependencies: ["SvsmAbi"]),
        // The MM communicate wire format, the result types the driver and the service both
        // speak, and the MM service interface every SVSM variable store implements.
        .target(name: "MmWire", dependencies: ["EfiTypes"]),
        // The guest OS: its vCPUs and per-CPU CAAs, its page allocator, the SVSM call.
        .target(name: "Guest", dependencies: ["Hardware", "MmWire"]),
        // The modelled Linux driver: efivar operations over protocol 4.
        .target(name: "Driver", dependencies: ["Guest"]),
        // Linux efivarfs semantics over the driver.
        .target(name: "Efivarfs", dependencies: ["Driver"]),
        // The untrusted host: VMGEXIT handling and its faults.
        .target(name: "Host", dependencies: ["Hardware"]),
        // The SVSM at VMPL0: registry, request loop, core protocol, protocol 4.
        .target(name: "Svsm", dependencies: ["Hardware", "MmWire", "CCrypto"]),
        // The UEFI variable service behind protocol 4: store, authenticated variables,
        // variable files, persistence.
        .target(name: "VariableService", dependencies: ["MmWire", "CCrypto"]),
        // The stores of the uefi-vars design behind the same seam: QEMU's hw/uefi and
        // COCONUT's virtfw-varstore. They use VariableService's journals and crypto only.
        .target(name: "PeerVariableStores", dependencies: ["MmWire", "VariableService"]),
        // Traces and statistics of SVSM calls.
        .target(name: "Trace", dependencies: ["Guest"]),
        // A booted machine: the SVSM launched, firmware and OS boots replayed, the driver probed.
        .target(name: "Platform", dependencies: ["Driver", "Efivarfs", "Host", "Svsm", "VariableService", "PeerVariableStores", "Trace"]),
        // serve-svsm: the host side of the C module's shm transport (kernel/SHM-TRANSPORT.md),
        // serving the SVSM's calls over a shared window to any MM service.
        .target(name: "SvsmShmHost", dependencies: ["Svsm", "CShmAtomics"]),
        // Everything above as one library product.
        .target(name: "SvsmEfiVars", dependencies: ["Platform"]),
        // The libfuse3 adapter: type conversion and FUSE settings only.
        .target(name: "EfivarfsFuse", dependencies: ["Efivarfs", "CFuse", "CFuseServer"]),
        .executableTarget(
            name: "efivarfs-bridge",
            dependencies: [
                "Platform", "EfivarfsFuse", "SvsmShmHost", "CProcess", "CRunSandbox",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The fuzz targets: a library the unit tests replay the seed corpora through, and
        // the executable libFuzzer links against (Fuzz/run.sh).
        .target(name: "FuzzTargets", dependencies: ["SvsmEfiVars"]),
        .executableTarget(name: "efivarfs-fuzz", dependencies: ["FuzzTargets"]),
        // What the tests need from the machine, checked before they start; test-only checkers.
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "SvsmEfiVarsTests", dependencies: ["Platform", "SvsmShmHost", "FuzzTargets", "TestSupport"]),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["Platform", "SvsmEfiVars", "SvsmShmHost", "TestSupport"],
            exclude: ["Selftests", "Fixtures", "Stress"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
