//! Multiboot kernels given to `-kernel`: Multiboot 1 (as QEMU boots them)
//! and, beyond QEMU, Multiboot 2 and ELF64 images.
//!
//! # Finding the header
//!
//! [`probe`] looks for a Multiboot 1 header (magic 0x1BADB002, 4-byte
//! aligned, entirely inside the first 8 KiB) and a Multiboot 2 header
//! (magic 0xE85250D6, 8-byte aligned, inside the first 32 KiB). When an
//! image has both, the Multiboot 1 header is used (what QEMU boots). A magic
//! with a bad checksum, or a valid header past its search window, is an
//! error naming the offset and the field, not a silent fall-back to plain
//! ELF loading.
//!
//! # Loading the image
//!
//! * With address fields (Multiboot 1 flag bit 16, the "a.out kludge", or
//!   the Multiboot 2 address tag), the file from `header_addr - load_addr`
//!   bytes before the header up to `load_end_addr` (0: the end of the file)
//!   is copied to `load_addr` and `[load_end_addr, bss_end_addr)` zeroed;
//!   the entry is `entry_addr` (Multiboot 2: the entry address tag).
//! * Otherwise the file must be an ELF32 or ELF64 executable: its PT_LOAD
//!   segments go to their physical addresses, bss zeroed, and the entry is
//!   `e_entry` translated to its physical address (a Multiboot 2 entry
//!   address tag overrides it). Segments must not overlap each other.
//! * Everything loaded must lie below 4 GiB, inside one usable (type 1)
//!   entry of the machine's e820 map, and clear of [`RESERVED_LOW`] (the
//!   BIOS data area the ACPI setup writes, and the boot GDT/IDT); the
//!   other low boot structures of [`crate::layout`] (page tables, zero
//!   page, command line) are not used by multiboot boots, so kernels may
//!   load there (kvm-unit-tests' realmode test loads at 0x8000). The entry
//!   point must lie inside the loaded image.
//!
//! # What follows the kernel
//!
//! From the first 4 KiB boundary at or above max(kernel end, 1 MiB): each
//! module, 4 KiB aligned (whether or not the kernel asks), then the boot
//! information (Multiboot 1: the info structure, module list, memory map
//! and strings; Multiboot 2: the tag list), all inside one e820 RAM entry.
//!
//! * The kernel's command line is `"<kernel path> <-append>"` and each
//!   module's is its whole `-initrd` item (path and arguments), as QEMU and
//!   GRUB pass them (kvm-unit-tests reads `argv[0]` from it).
//! * The memory map is the machine's e820 map, the one Linux gets
//!   ([`crate::e820_map`]); `mem_lower` is the size of the e820 RAM entry
//!   at 0 and `mem_upper` that of the one at 1 MiB, in KiB.
//! * The boot loader name is `"hx86"`; no boot device is reported.
//!
//! # Entry state
//!
//! 32-bit flat protected mode with paging off, as both specifications
//! require, also for ELF64 images (whose entry must then be below 4 GiB):
//! CS = 0x10 (32-bit code, base 0, limit 4 GiB), DS = ES = FS = GS = SS =
//! 0x18 (data, base 0, limit 4 GiB) on the boot GDT at 0x500, CR0 = PE|ET,
//! EFLAGS = 0x2 (IF and VM clear), A20 enabled (hx86 has no A20 gate), EAX =
//! the boot magic (0x2BADB002, or 0x36D76289 for Multiboot 2), EBX = the
//! physical address of the boot information, ESP = 0x7000 (the spec leaves
//! it undefined), every other GPR 0.

mod image;
pub mod mb1;
pub mod mb2;
#[cfg(test)]
mod tests;

use vm_memory::GuestMemoryMmap;
use x86::{gpr, CpuState};

use crate::linux::{E820Entry, E820_RAM};
use crate::{boot, Error};

pub use image::LoadedKernel;

/// What a multiboot kernel must not overlap: the BIOS data area (0x400,
/// where the EBDA segment and base memory size go) up to the end of the
/// boot GDT/IDT.
pub const RESERVED_LOW: (u64, u64) = (0x400, crate::layout::BOOT_IDT_START + 8);

/// The loader name put in the boot information.
pub const BOOT_LOADER_NAME: &str = "hx86";

/// Which specification a header follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl Version {
    pub fn number(self) -> u8 {
        match self {
            Version::V1 => 1,
            Version::V2 => 2,
        }
    }
}

/// A multiboot header found in an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Header {
    V1(mb1::Header),
    V2(mb2::Header),
}

