//! Debian's kernel with the busybox initramfs of scripts/linux-guest.sh:
//! building it once per test process, booting it and driving its shell
//! through the serial console. Shared by the Linux tests.
//!
//! Building needs Debian's package registry for `apt-get download` once
//! (CI has it); without it [`guest`] prints why and returns `None`, unless
//! HX86_REQUIRE_LINUX=1 (set by .ci/run) makes that a failure.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The built guest: `vmlinuz`, `initrd.gz`, `busybox`, `kernel-release`.
pub struct Guest {
    pub dir: PathBuf,
}

/// How long a boot may take before a test gives up: a JIT boot takes well
/// under a minute on an idle 2-core machine; this leaves room for a loaded
/// one. (A kernel panic reboots at once, `panic=-1`, and `-no-reboot`
/// turns that into an exit, so a broken boot fails fast.)
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(12 * 60);

/// The Linux tests of one test process run one at a time: several guests
/// with several vCPUs each on a small host would starve each other's vCPU
/// threads.
pub static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The guest, built once per test process (the script also takes a lock,
/// for other processes building it at the same time).
pub fn guest() -> Option<Guest> {
    static DIR: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    DIR.get_or_init(build_guest)
        .clone()
        .map(|dir| Guest { dir })
}

fn build_guest() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("target").join("linux-guest");
    let st = Command::new(root.join("scripts/linux-guest.sh"))
        .arg(&dir)
        .stdout(Stdio::null())
        .status();
    match st {
        Ok(s) if s.success() => Some(dir),
        other => {
            let msg =
                format!("scripts/linux-guest.sh failed ({other:?}): no Debian kernel to boot");
            if std::env::var("HX86_REQUIRE_LINUX").as_deref() == Ok("1") {
                panic!("{msg}");
            }
            eprintln!("note: skipping the Linux boot test: {msg}");
            None
        }
    }
}

/// Boots the guest under `accel` with `extra` options and `append` added
/// to the kernel command line (`console=ttyS0 quiet panic=-1`), waits for
/// the init marker, sends `commands` to the shell, and returns (exit
/// status, everything the console printed).
pub fn boot_and_drive(
    accel: &str,
    g: &Guest,
    extra: &[&str],
    append: &str,
    commands: &str,
    timeout: Duration,
) -> (Option<i32>, String) {
    let cmdline = format!("console=ttyS0 quiet panic=-1 {append}");
    let mut child = super::hx86()
        .args(extra)
        .args([
            "-accel",
            accel,
            "-m",
            "512M",
            "-kernel",
            g.dir.join("vmlinuz").to_str().unwrap(),
            "-initrd",
            g.dir.join("initrd.gz").to_str().unwrap(),
            "-append",
            cmdline.trim_end(),
            "-no-reboot",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn hx86");
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let start = Instant::now();
    let mut out = Vec::new();
    let mut stdin = child.stdin.take();
    let mut sent = false;
    let status = loop {
        while let Ok(chunk) = rx.try_recv() {
            out.extend_from_slice(&chunk);
        }
        if !sent && String::from_utf8_lossy(&out).contains("HX86-GUEST-READY") {
            if let Some(mut s) = stdin.take() {
                let _ = s.write_all(commands.as_bytes());
                // Keep the pipe open: closing stdin must not end the shell
                // before it has read everything.
                stdin = Some(s);
            }
            sent = true;
        }
        if let Some(st) = child.try_wait().expect("wait") {
            break st.code();
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(100));
    while let Ok(chunk) = rx.try_recv() {
        out.extend_from_slice(&chunk);
    }
    drop(stdin);
    (status, String::from_utf8_lossy(&out).into_owned())
}

/// The end of the console output, for assertion messages.
pub fn tail_of(out: &str) -> String {
    let v: Vec<char> = out.chars().rev().take(8000).collect();
    v.into_iter().rev().collect()
}

/// The value of the guest's `KEY-2=VALUE` line (tests print their markers
/// with `$((1+1))`, so the echoed command lines never match them).
pub fn marker(out: &str, key: &str) -> String {
    out.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{key}-2=")))
        .unwrap_or_else(|| panic!("no {key} line\n{}", tail_of(out)))
        .trim()
        .to_string()
}

/// `hx86.virtio` loaded every virtio module.
pub fn assert_virtio_loaded(out: &str) {
    assert!(
        out.contains("HX86-VIRTIO-LOADED") && !out.contains("HX86-INSMOD-FAILED"),
        "the virtio modules should load\n{}",
        tail_of(out)
    );
}
