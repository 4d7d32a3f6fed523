//! PCI configuration mechanism #1 (address at 0xCF8, data at 0xCFC-0xCFF,
//! any access size) on bus 0, with an Intel 440FX host bridge at 00:00.0.
//! Absent functions read all ones (vendor 0xffff). The PIIX reset control
//! register at 0xCF9 (byte access) is here too: setting its bit 2 resets the
//! machine, as Linux's `reboot=pci` does.

use std::collections::BTreeMap;

use thiserror::Error;

use crate::bus::{le_value, BusDevice, VmRequest};

/// First port of the mechanism (the address register).
pub const PCI_CONFIG_PORT: u16 = 0xcf8;
/// Ports covered: 0xCF8-0xCFF.
pub const PCI_CONFIG_LEN: u64 = 8;

/// Errors of [`PciConfigIo::add_function`].
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum PciError {
    /// Device number above 31 or function above 7.
    #[error("invalid PCI address {bus:02x}:{dev:02x}.{func}")]
    InvalidAddress {
        /// Bus.
        bus: u8,
        /// Device.
        dev: u8,
        /// Function.
        func: u8,
    },
    /// Something is already there.
    #[error("PCI address {bus:02x}:{dev:02x}.{func} is in use")]
    InUse {
        /// Bus.
        bus: u8,
        /// Device.
        dev: u8,
        /// Function.
        func: u8,
    },
}

/// One PCI function's configuration space.
pub trait PciFunction: Send {
    /// The dword at `reg` (a multiple of 4, 0..=0xFC).
    fn config_read(&mut self, reg: u8) -> u32;
    /// Write `data` (1-4 bytes, within one dword) at byte `offset`.
    fn config_write(&mut self, offset: u8, data: &[u8]);
    /// Its BARs, for `info pci` (reading them must not size them).
    fn bars(&self) -> Vec<BarInfo> {
        Vec::new()
    }
    /// Machine reset: back to the state the machine built it in (BAR
    /// addresses as assigned, the firmware's part, stay).
    fn reset(&mut self) {}
}

/// A BAR as `info pci` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarInfo {
    /// Its number (0-5).
    pub index: u8,
    pub kind: crate::pci_bars::BarKind,
    /// Its current address (as the guest programmed it).
    pub address: u64,
    pub size: u64,
}

/// QEMU's names of the PCI classes hx86's functions use (others print as
/// `Class NNNN`, the class and subclass in decimal, as QEMU does).
fn class_name(class: u16) -> Option<&'static str> {
    Some(match class {
        0x0100 => "SCSI controller",
        0x0200 => "Ethernet controller",
        0x0600 => "Host bridge",
        0x0601 => "ISA bridge",
        _ => return None,
    })
}

/// One function as HMP's `info pci` prints it (QEMU's layout).
fn describe(bus: u8, dev: u8, func: u8, f: &mut dyn PciFunction) -> String {
    use crate::pci_bars::BarKind;
    use std::fmt::Write as _;
    let id = f.config_read(0x00);
    let class = (f.config_read(0x08) >> 16) as u16;
    let sub = f.config_read(0x2c);
    let irq = f.config_read(0x3c);
    let mut o = format!("  Bus {bus:2}, device {dev:3}, function {func}:\n    ");
    match class_name(class) {
        Some(n) => o += n,
        None => o += &format!("Class {class:04}"),
    }
    let _ = writeln!(o, ": PCI device {:04x}:{:04x}", id & 0xffff, id >> 16);
    if sub != 0 {
        let _ = writeln!(
            o,
            "      PCI subsystem {:04x}:{:04x}",
            sub & 0xffff,
            sub >> 16
        );
    }
    let pin = (irq >> 8) as u8;
    if pin != 0 {
        let _ = writeln!(
            o,
            "      IRQ {}, pin {}",
            irq & 0xff,
            char::from(b'A' + pin - 1)
        );
    }
    for b in f.bars() {
        let end = b.address.wrapping_add(b.size - 1);
        let _ = match b.kind {
            BarKind::Io => writeln!(
                o,
                "      BAR{}: I/O at {:#06x} [{end:#06x}].",
                b.index, b.address
            ),
            BarKind::Mem32 => writeln!(
                o,
                "      BAR{}: 32 bit memory at {:#010x} [{end:#010x}].",
                b.index, b.address
            ),
            BarKind::Mem64 => writeln!(
                o,
                "      BAR{}: 64 bit prefetchable memory at {:#010x} [{end:#010x}].",
                b.index, b.address
            ),
        };
    }
    o += "      id \"\"\n";
    o
}

