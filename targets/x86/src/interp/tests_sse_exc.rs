//! SSE memory forms, alignment, exception and MXCSR behaviour, and a
//! never-panics fuzz of the SIMD/x87 opcode space.

use iced_x86::code_asm::*;

use super::super::super::tests::{CODE, M};
use super::{machine, stress, EmitFn, Rng};
use crate::consts::rflags::{CF, OF, SF, ZF};
use crate::consts::{cr0, cr4};
use crate::exception::vector;
use crate::interp::ExitReason;

fn rec_vector(m: &M) -> u64 {
    m.rec().0
}

#[test]
fn memory_forms_and_alignment() {
    let mut m = machine(|a| {
        a.mov(rbx, 0x8000u64).unwrap();
        a.movups(xmm1, xmmword_ptr(rbx + 1)).unwrap();
        a.movaps(xmmword_ptr(rbx + 0x20), xmm1).unwrap();
        a.movsd_2(xmm2, qword_ptr(rbx + 0x40)).unwrap();
        a.movss(dword_ptr(rbx + 0x50), xmm1).unwrap();
        a.movhps(xmm2, qword_ptr(rbx + 8)).unwrap();
        a.movlpd(qword_ptr(rbx + 0x60), xmm1).unwrap();
        a.paddd(xmm1, xmmword_ptr(rbx + 0x70)).unwrap();
        a.pmovzxbd(xmm3, dword_ptr(rbx + 0x3)).unwrap();
        a.pinsrw(xmm4, word_ptr(rbx + 0x5), 7).unwrap();
        a.pextrd(dword_ptr(rbx + 0x80), xmm1, 1).unwrap();
        a.addsd(xmm5, qword_ptr(rbx + 0x41)).unwrap();
        a.hlt().unwrap();
    });
    let data: Vec<u8> = (0u8..0x80).collect();
    m.bus.load(0x8000, &data);
    m.bus.load(0x8040, &1.5f64.to_le_bytes());
    m.bus.load(0x8070, &[1u8; 16]);
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(rec_vector(&m), u64::MAX);
    let x = &m.cpu.state.fpu.xmm;
    let mut want1 = [0u8; 16];
    for (k, b) in want1.iter_mut().enumerate() {
        *b = k as u8 + 1;
    }
    assert_eq!(&m.bus.ram[0x8020..0x8030], &want1);
    assert_eq!(&m.bus.ram[0x8050..0x8054], &want1[..4]);
    assert_eq!(&m.bus.ram[0x8060..0x8068], &want1[..8]);
    assert_eq!(
        u64::from_le_bytes(x[2][..8].try_into().unwrap()),
        1.5f64.to_bits()
    );
    assert_eq!(&x[2][8..], &[8, 9, 10, 11, 12, 13, 14, 15]);
    assert_eq!(x[1][0], 2); // paddd of 1s
    assert_eq!(&x[3][..8], &[3, 0, 0, 0, 4, 0, 0, 0]);
    assert_eq!(&x[4][14..], &[5, 6]);
    assert_eq!(&m.bus.ram[0x8080..0x8084], &[6, 7, 8, 9]);

    // Misaligned MOVAPS/PADDD m128 fault with #GP(0); MOVUPS does not.
    for f in [
        (|a: &mut CodeAssembler| a.movaps(xmm0, xmmword_ptr(0x8008))) as EmitFn,
        |a| a.movaps(xmmword_ptr(0x8004), xmm0),
        |a| a.paddd(xmm0, xmmword_ptr(0x8001)),
        |a| a.movdqa(xmm0, xmmword_ptr(0x8008)),
    ] {
        let mut m = machine(|a| f(a).unwrap());
        assert_eq!(m.run(), ExitReason::Halt);
        assert_eq!(m.rec().0, vector::GP as u64);
        assert_eq!(m.rec().1, 0);
        assert_eq!(m.rec().2, CODE);
    }
}

