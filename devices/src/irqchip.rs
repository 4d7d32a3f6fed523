//! The userspace interrupt complex the DBT uses: i8259 pair, IOAPIC, the
//! vCPU's local APIC and the i8254 (whose channel 0 is IRQ0), behind one lock.
//!
//! GSI routing follows QEMU's PC: GSI n < 16 goes to i8259 IRQ n, and every
//! GSI goes to IOAPIC pin n, except that GSI 0 (the PIT) lands on IOAPIC
//! pin 2 (firmware tables must carry the usual ISA IRQ0 -> GSI2 override).
//! The CPU takes the local APIC's interrupt first, then the i8259's through
//! LINT0 in ExtINT mode (or directly when the APIC is globally disabled).

use std::sync::{Arc, Mutex, MutexGuard};

use crate::bus::{Bus, BusDevice, BusError, IrqLine, VmRequest};
use crate::clock::Clock;
use crate::ioapic::{IoApic, IOAPIC_BASE, IOAPIC_SIZE};
use crate::lapic::{LocalApic, LAPIC_BASE, LAPIC_SIZE};
use crate::pic::Pic;
use crate::pit::Pit;

/// Called (with the chip locked: it must not lock the chip) whenever an
/// interrupt line changes, so a halted vCPU can be woken up.
pub type IrqNotifier = Arc<dyn Fn() + Send + Sync>;

/// The interrupt controllers and the PIT of the single-vCPU PC.
pub struct IrqChip {
    pic: Pic,
    ioapic: IoApic,
    lapic: LocalApic,
    pit: Pit,
    clock: Arc<dyn Clock>,
    notifier: Option<IrqNotifier>,
}

/// The chip as shared between the vCPU, the buses and the devices' lines.
pub type SharedIrqChip = Arc<Mutex<IrqChip>>;

impl std::fmt::Debug for IrqChip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IrqChip")
            .field("pic", &self.pic)
            .field("ioapic", &self.ioapic)
            .field("lapic", &self.lapic)
            .field("pit", &self.pit)
            .finish_non_exhaustive()
    }
}

/// Lock a shared chip, ignoring poisoning (a panic elsewhere must not turn
/// every later interrupt into another panic).
pub fn lock_chip(chip: &SharedIrqChip) -> MutexGuard<'_, IrqChip> {
    chip.lock().unwrap_or_else(|e| e.into_inner())
}

