//! MUL/IMUL/DIV/IDIV. Undefined flags: SF/ZF/PF from the low half of the
//! result, AF cleared (as QEMU does); DIV/IDIV leave the flags alone.

use iced_x86::{Instruction, OpKind};

use super::flags::{self, mask, sext};
use super::Cpu;
use crate::bus::CpuBus;
use crate::consts::rflags::{AF, CF, OF, PF, SF, ZF};
use crate::exception::{Exception, XResult};
use crate::state::gpr::{RAX, RDX};

fn set_mul_flags(cpu: &mut Cpu, lo: u64, size: u32, overflow: bool) {
    let mut f = flags::szp(lo, size);
    if overflow {
        f |= CF | OF;
    }
    cpu.set_flags(CF | OF | SF | ZF | PF | AF, f);
}

/// Writes a double-width result to AX / DX:AX / EDX:EAX / RDX:RAX.
fn write_wide(cpu: &mut Cpu, size: u32, lo: u64, hi: u64) {
    if size == 1 {
        cpu.set_gpr_sized(RAX, 2, (lo & 0xff) | ((hi & 0xff) << 8));
    } else {
        cpu.set_gpr_sized(RAX, size, lo);
        cpu.set_gpr_sized(RDX, size, hi);
    }
}

pub fn mul(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let size = cpu.op_size(i, 0);
    let src = cpu.read_op(bus, i, 0, size)?;
    let a = cpu.gpr_sized(RAX, size);
    let p = a as u128 * src as u128;
    let bits = size * 8;
    let lo = (p as u64) & mask(size);
    let hi = ((p >> bits) as u64) & mask(size);
    write_wide(cpu, size, lo, hi);
    set_mul_flags(cpu, lo, size, hi != 0);
    Ok(())
}

pub fn imul(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let size = cpu.op_size(i, 0);
    let bits = size * 8;
    match i.op_count() {
        1 => {
            let src = sext(cpu.read_op(bus, i, 0, size)?, size) as i64;
            let a = sext(cpu.gpr_sized(RAX, size), size) as i64;
            let p = a as i128 * src as i128;
            let lo = (p as u64) & mask(size);
            let hi = ((p >> bits) as u64) & mask(size);
            write_wide(cpu, size, lo, hi);
            set_mul_flags(cpu, lo, size, p != sext(lo, size) as i64 as i128);
        }
        n => {
            let (x, y) = if n == 2 {
                (cpu.read_op(bus, i, 0, size)?, cpu.read_op(bus, i, 1, size)?)
            } else {
                let imm = if i.op2_kind() == OpKind::Register {
                    0
                } else {
                    i.immediate(2)
                };
                (cpu.read_op(bus, i, 1, size)?, imm & mask(size))
            };
            let p = sext(x, size) as i64 as i128 * sext(y, size) as i64 as i128;
            let lo = (p as u64) & mask(size);
            cpu.set_reg(i.op0_register(), lo);
            set_mul_flags(cpu, lo, size, p != sext(lo, size) as i64 as i128);
        }
    }
    Ok(())
}

/// Reads the double-width dividend.
fn dividend(cpu: &Cpu, size: u32) -> u128 {
    if size == 1 {
        cpu.gpr_sized(RAX, 2) as u128
    } else {
        ((cpu.gpr_sized(RDX, size) as u128) << (size * 8)) | cpu.gpr_sized(RAX, size) as u128
    }
}

fn write_divres(cpu: &mut Cpu, size: u32, q: u64, r: u64) {
    if size == 1 {
        cpu.set_gpr_sized(RAX, 2, (q & 0xff) | ((r & 0xff) << 8));
    } else {
        cpu.set_gpr_sized(RAX, size, q);
        cpu.set_gpr_sized(RDX, size, r);
    }
}

pub fn div(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let size = cpu.op_size(i, 0);
    let d = cpu.read_op(bus, i, 0, size)? as u128;
    if d == 0 {
        return Err(Exception::de());
    }
    let n = dividend(cpu, size);
    let q = n / d;
    if q > mask(size) as u128 {
        return Err(Exception::de());
    }
    write_divres(cpu, size, q as u64, (n % d) as u64);
    Ok(())
}

pub fn idiv(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let size = cpu.op_size(i, 0);
    let bits = size * 8;
    let d = sext(cpu.read_op(bus, i, 0, size)?, size) as i64 as i128;
    if d == 0 {
        return Err(Exception::de());
    }
    let raw = dividend(cpu, size);
    // Sign-extend the 2*bits-wide dividend.
    let sh = 128 - 2 * bits;
    let n = ((raw << sh) as i128) >> sh;
    let q = n.wrapping_div(d);
    let r = n.wrapping_rem(d);
    let max = (1i128 << (bits - 1)) - 1;
    let min = -(1i128 << (bits - 1));
    if q > max || q < min || (n == i128::MIN && d == -1) {
        return Err(Exception::de());
    }
    write_divres(cpu, size, (q as u64) & mask(size), (r as u64) & mask(size));
    Ok(())
}
