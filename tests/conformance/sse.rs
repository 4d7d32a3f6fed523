//! SSE: moves, packed/scalar float arithmetic, integer SIMD, shuffles,
//! conversions and MXCSR flags, checked against the host CPU (ring 3), and
//! a few in ring 0 across backends.

use crate::harness::*;
use iced_x86::code_asm::*;

fn input() -> Vec<u8> {
    let f: [f32; 16] = [
        1.5,
        -2.25,
        3.0e10,
        0.1,
        -0.0,
        1.0e-40,
        f32::INFINITY,
        7.0,
        2.0,
        0.5,
        -3.0,
        1.0e20,
        f32::NAN,
        4.0,
        -1.0e-3,
        65536.0,
    ];
    let d: [f64; 8] = [
        1.0 / 3.0,
        -2.5,
        1.0e300,
        5.0e-324,
        0.0,
        -7.75,
        2.0,
        f64::NAN,
    ];
    let mut v = Vec::new();
    for x in f {
        v.extend_from_slice(&x.to_le_bytes());
    }
    for x in d {
        v.extend_from_slice(&x.to_le_bytes());
    }
    for i in 0..64u8 {
        v.push(i.wrapping_mul(37) ^ 0xa5);
    }
    v
}

/// Stores XMM0 and MXCSR (16 + 8 bytes per entry), resetting MXCSR.
fn store(a: &mut CodeAssembler) -> Result<(), IcedError> {
    a.movdqu(xmmword_ptr(rdi), xmm0)?;
    a.stmxcsr(dword_ptr(rdi + 16))?;
    a.mov(dword_ptr(rdi + 20), 0)?;
    a.add(rdi, 24)?;
    a.mov(dword_ptr(rsp - 8), 0x1f80)?;
    a.ldmxcsr(dword_ptr(rsp - 8))
}

type Op = fn(&mut CodeAssembler) -> Result<(), IcedError>;