/// Finds the multiboot header of `image`: `Ok(None)` when it has none,
/// an error when a header is there but malformed (see the module docs).
pub fn probe(image: &[u8]) -> Result<Option<Header>, Error> {
    match mb1::find(image)? {
        Some(h) => Ok(Some(Header::V1(h))),
        None => Ok(mb2::find(image)?.map(Header::V2)),
    }
}

/// Which multiboot version `image` declares (also when its header is
/// malformed, so that loading reports why), for format detection.
pub fn detect_version(image: &[u8]) -> Option<Version> {
    if !matches!(mb1::find(image), Ok(None)) {
        Some(Version::V1)
    } else if !matches!(mb2::find(image), Ok(None)) {
        Some(Version::V2)
    } else {
        None
    }
}

/// One boot module: its contents and its command line.
#[derive(Clone, Copy, Debug)]
pub struct Module<'a> {
    pub data: &'a [u8],
    pub cmdline: &'a str,
}

/// One item of a `-initrd` module list: the file to load and the module's
/// command line (the whole item, path included, as QEMU passes it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleSpec {
    pub path: String,
    pub cmdline: String,
}

/// Parses QEMU's multiboot `-initrd` syntax: `"file1 arg1 arg2,file2"`,
/// comma-separated modules, each a path followed (after a space) by its
/// arguments; `,,` stands for a literal comma.
pub fn parse_module_list(spec: &str) -> Result<Vec<ModuleSpec>, Error> {
    let mut items = Vec::new();
    let mut cur = String::new();
    let mut chars = spec.chars().peekable();
    while let Some(c) = chars.next() {
        if c != ',' {
            cur.push(c);
        } else if chars.peek() == Some(&',') {
            chars.next();
            cur.push(',');
        } else {
            items.push(std::mem::take(&mut cur));
        }
    }
    items.push(cur);
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let path = item.split(' ').next().unwrap_or("").to_string();
            if path.is_empty() {
                return Err(Error::Multiboot(format!(
                    "module {} of -initrd '{spec}' has no file name",
                    i + 1
                )));
            }
            Ok(ModuleSpec {
                path,
                cmdline: item,
            })
        })
        .collect()
}

/// What [`load_multiboot`] needs besides the kernel image.
#[derive(Clone, Copy, Debug)]
pub struct MultibootOptions<'a> {
    /// The kernel's command line as the kernel sees it (the caller builds
    /// `"<path> <append>"`, see the module docs).
    pub cmdline: &'a str,
    pub modules: &'a [Module<'a>],
    pub ram_size: u64,
    /// The machine's memory map.
    pub e820: &'a [E820Entry],
    /// The ACPI RSDP (revision 2, 36 bytes) for the Multiboot 2 ACPI tags.
    pub rsdp: Option<&'a [u8]>,
}

/// A loaded multiboot kernel: its entry state and where things went.
#[derive(Clone, Debug)]
pub struct MultibootBoot {
    pub version: Version,
    pub state: CpuState,
    pub kernel: LoadedKernel,
    /// Address of the boot information (EBX).
    pub info_addr: u64,
    /// Each module's (start, end).
    pub modules: Vec<(u64, u64)>,
}

/// Loads a multiboot kernel with its modules and boot information and
/// returns its entry state (see the module docs).
pub fn load_multiboot(
    mem: &GuestMemoryMmap,
    image: &[u8],
    opts: &MultibootOptions,
) -> Result<MultibootBoot, Error> {
    let header = probe(image)?.ok_or_else(|| {
        Error::Multiboot("no multiboot header in the first 8 KiB (v1) or 32 KiB (v2)".into())
    })?;
    if opts.cmdline.as_bytes().contains(&0) || opts.modules.iter().any(|m| m.cmdline.contains('\0'))
    {
        return Err(Error::CmdlineNul);
    }
    let (version, magic, kernel, info) = match &header {
        Header::V1(h) => {
            let k = image::load(mem, image, &h.load_spec(), opts)?;
            let area = Area::after(&k, opts)?;
            let (info, area) = mb1::write_info(mem, h, area, opts)?;
            (Version::V1, mb1::BOOT_MAGIC, k, (info, area))
        }
        Header::V2(h) => {
            let k = image::load(mem, image, &h.load_spec(), opts).map_err(|e| match e {
                Error::Multiboot(m) => Error::Multiboot2(m),
                e => e,
            })?;
            let area = Area::after(&k, opts)?;
            let (info, area) = mb2::write_info(mem, h, area, opts)?;
            (Version::V2, mb2::BOOT_MAGIC, k, (info, area))
        }
    };
    let (info_addr, area) = info;
    boot::write_gdt_idt(mem, false)?;
    let mut state = boot::flat_entry_state(false, 0, kernel.entry);
    state.gpr[gpr::RAX] = magic.into();
    state.gpr[gpr::RBX] = info_addr;
    Ok(MultibootBoot {
        version,
        state,
        kernel,
        info_addr,
        modules: area.modules,
    })
}

