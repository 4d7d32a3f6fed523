//! The 64-bit generator: one random instruction (or a short group) at a
//! time, and the code page around a sequence.

use iced_x86::code_asm::*;

use crate::Rng;

/// Virtual addresses (identical natively and in the guest).
pub const CODE: u64 = 0x10_0000_0000;
pub const DATA: u64 = CODE + 0x1000;
pub const SEQ: u64 = CODE + 0x400;
/// In the data page: the test area, the start state and the final state.
pub const AREA: u64 = 0x400;
pub const IN: u64 = 0x800;
pub const OUT: u64 = 0xc00;

/// GPRs the sequences use: everything but RSP and R15 (the data base).
pub const GPRS: [AsmRegister64; 14] = [
    rax, rcx, rdx, rbx, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14,
];
pub const GPR_IDX: [usize; 14] = [0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14];

fn r32(r: AsmRegister64) -> AsmRegister32 {
    let all64 = [
        rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15,
    ];
    let all32 = [
        eax, ecx, edx, ebx, esp, ebp, esi, edi, r8d, r9d, r10d, r11d, r12d, r13d, r14d, r15d,
    ];
    all32[all64.iter().position(|&x| x == r).unwrap()]
}
fn r16(r: AsmRegister64) -> AsmRegister16 {
    let all64 = [
        rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15,
    ];
    let all16 = [
        ax, cx, dx, bx, sp, bp, si, di, r8w, r9w, r10w, r11w, r12w, r13w, r14w, r15w,
    ];
    all16[all64.iter().position(|&x| x == r).unwrap()]
}
fn r8l(r: AsmRegister64) -> AsmRegister8 {
    let all64 = [
        rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15,
    ];
    let all8 = [
        al, cl, dl, bl, spl, bpl, sil, dil, r8b, r9b, r10b, r11b, r12b, r13b, r14b, r15b,
    ];
    all8[all64.iter().position(|&x| x == r).unwrap()]
}

macro_rules! sized2 {
    ($a:expr, $m:ident, $sz:expr, $x:expr, $y:expr) => {
        match $sz {
            0 => $a.$m(r8l($x), r8l($y)),
            1 => $a.$m(r16($x), r16($y)),
            2 => $a.$m(r32($x), r32($y)),
            _ => $a.$m($x, $y),
        }
    };
}
macro_rules! sized1 {
    ($a:expr, $m:ident, $sz:expr, $x:expr) => {
        match $sz {
            0 => $a.$m(r8l($x)),
            1 => $a.$m(r16($x)),
            2 => $a.$m(r32($x)),
            _ => $a.$m($x),
        }
    };
}

fn mem(rng: &mut Rng) -> AsmMemoryOperand {
    let d = AREA as i32 - 0x400 + (rng.below(0x3f0 / 8) * 8) as i32 + rng.below(3) as i32;
    ptr(r15 + d)
}

