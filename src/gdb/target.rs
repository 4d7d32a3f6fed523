//! The gdbstub `Target`: the vCPUs (one gdb thread each), guest memory at
//! linear addresses, and the breakpoints and watchpoints gdb asked for,
//! which apply to every vCPU. The gdbstub thread operations are in
//! [`super::threads`].

use std::collections::BTreeMap;

use accel::{DebugEvent, GuestDebug, HwBreak, Vcpu, WatchKind};
use devices::dma::GuestRam;
use gdbstub::common::{Signal, Tid};
use gdbstub::stub::MultiThreadStopReason;
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::{
    Breakpoints, BreakpointsOps, HwBreakpoint, HwBreakpointOps, HwWatchpoint, HwWatchpointOps,
    SwBreakpoint, SwBreakpointOps,
};
use gdbstub::target::ext::monitor_cmd::{ConsoleOutput, MonitorCmd, MonitorCmdOps};
use gdbstub::target::{Target, TargetError, TargetResult};
use vm_memory::GuestMemoryMmap;
use x86::CpuState;

use super::arch::X86Hx;
use super::probe::Caps;
use super::{mem, watch};
use crate::machine::MachineConfig;

/// EFAULT: gdb shows "Cannot access memory at address ...".
pub(super) const EFAULT: u8 = 14;
/// EINVAL.
pub(super) const EINVAL: u8 = 22;

/// What gdb is told about a stop; `DoneStep` stands for the end of a step
/// of the current vCPU until it is reported (with its thread).
pub type StopReason = MultiThreadStopReason<u64>;

/// What the debugger asked the vCPU to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    Continue,
    Step,
}

/// A software breakpoint: an INT3 byte planted at a physical address.
#[derive(Clone, Copy, Debug)]
struct SwBp {
    paddr: u64,
    orig: u8,
}

/// What owns a hardware debug slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotOwner {
    /// A gdb software breakpoint (`break`), kept in a debug register while
    /// one is free: that needs no INT3 in guest memory, works before the
    /// address is mapped, and works on hosts whose KVM cannot intercept #BP.
    Sw(u64),
    /// A gdb hardware breakpoint (`hbreak`).
    Break(u64),
    /// A gdb watchpoint (start address, length, kind); one may use several
    /// slots when it is not naturally aligned.
    Watch(u64, u64, WatchKind),
}

/// Errors of the target layer (fatal for the session).
#[derive(Debug)]
pub struct TargetFail(pub String);

impl std::fmt::Display for TargetFail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Requests from monitor commands, acted on by the session loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// `monitor quit`: hx86 exits with this status.
    Quit(i32),
}

/// The debugger's view of one vCPU.
#[derive(Default)]
pub struct CpuView {
    /// The vCPU's state while it is stopped (read once per stop).
    cache: Option<CpuState>,
    /// The last stop was a guest INT3 that is not one of ours, at this pc.
    foreign_int3: Option<u64>,
    /// The debug setup last given to the vCPU.
    applied: Option<GuestDebug>,
    /// What gdb's next resume asks of this vCPU (`None`: the default).
    pub action: Option<Resume>,
    /// A breakpoint or watchpoint hit while another vCPU's stop was
    /// reported: reported when this vCPU is resumed.
    pub pending: Option<DebugEvent>,
    /// What `info threads` shows, refreshed when gdb lists the threads.
    pub extra: String,
}

