//! Software IEEE-754 arithmetic shared by the x87 and SSE semantics.
//!
//! Values are unpacked into [`Fp`] (sign, class, unbiased exponent, 64-bit
//! significand with the integer bit at bit 63), operated on exactly with
//! 128-bit intermediates, and rounded once by [`round`] to the destination
//! format and precision under the rounding mode of the [`Ctx`]. This gives
//! correctly rounded results in all four rounding modes, for the three
//! formats x86 uses (single, double, 80-bit extended with precision control),
//! with the exception flags x86 reports: invalid, denormal operand, divide by
//! zero, overflow, underflow (tininess detected *after* rounding, as x86
//! does, checked against the host) and precision. NaN propagation policy is
//! left to the callers (SSE and x87 differ); [`nan_pick`] implements both.

/// Exception flag bits, identical in FSW and MXCSR.
pub const IE: u32 = 1;
pub const DE: u32 = 2;
pub const ZE: u32 = 4;
pub const OE: u32 = 8;
pub const UE: u32 = 16;
pub const PE: u32 = 32;

/// Rounding control (the RC field encoding of FCW and MXCSR).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rc {
    Nearest,
    Down,
    Up,
    Zero,
}

impl Rc {
    pub fn from_bits(b: u32) -> Rc {
        match b & 3 {
            0 => Rc::Nearest,
            1 => Rc::Down,
            2 => Rc::Up,
            _ => Rc::Zero,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cls {
    Zero,
    /// Finite non-zero: value = sig * 2^(exp - 63).
    Finite,
    Inf,
    /// `sig` holds the x87-style significand: bit 63 set, bit 62 the quiet
    /// bit, the payload below it (left-aligned).
    NaN,
    /// An 80-bit encoding the x87 does not support (unnormal, pseudo-NaN,
    /// pseudo-infinity): any arithmetic use is an invalid operation.
    Unsupported,
}

/// An unpacked floating-point value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fp {
    pub sign: bool,
    pub cls: Cls,
    pub exp: i32,
    pub sig: u64,
    /// Unpacked from a denormal encoding: using it raises DE (after the
    /// NaN checks, as x86 does).
    pub den: bool,
}

pub const QUIET: u64 = 1 << 62;
const TOP: u64 = 1 << 63;

impl Fp {
    pub const fn zero(sign: bool) -> Fp {
        Fp {
            sign,
            cls: Cls::Zero,
            exp: 0,
            sig: 0,
            den: false,
        }
    }
    pub const fn inf(sign: bool) -> Fp {
        Fp {
            sign,
            cls: Cls::Inf,
            exp: 0,
            sig: TOP,
            den: false,
        }
    }
    /// The default (indefinite) QNaN: negative, quiet, no payload.
    pub const fn default_nan() -> Fp {
        Fp {
            sign: true,
            cls: Cls::NaN,
            exp: 0,
            sig: TOP | QUIET,
            den: false,
        }
    }
    pub fn is_nan(&self) -> bool {
        self.cls == Cls::NaN
    }
    pub fn is_snan(&self) -> bool {
        self.cls == Cls::NaN && self.sig & QUIET == 0
    }
    pub fn quiet(mut self) -> Fp {
        self.sig |= QUIET | TOP;
        self
    }
    pub fn neg(mut self) -> Fp {
        self.sign = !self.sign;
        self
    }
    /// A finite value from an integer magnitude.
    pub fn from_u64(sign: bool, mag: u64) -> Fp {
        if mag == 0 {
            return Fp::zero(sign);
        }
        let lz = mag.leading_zeros();
        Fp {
            sign,
            cls: Cls::Finite,
            exp: 63 - lz as i32,
            sig: mag << lz,
            den: false,
        }
    }
    pub fn from_i64(v: i64) -> Fp {
        Fp::from_u64(v < 0, v.unsigned_abs())
    }
    /// Normalizes a finite value (denormal results carry an unnormalized
    /// significand at the minimum exponent).
    fn norm(mut self) -> Fp {
        if self.cls == Cls::Finite {
            if self.sig == 0 {
                return Fp::zero(self.sign);
            }
            let lz = self.sig.leading_zeros();
            self.sig <<= lz;
            self.exp -= lz as i32;
        }
        self
    }
}

/// Exponent range and precision of a destination format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Format {
    pub prec: u32,
    pub emin: i32,
    pub emax: i32,
}

pub const F32: Format = Format {
    prec: 24,
    emin: -126,
    emax: 127,
};
pub const F64: Format = Format {
    prec: 53,
    emin: -1022,
    emax: 1023,
};
pub const F80: Format = Format {
    prec: 64,
    emin: -16382,
    emax: 16383,
};

impl Format {
    /// The same exponent range with another precision (x87 precision control).
    pub const fn with_prec(self, prec: u32) -> Format {
        Format {
            prec,
            emin: self.emin,
            emax: self.emax,
        }
    }
}

/// Rounding environment and accumulated exception flags.
#[derive(Clone, Copy, Debug)]
pub struct Ctx {
    pub rc: Rc,
    /// Flush tiny results to zero (MXCSR.FTZ with underflow masked).
    pub ftz: bool,
    /// Treat denormal inputs as zero (MXCSR.DAZ).
    pub daz: bool,
    /// Underflow is masked: UE is only reported for inexact tiny results.
    pub ue_masked: bool,
    pub flags: u32,
    /// The last rounding increased the magnitude (x87 C1).
    pub rounded_up: bool,
}

impl Ctx {
    pub fn new(rc: Rc) -> Ctx {
        Ctx {
            rc,
            ftz: false,
            daz: false,
            ue_masked: true,
            flags: 0,
            rounded_up: false,
        }
    }
    #[inline]
    pub fn raise(&mut self, f: u32) {
        self.flags |= f;
    }
}

// ---------------------------------------------------------------------------
// Unpacking and packing

fn unpack_ieee(ctx: &mut Ctx, sign: bool, e: u32, f: u64, fbits: u32, fmt: Format) -> Fp {
    let emax_biased = (fmt.emax as u32) * 2 + 1;
    if e == emax_biased {
        if f == 0 {
            return Fp::inf(sign);
        }
        return Fp {
            sign,
            cls: Cls::NaN,
            exp: 0,
            sig: TOP | (f << (63 - fbits)),
            den: false,
        };
    }
    if e == 0 {
        if f == 0 {
            return Fp::zero(sign);
        }
        if ctx.daz {
            return Fp::zero(sign);
        }
        return Fp {
            sign,
            cls: Cls::Finite,
            exp: fmt.emin,
            sig: f << (63 - fbits),
            den: true,
        }
        .norm();
    }
    Fp {
        sign,
        cls: Cls::Finite,
        exp: e as i32 - fmt.emax,
        sig: TOP | (f << (63 - fbits)),
        den: false,
    }
}

/// Unpacks a single-precision value (DAZ per `ctx`, DE raised for denormals).
pub fn unpack32(ctx: &mut Ctx, x: u32) -> Fp {
    unpack_ieee(
        ctx,
        x >> 31 != 0,
        (x >> 23) & 0xff,
        (x & 0x7f_ffff) as u64,
        23,
        F32,
    )
}

pub fn unpack64(ctx: &mut Ctx, x: u64) -> Fp {
    unpack_ieee(
        ctx,
        x >> 63 != 0,
        ((x >> 52) & 0x7ff) as u32,
        x & 0xf_ffff_ffff_ffff,
        52,
        F64,
    )
}

/// Classifies without touching flags (for FXAM, tags, MIN/MAX).
pub fn peek32(x: u32) -> Fp {
    unpack32(&mut Ctx::new(Rc::Nearest), x)
}

/// Unpacks an 80-bit extended value (`se`: sign and exponent, `m`: the
/// 64-bit significand with its explicit integer bit).
pub fn unpack80(se: u16, m: u64) -> Fp {
    let sign = se & 0x8000 != 0;
    let e = (se & 0x7fff) as i32;
    if e == 0x7fff {
        if m & TOP == 0 {
            return Fp {
                sign,
                cls: Cls::Unsupported,
                exp: 0,
                sig: m,
                den: false,
            };
        }
        if m << 1 == 0 {
            return Fp::inf(sign);
        }
        return Fp {
            sign,
            cls: Cls::NaN,
            exp: 0,
            sig: m,
            den: false,
        };
    }
    if e == 0 {
        if m == 0 {
            return Fp::zero(sign);
        }
        return Fp {
            sign,
            cls: Cls::Finite,
            exp: F80.emin,
            sig: m,
            den: true,
        }
        .norm();
    }
    if m & TOP == 0 {
        return Fp {
            sign,
            cls: Cls::Unsupported,
            exp: 0,
            sig: m,
            den: false,
        };
    }
    Fp {
        sign,
        cls: Cls::Finite,
        exp: e - 16383,
        sig: m,
        den: false,
    }
}

fn pack_ieee(v: Fp, fmt: Format, fbits: u32) -> u64 {
    let sign_bit = if fbits == 23 { 31 } else { 63 };
    let s = (v.sign as u64) << sign_bit;
    let ebits_all = (fmt.emax as u64) * 2 + 1;
    let fmask = (1u64 << fbits) - 1;
    let body = match v.cls {
        Cls::Zero => 0,
        Cls::Inf => ebits_all << fbits,
        Cls::NaN | Cls::Unsupported => {
            let mut f = (v.sig >> (63 - fbits)) & fmask;
            if f == 0 {
                f = 1 << (fbits - 1);
            }
            (ebits_all << fbits) | f
        }
        Cls::Finite => {
            // A normalized denormal (unpacked input passed through) goes
            // back to its denormal encoding.
            let (exp, sig) = if v.exp < fmt.emin {
                let sh = (fmt.emin - v.exp) as u32;
                (fmt.emin, if sh >= 64 { 0 } else { v.sig >> sh })
            } else {
                (v.exp, v.sig)
            };
            let f = (sig >> (63 - fbits)) & fmask;
            if sig & TOP == 0 {
                f
            } else {
                let be = (exp + fmt.emax) as u64;
                (be << fbits) | f
            }
        }
    };
    s | body
}

/// Packs a value already rounded to single precision.
pub fn pack32(v: Fp) -> u32 {
    pack_ieee(v, F32, 23) as u32
}

/// Packs a value already rounded to double precision.
pub fn pack64(v: Fp) -> u64 {
    pack_ieee(v, F64, 52)
}

/// Packs a value already rounded to the extended range: (sign|exponent, significand).
pub fn pack80(v: Fp) -> (u16, u64) {
    let s = if v.sign { 0x8000u16 } else { 0 };
    match v.cls {
        Cls::Zero => (s, 0),
        Cls::Inf => (s | 0x7fff, TOP),
        Cls::NaN => (s | 0x7fff, v.sig | TOP),
        Cls::Unsupported => (s | 0x7fff, v.sig),
        Cls::Finite => {
            let (exp, sig) = if v.exp < F80.emin {
                let sh = (F80.emin - v.exp) as u32;
                (F80.emin, if sh >= 64 { 0 } else { v.sig >> sh })
            } else {
                (v.exp, v.sig)
            };
            if sig & TOP == 0 {
                (s, sig)
            } else {
                (s | ((exp + 16383) as u16 & 0x7fff), sig)
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Rounding

#[inline]
fn shr_jam(x: u128, n: u32) -> u128 {
    if n == 0 {
        x
    } else if n >= 128 {
        (x != 0) as u128
    } else {
        (x >> n) | ((x & ((1u128 << n) - 1)) != 0) as u128
    }
}

#[inline]
fn round_inc(rc: Rc, sign: bool, q: u128, rem: u128, half: u128) -> bool {
    match rc {
        Rc::Nearest => rem > half || (rem == half && q & 1 != 0),
        Rc::Down => sign && rem != 0,
        Rc::Up => !sign && rem != 0,
        Rc::Zero => false,
    }
}

/// Rounds `(-1)^sign * sig * 2^(exp - 127)` to `fmt` (its precision and
/// exponent range) under `ctx`, raising OE/UE/PE as x86 does (tininess
/// after rounding; FTZ flushes tiny results to zero with UE|PE).
pub fn round(ctx: &mut Ctx, fmt: Format, sign: bool, exp: i32, sig: u128) -> Fp {
    ctx.rounded_up = false;
    if sig == 0 {
        return Fp::zero(sign);
    }
    let lz = sig.leading_zeros();
    let sig = sig << lz;
    let exp = exp - lz as i32;
    let prec = fmt.prec.clamp(2, 64);
    let drop = 128 - prec;
    let half = 1u128 << (drop - 1);
    let mask = (1u128 << drop) - 1;
    let one = 1u128 << prec;

    // Tininess after rounding: the result rounded to `prec` bits with an
    // unbounded exponent is below 2^emin.
    let tiny = if exp < fmt.emin {
        if exp == fmt.emin - 1 {
            let q0 = sig >> drop;
            !(round_inc(ctx.rc, sign, q0, sig & mask, half) && q0 + 1 == one)
        } else {
            true
        }
    } else {
        false
    };
    if tiny && ctx.ftz {
        ctx.raise(UE | PE);
        return Fp::zero(sign);
    }
    let (mut e, s) = if exp < fmt.emin {
        let sh = (fmt.emin - exp) as u32;
        (fmt.emin, shr_jam(sig, sh))
    } else {
        (exp, sig)
    };
    let rem = s & mask;
    let mut q = s >> drop;
    let inexact = rem != 0;
    if round_inc(ctx.rc, sign, q, rem, half) {
        q += 1;
        ctx.rounded_up = true;
        if q == one {
            q >>= 1;
            e += 1;
        }
    }
    if inexact {
        ctx.raise(PE);
    }
    if tiny && (inexact || !ctx.ue_masked) {
        ctx.raise(UE);
    }
    if e > fmt.emax {
        ctx.raise(OE | PE);
        let to_inf = match ctx.rc {
            Rc::Nearest => true,
            Rc::Zero => false,
            Rc::Down => sign,
            Rc::Up => !sign,
        };
        ctx.rounded_up = to_inf;
        if to_inf {
            return Fp::inf(sign);
        }
        let maxsig = (u64::MAX >> (64 - prec)) << (64 - prec);
        return Fp {
            sign,
            cls: Cls::Finite,
            exp: fmt.emax,
            sig: maxsig,
            den: false,
        };
    }
    if q == 0 {
        return Fp::zero(sign);
    }
    Fp {
        sign,
        cls: Cls::Finite,
        exp: e,
        sig: (q << (64 - prec)) as u64,
        den: false,
    }
}

/// Rounds a finite/zero/inf/NaN value to `fmt` (NaN and inf pass through).
pub fn round_fp(ctx: &mut Ctx, fmt: Format, v: Fp) -> Fp {
    match v.cls {
        Cls::Finite => {
            let v = v.norm();
            round(ctx, fmt, v.sign, v.exp, (v.sig as u128) << 64)
        }
        _ => {
            ctx.rounded_up = false;
            v
        }
    }
}

// ---------------------------------------------------------------------------
// NaN selection

/// NaN propagation policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NanRule {
    /// SSE: the first source operand's NaN wins, else the second's.
    Sse,
    /// x87: a QNaN wins over an SNaN; between two of a kind the larger
    /// significand wins.
    X87,
}

/// If `a` or `b` is a NaN (or unsupported), raises IE for SNaNs (and
/// unsupported encodings) and returns the propagated quiet NaN.
pub fn nan_pick(ctx: &mut Ctx, rule: NanRule, a: Fp, b: Fp) -> Option<Fp> {
    if a.cls == Cls::Unsupported || b.cls == Cls::Unsupported {
        ctx.raise(IE);
        return Some(Fp::default_nan());
    }
    let (an, bn) = (a.is_nan(), b.is_nan());
    if !an && !bn {
        return None;
    }
    if a.is_snan() || b.is_snan() {
        ctx.raise(IE);
    }
    let r = match (an, bn) {
        (true, false) => a,
        (false, true) => b,
        _ => match rule {
            NanRule::Sse => a,
            NanRule::X87 => {
                let (aq, bq) = (a.sig & QUIET != 0, b.sig & QUIET != 0);
                if aq != bq {
                    if aq {
                        a
                    } else {
                        b
                    }
                } else {
                    let (ma, mb) = (a.sig | QUIET, b.sig | QUIET);
                    if ma > mb || (ma == mb && !a.sign) {
                        a
                    } else {
                        b
                    }
                }
            }
        },
    };
    Some(r.quiet())
}

/// Raises DE when an operand came from a denormal encoding.
#[inline]
pub fn den_check(ctx: &mut Ctx, a: Fp, b: Fp) {
    if a.den || b.den {
        ctx.raise(DE);
    }
}

/// One operand: SNaN → IE and quiet; unsupported → IE and default NaN.
pub fn nan_one(ctx: &mut Ctx, a: Fp) -> Option<Fp> {
    nan_pick(ctx, NanRule::Sse, a, Fp::zero(false))
}

// ---------------------------------------------------------------------------
// Arithmetic

/// `a + b` (or `a - b` when `sub`), rounded to `fmt`.
pub fn add(ctx: &mut Ctx, fmt: Format, rule: NanRule, a: Fp, b: Fp, sub: bool) -> Fp {
    ctx.rounded_up = false;
    if let Some(n) = nan_pick(ctx, rule, a, b) {
        return n;
    }
    den_check(ctx, a, b);
    let b = if sub { b.neg() } else { b };
    match (a.cls, b.cls) {
        (Cls::Inf, Cls::Inf) => {
            if a.sign != b.sign {
                ctx.raise(IE);
                Fp::default_nan()
            } else {
                a
            }
        }
        (Cls::Inf, _) => a,
        (_, Cls::Inf) => b,
        (Cls::Zero, Cls::Zero) => {
            let s = if a.sign == b.sign {
                a.sign
            } else {
                ctx.rc == Rc::Down
            };
            Fp::zero(s)
        }
        (Cls::Zero, _) => round_fp(ctx, fmt, b),
        (_, Cls::Zero) => round_fp(ctx, fmt, a),
        _ => {
            let (a, b) = (a.norm(), b.norm());
            let (x, y) = if a.exp >= b.exp { (a, b) } else { (b, a) };
            let d = (x.exp - y.exp) as u32;
            let xs = (x.sig as u128) << 63;
            let ys = shr_jam((y.sig as u128) << 63, d);
            if x.sign == y.sign {
                round(ctx, fmt, x.sign, x.exp + 1, xs + ys)
            } else if xs > ys {
                round(ctx, fmt, x.sign, x.exp + 1, xs - ys)
            } else if ys > xs {
                round(ctx, fmt, y.sign, x.exp + 1, ys - xs)
            } else {
                Fp::zero(ctx.rc == Rc::Down)
            }
        }
    }
}

/// `a * b`, rounded to `fmt`.
pub fn mul(ctx: &mut Ctx, fmt: Format, rule: NanRule, a: Fp, b: Fp) -> Fp {
    ctx.rounded_up = false;
    if let Some(n) = nan_pick(ctx, rule, a, b) {
        return n;
    }
    den_check(ctx, a, b);
    let sign = a.sign != b.sign;
    match (a.cls, b.cls) {
        (Cls::Inf, Cls::Zero) | (Cls::Zero, Cls::Inf) => {
            ctx.raise(IE);
            Fp::default_nan()
        }
        (Cls::Inf, _) | (_, Cls::Inf) => Fp::inf(sign),
        (Cls::Zero, _) | (_, Cls::Zero) => Fp::zero(sign),
        _ => {
            let (a, b) = (a.norm(), b.norm());
            let p = a.sig as u128 * b.sig as u128;
            round(ctx, fmt, sign, a.exp + b.exp + 1, p)
        }
    }
}

/// `a / b`, rounded to `fmt`.
pub fn div(ctx: &mut Ctx, fmt: Format, rule: NanRule, a: Fp, b: Fp) -> Fp {
    ctx.rounded_up = false;
    if let Some(n) = nan_pick(ctx, rule, a, b) {
        return n;
    }
    if b.cls != Cls::Zero {
        // x/0 reports only ZE, even for a denormal x.
        den_check(ctx, a, b);
    }
    let sign = a.sign != b.sign;
    match (a.cls, b.cls) {
        (Cls::Inf, Cls::Inf) | (Cls::Zero, Cls::Zero) => {
            ctx.raise(IE);
            Fp::default_nan()
        }
        (Cls::Inf, _) => Fp::inf(sign),
        (_, Cls::Inf) => Fp::zero(sign),
        (Cls::Zero, _) => Fp::zero(sign),
        (_, Cls::Zero) => {
            ctx.raise(ZE);
            Fp::inf(sign)
        }
        _ => {
            let (a, b) = (a.norm(), b.norm());
            let (n, exp) = if a.sig < b.sig {
                ((a.sig as u128) << 64, a.exp - b.exp - 1)
            } else {
                ((a.sig as u128) << 63, a.exp - b.exp)
            };
            let d = b.sig as u128;
            let q1 = n / d;
            let r1 = n % d;
            let n2 = r1 << 64;
            let q2 = n2 / d;
            let r2 = n2 % d;
            let q = (q1 << 64) | q2 | (r2 != 0) as u128;
            round(ctx, fmt, sign, exp, q)
        }
    }
}

/// Integer square root of a u128: (root, remainder).
fn isqrt128(n: u128) -> (u128, u128) {
    let mut rem: u128 = 0;
    let mut root: u128 = 0;
    for k in (0..64).rev() {
        // Bring down two bits.
        rem = (rem << 2) | ((n >> (2 * k)) & 3);
        let trial = (root << 2) | 1;
        root <<= 1;
        if rem >= trial {
            rem -= trial;
            root |= 1;
        }
    }
    (root, rem)
}

/// Square root, rounded to `fmt`.
pub fn sqrt(ctx: &mut Ctx, fmt: Format, a: Fp) -> Fp {
    ctx.rounded_up = false;
    if let Some(n) = nan_one(ctx, a) {
        return n;
    }
    match a.cls {
        Cls::Zero => a,
        _ if a.sign => {
            ctx.raise(IE);
            Fp::default_nan()
        }
        Cls::Inf => a,
        _ => {
            den_check(ctx, a, a);
            let a = a.norm();
            // value = sig * 2^m, m = exp - 63.
            let m = a.exp - 63;
            let (n, k) = if (m - 64).rem_euclid(2) == 0 {
                ((a.sig as u128) << 64, m - 64)
            } else {
                ((a.sig as u128) << 63, m - 63)
            };
            let (r, rem) = isqrt128(n);
            let low: u128 = if rem > r {
                (1 << 63) | 1
            } else if rem != 0 {
                1
            } else {
                0
            };
            let s = (r << 64) | low;
            round(ctx, fmt, false, k / 2 + 63, s)
        }
    }
}

#[path = "softfloat_cmp.rs"]
mod cmp;
pub use cmp::*;

#[cfg(test)]
#[path = "tests_softfloat.rs"]
mod tests;
