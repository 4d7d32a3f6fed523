//! The memory path both tiers share: segmentation ([`seg`]), the page walk
//! ([`walk`]), the software TLB ([`tlb`]) and MMIO dispatch through the
//! [`CpuBus`]. It also tracks which physical pages hold translated code so
//! that guest writes to them invalidate the translations (self-modifying
//! code).

pub mod seg;
pub mod share;
pub mod tlb;
pub mod walk;

use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;

use crate::bus::{BusAction, CpuBus};
use crate::exception::{pf_err, Exception, XResult};
use crate::CpuState;
pub use share::{CodeShare, Remote};
pub use tlb::{tlb_index, Tlb, TlbEntry, TLB_SIZE};
use tlb::{
    ATTR_GLOBAL, ATTR_LARGE, ATTR_RAM_READ, ATTR_RAM_WRITE, ATTR_SMAP, PAGE_MASK, TAG_INVALID,
    TAG_SLOW,
};
pub use walk::{walk, walk_checked, Access, PagingMode, Privilege, Walk};

/// Which bytes of a physical page hold decoded instructions.
#[derive(Clone)]
struct CodePage {
    bits: [u64; 64],
}

impl CodePage {
    fn set(&mut self, off: usize, len: usize) {
        for b in off..(off + len).min(4096) {
            self.bits[b / 64] |= 1 << (b % 64);
        }
    }
    fn overlaps(&self, off: usize, len: usize) -> bool {
        (off..(off + len).min(4096)).any(|b| self.bits[b / 64] & (1 << (b % 64)) != 0)
    }
}

/// Per-vCPU MMU: TLBs, code-page tracking, pending bus actions.
pub struct Mmu {
    /// The TLBs, `[supervisor, user]`; see [`tlb`] for the layout.
    pub tlb: Box<Tlb>,
    code_pages: HashMap<u64, CodePage>,
    /// Physical pages whose translated code was overwritten since the
    /// owner of the code cache last drained this list.
    pub dirty_code: Vec<u64>,
    /// A write asked the machine for something (exit, reset, power-off).
    pub pending_action: Option<BusAction>,
    /// An MMIO write happened (it may have changed what interrupt is
    /// deliverable, e.g. the local APIC's TPR): the block ends after the
    /// instruction and interrupts are checked at once.
    pub mmio_written: bool,
    has_large: bool,
    /// Entries filled from large pages since the last full flush, as
    /// (TLB, index): INVLPG drops these instead of flushing everything.
    large: Vec<(u8, u16)>,
    /// Membership bitmap of `large` (no duplicates).
    large_bits: Box<[u64; 2 * TLB_SIZE / 64]>,
    /// Debugger watchpoints (slots 0-3, see [`Mmu::set_watchpoints`]) and
    /// the guest's own data breakpoints (slots 4-7, DR0-DR3, see
    /// [`Mmu::set_guest_watchpoints`]).
    watch: [Option<Watchpoint>; 8],
    watching: bool,
    /// The first debugger watchpoint a data access hit: (slot, linear address).
    pub watch_hit: Option<(usize, u64)>,
    /// The guest data breakpoints hit (bit n: DRn), as DR6.B0-B3; the
    /// interpreter clears it before each instruction.
    pub guest_watch_hits: u8,
    /// Supervisor accesses are implicit (system structures) until reset:
    /// set around them by the interpreter (SMAP ignores EFLAGS.AC then).
    pub implicit: bool,
    /// The machine-wide code map, this vCPU's slot in it and its mailbox
    /// (SMP; `None` for a lone CPU).
    share: Option<(Arc<CodeShare>, usize, Arc<Remote>)>,
}

/// Whether writes to the linear page of a TLB write tag are watched (the
/// page must then stay on the slow path).
fn watched_write(watch: &[Option<Watchpoint>; 8], tag: u64) -> bool {
    let page = tag & PAGE_MASK;
    watch
        .iter()
        .flatten()
        .any(|w| w.write && page < w.addr.wrapping_add(w.len) && w.addr < page.wrapping_add(0x1000))
}

/// A debugger watchpoint on linear addresses `[addr, addr + len)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watchpoint {
    pub addr: u64,
    pub len: u64,
    /// Reads hit it.
    pub read: bool,
    /// Writes hit it.
    pub write: bool,
}

