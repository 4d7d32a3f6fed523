//! Comparison and integer conversions of the softfloat core (see
//! [`super`]).

use super::{den_check, nan_one, round_fp, Cls, Ctx, Format, Fp, Rc, IE, PE};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ord3 {
    Less,
    Equal,
    Greater,
    Unordered,
}

/// Compares two values. `signaling`: QNaNs raise IE too (x87 FCOM,
/// COMISS, CMPLTPS...); SNaNs always do.
pub fn compare(ctx: &mut Ctx, a: Fp, b: Fp, signaling: bool) -> Ord3 {
    if a.cls == Cls::Unsupported || b.cls == Cls::Unsupported {
        ctx.raise(IE);
        return Ord3::Unordered;
    }
    if a.is_nan() || b.is_nan() {
        if signaling || a.is_snan() || b.is_snan() {
            ctx.raise(IE);
        }
        return Ord3::Unordered;
    }
    den_check(ctx, a, b);
    let key = |v: Fp| -> (i32, i64, u64) {
        // Total order key for non-NaN values: (class rank, exp, sig) of the magnitude.
        match v.cls {
            Cls::Zero => (0, 0, 0),
            Cls::Inf => (2, 0, 0),
            _ => {
                let v = v.norm();
                (1, v.exp as i64, v.sig)
            }
        }
    };
    let (ka, kb) = (key(a), key(b));
    if ka.0 == 0 && kb.0 == 0 {
        return Ord3::Equal;
    }
    let mag = ka.cmp(&kb);
    use std::cmp::Ordering as O;
    let r = match (a.sign && ka.0 != 0, b.sign && kb.0 != 0) {
        (false, false) => mag,
        (true, true) => mag.reverse(),
        (true, false) => O::Less,
        (false, true) => O::Greater,
    };
    match r {
        O::Less => Ord3::Less,
        O::Equal => Ord3::Equal,
        O::Greater => Ord3::Greater,
    }
}

// ---------------------------------------------------------------------------
// Integers

/// How a float-to-integer conversion rounds.
fn int_part(rc: Rc, v: Fp) -> Option<(u128, bool, bool)> {
    // Returns (rounded magnitude, inexact, rounded up) or None when the magnitude is
    // far too large (>= 2^127).
    let v = v.norm();
    if v.exp > 126 {
        return None;
    }
    let x = (v.sig as u128) << 64; // value = x * 2^(exp - 127)
    let shift = 127 - v.exp; // >= 1
    let (int, rem, half) = if shift > 128 {
        (0u128, 1u128, u128::MAX)
    } else if shift == 128 {
        (0, x, 1u128 << 127)
    } else {
        let sh = shift as u32;
        (x >> sh, x & ((1u128 << sh) - 1), 1u128 << (sh - 1))
    };
    let inc = match rc {
        Rc::Nearest => rem > half || (rem == half && int & 1 != 0),
        Rc::Down => v.sign && rem != 0,
        Rc::Up => !v.sign && rem != 0,
        Rc::Zero => false,
    };
    Some((int + inc as u128, rem != 0, inc))
}

/// Converts to a signed integer of `bits` (16, 32 or 64). `None` (with IE
/// raised) for NaN, infinity and out-of-range values: the caller stores the
/// integer indefinite. PE is raised for inexact conversions.
pub fn to_int(ctx: &mut Ctx, v: Fp, rc: Rc, bits: u32) -> Option<i64> {
    let bits = bits.clamp(2, 64);
    match v.cls {
        Cls::Zero => return Some(0),
        Cls::Finite => {}
        _ => {
            ctx.raise(IE);
            return None;
        }
    }
    let Some((mag, inexact, up)) = int_part(rc, v) else {
        ctx.raise(IE);
        return None;
    };
    ctx.rounded_up = up;
    let lim = 1u128 << (bits - 1);
    let ok = if v.sign { mag <= lim } else { mag < lim };
    if !ok {
        ctx.raise(IE);
        return None;
    }
    if inexact {
        ctx.raise(PE);
    }
    let m = mag as i128;
    Some(if v.sign { -m } else { m } as i64)
}

/// Rounds to an integral value in the same format (FRNDINT, ROUNDSS).
/// `fmt` only bounds the result's precision (integral values never need
/// rounding). PE for inexact results unless `suppress_pe`.
pub fn round_int(ctx: &mut Ctx, v: Fp, rc: Rc, suppress_pe: bool) -> Fp {
    match v.cls {
        Cls::Finite => {}
        Cls::NaN | Cls::Unsupported => return nan_one(ctx, v).unwrap_or(v),
        _ => return v,
    }
    let v = v.norm();
    if v.exp >= 63 {
        return v;
    }
    let Some((mag, inexact, up)) = int_part(rc, v) else {
        return v;
    };
    ctx.rounded_up = up;
    if inexact && !suppress_pe {
        ctx.raise(PE);
    }
    Fp::from_u64(v.sign, mag as u64)
}

/// Converts an integer value to `fmt` with rounding.
pub fn from_int(ctx: &mut Ctx, fmt: Format, v: i64) -> Fp {
    round_fp(ctx, fmt, Fp::from_i64(v))
}
