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
use crate::lapic::{ApicMessage, ApicMsrFault, LocalApic, LAPIC_BASE, LAPIC_SIZE};
use crate::pic::Pic;
use crate::pit::Pit;

/// IA32_APIC_BASE.
pub const MSR_APIC_BASE: u32 = 0x1b;
/// IA32_TSC_DEADLINE.
pub const MSR_TSC_DEADLINE: u32 = 0x6e0;

/// Called (with the chip locked: it must not lock the chip) whenever an
/// interrupt line changes, so a halted vCPU can be woken up.
pub type IrqNotifier = Arc<dyn Fn() + Send + Sync>;

/// The interrupt controllers and the PIT of the PC: one local APIC per
/// vCPU (APIC ID = vCPU index), routing IOAPIC messages and IPIs between
/// them.
pub struct IrqChip {
    pic: Pic,
    ioapic: IoApic,
    lapics: Vec<LocalApic>,
    pit: Pit,
    clock: Arc<dyn Clock>,
    notifier: Option<IrqNotifier>,
    /// Rotates lowest-priority deliveries among equal candidates.
    lowest_rr: usize,
}

/// The chip as shared between the vCPUs, the buses and the devices' lines.
pub type SharedIrqChip = Arc<Mutex<IrqChip>>;

impl std::fmt::Debug for IrqChip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IrqChip")
            .field("pic", &self.pic)
            .field("ioapic", &self.ioapic)
            .field("lapics", &self.lapics)
            .field("pit", &self.pit)
            .finish_non_exhaustive()
    }
}

/// Lock a shared chip, ignoring poisoning (a panic elsewhere must not turn
/// every later interrupt into another panic).
pub fn lock_chip(chip: &SharedIrqChip) -> MutexGuard<'_, IrqChip> {
    chip.lock().unwrap_or_else(|e| e.into_inner())
}

/// Delivers an IOAPIC message to the local APICs it addresses: every
/// match for fixed/NMI/INIT, one of them for lowest priority (the lowest
/// processor priority, rotating among equals). Returns whether any took it.
fn route_message(lapics: &mut [LocalApic], rr: &mut usize, m: &ApicMessage) -> bool {
    let n = lapics.len();
    if m.delivery_mode == crate::lapic::delivery::LOWEST {
        let pick = (0..n)
            .map(|k| (k + *rr) % n)
            .filter(|&j| lapics[j].is_enabled() && lapics[j].matches_destination(m.dest, m.logical))
            .min_by_key(|&j| lapics[j].ppr() & 0xf0);
        return match pick {
            Some(j) => {
                *rr = (j + 1) % n;
                lapics[j].deliver_local(m.delivery_mode, m.vector, m.level);
                true
            }
            None => false,
        };
    }
    let mut any = false;
    for l in lapics.iter_mut() {
        any |= l.accept_message(m);
    }
    any
}