pub struct HxTarget<'a> {
    /// The vCPUs; gdb thread `n` is `vcpus[n - 1]`.
    pub vcpus: &'a mut [Box<dyn Vcpu>],
    pub cpus: Vec<CpuView>,
    /// The vCPU that register and memory accesses and stop reports are
    /// about.
    pub cur: usize,
    pub mem: GuestMemoryMmap,
    /// The same memory as devices write it: writes through it are
    /// reported to the accelerator (the DBT's code tracking).
    ram: GuestRam,
    pub cfg: &'a MachineConfig,
    pub ctl: std::sync::Arc<crate::control::Control>,
    /// Software breakpoints planted as INT3, by linear address (the others
    /// sit in `slots`).
    sw: BTreeMap<u64, SwBp>,
    /// The four debug-register slots.
    slots: [Option<(HwBreak, SlotOwner)>; 4],
    /// gdb asked to resume (the actions are in `cpus`).
    pub resumed: bool,
    /// What vCPUs without an action do: continue, or stay stopped
    /// (scheduler locking).
    pub default_action: Option<Resume>,
    /// A machine event (power-off, reset, guest exit) a vCPU ran into
    /// while another vCPU's stop was reported: acted on at the next resume.
    pub machine_pending: Option<(usize, accel::VcpuExit)>,
    pub request: Option<Request>,
    /// What the accelerator's debug support can do here.
    pub caps: Caps,
    watch_cache: Vec<WatchRange>,
    watch_map_age: u32,
}

/// A watched range: start, length, kind, and its physical pieces when
/// it is mapped.
type WatchRange = (u64, u64, WatchKind, Option<Vec<(u64, usize)>>);

/// A watched range before a step: start, length, kind, physical pieces,
/// bytes.
type WatchValue = (
    u64,
    u64,
    WatchKind,
    Option<Vec<(u64, usize)>>,
    Option<Vec<u8>>,
);

/// Watched memory before a single step (for watchpoints by stepping).
pub struct WatchPre {
    values: Vec<WatchValue>,
    accesses: Vec<watch::MemAccess>,
}

impl<'a> HxTarget<'a> {
    pub fn new(
        vcpus: &'a mut [Box<dyn Vcpu>],
        ram: GuestRam,
        cfg: &'a MachineConfig,
        ctl: std::sync::Arc<crate::control::Control>,
        caps: Caps,
    ) -> Self {
        HxTarget {
            cpus: vcpus.iter().map(|_| CpuView::default()).collect(),
            vcpus,
            cur: 0,
            mem: ram.memory().clone(),
            ram,
            cfg,
            ctl,
            sw: BTreeMap::new(),
            slots: [None; 4],
            resumed: false,
            default_action: Some(Resume::Continue),
            machine_pending: None,
            request: None,
            caps,
            watch_cache: Vec::new(),
            watch_map_age: 0,
        }
    }

    /// The gdb thread id of vCPU `i`.
    pub fn tid(i: usize) -> Tid {
        Tid::new(i + 1).unwrap_or(Tid::MIN)
    }

    /// Makes gdb thread `tid` the current vCPU; false when there is no
    /// such vCPU.
    pub fn select(&mut self, tid: Tid) -> bool {
        let i = tid.get() - 1;
        if i < self.vcpus.len() {
            self.cur = i;
            true
        } else {
            false
        }
    }

    /// The current vCPU's state (cached while stopped).
    pub fn state(&mut self) -> Result<CpuState, TargetFail> {
        let i = self.cur;
        if let Some(s) = self.cpus[i].cache {
            return Ok(s);
        }
        let s = self.vcpus[i]
            .state()
            .map_err(|e| TargetFail(format!("reading the state of vCPU {i}: {e}")))?;
        self.cpus[i].cache = Some(s);
        Ok(s)
    }

    pub fn set_state(&mut self, s: &CpuState) -> Result<(), TargetFail> {
        let i = self.cur;
        self.cpus[i].cache = None;
        // Whatever stop it had pending is stale now.
        self.cpus[i].pending = None;
        self.vcpus[i]
            .set_state(s)
            .map_err(|e| TargetFail(format!("writing the state of vCPU {i}: {e}")))?;
        self.cpus[i].cache = Some(*s);
        Ok(())
    }

    /// Forgets the cached states (the vCPUs ran, or were reset).
    pub fn invalidate(&mut self) {
        for c in &mut self.cpus {
            c.cache = None;
        }
    }

    /// Resets the machine: every vCPU, as a guest reset does.
    pub fn reset_machine(&mut self) -> anyhow::Result<()> {
        self.forget_stops();
        crate::smp::reset_all(self.cfg, &self.ctl, self.vcpus, &self.mem)
    }

    /// Forgets what the vCPUs stopped on (the machine was reset).
    pub fn forget_stops(&mut self) {
        self.invalidate();
        for c in &mut self.cpus {
            c.pending = None;
            c.foreign_int3 = None;
        }
    }

