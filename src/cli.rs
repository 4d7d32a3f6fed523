//! Command-line options, spelled as QEMU spells them (`-kernel`, one dash)
//! and also with two dashes (`--kernel`). `src/config/` turns them into a
//! [`crate::machine::MachineConfig`].

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Parser;

/// The QEMU release whose command line hx86 follows.
pub const QEMU_VERSION: &str = "7.2.0";

/// The first line of `--version` and `--help`. Harnesses read QEMU's
/// version from it (kvm-unit-tests takes words 4-6 of `-h | head -1`,
/// libvirt and others match `QEMU emulator version X.Y.Z`), so it has
/// QEMU's shape and names hx86 in the place distributions put their
/// package version.
pub fn version_line() -> String {
    format!(
        "QEMU emulator version {QEMU_VERSION} (hx86 {})",
        env!("CARGO_PKG_VERSION")
    )
}

/// What `--version` prints after [`version_line`].
pub fn version_text() -> String {
    format!(
        "{}\nhx86 {}: an x86 PC emulator (KVM, or its own binary translator) \
         that takes QEMU {QEMU_VERSION}'s command-line options; it is not QEMU.",
        version_line(),
        env!("CARGO_PKG_VERSION")
    )
}

/// hx86: an x86 PC machine emulator (KVM, or its own binary translator).
#[derive(Parser, Debug)]
#[command(
    name = "hx86",
    disable_version_flag = true,
    about = "hx86: an x86 PC emulator (KVM, or its own binary translator) that takes QEMU's \
             command-line options (QEMU 7.2's spelling: -kernel, -machine accel=tcg, -device ...).",
    after_help = "With no -kernel and no -bios, hx86 boots its built-in demo guest.\n\
                  Options take one dash as in QEMU (-kernel) or two (--kernel).\n\
                  -device help, -machine help and -accel help list what hx86 has.\n\
                  -enable-kvm is -machine accel=kvm, as in QEMU (the last accel= given wins)."
)]
pub struct Cli {
    /// Print the version (QEMU's first line, naming hx86) and exit.
    #[arg(long)]
    pub version: bool,
    /// Load a kernel: Linux bzImage/vmlinux, ELF32/ELF64, multiboot.
    #[arg(long, value_name = "FILE")]
    pub kernel: Option<PathBuf>,
    /// Initial RAM disk for -kernel.
    #[arg(long, value_name = "FILE")]
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    #[arg(long, value_name = "CMDLINE")]
    pub append: Option<String>,
    /// Add a fw_cfg file: [name=]opt/NAME,file=PATH or [name=]opt/NAME,string=STR.
    #[arg(long = "fw_cfg", value_name = "[name=]NAME,file=PATH|string=STR")]
    pub fw_cfg: Vec<String>,
    /// Raw firmware image mapped at the top of 4 GiB (size: multiple of 64 KiB).
    #[arg(long, value_name = "FILE")]
    pub bios: Option<PathBuf>,
    /// Guest RAM size (default unit MiB; suffixes K, M, G, T).
    #[arg(
        short = 'm',
        long = "memory",
        value_name = "SIZE",
        default_value = "512M"
    )]
    pub memory: String,
    /// CPU model and features: hx86 (default), qemu64, max, host (KVM only), then
    /// +FEAT, -FEAT, FEAT=on|off (-cpu help lists models and features).
    #[arg(long, value_name = "MODEL[,+FEAT|-FEAT|FEAT=on|off...]")]
    pub cpu: Option<String>,
    /// CPUs: N[,cpus=N][,sockets=S][,dies=D][,cores=C][,threads=T][,maxcpus=M].
    #[arg(long, value_name = "N[,PROP=VALUE...]")]
    pub smp: Option<String>,
    /// Machine: [type=]pc[,accel=kvm|tcg|kvm:tcg][,PROP=VALUE...] (-machine help lists types).
    #[arg(short = 'M', long, value_name = "TYPE[,PROP=VALUE...]")]
    pub machine: Vec<String>,
    /// Accelerator: auto (KVM if usable and fast, else the DBT), kvm, dbt (alias tcg); repeat
    /// to give fallbacks (the first usable wins).
    #[arg(long, value_name = "NAME[,PROP=VALUE...]")]
    pub accel: Vec<String>,
    /// Where COM1 goes: stdio, mon:stdio (shared with the monitor, Ctrl-A c
    /// switches), file:PATH, unix:PATH[,server=on,wait=off],
    /// tcp:[HOST]:PORT[,server=on,wait=off], chardev:ID, null, none.
    #[arg(long, value_name = "DEV")]
    pub serial: Option<String>,
    /// A character device: stdio|file|socket|null,id=ID,... (see docs/monitor.md).
    #[arg(long, value_name = "BACKEND,id=ID[,...]")]
    pub chardev: Vec<String>,
    /// A monitor on a chardev: chardev=ID[,mode=control|readline][,pretty=on].
    #[arg(long, value_name = "chardev=ID[,mode=...]")]
    pub mon: Vec<String>,
    /// A QMP monitor on DEV (unix:PATH,server=on,wait=off, tcp:HOST:PORT,server,nowait, stdio...).
    #[arg(long, value_name = "DEV")]
    pub qmp: Vec<String>,
    /// The human monitor on DEV (stdio, unix:..., tcp:..., none).
    #[arg(long, value_name = "DEV")]
    pub monitor: Vec<String>,
    /// Add a device (-device help lists them): isa-debug-exit, isa-debugcon, pc-testdev,
    /// pci-testdev, virtio-net-pci.
    #[arg(long, value_name = "DRIVER[,PROP=VALUE...]")]
    pub device: Vec<String>,
    /// A network backend for a card's netdev=: user,id=ID[,net=ADDR/MASK][,host=ADDR][,dns=ADDR]
    /// [,dhcpstart=ADDR][,hostfwd=[tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT]...
    #[arg(long, value_name = "user,id=ID[,...]")]
    pub netdev: Vec<String>,
    /// A network card with its own backend: user[,model=virtio-net-pci][,mac=MAC][,-netdev user
    /// options...], or none.
    #[arg(long, value_name = "user[,...]|none")]
    pub nic: Vec<String>,
    /// A disk image: file=F[,format=raw][,if=virtio|none][,id=ID][,readonly=on]
    /// [,cache=writeback|writethrough|none|directsync|unsafe][,snapshot=on][,discard=ignore|unmap].
    #[arg(long, value_name = "file=F[,PROP=VALUE...]")]
    pub drive: Vec<String>,
    /// Guest writes to the -drive images go to temporary overlays: the images stay unchanged.
    #[arg(long)]
    pub snapshot: bool,
    /// The Bochs/QEMU debug console on port 0xe9: stdio, file:PATH or none.
    #[arg(long, value_name = "DEV")]
    pub debugcon: Option<String>,
    /// Default a device property: DRIVER.PROP=VALUE.
    #[arg(long, value_name = "DRIVER.PROP=VALUE")]
    pub global: Vec<String>,
    /// No default devices: no COM1 output unless -serial, no isa-debug-exit unless -device.
    #[arg(long)]
    pub nodefaults: bool,
    /// Shorthand for -gdb tcp::1234.
    #[arg(short = 's')]
    pub gdb_default: bool,
    /// Do not start the CPU (wait for the debugger's continue).
    #[arg(short = 'S')]
    pub stopped: bool,
    /// Wait for a gdb connection on DEV (tcp::PORT, tcp:HOST:PORT, unix:PATH).
    #[arg(long, value_name = "DEV")]
    pub gdb: Option<String>,
    /// Exit instead of rebooting (on triple fault or guest reset).
    #[arg(long = "no-reboot")]
    pub no_reboot: bool,
    /// Enable logging of the given comma-separated categories (-d help lists them).
    #[arg(short = 'd', value_name = "ITEM,...")]
    pub log_items: Option<String>,
    /// Write the -d log to FILE instead of stderr.
    #[arg(short = 'D', value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// No graphical output (hx86 has none): as in QEMU, COM1 and the human
    /// monitor share stdio (Ctrl-A c switches) unless -serial or a monitor
    /// option says otherwise.
    #[arg(long)]
    pub nographic: bool,
    /// Accepted for QEMU compatibility: only `none` is supported.
    #[arg(long, value_name = "TYPE")]
    pub display: Option<String>,
    /// Accepted for QEMU compatibility: only `none` is supported.
    #[arg(long, value_name = "DISPLAY")]
    pub vnc: Option<String>,
    /// Accepted for QEMU compatibility: only `none` is supported.
    #[arg(long, value_name = "TYPE")]
    pub vga: Option<String>,
    /// Accepted for QEMU compatibility (hx86 reads no configuration files).
    #[arg(long = "no-user-config")]
    pub no_user_config: bool,
    /// Name the guest: NAME or guest=NAME[,process=P][,debug-threads=on|off].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Write hx86's process id to FILE (removed at exit).
    #[arg(long, value_name = "FILE")]
    pub pidfile: Option<PathBuf>,
    /// Host resource hints: mem-lock=on|off, cpu-pm=on|off (accepted; "on" is warned about).
    #[arg(long, value_name = "PROP=on|off,...")]
    pub overcommit: Vec<String>,
    /// Refused: hx86 always runs in the foreground.
    #[arg(long)]
    pub daemonize: bool,
}

