//! SSE, SSE2, SSE3, SSSE3, SSE4.1, SSE4.2 (legacy encodings) and MMX:
//! dispatch, the #UD/#NM/#MF checks, register and operand access shared by
//! the family files:
//!
//! * [`super::sse_mov`]: moves, loads/stores, inserts/extracts, MXCSR.
//! * [`super::sse_int`]: packed integer arithmetic, compares, logic, shifts.
//! * [`super::sse_shuffle`]: packs, unpacks, shuffles, blends, PMOVSX/ZX.
//! * [`super::sse_float`]: packed/scalar float arithmetic and compares.
//! * [`super::sse_cvt`]: conversions and rounding.
//! * [`super::sse_str`]: PCMPxSTRx and CRC32.
//!
//! Vectors are handled as `[u8; 16]` little-endian byte arrays ([`V`]); an
//! MMX operand is the low 8 bytes of one, so the integer and shuffle code
//! serves both register files with a vector length of 8 or 16 bytes.

use iced_x86::{Instruction, Mnemonic as M, OpKind, Register};

use super::softfloat::{Ctx, Rc};
use super::{sse_cvt, sse_float, sse_int, sse_mov, sse_shuffle, sse_str, x87, xsave, Cpu};
use crate::bus::CpuBus;
use crate::consts::{cr0, cr4};
use crate::exception::{Exception, XResult};
use crate::mmu::seg::SegAccess;

/// A 128-bit vector (or a 64-bit MMX value in the low half).
pub(super) type V = [u8; 16];

/// MXCSR bits.
pub(super) mod mx {
    pub const FLAGS: u32 = 0x3f;
    pub const DAZ: u32 = 1 << 6;
    pub const MASK_SHIFT: u32 = 7;
    pub const UM: u32 = 1 << 11;
    pub const RC_SHIFT: u32 = 13;
    pub const FTZ: u32 = 1 << 15;
    /// Writable bits (MXCSR_MASK as FXSAVE reports it: DAZ supported).
    pub const WRITABLE: u32 = 0xffff;
}

/// Executes an SSE/MMX instruction (the dispatcher routes these mnemonics here).
pub fn exec(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let m = i.mnemonic();
    match m {
        // Instructions on general registers only: no SSE state checks.
        M::Movnti => return sse_mov::movnti(cpu, bus, i),
        M::Crc32 => return sse_str::crc32(cpu, bus, i),
        M::Emms => {
            x87::check_mmx_raw(cpu)?;
            cpu.state.fpu.ftw = 0;
            return Ok(());
        }
        _ => {}
    }
    let (has_mm, has_xmm) = reg_kinds(i);
    if has_xmm || !has_mm {
        check_sse(cpu)?;
    }
    if has_mm {
        x87::check_mmx_raw(cpu)?;
        // A faulting MMX instruction leaves the x87 TOP/tags as they were.
        let f = &cpu.state.fpu;
        let saved = (f.fsw, f.ftw, f.st);
        x87::enter_mmx(cpu);
        let r = route(cpu, bus, i, m);
        if r.is_err() {
            let f = &mut cpu.state.fpu;
            (f.fsw, f.ftw, f.st) = saved;
        }
        return r;
    }
    route(cpu, bus, i, m)
}

