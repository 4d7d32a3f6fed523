//! Near control transfer: JMP/Jcc/CALL/RET/LOOPcc/JrCXZ, INT n/INT3/INTO/
//! INT1, BOUND. Far forms are forwarded to [`super::far`].

use iced_x86::{Code, Instruction, OpKind};

use super::flags::{self, cc_of, mask, sext};
use super::interrupt::EventKind;
use super::Cpu;
use crate::bus::CpuBus;
use crate::consts::rflags;
use crate::exception::{vector, Exception, XResult};
use crate::state::gpr::RCX;
use crate::SegReg;

impl Cpu {
    /// Sets the branch target after the CS limit / canonical check.
    #[inline]
    pub(crate) fn branch(&mut self, target: u64) -> XResult<()> {
        if self.long64 {
            if !crate::mmu::seg::is_canonical(target) {
                return Err(Exception::gp0());
            }
        } else if target > self.state.seg(SegReg::Cs).limit as u64 {
            return Err(Exception::gp0());
        }
        self.next_rip = target;
        Ok(())
    }
}

fn is_far(i: &Instruction) -> bool {
    matches!(
        i.code(),
        Code::Jmp_ptr1616
            | Code::Jmp_ptr1632
            | Code::Jmp_m1616
            | Code::Jmp_m1632
            | Code::Jmp_m1664
            | Code::Call_ptr1616
            | Code::Call_ptr1632
            | Code::Call_m1616
            | Code::Call_m1632
            | Code::Call_m1664
    )
}

/// Operand size of a near branch (2, 4 or 8).
fn branch_size(cpu: &Cpu, i: &Instruction) -> u32 {
    match i.op0_kind() {
        OpKind::NearBranch16 => 2,
        OpKind::NearBranch32 => 4,
        OpKind::NearBranch64 => 8,
        _ => cpu.op_size(i, 0),
    }
}

pub fn jmp(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    if is_far(i) {
        return super::far::jmp_far(cpu, bus, i);
    }
    let t = match i.op0_kind() {
        OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => {
            i.near_branch_target()
        }
        _ => {
            let s = branch_size(cpu, i);
            cpu.read_op(bus, i, 0, s)?
        }
    };
    cpu.branch(t)
}

pub fn jcc(cpu: &mut Cpu, i: &Instruction) -> XResult<()> {
    if flags::cond(cpu.state.rflags, cc_of(i)) {
        cpu.branch(i.near_branch_target())?;
    }
    Ok(())
}

pub fn call(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    if is_far(i) {
        return super::far::call_far(cpu, bus, i);
    }
    let size = i.stack_pointer_increment().unsigned_abs();
    let t = match i.op0_kind() {
        OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => {
            i.near_branch_target()
        }
        _ => cpu.read_op(bus, i, 0, size)?,
    };
    let ret = cpu.next_rip;
    // Check the target before pushing so a bad target faults cleanly.
    let saved = cpu.next_rip;
    cpu.branch(t)?;
    cpu.next_rip = saved;
    cpu.push(bus, ret, size)?;
    cpu.next_rip = t;
    Ok(())
}

pub fn ret(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let size = match i.code() {
        Code::Retnw | Code::Retnw_imm16 => 2,
        Code::Retnd | Code::Retnd_imm16 => 4,
        _ => 8,
    };
    let t = cpu.peek(bus, 0, size)?;
    cpu.branch(t)?;
    let imm = if i.op_count() > 0 {
        i.immediate16() as u64
    } else {
        0
    };
    cpu.sp_add(size as u64 + imm);
    Ok(())
}

/// Count register size of LOOP/JrCXZ (the address size).
fn count_size(i: &Instruction) -> u32 {
    match i.code() {
        Code::Loopne_rel8_16_CX
        | Code::Loopne_rel8_32_CX
        | Code::Loope_rel8_16_CX
        | Code::Loope_rel8_32_CX
        | Code::Loop_rel8_16_CX
        | Code::Loop_rel8_32_CX
        | Code::Jcxz_rel8_16
        | Code::Jcxz_rel8_32 => 2,
        Code::Loopne_rel8_16_ECX
        | Code::Loopne_rel8_32_ECX
        | Code::Loopne_rel8_64_ECX
        | Code::Loope_rel8_16_ECX
        | Code::Loope_rel8_32_ECX
        | Code::Loope_rel8_64_ECX
        | Code::Loop_rel8_16_ECX
        | Code::Loop_rel8_32_ECX
        | Code::Loop_rel8_64_ECX
        | Code::Jecxz_rel8_16
        | Code::Jecxz_rel8_32
        | Code::Jecxz_rel8_64 => 4,
        _ => 8,
    }
}

