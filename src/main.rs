//! hx86: an x86 PC machine emulator with a KVM and a DBT accelerator.

mod chardev;
mod cli;
mod config;
mod console;
mod control;
mod extra_devices;
mod fw_cfg;
mod gdb;
mod irq;
mod logging;
mod machine;
mod monitor;
mod multiboot;
mod net;
mod smp;

use std::io::IsTerminal;

use anyhow::Result;
use clap::Parser;

use cli::Cli;

fn real_main() -> Result<i32> {
    let args = cli::normalize_args(std::env::args_os()).map_err(anyhow::Error::msg)?;
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            // --help prints and exits 0; real errors exit 1. The help starts
            // with the version line, as QEMU's does (harnesses read it).
            let code = if e.use_stderr() { 1 } else { 0 };
            if code == 0 {
                println!("{}\n", cli::version_line());
            }
            let _ = e.print();
            return Ok(code);
        }
    };
    if cli.version {
        println!("{}", cli::version_text());
        return Ok(0);
    }
    if let Some(text) = config::help_request(&cli)? {
        print!("{text}");
        return Ok(0);
    }
    let items = match &cli.log_items {
        Some(s) => match logging::parse_items(s)? {
            Some(v) => v,
            None => return Ok(0),
        },
        None => Vec::new(),
    };
    // The accelerator line: for people at a terminal, or with -d accel;
    // harnesses (kvm-unit-tests) take any other stderr line as a failure.
    let show_accel = items.contains(&"accel") || std::io::stderr().is_terminal();
    logging::init(items, cli.log_file.as_deref())?;
    let cfg = config::build(&cli, show_accel)?;
    let _pidfile = cli
        .pidfile
        .as_deref()
        .map(config::PidFile::create)
        .transpose()?;
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
