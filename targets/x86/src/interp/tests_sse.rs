//! SSE/MMX tests. Most instructions are checked differentially: each one
//! runs in the interpreter and natively on the host (an x86-64 with
//! SSE4.2) with the same XMM0..2, RAX/RCX/RDX, RFLAGS and MXCSR (random
//! rounding mode, DAZ and FTZ; exceptions masked so the host never traps),
//! and every output register, the arithmetic flags and MXCSR must match.
//! Exception behaviour (#UD/#NM/#GP/#XM) is tested explicitly.

use iced_x86::code_asm::*;

use super::super::tests::{asm, host_is_reference, CODE, M};
use crate::consts::cr4;
use crate::consts::rflags::{AF, CF, OF, PF, SF, ZF};
use crate::interp::ExitReason;

const ARITH: u64 = CF | PF | AF | ZF | SF | OF;

/// Register file exchanged with the host and the interpreter.
#[repr(C, align(16))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Io {
    pub x: [[u8; 16]; 3],
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub flags: u64,
    pub mx: u32,
    pub _pad: u32,
}

/// A host function running one instruction on an [`Io`].
type HostFn = fn(&mut Io);
type EmitFn = fn(&mut CodeAssembler) -> Result<(), iced_x86::IcedError>;

macro_rules! host {
    ($txt:expr) => {{
        fn h(io: &mut Io) {
            #[cfg(not(target_arch = "x86_64"))]
            unreachable!("a host-checked case on a host that is not x86-64: {io:?}");
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the asm only reads and writes `*io` (valid, aligned,
            // exclusively borrowed) and the registers it declares
            // clobbered; MXCSR exceptions are all masked by the callers, so
            // it cannot trap; the flags go through the stack, which asm
            // blocks without `nostack` may use.
            unsafe {
                core::arch::asm!(
                    "stmxcsr [{io} + 84]",
                    "ldmxcsr [{io} + 80]",
                    "movdqu xmm0, [{io}]",
                    "movdqu xmm1, [{io} + 16]",
                    "movdqu xmm2, [{io} + 32]",
                    "mov rax, [{io} + 48]",
                    "mov rcx, [{io} + 56]",
                    "mov rdx, [{io} + 64]",
                    "push qword ptr [{io} + 72]",
                    "popfq",
                    $txt,
                    "pushfq",
                    "pop qword ptr [{io} + 72]",
                    "movdqu [{io}], xmm0",
                    "movdqu [{io} + 16], xmm1",
                    "movdqu [{io} + 32], xmm2",
                    "mov [{io} + 48], rax",
                    "mov [{io} + 56], rcx",
                    "mov [{io} + 64], rdx",
                    "stmxcsr [{io} + 80]",
                    "ldmxcsr [{io} + 84]",
                    io = in(reg) io as *mut Io,
                    out("xmm0") _, out("xmm1") _, out("xmm2") _,
                    out("rax") _, out("rcx") _, out("rdx") _,
                );
            }
        }
        h as HostFn
    }};
}

macro_rules! case {
    ($txt:expr, $($e:tt)*) => {
        ($txt, host!($txt), (|a: &mut CodeAssembler| a.$($e)*) as EmitFn)
    };
}

pub(crate) struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// A lane of floats full of special values (f32 or f64 layout).
    fn fvec(&mut self) -> [u8; 16] {
        const F32: [u32; 16] = [
            0,
            0x8000_0000,
            0x3f80_0000,
            0xbf80_0000,
            0x7f80_0000,
            0xff80_0000,
            0x7fc0_0000,
            0x7fa0_0001,
            0x0000_0001,
            0x807f_ffff,
            0x0080_0000,
            0x7f7f_ffff,
            0x4f00_0000,
            0xcf00_0000,
            0x3f00_0000,
            0x4b00_0001,
        ];
        const F64: [u64; 14] = [
            0,
            0x8000_0000_0000_0000,
            0x3ff0_0000_0000_0000,
            0xbff0_0000_0000_0000,
            0x7ff0_0000_0000_0000,
            0xfff0_0000_0000_0000,
            0x7ff8_0000_0000_0000,
            0x7ff4_0000_0000_0001,
            0x0000_0000_0000_0001,
            0x800f_ffff_ffff_ffff,
            0x0010_0000_0000_0000,
            0x7fef_ffff_ffff_ffff,
            0x41e0_0000_0000_0000,
            0x3fe0_0000_0000_0000,
        ];
        let mut v = [0u8; 16];
        let dbl = self.next() & 1 != 0;
        for k in 0..(if dbl { 2 } else { 4 }) {
            let r = self.next();
            if dbl {
                let x = match r % 4 {
                    0 => F64[(r >> 8) as usize % F64.len()],
                    1 => (r >> 3) & 0x800f_ffff_ffff_ffff | 0x3ff0_0000_0000_0000,
                    _ => self.next(),
                };
                v[8 * k..8 * k + 8].copy_from_slice(&x.to_le_bytes());
            } else {
                let x = match r % 4 {
                    0 => F32[(r >> 8) as usize % F32.len()],
                    1 => (r >> 40) as u32 & 0x807f_ffff | 0x3f80_0000,
                    _ => self.next() as u32,
                };
                v[4 * k..4 * k + 4].copy_from_slice(&x.to_le_bytes());
            }
        }
        v
    }
    /// An integer vector with edge lanes.
    fn ivec(&mut self) -> [u8; 16] {
        let mut v = [0u8; 16];
        for b in v.iter_mut() {
            let r = self.next();
            *b = match r % 6 {
                0 => 0,
                1 => 0xff,
                2 => 0x80,
                3 => 0x7f,
                _ => (r >> 8) as u8,
            };
        }
        v
    }
    /// Short strings (with NULs) for PCMPxSTRx.
    fn svec(&mut self) -> [u8; 16] {
        let mut v = [0u8; 16];
        let len = (self.next() % 18) as usize;
        for (k, b) in v.iter_mut().enumerate() {
            let r = self.next();
            *b = if k >= len && !r.is_multiple_of(3) {
                0
            } else {
                b"abcAZ09 \xff\x80z-"[(r % 12) as usize]
            };
        }
        v
    }
}

