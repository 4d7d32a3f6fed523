//! The devices `-device` and `-debugcon` add to the fixed PC: built from
//! their [`DeviceConfig`]s and put on the buses. PCI functions get their
//! BARs assigned and decoding enabled here, as SeaBIOS does under QEMU
//! (hx86 boots `-kernel` images without a BIOS): memory BARs downwards from
//! the IOAPIC at 0xFEC00000 (each aligned to its size), port BARs upwards
//! from 0xC000.
//!
//! virtio devices: a `DeviceConfig` arm builds the device model and calls
//! [`PciSlots::attach_virtio`], which puts it behind the virtio-pci
//! transport in a slot, assigns its BARs and wires its interrupts (MSI-X to
//! the VM, INTx to the GSI QEMU's PIIX routing gives the slot).

use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Result};
use devices::virtio::pci::{MSIX_BAR, MSIX_BAR_SIZE, VIRTIO_BAR, VIRTIO_BAR_SIZE};
use devices::virtio::{MsiSink, VirtioDevice, VirtioPci, VirtioPciWiring};
use devices::{
    attach_pc_testdev, attach_pc_testdev_byte_view, pci_testdev, Bus, BusDevice, DebugExit,
    Debugcon, IrqLine, PcTestdev, PciBarSpace, PciConfigIo, PciFunction,
};

use devices::dma::GuestRam;

use crate::config::DeviceConfig;
use crate::machine::serial_writer;
use crate::monitor::Chardevs;

/// The ISA interrupt lines pc-testdev can drive (0x2000-0x2017).
const TESTDEV_LINES: u32 = 24;
/// Where the firmware-style BAR assignment starts.
const PCI_MEM_TOP: u64 = firmware::layout::IOAPIC_BASE;
const PCI_IO_START: u64 = 0xc000;
/// The first slot given to a PCI device without `addr=` (QEMU's `pc` has
/// its PIIX3 at 1; hx86 keeps the numbering of QEMU's `-nodefaults`).
const FIRST_AUTO_SLOT: u8 = 2;

/// A level-triggered GSI several PCI functions share: asserted while any
/// of them asserts it (wired-OR), so one function dropping its INTx does
/// not hide another's.
struct SharedLine {
    line: Arc<dyn IrqLine>,
    levels: Mutex<Vec<bool>>,
}

/// One function's connection to a [`SharedLine`].
struct SharedLineInput {
    shared: Arc<SharedLine>,
    index: usize,
}

impl IrqLine for SharedLineInput {
    fn set_level(&self, level: bool) {
        let mut levels = self.shared.levels.lock().unwrap_or_else(|e| e.into_inner());
        let before = levels.iter().any(|&l| l);
        levels[self.index] = level;
        let after = levels.iter().any(|&l| l);
        if before != after {
            self.shared.line.set_level(after);
        }
    }
}

/// The PCI bus as devices are added: free slots, the next BAR addresses,
/// and what a function connects to.
pub struct PciSlots<'a> {
    pci: &'a Mutex<PciConfigIo>,
    bar_io: Arc<PciBarSpace>,
    bar_mem: Arc<PciBarSpace>,
    used: Vec<u8>,
    mem_top: u64,
    io_next: u64,
    irq: &'a dyn Fn(u32) -> Arc<dyn IrqLine>,
    ram: &'a GuestRam,
    msi: Arc<dyn MsiSink>,
    /// The INTx GSIs handed out so far.
    intx: Vec<(u8, Arc<SharedLine>)>,
}

impl PciSlots<'_> {
    /// A new input of the (shared) INTx line on `gsi`.
    fn intx_input(&mut self, gsi: u8) -> Arc<dyn IrqLine> {
        let shared = match self.intx.iter().find(|(g, _)| *g == gsi) {
            Some((_, s)) => s.clone(),
            None => {
                let s = Arc::new(SharedLine {
                    line: (self.irq)(u32::from(gsi)),
                    levels: Mutex::new(Vec::new()),
                });
                self.intx.push((gsi, s.clone()));
                s
            }
        };
        let mut levels = shared.levels.lock().unwrap_or_else(|e| e.into_inner());
        levels.push(false);
        let index = levels.len() - 1;
        drop(levels);
        Arc::new(SharedLineInput { shared, index })
    }

    /// `addr`, or the next free slot from 2; marks it used.
    fn slot(&mut self, what: &str, addr: Option<(u8, u8)>) -> Result<(u8, u8)> {
        let (slot, func) = match addr {
            Some(a) => a,
            None => match (FIRST_AUTO_SLOT..32).find(|s| !self.used.contains(s)) {
                Some(s) => (s, 0),
                None => bail!("{what}: no free PCI slot"),
            },
        };
        self.used.push(slot);
        Ok((slot, func))
    }

    /// The address of a new memory BAR of `size` (a power of two).
    fn mem_bar(&mut self, size: u64) -> u64 {
        self.mem_top = (self.mem_top - size) & !(size - 1);
        self.mem_top
    }

    /// The address of a new port BAR of `size`.
    fn io_bar(&mut self, size: u64) -> u64 {
        let base = self.io_next;
        self.io_next += size;
        base
    }

    fn add(&mut self, what: &str, (slot, func): (u8, u8), f: Box<dyn PciFunction>) -> Result<()> {
        self.pci
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add_function(0, slot, func, f)
            .map_err(|e| anyhow!("{what}: {e}"))
    }

    /// Puts `dev` on the bus behind the virtio-pci transport, at `addr`
    /// (`SLOT.FN`) or the next free slot, with its BARs assigned.
    pub fn attach_virtio(
        &mut self,
        addr: Option<(u8, u8)>,
        dev: Box<dyn VirtioDevice>,
    ) -> Result<()> {
        let what = format!("{}-pci", dev.name());
        let (slot, func) = self.slot(&what, addr)?;
        // INTA's GSI as QEMU's PIIX routes the slot (the DSDT's _PRT).
        let line = firmware::acpi::dsdt::pci_intx_gsi(slot, 0);
        let mut f = VirtioPci::new(
            dev,
            VirtioPciWiring {
                bdf: u16::from(slot) << 3 | u16::from(func),
                bar_io: self.bar_io.clone(),
                bar_mem: self.bar_mem.clone(),
                ram: self.ram.clone(),
                msi: self.msi.clone(),
                intx: self.intx_input(line),
                intx_line: line,
            },
        );
        let virtio_base = self.mem_bar(VIRTIO_BAR_SIZE);
        f.assign(VIRTIO_BAR, virtio_base);
        let msix_base = self.mem_bar(MSIX_BAR_SIZE);
        f.assign(MSIX_BAR, msix_base);
        log::debug!(target: "virtio", "{what} at 00:{slot:02x}.{func}: BAR4 {virtio_base:#x}, BAR1 {msix_base:#x}, IRQ {line}");
        self.add(&what, (slot, func), Box::new(f))
    }
}

