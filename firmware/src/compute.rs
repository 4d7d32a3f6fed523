//! The compute guest: a 64 KiB BIOS ROM for benchmarking the accelerators
//! on deterministic, CPU-bound integer code. It boots like the demo
//! (reset vector -> real -> protected -> long mode, a line printed in each;
//! the shared boot path of `bootrom.rs`), then in long mode runs `rounds`
//! rounds of:
//!
//! 1. a sieve of Eratosthenes for the primes below `sieve_limit` (a byte
//!    array at 0x10_0000, the same code as the demo's), counted;
//! 2. a buffer of `crc_bytes` bytes (at the first 4 KiB boundary after the
//!    sieve) filled with xorshift32 words seeded from the running `state`;
//! 3. the CRC-32 (IEEE 802.3, reflected, table-driven with a table the guest
//!    builds at 0x9000) of that buffer;
//! 4. a heap sort (unsigned) of the buffer's first `sort_len` words, and the
//!    CRC-32 of the sorted words;
//! 5. `state = rotl(state, 5) ^ crc ^ sorted_crc ^ primes`.
//!
//! Then it prints one line on COM1,
//! `hx86 compute: rounds=R primes=P crc=XXXXXXXX sort=XXXXXXXX state=XXXXXXXX`
//! (the last round's values, hex in lowercase), compares `state` with the
//! value [`reference`] computed when the ROM was built, and powers off
//! (exit status 0 under hx86, isa-debug-exit 0, i.e. status 1, under QEMU);
//! a mismatch prints `hx86 compute: FAIL` and exits through isa-debug-exit
//! with 1 (status 3).
//!
//! [`ComputeConfig::default`] takes about 1 to 3 s under QEMU TCG; RAM
//! needed: [`ComputeConfig::ram_needed`] (under 3 MiB for the default).
//!
//! Write one to a file with
//! `cargo run --release -p firmware --example write-compute-rom -- OUT.rom [rounds=N,sieve=N,crc=N,sort=N]`
//! and run it with `hx86 -bios OUT.rom`.

use iced_x86::code_asm::*;

use crate::bootrom::{build_rom, emit_sieve, lin, LongMode};
use crate::Error;

/// Where the sieve's byte array lives in guest RAM.
pub const SIEVE_BASE: u32 = 0x10_0000;
/// Where the guest builds its CRC-32 table (256 u32).
pub const CRC_TABLE: u32 = 0x9000;
/// The first `state`.
pub const SEED: u32 = 0x1234_5678;
/// The reflected CRC-32 polynomial.
const POLY: u32 = 0xEDB8_8320;

/// Bounds of the parameters (so every address fits an immediate and the
/// guest fits in 32 MiB of RAM).
pub const MAX_ROUNDS: u32 = 1_000_000;
pub const MAX_SIEVE_LIMIT: u32 = 8 << 20;
pub const MAX_CRC_BYTES: u32 = 16 << 20;

const MSG_ROUNDS: (usize, &str) = (0xC0, "hx86 compute: rounds=");
const MSG_PRIMES: (usize, &str) = (0xE0, " primes=");
const MSG_CRC: (usize, &str) = (0xF0, " crc=");
const MSG_SORT: (usize, &str) = (0x100, " sort=");
const MSG_STATE: (usize, &str) = (0x110, " state=");
const MESSAGES: [(usize, &str); 5] = [MSG_ROUNDS, MSG_PRIMES, MSG_CRC, MSG_SORT, MSG_STATE];

/// The size of the workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ComputeConfig {
    /// How many times the whole workload runs (1..=[`MAX_ROUNDS`]).
    pub rounds: u32,
    /// The sieve counts the primes below this (2..=[`MAX_SIEVE_LIMIT`]).
    pub sieve_limit: u32,
    /// Bytes of the CRC-32 buffer: a multiple of 4, 4..=[`MAX_CRC_BYTES`].
    pub crc_bytes: u32,
    /// How many u32 words of the buffer are sorted (1..=crc_bytes/4).
    pub sort_len: u32,
}

impl Default for ComputeConfig {
    /// The benchmark size: about 1 to 3 s under QEMU TCG.
    fn default() -> Self {
        ComputeConfig {
            rounds: 80,
            sieve_limit: 1_000_000,
            crc_bytes: 256 << 10,
            sort_len: 16 << 10,
        }
    }
}

