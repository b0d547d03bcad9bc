import Foundation
import Testing
import TestSupport

/// `efivarfs-bridge run -- CMD` with real, unchanged tools from Debian packages.
/// Every test checks what the tool printed or wrote inside `run`, and that the same tool
/// outside still sees the host as it is; `HostView` checks that nothing was left behind.
@Suite("efivarfs-bridge run: EFI tools unchanged", .serialized)
struct RunTests {
    static let selftests = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Selftests").path
    static let loaderGuid = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"
    static let shimGuid = "605dab50-e046-4300-abb6-3dd810dd8b23"
    static let efivars = "/sys/firmware/efi/efivars"
    /// The test runner blocks most signals and children inherit the mask through exec, so a
    /// CMD started from here could never receive SIGTERM. Commands start from an empty mask,
    /// as from a login shell.
    /// It also marks every process it starts with `owner` in the environment (run passes its
    /// environment on to the sandbox, the janitor and the mount server), so that the
    /// leftover check counts this test process's runs only, not another suite's on the
    /// same machine.
    static let unblocked = "env \(owner) python3 -c 'import os, signal, sys; signal.pthread_sigmask(signal.SIG_SETMASK, []); os.execvp(sys.argv[1], sys.argv[1:])'"
    static let owner = "EFIVARFS_TEST_OWNER=\(getpid())"
    /// Every run is bounded: a hang fails the test instead of the suite (SIGKILL, which the
    /// janitor cleans up after).
    static var bridge: String { "timeout -s KILL 120 \(unblocked) '\(Bridge.binary)'" }

    /// What a process outside `run` sees, and what `run` must leave as it found it.
    struct HostView: Equatable, CustomStringConvertible {
        let firmwareType: String      // statfs f_type of /sys/firmware (sysfs)
        let efiExists: Bool           // /sys/firmware/efi on this (non-EFI) host
        let efivarfsLines: String     // efivarfs lines in this process's /proc/self/mounts
        let runProcesses: String      // run's sandboxes, janitors and mount servers still alive
        let runtimeDirs: String       // /tmp/efivarfs-bridge-run.* and -root.*

        static func now() -> HostView {
            HostView(
                firmwareType: Shell.run("stat -f -c %t /sys/firmware").out,
                efiExists: FileManager.default.fileExists(atPath: "/sys/firmware/efi"),
                // Only a leaked namespace could add these: type efivarfs, or anything under
                // /sys/firmware (other suites' fuse.efivarfs mounts in /tmp come and go).
                efivarfsLines: Shell.run("awk '$3 == \"efivarfs\" || $2 ~ /^\\/sys\\/firmware/' /proc/self/mounts").out,
                runProcesses: runProcesses(),
                runtimeDirs: Shell.run("ls -d /tmp/efivarfs-bridge-run.* /tmp/efivarfs-bridge-root.* 2>/dev/null").out)
        }

        /// Live (not zombie) processes of run: sandboxes, janitors, mount servers it started,
        /// those of this test process only (`owner` in their environment).
        static func runProcesses() -> String {
            var found: [String] = []
            for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] where Int32(entry) != nil {
                guard let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                      let close = stat.lastIndex(of: ")"), !stat[close...].hasPrefix(") Z"),
                      let raw = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { continue }
                let cmdline = String(decoding: raw.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
                let environment = FileManager.default.contents(atPath: "/proc/\(entry)/environ")?.split(separator: 0).map { String(decoding: $0, as: UTF8.self) } ?? []
                if cmdline.contains("--efivarfs-bridge-run-sandbox") || cmdline.contains("--ready-fd 3 /sys/firmware/efi/efivars"),
                   environment.contains(RunTests.owner) {
                    found.append("\(entry) \(cmdline)")
                }
            }
            return found.sorted().joined(separator: "\n")
        }
        var description: String {
            "sysfs \(firmwareType.trimmingCharacters(in: .whitespacesAndNewlines)), efi \(efiExists), mounts [\(efivarfsLines)], processes [\(runProcesses)], dirs [\(runtimeDirs)]"
        }
    }

