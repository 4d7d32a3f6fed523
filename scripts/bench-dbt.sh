#!/usr/bin/env bash
# The DBT against QEMU's TCG, in one run: QEMU 7.2 (`qemu-system-x86_64 -M pc
# -accel tcg`), hx86 `-accel dbt` (the JIT) and hx86 `-accel dbt,jit=off`
# (the interpreter) on
#  (a) Debian's kernel with the busybox initramfs of scripts/linux-guest.sh:
#      boot to the init marker, the in-guest seconds (from /proc/uptime,
#      printed before and after) of `md5sum /bin/busybox` 20 times, and the
#      wall time of the whole run (boot + load + poweroff);
#  (b) the compute ROM (firmware/src/compute.rs: sieve, CRC-32, heap sort in
#      long mode, about 1 to 3 s under QEMU) under -bios: wall time.
# Prints a table of times (medians of RUNS runs) and the ratios hx86/QEMU.
#
# Usage: scripts/bench-dbt.sh [RUNS]        (default 1)
# Env:   COMPUTE="rounds=N,sieve=N,crc=N,sort=N"  (the ROM's size; default
#        the benchmark size), SKIP_LINUX=1 (only the compute ROM).
# The Linux guest under the interpreter takes about 3 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-common.sh
runs="${1:-1}"
cargo build --release -q
rom=target/compute.rom
want=$(cargo run --release -q -p firmware --example write-compute-rom -- "$rom" "${COMPUTE:-}")
want=${want%%$'\n'*} # the line the guest must print
hx86=target/release/hx86
qemu=$(command -v qemu-system-x86_64 || true)

# The three configurations: a name and the command prefix (the guest's
# options follow).
names=("qemu tcg" "hx86 dbt" "hx86 jit=off")
prefix() {
    case "$1" in
        0) echo "$qemu -M pc -accel tcg -m 512M -display none -monitor none -serial stdio -no-reboot" ;;
        1) echo "$hx86 -accel dbt -m 512M -no-reboot" ;;
        2) echo "$hx86 -accel dbt,jit=off -m 512M -no-reboot" ;;
    esac
}

# Results: boot[i] load[i] linux[i] compute[i] per configuration i.
boot=() load=() linux=() compute=()
if [ "${SKIP_LINUX:-0}" != 1 ]; then
    bench_linux_guest
    n20=$(seq -s+ 1 20)
    cmd="echo+HX86-UPTIME-A+\$(cat+/proc/uptime);for+i+in+$n20;do+md5sum+/bin/busybox+>/dev/null;done;echo+HX86-UPTIME-B+\$(cat+/proc/uptime)"
    append="console=ttyS0 quiet hx86.cmd=$cmd"
fi
for i in 0 1 2; do
    boot[i]=-1 load[i]=-1 linux[i]=-1 compute[i]=-1
    if [ "$i" = 0 ] && [ -z "$qemu" ]; then continue; fi
    # shellcheck disable=SC2207
    p=($(prefix "$i"))
    if [ "${SKIP_LINUX:-0}" != 1 ]; then
        read -r boot[i] linux[i] load[i] < <(run_many "$runs" HX86-GUEST-DONE "${p[@]}" \
            -kernel "$linux_guest/vmlinuz" -initrd "$linux_guest/initrd.gz" -append "$append")
    fi
    extra=()
    if [ "$i" = 0 ]; then extra=(-device isa-debug-exit,iobase=0xf4,iosize=4); fi
    read -r _ compute[i] _ < <(run_many "$runs" "$want" "${p[@]}" "${extra[@]}" -bios "$rom")
done

row() {
    local label="$1"; shift
    local -n v="$1"
    printf '%-30s %9s %9s %13s %9s %13s\n' "$label" "${v[0]}" "${v[1]}" "${v[2]}" \
        "$(ratio "${v[1]}" "${v[0]}")" "$(ratio "${v[2]}" "${v[0]}")"
}
printf '%-30s %9s %9s %13s %9s %13s\n' "seconds (median of $runs)" "${names[@]}" "dbt/qemu" "jit=off/qemu"
if [ "${SKIP_LINUX:-0}" != 1 ]; then
    row "linux: boot to init marker" boot
    row "linux: md5sum x20 (in guest)" load
    row "linux: whole run (wall)" linux
fi
row "compute ROM (wall)" compute
echo "(${want#hx86 compute: }; ratio = hx86/QEMU, < 1 means hx86 is faster; -1 = did not finish or not run)"
