//! QEMU's firmware configuration device (fw_cfg), x86 I/O-port flavour, as
//! QEMU's `hw/nvram/fw_cfg.c` and `docs/specs/fw_cfg.rst` describe it.
//!
//! # Registers (offsets from [`FW_CFG_PORT`] 0x510)
//!
//! * +0, 16-bit write: the selector. Bits 0-13 select an item, bit 15 the
//!   architecture-specific set, bit 14 (the old write channel) is ignored.
//!   Selecting resets the data offset; a selector beyond the last item slot
//!   selects nothing.
//! * +1, 8-bit read: the next byte of the selected item; past its end (or
//!   with nothing selected) 0. Writes are ignored (QEMU removed the write
//!   channel in 2.4).
//! * +4..+12: the DMA address register, big-endian. A 32-bit write at +4 sets
//!   the high half (and clears the low half); a 32-bit write at +8 sets the
//!   low half and starts the transfer; a 64-bit write at +4 sets both and
//!   starts it. Reads return the DMA signature `"QEMU CFG"`.
//!
//! # DMA
//!
//! The DMA address points to a `FWCfgDmaAccess` (big-endian `u32 control`,
//! `u32 length`, `u64 address`). Control bits: ERROR (0x01), READ (0x02),
//! SKIP (0x04), SELECT (0x08, the selector in bits 16-31), WRITE (0x10).
//! SELECT is applied first; then READ copies from the item to guest memory
//! (zero-filling past the item's end), SKIP advances the offset, WRITE is
//! refused (no item is writable: ERROR); none of them transfers nothing.
//! When done the device writes the control word back: 0, or ERROR when a
//! guest address was not RAM or a write was attempted. A `FWCfgDmaAccess`
//! that cannot be read gets ERROR written at its address.
//!
//! # Items
//!
//! [`FwCfgBuilder`] holds numbered items and named files. The signature
//! ("QEMU", key 0) and the ID (key 1: bit 0 traditional interface, bit 1
//! DMA) are always there. Files get keys from [`key::FILE_FIRST`] (0x20) in
//! name order (as QEMU's non-legacy machines have them) and are listed in
//! the file directory (key 0x19): a big-endian `u32` count, then per file a
//! big-endian `u32` size, `u16` key, `u16` reserved and a 56-byte
//! NUL-padded name.

use std::collections::BTreeMap;
use std::sync::Arc;

use thiserror::Error;

use crate::bus::{BusDevice, VmRequest};

/// The selector port; the device covers [`FW_CFG_PORT`, + [`FW_CFG_PORT_LEN`]).
pub const FW_CFG_PORT: u16 = 0x510;
/// Selector (2), data (1), a gap, and the 8-byte DMA register, as QEMU's
/// ACPI `_CRS` for the device says.
pub const FW_CFG_PORT_LEN: u64 = 0x0C;
/// Offset of the DMA address register.
const DMA_OFFSET: u64 = 4;
/// What reads of the DMA register return.
pub const DMA_SIGNATURE: &[u8; 8] = b"QEMU CFG";
/// Longest file name, NUL included.
pub const MAX_FILE_PATH: usize = 56;

