//! Guests run end to end by the binary under every usable accelerator: the
//! built-in demo, a `-bios` ROM, ELF32/ELF64 `-kernel` images, the
//! debug-exit status and a triple fault; the compute ROM under the DBT.

mod common;

use common::*;
use iced_x86::code_asm::*;

fn asm(bits: u32, f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<u8> {
    let mut a = CodeAssembler::new(bits).unwrap();
    f(&mut a).unwrap();
    a.assemble(0).unwrap()
}

#[test]
fn demo_guest_prints_modes_and_primes() {
    for accel in accels() {
        let o = run(&["-accel", accel, "-d", "accel"]);
        assert_eq!(o.status, Some(0), "-accel {accel}\n{}", o.dump());
        let lines: Vec<&str> = o.stdout.lines().collect();
        for (i, want) in ["real mode", "protected mode", "long mode", "9592"]
            .iter()
            .enumerate()
        {
            assert!(
                lines.get(i).is_some_and(|l| l.contains(want)),
                "-accel {accel}: line {i} should contain {want:?}\n{}",
                o.dump()
            );
        }
        assert!(
            o.stderr.contains(&format!("accelerator: {accel}")),
            "{}",
            o.dump()
        );
    }
}

/// `-accel auto` (the default) says in one line which accelerator runs and
/// why (with `-d accel`, or at a terminal): with a usable KVM it times a
/// probe guest and names the speed, and picks the DBT when KVM is slower
/// than the threshold; `-accel kvm` still forces KVM. Without `-d accel`
/// and not at a terminal, stderr stays empty (as QEMU's: kvm-unit-tests
/// takes other stderr lines as failures).
#[test]
fn auto_says_which_accelerator_runs_and_why() {
    let quiet = run(&[]);
    assert_eq!(quiet.status, Some(0), "{}", quiet.dump());
    assert_eq!(quiet.stderr, "", "{}", quiet.dump());
    let o = run(&["-d", "accel"]);
    assert_eq!(o.status, Some(0), "{}", o.dump());
    assert!(o.stdout.contains("9592"), "{}", o.dump());
    let lines: Vec<&str> = o
        .stderr
        .lines()
        .filter(|l| l.starts_with("hx86: accelerator:"))
        .collect();
    assert_eq!(lines.len(), 1, "{}", o.dump());
    let line = lines[0];
    if kvm_usable() {
        #[cfg(target_arch = "x86_64")]
        auto_with_usable_kvm(line);
    } else {
        assert!(
            line.starts_with("hx86: accelerator: dbt (") && line.contains("KVM unavailable: "),
            "{line}"
        );
    }
}

/// On a host that is not x86-64, KVM cannot run x86 guests: `-accel kvm`
/// fails saying so, and `auto` runs the interpreter and says why (both
/// reasons in its one line).
#[cfg(not(target_arch = "x86_64"))]
#[test]
fn kvm_is_refused_and_auto_runs_the_interpreter_on_this_host() {
    let o = run(&["-accel", "kvm"]);
    assert_eq!(o.status, Some(1), "{}", o.dump());
    assert!(
        o.stderr.contains("KVM cannot run x86 guests on this host"),
        "{}",
        o.dump()
    );
    let o = run(&["-d", "accel"]);
    assert_eq!(o.status, Some(0), "{}", o.dump());
    assert!(o.stdout.contains("9592"), "{}", o.dump());
    let want = format!(
        "hx86: accelerator: dbt (interpreter: the JIT needs an x86-64 host; \
         KVM unavailable: KVM cannot run x86 guests on this host ({}))",
        std::env::consts::ARCH
    );
    assert!(o.stderr.lines().any(|l| l == want), "{}", o.dump());
}

/// The rest of [`auto_says_which_accelerator_runs_and_why`] where KVM is
/// usable: it runs, or `auto` says how slow it is.
#[cfg(target_arch = "x86_64")]
fn auto_with_usable_kvm(line: &str) {
    let threshold = accel::kvm::probe::THRESHOLD_MIPS;
    if line.starts_with("hx86: accelerator: kvm") {
        assert!(line.contains(" M instr/s)"), "{line}");
    } else {
        assert!(line.starts_with("hx86: accelerator: dbt ("), "{line}");
        assert!(
            line.contains("KVM runs guest code at ")
                && line.contains(&format!("M instr/s here, below {threshold}"))
                && line.contains("-accel kvm forces it"),
            "{line}"
        );
        eprintln!("note: {line}");
    }
    let o = run(&["-accel", "kvm", "-d", "accel"]);
    assert_eq!(o.status, Some(0), "{}", o.dump());
    assert!(
        o.stderr.lines().any(|l| l == "hx86: accelerator: kvm"),
        "{}",
        o.dump()
    );
}

/// The compute benchmark ROM (sieve, CRC-32, heap sort in long mode) at a
/// small size under the DBT prints the checksums that `firmware`'s Rust
/// reference computes, and powers off.
#[test]
fn compute_rom_prints_the_reference_checksums() {
    use firmware::compute::{compute_rom, reference, result_line, ComputeConfig};
    let cfg = ComputeConfig::small();
    let want = result_line(&cfg, &reference(&cfg).unwrap());
    let d = scratch("compute");
    let rom = write(&d, "compute.rom", &compute_rom(&cfg).unwrap());
    let o = run(&["-accel", "dbt", "-bios", &rom, "-m", "16M"]);
    assert_eq!(o.status, Some(0), "{}", o.dump());
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "hx86 compute: real mode",
            "hx86 compute: protected mode",
            "hx86 compute: long mode",
            want.as_str()
        ],
        "{}",
        o.dump()
    );
}

