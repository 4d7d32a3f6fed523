# Cross-building hx86 for aarch64 Linux and running it under qemu-user on
# an x86-64 Debian machine; source it, do not run it. Used by
# .ci/aarch64 and scripts/bench-aarch64.sh.

AARCH64=aarch64-unknown-linux-gnu
# Debian's cross gcc links; qemu-user runs the test binaries (cargo's
# runner) and the hx86 they start (tests/common: $HX86_TEST_RUNNER), as
# binfmt_misc may not be set up (containers).
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
export HX86_TEST_RUNNER="$CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER"

# aarch64_setup: installs the aarch64 standard library (rustup), the cross
# linker and qemu-user (apt-get; needs root when they are missing). When
# the standard library cannot be had, prints a line starting with
# "SKIPPED:" and returns 1; a failing apt-get is an error (returns 2).
aarch64_setup() {
    if ! rustup target list --installed 2>/dev/null | grep -qx "$AARCH64"; then
        if ! command -v rustup >/dev/null 2>&1; then
            echo "SKIPPED: aarch64 cross build: rustup is not installed, so the $AARCH64 standard library cannot be added"
            return 1
        fi
        if ! rustup target add "$AARCH64"; then
            echo "SKIPPED: aarch64 cross build: 'rustup target add $AARCH64' failed (offline, or a toolchain without that target)"
            return 1
        fi
    fi
    local need=()
    command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || need+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
    command -v qemu-aarch64 >/dev/null 2>&1 || need+=(qemu-user)
    if [ ${#need[@]} -gt 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q --no-install-recommends "${need[@]}" ||
            { apt-get update -q && apt-get install -y -q --no-install-recommends "${need[@]}"; } ||
            return 2
    fi
}

# run_aarch64 BIN ARGS...: runs an aarch64 binary under qemu-user.
run_aarch64() {
    # The runner variable is a command line: split it on purpose.
    # shellcheck disable=SC2086
    $CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER "$@"
}
