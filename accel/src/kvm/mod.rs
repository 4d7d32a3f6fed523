//! The `kvm` accelerator: hardware virtualization through `/dev/kvm`
//! (kvm-ioctls). Port I/O and MMIO exits are completed inside [`Vcpu::run`]
//! through the machine's [`IoHandler`].

mod convert;
mod kick;
pub mod probe;

use std::sync::Arc;

use kvm_bindings::{
    kvm_guest_debug, kvm_userspace_memory_region, Msrs, KVM_GUESTDBG_ENABLE,
    KVM_GUESTDBG_SINGLESTEP, KVM_GUESTDBG_USE_HW_BP, KVM_GUESTDBG_USE_SW_BP, KVM_MAX_CPUID_ENTRIES,
    KVM_MEM_READONLY,
};
use kvm_ioctls::{Cap, Kvm, VcpuFd, VmFd};
use vm_memory::{Address, GuestMemory as _, GuestMemoryRegion};
use x86::consts::msr;
use x86::CpuState;

use crate::{
    Accelerator, DebugEvent, Error, GuestDebug, GuestMemory, HwBreak, IoAction, IoHandler, Kicker,
    Result, Vcpu, VcpuExit, Vm, WatchKind,
};

pub use kick::KvmKicker;

fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Error {
    move |e| Error::Kvm {
        what,
        source: std::io::Error::from_raw_os_error(e.errno()),
    }
}

/// Runs `f` over KVM's CPUID entries as the neutral `CpuidEntry`s and
/// writes the registers back.
fn edit_cpuid(cpuid: &mut kvm_bindings::CpuId, f: impl FnOnce(&mut [x86::cpu_model::CpuidEntry])) {
    let mut entries: Vec<x86::cpu_model::CpuidEntry> = cpuid
        .as_slice()
        .iter()
        .map(|e| x86::cpu_model::CpuidEntry {
            leaf: e.function,
            sub: e.index,
            regs: [e.eax, e.ebx, e.ecx, e.edx],
        })
        .collect();
    f(&mut entries);
    for (k, e) in cpuid.as_mut_slice().iter_mut().zip(&entries) {
        [k.eax, k.ebx, k.ecx, k.edx] = e.regs;
    }
}

/// An open `/dev/kvm` that passed the probe.
pub struct KvmAccel {
    kvm: Kvm,
    /// The CPUID vCPUs get (`-cpu` applied to KVM_GET_SUPPORTED_CPUID);
    /// `None`: everything KVM offers.
    cpuid: Option<kvm_bindings::CpuId>,
    /// `-smp`'s topology, for each vCPU's CPUID.
    topo: x86::topology::Topology,
}

impl KvmAccel {
    /// Opens `/dev/kvm`, checks the API version and that a VM can be created.
    pub fn probe() -> Result<Self> {
        let kvm = Kvm::new().map_err(|e| {
            let io = std::io::Error::from_raw_os_error(e.errno());
            let why = match io.kind() {
                std::io::ErrorKind::NotFound => "no such device".to_string(),
                std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
                _ => io.to_string(),
            };
            Error::Unavailable(format!("/dev/kvm: {why}"))
        })?;
        let v = kvm.get_api_version();
        if v != 12 {
            return Err(Error::Unavailable(format!(
                "/dev/kvm: unsupported KVM API version {v} (need 12)"
            )));
        }
        for (cap, name) in [
            (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
            (Cap::SetTssAddr, "KVM_CAP_SET_TSS_ADDR"),
            (Cap::ExtCpuid, "KVM_CAP_EXT_CPUID"),
        ] {
            if !kvm.check_extension(cap) {
                return Err(Error::Unavailable(format!("/dev/kvm: missing {name}")));
            }
        }
        // Creating (and dropping) a VM proves the module actually works.
        kvm.create_vm().map_err(|e| {
            Error::Unavailable(format!(
                "/dev/kvm: cannot create a VM: {}",
                std::io::Error::from_raw_os_error(e.errno())
            ))
        })?;
        Ok(KvmAccel {
            kvm,
            cpuid: None,
            topo: Default::default(),
        })
    }

    fn supported_cpuid(&self) -> Result<kvm_bindings::CpuId> {
        self.kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(kvm_err("KVM_GET_SUPPORTED_CPUID"))
    }

    /// Gives vCPUs the CPU model `spec` over what this KVM offers
    /// (`-cpu`); a feature asked for that KVM cannot give is refused.
    pub fn with_cpu(mut self, spec: &x86::cpu_model::CpuSpec) -> Result<Self> {
        let mut cpuid = self.supported_cpuid()?;
        let mut r = Ok(());
        edit_cpuid(&mut cpuid, |entries| r = spec.apply_to_host(entries));
        r.map_err(|e| Error::Unavailable(e.to_string()))?;
        self.cpuid = Some(cpuid);
        Ok(self)
    }

    /// Gives vCPUs `-smp`'s topology in CPUID (leaves 1, 4, 0xB, 0x1F).
    pub fn with_topology(mut self, topo: x86::topology::Topology) -> Self {
        self.topo = topo;
        self
    }
}

impl Accelerator for KvmAccel {
    fn name(&self) -> &'static str {
        "kvm"
    }

