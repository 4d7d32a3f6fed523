//! Multiboot 1 (the Multiboot Specification 0.6.96): the header and the
//! boot information structure.
//!
//! # Header flags
//!
//! Bit 0 (modules 4 KiB aligned) and bit 1 (memory information) are always
//! honoured. Bit 2 (video mode table) cannot be: hx86 has no graphics, so,
//! as QEMU does, the kernel boots without it (the loader returns a warning).
//! Any other of bits 3-15 (requirements this loader does not know) is
//! refused, as the specification requires. Bit 16 selects the address
//! fields.
//!
//! # Boot information
//!
//! flags = MEMORY (bit 0) | CMDLINE (2) | MODS (3) | MMAP (6) |
//! BOOT_LOADER_NAME (9); the structure is 116 bytes (the VBE and
//! framebuffer fields zero), followed by the module list (16 bytes per
//! module), the memory map (entries of `size` = 20, base, length, type) and
//! the strings.

use vm_memory::GuestMemoryMmap;

use super::image::{AddressFields, LoadSpec};
use super::{mem_lower_upper, Area, MultibootOptions, BOOT_LOADER_NAME};
use crate::Error;

/// Header magic.
pub const HEADER_MAGIC: u32 = 0x1BAD_B002;
/// The value in EAX at entry.
pub const BOOT_MAGIC: u32 = 0x2BAD_B002;
/// The header must lie entirely in the first 8 KiB.
pub const SEARCH_LIMIT: usize = 8192;
/// How far a misplaced header is looked for, to report it.
const MISPLACED_SEARCH: usize = 64 * 1024;

/// Header flags.
pub const FLAG_PAGE_ALIGN: u32 = 1 << 0;
pub const FLAG_MEMORY_INFO: u32 = 1 << 1;
pub const FLAG_VIDEO_MODE: u32 = 1 << 2;
pub const FLAG_ADDRESS: u32 = 1 << 16;

/// Boot information flags.
pub const INFO_MEMORY: u32 = 1 << 0;
pub const INFO_BOOT_DEVICE: u32 = 1 << 1;
pub const INFO_CMDLINE: u32 = 1 << 2;
pub const INFO_MODS: u32 = 1 << 3;
pub const INFO_MMAP: u32 = 1 << 6;
pub const INFO_BOOT_LOADER_NAME: u32 = 1 << 9;

/// Size of the boot information structure.
pub const INFO_SIZE: usize = 116;

/// A parsed Multiboot 1 header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Offset in the file.
    pub offset: usize,
    pub flags: u32,
    /// The address fields, when flag bit 16 is set.
    pub address: Option<AddressFields>,
}

impl Header {
    pub(crate) fn load_spec(&self) -> LoadSpec {
        match self.address {
            Some(a) => LoadSpec::Address(a),
            None => LoadSpec::Elf { entry: None },
        }
    }

    /// What the loader cannot give the kernel but boots it anyway.
    pub fn warnings(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.flags & FLAG_VIDEO_MODE != 0 {
            v.push(
                "the multiboot kernel asks for a video mode (header flag bit 2); hx86 has no \
                 graphics and boots it without one, as QEMU does"
                    .to_string(),
            );
        }
        v
    }
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn magics(image: &[u8], limit: usize) -> impl Iterator<Item = usize> + '_ {
    super::magic_offsets(image, HEADER_MAGIC, 4, limit)
}

/// Whether the image has the Multiboot 1 magic where a header may be.
pub fn has_magic(image: &[u8]) -> bool {
    magics(image, SEARCH_LIMIT).next().is_some()
}

fn checksum_ok(image: &[u8], o: usize) -> bool {
    match (u32_at(image, o + 4), u32_at(image, o + 8)) {
        (Some(f), Some(c)) => HEADER_MAGIC.wrapping_add(f).wrapping_add(c) == 0,
        _ => false,
    }
}

fn bad(msg: String) -> Error {
    Error::Multiboot(msg)
}

