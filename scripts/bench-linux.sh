#!/usr/bin/env bash
# Boots Debian's kernel with the busybox initramfs (scripts/linux-guest.sh)
# under hx86 and under QEMU with TCG, in one run, and prints for each the
# time to the init marker (boot), the time to power-off after a small load
# (boot + load + poweroff), and the ratios hx86/QEMU.
#
# Usage: scripts/bench-linux.sh [RUNS]        (default 1; medians reported)
# Env:   HX86_ACCEL (default dbt), QEMU_MACHINE (default pc; see below)
#
# QEMU machine: the issue asks for `-M microvm`; QEMU 7.2's microvm with
# TCG hangs with Debian's 6.1 kernel right after "tsc: Marking TSC unstable"
# (no PIT/PM-timer reference there), so the default is `-M pc`, which boots.
# Set QEMU_MACHINE=microvm to try it (a 600 s timeout applies).
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-1}"
accel="${HX86_ACCEL:-dbt}"
machine="${QEMU_MACHINE:-pc}"
. scripts/bench-common.sh
cargo build --release -q
bench_linux_guest
g=$linux_guest
load='md5sum+/bin/busybox;for+i+in+1+2+3+4+5+6+7+8;do+md5sum+/bin/busybox+>/dev/null;done;ls+-R+/proc/sys+>/dev/null'
append="console=ttyS0 quiet hx86.cmd=$load"

read -r hb ht _ < <(run_many "$runs" HX86-GUEST-DONE target/release/hx86 -accel "$accel" -m 512M \
    -kernel "$g/vmlinuz" -initrd "$g/initrd.gz" -append "$append" -no-reboot)
if command -v qemu-system-x86_64 >/dev/null; then
    read -r qb qt _ < <(run_many "$runs" HX86-GUEST-DONE qemu-system-x86_64 -M "$machine" -accel tcg -m 512M \
        -display none -monitor none -serial stdio -no-reboot \
        -kernel "$g/vmlinuz" -initrd "$g/initrd.gz" -append "$append")
else
    qb=-1; qt=-1
fi
printf '%-34s %10s %10s %8s\n' "" "hx86 (s)" "qemu (s)" "ratio"
row() { printf '%-34s %10s %10s %8s\n' "$1" "$2" "$3" "$(ratio "$2" "$3")"; }
row "boot to init marker" "$hb" "$qb"
row "boot + load + poweroff" "$ht" "$qt"
echo "(hx86 -accel $accel vs qemu-system-x86_64 -M $machine -accel tcg; ratio = hx86/QEMU; -1 = did not finish)"