#[rustfmt::skip]
fn route(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction, m: M) -> XResult<()> {
    match m {
        // Moves.
        M::Movaps | M::Movapd | M::Movdqa | M::Movntps | M::Movntpd | M::Movntdq | M::Movntdqa => {
            sse_mov::mov128(cpu, bus, i, true)
        }
        M::Movups | M::Movupd | M::Movdqu | M::Lddqu => sse_mov::mov128(cpu, bus, i, false),
        M::Movss => sse_mov::movs(cpu, bus, i, 4),
        M::Movsd => sse_mov::movs(cpu, bus, i, 8),
        M::Movd | M::Movq | M::Movntq | M::Movq2dq | M::Movdq2q => sse_mov::movdq(cpu, bus, i),
        M::Movlps | M::Movlpd | M::Movhps | M::Movhpd | M::Movhlps | M::Movlhps => {
            sse_mov::movlh(cpu, bus, i)
        }
        M::Movmskps | M::Movmskpd | M::Pmovmskb => sse_mov::movmsk(cpu, i),
        M::Movddup | M::Movsldup | M::Movshdup => sse_mov::dup(cpu, bus, i),
        M::Maskmovdqu | M::Maskmovq => sse_mov::maskmov(cpu, bus, i),
        M::Pextrb | M::Pextrw | M::Pextrd | M::Pextrq | M::Extractps => sse_mov::pextr(cpu, bus, i),
        M::Pinsrb | M::Pinsrw | M::Pinsrd | M::Pinsrq => sse_mov::pinsr(cpu, bus, i),
        M::Insertps => sse_mov::insertps(cpu, bus, i),
        M::Ldmxcsr => sse_mov::ldmxcsr(cpu, bus, i),
        M::Stmxcsr => sse_mov::stmxcsr(cpu, bus, i),

        // Packed integer.
        M::Paddb | M::Paddw | M::Paddd | M::Paddq | M::Psubb | M::Psubw | M::Psubd | M::Psubq | M::Paddsb
        | M::Paddsw | M::Paddusb | M::Paddusw | M::Psubsb | M::Psubsw | M::Psubusb | M::Psubusw | M::Pmullw
        | M::Pmulhw | M::Pmulhuw | M::Pmulld | M::Pmuludq | M::Pmuldq | M::Pmulhrsw | M::Pmaddwd
        | M::Pmaddubsw | M::Pavgb | M::Pavgw | M::Pminub | M::Pminsb | M::Pminuw | M::Pminsw | M::Pminud
        | M::Pminsd | M::Pmaxub | M::Pmaxsb | M::Pmaxuw | M::Pmaxsw | M::Pmaxud | M::Pmaxsd | M::Pcmpeqb
        | M::Pcmpeqw | M::Pcmpeqd | M::Pcmpeqq | M::Pcmpgtb | M::Pcmpgtw | M::Pcmpgtd | M::Pcmpgtq | M::Pand
        | M::Pandn | M::Por | M::Pxor | M::Andps | M::Andpd | M::Andnps | M::Andnpd | M::Orps | M::Orpd
        | M::Xorps | M::Xorpd | M::Psignb | M::Psignw | M::Psignd | M::Pabsb | M::Pabsw | M::Pabsd | M::Phaddw
        | M::Phaddd | M::Phaddsw | M::Phsubw | M::Phsubd | M::Phsubsw | M::Psadbw | M::Phminposuw | M::Ptest
        | M::Mpsadbw => sse_int::exec(cpu, bus, i),
        M::Psllw | M::Pslld | M::Psllq | M::Psrlw | M::Psrld | M::Psrlq | M::Psraw | M::Psrad | M::Pslldq
        | M::Psrldq => sse_int::shift(cpu, bus, i),

        // Shuffles, packs, blends.
        M::Packsswb | M::Packssdw | M::Packuswb | M::Packusdw | M::Punpcklbw | M::Punpcklwd | M::Punpckldq
        | M::Punpcklqdq | M::Punpckhbw | M::Punpckhwd | M::Punpckhdq | M::Punpckhqdq | M::Unpcklps
        | M::Unpcklpd | M::Unpckhps | M::Unpckhpd | M::Pshufd | M::Pshufhw | M::Pshuflw | M::Pshufw
        | M::Pshufb | M::Palignr | M::Pblendw | M::Pblendvb | M::Blendps | M::Blendpd | M::Blendvps
        | M::Blendvpd | M::Shufps | M::Shufpd | M::Pmovsxbw | M::Pmovsxbd | M::Pmovsxbq | M::Pmovsxwd
        | M::Pmovsxwq | M::Pmovsxdq | M::Pmovzxbw | M::Pmovzxbd | M::Pmovzxbq | M::Pmovzxwd | M::Pmovzxwq
        | M::Pmovzxdq => sse_shuffle::exec(cpu, bus, i),

        // Floating point.
        M::Addps | M::Addpd | M::Addss | M::Addsd | M::Subps | M::Subpd | M::Subss | M::Subsd | M::Mulps
        | M::Mulpd | M::Mulss | M::Mulsd | M::Divps | M::Divpd | M::Divss | M::Divsd | M::Minps | M::Minpd
        | M::Minss | M::Minsd | M::Maxps | M::Maxpd | M::Maxss | M::Maxsd | M::Sqrtps | M::Sqrtpd | M::Sqrtss
        | M::Sqrtsd | M::Rcpps | M::Rcpss | M::Rsqrtps | M::Rsqrtss | M::Cmpps | M::Cmppd | M::Cmpss
        | M::Cmpsd | M::Comiss | M::Comisd | M::Ucomiss | M::Ucomisd | M::Haddps | M::Haddpd | M::Hsubps
        | M::Hsubpd | M::Addsubps | M::Addsubpd | M::Dpps | M::Dppd => sse_float::exec(cpu, bus, i),

        // Conversions and rounding.
        M::Cvtsi2ss | M::Cvtsi2sd | M::Cvtss2si | M::Cvtsd2si | M::Cvttss2si | M::Cvttsd2si | M::Cvtss2sd
        | M::Cvtsd2ss | M::Cvtps2pd | M::Cvtpd2ps | M::Cvtdq2ps | M::Cvtps2dq | M::Cvttps2dq | M::Cvtdq2pd
        | M::Cvtpd2dq | M::Cvttpd2dq | M::Cvtpi2ps | M::Cvtpi2pd | M::Cvtps2pi | M::Cvttps2pi | M::Cvtpd2pi
        | M::Cvttpd2pi | M::Roundps | M::Roundpd | M::Roundss | M::Roundsd => sse_cvt::exec(cpu, bus, i),

        // SSE4.2 strings.
        M::Pcmpestri | M::Pcmpestri64 | M::Pcmpestrm | M::Pcmpestrm64 | M::Pcmpistri | M::Pcmpistrm =>
            sse_str::pcmpstr(cpu, bus, i),
        _ => Err(cpu.unimplemented(i)),
    }
}

