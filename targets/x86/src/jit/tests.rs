//! The JIT against the interpreter: random instruction sequences (the
//! native repertoire: ALU, shifts/rotates by immediates and CL, IMUL,
//! SETcc/CMOVcc, LEA, MOVZX/MOVSX, memory operands, PUSH/POP, forward
//! branches, CALL/RET and a loop around them) run from the same random
//! state under both; registers, RFLAGS and memory must be identical.

use iced_x86::code_asm::*;

use super::JitConfig;
use crate::interp::tests::{CODE, M};
use crate::interp::ExitReason;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const R64: [AsmRegister64; 13] = [
    rax, rcx, rdx, rbx, rsi, rdi, r8, r9, r10, r11, r12, r13, r14,
];
const R32: [AsmRegister32; 13] = [
    eax, ecx, edx, ebx, esi, edi, r8d, r9d, r10d, r11d, r12d, r13d, r14d,
];
const R16: [AsmRegister16; 13] = [
    ax, cx, dx, bx, si, di, r8w, r9w, r10w, r11w, r12w, r13w, r14w,
];
const R8: [AsmRegister8; 13] = [
    al, cl, dl, bl, sil, dil, r8b, r9b, r10b, r11b, r12b, r13b, r14b,
];
/// 32-bit mode: no REX registers; EBP is the data base, ESP the stack.
const P32: [AsmRegister32; 6] = [eax, ecx, edx, ebx, esi, edi];
const P8: [AsmRegister8; 8] = [al, cl, dl, bl, ah, ch, dh, bh];

/// Data area, addressed as [rbp + 0..0x100).
const DATA: u64 = 0x40000;

/// ALU op `k` (0 ADD .. 7 CMP) with any operands.
macro_rules! alu_rm {
    ($a:expr, $k:expr, $d:expr, $s:expr) => {
        match $k {
            0 => $a.add($d, $s),
            1 => $a.or($d, $s),
            2 => $a.adc($d, $s),
            3 => $a.sbb($d, $s),
            4 => $a.and($d, $s),
            5 => $a.sub($d, $s),
            6 => $a.xor($d, $s),
            _ => $a.cmp($d, $s),
        }
    };
}

/// ALU op `k`, 8 = TEST (register or immediate source).
macro_rules! alu {
    ($a:expr, $k:expr, $d:expr, $s:expr) => {
        match $k {
            8 => $a.test($d, $s),
            k => alu_rm!($a, k, $d, $s),
        }
    };
}

macro_rules! shift {
    ($a:expr, $k:expr, $d:expr, $s:expr) => {
        match $k {
            0 => $a.rol($d, $s),
            1 => $a.ror($d, $s),
            2 => $a.shl($d, $s),
            3 => $a.shr($d, $s),
            _ => $a.sar($d, $s),
        }
    };
}

macro_rules! cc_op {
    ($a:expr, $k:expr, $set:ident, $($name:ident),*) => {{
        let names = [$(stringify!($name)),*];
        let _ = names;
        let mut n = 0u64;
        $(
            if n == $k { return $a.$name($set); }
            n += 1;
        )*
        let _ = n;
        unreachable!()
    }};
}

fn setcc(a: &mut CodeAssembler, k: u64, r: AsmRegister8) -> Result<(), IcedError> {
    cc_op!(
        a, k, r, seto, setno, setb, setae, sete, setne, setbe, seta, sets, setns, setp, setnp,
        setl, setge, setle, setg
    )
}

fn setcc_m(a: &mut CodeAssembler, k: u64, m: AsmMemoryOperand) -> Result<(), IcedError> {
    cc_op!(
        a, k, m, seto, setno, setb, setae, sete, setne, setbe, seta, sets, setns, setp, setnp,
        setl, setge, setle, setg
    )
}

fn cmov(
    a: &mut CodeAssembler,
    k: u64,
    d: AsmRegister64,
    s: AsmRegister64,
) -> Result<(), IcedError> {
    match k {
        0 => a.cmovo(d, s),
        1 => a.cmovb(d, s),
        2 => a.cmove(d, s),
        3 => a.cmovbe(d, s),
        4 => a.cmovs(d, s),
        5 => a.cmovp(d, s),
        6 => a.cmovl(d, s),
        _ => a.cmovle(d, s),
    }
}

fn jcc(a: &mut CodeAssembler, k: u64, l: CodeLabel) -> Result<(), IcedError> {
    match k {
        0 => a.jo(l),
        1 => a.jb(l),
        2 => a.je(l),
        3 => a.jbe(l),
        4 => a.js(l),
        5 => a.jp(l),
        6 => a.jl(l),
        _ => a.jle(l),
    }
}

