//! Mode switches end to end: the test boot ROM (reset vector → real →
//! protected → long mode → sieve → COM1 → power-off).

use super::*;
use crate::testprog;

#[test]
fn boot_rom_real_to_long_mode_sieve() {
    let rom = testprog::boot_rom(10_000, 1).unwrap();
    let mut bus = TestBus::new(RAM).with_rom(rom);
    let mut cpu = Cpu::new(CpuState::reset());
    let r = cpu.run(&mut bus, 100_000_000);
    assert_eq!(r, ExitReason::PowerOff, "state: {:#x?}", cpu.state.rip);
    let out = String::from_utf8(bus.port_bytes(0x3F8)).unwrap();
    assert_eq!(out, format!("{}\n", testprog::count_primes(10_000)));
    assert_eq!(cpu.state.mode(), crate::CpuMode::Long64);
}

#[test]
fn run_returns_budget_and_resumes() {
    let rom = testprog::boot_rom(2000, 3).unwrap();
    let mut bus = TestBus::new(RAM).with_rom(rom);
    let mut cpu = Cpu::new(CpuState::reset());
    let mut n = 0;
    loop {
        match cpu.run(&mut bus, 1000) {
            ExitReason::Budget => n += 1,
            r => {
                assert_eq!(r, ExitReason::PowerOff);
                break;
            }
        }
        assert!(n < 1_000_000);
    }
    assert!(n > 10);
    assert_eq!(String::from_utf8(bus.port_bytes(0x3F8)).unwrap(), "303\n");
}

#[test]
fn kick_interrupts_run() {
    let code = asm(64, CODE, |a| {
        let mut l = a.create_label();
        a.set_label(&mut l).unwrap();
        a.jmp(l).unwrap();
    });
    let mut m = M::long64(&code);
    m.cpu
        .kick_flag()
        .store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(m.run(), ExitReason::Interrupted);
    assert_eq!(m.cpu.run(&mut m.bus, 10_000), ExitReason::Budget);
}

#[test]
fn hlt_with_interrupts_disabled_halts() {
    let code = asm(32, CODE, |a| {
        a.mov(iced_x86::code_asm::eax, 5).unwrap();
        a.cli().unwrap();
        a.hlt().unwrap();
    });
    let mut m = M::prot32(&code);
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(m.gpr(0), 5);
    assert_eq!(m.cpu.state.rip, CODE + code.len() as u64);
    assert!(m.cpu.state.halted);
}

#[test]
fn cpu_state_layout_for_generated_code() {
    use std::mem::offset_of;
    assert_eq!(offset_of!(Cpu, state), 0);
    assert_eq!(offset_of!(CpuState, gpr), 0);
    assert_eq!(offset_of!(CpuState, rip), 128);
    assert_eq!(offset_of!(CpuState, rflags), 136);
    assert_eq!(offset_of!(CpuState, segs), 144);
    let mut cpu = Cpu::new(CpuState::reset());
    let p = cpu.tlb_ptr();
    assert_eq!(p, cpu.tlb_ptr());
}
