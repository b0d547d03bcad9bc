import Foundation
import Testing
import TestSupport

/// Issue #20, "bad input and faults, tried as a new user would": every reproduction of the
/// issue, run against the real binary, asserting what was printed and written — no hang
/// (every command under `timeout`), no silent loss, an exit code and a message that tell
/// the truth. The rows of docs/bad-input.md ("Lifecycle and faults") name these tests.
@Suite("Bad input and faults (issue #20)", .serialized)
struct BadInputRegressionTests {
    static let usage: Int32 = 64
    static let bootOrder = "BootOrder-\(globalGuid)"
    static var bin: String { Bridge.binary }

    /// Runs `script` with bash in a scratch directory (`$W`, removed afterwards) with
    /// `$B` naming the binary.
    @discardableResult
    static func script(_ script: String, environment: [String: String] = [:], in work: String) -> Shell.Result {
        Shell.run("set -u; B='\(bin)'; W='\(work)'; cd \"$W\"; " + script, environment: environment)
    }

    static func scratch() -> String { Bridge.makeTempDir() }
    static func remove(_ dir: String) { Shell.run("rm -rf '\(dir)'") }

    /// The pid of the background server serving `mountPoint`.
    static func daemon(_ mountPoint: String) -> Int32? {
        Shell.run("pgrep -f -- 'efivarfs-bridge mount .*\(mountPoint)'").out.split(separator: "\n").compactMap { Int32($0) }.first
    }

    static func seconds(_ body: () -> Void) -> Double {
        let start = Date()
        body()
        return Date().timeIntervalSince(start)
    }

    // MARK: 1. SIGTERM with a file held open

    @Test("1. SIGTERM while a reader holds a file open: a read right after it is answered, the daemon exits within a few seconds though the file stays open, a later read gets ENOTCONN, nothing is left in D state")
    func sigtermWithOpenReader() throws {
        let w = Self.scratch()
        defer { Bridge.unmount(w + "/m"); Self.remove(w) }
        // Everything is bounded: if the reader or the daemon is still there after 15 s, the
        // connection is aborted through fusectl (by the device minor read from mountinfo,
        // never by a stat of the mount) and both are killed, so a regression fails the test
        // instead of hanging it.
        let r = Self.script("""
            mkdir m
            "$B" mount --foreground --store "$W/s" "$W/m" 2>"$W/daemon.err" &
            D=$!
            for i in $(seq 200); do grep -q " $W/m " /proc/self/mountinfo && break; sleep 0.05; done
            minor=$(awk -v m="$W/m" '$5 == m { split($3, d, ":"); print d[2] }' /proc/self/mountinfo)
            [ -n "$minor" ] || { echo "not mounted"; kill -9 $D; exit 2; }
            ( exec 8<"$W/m/\(Self.bootOrder)" || exit 3
              touch "$W/opened"
              while [ ! -e "$W/go" ]; do sleep 0.02; done
              timeout 10 od -An -tx1 <&8; echo "od-exit=$?"
              # Still open: the daemon must not wait for it, and the next read fails.
              for i in $(seq 60); do [ -e "$W/daemon-gone" ] && break; sleep 0.1; done
              timeout 10 od -An -tx1 <&8; echo "od2-exit=$?" ) >"$W/reader.out" 2>&1 &
            R=$!
            for i in $(seq 200); do [ -e "$W/opened" ] && break; sleep 0.05; done
            kill -TERM $D
            touch "$W/go"
            start=$(date +%s%N)
            for i in $(seq 150); do grep -q od-exit "$W/reader.out" && break; sleep 0.02; done
            reader_ms=$(( ($(date +%s%N) - start) / 1000000 ))
            for i in $(seq 100); do kill -0 $D 2>/dev/null || break; sleep 0.1; done
            daemon_ms=$(( ($(date +%s%N) - start) / 1000000 ))
            kill -0 $D 2>/dev/null || touch "$W/daemon-gone"
            for i in $(seq 150); do kill -0 $R 2>/dev/null || break; sleep 0.1; done
            stuck=""
            kill -0 $R 2>/dev/null && stuck="$stuck reader"
            kill -0 $D 2>/dev/null && stuck="$stuck daemon"
            dstate=$(ps -eo stat=,pid=,args= | awk '$1 ~ /^D/' | grep -e "od -An" -e "$W/m" | grep -v awk)
            if [ -n "$stuck" ]; then
              [ -e /sys/fs/fuse/connections/$minor ] || mount -t fusectl none /sys/fs/fuse/connections
              echo 1 > /sys/fs/fuse/connections/$minor/abort
              kill -9 $D $R 2>/dev/null
            fi
            wait $D; daemon_status=$?
            wait $R 2>/dev/null
            echo "stuck=[$stuck] dstate=[$dstate] reader_ms=$reader_ms daemon_ms=$daemon_ms daemon_status=$daemon_status"
            cat "$W/reader.out"
            """, in: w)
        #expect(r.out.contains("stuck=[]"), "\(r.out)\n\(r.err)")
        #expect(r.out.contains("dstate=[]"), "\(r.out)")
        let field = { (name: String) -> Int? in
            r.out.split(whereSeparator: { $0 == " " || $0 == "\n" }).first { $0.hasPrefix(name + "=") }.flatMap { Int($0.dropFirst(name.count + 1)) }
        }
        #expect((field("reader_ms") ?? .max) < 10_000, "the reader needed its timeout: \(r.out)")
        #expect((field("daemon_ms") ?? .max) < 5_000, "\(r.out)")
        #expect(field("daemon_status") == 0, "\(r.out)")
        // A read made right after the signal is answered (the attribute bytes of BootOrder,
        // then its entries) during the grace period before any abort: not ENOTCONN, and
        // never od killed by its timeout (124).
        #expect(r.out.contains("07 00 00 00") && r.out.contains("od-exit=0"), "\(r.out)")
        #expect(r.out.contains("od: 'standard input': Transport endpoint is not connected\nod2-exit=1"), "\(r.out)")
        #expect(!Bridge.isMounted(w + "/m"))
    }

