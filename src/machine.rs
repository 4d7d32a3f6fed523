//! The PC machine: guest memory, buses and devices, the boot image, and the
//! vCPU loop that acts on [`VcpuExit`]s.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use accel::{AccelKind, GuestMemory, IoAction, IoHandler, Vcpu, VcpuExit, Vm};
use anyhow::{anyhow, bail, Context, Result};
use devices::dma::GuestRam;
use devices::irqchip::{attach_irqchip, IrqChip, SharedIrqChip};
use devices::{
    attach_i8042, Bus, BusDevice, HostClock, IrqLine, PciConfigIo, Pm1Event, PmTimer, PostCode,
    PowerOffPort, Rtc, Serial, VmRequest, I8042, PCI_CONFIG_LEN, PCI_CONFIG_PORT, RTC_PORT,
};

use crate::chardev::ChardevConfig;
use crate::control::{Cause, Control, VcpuAction};
use crate::irq::ChipController;
use crate::monitor::Chardevs;
use vm_memory::GuestMemoryMmap;
use x86::CpuState;

/// Port of the power-off register (QEMU's PIIX4 ACPI PM1a_CNT location).
pub const POWER_OFF_PORT: u64 = firmware::acpi::PM1A_CNT_BLK as u64;
/// PM1a event block and PM timer ports (as the FADT says).
pub const PM1_EVT_PORT: u64 = firmware::acpi::PM1A_EVT_BLK as u64;
pub const PM_TIMER_PORT: u64 = firmware::acpi::PM_TMR_BLK as u64;
/// COM1.
pub const COM1_PORT: u64 = 0x3f8;
/// POST code port.
pub const POST_PORT: u64 = 0x80;
/// COM1's interrupt line.
pub const COM1_IRQ: u32 = 4;
/// The RTC's interrupt line.
pub const RTC_IRQ: u32 = 8;
/// The ACPI SCI (the FADT's SCI_INT).
pub const SCI_IRQ: u32 = 9;
/// The i8042's keyboard and aux (mouse) interrupt lines.
pub const KBD_IRQ: u32 = 1;
pub const AUX_IRQ: u32 = 12;

/// An interrupt line of the machine, bound to the VM once it exists (devices
/// are built before the accelerator creates the VM).
pub struct VmIrqLine {
    gsi: u32,
    vm: Arc<OnceLock<Arc<dyn Vm>>>,
}

impl IrqLine for VmIrqLine {
    fn set_level(&self, level: bool) {
        if let Some(vm) = self.vm.get() {
            if let Err(e) = vm.set_irq_line(self.gsi, level) {
                log::debug!(target: "int", "IRQ {} -> {level}: {e}", self.gsi);
            }
        }
    }
}

/// Message-signalled interrupts of the machine's devices, delivered by the
/// VM once it exists.
pub struct VmMsi {
    vm: Arc<OnceLock<Arc<dyn Vm>>>,
}

impl devices::virtio::MsiSink for VmMsi {
    fn send_msi(&self, addr: u64, data: u32) {
        if let Some(vm) = self.vm.get() {
            if let Err(e) = vm.signal_msi(addr, data) {
                log::debug!(target: "int", "MSI {addr:#x} <- {data:#x}: {e}");
            }
        }
    }
}

/// Where guest code comes from.
#[derive(Clone, Debug)]
pub enum Boot {
    /// The built-in demo ROM.
    Demo,
    /// `-bios FILE`.
    Bios(PathBuf),
    /// `-kernel FILE [-initrd FILE] [-append ...]`.
    Kernel {
        path: PathBuf,
        initrd: Option<PathBuf>,
        cmdline: String,
    },
}

/// Where the debug console's output goes (COM1's goes to a chardev).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SerialOut {
    Stdio,
    File(PathBuf),
    None,
}

