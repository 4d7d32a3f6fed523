//! virtio-net (virtio 1.2, 5.1): an Ethernet card with a receive queue (0)
//! and a transmit queue (1), no control queue and no offloads.
//!
//! Features: `MAC` (the configuration space carries the address) and
//! `STATUS` (the link is always up). Every buffer starts with the 12-byte
//! `virtio_net_hdr_v1` (`VERSION_1`); the device writes it zeroed with
//! `num_buffers` = 1 on receive and drops transmitted frames whose header
//! asks for an offload it never offered.
//!
//! Frames go to and come from a [`NetBackend`] (user-mode networking in the
//! binary, a loopback in the tests). The device runs one worker thread per
//! activation that owns both queues: a notify (on a vCPU thread) only sends
//! it a message, frames from the backend arrive the same way. Received
//! frames wait in a bounded queue while the driver has no receive buffers
//! and go out when it adds some (it notifies the receive queue then: the
//! device asks for that notification only when it ran dry).
//!
//! A malformed chain (a descriptor outside RAM, a loop, a missing link, a
//! buffer of the wrong direction, an available index beyond the queue
//! size) stops the device and sets `DEVICE_NEEDS_RESET`: virtio-net has no
//! per-request error status.

use std::collections::VecDeque;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use thiserror::Error;
use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_MAC, VIRTIO_NET_F_STATUS, VIRTIO_NET_HDR_GSO_NONE, VIRTIO_NET_S_LINK_UP,
};
use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
use vm_memory::GuestMemoryMmap;

use super::{feature, id, ActivateError, Activation, VirtioDevice, VirtioInterrupt};
use crate::dma::{DmaError, GuestRam};

/// The receive queue's index.
pub const RX_QUEUE: u16 = 0;
/// The transmit queue's index.
pub const TX_QUEUE: u16 = 1;
/// Each queue's largest size (QEMU's default).
pub const QUEUE_SIZE: u16 = 256;
/// `virtio_net_hdr_v1`: flags, gso_type, hdr_len, gso_size, csum_start,
/// csum_offset, num_buffers.
pub const HDR_LEN: usize = 12;
/// The largest frame either way: no segmentation offload is offered, so
/// this is generous (an Ethernet header plus the largest IP datagram).
pub const MAX_FRAME: usize = 14 + 65535;
/// Received frames kept while the driver has no buffers; more are dropped.
pub const MAX_PENDING: usize = 512;

/// Delivers a frame for the guest to the device (from any thread).
pub type FrameSink = Arc<dyn Fn(Vec<u8>) + Send + Sync>;

/// Where the guest's frames go and where frames for it come from.
pub trait NetBackend: Send {
    /// Sends a frame the guest transmitted (an Ethernet frame, no virtio
    /// header). Called on the device's worker thread; must not block long.
    fn send(&mut self, frame: &[u8]);
    /// From now on, frames for the guest go to `sink` (`None`: the device
    /// is not running, drop them).
    fn set_sink(&mut self, sink: Option<FrameSink>);
}

/// The backend as the device shares it with its worker.
pub type SharedBackend = Arc<Mutex<Box<dyn NetBackend>>>;

/// A virtio-net device.
pub struct VirtioNet {
    mac: [u8; 6],
    backend: SharedBackend,
    worker: Option<Worker>,
}

struct Worker {
    events: Sender<Event>,
    thread: Option<JoinHandle<()>>,
}

enum Event {
    Notify(u16),
    Frame(Vec<u8>),
    Stop,
}

impl VirtioNet {
    /// A device with the MAC address `mac` over `backend`.
    pub fn new(mac: [u8; 6], backend: Box<dyn NetBackend>) -> Self {
        Self {
            mac,
            backend: Arc::new(Mutex::new(backend)),
            worker: None,
        }
    }

    /// The configuration space: mac[6], status (le16).
    fn config(&self) -> [u8; 8] {
        let mut c = [0; 8];
        c[..6].copy_from_slice(&self.mac);
        c[6..].copy_from_slice(&(VIRTIO_NET_S_LINK_UP as u16).to_le_bytes());
        c
    }

    fn stop(&mut self) {
        lock(&self.backend).set_sink(None);
        if let Some(mut w) = self.worker.take() {
            let _ = w.events.send(Event::Stop);
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
    }
}

fn lock(b: &SharedBackend) -> std::sync::MutexGuard<'_, Box<dyn NetBackend>> {
    b.lock().unwrap_or_else(|e| e.into_inner())
}

impl Drop for VirtioNet {
    fn drop(&mut self) {
        self.stop();
    }
}

