import ArgumentParser

/// The options of the server behind a mount, shared by `mount` and `run` (which hands its
/// own words to `mount` verbatim, and declares them so that they parse).
struct ServerOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Write one JSON line per SVSM call to this file (see the README).", valueName: "file"))
    var trace: String?

    @Option(name: .long, help: ArgumentHelp("Generate a lab PK, KEK and db (keys and certificates written to this directory) and boot with them enrolled: Secure Boot on.", valueName: "directory"))
    var enrollGenerate: String?

    @Flag(name: .long, help: "With --enroll-generate: replace keys already in the directory and a PK already in the store.")
    var replaceKeys = false

    @Option(name: .long, help: "FUSE worker threads (each request holds one vCPU while it runs).")
    var fuseThreads = 4

    @Flag(name: .long, help: "Do not serialise writes with Linux's efivars_lock (a driver-design experiment: lets concurrent SetVariables reach the store together, where group commit can batch their fdatasyncs).")
    var noEfivarsLock = false
}
