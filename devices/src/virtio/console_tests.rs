//! virtio-console over hand-built split rings: the multiport handshake as
//! Linux drives it, data both ways, backpressure, malformed input.

use super::*;
use crate::virtio::feature as transport;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap};

const MEM_SIZE: usize = 0x40_0000;
const RING_BASE: u64 = 0x1_0000;
const RING_STRIDE: u64 = 0x4000;
const DATA_BASE: u64 = 0x20_0000;

#[derive(Default)]
struct Irq {
    used: Mutex<Vec<u16>>,
    needs_reset: AtomicBool,
}

impl VirtioInterrupt for Irq {
    fn signal_used_queue(&self, index: u16) {
        self.used.lock().unwrap().push(index);
    }
    fn signal_config_change(&self) {}
    fn set_needs_reset(&self) {
        self.needs_reset.store(true, Ordering::SeqCst);
    }
}

/// A split ring the test plays the driver of.
struct Ring {
    size: u16,
    desc: u64,
    avail: u64,
    used: u64,
    next_desc: u16,
    avail_idx: u16,
    used_seen: u16,
}

impl Ring {
    fn new(index: u16, size: u16) -> Ring {
        let base = RING_BASE + u64::from(index) * RING_STRIDE;
        Ring {
            size,
            desc: base,
            avail: base + 0x1000,
            used: base + 0x2000,
            next_desc: 0,
            avail_idx: 0,
            used_seen: 0,
        }
    }

    fn queue(&self) -> Queue {
        let mut q = Queue::new(self.size).unwrap();
        q.try_set_desc_table_address(GuestAddress(self.desc))
            .unwrap();
        q.try_set_avail_ring_address(GuestAddress(self.avail))
            .unwrap();
        q.try_set_used_ring_address(GuestAddress(self.used))
            .unwrap();
        q.set_ready(true);
        q
    }

    /// Writes a raw descriptor at slot `i`.
    fn put_desc(&self, mem: &GuestMemoryMmap, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = GuestAddress(self.desc + 16 * u64::from(i));
        mem.write_obj(addr, at).unwrap();
        mem.write_obj(len, at.unchecked_add(8)).unwrap();
        mem.write_obj(flags, at.unchecked_add(12)).unwrap();
        mem.write_obj(next, at.unchecked_add(14)).unwrap();
    }

    /// Makes head `head` available (without checking it).
    fn push_head(&mut self, mem: &GuestMemoryMmap, head: u16) {
        let slot = self.avail + 4 + 2 * u64::from(self.avail_idx % self.size);
        mem.write_obj(head, GuestAddress(slot)).unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        mem.write_obj(self.avail_idx, GuestAddress(self.avail + 2))
            .unwrap();
    }

    /// Adds a chain of `(addr, len, device-writable)` buffers.
    fn add(&mut self, mem: &GuestMemoryMmap, bufs: &[(u64, u32, bool)]) -> u16 {
        let head = self.next_desc;
        for (k, &(addr, len, w)) in bufs.iter().enumerate() {
            let i = (head + k as u16) % self.size;
            let mut flags = if w { VRING_DESC_F_WRITE as u16 } else { 0 };
            if k + 1 < bufs.len() {
                flags |= VRING_DESC_F_NEXT as u16;
            }
            self.put_desc(mem, i, addr, len, flags, (i + 1) % self.size);
        }
        self.next_desc = (head + bufs.len() as u16) % self.size;
        self.push_head(mem, head);
        head
    }

    /// The used entries added since the last call: (id, len).
    fn take_used(&mut self, mem: &GuestMemoryMmap) -> Vec<(u32, u32)> {
        let idx: u16 = mem.read_obj(GuestAddress(self.used + 2)).unwrap();
        let mut v = Vec::new();
        while self.used_seen != idx {
            let at = self.used + 4 + 8 * u64::from(self.used_seen % self.size);
            let id: u32 = mem.read_obj(GuestAddress(at)).unwrap();
            let len: u32 = mem.read_obj(GuestAddress(at + 4)).unwrap();
            v.push((id, len));
            self.used_seen = self.used_seen.wrapping_add(1);
        }
        v
    }
}

