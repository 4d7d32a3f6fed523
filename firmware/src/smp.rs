//! The SMP test ROM: the bootstrap processor starts every other vCPU with
//! INIT / start-up / start-up IPIs, then all of them hammer shared memory
//! at once, and the BSP checks the exact results:
//!
//! 1. `LOCK XADD` of 1 into one counter, `iterations` times per CPU: the
//!    total is exact only if every locked add is atomic;
//! 2. a `LOCK CMPXCHG` spinlock guarding a plain (non-atomic)
//!    load/increment/store of a second counter, `iterations / 4` times per
//!    CPU: exact only if the lock excludes and its release is ordered;
//! 3. cross-modifying code: each AP loops on `mov eax, 0; cmp eax, 1;
//!    jne` until the BSP rewrites the instruction's immediate to 1; an AP
//!    that never sees the new code never reports done (the BSP fails after
//!    a bounded wait).
//!
//! The APs run in 32-bit protected mode from a trampoline the BSP writes to
//! RAM at [`TRAMPOLINE`] (start-up vector `TRAMPOLINE >> 12`). The BSP runs
//! in long mode (the shared boot path of [`crate::bootrom`]) and prints
//! `hx86 smp: N CPUs ... ok` then powers off, or prints what is wrong and
//! fails (exit status 1 through isa-debug-exit).

use iced_x86::code_asm::*;
use iced_x86::{BlockEncoderOptions, Code, IcedError, Instruction, MemoryOperand, Register};

use crate::bootrom::{build_rom, lin, GDT_OFF, SEL_CODE32, SEL_DATA};
use crate::error::Error;

/// Where the APs start (real mode, CS = 0x0A00).
pub const TRAMPOLINE: u32 = 0xA000;
/// The shared variables (one page of RAM).
const VARS: u32 = 0xB000;
const STARTED: u32 = VARS;
const COUNTER: u32 = VARS + 0x40;
const LOCK: u32 = VARS + 0x80;
const VALUE: u32 = VARS + 0xC0;
const IN_LOOP: u32 = VARS + 0x100;
const DONE: u32 = VARS + 0x140;
/// Offset of the 32-bit AP code in the trampoline page.
const AP32: u32 = 0x40;
/// Offset of the GDTR the APs load.
const AP_GDTR: u32 = 0x30;
/// Local APIC registers (ICR low/high).
const ICR_LO: u32 = 0xFEE0_0300;
const ICR_HI: u32 = 0xFEE0_0310;
/// Bounded waits of the BSP: 2^WAIT_TSC_SHIFT TSC ticks (about 137 s at
/// hx86's 1 GHz TSC): a hang guard that a loaded machine does not reach,
/// below the tests' 240 s.
const WAIT_TSC_SHIFT: u32 = 37;

const MESSAGES: [(usize, &str); 9] = [
    (0xC0, "hx86 smp: "),
    (0xD0, " CPUs started\n"),
    (0xE0, "hx86 smp: xadd counter "),
    (0x100, " spinlock counter "),
    (0x120, " cross-modified code seen: ok\n"),
    (0x140, "hx86 smp: timed out waiting for the APs: started "),
    (0x180, ", in the patched loop "),
    (0x1A0, ", done "),
    (0x1B0, "\n"),
];

/// The 16-bit start of the trampoline: protected mode, then `AP32`.
fn trampoline16() -> Result<Vec<u8>, IcedError> {
    let mut a = CodeAssembler::new(16)?;
    a.cli()?;
    let gdtr = MemoryOperand::new(
        Register::None,
        Register::None,
        1,
        AP_GDTR as i64,
        2,
        false,
        Register::CS,
    );
    a.add_instruction(Instruction::with1(Code::Lgdt_m1632, gdtr)?)?;
    a.mov(eax, cr0)?;
    a.or(eax, 1)?;
    a.mov(cr0, eax)?;
    a.add_instruction(Instruction::with_far_branch(
        Code::Jmp_ptr1632,
        SEL_CODE32,
        TRAMPOLINE + AP32,
    )?)?;
    a.assemble(0)
}

