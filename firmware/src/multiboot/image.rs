//! Loading a multiboot kernel image: from its address fields (the a.out
//! kludge) or as an ELF32/ELF64 executable (see the parent module docs).

use vm_memory::GuestMemoryMmap;

use super::{ram_entry, MultibootOptions};
use crate::layout::FOUR_GIB;
use crate::{boot, elf, Error};

/// The address fields of a header (Multiboot 1 flag bit 16, or the
/// Multiboot 2 address tag), with the file offset of the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressFields {
    /// Offset of the multiboot header in the file.
    pub header_offset: u64,
    pub header_addr: u32,
    pub load_addr: u32,
    /// 0: load up to the end of the file.
    pub load_end_addr: u32,
    /// 0: no bss.
    pub bss_end_addr: u32,
    pub entry_addr: u32,
}

/// How the image is to be loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadSpec {
    /// From the address fields.
    Address(AddressFields),
    /// As an ELF executable, with an optional entry point overriding
    /// `e_entry` (the Multiboot 2 entry address tag).
    Elf { entry: Option<u32> },
}

/// Where the kernel went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadedKernel {
    /// Lowest and highest (exclusive) address loaded.
    pub start: u64,
    pub end: u64,
    /// Physical entry point.
    pub entry: u64,
    /// Whether the image was an ELF64 file.
    pub elf64: bool,
}

fn bad(msg: String) -> Error {
    Error::Multiboot(msg)
}

/// One piece to load: `data` at `addr`, then `zero` bytes of zeroes.
struct Piece<'a> {
    what: String,
    addr: u64,
    data: &'a [u8],
    zero: u64,
}

impl Piece<'_> {
    fn end(&self) -> u64 {
        self.addr + self.data.len() as u64 + self.zero
    }
}

/// The pieces of an image loaded from its address fields.
fn address_pieces<'a>(image: &'a [u8], a: &AddressFields) -> Result<(Vec<Piece<'a>>, u64), Error> {
    let f = |name: &str, v: u32| format!("{name} {v:#x}");
    if a.header_addr < a.load_addr {
        return Err(bad(format!(
            "header_addr {:#x} is below load_addr {:#x}",
            a.header_addr, a.load_addr
        )));
    }
    let before = u64::from(a.header_addr - a.load_addr);
    if before > a.header_offset {
        return Err(bad(format!(
            "header_addr {:#x} - load_addr {:#x} = {before:#x} is more than the header's offset \
             {:#x} in the file: the text would start before the file",
            a.header_addr, a.load_addr, a.header_offset
        )));
    }
    let text_offset = a.header_offset - before;
    let file_len = image.len() as u64;
    let load_size = if a.load_end_addr == 0 {
        file_len - text_offset
    } else {
        if a.load_end_addr < a.load_addr {
            return Err(bad(format!(
                "{} is below {}",
                f("load_end_addr", a.load_end_addr),
                f("load_addr", a.load_addr)
            )));
        }
        let n = u64::from(a.load_end_addr - a.load_addr);
        if text_offset + n > file_len {
            return Err(bad(format!(
                "load_end_addr {:#x} needs {n:#x} bytes of the file from offset {text_offset:#x}, \
                 but the file is only {file_len:#x} bytes (truncated?)",
                a.load_end_addr
            )));
        }
        n
    };
    let load_end = u64::from(a.load_addr) + load_size;
    if load_end > FOUR_GIB {
        return Err(bad(format!(
            "the image ({load_size:#x} bytes at load_addr {:#x}) does not fit below 4 GiB",
            a.load_addr
        )));
    }
    let bss_end = if a.bss_end_addr == 0 {
        load_end
    } else if u64::from(a.bss_end_addr) < load_end {
        return Err(bad(format!(
            "bss_end_addr {:#x} is below the end of the loaded image {load_end:#x}",
            a.bss_end_addr
        )));
    } else {
        a.bss_end_addr.into()
    };
    let entry = u64::from(a.entry_addr);
    if !(u64::from(a.load_addr)..bss_end.max(load_end)).contains(&entry) {
        return Err(bad(format!(
            "entry_addr {entry:#x} is outside the loaded image {:#x}..{:#x}",
            a.load_addr,
            bss_end.max(load_end)
        )));
    }
    let data = &image[text_offset as usize..(text_offset + load_size) as usize];
    let piece = Piece {
        what: format!("the image at load_addr {:#x}", a.load_addr),
        addr: a.load_addr.into(),
        data,
        zero: bss_end - load_end,
    };
    Ok((vec![piece], entry))
}

