import Foundation
import Testing
import TestSupport

/// Keys and signed updates made with openssl and efitools, as a lab would make them.
struct KeyLab {
    let dir: String
    static let owner = "11111111-2222-3333-4444-555555555555"

    init() throws {
        dir = Bridge.makeTempDir()
        for n in ["PK", "KEK", "db", "Rogue"] {
            let r = Shell.run("cd '\(dir)' && openssl req -new -x509 -newkey rsa:2048 -subj '/CN=Test \(n)/' -keyout \(n).key -out \(n).crt -days 3650 -nodes -sha256 && cert-to-efi-sig-list -g \(KeyLab.owner) \(n).crt \(n).esl")
            try #require(r.status == 0, "key \(n): \(r.err)")
        }
        // A dbx entry: one SHA-256 hash in an EFI_SIGNATURE_LIST.
        let hashList = "2616c4c14c509240aca941f936934328" + "4c000000" + "00000000" + "30000000"
            + "11111111222233334444555555555555".replacingOccurrences(of: "-", with: "") + String(repeating: "ab", count: 32)
        Shell.run("cd '\(dir)' && printf '\(hashList)' | xxd -r -p > hash.esl || python3 -c \"import sys,binascii; open('hash.esl','wb').write(binascii.unhexlify('\(hashList)'))\"")
        Shell.run("cd '\(dir)' && : > empty.esl")
    }

    /// sign-efi-sig-list, then the 4 attribute bytes in front: the file to `cat` into the mount.
    func signed(_ variable: String, esl: String, signer: String, time: String, append: Bool = false, out: String) throws -> String {
        let flags = append ? "-a" : ""
        let attrs = append ? "\\x67" : "\\x27"
        let r = Shell.run("cd '\(dir)' && sign-efi-sig-list \(flags) -t '\(time)' -k \(signer).key -c \(signer).crt \(variable) \(esl) \(out).auth && (printf '\(attrs)\\x00\\x00\\x00'; cat \(out).auth) > \(out).var")
        try #require(r.status == 0, "sign \(variable): \(r.err)")
        return "\(dir)/\(out).var"
    }

    func cleanup() { Shell.run("rm -rf '\(dir)'") }
}

let imageSecurityGuid = "d719b2cb-3d3a-4596-a3bc-dad00e67656f"

@Suite("Secure Boot through the mount", .serialized)
struct SecureBootTests {
    func byte(_ dir: String, _ name: String) -> String {
        Shell.run("od -An -tx1 -j4 '\(dir)/\(name)-\(globalGuid)'").out.trimmingCharacters(in: .whitespacesAndNewlines)
    }
    func bytes(_ path: String) -> String { Shell.run("od -An -tx1 -v '\(path)'").out }
    /// One write(2) of the whole file, as `cat` does for a small file.
    func write(_ file: String, to path: String) -> Shell.Result {
        Shell.run("chattr -i '\(path)' 2>/dev/null; cat '\(file)' > '\(path)'")
    }

