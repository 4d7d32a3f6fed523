//! From the parsed command line ([`Cli`]) to a [`MachineConfig`]: every
//! option's value checked, QEMU's spelling accepted, clear errors otherwise.
//! `accel.rs`: `-machine`, `-accel`; `devices.rs`: `-device`, `-debugcon`,
//! `-global`; `drive.rs`: `-drive`, `-snapshot`, virtio-blk-pci; `net.rs`:
//! `-netdev`, `-nic`; `smp.rs`: `-smp`; `virtio_serial.rs`: virtio-serial's
//! ports.

pub mod accel;
pub mod devices;
pub mod drive;
pub mod net;
pub mod smp;
pub mod virtio_serial;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::cli::Cli;
use crate::machine::{Boot, MachineConfig, SerialOut};
pub use devices::DeviceConfig;
pub use smp::SmpTopology;

/// A warning on stderr, in QEMU's form (`PROG: warning: ...`): harnesses
/// (kvm-unit-tests) tolerate stderr lines that say "warning".
pub fn warn(msg: &str) {
    eprintln!("hx86: warning: {msg}");
}

pub(crate) fn parse_num(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// `PROP=VALUE` pairs (empty items skipped).
type Props<'a> = Vec<(&'a str, &'a str)>;

fn props<'a>(what: &str, items: impl Iterator<Item = &'a str>) -> Result<Props<'a>> {
    items
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.split_once('=')
                .with_context(|| format!("{what}: expected PROP=VALUE, got '{p}'"))
        })
        .collect()
}

/// The output of `-debugcon`: stdio, file:PATH, none or null. (COM1's
/// `-serial` is a chardev: [`crate::chardev`].)
pub fn parse_chardev(opt: &str, s: &str) -> Result<SerialOut> {
    Ok(match s {
        "stdio" | "mon:stdio" => SerialOut::Stdio,
        "none" | "null" => SerialOut::None,
        _ => match s.strip_prefix("file:") {
            Some(p) if !p.is_empty() => SerialOut::File(PathBuf::from(p)),
            _ => bail!("{opt} {s}: unsupported (use stdio, file:PATH or none)"),
        },
    })
}

/// `-gdb DEV`, `-s` (= `-gdb tcp::1234`) and `-S` (wait for the debugger
/// or a monitor's `cont`).
fn gdb_options(cli: &Cli, has_monitor: bool) -> Result<Option<crate::gdb::GdbOptions>> {
    let dev = match (&cli.gdb, cli.gdb_default) {
        (Some(d), _) if d == "none" => None,
        (Some(d), _) => Some(d.as_str()),
        (None, true) => Some("tcp::1234"),
        (None, false) => None,
    };
    match dev {
        Some(d) => Ok(Some(crate::gdb::GdbOptions {
            listen: crate::gdb::parse_listen(d)?,
            start_stopped: cli.stopped,
        })),
        None if cli.stopped && !has_monitor => {
            bail!("-S: the CPU would wait forever: add a monitor (-qmp, -monitor) or a debugger (-s, -gdb DEV)")
        }
        None => Ok(None),
    }
}

/// A help text an option asked for (`-device help`, `-machine help`,
/// `-accel help`, `-cpu help`): print it and exit 0.
pub fn help_request(cli: &Cli) -> Result<Option<String>> {
    if cli.machine.iter().any(|m| is_help(m)) {
        return Ok(Some(accel::machine_help()));
    }
    if cli.accel.iter().any(|a| is_help(a)) {
        return Ok(Some(accel::accel_help()));
    }
    if cli.cpu.as_deref().is_some_and(is_help) {
        return Ok(Some(x86::cpu_model::help_text()));
    }
    if let Some(h) = net::help_request(&cli.netdev, &cli.nic) {
        return Ok(Some(h));
    }
    devices::help_request(&cli.device)
}

fn is_help(s: &str) -> bool {
    s == "help" || s == "?" || s.split(',').any(|p| p == "help" || p == "?")
}

/// The options that only check or name things: `-display`, `-vnc`,
/// `-vga`, `-daemonize`.
fn check_frontends(cli: &Cli) -> Result<()> {
    if cli.daemonize {
        bail!("-daemonize is not supported: hx86 runs in the foreground (background it from the shell or a service manager)");
    }
    if let Some(d) = &cli.display {
        if d.split(',').next() != Some("none") {
            bail!("-display {d}: hx86 has no graphical output (only -display none)");
        }
    }
    if let Some(v) = &cli.vnc {
        if v != "none" {
            bail!("-vnc {v}: hx86 has no VNC server (only -vnc none)");
        }
    }
    for o in &cli.overcommit {
        for (k, v) in props(&format!("-overcommit {o}"), o.split(','))? {
            match (k, v) {
                ("mem-lock" | "cpu-pm", "off") => {}
                ("mem-lock" | "cpu-pm", "on") => warn(&format!(
                    "-overcommit {k}=on ignored: hx86 does not pin guest memory or pass CPU power management through"
                )),
                _ => bail!("-overcommit {o}: expected mem-lock=on|off or cpu-pm=on|off"),
            }
        }
    }
    if let Some(v) = &cli.vga {
        if v != "none" {
            bail!("-vga {v}: hx86 has no display adapter (only -vga none)");
        }
    }
    Ok(())
}

