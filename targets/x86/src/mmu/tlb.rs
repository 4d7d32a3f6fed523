//! The software TLB, laid out for JIT-generated code.
//!
//! # Layout (stable, `#[repr(C)]`)
//!
//! [`Tlb`] is `[[TlbEntry; TLB_SIZE]; 2]`: index 0 for supervisor accesses
//! (CPL 0..2 and implicit system accesses), 1 for user accesses (CPL 3).
//! An entry for linear address `lin` lives at index
//! `(lin >> 12) & (TLB_SIZE - 1)`; each [`TlbEntry`] is 64 bytes (a power of
//! two: generated code turns an address into an entry offset with a shift
//! and a mask):
//!
//! | offset | field      | meaning |
//! |-------:|------------|---------|
//! | 0      | `tag_read` | page-aligned linear address when a read of the page may use `addend` |
//! | 8      | `tag_write`| same for writes |
//! | 16     | `tag_exec` | same for instruction fetch |
//! | 24     | `addend`   | host address = `addend + lin` (wrapping) |
//! | 32     | `paddr`    | physical address of the 4 KiB page |
//! | 40     | `attrs`    | `ATTR_*` bits |
//! | 48     | padding    | |
//!
//! Fast path (what the JIT inlines): `tag == lin & !0xfff` and the access
//! does not cross the page → host pointer `addend + lin`. Any other value
//! (a set [`TAG_INVALID`] or [`TAG_SLOW`] bit, another page) takes the slow
//! path ([`super::Mmu::read`]/[`super::Mmu::write`]), which walks the page
//! tables, handles MMIO, ROM, page crossings and self-modifying code.
//!
//! Access rights are decided when an entry is filled, so everything they
//! depend on flushes the TLB when it changes: CR0.WP/PG/PE, CR4 paging
//! and protection bits (PGE, PAE, PSE, SMEP, SMAP, PKE, PKS), EFER, PKRU
//! (WRPKRU, XRSTOR) and IA32_PKRS. The one right that changes without a
//! flush, SMAP's EFLAGS.AC override, is never on the fast path: see
//! [`ATTR_SMAP`].

/// Entries per TLB (a power of two).
pub const TLB_SIZE: usize = 1024;
/// Tag bit: this entry does not translate this kind of access.
pub const TAG_INVALID: u64 = 1 << 1;
/// Tag bit: translation valid, but the access must take the slow path
/// (MMIO, ROM write, page holding translated code).
pub const TAG_SLOW: u64 = 1 << 0;
/// Page mask of a tag.
pub const PAGE_MASK: u64 = !0xfff;

/// Entry maps a global page (survives CR3 reloads).
pub const ATTR_GLOBAL: u64 = 1 << 0;
/// `addend` is valid for reads (RAM or ROM).
pub const ATTR_RAM_READ: u64 = 1 << 1;
/// `addend` is valid for writes (RAM).
pub const ATTR_RAM_WRITE: u64 = 1 << 2;
/// Entry came from a large (2 MiB / 4 MiB / 1 GiB) page.
pub const ATTR_LARGE: u64 = 1 << 3;
/// A user page in the supervisor TLB while CR4.SMAP is set: its data tags
/// carry [`TAG_SLOW`], so every data access reaches
/// [`super::Mmu::translate`], which checks EFLAGS.AC and implicitness.
pub const ATTR_SMAP: u64 = 1 << 4;

/// One TLB entry, see the module documentation.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlbEntry {
    pub tag_read: u64,
    pub tag_write: u64,
    pub tag_exec: u64,
    pub addend: u64,
    pub paddr: u64,
    pub attrs: u64,
    pub _pad: [u64; 2],
}

impl TlbEntry {
    pub const EMPTY: TlbEntry = TlbEntry {
        tag_read: TAG_INVALID,
        tag_write: TAG_INVALID,
        tag_exec: TAG_INVALID,
        addend: 0,
        paddr: 0,
        attrs: 0,
        _pad: [0; 2],
    };
}

/// Both TLBs (supervisor, user).
pub type Tlb = [[TlbEntry; TLB_SIZE]; 2];

/// TLB index of a linear address.
#[inline(always)]
pub fn tlb_index(lin: u64) -> usize {
    ((lin >> 12) as usize) & (TLB_SIZE - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn layout_is_what_the_jit_expects() {
        assert_eq!(size_of::<TlbEntry>(), 64);
        assert_eq!(offset_of!(TlbEntry, tag_read), 0);
        assert_eq!(offset_of!(TlbEntry, tag_write), 8);
        assert_eq!(offset_of!(TlbEntry, tag_exec), 16);
        assert_eq!(offset_of!(TlbEntry, addend), 24);
        assert_eq!(offset_of!(TlbEntry, paddr), 32);
        assert_eq!(offset_of!(TlbEntry, attrs), 40);
        assert_eq!(size_of::<Tlb>(), 2 * TLB_SIZE * 64);
    }
}