/// The pieces of an ELF image.
fn elf_pieces(image: &[u8], entry: Option<u32>) -> Result<(Vec<Piece<'_>>, u64, bool), Error> {
    let e = elf::parse(image).map_err(|e| match e {
        Error::Elf(m) => bad(format!(
            "it has no address fields (a.out kludge), so it must be an ELF executable: {m}"
        )),
        other => other,
    })?;
    let pieces = e
        .segments
        .iter()
        .map(|s| Piece {
            what: format!("ELF segment {}", s.index),
            addr: s.paddr,
            data: &image[s.offset as usize..(s.offset + s.filesz) as usize],
            zero: s.memsz - s.filesz,
        })
        .collect();
    let entry = entry.map_or_else(|| e.entry_paddr(), u64::from);
    Ok((pieces, entry, e.is64))
}

/// Checks and loads the kernel image as `spec` says.
pub(crate) fn load(
    mem: &GuestMemoryMmap,
    image: &[u8],
    spec: &LoadSpec,
    opts: &MultibootOptions,
) -> Result<LoadedKernel, Error> {
    let (pieces, entry, elf64) = match spec {
        LoadSpec::Address(a) => {
            let (p, e) = address_pieces(image, a)?;
            (p, e, false)
        }
        LoadSpec::Elf { entry } => elf_pieces(image, *entry)?,
    };
    for (i, p) in pieces.iter().enumerate() {
        let end = p.addr as u128 + p.data.len() as u128 + p.zero as u128;
        if end > FOUR_GIB as u128 {
            return Err(bad(format!(
                "{} at {:#x}..{end:#x} is not below 4 GiB (multiboot addresses are 32-bit)",
                p.what, p.addr
            )));
        }
        if ram_entry(opts.e820, p.addr, end as u64).is_none() {
            return Err(bad(format!(
                "{} at {:#x}..{end:#x} is not inside one RAM range of the memory map \
                 ({:#x} bytes of RAM; see the e820 map with -d cpu_reset)",
                p.what, p.addr, opts.ram_size
            )));
        }
        let (rs, re) = super::RESERVED_LOW;
        if p.addr < re && rs < end as u64 {
            return Err(bad(format!(
                "{} at {:#x}..{end:#x} overlaps the BIOS data area and boot GDT at \
                 {rs:#x}..{re:#x}",
                p.what, p.addr
            )));
        }
        if let Some(q) = pieces[..i]
            .iter()
            .find(|q| q.addr < end as u64 && p.addr < q.end())
        {
            return Err(bad(format!(
                "{} at {:#x}..{end:#x} overlaps {} at {:#x}..{:#x}",
                p.what,
                p.addr,
                q.what,
                q.addr,
                q.end()
            )));
        }
    }
    let start = pieces.iter().map(|p| p.addr).min().unwrap_or(0);
    let end = pieces.iter().map(|p| p.end()).max().unwrap_or(0);
    if !pieces
        .iter()
        .any(|p| entry >= p.addr && entry < p.end().max(p.addr + 1))
    {
        return Err(bad(format!(
            "the entry point {entry:#x} is outside every loaded segment{}",
            if entry >= FOUR_GIB {
                " (and above 4 GiB, where the 32-bit multiboot entry cannot reach)"
            } else {
                ""
            }
        )));
    }
    for p in &pieces {
        boot::write_bytes(mem, p.addr, p.data)?;
        boot::zero(mem, p.addr + p.data.len() as u64, p.zero)?;
    }
    Ok(LoadedKernel {
        start,
        end,
        entry,
        elf64,
    })
}