/// `-name NAME` or `-name guest=NAME[,process=P][,debug-threads=on|off]`.
fn parse_name(s: &str) -> Result<String> {
    let mut name = None;
    for (i, p) in s.split(',').enumerate() {
        match p.split_once('=') {
            None if i == 0 => name = Some(p.to_string()),
            Some(("guest", v)) => name = Some(v.to_string()),
            Some(("process" | "debug-threads", _)) => {}
            _ => bail!("-name {s}: expected NAME or guest=NAME[,process=P][,debug-threads=on|off]"),
        }
    }
    name.with_context(|| format!("-name {s}: no guest name"))
}

/// The machine `cli` describes; `show_accel`: print the accelerator line.
pub fn build(cli: &Cli, show_accel: bool) -> Result<MachineConfig> {
    check_frontends(cli)?;
    let ram_size = crate::cli::parse_mem_size(&cli.memory).map_err(anyhow::Error::msg)?;
    let smp = match &cli.smp {
        Some(s) => SmpTopology::parse(s)?,
        None => SmpTopology::default(),
    };
    if smp.cpus > x86::mmu::share::MAX_VCPUS as u32 {
        bail!(
            "-smp {}: {} vCPUs asked for; hx86 runs at most {}",
            cli.smp.as_deref().unwrap_or(""),
            smp.cpus,
            x86::mmu::share::MAX_VCPUS
        );
    }
    let mut machine = accel::MachineOpts::default();
    for m in &cli.machine {
        accel::parse_machine(m, &mut machine)?;
    }
    let accels = accel::accel_choice(&cli.accel, &machine)?;
    if cli.initrd.is_some() && cli.kernel.is_none() {
        bail!("-initrd only makes sense with -kernel");
    }
    // COM1 is always there; -nodefaults only stops its default output.
    // -nographic, as QEMU: COM1 shares stdio with the human monitor
    // (Ctrl-A c) unless a monitor was configured.
    let default_monitor = cli.mon.is_empty() && cli.qmp.is_empty() && cli.monitor.is_empty();
    let serial = match (&cli.serial, cli.nodefaults) {
        (Some(s), _) => s.as_str(),
        (None, false) if cli.nographic && default_monitor => "mon:stdio",
        (None, false) => "stdio",
        (None, true) => "none",
    };
    let chardevs = crate::chardev::ChardevConfig::from_options(&crate::chardev::ChardevOptions {
        chardev: &cli.chardev,
        serial,
        mon: &cli.mon,
        qmp: &cli.qmp,
        monitor: &cli.monitor,
    })?;
    let gdb = gdb_options(cli, chardevs.has_monitor())?;
    let boot = match (&cli.kernel, &cli.bios) {
        (Some(_), Some(_)) => bail!("-kernel and -bios cannot be used together yet"),
        (Some(k), None) => Boot::Kernel {
            path: k.clone(),
            initrd: cli.initrd.clone(),
            cmdline: cli.append.clone().unwrap_or_default(),
        },
        (None, b) => {
            if cli.append.is_some() {
                bail!("-append only makes sense with -kernel");
            }
            b.clone().map_or(Boot::Demo, Boot::Bios)
        }
    };
    let globals = devices::Globals::parse(&cli.global)?;
    let mut devs = Vec::new();
    for d in &cli.device {
        devs.push(devices::parse_device(d, &globals)?);
    }
    // hx86's one default device beyond QEMU's: isa-debug-exit at 0xf4, 4
    // bytes, unless -nodefaults or a -device isa-debug-exit.
    if !cli.nodefaults
        && !devs
            .iter()
            .any(|d| matches!(d, DeviceConfig::DebugExit { .. }))
    {
        devs.insert(
            0,
            DeviceConfig::DebugExit {
                iobase: 0xf4,
                iosize: 4,
            },
        );
    }
    if let Some(d) = &cli.debugcon {
        if !matches!(d.as_str(), "none" | "null") {
            devs.push(devices::parse_debugcon(d, &globals)?);
        }
    }
    let drives = cli
        .drive
        .iter()
        .enumerate()
        .map(|(i, d)| drive::parse_drive(d, cli.snapshot, i))
        .collect::<Result<Vec<_>>>()?;
    drive::resolve(&drives, &mut devs)?;
    for d in &mut devs {
        resolve_chardev(d, &chardevs)?;
    }
    virtio_serial::assign_ports(&mut devs)?;
    virtio_serial::check_chardevs(&devs, &chardevs)?;
    net::resolve(&mut devs, &cli.netdev, &cli.nic)?;
    Ok(MachineConfig {
        ram_size,
        boot,
        chardevs,
        start_stopped: cli.stopped,
        devices: devs,
        no_reboot: cli.no_reboot,
        accels: accels.kinds,
        show_accel,
        dbt: ::accel::dbt::DbtOptions {
            cpus: smp.cpus,
            // Dies are not modelled apart: a package's cores are all of its
            // dies' cores.
            cores: smp.cores * smp.dies,
            threads: smp.threads,
            ..accels.dbt
        },
        cpu: match &cli.cpu {
            Some(c) => {
                x86::cpu_model::CpuSpec::parse(c).map_err(|e| anyhow::anyhow!("-cpu {c}: {e}"))?
            }
            None => Default::default(),
        },
        gdb,
        smp,
        name: cli.name.as_deref().map(parse_name).transpose()?,
        fw_cfg: crate::fw_cfg::FwCfgOptions {
            files: cli
                .fw_cfg
                .iter()
                .map(|s| crate::fw_cfg::parse_option(s))
                .collect::<Result<_>>()?,
            nographic: cli.nographic,
        },
    })
}

