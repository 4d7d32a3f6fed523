//! The virtio-pci transport (virtio 1.2, 4.1), "modern" only, laid out as
//! QEMU's `virtio-*-pci` with `disable-legacy=on`:
//!
//! * vendor 0x1AF4, device 0x1040 + the virtio device ID, revision 1,
//!   subsystem 0x1AF4:0x1100, QEMU's class per device type, interrupt pin
//!   INTA;
//! * BAR1: MSI-X table (offset 0) and pending bits (offset 0x800), 4 KiB,
//!   32-bit memory; one vector per queue plus one for configuration changes;
//! * BAR4: 64-bit prefetchable memory, 16 KiB: common configuration at 0,
//!   ISR at 0x1000, device configuration at 0x2000, notifications at 0x3000
//!   (`notify_off_multiplier` 4, queue `q` at offset `4 q`);
//! * capabilities: the five virtio structures (common, notify, ISR, device,
//!   PCI configuration access) and MSI-X.
//!
//! Register semantics are in `pci_common.rs`, interrupts (MSI-X, INTx with
//! the ISR) in `pci_irq.rs`.

use std::sync::{Arc, Mutex, MutexGuard};

use super::msix::MsiSink;
use super::pci_common::{
    VirtioPciDevice, BAR_SIZE, COMMON_OFFSET, DEVICE_OFFSET, ISR_OFFSET, NOTIFY_OFFSET,
    NOTIFY_OFF_MULTIPLIER, REGION_SIZE,
};
use super::pci_irq::VirtioPciInterrupt;
use super::{id, VirtioDevice};
use crate::bus::{BusDevice, IrqLine, VmRequest};
use crate::dma::GuestRam;
use crate::pci::{PciConfigSpace, PciFunction};
use crate::pci_bars::{Bar, BarKind, PciBarFunction, PciBarSpace};

/// Red Hat / Qumranet, virtio's PCI vendor.
pub const VIRTIO_PCI_VENDOR: u16 = 0x1af4;
/// Modern device IDs are this plus the virtio device ID.
pub const VIRTIO_PCI_DEVICE_BASE: u16 = 0x1040;
/// QEMU's default subsystem ID.
pub const VIRTIO_PCI_SUBSYSTEM: u16 = 0x1100;
/// The BAR of the MSI-X table and PBA.
pub const MSIX_BAR: usize = 1;
/// Its size, and where the PBA starts in it.
pub const MSIX_BAR_SIZE: u64 = 0x1000;
pub const MSIX_PBA_OFFSET: u64 = 0x800;
/// The BAR of the virtio structures (64-bit).
pub const VIRTIO_BAR: usize = 4;
/// Its size.
pub const VIRTIO_BAR_SIZE: u64 = BAR_SIZE;

/// Capability IDs and the virtio structure types (`cfg_type`).
const CAP_VENDOR: u8 = 0x09;
const CAP_MSIX: u8 = 0x11;
const CFG_COMMON: u8 = 1;
const CFG_NOTIFY: u8 = 2;
const CFG_ISR: u8 = 3;
const CFG_DEVICE: u8 = 4;
const CFG_PCI: u8 = 5;

/// Where the capabilities sit in configuration space.
const CAP_COMMON: u8 = 0x40;
const CAP_ISR: u8 = 0x50;
const CAP_DEVICE: u8 = 0x60;
const CAP_NOTIFY: u8 = 0x70;
const CAP_PCI_CFG: u8 = 0x84;
const CAP_MSIX_AT: u8 = 0x98;
/// `pci_cfg_data` of the PCI configuration access capability.
const PCI_CFG_DATA: u8 = CAP_PCI_CFG + 16;

const COMMAND: u8 = 0x04;
const CMD_BUS_MASTER: u16 = 1 << 2;
const CMD_INTX_DISABLE: u16 = 1 << 10;
const MSIX_ENABLE: u16 = 1 << 15;
const MSIX_FMASK: u16 = 1 << 14;

