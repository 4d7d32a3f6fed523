//! Packed and scalar single/double arithmetic, MIN/MAX, SQRT, RCP/RSQRT,
//! CMPxx, (U)COMISx, horizontal ops, ADDSUB, DPPS/DPPD.
//!
//! All arithmetic goes through [`super::softfloat`], so results are
//! correctly rounded in every MXCSR rounding mode, with DAZ/FTZ and the
//! exception flags; unmasked exceptions raise #XM (or #UD when
//! CR4.OSXMMEXCPT=0) without writing the destination.

use iced_x86::{Instruction, Mnemonic as M};

use super::softfloat::{self as sf, Cls, Ctx, Format, Fp, NanRule, Ord3, F32, F64};
use super::sse::{lane, mx_ctx, mx_finish, rd, set_lane, set_reg_v, V};
use super::Cpu;
use crate::bus::CpuBus;
use crate::consts::rflags::{AF, CF, OF, PF, SF, ZF};
use crate::exception::XResult;

/// Element type of an instruction.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct Ty {
    pub dbl: bool,
    pub scalar: bool,
}

impl Ty {
    pub fn w(self) -> usize {
        if self.dbl {
            8
        } else {
            4
        }
    }
    pub fn fmt(self) -> Format {
        if self.dbl {
            F64
        } else {
            F32
        }
    }
    pub fn count(self) -> usize {
        if self.scalar {
            1
        } else {
            16 / self.w()
        }
    }
}

pub(super) fn unpack(ctx: &mut Ctx, x: u64, dbl: bool) -> Fp {
    if dbl {
        sf::unpack64(ctx, x)
    } else {
        sf::unpack32(ctx, x as u32)
    }
}

pub(super) fn pack(v: Fp, dbl: bool) -> u64 {
    if dbl {
        sf::pack64(v)
    } else {
        sf::pack32(v) as u64
    }
}

fn ty_of(m: M) -> Ty {
    let dbl = matches!(
        m,
        M::Addpd
            | M::Addsd
            | M::Subpd
            | M::Subsd
            | M::Mulpd
            | M::Mulsd
            | M::Divpd
            | M::Divsd
            | M::Sqrtpd
            | M::Sqrtsd
            | M::Minpd
            | M::Minsd
            | M::Maxpd
            | M::Maxsd
            | M::Cmppd
            | M::Cmpsd
            | M::Comisd
            | M::Ucomisd
            | M::Haddpd
            | M::Hsubpd
            | M::Addsubpd
            | M::Dppd
    );
    let scalar = matches!(
        m,
        M::Addss
            | M::Addsd
            | M::Subss
            | M::Subsd
            | M::Mulss
            | M::Mulsd
            | M::Divss
            | M::Divsd
            | M::Sqrtss
            | M::Sqrtsd
            | M::Minss
            | M::Minsd
            | M::Maxss
            | M::Maxsd
            | M::Rcpss
            | M::Rsqrtss
            | M::Cmpss
            | M::Cmpsd
            | M::Comiss
            | M::Comisd
            | M::Ucomiss
            | M::Ucomisd
    );
    Ty { dbl, scalar }
}

/// Lane-wise `dst = f(dst, src)`; scalar forms keep the upper lanes of dst.
fn lanes(
    cpu: &mut Cpu,
    bus: &mut dyn CpuBus,
    i: &Instruction,
    t: Ty,
    f: impl Fn(&mut Ctx, Fp, Fp) -> Fp,
) -> XResult<()> {
    let a = rd(cpu, bus, i, 0, true)?;
    let b = rd(cpu, bus, i, 1, !t.scalar)?;
    let mut ctx = mx_ctx(cpu);
    let w = t.w();
    let mut r = a;
    for k in 0..t.count() {
        let x = unpack(&mut ctx, lane(&a, w, k), t.dbl);
        let y = unpack(&mut ctx, lane(&b, w, k), t.dbl);
        let z = f(&mut ctx, x, y);
        set_lane(&mut r, w, k, pack(z, t.dbl));
    }
    mx_finish(cpu, &ctx)?;
    set_reg_v(cpu, i.op0_register(), r);
    Ok(())
}