    /// Runs `script` with bash under `efivarfs-bridge run OPTIONS --`, without EFIVARFS_PATH
    /// (the tools must find the variables where they always look), and checks afterwards
    /// that the host is as before.
    /// `outer` goes before the bridge (a wrapper such as setpriv); `binary` replaces the
    /// built one.
    func run(_ options: String, _ script: String, outer: String = "", binary: String? = nil,
             sourceLocation: SourceLocation = #_sourceLocation) throws -> Shell.Result {
        try requirePrerequisites(.python3)  // `unblocked`
        let dir = Bridge.makeTempDir()
        defer { Shell.run("rm -rf '\(dir)'") }
        let path = "\(dir)/cmd.sh"
        try script.write(toFile: path, atomically: true, encoding: .utf8)
        Shell.run("chmod 755 '\(dir)' && chmod 644 '\(path)'")  // readable by an unprivileged CMD too
        let bridge = binary.map { "timeout -s KILL 120 \(Self.unblocked) '\($0)'" } ?? Self.bridge
        let before = HostView.now()
        let r = Shell.run("env -u EFIVARFS_PATH \(outer) \(bridge) run \(options) -- bash '\(path)'")
        let after = HostView.now()
        #expect(after == before, "run changed the host: before \(before), after \(after)", sourceLocation: sourceLocation)
        return r
    }

    /// The same tool outside run, on the host as it is.
    func outside(_ command: String) -> Shell.Result { Shell.run("env -u EFIVARFS_PATH \(command)") }

    static func compile(_ source: String, _ flags: String = "") throws -> String {
        let out = Bridge.makeTempDir() + "/" + (source as NSString).deletingPathExtension
        let r = Shell.run("gcc -O2 -Wall \(flags) -o '\(out)' '\(selftests)/\(source)'")
        try #require(r.status == 0, "gcc \(source): \(r.err)")
        return out
    }

    // MARK: - tools

    @Test("efibootmgr finds the variables without EFIVARFS_PATH; outside, the host still has none")
    func efibootmgr() throws {
        try requirePrerequisites(.root, .fusermount, .efibootmgr)
        let r = try run("--ephemeral", "efibootmgr -v; echo \"rc=$?\"")
        // The freshly booted OVMF model: three boot options, BootOrder 0001,0002,0000.
        #expect(r.out.contains("BootOrder: 0001,0002,0000"), "\(r.out)\n\(r.err)")
        #expect(r.out.contains("Boot0000* UiApp"))
        #expect(r.out.contains("rc=0"))
        #expect(r.status == 0)
        let host = outside("efibootmgr")
        #expect(host.status != 0 && host.err.contains("EFI variables are not supported on this system"))
    }

