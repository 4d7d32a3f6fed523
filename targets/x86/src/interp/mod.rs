//! Tier 1 of the DBT: a full-system x86-64 interpreter.
//!
//! [`Cpu`] owns the architectural [`CpuState`], the [`Mmu`] (TLB, page
//! walk, MMIO dispatch: shared with the JIT) and a cache of decoded blocks
//! keyed by physical address and decode mode. Each instruction's semantics
//! is a plain function `fn(&mut Cpu, &mut dyn CpuBus, &Instruction) ->
//! XResult<()>` ([`Handler`]), grouped by family (arith, logic, shift,
//! bitops, bmi, string, control, far, stack, segment, system, io, msr,
//! cpuid, bcd, muldiv, data; x87/SSE in their own files), so the JIT can
//! call any of them as a helper. During an instruction `state.rip` is the
//! address of the instruction itself (a fault leaves it there) and
//! [`Cpu::next_rip`] the fall-through address, which control transfers
//! overwrite.
//!
//! # Running a guest
//!
//! ```no_run
//! use x86::{Cpu, CpuState, ExitReason, TestBus};
//! let mut bus = TestBus::new(4 << 20).with_rom(x86::testprog::boot_rom(1000, 1).unwrap());
//! let mut cpu = Cpu::new(CpuState::reset());
//! match cpu.run(&mut bus, u64::MAX) {
//!     ExitReason::PowerOff => {}
//!     other => panic!("{other:?}"),
//! }
//! ```
//!
//! # Execution loop
//!
//! At a block boundary [`Cpu::run`] checks exits, the kick flag and the
//! budget, polls the bus for NMI/INTR (every 8th boundary, or at once after
//! an instruction that ended its block on purpose: STI, POPF, IRET, HLT,
//! mode changes, exceptions), drops blocks whose code was overwritten, then
//! finds the block at CS:RIP (jump cache → hash map → decode) and runs its
//! decode-time-selected handlers ([`lookup`]). Faults are delivered
//! immediately (`interrupt.rs`: IVT, IDT gates with TSS stack switch and
//! IST, #DF/triple fault); traps (TF) after the instruction.
//!
//! # Not implemented (logged once under `unimp`, #UD or #GP in the guest)
//!
//! Hardware task switches (task gates, far JMP/CALL to a TSS, IRET with
//! NT), VME/PVI, SMM, guest-programmed DR0..DR7 breakpoints, RDRAND/RDSEED,
//! PCID/INVPCID, FSGSBASE, x2APIC and TSC-deadline MSRs.

mod arith;
mod bcd;
mod bitops;
mod block;
mod bmi;
mod control;
mod cpuid;
mod data;
mod debugreg;
mod exec;
mod far;
mod fast;
mod flags;
mod interrupt;
mod io;
mod locked;
mod logic;
mod mem;
mod msr;
mod muldiv;
mod operand;
mod segment;
mod shift;
mod softfloat;
mod sse;
mod sse_cvt;
mod sse_float;
mod sse_int;
mod sse_mov;
mod sse_shuffle;
mod sse_str;
mod stack;
mod string;
mod system;
#[cfg(test)]
pub(crate) mod tests;
mod x87;
mod x87_arith;
mod x87_env;
mod x87_trans;
mod xsave;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use iced_x86::Code;

use crate::bus::{BusAction, CpuBus};
use crate::consts::rflags;
use crate::exception::Exception;
use crate::mmu::Mmu;
use crate::state::{CpuMode, CpuState, SegReg};
pub use block::{Block, BlockJit, BlockKey, Op};
pub use cpuid::cpuid;
pub use exec::{execute, Handler};
pub use fast::lookup;
#[cfg(target_arch = "x86_64")]
pub(crate) use flags::cc_of as cond_code;
pub use flags::cond;

/// JIT options (`-accel dbt,jit=on,jit-threshold=N,tb-size=MiB`).
#[derive(Clone, Debug)]
pub struct JitConfig {
    /// Executions of a block before it is translated (0 or 1: at once).
    pub threshold: u32,
    /// Size of the code region in bytes (flushed whole when full).
    pub cache_size: usize,
    /// Write `/tmp/perf-<pid>.map` for `perf` (`-accel dbt,perf-map=on`).
    pub perf_map: bool,
}

