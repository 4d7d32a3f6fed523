//! Parses the written tables back the way an OS does: find the RSDP
//! (through the BIOS data area and the EBDA, as ACPICA does), follow the
//! pointers, check signatures, lengths, checksums and fields.

use super::tables::{fadt as f, madt as m, *};
use super::*;
use crate::layout::MIB;
use crate::linux::{e820_map, E820_ACPI, E820_RESERVED};
use crate::memory::create_guest_memory;
use vm_memory::{Bytes, GuestAddress};

fn mem() -> GuestMemoryMmap {
    create_guest_memory(128 * MIB, None).unwrap().0
}

fn read(m: &GuestMemoryMmap, addr: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    m.read_slice(&mut v, GuestAddress(addr)).unwrap();
    v
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}
fn sums_to_zero(b: &[u8]) -> bool {
    b.iter().fold(0u8, |a, &x| a.wrapping_add(x)) == 0
}

/// Reads a table at `addr`, checking its signature, length and checksum.
fn table(m: &GuestMemoryMmap, addr: u64, sig: &[u8; 4]) -> Vec<u8> {
    let hdr = read(m, addr, HEADER_LEN);
    assert_eq!(&hdr[..4], sig, "signature at {addr:#x}");
    let t = read(m, addr, u32_at(&hdr, 4) as usize);
    assert!(
        sums_to_zero(&t),
        "{} checksum",
        String::from_utf8_lossy(sig)
    );
    assert_eq!(&t[10..16], OEM_ID);
    t
}

/// ACPICA's `acpi_find_root_pointer`: the first KiB of the EBDA (segment
/// at 0x40E), 16-byte steps, signature plus both checksums.
fn scan_for_rsdp(m: &GuestMemoryMmap) -> Option<u64> {
    let ebda = u64::from(u16_at(&read(m, 0x40E, 2), 0)) << 4;
    assert!(ebda > 0x400);
    (ebda..ebda + 1024).step_by(16).find(|&a| {
        let r = read(m, a, 36);
        &r[..8] == b"RSD PTR " && sums_to_zero(&r[..20]) && (r[15] < 2 || sums_to_zero(&r))
    })
}

/// Follows RSDP -> XSDT (checked against the RSDT) and returns the
/// (signature, address) of every table it lists.
fn root_tables(m: &GuestMemoryMmap, rsdp: u64) -> Vec<([u8; 4], u64)> {
    let r = read(m, rsdp, 36);
    assert_eq!(r[15], 2);
    assert_eq!(u32_at(&r, 20), 36);
    let rsdt = table(m, u32_at(&r, 16).into(), b"RSDT");
    let xsdt = table(m, u64_at(&r, 24), b"XSDT");
    let n = (xsdt.len() - HEADER_LEN) / 8;
    assert_eq!((rsdt.len() - HEADER_LEN) / 4, n);
    (0..n)
        .map(|i| {
            let x = u64_at(&xsdt, HEADER_LEN + 8 * i);
            assert_eq!(u64::from(u32_at(&rsdt, HEADER_LEN + 4 * i)), x);
            let sig: [u8; 4] = read(m, x, 4).try_into().unwrap();
            (sig, x)
        })
        .collect()
}

/// Decodes a GAS: (space, bit width, access size, address).
fn gas(b: &[u8], o: usize) -> (u8, u8, u8, u64) {
    assert_eq!(b[o + 2], 0, "bit offset");
    (b[o], b[o + 1], b[o + 3], u64_at(b, o + 4))
}

/// The S5 object of the default DSDT, byte for byte.
const S5_AML: [u8; 13] = [
    0x08, b'\\', b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04, 0x00, 0x00, 0x00, 0x00,
];