pub fn loop_(cpu: &mut Cpu, i: &Instruction) -> XResult<()> {
    let cs = count_size(i);
    let c = cpu.gpr_sized(RCX, cs).wrapping_sub(1) & mask(cs);
    let zf = cpu.flag(rflags::ZF);
    let take = c != 0
        && match i.mnemonic() {
            iced_x86::Mnemonic::Loope => zf,
            iced_x86::Mnemonic::Loopne => !zf,
            _ => true,
        };
    if take {
        cpu.branch(i.near_branch_target())?;
    }
    cpu.set_gpr_sized(RCX, cs, c);
    Ok(())
}

pub fn jcxz(cpu: &mut Cpu, i: &Instruction) -> XResult<()> {
    if cpu.gpr_sized(RCX, count_size(i)) == 0 {
        cpu.branch(i.near_branch_target())?;
    }
    Ok(())
}

fn soft_int(cpu: &mut Cpu, bus: &mut dyn CpuBus, v: u8, kind: EventKind) -> XResult<()> {
    let ret = cpu.next_rip;
    cpu.deliver_event(bus, v, None, kind, ret)?;
    cpu.next_rip = cpu.state.rip;
    cpu.end_block = true;
    cpu.soft_event = true;
    Ok(())
}

pub fn int_n(cpu: &mut Cpu, bus: &mut dyn CpuBus, v: u8) -> XResult<()> {
    if cpu.state.rflags & rflags::VM != 0 && (cpu.state.rflags & rflags::IOPL) >> 12 < 3 {
        return Err(Exception::gp0());
    }
    soft_int(cpu, bus, v, EventKind::SoftInt)
}

pub fn int3(cpu: &mut Cpu, bus: &mut dyn CpuBus) -> XResult<()> {
    if cpu.debug_int3 {
        cpu.exit = Some(super::ExitReason::Debug(super::DebugStop::Breakpoint));
        cpu.next_rip = cpu.state.rip;
        cpu.end_block = true;
        return Ok(());
    }
    soft_int(cpu, bus, vector::BP, EventKind::SoftException)
}

pub fn into(cpu: &mut Cpu, bus: &mut dyn CpuBus) -> XResult<()> {
    if cpu.flag(rflags::OF) {
        return soft_int(cpu, bus, vector::OF, EventKind::SoftException);
    }
    Ok(())
}

pub fn int1(cpu: &mut Cpu, bus: &mut dyn CpuBus) -> XResult<()> {
    // Data breakpoints held by a MOV SS just before join this #DB.
    let held = std::mem::take(&mut cpu.pending_db);
    if held != 0 {
        cpu.state.dr[6] = (cpu.state.dr[6] & !super::debugreg::DR6_B) | u64::from(held);
    }
    soft_int(cpu, bus, vector::DB, EventKind::Icebp)
}

pub fn bound(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let size = super::operand::reg_size(i.op0_register());
    let idx = sext(cpu.reg(i.op0_register()), size) as i64;
    let seg = cpu.mem_seg(i);
    let ea = cpu.ea(i);
    let lo = sext(cpu.read_sized(bus, seg, ea, size)?, size) as i64;
    let hi = sext(
        cpu.read_sized(bus, seg, cpu.ea_add(i, ea, size as u64), size)?,
        size,
    ) as i64;
    if idx < lo || idx > hi {
        return Err(Exception::new(vector::BR));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use iced_x86::code_asm::*;

    use crate::exception::vector;
    use crate::interp::tests::{asm, CODE, M};
    use crate::interp::ExitReason;

    #[test]
    fn bound_upper_bound_wraps_with_16bit_addressing() {
        // BOUND AX, [BX] with BX = 0xFFFE: lower bound at 0xFFFE, upper
        // bound at (0xFFFE + 2) mod 64 KiB = 0.
        for (index, expect) in [(0x15u32, u64::MAX), (0x25, vector::BR as u64)] {
            let code = asm(32, CODE, |a| {
                a.mov(ebx, 0xfffe).unwrap();
                a.mov(eax, index).unwrap();
                a.bound(ax, dword_ptr(bx)).unwrap();
                a.hlt().unwrap();
            });
            let mut m = M::prot32(&code);
            m.install_handlers32();
            m.bus.load(0xfffe, &0x10u16.to_le_bytes());
            m.bus.load(0, &0x20u16.to_le_bytes());
            assert_eq!(m.run(), ExitReason::Halt);
            assert_eq!(m.rec().0, expect, "AX = {index:#x}");
        }
    }
}