/// Emits one random instruction (or a short group keeping it defined).
fn gen_one(a: &mut CodeAssembler, rng: &mut Rng, sse: bool) -> Result<(), IcedError> {
    let x = rng.pick(&GPRS);
    let y = rng.pick(&GPRS);
    let sz = rng.below(4);
    let kinds = if sse { 20 } else { 17 };
    let kind = rng.below(kinds);
    match kind {
        0 => match rng.below(9) {
            0 => sized2!(a, add, sz, x, y),
            1 => sized2!(a, adc, sz, x, y),
            2 => sized2!(a, sub, sz, x, y),
            3 => sized2!(a, sbb, sz, x, y),
            4 => sized2!(a, and, sz, x, y),
            5 => sized2!(a, or, sz, x, y),
            6 => sized2!(a, xor, sz, x, y),
            7 => sized2!(a, cmp, sz, x, y),
            _ => sized2!(a, test, sz, x, y),
        },
        1 => {
            let imm = rng.value() as i32;
            match rng.below(4) {
                0 => a.add(x, imm),
                1 => a.sub(r32(x), imm),
                2 => a.and(x, imm),
                _ => a.xor(r16(x), imm as i16 as i32),
            }
        }
        2 => {
            let m = mem(rng);
            match rng.below(5) {
                0 => a.add(qword_ptr(m), x),
                1 => a.sub(x, qword_ptr(m)),
                2 => a.or(dword_ptr(m), r32(x)),
                3 => a.adc(r16(x), word_ptr(m)),
                _ => a.mov(qword_ptr(m), x),
            }
        }
        3 => match rng.below(4) {
            0 => sized1!(a, inc, sz, x),
            1 => sized1!(a, dec, sz, x),
            2 => sized1!(a, neg, sz, x),
            _ => sized1!(a, not, sz, x),
        },
        4 => {
            let imm = rng.below(70) as i32;
            let by_cl = rng.below(2) == 0;
            let x = if by_cl && x == rcx { rdx } else { x };
            macro_rules! sh {
                ($m:ident) => {
                    if by_cl {
                        match sz {
                            0 => a.$m(r8l(x), cl),
                            1 => a.$m(r16(x), cl),
                            2 => a.$m(r32(x), cl),
                            _ => a.$m(x, cl),
                        }
                    } else {
                        match sz {
                            0 => a.$m(r8l(x), imm),
                            1 => a.$m(r16(x), imm),
                            2 => a.$m(r32(x), imm),
                            _ => a.$m(x, imm),
                        }
                    }
                };
            }
            match rng.below(7) {
                0 => sh!(shl),
                1 => sh!(shr),
                2 => sh!(sar),
                3 => sh!(rol),
                4 => sh!(ror),
                5 => sh!(rcl),
                _ => sh!(rcr),
            }
        }
        5 => {
            let (y, x) = if y == rcx { (rdx, x) } else { (y, x) };
            match rng.below(2) {
                0 => a.shld(r32(x), r32(y), cl),
                _ => a.shrd(x, y, rng.below(64) as i32),
            }
        }
        6 => {
            let y = if y == rax || y == rdx { rbx } else { y };
            match rng.below(6) {
                0 => sized1!(a, mul, sz, y),
                1 => sized1!(a, imul, sz, y),
                2 => a.imul_2(x, y),
                3 => a.imul_3(r32(x), r32(y), rng.value() as i32),
                4 => {
                    a.or(r8l(y), 1)?;
                    a.xor(edx, edx)?;
                    match sz {
                        0 => {
                            a.movzx(eax, al)?;
                            a.div(r8l(y))
                        }
                        1 => a.div(r16(y)),
                        2 => a.div(r32(y)),
                        _ => a.div(y),
                    }
                }
                _ => {
                    // May overflow (#DE) when RAX is the minimum and y is -1.
                    a.or(r8l(y), 1)?;
                    a.cqo()?;
                    a.idiv(y)
                }
            }
        }
        7 => match rng.below(7) {
            0 => a.bt(r16(x), r16(y)),
            1 => a.bts(r32(x), r32(y)),
            2 => a.btr(x, rng.below(64) as i32),
            3 => a.btc(r16(x), r16(y)),
            4 => {
                a.or(y, 0x10)?;
                if rng.below(2) == 0 {
                    a.bsf(x, y)
                } else {
                    a.bsr(r32(x), r32(y))
                }
            }
            5 => a.popcnt(r32(x), r32(y)),
            _ => a.lzcnt(x, y),
        },
        8 => {
            let cc = rng.below(16);
            match cc {
                0 => a.cmovo(x, y),
                1 => a.cmovb(r32(x), r32(y)),
                2 => a.cmove(r16(x), r16(y)),
                3 => a.cmovbe(x, y),
                4 => a.cmovs(x, y),
                5 => a.cmovp(r32(x), r32(y)),
                6 => a.cmovl(x, y),
                7 => a.cmovle(r32(x), r32(y)),
                8 => a.seto(r8l(x)),
                9 => a.setb(r8l(x)),
                10 => a.sete(r8l(x)),
                11 => a.setbe(r8l(x)),
                12 => a.sets(r8l(x)),
                13 => a.setp(r8l(x)),
                14 => a.setl(r8l(x)),
                _ => a.setg(r8l(x)),
            }
        }
        9 => {
            // String op with a small count; DF random.
            let n = rng.below(12) as u32;
            let s = AREA as i32 - 0x400 + 0x100 + rng.below(0x80) as i32;
            let d = AREA as i32 - 0x400 + 0x200 + rng.below(0x80) as i32;
            if rng.below(2) == 0 {
                a.std()?;
            } else {
                a.cld()?;
            }
            a.lea(rsi, ptr(r15 + s))?;
            a.lea(rdi, ptr(r15 + d))?;
            a.mov(ecx, n)?;
            let r = match rng.below(8) {
                0 => a.rep().movsb(),
                1 => a.rep().movsq(),
                2 => a.rep().stosd(),
                3 => a.rep().lodsw(),
                4 => a.repe().cmpsb(),
                5 => a.repne().scasb(),
                6 => a.movsw(),
                _ => a.repe().scasd(),
            };
            r?;
            a.cld()
        }
        10 => {
            let m = mem(rng);
            match rng.below(4) {
                0 => a.bswap(r32(x)),
                1 => a.bswap(x),
                2 => a.movbe(x, qword_ptr(m)),
                _ => a.movbe(word_ptr(m), r16(x)),
            }
        }
        11 => {
            let m = mem(rng);
            match rng.below(4) {
                0 => sized2!(a, cmpxchg, sz, x, y),
                1 => a.cmpxchg(qword_ptr(m), y),
                2 => sized2!(a, xadd, sz, x, y),
                _ => a.xchg(dword_ptr(m), r32(y)),
            }
        }
        12 => match rng.below(6) {
            0 => a.movzx(r32(x), r8l(y)),
            1 => a.movsx(x, r16(y)),
            2 => a.movsxd(x, r32(y)),
            3 => a.lea(r32(x), ptr(y + x * 4 + 0x1234)),
            4 => a.mov(x, rng.value()),
            _ => a.mov(r32(x), r32(y)),
        },
        13 => match rng.below(4) {
            0 => a.stc(),
            1 => a.cmc(),
            2 => a.lahf(),
            _ => a.sahf(),
        },
        14 => {
            // BMI1/BMI2, TZCNT, sign extensions, CRC32, XCHG.
            let z = rng.pick(&GPRS);
            match rng.below(20) {
                0 => match sz {
                    0 | 1 => a.tzcnt(r16(x), r16(y)),
                    2 => a.tzcnt(r32(x), r32(y)),
                    _ => a.tzcnt(x, y),
                },
                1 => a.andn(r32(x), r32(y), r32(z)),
                2 => a.andn(x, y, z),
                3 => a.bextr(r32(x), r32(y), r32(z)),
                4 => a.bextr(x, y, z),
                5 => match rng.below(3) {
                    0 => a.blsi(r32(x), r32(y)),
                    1 => a.blsr(x, y),
                    _ => a.blsmsk(r32(x), r32(y)),
                },
                6 => {
                    if rng.below(2) == 0 {
                        a.bzhi(r32(x), r32(y), r32(z))
                    } else {
                        a.bzhi(x, y, z)
                    }
                }
                7 => {
                    let (x, y) = if x == y { (x, rbx) } else { (x, y) };
                    let (x, y) = if x == y { (x, rcx) } else { (x, y) };
                    if rng.below(2) == 0 {
                        a.mulx(r32(x), r32(y), r32(z))
                    } else {
                        a.mulx(x, y, z)
                    }
                }
                8 => match rng.below(4) {
                    0 => a.pdep(r32(x), r32(y), r32(z)),
                    1 => a.pdep(x, y, z),
                    2 => a.pext(r32(x), r32(y), r32(z)),
                    _ => a.pext(x, y, z),
                },
                9 => match rng.below(4) {
                    0 => a.rorx(r32(x), r32(y), rng.below(64) as i32),
                    1 => a.rorx(x, y, rng.below(64) as i32),
                    2 => a.sarx(r32(x), r32(y), r32(z)),
                    _ => a.shrx(x, y, z),
                },
                10 => a.shlx(r32(x), r32(y), r32(z)),
                11 => match rng.below(6) {
                    0 => a.cbw(),
                    1 => a.cwde(),
                    2 => a.cdqe(),
                    3 => a.cwd(),
                    4 => a.cdq(),
                    _ => a.cqo(),
                },
                12 => sized2!(a, xchg, sz, x, y),
                13 => match sz {
                    0 => a.crc32(r32(x), r8l(y)),
                    1 => a.crc32(r32(x), r16(y)),
                    2 => a.crc32(r32(x), r32(y)),
                    _ => a.crc32(x, y),
                },
                14 => match sz {
                    0 | 1 => a.popcnt(r16(x), r16(y)),
                    2 => a.lzcnt(r32(x), r32(y)),
                    _ => a.popcnt(x, y),
                },
                15 => {
                    let imm = rng.value() as i32;
                    match rng.below(4) {
                        0 => a.imul_3(r16(x), r16(y), imm as i16 as i32),
                        1 => a.imul_3(x, y, imm),
                        2 => a.imul_2(r16(x), r16(y)),
                        _ => a.imul_2(r32(x), r32(y)),
                    }
                }
                16 => {
                    let m = mem(rng);
                    match rng.below(6) {
                        0 => a.neg(qword_ptr(m)),
                        1 => a.not(dword_ptr(m)),
                        2 => a.inc(word_ptr(m)),
                        3 => a.shl(dword_ptr(m), cl),
                        4 => a.rcr(byte_ptr(m), rng.below(20) as i32),
                        _ => a.setb(byte_ptr(m)),
                    }
                }
                17 => {
                    // BT family on memory with a register bit offset
                    // (bit-string addressing, up to 511 bits on).
                    let y = if y == rcx { rdx } else { y };
                    a.and(r32(y), 0x1ff)?;
                    let m = mem(rng);
                    match rng.below(4) {
                        0 => a.bt(dword_ptr(m), r32(y)),
                        1 => a.bts(qword_ptr(m), y),
                        2 => a.btr(word_ptr(m), r16(y)),
                        _ => a.btc(dword_ptr(m), r32(y)),
                    }
                }
                18 => {
                    let m = mem(rng);
                    match rng.below(4) {
                        0 => a.movzx(x, byte_ptr(m)),
                        1 => a.movsx(r32(x), word_ptr(m)),
                        2 => a.movsxd(x, dword_ptr(m)),
                        _ => a.cmovne(r32(x), dword_ptr(m)),
                    }
                }
                _ => {
                    let m = mem(rng);
                    match rng.below(4) {
                        0 => a.xadd(dword_ptr(m), r32(x)),
                        1 => a.cmpxchg(dword_ptr(m), r32(x)),
                        2 => a.adc(r32(x), dword_ptr(m)),
                        _ => a.sbb(byte_ptr(m), r8l(x)),
                    }
                }
            }
        }
        15 => {
            // High-byte registers (no REX).
            let hb = [ah, ch, dh, bh];
            let lb = [al, cl, dl, bl];
            let h = rng.pick(&hb);
            let l = if rng.below(2) == 0 {
                rng.pick(&hb)
            } else {
                rng.pick(&lb)
            };
            match rng.below(6) {
                0 => a.add(h, l),
                1 => a.xchg(h, l),
                2 => a.sub(l, h),
                3 => a.mov(h, l),
                4 => a.shl(h, 1),
                _ => a.movzx(r32(rng.pick(&[rax, rcx, rdx, rbx, rsi, rdi])), h),
            }
        }
        16 => {
            // A forward branch over one instruction (flags live across a
            // block end), JRCXZ, or a stack round trip.
            let mut skip = a.create_label();
            match rng.below(8) {
                0 => a.jo(skip)?,
                1 => a.jb(skip)?,
                2 => a.je(skip)?,
                3 => a.jbe(skip)?,
                4 => a.js(skip)?,
                5 => a.jp(skip)?,
                6 => a.jl(skip)?,
                _ => a.jrcxz(skip)?,
            }
            match rng.below(5) {
                0 => sized2!(a, add, sz, x, y)?,
                1 => sized1!(a, inc, sz, x)?,
                2 => a.mov(r32(x), r32(y))?,
                3 => {
                    a.push(x)?;
                    a.pop(y)?;
                }
                _ => {
                    a.pushfq()?;
                    a.pop(x)?;
                    a.and(x, 0x8d5)?;
                }
            }
            a.set_label(&mut skip)?;
            a.zero_bytes()
        }
        _ => {
            let xs = [
                xmm0, xmm1, xmm2, xmm3, xmm4, xmm5, xmm6, xmm7, xmm8, xmm9, xmm10, xmm11, xmm12,
                xmm13, xmm14, xmm15,
            ];
            let p = rng.pick(&xs);
            let q = rng.pick(&xs);
            let imm = rng.below(256) as i32;
            if kind > 17 {
                // SSE2..SSE4.2 integer, shuffle, conversion and compare forms.
                return match rng.below(48) {
                    0 => a.pshufb(p, q),
                    1 => a.palignr(p, q, rng.below(40) as i32),
                    2 => a.pmaddwd(p, q),
                    3 => a.psadbw(p, q),
                    4 => a.pmulhuw(p, q),
                    5 => a.packsswb(p, q),
                    6 => a.packuswb(p, q),
                    7 => a.psrlw(p, rng.below(20) as i32),
                    8 => a.psrad(p, rng.below(40) as i32),
                    9 => a.pslldq(p, rng.below(20) as i32),
                    10 => a.pminub(p, q),
                    11 => a.pmaxsw(p, q),
                    12 => a.pavgb(p, q),
                    13 => a.punpckhqdq(p, q),
                    14 => a.cvtsi2sd(p, x),
                    15 => a.cvttsd2si(r32(x), p),
                    16 => a.cvtps2dq(p, q),
                    17 => a.cvtdq2ps(p, q),
                    18 => a.sqrtsd(p, q),
                    19 => a.minps(p, q),
                    20 => a.maxpd(p, q),
                    21 => a.cmpps(p, q, rng.below(8) as i32),
                    22 => a.andnps(p, q),
                    23 => a.unpcklps(p, q),
                    24 => a.movhlps(p, q),
                    25 => a.movmskps(r32(x), p),
                    26 => a.pmovmskb(r32(x), p),
                    27 => a.pextrw(r32(x), p, imm),
                    28 => a.pinsrw(p, r32(x), imm),
                    29 => a.ptest(p, q),
                    30 => a.pmulld(p, q),
                    31 => a.pminsd(p, q),
                    32 => a.pblendw(p, q, imm),
                    33 => a.blendvps(p, q),
                    34 => a.roundsd(p, q, rng.below(16) as i32),
                    35 => a.pcmpgtq(p, q),
                    36 => a.pcmpistri(p, q, imm & 0x7f),
                    37 => a.insertps(p, q, imm),
                    38 => a.extractps(r32(x), p, rng.below(4) as i32),
                    39 => a.pmovzxbw(p, q),
                    40 => a.pabsb(p, q),
                    41 => a.phaddd(p, q),
                    42 => a.psignb(p, q),
                    43 => a.pmuldq(p, q),
                    44 => a.packusdw(p, q),
                    45 => a.cvtsd2ss(p, q),
                    46 => a.pshufhw(p, q, imm),
                    _ => a.comisd(p, q),
                };
            }
            match rng.below(12) {
                0 => a.addps(p, q),
                1 => a.mulsd(p, q),
                2 => a.paddd(p, q),
                3 => a.pxor(p, q),
                4 => a.pshufd(p, q, rng.below(256) as i32),
                5 => a.shufps(p, q, rng.below(256) as i32),
                6 => a.punpcklbw(p, q),
                7 => a.movd(r32(x), p),
                8 => a.movq(p, x),
                9 => a.pcmpeqb(p, q),
                10 => a.subpd(p, q),
                _ => a.movdqu(
                    p,
                    xmmword_ptr(r15 + (rng.below(0x3f0) as i32 - 0x400 + AREA as i32)),
                ),
            }
        }
    }
}

