//! Integer instruction semantics checked against the host CPU (an x86-64):
//! every instruction runs once in the interpreter and once natively with
//! the same inputs; results and the flags the SDM defines must match.

use iced_x86::code_asm::*;

use super::*;
use crate::consts::rflags::{AF, CF, OF, PF, SF, ZF};

const ARITH: u64 = CF | PF | AF | ZF | SF | OF;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Edge values half of the time.
    fn val(&mut self) -> u64 {
        const EDGE: [u64; 14] = [
            0,
            1,
            2,
            0x7f,
            0x80,
            0xff,
            0x7fff,
            0x8000,
            0xffff,
            0x7fff_ffff,
            0x8000_0000,
            0xffff_ffff,
            0x7fff_ffff_ffff_ffff,
            0x8000_0000_0000_0000,
        ];
        let r = self.next();
        match r % 4 {
            0 => EDGE[(r >> 8) as usize % EDGE.len()],
            1 => u64::MAX - EDGE[(r >> 8) as usize % EDGE.len()],
            _ => self.next(),
        }
    }
}

/// Host flags for a register-register form, via inline asm.
macro_rules! host2 {
    ($fname:ident, $ins:literal) => {
        fn $fname(size: u32, a: u64, b: u64, fin: u64) -> (u64, u64) {
            let mut a = a;
            let f: u64;
            // SAFETY: pure register arithmetic; the flags are saved and
            // restored through the stack, which the asm may use.
            unsafe {
                match size {
                    1 => core::arch::asm!("push {fin}", "popfq", concat!($ins, " {a:l}, {b:l}"), "pushfq", "pop {f}",
                        a = inout(reg_abcd) a, b = in(reg_abcd) b, fin = in(reg) fin, f = out(reg) f),
                    2 => core::arch::asm!("push {fin}", "popfq", concat!($ins, " {a:x}, {b:x}"), "pushfq", "pop {f}",
                        a = inout(reg) a, b = in(reg) b, fin = in(reg) fin, f = out(reg) f),
                    4 => core::arch::asm!("push {fin}", "popfq", concat!($ins, " {a:e}, {b:e}"), "pushfq", "pop {f}",
                        a = inout(reg) a, b = in(reg) b, fin = in(reg) fin, f = out(reg) f),
                    _ => core::arch::asm!("push {fin}", "popfq", concat!($ins, " {a}, {b}"), "pushfq", "pop {f}",
                        a = inout(reg) a, b = in(reg) b, fin = in(reg) fin, f = out(reg) f),
                }
            }
            (a, f)
        }
    };
}

/// Host flags for a register-register form without a byte form.
macro_rules! host2w {
    ($fname:ident, $ins:literal) => {
        fn $fname(size: u32, a: u64, b: u64, fin: u64) -> (u64, u64) {
            let mut a = a;
            let f: u64;
            // SAFETY: as for `host2`.
            unsafe {
                match size {
                    2 => core::arch::asm!("push {fin}", "popfq", concat!($ins, " {a:x}, {b:x}"), "pushfq", "pop {f}",
                        a = inout(reg) a, b = in(reg) b, fin = in(reg) fin, f = out(reg) f),
                    4 => core::arch::asm!("push {fin}", "popfq", concat!($ins, " {a:e}, {b:e}"), "pushfq", "pop {f}",
                        a = inout(reg) a, b = in(reg) b, fin = in(reg) fin, f = out(reg) f),
                    _ => core::arch::asm!("push {fin}", "popfq", concat!($ins, " {a}, {b}"), "pushfq", "pop {f}",
                        a = inout(reg) a, b = in(reg) b, fin = in(reg) fin, f = out(reg) f),
                }
            }
            (a, f)
        }
    };
}

