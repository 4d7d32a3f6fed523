//! Page-table walks: 32-bit (with PSE/PSE-36), PAE and 4-level paging.
//! Sets accessed/dirty bits as hardware does and builds #PF error codes.
//! Access rights (SDM vol. 3, 4.6): U/S, R/W with CR0.WP, NX, SMEP, SMAP
//! (EFLAGS.AC and implicit supervisor accesses), and in 4-level paging the
//! protection keys of user pages (CR4.PKE, PKRU) and supervisor pages
//! (CR4.PKS, IA32_PKRS).

use crate::bus::CpuBus;
use crate::consts::{cr0, cr4, efer, rflags};
use crate::exception::{pf_err, Exception, XResult};
use crate::CpuState;

/// Physical address width reported by CPUID 0x80000008.
pub const MAXPHYADDR: u32 = 40;
const PHYS_MASK: u64 = ((1u64 << MAXPHYADDR) - 1) & !0xfff;

const P: u64 = 1 << 0;
const RW: u64 = 1 << 1;
const US: u64 = 1 << 2;
const A: u64 = 1 << 5;
const D: u64 = 1 << 6;
const PS: u64 = 1 << 7;
const G: u64 = 1 << 8;
const NX: u64 = 1 << 63;

/// Kind of a memory access, for permission checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    Read,
    Write,
    Exec,
}

/// Who makes an access (SDM vol. 3, 4.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Privilege {
    /// CPL 3.
    User,
    /// CPL 0..2, explicit (EFLAGS.AC lifts SMAP).
    Supervisor,
    /// A system-structure access (GDT, LDT, IDT, TSS) at any CPL: SMAP
    /// applies whatever EFLAGS.AC says.
    Implicit,
}

/// A successful translation of one 4 KiB linear page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Walk {
    /// Physical address of the 4 KiB page.
    pub paddr: u64,
    pub can_read: bool,
    /// Writes allowed and the dirty bit is already set.
    pub can_write: bool,
    pub can_exec: bool,
    pub global: bool,
    pub large: bool,
    /// The page is user-mode accessible (U/S set at every level).
    pub user_page: bool,
}

/// Which paging structure format is active.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PagingMode {
    None,
    Bits32,
    Pae,
    Level4,
}

pub fn paging_mode(st: &CpuState) -> PagingMode {
    if st.cr0 & cr0::PG == 0 || st.cr0 & cr0::PE == 0 {
        PagingMode::None
    } else if st.efer & efer::LMA != 0 {
        PagingMode::Level4
    } else if st.cr4 & cr4::PAE != 0 {
        PagingMode::Pae
    } else {
        PagingMode::Bits32
    }
}

fn read_pte(bus: &mut dyn CpuBus, addr: u64, wide: bool) -> u64 {
    if wide {
        let mut b = [0u8; 8];
        bus.read_phys(addr, &mut b);
        u64::from_le_bytes(b)
    } else {
        let mut b = [0u8; 4];
        bus.read_phys(addr, &mut b);
        u32::from_le_bytes(b) as u64
    }
}

/// Sets the accessed/dirty bits of the entry at `addr`, read as `old`, to
/// make it `new`, as the processor does: a locked compare-and-swap, so an
/// entry another vCPU changed in the meantime (e.g. cleared) is left as that
/// vCPU wrote it.
fn write_pte(bus: &mut dyn CpuBus, addr: u64, old: u64, new: u64, wide: bool) {
    use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};
    let size = if wide { 8 } else { 4 };
    if let Some(r) = bus.ram_ptr(addr) {
        if r.writable && r.len >= size && (r.ptr as usize).is_multiple_of(size) {
            // SAFETY: `ram_ptr` gives a host pointer into guest RAM valid
            // for `r.len` bytes (checked >= the entry size) for the life
            // of the bus, naturally aligned (checked); other vCPUs share
            // the memory, hence the atomic access.
            unsafe {
                if wide {
                    let _ = AtomicU64::from_ptr(r.ptr as *mut u64).compare_exchange(
                        old.to_le(),
                        new.to_le(),
                        SeqCst,
                        SeqCst,
                    );
                } else {
                    let _ = AtomicU32::from_ptr(r.ptr as *mut u32).compare_exchange(
                        (old as u32).to_le(),
                        (new as u32).to_le(),
                        SeqCst,
                        SeqCst,
                    );
                }
            }
            return;
        }
    }
    // A/D updates of page tables in MMIO would be odd; the action is dropped.
    if wide {
        let _ = bus.write_phys(addr, &new.to_le_bytes());
    } else {
        let _ = bus.write_phys(addr, &(new as u32).to_le_bytes());
    }
}

