//! x87 FPU: register stack, status/control words, exception reporting,
//! the #NM/#MF checks, dispatch, and the simple instructions. Arithmetic
//! lives in [`super::x87_arith`], environment/state images in
//! [`super::x87_env`].
//!
//! [`crate::FpuState::st`] holds ST(0)..ST(7) in stack order (as FXSAVE
//! stores them) and `ftw` is the abridged tag word indexed by *physical*
//! register, so pushes and pops rotate `st` and TOP (FSW bits 13:11) names
//! the physical register of ST(0).
//!
//! Values are true 80-bit extended numbers: loads, stores, conversions and
//! the basic arithmetic (FADD..FDIVR, FSQRT, FPREM, FRNDINT, FSCALE) are
//! exact/correctly rounded with precision and rounding control through
//! [`super::softfloat`]. The transcendental instructions compute in `f64`.
//! Exceptions: flags, SF, C1 and ES/B are maintained; an unmasked invalid,
//! denormal or zero-divide leaves the destination untouched, unmasked
//! overflow/underflow deliver the masked result (no exponent bias
//! adjustment: a known deviation), and the pending exception is reported
//! as #MF by the next waiting x87/MMX instruction when CR0.NE=1 (with
//! CR0.NE=0 the external FERR#/IRQ13 path is not modelled: nothing is
//! raised).

use iced_x86::{Instruction, Mnemonic as M, OpKind, Register};

use super::softfloat::{self as sf, Ctx, Format, Fp, Rc, F80};
use super::sse::{read_mem, write_mem, V};
use super::{x87_arith, x87_env, Cpu};
use crate::bus::CpuBus;
use crate::consts::cr0;
use crate::exception::{Exception, XResult};

/// FSW bits.
pub(super) mod sw {
    pub const FLAGS: u16 = 0x3f;
    pub const SF: u16 = 1 << 6;
    pub const ES: u16 = 1 << 7;
    pub const C0: u16 = 1 << 8;
    pub const C1: u16 = 1 << 9;
    pub const C2: u16 = 1 << 10;
    pub const C3: u16 = 1 << 14;
    pub const B: u16 = 1 << 15;
    pub const TOP_SHIFT: u16 = 11;
    pub const CC: u16 = C0 | C1 | C2 | C3;
}

/// The QNaN floating-point indefinite.
pub(super) const INDEFINITE: (u16, u64) = (0xffff, 0xc000_0000_0000_0000);

impl Cpu {
    #[inline]
    pub(crate) fn fpu_top(&self) -> usize {
        ((self.state.fpu.fsw >> sw::TOP_SHIFT) & 7) as usize
    }
    #[inline]
    pub(crate) fn set_fpu_top(&mut self, t: usize) {
        let f = &mut self.state.fpu.fsw;
        *f = (*f & !(7 << sw::TOP_SHIFT)) | (((t & 7) as u16) << sw::TOP_SHIFT);
    }
    /// ST(i) raw: (sign|exponent, significand).
    #[inline]
    pub(crate) fn st_raw(&self, i: usize) -> (u16, u64) {
        let s = &self.state.fpu.st[i & 7];
        let mut m = [0u8; 8];
        m.copy_from_slice(&s[..8]);
        (u16::from_le_bytes([s[8], s[9]]), u64::from_le_bytes(m))
    }
    #[inline]
    pub(crate) fn set_st_raw(&mut self, i: usize, v: (u16, u64)) {
        let s = &mut self.state.fpu.st[i & 7];
        s[..8].copy_from_slice(&v.1.to_le_bytes());
        s[8..10].copy_from_slice(&v.0.to_le_bytes());
        for b in s[10..].iter_mut() {
            *b = 0;
        }
    }
    /// The tag of ST(i) is not empty.
    #[inline]
    pub(crate) fn st_valid(&self, i: usize) -> bool {
        let p = (self.fpu_top() + i) & 7;
        self.state.fpu.ftw & (1 << p) != 0
    }
    #[inline]
    pub(crate) fn set_st_valid(&mut self, i: usize, v: bool) {
        let p = (self.fpu_top() + i) & 7;
        if v {
            self.state.fpu.ftw |= 1 << p;
        } else {
            self.state.fpu.ftw &= !(1 << p);
        }
    }
    /// TOP -= 1 (rotating the stack-ordered registers).
    pub(crate) fn fpu_dec_top(&mut self) {
        self.state.fpu.st.rotate_right(1);
        let t = self.fpu_top().wrapping_sub(1);
        self.set_fpu_top(t);
    }
    /// TOP += 1.
    pub(crate) fn fpu_inc_top(&mut self) {
        self.state.fpu.st.rotate_left(1);
        let t = self.fpu_top() + 1;
        self.set_fpu_top(t);
    }
    /// Pushes a value (the caller checked for overflow).
    pub(crate) fn fpu_push(&mut self, v: (u16, u64)) {
        self.fpu_dec_top();
        self.set_st_raw(0, v);
        self.set_st_valid(0, true);
    }
    /// Marks ST(0) empty and increments TOP.
    pub(crate) fn fpu_pop(&mut self) {
        self.set_st_valid(0, false);
        self.fpu_inc_top();
    }
    /// Recomputes ES and B from the flags and masks.
    pub(crate) fn fpu_update_es(&mut self) {
        let f = &mut self.state.fpu;
        let unmasked = f.fsw & !f.fcw & sw::FLAGS;
        if unmasked != 0 {
            f.fsw |= sw::ES | sw::B;
        } else {
            f.fsw &= !(sw::ES | sw::B);
        }
    }
}

