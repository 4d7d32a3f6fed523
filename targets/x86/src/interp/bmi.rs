//! BMI1 (ANDN, BEXTR, BLSI, BLSMSK, BLSR, TZCNT) and BMI2 (BZHI, MULX,
//! PDEP, PEXT, RORX, SARX, SHLX, SHRX): VEX-encoded GPR instructions.

use iced_x86::{Instruction, Mnemonic as M};

use super::flags::{self, mask};
use super::operand::reg_size;
use super::Cpu;
use crate::bus::CpuBus;
use crate::consts::rflags::{AF, CF, OF, PF, SF, ZF};
use crate::exception::XResult;
use crate::state::gpr::RDX;

/// Dispatches a BMI instruction; `None` if `i` is not one.
pub fn exec(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> Option<XResult<()>> {
    Some(match i.mnemonic() {
        M::Tzcnt => tzcnt(cpu, bus, i),
        M::Andn => andn(cpu, bus, i),
        M::Bextr => bextr(cpu, bus, i),
        M::Blsi | M::Blsmsk | M::Blsr => bls(cpu, bus, i),
        M::Bzhi => bzhi(cpu, bus, i),
        M::Mulx => mulx(cpu, bus, i),
        M::Pdep | M::Pext => pdep_pext(cpu, bus, i),
        M::Rorx | M::Sarx | M::Shlx | M::Shrx => shiftx(cpu, bus, i),
        _ => return None,
    })
}

fn set_zs(cpu: &mut Cpu, r: u64, size: u32, cf: bool) {
    let mut f = 0;
    if r & mask(size) == 0 {
        f |= ZF;
    }
    if r & flags::sign(size) != 0 {
        f |= SF;
    }
    if cf {
        f |= CF;
    }
    cpu.set_flags(CF | ZF | SF | OF | AF | PF, f);
}

pub fn tzcnt(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let size = cpu.op_size(i, 0);
    let s = cpu.read_op(bus, i, 1, size)? & mask(size);
    let r = if s == 0 {
        size as u64 * 8
    } else {
        s.trailing_zeros() as u64
    };
    cpu.set_reg(i.op0_register(), r);
    let mut f = 0;
    if s == 0 {
        f |= CF;
    }
    if r == 0 {
        f |= ZF;
    }
    cpu.set_flags(CF | ZF, f);
    Ok(())
}

fn andn(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let size = reg_size(i.op0_register());
    let a = cpu.reg(i.op1_register());
    let b = cpu.read_op(bus, i, 2, size)?;
    let r = !a & b & mask(size);
    cpu.set_reg(i.op0_register(), r);
    set_zs(cpu, r, size, false);
    Ok(())
}

fn bextr(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let size = reg_size(i.op0_register());
    let src = cpu.read_op(bus, i, 1, size)? & mask(size);
    let ctl = cpu.reg(i.op2_register());
    let start = (ctl & 0xff) as u32;
    let len = ((ctl >> 8) & 0xff) as u32;
    let bits = size * 8;
    let r = if start >= bits {
        0
    } else {
        let v = src >> start;
        if len >= 64 {
            v
        } else {
            v & ((1u64 << len) - 1)
        }
    };
    cpu.set_reg(i.op0_register(), r);
    set_zs(cpu, r, size, false);
    cpu.set_flags(SF, 0);
    Ok(())
}

fn bls(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let size = reg_size(i.op0_register());
    let s = cpu.read_op(bus, i, 1, size)? & mask(size);
    let m1 = s.wrapping_sub(1) & mask(size);
    let (r, cf) = match i.mnemonic() {
        M::Blsi => (s & s.wrapping_neg() & mask(size), s != 0),
        M::Blsmsk => ((s ^ m1) & mask(size), s == 0),
        _ => (s & m1, s == 0),
    };
    cpu.set_reg(i.op0_register(), r);
    set_zs(cpu, r, size, cf);
    Ok(())
}

fn bzhi(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let size = reg_size(i.op0_register());
    let src = cpu.read_op(bus, i, 1, size)? & mask(size);
    let n = (cpu.reg(i.op2_register()) & 0xff) as u32;
    let bits = size * 8;
    let (r, cf) = if n < bits {
        (src & ((1u64 << n) - 1), false)
    } else {
        (src, true)
    };
    cpu.set_reg(i.op0_register(), r);
    set_zs(cpu, r, size, cf);
    Ok(())
}

fn mulx(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let size = reg_size(i.op0_register());
    let a = cpu.gpr_sized(RDX, size) as u128;
    let b = (cpu.read_op(bus, i, 2, size)? & mask(size)) as u128;
    let p = a * b;
    let bits = size * 8;
    let lo = (p as u64) & mask(size);
    let hi = ((p >> bits) as u64) & mask(size);
    // The low half first, so that equal destinations end with the high half.
    cpu.set_reg(i.op1_register(), lo);
    cpu.set_reg(i.op0_register(), hi);
    Ok(())
}

fn pdep_pext(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let size = reg_size(i.op0_register());
    let src = cpu.reg(i.op1_register()) & mask(size);
    let m = cpu.read_op(bus, i, 2, size)? & mask(size);
    let mut r = 0u64;
    let mut k = 0;
    for b in 0..size * 8 {
        if m >> b & 1 != 0 {
            if i.mnemonic() == M::Pdep {
                r |= ((src >> k) & 1) << b;
            } else {
                r |= ((src >> b) & 1) << k;
            }
            k += 1;
        }
    }
    cpu.set_reg(i.op0_register(), r);
    Ok(())
}

fn shiftx(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let size = reg_size(i.op0_register());
    let bits = size * 8;
    let src = cpu.read_op(bus, i, 1, size)? & mask(size);
    let c = if i.mnemonic() == M::Rorx {
        (i.immediate(2) as u32) & (bits - 1)
    } else {
        (cpu.reg(i.op2_register()) as u32) & (bits - 1)
    };
    let r = match i.mnemonic() {
        M::Rorx => {
            if c == 0 {
                src
            } else {
                ((src >> c) | (src << (bits - c))) & mask(size)
            }
        }
        M::Sarx => ((flags::sext(src, size) as i64) >> c) as u64 & mask(size),
        M::Shlx => (src << c) & mask(size),
        _ => src >> c,
    };
    cpu.set_reg(i.op0_register(), r);
    Ok(())
}
