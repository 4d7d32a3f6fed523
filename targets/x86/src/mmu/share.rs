//! Code-page tracking shared by the vCPUs of one machine (SMP).
//!
//! Each vCPU keeps its own decoded/translated blocks and its own byte-exact
//! map of the code in them ([`super::Mmu`]). [`CodeShare`] adds what the
//! vCPUs must know of each other:
//!
//! * per physical page, the set of vCPUs holding code there (a bit mask).
//!   A TLB fill never gives a fast write path to a page any vCPU holds code
//!   in, so every guest store there reaches [`super::Mmu::write`];
//! * per vCPU, a mailbox ([`Remote`]) of pages other vCPUs (or devices)
//!   wrote, and of pages that became code elsewhere, drained by the owner at
//!   its next block boundary ([`super::Mmu::drain_remote`]).
//!
//! A decoding vCPU sets its bit for the page *before* it reads the code
//! bytes ([`CodeShare::mark`]), and a writer reports a store *after* it
//! made it ([`CodeShare::written`]), each with a full fence between: either
//! the decode reads the new bytes or the writer sees the decoder's bit and
//! tells it (the store/load pairs of Dekker's algorithm). A report that
//! reaches the decoder is acted on at its next block boundary, after the
//! decode has recorded which bytes it used.
//!
//! When a page first becomes code anywhere, every other vCPU drops the fast
//! write path it may still have cached for it. A vCPU that had one may have
//! written the page after the decode, so it reports the whole page written:
//! the new code is decoded again. Stores that race with a decode are thus
//! seen at the latest when the storing vCPU reaches its next block boundary,
//! as cross-modifying code needs (SDM Vol. 3A 8.1.3); a looping vCPU sees
//! another vCPU's patch within one dispatcher round (at most a few thousand
//! blocks).

use std::collections::HashMap;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// The most vCPUs one [`CodeShare`] tracks (bits of a mask).
pub const MAX_VCPUS: usize = 64;

/// What other vCPUs ask of one vCPU.
#[derive(Default)]
pub struct Remote {
    pending: AtomicBool,
    inbox: Mutex<Inbox>,
}

#[derive(Default)]
pub(crate) struct Inbox {
    /// Bytes `(page, offset, len)` another vCPU or a device wrote.
    pub writes: Vec<(u64, u16, u16)>,
    /// Pages that became code on another vCPU: no fast writes there.
    pub code: Vec<u64>,
}

impl Remote {
    /// Something is waiting (one relaxed load on the hot path).
    #[inline(always)]
    pub fn pending(&self) -> bool {
        self.pending.load(Ordering::Relaxed)
    }

    pub(crate) fn take(&self) -> Inbox {
        self.pending.store(false, Ordering::Relaxed);
        std::mem::take(&mut *lock(&self.inbox))
    }

    fn push(&self, f: impl FnOnce(&mut Inbox)) {
        f(&mut lock(&self.inbox));
        self.pending.store(true, Ordering::Release);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The machine-wide code map (see the module documentation).
pub struct CodeShare {
    /// Masks of the pages below `masks.len() << 12`.
    masks: Box<[AtomicU64]>,
    /// Masks of pages above (ROM near 4 GiB, high RAM beyond the flat map).
    high: Mutex<HashMap<u64, u64>>,
    vcpus: Mutex<Vec<Arc<Remote>>>,
}

impl std::fmt::Debug for CodeShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeShare")
            .field("pages", &self.masks.len())
            .finish_non_exhaustive()
    }
}

impl CodeShare {
    /// A map whose flat part covers physical addresses below `flat_limit`
    /// (the top of low RAM; pages above use a slower map).
    pub fn new(flat_limit: u64) -> Arc<Self> {
        let n = usize::try_from(flat_limit.div_ceil(4096)).unwrap_or(0);
        Arc::new(CodeShare {
            masks: (0..n).map(|_| AtomicU64::new(0)).collect(),
            high: Mutex::new(HashMap::new()),
            vcpus: Mutex::new(Vec::new()),
        })
    }

    /// Registers a vCPU; returns its slot and mailbox, or `None` when
    /// [`MAX_VCPUS`] are registered.
    pub fn register(&self) -> Option<(usize, Arc<Remote>)> {
        let mut v = lock(&self.vcpus);
        if v.len() >= MAX_VCPUS {
            return None;
        }
        let r = Arc::new(Remote::default());
        v.push(r.clone());
        Some((v.len() - 1, r))
    }

    fn update(&self, page: u64, f: impl Fn(u64) -> u64) -> (u64, u64) {
        match self.masks.get((page >> 12) as usize) {
            Some(m) => {
                let mut old = m.load(Ordering::Acquire);
                loop {
                    let new = f(old);
                    match m.compare_exchange_weak(old, new, Ordering::AcqRel, Ordering::Acquire) {
                        Ok(_) => return (old, new),
                        Err(o) => old = o,
                    }
                }
            }
            None => {
                let mut h = lock(&self.high);
                let old = h.get(&page).copied().unwrap_or(0);
                let new = f(old);
                if new == 0 {
                    h.remove(&page);
                } else {
                    h.insert(page, new);
                }
                (old, new)
            }
        }
    }

    /// The vCPUs holding code in `page`.
    #[inline]
    pub fn mask(&self, page: u64) -> u64 {
        match self.masks.get((page >> 12) as usize) {
            Some(m) => m.load(Ordering::Acquire),
            None => lock(&self.high).get(&page).copied().unwrap_or(0),
        }
    }

    /// vCPU `slot` now holds code in `page` (called before it reads the
    /// bytes). The first holder makes every other vCPU drop its fast write
    /// path to the page.
    pub fn mark(&self, slot: usize, page: u64) {
        let (old, _) = self.update(page, |m| m | 1 << slot);
        // The bit is visible before the caller reads the code bytes.
        fence(Ordering::SeqCst);
        if old == 0 {
            for (i, r) in lock(&self.vcpus).iter().enumerate() {
                if i != slot {
                    r.push(|b| b.code.push(page));
                }
            }
        }
    }

    /// vCPU `slot` dropped its code in `page`.
    pub fn unmark(&self, slot: usize, page: u64) {
        self.update(page, |m| m & !(1 << slot));
    }

    /// Bytes `[off, off + len)` of `page` were written by vCPU `from` (or by
    /// a device: `None`; called after the store): every other vCPU holding
    /// code there checks its blocks. Returns whether anyone was told.
    pub fn written(&self, from: Option<usize>, page: u64, off: usize, len: usize) -> bool {
        // The store is visible before the holders are read.
        fence(Ordering::SeqCst);
        let mut mask = self.mask(page);
        if let Some(s) = from {
            mask &= !(1 << s);
        }
        if mask == 0 {
            return false;
        }
        let (off, len) = (off.min(4095) as u16, len.clamp(1, 4096) as u16);
        for (i, r) in lock(&self.vcpus).iter().enumerate() {
            if mask & (1 << i) != 0 {
                r.push(|b| b.writes.push((page, off, len)));
            }
        }
        true
    }

    /// A device (DMA) or the machine wrote guest RAM `[paddr, paddr + len)`:
    /// code any vCPU decoded there is dropped before it runs again.
    pub fn dma_written(&self, paddr: u64, len: u64) {
        let end = paddr.saturating_add(len.max(1));
        let mut p = paddr & !0xfff;
        while p < end {
            let lo = paddr.max(p);
            let hi = end.min(p + 0x1000);
            self.written(None, p, (lo - p) as usize, (hi - lo) as usize);
            p += 0x1000;
        }
    }
}