/// Everything the options decide.
#[derive(Clone, Debug)]
pub struct MachineConfig {
    pub ram_size: u64,
    pub boot: Boot,
    /// The chardevs and who uses them (COM1, the monitors).
    pub chardevs: ChardevConfig,
    /// `-S`: wait in `prelaunch` for a monitor's `cont` or a debugger.
    pub start_stopped: bool,
    /// The devices added to the fixed PC (`-device`, `-debugcon`, and the
    /// default isa-debug-exit).
    pub devices: Vec<crate::config::DeviceConfig>,
    pub no_reboot: bool,
    /// The accelerators to try, in order: the first usable one runs.
    pub accels: Vec<AccelKind>,
    /// Print which accelerator runs, and why, on stderr.
    pub show_accel: bool,
    /// DBT options from `-accel dbt,...`.
    pub dbt: accel::dbt::DbtOptions,
    /// `-cpu`: the CPU model, resolved by the accelerator chosen.
    pub cpu: x86::cpu_model::CpuSpec,
    /// The gdb server (`-gdb`, `-s`, `-S`).
    pub gdb: Option<crate::gdb::GdbOptions>,
    /// `-smp`: the CPU topology.
    pub smp: crate::config::SmpTopology,
    /// `-name`.
    pub name: Option<String>,
    /// `-fw_cfg` files and what else the fw_cfg device reflects.
    pub fw_cfg: crate::fw_cfg::FwCfgOptions,
}

/// The machine's port and MMIO buses, as the accelerator sees them.
pub struct MachineIo {
    pub pio: Bus,
    pub mmio: Bus,
    rom: Vec<(u64, u64)>,
    /// COM1, also fed by its chardev's input.
    pub serial: Arc<Mutex<Serial>>,
    /// The PM1a event block (the power button).
    pub pm1: Arc<Mutex<Pm1Event>>,
    /// The VM the interrupt lines drive, set once it is created.
    pub vm: Arc<OnceLock<Arc<dyn Vm>>>,
    /// PCI configuration space (bus 0), for `info pci`.
    pub pci: Arc<Mutex<PciConfigIo>>,
}

fn action(r: Option<VmRequest>) -> IoAction {
    match r {
        None => IoAction::Continue,
        Some(VmRequest::Exit(c)) => IoAction::Exit(c),
        Some(VmRequest::Reset) => IoAction::Reset,
        Some(VmRequest::PowerOff) => IoAction::PowerOff,
    }
}

impl IoHandler for MachineIo {
    fn pio_read(&self, port: u16, data: &mut [u8]) {
        self.pio.read(port as u64, data);
    }
    fn pio_write(&self, port: u16, data: &[u8]) -> IoAction {
        action(self.pio.write(port as u64, data))
    }
    fn mmio_read(&self, addr: u64, data: &mut [u8]) {
        self.mmio.read(addr, data);
    }
    fn mmio_write(&self, addr: u64, data: &[u8]) -> IoAction {
        if self.rom.iter().any(|&(s, l)| addr >= s && addr - s < l) {
            log::debug!(target: "guest_errors", "write to ROM at {addr:#x} ignored");
            return IoAction::Continue;
        }
        action(self.mmio.write(addr, data))
    }
}

/// Reads the file of option `what`; the error has QEMU's wording ("could
/// not open kernel file"), which harnesses (kvm-unit-tests) look for.
fn read_file(what: &str, path: &Path) -> Result<Vec<u8>> {
    let noun = what.trim_start_matches('-');
    std::fs::read(path).with_context(|| {
        format!(
            "{what} {}: could not open {noun} file '{}'",
            path.display(),
            path.display()
        )
    })
}

/// The guest image and the state to start it in.
struct Image {
    mem: GuestMemoryMmap,
    rom: Vec<(u64, u64)>,
    state: CpuState,
}

fn load_image(cfg: &MachineConfig) -> Result<Image> {
    let (mem, rom) = create_memory(cfg)?;
    let state = load_boot(cfg, &mem)?;
    Ok(Image { mem, rom, state })
}

/// Guest memory for the machine, with the ROM (the demo or `-bios FILE`)
/// in place; returns it and its read-only ranges.
fn create_memory(cfg: &MachineConfig) -> Result<(GuestMemoryMmap, Vec<(u64, u64)>)> {
    match &cfg.boot {
        Boot::Demo => {
            firmware::create_guest_memory(cfg.ram_size, Some(&firmware::demo::demo_rom()))
                .context("built-in demo")
        }
        Boot::Bios(path) => {
            let rom = read_file("-bios", path)?;
            firmware::create_guest_memory(cfg.ram_size, Some(&rom))
                .with_context(|| format!("-bios {}", path.display()))
        }
        Boot::Kernel { path, .. } => firmware::create_guest_memory(cfg.ram_size, None)
            .with_context(|| format!("-kernel {}", path.display())),
    }
}