    // MARK: 2. One file, two names

    @Test("2. a VM file through a symlink or a hard link, and a native store through a symlinked directory: the second mount is refused and says why")
    func oneFileTwoNames() throws {
        try requirePrerequisites(.ovmf)
        let w = Self.scratch()
        defer { for m in ["m1", "m2"] { Bridge.unmount("\(w)/\(m)") }; Self.remove(w) }
        let setup = Self.script("""
            mkdir m1 m2 sdir
            cp /usr/share/OVMF/OVMF_VARS_4M.ms.fd a.fd && ln -s a.fd l.fd
            "$B" export --from-fd a.fd --format json a.json 2>/dev/null && ln -s a.json l.json
            """, in: w)
        try #require(setup.status == 0, "\(setup.err)")
        for (kind, file) in [("--from-fd", "a.fd"), ("--from-json", "a.json")] {
            let link = file.replacingOccurrences(of: "a.", with: "l.")
            let first = Self.script("\"$B\" mount \(kind) \(file) m1", in: w)
            try #require(first.status == 0, "\(first.err)")
            let viaSymlink = Self.script("\"$B\" mount \(kind) \(link) m2", in: w)
            #expect(viaSymlink.status == 1)
            #expect(viaSymlink.err.contains("efivarfs-bridge: the store \(link) is in use by process "), "\(viaSymlink.err)")
            #expect(viaSymlink.err.contains("; unmount it first or name another store"))
            #expect(!Bridge.isMounted(w + "/m2"))
            Bridge.unmount(w + "/m1")
            // A hard link: refused as such, whether or not the other name is served.
            let hard = Self.script("ln \(file) h.\(kind == "--from-fd" ? "fd" : "json") && \"$B\" mount \(kind) h.\(kind == "--from-fd" ? "fd" : "json") m2", in: w)
            #expect(hard.status == 1)
            #expect(hard.err.contains("has 2 hard links; the bridge replaces the file when it rewrites it, which would split them"), "\(hard.err)")
            #expect(!Bridge.isMounted(w + "/m2"))
            Self.script("rm -f h.fd h.json", in: w)
        }
        // No lock file is left beside the image.
        #expect(!FileManager.default.fileExists(atPath: w + "/a.fd.lock") && !FileManager.default.fileExists(atPath: w + "/l.fd.lock"))
        let native = Self.script("\"$B\" mount --store sdir m1 && ln -s sdir lsdir && \"$B\" mount --store lsdir m2", in: w)
        #expect(native.status == 1)
        #expect(native.err.contains("the store lsdir is in use by process"), "\(native.err)")
        #expect(!Bridge.isMounted(w + "/m2"))
    }

    // MARK: 3. set --data-file beside a live mount

    @Test("3. set --data-file REL beside a live mount writes the caller's file, not the one beside the daemon")
    func dataFileIsTheCallers() throws {
        let w = Self.scratch()
        defer { Bridge.unmount(w + "/daemon/m"); Self.remove(w) }
        let r = Self.script("""
            mkdir -p daemon/m caller
            printf 'daemon-side' > daemon/rel.bin
            printf 'caller-side' > caller/rel.bin
            (cd daemon && "$B" mount --store "$W/s" m) || exit 2
            cd caller
            "$B" set Greeting-\(testGuid) --attributes nv,bs,rt --data-file rel.bin --store "$W/s" || exit 3
            "$B" get Greeting-\(testGuid) --raw --store "$W/s"
            """, in: w)
        #expect(r.status == 0, "\(r.err)")
        #expect(r.out == "caller-side")
    }

    // MARK: 4. A stopped daemon

