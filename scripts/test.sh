#!/usr/bin/env bash
# The whole test suite, from a fresh clone on a new Debian 12 machine with Swift on the PATH:
#   bash scripts/test.sh [swift test arguments...]
# It installs what the build and the tests need (scripts/setup.sh: Debian packages, the
# virt-firmware reference reader from PyPI, the packages the QEMU tests boot), builds, and
# runs `swift test`. Each step stops the script when it fails. Run it as root: the
# integration tests mount FUSE filesystems, attach loop devices and boot QEMU.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
swift --version
# The layer rule: a target may import only the targets it declares (directly or through
# them); SwiftPM's check turns an undeclared import into a build error.
swift build --explicit-target-dependency-import-check error
swift test --explicit-target-dependency-import-check error "$@"