impl ComputeConfig {
    /// A size for tests: a few million guest instructions.
    pub fn small() -> Self {
        ComputeConfig {
            rounds: 2,
            sieve_limit: 20_000,
            crc_bytes: 16 << 10,
            sort_len: 1000,
        }
    }

    /// Parses `rounds=N,sieve=N,crc=N,sort=N` (any subset, the rest from
    /// [`ComputeConfig::default`]; `small` alone is [`ComputeConfig::small`]).
    pub fn parse(spec: &str) -> Result<Self, Error> {
        if spec.trim() == "small" {
            return Ok(Self::small());
        }
        let mut c = Self::default();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let bad = || Error::ComputeConfig(format!("'{item}': expected KEY=NUMBER"));
            let (k, v) = item.split_once('=').ok_or_else(bad)?;
            let n: u32 = v.trim().parse().map_err(|_| bad())?;
            match k.trim() {
                "rounds" => c.rounds = n,
                "sieve" => c.sieve_limit = n,
                "crc" => c.crc_bytes = n,
                "sort" => c.sort_len = n,
                other => {
                    return Err(Error::ComputeConfig(format!(
                        "unknown key '{other}' (use rounds, sieve, crc, sort)"
                    )))
                }
            }
        }
        c.validate()?;
        Ok(c)
    }

    /// Checks the bounds documented on the fields.
    pub fn validate(&self) -> Result<(), Error> {
        let err = |m: String| Err(Error::ComputeConfig(m));
        if !(1..=MAX_ROUNDS).contains(&self.rounds) {
            return err(format!("rounds={} is not in 1..={MAX_ROUNDS}", self.rounds));
        }
        if !(2..=MAX_SIEVE_LIMIT).contains(&self.sieve_limit) {
            return err(format!(
                "sieve={} is not in 2..={MAX_SIEVE_LIMIT}",
                self.sieve_limit
            ));
        }
        if !(4..=MAX_CRC_BYTES).contains(&self.crc_bytes) || !self.crc_bytes.is_multiple_of(4) {
            return err(format!(
                "crc={} is not a multiple of 4 in 4..={MAX_CRC_BYTES}",
                self.crc_bytes
            ));
        }
        if !(1..=self.crc_bytes / 4).contains(&self.sort_len) {
            return err(format!(
                "sort={} is not in 1..={} (crc/4)",
                self.sort_len,
                self.crc_bytes / 4
            ));
        }
        Ok(())
    }

    /// Guest-physical address of the CRC / sort buffer.
    pub fn buffer_base(&self) -> u64 {
        (u64::from(SIEVE_BASE) + u64::from(self.sieve_limit) + 0xFFF) & !0xFFF
    }

    /// Bytes of guest RAM the guest touches (from 0).
    pub fn ram_needed(&self) -> u64 {
        self.buffer_base() + u64::from(self.crc_bytes)
    }
}

/// What the guest computes (the last round's values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checksums {
    pub primes: u32,
    pub crc: u32,
    pub sort: u32,
    pub state: u32,
}

/// The line the guest prints (without the newline).
pub fn result_line(cfg: &ComputeConfig, c: &Checksums) -> String {
    format!(
        "hx86 compute: rounds={} primes={} crc={:08x} sort={:08x} state={:08x}",
        cfg.rounds, c.primes, c.crc, c.sort, c.state
    )
}

/// The workload computed in plain Rust, independently of the guest code:
/// what the guest must print. Fails on parameters out of bounds.
pub fn reference(cfg: &ComputeConfig) -> Result<Checksums, Error> {
    cfg.validate()?;
    let primes = reference_primes(cfg.sieve_limit);
    let table = crc32_table();
    let words = (cfg.crc_bytes / 4) as usize;
    let mut out = Checksums {
        primes,
        crc: 0,
        sort: 0,
        state: SEED,
    };
    let mut buf = vec![0u32; words];
    for _ in 0..cfg.rounds {
        let mut x = out.state | 1;
        for w in buf.iter_mut() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *w = x;
        }
        out.crc = crc32_words(&table, &buf);
        let sorted = &mut buf[..cfg.sort_len as usize];
        sorted.sort_unstable();
        out.sort = crc32_words(&table, sorted);
        out.state = out.state.rotate_left(5) ^ out.crc ^ out.sort ^ primes;
    }
    Ok(out)
}

