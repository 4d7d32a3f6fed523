//! `-kernel` images: format detection and loading of ELF executables.
//!
//! # Formats
//!
//! [`detect`] recognises, in this order: a Linux bzImage (`"HdrS"` at
//! 0x202), a multiboot kernel (a Multiboot 1 or 2 header, also a malformed
//! one, see [`crate::multiboot`]; checked before ELF because multiboot
//! kernels are often ELF files that expect the multiboot entry state), then
//! ELF32 and ELF64. [`load_kernel`] loads ELF executables and refuses the
//! others with [`Error::Unsupported`] or [`Error::NotAKernel`] (the machine
//! hands bzImages to [`crate::linux`] and multiboot kernels to
//! [`crate::multiboot`]).
//!
//! # ELF loading
//!
//! Every PT_LOAD segment is copied to its physical address (`p_paddr`) and
//! its bss (`p_memsz - p_filesz`) zeroed. The file must be a little-endian
//! `ET_EXEC` for EM_386 (ELF32) or EM_X86_64 (ELF64); each segment must lie
//! inside guest RAM (see [`crate::layout`]) and must not overlap the boot
//! structures (0x500..0x548, 0x1000..0x8000, 0x9000..0xF000,
//! 0x20000..0x30000).
//!
//! # Entry state of an ELF32 kernel
//!
//! 32-bit flat protected mode, paging off, interrupts off (RFLAGS = 0x2):
//! * GDT at 0x500: 0x08 64-bit code, 0x10 32-bit code, 0x18 data,
//!   0x20 32-bit code, all base 0 limit 4 GiB; IDT at 0x540, limit 0.
//! * CS = 0x10, DS = ES = SS = FS = GS = 0x18; CR0 = PE|ET.
//! * EIP = e_entry (translated to its physical address through the PT_LOAD
//!   segment holding it when that segment's p_vaddr != p_paddr).
//! * ESP = 0x7000 (top of the boot stack at 0x1000..0x7000).
//! * EDI = physical address of the NUL-terminated command line (0x20000),
//!   or 0 when the command line is empty.
//! * ESI = RAM size in bytes, clamped to 0xFFFF_FFFF.
//! * Every other GPR is 0.
//!
//! # Entry state of an ELF64 kernel
//!
//! 64-bit long mode, interrupts off, with the same GDT and registers but:
//! * CS = 0x10 is the 64-bit code segment (L=1).
//! * CR0 = PE|ET|PG, CR4 = PAE, EFER = LME|LMA, CR3 = 0x9000: a PML4 at
//!   0x9000, PDPT at 0xA000 and page directories at 0xB000..0xF000
//!   identity-mapping [0, 4 GiB) with 2 MiB pages (RAM above 4 GiB is not
//!   mapped).
//! * RIP = e_entry (translated as for ELF32); it must be below 4 GiB.
//! * RSP = 0x7000, RDI = command line address (or 0), RSI = RAM size.

use vm_memory::GuestMemoryMmap;
use x86::{gpr, CpuState};

use crate::boot;
use crate::elf;
use crate::layout::{self, FOUR_GIB};
use crate::Error;

/// The kind of a kernel image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelFormat {
    Elf32,
    Elf64,
    /// A Linux bzImage; `version` is the boot protocol version (0x020F = 2.15).
    BzImage {
        version: u16,
    },
    /// A multiboot kernel (`version` 1 or 2; see [`crate::multiboot`]).
    Multiboot {
        version: u8,
    },
    Unknown,
}

impl KernelFormat {
    /// What the file is, for messages.
    pub fn describe(&self) -> String {
        match self {
            KernelFormat::Elf32 => "ELF32 executable".into(),
            KernelFormat::Elf64 => "ELF64 executable".into(),
            KernelFormat::BzImage { version } => format!(
                "Linux bzImage (boot protocol {}.{:02})",
                version >> 8,
                version & 0xff
            ),
            KernelFormat::Multiboot { version: 1 } => "multiboot kernel".into(),
            KernelFormat::Multiboot { version } => format!("Multiboot {version} kernel"),
            KernelFormat::Unknown => "unknown file".into(),
        }
    }
}

