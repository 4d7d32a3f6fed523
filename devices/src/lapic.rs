//! The local APIC of the single vCPU, in xAPIC mode (the MMIO page at
//! 0xFEE00000, registers at offsets 0x000-0x3F0).
//!
//! Modelled: ID, version, TPR/PPR, EOI (with the EOI broadcast a level
//! interrupt needs), LDR/DFR, SVR software enable, ISR/TMR/IRR, ESR, ICR
//! (fixed/lowest-priority/NMI delivery to this CPU by shorthand or
//! destination), the LVTs (timer, thermal, perfmon, LINT0, LINT1, error) and
//! the timer (see `lapic_timer`). LINT0 in ExtINT mode lets the i8259's INTR
//! through ([`LocalApic::accepts_pic_interrupts`]). Not modelled: x2APIC,
//! SMI/INIT/SIPI (logged under "unimp"), thermal and perfmon sources, LINT1
//! inputs, arbitration priority, directed EOI.

use crate::bus::fill_le;
use crate::lapic_timer::{ApicTimer, TimerMode};

/// Guest-physical base of the xAPIC page.
pub const LAPIC_BASE: u64 = 0xfee0_0000;
/// Size of the xAPIC page.
pub const LAPIC_SIZE: u64 = 0x1000;
/// Default APIC timer input clock (as QEMU: 1 GHz).
pub const LAPIC_BUS_HZ: u64 = 1_000_000_000;
/// Version register: integrated APIC (0x14), six LVT entries.
const VERSION: u32 = 0x0005_0014;
/// IA32_APIC_BASE x2APIC mode bit (EXTD).
pub const APIC_BASE_EXTD: u64 = 1 << 10;
/// IA32_APIC_BASE enable bit (xAPIC global enable).
pub const APIC_BASE_ENABLE: u64 = 1 << 11;
/// IA32_APIC_BASE bootstrap-processor bit.
pub const APIC_BASE_BSP: u64 = 1 << 8;

const SVR_ENABLE: u32 = 1 << 8;
const LVT_MASKED: u32 = 1 << 16;
const LVT_LEVEL: u32 = 1 << 15;

/// LVT indices.
const LVT_TIMER: usize = 0;
const LVT_THERMAL: usize = 1;
const LVT_PERF: usize = 2;
const LVT_LINT0: usize = 3;
const LVT_LINT1: usize = 4;
const LVT_ERROR: usize = 5;
/// Writable bits of each LVT.
const LVT_WRITE_MASK: [u32; 6] = [
    0x0007_00ff,
    0x0001_07ff,
    0x0001_07ff,
    0x0001_a7ff,
    0x0001_a7ff,
    0x0001_00ff,
];

/// ESR bits.
const ESR_SEND_ILLEGAL_VECTOR: u32 = 1 << 5;
const ESR_RECV_ILLEGAL_VECTOR: u32 = 1 << 6;

/// APIC delivery modes (ICR, LVT and IOAPIC redirection entries).
pub mod delivery {
    /// Fixed.
    pub const FIXED: u8 = 0;
    /// Lowest priority.
    pub const LOWEST: u8 = 1;
    /// SMI.
    pub const SMI: u8 = 2;
    /// NMI.
    pub const NMI: u8 = 4;
    /// INIT.
    pub const INIT: u8 = 5;
    /// Start-up IPI.
    pub const STARTUP: u8 = 6;
    /// External interrupt (the vector comes from an i8259 INTA cycle).
    pub const EXTINT: u8 = 7;
}

/// An interrupt message on the APIC bus (from the IOAPIC or an IPI).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApicMessage {
    /// Vector.
    pub vector: u8,
    /// Delivery mode (see [`delivery`]).
    pub delivery_mode: u8,
    /// Destination (APIC ID, or logical destination when `logical`).
    pub dest: u8,
    /// Logical destination mode.
    pub logical: bool,
    /// Level-triggered (needs an EOI broadcast to the IOAPIC).
    pub level: bool,
}

