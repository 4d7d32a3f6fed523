//! The boot path the built-in ROMs share ([`crate::demo`], [`crate::compute`]):
//! a 64 KiB BIOS ROM ending at 4 GiB that walks the CPU from the reset
//! vector through real, protected and long mode, printing a line in each,
//! then runs the ROM's own 64-bit body, and the serial, number-printing and
//! power-off routines that body uses.
//!
//! What runs, in order (`NAME` is the ROM's name, e.g. `demo`):
//! 1. At the reset vector (0xFFFF_FFF0, real mode, CS base 0xFFFF_0000) a
//!    near jump to the 16-bit code at ROM offset 0xE000. It programs COM1
//!    (0x3F8: 115200 8N1, interrupts off) and prints `hx86 NAME: real mode`.
//!    Every byte waits for LSR (0x3FD) bit 5, THR empty.
//! 2. `o32 lgdt cs:[..]` loads the ROM's GDT (0x08 32-bit code, 0x10 data,
//!    0x18 64-bit code; accessed bits preset, so the ROM is never written),
//!    sets CR0.PE (clearing CD/NW) and far-jumps to 0x08:0xFFFF_1000.
//!    Prints `hx86 NAME: protected mode`.
//! 3. Builds page tables at 0x1000 (PML4), 0x2000 (PDPT), 0x3000..0x7000
//!    (4 PDs) identity-mapping 4 GiB with 2 MiB pages, sets CR3, CR4.PAE,
//!    EFER.LME, CR0.PG and far-jumps to 0x18:0xFFFF_2000. Prints
//!    `hx86 NAME: long mode`.
//! 4. The ROM's body (see [`code64`]). It ends at the `pass` label or jumps
//!    to `fail`.
//! 5. `pass` powers off: `out 0x604, ax` with ax = 0x2000 (hx86's ACPI PM1
//!    control port: exit status 0); if still running (QEMU), writes 0 to the
//!    isa-debug-exit port 0xF4 (32-bit), then `cli; hlt` forever. `fail`
//!    prints `hx86 NAME: FAIL` and writes 1 to port 0xF4 instead.
//!
//! RAM used by this part: stack below 0x9000, page tables 0x1000..0x7000, a
//! digit buffer below 0x5F0 (so 1 MiB of RAM is enough).
//!
//! ROM layout (offsets): data at 0x0000 (GDT, GDTR, the mode messages at
//! 0x40/0x60/0x80, `FAIL` at 0xA0, the ROM's own messages from 0xC0 up to
//! 0x1000), 32-bit code at 0x1000, 64-bit code at 0x2000, 16-bit code at
//! 0xE000, the reset vector at 0xFFF0.

use iced_x86::code_asm::asm_traits::CodeAsmInc;
use iced_x86::code_asm::*;
use iced_x86::{Code, IcedError, Instruction, MemoryOperand, Register};

/// Size of a built-in ROM.
pub const ROM_SIZE: usize = 0x1_0000;
/// Guest-physical base of the ROM (it ends at 4 GiB).
pub const ROM_BASE: u64 = 0xFFFF_0000;
/// ROM offsets of the sections.
pub const DATA_OFFSET: usize = 0x0000;
pub const CODE32_OFFSET: usize = 0x1000;
pub const CODE64_OFFSET: usize = 0x2000;
pub const CODE16_OFFSET: usize = 0xE000;
pub const RESET_OFFSET: usize = 0xFFF0;
/// Where a ROM's own messages may start in the data area.
pub const FIRST_MESSAGE: usize = 0xC0;

pub(crate) const COM1: u16 = 0x3F8;
pub(crate) const POWEROFF_PORT: u16 = 0x604;
pub(crate) const POWEROFF_VALUE: u16 = 0x2000;
pub(crate) const DEBUG_EXIT_PORT: u16 = 0xF4;
pub(crate) const STACK_TOP: u32 = 0x9000;
pub(crate) const DIGITS_END: u32 = 0x5F0;

pub(crate) const SEL_CODE32: u16 = 0x08;
pub(crate) const SEL_DATA: u16 = 0x10;
pub(crate) const SEL_CODE64: u16 = 0x18;
pub(crate) const GDT: [u64; 4] = [
    0,
    crate::boot::DESC_CODE32,
    crate::boot::DESC_DATA,
    crate::boot::DESC_CODE64,
];