/// Put `devs` on the buses; `irq(n)` is ISA/GSI line `n`, `msi` delivers
/// message-signalled interrupts, `chardevs` are the opened `-chardev`s
/// (virtio-serial ports attach to theirs).
#[allow(clippy::too_many_arguments)]
pub fn attach(
    devs: &[DeviceConfig],
    pio: &mut Bus,
    mmio: &mut Bus,
    pci: &Mutex<PciConfigIo>,
    irq: &dyn Fn(u32) -> Arc<dyn IrqLine>,
    ram: &GuestRam,
    msi: Arc<dyn MsiSink>,
    chardevs: &Chardevs,
) -> Result<()> {
    let (bar_io, bar_mem) = (PciBarSpace::new(), PciBarSpace::new());
    pio.set_fallback(bar_io.clone());
    mmio.set_fallback(bar_mem.clone());
    let mut bus = PciSlots {
        pci,
        bar_io,
        bar_mem,
        used: vec![0],
        mem_top: PCI_MEM_TOP,
        io_next: PCI_IO_START,
        irq,
        ram,
        msi,
        intx: Vec::new(),
    };
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
                let (slot, func) = bus.slot("pci-testdev", *addr)?;
                let bdf = u16::from(slot) << 3 | u16::from(func);
                let (mut f, _) = pci_testdev(bdf, bus.bar_io.clone(), bus.bar_mem.clone());
                f.assign(0, bus.mem_bar(devices::pci_testdev::PCI_TESTDEV_MEM_SIZE));
                f.assign(1, bus.io_bar(devices::pci_testdev::PCI_TESTDEV_IO_SIZE));
                bus.add("pci-testdev", (slot, func), Box::new(f))?;
            }
            DeviceConfig::VirtioRng { addr } => {
                bus.attach_virtio(*addr, Box::new(devices::virtio::rng::VirtioRng::new()))?
            }
            DeviceConfig::VirtioSerial(s) => {
                let dev = crate::chardev::virtio_port::build(s, chardevs)?;
                bus.attach_virtio(s.addr, Box::new(dev))?
            }
            // config::build put every port on its virtio-serial bus.
            DeviceConfig::VirtioSerialPort(p) => bail!("-device {}: no bus", p.driver()),
            DeviceConfig::VirtioNet {
                mac, addr, user, ..
            } => {
                let backend: Box<dyn devices::virtio::net::NetBackend> = match user {
                    Some(u) => Box::new(crate::net::slirp::SlirpNet::start(u)?),
                    None => Box::new(crate::net::Unconnected),
                };
                let mac = mac.unwrap_or(crate::config::net::DEFAULT_MAC);
                let dev = devices::virtio::net::VirtioNet::new(mac, backend);
                bus.attach_virtio(*addr, Box::new(dev))?
            }
            DeviceConfig::VirtioBlk(b) => bus.attach_virtio(b.addr, virtio_blk(b)?)?,
        }
    }
    // pc-testdev's byte view of 0xe8-0xeb takes only the ports left free.
    for dev in &testdevs {
        attach_pc_testdev_byte_view(dev, pio);
    }
    Ok(())
}

/// A virtio-blk-pci device's model: its image opened (locked, probed),
/// the warnings shown as QEMU shows them.
fn virtio_blk(
    b: &crate::config::drive::BlkDevice,
) -> Result<Box<dyn devices::virtio::VirtioDevice>> {
    use devices::virtio::{block::Block, block_image};
    let image = block_image::open(&b.image).map_err(|e| anyhow!("-drive {}: {e}", b.drive_spec))?;
    for w in &image.warnings {
        crate::config::warn(&format!("-drive {}: {w}", b.drive_spec));
    }
    Ok(Box::new(Block::new(image.backend, &b.block)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<bool>>);

    impl IrqLine for Recorder {
        fn set_level(&self, level: bool) {
            self.0.lock().unwrap().push(level);
        }
    }

    #[test]
    fn a_shared_intx_line_is_asserted_while_any_function_asserts_it() {
        let rec = Arc::new(Recorder::default());
        let shared = Arc::new(SharedLine {
            line: rec.clone(),
            levels: Mutex::new(vec![false, false]),
        });
        let a = SharedLineInput {
            shared: shared.clone(),
            index: 0,
        };
        let b = SharedLineInput { shared, index: 1 };
        a.set_level(true);
        b.set_level(true);
        a.set_level(false);
        assert_eq!(*rec.0.lock().unwrap(), vec![true], "b still holds it");
        a.set_level(false);
        b.set_level(false);
        assert_eq!(*rec.0.lock().unwrap(), vec![true, false]);
    }
}