/// Which of this module's families executes a mnemonic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    None,
    X87,
    Sse,
    Xsave,
}

/// Routing table for the dispatcher (a `match`, compiled to a lookup).
#[rustfmt::skip]
pub fn family(m: M) -> Family {
    match m {
        M::F2xm1 | M::Fabs | M::Fadd | M::Faddp | M::Fbld | M::Fbstp | M::Fchs | M::Fclex | M::Fcmovb
        | M::Fcmovbe | M::Fcmove | M::Fcmovnb | M::Fcmovnbe | M::Fcmovne | M::Fcmovnu | M::Fcmovu | M::Fcom
        | M::Fcomi | M::Fcomip | M::Fcomp | M::Fcompp | M::Fcos | M::Fdecstp | M::Fdisi | M::Fdiv | M::Fdivp
        | M::Fdivr | M::Fdivrp | M::Feni | M::Ffree | M::Ffreep | M::Fiadd | M::Ficom | M::Ficomp | M::Fidiv
        | M::Fidivr | M::Fild | M::Fimul | M::Fincstp | M::Finit | M::Fist | M::Fistp | M::Fisttp | M::Fisub
        | M::Fisubr | M::Fld | M::Fld1 | M::Fldcw | M::Fldenv | M::Fldl2e | M::Fldl2t | M::Fldlg2 | M::Fldln2
        | M::Fldpi | M::Fldz | M::Fmul | M::Fmulp | M::Fnclex | M::Fndisi | M::Fneni | M::Fninit | M::Fnop
        | M::Fnsave | M::Fnsetpm | M::Fnstcw | M::Fnstenv | M::Fnstsw | M::Fpatan | M::Fprem | M::Fprem1
        | M::Fptan | M::Frndint | M::Frstor | M::Frstpm | M::Fsave | M::Fscale | M::Fsetpm | M::Fsin
        | M::Fsincos | M::Fsqrt | M::Fst | M::Fstcw | M::Fstenv | M::Fstp | M::Fstpnce | M::Fstsw | M::Fsub
        | M::Fsubp | M::Fsubr | M::Fsubrp | M::Ftst | M::Fucom | M::Fucomi | M::Fucomip | M::Fucomp
        | M::Fucompp | M::Fxam | M::Fxch | M::Fxrstor | M::Fxrstor64 | M::Fxsave | M::Fxsave64 | M::Fxtract
        | M::Fyl2x | M::Fyl2xp1 | M::Wait => Family::X87,
        M::Movnti | M::Crc32 | M::Emms | M::Movaps | M::Movapd | M::Movdqa | M::Movntps | M::Movntpd
        | M::Movntdq | M::Movntdqa | M::Movups | M::Movupd | M::Movdqu | M::Lddqu | M::Movss | M::Movsd
        | M::Movd | M::Movq | M::Movntq | M::Movq2dq | M::Movdq2q | M::Movlps | M::Movlpd | M::Movhps
        | M::Movhpd | M::Movhlps | M::Movlhps | M::Movmskps | M::Movmskpd | M::Pmovmskb | M::Movddup
        | M::Movsldup | M::Movshdup | M::Maskmovdqu | M::Maskmovq | M::Pextrb | M::Pextrw | M::Pextrd
        | M::Pextrq | M::Extractps | M::Pinsrb | M::Pinsrw | M::Pinsrd | M::Pinsrq | M::Insertps | M::Ldmxcsr
        | M::Stmxcsr | M::Paddb | M::Paddw | M::Paddd | M::Paddq | M::Psubb | M::Psubw | M::Psubd | M::Psubq
        | M::Paddsb | M::Paddsw | M::Paddusb | M::Paddusw | M::Psubsb | M::Psubsw | M::Psubusb | M::Psubusw
        | M::Pmullw | M::Pmulhw | M::Pmulhuw | M::Pmulld | M::Pmuludq | M::Pmuldq | M::Pmulhrsw | M::Pmaddwd
        | M::Pmaddubsw | M::Pavgb | M::Pavgw | M::Pminub | M::Pminsb | M::Pminuw | M::Pminsw | M::Pminud
        | M::Pminsd | M::Pmaxub | M::Pmaxsb | M::Pmaxuw | M::Pmaxsw | M::Pmaxud | M::Pmaxsd | M::Pcmpeqb
        | M::Pcmpeqw | M::Pcmpeqd | M::Pcmpeqq | M::Pcmpgtb | M::Pcmpgtw | M::Pcmpgtd | M::Pcmpgtq | M::Pand
        | M::Pandn | M::Por | M::Pxor | M::Andps | M::Andpd | M::Andnps | M::Andnpd | M::Orps | M::Orpd
        | M::Xorps | M::Xorpd | M::Psignb | M::Psignw | M::Psignd | M::Pabsb | M::Pabsw | M::Pabsd | M::Phaddw
        | M::Phaddd | M::Phaddsw | M::Phsubw | M::Phsubd | M::Phsubsw | M::Psadbw | M::Phminposuw | M::Ptest
        | M::Mpsadbw | M::Psllw | M::Pslld | M::Psllq | M::Psrlw | M::Psrld | M::Psrlq | M::Psraw | M::Psrad
        | M::Pslldq | M::Psrldq | M::Packsswb | M::Packssdw | M::Packuswb | M::Packusdw | M::Punpcklbw
        | M::Punpcklwd | M::Punpckldq | M::Punpcklqdq | M::Punpckhbw | M::Punpckhwd | M::Punpckhdq
        | M::Punpckhqdq | M::Unpcklps | M::Unpcklpd | M::Unpckhps | M::Unpckhpd | M::Pshufd | M::Pshufhw
        | M::Pshuflw | M::Pshufw | M::Pshufb | M::Palignr | M::Pblendw | M::Pblendvb | M::Blendps | M::Blendpd
        | M::Blendvps | M::Blendvpd | M::Shufps | M::Shufpd | M::Pmovsxbw | M::Pmovsxbd | M::Pmovsxbq
        | M::Pmovsxwd | M::Pmovsxwq | M::Pmovsxdq | M::Pmovzxbw | M::Pmovzxbd | M::Pmovzxbq | M::Pmovzxwd
        | M::Pmovzxwq | M::Pmovzxdq | M::Addps | M::Addpd | M::Addss | M::Addsd | M::Subps | M::Subpd
        | M::Subss | M::Subsd | M::Mulps | M::Mulpd | M::Mulss | M::Mulsd | M::Divps | M::Divpd | M::Divss
        | M::Divsd | M::Minps | M::Minpd | M::Minss | M::Minsd | M::Maxps | M::Maxpd | M::Maxss | M::Maxsd
        | M::Sqrtps | M::Sqrtpd | M::Sqrtss | M::Sqrtsd | M::Rcpps | M::Rcpss | M::Rsqrtps | M::Rsqrtss
        | M::Cmpps | M::Cmppd | M::Cmpss | M::Cmpsd | M::Comiss | M::Comisd | M::Ucomiss | M::Ucomisd
        | M::Haddps | M::Haddpd | M::Hsubps | M::Hsubpd | M::Addsubps | M::Addsubpd | M::Dpps | M::Dppd
        | M::Cvtsi2ss | M::Cvtsi2sd | M::Cvtss2si | M::Cvtsd2si | M::Cvttss2si | M::Cvttsd2si | M::Cvtss2sd
        | M::Cvtsd2ss | M::Cvtps2pd | M::Cvtpd2ps | M::Cvtdq2ps | M::Cvtps2dq | M::Cvttps2dq | M::Cvtdq2pd
        | M::Cvtpd2dq | M::Cvttpd2dq | M::Cvtpi2ps | M::Cvtpi2pd | M::Cvtps2pi | M::Cvttps2pi | M::Cvtpd2pi
        | M::Cvttpd2pi | M::Roundps | M::Roundpd | M::Roundss | M::Roundsd | M::Pcmpestri | M::Pcmpestri64
        | M::Pcmpestrm | M::Pcmpestrm64 | M::Pcmpistri | M::Pcmpistrm => Family::Sse,
        M::Xsave | M::Xsave64 | M::Xsaveopt | M::Xsaveopt64 | M::Xsavec | M::Xsavec64 | M::Xrstor
        | M::Xrstor64 | M::Xgetbv | M::Xsetbv => Family::Xsave,
        _ => Family::None,
    }
}

