//! Logical operations: AND/OR/XOR/TEST/NOT.

use iced_x86::Instruction;

use super::flags::{self, ARITH};
use super::Cpu;
use crate::bus::CpuBus;
use crate::exception::XResult;
use crate::mmu::seg::SegAccess;

#[inline(always)]
fn logic_op(
    cpu: &mut Cpu,
    bus: &mut dyn CpuBus,
    i: &Instruction,
    store: bool,
    f: impl Fn(u64, u64) -> u64,
) -> XResult<()> {
    let size = cpu.op_size(i, 0);
    let loc = cpu.loc(
        i,
        0,
        size,
        if store {
            SegAccess::Write
        } else {
            SegAccess::Read
        },
    )?;
    let a = cpu.read_loc(bus, loc, size)?;
    let b = cpu.read_op(bus, i, 1, size)?;
    let r = f(a, b) & flags::mask(size);
    if store {
        cpu.write_loc(bus, loc, size, r)?;
    }
    cpu.set_flags(ARITH, flags::logic(r, size));
    Ok(())
}

pub fn and(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    logic_op(cpu, bus, i, true, |a, b| a & b)
}
pub fn or(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    logic_op(cpu, bus, i, true, |a, b| a | b)
}
pub fn xor(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    logic_op(cpu, bus, i, true, |a, b| a ^ b)
}
pub fn test(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    logic_op(cpu, bus, i, false, |a, b| a & b)
}
pub fn not(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let size = cpu.op_size(i, 0);
    let loc = cpu.loc(i, 0, size, SegAccess::Write)?;
    let a = cpu.read_loc(bus, loc, size)?;
    cpu.write_loc(bus, loc, size, !a & flags::mask(size))
}
