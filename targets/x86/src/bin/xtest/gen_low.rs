//! The 32- and 16-bit generator: one random instruction (or a short group
//! keeping it defined and the stack balanced) at a time.
//!
//! Memory operands stay inside the 64 KiB (+4 KiB) data area at
//! [`LDATA`]: absolute addresses and masked registers in 32-bit code (DS,
//! ES and SS flat or based at `LDATA`), 16-bit addressing through FS
//! (based at `LDATA`, limit 0xFFFF) in 32-bit code, and any 16-bit
//! addressing form in 16-bit code (DS/ES/SS/FS all based at `LDATA`).
//! Control-flow groups (near and far calls, IRET, JMP FAR, LOOP) whose
//! operand or address size differs from the code size, or that need a
//! computed return address, are emitted as raw bytes (the assembler cannot
//! size them against labels). A rare group of instructions that fault at
//! CPL 3 (CLI, HLT, IN, MOV CR0, ...) checks that both sides fault.

use iced_x86::code_asm::*;
use iced_x86::{Code, Instruction, MemoryOperand, Mnemonic, Register, RepPrefixKind};

use crate::low::{
    sel, Stub, LCODE, LDATA, SEL_CODE16, SEL_CODE32, SEL_DATA16, SEL_DATA32, SEL_USER32_CS,
    SEL_USER_DS, SEQ, STUBS,
};
use crate::Rng;

type R<T = ()> = Result<T, IcedError>;

const R32: [AsmRegister32; 8] = [eax, ecx, edx, ebx, esp, ebp, esi, edi];
const R16: [AsmRegister16; 8] = [ax, cx, dx, bx, sp, bp, si, di];
const R8: [AsmRegister8; 8] = [al, cl, dl, bl, ah, ch, dh, bh];
/// Register numbers the sequences use freely (all but ESP).
const GP: [usize; 7] = [0, 1, 2, 3, 5, 6, 7];
const XS: [AsmRegisterXmm; 8] = [xmm0, xmm1, xmm2, xmm3, xmm4, xmm5, xmm6, xmm7];

/// What the generator knows about the code it runs in.
pub struct Ctx {
    /// Code size: 16 or 32.
    pub bits: u32,
    pub sse: bool,
    /// SS is based at [`LDATA`] (else flat, base 0); its D/B bit.
    pub ss_data: bool,
    pub ss_big: bool,
    /// What to add to a data-area offset for an address through DS / ES:
    /// [`LDATA`] for a flat segment, 0 for one based at `LDATA`.
    pub ds_abs: u64,
    pub es_abs: u64,
    /// ES's selector at the start.
    pub es_sel: u16,
    /// What to add to a code-page offset for an address through CS.
    pub cs_abs: u64,
}

/// Operand size index: 0 = 8, 1 = 16, 2 = 32 bits (the code size twice
/// as likely as the other full size).
fn size(rng: &mut Rng, c: &Ctx) -> usize {
    match (rng.below(4), c.bits) {
        (0, _) => 0,
        (1, 32) | (1, 16) | (2, 16) => 1,
        _ => 2,
    }
}

/// A register number for an operand of size `sz` (any of AL..BH for
/// bytes, anything but ESP otherwise).
fn reg(rng: &mut Rng, sz: usize) -> usize {
    if sz == 0 {
        rng.below(8) as usize
    } else {
        rng.pick(&GP)
    }
}

/// An immediate for size `sz`, sign-extended to i32.
fn imm(rng: &mut Rng, sz: usize) -> i32 {
    let v = rng.value();
    match sz {
        0 => v as i8 as i32,
        1 => v as i16 as i32,
        _ => v as i32,
    }
}

macro_rules! rr {
    ($a:expr, $m:ident, $sz:expr, $x:expr, $y:expr) => {
        match $sz {
            0 => $a.$m(R8[$x], R8[$y]),
            1 => $a.$m(R16[$x], R16[$y]),
            _ => $a.$m(R32[$x], R32[$y]),
        }
    };
}
macro_rules! r1 {
    ($a:expr, $m:ident, $sz:expr, $x:expr) => {
        match $sz {
            0 => $a.$m(R8[$x]),
            1 => $a.$m(R16[$x]),
            _ => $a.$m(R32[$x]),
        }
    };
}
macro_rules! ri {
    ($a:expr, $m:ident, $sz:expr, $x:expr, $i:expr) => {
        match $sz {
            0 => $a.$m(R8[$x], $i),
            1 => $a.$m(R16[$x], $i),
            _ => $a.$m(R32[$x], $i),
        }
    };
}
/// `op [m], reg` / `op reg, [m]`.
macro_rules! mr {
    ($a:expr, $m:ident, $sz:expr, $mem:expr, $x:expr) => {
        match $sz {
            0 => $a.$m(byte_ptr($mem), R8[$x]),
            1 => $a.$m(word_ptr($mem), R16[$x]),
            _ => $a.$m(dword_ptr($mem), R32[$x]),
        }
    };
}
macro_rules! rm {
    ($a:expr, $m:ident, $sz:expr, $x:expr, $mem:expr) => {
        match $sz {
            0 => $a.$m(R8[$x], byte_ptr($mem)),
            1 => $a.$m(R16[$x], word_ptr($mem)),
            _ => $a.$m(R32[$x], dword_ptr($mem)),
        }
    };
}
macro_rules! m1 {
    ($a:expr, $m:ident, $sz:expr, $mem:expr) => {
        match $sz {
            0 => $a.$m(byte_ptr($mem)),
            1 => $a.$m(word_ptr($mem)),
            _ => $a.$m(dword_ptr($mem)),
        }
    };
}
macro_rules! mi {
    ($a:expr, $m:ident, $sz:expr, $mem:expr, $i:expr) => {
        match $sz {
            0 => $a.$m(byte_ptr($mem), $i),
            1 => $a.$m(word_ptr($mem), $i),
            _ => $a.$m(dword_ptr($mem), $i),
        }
    };
}

/// A random 16-bit addressing form (`[bx+si+d]`, `[bp+d]`, `[d16]`, ...)
/// with random registers: any value stays inside a 64 KiB segment.
fn mem16(rng: &mut Rng) -> AsmMemoryOperand {
    let d: i32 = match rng.below(3) {
        0 => 0,
        1 => rng.below(256) as i32 - 128,
        _ => rng.below(0x10000) as i32 - 0x8000,
    };
    match rng.below(9) {
        0 => ptr(bx + si + d),
        1 => ptr(bx + di + d),
        2 => ptr(bp + si + d),
        3 => ptr(bp + di + d),
        4 => ptr(si + d),
        5 => ptr(di + d),
        6 => ptr(bp + d),
        7 => ptr(bx + d),
        _ => ptr(rng.below(0x10000)),
    }
}

