//! virtio devices (virtio 1.x, "modern") and the interface between a device
//! model and its transport (virtio-pci, `pci.rs`).
//!
//! A device model implements [`VirtioDevice`]: its type, queue sizes,
//! feature bits and configuration space. The transport negotiates
//! features, collects the queue addresses the driver programs and, when the
//! driver sets DRIVER_OK, hands the device its ready queues
//! ([`VirtioDevice::activate`]). From then on the transport calls
//! [`VirtioDevice::queue_notify`] on the vCPU thread that wrote a notify
//! register: a device that may block (disk, network) wakes a worker thread
//! there and does the I/O off the vCPU thread. A device puts buffers back
//! with [`add_used`] (which tells the DBT), then [`notify_used`] (asks
//! `needs_notification` for EVENT_IDX and calls
//! [`VirtioInterrupt::signal_used_queue`]). It serves a queue until
//! [`enable_notification`] says nothing more is there: with EVENT_IDX that
//! call also publishes `avail_event`, without which the driver stops
//! notifying after its first kick.
//!
//! Guest memory: descriptors are read with `virtio_queue` over
//! [`GuestRam::memory`]; every data write into guest RAM goes through
//! [`GuestRam::write`] (which tells the DBT). A malformed descriptor
//! (outside RAM, a loop, a wrong direction, a bad length) ends that request
//! with the device's error status, or, where the device has none, marks the
//! device broken ([`VirtioInterrupt::set_needs_reset`]); never a panic.
//!
//! The transport offers `VIRTIO_F_VERSION_1`, `VIRTIO_RING_F_EVENT_IDX`
//! and `VIRTIO_RING_F_INDIRECT_DESC` on top of [`VirtioDevice::device_features`].

pub mod block;
pub mod block_image;
#[cfg(test)]
mod block_image_tests;
#[cfg(test)]
mod block_malformed_tests;
mod block_overlay;
mod block_request;
#[cfg(test)]
mod block_rig;
#[cfg(test)]
mod block_tests;
pub mod console;
pub mod msix;
pub mod net;
pub mod pci;
pub mod pci_common;
pub mod pci_irq;
pub mod rng;
#[cfg(test)]
mod test_driver;

use std::sync::Arc;

use thiserror::Error;
use virtio_queue::{Queue, QueueT};

use crate::dma::GuestRam;

pub use msix::MsiSink;
pub use pci::{VirtioPci, VirtioPciWiring};

/// virtio device IDs (virtio 1.2, 5).
pub mod id {
    pub const NET: u32 = 1;
    pub const BLOCK: u32 = 2;
    pub const CONSOLE: u32 = 3;
    pub const RNG: u32 = 4;
}

/// Feature bits every device gets from the transport.
pub mod feature {
    pub const RING_INDIRECT_DESC: u64 = 1 << 28;
    pub const RING_EVENT_IDX: u64 = 1 << 29;
    pub const VERSION_1: u64 = 1 << 32;
}

/// How a device tells the driver something happened; the transport maps it
/// to an MSI-X vector (per queue / configuration) or to INTx with the ISR.
pub trait VirtioInterrupt: Send + Sync {
    /// Queue `index` has new used buffers.
    fn signal_used_queue(&self, index: u16);
    /// The device configuration space changed.
    fn signal_config_change(&self);
    /// The device hit an error it cannot report per request: sets
    /// DEVICE_NEEDS_RESET in the status and signals a configuration change.
    fn set_needs_reset(&self);
}

/// What a device gets when the driver sets DRIVER_OK.
pub struct Activation {
    /// Guest RAM (reads, and every data write).
    pub mem: GuestRam,
    /// The queues the driver enabled, with their indices, in index order.
    pub queues: Vec<(u16, Queue)>,
    /// The interrupt path.
    pub interrupt: Arc<dyn VirtioInterrupt>,
    /// The features the driver accepted (transport bits included).
    pub features: u64,
}

/// Why a device refused to start.
#[derive(Debug, Error)]
pub enum ActivateError {
    #[error("queue {0} is required but was not enabled")]
    MissingQueue(u16),
    #[error("{0}")]
    Backend(String),
}

/// A virtio device model, behind a transport.
pub trait VirtioDevice: Send {
    /// Its virtio device ID ([`id`]).
    fn device_type(&self) -> u32;
    /// The largest size of each of its queues (their number is the length).
    fn queue_max_sizes(&self) -> Vec<u16>;
    /// Its device-specific feature bits (the transport adds its own).
    fn device_features(&self) -> u64;
    /// Reads `data.len()` bytes of its configuration space at `offset`;
    /// bytes beyond it read as 0.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// The driver writes its configuration space (most fields are read-only).
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    /// The driver set DRIVER_OK: start serving.
    fn activate(&mut self, act: Activation) -> Result<(), ActivateError>;
    /// The driver notified queue `index`. Called on a vCPU thread: never
    /// blocks on I/O.
    fn queue_notify(&mut self, index: u16);
    /// Device reset (status 0): stop serving, drop the queues, forget the
    /// negotiated state. Workers are stopped before this returns.
    fn reset(&mut self);
    /// A short name for logs and `info pci` ("virtio-blk").
    fn name(&self) -> &'static str;
}

/// [`VirtioDevice::read_config`] over a configuration space held as bytes:
/// `data.len()` bytes at `offset`, those beyond `space` read as 0.
pub fn read_config_bytes(space: &[u8], offset: u64, data: &mut [u8]) {
    for (i, b) in data.iter_mut().enumerate() {
        *b = usize::try_from(offset)
            .ok()
            .and_then(|o| o.checked_add(i))
            .and_then(|o| space.get(o).copied())
            .unwrap_or(0);
    }
}

/// Puts the chain `head` back in `queue`'s used ring with `len` bytes
/// written, telling the DBT the used ring changed (the ring is written
/// through [`GuestRam::memory`]). An error means the ring is outside guest
/// RAM: the device should [`VirtioInterrupt::set_needs_reset`].
pub fn add_used(
    queue: &mut Queue,
    ram: &GuestRam,
    head: u16,
    len: u32,
) -> Result<(), virtio_queue::Error> {
    queue.add_used(ram.memory(), head, len)?;
    // flags, idx, the ring, avail_event.
    let bytes = 6 + 8 * u64::from(queue.size());
    ram.written(queue.used_ring(), bytes);
    Ok(())
}

/// Re-arms driver notifications for `queue` (with EVENT_IDX: publishes
/// `avail_event`, telling the DBT) and returns whether more chains arrived
/// meanwhile (serve them before sleeping). Call it after each batch; an
/// error means the rings are outside guest RAM.
pub fn enable_notification(queue: &mut Queue, ram: &GuestRam) -> Result<bool, virtio_queue::Error> {
    let more = queue.enable_notification(ram.memory())?;
    ram.written(queue.used_ring(), 6 + 8 * u64::from(queue.size()));
    Ok(more)
}

/// After a batch of [`add_used`]: interrupts the driver for queue `index`
/// unless it asked not to be (`EVENT_IDX` or the `NO_INTERRUPT` flag).
pub fn notify_used(queue: &mut Queue, ram: &GuestRam, irq: &dyn VirtioInterrupt, index: u16) {
    // A ring outside RAM (needs_notification fails): interrupt anyway.
    if queue.needs_notification(ram.memory()).unwrap_or(true) {
        irq.signal_used_queue(index);
    }
}