impl IrqChip {
    /// A chip in its reset state with local APIC ID 0, timed by `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            pic: Pic::new(),
            ioapic: IoApic::new(0),
            lapic: LocalApic::new(0),
            pit: Pit::new(),
            clock,
            notifier: None,
        }
    }

    /// Replace the local APIC (e.g. to set its timer and TSC frequencies).
    pub fn with_lapic(mut self, lapic: LocalApic) -> Self {
        self.lapic = lapic;
        self
    }

    /// Wrap in the shared form the bus devices and lines use.
    pub fn into_shared(self) -> SharedIrqChip {
        Arc::new(Mutex::new(self))
    }

    /// Set the line-change notifier.
    pub fn set_notifier(&mut self, notifier: Option<IrqNotifier>) {
        self.notifier = notifier;
    }

    /// The i8259 pair.
    pub fn pic(&self) -> &Pic {
        &self.pic
    }
    /// The IOAPIC.
    pub fn ioapic(&self) -> &IoApic {
        &self.ioapic
    }
    /// The local APIC.
    pub fn lapic(&self) -> &LocalApic {
        &self.lapic
    }
    /// The local APIC, mutably (MSRs: APIC base, TSC deadline).
    pub fn lapic_mut(&mut self) -> &mut LocalApic {
        &mut self.lapic
    }
    /// The PIT.
    pub fn pit(&self) -> &Pit {
        &self.pit
    }

    /// The chip's clock reading.
    pub fn now_ns(&self) -> u64 {
        self.clock.now_ns()
    }

    /// Drive global system interrupt `gsi` to `level`.
    pub fn set_irq(&mut self, gsi: u32, level: bool) {
        if gsi < 16 {
            self.pic.set_irq(gsi, level);
        }
        let pin = if gsi == 0 { 2 } else { gsi };
        let Self { ioapic, lapic, .. } = self;
        ioapic.set_irq(pin, level, &mut |m| lapic.accept_message(m));
        if let Some(n) = &self.notifier {
            n();
        }
    }

    /// Bring the timers up to now: PIT channel 0 edges become IRQ0 pulses,
    /// an expired APIC timer requests its vector.
    pub fn poll(&mut self) {
        let now = self.clock.now_ns();
        if self.pit.poll(now) {
            log::trace!(target: "int", "pit: IRQ0 edge");
            self.set_irq(0, true);
            self.set_irq(0, false);
        }
        self.lapic.poll(now);
    }

    /// The vector the vCPU would take now (ignoring RFLAGS.IF), if any.
    pub fn pending_interrupt(&mut self) -> Option<u8> {
        self.poll();
        self.lapic.pending_vector().or_else(|| {
            self.lapic
                .accepts_pic_interrupts()
                .then(|| self.pic.peek_vector())
                .flatten()
        })
    }

    /// Take the interrupt [`IrqChip::pending_interrupt`] reports: the vector
    /// to deliver, with the controllers' in-service state updated.
    pub fn acknowledge(&mut self) -> Option<u8> {
        self.poll();
        if let Some(v) = self.lapic.acknowledge() {
            return Some(v);
        }
        if self.lapic.accepts_pic_interrupts() {
            return self.pic.acknowledge();
        }
        None
    }

    /// Take a pending NMI.
    pub fn take_nmi(&mut self) -> bool {
        self.lapic.take_nmi()
    }

    /// The earliest time a timer needs [`IrqChip::poll`], if any.
    pub fn next_deadline_ns(&self) -> Option<u64> {
        match (self.pit.next_deadline_ns(), self.lapic.next_deadline_ns()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// IA32_TSC_DEADLINE write; `tsc_now` is the guest TSC at this moment.
    pub fn set_tsc_deadline(&mut self, value: u64, tsc_now: u64) {
        let now = self.clock.now_ns();
        self.lapic.set_tsc_deadline(value, tsc_now, now);
    }

    /// Port read of the PIC, ELCR, PIT or port 0x61.
    pub fn pio_read(&mut self, port: u16, data: &mut [u8]) {
        // A guest polling the PIC's IRR with interrupts off must still see
        // the PIT's edges: bring the timers up to date first.
        if matches!(port, 0x20 | 0x21 | 0xa0 | 0xa1) {
            self.poll();
        }
        let now = self.clock.now_ns();
        for (i, d) in data.iter_mut().enumerate() {
            let p = port.wrapping_add(i as u16);
            *d = match p {
                0x20 | 0x21 | 0xa0 | 0xa1 | 0x4d0 | 0x4d1 => self.pic.read_port(p),
                0x40..=0x43 | 0x61 => self.pit.read_port(p, now),
                _ => 0xff,
            };
        }
    }

    /// Port write of the PIC, ELCR, PIT or port 0x61.
    pub fn pio_write(&mut self, port: u16, data: &[u8]) {
        let now = self.clock.now_ns();
        for (i, &v) in data.iter().enumerate() {
            let p = port.wrapping_add(i as u16);
            match p {
                0x20 | 0x21 | 0xa0 | 0xa1 | 0x4d0 | 0x4d1 => self.pic.write_port(p, v),
                0x40..=0x43 | 0x61 => self.pit.write_port(p, v, now),
                _ => log::debug!(target: "guest_errors", "irqchip: write to port {:#x}", p),
            }
        }
    }

    /// MMIO read in the local APIC page.
    pub fn lapic_read(&mut self, offset: u64, data: &mut [u8]) {
        let now = self.clock.now_ns();
        self.lapic.mmio_read(offset, data, now);
    }

    /// MMIO write in the local APIC page (EOIs reach the IOAPIC).
    pub fn lapic_write(&mut self, offset: u64, data: &[u8]) {
        let now = self.clock.now_ns();
        if let Some(vector) = self.lapic.mmio_write(offset, data, now) {
            let Self { ioapic, lapic, .. } = self;
            ioapic.eoi(vector, &mut |m| lapic.accept_message(m));
        }
    }

    /// MMIO read in the IOAPIC window.
    pub fn ioapic_read(&mut self, offset: u64, data: &mut [u8]) {
        self.ioapic.mmio_read(offset, data);
    }

    /// MMIO write in the IOAPIC window.
    pub fn ioapic_write(&mut self, offset: u64, data: &[u8]) {
        let Self { ioapic, lapic, .. } = self;
        ioapic.mmio_write(offset, data, &mut |m| lapic.accept_message(m));
    }
}

/// The ranges of the chip on the buses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChipRegion {
    /// i8259 master, ports 0x20-0x21.
    PicMaster,
    /// i8259 slave, ports 0xA0-0xA1.
    PicSlave,
    /// ELCR, ports 0x4D0-0x4D1.
    Elcr,
    /// i8254, ports 0x40-0x43.
    Pit,
    /// System control port B, 0x61.
    Port61,
    /// Local APIC page (MMIO).
    Lapic,
    /// IOAPIC window (MMIO).
    IoApic,
}

