//! Unit tests of the softfloat core (the interpreter-level tests compare
//! against the host CPU).

use super::*;

fn ctx() -> Ctx {
    Ctx::new(Rc::Nearest)
}

fn op64(f: impl Fn(&mut Ctx, Fp, Fp) -> Fp, a: f64, b: f64, rc: Rc) -> (u64, u32) {
    let mut c = Ctx::new(rc);
    let x = unpack64(&mut c, a.to_bits());
    let y = unpack64(&mut c, b.to_bits());
    let r = f(&mut c, x, y);
    (pack64(r), c.flags)
}

#[test]
fn basic_f64_ops_match_host() {
    let vals = [
        1.0,
        -2.5,
        3.0,
        0.1,
        1e300,
        1e-300,
        5e-324,
        2.2250738585072014e-308,
        f64::MAX,
        -0.0,
        0.0,
        7.0 / 3.0,
        123456789.123,
        -1e-310,
    ];
    for &a in &vals {
        for &b in &vals {
            let addf = |c: &mut Ctx, x, y| add(c, F64, NanRule::Sse, x, y, false);
            let subf = |c: &mut Ctx, x, y| add(c, F64, NanRule::Sse, x, y, true);
            let mulf = |c: &mut Ctx, x, y| mul(c, F64, NanRule::Sse, x, y);
            let divf = |c: &mut Ctx, x, y| div(c, F64, NanRule::Sse, x, y);
            assert_eq!(
                op64(addf, a, b, Rc::Nearest).0,
                (a + b).to_bits(),
                "{a} + {b}"
            );
            assert_eq!(
                op64(subf, a, b, Rc::Nearest).0,
                (a - b).to_bits(),
                "{a} - {b}"
            );
            assert_eq!(
                op64(mulf, a, b, Rc::Nearest).0,
                (a * b).to_bits(),
                "{a} * {b}"
            );
            let q = a / b;
            if !q.is_nan() {
                assert_eq!(op64(divf, a, b, Rc::Nearest).0, q.to_bits(), "{a} / {b}");
            }
        }
        let mut c = ctx();
        let av = unpack64(&mut c, a.to_bits());
        let s = sqrt(&mut c, F64, av);
        if a >= 0.0 || a == 0.0 {
            assert_eq!(pack64(s), a.sqrt().to_bits(), "sqrt {a}");
        }
    }
}

#[test]
fn directed_rounding() {
    let divf = |c: &mut Ctx, x, y| div(c, F64, NanRule::Sse, x, y);
    let (dn, f) = op64(divf, 1.0, 3.0, Rc::Down);
    let (up, _) = op64(divf, 1.0, 3.0, Rc::Up);
    assert_eq!(up, dn + 1);
    assert_eq!(f, PE);
    let (z, _) = op64(divf, -1.0, 3.0, Rc::Zero);
    assert_eq!(z, dn | (1 << 63));
}

#[test]
fn overflow_and_underflow_flags() {
    let mulf = |c: &mut Ctx, x, y| mul(c, F64, NanRule::Sse, x, y);
    let (r, f) = op64(mulf, f64::MAX, 2.0, Rc::Nearest);
    assert_eq!(r, f64::INFINITY.to_bits());
    assert_eq!(f, OE | PE);
    let (r, f) = op64(mulf, f64::MAX, 2.0, Rc::Zero);
    assert_eq!(r, f64::MAX.to_bits());
    assert_eq!(f, OE | PE);
    let (r, f) = op64(mulf, 1e-300, 1e-300, Rc::Nearest);
    assert_eq!(r, 0);
    assert_eq!(f, UE | PE);
    // Exact denormal result: no UE when masked.
    let (r, f) = op64(mulf, 2.2250738585072014e-308, 0.5, Rc::Nearest);
    assert_eq!(r, (2.2250738585072014e-308f64 * 0.5).to_bits());
    assert_eq!(f, 0);
}

#[test]
fn x87_nan_rule_prefers_quiet_then_larger() {
    let mut c = ctx();
    let s = Fp {
        sign: false,
        cls: Cls::NaN,
        exp: 0,
        sig: TOP | 0x100,
        den: false,
    };
    let q = Fp {
        sign: false,
        cls: Cls::NaN,
        exp: 0,
        sig: TOP | QUIET | 1,
        den: false,
    };
    assert_eq!(nan_pick(&mut c, NanRule::X87, s, q), Some(q));
    assert_eq!(c.flags, IE);
    let mut c = ctx();
    assert_eq!(nan_pick(&mut c, NanRule::Sse, s, q), Some(s.quiet()));
}

#[test]
fn int_conversions() {
    let mut c = ctx();
    let v = unpack64(&mut c, 2.5f64.to_bits());
    assert_eq!(to_int(&mut c, v, Rc::Nearest, 32), Some(2));
    assert_eq!(to_int(&mut c, v, Rc::Up, 32), Some(3));
    let v = unpack64(&mut c, (-2.5f64).to_bits());
    assert_eq!(to_int(&mut c, v, Rc::Down, 32), Some(-3));
    assert_eq!(to_int(&mut c, v, Rc::Zero, 32), Some(-2));
    let v = unpack64(&mut c, 2147483648.0f64.to_bits());
    let mut c = ctx();
    assert_eq!(to_int(&mut c, v, Rc::Nearest, 32), None);
    assert_eq!(c.flags, IE);
    let v = unpack64(&mut c, (-2147483648.0f64).to_bits());
    assert_eq!(to_int(&mut c, v, Rc::Nearest, 32), Some(-2147483648));
    let v = unpack64(&mut c, (-9.223_372_036_854_776e18_f64).to_bits());
    assert_eq!(to_int(&mut c, v, Rc::Nearest, 64), Some(i64::MIN));
    let mut c = ctx();
    let f = from_int(&mut c, F32, 16777217);
    assert_eq!(pack32(f), 16777216.0f32.to_bits());
    assert_eq!(c.flags, PE);
}

#[test]
fn extended_round_trip() {
    let mut c = ctx();
    for &(se, m) in &[
        (0x3fffu16, 0x8000_0000_0000_0001u64),
        (0xc000, 0xc90f_daa2_2168_c235),
        (0x0000, 0x0000_0000_0000_0001),
        (0x7fff, 0xc000_0000_0000_1234),
        (0x0001, 0x8000_0000_0000_0000),
    ] {
        let v = unpack80(se, m);
        assert_eq!(pack80(round_fp(&mut c, F80, v)), (se, m));
    }
}
