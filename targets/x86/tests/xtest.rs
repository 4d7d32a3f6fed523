//! Runs the `xtest` differential tester (interpreter against the host CPU)
//! on fixed seeds with bounded counts, in 64-, 32- and 16-bit code: any
//! mismatch fails the test. The sequences depend only on the seed, so the
//! run is deterministic (the host CPU is the reference: x86-64 Linux only;
//! the 32/16-bit runs are skipped on a kernel without 32-bit user code
//! segments or modify_ldt; on other hosts xtest says it is skipped).

#![cfg(target_os = "linux")]

use std::process::Command;

/// Whether the host CPU can be xtest's reference; prints why not.
#[cfg(target_arch = "x86_64")]
fn host_is_reference() -> bool {
    // The sequences use these natively.
    let ok = is_x86_feature_detected!("bmi1")
        && is_x86_feature_detected!("bmi2")
        && is_x86_feature_detected!("lzcnt")
        && is_x86_feature_detected!("popcnt")
        && is_x86_feature_detected!("sse4.2")
        && is_x86_feature_detected!("movbe");
    if !ok {
        eprintln!("xtest: SKIPPED: the host lacks BMI1/BMI2/LZCNT/POPCNT/SSE4.2/MOVBE");
    }
    ok
}

/// Whether the host CPU can be xtest's reference: not on this host.
#[cfg(not(target_arch = "x86_64"))]
fn host_is_reference() -> bool {
    eprintln!(
        "xtest: SKIPPED: the host CPU is the reference and this host is {}, not x86-64",
        std::env::consts::ARCH
    );
    false
}

fn xtest(args: &[&str]) {
    if !host_is_reference() {
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_xtest"))
        .args(args)
        .args(["--quiet", "--keep-going"])
        .output()
        .expect("run xtest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.code() == Some(3) && stdout.contains("xtest: SKIPPED") {
        eprintln!("{stdout}");
        return;
    }
    assert!(
        out.status.success(),
        "xtest {args:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(": 0 mismatches"), "{stdout}");
}

#[test]
fn integer_sequences() {
    xtest(&["--seed", "1", "--count", "3000"]);
}

#[test]
fn long_integer_sequences() {
    xtest(&["--seed", "2", "--count", "500", "--len", "24"]);
}

#[test]
fn sse_sequences() {
    xtest(&["--seed", "3", "--count", "1000", "--sse"]);
}

#[test]
fn sequences_32bit() {
    xtest(&["--mode", "32", "--seed", "4", "--count", "2000"]);
}

#[test]
fn long_sequences_32bit() {
    xtest(&[
        "--mode", "32", "--seed", "5", "--count", "300", "--len", "24",
    ]);
}

#[test]
fn sequences_16bit() {
    xtest(&["--mode", "16", "--seed", "6", "--count", "2000"]);
}

#[test]
fn long_sequences_16bit() {
    xtest(&[
        "--mode", "16", "--seed", "7", "--count", "300", "--len", "24",
    ]);
}

#[test]
fn sse_sequences_32bit() {
    xtest(&["--mode", "32", "--seed", "8", "--count", "500", "--sse"]);
}