/// Item keys (QEMU's `include/standard-headers/linux/qemu_fw_cfg.h`).
pub mod key {
    pub const SIGNATURE: u16 = 0x00;
    pub const ID: u16 = 0x01;
    pub const UUID: u16 = 0x02;
    pub const RAM_SIZE: u16 = 0x03;
    pub const NOGRAPHIC: u16 = 0x04;
    pub const NB_CPUS: u16 = 0x05;
    pub const MACHINE_ID: u16 = 0x06;
    pub const KERNEL_ADDR: u16 = 0x07;
    pub const KERNEL_SIZE: u16 = 0x08;
    pub const KERNEL_CMDLINE: u16 = 0x09;
    pub const INITRD_ADDR: u16 = 0x0A;
    pub const INITRD_SIZE: u16 = 0x0B;
    pub const BOOT_DEVICE: u16 = 0x0C;
    pub const NUMA: u16 = 0x0D;
    pub const BOOT_MENU: u16 = 0x0E;
    pub const MAX_CPUS: u16 = 0x0F;
    pub const KERNEL_ENTRY: u16 = 0x10;
    pub const KERNEL_DATA: u16 = 0x11;
    pub const INITRD_DATA: u16 = 0x12;
    pub const CMDLINE_ADDR: u16 = 0x13;
    pub const CMDLINE_SIZE: u16 = 0x14;
    pub const CMDLINE_DATA: u16 = 0x15;
    pub const SETUP_ADDR: u16 = 0x16;
    pub const SETUP_SIZE: u16 = 0x17;
    pub const SETUP_DATA: u16 = 0x18;
    pub const FILE_DIR: u16 = 0x19;
    pub const FILE_FIRST: u16 = 0x20;
    /// Selector bit of the old write channel (ignored).
    pub const WRITE_CHANNEL: u16 = 0x4000;
    /// Selector bit of the architecture-specific items.
    pub const ARCH_LOCAL: u16 = 0x8000;
    /// The item number bits.
    pub const ENTRY_MASK: u16 = 0x3FFF;
    /// x86: whether IRQ0 is routed to IOAPIC pin 2 (u32).
    pub const IRQ0_OVERRIDE: u16 = ARCH_LOCAL | 2;
}

/// `FWCfgDmaAccess.control` bits.
pub mod dma_ctl {
    pub const ERROR: u32 = 0x01;
    pub const READ: u32 = 0x02;
    pub const SKIP: u32 = 0x04;
    pub const SELECT: u32 = 0x08;
    pub const WRITE: u32 = 0x10;
}

/// ID bits.
pub const ID_TRADITIONAL: u32 = 1;
pub const ID_DMA: u32 = 2;

/// Guest memory as DMA sees it. Both return false when any byte of the
/// range is not guest RAM (or, for writes, is read-only).
pub trait DmaMemory: Send + Sync {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool;
    fn write(&self, addr: u64, data: &[u8]) -> bool;
}

/// Why an item or file cannot be added.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FwCfgError {
    #[error("fw_cfg file name '{0}' is empty or longer than 55 bytes")]
    BadName(String),
    #[error("fw_cfg file name '{0}' is already used")]
    Duplicate(String),
    #[error("fw_cfg item {key:#x} is reserved or not an item number")]
    BadKey { key: u16 },
    #[error("fw_cfg item {what} is {len} bytes, more than the 4 GiB its size field holds")]
    TooBig { what: String, len: usize },
    #[error("too many fw_cfg files: {0}")]
    TooManyFiles(usize),
}

/// Collects the items and files of a [`FwCfg`].
#[derive(Clone, Debug)]
pub struct FwCfgBuilder {
    items: BTreeMap<u16, Vec<u8>>,
    files: BTreeMap<String, Vec<u8>>,
    dma: bool,
}

impl Default for FwCfgBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl FwCfgBuilder {
    /// The signature, the ID (with DMA) and a zero UUID.
    pub fn new() -> Self {
        let mut b = FwCfgBuilder {
            items: BTreeMap::new(),
            files: BTreeMap::new(),
            dma: true,
        };
        b.items.insert(key::SIGNATURE, b"QEMU".to_vec());
        b.items.insert(key::UUID, vec![0; 16]);
        b
    }

    /// Adds (or replaces) a numbered item. The signature, ID and file
    /// directory keys and the file range are refused.
    pub fn item(&mut self, k: u16, data: Vec<u8>) -> Result<&mut Self, FwCfgError> {
        let n = k & key::ENTRY_MASK;
        if k & key::WRITE_CHANNEL != 0
            || (k & key::ARCH_LOCAL == 0
                && (matches!(k, key::SIGNATURE | key::ID | key::FILE_DIR) || n >= key::FILE_FIRST))
        {
            return Err(FwCfgError::BadKey { key: k });
        }
        u32::try_from(data.len()).map_err(|_| FwCfgError::TooBig {
            what: format!("{k:#x}"),
            len: data.len(),
        })?;
        self.items.insert(k, data);
        Ok(self)
    }

