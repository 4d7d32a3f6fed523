//! Address-range buses for port I/O and MMIO.
//!
//! A [`Bus`] maps non-overlapping `[base, base + len)` ranges to devices. Each
//! device sits behind its own mutex, so two vCPUs touching different devices
//! never contend.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use thiserror::Error;

/// What a device write may ask of the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmRequest {
    /// Stop the emulator with this process exit code.
    Exit(i32),
    /// Reset the machine (e.g. the i8042 reset line).
    Reset,
    /// Power the machine off (e.g. ACPI S5).
    PowerOff,
}

/// A device that handles accesses to a range of a [`Bus`].
///
/// Devices must accept any `offset` and any `data` length (including zero and
/// lengths larger than their registers): guests are hostile.
pub trait BusDevice: Send {
    /// `offset` is relative to the base the device was inserted at.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// `offset` is relative to the base the device was inserted at.
    fn write(&mut self, offset: u64, data: &[u8]) -> Option<VmRequest>;
}

/// An interrupt line a device drives.
pub trait IrqLine: Send + Sync {
    /// Drive the line to `level` (true = asserted).
    fn set_level(&self, level: bool);
}

/// An interrupt line connected to nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoIrq;

impl IrqLine for NoIrq {
    fn set_level(&self, _level: bool) {}
}

/// Errors of [`Bus::insert`].
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BusError {
    /// The range has no length.
    #[error("zero-length bus range at {base:#x}")]
    ZeroLength {
        /// Base of the rejected range.
        base: u64,
    },
    /// `base + len` does not fit in 64 bits.
    #[error("bus range {base:#x}+{len:#x} overflows the address space")]
    Overflow {
        /// Base of the rejected range.
        base: u64,
        /// Length of the rejected range.
        len: u64,
    },
    /// The range overlaps a device already on the bus.
    #[error("bus range {base:#x}+{len:#x} overlaps an existing device")]
    Overlap {
        /// Base of the rejected range.
        base: u64,
        /// Length of the rejected range.
        len: u64,
    },
}

/// One device range: `[base, base + len)`.
#[derive(Clone)]
struct Entry {
    len: u64,
    dev: Arc<Mutex<dyn BusDevice>>,
}

/// Decodes the accesses no fixed range of a [`Bus`] claims, by absolute
/// address: on a PC, the PCI devices' BARs, which the guest can move.
pub trait BusFallback: Send + Sync {
    /// Read at `addr`; false when nothing is there (`data` is left alone).
    fn read(&self, addr: u64, data: &mut [u8]) -> bool;
    /// Write at `addr`: `None` when nothing is there, else the device's
    /// request.
    fn write(&self, addr: u64, data: &[u8]) -> Option<Option<VmRequest>>;
}

/// A map of address ranges to devices.
#[derive(Clone, Default)]
pub struct Bus {
    devices: BTreeMap<u64, Entry>,
    fallback: Option<Arc<dyn BusFallback>>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut l = f.debug_list();
        for (base, e) in &self.devices {
            l.entry(&format_args!("{:#x}..{:#x}", base, base + e.len));
        }
        l.finish()
    }
}

/// Lock a device, ignoring poisoning: a device that panicked on one vCPU must
/// not take the whole machine down with further panics.
fn lock<'a>(dev: &'a Mutex<dyn BusDevice + 'static>) -> MutexGuard<'a, dyn BusDevice + 'static> {
    dev.lock().unwrap_or_else(|e| e.into_inner())
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Put `dev` at `[base, base + len)`.
    pub fn insert(
        &mut self,
        dev: Arc<Mutex<dyn BusDevice>>,
        base: u64,
        len: u64,
    ) -> Result<(), BusError> {
        if len == 0 {
            return Err(BusError::ZeroLength { base });
        }
        let end = base
            .checked_add(len - 1)
            .ok_or(BusError::Overflow { base, len })?;
        // The closest range starting at or below our last byte must end before
        // our first byte.
        if let Some((&b, e)) = self.devices.range(..=end).next_back() {
            if b + (e.len - 1) >= base {
                return Err(BusError::Overlap { base, len });
            }
        }
        self.devices.insert(base, Entry { len, dev });
        Ok(())
    }

    /// Remove the device inserted at exactly `base`; returns it if any.
    pub fn remove(&mut self, base: u64) -> Option<Arc<Mutex<dyn BusDevice>>> {
        self.devices.remove(&base).map(|e| e.dev)
    }

    /// Send the accesses no inserted range covers to `f` (replacing any
    /// earlier fallback).
    pub fn set_fallback(&mut self, f: Arc<dyn BusFallback>) {
        self.fallback = Some(f);
    }

    /// The device covering `addr` and `addr`'s offset into it.
    pub fn get_device(&self, addr: u64) -> Option<(u64, &Arc<Mutex<dyn BusDevice>>)> {
        let (&base, e) = self.devices.range(..=addr).next_back()?;
        let off = addr - base;
        (off < e.len).then_some((off, &e.dev))
    }

    /// Read `data.len()` bytes at `addr`. Returns false when no device covers
    /// `addr`; `data` is then filled with 0xff.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.get_device(addr) {
            Some((off, dev)) => {
                lock(dev).read(off, data);
                true
            }
            None => {
                data.fill(0xff);
                if self.fallback.as_ref().is_some_and(|f| f.read(addr, data)) {
                    return true;
                }
                log::debug!(target: "ioport", "unhandled read of {} bytes at {:#x}", data.len(), addr);
                false
            }
        }
    }

    /// Write `data` at `addr`. Returns the device's request, or None when the
    /// device has none or no device covers `addr` (logged under "ioport").
    pub fn write(&self, addr: u64, data: &[u8]) -> Option<VmRequest> {
        match self.get_device(addr) {
            Some((off, dev)) => lock(dev).write(off, data),
            None => {
                if let Some(r) = self.fallback.as_ref().and_then(|f| f.write(addr, data)) {
                    return r;
                }
                log::debug!(target: "ioport", "unhandled write of {:x?} at {:#x}", data, addr);
                None
            }
        }
    }
}

