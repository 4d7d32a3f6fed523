//! The guest-physical address map of the hx86 PC, in one place.
//!
//! ```text
//! 0x0000_0000 .. 0x000A_0000   low RAM (640 KiB)
//!     0x0000_0400 .. 0x500     BIOS data area (EBDA segment at 0x40E,
//!                              base memory KiB at 0x413, for ACPI boots)
//!     0x0000_0500              GDT for -kernel boots (8 entries)
//!     0x0000_0540              IDT for -kernel boots (empty, limit 0)
//!     0x0000_1000 .. 0x7000    boot stack for -kernel boots (top 0x7000)
//!     0x0000_7000 .. 0x8000    Linux zero page (boot_params)
//!     0x0000_9000 .. 0xF000    identity page tables: PML4, PDPT, 4 PDs
//!     0x0002_0000 .. 0x30000   kernel command line (NUL-terminated)
//!     0x0009_E000 .. 0x9FC00   ACPI tables (e820 ACPI data)
//!     0x0009_FC00 .. 0xA0000   EBDA (e820 reserved): its size word, the
//!                              ACPI RSDP at 0x9FC10, the MP floating
//!                              pointer at 0x9FC40 and MP config table
//! 0x000A_0000 .. 0x0010_0000   legacy hole (VGA, option ROMs, BIOS alias)
//!     0x000E_0000 .. 0x10_0000 low alias of the last 128 KiB of the BIOS
//!                              (the last min(rom, 128 KiB) bytes, as QEMU)
//! 0x0010_0000 .. min(ram, 0xC000_0000)   RAM
//! 0xC000_0000 .. 0x1_0000_0000           MMIO hole
//!     0xFEC0_0000              IOAPIC
//!     0xFEE0_0000              local APIC
//!     4 GiB - rom_size .. 4 GiB BIOS ROM
//! 0x1_0000_0000 .. 4 GiB + (ram - 3 GiB)  RAM above 4 GiB (when ram > 3 GiB)
//! ```
//!
//! The boot structures sit in low RAM below 0x9F000 so that any machine with
//! at least 1 MiB of RAM holds them, and clear of 1 MiB where kernels load.

/// 1 KiB, 1 MiB, 1 GiB.
pub const KIB: u64 = 1 << 10;
pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;

/// Low RAM: [0, LOW_RAM_END).
pub const LOW_RAM_END: u64 = 0xA_0000;
/// Start of the reserved area at the top of low RAM (EBDA), for e820.
pub const EBDA_START: u64 = 0x9_FC00;
/// ACPI tables: [ACPI_START, ACPI_END), e820 type 3 (ACPI data).
pub const ACPI_START: u64 = 0x9_E000;
pub const ACPI_END: u64 = EBDA_START;
/// The ACPI RSDP: 16-byte aligned in the first KiB of the EBDA, after the
/// EBDA's size word.
pub const ACPI_RSDP_START: u64 = EBDA_START + 0x10;
/// BIOS data area: the EBDA segment (u16) and the base memory size in KiB
/// (u16), read by Linux and by the ACPI RSDP scan.
pub const BDA_EBDA_SEGMENT: u64 = 0x40E;
pub const BDA_BASE_MEMORY_KIB: u64 = 0x413;
/// The legacy hole [LEGACY_HOLE_START, HIGH_RAM_START).
pub const LEGACY_HOLE_START: u64 = 0xA_0000;
/// Start of the low BIOS alias window (the alias is at most 128 KiB).
pub const BIOS_ALIAS_START: u64 = 0xE_0000;
/// Largest low BIOS alias.
pub const BIOS_ALIAS_MAX: u64 = 128 * KIB;
/// RAM resumes at 1 MiB.
pub const HIGH_RAM_START: u64 = 0x10_0000;
/// Start of the 32-bit MMIO hole; RAM below 4 GiB ends here at the latest.
pub const MMIO_HOLE_START: u64 = 0xC000_0000;
/// 4 GiB: the end of the 32-bit address space and start of RAM above it.
pub const FOUR_GIB: u64 = 0x1_0000_0000;
/// IOAPIC MMIO base.
pub const IOAPIC_BASE: u64 = 0xFEC0_0000;
/// Local APIC MMIO base.
pub const LAPIC_BASE: u64 = 0xFEE0_0000;