impl Default for JitConfig {
    fn default() -> Self {
        JitConfig {
            threshold: 2,
            cache_size: 64 << 20,
            perf_map: false,
        }
    }
}

/// Why [`Cpu::run`] returned (maps onto `accel::VcpuExit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitReason {
    /// HLT and nothing can wake the vCPU (IF=0, or no interrupt pending).
    Halt,
    /// Triple fault.
    Shutdown,
    Reset,
    PowerOff,
    /// Guest-requested exit with a status.
    GuestExit(i32),
    /// INT3 or single step while debugging is enabled.
    Debug(DebugStop),
    /// The kick flag was set.
    Interrupted,
    /// The instruction budget given to [`Cpu::run`] was used up.
    Budget,
    /// An INIT or start-up IPI is pending ([`CpuBus::startup_pending`]).
    Startup,
}

/// Why a debug stop happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DebugStop {
    /// One instruction completed with single-stepping on.
    SingleStep,
    /// INT3 executed with software breakpoints on (RIP at the INT3).
    Breakpoint,
    /// Execution reached debugger hardware breakpoint slot `n` (RIP at the
    /// instruction, not executed).
    HwBreakpoint(usize),
    /// A data access hit debugger watchpoint `slot` at `addr` (RIP after
    /// the accessing instruction).
    Watchpoint { slot: usize, addr: u64 },
}

/// Result of [`Cpu::step`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepResult {
    /// One instruction retired (or an event was delivered).
    Ok,
    Exit(ExitReason),
}

/// Static configuration of the vCPU model.
#[derive(Clone, Debug)]
pub struct CpuConfig {
    /// Advertise a local APIC in CPUID (only when the machine has one).
    pub apic: bool,
    /// APIC id of this vCPU (CPUID leaf 1 EBX[31:24]).
    pub apic_id: u32,
    /// vCPUs of the machine.
    pub cpus: u32,
    /// The vendor CPUID names (and, for AMD, SYSCALL outside 64-bit mode).
    pub vendor: crate::cpu_model::Vendor,
    /// Cores per package and threads per core (CPUID topology, leaves 1,
    /// 4 and 0xB).
    pub cores: u32,
    pub threads: u32,
    /// Nominal TSC frequency in Hz (RDTSC counts host time at this rate).
    pub tsc_hz: u64,
    /// The CPU model's features: CPUID reports them, and the ones with
    /// enable bits (CR4.UMIP/SMEP/SMAP/PKE/PKS/OSXSAVE, XCR0.PKRU,
    /// IA32_PKRS, STAC/CLAC) are refused when absent.
    pub features: crate::cpu_model::FeatureSet,
}

impl Default for CpuConfig {
    fn default() -> Self {
        CpuConfig {
            apic: false,
            apic_id: 0,
            cpus: 1,
            vendor: crate::cpu_model::Vendor::Intel,
            cores: 1,
            threads: 1,
            tsc_hz: 1_000_000_000,
            features: crate::cpu_model::CpuSpec::default()
                .for_dbt()
                .unwrap_or_default(),
        }
    }
}