#[test]
fn sse_state_exceptions() {
    // CR4.OSFXSR = 0 → #UD; CR0.EM = 1 → #UD; CR0.TS = 1 → #NM.
    for (cr0_or, cr4_clear, v) in [
        (0, cr4::OSFXSR, vector::UD),
        (cr0::EM, 0, vector::UD),
        (cr0::TS, 0, vector::NM),
    ] {
        let mut m = machine(|a| a.addps(xmm0, xmm1).unwrap());
        m.cpu.state.cr0 |= cr0_or;
        m.cpu.state.cr4 &= !cr4_clear;
        assert_eq!(m.run(), ExitReason::Halt);
        assert_eq!(m.rec().0, v as u64);
    }
    // Unmasked invalid: #XM with the flag set and the destination kept;
    // with CR4.OSXMMEXCPT = 0 the same is a #UD.
    for (osx, v) in [(true, vector::XM), (false, vector::UD)] {
        let mut m = machine(|a| a.sqrtps(xmm1, xmm2).unwrap());
        if !osx {
            m.cpu.state.cr4 &= !cr4::OSXMMEXCPT;
        }
        m.cpu.state.fpu.mxcsr = 0x1f80 & !(1 << 7);
        m.cpu.state.fpu.xmm[2] = (-1.0f32)
            .to_bits()
            .to_le_bytes()
            .repeat(4)
            .try_into()
            .unwrap();
        m.cpu.state.fpu.xmm[1] = [0x11; 16];
        assert_eq!(m.run(), ExitReason::Halt);
        assert_eq!(m.rec().0, v as u64);
        assert_eq!(m.cpu.state.fpu.mxcsr & 0x3f, 1);
        assert_eq!(m.cpu.state.fpu.xmm[1], [0x11; 16]);
    }
    // LDMXCSR with a reserved bit → #GP(0); STMXCSR round-trips.
    let mut m = machine(|a| {
        a.mov(dword_ptr(0x9000), 0x1234_ffc0u32 as i32).unwrap();
        a.ldmxcsr(dword_ptr(0x9000)).unwrap();
    });
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(m.rec().0, vector::GP as u64);
    let mut m = machine(|a| {
        a.mov(dword_ptr(0x9000), 0xffc0).unwrap();
        a.ldmxcsr(dword_ptr(0x9000)).unwrap();
        a.stmxcsr(dword_ptr(0x9004)).unwrap();
    });
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(m.cpu.state.fpu.mxcsr, 0xffc0);
    assert_eq!(&m.bus.ram[0x9004..0x9008], &[0xc0, 0xff, 0, 0]);
}

#[test]
fn mxcsr_rounding_daz_ftz_and_flags() {
    // 1/3 in each rounding mode; denormal flushed by FTZ; DAZ input.
    let third = |rc: u32| -> (u32, u32) {
        let mut m = machine(|a| a.divss(xmm0, xmm1).unwrap());
        m.cpu.state.fpu.mxcsr = 0x1f80 | (rc << 13);
        m.cpu.state.fpu.xmm[0][..4].copy_from_slice(&1.0f32.to_bits().to_le_bytes());
        m.cpu.state.fpu.xmm[1][..4].copy_from_slice(&3.0f32.to_bits().to_le_bytes());
        assert_eq!(m.run(), ExitReason::Halt);
        let r = u32::from_le_bytes(m.cpu.state.fpu.xmm[0][..4].try_into().unwrap());
        (r, m.cpu.state.fpu.mxcsr & 0x3f)
    };
    assert_eq!(third(0), (0x3eaa_aaab, 0x20));
    assert_eq!(third(1), (0x3eaa_aaaa, 0x20));
    assert_eq!(third(2), (0x3eaa_aaab, 0x20));
    assert_eq!(third(3), (0x3eaa_aaaa, 0x20));
    let mut m = machine(|a| a.mulss(xmm0, xmm1).unwrap());
    m.cpu.state.fpu.mxcsr = 0x1f80 | 0x8000;
    m.cpu.state.fpu.xmm[0][..4].copy_from_slice(&1e-20f32.to_bits().to_le_bytes());
    m.cpu.state.fpu.xmm[1][..4].copy_from_slice(&1e-20f32.to_bits().to_le_bytes());
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(&m.cpu.state.fpu.xmm[0][..4], &[0; 4]);
    assert_eq!(m.cpu.state.fpu.mxcsr & 0x3f, 0x30);
    let mut m = machine(|a| a.addss(xmm0, xmm1).unwrap());
    m.cpu.state.fpu.mxcsr = 0x1f80 | 0x40;
    m.cpu.state.fpu.xmm[1][..4].copy_from_slice(&1u32.to_le_bytes());
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(&m.cpu.state.fpu.xmm[0][..4], &[0; 4]);
    assert_eq!(m.cpu.state.fpu.mxcsr & 0x3f, 0);
}

