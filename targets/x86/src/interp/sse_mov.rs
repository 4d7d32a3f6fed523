//! SSE/MMX data movement: full and partial vector moves, MOVD/MOVQ,
//! MOVMSK, duplicates, masked stores, PINSR/PEXTR, INSERTPS/EXTRACTPS,
//! LDMXCSR/STMXCSR, MOVNTI.

use iced_x86::{Instruction, Mnemonic as M, OpKind};

use super::sse::{
    lane, mm_n, mx, rd, read_mem, reg_v, set_lane, set_reg_v, wr, write_mem, xmm_n, V,
};
use super::Cpu;
use crate::bus::CpuBus;
use crate::exception::{Exception, XResult};
use crate::mmu::seg::SegAccess;

/// MOVAPS/MOVUPS/MOVDQA/MOVDQU/LDDQU/MOVNTxx and friends: a 16-byte copy.
pub fn mov128(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction, align: bool) -> XResult<()> {
    let v = rd(cpu, bus, i, 1, align)?;
    wr(cpu, bus, i, v, align)
}

/// MOVSS/MOVSD (scalar): register-register merges the low element, a load
/// zeroes the rest, a store writes the element.
pub fn movs(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction, size: usize) -> XResult<()> {
    let src = rd(cpu, bus, i, 1, false)?;
    match (i.op0_kind(), i.op1_kind()) {
        (OpKind::Register, OpKind::Register) => {
            let d = xmm_n(i.op0_register()).unwrap_or(0);
            let mut v = cpu.xmm(d);
            v[..size].copy_from_slice(&src[..size]);
            cpu.set_xmm(d, v);
            Ok(())
        }
        (OpKind::Register, _) => {
            let mut v = [0u8; 16];
            v[..size].copy_from_slice(&src[..size]);
            wr(cpu, bus, i, v, false)
        }
        _ => write_mem(cpu, bus, i, &src, size, false),
    }
}

/// Width in bytes of a MOVD/MOVQ-family operand.
fn opnd_width(i: &Instruction, n: u32) -> usize {
    match i.op_kind(n) {
        OpKind::Register => {
            let r = i.op_register(n);
            if xmm_n(r).is_some() {
                16
            } else if mm_n(r).is_some() {
                8
            } else {
                super::operand::reg_size(r) as usize
            }
        }
        _ => i.memory_size().size(),
    }
}

/// MOVD, MOVQ (all forms), MOVNTQ, MOVQ2DQ, MOVDQ2Q.
pub fn movdq(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let w = if i.mnemonic() == M::Movd { 4 } else { 8 };
    let src = rd(cpu, bus, i, 1, false)?;
    let mut v = [0u8; 16];
    v[..w].copy_from_slice(&src[..w]);
    match i.op0_kind() {
        OpKind::Register => {
            let r = i.op0_register();
            if xmm_n(r).is_some() || mm_n(r).is_some() {
                set_reg_v(cpu, r, v);
            } else {
                cpu.set_reg(r, lane(&v, 8, 0));
            }
            Ok(())
        }
        _ => {
            let size = opnd_width(i, 0).min(w);
            write_mem(cpu, bus, i, &v, size, false)
        }
    }
}

/// MOVLPS/MOVLPD/MOVHPS/MOVHPD/MOVHLPS/MOVLHPS.
pub fn movlh(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let m = i.mnemonic();
    let high = matches!(m, M::Movhps | M::Movhpd);
    if i.op0_kind() != OpKind::Register {
        // Store 8 bytes of the source register.
        let s = reg_v(cpu, i.op1_register());
        let mut v = [0u8; 16];
        let off = if high { 8 } else { 0 };
        v[..8].copy_from_slice(&s[off..off + 8]);
        return write_mem(cpu, bus, i, &v, 8, false);
    }
    let d = xmm_n(i.op0_register()).unwrap_or(0);
    let mut v = cpu.xmm(d);
    let s = rd(cpu, bus, i, 1, false)?;
    match m {
        M::Movhlps => v[..8].copy_from_slice(&s[8..16]),
        M::Movlhps => v[8..16].copy_from_slice(&s[..8]),
        _ if high => v[8..16].copy_from_slice(&s[..8]),
        _ => v[..8].copy_from_slice(&s[..8]),
    }
    cpu.set_xmm(d, v);
    Ok(())
}

/// MOVMSKPS/MOVMSKPD/PMOVMSKB: sign bits into a general register.
pub fn movmsk(cpu: &mut Cpu, i: &Instruction) -> XResult<()> {
    let src = reg_v(cpu, i.op1_register());
    let n = if mm_n(i.op1_register()).is_some() {
        8
    } else {
        16
    };
    let w = match i.mnemonic() {
        M::Movmskps => 4,
        M::Movmskpd => 8,
        _ => 1,
    };
    let mut r = 0u64;
    for k in 0..n / w {
        r |= ((src[(k * w + w - 1) & 15] >> 7) as u64) << k;
    }
    cpu.set_reg(i.op0_register(), r);
    Ok(())
}

