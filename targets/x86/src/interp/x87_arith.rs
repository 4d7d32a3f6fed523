//! x87 loads, stores, arithmetic, compares and the exact "number theory"
//! instructions (FSQRT, FRNDINT, FSCALE, FXTRACT, FPREM, FPREM1).

use iced_x86::{Instruction, MemorySize, Mnemonic as M, OpKind};

use super::softfloat::{self as sf, Cls, Fp, NanRule, Ord3, Rc, F32, F64, F80};
use super::x87::{mem_read, mem_write, st_n, sw, Fx, INDEFINITE};
use super::{x87_trans, Cpu};
use crate::bus::CpuBus;
use crate::consts::rflags::{AF, CF, OF, PF, SF, ZF};
use crate::exception::XResult;

const R: NanRule = NanRule::X87;

pub fn exec(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    match i.mnemonic() {
        M::Fld | M::Fild | M::Fbld => fld(cpu, bus, i),
        M::Fld1 | M::Fldz | M::Fldpi | M::Fldl2e | M::Fldl2t | M::Fldlg2 | M::Fldln2 => {
            fldconst(cpu, i)
        }
        M::Fst | M::Fstp => fst(cpu, bus, i),
        M::Fist | M::Fistp | M::Fisttp | M::Fbstp => fist(cpu, bus, i),
        M::Fadd
        | M::Faddp
        | M::Fiadd
        | M::Fsub
        | M::Fsubp
        | M::Fisub
        | M::Fsubr
        | M::Fsubrp
        | M::Fisubr
        | M::Fmul
        | M::Fmulp
        | M::Fimul
        | M::Fdiv
        | M::Fdivp
        | M::Fidiv
        | M::Fdivr
        | M::Fdivrp
        | M::Fidivr => arith(cpu, bus, i),
        M::Fcom
        | M::Fcomp
        | M::Fcompp
        | M::Fucom
        | M::Fucomp
        | M::Fucompp
        | M::Ficom
        | M::Ficomp
        | M::Ftst => fcom(cpu, bus, i),
        M::Fcomi | M::Fcomip | M::Fucomi | M::Fucomip => fcomi(cpu, i),
        M::Fxam => {
            fxam(cpu);
            Ok(())
        }
        M::Fsqrt | M::Frndint => unary(cpu, i),
        M::Fscale => fscale(cpu),
        M::Fxtract => fxtract(cpu),
        M::Fprem | M::Fprem1 => fprem(cpu, i.mnemonic() == M::Fprem1),
        M::F2xm1
        | M::Fyl2x
        | M::Fyl2xp1
        | M::Fptan
        | M::Fpatan
        | M::Fsin
        | M::Fcos
        | M::Fsincos => x87_trans::exec(cpu, i),
        _ => Err(cpu.unimplemented(i)),
    }
}

fn has_mem(i: &Instruction) -> bool {
    (0..i.op_count()).any(|k| i.op_kind(k) == OpKind::Memory)
}

/// Loads the memory operand as a value (floats, integers, packed BCD).
fn load_mem(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<Fp> {
    let ms = i.memory_size();
    let v = mem_read(cpu, bus, i, ms.size())?;
    let q = u64::from_le_bytes([v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]]);
    let mut c = sf::Ctx::new(Rc::Nearest);
    Ok(match ms {
        MemorySize::Float32 => sf::unpack32(&mut c, q as u32),
        MemorySize::Float64 => sf::unpack64(&mut c, q),
        MemorySize::Float80 => sf::unpack80(u16::from_le_bytes([v[8], v[9]]), q),
        MemorySize::Int16 => Fp::from_i64(q as u16 as i16 as i64),
        MemorySize::Int32 => Fp::from_i64(q as u32 as i32 as i64),
        MemorySize::Int64 => Fp::from_i64(q as i64),
        MemorySize::Bcd => {
            let mut n: u64 = 0;
            for k in (0..9).rev() {
                let b = v[k] as u64;
                n = n.wrapping_mul(100).wrapping_add((b >> 4) * 10 + (b & 15));
            }
            Fp::from_u64(v[9] & 0x80 != 0, n)
        }
        _ => return Err(cpu.unimplemented(i)),
    })
}

