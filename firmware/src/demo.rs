//! The built-in demo guest: a 64 KiB BIOS ROM that walks the CPU from the
//! reset vector through real, protected and long mode, computes something,
//! prints on COM1 and powers off.
//!
//! The boot path (reset vector, real -> protected -> long mode, a line
//! printed in each, power-off) is `bootrom.rs`'s, shared with the
//! compute ROM; the demo's long-mode body runs a sieve of Eratosthenes over
//! a byte array at 0x10_0000 for the primes below 100000 and prints
//! `hx86 demo: primes below 100000: 9592`. A wrong count prints
//! `hx86 demo: FAIL` and writes 1 to the isa-debug-exit port 0xF4.
//!
//! RAM used: stack below 0x9000, page tables 0x1000..0x7000, a digit
//! buffer below 0x5F0, the sieve at 0x10_0000..0x11_86A0 (so the guest
//! needs a little more than 1.1 MiB of RAM).
//!
//! Under QEMU: `qemu-system-x86_64 -bios demo.rom -nographic -device
//! isa-debug-exit,iobase=0xf4,iosize=4` prints the same four lines (exit
//! status 1 there: isa-debug-exit reports (value << 1) | 1).

use iced_x86::code_asm::*;

use crate::bootrom::{build_rom, emit_sieve, lin};
pub use crate::bootrom::{
    CODE16_OFFSET, CODE32_OFFSET, CODE64_OFFSET, DATA_OFFSET, RESET_OFFSET, ROM_BASE, ROM_SIZE,
};

/// The count the guest must find.
pub const EXPECTED_PRIMES: u32 = 9592;
/// Upper bound of the sieve.
pub const SIEVE_LIMIT: u32 = 100_000;
/// Where the sieve's byte array lives in guest RAM.
pub const SIEVE_BASE: u32 = 0x10_0000;

const MSG_PRIMES: (usize, &str) = (0xC0, "hx86 demo: primes below 100000: ");
const MESSAGES: [(usize, &str); 1] = [MSG_PRIMES];

/// The demo ROM image: 64 KiB, deterministic.
pub fn demo_rom() -> Vec<u8> {
    // The sections are fixed code; failure is a bug caught by the tests.
    build_rom("demo", &MESSAGES, body).expect("the built-in demo ROM assembles")
}

/// The long-mode part: sieve, print the count, check it.
fn body(a: &mut CodeAssembler, lm: &crate::bootrom::LongMode) -> Result<(), IcedError> {
    emit_sieve(a, SIEVE_BASE, SIEVE_LIMIT)?;
    a.mov(esi, lin(MSG_PRIMES.0) as i32)?;
    a.call(lm.print)?;
    a.mov(rax, r12)?;
    a.call(lm.print_dec)?;
    a.mov(al, b'\n' as i32)?;
    a.call(lm.putc)?;
    a.cmp(r12, EXPECTED_PRIMES as i32)?;
    a.jne(lm.fail)
}

#[cfg(test)]
mod tests;