/// Executes an x87, SSE/MMX or XSAVE-family instruction.
pub fn dispatch(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    match family(i.mnemonic()) {
        Family::X87 => x87::exec(cpu, bus, i),
        Family::Sse => exec(cpu, bus, i),
        Family::Xsave => xsave::exec(cpu, bus, i),
        Family::None => Err(cpu.unimplemented(i)),
    }
}

/// (uses an MMX register, uses an XMM register).
fn reg_kinds(i: &Instruction) -> (bool, bool) {
    let mut mm = false;
    let mut xmm = false;
    for k in 0..i.op_count() {
        if i.op_kind(k) == OpKind::Register {
            let r = i.op_register(k);
            mm |= mm_n(r).is_some();
            xmm |= xmm_n(r).is_some();
        }
    }
    (mm, xmm)
}

/// #UD when CR0.EM=1 or CR4.OSFXSR=0, #NM when CR0.TS=1 (SDM vol. 2, 2.5).
pub(super) fn check_sse(cpu: &Cpu) -> XResult<()> {
    let c0 = cpu.state.cr0;
    if c0 & cr0::EM != 0 || cpu.state.cr4 & cr4::OSFXSR == 0 {
        return Err(Exception::ud());
    }
    if c0 & cr0::TS != 0 {
        return Err(Exception::nm());
    }
    Ok(())
}

