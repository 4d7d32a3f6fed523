//! Specialized handlers for the most frequent instruction forms (register
//! and immediate operands), chosen once at decode time by [`lookup`].
//! Everything else goes through the generic [`super::exec::execute`].

use iced_x86::{Instruction, Mnemonic as M, OpKind};

use super::exec::{execute, Handler};
use super::flags::{self, mask, ARITH};
use super::operand::reg_size;
use super::Cpu;
use crate::bus::CpuBus;
use crate::consts::rflags::CF;
use crate::exception::XResult;
use crate::mmu::seg::SegAccess;

const ADD: u8 = 0;
const SUB: u8 = 1;
const CMP: u8 = 2;
const AND: u8 = 3;
const OR: u8 = 4;
const XOR: u8 = 5;
const TEST: u8 = 6;
const ADC: u8 = 7;
const SBB: u8 = 8;

#[inline(always)]
fn alu<const OP: u8>(cpu: &mut Cpu, i: &Instruction, b: u64) {
    let r0 = i.op0_register();
    let size = reg_size(r0);
    let a = cpu.reg(r0);
    let cf = cpu.state.rflags & CF;
    let (r, f) = match OP {
        ADD | CMP if OP == ADD => flags::add(a, b, 0, size),
        SUB | CMP => flags::sub(a, b, 0, size),
        ADC => flags::add(a, b, cf, size),
        SBB => flags::sub(a, b, cf, size),
        AND | TEST => {
            let r = a & b & mask(size);
            (r, flags::logic(r, size))
        }
        OR => {
            let r = (a | b) & mask(size);
            (r, flags::logic(r, size))
        }
        _ => {
            let r = (a ^ b) & mask(size);
            (r, flags::logic(r, size))
        }
    };
    if OP != CMP && OP != TEST {
        cpu.set_reg(r0, r);
    }
    cpu.set_flags(ARITH, f);
}

/// `alu` without the flags (their value is dead: see [`dead_flag_variant`]).
#[inline(always)]
fn alu_nf<const OP: u8>(cpu: &mut Cpu, i: &Instruction, b: u64) {
    let r0 = i.op0_register();
    let a = cpu.reg(r0);
    let r = match OP {
        ADD => a.wrapping_add(b),
        SUB => a.wrapping_sub(b),
        AND => a & b,
        OR => a | b,
        _ => a ^ b,
    };
    cpu.set_reg(r0, r & mask(reg_size(r0)));
}

fn alu_rr_nf<const OP: u8>(cpu: &mut Cpu, _bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let b = cpu.reg(i.op1_register());
    alu_nf::<OP>(cpu, i, b);
    Ok(())
}

fn alu_ri_nf<const OP: u8>(cpu: &mut Cpu, _bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let b = i.immediate(1) & mask(reg_size(i.op0_register()));
    alu_nf::<OP>(cpu, i, b);
    Ok(())
}

fn nop(_cpu: &mut Cpu, _bus: &mut dyn CpuBus, _i: &Instruction) -> XResult<()> {
    Ok(())
}

fn incdec_nf<const DEC: bool>(
    cpu: &mut Cpu,
    _bus: &mut dyn CpuBus,
    i: &Instruction,
) -> XResult<()> {
    let r0 = i.op0_register();
    let a = cpu.reg(r0);
    let r = if DEC {
        a.wrapping_sub(1)
    } else {
        a.wrapping_add(1)
    };
    cpu.set_reg(r0, r & mask(reg_size(r0)));
    Ok(())
}

/// The instruction cannot fault and touches only registers (and flags):
/// flags it writes are unobservable if a later pure instruction of the
/// same block overwrites them before anything reads them.
pub fn is_pure(i: &Instruction) -> bool {
    let two = i.op_count() == 2 && is_gpr(i, 0);
    let rr = two && is_gpr(i, 1);
    let ri = two && is_imm(i, 1);
    match i.mnemonic() {
        M::Add | M::Sub | M::And | M::Or | M::Xor | M::Cmp | M::Test | M::Mov => rr || ri,
        M::Inc | M::Dec => i.op_count() == 1 && is_gpr(i, 0),
        M::Lea | M::Nop => true,
        _ => false,
    }
}

