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

# libslirp (user-mode networking) for aarch64: Debian's arm64 libslirp0 and
# what it loads (glib, pcre2), unpacked from their packages into
# target/aarch64-libs by aarch64_setup rather than installed: installing
# them brings Debian's arm64 libc next to the cross toolchain's, and
# qemu-user then pairs one's ld.so with the other's libc (programs hang).
# A slirp.pc there serves libslirp-sys's pkg-config lookup; the runner
# finds the libraries through LD_LIBRARY_PATH.
AARCH64_LIBS="$PWD/target/aarch64-libs"
export PKG_CONFIG_ALLOW_CROSS=1
export PKG_CONFIG_PATH_aarch64_unknown_linux_gnu="$AARCH64_LIBS/pkgconfig"
export PKG_CONFIG_LIBDIR_aarch64_unknown_linux_gnu="$AARCH64_LIBS/pkgconfig"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="$CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER -E LD_LIBRARY_PATH=$AARCH64_LIBS"
export HX86_TEST_RUNNER="$CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER"

# aarch64_slirp: puts libslirp and its libraries for arm64 in $AARCH64_LIBS
# (apt-get download: needs the arm64 package lists, which it adds once).
aarch64_slirp() {
    [ -e "$AARCH64_LIBS/pkgconfig/slirp.pc" ] && return 0
    local pkgs=(libslirp0:arm64 libglib2.0-0:arm64 libpcre2-8-0:arm64) tmp
    tmp="$(mktemp -d)"
    if ! (cd "$tmp" && apt-get download "${pkgs[@]}") >/dev/null 2>&1; then
        dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64 || return 1
        apt-get update -q >/dev/null && (cd "$tmp" && apt-get download "${pkgs[@]}") >&2 || { rm -rf "$tmp"; return 1; }
    fi
    rm -rf "$AARCH64_LIBS"
    mkdir -p "$AARCH64_LIBS/pkgconfig"
    for d in "$tmp"/*.deb; do dpkg-deb -x "$d" "$tmp/x"; done
    cp -a "$tmp"/x/usr/lib/aarch64-linux-gnu/lib{slirp,glib-2.0,pcre2-8}.so.* "$AARCH64_LIBS/"
    # Link names for all three: the cross linker resolves a library's
    # own dependencies only among what it links (no -rpath-link here).
    ln -s libslirp.so.0 "$AARCH64_LIBS/libslirp.so"
    ln -s libglib-2.0.so.0 "$AARCH64_LIBS/libglib-2.0.so"
    ln -s libpcre2-8.so.0 "$AARCH64_LIBS/libpcre2-8.so"
    local ver
    ver="$(dpkg-deb -f "$(ls "$tmp"/libslirp0_*.deb)" Version | sed 's/-[^-]*$//')"
    rm -rf "$tmp"
    cat > "$AARCH64_LIBS/pkgconfig/slirp.pc" <<PC
Name: slirp
Description: libslirp from Debian's arm64 package (scripts/aarch64-env.sh)
Version: $ver
Libs: -L$AARCH64_LIBS -lslirp -lglib-2.0 -lpcre2-8
Cflags:
PC
}

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
    aarch64_slirp || { echo "aarch64: cannot fetch Debian's arm64 libslirp" >&2; return 2; }
}

# run_aarch64 BIN ARGS...: runs an aarch64 binary under qemu-user.
run_aarch64() {
    # The runner variable is a command line: split it on purpose.
    # shellcheck disable=SC2086
    $CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER "$@"
}
