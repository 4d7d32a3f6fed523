//! The firmware crate's error type. Messages are shown to the user as they are.

use thiserror::Error;

/// Why guest memory could not be built or a guest could not be loaded.
#[derive(Debug, Error)]
pub enum Error {
    #[error("guest RAM of {size} bytes is too small: at least 1 MiB is needed")]
    RamTooSmall { size: u64 },
    #[error("guest RAM of {size} bytes is too large: at most {max} bytes can be mapped")]
    RamTooLarge { size: u64, max: u64 },
    #[error("cannot map {size} bytes of guest memory at {start:#x}: {reason}")]
    MapFailed {
        start: u64,
        size: u64,
        reason: String,
    },
    #[error(
        "BIOS image is {size} bytes: it must be a non-zero multiple of 64 KiB and at most 16 MiB"
    )]
    BiosSize { size: u64 },
    #[error("cannot write {len:#x} bytes of guest memory at {addr:#x}: {reason}")]
    GuestWrite { addr: u64, len: u64, reason: String },

    #[error("{what} is not yet supported")]
    Unsupported { what: String },
    #[error("not an ELF, bzImage or multiboot kernel")]
    NotAKernel,

    #[error("invalid ELF kernel: {0}")]
    Elf(String),
    #[error("ELF program header {index} lies outside the file (offset {offset:#x} + {size:#x}, file is {file_len:#x} bytes)")]
    ElfPhdrOutsideFile {
        index: usize,
        offset: u64,
        size: u64,
        file_len: u64,
    },
    #[error("ELF segment {index} lies outside the file (offset {offset:#x} + {filesz:#x}, file is {file_len:#x} bytes)")]
    ElfSegmentOutsideFile {
        index: usize,
        offset: u64,
        filesz: u64,
        file_len: u64,
    },
    #[error(
        "ELF segment {index} has a file size {filesz:#x} larger than its memory size {memsz:#x}"
    )]
    ElfFileszTooLarge {
        index: usize,
        filesz: u64,
        memsz: u64,
    },
    #[error("ELF segment {index} at {start:#x}..{end:#x} is not inside guest RAM ({ram_size:#x} bytes, see the memory layout)")]
    SegmentOutsideRam {
        index: usize,
        start: u64,
        end: u128,
        ram_size: u64,
    },
    #[error("ELF segment {index} at {start:#x}..{end:#x} overlaps {what}")]
    SegmentOverlapsBoot {
        index: usize,
        start: u64,
        end: u64,
        what: &'static str,
    },

    #[error("the kernel command line is {len} bytes: at most {max} fit")]
    CmdlineTooLong { len: usize, max: usize },
    #[error("the kernel command line contains a NUL byte")]
    CmdlineNul,

    #[error("invalid multiboot kernel: {0}")]
    Multiboot(String),
    #[error("invalid Multiboot 2 kernel: {0}")]
    Multiboot2(String),

    #[error("invalid Linux kernel: {0}")]
    Linux(String),
    #[error("the kernel needs {need:#x} bytes at {start:#x} but guest RAM ends at {ram_end:#x}")]
    KernelTooBig { start: u64, need: u64, ram_end: u64 },
    #[error("the initrd of {size} bytes does not fit in guest RAM below {limit:#x} (above the kernel, which ends at {kernel_end:#x})")]
    InitrdTooBig {
        size: u64,
        limit: u64,
        kernel_end: u64,
    },
    #[error("too many e820 entries: {count} (at most {max})")]
    TooManyE820Entries { count: usize, max: usize },

    #[error("invalid compute ROM parameters: {0}")]
    ComputeConfig(String),
    #[error("cannot assemble the {name} ROM: {reason}")]
    RomBuild { name: &'static str, reason: String },

    #[error("invalid ACPI configuration: {0}")]
    Acpi(String),
    #[error(
        "the ACPI tables need {need:#x} bytes but only {start:#x}..{end:#x} is reserved for them"
    )]
    AcpiTablesTooBig { start: u64, end: u64, need: u64 },
}

impl Error {
    pub(crate) fn write(addr: u64, len: usize, e: impl std::fmt::Display) -> Self {
        Error::GuestWrite {
            addr,
            len: len as u64,
            reason: e.to_string(),
        }
    }
}