/// One random 64-bit instruction (or a short group).
fn op64(a: &mut CodeAssembler, r: &mut Rng) -> Result<(), IcedError> {
    let i = r.below(13) as usize;
    let j = r.below(13) as usize;
    let d = (r.below(0x100) & !7) as i32;
    let imm = r.next() as i32 >> r.below(32);
    match r.below(24) {
        0 => alu!(a, r.below(9), R64[i], R64[j]),
        1 => alu!(a, r.below(9), R32[i], R32[j]),
        2 => alu!(a, r.below(9), R16[i], R16[j]),
        3 => alu!(a, r.below(9), R8[i], R8[j]),
        4 => alu!(a, r.below(9), R64[i], imm),
        5 => alu!(a, r.below(9), R32[i], imm),
        6 => shift!(a, r.below(5), R64[i], r.below(70) as u32),
        7 => shift!(a, r.below(5), R32[i], r.below(40) as u32),
        8 => shift!(a, r.below(5), R16[i], r.below(20) as u32),
        9 => shift!(a, r.below(5), R8[i], r.below(12) as u32),
        10 => match r.below(2) {
            0 => shift!(a, r.below(5), R64[i], cl),
            _ => shift!(a, r.below(5), R32[i], cl),
        },
        11 => match r.below(4) {
            0 => a.inc(R32[i]),
            1 => a.dec(R64[i]),
            2 => a.neg(R16[i]),
            _ => a.not(R8[i]),
        },
        12 => match r.below(3) {
            0 => a.imul_2(R64[i], R64[j]),
            1 => a.imul_3(R32[i], R32[j], imm),
            _ => a.imul_2(R16[i], R16[j]),
        },
        13 => setcc(a, r.below(16), R8[i]),
        14 => cmov(a, r.below(8), R64[i], R64[j]),
        15 => a.lea(R64[i], qword_ptr(R64[j] + R64[i] * 4 + d)),
        16 => match r.below(3) {
            0 => a.movzx(R32[i], R8[j]),
            1 => a.movsx(R64[i], R16[j]),
            _ => a.movsxd(R64[i], R32[j]),
        },
        17 => a.mov(qword_ptr(rbp + d), R64[i]),
        18 => alu_rm!(a, r.below(8), R64[i], qword_ptr(rbp + d)),
        19 => match r.below(4) {
            0 => alu!(a, r.below(8), dword_ptr(rbp + d), R32[i]),
            1 => alu!(a, r.below(8), qword_ptr(rbp + d), imm),
            2 => a.inc(word_ptr(rbp + d)),
            _ => setcc_m(a, r.below(16), byte_ptr(rbp + d)),
        },
        20 => {
            a.push(R64[i])?;
            a.pop(R64[j])
        }
        21 => {
            let mut l = a.create_label();
            jcc(a, r.below(8), l)?;
            alu!(a, r.below(9), R64[j], R64[i])?;
            a.set_label(&mut l)?;
            a.nop()
        }
        22 => match r.below(8) {
            0 => a.cdqe(),
            1 => a.cqo(),
            2 => a.bswap(R64[i]),
            3 => a.bswap(R32[i]),
            4 => {
                a.pushfq()?;
                a.pop(R64[j])
            }
            5 => a.mov(R32[i], ds),
            6 => a.cli(),
            _ => a.xchg(R64[i], R64[j]),
        },
        _ => a.mov(R32[i], dword_ptr(rbp + d)),
    }
}

/// One random 32-bit-mode instruction (no memory inline there: helpers).
fn op32(a: &mut CodeAssembler, r: &mut Rng) -> Result<(), IcedError> {
    let i = r.below(6) as usize;
    let j = r.below(6) as usize;
    let imm = r.next() as i32 >> r.below(32);
    match r.below(10) {
        0 => alu!(a, r.below(9), P32[i], P32[j]),
        1 => alu!(a, r.below(9), P8[i], P8[r.below(8) as usize]),
        2 => alu!(a, r.below(9), P32[i], imm),
        3 => shift!(a, r.below(5), P32[i], r.below(40) as u32),
        4 => shift!(a, r.below(5), P32[i], cl),
        5 => setcc(a, r.below(16), P8[r.below(8) as usize]),
        6 => a.lea(P32[i], dword_ptr(P32[j] + P32[i] * 2 + imm)),
        7 => alu_rm!(
            a,
            r.below(8),
            P32[i],
            dword_ptr(ebp + (r.below(0x40) as i32 * 4))
        ),
        8 => {
            let mut l = a.create_label();
            jcc(a, r.below(8), l)?;
            a.inc(P32[j])?;
            a.set_label(&mut l)?;
            a.nop()
        }
        _ => a.imul_2(P32[i], P32[j]),
    }
}

