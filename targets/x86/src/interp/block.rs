//! Decoded-block cache, keyed by physical address and decode mode.
//!
//! A block is a run of decoded instructions inside one 4 KiB page, ending at
//! a control transfer, the page end or [`MAX_BLOCK_INSNS`]. Its bytes are
//! registered with the [`crate::mmu::Mmu`]; a guest write to them queues the
//! page in `Mmu::dirty_code` and [`Cpu::process_dirty_code`] drops the
//! page's blocks before the next lookup. An instruction that straddles a
//! page end is decoded on every execution and never cached.

use rustc_hash::FxHashMap as HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize};
use std::sync::Arc;

use iced_x86::{Decoder, DecoderError, DecoderOptions, FlowControl, Instruction, Mnemonic};

use super::Cpu;
use crate::bus::CpuBus;
use crate::exception::{Exception, XResult};
use crate::mmu::tlb::{ATTR_RAM_READ, PAGE_MASK};
use crate::mmu::Access;
use crate::SegReg;

pub const MAX_BLOCK_INSNS: usize = 64;
/// Bytes read for decoding one block (enough for its longest form).
const MAX_BLOCK_BYTES: usize = 1024;
const JMP_CACHE_SIZE: usize = 4096;
/// The cache is flushed whole when it holds more blocks than this.
const MAX_BLOCKS: usize = 1 << 16;

/// What a decoded block depends on besides its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockKey {
    /// Physical address of the first byte.
    pub phys: u64,
    /// RIP of the first instruction (branch targets are RIP-relative).
    pub rip: u64,
    pub cs_base: u64,
    /// Decoder bitness: 16, 32 or 64.
    pub bitness: u32,
}

/// A decoded instruction and its semantics.
pub struct Op {
    pub insn: Instruction,
    /// The full semantics.
    pub exec: super::exec::Handler,
    /// What the block's fast path runs: `exec`, or a variant that skips
    /// flags no later instruction can observe (see [`elide_dead_flags`]).
    pub fast: super::exec::Handler,
}

impl Op {
    fn new(insn: Instruction) -> Self {
        let exec = super::fast::lookup(&insn);
        Op {
            exec,
            fast: exec,
            insn,
        }
    }
}

/// Backward liveness of the arithmetic flags over a block: a pure
/// instruction (no fault possible, registers only) whose flag results are
/// all overwritten by later pure instructions before any read, fault or
/// block end gets a flag-free `fast` handler. The slow path (TF, single
/// step, interrupt shadow) always runs `exec`.
fn elide_dead_flags(ops: &mut [Op]) {
    use iced_x86::RflagsBits as R;
    const ARITH: u32 = R::OF | R::SF | R::ZF | R::AF | R::CF | R::PF;
    // Flags certainly overwritten before being observed, after the op.
    let mut dead = 0u32;
    for op in ops.iter_mut().rev() {
        let i = &op.insn;
        if !super::fast::is_pure(i) {
            dead = 0;
            continue;
        }
        let w = i.rflags_modified() & ARITH;
        let r = i.rflags_read() & ARITH;
        let mut elided = false;
        if w != 0 && w & !dead == 0 && r == 0 {
            if let Some(h) = super::fast::dead_flag_variant(i) {
                op.fast = h;
                elided = true;
            }
        }
        dead = if elided { dead & !r } else { (dead | w) & !r };
    }
}

/// A decoded block.
pub struct Block {
    pub key: BlockKey,
    pub ops: Vec<Op>,
    /// The JIT's view of the block (heat, translation).
    pub jit: BlockJit,
    /// A one-instruction block whose instruction straddles a page end: the
    /// physical page its tail was read from (checked on every lookup).
    pub phys2: Option<u64>,
}

/// Per-block JIT state: how often the block ran, and its translation.
#[derive(Debug, Default)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub struct BlockJit {
    pub(crate) heat: AtomicU32,
    /// Host entry (0: none), valid for `generation` of the JIT only.
    pub(crate) entry: AtomicUsize,
    pub(crate) generation: AtomicU32,
    /// CPL and CS limit the translation assumes.
    pub(crate) assume: AtomicU64,
}

pub(crate) struct BlockCache {
    map: HashMap<BlockKey, Arc<Block>>,
    /// Blocks dropped from the cache while one may still be executing;
    /// freed at the next block boundary.
    graveyard: Vec<Arc<Block>>,
    by_page: HashMap<u64, Vec<BlockKey>>,
    jmp: Vec<Option<Arc<Block>>>,
}

impl BlockCache {
    pub fn new() -> Self {
        BlockCache {
            map: HashMap::default(),
            graveyard: Vec::new(),
            by_page: HashMap::default(),
            jmp: vec![None; JMP_CACHE_SIZE],
        }
    }
    fn flush(&mut self) {
        self.graveyard.extend(self.map.drain().map(|(_, b)| b));
        self.by_page.clear();
        self.jmp.iter_mut().for_each(|e| *e = None);
    }
    /// Number of cached blocks.
    pub fn len(&self) -> usize {
        self.map.len()
    }
}