/// One interpreted vCPU.
///
/// # Layout for generated code
///
/// `#[repr(C)]`: [`Cpu::state`] is at offset 0, so JIT code holding a
/// `*mut Cpu` addresses guest registers with `offset_of!(CpuState, ...)`
/// (GPRs at 0, RIP at 128, RFLAGS at 136, segments at 144, see
/// [`CpuState`]). The TLB is reached through [`Cpu::tlb_ptr`] (stable for
/// the life of the `Cpu`, layout in [`crate::mmu::tlb`]). Everything after
/// `mmu` is interpreter-private.
#[repr(C)]
pub struct Cpu {
    pub state: CpuState,
    pub mmu: Mmu,
    pub config: CpuConfig,
    cache: block::BlockCache,
    /// Cached from `state` by [`Cpu::update_mode`]: 64-bit mode.
    pub(crate) long64: bool,
    /// Real or virtual-8086 mode.
    pub(crate) real: bool,
    pub(crate) cpl: u8,
    /// CPL == 3: data accesses use the user TLB.
    pub(crate) user: bool,
    /// Alignment checking is on (CR0.AM, RFLAGS.AC, CPL 3).
    pub(crate) ac: bool,
    /// Mask of RIP for the current code size.
    pub(crate) ip_mask: u64,
    /// Fall-through RIP of the current instruction; branches overwrite it.
    pub next_rip: u64,
    /// Stop the current block after this instruction.
    pub(crate) end_block: bool,
    pub(crate) exit: Option<ExitReason>,
    kick: Arc<AtomicBool>,
    unimp_seen: HashSet<Code>,
    unknown_msrs: HashSet<u32>,
    /// Instructions retired (including faulted ones).
    pub insn_count: u64,
    /// Blocks decoded (cached ones, and single page-crossing instructions
    /// decoded on every execution), for `-d stats`.
    pub decoded_blocks: u64,
    pub crossing_decodes: u64,
    tsc_base: Instant,
    tsc_at_base: u64,
    /// Vector being delivered (double-fault detection).
    delivering: Option<u8>,
    /// Block boundaries until the bus is polled for interrupts again.
    poll_countdown: u32,
    /// INT3 returns [`ExitReason::Debug`] instead of delivering #BP.
    pub debug_int3: bool,
    /// Stop with [`ExitReason::Debug`] after each instruction.
    pub debug_single_step: bool,
    /// An instruction that ends its block set TF for a trap right after
    /// it (SYSRET), whatever TF was before.
    pub(crate) tf_trap_pending: bool,
    /// Debugger execution breakpoints (linear addresses), checked before
    /// each instruction of a block that may contain one.
    pub debug_hw_exec: [Option<u64>; 4],
    /// Resume over the breakpoint the vCPU stopped at.
    debug_skip_bp: Option<u64>,
    /// The guest's instruction breakpoints (linear addresses, from DR0-DR3
    /// and DR7; see `debugreg.rs`) and whether there is any.
    guest_bp_exec: [Option<u64>; 4],
    guest_bp_on: bool,
    /// The instruction being run (and, until the next one starts, the one
    /// just run) loaded SS (MOV SS / POP SS): its debug traps are held for
    /// one instruction, and the next one's instruction breakpoints are
    /// inhibited.
    pub(crate) db_shadow: bool,
    /// Data breakpoint hits (DR6.B0-B3) held by MOV SS / POP SS blocking,
    /// delivered after the next instruction.
    pub(crate) pending_db: u8,
    /// The instruction being run delivered a software interrupt or
    /// exception (INT n, INT3, INTO, INT1): no single-step trap after it.
    pub(crate) soft_event: bool,
    /// The JIT (tier 2), when on.
    #[cfg(target_arch = "x86_64")]
    pub(crate) jit: Option<Box<crate::jit::Jit>>,
    /// Blocks generated code may still enter before returning to the
    /// dispatcher (decremented at each block entry).
    pub(crate) jit_budget: i32,
    /// Guest flags saved by generated code (LAHF/SETO format).
    pub(crate) jit_stash: u16,
    /// The patchable exit generated code last left through (0: none).
    pub(crate) jit_link_site: usize,
    /// The helpers' context while generated code runs.
    pub(crate) jit_ctx: usize,
    /// Locked-instruction state (see `locked.rs`).
    pub(crate) lock: locked::LockState,
    /// A split locked access was logged.
    split_lock_seen: bool,
    /// PAUSEs executed (see [`Cpu::pause_hint`]).
    pauses: u32,
    /// NMIs taken from the bus and not yet delivered: one may wait while
    /// NMIs are blocked (its handler runs), two when two arrived at once.
    nmi_latch: u8,
}