/// A 64-bit test machine with SSE enabled (CR4.OSFXSR/OSXMMEXCPT/OSXSAVE)
/// running `emit` followed by HLT.
pub(crate) fn machine(emit: impl FnOnce(&mut CodeAssembler)) -> M {
    let code = asm(64, CODE, |a| {
        emit(a);
        a.hlt().unwrap();
    });
    let mut m = M::long64(&code);
    m.cpu.state.cr4 |= cr4::OSFXSR | cr4::OSXMMEXCPT | cr4::OSXSAVE;
    m.cpu.state.xcr0 = 3;
    m.install_handlers64();
    m
}

/// Runs one prepared case on the interpreter.
fn run_interp(m: &mut M, tmpl: &crate::CpuState, io: &Io) -> Io {
    let mut st = *tmpl;
    st.fpu.xmm[..3].copy_from_slice(&io.x);
    st.gpr[0] = io.rax;
    st.gpr[1] = io.rcx;
    st.gpr[2] = io.rdx;
    st.rflags = io.flags;
    st.fpu.mxcsr = io.mx;
    m.cpu.set_state(&st);
    m.bus
        .load(super::super::tests::REC + 8, &0u64.to_le_bytes());
    assert_eq!(m.run(), ExitReason::Halt);
    let s = &m.cpu.state;
    let mut out = Io {
        rax: s.gpr[0],
        rcx: s.gpr[1],
        rdx: s.gpr[2],
        flags: s.rflags,
        mx: s.fpu.mxcsr,
        ..Io::default()
    };
    out.x.copy_from_slice(&s.fpu.xmm[..3]);
    out
}

#[derive(Clone, Copy)]
enum Gen {
    Float,
    Int,
    Str,
}

/// Makes NaN lanes of `g` equal to `h`'s where both are NaN.
fn nan_lanes_equal(g: &mut Io, h: &Io, double: bool) {
    for (gx, hx) in g.x.iter_mut().zip(h.x.iter()) {
        if double {
            for l in 0..2 {
                let r = l * 8..l * 8 + 8;
                let a = f64::from_le_bytes(gx[r.clone()].try_into().unwrap());
                let b = f64::from_le_bytes(hx[r.clone()].try_into().unwrap());
                if a.is_nan() && b.is_nan() {
                    gx[r.clone()].copy_from_slice(&hx[r]);
                }
            }
        } else {
            for l in 0..4 {
                let r = l * 4..l * 4 + 4;
                let a = f32::from_le_bytes(gx[r.clone()].try_into().unwrap());
                let b = f32::from_le_bytes(hx[r.clone()].try_into().unwrap());
                if a.is_nan() && b.is_nan() {
                    gx[r.clone()].copy_from_slice(&hx[r]);
                }
            }
        }
    }
}

