//! hx86's image locks against a real QEMU (qemu-system-x86_64, which CI
//! installs for the comparison tests): QEMU holding an image read-write
//! keeps hx86 out, and hx86 holding it keeps QEMU out, with QEMU's own
//! "Failed to get "write" lock". Prints SKIPPED without QEMU.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use devices::virtio::block_image::{open, ImageOptions};

fn qemu() -> Option<&'static str> {
    let ok = Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some("qemu-system-x86_64")
}

fn image(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("hx86-qemu-lock-{}-{name}", std::process::id()));
    std::fs::write(&p, vec![0u8; 1 << 20]).unwrap();
    p
}

/// Whether /proc/locks shows a lock on byte `byte` of `img`.
fn locked(img: &Path, byte: u64) -> bool {
    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::metadata(img).unwrap().ino();
    std::fs::read_to_string("/proc/locks")
        .unwrap_or_default()
        .lines()
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let n = f.len();
            n >= 3
                && f[n - 3].rsplit(':').next() == Some(&ino.to_string())
                && f[n - 2].parse::<u64>().is_ok_and(|s| s <= byte)
                && f[n - 1].parse::<u64>().is_ok_and(|e| e >= byte)
        })
}

/// QEMU, stopped (-S), with the image as a virtio drive; returns once
/// QEMU holds its lock on byte `byte` (it prints its monitor prompt a
/// little before it takes every lock).
fn qemu_with(q: &str, img: &Path, extra: &str, byte: u64) -> Child {
    let mut c = Command::new(q)
        .args([
            "-S",
            "-nodefaults",
            "-display",
            "none",
            "-monitor",
            "stdio",
            "-drive",
        ])
        .arg(format!(
            "file={},format=raw,if=virtio{extra}",
            img.display()
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn qemu");
    let mut out = BufReader::new(c.stdout.take().unwrap());
    let mut seen = Vec::new();
    loop {
        let mut buf = Vec::new();
        let n = out.read_until(b' ', &mut buf).unwrap();
        seen.extend_from_slice(&buf);
        if n == 0 || String::from_utf8_lossy(&seen).contains("(qemu)") {
            break;
        }
    }
    assert!(
        String::from_utf8_lossy(&seen).contains("(qemu)"),
        "QEMU did not start: {}",
        String::from_utf8_lossy(&seen)
    );
    // A hang guard, not a timing check.
    let start = std::time::Instant::now();
    while !locked(img, byte) {
        assert!(
            start.elapsed().as_secs() < 120,
            "QEMU never locked byte {byte}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    c
}

fn opts(p: &Path, read_only: bool) -> ImageOptions {
    ImageOptions {
        path: p.to_path_buf(),
        format_raw: true,
        read_only,
        ..Default::default()
    }
}

#[test]
fn hx86_and_qemu_exclude_each_other() {
    let Some(q) = qemu() else {
        println!("SKIPPED: no qemu-system-x86_64");
        return;
    };
    let img = image("a");
    // QEMU has it read-write: hx86 can neither write nor read it.
    let mut c = qemu_with(q, &img, "", 101);
    let e = open(&opts(&img, false)).unwrap_err().to_string();
    assert!(e.contains("Failed to get \"write\" lock"), "{e}");
    let e = open(&opts(&img, true)).unwrap_err().to_string();
    assert!(e.contains("Failed to get shared \"write\" lock"), "{e}");
    let _ = c.kill();
    let _ = c.wait();
    // QEMU has it read-only: hx86 reads it too, but cannot write.
    let mut c = qemu_with(q, &img, ",readonly=on", 201);
    assert!(open(&opts(&img, true)).is_ok());
    assert!(open(&opts(&img, false)).is_err());
    let _ = c.kill();
    let _ = c.wait();
    // hx86 has it read-write: QEMU refuses to start.
    let held = open(&opts(&img, false)).unwrap();
    let out = Command::new(q)
        .args([
            "-S",
            "-nodefaults",
            "-display",
            "none",
            "-monitor",
            "none",
            "-drive",
        ])
        .arg(format!("file={},format=raw,if=virtio", img.display()))
        .stdin(Stdio::null())
        .output()
        .expect("run qemu");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "QEMU started on an image hx86 holds");
    assert!(err.contains("Failed to get \"write\" lock"), "{err}");
    drop(held);
    let _ = std::fs::remove_file(&img);
}
