//! The i8254 programmable interval timer (ports 0x40-0x43) and the PC's
//! system control port B (0x61), which gates channel 2 and shows its output.
//!
//! Counters are not ticked: each one remembers when it started counting and
//! its value and output are computed from the time (1.193182 MHz). Channel 0's
//! output drives IRQ0: [`Pit::poll`] reports the rising edges that became due
//! and [`Pit::next_deadline_ns`] when the next one will.
//!
//! Modes 0, 2 and 3 follow the datasheet. Approximations: a count written
//! while counting takes effect at once (modes 2/3 would wait for the period's
//! end); counting starts on the write itself (not one clock later); the
//! mode 3 counter read for odd counts steps by two from N-1; modes 1 and 5
//! only start on a gate rising edge, so they only ever run on channel 2.

use crate::clock::{mul_div, mul_div_ceil};

/// The PIT input clock in Hz.
pub const PIT_HZ: u64 = 1_193_182;
/// First PIT port.
pub const PIT_BASE: u16 = 0x40;
/// The system control port B.
pub const PORT_61: u16 = 0x61;
/// One DRAM refresh request every 15.085 µs toggles port 0x61 bit 4.
const REFRESH_NS: u64 = 15_085;
const NS_PER_SEC: u64 = 1_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Control word written, count not (fully) written yet.
    NoCount,
    /// Count loaded, waiting for a gate trigger (modes 1 and 5).
    WaitTrigger,
    /// Counting (possibly paused by the gate).
    Active,
}

#[derive(Clone, Debug)]
struct Channel {
    /// Mode as written (0-7; 6 and 7 behave as 2 and 3).
    raw_mode: u8,
    /// Access mode: 1 LSB, 2 MSB, 3 LSB then MSB.
    rw: u8,
    bcd: bool,
    gate: bool,
    phase: Phase,
    /// Counts per cycle: 1..=65536 (binary) or 1..=10000 (BCD).
    reload: u64,
    /// Ticks counted before `running_since`.
    base_ticks: u64,
    /// When counting (re)started; None while the gate pauses it.
    running_since: Option<u64>,
    /// Output rising edges already reported by `poll`.
    edges: u64,
    write_lsb: Option<u8>,
    read_msb: bool,
    latch: Option<u16>,
    latch_msb: bool,
    status: Option<u8>,
    null_count: bool,
}

fn bcd_to_bin(v: u16) -> u64 {
    (0..4).rev().fold(0u64, |acc, i| {
        acc * 10 + u64::from(((v >> (i * 4)) & 0xf).min(9))
    })
}

fn bin_to_bcd(v: u64) -> u16 {
    let v = v % 10_000;
    (0..4).fold(0u16, |acc, i| {
        acc | (((v / 10u64.pow(i)) % 10) as u16) << (i * 4)
    })
}

impl Channel {
    fn new(gate: bool) -> Self {
        Self {
            raw_mode: 0,
            rw: 3,
            bcd: false,
            gate,
            phase: Phase::NoCount,
            reload: 65536,
            base_ticks: 0,
            running_since: None,
            edges: 0,
            write_lsb: None,
            read_msb: false,
            latch: None,
            latch_msb: false,
            status: None,
            null_count: true,
        }
    }

    fn mode(&self) -> u8 {
        match self.raw_mode {
            6 => 2,
            7 => 3,
            m => m,
        }
    }

    fn periodic(&self) -> bool {
        matches!(self.mode(), 2 | 3)
    }

    /// Ticks counted since the count was loaded or triggered.
    fn elapsed(&self, now: u64) -> u64 {
        let running = self
            .running_since
            .map_or(0, |s| mul_div(now.saturating_sub(s), PIT_HZ, NS_PER_SEC));
        self.base_ticks.saturating_add(running)
    }

    fn start(&mut self, now: u64) {
        self.phase = Phase::Active;
        self.base_ticks = 0;
        self.edges = 0;
        self.running_since = self.counts_with_gate().then_some(now);
    }

    /// Whether the gate's current level lets the counter run.
    fn counts_with_gate(&self) -> bool {
        self.gate || matches!(self.mode(), 1 | 5)
    }

    fn out(&self, now: u64) -> bool {
        match self.phase {
            Phase::NoCount => self.mode() != 0,
            Phase::WaitTrigger => true,
            Phase::Active => {
                let d = self.elapsed(now);
                let n = self.reload;
                match self.mode() {
                    0 => d >= n,
                    1 => d >= n,
                    2 => !self.gate || d % n != n - 1,
                    3 => !self.gate || d % n < n.div_ceil(2),
                    _ => d != n,
                }
            }
        }
    }

