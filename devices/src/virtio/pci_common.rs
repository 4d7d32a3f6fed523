//! The virtio-pci transport's registers in its memory BAR (virtio 1.2,
//! 4.1.4): common configuration, ISR, device configuration and notify
//! regions, and what the driver's writes do: feature negotiation, queue
//! setup, device status with reset, activation at DRIVER_OK.
//!
//! This state sits behind the BAR's lock (the vCPU thread holds it while a
//! register access runs, including [`VirtioDevice::queue_notify`]); the
//! interrupt state it shares with device workers has its own lock
//! ([`VirtioPciInterrupt`]).

use std::sync::Arc;

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestAddress;

use super::msix::NO_VECTOR;
use super::pci_irq::VirtioPciInterrupt;
use super::{feature, Activation, VirtioDevice, VirtioInterrupt};
use crate::bus::{BusDevice, VmRequest};
use crate::dma::GuestRam;

/// Layout of the BAR: each region is 4 KiB, as QEMU's.
pub const COMMON_OFFSET: u64 = 0x0000;
pub const ISR_OFFSET: u64 = 0x1000;
pub const DEVICE_OFFSET: u64 = 0x2000;
pub const NOTIFY_OFFSET: u64 = 0x3000;
pub const REGION_SIZE: u64 = 0x1000;
/// The BAR's size.
pub const BAR_SIZE: u64 = 0x4000;
/// Queue `q` is notified at `NOTIFY_OFFSET + q * NOTIFY_OFF_MULTIPLIER`.
pub const NOTIFY_OFF_MULTIPLIER: u32 = 4;
/// The common configuration structure's size (up to `queue_reset`).
pub const COMMON_SIZE: u64 = 0x3c;

/// Device status bits (virtio 1.2, 2.1).
pub mod status {
    pub const ACKNOWLEDGE: u8 = 1;
    pub const DRIVER: u8 = 2;
    pub const DRIVER_OK: u8 = 4;
    pub const FEATURES_OK: u8 = 8;
    pub const NEEDS_RESET: u8 = 0x40;
    pub const FAILED: u8 = 0x80;
}

/// The transport's own feature bits.
pub const TRANSPORT_FEATURES: u64 =
    feature::VERSION_1 | feature::RING_EVENT_IDX | feature::RING_INDIRECT_DESC;

/// What the driver programmed for one queue.
#[derive(Clone, Debug)]
struct QueueConfig {
    max: u16,
    size: u16,
    enabled: bool,
    desc: u64,
    driver: u64,
    device: u64,
}

impl QueueConfig {
    fn new(max: u16) -> Self {
        Self {
            max,
            size: max,
            enabled: false,
            desc: 0,
            driver: 0,
            device: 0,
        }
    }
}

/// The transport state and the device model behind the memory BAR.
pub struct VirtioPciDevice {
    dev: Box<dyn VirtioDevice>,
    ram: GuestRam,
    irq: Arc<VirtioPciInterrupt>,
    name: String,
    device_features: u64,
    device_feature_select: u32,
    driver_feature_select: u32,
    driver_features: u64,
    status: u8,
    queue_select: u16,
    queues: Vec<QueueConfig>,
    active: bool,
}

fn set_half(v: &mut u64, high: bool, x: u32) {
    *v = if high {
        (*v & 0xffff_ffff) | u64::from(x) << 32
    } else {
        (*v & !0xffff_ffff) | u64::from(x)
    };
}

impl VirtioPciDevice {
    /// `name` identifies the function in logs ("virtio-rng 00:02.0").
    pub fn new(
        dev: Box<dyn VirtioDevice>,
        ram: GuestRam,
        irq: Arc<VirtioPciInterrupt>,
        name: String,
    ) -> Self {
        let queues = dev
            .queue_max_sizes()
            .into_iter()
            .map(QueueConfig::new)
            .collect();
        let device_features = dev.device_features() | TRANSPORT_FEATURES;
        Self {
            dev,
            ram,
            irq,
            name,
            device_features,
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            status: 0,
            queue_select: 0,
            queues,
            active: false,
        }
    }

    /// The device model (for inspection).
    pub fn device(&self) -> &dyn VirtioDevice {
        &*self.dev
    }

    /// The device status as the driver reads it.
    pub fn status(&self) -> u8 {
        self.status
            | if self.irq.needs_reset() {
                status::NEEDS_RESET
            } else {
                0
            }
    }

    /// The features the driver accepted.
    pub fn driver_features(&self) -> u64 {
        self.driver_features
    }

    fn selected(&self) -> Option<&QueueConfig> {
        self.queues.get(usize::from(self.queue_select))
    }

