//! The `dbt` accelerator: runs [`x86::CpuState`] through hx86's own
//! interpreter ([`x86::Cpu`], tier 1; the JIT comes later).
//!
//! ```text
//! DbtAccel::create_vm(GuestMemory { mem, rom }, io) -> DbtVm
//! DbtVm::create_vcpu(id)                              -> DbtVcpu (a Vcpu)
//! DbtVcpu::run()  interprets until: HLT that nothing can wake (Halt),
//!                 triple fault (Shutdown), an I/O write asking for
//!                 Reset / PowerOff / Exit(code), a debug stop, or a kick.
//! ```
//!
//! Port and MMIO accesses complete inside `run()` through the
//! [`IoHandler`]. With a userspace [`InterruptController`] (given by
//! [`Vm::set_interrupt_controller`]) interrupts are taken at block
//! boundaries, and a HLT with IF=1 sleeps in the controller's `wait` until
//! an interrupt, a timer deadline or a kick; without one it returns
//! [`VcpuExit::Halt`].

mod bus;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use x86::interp::DebugStop;
use x86::{Cpu, CpuState, ExitReason};

use crate::{
    Accelerator, DebugEvent, Error, GuestDebug, GuestMemory, HwBreak, InterruptController,
    IoHandler, Kicker, Result, Startup, Vcpu, VcpuExit, Vm, WatchKind,
};
use bus::DbtBus;

/// Options of the DBT (`-accel dbt,jit=on|off,jit-threshold=N,tb-size=MiB`).
#[derive(Clone, Debug)]
pub struct DbtOptions {
    /// The JIT (tier 2), or `None` for the interpreter alone. Ignored
    /// (with one message) where the JIT cannot run.
    pub jit: Option<x86::JitConfig>,
    /// The CPU model's features (`-cpu`): what CPUID reports and the
    /// interpreter allows.
    pub features: x86::cpu_model::FeatureSet,
    /// vCPUs of the machine.
    pub cpus: u32,
    /// The CPU vendor (`-cpu ...,vendor=` or the model's).
    pub vendor: x86::cpu_model::Vendor,
    /// Cores per package and threads per core, for CPUID.
    pub cores: u32,
    pub threads: u32,
}

impl Default for DbtOptions {
    fn default() -> Self {
        DbtOptions {
            jit: Some(x86::JitConfig::default()),
            features: x86::CpuConfig::default().features,
            cpus: 1,
            vendor: x86::cpu_model::Vendor::Intel,
            cores: 1,
            threads: 1,
        }
    }
}

impl DbtOptions {
    /// The interpreter alone.
    pub fn interpreter() -> Self {
        DbtOptions {
            jit: None,
            ..DbtOptions::default()
        }
    }
}

/// The binary-translation accelerator.
pub struct DbtAccel {
    opts: DbtOptions,
}

impl DbtAccel {
    /// The DBT with its defaults (the JIT on where the host supports it).
    pub fn new() -> Self {
        Self::with_options(DbtOptions::default())
    }

    pub fn with_options(opts: DbtOptions) -> Self {
        DbtAccel { opts }
    }

    /// Like [`DbtAccel::with_options`], falling back to the interpreter
    /// where the JIT cannot run; also says which tier runs ("JIT" or
    /// "interpreter: why").
    pub fn checked(mut opts: DbtOptions) -> (Self, String) {
        #[cfg(target_arch = "x86_64")]
        let tier = match &opts.jit {
            None => "interpreter: jit=off".to_string(),
            Some(_) => {
                if x86::jit::Jit::available() {
                    "JIT".to_string()
                } else {
                    opts.jit = None;
                    "interpreter: the JIT cannot map executable memory here".to_string()
                }
            }
        };
        #[cfg(not(target_arch = "x86_64"))]
        let tier = {
            let asked = opts.jit.take().is_some();
            if asked {
                "interpreter: the JIT needs an x86-64 host".to_string()
            } else {
                "interpreter: jit=off".to_string()
            }
        };
        (DbtAccel { opts }, tier)
    }
}

impl Default for DbtAccel {
    fn default() -> Self {
        Self::new()
    }
}

impl Accelerator for DbtAccel {
    fn name(&self) -> &'static str {
        "dbt"
    }
    fn create_vm(&self, mem: GuestMemory, io: Arc<dyn IoHandler>) -> Result<Box<dyn Vm>> {
        use vm_memory::{GuestMemory as _, GuestMemoryRegion as _};
        let top = mem
            .mem
            .iter()
            .map(|r| r.start_addr().0 + r.len())
            .filter(|&end| end <= 1 << 40)
            .max()
            .unwrap_or(0);
        Ok(Box::new(DbtVm {
            code: x86::mmu::CodeShare::new(top),
            mem,
            io,
            ic: Arc::new(Mutex::new(None)),
            vcpus: Arc::new(AtomicU32::new(0)),
            tsc: Arc::new(Mutex::new(None)),
            opts: self.opts.clone(),
        }))
    }
}