    /// The counting element's value, in ticks.
    fn count(&self, now: u64) -> u64 {
        let modulus = if self.bcd { 10_000 } else { 65_536 };
        match self.phase {
            Phase::NoCount | Phase::WaitTrigger => self.reload % modulus,
            Phase::Active => {
                let d = self.elapsed(now);
                let n = self.reload;
                match self.mode() {
                    2 => n - d % n,
                    3 => {
                        let phase = d % n;
                        let high = n.div_ceil(2);
                        let into_half = if phase < high { phase } else { phase - high };
                        (n & !1).saturating_sub(2 * into_half).max(2) % modulus
                    }
                    _ => (n + modulus - d % modulus) % modulus,
                }
            }
        }
    }

    /// The count as the guest reads it (binary or BCD).
    fn read_value(&self, now: u64) -> u16 {
        let c = self.count(now);
        if self.bcd {
            bin_to_bcd(c)
        } else {
            c as u16
        }
    }

    /// Tick at which the next unreported output rising edge happens.
    fn next_edge_tick(&self) -> Option<u64> {
        if self.phase != Phase::Active {
            return None;
        }
        match self.mode() {
            2 | 3 => Some(self.edges.saturating_add(1).saturating_mul(self.reload)),
            m if self.edges == 0 => Some(if m >= 4 { self.reload + 1 } else { self.reload }),
            _ => None,
        }
    }

    fn poll(&mut self, now: u64) -> bool {
        let Some(tick) = self.next_edge_tick() else {
            return false;
        };
        let d = self.elapsed(now);
        if d < tick {
            return false;
        }
        self.edges = if self.periodic() { d / self.reload } else { 1 };
        true
    }

    fn next_deadline_ns(&self) -> Option<u64> {
        let tick = self.next_edge_tick()?;
        let since = self.running_since?;
        if self.periodic() && !self.gate {
            return None;
        }
        let remaining = tick.saturating_sub(self.base_ticks);
        Some(since.saturating_add(mul_div_ceil(remaining, NS_PER_SEC, PIT_HZ)))
    }

    fn set_gate(&mut self, level: bool, now: u64) {
        if level == self.gate {
            return;
        }
        self.gate = level;
        if self.phase != Phase::Active && !(level && self.phase == Phase::WaitTrigger) {
            return;
        }
        match (self.mode(), level) {
            (1 | 5 | 2 | 3, true) => self.start(now),
            (0 | 4, true) => self.running_since = Some(now),
            (0 | 4 | 2 | 3, false) => {
                self.base_ticks = self.elapsed(now);
                self.running_since = None;
            }
            _ => {}
        }
    }

    fn write_control(&mut self, v: u8) {
        self.rw = (v >> 4) & 3;
        self.raw_mode = (v >> 1) & 7;
        self.bcd = v & 1 != 0;
        self.phase = Phase::NoCount;
        self.running_since = None;
        self.write_lsb = None;
        self.read_msb = false;
        self.latch = None;
        self.status = None;
        self.null_count = true;
    }

    fn latch_count(&mut self, now: u64) {
        if self.latch.is_none() {
            self.latch = Some(self.read_value(now));
            self.latch_msb = self.rw == 2;
        }
    }

    fn latch_status(&mut self, now: u64) {
        if self.status.is_none() {
            self.status = Some(
                u8::from(self.out(now)) << 7
                    | u8::from(self.null_count) << 6
                    | self.rw << 4
                    | self.raw_mode << 1
                    | u8::from(self.bcd),
            );
        }
    }

    fn read_data(&mut self, now: u64) -> u8 {
        if let Some(s) = self.status.take() {
            return s;
        }
        if let Some(l) = self.latch {
            let [lo, hi] = l.to_le_bytes();
            return match (self.rw, self.latch_msb) {
                (3, false) => {
                    self.latch_msb = true;
                    lo
                }
                (_, false) => {
                    self.latch = None;
                    lo
                }
                (_, true) => {
                    self.latch = None;
                    hi
                }
            };
        }
        let [lo, hi] = self.read_value(now).to_le_bytes();
        match self.rw {
            1 => lo,
            2 => hi,
            _ => {
                self.read_msb = !self.read_msb;
                if self.read_msb {
                    lo
                } else {
                    hi
                }
            }
        }
    }

