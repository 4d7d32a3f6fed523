#!/usr/bin/env bash
# Fetches Debian's stock kernel (linux-image-amd64) and busybox-static with
# `apt-get download` (no root needed) and builds an initramfs whose /init
# mounts proc/sys/dev, prints a marker, then either runs a shell on the
# console or runs the command given on the kernel command line
# (hx86.cmd=...), and powers off. The kernel's qemu_fw_cfg module is in
# /lib/modules (`insmod /lib/modules/qemu_fw_cfg.ko` shows fw_cfg under
# /sys/firmware/qemu_fw_cfg). With hx86.acpid on the command line /init
# first loads the ACPI button and evdev modules and starts busybox acpid,
# which turns the power button (QMP system_powerdown) into a power-off.
# With hx86.virtio /init loads the virtio drivers (PCI transport, blk,
# net, console, rng) and ext4 from /lib/modules/virtio, in dependency order
# (from the modules' own `depends=`), and prints HX86-VIRTIO-LOADED.
# `udhcpc -i eth0` configures a virtio-net card from DHCP
# (/etc/udhcpc/default.script: address, default route, resolv.conf).
# With hx86.root=DEV too it mounts DEV (ext4) and switch_roots to its
# /sbin/init (the disk's own init then prints the markers).
#
# Usage: scripts/linux-guest.sh [OUTDIR]      (default: guest/)
# Produces OUTDIR/vmlinuz and OUTDIR/initrd.gz; prints their paths.
# Boot:    hx86 -kernel guest/vmlinuz -initrd guest/initrd.gz -append "console=ttyS0"
set -euo pipefail

out="${1:-guest}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
work="$out/.work"

# Several test processes may ask for the guest at once: one builds it, the
# others wait for the lock and then find it built.
exec 9>"$out/.lock"
flock 9

# Bumped whenever the initramfs changes, so an older build is redone.
version=6
if [ -s "$out/vmlinuz" ] && [ -s "$out/initrd.gz" ] && [ -s "$out/busybox" ] \
    && [ "$(cat "$out/initrd.version" 2>/dev/null)" = "$version" ] \
    && [ "${REBUILD:-0}" != 1 ]; then
    echo "$out/vmlinuz"
    echo "$out/initrd.gz"
    exit 0
fi

rm -f "$out/initrd.version"
rm -rf "$work"
mkdir -p "$work/debs" "$work/root"
cd "$work/debs"

# The metapackage names the versioned kernel package; download that one.
kpkg="$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')"
if [ -z "$kpkg" ]; then
    echo "linux-guest.sh: cannot resolve linux-image-amd64 (run apt-get update?)" >&2
    exit 1
fi
apt-get download "$kpkg" busybox-static >&2
dpkg-deb -x "$(ls ${kpkg}_*.deb | head -1)" "$work/kernel"
dpkg-deb -x "$(ls busybox-static_*.deb | head -1)" "$work/busybox"
kimg="$(ls "$work"/kernel/boot/vmlinuz-* | head -1)"
cp "$kimg" "$out/vmlinuz.tmp"
mv "$out/vmlinuz.tmp" "$out/vmlinuz"
basename "$kimg" | sed 's/^vmlinuz-//' > "$out/kernel-release"
# The busybox the guest runs, so tests can compare checksums.
cp "$work/busybox/bin/busybox" "$out/busybox"

# The initramfs: busybox and an /init script.
r="$work/root"
mkdir -p "$r/bin" "$r/sbin" "$r/proc" "$r/sys" "$r/dev" "$r/tmp" "$r/etc" "$r/root" \
    "$r/lib/modules" "$r/etc/acpi/PWRF" "$r/var/log" "$r/var/run"
cp "$work/busybox/bin/busybox" "$r/bin/busybox"
for app in sh ash cat echo ls mount umount uname md5sum poweroff reboot halt \
           mkdir dmesg sleep ps grep head tail wc sync true false date \
           acpid insmod run-parts dd od hexdump cut tr sed cp mv rm ln touch \
           stat lsmod cmp xargs seq ip ifconfig route udhcpc wget nc httpd \
           switch_root chroot mknod stty; do
    ln -s busybox "$r/bin/$app"
done
# Modules the tests load (Debian builds these as modules). The power
# button: busybox acpid reads /dev/input/event* and runs
# /etc/acpi/PWRF/00000080 for KEY_POWER.
for m in drivers/firmware/qemu_fw_cfg.ko drivers/input/evdev.ko drivers/acpi/button.ko; do
    cp "$(ls -d "$work"/kernel/lib/modules/*/kernel | head -1)/$m" "$r/lib/modules/"
done
# The virtio drivers and ext4 with what they need, dependencies first:
# Debian's package has no modules.dep (depmod makes it on install), so the
# order comes from each module's .modinfo `depends=`. ext4 and jbd2 ask
# the crypto API for crc32c when mounting: crc32c_generic provides it.
kmods="$(ls -d "$work"/kernel/lib/modules/*/kernel | head -1)"
mkdir -p "$r/lib/modules/virtio"
python3 - "$kmods" virtio_pci virtio_blk virtio_net virtio_console virtio_rng \
    crc32c_generic ext4 <<'PY' > "$work/virtio.order"
import os, struct, sys
kdir, want = sys.argv[1], sys.argv[2:]
paths = {}
for dp, _, fs in os.walk(kdir):
    for f in fs:
        if f.endswith(".ko"):
            paths[f[:-3].replace("-", "_")] = os.path.join(dp, f)
