//! The MC146818-style CMOS RTC and NVRAM at ports 0x70 (index, bit 7 = NMI
//! disable) and 0x71 (data), 128 bytes.
//!
//! The time is the host's (or any Unix time given at creation) advanced by
//! the injected [`Clock`]; it is computed on read, not ticked. Register B
//! selects BCD/binary and 12/24-hour; SET freezes the time while the guest
//! writes it. Register A's UIP bit is set during the last 244 µs before each
//! second's update, as on hardware. Register C's flags (update-ended, alarm,
//! periodic) are computed from the time on access or [`Rtc::poll`], and IRQ8
//! is asserted while an enabled flag is set, until register C is read.
//! Approximations: the divider bits of register A do not stop the clock;
//! daylight saving (DSE) is ignored; after a long time without polling only
//! the last elapsed second is compared against the alarm.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::bus::{BusDevice, IrqLine, VmRequest};
use crate::clock::Clock;
use crate::rtc_time::{decode, decode_hour, encode, encode_hour, DateTime};

/// First RTC port (index register).
pub const RTC_PORT: u16 = 0x70;
/// Size of the CMOS memory.
pub const CMOS_SIZE: usize = 128;
/// The century register QEMU/SeaBIOS and the ACPI FADT use.
pub const REG_CENTURY: u8 = 0x32;

const REG_A: usize = 0x0a;
const REG_B: usize = 0x0b;
const REG_C: usize = 0x0c;
const REG_D: usize = 0x0d;

const A_UIP: u8 = 0x80;
const B_SET: u8 = 0x80;
const B_PIE: u8 = 0x40;
const B_AIE: u8 = 0x20;
const B_UIE: u8 = 0x10;
const B_BINARY: u8 = 0x04;
const B_24H: u8 = 0x02;
const C_IRQF: u8 = 0x80;
const C_PF: u8 = 0x40;
const C_AF: u8 = 0x20;
const C_UF: u8 = 0x10;
const D_VRT: u8 = 0x80;

const NS: i128 = 1_000_000_000;
/// UIP rises this long before each update.
const UIP_LEAD_NS: i128 = 244_000;

/// The CMOS RTC.
pub struct Rtc {
    clock: Arc<dyn Clock>,
    irq: Arc<dyn IrqLine>,
    /// Wall-clock ns since the Unix epoch = clock ns + offset.
    offset_ns: i128,
    /// The time registers while register B's SET bit holds them (as
    /// written: validated only when the clock restarts).
    frozen: Option<DateTime>,
    index: u8,
    nmi_disabled: bool,
    cmos: [u8; CMOS_SIZE],
    last_check_ns: u64,
    irq_level: bool,
}

impl Rtc {
    /// An RTC showing the host's current time.
    pub fn new(clock: Arc<dyn Clock>, irq: Arc<dyn IrqLine>) -> Self {
        let unix_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        Self::with_unix_ns(clock, irq, unix_ns)
    }

    /// An RTC showing Unix time `unix_secs` now.
    pub fn with_unix_time(clock: Arc<dyn Clock>, irq: Arc<dyn IrqLine>, unix_secs: i64) -> Self {
        Self::with_unix_ns(clock, irq, i128::from(unix_secs) * NS)
    }

    fn with_unix_ns(clock: Arc<dyn Clock>, irq: Arc<dyn IrqLine>, unix_ns: i128) -> Self {
        let now = clock.now_ns();
        let mut cmos = [0u8; CMOS_SIZE];
        cmos[REG_A] = 0x26;
        cmos[REG_B] = B_24H;
        cmos[REG_D] = D_VRT;
        Self {
            clock,
            irq,
            offset_ns: unix_ns - i128::from(now),
            frozen: None,
            index: 0,
            nmi_disabled: false,
            cmos,
            last_check_ns: now,
            irq_level: false,
        }
    }

    /// Whether the guest set the NMI-disable bit (port 0x70 bit 7).
    pub fn nmi_disabled(&self) -> bool {
        self.nmi_disabled
    }

    /// Store a CMOS byte (for the machine: equipment, memory sizes...).
    /// Indexes past the 128 bytes are ignored; the clock registers 0x00-0x0D
    /// are not plain memory and are left alone.
    pub fn set_byte(&mut self, index: u8, value: u8) {
        let i = usize::from(index);
        if (0x0e..CMOS_SIZE).contains(&i) {
            self.cmos[i] = value;
        }
    }

    /// A stored CMOS byte (0 past the end).
    pub fn byte(&self, index: u8) -> u8 {
        self.cmos.get(usize::from(index)).copied().unwrap_or(0)
    }

