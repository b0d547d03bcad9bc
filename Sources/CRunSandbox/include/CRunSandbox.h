#ifndef EFIVARFS_BRIDGE_CRUNSANDBOX_H
#define EFIVARFS_BRIDGE_CRUNSANDBOX_H

/// The first argument that makes the binary run the `run` sandbox instead of the Swift
/// command line. `efivarfs-bridge run` (Sources/efivarfs-bridge/CLI/RunCommand.swift)
/// execs /proc/self/exe with it; a constructor in sandbox.c sees it before Swift's main
/// starts, so the sandbox starts in a single-threaded process (unshare(CLONE_NEWNS) moves
/// only the calling thread, and after fork() in a threaded process only async-signal-safe
/// calls are allowed until exec).
///
/// The sandbox's own argument syntax (internal, produced by RunCommand.swift):
///   MARKER [--keep-container] [--reuse DIR PID] [--verbose] -- MOUNT-ARGS... -- CMD ARGS...
const char *ebr_run_sandbox_marker(void);

#endif
