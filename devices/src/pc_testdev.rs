//! QEMU's `pc-testdev`, the ISA test device kvm-unit-tests' x86 tests use:
//!
//! * ports 0xE0-0xE3 and 0xE8-0xEB: one 32-bit scratch register, any access
//!   size, each port a byte lane (0xE8 is QEMU's byte-at-a-time view of
//!   the same register). The 0xE8 view is attached port by port, and only
//!   where no other device is ([`attach_pc_testdev_byte_view`], after the
//!   others): an isa-debugcon at 0xE9 keeps its port (QEMU gives a shared
//!   port to the device added last);
//! * port 0xE4 (32-bit writes): "flush page": under QEMU it makes KVM drop
//!   its mapping of the guest page written; the guest sees no change, and
//!   neither the DBT nor hx86's KVM backend keeps a mapping to drop, so it is
//!   accepted and does nothing;
//! * ports 0x2000-0x2017: byte `n` drives ISA interrupt line `n` (non-zero
//!   raises, zero lowers);
//! * memory 0xFF000000-0xFF00FFFF: 64 KiB of scratch MMIO.

use std::sync::{Arc, Mutex};

use crate::bus::{Bus, BusDevice, BusError, IrqLine, VmRequest};

/// The scratch register ports (and the byte view at +8).
pub const TESTDEV_PORT: u64 = 0xe0;
/// The flush-page port.
pub const TESTDEV_FLUSH_PORT: u64 = 0xe4;
/// The byte-access view of the scratch register.
pub const TESTDEV_BYTE_PORT: u64 = 0xe8;
/// First interrupt line port.
pub const TESTDEV_IRQ_PORT: u64 = 0x2000;
/// Number of interrupt line ports.
pub const TESTDEV_IRQ_LINES: usize = 24;
/// The scratch MMIO window.
pub const TESTDEV_IOMEM: u64 = 0xff00_0000;
/// Its size.
pub const TESTDEV_IOMEM_LEN: u64 = 0x1_0000;

/// The device's state, shared by its five regions.
pub struct PcTestdev {
    data: u32,
    iomem: Vec<u8>,
    irqs: Vec<Arc<dyn IrqLine>>,
}

impl PcTestdev {
    /// `irqs[n]` is ISA interrupt line `n` (up to 24; missing lines ignore
    /// writes).
    pub fn new(irqs: Vec<Arc<dyn IrqLine>>) -> Self {
        Self {
            data: 0,
            iomem: vec![0; TESTDEV_IOMEM_LEN as usize],
            irqs,
        }
    }

    /// The scratch register.
    pub fn scratch(&self) -> u32 {
        self.data
    }
}

#[derive(Clone, Copy, Debug)]
enum Region {
    /// The scratch register from byte lane `.0` on.
    Scratch(u64),
    Flush,
    Irq,
    Iomem,
}

/// One region of the device on a bus.
struct RegionDev {
    dev: Arc<Mutex<PcTestdev>>,
    region: Region,
}

