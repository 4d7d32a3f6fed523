//! A real `gdb` (batch mode) against hx86's gdb stub, under every usable
//! accelerator: breakpoints, registers across real -> protected -> long
//! mode, stepping, memory, watchpoints, Ctrl-C, detach and kill; and a raw
//! client sending malformed packets.
//!
//! The gdb tests skip, saying why, when `gdb` is not installed (CI
//! installs it). Timeouts only keep a broken run from hanging; no test
//! depends on timing.

mod common;
#[path = "gdb/linux.rs"]
mod linux;
#[path = "gdb/smp.rs"]
mod smp;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use iced_x86::code_asm::*;

/// Generous bound for anything to happen (a hung run fails, it does not
/// block CI forever).
const TIMEOUT: Duration = Duration::from_secs(180);

fn asm(bits: u32, f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<u8> {
    let mut a = CodeAssembler::new(bits).unwrap();
    f(&mut a).unwrap();
    a.assemble(0).unwrap()
}

/// Whether gdb can be run; prints why not.
fn gdb_available() -> bool {
    match Command::new("gdb").arg("--version").output() {
        Ok(o) if o.status.success() => true,
        _ => {
            eprintln!("note: skipping: gdb is not installed (CI installs it)");
            false
        }
    }
}

/// A running hx86 with its gdb server.
struct Hx {
    child: Child,
    /// `HOST:PORT` or the socket path.
    addr: String,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    out_rx: Receiver<()>,
}

impl Hx {
    /// Starts `hx86 -accel ACCEL -gdb DEV -S ARGS` and waits until it
    /// listens.
    fn start(accel: &str, dev: &str, args: &[&str]) -> Hx {
        let mut child = hx86()
            .args(["-accel", accel, "-gdb", dev, "-S"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hx86");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (out_tx, out_rx) = channel();
        let mut so = child.stdout.take().unwrap();
        let s2 = stdout.clone();
        std::thread::spawn(move || {
            let mut b = [0u8; 256];
            while let Ok(n) = so.read(&mut b) {
                if n == 0 {
                    break;
                }
                s2.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&b[..n]));
                let _ = out_tx.send(());
            }
        });
        let (tx, rx) = channel();
        let se = child.stderr.take().unwrap();
        let e2 = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(se).lines() {
                let Ok(line) = line else { break };
                e2.lock().unwrap().push_str(&format!("{line}\n"));
                if let Some(rest) = line.split("gdb: listening on ").nth(1) {
                    let where_ = rest.split(' ').next().unwrap_or("").to_string();
                    let _ = tx.send(where_);
                }
            }
        });
        let where_ = match rx.recv_timeout(TIMEOUT) {
            Ok(w) => w,
            Err(_) => {
                let _ = child.kill();
                panic!("hx86 did not start listening\n{}", stderr.lock().unwrap());
            }
        };
        let addr = where_
            .strip_prefix("tcp:")
            .or_else(|| where_.strip_prefix("unix:"))
            .unwrap_or(&where_)
            .to_string();
        Hx {
            child,
            addr,
            stdout,
            stderr,
            out_rx,
        }
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until the guest printed `what` on the serial console.
    fn wait_stdout(&self, what: &str) {
        let start = Instant::now();
        while !self.stdout().contains(what) {
            match self.out_rx.recv_timeout(Duration::from_secs(1)) {
                Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            assert!(
                start.elapsed() < TIMEOUT,
                "the guest never printed {what:?}\n{}",
                self.dump()
            );
        }
    }

    /// Waits until hx86 said `what` on stderr.
    fn wait_stderr(&self, what: &str) {
        let start = Instant::now();
        while !self.stderr().contains(what) {
            assert!(
                start.elapsed() < TIMEOUT,
                "hx86 never said {what:?}\n{}",
                self.dump()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for hx86 to exit; its status. Everything it wrote on stdout
    /// has been read by then.
    fn wait(&mut self) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                // The reader thread ends (and drops its sender) at EOF.
                while start.elapsed() < TIMEOUT {
                    match self.out_rx.recv_timeout(Duration::from_secs(1)) {
                        Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                return st.code();
            }
            if start.elapsed() > TIMEOUT {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn dump(&self) -> String {
        format!(
            "--- hx86 stdout ---\n{}\n--- hx86 stderr ---\n{}",
            self.stdout(),
            self.stderr()
        )
    }
}

impl Drop for Hx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `gdb -batch` with `script` (one command per line, each its own
/// `-ex`, so that an error does not end the script) against `hx`;
/// everything gdb printed, stdout and stderr in order.
fn gdb(hx: &Hx, script: &[&str]) -> String {
    let (child, log) = spawn_gdb(hx, script);
    finish_gdb(child, &log)
}

/// Waits for gdb (killing it after the timeout); its output.
fn finish_gdb(mut child: Child, log: &std::path::Path) -> String {
    let start = Instant::now();
    let mut killed = false;
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            killed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.wait();
    let mut out = std::fs::read_to_string(log).unwrap_or_default();
    if killed {
        out.push_str("\n[gdb killed after the timeout]\n");
    }
    out
}

static GDB_RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Starts gdb on `script`; its output goes to the returned file.
fn spawn_gdb(hx: &Hx, script: &[&str]) -> (Child, std::path::PathBuf) {
    let n = GDB_RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = scratch(&format!("gdb-run{n}"));
    let log = dir.join("gdb.out");
    let f = std::fs::File::create(&log).unwrap();
    let mut cmd = Command::new("gdb");
    cmd.args(["-nx", "-batch", "-ex"])
        .arg(format!("target remote {}", hx.addr));
    for l in script {
        cmd.arg("-ex").arg(l);
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .expect("spawn gdb");
    (child, log)
}

/// The value gdb printed for a register in `info registers` output.
fn reg(out: &str, name: &str) -> Option<u64> {
    out.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        if w.next()? != name {
            return None;
        }
        let v = w.next()?;
        u64::from_str_radix(v.strip_prefix("0x")?, 16).ok()
    })
}

/// The values of `p/x` commands (`$N = 0x...`) in gdb's output.
fn printed_hex(out: &str) -> Vec<u64> {
    out.lines()
        .filter_map(|l| l.split(" = 0x").nth(1))
        .filter_map(|v| u64::from_str_radix(v.trim(), 16).ok())
        .collect()
}

fn no_protocol_errors(out: &str, ctx: &str) {
    for bad in [
        "too long",
        "Remote failure",
        "Remote connection closed",
        "Couldn't",
        "Protocol error",
        "Ignoring packet error",
        "[gdb killed",
    ] {
        assert!(!out.contains(bad), "{ctx}: gdb said {bad:?}\n{out}");
    }
}

#[test]
fn reset_vector_registers_stepi_and_memory() {
    if !gdb_available() {
        return;
    }
    for accel in accels() {
        let mut hx = Hx::start(accel, "tcp::0", &[]);
        let out = gdb(
            &hx,
            &[
                "echo ==regs\\n",
                "info registers",
                "echo ==sys\\n",
                "info registers cr0 efer cs_base",
                "echo ==stepi\\n",
                "stepi",
                "info registers rip",
                "stepi",
                "info registers rip",
                "echo ==xi\\n",
                "monitor x/2i $pc",
                "echo ==mem\\n",
                "set {unsigned int}0x600 = 0xcafef00d",
                "x/wx 0x600",
                "set {char[4]}0x604 = \"hx8\"",
                "x/s 0x604",
                "x/wx 0x500000000",
                "echo ==monitor\\n",
                "monitor info registers",
                "monitor xp /2wx 0x600",
                "monitor info mem",
                "echo ==end\\n",
                "kill",
            ],
        );
        let ctx = format!("-accel {accel}\n{out}\n{}", hx.dump());
        no_protocol_errors(&out, &ctx);
        // Stopped at the reset vector; pc is the linear CS.base + IP.
        assert!(out.contains("0x00000000fffffff0 in ?? ()"), "{ctx}");
        let regs = &out[out.find("==regs").unwrap()..out.find("==sys").unwrap()];
        assert_eq!(reg(regs, "rip"), Some(0xffff_fff0), "{ctx}");
        assert_eq!(reg(regs, "cs"), Some(0xf000), "{ctx}");
        assert_eq!(reg(regs, "eflags"), Some(2), "{ctx}");
        for name in [
            "rax",
            "rsp",
            "r15",
            "ss",
            "fs_base",
            "gs_base",
            "k_gs_base",
            "cr3",
        ] {
            assert!(reg(regs, name).is_some(), "{name} missing\n{ctx}");
        }
        let sys = &out[out.find("==sys").unwrap()..out.find("==stepi").unwrap()];
        assert!(sys.contains("[ ET NW CD ]"), "{ctx}");
        assert_eq!(reg(sys, "cs_base"), Some(0xffff_0000), "{ctx}");
        // stepi: the reset jump, then one instruction (cli, 1 byte).
        let st = &out[out.find("==stepi").unwrap()..out.find("==xi").unwrap()];
        let rips: Vec<u64> = st
            .lines()
            .filter(|l| l.starts_with("rip"))
            .filter_map(|l| reg(l, "rip"))
            .collect();
        assert_eq!(rips, vec![0xffff_e000, 0xffff_e001], "{ctx}");
        // Instructions decoded in the CPU's mode (16-bit here).
        assert!(out.contains("(real mode code)"), "{ctx}");
        assert!(
            out.contains("(f000:e001): fc") && out.contains("cld"),
            "{ctx}"
        );
        // Memory: written, read back; unmapped is an error.
        assert!(out.contains("0x600:\t0xcafef00d"), "{ctx}");
        assert!(out.contains("0x604:\t\"hx8\""), "{ctx}");
        assert!(
            out.contains("Cannot access memory at address 0x500000000"),
            "{ctx}"
        );
        // monitor commands.
        for want in [
            "RIP=000000000000e001",
            "CS =f000 00000000ffff0000",
            "CR0=60000010",
            "EFER=0000000000000000",
            "0000000000000600: 0xcafef00d",
            "PG disabled",
        ] {
            assert!(out.contains(want), "missing {want:?}\n{ctx}");
        }
        assert!(out.contains("==end"), "{ctx}");
        // `kill` ends hx86.
        assert_eq!(hx.wait(), Some(0), "{ctx}");
        assert!(!hx.stderr().contains("panicked"), "{ctx}");
    }
}

#[test]
fn continue_through_real_protected_and_long_mode() {
    if !gdb_available() {
        return;
    }
    for accel in accels() {
        let mut hx = Hx::start(accel, "tcp::0", &[]);
        let out = gdb(
            &hx,
            &[
                // Software breakpoint in real mode, hardware breakpoints at
                // the first protected- and long-mode instructions.
                "break *0xffffe000",
                "hbreak *0xffff1000",
                "hbreak *0xffff2000",
                "continue",
                "echo ==real\\n",
                "info registers rip cs cr0 efer",
                "continue",
                "echo ==prot\\n",
                "info registers rip cs cr0 efer eflags",
                "set $eax = 0x1234",
                "p/x $eax",
                "continue",
                "echo ==long\\n",
                "info registers rip cs cr0 efer cr3",
                "x/2i $pc",
                "info registers",
                "echo ==tlb\\n",
                "monitor info mem",
                "x/gx 0x1000",
                "echo ==detach\\n",
                "delete",
                "detach",
            ],
        );
        let ctx = format!("-accel {accel}\n{out}\n{}", hx.dump());
        no_protocol_errors(&out, &ctx);
        let section = |a: &str, b: &str| &out[out.find(a).unwrap()..out.find(b).unwrap()];
        let real = section("==real", "==prot");
        assert!(out.contains("Breakpoint 1, 0x00000000ffffe000"), "{ctx}");
        assert_eq!(reg(real, "rip"), Some(0xffff_e000), "{ctx}");
        assert_eq!(reg(real, "cs"), Some(0xf000), "{ctx}");
        assert!(real.contains("[ ET NW CD ]"), "{ctx}");
        let prot = section("==prot", "==long");
        assert!(out.contains("Breakpoint 2, 0x00000000ffff1000"), "{ctx}");
        assert_eq!(reg(prot, "rip"), Some(0xffff_1000), "{ctx}");
        assert_eq!(reg(prot, "cs"), Some(0x8), "{ctx}");
        assert!(prot.contains("[ PE ET ]"), "{ctx}");
        assert!(prot.contains("= 0x1234"), "{ctx}");
        let long = section("==long", "==tlb");
        assert!(out.contains("Breakpoint 3, 0x00000000ffff2000"), "{ctx}");
        assert_eq!(reg(long, "rip"), Some(0xffff_2000), "{ctx}");
        assert_eq!(reg(long, "cs"), Some(0x18), "{ctx}");
        assert!(long.contains("[ PE ET PG ]"), "{ctx}");
        assert!(long.contains("[ LME LMA ]"), "{ctx}");
        assert_eq!(reg(long, "cr3"), Some(0x1000), "{ctx}");
        // gdb's own disassembler works in long mode.
        assert!(
            long.contains("=> 0xffff2000:\tmov    $0xffff0080,%esi"),
            "{ctx}"
        );
        // The page tables: identity-mapped 4 GiB.
        assert!(
            out.contains("0000000000000000-0000000100000000 0000000100000000 -rw"),
            "{ctx}"
        );
        assert!(out.contains("0x1000:\t0x0000000000002023"), "{ctx}");
        // Detached: the guest runs on to its end (prime count, power-off).
        assert_eq!(hx.wait(), Some(0), "{ctx}");
        assert!(hx.stdout().contains("primes below 100000: 9592"), "{ctx}");
        assert!(hx.stderr().contains("debugger detached"), "{ctx}");
    }
}

#[test]
fn write_watchpoint_reports_old_and_new_value() {
    if !gdb_available() {
        return;
    }
    for accel in accels() {
        let mut hx = Hx::start(accel, "tcp::0", &[]);
        let out = gdb(
            &hx,
            &[
                "hbreak *0xffff1000",
                "continue",
                "delete",
                // The PML4's first entry, written by the protected-mode code.
                "watch *(unsigned int *)0x1000",
                "continue",
                "echo ==hit\\n",
                "info registers rip",
                "delete",
                // A read watchpoint on the string the long-mode code prints.
                "hbreak *0xffff2000",
                "continue",
                "delete",
                "rwatch *(char *)0xffff0080",
                "continue",
                "echo ==reset\\n",
                "delete",
                "monitor system_reset",
                "maintenance flush register-cache",
                "info registers rip cs",
                "echo ==end\\n",
                "monitor quit",
            ],
        );
        let ctx = format!("-accel {accel}\n{out}\n{}", hx.dump());
        // (`monitor quit` closes the connection under gdb's feet: checked
        // up to there.)
        no_protocol_errors(&out[..out.find("==end").unwrap_or(out.len())], &ctx);
        assert!(
            out.contains("Hardware watchpoint 2: *(unsigned int *)0x1000"),
            "{ctx}"
        );
        assert!(out.contains("Old value = 0\nNew value = 8195"), "{ctx}");
        let hit = &out[out.find("==hit").unwrap()..];
        let rip = reg(hit, "rip").unwrap();
        assert!((0xffff_1000..0xffff_2000).contains(&rip), "{ctx}");
        assert!(
            out.contains("Hardware read watchpoint 4: *(char *)0xffff0080\n\nValue = 104 'h'"),
            "{ctx}"
        );
        // monitor system_reset puts the CPU back at the reset vector.
        let reset = &out[out.find("==reset").unwrap()..];
        assert_eq!(reg(reset, "rip"), Some(0xffff_fff0), "{ctx}");
        assert_eq!(reg(reset, "cs"), Some(0xf000), "{ctx}");
        assert!(out.contains("==end"), "{ctx}");
        // monitor quit ends hx86.
        assert_eq!(hx.wait(), Some(0), "{ctx}");
    }
}

/// A ROM that counts its boots in RAM at 0x500, resets the machine
/// through the i8042 on the first boot and exits with 0x21 (status 0x43)
/// on the second; its reset vector jumps to IP 0.
fn rebooting_rom() -> Vec<u8> {
    let code = asm(16, |a| {
        a.xor(ax, ax)?;
        a.mov(ds, ax)?;
        a.inc(word_ptr(0x500))?;
        a.cmp(word_ptr(0x500), 2)?;
        let mut done = a.create_label();
        a.jae(done)?;
        a.mov(al, 0xfeu32)?;
        a.out(0x64, al)?;
        a.hlt()?;
        a.set_label(&mut done)?;
        a.mov(al, 0x21u32)?;
        a.out(0xf4, al)?;
        a.hlt()
    });
    bios_rom(&code, 0x10000)
}

#[test]
fn breakpoint_at_the_reset_vector_is_hit_after_a_reset() {
    if !gdb_available() {
        return;
    }
    let d = scratch("gdb-reset");
    let image = rebooting_rom();
    let rom = write(&d, "reboot.rom", &image);
    // The `out 0xf4, al` instruction (the ROM's code starts at 0xffff0000).
    let out_offset = image
        .windows(2)
        .position(|w| w == [0xe6, 0xf4])
        .expect("the exit instruction") as u64;
    for accel in accels() {
        let mut hx = Hx::start(accel, "tcp::0", &["-bios", &rom]);
        let out = gdb(
            &hx,
            &[
                "break *0xfffffff0",
                "continue",
                "echo ==hit\\n",
                "info registers rip cs",
                "x/hx 0x500",
                // Straight to the exit port with another status: writes
                // of rip (linear, in real mode) and rax take effect.
                &format!("set $pc = {:#x}", 0xffff_0000u64 + out_offset),
                "set $rax = 0x30",
                "info registers rip",
                "delete",
                "continue",
            ],
        );
        let ctx = format!("-accel {accel}\n{out}\n{}", hx.dump());
        no_protocol_errors(&out, &ctx);
        // Continuing from the reset vector runs the ROM once; its reset
        // brings the CPU back to the breakpoint.
        assert!(out.contains("Breakpoint 1, 0x00000000fffffff0"), "{ctx}");
        let hit = &out[out.find("==hit").unwrap()..];
        assert_eq!(reg(hit, "rip"), Some(0xffff_fff0), "{ctx}");
        assert_eq!(reg(hit, "cs"), Some(0xf000), "{ctx}");
        assert!(hit.contains("0x500:\t0x0001"), "{ctx}");
        assert!(
            out.contains(&format!(
                "rip            {:#x}",
                0xffff_0000u64 + out_offset
            )),
            "{ctx}"
        );
        // The guest's exit status, (0x30 << 1) | 1, reaches gdb (in octal)
        // and hx86.
        assert!(out.contains("exited with code 0141"), "{ctx}");
        assert_eq!(hx.wait(), Some(0x61), "{ctx}");
    }
}

/// A ROM that prints "R" and then spins forever.
fn spinning_rom() -> Vec<u8> {
    let code = asm(16, |a| {
        a.mov(dx, 0x3f8u32)?;
        a.mov(al, b'R' as u32)?;
        a.out(dx, al)?;
        let mut lp = a.create_label();
        a.set_label(&mut lp)?;
        a.inc(cx)?;
        a.jmp(lp)
    });
    bios_rom(&code, 0x10000)
}

/// Starts hx86 on the spinning ROM with gdb running `script`; once the
/// guest printed (and `settle_ms` later) gdb gets a SIGINT as from Ctrl-C
/// on its terminal and sends the interrupt to hx86. Returns hx86, gdb's
/// output and a context for assertions (protocol errors already checked).
fn interrupt_spinning(
    accel: &str,
    rom: &str,
    script: &[&str],
    settle_ms: u64,
) -> (Hx, String, String) {
    let hx = Hx::start(accel, "tcp::0", &["-bios", rom]);
    let (g, log) = spawn_gdb(&hx, script);
    hx.wait_stdout("R");
    std::thread::sleep(std::time::Duration::from_millis(settle_ms));
    // SAFETY: kill(2) on the pid of a child we spawned and still own.
    unsafe {
        libc::kill(g.id() as i32, libc::SIGINT);
    }
    let out = finish_gdb(g, &log);
    let ctx = format!("-accel {accel}\n{out}\n{}", hx.dump());
    no_protocol_errors(&out, &ctx);
    (hx, out, ctx)
}

/// An INT3 breakpoint (the debug registers are all taken) in a loop the
/// DBT has run long enough to translate and link: planting the INT3 drops
/// the translations of that byte, so the breakpoint is hit.
#[test]
fn int3_breakpoint_in_translated_loop() {
    if !gdb_available() {
        return;
    }
    let d = scratch("gdb-int3loop");
    let rom = write(&d, "spin.rom", &spinning_rom());
    for accel in accels() {
        let script = [
            "continue",
            "echo ==stopped\\n",
            "hbreak *0x1",
            "hbreak *0x2",
            "hbreak *0x3",
            "hbreak *0x4",
            // The `jmp` back to `inc cx` (ROM offset 7).
            "break *0xffff0007",
            "continue",
            "info registers rip",
            "delete",
            "kill",
        ];
        let (mut hx, out, ctx) = interrupt_spinning(accel, &rom, &script, 300);
        let st = &out[out.find("==stopped").unwrap()..];
        if hx.stderr().contains("cannot stop on INT3 here") {
            assert!(st.contains("Cannot insert breakpoint 5"), "{ctx}");
        } else {
            assert!(st.contains("Breakpoint 5, 0x00000000ffff0007"), "{ctx}");
            let rips: Vec<u64> = st.lines().filter_map(|l| reg(l, "rip")).collect();
            assert_eq!(rips, vec![0xffff_0007], "{ctx}");
        }
        assert_eq!(hx.wait(), Some(0), "{ctx}");
    }
}

#[test]
fn ctrl_c_interrupts_a_running_guest() {
    if !gdb_available() {
        return;
    }
    let d = scratch("gdb-ctrlc");
    let rom = write(&d, "spin.rom", &spinning_rom());
    for accel in accels() {
        let script = [
            "continue",
            "echo ==stopped\\n",
            "info registers rip",
            "stepi",
            "info registers rip",
            "kill",
        ];
        let (mut hx, out, ctx) = interrupt_spinning(accel, &rom, &script, 0);
        assert!(out.contains("Program received signal SIGINT"), "{ctx}");
        let st = &out[out.find("==stopped").unwrap()..];
        let rips: Vec<u64> = st.lines().filter_map(|l| reg(l, "rip")).collect();
        assert_eq!(rips.len(), 2, "{ctx}");
        // Inside the loop (ROM code at 0xffff0000).
        assert!((0xffff_0000..0xffff_0010).contains(&rips[0]), "{ctx}");
        assert_ne!(rips[0], rips[1], "stepi moved\n{ctx}");
        assert_eq!(hx.wait(), Some(0), "{ctx}");
    }
}

// --- the protocol without gdb ---------------------------------------------

/// A raw remote-protocol client.
struct Raw {
    s: Box<dyn ReadWrite>,
    buf: Vec<u8>,
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn checksum(body: &[u8]) -> u8 {
    body.iter().fold(0u8, |a, b| a.wrapping_add(*b))
}

impl Raw {
    fn connect(addr: &str) -> Raw {
        let s: Box<dyn ReadWrite> = if addr.starts_with('/') {
            let s = std::os::unix::net::UnixStream::connect(addr).unwrap();
            s.set_read_timeout(Some(TIMEOUT)).unwrap();
            Box::new(s)
        } else {
            let s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(TIMEOUT)).unwrap();
            Box::new(s)
        };
        Raw { s, buf: Vec::new() }
    }

    fn send_raw(&mut self, b: &[u8]) {
        self.s.write_all(b).unwrap();
    }

    fn send(&mut self, body: &str) {
        let p = format!("${body}#{:02x}", checksum(body.as_bytes()));
        self.send_raw(p.as_bytes());
    }

    fn byte(&mut self) -> Option<u8> {
        if self.buf.is_empty() {
            let mut b = [0u8; 4096];
            let n = self.s.read(&mut b).ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&b[..n]);
        }
        Some(self.buf.remove(0))
    }

    /// The next packet's body (acks skipped; checksum verified); `None` at
    /// end of stream.
    fn packet(&mut self) -> Option<String> {
        loop {
            match self.byte()? {
                b'$' => break,
                b'+' => continue,
                other => panic!("unexpected byte {other:#x} outside a packet"),
            }
        }
        let mut body = Vec::new();
        loop {
            match self.byte()? {
                b'#' => break,
                b => body.push(b),
            }
        }
        let c = [self.byte()?, self.byte()?];
        let want = u8::from_str_radix(std::str::from_utf8(&c).unwrap(), 16).unwrap();
        assert_eq!(checksum(&body), want, "bad checksum from the stub");
        // The peer may have closed already (a refused connection).
        let _ = self.s.write_all(b"+");
        // Run-length decoding: `X*n` is X repeated n - 29 more times.
        let mut out = Vec::new();
        let mut i = 0;
        while i < body.len() {
            if body[i] == b'*' && i + 1 < body.len() && !out.is_empty() {
                let last = *out.last().unwrap();
                for _ in 0..(body[i + 1] as usize).saturating_sub(29) {
                    out.push(last);
                }
                i += 2;
            } else {
                out.push(body[i]);
                i += 1;
            }
        }
        Some(String::from_utf8_lossy(&out).into_owned())
    }

    /// Sends a command, returns the reply.
    fn ask(&mut self, body: &str) -> String {
        self.send(body);
        self.packet().expect("a reply")
    }
}

#[test]
fn malformed_packets_get_errors_and_the_stub_survives() {
    let d = scratch("gdb-raw");
    let sock = d.join("gdb.sock");
    let dev = format!("unix:{}", sock.display());
    let rom = write(&d, "spin.rom", &spinning_rom());
    for accel in accels() {
        let mut hx = Hx::start(accel, &dev, &["-bios", &rom]);
        let ctx = |hx: &Hx| format!("-accel {accel}\n{}", hx.dump());
        let mut c = Raw::connect(&hx.addr);
        assert!(c
            .ask("qSupported:multiprocess+;swbreak+")
            .contains("PacketSize"));
        let g = c.ask("g");
        assert_eq!(g.len(), 2 * x86::gdb::g_size(), "{}", ctx(&hx));
        // Bad checksum: NAK, nothing executed.
        c.send_raw(b"$g#00");
        assert_eq!(c.byte(), Some(b'-'));
        // Malformed arguments of known commands: errors, not a crash.
        for bad in [
            "mzz,10",
            "m",
            "m0",
            "Mffff,2:zz",
            "M0,99999999:00",
            "p99999",
            "P10=12",
            "Pzz=00",
            "Z0,zz,1",
            "Z9,0,1",
            "z1",
            "G00",
            "H",
            "qXfer:features:read:nosuch.xml:0,100",
            "qXfer:features:read:target.xml:zz",
            "vCont;q",
            "X0,4:abcd",
            "qRcmd,zz",
            "T",
            // Hostile sizes and addresses.
            "Z2,fffffffffffffffe,10",
            "Z2,1000,ffffffffff",
            "Z3,ffffffffffffffff,8",
            "Z0,ffffffffffff0000,1",
            "mffffffffffff0000,ffffffffffffffff",
            "qXfer:features:read:target.xml:ffffffffffff,10",
            "p4a",
            "P4a=0000000000000000",
        ] {
            let r = c.ask(bad);
            assert!(
                r.is_empty() || r.starts_with('E') || r == "OK" || r.starts_with('l'),
                "{bad:?} -> {r:?}\n{}",
                ctx(&hx)
            );
        }
        // Huge reads are cut to what fits; an endless monitor command
        // gets an answer.
        assert!(!c.ask("m0,ffffffff").is_empty());
        assert!(c
            .ask(&format!("qRcmd,{}", "69".repeat(3000)))
            .starts_with('O'));
        // Console output packets, then OK.
        while c.packet().unwrap() != "OK" {}
        // Unknown packets: the empty reply.
        assert_eq!(c.ask("vFrobnicate"), "");
        // Line noise between packets is ignored; a NAK resends.
        c.send_raw(b"noise\xff\x00");
        let stop = c.ask("?");
        assert!(stop.starts_with('T'), "{stop:?}");
        c.send_raw(b"-");
        assert_eq!(c.packet().unwrap(), stop);
        // An oversized packet.
        let big = "X".repeat(70_000);
        assert!(c.ask(&big).starts_with('E'));
        // Reading unmapped memory is an error reply, not garbage.
        assert!(c.ask("m500000000,4").starts_with('E'));
        // (The binary write `X0,4:abcd` above went through.)
        assert_eq!(c.ask("m0,4"), "61626364");
        // Still fully working: a register read of the right size.
        assert_eq!(c.ask("g").len(), 2 * x86::gdb::g_size());
        // A second client is refused while this one is attached.
        let mut second = Raw::connect(&hx.addr);
        assert_eq!(second.packet().as_deref(), Some("E01"));
        assert_eq!(second.byte(), None, "the refused connection is closed");
        // Disconnect in the middle of a packet: the guest runs on and a
        // new client can attach (it stops the guest again).
        c.send_raw(b"$m0,");
        drop(c);
        hx.wait_stderr("debugger detached");
        let mut c = Raw::connect(&hx.addr);
        let r = c.ask("qSupported:swbreak+");
        assert!(r.contains("PacketSize"), "{r:?}\n{}", ctx(&hx));
        let stop = c.ask("?");
        assert!(stop.starts_with('T') || stop.starts_with('S'), "{stop:?}");
        // Ctrl-C while running, then kill.
        c.send("c");
        c.send_raw(&[0x03]);
        let r = c.packet().unwrap();
        assert!(
            r.starts_with("T02") || r.starts_with("S02"),
            "{r:?}\n{}",
            ctx(&hx)
        );
        c.send("k");
        let status = hx.wait();
        let ctx = ctx(&hx);
        assert!(status.is_some(), "hx86 did not exit on kill\n{ctx}");
        assert!(!ctx.contains("panicked"), "{ctx}");
    }
}

/// A ROM that installs its own #BP handler (F000:0100, which adds 1 to
/// BL), executes two INT3s and exits with BL: status (2 << 1) | 1 = 5.
fn int3_rom() -> Vec<u8> {
    let mut code = asm(16, |a| {
        a.xor(ax, ax)?;
        a.mov(ds, ax)?;
        a.xor(bx, bx)?;
        a.mov(word_ptr(3 * 4), 0x100)?;
        a.mov(word_ptr(3 * 4 + 2), 0xf000)?;
        a.int3()?;
        a.int3()?;
        a.mov(al, bl)?;
        a.out(0xf4, al)?;
        a.hlt()
    });
    assert!(code.len() <= 0x100);
    code.resize(0x100, 0x90);
    code.extend(asm(16, |a| {
        a.inc(bl)?;
        a.iret()
    }));
    bios_rom(&code, 0x10000)
}

#[test]
fn the_guest_keeps_its_int3_without_a_debugger_and_after_detach() {
    let d = scratch("gdb-int3");
    let rom = write(&d, "int3.rom", &int3_rom());
    for accel in accels() {
        // Listening, nobody attached.
        let o = run(&["-accel", accel, "-gdb", "tcp::0", "-bios", &rom]);
        assert_eq!(o.status, Some(5), "-accel {accel}\n{}", o.dump());
        // Attached with a breakpoint set, then detached: the guest's INT3s
        // go to its own handler again.
        if !gdb_available() {
            continue;
        }
        let mut hx = Hx::start(accel, "tcp::0", &["-bios", &rom]);
        let out = gdb(&hx, &["break *0xffff0000", "continue", "detach"]);
        let ctx = format!("-accel {accel}\n{out}\n{}", hx.dump());
        no_protocol_errors(&out, &ctx);
        assert!(out.contains("Breakpoint 1, 0x00000000ffff0000"), "{ctx}");
        assert_eq!(hx.wait(), Some(5), "{ctx}");
    }
}

/// A ROM with its own #BP handler (F000:0100, adds 1 to BL) that runs a
/// 65536-round loop of `nop` (at the returned offset) without any INT3
/// and exits with BL: status 1 when the guest never took a #BP.
fn nop_loop_rom() -> (Vec<u8>, u64) {
    let head = asm(16, |a| {
        a.xor(ax, ax)?;
        a.mov(ds, ax)?;
        a.xor(bx, bx)?;
        a.xor(cx, cx)?;
        a.mov(word_ptr(3 * 4), 0x100)?;
        a.mov(word_ptr(3 * 4 + 2), 0xf000)
    });
    let at = head.len() as u64;
    let mut code = head;
    code.extend(asm(16, |a| {
        let mut lp = a.create_label();
        a.set_label(&mut lp)?;
        a.nop()?;
        a.loop_(lp)?;
        a.mov(al, bl)?;
        a.out(0xf4, al)?;
        a.hlt()
    }));
    assert!(code.len() <= 0x100);
    code.resize(0x100, 0x90);
    code.extend(asm(16, |a| {
        a.inc(bl)?;
        a.iret()
    }));
    (bios_rom(&code, 0x10000), at)
}

/// gdb's INT3 in a loop, hit, then removed at detach: the guest runs on
/// the restored byte, not on a translation that still holds the INT3
/// (which would go to the guest's own #BP handler).
#[test]
fn no_int3_left_in_translated_code_after_detach() {
    if !gdb_available() {
        return;
    }
    let d = scratch("gdb-int3-detach");
    let (rom, at) = nop_loop_rom();
    let rom = write(&d, "nop.rom", &rom);
    for accel in accels() {
        let mut hx = Hx::start(accel, "tcp::0", &["-bios", &rom]);
        let brk = format!("break *{:#x}", 0xffff_0000 + at);
        let out = gdb(
            &hx,
            &[
                "hbreak *0x1",
                "hbreak *0x2",
                "hbreak *0x3",
                "hbreak *0x4",
                brk.as_str(),
                "continue",
                "continue",
                "delete",
                "detach",
            ],
        );
        let ctx = format!("-accel {accel}\n{out}\n{}", hx.dump());
        if !hx.stderr().contains("cannot stop on INT3 here") {
            no_protocol_errors(&out, &ctx);
            assert!(
                out.contains(&format!("Breakpoint 5, 0x{:016x}", 0xffff_0000 + at)),
                "{ctx}"
            );
        }
        assert_eq!(hx.wait(), Some(1), "{ctx}");
    }
}

/// A ROM that points vector 0x40 at F000:0200 and executes `int 0x40`;
/// the handler exits with 0x21 (status 0x43). Returns the image and the
/// offset of the INT instruction.
fn soft_int_rom() -> (Vec<u8>, u64) {
    let head = asm(16, |a| {
        a.xor(ax, ax)?;
        a.mov(ds, ax)?;
        a.mov(word_ptr(0x40 * 4), 0x200)?;
        a.mov(word_ptr(0x40 * 4 + 2), 0xf000)
    });
    let at = head.len() as u64;
    let mut code = head;
    code.extend(asm(16, |a| {
        a.int(0x40)?;
        a.hlt()
    }));
    code.resize(0x200, 0xf4);
    code.extend(asm(16, |a| {
        a.mov(al, 0x21u32)?;
        a.out(0xf4, al)?;
        a.hlt()
    }));
    (bios_rom(&code, 0x10000), at)
}

#[test]
fn stepi_enters_an_interrupt_handler() {
    if !gdb_available() {
        return;
    }
    let d = scratch("gdb-softint");
    let (image, at) = soft_int_rom();
    let rom = write(&d, "int.rom", &image);
    for accel in accels() {
        let mut hx = Hx::start(accel, "tcp::0", &["-bios", &rom]);
        let out = gdb(
            &hx,
            &[
                &format!("hbreak *{:#x}", 0xffff_0000u64 + at),
                "continue",
                "delete",
                "stepi",
                "echo ==handler\\n",
                "info registers rip cs",
                "monitor x/1i $pc",
                "continue",
            ],
        );
        let ctx = format!("-accel {accel}\n{out}\n{}", hx.dump());
        no_protocol_errors(&out, &ctx);
        // One step: the INT, which lands on the handler's first
        // instruction (linear F0000 + 0200, in the ROM's low alias).
        let h = &out[out.find("==handler").unwrap()..];
        assert_eq!(reg(h, "rip"), Some(0xf_0200), "{ctx}");
        assert_eq!(reg(h, "cs"), Some(0xf000), "{ctx}");
        assert!(h.contains("mov al,21h"), "{ctx}");
        assert_eq!(hx.wait(), Some(0x43), "{ctx}");
    }
}

#[test]
fn more_breakpoints_than_debug_registers() {
    if !gdb_available() {
        return;
    }
    let addrs = [
        0xffff_e000u64,
        0xffff_e001,
        0xffff_1000,
        0xffff_1004,
        0xffff_2000,
        0xffff_2005,
    ];
    for accel in accels() {
        let mut hx = Hx::start(accel, "tcp::0", &[]);
        let mut script: Vec<String> = addrs.iter().map(|a| format!("break *{a:#x}")).collect();
        for _ in 0..addrs.len() {
            script.push("continue".into());
        }
        script.push("kill".into());
        let script: Vec<&str> = script.iter().map(String::as_str).collect();
        let out = gdb(&hx, &script);
        let ctx = format!("-accel {accel}\n{out}\n{}", hx.dump());
        if hx.stderr().contains("cannot stop on INT3 here") {
            // Four debug registers, and no INT3 to fall back on: gdb is
            // told, the guest is not harmed.
            assert!(out.contains("Cannot insert breakpoint"), "{ctx}");
        } else {
            no_protocol_errors(&out, &ctx);
            // The first four sit in debug registers, the others are INT3s.
            for (i, a) in addrs.iter().enumerate() {
                let want = format!("Breakpoint {}, 0x{a:016x}", i + 1);
                assert!(out.contains(&want), "missing {want:?}\n{ctx}");
            }
        }
        assert_eq!(hx.wait(), Some(0), "{ctx}");
    }
}

/// A breakpoint set while the guest loops in code the JIT has translated
/// (and chained to itself) takes effect, and every `continue` stops there
/// again after exactly one more iteration.
#[test]
fn breakpoint_in_translated_loop() {
    if !gdb_available() {
        return;
    }
    let d = scratch("gdb-jitloop");
    let rom = write(&d, "spin.rom", &spinning_rom());
    for accel in accels() {
        let script = [
            "continue",
            "echo ==stopped\\n",
            // The `jmp` back to `inc cx` (ROM offset 7).
            "break *0xffff0007",
            "continue",
            "info registers rip rcx",
            "continue",
            "info registers rip rcx",
            "delete",
            "kill",
        ];
        // Let the loop run long enough to be translated and linked.
        let (mut hx, out, ctx) = interrupt_spinning(accel, &rom, &script, 300);
        let st = &out[out.find("==stopped").unwrap()..];
        let rips: Vec<u64> = st.lines().filter_map(|l| reg(l, "rip")).collect();
        let rcxs: Vec<u64> = st.lines().filter_map(|l| reg(l, "rcx")).collect();
        assert_eq!(rips, vec![0xffff_0007, 0xffff_0007], "{ctx}");
        assert_eq!(rcxs.len(), 2, "{ctx}");
        assert_eq!(rcxs[1].wrapping_sub(rcxs[0]) & 0xffff, 1, "{ctx}");
        assert_eq!(hx.wait(), Some(0), "{ctx}");
    }
}
