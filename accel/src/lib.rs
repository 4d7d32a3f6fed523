//! Accelerators: the neutral `Accelerator` / `Vm` / `Vcpu` interface and its
//! backends, `kvm` (hardware virtualization through `/dev/kvm`) and `dbt`
//! (hx86's own binary translator / interpreter). KVM runs x86 guests only
//! on x86-64 hosts, so the `kvm` backend is compiled only there; elsewhere
//! `-accel kvm` fails with [`NO_KVM_HERE`] and `auto` takes the DBT.
//!
//! Backends complete port and MMIO accesses themselves by calling the
//! [`IoHandler`] they were given; [`VcpuExit`] only reports what the machine
//! loop has to act on.

use std::sync::Arc;

use vm_memory::GuestMemoryMmap;
use x86::CpuState;

#[cfg(feature = "dbt")]
pub mod dbt;
#[cfg(all(feature = "kvm", target_arch = "x86_64"))]
pub mod kvm;

/// Why `-accel kvm` fails on a host that is not x86-64 (KVM there runs
/// guests of the host's architecture only).
pub const NO_KVM_HERE: &str = "KVM cannot run x86 guests on this host";

/// Why this build has no KVM backend, when it has none.
#[cfg(not(all(feature = "kvm", target_arch = "x86_64")))]
fn no_kvm() -> String {
    if cfg!(target_arch = "x86_64") {
        "KVM support was not compiled in (cargo feature `kvm`)".to_string()
    } else {
        format!("{NO_KVM_HERE} ({})", std::env::consts::ARCH)
    }
}

/// Errors of the accelerator layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Unavailable(String),
    #[error("KVM: {what}: {source}")]
    Kvm {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("guest memory: {0}")]
    Memory(String),
    #[error("invalid CPU state: {0}")]
    InvalidState(String),
    #[error("{0} is not supported by the {1} accelerator")]
    Unsupported(&'static str, &'static str),
}

pub type Result<T> = std::result::Result<T, Error>;

/// What an I/O access asks of the machine, beyond its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoAction {
    Continue,
    /// The guest asked hx86 to exit with this status (isa-debug-exit).
    Exit(i32),
    /// The guest asked for a machine reset (e.g. i8042 0xFE).
    Reset,
    /// The guest powered the machine off.
    PowerOff,
}

/// Port I/O and MMIO callbacks, implemented by the machine (its buses).
pub trait IoHandler: Send + Sync {
    fn pio_read(&self, port: u16, data: &mut [u8]);
    fn pio_write(&self, port: u16, data: &[u8]) -> IoAction;
    fn mmio_read(&self, addr: u64, data: &mut [u8]);
    fn mmio_write(&self, addr: u64, data: &[u8]) -> IoAction;
}

/// Why [`Vcpu::run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VcpuExit {
    /// HLT with interrupts disabled (nothing can wake the vCPU), or a halt
    /// the backend does not wait on itself.
    Halt,
    /// Triple fault (or another shutdown condition).
    Shutdown,
    /// The guest requested a reset.
    Reset,
    /// The guest powered off.
    PowerOff,
    /// The guest asked to exit with a status (isa-debug-exit).
    GuestExit(i32),
    /// A debug event stopped the vCPU (see [`DebugEvent`]).
    Debug(DebugEvent),
    /// [`Kicker::kick`] was called.
    Interrupted,
}

/// The reason of a debug stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DebugEvent {
    SingleStep,
    SwBreakpoint,
    HwBreakpoint(usize),
    Watchpoint { slot: usize, addr: u64 },
}

/// Kind of a hardware watchpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchKind {
    Write,
    Read,
    Access,
}

/// One hardware breakpoint or watchpoint slot (at most 4, like DR0..DR3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HwBreak {
    Exec { addr: u64 },
    Watch { addr: u64, len: u8, kind: WatchKind },
}

/// Debugger control of a vCPU (KVM_SET_GUEST_DEBUG's equivalent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestDebug {
    /// Debugging enabled at all; when false the guest owns DR0..DR7 and INT3.
    pub enabled: bool,
    pub single_step: bool,
    /// INT3 stops the vCPU instead of going to the guest.
    pub sw_breakpoints: bool,
    pub hw: [Option<HwBreak>; 4],
}