    @Test("4. kill -STOP the daemon: list, get, set, delete, info and stats exit 1 within EFIVARFS_BRIDGE_CONTROL_TIMEOUT + a margin, saying so; mount on it gives up; after SIGCONT it answers")
    func stoppedDaemon() throws {
        let w = Self.scratch()
        let m = w + "/m"
        try FileManager.default.createDirectory(atPath: m, withIntermediateDirectories: true)
        let up = Shell.run("'\(Self.bin)' mount --store '\(w)/s' '\(m)'")
        try #require(up.status == 0, "\(up.err)")
        let pid = try #require(Self.daemon(m))
        kill(pid, SIGSTOP)
        defer {
            kill(pid, SIGCONT)
            Bridge.unmount(m)
            Self.remove(w)
        }
        let env = ["EFIVARFS_BRIDGE_CONTROL_TIMEOUT": "2"]
        let store = "--store '\(w)/s'"
        let answer = "efivarfs-bridge: the store \(w)/s is in use by process \(pid), which did not answer within 2 s (stopped or hung?)"
        for command in ["list", "get \(Self.bootOrder)", "set Greeting-\(testGuid) --attributes nv,bs,rt --hex 01",
                        "delete Other-\(testGuid)", "info"] {
            var r = Shell.Result(status: 0, out: "", err: "")
            let elapsed = Self.seconds { r = Shell.run("timeout -s KILL 15 '\(Self.bin)' \(command) \(store)", environment: env) }
            #expect(r.status == 1, "\(command): \(r.status) \(r.err)")
            #expect(r.err == answer + "\n", "\(command): \(r.err)")
            #expect(r.out.isEmpty)
            #expect(elapsed < 5, "\(command) took \(elapsed) s")
        }
        var stats = Shell.Result(status: 0, out: "", err: "")
        let statsTime = Self.seconds { stats = Shell.run("timeout -s KILL 15 '\(Self.bin)' stats '\(m)'", environment: env) }
        #expect(stats.status == 1, "stats: \(stats.status) \(stats.err)")
        #expect(stats.err == "efivarfs-bridge: the efivarfs-bridge serving \(m) did not answer within 2 s (stopped?)\n", "\(stats.err)")
        #expect(statsTime < 5)
        // A second mount on the stopped mount point: its stat would never return.
        var again = Shell.Result(status: 0, out: "", err: "")
        let againTime = Self.seconds { again = Shell.run("timeout -s KILL 15 '\(Self.bin)' mount --ephemeral '\(m)'") }
        #expect(again.status == 1, "\(again.err)")
        #expect(again.err.contains("mount point \(m) is a mount whose server does not answer (stopped or hung?)"), "\(again.err)")
        #expect(againTime < 6)
        kill(pid, SIGCONT)
        let after = Shell.run("timeout -s KILL 15 '\(Self.bin)' stats '\(m)'", environment: env)
        #expect(after.status == 0 && after.out.hasPrefix("SVSM calls: "), "\(after.err)")
        // The set reported as not answered did not take effect when the server resumed.
        let greeting = Shell.run("timeout -s KILL 15 '\(Self.bin)' get Greeting-\(testGuid) \(store)", environment: env)
        #expect(greeting.status == 3 && greeting.err == "efivarfs-bridge: Greeting-\(testGuid): no such variable\n", "\(greeting.err)")
    }

    // MARK: 5. Long names

    @Test("5. a 300-character name: set refuses it without --force (64); with --force it is written; list shows every variable, the mount stops at it like efivarfs")
    func longNames() throws {
        let w = Self.scratch()
        defer { Bridge.unmount(w + "/m"); Self.remove(w) }
        let long = String(repeating: "L", count: 300)
        let store = "--store '\(w)/s'"
        #expect(Shell.run("'\(Self.bin)' set Before-\(testGuid) --attributes nv,bs,rt --hex 01 --create \(store)").status == 0)
        let refused = Shell.run("'\(Self.bin)' set \(long)-\(testGuid) --attributes nv,bs,rt --hex 02 \(store)")
        #expect(refused.status == Self.usage)
        #expect(refused.err.contains("Error: the name has 300 CHAR16; efivarfs lists names of up to 255 and stops at a longer one, hiding every variable after it. Pass --force to write it anyway"), "\(refused.err)")
        #expect(Shell.run("'\(Self.bin)' get \(long)-\(testGuid) \(store)").status == 3)
        #expect(Shell.run("'\(Self.bin)' set \(long)-\(testGuid) --attributes nv,bs,rt --hex 02 --force \(store)").status == 0)
        #expect(Shell.run("'\(Self.bin)' set After-\(testGuid) --attributes nv,bs,rt --hex 03 \(store)").status == 0)
        let list = Shell.run("'\(Self.bin)' list \(store)")
        #expect(list.status == 0, "\(list.err)")
        let names = list.out.split(separator: "\n").map(String.init)
        #expect(names.suffix(3) == ["Before-\(testGuid)", "\(long)-\(testGuid)", "After-\(testGuid)"])
        let json = Shell.run("'\(Self.bin)' list --json \(store)")
        #expect(json.out.contains("{\"name\":\"\(long)\",\"guid\":\"\(testGuid)\",\"attributes\":7,\"size\":1}"))
        // The mount: efivar_init's 512-byte buffer ends the walk at the long name, with the
        // kernel's warning in the log.
        let mount = Shell.run("mkdir '\(w)/m' && '\(Self.bin)' mount --verbose \(store) '\(w)/m'")
        try #require(mount.status == 0, "\(mount.err)")
        #expect(mount.err.contains("efivars: Variable name size exceeds maximum (602 > 512): the listing stops there, as efivarfs does"), "\(mount.err)")
        let ls = (try? FileManager.default.contentsOfDirectory(atPath: w + "/m")) ?? []
        #expect(ls.contains("Before-\(testGuid)"))
        #expect(!ls.contains("After-\(testGuid)"))
        #expect(!ls.contains { $0.hasPrefix("LLLL") })
        #expect(names.count == ls.count + 2, "list \(names.count), ls \(ls.count)")
    }