    @Test("a static program making raw statfs/fstatfs syscalls sees EFIVARFS_MAGIC on the mount only, and efivarfs in the mount tables")
    func staticProgram() throws {
        try requirePrerequisites(.root, .fusermount, .gcc, .staticLibc)
        let probe = try Self.compile("efivarfs-probe.c", "-static")
        defer { Shell.run("rm -rf \"$(dirname '\(probe)')\"") }
        #expect(Shell.run("ldd '\(probe)' 2>&1").out.contains("not a dynamic executable"))
        let file = "\(Self.efivars)/BootOrder-\(globalGuid)"
        let hostTmp = Shell.run("stat -f -c %t /tmp").out.trimmingCharacters(in: .whitespacesAndNewlines)
        let r = try run("--ephemeral", """
            '\(probe)' \(Self.efivars) \(file) /sys/firmware /tmp
            echo "--- dynamic tools"
            stat -f -c 'stat %t %T' \(Self.efivars)
            grep efivars /proc/mounts /etc/mtab
            """)
        let out = r.out
        // go-efilib's probe (raw SYS_STATFS, f_type compared with EFIVARFS_MAGIC) accepts it.
        #expect(out.contains("statfs \(Self.efivars): 0xde5e81e4"), "\(out)\n\(r.err)")
        #expect(out.contains("fstatfs \(Self.efivars): 0xde5e81e4"))
        #expect(out.contains("statfs \(file): 0xde5e81e4"))
        #expect(out.contains("fstatfs \(file): 0xde5e81e4"))
        #expect(out.contains("go-efilib: available"))
        // A buffer the caller cannot write gets EFAULT, as from the kernel.
        #expect(out.contains("statfs-ro \(Self.efivars): Bad address"))
        // Nothing else changes: /sys/firmware is run's tmpfs (0x01021994), /tmp what it is outside.
        #expect(out.contains("statfs /sys/firmware: 0x1021994"))
        #expect(out.contains("statfs /tmp: 0x\(hostTmp)"))
        // The mount tables say efivarfs, as the kernel's would.
        #expect(out.contains(" /sys/firmware/efi/efivars rw,nosuid,nodev,noexec,relatime - efivarfs efivarfs rw\n"))
        #expect(out.contains("mounts: efivarfs /sys/firmware/efi/efivars efivarfs rw,nosuid,nodev,noexec,relatime 0 0"))
        #expect(out.contains("stat de5e81e4 efivarfs"))
        #expect(out.contains("/proc/mounts:efivarfs /sys/firmware/efi/efivars efivarfs rw,nosuid,nodev,noexec,relatime 0 0"))
        #expect(out.contains("/etc/mtab:efivarfs /sys/firmware/efi/efivars efivarfs rw,nosuid,nodev,noexec,relatime 0 0"))
        #expect(!out.contains("fuse"))
        // Outside: no efivarfs, and the host's real answers.
        let host = Shell.run("'\(probe)' \(Self.efivars) /sys/firmware").out
        #expect(host.contains("statfs \(Self.efivars): No such file or directory"))
        #expect(host.contains("statfs /sys/firmware: 0x62656572"))
        #expect(Shell.run("'\(probe)' /sys/firmware").out.contains("statfs-ro /sys/firmware: Bad address"))
        #expect(host.contains("go-efilib: unavailable") && !host.contains("mountinfo:"))
    }

    @Test("mokutil --sb-state and --list-enrolled after --enroll-generate (MokListRT written as shim would)")
    func mokutil() throws {
        try requirePrerequisites(.root, .fusermount, .mokutil, .openssl, .efitools)
        let keys = Bridge.makeTempDir()
        defer { Shell.run("rm -rf '\(keys)'") }
        // shim mirrors MokList into MokListRT at boot (BS|RT, volatile). The model has left boot
        // services, where edk2 refuses new volatile variables (EINVAL), so the test writes it
        // non-volatile (NV|BS|RT): same name, GUID and contents, one attribute more.
        let r = try run("--ephemeral --enroll-generate '\(keys)'", """
            mokutil --sb-state; echo "sb-rc=$?"
            mokutil --list-enrolled; echo "list-empty-rc=$?"
            cert-to-efi-sig-list -g \(KeyLab.owner) '\(keys)/db.crt' '\(keys)/mok.esl' >/dev/null
            (printf '\\x07\\x00\\x00\\x00'; cat '\(keys)/mok.esl') > '\(keys)/mok.var'
            cat '\(keys)/mok.var' > \(Self.efivars)/MokListRT-\(Self.shimGuid)
            mokutil --list-enrolled; echo "list-rc=$?"
            mokutil --pk | grep Subject:
            """)
        #expect(r.out.contains("SecureBoot enabled\nsb-rc=0"), "\(r.out)\n\(r.err)")
        #expect(r.out.contains("list-empty-rc=0"))
        let listed = r.out.components(separatedBy: "list-empty-rc=0").last ?? ""
        #expect(listed.contains("[key 1]") && listed.contains("Subject: CN=efivarfs-bridge lab db") && listed.contains("list-rc=0"))
        #expect(r.out.contains("Subject: CN=efivarfs-bridge lab PK"))
        // Before MokListRT existed there was nothing to list.
        let beforeMok = r.out.components(separatedBy: "list-empty-rc=0").first ?? ""
        #expect(!beforeMok.contains("[key 1]"))
        let host = outside("mokutil --sb-state")
        #expect(host.status != 0 && (host.out + host.err).contains("EFI variables are not supported on this system"))
    }