// Data area layout (ROM offsets).
pub(crate) const GDT_OFF: usize = 0x00;
pub(crate) const GDTR_OFF: usize = 0x20;
const MSG_REAL: usize = 0x40;
const MSG_PM: usize = 0x60;
const MSG_LM: usize = 0x80;
const MSG_FAIL: usize = 0xA0;

/// The messages every built-in ROM named `name` prints (offset, text).
pub(crate) fn standard_messages(name: &str) -> [(usize, String); 4] {
    [
        (MSG_REAL, format!("hx86 {name}: real mode\n")),
        (MSG_PM, format!("hx86 {name}: protected mode\n")),
        (MSG_LM, format!("hx86 {name}: long mode\n")),
        (MSG_FAIL, format!("hx86 {name}: FAIL\n")),
    ]
}

/// Linear address of a ROM offset.
pub(crate) fn lin(off: usize) -> u32 {
    (ROM_BASE + off as u64) as u32
}

fn place(rom: &mut [u8], off: usize, end: usize, bytes: &[u8]) -> Result<(), String> {
    if off + bytes.len() > end {
        return Err(format!("ROM section at {off:#x} overflows its slot"));
    }
    rom[off..off + bytes.len()].copy_from_slice(bytes);
    Ok(())
}

/// Labels of the long-mode routines a ROM body may use (see [`code64`]).
pub(crate) struct LongMode {
    /// Sends AL to COM1. Clobbers BL, DX.
    pub putc: CodeLabel,
    /// Sends the NUL-terminated string at RSI. Clobbers AL, BL, DX, RSI.
    pub print: CodeLabel,
    /// Prints RAX in decimal. Clobbers RAX, RBX, RCX, RDX, RSI, RDI.
    pub print_dec: CodeLabel,
    /// Prints EAX as 8 lowercase hex digits. Clobbers as `print_dec`.
    pub print_hex32: CodeLabel,
    /// Power off (success).
    pub pass: CodeLabel,
    /// Print `FAIL`, exit with isa-debug-exit value 1.
    pub fail: CodeLabel,
}

/// Builds a 64 KiB ROM named `name`: the shared boot path, the ROM's own
/// NUL-terminated `messages` (offsets from [`FIRST_MESSAGE`], ascending;
/// each must fit before the next) and its long-mode `body`, which runs at
/// 0xFFFF_2000 after `hx86 NAME: long mode` is printed and ends by falling
/// through to `pass` or jumping to `fail`.
pub(crate) fn build_rom(
    name: &str,
    messages: &[(usize, &str)],
    body: impl FnOnce(&mut CodeAssembler, &LongMode) -> Result<(), IcedError>,
) -> Result<Vec<u8>, String> {
    let asm = |e: IcedError| e.to_string();
    let mut rom = vec![0u8; ROM_SIZE];
    let mut gdt = Vec::new();
    for d in GDT {
        gdt.extend_from_slice(&d.to_le_bytes());
    }
    place(&mut rom, GDT_OFF, GDTR_OFF, &gdt)?;
    let mut gdtr = ((GDT.len() * 8 - 1) as u16).to_le_bytes().to_vec();
    gdtr.extend_from_slice(&lin(GDT_OFF).to_le_bytes());
    place(&mut rom, GDTR_OFF, MSG_REAL, &gdtr)?;
    let standard = standard_messages(name);
    let all: Vec<(usize, &str)> = standard
        .iter()
        .map(|(o, t)| (*o, t.as_str()))
        .chain(messages.iter().copied())
        .collect();
    for (i, &(off, text)) in all.iter().enumerate() {
        let end = all.get(i + 1).map_or(CODE32_OFFSET, |m| m.0);
        if i >= standard.len() && off < FIRST_MESSAGE {
            return Err(format!("message at {off:#x} overlaps the standard ones"));
        }
        let mut z = text.as_bytes().to_vec();
        z.push(0);
        place(&mut rom, off, end, &z)?;
    }
    place(
        &mut rom,
        CODE16_OFFSET,
        RESET_OFFSET,
        &code16().map_err(asm)?,
    )?;
    place(
        &mut rom,
        CODE32_OFFSET,
        CODE64_OFFSET,
        &code32().map_err(asm)?,
    )?;
    place(
        &mut rom,
        CODE64_OFFSET,
        CODE16_OFFSET,
        &code64(body).map_err(asm)?,
    )?;
    place(
        &mut rom,
        RESET_OFFSET,
        ROM_SIZE,
        &reset_vector().map_err(asm)?,
    )?;
    Ok(rom)
}

