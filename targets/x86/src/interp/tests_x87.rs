//! x87 tests: arithmetic, compares, loads/stores and the exact number
//! instructions run differentially against the host FPU (random 80-bit
//! operands incl. NaNs, infinities, denormals and unsupported encodings,
//! random rounding and precision control, exceptions masked); the stack
//! discipline, exceptions (#NM/#MF), environment images and FXSAVE/XSAVE
//! layouts are tested explicitly.

use iced_x86::code_asm::*;

use super::super::sse::tests::{machine, Rng};
use super::super::tests::{host_is_reference, CODE, M};
use super::super::x87_env::full_tag;
use crate::consts::cr0;
use crate::consts::rflags::{AF, CF, OF, PF, SF, ZF};
use crate::exception::vector;
use crate::interp::ExitReason;

const ARITH: u64 = CF | PF | AF | ZF | SF | OF;
/// Scratch memory operand address (RDI points at it).
const MEM: u64 = 0x9000;

#[repr(C, align(16))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Io {
    /// Inputs: ST0 = a, ST1 = b (80-bit values in 16-byte slots).
    a: [u8; 16],
    b: [u8; 16],
    /// Memory operand (input and output).
    mem: [u8; 16],
    /// Outputs: ST0..ST2 after the instruction.
    out: [[u8; 16]; 3],
    /// FNSTENV image after the instruction.
    env: [u8; 28],
    cw: u16,
    _p: u16,
    flags: u64,
}

type HostFn = fn(&mut Io);
type EmitFn = fn(&mut CodeAssembler) -> Result<(), iced_x86::IcedError>;

