//! The devices `-device` and `-debugcon` add to the fixed PC: built from
//! their [`DeviceConfig`]s and put on the buses. PCI functions get their
//! BARs assigned and decoding enabled here, as SeaBIOS does under QEMU
//! (hx86 boots `-kernel` images without a BIOS): memory BARs downwards from
//! the IOAPIC at 0xFEC00000, port BARs upwards from 0xC000.

use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Result};
use devices::{
    attach_pc_testdev, attach_pc_testdev_byte_view, pci_testdev, Bus, BusDevice, DebugExit,
    Debugcon, IrqLine, PcTestdev, PciBarSpace, PciConfigIo,
};

use devices::dma::GuestRam;

use crate::config::DeviceConfig;
use crate::machine::serial_writer;

/// The ISA interrupt lines pc-testdev can drive (0x2000-0x2017).
const TESTDEV_LINES: u32 = 24;
/// Where the firmware-style BAR assignment starts.
const PCI_MEM_TOP: u64 = firmware::layout::IOAPIC_BASE;
const PCI_IO_START: u64 = 0xc000;
/// The first slot given to a PCI device without `addr=` (QEMU's `pc` has
/// its PIIX3 at 1; hx86 keeps the numbering of QEMU's `-nodefaults`).
const FIRST_AUTO_SLOT: u8 = 2;

/// Put `devs` on the buses; `irq(n)` is ISA/GSI line `n`.
pub fn attach(
    devs: &[DeviceConfig],
    pio: &mut Bus,
    mmio: &mut Bus,
    pci: &Mutex<PciConfigIo>,
    irq: &dyn Fn(u32) -> Arc<dyn IrqLine>,
    _ram: &GuestRam,
) -> Result<()> {
    let (bar_io, bar_mem) = (PciBarSpace::new(), PciBarSpace::new());
    pio.set_fallback(bar_io.clone());
    mmio.set_fallback(bar_mem.clone());
    let mut used_slots = vec![0u8];
    let (mut mem_top, mut io_next) = (PCI_MEM_TOP, PCI_IO_START);
    let mut testdevs = Vec::new();
    for d in devs {
        let port = |pio: &mut Bus, dev: Arc<Mutex<dyn BusDevice>>, base: u64, len: u64, name| {
            pio.insert(dev, base, len)
                .map_err(|e| anyhow!("{name} at port {base:#x}: {e}"))
        };
        match d {
            DeviceConfig::DebugExit { iobase, iosize } => port(
                pio,
                Arc::new(Mutex::new(DebugExit::new(*iosize))),
                *iobase,
                *iosize,
                "isa-debug-exit",
            )?,
            DeviceConfig::Debugcon {
                iobase,
                readback,
                out,
                ..
            } => port(
                pio,
                Arc::new(Mutex::new(Debugcon::new(serial_writer(out)?, *readback))),
                *iobase,
                1,
                "isa-debugcon",
            )?,
            DeviceConfig::PcTestdev => {
                let lines = (0..TESTDEV_LINES).map(irq).collect();
                let dev = Arc::new(Mutex::new(PcTestdev::new(lines)));
                attach_pc_testdev(&dev, pio, mmio).map_err(|e| anyhow!("pc-testdev: {e}"))?;
                testdevs.push(dev);
            }
            DeviceConfig::PciTestdev { addr } => {
                let (slot, func) = match addr {
                    Some(a) => *a,
                    None => match (FIRST_AUTO_SLOT..32).find(|s| !used_slots.contains(s)) {
                        Some(s) => (s, 0),
                        None => bail!("pci-testdev: no free PCI slot"),
                    },
                };
                used_slots.push(slot);
                let bdf = u16::from(slot) << 3 | u16::from(func);
                let (mut f, _) = pci_testdev(bdf, bar_io.clone(), bar_mem.clone());
                mem_top -= devices::pci_testdev::PCI_TESTDEV_MEM_SIZE;
                f.assign(0, mem_top);
                f.assign(1, io_next);
                io_next += devices::pci_testdev::PCI_TESTDEV_IO_SIZE;
                pci.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .add_function(0, slot, func, Box::new(f))
                    .map_err(|e| anyhow!("pci-testdev: {e}"))?;
            }
        }
    }
    // pc-testdev's byte view of 0xe8-0xeb takes only the ports left free.
    for dev in &testdevs {
        attach_pc_testdev_byte_view(dev, pio);
    }
    Ok(())
}