impl VirtioDevice for VirtioNet {
    fn device_type(&self) -> u32 {
        id::NET
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE, QUEUE_SIZE]
    }

    fn device_features(&self) -> u64 {
        (1 << VIRTIO_NET_F_MAC) | (1 << VIRTIO_NET_F_STATUS)
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        super::read_config_bytes(&self.config(), offset, data);
    }

    fn activate(&mut self, act: Activation) -> Result<(), ActivateError> {
        self.stop();
        let Activation {
            mem,
            queues,
            interrupt,
            features,
        } = act;
        let mut rx = None;
        let mut tx = None;
        for (i, q) in queues {
            match i {
                RX_QUEUE => rx = Some(q),
                TX_QUEUE => tx = Some(q),
                _ => {}
            }
        }
        let mut rx = rx.ok_or(ActivateError::MissingQueue(RX_QUEUE))?;
        let mut tx = tx.ok_or(ActivateError::MissingQueue(TX_QUEUE))?;
        let event_idx = features & feature::RING_EVENT_IDX != 0;
        rx.set_event_idx(event_idx);
        tx.set_event_idx(event_idx);
        let (events, receiver) = mpsc::channel();
        let sink_events = events.clone();
        let worker = NetWorker {
            mem,
            rx,
            tx,
            interrupt,
            backend: self.backend.clone(),
            pending: VecDeque::new(),
            broken: false,
        };
        let thread = std::thread::Builder::new()
            .name("virtio-net".into())
            .spawn(move || worker.run(receiver))
            .map_err(|e| ActivateError::Backend(format!("virtio-net worker thread: {e}")))?;
        lock(&self.backend).set_sink(Some(Arc::new(move |frame| {
            let _ = sink_events.send(Event::Frame(frame));
        })));
        self.worker = Some(Worker {
            events,
            thread: Some(thread),
        });
        Ok(())
    }

    fn queue_notify(&mut self, index: u16) {
        if let Some(w) = &self.worker {
            let _ = w.events.send(Event::Notify(index));
        }
    }

    fn reset(&mut self) {
        self.stop();
    }

    fn name(&self) -> &'static str {
        "virtio-net"
    }
}

/// Why a chain cannot be used: all of these break the device.
#[derive(Debug, Error)]
enum ChainError {
    #[error("available ring: {0}")]
    Ring(virtio_queue::Error),
    #[error("descriptor chain of head {0} is broken (bad index, loop or unreadable table)")]
    Broken(u16),
    #[error("descriptor chain of head {0} has a buffer of the wrong direction")]
    Direction(u16),
    #[error("{0}")]
    Dma(#[from] DmaError),
}

/// The worker: owns the queues while the device runs.
struct NetWorker {
    mem: GuestRam,
    rx: Queue,
    tx: Queue,
    interrupt: Arc<dyn VirtioInterrupt>,
    backend: SharedBackend,
    pending: VecDeque<Vec<u8>>,
    broken: bool,
}

/// The guest buffers of one chain, checked: every descriptor of the wanted
/// direction, the chain properly ended.
fn chain_buffers(
    chain: DescriptorChain<&GuestMemoryMmap>,
    writable: bool,
) -> Result<Vec<(u64, u32)>, ChainError> {
    let head = chain.head_index();
    let mut bufs = Vec::new();
    let mut more = true;
    for d in chain {
        if d.is_write_only() != writable {
            return Err(ChainError::Direction(head));
        }
        more = d.has_next();
        if d.len() > 0 {
            bufs.push((d.addr().0, d.len()));
        }
    }
    // The chain iterator stops silently at a bad index, an unreadable
    // descriptor or after queue-size links (a loop): a last descriptor
    // that still points further means one of those.
    if more {
        return Err(ChainError::Broken(head));
    }
    Ok(bufs)
}

/// The next available chain of `q`, or `None` when the driver offered none.
fn next_chain<'m>(
    q: &mut Queue,
    mem: &'m GuestMemoryMmap,
) -> Result<Option<DescriptorChain<&'m GuestMemoryMmap>>, ChainError> {
    let mut it = q.iter(mem).map_err(ChainError::Ring)?;
    Ok(it.next())
}

impl NetWorker {
    fn run(mut self, events: Receiver<Event>) {
        while let Ok(ev) = events.recv() {
            let (mut tx, mut rx) = (false, false);
            let mut next = Some(ev);
            while let Some(ev) = next {
                match ev {
                    Event::Stop => return,
                    Event::Notify(TX_QUEUE) => tx = true,
                    Event::Notify(_) => rx = true,
                    Event::Frame(f) => {
                        if self.pending.len() < MAX_PENDING && !self.broken {
                            self.pending.push_back(f);
                        } else {
                            log::debug!(target: "virtio", "virtio-net: rx frame dropped ({} waiting)", self.pending.len());
                        }
                        rx = true;
                    }
                }
                next = events.try_recv().ok();
            }
            if self.broken {
                continue;
            }
            let mut r = Ok(());
            if tx {
                r = self.process_tx();
            }
            if r.is_ok() && rx {
                r = self.process_rx();
            }
            if let Err(e) = r {
                log::warn!(target: "guest_errors", "virtio-net: {e}; the device needs a reset");
                self.broken = true;
                self.pending.clear();
                self.interrupt.set_needs_reset();
            }
        }
    }

