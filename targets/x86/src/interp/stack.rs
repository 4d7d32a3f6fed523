//! Stack: PUSH/POP (GPR, memory, immediate, segment), PUSHA/POPA,
//! PUSHF/POPF with the IOPL rules, ENTER/LEAVE.

use iced_x86::{Instruction, OpKind};

use super::flags::mask;
use super::operand::sreg;
use super::Cpu;
use crate::bus::CpuBus;
use crate::consts::rflags;
use crate::exception::{Exception, XResult};
use crate::mmu::seg::SegAccess;
use crate::state::gpr::{RBP, RSP};
use crate::SegReg;

impl Cpu {
    /// Stack address size in bytes (2, 4 or 8).
    #[inline]
    pub fn sp_size(&self) -> u32 {
        if self.long64 {
            8
        } else if self.state.seg(SegReg::Ss).big() {
            4
        } else {
            2
        }
    }

    /// Pushes `size` bytes of `v`; RSP changes only if the write succeeds.
    #[inline]
    pub fn push(&mut self, bus: &mut dyn CpuBus, v: u64, size: u32) -> XResult<()> {
        let ss = self.sp_size();
        let sp = self.gpr_sized(RSP, ss).wrapping_sub(size as u64) & mask(ss);
        self.write_sized(bus, SegReg::Ss, sp, size, v)?;
        self.set_gpr_sized(RSP, ss, sp);
        Ok(())
    }

    /// Pops `size` bytes; RSP changes only if the read succeeds.
    #[inline]
    pub fn pop(&mut self, bus: &mut dyn CpuBus, size: u32) -> XResult<u64> {
        let ss = self.sp_size();
        let sp = self.gpr_sized(RSP, ss);
        let v = self.read_sized(bus, SegReg::Ss, sp, size)?;
        self.set_gpr_sized(RSP, ss, sp.wrapping_add(size as u64) & mask(ss));
        Ok(v)
    }

    /// Reads the stack at `RSP + off` without popping.
    pub fn peek(&mut self, bus: &mut dyn CpuBus, off: u64, size: u32) -> XResult<u64> {
        let ss = self.sp_size();
        let a = self.gpr_sized(RSP, ss).wrapping_add(off) & mask(ss);
        self.read_sized(bus, SegReg::Ss, a, size)
    }

    /// Adds `n` to the stack pointer (stack address size).
    pub fn sp_add(&mut self, n: u64) {
        let ss = self.sp_size();
        let sp = self.gpr_sized(RSP, ss).wrapping_add(n) & mask(ss);
        self.set_gpr_sized(RSP, ss, sp);
    }
}

/// Operand size of a push/pop from iced's stack pointer increment.
#[inline]
fn stack_op_size(i: &Instruction) -> u32 {
    i.stack_pointer_increment().unsigned_abs()
}

pub fn push(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let size = stack_op_size(i);
    let v = match i.op0_kind() {
        OpKind::Register => {
            let r = i.op0_register();
            match sreg(r) {
                Some(s) => cpu.state.seg(s).selector as u64,
                None => cpu.reg(r),
            }
        }
        _ => cpu.read_op(bus, i, 0, size)?,
    };
    if i.op0_kind() == OpKind::Register && sreg(i.op0_register()).is_some() && size > 2 {
        // Segment pushes write 16 bits and move the stack by the operand size.
        let ss = cpu.sp_size();
        let sp = cpu.gpr_sized(RSP, ss).wrapping_sub(size as u64) & mask(ss);
        cpu.write_sized(bus, SegReg::Ss, sp, 2, v)?;
        cpu.set_gpr_sized(RSP, ss, sp);
        return Ok(());
    }
    cpu.push(bus, v, size)
}

pub fn pop(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let size = stack_op_size(i);
    match i.op0_kind() {
        OpKind::Register => {
            let r = i.op0_register();
            if let Some(s) = sreg(r) {
                let v = cpu.peek(bus, 0, size)? as u16;
                super::segment::mov_to_sreg(cpu, bus, s, v)?;
                cpu.sp_add(size as u64);
                Ok(())
            } else {
                let v = cpu.pop(bus, size)?;
                cpu.set_reg(r, v);
                Ok(())
            }
        }
        _ => {
            // The address is computed with RSP already incremented.
            let v = cpu.peek(bus, 0, size)?;
            let old = cpu.state.gpr[RSP];
            cpu.sp_add(size as u64);
            let r = cpu
                .mem_lin(i, size, SegAccess::Write)
                .and_then(|a| cpu.write_lin_sized(bus, a, size, v));
            if r.is_err() {
                cpu.state.gpr[RSP] = old;
            }
            r
        }
    }
}

