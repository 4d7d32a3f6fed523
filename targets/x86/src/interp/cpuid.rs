//! CPUID: what the vCPU's model ([`CpuConfig::features`], see
//! [`crate::cpu_model`]) advertises, over what the interpreter implements.
//!
//! Vendor "GenuineIntel" by default, "AuthenticAMD" for the Opteron model or
//! `vendor=` (guests take their best-tested paths on Intel: SYSENTER for
//! 32-bit compat, SYSCALL in 64-bit mode only, as on Intel), family 6
//! model 6 stepping 3, matching the EDX signature of `CpuState::reset`.
//! Feature flags come from the model's [`crate::cpu_model::FeatureSet`];
//! OSXSAVE and OSPKE mirror CR4.

use super::{xsave, Cpu, CpuConfig};
use crate::consts::cr4;
use crate::cpu_model::{Feature, Reg, Vendor};
use crate::exception::XResult;
use crate::state::gpr::{RAX, RBX, RCX, RDX};
use crate::topology::Topology;
use crate::CpuState;

pub const SIGNATURE: u32 = 0x663;
/// AMD's: family 15 model 6 stepping 1, QEMU's Opteron_G1.
pub const SIGNATURE_AMD: u32 = 0xf61;
const BRAND: &[u8; 48] = b"hx86 virtual CPU                                ";

/// Leaf 1 EDX: the model's features; APIC only when the machine has one.
/// (The machine-check architecture has no banks, MCG_CAP.Count = 0:
/// nothing ever reports a machine check.)
pub fn leaf1_edx(cfg: &CpuConfig) -> u32 {
    let mut d = cfg.features.cpuid_bits(1, 0, Reg::Edx);
    if !cfg.apic {
        d &= !(1 << 9);
    }
    // HTT: EBX[23:16] counts logical processors.
    topo(cfg).leaf1_edx(d)
}

/// The `-smp` topology of the vCPU's configuration.
fn topo(cfg: &CpuConfig) -> Topology {
    Topology {
        cores: cfg.cores,
        threads: cfg.threads,
    }
}

