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
                // A 16-bit read (as on Intel: no #AC/limit fault for the
                // upper bytes), the stack moves by the operand size.
                let v = cpu.peek(bus, 0, 2)? as u16;
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
    // Check every slot first so a fault leaves RSP alone (slot by slot:
    // the stack pointer may wrap inside a 16-bit stack segment).
    for k in 1..=8u64 {
        let a = sp0.wrapping_sub(k * size as u64) & mask(ss);
        cpu.lin(SegReg::Ss, a, size as u64, SegAccess::Write)?;
    }
    // Every register, (E)SP included, at the operand size: PUSHAD on a
    // 16-bit stack pushes all of ESP.
    let vals: Vec<u64> = (0..8).map(|r| cpu.gpr_sized(r, size)).collect();
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
        // FrameTemp is (E)SP at the operand size: all of ESP for a 32-bit
        // ENTER on a 16-bit stack.
        let frame = cpu.gpr_sized(RSP, size);
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
        // The final stack pointer must be writable: hardware probes an
        // operand-sized write there (limit, alignment check, paging).
        let lin = cpu.lin(SegReg::Ss, nsp, size as u64, SegAccess::Write)?;
        cpu.mmu
            .probe_write(&cpu.state, bus, lin, size as usize, cpu.user)?;
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

#[cfg(test)]
mod tests {
    use iced_x86::code_asm::*;

    use crate::interp::tests::{asm, CODE, DS16, DS32, M};
    use crate::interp::ExitReason;
    use crate::SegReg;

    /// Runs 32-bit code `f` with SS = DS16 (a 16-bit stack, base 0) and
    /// ESP = `initial`, to its HLT.
    fn on_16bit_stack(initial: u32, f: impl FnOnce(&mut CodeAssembler)) -> M {
        let code = asm(32, CODE, |a| {
            a.mov(eax, DS16 as u32).unwrap();
            a.mov(ss, ax).unwrap();
            a.mov(esp, initial).unwrap();
            f(a);
            a.hlt().unwrap();
        });
        let mut m = M::prot32(&code);
        m.install_handlers32();
        assert_eq!(m.run(), ExitReason::Halt);
        m
    }

    #[test]
    fn enter_o32_on_a_16bit_stack_uses_all_of_esp() {
        let m = on_16bit_stack(0x1234_7000, |a| {
            a.mov(ebp, 0xabcd_0100u32).unwrap();
            a.enter(4, 1).unwrap();
        });
        // Push EBP, FrameTemp = ESP (32 bits), push it, allocate 4.
        assert_eq!(m.read_u64(0x6ffc) as u32, 0xabcd_0100);
        assert_eq!(m.read_u64(0x6ff8) as u32, 0x1234_6ffc);
        assert_eq!(m.gpr(5), 0x1234_6ffc);
        assert_eq!(m.gpr(4), 0x1234_6ff4);
    }

    #[test]
    fn pushad_on_a_16bit_stack_pushes_all_of_esp() {
        let m = on_16bit_stack(0x5678_7000, |a| {
            a.pushad().unwrap();
        });
        // EAX, ECX, EDX, EBX, then ESP's slot at 0x7000 - 20.
        assert_eq!(m.read_u64(0x6fec) as u32, 0x5678_7000);
        assert_eq!(m.gpr(4), 0x5678_6fe0);
    }

    #[test]
    fn pushad_wraps_around_a_16bit_stack() {
        // SP = 0x10: EAX..EBX below it, then SP wraps to 0xFFFC for ESP's
        // slot and the rest.
        let m = on_16bit_stack(0x0000_0010, |a| {
            a.mov(eax, 0x1111_2222).unwrap();
            a.pushad().unwrap();
        });
        assert_eq!(m.read_u64(0xc) as u32, 0x1111_2222);
        assert_eq!(m.read_u64(0xfffc) as u32, 0x10);
        assert_eq!(m.gpr(4), 0xfff0);
    }

    #[test]
    fn pop_sreg_o32_reads_16_bits() {
        // At SP = 0xFFFE only two bytes are inside the 64 KiB stack
        // segment: a 32-bit POP ES reads the selector there and wraps SP.
        let m = on_16bit_stack(0xfffe, |a| {
            a.mov(word_ptr(0xfffe), DS32 as u32).unwrap();
            a.pop(es).unwrap();
        });
        assert_eq!(m.cpu.state.seg(SegReg::Es).selector, DS32);
        assert_eq!(m.gpr(4), 2);
    }
}

#[cfg(test)]
mod ac_tests {
    use crate::exception::vector;
    use crate::interp::tests::{asm, CODE, M};
    use crate::interp::ExitReason;

    #[test]
    fn enter_checks_the_final_stack_pointer_alignment() {
        // CPL 3 with CR0.AM and EFLAGS.AC: a 32-bit ENTER that leaves ESP
        // misaligned raises #AC (as Intel CPUs do); aligned, it runs on to
        // the HLT (#GP at CPL 3).
        for (alloc, expect) in [(2, vector::AC), (4, vector::GP)] {
            let code = asm(32, CODE, |a| {
                a.enter(alloc, 0).unwrap();
                a.hlt().unwrap();
            });
            let mut m = M::prot32_user_ac(&code);
            assert_eq!(m.run(), ExitReason::Halt);
            assert_eq!(m.rec().0, expect as u64, "ENTER {alloc}, 0");
        }
    }

    #[test]
    fn enter_probes_the_final_stack_pointer_page() {
        // RSP just above a page that is not mapped: ENTER that leaves RSP
        // there faults (#PF for a write at the new RSP) though it writes
        // nothing there; ENTER that stays on the mapped page runs.
        use crate::interp::tests::{asm, CODE, M, REC};
        use iced_x86::code_asm::*;
        let page = 0x8000_1000u64;
        for (alloc, expect) in [(0x110, vector::PF as u64), (8, u64::MAX)] {
            let code = asm(64, CODE, |a| {
                a.mov(rsp, page + 0x100).unwrap();
                a.enter(alloc, 0).unwrap();
                a.hlt().unwrap();
            });
            let mut m = M::long64(&code);
            m.install_handlers64();
            m.map4k(page, 0x20_0000, 3);
            assert_eq!(m.run(), ExitReason::Halt);
            assert_eq!(m.rec().0, expect, "ENTER {alloc:#x}, 0");
            if expect == vector::PF as u64 {
                assert_eq!(m.read_u64(REC + 40), page + 0xf8 - alloc as u64, "CR2");
                assert_eq!(m.read_u64(REC + 32), page + 0x100, "RSP unchanged");
            }
        }
    }
}