/// At 0xFFF0 (IP within CS base 0xFFFF0000): `jmp near 0xE000`.
fn reset_vector() -> Result<Vec<u8>, IcedError> {
    let mut a = CodeAssembler::new(16)?;
    a.add_instruction(Instruction::with_branch(
        Code::Jmp_rel16,
        CODE16_OFFSET as u64,
    )?)?;
    a.assemble(RESET_OFFSET as u64)
}

/// Emits the `putc` routine: sends AL to COM1 once LSR.THRE is set.
/// Clobbers BL, DX and flags. The same bytes work at every bitness but 64
/// (which only adds a 0x66 to `mov dx`), so it is emitted per section.
fn emit_putc(a: &mut CodeAssembler, putc: &mut CodeLabel) -> Result<(), IcedError> {
    let mut wait = a.create_label();
    a.set_label(putc)?;
    a.mov(bl, al)?;
    a.mov(dx, (COM1 + 5) as i32)?;
    a.set_label(&mut wait)?;
    a.in_(al, dx)?;
    a.test(al, 0x20)?;
    a.jz(wait)?;
    a.mov(al, bl)?;
    a.mov(dx, COM1 as i32)?;
    a.out(dx, al)?;
    a.ret()
}

/// Emits the `print` routine: sends the NUL-terminated string at `str_mem`
/// (addressed by the pointer register `ptr_reg`) through `putc`. Clobbers
/// AL, BL, DX, the pointer register and flags.
fn emit_print<R: Copy>(
    a: &mut CodeAssembler,
    print: &mut CodeLabel,
    putc: CodeLabel,
    str_mem: AsmMemoryOperand,
    ptr_reg: R,
) -> Result<(), IcedError>
where
    CodeAssembler: CodeAsmInc<R>,
{
    let mut done = a.create_label();
    a.set_label(print)?;
    a.mov(al, str_mem)?;
    a.test(al, al)?;
    a.jz(done)?;
    a.call(putc)?;
    a.inc(ptr_reg)?;
    a.jmp(*print)?;
    a.set_label(&mut done)?;
    a.ret()
}

/// Real mode, at CS:0xE000 with CS base 0xFFFF0000.
fn code16() -> Result<Vec<u8>, IcedError> {
    let mut a = CodeAssembler::new(16)?;
    let mut putc = a.create_label();
    let mut print = a.create_label();
    a.cli()?;
    a.cld()?;
    a.xor(ax, ax)?;
    a.mov(ss, ax)?;
    a.mov(sp, STACK_TOP as i32)?;
    a.mov(ds, ax)?;
    a.mov(es, ax)?;
    // COM1: interrupts off, DLAB, divisor 1 (115200), 8N1.
    for (port, value) in [(1u16, 0u8), (3, 0x80), (0, 1), (1, 0), (3, 0x03)] {
        a.mov(dx, (COM1 + port) as i32)?;
        a.mov(al, value as i32)?;
        a.out(dx, al)?;
    }
    a.mov(si, MSG_REAL as i32)?;
    a.call(print)?;
    // o32 lgdt cs:[GDTR_OFF]: the 32-bit form loads all 32 base bits.
    let gdtr = MemoryOperand::new(
        Register::None,
        Register::None,
        1,
        GDTR_OFF as i64,
        2,
        false,
        Register::CS,
    );
    a.add_instruction(Instruction::with1(Code::Lgdt_m1632, gdtr)?)?;
    a.mov(eax, cr0)?;
    a.and(eax, 0x9FFF_FFFFu32 as i32)?; // caches on: clear CD, NW
    a.or(eax, 1)?;
    a.mov(cr0, eax)?;
    a.add_instruction(Instruction::with_far_branch(
        Code::Jmp_ptr1632,
        SEL_CODE32,
        lin(CODE32_OFFSET),
    )?)?;
    emit_print(&mut a, &mut print, putc, byte_ptr(si).cs(), si)?;
    emit_putc(&mut a, &mut putc)?;
    a.assemble(CODE16_OFFSET as u64)
}

