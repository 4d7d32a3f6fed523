//! The transport driven as a driver drives it (see `test_driver.rs`), with
//! virtio-rng behind it.

use super::super::feature;
use super::super::msix::NO_VECTOR;
use super::super::pci_common::status;
use super::super::rng::VirtioRng;
use super::super::test_driver::*;
use crate::pci::PciFunction;

const RNG_FEATURES: u64 = feature::VERSION_1 | feature::RING_EVENT_IDX;

fn rng() -> Driver {
    Driver::new(Box::new(VirtioRng::new()))
}

/// Negotiated, MSI-X on, queue 0 at 0x8000 (size 8, vector 1), DRIVER_OK.
fn live_rng(features: u64) -> (Driver, Rings) {
    let mut d = rng();
    d.enable_msix(2);
    assert!(d.negotiate(features));
    d.set_common(0x10, 2, 0);
    let r = Rings::at(0x8000, 8);
    d.setup_queue(0, r, 1);
    d.driver_ok();
    assert_eq!(d.status() & status::NEEDS_RESET, 0);
    (d, r)
}

#[test]
fn identity_and_capabilities_are_qemus() {
    let mut d = rng();
    assert_eq!(d.cfg16(0x00), 0x1af4);
    assert_eq!(d.cfg16(0x02), 0x1044);
    assert_eq!(d.cfg8(0x08), 1, "revision");
    assert_eq!(d.cfg32(0x08) >> 8, 0x00ff00, "class");
    assert_eq!(d.cfg16(0x2c), 0x1af4);
    assert_eq!(d.cfg16(0x2e), 0x1100);
    assert_eq!(d.cfg8(0x3d), 1, "INTA");
    assert_eq!(d.cfg8(0x3c), 10, "interrupt line");
    // BAR4 is 64-bit prefetchable memory, BAR1 32-bit memory.
    assert_eq!(d.cfg32(0x20) & 0xf, 0xc);
    assert_eq!(d.bar(4), VIRTIO_BASE);
    assert_eq!(d.bar(1), MSIX_BASE);
    // Sizing BAR4 (64-bit): 16 KiB.
    d.f.config_write(0x20, &[0xff; 4]);
    d.f.config_write(0x24, &[0xff; 4]);
    assert_eq!(d.cfg32(0x20), 0xffff_c00c);
    assert_eq!(d.cfg32(0x24), 0xffff_ffff);
    d.f.config_write(0x20, &(VIRTIO_BASE as u32).to_le_bytes());
    d.f.config_write(0x24, &[0; 4]);
    assert_eq!(d.bar(4), VIRTIO_BASE);
    let c = &d.caps;
    assert_eq!(c.common, VIRTIO_BASE);
    assert_eq!(c.isr, VIRTIO_BASE + 0x1000);
    assert_eq!(c.device, VIRTIO_BASE + 0x2000);
    assert_eq!(c.notify, VIRTIO_BASE + 0x3000);
    assert_eq!(c.notify_mult, 4);
    assert_ne!(c.pci_cfg, 0);
    let m = c.msix;
    assert_eq!(d.cfg16(m + 2) & 0x7ff, 1, "two vectors: config + queue");
    assert_eq!(d.cfg32(m + 4), 1, "table in BAR1 at 0");
    assert_eq!(d.cfg32(m + 8), 0x801, "PBA in BAR1 at 0x800");
    // Features: the transport's bits are offered, num_queues is 1.
    let f = d.device_features();
    assert_eq!(
        f,
        feature::VERSION_1 | feature::RING_EVENT_IDX | feature::RING_INDIRECT_DESC
    );
    assert_eq!(d.common(0x12, 2), 1);
    d.set_common(0x16, 2, 0);
    assert_eq!(d.common(0x18, 2), 256, "queue 0's maximum size");
    d.set_common(0x16, 2, 1);
    assert_eq!(d.common(0x18, 2), 0, "no queue 1");
}

