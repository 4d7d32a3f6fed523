//! The code region: one fixed-size executable mapping, preallocated, never
//! moved, filled by bumping a pointer and emptied whole ([`Region::reset`])
//! when full. Generated code holds absolute and rel32 references into it,
//! so it must not grow or move under live blocks.

use std::ptr::NonNull;

/// An `mmap`ed read/write/execute region.
pub struct Region {
    base: NonNull<u8>,
    size: usize,
    /// Bytes kept across resets (the entry trampoline and shared stubs).
    reserved: usize,
    used: usize,
}

// SAFETY: the region is plain memory owned by one `Jit` (one vCPU); it is
// only touched through `&mut self` or by code running on the owning thread.
unsafe impl Send for Region {}

impl Region {
    /// Maps `size` bytes (rounded up to pages). `None` if the host refuses
    /// an executable mapping (e.g. a W^X policy).
    pub fn new(size: usize) -> Option<Region> {
        let size = (size.max(1 << 16) + 0xfff) & !0xfff;
        // SAFETY: an anonymous private mapping with no address hint; the
        // result is checked before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return None;
        }
        Some(Region {
            base: NonNull::new(p as *mut u8)?,
            size,
            reserved: 0,
            used: 0,
        })
    }

    /// Address the next [`Region::append`] writes at.
    pub fn cursor(&self) -> usize {
        self.base.as_ptr() as usize + self.used
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// Bytes still free.
    pub fn free(&self) -> usize {
        self.size - self.used
    }

    /// Copies `code` (assembled for address [`Region::cursor`]) in and
    /// returns its address, or `None` if it does not fit.
    pub fn append(&mut self, code: &[u8]) -> Option<usize> {
        if code.len() > self.free() {
            return None;
        }
        let at = self.cursor();
        // SAFETY: `[at, at + len)` lies inside the mapping (checked above)
        // and no generated code runs while the translator appends.
        unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), at as *mut u8, code.len()) };
        // 16-byte align the next block.
        self.used = (self.used + code.len() + 15) & !15;
        self.used = self.used.min(self.size);
        Some(at)
    }

    /// Everything appended so far survives [`Region::reset`].
    pub fn reserve_current(&mut self) {
        self.reserved = self.used;
    }

    /// Nothing but the reserved head is in the region.
    pub fn is_empty(&self) -> bool {
        self.used == self.reserved
    }

    /// Forgets every block (keeps the reserved head).
    pub fn reset(&mut self) {
        self.used = self.reserved;
    }

    /// Whether `addr` lies in the written part of the region.
    pub fn contains(&self, addr: usize) -> bool {
        let b = self.base.as_ptr() as usize;
        addr >= b && addr < b + self.used
    }

    /// Overwrites the 4 bytes at `addr` (a rel32 of a block link).
    pub fn patch_rel32(&mut self, addr: usize, rel: i32) {
        debug_assert!(self.contains(addr) && self.contains(addr + 3));
        // SAFETY: `addr..addr+4` is inside the written part of the mapping
        // (a link site recorded by the translator); the owning vCPU thread
        // is in the dispatcher, not in generated code, when it patches.
        unsafe { std::ptr::write_unaligned(addr as *mut i32, rel) };
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`; no code runs
        // from it any more (the owning `Jit` is being dropped).
        unsafe { libc::munmap(self.base.as_ptr() as *mut libc::c_void, self.size) };
    }
}
