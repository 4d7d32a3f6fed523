//! The e820 memory map handed to Linux.

use crate::layout::{self, ACPI_END, ACPI_START, EBDA_START, FOUR_GIB, HIGH_RAM_START};

/// Usable RAM.
pub const E820_RAM: u32 = 1;
/// Reserved.
pub const E820_RESERVED: u32 = 2;
/// ACPI tables (reclaimable once parsed).
pub const E820_ACPI: u32 = 3;
/// Entries that fit in the zero page.
pub const E820_MAX_ENTRIES: usize = 128;

/// One e820 entry, as in `struct boot_e820_entry`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    /// [`E820_RAM`], [`E820_RESERVED`], ...
    pub kind: u32,
}

impl E820Entry {
    pub fn ram(addr: u64, size: u64) -> Self {
        E820Entry {
            addr,
            size,
            kind: E820_RAM,
        }
    }
    pub fn reserved(addr: u64, size: u64) -> Self {
        E820Entry {
            addr,
            size,
            kind: E820_RESERVED,
        }
    }
    pub fn acpi(addr: u64, size: u64) -> Self {
        E820Entry {
            addr,
            size,
            kind: E820_ACPI,
        }
    }
    /// The 20-byte zero-page encoding.
    pub fn to_bytes(&self) -> [u8; 20] {
        let mut b = [0u8; 20];
        b[..8].copy_from_slice(&self.addr.to_le_bytes());
        b[8..16].copy_from_slice(&self.size.to_le_bytes());
        b[16..].copy_from_slice(&self.kind.to_le_bytes());
        b
    }
}

/// The e820 map of the layout for `ram_size` bytes of RAM:
/// RAM [0, 0x9E000); ACPI [0x9E000, 0x9FC00) (the ACPI tables, see
/// [`crate::acpi`]); reserved [0x9FC00, 0x100000) (EBDA, VGA, ROMs, BIOS);
/// RAM [1 MiB, min(ram, 3 GiB)); the MMIO hole [3 GiB, 4 GiB) is left out
/// (a gap, which Linux offers to PCI); RAM [4 GiB, 4 GiB + ram - 3 GiB).
pub fn e820_map(ram_size: u64) -> Vec<E820Entry> {
    let mut v = vec![
        E820Entry::ram(0, ACPI_START.min(ram_size)),
        E820Entry::acpi(ACPI_START, ACPI_END - ACPI_START),
        E820Entry::reserved(EBDA_START, HIGH_RAM_START - EBDA_START),
    ];
    let below = layout::ram_below_4g_end(ram_size);
    if below > HIGH_RAM_START {
        v.push(E820Entry::ram(HIGH_RAM_START, below - HIGH_RAM_START));
    }
    let above = layout::ram_above_4g_size(ram_size);
    if above > 0 {
        v.push(E820Entry::ram(FOUR_GIB, above));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{GIB, MIB};

    #[test]
    fn maps() {
        assert_eq!(
            e820_map(128 * MIB),
            vec![
                E820Entry::ram(0, 0x9E000),
                E820Entry::acpi(0x9E000, 0x1C00),
                E820Entry::reserved(0x9FC00, 0x60400),
                E820Entry::ram(MIB, 127 * MIB),
            ]
        );
        let big = e820_map(5 * GIB);
        assert_eq!(big[3], E820Entry::ram(MIB, 3 * GIB - MIB));
        assert_eq!(big[4], E820Entry::ram(4 * GIB, 2 * GIB));
        assert_eq!(e820_map(MIB).len(), 3);
        let b = E820Entry::ram(0x1000, 0x2000).to_bytes();
        assert_eq!(&b[..8], &0x1000u64.to_le_bytes());
        assert_eq!(&b[16..], &1u32.to_le_bytes());
    }
}