impl IrqChip {
    /// A chip in its reset state with one local APIC (ID 0), timed by
    /// `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self::with_cpus(clock, 1)
    }

    /// A chip with `cpus` local APICs (IDs 0..cpus; 0 is the BSP).
    pub fn with_cpus(clock: Arc<dyn Clock>, cpus: usize) -> Self {
        let cpus = cpus.clamp(1, 255);
        Self {
            pic: Pic::new(),
            ioapic: IoApic::new(cpus as u8),
            lapics: (0..cpus)
                .map(|i| {
                    if i == 0 {
                        LocalApic::new(0)
                    } else {
                        LocalApic::new_ap(i as u8)
                    }
                })
                .collect(),
            pit: Pit::new(),
            clock,
            notifier: None,
            lowest_rr: 0,
        }
    }

    /// Replace the BSP's local APIC (e.g. to set its timer and TSC
    /// frequencies).
    pub fn with_lapic(mut self, lapic: LocalApic) -> Self {
        self.lapics[0] = lapic;
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

    fn notify(&self) {
        if let Some(n) = &self.notifier {
            n();
        }
    }

    /// The i8259 pair.
    pub fn pic(&self) -> &Pic {
        &self.pic
    }
    /// The IOAPIC.
    pub fn ioapic(&self) -> &IoApic {
        &self.ioapic
    }
    /// The BSP's local APIC.
    pub fn lapic(&self) -> &LocalApic {
        &self.lapics[0]
    }
    /// The BSP's local APIC, mutably (MSRs: APIC base, TSC deadline).
    pub fn lapic_mut(&mut self) -> &mut LocalApic {
        &mut self.lapics[0]
    }
    /// The local APIC of vCPU `cpu` (the BSP's for an unknown index).
    pub fn lapic_of(&mut self, cpu: usize) -> &mut LocalApic {
        let i = if cpu < self.lapics.len() { cpu } else { 0 };
        &mut self.lapics[i]
    }
    /// Number of local APICs (vCPUs).
    pub fn cpus(&self) -> usize {
        self.lapics.len()
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
        let Self {
            ioapic,
            lapics,
            lowest_rr,
            ..
        } = self;
        ioapic.set_irq(pin, level, &mut |m| route_message(lapics, lowest_rr, m));
        self.notify();
    }

    /// A message-signalled interrupt: `data` written to `addr` in the
    /// 0xFEExxxxx window (Intel SDM 11.11: destination ID in address bits
    /// 19:12, destination mode bit 2; vector, delivery mode and trigger
    /// mode in the data). Anything else is logged and dropped.
    pub fn deliver_msi(&mut self, addr: u64, data: u32) {
        if addr >> 20 != 0xfee {
            log::warn!(target: "guest_errors", "MSI to {addr:#x} (not the APIC window) dropped");
            return;
        }
        let m = ApicMessage {
            vector: data as u8,
            delivery_mode: ((data >> 8) & 7) as u8,
            dest: (addr >> 12) as u8,
            logical: addr & 4 != 0,
            level: data & (1 << 15) != 0,
        };
        log::trace!(target: "int", "MSI {addr:#x} {data:#x}: {m:?}");
        let Self {
            lapics, lowest_rr, ..
        } = self;
        route_message(lapics, lowest_rr, &m);
        self.notify();
    }

    /// Bring the timers up to now: PIT channel 0 edges become IRQ0 pulses,
    /// an expired APIC timer of `cpu` requests its vector.
    pub fn poll_on(&mut self, cpu: usize) {
        let now = self.clock.now_ns();
        if self.pit.poll(now) {
            log::trace!(target: "int", "pit: IRQ0 edge");
            self.set_irq(0, true);
            self.set_irq(0, false);
        }
        self.lapic_of(cpu).poll(now);
    }

    /// [`IrqChip::poll_on`] for the BSP.
    pub fn poll(&mut self) {
        self.poll_on(0);
    }

    /// The vector vCPU `cpu` would take now (ignoring RFLAGS.IF), if any.
    /// The i8259 reaches the BSP only (through its LINT0 in ExtINT mode).
    pub fn pending_interrupt_on(&mut self, cpu: usize) -> Option<u8> {
        self.poll_on(cpu);
        let l = self.lapic_of(cpu);
        if let Some(v) = l.pending_vector() {
            return Some(v);
        }
        (cpu == 0 && self.lapics[0].accepts_pic_interrupts())
            .then(|| self.pic.peek_vector())
            .flatten()
    }

    /// Take the interrupt [`IrqChip::pending_interrupt_on`] reports: the
    /// vector to deliver, with the controllers' in-service state updated.
    pub fn acknowledge_on(&mut self, cpu: usize) -> Option<u8> {
        self.poll_on(cpu);
        if let Some(v) = self.lapic_of(cpu).acknowledge() {
            return Some(v);
        }
        if cpu == 0 && self.lapics[0].accepts_pic_interrupts() {
            return self.pic.acknowledge();
        }
        None
    }

    /// Take a pending NMI of `cpu`.
    pub fn take_nmi_on(&mut self, cpu: usize) -> bool {
        self.lapic_of(cpu).take_nmi()
    }

    /// Whether an NMI waits for `cpu`.
    pub fn nmi_pending_on(&mut self, cpu: usize) -> bool {
        self.lapic_of(cpu).nmi_pending()
    }

    /// Take a pending INIT or start-up IPI of `cpu`.
    pub fn take_startup(&mut self, cpu: usize) -> Option<crate::lapic::Startup> {
        self.lapic_of(cpu).take_startup()
    }

    /// Whether an INIT or start-up IPI waits for `cpu`.
    pub fn startup_pending(&mut self, cpu: usize) -> bool {
        self.lapic_of(cpu).startup_pending()
    }

    /// BSP forms of the per-vCPU calls above.
    pub fn pending_interrupt(&mut self) -> Option<u8> {
        self.pending_interrupt_on(0)
    }
    pub fn acknowledge(&mut self) -> Option<u8> {
        self.acknowledge_on(0)
    }
    pub fn take_nmi(&mut self) -> bool {
        self.take_nmi_on(0)
    }

    /// The earliest time a timer of `cpu` (or the PIT) needs polling.
    pub fn next_deadline_ns_on(&mut self, cpu: usize) -> Option<u64> {
        let l = self.lapic_of(cpu).next_deadline_ns();
        match (self.pit.next_deadline_ns(), l) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// [`IrqChip::next_deadline_ns_on`] for the BSP.
    pub fn next_deadline_ns(&mut self) -> Option<u64> {
        self.next_deadline_ns_on(0)
    }

    /// IA32_TSC_DEADLINE write of `cpu`; `tsc_now` is its guest TSC now.
    pub fn set_tsc_deadline_on(&mut self, cpu: usize, value: u64, tsc_now: u64) {
        let now = self.clock.now_ns();
        self.lapic_of(cpu).set_tsc_deadline(value, tsc_now, now);
    }

    /// RDMSR of vCPU `cpu` of an MSR its local APIC owns (IA32_APIC_BASE,
    /// IA32_TSC_DEADLINE, the x2APIC range): None if it owns no such MSR,
    /// `Some(Err(_))` for #GP.
    pub fn msr_read_on(&mut self, cpu: usize, msr: u32) -> Option<Result<u64, ApicMsrFault>> {
        let now = self.clock.now_ns();
        let l = self.lapic_of(cpu);
        match msr {
            MSR_APIC_BASE => Some(Ok(l.apic_base())),
            MSR_TSC_DEADLINE => Some(Ok(l.tsc_deadline())),
            0x800..=0x8ff => Some(l.x2apic_msr_read(msr, now)),
            _ => None,
        }
    }

    /// WRMSR counterpart of [`IrqChip::msr_read_on`]; `tsc_now` is the
    /// vCPU's TSC (for IA32_TSC_DEADLINE). IA32_APIC_BASE values are
    /// checked by the CPU before they get here.
    pub fn msr_write_on(
        &mut self,
        cpu: usize,
        msr: u32,
        value: u64,
        tsc_now: u64,
    ) -> Option<Result<(), ApicMsrFault>> {
        let now = self.clock.now_ns();
        let cpu = if cpu < self.lapics.len() { cpu } else { 0 };
        let r = match msr {
            MSR_APIC_BASE => {
                self.lapics[cpu].set_apic_base(value);
                Ok(())
            }
            MSR_TSC_DEADLINE => {
                self.set_tsc_deadline_on(cpu, value, tsc_now);
                Ok(())
            }
            0x800..=0x8ff => match self.lapics[cpu].x2apic_msr_write(msr, value, now) {
                Ok(eoi) => {
                    self.after_lapic_write(cpu, eoi);
                    Ok(())
                }
                Err(e) => Err(e),
            },
            _ => return None,
        };
        self.notify();
        Some(r)
    }

    /// [`IrqChip::set_tsc_deadline_on`] for the BSP.
    pub fn set_tsc_deadline(&mut self, value: u64, tsc_now: u64) {
        self.set_tsc_deadline_on(0, value, tsc_now);
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

    /// MMIO read in the local APIC page of vCPU `cpu`.
    pub fn lapic_read_on(&mut self, cpu: usize, offset: u64, data: &mut [u8]) {
        let now = self.clock.now_ns();
        self.lapic_of(cpu).mmio_read(offset, data, now);
    }

    /// MMIO write in the local APIC page of vCPU `cpu`: EOIs reach the
    /// IOAPIC, IPIs their destination APICs.
    pub fn lapic_write_on(&mut self, cpu: usize, offset: u64, data: &[u8]) {
        let now = self.clock.now_ns();
        let cpu = if cpu < self.lapics.len() { cpu } else { 0 };
        let eoi = self.lapics[cpu].mmio_write(offset, data, now);
        self.after_lapic_write(cpu, eoi);
    }

    /// After a register write of APIC `cpu`: the EOI of level-triggered
    /// `eoi` reaches the IOAPIC, the IPIs it sent their destinations.
    fn after_lapic_write(&mut self, cpu: usize, eoi: Option<u8>) {
        if let Some(vector) = eoi {
            let Self {
                ioapic,
                lapics,
                lowest_rr,
                ..
            } = self;
            ioapic.eoi(vector, &mut |m| route_message(lapics, lowest_rr, m));
        }
        self.route_outbox(cpu);
    }

    /// Routes the IPIs APIC `cpu` sent.
    fn route_outbox(&mut self, cpu: usize) {
        let sent = self.lapics[cpu].take_outbox();
        if !sent.is_empty() {
            for icr in sent {
                self.route_ipi(cpu, icr);
            }
            self.notify();
        }
    }

    /// Routes an IPI `icr` sent by vCPU `from` to the other APICs (the
    /// sender took its own share, see `LocalApic::send_ipi`; a
    /// lowest-priority IPI by destination may pick the sender too).
    fn route_ipi(&mut self, from: usize, icr: u64) {
        let mode = ((icr >> 8) & 7) as u8;
        let vector = icr as u8;
        let logical = icr & (1 << 11) != 0;
        let level = icr & (1 << 15) != 0 && mode == crate::lapic::delivery::FIXED;
        // An APIC in x2APIC mode sends 32-bit destinations.
        let wide = self.lapics[from].is_x2apic();
        let dest = if wide {
            (icr >> 32) as u32
        } else {
            (icr >> 56) as u32
        };
        let shorthand = (icr >> 18) & 3;
        let n = self.lapics.len();
        let lowest = mode == crate::lapic::delivery::LOWEST && shorthand == 0;
        let targets: Vec<usize> = (0..n)
            .filter(|&j| j != from || lowest)
            .filter(|&j| match shorthand {
                0 => self.lapics[j].matches(dest, logical, wide),
                1 => false,
                _ => true,
            })
            .collect();
        log::trace!(target: "int", "IPI {icr:#x} from CPU {from} to {targets:?}");
        if lowest {
            if let Some(&j) = targets.iter().min_by_key(|&&j| self.lapics[j].ppr() & 0xf0) {
                self.lapics[j].deliver_local(mode, vector, false);
            }
            return;
        }
        for j in targets {
            self.lapics[j].deliver_local(mode, vector, level);
        }
    }

    /// BSP forms of the local APIC MMIO calls.
    pub fn lapic_read(&mut self, offset: u64, data: &mut [u8]) {
        self.lapic_read_on(0, offset, data);
    }
    pub fn lapic_write(&mut self, offset: u64, data: &[u8]) {
        self.lapic_write_on(0, offset, data);
    }

    /// MMIO read in the IOAPIC window.
    pub fn ioapic_read(&mut self, offset: u64, data: &mut [u8]) {
        self.ioapic.mmio_read(offset, data);
    }

    /// MMIO write in the IOAPIC window.
    pub fn ioapic_write(&mut self, offset: u64, data: &[u8]) {
        let Self {
            ioapic,
            lapics,
            lowest_rr,
            ..
        } = self;
        ioapic.mmio_write(offset, data, &mut |m| route_message(lapics, lowest_rr, m));
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