impl Default for Mmu {
    fn default() -> Self {
        Self::new()
    }
}

macro_rules! fast_rw {
    ($read:ident, $write:ident, $t:ty) => {
        /// Reads a little-endian value at a linear address.
        #[inline(always)]
        pub fn $read(
            &mut self,
            st: &CpuState,
            bus: &mut dyn CpuBus,
            lin: u64,
            user: bool,
        ) -> XResult<$t> {
            const N: usize = std::mem::size_of::<$t>();
            let e = &self.tlb[user as usize][tlb_index(lin)];
            if e.tag_read == lin & PAGE_MASK && (lin & 0xfff) as usize <= 4096 - N {
                // SAFETY: the tag matched, so `addend + lin` points into a
                // host mapping of guest RAM/ROM that covers the whole 4 KiB
                // page (checked when the entry was filled) and the access
                // does not cross the page end. The bus keeps the mapping
                // alive. Guest memory may change under us (other vCPUs,
                // devices), hence an unaligned raw read, never a reference.
                let v =
                    unsafe { std::ptr::read_unaligned(e.addend.wrapping_add(lin) as *const $t) };
                return Ok(<$t>::from_le(v));
            }
            let mut b = [0u8; N];
            self.read(st, bus, lin, &mut b, user)?;
            Ok(<$t>::from_le_bytes(b))
        }

        /// Writes a little-endian value at a linear address.
        #[inline(always)]
        pub fn $write(
            &mut self,
            st: &CpuState,
            bus: &mut dyn CpuBus,
            lin: u64,
            v: $t,
            user: bool,
        ) -> XResult<()> {
            const N: usize = std::mem::size_of::<$t>();
            let e = &self.tlb[user as usize][tlb_index(lin)];
            if e.tag_write == lin & PAGE_MASK && (lin & 0xfff) as usize <= 4096 - N {
                // SAFETY: as for reads; a matching write tag is only filled
                // for writable RAM pages that hold no translated code.
                unsafe {
                    std::ptr::write_unaligned(e.addend.wrapping_add(lin) as *mut $t, v.to_le())
                };
                return Ok(());
            }
            self.write(st, bus, lin, &v.to_le_bytes(), user)
        }
    };
}

impl Mmu {
    pub fn new() -> Self {
        Mmu {
            tlb: Box::new([[TlbEntry::EMPTY; TLB_SIZE]; 2]),
            code_pages: HashMap::default(),
            dirty_code: Vec::new(),
            pending_action: None,
            mmio_written: false,
            has_large: false,
            large: Vec::new(),
            large_bits: Box::new([0; 2 * TLB_SIZE / 64]),
            watch: [None; 8],
            watching: false,
            watch_hit: None,
            guest_watch_hits: 0,
            implicit: false,
            share: None,
        }
    }

    /// Joins the machine-wide code map (before any code is decoded).
    /// Fails when the map has no free slot.
    pub fn join_share(&mut self, share: &Arc<CodeShare>) -> bool {
        match share.register() {
            Some((slot, remote)) => {
                self.share = Some((share.clone(), slot, remote));
                true
            }
            None => false,
        }
    }

    /// Whether another vCPU may hold code in physical page `page`.
    #[inline]
    fn shared_code(&self, page: u64) -> bool {
        self.share
            .as_ref()
            .is_some_and(|(s, _, _)| s.mask(page) != 0)
    }

    /// Another vCPU or a device left work for this one (checked at block
    /// boundaries).
    #[inline(always)]
    pub fn remote_pending(&self) -> bool {
        self.share.as_ref().is_some_and(|(_, _, r)| r.pending())
    }

    /// Acts on what other vCPUs and devices reported: pages written where
    /// this vCPU holds code (queued in [`Mmu::dirty_code`]) and pages that
    /// became code elsewhere (their fast write path is dropped; if there
    /// was one, this vCPU may have written the page after it was decoded,
    /// and says so).
    #[cold]
    pub fn drain_remote(&mut self) {
        let Some((share, slot, remote)) = self.share.clone() else {
            return;
        };
        let inbox = remote.take();
        for (page, off, len) in inbox.writes {
            let hit = self
                .code_pages
                .get(&page)
                .is_some_and(|cp| cp.overlaps(off as usize, len as usize));
            if hit {
                self.invalidate_code_page(page);
            }
        }
        for page in inbox.code {
            let mut had_fast = false;
            for t in self.tlb.iter_mut() {
                for e in t.iter_mut() {
                    if e.paddr == page && e.tag_write & (TAG_INVALID | TAG_SLOW) == 0 {
                        e.tag_write |= TAG_SLOW;
                        had_fast = true;
                    }
                }
            }
            if had_fast {
                share.written(Some(slot), page, 0, 4096);
            }
        }
    }