/// The offsets below `limit` (and inside `image`), multiples of `align`,
/// where the little-endian `magic` stands: where a header may start.
pub(crate) fn magic_offsets(
    image: &[u8],
    magic: u32,
    align: usize,
    limit: usize,
) -> impl Iterator<Item = usize> + '_ {
    (0..image.len().min(limit))
        .step_by(align)
        .filter(move |&o| image.get(o..o + 4) == Some(&magic.to_le_bytes()[..]))
}

/// mem_lower and mem_upper (KiB) from the e820 map: the RAM entry at 0 and
/// the one at 1 MiB.
pub fn mem_lower_upper(e820: &[E820Entry]) -> (u32, u32) {
    let kib = |at: u64| {
        e820.iter()
            .find(|e| e.kind == E820_RAM && e.addr == at)
            .map_or(0, |e| (e.size >> 10).min(u32::MAX.into()) as u32)
    };
    (kib(0), kib(crate::layout::HIGH_RAM_START))
}

/// The e820 RAM entry holding all of [start, end), if one does.
pub(crate) fn ram_entry(e820: &[E820Entry], start: u64, end: u64) -> Option<&E820Entry> {
    e820.iter()
        .find(|e| e.kind == E820_RAM && start >= e.addr && end <= e.addr.saturating_add(e.size))
}

const PAGE: u64 = 0x1000;

/// The memory after the kernel: modules, then the boot information, built
/// in one buffer and written at once.
pub(crate) struct Area {
    base: u64,
    buf: Vec<u8>,
    /// (start, end) of each module.
    pub modules: Vec<(u64, u64)>,
    limit: u64,
}

impl Area {
    /// Places the modules after the kernel (4 KiB aligned).
    fn after(kernel: &LoadedKernel, opts: &MultibootOptions) -> Result<Area, Error> {
        let base = kernel
            .end
            .max(crate::layout::HIGH_RAM_START)
            .next_multiple_of(PAGE);
        let limit = ram_entry(opts.e820, base, base)
            .map_or(base, |e| e.addr + e.size)
            .min(crate::layout::FOUR_GIB);
        let mut a = Area {
            base,
            buf: Vec::new(),
            modules: Vec::new(),
            limit,
        };
        for m in opts.modules {
            a.align(PAGE);
            let start = a.push(m.data)?;
            a.modules.push((start, start + m.data.len() as u64));
        }
        a.align(PAGE);
        Ok(a)
    }

    /// The address the next byte goes to.
    pub fn cursor(&self) -> u64 {
        self.base + self.buf.len() as u64
    }

    pub fn align(&mut self, to: u64) {
        let n = self.cursor().next_multiple_of(to) - self.cursor();
        self.buf.resize(self.buf.len() + n as usize, 0);
    }

    /// Appends `data`; returns its address.
    pub fn push(&mut self, data: &[u8]) -> Result<u64, Error> {
        let at = self.cursor();
        if at + data.len() as u64 > self.limit {
            return Err(Error::Multiboot(format!(
                "the modules and boot information need {:#x} bytes from {:#x}, but the RAM above \
                 the kernel ends at {:#x} (use more -m or smaller modules)",
                self.buf.len() + data.len(),
                self.base,
                self.limit
            )));
        }
        self.buf.extend_from_slice(data);
        Ok(at)
    }

    /// Appends a NUL-terminated string; returns its address.
    pub fn push_str(&mut self, s: &str) -> Result<u64, Error> {
        let at = self.push(s.as_bytes())?;
        self.push(&[0])?;
        Ok(at)
    }

    /// Overwrites bytes already pushed at guest address `at`.
    pub fn patch(&mut self, at: u64, data: &[u8]) {
        let off = (at - self.base) as usize;
        self.buf[off..off + data.len()].copy_from_slice(data);
    }

    /// Writes the whole area to guest memory.
    pub fn write(&self, mem: &GuestMemoryMmap) -> Result<(), Error> {
        boot::write_bytes(mem, self.base, &self.buf)
    }
}