fn fld(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let mut fx = Fx::new(cpu);
    let raw = if !has_mem(i) {
        // FLD ST(i) copies the register.
        let n = st_n(i.op0_register());
        if cpu.st_valid(n) {
            cpu.st_raw(n)
        } else {
            fx.underflow();
            INDEFINITE
        }
    } else if i.memory_size() == MemorySize::Float80 {
        // FLD m80 copies the encoding as is (no exceptions).
        let a = mem_read(cpu, bus, i, 10)?;
        let q = u64::from_le_bytes([a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]]);
        (u16::from_le_bytes([a[8], a[9]]), q)
    } else {
        let v = load_mem(cpu, bus, i)?;
        let v = match sf::nan_one(&mut fx.c, v) {
            Some(n) => n,
            None => {
                sf::den_check(&mut fx.c, v, v);
                v
            }
        };
        sf::pack80(sf::round_fp(&mut fx.c, F80, v))
    };
    fx.check_push(cpu);
    let r = if fx.faulted() { INDEFINITE } else { raw };
    if fx.finish(cpu) {
        cpu.fpu_push(r);
    }
    Ok(())
}

fn fldconst(cpu: &mut Cpu, i: &Instruction) -> XResult<()> {
    let rc = Rc::from_bits(cpu.state.fpu.fcw as u32 >> 10);
    // (exponent, significand rounded to nearest, true value above it).
    let (se, m, above) = match i.mnemonic() {
        M::Fld1 => (0x3fff, 1u64 << 63, None),
        M::Fldz => (0, 0, None),
        M::Fldl2t => (0x4000, 0xd49a_784b_cd1b_8afe, Some(true)),
        M::Fldl2e => (0x3fff, 0xb8aa_3b29_5c17_f0bc, Some(false)),
        M::Fldpi => (0x4000, 0xc90f_daa2_2168_c235, Some(false)),
        M::Fldlg2 => (0x3ffd, 0x9a20_9a84_fbcf_f799, Some(false)),
        _ => (0x3ffe, 0xb172_17f7_d1cf_79ac, Some(false)),
    };
    let m = match (above, rc) {
        (Some(true), Rc::Up) => m + 1,
        (Some(false), Rc::Down | Rc::Zero) => m - 1,
        _ => m,
    };
    let mut fx = Fx::new(cpu);
    fx.check_push(cpu);
    if fx.finish(cpu) {
        let r = if fx.faulted() { INDEFINITE } else { (se, m) };
        cpu.fpu_push(r);
    }
    Ok(())
}

fn fst(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let pop = i.mnemonic() == M::Fstp;
    let mut fx = Fx::new(cpu);
    let valid = cpu.st_valid(0);
    if !valid {
        fx.underflow();
    }
    if !has_mem(i) {
        let n = st_n(i.op0_register());
        if fx.finish(cpu) {
            let v = if valid { cpu.st_raw(0) } else { INDEFINITE };
            cpu.set_st_raw(n, v);
            cpu.set_st_valid(n, true);
            if pop {
                cpu.fpu_pop();
            }
        }
        return Ok(());
    }
    let ms = i.memory_size();
    let raw = if valid { cpu.st_raw(0) } else { INDEFINITE };
    let mut out = [0u8; 16];
    let size = match ms {
        MemorySize::Float80 => {
            out[..8].copy_from_slice(&raw.1.to_le_bytes());
            out[8..10].copy_from_slice(&raw.0.to_le_bytes());
            10
        }
        _ => {
            let v = sf::unpack80(raw.0, raw.1);
            let v = sf::nan_one(&mut fx.c, v).unwrap_or(v);
            let dbl = ms == MemorySize::Float64;
            let r = sf::round_fp(&mut fx.c, if dbl { F64 } else { F32 }, v);
            if dbl {
                out[..8].copy_from_slice(&sf::pack64(r).to_le_bytes());
                8
            } else {
                out[..4].copy_from_slice(&sf::pack32(r).to_le_bytes());
                4
            }
        }
    };
    // The store (and the pop) happen unless an unmasked exception other
    // than precision was raised; a faulting write leaves the FPU unchanged.
    let store = store_ok(cpu, &fx);
    if store {
        mem_write(cpu, bus, i, &out, size)?;
    }
    fx.finish(cpu);
    if store && pop {
        cpu.fpu_pop();
    }
    Ok(())
}

/// A memory store happens unless an unmasked IE/DE/ZE/OE/UE is raised.
fn store_ok(cpu: &Cpu, fx: &Fx) -> bool {
    let unmasked = fx.c.flags as u16 & !cpu.state.fpu.fcw & 0x1f;
    unmasked == 0
}