/// A memory operand of `len` bytes inside the data area; may first emit
/// flag-neutral MOVZX instructions that bound the registers it uses.
fn mem(a: &mut CodeAssembler, rng: &mut Rng, c: &Ctx, len: u64) -> R<AsmMemoryOperand> {
    if c.bits == 32 {
        Ok(match rng.below(10) {
            0..=3 => {
                let off = if rng.below(2) == 0 {
                    rng.below(0x400)
                } else {
                    rng.below(0x1_0000 - len)
                };
                ptr(c.ds_abs + off)
            }
            // ESP points into the data area (an offset when SS is based
            // there); a 16-bit stack's ESP may have garbage above SP.
            4 if c.ss_big => ptr(esp + rng.below(0x100) as i32),
            4 => ptr(c.ds_abs + rng.below(0x1_0000 - len)),
            5 | 6 => mem16(rng).fs(),
            7 => {
                let r = rng.pick(&GP);
                a.movzx(R32[r], R16[r])?;
                let m = ptr(R32[r] + (c.ds_abs + rng.below(0xff0)) as i32);
                if r == 5 {
                    m.ds()
                } else {
                    m
                }
            }
            8 => {
                let r = rng.below(4) as usize;
                a.movzx(R32[r], R8[r])?;
                ptr(R32[r] * rng.pick(&[1, 2, 4, 8]) + (c.ds_abs + rng.below(0x8000)) as i32)
            }
            _ => {
                let b = rng.pick(&GP);
                let i = rng.below(4) as usize;
                let i = if i == b { (i + 1) % 4 } else { i };
                a.movzx(R32[b], R16[b])?;
                a.movzx(R32[i], R8[i])?;
                let m = ptr(R32[b] + R32[i] * rng.pick(&[1, 2, 4, 8]) + c.ds_abs as i32);
                if b == 5 {
                    m.ds()
                } else {
                    m
                }
            }
        })
    } else {
        Ok(match rng.below(10) {
            0..=6 => {
                let m = mem16(rng);
                match rng.below(10) {
                    0 => m.es(),
                    1 => m.ss(),
                    2 => m.ds(),
                    3 => m.fs(),
                    _ => m,
                }
            }
            7 | 8 => {
                // 32-bit addressing: registers bounded to 16 bits.
                let r = rng.pick(&GP);
                a.movzx(R32[r], R16[r])?;
                ptr(R32[r])
            }
            _ => {
                let r = rng.below(4) as usize;
                a.movzx(R32[r], R8[r])?;
                ptr(R32[r] * rng.pick(&[1, 2, 4, 8]) + rng.below(0x8000) as i32)
            }
        })
    }
}

/// Assembles `f` alone (position-independent code) at IP 0.
fn piece(bits: u32, f: impl FnOnce(&mut CodeAssembler) -> R) -> R<Vec<u8>> {
    let mut a = CodeAssembler::new(bits)?;
    f(&mut a)?;
    a.assemble(0)
}

/// A short body for loops and subroutines: no flags read, ECX/ESP kept.
fn body(a: &mut CodeAssembler, rng: &mut Rng) -> R {
    let pool = [0usize, 2, 3, 5, 6, 7];
    let x = rng.pick(&pool);
    let y = rng.pick(&pool);
    match rng.below(6) {
        0 => a.add(R32[x], R32[y]),
        1 => a.xor(R16[x], R16[y]),
        2 => a.sub(R8[x.min(3)], R8[y.min(3)]),
        3 => a.lea(R32[x], ptr(R32[y] + R32[x] * 2 + 7)),
        4 => a.inc(R16[x]),
        _ => a.imul_3(R32[x], R32[y], 3),
    }
}

