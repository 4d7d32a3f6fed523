//! `xtest`: differential testing of the interpreter against the host CPU.
//!
//! Generates random user-level instruction sequences, runs each natively in
//! a forked child (code and data at fixed addresses, shared with the
//! parent; registers loaded from a start state, stored back after the
//! sequence; SIGSEGV/SIGFPE/SIGILL/SIGBUS and a time limit reported) and
//! under `x86::Cpu` from the same start state, and reports the first
//! mismatch. Only architecturally defined flags are compared (iced-x86's
//! `rflags_undefined()`, per instruction, and OF after a shift/rotate by a
//! count other than 1); a sequence in which an instruction reads a flag
//! left undefined (LAHF after MUL, ...) is regenerated from the same
//! stream, or skipped and counted.
//!
//! Modes (`--mode`):
//! * `64` (default, [`m64`]): 64-bit user code; integer ALU with flags,
//!   shifts/rotates, mul/div, bit ops, cmov/setcc, string ops with small
//!   counts, BSWAP/MOVBE, CMPXCHG/XADD, BMI1/BMI2, CRC32, forward branches,
//!   PUSH/POP/PUSHFQ, memory read-modify-write and BT bit strings,
//!   high-byte registers; SSE..SSE4.2 with `--sse`. The interpreter runs
//!   in 64-bit user mode.
//! * `32` and `16` ([`low`], generator in [`gen_low`]): 32-bit code in the
//!   host's 32-bit user code segment, 16-bit code in an LDT code segment
//!   (`modify_ldt`), entered by far jumps from 64-bit code, with data below
//!   4 GiB; what only exists there (BCD adjustments, BOUND, INTO,
//!   PUSHA/POPA, segment-register pushes/pops/loads, LAR/LSL/VERR/VERW,
//!   ARPL, far calls between 16- and 32-bit code, 16-bit addressing, the
//!   operand- and address-size prefixes). The interpreter runs the same
//!   code in legacy 32/16-bit protected mode (32-bit paging) and in
//!   compatibility mode (4-level paging), CPL 3.
//!
//! `xtest [--mode 64|32|16] --seed N --count M [--len L] [--sse] [--quiet]
//! [--keep-going] [--trace] [--stats] [--from N] [--show]`; exits 1 on a mismatch (after all sequences with
//! `--keep-going`), 3 when the host cannot run the mode's code natively.
//!
//! The host CPU is the reference, so all of it is compiled only on x86-64
//! hosts; elsewhere xtest says so and exits with status 3 (its test then
//! reports the skip).

#[cfg(target_arch = "x86_64")]
mod analyse;
#[cfg(target_arch = "x86_64")]
mod gen64;
#[cfg(target_arch = "x86_64")]
mod gen_low;
#[cfg(target_arch = "x86_64")]
mod low;
#[cfg(target_arch = "x86_64")]
mod m64;
#[cfg(target_arch = "x86_64")]
mod native;

/// Captures the interpreter's exception log (`int` target), so a fault
/// report can say which exception the interpreter raised first.
#[cfg(target_arch = "x86_64")]
struct Capture;

thread_local! {
    static LOG: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[cfg(target_arch = "x86_64")]
impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.target() == "int"
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            LOG.with(|l| l.borrow_mut().push(r.args().to_string()));
        }
    }
    fn flush(&self) {}
}

/// Forgets the captured exception log.
#[cfg(target_arch = "x86_64")]
pub fn clear_log() {
    LOG.with(|l| l.borrow_mut().clear());
}

/// The first exception the interpreter delivered since [`clear_log`].
#[cfg(target_arch = "x86_64")]
pub fn first_exception() -> String {
    LOG.with(|l| l.borrow().first().cloned().unwrap_or_default())
}

