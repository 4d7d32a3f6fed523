//! virtio-net over hand-built rings in a test guest memory, with a backend
//! that records what the guest sends and lets the test hand it frames.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::*;

const RAM: u64 = 0x10_0000;
const ROM: (u64, u64) = (0xf_0000, 0x1_0000);
const SIZE: u16 = 16;
const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;
const F_INDIRECT: u16 = 4;
const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

/// Something the device did that a test waits for.
#[derive(Default)]
struct Seen {
    signals: Vec<u16>,
    needs_reset: bool,
    sent: Vec<Vec<u8>>,
}

#[derive(Default)]
struct Shared {
    seen: Mutex<Seen>,
    cv: Condvar,
}

impl Shared {
    fn update(&self, f: impl FnOnce(&mut Seen)) {
        f(&mut self.seen.lock().unwrap());
        self.cv.notify_all();
    }

    /// Waits (with a generous deadline, so a broken device fails rather
    /// than hangs) until `cond` holds.
    fn wait(&self, what: &str, cond: impl Fn(&Seen) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut g = self.seen.lock().unwrap();
        while !cond(&g) {
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("virtio-net never got to: {what}"));
            g = self.cv.wait_timeout(g, left).unwrap().0;
        }
    }
}

struct TestInterrupt(Arc<Shared>);

impl VirtioInterrupt for TestInterrupt {
    fn signal_used_queue(&self, index: u16) {
        self.0.update(|s| s.signals.push(index));
    }
    fn signal_config_change(&self) {}
    fn set_needs_reset(&self) {
        self.0.update(|s| s.needs_reset = true);
    }
}

/// Records sent frames; keeps the sink for the test.
struct TestBackend {
    shared: Arc<Shared>,
    sink: Arc<Mutex<Option<FrameSink>>>,
}

impl NetBackend for TestBackend {
    fn send(&mut self, frame: &[u8]) {
        let f = frame.to_vec();
        self.shared.update(|s| s.sent.push(f));
    }
    fn set_sink(&mut self, sink: Option<FrameSink>) {
        *self.sink.lock().unwrap() = sink;
    }
}

/// A split virtqueue laid out in test memory at `base`.
struct Ring {
    base: u64,
    avail_idx: u16,
}

impl Ring {
    fn desc_addr(&self) -> u64 {
        self.base
    }
    fn avail_addr(&self) -> u64 {
        self.base + 0x1000
    }
    fn used_addr(&self) -> u64 {
        self.base + 0x2000
    }
}

struct Harness {
    ram: GuestRam,
    dev: VirtioNet,
    shared: Arc<Shared>,
    sink: Arc<Mutex<Option<FrameSink>>>,
    rx: Ring,
    tx: Ring,
}

fn queue(r: &Ring) -> Queue {
    let mut q = Queue::new(QUEUE_SIZE).unwrap();
    q.set_size(SIZE);
    q.set_desc_table_address(Some(r.desc_addr() as u32), Some(0));
    q.set_avail_ring_address(Some(r.avail_addr() as u32), Some(0));
    q.set_used_ring_address(Some(r.used_addr() as u32), Some(0));
    q.set_ready(true);
    q
}

