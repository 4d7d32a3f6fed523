//! virtio-console (`-device virtio-serial-pci` + `virtconsole` /
//! `virtserialport`) through the binary: option errors, and Debian's
//! kernel under the DBT writing to `/dev/hvc0` (the bytes reach a file
//! chardev), reading a line typed into `/dev/hvc1` (a socket chardev) and
//! talking both ways over a named port on another socket chardev.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::linux::{
    assert_virtio_loaded, boot_and_drive, guest, marker, tail_of, BOOT_TIMEOUT, ONE_AT_A_TIME,
};

#[test]
fn bad_virtio_serial_options_fail_clearly() {
    for (args, msg) in [
        (
            &[
                "-device",
                "virtconsole,chardev=c0",
                "-chardev",
                "null,id=c0",
            ][..],
            "No 'virtio-serial-bus' bus found",
        ),
        (
            &[
                "-device",
                "virtio-serial-pci",
                "-device",
                "virtconsole,chardev=nope",
            ][..],
            "chardev 'nope' not found",
        ),
        (
            &[
                "-device",
                "virtio-serial-pci,max_ports=2",
                "-chardev",
                "null,id=c0",
                "-device",
                "virtserialport,chardev=c0,nr=2",
            ][..],
            "port number 2 is out of range",
        ),
        (
            &[
                "-device",
                "virtio-serial-pci",
                "-chardev",
                "null,id=c0",
                "-device",
                "virtserialport,chardev=c0,nr=0",
            ][..],
            "reserved for a virtconsole",
        ),
        (
            &["-device", "virtio-serial-pci,max_ports=0"][..],
            "max_ports=0 is out of range",
        ),
        (
            &[
                "-device",
                "virtconsole,bus=vs.0,chardev=c0",
                "-chardev",
                "null,id=c0",
            ][..],
            "bus 'vs.0' not found",
        ),
    ] {
        let out = common::run_timeout(
            &[args, &["-nodefaults"][..]].concat(),
            Duration::from_secs(60),
        );
        assert_eq!(out.status, Some(1), "{args:?}\n{}", out.dump());
        assert!(
            out.stderr.contains(msg),
            "{args:?}: want '{msg}'\n{}",
            out.dump()
        );
        assert!(!out.stderr.contains("panicked"), "{}", out.dump());
    }
}

#[test]
fn device_help_lists_the_virtio_serial_devices() {
    let out = common::run_timeout(&["-device", "help"], Duration::from_secs(60));
    for name in ["virtio-serial-pci", "virtconsole", "virtserialport"] {
        assert!(
            out.stdout.contains(&format!("name \"{name}\"")),
            "{name}\n{}",
            out.dump()
        );
    }
    let out = common::run_timeout(&["-device", "virtconsole,help"], Duration::from_secs(60));
    assert!(out.stdout.contains("chardev=<str>"), "{}", out.dump());
}

/// Connects to the port's socket (hx86 creates it at start), sends a line
/// and collects what the guest writes until `until` shows up or the
/// connection ends.
fn talk_to_port(sock: std::path::PathBuf, line: &'static str, until: &'static str) -> String {
    let start = Instant::now();
    let mut s = loop {
        match UnixStream::connect(&sock) {
            Ok(s) => break s,
            Err(e) if start.elapsed() < BOOT_TIMEOUT => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return format!("no connection: {e}"),
        }
    };
    s.write_all(line.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains(until) {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn debian_linux_hvc0_and_a_named_port_over_virtio_serial() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(g) = guest() else { return };
    let dir = common::scratch("virtio-console");
    let file = dir.join("hvc0.out");
    let sock = dir.join("port.sock");
    let hvc1 = dir.join("hvc1.sock");
    let talker = {
        let sock = sock.clone();
        std::thread::spawn(move || talk_to_port(sock, "hello-from-host\n", "PORT-OUT-2"))
    };
    // hvc1 is a terminal: it echoes the line back.
    let hvc1_talker = {
        let sock = hvc1.clone();
        std::thread::spawn(move || talk_to_port(sock, "typed-on-hvc1\n", "typed-on-hvc1"))
    };
    // Markers are computed by the shell ($((1+1))), so the echoed command
    // lines never match them.
    let cmds = "ls /dev/hvc0 /dev/hvc1 /dev/vport*p1\n\
        echo \"HVC-OUT-$((1+1))\" > /dev/hvc0\n\
        head -n1 /dev/hvc1 > /tmp/hvc1\n\
        echo \"HVC1-IN-$((1+1))=$(cat /tmp/hvc1)\"\n\
        echo \"NAME-$((1+1))=$(cat /sys/class/virtio-ports/vport*p1/name)\"\n\
        p=$(ls /dev/vport*p1)\n\
        head -n1 $p > /tmp/in\n\
        echo \"PORT-IN-$((1+1))=$(cat /tmp/in)\"\n\
        echo \"PORT-OUT-$((1+1))\" > $p\n\
        grep virtio /proc/interrupts\n\
        poweroff -f\n";
    let file_arg = format!("file,id=c0,path={}", file.display());
    let sock_arg = format!("socket,id=c1,path={},server=on,wait=off", sock.display());
    let hvc1_arg = format!("socket,id=c2,path={},server=on,wait=off", hvc1.display());
    let (status, out) = boot_and_drive(
        "dbt",
        &g,
        &[
            "-device",
            "virtio-serial-pci",
            "-chardev",
            &file_arg,
            "-device",
            "virtconsole,chardev=c0",
            "-chardev",
            &sock_arg,
            "-device",
            "virtserialport,chardev=c1,name=org.hx86.test",
            "-chardev",
            &hvc1_arg,
            "-device",
            "virtconsole,chardev=c2",
        ],
        "hx86.virtio",
        cmds,
        BOOT_TIMEOUT,
    );
    let tail = tail_of(&out);
    assert_virtio_loaded(&out);
    let value = |key: &str| marker(&out, key);
    assert_eq!(value("NAME"), "org.hx86.test", "{tail}");
    assert_eq!(value("PORT-IN"), "hello-from-host", "{tail}");
    assert_eq!(value("HVC1-IN"), "typed-on-hvc1", "{tail}");
    let hvc = std::fs::read_to_string(&file).unwrap();
    assert!(hvc.contains("HVC-OUT-2"), "hvc0's file has {hvc:?}\n{tail}");
    let from_guest = talker.join().unwrap();
    assert!(
        from_guest.contains("PORT-OUT-2"),
        "the socket got {from_guest:?}\n{tail}"
    );
    assert_eq!(status, Some(0), "poweroff -f should exit 0\n{tail}");
    // hx86 has exited: the socket is closed, so the reader ends.
    let _ = hvc1_talker.join();
}