/// Emits one random instruction (or a short group keeping it defined).
pub fn gen_one(a: &mut CodeAssembler, rng: &mut Rng, c: &Ctx) -> R {
    let sz = size(rng, c);
    let x = reg(rng, sz);
    let y = reg(rng, sz);
    let kinds = if c.sse { 26 } else { 24 };
    match rng.below(kinds) {
        0 => match rng.below(9) {
            0 => rr!(a, add, sz, x, y),
            1 => rr!(a, adc, sz, x, y),
            2 => rr!(a, sub, sz, x, y),
            3 => rr!(a, sbb, sz, x, y),
            4 => rr!(a, and, sz, x, y),
            5 => rr!(a, or, sz, x, y),
            6 => rr!(a, xor, sz, x, y),
            7 => rr!(a, cmp, sz, x, y),
            _ => rr!(a, test, sz, x, y),
        },
        1 => {
            let i = imm(rng, sz);
            // x = 0 gives the short AL/AX/EAX forms.
            let x = if rng.below(3) == 0 { 0 } else { x };
            match rng.below(9) {
                0 => ri!(a, add, sz, x, i),
                1 => ri!(a, adc, sz, x, i),
                2 => ri!(a, sub, sz, x, i),
                3 => ri!(a, sbb, sz, x, i),
                4 => ri!(a, and, sz, x, i),
                5 => ri!(a, or, sz, x, i),
                6 => ri!(a, xor, sz, x, i),
                7 => ri!(a, cmp, sz, x, i),
                _ => ri!(a, test, sz, x, i),
            }
        }
        2 if rng.below(16) == 0 => {
            // A read through CS (readable code segments), from the code
            // before the sequence (the same bytes on both sides).
            let m = ptr(c.cs_abs + rng.below(SEQ - 8)).cs();
            rm!(a, add, sz, x, m)
        }
        2 => {
            let m = mem(a, rng, c, 4)?;
            let i = imm(rng, sz);
            match rng.below(10) {
                0 => mr!(a, add, sz, m, x),
                1 => mr!(a, sbb, sz, m, x),
                2 => rm!(a, sub, sz, x, m),
                3 => rm!(a, adc, sz, x, m),
                4 => mr!(a, mov, sz, m, x),
                5 => rm!(a, mov, sz, x, m),
                6 => mi!(a, xor, sz, m, i),
                7 => mi!(a, mov, sz, m, i),
                8 => mr!(a, test, sz, m, x),
                _ => mi!(a, cmp, sz, m, i),
            }
        }
        3 => {
            if rng.below(3) == 0 {
                let m = mem(a, rng, c, 4)?;
                match rng.below(4) {
                    0 => m1!(a, inc, sz, m),
                    1 => m1!(a, dec, sz, m),
                    2 => m1!(a, neg, sz, m),
                    _ => m1!(a, not, sz, m),
                }
            } else {
                match rng.below(4) {
                    0 => r1!(a, inc, sz, x),
                    1 => r1!(a, dec, sz, x),
                    2 => r1!(a, neg, sz, x),
                    _ => r1!(a, not, sz, x),
                }
            }
        }
        4 => {
            let n = match rng.below(4) {
                0 => 1,
                _ => rng.below(40) as i32,
            };
            let by_cl = rng.below(3) == 0;
            let on_mem = rng.below(4) == 0;
            let m = if on_mem {
                Some(mem(a, rng, c, 4)?)
            } else {
                None
            };
            macro_rules! sh {
                ($op:ident) => {
                    match (m, by_cl) {
                        (Some(m), true) => mi!(a, $op, sz, m, cl),
                        (Some(m), false) => mi!(a, $op, sz, m, n),
                        (None, true) => ri!(a, $op, sz, x, cl),
                        (None, false) => ri!(a, $op, sz, x, n),
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
            // 16-bit SHLD/SHRD by more than 16 leave the destination
            // undefined (and vendors differ): counts up to 16 there.
            let w = rng.below(2) == 0;
            let n = if w { rng.below(17) } else { rng.below(40) } as i32;
            if w && rng.below(2) == 0 {
                a.and(cl, 0xf)?;
            }
            if rng.below(3) == 0 {
                let m = mem(a, rng, c, 4)?;
                match (rng.below(4), w) {
                    (0, true) => a.shld(word_ptr(m), R16[y], n),
                    (0, false) => a.shld(dword_ptr(m), R32[y], n),
                    (1, true) => a.shrd(word_ptr(m), R16[y], cl),
                    (1, false) => a.shrd(dword_ptr(m), R32[y], cl),
                    (2, _) => a.shrd(dword_ptr(m), R32[y], n),
                    _ => a.shld(word_ptr(m), R16[y], cl),
                }
            } else {
                let x = rng.pick(&GP);
                let y = rng.pick(&GP);
                match (rng.below(4), w) {
                    (0, true) => a.shld(R16[x], R16[y], n),
                    (0, false) => a.shld(R32[x], R32[y], n),
                    (1, true) => a.shrd(R16[x], R16[y], cl),
                    (1, false) => a.shrd(R32[x], R32[y], cl),
                    (2, true) => a.shrd(R16[x], R16[y], n),
                    (2, false) => a.shrd(R32[x], R32[y], n),
                    (_, true) => a.shld(R16[x], R16[y], cl),
                    _ => a.shld(R32[x], R32[y], cl),
                }
            }
        }
        6 => muldiv(a, rng, c, sz),
        7 => bits(a, rng, c),
        8 => {
            let x = rng.pick(&GP);
            let y = rng.pick(&GP);
            let cc = rng.below(16);
            let on_mem = rng.below(4) == 0;
            let m = if on_mem {
                Some(mem(a, rng, c, 4)?)
            } else {
                None
            };
            let w = rng.below(2) == 0;
            macro_rules! cm {
                ($op:ident) => {
                    match (m, w) {
                        (Some(m), true) => a.$op(R16[x], word_ptr(m)),
                        (Some(m), false) => a.$op(R32[x], dword_ptr(m)),
                        (None, true) => a.$op(R16[x], R16[y]),
                        (None, false) => a.$op(R32[x], R32[y]),
                    }
                };
            }
            macro_rules! sc {
                ($op:ident) => {
                    match m {
                        Some(m) => a.$op(byte_ptr(m)),
                        None => a.$op(R8[rng.below(8) as usize]),
                    }
                };
            }
            match cc {
                0 => cm!(cmovo),
                1 => cm!(cmovb),
                2 => cm!(cmove),
                3 => cm!(cmovbe),
                4 => cm!(cmovs),
                5 => cm!(cmovp),
                6 => cm!(cmovl),
                7 => cm!(cmovle),
                8 => sc!(setno),
                9 => sc!(setae),
                10 => sc!(setne),
                11 => sc!(seta),
                12 => sc!(setns),
                13 => sc!(setnp),
                14 => sc!(setge),
                _ => sc!(setg),
            }
        }
        9 => strings(a, rng, c),
        10 => {
            let m = mem(a, rng, c, 8)?;
            let x = rng.pick(&GP);
            match rng.below(10) {
                0 => a.bswap(R32[x]),
                1 => a.movbe(R16[x], word_ptr(m)),
                2 => a.movbe(dword_ptr(m), R32[x]),
                3 => rr!(a, xchg, sz, x, y),
                4 => mr!(a, xchg, sz, m, y),
                5 => rr!(a, cmpxchg, sz, x, y),
                6 => mr!(a, cmpxchg, sz, m, y),
                7 => rr!(a, xadd, sz, x, y),
                8 => mr!(a, xadd, sz, m, y),
                _ => a.cmpxchg8b(qword_ptr(m)),
            }
        }
        11 => {
            let x = rng.pick(&GP);
            let y = rng.pick(&GP);
            let b = rng.below(8) as usize;
            let i = rng.pick(&GP);
            let d = rng.value() as i32;
            match rng.below(12) {
                0 => a.movzx(R32[x], R8[rng.below(8) as usize]),
                1 => a.movzx(R16[x], R8[rng.below(8) as usize]),
                2 => a.movsx(R32[x], R16[y]),
                3 => a.movsx(R16[x], R8[rng.below(8) as usize]),
                4 => {
                    let m = mem(a, rng, c, 2)?;
                    match rng.below(4) {
                        0 => a.movzx(R32[x], byte_ptr(m)),
                        1 => a.movsx(R32[x], word_ptr(m)),
                        2 => a.movzx(R16[x], byte_ptr(m)),
                        _ => a.movsx(R16[x], byte_ptr(m)),
                    }
                }
                5 | 6 => {
                    // LEA with a 16-bit address (no access: any registers).
                    let m = mem16(rng);
                    if rng.below(2) == 0 {
                        a.lea(R16[x], m)
                    } else {
                        a.lea(R32[x], m)
                    }
                }
                7 | 8 => {
                    let m = ptr(R32[b] + R32[i] * rng.pick(&[1, 2, 4, 8]) + d);
                    if rng.below(2) == 0 {
                        a.lea(R16[x], m)
                    } else {
                        a.lea(R32[x], m)
                    }
                }
                9 => ri!(a, mov, sz, reg(rng, sz), imm(rng, sz)),
                10 => rr!(a, mov, sz, reg(rng, sz), reg(rng, sz)),
                _ => {
                    // MOV AL/AX/EAX, moffs and back.
                    let off = if c.bits == 32 {
                        c.ds_abs + rng.below(0xfff0)
                    } else {
                        rng.below(0xfffc)
                    };
                    match rng.below(4) {
                        0 => a.mov(al, byte_ptr(off)),
                        1 => a.mov(word_ptr(off), ax),
                        2 => a.mov(eax, dword_ptr(off)),
                        _ => a.mov(byte_ptr(off), al),
                    }
                }
            }
        }
        12 => match rng.below(9) {
            0 => a.stc(),
            1 => a.clc(),
            2 => a.cmc(),
            3 => a.lahf(),
            4 => a.sahf(),
            5 => a.std(),
            6 => a.cld(),
            7 => a.salc(),
            _ => match rng.below(4) {
                0 => a.cbw(),
                1 => a.cwde(),
                2 => a.cwd(),
                _ => a.cdq(),
            },
        },
        13 => bcd(a, rng),
        14 => stack(a, rng, c),
        15 => segs(a, rng, c),
        16 => match rng.below(4) {
            0 | 1 => {
                // BOUND against bounds stored just before: usually the
                // whole range (no #BR), sometimes random ones.
                let m = mem(a, rng, c, 8)?;
                let x = rng.pick(&GP);
                let wide = rng.below(16) != 0;
                if rng.below(2) == 0 {
                    let (lo, hi) = if wide {
                        (i32::MIN, i32::MAX)
                    } else {
                        (rng.value() as i32, rng.value() as i32)
                    };
                    a.mov(dword_ptr(m), lo)?;
                    a.mov(dword_ptr(m + 4), hi)?;
                    a.bound(R32[x], qword_ptr(m))
                } else {
                    let (lo, hi) = if wide {
                        (i16::MIN as i32, i16::MAX as i32)
                    } else {
                        (rng.value() as i16 as i32, rng.value() as i16 as i32)
                    };
                    a.mov(word_ptr(m), lo)?;
                    a.mov(word_ptr(m + 2), hi)?;
                    a.bound(R16[x], dword_ptr(m))
                }
            }
            2 => a.into(),
            _ => {
                // XLAT: DS:[EBX + AL] (or FS:[BX + AL] with a 16-bit
                // address in 32-bit code).
                if c.bits == 32 && rng.below(2) == 0 {
                    a.mov(ebx, (c.ds_abs + rng.below(0xff00)) as u32)?;
                    a.xlatb()
                } else {
                    let (base, seg) = if c.bits == 32 {
                        (Register::BX, Register::FS)
                    } else if rng.below(2) == 0 {
                        (Register::BX, Register::None)
                    } else {
                        a.movzx(ebx, bx)?;
                        (Register::EBX, Register::ES)
                    };
                    a.add_instruction(Instruction::with1(
                        Code::Xlat_m8,
                        MemoryOperand::new(base, Register::AL, 1, 0, 0, false, seg),
                    )?)
                }
            }
        },
        17 => branches(a, rng, c, sz),
        18 => far(a, rng, c),
        19 => match rng.below(4) {
            // High-byte registers against each other.
            0 => a.add(R8[4 + rng.below(4) as usize], R8[rng.below(8) as usize]),
            1 => a.xchg(R8[4 + rng.below(4) as usize], R8[rng.below(8) as usize]),
            2 => a.shl(R8[4 + rng.below(4) as usize], 1),
            _ => a.movzx(R32[rng.pick(&GP)], R8[4 + rng.below(4) as usize]),
        },
        20 => {
            // ENTER/LEAVE.
            let size = rng.pick(&[0, 2, 4, 0x10, 0x32]);
            let level = rng.pick(&[0, 0, 1, 2, 3]);
            if !c.ss_data {
                // Flat 32-bit stack: EBP must point into the data area.
                a.mov(ebp, (LDATA + 0x1000 + rng.below(0xe000)) as u32)?;
            } else if c.ss_big {
                a.movzx(ebp, bp)?;
            }
            if rng.below(2) == 0 {
                a.enter(size, level)?;
            } else {
                // The other operand size.
                let code = if c.bits == 32 {
                    Code::Enterw_imm16_imm8
                } else {
                    Code::Enterd_imm16_imm8
                };
                a.add_instruction(Instruction::with2(code, size as u32, level as u32)?)?;
            }
            gen_simple(a, rng)?;
            a.leave()
        }
        21 => {
            // PUSH/POP of memory and immediates.
            let m = mem(a, rng, c, 4)?;
            let x = rng.pick(&GP);
            match rng.below(6) {
                0 => {
                    a.push(dword_ptr(m))?;
                    a.pop(R32[x])
                }
                1 => {
                    a.push(word_ptr(m))?;
                    a.pop(R16[x])
                }
                2 => {
                    a.push(R32[x])?;
                    a.pop(dword_ptr(m))
                }
                3 => {
                    a.push(R16[x])?;
                    a.pop(word_ptr(m))
                }
                4 => {
                    let code = if rng.below(2) == 0 {
                        Code::Pushd_imm32
                    } else {
                        Code::Pushd_imm8
                    };
                    let v = if code == Code::Pushd_imm8 {
                        rng.value() as i8 as i32
                    } else {
                        rng.value() as i32
                    };
                    a.add_instruction(Instruction::with1(code, v)?)?;
                    a.pop(R32[x])
                }
                _ => {
                    let code = if rng.below(2) == 0 {
                        Code::Push_imm16
                    } else {
                        Code::Pushw_imm8
                    };
                    let v = if code == Code::Pushw_imm8 {
                        rng.value() as i8 as i32
                    } else {
                        rng.value() as u16 as i32
                    };
                    a.add_instruction(Instruction::with1(code, v)?)?;
                    a.pop(R16[x])
                }
            }
        }
        22 => {
            // LOCKed read-modify-write of memory.
            let m = mem(a, rng, c, 8)?;
            let l = a.lock();
            match rng.below(10) {
                0 => mr!(l, add, sz, m, x),
                1 => mr!(l, sbb, sz, m, x),
                2 => mi!(l, xor, sz, m, imm(rng, sz)),
                3 => m1!(l, inc, sz, m),
                4 => m1!(l, neg, sz, m),
                5 => mr!(l, xadd, sz, m, x),
                6 => mr!(l, cmpxchg, sz, m, x),
                7 => l.cmpxchg8b(qword_ptr(m)),
                8 => l.bts(dword_ptr(m), rng.below(32) as i32),
                _ => mr!(l, xchg, sz, m, x),
            }
        }
        23 => {
            if rng.below(16) == 0 {
                faulting(a, rng)
            } else {
                rr!(a, sub, sz, x, y)
            }
        }
        _ => sse(a, rng, c),
    }
}

/// An instruction that reads no flags and keeps (E)BP/(E)SP (for
/// ENTER/LEAVE and PUSHA/POPA bodies).
fn gen_simple(a: &mut CodeAssembler, rng: &mut Rng) -> R {
    let pool = [0usize, 1, 2, 3, 6, 7];
    let x = rng.pick(&pool);
    let y = rng.pick(&pool);
    match rng.below(3) {
        0 => a.add(R32[x], R32[y]),
        1 => a.mov(R16[x], R16[y]),
        _ => a.xor(R8[rng.below(8) as usize], R8[rng.below(8) as usize]),
    }
}

fn muldiv(a: &mut CodeAssembler, rng: &mut Rng, c: &Ctx, sz: usize) -> R {
    // Divisors: never (E)AX/(E)DX (or AL/AH for bytes).
    let dv = rng.pick(&[1usize, 3, 5, 6, 7]);
    let dv8 = rng.pick(&[1usize, 2, 3, 5, 7]);
    match rng.below(9) {
        0 => r1!(a, mul, sz, reg(rng, sz)),
        1 => r1!(a, imul, sz, reg(rng, sz)),
        2 => {
            let m = mem(a, rng, c, 4)?;
            if rng.below(2) == 0 {
                m1!(a, mul, sz, m)
            } else {
                m1!(a, imul, sz, m)
            }
        }
        3 => {
            let x = rng.pick(&GP);
            let y = rng.pick(&GP);
            match rng.below(4) {
                0 => a.imul_2(R16[x], R16[y]),
                1 => a.imul_2(R32[x], R32[y]),
                2 => a.imul_3(R16[x], R16[y], imm(rng, 1)),
                _ => a.imul_3(R32[x], R32[y], imm(rng, 2)),
            }
        }
        4 | 5 => {
            // Unsigned division that cannot overflow.
            match sz {
                0 => {
                    a.or(R8[dv8], 1)?;
                    a.movzx(ax, al)?;
                    a.div(R8[dv8])
                }
                1 => {
                    a.or(R16[dv], 1)?;
                    a.xor(dx, dx)?;
                    a.div(R16[dv])
                }
                _ => {
                    a.or(R32[dv], 1)?;
                    a.xor(edx, edx)?;
                    a.div(R32[dv])
                }
            }
        }
        6 | 7 => {
            // Signed division; overflows (#DE) only for MIN / -1.
            match sz {
                0 => {
                    a.or(R8[dv8], 1)?;
                    a.cbw()?;
                    a.idiv(R8[dv8])
                }
                1 => {
                    a.or(R16[dv], 1)?;
                    a.cwd()?;
                    a.idiv(R16[dv])
                }
                _ => {
                    a.or(R32[dv], 1)?;
                    a.cdq()?;
                    a.idiv(R32[dv])
                }
            }
        }
        _ => {
            // Unguarded: #DE on a zero divisor or an overflow.
            let m = mem(a, rng, c, 4)?;
            if rng.below(2) == 0 {
                m1!(a, div, sz, m)
            } else {
                r1!(a, idiv, sz, reg(rng, sz))
            }
        }
    }
}

fn bits(a: &mut CodeAssembler, rng: &mut Rng, c: &Ctx) -> R {
    let x = rng.pick(&GP);
    let y = rng.pick(&GP);
    let w = rng.below(2) == 0;
    match rng.below(10) {
        0 => {
            let n = rng.below(40) as i32;
            match (rng.below(4), w) {
                (0, true) => a.bt(R16[x], n),
                (0, false) => a.bt(R32[x], n),
                (1, true) => a.bts(R16[x], R16[y]),
                (1, false) => a.bts(R32[x], R32[y]),
                (2, true) => a.btr(R16[x], R16[y]),
                (2, false) => a.btr(R32[x], n),
                (_, true) => a.btc(R16[x], n),
                _ => a.btc(R32[x], R32[y]),
            }
        }
        1 | 2 => {
            // Bit strings in memory: an offset of 0..255 bits.
            let y = rng.below(4) as usize;
            a.movzx(R32[y], R8[y])?;
            let m = mem(a, rng, c, 40)?;
            match (rng.below(4), w) {
                (0, true) => a.bt(word_ptr(m), R16[y]),
                (0, false) => a.bt(dword_ptr(m), R32[y]),
                (1, _) => a.bts(dword_ptr(m), R32[y]),
                (2, _) => a.btr(word_ptr(m), R16[y]),
                _ => a.btc(dword_ptr(m), R32[y]),
            }
        }
        3 => {
            let m = mem(a, rng, c, 4)?;
            let n = rng.below(256) as i32;
            match rng.below(4) {
                0 => a.bt(word_ptr(m), n),
                1 => a.bts(dword_ptr(m), n),
                2 => a.btr(word_ptr(m), n),
                _ => a.btc(dword_ptr(m), n),
            }
        }
        4 | 5 => {
            // A non-zero source (the destination is undefined for 0).
            a.or(R32[y], 0x100)?;
            match (rng.below(2), w) {
                (0, true) => a.bsf(R16[x], R16[y]),
                (0, false) => a.bsf(R32[x], R32[y]),
                (_, true) => a.bsr(R16[x], R16[y]),
                _ => a.bsr(R32[x], R32[y]),
            }
        }
        6 => {
            if w {
                a.popcnt(R16[x], R16[y])
            } else {
                a.popcnt(R32[x], R32[y])
            }
        }
        7 => {
            if w {
                a.lzcnt(R16[x], R16[y])
            } else {
                a.lzcnt(R32[x], R32[y])
            }
        }
        8 => {
            if w {
                a.tzcnt(R16[x], R16[y])
            } else {
                a.tzcnt(R32[x], R32[y])
            }
        }
        _ => {
            let m = mem(a, rng, c, 4)?;
            match rng.below(3) {
                0 => a.popcnt(R16[x], word_ptr(m)),
                1 => a.lzcnt(R32[x], dword_ptr(m)),
                _ => a.tzcnt(R32[x], dword_ptr(m)),
            }
        }
    }
}

/// String instructions with small counts, both address sizes.
fn strings(a: &mut CodeAssembler, rng: &mut Rng, c: &Ctx) -> R {
    let n = rng.below(12) as u32;
    let rep = match rng.below(4) {
        0 => RepPrefixKind::None,
        1 => RepPrefixKind::Repne,
        _ => RepPrefixKind::Repe,
    };
    if rng.below(2) == 0 {
        a.std()?;
    } else {
        a.cld()?;
    }
    // The address size: the code size mostly.
    let a16 = if rng.below(3) == 0 {
        c.bits == 32
    } else {
        c.bits == 16
    };
    let s = 0x100 + rng.below(0x7e00);
    let d = 0x100 + rng.below(0x7e00);
    let mut src_seg = Register::None;
    let mut restore_es = false;
    if a16 {
        if c.bits == 32 {
            // ES:DI and FS:SI, both based at LDATA.
            a.push(es)?;
            a.push(fs)?;
            a.pop(es)?;
            restore_es = true;
            src_seg = Register::FS;
        } else if rng.below(4) == 0 {
            src_seg = rng.pick(&[Register::ES, Register::SS, Register::FS]);
        }
        // Sometimes anywhere in the segment (SI/DI wrap at 64 KiB).
        let (s, d) = if rng.below(4) == 0 {
            (rng.below(0x10000), rng.below(0x10000))
        } else {
            (s, d)
        };
        a.mov(si, s as u32)?;
        a.mov(di, d as u32)?;
        a.mov(cx, n)?;
    } else {
        a.mov(esi, (c.ds_abs + s) as u32)?;
        a.mov(edi, (c.es_abs + d) as u32)?;
        a.mov(ecx, n)?;
        if c.bits == 16 && rng.below(4) == 0 {
            src_seg = rng.pick(&[Register::ES, Register::SS]);
        }
    }
    let asz = if a16 { 16 } else { 32 };
    let rep_movs = if rep == RepPrefixKind::None {
        RepPrefixKind::None
    } else {
        RepPrefixKind::Repe
    };
    let ins = match rng.below(15) {
        0 => Instruction::with_movsb(asz, src_seg, rep_movs)?,
        1 => Instruction::with_movsw(asz, src_seg, rep_movs)?,
        2 => Instruction::with_movsd(asz, src_seg, rep_movs)?,
        3 => Instruction::with_stosb(asz, rep_movs)?,
        4 => Instruction::with_stosw(asz, rep_movs)?,
        5 => Instruction::with_stosd(asz, rep_movs)?,
        6 => Instruction::with_lodsb(asz, src_seg, rep_movs)?,
        7 => Instruction::with_lodsw(asz, src_seg, rep_movs)?,
        8 => Instruction::with_lodsd(asz, src_seg, rep_movs)?,
        9 => Instruction::with_cmpsb(asz, src_seg, rep)?,
        10 => Instruction::with_cmpsw(asz, src_seg, rep)?,
        11 => Instruction::with_cmpsd(asz, src_seg, rep)?,
        12 => Instruction::with_scasb(asz, rep)?,
        13 => Instruction::with_scasw(asz, rep)?,
        _ => Instruction::with_scasd(asz, rep)?,
    };
    let mut ins = ins;
    if matches!(
        ins.mnemonic(),
        Mnemonic::Stosb
            | Mnemonic::Stosw
            | Mnemonic::Stosd
            | Mnemonic::Scasb
            | Mnemonic::Scasw
            | Mnemonic::Scasd
    ) && rng.below(4) == 0
    {
        // A segment prefix on an ES:(E)DI-only string instruction is
        // ignored.
        ins.set_segment_prefix(rng.pick(&[Register::CS, Register::DS, Register::FS, Register::GS]));
    }
    a.add_instruction(ins)?;
    if restore_es {
        a.pop(es)?;
    }
    Ok(())
}

fn bcd(a: &mut CodeAssembler, rng: &mut Rng) -> R {
    // Usually after an addition or subtraction of bytes, as BCD code does.
    if rng.below(3) != 0 {
        let y = rng.below(8) as usize;
        match rng.below(4) {
            0 => a.add(al, R8[y])?,
            1 => a.sub(al, R8[y])?,
            2 => a.adc(al, rng.below(0x100) as i32)?,
            _ => a.add(ax, R16[rng.pick(&GP)])?,
        }
    }
    let base = match rng.below(20) {
        0 => 0,
        1..=11 => 10,
        _ => rng.below(256) as i32,
    };
    match rng.below(6) {
        0 => a.daa(),
        1 => a.das(),
        2 => a.aaa(),
        3 => a.aas(),
        4 => a.aam(base),
        _ => a.aad(base),
    }
}

/// PUSH/POP round trips, PUSHA/POPA, PUSHF/POPF.
fn stack(a: &mut CodeAssembler, rng: &mut Rng, c: &Ctx) -> R {
    let x = rng.pick(&GP);
    let y = rng.pick(&GP);
    match rng.below(10) {
        0 => {
            a.push(R32[x])?;
            a.pop(R32[y])
        }
        1 => {
            a.push(R16[x])?;
            a.pop(R16[y])
        }
        2 => {
            // PUSH (E)SP pushes the value before the push.
            if rng.below(2) == 0 {
                a.push(esp)?;
                a.pop(R32[y])
            } else {
                a.push(sp)?;
                a.pop(R16[y])
            }
        }
        3 => {
            a.pushad()?;
            if rng.below(2) == 0 {
                gen_simple(a, rng)?;
            }
            a.popad()
        }
        4 => {
            a.pusha()?;
            gen_simple(a, rng)?;
            a.popa()
        }
        5 => {
            // PUSHA, then pops into other registers (skipping ESP's slot
            // with a pop into a scratch register).
            let d = rng.below(2) == 0;
            if d {
                a.pushad()?;
            } else {
                a.pusha()?;
            }
            for _ in 0..8 {
                let r = rng.pick(&GP);
                if d {
                    a.pop(R32[r])?;
                } else {
                    a.pop(R16[r])?;
                }
            }
            Ok(())
        }
        6 => {
            // Eight pushes, then POPA (ESP's slot skipped).
            let d = rng.below(2) == 0;
            for _ in 0..8 {
                let r = rng.pick(&GP);
                if d {
                    a.push(R32[r])?;
                } else {
                    a.push(R16[r])?;
                }
            }
            if d {
                a.popad()
            } else {
                a.popa()
            }
        }
        _ => {
            // PUSHF / change bits / POPF: the status flags, DF, and bits
            // CPL 3 may (AC, ID, NT) or may not (IF, IOPL: ignored) change.
            let mut flip = rng.value() & 0x8d5;
            if rng.below(2) == 0 {
                flip |= 0x400;
            }
            if rng.below(4) == 0 {
                flip |= 0x20_0000;
            }
            if rng.below(6) == 0 {
                flip |= 0x4000;
            }
            if rng.below(6) == 0 {
                flip |= 0x3200;
            }
            if rng.below(12) == 0 {
                flip |= 0x4_0000;
            }
            let d = if rng.below(3) == 0 {
                c.bits == 16
            } else {
                c.bits == 32
            };
            if d {
                a.pushfd()?;
                a.pop(R32[x])?;
                a.xor(R32[x], flip as i32)?;
                a.push(R32[x])?;
                a.popfd()
            } else {
                a.pushf()?;
                a.pop(R16[x])?;
                a.xor(R16[x], flip as u16 as i16 as i32)?;
                a.push(R16[x])?;
                a.popf()
            }
        }
    }
}

/// Segment registers: PUSH/POP, MOV, LDS/LES/LFS/LGS/LSS reloading the
/// same selectors, ARPL, LAR/LSL/VERR/VERW.
fn segs(a: &mut CodeAssembler, rng: &mut Rng, c: &Ctx) -> R {
    let x = rng.pick(&GP);
    let sregs = [es, ss, ds, fs, gs];
    let s = rng.pick(&sregs);
    match rng.below(12) {
        0 => {
            // PUSH sreg in both operand sizes, POP into the same one.
            let sw = [
                (Code::Pushw_ES, Code::Popw_ES, Register::ES),
                (Code::Pushw_SS, Code::Popw_SS, Register::SS),
                (Code::Pushw_DS, Code::Popw_DS, Register::DS),
                (Code::Pushw_FS, Code::Popw_FS, Register::FS),
                (Code::Pushw_GS, Code::Popw_GS, Register::GS),
                (Code::Pushd_ES, Code::Popd_ES, Register::ES),
                (Code::Pushd_SS, Code::Popd_SS, Register::SS),
                (Code::Pushd_DS, Code::Popd_DS, Register::DS),
                (Code::Pushd_FS, Code::Popd_FS, Register::FS),
                (Code::Pushd_GS, Code::Popd_GS, Register::GS),
            ];
            let (push, pop, r) = rng.pick(&sw);
            zero_slot(a, rng)?;
            a.add_instruction(Instruction::with1(push, r)?)?;
            a.add_instruction(Instruction::with1(pop, r)?)
        }
        1 => {
            // PUSH sreg, POP into a GPR (the upper bytes of a 32-bit slot).
            let (code, r) = rng.pick(&[
                (Code::Pushd_CS, Register::CS),
                (Code::Pushd_DS, Register::DS),
                (Code::Pushd_SS, Register::SS),
                (Code::Pushw_CS, Register::CS),
                (Code::Pushd_GS, Register::GS),
            ]);
            zero_slot(a, rng)?;
            a.add_instruction(Instruction::with1(code, r)?)?;
            if matches!(code, Code::Pushw_CS) {
                a.pop(R16[x])
            } else {
                a.pop(R32[x])
            }
        }
        2 => {
            // MOV r16/r32/m16, sreg.
            let s = rng.pick(&[es, cs, ss, ds, fs, gs]);
            match rng.below(3) {
                0 => a.mov(R16[x], s),
                1 => a.mov(R32[x], s),
                _ => {
                    let m = mem(a, rng, c, 2)?;
                    a.mov(word_ptr(m), s)
                }
            }
        }
        3 => {
            // MOV sreg, r16 / m16 with its own value.
            a.mov(R16[x], s)?;
            if rng.below(2) == 0 {
                a.mov(s, R16[x])
            } else {
                let m = mem(a, rng, c, 2)?;
                a.mov(word_ptr(m), R16[x])?;
                a.mov(s, word_ptr(m))
            }
        }
        4 => {
            // ES/FS: another data selector (or null, or one that faults).
            // Not a null selector with RPL 3: the host's IRET to user mode
            // (after any interrupt or page fault) nulls it to 0.
            let s = rng.pick(&[es, fs]);
            let v = rng.pick(&[
                0,
                SEL_USER_DS,
                SEL_USER_DS & !3,
                SEL_DATA16,
                SEL_DATA16 & !1,
                SEL_DATA32,
                sel(5),
                sel(6),
                sel(7),
                SEL_USER32_CS,
                SEL_CODE16,
            ]);
            let keep = if s == es { c.es_sel } else { SEL_DATA16 };
            a.mov(R16[x], v as u32)?;
            a.mov(s, R16[x])?;
            if rng.below(2) == 0 {
                // An access through it.
                let m = mem16(rng);
                let m = if s == es { m.es() } else { m.fs() };
                if c.bits == 32 {
                    a.add(R8[rng.below(8) as usize], byte_ptr(m))?;
                } else {
                    a.mov(word_ptr(m), R16[rng.pick(&GP)])?;
                }
            }
            if rng.below(4) != 0 {
                // The usual selector back (later accesses need it).
                a.mov(R16[x], keep as u32)?;
                a.mov(s, R16[x])?;
            }
            Ok(())
        }
        5 | 6 => {
            // LDS/LES/LFS/LGS/LSS with a pointer built in memory from the
            // segment register itself (and the current ESP for LSS).
            let m = mem(a, rng, c, 8)?;
            let d = rng.below(2) == 0;
            let y = rng.pick(&GP);
            let lss = rng.below(5) == 0;
            let s = if lss { ss } else { s };
            if d {
                if lss {
                    a.mov(dword_ptr(m), esp)?;
                } else {
                    a.mov(dword_ptr(m), R32[x])?;
                }
                a.mov(word_ptr(m + 4), s)?;
            } else {
                if lss {
                    a.mov(word_ptr(m), sp)?;
                } else {
                    a.mov(word_ptr(m), R16[x])?;
                }
                a.mov(word_ptr(m + 2), s)?;
            }
            let r32 = if lss { esp } else { R32[y] };
            let r16 = if lss { sp } else { R16[y] };
            macro_rules! ld {
                ($op:ident) => {
                    if d {
                        a.$op(r32, fword_ptr(m))
                    } else {
                        a.$op(r16, dword_ptr(m))
                    }
                };
            }
            if lss {
                ld!(lss)
            } else if s == es {
                ld!(les)
            } else if s == ss {
                ld!(lss)
            } else if s == ds {
                ld!(lds)
            } else if s == fs {
                ld!(lfs)
            } else {
                ld!(lgs)
            }
        }
        7 => {
            let y = rng.pick(&GP);
            if rng.below(2) == 0 {
                a.arpl(R16[x], R16[y])
            } else {
                let m = mem(a, rng, c, 2)?;
                a.arpl(word_ptr(m), R16[y])
            }
        }
        _ => {
            // LAR/LSL/VERR/VERW on selectors this process knows (the
            // GDT's CPU-number entry, 0x78..0x7F, excepted).
            let v = match rng.below(4) {
                0 => rng.pick(&[
                    0u16,
                    3,
                    0x08,
                    0x10,
                    0x18,
                    0x20,
                    SEL_USER32_CS,
                    0x29,
                    SEL_USER_DS,
                    0x33,
                    0x40,
                    0x48,
                    0x50,
                    0x58,
                    0x60,
                    0x6b,
                    0x80,
                    0xfffb,
                ]),
                1 => sel(rng.below(9) as u16) & !(rng.below(4) as u16),
                2 => SEL_CODE32 & !1,
                _ => {
                    let v = rng.next() as u16;
                    if v & 4 == 0 && (v >> 3) == 15 {
                        v ^ 0x40
                    } else {
                        v
                    }
                }
            };
            let y = rng.pick(&GP);
            a.mov(R16[x], v as u32)?;
            match rng.below(6) {
                0 => a.lar(R16[y], R16[x]),
                1 => a.lar(R32[y], R32[x]),
                2 => a.lsl(R16[y], R16[x]),
                3 => a.lsl(R32[y], R32[x]),
                4 => a.verr(R16[x]),
                _ => a.verw(R16[x]),
            }
        }
    }
}

/// Zeroes the dword below the stack pointer (PUSH 0; POP r): a 32-bit
/// PUSH of a segment register then leaves the same slot whether the CPU
/// writes 16 bits (Intel) or a zero-extended dword (implementation
/// specific, SDM).
fn zero_slot(a: &mut CodeAssembler, rng: &mut Rng) -> R {
    a.add_instruction(Instruction::with1(Code::Pushd_imm8, 0)?)?;
    a.pop(R32[rng.pick(&GP)])
}

/// Forward branches, JCXZ/JECXZ, LOOP, near CALL/RET.
fn branches(a: &mut CodeAssembler, rng: &mut Rng, c: &Ctx, sz: usize) -> R {
    let x = reg(rng, sz);
    let y = reg(rng, sz);
    match rng.below(6) {
        0 | 1 => {
            let mut skip = a.create_label();
            match rng.below(9) {
                0 => a.jo(skip)?,
                1 => a.jb(skip)?,
                2 => a.je(skip)?,
                3 => a.jbe(skip)?,
                4 => a.js(skip)?,
                5 => a.jp(skip)?,
                6 => a.jl(skip)?,
                7 => a.jle(skip)?,
                _ => {
                    if c.bits == 16 {
                        a.jcxz(skip)?
                    } else {
                        a.jecxz(skip)?
                    }
                }
            }
            match rng.below(3) {
                0 => rr!(a, add, sz, x, y)?,
                1 => r1!(a, inc, sz, x)?,
                _ => a.mov(R16[rng.pick(&GP)], R16[rng.pick(&GP)])?,
            }
            a.set_label(&mut skip)?;
            a.zero_bytes()
        }
        2 => {
            // JCXZ/JECXZ of the other address size over a body.
            let b = piece(c.bits, |a| body(a, rng))?;
            a.db(&[0x67, 0xe3, b.len() as u8])?;
            a.db(&b)
        }
        3 => {
            // LOOP/LOOPE/LOOPNE back over a body, 1..4 times, with CX or
            // ECX (the address size).
            let n = 1 + rng.below(4) as u32;
            let a16 = if rng.below(3) == 0 {
                c.bits == 32
            } else {
                c.bits == 16
            };
            if a16 {
                a.mov(cx, n)?;
            } else {
                a.mov(ecx, n)?;
            }
            let b = piece(c.bits, |a| body(a, rng))?;
            a.db(&b)?;
            let op = rng.pick(&[0xe2u8, 0xe1, 0xe0]);
            let prefix = a16 != (c.bits == 16);
            let len = b.len() + 2 + prefix as usize;
            if prefix {
                a.db(&[0x67])?;
            }
            a.db(&[op, (-(len as i32)) as u8])
        }
        _ => {
            // CALL; JMP over; body; RET [n] — in either operand size in
            // 16-bit code (a 16-bit CALL in 32-bit code would truncate EIP).
            let o32 = c.bits == 32 || rng.below(3) == 0;
            let args = rng.below(3) as u16;
            let b = piece(c.bits, |a| body(a, rng))?;
            let prefix: &[u8] = if o32 != (c.bits == 32) { &[0x66] } else { &[] };
            let w = if o32 { 4 } else { 2 };
            let mut ret = prefix.to_vec();
            if args == 0 {
                if rng.below(4) == 0 {
                    ret.push(0xf3); // REP RET: the prefix is ignored
                }
                ret.push(0xc3);
            } else {
                ret.push(0xc2);
                ret.extend_from_slice(&(args * w).to_le_bytes());
            }
            for _ in 0..args {
                if o32 {
                    a.push(R32[rng.pick(&GP)])?;
                } else {
                    a.push(R16[rng.pick(&GP)])?;
                }
            }
            let mut call = prefix.to_vec();
            call.push(0xe8);
            if o32 {
                call.extend_from_slice(&2u32.to_le_bytes());
            } else {
                call.extend_from_slice(&2u16.to_le_bytes());
            }
            a.db(&call)?;
            a.db(&[0xeb, (b.len() + ret.len()) as u8])?;
            a.db(&b)?;
            a.db(&ret)
        }
    }
}

/// Far calls: PUSH CS / CALL / RETF within the segment, and direct or
/// indirect far calls to the stubs in the 16- and 32-bit code segments.
fn far(a: &mut CodeAssembler, rng: &mut Rng, c: &Ctx) -> R {
    match rng.below(7) {
        0 => {
            // PUSH CS; CALL next; JMP over; RETF.
            let b = piece(c.bits, |a| body(a, rng))?;
            a.push(cs)?;
            let call: &[u8] = if c.bits == 32 {
                &[0xe8, 2, 0, 0, 0]
            } else {
                &[0xe8, 2, 0]
            };
            a.db(call)?;
            a.db(&[0xeb, (b.len() + 1) as u8])?;
            a.db(&b)?;
            a.db(&[0xcb])
        }
        1 => {
            // PUSHF; [flip bits in the image]; PUSH CS; CALL next; JMP
            // over; IRET: a same-privilege IRET that loads EFLAGS like
            // POPF (IF and IOPL kept at CPL 3). 16-bit code may use either
            // operand size.
            let o32 = c.bits == 32 || rng.below(2) == 0;
            let p: &[u8] = if o32 != (c.bits == 32) { &[0x66] } else { &[] };
            a.db(&[p, &[0x9c]].concat())?;
            if rng.below(2) == 0 {
                let flip = (rng.value() & 0x8d5) | rng.pick(&[0, 0x400, 0x3200, 0x20_0000]);
                let t = top_of_stack(a, c)?;
                if o32 {
                    a.xor(dword_ptr(t), flip as i32)?;
                } else {
                    a.xor(word_ptr(t), flip as u16 as i16 as i32)?;
                }
            }
            a.db(&[p, &[0x0e]].concat())?;
            let call: Vec<u8> = if o32 {
                [p, &[0xe8, 2, 0, 0, 0]].concat()
            } else {
                [p, &[0xe8, 2, 0]].concat()
            };
            a.db(&call)?;
            a.db(&[0xeb, 1 + p.len() as u8])?;
            a.db(&[p, &[0xcf]].concat())
        }
        2 => {
            // PUSH CS; CALL next; (adjust the pushed IP past the JMP); JMP
            // FAR to a stub whose RETF returns after the JMP.
            let stubs: Vec<&Stub> = STUBS
                .iter()
                .filter(|s| s.o32 == (c.bits == 32) && s.args == 0)
                .collect();
            let s = stubs[rng.below(stubs.len() as u64) as usize];
            let off = if s.sel == SEL_USER32_CS {
                LCODE + s.off
            } else {
                s.off
            } as u32;
            let o32ptr = off > 0xffff || rng.below(2) == 0;
            // The pointer at an absolute address (the code below changes
            // (E)BX and the stack).
            let moff = (rng.below(2) == 0).then(|| {
                if c.bits == 32 {
                    c.ds_abs + rng.below(0xfff8)
                } else {
                    rng.below(0xfff8)
                }
            });
            if let Some(p) = moff {
                if o32ptr {
                    a.mov(dword_ptr(p), off)?;
                    a.mov(word_ptr(p + 4), s.sel as u32)?;
                } else {
                    a.mov(word_ptr(p), off)?;
                    a.mov(word_ptr(p + 2), s.sel as u32)?;
                }
            }
            let jmp = piece(c.bits, |a| {
                let ins = match (moff, o32ptr) {
                    (Some(p), o32) => {
                        let m = MemoryOperand::new(
                            Register::None,
                            Register::None,
                            1,
                            p as i64,
                            c.bits / 8,
                            false,
                            Register::None,
                        );
                        let code = if o32 {
                            Code::Jmp_m1632
                        } else {
                            Code::Jmp_m1616
                        };
                        Instruction::with1(code, m)?
                    }
                    (None, o32) => {
                        let code = if o32 {
                            Code::Jmp_ptr1632
                        } else {
                            Code::Jmp_ptr1616
                        };
                        Instruction::with_far_branch(code, s.sel, off)?
                    }
                };
                a.add_instruction(ins)
            })?;
            a.push(cs)?;
            // CALL next pushes the address of the POP: POP (E)BX; ADD
            // (E)BX, 5 + the JMP's length; PUSH (E)BX; JMP FAR.
            if c.bits == 32 {
                a.db(&[0xe8, 0, 0, 0, 0])?;
            } else {
                a.db(&[0xe8, 0, 0])?;
            }
            a.db(&[0x5b, 0x83, 0xc3, 5 + jmp.len() as u8, 0x53])?;
            a.db(&jmp)
        }
        _ => {
            // A stub whose RETF matches the call's operand size.
            let stubs: Vec<&Stub> = STUBS
                .iter()
                .filter(|s| c.bits == 16 || s.o32)
                .filter(|s| !(c.bits == 32 && s.sel == SEL_CODE16 && !s.o32))
                .collect();
            let s = stubs[rng.below(stubs.len() as u64) as usize];
            for _ in 0..s.args {
                if s.o32 {
                    a.push(R32[rng.pick(&GP)])?;
                } else {
                    a.push(R16[rng.pick(&GP)])?;
                }
            }
            let off = if s.sel == SEL_USER32_CS {
                LCODE + s.off
            } else {
                s.off
            } as u32;
            if rng.below(2) == 0 {
                let code = if s.o32 {
                    Code::Call_ptr1632
                } else {
                    Code::Call_ptr1616
                };
                a.add_instruction(Instruction::with_far_branch(code, s.sel, off)?)
            } else {
                let m = mem(a, rng, c, 6)?;
                if s.o32 {
                    a.mov(dword_ptr(m), off)?;
                    a.mov(word_ptr(m + 4), s.sel as u32)?;
                    a.call(fword_ptr(m))
                } else {
                    a.mov(word_ptr(m), off)?;
                    a.mov(word_ptr(m + 2), s.sel as u32)?;
                    a.call(dword_ptr(m))
                }
            }
        }
    }
}

/// The top of the stack as a memory operand: `[ESP]` on a 32-bit stack;
/// on a 16-bit one (ESP's upper half is not part of the address) `[BP]`
/// after `MOV BP, SP`.
fn top_of_stack(a: &mut CodeAssembler, c: &Ctx) -> R<AsmMemoryOperand> {
    if c.ss_big {
        Ok(ptr(esp))
    } else {
        a.mov(bp, sp)?;
        Ok(ptr(bp))
    }
}

/// Instructions that fault at CPL 3 (or trap): both sides must fault.
fn faulting(a: &mut CodeAssembler, rng: &mut Rng) -> R {
    match rng.below(12) {
        0 => a.cli(),
        1 => a.sti(),
        2 => a.hlt(),
        3 => a.in_(al, dx),
        4 => a.out(dx, al),
        5 => a.mov(eax, cr0),
        6 => a.rdmsr(),
        7 => a.clts(),
        8 => a.lldt(ax),
        9 => a.int(0x81),
        10 => a.ud2(),
        _ => a.int3(),
    }
}

fn sse(a: &mut CodeAssembler, rng: &mut Rng, c: &Ctx) -> R {
    let p = rng.pick(&XS);
    let q = rng.pick(&XS);
    let x = rng.pick(&GP);
    let imm = rng.below(256) as i32;
    match rng.below(16) {
        0 => a.paddd(p, q),
        1 => a.pshufb(p, q),
        2 => a.pshufd(p, q, imm),
        3 => a.punpcklbw(p, q),
        4 => a.pmaddwd(p, q),
        5 => a.movd(R32[x], p),
        6 => a.movd(p, R32[x]),
        7 => a.pmovmskb(R32[x], p),
        8 => a.pextrw(R32[x], p, imm),
        9 => a.pinsrw(p, R32[x], imm),
        10 => a.ptest(p, q),
        11 => a.pcmpgtq(p, q),
        12 => a.addps(p, q),
        13 => {
            let m = mem(a, rng, c, 16)?;
            a.movdqu(p, xmmword_ptr(m))
        }
        14 => {
            let m = mem(a, rng, c, 16)?;
            a.movdqu(xmmword_ptr(m), p)
        }
        _ => {
            let m = mem(a, rng, c, 8)?;
            a.movq(qword_ptr(m), p)
        }
    }
}