    /// The common configuration register at `reg` (its start) and its size.
    fn common_reg(&self, off: u64) -> Option<(u64, u64, u64)> {
        let q = self.selected();
        let sel = self.queue_select;
        let (start, size, v) = match off {
            0x00..=0x03 => (0x00, 4, u64::from(self.device_feature_select)),
            0x04..=0x07 => {
                let v = match self.device_feature_select {
                    0 => self.device_features & 0xffff_ffff,
                    1 => self.device_features >> 32,
                    _ => 0,
                };
                (0x04, 4, v)
            }
            0x08..=0x0b => (0x08, 4, u64::from(self.driver_feature_select)),
            0x0c..=0x0f => {
                let v = match self.driver_feature_select {
                    0 => self.driver_features & 0xffff_ffff,
                    1 => self.driver_features >> 32,
                    _ => 0,
                };
                (0x0c, 4, v)
            }
            0x10..=0x11 => (0x10, 2, u64::from(self.irq.config_vector())),
            0x12..=0x13 => (0x12, 2, self.queues.len() as u64),
            0x14 => (0x14, 1, u64::from(self.status())),
            0x15 => (0x15, 1, u64::from(self.irq.generation())),
            0x16..=0x17 => (0x16, 2, u64::from(sel)),
            0x18..=0x19 => (0x18, 2, q.map_or(0, |q| u64::from(q.size))),
            0x1a..=0x1b => (
                0x1a,
                2,
                q.map_or(u64::from(NO_VECTOR), |_| {
                    u64::from(self.irq.queue_vector(sel))
                }),
            ),
            0x1c..=0x1d => (0x1c, 2, q.map_or(0, |q| u64::from(q.enabled))),
            // queue_notify_off: the queue's index.
            0x1e..=0x1f => (0x1e, 2, q.map_or(0, |_| u64::from(sel))),
            0x20..=0x27 => (0x20, 8, q.map_or(0, |q| q.desc)),
            0x28..=0x2f => (0x28, 8, q.map_or(0, |q| q.driver)),
            0x30..=0x37 => (0x30, 8, q.map_or(0, |q| q.device)),
            // queue_notify_data (without NOTIFICATION_DATA: the index).
            0x38..=0x39 => (0x38, 2, q.map_or(0, |_| u64::from(sel))),
            // queue_reset: RING_RESET is not offered.
            0x3a..=0x3b => (0x3a, 2, 0),
            _ => return None,
        };
        Some((start, size, v))
    }

    fn read_common(&self, offset: u64, data: &mut [u8]) {
        for (i, d) in data.iter_mut().enumerate() {
            let o = offset.saturating_add(i as u64);
            *d = match self.common_reg(o) {
                Some((start, _, v)) => (v >> (8 * (o - start))) as u8,
                None => 0,
            };
        }
    }

    fn write_common(&mut self, offset: u64, data: &[u8]) {
        let Some((start, size, _)) = self.common_reg(offset) else {
            log::debug!(target: "guest_errors", "{}: write to common config {offset:#x} ignored", self.name);
            return;
        };
        let len = data.len() as u64;
        // Whole registers, or a 32-bit half of a 64-bit one.
        let half = size == 8 && len == 4 && (offset == start || offset == start + 4);
        let whole = offset == start && len == size;
        if !whole && !half {
            log::debug!(target: "guest_errors", "{}: {len}-byte write at common config {offset:#x} ignored", self.name);
            return;
        }
        let mut b = [0u8; 8];
        b[..data.len()].copy_from_slice(data);
        let v = u64::from_le_bytes(b);
        let high = offset != start;
        let live = self.status & status::DRIVER_OK != 0;
        let sel = self.queue_select;
        match start {
            0x00 => self.device_feature_select = v as u32,
            0x08 => self.driver_feature_select = v as u32,
            0x0c => {
                if self.status & status::FEATURES_OK != 0 {
                    log::debug!(target: "guest_errors", "{}: driver features written after FEATURES_OK", self.name);
                } else {
                    match self.driver_feature_select {
                        0 => set_half(&mut self.driver_features, false, v as u32),
                        1 => set_half(&mut self.driver_features, true, v as u32),
                        _ => {}
                    }
                }
            }
            0x10 => self.irq.set_config_vector(v as u16),
            0x14 => self.set_status(v as u8),
            0x16 => self.queue_select = v as u16,
            0x1a => {
                if self.selected().is_some() {
                    self.irq.set_queue_vector(sel, v as u16);
                }
            }
            0x18 | 0x1c | 0x20 | 0x28 | 0x30 if live => {
                log::debug!(target: "guest_errors", "{}: queue {sel} changed after DRIVER_OK: ignored", self.name);
            }
            0x18 | 0x1c | 0x20 | 0x28 | 0x30 => {
                let Some(q) = self.queues.get_mut(usize::from(sel)) else {
                    return;
                };
                match start {
                    // Checked (power of two, at most the maximum) when the
                    // queue goes live.
                    0x18 => q.size = v as u16,
                    0x1c if v == 1 => q.enabled = true,
                    0x1c => {}
                    0x20 => set_half(&mut q.desc, high, v as u32),
                    0x28 => set_half(&mut q.driver, high, v as u32),
                    _ => set_half(&mut q.device, high, v as u32),
                }
                if size == 8 && len == 8 {
                    let f = match start {
                        0x20 => &mut q.desc,
                        0x28 => &mut q.driver,
                        _ => &mut q.device,
                    };
                    *f = v;
                }
            }
            _ => {
                log::debug!(target: "guest_errors", "{}: write to read-only common config {offset:#x}", self.name)
            }
        }
    }

