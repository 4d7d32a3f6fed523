//! x87 transcendental instructions: F2XM1, FYL2X, FYL2XP1, FPTAN, FPATAN,
//! FSIN, FCOS, FSINCOS.
//!
//! Known deviation: these compute in `f64` (Rust's libm) and widen the
//! result, so they carry ~53 bits of precision instead of the x87's ~64;
//! PE is reported for every inexact-looking (non-trivial) result and C1
//! (round-up) is always 0. Special operands (NaN, infinities, zeros,
//! out-of-range arguments with C2=1) follow the SDM tables.

use iced_x86::{Instruction, Mnemonic as M};

use super::softfloat::{self as sf, Cls, Ctx, Fp, NanRule, Rc, F64, F80};
use super::x87::{sw, Fx, INDEFINITE};
use super::Cpu;
use crate::exception::XResult;

const R: NanRule = NanRule::X87;

/// Rounds an extended value to the nearest double.
fn to_f64(v: Fp) -> f64 {
    let mut c = Ctx::new(Rc::Nearest);
    f64::from_bits(sf::pack64(sf::round_fp(&mut c, F64, v)))
}

/// A double as an (exact) extended value.
fn from_f64(x: f64) -> Fp {
    let mut c = Ctx::new(Rc::Nearest);
    sf::unpack64(&mut c, x.to_bits())
}

fn set_c2(cpu: &mut Cpu, c2: bool) {
    let f = &mut cpu.state.fpu.fsw;
    if c2 {
        *f |= sw::C2;
    } else {
        *f &= !sw::C2;
    }
}

/// Marks a computed approximation inexact (non-trivial results only).
fn approx(fx: &mut Fx, v: Fp) -> Fp {
    if v.cls == Cls::Finite {
        fx.c.raise(sf::PE);
    }
    v
}

pub fn exec(cpu: &mut Cpu, i: &Instruction) -> XResult<()> {
    let m = i.mnemonic();
    let mut fx = Fx::new(cpu);
    match m {
        M::Fsin | M::Fcos | M::Fptan | M::Fsincos => {
            let a = fx.get(cpu, 0);
            let pushes = matches!(m, M::Fptan | M::Fsincos);
            if a.cls == Cls::Finite && a.exp >= 63 {
                // Out of range: C2 = 1, operand unchanged.
                fx.finish(cpu);
                set_c2(cpu, true);
                return Ok(());
            }
            if pushes {
                fx.check_push(cpu);
            }
            // (new ST0 before the push, pushed value)
            let (r0, r1) = if let Some(n) = sf::nan_one(&mut fx.c, a) {
                (n, n)
            } else if a.cls == Cls::Inf {
                fx.c.raise(sf::IE);
                (Fp::default_nan(), Fp::default_nan())
            } else {
                sf::den_check(&mut fx.c, a, a);
                let x = to_f64(a);
                let one = Fp::from_u64(false, 1);
                match (m, a.cls) {
                    (M::Fsin, Cls::Zero) | (M::Fptan, Cls::Zero) => (a, one),
                    (M::Fcos, Cls::Zero) => (one, one),
                    (M::Fsincos, Cls::Zero) => (a, one),
                    (M::Fsin, _) => (approx(&mut fx, from_f64(x.sin())), one),
                    (M::Fcos, _) => (approx(&mut fx, from_f64(x.cos())), one),
                    (M::Fptan, _) => (approx(&mut fx, from_f64(x.tan())), one),
                    _ => (
                        approx(&mut fx, from_f64(x.sin())),
                        approx(&mut fx, from_f64(x.cos())),
                    ),
                }
            };
            let (r0, r1) = if fx.faulted() {
                (INDEFINITE, INDEFINITE)
            } else {
                (sf::pack80(r0), sf::pack80(r1))
            };
            if fx.finish(cpu) {
                cpu.set_st_raw(0, r0);
                cpu.set_st_valid(0, true);
                if pushes {
                    cpu.fpu_push(r1);
                }
                set_c2(cpu, false);
            }
            Ok(())
        }
        M::F2xm1 => {
            let a = fx.get(cpu, 0);
            let r = if let Some(n) = sf::nan_one(&mut fx.c, a) {
                n
            } else {
                match a.cls {
                    Cls::Zero => a,
                    Cls::Inf if a.sign => Fp::from_i64(-1),
                    Cls::Inf => a,
                    _ => {
                        sf::den_check(&mut fx.c, a, a);
                        let x = to_f64(a);
                        approx(&mut fx, from_f64((x * std::f64::consts::LN_2).exp_m1()))
                    }
                }
            };
            let r = fx.reg_value(r);
            if fx.finish(cpu) {
                cpu.set_st_raw(0, r);
            }
            Ok(())
        }
        _ => {
            // FYL2X, FYL2XP1, FPATAN: ST1 = f(ST1, ST0), pop.
            let x = fx.get(cpu, 0);
            let y = fx.get(cpu, 1);
            let r = if let Some(n) = sf::nan_pick(&mut fx.c, R, y, x) {
                n
            } else {
                sf::den_check(&mut fx.c, x, y);
                match m {
                    M::Fyl2x => fyl2x(&mut fx, y, x),
                    M::Fyl2xp1 => fyl2xp1(&mut fx, y, x),
                    _ => fpatan(&mut fx, y, x),
                }
            };
            let r = fx.reg_value(r);
            if fx.finish(cpu) {
                cpu.set_st_raw(1, r);
                cpu.fpu_pop();
            }
            Ok(())
        }
    }
}

