//! CPUID: what the vCPU's model ([`CpuConfig::features`], see
//! [`crate::cpu_model`]) advertises, over what the interpreter implements.
//!
//! Vendor "GenuineIntel" (guests take their best-tested paths: SYSENTER for
//! 32-bit compat, SYSCALL in 64-bit mode only, as on Intel), family 6
//! model 6 stepping 3, matching the EDX signature of `CpuState::reset`.
//! Feature flags come from the model's [`crate::cpu_model::FeatureSet`];
//! OSXSAVE and OSPKE mirror CR4.

use super::{xsave, Cpu, CpuConfig};
use crate::consts::cr4;
use crate::cpu_model::{Feature, Reg};
use crate::exception::XResult;
use crate::state::gpr::{RAX, RBX, RCX, RDX};
use crate::CpuState;

pub const SIGNATURE: u32 = 0x663;
pub const VENDOR: &[u8; 12] = b"GenuineIntel";
const BRAND: &[u8; 48] = b"hx86 virtual CPU                                ";

/// Leaf 1 EDX: the model's features; APIC only when the machine has one.
/// (The machine-check architecture has no banks, MCG_CAP.Count = 0:
/// nothing ever reports a machine check.)
pub fn leaf1_edx(cfg: &CpuConfig) -> u32 {
    let mut d = cfg.features.cpuid_bits(1, 0, Reg::Edx);
    if !cfg.apic {
        d &= !(1 << 9);
    }
    if cfg.cpus > 1 {
        d |= 1 << 28; // HTT: EBX[23:16] counts logical processors.
    }
    d
}

/// Topology (leaf 1 EBX, leaf 0xB): `cpus` cores of one thread each in one
/// package, APIC ID = core number.
fn topology(cfg: &CpuConfig, leaf: u32, sub: u32) -> [u32; 4] {
    let n = cfg.cpus.max(1);
    match (leaf, sub) {
        (1, _) => [0, (8 << 8) | (n.min(255) << 16) | (cfg.apic_id << 24), 0, 0],
        // Leaf 0xB: level 0 SMT (1 thread), level 1 core (n cores).
        (_, 0) => [0, 1, 1 << 8, cfg.apic_id],
        (_, 1) => [32 - (n - 1).leading_zeros(), n, (2 << 8) | 1, cfg.apic_id],
        (_, s) => [0, 0, s & 0xff, cfg.apic_id],
    }
}

/// Leaf 1 ECX: the model's features and OSXSAVE (CR4). Bit 31, "running
/// under a hypervisor", tells guests there are no performance counters.
pub fn leaf1_ecx(cfg: &CpuConfig, st: &CpuState) -> u32 {
    let mut c = cfg.features.cpuid_bits(1, 0, Reg::Ecx);
    if st.cr4 & cr4::OSXSAVE != 0 {
        c |= 1 << 27;
    }
    c
}

/// Leaf 7 ECX: the model's features and OSPKE (CR4.PKE).
fn leaf7_ecx(cfg: &CpuConfig, st: &CpuState) -> u32 {
    let mut c = cfg.features.cpuid_bits(7, 0, Reg::Ecx);
    if st.cr4 & cr4::PKE != 0 {
        c |= 1 << 4;
    }
    c
}

/// Leaf 0xD (XSAVE): components x87, SSE and, with PKU, PKRU.
fn leaf_xsave(cfg: &CpuConfig, st: &CpuState, sub: u32) -> [u32; 4] {
    if !cfg.features.has(Feature::Xsave) {
        return [0; 4];
    }
    let supported = xsave::xcr0_supported(cfg);
    match sub {
        0 => [
            supported as u32,
            xsave::area_size(st.xcr0),
            xsave::area_size(supported),
            0,
        ],
        1 => [
            cfg.features.cpuid_bits(0xd, 1, Reg::Eax),
            xsave::compacted_size(st.xcr0),
            0,
            0,
        ],
        9 if supported & xsave::PKRU != 0 => [8, xsave::PKRU_OFFSET as u32, 0, 0],
        _ => [0; 4],
    }
}

fn le(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// CPUID leaf/subleaf → [EAX, EBX, ECX, EDX].
pub fn cpuid(cfg: &CpuConfig, st: &CpuState, leaf: u32, sub: u32) -> [u32; 4] {
    match leaf {
        0 => [
            0x16,
            le(&VENDOR[0..4]),
            le(&VENDOR[8..12]),
            le(&VENDOR[4..8]),
        ],
        1 => [
            SIGNATURE,
            topology(cfg, 1, 0)[1],
            leaf1_ecx(cfg, st),
            // CPUID.1:EDX.APIC follows IA32_APIC_BASE.EN (SDM 10.4.3).
            if st.msr.apic_base & (1 << 11) == 0 {
                leaf1_edx(cfg) & !(1 << 9)
            } else {
                leaf1_edx(cfg)
            },
        ],
        7 if sub == 0 => [
            0,
            cfg.features.cpuid_bits(7, 0, Reg::Ebx),
            leaf7_ecx(cfg, st),
            0,
        ],
        0xb => topology(cfg, leaf, sub),
        0xd => leaf_xsave(cfg, st, sub),
        // TSC and core crystal clock: TSC = crystal * 1/1 = tsc_hz, the
        // local APIC timer runs at the same (1 GHz) rate. Linux takes the
        // TSC frequency from here instead of calibrating against the PIT,
        // and its APIC timer period from the crystal.
        0x15 => [1, 1, cfg.tsc_hz as u32, 0],
        0x16 => {
            let mhz = (cfg.tsc_hz / 1_000_000) as u32;
            [mhz, mhz, mhz, 0]
        }
        0x8000_0000 => [0x8000_0008, 0, 0, 0],
        0x8000_0001 => [
            0,
            0,
            cfg.features.cpuid_bits(0x8000_0001, 0, Reg::Ecx),
            cfg.features.cpuid_bits(0x8000_0001, 0, Reg::Edx),
        ],
        0x8000_0002..=0x8000_0004 => {
            let o = ((leaf - 0x8000_0002) * 16) as usize;
            [
                le(&BRAND[o..]),
                le(&BRAND[o + 4..]),
                le(&BRAND[o + 8..]),
                le(&BRAND[o + 12..]),
            ]
        }
        0x8000_0008 => [(48 << 8) | crate::mmu::walk::MAXPHYADDR, 0, 0, 0],
        _ => [0, 0, 0, 0],
    }
}

pub fn exec(cpu: &mut Cpu) -> XResult<()> {
    let leaf = cpu.state.gpr[RAX] as u32;
    let sub = cpu.state.gpr[RCX] as u32;
    let r = cpuid(&cpu.config, &cpu.state, leaf, sub);
    cpu.state.gpr[RAX] = r[0] as u64;
    cpu.state.gpr[RBX] = r[1] as u64;
    cpu.state.gpr[RCX] = r[2] as u64;
    cpu.state.gpr[RDX] = r[3] as u64;
    Ok(())
}