/// The long option names of [`Cli`], and those of them that take a value,
/// and the short options that take a value.
fn option_table() -> (Vec<String>, Vec<String>, Vec<char>) {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let mut longs = vec!["help".to_string()];
    let mut long_values = Vec::new();
    let mut short_values = Vec::new();
    for arg in cmd.get_arguments() {
        let takes = arg.get_action().takes_values();
        if let Some(l) = arg.get_long() {
            longs.push(l.to_string());
            if takes {
                long_values.push(l.to_string());
            }
        }
        if let (Some(c), true) = (arg.get_short(), takes) {
            short_values.push(c);
        }
    }
    (longs, long_values, short_values)
}

/// Rewrites QEMU's spelling for clap: `-kernel` becomes `--kernel` (and
/// `-kernel=x` `--kernel=x`) for every long option of [`Cli`], and an
/// option's value is attached to it (`--append=-x`, `-m512`) so that a value
/// starting with a dash (`-append "-test_a -test_b"`) stays a value, as in
/// QEMU. A single-dash word that is no option at all (`-frobnicate`) is
/// refused here, by its full name.
pub fn normalize_args<I: IntoIterator<Item = OsString>>(args: I) -> Result<Vec<OsString>, String> {
    let (longs, long_values, short_values) = option_table();
    let mut out = Vec::new();
    let mut after_ddash = false;
    let mut args = args.into_iter().enumerate();
    while let Some((i, a)) = args.next() {
        if i == 0 || after_ddash {
            out.push(a);
            continue;
        }
        if a == "--" {
            after_ddash = true;
            out.push(a);
            continue;
        }
        let Some(s) = a.to_str() else {
            out.push(a);
            continue;
        };
        // The option's name without dashes, and whether it is long.
        let (name, long) = match s.strip_prefix("--") {
            Some(n) => (n, true),
            None => match s.strip_prefix('-') {
                Some(n) if n.len() > 1 => (n, true),
                Some(n) => (n, false),
                None => {
                    out.push(a);
                    continue;
                }
            },
        };
        // QEMU 7.2 turns -enable-kvm into the machine option accel=kvm: a
        // later -machine accel= overrides it, and it conflicts with -accel.
        if long && name == "enable-kvm" {
            out.push(OsString::from("--machine=accel=kvm"));
            continue;
        }
        if long {
            let (n, inline) = match name.split_once('=') {
                Some((n, _)) => (n, true),
                None => (name, false),
            };
            if !longs.iter().any(|l| l == n) {
                if s.starts_with("--") || n.starts_with(|c: char| c.is_ascii_digit()) {
                    out.push(a); // clap's error, or a negative number
                    continue;
                }
                return Err(format!("{s}: invalid option (see --help)"));
            }
            if !inline && long_values.iter().any(|l| l == n) {
                if let Some((_, v)) = args.next() {
                    let mut joined = OsString::from(format!("--{n}="));
                    joined.push(v);
                    out.push(joined);
                    continue;
                }
            }
            out.push(OsString::from(format!("--{name}")));
            continue;
        }
        // A one-letter option: attach its value.
        let c = name.chars().next().unwrap_or('-');
        if short_values.contains(&c) {
            if let Some((_, v)) = args.next() {
                if !v.is_empty() {
                    let mut joined = OsString::from(format!("-{c}"));
                    joined.push(v);
                    out.push(joined);
                    continue;
                }
                out.push(a);
                out.push(v);
                continue;
            }
        }
        out.push(a);
    }
    Ok(out)
}

