//! Tier 2 of the DBT: a JIT that turns hot guest blocks into x86-64 host
//! code with dynasmrt (x86-64 hosts only).
//!
//! The interpreter's decoded [`Block`]s are the unit: each counts its
//! executions, and when one reaches [`JitConfig::threshold`] it is
//! translated ([`emit`], [`insn`]) into the code [`region`]. The
//! dispatcher ([`Cpu::run`]) then enters the host code instead of
//! interpreting the block, through a trampoline that keeps the `Cpu` in
//! rbx. Generated code keeps guest registers in `CpuState` (memory
//! operands), guest flags in host EFLAGS between instructions, does the
//! softmmu TLB lookup inline, and calls the interpreter's semantics for
//! everything it does not emit natively and for every slow memory access
//! (miss, MMIO, code page, page crossing, fault), so a fault is delivered
//! by the interpreter with the state of the faulting instruction.
//!
//! Direct jumps to a block on the same guest page are linked (patched
//! into a host `jmp`) the first time the dispatcher sees the exit reach a
//! translated target; invalidating a block unlinks the jumps into it. A
//! budget decremented at every block entry bounds how long chained code
//! runs before the dispatcher polls interrupts, timers and kicks.
//!
//! See docs/jit.md for the whole story.

mod emit;
mod helpers;
mod insn;
mod region;

use rustc_hash::FxHashMap as HashMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use dynasmrt::{dynasm, DynasmApi, DynasmLabelApi};

use crate::bus::CpuBus;
pub use crate::interp::BlockJit;
use crate::interp::{Block, Cpu};
use crate::mmu::tlb::{TlbEntry, PAGE_MASK, TLB_SIZE};
use crate::SegReg;
use emit::{Tr, TrCtx, BUDGET, RIP};
pub use helpers::Ctx;
use insn::Emitted;
use region::Region;

pub use crate::interp::JitConfig;

/// Counters for `-d stats`.
#[derive(Clone, Debug, Default)]
pub struct JitStats {
    pub blocks: u64,
    pub flushes: u64,
    pub links: u64,
    pub native_insns: u64,
    pub helper_insns: u64,
    pub code_bytes: u64,
    pub translate_ns: u64,
    pub entries: u64,
    /// Instructions generated code handed to the interpreter at run time.
    pub helper_runs: u64,
}

/// Smallest code region (a few blocks; tests use it to force flushes).
const MIN_REGION: usize = 64 << 10;

/// Entries of the indirect-jump cache.
pub(crate) const IJC_SIZE: usize = 4096;

/// One indirect-jump cache entry (layout used by generated code).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct IjcEntry {
    rip: u64,
    phys_page: u64,
    entry: u64,
    /// Mode tag of the block (0: empty).
    mode: u64,
}

/// The indirect-jump cache: 64-bit blocks by RIP, filled by the
/// dispatcher, probed inline by exits whose target is not linked.
type Ijc = [IjcEntry; IJC_SIZE];

fn ijc_index(rip: u64) -> usize {
    ((rip ^ (rip >> 12)) as usize) & (IJC_SIZE - 1)
}

/// A nonzero tag for what a block assumes besides its RIP and page.
fn mode_tag(cs_base: u64, bitness: u32, assume: u64) -> u64 {
    let h = cs_base
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(assume.wrapping_mul(0xff51_afd7_ed55_8ccd))
        .wrapping_add(bitness as u64);
    h | 1 << 63
}

/// Where a patchable exit jumps to, and what the source assumed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Site {
    rip: u64,
    phys_page: u64,
    cs_base: u64,
    bitness: u32,
    assume: u64,
}

/// One vCPU's JIT: code region, link bookkeeping, statistics.
pub struct Jit {
    region: Region,
    enter: usize,
    exit: usize,
    exit_stash: usize,
    generation: u32,
    sites: HashMap<usize, Site>,
    /// Entry address -> link sites patched to jump there.
    links: HashMap<usize, Vec<usize>>,
    ijc: Box<Ijc>,
    pub config: JitConfig,
    pub stats: JitStats,
    /// Log guest (`in_asm`) and host (`out_asm`) code of translations.
    dump_in: bool,
    dump_out: bool,
    /// `/tmp/perf-<pid>.map`, so `perf` names translated blocks.
    perf_map: Option<std::fs::File>,
}

