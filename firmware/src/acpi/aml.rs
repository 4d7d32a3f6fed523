//! A small encoder for AML (ACPI Machine Language, ACPI 6.5 chapter 20):
//! only the terms a static DSDT needs — names, scopes, devices, integers,
//! strings, packages, buffers and resource templates.
//!
//! Every function returns the encoded bytes of one term; bodies are built
//! bottom-up and wrapped by their enclosing term, which prefixes the
//! PkgLength.

use crate::Error;

pub const ZERO_OP: u8 = 0x00;
pub const ONE_OP: u8 = 0x01;
pub const NAME_OP: u8 = 0x08;
pub const BYTE_PREFIX: u8 = 0x0A;
pub const WORD_PREFIX: u8 = 0x0B;
pub const DWORD_PREFIX: u8 = 0x0C;
pub const STRING_PREFIX: u8 = 0x0D;
pub const QWORD_PREFIX: u8 = 0x0E;
pub const SCOPE_OP: u8 = 0x10;
pub const BUFFER_OP: u8 = 0x11;
pub const PACKAGE_OP: u8 = 0x12;
pub const EXT_OP_PREFIX: u8 = 0x5B;
pub const DEVICE_OP: u8 = 0x82;
pub const ONES_OP: u8 = 0xFF;
pub const ROOT_CHAR: u8 = b'\\';
pub const DUAL_NAME_PREFIX: u8 = 0x2E;
pub const MULTI_NAME_PREFIX: u8 = 0x2F;

/// Largest value a PkgLength can encode (28 bits).
const PKG_LENGTH_MAX: usize = (1 << 28) - 1;

fn err(msg: String) -> Error {
    Error::Acpi(msg)
}

/// The PkgLength of a term whose contents after the PkgLength are
/// `body_len` bytes: the encoded length counts the PkgLength bytes too.
pub fn pkg_length(body_len: usize) -> Result<Vec<u8>, Error> {
    // One byte holds 6 bits; n extra bytes hold 4 + 8n bits.
    if body_len + 1 < 1 << 6 {
        return Ok(vec![(body_len + 1) as u8]);
    }
    for extra in 1..=3usize {
        let total = body_len + 1 + extra;
        if total < 1 << (4 + 8 * extra) && total <= PKG_LENGTH_MAX {
            let mut v = vec![((extra as u8) << 6) | (total & 0xF) as u8];
            v.extend((0..extra).map(|i| (total >> (4 + 8 * i)) as u8));
            return Ok(v);
        }
    }
    Err(err(format!(
        "AML package of {body_len} bytes is too long for a PkgLength"
    )))
}

/// Wraps `body` as `op PkgLength body`.
fn with_pkg_length(op: &[u8], body: &[u8]) -> Result<Vec<u8>, Error> {
    let mut v = op.to_vec();
    v.extend(pkg_length(body.len())?);
    v.extend_from_slice(body);
    Ok(v)
}

/// One NameSeg: 1 to 4 characters, the first `A`-`Z` or `_`, the others
/// also `0`-`9`; padded with `_` to 4 bytes.
fn name_seg(seg: &str) -> Result<[u8; 4], Error> {
    let b = seg.as_bytes();
    let lead_ok = b
        .first()
        .is_some_and(|c| c.is_ascii_uppercase() || *c == b'_');
    let rest_ok = b
        .iter()
        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_');
    if b.len() > 4 || !lead_ok || !rest_ok {
        return Err(err(format!("invalid AML name segment {seg:?}")));
    }
    let mut s = [b'_'; 4];
    s[..b.len()].copy_from_slice(b);
    Ok(s)
}