    /// Fill the memory size bytes the way QEMU's PC does for SeaBIOS:
    /// 0x15/0x16 base memory in KiB (at most 640), 0x17/0x18 and 0x30/0x31
    /// KiB above 1 MiB (at most 65535), 0x34/0x35 64 KiB units between
    /// 16 MiB and 4 GiB (at most 65535), 0x5B-0x5D 64 KiB units above 4 GiB.
    pub fn set_memory_size(&mut self, below_4g: u64, above_4g: u64) {
        const KIB: u64 = 1024;
        const MIB: u64 = 1024 * KIB;
        let base = (below_4g / KIB).min(640);
        let ext = (below_4g.saturating_sub(MIB) / KIB).min(0xffff);
        let high = (below_4g.saturating_sub(16 * MIB) / (64 * KIB)).min(0xffff);
        let above = (above_4g / (64 * KIB)).min(0xff_ffff);
        for (idx, val) in [(0x15u8, base), (0x17, ext), (0x30, ext), (0x34, high)] {
            self.set_byte(idx, val as u8);
            self.set_byte(idx + 1, (val >> 8) as u8);
        }
        self.set_byte(0x5b, above as u8);
        self.set_byte(0x5c, (above >> 8) as u8);
        self.set_byte(0x5d, (above >> 16) as u8);
    }

    fn wall_ns(&self, now: u64) -> i128 {
        i128::from(now) + self.offset_ns
    }

    /// The time registers' contents at `now`.
    fn time_at(&self, now: u64) -> DateTime {
        match self.frozen {
            Some(t) => t,
            None => DateTime::from_unix(self.wall_ns(now).div_euclid(NS) as i64),
        }
    }

    fn binary(&self) -> bool {
        self.cmos[REG_B] & B_BINARY != 0
    }

    fn h24(&self) -> bool {
        self.cmos[REG_B] & B_24H != 0
    }

    /// Periodic interrupt period from register A's rate select, if any.
    fn periodic_ns(&self) -> Option<u64> {
        match self.cmos[REG_A] & 0x0f {
            0 => None,
            1 => Some(3_906_250),
            2 => Some(7_812_500),
            rs => Some(1_000_000_000u64 << (rs - 1) >> 15),
        }
    }

    fn alarm_matches(&self, t: &DateTime) -> bool {
        let (bin, h24) = (self.binary(), self.h24());
        let field = |reg: usize, cur: u8| self.cmos[reg] >= 0xc0 || self.cmos[reg] == cur;
        field(1, encode(t.second, bin))
            && field(3, encode(t.minute, bin))
            && field(5, encode_hour(t.hour, bin, h24))
    }

    /// Bring register C's flags and IRQ8 up to `now`.
    fn update_flags(&mut self, now: u64) {
        let last = self.last_check_ns;
        if now > last {
            let mut flags = 0;
            if self.frozen.is_none() {
                let prev = self.wall_ns(last).div_euclid(NS);
                let cur = self.wall_ns(now).div_euclid(NS);
                if cur > prev {
                    flags |= C_UF;
                    if self.alarm_matches(&DateTime::from_unix(cur as i64)) {
                        flags |= C_AF;
                    }
                }
            }
            if let Some(p) = self.periodic_ns() {
                if now / p > last / p {
                    flags |= C_PF;
                }
            }
            self.cmos[REG_C] |= flags;
            self.last_check_ns = now;
        }
        let enabled = self.cmos[REG_B] & (B_PIE | B_AIE | B_UIE);
        if self.cmos[REG_C] & enabled & (C_PF | C_AF | C_UF) != 0 {
            self.cmos[REG_C] |= C_IRQF;
        }
        let level = self.cmos[REG_C] & C_IRQF != 0;
        if level != self.irq_level {
            self.irq_level = level;
            log::trace!(target: "int", "rtc: IRQ8 -> {}", level);
            self.irq.set_level(level);
        }
    }

    /// Update the interrupt flags to the current time (raising IRQ8 if due).
    pub fn poll(&mut self) {
        let now = self.clock.now_ns();
        self.update_flags(now);
    }