/// 32-bit protected mode, flat, at 0xFFFF1000.
fn code32() -> Result<Vec<u8>, IcedError> {
    let mut a = CodeAssembler::new(32)?;
    let mut putc = a.create_label();
    let mut print = a.create_label();
    let mut pd_loop = a.create_label();
    a.mov(ax, SEL_DATA as i32)?;
    for s in [ds, es, ss, fs, gs] {
        a.mov(s, ax)?;
    }
    a.mov(esp, STACK_TOP as i32)?;
    a.mov(esi, lin(MSG_PM) as i32)?;
    a.call(print)?;
    // Page tables: PML4 0x1000, PDPT 0x2000, PDs 0x3000..0x7000.
    a.mov(edi, 0x1000)?;
    a.mov(ecx, 0x6000 / 4)?;
    a.xor(eax, eax)?;
    a.rep().stosd()?;
    a.mov(dword_ptr(0x1000), 0x2003)?;
    for i in 0..4 {
        a.mov(dword_ptr(0x2000 + 8 * i), 0x3003 + 0x1000 * i)?;
    }
    a.mov(edi, 0x3000)?;
    a.mov(eax, 0x83)?; // present, writable, 2 MiB page
    a.mov(ecx, 2048)?;
    a.set_label(&mut pd_loop)?;
    a.mov(dword_ptr(edi), eax)?;
    a.add(eax, 0x20_0000)?;
    a.add(edi, 8)?;
    a.dec(ecx)?;
    a.jnz(pd_loop)?;
    a.mov(eax, 0x1000)?;
    a.mov(cr3, eax)?;
    a.mov(eax, cr4)?;
    a.or(eax, 0x20)?; // PAE
    a.mov(cr4, eax)?;
    a.mov(ecx, 0xC000_0080u32 as i32)?; // EFER
    a.rdmsr()?;
    a.or(eax, 0x100)?; // LME
    a.wrmsr()?;
    a.mov(eax, cr0)?;
    a.or(eax, 0x8000_0000u32 as i32)?; // PG
    a.mov(cr0, eax)?;
    a.jmp_far(SEL_CODE64, lin(CODE64_OFFSET))?;
    emit_print(&mut a, &mut print, putc, byte_ptr(esi), esi)?;
    emit_putc(&mut a, &mut putc)?;
    a.assemble(lin(CODE32_OFFSET) as u64)
}

/// 64-bit long mode at 0xFFFF2000: prints the long-mode line, runs `body`,
/// then the `pass` / `fail` endings and the routines of [`LongMode`].
fn code64(
    body: impl FnOnce(&mut CodeAssembler, &LongMode) -> Result<(), IcedError>,
) -> Result<Vec<u8>, IcedError> {
    let mut a = CodeAssembler::new(64)?;
    let mut lm = LongMode {
        putc: a.create_label(),
        print: a.create_label(),
        print_dec: a.create_label(),
        print_hex32: a.create_label(),
        pass: a.create_label(),
        fail: a.create_label(),
    };
    let mut halt = a.create_label();
    a.mov(esi, lin(MSG_LM) as i32)?;
    a.call(lm.print)?;
    body(&mut a, &lm)?;
    // Power off (hx86), else isa-debug-exit 0 (QEMU), else halt.
    a.set_label(&mut lm.pass)?;
    a.mov(dx, POWEROFF_PORT as i32)?;
    a.mov(ax, POWEROFF_VALUE as i32)?;
    a.out(dx, ax)?;
    a.mov(dx, DEBUG_EXIT_PORT as i32)?;
    a.xor(eax, eax)?;
    a.out(dx, eax)?;
    a.set_label(&mut halt)?;
    a.cli()?;
    a.hlt()?;
    a.jmp(halt)?;
    a.set_label(&mut lm.fail)?;
    a.mov(esi, lin(MSG_FAIL) as i32)?;
    a.call(lm.print)?;
    a.mov(dx, DEBUG_EXIT_PORT as i32)?;
    a.mov(eax, 1)?;
    a.out(dx, eax)?;
    a.jmp(halt)?;
    emit_print_number(&mut a, &mut lm.print_dec, lm.print, None)?;
    emit_print_number(&mut a, &mut lm.print_hex32, lm.print, Some(8))?;
    emit_print(&mut a, &mut lm.print, lm.putc, byte_ptr(rsi), rsi)?;
    emit_putc(&mut a, &mut lm.putc)?;
    a.assemble(lin(CODE64_OFFSET) as u64)
}

