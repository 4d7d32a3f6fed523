//! Bad input of every kind: a clear message, a non-zero status, no panic.

mod common;

use common::*;

fn assert_fails(args: &[&str], needles: &[&str]) {
    let o = run(args);
    assert_eq!(o.status, Some(1), "{args:?}\n{}", o.dump());
    for n in needles {
        assert!(
            o.stderr.contains(n),
            "{args:?}: stderr lacks {n:?}\n{}",
            o.dump()
        );
    }
    assert!(!o.stderr.contains("panicked"), "{}", o.dump());
}

#[test]
fn version_and_help() {
    let o = run(&["--version"]);
    assert_eq!(o.status, Some(0), "{}", o.dump());
    assert!(o.stdout.contains("hx86"));
    let o = run(&["-version"]);
    assert_eq!(o.status, Some(0), "{}", o.dump());
    let o = run(&["--help"]);
    assert_eq!(o.status, Some(0), "{}", o.dump());
    for opt in [
        "--kernel",
        "--bios",
        "--accel",
        "--serial",
        "-d",
        "--no-reboot",
    ] {
        assert!(o.stdout.contains(opt), "help lacks {opt}");
    }
    let o = run(&["-d", "help"]);
    assert_eq!(o.status, Some(0));
    for cat in ["exits", "int", "cpu_reset", "unimp"] {
        assert!(o.stdout.contains(cat), "-d help lacks {cat}");
    }
}

#[test]
fn unknown_options_and_values() {
    assert_fails(&["-frobnicate"], &["frobnicate"]);
    assert_fails(&["-m", "lots"], &["invalid -m value 'lots'"]);
    assert_fails(&["-m", "0"], &["-m"]);
    assert_fails(&["-m", "512K"], &["at least 1 MiB"]);
    assert_fails(&["-m", "4T"], &["1 TiB"]);
    assert_fails(&["-accel", "hvf"], &["'hvf' is not supported"]);
    assert_fails(&["-accel", "frob"], &["unknown accelerator 'frob'"]);
    assert_fails(&["-serial", "pty"], &["-serial pty"]);
    assert_fails(
        &["-device", "e1000"],
        &["e1000", "unsupported device", "-device help"],
    );
    assert_fails(&["-device", "isa-debug-exit,iobase=zz"], &["not a number"]);
    assert_fails(&["-d", "bogus"], &["unknown log item 'bogus'"]);
    assert_fails(&["-display", "gtk"], &["-display gtk"]);
}

#[test]
fn bad_smp_is_refused_clearly() {
    assert_fails(&["-smp", "65"], &["65 vCPUs asked for", "at most 64"]);
    assert_fails(&["-smp", "0"], &["must be greater than zero"]);
    assert_fails(&["-smp", "many"], &["-smp many"]);
    assert_fails(
        &["-smp", "4,sockets=3"],
        &["product of the hierarchy must match maxcpus"],
    );
}

#[test]
fn missing_files_are_named() {
    assert_fails(
        &["-kernel", "/nonexistent/vmlinux"],
        &["/nonexistent/vmlinux", "No such file"],
    );
    assert_fails(
        &["-bios", "/nonexistent/bios.bin"],
        &["/nonexistent/bios.bin", "No such file"],
    );
}