fn differential(cases: &[(&str, HostFn, EmitFn)], gen: Gen, iters: usize) {
    if !host_is_reference() {
        return;
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for &(name, host, emit) in cases {
        let mut m = machine(|a| emit(a).unwrap());
        let tmpl = m.cpu.state;
        for it in 0..iters {
            let mut io = Io::default();
            for x in io.x.iter_mut() {
                *x = match gen {
                    Gen::Float => rng.fvec(),
                    Gen::Int => rng.ivec(),
                    Gen::Str => rng.svec(),
                };
            }
            io.rax = match rng.next() % 4 {
                0 => rng.next() % 20,
                1 => (rng.next() % 20).wrapping_neg(),
                _ => rng.next(),
            };
            io.rcx = rng.next();
            io.rdx = match rng.next() % 3 {
                0 => rng.next() % 20,
                1 => (rng.next() % 20).wrapping_neg(),
                _ => rng.next(),
            };
            io.flags = 0x2 | (rng.next() & ARITH);
            let r = rng.next();
            io.mx = 0x1f80 | (((r & 3) as u32) << 13);
            if it % 3 == 1 {
                io.mx |= ((r >> 2) as u32 & 1) << 6 | ((r >> 3) as u32 & 1) << 15;
            }
            let mut h = io;
            host(&mut h);
            let got = run_interp(&mut m, &tmpl, &io);
            let rec = m.rec();
            assert_eq!(rec.0, u64::MAX, "{name}: exception {rec:?}");
            let mut hm = h;
            hm.flags &= ARITH;
            hm._pad = 0;
            let mut gm = got;
            gm.flags &= ARITH;
            if name.starts_with("dpp") {
                // Which NaN a dot product returns when several products
                // are NaN depends on the CPU's summation order (AMD and
                // Intel differ): only NaN-ness is architectural.
                nan_lanes_equal(&mut gm, &hm, name.starts_with("dppd"));
            }
            assert_eq!(gm, hm, "{name} (iteration {it})\ninput {io:x?}");
        }
    }
}

#[test]
fn float_arith_matches_host() {
    let cases = [
        case!("addps xmm1, xmm2", addps(xmm1, xmm2)),
        case!("addpd xmm1, xmm2", addpd(xmm1, xmm2)),
        case!("addss xmm1, xmm2", addss(xmm1, xmm2)),
        case!("addsd xmm1, xmm2", addsd(xmm1, xmm2)),
        case!("subps xmm1, xmm2", subps(xmm1, xmm2)),
        case!("subsd xmm1, xmm2", subsd(xmm1, xmm2)),
        case!("mulps xmm1, xmm2", mulps(xmm1, xmm2)),
        case!("mulpd xmm1, xmm2", mulpd(xmm1, xmm2)),
        case!("mulss xmm1, xmm2", mulss(xmm1, xmm2)),
        case!("divps xmm1, xmm2", divps(xmm1, xmm2)),
        case!("divpd xmm1, xmm2", divpd(xmm1, xmm2)),
        case!("divsd xmm1, xmm2", divsd(xmm1, xmm2)),
        case!("sqrtps xmm1, xmm2", sqrtps(xmm1, xmm2)),
        case!("sqrtpd xmm1, xmm2", sqrtpd(xmm1, xmm2)),
        case!("sqrtss xmm1, xmm2", sqrtss(xmm1, xmm2)),
        case!("sqrtsd xmm1, xmm2", sqrtsd(xmm1, xmm2)),
        case!("minps xmm1, xmm2", minps(xmm1, xmm2)),
        case!("minpd xmm1, xmm2", minpd(xmm1, xmm2)),
        case!("minss xmm1, xmm2", minss(xmm1, xmm2)),
        case!("maxps xmm1, xmm2", maxps(xmm1, xmm2)),
        case!("maxpd xmm1, xmm2", maxpd(xmm1, xmm2)),
        case!("maxsd xmm1, xmm2", maxsd(xmm1, xmm2)),
        case!("haddps xmm1, xmm2", haddps(xmm1, xmm2)),
        case!("haddpd xmm1, xmm2", haddpd(xmm1, xmm2)),
        case!("hsubps xmm1, xmm2", hsubps(xmm1, xmm2)),
        case!("hsubpd xmm1, xmm2", hsubpd(xmm1, xmm2)),
        case!("addsubps xmm1, xmm2", addsubps(xmm1, xmm2)),
        case!("addsubpd xmm1, xmm2", addsubpd(xmm1, xmm2)),
        case!("dpps xmm1, xmm2, 0xff", dpps(xmm1, xmm2, 0xff)),
        case!("dpps xmm1, xmm2, 0x5a", dpps(xmm1, xmm2, 0x5a)),
        case!("dpps xmm1, xmm2, 0xe1", dpps(xmm1, xmm2, 0xe1)),
        case!("dppd xmm1, xmm2, 0x33", dppd(xmm1, xmm2, 0x33)),
        case!("dppd xmm1, xmm2, 0x12", dppd(xmm1, xmm2, 0x12)),
    ];
    differential(&cases, Gen::Float, 300 * stress());
}

#[test]
fn float_compares_match_host() {
    let cases = [
        case!("cmpps xmm1, xmm2, 0", cmpps(xmm1, xmm2, 0)),
        case!("cmpps xmm1, xmm2, 1", cmpps(xmm1, xmm2, 1)),
        case!("cmpps xmm1, xmm2, 2", cmpps(xmm1, xmm2, 2)),
        case!("cmpps xmm1, xmm2, 3", cmpps(xmm1, xmm2, 3)),
        case!("cmppd xmm1, xmm2, 4", cmppd(xmm1, xmm2, 4)),
        case!("cmppd xmm1, xmm2, 5", cmppd(xmm1, xmm2, 5)),
        case!("cmpss xmm1, xmm2, 6", cmpss(xmm1, xmm2, 6)),
        case!("cmpsd xmm1, xmm2, 7", cmpsd_3(xmm1, xmm2, 7)),
        case!("comiss xmm1, xmm2", comiss(xmm1, xmm2)),
        case!("comisd xmm1, xmm2", comisd(xmm1, xmm2)),
        case!("ucomiss xmm1, xmm2", ucomiss(xmm1, xmm2)),
        case!("ucomisd xmm1, xmm2", ucomisd(xmm1, xmm2)),
    ];
    differential(&cases, Gen::Float, 300 * stress());
}

#[test]
fn conversions_and_rounding_match_host() {
    let cases = [
        case!("cvtps2pd xmm1, xmm2", cvtps2pd(xmm1, xmm2)),
        case!("cvtpd2ps xmm1, xmm2", cvtpd2ps(xmm1, xmm2)),
        case!("cvtss2sd xmm1, xmm2", cvtss2sd(xmm1, xmm2)),
        case!("cvtsd2ss xmm1, xmm2", cvtsd2ss(xmm1, xmm2)),
        case!("cvtdq2ps xmm1, xmm2", cvtdq2ps(xmm1, xmm2)),
        case!("cvtps2dq xmm1, xmm2", cvtps2dq(xmm1, xmm2)),
        case!("cvttps2dq xmm1, xmm2", cvttps2dq(xmm1, xmm2)),
        case!("cvtdq2pd xmm1, xmm2", cvtdq2pd(xmm1, xmm2)),
        case!("cvtpd2dq xmm1, xmm2", cvtpd2dq(xmm1, xmm2)),
        case!("cvttpd2dq xmm1, xmm2", cvttpd2dq(xmm1, xmm2)),
        case!("cvtsi2ss xmm1, eax", cvtsi2ss(xmm1, eax)),
        case!("cvtsi2ss xmm1, rax", cvtsi2ss(xmm1, rax)),
        case!("cvtsi2sd xmm1, eax", cvtsi2sd(xmm1, eax)),
        case!("cvtsi2sd xmm1, rax", cvtsi2sd(xmm1, rax)),
        case!("cvtss2si eax, xmm1", cvtss2si(eax, xmm1)),
        case!("cvtss2si rax, xmm1", cvtss2si(rax, xmm1)),
        case!("cvttss2si eax, xmm1", cvttss2si(eax, xmm1)),
        case!("cvtsd2si rax, xmm1", cvtsd2si(rax, xmm1)),
        case!("cvtsd2si eax, xmm1", cvtsd2si(eax, xmm1)),
        case!("cvttsd2si rax, xmm1", cvttsd2si(rax, xmm1)),
        case!("roundps xmm1, xmm2, 0", roundps(xmm1, xmm2, 0)),
        case!("roundps xmm1, xmm2, 9", roundps(xmm1, xmm2, 9)),
        case!("roundpd xmm1, xmm2, 2", roundpd(xmm1, xmm2, 2)),
        case!("roundpd xmm1, xmm2, 4", roundpd(xmm1, xmm2, 4)),
        case!("roundss xmm1, xmm2, 3", roundss(xmm1, xmm2, 3)),
        case!("roundsd xmm1, xmm2, 12", roundsd(xmm1, xmm2, 12)),
    ];
    differential(&cases, Gen::Float, 300 * stress());
}

#[test]
fn packed_integer_matches_host() {
    let cases = [
        case!("paddb xmm1, xmm2", paddb(xmm1, xmm2)),
        case!("paddw xmm1, xmm2", paddw(xmm1, xmm2)),
        case!("paddd xmm1, xmm2", paddd(xmm1, xmm2)),
        case!("paddq xmm1, xmm2", paddq(xmm1, xmm2)),
        case!("psubb xmm1, xmm2", psubb(xmm1, xmm2)),
        case!("psubq xmm1, xmm2", psubq(xmm1, xmm2)),
        case!("paddsb xmm1, xmm2", paddsb(xmm1, xmm2)),
        case!("paddsw xmm1, xmm2", paddsw(xmm1, xmm2)),
        case!("paddusb xmm1, xmm2", paddusb(xmm1, xmm2)),
        case!("paddusw xmm1, xmm2", paddusw(xmm1, xmm2)),
        case!("psubsb xmm1, xmm2", psubsb(xmm1, xmm2)),
        case!("psubsw xmm1, xmm2", psubsw(xmm1, xmm2)),
        case!("psubusb xmm1, xmm2", psubusb(xmm1, xmm2)),
        case!("psubusw xmm1, xmm2", psubusw(xmm1, xmm2)),
        case!("pmullw xmm1, xmm2", pmullw(xmm1, xmm2)),
        case!("pmulhw xmm1, xmm2", pmulhw(xmm1, xmm2)),
        case!("pmulhuw xmm1, xmm2", pmulhuw(xmm1, xmm2)),
        case!("pmulld xmm1, xmm2", pmulld(xmm1, xmm2)),
        case!("pmuludq xmm1, xmm2", pmuludq(xmm1, xmm2)),
        case!("pmuldq xmm1, xmm2", pmuldq(xmm1, xmm2)),
        case!("pmulhrsw xmm1, xmm2", pmulhrsw(xmm1, xmm2)),
        case!("pmaddwd xmm1, xmm2", pmaddwd(xmm1, xmm2)),
        case!("pmaddubsw xmm1, xmm2", pmaddubsw(xmm1, xmm2)),
        case!("pavgb xmm1, xmm2", pavgb(xmm1, xmm2)),
        case!("pavgw xmm1, xmm2", pavgw(xmm1, xmm2)),
        case!("pminub xmm1, xmm2", pminub(xmm1, xmm2)),
        case!("pminsb xmm1, xmm2", pminsb(xmm1, xmm2)),
        case!("pminuw xmm1, xmm2", pminuw(xmm1, xmm2)),
        case!("pminsw xmm1, xmm2", pminsw(xmm1, xmm2)),
        case!("pminud xmm1, xmm2", pminud(xmm1, xmm2)),
        case!("pminsd xmm1, xmm2", pminsd(xmm1, xmm2)),
        case!("pmaxub xmm1, xmm2", pmaxub(xmm1, xmm2)),
        case!("pmaxsb xmm1, xmm2", pmaxsb(xmm1, xmm2)),
        case!("pmaxuw xmm1, xmm2", pmaxuw(xmm1, xmm2)),
        case!("pmaxsw xmm1, xmm2", pmaxsw(xmm1, xmm2)),
        case!("pmaxud xmm1, xmm2", pmaxud(xmm1, xmm2)),
        case!("pmaxsd xmm1, xmm2", pmaxsd(xmm1, xmm2)),
        case!("pcmpeqb xmm1, xmm2", pcmpeqb(xmm1, xmm2)),
        case!("pcmpeqw xmm1, xmm2", pcmpeqw(xmm1, xmm2)),
        case!("pcmpeqd xmm1, xmm2", pcmpeqd(xmm1, xmm2)),
        case!("pcmpeqq xmm1, xmm2", pcmpeqq(xmm1, xmm2)),
        case!("pcmpgtb xmm1, xmm2", pcmpgtb(xmm1, xmm2)),
        case!("pcmpgtw xmm1, xmm2", pcmpgtw(xmm1, xmm2)),
        case!("pcmpgtd xmm1, xmm2", pcmpgtd(xmm1, xmm2)),
        case!("pcmpgtq xmm1, xmm2", pcmpgtq(xmm1, xmm2)),
        case!("pand xmm1, xmm2", pand(xmm1, xmm2)),
        case!("pandn xmm1, xmm2", pandn(xmm1, xmm2)),
        case!("por xmm1, xmm2", por(xmm1, xmm2)),
        case!("pxor xmm1, xmm2", pxor(xmm1, xmm2)),
        case!("andnps xmm1, xmm2", andnps(xmm1, xmm2)),
        case!("orpd xmm1, xmm2", orpd(xmm1, xmm2)),
        case!("xorps xmm1, xmm2", xorps(xmm1, xmm2)),
        case!("psignb xmm1, xmm2", psignb(xmm1, xmm2)),
        case!("psignw xmm1, xmm2", psignw(xmm1, xmm2)),
        case!("psignd xmm1, xmm2", psignd(xmm1, xmm2)),
        case!("pabsb xmm1, xmm2", pabsb(xmm1, xmm2)),
        case!("pabsw xmm1, xmm2", pabsw(xmm1, xmm2)),
        case!("pabsd xmm1, xmm2", pabsd(xmm1, xmm2)),
        case!("phaddw xmm1, xmm2", phaddw(xmm1, xmm2)),
        case!("phaddd xmm1, xmm2", phaddd(xmm1, xmm2)),
        case!("phaddsw xmm1, xmm2", phaddsw(xmm1, xmm2)),
        case!("phsubw xmm1, xmm2", phsubw(xmm1, xmm2)),
        case!("phsubd xmm1, xmm2", phsubd(xmm1, xmm2)),
        case!("phsubsw xmm1, xmm2", phsubsw(xmm1, xmm2)),
        case!("psadbw xmm1, xmm2", psadbw(xmm1, xmm2)),
        case!("phminposuw xmm1, xmm2", phminposuw(xmm1, xmm2)),
        case!("ptest xmm1, xmm2", ptest(xmm1, xmm2)),
        case!("mpsadbw xmm1, xmm2, 5", mpsadbw(xmm1, xmm2, 5)),
        case!("mpsadbw xmm1, xmm2, 2", mpsadbw(xmm1, xmm2, 2)),
    ];
    differential(&cases, Gen::Int, 100 * stress());
}

#[test]
fn shifts_match_host() {
    let cases = [
        case!("psllw xmm1, 3", psllw(xmm1, 3)),
        case!("psllw xmm1, 17", psllw(xmm1, 17)),
        case!("pslld xmm1, 31", pslld(xmm1, 31)),
        case!("psllq xmm1, 63", psllq(xmm1, 63)),
        case!("psrlw xmm1, 15", psrlw(xmm1, 15)),
        case!("psrld xmm1, 7", psrld(xmm1, 7)),
        case!("psrlq xmm1, 64", psrlq(xmm1, 64)),
        case!("psraw xmm1, 5", psraw(xmm1, 5)),
        case!("psraw xmm1, 200", psraw(xmm1, 200)),
        case!("psrad xmm1, 31", psrad(xmm1, 31)),
        case!("pslldq xmm1, 5", pslldq(xmm1, 5)),
        case!("psrldq xmm1, 9", psrldq(xmm1, 9)),
        case!("psrldq xmm1, 16", psrldq(xmm1, 16)),
        case!("psllw xmm1, xmm2", psllw(xmm1, xmm2)),
        case!("pslld xmm1, xmm2", pslld(xmm1, xmm2)),
        case!("psrlq xmm1, xmm2", psrlq(xmm1, xmm2)),
        case!("psrad xmm1, xmm2", psrad(xmm1, xmm2)),
    ];
    differential(&cases, Gen::Int, 60 * stress());
    // Small counts from XMM2.
    let mut m = machine(|a| {
        a.psraw(xmm1, xmm2).unwrap();
        a.psllq(xmm0, xmm2).unwrap();
    });
    m.cpu.state.fpu.xmm[1] = [
        0x00, 0x80, 0xff, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80,
    ];
    m.cpu.state.fpu.xmm[0] = [1, 0, 0, 0, 0, 0, 0, 0x40, 0, 0, 0, 0, 0, 0, 0, 0];
    m.cpu.state.fpu.xmm[2] = [4, 0, 0, 0, 0, 0, 0, 0, 0xff, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(&m.cpu.state.fpu.xmm[1][..4], &[0x00, 0xf8, 0xff, 0x07]);
    assert_eq!(m.cpu.state.fpu.xmm[1][15], 0xf8);
    assert_eq!(&m.cpu.state.fpu.xmm[0][..8], &[0x10, 0, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn shuffles_match_host() {
    let cases = [
        case!("packsswb xmm1, xmm2", packsswb(xmm1, xmm2)),
        case!("packssdw xmm1, xmm2", packssdw(xmm1, xmm2)),
        case!("packuswb xmm1, xmm2", packuswb(xmm1, xmm2)),
        case!("packusdw xmm1, xmm2", packusdw(xmm1, xmm2)),
        case!("punpcklbw xmm1, xmm2", punpcklbw(xmm1, xmm2)),
        case!("punpcklwd xmm1, xmm2", punpcklwd(xmm1, xmm2)),
        case!("punpckldq xmm1, xmm2", punpckldq(xmm1, xmm2)),
        case!("punpcklqdq xmm1, xmm2", punpcklqdq(xmm1, xmm2)),
        case!("punpckhbw xmm1, xmm2", punpckhbw(xmm1, xmm2)),
        case!("punpckhwd xmm1, xmm2", punpckhwd(xmm1, xmm2)),
        case!("punpckhdq xmm1, xmm2", punpckhdq(xmm1, xmm2)),
        case!("punpckhqdq xmm1, xmm2", punpckhqdq(xmm1, xmm2)),
        case!("unpcklps xmm1, xmm2", unpcklps(xmm1, xmm2)),
        case!("unpckhpd xmm1, xmm2", unpckhpd(xmm1, xmm2)),
        case!("pshufd xmm1, xmm2, 0x1b", pshufd(xmm1, xmm2, 0x1b)),
        case!("pshufhw xmm1, xmm2, 0x93", pshufhw(xmm1, xmm2, 0x93)),
        case!("pshuflw xmm1, xmm2, 0xc6", pshuflw(xmm1, xmm2, 0xc6)),
        case!("pshufb xmm1, xmm2", pshufb(xmm1, xmm2)),
        case!("palignr xmm1, xmm2, 0", palignr(xmm1, xmm2, 0)),
        case!("palignr xmm1, xmm2, 7", palignr(xmm1, xmm2, 7)),
        case!("palignr xmm1, xmm2, 19", palignr(xmm1, xmm2, 19)),
        case!("palignr xmm1, xmm2, 40", palignr(xmm1, xmm2, 40)),
        case!("pblendw xmm1, xmm2, 0xa5", pblendw(xmm1, xmm2, 0xa5)),
        case!("pblendvb xmm1, xmm2", pblendvb(xmm1, xmm2)),
        case!("blendps xmm1, xmm2, 6", blendps(xmm1, xmm2, 6)),
        case!("blendpd xmm1, xmm2, 2", blendpd(xmm1, xmm2, 2)),
        case!("blendvps xmm1, xmm2", blendvps(xmm1, xmm2)),
        case!("blendvpd xmm1, xmm2", blendvpd(xmm1, xmm2)),
        case!("shufps xmm1, xmm2, 0x4e", shufps(xmm1, xmm2, 0x4e)),
        case!("shufpd xmm1, xmm2, 1", shufpd(xmm1, xmm2, 1)),
        case!("pmovsxbw xmm1, xmm2", pmovsxbw(xmm1, xmm2)),
        case!("pmovsxbd xmm1, xmm2", pmovsxbd(xmm1, xmm2)),
        case!("pmovsxbq xmm1, xmm2", pmovsxbq(xmm1, xmm2)),
        case!("pmovsxwd xmm1, xmm2", pmovsxwd(xmm1, xmm2)),
        case!("pmovsxwq xmm1, xmm2", pmovsxwq(xmm1, xmm2)),
        case!("pmovsxdq xmm1, xmm2", pmovsxdq(xmm1, xmm2)),
        case!("pmovzxbw xmm1, xmm2", pmovzxbw(xmm1, xmm2)),
        case!("pmovzxbq xmm1, xmm2", pmovzxbq(xmm1, xmm2)),
        case!("pmovzxwd xmm1, xmm2", pmovzxwd(xmm1, xmm2)),
        case!("pmovzxdq xmm1, xmm2", pmovzxdq(xmm1, xmm2)),
        case!("movss xmm1, xmm2", movss(xmm1, xmm2)),
        case!("movsd xmm1, xmm2", movsd_2(xmm1, xmm2)),
        case!("movhlps xmm1, xmm2", movhlps(xmm1, xmm2)),
        case!("movlhps xmm1, xmm2", movlhps(xmm1, xmm2)),
        case!("movddup xmm1, xmm2", movddup(xmm1, xmm2)),
        case!("movsldup xmm1, xmm2", movsldup(xmm1, xmm2)),
        case!("movshdup xmm1, xmm2", movshdup(xmm1, xmm2)),
        case!("movq xmm1, xmm2", movq(xmm1, xmm2)),
        case!("insertps xmm1, xmm2, 0x9c", insertps(xmm1, xmm2, 0x9c)),
        case!("insertps xmm1, xmm2, 0x31", insertps(xmm1, xmm2, 0x31)),
    ];
    differential(&cases, Gen::Int, 60 * stress());
}

#[test]
fn gpr_transfers_match_host() {
    let cases = [
        case!("movd xmm1, eax", movd(xmm1, eax)),
        case!("movq xmm1, rax", movq(xmm1, rax)),
        case!("movd eax, xmm1", movd(eax, xmm1)),
        case!("movq rax, xmm1", movq(rax, xmm1)),
        case!("movmskps eax, xmm1", movmskps(eax, xmm1)),
        case!("movmskpd eax, xmm1", movmskpd(eax, xmm1)),
        case!("pmovmskb eax, xmm1", pmovmskb(eax, xmm1)),
        case!("pextrb eax, xmm1, 13", pextrb(eax, xmm1, 13)),
        case!("pextrw eax, xmm1, 6", pextrw(eax, xmm1, 6)),
        case!("pextrd eax, xmm1, 3", pextrd(eax, xmm1, 3)),
        case!("pextrq rax, xmm1, 1", pextrq(rax, xmm1, 1)),
        case!("extractps eax, xmm1, 2", extractps(eax, xmm1, 2)),
        case!("pinsrb xmm1, eax, 9", pinsrb(xmm1, eax, 9)),
        case!("pinsrw xmm1, eax, 5", pinsrw(xmm1, eax, 5)),
        case!("pinsrd xmm1, eax, 2", pinsrd(xmm1, eax, 2)),
        case!("pinsrq xmm1, rax, 1", pinsrq(xmm1, rax, 1)),
        case!("crc32 eax, cl", crc32(eax, cl)),
        case!("crc32 eax, cx", crc32(eax, cx)),
        case!("crc32 eax, ecx", crc32(eax, ecx)),
        case!("crc32 rax, rcx", crc32(rax, rcx)),
    ];
    differential(&cases, Gen::Int, 40 * stress());
}

#[test]
fn string_compares_match_host() {
    let mut cases = Vec::new();
    macro_rules! strs {
        ($($imm:literal),*) => {$(
            cases.push(case!(concat!("pcmpistri xmm1, xmm2, ", $imm), pcmpistri(xmm1, xmm2, $imm)));
            cases.push(case!(concat!("pcmpistrm xmm1, xmm2, ", $imm), pcmpistrm(xmm1, xmm2, $imm)));
            cases.push(case!(concat!("pcmpestri xmm1, xmm2, ", $imm), pcmpestri(xmm1, xmm2, $imm)));
            cases.push(case!(concat!("pcmpestrm xmm1, xmm2, ", $imm), pcmpestrm(xmm1, xmm2, $imm)));
        )*};
    }
    // Every aggregation, polarity, format and output selection.
    strs!(
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e,
        0x0f
    );
    strs!(
        0x10, 0x14, 0x18, 0x1c, 0x30, 0x34, 0x38, 0x3c, 0x40, 0x44, 0x48, 0x4c, 0x5d, 0x62, 0x73,
        0x7e
    );
    // REX.W form (lengths from RAX/RDX): no assembler mnemonic for it.
    cases.push((
        "pcmpestri64 xmm1, xmm2, 0x0c",
        host!(".byte 0x66, 0x48, 0x0f, 0x3a, 0x61, 0xca, 0x0c"),
        (|a: &mut CodeAssembler| a.pcmpestri64(xmm1, xmm2, 0x0c)) as EmitFn,
    ));
    differential(&cases, Gen::Str, 60 * stress());
}

#[test]
fn mmx_forms_match_host() {
    // MMX operands live in the x87 registers: run natively with MM0/MM1
    // loaded from the low halves of XMM1/XMM2 and stored back.
    macro_rules! mmx {
        ($txt:literal, $($e:tt)*) => {
            (
                $txt,
                host!(concat!("movdq2q mm0, xmm1\nmovdq2q mm1, xmm2\n", $txt, "\nmovq2dq xmm1, mm0\nemms")),
                (|a: &mut CodeAssembler| {
                    a.movdq2q(mm0, xmm1)?;
                    a.movdq2q(mm1, xmm2)?;
                    a.$($e)*?;
                    a.movq2dq(xmm1, mm0)?;
                    a.emms()
                }) as EmitFn,
            )
        };
    }
    let cases = [
        mmx!("paddb mm0, mm1", paddb(mm0, mm1)),
        mmx!("psubusw mm0, mm1", psubusw(mm0, mm1)),
        mmx!("pmaddwd mm0, mm1", pmaddwd(mm0, mm1)),
        mmx!("packsswb mm0, mm1", packsswb(mm0, mm1)),
        mmx!("punpckhbw mm0, mm1", punpckhbw(mm0, mm1)),
        mmx!("punpckldq mm0, mm1", punpckldq(mm0, mm1)),
        mmx!("pshufw mm0, mm1, 0x39", pshufw(mm0, mm1, 0x39)),
        mmx!("pshufb mm0, mm1", pshufb(mm0, mm1)),
        mmx!("palignr mm0, mm1, 3", palignr(mm0, mm1, 3)),
        mmx!("phaddw mm0, mm1", phaddw(mm0, mm1)),
        mmx!("psllq mm0, mm1", psllq(mm0, mm1)),
        mmx!("psrad mm0, 3", psrad(mm0, 3)),
        mmx!("pmuludq mm0, mm1", pmuludq(mm0, mm1)),
        mmx!("psadbw mm0, mm1", psadbw(mm0, mm1)),
        mmx!("pinsrw mm0, eax, 2", pinsrw(mm0, eax, 2)),
        mmx!("pextrw eax, mm1, 3", pextrw(eax, mm1, 3)),
        mmx!("pmovmskb eax, mm1", pmovmskb(eax, mm1)),
        mmx!("cvtpi2ps xmm2, mm1", cvtpi2ps(xmm2, mm1)),
        mmx!("cvtps2pi mm0, xmm2", cvtps2pi(mm0, xmm2)),
        mmx!("cvttpd2pi mm0, xmm2", cvttpd2pi(mm0, xmm2)),
        mmx!("cvtpi2pd xmm2, mm1", cvtpi2pd(xmm2, mm1)),
        mmx!("movd eax, mm1", movd(eax, mm1)),
        mmx!("movq rax, mm1", movq(rax, mm1)),
        mmx!("movd mm0, eax", movd(mm0, eax)),
    ];
    differential(&cases, Gen::Int, 30 * stress());
}

#[test]
fn mmx_transitions_the_x87_tags() {
    let mut m = machine(|a| {
        a.fldpi().unwrap();
        a.fldpi().unwrap();
        a.paddb(mm3, mm3).unwrap();
    });
    assert_eq!(m.run(), ExitReason::Halt);
    let f = &m.cpu.state.fpu;
    assert_eq!(f.fsw & 0x3800, 0, "TOP = 0");
    assert_eq!(f.ftw, 0xff);
    assert_eq!(&f.st[3][8..10], &[0xff, 0xff]);
    // ST(0) before was physical register 6: still there.
    assert_eq!(
        &f.st[6][..10],
        &[0x35, 0xc2, 0x68, 0x21, 0xa2, 0xda, 0x0f, 0xc9, 0x00, 0x40]
    );
    let mut m = machine(|a| {
        a.paddb(mm3, mm3).unwrap();
        a.emms().unwrap();
    });
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(m.cpu.state.fpu.ftw, 0);
}

#[test]
fn rcp_and_rsqrt_are_within_the_architectural_error() {
    for &x in &[1.0f32, 3.0, 0.1, 1e30, 7.5e-30, 123.456, 2.0e-38] {
        let r = f32::from_bits(super::sse_float::approx1(x.to_bits(), false));
        assert!(((r * x) - 1.0).abs() <= 1.5 / 4096.0, "rcp {x} = {r}");
        let s = f32::from_bits(super::sse_float::approx1(x.to_bits(), true));
        assert!(((s * s * x) - 1.0).abs() <= 3.0 / 4096.0, "rsqrt {x} = {s}");
    }
    assert_eq!(super::sse_float::approx1(0x8000_0000, false), 0xff80_0000);
    assert_eq!(super::sse_float::approx1(0x7f80_0000, false), 0);
    assert_eq!(super::sse_float::approx1(0xbf80_0000, true), 0xffc0_0000);
    assert_eq!(super::sse_float::approx1(0x7fa0_0000, true), 0x7fe0_0000);
}

/// Iteration multiplier for the differential tests (HX86_STRESS=n).
fn stress() -> usize {
    std::env::var("HX86_STRESS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

#[path = "tests_sse_exc.rs"]
mod exc;