/// A handler that skips the flag computation of a pure instruction.
pub fn dead_flag_variant(i: &Instruction) -> Option<Handler> {
    let two = i.op_count() == 2 && is_gpr(i, 0);
    let rr = two && is_gpr(i, 1);
    let ri = two && is_imm(i, 1);
    macro_rules! pick {
        ($op:expr) => {
            if rr {
                Some(alu_rr_nf::<{ $op }>)
            } else if ri {
                Some(alu_ri_nf::<{ $op }>)
            } else {
                None
            }
        };
    }
    match i.mnemonic() {
        M::Add => pick!(ADD),
        M::Sub => pick!(SUB),
        M::And => pick!(AND),
        M::Or => pick!(OR),
        M::Xor => pick!(XOR),
        M::Cmp | M::Test if rr || ri => Some(nop),
        M::Inc if i.op_count() == 1 && is_gpr(i, 0) => Some(incdec_nf::<false>),
        M::Dec if i.op_count() == 1 && is_gpr(i, 0) => Some(incdec_nf::<true>),
        _ => None,
    }
}

fn alu_rr<const OP: u8>(cpu: &mut Cpu, _bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let b = cpu.reg(i.op1_register());
    alu::<OP>(cpu, i, b);
    Ok(())
}

fn alu_ri<const OP: u8>(cpu: &mut Cpu, _bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let b = i.immediate(1) & mask(reg_size(i.op0_register()));
    alu::<OP>(cpu, i, b);
    Ok(())
}

fn mov_rr(cpu: &mut Cpu, _bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let v = cpu.reg(i.op1_register());
    cpu.set_reg(i.op0_register(), v);
    Ok(())
}

fn mov_ri(cpu: &mut Cpu, _bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let v = i.immediate(1);
    cpu.set_reg(i.op0_register(), v);
    Ok(())
}

fn mov_mr(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let size = reg_size(i.op1_register());
    let v = cpu.reg(i.op1_register());
    let lin = cpu.mem_lin(i, size, SegAccess::Write)?;
    cpu.write_lin_sized(bus, lin, size, v)
}

fn mov_mi(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let size = i.memory_size().size() as u32;
    let lin = cpu.mem_lin(i, size, SegAccess::Write)?;
    cpu.write_lin_sized(bus, lin, size, i.immediate(1))
}

fn mov_rm(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let size = reg_size(i.op0_register());
    let lin = cpu.mem_lin(i, size, SegAccess::Read)?;
    let v = cpu.read_lin_sized(bus, lin, size)?;
    cpu.set_reg(i.op0_register(), v);
    Ok(())
}

fn movzx_rm(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let size = i.memory_size().size() as u32;
    let lin = cpu.mem_lin(i, size, SegAccess::Read)?;
    let v = cpu.read_lin_sized(bus, lin, size)?;
    cpu.set_reg(i.op0_register(), v);
    Ok(())
}

fn shift_ri<const K: u8>(cpu: &mut Cpu, _bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    use super::shift::{compute, Kind};
    let r0 = i.op0_register();
    let size = reg_size(r0);
    let cmask = if size == 8 { 63 } else { 31 };
    let c = if i.op1_kind() == OpKind::Register {
        cpu.reg(i.op1_register())
    } else {
        i.immediate(1)
    } as u32
        & cmask;
    let a = cpu.reg(r0);
    if c == 0 {
        cpu.set_reg(r0, a);
        return Ok(());
    }
    let kind = match K {
        0 => Kind::Shl,
        1 => Kind::Shr,
        _ => Kind::Sar,
    };
    let (r, f, fm) = compute(kind, a, c, false, size);
    cpu.set_reg(r0, r);
    cpu.set_flags(fm, f);
    Ok(())
}

fn incdec_r<const DEC: bool>(cpu: &mut Cpu, _bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let r0 = i.op0_register();
    let size = reg_size(r0);
    let a = cpu.reg(r0);
    let (r, f) = if DEC {
        flags::sub(a, 1, 0, size)
    } else {
        flags::add(a, 1, 0, size)
    };
    cpu.set_reg(r0, r);
    cpu.set_flags(ARITH & !CF, f);
    Ok(())
}