/// The number of primes below `limit`.
fn reference_primes(limit: u32) -> u32 {
    let n = limit as usize;
    let mut composite = vec![false; n];
    let mut i = 2;
    while i * i < n {
        if !composite[i] {
            for j in (i * i..n).step_by(i) {
                composite[j] = true;
            }
        }
        i += 1;
    }
    (2..n).filter(|&k| !composite[k]).count() as u32
}

fn crc32_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    for (i, e) in t.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
        }
        *e = c;
    }
    t
}

fn crc32_bytes(table: &[u32; 256], bytes: impl IntoIterator<Item = u8>) -> u32 {
    !bytes.into_iter().fold(!0u32, |c, b| {
        table[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8)
    })
}

/// CRC-32 of the words as the guest stores them (little endian).
fn crc32_words(table: &[u32; 256], words: &[u32]) -> u32 {
    crc32_bytes(table, words.iter().flat_map(|w| w.to_le_bytes()))
}

/// The compute ROM for `cfg`: 64 KiB, deterministic.
pub fn compute_rom(cfg: &ComputeConfig) -> Result<Vec<u8>, Error> {
    let expected = reference(cfg)?;
    build_rom("compute", &MESSAGES, |a, lm| body(a, lm, cfg, &expected)).map_err(|reason| {
        Error::RomBuild {
            name: "compute",
            reason,
        }
    })
}

