//! virtio-rng (virtio 1.2, 5.4): one queue of device-writable buffers the
//! device fills with entropy from the host's `getrandom`. Requests are
//! small and `getrandom` does not block once the host's pool is ready, so
//! they are served on the notifying vCPU thread.
//!
//! A malformed chain (a device-readable descriptor, an address outside
//! guest RAM or in ROM) is returned with nothing written (used length 0);
//! a chain looping back on itself ends after the queue size's worth of
//! descriptors (virtio-queue's bound); an available index more than a
//! queue ahead or a used ring outside RAM marks the device NEEDS_RESET.

use std::sync::Arc;

use virtio_queue::{Queue, QueueOwnedT};

use super::{
    add_used, enable_notification, id, notify_used, ActivateError, Activation, VirtioDevice,
    VirtioInterrupt,
};
use crate::dma::GuestRam;

/// The queue's size.
pub const RNG_QUEUE_SIZE: u16 = 256;
/// At most this many bytes per request (a driver offering more gets this
/// many; the used length says so).
pub const MAX_REQUEST: usize = 64 * 1024;

struct Live {
    queue: Queue,
    ram: GuestRam,
    irq: Arc<dyn VirtioInterrupt>,
    broken: bool,
}

/// The entropy device.
#[derive(Default)]
pub struct VirtioRng {
    live: Option<Live>,
    /// Bytes handed to the guest (for tests and `info`).
    served: u64,
}

impl VirtioRng {
    /// A device not yet activated.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes the guest has received.
    pub fn served(&self) -> u64 {
        self.served
    }
}

/// Fills `buf` from the host's `getrandom` (retrying short reads and EINTR).
fn host_random(buf: &mut [u8]) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: the pointer and length describe `rest`, a live, writable
        // slice; getrandom writes at most that many bytes into it.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        done += n as usize;
    }
    Ok(())
}

/// Serves one chain: the bytes written, or `None` when it is malformed.
fn fill_chain(ram: &GuestRam, descs: impl Iterator<Item = (u64, u32, bool)>) -> Option<u32> {
    let mut total = 0usize;
    let mut buf = Vec::new();
    for (addr, len, writable) in descs {
        if !writable {
            log::debug!(target: "guest_errors", "virtio-rng: device-readable buffer at {addr:#x}");
            return None;
        }
        let n = (len as usize).min(MAX_REQUEST - total);
        if n == 0 {
            continue;
        }
        buf.resize(n, 0);
        if let Err(e) = host_random(&mut buf) {
            log::warn!(target: "virtio", "virtio-rng: getrandom: {e}");
            return None;
        }
        if let Err(e) = ram.write(addr, &buf) {
            log::debug!(target: "guest_errors", "virtio-rng: {e}");
            return None;
        }
        total += n;
    }
    Some(total as u32)
}

impl Live {
    /// Serves what the driver made available, until
    /// [`enable_notification`] finds nothing more.
    fn process(&mut self) -> u64 {
        let mut served = 0u64;
        while !self.broken {
            served += self.batch();
            match enable_notification(&mut self.queue, &self.ram) {
                Ok(true) => continue,
                Ok(false) => break,
                Err(_) => self.broken = true,
            }
        }
        log::trace!(target: "virtio", "virtio-rng: served {served} bytes");
        served
    }

    /// One pass over the available ring.
    fn batch(&mut self) -> u64 {
        let mut served = 0u64;
        let mut heads = Vec::new();
        let mem = self.ram.memory();
        match self.queue.iter(mem) {
            Ok(iter) => {
                for chain in iter {
                    let head = chain.head_index();
                    let descs = chain.map(|d| (d.addr().0, d.len(), d.is_write_only()));
                    let n = fill_chain(&self.ram, descs).unwrap_or(0);
                    served += u64::from(n);
                    heads.push((head, n));
                }
            }
            Err(e) => {
                log::debug!(target: "guest_errors", "virtio-rng: queue: {e}");
                self.broken = true;
            }
        }
        let any = !heads.is_empty();
        for (head, n) in heads {
            if add_used(&mut self.queue, &self.ram, head, n).is_err() {
                self.broken = true;
                break;
            }
        }
        if self.broken {
            self.irq.set_needs_reset();
        } else if any {
            notify_used(&mut self.queue, &self.ram, &*self.irq, 0);
        }
        served
    }
}

impl VirtioDevice for VirtioRng {
    fn device_type(&self) -> u32 {
        id::RNG
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![RNG_QUEUE_SIZE]
    }

    fn device_features(&self) -> u64 {
        0
    }

    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn activate(&mut self, act: Activation) -> Result<(), ActivateError> {
        let Some((0, queue)) = act.queues.into_iter().next() else {
            return Err(ActivateError::MissingQueue(0));
        };
        self.live = Some(Live {
            queue,
            ram: act.mem,
            irq: act.interrupt,
            broken: false,
        });
        Ok(())
    }

    fn queue_notify(&mut self, index: u16) {
        if index != 0 {
            return;
        }
        if let Some(l) = self.live.as_mut() {
            self.served += l.process();
        }
    }

    fn reset(&mut self) {
        self.live = None;
    }

    fn name(&self) -> &'static str {
        "virtio-rng"
    }
}

#[cfg(test)]
#[path = "rng_tests.rs"]
mod tests;