/// A 256-bit vector register (ISR, TMR, IRR).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Bits256([u32; 8]);

impl Bits256 {
    fn get(&self, v: u8) -> bool {
        self.0[usize::from(v >> 5)] & (1 << (v & 31)) != 0
    }
    fn set(&mut self, v: u8, on: bool) {
        let w = &mut self.0[usize::from(v >> 5)];
        if on {
            *w |= 1 << (v & 31);
        } else {
            *w &= !(1 << (v & 31));
        }
    }
    fn highest(&self) -> Option<u8> {
        (0..8).rev().find_map(|i| {
            let w = self.0[i];
            (w != 0).then(|| (i as u8) * 32 + (31 - w.leading_zeros() as u8))
        })
    }
}

/// The local APIC.
#[derive(Clone, Debug)]
pub struct LocalApic {
    apic_base: u64,
    /// The xAPIC ID (software may change it in xAPIC mode).
    id: u8,
    /// The ID the APIC had at power-up (CPUID's initial APIC ID): the
    /// x2APIC ID, and the xAPIC ID again after a reset.
    initial_id: u8,
    tpr: u8,
    ldr: u32,
    dfr: u32,
    svr: u32,
    isr: Bits256,
    tmr: Bits256,
    irr: Bits256,
    esr: u32,
    esr_pending: u32,
    icr: u64,
    lvt: [u32; 6],
    timer: ApicTimer,
    /// NMIs received and not yet taken by the CPU (at most 2: one to
    /// deliver, one to hold while its handler runs).
    nmi_pending: u8,
    /// ICR values of IPIs sent and not yet routed by the chip.
    outbox: Vec<u64>,
    /// An INIT was received and not yet taken by the vCPU.
    init_pending: bool,
    /// The vector of the last start-up IPI not yet taken.
    sipi: Option<u8>,
}

/// A start-up event of the processor ([`LocalApic::take_startup`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Startup {
    /// INIT: the processor resets and waits for a start-up IPI.
    Init,
    /// Start-up IPI with its vector (execution starts at vector << 12).
    Sipi(u8),
}

impl LocalApic {
    /// The bootstrap processor's APIC with ID `id`, in its reset state, with
    /// a 1 GHz timer clock and a TSC assumed to run at 1 GHz.
    pub fn new(id: u8) -> Self {
        let mut lvt = [LVT_MASKED; 6];
        // As KVM and QEMU: LINT0 of the BSP starts in virtual-wire (ExtINT)
        // mode so the i8259 works before the guest programs the APIC.
        lvt[LVT_LINT0] = u32::from(delivery::EXTINT) << 8;
        Self {
            apic_base: LAPIC_BASE | APIC_BASE_ENABLE | APIC_BASE_BSP,
            id,
            initial_id: id,
            tpr: 0,
            ldr: 0,
            dfr: 0xffff_ffff,
            svr: 0xff,
            isr: Bits256::default(),
            tmr: Bits256::default(),
            irr: Bits256::default(),
            esr: 0,
            esr_pending: 0,
            icr: 0,
            lvt,
            timer: ApicTimer::new(LAPIC_BUS_HZ, 1_000_000_000),
            nmi_pending: 0,
            outbox: Vec::new(),
            init_pending: false,
            sipi: None,
        }
    }

    /// An application processor's APIC with ID `id`: not the bootstrap
    /// processor, LINT0 masked (only the BSP takes the i8259's INTR).
    pub fn new_ap(id: u8) -> Self {
        let mut l = Self::new(id);
        l.apic_base &= !APIC_BASE_BSP;
        l.lvt[LVT_LINT0] = LVT_MASKED;
        l
    }

