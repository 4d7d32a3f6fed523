//! Guest memory as the debugger sees it: physical accesses to RAM and ROM
//! (never to devices), linear -> physical translation through the guest's
//! current paging mode, and the list of current mappings (`monitor info
//! mem` / `info tlb`).

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use x86::consts::{cr4, efer};
use x86::mmu::walk::paging_mode;
use x86::mmu::{walk, Access, PagingMode};
use x86::{BusAction, CpuBus, CpuState, RamPtr};

/// Reads RAM/ROM at a physical address; false when any byte is not backed
/// by memory (MMIO or nothing: the debugger never touches devices).
pub fn read_phys(mem: &GuestMemoryMmap, paddr: u64, buf: &mut [u8]) -> bool {
    if buf.is_empty() {
        return true;
    }
    if paddr.checked_add(buf.len() as u64).is_none() {
        return false;
    }
    mem.read_slice(buf, GuestAddress(paddr)).is_ok()
}

/// Writes RAM (or ROM: the debugger may patch it) at a physical address.
pub fn write_phys(mem: &GuestMemoryMmap, paddr: u64, data: &[u8]) -> bool {
    if data.is_empty() {
        return true;
    }
    if paddr.checked_add(data.len() as u64).is_none() {
        return false;
    }
    mem.write_slice(data, GuestAddress(paddr)).is_ok()
}

fn read_u64(mem: &GuestMemoryMmap, paddr: u64) -> Option<u64> {
    let mut b = [0u8; 8];
    read_phys(mem, paddr, &mut b).then(|| u64::from_le_bytes(b))
}

fn read_u32(mem: &GuestMemoryMmap, paddr: u64) -> Option<u64> {
    let mut b = [0u8; 4];
    read_phys(mem, paddr, &mut b).then(|| u32::from_le_bytes(b) as u64)
}

const P: u64 = 1;
const RW: u64 = 1 << 1;
const US: u64 = 1 << 2;
const PWT: u64 = 1 << 3;
const PCD: u64 = 1 << 4;
const A: u64 = 1 << 5;
const D: u64 = 1 << 6;
const PS: u64 = 1 << 7;
const G: u64 = 1 << 8;
const NX: u64 = 1 << 63;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// The debugger's view of physical memory for the page walk: reads of RAM
/// and ROM (zeros elsewhere: a table outside memory maps nothing), and no
/// writes at all, so walking sets no accessed or dirty bits.
struct DebugBus<'a>(&'a GuestMemoryMmap);

impl CpuBus for DebugBus<'_> {
    fn read_phys(&mut self, paddr: u64, data: &mut [u8]) {
        if !read_phys(self.0, paddr, data) {
            data.fill(0);
        }
    }
    fn write_phys(&mut self, _paddr: u64, _data: &[u8]) -> BusAction {
        BusAction::Continue
    }
    fn ram_ptr(&mut self, _paddr: u64) -> Option<RamPtr> {
        None
    }
    fn io_in(&mut self, _port: u16, _size: u8) -> u32 {
        0xffff_ffff
    }
    fn io_out(&mut self, _port: u16, _size: u8, _value: u32) -> BusAction {
        BusAction::Continue
    }
}

/// Translates a linear address to a physical one as a supervisor read
/// would, by the page walk the DBT uses (`x86::mmu::walk`), without side
/// effects. `None` when the address is not mapped, not canonical, or wider
/// than the mode's linear addresses.
pub fn translate(st: &CpuState, mem: &GuestMemoryMmap, lin: u64) -> Option<u64> {
    if st.efer & efer::LMA == 0 {
        if lin >> 32 != 0 {
            return None;
        }
    } else if ((lin as i64) << 16 >> 16) as u64 != lin {
        return None;
    }
    if paging_mode(st) == PagingMode::None {
        return Some(lin);
    }
    let w = walk(st, &mut DebugBus(mem), lin, Access::Read, false).ok()?;
    Some(w.paddr | (lin & 0xfff))
}

/// One leaf mapping of the current page tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub lin: u64,
    pub phys: u64,
    pub size: u64,
    /// The leaf entry's flag bits (P, RW, US, PWT, PCD, A, D, PS, G, NX),
    /// with RW, US combined over all levels and NX over all levels.
    pub flags: u64,
}