impl Harness {
    fn new() -> Self {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM as usize)]).unwrap();
        let ram = GuestRam::new(mem, &[ROM]);
        let shared = Arc::new(Shared::default());
        let sink = Arc::new(Mutex::new(None));
        let backend = TestBackend {
            shared: shared.clone(),
            sink: sink.clone(),
        };
        let mut h = Harness {
            ram,
            dev: VirtioNet::new(MAC, Box::new(backend)),
            shared,
            sink,
            rx: Ring {
                base: 0x1_0000,
                avail_idx: 0,
            },
            tx: Ring {
                base: 0x2_0000,
                avail_idx: 0,
            },
        };
        h.activate();
        h
    }

    fn activate(&mut self) {
        for r in [&mut self.rx, &mut self.tx] {
            r.avail_idx = 0;
            for off in [0x1000u64, 0x2000] {
                self.ram.write(r.base + off, &[0; 0x100]).unwrap();
            }
        }
        let act = Activation {
            mem: self.ram.clone(),
            queues: vec![(RX_QUEUE, queue(&self.rx)), (TX_QUEUE, queue(&self.tx))],
            interrupt: Arc::new(TestInterrupt(self.shared.clone())),
            features: feature::VERSION_1 | self.dev.device_features(),
        };
        self.dev.activate(act).unwrap();
    }

    fn ring(&mut self, q: u16) -> &mut Ring {
        if q == RX_QUEUE {
            &mut self.rx
        } else {
            &mut self.tx
        }
    }

    fn desc(&self, table: u64, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..].copy_from_slice(&next.to_le_bytes());
        self.ram.write(table + 16 * u64::from(i), &d).unwrap();
    }

    /// Descriptor `i` of queue `q`'s table.
    fn set_desc(&mut self, q: u16, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let table = self.ring(q).desc_addr();
        self.desc(table, i, addr, len, flags, next);
    }

    /// Makes chain `head` of queue `q` available and notifies.
    fn publish(&mut self, q: u16, head: u16) {
        let r = self.ring(q);
        let (avail, idx) = (r.avail_addr(), r.avail_idx);
        r.avail_idx = idx.wrapping_add(1);
        let m = self.ram.memory();
        m.write_obj(head, GuestAddress(avail + 4 + 2 * u64::from(idx % SIZE)))
            .unwrap();
        m.write_obj(idx.wrapping_add(1), GuestAddress(avail + 2))
            .unwrap();
        self.dev.queue_notify(q);
    }

    fn used_idx(&self, q: u16) -> u16 {
        let r = if q == RX_QUEUE { &self.rx } else { &self.tx };
        self.ram
            .memory()
            .read_obj(GuestAddress(r.used_addr() + 2))
            .unwrap()
    }

    /// Element `i` of queue `q`'s used ring: (id, len).
    fn used(&self, q: u16, i: u16) -> (u32, u32) {
        let r = if q == RX_QUEUE { &self.rx } else { &self.tx };
        let at = r.used_addr() + 4 + 8 * u64::from(i % SIZE);
        let m = self.ram.memory();
        (
            m.read_obj(GuestAddress(at)).unwrap(),
            m.read_obj(GuestAddress(at + 4)).unwrap(),
        )
    }

    fn wait_used(&self, q: u16, n: u16) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.used_idx(q) != n {
            assert!(
                Instant::now() < deadline,
                "queue {q}: used index {} never reached {n}",
                self.used_idx(q)
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn inject(&self, frame: &[u8]) {
        let sink = self.sink.lock().unwrap().clone().expect("device running");
        sink(frame.to_vec());
    }

    fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0; len];
        self.ram.read(addr, &mut b).unwrap();
        b
    }
}

fn frame(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
        .collect()
}

#[test]
fn config_space_and_features() {
    let h = Harness::new();
    assert_eq!(h.dev.device_type(), id::NET);
    assert_eq!(h.dev.queue_max_sizes(), vec![256, 256]);
    assert_eq!(h.dev.device_features(), (1 << 5) | (1 << 16));
    let mut c = [0xffu8; 10];
    h.dev.read_config(0, &mut c);
    assert_eq!(c, [0x52, 0x54, 0, 0x12, 0x34, 0x56, 1, 0, 0, 0]);
    let mut s = [0u8; 2];
    h.dev.read_config(6, &mut s);
    assert_eq!(s, [1, 0], "status: link up");
    h.dev.read_config(u64::MAX, &mut s);
    assert_eq!(s, [0, 0]);
}