/// The long-mode part. Registers across a round: R15D rounds left, R14D
/// state, R13D primes, EBP the buffer's CRC, R12D the sorted words' CRC.
fn body(
    a: &mut CodeAssembler,
    lm: &LongMode,
    cfg: &ComputeConfig,
    expected: &Checksums,
) -> Result<(), IcedError> {
    // Below 32 MiB for valid parameters: an imm32.
    let buf = cfg.buffer_base() as i32;
    let mut crc32 = a.create_label();
    let mut sift = a.create_label();
    let [mut t_outer, mut t_inner, mut t_skip, mut round, mut fill] =
        [(); 5].map(|_| a.create_label());
    let [mut h_build, mut h_sort, mut h_done] = [(); 3].map(|_| a.create_label());

    // The CRC-32 table.
    a.xor(ecx, ecx)?;
    a.set_label(&mut t_outer)?;
    a.mov(eax, ecx)?;
    a.mov(edx, 8)?;
    a.set_label(&mut t_inner)?;
    a.shr(eax, 1)?;
    a.jnc(t_skip)?;
    a.xor(eax, POLY as i32)?;
    a.set_label(&mut t_skip)?;
    a.dec(edx)?;
    a.jnz(t_inner)?;
    a.mov(dword_ptr(rcx * 4 + CRC_TABLE as i32), eax)?;
    a.inc(ecx)?;
    a.cmp(ecx, 256)?;
    a.jb(t_outer)?;

    a.mov(r15d, cfg.rounds as i32)?;
    a.mov(r14d, SEED as i32)?;
    a.set_label(&mut round)?;
    // 1. The sieve (count in R12).
    emit_sieve(a, SIEVE_BASE, cfg.sieve_limit)?;
    a.mov(r13d, r12d)?;
    // 2. xorshift32 from state | 1.
    a.mov(eax, r14d)?;
    a.or(eax, 1)?;
    a.mov(edi, buf)?;
    a.mov(ecx, (cfg.crc_bytes / 4) as i32)?;
    a.set_label(&mut fill)?;
    for (shl, n) in [(true, 13), (false, 17), (true, 5)] {
        a.mov(edx, eax)?;
        if shl {
            a.shl(edx, n)?;
        } else {
            a.shr(edx, n)?;
        }
        a.xor(eax, edx)?;
    }
    a.mov(dword_ptr(rdi), eax)?;
    a.add(rdi, 4)?;
    a.dec(ecx)?;
    a.jnz(fill)?;
    // 3. CRC of the buffer.
    a.mov(esi, buf)?;
    a.mov(ecx, cfg.crc_bytes as i32)?;
    a.call(crc32)?;
    a.mov(ebp, eax)?;
    // 4. Heap sort of the first sort_len words: RDI base, R10 heap size,
    // R11 the next root to sift while building the heap.
    a.mov(edi, buf)?;
    a.mov(r10d, cfg.sort_len as i32)?;
    a.mov(r11, r10)?;
    a.shr(r11, 1)?;
    a.set_label(&mut h_build)?;
    a.test(r11, r11)?;
    a.jz(h_sort)?;
    a.dec(r11)?;
    a.mov(rbx, r11)?;
    a.call(sift)?;
    a.jmp(h_build)?;
    a.set_label(&mut h_sort)?;
    a.cmp(r10, 1)?;
    a.jbe(h_done)?;
    a.dec(r10)?;
    a.mov(eax, dword_ptr(rdi))?;
    a.mov(edx, dword_ptr(rdi + r10 * 4))?;
    a.mov(dword_ptr(rdi), edx)?;
    a.mov(dword_ptr(rdi + r10 * 4), eax)?;
    a.xor(ebx, ebx)?;
    a.call(sift)?;
    a.jmp(h_sort)?;
    a.set_label(&mut h_done)?;
    a.mov(esi, buf)?;
    a.mov(ecx, (cfg.sort_len * 4) as i32)?;
    a.call(crc32)?;
    a.mov(r12d, eax)?;
    // 5. Fold into the state.
    a.rol(r14d, 5)?;
    a.xor(r14d, ebp)?;
    a.xor(r14d, r12d)?;
    a.xor(r14d, r13d)?;
    a.dec(r15d)?;
    a.jnz(round)?;

    // The result line.
    a.mov(esi, lin(MSG_ROUNDS.0) as i32)?;
    a.call(lm.print)?;
    a.mov(eax, cfg.rounds as i32)?;
    a.call(lm.print_dec)?;
    a.mov(esi, lin(MSG_PRIMES.0) as i32)?;
    a.call(lm.print)?;
    a.mov(eax, r13d)?;
    a.call(lm.print_dec)?;
    for (msg, reg) in [(MSG_CRC, ebp), (MSG_SORT, r12d), (MSG_STATE, r14d)] {
        a.mov(esi, lin(msg.0) as i32)?;
        a.call(lm.print)?;
        a.mov(eax, reg)?;
        a.call(lm.print_hex32)?;
    }
    a.mov(al, b'\n' as i32)?;
    a.call(lm.putc)?;
    a.cmp(r14d, expected.state as i32)?;
    a.jne(lm.fail)?;
    a.jmp(lm.pass)?;

    // crc32: RSI data, RCX length (> 0) -> EAX. Clobbers RCX, RDX, RSI.
    let mut c_loop = a.create_label();
    a.set_label(&mut crc32)?;
    a.mov(eax, -1)?;
    a.set_label(&mut c_loop)?;
    a.movzx(edx, byte_ptr(rsi))?;
    a.xor(edx, eax)?;
    a.and(edx, 0xFF)?;
    a.shr(eax, 8)?;
    a.xor(eax, dword_ptr(rdx * 4 + CRC_TABLE as i32))?;
    a.inc(rsi)?;
    a.dec(rcx)?;
    a.jnz(c_loop)?;
    a.not(eax)?;
    a.ret()?;

    // sift: moves the word at root RBX down the max-heap of R10 words at
    // RDI. Clobbers RAX, RBX, RCX, RDX.
    let [mut s_noright, mut s_done] = [(); 2].map(|_| a.create_label());
    a.set_label(&mut sift)?;
    a.lea(rcx, qword_ptr(rbx + rbx + 1))?; // left child
    a.cmp(rcx, r10)?;
    a.jae(s_done)?;
    a.lea(rdx, qword_ptr(rcx + 1))?;
    a.cmp(rdx, r10)?;
    a.jae(s_noright)?;
    a.mov(eax, dword_ptr(rdi + rcx * 4))?;
    a.cmp(eax, dword_ptr(rdi + rdx * 4))?;
    a.jae(s_noright)?;
    a.mov(rcx, rdx)?;
    a.set_label(&mut s_noright)?;
    a.mov(eax, dword_ptr(rdi + rbx * 4))?;
    a.mov(edx, dword_ptr(rdi + rcx * 4))?;
    a.cmp(eax, edx)?;
    a.jae(s_done)?;
    a.mov(dword_ptr(rdi + rbx * 4), edx)?;
    a.mov(dword_ptr(rdi + rcx * 4), eax)?;
    a.mov(rbx, rcx)?;
    a.jmp(sift)?;
    a.set_label(&mut s_done)?;
    a.ret()
}

#[cfg(test)]
mod tests;
