//! The translator's machinery: guest-state offsets, the flag-state machine,
//! inline softmmu checks, out-of-line slow paths and block exits. The
//! per-instruction emitters live in `insn.rs`.
//!
//! # Register conventions of generated code
//!
//! | host | holds |
//! |------|-------|
//! | rbx  | `*mut Cpu` (guest registers are memory operands `[rbx + off]`) |
//! | rbp, r14, r15, r12 | guest GPRs cached for the block (see `RegCache`) |
//! | r13  | the TLB (supervisor or user half) the block's CPL uses, set at entry |
//! | rax, rcx | flag save/restore scratch (LAHF/SAHF need AH) |
//! | rsi  | effective address, then host pointer after the TLB check |
//! | rdi, rdx, r8 | TLB lookup scratch |
//! | r9, r10, r11 | operand values |
//!
//! # Guest flags
//!
//! At any point of a block the guest's arithmetic flags (OF SF ZF AF PF
//! CF) are in one of four places ([`Fl`]): the guest `rflags` in memory,
//! the host EFLAGS (right after a host ALU instruction computed them), AX
//! in LAHF/SETO format (AH = SF ZF AF PF CF, AL = OF), where they go before
//! an inline TLB check clobbers EFLAGS, or the stash (`Cpu::jit_stash`,
//! same format), where they are between blocks. Helpers and slow paths
//! materialise them into `rflags`; so does the exit to the dispatcher.

use std::mem::offset_of;

use dynasmrt::x64::X64Relocation;
use dynasmrt::{dynasm, AssemblyOffset, DynamicLabel, DynasmApi, DynasmLabelApi, VecAssembler};

use crate::interp::{Cpu, Op};
use crate::mmu::tlb::{TlbEntry, PAGE_MASK, TLB_SIZE};
use crate::state::{CpuState, Segment};

pub(super) type Asm = VecAssembler<X64Relocation>;

pub(super) const RIP: i32 = (offset_of!(Cpu, state) + offset_of!(CpuState, rip)) as i32;
pub(super) const RFLAGS: i32 = (offset_of!(Cpu, state) + offset_of!(CpuState, rflags)) as i32;
pub(super) const ICOUNT: i32 = offset_of!(Cpu, insn_count) as i32;
pub(super) const BUDGET: i32 = offset_of!(Cpu, jit_budget) as i32;
pub(super) const STASH: i32 = offset_of!(Cpu, jit_stash) as i32;
pub(super) const LINK: i32 = offset_of!(Cpu, jit_link_site) as i32;
pub(super) const CTX: i32 = offset_of!(Cpu, jit_ctx) as i32;
pub(super) const RSP_OFF: i32 = gpr_off(4);

pub(super) const fn gpr_off(n: usize) -> i32 {
    (offset_of!(Cpu, state) + offset_of!(CpuState, gpr) + 8 * n) as i32
}

pub(super) const fn seg_base_off(s: usize) -> i32 {
    (offset_of!(Cpu, state)
        + offset_of!(CpuState, segs)
        + s * std::mem::size_of::<Segment>()
        + offset_of!(Segment, base)) as i32
}

pub(super) const fn seg_sel_off(s: usize) -> i32 {
    (offset_of!(Cpu, state)
        + offset_of!(CpuState, segs)
        + s * std::mem::size_of::<Segment>()
        + offset_of!(Segment, selector)) as i32
}

/// Host register numbers.
pub(super) const RSI: u8 = 6;
pub(super) const R9: u8 = 9;
pub(super) const R10: u8 = 10;

/// log2 of the TLB entry size (generated code indexes with a shift).
const ENTRY_SHIFT: u32 = 6;
const _: () = assert!(std::mem::size_of::<TlbEntry>() == 1 << ENTRY_SHIFT);

/// The arithmetic flags of RFLAGS.
const ARITH: u32 = 0x8d5;

/// Where the guest's arithmetic flags are (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fl {
    Mem,
    Host,
    Stash,
    /// In AX, in the stash's format (AH = SF ZF AF PF CF, AL = OF): where
    /// they go before a TLB check clobbers EFLAGS; nothing else touches
    /// rax until they move on.
    Ax,
}

