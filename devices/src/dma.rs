//! Guest RAM as devices see it: the one path every device write into guest
//! memory takes (virtio buffers, fw_cfg DMA), so that the DBT hears which
//! pages a device changed and drops code it translated from them.
//!
//! The machine builds one [`GuestRam`] before the VM exists and installs
//! the VM's hook ([`GuestRam::set_written_hook`], accel's
//! `Vm::ram_written`) once it does; clones share the hook.

use std::sync::{Arc, OnceLock};

use thiserror::Error;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::fw_cfg::DmaMemory;

/// Called with (guest-physical address, length) after a device wrote there.
pub type WrittenHook = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// A device access outside guest RAM (or a write to ROM).
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum DmaError {
    #[error("device access to {addr:#x}+{len:#x} is outside guest RAM")]
    OutOfRange { addr: u64, len: u64 },
    #[error("device write to {addr:#x}+{len:#x} hits read-only memory")]
    ReadOnly { addr: u64, len: u64 },
}

/// Guest RAM plus its read-only ranges and the written-pages hook.
#[derive(Clone)]
pub struct GuestRam {
    mem: GuestMemoryMmap,
    rom: Arc<[(u64, u64)]>,
    hook: Arc<OnceLock<WrittenHook>>,
}

impl GuestRam {
    /// `rom`: `(start, len)` ranges devices must not write.
    pub fn new(mem: GuestMemoryMmap, rom: &[(u64, u64)]) -> Self {
        Self {
            mem,
            rom: rom.into(),
            hook: Arc::new(OnceLock::new()),
        }
    }

    /// Installs the hook (once; later calls are ignored).
    pub fn set_written_hook(&self, hook: WrittenHook) {
        let _ = self.hook.set(hook);
    }

    /// The memory itself, for reads and for `virtio-queue` (which reads
    /// descriptors and writes the used ring; call [`GuestRam::written`]
    /// for what it writes if that may matter).
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    /// Reads `buf.len()` bytes at `addr`.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        let len = buf.len() as u64;
        self.mem
            .read_slice(buf, GuestAddress(addr))
            .map_err(|_| DmaError::OutOfRange { addr, len })
    }

    /// Writes `data` at `addr` and tells the hook.
    pub fn write(&self, addr: u64, data: &[u8]) -> Result<(), DmaError> {
        let len = data.len() as u64;
        let end = addr
            .checked_add(len)
            .ok_or(DmaError::OutOfRange { addr, len })?;
        if self.rom.iter().any(|&(s, l)| addr < s + l && s < end) {
            return Err(DmaError::ReadOnly { addr, len });
        }
        self.mem
            .write_slice(data, GuestAddress(addr))
            .map_err(|_| DmaError::OutOfRange { addr, len })?;
        self.written(addr, len);
        Ok(())
    }

    /// Tells the hook that `addr..addr+len` changed (for writes made
    /// through [`GuestRam::memory`]).
    pub fn written(&self, addr: u64, len: u64) {
        if let Some(h) = self.hook.get() {
            h(addr, len);
        }
    }
}

impl DmaMemory for GuestRam {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        GuestRam::read(self, addr, buf).is_ok()
    }
    fn write(&self, addr: u64, data: &[u8]) -> bool {
        GuestRam::write(self, addr, data).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn writes_reach_the_hook_and_rom_and_holes_are_refused() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
        let ram = GuestRam::new(mem, &[(0xf000, 0x1000)]);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        ram.clone()
            .set_written_hook(Arc::new(move |a, l| s.lock().unwrap().push((a, l))));
        ram.write(0x1234, &[1, 2, 3]).unwrap();
        let mut b = [0; 3];
        ram.read(0x1234, &mut b).unwrap();
        assert_eq!(b, [1, 2, 3]);
        assert!(matches!(
            ram.write(0xeffe, &[0; 4]),
            Err(DmaError::ReadOnly { .. })
        ));
        assert!(matches!(
            ram.write(0xfffe, &[0; 4]),
            Err(DmaError::ReadOnly { .. }) | Err(DmaError::OutOfRange { .. })
        ));
        assert!(matches!(
            ram.write(0x10000, &[0; 4]),
            Err(DmaError::OutOfRange { .. })
        ));
        assert!(ram.read(u64::MAX - 1, &mut b).is_err());
        assert_eq!(*seen.lock().unwrap(), vec![(0x1234, 3)]);
    }
}
