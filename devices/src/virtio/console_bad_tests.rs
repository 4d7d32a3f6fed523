//! virtio-console against a hostile driver: malformed control messages,
//! descriptors and rings.

use super::*;

#[test]
fn malformed_control_messages_are_ignored() {
    let mut r = rig(2, &[(true, None, None)]);
    r.activate(feature::MULTIPORT);
    r.post_ctrl_rx(8);
    // Too short, unknown port, unknown event, PORT_READY failure.
    let a = r.alloc(4);
    r.rings[3].add(&r.mem, &[(a, 4, false)]);
    r.dev.queue_notify(3);
    r.ctrl_send(7, event::PORT_READY, 1);
    r.ctrl_send(0, 99, 1);
    r.ctrl_send(0, event::PORT_READY, 0);
    r.ctrl_send(u32::MAX, event::DEVICE_READY, 0);
    // A message in a write-only buffer is no message.
    let a = r.alloc(8);
    r.rings[3].add(&r.mem, &[(a, 8, true)]);
    r.dev.queue_notify(3);
    assert!(r.ctrl_recv().is_empty());
    assert_eq!(r.rings[3].take_used(&r.mem).len(), 6);
    // A message split over two descriptors still counts.
    let a = r.alloc(8);
    let mut m = u32::MAX.to_le_bytes().to_vec();
    m.extend_from_slice(&event::DEVICE_READY.to_le_bytes());
    m.extend_from_slice(&1u16.to_le_bytes());
    r.mem.write_slice(&m, GuestAddress(a)).unwrap();
    r.rings[3].add(&r.mem, &[(a, 3, false), (a + 3, 5, false)]);
    r.dev.queue_notify(3);
    assert_eq!(r.ctrl_recv(), vec![(0, event::DEVICE_ADD, 1, vec![])]);
    assert!(!r.needs_reset());
}

#[test]
fn bad_descriptors_end_their_buffer_only() {
    let mut r = rig(2, &[(true, None, None)]);
    r.activate(feature::MULTIPORT);
    r.handshake();
    r.ctrl_send(0, event::PORT_OPEN, 1);
    // Transmit: outside RAM, wrong direction, zero length, a loop.
    r.rings[1].add(&r.mem, &[(MEM_SIZE as u64 - 2, 16, false)]);
    r.rings[1].add(&r.mem, &[(DATA_BASE, 16, true)]);
    r.rings[1].add(&r.mem, &[(DATA_BASE, 0, false)]);
    let a = r.alloc(4);
    r.mem.write_slice(b"loop", GuestAddress(a)).unwrap();
    let head = r.rings[1].next_desc;
    let ring = &r.rings[1];
    ring.put_desc(&r.mem, head, a, 4, VRING_DESC_F_NEXT as u16, head);
    r.rings[1].next_desc += 1;
    r.rings[1].push_head(&r.mem, head);
    r.dev.queue_notify(1);
    r.guest_write(0, b"!");
    wait_for("all five back", || {
        let n = r.rings[1].take_used(&r.mem).len();
        r.rings[1].used_seen -= n as u16;
        n == 5
    });
    // The loop ran the ring's size in descriptors at most, then stopped.
    let out = r.output(0);
    assert!(out.ends_with(b"!"), "{out:?}");
    assert!(out.len() <= 4 * 128 + 1);
    assert!(out[..out.len() - 1].chunks(4).all(|c| c == b"loop"));
    // Receive: a buffer outside RAM is returned empty; the next one works.
    let bad = r.rings[0].add(&r.mem, &[(MEM_SIZE as u64 + 0x1000, 16, true)]);
    r.dev.queue_notify(0);
    r.dev.port_input(0).unwrap().input(b"ok");
    let posted = [(bad, 0), r.post_rx(0, 16)];
    let used = r.rings[0].take_used(&r.mem);
    assert_eq!(used[0], (u32::from(bad), 0));
    r.rings[0].used_seen -= 1;
    assert_eq!(r.guest_read(0, &posted[1..]), b"ok");
    assert!(!r.needs_reset());
}

#[test]
fn broken_rings_ask_for_a_reset_without_panicking() {
    // An available index more than a ring ahead.
    let mut r = rig(2, &[(true, None, None)]);
    r.activate(feature::MULTIPORT);
    r.mem
        .write_obj(200u16, GuestAddress(r.rings[3].avail + 2))
        .unwrap();
    r.dev.queue_notify(3);
    assert!(r.needs_reset());
    // Later notifications do nothing.
    r.dev.queue_notify(3);
    r.dev.queue_notify(1);
    // A head index beyond the ring.
    let mut r = rig(2, &[(true, None, None)]);
    r.activate(feature::MULTIPORT);
    r.rings[3].push_head(&r.mem, 500);
    r.dev.queue_notify(3);
    assert!(r.needs_reset());
    // A used ring outside RAM.
    let mut r = rig(2, &[(true, None, None)]);
    r.rings[3].used = MEM_SIZE as u64 - 4;
    r.activate(feature::MULTIPORT);
    r.ctrl_send(u32::MAX, event::DEVICE_READY, 1);
    assert!(r.needs_reset());
}

#[test]
fn missing_control_queues_refuse_activation() {
    let mut r = rig(2, &[(true, None, None)]);
    let queues = vec![(0, r.rings[0].queue()), (1, r.rings[1].queue())];
    let e = r
        .dev
        .activate(Activation {
            mem: GuestRam::new(r.mem.clone(), &[]),
            queues,
            interrupt: r.irq.clone(),
            features: feature::MULTIPORT,
        })
        .unwrap_err();
    assert!(matches!(e, ActivateError::MissingQueue(2)), "{e}");
}

#[test]
fn event_idx_publishes_avail_event() {
    let mut r = rig(2, &[(true, None, None)]);
    r.activate(feature::MULTIPORT | transport::RING_EVENT_IDX);
    r.handshake();
    for i in 0..3u8 {
        r.guest_write(0, &[b'a' + i]);
        wait_for("output", || r.output(0).len() == usize::from(i) + 1);
        // avail_event (after the used ring) tells the driver to kick for
        // the next chain.
        let at = r.rings[1].used + 4 + 8 * u64::from(r.rings[1].size);
        wait_for("avail_event", || {
            r.mem.read_obj::<u16>(GuestAddress(at)).unwrap() == r.rings[1].avail_idx
        });
    }
    assert_eq!(r.output(0), b"abc");
}

#[test]
fn an_avail_ring_past_the_end_of_ram_is_refused() {
    let mut r = rig(2, &[(true, None, None)]);
    // The index is in RAM, the entries are not.
    r.rings[3].avail = MEM_SIZE as u64 - 4;
    r.activate(feature::MULTIPORT);
    r.mem
        .write_obj(1u16, GuestAddress(r.rings[3].avail + 2))
        .unwrap();
    r.dev.queue_notify(3);
    assert!(r.needs_reset());
}
