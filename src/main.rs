//! hx86: an x86 PC machine emulator with a KVM and a DBT accelerator.

mod cli;
mod console;
mod gdb;
mod irq;
mod logging;
mod machine;

use std::path::PathBuf;

use accel::AccelKind;
use anyhow::{bail, Context, Result};
use clap::Parser;

use cli::Cli;
use machine::{Boot, MachineConfig, SerialOut};

/// The properties of `-accel NAME,prop=value,...` for the DBT.
fn parse_dbt_opts(cli: &Cli) -> Result<accel::dbt::DbtOptions> {
    let mut o = accel::dbt::DbtOptions::default();
    let Some(spec) = &cli.accel else {
        return Ok(o);
    };
    for p in spec.split(',').skip(1).filter(|p| !p.is_empty()) {
        let (k, v) = p
            .split_once('=')
            .with_context(|| format!("-accel {spec}: expected PROP=VALUE, got '{p}'"))?;
        let num =
            || parse_num(v).with_context(|| format!("-accel {spec}: {k}: '{v}' is not a number"));
        match k {
            "jit" => match v {
                "on" => {
                    if o.jit.is_none() {
                        o.jit = Some(Default::default());
                    }
                }
                "off" => o.jit = None,
                _ => bail!("-accel {spec}: jit={v}: use on or off"),
            },
            "jit-threshold" => {
                let n = num()?;
                if let Some(j) = o.jit.as_mut() {
                    j.threshold = u32::try_from(n).context("jit-threshold too large")?;
                }
            }
            "tb-size" => {
                let n = num()?;
                if !(1..=2048).contains(&n) {
                    bail!("-accel {spec}: tb-size={v}: use 1..2048 (MiB)");
                }
                if let Some(j) = o.jit.as_mut() {
                    j.cache_size = (n as usize) << 20;
                }
            }
            "perf-map" => {
                if let Some(j) = o.jit.as_mut() {
                    j.perf_map = v == "on";
                }
            }
            "thread" | "one-insn-per-tb" | "split-wx" => {
                log::warn!(target: "unimp", "-accel {spec}: property '{k}' is accepted and ignored");
            }
            _ => {
                bail!("-accel {spec}: unknown property '{k}' (dbt has jit, jit-threshold, tb-size, perf-map)")
            }
        }
    }
    Ok(o)
}

fn parse_accel(cli: &Cli) -> Result<AccelKind> {
    let name = match (&cli.accel, cli.enable_kvm) {
        (Some(a), _) => a.split(',').next().unwrap_or("").to_string(),
        (None, true) => "kvm".to_string(),
        (None, false) => "auto".to_string(),
    };
    if cli.enable_kvm && name != "kvm" {
        bail!("-enable-kvm conflicts with -accel {name}");
    }
    Ok(match name.as_str() {
        "auto" => AccelKind::Auto,
        "kvm" => AccelKind::Kvm,
        "dbt" | "tcg" => AccelKind::Dbt,
        other => bail!("-accel {other}: unknown accelerator (use auto, kvm, dbt or tcg)"),
    })
}

fn parse_serial(s: &str) -> Result<SerialOut> {
    Ok(match s {
        "stdio" | "mon:stdio" => SerialOut::Stdio,
        "none" | "null" => SerialOut::None,
        _ => match s.strip_prefix("file:") {
            Some(p) if !p.is_empty() => SerialOut::File(PathBuf::from(p)),
            _ => bail!("-serial {s}: unsupported (use stdio, file:PATH or none)"),
        },
    })
}