type IcSlot = Arc<Mutex<Option<Arc<dyn InterruptController>>>>;
/// The TSC reference the machine set last (all vCPUs read one TSC).
type TscRef = Arc<Mutex<Option<(std::time::Instant, u64)>>>;

/// A DBT virtual machine.
pub struct DbtVm {
    mem: GuestMemory,
    /// Which vCPUs hold code in which pages (cross-vCPU invalidation).
    code: Arc<x86::mmu::CodeShare>,
    /// vCPUs created.
    vcpus: Arc<AtomicU32>,
    /// The machine's TSC reference (see [`x86::Cpu::tsc_ref`]).
    tsc: TscRef,
    io: Arc<dyn IoHandler>,
    ic: IcSlot,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    opts: DbtOptions,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn current_ic(slot: &IcSlot) -> Option<Arc<dyn InterruptController>> {
    slot.lock().ok().and_then(|g| g.clone())
}

impl DbtVm {
    /// Code any vCPU decoded in guest RAM `[paddr, paddr + len)` is dropped
    /// before it runs again (device DMA, loaders).
    pub fn ram_written(&self, paddr: u64, len: u64) {
        self.code.dma_written(paddr, len);
    }
}

impl Vm for DbtVm {
    fn create_vcpu(&self, id: u32) -> Result<Box<dyn Vcpu>> {
        // The BSP starts at the reset vector, the others wait for INIT and
        // a start-up IPI.
        let state = if id == 0 {
            CpuState::reset()
        } else {
            CpuState::ap_init()
        };
        let mut cpu = Cpu::new(state);
        {
            let mut t = lock(&self.tsc);
            match *t {
                Some(r) => cpu.set_tsc_ref(r),
                None => *t = Some(cpu.tsc_ref()),
            }
        }
        cpu.config.apic_id = id;
        cpu.config.features = self.opts.features;
        cpu.config.cpus = self.opts.cpus.max(1);
        cpu.config.vendor = self.opts.vendor;
        cpu.config.cores = self.opts.cores.max(1);
        cpu.config.threads = self.opts.threads.max(1);
        if !cpu.mmu.join_share(&self.code) {
            return Err(Error::Unavailable(format!(
                "dbt: at most {} vCPUs",
                x86::mmu::share::MAX_VCPUS
            )));
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(c) = &self.opts.jit {
            if !cpu.set_jit(Some(c.clone())) && id == 0 {
                log::warn!(
                    "dbt: the JIT cannot map executable memory here; running the interpreter"
                );
            }
        }
        let mut bus = DbtBus::new(self.mem.clone(), self.io.clone(), None);
        bus.cpu = id;
        Ok(Box::new(DbtVcpu {
            kick: cpu.kick_flag(),
            cpu,
            wait_sipi: id != 0,
            tsc: self.tsc.clone(),
            vcpus: {
                self.vcpus.fetch_add(1, Ordering::Relaxed);
                self.vcpus.clone()
            },
            bus,
            ic: self.ic.clone(),
            debugging: false,
            debug_hw: [None; 4],
            created: std::time::Instant::now(),
        }))
    }

    fn set_irq_line(&self, gsi: u32, level: bool) -> Result<()> {
        match current_ic(&self.ic) {
            Some(ic) => {
                ic.set_irq_line(gsi, level);
                Ok(())
            }
            None => Err(Error::Unsupported(
                "interrupt lines without an interrupt controller",
                "dbt",
            )),
        }
    }

    fn signal_msi(&self, addr: u64, data: u32) -> Result<()> {
        match current_ic(&self.ic) {
            Some(ic) => {
                ic.deliver_msi(addr, data);
                Ok(())
            }
            None => Err(Error::Unsupported(
                "MSI without an interrupt controller",
                "dbt",
            )),
        }
    }

    fn ram_written(&self, paddr: u64, len: u64) {
        DbtVm::ram_written(self, paddr, len);
    }

    fn set_interrupt_controller(&self, ic: Arc<dyn InterruptController>) -> Result<()> {
        let mut g = self
            .ic
            .lock()
            .map_err(|_| Error::InvalidState("interrupt controller lock poisoned".into()))?;
        *g = Some(ic);
        Ok(())
    }
}

/// One interpreted vCPU.
pub struct DbtVcpu {
    cpu: Cpu,
    /// After INIT: waiting for a start-up IPI (APs start so).
    wait_sipi: bool,
    tsc: TscRef,
    /// vCPUs of the machine (more than one: others may wake this one).
    vcpus: Arc<AtomicU32>,
    bus: DbtBus,
    kick: Arc<AtomicBool>,
    ic: IcSlot,
    debugging: bool,
    /// The debugger's breakpoint/watchpoint slots (for reporting hits).
    debug_hw: [Option<HwBreak>; 4],
    /// For the MIPS figure of `-d stats`.
    created: std::time::Instant,
}

struct DbtKicker {
    flag: Arc<AtomicBool>,
    ic: IcSlot,
}

impl Kicker for DbtKicker {
    fn kick(&self) {
        self.flag.store(true, Ordering::Release);
        if let Some(ic) = current_ic(&self.ic) {
            ic.wake();
        }
    }
}

impl DbtVcpu {
    fn sync_ic(&mut self) {
        if self.bus.ic.is_none() {
            self.bus.ic = current_ic(&self.ic);
            self.cpu.config.apic = self.bus.ic.is_some();
            self.bus.sync_lapic_page();
        }
    }