thread_local! {
    static FAULT_AT: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

/// Records where the interpreter stopped on a fault (for `--stats`).
#[cfg(target_arch = "x86_64")]
pub fn note_fault(ip: u64) {
    FAULT_AT.with(|f| f.set(Some(ip)));
}

/// What faulted, for `--stats`: the interpreter's first exception and the
/// mnemonic at the IP it stopped at.
#[cfg(target_arch = "x86_64")]
fn fault_key(lines: &[String]) -> String {
    let exc = first_exception();
    let exc = exc
        .split_once('(')
        .and_then(|(_, r)| r.split_once(')'))
        .map_or("?", |(v, _)| v)
        .to_string();
    let at = FAULT_AT.with(|f| f.take());
    let insn = at
        .and_then(|ip| {
            let p = format!("{ip:#x}: ");
            lines.iter().find_map(|l| l.strip_prefix(&p))
        })
        .map_or("(outside the sequence)", |t| {
            t.split(' ').next().unwrap_or(t)
        });
    format!("{exc} {insn}")
}

#[cfg(target_arch = "x86_64")]
pub struct Rng(pub u64);
#[cfg(target_arch = "x86_64")]
impl Rng {
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }
    pub fn value(&mut self) -> u64 {
        match self.below(6) {
            0 => self.pick(&[
                0,
                1,
                0x7f,
                0x80,
                0xff,
                0x7fff,
                0x8000,
                0xffff_ffff,
                u64::MAX,
            ]),
            1 => 1u64 << self.below(64),
            2 => self.below(256),
            3 => (self.next() as i64 >> self.below(64)) as u64,
            _ => self.next(),
        }
    }
}

/// The state a sequence starts from (and ends in).
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct St {
    pub gpr: [u64; 16],
    pub flags: u64,
    pub xmm: [[u8; 16]; 16],
    /// Segment selectors (ES, CS, SS, DS, FS, GS); zero in 64-bit mode.
    pub sregs: [u16; 6],
}

#[cfg(target_arch = "x86_64")]
impl St {
    pub fn zero() -> St {
        St {
            gpr: [0; 16],
            flags: 0,
            xmm: [[0; 16]; 16],
            sregs: [0; 6],
        }
    }
}

/// RFLAGS status bits (CF, PF, AF, ZF, SF, OF).
#[cfg(target_arch = "x86_64")]
pub const STATUS: u64 = 0x8d5;
#[cfg(target_arch = "x86_64")]
pub const DF: u64 = 0x400;

#[cfg(target_arch = "x86_64")]
#[allow(clippy::large_enum_variant)]
pub enum Outcome {
    /// Ran to the end: the final state and the data area.
    Done(St, Vec<u8>),
    Fault(String),
}

/// One generated sequence with its prologue and epilogue.
#[cfg(target_arch = "x86_64")]
pub struct Case {
    /// The code image (loaded at the mode's code address).
    pub code: Vec<u8>,
    /// Code size of the sequence (16, 32 or 64).
    pub bits: u32,
    /// Offset of the sequence in `code`, and its length.
    pub seq_off: usize,
    pub seq_len: usize,
    /// Instruction pointer (in CS) of the sequence's first instruction and
    /// of its end.
    pub ip: u64,
    pub end: u64,
    /// Segment selectors the sequence starts with (ES, CS, SS, DS, FS, GS).
    pub sregs: [u16; 6],
}

/// A processor mode under test.
#[cfg(target_arch = "x86_64")]
pub trait Mode {
    /// Builds one sequence (with the code that enters and leaves it).
    fn build(&mut self, rng: &mut Rng, len: usize, sse: bool) -> Case;
    /// A random start state and data area for `case`.
    fn start(&mut self, rng: &mut Rng, case: &Case) -> (St, Vec<u8>);
    /// Runs `case` natively.
    fn native(&mut self, case: &Case, st: &St, data: &[u8]) -> Outcome;
    /// Names of the interpreter configurations [`Mode::interp`] runs.
    fn variants(&self) -> &'static [&'static str];
    /// Runs `case` under the interpreter, configuration `variant`; `rng`
    /// may fill what the architecture leaves unspecified (e.g. the upper
    /// halves of the GPRs outside 64-bit mode).
    fn interp(&self, case: &Case, st: &St, data: &[u8], variant: usize, rng: &mut Rng) -> Outcome;
    /// The GPRs compared, and the mask of their compared bits.
    fn gprs(&self) -> (&'static [usize], u64);
    /// RFLAGS bits compared (before removing the undefined ones).
    fn flags_mask(&self) -> u64;
    /// How a data-area offset is shown in a report.
    fn mem_name(&self, off: usize) -> String;
    /// `case` cut after its first `len` bytes of sequence (for `--trace`).
    fn truncate(&self, case: &Case, len: usize) -> Option<Case>;
}