/// #NM when CR0.EM or CR0.TS is set.
pub(super) fn check_nm(cpu: &Cpu) -> XResult<()> {
    if cpu.state.cr0 & (cr0::EM | cr0::TS) != 0 {
        return Err(Exception::nm());
    }
    Ok(())
}

/// A pending unmasked x87 exception: #MF when CR0.NE=1.
pub(super) fn pending(cpu: &Cpu) -> XResult<()> {
    if cpu.state.fpu.fsw & sw::ES != 0 && cpu.state.cr0 & cr0::NE != 0 {
        return Err(Exception::mf());
    }
    Ok(())
}

/// MMX checks: #UD if CR0.EM, #NM if CR0.TS, #MF for a pending x87 exception.
pub(super) fn check_mmx_raw(cpu: &Cpu) -> XResult<()> {
    if cpu.state.cr0 & cr0::EM != 0 {
        return Err(Exception::ud());
    }
    if cpu.state.cr0 & cr0::TS != 0 {
        return Err(Exception::nm());
    }
    pending(cpu)
}

/// Enters MMX mode: TOP = 0 (so MMi is ST(i)), all tags valid.
pub(super) fn enter_mmx(cpu: &mut Cpu) {
    let t = cpu.fpu_top();
    if t != 0 {
        // Physical register p is ST((p - TOP) & 7): make ST(p) = R(p).
        cpu.state.fpu.st.rotate_right(t);
        cpu.set_fpu_top(0);
    }
    cpu.state.fpu.ftw = 0xff;
}

/// Working context of one arithmetic x87 instruction.
pub(super) struct Fx {
    pub c: Ctx,
    /// Destination format for FADD..FDIV/FSQRT (precision control applied).
    pub fmt: Format,
    /// Stack fault: Some(true) overflow, Some(false) underflow.
    pub stack: Option<bool>,
}

impl Fx {
    pub fn new(cpu: &Cpu) -> Fx {
        let fcw = cpu.state.fpu.fcw as u32;
        let mut c = Ctx::new(Rc::from_bits(fcw >> 10));
        c.ue_masked = fcw & sf::UE != 0;
        let prec = match (fcw >> 8) & 3 {
            0 => 24,
            2 => 53,
            _ => 64,
        };
        Fx {
            c,
            fmt: F80.with_prec(prec),
            stack: None,
        }
    }
    /// ST(i) as a value; an empty register is a stack underflow (the
    /// result is then the indefinite).
    pub fn get(&mut self, cpu: &Cpu, i: usize) -> Fp {
        if !cpu.st_valid(i) {
            self.underflow();
            return Fp::default_nan();
        }
        let (se, m) = cpu.st_raw(i);
        sf::unpack80(se, m)
    }
    pub fn underflow(&mut self) {
        self.c.raise(sf::IE);
        self.stack.get_or_insert(false);
    }
    /// Checks that a push has room (ST(7) empty).
    pub fn check_push(&mut self, cpu: &Cpu) {
        if cpu.st_valid(7) {
            self.c.raise(sf::IE);
            self.stack = Some(true);
        }
    }
    /// Masked stack fault: the result must be the indefinite.
    pub fn faulted(&self) -> bool {
        self.stack.is_some()
    }
    /// Reports flags into FSW; returns whether the destination may be
    /// written (no unmasked invalid/denormal/zero-divide).
    pub fn finish(&self, cpu: &mut Cpu) -> bool {
        let f = &mut cpu.state.fpu;
        let flags = (self.c.flags & 0x3f) as u16;
        f.fsw |= flags;
        f.fsw &= !sw::C1;
        match self.stack {
            Some(over) => {
                f.fsw |= sw::SF;
                if over {
                    f.fsw |= sw::C1;
                }
            }
            None => {
                if flags & sf::PE as u16 != 0 && self.c.rounded_up {
                    f.fsw |= sw::C1;
                }
            }
        }
        let unmasked = flags & !f.fcw & sw::FLAGS;
        cpu.fpu_update_es();
        unmasked & (sf::IE | sf::DE | sf::ZE) as u16 == 0
    }
    /// Rounds a value for storage into a register (full 80-bit range).
    pub fn reg_value(&self, v: Fp) -> (u16, u64) {
        if self.faulted() {
            return INDEFINITE;
        }
        sf::pack80(v)
    }
}

