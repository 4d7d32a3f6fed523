//! The i8259A programmable interrupt controller pair of the PC: a master
//! (ports 0x20/0x21) and a slave cascaded on its IRQ2 (ports 0xA0/0xA1),
//! plus the PIIX edge/level control registers (ELCR, ports 0x4D0/0x4D1).
//!
//! Modelled: ICW1-ICW4, OCW1-OCW3 (EOI flavours, priority rotation, special
//! mask mode, poll mode, IRR/ISR read select), edge and level triggering
//! (ICW1.LTIM or the ELCR), auto-EOI with optional rotation, special fully
//! nested mode, the cascade and spurious IRQ7/IRQ15. Not modelled: buffered
//! mode and 8080/8085 mode (ICW4 bits accepted and ignored).

/// I/O port of the master's command register.
pub const PIC_MASTER_BASE: u16 = 0x20;
/// I/O port of the slave's command register.
pub const PIC_SLAVE_BASE: u16 = 0xa0;
/// I/O port of the master's ELCR (the slave's is the next one).
pub const ELCR_BASE: u16 = 0x4d0;

/// One 8259A.
#[derive(Clone, Debug, Default)]
struct Chip {
    /// Input line levels as last seen (for edge detection).
    last_irr: u8,
    irr: u8,
    imr: u8,
    isr: u8,
    /// The IRQ with the lowest priority is `priority_add - 1` (mod 8).
    priority_add: u8,
    irq_base: u8,
    read_isr: bool,
    poll: bool,
    special_mask: bool,
    /// 0: operational, 1: expecting ICW2, 2: ICW3, 3: ICW4.
    init_state: u8,
    init4: bool,
    single: bool,
    ltim: bool,
    auto_eoi: bool,
    rotate_on_auto_eoi: bool,
    special_fully_nested: bool,
    icw3: u8,
    elcr: u8,
    elcr_mask: u8,
}

/// Priority (0 = highest) of the highest-priority bit in `mask`, 8 if none.
fn priority_of(mask: u8, priority_add: u8) -> u8 {
    if mask == 0 {
        return 8;
    }
    (0..8)
        .find(|p| mask & (1 << ((p + priority_add) & 7)) != 0)
        .unwrap_or(8)
}

impl Chip {
    fn new(elcr_mask: u8) -> Self {
        Self {
            elcr_mask,
            ..Self::default()
        }
    }

    fn is_level(&self, irq: u8) -> bool {
        self.ltim || self.elcr & (1 << irq) != 0
    }

    fn set_irq(&mut self, irq: u8, level: bool) {
        let mask = 1u8 << (irq & 7);
        if self.is_level(irq & 7) {
            if level {
                self.irr |= mask;
                self.last_irr |= mask;
            } else {
                self.irr &= !mask;
                self.last_irr &= !mask;
            }
        } else if level {
            if self.last_irr & mask == 0 {
                self.irr |= mask;
            }
            self.last_irr |= mask;
        } else {
            self.last_irr &= !mask;
        }
    }

    /// The IRQ this chip would present on INTR, if any.
    fn get_irq(&self, is_master: bool) -> Option<u8> {
        let prio = priority_of(self.irr & !self.imr, self.priority_add);
        if prio == 8 {
            return None;
        }
        let mut in_service = self.isr;
        if self.special_mask {
            in_service &= !self.imr;
        }
        if self.special_fully_nested && is_master {
            // The slave may interrupt its own in-service request.
            in_service &= !(1 << 2);
        }
        let cur = priority_of(in_service, self.priority_add);
        (prio < cur).then_some((prio + self.priority_add) & 7)
    }

    /// The acknowledge part of an INTA cycle for `irq`.
    fn intack(&mut self, irq: u8) {
        let mask = 1u8 << irq;
        if self.auto_eoi {
            if self.rotate_on_auto_eoi {
                self.priority_add = (irq + 1) & 7;
            }
        } else {
            self.isr |= mask;
        }
        // A level-sensitive request stays in IRR while its line is high.
        if !self.is_level(irq) {
            self.irr &= !mask;
        }
    }