/// Finds and validates the Multiboot 1 header (see the module docs).
pub fn find(image: &[u8]) -> Result<Option<Header>, Error> {
    let Some(offset) = magics(image, SEARCH_LIMIT).find(|&o| checksum_ok(image, o)) else {
        if let Some(o) = magics(image, SEARCH_LIMIT).next() {
            return Err(match (u32_at(image, o + 4), u32_at(image, o + 8)) {
                (Some(flags), Some(sum)) => bad(format!(
                    "header at offset {o:#x}: checksum {sum:#010x} is wrong: magic + flags \
                     ({flags:#010x}) + checksum must be 0 (it should be {:#010x})",
                    0u32.wrapping_sub(HEADER_MAGIC).wrapping_sub(flags)
                )),
                _ => bad(format!(
                    "header at offset {o:#x}: the file ends inside the header (truncated)"
                )),
            });
        }
        if let Some(o) = magics(image, MISPLACED_SEARCH).find(|&o| checksum_ok(image, o)) {
            return Err(bad(format!(
                "header at offset {o:#x} is beyond the first 8 KiB, where the specification \
                 requires it"
            )));
        }
        return Ok(None);
    };
    let flags = u32_at(image, offset + 4).unwrap_or(0);
    let unknown = flags & 0xFFF8;
    if unknown != 0 {
        return Err(bad(format!(
            "header at offset {offset:#x}: flags {flags:#x} require features this loader does \
             not know (bits {unknown:#x} of the required bits 0-15)"
        )));
    }
    let address = if flags & FLAG_ADDRESS != 0 {
        let end = offset + 32;
        if end > SEARCH_LIMIT {
            return Err(bad(format!(
                "header at offset {offset:#x}: its address fields end at {end:#x}, beyond the \
                 first 8 KiB"
            )));
        }
        if end > image.len() {
            return Err(bad(format!(
                "header at offset {offset:#x}: the file ends inside the address fields \
                 (truncated)"
            )));
        }
        let w = |i| u32_at(image, offset + i).unwrap_or(0);
        Some(AddressFields {
            header_offset: offset as u64,
            header_addr: w(12),
            load_addr: w(16),
            load_end_addr: w(20),
            bss_end_addr: w(24),
            entry_addr: w(28),
        })
    } else {
        None
    };
    Ok(Some(Header {
        offset,
        flags,
        address,
    }))
}

/// Writes the modules and the boot information into `area` and guest
/// memory; returns the address of the information structure and the area.
pub(crate) fn write_info(
    mem: &GuestMemoryMmap,
    _h: &Header,
    mut area: Area,
    opts: &MultibootOptions,
) -> Result<(u64, Area), Error> {
    area.align(8);
    let info = area.push(&[0; INFO_SIZE])?;
    let mods_addr = area.push(&vec![0; 16 * opts.modules.len()])?;
    let mmap_addr = area.cursor();
    for e in opts.e820 {
        let mut entry = [0u8; 24];
        entry[..4].copy_from_slice(&20u32.to_le_bytes());
        entry[4..].copy_from_slice(&e.to_bytes());
        area.push(&entry)?;
    }
    let mmap_len = area.cursor() - mmap_addr;
    let cmdline = area.push_str(opts.cmdline)?;
    for (i, m) in opts.modules.iter().enumerate() {
        let s = area.push_str(m.cmdline)?;
        let (start, end) = area.modules[i];
        let mut d = [0u8; 16];
        for (j, v) in [start, end, s].iter().enumerate() {
            d[j * 4..j * 4 + 4].copy_from_slice(&(*v as u32).to_le_bytes());
        }
        area.patch(mods_addr + 16 * i as u64, &d);
    }
    let name = area.push_str(BOOT_LOADER_NAME)?;
    let (lower, upper) = mem_lower_upper(opts.e820);
    let mut s = [0u8; INFO_SIZE];
    let mut put = |off: usize, v: u32| s[off..off + 4].copy_from_slice(&v.to_le_bytes());
    put(
        0,
        INFO_MEMORY | INFO_CMDLINE | INFO_MODS | INFO_MMAP | INFO_BOOT_LOADER_NAME,
    );
    put(4, lower);
    put(8, upper);
    put(16, cmdline as u32);
    put(20, opts.modules.len() as u32);
    put(24, mods_addr as u32);
    put(44, mmap_len as u32);
    put(48, mmap_addr as u32);
    put(64, name as u32);
    area.patch(info, &s);
    area.write(mem)?;
    Ok((info, area))
}