/// Host flags for a shift/rotate by CL.
macro_rules! host_cl {
    ($fname:ident, $ins:literal) => {
        fn $fname(size: u32, a: u64, b: u64, fin: u64) -> (u64, u64) {
            let mut a = a;
            let f: u64;
            // SAFETY: as for `host2`.
            unsafe {
                match size {
                    1 => core::arch::asm!("push {fin}", "popfq", concat!($ins, " {a:l}, cl"), "pushfq", "pop {f}",
                        a = inout(reg_abcd) a, in("rcx") b, fin = in(reg) fin, f = out(reg) f),
                    2 => core::arch::asm!("push {fin}", "popfq", concat!($ins, " {a:x}, cl"), "pushfq", "pop {f}",
                        a = inout(reg) a, in("rcx") b, fin = in(reg) fin, f = out(reg) f),
                    4 => core::arch::asm!("push {fin}", "popfq", concat!($ins, " {a:e}, cl"), "pushfq", "pop {f}",
                        a = inout(reg) a, in("rcx") b, fin = in(reg) fin, f = out(reg) f),
                    _ => core::arch::asm!("push {fin}", "popfq", concat!($ins, " {a}, cl"), "pushfq", "pop {f}",
                        a = inout(reg) a, in("rcx") b, fin = in(reg) fin, f = out(reg) f),
                }
            }
            (a, f)
        }
    };
}

/// Host flags for SHLD/SHRD a, d, cl (d passed in rdx).
macro_rules! host_dbl {
    ($fname:ident, $ins:literal) => {
        fn $fname(size: u32, a: u64, b: u64, d: u64, fin: u64) -> (u64, u64) {
            let mut a = a;
            let f: u64;
            // SAFETY: as for `host2`.
            unsafe {
                match size {
                    2 => core::arch::asm!("push {fin}", "popfq", concat!($ins, " {a:x}, dx, cl"), "pushfq", "pop {f}",
                        a = inout(reg) a, in("rcx") b, in("rdx") d, fin = in(reg) fin, f = out(reg) f),
                    4 => core::arch::asm!("push {fin}", "popfq", concat!($ins, " {a:e}, edx, cl"), "pushfq", "pop {f}",
                        a = inout(reg) a, in("rcx") b, in("rdx") d, fin = in(reg) fin, f = out(reg) f),
                    _ => core::arch::asm!("push {fin}", "popfq", concat!($ins, " {a}, rdx, cl"), "pushfq", "pop {f}",
                        a = inout(reg) a, in("rcx") b, in("rdx") d, fin = in(reg) fin, f = out(reg) f),
                }
            }
            (a, f)
        }
    };
}

/// Host flags for a one-operand form.
macro_rules! host1 {
    ($fname:ident, $ins:literal) => {
        fn $fname(size: u32, a: u64, _b: u64, fin: u64) -> (u64, u64) {
            let mut a = a;
            let f: u64;
            // SAFETY: as for `host2`.
            unsafe {
                match size {
                    1 => core::arch::asm!("push {fin}", "popfq", concat!($ins, " {a:l}"), "pushfq", "pop {f}",
                        a = inout(reg_abcd) a, fin = in(reg) fin, f = out(reg) f),
                    2 => core::arch::asm!("push {fin}", "popfq", concat!($ins, " {a:x}"), "pushfq", "pop {f}",
                        a = inout(reg) a, fin = in(reg) fin, f = out(reg) f),
                    4 => core::arch::asm!("push {fin}", "popfq", concat!($ins, " {a:e}"), "pushfq", "pop {f}",
                        a = inout(reg) a, fin = in(reg) fin, f = out(reg) f),
                    _ => core::arch::asm!("push {fin}", "popfq", concat!($ins, " {a}"), "pushfq", "pop {f}",
                        a = inout(reg) a, fin = in(reg) fin, f = out(reg) f),
                }
            }
            (a, f)
        }
    };
}

host2!(h_add, "add");
host2!(h_adc, "adc");
host2!(h_sub, "sub");
host2!(h_sbb, "sbb");
host2!(h_and, "and");
host2!(h_or, "or");
host2!(h_xor, "xor");
host2!(h_cmp, "cmp");
host2!(h_test, "test");
host2w!(h_bt, "bt");
host2w!(h_bts, "bts");
host2w!(h_btr, "btr");
host2w!(h_btc, "btc");
host2w!(h_bsf, "bsf");
host2w!(h_bsr, "bsr");
host2w!(h_popcnt, "popcnt");
host2w!(h_lzcnt, "lzcnt");
host2w!(h_imul2, "imul");
host2!(h_xadd, "xadd");
host1!(h_inc, "inc");
host1!(h_dec, "dec");
host1!(h_neg, "neg");
host1!(h_not, "not");
host_cl!(h_shl, "shl");
host_cl!(h_shr, "shr");
host_cl!(h_sar, "sar");
host_cl!(h_rol, "rol");
host_cl!(h_ror, "ror");
host_cl!(h_rcl, "rcl");
host_cl!(h_rcr, "rcr");
host_dbl!(h_shld, "shld");
host_dbl!(h_shrd, "shrd");