/// ST register index of an iced register.
#[inline]
pub(super) fn st_n(r: Register) -> usize {
    (r as usize).wrapping_sub(Register::ST0 as usize) & 7
}

/// Reads `size` bytes of the memory operand.
pub(super) fn mem_read(
    cpu: &mut Cpu,
    bus: &mut dyn CpuBus,
    i: &Instruction,
    size: usize,
) -> XResult<V> {
    read_mem(cpu, bus, i, size, false)
}

pub(super) fn mem_write(
    cpu: &mut Cpu,
    bus: &mut dyn CpuBus,
    i: &Instruction,
    v: &V,
    size: usize,
) -> XResult<()> {
    write_mem(cpu, bus, i, v, size, false)
}

/// Records FIP/FDP/FOP for a non-control instruction. FOP is the low 3
/// bits of the first opcode byte and the ModRM byte; for memory forms only
/// the ModRM reg field is reconstructed (mod/rm read as 0).
fn record_ip(cpu: &mut Cpu, i: &Instruction) {
    let oc = i.op_code();
    let opc = oc.op_code();
    let has_mem = (0..i.op_count()).any(|k| i.op_kind(k) == OpKind::Memory);
    let fop = if oc.op_code_len() >= 2 {
        // D9 E8, D8 C0+i...: the second byte is the ModRM byte (+ ST(i)).
        let sti = (0..i.op_count())
            .filter(|&k| i.op_kind(k) == OpKind::Register)
            .map(|k| st_n(i.op_register(k)) as u32)
            .max()
            .unwrap_or(0);
        (((opc >> 8) & 7) << 8) | ((opc & 0xff) + sti)
    } else {
        ((opc & 7) << 8) | ((oc.group_index().max(0) as u32 & 7) << 3)
    };
    if has_mem {
        cpu.state.fpu.fdp = cpu.ea(i);
    }
    cpu.state.fpu.fop = (fop & 0x7ff) as u16;
    cpu.state.fpu.fip = cpu.state.rip;
}

/// FNINIT state.
pub(super) fn fninit(cpu: &mut Cpu) {
    let f = &mut cpu.state.fpu;
    f.fcw = 0x37f;
    f.fsw = 0;
    f.ftw = 0;
    f.fop = 0;
    f.fip = 0;
    f.fdp = 0;
}