/// What a port's output received.
#[derive(Clone, Default)]
struct Sink {
    data: Arc<Mutex<Vec<u8>>>,
    /// A write waits while the test holds this (a slow chardev).
    gate: Arc<Mutex<()>>,
    /// A write has started.
    entered: Arc<AtomicBool>,
}

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.entered.store(true, Ordering::SeqCst);
        let _open = self.gate.lock().unwrap();
        self.data.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Waits (generously) for `f` to hold; a hang fails the test instead.
fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A control message: (id, event, value, extra bytes).
type Msg = (u32, u16, u16, Vec<u8>);

struct Rig {
    mem: GuestMemoryMmap,
    dev: VirtioConsole,
    irq: Arc<Irq>,
    rings: Vec<Ring>,
    outs: Vec<Sink>,
    next_data: u64,
    /// Control receive buffers by head.
    ctrl_bufs: std::collections::HashMap<u32, u64>,
}

/// (console, name, nr) per port.
fn rig(max_ports: u32, ports: &[(bool, Option<&str>, Option<u32>)]) -> Rig {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap();
    let outs: Vec<Sink> = ports.iter().map(|_| Sink::default()).collect();
    let cfgs = ports
        .iter()
        .zip(&outs)
        .map(|(&(console, name, nr), out)| PortConfig {
            nr,
            name: name.map(str::to_string),
            console,
            output: Box::new(out.clone()),
        })
        .collect();
    let dev = VirtioConsole::new(max_ports, cfgs).unwrap();
    let rings = dev
        .queue_max_sizes()
        .iter()
        .enumerate()
        .map(|(i, &s)| Ring::new(i as u16, s))
        .collect();
    Rig {
        mem,
        dev,
        irq: Arc::new(Irq::default()),
        rings,
        outs,
        next_data: DATA_BASE,
        ctrl_bufs: Default::default(),
    }
}

impl Rig {
    fn activate(&mut self, features: u64) {
        let queues = self
            .rings
            .iter()
            .enumerate()
            .map(|(i, r)| (i as u16, r.queue()))
            .collect();
        self.dev
            .activate(Activation {
                mem: GuestRam::new(self.mem.clone(), &[]),
                queues,
                interrupt: self.irq.clone(),
                features: features | transport::VERSION_1,
            })
            .unwrap();
    }

    fn alloc(&mut self, len: u32) -> u64 {
        let at = self.next_data;
        self.next_data += u64::from(len.max(1) + 15) & !15;
        at
    }

    /// Posts `n` control receive buffers of 64 bytes.
    fn post_ctrl_rx(&mut self, n: usize) {
        for _ in 0..n {
            let a = self.alloc(64);
            let h = self.rings[2].add(&self.mem, &[(a, 64, true)]);
            self.ctrl_bufs.insert(h.into(), a);
        }
        self.dev.queue_notify(2);
    }

    /// The driver sends a control message.
    fn ctrl_send(&mut self, id: u32, ev: u16, value: u16) {
        let a = self.alloc(8);
        let mut m = id.to_le_bytes().to_vec();
        m.extend_from_slice(&ev.to_le_bytes());
        m.extend_from_slice(&value.to_le_bytes());
        self.mem.write_slice(&m, GuestAddress(a)).unwrap();
        self.rings[3].add(&self.mem, &[(a, 8, false)]);
        self.dev.queue_notify(3);
    }

    /// Control messages the device sent since the last call, as
    /// (id, event, value, extra bytes).
    fn ctrl_recv(&mut self) -> Vec<Msg> {
        let used = self.rings[2].take_used(&self.mem);
        used.iter()
            .map(|&(head, len)| {
                let a = self.ctrl_bufs[&head];
                let mut m = vec![0u8; len as usize];
                self.mem.read_slice(&mut m, GuestAddress(a)).unwrap();
                let id = u32::from_le_bytes(m[0..4].try_into().unwrap());
                let ev = u16::from_le_bytes(m[4..6].try_into().unwrap());
                let value = u16::from_le_bytes(m[6..8].try_into().unwrap());
                (id, ev, value, m[8..].to_vec())
            })
            .collect()
    }

    /// The guest writes `data` to port `nr` in one buffer.
    fn guest_write(&mut self, nr: u32, data: &[u8]) {
        let a = self.alloc(data.len() as u32);
        self.mem.write_slice(data, GuestAddress(a)).unwrap();
        let q = rx_queue(nr) + 1;
        self.rings[usize::from(q)].add(&self.mem, &[(a, data.len() as u32, false)]);
        self.dev.queue_notify(q);
    }