/// Kind of access a TLB check is for (selects the tag).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Acc {
    Read,
    Write,
}

/// What a translation may assume about the vCPU (checked at block entry
/// by the dispatcher, or implied by the linking rules).
pub(super) struct TrCtx {
    pub long64: bool,
    pub ip_mask: u64,
    /// CS limit (16/32-bit code: branch targets above it fault).
    pub cs_limit: u64,
    /// Base of the TLB (supervisor or user half) for this CPL.
    pub tlb: u64,
    /// Address the generated code exits through (flags in `rflags`).
    pub exit: usize,
    /// The exit for flags in the stash (merges them into `rflags` first).
    pub exit_stash: usize,
    /// Linear page of the block (links stay inside it).
    pub page: u64,
    pub cs_base: u64,
    /// CPL the block runs at (part of what the translation assumes).
    pub cpl: u8,
    /// The indirect-jump cache ([`super::Ijc`]) and this block's mode tag
    /// (nonzero), for exits whose target block is looked up inline.
    pub ijc: u64,
    pub mode: u64,
}

/// An out-of-line fallback: interpret the whole instruction.
struct Slow {
    label: DynamicLabel,
    join: DynamicLabel,
    count: usize,
    op: *const Op,
    rip: u64,
    entry_fl: Fl,
    exit_fl: Fl,
    /// Guest registers dirty in host registers where the slow path starts.
    entry_dirty: u16,
    /// Guest registers the fast path holds in host registers at the join.
    exit_loaded: u16,
}

/// Per-instruction translation state.
pub(super) struct Cur {
    pub count: usize,
    pub op: *const Op,
    pub rip: u64,
    pub next: u64,
    slow: Option<(DynamicLabel, Fl, u16)>,
}

/// The block translator.
pub(super) struct Tr<'a> {
    pub a: Asm,
    pub fl: Fl,
    pub ctx: &'a TrCtx,
    pub cur: Cur,
    slows: Vec<Slow>,
    stops: Vec<(DynamicLabel, usize)>,
    /// Patchable `jmp rel32` sites: (offset of the rel32, target RIP).
    pub links: Vec<(AssemblyOffset, u64)>,
    pub helper_calls: usize,
    pub native: usize,
    base: usize,
    /// Per instruction: arithmetic flags (iced bits) certainly overwritten
    /// before anything observes them, after the instruction.
    pub dead_after: Vec<u32>,
    /// r9 holds guest register (offset, size 4/8) if nothing was emitted
    /// since this assembler offset.
    r9: Option<(usize, i32, u32)>,
    /// Guest GPRs kept in host registers within the block.
    pub rc: RegCache,
}

/// Host registers that hold guest GPRs inside a block (callee-saved, so
/// helper calls keep them; the guest copy in memory is made current
/// before every helper, slow path and exit).
pub(super) const CACHE_HOSTS: [u8; 4] = [5, 14, 15, 12];

/// Which guest GPR lives in which host register, and its state.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct RegCache {
    pub host: [Option<u8>; 16],
    /// Loaded from memory (the host register holds the value).
    pub loaded: u16,
    /// Written since loading (memory is stale).
    pub dirty: u16,
}

impl<'a> Tr<'a> {
    pub fn new(base: usize, ctx: &'a TrCtx) -> Self {
        Tr {
            a: Asm::new(base),
            // Between blocks the flags are in the stash (see the module docs).
            fl: Fl::Stash,
            ctx,
            cur: Cur {
                count: 0,
                op: std::ptr::null(),
                rip: 0,
                next: 0,
                slow: None,
            },
            slows: Vec::new(),
            stops: Vec::new(),
            links: Vec::new(),
            helper_calls: 0,
            native: 0,
            base,
            dead_after: Vec::new(),
            r9: None,
            rc: RegCache::default(),
        }
    }

    pub fn base(&self) -> usize {
        self.base
    }

    // ---- flags -------------------------------------------------------