/// Runs every prefix of the sequence (cut at instruction boundaries)
/// natively and under interpreter configuration `variant`, and prints the
/// first one whose outcomes differ.
#[cfg(target_arch = "x86_64")]
fn trace(mode: &mut dyn Mode, case: &Case, start: &St, data: &[u8], variant: usize) {
    let bytes = &case.code[case.seq_off..case.seq_off + case.seq_len];
    let mut dec = iced_x86::Decoder::with_ip(case.bits, bytes, case.ip, 0);
    let mut cut = Vec::new();
    while dec.can_decode() {
        let i = dec.decode();
        cut.push(((i.next_ip() - case.ip) as usize, i));
    }
    for (len, i) in cut {
        let Some(c) = mode.truncate(case, len) else {
            println!("trace: not supported in this mode");
            return;
        };
        let nat = mode.native(&c, start, data);
        let emu = mode.interp(&c, start, data, variant, &mut Rng(1));
        let an = analyse::analyse(&bytes[..len], case.bits, case.ip);
        let mask = mode.flags_mask() & !an.undef;
        if let Some(p) = compare(mode, &nat, &emu, mask) {
            println!("trace: first difference after {:#x}: {i}\n  {p}", i.ip());
            for (who, o) in [("host", &nat), ("interp", &emu)] {
                if let Outcome::Done(s, _) = o {
                    println!(
                        "  {who}: flags {:#x} gprs {:x?} sregs {:x?}",
                        s.flags,
                        &s.gpr[..8],
                        s.sregs
                    );
                }
            }
            return;
        }
    }
    println!("trace: no prefix differs");
}

/// The first differences between the host's and the interpreter's outcome.
#[cfg(target_arch = "x86_64")]
fn compare(mode: &dyn Mode, nat: &Outcome, emu: &Outcome, mask: u64) -> Option<String> {
    match (nat, emu) {
        (Outcome::Fault(a), Outcome::Fault(b)) => {
            // The same class of exception: the signal Linux turns the
            // interpreter's first exception into.
            let want = b
                .split_once("deliver ")
                .and_then(|(_, r)| r.split(' ').next())
                .and_then(|v| v.parse::<u8>().ok())
                .map(|v| {
                    // The interpreter runs with an empty IDT: an INT n /
                    // INT3 / INTO / INT1 shows as #GP(IDT vector).
                    let err = b
                        .split_once("err Some(")
                        .and_then(|(_, r)| r.split(')').next())
                        .and_then(|e| e.parse::<u32>().ok());
                    match err {
                        Some(e) if v == 13 && e & 2 != 0 && matches!(e >> 3, 1 | 3) => 3,
                        _ => v,
                    }
                })
                .and_then(signal_of);
            match want {
                Some(w) if w != a => Some(format!("host {a}, interp {b} (expected {w})")),
                _ => None,
            }
        }
        (Outcome::Done(a, am), Outcome::Done(b, bm)) => {
            let mut p = Vec::new();
            let (gprs, gmask) = mode.gprs();
            for &i in gprs {
                if a.gpr[i] & gmask != b.gpr[i] & gmask {
                    p.push(format!(
                        "{}: host {:#x} interp {:#x}",
                        x86::gpr::NAMES[i],
                        a.gpr[i] & gmask,
                        b.gpr[i] & gmask
                    ));
                }
            }
            if a.flags & mask != b.flags & mask {
                p.push(format!(
                    "rflags (mask {mask:#x}): host {:#x} interp {:#x}",
                    a.flags & mask,
                    b.flags & mask
                ));
            }
            for (i, s) in x86::SegReg::ALL.iter().enumerate() {
                if a.sregs[i] != b.sregs[i] {
                    p.push(format!(
                        "{}: host {:#x} interp {:#x}",
                        s.name(),
                        a.sregs[i],
                        b.sregs[i]
                    ));
                }
            }
            for i in 0..16 {
                if a.xmm[i] != b.xmm[i] {
                    p.push(format!(
                        "xmm{i}: host {:#034x} interp {:#034x}",
                        u128::from_le_bytes(a.xmm[i]),
                        u128::from_le_bytes(b.xmm[i])
                    ));
                }
            }
            if let Some(k) = (0..am.len()).find(|&k| am[k] != bm[k]) {
                let n = (k..am.len()).filter(|&j| am[j] != bm[j]).count();
                p.push(format!(
                    "memory {}: host {:#04x} interp {:#04x} ({n} bytes differ)",
                    mode.mem_name(k),
                    am[k],
                    bm[k]
                ));
            }
            (!p.is_empty()).then(|| p.join("\n  "))
        }
        (Outcome::Done(..), Outcome::Fault(e)) => Some(format!("host ran to the end, interp: {e}")),
        (Outcome::Fault(e), Outcome::Done(..)) => Some(format!("host: {e}, interp ran to the end")),
    }
}