/// The PCI class QEMU gives each virtio device type (class, subclass,
/// prog-if).
pub fn class_of(device_type: u32) -> u32 {
    match device_type {
        id::NET => 0x02_00_00,
        id::BLOCK => 0x01_00_00,
        id::CONSOLE => 0x07_80_00,
        // PCI_CLASS_OTHERS (0x00ff), as QEMU's virtio-rng-pci.
        _ => 0x00_ff_00,
    }
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a virtio-pci function is connected to.
pub struct VirtioPciWiring {
    /// bus << 8 | device << 3 | function.
    pub bdf: u16,
    /// The BAR decoders of the machine.
    pub bar_io: Arc<PciBarSpace>,
    pub bar_mem: Arc<PciBarSpace>,
    /// Guest RAM for the queues.
    pub ram: GuestRam,
    /// MSI delivery.
    pub msi: Arc<dyn MsiSink>,
    /// The INTx line (a GSI) and its number, written to the interrupt line
    /// register as the firmware would.
    pub intx: Arc<dyn IrqLine>,
    pub intx_line: u8,
}

/// The MSI-X BAR: table and PBA.
struct MsixBar(Arc<VirtioPciInterrupt>);

impl BusDevice for MsixBar {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= MSIX_PBA_OFFSET {
            self.0.read_pba(offset - MSIX_PBA_OFFSET, data);
        } else {
            self.0.read_table(offset, data);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Option<VmRequest> {
        if offset < MSIX_PBA_OFFSET {
            self.0.write_table(offset, data);
        }
        None
    }
}

/// A virtio device on PCI: its configuration space (a [`PciFunction`]) with
/// the two BARs.
pub struct VirtioPci {
    bars: PciBarFunction,
    dev: Arc<Mutex<VirtioPciDevice>>,
    irq: Arc<VirtioPciInterrupt>,
}

/// Writes a virtio capability (`struct virtio_pci_cap`) at `at`.
fn vendor_cap(s: &mut PciConfigSpace, at: u8, next: u8, len: u8, cfg: u8, off: u64, size: u64) {
    s.set_u8(at, CAP_VENDOR);
    s.set_u8(at + 1, next);
    s.set_u8(at + 2, len);
    s.set_u8(at + 3, cfg);
    s.set_u8(at + 4, VIRTIO_BAR as u8);
    s.set_u32(at + 8, off as u32);
    s.set_u32(at + 12, size as u32);
}

impl VirtioPci {
    /// The function for `dev` (BARs unassigned; see [`Self::assign`]).
    pub fn new(dev: Box<dyn VirtioDevice>, w: VirtioPciWiring) -> Self {
        let ty = dev.device_type();
        let queues = dev.queue_max_sizes().len();
        let name = format!(
            "{} {:02x}:{:02x}.{}",
            dev.name(),
            w.bdf >> 8,
            (w.bdf >> 3) & 0x1f,
            w.bdf & 7
        );
        let vectors = (queues + 1).min(2048) as u16;
        let irq = Arc::new(VirtioPciInterrupt::new(
            vectors,
            queues,
            w.msi,
            w.intx,
            name.clone(),
        ));
        let dev = Arc::new(Mutex::new(VirtioPciDevice::new(
            dev,
            w.ram,
            irq.clone(),
            name,
        )));

        let devid = VIRTIO_PCI_DEVICE_BASE.wrapping_add(ty as u16);
        let mut s = PciConfigSpace::new(VIRTIO_PCI_VENDOR, devid, class_of(ty), 1);
        // Command: I/O, memory, bus master, parity/SERR, INTx disable.
        s.set_writable(COMMAND, &[0x47, 0x05]);
        s.set_u16(0x06, 0x0010); // status: capability list
        s.set_u16(0x2c, VIRTIO_PCI_VENDOR);
        s.set_u16(0x2e, VIRTIO_PCI_SUBSYSTEM);
        s.set_u8(0x34, CAP_COMMON);
        s.set_u8(0x3c, w.intx_line);
        s.set_writable(0x3c, &[0xff]);
        s.set_u8(0x3d, 1); // INTA
        vendor_cap(
            &mut s,
            CAP_COMMON,
            CAP_ISR,
            16,
            CFG_COMMON,
            COMMON_OFFSET,
            REGION_SIZE,
        );
        vendor_cap(
            &mut s,
            CAP_ISR,
            CAP_DEVICE,
            16,
            CFG_ISR,
            ISR_OFFSET,
            REGION_SIZE,
        );
        vendor_cap(
            &mut s,
            CAP_DEVICE,
            CAP_NOTIFY,
            16,
            CFG_DEVICE,
            DEVICE_OFFSET,
            REGION_SIZE,
        );
        vendor_cap(
            &mut s,
            CAP_NOTIFY,
            CAP_PCI_CFG,
            20,
            CFG_NOTIFY,
            NOTIFY_OFFSET,
            REGION_SIZE,
        );
        s.set_u32(CAP_NOTIFY + 16, NOTIFY_OFF_MULTIPLIER);
        // The access window: bar, offset, length and data are the driver's.
        vendor_cap(&mut s, CAP_PCI_CFG, CAP_MSIX_AT, 20, CFG_PCI, 0, 0);
        s.set_u8(CAP_PCI_CFG + 4, 0);
        s.set_writable(CAP_PCI_CFG + 4, &[0xff]);
        s.set_writable(CAP_PCI_CFG + 8, &[0xff; 8]);
        // MSI-X: table size - 1, enable and function mask writable.
        s.set_u8(CAP_MSIX_AT, CAP_MSIX);
        s.set_u8(CAP_MSIX_AT + 1, 0);
        s.set_u16(CAP_MSIX_AT + 2, vectors - 1);
        s.set_writable(CAP_MSIX_AT + 3, &[0xc0]);
        s.set_u32(CAP_MSIX_AT + 4, MSIX_BAR as u32);
        s.set_u32(CAP_MSIX_AT + 8, MSIX_PBA_OFFSET as u32 | MSIX_BAR as u32);

        let mut bars: Vec<Option<Bar>> = (0..6).map(|_| None).collect();
        bars[MSIX_BAR] = Some(Bar {
            kind: BarKind::Mem32,
            size: MSIX_BAR_SIZE,
            dev: Arc::new(Mutex::new(MsixBar(irq.clone()))),
        });
        bars[VIRTIO_BAR] = Some(Bar {
            kind: BarKind::Mem64,
            size: VIRTIO_BAR_SIZE,
            dev: dev.clone(),
        });
        let bars = PciBarFunction::new(s, w.bdf, bars, w.bar_io, w.bar_mem);
        Self { bars, dev, irq }
    }

    /// Sets BAR `i`'s address and enables decoding (the firmware's job).
    pub fn assign(&mut self, i: usize, base: u64) {
        self.bars.assign(i, base);
        self.sync();
    }

    /// The transport state (for tests and inspection).
    pub fn device(&self) -> Arc<Mutex<VirtioPciDevice>> {
        self.dev.clone()
    }

    /// The interrupt state.
    pub fn interrupt(&self) -> Arc<VirtioPciInterrupt> {
        self.irq.clone()
    }

    /// Pass the command register and MSI-X control to the interrupt state.
    fn sync(&self) {
        let s = self.bars.space();
        let cmd = s.u16_at(COMMAND);
        let ctl = s.u16_at(CAP_MSIX_AT + 2);
        self.irq.set_pci_state(
            cmd & CMD_BUS_MASTER != 0,
            cmd & CMD_INTX_DISABLE != 0,
            ctl & MSIX_ENABLE != 0,
            ctl & MSIX_FMASK != 0,
        );
    }

    /// The BAR access the PCI configuration access capability selects:
    /// (offset into the virtio BAR, length), when it is a valid one.
    fn cfg_window(&self) -> Option<(u64, usize)> {
        let s = self.bars.space();
        let bar = s.u8_at(CAP_PCI_CFG + 4);
        let off = u64::from(s.u32_at(CAP_PCI_CFG + 8));
        let len = s.u32_at(CAP_PCI_CFG + 12) as usize;
        let ok = usize::from(bar) == VIRTIO_BAR
            && matches!(len, 1 | 2 | 4)
            && off % len as u64 == 0
            && off + len as u64 <= VIRTIO_BAR_SIZE;
        ok.then_some((off, len))
    }
}

impl PciFunction for VirtioPci {
    fn bars(&self) -> Vec<crate::pci::BarInfo> {
        self.bars.bars()
    }

    /// The device reset (workers stopped, queues dropped), MSI-X off with
    /// its table masked and nothing pending, INTx low.
    fn reset(&mut self) {
        lock(&self.dev).reset();
        let vectors = self.irq.vectors();
        self.bars.space_mut().set_u16(CAP_MSIX_AT + 2, vectors - 1);
        self.irq.reset_msix();
        self.sync();
    }

    fn config_read(&mut self, reg: u8) -> u32 {
        if reg & 0xfc == PCI_CFG_DATA {
            let mut b = [0u8; 4];
            if let Some((off, len)) = self.cfg_window() {
                lock(&self.dev).read(off, &mut b[..len]);
            }
            return u32::from_le_bytes(b);
        }
        self.bars.config_read(reg)
    }

    fn config_write(&mut self, offset: u8, data: &[u8]) {
        if offset & 0xfc == PCI_CFG_DATA {
            if let Some((off, len)) = self.cfg_window() {
                // The access is the window's length, from pci_cfg_data.
                let start = usize::from(offset - PCI_CFG_DATA);
                if start == 0 && data.len() >= len {
                    lock(&self.dev).write(off, &data[..len]);
                }
            }
            return;
        }
        self.bars.config_write(offset, data);
        self.sync();
    }
}

#[cfg(test)]
#[path = "pci_tests.rs"]
mod tests;
