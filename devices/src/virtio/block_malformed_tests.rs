//! virtio-blk against malformed chains (each gets a status or
//! NEEDS_RESET, never a panic, a hang or an access outside guest RAM),
//! EVENT_IDX, and the worker's lifecycle.

use virtio_bindings::virtio_blk::*;

use super::block::{BlockOptions, QUEUE_SIZE};
use super::block_image;
use super::block_rig::*;
use super::{feature, VirtioDevice};

#[test]
fn event_idx_suppresses_interrupts() {
    let img = TempImage::new(&pattern(8));
    let image = block_image::open(&img.opts()).unwrap();
    let features = feature::VERSION_1 | feature::RING_EVENT_IDX;
    let mut r = Rig::with_backend(image.backend, &BlockOptions::default(), features);
    // used_event (after the available ring) = 0: interrupt for the first only.
    // (The device signals after it updates the used index, so each wait
    // is for the signal count; a wrong extra signal shows as a count
    // above the expected one at the next check.)
    let used_event = AVAIL + 4 + 2 * u64::from(QUEUE_SIZE);
    r.ram.write(used_event, &0u16.to_le_bytes()).unwrap();
    r.request(VIRTIO_BLK_T_IN, 0, &[], 512);
    r.wait_signals(1);
    r.request(VIRTIO_BLK_T_IN, 0, &[], 512);
    // used_event = 2: the driver wants to hear when entry 2 is used.
    r.ram.write(used_event, &2u16.to_le_bytes()).unwrap();
    r.request(VIRTIO_BLK_T_IN, 0, &[], 512);
    r.wait_signals(2);
    r.ram.write(used_event, &3u16.to_le_bytes()).unwrap();
    r.request(VIRTIO_BLK_T_IN, 0, &[], 512);
    r.wait_signals(3);
    assert_eq!(r.signals(), 3);
}

/// Submits a malformed chain set up by `setup` on a fresh device and
/// returns what the device did (plus the status byte).
fn malformed(setup: impl FnOnce(&mut Rig) -> u16) -> (Outcome, u8) {
    let mut r = Rig::new(&pattern(16));
    r.header(VIRTIO_BLK_T_IN, 0);
    let head = setup(&mut r);
    let out = r.submit(head);
    let st = r.status();
    // The device keeps working (or works again after a reset).
    if out == Outcome::NeedsReset {
        r.dev.queue_notify(0);
        r.dev.reset();
        r.activate(feature::VERSION_1);
    }
    assert_eq!(
        r.request(VIRTIO_BLK_T_IN, 1, &[], 512).2,
        &pattern(16)[512..1024]
    );
    (out, st)
}

#[test]
fn malformed_chains_get_an_error_or_needs_reset() {
    use Outcome::*;
    let nr = |o: (Outcome, u8)| o.0 == NeedsReset;
    // Header device-writable (no readable part).
    assert!(nr(malformed(|r| {
        r.chain_at(DESC, &[(HDR, 16, F_WRITE), (STATUS, 1, F_WRITE)]);
        0
    })));
    // Status device-readable (no writable part).
    assert!(nr(malformed(|r| {
        r.chain_at(DESC, &[(HDR, 16, 0), (DATA, 512, 0), (STATUS, 1, 0)]);
        0
    })));
    // Header too short.
    assert!(nr(malformed(|r| {
        r.chain_at(DESC, &[(HDR, 8, 0), (STATUS, 1, F_WRITE)]);
        0
    })));
    // Data outside guest RAM; a length that wraps the address space.
    for (addr, len) in [(RAM - 256, 512), (u64::MAX - 100, 512), (1 << 40, 4096)] {
        assert!(nr(malformed(|r| {
            r.chain_at(
                DESC,
                &[(HDR, 16, 0), (addr, len, F_WRITE), (STATUS, 1, F_WRITE)],
            );
            0
        })));
    }
    // Zero length.
    assert!(nr(malformed(|r| {
        r.chain_at(
            DESC,
            &[(HDR, 16, 0), (DATA, 0, F_WRITE), (STATUS, 1, F_WRITE)],
        );
        0
    })));
    // A loop: 0 -> 1 -> 0.
    assert!(nr(malformed(|r| {
        r.desc_at(DESC, 0, HDR, 16, F_NEXT, 1);
        r.desc_at(DESC, 1, STATUS, 1, F_NEXT | F_WRITE, 0);
        0
    })));
    // NEXT beyond the table; a head beyond the queue size.
    assert!(nr(malformed(|r| {
        r.desc_at(DESC, 0, HDR, 16, F_NEXT, QUEUE_SIZE + 5);
        0
    })));
    assert!(nr(malformed(|_| QUEUE_SIZE + 1)));
    // An indirect table of a length that is not whole descriptors, one
    // outside RAM, and one that nests another.
    for (addr, len) in [(INDIRECT, 20), (RAM + 0x1000, 64)] {
        assert!(nr(malformed(|r| {
            r.desc_at(DESC, 0, addr, len, F_INDIRECT, 0);
            0
        })));
    }
    assert!(nr(malformed(|r| {
        r.desc_at(INDIRECT, 0, HDR, 16, F_NEXT, 1);
        r.desc_at(INDIRECT, 1, INDIRECT, 32, F_INDIRECT, 0);
        r.desc_at(DESC, 0, INDIRECT, 32, F_INDIRECT, 0);
        0
    })));
    // Data into ROM: the request fails with IOERR, the device goes on.
    assert_eq!(
        malformed(|r| {
            r.chain_at(
                DESC,
                &[(HDR, 16, 0), (ROM.0, 512, F_WRITE), (STATUS, 1, F_WRITE)],
            );
            0
        }),
        (Used(1), IOERR)
    );
    // The status byte in ROM: nowhere to report.
    assert!(nr(malformed(|r| {
        r.chain_at(
            DESC,
            &[(HDR, 16, 0), (DATA, 512, F_WRITE), (ROM.0, 1, F_WRITE)],
        );
        0
    })));
}

#[test]
fn avail_index_beyond_the_queue_size_needs_reset() {
    let mut r = Rig::new(&pattern(4));
    r.ram
        .write(AVAIL + 2, &(QUEUE_SIZE + 3).to_le_bytes())
        .unwrap();
    r.dev.queue_notify(0);
    assert_eq!(r.wait(1), Outcome::NeedsReset);
    // Notifies after that are ignored; a reset brings it back.
    r.dev.queue_notify(0);
    r.dev.reset();
    r.activate(feature::VERSION_1);
    assert_eq!(r.request(VIRTIO_BLK_T_IN, 0, &[], 512).0, OK);
}

#[test]
fn reset_and_drop_stop_the_worker() {
    let mut r = Rig::new(&pattern(4));
    assert_eq!(r.request(VIRTIO_BLK_T_IN, 0, &[], 512).0, OK);
    r.dev.reset();
    // A notify after reset does nothing (no worker): no used entry.
    r.ram.write(AVAIL + 4, &0u16.to_le_bytes()).unwrap();
    r.ram.write(AVAIL + 2, &2u16.to_le_bytes()).unwrap();
    r.dev.queue_notify(0);
    assert_eq!(r.used_idx(), 1);
    r.dev.reset();
    // Activated again (fresh rings), it serves again.
    r.activate(feature::VERSION_1);
    assert_eq!(r.request(VIRTIO_BLK_T_IN, 0, &[], 512).0, OK);
    drop(r);
}
