//! The Intel MultiProcessor Specification 1.4 table, for kernels booted
//! without ACPI (`acpi=off`) or that predate it. ACPI kernels use the MADT
//! instead (see [`crate::acpi`]); the facts come from the same
//! [`AcpiConfig`].
//!
//! The floating pointer is at [`MP_FLOATING_START`] (0x9FC40) in the first
//! KiB of the EBDA, where Linux looks (it scans 0x9FC00 and the EBDA named
//! at 0x40E); the configuration table follows it at 0x9FC50. Contents:
//! one processor entry per vCPU (the first is the bootstrap processor), a
//! PCI bus 0 (with the host bridge) and an ISA bus, the IOAPIC, one I/O
//! interrupt entry per ISA IRQ (after the ACPI interrupt source overrides:
//! IRQ0 on pin 2, IRQ9 level/active-high; IRQ2, the cascade, has none),
//! ExtINT from the 8259s on IOAPIC pin 0 and on LINT0, and NMI on LINT1.

use vm_memory::GuestMemoryMmap;

use crate::acpi::{tables::checksum, AcpiConfig};
use crate::layout::{ACPI_RSDP_START, EBDA_START, LOW_RAM_END};
use crate::{boot, Error};

/// The MP floating pointer structure (16 bytes, 16-byte aligned).
pub const MP_FLOATING_START: u64 = EBDA_START + 0x40;
/// The MP configuration table, right after the floating pointer.
pub const MP_CONFIG_START: u64 = MP_FLOATING_START + 16;
const _: () = assert!(MP_FLOATING_START >= ACPI_RSDP_START + 36);
/// Spec revision 1.4.
pub const MP_SPEC_REV: u8 = 4;

/// Entry types.
const PROCESSOR: u8 = 0;
const BUS: u8 = 1;
const IOAPIC: u8 = 2;
const IO_INTERRUPT: u8 = 3;
const LOCAL_INTERRUPT: u8 = 4;
/// Interrupt types.
const INT: u8 = 0;
const NMI: u8 = 1;
const EXTINT: u8 = 3;
/// Processor flags: enabled, bootstrap processor.
const CPU_ENABLED: u8 = 1;
const CPU_BSP: u8 = 2;
/// Local APIC version of the hx86 LAPIC (integrated), IOAPIC version.
const LAPIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x20;
/// CPU signature (family 6) and feature flags (FPU, APIC).
const CPU_SIGNATURE: u32 = 0x600;
const CPU_FEATURES: u32 = (1 << 0) | (1 << 9);
/// Destination "all local APICs".
const ALL_LAPICS: u8 = 0xFF;

/// The ISA interrupt entries: (ISA IRQ, IOAPIC pin, flags). An IRQ goes to
/// its override's GSI or else to the GSI of its number; an IRQ whose
/// identity GSI another IRQ's override claims (IRQ2 here) is left out.
fn isa_routes(cfg: &AcpiConfig) -> Vec<(u8, u8, u16)> {
    (0..16u8)
        .filter_map(|irq| {
            let ovr = cfg.overrides.iter().find(|o| o.isa_irq == irq);
            let gsi = ovr.map_or(u32::from(irq), |o| o.gsi);
            let claimed = ovr.is_none() && cfg.overrides.iter().any(|o| o.gsi == gsi);
            let pin = gsi.checked_sub(cfg.ioapic_gsi_base)?;
            (!claimed && pin < u32::from(cfg.ioapic_pins))
                .then(|| (irq, pin as u8, ovr.map_or(0, |o| o.flags)))
        })
        .collect()
}