#[inline]
fn jmp_index(lin: u64) -> usize {
    ((lin ^ (lin >> 12)) as usize) & (JMP_CACHE_SIZE - 1)
}

fn ends_block(i: &Instruction) -> bool {
    i.flow_control() != FlowControl::Next
        || matches!(
            i.mnemonic(),
            Mnemonic::Hlt
                | Mnemonic::Sti
                | Mnemonic::Popf
                | Mnemonic::Iret
                | Mnemonic::Iretd
                | Mnemonic::Iretq
        )
}

impl Cpu {
    /// Drops the blocks of pages whose code the guest overwrote.
    #[inline]
    pub(crate) fn process_dirty_code(&mut self) {
        if !self.cache.graveyard.is_empty() {
            self.cache.graveyard.clear();
        }
        if self.mmu.remote_pending() {
            self.mmu.drain_remote();
        }
        if self.mmu.dirty_code.is_empty() {
            return;
        }
        self.drop_dirty_blocks();
    }

    #[cold]
    fn drop_dirty_blocks(&mut self) {
        let pages = std::mem::take(&mut self.mmu.dirty_code);
        for p in pages {
            if let Some(keys) = self.cache.by_page.remove(&p) {
                for k in keys {
                    if let Some(b) = self.cache.map.remove(&k) {
                        #[cfg(target_arch = "x86_64")]
                        if let Some(j) = self.jit.as_mut() {
                            j.unlink_block(&b);
                        }
                        self.cache.graveyard.push(b);
                    }
                }
            }
        }
        for e in self.cache.jmp.iter_mut() {
            if let Some(b) = e {
                if !self.cache.map.contains_key(&b.key) {
                    *e = None;
                }
            }
        }
    }

    /// Drops every cached block (and the code-page tracking).
    pub fn flush_code_cache(&mut self) {
        self.cache.flush();
        #[cfg(target_arch = "x86_64")]
        if let Some(j) = self.jit.as_mut() {
            j.reset();
        }
        self.mmu.clear_code_pages();
    }

    /// Number of blocks in the cache.
    pub fn cached_blocks(&self) -> usize {
        self.cache.len()
    }

