//! x87 environment and state images: FNSTENV/FLDENV, FNSAVE/FRSTOR (16-
//! and 32-bit, real and protected layouts), FXSAVE/FXRSTOR (legacy and
//! 64-bit forms) and the legacy-region helpers XSAVE shares.
//!
//! FCS/FDS are not tracked per instruction: FNSTENV/FNSAVE images hold the
//! current CS/DS selectors, FXSAVE/XSAVE images 0 (as CPUs with the "FPU
//! CS/DS deprecated" feature store). FIP/FDP hold the instruction and
//! operand offsets (real-mode images store offsets, not 20-bit linear
//! addresses). Reserved halves of the 32-bit images read as ones.

use iced_x86::{Instruction, MemorySize, Mnemonic as M};

use super::sse::mx;
use super::x87::fninit;
use super::Cpu;
use crate::bus::CpuBus;
use crate::exception::{Exception, XResult};
use crate::mmu::seg::SegAccess;

/// The full 16-bit tag word (2 bits per physical register).
pub(crate) fn full_tag(cpu: &Cpu) -> u16 {
    let top = cpu.fpu_top();
    let mut t = 0u16;
    for p in 0..8 {
        let tag = if cpu.state.fpu.ftw & (1 << p) == 0 {
            3
        } else {
            let (se, m) = cpu.st_raw((p + 8 - top) & 7);
            let e = se & 0x7fff;
            if e == 0 && m == 0 {
                1
            } else if e == 0x7fff || e == 0 || m >> 63 == 0 {
                2
            } else {
                0
            }
        };
        t |= tag << (2 * p);
    }
    t
}

/// Abridged tag from a full tag word.
pub(crate) fn abridge(full: u16) -> u8 {
    let mut a = 0u8;
    for p in 0..8 {
        if (full >> (2 * p)) & 3 != 3 {
            a |= 1 << p;
        }
    }
    a
}

/// Loads FSW, keeping the register contents at their physical places
/// (the stack-ordered array rotates when TOP changes).
pub(crate) fn load_fsw_keep_regs(cpu: &mut Cpu, fsw: u16) {
    let old = cpu.fpu_top();
    cpu.state.fpu.fsw = fsw;
    let new = cpu.fpu_top();
    cpu.state.fpu.st.rotate_left((new + 8 - old) & 7);
}

fn put16(b: &mut [u8], off: usize, v: u16) {
    if let Some(s) = b.get_mut(off..off + 2) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}
fn put32(b: &mut [u8], off: usize, v: u32) {
    if let Some(s) = b.get_mut(off..off + 4) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}
fn put64(b: &mut [u8], off: usize, v: u64) {
    if let Some(s) = b.get_mut(off..off + 8) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}
fn get16(b: &[u8], off: usize) -> u16 {
    b.get(off..off + 2)
        .map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
}
fn get32(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}
fn get64(b: &[u8], off: usize) -> u64 {
    (get32(b, off) as u64) | ((get32(b, off + 4) as u64) << 32)
}

/// Writes the FNSTENV image (14 or 28 bytes) into `b`.
fn store_env(cpu: &Cpu, b: &mut [u8], wide: bool) {
    let f = &cpu.state.fpu;
    let tag = full_tag(cpu);
    let (fip, fdp, fop) = (f.fip as u32, f.fdp as u32, (f.fop & 0x7ff) as u32);
    // FCS/FDS are not tracked per instruction: the current CS/DS.
    let fcs = cpu.state.seg(crate::SegReg::Cs).selector;
    let fds = cpu.state.seg(crate::SegReg::Ds).selector;
    if wide {
        // Reserved upper halves read as ones, as on hardware.
        put32(b, 0, 0xffff_0000 | f.fcw as u32);
        put32(b, 4, 0xffff_0000 | f.fsw as u32);
        put32(b, 8, 0xffff_0000 | tag as u32);
        if cpu.real {
            put32(b, 12, 0xffff_0000 | (fip & 0xffff));
            put32(b, 16, fop | ((fip >> 16) << 12));
            put32(b, 20, 0xffff_0000 | (fdp & 0xffff));
            put32(b, 24, (fdp >> 16) << 12);
        } else {
            put32(b, 12, fip);
            put32(b, 16, (fop << 16) | fcs as u32);
            put32(b, 20, fdp);
            put32(b, 24, 0xffff_0000 | fds as u32);
        }
    } else {
        put16(b, 0, f.fcw);
        put16(b, 2, f.fsw);
        put16(b, 4, tag);
        if cpu.real {
            put16(b, 6, fip as u16);
            put16(b, 8, (fop | (((fip >> 16) & 0xf) << 12)) as u16);
            put16(b, 10, fdp as u16);
            put16(b, 12, (((fdp >> 16) & 0xf) << 12) as u16);
        } else {
            put16(b, 6, fip as u16);
            put16(b, 8, fcs);
            put16(b, 10, fdp as u16);
            put16(b, 12, fds);
        }
    }
}