    /// Posts a receive buffer of `len` bytes for port `nr`.
    fn post_rx(&mut self, nr: u32, len: u32) -> (u16, u64) {
        let a = self.alloc(len);
        let q = rx_queue(nr);
        let h = self.rings[usize::from(q)].add(&self.mem, &[(a, len, true)]);
        self.dev.queue_notify(q);
        (h, a)
    }

    /// What the guest received on port `nr` since the last call.
    fn guest_read(&mut self, nr: u32, posted: &[(u16, u64)]) -> Vec<u8> {
        let used = self.rings[usize::from(rx_queue(nr))].take_used(&self.mem);
        let mut v = Vec::new();
        for (head, len) in used {
            let a = posted.iter().find(|p| u32::from(p.0) == head).unwrap().1;
            let mut b = vec![0u8; len as usize];
            self.mem.read_slice(&mut b, GuestAddress(a)).unwrap();
            v.extend(b);
        }
        v
    }

    fn output(&self, i: usize) -> Vec<u8> {
        self.outs[i].data.lock().unwrap().clone()
    }

    fn needs_reset(&self) -> bool {
        self.irq.needs_reset.load(Ordering::SeqCst)
    }

    /// The handshake up to PORT_READY for every port, returning what the
    /// device sent after DEVICE_READY and after the PORT_READYs.
    fn handshake(&mut self) -> (Vec<Msg>, Vec<Msg>) {
        self.post_ctrl_rx(16);
        self.ctrl_send(u32::MAX, event::DEVICE_READY, 1);
        let adds = self.ctrl_recv();
        for &(id, ..) in &adds {
            self.ctrl_send(id, event::PORT_READY, 1);
        }
        let after = self.ctrl_recv();
        (adds, after)
    }
}

#[test]
fn port_numbers_follow_qemu() {
    let r = rig(
        4,
        &[
            (false, Some("a"), None),
            (true, None, None),
            (true, None, None),
        ],
    );
    assert_eq!(r.dev.port_numbers(), vec![1, 0, 2]);
    let r = rig(
        4,
        &[
            (true, None, Some(2)),
            (true, None, None),
            (false, None, None),
        ],
    );
    assert_eq!(r.dev.port_numbers(), vec![2, 0, 1]);
    let mk = |max, ports: Vec<(bool, Option<u32>, Option<&str>)>| {
        VirtioConsole::new(
            max,
            ports
                .into_iter()
                .map(|(console, nr, name)| PortConfig {
                    nr,
                    name: name.map(str::to_string),
                    console,
                    output: Box::new(std::io::sink()),
                })
                .collect(),
        )
        .err()
    };
    assert_eq!(mk(0, vec![]), Some(ConsoleError::MaxPorts(0)));
    assert_eq!(mk(512, vec![]), Some(ConsoleError::MaxPorts(512)));
    assert_eq!(
        mk(2, vec![(true, Some(2), None)]),
        Some(ConsoleError::PortRange { nr: 2, max: 2 })
    );
    assert_eq!(
        mk(4, vec![(false, Some(0), None)]),
        Some(ConsoleError::PortZero)
    );
    assert_eq!(
        mk(4, vec![(true, Some(1), None), (false, Some(1), None)]),
        Some(ConsoleError::Duplicate(1))
    );
    assert_eq!(
        mk(2, vec![(false, None, None), (false, None, None)]),
        Some(ConsoleError::Full(2))
    );
    assert_eq!(
        mk(4, vec![(false, None, Some("x")), (false, None, Some("x"))]),
        Some(ConsoleError::DuplicateName("x".into()))
    );
}