/// Parses a RAM size as QEMU's `-m` does: a number with an optional suffix
/// K, M, G or T (default M).
pub fn parse_mem_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t.strip_prefix("size=").unwrap_or(t);
    let bad = || format!("invalid -m value '{s}': expected a size such as 512M or 2G");
    if t.is_empty() {
        return Err(bad());
    }
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'B' => 1,
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(bad()),
            };
            (&t[..i], m)
        }
        _ => (t, 1 << 20),
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    if !n.is_finite() || n <= 0.0 {
        return Err(format!("invalid -m value '{s}': the size must be positive"));
    }
    let bytes = n * mult as f64;
    if bytes > (1u64 << 40) as f64 {
        return Err(format!(
            "-m {s}: more than 1 TiB of guest RAM is not supported"
        ));
    }
    let bytes = bytes as u64;
    if bytes < (1 << 20) {
        return Err(format!("-m {s}: guest RAM must be at least 1 MiB"));
    }
    // Round up to a page.
    Ok((bytes + 0xfff) & !0xfff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_dash_long_options_are_rewritten() {
        let v = normalize_args(
            [
                "hx86",
                "-kernel",
                "k",
                "-m",
                "1G",
                "-s",
                "-no-reboot",
                "-d",
                "int",
            ]
            .iter()
            .map(OsString::from),
        )
        .unwrap();
        let v: Vec<_> = v.iter().map(|s| s.to_str().unwrap()).collect();
        assert_eq!(
            v,
            ["hx86", "--kernel=k", "-m1G", "-s", "--no-reboot", "-dint"]
        );
    }

    #[test]
    fn values_may_start_with_a_dash() {
        let v = normalize_args(
            [
                "hx86",
                "-append",
                "-test_a -test_b",
                "--append",
                "-x",
                "-kernel=k",
                "-M",
                "pc",
                "-S",
            ]
            .iter()
            .map(OsString::from),
        )
        .unwrap();
        let v: Vec<_> = v.iter().map(|s| s.to_str().unwrap()).collect();
        assert_eq!(
            v,
            [
                "hx86",
                "--append=-test_a -test_b",
                "--append=-x",
                "--kernel=k",
                "-Mpc",
                "-S"
            ]
        );
        let c = Cli::try_parse_from(
            normalize_args(
                ["hx86", "-append", "-a -b", "-m", "64"]
                    .iter()
                    .map(OsString::from),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(c.append.as_deref(), Some("-a -b"));
        assert_eq!(c.memory, "64");
        assert!(normalize_args(["hx86", "-frob"].iter().map(OsString::from)).is_err());
        let v = normalize_args(
            ["hx86", "-enable-kvm", "--enable-kvm"]
                .iter()
                .map(OsString::from),
        )
        .unwrap();
        assert_eq!(v[1], "--machine=accel=kvm");
        assert_eq!(v[2], "--machine=accel=kvm");
    }

    #[test]
    fn mem_sizes() {
        assert_eq!(parse_mem_size("512").unwrap(), 512 << 20);
        assert_eq!(parse_mem_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_mem_size("2G").unwrap(), 2 << 30);
        assert_eq!(parse_mem_size("2g").unwrap(), 2 << 30);
        assert_eq!(parse_mem_size("4096K").unwrap(), 4 << 20);
        assert_eq!(parse_mem_size("1.5G").unwrap(), 3 << 29);
        for bad in ["", "abc", "12X", "-5M", "0", "100K", "2T", "M"] {
            assert!(parse_mem_size(bad).is_err(), "{bad}");
        }
    }
}