fn fist(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let m = i.mnemonic();
    let mut fx = Fx::new(cpu);
    let v = fx.get(cpu, 0);
    let ms = i.memory_size();
    let mut out = [0u8; 16];
    let size = ms.size();
    if m == M::Fbstp {
        let rc = fx.c.rc;
        let r = match v.cls {
            Cls::Zero => Some(0u64),
            Cls::Finite => {
                // Out of range is invalid only (no precision flag).
                let mut c = sf::Ctx::new(rc);
                let r = sf::to_int(&mut c, v, rc, 64)
                    .map(|x| x.unsigned_abs())
                    .filter(|&x| x < 1_000_000_000_000_000_000);
                if r.is_some() {
                    fx.c.flags |= c.flags;
                    fx.c.rounded_up = c.rounded_up;
                }
                r
            }
            _ => None,
        };
        match r {
            Some(mut x) if !fx.faulted() => {
                for b in out.iter_mut().take(9) {
                    let lo = x % 10;
                    x /= 10;
                    let hi = x % 10;
                    x /= 10;
                    *b = ((hi << 4) | lo) as u8;
                }
                out[9] = if v.sign { 0x80 } else { 0 };
            }
            _ => {
                fx.c.raise(sf::IE);
                out[7] = 0xc0;
                out[8] = 0xff;
                out[9] = 0xff;
            }
        }
    } else {
        let bits = (size * 8).clamp(16, 64) as u32;
        let rc = if m == M::Fisttp { Rc::Zero } else { fx.c.rc };
        let x = if fx.faulted() {
            None
        } else {
            sf::to_int(&mut fx.c, v, rc, bits)
        };
        let x = match x {
            Some(x) => x as u64,
            None => {
                fx.c.raise(sf::IE);
                1u64 << (bits - 1)
            }
        };
        out[..8].copy_from_slice(&x.to_le_bytes());
    }
    let store = store_ok(cpu, &fx);
    if store {
        mem_write(cpu, bus, i, &out, size)?;
    }
    fx.finish(cpu);
    if store && m != M::Fist {
        cpu.fpu_pop();
    }
    Ok(())
}

fn arith(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let m = i.mnemonic();
    let mut fx = Fx::new(cpu);
    let (dst, a, b) = if has_mem(i) {
        let b = load_mem(cpu, bus, i)?;
        (0, fx.get(cpu, 0), b)
    } else {
        let (d, s) = match i.op_count() {
            2 => (st_n(i.op0_register()), st_n(i.op1_register())),
            1 => (0, st_n(i.op0_register())),
            _ => (1, 0),
        };
        (d, fx.get(cpu, d), fx.get(cpu, s))
    };
    let fmt = fx.fmt;
    let c = &mut fx.c;
    let r = match m {
        M::Fadd | M::Faddp | M::Fiadd => sf::add(c, fmt, R, a, b, false),
        M::Fsub | M::Fsubp | M::Fisub => sf::add(c, fmt, R, a, b, true),
        M::Fsubr | M::Fsubrp | M::Fisubr => sf::add(c, fmt, R, b, a, true),
        M::Fmul | M::Fmulp | M::Fimul => sf::mul(c, fmt, R, a, b),
        M::Fdiv | M::Fdivp | M::Fidiv => sf::div(c, fmt, R, a, b),
        _ => sf::div(c, fmt, R, b, a),
    };
    let r = fx.reg_value(r);
    if fx.finish(cpu) {
        cpu.set_st_raw(dst, r);
        cpu.set_st_valid(dst, true);
        if matches!(
            m,
            M::Faddp | M::Fsubp | M::Fsubrp | M::Fmulp | M::Fdivp | M::Fdivrp
        ) {
            cpu.fpu_pop();
        }
    }
    Ok(())
}

/// Sets C3/C2/C0 from a comparison (C1 is cleared by `finish`).
fn set_cc(cpu: &mut Cpu, o: Ord3) {
    let cc = match o {
        Ord3::Greater => 0,
        Ord3::Less => sw::C0,
        Ord3::Equal => sw::C3,
        Ord3::Unordered => sw::C3 | sw::C2 | sw::C0,
    };
    let f = &mut cpu.state.fpu.fsw;
    *f = (*f & !(sw::C0 | sw::C2 | sw::C3)) | cc;
}

fn fcom(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let m = i.mnemonic();
    let mut fx = Fx::new(cpu);
    let b = if has_mem(i) {
        load_mem(cpu, bus, i)?
    } else if m == M::Ftst {
        Fp::zero(false)
    } else {
        let n = match i.op_count() {
            2 => st_n(i.op1_register()),
            1 => st_n(i.op0_register()),
            _ => 1,
        };
        fx.get(cpu, n)
    };
    let a = fx.get(cpu, 0);
    let quiet = matches!(m, M::Fucom | M::Fucomp | M::Fucompp);
    let o = if fx.faulted() {
        fx.c.raise(sf::IE);
        Ord3::Unordered
    } else {
        sf::compare(&mut fx.c, a, b, !quiet)
    };
    if fx.finish(cpu) {
        set_cc(cpu, o);
        let pops = match m {
            M::Fcomp | M::Fucomp | M::Ficomp => 1,
            M::Fcompp | M::Fucompp => 2,
            _ => 0,
        };
        for _ in 0..pops {
            cpu.fpu_pop();
        }
    }
    Ok(())
}

