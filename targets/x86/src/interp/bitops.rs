//! Bit operations: BT/BTS/BTR/BTC, BSF/BSR, LZCNT (ABM), POPCNT (TZCNT is
//! in [`super::bmi`]).

use iced_x86::{Instruction, OpKind};

use super::flags::sext;
use super::operand::Loc;
use super::Cpu;
use crate::bus::CpuBus;
use crate::consts::rflags::{AF, CF, OF, PF, SF, ZF};
use crate::exception::XResult;
use crate::mmu::seg::SegAccess;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum BtOp {
    Test,
    Set,
    Reset,
    Complement,
}

pub fn bt(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction, op: BtOp) -> XResult<()> {
    let size = cpu.op_size(i, 0);
    let bits = (size * 8) as u64;
    let access = if op == BtOp::Test {
        SegAccess::Read
    } else {
        SegAccess::Write
    };
    let (loc, bit) = if i.op1_kind() == OpKind::Register && i.op0_kind() == OpKind::Memory {
        // Register bit offset: signed, may address outside the operand.
        let off = sext(cpu.reg(i.op1_register()), size) as i64;
        let disp = (off >> (bits.trailing_zeros())) * size as i64;
        let ea = cpu.ea(i).wrapping_add(disp as u64);
        let ea = ea & super::operand::addr_mask(cpu, i);
        let lin = cpu.lin(cpu.mem_seg(i), ea, size as u64, access)?;
        (Loc::Lin(lin), (off as u64) & (bits - 1))
    } else {
        let b = cpu.read_op(bus, i, 1, size)? & (bits - 1);
        (cpu.loc(i, 0, size, access)?, b)
    };
    let v = cpu.read_loc(bus, loc, size)?;
    let cf = (v >> bit) & 1 != 0;
    let nv = match op {
        BtOp::Test => v,
        BtOp::Set => v | (1 << bit),
        BtOp::Reset => v & !(1 << bit),
        BtOp::Complement => v ^ (1 << bit),
    };
    if op != BtOp::Test {
        cpu.write_loc(bus, loc, size, nv)?;
    }
    cpu.set_flags(CF, if cf { CF } else { 0 });
    Ok(())
}

/// Address-size mask of the memory operand.
pub fn bsf(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let size = cpu.op_size(i, 0);
    let s = cpu.read_op(bus, i, 1, size)?;
    if s == 0 {
        cpu.state.rflags |= ZF;
    } else {
        cpu.set_reg(i.op0_register(), s.trailing_zeros() as u64);
        cpu.state.rflags &= !ZF;
    }
    Ok(())
}

pub fn bsr(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let size = cpu.op_size(i, 0);
    let s = cpu.read_op(bus, i, 1, size)?;
    if s == 0 {
        cpu.state.rflags |= ZF;
    } else {
        cpu.set_reg(i.op0_register(), 63 - s.leading_zeros() as u64);
        cpu.state.rflags &= !ZF;
    }
    Ok(())
}

pub fn lzcnt(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let size = cpu.op_size(i, 0);
    let s = cpu.read_op(bus, i, 1, size)?;
    let r = if s == 0 {
        size as u64 * 8
    } else {
        s.leading_zeros() as u64 - (64 - size as u64 * 8)
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

pub fn popcnt(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let size = cpu.op_size(i, 0);
    let s = cpu.read_op(bus, i, 1, size)?;
    cpu.set_reg(i.op0_register(), s.count_ones() as u64);
    cpu.set_flags(CF | OF | SF | ZF | AF | PF, if s == 0 { ZF } else { 0 });
    Ok(())
}