#[test]
fn default_tables_are_found_and_consistent() {
    let m = mem();
    let rsdp = write_acpi_tables(&m, &AcpiConfig::default()).unwrap();
    assert_eq!(rsdp, 0x9FC10);
    assert_eq!(scan_for_rsdp(&m), Some(rsdp));
    // The EBDA starts with its size in KiB; the BDA says 639 KiB of base memory.
    assert_eq!(u16_at(&read(&m, 0x9FC00, 2), 0), 1);
    assert_eq!(u16_at(&read(&m, 0x413, 2), 0), 639);

    let roots = root_tables(&m, rsdp);
    let sigs: Vec<_> = roots.iter().map(|(s, _)| *s).collect();
    assert_eq!(sigs, [*b"FACP", *b"APIC"]);

    // Every table lies in the ACPI region, which e820 marks as ACPI data.
    let e820 = e820_map(128 * MIB);
    assert!(e820
        .iter()
        .any(|e| e.kind == E820_ACPI && e.addr == ACPI_START && e.addr + e.size == ACPI_END));
    assert!(e820
        .iter()
        .any(|e| e.kind == E820_RESERVED && e.addr <= rsdp && rsdp + 36 <= e.addr + e.size));
    for &(_, addr) in &roots {
        let len = u32_at(&read(&m, addr, 8), 4) as u64;
        assert!(ACPI_START <= addr && addr + len <= ACPI_END);
    }

    let fadt = table(&m, roots[0].1, b"FACP");
    let facs_addr = u32_at(&fadt, f::FIRMWARE_CTRL) as u64;
    let dsdt_addr = u32_at(&fadt, f::DSDT) as u64;
    assert_eq!(facs_addr % 64, 0);
    let facs = read(&m, facs_addr, 64);
    assert_eq!(&facs[..4], b"FACS");
    assert_eq!(u32_at(&facs, 4), 64);
    let dsdt = table(&m, dsdt_addr, b"DSDT");
    assert_eq!(dsdt[8], 2);
    assert!(ACPI_START <= dsdt_addr && dsdt_addr + dsdt.len() as u64 <= ACPI_END);
    assert!(dsdt.windows(S5_AML.len()).any(|w| w == S5_AML));
    // \_SB.PCI0 with _HID EisaId("PNP0A03").
    assert!(dsdt.windows(5).any(|w| w == [0x0C, 0x41, 0xD0, 0x0A, 0x03]));
    for name in [&b"PCI0"[..], b"_HID", b"_CRS", b"\\_SB_"] {
        assert!(dsdt.windows(name.len()).any(|w| w == name));
    }
}

#[test]
fn fadt_fields() {
    let t = build_acpi_tables(&AcpiConfig::default(), &AcpiPlacement::default()).unwrap();
    let (_, fadt) = t.find(b"FACP").unwrap();
    let (facs, _) = t.find(b"FACS").unwrap();
    let (dsdt, _) = t.find(b"DSDT").unwrap();
    assert_eq!(fadt.len(), 276);
    assert_eq!(fadt[8], 6);
    assert!(sums_to_zero(fadt));
    assert_eq!(u32_at(fadt, f::FIRMWARE_CTRL) as u64, facs);
    assert_eq!(u64_at(fadt, f::X_FIRMWARE_CTRL), 0);
    assert_eq!(u32_at(fadt, f::DSDT) as u64, dsdt);
    assert_eq!(u64_at(fadt, f::X_DSDT), dsdt);
    assert_eq!(u16_at(fadt, f::SCI_INT), 9);
    assert_eq!(u32_at(fadt, f::SMI_CMD), 0);
    assert_eq!(u32_at(fadt, f::PM1A_EVT_BLK), 0x600);
    assert_eq!(u32_at(fadt, f::PM1A_CNT_BLK), 0x604);
    assert_eq!(u32_at(fadt, f::PM_TMR_BLK), 0x608);
    assert_eq!(u32_at(fadt, f::GPE0_BLK), 0);
    assert_eq!(
        [
            fadt[f::PM1_EVT_LEN],
            fadt[f::PM1_CNT_LEN],
            fadt[f::PM_TMR_LEN]
        ],
        [4, 2, 4]
    );
    // The X_ blocks agree with the 32-bit ones.
    assert_eq!(gas(fadt, f::X_PM1A_EVT_BLK), (1, 32, 2, 0x600));
    assert_eq!(gas(fadt, f::X_PM1A_CNT_BLK), (1, 16, 2, 0x604));
    assert_eq!(gas(fadt, f::X_PM_TMR_BLK), (1, 32, 3, 0x608));
    assert!(u16_at(fadt, f::P_LVL2_LAT) > 100 && u16_at(fadt, f::P_LVL3_LAT) > 1000);
    assert_eq!(fadt[f::CENTURY], 0x32);
    let arch = u16_at(fadt, f::IAPC_BOOT_ARCH);
    assert_eq!(arch, f::LEGACY_DEVICES | f::I8042 | f::VGA_NOT_PRESENT);
    let flags = u32_at(fadt, f::FLAGS);
    assert_ne!(flags & f::TMR_VAL_EXT, 0);
    assert_eq!(flags & f::HW_REDUCED_ACPI, 0);
    assert_eq!(flags & f::PWR_BUTTON, 0, "the fixed power button exists");
    assert_eq!(fadt[f::MINOR_REVISION], 0);
}