fn fcomi(cpu: &mut Cpu, i: &Instruction) -> XResult<()> {
    let m = i.mnemonic();
    let mut fx = Fx::new(cpu);
    let n = if i.op_count() >= 2 {
        st_n(i.op1_register())
    } else {
        1
    };
    let a = fx.get(cpu, 0);
    let b = fx.get(cpu, n);
    let quiet = matches!(m, M::Fucomi | M::Fucomip);
    let o = if fx.faulted() {
        Ord3::Unordered
    } else {
        sf::compare(&mut fx.c, a, b, !quiet)
    };
    if fx.finish(cpu) {
        let f = match o {
            Ord3::Unordered => ZF | PF | CF,
            Ord3::Less => CF,
            Ord3::Equal => ZF,
            Ord3::Greater => 0,
        };
        cpu.set_flags(CF | PF | AF | ZF | SF | OF, f);
        if matches!(m, M::Fcomip | M::Fucomip) {
            cpu.fpu_pop();
        }
    }
    Ok(())
}

fn fxam(cpu: &mut Cpu) {
    let (se, m) = cpu.st_raw(0);
    let cc = if !cpu.st_valid(0) {
        sw::C3 | sw::C0
    } else {
        let v = sf::unpack80(se, m);
        match v.cls {
            Cls::Unsupported => 0,
            Cls::NaN => sw::C0,
            Cls::Inf => sw::C2 | sw::C0,
            Cls::Zero => sw::C3,
            Cls::Finite if se & 0x7fff == 0 => sw::C3 | sw::C2,
            Cls::Finite => sw::C2,
        }
    };
    let c1 = if se & 0x8000 != 0 { sw::C1 } else { 0 };
    let f = &mut cpu.state.fpu.fsw;
    *f = (*f & !sw::CC) | cc | c1;
}

/// FSQRT, FRNDINT.
fn unary(cpu: &mut Cpu, i: &Instruction) -> XResult<()> {
    let mut fx = Fx::new(cpu);
    let a = fx.get(cpu, 0);
    let r = if i.mnemonic() == M::Fsqrt {
        sf::sqrt(&mut fx.c, fx.fmt, a)
    } else {
        match sf::nan_one(&mut fx.c, a) {
            Some(n) => n,
            None => {
                sf::den_check(&mut fx.c, a, a);
                let rc = fx.c.rc;
                sf::round_int(&mut fx.c, a, rc, false)
            }
        }
    };
    let r = fx.reg_value(r);
    if fx.finish(cpu) {
        cpu.set_st_raw(0, r);
    }
    Ok(())
}

/// FSCALE: ST0 *= 2^trunc(ST1).
fn fscale(cpu: &mut Cpu) -> XResult<()> {
    let mut fx = Fx::new(cpu);
    let a = fx.get(cpu, 0);
    let b = fx.get(cpu, 1);
    let r = if let Some(n) = sf::nan_pick(&mut fx.c, R, a, b) {
        n
    } else {
        sf::den_check(&mut fx.c, a, b);
        match (a.cls, b.cls) {
            (Cls::Zero, Cls::Inf) if !b.sign => {
                fx.c.raise(sf::IE);
                Fp::default_nan()
            }
            (Cls::Inf, Cls::Inf) if b.sign => {
                fx.c.raise(sf::IE);
                Fp::default_nan()
            }
            (Cls::Zero | Cls::Inf, _) => a,
            (_, Cls::Inf) => {
                if b.sign {
                    Fp::zero(a.sign)
                } else {
                    Fp::inf(a.sign)
                }
            }
            _ => {
                let k = match b.cls {
                    Cls::Zero => 0,
                    _ => sf::to_int(&mut sf::Ctx::new(Rc::Zero), b, Rc::Zero, 64)
                        .unwrap_or(if b.sign { i64::MIN } else { i64::MAX }),
                };
                let k = k.clamp(-(1 << 20), 1 << 20) as i32;
                let mut v = a;
                v.exp = v.exp.wrapping_add(k);
                v.den = false;
                sf::round_fp(&mut fx.c, F80, v)
            }
        }
    };
    let r = fx.reg_value(r);
    if fx.finish(cpu) {
        cpu.set_st_raw(0, r);
    }
    Ok(())
}

