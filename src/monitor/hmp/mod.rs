//! HMP, the human monitor: one command interpreter ([`execute`]) behind
//! `-monitor DEV`, `-serial mon:stdio` (Ctrl-A c), QMP's
//! `human-monitor-command` and the gdb stub's `monitor` command. Each of
//! them supplies an [`HmpTarget`]: how to read the CPU state and memory,
//! and what reset and quit mean there.

pub mod cpuinfo;

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use vm_memory::{GuestMemoryMmap, GuestMemoryRegion};
use x86::CpuState;

use crate::chardev::backend::{Frontend, Output};
use crate::control::{Cause, Control, RunState};

/// What a monitor command acts on.
pub trait HmpTarget {
    /// The state of the monitor's current CPU.
    fn cpu_state(&mut self) -> Result<CpuState, String>;
    fn mem(&self) -> &GuestMemoryMmap;
    /// The machine's control (run state, requests).
    fn control(&self) -> &Arc<Control>;
    /// Reads memory at a linear address with `st`'s paging; returns how
    /// many bytes could be read.
    fn read_linear(&mut self, st: &CpuState, lin: u64, data: &mut [u8]) -> usize {
        read_linear(st, self.mem(), lin, data)
    }
    /// `system_reset`; returns the message to show.
    fn system_reset(&mut self) -> String {
        match self.control().system_reset() {
            Ok(()) => String::new(),
            Err(e) => format!("Error: {e}"),
        }
    }
    /// `quit`.
    fn quit(&mut self) -> String {
        self.control().quit(0, Cause::HostQmpQuit);
        String::new()
    }
    /// `stop` and `cont` (the gdb stub refuses them: the debugger runs
    /// the CPU there).
    fn run_control(&mut self, run: bool) -> String {
        let c = self.control();
        if run {
            match c.cont() {
                Ok(()) => String::new(),
                Err(e) => format!("Error: {e}"),
            }
        } else {
            c.stop();
            String::new()
        }
    }
}

/// Linear-address reads through the guest's page tables, page by page.
pub fn read_linear(st: &CpuState, mem: &GuestMemoryMmap, lin: u64, data: &mut [u8]) -> usize {
    let mut done = 0;
    while done < data.len() {
        let a = lin.wrapping_add(done as u64);
        let n = (0x1000 - (a & 0xfff) as usize).min(data.len() - done);
        let Some(p) = crate::gdb::mem::translate(st, mem, a) else {
            break;
        };
        if !crate::gdb::mem::read_phys(mem, p, &mut data[done..done + n]) {
            break;
        }
        done += n;
    }
    done
}

const HELP: &str = "\
cont|c                      resume emulation
gva2gpa ADDR                print the guest physical address of a guest virtual one
help|? [CMD]                this text
info status                 the run state
info registers              the CPU registers, including the system ones
info cpus                   the CPUs and their host threads
info mem                    the active virtual memory mappings, merged
info tlb                    every page mapping (virtual: physical flags)
info mtree                  the guest physical memory map
info pci                    the PCI functions (ids, class, IRQ, BARs)
info version                the version of hx86 and of QEMU's interface
quit|q                      quit the emulator
stop|s                      stop emulation
system_powerdown            send the ACPI power button event
system_reset                reset the machine
x /FMT ADDR                 memory at a virtual address; FMT: count, format
                            (x, d, u, o, c, or i: instructions in the CPU's
                            current mode) and size (b, h, w, g); ADDR may be $pc
xp /FMT ADDR                the same at a physical address";