impl Mapping {
    pub fn writable(&self) -> bool {
        self.flags & RW != 0
    }
    pub fn user(&self) -> bool {
        self.flags & US != 0
    }
    pub fn nx(&self) -> bool {
        self.flags & NX != 0
    }
    /// QEMU's `info tlb` flag letters: NX, global, large page, dirty,
    /// accessed, cache disable, write-through, user, writable.
    pub fn letters(&self) -> String {
        let f = self.flags;
        let c = |bit: u64, ch: char| if f & bit != 0 { ch } else { '-' };
        [
            c(NX, 'X'),
            c(G, 'G'),
            c(PS, 'P'),
            c(D, 'D'),
            c(A, 'A'),
            c(PCD, 'C'),
            c(PWT, 'T'),
            c(US, 'U'),
            c(RW, 'W'),
        ]
        .iter()
        .collect()
    }
}

/// Upper bound on the mappings listed, so a hostile page table cannot make
/// the stub build an unbounded list.
pub const MAX_MAPPINGS: usize = 1 << 20;

/// Every present leaf mapping, in linear-address order. `None` when paging
/// is off.
pub fn mappings(st: &CpuState, mem: &GuestMemoryMmap) -> Option<Vec<Mapping>> {
    let mut out = Vec::new();
    let inherit = RW | US;
    match paging_mode(st) {
        PagingMode::None => return None,
        PagingMode::Bits32 => {
            for i in 0..1024u64 {
                let Some(pde) = read_u32(mem, (st.cr3 & 0xffff_f000) + i * 4) else {
                    continue;
                };
                if pde & P == 0 {
                    continue;
                }
                let lin = i << 22;
                if pde & PS != 0 && st.cr4 & cr4::PSE != 0 {
                    out.push(Mapping {
                        lin,
                        phys: (pde & 0xffc0_0000) | (((pde >> 13) & 0xff) << 32),
                        size: 4 << 20,
                        flags: pde & 0x1ff,
                    });
                    continue;
                }
                for j in 0..1024u64 {
                    let Some(pte) = read_u32(mem, (pde & 0xffff_f000) + j * 4) else {
                        continue;
                    };
                    if pte & P == 0 {
                        continue;
                    }
                    let up = pde & inherit | !inherit;
                    out.push(Mapping {
                        lin: lin | (j << 12),
                        phys: pte & 0xffff_f000,
                        size: 4096,
                        flags: pte & 0x1ff & up,
                    });
                    if out.len() >= MAX_MAPPINGS {
                        return Some(out);
                    }
                }
            }
        }
        PagingMode::Pae => {
            for i in 0..4u64 {
                let Some(pdpte) = read_u64(mem, (st.cr3 & 0xffff_ffe0) + i * 8) else {
                    continue;
                };
                if pdpte & P == 0 {
                    continue;
                }
                // PDPTEs carry no RW/US/NX in PAE mode.
                collect(mem, pdpte & ADDR_MASK, 21, i << 30, RW | US, &mut out);
            }
        }
        PagingMode::Level4 => {
            collect(mem, st.cr3 & ADDR_MASK, 39, 0, RW | US, &mut out);
        }
    }
    Some(out)
}

