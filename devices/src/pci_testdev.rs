//! QEMU's `pci-testdev` (vendor 0x1b36, device 0x0005): a PCI function with
//! a 4 KiB memory BAR 0 and a 256-port I/O BAR 1 for timing and checking
//! MMIO and port I/O exits (kvm-unit-tests' `pci_testdev()` and vmexit
//! tests).
//!
//! Each BAR shows the header of the selected test: `test` (u8), `width`
//! (u8, always 1), 2 pad bytes, `offset` (u32), `data` (u8), 3 pad bytes,
//! `count` (u32), then the test's name and a NUL. Writing a number to
//! byte 0 selects test `n` of that BAR's three ("no-eventfd",
//! "wildcard-eventfd", "datamatch-eventfd"; anything else deselects) and
//! clears its count. Byte writes at `offset` then count, when the data
//! matches `data` for the datamatch test. The two eventfd tests are where
//! QEMU attaches an ioeventfd to `offset`: a one-byte write there that the
//! eventfd matches signals it instead of reaching the device, so the count
//! stays 0 for those (what the guest sees under QEMU's TCG too); other
//! writes are taken byte by byte. Reads go byte by byte through the header
//! and read 0 past it or with no test selected.

use std::sync::{Arc, Mutex};

use crate::bus::{BusDevice, VmRequest};
use crate::pci::PciConfigSpace;
use crate::pci_bars::{Bar, BarKind, PciBarFunction, PciBarSpace};

/// Size of the memory BAR (BAR 0).
pub const PCI_TESTDEV_MEM_SIZE: u64 = 4096;
/// Size of the I/O BAR (BAR 1).
pub const PCI_TESTDEV_IO_SIZE: u64 = 256;
/// Red Hat's PCI vendor id and the test device's id.
pub const PCI_TESTDEV_VENDOR: u16 = 0x1b36;
/// Device id of `pci-testdev`.
pub const PCI_TESTDEV_DEVICE: u16 = 0x0005;

const TESTS: [&str; 3] = ["no-eventfd", "wildcard-eventfd", "datamatch-eventfd"];
const DATAMATCH: u8 = 0xfa;
const NOMATCH: u8 = 0xce;
const COUNT: usize = 12;
const NAME: usize = 16;

struct IoTest {
    hdr: Vec<u8>,
    offset: u64,
    match_data: bool,
    eventfd: bool,
}

impl IoTest {
    /// Test `i` of the six: 0-2 on the memory BAR, 3-5 on the I/O BAR.
    fn new(i: usize) -> Self {
        let (kind, half) = if i < 3 {
            ("mmio", PCI_TESTDEV_MEM_SIZE / 2)
        } else {
            ("portio", PCI_TESTDEV_IO_SIZE / 2)
        };
        let test = TESTS[i % 3];
        let name = format!("{kind}-{test}");
        let offset = half + i as u64;
        let match_data = test != "wildcard-eventfd";
        let mut hdr = vec![0u8; NAME + name.len() + 1];
        hdr[0] = i as u8;
        hdr[1] = 1;
        hdr[4..8].copy_from_slice(&(offset as u32).to_le_bytes());
        hdr[8] = if match_data { DATAMATCH } else { NOMATCH };
        hdr[NAME..NAME + name.len()].copy_from_slice(name.as_bytes());
        Self {
            hdr,
            offset,
            match_data,
            eventfd: test != "no-eventfd",
        }
    }

    fn count(&self) -> u32 {
        u32::from_le_bytes(self.hdr[COUNT..COUNT + 4].try_into().unwrap_or([0; 4]))
    }

    fn set_count(&mut self, c: u32) {
        self.hdr[COUNT..COUNT + 4].copy_from_slice(&c.to_le_bytes());
    }

    /// Does the ioeventfd QEMU attaches for this test take a write of
    /// `data` at `addr` (an exact one-byte match)?
    fn eventfd_takes(&self, addr: u64, data: &[u8]) -> bool {
        self.eventfd
            && addr == self.offset
            && data.len() == 1
            && (!self.match_data || data[0] == self.hdr[8])
    }
}