    /// The loader variables systemd-boot 252 sets at boot (src/boot/efi/boot.c
    /// export_variables: LoaderInfo from the "#### LoaderInfo: systemd-boot VERSION ####" magic
    /// of the installed binary, LoaderFirmwareInfo "<vendor> <major>.<minor>",
    /// LoaderFirmwareType "UEFI <revision>", LoaderFeatures, LoaderImageIdentifier), written
    /// through the mount. systemd-boot sets them volatile (BS|RT) before ExitBootServices;
    /// after it edk2 refuses new volatile variables, so here they are NV|BS|RT.
    static let loaderScript = """
        L=4a67b082-0a4c-41cf-b6c7-440b29bb8c4f; E=/sys/firmware/efi/efivars; T=$(mktemp -d)
        put() { # NAME, then the data on stdin: one write(2) of attributes + data, as efivarfs wants
          { printf '\\x07\\x00\\x00\\x00'; cat; } > "$T/v"; cat "$T/v" > "$E/$1-$L"; }
        u16() { printf '%s' "$1" | iconv -f UTF-8 -t UTF-16LE; printf '\\0\\0'; }
        info=$(grep -a -o '#### LoaderInfo: systemd-boot [^#]* ####' /usr/lib/systemd/boot/efi/systemd-bootx64.efi | head -1 | sed 's/^#### LoaderInfo: //; s/ ####$//')
        u16 "$info" | put LoaderInfo
        u16 "EDK II 1.00" | put LoaderFirmwareInfo
        u16 "UEFI 2.70" | put LoaderFirmwareType
        u16 '\\EFI\\systemd\\systemd-bootx64.efi' | put LoaderImageIdentifier
        printf '\\xff\\x07\\x00\\x00\\x00\\x00\\x00\\x00' | put LoaderFeatures   # bits 0-10: timeout ... devicetree
        rm -rf "$T"
        echo "loader=$info"
        """

    @Test("bootctl status, set-default and set-oneshot with systemd-boot's loader variables; outside, bootctl still says what it said")
    func bootctl() throws {
        try requirePrerequisites(.root, .fusermount, .bootctl, .systemdBootEfi)
        let hostBefore = outside("bootctl status 2>/dev/null").out
        let r = try run("--ephemeral", Self.loaderScript + """

            bootctl status 2>/dev/null; echo "status-rc=$?"
            bootctl set-default foo.conf; echo "default-rc=$?"
            bootctl set-oneshot bar.conf; echo "oneshot-rc=$?"
            od -An -tx1 -v /sys/firmware/efi/efivars/LoaderEntryDefault-$L | tr -s ' \\n' ' '; echo
            od -An -tx1 -v /sys/firmware/efi/efivars/LoaderEntryOneShot-$L | tr -s ' \\n' ' '; echo
            """)
        let out = r.out
        let version = Shell.run("grep -a -o '#### LoaderInfo: systemd-boot [^#]* ####' /usr/lib/systemd/boot/efi/systemd-bootx64.efi | head -1").out
        #expect(version.contains("systemd-boot 252"), "\(version)")
        #expect(out.contains("Firmware: UEFI 2.70 (EDK II 1.00)"), "\(out)\n\(r.err)")
        #expect(out.contains("Firmware Arch: x64"))
        #expect(out.contains("Secure Boot: disabled (setup)"))
        #expect(out.contains("Product: systemd-boot 252"))
        #expect(out.contains("✓ Default entry control") && out.contains("✓ One-shot entry control"))
        #expect(!out.contains("Not booted with EFI"))
        #expect(out.contains("status-rc=0") && out.contains("default-rc=0") && out.contains("oneshot-rc=0"))
        // What bootctl wrote (src/basic/efivars.c efi_set_variable): NV|BS|RT, UTF-16LE, NUL.
        #expect(out.contains(" 07 00 00 00 66 00 6f 00 6f 00 2e 00 63 00 6f 00 6e 00 66 00 00 00 "))  // foo.conf
        #expect(out.contains(" 07 00 00 00 62 00 61 00 72 00 2e 00 63 00 6f 00 6e 00 66 00 00 00 "))  // bar.conf
        #expect(outside("bootctl status 2>/dev/null").out == hostBefore)
        #expect(hostBefore.contains("Not booted with EFI"))
    }

