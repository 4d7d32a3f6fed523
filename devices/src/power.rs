//! A power-off register in the style of the ACPI PM1a control register
//! (hx86 puts it at 0x604, where QEMU's ACPI PM1a_CNT lives). Writing it with
//! SLP_EN (bit 13) set powers the machine off, whatever the sleep type.

use crate::bus::{fill_le, BusDevice, VmRequest};

/// SLP_EN: write-only "enter the sleep state" bit.
pub const SLP_EN: u16 = 1 << 13;

/// The 16-bit PM1 control register.
#[derive(Clone, Copy, Debug, Default)]
pub struct PowerOffPort {
    value: u16,
}

impl PowerOffPort {
    /// A register reading 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// A register with an initial value (e.g. SCI_EN, bit 0, already set).
    pub fn with_value(value: u16) -> Self {
        Self {
            value: value & !SLP_EN,
        }
    }

    /// The current register value (SLP_EN always reads 0).
    pub fn value(&self) -> u16 {
        self.value
    }
}

impl BusDevice for PowerOffPort {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let v = match offset {
            0 => u64::from(self.value),
            1 => u64::from(self.value >> 8),
            _ => 0,
        };
        fill_le(data, v);
        // Bytes beyond the 16-bit register float high.
        let valid = 2u64.saturating_sub(offset) as usize;
        for d in data.iter_mut().skip(valid) {
            *d = 0xff;
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Option<VmRequest> {
        let mut bytes = self.value.to_le_bytes();
        for (i, &b) in data.iter().enumerate() {
            match offset.checked_add(i as u64) {
                Some(o @ 0..=1) => bytes[o as usize] = b,
                _ => {
                    log::debug!(target: "guest_errors", "pm1 control: write beyond the register at +{:#x}", offset);
                    break;
                }
            }
        }
        let v = u16::from_le_bytes(bytes);
        self.value = v & !SLP_EN;
        if v & SLP_EN != 0 {
            log::debug!(target: "ioport", "pm1 control: sleep type {} requested, powering off", (v >> 10) & 7);
            Some(VmRequest::PowerOff)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read16(p: &mut PowerOffPort) -> u16 {
        let mut d = [0u8; 2];
        p.read(0, &mut d);
        u16::from_le_bytes(d)
    }

    #[test]
    fn slp_en_powers_off() {
        let mut p = PowerOffPort::new();
        assert_eq!(p.write(0, &0x0001u16.to_le_bytes()), None);
        assert_eq!(read16(&mut p), 0x0001);
        assert_eq!(
            p.write(0, &(SLP_EN | 0x0001).to_le_bytes()),
            Some(VmRequest::PowerOff)
        );
        assert_eq!(read16(&mut p), 0x0001);
        // High byte alone: 0x20 is SLP_EN.
        assert_eq!(p.write(1, &[0x20]), Some(VmRequest::PowerOff));
        assert_eq!(p.write(1, &[0x1c]), None);
        assert_eq!(read16(&mut p), 0x1c01);
    }

    #[test]
    fn odd_accesses() {
        let mut p = PowerOffPort::with_value(0xffff);
        assert_eq!(p.value(), 0xdfff);
        let mut d = [0u8; 4];
        p.read(0, &mut d);
        assert_eq!(d, [0xff, 0xdf, 0xff, 0xff]);
        p.read(1, &mut d);
        assert_eq!(d, [0xdf, 0xff, 0xff, 0xff]);
        p.read(u64::MAX, &mut d);
        assert_eq!(d, [0xff; 4]);
        assert_eq!(p.write(u64::MAX, &[0xff, 0xff]), None);
        assert_eq!(p.write(0, &[]), None);
    }
}