    /// What `info threads` says about vCPU `i`: its number, mode and
    /// whether it runs.
    pub fn describe(&mut self, i: usize) -> String {
        let cur = std::mem::replace(&mut self.cur, i);
        let st = self.state();
        self.cur = cur;
        let Ok(st) = st else {
            return format!("CPU#{i}");
        };
        let run = if self.vcpus[i].waiting_for_sipi() {
            ", waiting for SIPI"
        } else if st.halted {
            ", halted"
        } else {
            ""
        };
        format!("CPU#{i} [{}{run}]", st.mode().name())
    }

    /// The debug setup for the next run.
    fn guest_debug(&self, single_step: bool, sw: bool) -> GuestDebug {
        let mut hw = [None; 4];
        for (i, s) in self.slots.iter().enumerate() {
            hw[i] = s.map(|(b, _)| b);
            // Watchpoints the accelerator cannot deliver are stepped.
            if !self.caps.data_watch && matches!(hw[i], Some(HwBreak::Watch { .. })) {
                hw[i] = None;
            }
        }
        GuestDebug {
            enabled: true,
            single_step,
            sw_breakpoints: sw && !self.sw.is_empty(),
            hw,
        }
    }

    pub fn apply_debug(&mut self, dbg: GuestDebug) -> Result<(), TargetFail> {
        let i = self.cur;
        if self.cpus[i].applied == Some(dbg) {
            return Ok(());
        }
        self.vcpus[i]
            .set_guest_debug(&dbg)
            .map_err(|e| TargetFail(format!("setting up guest debugging on vCPU {i}: {e}")))?;
        self.cpus[i].applied = Some(dbg);
        Ok(())
    }

    /// The current vCPU stopped on a guest INT3 that the next run hands
    /// to the guest.
    pub fn on_foreign_int3(&mut self) -> bool {
        self.cpus[self.cur].foreign_int3.is_some()
    }

    /// Prepares the vCPU for the next run: single-step or not, and, when
    /// the vCPU sits on a guest INT3 that is not a gdb breakpoint, lets
    /// the guest execute it (one step with breakpoints off).
    /// Returns true when that first step is the whole of a `stepi`.
    pub fn prepare_run(&mut self, step: bool) -> Result<bool, TargetFail> {
        let pc = self.state().map(|s| x86::gdb::pc(&s)).ok();
        if let (Some(at), Some(pc)) = (self.cpus[self.cur].foreign_int3.take(), pc) {
            if at == pc {
                let d = self.guest_debug(true, false);
                self.apply_debug(d)?;
                return Ok(true);
            }
        }
        let d = self.guest_debug(step, true);
        self.apply_debug(d)?;
        Ok(false)
    }

    /// Watchpoints are set that the accelerator cannot deliver: the guest
    /// is single-stepped and checked after each instruction.
    pub fn soft_watching(&self) -> bool {
        !self.caps.data_watch
            && self
                .slots
                .iter()
                .any(|s| matches!(s, Some((_, SlotOwner::Watch(..)))))
    }

    /// The watched ranges with their physical pages, re-translated every
    /// so many steps (a stepped write watchpoint then costs no state read).
    fn watch_map(&mut self) -> Vec<WatchRange> {
        if self.watch_map_age == 0 || self.watch_map_age >= 256 {
            let mut owners: Vec<(u64, u64, WatchKind)> = Vec::new();
            for s in self.slots.iter().flatten() {
                if let (_, SlotOwner::Watch(a, l, k)) = *s {
                    if !owners.contains(&(a, l, k)) {
                        owners.push((a, l, k));
                    }
                }
            }
            let mut map = Vec::new();
            for (a, l, k) in owners {
                let mut chunks = Vec::new();
                let mut done = 0u64;
                while done < l {
                    let lin = a.wrapping_add(done);
                    let n = (0x1000 - (lin & 0xfff)).min(l - done);
                    match self.translate(lin) {
                        Some(p) => chunks.push((p, n as usize)),
                        None => {
                            chunks.clear();
                            break;
                        }
                    }
                    done += n;
                }
                map.push((a, l, k, (!chunks.is_empty()).then_some(chunks)));
            }
            self.watch_cache = map;
            self.watch_map_age = 0;
        }
        self.watch_map_age += 1;
        self.watch_cache.clone()
    }