    /// Sends every frame the driver queued.
    fn process_tx(&mut self) -> Result<(), ChainError> {
        let ram = self.mem.clone();
        let mem = ram.memory();
        let mut used = false;
        loop {
            self.tx
                .disable_notification(mem)
                .map_err(ChainError::Ring)?;
            while let Some(chain) = next_chain(&mut self.tx, mem)? {
                let head = chain.head_index();
                let bufs = chain_buffers(chain, false)?;
                let total: u64 = bufs.iter().map(|&(_, l)| u64::from(l)).sum();
                if total > (HDR_LEN + MAX_FRAME) as u64 {
                    log::debug!(target: "guest_errors", "virtio-net: tx chain of {total} bytes dropped");
                } else {
                    let mut data = vec![0; total as usize];
                    let mut at = 0;
                    for (addr, len) in bufs {
                        ram.read(addr, &mut data[at..at + len as usize])?;
                        at += len as usize;
                    }
                    self.transmit(&data);
                }
                super::add_used(&mut self.tx, &ram, head, 0).map_err(ChainError::Ring)?;
                used = true;
            }
            if !super::enable_notification(&mut self.tx, &ram).map_err(ChainError::Ring)? {
                break;
            }
        }
        if used {
            super::notify_used(&mut self.tx, &ram, &*self.interrupt, TX_QUEUE);
        }
        Ok(())
    }

    /// Checks a transmitted buffer's header and hands its frame out.
    fn transmit(&mut self, data: &[u8]) {
        if data.len() < HDR_LEN + 14 {
            log::debug!(target: "guest_errors", "virtio-net: tx buffer of {} bytes has no frame", data.len());
            return;
        }
        let (flags, gso) = (data[0], data[1]);
        if flags != 0 || gso != VIRTIO_NET_HDR_GSO_NONE as u8 {
            log::debug!(target: "guest_errors", "virtio-net: tx header asks for offloads never offered (flags {flags:#x}, gso {gso:#x}); frame dropped");
            return;
        }
        log::trace!(target: "virtio", "virtio-net: tx {} bytes", data.len() - HDR_LEN);
        lock(&self.backend).send(&data[HDR_LEN..]);
    }

    /// Gives waiting frames to the driver's receive buffers.
    fn process_rx(&mut self) -> Result<(), ChainError> {
        let ram = self.mem.clone();
        let mem = ram.memory();
        let mut used = false;
        while let Some(frame) = self.pending.front() {
            let Some(chain) = next_chain(&mut self.rx, mem)? else {
                // No buffer: ask to be told when the driver adds one (and
                // look again if it did meanwhile).
                if super::enable_notification(&mut self.rx, &ram).map_err(ChainError::Ring)? {
                    continue;
                }
                break;
            };
            let head = chain.head_index();
            let bufs = chain_buffers(chain, true)?;
            let total: u64 = bufs.iter().map(|&(_, l)| u64::from(l)).sum();
            let len = HDR_LEN + frame.len();
            let written = if total < len as u64 {
                log::debug!(target: "guest_errors", "virtio-net: rx buffer of {total} bytes too small for a frame of {}; dropped", frame.len());
                0
            } else {
                let mut data = Vec::with_capacity(len);
                data.extend_from_slice(&rx_header());
                data.extend_from_slice(frame);
                let mut at = 0;
                for (addr, blen) in bufs {
                    if at == len {
                        break;
                    }
                    let n = (blen as usize).min(len - at);
                    ram.write(addr, &data[at..at + n])?;
                    at += n;
                }
                log::trace!(target: "virtio", "virtio-net: rx {} bytes", frame.len());
                len as u32
            };
            self.pending.pop_front();
            super::add_used(&mut self.rx, &ram, head, written).map_err(ChainError::Ring)?;
            used = true;
        }
        if used {
            super::notify_used(&mut self.rx, &ram, &*self.interrupt, RX_QUEUE);
        }
        Ok(())
    }
}

/// The header of a received frame: no offload, one buffer.
fn rx_header() -> [u8; HDR_LEN] {
    let mut h = [0; HDR_LEN];
    h[10..12].copy_from_slice(&1u16.to_le_bytes());
    h
}

#[cfg(test)]
#[path = "net_tests.rs"]
mod tests;