/// Translates `lin` for `access` at privilege `user` with the U/S, R/W
/// (CR0.WP), NX and SMEP checks only: no SMAP, no protection keys (the
/// debugger's view of memory). On success the accessed bits (and the dirty
/// bit for writes) are set in memory.
pub fn walk(
    st: &CpuState,
    bus: &mut dyn CpuBus,
    lin: u64,
    access: Access,
    user: bool,
) -> XResult<Walk> {
    let who = if user {
        Privilege::User
    } else {
        Privilege::Supervisor
    };
    walk_as(st, bus, lin, access, who, false)
}

/// Translates `lin` for `access` by `who` with every access-rights check
/// the CPU makes (what instructions see).
pub fn walk_checked(
    st: &CpuState,
    bus: &mut dyn CpuBus,
    lin: u64,
    access: Access,
    who: Privilege,
) -> XResult<Walk> {
    walk_as(st, bus, lin, access, who, true)
}

/// Whether SMAP denies a supervisor data access to a user page now.
#[inline]
pub fn smap_denies(st: &CpuState, who: Privilege) -> bool {
    st.cr4 & cr4::SMAP != 0
        && (who == Privilege::Implicit
            || (who == Privilege::Supervisor && st.rflags & rflags::AC == 0))
}

fn walk_as(
    st: &CpuState,
    bus: &mut dyn CpuBus,
    lin: u64,
    access: Access,
    who: Privilege,
    full: bool,
) -> XResult<Walk> {
    let user = who == Privilege::User;
    let mode = paging_mode(st);
    if mode == PagingMode::None {
        return Ok(Walk {
            paddr: lin & 0xffff_f000,
            can_read: true,
            can_write: true,
            can_exec: true,
            global: false,
            large: false,
            user_page: true,
        });
    }
    let nxe = st.efer & efer::NXE != 0;
    let wp = st.cr0 & cr0::WP != 0;
    let mut code = 0u32;
    if access == Access::Write {
        code |= pf_err::W;
    }
    if user {
        code |= pf_err::U;
    }
    let smep = st.cr4 & cr4::SMEP != 0;
    if access == Access::Exec && (nxe || smep) {
        code |= pf_err::ID;
    }
    let not_present = |code: u32| Exception::pf(lin, code);
    let rsvd = |code: u32| Exception::pf(lin, code | pf_err::P | pf_err::RSVD);

    // (table entry address, entry value) of each level, for A/D updates.
    let mut chain: [(u64, u64); 4] = [(0, 0); 4];
    let mut levels = 0usize;
    let wide = mode != PagingMode::Bits32;
    // Combined permissions over all levels.
    let mut rw_all = true;
    let mut us_all = true;
    let mut nx_any = false;
    let leaf: u64;
    let page_size: u64;
    let leaf_paddr: u64;

    let rsvd_hi = if nxe {
        !(PHYS_MASK | 0xfff | NX) & !(0x7ffu64 << 52)
    } else {
        !(PHYS_MASK | 0xfff) & !(0x7ffu64 << 52)
    };
    match mode {
        PagingMode::Bits32 => {
            let pde_addr = (st.cr3 & 0xffff_f000) | (((lin >> 22) & 0x3ff) * 4);
            let pde = read_pte(bus, pde_addr, false);
            if pde & P == 0 {
                return Err(not_present(code));
            }
            chain[0] = (pde_addr, pde);
            levels = 1;
            rw_all &= pde & RW != 0;
            us_all &= pde & US != 0;
            if pde & PS != 0 && st.cr4 & cr4::PSE != 0 {
                // 4 MiB page; PSE-36: PDE bits 13..=20 are physical bits 32..=39.
                if pde & (1 << 21) != 0 {
                    return Err(rsvd(code));
                }
                leaf = pde;
                page_size = 4 << 20;
                leaf_paddr = (pde & 0xffc0_0000) | (((pde >> 13) & 0xff) << 32);
            } else {
                let pte_addr = (pde & 0xffff_f000) | (((lin >> 12) & 0x3ff) * 4);
                let pte = read_pte(bus, pte_addr, false);
                if pte & P == 0 {
                    return Err(not_present(code));
                }
                chain[1] = (pte_addr, pte);
                levels = 2;
                rw_all &= pte & RW != 0;
                us_all &= pte & US != 0;
                leaf = pte;
                page_size = 4096;
                leaf_paddr = pte & 0xffff_f000;
            }
        }
        PagingMode::Pae | PagingMode::Level4 => {
            let mut table;
            let mut shift;
            if mode == PagingMode::Pae {
                let pdpte_addr = (st.cr3 & 0xffff_ffe0) + ((lin >> 30) & 3) * 8;
                let pdpte = read_pte(bus, pdpte_addr, true);
                if pdpte & P == 0 {
                    return Err(not_present(code));
                }
                if pdpte & (rsvd_hi | NX | 0x1e6) != 0 {
                    return Err(rsvd(code));
                }
                table = pdpte & PHYS_MASK;
                shift = 21;
            } else {
                table = st.cr3 & PHYS_MASK;
                shift = 39;
                // Non-canonical addresses were rejected by segmentation.
            }
            loop {
                let e_addr = table + ((lin >> shift) & 0x1ff) * 8;
                let e = read_pte(bus, e_addr, true);
                if e & P == 0 {
                    return Err(not_present(code));
                }
                if e & rsvd_hi != 0 {
                    return Err(rsvd(code));
                }
                chain[levels] = (e_addr, e);
                levels += 1;
                rw_all &= e & RW != 0;
                us_all &= e & US != 0;
                nx_any |= nxe && e & NX != 0;
                let is_large = e & PS != 0 && shift != 12;
                if is_large {
                    if shift == 39 {
                        return Err(rsvd(code));
                    }
                    // Large page: bits 13..shift-1 reserved.
                    let low_rsvd = ((1u64 << shift) - 1) & !0x1fff;
                    if e & low_rsvd != 0 {
                        return Err(rsvd(code));
                    }
                }
                if shift == 12 || is_large {
                    leaf = e;
                    page_size = 1u64 << shift;
                    leaf_paddr = e & PHYS_MASK & !(page_size - 1);
                    break;
                }
                table = e & PHYS_MASK;
                shift -= 9;
            }
        }
        PagingMode::None => return Err(not_present(code)),
    }

    // Permission checks.
    let mut can_read = !user || us_all;
    let mut can_write_perm = if user {
        us_all && rw_all
    } else {
        rw_all || !wp
    };
    // SMEP: no supervisor instruction fetch from user pages.
    let can_exec = !nx_any && if user { us_all } else { !(smep && us_all) };
    // SMAP: supervisor data accesses to user pages, unless explicit with
    // EFLAGS.AC set.
    if full && !user && us_all && smap_denies(st, who) {
        can_read = false;
        can_write_perm = false;
    }
    // Protection keys (4-level paging only): data accesses to user pages
    // under PKRU (CR4.PKE), to supervisor pages under IA32_PKRS (CR4.PKS).
    // Access-disable stops reads and writes; write-disable stops user
    // writes and, with CR0.WP, supervisor writes.
    let mut pk_code = 0;
    let rights = if !full || mode != PagingMode::Level4 {
        None
    } else if us_all && st.cr4 & cr4::PKE != 0 {
        Some(st.pkru)
    } else if !us_all && st.cr4 & cr4::PKS != 0 {
        Some(st.msr.pkrs as u32)
    } else {
        None
    };
    if let Some(r) = rights {
        let key = (leaf >> 59) & 0xf;
        let ad = (r >> (2 * key)) & 1 != 0;
        let wd = (r >> (2 * key + 1)) & 1 != 0;
        let pk_write = !ad && !(wd && (user || wp));
        let denied = match access {
            Access::Read => ad,
            Access::Write => !pk_write,
            Access::Exec => false,
        };
        if denied {
            pk_code = pf_err::PK;
        }
        can_read &= !ad;
        can_write_perm &= pk_write;
    }
    let ok = match access {
        Access::Read => can_read,
        Access::Write => can_write_perm,
        Access::Exec => can_exec,
    };
    if !ok {
        return Err(Exception::pf(lin, code | pf_err::P | pk_code));
    }
    // Accessed bits on every level, dirty on the leaf for writes.
    for (i, &(addr, val)) in chain[..levels].iter().enumerate() {
        let mut nv = val | A;
        if i == levels - 1 && access == Access::Write {
            nv |= D;
        }
        if nv != val {
            write_pte(bus, addr, val, nv, wide);
        }
    }
    let dirty = leaf & D != 0 || access == Access::Write;
    let global = st.cr4 & cr4::PGE != 0 && leaf & G != 0;
    let paddr = leaf_paddr | (lin & (page_size - 1) & !0xfff);
    Ok(Walk {
        paddr,
        can_read,
        can_write: can_write_perm && dirty,
        can_exec,
        global,
        large: page_size > 4096,
        user_page: us_all,
    })
}