/// The signal Linux sends a user process for exception `vector`.
#[cfg(target_arch = "x86_64")]
fn signal_of(vector: u8) -> Option<&'static str> {
    Some(match vector {
        0 | 16 | 19 => "SIGFPE",
        1 | 3 => "SIGTRAP",
        4 | 5 | 10 | 13 | 14 => "SIGSEGV",
        6 => "SIGILL",
        11 | 12 | 17 => "SIGBUS",
        _ => return None,
    })
}

#[cfg(target_arch = "x86_64")]
struct Args {
    mode: u32,
    seed: u64,
    count: u64,
    len: usize,
    sse: bool,
    quiet: bool,
    keep_going: bool,
    trace: bool,
    stats: bool,
    from: u64,
    show: bool,
}

#[cfg(target_arch = "x86_64")]
fn args() -> Args {
    let mut a = Args {
        mode: 64,
        seed: 1,
        count: 1000,
        len: 8,
        sse: false,
        quiet: false,
        keep_going: false,
        trace: false,
        stats: false,
        from: 0,
        show: false,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        let num = |i: usize| -> u64 {
            v.get(i + 1)
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| usage())
        };
        match v[i].as_str() {
            "--mode" => {
                a.mode = num(i) as u32;
                if !matches!(a.mode, 16 | 32 | 64) {
                    usage();
                }
            }
            "--seed" => a.seed = num(i),
            "--count" => a.count = num(i),
            "--len" => a.len = num(i) as usize,
            "--sse" => {
                a.sse = true;
                i -= 1;
            }
            "--quiet" => {
                a.quiet = true;
                i -= 1;
            }
            "--keep-going" => {
                a.keep_going = true;
                i -= 1;
            }
            "--trace" => {
                a.trace = true;
                i -= 1;
            }
            "--stats" => {
                a.stats = true;
                i -= 1;
            }
            "--from" => a.from = num(i),
            "--show" => {
                a.show = true;
                i -= 1;
            }
            _ => usage(),
        }
        i += 2;
    }
    a
}

#[cfg(target_arch = "x86_64")]
fn usage() -> ! {
    eprintln!(
        "usage: xtest [--mode 64|32|16] --seed N --count M [--len L] [--sse] [--quiet] \
         [--keep-going] [--trace] [--stats] [--from N] [--show]"
    );
    std::process::exit(2)
}