    // MARK: 6. Writes that would delete

    @Test("6. set with an empty value or attributes without bs,rt: exit 64 pointing to delete, the variable still there", arguments: [
        ("--attributes nv,bs,rt --hex ''", "an empty value deletes the variable; use `efivarfs-bridge delete Keep-\(testGuid)` to delete"),
        ("--attributes nv,bs,rt --data-file empty.bin", "an empty value deletes the variable; use `efivarfs-bridge delete Keep-\(testGuid)` to delete"),
        ("--attributes 0 --hex 01", "attributes 0 have neither bs nor rt, which deletes the variable; use `efivarfs-bridge delete Keep-\(testGuid)` to delete"),
        ("--attributes nv --hex 01", "attributes nv have neither bs nor rt, which deletes the variable"),
    ])
    func writesThatWouldDelete(_ args: String, _ message: String) throws {
        let w = Self.scratch()
        defer { Self.remove(w) }
        let r = Self.script("""
            : > empty.bin
            "$B" set Keep-\(testGuid) --attributes nv,bs,rt --hex 6b657074 --create --store s || exit 2
            "$B" set Keep-\(testGuid) \(args) --store s; echo "exit=$?"
            "$B" get Keep-\(testGuid) --hex --store s
            """, in: w)
        #expect(r.out == "exit=64\n6b657074\n", "\(r.out)")
        #expect(r.err.contains("Error: " + message), "\(r.err)")
    }

    // MARK: Exit codes of SVSM call failures

    @Test("an SVSM call that fails (--fault drop-exit=1): exit 1 with the reason and nothing on stdout", arguments: [
        ("list", "list"), ("list --json", "list"), ("info", "info"), ("info --json", "info"),
        ("get \(bootOrder)", bootOrder), ("set Greeting-\(testGuid) --attributes nv,bs,rt --hex 01", "Greeting-\(testGuid)"),
        ("delete Greeting-\(testGuid)", "Greeting-\(testGuid)"),
    ])
    func svsmFailureExitCodes(_ command: String, _ subject: String) throws {
        let r = Shell.run("timeout -s KILL 60 '\(Self.bin)' \(command) --ephemeral --fault drop-exit=1")
        #expect(r.status == 1, "\(r.status) \(r.err)")
        #expect(r.out.isEmpty, "\(r.out)")
        #expect(r.err == "efivarfs-bridge: \(subject): the SVSM call failed: SVSM call not executed (call_pending still 1)\n", "\(r.err)")
    }

    @Test("--max-retries outside 0...10000 is a usage error; busy=1 with 3 retries names the attempts")
    func maxRetries() throws {
        for n in ["10001", "-1"] {
            let r = Shell.run("'\(Self.bin)' list --ephemeral --max-retries \(n)")
            #expect(r.status == Self.usage)
            #expect(r.err.contains("Error: --max-retries must be between 0 and 10000 (got \(n))"), "\(r.err)")
        }
        let busy = Shell.run("'\(Self.bin)' list --ephemeral --fault busy=1 --max-retries 3")
        #expect(busy.status == 1)
        #expect(busy.err == "efivarfs-bridge: list: the SVSM call failed: SVSM kept answering SVSM_ERR_BUSY (4 attempts)\n", "\(busy.err)")
    }

    // MARK: The background server and its parent

    @Test("a background server that is not up yet dies with the mount command that started it (PR_SET_PDEATHSIG): no orphan")
    func noOrphanServer() throws {
        let w = Self.scratch()
        defer { Bridge.unmount(w + "/m"); Self.remove(w) }
        // A trace file that is a FIFO nobody reads holds the server before it is ready (its
        // open blocks), as a busy SVSM or a slow disk would.
        let r = Self.script("""
            mkdir m && mkfifo trace.fifo
            "$B" mount --ephemeral --trace "$W/trace.fifo" "$W/m" 2>/dev/null &
            P=$!
            for i in $(seq 100); do pgrep -f -- "mount --ephemeral --trace $W/trace.fifo $W/m --ready-fd" >/dev/null && break; sleep 0.05; done
            pgrep -f -- "mount --ephemeral --trace $W/trace.fifo $W/m --ready-fd" >/dev/null && echo "server started"
            kill -KILL $P; wait $P
            for i in $(seq 40); do pgrep -f -- "mount --ephemeral --trace $W/trace.fifo $W/m --ready-fd" >/dev/null || break; sleep 0.05; done
            if pgrep -f -- "mount --ephemeral --trace $W/trace.fifo $W/m --ready-fd" >/dev/null; then
              echo "orphan left"; pkill -9 -f -- "mount --ephemeral --trace $W/trace.fifo $W/m --ready-fd"
            else echo "no server left"; fi
            """, in: w)
        #expect(r.out == "server started\nno server left\n", "\(r.out)\(r.err)")
        #expect(!Bridge.isMounted(w + "/m"))
    }

