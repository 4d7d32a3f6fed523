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
cargo build --release -q
g=target/linux-guest
scripts/linux-guest.sh "$g" >/dev/null
load='md5sum+/bin/busybox;for+i+in+1+2+3+4+5+6+7+8;do+md5sum+/bin/busybox+>/dev/null;done;ls+-R+/proc/sys+>/dev/null'
append="console=ttyS0 quiet hx86.cmd=$load"

# Prints "<seconds to marker> <seconds to exit> <exit status>" for one run.
measure() {
    python3 - "$@" <<'PY'
import subprocess, sys, time
t0 = time.monotonic()
p = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL,
                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
marker = None
buf = b""
deadline = t0 + 600
while True:
    chunk = p.stdout.read1(4096)
    if not chunk:
        break
    buf += chunk
    if marker is None and b"HX86-GUEST-READY" in buf:
        marker = time.monotonic() - t0
    if time.monotonic() > deadline:
        p.kill()
        break
rc = p.wait()
total = time.monotonic() - t0
ok = b"HX86-GUEST-DONE" in buf
print("%.2f %.2f %d" % (marker if marker is not None else -1, total, rc if ok else -1))
PY
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

run_many() {
    local b=() t=()
    for _ in $(seq "$runs"); do
        read -r m tot rc < <(measure "$@")
        if [ "$rc" = -1 ] || [ "$m" = -1.00 ]; then echo "-1 -1"; return; fi
        b+=("$m"); t+=("$tot")
    done
    echo "$(printf '%s\n' "${b[@]}" | median) $(printf '%s\n' "${t[@]}" | median)"
}

read -r hb ht < <(run_many target/release/hx86 -accel "$accel" -m 512M \
    -kernel "$g/vmlinuz" -initrd "$g/initrd.gz" -append "$append" -no-reboot)
if command -v qemu-system-x86_64 >/dev/null; then
    read -r qb qt < <(run_many qemu-system-x86_64 -M "$machine" -accel tcg -m 512M \
        -display none -monitor none -serial stdio -no-reboot \
        -kernel "$g/vmlinuz" -initrd "$g/initrd.gz" -append "$append")
else
    qb=-1; qt=-1
fi
printf '%-34s %10s %10s %8s\n' "" "hx86 (s)" "qemu (s)" "ratio"
row() {
    local r="-"
    if [ "$2" != -1 ] && [ "$3" != -1 ]; then r=$(echo "$2 / $3" | bc -l | xargs printf '%.2f'); fi
    printf '%-34s %10s %10s %8s\n' "$1" "$2" "$3" "$r"
}
row "boot to init marker" "$hb" "$qb"
row "boot + load + poweroff" "$ht" "$qt"
echo "(hx86 -accel $accel vs qemu-system-x86_64 -M $machine -accel tcg; ratio = hx86/QEMU; -1 = did not finish)"