fn jcc(cpu: &mut Cpu, _bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    super::control::jcc(cpu, i)
}

fn lea(cpu: &mut Cpu, _bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    super::data::lea(cpu, i)
}

fn push_r(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let v = cpu.reg(i.op0_register());
    cpu.push(bus, v, reg_size(i.op0_register()))
}

fn pop_r(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let v = cpu.pop(bus, reg_size(i.op0_register()))?;
    cpu.set_reg(i.op0_register(), v);
    Ok(())
}

fn is_gpr(i: &Instruction, n: u32) -> bool {
    i.op_kind(n) == OpKind::Register && (1..=68).contains(&(i.op_register(n) as u32))
}

fn is_imm(i: &Instruction, n: u32) -> bool {
    !matches!(
        i.op_kind(n),
        OpKind::Register
            | OpKind::Memory
            | OpKind::NearBranch16
            | OpKind::NearBranch32
            | OpKind::NearBranch64
            | OpKind::FarBranch16
            | OpKind::FarBranch32
    ) && (i.op_kind(n) as u32) < OpKind::MemorySegSI as u32
}

/// Picks the handler of a decoded instruction.
pub fn lookup(i: &Instruction) -> Handler {
    match super::locked::lock_kind(i) {
        Some(true) => return super::locked::locked,
        Some(false) => return super::locked::lock_ud,
        None => {}
    }
    let m = i.mnemonic();
    let two = i.op_count() == 2 && is_gpr(i, 0);
    let rr = two && is_gpr(i, 1);
    let ri = two && is_imm(i, 1);
    macro_rules! alu_pick {
        ($op:expr) => {
            if rr {
                return alu_rr::<{ $op }>;
            } else if ri {
                return alu_ri::<{ $op }>;
            }
        };
    }
    match m {
        M::Add => alu_pick!(ADD),
        M::Sub => alu_pick!(SUB),
        M::Cmp => alu_pick!(CMP),
        M::And => alu_pick!(AND),
        M::Or => alu_pick!(OR),
        M::Xor => alu_pick!(XOR),
        M::Test => alu_pick!(TEST),
        M::Adc => alu_pick!(ADC),
        M::Sbb => alu_pick!(SBB),
        M::Mov if rr => return mov_rr,
        M::Mov if ri => return mov_ri,
        M::Mov if i.op_count() == 2 && i.op0_kind() == OpKind::Memory && is_gpr(i, 1) => {
            return mov_mr
        }
        M::Mov if i.op_count() == 2 && i.op0_kind() == OpKind::Memory && is_imm(i, 1) => {
            return mov_mi
        }
        M::Mov if two && i.op1_kind() == OpKind::Memory => return mov_rm,
        M::Movzx if two && i.op1_kind() == OpKind::Memory => return movzx_rm,
        M::Inc if i.op_count() == 1 && is_gpr(i, 0) => return incdec_r::<false>,
        M::Dec if i.op_count() == 1 && is_gpr(i, 0) => return incdec_r::<true>,
        M::Ja
        | M::Jae
        | M::Jb
        | M::Jbe
        | M::Je
        | M::Jg
        | M::Jge
        | M::Jl
        | M::Jle
        | M::Jne
        | M::Jno
        | M::Jnp
        | M::Jns
        | M::Jo
        | M::Jp
        | M::Js => return jcc,
        M::Lea => return lea,
        M::Shl | M::Sal if i.op_count() == 2 && is_gpr(i, 0) => return shift_ri::<0>,
        M::Shr if i.op_count() == 2 && is_gpr(i, 0) => return shift_ri::<1>,
        M::Sar if i.op_count() == 2 && is_gpr(i, 0) => return shift_ri::<2>,
        M::Push
            if is_gpr(i, 0)
                && reg_size(i.op0_register()) == i.stack_pointer_increment().unsigned_abs() =>
        {
            return push_r
        }
        M::Pop
            if is_gpr(i, 0)
                && reg_size(i.op0_register()) == i.stack_pointer_increment().unsigned_abs() =>
        {
            return pop_r
        }
        _ => {}
    }
    execute
}
