//! Operand access: registers by iced `Register`, effective addresses,
//! generic read/write of instruction operands.

use iced_x86::{Instruction, OpKind, Register};

use super::flags::mask;
use super::Cpu;
use crate::bus::CpuBus;
use crate::exception::XResult;
use crate::mmu::seg::SegAccess;
use crate::SegReg;

/// A resolved operand location.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loc {
    Reg(Register),
    /// A memory operand's linear address (segment checks done).
    Lin(u64),
}

/// Size in bytes of a general-purpose or segment register.
#[inline(always)]
pub fn reg_size(r: Register) -> u32 {
    match r as u32 {
        1..=20 => 1,
        21..=36 => 2,
        37..=52 => 4,
        53..=70 => 8,
        71..=76 => 2,
        _ => 16,
    }
}

/// The segment register named by an iced register.
#[inline]
pub fn sreg(r: Register) -> Option<SegReg> {
    Some(match r {
        Register::ES => SegReg::Es,
        Register::CS => SegReg::Cs,
        Register::SS => SegReg::Ss,
        Register::DS => SegReg::Ds,
        Register::FS => SegReg::Fs,
        Register::GS => SegReg::Gs,
        _ => return None,
    })
}

impl Cpu {
    /// Reads a general-purpose register, zero-extended.
    #[inline(always)]
    pub fn reg(&self, r: Register) -> u64 {
        let n = r as usize;
        let g = &self.state.gpr;
        match n {
            1..=4 => g[n - 1] & 0xff,
            5..=8 => (g[n - 5] >> 8) & 0xff,
            9..=20 => g[(n - 5) & 15] & 0xff,
            21..=36 => g[(n - 21) & 15] & 0xffff,
            37..=52 => g[(n - 37) & 15] & 0xffff_ffff,
            53..=68 => g[(n - 53) & 15],
            69 => self.state.rip & 0xffff_ffff,
            70 => self.state.rip,
            71..=76 => self.state.segs[n - 71].selector as u64,
            _ => 0,
        }
    }

    /// Writes a general-purpose register with x86 merge rules (8/16-bit
    /// writes merge, 32-bit writes zero-extend).
    #[inline(always)]
    pub fn set_reg(&mut self, r: Register, v: u64) {
        let n = r as usize;
        let g = &mut self.state.gpr;
        match n {
            1..=4 => g[n - 1] = (g[n - 1] & !0xff) | (v & 0xff),
            5..=8 => g[n - 5] = (g[n - 5] & !0xff00) | ((v & 0xff) << 8),
            9..=20 => {
                let k = (n - 5) & 15;
                g[k] = (g[k] & !0xff) | (v & 0xff)
            }
            21..=36 => {
                let k = (n - 21) & 15;
                g[k] = (g[k] & !0xffff) | (v & 0xffff)
            }
            37..=52 => g[(n - 37) & 15] = v & 0xffff_ffff,
            53..=68 => g[(n - 53) & 15] = v,
            _ => {}
        }
    }

    /// GPR by number with a size (1 = low byte, no AH..BH), merge rules.
    #[inline(always)]
    pub fn gpr_sized(&self, n: usize, size: u32) -> u64 {
        self.state.gpr[n & 15] & mask(size)
    }

    #[inline(always)]
    pub fn set_gpr_sized(&mut self, n: usize, size: u32, v: u64) {
        let g = &mut self.state.gpr[n & 15];
        match size {
            1 => *g = (*g & !0xff) | (v & 0xff),
            2 => *g = (*g & !0xffff) | (v & 0xffff),
            4 => *g = v & 0xffff_ffff,
            _ => *g = v,
        }
    }

    /// Effective address (offset within the segment) of the memory operand,
    /// wrapped to the address size.
    #[inline(always)]
    pub fn ea(&self, i: &Instruction) -> u64 {
        let base = i.memory_base();
        let index = i.memory_index();
        let mut a = i.memory_displacement64();
        let mut m = u64::MAX;
        match base {
            Register::None => {}
            Register::RIP => return a,
            Register::EIP => return a & 0xffff_ffff,
            r => {
                a = a.wrapping_add(self.reg(r));
                m = mask(reg_size(r));
            }
        }
        if index != Register::None {
            a = a.wrapping_add(self.reg(index).wrapping_mul(i.memory_index_scale() as u64));
            m = mask(reg_size(index));
        } else if base == Register::None {
            m = match i.memory_displ_size() {
                2 => 0xffff,
                4 => 0xffff_ffff,
                _ => u64::MAX,
            };
        }
        a & m
    }