macro_rules! host {
    ($txt:expr) => {{
        fn h(io: &mut Io) {
            #[cfg(not(target_arch = "x86_64"))]
            unreachable!("a host-checked case on a host that is not x86-64: {io:?}");
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the asm reads and writes only `*io` (valid, aligned,
            // exclusively borrowed) and the registers it clobbers; all x87
            // exceptions are masked by the callers so nothing traps; the
            // flags go through the stack (allowed without `nostack`). The
            // FPU is left initialized (FNINIT) as the ABI expects.
            unsafe {
                core::arch::asm!(
                    "fninit",
                    "fldcw [{io} + {cw}]",
                    "fld tbyte ptr [{io} + 16]",
                    "fld tbyte ptr [{io}]",
                    "lea rdi, [{io} + {mem}]",
                    "push qword ptr [{io} + {fl}]",
                    "popfq",
                    $txt,
                    "pushfq",
                    "pop qword ptr [{io} + {fl}]",
                    "fnstenv [{io} + {env}]",
                    "fstp tbyte ptr [{io} + {out}]",
                    "fstp tbyte ptr [{io} + {out} + 16]",
                    "fstp tbyte ptr [{io} + {out} + 32]",
                    "fninit",
                    io = in(reg) io as *mut Io,
                    cw = const core::mem::offset_of!(Io, cw),
                    fl = const core::mem::offset_of!(Io, flags),
                    mem = const core::mem::offset_of!(Io, mem),
                    env = const core::mem::offset_of!(Io, env),
                    out = const core::mem::offset_of!(Io, out),
                    out("rdi") _,
                    out("rax") _,
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

fn f80(se: u16, m: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&m.to_le_bytes());
    v[8..10].copy_from_slice(&se.to_le_bytes());
    v
}

fn gen80(r: &mut Rng) -> [u8; 16] {
    let x = r.next();
    let y = r.next();
    let s = (y as u16) & 0x8000;
    let se = match y % 10 {
        0 => s,
        1 => s | 0x7fff,
        2 => s | ((y >> 20) as u16 & 0x3f),
        3 => s | 0x3fff,
        4 => s | 0x7ff0 | ((y >> 20) as u16 & 0xf),
        5 | 6 => s | (0x3ff0 + (y >> 20) as u16 % 0x40),
        _ => s | (0x3f80 + (y >> 20) as u16 % 0x100),
    };
    let m = match (y >> 40) % 16 {
        0 => 0,
        1 => 1 << 63,
        2 => x & !(1 << 63),
        3 => (x | (1 << 63)) & !0xffff_ffff,
        _ if se & 0x7fff == 0 => x >> (y % 64),
        _ => x | (1 << 63),
    };
    f80(se, m)
}

/// Small integers (FSCALE exponents, FPREM divisors, FRNDINT inputs).
fn gen_int80(r: &mut Rng) -> [u8; 16] {
    let v = (r.next() % 200) as i64 - 100;
    if v == 0 {
        return f80(0, 0);
    }
    let mag = v.unsigned_abs();
    let lz = mag.leading_zeros();
    let se = (16383 + 63 - lz) as u16 | if v < 0 { 0x8000 } else { 0 };
    f80(se, mag << lz)
}

fn run_case(m: &mut M, tmpl: &crate::CpuState, io: &Io) -> Io {
    let mut st = *tmpl;
    let f = &mut st.fpu;
    f.fcw = io.cw;
    f.fsw = 6 << 11;
    f.ftw = 0xc0;
    f.st = [[0; 16]; 8];
    f.st[0] = io.a;
    f.st[1] = io.b;
    f.st[0][10..].fill(0);
    f.st[1][10..].fill(0);
    st.rflags = io.flags;
    st.gpr[7] = MEM;
    m.cpu.set_state(&st);
    m.bus.load(MEM, &io.mem);
    m.bus
        .load(super::super::tests::REC + 8, &0u64.to_le_bytes());
    assert_eq!(m.run(), ExitReason::Halt);
    let rec = m.rec();
    assert_eq!(rec.0, u64::MAX, "exception {rec:?}");
    let mut out = *io;
    let c = &m.cpu;
    out.flags = c.state.rflags;
    out.mem
        .copy_from_slice(&m.bus.ram[MEM as usize..MEM as usize + 16]);
    out.env = [0; 28];
    out.env[0..2].copy_from_slice(&c.state.fpu.fcw.to_le_bytes());
    out.env[4..6].copy_from_slice(&c.state.fpu.fsw.to_le_bytes());
    out.env[8..10].copy_from_slice(&full_tag(c).to_le_bytes());
    for k in 0..3 {
        out.out[k] = f80(c.st_raw(k).0, c.st_raw(k).1);
    }
    out
}

/// Compares what the SDM defines: FSW (flags, C0-C3, TOP), the tag word,
/// the valid registers, memory and EFLAGS.
fn same(h: &Io, g: &Io) -> bool {
    let hsw = u16::from_le_bytes([h.env[4], h.env[5]]);
    let gsw = u16::from_le_bytes([g.env[4], g.env[5]]);
    let htag = u16::from_le_bytes([h.env[8], h.env[9]]);
    let gtag = u16::from_le_bytes([g.env[8], g.env[9]]);
    if hsw != gsw || htag != gtag || h.mem != g.mem || h.flags & ARITH != g.flags & ARITH {
        return false;
    }
    let top = ((hsw >> 11) & 7) as usize;
    (0..3).all(|k| (htag >> (2 * ((top + k) & 7))) & 3 == 3 || h.out[k][..10] == g.out[k][..10])
}

fn differential(cases: &[(&str, HostFn, EmitFn)], ints: bool, iters: usize) {
    if !host_is_reference() {
        return;
    }
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for &(name, host, emit) in cases {
        let mut m = machine(|a| emit(a).unwrap());
        let tmpl = m.cpu.state;
        for it in 0..iters {
            let mut io = Io {
                a: gen80(&mut rng),
                b: if ints && it % 2 == 0 {
                    gen_int80(&mut rng)
                } else {
                    gen80(&mut rng)
                },
                ..Io::default()
            };
            if ints && it % 4 == 1 {
                io.a = gen_int80(&mut rng);
            }
            for b in io.mem.iter_mut() {
                *b = rng.next() as u8;
            }
            if it % 3 == 0 {
                // A plausible float/integer in memory.
                io.mem[..8].copy_from_slice(
                    &((rng.next() % 2000) as f64 - 1000.5)
                        .to_bits()
                        .to_le_bytes(),
                );
            }
            let r = rng.next();
            let pc = [0u16, 2, 3][(r % 3) as usize];
            io.cw = 0x103f | (pc << 8) | ((((r >> 4) & 3) as u16) << 10);
            io.flags = 0x2 | (rng.next() & ARITH);
            let mut h = io;
            host(&mut h);
            let g = run_case(&mut m, &tmpl, &io);
            assert!(
                same(&h, &g),
                "{name} (iteration {it})\ninput {io:x?}\nhost {h:x?}\ngot  {g:x?}"
            );
        }
    }
}

#[test]
fn arithmetic_matches_host() {
    let cases = [
        case!("fadd st(0), st(1)", fadd_2(st0, st1)),
        case!("fadd st(1), st(0)", fadd_2(st1, st0)),
        case!("faddp st(1), st(0)", faddp(st1, st0)),
        case!("fsub st(0), st(1)", fsub_2(st0, st1)),
        case!("fsubr st(0), st(1)", fsubr_2(st0, st1)),
        case!("fsubp st(1), st(0)", fsubp(st1, st0)),
        case!("fsubrp st(1), st(0)", fsubrp(st1, st0)),
        case!("fmul st(0), st(1)", fmul_2(st0, st1)),
        case!("fmulp st(1), st(0)", fmulp(st1, st0)),
        case!("fdiv st(0), st(1)", fdiv_2(st0, st1)),
        case!("fdivr st(0), st(1)", fdivr_2(st0, st1)),
        case!("fdivp st(1), st(0)", fdivp(st1, st0)),
        case!("fdivrp st(1), st(0)", fdivrp(st1, st0)),
        case!("fsqrt", fsqrt()),
        case!("fchs", fchs()),
        case!("fabs", fabs()),
        case!("fadd dword ptr [rdi]", fadd(dword_ptr(rdi))),
        case!("fmul qword ptr [rdi]", fmul(qword_ptr(rdi))),
        case!("fdivr dword ptr [rdi]", fdivr(dword_ptr(rdi))),
        case!("fisub word ptr [rdi]", fisub(word_ptr(rdi))),
        case!("fimul dword ptr [rdi]", fimul(dword_ptr(rdi))),
        case!("fidiv dword ptr [rdi]", fidiv(dword_ptr(rdi))),
    ];
    differential(&cases, false, 300 * stress());
}

#[test]
fn number_instructions_match_host() {
    let cases = [
        case!("frndint", frndint()),
        case!("fscale", fscale()),
        case!("fxtract", fxtract()),
        case!("fprem", fprem()),
        case!("fprem1", fprem1()),
    ];
    differential(&cases, true, 400 * stress());
}

#[test]
fn compares_match_host() {
    let cases = [
        case!("fcom st(1)", fcom_2(st0, st1)),
        case!("fcomp st(1)", fcomp_2(st0, st1)),
        case!("fcompp", fcompp()),
        case!("fucom st(1)", fucom(st0, st1)),
        case!("fucomp st(1)", fucomp(st0, st1)),
        case!("fucompp", fucompp()),
        case!("fcomi st(0), st(1)", fcomi(st0, st1)),
        case!("fcomip st(0), st(1)", fcomip(st0, st1)),
        case!("fucomi st(0), st(1)", fucomi(st0, st1)),
        case!("fucomip st(0), st(1)", fucomip(st0, st1)),
        case!("ftst", ftst()),
        case!("fxam", fxam()),
        case!("fcom dword ptr [rdi]", fcom(dword_ptr(rdi))),
        case!("fcomp qword ptr [rdi]", fcomp(qword_ptr(rdi))),
        case!("ficom word ptr [rdi]", ficom(word_ptr(rdi))),
        case!("ficomp dword ptr [rdi]", ficomp(dword_ptr(rdi))),
        case!("fcmovb st(0), st(1)", fcmovb(st0, st1)),
        case!("fcmovnbe st(0), st(1)", fcmovnbe(st0, st1)),
        case!("fcmovu st(0), st(1)", fcmovu(st0, st1)),
        case!("fxch st(1)", fxch(st0, st1)),
    ];
    differential(&cases, false, 200 * stress());
}

#[test]
fn loads_and_stores_match_host() {
    let cases = [
        case!("fld dword ptr [rdi]", fld(dword_ptr(rdi))),
        case!("fld qword ptr [rdi]", fld(qword_ptr(rdi))),
        case!("fld tbyte ptr [rdi]", fld(tword_ptr(rdi))),
        case!("fld st(1)", fld(st1)),
        case!("fild word ptr [rdi]", fild(word_ptr(rdi))),
        case!("fild dword ptr [rdi]", fild(dword_ptr(rdi))),
        case!("fild qword ptr [rdi]", fild(qword_ptr(rdi))),
        case!("fbld tbyte ptr [rdi]", fbld(tword_ptr(rdi))),
        case!("fst dword ptr [rdi]", fst(dword_ptr(rdi))),
        case!("fst qword ptr [rdi]", fst(qword_ptr(rdi))),
        case!("fstp dword ptr [rdi]", fstp(dword_ptr(rdi))),
        case!("fstp tbyte ptr [rdi]", fstp(tword_ptr(rdi))),
        case!("fst st(1)", fst(st1)),
        case!("fstp st(1)", fstp(st1)),
        case!("fist word ptr [rdi]", fist(word_ptr(rdi))),
        case!("fist dword ptr [rdi]", fist(dword_ptr(rdi))),
        case!("fistp qword ptr [rdi]", fistp(qword_ptr(rdi))),
        case!("fisttp word ptr [rdi]", fisttp(word_ptr(rdi))),
        case!("fisttp dword ptr [rdi]", fisttp(dword_ptr(rdi))),
        case!("fisttp qword ptr [rdi]", fisttp(qword_ptr(rdi))),
        case!("fbstp tbyte ptr [rdi]", fbstp(tword_ptr(rdi))),
        case!("fld1", fld1()),
        case!("fldz", fldz()),
        case!("fldpi", fldpi()),
        case!("fldl2e", fldl2e()),
        case!("fldl2t", fldl2t()),
        case!("fldlg2", fldlg2()),
        case!("fldln2", fldln2()),
        case!("fincstp", fincstp()),
        case!("fdecstp", fdecstp()),
        case!("ffree st(1)", ffree(st1)),
        case!("fnstsw ax", fnstsw(ax)),
    ];
    differential(&cases, true, 200 * stress());
}

#[test]
fn transcendentals_are_close_to_the_host() {
    if !host_is_reference() {
        return;
    }
    // f64-based approximations: compare values to ~50 bits.
    let cases = [
        case!("fsin", fsin()),
        case!("fcos", fcos()),
        case!("fptan", fptan()),
        case!("fsincos", fsincos()),
        case!("fpatan", fpatan()),
        case!("fyl2x", fyl2x()),
        case!("fyl2xp1", fyl2xp1()),
        case!("f2xm1", f2xm1()),
    ];
    let mut rng = Rng(77);
    for &(name, host, emit) in &cases {
        let mut m = machine(|a| emit(a).unwrap());
        let tmpl = m.cpu.state;
        for it in 0..200 {
            let x = match name {
                "f2xm1" | "fyl2xp1" => (rng.next() % 1000) as f64 / 1000.0 - 0.5,
                "fyl2x" => (rng.next() % 100000) as f64 / 7.0 + 0.01,
                _ => (rng.next() % 20000) as f64 / 1000.0 - 10.0,
            };
            let y = (rng.next() % 2000) as f64 / 100.0 - 10.0;
            let to80 = |v: f64| {
                let mut c = super::super::softfloat::Ctx::new(super::super::softfloat::Rc::Nearest);
                let p = super::super::softfloat::pack80(super::super::softfloat::unpack64(
                    &mut c,
                    v.to_bits(),
                ));
                f80(p.0, p.1)
            };
            let io = Io {
                a: to80(x),
                b: to80(y),
                cw: 0x037f,
                flags: 2,
                ..Io::default()
            };
            let mut h = io;
            host(&mut h);
            let g = run_case(&mut m, &tmpl, &io);
            let hsw = u16::from_le_bytes([h.env[4], h.env[5]]);
            let gsw = u16::from_le_bytes([g.env[4], g.env[5]]);
            assert_eq!(hsw & 0x3800, gsw & 0x3800, "{name} TOP ({it})");
            assert_eq!(h.env[8..10], g.env[8..10], "{name} tags ({it})");
            let top = ((hsw >> 11) & 7) as usize;
            let tags = u16::from_le_bytes([h.env[8], h.env[9]]);
            for k in (0..2).filter(|k| (tags >> (2 * ((top + k) & 7))) & 3 != 3) {
                let v = |o: &[u8; 16]| {
                    let mut c =
                        super::super::softfloat::Ctx::new(super::super::softfloat::Rc::Nearest);
                    let f = super::super::softfloat::unpack80(
                        u16::from_le_bytes([o[8], o[9]]),
                        u64::from_le_bytes(o[..8].try_into().unwrap()),
                    );
                    f64::from_bits(super::super::softfloat::pack64(
                        super::super::softfloat::round_fp(&mut c, super::super::softfloat::F64, f),
                    ))
                };
                let (hv, gv) = (v(&h.out[k]), v(&g.out[k]));
                let tol = 1e-14 * hv.abs().max(1e-300);
                assert!(
                    (hv - gv).abs() <= tol,
                    "{name}({x}, {y}) ST{k}: host {hv} got {gv}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Stack discipline, exceptions, environment

#[test]
fn stack_overflow_and_underflow_set_sf_c1_and_give_the_indefinite() {
    // Nine pushes: the ninth overflows (masked): IE|SF, C1=1, ST0 = indefinite.
    let mut m = machine(|a| {
        for _ in 0..9 {
            a.fld1().unwrap();
        }
    });
    assert_eq!(m.run(), ExitReason::Halt);
    let f = m.cpu.state.fpu;
    assert_eq!(f.fsw & 0x7f, 0x41);
    assert_ne!(f.fsw & (1 << 9), 0, "C1 = 1 on overflow");
    assert_eq!(m.cpu.st_raw(0), (0xffff, 0xc000_0000_0000_0000));
    assert_eq!(f.ftw, 0xff);
    // Underflow: FADD with empty registers gives the indefinite, C1 = 0.
    let mut m = machine(|a| a.fadd_2(st0, st1).unwrap());
    assert_eq!(m.run(), ExitReason::Halt);
    let f = m.cpu.state.fpu;
    assert_eq!(f.fsw & 0x7f, 0x41);
    assert_eq!(f.fsw & (1 << 9), 0);
    assert_eq!(m.cpu.st_raw(0), (0xffff, 0xc000_0000_0000_0000));
    assert!(m.cpu.st_valid(0));
    // FSTP m64 of an empty ST0 stores the indefinite and pops.
    let mut m = machine(|a| a.fstp(qword_ptr(0x9000)).unwrap());
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(m.read_u64(0x9000), 0xfff8_0000_0000_0000);
    assert_eq!((m.cpu.state.fpu.fsw >> 11) & 7, 1);
}

#[test]
fn unmasked_exception_is_pending_until_the_next_waiting_instruction() {
    // Unmask ZE, divide by zero: flags set, ES/B set, destination kept;
    // the next FP instruction (CR0.NE=1) raises #MF at its own address.
    let mut m = machine(|a| {
        a.fldz().unwrap();
        a.fld1().unwrap();
        a.mov(word_ptr(0x9000), 0x037b).unwrap();
        a.fldcw(word_ptr(0x9000)).unwrap();
        a.fdiv_2(st0, st1).unwrap();
        a.fnstsw(ax).unwrap();
        a.mov(ebx, eax).unwrap();
        a.wait().unwrap();
    });
    assert_eq!(m.run(), ExitReason::Halt);
    let f = m.cpu.state.fpu;
    assert_eq!(f.fsw & 0x80ff, 0x8084, "ZE, ES, B");
    assert_eq!(m.cpu.st_raw(0), (0x3fff, 1 << 63), "destination unchanged");
    assert_eq!(m.gpr(3) & 0xffff, f.fsw as u64, "FNSTSW does not wait");
    assert_eq!(m.rec().0, vector::MF as u64);
    // FNCLEX clears it: no #MF afterwards.
    let mut m = machine(|a| {
        a.fldz().unwrap();
        a.fld1().unwrap();
        a.mov(word_ptr(0x9000), 0x037b).unwrap();
        a.fldcw(word_ptr(0x9000)).unwrap();
        a.fdiv_2(st0, st1).unwrap();
        a.fnclex().unwrap();
        a.fld1().unwrap();
    });
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(m.rec().0, u64::MAX);
    assert_eq!(m.cpu.state.fpu.fsw & 0x80ff, 0);
}

#[test]
fn cr0_em_and_ts_raise_nm() {
    for (bits, v) in [(cr0::EM, vector::NM), (cr0::TS, vector::NM)] {
        let mut m = machine(|a| a.fld1().unwrap());
        m.cpu.state.cr0 |= bits;
        assert_eq!(m.run(), ExitReason::Halt);
        assert_eq!(m.rec().0, v as u64);
    }
    // WAIT: #NM only with TS and MP.
    let mut m = machine(|a| a.wait().unwrap());
    m.cpu.state.cr0 |= cr0::TS;
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(m.rec().0, u64::MAX);
    let mut m = machine(|a| a.wait().unwrap());
    m.cpu.state.cr0 |= cr0::TS | cr0::MP;
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(m.rec().0, vector::NM as u64);
    // MMX with EM: #UD.
    let mut m = machine(|a| a.paddb(mm0, mm1).unwrap());
    m.cpu.state.cr0 |= cr0::EM;
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(m.rec().0, vector::UD as u64);
}

#[test]
fn fnstenv_fnsave_frstor_round_trip() {
    let mut m = machine(|a| {
        a.fldpi().unwrap();
        a.fld1().unwrap();
        a.fadd_2(st0, st1).unwrap();
        a.fnstenv(ptr(0x9000)).unwrap();
        a.fnsave(ptr(0x9100)).unwrap();
        a.fnstsw(ax).unwrap();
        a.mov(ebx, eax).unwrap();
        a.frstor(ptr(0x9100)).unwrap();
        a.fnstsw(ax).unwrap();
    });
    assert_eq!(m.run(), ExitReason::Halt);
    let env = &m.bus.ram[0x9000..0x9000 + 28];
    assert_eq!(u16::from_le_bytes([env[0], env[1]]), 0x037f);
    let fsw = u16::from_le_bytes([env[4], env[5]]);
    assert_eq!((fsw >> 11) & 7, 6);
    assert_eq!(fsw & 0x3f, 0x20, "PE");
    // Tags: R6 valid (00), R7 valid (00), others empty (11).
    assert_eq!(u16::from_le_bytes([env[8], env[9]]), 0x0fff);
    assert_eq!(
        u32::from_le_bytes(env[12..16].try_into().unwrap()) as u64,
        CODE + 4,
        "FIP = the FADD"
    );
    // FNSAVE: same environment then ST0..ST7 (10 bytes each), then FNINIT.
    let save = &m.bus.ram[0x9100..0x9100 + 108];
    assert_eq!(&save[..28], env);
    assert_eq!(&save[28 + 8..28 + 10], &0x4001u16.to_le_bytes());
    assert_eq!(&save[38 + 8..38 + 10], &0x4000u16.to_le_bytes());
    assert_eq!(m.gpr(3) & 0xffff, 0, "FNINIT after FNSAVE");
    assert_eq!(m.gpr(0) & 0xffff, fsw as u64);
    assert_eq!(m.cpu.state.fpu.ftw, 0xc0);
    assert_eq!(m.cpu.st_raw(1), (0x4000, 0xc90f_daa2_2168_c235));
}

#[test]
fn fldenv_with_another_top_keeps_physical_registers() {
    let mut m = machine(|a| {
        a.fldpi().unwrap(); // R7
        a.fld1().unwrap(); // R6
        a.fnstenv(ptr(0x9000)).unwrap();
        a.fincstp().unwrap();
        a.fldenv(ptr(0x9000)).unwrap();
    });
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(m.cpu.fpu_top(), 6);
    assert_eq!(m.cpu.st_raw(0), (0x3fff, 1 << 63));
    assert_eq!(m.cpu.st_raw(1).0, 0x4000);
}

#[test]
fn fxsave_layout_and_fxrstor() {
    let mut m = machine(|a| {
        a.fldpi().unwrap();
        a.fld1().unwrap();
        a.mov(rax, 0x1122_3344_5566_7788u64).unwrap();
        a.movq(xmm9, rax).unwrap();
        a.fxsave64(ptr(0x9000)).unwrap();
        a.fxsave(ptr(0x9200)).unwrap();
        a.fninit().unwrap();
        a.pxor(xmm9, xmm9).unwrap();
        a.fxrstor64(ptr(0x9000)).unwrap();
    });
    m.bus.load(0x9000, &[0xaa; 0x400]);
    m.cpu.state.fpu.mxcsr = 0x1fa0;
    m.cpu.state.fpu.fdp = 0x1234;
    assert_eq!(m.run(), ExitReason::Halt);
    let b = &m.bus.ram[0x9000..0x9200];
    assert_eq!(&b[0..2], &0x037fu16.to_le_bytes());
    assert_eq!((u16::from_le_bytes([b[2], b[3]]) >> 11) & 7, 6);
    assert_eq!(b[4], 0xc0, "abridged tag");
    assert_eq!(
        u64::from_le_bytes(b[8..16].try_into().unwrap()),
        CODE + 2,
        "64-bit FIP"
    );
    assert_eq!(&b[24..28], &0x1fa0u32.to_le_bytes());
    assert_eq!(&b[28..32], &0xffffu32.to_le_bytes(), "MXCSR_MASK");
    assert_eq!(&b[32..42], &f80(0x3fff, 1 << 63)[..10]);
    assert_eq!(&b[42..48], &[0; 6]);
    assert_eq!(&b[48..58], &f80(0x4000, 0xc90f_daa2_2168_c235)[..10]);
    assert_eq!(
        &b[160 + 9 * 16..160 + 9 * 16 + 8],
        &0x1122_3344_5566_7788u64.to_le_bytes()
    );
    assert_eq!(&b[416..512], &[0xaa; 96], "reserved area untouched");
    // 32-bit form: FIP 32 bits + FCS at 12.
    let b32 = &m.bus.ram[0x9200..0x9400];
    assert_eq!(
        u32::from_le_bytes(b32[8..12].try_into().unwrap()) as u64,
        CODE + 2
    );
    assert_eq!(&b32[12..16], &[0; 4]);
    // Restored.
    assert_eq!(
        m.cpu.state.fpu.xmm[9][..8],
        0x1122_3344_5566_7788u64.to_le_bytes()
    );
    assert_eq!(m.cpu.fpu_top(), 6);
    assert_eq!(m.cpu.st_raw(0), (0x3fff, 1 << 63));
    // Misaligned: #GP(0). Bad MXCSR in the image: #GP(0).
    let mut m = machine(|a| a.fxsave(ptr(0x9008)).unwrap());
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(m.rec().0, vector::GP as u64);
    let mut m = machine(|a| a.fxrstor(ptr(0x9000)).unwrap());
    m.bus.load(0x9018, &0x10000u32.to_le_bytes());
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(m.rec().0, vector::GP as u64);
}

#[test]
fn xsave_layout_xrstor_and_xsetbv() {
    let mut m = machine(|a| {
        a.fld1().unwrap();
        a.mov(rax, 0x55u64).unwrap();
        a.movq(xmm3, rax).unwrap();
        a.xor(ecx, ecx).unwrap();
        a.xgetbv().unwrap();
        a.mov(esi, eax).unwrap();
        a.mov(eax, 3).unwrap();
        a.xor(edx, edx).unwrap();
        a.xsave64(ptr(0x9000)).unwrap();
        a.mov(eax, 2).unwrap();
        a.xsavec(ptr(0x9400)).unwrap();
        a.fninit().unwrap();
        a.pxor(xmm3, xmm3).unwrap();
        a.mov(eax, 3).unwrap();
        a.xrstor64(ptr(0x9000)).unwrap();
    });
    m.bus.load(0x9000, &[0xaa; 0x800]);
    m.bus.load(0x9200, &[0; 64]);
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(m.rec().0, u64::MAX);
    assert_eq!(m.gpr(6), 3, "XGETBV(0) = XCR0");
    let b = &m.bus.ram[0x9000..0x9240];
    assert_eq!(&b[0..2], &0x037fu16.to_le_bytes());
    assert_eq!(&b[160 + 48..160 + 56], &0x55u64.to_le_bytes());
    assert_eq!(
        u64::from_le_bytes(b[512..520].try_into().unwrap()),
        3,
        "XSTATE_BV"
    );
    assert_eq!(&b[520..576], &[0; 56]);
    assert_eq!(&b[464..512], &[0xaa; 48], "legacy reserved bytes untouched");
    // XSAVEC of SSE only: XCOMP_BV = bit 63 | 2, x87 part not written.
    let c = &m.bus.ram[0x9400..0x9640];
    assert_eq!(u64::from_le_bytes(c[512..520].try_into().unwrap()), 2);
    assert_eq!(
        u64::from_le_bytes(c[520..528].try_into().unwrap()),
        (1 << 63) | 2
    );
    assert_eq!(&c[0..2], &[0xaa, 0xaa]);
    assert_eq!(&c[160 + 48..160 + 56], &0x55u64.to_le_bytes());
    // XRSTOR brought everything back.
    assert_eq!(m.cpu.state.fpu.xmm[3][0], 0x55);
    assert_eq!(m.cpu.st_raw(0), (0x3fff, 1 << 63));

    // XRSTOR with XSTATE_BV = 0 initializes; reserved header bytes → #GP.
    let mut m = machine(|a| {
        a.mov(eax, 3).unwrap();
        a.xor(edx, edx).unwrap();
        a.xrstor(ptr(0x9000)).unwrap();
    });
    m.cpu.state.fpu.xmm[5] = [7; 16];
    m.cpu.state.fpu.fcw = 0x7f;
    m.bus.load(0x9018, &0x1f80u32.to_le_bytes());
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(m.rec().0, u64::MAX);
    assert_eq!(m.cpu.state.fpu.xmm[5], [0; 16]);
    assert_eq!(m.cpu.state.fpu.fcw, 0x37f);
    let mut m = machine(|a| {
        a.mov(eax, 3).unwrap();
        a.xrstor(ptr(0x9000)).unwrap();
    });
    m.bus.load(0x9000 + 530, &[1]);
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(m.rec().0, vector::GP as u64);
    // Misaligned XSAVE, XSETBV with AVX or without x87, XSAVE without OSXSAVE.
    for (f, v) in [
        (
            (|a: &mut CodeAssembler| a.xsave(ptr(0x9020))) as EmitFn,
            vector::GP,
        ),
        (
            |a| {
                a.mov(eax, 7)?;
                a.xor(ecx, ecx)?;
                a.xor(edx, edx)?;
                a.xsetbv()
            },
            vector::GP,
        ),
        (
            |a| {
                a.mov(eax, 2)?;
                a.xor(ecx, ecx)?;
                a.xor(edx, edx)?;
                a.xsetbv()
            },
            vector::GP,
        ),
    ] {
        let mut m = machine(|a| f(a).unwrap());
        assert_eq!(m.run(), ExitReason::Halt);
        assert_eq!(m.rec().0, v as u64);
    }
    let mut m = machine(|a| a.xgetbv().unwrap());
    m.cpu.state.cr4 &= !crate::consts::cr4::OSXSAVE;
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(m.rec().0, vector::UD as u64);
    // XSETBV(1) from ring 0 is accepted.
    let mut m = machine(|a| {
        a.mov(eax, 1).unwrap();
        a.xor(ecx, ecx).unwrap();
        a.xor(edx, edx).unwrap();
        a.xsetbv().unwrap();
    });
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(m.cpu.state.xcr0, 1);
}

/// Iteration multiplier for the differential tests (HX86_STRESS=n).
fn stress() -> usize {
    std::env::var("HX86_STRESS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

#[test]
fn legacy_mode_images() {
    // 32-bit protected mode: FXSAVE stores XMM0-7 only; 16-bit FNSTENV.
    let code = super::super::tests::asm(32, CODE, |a| {
        a.fld1().unwrap();
        a.fxsave(ptr(0x9000)).unwrap();
        a.db(&[0x66]).unwrap();
        a.fnstenv(ptr(0x9400)).unwrap();
        a.hlt().unwrap();
    });
    let mut m = M::prot32(&code);
    m.cpu.state.cr4 |= crate::consts::cr4::OSFXSR;
    m.cpu.state.fpu.xmm[8] = [0x77; 16];
    m.bus.load(0x9000, &[0xaa; 0x200]);
    m.bus.load(0x9400, &[0xaa; 0x20]);
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(
        &m.bus.ram[0x9000 + 288..0x9000 + 304],
        &[0xaa; 16],
        "no XMM8 outside 64-bit mode"
    );
    let e = &m.bus.ram[0x9400..0x9410];
    assert_eq!(&e[0..2], &0x037fu16.to_le_bytes());
    assert_eq!((u16::from_le_bytes([e[2], e[3]]) >> 11) & 7, 7);
    assert_eq!(&e[4..6], &0x3fffu16.to_le_bytes(), "R7 valid, others empty");
    assert_eq!(
        u16::from_le_bytes([e[6], e[7]]) as u64,
        CODE & 0xffff,
        "FIP"
    );
    assert_eq!(&e[14..16], &[0xaa, 0xaa], "14-byte image");
    // Real mode: 32-bit FNSTENV layout with FIP[31:16] at bits 12.. of dword 4.
    let code = super::super::tests::asm(16, 0, |a| {
        a.fld1().unwrap();
        a.db(&[0x66]).unwrap();
        a.fnstenv(ptr(0x400)).unwrap();
        a.hlt().unwrap();
    });
    let mut m = M::real(&code);
    assert_eq!(m.run(), ExitReason::Halt);
    let e = &m.bus.ram[0x400..0x400 + 28];
    assert_eq!(
        u32::from_le_bytes(e[12..16].try_into().unwrap()),
        0xffff_0000,
        "FIP[15:0] of the FLD1 at IP 0"
    );
    assert_eq!(
        u32::from_le_bytes(e[16..20].try_into().unwrap()) & 0x7ff,
        0x1e8,
        "FOP of FLD1 (D9 E8)"
    );
}
