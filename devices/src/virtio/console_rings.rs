//! virtio-console's ring work: the receive path (host input into the
//! guest's buffers), the control queues and the per-port writer threads
//! (guest output to the port's chardev).

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};

use virtio_queue::{Queue, QueueOwnedT};

use super::{
    event, rx_queue, Active, Buf, Chain, Shared, State, CTRL_LEN, CTRL_RX, CTRL_TX, TX_CHUNK,
};
use crate::dma::GuestRam;
impl State {
    pub(super) fn port_by_nr(&self, nr: u32) -> Option<usize> {
        self.ports.iter().position(|p| p.nr == nr)
    }

    /// Back to the state before DRIVER_OK; workers of this generation end.
    pub(super) fn stop(&mut self) {
        self.generation += 1;
        self.active = None;
        for p in &mut self.ports {
            p.guest_ready = false;
            p.guest_open = false;
            p.tx_kick = false;
        }
    }

    /// Moves buffered input of port `i` into the guest's receive buffers.
    pub(super) fn fill_rx(&mut self, i: usize, cond: &Condvar) {
        let State { ports, active, .. } = self;
        let port = &mut ports[i];
        let Some(a) = active.as_mut() else {
            return;
        };
        if port.input.is_empty() || !port.guest_open || a.broken {
            return;
        }
        let q = rx_queue(port.nr);
        let before = port.input.len();
        while !port.input.is_empty() {
            let Some(chain) = a.pop(q) else {
                break;
            };
            let mut written = 0u32;
            for b in chain.bufs.iter().filter(|b| b.writable) {
                let n = (b.len as usize).min(port.input.len());
                if n == 0 {
                    continue;
                }
                let (head, tail) = port.input.as_slices();
                let ok = if n <= head.len() {
                    a.mem.write(b.addr, &head[..n]).is_ok()
                } else {
                    let mut v = Vec::with_capacity(n);
                    v.extend_from_slice(head);
                    v.extend_from_slice(&tail[..n - head.len()]);
                    a.mem.write(b.addr, &v).is_ok()
                };
                if !ok {
                    log::debug!(target: "guest_errors", "virtio-serial: port {}: receive buffer at {:#x}+{:#x} is not RAM", port.nr, b.addr, b.len);
                    break;
                }
                port.input.drain(..n);
                written += n as u32;
            }
            a.finish(q, chain.head, written);
        }
        if port.input.len() != before {
            cond.notify_all();
        }
    }

    /// A control message from the driver.
    fn control(&mut self, msg: &[u8], cond: &Condvar) {
        if msg.len() < CTRL_LEN {
            log::debug!(target: "guest_errors", "virtio-serial: control message of {} bytes ignored", msg.len());
            return;
        }
        let id = u32::from_le_bytes([msg[0], msg[1], msg[2], msg[3]]);
        let ev = u16::from_le_bytes([msg[4], msg[5]]);
        let value = u16::from_le_bytes([msg[6], msg[7]]);
        log::trace!(target: "virtio", "virtio-serial: control in: port {id} event {ev} value {value}");
        let i = self.port_by_nr(id);
        let State { ports, active, .. } = self;
        let Some(a) = active.as_mut() else {
            return;
        };
        if ev == event::DEVICE_READY {
            if value == 0 {
                log::debug!(target: "guest_errors", "virtio-serial: the driver failed to initialise");
                return;
            }
            for p in ports.iter() {
                a.send_ctrl(p.nr, event::DEVICE_ADD, 1, &[]);
            }
            return;
        }
        let Some(i) = i else {
            log::debug!(target: "guest_errors", "virtio-serial: control event {ev} for unknown port {id}");
            return;
        };
        let port = &mut ports[i];
        match ev {
            event::PORT_READY if value == 0 => {
                log::debug!(target: "guest_errors", "virtio-serial: the driver failed to add port {id}");
            }
            event::PORT_READY => {
                port.guest_ready = true;
                if port.console {
                    a.send_ctrl(id, event::CONSOLE_PORT, 1, &[]);
                }
                if let Some(name) = &port.name {
                    let mut s = name.as_bytes().to_vec();
                    s.push(0);
                    a.send_ctrl(id, event::PORT_NAME, 1, &s);
                }
                if port.host_connected {
                    a.send_ctrl(id, event::PORT_OPEN, 1, &[]);
                }
            }
            event::PORT_OPEN => {
                port.guest_open = value != 0;
                self.fill_rx(i, cond);
            }
            _ => {
                log::debug!(target: "guest_errors", "virtio-serial: unexpected control event {ev} (port {id}, value {value})");
            }
        }
    }