/// The APs' 32-bit part; returns it and the address of the imm32 the BSP
/// patches.
fn trampoline32(iterations: u32) -> Result<(Vec<u8>, u32), IcedError> {
    let mut a = CodeAssembler::new(32)?;
    let [mut l1, mut l2, mut spin, mut l3, mut park] = [(); 5].map(|_| a.create_label());
    a.mov(ax, SEL_DATA as i32)?;
    for s in [ds, es, ss] {
        a.mov(s, ax)?;
    }
    a.lock().inc(dword_ptr(STARTED))?;
    emit_tests(&mut a, iterations, [&mut l1, &mut l2, &mut spin])?;
    a.lock().inc(dword_ptr(IN_LOOP))?;
    a.set_label(&mut l3)?;
    // `mov eax, imm32` (B8 id): the BSP rewrites the immediate.
    a.add_instruction(Instruction::with2(
        Code::Mov_r32_imm32,
        Register::EAX,
        0u32,
    )?)?;
    a.cmp(eax, 1)?;
    a.jne(l3)?;
    a.lock().inc(dword_ptr(DONE))?;
    a.set_label(&mut park)?;
    a.cli()?;
    a.hlt()?;
    a.jmp(park)?;
    let base = u64::from(TRAMPOLINE + AP32);
    let r = a.assemble_options(base, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)?;
    let off = r.label_ip(&l3)? - base;
    Ok((r.inner.code_buffer, (base + off + 1) as u32))
}

/// Tests 1 and 2 on the current CPU (32- or 64-bit code; ECX counts).
fn emit_tests(
    a: &mut CodeAssembler,
    iterations: u32,
    [l1, l2, spin]: [&mut CodeLabel; 3],
) -> Result<(), IcedError> {
    a.mov(ecx, iterations as i32)?;
    a.set_label(l1)?;
    a.mov(eax, 1)?;
    a.lock().xadd(dword_ptr(COUNTER), eax)?;
    a.dec(ecx)?;
    a.jnz(*l1)?;
    a.mov(ecx, (iterations / 4) as i32)?;
    a.set_label(l2)?;
    a.xor(eax, eax)?;
    a.set_label(spin)?;
    a.pause()?;
    a.xor(eax, eax)?;
    a.mov(edx, 1)?;
    a.lock().cmpxchg(dword_ptr(LOCK), edx)?;
    a.jne(*spin)?;
    a.mov(eax, dword_ptr(VALUE))?;
    a.inc(eax)?;
    a.mov(dword_ptr(VALUE), eax)?;
    a.mov(dword_ptr(LOCK), 0)?;
    a.dec(ecx)?;
    a.jnz(*l2)?;
    Ok(())
}

/// Waits until the dword at `addr` equals `want`, at most [`WAIT_TSC`]
/// time-stamp counter ticks; jumps to `timeout` otherwise. Clobbers EAX,
/// EDX, R8.
fn emit_wait(
    a: &mut CodeAssembler,
    addr: u32,
    want: u32,
    timeout: CodeLabel,
) -> Result<(), IcedError> {
    let [mut top, mut ok] = [(); 2].map(|_| a.create_label());
    a.rdtsc()?;
    a.shl(rdx, 32)?;
    a.or(rax, rdx)?;
    a.mov(r8, rax)?;
    a.set_label(&mut top)?;
    a.cmp(dword_ptr(addr), want as i32)?;
    a.je(ok)?;
    a.pause()?;
    a.rdtsc()?;
    a.shl(rdx, 32)?;
    a.or(rax, rdx)?;
    a.sub(rax, r8)?;
    a.shr(rax, WAIT_TSC_SHIFT)?;
    a.jz(top)?;
    a.jmp(timeout)?;
    a.set_label(&mut ok)?;
    Ok(())
}

/// Stores `bytes` at guest-physical `addr` with dword moves.
fn emit_store_bytes(a: &mut CodeAssembler, addr: u32, bytes: &[u8]) -> Result<(), IcedError> {
    for (i, c) in bytes.chunks(4).enumerate() {
        let mut w = [0u8; 4];
        w[..c.len()].copy_from_slice(c);
        a.mov(dword_ptr(addr + 4 * i as u32), u32::from_le_bytes(w) as i32)?;
    }
    Ok(())
}

/// Writes the ICR (destination shorthand "all excluding self").
fn emit_ipi(a: &mut CodeAssembler, icr: u32) -> Result<(), IcedError> {
    // The APIC page is above 2 GiB: no absolute disp32 in 64-bit code.
    a.mov(edi, ICR_LO as i32)?;
    a.mov(dword_ptr(rdi + (ICR_HI - ICR_LO) as i32), 0)?;
    a.mov(dword_ptr(rdi), icr as i32)?;
    // A short delay (the SDM's 10 ms / 200 us are for real hardware).
    let mut d = a.create_label();
    a.mov(ecx, 1000)?;
    a.set_label(&mut d)?;
    a.pause()?;
    a.dec(ecx)?;
    a.jnz(d)?;
    Ok(())
}

