//! Networking end to end: Debian's kernel (scripts/linux-guest.sh) under
//! the DBT with a virtio-net card on a user network gets 10.0.2.15 by DHCP,
//! fetches a file from an HTTP server this test runs on the host's loopback
//! (through the gateway address 10.0.2.2) and checks its md5, then serves a
//! file with busybox httpd that a host client fetches through a `hostfwd`
//! port. Plus the start-up errors of the network options, through the
//! binary. Needs no internet: everything stays on 127.0.0.1.
//!
//! The guest comes from tests/common/linux.rs (built once; without
//! Debian's package registry the boot test prints why and skips, unless
//! HX86_REQUIRE_LINUX=1, set by .ci/run).

mod common;

use common::linux::{guest, tail_of, BOOT_TIMEOUT, ONE_AT_A_TIME};

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The file the guest fetches from the host.
const PAYLOAD_LEN: usize = 4 << 20;

/// A port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Deterministic bytes (xorshift), so the md5 is computed on the host.
fn payload() -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..PAYLOAD_LEN)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn md5_of(data: &[u8]) -> String {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("linux-net-payload-{}", std::process::id()));
    std::fs::write(&path, data).unwrap();
    let out = Command::new("md5sum").arg(&path).output().expect("md5sum");
    let _ = std::fs::remove_file(&path);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// A one-file HTTP/1.0 server on 127.0.0.1; reports each transfer's
/// duration (for the throughput line the test prints).
fn http_server(body: Vec<u8>) -> (u16, mpsc::Receiver<Duration>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let mut req = Vec::new();
            let mut b = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match c.read(&mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&b[..n]),
                }
            }
            let start = Instant::now();
            let head = format!(
                "HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            if c.write_all(head.as_bytes()).is_ok() && c.write_all(&body).is_ok() {
                let _ = c.shutdown(std::net::Shutdown::Write);
                // The guest has it all once it closes its end.
                let _ = c.read(&mut b);
                let _ = tx.send(start.elapsed());
            }
        }
    });
    (port, rx)
}

/// A running hx86 whose serial console the test reads and writes.
struct Session {
    child: Child,
    stdin: std::process::ChildStdin,
    rx: mpsc::Receiver<Vec<u8>>,
    out: String,
    deadline: Instant,
}

impl Session {
    fn start(args: &[&str]) -> Self {
        let mut child = common::hx86()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn hx86");
        let mut stdout = child.stdout.take().unwrap();
        let stdin = child.stdin.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    return;
                }
            }
        });
        Self {
            child,
            stdin,
            rx,
            out: String::new(),
            deadline: Instant::now() + BOOT_TIMEOUT,
        }
    }

    fn tail(&self) -> String {
        tail_of(&self.out)
    }

    /// Waits until the console has printed `marker` on a line of its own
    /// (not the echo of the command that prints it).
    fn wait_for(&mut self, marker: &str) {
        loop {
            if self.out.lines().any(|l| l.trim() == marker) {
                return;
            }
            let left = self.deadline.checked_duration_since(Instant::now());
            let status = self.child.try_wait().expect("wait");
            match (left, status) {
                (_, Some(st)) => {
                    while let Ok(c) = self.rx.try_recv() {
                        self.out.push_str(&String::from_utf8_lossy(&c));
                    }
                    panic!("hx86 ended ({st}) before {marker}\n{}", self.tail())
                }
                (None, _) => {
                    let _ = self.child.kill();
                    panic!("no {marker} in time\n{}", self.tail())
                }
                (Some(left), None) => {
                    if let Ok(c) = self.rx.recv_timeout(left.min(Duration::from_millis(200))) {
                        self.out.push_str(&String::from_utf8_lossy(&c));
                    }
                }
            }
        }
    }

    fn send(&mut self, line: &str) {
        self.stdin.write_all(line.as_bytes()).unwrap();
        self.stdin.write_all(b"\n").unwrap();
    }

    /// Waits for hx86 to end; its exit status.
    fn finish(mut self) -> (Option<i32>, String) {
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                while let Ok(c) = self.rx.recv_timeout(Duration::from_millis(200)) {
                    self.out.push_str(&String::from_utf8_lossy(&c));
                }
                return (st.code(), self.out);
            }
            if Instant::now() > self.deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return (None, self.out);
            }
            while let Ok(c) = self.rx.recv_timeout(Duration::from_millis(100)) {
                self.out.push_str(&String::from_utf8_lossy(&c));
            }
        }
    }
}

/// What the guest's httpd serves through the forwarded port.
const HOSTFWD_TEXT: &str = "hello from the guest through hostfwd";

