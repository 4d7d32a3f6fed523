//! Data movement: MOV (GPR, segment, control/debug registers), MOVZX/MOVSX,
//! LEA, XCHG, BSWAP, MOVBE, CBW family, LAHF/SAHF, XLAT, CMOVcc, SETcc and
//! the flag instructions.

use iced_x86::{Instruction, Mnemonic, OpKind, Register};

use super::flags::{self, cc_of, mask, sext};
use super::operand::{reg_size, sreg};
use super::Cpu;
use crate::bus::CpuBus;
use crate::consts::rflags::{AF, CF, DF, PF, SF, ZF};
use crate::exception::XResult;
use crate::mmu::seg::SegAccess;
use crate::state::gpr::{RAX, RBX, RDX};
use crate::SegReg;

#[inline]
fn is_crdr(r: Register) -> bool {
    let n = r as u32;
    n.wrapping_sub(Register::CR0 as u32) < 16 || n.wrapping_sub(Register::DR0 as u32) < 16
}

pub fn mov(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let k0 = i.op0_kind();
    let k1 = i.op1_kind();
    if k0 == OpKind::Register {
        let r0 = i.op0_register();
        if let Some(s) = sreg(r0) {
            let v = cpu.read_op(bus, i, 1, 2)? as u16;
            return super::segment::mov_to_sreg(cpu, bus, s, v);
        }
        if is_crdr(r0) {
            return super::system::mov_to_crdr(cpu, bus, i);
        }
    }
    if k1 == OpKind::Register {
        let r1 = i.op1_register();
        if let Some(s) = sreg(r1) {
            let v = cpu.state.seg(s).selector as u64;
            return if k0 == OpKind::Register {
                let r0 = i.op0_register();
                // Register destinations get the selector zero-extended.
                let full = match reg_size(r0) {
                    2 => r0,
                    _ => r0,
                };
                cpu.set_reg(full, v);
                Ok(())
            } else {
                cpu.write_op(bus, i, 0, 2, v)
            };
        }
        if is_crdr(r1) {
            return super::system::mov_from_crdr(cpu, bus, i);
        }
    }
    let size = cpu.op_size(i, 0);
    let v = cpu.read_op(bus, i, 1, size)?;
    cpu.write_op(bus, i, 0, size, v)
}

pub fn movzx(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let ss = cpu.op_size(i, 1);
    let v = cpu.read_op(bus, i, 1, ss)?;
    cpu.set_reg(i.op0_register(), v & mask(ss));
    Ok(())
}

pub fn movsx(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let ss = cpu.op_size(i, 1);
    let ds = cpu.op_size(i, 0);
    let v = cpu.read_op(bus, i, 1, ss)?;
    cpu.set_reg(i.op0_register(), sext(v, ss) & mask(ds));
    Ok(())
}

pub fn lea(cpu: &mut Cpu, i: &Instruction) -> XResult<()> {
    if i.op1_kind() != OpKind::Memory {
        return Err(crate::exception::Exception::ud());
    }
    let ds = cpu.op_size(i, 0);
    let a = cpu.ea(i);
    cpu.set_reg(i.op0_register(), a & mask(ds));
    Ok(())
}

pub fn xchg(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let size = cpu.op_size(i, 0);
    if i.op0_kind() == OpKind::Register && i.op1_kind() == OpKind::Register {
        let (r0, r1) = (i.op0_register(), i.op1_register());
        let (a, b) = (cpu.reg(r0), cpu.reg(r1));
        // XCHG EAX,EAX in 64-bit mode (encoded as 87 C0) zero-extends;
        // the 90 form is NOP and decodes as such.
        cpu.set_reg(r0, b);
        cpu.set_reg(r1, a);
        return Ok(());
    }
    let (mem_n, reg) = if i.op0_kind() == OpKind::Register {
        (1, i.op0_register())
    } else {
        (0, i.op1_register())
    };
    let lin = cpu.mem_lin(i, size, SegAccess::Write)?;
    let m = cpu.read_lin_sized(bus, lin, size)?;
    let _ = mem_n;
    let r = cpu.reg(reg);
    cpu.write_lin_sized(bus, lin, size, r)?;
    cpu.set_reg(reg, m);
    Ok(())
}

