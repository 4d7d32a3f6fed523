//! A small, fully validating reader for ELF32/ELF64 executables (x86 only).
//! Only what loading needs: the header and the PT_LOAD program headers.

use crate::Error;

pub const EM_386: u16 = 3;
pub const EM_X86_64: u16 = 62;
const ET_EXEC: u16 = 2;
const PT_LOAD: u32 = 1;
const ELFCLASS32: u8 = 1;
const ELFCLASS64: u8 = 2;

/// Whether `image` starts with the ELF magic.
pub fn is_elf(image: &[u8]) -> bool {
    image.starts_with(b"\x7fELF")
}

/// The ELF class byte (1 = 32-bit, 2 = 64-bit), if the file has one.
pub fn class(image: &[u8]) -> Option<u8> {
    image.get(4).copied()
}

/// One PT_LOAD segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Index of the program header.
    pub index: usize,
    pub offset: u64,
    pub vaddr: u64,
    pub paddr: u64,
    pub filesz: u64,
    pub memsz: u64,
}

/// A parsed, validated ELF executable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Elf {
    pub is64: bool,
    pub entry: u64,
    /// PT_LOAD segments with non-zero memory size, in file order.
    pub segments: Vec<Segment>,
}

impl Elf {
    /// The physical address of the entry point: e_entry translated through
    /// the PT_LOAD segment whose virtual range holds it (e_entry itself if
    /// none does).
    pub fn entry_paddr(&self) -> u64 {
        self.segments
            .iter()
            .find(|s| self.entry >= s.vaddr && self.entry - s.vaddr < s.memsz)
            .map_or(self.entry, |s| self.entry - s.vaddr + s.paddr)
    }
}

fn bad(msg: impl Into<String>) -> Error {
    Error::Elf(msg.into())
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}
fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap_or([0; 4]))
}
fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap_or([0; 8]))
}