impl ChipRegion {
    /// Every region.
    pub const ALL: [ChipRegion; 7] = [
        Self::PicMaster,
        Self::PicSlave,
        Self::Elcr,
        Self::Pit,
        Self::Port61,
        Self::Lapic,
        Self::IoApic,
    ];

    /// Base address (port or guest-physical).
    pub fn base(self) -> u64 {
        match self {
            Self::PicMaster => 0x20,
            Self::PicSlave => 0xa0,
            Self::Elcr => 0x4d0,
            Self::Pit => 0x40,
            Self::Port61 => 0x61,
            Self::Lapic => LAPIC_BASE,
            Self::IoApic => IOAPIC_BASE,
        }
    }

    /// Length of the range.
    pub fn len(self) -> u64 {
        match self {
            Self::PicMaster | Self::PicSlave | Self::Elcr => 2,
            Self::Pit => 4,
            Self::Port61 => 1,
            Self::Lapic => LAPIC_SIZE,
            Self::IoApic => IOAPIC_SIZE,
        }
    }

    /// Never true.
    pub fn is_empty(self) -> bool {
        false
    }

    /// Whether the region is MMIO (else port I/O).
    pub fn is_mmio(self) -> bool {
        matches!(self, Self::Lapic | Self::IoApic)
    }
}

/// A [`BusDevice`] for one region of a shared chip.
pub struct IrqChipDevice {
    chip: SharedIrqChip,
    region: ChipRegion,
}

impl IrqChipDevice {
    /// The device for `region` of `chip`.
    pub fn new(chip: SharedIrqChip, region: ChipRegion) -> Self {
        Self { chip, region }
    }
}

impl BusDevice for IrqChipDevice {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let mut chip = lock_chip(&self.chip);
        match self.region {
            ChipRegion::Lapic => chip.lapic_read(offset, data),
            ChipRegion::IoApic => chip.ioapic_read(offset, data),
            r => match u16::try_from(r.base().saturating_add(offset)) {
                Ok(port) if offset < r.len() => chip.pio_read(port, data),
                _ => data.fill(0xff),
            },
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Option<VmRequest> {
        let mut chip = lock_chip(&self.chip);
        match self.region {
            ChipRegion::Lapic => chip.lapic_write(offset, data),
            ChipRegion::IoApic => chip.ioapic_write(offset, data),
            r => match u16::try_from(r.base().saturating_add(offset)) {
                Ok(port) if offset < r.len() => {
                    // Bytes past the region's end belong to other devices.
                    let n =
                        usize::try_from(r.len() - offset).map_or(data.len(), |n| n.min(data.len()));
                    chip.pio_write(port, &data[..n]);
                }
                _ => {}
            },
        }
        None
    }
}

/// Put every region of `chip` on the port I/O and MMIO buses.
pub fn attach_irqchip(chip: &SharedIrqChip, pio: &mut Bus, mmio: &mut Bus) -> Result<(), BusError> {
    for region in ChipRegion::ALL {
        let dev = Arc::new(Mutex::new(IrqChipDevice::new(chip.clone(), region)));
        let bus = if region.is_mmio() {
            &mut *mmio
        } else {
            &mut *pio
        };
        bus.insert(dev, region.base(), region.len())?;
    }
    Ok(())
}

/// An [`IrqLine`] driving one GSI of a shared chip.
pub struct GsiLine {
    chip: SharedIrqChip,
    gsi: u32,
}

impl GsiLine {
    /// The line for `gsi`.
    pub fn new(chip: SharedIrqChip, gsi: u32) -> Self {
        Self { chip, gsi }
    }
}

impl IrqLine for GsiLine {
    fn set_level(&self, level: bool) {
        lock_chip(&self.chip).set_irq(self.gsi, level);
    }
}

#[cfg(test)]
#[path = "irqchip_tests.rs"]
mod tests;