    // MARK: Store size

    @Test("import of a file that does not fit: refused with the sizes, no store left; a store's recorded size is kept on reopen")
    func importSizes() throws {
        try requirePrerequisites(.ovmf)
        let w = Self.scratch()
        defer { Self.remove(w) }
        let ms = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"
        let small = Self.script("\"$B\" import \(ms) --store small --nv-store-size 8K", in: w)
        #expect(small.status == 1)
        #expect(small.err == "efivarfs-bridge: \(ms): its 31 variables need 18524 bytes; the store small holds 8164 (--nv-store-size 8192); pass a larger --nv-store-size\n", "\(small.err)")
        #expect(!FileManager.default.fileExists(atPath: w + "/small"), "a refused import left a store behind")
        let big = Self.script("\"$B\" import \(ms) --store big --nv-store-size 0x100000", in: w)
        #expect(big.status == 0, "\(big.err)")
        #expect(big.err == "efivarfs-bridge: imported 31 variables from \(ms) (fd) into big\n")
        #expect((try? String(contentsOfFile: w + "/big/config", encoding: .utf8)) == "nv-store-size=1048576\n")
        // Reopened without the option: the recorded size.
        let info = Self.script("\"$B\" info --json --store big", in: w)
        #expect(info.out.contains("\"nv,bs,rt\":{\"maximum_storage\":1048548,"), "\(info.out)")
        let tooSmall = Self.script("\"$B\" list --store big --nv-store-size 8K", in: w)
        #expect(tooSmall.status == 1)
        #expect(tooSmall.err.contains("efivarfs-bridge: --nv-store-size 8192 is too small for big: its variables need "), "\(tooSmall.err)")
        #expect((try? String(contentsOfFile: w + "/big/config", encoding: .utf8)) == "nv-store-size=1048576\n")
    }

    @Test("--nv-store-size takes 0x-hex and K/M suffixes; --vcpus -1 reaches the range check")
    func sizeArguments() throws {
        for size in ["0x100000", "1M", "1024K", "1048576"] {
            let r = Shell.run("'\(Self.bin)' info --json --ephemeral --nv-store-size \(size)")
            #expect(r.status == 0, "\(size): \(r.err)")
            #expect(r.out.contains("\"nv,bs,rt\":{\"maximum_storage\":1048548,"), "\(size): \(r.out)")
        }
        let bad = Shell.run("'\(Self.bin)' info --ephemeral --nv-store-size 12Q")
        #expect(bad.status == Self.usage && bad.err.contains("Error: --nv-store-size: '12Q' is not a size (bytes, 0x-hex, or with K, M or G)"), "\(bad.err)")
        let dir = Self.scratch()
        defer { Self.remove(dir) }
        let vcpus = Shell.run("'\(Self.bin)' mount --ephemeral --vcpus -1 '\(dir)'")
        #expect(vcpus.status == Self.usage)
        #expect(vcpus.err.contains("Error: --vcpus must be between 1 and 512 (got -1)"), "\(vcpus.err)")
        #expect(!Bridge.isMounted(dir))
    }

    // MARK: Which store

    @Test("a store that does not exist (a typo) is refused by every scripting command; --create makes it; a file is not a store")
    func missingStore() throws {
        let w = Self.scratch()
        defer { Self.remove(w) }
        for command in ["list", "get \(Self.bootOrder)", "set X-\(testGuid) --attributes nv,bs,rt --hex 01", "delete X-\(testGuid)",
                        "info", "export --format json -"] {
            let r = Self.script("\"$B\" \(command) --store \"$W/typo\"", in: w)
            #expect(r.status == 1, "\(command): \(r.err)")
            #expect(r.err == "efivarfs-bridge: \(w)/typo: no such store (mount it once, or pass --create to start an empty one)\n", "\(command): \(r.err)")
            #expect(r.out.isEmpty)
            #expect(!FileManager.default.fileExists(atPath: w + "/typo"))
        }
        let created = Self.script("\"$B\" list --create --store typo", in: w)
        #expect(created.status == 0 && created.out.contains("\(Self.bootOrder)\n"), "\(created.err)")
        #expect(FileManager.default.fileExists(atPath: w + "/typo/checkpoint"))
        let file = Self.script("echo hi > afile; \"$B\" list --store afile; mkdir m; \"$B\" mount --store afile m", in: w)
        #expect(file.err == "efivarfs-bridge: afile is a file, not a store directory\nefivarfs-bridge: afile is a file, not a store directory\n", "\(file.err)")
    }

    // MARK: export and import sources