/// XMM register number of an iced register.
#[inline]
pub(super) fn xmm_n(r: Register) -> Option<usize> {
    let d = (r as u32).wrapping_sub(Register::XMM0 as u32);
    (d < 16).then_some(d as usize)
}

/// MMX register number of an iced register.
#[inline]
pub(super) fn mm_n(r: Register) -> Option<usize> {
    let d = (r as u32).wrapping_sub(Register::MM0 as u32);
    (d < 8).then_some(d as usize)
}

impl Cpu {
    #[inline]
    pub(crate) fn xmm(&self, n: usize) -> V {
        self.state.fpu.xmm[n & 15]
    }
    #[inline]
    pub(crate) fn set_xmm(&mut self, n: usize, v: V) {
        self.state.fpu.xmm[n & 15] = v;
    }
    /// MMX register `n` (valid after [`x87::enter_mmx`], which makes TOP 0
    /// so that ST(n) is physical register n).
    #[inline]
    pub(crate) fn mm(&self, n: usize) -> u64 {
        let s = &self.state.fpu.st[n & 7];
        let mut b = [0u8; 8];
        b.copy_from_slice(&s[..8]);
        u64::from_le_bytes(b)
    }
    /// Writes MMX register `n`: the exponent field becomes all ones.
    #[inline]
    pub(crate) fn set_mm(&mut self, n: usize, v: u64) {
        let s = &mut self.state.fpu.st[n & 7];
        s[..8].copy_from_slice(&v.to_le_bytes());
        s[8] = 0xff;
        s[9] = 0xff;
    }
}