pub fn exec(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let m = i.mnemonic();
    match m {
        M::Wait => {
            let c = cpu.state.cr0;
            if c & cr0::TS != 0 && c & cr0::MP != 0 {
                return Err(Exception::nm());
            }
            return pending(cpu);
        }
        M::Fxsave | M::Fxsave64 | M::Fxrstor | M::Fxrstor64 => {
            check_nm(cpu)?;
            return x87_env::fxsave_fxrstor(cpu, bus, i);
        }
        _ => {}
    }
    check_nm(cpu)?;
    // The waiting forms (9B-prefixed) and every non-control instruction
    // first report a pending exception.
    let control = matches!(
        m,
        M::Fninit
            | M::Fnclex
            | M::Fnstcw
            | M::Fnstsw
            | M::Fnstenv
            | M::Fnsave
            | M::Fneni
            | M::Fndisi
            | M::Fnsetpm
    );
    if !control {
        pending(cpu)?;
    }
    let is_ctl = control
        || matches!(
            m,
            M::Finit
                | M::Fclex
                | M::Fstcw
                | M::Fstsw
                | M::Fstenv
                | M::Fsave
                | M::Fldcw
                | M::Fldenv
                | M::Frstor
        );
    if !is_ctl {
        record_ip(cpu, i);
    }
    match m {
        M::Fninit | M::Finit => {
            fninit(cpu);
            Ok(())
        }
        M::Fnclex | M::Fclex => {
            cpu.state.fpu.fsw &= !(sw::FLAGS | sw::SF | sw::ES | sw::B);
            Ok(())
        }
        M::Fldcw => {
            let v = mem_read(cpu, bus, i, 2)?;
            cpu.state.fpu.fcw = (u16::from_le_bytes([v[0], v[1]]) & 0x1f3f) | 0x40;
            cpu.fpu_update_es();
            Ok(())
        }
        M::Fnstcw | M::Fstcw => {
            let mut v = [0u8; 16];
            v[..2].copy_from_slice(&cpu.state.fpu.fcw.to_le_bytes());
            mem_write(cpu, bus, i, &v, 2)
        }
        M::Fnstsw | M::Fstsw => {
            let s = cpu.state.fpu.fsw;
            if i.op0_kind() == OpKind::Register {
                cpu.set_reg(Register::AX, s as u64);
                Ok(())
            } else {
                let mut v = [0u8; 16];
                v[..2].copy_from_slice(&s.to_le_bytes());
                mem_write(cpu, bus, i, &v, 2)
            }
        }
        M::Fnstenv | M::Fstenv | M::Fldenv | M::Fnsave | M::Fsave | M::Frstor => {
            x87_env::env(cpu, bus, i)
        }
        M::Fneni | M::Feni | M::Fndisi | M::Fdisi | M::Fnsetpm | M::Fsetpm | M::Fnop => Ok(()),
        M::Fincstp | M::Fdecstp => {
            if m == M::Fincstp {
                cpu.fpu_inc_top();
            } else {
                cpu.fpu_dec_top();
            }
            cpu.state.fpu.fsw &= !sw::C1;
            Ok(())
        }
        M::Ffree | M::Ffreep => {
            let n = st_n(i.op0_register());
            cpu.set_st_valid(n, false);
            if m == M::Ffreep {
                cpu.fpu_pop();
            }
            Ok(())
        }
        M::Fxch => fxch(cpu, i),
        M::Fchs | M::Fabs => {
            let mut fx = Fx::new(cpu);
            let (se, mm) = if cpu.st_valid(0) {
                cpu.st_raw(0)
            } else {
                fx.underflow();
                INDEFINITE
            };
            if fx.finish(cpu) {
                let se = if m == M::Fchs {
                    se ^ 0x8000
                } else {
                    se & 0x7fff
                };
                let v = if fx.faulted() { INDEFINITE } else { (se, mm) };
                cpu.set_st_raw(0, v);
                cpu.set_st_valid(0, true);
            }
            Ok(())
        }
        M::Fcmovb
        | M::Fcmovbe
        | M::Fcmove
        | M::Fcmovnb
        | M::Fcmovnbe
        | M::Fcmovne
        | M::Fcmovnu
        | M::Fcmovu => fcmov(cpu, i),
        _ => x87_arith::exec(cpu, bus, i),
    }
}

fn fxch(cpu: &mut Cpu, i: &Instruction) -> XResult<()> {
    let n = if i.op_count() >= 2 {
        st_n(i.op1_register())
    } else {
        1
    };
    let mut fx = Fx::new(cpu);
    let (va, vb) = (cpu.st_valid(0), cpu.st_valid(n));
    if !va || !vb {
        fx.underflow();
    }
    if !fx.finish(cpu) {
        return Ok(());
    }
    let a = if va { cpu.st_raw(0) } else { INDEFINITE };
    let b = if vb { cpu.st_raw(n) } else { INDEFINITE };
    cpu.set_st_raw(0, b);
    cpu.set_st_raw(n, a);
    cpu.set_st_valid(0, true);
    cpu.set_st_valid(n, true);
    Ok(())
}

fn fcmov(cpu: &mut Cpu, i: &Instruction) -> XResult<()> {
    use crate::consts::rflags::{CF, PF, ZF};
    let rf = cpu.state.rflags;
    let c = match i.mnemonic() {
        M::Fcmovb => rf & CF != 0,
        M::Fcmove => rf & ZF != 0,
        M::Fcmovbe => rf & (CF | ZF) != 0,
        M::Fcmovu => rf & PF != 0,
        M::Fcmovnb => rf & CF == 0,
        M::Fcmovne => rf & ZF == 0,
        M::Fcmovnbe => rf & (CF | ZF) == 0,
        _ => rf & PF == 0,
    };
    let n = st_n(i.op1_register());
    let mut fx = Fx::new(cpu);
    if !cpu.st_valid(0) || !cpu.st_valid(n) {
        fx.underflow();
    }
    if !fx.finish(cpu) {
        return Ok(());
    }
    if fx.faulted() {
        cpu.set_st_raw(0, INDEFINITE);
        cpu.set_st_valid(0, true);
    } else if c {
        let v = cpu.st_raw(n);
        cpu.set_st_raw(0, v);
    }
    Ok(())
}

#[cfg(test)]
#[path = "tests_x87.rs"]
mod tests;