    /// Merges AH (SF ZF AF PF CF) and AL (OF) into the guest RFLAGS.
    fn merge_ax_into_rflags(&mut self, mask: u32) {
        let keep = !(mask as i32);
        dynasm!(self.a
            ; .arch x64
            ; movzx ecx, ah
            ; and ecx, (mask & 0xd5) as i32
            ; movzx eax, al
            ; shl eax, 11
            ; and eax, (mask & 0x800) as i32
            ; or ecx, eax
            ; and QWORD [rbx + RFLAGS], keep
            ; or QWORD [rbx + RFLAGS], rcx
        );
    }

    /// Makes the guest RFLAGS in memory current.
    pub fn fl_to_mem(&mut self) {
        match self.fl {
            Fl::Mem => {}
            Fl::Host => {
                dynasm!(self.a ; .arch x64 ; lahf ; seto al);
                self.merge_ax_into_rflags(ARITH);
            }
            Fl::Stash => {
                dynasm!(self.a ; .arch x64 ; mov ax, WORD [rbx + STASH]);
                self.merge_ax_into_rflags(ARITH);
            }
            Fl::Ax => self.merge_ax_into_rflags(ARITH),
        }
        self.fl = Fl::Mem;
    }

    /// Puts the guest flags into the host EFLAGS (before a reader).
    pub fn fl_to_host(&mut self) {
        match self.fl {
            Fl::Host => {}
            Fl::Stash => {
                dynasm!(self.a
                    ; .arch x64
                    ; mov ax, WORD [rbx + STASH]
                    ; add al, 0x7f
                    ; sahf
                );
            }
            Fl::Ax => dynasm!(self.a ; .arch x64 ; add al, 0x7f ; sahf),
            Fl::Mem => {
                dynasm!(self.a
                    ; .arch x64
                    ; mov eax, DWORD [rbx + RFLAGS]
                    ; mov ecx, eax
                    ; shr ecx, 11
                    ; mov ah, al
                    ; mov al, cl
                    ; and al, 1
                    ; add al, 0x7f
                    ; sahf
                );
            }
        }
        self.fl = Fl::Host;
    }

    /// Before code that clobbers EFLAGS: keep live host flags in AX.
    pub fn fl_spill(&mut self) {
        if self.fl == Fl::Host {
            dynasm!(self.a ; .arch x64 ; lahf ; seto al);
            self.fl = Fl::Ax;
        }
    }

    /// Converts from `from` to `to` (slow-path joins).
    fn fl_convert(&mut self, from: Fl, to: Fl) {
        self.fl = from;
        match to {
            Fl::Mem => self.fl_to_mem(),
            Fl::Host => self.fl_to_host(),
            Fl::Stash => self.fl_to_stash(),
            Fl::Ax => {
                self.fl_to_host();
                self.fl_spill();
            }
        }
    }

    // ---- instructions ------------------------------------------------

    pub fn begin_insn(&mut self, count: usize, op: &Op, next: u64) {
        self.cur = Cur {
            count,
            op: op as *const Op,
            rip: op.insn.ip(),
            next,
            slow: None,
        };
    }

    /// Ends a natively emitted instruction: its slow path (if any) joins
    /// here with the same flag state.
    pub fn end_insn(&mut self) {
        if let Some((label, entry_fl, entry_dirty)) = self.cur.slow.take() {
            // The slow path joins here with r9 clobbered.
            self.r9 = None;
            let join = self.a.new_dynamic_label();
            dynasm!(self.a ; .arch x64 ; =>join);
            self.slows.push(Slow {
                label,
                join,
                count: self.cur.count,
                op: self.cur.op,
                rip: self.cur.rip,
                entry_fl,
                exit_fl: self.fl,
                entry_dirty,
                exit_loaded: self.rc.loaded,
            });
        }
        self.native += 1;
    }

    /// The label of the current instruction's slow path (created on first
    /// use, after spilling the flags: the slow path sees the state before
    /// the instruction).
    pub fn slow_label(&mut self) -> DynamicLabel {
        if let Some((l, _, _)) = self.cur.slow {
            return l;
        }
        self.fl_spill();
        let l = self.a.new_dynamic_label();
        self.cur.slow = Some((l, self.fl, self.rc.dirty));
        l
    }

