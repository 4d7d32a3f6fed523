//! Packed integer arithmetic, compares, logic and shifts (MMX and XMM
//! forms share the code through the vector length).

use iced_x86::{Instruction, Mnemonic as M, OpKind};

use super::sse::{lane, rd, set_lane, set_reg_v, sx, vlen, V};
use super::Cpu;
use crate::bus::CpuBus;
use crate::consts::rflags::{AF, CF, OF, PF, SF, ZF};
use crate::exception::XResult;

/// Saturates a signed value to a signed `w`-byte lane.
#[inline]
pub(super) fn sat_s(x: i64, w: usize) -> u64 {
    let max = (1i64 << (8 * w - 1)) - 1;
    let min = -(1i64 << (8 * w - 1));
    (x.clamp(min, max) as u64) & lmask(w)
}

/// Saturates a signed value to an unsigned `w`-byte lane.
#[inline]
pub(super) fn sat_u(x: i64, w: usize) -> u64 {
    let max = (1i64 << (8 * w)) - 1;
    x.clamp(0, max) as u64
}

#[inline]
pub(super) fn lmask(w: usize) -> u64 {
    if w >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * w)) - 1
    }
}

/// Lane-wise `dst = f(dst, src)` over `w`-byte lanes.
fn bin(
    cpu: &mut Cpu,
    bus: &mut dyn CpuBus,
    i: &Instruction,
    w: usize,
    f: impl Fn(u64, u64) -> u64,
) -> XResult<()> {
    let n = vlen(i);
    let a = rd(cpu, bus, i, 0, true)?;
    let b = rd(cpu, bus, i, 1, true)?;
    let mut r = a;
    for k in 0..n / w {
        set_lane(&mut r, w, k, f(lane(&a, w, k), lane(&b, w, k)) & lmask(w));
    }
    set_reg_v(cpu, i.op0_register(), r);
    Ok(())
}

/// Whole-register logic (the upper half of an MMX result is discarded).
fn bitwise(
    cpu: &mut Cpu,
    bus: &mut dyn CpuBus,
    i: &Instruction,
    f: impl Fn(u128, u128) -> u128,
) -> XResult<()> {
    let a = u128::from_le_bytes(rd(cpu, bus, i, 0, true)?);
    let b = u128::from_le_bytes(rd(cpu, bus, i, 1, true)?);
    set_reg_v(cpu, i.op0_register(), f(a, b).to_le_bytes());
    Ok(())
}

/// Horizontal operation: pairs of dst then pairs of src.
fn horiz(
    cpu: &mut Cpu,
    bus: &mut dyn CpuBus,
    i: &Instruction,
    w: usize,
    f: impl Fn(u64, u64) -> u64,
) -> XResult<()> {
    let n = vlen(i);
    let a = rd(cpu, bus, i, 0, true)?;
    let b = rd(cpu, bus, i, 1, true)?;
    let half = n / w / 2;
    let mut r = a;
    for k in 0..half {
        set_lane(
            &mut r,
            w,
            k,
            f(lane(&a, w, 2 * k), lane(&a, w, 2 * k + 1)) & lmask(w),
        );
        set_lane(
            &mut r,
            w,
            k + half,
            f(lane(&b, w, 2 * k), lane(&b, w, 2 * k + 1)) & lmask(w),
        );
    }
    set_reg_v(cpu, i.op0_register(), r);
    Ok(())
}

