//! SSE4.2: PCMPESTRI/PCMPESTRM/PCMPISTRI/PCMPISTRM and CRC32.

use iced_x86::{Instruction, Mnemonic as M, OpKind};

use super::sse::{lane, rd, set_lane, sx, V};
use super::Cpu;
use crate::bus::CpuBus;
use crate::consts::rflags::{AF, CF, OF, PF, SF, ZF};
use crate::exception::XResult;
use crate::state::gpr::{RAX, RCX, RDX};

/// Result of the string comparison core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct StrRes {
    /// IntRes2, one bit per element.
    pub mask: u16,
    /// Elements per vector (16 bytes or 8 words).
    pub n: usize,
    pub len1: usize,
    pub len2: usize,
}

/// The PCMPxSTRx core: `a` is the first (register) operand, `b` the
/// second; `len1`/`len2` their valid lengths (already clamped to `n`).
pub(super) fn compare(a: &V, b: &V, len1: usize, len2: usize, imm: u8) -> StrRes {
    let words = imm & 1 != 0;
    let signed = imm & 2 != 0;
    let n = if words { 8 } else { 16 };
    let w = if words { 2 } else { 1 };
    let elem = |v: &V, k: usize| -> i64 {
        let x = lane(v, w, k);
        if signed {
            sx(x, w)
        } else {
            x as i64
        }
    };
    let mut ea = [0i64; 16];
    let mut eb = [0i64; 16];
    for k in 0..n {
        ea[k] = elem(a, k);
        eb[k] = elem(b, k);
    }
    let va = |k: usize| k < len1;
    let vb = |k: usize| k < len2;
    let mut r1: u16 = 0;
    match (imm >> 2) & 3 {
        // Equal any: is b[j] any of a[0..len1]?
        0 => {
            for (j, &y) in eb.iter().enumerate().take(len2.min(n)) {
                if ea[..len1.min(n)].contains(&y) {
                    r1 |= 1 << j;
                }
            }
        }
        // Ranges: a holds (lo, hi) pairs.
        1 => {
            for (j, &y) in eb.iter().enumerate().take(len2.min(n)) {
                let pairs = len1.min(n) / 2;
                if (0..pairs).any(|p| ea[2 * p] <= y && y <= ea[2 * p + 1]) {
                    r1 |= 1 << j;
                }
            }
        }
        // Equal each: element-wise, two invalid elements compare equal.
        2 => {
            for j in 0..n {
                let eq = match (va(j), vb(j)) {
                    (true, true) => ea[j] == eb[j],
                    (false, false) => true,
                    _ => false,
                };
                if eq {
                    r1 |= 1 << j;
                }
            }
        }
        // Equal ordered: substring search of a in b.
        _ => {
            for j in 0..n {
                let mut all = true;
                for k in 0..n - j {
                    let eq = match (va(k), vb(j + k)) {
                        (false, _) => true,
                        (true, false) => false,
                        (true, true) => ea[k] == eb[j + k],
                    };
                    if !eq {
                        all = false;
                        break;
                    }
                }
                if all {
                    r1 |= 1 << j;
                }
            }
        }
    }
    let full: u16 = if n == 16 { 0xffff } else { 0xff };
    let r2 = match (imm >> 4) & 3 {
        1 => !r1 & full,
        3 => {
            let valid: u16 = if len2 >= 16 {
                0xffff
            } else {
                ((1u32 << len2) - 1) as u16
            };
            (r1 ^ valid) & full
        }
        _ => r1,
    };
    StrRes {
        mask: r2,
        n,
        len1,
        len2,
    }
}

/// Index of the first null element (or `n`).
fn implicit_len(v: &V, words: bool) -> usize {
    let (w, n) = if words { (2, 8) } else { (1, 16) };
    (0..n).find(|&k| lane(v, w, k) == 0).unwrap_or(n)
}

fn explicit_len(cpu: &Cpu, reg: usize, wide: bool, n: usize) -> usize {
    let v = cpu.state.gpr[reg];
    let mag = if wide {
        (v as i64).unsigned_abs()
    } else {
        (v as u32 as i32).unsigned_abs() as u64
    };
    mag.min(n as u64) as usize
}

pub fn pcmpstr(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let m = i.mnemonic();
    let imm = i.immediate8();
    let a = rd(cpu, bus, i, 0, false)?;
    let b = rd(cpu, bus, i, 1, false)?;
    let words = imm & 1 != 0;
    let n = if words { 8 } else { 16 };
    let explicit = matches!(
        m,
        M::Pcmpestri | M::Pcmpestri64 | M::Pcmpestrm | M::Pcmpestrm64
    );
    let wide = matches!(m, M::Pcmpestri64 | M::Pcmpestrm64);
    let (len1, len2) = if explicit {
        (
            explicit_len(cpu, RAX, wide, n),
            explicit_len(cpu, RDX, wide, n),
        )
    } else {
        (implicit_len(&a, words), implicit_len(&b, words))
    };
    let r = compare(&a, &b, len1, len2, imm);
    if matches!(m, M::Pcmpestri | M::Pcmpestri64 | M::Pcmpistri) {
        let idx = if r.mask == 0 {
            n as u64
        } else if imm & 0x40 != 0 {
            15 - r.mask.leading_zeros() as u64
        } else {
            r.mask.trailing_zeros() as u64
        };
        cpu.set_gpr_sized(RCX, 4, idx);
    } else {
        let mut x: V = [0; 16];
        if imm & 0x40 != 0 {
            let w = if words { 2 } else { 1 };
            for k in 0..n {
                set_lane(
                    &mut x,
                    w,
                    k,
                    if r.mask >> k & 1 != 0 { u64::MAX } else { 0 },
                );
            }
        } else {
            set_lane(&mut x, 2, 0, r.mask as u64);
        }
        cpu.set_xmm(0, x);
    }
    let mut f = 0;
    if r.mask != 0 {
        f |= CF;
    }
    if r.len2 < n {
        f |= ZF;
    }
    if r.len1 < n {
        f |= SF;
    }
    if r.mask & 1 != 0 {
        f |= OF;
    }
    cpu.set_flags(CF | PF | AF | ZF | SF | OF, f);
    Ok(())
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) of `size` bytes.
pub(super) fn crc32c(mut crc: u32, data: u64, size: u32) -> u32 {
    for k in 0..size.min(8) {
        crc ^= (data >> (8 * k)) as u8 as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// CRC32 r32/r64, r/m8/16/32/64.
pub fn crc32(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let size = match i.op1_kind() {
        OpKind::Register => super::operand::reg_size(i.op1_register()),
        _ => i.memory_size().size() as u32,
    };
    let data = cpu.read_op(bus, i, 1, size)?;
    let dst = i.op0_register();
    let crc = crc32c(cpu.reg(dst) as u32, data, size);
    cpu.set_reg(dst, crc as u64);
    Ok(())
}