/// Parses and validates an ELF executable for x86 (EM_386 in ELF32,
/// EM_X86_64 in ELF64). Offsets and sizes are checked against the file with
/// overflow-checked arithmetic before anything is read.
pub fn parse(image: &[u8]) -> Result<Elf, Error> {
    if !is_elf(image) {
        return Err(bad("missing the ELF magic"));
    }
    let is64 = match class(image) {
        Some(ELFCLASS32) => false,
        Some(ELFCLASS64) => true,
        Some(c) => return Err(bad(format!("unknown ELF class {c}"))),
        None => return Err(bad("file ends inside the ELF identification")),
    };
    let ehsize = if is64 { 64 } else { 52 };
    if image.len() < ehsize {
        return Err(bad(format!(
            "file is {} bytes, shorter than the {ehsize}-byte ELF header",
            image.len()
        )));
    }
    if image[5] != 1 {
        return Err(bad(format!(
            "data encoding {} is not little-endian",
            image[5]
        )));
    }
    if image[6] != 1 || u32_at(image, 20) != 1 {
        return Err(bad("unknown ELF version"));
    }
    let e_type = u16_at(image, 16);
    if e_type != ET_EXEC {
        let what = match e_type {
            1 => "a relocatable object (ET_REL)",
            3 => "a shared object or PIE (ET_DYN)",
            4 => "a core dump (ET_CORE)",
            _ => "not an executable",
        };
        return Err(bad(format!(
            "ELF type {e_type} is {what}; only ET_EXEC kernels can be loaded"
        )));
    }
    let machine = u16_at(image, 18);
    let want = if is64 { EM_X86_64 } else { EM_386 };
    if machine != want {
        return Err(bad(format!(
            "machine {machine} is not {} for an ELF{}",
            if is64 { "x86-64 (62)" } else { "i386 (3)" },
            if is64 { 64 } else { 32 }
        )));
    }
    let (entry, phoff, phentsize, phnum) = if is64 {
        (
            u64_at(image, 24),
            u64_at(image, 32),
            u16_at(image, 54),
            u16_at(image, 56),
        )
    } else {
        (
            u32_at(image, 24) as u64,
            u32_at(image, 28) as u64,
            u16_at(image, 42),
            u16_at(image, 44),
        )
    };
    let min_phent: u16 = if is64 { 56 } else { 32 };
    if phnum == 0 {
        return Err(bad("no program headers"));
    }
    if phnum == 0xffff {
        return Err(bad("extended program header numbering is not supported"));
    }
    if phentsize < min_phent {
        return Err(bad(format!(
            "program header size {phentsize} is smaller than {min_phent}"
        )));
    }
    let file_len = image.len() as u64;
    let mut segments = Vec::new();
    for index in 0..phnum as usize {
        let size = phentsize as u64;
        let offset = (index as u64)
            .checked_mul(size)
            .and_then(|o| o.checked_add(phoff));
        let ph = offset
            .and_then(|o| Some((o, o.checked_add(size)?)))
            .filter(|&(_, end)| end <= file_len)
            .map(|(o, _)| &image[o as usize..(o + size) as usize]);
        let Some(ph) = ph else {
            return Err(Error::ElfPhdrOutsideFile {
                index,
                offset: phoff.wrapping_add((index as u64).wrapping_mul(size)),
                size,
                file_len,
            });
        };
        if u32_at(ph, 0) != PT_LOAD {
            continue;
        }
        let seg = if is64 {
            Segment {
                index,
                offset: u64_at(ph, 8),
                vaddr: u64_at(ph, 16),
                paddr: u64_at(ph, 24),
                filesz: u64_at(ph, 32),
                memsz: u64_at(ph, 40),
            }
        } else {
            Segment {
                index,
                offset: u32_at(ph, 4) as u64,
                vaddr: u32_at(ph, 8) as u64,
                paddr: u32_at(ph, 12) as u64,
                filesz: u32_at(ph, 16) as u64,
                memsz: u32_at(ph, 20) as u64,
            }
        };
        if seg.filesz > seg.memsz {
            return Err(Error::ElfFileszTooLarge {
                index,
                filesz: seg.filesz,
                memsz: seg.memsz,
            });
        }
        if seg
            .offset
            .checked_add(seg.filesz)
            .is_none_or(|e| e > file_len)
        {
            return Err(Error::ElfSegmentOutsideFile {
                index,
                offset: seg.offset,
                filesz: seg.filesz,
                file_len,
            });
        }
        if seg.memsz > 0 {
            segments.push(seg);
        }
    }
    if segments.is_empty() {
        return Err(bad("no loadable (PT_LOAD) segments"));
    }
    Ok(Elf {
        is64,
        entry,
        segments,
    })
}