    @Test("--keep-container: the container marker stays, and bootctl refuses EFI as it does in any container; outside a container run hides nothing and says nothing")
    func keepContainer() throws {
        try requirePrerequisites(.root, .fusermount, .bootctl)
        guard FileManager.default.fileExists(atPath: "/.dockerenv") else {
            // Not a Docker container (a VM, bare metal, a chroot): there is no marker to hide
            // or keep, so run neither pivots to a new root nor mentions a container, with or
            // without --keep-container.
            for options in ["--ephemeral --keep-container", "--ephemeral"] {
                let r = try run(options, "test -e /.dockerenv || echo no-marker; ls /sys/firmware/efi")
                #expect(r.out.contains("no-marker") && r.out.contains("fw_platform_size"), "\(options): \(r.out)")
                #expect(!r.err.contains("container detected"), "\(options): \(r.err)")
            }
            return
        }
        let r = try run("--ephemeral --keep-container", "test -e /.dockerenv && echo marker; bootctl status 2>/dev/null | grep -E 'booted|Firmware Arch'")
        #expect(r.out.contains("marker") && r.out.contains("Not booted with EFI"), "\(r.out)")
        #expect(!r.err.contains("container detected"))
        let hidden = try run("--ephemeral", "test -e /.dockerenv || echo no-marker; systemd-detect-virt -c")
        #expect(hidden.out.contains("no-marker\nnone"), "\(hidden.out)")
        #expect(hidden.err.contains("container detected (/.dockerenv)"))
    }

    @Test("the container marker is hidden only in a container: a run inside run (no /.dockerenv there) does not pivot")
    func onlyInAContainer() throws {
        try requirePrerequisites(.root, .fusermount)
        // In a Docker container the outer run hides the marker (and says so); outside one
        // there is none to hide. Either way the inner run sees no marker and must not pivot.
        let inContainer = FileManager.default.fileExists(atPath: "/.dockerenv")
        let r = try run("--ephemeral", "'\(Bridge.binary)' run --ephemeral -- sh -c 'test -e /.dockerenv || echo inner-no-marker; ls /sys/firmware/efi' 2>&1")
        #expect(r.out.contains("inner-no-marker") && r.out.contains("fw_platform_size"), "\(r.out)")
        // The inner run saw no container, so it said nothing about one. (It cannot stack a
        // second seccomp listener — EBUSY — and falls back to EFIVARFS_PATH, saying so.)
        #expect(!r.out.contains("container detected"))
        #expect(r.out.contains("seccomp user notification is not available (Device or resource busy)"))
        #expect(r.err.contains("container detected") == inContainer, "\(r.err)")
    }

