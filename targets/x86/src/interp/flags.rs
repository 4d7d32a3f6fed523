//! Eager RFLAGS computation helpers and condition codes.

use crate::consts::rflags::{AF, CF, OF, PF, SF, ZF};

/// The six arithmetic flags.
pub const ARITH: u64 = CF | PF | AF | ZF | SF | OF;

/// Value mask of an operand of `size` bytes.
#[inline(always)]
pub fn mask(size: u32) -> u64 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

/// Sign bit of an operand of `size` bytes.
#[inline(always)]
pub fn sign(size: u32) -> u64 {
    1u64 << (size * 8 - 1)
}

/// Sign-extends the low `size` bytes of `v`.
#[inline(always)]
pub fn sext(v: u64, size: u32) -> u64 {
    let sh = 64 - size * 8;
    (((v << sh) as i64) >> sh) as u64
}

/// PF of every byte value.
static PARITY: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if (i as u8).count_ones() & 1 == 0 {
            PF as u8
        } else {
            0
        };
        i += 1;
    }
    t
};

#[inline(always)]
pub fn parity(r: u64) -> u64 {
    PARITY[(r & 0xff) as usize] as u64
}

/// ZF, SF, PF of a result.
#[inline(always)]
pub fn szp(r: u64, size: u32) -> u64 {
    let r = r & mask(size);
    let mut f = parity(r);
    if r == 0 {
        f |= ZF;
    }
    if r & sign(size) != 0 {
        f |= SF;
    }
    f
}

/// `a + b + cin`: (result, flags).
#[inline(always)]
pub fn add(a: u64, b: u64, cin: u64, size: u32) -> (u64, u64) {
    let m = mask(size);
    let (a, b) = (a & m, b & m);
    let (r, carry) = if size == 8 {
        let (s1, c1) = a.overflowing_add(b);
        let (s2, c2) = s1.overflowing_add(cin);
        (s2, c1 | c2)
    } else {
        let full = a + b + cin;
        (full & m, full >> (size * 8) != 0)
    };
    let mut f = szp(r, size) | ((a ^ b ^ r) & AF);
    if carry {
        f |= CF;
    }
    if (a ^ r) & (b ^ r) & sign(size) != 0 {
        f |= OF;
    }
    (r, f)
}

/// `a - b - bin`: (result, flags).
#[inline(always)]
pub fn sub(a: u64, b: u64, bin: u64, size: u32) -> (u64, u64) {
    let m = mask(size);
    let (a, b) = (a & m, b & m);
    let r = a.wrapping_sub(b).wrapping_sub(bin) & m;
    let mut f = szp(r, size) | ((a ^ b ^ r) & AF);
    if a < b || (bin != 0 && a == b) {
        f |= CF;
    }
    if (a ^ b) & (a ^ r) & sign(size) != 0 {
        f |= OF;
    }
    (r, f)
}

/// Flags of a logical operation (CF = OF = 0, AF cleared).
#[inline(always)]
pub fn logic(r: u64, size: u32) -> u64 {
    szp(r, size)
}

/// Evaluates condition code `cc` (0 = O .. 15 = G, the low nibble of Jcc).
#[inline(always)]
pub fn cond(rf: u64, cc: u8) -> bool {
    let r = match cc >> 1 {
        0 => rf & OF != 0,
        1 => rf & CF != 0,
        2 => rf & ZF != 0,
        3 => rf & (CF | ZF) != 0,
        4 => rf & SF != 0,
        5 => rf & PF != 0,
        6 => (rf & SF != 0) != (rf & OF != 0),
        _ => rf & ZF != 0 || ((rf & SF != 0) != (rf & OF != 0)),
    };
    r ^ (cc & 1 != 0)
}

/// Condition nibble of an instruction with a condition code.
#[inline(always)]
pub fn cc_of(i: &iced_x86::Instruction) -> u8 {
    (i.condition_code() as u8).wrapping_sub(1) & 0xf
}