type HostFn = fn(u32, u64, u64, u64) -> (u64, u64);

/// Register operands for `size` as code_asm registers (dest = RAX family,
/// source = RCX family).
fn emit(a: &mut CodeAssembler, size: u32, op: &str) {
    macro_rules! two {
        ($m:ident) => {
            match size {
                1 => a.$m(al, cl),
                2 => a.$m(ax, cx),
                4 => a.$m(eax, ecx),
                _ => a.$m(rax, rcx),
            }
        };
    }
    macro_rules! two_w {
        ($m:ident) => {
            match size {
                2 => a.$m(ax, cx),
                4 => a.$m(eax, ecx),
                _ => a.$m(rax, rcx),
            }
        };
    }
    macro_rules! one {
        ($m:ident) => {
            match size {
                1 => a.$m(al),
                2 => a.$m(ax),
                4 => a.$m(eax),
                _ => a.$m(rax),
            }
        };
    }
    macro_rules! sh {
        ($m:ident) => {
            match size {
                1 => a.$m(al, cl),
                2 => a.$m(ax, cl),
                4 => a.$m(eax, cl),
                _ => a.$m(rax, cl),
            }
        };
    }
    let r = match op {
        "add" => two!(add),
        "adc" => two!(adc),
        "sub" => two!(sub),
        "sbb" => two!(sbb),
        "and" => two!(and),
        "or" => two!(or),
        "xor" => two!(xor),
        "cmp" => two!(cmp),
        "test" => two!(test),
        "xadd" => two!(xadd),
        "bt" => two_w!(bt),
        "bts" => two_w!(bts),
        "btr" => two_w!(btr),
        "btc" => two_w!(btc),
        "bsf" => two_w!(bsf),
        "bsr" => two_w!(bsr),
        "popcnt" => two_w!(popcnt),
        "lzcnt" => two_w!(lzcnt),
        "imul2" => two_w!(imul_2),
        "inc" => one!(inc),
        "dec" => one!(dec),
        "neg" => one!(neg),
        "not" => one!(not),
        "shl" => sh!(shl),
        "shr" => sh!(shr),
        "sar" => sh!(sar),
        "rol" => sh!(rol),
        "ror" => sh!(ror),
        "rcl" => sh!(rcl),
        "rcr" => sh!(rcr),
        "shld" => match size {
            2 => a.shld(ax, dx, cl),
            4 => a.shld(eax, edx, cl),
            _ => a.shld(rax, rdx, cl),
        },
        "shrd" => match size {
            2 => a.shrd(ax, dx, cl),
            4 => a.shrd(eax, edx, cl),
            _ => a.shrd(rax, rdx, cl),
        },
        _ => panic!("op {op}"),
    };
    r.unwrap();
}

/// Flags the SDM defines for `op` with these inputs.
fn defined(op: &str, size: u32, b: u64) -> u64 {
    let bits = size as u64 * 8;
    let cmask = if size == 8 { 63 } else { 31 };
    let c = b & cmask;
    match op {
        "add" | "adc" | "sub" | "sbb" | "cmp" | "neg" | "xadd" => ARITH,
        "and" | "or" | "xor" | "test" => ARITH & !AF,
        "inc" | "dec" => ARITH,
        "not" => ARITH,
        "bt" | "bts" | "btr" | "btc" => CF,
        "bsf" | "bsr" => ZF,
        "popcnt" => ARITH,
        "lzcnt" => CF | ZF,
        "imul2" => CF | OF,
        "shl" | "shr" | "sar" => {
            if c == 0 {
                ARITH
            } else {
                let mut m = SF | ZF | PF;
                if c <= bits || op == "sar" {
                    m |= CF;
                }
                if c == 1 {
                    m |= OF;
                }
                m
            }
        }
        "rol" | "ror" | "rcl" | "rcr" => {
            if c == 0 {
                ARITH
            } else if c == 1 {
                CF | OF
            } else {
                CF
            }
        }
        "shld" | "shrd" => {
            if c == 0 {
                ARITH
            } else if c > bits {
                0
            } else if c == 1 {
                CF | OF | SF | ZF | PF
            } else {
                CF | SF | ZF | PF
            }
        }
        _ => 0,
    }
}