#[test]
fn tx_of_a_chained_frame_reaches_the_backend() {
    let mut h = Harness::new();
    let f = frame(1000, 3);
    // The header alone, an empty descriptor, then the frame in two pieces.
    h.ram.write(0x4_0000, &[0; HDR_LEN]).unwrap();
    h.ram.write(0x4_1000, &f[..600]).unwrap();
    h.ram.write(0x4_2000, &f[600..]).unwrap();
    h.set_desc(TX_QUEUE, 3, 0x4_0000, HDR_LEN as u32, F_NEXT, 7);
    h.set_desc(TX_QUEUE, 7, 0x4_8000, 0, F_NEXT, 1);
    h.set_desc(TX_QUEUE, 1, 0x4_1000, 600, F_NEXT, 2);
    h.set_desc(TX_QUEUE, 2, 0x4_2000, 400, 0, 0);
    h.publish(TX_QUEUE, 3);
    h.wait_used(TX_QUEUE, 1);
    assert_eq!(h.used(TX_QUEUE, 0), (3, 0));
    h.shared.wait("signal tx", |s| {
        s.signals.contains(&TX_QUEUE) && !s.sent.is_empty()
    });
    assert_eq!(h.shared.seen.lock().unwrap().sent, vec![f.clone()]);

    // The same through an indirect table, header and frame in one buffer.
    let table = 0x5_0000;
    let mut buf = vec![0; HDR_LEN];
    buf.extend_from_slice(&f);
    h.ram.write(0x6_0000, &buf).unwrap();
    h.desc(table, 0, 0x6_0000, 500, F_NEXT, 1);
    h.desc(table, 1, 0x6_0000 + 500, buf.len() as u32 - 500, 0, 0);
    h.set_desc(TX_QUEUE, 0, table, 32, F_INDIRECT, 0);
    h.publish(TX_QUEUE, 0);
    h.wait_used(TX_QUEUE, 2);
    h.shared.wait("second frame", |s| s.sent.len() == 2);
    assert_eq!(h.shared.seen.lock().unwrap().sent[1], f);
    assert!(!h.shared.seen.lock().unwrap().needs_reset);
}

#[test]
fn tx_headers_asking_for_offloads_or_without_a_frame_are_dropped() {
    let mut h = Harness::new();
    let f = frame(100, 9);
    let mut csum = vec![1u8, 0, 0, 0, 0, 0, 14, 0, 16, 0, 0, 0]; // NEEDS_CSUM
    csum.extend_from_slice(&f);
    let mut gso = vec![0u8, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]; // GSO_TCPV4
    gso.extend_from_slice(&f);
    let mut good = vec![0u8; HDR_LEN];
    good.extend_from_slice(&f);
    for (i, data) in [csum, gso, vec![0u8; 8], good].iter().enumerate() {
        let addr = 0x4_0000 + 0x1000 * i as u64;
        h.ram.write(addr, data).unwrap();
        h.set_desc(TX_QUEUE, i as u16, addr, data.len() as u32, 0, 0);
        h.publish(TX_QUEUE, i as u16);
    }
    h.wait_used(TX_QUEUE, 4);
    h.shared.wait("the good frame", |s| !s.sent.is_empty());
    let seen = h.shared.seen.lock().unwrap();
    assert_eq!(seen.sent, vec![f], "only the plain frame goes out");
    assert!(
        !seen.needs_reset,
        "a bad header is the frame's problem only"
    );
}