/// Makes a running [`Vcpu::run`] return [`VcpuExit::Interrupted`] soon.
pub trait Kicker: Send + Sync {
    fn kick(&self);
}

/// Guest memory as the machine built it, with the ranges that are ROM.
#[derive(Clone)]
pub struct GuestMemory {
    pub mem: GuestMemoryMmap,
    /// `(start, len)` of read-only regions (BIOS ROM and its low alias).
    pub rom: Vec<(u64, u64)>,
}

/// A userspace interrupt-controller complex (PIC, IOAPIC, local APIC and
/// the timers behind them), for backends without an in-kernel one: the
/// machine builds it from `devices` and hands it to the VM with
/// [`Vm::set_interrupt_controller`]. The DBT asks it at instruction-block
/// boundaries whether an interrupt is deliverable.
pub trait InterruptController: Send + Sync {
    /// Drives global system interrupt `gsi`.
    fn set_irq_line(&self, gsi: u32, level: bool);
    /// The vector vCPU `cpu` would take now (timers brought up to date),
    /// ignoring RFLAGS.IF; not yet acknowledged.
    fn pending_interrupt(&self, cpu: u32) -> Option<u8>;
    /// Takes the pending interrupt of `cpu` (the INTA cycle) and returns
    /// its vector.
    fn acknowledge(&self, cpu: u32) -> Option<u8>;
    /// Takes a pending NMI of `cpu`.
    fn take_nmi(&self, cpu: u32) -> bool;
    /// Whether an NMI waits for `cpu` (wakes it from HLT).
    fn nmi_pending(&self, cpu: u32) -> bool;
    /// Takes a pending INIT or start-up IPI of `cpu`.
    fn take_startup(&self, cpu: u32) -> Option<Startup>;
    /// Whether an INIT or start-up IPI waits for `cpu`.
    fn startup_pending(&self, cpu: u32) -> bool;
    /// A read of `cpu`'s local APIC page at `offset`.
    fn lapic_read(&self, cpu: u32, offset: u64, data: &mut [u8]);
    /// A write of `cpu`'s local APIC page (EOIs, IPIs).
    fn lapic_write(&self, cpu: u32, offset: u64, data: &[u8]);
    /// The controller's clock, in nanoseconds.
    fn now_ns(&self) -> u64;
    /// When a timer of `cpu` next needs attention, on
    /// [`InterruptController::now_ns`]'s clock.
    fn next_deadline_ns(&self, cpu: u32) -> Option<u64>;
    /// RDMSR by `cpu` of an MSR its local APIC owns (IA32_APIC_BASE,
    /// IA32_TSC_DEADLINE, x2APIC registers 0x800-0x8FF): None when the
    /// controller owns no such MSR, `Some(Err(MsrFault))` for #GP.
    fn apic_msr_read(&self, cpu: u32, msr: u32) -> Option<std::result::Result<u64, x86::MsrFault>>;
    /// The task priority (TPR) of `cpu`'s local APIC (CR8 is TPR[7:4]).
    fn tpr(&self, cpu: u32) -> u8;
    /// Sets the task priority of `cpu`'s local APIC (MOV to CR8).
    fn set_tpr(&self, cpu: u32, tpr: u8);
    /// WRMSR counterpart; `tsc_now` is the vCPU's guest TSC.
    fn apic_msr_write(
        &self,
        cpu: u32,
        msr: u32,
        value: u64,
        tsc_now: u64,
    ) -> Option<std::result::Result<(), x86::MsrFault>>;
    /// Blocks until an interrupt line or an APIC changes, the deadline
    /// passes, or [`InterruptController::wake`] is called, whichever is first.
    fn wait(&self, deadline_ns: Option<u64>);
    /// Wakes the vCPUs blocked in [`InterruptController::wait`].
    fn wake(&self);
    /// A message-signalled interrupt (a device's DWORD write of `data` to
    /// `addr` in the 0xFEExxxxx window) is delivered to the local APICs.
    fn deliver_msi(&self, addr: u64, data: u32);
}

/// A start-up event of an x86 processor, from its local APIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Startup {
    /// INIT: reset, then wait for a start-up IPI.
    Init,
    /// Start-up IPI: run real-mode code at `vector << 12`.
    Sipi(u8),
}