impl RegionDev {
    fn with<R>(&self, f: impl FnOnce(&mut PcTestdev) -> R) -> R {
        f(&mut self.dev.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The part of an access at `offset` of `len` bytes inside a region of
/// `size` bytes (what QEMU's memory core hands the region).
fn clamp(offset: u64, len: usize, size: u64) -> usize {
    (size.saturating_sub(offset)).min(len as u64) as usize
}

impl BusDevice for RegionDev {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        match self.region {
            Region::Scratch(lane) => {
                let offset = offset.saturating_add(lane);
                let n = clamp(offset, data.len(), 4);
                let v = self.with(|d| d.data).to_le_bytes();
                for (i, b) in data[..n].iter_mut().enumerate() {
                    *b = v[offset as usize + i];
                }
            }
            Region::Iomem => {
                let n = clamp(offset, data.len(), TESTDEV_IOMEM_LEN);
                self.with(|d| {
                    let o = offset as usize;
                    data[..n].copy_from_slice(&d.iomem[o..o + n]);
                });
            }
            // Write-only registers.
            Region::Flush | Region::Irq => {
                log::debug!(target: "guest_errors", "pc-testdev: read of write-only {:?} register", self.region)
            }
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Option<VmRequest> {
        match self.region {
            Region::Scratch(lane) => {
                let offset = offset.saturating_add(lane);
                let n = clamp(offset, data.len(), 4);
                self.with(|d| {
                    let mut v = d.data.to_le_bytes();
                    v[offset as usize..offset as usize + n].copy_from_slice(&data[..n]);
                    d.data = u32::from_le_bytes(v);
                });
            }
            Region::Flush => {
                if offset != 0 || data.len() != 4 {
                    log::debug!(target: "guest_errors", "pc-testdev: flush-page write of {} bytes at +{offset} ignored", data.len());
                } else {
                    log::trace!(target: "ioport", "pc-testdev: flush page {:x?}", data);
                }
            }
            Region::Irq => {
                let n = clamp(offset, data.len(), TESTDEV_IRQ_LINES as u64);
                self.with(|d| {
                    for (i, &v) in data[..n].iter().enumerate() {
                        if let Some(line) = d.irqs.get(offset as usize + i) {
                            line.set_level(v != 0);
                        }
                    }
                });
            }
            Region::Iomem => {
                let n = clamp(offset, data.len(), TESTDEV_IOMEM_LEN);
                self.with(|d| {
                    let o = offset as usize;
                    d.iomem[o..o + n].copy_from_slice(&data[..n]);
                });
            }
        }
        None
    }
}

fn region(dev: &Arc<Mutex<PcTestdev>>, region: Region) -> Arc<Mutex<dyn BusDevice>> {
    Arc::new(Mutex::new(RegionDev {
        dev: dev.clone(),
        region,
    }))
}

/// Put the device's regions on the port and memory buses, all but the
/// byte view at 0xE8 (see [`attach_pc_testdev_byte_view`]).
pub fn attach_pc_testdev(
    dev: &Arc<Mutex<PcTestdev>>,
    pio: &mut Bus,
    mmio: &mut Bus,
) -> Result<(), BusError> {
    pio.insert(region(dev, Region::Scratch(0)), TESTDEV_PORT, 4)?;
    pio.insert(region(dev, Region::Flush), TESTDEV_FLUSH_PORT, 4)?;
    pio.insert(
        region(dev, Region::Irq),
        TESTDEV_IRQ_PORT,
        TESTDEV_IRQ_LINES as u64,
    )?;
    mmio.insert(region(dev, Region::Iomem), TESTDEV_IOMEM, TESTDEV_IOMEM_LEN)?;
    Ok(())
}

/// The byte view of the scratch register at 0xE8-0xEB, one port at a time
/// and only on ports no other device has: attach it after the others.
pub fn attach_pc_testdev_byte_view(dev: &Arc<Mutex<PcTestdev>>, pio: &mut Bus) {
    for lane in 0..4 {
        let port = TESTDEV_BYTE_PORT + lane;
        if pio.get_device(port).is_none() {
            // Cannot fail: the port is free and one byte long.
            let _ = pio.insert(region(dev, Region::Scratch(lane)), port, 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::le_value;
    use crate::testutil::RecordingIrq;

    fn setup() -> (Bus, Bus, Vec<Arc<RecordingIrq>>, Arc<Mutex<PcTestdev>>) {
        let lines: Vec<Arc<RecordingIrq>> = (0..24).map(|_| Arc::default()).collect();
        let irqs = lines
            .iter()
            .map(|l| l.clone() as Arc<dyn IrqLine>)
            .collect();
        let dev = Arc::new(Mutex::new(PcTestdev::new(irqs)));
        let (mut pio, mut mmio) = (Bus::new(), Bus::new());
        attach_pc_testdev(&dev, &mut pio, &mut mmio).unwrap();
        attach_pc_testdev_byte_view(&dev, &mut pio);
        (pio, mmio, lines, dev)
    }

    fn rd(bus: &Bus, addr: u64, len: usize) -> u64 {
        let mut d = vec![0u8; len];
        bus.read(addr, &mut d);
        le_value(&d)
    }

    #[test]
    fn scratch_register_in_every_width_as_realmode_test_uses_it() {
        let (pio, _, _, dev) = setup();
        pio.write(0xe0, &[0x12]);
        assert_eq!(rd(&pio, 0xe0, 1), 0x12);
        pio.write(0xe0, &[0x34, 0x12]);
        assert_eq!(rd(&pio, 0xe0, 2), 0x1234);
        pio.write(0xe0, &0x8765_4321u32.to_le_bytes());
        assert_eq!(rd(&pio, 0xe0, 4), 0x8765_4321);
        // Byte lanes: a write at 0xE2 changes bits 16-23 only.
        pio.write(0xe2, &[0xaa]);
        assert_eq!(dev.lock().unwrap().scratch(), 0x87aa_4321);
        assert_eq!(rd(&pio, 0xe3, 1), 0x87);
        // 0xE8 is the same register.
        assert_eq!(rd(&pio, 0xe8, 4), 0x87aa_4321);
        pio.write(0xe9, &[0x55, 0x66]);
        assert_eq!(rd(&pio, 0xe0, 4), 0x8766_5521);
        // An access running past the region: only its bytes are the
        // register's (0xE4 is the write-only flush port).
        assert_eq!(rd(&pio, 0xe2, 4), 0xffff_8766);
    }

    #[test]
    fn byte_view_leaves_other_devices_their_ports() {
        let dev = Arc::new(Mutex::new(PcTestdev::new(Vec::new())));
        let (mut pio, mut mmio) = (Bus::new(), Bus::new());
        let other = crate::debugcon::Debugcon::new(Box::new(std::io::sink()), 0x42);
        pio.insert(Arc::new(Mutex::new(other)), 0xe9, 1).unwrap();
        attach_pc_testdev(&dev, &mut pio, &mut mmio).unwrap();
        attach_pc_testdev_byte_view(&dev, &mut pio);
        pio.write(0xe0, &0x4433_2211u32.to_le_bytes());
        assert_eq!(rd(&pio, 0xe8, 1), 0x11);
        assert_eq!(rd(&pio, 0xe9, 1), 0x42);
        assert_eq!(rd(&pio, 0xea, 2), 0x4433);
    }

    #[test]
    fn irq_ports_drive_lines() {
        let (pio, _, lines, _) = setup();
        pio.write(0x2000 + 14, &[1]);
        pio.write(0x2000 + 14, &[0]);
        pio.write(0x2000 + 3, &[0x80]);
        assert_eq!(lines[14].levels(), vec![true, false]);
        assert!(lines[3].level());
        // A word write drives two lines.
        pio.write(0x2000 + 22, &[1, 1]);
        assert!(lines[22].level() && lines[23].level());
        assert!(lines[0].levels().is_empty());
        // Past line 23: nothing there.
        assert!(!pio.read(0x2018, &mut [0u8]));
    }

    #[test]
    fn iomem_is_scratch_memory_and_flush_is_harmless() {
        let (pio, mmio, _, _) = setup();
        mmio.write(0xff00_1000, &0x1122_3344_5566_7788u64.to_le_bytes());
        assert_eq!(rd(&mmio, 0xff00_1000, 8), 0x1122_3344_5566_7788);
        assert_eq!(rd(&mmio, 0xff00_1002, 2), 0x5566);
        mmio.write(0xff00_ffff, &[1, 2]);
        assert_eq!(rd(&mmio, 0xff00_ffff, 1), 1);
        assert!(!mmio.read(0xff01_0000, &mut [0u8]));
        pio.write(0xe4, &0x1000u32.to_le_bytes());
        pio.write(0xe4, &[1]);
        assert_eq!(rd(&pio, 0xe4, 4), 0xffff_ffff);
    }
}