/// Offset of the "HdrS" signature of the Linux setup header.
const HDRS_OFFSET: usize = 0x202;

/// Detects the format of a kernel image (see the module docs for the order).
pub fn detect(image: &[u8]) -> KernelFormat {
    if image.get(HDRS_OFFSET..HDRS_OFFSET + 4) == Some(b"HdrS") {
        let version = image
            .get(0x206..0x208)
            .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]));
        return KernelFormat::BzImage { version };
    }
    if let Some(v) = crate::multiboot::detect_version(image) {
        return KernelFormat::Multiboot {
            version: v.number(),
        };
    }
    if elf::is_elf(image) {
        return match elf::class(image) {
            Some(2) => KernelFormat::Elf64,
            _ => KernelFormat::Elf32,
        };
    }
    KernelFormat::Unknown
}

/// Loads every PT_LOAD segment of a parsed ELF into guest memory, after
/// checking them all against RAM and the boot structures.
pub(crate) fn load_elf_segments(
    mem: &GuestMemoryMmap,
    image: &[u8],
    elf: &elf::Elf,
    ram_size: u64,
) -> Result<(), Error> {
    for s in &elf.segments {
        let end = s.paddr as u128 + s.memsz as u128;
        if !layout::is_ram(ram_size, s.paddr, s.memsz) {
            return Err(Error::SegmentOutsideRam {
                index: s.index,
                start: s.paddr,
                end,
                ram_size,
            });
        }
        let end = end as u64;
        if let Some(what) = layout::overlapping_boot_structure(s.paddr, end) {
            return Err(Error::SegmentOverlapsBoot {
                index: s.index,
                start: s.paddr,
                end,
                what,
            });
        }
    }
    for s in &elf.segments {
        // Bounds were checked by elf::parse.
        let data = &image[s.offset as usize..(s.offset + s.filesz) as usize];
        boot::write_bytes(mem, s.paddr, data)?;
        boot::zero(mem, s.paddr + s.filesz, s.memsz - s.filesz)?;
    }
    Ok(())
}

/// Loads a `-kernel` image and returns the vCPU entry state (documented in
/// the module docs). Only ELF32/ELF64 executables are loaded; a bzImage or
/// multiboot kernel is refused with [`Error::Unsupported`], anything else
/// with [`Error::NotAKernel`].
pub fn load_kernel(
    mem: &GuestMemoryMmap,
    image: &[u8],
    cmdline: &str,
    ram_size: u64,
) -> Result<CpuState, Error> {
    let format = detect(image);
    match format {
        KernelFormat::Elf32 | KernelFormat::Elf64 => {}
        KernelFormat::Unknown => return Err(Error::NotAKernel),
        other => {
            return Err(Error::Unsupported {
                what: format!("{} as -kernel", other.describe()),
            })
        }
    }
    let elf = elf::parse(image)?;
    let entry = elf.entry_paddr();
    if elf.is64 && entry >= FOUR_GIB {
        return Err(Error::Elf(format!(
            "entry point {entry:#x} is above 4 GiB, outside the boot identity map"
        )));
    }
    boot::check_cmdline(cmdline, layout::CMDLINE_MAX_SIZE)?;
    load_elf_segments(mem, image, &elf, ram_size)?;

    boot::write_gdt_idt(mem, elf.is64)?;
    let cr3 = if elf.is64 {
        boot::write_identity_page_tables(mem)?
    } else {
        0
    };
    let cmdline_addr = boot::write_cmdline(mem, cmdline)?;

    let mut state = boot::flat_entry_state(elf.is64, cr3, entry);
    state.gpr[gpr::RDI] = if cmdline.is_empty() { 0 } else { cmdline_addr };
    state.gpr[gpr::RSI] = if elf.is64 {
        ram_size
    } else {
        ram_size.min(u32::MAX as u64)
    };
    Ok(state)
}

#[cfg(test)]
mod tests;