    fn in_kernel_irqchip(&self) -> bool {
        true
    }

    fn create_vm(&self, mem: GuestMemory, io: Arc<dyn IoHandler>) -> Result<Box<dyn Vm>> {
        let vm = self.kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?;
        // Three pages below the BIOS for the VMX real-mode TSS, as QEMU does.
        vm.set_tss_address(0xfffb_d000)
            .map_err(kvm_err("KVM_SET_TSS_ADDR"))?;
        // The in-kernel PIC pair, IOAPIC and LAPIC, and the in-kernel PIT:
        // devices raise their lines through `set_irq_line`.
        vm.create_irq_chip()
            .map_err(kvm_err("KVM_CREATE_IRQCHIP"))?;
        let pit = kvm_bindings::kvm_pit_config {
            flags: kvm_bindings::KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        vm.create_pit2(pit).map_err(kvm_err("KVM_CREATE_PIT2"))?;
        let readonly_ok = self.kvm.check_extension(Cap::ReadonlyMem);
        for (slot, region) in mem.mem.iter().enumerate() {
            let start = region.start_addr().raw_value();
            let len = region.len();
            let is_rom = mem.rom.iter().any(|&(s, l)| s == start && l == len);
            let flags = if is_rom && readonly_ok {
                KVM_MEM_READONLY
            } else {
                0
            };
            let host = region
                .get_host_address(vm_memory::MemoryRegionAddress(0))
                .map_err(|e| Error::Memory(e.to_string()))?;
            let r = kvm_userspace_memory_region {
                slot: slot as u32,
                flags,
                guest_phys_addr: start,
                memory_size: len,
                userspace_addr: host as u64,
            };
            // SAFETY: the region is a live mmap owned by `mem`, which the VM
            // keeps alive (in `KvmVm::_mem`) for as long as the VM exists.
            unsafe { vm.set_user_memory_region(r) }
                .map_err(kvm_err("KVM_SET_USER_MEMORY_REGION"))?;
        }
        let cpuid = match &self.cpuid {
            Some(c) => c.clone(),
            None => self.supported_cpuid()?,
        };
        Ok(Box::new(KvmVm {
            vm,
            io,
            cpuid,
            topo: self.topo,
            _mem: mem,
        }))
    }
}

struct KvmVm {
    vm: VmFd,
    io: Arc<dyn IoHandler>,
    cpuid: kvm_bindings::CpuId,
    topo: x86::topology::Topology,
    _mem: GuestMemory,
}

impl Vm for KvmVm {
    fn create_vcpu(&self, id: u32) -> Result<Box<dyn Vcpu>> {
        let fd = self
            .vm
            .create_vcpu(id as u64)
            .map_err(kvm_err("KVM_CREATE_VCPU"))?;
        // The vCPU's APIC ID (its index) and the topology in leaves 1, 4,
        // 0xB and 0x1F, as the DBT shows them.
        let mut cpuid = self.cpuid.clone();
        edit_cpuid(&mut cpuid, |entries| self.topo.apply_to_host(id, entries));
        fd.set_cpuid2(&cpuid).map_err(kvm_err("KVM_SET_CPUID2"))?;
        kick::install_signal_handler()?;
        Ok(Box::new(KvmVcpu {
            fd,
            io: self.io.clone(),
            kicker: Arc::new(KvmKicker::new()),
            debug: GuestDebug::default(),
        }))
    }

    fn set_irq_line(&self, gsi: u32, level: bool) -> Result<()> {
        self.vm
            .set_irq_line(gsi, level)
            .map_err(kvm_err("KVM_IRQ_LINE"))
    }

