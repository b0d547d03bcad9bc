import Foundation

/// Something a test needs from the machine: a program, a file, a downloaded package.
///
/// A test names what it needs before it starts; a missing prerequisite fails the test at
/// once with a message that names it and the Debian package (or the step) that provides it,
/// so a machine set up by hand neither waits for a timeout nor passes a test that did not
/// run. `bash scripts/setup.sh` (part of `bash scripts/test.sh`) installs all of them.
public struct Prerequisite: Sendable, CustomStringConvertible {
    public let description: String
    let provider: String
    let isPresent: @Sendable () -> Bool

    public init(_ description: String, providedBy provider: String, isPresent: @escaping @Sendable () -> Bool) {
        self.description = description
        self.provider = provider
        self.isPresent = isPresent
    }

    /// A program on the PATH.
    public static func program(_ name: String, package: String) -> Prerequisite {
        Prerequisite("the program \(name)", providedBy: "the Debian package \(package)") { onPath(name) }
    }

    /// A file at a fixed path.
    public static func file(_ path: String, package: String) -> Prerequisite {
        Prerequisite("the file \(path)", providedBy: "the Debian package \(package)") {
            FileManager.default.fileExists(atPath: path)
        }
    }

    public static let ovmf = Prerequisite("Debian's OVMF firmware (/usr/share/OVMF/OVMF_CODE_4M.fd, OVMF_VARS_4M.fd, OVMF_VARS_4M.ms.fd, OVMF_VARS.fd, OVMF_VARS.ms.fd)",
                                          providedBy: "the Debian package ovmf") {
        ["OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd", "OVMF_VARS_4M.ms.fd", "OVMF_VARS.fd", "OVMF_VARS.ms.fd"]
            .allSatisfy { FileManager.default.fileExists(atPath: "/usr/share/OVMF/" + $0) }
    }
    public static let qemu = program("qemu-system-x86_64", package: "qemu-system-x86")
    public static let gcc = program("gcc", package: "gcc")
    public static let openssl = program("openssl", package: "openssl")
    public static let efitools = program("sign-efi-sig-list", package: "efitools")
    public static let efivar = program("efivar", package: "efivar")
    public static let efibootmgr = program("efibootmgr", package: "efibootmgr")
    public static let attr = program("setfattr", package: "attr")
    public static let chattr = program("chattr", package: "e2fsprogs")
    public static let sfdisk = program("sfdisk", package: "fdisk")
    public static let losetup = program("losetup", package: "mount")
    public static let fusermount = program("fusermount3", package: "fuse3")
    // `efivarfs-bridge run` drives these unchanged tools (RunTests).
    public static let mokutil = program("mokutil", package: "mokutil")
    public static let bootctl = program("bootctl", package: "systemd-boot")
    public static let systemdBootEfi = file("/usr/lib/systemd/boot/efi/systemd-bootx64.efi", package: "systemd-boot-efi")
    public static let fwupdtool = program("fwupdtool", package: "fwupd")
    public static let setpriv = program("setpriv", package: "util-linux")
    public static let python3 = program("python3", package: "python3")
    /// Unprivileged user namespaces (an unprivileged `run` needs one to own its mount namespace).
    public static let userNamespaces = Prerequisite("unprivileged user namespaces (user.max_user_namespaces > 0)",
                                                    providedBy: "sysctl user.max_user_namespaces (kernel.unprivileged_userns_clone=1 on some kernels)") {
        let max = (try? String(contentsOfFile: "/proc/sys/user/max_user_namespaces", encoding: .utf8)).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0
        let clone = (try? String(contentsOfFile: "/proc/sys/kernel/unprivileged_userns_clone", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        return max > 0 && clone != "0"
    }
    /// `gcc -static` needs libc.a.
    public static let staticLibc = Prerequisite("the static C library libc.a (gcc -static)", providedBy: "the Debian package libc6-dev") {
        ["/usr/lib/x86_64-linux-gnu/libc.a", "/usr/lib/aarch64-linux-gnu/libc.a"].contains { FileManager.default.fileExists(atPath: $0) }
    }
    public static let virtFirmware = Prerequisite("the program virt-fw-vars", providedBy: "pip install virt-firmware") { onPath("virt-fw-vars") }
    public static let root = Prerequisite("root (FUSE mounts, loop devices)", providedBy: "running the tests as root") { getuid() == 0 }
    /// The packages the Linux VM of the QEMU tests is built from, downloaded by setup.sh.
    public static let vmPackages = Prerequisite("Debian's shim-signed, grub-efi-amd64-signed, linux-image-amd64 and busybox-static .deb files in \(vmCache)",
                                                providedBy: "scripts/setup.sh (apt-get install --download-only)") {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: vmCache)) ?? []
        return ["shim-signed_", "grub-efi-amd64-signed_", "linux-image-", "busybox-static_"].allSatisfy { prefix in
            names.contains { $0.hasPrefix(prefix) && $0.hasSuffix("_amd64.deb") }
        }
    }
    /// The svsm_efivars test kernel (Debian bookworm-backports 6.12: image, headers,
    /// efivarfs selftests) that scripts/kernel-test-deps.sh unpacks, and what building the
    /// module against it takes (kernel/build.sh).
    public static let kernelCache = Prerequisite("the svsm_efivars test kernel in \(kernelCacheDirectory) (current.env and the files it names) and its build tools (make, gcc-12, pahole)",
                                                 providedBy: "scripts/kernel-test-deps.sh, which scripts/setup.sh runs (Debian packages make gcc-12 dwarves xz-utils cpio)") {
        guard ["make", "gcc-12", "pahole", "xz", "cpio"].allSatisfy(onPath),
              let env = try? String(contentsOfFile: kernelCacheDirectory + "/current.env", encoding: .utf8) else { return false }
        let values = Dictionary(env.split(separator: "\n").compactMap { line -> (String, String)? in
            let kv = line.split(separator: "=", maxSplits: 1).map(String.init)
            return kv.count == 2 ? (kv[0], kv[1]) : nil
        }, uniquingKeysWith: { $1 })
        return ["VMLINUZ", "KDIR", "SELFTESTS"].allSatisfy { values[$0].map { FileManager.default.fileExists(atPath: $0) } ?? false }
    }
    public static var kernelCacheDirectory: String {
        ProcessInfo.processInfo.environment["EFIVARFS_KERNEL_CACHE"] ?? "/var/cache/efivarfs-bridge-kernel"
    }
    public static var vmCache: String { ProcessInfo.processInfo.environment["EFIVARFS_VM_DEBS"] ?? "/var/cache/efivarfs-bridge-vm" }

    static func onPath(_ name: String) -> Bool {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
        return path.split(separator: ":").contains { FileManager.default.isExecutableFile(atPath: "\($0)/\(name)") }
    }
}

/// The error a test fails with when the machine lacks what it needs.
public struct MissingPrerequisites: Error, CustomStringConvertible {
    public let missing: [Prerequisite]
    public var description: String {
        "this test needs " + missing.map { "\($0) (from \($0.provider))" }.joined(separator: "; ")
            + ". `bash scripts/setup.sh` installs everything the suite needs."
    }
}

/// Fails the calling test at once, naming what is missing.
public func requirePrerequisites(_ needed: Prerequisite...) throws {
    let missing = needed.filter { !$0.isPresent() }
    if !missing.isEmpty { throw MissingPrerequisites(missing: missing) }
}