    /// Forgets the watched ranges' translations.
    pub fn watch_map_reset(&mut self) {
        self.watch_map_age = 0;
    }

    /// Before a step: the watched bytes, and (for read and access
    /// watchpoints) what the next instruction accesses.
    pub fn watch_pre(&mut self) -> WatchPre {
        let map = self.watch_map();
        let mut values = Vec::new();
        let mut decode = false;
        for (a, l, k, chunks) in &map {
            decode |= *k != WatchKind::Write;
            let bytes = chunks.as_ref().and_then(|c| self.phys_bytes(c));
            values.push((*a, *l, *k, chunks.clone(), bytes));
        }
        let mut accesses = Vec::new();
        if decode {
            if let Ok(st) = self.state() {
                let mut code = [0u8; 15];
                let n = self.read_linear(x86::gdb::pc(&st), &mut code);
                accesses = watch::accesses(&st, &code[..n]);
            }
        }
        WatchPre { values, accesses }
    }

    fn phys_bytes(&self, chunks: &[(u64, usize)]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        for &(p, n) in chunks {
            let at = out.len();
            out.resize(at + n, 0);
            if !mem::read_phys(&self.mem, p, &mut out[at..]) {
                return None;
            }
        }
        Some(out)
    }

    /// Whether the instruction a step was about to run accesses a watched
    /// range (its own hit, not a change another vCPU made meanwhile).
    pub fn watch_touched(pre: &WatchPre) -> bool {
        pre.values
            .iter()
            .any(|(a, l, k, _, _)| pre.accesses.iter().any(|m| watch::hits(m, *a, *l, *k)))
    }

    /// After a step: the watchpoint it hit, if any.
    pub fn watch_post(&mut self, pre: &WatchPre) -> Option<StopReason> {
        for (a, l, k, chunks, before) in &pre.values {
            let touched = pre.accesses.iter().any(|m| watch::hits(m, *a, *l, *k));
            let changed = matches!(k, WatchKind::Write | WatchKind::Access)
                && before.is_some()
                && chunks.as_ref().and_then(|c| self.phys_bytes(c)) != *before;
            if touched || changed {
                return Some(StopReason::Watch {
                    tid: Self::tid(self.cur),
                    kind: gdb_watch_kind(*k),
                    addr: *a,
                });
            }
        }
        None
    }

    /// Turns a debug exit of the current vCPU into what gdb is told.
    pub fn stop_reason(&mut self, ev: DebugEvent, stepping: bool) -> StopReason {
        self.cpus[self.cur].cache = None;
        let tid = Self::tid(self.cur);
        match ev {
            DebugEvent::SingleStep if stepping => StopReason::DoneStep,
            DebugEvent::SingleStep => StopReason::SignalWithThread {
                tid,
                signal: Signal::SIGTRAP,
            },
            DebugEvent::SwBreakpoint => {
                let pc = self.state().map(|s| x86::gdb::pc(&s)).unwrap_or(0);
                if self.sw.contains_key(&pc) {
                    StopReason::SwBreak(tid)
                } else {
                    // The guest's own INT3: gdb sees SIGTRAP, and the next
                    // resume hands the INT3 to the guest.
                    self.cpus[self.cur].foreign_int3 = Some(pc);
                    StopReason::SignalWithThread {
                        tid,
                        signal: Signal::SIGTRAP,
                    }
                }
            }
            DebugEvent::HwBreakpoint(slot) => match self.slots.get(slot).copied().flatten() {
                Some((_, SlotOwner::Sw(_))) => StopReason::SwBreak(tid),
                _ => StopReason::HwBreak(tid),
            },
            DebugEvent::Watchpoint { slot, addr } => {
                match self.slots.get(slot).copied().flatten() {
                    Some((_, SlotOwner::Watch(start, _, kind))) => StopReason::Watch {
                        tid,
                        kind: gdb_watch_kind(kind),
                        addr: start,
                    },
                    _ => StopReason::Watch {
                        tid,
                        kind: gdbstub::target::ext::breakpoints::WatchKind::Write,
                        addr,
                    },
                }
            }
        }
    }