#[test]
fn madt_entries() {
    let t = build_acpi_tables(&AcpiConfig::default(), &AcpiPlacement::default()).unwrap();
    let (_, madt) = t.find(b"APIC").unwrap();
    assert!(sums_to_zero(madt));
    assert_eq!(u32_at(madt, 36), 0xFEE0_0000);
    assert_eq!(u32_at(madt, 40), m::PCAT_COMPAT);
    let mut entries = Vec::new();
    let mut o = 44;
    while o < madt.len() {
        let len = madt[o + 1] as usize;
        assert!(len >= 2 && o + len <= madt.len());
        entries.push(madt[o..o + len].to_vec());
        o += len;
    }
    assert_eq!(o, madt.len());
    assert_eq!(entries.len(), 5);
    // Local APIC: UID 0, APIC ID 0, enabled.
    assert_eq!(entries[0], [0, 8, 0, 0, 1, 0, 0, 0]);
    // IOAPIC ID 1 at 0xFEC00000, GSI base 0.
    assert_eq!(entries[1], [1, 12, 1, 0, 0, 0, 0xC0, 0xFE, 0, 0, 0, 0]);
    // IRQ0 -> GSI 2 conforming; IRQ9 -> GSI 9 level, active high.
    assert_eq!(entries[2], [2, 10, 0, 0, 2, 0, 0, 0, 0, 0]);
    assert_eq!(entries[3], [2, 10, 0, 9, 9, 0, 0, 0, 0x0D, 0]);
    // NMI on LINT1 of all processors.
    assert_eq!(entries[4], [4, 6, 0xFF, 0, 0, 1]);
}

#[test]
fn variants() {
    // No PM timer: all three PM timer fields zero, no TMR_VAL_EXT.
    let cfg = AcpiConfig {
        pm_tmr_blk: None,
        cpus: 4,
        pci_host_bridge: false,
        fw_cfg_port: None,
        i8042: false,
        s5_slp_typ: 5,
        ..AcpiConfig::default()
    };
    let t = build_acpi_tables(&cfg, &AcpiPlacement::default()).unwrap();
    let (_, fadt) = t.find(b"FACP").unwrap();
    assert_eq!(u32_at(fadt, f::PM_TMR_BLK), 0);
    assert_eq!(fadt[f::PM_TMR_LEN], 0);
    assert_eq!(gas(fadt, f::X_PM_TMR_BLK), (0, 0, 0, 0));
    assert_eq!(u32_at(fadt, f::FLAGS) & f::TMR_VAL_EXT, 0);
    assert_eq!(u16_at(fadt, f::IAPC_BOOT_ARCH) & f::I8042, 0);
    let (_, madt) = t.find(b"APIC").unwrap();
    assert_eq!(madt.len(), 44 + 4 * 8 + 12 + 2 * 10 + 6);
    assert_eq!(madt[44 + 3 * 8..44 + 3 * 8 + 4], [0, 8, 3, 3]);
    let (_, dsdt) = t.find(b"DSDT").unwrap();
    assert_eq!(
        &dsdt[HEADER_LEN..],
        [0x08, b'\\', b'_', b'S', b'5', b'_', 0x12, 0x08, 0x04, 0x0A, 5, 0x0A, 5, 0, 0]
    );
}