impl Cpu {
    pub fn new(state: CpuState) -> Self {
        let mut c = Cpu {
            state,
            mmu: Mmu::new(),
            config: CpuConfig::default(),
            cache: block::BlockCache::new(),
            long64: false,
            real: true,
            cpl: 0,
            user: false,
            ip_mask: 0xffff,
            ac: false,
            next_rip: 0,
            end_block: false,
            exit: None,
            kick: Arc::new(AtomicBool::new(false)),
            unimp_seen: HashSet::new(),
            unknown_msrs: HashSet::new(),
            insn_count: 0,
            decoded_blocks: 0,
            crossing_decodes: 0,
            tsc_base: Instant::now(),
            tsc_at_base: state.tsc,
            delivering: None,
            poll_countdown: 0,
            debug_int3: false,
            debug_single_step: false,
            tf_trap_pending: false,
            debug_hw_exec: [None; 4],
            debug_skip_bp: None,
            guest_bp_exec: [None; 4],
            guest_bp_on: false,
            db_shadow: false,
            pending_db: 0,
            soft_event: false,
            #[cfg(target_arch = "x86_64")]
            jit: None,
            jit_budget: 0,
            jit_stash: 0,
            jit_link_site: 0,
            jit_ctx: 0,
            lock: locked::LockState::Off,
            split_lock_seen: false,
            pauses: 0,
            nmi_latch: 0,
        };
        c.update_mode();
        c
    }

    /// The TLB base for generated code: `[[TlbEntry; TLB_SIZE]; 2]`, index
    /// 0 supervisor, 1 user ([`crate::mmu::tlb`]). Never moves.
    pub fn tlb_ptr(&mut self) -> *mut crate::mmu::Tlb {
        &mut *self.mmu.tlb
    }

    /// TLB index (0 supervisor, 1 user) of data accesses at the current CPL.
    pub fn mmu_index(&self) -> usize {
        self.user as usize
    }

    /// PAUSE: with more vCPUs than host CPUs, every 16th one yields the
    /// host CPU.
    pub(crate) fn pause_hint(&mut self) {
        static HOST_CPUS: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
        let host = *HOST_CPUS
            .get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
        if self.config.cpus > host {
            self.pauses = self.pauses.wrapping_add(1);
            if self.pauses.is_multiple_of(16) {
                std::thread::yield_now();
            }
        }
    }

    /// The flag another thread sets to stop [`Cpu::run`] at the next block
    /// boundary ([`ExitReason::Interrupted`]).
    pub fn kick_flag(&self) -> Arc<AtomicBool> {
        self.kick.clone()
    }

    /// The architectural state, with the TSC brought up to date.
    pub fn get_state(&mut self) -> CpuState {
        self.state.tsc = self.read_tsc();
        self.state
    }

    /// Replaces the architectural state (flushes the TLB).
    pub fn set_state(&mut self, st: &CpuState) {
        self.state = *st;
        self.nmi_latch = 0;
        self.pending_db = 0;
        self.db_shadow = false;
        self.sync_guest_breakpoints();
        self.tsc_base = Instant::now();
        self.tsc_at_base = st.tsc;
        self.mmu.flush_all();
        self.update_mode();
    }

    /// Resets the vCPU to the power-on state.
    pub fn reset(&mut self) {
        log::info!(target: "cpu_reset", "vCPU reset");
        let st = CpuState::reset();
        self.set_state(&st);
    }

    pub(crate) fn read_tsc(&self) -> u64 {
        let ns = self.tsc_base.elapsed().as_nanos() as u64;
        let ticks = (ns as u128 * self.config.tsc_hz as u128 / 1_000_000_000) as u64;
        self.tsc_at_base.wrapping_add(ticks)
    }

    /// The time-stamp counter's reference: the TSC read `at` the host
    /// instant. vCPUs sharing one reference read one consistent TSC.
    pub fn tsc_ref(&self) -> (Instant, u64) {
        (self.tsc_base, self.tsc_at_base)
    }

    /// Adopts another vCPU's TSC reference (see [`Cpu::tsc_ref`]).
    pub fn set_tsc_ref(&mut self, (base, at): (Instant, u64)) {
        self.tsc_base = base;
        self.tsc_at_base = at;
    }

    pub(crate) fn write_tsc(&mut self, v: u64) {
        self.tsc_base = Instant::now();
        self.tsc_at_base = v;
    }

