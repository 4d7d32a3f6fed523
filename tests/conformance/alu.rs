//! Integer instructions on edge values, with their flags (undefined flags
//! masked per instruction, as the SDM defines them), checked against the
//! host CPU and across backends. The tables run in ring 3 of a long-mode
//! guest.

use crate::harness::*;
use iced_x86::code_asm::*;

const CF: u64 = 1;
const PF: u64 = 4;
const AF: u64 = 0x10;
const ZF: u64 = 0x40;
const SF: u64 = 0x80;
const OF: u64 = 0x800;
const ALL: u64 = CF | PF | AF | ZF | SF | OF;

const VALUES: [u64; 12] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0x8000,
    0x7fff_ffff,
    0x8000_0000,
    0x8000_0000_0000_0000,
    u64::MAX,
    0x0123_4567_89ab_cdef,
];

/// Builds a table: each entry sets RAX/RCX/RDX, loads RFLAGS, runs one
/// instruction and stores RAX, RDX and the masked RFLAGS (24 bytes).
struct Table {
    a: CodeAssembler,
    descs: Vec<String>,
}

impl Table {
    fn new() -> Table {
        Table {
            a: CodeAssembler::new(64).unwrap(),
            descs: Vec::new(),
        }
    }
    fn entry(
        &mut self,
        desc: String,
        x: u64,
        y: u64,
        flags_in: u64,
        mask: u64,
        op: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>,
    ) {
        let a = &mut self.a;
        a.mov(rax, x).unwrap();
        a.mov(rcx, y).unwrap();
        a.mov(rdx, 0x1111_2222_3333_4444u64).unwrap();
        a.push((0x2 | flags_in) as i32).unwrap();
        a.popfq().unwrap();
        op(a).unwrap();
        a.pushfq().unwrap();
        // Mask in place: no undefined flag stays behind on the stack.
        a.and(qword_ptr(rsp), mask as i32).unwrap();
        a.pop(r8).unwrap();
        a.mov(qword_ptr(rdi), rax).unwrap();
        a.mov(qword_ptr(rdi + 8), rdx).unwrap();
        a.mov(qword_ptr(rdi + 16), r8).unwrap();
        a.add(rdi, 24).unwrap();
        self.descs
            .push(format!("{desc} a={x:#x} b={y:#x} flags_in={flags_in:#x}"));
    }
    fn case(self, name: &'static str) -> Case {
        let Table { mut a, descs } = self;
        let code = {
            a.mov(rax, rdi).unwrap();
            a.ret().unwrap();
            a.assemble(TABLE_BODY).unwrap()
        };
        table_case(name, code, &[], 24, descs)
    }
}

type Op2 = fn(&mut CodeAssembler, u32) -> Result<(), IcedError>;

fn two(
    a: &mut CodeAssembler,
    bits: u32,
    f8: impl FnOnce(&mut CodeAssembler, AsmRegister8, AsmRegister8) -> Result<(), IcedError>,
    f16: impl FnOnce(&mut CodeAssembler, AsmRegister16, AsmRegister16) -> Result<(), IcedError>,
    f32: impl FnOnce(&mut CodeAssembler, AsmRegister32, AsmRegister32) -> Result<(), IcedError>,
    f64: impl FnOnce(&mut CodeAssembler, AsmRegister64, AsmRegister64) -> Result<(), IcedError>,
) -> Result<(), IcedError> {
    match bits {
        8 => f8(a, al, cl),
        16 => f16(a, ax, cx),
        32 => f32(a, eax, ecx),
        _ => f64(a, rax, rcx),
    }
}

macro_rules! op2 {
    ($m:ident) => {
        (|a: &mut CodeAssembler, bits: u32| {
            two(
                a,
                bits,
                |a, x, y| a.$m(x, y),
                |a, x, y| a.$m(x, y),
                |a, x, y| a.$m(x, y),
                |a, x, y| a.$m(x, y),
            )
        }) as Op2
    };
}

macro_rules! op1 {
    ($m:ident) => {
        (|a: &mut CodeAssembler, bits: u32| match bits {
            8 => a.$m(al),
            16 => a.$m(ax),
            32 => a.$m(eax),
            _ => a.$m(rax),
        }) as Op2
    };
}

