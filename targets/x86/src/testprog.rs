//! Guest programs built with iced-x86's `code_asm`, for tests and
//! benchmarks of any backend (no external assembler).
//!
//! [`boot_rom`] is a 64 KiB BIOS image in the style of the firmware demo:
//! reset vector → real mode → protected mode → long mode (identity map of
//! 4 GiB with 2 MiB pages at 0x1000..0x7000) → a sieve of Eratosthenes in
//! 64-bit code over a byte array at 1 MiB, repeated `reps` times → the
//! prime count in decimal on COM1 (polling LSR) → power-off through port
//! 0x604 (0x2000), or `out 0xf4` + HLT as fallback.

use iced_x86::code_asm::*;
use iced_x86::{Code, IcedError, Instruction, MemoryOperand, Register};

/// ROM size and base (the ROM ends at 4 GiB).
pub const ROM_SIZE: usize = 0x1_0000;
pub const ROM_BASE: u64 = 0xFFFF_0000;
/// Where the sieve's byte array lives.
pub const SIEVE_BASE: u64 = 0x10_0000;

/// Number of primes below `n` (the expected output of [`boot_rom`]).
pub fn count_primes(n: u32) -> u32 {
    let n = n as usize;
    let mut s = vec![true; n.max(2)];
    s[0] = false;
    if n > 1 {
        s[1] = false;
    }
    let mut i = 2;
    while i * i < n {
        if s[i] {
            let mut j = i * i;
            while j < n {
                s[j] = false;
                j += i;
            }
        }
        i += 1;
    }
    s.iter().filter(|b| **b).count() as u32
}

fn code16() -> Result<Vec<u8>, IcedError> {
    let mut a = CodeAssembler::new(16)?;
    a.cli()?;
    // o32 lgdt cs:[0]
    a.add_instruction(Instruction::with1(
        Code::Lgdt_m1632,
        MemoryOperand::new(Register::None, Register::None, 1, 0, 2, false, Register::CS),
    )?)?;
    a.mov(eax, cr0)?;
    a.and(eax, 0x9fff_ffffu32 as i32)?;
    a.or(eax, 1)?;
    a.mov(cr0, eax)?;
    a.add_instruction(Instruction::with_far_branch(
        Code::Jmp_ptr1632,
        0x08,
        0xFFFF_1000,
    )?)?;
    a.assemble(0xE000)
}

fn code32() -> Result<Vec<u8>, IcedError> {
    let mut a = CodeAssembler::new(32)?;
    a.mov(ax, 0x10)?;
    a.mov(ds, ax)?;
    a.mov(es, ax)?;
    a.mov(ss, ax)?;
    a.mov(esp, 0x9000)?;
    // Clear 0x1000..0x7000, then PML4 -> PDPT -> 4 PDs of 2 MiB pages.
    a.mov(edi, 0x1000)?;
    a.mov(ecx, 0x6000 / 4)?;
    a.xor(eax, eax)?;
    a.cld()?;
    a.rep().stosd()?;
    a.mov(dword_ptr(0x1000), 0x2003)?;
    for k in 0..4 {
        a.mov(dword_ptr(0x2000 + k * 8), 0x3003 + k * 0x1000)?;
    }
    a.mov(edi, 0x3000)?;
    a.mov(eax, 0x83)?;
    a.mov(ecx, 2048)?;
    let mut l = a.create_label();
    a.set_label(&mut l)?;
    a.mov(dword_ptr(edi), eax)?;
    a.add(eax, 0x20_0000)?;
    a.add(edi, 8)?;
    a.dec(ecx)?;
    a.jnz(l)?;
    a.mov(eax, cr4)?;
    a.or(eax, 0x20)?;
    a.mov(cr4, eax)?;
    a.mov(eax, 0x1000)?;
    a.mov(cr3, eax)?;
    a.mov(ecx, 0xC000_0080u32 as i32)?;
    a.rdmsr()?;
    a.or(eax, 0x100)?;
    a.wrmsr()?;
    a.mov(eax, cr0)?;
    a.or(eax, 0x8000_0000u32 as i32)?;
    a.mov(cr0, eax)?;
    a.add_instruction(Instruction::with_far_branch(
        Code::Jmp_ptr1632,
        0x18,
        0xFFFF_2000,
    )?)?;
    a.assemble(0xFFFF_1000)
}

