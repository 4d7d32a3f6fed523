//! Building guest memory: RAM per [`crate::layout`] and the BIOS ROM.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::layout::{self, BIOS_MAX_SIZE, BIOS_SIZE_ALIGN, MAX_RAM_SIZE, MIN_RAM_SIZE};
use crate::Error;

/// Checks a BIOS image the way QEMU does: a non-zero multiple of 64 KiB, at
/// most 16 MiB.
pub fn check_bios(bios: &[u8]) -> Result<(), Error> {
    let size = bios.len() as u64;
    if size == 0 || !size.is_multiple_of(BIOS_SIZE_ALIGN) || size > BIOS_MAX_SIZE {
        return Err(Error::BiosSize { size });
    }
    Ok(())
}

/// Creates the guest memory of a machine with `ram_size` bytes of RAM and an
/// optional BIOS ROM image.
///
/// Returns the memory and the read-only ranges as (start, len): the ROM at
/// [4 GiB - rom size, 4 GiB) and its low alias ending at 1 MiB (the last
/// min(rom size, 128 KiB) bytes). The ROM regions are ordinary regions of
/// the returned memory holding a copy of the image; backends must map them
/// read-only (KVM: a read-only memslot; DBT: writes ignored).
pub fn create_guest_memory(
    ram_size: u64,
    bios: Option<&[u8]>,
) -> Result<(GuestMemoryMmap, Vec<(u64, u64)>), Error> {
    if ram_size < MIN_RAM_SIZE {
        return Err(Error::RamTooSmall { size: ram_size });
    }
    let max = MAX_RAM_SIZE.min(usize::MAX as u64);
    if ram_size > max {
        return Err(Error::RamTooLarge {
            size: ram_size,
            max,
        });
    }
    if let Some(rom) = bios {
        check_bios(rom)?;
    }

    let mut ranges = layout::ram_ranges(ram_size);
    let mut rom_ranges = Vec::new();
    if let Some(rom) = bios {
        let size = rom.len() as u64;
        let alias = layout::bios_alias(size);
        rom_ranges.push(alias);
        rom_ranges.push((layout::bios_rom_start(size), size));
    }
    ranges.extend(rom_ranges.iter().copied());
    ranges.sort_unstable();

    // Map region by region so that a failure names the region.
    let mut regions = Vec::with_capacity(ranges.len());
    for &(start, len) in &ranges {
        let region =
            vm_memory::GuestRegionMmap::from_range(GuestAddress(start), len as usize, None)
                .map_err(|e| Error::MapFailed {
                    start,
                    size: len,
                    reason: e.to_string(),
                })?;
        regions.push(region);
    }
    let mem = GuestMemoryMmap::from_regions(regions).map_err(|e| Error::MapFailed {
        start: 0,
        size: ram_size,
        reason: e.to_string(),
    })?;

    if let Some(rom) = bios {
        let start = layout::bios_rom_start(rom.len() as u64);
        mem.write_slice(rom, GuestAddress(start))
            .map_err(|e| Error::write(start, rom.len(), e))?;
        let (alias_start, alias_len) = layout::bios_alias(rom.len() as u64);
        let tail = &rom[rom.len() - alias_len as usize..];
        mem.write_slice(tail, GuestAddress(alias_start))
            .map_err(|e| Error::write(alias_start, tail.len(), e))?;
    }
    Ok((mem, rom_ranges))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{GIB, KIB, MIB};
    use vm_memory::GuestMemory;

    #[test]
    fn rejects_bad_sizes() {
        assert!(matches!(
            create_guest_memory(MIB - 1, None),
            Err(Error::RamTooSmall { .. })
        ));
        assert!(matches!(
            create_guest_memory(u64::MAX, None),
            Err(Error::RamTooLarge { .. })
        ));
        for bad in [0usize, 1000, 64 * 1024 + 1, 17 * 1024 * 1024] {
            let rom = vec![0u8; bad];
            let e = create_guest_memory(2 * MIB, Some(&rom)).unwrap_err();
            assert!(matches!(e, Error::BiosSize { .. }), "{bad}: {e}");
            assert!(e.to_string().contains("multiple of 64 KiB"));
        }
    }

    #[test]
    fn ram_only() {
        let (mem, ro) = create_guest_memory(16 * MIB, None).unwrap();
        assert!(ro.is_empty());
        assert_eq!(mem.num_regions(), 2);
        assert!(mem.address_in_range(GuestAddress(0x9FFFF)));
        assert!(!mem.address_in_range(GuestAddress(0xA0000)));
        assert!(mem.address_in_range(GuestAddress(16 * MIB - 1)));
        assert!(!mem.address_in_range(GuestAddress(16 * MIB)));
    }

    #[test]
    fn rom_and_alias() {
        let mut rom = vec![0u8; 256 * 1024];
        rom[0] = 0x11;
        rom[128 * 1024] = 0x22;
        *rom.last_mut().unwrap() = 0x33;
        let (mem, ro) = create_guest_memory(4 * MIB, Some(&rom)).unwrap();
        assert_eq!(ro, vec![(0xE0000, 128 * KIB), (0xFFFC_0000, 256 * KIB)]);
        let b = |a: u64| mem.read_obj::<u8>(GuestAddress(a)).unwrap();
        assert_eq!(b(0xFFFC_0000), 0x11);
        assert_eq!(b(0xFFFF_FFFF), 0x33);
        assert_eq!(b(0xE0000), 0x22);
        assert_eq!(b(0xFFFFF), 0x33);
    }

    #[test]
    fn small_rom_alias_and_high_ram() {
        let rom = vec![0xAAu8; 64 * 1024];
        let (mem, ro) = create_guest_memory(3 * GIB + 2 * MIB, Some(&rom)).unwrap();
        assert_eq!(ro, vec![(0xF0000, 64 * KIB), (0xFFFF_0000, 64 * KIB)]);
        assert!(mem.address_in_range(GuestAddress(0x1_0000_0000 + 2 * MIB - 1)));
        assert!(!mem.address_in_range(GuestAddress(0xC000_0000)));
        assert!(!mem.address_in_range(GuestAddress(0xE0000)));
    }
}
