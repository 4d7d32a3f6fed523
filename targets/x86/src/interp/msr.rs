//! RDMSR/WRMSR over the MSRs kept in [`crate::CpuState`]. Unknown MSRs
//! raise #GP(0) and are logged once each under `unimp`.

use super::Cpu;
use crate::consts::{efer, msr};
use crate::cpu_model::Feature;
use crate::exception::{Exception, XResult};
use crate::state::gpr::{RAX, RCX, RDX};
use crate::{CpuBus, SegReg};

/// IA32_FEATURE_CONTROL (reads as locked, VMX off).
pub const FEATURE_CONTROL: u32 = 0x3a;
/// IA32_BIOS_SIGN_ID (microcode revision; Linux reads it unguarded on Intel).
pub const BIOS_SIGN_ID: u32 = 0x8b;
/// IA32_PLATFORM_ID (read by Linux's microcode driver on family 6).
pub const PLATFORM_ID: u32 = 0x17;
/// IA32_MCG_CAP (no banks, no MCG_CTL) and IA32_MCG_STATUS.
pub const MCG_CAP: u32 = 0x179;
pub const MCG_STATUS: u32 = 0x17a;

/// AMD PERF_CTL0-3 (0xC0010000-3) and PERF_CTR0-3 (0xC0010004-7).
const AMD_PERF_FIRST: u32 = 0xc001_0000;
const AMD_PERF_LAST: u32 = 0xc001_0007;