#[test]
fn a_request_is_served_with_an_msix_message() {
    let (d, r) = live_rng(RNG_FEATURES);
    assert_eq!(d.common(0x16, 2), 0);
    assert_eq!(d.common(0x1a, 2), 1, "queue vector reads back");
    d.desc(r.desc, 0, 0x1_0000, 64, F_WRITE, 0);
    d.desc(r.desc, 1, 0x1_1000, 16, F_WRITE | F_NEXT, 2);
    d.desc(r.desc, 2, 0x1_1010, 16, F_WRITE, 0);
    d.offer(r, &[0, 1]);
    d.written.lock().unwrap().clear();
    d.notify(0);
    assert_eq!(d.used(r), (2, vec![(0, 64), (1, 32)]));
    let mut buf = [0u8; 64];
    d.ram.read(0x1_0000, &mut buf).unwrap();
    assert_ne!(buf, [0u8; 64], "entropy written");
    // The data and the used ring went through the DBT's hook.
    let w = d.written.lock().unwrap().clone();
    assert!(w.contains(&(0x1_0000, 64)), "{w:x?}");
    assert!(w.iter().any(|&(a, _)| a == r.used), "{w:x?}");
    assert_eq!(d.msi.take(), vec![(MSI_ADDR, msi_data(1))]);
    assert!(d.intx.levels().is_empty(), "no INTx with MSI-X");
}

#[test]
fn event_idx_suppresses_interrupts_the_driver_did_not_ask_for() {
    let (d, r) = live_rng(RNG_FEATURES);
    // used_event (after the avail ring) = 5: interrupt only when used
    // index passes 5.
    let used_event = r.avail + 4 + 2 * u64::from(r.size);
    for i in 0..8 {
        d.desc(r.desc, i, 0x1_0000 + 0x100 * u64::from(i), 8, F_WRITE, 0);
    }
    use vm_memory::{Bytes, GuestAddress};
    d.mem.write_obj(5u16, GuestAddress(used_event)).unwrap();
    d.offer(r, &[0, 1]);
    d.notify(0);
    assert_eq!(d.used(r).0, 2);
    assert!(d.msi.take().is_empty(), "used_event 5 not reached");
    d.offer(r, &[2, 3, 4, 5]);
    d.notify(0);
    assert_eq!(d.used(r).0, 6);
    assert_eq!(d.msi.take().len(), 1);
    // The device published avail_event (after the used ring): the driver
    // notifies again once it makes buffer 6 available.
    let avail_event: u16 = d
        .mem
        .read_obj(GuestAddress(r.used + 4 + 8 * u64::from(r.size)))
        .unwrap();
    assert_eq!(avail_event, 6);
}

#[test]
fn workers_signalling_while_a_vcpu_notifies_do_not_deadlock() {
    use super::super::VirtioInterrupt;
    let (d, r) = live_rng(feature::VERSION_1);
    let irq = d.f.interrupt();
    let worker = std::thread::spawn(move || {
        for _ in 0..20_000 {
            irq.signal_used_queue(0);
            irq.signal_config_change();
        }
    });
    d.desc(r.desc, 0, 0x1_0000, 8, F_WRITE, 0);
    for i in 0..2_000u16 {
        d.offer(r, &[0]);
        d.notify(0);
        // Mask and unmask vector 1 meanwhile (the MSI-X lock).
        d.write(MSIX_BASE + 16 + 12, 4, u64::from(i & 1));
    }
    worker.join().unwrap();
    d.write(MSIX_BASE + 16 + 12, 4, 0);
    assert_eq!(d.used(r).0, 2_000);
    assert_eq!(d.read(MSIX_BASE + 0x800, 4), 0, "nothing left pending");
}

