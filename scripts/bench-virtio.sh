#!/usr/bin/env bash
# virtio throughput: Debian's kernel (scripts/linux-guest.sh, with its
# virtio modules: hx86.virtio) under hx86's DBT and under QEMU 7.2's TCG, in
# one run, with the same command line for both:
#   disk write  dd if=/dev/zero of=/dev/vda bs=1M count=64 oflag=direct
#   disk read   dd if=/dev/vda of=/dev/null bs=1M count=64 iflag=direct
#   network     wget of a 16 MiB file from an HTTP server on the host's
#               loopback, reached as 10.0.2.2 through -nic user (libslirp)
# on a raw 128 MiB image (-drive file=...,format=raw,if=virtio). Each figure
# is timed inside the guest (/proc/uptime around the transfer) and reported
# as MiB/s, with the hx86/QEMU ratio.
#
# Usage: scripts/bench-virtio.sh [RUNS]     (default 1; medians reported)
# Env:   HX86_ACCEL (default dbt)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-1}"
accel="${HX86_ACCEL:-dbt}"
. scripts/bench-common.sh
cargo build --release -q
bench_linux_guest
g=$linux_guest
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
img=$work/disk.img
truncate -s 128M "$img"
# The file the guest fetches, served on the host's loopback.
head -c 16M /dev/urandom > "$work/blob"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
(cd "$work" && exec python3 -m http.server --bind 127.0.0.1 "$port" >/dev/null 2>&1) &
sleep 1

# In-guest commands (spaces as '+', see linux-guest.sh's hx86.cmd).
t0='echo+HX86-UPTIME-A+$(cat+/proc/uptime)'
t1='echo+HX86-UPTIME-B+$(cat+/proc/uptime)'
write="$t0;dd+if=/dev/zero+of=/dev/vda+bs=1M+count=64+oflag=direct;$t1"
read_="$t0;dd+if=/dev/vda+of=/dev/null+bs=1M+count=64+iflag=direct;$t1"
net="ifconfig+eth0+up;udhcpc+-i+eth0+-q+-n+-t+20;$t0;wget+-q+-O+/dev/null+http://10.0.2.2:$port/blob;$t1"

hx() {
    run_many "$runs" HX86-GUEST-DONE target/release/hx86 -accel "$accel" -m 512M \
        -kernel "$g/vmlinuz" -initrd "$g/initrd.gz" -no-reboot \
        -drive "file=$img,format=raw,if=virtio" -nic user,model=virtio-net-pci \
        -append "console=ttyS0 quiet hx86.virtio hx86.cmd=$1"
}
qm() {
    run_many "$runs" HX86-GUEST-DONE qemu-system-x86_64 -M pc -accel tcg -m 512M \
        -display none -monitor none -serial stdio -no-reboot \
        -kernel "$g/vmlinuz" -initrd "$g/initrd.gz" \
        -drive "file=$img,format=raw,if=virtio" -nic user,model=virtio-net-pci \
        -append "console=ttyS0 quiet hx86.virtio hx86.cmd=$1"
}
# MiB/s of MIB mebibytes moved in S seconds ("-" when it did not finish).
rate() {
    case "$2" in
        -1 | -) echo "-" ;;
        *) awk -v m="$1" -v s="$2" 'BEGIN { if (s <= 0) print "-"; else printf "%.1f\n", m / s }' ;;
    esac
}
have_qemu=0
command -v qemu-system-x86_64 >/dev/null && have_qemu=1
printf '%-28s %10s %10s %8s\n' "MiB/s (in-guest time)" "hx86" "qemu" "ratio"
for case in "disk write (64 MiB, direct):64:$write" "disk read (64 MiB, direct):64:$read_" \
    "network (wget 16 MiB):16:$net"; do
    name=${case%%:*}
    rest=${case#*:}
    mib=${rest%%:*}
    cmd=${rest#*:}
    read -r _ _ h < <(hx "$cmd")
    q=-1
    if [ "$have_qemu" = 1 ]; then
        read -r _ _ q < <(qm "$cmd")
    fi
    hr=$(rate "$mib" "$h")
    qr=$(rate "$mib" "$q")
    r="-"
    [ "$hr" != "-" ] && [ "$qr" != "-" ] && r=$(ratio "$hr" "$qr")
    printf '%-28s %10s %10s %8s\n' "$name" "$hr" "$qr" "$r"
done
echo "(hx86 -accel $accel vs qemu-system-x86_64 -M pc -accel tcg; ratio = hx86/QEMU; - = did not finish)"
