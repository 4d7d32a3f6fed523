//! The `-d` log: QEMU-like categories, each a `log` target used by the
//! crates, written to stderr or to the `-D` file.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use anyhow::{bail, Context, Result};

/// Categories accepted by `-d`, with what they log.
pub const CATEGORIES: &[(&str, &str)] = &[
    ("exits", "vCPU exits to the VMM (I/O, MMIO, HLT, shutdown)"),
    ("int", "interrupts and exceptions delivered to the guest"),
    ("cpu_reset", "CPU resets, with the state after reset"),
    (
        "unimp",
        "guest use of unimplemented instructions and devices",
    ),
    (
        "guest_errors",
        "invalid guest accesses (writes to ROM, bad device use)",
    ),
    (
        "ioport",
        "accesses to unassigned I/O ports and the POST port 0x80",
    ),
    ("in_asm", "guest code of each block the JIT translates"),
    ("out_asm", "host code the JIT generates for each block"),
    ("stats", "DBT/JIT statistics when a vCPU stops"),
    (
        "virtio",
        "virtio devices: negotiation, activation, resets, queue notifies, interrupts",
    ),
    (
        "accel",
        "the accelerator chosen and why (always shown when stderr is a terminal)",
    ),
];

struct Logger {
    enabled: Vec<&'static str>,
    out: Mutex<Box<dyn Write + Send>>,
}

/// The category of a log target: the `virtio-queue` crate's messages
/// (errors a guest's malformed rings cause) belong to `virtio`, so a guest
/// cannot fill stderr with them.
fn category(target: &str) -> &str {
    if target.starts_with("virtio_queue") {
        "virtio"
    } else {
        target
    }
}

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        let cat = category(m.target());
        (m.level() == log::Level::Error && cat == m.target()) || self.enabled.contains(&cat)
    }

    fn log(&self, r: &log::Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        if let Ok(mut o) = self.out.lock() {
            let _ = writeln!(o, "[{}] {}", category(r.target()), r.args());
            let _ = o.flush();
        }
    }

    fn flush(&self) {
        if let Ok(mut o) = self.out.lock() {
            let _ = o.flush();
        }
    }
}

/// Parses `-d` items; `Ok(None)` means `-d help` was handled (listed).
pub fn parse_items(items: &str) -> Result<Option<Vec<&'static str>>> {
    let mut out = Vec::new();
    for item in items.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if item == "help" {
            println!("Log items (comma separated):");
            for (name, what) in CATEGORIES {
                println!("{name:<13} {what}");
            }
            return Ok(None);
        }
        match CATEGORIES.iter().find(|(n, _)| *n == item) {
            Some((n, _)) => out.push(*n),
            None => bail!("-d: unknown log item '{item}' (use -d help for a list)"),
        }
    }
    Ok(Some(out))
}

/// Installs the logger for the enabled categories.
pub fn init(enabled: Vec<&'static str>, file: Option<&Path>) -> Result<()> {
    let out: Box<dyn Write + Send> = match file {
        Some(p) => Box::new(
            File::create(p)
                .with_context(|| format!("-D {}: cannot create log file", p.display()))?,
        ),
        None => Box::new(std::io::stderr()),
    };
    let logger = Logger {
        enabled,
        out: Mutex::new(out),
    };
    log::set_boxed_logger(Box::new(logger)).context("logger already installed")?;
    log::set_max_level(log::LevelFilter::Trace);
    Ok(())
}