    /// The guest register r9 still holds, if the code emitted last stored
    /// it from r9 and nothing was emitted (or joined) since.
    pub fn r9_holds(&self) -> Option<(i32, u32)> {
        match self.r9 {
            Some((at, off, size)) if at == self.a.offset().0 => Some((off, size)),
            _ => None,
        }
    }

    pub fn set_r9_holds(&mut self, off: i32, size: u32) {
        self.r9 = Some((self.a.offset().0, off, size));
    }

    /// The host register caching the guest GPR at `off` (a whole-register
    /// offset), loading it first if needed.
    pub fn cached(&mut self, off: i32) -> Option<u8> {
        let base = gpr_off(0);
        if off < base || (off - base) % 8 != 0 || off >= gpr_off(16) {
            return None;
        }
        let n = ((off - base) / 8) as usize;
        let h = self.rc.host[n]?;
        if self.rc.loaded & (1 << n) == 0 {
            dynasm!(self.a ; .arch x64 ; mov Rq(h), QWORD [rbx + off]);
            self.rc.loaded |= 1 << n;
        }
        Some(h)
    }

    /// Like [`Tr::cached`] for a write of the whole register: no load.
    pub fn cached_for_write(&mut self, off: i32) -> Option<u8> {
        let base = gpr_off(0);
        if off < base || (off - base) % 8 != 0 || off >= gpr_off(16) {
            return None;
        }
        let n = ((off - base) / 8) as usize;
        let h = self.rc.host[n]?;
        self.rc.loaded |= 1 << n;
        Some(h)
    }

    /// Marks the cached guest GPR at `off` written.
    pub fn dirty(&mut self, off: i32) {
        let n = ((off - gpr_off(0)) / 8) as usize;
        self.rc.dirty |= 1 << n;
    }

    /// Writes back the registers in `mask` that are dirty.
    fn write_back(&mut self, mask: u16) {
        for n in 0..16 {
            if mask & (1 << n) != 0 {
                if let Some(h) = self.rc.host[n] {
                    dynasm!(self.a ; .arch x64 ; mov QWORD [rbx + gpr_off(n)], Rq(h));
                }
            }
        }
    }

    /// Makes guest registers in memory current (before helpers and exits).
    pub fn flush_regs(&mut self) {
        let d = self.rc.dirty;
        self.write_back(d);
        self.rc.dirty = 0;
    }

    /// Reloads the registers in `mask` from memory (after the interpreter
    /// ran an instruction).
    fn reload(&mut self, mask: u16) {
        for n in 0..16 {
            if mask & (1 << n) != 0 {
                if let Some(h) = self.rc.host[n] {
                    dynasm!(self.a ; .arch x64 ; mov Rq(h), QWORD [rbx + gpr_off(n)]);
                }
            }
        }
    }

    /// Loads a whole guest GPR (number `n`) into host register `hr`.
    pub fn gpr64_to(&mut self, hr: u8, n: usize) {
        match self.cached(gpr_off(n)) {
            Some(h) => dynasm!(self.a ; .arch x64 ; mov Rq(hr), Rq(h)),
            None => dynasm!(self.a ; .arch x64 ; mov Rq(hr), QWORD [rbx + gpr_off(n)]),
        }
    }

    /// Flags dead after the current instruction.
    pub fn dead(&self) -> u32 {
        self.dead_after.get(self.cur.count).copied().unwrap_or(0)
    }

    /// Stores an immediate to a guest u64 field.
    pub fn store_imm64(&mut self, off: i32, v: u64) {
        if v as i64 == v as i32 as i64 {
            dynasm!(self.a ; .arch x64 ; mov QWORD [rbx + off], v as i32);
        } else {
            dynasm!(self.a ; .arch x64 ; mov rax, QWORD v as i64 ; mov QWORD [rbx + off], rax);
        }
    }

