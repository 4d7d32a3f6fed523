//! BCD adjustments: DAA/DAS/AAA/AAS/AAM/AAD (invalid in 64-bit mode: the
//! decoder rejects them there).

use iced_x86::Instruction;

use super::flags;
use super::Cpu;
use crate::consts::rflags::{AF, CF, OF, PF, SF, ZF};
use crate::exception::{Exception, XResult};
use crate::state::gpr::RAX;

fn al(cpu: &Cpu) -> u8 {
    cpu.state.gpr[RAX] as u8
}
fn set_al(cpu: &mut Cpu, v: u8) {
    cpu.set_gpr_sized(RAX, 1, v as u64);
}

pub fn daa(cpu: &mut Cpu) -> XResult<()> {
    let old_al = al(cpu);
    let old_cf = cpu.flag(CF);
    let mut a = old_al;
    let mut f = 0;
    if old_al & 0xf > 9 || cpu.flag(AF) {
        a = a.wrapping_add(6);
        f |= AF;
    }
    if old_al > 0x99 || old_cf {
        a = a.wrapping_add(0x60);
        f |= CF;
    }
    set_al(cpu, a);
    f |= flags::szp(a as u64, 1);
    cpu.set_flags(CF | AF | SF | ZF | PF | OF, f);
    Ok(())
}

pub fn das(cpu: &mut Cpu) -> XResult<()> {
    let old_al = al(cpu);
    let old_cf = cpu.flag(CF);
    let mut a = old_al;
    let mut f = 0;
    if old_al & 0xf > 9 || cpu.flag(AF) {
        // The borrow of this step sets CF too (SDM; no "else CF = 0"
        // below, unlike DAA).
        if a < 6 {
            f |= CF;
        }
        a = a.wrapping_sub(6);
        f |= AF;
    }
    if old_al > 0x99 || old_cf {
        a = a.wrapping_sub(0x60);
        f |= CF;
    }
    set_al(cpu, a);
    f |= flags::szp(a as u64, 1);
    cpu.set_flags(CF | AF | SF | ZF | PF | OF, f);
    Ok(())
}

fn aaa_aas(cpu: &mut Cpu, add: bool) -> XResult<()> {
    let ax = cpu.state.gpr[RAX] as u16;
    let (nax, f) = if (ax & 0xf) > 9 || cpu.flag(AF) {
        // AX +/- 6 as a 16-bit operation (AL's carry/borrow reaches AH),
        // then AH +/- 1 (SDM; what Intel CPUs do).
        let n = if add {
            ax.wrapping_add(0x106)
        } else {
            ax.wrapping_sub(6).wrapping_sub(0x100)
        };
        (n, AF | CF)
    } else {
        (ax, 0)
    };
    let nax = nax & 0xff0f;
    cpu.set_gpr_sized(RAX, 2, nax as u64);
    let f = f | flags::szp(nax as u64 & 0xff, 1);
    cpu.set_flags(CF | AF | SF | ZF | PF | OF, f);
    Ok(())
}

pub fn aaa(cpu: &mut Cpu) -> XResult<()> {
    aaa_aas(cpu, true)
}
pub fn aas(cpu: &mut Cpu) -> XResult<()> {
    aaa_aas(cpu, false)
}

pub fn aam(cpu: &mut Cpu, i: &Instruction) -> XResult<()> {
    let base = i.immediate8();
    if base == 0 {
        return Err(Exception::de());
    }
    let a = al(cpu);
    let ah = a / base;
    let nal = a % base;
    cpu.set_gpr_sized(RAX, 2, ((ah as u64) << 8) | nal as u64);
    cpu.set_flags(CF | AF | SF | ZF | PF | OF, flags::szp(nal as u64, 1));
    Ok(())
}

pub fn aad(cpu: &mut Cpu, i: &Instruction) -> XResult<()> {
    let base = i.immediate8();
    let ax = cpu.state.gpr[RAX] as u16;
    let nal = ((ax as u8).wrapping_add(((ax >> 8) as u8).wrapping_mul(base))) as u64;
    cpu.set_gpr_sized(RAX, 2, nal);
    cpu.set_flags(CF | AF | SF | ZF | PF | OF, flags::szp(nal, 1));
    Ok(())
}

#[cfg(test)]
mod tests {
    use iced_x86::code_asm::*;

    use crate::consts::rflags;
    use crate::interp::tests::{asm, CODE, M};
    use crate::interp::ExitReason;

    #[test]
    fn aas_borrows_from_al_into_ah() {
        // AF = 1, AL = 3: AX - 6 borrows from AH, then AH - 1:
        // 0x0503 -> 0x04FD -> 0x03FD -> AL & 0xF = 0x030D.
        let code = asm(32, CODE, |a| {
            a.push(0x10).unwrap();
            a.popfd().unwrap();
            a.mov(eax, 0x0503).unwrap();
            a.aas().unwrap();
            a.hlt().unwrap();
        });
        let mut m = M::prot32(&code);
        assert_eq!(m.run(), ExitReason::Halt);
        assert_eq!(m.gpr(0) & 0xffff, 0x030d);
        let f = m.cpu.state.rflags;
        assert_eq!(f & (rflags::CF | rflags::AF), rflags::CF | rflags::AF);
    }

    #[test]
    fn das_borrow_of_the_low_adjustment_sets_cf() {
        // AL = 3, AF = 1, CF = 0: AL - 6 borrows (CF = 1), AL <= 0x99 so
        // no -0x60 step.
        let code = asm(32, CODE, |a| {
            a.push(0x10).unwrap();
            a.popfd().unwrap();
            a.mov(eax, 0x03).unwrap();
            a.das().unwrap();
            a.hlt().unwrap();
        });
        let mut m = M::prot32(&code);
        assert_eq!(m.run(), ExitReason::Halt);
        assert_eq!(m.gpr(0) & 0xff, 0xfd);
        let f = m.cpu.state.rflags;
        assert_eq!(f & (rflags::CF | rflags::AF), rflags::CF | rflags::AF);
    }
}