fn parse_num(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// `-device isa-debug-exit,iobase=0xf4,iosize=0x4`.
fn parse_device(spec: &str, debug_exit: &mut Option<(u64, u64)>) -> Result<()> {
    let mut parts = spec.split(',');
    let driver = parts.next().unwrap_or("");
    match driver {
        "isa-debug-exit" => {
            let (mut base, mut size) = (0x501u64, 1u64);
            for p in parts {
                let (k, v) = p
                    .split_once('=')
                    .with_context(|| format!("-device {spec}: expected PROP=VALUE, got '{p}'"))?;
                let n = parse_num(v)
                    .with_context(|| format!("-device {spec}: {k}: '{v}' is not a number"))?;
                match k {
                    "iobase" if n <= 0xffff => base = n,
                    "iosize" if matches!(n, 1 | 2 | 4) => size = n,
                    "iobase" | "iosize" => bail!("-device {spec}: {k}={v} is out of range"),
                    _ => bail!("-device {spec}: isa-debug-exit has no property '{k}'"),
                }
            }
            *debug_exit = Some((base, size));
            Ok(())
        }
        "" => bail!("-device: missing driver name"),
        other => bail!("-device {other}: unsupported device (hx86 supports isa-debug-exit)"),
    }
}

/// `-gdb DEV`, `-s` (= `-gdb tcp::1234`) and `-S` (wait for the debugger).
fn gdb_options(cli: &Cli) -> Result<Option<gdb::GdbOptions>> {
    let dev = match (&cli.gdb, cli.gdb_default) {
        (Some(d), _) if d == "none" => None,
        (Some(d), _) => Some(d.as_str()),
        (None, true) => Some("tcp::1234"),
        (None, false) => None,
    };
    match dev {
        Some(d) => Ok(Some(gdb::GdbOptions {
            listen: gdb::parse_listen(d)?,
            start_stopped: cli.stopped,
        })),
        None if cli.stopped => {
            bail!("-S: the CPU would wait for a debugger forever: add -s or -gdb DEV")
        }
        None => Ok(None),
    }
}

fn config(cli: &Cli) -> Result<MachineConfig> {
    let ram_size = cli::parse_mem_size(&cli.memory).map_err(anyhow::Error::msg)?;
    let smp: u32 = cli
        .smp
        .split(',')
        .next()
        .and_then(|n| n.strip_prefix("cpus=").unwrap_or(n).parse().ok())
        .with_context(|| format!("-smp {}: expected a number of CPUs", cli.smp))?;
    if smp == 0 {
        bail!("-smp 0: need at least one CPU");
    }
    if smp > 1 {
        bail!("-smp {smp}: more than one vCPU is not supported yet");
    }
    if cli.initrd.is_some() && cli.kernel.is_none() {
        bail!("-initrd only makes sense with -kernel");
    }
    let gdb = gdb_options(cli)?;
    if let Some(d) = &cli.display {
        if d != "none" {
            bail!("-display {d}: hx86 has no graphical output (only -display none)");
        }
    }
    let boot = match (&cli.kernel, &cli.bios) {
        (Some(_), Some(_)) => bail!("-kernel and -bios cannot be used together yet"),
        (Some(k), None) => Boot::Kernel {
            path: k.clone(),
            initrd: cli.initrd.clone(),
            cmdline: cli.append.clone().unwrap_or_default(),
        },
        (None, Some(b)) => {
            if cli.append.is_some() {
                bail!("-append only makes sense with -kernel");
            }
            Boot::Bios(b.clone())
        }
        (None, None) => {
            if cli.append.is_some() {
                bail!("-append only makes sense with -kernel");
            }
            Boot::Demo
        }
    };
    // isa-debug-exit is present by default at 0xf4, 4 bytes wide; a -device
    // option moves it.
    let mut debug_exit = Some((0xf4, 4));
    for d in &cli.device {
        parse_device(d, &mut debug_exit)?;
    }
    Ok(MachineConfig {
        ram_size,
        boot,
        serial: parse_serial(&cli.serial)?,
        debug_exit,
        no_reboot: cli.no_reboot,
        accel: parse_accel(cli)?,
        dbt: parse_dbt_opts(cli)?,
        gdb,
    })
}

fn real_main() -> Result<i32> {
    let args = cli::normalize_args(std::env::args_os()).map_err(anyhow::Error::msg)?;
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            // --help and --version print and exit 0; real errors exit 1.
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return Ok(code);
        }
    };
    let items = match &cli.log_items {
        Some(s) => match logging::parse_items(s)? {
            Some(v) => v,
            None => return Ok(0),
        },
        None => Vec::new(),
    };
    logging::init(items, cli.log_file.as_deref())?;
    let cfg = config(&cli)?;
    machine::run(&cfg)
}

fn main() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        console::restore_terminal();
        default_hook(info);
    }));
    let code = match real_main() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hx86: {e:#}");
            1
        }
    };
    console::restore_terminal();
    use std::io::Write;
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}