    /// Recomputes the cached mode fields after CR0/EFER/CS/SS/RFLAGS.VM
    /// changes. Instructions that call it also end the block.
    pub fn update_mode(&mut self) {
        let mode = self.state.mode();
        self.long64 = mode == CpuMode::Long64;
        self.real = matches!(mode, CpuMode::Real | CpuMode::Virtual8086);
        self.cpl = self.state.cpl();
        self.user = self.cpl == 3;
        self.ac = self.user
            && self.state.cr0 & crate::consts::cr0::AM != 0
            && self.state.rflags & rflags::AC != 0;
        let cs = self.state.seg(SegReg::Cs);
        self.ip_mask = if self.long64 {
            u64::MAX
        } else if cs.big() && mode != CpuMode::Real && mode != CpuMode::Virtual8086 {
            0xffff_ffff
        } else if cs.big() {
            // Real mode with a 32-bit CS left over ("unreal" code): honour D.
            0xffff_ffff
        } else {
            0xffff
        };
        self.end_block = true;
    }

    /// Code size in bits for the decoder.
    pub(crate) fn bitness(&self) -> u32 {
        if self.long64 {
            64
        } else if self.state.seg(SegReg::Cs).big() {
            32
        } else {
            16
        }
    }

    /// Logs an unimplemented instruction once per `Code` and returns #UD.
    pub(crate) fn unimplemented(&mut self, i: &iced_x86::Instruction) -> Exception {
        if self.unimp_seen.insert(i.code()) {
            log::warn!(target: "unimp", "unimplemented instruction {:?} ({:?}) at {:#x}", i.code(), i.mnemonic(), self.state.rip);
        }
        Exception::ud()
    }

    fn take_bus_action(&mut self) {
        if std::mem::take(&mut self.mmu.mmio_written) {
            // Check interrupts at the next block boundary.
            self.poll_countdown = 1;
        }
        if let Some(a) = self.mmu.pending_action.take() {
            self.exit = match a {
                BusAction::Continue => None,
                BusAction::Exit(c) => Some(ExitReason::GuestExit(c)),
                BusAction::Reset => Some(ExitReason::Reset),
                BusAction::PowerOff => Some(ExitReason::PowerOff),
            };
        }
    }

    /// Runs until an exit or until about `budget` instructions retired
    /// (checked at block boundaries).
    pub fn run(&mut self, bus: &mut dyn CpuBus, budget: u64) -> ExitReason {
        let start = self.insn_count;
        loop {
            if let Some(e) = self.exit.take() {
                return e;
            }
            if self.kick.load(Ordering::Relaxed) && self.kick.swap(false, Ordering::AcqRel) {
                return ExitReason::Interrupted;
            }
            if self.insn_count.wrapping_sub(start) >= budget {
                return ExitReason::Budget;
            }
            if let Some(e) = self.run_block(bus) {
                return e;
            }
        }
    }

    /// Executes exactly one instruction (or delivers one pending event).
    pub fn step(&mut self, bus: &mut dyn CpuBus) -> StepResult {
        if let Some(e) = self.exit.take() {
            return StepResult::Exit(e);
        }
        if let Some(e) = self.check_events(bus) {
            return StepResult::Exit(e);
        }
        self.end_block = false;
        self.process_dirty_code();
        match self.fetch_block(bus) {
            Ok(b) => {
                // SAFETY: `fetch_block` keeps the block alive until the next
                // `process_dirty_code`, which only runs at a block boundary.
                let b = unsafe { &*b };
                if let Some(op) = b.ops.first() {
                    self.exec_one(bus, op);
                }
            }
            Err(e) => self.deliver_exception(bus, e),
        }
        self.take_bus_action();
        match self.exit.take() {
            Some(e) => StepResult::Exit(e),
            None => StepResult::Ok,
        }
    }

    /// Stops at a debugger execution breakpoint on the current instruction
    /// (once: resuming executes it).
    fn hit_hw_breakpoint(&mut self) -> bool {
        let pc = self.state.linear_pc();
        if self.debug_skip_bp.take() == Some(pc) {
            return false;
        }
        if let Some(n) = self.debug_hw_exec.iter().position(|b| *b == Some(pc)) {
            self.debug_skip_bp = Some(pc);
            self.exit = Some(ExitReason::Debug(DebugStop::HwBreakpoint(n)));
            self.end_block = true;
            return true;
        }
        false
    }