/// `main: loop 3 times { call F }; hlt` with F = the random body.
fn program(bits: u32, r: &mut Rng, len: usize) -> Vec<u8> {
    let mut a = CodeAssembler::new(bits).unwrap();
    let mut f = a.create_label();
    let mut top = a.create_label();
    if bits == 64 {
        a.mov(r15, 3u64).unwrap();
    } else {
        a.mov(ebp, DATA as u32).unwrap();
        a.mov(dword_ptr(DATA + 0x200), 3u32).unwrap();
    }
    a.set_label(&mut top).unwrap();
    a.call(f).unwrap();
    if bits == 64 {
        a.dec(r15).unwrap();
    } else {
        a.dec(dword_ptr(DATA + 0x200)).unwrap();
    }
    a.jne(top).unwrap();
    a.hlt().unwrap();
    a.set_label(&mut f).unwrap();
    for _ in 0..len {
        if bits == 64 {
            op64(&mut a, r).unwrap();
        } else {
            op32(&mut a, r).unwrap();
        }
    }
    a.ret().unwrap();
    a.assemble(CODE).unwrap()
}

fn run(bits: u32, code: &[u8], seed: u64, jit: bool) -> M {
    let mut m = if bits == 64 {
        M::long64(code)
    } else {
        M::prot32(code)
    };
    let mut r = Rng(seed | 1);
    for g in 0..16 {
        if g != 4 {
            m.cpu.state.gpr[g] = match r.below(4) {
                0 => r.below(300),
                1 => (r.below(300)).wrapping_neg(),
                _ => r.next(),
            };
            if bits == 32 {
                m.cpu.state.gpr[g] &= 0xffff_ffff;
            }
        }
    }
    m.cpu.state.gpr[5] = DATA;
    m.cpu.state.rflags = 0x2 | (r.next() & 0x8d5);
    let mut data = [0u8; 0x108];
    for b in data.iter_mut() {
        *b = r.next() as u8;
    }
    m.bus.load(DATA, &data);
    if jit {
        assert!(m.cpu.set_jit(Some(JitConfig {
            threshold: 1,
            cache_size: 1 << 20,
            perf_map: false,
        })));
    }
    assert_eq!(m.run(), ExitReason::Halt);
    m
}

fn differential(bits: u32, seed: u64, count: usize) {
    let mut r = Rng(seed);
    for n in 0..count {
        let len = 1 + r.below(14) as usize;
        let code = program(bits, &mut r, len);
        let s = r.next();
        let i = run(bits, &code, s, false);
        let j = run(bits, &code, s, true);
        let ctx = || {
            let mut d = iced_x86::Decoder::with_ip(bits, &code, CODE, 0);
            let mut f = iced_x86::IntelFormatter::new();
            let mut out = String::new();
            use iced_x86::Formatter;
            for ins in d.iter() {
                out.push_str(&format!("  {:#x} ", ins.ip()));
                f.format(&ins, &mut out);
                out.push('\n');
            }
            format!("sequence {n} (seed {s:#x}):\n{out}")
        };
        for g in 0..16 {
            assert_eq!(i.cpu.state.gpr[g], j.cpu.state.gpr[g], "gpr {g}\n{}", ctx());
        }
        assert_eq!(i.cpu.state.rflags, j.cpu.state.rflags, "rflags\n{}", ctx());
        assert_eq!(i.cpu.state.rip, j.cpu.state.rip, "rip\n{}", ctx());
        assert_eq!(
            i.cpu.insn_count,
            j.cpu.insn_count,
            "instruction count\n{}",
            ctx()
        );
        let (a, b) = (DATA as usize, DATA as usize + 0x208);
        assert_eq!(i.bus.ram[a..b], j.bus.ram[a..b], "data\n{}", ctx());
        let st = crate::interp::tests::STACK_TOP as usize;
        assert_eq!(
            i.bus.ram[st - 64..st],
            j.bus.ram[st - 64..st],
            "stack\n{}",
            ctx()
        );
    }
}

#[test]
fn jit_matches_interpreter_64() {
    differential(64, 0x5eed_0001, 3000);
}

#[test]
fn jit_matches_interpreter_32() {
    differential(32, 0x5eed_0002, 1500);
}

