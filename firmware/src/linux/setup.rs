//! The bzImage setup header (Documentation/arch/x86/boot.rst), read and
//! validated from the file.

use crate::Error;

/// Offsets in the file / zero page.
pub const SETUP_SECTS: usize = 0x1F1;
pub const BOOT_FLAG: usize = 0x1FE;
pub const JUMP_END: usize = 0x201;
pub const HEADER: usize = 0x202;
pub const VERSION: usize = 0x206;
pub const TYPE_OF_LOADER: usize = 0x210;
pub const LOADFLAGS: usize = 0x211;
pub const CODE32_START: usize = 0x214;
pub const RAMDISK_IMAGE: usize = 0x218;
pub const RAMDISK_SIZE: usize = 0x21C;
pub const CMD_LINE_PTR: usize = 0x228;
pub const INITRD_ADDR_MAX: usize = 0x22C;
pub const KERNEL_ALIGNMENT: usize = 0x230;
pub const RELOCATABLE_KERNEL: usize = 0x234;
pub const XLOADFLAGS: usize = 0x236;
pub const CMDLINE_SIZE: usize = 0x238;
pub const SETUP_DATA: usize = 0x250;
pub const PREF_ADDRESS: usize = 0x258;
pub const INIT_SIZE: usize = 0x260;
/// The setup header may extend at most to here in the zero page.
pub const HEADER_MAX_END: usize = 0x290;

/// loadflags: the protected-mode code is loaded at 0x100000 (bzImage).
pub const LOADED_HIGH: u8 = 1 << 0;
/// xloadflags: the kernel has the 64-bit entry point at offset 0x200.
pub const XLF_KERNEL_64: u16 = 1 << 0;

/// Oldest boot protocol accepted (cmdline_size appeared in 2.06).
pub const MIN_VERSION: u16 = 0x0206;

/// The fields of the setup header a loader needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetupHeader {
    pub version: u16,
    /// Number of 512-byte setup sectors (0 means 4).
    pub setup_sects: u8,
    pub loadflags: u8,
    pub code32_start: u32,
    pub initrd_addr_max: u32,
    pub kernel_alignment: u32,
    pub relocatable: bool,
    pub xloadflags: u16,
    /// Largest command line without its NUL.
    pub cmdline_size: u32,
    pub pref_address: u64,
    pub init_size: u32,
    /// End of the header in the file (0x202 + the byte at 0x201), capped.
    pub header_end: usize,
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u32_at(b, o) as u64 | (u32_at(b, o + 4) as u64) << 32
}

fn bad(msg: impl Into<String>) -> Error {
    Error::Linux(msg.into())
}

/// Formats a boot protocol version as "2.15".
pub fn version_str(v: u16) -> String {
    format!("{}.{:02}", v >> 8, v & 0xff)
}

impl SetupHeader {
    /// Reads and checks the setup header of a bzImage.
    pub fn parse(image: &[u8]) -> Result<Self, Error> {
        if image.get(HEADER..HEADER + 4) != Some(b"HdrS") {
            return Err(bad("no \"HdrS\" setup header signature at 0x202"));
        }
        if image.len() < 0x210 {
            return Err(bad(format!(
                "file is {} bytes, too short for a setup header",
                image.len()
            )));
        }
        let version = u16_at(image, VERSION);
        if version < MIN_VERSION {
            return Err(bad(format!(
                "boot protocol {} is older than 2.06, the oldest supported",
                version_str(version)
            )));
        }
        let header_end = HEADER + image[JUMP_END] as usize;
        if header_end < INIT_SIZE + 4 && version >= 0x020A {
            return Err(bad(format!(
                "setup header ends at {header_end:#x}, too early for boot protocol {}",
                version_str(version)
            )));
        }
        let header_end = header_end.min(HEADER_MAX_END);
        if image.len() < header_end.max(CMDLINE_SIZE + 4) {
            return Err(bad(format!(
                "file is {} bytes and ends inside the setup header",
                image.len()
            )));
        }
        if u16_at(image, BOOT_FLAG) != 0xAA55 {
            return Err(bad("missing the 0xAA55 boot flag at 0x1FE"));
        }
        let loadflags = image[LOADFLAGS];
        if loadflags & LOADED_HIGH == 0 {
            return Err(bad(
                "not a bzImage: loadflags lacks LOADED_HIGH (zImage kernels are not supported)",
            ));
        }
        let at_least = |v: u16, o: usize, w: usize| version >= v && o + w <= header_end;
        let hdr = SetupHeader {
            version,
            setup_sects: image[SETUP_SECTS],
            loadflags,
            code32_start: u32_at(image, CODE32_START),
            initrd_addr_max: u32_at(image, INITRD_ADDR_MAX),
            kernel_alignment: u32_at(image, KERNEL_ALIGNMENT),
            relocatable: image[RELOCATABLE_KERNEL] != 0,
            xloadflags: if at_least(0x020C, XLOADFLAGS, 2) {
                u16_at(image, XLOADFLAGS)
            } else {
                0
            },
            cmdline_size: u32_at(image, CMDLINE_SIZE),
            pref_address: if at_least(0x020A, PREF_ADDRESS, 8) {
                u64_at(image, PREF_ADDRESS)
            } else {
                0
            },
            init_size: if at_least(0x020A, INIT_SIZE, 4) {
                u32_at(image, INIT_SIZE)
            } else {
                0
            },
            header_end,
        };
        if hdr.relocatable
            && (!hdr.kernel_alignment.is_power_of_two() || hdr.kernel_alignment < 0x1000)
        {
            return Err(bad(format!(
                "relocatable kernel with an invalid kernel_alignment {:#x} \
                 (must be a power of two of at least 4 KiB)",
                hdr.kernel_alignment
            )));
        }
        let setup_end = hdr.setup_end();
        if image.len() <= setup_end {
            return Err(bad(format!(
                "file is {} bytes but its {} setup sectors end at {setup_end:#x}: \
                 no protected-mode kernel follows",
                image.len(),
                hdr.sectors()
            )));
        }
        Ok(hdr)
    }

    /// Setup sectors, with 0 meaning 4.
    pub fn sectors(&self) -> usize {
        if self.setup_sects == 0 {
            4
        } else {
            self.setup_sects as usize
        }
    }

    /// File offset of the protected-mode kernel.
    pub fn setup_end(&self) -> usize {
        (self.sectors() + 1) * 512
    }

    pub fn is_64bit(&self) -> bool {
        self.xloadflags & XLF_KERNEL_64 != 0
    }
}
