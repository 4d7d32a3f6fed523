//! The same `-bios` ROMs under hx86 and under `qemu-system-x86_64 -accel
//! tcg` must print the same thing. The ROMs: the built-in demo (real ->
//! protected -> long mode, sieve), the compute ROM (small size) and a
//! real-mode ROM exercising string I/O. Skips, saying so, when QEMU is not installed, unless
//! HX86_REQUIRE_QEMU=1 (set by .ci/run, which installs it).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn qemu_available() -> bool {
    let ok = Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var("HX86_REQUIRE_QEMU").as_deref() == Ok("1") {
            panic!("qemu-system-x86_64 is required (HX86_REQUIRE_QEMU=1) but not installed");
        }
        eprintln!("note: skipping: qemu-system-x86_64 is not installed");
    }
    ok
}

/// stdout of QEMU running `rom` with TCG.
fn qemu_output(rom: &str) -> String {
    let out = Command::new("timeout")
        .arg("120")
        .arg("qemu-system-x86_64")
        .args(["-accel", "tcg", "-bios", rom, "-m", "64M"])
        .args(["-display", "none", "-monitor", "none", "-serial", "stdio"])
        .args([
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=4",
            "-no-reboot",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .expect("run qemu");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn same_output(name: &str, rom_bytes: &[u8]) {
    if !qemu_available() {
        return;
    }
    let d = scratch(name);
    let rom = write(&d, "rom.bin", rom_bytes);
    let want = qemu_output(&rom);
    assert!(!want.is_empty(), "QEMU printed nothing for {name}");
    for accel in ["dbt", "kvm"] {
        if accel == "kvm" && !kvm_usable() {
            continue;
        }
        let o = run_timeout(
            &["-accel", accel, "-bios", &rom, "-m", "64M"],
            Duration::from_secs(120),
        );
        assert_eq!(
            o.stdout,
            want,
            "{name} under -accel {accel} vs QEMU TCG\n{}",
            o.dump()
        );
    }
}

#[test]
fn demo_rom_prints_the_same_as_qemu() {
    same_output("qemu-demo", &firmware::demo::demo_rom());
}

#[test]
fn compute_rom_prints_the_same_as_qemu() {
    let cfg = firmware::compute::ComputeConfig::small();
    same_output(
        "qemu-compute",
        &firmware::compute::compute_rom(&cfg).unwrap(),
    );
}

#[test]
fn string_io_rom_prints_the_same_as_qemu() {
    // Real mode: REP OUTSB a message from the ROM's low alias, then the
    // same message upper-cased through LODSB/AND/OUT, then exit.
    use iced_x86::code_asm::*;
    let mut a = CodeAssembler::new(16).unwrap();
    let mut up = a.create_label();
    let mut next = a.create_label();
    (|| -> Result<(), IcedError> {
        a.mov(ax, 0xf000u32)?;
        a.mov(ds, ax)?;
        a.cld()?;
        a.mov(si, 0x100u32)?;
        a.mov(cx, 12u32)?;
        a.mov(dx, 0x3f8u32)?;
        a.rep().outsb()?;
        a.mov(si, 0x100u32)?;
        a.mov(cx, 12u32)?;
        a.set_label(&mut up)?;
        a.lodsb()?;
        a.cmp(al, b'a' as u32)?;
        a.jb(next)?;
        a.and(al, 0xdfu32)?;
        a.set_label(&mut next)?;
        a.out(dx, al)?;
        a.loop_(up)?;
        a.mov(dx, 0xf4u32)?;
        a.mov(al, 2u32)?;
        a.out(dx, al)?;
        a.hlt()
    })()
    .unwrap();
    let code = a.assemble(0).unwrap();
    let mut rom = bios_rom(&code, 0x10000);
    rom[0x100..0x10c].copy_from_slice(b"hello, qemu\n");
    same_output("qemu-strio", &rom);
}