fn code64(limit: u32, reps: u32) -> Result<Vec<u8>, IcedError> {
    let mut a = CodeAssembler::new(64)?;
    let n = limit as i32;
    a.mov(r8, SIEVE_BASE)?;
    a.mov(r9d, reps as i32)?;
    let mut rep_top = a.create_label();
    a.set_label(&mut rep_top)?;
    // Mark everything prime.
    a.mov(rdi, r8)?;
    a.mov(ecx, n)?;
    a.mov(al, 1)?;
    a.rep().stosb()?;
    a.mov(ebx, 2)?;
    let mut outer = a.create_label();
    let mut next = a.create_label();
    let mut inner = a.create_label();
    let mut marked = a.create_label();
    a.set_label(&mut outer)?;
    a.mov(rax, rbx)?;
    a.imul_2(rax, rbx)?;
    a.cmp(rax, n)?;
    a.jae(marked)?;
    a.cmp(byte_ptr(r8 + rbx), 0)?;
    a.je(next)?;
    a.set_label(&mut inner)?;
    a.mov(byte_ptr(r8 + rax), 0)?;
    a.add(rax, rbx)?;
    a.cmp(rax, n)?;
    a.jb(inner)?;
    a.set_label(&mut next)?;
    a.inc(rbx)?;
    a.jmp(outer)?;
    a.set_label(&mut marked)?;
    a.dec(r9d)?;
    a.jnz(rep_top)?;
    // Count.
    a.xor(eax, eax)?;
    a.mov(ebx, 2)?;
    let mut count = a.create_label();
    let mut counted = a.create_label();
    a.set_label(&mut count)?;
    a.cmp(rbx, n)?;
    a.jae(counted)?;
    a.movzx(ecx, byte_ptr(r8 + rbx))?;
    a.add(rax, rcx)?;
    a.inc(rbx)?;
    a.jmp(count)?;
    a.set_label(&mut counted)?;
    // Decimal digits onto the stack, then out to COM1.
    a.mov(esi, 0)?;
    a.mov(ecx, 10)?;
    let mut div = a.create_label();
    a.set_label(&mut div)?;
    a.xor(edx, edx)?;
    a.div(rcx)?;
    a.add(edx, 0x30)?;
    a.push(rdx)?;
    a.inc(esi)?;
    a.test(rax, rax)?;
    a.jnz(div)?;
    let mut pr = a.create_label();
    let mut wait = a.create_label();
    a.set_label(&mut pr)?;
    a.mov(dx, 0x3FD)?;
    a.set_label(&mut wait)?;
    a.in_(al, dx)?;
    a.test(al, 0x20)?;
    a.jz(wait)?;
    a.pop(rax)?;
    a.mov(dx, 0x3F8)?;
    a.out(dx, al)?;
    a.dec(esi)?;
    a.jnz(pr)?;
    a.mov(al, 0x0a)?;
    a.out(dx, al)?;
    // Power off (hx86 PM1 control), then isa-debug-exit, then halt.
    a.mov(dx, 0x604)?;
    a.mov(ax, 0x2000)?;
    a.out(dx, ax)?;
    a.xor(eax, eax)?;
    a.out(0xF4, eax)?;
    a.cli()?;
    a.hlt()?;
    a.assemble(0xFFFF_2000)
}

/// Builds the boot ROM; it prints the number of primes below `limit`
/// after running the sieve `reps` (>= 1) times.
pub fn boot_rom(limit: u32, reps: u32) -> Result<Vec<u8>, IcedError> {
    let mut rom = vec![0xF4u8; ROM_SIZE];
    // GDTR at offset 0, GDT at 0x10: null, 0x08 code32, 0x10 data, 0x18 code64.
    rom[0..2].copy_from_slice(&0x1fu16.to_le_bytes());
    rom[2..6].copy_from_slice(&0xFFFF_0010u32.to_le_bytes());
    let gdt: [u64; 4] = [
        0,
        0x00cf_9b00_0000_ffff,
        0x00cf_9300_0000_ffff,
        0x00af_9b00_0000_ffff,
    ];
    for (k, d) in gdt.iter().enumerate() {
        rom[0x10 + k * 8..0x18 + k * 8].copy_from_slice(&d.to_le_bytes());
    }
    let place =
        |rom: &mut Vec<u8>, off: usize, b: &[u8]| rom[off..off + b.len()].copy_from_slice(b);
    place(&mut rom, 0x1000, &code32()?);
    place(&mut rom, 0x2000, &code64(limit, reps.max(1))?);
    place(&mut rom, 0xE000, &code16()?);
    // Reset vector: jmp near 0xE000 (16-bit).
    let mut a = CodeAssembler::new(16)?;
    a.add_instruction(Instruction::with_branch(Code::Jmp_rel16, 0xE000)?)?;
    let rv = a.assemble(0xFFF0)?;
    place(&mut rom, 0xFFF0, &rv);
    Ok(rom)
}
