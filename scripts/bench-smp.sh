#!/usr/bin/env bash
# SMP speed-up: Debian's kernel (scripts/linux-guest.sh) runs a load split
# across CPUs (4 background loops of md5sum over busybox, `wait`ed for)
# under -smp 1 and -smp 2, with hx86's DBT and with QEMU 7.2's TCG (which
# runs vCPUs in parallel threads too, MTTCG), in one run. Reports the
# in-guest time of the load (from /proc/uptime) and the speed-up
# t(-smp 1) / t(-smp 2) of each emulator, and the hx86/QEMU ratios.
#
# Usage: scripts/bench-smp.sh [RUNS]        (default 1; medians reported)
# Env:   HX86_ACCEL (default dbt), CPUS (default 2: the -smp N compared with 1)
# A 2-core host is the case this was written for: -smp 2 can at best halve
# the time, and both emulators share the host with the benchmark itself.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-1}"
accel="${HX86_ACCEL:-dbt}"
cpus="${CPUS:-2}"
. scripts/bench-common.sh
cargo build --release -q
bench_linux_guest
g=$linux_guest
# The load: 4 loops of 6 md5sums each, in parallel; timed inside the guest.
load='echo+HX86-UPTIME-A+$(cat+/proc/uptime);for+j+in+1+2+3+4;do+(for+i+in+1+2+3+4+5+6;do+md5sum+/bin/busybox+>/dev/null;done)+&+done;wait;echo+HX86-UPTIME-B+$(cat+/proc/uptime)'
append="console=ttyS0 quiet hx86.cmd=$load"

hx() {
    run_many "$runs" HX86-GUEST-DONE target/release/hx86 -accel "$accel" -smp "$1" -m 512M \
        -kernel "$g/vmlinuz" -initrd "$g/initrd.gz" -append "$append" -no-reboot
}
qm() {
    run_many "$runs" HX86-GUEST-DONE qemu-system-x86_64 -M pc -accel tcg -smp "$1" -m 512M \
        -display none -monitor none -serial stdio -no-reboot \
        -kernel "$g/vmlinuz" -initrd "$g/initrd.gz" -append "$append"
}
read -r _ _ h1 < <(hx 1)
read -r _ _ h2 < <(hx "$cpus")
if command -v qemu-system-x86_64 >/dev/null; then
    read -r _ _ q1 < <(qm 1)
    read -r _ _ q2 < <(qm "$cpus")
else
    q1=-1; q2=-1
fi
printf '%-36s %10s %10s %8s\n' "in-guest seconds of the load" "hx86" "qemu" "ratio"
row() { printf '%-36s %10s %10s %8s\n' "$1" "$2" "$3" "$(ratio "$2" "$3")"; }
row "-smp 1" "$h1" "$q1"
row "-smp $cpus" "$h2" "$q2"
printf '%-36s %10s %10s\n' "speed-up (-smp 1 / -smp $cpus)" "$(ratio "$h1" "$h2")" "$(ratio "$q1" "$q2")"
echo "(hx86 -accel $accel vs qemu-system-x86_64 -M pc -accel tcg; ratio = hx86/QEMU; -1 = did not finish)"
