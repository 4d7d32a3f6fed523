#!/usr/bin/env bash
# The numbers of the README's "Supported hosts" table: hx86 on this x86-64
# host (KVM when usable, the DBT with the JIT, the interpreter alone) and
# hx86 cross-built for aarch64 run under qemu-user (the interpreter: the
# only accelerator there), on the built-in demo and on the compute ROM
# (firmware/src/compute.rs, as in scripts/bench-dbt.sh). For each: the
# median wall time of RUNS runs and, under the DBT, the guest instructions
# per second of the vCPU (from -d stats). Under qemu-user the aarch64
# figures are a lower bound of what an aarch64 machine does: qemu-user
# translates every aarch64 instruction of hx86 first.
#
# Usage: scripts/bench-aarch64.sh [RUNS]     (default 3)
# Env:   COMPUTE="rounds=N,sieve=N,crc=N,sort=N" (the ROM's size; default
#        the benchmark size, about 1.5 s under QEMU's TCG).
# Needs what .ci/aarch64 installs (rustup target, cross gcc, qemu-user).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-common.sh
. scripts/aarch64-env.sh
runs="${1:-3}"
aarch64_setup >&2 || { echo "bench-aarch64: cannot cross-build for aarch64 here" >&2; exit 1; }
cargo build --release -q --bin hx86
cargo build --release -q --target "$AARCH64" --bin hx86
rom=target/compute.rom
want=$(cargo run --release -q -p firmware --example write-compute-rom -- "$rom" "${COMPUTE:-}")
want=${want%%$'\n'*} # the line the guest must print
x86=target/release/hx86
arm=target/$AARCH64/release/hx86

# one DONE CMD...: runs CMD once with -d stats; prints "<wall s> <MIPS>",
# the MIPS from the stats line ("-" without one, e.g. under KVM), or
# "-1 -" when the output lacks DONE.
one() {
    local done="$1"; shift
    local out err t0 t1
    err=$(mktemp)
    t0=$(date +%s.%N)
    out=$("$@" -d stats </dev/null 2>"$err" || true)
    t1=$(date +%s.%N)
    if [[ "$out" != *"$done"* ]]; then
        rm -f "$err"; echo "-1 -"; return
    fi
    local mips
    mips=$(sed -n 's/.*vCPU 0: \([0-9]*\) guest instructions in \([0-9.]*\) s.*/\1 \2/p' "$err" |
        awk '{ if ($2 > 0) printf "%.1f", $1 / $2 / 1e6; else print "-" }')
    rm -f "$err"
    echo "$(echo "$t1 - $t0" | bc -l) ${mips:--}"
}

# many DONE CMD...: the medians of `runs` runs of `one`.
many() {
    local ts=() ms=() t m
    for _ in $(seq "$runs"); do
        read -r t m < <(one "$@")
        if [ "$t" = -1 ]; then echo "-1 -"; return; fi
        ts+=("$t") ms+=("$m")
    done
    printf '%.2f %s\n' "$(printf '%s\n' "${ts[@]}" | median)" \
        "$(printf '%s\n' "${ms[@]}" | median)"
}

printf '%-34s %9s %9s %12s %9s\n' "host / accelerator" "demo (s)" "MIPS" "compute (s)" "MIPS"
row() {
    local name="$1"; shift
    local d dm c cm
    read -r d dm < <(many 9592 "$@")
    read -r c cm < <(many "$want" "$@" -bios "$rom")
    printf '%-34s %9s %9s %12s %9s\n' "$name" "$d" "$dm" "$c" "$cm"
}
# KVM when -accel auto takes it (usable, and not a nested/paravirtual KVM
# running guest code at a few M instr/s, where the compute ROM would take
# many minutes).
auto=$("$x86" -d accel 2>&1 >/dev/null </dev/null | grep "accelerator:" || true)
if [[ "$auto" == *"accelerator: kvm"* ]]; then
    row "x86-64 kvm" "$x86" -accel kvm
else
    echo "x86-64 kvm: skipped, -accel auto does not take it here: ${auto#hx86: accelerator: }"
fi
row "x86-64 dbt (JIT)" "$x86" -accel dbt
row "x86-64 dbt,jit=off (interpreter)" "$x86" -accel dbt,jit=off
row "aarch64 under qemu-user (interp.)" run_aarch64 "$arm"
echo "(median of $runs runs; MIPS = guest instructions per second of vCPU time, from -d stats;"
echo " -1 = wrong output; ${want#hx86 compute: })"
echo "(aarch64 under qemu-user on this x86-64 host: a lower bound for a real aarch64 machine)"
