//! The local APIC timer: one-shot, periodic and TSC-deadline modes, computed
//! from the time rather than ticked.

use crate::clock::{mul_div, mul_div_ceil};

const NS_PER_SEC: u64 = 1_000_000_000;

/// LVT timer mode field (bits 17-18).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerMode {
    /// Count down once from the initial count.
    OneShot,
    /// Count down repeatedly from the initial count.
    Periodic,
    /// Fire when the TSC reaches IA32_TSC_DEADLINE.
    TscDeadline,
}

impl TimerMode {
    /// The mode encoded in an LVT timer value (the reserved 11 acts as one-shot).
    pub fn from_lvt(lvt: u32) -> Self {
        match (lvt >> 17) & 3 {
            1 => Self::Periodic,
            2 => Self::TscDeadline,
            _ => Self::OneShot,
        }
    }
}

/// Timer state (the LVT entry itself lives with the other LVTs).
#[derive(Clone, Debug)]
pub(crate) struct ApicTimer {
    pub bus_hz: u64,
    pub tsc_hz: u64,
    pub mode: TimerMode,
    pub initial: u32,
    /// Divide configuration register as written (bits 0, 1, 3).
    pub dcr: u32,
    start_ns: u64,
    /// Expirations already signalled since `start_ns`.
    expirations: u64,
    /// IA32_TSC_DEADLINE as the guest last wrote it (0 = disarmed).
    tsc_deadline: u64,
    /// When the TSC deadline falls due, if armed.
    deadline_ns: Option<u64>,
    /// A one-shot count that reached zero and was then switched to
    /// periodic: it stays at zero until the initial count is written.
    stopped: bool,
}

impl ApicTimer {
    pub fn new(bus_hz: u64, tsc_hz: u64) -> Self {
        Self {
            bus_hz: bus_hz.max(1),
            tsc_hz: tsc_hz.max(1),
            mode: TimerMode::OneShot,
            initial: 0,
            dcr: 0,
            start_ns: 0,
            expirations: 0,
            tsc_deadline: 0,
            deadline_ns: None,
            stopped: false,
        }
    }

    /// The divisor selected by the DCR: 2, 4, ..., 128 or 1.
    pub fn divisor(&self) -> u64 {
        let v = (self.dcr & 3) | ((self.dcr >> 1) & 4);
        if v == 7 {
            1
        } else {
            2 << v
        }
    }

    /// Timer counts elapsed since the initial count was written.
    fn counts_since_start(&self, now: u64) -> u64 {
        mul_div(
            now.saturating_sub(self.start_ns),
            self.bus_hz,
            NS_PER_SEC.saturating_mul(self.divisor()),
        )
    }

    /// Time at which `counts` counts have elapsed since the start.
    fn time_of_count(&self, counts: u64) -> u64 {
        let bus_ticks = counts.saturating_mul(self.divisor());
        self.start_ns
            .saturating_add(mul_div_ceil(bus_ticks, NS_PER_SEC, self.bus_hz))
    }

    /// A write of the LVT timer's mode field at `now`. Entering or leaving
    /// TSC-deadline mode disarms the timer (SDM 10.5.4.1); between one-shot
    /// and periodic the count goes on from where it is (the initial count
    /// stays), as on hardware and KVM.
    pub fn set_mode(&mut self, mode: TimerMode, now: u64) {
        if mode == self.mode {
            return;
        }
        if (mode == TimerMode::TscDeadline) != (self.mode == TimerMode::TscDeadline) {
            self.mode = mode;
            self.initial = 0;
            self.tsc_deadline = 0;
            self.deadline_ns = None;
            self.stopped = false;
            return;
        }
        let left = self.current_count(now);
        self.mode = mode;
        if self.initial == 0 || self.stopped {
            return;
        }
        if left == 0 {
            // A one-shot count that ran out: no reload in periodic mode.
            self.stopped = true;
            return;
        }
        // Restart the count so that `left` counts remain to the next zero.
        let done = u64::from(self.initial) - u64::from(left);
        self.start_ns = now;
        let ahead = self.time_of_count(done) - now;
        self.start_ns = now.saturating_sub(ahead);
        self.expirations = 0;
    }

    pub fn set_initial(&mut self, count: u32, now: u64) {
        if self.mode == TimerMode::TscDeadline {
            return;
        }
        self.initial = count;
        self.start_ns = now;
        self.expirations = 0;
        self.stopped = false;
    }

    pub fn current_count(&self, now: u64) -> u32 {
        if self.mode == TimerMode::TscDeadline || self.initial == 0 || self.stopped {
            return 0;
        }
        let n = u64::from(self.initial);
        let d = self.counts_since_start(now);
        let left = match self.mode {
            TimerMode::Periodic => n - d % n,
            _ => n.saturating_sub(d),
        };
        left as u32
    }

    pub fn tsc_deadline(&self) -> u64 {
        self.tsc_deadline
    }

    /// Arm (or with 0, disarm) the TSC deadline. Ignored outside TSC-deadline
    /// mode, as the MSR is then not connected to the timer.
    pub fn set_tsc_deadline(&mut self, value: u64, tsc_now: u64, now: u64) {
        if self.mode != TimerMode::TscDeadline {
            return;
        }
        self.tsc_deadline = value;
        self.deadline_ns = (value != 0).then(|| {
            let delta = value.saturating_sub(tsc_now);
            now.saturating_add(mul_div_ceil(delta, NS_PER_SEC, self.tsc_hz))
        });
    }

    /// When the next expiration is due, if the timer is armed.
    pub fn next_deadline_ns(&self) -> Option<u64> {
        match self.mode {
            TimerMode::TscDeadline => self.deadline_ns,
            _ if self.initial == 0 || self.stopped => None,
            TimerMode::OneShot if self.expirations > 0 => None,
            _ => Some(
                self.time_of_count(
                    self.expirations
                        .saturating_add(1)
                        .saturating_mul(u64::from(self.initial)),
                ),
            ),
        }
    }

    /// Whether the timer expired since the last call (several periodic
    /// expirations collapse into one).
    pub fn poll(&mut self, now: u64) -> bool {
        match self.next_deadline_ns() {
            Some(t) if now >= t => {}
            _ => return false,
        }
        match self.mode {
            TimerMode::TscDeadline => {
                self.tsc_deadline = 0;
                self.deadline_ns = None;
            }
            TimerMode::OneShot => self.expirations = 1,
            TimerMode::Periodic => {
                self.expirations = self.counts_since_start(now) / u64::from(self.initial);
            }
        }
        true
    }
}