    fn init_reset(&mut self) {
        let (elcr, elcr_mask) = (self.elcr, self.elcr_mask);
        *self = Self {
            elcr,
            elcr_mask,
            ..Self::default()
        };
    }

    fn write_command(&mut self, v: u8) {
        if v & 0x10 != 0 {
            // ICW1.
            self.init_reset();
            self.init_state = 1;
            self.init4 = v & 0x01 != 0;
            self.single = v & 0x02 != 0;
            self.ltim = v & 0x08 != 0;
            if v & 0x04 != 0 {
                log::debug!(target: "unimp", "i8259: ICW1 call address interval 4 ignored");
            }
        } else if v & 0x08 != 0 {
            // OCW3.
            if v & 0x04 != 0 {
                self.poll = true;
            }
            if v & 0x02 != 0 {
                self.read_isr = v & 0x01 != 0;
            }
            if v & 0x40 != 0 {
                self.special_mask = v & 0x20 != 0;
            }
        } else {
            // OCW2.
            let level = v & 7;
            match v >> 5 {
                0 => self.rotate_on_auto_eoi = false,
                4 => self.rotate_on_auto_eoi = true,
                1 | 5 => {
                    // Non-specific EOI (5: and rotate).
                    let prio = priority_of(self.isr, self.priority_add);
                    if prio != 8 {
                        let irq = (prio + self.priority_add) & 7;
                        self.isr &= !(1 << irq);
                        if v >> 5 == 5 {
                            self.priority_add = (irq + 1) & 7;
                        }
                    }
                }
                3 => self.isr &= !(1 << level),
                7 => {
                    self.isr &= !(1 << level);
                    self.priority_add = (level + 1) & 7;
                }
                6 => self.priority_add = (level + 1) & 7,
                _ => {} // 2: no operation.
            }
        }
    }

    fn write_data(&mut self, v: u8) {
        match self.init_state {
            1 => {
                self.irq_base = v & 0xf8;
                self.init_state = if !self.single {
                    2
                } else if self.init4 {
                    3
                } else {
                    0
                };
            }
            2 => {
                self.icw3 = v;
                self.init_state = if self.init4 { 3 } else { 0 };
            }
            3 => {
                self.special_fully_nested = v & 0x10 != 0;
                self.auto_eoi = v & 0x02 != 0;
                if v & 0x01 == 0 {
                    log::debug!(target: "unimp", "i8259: ICW4 8080/8085 mode ignored");
                }
                self.init_state = 0;
            }
            _ => self.imr = v,
        }
    }

    /// The OCW3 poll command's read: acknowledges the highest request.
    fn poll_read(&mut self, is_master: bool) -> u8 {
        self.poll = false;
        match self.get_irq(is_master) {
            Some(irq) => {
                self.intack(irq);
                0x80 | irq
            }
            None => 0x07,
        }
    }
}

/// The cascaded master/slave i8259A pair.
#[derive(Clone, Debug)]
pub struct Pic {
    chips: [Chip; 2],
}

impl Default for Pic {
    fn default() -> Self {
        Self::new()
    }
}

impl Pic {
    /// A pair in its power-on state (uninitialized, all requests clear).
    pub fn new() -> Self {
        // IRQ0, 1, 2 and IRQ8, 13 are always edge-triggered on PIIX.
        Self {
            chips: [Chip::new(0xf8), Chip::new(0xde)],
        }
    }

    /// Drive ISA IRQ line `irq` (0-15) to `level`; other numbers are ignored.
    pub fn set_irq(&mut self, irq: u32, level: bool) {
        match irq {
            0..=7 => self.chips[0].set_irq(irq as u8, level),
            8..=15 => self.chips[1].set_irq(irq as u8 - 8, level),
            _ => {
                log::debug!(target: "guest_errors", "i8259: IRQ {} does not exist", irq);
                return;
            }
        }
        self.update_cascade();
    }

    /// Feed the slave's INT output into the master's IRQ2 input.
    fn update_cascade(&mut self) {
        let slave_int = self.chips[1].get_irq(false).is_some();
        self.chips[0].set_irq(2, slave_int);
    }

    /// Whether the master asserts INTR.
    pub fn has_interrupt(&self) -> bool {
        self.chips[0].get_irq(true).is_some()
    }

