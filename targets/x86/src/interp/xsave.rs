//! XSAVE family for state components 0 (x87), 1 (SSE) and, when the model
//! has PKU, 9 (PKRU): XSAVE, XSAVEOPT, XSAVEC, XRSTOR (standard and
//! compacted forms), XGETBV and XSETBV. The XSAVE area is the 512-byte
//! legacy region followed by the 64-byte header (576 bytes; the compacted
//! layout of components 0 and 1 is the same); PKRU is 8 bytes at 0xA80 in
//! the standard form and right after the header in the compacted one.
//! XINUSE is reported as all ones (permitted by the SDM: a component may be
//! reported in use while in its initial state), so XSAVEOPT behaves as
//! XSAVE.

use iced_x86::{Instruction, Mnemonic as M};

use super::x87_env::{image_mxcsr, init_x87, load_x87, load_xmm, save_mxcsr, save_x87, save_xmm};
use super::{Cpu, CpuConfig};
use crate::bus::CpuBus;
use crate::consts::cr4;
use crate::cpu_model::Feature;
use crate::exception::{Exception, XResult};
use crate::mmu::seg::SegAccess;
use crate::state::gpr::{RAX, RCX, RDX};

/// Size of the legacy region and the header.
pub const XSAVE_SIZE: u32 = 576;
/// Offset of the PKRU component in the standard form.
pub const PKRU_OFFSET: u64 = 0xa80;

const X87: u64 = 1;
const SSE: u64 = 2;
/// XCR0 bit of the PKRU component.
pub const PKRU: u64 = 1 << 9;
const COMPACT: u64 = 1 << 63;

/// XCR0 bits the vCPU's model supports: x87, SSE, and PKRU with PKU.
pub fn xcr0_supported(cfg: &CpuConfig) -> u64 {
    if cfg.features.has(Feature::Pku) {
        X87 | SSE | PKRU
    } else {
        X87 | SSE
    }
}

/// Size of the standard-form area holding the components of `xcr0`.
pub fn area_size(xcr0: u64) -> u32 {
    if xcr0 & PKRU != 0 {
        PKRU_OFFSET as u32 + 8
    } else {
        XSAVE_SIZE
    }
}

/// Size of the compacted-form area holding the components of `xcr0`.
pub fn compacted_size(xcr0: u64) -> u32 {
    if xcr0 & PKRU != 0 {
        XSAVE_SIZE + 8
    } else {
        XSAVE_SIZE
    }
}

pub fn exec(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    if cpu.state.cr4 & cr4::OSXSAVE == 0 {
        return Err(Exception::ud());
    }
    match i.mnemonic() {
        M::Xgetbv => {
            if cpu.state.gpr[RCX] as u32 != 0 {
                return Err(Exception::gp0());
            }
            let v = cpu.state.xcr0;
            cpu.set_gpr_sized(RAX, 4, v & 0xffff_ffff);
            cpu.set_gpr_sized(RDX, 4, v >> 32);
            Ok(())
        }
        M::Xsetbv => {
            let v = (cpu.gpr_sized(RDX, 4) << 32) | cpu.gpr_sized(RAX, 4);
            if cpu.cpl != 0 || cpu.state.rflags & crate::consts::rflags::VM != 0 {
                return Err(Exception::gp0());
            }
            if cpu.state.gpr[RCX] as u32 != 0
                || v & X87 == 0
                || v & !xcr0_supported(&cpu.config) != 0
            {
                return Err(Exception::gp0());
            }
            cpu.state.xcr0 = v;
            Ok(())
        }
        _ => {
            if cpu.state.cr0 & crate::consts::cr0::TS != 0 {
                return Err(Exception::nm());
            }
            save_restore(cpu, bus, i)
        }
    }
}