/// Little-endian value of up to the first 8 bytes of `data`.
pub(crate) fn le_value(data: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = data.len().min(8);
    b[..n].copy_from_slice(&data[..n]);
    u64::from_le_bytes(b)
}

/// Fill `data` with the little-endian bytes of `value` (zero beyond 8 bytes).
pub(crate) fn fill_le(data: &mut [u8], value: u64) {
    let b = value.to_le_bytes();
    for (i, d) in data.iter_mut().enumerate() {
        *d = b.get(i).copied().unwrap_or(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the last offset and echoes it back as data.
    struct Echo {
        last: Option<(u64, Vec<u8>)>,
    }

    impl BusDevice for Echo {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            fill_le(data, offset);
        }
        fn write(&mut self, offset: u64, data: &[u8]) -> Option<VmRequest> {
            self.last = Some((offset, data.to_vec()));
            (data == [0xee]).then_some(VmRequest::Reset)
        }
    }

    fn echo() -> Arc<Mutex<Echo>> {
        Arc::new(Mutex::new(Echo { last: None }))
    }

    #[test]
    fn insert_rejects_zero_len_overlap_and_overflow() {
        let mut bus = Bus::new();
        assert_eq!(
            bus.insert(echo(), 0x10, 0),
            Err(BusError::ZeroLength { base: 0x10 })
        );
        bus.insert(echo(), 0x10, 0x10).unwrap();
        for (b, l) in [
            (0x10, 1),
            (0x1f, 1),
            (0x0, 0x11),
            (0x18, 0x100),
            (0, u64::MAX),
        ] {
            assert!(
                matches!(bus.insert(echo(), b, l), Err(BusError::Overlap { .. })),
                "{b:#x}+{l:#x}"
            );
        }
        assert!(matches!(
            bus.insert(echo(), u64::MAX, 2),
            Err(BusError::Overflow { .. })
        ));
        // Adjacent ranges are fine, including the very top of the space.
        bus.insert(echo(), 0x20, 1).unwrap();
        bus.insert(echo(), 0x0, 0x10).unwrap();
        bus.insert(echo(), u64::MAX, 1).unwrap();
    }

    #[test]
    fn dispatch_uses_offsets() {
        let mut bus = Bus::new();
        let a = echo();
        bus.insert(a.clone(), 0x3f8, 8).unwrap();
        let mut d = [0u8; 2];
        assert!(bus.read(0x3fd, &mut d));
        assert_eq!(d, [5, 0]);
        assert_eq!(bus.write(0x3f9, &[1, 2]), None);
        assert_eq!(a.lock().unwrap().last, Some((1, vec![1, 2])));
        assert_eq!(bus.write(0x3f8, &[0xee]), Some(VmRequest::Reset));
    }

    #[test]
    fn unmapped_reads_are_all_ones() {
        let mut bus = Bus::new();
        bus.insert(echo(), 0x10, 4).unwrap();
        for addr in [0u64, 0xf, 0x14, u64::MAX] {
            let mut d = [0u8; 4];
            assert!(!bus.read(addr, &mut d));
            assert_eq!(d, [0xff; 4]);
            assert_eq!(bus.write(addr, &[0xee]), None);
        }
        let mut empty: [u8; 0] = [];
        assert!(bus.read(0x10, &mut empty));
    }

    #[test]
    fn remove_frees_the_range() {
        let mut bus = Bus::new();
        bus.insert(echo(), 0x10, 4).unwrap();
        assert!(bus.remove(0x10).is_some());
        assert!(bus.get_device(0x10).is_none());
        bus.insert(echo(), 0x12, 4).unwrap();
    }

    /// A fallback that answers at 0x1000 only, with the address's low byte.
    struct Window;

    impl BusFallback for Window {
        fn read(&self, addr: u64, data: &mut [u8]) -> bool {
            (addr == 0x1000)
                .then(|| fill_le(data, addr & 0xff))
                .is_some()
        }
        fn write(&self, addr: u64, _data: &[u8]) -> Option<Option<VmRequest>> {
            (addr == 0x1000).then_some(Some(VmRequest::PowerOff))
        }
    }

    #[test]
    fn fallback_gets_what_no_range_claims() {
        let mut bus = Bus::new();
        bus.insert(echo(), 0x1000, 4).unwrap();
        bus.set_fallback(Arc::new(Window));
        let mut d = [0u8; 2];
        // The inserted range wins over the fallback.
        assert!(bus.read(0x1001, &mut d));
        assert_eq!(d, [1, 0]);
        bus.remove(0x1000);
        assert!(bus.read(0x1000, &mut d));
        assert_eq!(d, [0, 0]);
        assert_eq!(bus.write(0x1000, &[1]), Some(VmRequest::PowerOff));
        // Nothing anywhere: all ones, no request.
        assert!(!bus.read(0x2000, &mut d));
        assert_eq!(d, [0xff, 0xff]);
        assert_eq!(bus.write(0x2000, &[1]), None);
    }

    #[test]
    fn le_helpers() {
        assert_eq!(le_value(&[1, 2, 3]), 0x030201);
        assert_eq!(le_value(&[0xff; 12]), u64::MAX);
        let mut d = [0u8; 10];
        fill_le(&mut d, 0x0102);
        assert_eq!(d, [2, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
    }
}