pub fn exec(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let m = i.mnemonic();
    let t = ty_of(m);
    let fmt = t.fmt();
    const R: NanRule = NanRule::Sse;
    match m {
        M::Addps | M::Addpd | M::Addss | M::Addsd => {
            lanes(cpu, bus, i, t, |c, x, y| sf::add(c, fmt, R, x, y, false))
        }
        M::Subps | M::Subpd | M::Subss | M::Subsd => {
            lanes(cpu, bus, i, t, |c, x, y| sf::add(c, fmt, R, x, y, true))
        }
        M::Mulps | M::Mulpd | M::Mulss | M::Mulsd => {
            lanes(cpu, bus, i, t, |c, x, y| sf::mul(c, fmt, R, x, y))
        }
        M::Divps | M::Divpd | M::Divss | M::Divsd => {
            lanes(cpu, bus, i, t, |c, x, y| sf::div(c, fmt, R, x, y))
        }
        M::Sqrtps | M::Sqrtpd | M::Sqrtss | M::Sqrtsd => {
            lanes(cpu, bus, i, t, |c, _, y| sf::sqrt(c, fmt, y))
        }
        M::Minps | M::Minpd | M::Minss | M::Minsd => {
            lanes(cpu, bus, i, t, |c, x, y| minmax(c, x, y, false))
        }
        M::Maxps | M::Maxpd | M::Maxss | M::Maxsd => {
            lanes(cpu, bus, i, t, |c, x, y| minmax(c, x, y, true))
        }
        M::Rcpps | M::Rcpss | M::Rsqrtps | M::Rsqrtss => {
            approx(cpu, bus, i, t, matches!(m, M::Rsqrtps | M::Rsqrtss))
        }
        M::Cmpps | M::Cmppd | M::Cmpss | M::Cmpsd => cmp(cpu, bus, i, t),
        M::Comiss | M::Comisd | M::Ucomiss | M::Ucomisd => {
            comis(cpu, bus, i, t, matches!(m, M::Comiss | M::Comisd))
        }
        M::Haddps | M::Haddpd | M::Hsubps | M::Hsubpd => {
            horiz(cpu, bus, i, t, matches!(m, M::Hsubps | M::Hsubpd))
        }
        M::Addsubps | M::Addsubpd => {
            let a = rd(cpu, bus, i, 0, true)?;
            let b = rd(cpu, bus, i, 1, true)?;
            let mut ctx = mx_ctx(cpu);
            let w = t.w();
            let mut r = a;
            for k in 0..t.count() {
                let x = unpack(&mut ctx, lane(&a, w, k), t.dbl);
                let y = unpack(&mut ctx, lane(&b, w, k), t.dbl);
                let z = sf::add(&mut ctx, fmt, R, x, y, k % 2 == 0);
                set_lane(&mut r, w, k, pack(z, t.dbl));
            }
            mx_finish(cpu, &ctx)?;
            set_reg_v(cpu, i.op0_register(), r);
            Ok(())
        }
        M::Dpps | M::Dppd => dp(cpu, bus, i, t),
        _ => Err(cpu.unimplemented(i)),
    }
}

/// MIN/MAX: a NaN in either operand (IE, even for QNaNs) or two zeros
/// return the second operand; otherwise the smaller/larger.
fn minmax(c: &mut Ctx, x: Fp, y: Fp, max: bool) -> Fp {
    let o = sf::compare(c, x, y, true);
    let first = if max {
        o == Ord3::Greater
    } else {
        o == Ord3::Less
    };
    if first {
        x
    } else {
        y
    }
}

/// RCPxS/RSQRTxS. Results are the correctly rounded reciprocal (square
/// root) rather than the hardware's 12-bit table approximation; they are
/// within the architectural error bound. No exceptions are reported.
fn approx(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction, t: Ty, rsqrt: bool) -> XResult<()> {
    let a = rd(cpu, bus, i, 0, true)?;
    let b = rd(cpu, bus, i, 1, !t.scalar)?;
    let mut r = a;
    for k in 0..t.count() {
        let x = lane(&b, 4, k) as u32;
        set_lane(&mut r, 4, k, approx1(x, rsqrt) as u64);
    }
    set_reg_v(cpu, i.op0_register(), r);
    Ok(())
}

pub(super) fn approx1(x: u32, rsqrt: bool) -> u32 {
    let v = sf::peek32(x);
    let sign = x & 0x8000_0000;
    match v.cls {
        Cls::NaN | Cls::Unsupported => x | 0x0040_0000,
        _ if v.den || v.cls == Cls::Zero => sign | 0x7f80_0000,
        _ if rsqrt && v.sign => 0xffc0_0000,
        Cls::Inf => sign,
        _ => {
            let f = f32::from_bits(x) as f64;
            let r = if rsqrt { 1.0 / f.sqrt() } else { 1.0 / f };
            if r.abs() < f32::MIN_POSITIVE as f64 {
                sign
            } else {
                (r as f32).to_bits()
            }
        }
    }
}

/// Evaluates a CMPPS-style predicate (imm8 bits 2:0).
pub(super) fn predicate(c: &mut Ctx, x: Fp, y: Fp, p: u8) -> bool {
    let signaling = matches!(p & 7, 1 | 2 | 5 | 6);
    let o = sf::compare(c, x, y, signaling);
    match p & 7 {
        0 => o == Ord3::Equal,
        1 => o == Ord3::Less,
        2 => matches!(o, Ord3::Less | Ord3::Equal),
        3 => o == Ord3::Unordered,
        4 => o != Ord3::Equal,
        5 => o != Ord3::Less,
        6 => !matches!(o, Ord3::Less | Ord3::Equal),
        _ => o != Ord3::Unordered,
    }
}