/// Builds the code page: prologue (load the start state), the sequence,
/// epilogue (store the final state, exit the child). Returns (page, the
/// sequence's start and end addresses).
pub fn build(rng: &mut Rng, len: usize, sse: bool) -> (Vec<u8>, u64) {
    let mut s = CodeAssembler::new(64).unwrap();
    for _ in 0..len {
        // A rare generator mismatch (e.g. an invalid operand combination)
        // simply yields no instruction.
        let _ = gen_one(&mut s, rng, sse);
    }
    s.nop().unwrap();
    let seq = s.assemble(SEQ).expect("assemble sequence");
    let seq_end = SEQ + seq.len() as u64;
    let mut p = CodeAssembler::new(64).unwrap();
    p.mov(r15, DATA).unwrap();
    for i in 0..16 {
        let xs = [
            xmm0, xmm1, xmm2, xmm3, xmm4, xmm5, xmm6, xmm7, xmm8, xmm9, xmm10, xmm11, xmm12, xmm13,
            xmm14, xmm15,
        ];
        p.movdqu(
            xs[i],
            xmmword_ptr(r15 + (IN as i32 + 0x100 + i as i32 * 16)),
        )
        .unwrap();
    }
    p.push(qword_ptr(r15 + (IN as i32 + 16 * 8))).unwrap();
    p.popfq().unwrap();
    for (k, &r) in GPRS.iter().enumerate() {
        p.mov(r, qword_ptr(r15 + (IN as i32 + GPR_IDX[k] as i32 * 8)))
            .unwrap();
    }
    p.jmp(SEQ).unwrap();
    let pro = p.assemble(CODE).unwrap();
    assert!(pro.len() < 0x400);
    let mut e = CodeAssembler::new(64).unwrap();
    for (k, &r) in GPRS.iter().enumerate() {
        e.mov(qword_ptr(r15 + (OUT as i32 + GPR_IDX[k] as i32 * 8)), r)
            .unwrap();
    }
    e.pushfq().unwrap();
    e.pop(qword_ptr(r15 + (OUT as i32 + 16 * 8))).unwrap();
    let xs = [
        xmm0, xmm1, xmm2, xmm3, xmm4, xmm5, xmm6, xmm7, xmm8, xmm9, xmm10, xmm11, xmm12, xmm13,
        xmm14, xmm15,
    ];
    for (i, &x) in xs.iter().enumerate() {
        e.movdqu(xmmword_ptr(r15 + (OUT as i32 + 0x100 + i as i32 * 16)), x)
            .unwrap();
    }
    e.cld().unwrap();
    e.mov(eax, 231u32).unwrap(); // exit_group(0)
    e.xor(edi, edi).unwrap();
    e.syscall().unwrap();
    let epi = e.assemble(seq_end).unwrap();
    let mut page = vec![0xccu8; 0x1000];
    page[..pro.len()].copy_from_slice(&pro);
    let o = (SEQ - CODE) as usize;
    page[o..o + seq.len()].copy_from_slice(&seq);
    let o2 = (seq_end - CODE) as usize;
    assert!(o2 + epi.len() <= 0x1000, "sequence too long");
    page[o2..o2 + epi.len()].copy_from_slice(&epi);
    (page, seq_end)
}