    /// HLT with an interrupt controller: sleep until something the vCPU
    /// takes is pending (true: an interrupt when IF=1, an NMI, INIT or a
    /// start-up IPI) or a kick (false).
    fn wait_halted(&mut self, if_set: bool) -> bool {
        let Some(ic) = self.bus.ic.clone() else {
            return false;
        };
        let id = self.bus.cpu;
        let nmi_open = !self.cpu.state.nmi_blocked;
        loop {
            if self.kick.load(Ordering::Acquire) {
                return false;
            }
            if ic.startup_pending(id)
                || (nmi_open && ic.nmi_pending(id))
                || (if_set && ic.pending_interrupt(id).is_some())
            {
                return true;
            }
            ic.wait(ic.next_deadline_ns(id));
        }
    }

    /// Acts on a pending INIT or start-up IPI.
    fn take_startup(&mut self) {
        let Some(ic) = self.bus.ic.clone() else {
            return;
        };
        while let Some(ev) = ic.take_startup(self.bus.cpu) {
            match ev {
                Startup::Init => {
                    log::debug!(target: "cpu_reset", "CPU {}: INIT", self.bus.cpu);
                    let mut st = CpuState::ap_init();
                    if self.bus.cpu == 0 {
                        st.msr.apic_base = CpuState::reset().msr.apic_base;
                    }
                    self.set_state_shared_tsc(&st);
                    self.wait_sipi = true;
                }
                Startup::Sipi(v) if self.wait_sipi => {
                    log::debug!(target: "cpu_reset", "CPU {}: start-up IPI, vector {v:#x}", self.bus.cpu);
                    let mut st = self.cpu.get_state();
                    st.start_up(v);
                    self.set_state_shared_tsc(&st);
                    self.wait_sipi = false;
                }
                Startup::Sipi(_) => {}
            }
        }
    }

    /// Loads `st` but the TSC, which stays the machine's.
    fn set_state_shared_tsc(&mut self, st: &CpuState) {
        self.cpu.set_state(st);
        self.bus.sync_lapic_page();
        let r = *lock(&self.tsc);
        if let Some(r) = r {
            self.cpu.set_tsc_ref(r);
        }
    }

    /// Waits (after INIT) for a start-up IPI: false on a kick.
    fn wait_for_sipi(&mut self) -> bool {
        while self.wait_sipi {
            if self.kick.swap(false, Ordering::AcqRel) {
                return false;
            }
            let Some(ic) = self.bus.ic.clone() else {
                return false;
            };
            if ic.startup_pending(self.bus.cpu) {
                self.take_startup();
            } else {
                ic.wait(None);
            }
        }
        true
    }
}

impl Drop for DbtVcpu {
    fn drop(&mut self) {
        let secs = self.created.elapsed().as_secs_f64();
        let mips = self.cpu.insn_count as f64 / secs.max(1e-9) / 1e6;
        #[cfg(target_arch = "x86_64")]
        if let Some(s) = self.cpu.jit_stats() {
            log::info!(target: "stats",
                "vCPU {}: {} guest instructions in {:.2} s ({:.0} MIPS), {} blocks decoded ({} page-crossing); JIT: {} blocks translated ({} bytes, {:.1} ms), {} flushes, {} links patched, {} dispatcher entries, {} native / {} helper instructions translated, {} helper runs",
                self.cpu.config.apic_id, self.cpu.insn_count, secs, mips, self.cpu.decoded_blocks, self.cpu.crossing_decodes, s.blocks, s.code_bytes,
                s.translate_ns as f64 / 1e6, s.flushes, s.links, s.entries, s.native_insns, s.helper_insns, s.helper_runs);
            return;
        }
        log::info!(target: "stats", "vCPU {}: {} guest instructions in {:.2} s ({:.0} MIPS, interpreter)", self.cpu.config.apic_id, self.cpu.insn_count, secs, mips);
    }
}

impl Vcpu for DbtVcpu {
    fn state(&mut self) -> Result<CpuState> {
        Ok(self.cpu.get_state())
    }