    /// When [`Rtc::poll`] next has an interrupt to raise, if one is enabled.
    pub fn next_deadline_ns(&self) -> Option<u64> {
        if self.irq_level {
            return None;
        }
        let b = self.cmos[REG_B];
        let mut next: Option<u64> = None;
        if b & (B_UIE | B_AIE) != 0 && self.frozen.is_none() {
            let wall = self.wall_ns(self.last_check_ns);
            let boundary = (wall.div_euclid(NS) + 1) * NS - self.offset_ns;
            next = u64::try_from(boundary).ok();
        }
        if b & B_PIE != 0 {
            if let Some(p) = self.periodic_ns() {
                let t = (self.last_check_ns / p + 1).saturating_mul(p);
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        next
    }

    fn read_reg(&mut self, reg: usize, now: u64) -> u8 {
        let (bin, h24) = (self.binary(), self.h24());
        let t = self.time_at(now);
        match reg {
            0x00 => encode(t.second, bin),
            0x02 => encode(t.minute, bin),
            0x04 => encode_hour(t.hour, bin, h24),
            0x06 => encode(t.weekday, bin),
            0x07 => encode(t.day, bin),
            0x08 => encode(t.month, bin),
            0x09 => encode(t.year.rem_euclid(100) as u32, bin),
            0x32 => encode(t.year.div_euclid(100).clamp(0, 99) as u32, bin),
            REG_A => {
                let frac = self.wall_ns(now).rem_euclid(NS);
                let uip = self.frozen.is_none() && frac >= NS - UIP_LEAD_NS;
                self.cmos[REG_A] | if uip { A_UIP } else { 0 }
            }
            REG_C => {
                self.update_flags(now);
                let v = std::mem::take(&mut self.cmos[REG_C]);
                self.update_flags(now);
                v
            }
            _ => self.cmos[reg],
        }
    }

    /// Replace the time registers with `t`; a running clock keeps its
    /// position within the second.
    fn set_time(&mut self, t: DateTime, now: u64) {
        match &mut self.frozen {
            Some(f) => *f = t,
            None => {
                let frac = self.wall_ns(now).rem_euclid(NS);
                self.offset_ns = i128::from(t.to_unix()) * NS + frac - i128::from(now);
                self.last_check_ns = now;
            }
        }
    }

    fn write_reg(&mut self, reg: usize, v: u8, now: u64) {
        let (bin, h24) = (self.binary(), self.h24());
        let mut t = self.time_at(now);
        match reg {
            0x00 => t.second = decode(v, bin),
            0x02 => t.minute = decode(v, bin),
            0x04 => t.hour = decode_hour(v, bin, h24),
            0x07 => t.day = decode(v, bin),
            0x08 => t.month = decode(v, bin),
            0x09 => t.year = t.year.div_euclid(100) * 100 + i64::from(decode(v, bin) % 100),
            0x32 => t.year = i64::from(decode(v, bin)) * 100 + t.year.rem_euclid(100),
            0x06 => {
                log::debug!(target: "unimp", "rtc: day of week is derived from the date");
                return;
            }
            REG_A => {
                self.update_flags(now);
                self.cmos[REG_A] = v & !A_UIP;
                return;
            }
            REG_B => {
                self.update_flags(now);
                let old = self.cmos[REG_B];
                let mut v = v;
                if v & B_SET != 0 {
                    v &= !B_UIE;
                    if old & B_SET == 0 {
                        self.frozen = Some(self.time_at(now));
                    }
                } else if let Some(t) = self.frozen.take() {
                    // The clock restarts at the start of the set second.
                    self.offset_ns = i128::from(t.to_unix()) * NS - i128::from(now);
                    self.last_check_ns = now;
                }
                self.cmos[REG_B] = v;
                self.update_flags(now);
                return;
            }
            REG_C | REG_D => {
                log::debug!(target: "guest_errors", "rtc: write to read-only register {:#x}", reg);
                return;
            }
            _ => {
                self.cmos[reg] = v;
                return;
            }
        }
        self.set_time(t, now);
    }
}

impl BusDevice for Rtc {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let now = self.clock.now_ns();
        for (i, d) in data.iter_mut().enumerate() {
            *d = match offset.checked_add(i as u64) {
                Some(1) => self.read_reg(usize::from(self.index), now),
                // The index register is write-only.
                _ => 0xff,
            };
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Option<VmRequest> {
        let now = self.clock.now_ns();
        for (i, &v) in data.iter().enumerate() {
            match offset.checked_add(i as u64) {
                Some(0) => {
                    self.index = v & 0x7f;
                    self.nmi_disabled = v & 0x80 != 0;
                }
                Some(1) => self.write_reg(usize::from(self.index), v, now),
                _ => {
                    log::debug!(target: "guest_errors", "rtc: write beyond the ports at +{:#x}", offset)
                }
            }
        }
        None
    }
}

#[cfg(test)]
#[path = "rtc_tests.rs"]
mod tests;