/// A real-mode ROM: prints a message from ROM data and exits via
/// isa-debug-exit with value 0x21, i.e. status 0x43.
fn hello_rom() -> Vec<u8> {
    let code = asm(16, |a| {
        a.mov(ax, 0xf000u32)?;
        a.mov(ds, ax)?; // the ROM's low alias ends at 1 MiB: F000:0 is its last 64 KiB
        a.mov(si, 0x100u32)?;
        a.mov(dx, 0x3f8u32)?;
        let mut lp = a.create_label();
        let mut done = a.create_label();
        a.set_label(&mut lp)?;
        a.lodsb()?;
        a.test(al, al)?;
        a.jz(done)?;
        a.out(dx, al)?;
        a.jmp(lp)?;
        a.set_label(&mut done)?;
        a.mov(dx, 0xf4u32)?;
        a.mov(al, 0x21u32)?;
        a.out(dx, al)?;
        a.hlt()
    });
    let mut rom = bios_rom(&code, 0x20000);
    let msg = b"hello from a -bios ROM\n\0";
    let at = 0x20000 - 0x10000 + 0x100;
    rom[at..at + msg.len()].copy_from_slice(msg);
    rom
}

#[test]
fn bios_rom_runs_from_reset_vector_and_exits_with_status() {
    let d = scratch("bios-hello");
    let rom = write(&d, "hello.rom", &hello_rom());
    for accel in accels() {
        let o = run(&["-accel", accel, "-bios", &rom]);
        assert_eq!(o.status, Some(0x43), "-accel {accel}\n{}", o.dump());
        assert_eq!(o.stdout, "hello from a -bios ROM\n", "{}", o.dump());
    }
}

#[test]
fn debug_exit_can_move_and_serial_can_go_to_a_file() {
    let d = scratch("bios-moved");
    let code = asm(16, |a| {
        a.mov(dx, 0x3f8u32)?;
        a.mov(al, b'X' as u32)?;
        a.out(dx, al)?;
        a.mov(dx, 0x501u32)?;
        a.mov(al, 3u32)?;
        a.out(dx, al)?;
        a.hlt()
    });
    let rom = write(&d, "moved.rom", &bios_rom(&code, 0x10000));
    let log = d.join("serial.txt");
    let serial = format!("file:{}", log.display());
    for accel in accels() {
        let o = run(&[
            "-accel",
            accel,
            "-bios",
            &rom,
            "-serial",
            &serial,
            "-device",
            "isa-debug-exit,iobase=0x501,iosize=1",
        ]);
        assert_eq!(o.status, Some(7), "-accel {accel}\n{}", o.dump());
        assert_eq!(o.stdout, "");
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "X");
    }
}

