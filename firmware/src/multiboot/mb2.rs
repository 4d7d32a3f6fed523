//! Multiboot 2 (the Multiboot2 Specification 2.0): the header with its tags
//! and the boot information tag list.
//!
//! # Header tags
//!
//! * information request (1): every requested type hx86 provides is
//!   accepted (see below); any other makes the boot fail unless the request
//!   tag is marked optional.
//! * address (2) and entry address (3): as the Multiboot 1 address fields.
//! * console flags (4): accepted (the console is COM1) unless it demands a
//!   console description (console_flags bit 0) and is not optional.
//! * framebuffer (5): refused unless optional (no graphics).
//! * module alignment (6), relocatable (10): accepted (modules are always
//!   4 KiB aligned; the image is loaded at its link address).
//! * EFI tags (7, 8, 9): not applicable (no EFI); accepted.
//! * any other tag: refused unless optional.
//!
//! # Boot information
//!
//! total_size, reserved, then 8-byte aligned tags: command line (1), boot
//! loader name (2), one module tag (3) per module, basic memory information
//! (4), memory map (6, entry_size 24, entry_version 0), ACPI old RSDP (14,
//! the first 20 bytes of the RSDP) and ACPI new RSDP (15, all 36 bytes),
//! and the end tag (0).

use vm_memory::GuestMemoryMmap;

use super::image::{AddressFields, LoadSpec};
use super::{mem_lower_upper, Area, MultibootOptions, BOOT_LOADER_NAME};
use crate::Error;

/// Header magic.
pub const HEADER_MAGIC: u32 = 0xE852_50D6;
/// The value in EAX at entry.
pub const BOOT_MAGIC: u32 = 0x36D7_6289;
/// The header must lie entirely in the first 32 KiB.
pub const SEARCH_LIMIT: usize = 32768;
const MISPLACED_SEARCH: usize = 128 * 1024;
/// Architecture 0: 32-bit protected-mode i386.
pub const ARCH_I386: u32 = 0;

/// Header tag types.
pub mod tag {
    pub const END: u16 = 0;
    pub const INFORMATION_REQUEST: u16 = 1;
    pub const ADDRESS: u16 = 2;
    pub const ENTRY_ADDRESS: u16 = 3;
    pub const CONSOLE_FLAGS: u16 = 4;
    pub const FRAMEBUFFER: u16 = 5;
    pub const MODULE_ALIGN: u16 = 6;
    pub const EFI_BS: u16 = 7;
    pub const ENTRY_ADDRESS_EFI32: u16 = 8;
    pub const ENTRY_ADDRESS_EFI64: u16 = 9;
    pub const RELOCATABLE: u16 = 10;
    /// Header tag flag: the loader may ignore the tag.
    pub const OPTIONAL: u16 = 1;
}

/// Boot information tag types.
pub mod info {
    pub const END: u32 = 0;
    pub const CMDLINE: u32 = 1;
    pub const BOOT_LOADER_NAME: u32 = 2;
    pub const MODULE: u32 = 3;
    pub const BASIC_MEMINFO: u32 = 4;
    pub const MMAP: u32 = 6;
    pub const ACPI_OLD: u32 = 14;
    pub const ACPI_NEW: u32 = 15;
    /// The information types hx86 provides.
    pub const PROVIDED: [u32; 7] = [
        CMDLINE,
        BOOT_LOADER_NAME,
        MODULE,
        BASIC_MEMINFO,
        MMAP,
        ACPI_OLD,
        ACPI_NEW,
    ];
}

/// A parsed Multiboot 2 header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub offset: usize,
    pub address: Option<AddressFields>,
    pub entry: Option<u32>,
    /// The information types the kernel asked for.
    pub requested: Vec<u32>,
}

impl Header {
    pub(crate) fn load_spec(&self) -> LoadSpec {
        match self.address {
            Some(mut a) => {
                if let Some(e) = self.entry {
                    a.entry_addr = e;
                }
                LoadSpec::Address(a)
            }
            None => LoadSpec::Elf { entry: self.entry },
        }
    }
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}
fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

fn magics(image: &[u8], limit: usize) -> impl Iterator<Item = usize> + '_ {
    super::magic_offsets(image, HEADER_MAGIC, 8, limit)
}