impl Cpu {
    fn amd(&self) -> bool {
        self.config.vendor == crate::cpu_model::Vendor::Amd
    }

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
            // AMD's four legacy performance counters exist on every K8 and
            // later: they read 0 and never count.
            AMD_PERF_FIRST..=AMD_PERF_LAST if self.amd() => 0,
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
            AMD_PERF_FIRST..=AMD_PERF_LAST if self.amd() => {
                if v != 0 && self.unknown_msrs.insert(n) {
                    log::warn!(target: "unimp", "WRMSR {n:#x} = {v:#x}: AMD performance counters do not count");
                }
            }
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

/// IA32_TSC_DEADLINE.
pub const TSC_DEADLINE: u32 = 0x6e0;
/// The x2APIC register MSRs.
pub const X2APIC_FIRST: u32 = 0x800;
pub const X2APIC_LAST: u32 = 0x8ff;
/// IA32_APIC_BASE bits: BSP, x2APIC mode (EXTD), global enable.
const APIC_BASE_BSP: u64 = 1 << 8;
const APIC_BASE_EXTD: u64 = 1 << 10;
const APIC_BASE_EN: u64 = 1 << 11;

/// Whether MSR `n` belongs to the local APIC with this CPU's features:
/// Some(true) yes, Some(false) it would but the feature is off (#GP),
/// None not an APIC MSR.
fn apic_msr(cpu: &Cpu, n: u32) -> Option<bool> {
    let f = &cpu.config.features;
    match n {
        msr::APIC_BASE => Some(true),
        TSC_DEADLINE => Some(f.has(Feature::TscDeadline)),
        X2APIC_FIRST..=X2APIC_LAST => Some(f.has(Feature::X2apic)),
        _ => None,
    }
}

/// Checks an IA32_APIC_BASE write (SDM 10.12.5): reserved bits, x2APIC
/// without the feature, and the invalid mode transitions (x2APIC to
/// xAPIC, disabled to x2APIC, EXTD without EN) are #GP. The BSP bit is
/// kept as it is.
fn check_apic_base(cpu: &Cpu, old: u64, v: u64) -> XResult<u64> {
    let phys_mask = (1u64 << crate::mmu::walk::MAXPHYADDR) - 1;
    let valid = (phys_mask & !0xfff) | APIC_BASE_EN | APIC_BASE_EXTD | APIC_BASE_BSP;
    if v & !valid != 0 || (v & APIC_BASE_EXTD != 0 && !cpu.config.features.has(Feature::X2apic)) {
        return Err(Exception::gp0());
    }
    let mode = |b: u64| (b & APIC_BASE_EN != 0, b & APIC_BASE_EXTD != 0);
    match (mode(old), mode(v)) {
        (_, (false, true)) | ((true, true), (true, false)) | ((false, false), (true, true)) => {
            Err(Exception::gp0())
        }
        _ => Ok((v & !APIC_BASE_BSP) | (old & APIC_BASE_BSP)),
    }
}

pub fn rdmsr(cpu: &mut Cpu, bus: &mut dyn CpuBus) -> XResult<()> {
    super::system::require_cpl0(cpu)?;
    let n = cpu.state.gpr[RCX] as u32;
    let from_apic = match apic_msr(cpu, n) {
        Some(false) => return Err(cpu.unknown_msr(n, false)),
        Some(true) => bus.apic_msr_read(n),
        None => None,
    };
    let v = match from_apic {
        Some(Ok(v)) => v,
        Some(Err(_)) => return Err(Exception::gp0()),
        None => match cpu.read_msr(n) {
            Some(v) => v,
            None => return Err(cpu.unknown_msr(n, false)),
        },
    };
    cpu.state.gpr[RAX] = v & 0xffff_ffff;
    cpu.state.gpr[RDX] = v >> 32;
    Ok(())
}

pub fn wrmsr(cpu: &mut Cpu, bus: &mut dyn CpuBus) -> XResult<()> {
    super::system::require_cpl0(cpu)?;
    let n = cpu.state.gpr[RCX] as u32;
    let mut v = ((cpu.state.gpr[RDX] & 0xffff_ffff) << 32) | (cpu.state.gpr[RAX] & 0xffff_ffff);
    match apic_msr(cpu, n) {
        None => return cpu.write_msr(n, v),
        Some(false) => return Err(cpu.unknown_msr(n, true)),
        Some(true) => {}
    }
    if n == msr::APIC_BASE {
        let old = bus
            .apic_msr_read(n)
            .and_then(|r| r.ok())
            .unwrap_or(cpu.state.msr.apic_base);
        v = check_apic_base(cpu, old, v)?;
        cpu.state.msr.apic_base = v;
    }
    let tsc = cpu.read_tsc();
    match bus.apic_msr_write(n, v, tsc) {
        Some(Ok(())) => {
            // An IPI, EOI or TPR write may let an interrupt in: look at once.
            cpu.mmu.mmio_written = true;
            cpu.end_block = true;
            Ok(())
        }
        Some(Err(_)) => Err(Exception::gp0()),
        None if n == msr::APIC_BASE => Ok(()),
        None => Err(cpu.unknown_msr(n, true)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu_model::FeatureSet;
    use crate::CpuState;

    #[test]
    fn apic_base_transitions_follow_the_sdm() {
        let mut cpu = Cpu::new(CpuState::reset());
        let xapic = 0xfee0_0000 | APIC_BASE_EN | APIC_BASE_BSP;
        let x2 = xapic | APIC_BASE_EXTD;
        let off = 0xfee0_0000 | APIC_BASE_BSP;
        // Without the feature, EXTD faults.
        cpu.config.features = FeatureSet::all().without(Feature::X2apic);
        assert!(check_apic_base(&cpu, xapic, x2).is_err());
        cpu.config.features = FeatureSet::all();
        assert_eq!(check_apic_base(&cpu, xapic, x2).ok(), Some(x2));
        // x2APIC -> xAPIC and disabled -> x2APIC are invalid, as is
        // EXTD without EN; x2APIC -> disabled -> xAPIC is the way back.
        assert!(check_apic_base(&cpu, x2, xapic).is_err());
        assert!(check_apic_base(&cpu, off, x2).is_err());
        assert!(check_apic_base(&cpu, xapic, off | APIC_BASE_EXTD).is_err());
        assert_eq!(check_apic_base(&cpu, x2, off).ok(), Some(off));
        assert_eq!(check_apic_base(&cpu, off, xapic).ok(), Some(xapic));
        // Reserved bits fault; the BSP bit is kept.
        assert!(check_apic_base(&cpu, xapic, xapic | 1).is_err());
        assert!(check_apic_base(&cpu, xapic, xapic | (1 << 50)).is_err());
        assert_eq!(
            check_apic_base(&cpu, xapic, xapic & !APIC_BASE_BSP).ok(),
            Some(xapic)
        );
    }
}
