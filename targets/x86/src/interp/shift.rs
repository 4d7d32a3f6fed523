//! Shifts and rotates with exact flags: SHL/SHR/SAR/ROL/ROR/RCL/RCR,
//! SHLD/SHRD. Where the SDM leaves flags undefined for counts above one,
//! OF follows the count-1 formula and AF is cleared (as QEMU).

use iced_x86::Instruction;

use super::flags::{self, mask, sext, sign};
use super::Cpu;
use crate::bus::CpuBus;
use crate::consts::rflags::{AF, CF, OF, PF, SF, ZF};
use crate::exception::XResult;
use crate::mmu::seg::SegAccess;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Shl,
    Shr,
    Sar,
    Rol,
    Ror,
    Rcl,
    Rcr,
}

/// Computes (result, flags, flag mask) of a shift/rotate by a non-zero
/// masked count `c`.
pub fn compute(kind: Kind, a: u64, c: u32, cf_in: bool, size: u32) -> (u64, u64, u64) {
    let bits = size * 8;
    let m = mask(size);
    let a = a & m;
    let msb = |v: u64| v & sign(size) != 0;
    match kind {
        Kind::Shl => {
            let wide = (a as u128) << c;
            let r = (wide as u64) & m;
            let cf = (wide >> bits) & 1 != 0;
            let mut f = flags::szp(r, size);
            if cf {
                f |= CF;
            }
            if msb(r) != cf {
                f |= OF;
            }
            (r, f, CF | OF | SF | ZF | PF | AF)
        }
        Kind::Shr => {
            let r = if c >= 64 { 0 } else { a >> c };
            let cf = if c > 64 {
                false
            } else {
                (a >> (c - 1)) & 1 != 0
            };
            let mut f = flags::szp(r, size);
            if cf {
                f |= CF;
            }
            if msb(a) {
                f |= OF;
            }
            (r, f, CF | OF | SF | ZF | PF | AF)
        }
        Kind::Sar => {
            let s = sext(a, size) as i64;
            let r = (s >> c.min(63)) as u64 & m;
            let cf = (s >> (c - 1).min(63)) & 1 != 0;
            let mut f = flags::szp(r, size);
            if cf {
                f |= CF;
            }
            (r, f, CF | OF | SF | ZF | PF | AF)
        }
        Kind::Rol => {
            let n = c % bits;
            let r = if n == 0 {
                a
            } else {
                ((a << n) | (a >> (bits - n))) & m
            };
            let cf = r & 1 != 0;
            let mut f = if cf { CF } else { 0 };
            if msb(r) != cf {
                f |= OF;
            }
            (r, f, CF | OF)
        }
        Kind::Ror => {
            let n = c % bits;
            let r = if n == 0 {
                a
            } else {
                ((a >> n) | (a << (bits - n))) & m
            };
            let cf = msb(r);
            let mut f = if cf { CF } else { 0 };
            if msb(r) != (r & (sign(size) >> 1) != 0) {
                f |= OF;
            }
            (r, f, CF | OF)
        }
        Kind::Rcl | Kind::Rcr => {
            let n = if size <= 2 { c % (bits + 1) } else { c };
            if n == 0 {
                return (a, 0, 0);
            }
            // Rotate the (bits+1)-wide value CF:a.
            let w = bits + 1;
            let v = ((cf_in as u128) << bits) | a as u128;
            let wm = (1u128 << w) - 1;
            let rv = if kind == Kind::Rcl {
                ((v << n) | (v >> (w - n))) & wm
            } else {
                ((v >> n) | (v << (w - n))) & wm
            };
            let r = (rv as u64) & m;
            let cf = (rv >> bits) & 1 != 0;
            let mut f = if cf { CF } else { 0 };
            let of = if kind == Kind::Rcl {
                msb(r) != cf
            } else {
                msb(r) != (r & (sign(size) >> 1) != 0)
            };
            if of {
                f |= OF;
            }
            (r, f, CF | OF)
        }
    }
}

pub fn shift(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction, kind: Kind) -> XResult<()> {
    let size = cpu.op_size(i, 0);
    let cmask = if size == 8 { 63 } else { 31 };
    let c = (cpu.read_op(bus, i, 1, 1)? as u32) & cmask;
    let loc = cpu.loc(i, 0, size, SegAccess::Write)?;
    let a = cpu.read_loc(bus, loc, size)?;
    if c == 0 {
        // A 32-bit register destination is still written (zero-extended).
        if size == 4 {
            if let super::operand::Loc::Reg(r) = loc {
                cpu.set_reg(r, a);
            }
        }
        return Ok(());
    }
    let (r, f, fm) = compute(kind, a, c, cpu.flag(CF), size);
    cpu.write_loc(bus, loc, size, r)?;
    cpu.set_flags(fm, f);
    Ok(())
}

fn double_shift(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction, left: bool) -> XResult<()> {
    let size = cpu.op_size(i, 0);
    let bits = size * 8;
    let cmask = if size == 8 { 63 } else { 31 };
    let c = (cpu.read_op(bus, i, 2, 1)? as u32) & cmask;
    let loc = cpu.loc(i, 0, size, SegAccess::Write)?;
    let a = cpu.read_loc(bus, loc, size)?;
    let b = cpu.reg(i.op1_register()) & mask(size);
    if c == 0 {
        // A 32-bit register destination is still written (zero-extended).
        if size == 4 {
            if let super::operand::Loc::Reg(r) = loc {
                cpu.set_reg(r, a);
            }
        }
        return Ok(());
    }
    let m = mask(size);
    let (r, cf) = if size == 8 {
        if left {
            let w = ((a as u128) << 64) | b as u128;
            (((w << c) >> 64) as u64, (a >> (64 - c)) & 1 != 0)
        } else {
            let w = ((b as u128) << 64) | a as u128;
            ((w >> c) as u64, (a >> (c - 1)) & 1 != 0)
        }
    } else {
        // a:b:a, so 16-bit counts above 16 shift `a` in again (as Intel).
        let wide = ((a as u128) << (2 * bits)) | ((b as u128) << bits) | a as u128;
        if left {
            (
                (((wide << c) >> (2 * bits)) as u64) & m,
                (wide >> (3 * bits - c)) & 1 != 0,
            )
        } else {
            (((wide >> c) as u64) & m, (wide >> (c - 1)) & 1 != 0)
        }
    };
    let mut f = flags::szp(r, size);
    if cf {
        f |= CF;
    }
    if (r ^ a) & sign(size) != 0 {
        f |= OF;
    }
    cpu.write_loc(bus, loc, size, r)?;
    cpu.set_flags(CF | OF | SF | ZF | PF | AF, f);
    Ok(())
}

pub fn shld(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    double_shift(cpu, bus, i, true)
}
pub fn shrd(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    double_shift(cpu, bus, i, false)
}