#[test]
fn intx_and_the_isr_without_msix() {
    let mut d = rng();
    let cmd = d.cfg16(0x04) | 4;
    d.f.config_write(0x04, &cmd.to_le_bytes());
    assert!(d.negotiate(feature::VERSION_1));
    let r = Rings::at(0x8000, 4);
    d.setup_queue(0, r, NO_VECTOR);
    d.driver_ok();
    d.desc(r.desc, 0, 0x1_0000, 8, F_WRITE, 0);
    d.offer(r, &[0]);
    d.notify(0);
    assert_eq!(d.used(r).0, 1);
    assert_eq!(d.intx.levels(), vec![true]);
    assert_eq!(d.isr(), 1, "queue interrupt");
    assert_eq!(d.intx.levels(), vec![true, false], "reading the ISR clears");
    assert_eq!(d.isr(), 0);
    // INTx disable in the command register holds the line low.
    let cmd = d.cfg16(0x04) | 0x400;
    d.f.config_write(0x04, &cmd.to_le_bytes());
    d.offer(r, &[0]);
    d.notify(0);
    assert_eq!(d.intx.levels(), vec![true, false]);
    assert_eq!(d.isr(), 1);
    assert!(d.msi.take().is_empty());
}

#[test]
fn masked_vectors_set_pending_bits_and_fire_on_unmask() {
    // Without EVENT_IDX: every used buffer interrupts.
    let (mut d, r) = live_rng(feature::VERSION_1);
    let entry1_ctrl = MSIX_BASE + 16 + 12;
    let pba = MSIX_BASE + 0x800;
    d.write(entry1_ctrl, 4, 1);
    d.desc(r.desc, 0, 0x1_0000, 8, F_WRITE, 0);
    d.offer(r, &[0]);
    d.notify(0);
    assert_eq!(d.used(r).0, 1);
    assert!(d.msi.take().is_empty(), "masked");
    assert_eq!(d.read(pba, 4), 2, "vector 1 pending");
    d.write(entry1_ctrl, 4, 0);
    assert_eq!(d.msi.take(), vec![(MSI_ADDR, msi_data(1))]);
    assert_eq!(d.read(pba, 4), 0);
    // The function mask holds every vector.
    let m = d.caps.msix;
    let ctl = d.cfg16(m + 2);
    d.f.config_write(m + 2, &(ctl | 0x4000).to_le_bytes());
    d.offer(r, &[0]);
    d.notify(0);
    assert!(d.msi.take().is_empty());
    assert_eq!(d.read(pba, 4), 2);
    d.f.config_write(m + 2, &(ctl & !0x4000).to_le_bytes());
    assert_eq!(d.msi.take(), vec![(MSI_ADDR, msi_data(1))]);
    // Table entries read back; reserved vector-control bits stay 0.
    d.write(entry1_ctrl, 4, 0xffff_fffe);
    assert_eq!(d.read(entry1_ctrl, 4), 0);
    assert_eq!(d.read(MSIX_BASE + 16 + 8, 4), u64::from(msi_data(1)));
}

#[test]
fn reset_returns_everything_to_its_initial_state() {
    let (d, r) = live_rng(RNG_FEATURES);
    d.set_status(0);
    assert_eq!(d.status(), 0);
    assert_eq!(d.common(0x10, 2), u64::from(NO_VECTOR));
    d.set_common(0x16, 2, 0);
    assert_eq!(d.common(0x1a, 2), u64::from(NO_VECTOR));
    assert_eq!(d.common(0x1c, 2), 0, "queue disabled");
    assert_eq!(d.common(0x18, 2), 256, "size back to the maximum");
    assert_eq!(d.common(0x20, 8), 0);
    // A notify now does nothing.
    d.desc(r.desc, 0, 0x1_0000, 8, F_WRITE, 0);
    d.offer(r, &[0]);
    d.notify(0);
    assert_eq!(d.used(r).0, 0);
    assert!(d.msi.take().is_empty());
    // And the device starts again.
    assert!(d.negotiate(RNG_FEATURES));
    let r = Rings::at(0x9000, 8);
    d.setup_queue(0, r, 1);
    d.driver_ok();
    d.desc(r.desc, 0, 0x1_0000, 8, F_WRITE, 0);
    d.offer(r, &[0]);
    d.notify(0);
    assert_eq!(d.used(r), (1, vec![(0, 8)]));
}