#[test]
fn debian_linux_dhcp_wget_and_hostfwd() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(g) = guest() else { return };
    let g = g.dir;
    let body = payload();
    let md5 = md5_of(&body);
    let (http_port, transfers) = http_server(body);
    let fwd_port = free_port();
    let netdev = format!("user,id=n0,hostfwd=tcp::{fwd_port}-:8080");
    let mut s = Session::start(&[
        "-accel",
        "dbt",
        "-m",
        "512M",
        "-kernel",
        g.join("vmlinuz").to_str().unwrap(),
        "-initrd",
        g.join("initrd.gz").to_str().unwrap(),
        "-append",
        "console=ttyS0 quiet panic=-1 hx86.virtio",
        "-no-reboot",
        "-netdev",
        &netdev,
        "-device",
        "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:57",
    ]);
    s.wait_for(&format!("HX86-GUEST-READY {}", kernel_release(&g)));
    s.send("cat /sys/class/net/eth0/address");
    s.send("udhcpc -i eth0 -n -q -t 10 -T 2 && echo HX86-DHCP-OK");
    s.wait_for("HX86-DHCP-OK");
    s.send("ifconfig eth0; route -n");
    s.send(&format!(
        "wget -q -O /tmp/payload http://10.0.2.2:{http_port}/payload && md5sum /tmp/payload && echo HX86-WGET-OK"
    ));
    s.wait_for("HX86-WGET-OK");
    s.send(&format!(
        "mkdir -p /www && echo '{HOSTFWD_TEXT}' > /www/hello.txt && httpd -p 8080 -h /www && echo HX86-HTTPD-UP"
    ));
    s.wait_for("HX86-HTTPD-UP");
    let reply = fetch_through_hostfwd(fwd_port);
    s.send("poweroff -f");
    let (status, out) = s.finish();
    let tail = tail_of(&out);
    assert!(
        out.contains("52:54:00:12:34:57"),
        "the card's MAC from mac=\n{tail}"
    );
    assert!(
        out.contains("inet addr:10.0.2.15"),
        "DHCP gave the guest 10.0.2.15\n{tail}"
    );
    assert!(
        out.lines().any(|l| l.split_whitespace().collect::<Vec<_>>()
            == ["0.0.0.0", "10.0.2.2", "0.0.0.0", "UG", "0", "0", "0", "eth0"]),
        "default route through 10.0.2.2\n{tail}"
    );
    assert!(
        out.contains(&format!("{md5}  /tmp/payload")),
        "the fetched file's md5 is {md5}\n{tail}"
    );
    assert!(
        reply.starts_with("HTTP/1.") && reply.contains(HOSTFWD_TEXT),
        "the host client through hostfwd got: {reply:?}"
    );
    assert_eq!(status, Some(0), "poweroff ends hx86 with 0\n{tail}");
    if let Ok(d) = transfers.try_recv() {
        println!(
            "guest wget of {} MiB from the host: {:.2} s, {:.2} MiB/s (one run, DBT)",
            PAYLOAD_LEN >> 20,
            d.as_secs_f64(),
            (PAYLOAD_LEN >> 20) as f64 / d.as_secs_f64()
        );
    }
}

fn kernel_release(g: &std::path::Path) -> String {
    std::fs::read_to_string(g.join("kernel-release"))
        .unwrap()
        .trim()
        .to_string()
}

/// GET /hello.txt from the guest's httpd through the forwarded port.
fn fetch_through_hostfwd(port: u16) -> String {
    let mut c =
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect to the hostfwd port");
    c.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    c.write_all(b"GET /hello.txt HTTP/1.0\r\nHost: guest\r\n\r\n")
        .unwrap();
    let mut reply = Vec::new();
    let _ = c.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply).into_owned()
}

/// Start-up errors need no guest: a taken hostfwd port, an unsupported
/// backend, a card naming a missing netdev; a netdev without a card is a
/// warning (the demo guest still runs).
#[test]
fn network_option_errors() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let nic = format!("user,hostfwd=tcp::{port}-:22");
    for (args, msg) in [
        (
            vec!["-nic", nic.as_str()],
            format!("cannot listen on 127.0.0.1:{port}"),
        ),
        (
            vec![
                "-netdev",
                "tap,id=t0,ifname=tap0",
                "-device",
                "virtio-net-pci,netdev=t0",
            ],
            "'tap' network backend is not supported".to_string(),
        ),
        (
            vec!["-nic", "bridge,br=br0"],
            "'bridge' network backend is not supported".to_string(),
        ),
        (
            vec!["-device", "virtio-net-pci,netdev=nope"],
            "no -netdev with id 'nope'".to_string(),
        ),
        (
            vec!["-nic", "user,model=e1000"],
            "model=e1000 is not supported".to_string(),
        ),
    ] {
        let o = common::run_timeout(&args, Duration::from_secs(60));
        assert_ne!(o.status, Some(0), "{args:?}\n{}", o.dump());
        assert!(
            o.stderr.contains(&msg),
            "{args:?}: want {msg:?}\n{}",
            o.dump()
        );
        assert!(!o.stderr.contains("panicked"), "{}", o.dump());
    }
    let o = common::run_timeout(&["-netdev", "user,id=lonely"], Duration::from_secs(60));
    assert!(
        o.stderr.contains("netdev lonely has no peer"),
        "{}",
        o.dump()
    );
    assert_eq!(o.status, Some(0), "{}", o.dump());
    let o = common::run_timeout(&["-device", "help"], Duration::from_secs(60));
    assert!(
        o.stdout.contains("name \"virtio-net-pci\", bus PCI"),
        "{}",
        o.dump()
    );
}