/// Whether the image has the Multiboot 2 magic where a header may be.
pub fn has_magic(image: &[u8]) -> bool {
    magics(image, SEARCH_LIMIT).next().is_some()
}

fn sum(image: &[u8], o: usize) -> Option<u32> {
    let w = |i| u32_at(image, o + i);
    Some(
        w(0)?
            .wrapping_add(w(4)?)
            .wrapping_add(w(8)?)
            .wrapping_add(w(12)?),
    )
}

fn bad(msg: String) -> Error {
    Error::Multiboot2(msg)
}

/// Finds and validates the Multiboot 2 header (see the module docs).
pub fn find(image: &[u8]) -> Result<Option<Header>, Error> {
    let Some(offset) = magics(image, SEARCH_LIMIT).find(|&o| sum(image, o) == Some(0)) else {
        if let Some(o) = magics(image, SEARCH_LIMIT).next() {
            return Err(match sum(image, o) {
                Some(s) => bad(format!(
                    "header at offset {o:#x}: checksum {:#010x} is wrong: magic + architecture + \
                     header_length + checksum must be 0 (it is off by {s:#x})",
                    u32_at(image, o + 12).unwrap_or(0)
                )),
                None => bad(format!(
                    "header at offset {o:#x}: the file ends inside the header (truncated)"
                )),
            });
        }
        if let Some(o) = magics(image, MISPLACED_SEARCH).find(|&o| sum(image, o) == Some(0)) {
            return Err(bad(format!(
                "header at offset {o:#x} is beyond the first 32 KiB, where the specification \
                 requires it"
            )));
        }
        return Ok(None);
    };
    let at = |what: &str| format!("header at offset {offset:#x}: {what}");
    let arch = u32_at(image, offset + 4).unwrap_or(0);
    if arch != ARCH_I386 {
        return Err(bad(at(&format!(
            "architecture {arch} is not i386 (0), the only one hx86 boots"
        ))));
    }
    let len = u32_at(image, offset + 8).unwrap_or(0) as usize;
    if len < 24 || !len.is_multiple_of(8) {
        return Err(bad(at(&format!(
            "header_length {len} is not a multiple of 8 holding at least the end tag"
        ))));
    }
    let end = offset + len;
    if end > SEARCH_LIMIT {
        return Err(bad(at(&format!(
            "header_length {len} makes it end at {end:#x}, beyond the first 32 KiB"
        ))));
    }
    if end > image.len() {
        return Err(bad(at(&format!(
            "header_length {len} goes past the end of the file ({:#x} bytes; truncated?)",
            image.len()
        ))));
    }
    let mut h = Header {
        offset,
        address: None,
        entry: None,
        requested: Vec::new(),
    };
    let mut t = offset + 16;
    loop {
        if t + 8 > end {
            return Err(bad(at("the tag list has no end tag within header_length")));
        }
        let ty = u16_at(image, t);
        let flags = u16_at(image, t + 2);
        let size = u32_at(image, t + 4).unwrap_or(0) as usize;
        let optional = flags & tag::OPTIONAL != 0;
        let tag_at = |what: String| bad(at(&format!("tag {ty} at offset {t:#x}: {what}")));
        if size < 8 || t + size > end {
            return Err(tag_at(format!(
                "size {size} is below 8 or runs past header_length"
            )));
        }
        let w = |i: usize| u32_at(image, t + i).unwrap_or(0);
        let need = |n: usize| {
            if size < n {
                Err(tag_at(format!(
                    "size {size} is below the {n} bytes it needs"
                )))
            } else {
                Ok(())
            }
        };
        match ty {
            tag::END => break,
            tag::INFORMATION_REQUEST => {
                let types: Vec<u32> = (8..size).step_by(4).map(w).collect();
                let missing: Vec<u32> = types
                    .iter()
                    .copied()
                    .filter(|t| !info::PROVIDED.contains(t))
                    .collect();
                if !missing.is_empty() && !optional {
                    return Err(tag_at(format!(
                        "the kernel requires boot information of types {missing:?}, which hx86 \
                         does not provide (it provides {:?})",
                        info::PROVIDED
                    )));
                }
                h.requested = types;
            }
            tag::ADDRESS => {
                need(24)?;
                let header_addr = w(8);
                // load_addr -1: load from the start of the file.
                let load_addr = match w(12) {
                    u32::MAX => header_addr.checked_sub(offset as u32).ok_or_else(|| {
                        tag_at(format!(
                            "header_addr {header_addr:#x} is below the header's offset                              {offset:#x}, so the file cannot be loaded from its start"
                        ))
                    })?,
                    a => a,
                };
                h.address = Some(AddressFields {
                    header_offset: offset as u64,
                    header_addr,
                    load_addr,
                    load_end_addr: w(16),
                    bss_end_addr: w(20),
                    entry_addr: 0,
                });
            }
            tag::ENTRY_ADDRESS => {
                need(12)?;
                h.entry = Some(w(8));
            }
            tag::CONSOLE_FLAGS => {
                need(12)?;
                if w(8) & 1 != 0 && !optional {
                    return Err(tag_at(
                        "the kernel requires a console description (console_flags bit 0); \
                         hx86 provides none (its console is COM1)"
                            .into(),
                    ));
                }
            }
            tag::MODULE_ALIGN
            | tag::EFI_BS
            | tag::ENTRY_ADDRESS_EFI32
            | tag::ENTRY_ADDRESS_EFI64
            | tag::RELOCATABLE => {}
            _ if optional => {}
            tag::FRAMEBUFFER => {
                return Err(tag_at(
                    "the kernel requires a framebuffer; hx86 has no graphics".into(),
                ))
            }
            _ => return Err(tag_at("unknown tag, not marked optional".into())),
        }
        t += size.next_multiple_of(8);
    }
    if h.address.is_some() && h.entry.is_none() {
        return Err(bad(at(
            "the address tag needs an entry address tag (there is no ELF entry to use)",
        )));
    }
    Ok(Some(h))
}

