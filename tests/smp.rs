//! SMP: several vCPUs in parallel host threads. A ROM of our own
//! (`firmware::smp`) starts the APs with INIT/SIPI/SIPI and checks locked
//! atomics, a spinlock and cross-modifying code across all CPUs.

mod common;

use std::time::Duration;

use common::*;

/// Hosts without the JIT run the interpreter (under qemu-user in CI's
/// aarch64 step): fewer iterations there.
const SCALE: u32 = if cfg!(target_arch = "x86_64") { 1 } else { 20 };

fn smp_rom_run(accel: &str, cpus: u32, iterations: u32) {
    let iterations = iterations / SCALE;
    let dir = scratch(&format!("smp-{accel}-{cpus}"));
    let rom = write(
        &dir,
        "smp.rom",
        &firmware::smp::smp_rom(cpus, iterations).unwrap(),
    );
    let n = cpus.to_string();
    let out = run_timeout(
        &[
            "-accel", accel, "-smp", &n, "-bios", &rom, "-serial", "stdio",
        ],
        Duration::from_secs(240),
    );
    assert_eq!(out.status, Some(0), "{}", out.dump());
    let want = format!(
        "hx86 smp: {cpus} CPUs started\nhx86 smp: xadd counter {} spinlock counter {} cross-modified code seen: ok\n",
        iterations * cpus,
        iterations / 4 * cpus
    );
    assert!(out.stdout.contains(&want), "{}", out.dump());
}

#[test]
fn locked_atomics_spinlock_and_cross_modifying_code_on_2_cpus() {
    smp_rom_run("dbt", 2, 2_000_000);
}

#[test]
fn locked_atomics_spinlock_and_cross_modifying_code_on_4_cpus() {
    smp_rom_run("dbt", 4, 1_000_000);
}

#[test]
fn locked_atomics_spinlock_and_cross_modifying_code_on_8_cpus() {
    smp_rom_run("dbt", 8, 100_000);
}

#[test]
fn the_interpreter_alone_is_atomic_too() {
    let dir = scratch("smp-interp");
    let rom = write(
        &dir,
        "smp.rom",
        &firmware::smp::smp_rom(3, 300_000 / SCALE).unwrap(),
    );
    let out = run_timeout(
        &[
            "-accel",
            "dbt,jit=off",
            "-smp",
            "3",
            "-bios",
            &rom,
            "-serial",
            "stdio",
        ],
        Duration::from_secs(240),
    );
    assert_eq!(out.status, Some(0), "{}", out.dump());
    assert!(
        out.stdout.contains("cross-modified code seen: ok"),
        "{}",
        out.dump()
    );
}

#[test]
fn smp_under_kvm_where_usable() {
    if !kvm_usable() {
        return;
    }
    smp_rom_run("kvm", 2, 20_000);
}