/// FXTRACT: ST0 = exponent, then push the significand.
fn fxtract(cpu: &mut Cpu) -> XResult<()> {
    let mut fx = Fx::new(cpu);
    let a = fx.get(cpu, 0);
    fx.check_push(cpu);
    let (e, s) = if let Some(n) = sf::nan_one(&mut fx.c, a) {
        (n, n)
    } else {
        match a.cls {
            Cls::Zero => {
                fx.c.raise(sf::ZE);
                (Fp::inf(true), a)
            }
            Cls::Inf => (Fp::inf(false), a),
            _ => {
                // `a` is normalized (denormals too): exp is the true exponent.
                sf::den_check(&mut fx.c, a, a);
                let s = Fp {
                    exp: 0,
                    den: false,
                    ..a
                };
                (Fp::from_i64(a.exp as i64), s)
            }
        }
    };
    let e = fx.reg_value(e);
    let s = fx.reg_value(s);
    if fx.finish(cpu) {
        cpu.set_st_raw(0, e);
        cpu.fpu_push(s);
    }
    Ok(())
}

/// FPREM/FPREM1: exact partial remainder; C2 set while incomplete, the low
/// quotient bits in C0/C3/C1.
fn fprem(cpu: &mut Cpu, ieee: bool) -> XResult<()> {
    let mut fx = Fx::new(cpu);
    let a = fx.get(cpu, 0);
    let b = fx.get(cpu, 1);
    let mut q: u64 = 0;
    let mut incomplete = false;
    let r = if let Some(n) = sf::nan_pick(&mut fx.c, R, a, b) {
        n
    } else {
        match (a.cls, b.cls) {
            (Cls::Inf, _) | (_, Cls::Zero) => {
                fx.c.raise(sf::IE);
                Fp::default_nan()
            }
            (Cls::Zero, _) | (_, Cls::Inf) => {
                sf::den_check(&mut fx.c, a, b);
                a
            }
            _ => {
                sf::den_check(&mut fx.c, a, b);
                let (a, b) = (norm(a), norm(b));
                let d = a.exp - b.exp;
                let (num, den, base_exp, partial) = if d >= 64 {
                    // Partial: reduce the exponent difference by N in
                    // 32..=63 so that it becomes a multiple of 32 (as the
                    // hardware does): ST0' = (a.sig * 2^N mod b.sig) * 2^(d-N).
                    let n = (d & 31) | 32;
                    ((a.sig as u128) << n, b.sig as u128, b.exp + d - n, true)
                } else if d >= 0 {
                    ((a.sig as u128) << d, b.sig as u128, b.exp, false)
                } else if d == -1 && ieee {
                    (a.sig as u128, (b.sig as u128) << 1, a.exp, false)
                } else {
                    (0, 1, 0, false)
                };
                if d < 0 && !(d == -1 && ieee) {
                    a
                } else {
                    let mut qq = num / den;
                    let mut rr = num % den;
                    let mut sign = a.sign;
                    if ieee && !partial && (2 * rr > den || (2 * rr == den && qq & 1 != 0)) {
                        qq += 1;
                        rr = den - rr;
                        sign = !sign;
                    }
                    incomplete = partial;
                    // An incomplete reduction reports no quotient bits.
                    q = if partial { 0 } else { qq as u64 };
                    if rr == 0 {
                        Fp::zero(a.sign)
                    } else {
                        // Exact: the value is rr * 2^(base_exp - 63).
                        sf::round(&mut fx.c, F80, sign, base_exp + 64, rr)
                    }
                }
            }
        }
    };
    let r = fx.reg_value(r);
    if fx.finish(cpu) {
        cpu.set_st_raw(0, r);
        let mut cc = 0;
        if incomplete {
            cc |= sw::C2;
        }
        if q & 4 != 0 {
            cc |= sw::C0;
        }
        if q & 2 != 0 {
            cc |= sw::C3;
        }
        if q & 1 != 0 {
            cc |= sw::C1;
        }
        let f = &mut cpu.state.fpu.fsw;
        *f = (*f & !sw::CC) | cc;
    }
    Ok(())
}

fn norm(v: Fp) -> Fp {
    let mut v = v;
    if v.cls == Cls::Finite && v.sig != 0 {
        let lz = v.sig.leading_zeros();
        v.sig <<= lz;
        v.exp -= lz as i32;
    }
    v
}