/// Appends one boot information tag (8-byte aligned).
fn push_tag(area: &mut Area, ty: u32, body: &[u8]) -> Result<u64, Error> {
    area.align(8);
    let size = 8 + body.len() as u32;
    let at = area.push(&ty.to_le_bytes())?;
    area.push(&size.to_le_bytes())?;
    area.push(body)?;
    Ok(at)
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// Writes the modules and the boot information into `area` and guest
/// memory; returns the address of the information and the area.
pub(crate) fn write_info(
    mem: &GuestMemoryMmap,
    _h: &Header,
    mut area: Area,
    opts: &MultibootOptions,
) -> Result<(u64, Area), Error> {
    area.align(8);
    let start = area.push(&[0; 8])?;
    push_tag(&mut area, info::CMDLINE, &cstr(opts.cmdline))?;
    push_tag(&mut area, info::BOOT_LOADER_NAME, &cstr(BOOT_LOADER_NAME))?;
    let mods = area.modules.clone();
    for (m, (s, e)) in opts.modules.iter().zip(mods) {
        let mut body = Vec::new();
        body.extend_from_slice(&(s as u32).to_le_bytes());
        body.extend_from_slice(&(e as u32).to_le_bytes());
        body.extend(cstr(m.cmdline));
        push_tag(&mut area, info::MODULE, &body)?;
    }
    let (lower, upper) = mem_lower_upper(opts.e820);
    let mut meminfo = lower.to_le_bytes().to_vec();
    meminfo.extend_from_slice(&upper.to_le_bytes());
    push_tag(&mut area, info::BASIC_MEMINFO, &meminfo)?;
    let mut mmap = Vec::new();
    mmap.extend_from_slice(&24u32.to_le_bytes());
    mmap.extend_from_slice(&0u32.to_le_bytes());
    for e in opts.e820 {
        mmap.extend_from_slice(&e.addr.to_le_bytes());
        mmap.extend_from_slice(&e.size.to_le_bytes());
        mmap.extend_from_slice(&e.kind.to_le_bytes());
        mmap.extend_from_slice(&0u32.to_le_bytes());
    }
    push_tag(&mut area, info::MMAP, &mmap)?;
    if let Some(rsdp) = opts.rsdp {
        push_tag(&mut area, info::ACPI_OLD, &rsdp[..rsdp.len().min(20)])?;
        push_tag(&mut area, info::ACPI_NEW, rsdp)?;
    }
    push_tag(&mut area, info::END, &[])?;
    let total = (area.cursor() - start) as u32;
    let mut head = [0u8; 8];
    head[..4].copy_from_slice(&total.to_le_bytes());
    area.patch(start, &head);
    area.write(mem)?;
    Ok((start, area))
}