pub fn bswap(cpu: &mut Cpu, i: &Instruction) -> XResult<()> {
    let r = i.op0_register();
    let v = cpu.reg(r);
    let n = match reg_size(r) {
        8 => v.swap_bytes(),
        4 => (v as u32).swap_bytes() as u64,
        _ => 0,
    };
    cpu.set_reg(r, n);
    Ok(())
}

pub fn movbe(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let size = cpu.op_size(i, 0);
    let v = cpu.read_op(bus, i, 1, size)?;
    let s = match size {
        2 => (v as u16).swap_bytes() as u64,
        4 => (v as u32).swap_bytes() as u64,
        _ => v.swap_bytes(),
    };
    cpu.write_op(bus, i, 0, size, s)
}

pub fn cbw(cpu: &mut Cpu, i: &Instruction) -> XResult<()> {
    let (from, to) = match i.mnemonic() {
        Mnemonic::Cbw => (1, 2),
        Mnemonic::Cwde => (2, 4),
        _ => (4, 8),
    };
    let v = sext(cpu.gpr_sized(RAX, from), from);
    cpu.set_gpr_sized(RAX, to, v & mask(to));
    Ok(())
}

pub fn cwd(cpu: &mut Cpu, i: &Instruction) -> XResult<()> {
    let size = match i.mnemonic() {
        Mnemonic::Cwd => 2,
        Mnemonic::Cdq => 4,
        _ => 8,
    };
    let neg = cpu.gpr_sized(RAX, size) & flags::sign(size) != 0;
    cpu.set_gpr_sized(RDX, size, if neg { u64::MAX } else { 0 });
    Ok(())
}

pub fn lahf(cpu: &mut Cpu) -> XResult<()> {
    let f = (cpu.state.rflags & (SF | ZF | AF | PF | CF)) | 2;
    cpu.set_reg(Register::AH, f);
    Ok(())
}

pub fn sahf(cpu: &mut Cpu) -> XResult<()> {
    let ah = cpu.reg(Register::AH);
    cpu.set_flags(SF | ZF | AF | PF | CF, ah);
    Ok(())
}

pub fn salc(cpu: &mut Cpu) -> XResult<()> {
    let v = if cpu.flag(CF) { 0xff } else { 0 };
    cpu.set_gpr_sized(RAX, 1, v);
    Ok(())
}

pub fn xlat(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let amask = mask(reg_size(i.memory_base()));
    let off = cpu.gpr_sized(RBX, 8).wrapping_add(cpu.gpr_sized(RAX, 1)) & amask;
    let seg = cpu.mem_seg(i);
    let v = cpu.read_u8(bus, seg, off)?;
    cpu.set_gpr_sized(RAX, 1, v as u64);
    Ok(())
}

pub fn flag_op(cpu: &mut Cpu, i: &Instruction) -> XResult<()> {
    match i.mnemonic() {
        Mnemonic::Clc => cpu.state.rflags &= !CF,
        Mnemonic::Stc => cpu.state.rflags |= CF,
        Mnemonic::Cmc => cpu.state.rflags ^= CF,
        Mnemonic::Cld => cpu.state.rflags &= !DF,
        _ => cpu.state.rflags |= DF,
    }
    Ok(())
}

pub fn cmov(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let size = cpu.op_size(i, 0);
    let v = cpu.read_op(bus, i, 1, size)?;
    let r = i.op0_register();
    if flags::cond(cpu.state.rflags, cc_of(i)) {
        cpu.set_reg(r, v);
    } else if size == 4 {
        let cur = cpu.reg(r);
        cpu.set_reg(r, cur);
    }
    Ok(())
}

pub fn setcc(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let v = flags::cond(cpu.state.rflags, cc_of(i)) as u64;
    cpu.write_op(bus, i, 0, 1, v)
}

/// Segment of a string/XLAT source (DS unless overridden).
#[allow(dead_code)]
pub fn src_seg(i: &Instruction) -> SegReg {
    sreg(i.memory_segment()).unwrap_or(SegReg::Ds)
}
