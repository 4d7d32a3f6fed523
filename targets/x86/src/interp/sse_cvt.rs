//! Conversions between integers, singles and doubles (including the MMX
//! forms CVTPI2Px/CVT(T)Px2PI) and ROUNDPS/PD/SS/SD.

use iced_x86::{Instruction, Mnemonic as M, OpKind};

use super::softfloat::{self as sf, Ctx, Fp, Rc, F32, F64};
use super::sse::{lane, mx_ctx, mx_finish, rd, set_lane, set_reg_v, sx, V};
use super::sse_float::{pack, unpack};
use super::Cpu;
use crate::bus::CpuBus;
use crate::exception::XResult;

/// Float to `bits`-wide integer, integer indefinite on invalid.
fn f2i(ctx: &mut Ctx, v: Fp, trunc: bool, bits: u32) -> u64 {
    let rc = if trunc { Rc::Zero } else { ctx.rc };
    match sf::to_int(ctx, v, rc, bits) {
        Some(x) => {
            x as u64
                & if bits == 64 {
                    u64::MAX
                } else {
                    (1u64 << bits) - 1
                }
        }
        None => 1u64 << (bits - 1),
    }
}

/// Float to float (single <-> double), NaNs quieted.
fn f2f(ctx: &mut Ctx, v: Fp, to_dbl: bool) -> Fp {
    if let Some(n) = sf::nan_one(ctx, v) {
        return n;
    }
    sf::den_check(ctx, v, v);
    sf::round_fp(ctx, if to_dbl { F64 } else { F32 }, v)
}

pub fn exec(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let m = i.mnemonic();
    let mut ctx = mx_ctx(cpu);
    let a = rd(cpu, bus, i, 0, true)?;
    let aligned = matches!(
        m,
        M::Cvtpd2ps
            | M::Cvtdq2ps
            | M::Cvtps2dq
            | M::Cvttps2dq
            | M::Cvtpd2dq
            | M::Cvttpd2dq
            | M::Cvtpd2pi
            | M::Cvttpd2pi
            | M::Roundps
            | M::Roundpd
    );
    let b = rd(cpu, bus, i, 1, aligned)?;
    let mut r: V = a;
    match m {
        M::Cvtsi2ss | M::Cvtsi2sd => {
            let size = match i.op1_kind() {
                OpKind::Register => super::operand::reg_size(i.op1_register()) as usize,
                _ => i.memory_size().size(),
            };
            let v = sx(lane(&b, size.min(8), 0), size.min(8));
            let dbl = m == M::Cvtsi2sd;
            let f = sf::from_int(&mut ctx, if dbl { F64 } else { F32 }, v);
            set_lane(&mut r, if dbl { 8 } else { 4 }, 0, pack(f, dbl));
        }
        M::Cvtss2si | M::Cvttss2si | M::Cvtsd2si | M::Cvttsd2si => {
            let dbl = matches!(m, M::Cvtsd2si | M::Cvttsd2si);
            let trunc = matches!(m, M::Cvttss2si | M::Cvttsd2si);
            let dst = i.op0_register();
            let bits = (super::operand::reg_size(dst) * 8).clamp(16, 64);
            let v = unpack(&mut ctx, lane(&b, if dbl { 8 } else { 4 }, 0), dbl);
            let x = f2i(&mut ctx, v, trunc, bits);
            mx_finish(cpu, &ctx)?;
            cpu.set_reg(dst, x);
            return Ok(());
        }
        M::Cvtss2sd => {
            let v = unpack(&mut ctx, lane(&b, 4, 0), false);
            set_lane(&mut r, 8, 0, pack(f2f(&mut ctx, v, true), true));
        }
        M::Cvtsd2ss => {
            let v = unpack(&mut ctx, lane(&b, 8, 0), true);
            set_lane(&mut r, 4, 0, pack(f2f(&mut ctx, v, false), false));
        }
        M::Cvtps2pd => {
            r = [0; 16];
            for k in 0..2 {
                let v = unpack(&mut ctx, lane(&b, 4, k), false);
                set_lane(&mut r, 8, k, pack(f2f(&mut ctx, v, true), true));
            }
        }
        M::Cvtpd2ps => {
            r = [0; 16];
            for k in 0..2 {
                let v = unpack(&mut ctx, lane(&b, 8, k), true);
                set_lane(&mut r, 4, k, pack(f2f(&mut ctx, v, false), false));
            }
        }
        M::Cvtdq2ps => {
            for k in 0..4 {
                let f = sf::from_int(&mut ctx, F32, sx(lane(&b, 4, k), 4));
                set_lane(&mut r, 4, k, pack(f, false));
            }
        }
        M::Cvtps2dq | M::Cvttps2dq => {
            for k in 0..4 {
                let v = unpack(&mut ctx, lane(&b, 4, k), false);
                set_lane(&mut r, 4, k, f2i(&mut ctx, v, m == M::Cvttps2dq, 32));
            }
        }
        M::Cvtdq2pd | M::Cvtpi2pd => {
            r = [0; 16];
            for k in 0..2 {
                let f = sf::from_int(&mut ctx, F64, sx(lane(&b, 4, k), 4));
                set_lane(&mut r, 8, k, pack(f, true));
            }
        }
        M::Cvtpd2dq | M::Cvttpd2dq | M::Cvtpd2pi | M::Cvttpd2pi => {
            r = [0; 16];
            let trunc = matches!(m, M::Cvttpd2dq | M::Cvttpd2pi);
            for k in 0..2 {
                let v = unpack(&mut ctx, lane(&b, 8, k), true);
                set_lane(&mut r, 4, k, f2i(&mut ctx, v, trunc, 32));
            }
        }
        M::Cvtpi2ps => {
            for k in 0..2 {
                let f = sf::from_int(&mut ctx, F32, sx(lane(&b, 4, k), 4));
                set_lane(&mut r, 4, k, pack(f, false));
            }
        }
        M::Cvtps2pi | M::Cvttps2pi => {
            r = [0; 16];
            for k in 0..2 {
                let v = unpack(&mut ctx, lane(&b, 4, k), false);
                set_lane(&mut r, 4, k, f2i(&mut ctx, v, m == M::Cvttps2pi, 32));
            }
        }
        M::Roundps | M::Roundpd | M::Roundss | M::Roundsd => {
            let imm = i.immediate8();
            let rc = if imm & 4 != 0 {
                ctx.rc
            } else {
                Rc::from_bits(imm as u32)
            };
            let dbl = matches!(m, M::Roundpd | M::Roundsd);
            let w = if dbl { 8 } else { 4 };
            let n = if matches!(m, M::Roundss | M::Roundsd) {
                1
            } else {
                16 / w
            };
            for k in 0..n {
                let v = unpack(&mut ctx, lane(&b, w, k), dbl);
                let z = sf::round_int(&mut ctx, v, rc, imm & 8 != 0);
                set_lane(&mut r, w, k, pack(z, dbl));
            }
        }
        _ => return Err(cpu.unimplemented(i)),
    }
    mx_finish(cpu, &ctx)?;
    set_reg_v(cpu, i.op0_register(), r);
    Ok(())
}