    pub fn item_u16(&mut self, k: u16, v: u16) -> Result<&mut Self, FwCfgError> {
        self.item(k, v.to_le_bytes().to_vec())
    }
    pub fn item_u32(&mut self, k: u16, v: u32) -> Result<&mut Self, FwCfgError> {
        self.item(k, v.to_le_bytes().to_vec())
    }
    pub fn item_u64(&mut self, k: u16, v: u64) -> Result<&mut Self, FwCfgError> {
        self.item(k, v.to_le_bytes().to_vec())
    }

    /// Adds a named file; names are unique, 1 to 55 bytes, without NUL.
    pub fn file(&mut self, name: &str, data: Vec<u8>) -> Result<&mut Self, FwCfgError> {
        if name.is_empty() || name.len() >= MAX_FILE_PATH || name.contains('\0') {
            return Err(FwCfgError::BadName(name.into()));
        }
        if self.files.contains_key(name) {
            return Err(FwCfgError::Duplicate(name.into()));
        }
        u32::try_from(data.len()).map_err(|_| FwCfgError::TooBig {
            what: name.into(),
            len: data.len(),
        })?;
        if self.files.len() + usize::from(key::FILE_FIRST) >= usize::from(key::ENTRY_MASK) {
            return Err(FwCfgError::TooManyFiles(self.files.len() + 1));
        }
        self.files.insert(name.into(), data);
        Ok(self)
    }

    /// Without the DMA interface (ID bit 1 clear, DMA register inert).
    pub fn without_dma(&mut self) -> &mut Self {
        self.dma = false;
        self
    }

    /// The device; `mem` is what DMA reads and writes (none: no DMA).
    pub fn build(&self, mem: Option<Arc<dyn DmaMemory>>) -> FwCfg {
        let dma = self.dma && mem.is_some();
        let mut items: BTreeMap<u16, Arc<[u8]>> = self
            .items
            .iter()
            .map(|(&k, v)| (k, Arc::from(v.as_slice())))
            .collect();
        let id = ID_TRADITIONAL | if dma { ID_DMA } else { 0 };
        items.insert(key::ID, Arc::from(&id.to_le_bytes()[..]));
        let mut dir = (self.files.len() as u32).to_be_bytes().to_vec();
        for (i, (name, data)) in self.files.iter().enumerate() {
            let k = key::FILE_FIRST + i as u16;
            dir.extend_from_slice(&(data.len() as u32).to_be_bytes());
            dir.extend_from_slice(&k.to_be_bytes());
            dir.extend_from_slice(&[0, 0]);
            let mut n = [0u8; MAX_FILE_PATH];
            n[..name.len()].copy_from_slice(name.as_bytes());
            dir.extend_from_slice(&n);
            items.insert(k, Arc::from(data.as_slice()));
        }
        items.insert(key::FILE_DIR, Arc::from(dir));
        // As QEMU: at least 0x20 file slots.
        let max_entry = key::FILE_FIRST + (self.files.len() as u16).max(0x20);
        FwCfg {
            items,
            max_entry,
            cur: None,
            offset: 0,
            dma_addr: 0,
            mem: if dma { mem } else { None },
        }
    }
}

/// The device (see the module docs).
pub struct FwCfg {
    items: BTreeMap<u16, Arc<[u8]>>,
    /// Item numbers at or above this select nothing.
    max_entry: u16,
    /// The selected key (without the write-channel bit), if valid.
    cur: Option<u16>,
    offset: u64,
    dma_addr: u64,
    mem: Option<Arc<dyn DmaMemory>>,
}

impl FwCfg {
    /// Selects item `k` (see the module docs).
    pub fn select(&mut self, k: u16) {
        self.offset = 0;
        self.cur = ((k & key::ENTRY_MASK) < self.max_entry).then_some(k & !key::WRITE_CHANNEL);
    }

    fn data(&self) -> Arc<[u8]> {
        self.cur
            .and_then(|k| self.items.get(&k))
            .cloned()
            .unwrap_or_else(|| Arc::from(&[][..]))
    }