    fn signal_msi(&self, addr: u64, data: u32) -> Result<()> {
        let msi = kvm_bindings::kvm_msi {
            address_lo: addr as u32,
            address_hi: (addr >> 32) as u32,
            data,
            ..Default::default()
        };
        self.vm.signal_msi(msi).map_err(kvm_err("KVM_SIGNAL_MSI"))?;
        Ok(())
    }
}

struct KvmVcpu {
    fd: VcpuFd,
    io: Arc<dyn IoHandler>,
    kicker: Arc<KvmKicker>,
    debug: GuestDebug,
}

/// MSRs kept in [`CpuState`] besides EFER and APIC_BASE (which travel in sregs).
const SYNCED_MSRS: [u32; 13] = [
    msr::SYSENTER_CS,
    msr::SYSENTER_ESP,
    msr::SYSENTER_EIP,
    msr::STAR,
    msr::LSTAR,
    msr::CSTAR,
    msr::FMASK,
    msr::KERNEL_GS_BASE,
    msr::TSC_AUX,
    msr::PAT,
    msr::MISC_ENABLE,
    msr::MTRR_DEF_TYPE,
    msr::TSC,
];

fn msr_slot(s: &mut CpuState, index: u32) -> &mut u64 {
    match index {
        msr::SYSENTER_CS => &mut s.msr.sysenter_cs,
        msr::SYSENTER_ESP => &mut s.msr.sysenter_esp,
        msr::SYSENTER_EIP => &mut s.msr.sysenter_eip,
        msr::STAR => &mut s.msr.star,
        msr::LSTAR => &mut s.msr.lstar,
        msr::CSTAR => &mut s.msr.cstar,
        msr::FMASK => &mut s.msr.fmask,
        msr::KERNEL_GS_BASE => &mut s.msr.kernel_gs_base,
        msr::TSC_AUX => &mut s.msr.tsc_aux,
        msr::PAT => &mut s.msr.pat,
        msr::MISC_ENABLE => &mut s.msr.misc_enable,
        msr::MTRR_DEF_TYPE => &mut s.msr.mtrr_def_type,
        _ => &mut s.tsc,
    }
}

fn msr_entries(indices: &[u32], mut values: impl FnMut(u32) -> u64) -> Result<Msrs> {
    let entries: Vec<_> = indices
        .iter()
        .map(|&i| kvm_bindings::kvm_msr_entry {
            index: i,
            data: values(i),
            ..Default::default()
        })
        .collect();
    Msrs::from_entries(&entries).map_err(|_| Error::InvalidState("too many MSRs".into()))
}

impl Vcpu for KvmVcpu {
    fn state(&mut self) -> Result<CpuState> {
        let mut s = CpuState::reset();
        let regs = self.fd.get_regs().map_err(kvm_err("KVM_GET_REGS"))?;
        convert::regs_from_kvm(&regs, &mut s);
        let sregs = self.fd.get_sregs().map_err(kvm_err("KVM_GET_SREGS"))?;
        convert::sregs_from_kvm(&sregs, &mut s);
        let fpu = self.fd.get_fpu().map_err(kvm_err("KVM_GET_FPU"))?;
        convert::fpu_from_kvm(&fpu, &mut s.fpu);
        let mut msrs = msr_entries(&SYNCED_MSRS, |_| 0)?;
        let n = self
            .fd
            .get_msrs(&mut msrs)
            .map_err(kvm_err("KVM_GET_MSRS"))?;
        for e in &msrs.as_slice()[..n] {
            *msr_slot(&mut s, e.index) = e.data;
        }
        let dbg = self
            .fd
            .get_debug_regs()
            .map_err(kvm_err("KVM_GET_DEBUGREGS"))?;
        s.dr[..4].copy_from_slice(&dbg.db);
        s.dr[6] = dbg.dr6;
        s.dr[7] = dbg.dr7;
        if let Ok(xcrs) = self.fd.get_xcrs() {
            if let Some(x) = xcrs.xcrs[..xcrs.nr_xcrs as usize]
                .iter()
                .find(|x| x.xcr == 0)
            {
                s.xcr0 = x.value;
            }
        }
        if let Ok(ev) = self.fd.get_vcpu_events() {
            s.interrupt_shadow = ev.interrupt.shadow != 0;
            s.nmi_blocked = ev.nmi.masked != 0;
        }
        if let Ok(mp) = self.fd.get_mp_state() {
            s.halted = mp.mp_state == kvm_bindings::KVM_MP_STATE_HALTED;
        }
        Ok(s)
    }