/// Loads an FLDENV image.
fn load_env(cpu: &mut Cpu, b: &[u8], wide: bool) {
    let (fcw, fsw, tag, fip, fdp, fop);
    if wide {
        fcw = get16(b, 0);
        fsw = get16(b, 4);
        tag = get16(b, 8);
        if cpu.real {
            fip = (get32(b, 12) & 0xffff) | ((get32(b, 16) >> 12) << 16);
            fop = get32(b, 16) & 0x7ff;
            fdp = (get32(b, 20) & 0xffff) | ((get32(b, 24) >> 12) << 16);
        } else {
            fip = get32(b, 12);
            fop = (get32(b, 16) >> 16) & 0x7ff;
            fdp = get32(b, 20);
        }
    } else {
        fcw = get16(b, 0);
        fsw = get16(b, 2);
        tag = get16(b, 4);
        if cpu.real {
            fip = get16(b, 6) as u32 | (((get16(b, 8) >> 12) as u32) << 16);
            fop = (get16(b, 8) & 0x7ff) as u32;
            fdp = get16(b, 10) as u32 | (((get16(b, 12) >> 12) as u32) << 16);
        } else {
            fip = get16(b, 6) as u32;
            fop = 0;
            fdp = get16(b, 10) as u32;
        }
    }
    cpu.state.fpu.fcw = (fcw & 0x1f3f) | 0x40;
    load_fsw_keep_regs(cpu, fsw);
    cpu.state.fpu.ftw = abridge(tag);
    cpu.state.fpu.fip = fip as u64;
    cpu.state.fpu.fdp = fdp as u64;
    cpu.state.fpu.fop = fop as u16;
    cpu.fpu_update_es();
}