#[test]
fn config_space_and_queues() {
    let r = rig(4, &[(true, None, None)]);
    assert_eq!(r.dev.device_type(), 3);
    assert_eq!(r.dev.device_features(), feature::MULTIPORT);
    let sizes = r.dev.queue_max_sizes();
    assert_eq!(sizes.len(), 10);
    assert_eq!((sizes[0], sizes[2], sizes[3], sizes[9]), (128, 32, 32, 128));
    let mut cfg = [0xffu8; 16];
    r.dev.read_config(0, &mut cfg);
    assert_eq!(cfg, [0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let mut b = [0xffu8; 2];
    r.dev.read_config(4, &mut b);
    assert_eq!(b, [4, 0]);
    r.dev.read_config(u64::MAX, &mut b);
    assert_eq!(b, [0, 0]);
}

#[test]
fn multiport_handshake_names_consoles_and_opens() {
    let mut r = rig(
        4,
        &[
            (true, None, None),
            (false, Some("org.test.0"), None),
            (true, None, None),
        ],
    );
    // The host side of port 0 is connected before the driver starts.
    r.dev.port_input(0).unwrap().set_host_connected(true);
    r.activate(feature::MULTIPORT);
    let (adds, after) = r.handshake();
    assert_eq!(
        adds,
        vec![
            (0, event::DEVICE_ADD, 1, vec![]),
            (1, event::DEVICE_ADD, 1, vec![]),
            (2, event::DEVICE_ADD, 1, vec![]),
        ]
    );
    assert_eq!(
        after,
        vec![
            (0, event::CONSOLE_PORT, 1, vec![]),
            (0, event::PORT_OPEN, 1, vec![]),
            (1, event::PORT_NAME, 1, b"org.test.0\0".to_vec()),
            (2, event::CONSOLE_PORT, 1, vec![]),
        ]
    );
    // A host connecting later is announced at once.
    r.dev.port_input(1).unwrap().set_host_connected(true);
    assert_eq!(r.ctrl_recv(), vec![(1, event::PORT_OPEN, 1, vec![])]);
    assert!(!r.needs_reset());
    assert!(r.irq.used.lock().unwrap().contains(&2));
}

#[test]
fn data_both_ways_on_several_ports() {
    let mut r = rig(4, &[(true, None, None), (false, Some("p"), None)]);
    r.activate(feature::MULTIPORT | transport::RING_EVENT_IDX);
    r.handshake();
    // Guest output: each port's bytes reach its own output, in order.
    r.guest_write(0, b"hello ");
    r.guest_write(1, b"port one");
    r.guest_write(0, b"console\n");
    wait_for("port 0 output", || r.output(0) == b"hello console\n");
    wait_for("port 1 output", || r.output(1) == b"port one");
    wait_for("tx buffers back", || {
        let n0 = r.rings[1].take_used(&r.mem).len();
        r.rings[1].used_seen -= n0 as u16;
        n0 == 2
    });
    // Host input waits until the guest opens the port, then fills the
    // posted buffers in order, split across them.
    let inp = r.dev.port_input(0).unwrap();
    inp.input(b"0123456789");
    let mut posted = vec![r.post_rx(0, 4), r.post_rx(0, 4)];
    assert!(r.guest_read(0, &posted).is_empty());
    r.ctrl_send(0, event::PORT_OPEN, 1);
    assert_eq!(r.guest_read(0, &posted), b"01234567");
    posted.push(r.post_rx(0, 64));
    assert_eq!(r.guest_read(0, &posted), b"89");
    inp.input(b"abc");
    posted.push(r.post_rx(0, 64));
    assert_eq!(r.guest_read(0, &posted), b"abc");
    // Port 1 is still closed: its input stays with the device.
    r.dev.port_input(1).unwrap().input(b"xyz");
    let p1 = vec![r.post_rx(1, 64)];
    assert!(r.guest_read(1, &p1).is_empty());
    r.ctrl_send(1, event::PORT_OPEN, 1);
    assert_eq!(r.guest_read(1, &p1), b"xyz");
    assert!(!r.needs_reset());
}

#[test]
fn without_multiport_port_zero_is_a_plain_console() {
    let mut r = rig(2, &[(true, None, None)]);
    r.activate(0);
    r.guest_write(0, b"early");
    wait_for("output", || r.output(0) == b"early");
    r.dev.port_input(0).unwrap().input(b"in");
    let posted = vec![r.post_rx(0, 16)];
    assert_eq!(r.guest_read(0, &posted), b"in");
    // No control traffic without MULTIPORT.
    r.post_ctrl_rx(1);
    r.ctrl_send(u32::MAX, event::DEVICE_READY, 1);
    assert!(r.ctrl_recv().is_empty());
}

#[test]
fn a_stuck_output_never_blocks_the_notifying_vcpu() {
    let mut r = rig(4, &[(true, None, None), (false, None, None)]);
    r.activate(feature::MULTIPORT);
    r.handshake();
    r.ctrl_send(0, event::PORT_OPEN, 1);
    // Port 0's chardev stops taking bytes in the middle of a write.
    let gate = r.outs[0].gate.clone();
    let held = gate.lock().unwrap();
    r.guest_write(0, b"stuck");
    let entered = r.outs[0].entered.clone();
    wait_for("the writer inside the output", || {
        entered.load(Ordering::SeqCst)
    });
    // Meanwhile every notification returns and the rest of the device
    // works: more output queued on port 0, port 1's output, input and
    // control traffic.
    r.guest_write(0, b" more");
    r.guest_write(1, b"port 1");
    wait_for("port 1 output", || r.output(1) == b"port 1");
    r.dev.port_input(0).unwrap().input(b"in");
    let posted = vec![r.post_rx(0, 16)];
    assert_eq!(r.guest_read(0, &posted), b"in");
    r.ctrl_send(1, event::PORT_OPEN, 1);
    assert!(
        r.rings[1].take_used(&r.mem).is_empty(),
        "port 0's buffers wait"
    );
    drop(held);
    wait_for("port 0 output", || r.output(0) == b"stuck more");
    assert!(!r.needs_reset());
}

#[test]
fn full_input_buffer_makes_the_host_wait() {
    let mut r = rig(2, &[(true, None, None)]);
    r.activate(feature::MULTIPORT);
    r.handshake();
    r.ctrl_send(0, event::PORT_OPEN, 1);
    let inp = r.dev.port_input(0).unwrap();
    let data: Vec<u8> = (0..PORT_INPUT_CAP + 100).map(|i| (i * 7) as u8).collect();
    let d = data.clone();
    let t = std::thread::spawn(move || inp.input(&d));
    let shared = r.dev.shared.clone();
    wait_for("a full buffer", || {
        shared.lock().ports[0].input.len() == PORT_INPUT_CAP
    });
    // The last 100 bytes cannot be anywhere but with the waiting caller.
    assert!(!t.is_finished());
    // The guest takes the full buffer; then the caller puts in the rest.
    let mut posted = Vec::new();
    for _ in 0..PORT_INPUT_CAP / 4096 {
        posted.push(r.post_rx(0, 4096));
    }
    let mut got = r.guest_read(0, &posted);
    assert_eq!(got.len(), PORT_INPUT_CAP);
    t.join().unwrap();
    posted.push(r.post_rx(0, 4096));
    got.extend(r.guest_read(0, &posted));
    assert_eq!(got, data);
}

#[test]
fn reset_stops_the_device_and_it_starts_again() {
    let mut r = rig(2, &[(true, None, None)]);
    r.activate(feature::MULTIPORT);
    r.handshake();
    r.guest_write(0, b"one");
    wait_for("output", || r.output(0) == b"one");
    r.dev.reset();
    // After a reset nothing touches the old rings.
    let before: u16 = r.mem.read_obj(GuestAddress(r.rings[2].used + 2)).unwrap();
    r.ctrl_send(u32::MAX, event::DEVICE_READY, 1);
    r.dev.queue_notify(1);
    let after: u16 = r.mem.read_obj(GuestAddress(r.rings[2].used + 2)).unwrap();
    assert_eq!(before, after);
    let n = r.rings.len();
    r.rings = (0..n)
        .map(|i| Ring::new(i as u16, r.dev.queue_max_sizes()[i]))
        .collect();
    for i in 0..n {
        // Fresh rings: clear the old indices.
        let ring = &r.rings[i];
        r.mem.write_obj(0u16, GuestAddress(ring.avail + 2)).unwrap();
        r.mem.write_obj(0u16, GuestAddress(ring.used + 2)).unwrap();
    }
    r.activate(feature::MULTIPORT);
    let (adds, _) = r.handshake();
    assert_eq!(adds, vec![(0, event::DEVICE_ADD, 1, vec![])]);
    r.guest_write(0, b" two");
    wait_for("output", || r.output(0) == b"one two");
}

#[path = "console_bad_tests.rs"]
mod bad;