    fn set_state(&mut self, s: &CpuState) -> Result<()> {
        let base = self.fd.get_sregs().map_err(kvm_err("KVM_GET_SREGS"))?;
        self.fd
            .set_sregs(&convert::sregs_to_kvm(s, &base))
            .map_err(kvm_err("KVM_SET_SREGS"))?;
        self.fd
            .set_regs(&convert::regs_to_kvm(s))
            .map_err(kvm_err("KVM_SET_REGS"))?;
        self.fd
            .set_fpu(&convert::fpu_to_kvm(&s.fpu))
            .map_err(kvm_err("KVM_SET_FPU"))?;
        let mut st = *s;
        let msrs = msr_entries(&SYNCED_MSRS, |i| *msr_slot(&mut st, i))?;
        self.fd.set_msrs(&msrs).map_err(kvm_err("KVM_SET_MSRS"))?;
        let mut dbg = self
            .fd
            .get_debug_regs()
            .map_err(kvm_err("KVM_GET_DEBUGREGS"))?;
        dbg.db.copy_from_slice(&s.dr[..4]);
        dbg.dr6 = s.dr[6];
        dbg.dr7 = s.dr[7];
        self.fd
            .set_debug_regs(&dbg)
            .map_err(kvm_err("KVM_SET_DEBUGREGS"))?;
        if let Ok(mut xcrs) = self.fd.get_xcrs() {
            let n = xcrs.nr_xcrs as usize;
            if let Some(x) = xcrs.xcrs[..n].iter_mut().find(|x| x.xcr == 0) {
                x.value = s.xcr0;
                let _ = self.fd.set_xcrs(&xcrs);
            }
        }
        if let Ok(mut ev) = self.fd.get_vcpu_events() {
            ev.interrupt.shadow = s.interrupt_shadow as u8;
            ev.nmi.masked = s.nmi_blocked as u8;
            ev.flags = kvm_bindings::KVM_VCPUEVENT_VALID_SHADOW;
            let _ = self.fd.set_vcpu_events(&ev);
        }
        Ok(())
    }

    fn run(&mut self) -> Result<VcpuExit> {
        let _running = self.kicker.enter();
        loop {
            if self.kicker.take_pending() {
                return Ok(VcpuExit::Interrupted);
            }
            let exit = match self.fd.run() {
                Ok(e) => e,
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    self.kicker.take_pending();
                    return Ok(VcpuExit::Interrupted);
                }
                Err(e) => return Err(kvm_err("KVM_RUN")(e)),
            };
            let action = match exit {
                kvm_ioctls::VcpuExit::IoIn(port, data) => {
                    log::trace!(target: "exits", "io in port {port:#x} size {}", data.len());
                    self.io.pio_read(port, data);
                    IoAction::Continue
                }
                kvm_ioctls::VcpuExit::IoOut(port, data) => {
                    log::trace!(target: "exits", "io out port {port:#x} {data:02x?}");
                    self.io.pio_write(port, data)
                }
                kvm_ioctls::VcpuExit::MmioRead(addr, data) => {
                    log::trace!(target: "exits", "mmio read {addr:#x} size {}", data.len());
                    self.io.mmio_read(addr, data);
                    IoAction::Continue
                }
                kvm_ioctls::VcpuExit::MmioWrite(addr, data) => {
                    log::trace!(target: "exits", "mmio write {addr:#x} {data:02x?}");
                    self.io.mmio_write(addr, data)
                }
                kvm_ioctls::VcpuExit::Hlt => {
                    log::debug!(target: "exits", "hlt");
                    return Ok(VcpuExit::Halt);
                }
                kvm_ioctls::VcpuExit::Shutdown => {
                    log::debug!(target: "exits", "shutdown (triple fault)");
                    return Ok(VcpuExit::Shutdown);
                }
                kvm_ioctls::VcpuExit::Debug(d) => {
                    log::debug!(target: "exits", "debug exception {} at {:#x}", d.exception, d.pc);
                    return Ok(VcpuExit::Debug(self.debug_event(d.exception, d.dr6)));
                }
                kvm_ioctls::VcpuExit::Intr => continue,
                kvm_ioctls::VcpuExit::SystemEvent(ty, _) => {
                    return Ok(match ty {
                        kvm_bindings::KVM_SYSTEM_EVENT_RESET => VcpuExit::Reset,
                        _ => VcpuExit::PowerOff,
                    })
                }
                kvm_ioctls::VcpuExit::FailEntry(reason, _) => {
                    return Err(Error::InvalidState(format!(
                        "KVM entry failed, hardware reason {reason:#x}"
                    )))
                }
                kvm_ioctls::VcpuExit::InternalError => {
                    return Err(Error::InvalidState(
                        "KVM internal error (emulation failure)".into(),
                    ))
                }
                other => {
                    return Err(Error::InvalidState(format!(
                        "unexpected KVM exit {other:?}"
                    )))
                }
            };
            match action {
                IoAction::Continue => {}
                IoAction::Exit(code) => return Ok(VcpuExit::GuestExit(code)),
                IoAction::Reset => return Ok(VcpuExit::Reset),
                IoAction::PowerOff => return Ok(VcpuExit::PowerOff),
            }
        }
    }

