//! Packs, unpacks, shuffles, byte alignment, blends and PMOVSX/PMOVZX.

use iced_x86::{Instruction, Mnemonic as M};

use super::sse::{lane, rd, set_lane, set_reg_v, sx, vlen, V};
use super::sse_int::{sat_s, sat_u};
use super::Cpu;
use crate::bus::CpuBus;
use crate::exception::XResult;

pub fn exec(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let m = i.mnemonic();
    let n = vlen(i);
    let a = rd(cpu, bus, i, 0, true)?;
    let b = rd(cpu, bus, i, 1, true)?;
    let imm = if matches!(
        m,
        M::Pshufd
            | M::Pshufhw
            | M::Pshuflw
            | M::Pshufw
            | M::Palignr
            | M::Pblendw
            | M::Blendps
            | M::Blendpd
            | M::Shufps
            | M::Shufpd
    ) {
        i.immediate8() as usize
    } else {
        0
    };
    let x0 = cpu.xmm(0);
    let r = match m {
        M::Packsswb => pack(&a, &b, n, 2, |x| sat_s(sx(x, 2), 1)),
        M::Packssdw => pack(&a, &b, n, 4, |x| sat_s(sx(x, 4), 2)),
        M::Packuswb => pack(&a, &b, n, 2, |x| sat_u(sx(x, 2), 1)),
        M::Packusdw => pack(&a, &b, n, 4, |x| sat_u(sx(x, 4), 2)),
        M::Punpcklbw => unpack(&a, &b, n, 1, false),
        M::Punpcklwd => unpack(&a, &b, n, 2, false),
        M::Punpckldq | M::Unpcklps => unpack(&a, &b, n, 4, false),
        M::Punpcklqdq | M::Unpcklpd => unpack(&a, &b, n, 8, false),
        M::Punpckhbw => unpack(&a, &b, n, 1, true),
        M::Punpckhwd => unpack(&a, &b, n, 2, true),
        M::Punpckhdq | M::Unpckhps => unpack(&a, &b, n, 4, true),
        M::Punpckhqdq | M::Unpckhpd => unpack(&a, &b, n, 8, true),
        M::Pshufd => {
            let mut r = [0; 16];
            for k in 0..4 {
                set_lane(&mut r, 4, k, lane(&b, 4, (imm >> (2 * k)) & 3));
            }
            r
        }
        M::Pshufw => {
            let mut r = [0; 16];
            for k in 0..4 {
                set_lane(&mut r, 2, k, lane(&b, 2, (imm >> (2 * k)) & 3));
            }
            r
        }
        M::Pshuflw | M::Pshufhw => {
            let base = if m == M::Pshufhw { 4 } else { 0 };
            let mut r = b;
            for k in 0..4 {
                set_lane(
                    &mut r,
                    2,
                    base + k,
                    lane(&b, 2, base + ((imm >> (2 * k)) & 3)),
                );
            }
            r
        }
        M::Pshufb => {
            let mut r = a;
            for k in 0..n {
                let s = b[k & 15];
                r[k & 15] = if s & 0x80 != 0 {
                    0
                } else {
                    a[(s as usize) & (n - 1)]
                };
            }
            r
        }
        M::Palignr => {
            // (a:b) >> (imm * 8), the low n bytes.
            let mut t = [0u8; 32];
            t[..n].copy_from_slice(&b[..n]);
            t[n..2 * n].copy_from_slice(&a[..n]);
            let mut r = a;
            for k in 0..n {
                r[k & 15] = t
                    .get(imm + k)
                    .copied()
                    .filter(|_| imm + k < 2 * n)
                    .unwrap_or(0);
            }
            r
        }
        M::Pblendw => blend(&a, &b, 2, |k| imm >> k & 1 != 0),
        M::Blendps => blend(&a, &b, 4, |k| imm >> k & 1 != 0),
        M::Blendpd => blend(&a, &b, 8, |k| imm >> k & 1 != 0),
        M::Pblendvb => blend(&a, &b, 1, |k| x0[k & 15] & 0x80 != 0),
        M::Blendvps => blend(&a, &b, 4, |k| x0[(4 * k + 3) & 15] & 0x80 != 0),
        M::Blendvpd => blend(&a, &b, 8, |k| x0[(8 * k + 7) & 15] & 0x80 != 0),
        M::Shufps => {
            let mut r = [0; 16];
            set_lane(&mut r, 4, 0, lane(&a, 4, imm & 3));
            set_lane(&mut r, 4, 1, lane(&a, 4, (imm >> 2) & 3));
            set_lane(&mut r, 4, 2, lane(&b, 4, (imm >> 4) & 3));
            set_lane(&mut r, 4, 3, lane(&b, 4, (imm >> 6) & 3));
            r
        }
        M::Shufpd => {
            let mut r = [0; 16];
            set_lane(&mut r, 8, 0, lane(&a, 8, imm & 1));
            set_lane(&mut r, 8, 1, lane(&b, 8, (imm >> 1) & 1));
            r
        }
        M::Pmovsxbw => pmov(&b, 1, 2, true),
        M::Pmovsxbd => pmov(&b, 1, 4, true),
        M::Pmovsxbq => pmov(&b, 1, 8, true),
        M::Pmovsxwd => pmov(&b, 2, 4, true),
        M::Pmovsxwq => pmov(&b, 2, 8, true),
        M::Pmovsxdq => pmov(&b, 4, 8, true),
        M::Pmovzxbw => pmov(&b, 1, 2, false),
        M::Pmovzxbd => pmov(&b, 1, 4, false),
        M::Pmovzxbq => pmov(&b, 1, 8, false),
        M::Pmovzxwd => pmov(&b, 2, 4, false),
        M::Pmovzxwq => pmov(&b, 2, 8, false),
        M::Pmovzxdq => pmov(&b, 4, 8, false),
        _ => return Err(cpu.unimplemented(i)),
    };
    set_reg_v(cpu, i.op0_register(), r);
    Ok(())
}

/// Narrows `ws`-byte lanes of a then b into `ws/2`-byte lanes.
fn pack(a: &V, b: &V, n: usize, ws: usize, f: impl Fn(u64) -> u64) -> V {
    let mut r = [0u8; 16];
    let cnt = n / ws;
    let wd = ws / 2;
    for k in 0..cnt {
        set_lane(&mut r, wd, k, f(lane(a, ws, k)));
        set_lane(&mut r, wd, cnt + k, f(lane(b, ws, k)));
    }
    r
}

/// Interleaves the low (or high) halves of a and b.
fn unpack(a: &V, b: &V, n: usize, w: usize, high: bool) -> V {
    let mut r = [0u8; 16];
    let half = n / w / 2;
    let base = if high { half } else { 0 };
    for k in 0..half {
        set_lane(&mut r, w, 2 * k, lane(a, w, base + k));
        set_lane(&mut r, w, 2 * k + 1, lane(b, w, base + k));
    }
    r
}

/// Takes lane k of b where `sel(k)`, else of a.
fn blend(a: &V, b: &V, w: usize, sel: impl Fn(usize) -> bool) -> V {
    let mut r = *a;
    for k in 0..16 / w {
        if sel(k) {
            set_lane(&mut r, w, k, lane(b, w, k));
        }
    }
    r
}

/// Sign- or zero-extends `ws`-byte lanes into `wd`-byte lanes.
fn pmov(b: &V, ws: usize, wd: usize, signed: bool) -> V {
    let mut r = [0u8; 16];
    for k in 0..16 / wd {
        let x = lane(b, ws, k);
        let y = if signed { sx(x, ws) as u64 } else { x };
        set_lane(&mut r, wd, k, y);
    }
    r
}