    /// Removes every breakpoint and watchpoint and gives the debug
    /// registers and INT3 back to the guest.
    pub fn detach(&mut self) {
        let bps: Vec<u64> = self.sw.keys().copied().collect();
        for a in bps {
            self.remove_sw(a);
        }
        self.slots = [None; 4];
        for (v, c) in self.vcpus.iter_mut().zip(&mut self.cpus) {
            let _ = v.set_guest_debug(&GuestDebug::default());
            c.applied = None;
            c.pending = None;
        }
    }

    /// A debug stop kept for vCPU `i` that still means something: its
    /// breakpoint or watchpoint is still set (gdb may have removed it).
    pub fn take_pending(&mut self, i: usize) -> Option<DebugEvent> {
        let ev = self.cpus[i].pending.take()?;
        let live = match ev {
            DebugEvent::SingleStep => false,
            DebugEvent::SwBreakpoint => {
                let cur = std::mem::replace(&mut self.cur, i);
                let pc = self.state().map(|s| x86::gdb::pc(&s)).ok();
                self.cur = cur;
                pc.is_some_and(|pc| self.sw.contains_key(&pc))
            }
            DebugEvent::HwBreakpoint(s) | DebugEvent::Watchpoint { slot: s, .. } => {
                self.slots.get(s).copied().flatten().is_some()
            }
        };
        live.then_some(ev)
    }

    /// Linear -> physical for the current state.
    pub fn translate(&mut self, lin: u64) -> Option<u64> {
        let st = self.state().ok()?;
        mem::translate(&st, &self.mem, lin)
    }

    /// Reads guest memory at a linear address, with gdb's breakpoint bytes
    /// hidden. Returns how many bytes could be read.
    pub fn read_linear(&mut self, lin: u64, data: &mut [u8]) -> usize {
        let mut done = 0;
        while done < data.len() {
            let a = lin.wrapping_add(done as u64);
            let n = (0x1000 - (a & 0xfff) as usize).min(data.len() - done);
            let Some(p) = self.translate(a) else { break };
            if !mem::read_phys(&self.mem, p, &mut data[done..done + n]) {
                break;
            }
            for bp in self.sw.values() {
                if bp.paddr >= p && bp.paddr < p + n as u64 {
                    data[done + (bp.paddr - p) as usize] = bp.orig;
                }
            }
            done += n;
        }
        done
    }

    /// Writes guest memory at a linear address (all or nothing). Bytes
    /// under a software breakpoint update the saved original.
    pub fn write_linear(&mut self, lin: u64, data: &[u8]) -> bool {
        let mut pages = Vec::new();
        let mut done = 0;
        while done < data.len() {
            let a = lin.wrapping_add(done as u64);
            let n = (0x1000 - (a & 0xfff) as usize).min(data.len() - done);
            let Some(p) = self.translate(a) else {
                return false;
            };
            pages.push((p, done, n));
            done += n;
        }
        for (p, off, n) in pages {
            let mut chunk = data[off..off + n].to_vec();
            for bp in self.sw.values_mut() {
                if bp.paddr >= p && bp.paddr < p + n as u64 {
                    let i = (bp.paddr - p) as usize;
                    bp.orig = chunk[i];
                    chunk[i] = 0xcc;
                }
            }
            if !self.write_phys(p, &chunk) {
                return false;
            }
        }
        true
    }

    /// Writes guest memory at a physical address (ROM too: the debugger
    /// may patch it) and tells the accelerator, so that the DBT drops what
    /// any vCPU translated from those bytes.
    fn write_phys(&self, paddr: u64, data: &[u8]) -> bool {
        let ok = mem::write_phys(&self.mem, paddr, data);
        if ok {
            self.ram.written(paddr, data.len() as u64);
        }
        ok
    }