/// BIOS images must be a multiple of this.
pub const BIOS_SIZE_ALIGN: u64 = 64 * KIB;
/// Largest accepted BIOS image.
pub const BIOS_MAX_SIZE: u64 = 16 * MIB;

/// Smallest guest RAM.
pub const MIN_RAM_SIZE: u64 = MIB;
/// Largest guest RAM we try to map (1 TiB).
pub const MAX_RAM_SIZE: u64 = 1 << 40;

/// GDT for `-kernel` boots (see [`crate::kernel`] for its entries).
pub const BOOT_GDT_START: u64 = 0x500;
/// Number of 8-byte GDT entries reserved.
pub const BOOT_GDT_ENTRIES: u64 = 8;
/// The (empty) IDT for `-kernel` boots.
pub const BOOT_IDT_START: u64 = 0x540;
/// Boot stack: [BOOT_STACK_START, BOOT_STACK_TOP); RSP starts at the top.
pub const BOOT_STACK_START: u64 = 0x1000;
pub const BOOT_STACK_TOP: u64 = 0x7000;
/// Linux zero page (`struct boot_params`, 4 KiB).
pub const ZERO_PAGE_START: u64 = 0x7000;
/// Page tables: PML4, one PDPT, then 4 page directories of 2 MiB pages.
pub const PML4_START: u64 = 0x9000;
pub const PDPT_START: u64 = 0xA000;
pub const PD_START: u64 = 0xB000;
/// End of the page-table area (PD_START + 4 pages).
pub const PAGE_TABLES_END: u64 = 0xF000;
/// Command line: [CMDLINE_START, CMDLINE_START + CMDLINE_MAX_SIZE), NUL included.
pub const CMDLINE_START: u64 = 0x2_0000;
pub const CMDLINE_MAX_SIZE: u64 = 0x1_0000;

/// Where kernels are conventionally loaded (1 MiB).
pub const KERNEL_DEFAULT_START: u64 = HIGH_RAM_START;

const _: () = assert!(BOOT_GDT_START + BOOT_GDT_ENTRIES * 8 <= BOOT_IDT_START);
const _: () = assert!(PAGE_TABLES_END == PD_START + 4 * 0x1000);
const _: () = assert!(BDA_BASE_MEMORY_KIB + 2 <= BOOT_GDT_START);
const _: () = assert!(CMDLINE_START + CMDLINE_MAX_SIZE <= ACPI_START);
const _: () = assert!(ACPI_START < ACPI_END && ACPI_START.is_multiple_of(0x1000));

/// The boot structures as (start, end, name), for overlap checks.
pub const BOOT_STRUCTURES: [(u64, u64, &str); 5] = [
    (BOOT_GDT_START, BOOT_IDT_START + 8, "the boot GDT/IDT"),
    (BOOT_STACK_START, BOOT_STACK_TOP, "the boot stack"),
    (ZERO_PAGE_START, ZERO_PAGE_START + 0x1000, "the zero page"),
    (PML4_START, PAGE_TABLES_END, "the boot page tables"),
    (
        CMDLINE_START,
        CMDLINE_START + CMDLINE_MAX_SIZE,
        "the command line",
    ),
];

/// End of RAM below 4 GiB for a machine with `ram_size` bytes.
pub fn ram_below_4g_end(ram_size: u64) -> u64 {
    ram_size.min(MMIO_HOLE_START)
}

/// Bytes of RAM above 4 GiB.
pub fn ram_above_4g_size(ram_size: u64) -> u64 {
    ram_size.saturating_sub(MMIO_HOLE_START)
}

