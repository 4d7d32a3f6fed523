//! The guest's own debug registers (SDM Vol. 3B chapter 17): instruction
//! breakpoints (fault-like #DB before the instruction, suppressed by
//! RFLAGS.RF), data breakpoints (trap-like #DB after the accessing
//! instruction, through the MMU's watch slots 4-7), general detect
//! (DR7.GD), how DR6 is updated, and MOV SS / POP SS blocking: debug traps
//! of the instruction that loads SS are held and delivered after the next
//! instruction (SDM 6.8.3). These are separate from the debugger's
//! breakpoints and watchpoints (`debug_hw_exec`, MMU slots 0-3).

use super::Cpu;
use crate::bus::CpuBus;
use crate::consts::{cr4, rflags};
use crate::exception::{vector, Exception, XResult};
use crate::mmu::Watchpoint;

/// DR6: breakpoint condition detected (B0-B3).
pub const DR6_B: u64 = 0xf;
/// DR6.BD: debug-register access detected (general detect).
pub const DR6_BD: u64 = 1 << 13;
/// DR6.BS: single step.
pub const DR6_BS: u64 = 1 << 14;
/// DR7.GD: general detect enable.
pub const DR7_GD: u64 = 1 << 13;

/// A breakpoint of DR7: slot `n`'s enable bits, R/W field and length.
fn dr7_slot(dr7: u64, n: usize) -> Option<(u64, u64)> {
    if dr7 >> (2 * n) & 3 == 0 {
        return None;
    }
    let rw = dr7 >> (16 + 4 * n) & 3;
    let len = match dr7 >> (18 + 4 * n) & 3 {
        0 => 1,
        1 => 2,
        2 => 8,
        _ => 4,
    };
    Some((rw, len))
}

impl Cpu {
    /// Recomputes the guest's enabled breakpoints from DR0-DR3 and DR7
    /// (after a write to them or a state load). I/O breakpoints (R/W = 10
    /// with CR4.DE) are not modelled.
    pub(crate) fn sync_guest_breakpoints(&mut self) {
        let dr7 = self.state.dr[7];
        let mut exec = [None; 4];
        let mut data = [None; 4];
        for n in 0..4 {
            let Some((rw, len)) = dr7_slot(dr7, n) else {
                continue;
            };
            let addr = self.state.dr[n];
            match rw {
                0 => exec[n] = Some(addr),
                1 | 3 => {
                    data[n] = Some(Watchpoint {
                        addr: addr & !(len - 1),
                        len,
                        read: rw == 3,
                        write: true,
                    })
                }
                _ => {
                    if self.state.cr4 & cr4::DE != 0 {
                        log::warn!(target: "unimp", "guest I/O breakpoint (DR7={dr7:#x}): not implemented");
                    }
                }
            }
        }
        self.guest_bp_exec = exec;
        self.guest_bp_on = exec.iter().any(Option::is_some);
        self.mmu.set_guest_watchpoints(data);
    }

    /// An instruction breakpoint of the guest matches the instruction about
    /// to run (and RF does not suppress it): delivers the fault-like #DB
    /// (RIP at the instruction) and says so.
    pub(crate) fn guest_exec_breakpoint(&mut self, bus: &mut dyn CpuBus) -> bool {
        if self.state.rflags & rflags::RF != 0 {
            return false;
        }
        let pc = self.state.linear_pc();
        let hits = (0..4).fold(0u64, |m, n| {
            m | (u64::from(self.guest_bp_exec[n] == Some(pc)) << n)
        });
        if hits == 0 {
            return false;
        }
        self.state.dr[6] = (self.state.dr[6] & !DR6_B) | hits;
        self.end_block = true;
        self.deliver_exception(bus, Exception::new(vector::DB));
        true
    }

    /// Delivers a trap-like #DB for data breakpoints `hits` (B0-B3) and/or
    /// a single step: B0-B3 report the matches (when there are any), BS
    /// accumulates.
    pub(crate) fn deliver_debug_trap(&mut self, bus: &mut dyn CpuBus, hits: u8, step: bool) {
        if hits != 0 {
            self.state.dr[6] = (self.state.dr[6] & !DR6_B) | u64::from(hits);
        }
        if step {
            self.state.dr[6] |= DR6_BS;
        }
        self.end_block = true;
        self.deliver_exception(bus, Exception::new(vector::DB));
    }

    /// General detect: with DR7.GD set, a MOV to or from a debug register
    /// is a fault-like #DB with DR6.BD set; the CPU clears DR7.GD so that
    /// the handler can use the debug registers.
    pub(crate) fn dr_general_detect(&mut self) -> XResult<()> {
        if self.state.dr[7] & DR7_GD == 0 {
            return Ok(());
        }
        self.state.dr[7] &= !DR7_GD;
        self.state.dr[6] |= DR6_BD;
        Err(Exception::new(vector::DB))
    }
}