    /// `ea + k` wrapped to the instruction's address size: the later parts
    /// of a multi-part operand (a far pointer's selector, BOUND's upper
    /// bound) wrap at 64 KiB with 16-bit addressing.
    #[inline]
    pub fn ea_add(&self, i: &Instruction, ea: u64, k: u64) -> u64 {
        ea.wrapping_add(k) & addr_mask(self, i)
    }

    /// Segment of the memory operand (prefix or default).
    #[inline(always)]
    pub fn mem_seg(&self, i: &Instruction) -> SegReg {
        sreg(i.memory_segment()).unwrap_or(SegReg::Ds)
    }

    /// Linear address of the memory operand for an access of `size` bytes.
    #[inline(always)]
    pub fn mem_lin(&self, i: &Instruction, size: u32, access: SegAccess) -> XResult<u64> {
        let off = self.ea(i);
        self.lin(self.mem_seg(i), off, size as u64, access)
    }

    /// Size in bytes of operand `n`.
    #[inline(always)]
    pub fn op_size(&self, i: &Instruction, n: u32) -> u32 {
        match i.op_kind(n) {
            OpKind::Register => reg_size(i.op_register(n)),
            OpKind::Memory => i.memory_size().size() as u32,
            OpKind::Immediate8 | OpKind::Immediate8_2nd => 1,
            OpKind::Immediate16 | OpKind::Immediate8to16 => 2,
            OpKind::Immediate32 | OpKind::Immediate8to32 => 4,
            _ => 8,
        }
    }

    /// Resolves operand `n` to a location, checking the segment for
    /// `access` when it is in memory.
    #[inline(always)]
    pub fn loc(&self, i: &Instruction, n: u32, size: u32, access: SegAccess) -> XResult<Loc> {
        match i.op_kind(n) {
            OpKind::Register => Ok(Loc::Reg(i.op_register(n))),
            _ => Ok(Loc::Lin(self.mem_lin(i, size, access)?)),
        }
    }

    #[inline(always)]
    pub fn read_loc(&mut self, bus: &mut dyn CpuBus, l: Loc, size: u32) -> XResult<u64> {
        match l {
            Loc::Reg(r) => Ok(self.reg(r)),
            Loc::Lin(a) => self.read_lin_sized(bus, a, size),
        }
    }

    #[inline(always)]
    pub fn write_loc(&mut self, bus: &mut dyn CpuBus, l: Loc, size: u32, v: u64) -> XResult<()> {
        match l {
            Loc::Reg(r) => {
                self.set_reg(r, v);
                Ok(())
            }
            Loc::Lin(a) => self.write_lin_sized(bus, a, size, v),
        }
    }

    /// Reads operand `n` (register, memory or immediate), zero-extended to
    /// 64 bits from `size` bytes (immediates are sign-extended first).
    #[inline(always)]
    pub fn read_op(
        &mut self,
        bus: &mut dyn CpuBus,
        i: &Instruction,
        n: u32,
        size: u32,
    ) -> XResult<u64> {
        match i.op_kind(n) {
            OpKind::Register => Ok(self.reg(i.op_register(n))),
            OpKind::Memory => {
                let a = self.mem_lin(i, size, SegAccess::Read)?;
                self.read_lin_sized(bus, a, size)
            }
            _ => Ok(i.immediate(n) & mask(size)),
        }
    }

    /// Writes operand `n` (register or memory).
    #[inline(always)]
    pub fn write_op(
        &mut self,
        bus: &mut dyn CpuBus,
        i: &Instruction,
        n: u32,
        size: u32,
        v: u64,
    ) -> XResult<()> {
        match i.op_kind(n) {
            OpKind::Register => {
                self.set_reg(i.op_register(n), v);
                Ok(())
            }
            _ => {
                let a = self.mem_lin(i, size, SegAccess::Write)?;
                self.write_lin_sized(bus, a, size, v)
            }
        }
    }

    /// Sets the arithmetic flags in `m` to `f`.
    #[inline(always)]
    pub fn set_flags(&mut self, m: u64, f: u64) {
        self.state.rflags = (self.state.rflags & !m) | (f & m);
    }

    #[inline(always)]
    pub fn flag(&self, f: u64) -> bool {
        self.state.rflags & f != 0
    }
}

/// Mask of the memory operand's address size.
pub fn addr_mask(cpu: &Cpu, i: &Instruction) -> u64 {
    let r = if i.memory_base() != Register::None {
        i.memory_base()
    } else {
        i.memory_index()
    };
    if r == Register::None {
        return match i.memory_displ_size() {
            2 => 0xffff,
            4 => 0xffff_ffff,
            _ if cpu.long64 => u64::MAX,
            _ => 0xffff_ffff,
        };
    }
    mask(reg_size(r))
}