    /// The next byte of the selected item (0 past its end).
    pub fn read_byte(&mut self) -> u8 {
        let data = self.data();
        let b = data.get(self.offset as usize).copied().unwrap_or(0);
        if (self.offset as usize) < data.len() {
            self.offset += 1;
        }
        b
    }

    /// The bytes of item `k`, if it exists (for tests and the monitor).
    pub fn item(&self, k: u16) -> Option<&[u8]> {
        self.items.get(&k).map(|d| &d[..])
    }

    /// Runs the DMA transfer described at `self.dma_addr`.
    fn dma(&mut self) {
        let Some(mem) = self.mem.clone() else {
            return;
        };
        let at = self.dma_addr;
        let mut desc = [0u8; 16];
        if !mem.read(at, &mut desc) {
            log::debug!(target: "guest_errors", "fw_cfg: DMA descriptor at {at:#x} is not RAM");
            let _ = mem.write(at, &dma_ctl::ERROR.to_be_bytes());
            return;
        }
        let be32 = |o: usize| u32::from_be_bytes(desc[o..o + 4].try_into().unwrap_or([0; 4]));
        let control = be32(0);
        let mut length = u64::from(be32(4));
        let mut addr = u64::from_be_bytes(desc[8..16].try_into().unwrap_or([0; 8]));
        if control & dma_ctl::SELECT != 0 {
            self.select((control >> 16) as u16);
        }
        let (read, write) = if control & dma_ctl::READ != 0 {
            (true, false)
        } else if control & dma_ctl::WRITE != 0 {
            (false, true)
        } else if control & dma_ctl::SKIP != 0 {
            (false, false)
        } else {
            length = 0;
            (false, false)
        };
        let mut error = false;
        while length > 0 && !error {
            let data = self.data();
            let off = self.offset as usize;
            let len = if off >= data.len() {
                // Past the end (or nothing selected): reads give zeroes.
                let len = length.min(0x1_0000);
                if read {
                    error = !mem.write(addr, &vec![0; len as usize]);
                }
                len
            } else {
                let len = length.min((data.len() - off) as u64);
                if read {
                    error = !mem.write(addr, &data[off..off + len as usize]);
                }
                self.offset += len;
                len
            };
            if write {
                log::debug!(target: "guest_errors", "fw_cfg: DMA write refused (no writable items)");
                error = true;
            }
            addr = addr.wrapping_add(len);
            length -= len;
        }
        let status = if error { dma_ctl::ERROR } else { 0 };
        if !mem.write(at, &status.to_be_bytes()) {
            log::debug!(target: "guest_errors", "fw_cfg: cannot write the DMA status at {at:#x}");
        }
    }
}

impl BusDevice for FwCfg {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        match offset {
            1 => data.iter_mut().for_each(|b| *b = self.read_byte()),
            o if o >= DMA_OFFSET && self.mem.is_some() => {
                for (i, b) in data.iter_mut().enumerate() {
                    let i = (o - DMA_OFFSET) as usize + i;
                    *b = DMA_SIGNATURE.get(i).copied().unwrap_or(0);
                }
            }
            _ => data.fill(0),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Option<VmRequest> {
        match (offset, data.len()) {
            (0, 2) => self.select(u16::from_le_bytes([data[0], data[1]])),
            (1, _) => log::debug!(target: "guest_errors", "fw_cfg: data write ignored"),
            _ if self.mem.is_none() => {}
            (DMA_OFFSET, 4) => {
                let v = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
                self.dma_addr = u64::from(v) << 32;
            }
            (8, 4) => {
                let v = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
                self.dma_addr |= u64::from(v);
                self.dma();
            }
            (DMA_OFFSET, 8) => {
                self.dma_addr = u64::from_be_bytes(data.try_into().unwrap_or([0; 8]));
                self.dma();
            }
            _ => log::debug!(
                target: "guest_errors",
                "fw_cfg: {}-byte write at +{offset:#x} ignored",
                data.len()
            ),
        }
        None
    }
}

#[cfg(test)]
#[path = "fw_cfg_tests.rs"]
mod tests;