def depends(path):
    b = open(path, "rb").read()
    shoff, = struct.unpack_from("<Q", b, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", b, 0x3a)
    secs = [struct.unpack_from("<IIQQQQIIQQ", b, shoff + i * shentsize) for i in range(shnum)]
    names = secs[shstrndx][4]
    for s in secs:
        name = b[names + s[0]:b.index(b"\0", names + s[0])]
        if name == b".modinfo":
            for kv in b[s[4]:s[4] + s[5]].split(b"\0"):
                if kv.startswith(b"depends="):
                    return [d for d in kv[8:].decode().split(",") if d]
    return []
order, seen = [], set()
def visit(m):
    m = m.replace("-", "_")
    if m in seen:
        return
    seen.add(m)
    if m not in paths:
        sys.exit("linux-guest.sh: module %s is not in the kernel package" % m)
    for d in depends(paths[m]):
        visit(d)
    order.append(paths[m])
for m in want:
    visit(m)
print("\n".join(order))
PY
while read -r ko; do
    cp "$ko" "$r/lib/modules/virtio/"
    basename "$ko" >> "$r/lib/modules/virtio/order"
done < "$work/virtio.order"
cat > "$r/etc/acpi/PWRF/00000080" <<'ACPI'
#!/bin/sh
echo "HX86-POWER-BUTTON" > /dev/console
sync
poweroff -f
ACPI
chmod +x "$r/etc/acpi/PWRF/00000080"
# udhcpc's event script (its default path): configures the interface it
# got a lease for, the default route and the resolver.
mkdir -p "$r/etc/udhcpc"
cat > "$r/etc/udhcpc/default.script" <<'DHCP'
#!/bin/sh
case "$1" in
deconfig) ifconfig "$interface" 0.0.0.0 up ;;
bound|renew)
    ifconfig "$interface" "$ip" netmask "${subnet:-255.255.255.0}" up
    for r in $router; do route add default gw "$r" dev "$interface"; break; done
    : > /etc/resolv.conf
    for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
    ;;
esac
exit 0
DHCP
chmod +x "$r/etc/udhcpc/default.script"
cat > "$r/init" <<'INIT'
#!/bin/sh
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
if grep -q hx86.acpid /proc/cmdline; then
    insmod /lib/modules/evdev.ko
    insmod /lib/modules/button.ko
    # acpid opens the event devices that exist when it starts: wait for
    # devtmpfs to show every one the kernel registered.
    want=$(grep -c 'Handlers=.*event' /proc/bus/input/devices)
    n=0
    while [ "$(ls /dev/input 2>/dev/null | grep -c event)" -lt "$want" ] && [ $n -lt 50 ]; do
        sleep 1
        n=$((n+1))
    done
    acpid -l /dev/null
    echo "HX86-ACPID-READY"
fi
if grep -q hx86.virtio /proc/cmdline; then
    for m in $(cat /lib/modules/virtio/order); do
        insmod "/lib/modules/virtio/$m" || echo "HX86-INSMOD-FAILED $m"
    done
    echo "HX86-VIRTIO-LOADED"
fi
root="$(sed -n 's/.*hx86\.root=\([^ ]*\).*/\1/p' /proc/cmdline)"
if [ -n "$root" ]; then
    n=0
    while [ ! -b "$root" ] && [ $n -lt 30 ]; do sleep 1; n=$((n+1)); done
    mkdir -p /newroot
    mount -t ext4 "$root" /newroot && exec switch_root /newroot /sbin/init
    echo "HX86-ROOT-FAILED $root"
fi
echo "HX86-GUEST-READY $(uname -r)"
cmd="$(sed -n 's/.*hx86\.cmd=\([^ ]*\).*/\1/p' /proc/cmdline | tr '+' ' ')"
if [ -n "$cmd" ]; then
    sh -c "$cmd"
else
    setsid sh -c 'exec sh </dev/ttyS0 >/dev/ttyS0 2>&1' || sh
fi
echo "HX86-GUEST-DONE"
poweroff -f
INIT
chmod +x "$r/init"
# A newc cpio archive, written by Python so no cpio binary is needed;
# owners root, mtimes 0: the same inputs give the same bytes.
python3 - "$r" <<'PY' | gzip -9 -n > "$out/initrd.gz.tmp"
import os, stat, sys
root = sys.argv[1]
out = sys.stdout.buffer
ino = [0]
def entry(name, mode, data=b""):
    ino[0] += 1
    nm = name.encode() + b"\0"
    hdr = "070701" + "".join("%08x" % v for v in (
        ino[0], mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nm), 0))
    out.write(hdr.encode() + nm + b"\0" * ((-(110 + len(nm))) % 4))
    out.write(data + b"\0" * ((-len(data)) % 4))
for dirpath, dirs, files in os.walk(root):
    dirs.sort()
    rel = os.path.relpath(dirpath, root)
    if rel != ".":
        entry(rel, stat.S_IFDIR | 0o755)
    for f in sorted(files):
        p = os.path.join(dirpath, f)
        name = os.path.normpath(os.path.join(rel, f))
        st = os.lstat(p)
        if stat.S_ISLNK(st.st_mode):
            entry(name, stat.S_IFLNK | 0o777, os.readlink(p).encode())
        else:
            entry(name, stat.S_IFREG | (st.st_mode & 0o777), open(p, "rb").read())
entry("TRAILER!!!", 0)
PY
mv "$out/initrd.gz.tmp" "$out/initrd.gz"
echo "$version" > "$out/initrd.version"
rm -rf "$work"
echo "$out/vmlinuz"
echo "$out/initrd.gz"