/// Puts the boot image into `mem` and returns the state the vCPU starts
/// in. ROM boots only need the reset state (the ROM is part of `mem`); a
/// `-kernel` image (and its initrd and tables) is written again, so this
/// also serves a machine reset.
fn load_boot(cfg: &MachineConfig, mem: &GuestMemoryMmap) -> Result<CpuState> {
    let Boot::Kernel {
        path,
        initrd,
        cmdline,
    } = &cfg.boot
    else {
        return Ok(firmware::bios::reset_state());
    };
    let image = read_file("-kernel", path)?;
    match firmware::detect(&image) {
        firmware::KernelFormat::BzImage { .. } => {
            let initrd_bytes = match initrd {
                Some(p) => Some(read_file("-initrd", p)?),
                None => None,
            };
            let rsdp = write_firmware_tables(cfg, mem)?;
            firmware::linux::load_linux_with(
                mem,
                &image,
                &firmware::linux::LinuxBootOptions {
                    initrd: initrd_bytes.as_deref(),
                    cmdline,
                    ram_size: cfg.ram_size,
                    e820: None,
                    acpi_rsdp_addr: Some(rsdp),
                },
            )
            .with_context(|| match initrd {
                Some(p) => format!("-kernel {} -initrd {}", path.display(), p.display()),
                None => format!("-kernel {}", path.display()),
            })
        }
        firmware::KernelFormat::Multiboot { .. } => {
            let rsdp = write_firmware_tables(cfg, mem)?;
            crate::multiboot::load(
                mem,
                cfg.ram_size,
                path,
                &image,
                initrd.as_deref(),
                cmdline,
                rsdp,
            )
        }
        fmt => {
            if initrd.is_some() {
                bail!(
                    "-initrd needs a Linux (bzImage) or multiboot kernel; {} is {}",
                    path.display(),
                    fmt.describe()
                );
            }
            firmware::load_kernel(mem, &image, cmdline, cfg.ram_size)
                .with_context(|| format!("-kernel {}", path.display()))
        }
    }
}

pub(crate) fn serial_writer(out: &SerialOut) -> Result<Box<dyn std::io::Write + Send>> {
    Ok(match out {
        SerialOut::Stdio => Box::new(std::io::stdout()),
        SerialOut::File(p) => Box::new(
            std::fs::File::create(p)
                .with_context(|| format!("file:{}: cannot create", p.display()))?,
        ),
        SerialOut::None => Box::new(std::io::sink()),
    })
}