/// The ROM for a machine with `cpus` vCPUs (2..=64), each doing
/// `iterations` locked adds (at least 4).
pub fn smp_rom(cpus: u32, iterations: u32) -> Result<Vec<u8>, Error> {
    let bad = |reason: String| Error::RomBuild {
        name: "smp",
        reason,
    };
    if !(2..=64).contains(&cpus) || !(4..=1 << 28).contains(&iterations) {
        return Err(bad(format!(
            "{cpus} CPUs, {iterations} iterations: need 2..=64 CPUs and 4..=2^28 iterations"
        )));
    }
    let t16 = trampoline16().map_err(|e| bad(e.to_string()))?;
    let (t32, patch) = trampoline32(iterations).map_err(|e| bad(e.to_string()))?;
    let mut page = vec![0u8; AP32 as usize + t32.len()];
    page[..t16.len()].copy_from_slice(&t16);
    page[AP_GDTR as usize..AP_GDTR as usize + 2].copy_from_slice(&31u16.to_le_bytes());
    page[AP_GDTR as usize + 2..AP_GDTR as usize + 6].copy_from_slice(&lin(GDT_OFF).to_le_bytes());
    page[AP32 as usize..].copy_from_slice(&t32);
    let aps = cpus - 1;
    let msg = |i: usize| lin(MESSAGES[i].0) as i32;
    build_rom("smp", &MESSAGES, |a, lm| {
        let mut timeout = a.create_label();
        let [mut l1, mut l2, mut spin, mut bad_sum] = [(); 4].map(|_| a.create_label());
        // Shared variables and the trampoline.
        a.mov(edi, VARS as i32)?;
        a.xor(eax, eax)?;
        a.mov(ecx, 0x400)?;
        a.rep().stosd()?;
        emit_store_bytes(a, TRAMPOLINE, &page)?;
        // INIT (assert), then two start-up IPIs, to all but this CPU.
        emit_ipi(a, 0x000C_4500)?;
        for _ in 0..2 {
            emit_ipi(a, 0x000C_4600 | (TRAMPOLINE >> 12))?;
        }
        emit_wait(a, STARTED, aps, timeout)?;
        a.mov(esi, msg(0))?;
        a.call(lm.print)?;
        a.mov(eax, cpus as i32)?;
        a.call(lm.print_dec)?;
        a.mov(esi, msg(1))?;
        a.call(lm.print)?;
        // The BSP's own share of tests 1 and 2.
        emit_tests(a, iterations, [&mut l1, &mut l2, &mut spin])?;
        // Test 3: patch the code the APs loop in once all of them are in.
        emit_wait(a, IN_LOOP, aps, timeout)?;
        a.mov(dword_ptr(patch), 1)?;
        emit_wait(a, DONE, aps, timeout)?;
        // Results.
        a.mov(esi, msg(2))?;
        a.call(lm.print)?;
        a.mov(eax, dword_ptr(COUNTER))?;
        a.call(lm.print_dec)?;
        a.mov(esi, msg(3))?;
        a.call(lm.print)?;
        a.mov(eax, dword_ptr(VALUE))?;
        a.call(lm.print_dec)?;
        a.cmp(dword_ptr(COUNTER), (iterations * cpus) as i32)?;
        a.jne(bad_sum)?;
        a.cmp(dword_ptr(VALUE), (iterations / 4 * cpus) as i32)?;
        a.jne(bad_sum)?;
        a.mov(esi, msg(4))?;
        a.call(lm.print)?;
        a.jmp(lm.pass)?;
        a.set_label(&mut bad_sum)?;
        a.mov(al, b'\n' as i32)?;
        a.call(lm.putc)?;
        a.jmp(lm.fail)?;
        a.set_label(&mut timeout)?;
        for (i, var) in [STARTED, IN_LOOP, DONE].into_iter().enumerate() {
            a.mov(esi, msg(5 + i))?;
            a.call(lm.print)?;
            a.mov(eax, dword_ptr(var))?;
            a.call(lm.print_dec)?;
        }
        a.mov(esi, msg(8))?;
        a.call(lm.print)?;
        a.jmp(lm.fail)?;
        Ok(())
    })
    .map_err(bad)
}