/// FNSTENV/FSTENV/FLDENV/FNSAVE/FSAVE/FRSTOR.
pub fn env(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let ms = i.memory_size();
    let wide = matches!(ms, MemorySize::FpuEnv28 | MemorySize::FpuState108);
    let env_len = if wide { 28 } else { 14 };
    let total = ms.size().clamp(env_len, 108);
    match i.mnemonic() {
        M::Fnstenv | M::Fstenv | M::Fnsave | M::Fsave => {
            let mut b = [0u8; 108];
            store_env(cpu, &mut b, wide);
            let save = matches!(i.mnemonic(), M::Fnsave | M::Fsave);
            if save {
                for k in 0..8 {
                    let (se, m) = cpu.st_raw(k);
                    let o = env_len + 10 * k;
                    put64(&mut b, o, m);
                    put16(&mut b, o + 8, se);
                }
            }
            let lin = cpu.mem_lin(i, total as u32, SegAccess::Write)?;
            let user = cpu.user;
            cpu.mmu.write(&cpu.state, bus, lin, &b[..total], user)?;
            if save {
                fninit(cpu);
            } else {
                cpu.state.fpu.fcw |= 0x3f;
            }
            Ok(())
        }
        _ => {
            let lin = cpu.mem_lin(i, total as u32, SegAccess::Read)?;
            let mut b = [0u8; 108];
            let user = cpu.user;
            cpu.mmu.read(&cpu.state, bus, lin, &mut b[..total], user)?;
            load_env(cpu, &b, wide);
            if i.mnemonic() == M::Frstor {
                for k in 0..8 {
                    let o = env_len + 10 * k;
                    cpu.set_st_raw(k, (get16(&b, o + 8), get64(&b, o)));
                }
            }
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------
// FXSAVE legacy region (shared with XSAVE)

/// Number of XMM registers in the image (16 only in 64-bit mode).
pub(crate) fn nxmm(cpu: &Cpu) -> usize {
    if cpu.long64 {
        16
    } else {
        8
    }
}

/// Writes the x87 part of the legacy region (bytes 0..24 and 32..160).
pub(crate) fn save_x87(cpu: &Cpu, b: &mut [u8], rex_w: bool) {
    let f = &cpu.state.fpu;
    put16(b, 0, f.fcw);
    put16(b, 2, f.fsw);
    if let Some(x) = b.get_mut(4) {
        *x = f.ftw;
    }
    if let Some(x) = b.get_mut(5) {
        *x = 0;
    }
    put16(b, 6, f.fop & 0x7ff);
    if rex_w {
        put64(b, 8, f.fip);
        put64(b, 16, f.fdp);
    } else {
        put32(b, 8, f.fip as u32);
        put32(b, 12, 0);
        put32(b, 16, f.fdp as u32);
        put32(b, 20, 0);
    }
    for k in 0..8 {
        let o = 32 + 16 * k;
        if let Some(s) = b.get_mut(o..o + 16) {
            s[..10].copy_from_slice(&f.st[k][..10]);
            s[10..].fill(0);
        }
    }
}

/// Writes MXCSR, MXCSR_MASK (bytes 24..32).
pub(crate) fn save_mxcsr(cpu: &Cpu, b: &mut [u8]) {
    put32(b, 24, cpu.state.fpu.mxcsr);
    put32(b, 28, mx::WRITABLE);
}

/// Writes the XMM registers (bytes 160..).
pub(crate) fn save_xmm(cpu: &Cpu, b: &mut [u8]) {
    for k in 0..nxmm(cpu) {
        let o = 160 + 16 * k;
        if let Some(s) = b.get_mut(o..o + 16) {
            s.copy_from_slice(&cpu.state.fpu.xmm[k]);
        }
    }
}

pub(crate) fn load_x87(cpu: &mut Cpu, b: &[u8], rex_w: bool) {
    let f = &mut cpu.state.fpu;
    f.fcw = get16(b, 0);
    f.fsw = get16(b, 2);
    f.ftw = b.get(4).copied().unwrap_or(0);
    f.fop = get16(b, 6) & 0x7ff;
    if rex_w {
        f.fip = get64(b, 8);
        f.fdp = get64(b, 16);
    } else {
        f.fip = get32(b, 8) as u64;
        f.fdp = get32(b, 16) as u64;
    }
    for k in 0..8 {
        let o = 32 + 16 * k;
        if let Some(s) = b.get(o..o + 10) {
            f.st[k][..10].copy_from_slice(s);
            f.st[k][10..].fill(0);
        }
    }
}

/// MXCSR from an image, #GP(0) on reserved bits.
pub(crate) fn image_mxcsr(b: &[u8]) -> XResult<u32> {
    let m = get32(b, 24);
    if m & !mx::WRITABLE != 0 {
        return Err(Exception::gp0());
    }
    Ok(m)
}

pub(crate) fn load_xmm(cpu: &mut Cpu, b: &[u8]) {
    for k in 0..nxmm(cpu) {
        let o = 160 + 16 * k;
        if let Some(s) = b.get(o..o + 16) {
            cpu.state.fpu.xmm[k].copy_from_slice(s);
        }
    }
}

/// The x87 initial state (XRSTOR of a component not in XSTATE_BV).
pub(crate) fn init_x87(cpu: &mut Cpu) {
    fninit(cpu);
    cpu.state.fpu.st = [[0; 16]; 8];
}

/// FXSAVE/FXSAVE64/FXRSTOR/FXRSTOR64 (#NM checked by the caller).
pub fn fxsave_fxrstor(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let m = i.mnemonic();
    let rex_w = matches!(m, M::Fxsave64 | M::Fxrstor64);
    let save = matches!(m, M::Fxsave | M::Fxsave64);
    let access = if save {
        SegAccess::Write
    } else {
        SegAccess::Read
    };
    let lin = cpu.mem_lin(i, 512, access)?;
    if lin & 15 != 0 {
        return Err(Exception::gp0());
    }
    let user = cpu.user;
    let mut b = [0u8; 512];
    if save {
        // Bytes 416..512 (and 288..416 outside 64-bit mode) are not written.
        save_x87(cpu, &mut b, rex_w);
        save_mxcsr(cpu, &mut b);
        save_xmm(cpu, &mut b);
        let end = 160 + 16 * nxmm(cpu);
        cpu.mmu.write(&cpu.state, bus, lin, &b[..end], user)
    } else {
        cpu.mmu.read(&cpu.state, bus, lin, &mut b, user)?;
        let mxcsr = image_mxcsr(&b)?;
        load_x87(cpu, &b, rex_w);
        cpu.state.fpu.mxcsr = mxcsr;
        load_xmm(cpu, &b);
        cpu.fpu_update_es();
        Ok(())
    }
}