    @Test("efi-readvar lists the enrolled keys and efi-updatevar appends a KEK-signed cert to db")
    func efitools() throws {
        try requirePrerequisites(.root, .fusermount, .efitools, .openssl, .chattr)
        let keys = Bridge.makeTempDir()
        defer { Shell.run("rm -rf '\(keys)'") }
        let r = try run("--ephemeral --enroll-generate '\(keys)'", """
            efi-readvar; echo "read-rc=$?"
            cd '\(keys)'
            openssl req -new -x509 -newkey rsa:2048 -subj '/CN=Appended by efi-updatevar/' -keyout extra.key -out extra.crt -days 3650 -nodes -sha256 2>/dev/null
            cert-to-efi-sig-list -g \(KeyLab.owner) extra.crt extra.esl
            sign-efi-sig-list -a -k KEK.key -c KEK.crt db extra.esl extra.auth >/dev/null
            # efivarfs makes every variable but a few well-known ones immutable
            # (fs/efivarfs/super.c efivarfs_callback, efivar_variable_is_removable), and
            # efi-updatevar opens O_RDWR|O_TRUNC without clearing the flag: EPERM on a real
            # host too. An administrator clears it first, as here.
            chattr -i \(Self.efivars)/db-\(imageSecurityGuid)
            efi-updatevar -a -f extra.auth db; echo "update-rc=$?"
            efi-readvar -v db; echo "db-rc=$?"
            """)
        let out = r.out
        #expect(out.contains("Variable PK, length") && out.contains("CN=efivarfs-bridge lab PK"), "\(out)\n\(r.err)")
        #expect(out.contains("CN=efivarfs-bridge lab KEK") && out.contains("read-rc=0"))
        #expect(out.contains("update-rc=0"))
        let db = out.components(separatedBy: "update-rc=0").last ?? ""
        #expect(db.contains("db: List 0, type X509") && db.contains("db: List 1, type X509"), "\(db)")
        #expect(db.contains("CN=efivarfs-bridge lab db") && db.contains("CN=Appended by efi-updatevar"))
        let host = outside("efi-readvar")
        #expect(host.status != 0 && (host.out + host.err).contains("No efivarfs filesystem is mounted"))
    }

    @Test("fwupdtool security reads the Secure Boot state offline; outside it does not see it enabled")
    func fwupdtool() throws {
        try requirePrerequisites(.root, .fusermount, .fwupdtool)
        let keys = Bridge.makeTempDir(), state = Bridge.makeTempDir()
        defer { Shell.run("rm -rf '\(keys)' '\(state)'") }
        // fwupd keeps a history database; a private one keeps the host's out of it.
        let env = "FWUPD_LOCALSTATEDIR='\(state)' NO_COLOR=1"
        let strip = "sed 's/\\x1b\\[[0-9;]*m//g'"
        let r = try run("--ephemeral --enroll-generate '\(keys)'", "\(env) fwupdtool security --force 2>&1 | \(strip) | grep -E 'UEFI (secure boot|platform key|bootservice)'")
        #expect(r.out.contains("UEFI secure boot:") && r.out.range(of: "UEFI secure boot: +Enabled", options: .regularExpression) != nil, "\(r.out)\n\(r.err)")
        #expect(r.out.range(of: "UEFI platform key: +Valid", options: .regularExpression) != nil)
        let host = outside("\(env) fwupdtool security --force 2>&1 | \(strip) | grep -E 'UEFI secure boot'").out
        #expect(!host.contains("Enabled"), "\(host)")
    }

    // MARK: - run itself

    @Test("exit status is CMD's; CMD not found is 127 with a message; --shell runs a shell in that view")
    func exitStatus() throws {
        try requirePrerequisites(.root, .fusermount, .python3)
        let r = try run("--ephemeral", "exit 42")
        #expect(r.status == 42)
        let bin = Self.bridge
        let missing = Shell.run("\(bin) run --ephemeral -- no-such-command-xyz")
        #expect(missing.status == 127 && missing.err.contains("no-such-command-xyz: command not found"))
        let plain = Bridge.makeTempDir() + "/not-a-program"
        defer { Shell.run("rm -rf \"$(dirname '\(plain)')\"") }
        _ = FileManager.default.createFile(atPath: plain, contents: Data("x".utf8), attributes: [.posixPermissions: 0o644])
        let notExecutable = Shell.run("\(bin) run --ephemeral -- '\(plain)'")
        #expect(notExecutable.status == 126 && notExecutable.err.contains("Permission denied"))
        let killed = Shell.run("\(bin) run --ephemeral -- sh -c 'kill -TERM $$'; echo \"rc=$?\"")
        #expect(killed.out.contains("rc=143"))  // ended by SIGTERM, as CMD was
        let usage = Shell.run("\(bin) run --ephemeral")
        #expect(usage.status == 64 && usage.err.contains("name a command after --"))
        let badOption = Shell.run("\(bin) run --ephemeral --vcpus 0 -- true")
        #expect(badOption.status == 64 && badOption.err.contains("--vcpus must be between 1 and 512"))
        let shell = Shell.run("printf 'stat -f -c %%t /sys/firmware/efi/efivars\\nexit 5\\n' | SHELL=/bin/sh \(bin) run --ephemeral --shell")
        #expect(shell.status == 5 && shell.out == "de5e81e4\n", "\(shell.out)\n\(shell.err)")
    }