const SIZES: [u32; 4] = [8, 16, 32, 64];

#[test]
fn alu_arith_flags() {
    let ops: [(&str, Op2, u64); 7] = [
        ("add", op2!(add), ALL),
        ("adc", op2!(adc), ALL),
        ("sub", op2!(sub), ALL),
        ("sbb", op2!(sbb), ALL),
        ("cmp", op2!(cmp), ALL),
        ("xadd", op2!(xadd), ALL),
        ("cmpxchg", op2!(cmpxchg), ALL),
    ];
    let mut t = Table::new();
    for (name, op, mask) in ops {
        for bits in SIZES {
            for &x in &VALUES {
                for &y in &VALUES {
                    let fl = if matches!(name, "adc" | "sbb") && y & 1 == 1 {
                        CF
                    } else {
                        0
                    };
                    t.entry(format!("{name}{bits}"), x, y, fl, mask, |a| op(a, bits));
                }
            }
        }
    }
    t.case("alu_arith_flags").run();
}

#[test]
fn alu_logic_and_unary_flags() {
    let ops: [(&str, Op2, u64); 8] = [
        ("and", op2!(and), ALL & !AF),
        ("or", op2!(or), ALL & !AF),
        ("xor", op2!(xor), ALL & !AF),
        ("test", op2!(test), ALL & !AF),
        ("inc", op1!(inc), ALL),
        ("dec", op1!(dec), ALL),
        ("neg", op1!(neg), ALL),
        ("not", op1!(not), ALL),
    ];
    let mut t = Table::new();
    for (name, op, mask) in ops {
        for bits in SIZES {
            for &x in &VALUES {
                for fl in [0, ALL] {
                    t.entry(
                        format!("{name}{bits}"),
                        x,
                        0x5555_aaaa_5555_aaaa,
                        fl,
                        mask,
                        |a| op(a, bits),
                    );
                }
            }
        }
    }
    t.case("alu_logic_and_unary_flags").run();
}

#[test]
fn shifts_and_rotates_flags() {
    let ops: [(&str, Op2); 7] = [
        ("shl", |a, b| match b {
            8 => a.shl(al, cl),
            16 => a.shl(ax, cl),
            32 => a.shl(eax, cl),
            _ => a.shl(rax, cl),
        }),
        ("shr", |a, b| match b {
            8 => a.shr(al, cl),
            16 => a.shr(ax, cl),
            32 => a.shr(eax, cl),
            _ => a.shr(rax, cl),
        }),
        ("sar", |a, b| match b {
            8 => a.sar(al, cl),
            16 => a.sar(ax, cl),
            32 => a.sar(eax, cl),
            _ => a.sar(rax, cl),
        }),
        ("rol", |a, b| match b {
            8 => a.rol(al, cl),
            16 => a.rol(ax, cl),
            32 => a.rol(eax, cl),
            _ => a.rol(rax, cl),
        }),
        ("ror", |a, b| match b {
            8 => a.ror(al, cl),
            16 => a.ror(ax, cl),
            32 => a.ror(eax, cl),
            _ => a.ror(rax, cl),
        }),
        ("rcl", |a, b| match b {
            8 => a.rcl(al, cl),
            16 => a.rcl(ax, cl),
            32 => a.rcl(eax, cl),
            _ => a.rcl(rax, cl),
        }),
        ("rcr", |a, b| match b {
            8 => a.rcr(al, cl),
            16 => a.rcr(ax, cl),
            32 => a.rcr(eax, cl),
            _ => a.rcr(rax, cl),
        }),
    ];
    let mut t = Table::new();
    for (name, op) in ops {
        for bits in SIZES {
            for &x in &[
                0x81u64,
                0x8000_0000_0000_4001,
                0x7fff_ffff_ffff_fffe,
                0x4000,
            ] {
                for count in [0u64, 1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64] {
                    let c = count & if bits == 64 { 63 } else { 31 };
                    let mask = match name {
                        _ if c == 0 => ALL,
                        "shl" | "shr" | "sar" => {
                            let mut m = ALL & !AF;
                            if c != 1 {
                                m &= !OF;
                            }
                            if c >= bits as u64 && name != "sar" {
                                m &= !CF;
                            }
                            m
                        }
                        _ => {
                            if c == 1 {
                                ALL
                            } else {
                                ALL & !OF
                            }
                        }
                    };
                    for fl in [0, ALL] {
                        t.entry(
                            format!("{name}{bits} by {count}"),
                            x,
                            count,
                            fl,
                            mask,
                            |a| op(a, bits),
                        );
                    }
                }
            }
        }
    }
    t.case("shifts_and_rotates_flags").run();
}

