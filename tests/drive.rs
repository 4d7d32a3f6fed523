//! `-drive`, `-snapshot` and `-device virtio-blk-pci` through the binary:
//! bad options and images fail with a clear message and status 1, an image
//! in use by another hx86 is refused, a qcow2 image names `qemu-img
//! convert`, `-device help` lists the disk.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

fn fails(args: &[&str], needles: &[&str]) {
    let out = common::run(args);
    assert_eq!(out.status, Some(1), "{args:?}\n{}", out.dump());
    for n in needles {
        assert!(
            out.stderr.contains(n),
            "{args:?}: want {n:?}\n{}",
            out.dump()
        );
    }
    assert!(!out.stderr.contains("panicked"), "{}", out.dump());
}

#[test]
fn bad_drives_are_refused_clearly() {
    let dir = common::scratch("drive-bad");
    let raw = common::write(&dir, "disk.img", &vec![0u8; 1 << 20]);
    let mut q = b"QFI\xfb\0\0\0\x03".to_vec();
    q.resize(1 << 16, 0);
    let qcow = common::write(&dir, "disk.qcow2", &q);
    let d = |s: &str| format!("file={raw},{s}");
    for (args, needles) in [
        (
            vec!["-drive".into(), d("if=ide")],
            vec!["if=ide is not supported", "if=virtio"],
        ),
        (
            vec!["-drive".into(), d("if=scsi")],
            vec!["if=scsi is not supported"],
        ),
        (
            vec!["-drive".into(), d("format=qcow2")],
            vec!["qemu-img convert -O raw"],
        ),
        (
            vec!["-drive".into(), d("if=virtio,werror=stop")],
            vec!["unknown property 'werror'"],
        ),
        (
            vec!["-drive".into(), d("if=virtio,cache=fast")],
            vec!["cache=fast"],
        ),
        (vec!["-drive".into(), "if=virtio".into()], vec!["no file="]),
        (
            vec!["-drive".into(), format!("file={qcow},if=virtio")],
            vec!["is a qcow2 image", "qemu-img convert -O raw"],
        ),
        (
            vec![
                "-drive".into(),
                format!("file={}/nope.img,if=virtio,format=raw", dir.display()),
            ],
            vec!["Could not open", "nope.img"],
        ),
        (
            vec!["-device".into(), "virtio-blk-pci,drive=hd9".into()],
            vec!["drive 'hd9' not found"],
        ),
        (
            vec!["-device".into(), "virtio-blk-pci".into()],
            vec!["drive property not set"],
        ),
        (
            vec![
                "-drive".into(),
                d("if=none,id=a,format=raw"),
                "-device".into(),
                "virtio-blk-pci,drive=a,frob=1".into(),
            ],
            vec!["no property 'frob'"],
        ),
    ] {
        let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        fails(&args, &needles);
    }
}

#[test]
fn device_help_lists_virtio_blk() {
    let out = common::run(&["-device", "help"]);
    assert!(
        out.stdout.contains("name \"virtio-blk-pci\", bus PCI"),
        "{}",
        out.dump()
    );
    let out = common::run(&["-device", "virtio-blk-pci,help"]);
    for p in ["drive=", "serial=", "discard=", "write-zeroes="] {
        assert!(out.stdout.contains(p), "{p}\n{}", out.dump());
    }
}

/// hx86 holding an image read-write keeps a second hx86 out, with QEMU's
/// message; a read-only or `-snapshot` user is refused too, and after the
/// first exits the image is free again.
#[test]
fn an_image_in_use_is_refused() {
    let dir = common::scratch("drive-lock");
    let img = common::write(&dir, "disk.img", &vec![0u8; 1 << 20]);
    let sock = dir.join("qmp.sock");
    let drive = format!("file={img},format=raw,if=virtio");
    // The first: stopped (-S) with a QMP socket, holding the image.
    let mut first = common::hx86()
        .args(["-nodefaults", "-S", "-drive", &drive, "-qmp"])
        .arg(format!("unix:{},server=on,wait=off", sock.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hx86");
    // The QMP greeting comes once the machine is built, devices included
    // (the loops are hang guards).
    let start = Instant::now();
    while !sock.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "hx86 never listened"
        );
        assert!(first.try_wait().unwrap().is_none(), "the first hx86 exited");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut qmp = std::os::unix::net::UnixStream::connect(&sock).expect("connect QMP");
    qmp.set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let mut greeting = Vec::new();
    let mut b = [0u8; 1];
    while !greeting.ends_with(b"\n") {
        use std::io::Read;
        if qmp.read(&mut b).unwrap_or(0) == 0 {
            panic!("no QMP greeting: {}", String::from_utf8_lossy(&greeting));
        }
        greeting.push(b[0]);
    }
    assert!(String::from_utf8_lossy(&greeting).contains("QMP"));
    fails(
        &["-nodefaults", "-drive", &drive],
        &["Failed to get \"write\" lock", "disk.img"],
    );
    fails(
        &["-nodefaults", "-drive", &format!("{drive},readonly=on")],
        &["Failed to get shared \"write\" lock"],
    );
    fails(&["-nodefaults", "-snapshot", "-drive", &drive], &["lock"]);
    let _ = first.kill();
    let _ = first.wait();
}