/// MOVDDUP/MOVSLDUP/MOVSHDUP.
pub fn dup(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let s = rd(cpu, bus, i, 1, true)?;
    let mut v = [0u8; 16];
    match i.mnemonic() {
        M::Movddup => {
            v[..8].copy_from_slice(&s[..8]);
            v[8..].copy_from_slice(&s[..8]);
        }
        M::Movsldup => {
            for k in 0..4 {
                set_lane(&mut v, 4, k, lane(&s, 4, k & !1));
            }
        }
        _ => {
            for k in 0..4 {
                set_lane(&mut v, 4, k, lane(&s, 4, k | 1));
            }
        }
    }
    wr(cpu, bus, i, v, false)
}

/// MASKMOVDQU/MASKMOVQ: byte-masked store to DS:rDI (segment overridable).
pub fn maskmov(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    // iced: op0 = [seg:rDI], op1 = data, op2 = mask.
    let (data_op, mask_op) = if i.op_count() == 3 { (1, 2) } else { (0, 1) };
    let data = reg_v(cpu, i.op_register(data_op));
    let maskv = reg_v(cpu, i.op_register(mask_op));
    let n = if mm_n(i.op_register(data_op)).is_some() {
        8
    } else {
        16
    };
    let amask = match i.op0_kind() {
        OpKind::MemorySegDI => 0xffff,
        OpKind::MemorySegEDI => 0xffff_ffff,
        _ => {
            if cpu.long64 {
                u64::MAX
            } else if cpu.bitness() == 16 {
                0xffff
            } else {
                0xffff_ffff
            }
        }
    };
    let off = cpu.state.gpr[crate::state::gpr::RDI] & amask;
    let seg = super::operand::sreg(i.memory_segment()).unwrap_or(crate::SegReg::Ds);
    let lin = cpu.lin(seg, off, n as u64, SegAccess::Write)?;
    for k in 0..n {
        if maskv[k & 15] & 0x80 != 0 {
            let user = cpu.user;
            cpu.mmu.write_u8(
                &cpu.state,
                bus,
                lin.wrapping_add(k as u64),
                data[k & 15],
                user,
            )?;
        }
    }
    Ok(())
}

/// PEXTRB/PEXTRW/PEXTRD/PEXTRQ/EXTRACTPS.
pub fn pextr(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let src_r = i.op1_register();
    let s = reg_v(cpu, src_r);
    let imm = i.immediate8() as usize;
    let mmx = mm_n(src_r).is_some();
    let (w, k) = match i.mnemonic() {
        M::Pextrb => (1, imm & 15),
        M::Pextrw => (2, imm & if mmx { 3 } else { 7 }),
        M::Pextrq => (8, imm & 1),
        _ => (4, imm & 3),
    };
    let x = lane(&s, w, k);
    if i.op0_kind() == OpKind::Register {
        cpu.set_reg(i.op0_register(), x);
        Ok(())
    } else {
        let mut v = [0u8; 16];
        set_lane(&mut v, w, 0, x);
        write_mem(cpu, bus, i, &v, w, false)
    }
}

/// PINSRB/PINSRW/PINSRD/PINSRQ.
pub fn pinsr(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let dr = i.op0_register();
    let mmx = mm_n(dr).is_some();
    let imm = i.immediate8() as usize;
    let (w, k) = match i.mnemonic() {
        M::Pinsrb => (1, imm & 15),
        M::Pinsrw => (2, imm & if mmx { 3 } else { 7 }),
        M::Pinsrq => (8, imm & 1),
        _ => (4, imm & 3),
    };
    let x = match i.op1_kind() {
        OpKind::Register => cpu.reg(i.op1_register()),
        _ => lane(&read_mem(cpu, bus, i, w, false)?, w, 0),
    };
    let mut v = reg_v(cpu, dr);
    set_lane(&mut v, w, k, x);
    set_reg_v(cpu, dr, v);
    Ok(())
}

/// INSERTPS xmm1, xmm2/m32, imm8.
pub fn insertps(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let imm = i.immediate8() as usize;
    let x = match i.op1_kind() {
        OpKind::Register => lane(&reg_v(cpu, i.op1_register()), 4, (imm >> 6) & 3),
        _ => lane(&read_mem(cpu, bus, i, 4, false)?, 4, 0),
    };
    let d = xmm_n(i.op0_register()).unwrap_or(0);
    let mut v: V = cpu.xmm(d);
    set_lane(&mut v, 4, (imm >> 4) & 3, x);
    for k in 0..4 {
        if imm & (1 << k) != 0 {
            set_lane(&mut v, 4, k, 0);
        }
    }
    cpu.set_xmm(d, v);
    Ok(())
}

/// LDMXCSR m32: #GP(0) for reserved bits.
pub fn ldmxcsr(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let v = lane(&read_mem(cpu, bus, i, 4, false)?, 4, 0) as u32;
    if v & !mx::WRITABLE != 0 {
        return Err(Exception::gp0());
    }
    cpu.state.fpu.mxcsr = v;
    Ok(())
}

/// STMXCSR m32.
pub fn stmxcsr(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let mut v = [0u8; 16];
    set_lane(&mut v, 4, 0, cpu.state.fpu.mxcsr as u64);
    write_mem(cpu, bus, i, &v, 4, false)
}

/// MOVNTI m32/m64, r32/r64 (a plain store; no SSE state involved).
pub fn movnti(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    if i.op0_kind() != OpKind::Memory {
        return Err(Exception::ud());
    }
    let size = cpu.op_size(i, 1);
    let v = cpu.reg(i.op1_register());
    cpu.write_op(bus, i, 0, size, v)
}
