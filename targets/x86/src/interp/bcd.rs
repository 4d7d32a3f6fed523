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
        let n = if add {
            ax.wrapping_add(0x106)
        } else {
            let lo = (ax as u8).wrapping_sub(6);
            let hi = ((ax >> 8) as u8).wrapping_sub(1);
            ((hi as u16) << 8) | lo as u16
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