    fn set_guest_debug(&mut self, dbg: &GuestDebug) -> Result<()> {
        let mut g = kvm_guest_debug::default();
        if dbg.enabled {
            g.control = KVM_GUESTDBG_ENABLE;
            if dbg.single_step {
                g.control |= KVM_GUESTDBG_SINGLESTEP;
            }
            if dbg.sw_breakpoints {
                g.control |= KVM_GUESTDBG_USE_SW_BP;
            }
            let mut dr7 = 0u64;
            for (i, slot) in dbg.hw.iter().enumerate() {
                let Some(b) = slot else { continue };
                let (addr, rw, len) = match *b {
                    HwBreak::Exec { addr } => (addr, 0u64, 0u64),
                    HwBreak::Watch { addr, len, kind } => {
                        let rw = match kind {
                            WatchKind::Write => 1,
                            WatchKind::Read | WatchKind::Access => 3,
                        };
                        let len = match len {
                            1 => 0,
                            2 => 1,
                            8 => 2,
                            _ => 3,
                        };
                        (addr, rw, len)
                    }
                };
                g.arch.debugreg[i] = addr;
                dr7 |= 2 << (i * 2); // global enable
                dr7 |= (rw | (len << 2)) << (16 + i * 4);
            }
            if dr7 != 0 {
                g.control |= KVM_GUESTDBG_USE_HW_BP;
                g.arch.debugreg[7] = dr7 | 0x400;
            }
        }
        self.fd
            .set_guest_debug(&g)
            .map_err(kvm_err("KVM_SET_GUEST_DEBUG"))?;
        self.debug = *dbg;
        Ok(())
    }

    fn reset_ap(&mut self) -> Result<()> {
        // The registers INIT leaves: KVM resets them only when it takes an
        // INIT itself, not for the wait-for-SIPI state set here, and a
        // start-up IPI loads CS:IP alone.
        self.set_state(&CpuState::ap_init())?;
        // The in-kernel local APIC holds the AP until a start-up IPI.
        let st = kvm_bindings::kvm_mp_state {
            mp_state: kvm_bindings::KVM_MP_STATE_INIT_RECEIVED,
        };
        self.fd
            .set_mp_state(st)
            .map_err(kvm_err("KVM_SET_MP_STATE"))
    }

    fn waiting_for_sipi(&mut self) -> bool {
        self.fd.get_mp_state().is_ok_and(|mp| {
            // An AP starts uninitialized; after INIT it waits for SIPI.
            mp.mp_state == kvm_bindings::KVM_MP_STATE_UNINITIALIZED
                || mp.mp_state == kvm_bindings::KVM_MP_STATE_INIT_RECEIVED
        })
    }

    fn kicker(&self) -> Arc<dyn Kicker> {
        self.kicker.clone()
    }
}

impl KvmVcpu {
    fn debug_event(&self, exception: u32, dr6: u64) -> DebugEvent {
        if exception == 3 {
            return DebugEvent::SwBreakpoint;
        }
        for i in 0..4 {
            if dr6 & (1 << i) != 0 {
                return match self.debug.hw[i] {
                    Some(HwBreak::Watch { addr, .. }) => DebugEvent::Watchpoint { slot: i, addr },
                    _ => DebugEvent::HwBreakpoint(i),
                };
            }
        }
        DebugEvent::SingleStep
    }
}