    /// Finds or decodes the block at CS:RIP. The pointer stays valid until
    /// the next call of [`Cpu::process_dirty_code`] (blocks dropped from
    /// the cache meanwhile wait in the graveyard).
    pub(crate) fn fetch_block(&mut self, bus: &mut dyn CpuBus) -> XResult<*const Block> {
        let rip = self.state.rip;
        let cs = *self.state.seg(SegReg::Cs);
        let (lin, cs_base, max_len) = if self.long64 {
            if !crate::mmu::seg::is_canonical(rip) {
                return Err(Exception::gp0());
            }
            (rip, 0, u64::MAX)
        } else {
            if rip > cs.limit as u64 {
                return Err(Exception::gp0());
            }
            (
                (cs.base.wrapping_add(rip)) & 0xffff_ffff,
                cs.base,
                cs.limit as u64 - rip + 1,
            )
        };
        let bitness = self.bitness();
        let ji = jmp_index(lin);
        // Fast path: a jump-cache hit whose page the TLB still maps to the
        // same physical address.
        if let Some(b) = &self.cache.jmp[ji] {
            let k = &b.key;
            let e = &self.mmu.tlb[self.user as usize][crate::mmu::tlb_index(lin)];
            if k.rip == rip
                && k.cs_base == cs_base
                && k.bitness == bitness
                && e.tag_exec == lin & PAGE_MASK
                && (e.paddr | (lin & 0xfff)) == k.phys
                && b.phys2.is_none()
            {
                return Ok(Arc::as_ptr(b));
            }
        }
        let e = self
            .mmu
            .translate(&self.state, bus, lin, Access::Exec, self.user)?;
        let phys = e.paddr | (lin & 0xfff);
        let key = BlockKey {
            phys,
            rip,
            cs_base,
            bitness,
        };
        if let Some(b) = &self.cache.jmp[ji] {
            if b.key == key && b.phys2.is_none() {
                return Ok(Arc::as_ptr(b));
            }
        }
        if let Some(b) = self.cache.map.get(&key) {
            let b = b.clone();
            let valid = match b.phys2 {
                None => true,
                Some(p2) => {
                    let lin2 = self.next_page(lin);
                    self.mmu
                        .phys_addr(&self.state, bus, lin2, Access::Exec, self.user)?
                        & PAGE_MASK
                        == p2
                }
            };
            if valid {
                let p = Arc::as_ptr(&b);
                if b.phys2.is_none() {
                    self.cache.jmp[ji] = Some(b);
                }
                return Ok(p);
            }
        }
        // Decode a new block from the bytes up to the page end / CS limit
        // (at most what MAX_BLOCK_INSNS instructions can use).
        let off = (lin & 0xfff) as usize;
        let avail = ((4096 - off) as u64).min(max_len) as usize;
        let mut bytes = [0u8; MAX_BLOCK_BYTES];
        let buf = &mut bytes[..avail.min(MAX_BLOCK_BYTES)];
        let avail = buf.len();
        self.mmu.claim_code_page(phys & PAGE_MASK);
        if e.attrs & ATTR_RAM_READ != 0 {
            // SAFETY: the entry maps the whole 4 KiB page on the host and
            // `off + avail <= 4096`.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    e.addend.wrapping_add(lin) as *const u8,
                    buf.as_mut_ptr(),
                    avail,
                )
            };
        } else {
            bus.read_phys(phys, buf);
        }
        self.decoded_blocks += 1;
        let buf = &*buf;
        let mut dec = Decoder::with_ip(key.bitness, buf, rip, DecoderOptions::NONE);
        let mut insns = Vec::new();
        let mut insn = Instruction::default();
        let mut used = 0usize;
        while dec.can_decode() && insns.len() < MAX_BLOCK_INSNS {
            dec.decode_out(&mut insn);
            if insn.is_invalid() && dec.last_error() == DecoderError::NoMoreBytes {
                break;
            }
            used += insn.len();
            let stop = insn.is_invalid() || ends_block(&insn);
            insns.push(Op::new(insn));
            if stop {
                break;
            }
        }
        if insns.is_empty() {
            // The first instruction straddles the page end or the CS limit.
            self.crossing_decodes += 1;
            let (i, phys2) = self.decode_crossing(bus, lin, rip, key.bitness, buf, max_len)?;
            let b = Arc::new(Block {
                key,
                ops: vec![Op::new(i)],
                jit: BlockJit::default(),
                phys2,
            });
            let p = Arc::as_ptr(&b);
            match phys2 {
                // Cached under both pages: a write to either drops it.
                Some(p2) if off + i.len() > 4096 => {
                    let head = 4096 - off;
                    self.mmu.mark_code(phys, head);
                    self.mmu.mark_code(p2, i.len() - head);
                    self.cache.map.insert(key, b);
                    for pg in [phys & PAGE_MASK, p2] {
                        self.cache.by_page.entry(pg).or_default().push(key);
                    }
                }
                // Uncached (CS-limit cases): kept alive until the next
                // block boundary.
                _ => self.cache.graveyard.push(b),
            }
            return Ok(p);
        }
        elide_dead_flags(&mut insns);
        if self.cache.map.len() >= MAX_BLOCKS {
            self.flush_code_cache();
        }
        self.mmu.mark_code(phys, used.max(1));
        let b = Arc::new(Block {
            key,
            ops: insns,
            jit: BlockJit::default(),
            phys2: None,
        });
        self.cache.map.insert(key, b.clone());
        self.cache
            .by_page
            .entry(phys & PAGE_MASK)
            .or_default()
            .push(key);
        let p = Arc::as_ptr(&b);
        self.cache.jmp[ji] = Some(b);
        Ok(p)
    }

    /// Linear address of the page after `lin`'s (wrapping at 4 GiB
    /// outside 64-bit mode).
    fn next_page(&self, lin: u64) -> u64 {
        let lin2 = (lin & PAGE_MASK).wrapping_add(0x1000);
        if self.long64 {
            lin2
        } else {
            lin2 & 0xffff_ffff
        }
    }

    /// Decodes an instruction that straddles the page end (or runs into
    /// the CS limit); also returns the physical page of its tail when it
    /// needed the next page.
    fn decode_crossing(
        &mut self,
        bus: &mut dyn CpuBus,
        lin: u64,
        rip: u64,
        bitness: u32,
        first: &[u8],
        max_len: u64,
    ) -> XResult<(Instruction, Option<u64>)> {
        let mut bytes = [0u8; 15];
        let n1 = first.len().min(15);
        bytes[..n1].copy_from_slice(&first[..n1]);
        let total = (max_len.min(15)) as usize;
        let mut phys2 = None;
        if total > n1 {
            let lin2 = self.next_page(lin);
            // Only fault on the second page if the instruction needs it.
            let mut dec = Decoder::with_ip(bitness, &bytes[..n1], rip, DecoderOptions::NONE);
            let i = dec.decode();
            if !i.is_invalid() {
                return Ok((i, None));
            }
            let p2 = self
                .mmu
                .phys_addr(&self.state, bus, lin2, Access::Exec, self.user)?;
            self.mmu.claim_code_page(p2 & PAGE_MASK);
            bus.read_phys(p2, &mut bytes[n1..total]);
            phys2 = Some(p2 & PAGE_MASK);
        }
        let mut dec = Decoder::with_ip(bitness, &bytes[..total], rip, DecoderOptions::NONE);
        let i = dec.decode();
        if i.is_invalid() && dec.last_error() == DecoderError::NoMoreBytes {
            // Runs past the CS limit (or 15 bytes): #GP(0).
            return Err(Exception::gp0());
        }
        Ok((i, phys2))
    }
}
