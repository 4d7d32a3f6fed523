//! The Linux x86 boot protocol (Documentation/arch/x86/boot.rst): bzImage
//! and raw vmlinux (ELF64), initrd, command line, zero page and e820.
//!
//! # Placement
//!
//! * Zero page (`struct boot_params`) at 0x7000, command line at 0x20000,
//!   GDT at 0x500, page tables at 0x9000..0xF000 (see [`crate::layout`]).
//! * bzImage: the protected-mode kernel (the file after its setup sectors)
//!   is loaded at `pref_address` (protocol >= 2.10, else 1 MiB), rounded up
//!   to `kernel_alignment` for relocatable kernels; guest RAM must hold
//!   [load, load + max(init_size, kernel size)).
//! * vmlinux: every PT_LOAD segment at its physical address.
//! * initrd: at the highest 4 KiB-aligned address whose end is at most
//!   min(initrd_addr_max + 1, end of RAM below 4 GiB) and that lies above
//!   the kernel (vmlinux: initrd_addr_max = 0x7FFF_FFFF).
//!
//! # Zero page
//!
//! The file's setup header (0x1F1 up to 0x202 + byte at 0x201) is copied,
//! then: type_of_loader = 0xFF, cmd_line_ptr/ext_cmd_line_ptr,
//! ramdisk_image/ramdisk_size and their ext_ halves, code32_start = load
//! address, setup_data = 0, the e820 table given by the caller, and
//! acpi_rsdp_addr (0x070; read by Linux before it scans for the RSDP) when
//! given. For a
//! vmlinux a minimal header is synthesised (boot_flag 0xAA55, "HdrS",
//! protocol 2.15, LOADED_HIGH).
//!
//! # Entry state
//!
//! * 64-bit (bzImage with XLF_KERNEL_64, or vmlinux): long mode with the
//!   boot GDT (CS = `__BOOT_CS` 0x10, 64-bit; DS = ES = SS = FS = GS =
//!   `__BOOT_DS` 0x18; flat), paging on with [0, 4 GiB) identity-mapped
//!   (2 MiB pages, CR3 = 0x9000), interrupts off, RIP = load address + 0x200
//!   (bzImage) or the ELF entry's physical address (vmlinux), RSI = 0x7000
//!   (zero page), RSP = 0x7000 (boot stack top), other GPRs 0.
//! * 32-bit (bzImage without XLF_KERNEL_64): flat 32-bit protected mode,
//!   paging off, interrupts off, same segments (CS 0x10 is 32-bit code),
//!   EIP = load address, ESI = 0x7000, EBP = EDI = EBX = 0.

mod e820;
mod setup;
#[cfg(test)]
mod tests;

pub use e820::{e820_map, E820Entry, E820_ACPI, E820_MAX_ENTRIES, E820_RAM, E820_RESERVED};
pub use setup::SetupHeader;

use vm_memory::GuestMemoryMmap;
use x86::{gpr, CpuState};

use crate::kernel::{detect, load_elf_segments, KernelFormat};
use crate::layout::{self, HIGH_RAM_START, ZERO_PAGE_START};
use crate::{boot, elf, Error};
use setup::*;

/// Zero-page offsets outside the setup header.
const ACPI_RSDP_ADDR: usize = 0x070;
const EXT_RAMDISK_IMAGE: usize = 0x0C0;
const EXT_RAMDISK_SIZE: usize = 0x0C4;
const EXT_CMD_LINE_PTR: usize = 0x0C8;
const E820_ENTRIES: usize = 0x1E8;
const E820_TABLE: usize = 0x2D0;
/// initrd_addr_max of a vmlinux (that of current x86-64 kernels).
const VMLINUX_INITRD_ADDR_MAX: u32 = 0x7FFF_FFFF;
/// Offset of the 64-bit entry point in the protected-mode kernel.
const STARTUP_64_OFFSET: u64 = 0x200;

struct ZeroPage([u8; 4096]);

impl ZeroPage {
    fn put(&mut self, off: usize, bytes: &[u8]) {
        self.0[off..off + bytes.len()].copy_from_slice(bytes);
    }
    fn put_u32(&mut self, off: usize, v: u32) {
        self.put(off, &v.to_le_bytes());
    }
}