    fn write_data(&mut self, v: u8, now: u64) {
        let value = match self.rw {
            1 => u16::from(v),
            2 => u16::from(v) << 8,
            _ => match self.write_lsb.take() {
                None => {
                    self.write_lsb = Some(v);
                    if self.mode() == 0 {
                        // Writing the first byte stops a mode 0 count.
                        self.phase = Phase::NoCount;
                        self.running_since = None;
                    }
                    return;
                }
                Some(lo) => u16::from_le_bytes([lo, v]),
            },
        };
        self.reload = match (value, self.bcd) {
            (0, false) => 65_536,
            (0, true) => 10_000,
            (v, false) => u64::from(v),
            (v, true) => bcd_to_bin(v).max(1),
        };
        self.null_count = false;
        if matches!(self.mode(), 1 | 5) {
            // The new count is used from the next gate trigger on.
            self.phase = Phase::WaitTrigger;
            self.running_since = None;
        } else {
            self.start(now);
        }
    }
}

/// The i8254 and port 0x61.
#[derive(Clone, Debug)]
pub struct Pit {
    channels: [Channel; 3],
    /// Port 0x61 bits 0-3 as written.
    port61: u8,
}

impl Default for Pit {
    fn default() -> Self {
        Self::new()
    }
}

impl Pit {
    /// A PIT with no counts loaded; channel 2's gate low.
    pub fn new() -> Self {
        Self {
            channels: [Channel::new(true), Channel::new(true), Channel::new(false)],
            port61: 0,
        }
    }

    /// Read port 0x40-0x43 or 0x61 at time `now`; other ports read 0xff.
    pub fn read_port(&mut self, port: u16, now: u64) -> u8 {
        match port {
            0x40..=0x42 => self.channels[usize::from(port - 0x40)].read_data(now),
            PORT_61 => {
                self.port61
                    | u8::from((now / REFRESH_NS) & 1 == 1) << 4
                    | u8::from(self.channels[2].out(now)) << 5
            }
            // The control word register is write-only.
            _ => 0xff,
        }
    }

    /// Write port 0x40-0x43 or 0x61 at time `now`; other ports are ignored.
    pub fn write_port(&mut self, port: u16, value: u8, now: u64) {
        match port {
            0x40..=0x42 => self.channels[usize::from(port - 0x40)].write_data(value, now),
            0x43 => self.write_control(value, now),
            PORT_61 => {
                self.port61 = value & 0x0f;
                self.channels[2].set_gate(value & 1 != 0, now);
            }
            _ => {
                log::debug!(target: "guest_errors", "i8254: write {:#x} to port {:#x}", value, port)
            }
        }
    }

    fn write_control(&mut self, v: u8, now: u64) {
        let sc = v >> 6;
        if sc == 3 {
            // Read-back: bit 5 clear latches counts, bit 4 clear latches status.
            for (i, ch) in self.channels.iter_mut().enumerate() {
                if v & (2 << i) != 0 {
                    if v & 0x20 == 0 {
                        ch.latch_count(now);
                    }
                    if v & 0x10 == 0 {
                        ch.latch_status(now);
                    }
                }
            }
            return;
        }
        let ch = &mut self.channels[usize::from(sc)];
        if v & 0x30 == 0 {
            ch.latch_count(now);
        } else {
            ch.write_control(v);
        }
    }

    /// Set a channel's gate input (channel 2's is port 0x61 bit 0).
    pub fn set_gate(&mut self, channel: usize, level: bool, now: u64) {
        if let Some(ch) = self.channels.get_mut(channel) {
            ch.set_gate(level, now);
        }
    }

    /// A channel's OUT pin at time `now` (false for a missing channel).
    pub fn out(&self, channel: usize, now: u64) -> bool {
        self.channels.get(channel).is_some_and(|c| c.out(now))
    }

    /// Whether channel 0's output had a rising edge (an IRQ0 edge) since the
    /// last poll. Several missed periods collapse into one edge.
    pub fn poll(&mut self, now: u64) -> bool {
        self.channels[0].poll(now)
    }

    /// When channel 0's next output rising edge is due, if one is.
    pub fn next_deadline_ns(&self) -> Option<u64> {
        self.channels[0].next_deadline_ns()
    }
}

#[cfg(test)]
#[path = "pit_tests.rs"]
mod tests;