fn collect(
    mem: &GuestMemoryMmap,
    table: u64,
    shift: u32,
    base: u64,
    up: u64,
    out: &mut Vec<Mapping>,
) {
    for i in 0..512u64 {
        if out.len() >= MAX_MAPPINGS {
            return;
        }
        let Some(e) = read_u64(mem, table + i * 8) else {
            continue;
        };
        if e & P == 0 {
            continue;
        }
        let mut lin = base | (i << shift);
        if shift == 39 && lin & (1 << 47) != 0 {
            lin |= 0xffff_0000_0000_0000;
        }
        let rw_us = e & (RW | US) & up;
        let nx = (up & NX) | (e & NX);
        if shift == 12 || (e & PS != 0 && (shift == 21 || shift == 30)) {
            let size = 1u64 << shift;
            out.push(Mapping {
                lin,
                phys: e & ADDR_MASK & !(size - 1),
                size,
                flags: (e & 0x1ff & !(RW | US)) | rw_us | nx,
            });
        } else {
            collect(mem, e & ADDR_MASK, shift - 9, lin, rw_us | nx, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x86::consts::cr0;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap()
    }

    fn put(m: &GuestMemoryMmap, a: u64, v: u64) {
        m.write_slice(&v.to_le_bytes(), GuestAddress(a)).unwrap();
    }

    #[test]
    fn four_level_walk_with_large_and_small_pages() {
        let m = mem();
        let mut st = CpuState::reset();
        st.cr0 |= cr0::PE | cr0::PG;
        st.cr4 |= cr4::PAE;
        st.efer |= efer::LME | efer::LMA | efer::NXE;
        st.cr3 = 0x1000;
        put(&m, 0x1000, 0x2000 | 7); // PML4[0]
        put(&m, 0x1000 + 511 * 8, 0x2000 | 3); // PML4[511] -> same PDPT
        put(&m, 0x2000, 0x3000 | 7); // PDPT[0]
        put(&m, 0x3000, 0x20_0000 | 0x83); // PD[0]: 2 MiB at 2 MiB
        put(&m, 0x3008, 0x4000 | 7); // PD[1] -> PT
        put(&m, 0x4000 + 5 * 8, 0x9000 | 3 | NX); // PT[5]
        assert_eq!(translate(&st, &m, 0x1234), Some(0x20_1234));
        assert_eq!(translate(&st, &m, 0x20_5010), Some(0x9010));
        assert_eq!(translate(&st, &m, 0x20_6000), None);
        assert_eq!(translate(&st, &m, 0x8000_0000_0000), None); // not canonical
        assert_eq!(translate(&st, &m, 0xffff_ff80_0000_0123), Some(0x20_0123));
        let maps = mappings(&st, &m).unwrap();
        assert_eq!(maps.len(), 4);
        assert_eq!(maps[0].size, 2 << 20);
        assert_eq!(maps[1].lin, 0x20_5000);
        assert!(maps[1].nx() && maps[1].writable() && !maps[1].user());
        assert_eq!(maps[2].lin, 0xffff_ff80_0000_0000);
        assert!(!maps[2].user());
    }

    #[test]
    fn legacy_walks() {
        let m = mem();
        let mut st = CpuState::reset();
        st.cr0 |= cr0::PE | cr0::PG;
        st.cr3 = 0x1000;
        put(&m, 0x1000, 0x2000 | 3);
        m.write_slice(&(0x5000u32 | 3).to_le_bytes(), GuestAddress(0x2000 + 4))
            .unwrap();
        m.write_slice(&(0x40_0000u32 | 0x83).to_le_bytes(), GuestAddress(0x1004))
            .unwrap();
        assert_eq!(translate(&st, &m, 0x1abc), Some(0x5abc));
        assert_eq!(translate(&st, &m, 0x2000), None);
        // 4 MiB pages need CR4.PSE.
        assert_eq!(translate(&st, &m, 0x40_0010), None);
        st.cr4 |= cr4::PSE;
        assert_eq!(translate(&st, &m, 0x40_0010), Some(0x40_0010));
        assert_eq!(mappings(&st, &m).unwrap().len(), 2);
        // PAE.
        st.cr4 = cr4::PAE;
        st.cr3 = 0x3000;
        put(&m, 0x3000, 0x6000 | 1);
        put(&m, 0x6000, 0x20_0000 | 0x83);
        assert_eq!(translate(&st, &m, 0x1_2345), Some(0x21_2345));
        assert_eq!(translate(&st, &m, 0x4000_0000), None);
        // No paging: identity, but only 32 bits outside long mode.
        st.cr0 &= !cr0::PG;
        assert_eq!(translate(&st, &m, 0xffff_fff0), Some(0xffff_fff0));
        assert_eq!(translate(&st, &m, 0x1_0000_0000), None);
        assert!(mappings(&st, &m).is_none());
    }

    #[test]
    fn unbacked_memory_is_an_error_not_garbage() {
        let m = mem();
        let mut b = [0u8; 4];
        assert!(read_phys(&m, 0x10, &mut b));
        assert!(!read_phys(&m, 0x40_0000, &mut b));
        assert!(!read_phys(&m, 0x3f_fffe, &mut b));
        assert!(!read_phys(&m, u64::MAX - 1, &mut b));
        assert!(!write_phys(&m, 0x50_0000, &b));
    }
}