#[test]
fn mul_div() {
    let mut t = Table::new();
    let mulmask = CF | OF;
    for bits in SIZES {
        for &x in &VALUES {
            for &y in &VALUES {
                t.entry(format!("mul{bits}"), x, y, 0, mulmask, |a| match bits {
                    8 => a.mul(cl),
                    16 => a.mul(cx),
                    32 => a.mul(ecx),
                    _ => a.mul(rcx),
                });
                t.entry(format!("imul{bits}"), x, y, 0, mulmask, |a| match bits {
                    8 => a.imul(cl),
                    16 => a.imul(cx),
                    32 => a.imul(ecx),
                    _ => a.imul(rcx),
                });
                if bits > 8 {
                    t.entry(format!("imul2_{bits}"), x, y, 0, mulmask, |a| match bits {
                        16 => a.imul_2(ax, cx),
                        32 => a.imul_2(eax, ecx),
                        _ => a.imul_2(rax, rcx),
                    });
                }
                let m = if bits == 64 {
                    u64::MAX
                } else {
                    (1u64 << bits) - 1
                };
                if y & m != 0 {
                    // Unsigned: high half zero, so the quotient fits.
                    t.entry(format!("div{bits}"), x, y, 0, 0, |a| {
                        a.xor(edx, edx)?;
                        match bits {
                            8 => {
                                a.movzx(eax, al)?;
                                a.div(cl)
                            }
                            16 => a.div(cx),
                            32 => a.div(ecx),
                            _ => a.div(rcx),
                        }
                    });
                    let xs = ((x & m) as i64) << (64 - bits) >> (64 - bits);
                    let ys = ((y & m) as i64) << (64 - bits) >> (64 - bits);
                    let min = i64::MIN >> (64 - bits);
                    if !(xs == min && ys == -1) {
                        t.entry(format!("idiv{bits}"), x, y, 0, 0, |a| match bits {
                            8 => {
                                a.cbw()?;
                                a.idiv(cl)
                            }
                            16 => {
                                a.cwd()?;
                                a.idiv(cx)
                            }
                            32 => {
                                a.cdq()?;
                                a.idiv(ecx)
                            }
                            _ => {
                                a.cqo()?;
                                a.idiv(rcx)
                            }
                        });
                    }
                }
            }
        }
    }
    t.case("mul_div").run();
}