#[test]
fn features_the_device_did_not_offer_or_without_version_1_are_refused() {
    let d = rng();
    assert!(!d.negotiate(0), "no VERSION_1");
    assert!(!d.negotiate(feature::VERSION_1 | 1 << 40));
    assert!(d.negotiate(feature::VERSION_1 | feature::RING_INDIRECT_DESC));
    // DRIVER_OK without FEATURES_OK: NEEDS_RESET.
    let d = rng();
    d.set_status(status::ACKNOWLEDGE | status::DRIVER);
    d.driver_ok();
    assert_ne!(d.status() & status::NEEDS_RESET, 0);
}

/// Sets up queue 0 with `tweak` applied to what the driver programs, then
/// DRIVER_OK: the device must refuse to start with NEEDS_RESET and a
/// configuration interrupt.
fn refused(tweak: impl Fn(&Driver)) {
    let mut d = rng();
    d.enable_msix(2);
    assert!(d.negotiate(RNG_FEATURES));
    d.set_common(0x10, 2, 0);
    d.setup_queue(0, Rings::at(0x8000, 8), 1);
    tweak(&d);
    d.driver_ok();
    assert_ne!(d.status() & status::NEEDS_RESET, 0);
    assert_eq!(d.msi.take(), vec![(MSI_ADDR, msi_data(0))]);
    assert_eq!(d.common(0x15, 1), 1, "config generation moved");
    // Reset clears it.
    d.set_status(0);
    assert_eq!(d.status(), 0);
}

#[test]
fn bad_queue_setups_give_needs_reset() {
    // Not a power of two; larger than the maximum; zero.
    for size in [3u64, 512, 0] {
        refused(|d| d.set_common(0x18, 2, size));
    }
    // Rings outside guest RAM or misaligned.
    refused(|d| d.set_common(0x20, 4, RAM - 16));
    refused(|d| d.set_common(0x24, 4, 0x10));
    refused(|d| d.set_common(0x30, 4, 0x8002));
    refused(|d| d.set_common(0x20, 4, 0x8008));
}

#[test]
fn notify_of_absent_or_disabled_queues_and_odd_accesses_are_harmless() {
    let (d, r) = live_rng(RNG_FEATURES);
    d.notify(1);
    d.write(d.caps.notify + 0xffc, 4, 0xffff_ffff);
    // Odd-sized and unaligned accesses to the common config are ignored.
    d.write(d.caps.common + 0x15, 2, 0xffff);
    d.write(d.caps.common + 0x13, 4, 0xffff_ffff);
    d.write(d.caps.common + 0x100, 4, 1);
    assert_eq!(d.common(0x100, 4), 0);
    assert_eq!(d.status() & status::DRIVER_OK, status::DRIVER_OK);
    assert_eq!(d.used(r).0, 0);
    // Device config of virtio-rng is empty; the ISR and unused BAR space
    // read 0.
    assert_eq!(d.read(d.caps.device, 8), 0);
    assert_eq!(d.read(VIRTIO_BASE + 0x1001, 1), 0);
    d.write(VIRTIO_BASE + 0x1000, 4, 0xff);
}