    /// Interrupt check and halt handling at a block boundary.
    fn check_events(&mut self, bus: &mut dyn CpuBus) -> Option<ExitReason> {
        // The bus is polled at every 8th block boundary, and at once after
        // instructions that end a block on purpose (STI, POPF, IRET, HLT,
        // mode changes, exceptions): interrupts stay prompt, the common
        // path avoids two virtual calls per block.
        if !self.end_block && !self.state.halted {
            self.poll_countdown = self.poll_countdown.wrapping_sub(1);
            if self.poll_countdown & 7 != 0 {
                return None;
            }
        }
        if bus.startup_pending() {
            return Some(ExitReason::Startup);
        }
        // NMIs: while one's handler runs (NMIs blocked until IRET) one more
        // waits and the rest are lost (SDM 6.7.1); none is taken in an
        // STI or MOV SS shadow.
        while self.nmi_latch < 2 && bus.take_nmi() {
            self.nmi_latch += 1;
        }
        if self.state.nmi_blocked {
            self.nmi_latch = self.nmi_latch.min(1);
        } else if self.nmi_latch > 0 && !self.state.interrupt_shadow {
            self.nmi_latch -= 1;
            self.state.halted = false;
            self.state.nmi_blocked = true;
            self.deliver_nmi(bus);
            return self.exit.take();
        }
        if self.state.rflags & rflags::IF != 0
            && !self.state.interrupt_shadow
            && bus.pending_interrupt()
        {
            if let Some(v) = bus.acknowledge_interrupt() {
                self.state.halted = false;
                self.deliver_interrupt(bus, v);
                return self.exit.take();
            }
        }
        if self.state.halted {
            return Some(ExitReason::Halt);
        }
        None
    }

    fn run_block(&mut self, bus: &mut dyn CpuBus) -> Option<ExitReason> {
        if let Some(e) = self.check_events(bus) {
            return Some(e);
        }
        self.end_block = false;
        self.process_dirty_code();
        let blk = match self.fetch_block(bus) {
            // SAFETY: `fetch_block` keeps the block alive until the next
            // `process_dirty_code`, which only runs at a block boundary.
            Ok(b) => unsafe { &*b },
            Err(e) => {
                self.deliver_exception(bus, e);
                return self.exit.take();
            }
        };
        let slow = self.state.rflags & rflags::TF != 0
            || self.debug_single_step
            || self.debug_hw_exec.iter().any(Option::is_some)
            || self.mmu.watching()
            || self.guest_bp_on
            || self.pending_db != 0
            || self.state.interrupt_shadow;
        if slow {
            self.jit_link_site = 0;
            for op in blk.ops.iter() {
                self.exec_one(bus, op);
                if self.end_block {
                    break;
                }
            }
        } else if self.jit_enabled() && !self.ac && self.jit_run(bus, blk) {
            // Ran as host code (tier 2).
            self.state.rflags &= !rflags::RF;
        } else {
            // Fast path: no trap flag, no shadow, no single-stepping.
            self.jit_link_site = 0;
            let mut n = 0;
            for op in blk.ops.iter() {
                n += 1;
                if self.exec_fast(bus, op) {
                    break;
                }
            }
            self.insn_count += n;
            self.state.rflags &= !rflags::RF;
        }
        if std::mem::take(&mut self.tf_trap_pending) {
            self.state.dr[6] |= 1 << 14;
            self.deliver_exception(bus, Exception::new(crate::exception::vector::DB));
        }
        self.take_bus_action();
        if let Some((slot, addr)) = self.mmu.watch_hit.take() {
            self.exit
                .get_or_insert(ExitReason::Debug(DebugStop::Watchpoint { slot, addr }));
        }
        self.exit.take()
    }

    /// Runs one instruction of the fast path (its `fast` handler; a fault
    /// is delivered at once) and says whether the block must end after it:
    /// it ended the block on purpose or faulted, code was overwritten, or a
    /// bus action is pending. The JIT's helpers run instructions this way.
    #[inline(always)]
    pub(crate) fn exec_fast(&mut self, bus: &mut dyn CpuBus, op: &Op) -> bool {
        let i = &op.insn;
        self.next_rip = i.next_ip() & self.ip_mask;
        match (op.fast)(self, bus, i) {
            Ok(()) => self.state.rip = self.next_rip,
            Err(e) => {
                self.end_block = true;
                self.deliver_exception(bus, e);
            }
        }
        self.end_block || self.mmu.events()
    }

