//! Integer arithmetic: ADD/ADC/SUB/SBB/CMP/INC/DEC/NEG, XADD, CMPXCHG*.

use iced_x86::Instruction;

use super::flags::{self, mask, ARITH};
use super::Cpu;
use crate::bus::CpuBus;
use crate::consts::rflags::{CF, ZF};
use crate::exception::{Exception, XResult};
use crate::mmu::seg::SegAccess;
use crate::state::gpr::{RAX, RBX, RCX, RDX};

/// `dst = f(dst, src)` with flags; `store` false for CMP.
#[inline(always)]
fn binop(
    cpu: &mut Cpu,
    bus: &mut dyn CpuBus,
    i: &Instruction,
    store: bool,
    f: impl Fn(u64, u64, u64, u32) -> (u64, u64),
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
    let cf = (cpu.state.rflags & CF != 0) as u64;
    let (r, fl) = f(a, b, cf, size);
    if store {
        cpu.write_loc(bus, loc, size, r)?;
    }
    cpu.set_flags(ARITH, fl);
    Ok(())
}

pub fn add(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    binop(cpu, bus, i, true, |a, b, _, s| flags::add(a, b, 0, s))
}
pub fn adc(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    binop(cpu, bus, i, true, flags::add)
}
pub fn sub(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    binop(cpu, bus, i, true, |a, b, _, s| flags::sub(a, b, 0, s))
}
pub fn sbb(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    binop(cpu, bus, i, true, flags::sub)
}
pub fn cmp(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    binop(cpu, bus, i, false, |a, b, _, s| flags::sub(a, b, 0, s))
}

/// `dst = f(dst)` with flags in `fmask`.
#[inline(always)]
pub(crate) fn unop(
    cpu: &mut Cpu,
    bus: &mut dyn CpuBus,
    i: &Instruction,
    fmask: u64,
    f: impl Fn(u64, u32) -> (u64, u64),
) -> XResult<()> {
    let size = cpu.op_size(i, 0);
    let loc = cpu.loc(i, 0, size, SegAccess::Write)?;
    let a = cpu.read_loc(bus, loc, size)?;
    let (r, fl) = f(a, size);
    cpu.write_loc(bus, loc, size, r)?;
    cpu.set_flags(fmask, fl);
    Ok(())
}

pub fn inc(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    unop(cpu, bus, i, ARITH & !CF, |a, s| flags::add(a, 1, 0, s))
}
pub fn dec(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    unop(cpu, bus, i, ARITH & !CF, |a, s| flags::sub(a, 1, 0, s))
}
pub fn neg(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    unop(cpu, bus, i, ARITH, |a, s| flags::sub(0, a, 0, s))
}

pub fn xadd(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let size = cpu.op_size(i, 0);
    let loc = cpu.loc(i, 0, size, SegAccess::Write)?;
    let d = cpu.read_loc(bus, loc, size)?;
    let s = cpu.reg(i.op1_register());
    let (r, fl) = flags::add(d, s, 0, size);
    // Source register first gets the old destination, then the sum lands
    // in the destination (XADD reg, reg with the same register ends = sum).
    if let super::operand::Loc::Lin(_) = loc {
        cpu.write_loc(bus, loc, size, r)?;
        cpu.set_reg(i.op1_register(), d);
    } else {
        cpu.set_reg(i.op1_register(), d);
        cpu.write_loc(bus, loc, size, r)?;
    }
    cpu.set_flags(ARITH, fl);
    Ok(())
}

pub fn cmpxchg(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let size = cpu.op_size(i, 0);
    let loc = cpu.loc(i, 0, size, SegAccess::Write)?;
    let d = cpu.read_loc(bus, loc, size)?;
    let acc = cpu.gpr_sized(RAX, size);
    let (_, fl) = flags::sub(acc, d, 0, size);
    if acc == d {
        let s = cpu.reg(i.op1_register());
        cpu.write_loc(bus, loc, size, s)?;
    } else {
        // The processor writes the old value back (locked cycle): fault
        // as that write would, without storing (another agent's store in
        // between must not be undone).
        if let super::operand::Loc::Lin(a) = loc {
            cpu.mmu
                .probe_write(&cpu.state, bus, a, size as usize, cpu.user)?;
        }
        cpu.set_gpr_sized(RAX, size, d);
    }
    cpu.set_flags(ARITH, fl);
    Ok(())
}

pub fn cmpxchg8b(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let a = cpu.mem_lin(i, 8, SegAccess::Write)?;
    let m = cpu.read_lin_sized(bus, a, 8)?;
    let cmp = (cpu.gpr_sized(RDX, 4) << 32) | cpu.gpr_sized(RAX, 4);
    if m == cmp {
        let n = (cpu.gpr_sized(RCX, 4) << 32) | cpu.gpr_sized(RBX, 4);
        cpu.write_lin_sized(bus, a, 8, n)?;
        cpu.state.rflags |= ZF;
    } else {
        cpu.mmu.probe_write(&cpu.state, bus, a, 8, cpu.user)?;
        cpu.set_gpr_sized(RAX, 4, m & 0xffff_ffff);
        cpu.set_gpr_sized(RDX, 4, m >> 32);
        cpu.state.rflags &= !ZF;
    }
    Ok(())
}

pub fn cmpxchg16b(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let a = cpu.mem_lin(i, 16, SegAccess::Write)?;
    if a & 15 != 0 {
        return Err(Exception::gp0());
    }
    let g = &cpu.state.gpr;
    let cmp = ((g[RDX] as u128) << 64) | g[RAX] as u128;
    if cpu.lock != super::locked::LockState::Off {
        let n = ((g[RCX] as u128) << 64) | g[RBX] as u128;
        match cpu.locked_cmpxchg16(bus, a, cmp, n)? {
            Ok(()) => cpu.state.rflags |= ZF,
            Err(m) => {
                cpu.state.gpr[RAX] = m as u64;
                cpu.state.gpr[RDX] = (m >> 64) as u64;
                cpu.state.rflags &= !ZF;
            }
        }
        return Ok(());
    }
    let st = &cpu.state;
    let m = cpu.mmu.read_u128(st, bus, a, cpu.user)?;
    if m == cmp {
        let n = ((g[RCX] as u128) << 64) | g[RBX] as u128;
        cpu.mmu.write_u128(&cpu.state, bus, a, n, cpu.user)?;
        cpu.state.rflags |= ZF;
    } else {
        cpu.mmu.probe_write(&cpu.state, bus, a, 16, cpu.user)?;
        cpu.state.gpr[RAX] = m as u64;
        cpu.state.gpr[RDX] = (m >> 64) as u64;
        cpu.state.rflags &= !ZF;
    }
    Ok(())
}

#[allow(dead_code)]
pub(crate) fn mask_of(size: u32) -> u64 {
    mask(size)
}