fn cmp(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction, t: Ty) -> XResult<()> {
    let p = i.immediate8();
    let a = rd(cpu, bus, i, 0, true)?;
    let b = rd(cpu, bus, i, 1, !t.scalar)?;
    let mut ctx = mx_ctx(cpu);
    let w = t.w();
    let mut r = a;
    for k in 0..t.count() {
        let x = unpack(&mut ctx, lane(&a, w, k), t.dbl);
        let y = unpack(&mut ctx, lane(&b, w, k), t.dbl);
        let v = if predicate(&mut ctx, x, y, p) {
            u64::MAX
        } else {
            0
        };
        set_lane(&mut r, w, k, v);
    }
    mx_finish(cpu, &ctx)?;
    set_reg_v(cpu, i.op0_register(), r);
    Ok(())
}

fn comis(
    cpu: &mut Cpu,
    bus: &mut dyn CpuBus,
    i: &Instruction,
    t: Ty,
    signaling: bool,
) -> XResult<()> {
    let a = rd(cpu, bus, i, 0, true)?;
    let b = rd(cpu, bus, i, 1, false)?;
    let mut ctx = mx_ctx(cpu);
    let w = t.w();
    let x = unpack(&mut ctx, lane(&a, w, 0), t.dbl);
    let y = unpack(&mut ctx, lane(&b, w, 0), t.dbl);
    let o = sf::compare(&mut ctx, x, y, signaling);
    mx_finish(cpu, &ctx)?;
    let f = match o {
        Ord3::Unordered => ZF | PF | CF,
        Ord3::Less => CF,
        Ord3::Equal => ZF,
        Ord3::Greater => 0,
    };
    cpu.set_flags(CF | PF | AF | ZF | SF | OF, f);
    Ok(())
}

/// HADDPx/HSUBPx: pairs of dst, then pairs of src.
fn horiz(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction, t: Ty, sub: bool) -> XResult<()> {
    let a = rd(cpu, bus, i, 0, true)?;
    let b = rd(cpu, bus, i, 1, true)?;
    let mut ctx = mx_ctx(cpu);
    let w = t.w();
    let fmt = t.fmt();
    let half = t.count() / 2;
    let mut r = [0u8; 16];
    for (src, base) in [(&a, 0), (&b, half)] {
        for k in 0..half {
            let x = unpack(&mut ctx, lane(src, w, 2 * k), t.dbl);
            let y = unpack(&mut ctx, lane(src, w, 2 * k + 1), t.dbl);
            let z = sf::add(&mut ctx, fmt, NanRule::Sse, x, y, sub);
            set_lane(&mut r, w, base + k, pack(z, t.dbl));
        }
    }
    mx_finish(cpu, &ctx)?;
    set_reg_v(cpu, i.op0_register(), r);
    Ok(())
}

/// An intermediate result as the next step sees it (denormals flagged,
/// DAZ applied), as if it had gone through a register.
fn repack(ctx: &mut Ctx, v: Fp, dbl: bool) -> Fp {
    unpack(ctx, pack(v, dbl), dbl)
}

/// DPPS/DPPD: masked products, summed pairwise, broadcast under a mask.
fn dp(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction, t: Ty) -> XResult<()> {
    let imm = i.immediate8() as usize;
    let a = rd(cpu, bus, i, 0, true)?;
    let b = rd(cpu, bus, i, 1, true)?;
    let mut ctx = mx_ctx(cpu);
    let w = t.w();
    let fmt = t.fmt();
    let n = t.count();
    const R: NanRule = NanRule::Sse;
    let mut p = [Fp::zero(false); 4];
    for (k, pk) in p.iter_mut().enumerate().take(n) {
        if imm >> (4 + k) & 1 != 0 {
            let x = unpack(&mut ctx, lane(&a, w, k), t.dbl);
            let y = unpack(&mut ctx, lane(&b, w, k), t.dbl);
            let z = sf::mul(&mut ctx, fmt, R, x, y);
            *pk = repack(&mut ctx, z, t.dbl);
        }
    }
    let s = if n == 4 {
        let s01 = sf::add(&mut ctx, fmt, R, p[0], p[1], false);
        let s01 = repack(&mut ctx, s01, t.dbl);
        let s23 = sf::add(&mut ctx, fmt, R, p[2], p[3], false);
        let s23 = repack(&mut ctx, s23, t.dbl);
        sf::add(&mut ctx, fmt, R, s01, s23, false)
    } else {
        sf::add(&mut ctx, fmt, R, p[0], p[1], false)
    };
    let sv = pack(s, t.dbl);
    let mut r: V = [0; 16];
    for k in 0..n {
        if imm >> k & 1 != 0 {
            set_lane(&mut r, w, k, sv);
        }
    }
    mx_finish(cpu, &ctx)?;
    set_reg_v(cpu, i.op0_register(), r);
    Ok(())
}