#[test]
fn sse_table_host_checked() {
    let ops: Vec<(&str, Op)> = vec![
        ("addps", |a| a.addps(xmm0, xmm1)),
        ("subps", |a| a.subps(xmm0, xmm1)),
        ("mulps", |a| a.mulps(xmm0, xmm1)),
        ("divps", |a| a.divps(xmm0, xmm1)),
        ("sqrtps", |a| a.sqrtps(xmm0, xmm1)),
        ("maxps", |a| a.maxps(xmm0, xmm1)),
        ("minps", |a| a.minps(xmm0, xmm1)),
        ("addss", |a| a.addss(xmm0, xmm1)),
        ("divss", |a| a.divss(xmm0, xmm1)),
        ("addpd", |a| a.addpd(xmm0, xmm2)),
        ("mulsd", |a| a.mulsd(xmm0, xmm2)),
        ("divpd", |a| a.divpd(xmm2, xmm0)),
        ("sqrtsd", |a| a.sqrtsd(xmm0, xmm2)),
        ("cmpltps", |a| a.cmpps(xmm0, xmm1, 1)),
        ("cmpunordpd", |a| a.cmppd(xmm0, xmm2, 3)),
        ("andps/andnps/orps/xorps", |a| {
            a.andps(xmm0, xmm1)?;
            a.andnps(xmm0, xmm3)?;
            a.orps(xmm0, xmm2)?;
            a.xorps(xmm0, xmm3)
        }),
        ("shufps", |a| a.shufps(xmm0, xmm1, 0x1b)),
        ("pshufd", |a| a.pshufd(xmm0, xmm3, 0x4e)),
        ("unpcklps", |a| a.unpcklps(xmm0, xmm1)),
        ("unpckhpd", |a| a.unpckhpd(xmm0, xmm2)),
        ("punpcklbw", |a| a.punpcklbw(xmm0, xmm3)),
        ("punpckhdq", |a| a.punpckhdq(xmm0, xmm3)),
        ("paddb", |a| a.paddb(xmm0, xmm3)),
        ("paddw", |a| a.paddw(xmm0, xmm3)),
        ("paddd", |a| a.paddd(xmm0, xmm3)),
        ("paddq", |a| a.paddq(xmm0, xmm3)),
        ("psubusb", |a| a.psubusb(xmm0, xmm3)),
        ("paddsw", |a| a.paddsw(xmm0, xmm3)),
        ("pmullw", |a| a.pmullw(xmm0, xmm3)),
        ("pmuludq", |a| a.pmuludq(xmm0, xmm3)),
        ("pcmpeqb", |a| a.pcmpeqb(xmm0, xmm3)),
        ("pcmpgtd", |a| a.pcmpgtd(xmm0, xmm3)),
        ("pxor/pand/por", |a| {
            a.pxor(xmm0, xmm3)?;
            a.pand(xmm0, xmm1)?;
            a.por(xmm0, xmm2)
        }),
        ("psllq/psrld/psraw", |a| {
            a.psllq(xmm0, 3)?;
            a.psrld(xmm0, 5)?;
            a.psraw(xmm0, 2)
        }),
        ("pslldq/psrldq", |a| {
            a.pslldq(xmm0, 3)?;
            a.psrldq(xmm0, 5)
        }),
        ("packsswb", |a| a.packsswb(xmm0, xmm3)),
        ("cvtps2pd", |a| a.cvtps2pd(xmm0, xmm1)),
        ("cvtpd2ps", |a| a.cvtpd2ps(xmm0, xmm2)),
        ("cvtdq2ps", |a| a.cvtdq2ps(xmm0, xmm3)),
        ("cvttps2dq", |a| a.cvttps2dq(xmm0, xmm1)),
        ("cvtsi2sd/cvttsd2si", |a| {
            a.mov(rax, -123_456_789_012i64)?;
            a.cvtsi2sd(xmm0, rax)?;
            a.cvttsd2si(rax, xmm2)?;
            a.movq(xmm1, rax)?;
            a.unpcklpd(xmm0, xmm1)
        }),
        ("movd/movq/movss/movsd", |a| {
            a.movd(eax, xmm3)?;
            a.movq(xmm0, rax)?;
            a.movss(xmm0, xmm1)?;
            a.movsd_2(xmm0, xmm2)
        }),
        ("pmovmskb/movmskps", |a| {
            a.pmovmskb(eax, xmm3)?;
            a.movmskps(ecx, xmm1)?;
            a.shl(ecx, 16)?;
            a.or(eax, ecx)?;
            a.movd(xmm0, eax)
        }),
        ("comiss/ucomisd flags", |a| {
            a.comiss(xmm0, xmm1)?;
            a.pushfq()?;
            a.ucomisd(xmm2, xmm0)?;
            a.pushfq()?;
            a.pop(rax)?;
            a.pop(rcx)?;
            a.and(eax, 0x8d5)?;
            a.and(ecx, 0x8d5)?;
            a.movd(xmm0, eax)?;
            a.movd(xmm1, ecx)?;
            a.unpcklps(xmm0, xmm1)
        }),
    ];
    let mut a = CodeAssembler::new(64).unwrap();
    let mut descs = Vec::new();
    for (name, op) in &ops {
        // Several input windows per operation.
        for off in [0i32, 16, 32, 48] {
            a.movups(xmm0, xmmword_ptr(rsi + off)).unwrap();
            a.movups(xmm1, xmmword_ptr(rsi + ((off + 16) % 64)))
                .unwrap();
            a.movupd(xmm2, xmmword_ptr(rsi + 64 + (off % 64) / 2 + 8))
                .unwrap();
            a.movdqu(xmm3, xmmword_ptr(rsi + 96 + off)).unwrap();
            op(&mut a).unwrap();
            store(&mut a).unwrap();
            descs.push(format!("{name} window {off}"));
        }
    }
    a.movaps(xmm0, xmm3).unwrap(); // leave a known value
    a.mov(rax, rdi).unwrap();
    a.ret().unwrap();
    let code = a.assemble(TABLE_BODY).unwrap();
    table_case("sse_table_host_checked", code, &input(), 24, descs).run();
}

#[test]
fn sse_ring0_moves_and_arith() {
    let mut g = Guest::new(Mode::Long64);
    g.write(DATA, &input());
    let mut a = g.asm();
    a.movaps(xmm0, xmmword_ptr(DATA)).unwrap();
    a.movaps(xmm1, xmmword_ptr(DATA + 16)).unwrap();
    a.addps(xmm0, xmm1).unwrap();
    a.movdqa(xmm2, xmmword_ptr(DATA + 96)).unwrap();
    a.pshufd(xmm3, xmm2, 0x1b).unwrap();
    a.paddd(xmm3, xmm2).unwrap();
    a.movaps(xmmword_ptr(DATA + 0x200), xmm0).unwrap();
    a.movdqu(xmmword_ptr(DATA + 0x213), xmm3).unwrap();
    end(&mut a).unwrap();
    g.load(&mut a);
    Case::new("sse_ring0_moves_and_arith", g)
        .check(|o| {
            o.ended();
            let f = |i: u64| f32::from_le_bytes(o.u32(DATA + 0x200 + i * 4).to_le_bytes());
            // xmm0 = input lanes 0..3, xmm1 = lanes 4..7.
            assert_eq!(f(0).to_bits(), (1.5f32 + -0.0).to_bits());
            assert_eq!(f(1).to_bits(), (-2.25f32 + 1.0e-40).to_bits());
            assert_eq!(f(2), f32::INFINITY);
            assert_eq!(f(3).to_bits(), (0.1f32 + 7.0).to_bits());
        })
        .run();
}
