import EfiTypes
import MmWire
import PeerVariableStores
import VariableService

/// Opening the store a machine boots with: the journal for the store choice, the profile's
/// store with its power-on variables, and the checks of which store each profile can have.
extension Machine {
    /// What `openStore` hands the machine.
    struct OpenedStore {
        var store: any MmVariableStore
        var journal: (any VariableJournal)?
        var firstBoot: Bool
        var nvStoreSize: Int
        var notes: [String]
    }

    /// Opens the configured store: its variables as power-on finds them (enrolled keys,
    /// the profile's initial variables), the journal, and whether this is its first boot.
    static func openStore(_ config: Configuration) throws(BootError) -> OpenedStore {
        var limits = config.limits
        var journal: (any VariableJournal)?
        var saved: [ExportedVariable] = []
        var notes: [String] = []
        try checkStoreChoice(config)
        do {
            switch config.store {
            case .memory:
                if let n = config.nvStoreSize { limits.nvStoreSize = n }
            case .native(let dir, let create):
                let (j, vars) = try NativeJournal.open(directory: dir, create: create, note: config.lockNote)
                journal = j; saved = vars
                limits.nvStoreSize = try nativeStoreSize(j, asked: config.nvStoreSize, default: limits.nvStoreSize, saved: saved)
            case .firmwareVolume(let path):
                let (j, vars) = try FirmwareVolumeJournal.open(path: path, note: config.lockNote)
                journal = j; saved = vars
                // The volume's own variable store decides the size (VARIABLE_STORE_HEADER.Size).
                limits.nvStoreSize = j.storeSize
            case .qemuJson(let path):
                let (j, vars) = try QemuJsonJournal.open(path: path, note: config.lockNote)
                journal = j; saved = vars
                if let n = config.nvStoreSize { limits.nvStoreSize = n }
            }
        } catch let e as StoreOpenError { throw .store(e) } catch let e as BootError { throw e } catch { throw .storeSize("\(error)") }
        if let keys = config.enrolledKeys {
            // Replacing a store's PK is not undone by removing the generated files: the
            // store's owner loses control of its Secure Boot keys. Only on request.
            if !config.replaceKeys, saved.contains(where: { $0.key == VariableKey("PK", .globalVariable) }) {
                throw .platformKeyPresent(store: config.store.path ?? "in memory")
            }
            if let dir = config.enrolledKeysDirectory {
                do { try keys.write(into: dir) } catch { throw .keys(error.description) }
            }
        }
        let store: any MmVariableStore
        switch config.profile {
        case .edk2:
            var s = VariableStore(limits: limits)
            s.secureBoot.authSupport = firmwareBuild(config, saved: saved, notes: &notes) == .secureBoot
            s.restore(saved)
            config.enrolledKeys?.enroll(into: &s)
            s.initializeAuthVariables()
            store = s
        case .qemu:
            var s = UefiVarsStore(dialect: .qemu, configuration: config.qemu)
            s.restore(saved)
            if let keys = config.enrolledKeys { s.restore(keys.variables) }
            s.powerOn()
            store = s
        case .coconut:
            var qc = config.qemu
            qc.persistence = config.coconut.persistence
            var s = UefiVarsStore(dialect: .virtfw, configuration: qc)
            if config.coconut.persistence {
                s.restore(saved)
            } else {
                notes.append("COCONUT keeps no variables across SVSM starts: the store starts empty")
            }
            if let keys = config.enrolledKeys { s.restore(keys.variables) }
            s.powerOn(enrolment: config.coconut.secureBoot ? VirtfwEnrolment() : nil)
            store = s
        }
        // What power-on changed in the non-volatile store (initial variables, enrolled keys)
        // is saved before the firmware runs — only if it changed something: saving rewrites
        // the store whole (a new checkpoint, a JSON rewrite), and a store whose disk filled
        // up (writes refused with ENOSPC) must still open and be read until space is freed.
        // (Compared regardless of order: rewriting a variable with its own value moves it to
        // the end of the store's order, and changes nothing worth a rewrite.)
        let atPowerOn = store.nonVolatileExport
        func values(_ v: [ExportedVariable]) -> [VariableKey: StoredVariable] {
            Dictionary(v.map { ($0.key, $0.value) }, uniquingKeysWith: { _, last in last })
        }
        if let j = journal, values(atPowerOn) != values(saved) {
            do { try j.saveAtPowerOn(atPowerOn) } catch { throw .store(.io(error)) }
        }
        return OpenedStore(store: store, journal: journal, firstBoot: saved.isEmpty || (config.profile == .coconut && !config.coconut.persistence),
                           nvStoreSize: limits.nvStoreSize, notes: notes)
    }

    /// The store kinds each profile can have: QEMU keeps a JSON file (or the native store);
    /// COCONUT keeps nothing unless built with `persistence`; an OVMF_VARS.fd is edk2's.
    static func checkStoreChoice(_ config: Configuration) throws(BootError) {
        switch (config.profile, config.store) {
        case (.qemu, .firmwareVolume), (.coconut, .firmwareVolume):
            throw .profile("--svsm \(config.profile.rawValue) cannot serve an OVMF_VARS.fd: that is edk2's flash format; use --from-json or a native store")
        case (.coconut, .native), (.coconut, .qemuJson):
            guard config.coconut.persistence else {
                throw .profile("--svsm coconut keeps no variables across SVSM starts (COCONUT without its persistence feature); "
                               + "drop the store path, or add --coconut-persistence to keep them")
            }
        case (.edk2, _), (_, .memory), (.qemu, _):
            break
        }
        if config.firmware != nil && config.profile != .edk2 {
            throw .profile("--firmware applies to --svsm edk2 only")
        }
        if (config.coconut.secureBoot || config.coconut.persistence) && config.profile != .coconut {
            throw .profile("--coconut-secureboot and --coconut-persistence apply to --svsm coconut only")
        }
    }

    /// The edk2 build: as asked; for a VM's file, what the file shows; else Secure Boot.
    static func firmwareBuild(_ config: Configuration, saved: [ExportedVariable], notes: inout [String]) -> FirmwareBuild {
        if let f = config.firmware { return f }
        switch config.store {
        case .firmwareVolume, .qemuJson:
            let (build, reason) = FirmwareBuild.detect(in: saved)
            notes.append("firmware: \(build.rawValue) (\(reason); --firmware overrides)")
            return build
        case .memory, .native:
            return .secureBoot
        }
    }

    /// The native store's size: the one it recorded, or the one asked for if its variables
    /// fit (then recorded), else the default (recorded for a new store).
    static func nativeStoreSize(_ j: NativeJournal, asked: Int?, default: Int, saved: [ExportedVariable]) throws(BootError) -> Int {
        let size = asked ?? j.recordedNvStoreSize ?? `default`
        if size != j.recordedNvStoreSize {
            var probe = VariableStore(limits: { var l = StoreLimits(); l.nvStoreSize = size; return l }())
            probe.restore(saved)
            if probe.nonVolatileUsed > probe.commonVariableSpace {
                throw .storeSize("--nv-store-size \(size) is too small for \(j.directory): its variables need \(probe.nonVolatileUsed) bytes of \(probe.commonVariableSpace)")
            }
            do { try j.recordNvStoreSize(size) } catch { throw .store(.io(error)) }
        }
        return size
    }
}