    /// The vector an INTA cycle would return now, without performing it.
    pub fn peek_vector(&self) -> Option<u8> {
        let irq = self.chips[0].get_irq(true)?;
        if irq == 2 {
            let s = &self.chips[1];
            return Some(match s.get_irq(false) {
                Some(irq2) => s.irq_base + irq2,
                None => s.irq_base + 7,
            });
        }
        Some(self.chips[0].irq_base + irq)
    }

    /// Perform an INTA cycle if INTR is asserted; returns its vector. `None`
    /// when no interrupt is requested (see [`Pic::inta`] for the hardware's
    /// behaviour in that case).
    pub fn acknowledge(&mut self) -> Option<u8> {
        if self.has_interrupt() {
            Some(self.inta())
        } else {
            None
        }
    }

    /// Perform an INTA cycle unconditionally, as the CPU does once it saw
    /// INTR: the vector of the highest-priority request, or the spurious
    /// IRQ7 (master) / IRQ15 (slave, cascade request vanished) vector, which
    /// sets no ISR bit.
    pub fn inta(&mut self) -> u8 {
        let vector = match self.chips[0].get_irq(true) {
            Some(2) => {
                self.chips[0].intack(2);
                match self.chips[1].get_irq(false) {
                    Some(irq2) => {
                        self.chips[1].intack(irq2);
                        self.chips[1].irq_base + irq2
                    }
                    None => {
                        log::debug!(target: "int", "i8259: spurious IRQ15");
                        self.chips[1].irq_base + 7
                    }
                }
            }
            Some(irq) => {
                self.chips[0].intack(irq);
                self.chips[0].irq_base + irq
            }
            None => {
                log::debug!(target: "int", "i8259: spurious IRQ7");
                self.chips[0].irq_base + 7
            }
        };
        self.update_cascade();
        log::trace!(target: "int", "i8259: INTA -> vector {:#x}", vector);
        vector
    }

    /// Read a PIC port (0x20/0x21, 0xA0/0xA1 or 0x4D0/0x4D1); others read 0xff.
    pub fn read_port(&mut self, port: u16) -> u8 {
        match port {
            0x20 | 0x21 | 0xa0 | 0xa1 => {
                let idx = usize::from(port >= 0xa0);
                let is_master = idx == 0;
                let c = &mut self.chips[idx];
                if c.poll {
                    let v = c.poll_read(is_master);
                    self.update_cascade();
                    v
                } else if port & 1 == 0 {
                    if c.read_isr {
                        c.isr
                    } else {
                        c.irr
                    }
                } else {
                    c.imr
                }
            }
            0x4d0 | 0x4d1 => self.chips[usize::from(port & 1)].elcr,
            _ => {
                log::debug!(target: "guest_errors", "i8259: read of port {:#x}", port);
                0xff
            }
        }
    }

    /// Write a PIC port (see [`Pic::read_port`]); others are ignored.
    pub fn write_port(&mut self, port: u16, value: u8) {
        match port {
            0x20 | 0x21 | 0xa0 | 0xa1 => {
                let c = &mut self.chips[usize::from(port >= 0xa0)];
                if port & 1 == 0 {
                    c.write_command(value);
                } else {
                    c.write_data(value);
                }
            }
            0x4d0 | 0x4d1 => {
                let c = &mut self.chips[usize::from(port & 1)];
                c.elcr = value & c.elcr_mask;
            }
            _ => {
                log::debug!(target: "guest_errors", "i8259: write {:#x} to port {:#x}", value, port);
                return;
            }
        }
        self.update_cascade();
    }

    /// IRR of the master (index 0) or slave (1).
    pub fn irr(&self, chip: usize) -> u8 {
        self.chips.get(chip).map_or(0, |c| c.irr)
    }

    /// ISR of the master (index 0) or slave (1).
    pub fn isr(&self, chip: usize) -> u8 {
        self.chips.get(chip).map_or(0, |c| c.isr)
    }

    /// IMR of the master (index 0) or slave (1).
    pub fn imr(&self, chip: usize) -> u8 {
        self.chips.get(chip).map_or(0xff, |c| c.imr)
    }
}

#[cfg(test)]
#[path = "pic_tests.rs"]
mod tests;
