//! RDMSR/WRMSR over the MSRs kept in [`crate::CpuState`]. Unknown MSRs
//! raise #GP(0) and are logged once each under `unimp`.

use super::Cpu;
use crate::consts::{efer, msr};
use crate::cpu_model::Feature;
use crate::exception::{Exception, XResult};
use crate::state::gpr::{RAX, RCX, RDX};
use crate::SegReg;

/// IA32_FEATURE_CONTROL (reads as locked, VMX off).
pub const FEATURE_CONTROL: u32 = 0x3a;
/// IA32_BIOS_SIGN_ID (microcode revision; Linux reads it unguarded on Intel).
pub const BIOS_SIGN_ID: u32 = 0x8b;
/// IA32_PLATFORM_ID (read by Linux's microcode driver on family 6).
pub const PLATFORM_ID: u32 = 0x17;
/// IA32_MCG_CAP (no banks, no MCG_CTL) and IA32_MCG_STATUS.
pub const MCG_CAP: u32 = 0x179;
pub const MCG_STATUS: u32 = 0x17a;

impl Cpu {
    fn unknown_msr(&mut self, n: u32, write: bool) -> Exception {
        if self.unknown_msrs.insert(n) {
            log::warn!(target: "unimp", "{} of unknown MSR {n:#x}: #GP", if write { "WRMSR" } else { "RDMSR" });
        }
        Exception::gp0()
    }

    /// Reads an MSR (None: unknown).
    pub fn read_msr(&mut self, n: u32) -> Option<u64> {
        let m = &self.state.msr;
        Some(match n {
            msr::TSC => self.read_tsc(),
            msr::APIC_BASE => m.apic_base,
            FEATURE_CONTROL => 1,
            PLATFORM_ID => 0,
            MCG_CAP => 0,
            MCG_STATUS => 0,
            BIOS_SIGN_ID => 0,
            msr::MTRRCAP => 0,
            msr::SYSENTER_CS => m.sysenter_cs,
            msr::SYSENTER_ESP => m.sysenter_esp,
            msr::SYSENTER_EIP => m.sysenter_eip,
            msr::MISC_ENABLE => m.misc_enable,
            msr::PAT => m.pat,
            msr::MTRR_DEF_TYPE => m.mtrr_def_type,
            msr::EFER => self.state.efer,
            msr::STAR => m.star,
            msr::LSTAR => m.lstar,
            msr::CSTAR => m.cstar,
            msr::FMASK => m.fmask,
            msr::FS_BASE => self.state.seg(SegReg::Fs).base,
            msr::GS_BASE => self.state.seg(SegReg::Gs).base,
            msr::KERNEL_GS_BASE => m.kernel_gs_base,
            msr::TSC_AUX => m.tsc_aux,
            msr::PKRS if self.config.features.has(Feature::Pks) => m.pkrs,
            _ => return None,
        })
    }

    /// Writes an MSR; Err(#GP) for unknown MSRs and invalid values.
    pub fn write_msr(&mut self, n: u32, v: u64) -> XResult<()> {
        let canon = |v: u64| {
            if crate::mmu::seg::is_canonical(v) {
                Ok(v)
            } else {
                Err(Exception::gp0())
            }
        };
        match n {
            msr::TSC => self.write_tsc(v),
            msr::APIC_BASE => self.state.msr.apic_base = v,
            BIOS_SIGN_ID => {}
            // No machine-check banks: status writes of 0 are accepted.
            MCG_STATUS if v == 0 => {}
            msr::SYSENTER_CS => self.state.msr.sysenter_cs = v & 0xffff,
            msr::SYSENTER_ESP => self.state.msr.sysenter_esp = canon(v)?,
            msr::SYSENTER_EIP => self.state.msr.sysenter_eip = canon(v)?,
            msr::MISC_ENABLE => self.state.msr.misc_enable = v,
            msr::PAT => {
                // Each byte must be a valid memory type (0, 1, 4, 5, 6, 7).
                if (0..8).any(|k| matches!((v >> (k * 8)) & 0xff, 2 | 3 | 8..=255)) {
                    return Err(Exception::gp0());
                }
                self.state.msr.pat = v
            }
            msr::MTRR_DEF_TYPE => self.state.msr.mtrr_def_type = v,
            msr::EFER => {
                let allowed = efer::SCE | efer::LME | efer::NXE;
                if v & !(allowed | efer::LMA) != 0 {
                    return Err(Exception::gp0());
                }
                let old = self.state.efer;
                let paging = self.state.cr0 & crate::consts::cr0::PG != 0;
                if paging && (old ^ v) & efer::LME != 0 {
                    return Err(Exception::gp0());
                }
                self.state.efer = (v & allowed) | (old & efer::LMA);
                if (old ^ v) & efer::NXE != 0 {
                    self.mmu.flush_all();
                }
                self.update_mode();
            }
            msr::STAR => self.state.msr.star = v,
            msr::LSTAR => self.state.msr.lstar = canon(v)?,
            msr::CSTAR => self.state.msr.cstar = canon(v)?,
            msr::FMASK => self.state.msr.fmask = v & 0xffff_ffff,
            msr::FS_BASE => self.state.seg_mut(SegReg::Fs).base = canon(v)?,
            msr::GS_BASE => self.state.seg_mut(SegReg::Gs).base = canon(v)?,
            msr::KERNEL_GS_BASE => self.state.msr.kernel_gs_base = canon(v)?,
            msr::TSC_AUX => self.state.msr.tsc_aux = v & 0xffff_ffff,
            msr::PKRS if self.config.features.has(Feature::Pks) => {
                if v >> 32 != 0 {
                    return Err(Exception::gp0());
                }
                // The TLB caches the rights the old value gave.
                if self.state.msr.pkrs != v {
                    self.state.msr.pkrs = v;
                    self.mmu.flush_all();
                }
            }
            _ => return Err(self.unknown_msr(n, true)),
        }
        Ok(())
    }
}

pub fn rdmsr(cpu: &mut Cpu) -> XResult<()> {
    super::system::require_cpl0(cpu)?;
    let n = cpu.state.gpr[RCX] as u32;
    let v = match cpu.read_msr(n) {
        Some(v) => v,
        None => return Err(cpu.unknown_msr(n, false)),
    };
    cpu.state.gpr[RAX] = v & 0xffff_ffff;
    cpu.state.gpr[RDX] = v >> 32;
    Ok(())
}

pub fn wrmsr(cpu: &mut Cpu) -> XResult<()> {
    super::system::require_cpl0(cpu)?;
    let n = cpu.state.gpr[RCX] as u32;
    let v = ((cpu.state.gpr[RDX] & 0xffff_ffff) << 32) | (cpu.state.gpr[RAX] & 0xffff_ffff);
    cpu.write_msr(n, v)
}