/// The test state both BARs share.
pub struct PciTestdev {
    tests: Vec<IoTest>,
    current: Option<usize>,
    /// Writes the (modelled) ioeventfds took.
    signalled: u64,
}

impl Default for PciTestdev {
    fn default() -> Self {
        Self::new()
    }
}

impl PciTestdev {
    /// The device with no test selected.
    pub fn new() -> Self {
        Self {
            tests: (0..6).map(IoTest::new).collect(),
            current: None,
            signalled: 0,
        }
    }

    /// How many writes an ioeventfd took.
    pub fn signalled(&self) -> u64 {
        self.signalled
    }

    fn read(&mut self, addr: u64, data: &mut [u8]) {
        for (i, d) in data.iter_mut().enumerate() {
            let a = addr.saturating_add(i as u64);
            *d = match self.current.map(|c| &self.tests[c]) {
                // QEMU answers 0 for the last byte too (the NUL).
                Some(t) if a.saturating_add(1) < t.hdr.len() as u64 => t.hdr[a as usize],
                _ => 0,
            };
        }
    }

    /// `io`: the access came through the I/O BAR.
    fn write(&mut self, io: bool, addr: u64, data: &[u8]) {
        if let Some(t) = self.current.map(|c| &self.tests[c]) {
            if t.eventfd_takes(addr, data) {
                self.signalled += 1;
                return;
            }
        }
        for (i, &v) in data.iter().enumerate() {
            self.write_byte(io, addr.saturating_add(i as u64), v);
        }
    }

    fn write_byte(&mut self, io: bool, addr: u64, v: u8) {
        if addr == 0 {
            self.current = None;
            if usize::from(v) < TESTS.len() {
                let c = usize::from(v) + if io { 3 } else { 0 };
                self.tests[c].set_count(0);
                self.current = Some(c);
            }
            return;
        }
        let Some(t) = self.current.map(|c| &mut self.tests[c]) else {
            return;
        };
        if addr != t.offset || (t.match_data && v != t.hdr[8]) {
            return;
        }
        let c = t.count().wrapping_add(1);
        t.set_count(c);
    }
}

/// One BAR's view of the device.
struct TestdevBar {
    dev: Arc<Mutex<PciTestdev>>,
    io: bool,
}

impl BusDevice for TestdevBar {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        self.dev
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .read(offset, data);
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Option<VmRequest> {
        self.dev
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write(self.io, offset, data);
        None
    }
}

/// The `pci-testdev` function at `bdf`, its BARs decoded through `io` and
/// `mem`; also returns the shared state (for tests and inspection).
pub fn pci_testdev(
    bdf: u16,
    io: Arc<PciBarSpace>,
    mem: Arc<PciBarSpace>,
) -> (PciBarFunction, Arc<Mutex<PciTestdev>>) {
    let dev = Arc::new(Mutex::new(PciTestdev::new()));
    // Class "other" (0xff), revision 0; QEMU's default subsystem ids.
    let mut space = PciConfigSpace::new(PCI_TESTDEV_VENDOR, PCI_TESTDEV_DEVICE, 0xff_00_00, 0);
    space.set_u16(0x2c, 0x1af4);
    space.set_u16(0x2e, 0x1100);
    let bar = |io: bool, kind, size| {
        Some(Bar {
            kind,
            size,
            dev: Arc::new(Mutex::new(TestdevBar {
                dev: dev.clone(),
                io,
            })),
        })
    };
    let f = PciBarFunction::new(
        space,
        bdf,
        vec![
            bar(false, BarKind::Mem32, PCI_TESTDEV_MEM_SIZE),
            bar(true, BarKind::Io, PCI_TESTDEV_IO_SIZE),
        ],
        io,
        mem,
    );
    (f, dev)
}

#[cfg(test)]
#[path = "pci_testdev_tests.rs"]
mod tests;