type EnterFn = unsafe extern "sysv64" fn(*mut Cpu, *mut Ctx<'_>, usize) -> u32;

impl Jit {
    /// Maps the code region; `None` if the host refuses executable memory.
    pub fn new(config: JitConfig) -> Option<Box<Jit>> {
        let mut region = Region::new(config.cache_size.max(MIN_REGION))?;
        let mut a = emit::Asm::new(region.cursor());
        let exit_off = a.offset();
        dynasm!(a
            ; .arch x64
            ; ->exit:
            ; add rsp, 8
            ; pop r15
            ; pop r14
            ; pop r13
            ; pop r12
            ; pop rbp
            ; pop rbx
            ; ret
        );
        // The exit for flags in the stash: merge them into RFLAGS.
        let exit_stash_off = a.offset();
        let keep = !0x8d5i32;
        dynasm!(a
            ; .arch x64
            ; mov ax, WORD [rbx + emit::STASH]
            ; movzx ecx, ah
            ; and ecx, 0xd5
            ; movzx eax, al
            ; shl eax, 11
            ; or ecx, eax
            ; and QWORD [rbx + emit::RFLAGS], keep
            ; or QWORD [rbx + emit::RFLAGS], rcx
            ; jmp ->exit
        );
        let enter_off = a.offset();
        dynasm!(a
            ; .arch x64
            ; push rbx
            ; push rbp
            ; push r12
            ; push r13
            ; push r14
            ; push r15
            ; sub rsp, 8
            ; mov rbx, rdi
            ; mov QWORD [rbx + emit::CTX], rsi
            // Blocks find the guest flags in the stash (LAHF/SETO form).
            ; mov eax, DWORD [rbx + emit::RFLAGS]
            ; mov ecx, eax
            ; shr ecx, 11
            ; mov ah, al
            ; mov al, cl
            ; and al, 1
            ; mov WORD [rbx + emit::STASH], ax
            ; jmp rdx
        );
        let code = a.finalize().ok()?;
        let base = region.append(&code)?;
        region.reserve_current();
        Some(Box::new(Jit {
            region,
            enter: base + enter_off.0,
            exit: base + exit_off.0,
            exit_stash: base + exit_stash_off.0,
            generation: 1,
            sites: HashMap::default(),
            links: HashMap::default(),
            ijc: Box::new([IjcEntry::default(); IJC_SIZE]),
            stats: JitStats::default(),
            dump_in: log::log_enabled!(target: "in_asm", log::Level::Info),
            dump_out: log::log_enabled!(target: "out_asm", log::Level::Info),
            perf_map: if config.perf_map {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(format!("/tmp/perf-{}.map", std::process::id()))
                    .ok()
            } else {
                None
            },
            config,
        }))
    }

    /// Whether this host can run the JIT (maps a small region).
    pub fn available() -> bool {
        Jit::new(JitConfig {
            threshold: 1,
            cache_size: 1 << 20,
            perf_map: false,
        })
        .is_some()
    }

    /// Size of the code region (fixed for the life of the JIT).
    pub fn region_size(&self) -> usize {
        self.region.size()
    }

    /// Drops every translation (the region is reused from its start).
    pub fn reset(&mut self) {
        if !self.region.is_empty() {
            self.stats.flushes += 1;
        }
        self.region.reset();
        self.generation = self.generation.wrapping_add(1).max(1);
        self.sites.clear();
        self.links.clear();
        self.ijc.fill(IjcEntry::default());
    }

    /// The host entry of `b`'s translation, if current.
    fn entry_of(&self, b: &Block) -> usize {
        if b.jit.generation.load(Ordering::Relaxed) == self.generation {
            b.jit.entry.load(Ordering::Relaxed)
        } else {
            0
        }
    }

    /// A block is being dropped: jumps linked into it go back to their
    /// exits.
    pub(crate) fn unlink_block(&mut self, b: &Block) {
        let e = self.entry_of(b);
        if e == 0 {
            return;
        }
        b.jit.entry.store(0, Ordering::Relaxed);
        let slot = &mut self.ijc[ijc_index(b.key.rip)];
        if slot.entry == e as u64 {
            *slot = IjcEntry::default();
        }
        if let Some(sites) = self.links.remove(&e) {
            for s in sites {
                self.region.patch_rel32(s, 0);
            }
        }
    }

    /// Translates `b`; `None` if the region is full.
    fn translate(&mut self, ctx: &TrCtx, b: &Block, assume: u64) -> Option<usize> {
        let mut tr = Tr::new(self.region.cursor(), ctx);
        let budget_exit = tr.a.new_dynamic_label();
        dynasm!(tr.a
            ; .arch x64
            ; sub DWORD [rbx + BUDGET], 1
            ; js =>budget_exit
            ; mov r13, QWORD ctx.tlb as i64
        );
        if let Some(p2) = b.phys2 {
            // The instruction straddles into the next page: whoever enters
            // (dispatcher, link, jump cache) checks that the TLB still maps
            // that page where the bytes were read from.
            let lin2 = ctx.page.wrapping_add(0x1000);
            let lin2 = if ctx.long64 { lin2 } else { lin2 & 0xffff_ffff };
            let e =
                ctx.tlb + (crate::mmu::tlb_index(lin2) * std::mem::size_of::<TlbEntry>()) as u64;
            let tag_exec = std::mem::offset_of!(TlbEntry, tag_exec) as i32;
            let paddr = std::mem::offset_of!(TlbEntry, paddr) as i32;
            dynasm!(tr.a
                ; .arch x64
                ; mov rdx, QWORD e as i64
                ; mov rdi, QWORD lin2 as i64
                ; cmp rdi, QWORD [rdx + tag_exec]
                ; jne =>budget_exit
                ; mov rdi, QWORD p2 as i64
                ; cmp rdi, QWORD [rdx + paddr]
                ; jne =>budget_exit
            );
        }
        tr.rc = pick_cached_regs(b);
        let n = b.ops.len();
        // Backward flag liveness: after the last instruction (a block exit)
        // everything is live; an instruction that may fault, calls a
        // helper or leaves observes everything before it.
        tr.dead_after = vec![0; n];
        let mut dead = 0u32;
        for k in (0..n).rev() {
            tr.dead_after[k] = dead;
            let i = &b.ops[k].insn;
            dead = if insn::pure(i) {
                (dead | insn::written(i)) & !insn::read(i)
            } else {
                0
            };
        }
        let mut ended = false;
        for (k, op) in b.ops.iter().enumerate() {
            let next = op.insn.next_ip() & ctx.ip_mask;
            tr.begin_insn(k, op, next);
            let before = tr.a.offset();
            match insn::emit(&mut tr, &op.insn) {
                Emitted::Native => {}
                Emitted::NativeExit => {
                    ended = true;
                    break;
                }
                Emitted::Helper => {
                    debug_assert_eq!(before, tr.a.offset(), "{:?}", op.insn.code());
                    tr.helper_insn();
                    if k + 1 == n {
                        tr.exit(n, None, false);
                        ended = true;
                    }
                }
            }
        }
        if !ended {
            let last = &b.ops[n - 1].insn;
            let next = last.next_ip() & ctx.ip_mask;
            let link = tr.linkable(next);
            tr.exit(n, Some(next), link);
        }
        dynasm!(tr.a ; .arch x64 ; =>budget_exit);
        tr.store_imm64(RIP, b.key.rip);
        let exit = ctx.exit_stash;
        tr.jmp_abs(exit);
        tr.finish();
        let base = tr.base();
        let links = std::mem::take(&mut tr.links);
        let (native, helpers) = (tr.native, tr.helper_calls);
        let code = tr.a.finalize().ok()?;
        if code.len() > self.region.free() {
            return None;
        }
        let at = self.region.append(&code)?;
        debug_assert_eq!(at, base);
        for (off, rip) in links {
            self.sites.insert(
                at + off.0,
                Site {
                    rip,
                    phys_page: b.key.phys & PAGE_MASK,
                    cs_base: b.key.cs_base,
                    bitness: b.key.bitness,
                    assume,
                },
            );
        }
        self.stats.blocks += 1;
        self.stats.code_bytes += code.len() as u64;
        self.stats.native_insns += native as u64;
        self.stats.helper_insns += helpers as u64;
        if let Some(f) = self.perf_map.as_mut() {
            use std::io::Write;
            let _ = writeln!(f, "{at:x} {:x} guest_{:x}", code.len(), b.key.rip);
        }
        if self.dump_in || self.dump_out {
            self.dump(b, &code, at);
        }
        Some(at)
    }

    fn dump(&self, b: &Block, code: &[u8], at: usize) {
        use iced_x86::{Formatter, IntelFormatter};
        if self.dump_in {
            let mut f = IntelFormatter::new();
            let mut s = format!("IN: block {:#x} (phys {:#x})\n", b.key.rip, b.key.phys);
            for op in &b.ops {
                let mut t = String::new();
                f.format(&op.insn, &mut t);
                s.push_str(&format!("  {:#018x}  {t}\n", op.insn.ip()));
            }
            log::info!(target: "in_asm", "{s}");
        }
        if self.dump_out {
            use capstone::prelude::*;
            let s = match Capstone::new()
                .x86()
                .mode(arch::x86::ArchMode::Mode64)
                .syntax(arch::x86::ArchSyntax::Intel)
                .build()
            {
                Ok(cs) => match cs.disasm_all(code, at as u64) {
                    Ok(insns) => insns
                        .iter()
                        .map(|i| {
                            format!(
                                "  {:#x}:  {} {}\n",
                                i.address(),
                                i.mnemonic().unwrap_or(""),
                                i.op_str().unwrap_or("")
                            )
                        })
                        .collect::<String>(),
                    Err(e) => format!("  (capstone: {e})\n"),
                },
                Err(e) => format!("  (capstone: {e})\n"),
            };
            log::info!(target: "out_asm", "OUT: block {:#x}, {} bytes at {at:#x}\n{s}", b.key.rip, code.len());
        }
    }

    /// Patches the exit at `site` to jump straight to `entry` if the block
    /// it reached is the one the exit was for, under the same assumptions.
    fn link(&mut self, site: usize, b: &Block, entry: usize) {
        let Some(s) = self.sites.get(&site) else {
            return;
        };
        let want = Site {
            rip: b.key.rip,
            phys_page: b.key.phys & PAGE_MASK,
            cs_base: b.key.cs_base,
            bitness: b.key.bitness,
            assume: b.jit.assume.load(Ordering::Relaxed),
        };
        if *s != want {
            return;
        }
        let rel = entry as i64 - (site as i64 + 4);
        let Ok(rel) = i32::try_from(rel) else { return };
        self.region.patch_rel32(site, rel);
        self.links.entry(entry).or_default().push(site);
        self.stats.links += 1;
    }
}

/// The guest GPRs a block uses most (at least twice), up to one per
/// [`emit::CACHE_HOSTS`] register; never RSP (stack operations address it
/// in memory) nor a register whose high byte (AH..BH) the block uses.
fn pick_cached_regs(b: &Block) -> emit::RegCache {
    use iced_x86::{OpKind, Register};
    let mut uses = [0u32; 16];
    let mut excluded = 1u16 << 4;
    let gpr = |r: Register| insn::gpr_number(r).map(|(n, _, _)| n);
    for op in &b.ops {
        let i = &op.insn;
        for k in 0..i.op_count() {
            match i.op_kind(k) {
                OpKind::Register => match insn::gpr_number(i.op_register(k)) {
                    Some((n, _, true)) => excluded |= 1 << n,
                    Some((n, _, false)) => uses[n] += 1,
                    None => {}
                },
                OpKind::Memory => {
                    for r in [i.memory_base(), i.memory_index()] {
                        if let Some(n) = gpr(r) {
                            uses[n] += 1;
                        }
                    }
                }
                _ => {}
            }
        }
    }
    let mut order: Vec<usize> = (0..16)
        .filter(|&n| excluded & (1 << n) == 0 && uses[n] >= 2)
        .collect();
    order.sort_by_key(|&n| std::cmp::Reverse(uses[n]));
    let mut rc = emit::RegCache::default();
    for (n, h) in order.into_iter().zip(emit::CACHE_HOSTS) {
        rc.host[n] = Some(h);
    }
    rc
}

impl Cpu {
    /// What a translation assumes beyond the block key: CPL and, outside
    /// 64-bit mode, the CS limit.
    fn jit_assume(&self) -> u64 {
        let limit = if self.long64 {
            0
        } else {
            self.state.seg(SegReg::Cs).limit as u64
        };
        (self.cpl as u64) << 32 | limit
    }

    /// Runs `blk` as host code if it is (or becomes) translated. Returns
    /// false when the caller must interpret it.
    pub(crate) fn jit_run(&mut self, bus: &mut dyn CpuBus, blk: &Block) -> bool {
        let site = std::mem::take(&mut self.jit_link_site);
        let Some(mut jit) = self.jit.take() else {
            return false;
        };
        let assume = self.jit_assume();
        let mut entry = jit.entry_of(blk);
        if entry == 0 {
            let heat = blk.jit.heat.fetch_add(1, Ordering::Relaxed) + 1;
            if heat >= jit.config.threshold {
                entry = self.jit_translate(&mut jit, blk, assume);
            }
        } else if blk.jit.assume.load(Ordering::Relaxed) != assume {
            entry = 0;
        }
        if entry == 0 {
            self.jit = Some(jit);
            return false;
        }
        if site != 0 {
            jit.link(site, blk, entry);
        }
        jit.stats.entries += 1;
        if blk.key.cs_base == 0 && blk.key.bitness == 64 {
            jit.ijc[ijc_index(blk.key.rip)] = IjcEntry {
                rip: blk.key.rip,
                phys_page: blk.key.phys & PAGE_MASK,
                entry: entry as u64,
                mode: mode_tag(0, 64, assume),
            };
        }
        let enter = jit.enter;
        self.jit = Some(jit);
        self.jit_budget = 2048;
        let mut ctx = Ctx { bus };
        // SAFETY: `enter` is the trampoline made in `Jit::new` with the
        // `EnterFn` ABI; `entry` is the live translation of `blk` (the
        // region is only reset by the dispatcher, never while generated
        // code runs), which only touches `self` through the pointer and
        // `ctx` through helpers, and leaves through the shared exit stub.
        unsafe {
            let f: EnterFn = std::mem::transmute::<usize, EnterFn>(enter);
            f(self as *mut Cpu, &mut ctx, entry);
        }
        true
    }

    fn jit_translate(&mut self, jit: &mut Jit, blk: &Block, assume: u64) -> usize {
        let t0 = Instant::now();
        let lin = blk.key.cs_base.wrapping_add(blk.key.rip);
        let lin = if self.long64 { lin } else { lin & 0xffff_ffff };
        let tlb = self.tlb_ptr() as u64
            + (self.user as u64) * (TLB_SIZE * std::mem::size_of::<TlbEntry>()) as u64;
        let ctx = TrCtx {
            long64: self.long64,
            ip_mask: self.ip_mask,
            cs_limit: self.state.seg(SegReg::Cs).limit as u64,
            tlb,
            exit: jit.exit,
            exit_stash: jit.exit_stash,
            page: lin & PAGE_MASK,
            cs_base: blk.key.cs_base,
            cpl: self.cpl,
            ijc: jit.ijc.as_ptr() as u64,
            mode: mode_tag(blk.key.cs_base, blk.key.bitness, assume),
        };
        let entry = match jit.translate(&ctx, blk, assume) {
            Some(e) => e,
            None => {
                // Full: drop every block (this one stays alive in the
                // graveyard until the next boundary) and start over.
                self.flush_code_cache();
                jit.reset();
                jit.translate(&ctx, blk, assume).unwrap_or(0)
            }
        };
        if entry != 0 {
            blk.jit.entry.store(entry, Ordering::Relaxed);
            blk.jit.generation.store(jit.generation, Ordering::Relaxed);
            blk.jit.assume.store(assume, Ordering::Relaxed);
        }
        jit.stats.translate_ns += t0.elapsed().as_nanos() as u64;
        entry
    }

    /// Turns the JIT on (`Some`) or off. `false` if the host cannot run
    /// it (not x86-64, or no executable memory).
    pub fn set_jit(&mut self, config: Option<JitConfig>) -> bool {
        self.flush_code_cache();
        match config {
            None => {
                self.jit = None;
                true
            }
            Some(c) => {
                self.jit = Jit::new(c);
                self.jit.is_some()
            }
        }
    }

    /// JIT statistics, if the JIT is on.
    pub fn jit_stats(&self) -> Option<&JitStats> {
        self.jit.as_ref().map(|j| &j.stats)
    }

    /// Interprets one instruction for generated code (see
    /// [`helpers::jit_exec`]).
    pub(crate) fn exec_for_jit(&mut self, bus: &mut dyn CpuBus, op: &crate::interp::Op) -> bool {
        if let Some(j) = self.jit.as_mut() {
            j.stats.helper_runs += 1;
        }
        // Generated code also stops for a machine exit and at an interrupt
        // shadow (the dispatcher then steps the next instruction).
        self.exec_fast(bus, op) || self.exit.is_some() || self.state.interrupt_shadow
    }
}
#[cfg(test)]
mod tests;