/// The RAM ranges as (start, len), in address order. `ram_size` >= 1 MiB
/// gives low RAM, RAM from 1 MiB, and RAM above 4 GiB when needed; the
/// 384 KiB legacy hole is not counted as RAM (as QEMU does, the hole
/// shadows that part of the first MiB).
pub fn ram_ranges(ram_size: u64) -> Vec<(u64, u64)> {
    let mut v = vec![(0, LOW_RAM_END.min(ram_size))];
    let below = ram_below_4g_end(ram_size);
    if below > HIGH_RAM_START {
        v.push((HIGH_RAM_START, below - HIGH_RAM_START));
    }
    let above = ram_above_4g_size(ram_size);
    if above > 0 {
        v.push((FOUR_GIB, above));
    }
    v
}

/// Whether [start, start + len) lies entirely inside one RAM range.
pub fn is_ram(ram_size: u64, start: u64, len: u64) -> bool {
    let Some(end) = start.checked_add(len) else {
        return false;
    };
    ram_ranges(ram_size)
        .iter()
        .any(|&(s, l)| start >= s && end <= s + l)
}

/// The first boot structure overlapping [start, end), if any.
pub fn overlapping_boot_structure(start: u64, end: u64) -> Option<&'static str> {
    BOOT_STRUCTURES
        .iter()
        .find(|&&(s, e, _)| start < e && s < end)
        .map(|&(_, _, name)| name)
}

/// Where the BIOS ROM of `rom_size` bytes is mapped: [4 GiB - size, 4 GiB).
pub fn bios_rom_start(rom_size: u64) -> u64 {
    FOUR_GIB - rom_size
}

/// The low alias of the BIOS: (start, len) of the last min(size, 128 KiB)
/// bytes of the ROM, mapped to end at 1 MiB.
pub fn bios_alias(rom_size: u64) -> (u64, u64) {
    let len = rom_size.min(BIOS_ALIAS_MAX);
    (HIGH_RAM_START - len, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_structures_are_in_low_ram_and_disjoint() {
        for (i, &(s, e, _)) in BOOT_STRUCTURES.iter().enumerate() {
            assert!(s < e && e <= 0x9F000);
            for &(s2, e2, _) in &BOOT_STRUCTURES[i + 1..] {
                assert!(e <= s2 || e2 <= s);
            }
        }
    }

    #[test]
    fn ram_ranges_follow_the_layout() {
        assert_eq!(ram_ranges(MIB), vec![(0, LOW_RAM_END)]);
        assert_eq!(
            ram_ranges(128 * MIB),
            vec![(0, LOW_RAM_END), (MIB, 127 * MIB)]
        );
        assert_eq!(
            ram_ranges(4 * GIB),
            vec![(0, LOW_RAM_END), (MIB, 3 * GIB - MIB), (FOUR_GIB, GIB)]
        );
        assert!(is_ram(128 * MIB, MIB, MIB));
        assert!(!is_ram(128 * MIB, 0x9F000, 0x2000));
        assert!(!is_ram(128 * MIB, u64::MAX, 2));
        assert!(!is_ram(128 * MIB, 127 * MIB, 2 * MIB));
    }

    #[test]
    fn bios_addresses() {
        assert_eq!(bios_rom_start(64 * KIB), 0xFFFF_0000);
        assert_eq!(bios_alias(64 * KIB), (0xF_0000, 64 * KIB));
        assert_eq!(bios_alias(MIB), (BIOS_ALIAS_START, 128 * KIB));
        assert_eq!(overlapping_boot_structure(MIB, 2 * MIB), None);
        assert_eq!(overlapping_boot_structure(ACPI_START, LOW_RAM_END), None);
        assert_eq!(
            overlapping_boot_structure(0x8000, 0x9001),
            Some("the boot page tables")
        );
    }
}