/// Vector length in bytes of an instruction's destination (8 for MMX).
#[inline]
pub(super) fn vlen(i: &Instruction) -> usize {
    if i.op0_kind() == OpKind::Register && mm_n(i.op0_register()).is_some() {
        8
    } else {
        16
    }
}

/// Reads `size` bytes of the memory operand into a zero-padded vector;
/// `align`: 16-byte operands must be 16-byte aligned (#GP(0)).
pub(super) fn read_mem(
    cpu: &mut Cpu,
    bus: &mut dyn CpuBus,
    i: &Instruction,
    size: usize,
    align: bool,
) -> XResult<V> {
    let size = size.clamp(1, 16);
    let lin = cpu.mem_lin(i, size as u32, SegAccess::Read)?;
    if align && size == 16 && lin & 15 != 0 {
        return Err(Exception::gp0());
    }
    let user = cpu.user;
    let mut v = [0u8; 16];
    match size {
        16 => v = cpu.mmu.read_u128(&cpu.state, bus, lin, user)?.to_le_bytes(),
        8 => v[..8].copy_from_slice(&cpu.mmu.read_u64(&cpu.state, bus, lin, user)?.to_le_bytes()),
        4 => v[..4].copy_from_slice(&cpu.mmu.read_u32(&cpu.state, bus, lin, user)?.to_le_bytes()),
        2 => v[..2].copy_from_slice(&cpu.mmu.read_u16(&cpu.state, bus, lin, user)?.to_le_bytes()),
        1 => v[0] = cpu.mmu.read_u8(&cpu.state, bus, lin, user)?,
        n => cpu.mmu.read(&cpu.state, bus, lin, &mut v[..n], user)?,
    }
    Ok(v)
}

/// Writes the low `size` bytes of `v` to the memory operand.
pub(super) fn write_mem(
    cpu: &mut Cpu,
    bus: &mut dyn CpuBus,
    i: &Instruction,
    v: &V,
    size: usize,
    align: bool,
) -> XResult<()> {
    let size = size.clamp(1, 16);
    let lin = cpu.mem_lin(i, size as u32, SegAccess::Write)?;
    if align && size == 16 && lin & 15 != 0 {
        return Err(Exception::gp0());
    }
    let user = cpu.user;
    match size {
        16 => cpu
            .mmu
            .write_u128(&cpu.state, bus, lin, u128::from_le_bytes(*v), user),
        8 => cpu.mmu.write_u64(&cpu.state, bus, lin, lane(v, 8, 0), user),
        4 => cpu
            .mmu
            .write_u32(&cpu.state, bus, lin, lane(v, 4, 0) as u32, user),
        2 => cpu
            .mmu
            .write_u16(&cpu.state, bus, lin, lane(v, 2, 0) as u16, user),
        1 => cpu.mmu.write_u8(&cpu.state, bus, lin, v[0], user),
        n => cpu.mmu.write(&cpu.state, bus, lin, &v[..n], user),
    }
}

