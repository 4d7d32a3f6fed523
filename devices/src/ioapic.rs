//! The I/O APIC (82093AA-style, version 0x20) at 0xFEC00000: IOREGSEL at
//! offset 0x00, IOWIN at 0x10 and the EOI register at 0x40; 24 redirection
//! entries; ID, version and arbitration registers.
//!
//! Edge entries latch a rising edge and send one message; level entries send
//! while the line is high and the remote IRR is clear, and the remote IRR is
//! cleared by the local APIC's EOI broadcast (or the EOI register). Edges
//! that arrive while an entry is masked are held and sent on unmasking, as
//! QEMU and KVM do. Pin polarity is recorded but not applied: lines are
//! modelled active-high, as QEMU does.

use crate::bus::fill_le;
use crate::lapic::ApicMessage;

/// Guest-physical base of the IOAPIC.
pub const IOAPIC_BASE: u64 = 0xfec0_0000;
/// Size of the IOAPIC's MMIO window.
pub const IOAPIC_SIZE: u64 = 0x1000;
/// Number of redirection entries (and input pins).
pub const IOAPIC_PINS: usize = 24;
const VERSION: u32 = 0x20 | ((IOAPIC_PINS as u32 - 1) << 16);

const RTE_DELIVERY_STATUS: u64 = 1 << 12;
const RTE_REMOTE_IRR: u64 = 1 << 14;
const RTE_LEVEL: u64 = 1 << 15;
const RTE_MASKED: u64 = 1 << 16;
/// Writable bits of a redirection entry.
const RTE_WRITE_MASK: u64 = 0xff00_0000_0001_afff;

/// Where the IOAPIC's messages go: returns whether a local APIC accepted it.
pub type ApicSink<'a> = dyn FnMut(&ApicMessage) -> bool + 'a;

/// The I/O APIC.
#[derive(Clone, Debug)]
pub struct IoApic {
    id: u8,
    ioregsel: u8,
    redir: [u64; IOAPIC_PINS],
    /// Input line levels.
    lines: u32,
    /// Requests waiting to be sent (latched edges, or asserted level lines).
    irr: u32,
}

impl Default for IoApic {
    fn default() -> Self {
        Self::new(0)
    }
}

impl IoApic {
    /// An IOAPIC with APIC ID `id` and every entry masked.
    pub fn new(id: u8) -> Self {
        Self {
            id: id & 0xf,
            ioregsel: 0,
            redir: [RTE_MASKED; IOAPIC_PINS],
            lines: 0,
            irr: 0,
        }
    }

    /// A redirection entry (0 for a missing pin).
    pub fn redirection(&self, pin: usize) -> u64 {
        self.redir.get(pin).copied().unwrap_or(0)
    }

    /// Drive input `pin` to `level`, sending what becomes due to `sink`.
    pub fn set_irq(&mut self, pin: u32, level: bool, sink: &mut ApicSink<'_>) {
        let Some(&entry) = self.redir.get(pin as usize) else {
            log::debug!(target: "guest_errors", "ioapic: pin {} does not exist", pin);
            return;
        };
        let bit = 1u32 << pin;
        // A level entry requests while the line is high; an edge entry on
        // a rising edge, unless masked: "edge-sensitive interrupts signaled
        // on a masked interrupt pin are ignored (i.e., not delivered or
        // held pending)" (82093AA datasheet, 3.2.4).
        if !level {
            self.irr &= !bit;
        } else if entry & RTE_LEVEL != 0 || (self.lines & bit == 0 && entry & RTE_MASKED == 0) {
            self.irr |= bit;
        }
        if level {
            self.lines |= bit;
        } else {
            self.lines &= !bit;
        }
        self.service(pin as usize, sink);
    }

    fn service(&mut self, pin: usize, sink: &mut ApicSink<'_>) {
        let bit = 1u32 << pin;
        let entry = self.redir[pin];
        if self.irr & bit == 0 || entry & RTE_MASKED != 0 {
            return;
        }
        let level = entry & RTE_LEVEL != 0;
        if level && entry & RTE_REMOTE_IRR != 0 {
            return;
        }
        let msg = ApicMessage {
            vector: entry as u8,
            delivery_mode: ((entry >> 8) & 7) as u8,
            dest: (entry >> 56) as u8,
            logical: entry & (1 << 11) != 0,
            level,
        };
        log::trace!(target: "int", "ioapic: pin {} -> {:?}", pin, msg);
        let accepted = sink(&msg);
        if level {
            if accepted {
                self.redir[pin] |= RTE_REMOTE_IRR;
            }
        } else {
            self.irr &= !bit;
        }
    }