/// Long run: `cargo test --release -p x86 jit_long -- --ignored`.
#[test]
#[ignore]
fn jit_long() {
    let seed = std::env::var("HX86_JIT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_0003);
    let n = std::env::var("HX86_JIT_COUNT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000);
    differential(64, seed, n);
    differential(32, seed ^ 0xabcd, n / 2);
}

fn jit_cfg(cache: usize) -> JitConfig {
    JitConfig {
        threshold: 1,
        cache_size: cache,
        perf_map: false,
    }
}

/// Runs `code` in 64-bit mode under the interpreter and the JIT (with a
/// code region of `cache` bytes); both must halt in the same state.
fn both(code: &[u8], cache: usize) -> (M, M) {
    let mut i = M::long64(code);
    assert_eq!(i.run(), ExitReason::Halt);
    let mut j = M::long64(code);
    assert!(j.cpu.set_jit(Some(jit_cfg(cache))));
    assert_eq!(j.run(), ExitReason::Halt);
    assert_eq!(i.cpu.state.gpr, j.cpu.state.gpr);
    assert_eq!(i.cpu.state.rflags, j.cpu.state.rflags);
    assert_eq!(i.cpu.insn_count, j.cpu.insn_count);
    (i, j)
}

/// Self-modifying code: a store patches the immediate of an instruction
/// later in the running block (it must take effect at once), and a loop
/// patches its own code on every iteration.
#[test]
fn smc_store_into_running_block() {
    let mut a = CodeAssembler::new(64).unwrap();
    let mut patched = a.create_label();
    let mut top = a.create_label();
    a.xor(ebx, ebx).unwrap();
    a.mov(ecx, 10u32).unwrap();
    a.set_label(&mut top).unwrap();
    // Patch the imm32 of the `mov eax, imm32` below with ECX.
    a.lea(rdi, ptr(patched)).unwrap();
    a.mov(dword_ptr(rdi + 1), ecx).unwrap();
    a.set_label(&mut patched).unwrap();
    a.mov(eax, 0x1234_5678u32).unwrap();
    a.add(ebx, eax).unwrap();
    a.dec(ecx).unwrap();
    a.jne(top).unwrap();
    a.hlt().unwrap();
    let code = a.assemble(CODE).unwrap();
    let (_, j) = both(&code, 1 << 20);
    // 10 + 9 + ... + 1: every iteration saw its own patch.
    assert_eq!(j.cpu.state.gpr[3], 55);
}

/// Self-modifying code through REP MOVSB: a routine is copied over
/// another one that already ran (and was translated), then called again.
#[test]
fn smc_rep_movs_over_translated_code() {
    let mut a = CodeAssembler::new(64).unwrap();
    let mut f = a.create_label();
    let mut g = a.create_label();
    let mut g_end = a.create_label();
    a.call(f).unwrap();
    a.mov(r8, rax).unwrap();
    a.call(f).unwrap();
    a.mov(r9, rax).unwrap();
    // Copy g over f.
    a.lea(rsi, ptr(g)).unwrap();
    a.lea(rdi, ptr(f)).unwrap();
    a.lea(rcx, ptr(g_end)).unwrap();
    a.sub(rcx, rsi).unwrap();
    a.rep().movsb().unwrap();
    a.call(f).unwrap();
    a.mov(r10, rax).unwrap();
    a.hlt().unwrap();
    a.set_label(&mut f).unwrap();
    a.mov(eax, 1u32).unwrap();
    a.add(eax, 1).unwrap();
    a.ret().unwrap();
    a.set_label(&mut g).unwrap();
    a.mov(eax, 40u32).unwrap();
    a.add(eax, 2).unwrap();
    a.ret().unwrap();
    a.set_label(&mut g_end).unwrap();
    a.nop().unwrap();
    let code = a.assemble(CODE).unwrap();
    let (_, j) = both(&code, 1 << 20);
    assert_eq!(j.cpu.state.gpr[8], 2);
    assert_eq!(j.cpu.state.gpr[9], 2);
    assert_eq!(j.cpu.state.gpr[10], 42);
}

/// A program of many distinct blocks looping long enough to fill a tiny
/// code region again and again: flushes happen, results stay right, and
/// the region never grows.
#[test]
fn code_cache_full_and_bounded_memory() {
    let mut a = CodeAssembler::new(64).unwrap();
    let mut top = a.create_label();
    a.xor(eax, eax).unwrap();
    a.mov(r15, 40u64).unwrap();
    a.set_label(&mut top).unwrap();
    for k in 0..600u32 {
        // Each iteration of this unrolled chain is its own block.
        let mut next = a.create_label();
        a.add(eax, k).unwrap();
        a.rol(eax, 3).unwrap();
        a.jmp(next).unwrap();
        a.set_label(&mut next).unwrap();
    }
    a.dec(r15).unwrap();
    a.jne(top).unwrap();
    a.hlt().unwrap();
    let code = a.assemble(CODE).unwrap();
    let (_, j) = both(&code, 64 << 10);
    let s = j.cpu.jit_stats().unwrap();
    assert!(s.flushes >= 5, "{s:?}");
    assert!(s.blocks > 600 * 2, "{s:?}");
    let used = j.cpu.jit.as_ref().unwrap().region_size();
    assert_eq!(used, 64 << 10);
}