/// Runs one command line and returns its output (lines ending in `\n`,
/// empty when the command prints nothing).
pub fn execute(t: &mut dyn HmpTarget, line: &str) -> String {
    let text = line.trim();
    let mut words: Vec<&str> = text.split_whitespace().collect();
    // `x/4xw ADDR` as one word: split the format off.
    if let Some(first) = words.first().copied() {
        if let Some((cmd, _)) = first.split_once('/') {
            if cmd == "x" || cmd == "xp" {
                words[0] = cmd;
                words.insert(1, &first[cmd.len()..]);
            }
        }
    }
    let state = |t: &mut dyn HmpTarget, f: &dyn Fn(&CpuState, &GuestMemoryMmap) -> String| match t
        .cpu_state()
    {
        Ok(s) => f(&s, t.mem()),
        Err(e) => format!("Error: {e}"),
    };
    let mut out = match words.as_slice() {
        [] => String::new(),
        ["help"] | ["?"] | ["help", ..] | ["?", ..] => HELP.to_string(),
        ["info"] => {
            "info: which item? (status, registers, cpus, mem, tlb, mtree, pci, version)".into()
        }
        ["info", "registers"] | ["info", "reg"] | ["info", "r"] => {
            state(t, &|s, _| cpuinfo::info_registers(s))
        }
        ["info", "mem"] => state(t, &cpuinfo::info_mem),
        ["info", "tlb"] => state(t, &cpuinfo::info_tlb),
        ["info", "status"] => info_status(t.control()),
        ["info", "cpus"] => {
            let mut o = String::new();
            for (i, tid) in t.control().vcpus() {
                let _ = writeln!(o, "* CPU #{i}: thread_id={tid}");
            }
            o
        }
        ["info", "mtree"] => info_mtree(t.mem()),
        ["info", "pci"] => t
            .control()
            .pci_info()
            .unwrap_or_else(|| "Error: no PCI bus".into()),
        ["info", "version"] => {
            let (a, b, c) = super::qmp::QEMU_VERSION;
            format!("{a}.{b}.{c} (hx86 {})", env!("CARGO_PKG_VERSION"))
        }
        ["info", other, ..] => format!("info: unknown item '{other}' (try help)"),
        ["xp", rest @ ..] => cpuinfo::examine(t, rest, true),
        ["x", rest @ ..] => cpuinfo::examine(t, rest, false),
        ["gva2gpa", addr] => match t.cpu_state() {
            Err(e) => format!("Error: {e}"),
            Ok(s) => match cpuinfo::parse_num(addr) {
                None => format!("gva2gpa: '{addr}' is not an address"),
                Some(a) => match crate::gdb::mem::translate(&s, t.mem(), a) {
                    Some(p) => format!("gpa: {p:#x}"),
                    None => "Unmapped".to_string(),
                },
            },
        },
        ["gva2gpa", ..] => "usage: gva2gpa ADDR".into(),
        ["system_reset"] => t.system_reset(),
        ["system_powerdown"] => match t.control().system_powerdown() {
            Ok(()) => String::new(),
            Err(e) => format!("Error: {e}"),
        },
        ["stop"] | ["s"] => t.run_control(false),
        ["cont"] | ["c"] => t.run_control(true),
        ["quit"] | ["q"] => t.quit(),
        [cmd, ..] => format!("unknown command: '{cmd}' (try help)"),
    };
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

fn info_status(c: &Control) -> String {
    let s = c.state();
    match s {
        RunState::Running => "VM status: running".into(),
        RunState::Paused => "VM status: paused".into(),
        other => format!("VM status: paused ({})", other.as_str()),
    }
}

/// The guest-physical memory map: RAM and ROM regions, the MMIO holes.
fn info_mtree(mem: &GuestMemoryMmap) -> String {
    use vm_memory::GuestMemory;
    let mut o = String::from("address-space: memory\n");
    let _ = writeln!(
        o,
        "  0000000000000000-ffffffffffffffff (prio 0, i/o): system"
    );
    for r in mem.iter() {
        let start = r.start_addr().0;
        let end = start + r.len() - 1;
        // The BIOS ROM ends at 4 GiB, its alias at 1 MiB.
        let kind = if end == 0xffff_ffff || end == 0xf_ffff {
            "rom"
        } else {
            "ram"
        };
        let _ = writeln!(o, "    {start:016x}-{end:016x} (prio 0, {kind}): pc.{kind}");
    }
    for (name, base, len) in [
        ("ioapic", 0xfec0_0000u64, 0x1000u64),
        ("apic-msi", 0xfee0_0000, 0x1000),
    ] {
        let _ = writeln!(
            o,
            "    {base:016x}-{:016x} (prio 1, i/o): {name}",
            base + len - 1
        );
    }
    o.push_str("\naddress-space: I/O\n  0000000000000000-000000000000ffff (prio 0, i/o): io\n");
    o
}

/// A readline monitor on a chardev: a line editor, QEMU's banner and
/// `(qemu) ` prompt.
pub struct Readline<T: HmpTarget + Send> {
    target: Mutex<T>,
    out: Arc<Output>,
    /// On a mux the monitor speaks only once it has the focus.
    mux: bool,
    line: Mutex<LineState>,
}

#[derive(Default)]
struct LineState {
    buf: String,
    /// Inside an escape sequence (arrow keys...), which is ignored.
    esc: u8,
    greeted: bool,
    /// The last byte was a CR (so a following LF is not a second Enter).
    cr: bool,
}

const PROMPT: &str = "(qemu) ";

impl<T: HmpTarget + Send> Readline<T> {
    pub fn new(target: T, out: Arc<Output>, mux: bool) -> Arc<Self> {
        Arc::new(Readline {
            target: Mutex::new(target),
            out,
            mux,
            line: Mutex::new(LineState::default()),
        })
    }

    fn say(&self, s: &str) {
        self.out.write(s.replace('\n', "\r\n").as_bytes());
    }

    fn greet(&self, st: &mut LineState) {
        if !st.greeted {
            let (a, b, c) = super::qmp::QEMU_VERSION;
            self.say(&format!(
                "QEMU {a}.{b}.{c} monitor (hx86 {}) - type 'help' for more information\n",
                env!("CARGO_PKG_VERSION")
            ));
            st.greeted = true;
        }
        self.say(PROMPT);
    }
}

impl<T: HmpTarget + Send> Frontend for Readline<T> {
    fn open(&self) {
        let mut st = self.line.lock().unwrap_or_else(|e| e.into_inner());
        *st = LineState::default();
        if !self.mux {
            self.greet(&mut st);
        }
    }

    fn focus(&self) {
        let mut st = self.line.lock().unwrap_or_else(|e| e.into_inner());
        self.say("\n");
        self.greet(&mut st);
    }

    fn input(&self, data: &[u8]) {
        let mut st = self.line.lock().unwrap_or_else(|e| e.into_inner());
        for &b in data {
            if st.esc > 0 {
                // ESC [ ... final byte: dropped.
                st.esc = if st.esc == 1 && b == b'[' || (0x20..0x40).contains(&b) {
                    2
                } else {
                    0
                };
                continue;
            }
            let was_cr = std::mem::replace(&mut st.cr, b == b'\r');
            match b {
                0x1b => st.esc = 1,
                b'\n' if was_cr => {}
                b'\r' | b'\n' => {
                    self.say("\n");
                    let line = std::mem::take(&mut st.buf);
                    let reply = {
                        let mut t = self.target.lock().unwrap_or_else(|e| e.into_inner());
                        execute(&mut *t, &line)
                    };
                    self.say(&reply);
                    self.say(PROMPT);
                }
                0x7f | 0x08 if st.buf.pop().is_some() => self.say("\x08 \x08"),
                0x20..=0x7e if st.buf.len() < 4096 => {
                    st.buf.push(b as char);
                    self.out.write(&[b]);
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct T {
        ctl: Arc<Control>,
        mem: GuestMemoryMmap,
    }
    impl HmpTarget for T {
        fn cpu_state(&mut self) -> Result<CpuState, String> {
            Ok(CpuState::reset())
        }
        fn mem(&self) -> &GuestMemoryMmap {
            &self.mem
        }
        fn control(&self) -> &Arc<Control> {
            &self.ctl
        }
    }

    #[test]
    fn commands_reach_the_control_and_memory() {
        use vm_memory::{Bytes, GuestAddress};
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
        mem.write_slice(&[0x90, 0xf4], GuestAddress(0x100)).unwrap();
        let mut t = T {
            ctl: Control::new(false),
            mem,
        };
        assert_eq!(execute(&mut t, "info status"), "VM status: running\n");
        assert_eq!(execute(&mut t, "stop"), "");
        assert_eq!(execute(&mut t, "info status"), "VM status: paused\n");
        execute(&mut t, "c");
        assert_eq!(t.ctl.state(), RunState::Running);
        assert!(execute(&mut t, "xp /2xb 0x100").contains("0x90 0xf4"));
        assert!(execute(&mut t, "x/2i 0x100").contains("hlt"));
        assert_eq!(execute(&mut t, "gva2gpa 0x1234"), "gpa: 0x1234\n");
        assert!(execute(&mut t, "info registers").contains("RIP=000000000000fff0"));
        assert!(execute(&mut t, "info mtree").contains("pc.ram"));
        assert!(execute(&mut t, "frob").contains("unknown command"));
        execute(&mut t, "q");
        assert!(t.ctl.quit_requested().is_some());
    }
}
