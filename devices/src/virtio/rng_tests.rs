//! virtio-rng through the transport, with malformed chains.

use super::super::feature;
use super::super::pci_common::status;
use super::super::test_driver::*;
use super::*;

fn live(features: u64, size: u16) -> (Driver, Rings) {
    let mut d = Driver::new(Box::new(VirtioRng::new()));
    d.enable_msix(2);
    assert!(d.negotiate(features));
    let r = Rings::at(0x8000, size);
    d.setup_queue(0, r, 1);
    d.driver_ok();
    (d, r)
}

const F: u64 = feature::VERSION_1 | feature::RING_INDIRECT_DESC;

#[test]
fn indirect_descriptors_are_filled() {
    let (d, r) = live(F, 8);
    let table = 0x2_0000;
    d.desc(table, 0, 0x3_0000, 100, F_WRITE | F_NEXT, 1);
    d.desc(table, 1, 0x3_1000, 28, F_WRITE, 0);
    d.desc(r.desc, 0, table, 32, F_INDIRECT, 0);
    d.offer(r, &[0]);
    d.notify(0);
    assert_eq!(d.used(r), (1, vec![(0, 128)]));
}

#[test]
fn malformed_chains_are_dropped_without_writing() {
    let (d, r) = live(F, 8);
    // Outside RAM; device-readable; half in RAM.
    d.desc(r.desc, 0, RAM + 0x1000, 16, F_WRITE, 0);
    d.desc(r.desc, 1, 0x1_0000, 16, 0, 0);
    d.desc(r.desc, 2, RAM - 8, 16, F_WRITE, 0);
    // A loop: 3 -> 4 -> 3 ...
    d.desc(r.desc, 3, 0x1_1000, 16, F_WRITE | F_NEXT, 4);
    d.desc(r.desc, 4, 0x1_2000, 16, F_WRITE | F_NEXT, 3);
    // A next index beyond the queue.
    d.desc(r.desc, 5, 0x1_3000, 16, F_WRITE | F_NEXT, 200);
    // Zero length.
    d.desc(r.desc, 6, 0x1_4000, 0, F_WRITE, 0);
    d.offer(r, &[0, 1, 2, 3, 4, 5, 6]);
    d.notify(0);
    let (idx, used) = d.used(r);
    assert_eq!(idx, 7);
    assert_eq!(used[0], (0, 0));
    assert_eq!(used[1], (1, 0));
    assert_eq!(used[2], (2, 0));
    // The loop ends after the queue size's worth of descriptors.
    assert_eq!(used[3], (3, 16 * 8));
    assert_eq!(used[4], (4, 16 * 8));
    assert_eq!(used[5], (5, 16));
    assert_eq!(used[6], (6, 0));
    let mut b = [0u8; 16];
    d.ram.read(0x1_0000, &mut b).unwrap();
    assert_eq!(b, [0; 16], "device-readable buffer untouched");
    assert_eq!(d.status() & status::NEEDS_RESET, 0);
}

#[test]
fn huge_buffers_get_at_most_max_request_bytes() {
    let (d, r) = live(F, 8);
    d.desc(r.desc, 0, 0x1_0000, 0x8_0000, F_WRITE, 0);
    d.offer(r, &[0]);
    d.notify(0);
    assert_eq!(d.used(r), (1, vec![(0, MAX_REQUEST as u32)]));
}

#[test]
fn an_available_index_beyond_the_queue_gives_needs_reset() {
    let (d, r) = live(F, 8);
    use vm_memory::{Bytes, GuestAddress};
    d.mem.write_obj(100u16, GuestAddress(r.avail + 2)).unwrap();
    d.notify(0);
    assert_eq!(d.used(r).0, 0);
    assert_ne!(d.status() & status::NEEDS_RESET, 0);
    assert!(d.msi.take().is_empty(), "config vector was never set");
    // Nothing more is served until a reset.
    d.mem.write_obj(1u16, GuestAddress(r.avail + 2)).unwrap();
    d.desc(r.desc, 0, 0x1_0000, 8, F_WRITE, 0);
    d.notify(0);
    assert_eq!(d.used(r).0, 0);
}
