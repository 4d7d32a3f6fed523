//! The python QMP client for the tests: `qemu.qmp` from PyPI (installed by
//! `.ci/run` in `target/qmp-venv`), and the scripts in `tests/qmp/`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The python that has `qemu.qmp`, or `None` (with the reason printed)
/// when the tests may skip.
pub fn python() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut candidates = Vec::new();
    if let Ok(p) = std::env::var("HX86_QMP_PYTHON") {
        candidates.push(PathBuf::from(p));
    }
    candidates.push(root.join("target/qmp-venv/bin/python"));
    candidates.push(PathBuf::from("python3"));
    for p in candidates {
        let ok = Command::new(&p)
            .args(["-c", "import qemu.qmp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(p);
        }
    }
    let msg = "no python with the qemu.qmp package (.ci/run installs it: \
               python3 -m venv target/qmp-venv && target/qmp-venv/bin/pip install qemu.qmp)";
    if std::env::var("HX86_REQUIRE_QMP").as_deref() == Ok("1") {
        panic!("{msg}");
    }
    eprintln!("note: skipping a QMP client test: {msg}");
    None
}

/// Runs `tests/qmp/SCRIPT ARGS` and returns its output; panics with it
/// when the script fails or takes longer than `timeout`.
pub fn script(py: &Path, name: &str, args: &[&str], timeout: Duration) -> String {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/qmp");
    let mut child = Command::new(py)
        .arg(dir.join(name))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    let _ = child.stdout.take().unwrap().read_to_string(&mut out);
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    assert!(
        status.is_some_and(|s| s.success()),
        "{name} {args:?}: {status:?}\n--- stdout ---\n{out}\n--- stderr ---\n{err}"
    );
    out
}