/// A virtualization or emulation backend.
pub trait Accelerator {
    fn name(&self) -> &'static str;
    /// The backend emulates the PIC, IOAPIC, LAPIC and PIT itself (KVM's
    /// in-kernel irqchip); otherwise the machine supplies an
    /// [`InterruptController`].
    fn in_kernel_irqchip(&self) -> bool {
        false
    }
    fn create_vm(&self, mem: GuestMemory, io: Arc<dyn IoHandler>) -> Result<Box<dyn Vm>>;
}

/// A virtual machine: memory, interrupt lines and vCPUs.
pub trait Vm: Send + Sync {
    fn create_vcpu(&self, id: u32) -> Result<Box<dyn Vcpu>>;
    /// Drives interrupt line `gsi` (IRQ number on the PIC/IOAPIC).
    fn set_irq_line(&self, gsi: u32, level: bool) -> Result<()>;
    /// Delivers a message-signalled interrupt (MSI/MSI-X): `data` written
    /// to `addr` (0xFEExxxxx).
    fn signal_msi(&self, addr: u64, data: u32) -> Result<()>;
    /// A device wrote guest RAM `[paddr, paddr + len)` (DMA): a backend
    /// that caches translated code drops what it held from there.
    fn ram_written(&self, _paddr: u64, _len: u64) {}
    /// Gives a backend without an in-kernel irqchip its interrupt controller.
    fn set_interrupt_controller(&self, _ic: Arc<dyn InterruptController>) -> Result<()> {
        Err(Error::Unsupported(
            "a userspace interrupt controller",
            "this",
        ))
    }
}

/// One virtual CPU. `run` executes until something the machine must handle.
pub trait Vcpu: Send {
    fn state(&mut self) -> Result<CpuState>;
    fn set_state(&mut self, state: &CpuState) -> Result<()>;
    fn run(&mut self) -> Result<VcpuExit>;
    fn set_guest_debug(&mut self, dbg: &GuestDebug) -> Result<()>;
    /// A handle another thread uses to interrupt `run`.
    fn kicker(&self) -> Arc<dyn Kicker>;
    /// Puts an application processor back in its state after INIT:
    /// waiting for a start-up IPI (machine reset).
    fn reset_ap(&mut self) -> Result<()> {
        Err(Error::Unsupported(
            "resetting an application processor",
            "this",
        ))
    }
    /// The vCPU waits for a start-up IPI (an application processor after
    /// INIT): what the debugger shows for it.
    fn waiting_for_sipi(&mut self) -> bool {
        false
    }
}

/// KVM, opened and checked (`/dev/kvm`, its API version, a test VM), as an
/// accelerator with its default CPU model (for tests); on a host that is not x86-64, or without the `kvm`
/// feature, an error that says so.
pub fn kvm_accel() -> Result<Box<dyn Accelerator>> {
    #[cfg(all(feature = "kvm", target_arch = "x86_64"))]
    return Ok(Box::new(kvm::KvmAccel::probe()?));
    #[cfg(not(all(feature = "kvm", target_arch = "x86_64")))]
    Err(Error::Unavailable(no_kvm()))
}

/// Which accelerator the user asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccelKind {
    Auto,
    Kvm,
    Dbt,
}

/// Picks an accelerator. Returns it and a one-line explanation for stderr
/// (`hx86: accelerator: kvm`, or for `auto` falling back, e.g.
/// `hx86: accelerator: dbt (JIT; KVM unavailable: /dev/kvm: permission denied)`).
/// `auto` takes KVM when it is usable and, with the DBT compiled in, runs
/// guest code at least as fast as [`kvm::probe::THRESHOLD_MIPS`] (a probe
/// guest of a few milliseconds); `kvm` takes KVM whatever its speed.
pub fn select(kind: AccelKind) -> Result<(Box<dyn Accelerator>, String)> {
    let cpu = x86::cpu_model::CpuSpec::default();
    #[cfg(feature = "dbt")]
    return select_with(kind, &dbt::DbtOptions::default(), &cpu, Default::default());
    #[cfg(not(feature = "dbt"))]
    return select_with(kind, &cpu, Default::default());
}