    /// Flushes every TLB entry (CR0/CR4/EFER paging changes, CR4.PGE toggles).
    pub fn flush_all(&mut self) {
        for t in self.tlb.iter_mut() {
            t.fill(TlbEntry::EMPTY);
        }
        self.has_large = false;
        self.clear_large();
    }

    /// Sets the debugger's watchpoints. Pages they touch take the slow
    /// path (for the access kinds watched), where [`Mmu::read`] and
    /// [`Mmu::write`] record a hit in [`Mmu::watch_hit`]; other pages keep
    /// the fast path.
    pub fn set_watchpoints(&mut self, w: [Option<Watchpoint>; 4]) {
        self.watch[..4].copy_from_slice(&w);
        self.watching = self.watch.iter().any(Option::is_some);
        self.watch_hit = None;
        self.flush_all();
    }

    /// Sets the guest's data breakpoints (from DR0-DR3 and DR7), slot n
    /// for DRn; hits are recorded in [`Mmu::guest_watch_hits`]. Like the
    /// debugger's, the pages they touch take the slow path.
    pub fn set_guest_watchpoints(&mut self, w: [Option<Watchpoint>; 4]) {
        if self.watch[4..] == w {
            return;
        }
        self.watch[4..].copy_from_slice(&w);
        self.watching = self.watch.iter().any(Option::is_some);
        self.guest_watch_hits = 0;
        self.flush_all();
    }

    /// Watchpoints are set: the interpreter checks [`Mmu::watch_hit`] after
    /// each instruction.
    #[inline]
    pub fn watching(&self) -> bool {
        self.watching
    }

    /// Records the first debugger watchpoint and every guest data
    /// breakpoint that `[lin, lin + len)` hits.
    fn check_watch(&mut self, lin: u64, len: usize, write: bool) {
        for (i, w) in self.watch.iter().enumerate() {
            let Some(w) = w else { continue };
            let kind = if write { w.write } else { w.read };
            if kind && lin < w.addr.wrapping_add(w.len) && w.addr < lin.wrapping_add(len as u64) {
                if i >= 4 {
                    self.guest_watch_hits |= 1 << (i - 4);
                } else if self.watch_hit.is_none() {
                    self.watch_hit = Some((i, lin));
                }
            }
        }
    }

    /// Flushes non-global entries (MOV to CR3).
    pub fn flush_nonglobal(&mut self) {
        for t in self.tlb.iter_mut() {
            for e in t.iter_mut() {
                if e.attrs & ATTR_GLOBAL == 0 {
                    *e = TlbEntry::EMPTY;
                }
            }
        }
        self.prune_large();
    }

    /// Keeps only the large-page list entries that still hold one.
    fn prune_large(&mut self) {
        let tlb = &self.tlb;
        let bits = &mut self.large_bits;
        self.large.retain(|&(t, i)| {
            let keep = tlb[t as usize][i as usize].attrs & ATTR_LARGE != 0;
            if !keep {
                let k = t as usize * TLB_SIZE + i as usize;
                bits[k / 64] &= !(1 << (k % 64));
            }
            keep
        });
        self.has_large = !self.large.is_empty();
    }

    fn clear_large(&mut self) {
        self.large.clear();
        self.large_bits.fill(0);
    }

    /// INVLPG: drops the translation of one linear page (all of them when a
    /// large page may cover it).
    pub fn invlpg(&mut self, lin: u64) {
        if self.has_large {
            // A large page may cover `lin` from any index: drop every entry
            // that came from one (few), or everything if there are many.
            if self.large.len() > TLB_SIZE / 2 {
                self.flush_all();
                return;
            }
            for &(t, i) in &self.large {
                let e = &mut self.tlb[t as usize][i as usize];
                if e.attrs & ATTR_LARGE != 0 {
                    *e = TlbEntry::EMPTY;
                }
            }
            self.clear_large();
            self.has_large = false;
        }
        let i = tlb_index(lin);
        for t in self.tlb.iter_mut() {
            t[i] = TlbEntry::EMPTY;
        }
    }

