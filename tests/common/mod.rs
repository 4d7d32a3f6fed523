//! Shared helpers for the end-to-end tests: run the `hx86` binary with a
//! timeout, find out which accelerators are usable, build tiny guests.
#![allow(dead_code)]

pub mod qmp;

pub mod guest32;

pub mod linux;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct Output {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn dump(&self) -> String {
        format!(
            "status: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// The `hx86` binary as a command; with `HX86_TEST_RUNNER` set (e.g.
/// `qemu-aarch64 -L /usr/aarch64-linux-gnu`, for a cross-built hx86 on a
/// host without binfmt_misc), run through that command.
pub fn hx86() -> Command {
    let bin = env!("CARGO_BIN_EXE_hx86");
    let runner = std::env::var("HX86_TEST_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    match words.next() {
        Some(prog) => {
            let mut c = Command::new(prog);
            c.args(words).arg(bin);
            c
        }
        None => Command::new(bin),
    }
}

/// Runs `hx86 ARGS` with stdin closed, killing it after `timeout`.
pub fn run_timeout(args: &[&str], timeout: Duration) -> Output {
    run_input(args, None, timeout)
}

/// Runs `hx86 ARGS` with `input` piped to its stdin (closed when `None`).
pub fn run_input(args: &[&str], input: Option<&[u8]>, timeout: Duration) -> Output {
    let mut child = hx86()
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hx86");
    if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
        use std::io::Write;
        let data = data.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
    }
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let status = wait_exit(&mut child, timeout);
    Output {
        status,
        stdout: String::from_utf8_lossy(&t_out.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&t_err.join().unwrap()).into_owned(),
    }
}

/// Waits for `child` to exit (killing it after `timeout`) and returns its
/// status (`None`: killed or ended by a signal).
pub fn wait_exit(child: &mut std::process::Child, timeout: Duration) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().expect("wait") {
            return st.code();
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn run(args: &[&str]) -> Output {
    run_timeout(args, Duration::from_secs(120))
}

/// Whether `/dev/kvm` is usable here; prints why not.
pub fn kvm_usable() -> bool {
    match accel::kvm_accel() {
        Ok(_) => true,
        Err(e) => {
            eprintln!("note: skipping the KVM half of this test: {e}");
            false
        }
    }
}

/// The accelerators a guest test should run under: `dbt` always, `kvm` when
/// it is usable (with a printed note when it is not).
pub fn accels() -> Vec<&'static str> {
    let mut v = Vec::new();
    if kvm_usable() {
        v.push("kvm");
    }
    v.push("dbt");
    v
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hx86-test-{}-{}", name, std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_str().unwrap().to_string()
}

/// A minimal ELF executable: one PT_LOAD segment holding `code` at `paddr`
/// (vaddr == paddr), entry at `paddr`.
pub fn elf(is64: bool, paddr: u64, code: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    let (ehsize, phsize) = if is64 { (64usize, 56usize) } else { (52, 32) };
    let off = (ehsize + phsize) as u64;
    f.extend_from_slice(b"\x7fELF");
    f.push(if is64 { 2 } else { 1 }); // class
    f.push(1); // little endian
    f.push(1); // version
    f.extend_from_slice(&[0; 9]);
    f.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f.extend_from_slice(&(if is64 { 62u16 } else { 3 }).to_le_bytes());
    f.extend_from_slice(&1u32.to_le_bytes());
    let word = |f: &mut Vec<u8>, v: u64| {
        if is64 {
            f.extend_from_slice(&v.to_le_bytes())
        } else {
            f.extend_from_slice(&(v as u32).to_le_bytes())
        }
    };
    word(&mut f, paddr); // entry
    word(&mut f, ehsize as u64); // phoff
    word(&mut f, 0); // shoff
    f.extend_from_slice(&0u32.to_le_bytes()); // flags
    f.extend_from_slice(&(ehsize as u16).to_le_bytes());
    f.extend_from_slice(&(phsize as u16).to_le_bytes());
    f.extend_from_slice(&1u16.to_le_bytes()); // phnum
    f.extend_from_slice(&0u16.to_le_bytes()); // shentsize
    f.extend_from_slice(&0u16.to_le_bytes()); // shnum
    f.extend_from_slice(&0u16.to_le_bytes()); // shstrndx
    assert_eq!(f.len(), ehsize);
    let len = code.len() as u64;
    if is64 {
        f.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        f.extend_from_slice(&7u32.to_le_bytes()); // RWX
        f.extend_from_slice(&off.to_le_bytes());
        f.extend_from_slice(&paddr.to_le_bytes());
        f.extend_from_slice(&paddr.to_le_bytes());
        f.extend_from_slice(&len.to_le_bytes());
        f.extend_from_slice(&(len + 0x1000).to_le_bytes());
        f.extend_from_slice(&0x1000u64.to_le_bytes());
    } else {
        f.extend_from_slice(&1u32.to_le_bytes());
        f.extend_from_slice(&(off as u32).to_le_bytes());
        f.extend_from_slice(&(paddr as u32).to_le_bytes());
        f.extend_from_slice(&(paddr as u32).to_le_bytes());
        f.extend_from_slice(&(len as u32).to_le_bytes());
        f.extend_from_slice(&((len + 0x1000) as u32).to_le_bytes());
        f.extend_from_slice(&7u32.to_le_bytes());
        f.extend_from_slice(&0x1000u32.to_le_bytes());
    }
    assert_eq!(f.len() as u64, off);
    f.extend_from_slice(code);
    f
}

/// A raw BIOS image of `size` bytes whose reset vector (offset size-16)
/// jumps to `code`, placed at the start of the last 64 KiB (so `code` runs
/// in real mode at CS=F000 base FFFF0000, IP=0).
pub fn bios_rom(code: &[u8], size: usize) -> Vec<u8> {
    assert!(size >= 0x10000 && code.len() < 0xff00);
    let mut rom = vec![0xf4u8; size]; // hlt
    let base = size - 0x10000;
    rom[base..base + code.len()].copy_from_slice(code);
    // At FFF0: jmp near rel16 to IP 0.
    let at = 0xfff0usize;
    let rel = (0i32 - (at as i32 + 3)) as i16;
    rom[base + at] = 0xe9;
    rom[base + at + 1..base + at + 3].copy_from_slice(&rel.to_le_bytes());
    rom
}
