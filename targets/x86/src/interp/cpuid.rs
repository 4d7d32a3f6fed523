//! The CPUID model: one consistent generic x86-64 that advertises exactly
//! what the interpreter implements.
//!
//! Vendor "GenuineIntel" (guests take their best-tested paths: SYSENTER for
//! 32-bit compat, SYSCALL in 64-bit mode only, as on Intel), family 6
//! model 6 stepping 3, matching the EDX signature of `CpuState::reset`.
//! Features are listed in [`leaf1_edx`], [`leaf1_ecx`] and
//! [`ext1_edx`]/[`ext1_ecx`].

use super::{Cpu, CpuConfig};
use crate::consts::cr4;
use crate::exception::XResult;
use crate::state::gpr::{RAX, RBX, RCX, RDX};
use crate::CpuState;

pub const SIGNATURE: u32 = 0x663;
pub const VENDOR: &[u8; 12] = b"GenuineIntel";
const BRAND: &[u8; 48] = b"hx86 virtual CPU                                ";

/// Leaf 1 EDX: FPU DE PSE TSC MSR PAE MCE CX8 (APIC) SEP MCA PGE CMOV PAT
/// PSE36 CLFSH MMX FXSR SSE SSE2. The machine-check architecture has no
/// banks (MCG_CAP.Count = 0): nothing ever reports a machine check.
pub fn leaf1_edx(cfg: &CpuConfig) -> u32 {
    let mut d =
        (1 << 0) | (1 << 2) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 8) | (1 << 11);
    d |= (1 << 7) | (1 << 14);
    d |= (1 << 13) | (1 << 15) | (1 << 16) | (1 << 17) | (1 << 19);
    d |= (1 << 23) | (1 << 24) | (1 << 25) | (1 << 26);
    if cfg.apic {
        d |= 1 << 9;
    }
    d
}

/// Leaf 1 ECX: SSE3 SSSE3 CX16 SSE4.1 SSE4.2 MOVBE POPCNT XSAVE (OSXSAVE)
/// and bit 31, "running under a hypervisor" (a virtual CPU: no performance
/// counters, as guests expect of one).
pub fn leaf1_ecx(st: &CpuState) -> u32 {
    let mut c =
        (1 << 0) | (1 << 9) | (1 << 13) | (1 << 19) | (1 << 20) | (1 << 22) | (1 << 23) | (1 << 26);
    c |= 1 << 31;
    if st.cr4 & cr4::OSXSAVE != 0 {
        c |= 1 << 27;
    }
    c
}

/// Leaf 7 EBX: BMI1, BMI2.
pub fn leaf7_ebx() -> u32 {
    (1 << 3) | (1 << 8)
}

/// 0x80000001 EDX: SYSCALL NX Page1GB RDTSCP LM.
pub fn ext1_edx() -> u32 {
    (1 << 11) | (1 << 20) | (1 << 26) | (1 << 27) | (1 << 29)
}

/// 0x80000001 ECX: LAHF/SAHF in 64-bit mode, ABM (LZCNT).
pub fn ext1_ecx() -> u32 {
    (1 << 0) | (1 << 5)
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
            (8 << 8) | (1 << 16) | (cfg.apic_id << 24),
            leaf1_ecx(st),
            leaf1_edx(cfg),
        ],
        7 if sub == 0 => [0, leaf7_ebx(), 0, 0],
        0xd => match sub {
            0 => {
                // x87 + SSE: 512-byte legacy area + 64-byte header.
                [3, 576, 576, 0]
            }
            // XSAVEOPT and XSAVEC (no XGETBV(1), no XSAVES); compacted size.
            1 => [3, 576, 0, 0],
            _ => [0, 0, 0, 0],
        },
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
        0x8000_0001 => [0, 0, ext1_ecx(), ext1_edx()],
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