/// An isa-debugcon's `chardev=ID`: its output goes where that chardev's
/// does. The chardev may be shared (with COM1 or a monitor) only when it is
/// a mux, as in QEMU, and then only a stdio one (a shared file would be
/// written through two handles).
fn resolve_chardev(d: &mut DeviceConfig, c: &crate::chardev::ChardevConfig) -> Result<()> {
    use crate::chardev::Backend;
    let DeviceConfig::Debugcon {
        out,
        chardev: Some(id),
        ..
    } = d
    else {
        return Ok(());
    };
    let what = format!("-device isa-debugcon,chardev={id}");
    let Some(spec) = c.chardevs.iter().find(|s| &s.id == id) else {
        bail!("{what}: chardev '{id}' not found (define it with -chardev ...,id={id})");
    };
    let shared = c.serial.as_ref() == Some(id) || c.monitors.iter().any(|m| &m.chardev == id);
    if shared && !spec.mux {
        bail!("{what}: chardev '{id}' is used twice: add mux=on to share it");
    }
    *out = match &spec.backend {
        Backend::Stdio => SerialOut::Stdio,
        Backend::Null => SerialOut::None,
        Backend::File(p) if !shared => SerialOut::File(p.clone()),
        Backend::File(_) => bail!("{what}: a file chardev shared with another user is not supported for isa-debugcon"),
        Backend::Socket(_) => bail!("{what}: socket chardevs are not supported for isa-debugcon yet (use stdio, file or null)"),
    };
    Ok(())
}

/// `-pidfile FILE`: written at start, removed when dropped (at exit).
pub struct PidFile(PathBuf);