    /// Looks up or fills the entry translating `lin` for `access`.
    pub fn translate(
        &mut self,
        st: &CpuState,
        bus: &mut dyn CpuBus,
        lin: u64,
        access: Access,
        user: bool,
    ) -> XResult<TlbEntry> {
        let idx = tlb_index(lin);
        let m = user as usize;
        let page = lin & PAGE_MASK;
        let e = &self.tlb[m][idx];
        let tag = match access {
            Access::Read => e.tag_read,
            Access::Write => e.tag_write,
            Access::Exec => e.tag_exec,
        };
        let who = if user {
            Privilege::User
        } else if self.implicit {
            Privilege::Implicit
        } else {
            Privilege::Supervisor
        };
        if tag & TAG_INVALID == 0 && tag & PAGE_MASK == page {
            // A user page in the supervisor TLB under SMAP: its data tags
            // are slow, so every access comes here and sees EFLAGS.AC now.
            if e.attrs & ATTR_SMAP != 0 && access != Access::Exec && walk::smap_denies(st, who) {
                let w = if access == Access::Write {
                    pf_err::W
                } else {
                    0
                };
                return Err(Exception::pf(lin, pf_err::P | w));
            }
            return Ok(*e);
        }
        let w = walk::walk_checked(st, bus, lin, access, who)?;
        let mut attrs = 0;
        let mut addend = 0;
        if let Some(r) = bus.ram_ptr(w.paddr) {
            if r.len >= 4096 {
                attrs |= ATTR_RAM_READ;
                if r.writable {
                    attrs |= ATTR_RAM_WRITE;
                }
                addend = (r.ptr as u64).wrapping_sub(page);
            }
        }
        if w.global {
            attrs |= ATTR_GLOBAL;
        }
        let smap = !user && w.user_page && st.cr4 & crate::consts::cr4::SMAP != 0;
        if smap {
            attrs |= ATTR_SMAP;
        }
        if w.large {
            attrs |= ATTR_LARGE;
            self.has_large = true;
            let k = m * TLB_SIZE + idx;
            if self.large_bits[k / 64] & (1 << (k % 64)) == 0 {
                self.large_bits[k / 64] |= 1 << (k % 64);
                self.large.push((m as u8, idx as u16));
            }
        }
        let slow = |fast: bool| if fast { page } else { page | TAG_SLOW };
        let code = self.code_pages.contains_key(&w.paddr) || self.shared_code(w.paddr);
        let ne = TlbEntry {
            tag_read: if w.can_read {
                slow(attrs & ATTR_RAM_READ != 0 && !smap)
            } else {
                TAG_INVALID
            },
            tag_write: if w.can_write {
                slow(attrs & ATTR_RAM_WRITE != 0 && !code && !smap)
            } else {
                TAG_INVALID
            },
            tag_exec: if w.can_exec {
                slow(attrs & ATTR_RAM_READ != 0)
            } else {
                TAG_INVALID
            },
            addend,
            paddr: w.paddr,
            attrs,
            _pad: [0; 2],
        };
        let mut ne = ne;
        for w in self.watch.iter().flatten() {
            if page < w.addr.wrapping_add(w.len) && w.addr < page.wrapping_add(0x1000) {
                if w.read && ne.tag_read & TAG_INVALID == 0 {
                    ne.tag_read |= TAG_SLOW;
                }
                if w.write && ne.tag_write & TAG_INVALID == 0 {
                    ne.tag_write |= TAG_SLOW;
                }
            }
        }
        self.tlb[m][idx] = ne;
        Ok(ne)
    }

    /// Translates `lin` to a physical address for `access`.
    pub fn phys_addr(
        &mut self,
        st: &CpuState,
        bus: &mut dyn CpuBus,
        lin: u64,
        access: Access,
        user: bool,
    ) -> XResult<u64> {
        let e = self.translate(st, bus, lin, access, user)?;
        Ok(e.paddr | (lin & 0xfff))
    }