pub fn exec(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    match i.mnemonic() {
        M::Paddb => bin(cpu, bus, i, 1, u64::wrapping_add),
        M::Paddw => bin(cpu, bus, i, 2, u64::wrapping_add),
        M::Paddd => bin(cpu, bus, i, 4, u64::wrapping_add),
        M::Paddq => bin(cpu, bus, i, 8, u64::wrapping_add),
        M::Psubb => bin(cpu, bus, i, 1, u64::wrapping_sub),
        M::Psubw => bin(cpu, bus, i, 2, u64::wrapping_sub),
        M::Psubd => bin(cpu, bus, i, 4, u64::wrapping_sub),
        M::Psubq => bin(cpu, bus, i, 8, u64::wrapping_sub),
        M::Paddsb => bin(cpu, bus, i, 1, |a, b| sat_s(sx(a, 1) + sx(b, 1), 1)),
        M::Paddsw => bin(cpu, bus, i, 2, |a, b| sat_s(sx(a, 2) + sx(b, 2), 2)),
        M::Paddusb => bin(cpu, bus, i, 1, |a, b| sat_u((a + b) as i64, 1)),
        M::Paddusw => bin(cpu, bus, i, 2, |a, b| sat_u((a + b) as i64, 2)),
        M::Psubsb => bin(cpu, bus, i, 1, |a, b| sat_s(sx(a, 1) - sx(b, 1), 1)),
        M::Psubsw => bin(cpu, bus, i, 2, |a, b| sat_s(sx(a, 2) - sx(b, 2), 2)),
        M::Psubusb => bin(cpu, bus, i, 1, |a, b| sat_u(a as i64 - b as i64, 1)),
        M::Psubusw => bin(cpu, bus, i, 2, |a, b| sat_u(a as i64 - b as i64, 2)),
        M::Pmullw => bin(cpu, bus, i, 2, |a, b| {
            (sx(a, 2).wrapping_mul(sx(b, 2))) as u64
        }),
        M::Pmulhw => bin(cpu, bus, i, 2, |a, b| ((sx(a, 2) * sx(b, 2)) >> 16) as u64),
        M::Pmulhuw => bin(cpu, bus, i, 2, |a, b| (a * b) >> 16),
        M::Pmulld => bin(cpu, bus, i, 4, |a, b| a.wrapping_mul(b)),
        M::Pmuludq => bin(cpu, bus, i, 8, |a, b| (a & 0xffff_ffff) * (b & 0xffff_ffff)),
        M::Pmuldq => bin(cpu, bus, i, 8, |a, b| {
            (sx(a, 4).wrapping_mul(sx(b, 4))) as u64
        }),
        M::Pmulhrsw => bin(cpu, bus, i, 2, |a, b| {
            ((((sx(a, 2) * sx(b, 2)) >> 14) + 1) >> 1) as u64
        }),
        M::Pmaddwd => bin(cpu, bus, i, 4, |a, b| {
            let p0 = sx(a & 0xffff, 2) * sx(b & 0xffff, 2);
            let p1 = sx(a >> 16, 2) * sx(b >> 16, 2);
            (p0.wrapping_add(p1)) as u64
        }),
        M::Pmaddubsw => bin(cpu, bus, i, 2, |a, b| {
            let p0 = (a & 0xff) as i64 * sx(b & 0xff, 1);
            let p1 = (a >> 8) as i64 * sx(b >> 8, 1);
            sat_s(p0 + p1, 2)
        }),
        M::Pavgb => bin(cpu, bus, i, 1, |a, b| (a + b + 1) >> 1),
        M::Pavgw => bin(cpu, bus, i, 2, |a, b| (a + b + 1) >> 1),
        M::Pminub => bin(cpu, bus, i, 1, |a, b| a.min(b)),
        M::Pminuw => bin(cpu, bus, i, 2, |a, b| a.min(b)),
        M::Pminud => bin(cpu, bus, i, 4, |a, b| a.min(b)),
        M::Pmaxub => bin(cpu, bus, i, 1, |a, b| a.max(b)),
        M::Pmaxuw => bin(cpu, bus, i, 2, |a, b| a.max(b)),
        M::Pmaxud => bin(cpu, bus, i, 4, |a, b| a.max(b)),
        M::Pminsb => bin(cpu, bus, i, 1, |a, b| sx(a, 1).min(sx(b, 1)) as u64),
        M::Pminsw => bin(cpu, bus, i, 2, |a, b| sx(a, 2).min(sx(b, 2)) as u64),
        M::Pminsd => bin(cpu, bus, i, 4, |a, b| sx(a, 4).min(sx(b, 4)) as u64),
        M::Pmaxsb => bin(cpu, bus, i, 1, |a, b| sx(a, 1).max(sx(b, 1)) as u64),
        M::Pmaxsw => bin(cpu, bus, i, 2, |a, b| sx(a, 2).max(sx(b, 2)) as u64),
        M::Pmaxsd => bin(cpu, bus, i, 4, |a, b| sx(a, 4).max(sx(b, 4)) as u64),
        M::Pcmpeqb => bin(cpu, bus, i, 1, |a, b| mask_if(a == b)),
        M::Pcmpeqw => bin(cpu, bus, i, 2, |a, b| mask_if(a == b)),
        M::Pcmpeqd => bin(cpu, bus, i, 4, |a, b| mask_if(a == b)),
        M::Pcmpeqq => bin(cpu, bus, i, 8, |a, b| mask_if(a == b)),
        M::Pcmpgtb => bin(cpu, bus, i, 1, |a, b| mask_if(sx(a, 1) > sx(b, 1))),
        M::Pcmpgtw => bin(cpu, bus, i, 2, |a, b| mask_if(sx(a, 2) > sx(b, 2))),
        M::Pcmpgtd => bin(cpu, bus, i, 4, |a, b| mask_if(sx(a, 4) > sx(b, 4))),
        M::Pcmpgtq => bin(cpu, bus, i, 8, |a, b| mask_if((a as i64) > (b as i64))),
        M::Pand | M::Andps | M::Andpd => bitwise(cpu, bus, i, |a, b| a & b),
        M::Pandn | M::Andnps | M::Andnpd => bitwise(cpu, bus, i, |a, b| !a & b),
        M::Por | M::Orps | M::Orpd => bitwise(cpu, bus, i, |a, b| a | b),
        M::Pxor | M::Xorps | M::Xorpd => bitwise(cpu, bus, i, |a, b| a ^ b),
        M::Psignb => bin(cpu, bus, i, 1, |a, b| psign(a, b, 1)),
        M::Psignw => bin(cpu, bus, i, 2, |a, b| psign(a, b, 2)),
        M::Psignd => bin(cpu, bus, i, 4, |a, b| psign(a, b, 4)),
        M::Pabsb => bin(cpu, bus, i, 1, |_, b| sx(b, 1).unsigned_abs()),
        M::Pabsw => bin(cpu, bus, i, 2, |_, b| sx(b, 2).unsigned_abs()),
        M::Pabsd => bin(cpu, bus, i, 4, |_, b| sx(b, 4).unsigned_abs()),
        M::Phaddw => horiz(cpu, bus, i, 2, u64::wrapping_add),
        M::Phaddd => horiz(cpu, bus, i, 4, u64::wrapping_add),
        M::Phaddsw => horiz(cpu, bus, i, 2, |a, b| sat_s(sx(a, 2) + sx(b, 2), 2)),
        M::Phsubw => horiz(cpu, bus, i, 2, u64::wrapping_sub),
        M::Phsubd => horiz(cpu, bus, i, 4, u64::wrapping_sub),
        M::Phsubsw => horiz(cpu, bus, i, 2, |a, b| sat_s(sx(a, 2) - sx(b, 2), 2)),
        M::Psadbw => bin(cpu, bus, i, 8, |a, b| {
            (0..8)
                .map(|k| ((a >> (8 * k)) as u8).abs_diff((b >> (8 * k)) as u8) as u64)
                .sum()
        }),
        M::Phminposuw => phminposuw(cpu, bus, i),
        M::Ptest => ptest(cpu, bus, i),
        M::Mpsadbw => mpsadbw(cpu, bus, i),
        _ => Err(cpu.unimplemented(i)),
    }
}