/// What [`load_linux_with`] needs besides the kernel image.
#[derive(Clone, Copy, Debug, Default)]
pub struct LinuxBootOptions<'a> {
    pub initrd: Option<&'a [u8]>,
    pub cmdline: &'a str,
    pub ram_size: u64,
    /// The e820 map; `None` means [`e820_map`]`(ram_size)`.
    pub e820: Option<&'a [E820Entry]>,
    /// The ACPI RSDP address for `boot_params.acpi_rsdp_addr` (zero page
    /// offset 0x070), as returned by [`crate::acpi::write_acpi_tables`];
    /// `None` leaves it 0 (the kernel then scans the EBDA and 0xE0000).
    pub acpi_rsdp_addr: Option<u64>,
}

/// Loads a Linux kernel (bzImage, or a raw ELF64 vmlinux) with an optional
/// initrd and returns the entry state described in the module docs.
/// Same as [`load_linux_with`] without an ACPI RSDP address.
pub fn load_linux(
    mem: &GuestMemoryMmap,
    kernel: &[u8],
    initrd: Option<&[u8]>,
    cmdline: &str,
    ram_size: u64,
    e820: &[E820Entry],
) -> Result<CpuState, Error> {
    let opts = LinuxBootOptions {
        initrd,
        cmdline,
        ram_size,
        e820: Some(e820),
        acpi_rsdp_addr: None,
    };
    load_linux_with(mem, kernel, &opts)
}

