import ArgumentParser
import Platform

extension SvsmProfile: ExpressibleByArgument {}
extension FirmwareBuild: ExpressibleByArgument {}

/// Which variable store sits behind protocol 4, and how it was built: the options every
/// command that boots a machine shares with serve-svsm, so that both reach the same store
/// from the same command line.
struct ProfileOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The variable store behind protocol 4: edk2 (default; persistent, PKCS#7), coconut (COCONUT-SVSM on virtfw-varstore, as merged) or qemu (QEMU's hw/uefi uefi-vars). docs/svsm-profiles.md lists the differences.", valueName: "profile"))
    var svsm: SvsmProfile = .edk2

    @Option(name: .long, help: ArgumentHelp("edk2's firmware build: secure-boot (AuthVariableLib: certdb, SetupMode, SecureBoot, authenticated writes) or plain (none of them). Default: what a VM's file shows (--from-fd, --from-json), else secure-boot.", valueName: "build"))
    var firmware: FirmwareBuild?

    @Flag(name: .long, help: "With --svsm coconut: COCONUT built with its secureboot feature (PK for external management, Microsoft KEK and db, dbx enrolled at SVSM start).")
    var coconutSecureboot = false

    @Flag(name: .long, help: "With --svsm coconut: COCONUT built with its persistence feature, so the store named survives SVSM restarts. Without it a coconut store starts empty every time and a store path is refused.")
    var coconutPersistence = false

    /// Whether the store is COCONUT's in-memory one: without its persistence feature
    /// COCONUT's store is empty at every SVSM start, so the default store directory is not
    /// used. A store named on the command line is still passed on, for the machine to
    /// refuse.
    func inMemoryOnly(storeNamed: Bool) -> Bool { svsm == .coconut && !coconutPersistence && !storeNamed }

    /// Sets the profile, the firmware build, COCONUT's features and the store (`store`,
    /// or memory where `inMemoryOnly`).
    func apply(to c: inout Machine.Configuration, store: StoreChoice, storeNamed: Bool) {
        c.store = inMemoryOnly(storeNamed: storeNamed) ? .memory : store
        c.profile = svsm
        c.firmware = firmware
        c.coconut.secureBoot = coconutSecureboot
        c.coconut.persistence = coconutPersistence
    }
}