/// A 256-byte configuration space with per-bit write masks: a building
/// block for simple functions.
#[derive(Clone, Debug)]
pub struct PciConfigSpace {
    bytes: [u8; 256],
    wmask: [u8; 256],
}

impl PciConfigSpace {
    /// A type 0 header with the given ids, class (class << 16 | subclass << 8
    /// | prog-if) and revision; only the command register is writable.
    pub fn new(vendor: u16, device: u16, class: u32, revision: u8) -> Self {
        let mut s = Self {
            bytes: [0; 256],
            wmask: [0; 256],
        };
        s.set_u16(0x00, vendor);
        s.set_u16(0x02, device);
        s.set_u32(0x08, (class << 8) | u32::from(revision));
        s.set_writable(0x04, &[0x47, 0x01]);
        s
    }

    /// Set a byte (ignoring the write mask).
    pub fn set_u8(&mut self, offset: u8, v: u8) {
        self.bytes[usize::from(offset)] = v;
    }

    /// Set a little-endian word; bytes past 0xFF are dropped.
    pub fn set_u16(&mut self, offset: u8, v: u16) {
        self.set_bytes(offset, &v.to_le_bytes());
    }

    /// Set a little-endian dword; bytes past 0xFF are dropped.
    pub fn set_u32(&mut self, offset: u8, v: u32) {
        self.set_bytes(offset, &v.to_le_bytes());
    }

    fn set_bytes(&mut self, offset: u8, b: &[u8]) {
        for (i, &x) in b.iter().enumerate() {
            if let Some(d) = self.bytes.get_mut(usize::from(offset) + i) {
                *d = x;
            }
        }
    }

    /// Make bits writable by the guest, from `offset` on.
    pub fn set_writable(&mut self, offset: u8, masks: &[u8]) {
        for (i, &m) in masks.iter().enumerate() {
            if let Some(w) = self.wmask.get_mut(usize::from(offset) + i) {
                *w = m;
            }
        }
    }

    /// A byte of the space.
    pub fn u8_at(&self, offset: u8) -> u8 {
        self.bytes[usize::from(offset)]
    }

    /// A little-endian word of the space (bytes past 0xFF read as 0).
    pub fn u16_at(&self, offset: u8) -> u16 {
        self.u32_at(offset) as u16
    }

    /// A little-endian dword of the space (bytes past 0xFF read as 0).
    pub fn u32_at(&self, offset: u8) -> u32 {
        let o = usize::from(offset);
        let mut b = [0u8; 4];
        for (i, x) in b.iter_mut().enumerate() {
            *x = self.bytes.get(o + i).copied().unwrap_or(0);
        }
        u32::from_le_bytes(b)
    }
}

impl PciFunction for PciConfigSpace {
    fn config_read(&mut self, reg: u8) -> u32 {
        let r = usize::from(reg & 0xfc);
        u32::from_le_bytes([
            self.bytes[r],
            self.bytes[r + 1],
            self.bytes[r + 2],
            self.bytes[r + 3],
        ])
    }

    fn config_write(&mut self, offset: u8, data: &[u8]) {
        for (i, &v) in data.iter().enumerate() {
            let Some(o) = usize::from(offset).checked_add(i).filter(|&o| o < 256) else {
                break;
            };
            let m = self.wmask[o];
            self.bytes[o] = (self.bytes[o] & !m) | (v & m);
        }
    }
}

/// The i440FX host bridge's configuration space.
pub fn i440fx_host_bridge() -> PciConfigSpace {
    let mut s = PciConfigSpace::new(0x8086, 0x1237, 0x06_00_00, 0x02);
    s.set_u16(0x04, 0x0006);
    s.set_u16(0x06, 0x0280);
    // Latency timer, PMC configuration/DRAM control/PAM (0x50-0x5F), SMRAM.
    s.set_writable(0x0d, &[0xff]);
    s.set_writable(0x50, &[0xff; 16]);
    s.set_writable(0x72, &[0xff]);
    s
}