/// Loads a Linux kernel (bzImage, or a raw ELF64 vmlinux) as `opts` say
/// and returns the entry state described in the module docs.
pub fn load_linux_with(
    mem: &GuestMemoryMmap,
    kernel: &[u8],
    opts: &LinuxBootOptions,
) -> Result<CpuState, Error> {
    let default_e820;
    let e820 = match opts.e820 {
        Some(e) => e,
        None => {
            default_e820 = e820_map(opts.ram_size);
            &default_e820
        }
    };
    let (initrd, cmdline, ram_size) = (opts.initrd, opts.cmdline, opts.ram_size);
    if e820.len() > E820_MAX_ENTRIES {
        return Err(Error::TooManyE820Entries {
            count: e820.len(),
            max: E820_MAX_ENTRIES,
        });
    }
    let mut zp = ZeroPage([0; 4096]);
    let (long, rip, kernel_end, initrd_max, cmdline_max) = match detect(kernel) {
        KernelFormat::BzImage { .. } => {
            let hdr = SetupHeader::parse(kernel)?;
            boot::check_cmdline(cmdline, hdr.cmdline_size as u64 + 1)?;
            let load = bzimage_load_address(&hdr);
            let payload = &kernel[hdr.setup_end()..];
            let need = (payload.len() as u64).max(hdr.init_size as u64);
            let ram_end = layout::ram_below_4g_end(ram_size);
            if load < HIGH_RAM_START || load.saturating_add(need) > ram_end {
                return Err(Error::KernelTooBig {
                    start: load,
                    need,
                    ram_end,
                });
            }
            boot::write_bytes(mem, load, payload)?;
            zp.put(SETUP_SECTS, &kernel[SETUP_SECTS..hdr.header_end]);
            zp.put_u32(CODE32_START, load as u32);
            if hdr.version >= 0x0209 {
                zp.put(SETUP_DATA, &[0; 8]);
            }
            let rip = if hdr.is_64bit() {
                load + STARTUP_64_OFFSET
            } else {
                load
            };
            (
                hdr.is_64bit(),
                rip,
                load + need,
                hdr.initrd_addr_max,
                hdr.cmdline_size as u64 + 1,
            )
        }
        KernelFormat::Elf64 => {
            let elf = elf::parse(kernel)?;
            boot::check_cmdline(cmdline, layout::CMDLINE_MAX_SIZE)?;
            load_elf_segments(mem, kernel, &elf, ram_size)?;
            let end = elf
                .segments
                .iter()
                .map(|s| s.paddr + s.memsz)
                .max()
                .unwrap_or(HIGH_RAM_START);
            let entry = elf.entry_paddr();
            if entry >= layout::FOUR_GIB {
                return Err(Error::Elf(format!(
                    "entry point {entry:#x} is above 4 GiB, outside the boot identity map"
                )));
            }
            zp.put(BOOT_FLAG, &0xAA55u16.to_le_bytes());
            zp.put(HEADER, b"HdrS");
            zp.put(VERSION, &0x020Fu16.to_le_bytes());
            zp.put(LOADFLAGS, &[LOADED_HIGH]);
            zp.put_u32(INITRD_ADDR_MAX, VMLINUX_INITRD_ADDR_MAX);
            zp.put_u32(CMDLINE_SIZE, (layout::CMDLINE_MAX_SIZE - 1) as u32);
            (
                true,
                entry,
                end,
                VMLINUX_INITRD_ADDR_MAX,
                layout::CMDLINE_MAX_SIZE,
            )
        }
        KernelFormat::Elf32 => {
            return Err(Error::Linux(
                "a 32-bit ELF cannot be booted with the Linux boot protocol \
                 (use the bzImage, or boot it as a plain ELF kernel)"
                    .into(),
            ))
        }
        KernelFormat::Multiboot { .. } => {
            return Err(Error::Unsupported {
                what: "multiboot kernel".into(),
            })
        }
        KernelFormat::Unknown => return Err(Error::NotAKernel),
    };

    boot::check_cmdline(cmdline, cmdline_max)?;
    let cmdline_addr = boot::write_cmdline(mem, cmdline)?;
    zp.put(TYPE_OF_LOADER, &[0xFF]);
    zp.put_u32(CMD_LINE_PTR, cmdline_addr as u32);
    zp.put_u32(EXT_CMD_LINE_PTR, (cmdline_addr >> 32) as u32);

    if let Some(rd) = initrd.filter(|rd| !rd.is_empty()) {
        let addr = place_initrd(rd.len() as u64, initrd_max, ram_size, kernel_end)?;
        boot::write_bytes(mem, addr, rd)?;
        let size = rd.len() as u64;
        zp.put_u32(RAMDISK_IMAGE, addr as u32);
        zp.put_u32(RAMDISK_SIZE, size as u32);
        zp.put_u32(EXT_RAMDISK_IMAGE, (addr >> 32) as u32);
        zp.put_u32(EXT_RAMDISK_SIZE, (size >> 32) as u32);
    }

    if let Some(rsdp) = opts.acpi_rsdp_addr {
        zp.put(ACPI_RSDP_ADDR, &rsdp.to_le_bytes());
    }
    zp.put(E820_ENTRIES, &[e820.len() as u8]);
    for (i, e) in e820.iter().enumerate() {
        zp.put(E820_TABLE + i * 20, &e.to_bytes());
    }
    boot::write_bytes(mem, ZERO_PAGE_START, &zp.0)?;

    boot::write_gdt_idt(mem, long)?;
    let cr3 = if long {
        boot::write_identity_page_tables(mem)?
    } else {
        0
    };
    let mut state = boot::flat_entry_state(long, cr3, rip);
    state.gpr[gpr::RSI] = ZERO_PAGE_START;
    Ok(state)
}

/// Where the protected-mode kernel of a bzImage goes (see module docs).
fn bzimage_load_address(hdr: &SetupHeader) -> u64 {
    let base = if hdr.version >= 0x020A && hdr.pref_address != 0 {
        hdr.pref_address
    } else {
        HIGH_RAM_START
    };
    if hdr.relocatable {
        let align = hdr.kernel_alignment as u64;
        base.checked_next_multiple_of(align).unwrap_or(u64::MAX)
    } else {
        base
    }
}

/// The initrd address: highest page-aligned address with the initrd
/// ending at or below min(initrd_addr_max + 1, RAM end below 4 GiB), and
/// starting at or above `kernel_end`.
fn place_initrd(
    size: u64,
    initrd_addr_max: u32,
    ram_size: u64,
    kernel_end: u64,
) -> Result<u64, Error> {
    let limit = (initrd_addr_max as u64 + 1).min(layout::ram_below_4g_end(ram_size));
    limit
        .checked_sub(size)
        .map(|a| a & !0xFFF)
        .filter(|&a| a >= kernel_end.next_multiple_of(0x1000))
        .ok_or(Error::InitrdTooBig {
            size,
            limit,
            kernel_end,
        })
}