/// A NameString: an optional leading `\` (root) and dot-separated segments,
/// e.g. `\_SB.PCI0`, `_HID`, `\_S5`.
pub fn name_string(path: &str) -> Result<Vec<u8>, Error> {
    let mut v = Vec::new();
    let rel = match path.strip_prefix('\\') {
        Some(rest) => {
            v.push(ROOT_CHAR);
            rest
        }
        None => path,
    };
    let segs = rel
        .split('.')
        .map(name_seg)
        .collect::<Result<Vec<_>, _>>()?;
    match segs.len() {
        1 => {}
        2 => v.push(DUAL_NAME_PREFIX),
        n @ 3..=255 => v.extend([MULTI_NAME_PREFIX, n as u8]),
        n => return Err(err(format!("AML name {path:?} has {n} segments"))),
    }
    v.extend(segs.iter().flatten());
    Ok(v)
}

/// The shortest encoding of an integer constant.
pub fn integer(v: u64) -> Vec<u8> {
    match v {
        0 => vec![ZERO_OP],
        1 => vec![ONE_OP],
        u64::MAX => vec![ONES_OP],
        _ if v <= 0xFF => vec![BYTE_PREFIX, v as u8],
        _ if v <= 0xFFFF => [&[WORD_PREFIX][..], &(v as u16).to_le_bytes()].concat(),
        _ if v <= 0xFFFF_FFFF => [&[DWORD_PREFIX][..], &(v as u32).to_le_bytes()].concat(),
        _ => [&[QWORD_PREFIX][..], &v.to_le_bytes()].concat(),
    }
}

/// A string constant (ASCII 0x01..=0x7F, NUL-terminated in AML).
pub fn string(s: &str) -> Result<Vec<u8>, Error> {
    if !s.bytes().all(|c| (0x01..=0x7F).contains(&c)) {
        return Err(err(format!(
            "AML string {s:?} is not 7-bit ASCII without NUL"
        )));
    }
    let mut v = vec![STRING_PREFIX];
    v.extend_from_slice(s.as_bytes());
    v.push(0);
    Ok(v)
}

/// The compressed EISA ID of `id` (e.g. `PNP0A03`): three letters of 5
/// bits and four hex digits, stored big-endian in an AML DWord.
pub fn eisa_id(id: &str) -> Result<u32, Error> {
    let b = id.as_bytes();
    let bad = || err(format!("invalid EISA ID {id:?}"));
    if b.len() != 7 || !b[..3].iter().all(u8::is_ascii_uppercase) {
        return Err(bad());
    }
    let product = u16::from_str_radix(&id[3..], 16).map_err(|_| bad())?;
    let letters = b[..3]
        .iter()
        .fold(0u32, |acc, &c| (acc << 5) | u32::from(c - 0x40));
    Ok(((letters << 16) | u32::from(product)).swap_bytes())
}

/// `Name(path, data)`, `data` being an encoded data object.
pub fn name(path: &str, data: &[u8]) -> Result<Vec<u8>, Error> {
    let mut v = vec![NAME_OP];
    v.extend(name_string(path)?);
    v.extend_from_slice(data);
    Ok(v)
}

/// `Package(n) { elements }`.
pub fn package(elements: &[Vec<u8>]) -> Result<Vec<u8>, Error> {
    let n = u8::try_from(elements.len())
        .map_err(|_| err(format!("AML package of {} elements", elements.len())))?;
    let mut body = vec![n];
    body.extend(elements.iter().flatten());
    with_pkg_length(&[PACKAGE_OP], &body)
}

/// `Buffer(len) { bytes }`.
pub fn buffer(bytes: &[u8]) -> Result<Vec<u8>, Error> {
    let mut body = integer(bytes.len() as u64);
    body.extend_from_slice(bytes);
    with_pkg_length(&[BUFFER_OP], &body)
}

/// `Scope(path) { body }`.
pub fn scope(path: &str, body: &[u8]) -> Result<Vec<u8>, Error> {
    let mut inner = name_string(path)?;
    inner.extend_from_slice(body);
    with_pkg_length(&[SCOPE_OP], &inner)
}