    /// Processes the control transmit queue (driver to device).
    pub(super) fn control_queue(&mut self, cond: &Condvar) {
        loop {
            let Some(a) = self.active.as_mut() else {
                return;
            };
            let Some(chain) = a.pop(CTRL_TX) else {
                return;
            };
            let msg = a.read_chain(&chain, CTRL_LEN + 64);
            a.finish(CTRL_TX, chain.head, 0);
            self.control(&msg, cond);
        }
    }
}

impl Active {
    pub(super) fn queue(&mut self, q: u16) -> Option<&mut Queue> {
        self.queues.get_mut(usize::from(q)).and_then(|q| q.as_mut())
    }

    /// The next available chain of queue `q` (`None`: none, no such queue
    /// or the device is broken).
    fn pop(&mut self, q: u16) -> Option<Chain> {
        if self.broken {
            return None;
        }
        let Active { mem, queues, .. } = self;
        let queue = queues.get_mut(usize::from(q))?.as_mut()?;
        let mut rearmed = false;
        let chain = loop {
            let r = queue.iter(mem.memory()).map(|mut it| it.next());
            let e = match r {
                Ok(Some(c)) => break c,
                // Empty: re-arm notifications (with EVENT_IDX this
                // publishes avail_event, without which the driver stops
                // kicking) and look once more for what came meanwhile.
                Ok(None) if !rearmed => match crate::virtio::enable_notification(queue, mem) {
                    Ok(true) => {
                        rearmed = true;
                        continue;
                    }
                    Ok(false) => return None,
                    Err(e) => e,
                },
                // More announced but none readable: the ring is outside RAM.
                Ok(None) => virtio_queue::Error::InvalidChain,
                Err(e) => e,
            };
            log::debug!(target: "guest_errors", "virtio-serial: queue {q}: {e}");
            self.fail();
            return None;
        };
        let head = chain.head_index();
        let bufs = chain
            .map(|d| Buf {
                addr: d.addr().0,
                len: d.len(),
                writable: d.is_write_only(),
            })
            .collect();
        Some(Chain { head, bufs })
    }

    /// Puts `head` in queue `q`'s used ring and interrupts the driver if
    /// it asked to hear about it.
    fn finish(&mut self, q: u16, head: u16, len: u32) {
        let Active { mem, queues, .. } = self;
        let Some(queue) = queues.get_mut(usize::from(q)).and_then(|q| q.as_mut()) else {
            return;
        };
        match crate::virtio::add_used(queue, mem, head, len) {
            Ok(()) => crate::virtio::notify_used(queue, mem, self.irq.as_ref(), q),
            Err(e) => {
                log::debug!(target: "guest_errors", "virtio-serial: queue {q}: used ring: {e}");
                self.fail();
            }
        }
    }

    fn fail(&mut self) {
        if !self.broken {
            self.broken = true;
            self.irq.set_needs_reset();
        }
    }

    /// Up to `max` bytes of the chain's readable buffers.
    fn read_chain(&self, chain: &Chain, max: usize) -> Vec<u8> {
        let mut v = Vec::new();
        for b in chain.bufs.iter().filter(|b| !b.writable) {
            let n = (b.len as usize).min(max - v.len());
            let at = v.len();
            v.resize(at + n, 0);
            if self.mem.read(b.addr, &mut v[at..]).is_err() {
                v.truncate(at);
                break;
            }
        }
        v
    }