fn check(op: &str, host: HostFn, sizes: &[u32]) {
    let mut rng = Rng(0x1234_5678_9abc_def1 ^ (op.len() as u64 * 77));
    for &size in sizes {
        let code = asm(64, CODE, |a| emit(a, size, op));
        let mut m = M::long64(&code);
        for _ in 0..400 {
            let a = rng.val();
            let mut b = rng.val();
            if op.starts_with('s') && op.len() == 3 || op.starts_with('r') {
                b = rng.next() % 72;
            }
            if op == "shld" || op == "shrd" {
                b = rng.next() % (size as u64 * 8 + 2);
            }
            let d = rng.val();
            let fin = 0x202 | (rng.next() & ARITH);
            m.cpu.state.gpr = [0; 16];
            m.cpu.state.gpr[0] = a;
            m.cpu.state.gpr[1] = b;
            m.cpu.state.gpr[2] = d;
            m.cpu.state.gpr[4] = STACK_TOP;
            m.cpu.state.rflags = fin;
            m.cpu.state.rip = CODE;
            m.cpu.step(&mut m.bus);
            assert_eq!(m.cpu.state.rip, CODE + code.len() as u64, "{op} faulted");
            let (hr, hf) = if op == "shld" || op == "shrd" {
                let f = if op == "shld" { h_shld } else { h_shrd };
                f(size, a, b, d, fin)
            } else {
                host(size, a, b, fin)
            };
            let dm = defined(op, size, b);
            let ctx = format!("{op} size {size} a={a:#x} b={b:#x} d={d:#x} fin={fin:#x}");
            // SHLD/SHRD with counts beyond the operand size are undefined.
            if !((op == "shld" || op == "shrd")
                && (b & if size == 8 { 63 } else { 31 }) > size as u64 * 8)
            {
                assert_eq!(m.cpu.state.gpr[0], hr, "result of {ctx}");
            }
            assert_eq!(
                m.cpu.state.rflags & dm,
                hf & dm,
                "flags of {ctx}: got {:#x} host {:#x}",
                m.cpu.state.rflags,
                hf
            );
            if op == "xadd" {
                assert_eq!(
                    m.cpu.state.gpr[1] & flags_mask(size),
                    a & flags_mask(size),
                    "xadd source of {ctx}"
                );
            }
        }
    }
}

fn flags_mask(size: u32) -> u64 {
    super::super::flags::mask(size)
}

const ALL: &[u32] = &[1, 2, 4, 8];
const WIDE: &[u32] = &[2, 4, 8];

#[test]
fn add_adc_sub_sbb_cmp() {
    check("add", h_add, ALL);
    check("adc", h_adc, ALL);
    check("sub", h_sub, ALL);
    check("sbb", h_sbb, ALL);
    check("cmp", h_cmp, ALL);
}

#[test]
fn logic_ops() {
    check("and", h_and, ALL);
    check("or", h_or, ALL);
    check("xor", h_xor, ALL);
    check("test", h_test, ALL);
    check("not", h_not, ALL);
}

#[test]
fn inc_dec_neg_xadd() {
    check("inc", h_inc, ALL);
    check("dec", h_dec, ALL);
    check("neg", h_neg, ALL);
    check("xadd", h_xadd, ALL);
}

#[test]
fn shifts_and_rotates() {
    for (op, f) in [
        ("shl", h_shl as HostFn),
        ("shr", h_shr),
        ("sar", h_sar),
        ("rol", h_rol),
        ("ror", h_ror),
        ("rcl", h_rcl),
        ("rcr", h_rcr),
    ] {
        check(op, f, ALL);
    }
    check("shld", h_add, WIDE);
    check("shrd", h_add, WIDE);
}

#[test]
fn bit_ops() {
    for (op, f) in [
        ("bt", h_bt as HostFn),
        ("bts", h_bts),
        ("btr", h_btr),
        ("btc", h_btc),
        ("bsf", h_bsf),
        ("bsr", h_bsr),
        ("popcnt", h_popcnt),
        ("lzcnt", h_lzcnt),
        ("imul2", h_imul2),
    ] {
        check(op, f, WIDE);
    }
}