    /// Calls the interpreter for the current instruction (a helper call):
    /// flags to memory, RIP of the instruction, then `jit_exec`. A nonzero
    /// result ends the block (RIP already set by the interpreter).
    fn call_exec(&mut self, op: *const Op, rip: u64, count: usize) {
        self.store_imm64(RIP, rip);
        let f = super::helpers::jit_exec as *const () as usize as i64;
        dynasm!(self.a
            ; .arch x64
            ; mov rdi, rbx
            ; mov rsi, QWORD [rbx + CTX]
            ; mov rdx, QWORD op as i64
            ; mov rax, QWORD f
            ; call rax
            ; test eax, eax
        );
        // The instruction itself retired (or faulted): it counts.
        let stop = self.stop_label(count + 1);
        dynasm!(self.a ; .arch x64 ; jnz =>stop);
        self.helper_calls += 1;
    }

    fn stop_label(&mut self, count: usize) -> DynamicLabel {
        if let Some((l, _)) = self.stops.iter().find(|(_, c)| *c == count) {
            return *l;
        }
        let l = self.a.new_dynamic_label();
        self.stops.push((l, count));
        l
    }

    /// Emits the current instruction as a helper call.
    pub fn helper_insn(&mut self) {
        self.fl_to_mem();
        self.flush_regs();
        // The interpreter may change any register: reload lazily.
        self.rc.loaded = 0;
        self.r9 = None;
        let (op, rip, count) = (self.cur.op, self.cur.rip, self.cur.count);
        self.call_exec(op, rip, count);
    }

    // ---- memory --------------------------------------------------------

    /// Computes the effective address of the memory operand into RSI
    /// (without segment base) if hx86 can do it inline; `None` otherwise.
    /// Does not touch EFLAGS.
    pub fn ea(&mut self, i: &iced_x86::Instruction) -> Option<()> {
        use iced_x86::Register as R;
        let base = i.memory_base();
        let index = i.memory_index();
        let disp = i.memory_displacement64();
        // Base and index: none, or a 16/32/64-bit GPR.
        let reg64 = |r: R| -> Option<Option<usize>> {
            match r {
                R::None => Some(None),
                _ => match super::insn::gpr_number(r)? {
                    (n, 2..=8, false) => Some(Some(n)),
                    _ => None,
                },
            }
        };
        let (b, x) = if base == R::RIP || base == R::EIP {
            if index != R::None {
                return None;
            }
            (None, None)
        } else {
            (reg64(base)?, reg64(index)?)
        };
        let disp_i32 = disp as i64 == disp as i32 as i64;
        match b {
            Some(n) => self.gpr64_to(RSI, n),
            None => {
                dynasm!(self.a ; .arch x64 ; mov rsi, QWORD disp as i64);
            }
        }
        if let Some(n) = x {
            self.gpr64_to(7, n);
            match i.memory_index_scale() {
                1 => dynasm!(self.a ; .arch x64 ; lea rsi, [rsi + rdi]),
                2 => dynasm!(self.a ; .arch x64 ; lea rsi, [rsi + rdi * 2]),
                4 => dynasm!(self.a ; .arch x64 ; lea rsi, [rsi + rdi * 4]),
                _ => dynasm!(self.a ; .arch x64 ; lea rsi, [rsi + rdi * 8]),
            }
        }
        if b.is_some() && disp != 0 {
            if disp_i32 {
                dynasm!(self.a ; .arch x64 ; lea rsi, [rsi + disp as i32]);
            } else {
                dynasm!(self.a ; .arch x64 ; mov rdi, QWORD disp as i64 ; lea rsi, [rsi + rdi]);
            }
        }
        Some(())
    }

    /// Address size of the memory operand in bytes (2, 4, 8).
    pub fn addr_size(i: &iced_x86::Instruction) -> u32 {
        use iced_x86::Register as R;
        let r = if i.memory_base() != R::None {
            i.memory_base()
        } else {
            i.memory_index()
        };
        match r as usize {
            21..=36 => 2,
            37..=52 | 69 => 4,
            0 => match i.code_size() {
                iced_x86::CodeSize::Code16 => 2,
                iced_x86::CodeSize::Code32 => 4,
                _ => 8,
            },
            _ => 8,
        }
    }