/// Emits a routine printing RAX: in decimal (`hex_digits` None, all of RAX,
/// no leading zeros) or as that many hex digits. The digits are built
/// backwards in the buffer ending at [`DIGITS_END`], then `print` prints
/// them (tail call).
fn emit_print_number(
    a: &mut CodeAssembler,
    label: &mut CodeLabel,
    print: CodeLabel,
    hex_digits: Option<u32>,
) -> Result<(), IcedError> {
    let mut lp = a.create_label();
    let mut digit = a.create_label();
    a.set_label(label)?;
    a.mov(edi, DIGITS_END as i32)?;
    a.mov(byte_ptr(rdi), 0)?;
    match hex_digits {
        None => {
            a.mov(ecx, 10)?;
            a.set_label(&mut lp)?;
            a.xor(edx, edx)?;
            a.div(rcx)?;
            a.add(dl, b'0' as i32)?;
            a.dec(rdi)?;
            a.mov(byte_ptr(rdi), dl)?;
            a.test(rax, rax)?;
            a.jnz(lp)?;
        }
        Some(n) => {
            a.mov(ecx, n)?;
            a.set_label(&mut lp)?;
            a.mov(edx, eax)?;
            a.and(edx, 0xF)?;
            a.cmp(dl, 10)?;
            a.jb(digit)?;
            a.add(dl, (b'a' - b'0' - 10) as i32)?;
            a.set_label(&mut digit)?;
            a.add(dl, b'0' as i32)?;
            a.dec(rdi)?;
            a.mov(byte_ptr(rdi), dl)?;
            a.shr(rax, 4)?;
            a.dec(ecx)?;
            a.jnz(lp)?;
        }
    }
    a.mov(rsi, rdi)?;
    a.jmp(print)
}

/// Emits a sieve of Eratosthenes over the byte array at `base` (1 = composite)
/// for the numbers below `limit` and counts the primes into R12.
/// Clobbers RAX, RBX, RCX, RDI, R8.
pub(crate) fn emit_sieve(a: &mut CodeAssembler, base: u32, limit: u32) -> Result<(), IcedError> {
    let [mut outer, mut inner, mut next, mut count, mut c_loop, mut c_skip, mut done] =
        [(); 7].map(|_| a.create_label());
    let n = limit as i32;
    // Clear the sieve: byte[i] != 0 means i is composite.
    a.mov(edi, base as i32)?;
    a.mov(ecx, n)?;
    a.xor(eax, eax)?;
    a.rep().stosb()?;
    a.mov(r8d, base as i32)?;
    a.mov(ebx, 2)?;
    a.set_label(&mut outer)?;
    a.mov(rax, rbx)?;
    a.imul_2(rax, rbx)?;
    a.cmp(rax, n)?;
    a.jae(count)?;
    a.cmp(byte_ptr(r8 + rbx), 0)?;
    a.jne(next)?;
    a.set_label(&mut inner)?;
    a.mov(byte_ptr(r8 + rax), 1)?;
    a.add(rax, rbx)?;
    a.cmp(rax, n)?;
    a.jb(inner)?;
    a.set_label(&mut next)?;
    a.inc(rbx)?;
    a.jmp(outer)?;
    // Count the primes into r12.
    a.set_label(&mut count)?;
    a.xor(r12d, r12d)?;
    a.mov(ebx, 2)?;
    a.set_label(&mut c_loop)?;
    a.cmp(rbx, n)?;
    a.jae(done)?;
    a.cmp(byte_ptr(r8 + rbx), 0)?;
    a.jne(c_skip)?;
    a.inc(r12)?;
    a.set_label(&mut c_skip)?;
    a.inc(rbx)?;
    a.jmp(c_loop)?;
    a.set_label(&mut done)?;
    Ok(())
}
