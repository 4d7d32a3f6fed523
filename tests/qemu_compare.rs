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

/// stdout of QEMU with TCG and `args`, the machine as the tests run hx86:
/// no display or monitor, COM1 on stdout, isa-debug-exit at 0xf4.
fn qemu_stdout(args: &[&str]) -> String {
    let out = Command::new("timeout")
        .arg("120")
        .arg("qemu-system-x86_64")
        .args(["-accel", "tcg"])
        .args(args)
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

/// stdout of QEMU running `rom` with TCG.
fn qemu_output(rom: &str) -> String {
    qemu_stdout(&["-bios", rom, "-m", "64M"])
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

/// A Multiboot 1 kernel (a.out kludge) that prints what it was given:
/// EAX, the flags it relies on (cmdline, mods, mmap), its command line and
/// each module's command line, length and byte sum. QEMU and hx86 must pass
/// the same (the kernel's path, then `-append`; QEMU's `-initrd` module
/// syntax with `,,`).
#[test]
fn multiboot_kernel_sees_the_same_as_under_qemu() {
    use common::guest32::*;
    use iced_x86::code_asm::*;
    if !qemu_available() {
        return;
    }
    let mut g = Gen::new();
    (|| -> R {
        let a = &mut g.a;
        let mut print_str = a.create_label();
        let mut print_hex = a.create_label();
        let mut start = a.create_label();
        a.jmp(start)?;
        // Prints the NUL-terminated string at ESI.
        a.set_label(&mut print_str)?;
        let mut lp = a.create_label();
        let mut done = a.create_label();
        a.mov(dx, 0x3f8u32)?;
        a.set_label(&mut lp)?;
        a.mov(al, byte_ptr(esi))?;
        a.test(al, al)?;
        a.jz(done)?;
        a.out(dx, al)?;
        a.inc(esi)?;
        a.jmp(lp)?;
        a.set_label(&mut done)?;
        a.ret()?;
        // Prints EAX as 8 hex digits and a newline.
        a.set_label(&mut print_hex)?;
        let mut digit = a.create_label();
        let mut num = a.create_label();
        a.mov(ecx, 8u32)?;
        a.mov(dx, 0x3f8u32)?;
        a.set_label(&mut digit)?;
        a.rol(eax, 4)?;
        a.push(eax)?;
        a.and(eax, 0xfu32)?;
        a.add(eax, b'0' as u32)?;
        a.cmp(eax, b'9' as u32)?;
        a.jbe(num)?;
        a.add(eax, 7u32)?;
        a.set_label(&mut num)?;
        a.out(dx, al)?;
        a.pop(eax)?;
        a.dec(ecx)?;
        a.jnz(digit)?;
        a.mov(al, b'\n' as u32)?;
        a.out(dx, al)?;
        a.ret()?;

        a.set_label(&mut start)?;
        a.call(print_hex)?; // EAX: the magic
        a.mov(eax, dword_ptr(ebx))?;
        a.and(eax, 0x4Cu32)?; // CMDLINE | MODS | MMAP
        a.call(print_hex)?;
        a.mov(esi, dword_ptr(ebx + 16))?;
        a.call(print_str)?;
        a.mov(eax, dword_ptr(ebx + 20))?;
        a.call(print_hex)?;
        a.mov(ebp, dword_ptr(ebx + 24))?;
        a.mov(edi, dword_ptr(ebx + 20))?;
        let mut m = a.create_label();
        let mut end = a.create_label();
        a.set_label(&mut m)?;
        a.test(edi, edi)?;
        a.jz(end)?;
        a.mov(esi, dword_ptr(ebp + 8))?;
        a.call(print_str)?;
        a.mov(eax, dword_ptr(ebp + 4))?;
        a.sub(eax, dword_ptr(ebp))?;
        a.call(print_hex)?;
        // Byte sum of the module.
        a.mov(esi, dword_ptr(ebp))?;
        a.xor(eax, eax)?;
        let mut s = a.create_label();
        let mut s_end = a.create_label();
        a.set_label(&mut s)?;
        a.cmp(esi, dword_ptr(ebp + 4))?;
        a.jae(s_end)?;
        a.movzx(ecx, byte_ptr(esi))?;
        a.add(eax, ecx)?;
        a.inc(esi)?;
        a.jmp(s)?;
        a.set_label(&mut s_end)?;
        a.call(print_hex)?;
        a.add(ebp, 16)?;
        a.dec(edi)?;
        a.jmp(m)?;
        a.set_label(&mut end)?;
        a.mov(eax, 2u32)?;
        a.out(0xf4, eax)?;
        a.hlt()
    })()
    .unwrap();
    let (code, _) = g.finish();
    let d = scratch("qemu-mb");
    let len = CODE_OFF + code.len() as u64;
    let kernel = write(&d, "mb.bin", &blob(&mb1_header(Some((len, 0x1000))), &code));
    let m1 = write(
        &d,
        "m1.bin",
        &(0..5000u32).map(|i| (i * 31) as u8).collect::<Vec<_>>(),
    );
    let m2 = write(&d, "m2.txt", b"module two\n");
    let initrd = format!("{m1} one,,two three,{m2}");
    let args = [
        "-kernel", &kernel, "-initrd", &initrd, "-append", "a b  c", "-m", "64M",
    ];
    let want = qemu_stdout(&args);
    assert!(
        want.starts_with("2BADB002\n0000004C\n"),
        "QEMU printed {want:?}"
    );
    for accel in accels() {
        let mut a = vec!["-accel", accel];
        a.extend(args);
        let o = run(&a);
        assert_eq!(o.status, Some(5), "{}", o.dump());
        assert_eq!(o.stdout, want, "-accel {accel} vs QEMU TCG\n{}", o.dump());
    }
}