    fn set_state(&mut self, state: &CpuState) -> Result<()> {
        self.cpu.set_state(state);
        self.bus.sync_lapic_page();
        // The machine sets a vCPU's whole state (boot, reset, debugger):
        // its TSC becomes the reference the others adopt at INIT.
        *lock(&self.tsc) = Some(self.cpu.tsc_ref());
        // Loaders write guest memory directly before setting the state.
        self.cpu.flush_code_cache();
        Ok(())
    }

    fn run(&mut self) -> Result<VcpuExit> {
        self.sync_ic();
        if self.debugging {
            // Memory may have been patched by the debugger while stopped.
            self.cpu.flush_code_cache();
        }
        loop {
            if self.wait_sipi && !self.wait_for_sipi() {
                return Ok(VcpuExit::Interrupted);
            }
            let r = self.cpu.run(&mut self.bus, u64::MAX);
            return Ok(match r {
                ExitReason::Budget => continue,
                ExitReason::Startup => {
                    self.take_startup();
                    continue;
                }
                ExitReason::Halt => {
                    let if_set = self.cpu.state.rflags & x86::consts::rflags::IF != 0;
                    // With other vCPUs an IF=0 halt still wakes on NMI,
                    // INIT and start-up IPIs.
                    let smp = self.bus.ic.is_some() && self.vcpus.load(Ordering::Relaxed) > 1;
                    if (if_set || smp) && self.wait_halted(if_set) {
                        continue;
                    }
                    if self.kick.swap(false, Ordering::AcqRel) {
                        VcpuExit::Interrupted
                    } else {
                        VcpuExit::Halt
                    }
                }
                ExitReason::Shutdown => VcpuExit::Shutdown,
                ExitReason::Reset => VcpuExit::Reset,
                ExitReason::PowerOff => VcpuExit::PowerOff,
                ExitReason::GuestExit(c) => VcpuExit::GuestExit(c),
                ExitReason::Debug(DebugStop::SingleStep) => VcpuExit::Debug(DebugEvent::SingleStep),
                ExitReason::Debug(DebugStop::Breakpoint) => {
                    VcpuExit::Debug(DebugEvent::SwBreakpoint)
                }
                ExitReason::Debug(DebugStop::HwBreakpoint(n)) => {
                    VcpuExit::Debug(DebugEvent::HwBreakpoint(n))
                }
                ExitReason::Debug(DebugStop::Watchpoint { slot, .. }) => {
                    let addr = match self.debug_hw.get(slot).copied().flatten() {
                        Some(HwBreak::Watch { addr, .. }) => addr,
                        _ => 0,
                    };
                    VcpuExit::Debug(DebugEvent::Watchpoint { slot, addr })
                }
                ExitReason::Interrupted => VcpuExit::Interrupted,
            });
        }
    }

    fn set_guest_debug(&mut self, dbg: &GuestDebug) -> Result<()> {
        let mut exec = [None; 4];
        let mut watch = [None; 4];
        if dbg.enabled {
            for (i, h) in dbg.hw.iter().enumerate() {
                match *h {
                    Some(HwBreak::Exec { addr }) => exec[i] = Some(addr),
                    // Watchpoints live in the memory path: only the pages
                    // they touch leave the TLB fast path.
                    Some(HwBreak::Watch { addr, len, kind }) => {
                        watch[i] = Some(x86::mmu::Watchpoint {
                            addr,
                            len: len.max(1) as u64,
                            read: kind != WatchKind::Write,
                            write: kind != WatchKind::Read,
                        })
                    }
                    None => {}
                }
            }
        }
        self.cpu.debug_hw_exec = exec;
        self.cpu.mmu.set_watchpoints(watch);
        self.cpu.debug_int3 = dbg.enabled && dbg.sw_breakpoints;
        self.cpu.debug_single_step = dbg.enabled && dbg.single_step;
        self.debugging = dbg.enabled;
        self.debug_hw = if dbg.enabled { dbg.hw } else { [None; 4] };
        // The debugger patches guest memory (INT3) behind the CPU's back.
        self.cpu.flush_code_cache();
        Ok(())
    }

    fn reset_ap(&mut self) -> Result<()> {
        self.set_state_shared_tsc(&CpuState::ap_init());
        self.cpu.flush_code_cache();
        self.wait_sipi = true;
        Ok(())
    }

    fn waiting_for_sipi(&mut self) -> bool {
        self.wait_sipi
    }

    fn kicker(&self) -> Arc<dyn Kicker> {
        Arc::new(DbtKicker {
            flag: self.kick.clone(),
            ic: self.ic.clone(),
        })
    }
}