fn build_io(
    cfg: &MachineConfig,
    chardevs: &Chardevs,
    rom: Vec<(u64, u64)>,
    chip: Option<&SharedIrqChip>,
    fw_cfg: Arc<Mutex<devices::FwCfg>>,
    ram: &GuestRam,
) -> Result<MachineIo> {
    let mut pio = Bus::new();
    let mut mmio = Bus::new();
    if let Some(chip) = chip {
        attach_irqchip(chip, &mut pio, &mut mmio)
            .map_err(|e| anyhow!("interrupt controllers: {e}"))?;
    }
    let vm_cell: Arc<OnceLock<Arc<dyn Vm>>> = Arc::new(OnceLock::new());
    let irq = |gsi| -> Arc<dyn IrqLine> {
        Arc::new(VmIrqLine {
            gsi,
            vm: vm_cell.clone(),
        })
    };
    let serial = Arc::new(Mutex::new(Serial::new(
        irq(COM1_IRQ),
        chardevs.serial_writer(),
    )));
    let pm1 = Arc::new(Mutex::new(Pm1Event::with_sci(irq(SCI_IRQ))));
    // CMOS RTC (IRQ 8), with the RAM size bytes firmware reads.
    let mut rtc = Rtc::new(Arc::new(HostClock::new()), irq(RTC_IRQ));
    let below_4g = cfg.ram_size.min(firmware::layout::MMIO_HOLE_START);
    rtc.set_memory_size(below_4g, cfg.ram_size - below_4g);
    // The i8042 keyboard controller (IRQ 1 and 12): probe and reset line.
    let kbc = Arc::new(Mutex::new(I8042::new(irq(KBD_IRQ), irq(AUX_IRQ))));
    attach_i8042(&kbc, &mut pio).map_err(|e| anyhow!("i8042: {e}"))?;

    let pci = Arc::new(Mutex::new(PciConfigIo::new()));
    type PortDevice = (Arc<Mutex<dyn BusDevice>>, u64, u64, &'static str);
    let ports: Vec<PortDevice> = vec![
        (
            serial.clone(),
            COM1_PORT,
            devices::SERIAL_PORT_LEN,
            "serial",
        ),
        (
            Arc::new(Mutex::new(PostCode::new())),
            POST_PORT,
            1,
            "POST port",
        ),
        // The ACPI PM block the FADT describes: PM1a events, PM1a control
        // (SCI_EN set: the machine is always in ACPI mode; SLP_EN powers
        // off) and the PM timer.
        (pm1.clone(), PM1_EVT_PORT, 4, "PM1a events"),
        (
            Arc::new(Mutex::new(PowerOffPort::with_value(1))),
            POWER_OFF_PORT,
            2,
            "PM1a control",
        ),
        (
            Arc::new(Mutex::new(PmTimer::new(Arc::new(HostClock::new())))),
            PM_TIMER_PORT,
            4,
            "ACPI PM timer",
        ),
        (Arc::new(Mutex::new(rtc)), RTC_PORT.into(), 2, "CMOS RTC"),
        (
            fw_cfg,
            devices::FW_CFG_PORT.into(),
            devices::FW_CFG_PORT_LEN,
            "fw_cfg",
        ),
        (
            pci.clone(),
            PCI_CONFIG_PORT.into(),
            PCI_CONFIG_LEN,
            "PCI configuration",
        ),
    ];
    for (dev, base, len, name) in ports {
        pio.insert(dev, base, len)
            .map_err(|e| anyhow!("{name} at port {base:#x}: {e}"))?;
    }
    let msi = Arc::new(VmMsi {
        vm: vm_cell.clone(),
    });
    crate::extra_devices::attach(
        &cfg.devices,
        &mut pio,
        &mut mmio,
        &pci,
        &irq,
        ram,
        msi,
        chardevs,
    )?;
    Ok(MachineIo {
        pio,
        mmio,
        rom,
        serial,
        pm1,
        vm: vm_cell,
        pci,
    })
}

/// How a run ended: the process exit status.
pub fn run(cfg: &MachineConfig) -> Result<i32> {
    log::debug!(target: "cpu_reset", "machine '{}', CPUs {:?}", cfg.name.as_deref().unwrap_or("pc"), cfg.smp);
    // The accelerator first, as QEMU initialises it before loading the
    // kernel: an unusable one (-cpu host under the DBT) is reported even
    // for a missing -kernel file (kvm-unit-tests probes that way).
    let accel = select_accelerator(cfg)?;
    let image = load_image(cfg)?;
    let ctl = Control::new(cfg.start_stopped);
    ctl.set_accel(accel.name());
    let chardevs = Chardevs::open(&cfg.chardevs)?;
    // Without an in-kernel irqchip the machine brings its own (the DBT).
    let chip = (!accel.in_kernel_irqchip()).then(|| {
        IrqChip::with_cpus(Arc::new(HostClock::new()), cfg.smp.cpus as usize).into_shared()
    });
    // Guest RAM as devices write it (DMA); the VM's hook is installed once
    // the VM exists.
    let ram = GuestRam::new(image.mem.clone(), &image.rom);
    let fw_cfg = crate::fw_cfg::device(cfg, &ram, &image.state)?;
    let io = Arc::new(build_io(
        cfg,
        &chardevs,
        image.rom.clone(),
        chip.as_ref(),
        fw_cfg,
        &ram,
    )?);
    let pm1 = io.pm1.clone();
    let pci = io.pci.clone();
    ctl.set_pci_info(move || pci.lock().unwrap_or_else(|e| e.into_inner()).info());
    let pci = io.pci.clone();
    ctl.set_device_reset(move || pci.lock().unwrap_or_else(|e| e.into_inner()).reset());
    ctl.set_power_button(move || {
        if let Ok(mut p) = pm1.lock() {
            p.press_power_button();
        }
    });
    let vm: Arc<dyn Vm> = accel
        .create_vm(
            GuestMemory {
                mem: image.mem.clone(),
                rom: image.rom.clone(),
            },
            io.clone(),
        )
        .map_err(|e| anyhow!("{}: {e}", accel.name()))?
        .into();
    let _ = io.vm.set(vm.clone());
    let hook_vm = vm.clone();
    ram.set_written_hook(Arc::new(move |paddr, len| hook_vm.ram_written(paddr, len)));
    if let Some(chip) = chip {
        if let Err(e) = vm.set_interrupt_controller(ChipController::new(chip)) {
            log::warn!(target: "unimp", "{}: no interrupt controller: {e}", accel.name());
        }
    }
    let mut vcpus = Vec::new();
    for id in 0..cfg.smp.cpus {
        vcpus.push(
            vm.create_vcpu(id)
                .map_err(|e| anyhow!("{}: vCPU {id}: {e}", accel.name()))?,
        );
    }
    vcpus[0]
        .set_state(&image.state)
        .map_err(|e| anyhow!("setting the boot state: {e}"))?;
    log::debug!(target: "cpu_reset", "CPU 0 boot state: {:x?}", image.state);
    for v in &vcpus {
        ctl.add_vcpu(v.kicker());
    }
    chardevs.start(&ctl, &image.mem, &io.serial)?;
    let r = match &cfg.gdb {
        Some(g) => crate::gdb::run(cfg, &ctl, g, accel.name(), &mut vcpus, &ram),
        None if vcpus.len() == 1 => run_loop(cfg, &ctl, vcpus[0].as_mut(), &image.mem),
        None => crate::smp::run(cfg, &ctl, vcpus, &image.mem),
    };
    // Ended by an error or the debugger: the monitors still hear that the
    // machine is gone (the other endings said why already).
    ctl.shutdown(Cause::HostError);
    crate::monitor::flush();
    r
}

/// The first usable accelerator of `cfg.accels` (QEMU's `accel=kvm:tcg`).
fn select_accelerator(cfg: &MachineConfig) -> Result<Box<dyn accel::Accelerator>> {
    let mut why_not = Vec::new();
    for &kind in &cfg.accels {
        let topo = x86::topology::Topology {
            cores: cfg.dbt.cores,
            threads: cfg.dbt.threads,
        };
        match accel::select_with(kind, &cfg.dbt, &cfg.cpu, topo) {
            Ok((a, why)) => {
                if cfg.show_accel {
                    match why_not.is_empty() {
                        true => eprintln!("{why}"),
                        false => eprintln!("{why} ({})", why_not.join("; ")),
                    }
                }
                return Ok(a);
            }
            Err(e) => why_not.push(format!(
                "{} unusable: {e}",
                format!("{kind:?}").to_lowercase()
            )),
        }
    }
    match why_not.as_slice() {
        [one] => bail!("{one}"),
        all => bail!("no usable accelerator: {}", all.join("; ")),
    }
}

/// The tables a kernel finds its processors and interrupt routing in, as
/// QEMU's firmware leaves them: ACPI (RSDP, MADT with every vCPU's APIC,
/// FADT/DSDT for power-off) and the Intel MP table (for kernels without
/// ACPI, `acpi=off`). Returns the RSDP's address.
fn write_firmware_tables(cfg: &MachineConfig, mem: &GuestMemoryMmap) -> Result<u64> {
    let acpi = firmware::acpi::AcpiConfig {
        cpus: cfg.smp.cpus as u8,
        ioapic_id: cfg.smp.cpus as u8,
        ..Default::default()
    };
    let rsdp = firmware::acpi::write_acpi_tables(mem, &acpi).context("writing the ACPI tables")?;
    firmware::mptable::write_mp_table(mem, &acpi).context("writing the MP table")?;
    Ok(rsdp)
}

pub(crate) fn reset(
    cfg: &MachineConfig,
    ctl: &Control,
    vcpu: &mut dyn Vcpu,
    mem: &GuestMemoryMmap,
) -> Result<()> {
    // Devices first (a virtio worker stops writing guest RAM), then RAM
    // keeps its contents, as on a PC; a -kernel image is loaded again into
    // it so the machine restarts it, like QEMU's ROM reset.
    ctl.reset_devices();
    let state = load_boot(cfg, mem)?;
    log::debug!(target: "cpu_reset", "CPU 0 reset: {state:x?}");
    vcpu.set_state(&state)
        .map_err(|e| anyhow!("resetting the CPU: {e}"))
}

/// What the machine control asked of vCPU `idx` (see
/// [`Control::checkpoint`]): `Some(status)` when the run ends. A paused
/// machine parks the thread in here.
pub(crate) fn control_point(
    cfg: &MachineConfig,
    ctl: &Control,
    idx: usize,
    vcpu: &mut dyn Vcpu,
    mem: &GuestMemoryMmap,
) -> Result<Option<i32>> {
    loop {
        match ctl.checkpoint(idx, vcpu) {
            VcpuAction::Run => return Ok(None),
            VcpuAction::Reset => {
                reset(cfg, ctl, vcpu, mem)?;
                ctl.reset_done(Cause::HostQmpSystemReset);
            }
            VcpuAction::Quit(code) => {
                let cause = ctl.quit_requested().map_or(Cause::HostQmpQuit, |q| q.1);
                ctl.shutdown(cause);
                return Ok(Some(code));
            }
        }
    }
}

fn run_loop(
    cfg: &MachineConfig,
    ctl: &Control,
    vcpu: &mut dyn Vcpu,
    mem: &GuestMemoryMmap,
) -> Result<i32> {
    loop {
        if let Some(code) = control_point(cfg, ctl, 0, vcpu, mem)? {
            return Ok(code);
        }
        let exit = vcpu.run().map_err(|e| anyhow!("vCPU 0: {e}"))?;
        if let Some(code) = handle_exit(cfg, ctl, vcpu, mem, exit)? {
            return Ok(code);
        }
    }
}

/// Acts on a vCPU exit: `Some(status)` when the machine stops there.
pub(crate) fn handle_exit(
    cfg: &MachineConfig,
    ctl: &Control,
    vcpu: &mut dyn Vcpu,
    mem: &GuestMemoryMmap,
    exit: VcpuExit,
) -> Result<Option<i32>> {
    match exit {
        VcpuExit::GuestExit(code) => {
            ctl.shutdown(Cause::GuestShutdown);
            return Ok(Some(code));
        }
        VcpuExit::PowerOff => {
            ctl.shutdown(Cause::GuestShutdown);
            return Ok(Some(0));
        }
        VcpuExit::Halt => {
            let s = vcpu.state().map_err(|e| anyhow!("{e}"))?;
            eprintln!(
                "hx86: the guest halted with nothing to wake it (rip={:#x}); exiting",
                s.rip
            );
            ctl.shutdown(Cause::GuestShutdown);
            return Ok(Some(0));
        }
        VcpuExit::Shutdown => {
            let s = vcpu.state().map_err(|e| anyhow!("{e}"))?;
            if cfg.no_reboot {
                eprintln!(
                    "hx86: guest triple fault at {:#x} (cs={:#x} rip={:#x}, {}); exiting because of -no-reboot",
                    s.linear_pc(),
                    s.segs[1].selector,
                    s.rip,
                    s.mode().name()
                );
                ctl.shutdown(Cause::GuestPanic);
                return Ok(Some(1));
            }
            log::debug!(target: "cpu_reset", "triple fault at rip={:#x}: resetting", s.rip);
            reset(cfg, ctl, vcpu, mem)?;
            ctl.reset_done(Cause::GuestReset);
        }
        VcpuExit::Reset => {
            if cfg.no_reboot {
                eprintln!("hx86: the guest requested a reset; exiting because of -no-reboot");
                ctl.shutdown(Cause::GuestReset);
                return Ok(Some(0));
            }
            reset(cfg, ctl, vcpu, mem)?;
            ctl.reset_done(Cause::GuestReset);
        }
        VcpuExit::Debug(ev) => {
            bail!("unexpected debug stop {ev:?} with no debugger attached")
        }
        VcpuExit::Interrupted => {}
    }
    Ok(None)
}