/// The MP configuration table (base table only, no extended entries).
pub fn config_table(cfg: &AcpiConfig) -> Result<Vec<u8>, Error> {
    cfg.validate()?;
    let mut e: Vec<u8> = Vec::new();
    let mut count = 0u16;
    for id in 0..cfg.cpus {
        let flags = CPU_ENABLED | if id == 0 { CPU_BSP } else { 0 };
        e.extend([PROCESSOR, id, LAPIC_VERSION, flags]);
        e.extend(CPU_SIGNATURE.to_le_bytes());
        e.extend(CPU_FEATURES.to_le_bytes());
        e.extend([0; 8]);
        count += 1;
    }
    let isa_bus = if cfg.pci_host_bridge {
        e.extend([BUS, 0]);
        e.extend(b"PCI   ");
        count += 1;
        1
    } else {
        0
    };
    e.extend([BUS, isa_bus]);
    e.extend(b"ISA   ");
    e.extend([IOAPIC, cfg.ioapic_id, IOAPIC_VERSION, 1]);
    e.extend(cfg.ioapic_base.to_le_bytes());
    count += 2;
    let routes = isa_routes(cfg);
    if cfg.pcat_compat && routes.iter().all(|&(_, pin, _)| pin != 0) {
        e.extend([IO_INTERRUPT, EXTINT, 0, 0, isa_bus, 0, cfg.ioapic_id, 0]);
        count += 1;
    }
    for (irq, pin, flags) in routes {
        e.extend([IO_INTERRUPT, INT]);
        e.extend(flags.to_le_bytes());
        e.extend([isa_bus, irq, cfg.ioapic_id, pin]);
        count += 1;
    }
    if cfg.pcat_compat {
        e.extend([LOCAL_INTERRUPT, EXTINT, 0, 0, isa_bus, 0, ALL_LAPICS, 0]);
        count += 1;
    }
    if let Some(lint) = cfg.lapic_nmi_lint {
        e.extend([LOCAL_INTERRUPT, NMI, 0, 0, isa_bus, 0, ALL_LAPICS, lint]);
        count += 1;
    }

    let len = 44 + e.len();
    let mut t = Vec::with_capacity(len);
    t.extend(b"PCMP");
    t.extend((len as u16).to_le_bytes());
    t.extend([MP_SPEC_REV, 0]);
    t.extend(b"HX86    ");
    t.extend(b"PC          ");
    t.extend([0; 6]); // OEM table pointer and size
    t.extend(count.to_le_bytes());
    t.extend(cfg.lapic_base.to_le_bytes());
    t.extend([0; 4]); // extended table length, checksum, reserved
    t.extend(e);
    t[7] = checksum(&t);
    Ok(t)
}

/// The floating pointer to a configuration table at `config`.
pub fn floating_pointer(config: u32) -> [u8; 16] {
    let mut f = [0u8; 16];
    f[..4].copy_from_slice(b"_MP_");
    f[4..8].copy_from_slice(&config.to_le_bytes());
    f[8] = 1; // length in paragraphs
    f[9] = MP_SPEC_REV;
    f[10] = checksum(&f);
    f
}