    @Test("export --from-fd … --format json - writes the JSON to stdout and 'exported N' to stderr; the environment names the source; import refuses VM-file sources")
    func exportSources() throws {
        try requirePrerequisites(.ovmf)
        let w = Self.scratch()
        defer { Self.remove(w) }
        Self.script("cp /usr/share/OVMF/OVMF_VARS_4M.ms.fd ms.fd", in: w)
        let r = Self.script("\"$B\" export --from-fd ms.fd --format json -", in: w)
        #expect(r.status == 0, "\(r.err)")
        #expect(r.err == "efivarfs-bridge: exported 31 variables to standard output (json)\n")
        let doc = try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any]
        #expect((doc?["variables"] as? [Any])?.count == 31)
        #expect((doc?["version"] as? Int) == 2)
        let env = Self.script("\"$B\" export --format json -", environment: ["EFIVARFS_BRIDGE_FROM_FD": w + "/ms.fd"], in: w)
        #expect(env.status == 0 && env.out == r.out, "\(env.err)")
        let imp = Self.script("\"$B\" import ms.fd --store s", environment: ["EFIVARFS_BRIDGE_FROM_FD": w + "/ms.fd"], in: w)
        #expect(imp.status == Self.usage)
        #expect(imp.err.contains("Error: import writes a native store, but EFIVARFS_BRIDGE_FROM_FD names a VM file; unset it"), "\(imp.err)")
        let opt = Self.script("\"$B\" import --from-fd ms.fd", in: w)
        #expect(opt.status == Self.usage && opt.err.contains("Unknown option '--from-fd'"), "\(opt.err)")
        // fd exports: the default template, a missing one named, an unwritable target with errno.
        let fd = Self.script("\"$B\" export --from-fd ms.fd --format fd out.fd", in: w)
        #expect(fd.status == 0 && fd.err == "efivarfs-bridge: exported 31 variables to out.fd (fd, template /usr/share/OVMF/OVMF_VARS_4M.fd)\n", "\(fd.err)")
        let template = Self.script("\"$B\" export --from-fd ms.fd --format fd --template /nonexistent.fd out2.fd", in: w)
        #expect(template.status == 1 && template.err == "efivarfs-bridge: cannot read the template /nonexistent.fd: No such file or directory\n", "\(template.err)")
        let target = Self.script("\"$B\" export --from-fd ms.fd --format json /nonexistent-dir/x.json", in: w)
        #expect(target.status == 1)
        #expect(target.err.hasPrefix("efivarfs-bridge: cannot write /nonexistent-dir/x.json: No such file or directory (create /nonexistent-dir/x.json.tmp-"), "\(target.err)")
    }

    @Test("stdout that cannot be written (/dev/full): exit 1 with the errno, for list, get and export -")
    func stdoutErrors() throws {
        let w = Self.scratch()
        defer { Self.remove(w) }
        Self.script("\"$B\" list --create --store s >/dev/null", in: w)
        for command in ["list", "list --json", "get \(Self.bootOrder) --raw", "export --format json -"] {
            let r = Self.script("\"$B\" \(command) --store s >/dev/full", in: w)
            #expect(r.status == 1, "\(command)")
            #expect(r.err.hasPrefix("efivarfs-bridge: cannot write to standard output: No space left on device\n"), "\(command): \(r.err)")
        }
    }

    // MARK: Secure Boot keys

    @Test("--enroll-generate: a directory holding keys is refused; a store that has a PK is refused unless --replace-keys; a missing directory is named with its errno")
    func enrollGenerate() throws {
        try requirePrerequisites(.fusermount)
        let w = Self.scratch()
        defer { for m in ["m"] { Bridge.unmount("\(w)/\(m)") }; Self.remove(w) }
        let r = Self.script("""
            mkdir m keys keys2
            "$B" mount --store s --enroll-generate keys m || exit 2
            "$B" get PK-global --hex --store s > pk1
            fusermount3 -u m
            "$B" mount --store s --enroll-generate keys m; echo "same-dir=$?"
            "$B" mount --store s --enroll-generate keys2 m; echo "same-store=$?"
            ls keys2 | wc -l
            "$B" get PK-global --hex --store s | cmp -s - pk1 && echo "PK kept"
            "$B" mount --store s --enroll-generate keys2 --replace-keys m; echo "replace=$?"
            fusermount3 -u m
            ls keys2 | wc -l
            "$B" get PK-global --hex --store s | cmp -s - pk1 || echo "PK replaced"
            "$B" mount --ephemeral --enroll-generate missing m; echo "missing=$?"
            """, in: w)
        #expect(r.out == "same-dir=1\nsame-store=1\n0\nPK kept\nreplace=0\n9\nPK replaced\nmissing=1\n", "\(r.out)")
        let lines = r.err.split(separator: "\n").map(String.init)
        #expect(lines.contains("efivarfs-bridge: --enroll-generate: keys already holds PK.key, KEK.key, db.key; pass --replace-keys to overwrite them and the store's PK"), "\(r.err)")
        #expect(lines.contains("efivarfs-bridge: the store s already has a PK; --enroll-generate would replace it, KEK and db, taking Secure Boot away from whoever holds that PK's key. Pass --replace-keys to do that"), "\(r.err)")
        #expect(lines.contains("efivarfs-bridge: --enroll-generate: cannot write missing/PK.crt: No such file or directory"), "\(r.err)")
        #expect(!Bridge.isMounted(w + "/m"))
    }

    // MARK: A full disk

    @Test("a store on a full disk: ENOSPC on the mount, no temporary file left, everything acknowledged intact, and the store opens again")
    func fullDisk() throws {
        try requirePrerequisites(.fusermount)
        let w = Self.scratch()
        let disk = w + "/disk"
        try FileManager.default.createDirectory(atPath: disk, withIntermediateDirectories: true)
        // 1300 KiB: the log passes the 1 MiB compaction threshold before the disk is full,
        // so both the log append and the checkpoint rewrite meet ENOSPC.
        try #require(Shell.run("mount -t tmpfs -o size=1300k tmpfs '\(disk)'").status == 0)
        defer {
            Bridge.unmount(w + "/m")
            Shell.run("umount '\(disk)' || umount -l '\(disk)'")
            Self.remove(w)
        }
        let r = Self.script("""
            mkdir m
            "$B" mount --store disk/s --nv-store-size 2M m || exit 2
            head -c 8000 /dev/urandom > blob
            (printf '\\x07\\x00\\x00\\x00'; cat blob) > value
            i=0
            while [ $i -lt 400 ]; do
              i=$((i + 1))
              cat value > m/Fill$i-\(testGuid) 2>err || { echo "failed at $i: $(cat err)"; break; }
            done
            echo "tmp files: $(ls -a disk/s | grep -c tmp)"
            cmp -s <(tail -c +5 m/Fill1-\(testGuid)) blob && echo "first intact"
            "$B" stats m | grep -o "EFI_OUT_OF_RESOURCES [0-9]*"
            fusermount3 -u m
            sleep 0.2
            "$B" mount --store disk/s m || exit 3
            ok=0; for j in $(seq 1 $((i - 1))); do cmp -s <(tail -c +5 m/Fill$j-\(testGuid)) blob && ok=$((ok + 1)); done
            echo "intact after remount: $ok of $((i - 1))"
            [ -e m/Fill$i-\(testGuid) ] || echo "refused one absent"
            """, in: w)
        #expect(r.status == 0, "\(r.out)\(r.err)")
        let failed = r.out.split(separator: "\n").first { $0.hasPrefix("failed at ") }.map(String.init) ?? ""
        #expect(failed.hasSuffix("cat: write error: No space left on device"), "\(r.out)")
        let n = Int(failed.dropFirst("failed at ".count).prefix { $0.isNumber }) ?? 0
        #expect(n > 100, "\(r.out)")
        #expect(r.out.contains("tmp files: 0\n"), "\(r.out)")
        #expect(r.out.contains("first intact\n"))
        #expect(r.out.contains("intact after remount: \(n - 1) of \(n - 1)\n"), "\(r.out)")
        #expect(r.out.contains("refused one absent\n"))
        // The store said so: EFI_OUT_OF_RESOURCES (ENOSPC through efi_status_to_err).
        #expect(r.out.contains("EFI_OUT_OF_RESOURCES "), "\(r.out)")
    }

    // MARK: Read-only mounts

    @Test("-o ro: reads work; writes, chattr and unlink are EROFS; set and delete through the mount's server are refused (4)")
    func readOnlyMount() throws {
        try requirePrerequisites(.chattr)
        let w = Self.scratch()
        defer { Bridge.unmount(w + "/m"); Self.remove(w) }
        let r = Self.script("""
            mkdir m
            "$B" set Kept-\(testGuid) --attributes nv,bs,rt --hex 6b657074 --create --store s || exit 2
            "$B" mount -o ro --store s m || exit 3
            od -An -tx1 m/\(Self.bootOrder) | tr -d ' \\n'; echo
            printf '\\x07\\x00\\x00\\x00x' > m/New-\(testGuid); echo "create=$?"
            printf '\\x07\\x00\\x00\\x00\\x01\\x00' > m/\(Self.bootOrder); echo "write=$?"
            chattr -i m/\(Self.bootOrder); echo "chattr=$?"
            rm -f m/\(Self.bootOrder); echo "rm=$?"
            "$B" set Kept-\(testGuid) --attributes nv,bs,rt --hex 00 --store s; echo "set=$?"
            "$B" delete Kept-\(testGuid) --store s; echo "delete=$?"
            "$B" get Kept-\(testGuid) --hex --store s
            """, in: w)
        let lines = r.out.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasPrefix("07000000") == true, "\(r.out)")
        #expect(Array(lines.dropFirst()) == ["create=1", "write=1", "chattr=1", "rm=1", "set=4", "delete=4", "6b657074"], "\(r.out)")
        #expect(r.err.components(separatedBy: "Read-only file system").count - 1 == 4, "\(r.err)")
        #expect(r.err.contains("efivarfs-bridge: Kept-\(testGuid): refused: EFI_WRITE_PROTECTED (the live mount serving this store is read-only, -o ro)"), "\(r.err)")
    }

    // MARK: stats and --version

    @Test("stats: the same order on two runs, with the EFI error breakdown")
    func statsOrder() throws {
        try Bridge.withMount { m in
            Shell.run("cat '\(m)/Nope-\(testGuid)' 2>/dev/null")
            let a = Shell.run("'\(Self.bin)' stats '\(m)'"), b = Shell.run("'\(Self.bin)' stats '\(m)'")
            #expect(a.status == 0 && a.out == b.out, "\(a.out)\n---\n\(b.out)")
            #expect(a.out.contains("EFI errors by status (NOT_FOUND and BUFFER_TOO_SMALL are normal for reads and listings): EFI_BUFFER_TOO_SMALL "), "\(a.out)")
            // Counts descending, then names: the first line of each table is its largest.
            let calls = a.out.components(separatedBy: "per SVSM call\n").last?.split(separator: "\n").prefix { $0.hasPrefix("  ") } ?? []
            let counts = calls.compactMap { Int($0.split(separator: " ").last ?? "") }
            #expect(!counts.isEmpty && counts == counts.sorted(by: >), "\(calls)")
            let json = Shell.run("'\(Self.bin)' stats --json '\(m)'")
            #expect(json.out.hasPrefix("{\"svsm_calls\":") && json.out.contains("\"per_efi_status\":{\"EFI_BUFFER_TOO_SMALL\":"), "\(json.out)")
        }
    }

    @Test("--version")
    func version() {
        let r = Shell.run("'\(Self.bin)' --version")
        #expect(r.status == 0 && r.out == "efivarfs-bridge 0.3.0\n", "\(r.out)")
    }

    // MARK: Messages

    @Test("mount's messages: a stale FUSE mount, a trace file it cannot write, a non-empty or missing mount point", arguments: [
        ("stale", "is a stale FUSE mount whose server is gone; run `fusermount3 -u "),
        ("--trace /nonexistent/t.jsonl", "efivarfs-bridge: cannot write the trace file /nonexistent/t.jsonl: No such file or directory"),
        ("--trace /tmp", "efivarfs-bridge: cannot write the trace file /tmp: Is a directory"),
        ("nonempty", "is not empty (efivarfs mounts on an empty directory)"),
        ("missing", ": No such file or directory"),
    ])
    func mountMessages(_ kind: String, _ message: String) throws {
        try requirePrerequisites(.fusermount)
        let w = Self.scratch()
        let m = w + "/m"
        defer { Bridge.unmount(m); Self.remove(w) }
        try FileManager.default.createDirectory(atPath: m, withIntermediateDirectories: true)
        var args = kind.hasPrefix("--") ? kind : ""
        switch kind {
        case "stale":
            try #require(Shell.run("'\(Self.bin)' mount --ephemeral '\(m)'").status == 0)
            let pid = try #require(Self.daemon(m))
            kill(pid, SIGKILL)
            for _ in 0..<50 where Shell.run("kill -0 \(pid) 2>/dev/null").status == 0 { usleep(50_000) }
        case "nonempty": _ = FileManager.default.createFile(atPath: m + "/x", contents: nil)
        case "missing": args = ""; rmdir(m)
        default: break
        }
        let r = Shell.run("timeout -s KILL 20 '\(Self.bin)' mount --ephemeral \(args) '\(m)'")
        #expect(r.status == 1, "\(r.err)")
        #expect(r.err.contains(message), "\(r.err)")
        if kind != "stale" { #expect(!Bridge.isMounted(m)) }
    }

    @Test("set too large: the store's refusal names the limits, locally and beside a live mount (a 2 MB --data-file included)")
    func setTooLarge() throws {
        let w = Self.scratch()
        defer { Bridge.unmount(w + "/m"); Self.remove(w) }
        let r = Self.script("""
            mkdir m
            head -c 40000 /dev/zero > big.bin; head -c 2000000 /dev/zero > huge.bin
            "$B" set Big-\(testGuid) --attributes nv,bs,rt --data-file big.bin --create --store s; echo "local=$?"
            "$B" mount --store s m || exit 2
            "$B" set Big-\(testGuid) --attributes nv,bs,rt --data-file big.bin --store s; echo "live=$?"
            timeout -s KILL 60 "$B" set Big-\(testGuid) --attributes nv,bs,rt --data-file huge.bin --store s; echo "huge=$?"
            """, in: w)
        #expect(r.out == "local=4\nlive=4\nhuge=4\n", "\(r.out)\(r.err)")
        let lines = r.err.split(separator: "\n").map(String.init)
        let limit = "QueryVariableInfo(nv,bs,rt) allows 33732 bytes of name and data"
        #expect(lines.count == 3)
        #expect(lines.prefix(2).allSatisfy { $0 == "efivarfs-bridge: Big-\(testGuid): refused by the store: EFI_INVALID_PARAMETER (40000 bytes of data; \(limit))" }, "\(r.err)")
        #expect(lines.last == "efivarfs-bridge: Big-\(testGuid): refused by the store: EFI_INVALID_PARAMETER (2000000 bytes of data; one MM message carries at most 65452 bytes of data for this name; \(limit))", "\(r.err)")
    }
}