pub fn pusha(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let size = if i.mnemonic() == iced_x86::Mnemonic::Pushad {
        4
    } else {
        2
    };
    let ss = cpu.sp_size();
    let sp0 = cpu.gpr_sized(RSP, ss);
    // Check the whole area first so a fault leaves RSP alone.
    let lo = sp0.wrapping_sub(8 * size as u64) & mask(ss);
    cpu.lin(SegReg::Ss, lo, 8 * size as u64, SegAccess::Write)?;
    let vals: Vec<u64> = (0..8)
        .map(|r| {
            if r == RSP {
                sp0
            } else {
                cpu.gpr_sized(r, size)
            }
        })
        .collect();
    let old = cpu.state.gpr[RSP];
    for v in vals {
        if let Err(e) = cpu.push(bus, v, size) {
            cpu.state.gpr[RSP] = old;
            return Err(e);
        }
    }
    Ok(())
}

pub fn popa(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let size = if i.mnemonic() == iced_x86::Mnemonic::Popad {
        4
    } else {
        2
    };
    let mut vals = [0u64; 8];
    for (k, v) in vals.iter_mut().enumerate() {
        *v = cpu.peek(bus, (k as u64) * size as u64, size)?;
    }
    for (k, v) in vals.iter().enumerate() {
        let r = 7 - k;
        if r != RSP {
            cpu.set_gpr_sized(r, size, *v);
        }
    }
    cpu.sp_add(8 * size as u64);
    Ok(())
}

pub fn pushf(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    if cpu.state.rflags & rflags::VM != 0 && (cpu.state.rflags & rflags::IOPL) >> 12 < 3 {
        return Err(Exception::gp0());
    }
    let size = stack_op_size(i);
    let v = cpu.state.rflags & !(rflags::VM | rflags::RF);
    cpu.push(bus, v, size)
}

pub fn popf(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let size = stack_op_size(i);
    let vm = cpu.state.rflags & rflags::VM != 0;
    let iopl = ((cpu.state.rflags & rflags::IOPL) >> 12) as u8;
    if vm && iopl < 3 {
        return Err(Exception::gp0());
    }
    let v = cpu.pop(bus, size)?;
    let mut changeable = rflags::CF
        | rflags::PF
        | rflags::AF
        | rflags::ZF
        | rflags::SF
        | rflags::TF
        | rflags::DF
        | rflags::OF
        | rflags::NT
        | rflags::AC
        | rflags::ID;
    if cpu.cpl == 0 && !vm {
        changeable |= rflags::IOPL;
    }
    if cpu.cpl <= iopl || vm {
        changeable |= rflags::IF;
    }
    changeable &= mask(size);
    let nf = (cpu.state.rflags & !changeable & !rflags::RF) | (v & changeable) | rflags::FIXED1;
    cpu.state.rflags = nf;
    cpu.update_mode();
    Ok(())
}

pub fn enter(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let size = stack_op_size(i).max(2);
    let size = match i.code() {
        iced_x86::Code::Enterw_imm16_imm8 => 2,
        iced_x86::Code::Enterd_imm16_imm8 => 4,
        iced_x86::Code::Enterq_imm16_imm8 => 8,
        _ => size,
    };
    let alloc = i.immediate16() as u64;
    let level = (i.immediate8_2nd() & 31) as u64;
    let ss = cpu.sp_size();
    let saved = cpu.state.gpr;
    let r = (|| -> XResult<()> {
        let rbp = cpu.gpr_sized(RBP, ss);
        cpu.push(bus, cpu.gpr_sized(RBP, size), size)?;
        let frame = cpu.gpr_sized(RSP, ss);
        if level > 0 {
            let mut bp = rbp;
            for _ in 1..level {
                bp = bp.wrapping_sub(size as u64) & mask(ss);
                let v = cpu.read_sized(bus, SegReg::Ss, bp, size)?;
                cpu.push(bus, v, size)?;
            }
            cpu.push(bus, frame, size)?;
        }
        let nsp = cpu.gpr_sized(RSP, ss).wrapping_sub(alloc) & mask(ss);
        // The final stack pointer must be writable (as hardware probes it).
        cpu.lin(SegReg::Ss, nsp, 0, SegAccess::None)?;
        cpu.set_gpr_sized(RBP, size, frame);
        cpu.set_gpr_sized(RSP, ss, nsp);
        Ok(())
    })();
    if r.is_err() {
        cpu.state.gpr = saved;
    }
    r
}

pub fn leave(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let size = stack_op_size(i).max(2);
    let size = match i.code() {
        iced_x86::Code::Leavew => 2,
        iced_x86::Code::Leaved => 4,
        iced_x86::Code::Leaveq => 8,
        _ => size,
    };
    let ss = cpu.sp_size();
    let bp = cpu.gpr_sized(RBP, ss);
    let v = cpu.read_sized(bus, SegReg::Ss, bp, size)?;
    cpu.set_gpr_sized(RSP, ss, bp.wrapping_add(size as u64) & mask(ss));
    cpu.set_gpr_sized(RBP, size, v);
    Ok(())
}