#[test]
fn triple_fault_with_no_reboot_exits_1() {
    let d = scratch("triple");
    for bits in [32u32, 64] {
        let code = asm(bits, |a| {
            a.xor(eax, eax)?;
            if bits == 64 {
                a.push(rax)?;
                a.push(rax)?;
            } else {
                a.push(eax)?;
                a.push(eax)?;
            }
            if bits == 64 {
                a.lidt(ptr(rsp))?; // IDT limit 0: every exception faults again
            } else {
                a.lidt(ptr(esp))?;
            }
            a.ud2()?;
            a.hlt()
        });
        let k = write(&d, "triple.elf", &elf(bits == 64, 0x20_0000, &code));
        for accel in accels() {
            let o = run(&["-accel", accel, "-kernel", &k, "-no-reboot"]);
            assert_eq!(o.status, Some(1), "-accel {accel}\n{}", o.dump());
            assert!(o.stderr.contains("triple fault"), "{}", o.dump());
            assert!(!o.stderr.contains("panicked"));
        }
    }
}

/// Prints the command line found through EDI/RDI, then exits with 0x10.
fn cmdline_printer(bits: u32) -> Vec<u8> {
    asm(bits, |a| {
        if bits == 64 {
            a.mov(rsi, rdi)?;
        } else {
            a.mov(esi, edi)?;
        }
        a.mov(dx, 0x3f8u32)?;
        let mut lp = a.create_label();
        let mut done = a.create_label();
        a.set_label(&mut lp)?;
        if bits == 64 {
            a.mov(al, byte_ptr(rsi))?;
        } else {
            a.mov(al, byte_ptr(esi))?;
        }
        a.test(al, al)?;
        a.jz(done)?;
        a.out(dx, al)?;
        if bits == 64 {
            a.inc(rsi)?;
        } else {
            a.inc(esi)?;
        }
        a.jmp(lp)?;
        a.set_label(&mut done)?;
        a.mov(al, b'\n' as u32)?;
        a.out(dx, al)?;
        a.mov(dx, 0xf4u32)?;
        a.mov(eax, 0x10u32)?;
        a.out(dx, eax)?;
        a.hlt()
    })
}

#[test]
fn elf_kernels_get_the_command_line() {
    let d = scratch("elf");
    for (bits, name) in [(32u32, "k32.elf"), (64, "k64.elf")] {
        let k = write(
            &d,
            name,
            &elf(bits == 64, 0x20_0000, &cmdline_printer(bits)),
        );
        for accel in accels() {
            let o = run(&[
                "-accel",
                accel,
                "-kernel",
                &k,
                "-append",
                "console=ttyS0 hello",
            ]);
            assert_eq!(o.status, Some(0x21), "{name} -accel {accel}\n{}", o.dump());
            assert_eq!(o.stdout, "console=ttyS0 hello\n", "{}", o.dump());
        }
    }
}

#[test]
fn serial_input_from_a_pipe_reaches_the_guest() {
    // Polls the UART's LSR for data, echoes each byte upper-cased, stops at 'q'.
    let code = asm(16, |a| {
        let mut lp = a.create_label();
        let mut done = a.create_label();
        a.set_label(&mut lp)?;
        a.mov(dx, 0x3fdu32)?;
        a.in_(al, dx)?;
        a.test(al, 1u32)?;
        a.jz(lp)?;
        a.mov(dx, 0x3f8u32)?;
        a.in_(al, dx)?;
        a.cmp(al, b'q' as u32)?;
        a.je(done)?;
        a.and(al, 0xdfu32)?;
        a.out(dx, al)?;
        a.jmp(lp)?;
        a.set_label(&mut done)?;
        a.mov(dx, 0xf4u32)?;
        a.mov(al, 0u32)?;
        a.out(dx, al)?;
        a.hlt()
    });
    let d = scratch("serial-in");
    let rom = write(&d, "echo.rom", &bios_rom(&code, 0x10000));
    for accel in accels() {
        let o = run_input(
            &["-accel", accel, "-bios", &rom],
            Some(b"hello\nq"),
            std::time::Duration::from_secs(120),
        );
        assert_eq!(o.status, Some(1), "-accel {accel}\n{}", o.dump());
        assert_eq!(o.stdout, "HELLO\n", "{}", o.dump());
    }
}
