//! The CPU topology CPUID shows (`-smp sockets=,cores=,threads=`): leaf 1's
//! logical-processor count and APIC ID, leaf 4's cache sharing, leaves 0xB
//! and 0x1F. One definition for both accelerators: the interpreter's CPUID
//! asks it leaf by leaf, KVM's vCPUs get the host's entries rewritten by
//! [`Topology::apply_to_host`].

use crate::cpu_model::CpuidEntry;

/// Cores per package and threads per core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Topology {
    pub cores: u32,
    pub threads: u32,
}

impl Default for Topology {
    fn default() -> Self {
        Topology {
            cores: 1,
            threads: 1,
        }
    }
}

/// Bits of an APIC ID that number `n` things (QEMU's apicid_bitwidth_for_count).
fn id_bits(n: u32) -> u32 {
    32 - n.max(1).saturating_sub(1).leading_zeros()
}

impl Topology {
    fn threads(&self) -> u32 {
        self.threads.max(1)
    }

    fn cores(&self) -> u32 {
        self.cores.max(1)
    }

    /// Logical processors per package.
    pub fn per_package(&self) -> u32 {
        self.cores() * self.threads()
    }

    /// APIC ID bits below the core.
    fn smt_bits(&self) -> u32 {
        id_bits(self.threads())
    }

    /// APIC ID bits below the package.
    fn pkg_bits(&self) -> u32 {
        self.smt_bits() + id_bits(self.cores())
    }

    /// Leaf 1 EBX bits 16-31 (logical processors per package, initial
    /// APIC ID) over `ebx`'s low 16 bits.
    pub fn leaf1_ebx(&self, ebx: u32, apic_id: u32) -> u32 {
        (ebx & 0xffff) | (self.per_package().min(255) << 16) | (apic_id << 24)
    }

    /// Leaf 1 EDX with HTT (bit 28: EBX counts logical processors) as the
    /// topology says.
    pub fn leaf1_edx(&self, edx: u32) -> u32 {
        if self.per_package() > 1 {
            edx | 1 << 28
        } else {
            edx & !(1 << 28)
        }
    }

    /// Leaf 4 EAX of a cache of `level` over `eax`'s low 14 bits: the
    /// threads sharing it (a core's for L1 and L2, the package's for L3)
    /// and the cores per package.
    pub fn leaf4_eax(&self, eax: u32, level: u32) -> u32 {
        let (smt, pkg) = (self.smt_bits(), self.pkg_bits());
        let sharing = if level >= 3 {
            (1u32 << pkg) - 1
        } else {
            (1u32 << smt) - 1
        };
        let cores_per_pkg = (1u32 << (pkg - smt)) - 1;
        (eax & 0x3fff) | (sharing << 14) | (cores_per_pkg << 26)
    }

    /// Leaf 0xB (and 0x1F) subleaf `sub` of the vCPU with `apic_id`:
    /// level 0 SMT, level 1 core, then invalid levels.
    pub fn extended_leaf(&self, sub: u32, apic_id: u32) -> [u32; 4] {
        match sub {
            0 => [self.smt_bits(), self.threads(), 1 << 8, apic_id],
            1 => [self.pkg_bits(), self.per_package(), (2 << 8) | 1, apic_id],
            s => [0, 0, s & 0xff, apic_id],
        }
    }

    /// Rewrites a host's CPUID (KVM's supported entries) for the vCPU with
    /// `apic_id`: leaves 1, 4, 0xB and 0x1F as [`Topology`]'s functions
    /// give them; everything else is left alone.
    pub fn apply_to_host(&self, apic_id: u32, entries: &mut [CpuidEntry]) {
        for e in entries.iter_mut() {
            match e.leaf {
                1 => {
                    e.regs[1] = self.leaf1_ebx(e.regs[1], apic_id);
                    e.regs[3] = self.leaf1_edx(e.regs[3]);
                }
                4 if e.regs[0] & 0x1f != 0 => {
                    e.regs[0] = self.leaf4_eax(e.regs[0], (e.regs[0] >> 5) & 7);
                }
                0xb | 0x1f => e.regs = self.extended_leaf(e.sub, apic_id),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(leaf: u32, sub: u32, regs: [u32; 4]) -> CpuidEntry {
        CpuidEntry { leaf, sub, regs }
    }

    #[test]
    fn host_entries_get_the_guest_topology() {
        let t = Topology {
            cores: 4,
            threads: 2,
        };
        // A host's: 16 logical CPUs, its own APIC ID 9, L1d and L3 shared
        // its way, its own 0xB levels.
        let mut e = vec![
            entry(1, 0, [0x906ea, 0x0910_0800, 0x7ffa_fbff, 0xbfeb_fbff]),
            entry(4, 0, [0x1c00_4121, 0x01c0_003f, 0x3f, 0]),
            entry(4, 3, [0x1c03_c163, 0x03c0_003f, 0x2fff, 6]),
            entry(4, 4, [0, 0, 0, 0]),
            entry(0xb, 0, [1, 2, 0x100, 9]),
            entry(0xb, 1, [4, 16, 0x201, 9]),
            entry(0xb, 2, [0, 0, 2, 9]),
            entry(7, 0, [0, 1, 2, 3]),
        ];
        t.apply_to_host(5, &mut e);
        assert_eq!(e[0].regs[1], 0x0508_0800, "8 per package, APIC ID 5");
        assert_ne!(e[0].regs[3] & 1 << 28, 0);
        assert_eq!(e[1].regs[0], 0x0c00_4121, "L1d: 2 threads, 4 cores");
        assert_eq!(e[2].regs[0], 0x0c01_c163, "L3: 8 threads");
        assert_eq!(e[3].regs, [0; 4], "the end of the cache list stays");
        assert_eq!(e[4].regs, [1, 2, 0x100, 5]);
        assert_eq!(e[5].regs, [3, 8, 0x201, 5]);
        assert_eq!(e[6].regs, [0, 0, 2, 5]);
        assert_eq!(e[7].regs, [0, 1, 2, 3], "other leaves untouched");
        // One CPU: no HTT.
        Topology::default().apply_to_host(0, &mut e);
        assert_eq!(e[0].regs[3] & 1 << 28, 0);
        assert_eq!((e[0].regs[1] >> 16) & 0xff, 1);
    }
}