#[test]
fn bit_ops_and_counts() {
    let mut t = Table::new();
    for bits in [16u32, 32, 64] {
        for &x in &VALUES {
            for &y in &[0u64, 1, 5, 15, 16, 31, 32, 63, 64, 100] {
                for (name, op) in [
                    (
                        "bt",
                        (|a: &mut CodeAssembler, b| {
                            two(
                                a,
                                b,
                                |_, _, _| Ok(()),
                                |a, x, y| a.bt(x, y),
                                |a, x, y| a.bt(x, y),
                                |a, x, y| a.bt(x, y),
                            )
                        }) as Op2,
                    ),
                    ("bts", |a, b| {
                        two(
                            a,
                            b,
                            |_, _, _| Ok(()),
                            |a, x, y| a.bts(x, y),
                            |a, x, y| a.bts(x, y),
                            |a, x, y| a.bts(x, y),
                        )
                    }),
                    ("btr", |a, b| {
                        two(
                            a,
                            b,
                            |_, _, _| Ok(()),
                            |a, x, y| a.btr(x, y),
                            |a, x, y| a.btr(x, y),
                            |a, x, y| a.btr(x, y),
                        )
                    }),
                    ("btc", |a, b| {
                        two(
                            a,
                            b,
                            |_, _, _| Ok(()),
                            |a, x, y| a.btc(x, y),
                            |a, x, y| a.btc(x, y),
                            |a, x, y| a.btc(x, y),
                        )
                    }),
                ] {
                    t.entry(format!("{name}{bits}"), x, y, 0, CF, |a| op(a, bits));
                }
            }
            for (name, op, mask) in [
                (
                    "popcnt",
                    (|a: &mut CodeAssembler, b| {
                        two(
                            a,
                            b,
                            |_, _, _| Ok(()),
                            |a, x, y| a.popcnt(x, y),
                            |a, x, y| a.popcnt(x, y),
                            |a, x, y| a.popcnt(x, y),
                        )
                    }) as Op2,
                    ALL,
                ),
                (
                    "lzcnt",
                    |a, b| {
                        two(
                            a,
                            b,
                            |_, _, _| Ok(()),
                            |a, x, y| a.lzcnt(x, y),
                            |a, x, y| a.lzcnt(x, y),
                            |a, x, y| a.lzcnt(x, y),
                        )
                    },
                    CF | ZF,
                ),
                (
                    "bsf",
                    |a, b| {
                        two(
                            a,
                            b,
                            |_, _, _| Ok(()),
                            |a, x, y| a.bsf(x, y),
                            |a, x, y| a.bsf(x, y),
                            |a, x, y| a.bsf(x, y),
                        )
                    },
                    ZF,
                ),
                (
                    "bsr",
                    |a, b| {
                        two(
                            a,
                            b,
                            |_, _, _| Ok(()),
                            |a, x, y| a.bsr(x, y),
                            |a, x, y| a.bsr(x, y),
                            |a, x, y| a.bsr(x, y),
                        )
                    },
                    ZF,
                ),
            ] {
                // BSF/BSR leave the destination undefined for a zero source.
                let src = if x == 0 && name.starts_with("bs") {
                    0x100
                } else {
                    x
                };
                t.entry(format!("{name}{bits}"), 0x77, src, ALL, mask, |a| {
                    op(a, bits)
                });
            }
        }
    }
    for &x in &VALUES {
        t.entry("bswap32".into(), x, 0, 0, ALL, |a| a.bswap(eax));
        t.entry("bswap64".into(), x, 0, 0, ALL, |a| a.bswap(rax));
        t.entry("cmp+setcc/cmovcc".into(), x, 0x80, 0, ALL, |a| {
            a.cmp(rax, rcx)?;
            a.setl(dl)?;
            a.setb(dh)?;
            a.cmovg(rax, rcx)?;
            a.cmovbe(rcx, rdx)?;
            a.seto(ah)
        });
    }
    t.case("bit_ops_and_counts").run();
}

#[test]
fn alu_ring0_compat32() {
    // The same kind of arithmetic in ring 0 of a compatibility-mode guest:
    // backends must agree (no host oracle for 32-bit code).
    simple("alu_ring0_compat32", Mode::Compat32, |a| {
        a.mov(edi, DATA as u32)?;
        for &(x, y) in &[
            (0x7fff_ffffu32, 1u32),
            (0x8000_0000, 0xffff_ffff),
            (0, 0),
            (0xff, 1),
        ] {
            a.mov(eax, x)?;
            a.mov(ecx, y)?;
            a.add(eax, ecx)?;
            a.pushfd()?;
            a.sbb(ecx, eax)?;
            a.pushfd()?;
            a.daa()?;
            a.pushfd()?;
            a.pop(edx)?;
            a.and(edx, (ALL & !OF) as i32)?;
            a.pop(ebx)?;
            a.and(ebx, ALL as i32)?;
            a.pop(esi)?;
            a.and(esi, ALL as i32)?;
            for r in [eax, ecx, edx, ebx, esi] {
                a.mov(dword_ptr(edi), r)?;
                a.add(edi, 4)?;
            }
        }
        Ok(())
    })
    .check(|o| o.ended())
    .flags_mask(0)
    .run();
}

#[test]
fn tzcnt_bmi1() {
    let mut t = Table::new();
    for bits in [16u32, 32, 64] {
        for &x in &VALUES {
            t.entry(
                format!("tzcnt{bits}"),
                0x77,
                x,
                ALL,
                CF | ZF,
                |a| match bits {
                    16 => a.tzcnt(ax, cx),
                    32 => a.tzcnt(eax, ecx),
                    _ => a.tzcnt(rax, rcx),
                },
            );
        }
    }
    t.case("tzcnt_bmi1").run();
}