    /// Takes the pending INIT (first) or start-up IPI.
    pub fn take_startup(&mut self) -> Option<Startup> {
        if std::mem::take(&mut self.init_pending) {
            // INIT resets the APIC's state but for its ID and base (SDM
            // 10.4.7.3); a start-up IPI sent after it stays pending.
            let sipi = self.sipi;
            self.reset_keeping_base(self.id);
            self.sipi = sipi;
            if self.apic_base & APIC_BASE_BSP == 0 {
                self.lvt[LVT_LINT0] = LVT_MASKED;
            }
            return Some(Startup::Init);
        }
        self.sipi.take().map(Startup::Sipi)
    }

    /// Back to the reset state with APIC ID `id`, keeping the base
    /// address, the clocks and the initial APIC ID.
    fn reset_keeping_base(&mut self, id: u8) {
        let (base, bus_hz, tsc_hz, initial_id) = (
            self.apic_base,
            self.timer.bus_hz,
            self.timer.tsc_hz,
            self.initial_id,
        );
        *self = Self::new(id).with_bus_hz(bus_hz).with_tsc_hz(tsc_hz);
        self.apic_base = base;
        self.initial_id = initial_id;
    }

    /// Whether an INIT or start-up IPI waits to be taken.
    pub fn startup_pending(&self) -> bool {
        self.init_pending || self.sipi.is_some()
    }