/// Builders of synthetic ELF images for the tests of this crate.
#[cfg(test)]
pub mod testimg {
    /// A PT_LOAD segment description: (paddr, data, memsz).
    pub type Seg<'a> = (u64, &'a [u8], u64);

    /// Builds a little-endian x86 ELF executable with the given segments
    /// (vaddr = paddr) and entry point.
    pub fn build(is64: bool, entry: u64, segs: &[Seg]) -> Vec<u8> {
        let (ehsize, phentsize) = if is64 { (64usize, 56usize) } else { (52, 32) };
        let mut f = vec![0u8; ehsize + phentsize * segs.len()];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = if is64 { 2 } else { 1 };
        f[5] = 1;
        f[6] = 1;
        f[16..18].copy_from_slice(&2u16.to_le_bytes());
        f[18..20].copy_from_slice(&(if is64 { 62u16 } else { 3 }).to_le_bytes());
        f[20..24].copy_from_slice(&1u32.to_le_bytes());
        let mut data_off = f.len();
        let mut phdrs = Vec::new();
        for &(paddr, data, memsz) in segs {
            phdrs.push((data_off as u64, paddr, data.len() as u64, memsz));
            data_off += data.len();
        }
        if is64 {
            f[24..32].copy_from_slice(&entry.to_le_bytes());
            f[32..40].copy_from_slice(&64u64.to_le_bytes());
            f[52..54].copy_from_slice(&64u16.to_le_bytes());
            f[54..56].copy_from_slice(&56u16.to_le_bytes());
            f[56..58].copy_from_slice(&(segs.len() as u16).to_le_bytes());
        } else {
            f[24..28].copy_from_slice(&(entry as u32).to_le_bytes());
            f[28..32].copy_from_slice(&52u32.to_le_bytes());
            f[40..42].copy_from_slice(&52u16.to_le_bytes());
            f[42..44].copy_from_slice(&32u16.to_le_bytes());
            f[44..46].copy_from_slice(&(segs.len() as u16).to_le_bytes());
        }
        for (i, &(off, paddr, filesz, memsz)) in phdrs.iter().enumerate() {
            let p = ehsize + i * phentsize;
            f[p..p + 4].copy_from_slice(&1u32.to_le_bytes());
            if is64 {
                f[p + 8..p + 16].copy_from_slice(&off.to_le_bytes());
                f[p + 16..p + 24].copy_from_slice(&paddr.to_le_bytes());
                f[p + 24..p + 32].copy_from_slice(&paddr.to_le_bytes());
                f[p + 32..p + 40].copy_from_slice(&filesz.to_le_bytes());
                f[p + 40..p + 48].copy_from_slice(&memsz.to_le_bytes());
            } else {
                f[p + 4..p + 8].copy_from_slice(&(off as u32).to_le_bytes());
                f[p + 8..p + 12].copy_from_slice(&(paddr as u32).to_le_bytes());
                f[p + 12..p + 16].copy_from_slice(&(paddr as u32).to_le_bytes());
                f[p + 16..p + 20].copy_from_slice(&(filesz as u32).to_le_bytes());
                f[p + 20..p + 24].copy_from_slice(&(memsz as u32).to_le_bytes());
            }
        }
        for &(_, data, _) in segs {
            f.extend_from_slice(data);
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_classes() {
        for is64 in [false, true] {
            let img = testimg::build(is64, 0x100000, &[(0x100000, b"\x90\xf4", 0x2000)]);
            let elf = parse(&img).unwrap();
            assert_eq!(elf.is64, is64);
            assert_eq!(elf.entry, 0x100000);
            assert_eq!(elf.segments.len(), 1);
            assert_eq!(elf.segments[0].filesz, 2);
            assert_eq!(elf.segments[0].memsz, 0x2000);
        }
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let img = testimg::build(true, 0x100000, &[(0x100000, &[0x90; 40], 40)]);
        for len in 0..img.len() {
            assert!(parse(&img[..len]).is_err(), "len {len}");
        }
    }

    #[test]
    fn rejects_bad_fields() {
        let good = testimg::build(false, 0x100000, &[(0x100000, b"\xf4", 1)]);
        let mut m = good.clone();
        m[18] = 62; // EM_X86_64 in an ELF32
        assert!(parse(&m).unwrap_err().to_string().contains("machine 62"));
        let mut t = good.clone();
        t[16] = 3;
        assert!(parse(&t).unwrap_err().to_string().contains("ET_DYN"));
        let mut c = good.clone();
        c[4] = 9;
        assert!(parse(&c).is_err());
        let mut p = good.clone();
        p[28] = 0xf0; // phoff past the end
        let e = parse(&p).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("ELF program header 0 lies outside"),
            "{e}"
        );
        let mut s = good.clone();
        s[52 + 16] = 0x10; // filesz 0x10 > memsz 1
        assert!(matches!(parse(&s), Err(Error::ElfFileszTooLarge { .. })));
        let mut o = good.clone();
        o[52 + 4..52 + 8].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        assert!(matches!(
            parse(&o),
            Err(Error::ElfSegmentOutsideFile { .. })
        ));
    }
}