fn invalid(fx: &mut Fx) -> Fp {
    fx.c.raise(sf::IE);
    Fp::default_nan()
}

/// y * log2(x).
fn fyl2x(fx: &mut Fx, y: Fp, x: Fp) -> Fp {
    if x.sign && x.cls != Cls::Zero {
        return invalid(fx);
    }
    match (x.cls, y.cls) {
        (Cls::Zero, Cls::Zero) => invalid(fx),
        (Cls::Zero, Cls::Inf) => Fp::inf(!y.sign),
        (Cls::Zero, _) => {
            fx.c.raise(sf::ZE);
            Fp::inf(!y.sign)
        }
        (Cls::Inf, Cls::Zero) => invalid(fx),
        (Cls::Inf, _) => Fp::inf(y.sign),
        _ => {
            // x finite positive: log2(x) = exp + log2(significand in [1, 2)).
            let frac = (x.sig as f64) / (1u64 << 63) as f64;
            let l = x.exp as f64 + frac.log2();
            if l == 0.0 {
                if y.cls == Cls::Inf {
                    return invalid(fx);
                }
                return Fp::zero(y.sign);
            }
            let lv = from_f64(l);
            match y.cls {
                Cls::Zero => Fp::zero(y.sign != lv.sign),
                Cls::Inf => Fp::inf(y.sign != lv.sign),
                _ => {
                    let r = sf::mul(&mut fx.c, F80, R, y, lv);
                    approx(fx, r)
                }
            }
        }
    }
}

/// y * log2(x + 1).
fn fyl2xp1(fx: &mut Fx, y: Fp, x: Fp) -> Fp {
    match (x.cls, y.cls) {
        (Cls::Zero, Cls::Inf) => invalid(fx),
        (Cls::Zero, _) => Fp::zero(x.sign != y.sign),
        (Cls::Inf, _) => invalid(fx),
        _ => {
            let xf = to_f64(x);
            if xf <= -1.0 {
                return invalid(fx);
            }
            let l = xf.ln_1p() / std::f64::consts::LN_2;
            let lv = from_f64(l);
            match y.cls {
                Cls::Zero => Fp::zero(y.sign != lv.sign),
                Cls::Inf => Fp::inf(y.sign != lv.sign),
                _ => {
                    let r = sf::mul(&mut fx.c, F80, R, y, lv);
                    approx(fx, r)
                }
            }
        }
    }
}

/// atan2(y, x), with both operands scaled into the double range first.
fn fpatan(fx: &mut Fx, y: Fp, x: Fp) -> Fp {
    let (mut ys, mut xs) = (y, x);
    if y.cls == Cls::Finite && x.cls == Cls::Finite {
        let e = y.exp.max(x.exp);
        ys.exp -= e;
        xs.exp -= e;
    }
    let r = to_f64(ys).atan2(to_f64(xs));
    let v = from_f64(r);
    if v.cls == Cls::Finite && (y.cls != Cls::Zero || x.sign) {
        approx(fx, v)
    } else {
        v
    }
}