#[test]
fn the_pci_configuration_access_capability_reaches_the_bar() {
    let mut d = rng();
    let c = d.caps.pci_cfg;
    // bar = 4, offset = 4 (device_feature), length = 4.
    d.f.config_write(c + 4, &[4]);
    d.f.config_write(c + 8, &4u32.to_le_bytes());
    d.f.config_write(c + 12, &4u32.to_le_bytes());
    // device_feature_select = 1 through the window too.
    d.f.config_write(c + 8, &0u32.to_le_bytes());
    d.f.config_write(c + 16, &1u32.to_le_bytes());
    assert_eq!(d.common(0, 4), 1);
    d.f.config_write(c + 8, &4u32.to_le_bytes());
    assert_eq!(d.cfg32(c + 16), 1, "VERSION_1 is bit 32");
    // A bad window (length 3, other BAR) reads 0 and writes nothing.
    d.f.config_write(c + 12, &3u32.to_le_bytes());
    assert_eq!(d.cfg32(c + 16), 0);
    d.f.config_write(c + 12, &4u32.to_le_bytes());
    d.f.config_write(c + 4, &[1]);
    assert_eq!(d.cfg32(c + 16), 0);
}

#[test]
fn a_machine_reset_stops_the_device_and_turns_msix_off() {
    let (mut d, r) = live_rng(feature::VERSION_1);
    let m = d.caps.msix;
    // Leave vector 1 pending (masked) before the reset.
    d.write(MSIX_BASE + 16 + 12, 4, 1);
    d.desc(r.desc, 0, 0x1_0000, 8, F_WRITE, 0);
    d.offer(r, &[0]);
    d.notify(0);
    assert_eq!(d.read(MSIX_BASE + 0x800, 4), 2);
    d.f.reset();
    assert_eq!(d.status(), 0);
    assert_eq!(d.cfg16(m + 2), 1, "MSI-X off, table size kept");
    assert_eq!(d.read(MSIX_BASE + 0x800, 4), 0, "nothing pending");
    assert_eq!(d.read(MSIX_BASE + 16 + 12, 4), 1, "vectors masked");
    assert_eq!(d.read(MSIX_BASE + 8, 4), 0, "table cleared");
    assert_eq!(d.bar(4), VIRTIO_BASE, "BARs stay where they were put");
    d.offer(r, &[0]);
    d.notify(0);
    assert_eq!(d.used(r).0, 1, "nothing served after the reset");
    assert!(d.msi.take().is_empty());
}

/// Random register writes and reads everywhere (configuration space, both
/// BARs, any size and offset) with a live queue over random ring contents:
/// the transport and virtio-rng must neither panic nor touch memory outside
/// guest RAM (GuestRam refuses it).
#[test]
fn random_register_traffic_never_panics() {
    use vm_memory::{Bytes, GuestAddress};
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _round in 0..20 {
        let (mut d, r) = live_rng(RNG_FEATURES);
        // Random rings and descriptors.
        let mut junk = vec![0u8; 0x400];
        for b in junk.iter_mut() {
            *b = next() as u8;
        }
        d.mem.write_slice(&junk, GuestAddress(r.desc)).unwrap();
        for _ in 0..2000 {
            let v = next();
            let len = [1usize, 2, 4, 8][(v & 3) as usize];
            match (v >> 2) % 4 {
                0 => {
                    let off = ((v >> 8) & 0xff) as u8;
                    let data = (v >> 16).to_le_bytes();
                    let n = len.min(4 - usize::from(off & 3));
                    d.f.config_write(off, &data[..n]);
                    d.f.config_read(off & 0xfc);
                }
                // The BARs may have moved or stopped decoding: raw accesses.
                1 => {
                    let a = MSIX_BASE + ((v >> 8) & 0xfff);
                    d.mmio.write(a, &(v >> 20).to_le_bytes()[..len]);
                    d.mmio.read(a, &mut [0u8; 8][..len]);
                }
                _ => {
                    let a = VIRTIO_BASE + ((v >> 8) & 0x3fff);
                    d.mmio.write(a, &(v >> 24).to_le_bytes()[..len]);
                    d.mmio.read(a, &mut [0u8; 8][..len]);
                }
            }
        }
        // Whatever state it is in, a reset brings it back.
        d.f.assign(super::super::pci::VIRTIO_BAR, VIRTIO_BASE);
        d.set_status(0);
        assert_eq!(d.status(), 0);
    }
}