#[inline]
fn mask_if(c: bool) -> u64 {
    if c {
        u64::MAX
    } else {
        0
    }
}

#[inline]
fn psign(a: u64, b: u64, w: usize) -> u64 {
    let s = sx(b, w);
    if s < 0 {
        (sx(a, w).wrapping_neg()) as u64
    } else if s == 0 {
        0
    } else {
        a
    }
}

fn phminposuw(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let b = rd(cpu, bus, i, 1, true)?;
    let mut best = (lane(&b, 2, 0), 0u64);
    for k in 1..8 {
        let x = lane(&b, 2, k);
        if x < best.0 {
            best = (x, k as u64);
        }
    }
    let mut r = [0u8; 16];
    set_lane(&mut r, 4, 0, best.0 | (best.1 << 16));
    set_reg_v(cpu, i.op0_register(), r);
    Ok(())
}

fn ptest(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let a = u128::from_le_bytes(rd(cpu, bus, i, 0, true)?);
    let b = u128::from_le_bytes(rd(cpu, bus, i, 1, true)?);
    let mut f = 0;
    if a & b == 0 {
        f |= ZF;
    }
    if !a & b == 0 {
        f |= CF;
    }
    cpu.set_flags(CF | PF | AF | ZF | SF | OF, f);
    Ok(())
}

fn mpsadbw(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let a = rd(cpu, bus, i, 0, true)?;
    let b = rd(cpu, bus, i, 1, true)?;
    let imm = i.immediate8() as usize;
    let aoff = (imm >> 2 & 1) * 4;
    let boff = (imm & 3) * 4;
    let mut r: V = [0; 16];
    for k in 0..8 {
        let mut s = 0u64;
        for j in 0..4 {
            s += a[(aoff + k + j) & 15].abs_diff(b[(boff + j) & 15]) as u64;
        }
        set_lane(&mut r, 2, k, s);
    }
    set_reg_v(cpu, i.op0_register(), r);
    Ok(())
}

/// PSLL/PSRL/PSRA (count from an immediate, a register or memory) and
/// PSLLDQ/PSRLDQ.
pub fn shift(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let n = vlen(i);
    let a = rd(cpu, bus, i, 0, true)?;
    let count = match i.op1_kind() {
        OpKind::Immediate8 => i.immediate8() as u64,
        _ => lane(&rd(cpu, bus, i, 1, true)?, 8, 0),
    };
    let m = i.mnemonic();
    let mut r = a;
    match m {
        M::Pslldq | M::Psrldq => {
            let c = count.min(16) as usize;
            r = [0; 16];
            for k in 0..16 {
                if m == M::Pslldq {
                    if k >= c {
                        r[k] = a[k - c];
                    }
                } else if k + c < 16 {
                    r[k] = a[k + c];
                }
            }
        }
        _ => {
            let (w, kind) = match m {
                M::Psllw => (2, 0),
                M::Pslld => (4, 0),
                M::Psllq => (8, 0),
                M::Psrlw => (2, 1),
                M::Psrld => (4, 1),
                M::Psrlq => (8, 1),
                M::Psraw => (2, 2),
                _ => (4, 2),
            };
            let bits = 8 * w as u64;
            for k in 0..n / w {
                let x = lane(&a, w, k);
                let y = match kind {
                    0 if count < bits => x << count,
                    1 if count < bits => x >> count,
                    2 => (sx(x, w) >> count.min(bits - 1)) as u64,
                    _ => 0,
                };
                set_lane(&mut r, w, k, y & lmask(w));
            }
        }
    }
    set_reg_v(cpu, i.op0_register(), r);
    Ok(())
}
