//! Debian's kernel with virtio devices (scripts/linux-guest.sh's initramfs
//! loads the virtio drivers for `hx86.virtio`), under the DBT.
//!
//! virtio-rng: Linux's virtio_pci binds the modern transport, virtio_rng
//! becomes the hw_random source, /dev/hwrng gives bytes, and the queue's
//! interrupts arrive as MSI-X messages; with `pci=nomsi` they arrive on
//! INTx instead (the DSDT's `_PRT`), two devices sharing one line.

mod common;

use common::linux::{
    assert_virtio_loaded, boot_and_drive, guest, marker, tail_of, BOOT_TIMEOUT, ONE_AT_A_TIME,
};

#[test]
fn debian_linux_reads_entropy_from_virtio_rng_with_msix_interrupts() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(g) = guest() else { return };
    // Markers are computed by the shell ($((1+1))), so the echoed command
    // lines never match them.
    let cmds = "d=/sys/bus/pci/devices/0000:00:02.0\n\
        echo \"PCI-$((1+1))=$(cat $d/vendor):$(cat $d/device):$(cat $d/class):$(basename $(readlink $d/driver))\"\n\
        echo \"RNG-$((1+1))=$(cat /sys/class/misc/hw_random/rng_current)\"\n\
        head -c 4096 /dev/hwrng > /tmp/a; head -c 4096 /dev/hwrng > /tmp/b\n\
        echo \"BYTES-$((1+1))=$(wc -c < /tmp/a) $(wc -c < /tmp/b)\"\n\
        echo \"NONZERO-$((1+1))=$(tr -d '\\000' < /tmp/a | wc -c)\"\n\
        cmp -s /tmp/a /tmp/b || echo \"DIFFER-$((1+1))\"\n\
        grep virtio /proc/interrupts\n\
        poweroff -f\n";
    let (status, out) = boot_and_drive(
        "dbt",
        &g,
        &["-device", "virtio-rng-pci"],
        "hx86.virtio",
        cmds,
        BOOT_TIMEOUT,
    );
    let tail = tail_of(&out);
    assert_virtio_loaded(&out);
    let value = |key: &str| marker(&out, key);
    assert_eq!(value("PCI"), "0x1af4:0x1044:0x00ff00:virtio-pci", "{tail}");
    assert_eq!(value("RNG"), "virtio_rng.0", "{tail}");
    assert_eq!(value("BYTES"), "4096 4096", "{tail}");
    // 4096 random bytes hold about 16 zeros; a device writing nothing
    // would leave 0 non-zero bytes.
    let nonzero: usize = value("NONZERO").parse().unwrap();
    assert!(nonzero > 3900, "{nonzero} non-zero bytes of 4096\n{tail}");
    assert!(
        out.contains("DIFFER-2"),
        "two reads gave the same bytes\n{tail}"
    );
    // The queue's vector fired: "25: 67 PCI-MSI 32769-edge virtio0-input".
    let irq = out
        .lines()
        .find(|l| l.contains("PCI-MSI") && l.trim_end().ends_with("virtio0-input"))
        .unwrap_or_else(|| panic!("no virtio0-input MSI-X interrupt\n{tail}"));
    let count: u64 = irq.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(count > 0, "{irq}\n{tail}");
    assert!(
        out.lines()
            .any(|l| l.contains("PCI-MSI") && l.trim_end().ends_with("virtio0-config")),
        "a configuration vector too\n{tail}"
    );
    assert_eq!(status, Some(0), "poweroff -f should exit 0\n{tail}");
}

/// `pci=nomsi`: the INTx fallback. Slots 2 and 3 both route INTA to GSI 11
/// (the DSDT's `_PRT`, QEMU's PIIX wiring), so the two devices share one
/// level-triggered line; each is made the hw_random source in turn.
#[test]
fn debian_linux_uses_virtio_rng_on_a_shared_intx_line_without_msi() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(g) = guest() else { return };
    let cmds = "r=/sys/class/misc/hw_random/rng_current\n\
        head -c 8192 /dev/hwrng > /tmp/a\n\
        echo virtio_rng.1 > $r\n\
        echo \"RNG-$((1+1))=$(cat $r)\"\n\
        head -c 8192 /dev/hwrng > /tmp/b\n\
        echo \"BYTES-$((1+1))=$(wc -c < /tmp/a) $(wc -c < /tmp/b)\"\n\
        cmp -s /tmp/a /tmp/b || echo \"DIFFER-$((1+1))\"\n\
        grep -E 'virtio|MSI' /proc/interrupts\n\
        poweroff -f\n";
    let (status, out) = boot_and_drive(
        "dbt",
        &g,
        &["-device", "virtio-rng-pci", "-device", "virtio-rng-pci"],
        "hx86.virtio pci=nomsi",
        cmds,
        BOOT_TIMEOUT,
    );
    let tail = tail_of(&out);
    let value = |key: &str| {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{key}-2=")))
            .unwrap_or_else(|| panic!("no {key} line\n{tail}"))
            .trim()
            .to_string()
    };
    assert_eq!(value("RNG"), "virtio_rng.1", "{tail}");
    assert_eq!(value("BYTES"), "8192 8192", "{tail}");
    assert!(out.contains("DIFFER-2"), "{tail}");
    // " 11:  1604  IO-APIC  11-fasteoi   virtio0, virtio1"
    let irq = out
        .lines()
        .find(|l| l.contains("IO-APIC") && l.trim_end().ends_with("virtio0, virtio1"))
        .unwrap_or_else(|| panic!("no shared INTx line for virtio0 and virtio1\n{tail}"));
    assert!(irq.contains(" 11-fasteoi"), "{irq}");
    let count: u64 = irq.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(count > 0, "{irq}\n{tail}");
    assert!(!out.contains("PCI-MSI"), "no MSI with pci=nomsi\n{tail}");
    assert_eq!(status, Some(0), "poweroff -f should exit 0\n{tail}");
}