#[test]
fn maskmovdqu_stores_selected_bytes() {
    let mut m = machine(|a| {
        a.mov(rdi, 0xa000u64).unwrap();
        a.maskmovdqu(xmm1, xmm2).unwrap();
    });
    m.bus.load(0xa000, &[0xee; 16]);
    m.cpu.state.fpu.xmm[1] = core::array::from_fn(|k| k as u8);
    m.cpu.state.fpu.xmm[2] = core::array::from_fn(|k| if k % 3 == 0 { 0x80 } else { 0x7f });
    assert_eq!(m.run(), ExitReason::Halt);
    for k in 0..16 {
        let want = if k % 3 == 0 { k as u8 } else { 0xee };
        assert_eq!(m.bus.ram[0xa000 + k], want);
    }
}

#[test]
fn pcmpistri_finds_a_substring_like_glibc_strstr() {
    let mut m = machine(|a| a.pcmpistri(xmm1, xmm2, 0x0c).unwrap());
    m.cpu.state.fpu.xmm[1][..3].copy_from_slice(b"lo ");
    m.cpu.state.fpu.xmm[2][..11].copy_from_slice(b"hello world");
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(m.gpr(1), 3);
    assert_eq!(m.cpu.state.rflags & (CF | ZF | SF | OF), CF | ZF | SF);
}

#[test]
fn random_simd_and_x87_encodings_never_panic() {
    // Random SSE/SSSE3/SSE4/MMX/x87 encodings with random operands and
    // state, in 64-bit, 32-bit and real mode: they may only fault.
    let mut rng = Rng(0xdead_beef_1234_5678);
    for round in 0..60 * stress() {
        let mut code = Vec::new();
        while code.len() < 3000 {
            let r = rng.next();
            match r % 8 {
                0 => code.push(0x66),
                1 => code.push(0xf2),
                2 => code.push(0xf3),
                _ => {}
            }
            if r >> 8 & 1 != 0 && round % 3 == 0 {
                code.push(0x40 | (r >> 9) as u8 & 0xf);
            }
            match (r >> 16) % 5 {
                0 => code.extend_from_slice(&[0x0f, 0x38]),
                1 => code.extend_from_slice(&[0x0f, 0x3a]),
                2 => code.push(0xd8 | (r >> 20) as u8 & 7),
                _ => code.push(0x0f),
            }
            for _ in 0..6 {
                code.push(rng.next() as u8);
            }
        }
        let mut m = match round % 3 {
            0 => M::long64(&code),
            1 => M::prot32(&code),
            _ => M::real(&code),
        };
        if round % 3 == 0 {
            m.install_handlers64();
        }
        let st = &mut m.cpu.state;
        st.cr4 |= cr4::OSFXSR | cr4::OSXMMEXCPT | cr4::OSXSAVE;
        st.xcr0 = 3;
        st.fpu.mxcsr = 0x1f80 | (rng.next() as u32 & 0x7f);
        st.fpu.fcw = 0x37f & !(rng.next() as u16 & 0x3f);
        for x in st.fpu.xmm.iter_mut() {
            *x = rng.fvec();
        }
        for s in st.fpu.st.iter_mut() {
            *s = rng.ivec();
        }
        st.fpu.ftw = rng.next() as u8;
        let _ = m.cpu.run(&mut m.bus, 20_000);
    }
}