#[test]
fn rx_fills_a_guest_buffer_and_waits_for_one() {
    let mut h = Harness::new();
    let f = frame(1514, 1);
    // A buffer in two pieces: the header lands split across them.
    h.set_desc(RX_QUEUE, 0, 0x8_0000, 8, F_WRITE | F_NEXT, 1);
    h.set_desc(RX_QUEUE, 1, 0x8_1000, 2048, F_WRITE, 0);
    h.publish(RX_QUEUE, 0);
    h.inject(&f);
    h.wait_used(RX_QUEUE, 1);
    assert_eq!(h.used(RX_QUEUE, 0), (0, (HDR_LEN + f.len()) as u32));
    let mut got = h.read(0x8_0000, 8);
    got.extend(h.read(0x8_1000, HDR_LEN - 8 + f.len()));
    assert_eq!(got[..HDR_LEN], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
    assert_eq!(got[HDR_LEN..], f[..]);
    h.shared
        .wait("signal rx", |s| s.signals.contains(&RX_QUEUE));

    // No buffer: the frames wait; a new buffer and a notify bring them in.
    let (g1, g2) = (frame(60, 2), frame(70, 3));
    h.inject(&g1);
    h.inject(&g2);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(h.used_idx(RX_QUEUE), 1);
    h.set_desc(RX_QUEUE, 5, 0x9_0000, 1526, F_WRITE, 0);
    h.set_desc(RX_QUEUE, 6, 0x9_1000, 1526, F_WRITE, 0);
    h.publish(RX_QUEUE, 5);
    h.publish(RX_QUEUE, 6);
    h.wait_used(RX_QUEUE, 3);
    assert_eq!(h.used(RX_QUEUE, 1), (5, (HDR_LEN + 60) as u32));
    assert_eq!(h.used(RX_QUEUE, 2), (6, (HDR_LEN + 70) as u32));
    assert_eq!(h.read(0x9_0000 + HDR_LEN as u64, 60), g1);
    assert_eq!(h.read(0x9_1000 + HDR_LEN as u64, 70), g2);

    // A buffer too small for the frame is given back empty, the frame lost.
    h.set_desc(RX_QUEUE, 2, 0xa_0000, 64, F_WRITE, 0);
    h.publish(RX_QUEUE, 2);
    h.inject(&frame(100, 4));
    h.wait_used(RX_QUEUE, 4);
    assert_eq!(h.used(RX_QUEUE, 3), (2, 0));
    assert!(!h.shared.seen.lock().unwrap().needs_reset);
}

#[test]
fn tx_comes_back_through_a_loopback_and_reset_restarts() {
    let mut h = Harness::new();
    let f = frame(200, 5);
    let mut buf = vec![0; HDR_LEN];
    buf.extend_from_slice(&f);
    h.ram.write(0x4_0000, &buf).unwrap();
    h.set_desc(TX_QUEUE, 0, 0x4_0000, buf.len() as u32, 0, 0);
    h.set_desc(RX_QUEUE, 0, 0x8_0000, 2048, F_WRITE, 0);
    h.publish(RX_QUEUE, 0);
    h.publish(TX_QUEUE, 0);
    h.shared.wait("sent", |s| s.sent.len() == 1);
    let sent = h.shared.seen.lock().unwrap().sent[0].clone();
    h.inject(&sent);
    h.wait_used(RX_QUEUE, 1);
    assert_eq!(h.read(0x8_0000, buf.len())[HDR_LEN..], f[..]);

    // After a reset the backend's frames are dropped; a new activation
    // serves the queues again from the start.
    h.dev.reset();
    assert!(h.sink.lock().unwrap().is_none());
    h.activate();
    h.set_desc(RX_QUEUE, 0, 0x8_0000, 2048, F_WRITE, 0);
    h.publish(RX_QUEUE, 0);
    h.inject(&f);
    h.wait_used(RX_QUEUE, 1);
    assert_eq!(h.used(RX_QUEUE, 0), (0, (HDR_LEN + f.len()) as u32));
}

/// Sets up one malformed case, checks that the device asks for a reset,
/// then that it stays quiet and can be reset and used again.
fn broken(what: &str, setup: impl FnOnce(&mut Harness)) {
    let mut h = Harness::new();
    setup(&mut h);
    h.shared.wait(what, |s| s.needs_reset);
    // Further notifies and frames are ignored, without a panic.
    h.dev.queue_notify(TX_QUEUE);
    h.dev.queue_notify(RX_QUEUE);
    if let Some(sink) = h.sink.lock().unwrap().clone() {
        sink(frame(64, 0));
    }
    h.dev.reset();
    h.shared.update(|s| s.sent.clear());
    h.activate();
    h.ram.write(0x4_0000, &[0; HDR_LEN + 64]).unwrap();
    h.set_desc(TX_QUEUE, 0, 0x4_0000, (HDR_LEN + 64) as u32, 0, 0);
    h.publish(TX_QUEUE, 0);
    h.shared
        .wait("working again after reset", |s| s.sent.len() == 1);
}

#[test]
fn malformed_chains_need_a_reset() {
    broken("tx buffer outside RAM", |h| {
        h.set_desc(TX_QUEUE, 0, RAM - 10, 100, 0, 0);
        h.publish(TX_QUEUE, 0);
    });
    broken("tx buffer at an address that overflows", |h| {
        h.set_desc(TX_QUEUE, 0, u64::MAX - 4, 100, 0, 0);
        h.publish(TX_QUEUE, 0);
    });
    broken("tx descriptor loop", |h| {
        h.set_desc(TX_QUEUE, 0, 0x4_0000, 100, F_NEXT, 1);
        h.set_desc(TX_QUEUE, 1, 0x4_1000, 100, F_NEXT, 0);
        h.publish(TX_QUEUE, 0);
    });
    broken("tx next index beyond the queue", |h| {
        h.set_desc(TX_QUEUE, 0, 0x4_0000, 100, F_NEXT, SIZE + 3);
        h.publish(TX_QUEUE, 0);
    });
    broken("tx head index beyond the queue", |h| {
        h.publish(TX_QUEUE, 999)
    });
    broken("tx writable buffer", |h| {
        h.set_desc(TX_QUEUE, 0, 0x4_0000, 100, F_WRITE, 0);
        h.publish(TX_QUEUE, 0);
    });
    broken("tx indirect table of a bad length", |h| {
        h.set_desc(TX_QUEUE, 0, 0x5_0000, 20, F_INDIRECT, 0);
        h.publish(TX_QUEUE, 0);
    });
    broken("tx available index beyond the queue size", |h| {
        h.ram
            .memory()
            .write_obj(SIZE + 5, GuestAddress(h.tx.avail_addr() + 2))
            .unwrap();
        h.dev.queue_notify(TX_QUEUE);
    });
    broken("rx readable buffer", |h| {
        h.set_desc(RX_QUEUE, 0, 0x8_0000, 2048, 0, 0);
        h.publish(RX_QUEUE, 0);
        h.inject(&frame(64, 0));
    });
    broken("rx buffer in ROM", |h| {
        h.set_desc(RX_QUEUE, 0, ROM.0, 2048, F_WRITE, 0);
        h.publish(RX_QUEUE, 0);
        h.inject(&frame(64, 0));
    });
    broken("rx buffer outside RAM", |h| {
        h.set_desc(RX_QUEUE, 0, RAM + 0x1000, 2048, F_WRITE, 0);
        h.publish(RX_QUEUE, 0);
        h.inject(&frame(64, 0));
    });
}

#[test]
fn huge_and_zero_length_chains_do_not_break_the_device() {
    let mut h = Harness::new();
    // 4 GiB - 1 claimed: dropped without reading it.
    h.set_desc(TX_QUEUE, 0, 0x4_0000, u32::MAX, 0, 0);
    h.publish(TX_QUEUE, 0);
    // Nothing at all in the chain.
    h.set_desc(TX_QUEUE, 1, 0x4_0000, 0, 0, 0);
    h.publish(TX_QUEUE, 1);
    h.wait_used(TX_QUEUE, 2);
    let seen = h.shared.seen.lock().unwrap();
    assert!(seen.sent.is_empty() && !seen.needs_reset);
}
