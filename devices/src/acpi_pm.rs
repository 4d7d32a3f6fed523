//! The rest of the ACPI PM I/O block the FADT describes (QEMU's PIIX4 PM
//! layout at 0x600): the PM1a event block (status and enable registers)
//! and the 32-bit ACPI PM timer. The PM1a control block is
//! [`crate::PowerOffPort`].

use std::sync::Arc;

use crate::bus::{fill_le, BusDevice, VmRequest};
use crate::clock::Clock;

/// The ACPI PM timer frequency (3.579545 MHz).
pub const PM_TIMER_HZ: u64 = 3_579_545;

/// PM1 status/enable bit of the fixed power button.
pub const PWRBTN: u16 = 1 << 8;
/// The PM1 events that raise the SCI when enabled: timer overflow,
/// global lock release, power and sleep buttons, RTC alarm.
const SCI_EVENTS: u16 = 1 | (1 << 5) | PWRBTN | (1 << 9) | (1 << 10);

/// PM1a_STS (offset 0, write 1 to clear) and PM1a_EN (offset 2); the SCI
/// is asserted while an enabled event's status bit is set.
#[derive(Clone, Default)]
pub struct Pm1Event {
    status: u16,
    enable: u16,
    sci: Option<Arc<dyn crate::IrqLine>>,
}

impl std::fmt::Debug for Pm1Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pm1Event")
            .field("status", &self.status)
            .field("enable", &self.enable)
            .finish()
    }
}

impl Pm1Event {
    pub fn new() -> Self {
        Self::default()
    }

    /// With the SCI wired to `sci` (IRQ 9 on the PC, as the FADT says).
    pub fn with_sci(sci: Arc<dyn crate::IrqLine>) -> Self {
        Self {
            sci: Some(sci),
            ..Self::default()
        }
    }

    /// Presses the fixed ACPI power button: PWRBTN_STS is set and the SCI
    /// raised if the OS enabled the event (PWRBTN_EN).
    pub fn press_power_button(&mut self) {
        self.status |= PWRBTN;
        self.update_sci();
    }

    /// Whether the SCI is asserted.
    pub fn sci_level(&self) -> bool {
        self.status & self.enable & SCI_EVENTS != 0
    }

    fn update_sci(&self) {
        if let Some(l) = &self.sci {
            l.set_level(self.sci_level());
        }
    }

    fn regs(&self) -> [u8; 4] {
        let s = self.status.to_le_bytes();
        let e = self.enable.to_le_bytes();
        [s[0], s[1], e[0], e[1]]
    }
}

impl BusDevice for Pm1Event {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let regs = self.regs();
        for (i, d) in data.iter_mut().enumerate() {
            *d = offset
                .checked_add(i as u64)
                .and_then(|o| regs.get(o as usize).copied())
                .unwrap_or(0xff);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Option<VmRequest> {
        for (i, &b) in data.iter().enumerate() {
            match offset.checked_add(i as u64) {
                // Status bits are cleared by writing 1.
                Some(0) => self.status &= !u16::from(b),
                Some(1) => self.status &= !(u16::from(b) << 8),
                Some(2) => self.enable = (self.enable & 0xff00) | u16::from(b),
                Some(3) => self.enable = (self.enable & 0x00ff) | (u16::from(b) << 8),
                _ => {}
            }
        }
        self.update_sci();
        None
    }
}

/// The 32-bit ACPI PM timer (FADT flag TMR_VAL_EXT), a free-running counter
/// at [`PM_TIMER_HZ`] derived from the injected clock.
pub struct PmTimer {
    clock: Arc<dyn Clock>,
}

impl PmTimer {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self { clock }
    }

    /// The counter value now.
    pub fn count(&self) -> u32 {
        let ns = self.clock.now_ns() as u128;
        (ns * PM_TIMER_HZ as u128 / 1_000_000_000) as u32
    }
}

impl BusDevice for PmTimer {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let v = u64::from(self.count()) >> (8 * offset.min(4));
        fill_le(data, v);
    }

    fn write(&mut self, _offset: u64, _data: &[u8]) -> Option<VmRequest> {
        log::debug!(target: "guest_errors", "write to the read-only ACPI PM timer ignored");
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn pm_timer_counts_at_3_58_mhz() {
        let clock = Arc::new(ManualClock::new(0));
        let mut t = PmTimer::new(clock.clone());
        let mut b = [0u8; 4];
        t.read(0, &mut b);
        assert_eq!(u32::from_le_bytes(b), 0);
        clock.advance(1_000_000_000);
        t.read(0, &mut b);
        assert_eq!(u32::from_le_bytes(b), PM_TIMER_HZ as u32);
        let mut w = [0u8; 2];
        t.read(2, &mut w);
        assert_eq!(u16::from_le_bytes(w), (PM_TIMER_HZ >> 16) as u16);
        // Wraps at 32 bits.
        clock.set(((1u128 << 32) * 1_000_000_000 / PM_TIMER_HZ as u128) as u64 + 1000);
        assert!(t.count() < 10);
    }

    #[test]
    fn pm1_status_is_write_one_to_clear() {
        let mut e = Pm1Event::new();
        e.status = 0x8101;
        assert_eq!(e.write(0, &[0x01, 0x80]), None);
        assert_eq!(e.status, 0x0100);
        e.write(2, &[0x20, 0x01]);
        let mut b = [0u8; 4];
        e.read(0, &mut b);
        assert_eq!(b, [0x00, 0x01, 0x20, 0x01]);
        let mut far = [0u8; 2];
        e.read(3, &mut far);
        assert_eq!(far, [0x01, 0xff]);
    }

    #[test]
    fn power_button_raises_the_sci_when_enabled() {
        use std::sync::atomic::{AtomicBool, Ordering};
        struct Line(AtomicBool);
        impl crate::IrqLine for Line {
            fn set_level(&self, level: bool) {
                self.0.store(level, Ordering::SeqCst);
            }
        }
        let line = Arc::new(Line(AtomicBool::new(false)));
        let mut e = Pm1Event::with_sci(line.clone());
        e.press_power_button();
        assert!(!line.0.load(Ordering::SeqCst), "PWRBTN_EN is clear");
        e.write(0, &[0x00, 0x01]);
        e.write(2, &[0x00, 0x01]);
        e.press_power_button();
        assert!(line.0.load(Ordering::SeqCst));
        let mut b = [0u8; 2];
        e.read(0, &mut b);
        assert_eq!(u16::from_le_bytes(b), PWRBTN);
        // The OS acknowledges: status cleared, SCI dropped.
        e.write(0, &[0x00, 0x01]);
        assert!(!line.0.load(Ordering::SeqCst));
    }
}