    @Test("signals sent to run reach CMD")
    func signals() throws {
        try requirePrerequisites(.root, .fusermount, .python3)
        let dir = Bridge.makeTempDir()
        defer { Shell.run("rm -rf '\(dir)'") }
        let r = Shell.run("""
            \(Self.unblocked) '\(Bridge.binary)' run --ephemeral -- bash -c 'trap "echo got-TERM; exit 7" TERM; trap "echo got-USR1" USR1; touch \(dir)/ready; while :; do sleep 0.05; done' &
            pid=$!
            for i in $(seq 100); do [ -e \(dir)/ready ] && break; sleep 0.1; done
            kill -USR1 $pid; sleep 0.5; kill -TERM $pid
            for i in $(seq 300); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
            kill -KILL $pid 2>/dev/null; wait $pid; echo "rc=$?"
            """)
        #expect(r.out.contains("got-USR1") && r.out.contains("got-TERM") && r.out.contains("rc=7"), "\(r.out)\n\(r.err)")
    }

    @Test("SIGKILL of run: CMD, what it started and the FUSE server all end; no namespace or mount is left")
    func sigkill() throws {
        try requirePrerequisites(.root, .fusermount, .python3)
        let dir = Bridge.makeTempDir()
        defer { Shell.run("rm -rf '\(dir)'") }
        let before = HostView.now()
        let r = Shell.run("""
            \(Self.unblocked) '\(Bridge.binary)' run --ephemeral -- sh -c 'readlink /proc/self/ns/mnt > \(dir)/ns; sleep 300 & sleep 300' 2>/dev/null &
            pid=$!
            for i in $(seq 600); do [ -s \(dir)/ns ] && break; sleep 0.1; done
            ns=$(cat \(dir)/ns)
            [ -n "$ns" ] || { echo "CMD never wrote its namespace"; kill -KILL $pid; exit 1; }
            members() { for p in /proc/[0-9]*; do [ "$(readlink $p/ns/mnt 2>/dev/null)" = "$ns" ] && tr '\\0' ' ' < $p/cmdline && echo; done; }
            echo "before:"; members
            kill -KILL $pid; wait $pid 2>/dev/null
            for i in $(seq 100); do [ -z "$(members)" ] && break; sleep 0.1; done
            echo "after:"; members; echo "end"
            """)
        let parts = r.out.components(separatedBy: "after:")
        try #require(parts.count == 2, "\(r.out)\n\(r.err)")
        // While it ran: the sandbox, the mount server, CMD and its background child.
        #expect(parts[0].contains("mount --ephemeral --ready-fd 3 /sys/firmware/efi/efivars"), "\(parts[0])")
        #expect(parts[0].contains("sleep 300"))
        // After SIGKILL: nobody left in the namespace (so it and its mount are gone).
        #expect(parts[1] == "\nend\n", "left in the namespace: \(parts[1])")
        #expect(HostView.now() == before)
    }