/// The configuration mechanism with its functions.
pub struct PciConfigIo {
    address: u32,
    reset_control: u8,
    functions: BTreeMap<u16, Box<dyn PciFunction>>,
}

impl Default for PciConfigIo {
    fn default() -> Self {
        Self::new()
    }
}

fn bdf(bus: u8, dev: u8, func: u8) -> u16 {
    (u16::from(bus) << 8) | (u16::from(dev) << 3) | u16::from(func)
}

impl PciConfigIo {
    /// The mechanism with the 440FX host bridge at 00:00.0.
    pub fn new() -> Self {
        let mut functions: BTreeMap<u16, Box<dyn PciFunction>> = BTreeMap::new();
        functions.insert(0, Box::new(i440fx_host_bridge()));
        Self {
            address: 0,
            reset_control: 0,
            functions,
        }
    }

    /// Add a function at `bus:dev.func`.
    pub fn add_function(
        &mut self,
        bus: u8,
        dev: u8,
        func: u8,
        f: Box<dyn PciFunction>,
    ) -> Result<(), PciError> {
        if dev > 31 || func > 7 {
            return Err(PciError::InvalidAddress { bus, dev, func });
        }
        let key = bdf(bus, dev, func);
        if self.functions.contains_key(&key) {
            return Err(PciError::InUse { bus, dev, func });
        }
        self.functions.insert(key, f);
        Ok(())
    }

    /// Machine reset: every function's [`PciFunction::reset`].
    pub fn reset(&mut self) {
        self.address = 0;
        for f in self.functions.values_mut() {
            f.reset();
        }
    }

    /// What HMP's `info pci` prints: every function, in address order.
    pub fn info(&mut self) -> String {
        self.functions
            .iter_mut()
            .map(|(&k, f)| describe((k >> 8) as u8, (k >> 3) as u8 & 0x1f, k as u8 & 7, &mut **f))
            .collect()
    }

    /// The address register.
    pub fn address(&self) -> u32 {
        self.address
    }

    /// The function and dword register the address selects, if enabled.
    fn target(&mut self) -> Option<(&mut Box<dyn PciFunction>, u8)> {
        if self.address & 0x8000_0000 == 0 {
            return None;
        }
        let key = ((self.address >> 8) & 0xffff) as u16;
        let reg = (self.address & 0xfc) as u8;
        self.functions.get_mut(&key).map(|f| (f, reg))
    }

    fn read_data(&mut self, byte: u8, data: &mut [u8]) {
        data.fill(0xff);
        let n = data.len().min(4 - usize::from(byte));
        let Some((f, reg)) = self.target() else {
            return;
        };
        let v = f.config_read(reg).to_le_bytes();
        data[..n].copy_from_slice(&v[usize::from(byte)..usize::from(byte) + n]);
    }

    fn write_data(&mut self, byte: u8, data: &[u8]) {
        let n = data.len().min(4 - usize::from(byte));
        match self.target() {
            Some((f, reg)) => f.config_write(reg + byte, &data[..n]),
            None => log::trace!(target: "ioport", "pci: config write to absent function"),
        }
    }
}

impl BusDevice for PciConfigIo {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        match (offset, data.len()) {
            (0, 4) => data.copy_from_slice(&self.address.to_le_bytes()),
            (1, 1) => data[0] = self.reset_control,
            (4..=7, _) => self.read_data((offset - 4) as u8, data),
            _ => data.fill(0xff),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Option<VmRequest> {
        match (offset, data.len()) {
            (0, 4) => self.address = le_value(data) as u32 & 0x80ff_fffc,
            (1, 1) => {
                let v = data[0];
                self.reset_control = v & 0x0a;
                if v & 0x04 != 0 {
                    log::debug!(target: "ioport", "pci: reset via port 0xcf9 ({:#x})", v);
                    return Some(VmRequest::Reset);
                }
            }
            (4..=7, _) => self.write_data((offset - 4) as u8, data),
            _ => {
                log::debug!(target: "guest_errors", "pci: {}-byte write at {:#x}", data.len(), 0xcf8 + offset)
            }
        }
        None
    }
}

#[cfg(test)]
#[path = "pci_tests.rs"]
mod tests;