    @Test("enrol PK, KEK and db in order, append to dbx, refuse every bad update, delete PK with a signed empty update")
    func enrolmentLifecycle() throws {
        try requirePrerequisites(.openssl, .efitools, .chattr)
        let lab = try KeyLab()
        defer { lab.cleanup() }
        try Bridge.withMount { dir in
            let pkPath = "\(dir)/PK-\(globalGuid)", kekPath = "\(dir)/KEK-\(globalGuid)"
            let dbPath = "\(dir)/db-\(imageSecurityGuid)", dbxPath = "\(dir)/dbx-\(imageSecurityGuid)"
            #expect(byte(dir, "SetupMode") == "01" && byte(dir, "SecureBoot") == "00")

            // PK must be self-signed even in setup mode (PcdRequireSelfSignedPk).
            let pkBySomeoneElse = try lab.signed("PK", esl: "PK.esl", signer: "Rogue", time: "2026-01-01 00:00:00", out: "pk-rogue")
            #expect(write(pkBySomeoneElse, to: pkPath).err.contains("Permission denied"))
            #expect(Shell.run("test -e '\(pkPath)'").status != 0)

            let pk = try lab.signed("PK", esl: "PK.esl", signer: "PK", time: "2026-01-01 00:00:01", out: "pk")
            #expect(write(pk, to: pkPath).status == 0)
            #expect(byte(dir, "SetupMode") == "00")
            // edk2 changes SecureBoot only at boot time; after ExitBootServices it waits.
            #expect(byte(dir, "SecureBoot") == "00")
            #expect(bytes(pkPath).contains("27 00 00 00"))

            // KEK must now be signed by PK.
            let kekByKek = try lab.signed("KEK", esl: "KEK.esl", signer: "KEK", time: "2026-01-01 00:00:02", out: "kek-self")
            #expect(write(kekByKek, to: kekPath).err.contains("Permission denied"))
            let kek = try lab.signed("KEK", esl: "KEK.esl", signer: "PK", time: "2026-01-01 00:00:03", out: "kek")
            #expect(write(kek, to: kekPath).status == 0)

            // db signed by KEK.
            let db = try lab.signed("db", esl: "db.esl", signer: "KEK", time: "2026-01-01 00:00:04", out: "db")
            #expect(write(db, to: dbPath).status == 0)
            let dbBefore = bytes(dbPath)

            // Refusals, each leaving db as it was.
            let rogue = try lab.signed("db", esl: "Rogue.esl", signer: "Rogue", time: "2026-01-01 00:00:05", out: "db-rogue")
            #expect(write(rogue, to: dbPath).err.contains("Permission denied"))
            #expect(write(db, to: dbPath).err.contains("Permission denied"))  // replayed: same timestamp
            let older = try lab.signed("db", esl: "Rogue.esl", signer: "KEK", time: "2025-06-01 00:00:00", out: "db-old")
            #expect(write(older, to: dbPath).err.contains("Permission denied"))  // older timestamp
            // One byte flipped, in the signature and in the payload.
            for offset in [120, 1900] {
                let t = "\(lab.dir)/tampered\(offset).var"
                let newer = try lab.signed("db", esl: "Rogue.esl", signer: "KEK", time: "2026-01-01 00:00:06", out: "db-new\(offset)")
                // Inverted, not overwritten with 0xff: a byte that already was 0xff (1 in 256
                // for signature and certificate bytes) left the file unchanged and valid.
                let size = Int(Shell.run("stat -c %s '\(newer)'").out.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
                try #require(size > offset, "the signed update is \(size) bytes")
                Shell.run("cp '\(newer)' '\(t)' && b=$(od -An -tu1 -j \(offset) -N1 '\(t)' | tr -d ' ') && "
                          + "printf \"$(printf '\\\\%03o' $((b ^ 255)))\" | dd of='\(t)' bs=1 seek=\(offset) conv=notrunc 2>/dev/null")
                #expect(Shell.run("cmp -s '\(newer)' '\(t)'").status != 0, "flip at \(offset) changed nothing")
                #expect(write(t, to: dbPath).err.contains("Permission denied"), "flip at \(offset)")
            }
            // Signed, but written with attributes other than the signed ones (0x27 → 0x07).
            let wrongAttrs = "\(lab.dir)/wrongattrs.var"
            Shell.run("(printf '\\x07\\x00\\x00\\x00'; cat '\(lab.dir)/db.auth') > '\(wrongAttrs)'")
            #expect(write(wrongAttrs, to: dbPath).err.contains("Invalid argument"))
            // No descriptor at all.
            let unsigned = "\(lab.dir)/unsigned.var"
            Shell.run("(printf '\\x27\\x00\\x00\\x00'; cat '\(lab.dir)/db.esl') > '\(unsigned)'")
            #expect(write(unsigned, to: dbPath).err.contains("Permission denied"))
            // A malformed signature list, properly signed: INVALID_PARAMETER.
            Shell.run("cd '\(lab.dir)' && head -c 40 db.esl > bad.esl")
            let malformed = try lab.signed("db", esl: "bad.esl", signer: "KEK", time: "2026-01-01 00:00:07", out: "db-bad")
            #expect(write(malformed, to: dbPath).err.contains("Invalid argument"))
            #expect(bytes(dbPath) == dbBefore)

            // Append a hash to dbx (signed by KEK); appending the same again changes nothing.
            let dbx = try lab.signed("dbx", esl: "hash.esl", signer: "KEK", time: "2026-01-01 00:00:08", append: true, out: "dbx")
            #expect(write(dbx, to: dbxPath).status == 0)
            let dbxSize = Shell.run("stat -c %s '\(dbxPath)'").out.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(dbxSize == "80")  // 4 + 28 + 48
            let dbxAgain = try lab.signed("dbx", esl: "hash.esl", signer: "KEK", time: "2026-01-01 00:00:09", append: true, out: "dbx2")
            #expect(write(dbxAgain, to: dbxPath).status == 0)
            #expect(Shell.run("stat -c %s '\(dbxPath)'").out.trimmingCharacters(in: .whitespacesAndNewlines) == "80")

            // Delete PK with a signed empty update: back to setup mode.
            let pkDelete = try lab.signed("PK", esl: "empty.esl", signer: "PK", time: "2026-01-01 00:00:10", out: "pk-del")
            #expect(write(pkDelete, to: pkPath).status == 0)
            #expect(Shell.run("cat '\(pkPath)' | wc -c").out.trimmingCharacters(in: .whitespacesAndNewlines) == "0")
            #expect(byte(dir, "SetupMode") == "01")
            // An unsigned deletion (unlink) of KEK is refused: EINVAL, as efivarfs turns every unlink failure.
            Shell.run("chattr -i '\(kekPath)'")
            #expect(Shell.run("rm '\(kekPath)'").err.contains("Invalid argument"))
        }
    }

    @Test("private authenticated variables: created signed, updated only by the same signer, certdb tracks them")
    func privateAuthenticatedVariable() throws {
        try requirePrerequisites(.openssl, .efitools, .chattr)
        let lab = try KeyLab()
        defer { lab.cleanup() }
        try Bridge.withMount { dir in
            let path = "\(dir)/Private-\(testGuid)"
            Shell.run("cd '\(lab.dir)' && printf 'secret' > data.bin")
            // sign-efi-sig-list signs any data file for any variable name and GUID.
            func signedData(_ signer: String, _ time: String, _ out: String) throws -> String {
                let r = Shell.run("cd '\(lab.dir)' && sign-efi-sig-list -g \(testGuid) -t '\(time)' -k \(signer).key -c \(signer).crt Private data.bin \(out).auth && (printf '\\x27\\x00\\x00\\x00'; cat \(out).auth) > \(out).var")
                try #require(r.status == 0, "\(r.err)")
                return "\(lab.dir)/\(out).var"
            }
            let p1 = try signedData("db", "2026-02-01 00:00:00", "p1")
            let p2 = try signedData("Rogue", "2026-02-01 00:00:01", "p2")
            let p3 = try signedData("db", "2026-02-01 00:00:02", "p3")
            #expect(write(p1, to: path).status == 0)
            #expect(Shell.run("tail -c 6 '\(path)'").out == "secret")
            // certdb now holds one node: u32 total, then { GUID, sizes, "Private", SHA-256 digest }.
            // (stat would show the size cached at mount: efivarfs does not refresh it.)
            #expect(Shell.run("cat '\(dir)/certdb-d9bee56e-75dc-49d9-b4d7-b534210f637a' | wc -c").out.trimmingCharacters(in: .whitespacesAndNewlines) == "\(4 + 4 + 28 + 14 + 32)")
            // Another signer: refused.
            #expect(write(p2, to: path).err.contains("Permission denied"))
            // The same signer, newer: accepted.
            #expect(write(p3, to: path).status == 0)
            // A plain write to an authenticated variable: refused.
            #expect(Shell.run("chattr -i '\(path)'; printf '\\x07\\x00\\x00\\x00x' > '\(path)'").err.contains("Invalid argument"))
        }
    }

    @Test("--enroll-generate boots with lab keys enrolled (Secure Boot on) and leaves the keys to sign updates with")
    func enrollGenerate() throws {
        try requirePrerequisites(.openssl, .efitools, .chattr)
        let keys = Bridge.makeTempDir()
        defer { Shell.run("rm -rf '\(keys)'") }
        try Bridge.withMount("--enroll-generate '\(keys)'") { dir in
            #expect(byte(dir, "SecureBoot") == "01" && byte(dir, "SetupMode") == "00")
            for f in ["PK.key", "PK.crt", "KEK.key", "KEK.crt", "db.key", "db.crt", "db.esl"] {
                #expect(FileManager.default.fileExists(atPath: "\(keys)/\(f)"), "\(f)")
            }
            #expect(Shell.run("stat -c %a '\(keys)/PK.key'").out.trimmingCharacters(in: .whitespacesAndNewlines) == "600")
            #expect(Shell.run("openssl x509 -in '\(keys)/KEK.crt' -noout -subject").out.contains("efivarfs-bridge lab KEK"))
            // The generated KEK signs a db append.
            let r = Shell.run("cd '\(keys)' && sign-efi-sig-list -a -k KEK.key -c KEK.crt db db.esl a.auth >/dev/null && (printf '\\x67\\x00\\x00\\x00'; cat a.auth) > a.var")
            try #require(r.status == 0, "\(r.err)")
            #expect(write("\(keys)/a.var", to: "\(dir)/db-\(imageSecurityGuid)").status == 0)
        }
    }
}