    @Test("a store served by a live mount is bind-mounted; a store locked by a mount out of sight gets mount's error")
    func liveMountAndLock() throws {
        try requirePrerequisites(.root, .fusermount, .python3)
        let tmp = Bridge.makeTempDir()
        defer { Shell.run("rm -rf '\(tmp)'") }
        let store = "--store '\(tmp)/store'"
        try Bridge.withMount(store) { dir in
            Shell.run("printf '\\x07\\x00\\x00\\x00hello' > '\(tmp)/v' && cat '\(tmp)/v' > '\(dir)/Greeting-\(testGuid)'")
            let r = try run(store, "tail -c 5 \(Self.efivars)/Greeting-\(testGuid); echo; stat -f -c %t \(Self.efivars)")
            #expect(r.out == "hello\nde5e81e4\n", "\(r.out)\n\(r.err)")
            #expect(r.err.contains("the store is served by the live mount at \(dir)"))
            #expect(Bridge.isMounted(dir))  // the live mount is still there afterwards
        }
        // Locked by another run: its mount lives in that run's namespace, out of our sight.
        // The first run holds the store until both attempts are made (not for a fixed time:
        // a slow machine or a sanitizer build must not let it end first); 60 s at most.
        let r = Shell.run("""
            \(Self.bridge) run \(store) -- sh -c 'touch \(tmp)/ready; for i in $(seq 600); do [ -e \(tmp)/done ] && exit 0; sleep 0.1; done' 2>/dev/null &
            for i in $(seq 600); do [ -e \(tmp)/ready ] && break; sleep 0.1; done
            \(Self.bridge) run \(store) -- true; echo "second-rc=$?"
            mkdir '\(tmp)/m'; '\(Bridge.binary)' mount \(store) '\(tmp)/m'; echo "mount-rc=$?"; fusermount3 -u '\(tmp)/m' 2>/dev/null
            touch \(tmp)/done
            wait
            """)
        #expect(r.out.contains("second-rc=1") && r.out.contains("mount-rc=1"), "\(r.out)")
        let lines = r.err.split(separator: "\n").map(String.init)
        let runLine = lines.first { $0.contains("is in use by process") }
        #expect(runLine != nil && lines.filter { $0 == runLine }.count == 2, "run and mount should say the same: \(r.err)")
    }

    @Test("as an unprivileged user, run owns its mount namespace through a user namespace (the caller is root inside)")
    func unprivileged() throws {
        try requirePrerequisites(.root, .fusermount, .efibootmgr, .setpriv, .userNamespaces)
        // A copy every user can execute (the build directory may be private).
        let dir = Bridge.makeTempDir()
        defer { Shell.run("rm -rf '\(dir)'") }
        try #require(Shell.run("chmod 755 '\(dir)' && cp '\(Bridge.binary)' '\(dir)/efivarfs-bridge'").status == 0)
        let r = try run("--ephemeral", "id -u; efibootmgr | grep BootOrder; stat -f -c %T \(Self.efivars)",
                        outer: "HOME='\(dir)' setpriv --reuid=65534 --regid=65534 --clear-groups",
                        binary: "\(dir)/efivarfs-bridge")
        #expect(r.out == "0\nBootOrder: 0001,0002,0000\nefivarfs\n", "\(r.out)\n\(r.err)")
    }

    @Test("without seccomp or without namespaces run says why in one line and still serves the variables")
    func fallbacks() throws {
        try requirePrerequisites(.root, .fusermount, .gcc, .efibootmgr)
        let deny = try Self.compile("deny-syscalls.c")
        defer { Shell.run("rm -rf \"$(dirname '\(deny)')\"") }
        let noSeccomp = try run("--ephemeral", "echo \"path=$EFIVARFS_PATH\"; efibootmgr | grep BootOrder; stat -f -c %t \(Self.efivars)", outer: "'\(deny)' seccomp --")
        #expect(noSeccomp.out == "path=/sys/firmware/efi/efivars/\nBootOrder: 0001,0002,0000\n65735546\n", "\(noSeccomp.out)\n\(noSeccomp.err)")
        #expect(noSeccomp.err.split(separator: "\n").filter { $0.contains("seccomp user notification is not available (Function not implemented)") }.count == 1)
        let noNamespace = try run("--ephemeral", "echo \"path=$EFIVARFS_PATH\"; efibootmgr | grep BootOrder; grep -c ' - efivarfs ' /proc/self/mountinfo", outer: "'\(deny)' unshare --")
        #expect(noNamespace.out.contains("path=/tmp/efivarfs-bridge-run."), "\(noNamespace.out)\n\(noNamespace.err)")
        #expect(noNamespace.out.contains("BootOrder: 0001,0002,0000\n1\n"))
        #expect(noNamespace.err.contains("no private mount namespace (unshare(CLONE_NEWNS): Operation not permitted)"))
    }
}