/// `Device(path) { body }`.
pub fn device(path: &str, body: &[u8]) -> Result<Vec<u8>, Error> {
    let mut inner = name_string(path)?;
    inner.extend_from_slice(body);
    with_pkg_length(&[EXT_OP_PREFIX, DEVICE_OP], &inner)
}

/// Resource descriptors (ACPI 6.5 section 6.4) for `_CRS` templates.
pub mod res {
    /// Address space descriptor general flags: producer, positive decode,
    /// fixed minimum and maximum.
    const PRODUCER_MIN_MAX_FIXED: u8 = 0b1100;
    /// Resource types of address space descriptors.
    const TYPE_MEMORY: u8 = 0;
    const TYPE_IO: u8 = 1;
    const TYPE_BUS: u8 = 2;
    /// I/O type-specific flags: ISA and non-ISA ranges (EntireRange).
    const IO_ENTIRE_RANGE: u8 = 0b11;
    /// Memory type-specific flags: read-write, non-cacheable.
    const MEM_RW_NONCACHEABLE: u8 = 0b1;

    fn word_space(kind: u8, type_flags: u8, min: u16, max: u16) -> Vec<u8> {
        let len = max.wrapping_sub(min).wrapping_add(1);
        let mut v = vec![0x88, 13, 0, kind, PRODUCER_MIN_MAX_FIXED, type_flags];
        for f in [0u16, min, max, 0, len] {
            v.extend(f.to_le_bytes());
        }
        v
    }

    /// `WordBusNumber(ResourceProducer, MinFixed, MaxFixed, PosDecode, 0,
    /// min, max, 0, max - min + 1)`.
    pub fn word_bus_number(min: u16, max: u16) -> Vec<u8> {
        word_space(TYPE_BUS, 0, min, max)
    }

    /// `WordIO(ResourceProducer, MinFixed, MaxFixed, PosDecode,
    /// EntireRange, 0, min, max, 0, max - min + 1)`.
    pub fn word_io(min: u16, max: u16) -> Vec<u8> {
        word_space(TYPE_IO, IO_ENTIRE_RANGE, min, max)
    }

    /// `DWordMemory(ResourceProducer, PosDecode, MinFixed, MaxFixed,
    /// NonCacheable, ReadWrite, 0, min, max, 0, max - min + 1)`.
    pub fn dword_memory(min: u32, max: u32) -> Vec<u8> {
        let len = max.wrapping_sub(min).wrapping_add(1);
        let mut v = vec![
            0x87,
            23,
            0,
            TYPE_MEMORY,
            PRODUCER_MIN_MAX_FIXED,
            MEM_RW_NONCACHEABLE,
        ];
        for f in [0u32, min, max, 0, len] {
            v.extend(f.to_le_bytes());
        }
        v
    }

    /// `IO(Decode16, min, max, align, len)`.
    pub fn io(min: u16, max: u16, align: u8, len: u8) -> Vec<u8> {
        let mut v = vec![0x47, 0x01];
        v.extend(min.to_le_bytes());
        v.extend(max.to_le_bytes());
        v.extend([align, len]);
        v
    }