    /// IPIs sent since the last call (raw ICR values), for the chip to
    /// route to their destinations.
    pub fn take_outbox(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.outbox)
    }

    /// Whether this APIC takes interrupts at all (globally enabled).
    pub fn is_enabled(&self) -> bool {
        self.hw_enabled()
    }

    /// Use a timer input clock of `hz` (the rate CPUID/calibration reports).
    pub fn with_bus_hz(mut self, hz: u64) -> Self {
        self.timer.bus_hz = hz.max(1);
        self
    }

    /// The guest TSC frequency, to turn TSC deadlines into time.
    pub fn with_tsc_hz(mut self, hz: u64) -> Self {
        self.timer.tsc_hz = hz.max(1);
        self
    }

    /// The APIC ID.
    pub fn id(&self) -> u8 {
        self.id
    }

    /// IA32_APIC_BASE.
    pub fn apic_base(&self) -> u64 {
        self.apic_base
    }

    /// Write IA32_APIC_BASE (the CPU's MSR). Clearing the global enable bit
    /// puts the APIC back in its reset state and lets the i8259 reach the CPU
    /// directly. The base address moves the register page (the DBT's bus
    /// reads it back through the MSR).
    pub fn set_apic_base(&mut self, value: u64) {
        let was_enabled = self.hw_enabled();
        let was_x2apic = self.is_x2apic();
        if value & !0x0000_000f_ffff_fd00 != 0 {
            log::debug!(target: "guest_errors", "lapic: reserved bits in APIC base {:#x}", value);
        }
        // The CPU checks the mode transitions (SDM 10.12.5) before this.
        self.apic_base = value & 0x0000_000f_ffff_fd00;
        if was_enabled && !self.hw_enabled() {
            // Back to the power-up state, with the initial APIC ID (SDM
            // 10.4.3, 10.12.5.1).
            self.reset_keeping_base(self.initial_id);
            self.lvt[LVT_LINT0] = LVT_MASKED;
        }
        if !was_x2apic && self.is_x2apic() {
            // The x2APIC ID is the initial APIC ID, whatever software wrote
            // to the xAPIC ID.
            self.id = self.initial_id;
        }
    }

    fn hw_enabled(&self) -> bool {
        self.apic_base & APIC_BASE_ENABLE != 0
    }

    /// Whether the APIC is in x2APIC mode (enabled, EXTD set).
    pub fn is_x2apic(&self) -> bool {
        self.hw_enabled() && self.apic_base & APIC_BASE_EXTD != 0
    }

    fn sw_enabled(&self) -> bool {
        self.svr & SVR_ENABLE != 0
    }

    /// Whether the i8259's INTR reaches the CPU: the APIC is globally
    /// disabled, or LINT0 is unmasked in ExtINT mode.
    pub fn accepts_pic_interrupts(&self) -> bool {
        let lint0 = self.lvt[LVT_LINT0];
        !self.hw_enabled()
            || (lint0 & LVT_MASKED == 0 && (lint0 >> 8) & 7 == u32::from(delivery::EXTINT))
    }

    /// The task priority register.
    pub fn tpr(&self) -> u8 {
        self.tpr
    }

    /// Writes TPR (MOV to CR8 sets TPR[7:4] and clears TPR[3:0]).
    pub fn set_tpr(&mut self, tpr: u8) {
        self.tpr = tpr;
    }

    /// Processor priority: the higher of TPR and the in-service class.
    pub fn ppr(&self) -> u8 {
        let isrv = self.isr.highest().unwrap_or(0);
        if self.tpr >> 4 >= isrv >> 4 {
            self.tpr
        } else {
            isrv & 0xf0
        }
    }

    /// The highest requested vector the CPU would take now, if any.
    pub fn pending_vector(&self) -> Option<u8> {
        if !self.hw_enabled() || !self.sw_enabled() {
            return None;
        }
        let v = self.irr.highest()?;
        (v & 0xf0 > self.ppr() & 0xf0).then_some(v)
    }

    /// The interrupt-acknowledge: moves the pending vector from IRR to ISR.
    pub fn acknowledge(&mut self) -> Option<u8> {
        let v = self.pending_vector()?;
        self.irr.set(v, false);
        self.isr.set(v, true);
        log::trace!(target: "int", "lapic: acknowledge vector {:#x}", v);
        Some(v)
    }

    /// Take a pending NMI (from an NMI IPI or an NMI-mode message).
    pub fn take_nmi(&mut self) -> bool {
        let some = self.nmi_pending > 0;
        self.nmi_pending = self.nmi_pending.saturating_sub(1);
        some
    }

    /// Whether an NMI waits to be taken.
    pub fn nmi_pending(&self) -> bool {
        self.nmi_pending > 0
    }

    /// Whether this APIC is a destination of `dest` in the given mode
    /// (an xAPIC-format, 8-bit destination: IOAPIC, MSI, xAPIC IPIs).
    pub fn matches_destination(&self, dest: u8, logical: bool) -> bool {
        self.matches(u32::from(dest), logical, false)
    }

    /// Whether this APIC is a destination of `dest`; `wide`: a 32-bit
    /// x2APIC destination (IPIs of an APIC in x2APIC mode), else 8 bits.
    /// An APIC in x2APIC mode has the 32-bit ID and the cluster logical
    /// ID of SDM 10.12.10.2.
    pub fn matches(&self, dest: u32, logical: bool, wide: bool) -> bool {
        if dest == if wide { u32::MAX } else { 0xff } {
            return true;
        }
        if self.is_x2apic() {
            if !logical {
                return dest == u32::from(self.id);
            }
            let ldr = self.x2apic_ldr();
            return dest >> 16 == ldr >> 16 && dest & ldr & 0xffff != 0;
        }
        let Ok(dest) = u8::try_from(dest) else {
            return false;
        };
        if !logical {
            return dest == self.id;
        }
        let ldr = (self.ldr >> 24) as u8;
        if self.dfr >> 28 == 0xf {
            ldr & dest != 0
        } else {
            // Cluster model: high nibble is the cluster, low nibble a bitmap.
            ldr >> 4 == dest >> 4 && ldr & dest & 0xf != 0
        }
    }

    fn error(&mut self, bits: u32) {
        self.esr_pending |= bits;
        let lvt = self.lvt[LVT_ERROR];
        if lvt & LVT_MASKED == 0 {
            self.set_irr(lvt as u8, false);
        }
    }

    /// Request `vector` (fixed delivery) in IRR.
    fn set_irr(&mut self, vector: u8, level: bool) {
        if vector < 16 {
            log::debug!(target: "guest_errors", "lapic: illegal vector {} received", vector);
            // Avoid recursing through an illegal error vector.
            self.esr_pending |= ESR_RECV_ILLEGAL_VECTOR;
            let lvt = self.lvt[LVT_ERROR];
            if lvt & LVT_MASKED == 0 && lvt as u8 >= 16 {
                self.irr.set(lvt as u8, true);
                self.tmr.set(lvt as u8, false);
            }
            return;
        }
        self.irr.set(vector, true);
        self.tmr.set(vector, level);
    }

    /// Accept a message addressed to this CPU. Returns whether it was for us.
    pub fn accept_message(&mut self, msg: &ApicMessage) -> bool {
        if !self.matches_destination(msg.dest, msg.logical) {
            log::debug!(target: "int", "lapic: message {:?} not for APIC {}", msg, self.id);
            return false;
        }
        self.deliver_local(msg.delivery_mode, msg.vector, msg.level);
        true
    }

    /// Takes an interrupt message of delivery `mode` (an IPI or an
    /// IOAPIC message the chip routed here).
    pub fn deliver_local(&mut self, mode: u8, vector: u8, level: bool) {
        if !self.hw_enabled() && !matches!(mode, delivery::INIT | delivery::STARTUP) {
            return;
        }
        match mode {
            delivery::FIXED | delivery::LOWEST => self.set_irr(vector, level),
            delivery::NMI => self.nmi_pending = (self.nmi_pending + 1).min(2),
            delivery::INIT => {
                // A start-up IPI before this INIT is void; one after it
                // must survive until the vCPU takes the INIT.
                self.init_pending = true;
                self.sipi = None;
            }
            delivery::STARTUP => self.sipi = Some(vector),
            delivery::EXTINT => {
                log::debug!(target: "unimp", "lapic: ExtINT message (vector {:#x}) ignored", vector)
            }
            m => log::debug!(target: "unimp", "lapic: delivery mode {} not supported", m),
        }
    }

    /// End of interrupt: retire the highest in-service vector. Returns it when
    /// it was level-triggered, for the EOI broadcast to the IOAPIC.
    pub fn eoi(&mut self) -> Option<u8> {
        let v = self.isr.highest()?;
        self.isr.set(v, false);
        // TMR keeps its bit until the vector is next accepted (SDM 10.8.4).
        self.tmr.get(v).then_some(v)
    }

    /// Sends the IPI in ICR: this APIC takes its own share at once; the
    /// rest goes to the outbox for the chip to route to the other APICs
    /// (a lowest-priority IPI by destination is routed whole by the chip,
    /// which picks one APIC, perhaps this one).
    fn send_ipi(&mut self) {
        let icr = self.icr;
        let vector = icr as u8;
        let mode = ((icr >> 8) & 7) as u8;
        let logical = icr & (1 << 11) != 0;
        let shorthand = (icr >> 18) & 3;
        if matches!(mode, delivery::FIXED | delivery::LOWEST) && vector < 16 {
            self.error(ESR_SEND_ILLEGAL_VECTOR);
        }
        if mode == delivery::INIT && icr & (1 << 14) == 0 {
            return; // INIT level de-assert: nothing to do.
        }
        let lowest = mode == delivery::LOWEST && shorthand == 0;
        let to_self = !lowest
            && match shorthand {
                0 => self.matches(self.icr_destination(), logical, self.is_x2apic()),
                1 | 2 => true,
                _ => false,
            };
        log::trace!(target: "int", "lapic {}: IPI {:#x} (to self: {})", self.id, icr, to_self);
        if to_self {
            self.deliver_local(mode, vector, false);
        }
        if shorthand != 1 {
            self.outbox.push(icr);
        }
    }

    /// The destination field of ICR: bits 63:32 in x2APIC mode, 63:56 else.
    pub fn icr_destination(&self) -> u32 {
        if self.is_x2apic() {
            (self.icr >> 32) as u32
        } else {
            (self.icr >> 56) as u32
        }
    }

    /// Deliver the timer's expiration if due. Returns whether it fired.
    fn poll_timer(&mut self, now: u64) -> bool {
        if !self.timer.poll(now) {
            return false;
        }
        let lvt = self.lvt[LVT_TIMER];
        if lvt & LVT_MASKED == 0 && self.hw_enabled() {
            log::trace!(target: "int", "lapic: timer fired, vector {:#x}", lvt as u8);
            self.set_irr(lvt as u8, false);
        }
        true
    }

    /// Bring the timer up to `now`, requesting its interrupt if it expired.
    pub fn poll(&mut self, now: u64) -> bool {
        self.poll_timer(now)
    }

    /// When the timer next needs [`LocalApic::poll`] (None if disarmed or masked).
    pub fn next_deadline_ns(&self) -> Option<u64> {
        if self.lvt[LVT_TIMER] & LVT_MASKED != 0 {
            return None;
        }
        self.timer.next_deadline_ns()
    }

    /// IA32_TSC_DEADLINE as the guest reads it (0 once fired or disarmed).
    pub fn tsc_deadline(&self) -> u64 {
        self.timer.tsc_deadline()
    }

    /// Write IA32_TSC_DEADLINE: `value` in TSC ticks, with the TSC reading
    /// `tsc_now` at time `now`. Ignored unless the timer is in TSC-deadline
    /// mode; 0 disarms.
    pub fn set_tsc_deadline(&mut self, value: u64, tsc_now: u64, now: u64) {
        self.poll_timer(now);
        self.timer.set_tsc_deadline(value, tsc_now, now);
    }

    /// The timer mode the LVT selects.
    pub fn timer_mode(&self) -> TimerMode {
        self.timer.mode
    }

    /// Value of a 32-bit register at `reg` (16-byte aligned offset).
    fn read_reg(&mut self, reg: u64, now: u64) -> u32 {
        match reg {
            0x20 => u32::from(self.id) << 24,
            0x30 => VERSION,
            0x80 => u32::from(self.tpr),
            0x90 => 0,
            0xa0 => u32::from(self.ppr()),
            0xd0 => self.ldr,
            0xe0 => self.dfr,
            0xf0 => self.svr,
            0x100..=0x170 => self.isr.0[((reg - 0x100) >> 4) as usize],
            0x180..=0x1f0 => self.tmr.0[((reg - 0x180) >> 4) as usize],
            0x200..=0x270 => {
                self.poll_timer(now);
                self.irr.0[((reg - 0x200) >> 4) as usize]
            }
            0x280 => self.esr,
            0x300 => self.icr as u32 & !(1 << 12),
            0x310 => (self.icr >> 32) as u32,
            0x320..=0x370 => self.lvt[((reg - 0x320) >> 4) as usize],
            0x380 => self.timer.initial,
            0x390 => self.timer.current_count(now),
            0x3e0 => self.timer.dcr,
            // 0xb0 (EOI) is write-only, the rest reserved.
            _ => {
                log::debug!(target: "guest_errors", "lapic: read of register {:#x}", reg);
                0
            }
        }
    }

    /// Write a 32-bit register; returns a level-triggered EOI'd vector.
    fn write_reg(&mut self, reg: u64, v: u32, now: u64) -> Option<u8> {
        match reg {
            0x20 => self.id = (v >> 24) as u8,
            0x80 => self.tpr = v as u8,
            0xb0 => return self.eoi(),
            0xd0 => self.ldr = v & 0xff00_0000,
            0xe0 => self.dfr = v | 0x0fff_ffff,
            0xf0 => {
                self.svr = v & 0x3ff;
                if !self.sw_enabled() {
                    self.poll_timer(now);
                    for l in &mut self.lvt {
                        *l |= LVT_MASKED;
                    }
                }
            }
            0x280 => self.esr = std::mem::take(&mut self.esr_pending),
            0x300 => {
                self.icr = (self.icr & !0xffff_ffff) | u64::from(v & 0x000c_dfff);
                self.send_ipi();
            }
            0x310 => self.icr = (self.icr & 0xffff_ffff) | u64::from(v & 0xff00_0000) << 32,
            0x320..=0x370 => {
                let idx = ((reg - 0x320) >> 4) as usize;
                let mut v = v & LVT_WRITE_MASK[idx];
                if !self.sw_enabled() {
                    v |= LVT_MASKED;
                }
                if idx == LVT_TIMER {
                    // Expirations while masked are lost, not held.
                    self.poll_timer(now);
                    self.timer.set_mode(TimerMode::from_lvt(v), now);
                }
                if matches!(idx, LVT_THERMAL | LVT_PERF | LVT_LINT1) && v & LVT_MASKED == 0 {
                    log::trace!(target: "unimp", "lapic: LVT {:#x} has no source", reg);
                }
                if idx == LVT_LINT0 && v & LVT_LEVEL != 0 && (v >> 8) & 7 != 7 {
                    log::debug!(target: "unimp", "lapic: LINT0 only supports ExtINT");
                }
                self.lvt[idx] = v;
            }
            0x380 => {
                self.poll_timer(now);
                self.timer.set_initial(v, now);
            }
            0x3e0 => {
                self.poll_timer(now);
                self.timer.dcr = v & 0xb;
            }
            0x30 | 0x90 | 0xa0 | 0xc0 | 0x100..=0x270 | 0x390 => {
                log::debug!(target: "guest_errors", "lapic: write {:#x} to read-only register {:#x}", v, reg)
            }
            _ => {
                log::debug!(target: "guest_errors", "lapic: write {:#x} to register {:#x}", v, reg)
            }
        }
        None
    }

    /// MMIO read at `offset` into the APIC page at time `now`. Registers
    /// are 32 bits wide at 16-byte strides; other bytes read 0.
    pub fn mmio_read(&mut self, offset: u64, data: &mut [u8], now: u64) {
        if !self.hw_enabled() || self.is_x2apic() {
            // The xAPIC page is off when the APIC is disabled or in x2APIC
            // mode (SDM 10.4.3, 10.12.2): nothing answers, reads float high.
            data.fill(0xff);
            return;
        }
        let reg = offset & !0xf;
        let within = offset & 0xf;
        let value = if within < 4 && offset < LAPIC_SIZE {
            u64::from(self.read_reg(reg, now)) >> (within * 8)
        } else {
            0
        };
        fill_le(data, value);
        let valid = 4u64.saturating_sub(within) as usize;
        for d in data.iter_mut().skip(valid) {
            *d = 0;
        }
    }

    /// MMIO write at `offset` at time `now`. Accesses that do not start on a
    /// register are ignored; narrow ones merge into the current value.
    /// Returns the vector of a level-triggered interrupt the write EOI'd.
    pub fn mmio_write(&mut self, offset: u64, data: &[u8], now: u64) -> Option<u8> {
        if !self.hw_enabled() || self.is_x2apic() {
            log::debug!(target: "guest_errors", "lapic: MMIO write at {offset:#x} with the xAPIC page off ignored");
            return None;
        }
        if offset & 0xf != 0 || offset >= LAPIC_SIZE || data.is_empty() {
            log::debug!(target: "guest_errors", "lapic: unaligned write at {:#x}", offset);
            return None;
        }
        let mut bytes = if data.len() < 4 {
            // Merge a narrow write into the readable value (EOI/ICR excepted).
            match offset {
                0xb0 | 0x300 | 0x380 => [0; 4],
                _ => self.read_reg(offset, now).to_le_bytes(),
            }
        } else {
            [0; 4]
        };
        let n = data.len().min(4);
        bytes[..n].copy_from_slice(&data[..n]);
        self.write_reg(offset, u32::from_le_bytes(bytes), now)
    }
}

#[path = "lapic_x2apic.rs"]
mod x2apic;
pub use x2apic::ApicMsrFault;

#[cfg(test)]
#[path = "lapic_tests.rs"]
mod tests;