    fn read_in_page(&mut self, bus: &mut dyn CpuBus, e: &TlbEntry, lin: u64, buf: &mut [u8]) {
        if e.attrs & ATTR_RAM_READ != 0 {
            // SAFETY: `ATTR_RAM_READ` means `addend + page` maps the whole
            // 4 KiB page on the host, and callers never cross the page end.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    e.addend.wrapping_add(lin) as *const u8,
                    buf.as_mut_ptr(),
                    buf.len(),
                )
            };
        } else {
            bus.read_phys(e.paddr | (lin & 0xfff), buf);
        }
    }

    fn write_in_page(&mut self, bus: &mut dyn CpuBus, e: &TlbEntry, lin: u64, data: &[u8]) {
        let off = (lin & 0xfff) as usize;
        if let Some(cp) = self.code_pages.get(&e.paddr) {
            if cp.overlaps(off, data.len()) {
                self.invalidate_code_page(e.paddr);
            }
        }
        if e.attrs & ATTR_RAM_WRITE != 0 {
            // SAFETY: `ATTR_RAM_WRITE` means `addend + page` maps the whole
            // 4 KiB page writably on the host; the access stays in the page.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    data.as_ptr(),
                    e.addend.wrapping_add(lin) as *mut u8,
                    data.len(),
                )
            };
        } else {
            self.mmio_written = true;
            let act = bus.write_phys(e.paddr | off as u64, data);
            if act != BusAction::Continue {
                self.pending_action = Some(act);
            }
        }
        // After the store: a vCPU decoding the page meanwhile either read
        // the new bytes or is told now (see `share`).
        if let Some((share, slot, _)) = &self.share {
            share.written(Some(*slot), e.paddr, off, data.len());
        }
    }

    /// Reads `buf.len()` (at most 4096) bytes at a linear address (any
    /// alignment, page crossings, MMIO).
    pub fn read(
        &mut self,
        st: &CpuState,
        bus: &mut dyn CpuBus,
        lin: u64,
        buf: &mut [u8],
        user: bool,
    ) -> XResult<()> {
        let first = (0x1000 - (lin & 0xfff) as usize).min(buf.len());
        let e1 = self.translate(st, bus, lin, Access::Read, user)?;
        if first < buf.len() {
            let lin2 = (lin & PAGE_MASK).wrapping_add(0x1000);
            let lin2 = if st.efer & crate::consts::efer::LMA == 0 {
                lin2 & 0xffff_ffff
            } else {
                lin2
            };
            let e2 = self.translate(st, bus, lin2, Access::Read, user)?;
            let (a, b) = buf.split_at_mut(first);
            self.read_in_page(bus, &e1, lin, a);
            self.read_in_page(bus, &e2, lin2, b);
        } else {
            self.read_in_page(bus, &e1, lin, buf);
        }
        if self.watching {
            self.check_watch(lin, buf.len(), false);
        }
        Ok(())
    }

    /// Writes `data` (at most 4096 bytes) at a linear address. Both pages of
    /// a crossing write are translated before any byte is written.
    pub fn write(
        &mut self,
        st: &CpuState,
        bus: &mut dyn CpuBus,
        lin: u64,
        data: &[u8],
        user: bool,
    ) -> XResult<()> {
        let first = (0x1000 - (lin & 0xfff) as usize).min(data.len());
        let e1 = self.translate(st, bus, lin, Access::Write, user)?;
        if first < data.len() {
            let lin2 = (lin & PAGE_MASK).wrapping_add(0x1000);
            let lin2 = if st.efer & crate::consts::efer::LMA == 0 {
                lin2 & 0xffff_ffff
            } else {
                lin2
            };
            let e2 = self.translate(st, bus, lin2, Access::Write, user)?;
            self.write_in_page(bus, &e1, lin, &data[..first]);
            self.write_in_page(bus, &e2, lin2, &data[first..]);
        } else {
            self.write_in_page(bus, &e1, lin, data);
        }
        if self.watching {
            self.check_watch(lin, data.len(), true);
        }
        Ok(())
    }

    /// Checks that a write of `len` bytes at `lin` would not fault (used by
    /// instructions that must fault before changing anything).
    pub fn probe_write(
        &mut self,
        st: &CpuState,
        bus: &mut dyn CpuBus,
        lin: u64,
        len: usize,
        user: bool,
    ) -> XResult<()> {
        self.translate(st, bus, lin, Access::Write, user)?;
        let last = lin.wrapping_add(len.max(1) as u64 - 1);
        if last & PAGE_MASK != lin & PAGE_MASK {
            self.translate(st, bus, last, Access::Write, user)?;
        }
        Ok(())
    }

    fast_rw!(read_u8, write_u8, u8);
    fast_rw!(read_u16, write_u16, u16);
    fast_rw!(read_u32, write_u32, u32);
    fast_rw!(read_u64, write_u64, u64);
    fast_rw!(read_u128, write_u128, u128);

    /// Records that bytes `[paddr, paddr+len)` (within one page) hold
    /// translated code: later guest writes there take the slow path and
    /// invalidate the page's translations.
    pub fn mark_code(&mut self, paddr: u64, len: usize) {
        let page = paddr & PAGE_MASK;
        self.claim_code_page(page);
        if let Some(cp) = self.code_pages.get_mut(&page) {
            cp.set((paddr & 0xfff) as usize, len);
        }
    }

    /// Makes `page` a code page of this vCPU before its bytes are read for
    /// a decode: from now on every write to it takes the slow path, and
    /// other vCPUs report their writes to it (see `share`), so a store that
    /// races with the decode is not lost. [`Mmu::mark_code`] then records
    /// which bytes the decode used.
    pub fn claim_code_page(&mut self, page: u64) {
        if self.code_pages.contains_key(&page) {
            return;
        }
        self.code_pages.insert(page, CodePage { bits: [0; 64] });
        if let Some((share, slot, _)) = &self.share {
            share.mark(*slot, page);
        }
        for t in self.tlb.iter_mut() {
            for e in t.iter_mut() {
                if e.paddr == page && e.tag_write & TAG_INVALID == 0 {
                    e.tag_write |= TAG_SLOW;
                }
            }
        }
    }

    /// Forgets the code of a physical page and queues it in
    /// [`Mmu::dirty_code`] for the code cache.
    pub fn invalidate_code_page(&mut self, page: u64) {
        if self.code_pages.remove(&page).is_some() {
            self.dirty_code.push(page);
            if let Some((share, slot, _)) = &self.share {
                share.unmark(*slot, page);
                if share.mask(page) != 0 {
                    return;
                }
            }
            for t in self.tlb.iter_mut() {
                for e in t.iter_mut() {
                    if e.paddr == page
                        && e.tag_write & TAG_INVALID == 0
                        && e.attrs & (ATTR_RAM_WRITE | ATTR_SMAP) == ATTR_RAM_WRITE
                        && !watched_write(&self.watch, e.tag_write)
                    {
                        e.tag_write &= !TAG_SLOW;
                    }
                }
            }
        }
    }

    /// Forgets all code pages (when the code cache is flushed).
    pub fn clear_code_pages(&mut self) {
        if let Some((share, slot, _)) = &self.share {
            for page in self.code_pages.keys() {
                share.unmark(*slot, *page);
            }
        }
        self.code_pages.clear();
        self.dirty_code.clear();
        let share = self.share.clone();
        for t in self.tlb.iter_mut() {
            for e in t.iter_mut() {
                if e.tag_write & TAG_INVALID == 0
                    && share.as_ref().is_none_or(|(s, _, _)| s.mask(e.paddr) == 0)
                    && e.attrs & (ATTR_RAM_WRITE | ATTR_SMAP) == ATTR_RAM_WRITE
                    && !watched_write(&self.watch, e.tag_write)
                {
                    e.tag_write &= !TAG_SLOW;
                }
            }
        }
    }

    /// A code page was written or a bus action is pending: the executing
    /// block must stop after the current instruction.
    #[inline(always)]
    pub fn events(&self) -> bool {
        !self.dirty_code.is_empty() || self.pending_action.is_some() || self.mmio_written
    }

    /// Whether a physical page holds translated code.
    pub fn is_code_page(&self, paddr: u64) -> bool {
        self.code_pages.contains_key(&(paddr & PAGE_MASK))
    }
}

#[cfg(test)]
mod share_tests;