impl PidFile {
    pub fn create(path: &std::path::Path) -> Result<Self> {
        std::fs::write(path, format!("{}\n", std::process::id()))
            .with_context(|| format!("-pidfile {}: cannot write", path.display()))?;
        Ok(Self(path.to_path_buf()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// COM1's chardev backend.
    fn com1(c: &MachineConfig) -> Option<crate::chardev::Backend> {
        let id = c.chardevs.serial.as_ref()?;
        let d = c.chardevs.chardevs.iter().find(|d| &d.id == id)?;
        Some(d.backend.clone())
    }

    fn cfg(args: &[&str]) -> Result<MachineConfig> {
        let mut v = vec!["hx86"];
        v.extend_from_slice(args);
        let args = crate::cli::normalize_args(v.iter().map(std::ffi::OsString::from))
            .map_err(anyhow::Error::msg)?;
        build(&Cli::try_parse_from(args)?, false)
    }

    #[test]
    fn kvm_unit_tests_command_line() {
        let c = cfg(&[
            "--no-reboot",
            "-nodefaults",
            "-global",
            "kvm-pit.lost_tick_policy=discard",
            "-device",
            "pc-testdev",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x4",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-device",
            "pci-testdev",
            "-machine",
            "accel=tcg",
            "-kernel",
            "x86/msr.flat",
            "-smp",
            "1",
        ])
        .unwrap();
        assert_eq!(c.accels, [::accel::AccelKind::Dbt]);
        assert_eq!(
            c.devices,
            [
                DeviceConfig::PcTestdev,
                DeviceConfig::DebugExit {
                    iobase: 0xf4,
                    iosize: 4
                },
                DeviceConfig::PciTestdev { addr: None }
            ]
        );
        assert_eq!(com1(&c), Some(crate::chardev::Backend::Stdio));
        assert!(c.no_reboot);
    }

    #[test]
    fn defaults_and_nodefaults() {
        let c = cfg(&[]).unwrap();
        assert_eq!(
            c.devices,
            [DeviceConfig::DebugExit {
                iobase: 0xf4,
                iosize: 4
            }]
        );
        assert_eq!(com1(&c), Some(crate::chardev::Backend::Stdio));
        assert_eq!(c.smp, SmpTopology::default());
        let c = cfg(&["-nodefaults"]).unwrap();
        assert!(c.devices.is_empty());
        assert_eq!(com1(&c), None);
        // -nographic: COM1 and the human monitor share stdio, as in QEMU,
        // unless a monitor (or -serial) is given.
        assert!(!cfg(&[]).unwrap().chardevs.has_monitor());
        let c = cfg(&["-nographic"]).unwrap();
        assert!(c.chardevs.has_monitor());
        assert_eq!(com1(&c), Some(crate::chardev::Backend::Stdio));
        let c = cfg(&[
            "-nographic",
            "-qmp",
            "unix:/tmp/hx86-q.sock,server=on,wait=off",
        ])
        .unwrap();
        assert_eq!(com1(&c), Some(crate::chardev::Backend::Stdio));
        let c = cfg(&["-nographic", "-serial", "file:/tmp/hx86-com1"]).unwrap();
        assert!(!c.chardevs.has_monitor());
        let c = cfg(&["-name", "guest=vm1,debug-threads=on", "-smp", "1,maxcpus=4"]).unwrap();
        assert_eq!(c.name.as_deref(), Some("vm1"));
        assert_eq!(c.smp.maxcpus, 4);
        let c = cfg(&[
            "-debugcon",
            "file:/tmp/dc",
            "-global",
            "isa-debugcon.iobase=0x402",
        ])
        .unwrap();
        assert!(c.devices.contains(&DeviceConfig::Debugcon {
            iobase: 0x402,
            readback: 0xe9,
            out: SerialOut::File("/tmp/dc".into()),
            chardev: None
        }));
        // chardev=: a file one, and stdio shared with COM1 through a mux.
        let c = cfg(&[
            "-chardev",
            "file,id=dbg,path=/tmp/dbg.log",
            "-device",
            "isa-debugcon,iobase=0x402,chardev=dbg",
        ])
        .unwrap();
        assert!(matches!(
            c.devices.last(),
            Some(DeviceConfig::Debugcon { iobase: 0x402, out: SerialOut::File(p), .. })
                if p.to_str() == Some("/tmp/dbg.log")
        ));
        let c = cfg(&[
            "-chardev",
            "stdio,id=c,mux=on",
            "-serial",
            "chardev:c",
            "-device",
            "isa-debugcon,chardev=c",
        ])
        .unwrap();
        assert!(matches!(
            c.devices.last(),
            Some(DeviceConfig::Debugcon {
                out: SerialOut::Stdio,
                ..
            })
        ));
    }

    #[test]
    fn refusals() {
        for (args, msg) in [
            (&["-smp", "65"][..], "hx86 runs at most 64"),
            (&["-daemonize"], "-daemonize is not supported"),
            (&["-vnc", ":0"], "no VNC server"),
            (&["-vga", "std"], "no display adapter"),
            (&["-display", "gtk"], "-display gtk"),
            (&["-debugcon", "pty"], "-debugcon pty"),
            (&["-M", "q35"], "unsupported machine type"),
            (&["-name", "a,b=c"], "-name a,b=c"),
            (&["-overcommit", "frob=on"], "expected mem-lock"),
            (
                &["-device", "isa-debugcon,chardev=nope"],
                "chardev 'nope' not found",
            ),
            (
                &[
                    "-chardev",
                    "stdio,id=c",
                    "-serial",
                    "chardev:c",
                    "-device",
                    "isa-debugcon,chardev=c",
                ],
                "used twice",
            ),
            (
                &[
                    "-chardev",
                    "socket,id=s,path=/tmp/x,server=on,wait=off",
                    "-device",
                    "isa-debugcon,chardev=s",
                ],
                "socket chardevs are not supported",
            ),
        ] {
            let e = format!("{:#}", cfg(args).unwrap_err());
            assert!(e.contains(msg), "{args:?}: {e}");
        }
    }
}