fn save_restore(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let m = i.mnemonic();
    let rex_w = matches!(m, M::Xsave64 | M::Xsaveopt64 | M::Xsavec64 | M::Xrstor64);
    let rfbm = cpu.state.xcr0 & ((cpu.gpr_sized(RDX, 4) << 32) | cpu.gpr_sized(RAX, 4));
    let restore = matches!(m, M::Xrstor | M::Xrstor64);
    let access = if restore {
        SegAccess::Read
    } else {
        SegAccess::Write
    };
    let compact_save = matches!(m, M::Xsavec | M::Xsavec64);
    let size = if compact_save {
        compacted_size(rfbm)
    } else {
        area_size(rfbm)
    };
    let lin = cpu.mem_lin(i, size, access)?;
    if lin & 63 != 0 {
        return Err(Exception::gp0());
    }
    let user = cpu.user;
    let mut b = [0u8; XSAVE_SIZE as usize];
    if restore {
        cpu.mmu.read(&cpu.state, bus, lin, &mut b, user)?;
        // PKRU is read before anything changes (a fault leaves all as is).
        let pkru = if rfbm & PKRU != 0 {
            let comp = u64::from_le_bytes(b[520..528].try_into().unwrap_or([0; 8]));
            let off = if comp & COMPACT != 0 {
                XSAVE_SIZE as u64
            } else {
                PKRU_OFFSET
            };
            let mut p = [0u8; 4];
            cpu.mmu
                .read(&cpu.state, bus, lin.wrapping_add(off), &mut p, user)?;
            let bv = u64::from_le_bytes(b[512..520].try_into().unwrap_or([0; 8]));
            Some(if bv & PKRU != 0 {
                u32::from_le_bytes(p)
            } else {
                0
            })
        } else {
            None
        };
        xrstor(cpu, &b, rfbm, rex_w)?;
        if let Some(p) = pkru {
            super::system::set_pkru(cpu, p);
        }
        return Ok(());
    }
    let compact = compact_save;
    // The header's other bits are preserved by the standard form: read it.
    let mut hdr = [0u8; 64];
    cpu.mmu
        .read(&cpu.state, bus, lin.wrapping_add(512), &mut hdr, user)?;
    let xinuse = xcr0_supported(&cpu.config);
    let mut bv = u64::from_le_bytes(hdr[..8].try_into().unwrap_or([0; 8]));
    if compact {
        bv = rfbm & xinuse;
        hdr = [0; 64];
        hdr[8..16].copy_from_slice(&(COMPACT | rfbm).to_le_bytes());
    } else {
        bv = (bv & !rfbm) | (rfbm & xinuse);
    }
    hdr[..8].copy_from_slice(&bv.to_le_bytes());
    // Write each saved piece separately: untouched bytes keep their values.
    if rfbm & X87 != 0 {
        save_x87(cpu, &mut b, rex_w);
        cpu.mmu.write(&cpu.state, bus, lin, &b[..24], user)?;
        cpu.mmu
            .write(&cpu.state, bus, lin.wrapping_add(32), &b[32..160], user)?;
    }
    if rfbm & SSE != 0 {
        save_mxcsr(cpu, &mut b);
        save_xmm(cpu, &mut b);
        cpu.mmu
            .write(&cpu.state, bus, lin.wrapping_add(24), &b[24..32], user)?;
        let end = 160 + 16 * super::x87_env::nxmm(cpu);
        cpu.mmu
            .write(&cpu.state, bus, lin.wrapping_add(160), &b[160..end], user)?;
    }
    if rfbm & PKRU != 0 {
        let off = if compact {
            XSAVE_SIZE as u64
        } else {
            PKRU_OFFSET
        };
        let v = (cpu.state.pkru as u64).to_le_bytes();
        cpu.mmu
            .write(&cpu.state, bus, lin.wrapping_add(off), &v, user)?;
    }
    cpu.mmu
        .write(&cpu.state, bus, lin.wrapping_add(512), &hdr, user)
}

fn xrstor(cpu: &mut Cpu, b: &[u8; 576], rfbm: u64, rex_w: bool) -> XResult<()> {
    let q = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]));
    let bv = q(512);
    let comp = q(520);
    let compact = comp & COMPACT != 0;
    let xcr0 = cpu.state.xcr0;
    if compact {
        let cbits = comp & !COMPACT;
        if cbits & !xcr0 != 0 || bv & !cbits != 0 || b[528..576].iter().any(|&x| x != 0) {
            return Err(Exception::gp0());
        }
    } else if bv & !xcr0 != 0 || b[520..576].iter().any(|&x| x != 0) {
        return Err(Exception::gp0());
    }
    // MXCSR: the standard form loads it whenever RFBM[1]; the compacted
    // form only with the SSE state (else it is initialized).
    let mxcsr = if rfbm & SSE != 0 && (!compact || bv & SSE != 0) {
        Some(image_mxcsr(b)?)
    } else if rfbm & SSE != 0 {
        Some(0x1f80)
    } else {
        None
    };
    if rfbm & X87 != 0 {
        if bv & X87 != 0 {
            load_x87(cpu, b, rex_w);
            cpu.fpu_update_es();
        } else {
            init_x87(cpu);
        }
    }
    if rfbm & SSE != 0 {
        if bv & SSE != 0 {
            load_xmm(cpu, b);
        } else {
            let n = super::x87_env::nxmm(cpu);
            for x in cpu.state.fpu.xmm.iter_mut().take(n) {
                *x = [0; 16];
            }
        }
    }
    if let Some(m) = mxcsr {
        cpu.state.fpu.mxcsr = m;
    }
    Ok(())
}