/// Reads operand `n`: an XMM register, an MMX register (low half), a
/// general register (low bytes) or memory of the instruction's memory size.
pub(super) fn rd(
    cpu: &mut Cpu,
    bus: &mut dyn CpuBus,
    i: &Instruction,
    n: u32,
    align: bool,
) -> XResult<V> {
    match i.op_kind(n) {
        OpKind::Register => Ok(reg_v(cpu, i.op_register(n))),
        OpKind::Memory => {
            let size = i.memory_size().size();
            read_mem(cpu, bus, i, size, align)
        }
        _ => Err(Exception::ud()),
    }
}

/// A register operand as a vector.
pub(super) fn reg_v(cpu: &Cpu, r: Register) -> V {
    if let Some(x) = xmm_n(r) {
        return cpu.xmm(x);
    }
    let mut v = [0u8; 16];
    let q = match mm_n(r) {
        Some(m) => cpu.mm(m),
        None => cpu.reg(r),
    };
    v[..8].copy_from_slice(&q.to_le_bytes());
    v
}

/// Writes a register destination: XMM (all 16 bytes) or MMX (low 8).
pub(super) fn set_reg_v(cpu: &mut Cpu, r: Register, v: V) {
    if let Some(x) = xmm_n(r) {
        cpu.set_xmm(x, v);
    } else if let Some(m) = mm_n(r) {
        cpu.set_mm(m, lane(&v, 8, 0));
    }
}

/// Writes operand 0 (register or memory of the instruction's memory size).
pub(super) fn wr(
    cpu: &mut Cpu,
    bus: &mut dyn CpuBus,
    i: &Instruction,
    v: V,
    align: bool,
) -> XResult<()> {
    match i.op0_kind() {
        OpKind::Register => {
            set_reg_v(cpu, i.op0_register(), v);
            Ok(())
        }
        _ => {
            let size = i.memory_size().size();
            write_mem(cpu, bus, i, &v, size, align)
        }
    }
}

/// Lane `k` of width `w` bytes (1, 2, 4, 8), zero-extended.
#[inline(always)]
pub(super) fn lane(v: &V, w: usize, k: usize) -> u64 {
    let mut x = 0u64;
    for b in 0..w {
        x |= (v[(k * w + b) & 15] as u64) << (8 * b);
    }
    x
}

#[inline(always)]
pub(super) fn set_lane(v: &mut V, w: usize, k: usize, x: u64) {
    for b in 0..w {
        v[(k * w + b) & 15] = (x >> (8 * b)) as u8;
    }
}

/// Sign-extends a `w`-byte lane value.
#[inline(always)]
pub(super) fn sx(x: u64, w: usize) -> i64 {
    let sh = 64 - 8 * w as u32;
    ((x << sh) as i64) >> sh
}

// ---------------------------------------------------------------------------
// MXCSR environment for the float families

/// A softfloat context from MXCSR.
pub(super) fn mx_ctx(cpu: &Cpu) -> Ctx {
    let m = cpu.state.fpu.mxcsr;
    let mut c = Ctx::new(Rc::from_bits(m >> mx::RC_SHIFT));
    c.daz = m & mx::DAZ != 0;
    c.ue_masked = m & mx::UM != 0;
    c.ftz = m & mx::FTZ != 0 && c.ue_masked;
    c
}

/// Accumulates the flags of `ctx` into MXCSR; an unmasked exception raises
/// #XM (CR4.OSXMMEXCPT=1) or #UD, and the destination must not be written.
pub(super) fn mx_finish(cpu: &mut Cpu, ctx: &Ctx) -> XResult<()> {
    let f = ctx.flags & mx::FLAGS;
    let m = &mut cpu.state.fpu.mxcsr;
    *m |= f;
    let masks = (*m >> mx::MASK_SHIFT) & mx::FLAGS;
    if f & !masks != 0 {
        return Err(if cpu.state.cr4 & cr4::OSXMMEXCPT != 0 {
            Exception::xm()
        } else {
            Exception::ud()
        });
    }
    Ok(())
}

#[cfg(test)]
#[path = "tests_sse.rs"]
pub(super) mod tests;