#[test]
fn invalid_configs_are_refused() {
    let d = AcpiConfig::default;
    let bad = [
        AcpiConfig { cpus: 0, ..d() },
        AcpiConfig { cpus: 255, ..d() },
        AcpiConfig { sci_irq: 16, ..d() },
        AcpiConfig {
            s5_slp_typ: 8,
            ..d()
        },
        AcpiConfig {
            lapic_nmi_lint: Some(2),
            ..d()
        },
        AcpiConfig {
            pm1a_cnt_blk: 0x602,
            ..d()
        },
        AcpiConfig {
            pm_tmr_blk: Some(0xFFFE),
            ..d()
        },
        AcpiConfig {
            pm1a_evt_blk: 0,
            ..d()
        },
        AcpiConfig {
            overrides: vec![IrqOverride {
                isa_irq: 16,
                gsi: 2,
                flags: 0,
            }],
            ..d()
        },
        AcpiConfig {
            overrides: vec![IrqOverride {
                isa_irq: 1,
                gsi: 24,
                flags: 0,
            }],
            ..d()
        },
        AcpiConfig {
            overrides: vec![IrqOverride {
                isa_irq: 1,
                gsi: 1,
                flags: 0b10,
            }],
            ..d()
        },
        AcpiConfig {
            overrides: vec![
                IrqOverride {
                    isa_irq: 1,
                    gsi: 1,
                    flags: 0,
                },
                IrqOverride {
                    isa_irq: 1,
                    gsi: 3,
                    flags: 0,
                },
            ],
            ..d()
        },
    ];
    for cfg in bad {
        let e = build_acpi_tables(&cfg, &AcpiPlacement::default()).unwrap_err();
        assert!(matches!(e, Error::Acpi(_)), "{cfg:?}: {e}");
    }
    let tiny = AcpiPlacement {
        tables_start: 0x9E000,
        tables_end: 0x9E100,
        rsdp: 0x9FC10,
    };
    let e = build_acpi_tables(&d(), &tiny).unwrap_err();
    assert!(matches!(e, Error::AcpiTablesTooBig { .. }), "{e}");
    let odd = AcpiPlacement {
        rsdp: 0x9FC08,
        ..AcpiPlacement::default()
    };
    assert!(build_acpi_tables(&d(), &odd).is_err());
}

#[test]
fn tables_do_not_overlap() {
    let t = build_acpi_tables(&AcpiConfig::default(), &AcpiPlacement::default()).unwrap();
    let mut spans: Vec<_> = t
        .tables
        .iter()
        .map(|(a, b)| (*a, *a + b.len() as u64))
        .collect();
    spans.sort();
    assert!(spans.windows(2).all(|w| w[0].1 <= w[1].0));
    assert_eq!(t.tables.len(), 7);
}

#[test]
fn dsdt_describes_fw_cfg() {
    let dsdt = dsdt::dsdt(&AcpiConfig::default()).unwrap();
    let has = |needle: &[u8]| dsdt.windows(needle.len()).any(|w| w == needle);
    assert!(has(b"FWCF"));
    assert!(has(b"\x0DQEMU0002\0"), "_HID string");
    assert!(has(b"_STA\x0A\x0B"));
    // IO (Decode16, 0x0510, 0x0510, 0x01, 0x0C)
    assert!(has(&[0x47, 0x01, 0x10, 0x05, 0x10, 0x05, 0x01, 0x0C]));
    // Without a host bridge it sits in \_SB.
    let cfg = AcpiConfig {
        pci_host_bridge: false,
        ..AcpiConfig::default()
    };
    let d = dsdt::dsdt(&cfg).unwrap();
    assert!(d.windows(4).any(|w| w == b"FWCF"));
    assert!(!d.windows(4).any(|w| w == b"PCI0"));
}
