//! A virtio-pci driver for the tests: it finds the transport's structures by
//! walking configuration space, negotiates, sets up split queues in a
//! `GuestMemoryMmap` it writes by hand, and notifies, as a guest driver does.

use std::sync::{Arc, Mutex};

use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap};

use super::msix::MsiSink;
use super::pci::{VirtioPci, VirtioPciWiring};
use super::pci_common::status;
use super::VirtioDevice;
use crate::bus::Bus;
use crate::dma::GuestRam;
use crate::pci::PciFunction;
use crate::pci_bars::PciBarSpace;
use crate::testutil::RecordingIrq;

/// Guest RAM size of the tests.
pub const RAM: u64 = 0x10_0000;
/// Where the function's BARs are put.
pub const MSIX_BASE: u64 = 0xfebf_f000;
pub const VIRTIO_BASE: u64 = 0xfebf_8000;
/// The MSI address and the data of vector `v`.
pub const MSI_ADDR: u64 = 0xfee0_0000;
pub fn msi_data(v: u16) -> u32 {
    0x40 + u32::from(v)
}

/// Messages sent.
#[derive(Default)]
pub struct RecordingMsi(pub Mutex<Vec<(u64, u32)>>);

impl RecordingMsi {
    pub fn take(&self) -> Vec<(u64, u32)> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl MsiSink for RecordingMsi {
    fn send_msi(&self, addr: u64, data: u32) {
        self.0.lock().unwrap().push((addr, data));
    }
}

/// Where the driver found the virtio structures (addresses in MMIO).
#[derive(Default, Debug)]
pub struct Caps {
    pub common: u64,
    pub isr: u64,
    pub device: u64,
    pub notify: u64,
    pub notify_mult: u32,
    pub pci_cfg: u8,
    pub msix: u8,
}

pub struct Driver {
    pub f: VirtioPci,
    pub mmio: Bus,
    pub mem: GuestMemoryMmap,
    pub ram: GuestRam,
    pub msi: Arc<RecordingMsi>,
    pub intx: Arc<RecordingIrq>,
    pub written: Arc<Mutex<Vec<(u64, u64)>>>,
    pub caps: Caps,
}

/// A split queue laid out at `base`: descriptors, then the available ring,
/// then (4-aligned) the used ring.
#[derive(Clone, Copy, Debug)]
pub struct Rings {
    pub size: u16,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
}

impl Rings {
    pub fn at(base: u64, size: u16) -> Self {
        let desc = base;
        let avail = desc + 16 * u64::from(size);
        let used = (avail + 6 + 2 * u64::from(size) + 3) & !3;
        Self {
            size,
            desc,
            avail,
            used,
        }
    }
}

pub const F_NEXT: u16 = 1;
pub const F_WRITE: u16 = 2;
pub const F_INDIRECT: u16 = 4;

impl Driver {
    /// The function for `dev` at 00:02.0 with its BARs assigned.
    pub fn new(dev: Box<dyn VirtioDevice>) -> Self {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM as usize)]).unwrap();
        let ram = GuestRam::new(mem.clone(), &[]);
        let written = Arc::new(Mutex::new(Vec::new()));
        let w = written.clone();
        ram.set_written_hook(Arc::new(move |a, l| w.lock().unwrap().push((a, l))));
        let msi = Arc::new(RecordingMsi::default());
        let intx = Arc::new(RecordingIrq::default());
        let bar_mem = PciBarSpace::new();
        let mut f = VirtioPci::new(
            dev,
            VirtioPciWiring {
                bdf: 0x10,
                bar_io: PciBarSpace::new(),
                bar_mem: bar_mem.clone(),
                ram: ram.clone(),
                msi: msi.clone(),
                intx: intx.clone(),
                intx_line: 10,
            },
        );
        f.assign(super::pci::MSIX_BAR, MSIX_BASE);
        f.assign(super::pci::VIRTIO_BAR, VIRTIO_BASE);
        let mut mmio = Bus::new();
        mmio.set_fallback(bar_mem);
        let mut d = Self {
            f,
            mmio,
            mem,
            ram,
            msi,
            intx,
            written,
            caps: Caps::default(),
        };
        d.caps = d.probe();
        d
    }

    pub fn cfg8(&mut self, off: u8) -> u8 {
        (self.f.config_read(off & 0xfc) >> (8 * (off & 3))) as u8
    }
    pub fn cfg16(&mut self, off: u8) -> u16 {
        (self.f.config_read(off & 0xfc) >> (8 * (off & 3))) as u16
    }
    pub fn cfg32(&mut self, off: u8) -> u32 {
        self.f.config_read(off)
    }

    /// The address of BAR `i` as the driver reads it.
    pub fn bar(&mut self, i: u8) -> u64 {
        let lo = self.cfg32(0x10 + 4 * i);
        if lo & 1 != 0 {
            return u64::from(lo & !3);
        }
        let mut a = u64::from(lo & !0xf);
        if lo & 6 == 4 {
            a |= u64::from(self.cfg32(0x14 + 4 * i)) << 32;
        }
        a
    }

    /// Walks the capability list.
    fn probe(&mut self) -> Caps {
        let mut c = Caps::default();
        assert_ne!(self.cfg16(0x06) & 0x10, 0, "capability list bit");
        let mut at = self.cfg8(0x34);
        let mut seen = 0;
        while at != 0 {
            seen += 1;
            assert!(seen < 48, "capability loop");
            match self.cfg8(at) {
                0x09 => {
                    let ty = self.cfg8(at + 3);
                    let bar = self.cfg8(at + 4);
                    let addr = self.bar(bar) + u64::from(self.cfg32(at + 8));
                    match ty {
                        1 => c.common = addr,
                        2 => {
                            c.notify = addr;
                            c.notify_mult = self.cfg32(at + 16);
                        }
                        3 => c.isr = addr,
                        4 => c.device = addr,
                        5 => c.pci_cfg = at,
                        t => panic!("unknown virtio cap {t}"),
                    }
                }
                0x11 => c.msix = at,
                x => panic!("unexpected capability {x:#x}"),
            }
            at = self.cfg8(at + 1);
        }
        c
    }

    pub fn read(&self, addr: u64, len: usize) -> u64 {
        let mut b = [0u8; 8];
        assert!(self.mmio.read(addr, &mut b[..len]), "nothing at {addr:#x}");
        u64::from_le_bytes(b)
    }
    pub fn write(&self, addr: u64, len: usize, v: u64) {
        self.mmio.write(addr, &v.to_le_bytes()[..len]);
    }
    pub fn common(&self, off: u64, len: usize) -> u64 {
        self.read(self.caps.common + off, len)
    }
    pub fn set_common(&self, off: u64, len: usize, v: u64) {
        self.write(self.caps.common + off, len, v);
    }
    pub fn status(&self) -> u8 {
        self.common(0x14, 1) as u8
    }
    pub fn set_status(&self, s: u8) {
        self.set_common(0x14, 1, u64::from(s));
    }

    /// The device's features (both halves).
    pub fn device_features(&self) -> u64 {
        self.set_common(0, 4, 0);
        let lo = self.common(4, 4);
        self.set_common(0, 4, 1);
        lo | self.common(4, 4) << 32
    }

    /// Reset, ACKNOWLEDGE, DRIVER, `features`, FEATURES_OK: whether the
    /// device kept FEATURES_OK.
    pub fn negotiate(&self, features: u64) -> bool {
        self.set_status(0);
        assert_eq!(self.status(), 0);
        self.set_status(status::ACKNOWLEDGE);
        self.set_status(status::ACKNOWLEDGE | status::DRIVER);
        self.set_common(8, 4, 0);
        self.set_common(0xc, 4, features & 0xffff_ffff);
        self.set_common(8, 4, 1);
        self.set_common(0xc, 4, features >> 32);
        self.set_status(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
        self.status() & status::FEATURES_OK != 0
    }

    /// Bus mastering on, MSI-X enabled with vector `v` aimed at
    /// `MSI_ADDR` / `msi_data(v)` and unmasked, for `n` vectors.
    pub fn enable_msix(&mut self, n: u16) {
        let cmd = self.cfg16(0x04) | 4;
        self.f.config_write(0x04, &cmd.to_le_bytes());
        let m = self.caps.msix;
        let table = self.cfg32(m + 4);
        let base = self.bar((table & 7) as u8) + u64::from(table & !7);
        for v in 0..n {
            let e = base + 16 * u64::from(v);
            self.write(e, 4, MSI_ADDR);
            self.write(e + 4, 4, 0);
            self.write(e + 8, 4, u64::from(msi_data(v)));
            self.write(e + 12, 4, 0);
        }
        let ctl = self.cfg16(m + 2) | 0x8000;
        self.f.config_write(m + 2, &ctl.to_le_bytes());
    }

    /// Programs queue `q` with `r` and MSI-X vector `vector`; enables it.
    pub fn setup_queue(&self, q: u16, r: Rings, vector: u16) {
        self.set_common(0x16, 2, u64::from(q));
        self.set_common(0x18, 2, u64::from(r.size));
        self.set_common(0x1a, 2, u64::from(vector));
        for (off, v) in [(0x20, r.desc), (0x28, r.driver_area()), (0x30, r.used)] {
            self.set_common(off, 4, v & 0xffff_ffff);
            self.set_common(off + 4, 4, v >> 32);
        }
        self.set_common(0x1c, 2, 1);
    }

    pub fn driver_ok(&self) {
        let s = self.status();
        self.set_status(s | status::DRIVER_OK);
    }

    /// Writes descriptor `i` of table `table`.
    pub fn desc(&self, table: u64, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let a = GuestAddress(table + 16 * u64::from(i));
        self.mem.write_obj(addr, a).unwrap();
        self.mem.write_obj(len, a.unchecked_add(8)).unwrap();
        self.mem.write_obj(flags, a.unchecked_add(12)).unwrap();
        self.mem.write_obj(next, a.unchecked_add(14)).unwrap();
    }

    /// Offers the chains with heads `heads` (after those offered before).
    pub fn offer(&self, r: Rings, heads: &[u16]) {
        let idx: u16 = self.mem.read_obj(GuestAddress(r.avail + 2)).unwrap();
        for (k, &h) in heads.iter().enumerate() {
            let slot = (idx.wrapping_add(k as u16) % r.size) as u64;
            self.mem
                .write_obj(h, GuestAddress(r.avail + 4 + 2 * slot))
                .unwrap();
        }
        self.mem
            .write_obj(
                idx.wrapping_add(heads.len() as u16),
                GuestAddress(r.avail + 2),
            )
            .unwrap();
    }

    pub fn notify(&self, q: u16) {
        let a = self.caps.notify + u64::from(q) * u64::from(self.caps.notify_mult);
        self.write(a, 2, u64::from(q));
    }

    /// The used ring's index and its entries so far.
    pub fn used(&self, r: Rings) -> (u16, Vec<(u32, u32)>) {
        let idx: u16 = self.mem.read_obj(GuestAddress(r.used + 2)).unwrap();
        let n = idx.min(r.size);
        let v = (0..n)
            .map(|i| {
                let e = GuestAddress(r.used + 4 + 8 * u64::from(i));
                (
                    self.mem.read_obj(e).unwrap(),
                    self.mem.read_obj(e.unchecked_add(4)).unwrap(),
                )
            })
            .collect();
        (idx, v)
    }

    pub fn isr(&self) -> u8 {
        self.read(self.caps.isr, 1) as u8
    }
}

impl Rings {
    pub fn driver_area(&self) -> u64 {
        self.avail
    }
}