    /// Queues a control message for the driver and sends what fits.
    pub(super) fn send_ctrl(&mut self, id: u32, ev: u16, value: u16, extra: &[u8]) {
        if !self.multiport {
            return;
        }
        if self.ctrl_pending.len() >= self.ctrl_cap {
            log::debug!(target: "guest_errors", "virtio-serial: the driver does not read its control queue: event {ev} for port {id} dropped");
            return;
        }
        log::trace!(target: "virtio", "virtio-serial: control out: port {id} event {ev} value {value}");
        let mut m = Vec::with_capacity(CTRL_LEN + extra.len());
        m.extend_from_slice(&id.to_le_bytes());
        m.extend_from_slice(&ev.to_le_bytes());
        m.extend_from_slice(&value.to_le_bytes());
        m.extend_from_slice(extra);
        self.ctrl_pending.push_back(m);
        self.flush_ctrl();
    }

    /// Puts pending control messages into the control receive queue.
    pub(super) fn flush_ctrl(&mut self) {
        while !self.ctrl_pending.is_empty() {
            let Some(chain) = self.pop(CTRL_RX) else {
                return;
            };
            let m = self.ctrl_pending.pop_front().unwrap_or_default();
            let mut done = 0;
            for b in chain.bufs.iter().filter(|b| b.writable) {
                let n = (b.len as usize).min(m.len() - done);
                if self.mem.write(b.addr, &m[done..done + n]).is_err() {
                    break;
                }
                done += n;
            }
            if done < m.len() {
                log::debug!(target: "guest_errors", "virtio-serial: control receive buffer too small ({done} of {} bytes)", m.len());
            }
            self.finish(CTRL_RX, chain.head, done as u32);
        }
    }
}

/// Port `i`'s transmit side: guest buffers to its output, until the
/// device resets (its generation changes).
pub(super) fn writer(shared: Arc<Shared>, i: usize, generation: u64) {
    let mut st = shared.lock();
    let out = st.ports[i].out.clone();
    let q = rx_queue(st.ports[i].nr) + 1;
    loop {
        if st.generation != generation {
            return;
        }
        if !st.ports[i].tx_kick {
            st = shared.cond.wait(st).unwrap_or_else(|e| e.into_inner());
            continue;
        }
        st.ports[i].tx_kick = false;
        loop {
            let Some(a) = st.active.as_mut() else {
                return;
            };
            let Some(chain) = a.pop(q) else {
                break;
            };
            let mem = a.mem.clone();
            drop(st);
            write_out(&mem, &chain, &out);
            st = shared.lock();
            if st.generation != generation {
                return;
            }
            if let Some(a) = st.active.as_mut() {
                a.finish(q, chain.head, 0);
            }
        }
    }
}

/// Copies a transmit chain's readable buffers to `out`.
fn write_out(mem: &GuestRam, chain: &Chain, out: &Mutex<Box<dyn Write + Send>>) {
    let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
    let mut buf = Vec::new();
    for b in &chain.bufs {
        if b.writable {
            log::debug!(target: "guest_errors", "virtio-serial: write-only buffer in a transmit chain skipped");
            continue;
        }
        let mut left = b.len as u64;
        let mut addr = b.addr;
        while left > 0 {
            let n = left.min(TX_CHUNK as u64) as usize;
            buf.resize(n, 0);
            if mem.read(addr, &mut buf).is_err() {
                log::debug!(target: "guest_errors", "virtio-serial: transmit buffer at {addr:#x}+{n:#x} is not RAM");
                return;
            }
            // A failed output drops the bytes, as on a disconnected line.
            let _ = out.write_all(&buf).and_then(|_| out.flush());
            addr += n as u64;
            left -= n as u64;
        }
    }
}