    /// The descriptors followed by an End Tag (checksum 0: "treat as
    /// valid"), as the contents of a `ResourceTemplate()` buffer.
    pub fn template(descriptors: &[Vec<u8>]) -> Vec<u8> {
        let mut v: Vec<u8> = descriptors.iter().flatten().copied().collect();
        v.extend([0x79, 0x00]);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkg_lengths() {
        assert_eq!(pkg_length(0).unwrap(), [1]);
        assert_eq!(pkg_length(62).unwrap(), [63]);
        // 63 + 2 = 65 = 0x41: two bytes, low nibble 1, then 0x04.
        assert_eq!(pkg_length(63).unwrap(), [0x41, 0x04]);
        assert_eq!(pkg_length(0x1000 - 3).unwrap(), [0x4F, 0xFF]);
        assert_eq!(pkg_length(0x1000 - 2).unwrap(), [0x81, 0x00, 0x01]);
        assert_eq!(pkg_length(0x10_0000).unwrap(), [0xC4, 0x00, 0x00, 0x01]);
        assert!(pkg_length(1 << 28).is_err());
    }

    #[test]
    fn names() {
        assert_eq!(name_string("\\_SB").unwrap(), b"\\_SB_");
        assert_eq!(name_string("PCI0").unwrap(), b"PCI0");
        assert_eq!(name_string("\\_SB.PCI0").unwrap(), b"\\\x2E_SB_PCI0");
        assert_eq!(name_string("A.B.C").unwrap(), b"\x2F\x03A___B___C___");
        for bad in ["", "pci0", "0ABC", "ABCDE", "\\", "A..B", "A-B"] {
            assert!(name_string(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn integers_and_strings() {
        assert_eq!(integer(0), [0x00]);
        assert_eq!(integer(1), [0x01]);
        assert_eq!(integer(5), [0x0A, 5]);
        assert_eq!(integer(0x1234), [0x0B, 0x34, 0x12]);
        assert_eq!(integer(0x12345), [0x0C, 0x45, 0x23, 0x01, 0x00]);
        assert_eq!(integer(1 << 32)[0], 0x0E);
        assert_eq!(integer(u64::MAX), [0xFF]);
        assert_eq!(string("AB").unwrap(), [0x0D, b'A', b'B', 0]);
        assert!(string("a\0b").is_err());
        assert!(string("é").is_err());
    }

    #[test]
    fn eisa_ids() {
        assert_eq!(eisa_id("PNP0A03").unwrap(), 0x030A_D041);
        assert_eq!(eisa_id("PNP0A08").unwrap(), 0x080A_D041);
        for bad in ["PNP0A0", "pnp0A03", "PNP0G03", "PNP0A033"] {
            assert!(eisa_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn packages_and_terms() {
        let s5 = package(&[integer(5), integer(5), integer(0), integer(0)]).unwrap();
        assert_eq!(s5, [0x12, 0x08, 0x04, 0x0A, 0x05, 0x0A, 0x05, 0x00, 0x00]);
        assert_eq!(
            name("\\_S5", &s5).unwrap()[..6],
            [0x08, b'\\', b'_', b'S', b'5', b'_']
        );
        assert_eq!(buffer(&[1, 2]).unwrap(), [0x11, 0x05, 0x0A, 0x02, 1, 2]);
        let d = device("PCI0", &[0xAA]).unwrap();
        assert_eq!(d, [0x5B, 0x82, 0x06, b'P', b'C', b'I', b'0', 0xAA]);
        let s = scope("\\_SB", &d).unwrap();
        assert_eq!(s[..2], [0x10, 0x0E]);
        let big = scope("\\_SB", &[0; 100]).unwrap();
        // 2 (PkgLength) + 5 (\_SB_) + 100 = 107 = 0x6B.
        assert_eq!(big[1..3], [0x4B, 0x06]);
    }

    #[test]
    fn resource_descriptors() {
        let bus = res::word_bus_number(0, 0xFF);
        assert_eq!(bus.len(), 16);
        assert_eq!(bus[..6], [0x88, 13, 0, 2, 0x0C, 0]);
        assert_eq!(bus[14..], [0x00, 0x01]);
        let io = res::word_io(0x0D00, 0xFFFF);
        assert_eq!(io[3], 1);
        assert_eq!(io[14..], 0xF300u16.to_le_bytes());
        let mem = res::dword_memory(0xC000_0000, 0xFEBF_FFFF);
        assert_eq!(mem.len(), 26);
        assert_eq!(mem[22..], 0x3EC0_0000u32.to_le_bytes());
        assert_eq!(
            res::io(0xCF8, 0xCF8, 1, 8),
            [0x47, 1, 0xF8, 0xC, 0xF8, 0xC, 1, 8]
        );
        assert_eq!(res::template(&[]), [0x79, 0]);
    }
}