#[test]
fn corrupt_and_unsupported_kernels() {
    let d = scratch("cli-kernels");
    // Truncated ELF header.
    let trunc = write(&d, "trunc.elf", b"\x7fELF\x02\x01\x01\0\0\0");
    assert_fails(&["-kernel", &trunc], &["trunc.elf"]);
    // Program header pointing past the end of the file.
    let mut bad = elf(true, 0x200000, &[0xf4; 16]);
    bad[32..40].copy_from_slice(&0x10_0000u64.to_le_bytes()); // e_phoff
    let bad = write(&d, "badph.elf", &bad);
    assert_fails(&["-kernel", &bad], &["badph.elf"]);
    // Not a kernel at all.
    let junk = write(&d, "junk.bin", &[0x55u8; 4096]);
    assert_fails(&["-kernel", &junk], &["junk.bin", "not an ELF"]);
    // A bzImage: refused for now, saying what it is.
    let mut bz = vec![0u8; 0x4000];
    bz[0x1fe] = 0x55;
    bz[0x1ff] = 0xaa;
    bz[0x202..0x206].copy_from_slice(b"HdrS");
    bz[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    let bz = write(&d, "bzImage", &bz);
    assert_fails(&["-kernel", &bz], &["bzImage"]);
    // A multiboot image.
    let mut mb = vec![0u8; 0x2000];
    let magic = 0x1bad_b002u32;
    let flags = 0u32;
    let sum = 0u32.wrapping_sub(magic.wrapping_add(flags));
    mb[0x40..0x44].copy_from_slice(&magic.to_le_bytes());
    mb[0x44..0x48].copy_from_slice(&flags.to_le_bytes());
    mb[0x48..0x4c].copy_from_slice(&sum.to_le_bytes());
    let mb = write(&d, "mb.bin", &mb);
    assert_fails(&["-kernel", &mb], &["multiboot"]);
    // A kernel that does not fit in RAM.
    let big = write(&d, "big.elf", &elf(true, 0x1000_0000, &[0xf4; 16]));
    assert_fails(&["-m", "64M", "-kernel", &big], &["big.elf"]);
    // -initrd needs a Linux or multiboot kernel.
    let k = write(&d, "k.elf", &elf(true, 0x20_0000, &[0xf4; 16]));
    assert_fails(
        &["-kernel", &k, "-initrd", &k],
        &["-initrd needs a Linux (bzImage) or multiboot kernel"],
    );
    assert_fails(&["-initrd", &k], &["-initrd only makes sense with -kernel"]);
}

#[test]
fn bad_bios_images() {
    let d = scratch("cli-bios");
    let small = write(&d, "small.rom", &[0xf4; 1000]);
    assert_fails(&["-bios", &small], &["small.rom", "64 KiB"]);
    let empty = write(&d, "empty.rom", &[]);
    assert_fails(&["-bios", &empty], &["empty.rom"]);
}

#[test]
fn dbt_properties() {
    assert_fails(&["-accel", "dbt,jit=maybe"], &["jit=maybe", "on or off"]);
    assert_fails(&["-accel", "dbt,bogus=1"], &["unknown property 'bogus'"]);
    assert_fails(&["-accel", "dbt,jit"], &["expected PROP=VALUE"]);
    assert_fails(&["-accel", "tcg,tb-size=0"], &["tb-size=0"]);
    assert_fails(&["-accel", "dbt,jit-threshold=x"], &["not a number"]);
    // The demo under each tier; the accelerator line names the tier and
    // -d stats shows whether blocks were translated (the JIT runs on
    // x86-64 hosts only).
    let (jit, translates) = if cfg!(target_arch = "x86_64") {
        ("(JIT", true)
    } else {
        ("(interpreter: the JIT needs an x86-64 host", false)
    };
    for (accel, tier, translated) in [
        ("dbt", jit, translates),
        ("tcg,jit=on,jit-threshold=1,tb-size=1", jit, translates),
        ("dbt,jit=off", "interpreter: jit=off", false),
    ] {
        let o = run(&["-accel", accel, "-d", "stats,accel"]);
        assert_eq!(o.status, Some(0), "{accel}\n{}", o.dump());
        assert!(
            o.stdout.contains("primes below 100000: 9592"),
            "{}",
            o.dump()
        );
        assert!(o.stderr.contains(tier), "{accel}\n{}", o.dump());
        assert_eq!(
            o.stderr.contains("blocks translated"),
            translated,
            "{accel}\n{}",
            o.dump()
        );
    }
}

/// What QEMU harnesses read from `--version` and `--help`: kvm-unit-tests
/// takes the version from words 4-6 of `-h | head -1` and looks for
/// "QEMU" in `--help` to accept the binary.
#[test]
fn version_and_help_have_qemus_shape() {
    for args in [
        &["--version"][..],
        &["-version"],
        &["-h"],
        &["--help"],
        &["-help"],
    ] {
        let o = run(args);
        assert_eq!(o.status, Some(0), "{args:?}\n{}", o.dump());
        let first = o.stdout.lines().next().unwrap_or("");
        assert!(
            first.starts_with("QEMU emulator version 7.2.0 (hx86 "),
            "{args:?}: {first}"
        );
        let words: Vec<&str> = first.split([' ', '.']).collect();
        assert_eq!(&words[3..6], ["7", "2", "0"], "{first}");
    }
    let o = run(&["--help"]);
    assert!(o.stdout.contains("takes QEMU's"), "{}", o.dump());
    for opt in [
        "-machine",
        "-nodefaults",
        "-global",
        "-debugcon",
        "-pidfile",
    ] {
        assert!(o.stdout.contains(&format!("-{opt}")), "help lacks {opt}");
    }
}

#[test]
fn device_machine_and_accel_help() {
    for q in ["help", "?"] {
        let o = run(&["-device", q]);
        assert_eq!(o.status, Some(0), "{}", o.dump());
        for line in [
            "name \"isa-debug-exit\", bus ISA",
            "name \"isa-debugcon\", bus ISA",
            "name \"pc-testdev\", bus ISA",
            "name \"pci-testdev\", bus PCI, desc \"PCI Test Device\"",
        ] {
            assert!(o.stdout.lines().any(|l| l == line), "{line}\n{}", o.dump());
        }
    }
    let o = run(&["-device", "isa-debugcon,help"]);
    assert!(o.stdout.contains("readback=<uint32>"), "{}", o.dump());
    let o = run(&["-machine", "help"]);
    assert!(o.stdout.contains("pc-i440fx-7.2"), "{}", o.dump());
    let o = run(&["-accel", "help"]);
    assert!(o.stdout.contains("tcg") && o.stdout.contains("kvm"));
}

/// The options harnesses send that change nothing for hx86 run the demo
/// with nothing on stderr; an unknown -global is named in a warning.
#[test]
fn harness_options_are_accepted_quietly() {
    let o = run(&[
        "-display",
        "none",
        "-vnc",
        "none",
        "-vga",
        "none",
        "-nographic",
        "-no-user-config",
        "-name",
        "guest=demo,debug-threads=on",
        "-M",
        "pc,hpet=off",
        "-machine",
        "accel=tcg",
        "-smp",
        "1,sockets=1,cores=1,threads=1,maxcpus=1",
        "-global",
        "kvm-pit.lost_tick_policy=discard",
    ]);
    assert_eq!(o.status, Some(0), "{}", o.dump());
    assert!(o.stdout.contains("9592"), "{}", o.dump());
    assert_eq!(o.stderr, "", "{}", o.dump());
    let o = run(&["-global", "usb-ehci.frob=1", "-machine", "accel=tcg"]);
    assert_eq!(o.status, Some(0), "{}", o.dump());
    assert_eq!(
        o.stderr.trim(),
        "hx86: warning: -global usb-ehci.frob=1: ignored (hx86 has no such device property)"
    );
    // -nodefaults: COM1 has no output unless -serial names one.
    let o = run(&["-nodefaults", "-machine", "accel=tcg"]);
    assert_eq!(o.status, Some(0), "{}", o.dump());
    assert_eq!(o.stdout, "");
    let o = run(&["-nodefaults", "-serial", "stdio", "-machine", "accel=tcg"]);
    assert!(o.stdout.contains("9592"), "{}", o.dump());
}

#[test]
fn first_usable_accelerator_wins() {
    let o = run(&["-machine", "accel=kvm:tcg", "-d", "accel"]);
    assert_eq!(o.status, Some(0), "{}", o.dump());
    if kvm_usable() {
        assert!(o.stderr.contains("hx86: accelerator: kvm"), "{}", o.dump());
    } else {
        assert!(
            o.stderr.contains("hx86: accelerator: dbt") && o.stderr.contains("kvm unusable: "),
            "{}",
            o.dump()
        );
    }
    let o = run(&["-accel", "tcg", "-accel", "kvm", "-d", "accel"]);
    assert!(o.stderr.contains("hx86: accelerator: dbt"), "{}", o.dump());
}

#[test]
fn refused_options_say_why() {
    assert_fails(&["-daemonize"], &["-daemonize is not supported"]);
    assert_fails(&["-vnc", ":1"], &["no VNC server"]);
    assert_fails(&["-vga", "std"], &["no display adapter"]);
    assert_fails(
        &["-M", "q35"],
        &["unsupported machine type 'q35'", "i440FX"],
    );
    assert_fails(&["-machine", "pc,frob=on"], &["no property 'frob'"]);
    assert_fails(
        &["-accel", "tcg", "-machine", "accel=tcg"],
        &["incompatible"],
    );
    assert_fails(&["-device", "pci-testdev,addr=40"], &["addr=40"]);
    assert_fails(
        &["-device", "isa-debugcon,chardev=c"],
        &["chardev 'c' not found"],
    );
    assert_fails(&["-global", "nodot"], &["DRIVER.PROP=VALUE"]);
    assert_fails(&["-debugcon", "vc"], &["-debugcon vc"]);
    // Two devices on one port.
    assert_fails(
        &["-device", "isa-debugcon,iobase=0x3f8"],
        &["isa-debugcon at port 0x3f8"],
    );
}

/// `-pidfile`: the running hx86's pid is in the file; it is gone after a
/// normal exit.
#[test]
fn pidfile_is_written_and_removed() {
    let d = scratch("pidfile");
    let pidfile = d.join("hx86.pid");
    // A ROM that spins: hx86 keeps running until killed.
    let rom = write(&d, "spin.rom", &bios_rom(&[0xeb, 0xfe], 0x10000));
    let mut child = hx86()
        .args(["-accel", "dbt", "-bios", &rom, "-pidfile"])
        .arg(&pidfile)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut content = String::new();
    for _ in 0..3000 {
        content = std::fs::read_to_string(&pidfile).unwrap_or_default();
        if content.ends_with('\n') {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(content.trim(), child.id().to_string());
    let _ = std::fs::remove_file(&pidfile);
    let o = run(&[
        "-machine",
        "accel=tcg",
        "-pidfile",
        pidfile.to_str().unwrap(),
    ]);
    assert_eq!(o.status, Some(0), "{}", o.dump());
    assert!(!pidfile.exists());
}