    /// The linear address of a memory operand into RSI (64-bit mode only:
    /// no limits; FS/GS add their base). `None`: not inline.
    pub fn lin(&mut self, i: &iced_x86::Instruction) -> Option<()> {
        use iced_x86::Register as R;
        if !self.ctx.long64 {
            return None;
        }
        let asz = Self::addr_size(i);
        if asz == 2 {
            return None;
        }
        self.ea(i)?;
        if asz == 4 {
            dynasm!(self.a ; .arch x64 ; mov esi, esi);
        }
        match i.memory_segment() {
            R::FS => {
                dynasm!(self.a ; .arch x64 ; mov rdi, QWORD [rbx + seg_base_off(4)] ; lea rsi, [rsi + rdi])
            }
            R::GS => {
                dynasm!(self.a ; .arch x64 ; mov rdi, QWORD [rbx + seg_base_off(5)] ; lea rsi, [rsi + rdi])
            }
            R::ES | R::CS | R::SS | R::DS => {}
            _ => return None,
        }
        Some(())
    }

    /// Inline TLB check of `size` bytes at linear RSI for `acc`; on a hit
    /// RSI becomes the host pointer, on a miss (other page, slow tag,
    /// page crossing, non-canonical) the instruction's slow path runs.
    pub fn tlb(&mut self, acc: Acc, size: u32) {
        let slow = self.slow_label();
        let tag = match acc {
            Acc::Read => offset_of!(TlbEntry, tag_read),
            Acc::Write => offset_of!(TlbEntry, tag_write),
        } as i32;
        let addend = offset_of!(TlbEntry, addend) as i32;
        dynasm!(self.a
            ; .arch x64
            ; mov rdi, rsi
            ; shr rdi, (12 - ENTRY_SHIFT) as i8
            ; and edi, ((TLB_SIZE - 1) << ENTRY_SHIFT) as i32
            ; lea rdx, [rsi + (size as i32 - 1)]
            ; and rdx, PAGE_MASK as i32
            ; cmp rdx, QWORD [r13 + rdi + tag]
            ; jne =>slow
            ; add rsi, QWORD [r13 + rdi + addend]
        );
    }

    /// Sends the current instruction to its slow path unless host register
    /// `r` holds a canonical address (flags must be spilled).
    pub fn check_canonical(&mut self, r: u8) {
        let slow = self.slow_label();
        dynasm!(self.a
            ; .arch x64
            ; mov rdx, Rq(r)
            ; shl rdx, 16
            ; sar rdx, 16
            ; cmp rdx, Rq(r)
            ; jne =>slow
        );
    }

    // ---- exits ---------------------------------------------------------

    /// Leaves the block after `count` instructions. `rip`: store this RIP
    /// (None: already stored). `link`: a patchable direct jump to the
    /// block at `rip` (same page) precedes the exit.
    pub fn exit(&mut self, count: usize, rip: Option<u64>, link: bool) {
        let r = match (rip, link) {
            // Another page: look the target up instead of linking.
            (Some(r), false) => return self.exit_lookup(count, Some(r)),
            (r, _) => r,
        };
        self.flush_regs();
        if r.is_none() && self.fl == Fl::Mem {
            // After a helper: nothing to chain to, flags already in place.
            dynasm!(self.a ; .arch x64 ; add QWORD [rbx + ICOUNT], count as i32);
            let exit = self.ctx.exit;
            self.jmp_abs(exit);
            return;
        }
        self.fl_to_stash();
        dynasm!(self.a ; .arch x64 ; add QWORD [rbx + ICOUNT], count as i32);
        if let Some(r) = r {
            // jmp rel32, initially to the next instruction.
            self.a.extend([0xe9u8, 0, 0, 0, 0]);
            let site = self.a.offset();
            self.links.push((AssemblyOffset(site.0 - 4), r));
            self.store_imm64(RIP, r);
            let abs = (self.base() + site.0 - 4) as i64;
            dynasm!(self.a
                ; .arch x64
                ; mov rax, QWORD abs
                ; mov QWORD [rbx + LINK], rax
            );
        }
        let exit = self.ctx.exit_stash;
        self.jmp_abs(exit);
    }