    fn remove_sw(&mut self, lin: u64) -> bool {
        let Some(bp) = self.sw.remove(&lin) else {
            return false;
        };
        // Only restore when the byte is still ours (the guest may have
        // rewritten it).
        let mut b = [0u8];
        if mem::read_phys(&self.mem, bp.paddr, &mut b) && b[0] == 0xcc {
            let shared = self.sw.values().any(|o| o.paddr == bp.paddr);
            if !shared {
                self.write_phys(bp.paddr, &[bp.orig]);
            }
        }
        true
    }

    fn free_slots(&self) -> Vec<usize> {
        (0..4).filter(|&i| self.slots[i].is_none()).collect()
    }

    /// Plants an INT3 for a software breakpoint at `lin`.
    fn plant(&mut self, lin: u64) -> bool {
        let Some(paddr) = self.translate(lin) else {
            return false;
        };
        let mut b = [0u8];
        if !mem::read_phys(&self.mem, paddr, &mut b) {
            return false;
        }
        // Another breakpoint on the same physical byte already saved it.
        let orig = self
            .sw
            .values()
            .find(|o| o.paddr == paddr)
            .map_or(b[0], |o| o.orig);
        if !self.write_phys(paddr, &[0xcc]) {
            return false;
        }
        self.sw.insert(lin, SwBp { paddr, orig });
        true
    }

    /// Frees debug-register slots for `hbreak`/`watch` by moving software
    /// breakpoints out of them into INT3s.
    fn make_free(&mut self, need: usize) -> bool {
        while self.free_slots().len() < need {
            let Some(i) = (0..4).find(|&i| matches!(self.slots[i], Some((_, SlotOwner::Sw(_)))))
            else {
                return false;
            };
            let Some((_, SlotOwner::Sw(a))) = self.slots[i] else {
                return false;
            };
            if !self.caps.int3 || !self.plant(a) {
                return false;
            }
            self.slots[i] = None;
        }
        true
    }
}

/// Splits `[addr, addr+len)` into naturally aligned pieces of 1, 2, 4 or 8
/// bytes, as debug registers need (empty when the range wraps around the
/// address space).
pub fn split_watch(addr: u64, len: u64) -> Vec<(u64, u8)> {
    let mut out = Vec::new();
    let Some(end) = addr.checked_add(len) else {
        return out;
    };
    let mut a = addr;
    while a < end {
        let mut size = 8u64;
        while size > 1 && (!a.is_multiple_of(size) || a.checked_add(size).is_none_or(|e| e > end)) {
            size /= 2;
        }
        out.push((a, size as u8));
        a += size;
    }
    out
}

impl Target for HxTarget<'_> {
    type Arch = X86Hx;
    type Error = TargetFail;

    fn base_ops(&mut self) -> BaseOps<'_, X86Hx, TargetFail> {
        BaseOps::MultiThread(self)
    }

    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }

    fn support_monitor_cmd(&mut self) -> Option<MonitorCmdOps<'_, Self>> {
        Some(self)
    }

    // Acks cost nothing over a socket, and with them a restarted stub (see
    // the session loop) needs no negotiated state.
    fn use_no_ack_mode(&self) -> bool {
        false
    }

    fn guard_rail_implicit_sw_breakpoints(&self) -> bool {
        true
    }
}

impl Breakpoints for HxTarget<'_> {
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }
    fn support_hw_breakpoint(&mut self) -> Option<HwBreakpointOps<'_, Self>> {
        Some(self)
    }
    fn support_hw_watchpoint(&mut self) -> Option<HwWatchpointOps<'_, Self>> {
        Some(self)
    }
}

impl SwBreakpoint for HxTarget<'_> {
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        let in_slot = self
            .slots
            .iter()
            .any(|s| matches!(s, Some((_, SlotOwner::Sw(a))) if *a == addr));
        if in_slot || self.sw.contains_key(&addr) {
            return Ok(true);
        }
        if let Some(&i) = self.free_slots().first() {
            self.slots[i] = Some((HwBreak::Exec { addr }, SlotOwner::Sw(addr)));
            return Ok(true);
        }
        // No debug register left: an INT3, where the accelerator stops on it.
        if self.caps.int3 && self.plant(addr) {
            Ok(true)
        } else {
            Err(TargetError::Errno(EFAULT))
        }
    }

    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        for s in self.slots.iter_mut() {
            if matches!(s, Some((_, SlotOwner::Sw(a))) if *a == addr) {
                *s = None;
                return Ok(true);
            }
        }
        Ok(self.remove_sw(addr))
    }
}