/// Writes the MP floating pointer and configuration table into the EBDA.
/// Returns the floating pointer's address. Call after
/// [`crate::acpi::write_acpi_tables`], which clears the EBDA.
pub fn write_mp_table(mem: &GuestMemoryMmap, cfg: &AcpiConfig) -> Result<u64, Error> {
    let table = config_table(cfg)?;
    let end = MP_CONFIG_START + table.len() as u64;
    if end > LOW_RAM_END {
        return Err(Error::AcpiTablesTooBig {
            start: MP_CONFIG_START,
            end: LOW_RAM_END,
            need: table.len() as u64,
        });
    }
    boot::write_bytes(mem, MP_CONFIG_START, &table)?;
    boot::write_bytes(
        mem,
        MP_FLOATING_START,
        &floating_pointer(MP_CONFIG_START as u32),
    )?;
    Ok(MP_FLOATING_START)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acpi::{write_acpi_tables, IrqOverride};
    use crate::layout::MIB;
    use crate::memory::create_guest_memory;
    use vm_memory::{Bytes, GuestAddress};

    fn sums_to_zero(b: &[u8]) -> bool {
        b.iter().fold(0u8, |a, &x| a.wrapping_add(x)) == 0
    }

    #[test]
    fn linux_finds_a_valid_table() {
        let m = create_guest_memory(64 * MIB, None).unwrap().0;
        write_acpi_tables(&m, &AcpiConfig::default()).unwrap();
        let fp = write_mp_table(&m, &AcpiConfig::default()).unwrap();
        // Linux's smp_scan_config(639 * 0x400, 0x400): 16-byte steps.
        let mut ebda = [0u8; 1024];
        m.read_slice(&mut ebda, GuestAddress(0x9FC00)).unwrap();
        let found = (0..1024).step_by(16).find(|&o| {
            &ebda[o..o + 4] == b"_MP_" && ebda[o + 8] == 1 && sums_to_zero(&ebda[o..o + 16])
        });
        assert_eq!(found.map(|o| 0x9FC00 + o as u64), Some(fp));
        // The RSDP next to it is intact.
        assert_eq!(&ebda[0x10..0x18], b"RSD PTR ");

        let cfg_addr = u32::from_le_bytes(ebda[0x44..0x48].try_into().unwrap());
        let mut hdr = [0u8; 44];
        m.read_slice(&mut hdr, GuestAddress(cfg_addr.into()))
            .unwrap();
        assert_eq!(&hdr[..4], b"PCMP");
        let len = u16::from_le_bytes([hdr[4], hdr[5]]) as usize;
        let mut t = vec![0u8; len];
        m.read_slice(&mut t, GuestAddress(cfg_addr.into())).unwrap();
        assert!(sums_to_zero(&t));
        assert_eq!(
            u32::from_le_bytes(t[36..40].try_into().unwrap()),
            0xFEE0_0000
        );

        // Walk the entries.
        let count = u16::from_le_bytes([t[34], t[35]]);
        let mut o = 44;
        let mut entries = Vec::new();
        for _ in 0..count {
            let n = if t[o] == PROCESSOR { 20 } else { 8 };
            entries.push(t[o..o + n].to_vec());
            o += n;
        }
        assert_eq!(o, len);
        assert_eq!(entries[0][..4], [PROCESSOR, 0, 0x14, CPU_ENABLED | CPU_BSP]);
        assert_eq!(entries[1], [BUS, 0, b'P', b'C', b'I', b' ', b' ', b' ']);
        assert_eq!(entries[2], [BUS, 1, b'I', b'S', b'A', b' ', b' ', b' ']);
        assert_eq!(entries[3], [IOAPIC, 1, 0x20, 1, 0, 0, 0xC0, 0xFE]);
        assert_eq!(entries[4], [IO_INTERRUPT, EXTINT, 0, 0, 1, 0, 1, 0]);
        // IRQ0 -> pin 2, IRQ1 -> pin 1, no IRQ2, IRQ9 level/high.
        assert_eq!(entries[5], [IO_INTERRUPT, INT, 0, 0, 1, 0, 1, 2]);
        assert_eq!(entries[6], [IO_INTERRUPT, INT, 0, 0, 1, 1, 1, 1]);
        assert_eq!(entries[7][5], 3);
        let irq9 = entries.iter().find(|e| e[0] == IO_INTERRUPT && e[5] == 9);
        assert_eq!(irq9.unwrap()[2..4], [0x0D, 0]);
        assert_eq!(entries.len(), 4 + 1 + 15 + 2);
        assert_eq!(entries[20], [LOCAL_INTERRUPT, EXTINT, 0, 0, 1, 0, 0xFF, 0]);
        assert_eq!(entries[21], [LOCAL_INTERRUPT, NMI, 0, 0, 1, 0, 0xFF, 1]);
    }

    #[test]
    fn routes_follow_the_overrides() {
        let cfg = AcpiConfig {
            overrides: vec![],
            pci_host_bridge: false,
            cpus: 2,
            ..AcpiConfig::default()
        };
        // No override: all 16 IRQs on their own pins, so no ExtINT on pin 0.
        assert_eq!(isa_routes(&cfg).len(), 16);
        let t = config_table(&cfg).unwrap();
        assert_eq!(u16::from_le_bytes([t[34], t[35]]), 2 + 1 + 1 + 16 + 2);
        assert_eq!(t[44 + 20 + 3], CPU_ENABLED);
        let swap = AcpiConfig {
            overrides: vec![IrqOverride {
                isa_irq: 5,
                gsi: 7,
                flags: 0,
            }],
            ..AcpiConfig::default()
        };
        let r = isa_routes(&swap);
        assert!(r.contains(&(5, 7, 0)) && !r.iter().any(|&(irq, _, _)| irq == 7));
        // Too many CPUs for the EBDA.
        let m = create_guest_memory(64 * MIB, None).unwrap().0;
        let big = AcpiConfig {
            cpus: 100,
            ..AcpiConfig::default()
        };
        assert!(matches!(
            write_mp_table(&m, &big),
            Err(Error::AcpiTablesTooBig { .. })
        ));
    }
}