    fn set_status(&mut self, v: u8) {
        if v == 0 {
            self.reset();
            return;
        }
        let old = self.status;
        let mut v = v & !status::NEEDS_RESET;
        if v & status::FEATURES_OK != 0 && old & status::FEATURES_OK == 0 {
            let extra = self.driver_features & !self.device_features;
            if extra != 0 || self.driver_features & feature::VERSION_1 == 0 {
                log::debug!(target: "virtio", "{}: features {:#x} refused (offered {:#x})", self.name, self.driver_features, self.device_features);
                v &= !status::FEATURES_OK;
            } else {
                log::debug!(target: "virtio", "{}: features {:#x} accepted", self.name, self.driver_features);
            }
        }
        self.status = v;
        if v & status::DRIVER_OK != 0 && old & status::DRIVER_OK == 0 {
            self.activate();
        }
    }

    /// The queues the driver enabled, checked and built.
    fn build_queues(&self) -> Result<Vec<(u16, Queue)>, String> {
        let mut out = Vec::new();
        let event_idx = self.driver_features & feature::RING_EVENT_IDX != 0;
        for (i, c) in self.queues.iter().enumerate() {
            if !c.enabled {
                continue;
            }
            let mut q = Queue::new(c.max).map_err(|e| format!("queue {i}: {e}"))?;
            q.try_set_size(c.size)
                .map_err(|e| format!("queue {i}: size {}: {e}", c.size))?;
            q.try_set_desc_table_address(GuestAddress(c.desc))
                .map_err(|e| format!("queue {i}: descriptor table {:#x}: {e}", c.desc))?;
            q.try_set_avail_ring_address(GuestAddress(c.driver))
                .map_err(|e| format!("queue {i}: driver area {:#x}: {e}", c.driver))?;
            q.try_set_used_ring_address(GuestAddress(c.device))
                .map_err(|e| format!("queue {i}: device area {:#x}: {e}", c.device))?;
            q.set_event_idx(event_idx);
            q.set_ready(true);
            if !q.is_valid(self.ram.memory()) {
                return Err(format!("queue {i}: rings outside guest RAM"));
            }
            out.push((i as u16, q));
        }
        Ok(out)
    }

    fn activate(&mut self) {
        if self.status & status::FEATURES_OK == 0 {
            log::debug!(target: "guest_errors", "{}: DRIVER_OK without FEATURES_OK", self.name);
            self.irq.set_needs_reset();
            return;
        }
        let queues = match self.build_queues() {
            Ok(q) => q,
            Err(e) => {
                log::debug!(target: "guest_errors", "{}: cannot start: {e}", self.name);
                self.irq.set_needs_reset();
                return;
            }
        };
        let interrupt: Arc<dyn VirtioInterrupt> = self.irq.clone();
        let act = Activation {
            mem: self.ram.clone(),
            queues,
            interrupt,
            features: self.driver_features,
        };
        match self.dev.activate(act) {
            Ok(()) => {
                log::debug!(target: "virtio", "{}: activated (features {:#x})", self.name, self.driver_features);
                self.active = true;
            }
            Err(e) => {
                log::debug!(target: "virtio", "{}: activation failed: {e}", self.name);
                self.irq.set_needs_reset();
            }
        }
    }

    /// Device reset (status 0).
    pub fn reset(&mut self) {
        log::debug!(target: "virtio", "{}: reset", self.name);
        self.dev.reset();
        self.active = false;
        self.status = 0;
        self.device_feature_select = 0;
        self.driver_feature_select = 0;
        self.driver_features = 0;
        self.queue_select = 0;
        for q in &mut self.queues {
            *q = QueueConfig::new(q.max);
        }
        self.irq.reset();
    }

    fn notify(&mut self, offset: u64) {
        let q = offset / u64::from(NOTIFY_OFF_MULTIPLIER);
        let enabled = usize::try_from(q)
            .ok()
            .and_then(|q| self.queues.get(q))
            .is_some_and(|c| c.enabled);
        if !self.active || !enabled {
            log::debug!(target: "guest_errors", "{}: notify of queue {q} ignored (not live)", self.name);
            return;
        }
        log::trace!(target: "virtio", "{}: notify queue {q}", self.name);
        self.dev.queue_notify(q as u16);
    }
}

impl BusDevice for VirtioPciDevice {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let (region, off) = (offset / REGION_SIZE, offset % REGION_SIZE);
        match region {
            0 => self.read_common(off, data),
            1 => {
                data.fill(0);
                if let Some(d) = data.first_mut() {
                    if off == 0 {
                        *d = self.irq.read_isr();
                    }
                }
            }
            2 => self.dev.read_config(off, data),
            _ => data.fill(0),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Option<VmRequest> {
        let (region, off) = (offset / REGION_SIZE, offset % REGION_SIZE);
        match region {
            0 => self.write_common(off, data),
            2 => self.dev.write_config(off, data),
            3 => self.notify(off),
            _ => {
                log::debug!(target: "guest_errors", "{}: write to BAR offset {offset:#x} ignored", self.name)
            }
        }
        None
    }
}