/// Leaf 4, deterministic cache parameters: QEMU's legacy caches (L1d and
/// L1i 32 KiB 8-way, L2 4 MiB 16-way per core, L3 16 MiB 16-way per
/// package, 64-byte lines), shared as the topology says.
fn leaf4(cfg: &CpuConfig, sub: u32) -> [u32; 4] {
    // (type: 1 data, 2 instruction, 3 unified; level; ways; sets)
    let (ty, level, ways, sets) = match sub {
        0 => (1, 1, 8, 64),
        1 => (2, 1, 8, 64),
        2 => (3, 2, 16, 4096),
        3 => (3, 3, 16, 16384),
        _ => return [0; 4],
    };
    let eax = topo(cfg).leaf4_eax(ty | (level << 5) | (1 << 8), level);
    let ebx = 63 | ((ways - 1) << 22);
    let edx = if level == 3 { 1 << 1 } else { 0 }; // L3 inclusive
    [eax, ebx, sets - 1, edx]
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
            le(&cfg.vendor.id()[0..4]),
            le(&cfg.vendor.id()[8..12]),
            le(&cfg.vendor.id()[4..8]),
        ],
        1 => [
            match cfg.vendor {
                Vendor::Intel => SIGNATURE,
                Vendor::Amd => SIGNATURE_AMD,
            },
            // Leaf 1 EBX: CLFLUSH line size 64 bytes, the topology.
            topo(cfg).leaf1_ebx(8 << 8, cfg.apic_id),
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
        4 => leaf4(cfg, sub),
        // hx86 numbers APIC IDs densely (vCPU index = APIC ID): the same
        // numbering as QEMU's when cores and threads are powers of two.
        0xb => topo(cfg).extended_leaf(sub, cfg.apic_id),
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
        // AMD repeats the vendor ID here; Intel returns zeros.
        0x8000_0000 => match cfg.vendor {
            Vendor::Intel => [0x8000_0008, 0, 0, 0],
            Vendor::Amd => {
                let id = cfg.vendor.id();
                [0x8000_0008, le(&id[0..4]), le(&id[8..12]), le(&id[4..8])]
            }
        },
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(cores: u32, threads: u32, apic_id: u32) -> CpuConfig {
        CpuConfig {
            cpus: cores * threads,
            cores,
            threads,
            apic_id,
            apic: true,
            ..CpuConfig::default()
        }
    }

    #[test]
    fn topology_leaves_follow_smp() {
        let st = CpuState::reset();
        // -smp 8,cores=4,threads=2 seen by the vCPU with APIC ID 5.
        let c = cfg(4, 2, 5);
        let l1 = cpuid(&c, &st, 1, 0);
        assert_eq!((l1[1] >> 16) & 0xff, 8, "logical processors per package");
        assert_eq!(l1[1] >> 24, 5);
        assert_ne!(l1[3] & (1 << 28), 0, "HTT");
        assert_eq!(cpuid(&c, &st, 0xb, 0), [1, 2, 0x100, 5]);
        assert_eq!(cpuid(&c, &st, 0xb, 1), [3, 8, 0x201, 5]);
        assert_eq!(cpuid(&c, &st, 0xb, 2), [0, 0, 2, 5]);
        // Leaf 4: L1d shared by the core's 2 threads, L3 by the package's
        // 8; 4 cores per package; then no more caches.
        let l1d = cpuid(&c, &st, 4, 0);
        assert_eq!(l1d[0] & 0x1f, 1);
        assert_eq!((l1d[0] >> 14) & 0xfff, 1);
        assert_eq!(l1d[0] >> 26, 3);
        let l3 = cpuid(&c, &st, 4, 3);
        assert_eq!((l3[0] >> 5) & 7, 3);
        assert_eq!((l3[0] >> 14) & 0xfff, 7);
        // Size: ways * partitions * line * sets.
        let size = ((l3[1] >> 22) + 1)
            * (((l3[1] >> 12) & 0x3ff) + 1)
            * ((l3[1] & 0xfff) + 1)
            * (l3[2] + 1);
        assert_eq!(size, 16 << 20);
        assert_eq!(cpuid(&c, &st, 4, 4), [0; 4]);
        // One CPU: no HTT, one logical processor.
        let one = cfg(1, 1, 0);
        assert_eq!(cpuid(&one, &st, 1, 0)[3] & (1 << 28), 0);
        assert_eq!(cpuid(&one, &st, 0xb, 1), [0, 1, 0x201, 0]);
    }

    /// KVM's vCPUs (host entries rewritten by `Topology::apply_to_host`)
    /// see the topology leaves the DBT's CPUID gives, for every vCPU.
    #[test]
    fn kvm_and_dbt_show_the_same_topology() {
        use crate::cpu_model::CpuidEntry;
        let st = CpuState::reset();
        let leaves = [
            (1, 0),
            (4, 0),
            (4, 1),
            (4, 2),
            (4, 3),
            (4, 4),
            (0xb, 0),
            (0xb, 1),
            (0xb, 2),
        ];
        // "Host" entries: the DBT's own for another topology.
        let host = cfg(1, 1, 0);
        for (cores, threads) in [(1, 1), (2, 1), (4, 2), (3, 2), (8, 4)] {
            for id in 0..cores * threads {
                let mut e: Vec<CpuidEntry> = leaves
                    .iter()
                    .map(|&(leaf, sub)| CpuidEntry {
                        leaf,
                        sub,
                        regs: cpuid(&host, &st, leaf, sub),
                    })
                    .collect();
                Topology { cores, threads }.apply_to_host(id, &mut e);
                let c = cfg(cores, threads, id);
                for x in &e {
                    assert_eq!(
                        x.regs,
                        cpuid(&c, &st, x.leaf, x.sub),
                        "leaf {:#x}.{} of APIC ID {id}, {cores} cores x {threads} threads",
                        x.leaf,
                        x.sub
                    );
                }
            }
        }
    }
}