    /// EOI broadcast for `vector`: clears the remote IRR of level entries
    /// using it, and sends again those whose line is still high.
    pub fn eoi(&mut self, vector: u8, sink: &mut ApicSink<'_>) {
        for pin in 0..IOAPIC_PINS {
            let e = self.redir[pin];
            if e & RTE_LEVEL != 0 && e & RTE_REMOTE_IRR != 0 && e as u8 == vector {
                self.redir[pin] &= !RTE_REMOTE_IRR;
                self.service(pin, sink);
            }
        }
    }

    fn read_reg(&self) -> u32 {
        match self.ioregsel {
            0x00 | 0x02 => u32::from(self.id) << 24,
            0x01 => VERSION,
            r @ 0x10..=0x3f => {
                let e = self.redir[usize::from((r - 0x10) >> 1)];
                if r & 1 == 0 {
                    e as u32
                } else {
                    (e >> 32) as u32
                }
            }
            r => {
                log::debug!(target: "guest_errors", "ioapic: read of register {:#x}", r);
                0
            }
        }
    }

    fn write_reg(&mut self, v: u32, sink: &mut ApicSink<'_>) {
        match self.ioregsel {
            0x00 => self.id = ((v >> 24) & 0xf) as u8,
            r @ 0x10..=0x3f => {
                let pin = usize::from((r - 0x10) >> 1);
                let old = self.redir[pin];
                let merged = if r & 1 == 0 {
                    (old & !0xffff_ffff) | u64::from(v)
                } else {
                    (old & 0xffff_ffff) | (u64::from(v) << 32)
                };
                let mut e =
                    (merged & RTE_WRITE_MASK) | (old & (RTE_REMOTE_IRR | RTE_DELIVERY_STATUS));
                if e & RTE_LEVEL == 0 {
                    // Edge entries have no remote IRR (Linux relies on this
                    // to clear a stuck one).
                    e &= !RTE_REMOTE_IRR;
                    if old & RTE_LEVEL != 0 {
                        self.irr &= !(1 << pin);
                    }
                } else if self.lines & (1 << pin) != 0 {
                    self.irr |= 1 << pin;
                }
                self.redir[pin] = e;
                self.service(pin, sink);
            }
            r => log::debug!(target: "guest_errors", "ioapic: write {:#x} to register {:#x}", v, r),
        }
    }

    /// MMIO read at `offset` in the IOAPIC window.
    pub fn mmio_read(&mut self, offset: u64, data: &mut [u8]) {
        let value = match offset & !3 {
            0x00 => u64::from(self.ioregsel),
            0x10 => u64::from(self.read_reg()),
            _ => {
                log::debug!(target: "guest_errors", "ioapic: read at {:#x}", offset);
                0
            }
        };
        fill_le(data, value >> ((offset & 3) * 8));
    }

    /// MMIO write at `offset`; messages that become due go to `sink`.
    pub fn mmio_write(&mut self, offset: u64, data: &[u8], sink: &mut ApicSink<'_>) {
        if data.is_empty() {
            return;
        }
        let shift = (offset & 3) * 8;
        let mut raw = [0u8; 4];
        let n = data.len().min(4);
        raw[..n].copy_from_slice(&data[..n]);
        let v = u32::from_le_bytes(raw);
        match offset & !3 {
            0x00 => {
                if shift == 0 {
                    self.ioregsel = v as u8;
                }
            }
            0x10 => {
                let v = if n < 4 || shift != 0 {
                    // Merge a narrow write into the selected register.
                    let old = self.read_reg();
                    let mask = (u32::MAX >> (32 - 8 * n as u32)) << shift;
                    (old & !mask) | ((v << shift) & mask)
                } else {
                    v
                };
                self.write_reg(v, sink);
            }
            0x40 => self.eoi(v as u8, sink),
            _ => log::debug!(target: "guest_errors", "ioapic: write at {:#x}", offset),
        }
    }
}

#[cfg(test)]
#[path = "ioapic_tests.rs"]
mod tests;