/// [`select`] with the DBT's options (`-accel dbt,jit=off`, ...) and the
/// CPU model (`-cpu`): the DBT runs its features (`DbtOptions::features`
/// is replaced), KVM gives its vCPUs the model over what it offers. A
/// model an accelerator cannot give makes that accelerator unusable (with
/// the reason; `auto` then tries the DBT). Both show `topo` (`-smp`'s
/// cores and threads) in CPUID.
pub fn select_with(
    kind: AccelKind,
    #[cfg(feature = "dbt")] dbt_opts: &dbt::DbtOptions,
    cpu: &x86::cpu_model::CpuSpec,
    topo: x86::topology::Topology,
) -> Result<(Box<dyn Accelerator>, String)> {
    #[cfg(feature = "dbt")]
    let dbt_checked = || -> Result<(dbt::DbtAccel, String)> {
        let features = cpu
            .for_dbt()
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        Ok(dbt::DbtAccel::checked(dbt::DbtOptions {
            features,
            vendor: cpu.vendor(),
            cores: topo.cores,
            threads: topo.threads,
            ..dbt_opts.clone()
        }))
    };
    match kind {
        #[cfg(all(feature = "kvm", target_arch = "x86_64"))]
        AccelKind::Kvm => {
            let k = kvm::KvmAccel::probe()?.with_cpu(cpu)?.with_topology(topo);
            Ok((Box::new(k), "hx86: accelerator: kvm".to_string()))
        }
        #[cfg(not(all(feature = "kvm", target_arch = "x86_64")))]
        AccelKind::Kvm => Err(Error::Unavailable(no_kvm())),
        #[cfg(feature = "dbt")]
        AccelKind::Dbt => {
            let (a, tier) = dbt_checked()?;
            Ok((Box::new(a), format!("hx86: accelerator: dbt ({tier})")))
        }
        #[cfg(not(feature = "dbt"))]
        AccelKind::Dbt => Err(Error::Unavailable(
            "the DBT was not compiled in (cargo feature `dbt`)".into(),
        )),
        AccelKind::Auto => {
            #[cfg(all(feature = "kvm", target_arch = "x86_64"))]
            let why = match kvm::KvmAccel::probe()
                .and_then(|k| k.with_cpu(cpu))
                .map(|k| k.with_topology(topo))
            {
                Ok(k) => match auto_kvm(k) {
                    Ok(pick) => return Ok(pick),
                    Err(why) => why,
                },
                Err(e) => format!("KVM unavailable: {e}"),
            };
            #[cfg(not(all(feature = "kvm", target_arch = "x86_64")))]
            let why = format!("KVM unavailable: {}", no_kvm());
            #[cfg(feature = "dbt")]
            {
                let (a, tier) = dbt_checked()?;
                Ok((
                    Box::new(a),
                    format!("hx86: accelerator: dbt ({tier}; {why})"),
                ))
            }
            #[cfg(not(feature = "dbt"))]
            Err(Error::Unavailable(why))
        }
    }
}

/// `auto` with a usable KVM: KVM, unless the DBT is compiled in and the
/// probe guest finds KVM slower than [`kvm::probe::THRESHOLD_MIPS`] (or
/// cannot run): then `Err` says why, for the DBT's line.
#[cfg(all(feature = "kvm", target_arch = "x86_64"))]
fn auto_kvm(k: kvm::KvmAccel) -> std::result::Result<(Box<dyn Accelerator>, String), String> {
    use kvm::probe::{choose, measure, AutoChoice, THRESHOLD_MIPS};
    if !cfg!(feature = "dbt") {
        return Ok((Box::new(k), "hx86: accelerator: kvm".to_string()));
    }
    let speed = measure(&k)
        .map_err(|e| format!("KVM failed to run a probe guest: {e}; -accel kvm forces it"))?;
    let mips = speed.mips();
    let rate = if mips < 10.0 {
        format!("{mips:.1}")
    } else {
        format!("{mips:.0}")
    };
    match choose(&speed) {
        AutoChoice::Kvm => Ok((
            Box::new(k),
            format!("hx86: accelerator: kvm (guest code at {rate} M instr/s)"),
        )),
        AutoChoice::Dbt => Err(format!(
            "KVM runs guest code at {rate} M instr/s here, below {THRESHOLD_MIPS}: \
             a nested or paravirtual KVM; -accel kvm forces it"
        )),
    }
}