impl HwBreakpoint for HxTarget<'_> {
    fn add_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        if !self.make_free(1) {
            return Ok(false);
        }
        match self.free_slots().first() {
            Some(&i) => {
                self.slots[i] = Some((HwBreak::Exec { addr }, SlotOwner::Break(addr)));
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn remove_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        for s in self.slots.iter_mut() {
            if matches!(s, Some((_, SlotOwner::Break(a))) if *a == addr) {
                *s = None;
                return Ok(true);
            }
        }
        Ok(false)
    }
}

fn gdb_watch_kind(k: WatchKind) -> gdbstub::target::ext::breakpoints::WatchKind {
    use gdbstub::target::ext::breakpoints::WatchKind as G;
    match k {
        WatchKind::Write => G::Write,
        WatchKind::Read => G::Read,
        WatchKind::Access => G::ReadWrite,
    }
}

fn watch_kind(k: gdbstub::target::ext::breakpoints::WatchKind) -> WatchKind {
    use gdbstub::target::ext::breakpoints::WatchKind as G;
    match k {
        G::Write => WatchKind::Write,
        G::Read => WatchKind::Read,
        G::ReadWrite => WatchKind::Access,
    }
}

impl HwWatchpoint for HxTarget<'_> {
    fn add_hw_watchpoint(
        &mut self,
        addr: u64,
        len: u64,
        kind: gdbstub::target::ext::breakpoints::WatchKind,
    ) -> TargetResult<bool, Self> {
        if len == 0 || len > 32 {
            return Ok(false);
        }
        let kind = watch_kind(kind);
        let pieces = split_watch(addr, len);
        if pieces.is_empty() {
            return Ok(false);
        }
        if !self.make_free(pieces.len()) {
            return Ok(false);
        }
        let free = self.free_slots();
        if pieces.len() > free.len() {
            return Ok(false);
        }
        for ((a, l), i) in pieces.into_iter().zip(free) {
            self.slots[i] = Some((
                HwBreak::Watch {
                    addr: a,
                    len: l,
                    kind,
                },
                SlotOwner::Watch(addr, len, kind),
            ));
        }
        Ok(true)
    }

    fn remove_hw_watchpoint(
        &mut self,
        addr: u64,
        len: u64,
        kind: gdbstub::target::ext::breakpoints::WatchKind,
    ) -> TargetResult<bool, Self> {
        let owner = SlotOwner::Watch(addr, len, watch_kind(kind));
        let mut found = false;
        for s in self.slots.iter_mut() {
            if matches!(s, Some((_, o)) if *o == owner) {
                *s = None;
                found = true;
            }
        }
        Ok(found)
    }
}

impl MonitorCmd for HxTarget<'_> {
    fn handle_monitor_cmd(&mut self, cmd: &[u8], out: ConsoleOutput<'_>) -> Result<(), TargetFail> {
        super::monitor::run(self, cmd, out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_ranges_split_into_aligned_pieces() {
        assert_eq!(split_watch(0x1000, 4), vec![(0x1000, 4)]);
        assert_eq!(split_watch(0x1000, 8), vec![(0x1000, 8)]);
        assert_eq!(
            split_watch(0x1001, 4),
            vec![(0x1001, 1), (0x1002, 2), (0x1004, 1)]
        );
        assert_eq!(split_watch(0x1000, 16), vec![(0x1000, 8), (0x1008, 8)]);
        assert_eq!(split_watch(0x1006, 3), vec![(0x1006, 2), (0x1008, 1)]);
        assert_eq!(
            split_watch(u64::MAX - 2, 2),
            vec![(u64::MAX - 2, 1), (u64::MAX - 1, 1)]
        );
        assert!(split_watch(u64::MAX - 1, 16).is_empty());
    }
}