#[cfg(target_arch = "x86_64")]
fn main() {
    let args = args();
    static CAPTURE: Capture = Capture;
    log::set_logger(&CAPTURE).expect("logger");
    log::set_max_level(log::LevelFilter::Debug);
    let mut mode: Box<dyn Mode> = match args.mode {
        64 => Box::new(m64::M64::new()),
        bits => match low::Low::new(bits) {
            Ok(m) => Box::new(m),
            Err(e) => {
                println!("xtest: SKIPPED: the host cannot run {bits}-bit code: {e}");
                std::process::exit(3);
            }
        },
    };
    let mut faults = 0u64;
    let mut mismatches = 0u64;
    let mut skipped = 0u64;
    let mut fault_kinds = std::collections::HashMap::<String, (u64, u64)>::new();
    for n in args.from..args.count {
        // One PRNG stream per sequence: a failure is reproducible alone
        // with `--seed <seed> --count <n+1>` (the same n-th sequence).
        let mut rng = Rng(args.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ (n + 1).wrapping_mul(0xd1b5_4a32_d192_ed03)
            | 1);
        // Regenerate (deterministically, from the same stream) a sequence
        // that reads an undefined flag; give up on it after a few tries.
        let mut tries = 0;
        let (case, an) = loop {
            let case = mode.build(&mut rng, args.len, args.sse);
            let an = analyse::analyse(
                &case.code[case.seq_off..case.seq_off + case.seq_len],
                case.bits,
                case.ip,
            );
            tries += 1;
            if !an.reads_undef || tries == 8 {
                break (case, an);
            }
        };
        if an.reads_undef {
            skipped += 1;
            continue;
        }
        let (start, data) = mode.start(&mut rng, &case);
        let nat = mode.native(&case, &start, &data);
        let mask = mode.flags_mask() & !an.undef;
        let mut problem = None;
        let mut both_fault = false;
        for (v, name) in mode.variants().iter().enumerate() {
            let emu = mode.interp(&case, &start, &data, v, &mut rng);
            if let (0, Outcome::Fault(_), Outcome::Fault(_)) = (v, &nat, &emu) {
                both_fault = true;
                if args.stats {
                    fault_kinds.entry(fault_key(&an.lines)).or_insert((0, n)).0 += 1;
                }
            }
            if let Some(p) = compare(&*mode, &nat, &emu, mask) {
                problem = Some((v, format!("({name})\n  {p}")));
                break;
            }
        }
        if both_fault {
            faults += 1;
        }
        if args.show {
            let what = match &nat {
                Outcome::Done(..) => "ran to the end".to_string(),
                Outcome::Fault(e) => e.clone(),
            };
            println!(
                "sequence {n}: host {what}; interpreter {} {}\n  {}",
                if problem.is_some() {
                    "differs"
                } else {
                    "agrees"
                },
                first_exception(),
                an.lines.join("\n  ")
            );
        }
        if let Some((v, p)) = problem {
            let mut st = String::new();
            let (gprs, gmask) = mode.gprs();
            for &i in gprs {
                st += &format!(" {}={:#x}", x86::gpr::NAMES[i], start.gpr[i] & gmask);
            }
            println!(
                "MISMATCH in sequence {n} (seed {}, mode {}):\n  {}\nstart:{st} flags={:#x} \
                 sregs={:x?}\nsequence:\n  {}",
                args.seed,
                args.mode,
                p,
                start.flags,
                start.sregs,
                an.lines.join("\n  ")
            );
            if args.trace {
                trace(&mut *mode, &case, &start, &data, v);
            }
            mismatches += 1;
            if !args.keep_going {
                std::process::exit(1);
            }
        }
        if !args.quiet && (n + 1) % 10_000 == 0 {
            eprintln!("{} sequences, {mismatches} mismatches", n + 1);
        }
    }
    println!(
        "xtest: mode {} seed {} count {} len {}: {} mismatches ({} sequences faulted on both, \
         {} skipped: undefined flags read)",
        args.mode, args.seed, args.count, args.len, mismatches, faults, skipped
    );
    if args.stats {
        let mut k: Vec<_> = fault_kinds.into_iter().collect();
        k.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.0.cmp(&b.0)));
        println!("faults (interpreter's first exception, instruction; first sequence):");
        for (what, (n, first)) in k {
            println!("  {n:6} {what} ({first})");
        }
    }
    if mismatches != 0 {
        std::process::exit(1);
    }
}

/// Turns on the JIT, translating every block at its first execution (the
/// `JIT` variants compare it with the host like the interpreter).
#[cfg(target_arch = "x86_64")]
pub fn jit_on(cpu: &mut x86::Cpu) {
    let ok = cpu.set_jit(Some(x86::JitConfig {
        threshold: 1,
        cache_size: 1 << 20,
        perf_map: false,
    }));
    assert!(ok, "the JIT cannot run on this host");
}

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    println!(
        "xtest: SKIPPED: the host CPU is the reference and this host is {}, not x86-64",
        std::env::consts::ARCH
    );
    std::process::exit(3);
}