    /// Puts the flags in the stash, where blocks expect them at entry.
    pub fn fl_to_stash(&mut self) {
        if self.fl == Fl::Mem {
            self.fl_to_host();
        }
        self.fl_spill();
        if self.fl == Fl::Ax {
            dynasm!(self.a ; .arch x64 ; mov WORD [rbx + STASH], ax);
            self.fl = Fl::Stash;
        }
    }

    /// Leaves the block after `count` instructions for `target` (or the
    /// RIP already stored); in 64-bit code the target block is
    /// first looked up in the indirect-jump cache and entered directly
    /// when its entry matches RIP and mode and the TLB still maps the
    /// target page to the block's physical page.
    pub fn exit_lookup(&mut self, count: usize, target: Option<u64>) {
        self.fl_to_stash();
        self.flush_regs();
        dynasm!(self.a ; .arch x64 ; add QWORD [rbx + ICOUNT], count as i32);
        match target {
            Some(t) => {
                dynasm!(self.a ; .arch x64 ; mov r9, QWORD t as i64 ; mov QWORD [rbx + RIP], r9)
            }
            // Stored by the fast path or by the interpreter (slow path).
            None => dynasm!(self.a ; .arch x64 ; mov r9, QWORD [rbx + RIP]),
        }
        let exit = self.ctx.exit_stash;
        if !self.ctx.long64 || self.ctx.ijc == 0 {
            self.jmp_abs(exit);
            return;
        }
        let miss = self.a.new_dynamic_label();
        let (ijc, mode) = (self.ctx.ijc as i64, self.ctx.mode as i64);
        let tag_exec = offset_of!(TlbEntry, tag_exec) as i32;
        let paddr = offset_of!(TlbEntry, paddr) as i32;
        dynasm!(self.a
            ; .arch x64
            ; mov rdi, r9
            ; shr rdi, 12
            ; xor rdi, r9
            ; and edi, (super::IJC_SIZE - 1) as i32
            ; shl edi, 5
            ; mov r8, QWORD ijc
            ; add r8, rdi
            ; cmp r9, QWORD [r8]
            ; jne =>miss
            ; mov rax, QWORD mode
            ; cmp rax, QWORD [r8 + 24]
            ; jne =>miss
            ; mov rdx, r9
            ; shr rdx, (12 - ENTRY_SHIFT) as i8
            ; and edx, ((TLB_SIZE - 1) << ENTRY_SHIFT) as i32
            ; add rdx, r13
            ; mov rdi, r9
            ; and rdi, PAGE_MASK as i32
            ; cmp rdi, QWORD [rdx + tag_exec]
            ; jne =>miss
            ; mov rdi, QWORD [rdx + paddr]
            ; cmp rdi, QWORD [r8 + 8]
            ; jne =>miss
            ; jmp QWORD [r8 + 16]
            ; =>miss
        );
        self.jmp_abs(exit);
    }

    /// `jmp rel32` to an absolute host address.
    pub fn jmp_abs(&mut self, target: usize) {
        let here = self.base + self.a.offset().0 + 5;
        let rel = target as i64 - here as i64;
        self.a.push(0xe9);
        self.a.extend((rel as i32).to_le_bytes());
    }

    /// Whether a direct branch to `target` may be linked.
    pub fn linkable(&self, target: u64) -> bool {
        (self.ctx.cs_base.wrapping_add(target) & PAGE_MASK) == self.ctx.page
    }

    /// Emits the out-of-line parts: slow paths and stop exits.
    pub fn finish(&mut self) {
        let slows = std::mem::take(&mut self.slows);
        for s in slows {
            dynasm!(self.a ; .arch x64 ; =>s.label);
            self.fl = s.entry_fl;
            self.fl_to_mem();
            self.write_back(s.entry_dirty);
            self.call_exec(s.op, s.rip, s.count);
            self.fl_convert(Fl::Mem, s.exit_fl);
            self.reload(s.exit_loaded);
            dynasm!(self.a ; .arch x64 ; jmp =>s.join);
        }
        let exit = self.ctx.exit;
        let stops = std::mem::take(&mut self.stops);
        for (l, count) in stops {
            dynasm!(self.a
                ; .arch x64
                ; =>l
                ; add QWORD [rbx + ICOUNT], count as i32
            );
            self.jmp_abs(exit);
        }
    }
}
