#!/usr/bin/env bash
# Times the built-in demo guest (reset vector -> real/protected/long mode,
# sieve of 100000, power-off) under hx86 and under QEMU with the same ROM,
# in one run, and prints the ratios. Each accelerator pair is measured only
# when both sides can run here.
#
# Usage: scripts/bench-demo.sh [RUNS]      (default 5; the median is reported)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-common.sh
runs="${1:-5}"
cargo build --release -q
cargo run --release -q -p firmware --example write-demo-rom -- target/demo.rom >/dev/null
hx86=target/release/hx86
qemu=$(command -v qemu-system-x86_64 || true)

# median wall time in seconds of `runs` runs of "$@"
time_cmd() {
    local ts=()
    for _ in $(seq "$runs"); do
        local t0 t1
        t0=$(date +%s.%N)
        "$@" >/dev/null 2>&1 || true
        t1=$(date +%s.%N)
        ts+=("$(echo "$t1 - $t0" | bc -l)")
    done
    printf '%s\n' "${ts[@]}" | median
}

qemu_args=(-bios target/demo.rom -display none -monitor none -serial stdio
           -device isa-debug-exit,iobase=0xf4,iosize=4 -m 512M -no-reboot)

printf '%-28s %10s %10s %8s\n' "pair" "hx86 (s)" "qemu (s)" "ratio"
for pair in "kvm kvm" "dbt tcg"; do
    set -- $pair
    if ! "$hx86" -accel "$1" 2>/dev/null | grep -q 9592; then
        echo "demo -accel $1: does not run here, skipped"; continue
    fi
    h=$(time_cmd "$hx86" -accel "$1" -serial none)
    if [ -n "$qemu" ]; then
        q=$(time_cmd "$qemu" -accel "$2" "${qemu_args[@]}")
        r=$(echo "$h / $q" | bc -l)
        printf '%-28s %10.3f %10.3f %8.2f\n' "demo -accel $1 vs $2" "$h" "$q" "$r"
    else
        printf '%-28s %10.3f %10s %8s\n' "demo -accel $1" "$h" "-" "-"
    fi
done
echo "(ratio = hx86 time / QEMU time; < 1 means hx86 is faster)"
