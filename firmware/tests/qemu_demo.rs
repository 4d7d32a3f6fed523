//! Runs the demo ROM under QEMU (TCG) when `qemu-system-x86_64` is
//! installed: an independent check that the ROM is correct x86 code.
//! Skips, saying so, when QEMU is missing.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn demo_rom_runs_under_qemu() {
    let qemu = "qemu-system-x86_64";
    if Command::new(qemu).arg("--version").output().is_err() {
        eprintln!("skipped: {qemu} is not installed (apt-get install qemu-system-x86)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("hx86-fw-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rom = dir.join("demo.rom");
    std::fs::write(&rom, firmware::demo::demo_rom()).unwrap();
    let mut child = Command::new(qemu)
        .arg("-bios")
        .arg(&rom)
        .args(["-nographic", "-serial", "stdio", "-accel", "tcg"])
        .args(["-display", "none", "-monitor", "none", "-m", "32"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=4"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("QEMU did not exit within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        out,
        "hx86 demo: real mode\nhx86 demo: protected mode\nhx86 demo: long mode\n\
         hx86 demo: primes below 100000: 9592\n"
    );
    // isa-debug-exit: exit status (0 << 1) | 1.
    assert_eq!(status.code(), Some(1));
}