    #[inline(always)]
    fn jit_enabled(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        return self.jit.is_some();
        #[cfg(not(target_arch = "x86_64"))]
        return false;
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn jit_run(&mut self, _bus: &mut dyn CpuBus, _blk: &Block) -> bool {
        false
    }

    #[inline]
    fn exec_one(&mut self, bus: &mut dyn CpuBus, op: &Op) {
        let i = &op.insn;
        if self.debug_hw_exec.iter().any(Option::is_some) && self.hit_hw_breakpoint() {
            return;
        }
        // The previous instruction loaded SS: instruction breakpoints are
        // inhibited (as on Intel CPUs) for this one.
        let movss_blocking = self.state.interrupt_shadow && self.db_shadow;
        if self.guest_bp_on && !movss_blocking && self.guest_exec_breakpoint(bus) {
            return;
        }
        let shadow = std::mem::take(&mut self.state.interrupt_shadow);
        let tf = self.state.rflags & rflags::TF != 0;
        self.next_rip = i.next_ip() & self.ip_mask;
        self.insn_count += 1;
        self.db_shadow = false;
        self.soft_event = false;
        self.mmu.guest_watch_hits = 0;
        let r = (op.exec)(self, bus, i);
        // Data breakpoints held by a MOV SS just before (what INT1 did not
        // take into its own #DB).
        let held = std::mem::take(&mut self.pending_db);
        match r {
            Ok(()) => {
                self.state.rip = self.next_rip;
                // RF lasts one instruction, except the one IRET loads
                // (it suppresses the instruction breakpoint it returns to).
                if !matches!(
                    i.mnemonic(),
                    iced_x86::Mnemonic::Iret
                        | iced_x86::Mnemonic::Iretd
                        | iced_x86::Mnemonic::Iretq
                ) {
                    self.state.rflags &= !rflags::RF;
                }
                // SYSCALL traps on the TF it leaves (FMASK may clear it),
                // SYSRET through `tf_trap_pending`; other instructions on
                // the TF they started with. An instruction that delivered
                // a software interrupt does not single-step trap (the
                // handler starts with TF clear).
                let tf = match i.mnemonic() {
                    _ if self.soft_event => false,
                    iced_x86::Mnemonic::Syscall => self.state.rflags & rflags::TF != 0,
                    iced_x86::Mnemonic::Sysret | iced_x86::Mnemonic::Sysretq => false,
                    _ => tf,
                };
                let hits = std::mem::take(&mut self.mmu.guest_watch_hits);
                if self.db_shadow {
                    // MOV SS / POP SS: its single step is dropped (the next
                    // instruction traps on its own TF), its data
                    // breakpoints wait for the next instruction.
                    self.pending_db = hits | held;
                } else if tf || hits | held != 0 {
                    // Single-step and data breakpoint traps after the
                    // instruction (at a software interrupt's handler
                    // entry when it delivered one).
                    self.deliver_debug_trap(bus, hits | held, tf);
                }
                if self.debug_single_step {
                    self.exit
                        .get_or_insert(ExitReason::Debug(DebugStop::SingleStep));
                    self.end_block = true;
                }
            }
            Err(e) => {
                self.end_block = true;
                self.db_shadow = false;
                if e.vector == crate::exception::vector::DB && held != 0 {
                    self.state.dr[6] = (self.state.dr[6] & !debugreg::DR6_B) | u64::from(held);
                    self.deliver_exception(bus, e);
                } else {
                    self.deliver_exception(bus, e);
                    if held != 0 && self.exit.is_none() {
                        // Held data breakpoints: at the handler's entry.
                        self.deliver_debug_trap(bus, held, false);
                    }
                }
            }
        }
        if shadow
            || !self.mmu.dirty_code.is_empty()
            || self.mmu.pending_action.is_some()
            || self.mmu.watch_hit.is_some()
            || self.exit.is_some()
        {
            self.end_block = true;
        }
    }
}
