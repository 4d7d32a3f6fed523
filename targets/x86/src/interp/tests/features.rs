//! CPU-model features: what CPUID reports per model, enable bits refused
//! when the model lacks them, SMAP's slow TLB entries, PKRU in XSAVE.

use iced_x86::code_asm::*;

use super::*;
use crate::cpu_model::{CpuSpec, Feature, FeatureSet, Model};
use crate::exception::{pf_err, vector};
use crate::interp::CpuConfig;
use crate::mmu::tlb::TAG_SLOW;
use crate::state::gpr::*;

/// A user page (U/S at every level) mapped outside the supervisor-only
/// identity map of [`M::long64`].
const USER_VA: u64 = (1 << 39) + 0x7_5000;
const USER_PA: u64 = 0x0030_0000;

fn run64_model(features: FeatureSet, f: impl FnOnce(&mut CodeAssembler)) -> M {
    let code = asm(64, CODE, f);
    let mut m = M::long64(&code);
    m.cpu.config.features = features;
    m.install_handlers64();
    m.map4k(USER_VA, USER_PA, 7);
    assert_eq!(m.run(), ExitReason::Halt);
    m
}

fn config(spec: &str) -> CpuConfig {
    CpuConfig {
        features: CpuSpec::parse(spec).unwrap().for_dbt().unwrap(),
        ..CpuConfig::default()
    }
}

#[test]
fn cpuid_reports_the_model() {
    let mut st = CpuState::reset();
    let hx86 = CpuConfig::default();
    let max = config("max");
    let q = config("qemu64,+umip");
    // The default model is what hx86 always reported.
    assert_eq!(
        crate::interp::cpuid(&hx86, &st, 7, 0),
        [0, (1 << 3) | (1 << 8), 0, 0]
    );
    assert_eq!(crate::interp::cpuid(&hx86, &st, 0xd, 0), [3, 576, 576, 0]);
    let l7 = crate::interp::cpuid(&max, &st, 7, 0);
    assert_eq!(
        l7[1] & ((1 << 7) | (1 << 20)),
        (1 << 7) | (1 << 20),
        "SMEP SMAP"
    );
    assert_eq!(l7[2], (1 << 2) | (1 << 3) | (1 << 31), "UMIP PKU PKS");
    st.cr4 |= cr4::PKE;
    assert_ne!(
        crate::interp::cpuid(&max, &st, 7, 0)[2] & (1 << 4),
        0,
        "OSPKE"
    );
    // XSAVE with PKRU: component 9 at 0xA80, 8 bytes.
    st.xcr0 = 0x203;
    assert_eq!(
        crate::interp::cpuid(&max, &st, 0xd, 0),
        [0x203, 2696, 2696, 0]
    );
    assert_eq!(crate::interp::cpuid(&max, &st, 0xd, 1), [3, 584, 0, 0]);
    assert_eq!(crate::interp::cpuid(&max, &st, 0xd, 9), [8, 0xa80, 0, 0]);
    st.cr4 = 0;
    // qemu64: no SSSE3/SSE4/POPCNT/XSAVE/BMI; UMIP as asked.
    let l1 = crate::interp::cpuid(&q, &st, 1, 0);
    assert_eq!(l1[2] & ((1 << 9) | (1 << 19) | (1 << 23) | (1 << 26)), 0);
    assert_eq!(
        l1[2] & ((1 << 0) | (1 << 13)),
        (1 << 0) | (1 << 13),
        "SSE3 CX16"
    );
    assert_eq!(crate::interp::cpuid(&q, &st, 7, 0), [0, 0, 1 << 2, 0]);
    assert_eq!(crate::interp::cpuid(&q, &st, 0xd, 0), [0; 4]);
}

#[test]
fn enable_bits_need_the_feature() {
    // The default model: CR4.SMAP is reserved, STAC is #UD.
    let m = run64_model(Model::Hx86.dbt_features().unwrap(), |a| {
        a.mov(rax, cr4).unwrap();
        a.or(rax, cr4::SMAP as i32).unwrap();
        a.mov(cr4, rax).unwrap();
        a.hlt().unwrap();
    });
    assert_eq!(m.rec().0, vector::GP as u64);
    let m = run64_model(Model::Hx86.dbt_features().unwrap(), |a| {
        a.stac().unwrap();
        a.hlt().unwrap();
    });
    assert_eq!(m.rec().0, vector::UD as u64);
    // RDPKRU without CR4.PKE is #UD even on max.
    let m = run64_model(FeatureSet::all(), |a| {
        a.xor(ecx, ecx).unwrap();
        a.rdpkru().unwrap();
        a.hlt().unwrap();
    });
    assert_eq!(m.rec().0, vector::UD as u64);
    // XCR0.PKRU needs PKU.
    let m = run64_model(FeatureSet::all().without(Feature::Pku), |a| {
        a.mov(rax, cr4).unwrap();
        a.or(rax, cr4::OSXSAVE as i32).unwrap();
        a.mov(cr4, rax).unwrap();
        a.xor(ecx, ecx).unwrap();
        a.xor(edx, edx).unwrap();
        a.mov(eax, 0x203).unwrap();
        a.xsetbv().unwrap();
        a.hlt().unwrap();
    });
    assert_eq!(m.rec().0, vector::GP as u64);
}

#[test]
fn smap_entries_stay_on_the_slow_path() {
    // A supervisor read with AC=1 fills a TLB entry; its data tags must be
    // slow so that the same read with AC=0 (JIT or interpreter fast path)
    // still faults.
    let m = run64_model(FeatureSet::all(), |a| {
        a.mov(rax, cr4).unwrap();
        a.or(rax, cr4::SMAP as i32).unwrap();
        a.mov(cr4, rax).unwrap();
        a.mov(rsi, USER_VA).unwrap();
        a.stac().unwrap();
        a.mov(qword_ptr(rsi), 0x42).unwrap();
        a.mov(rbx, qword_ptr(rsi)).unwrap();
        a.clac().unwrap();
        a.mov(rcx, qword_ptr(rsi)).unwrap();
        a.hlt().unwrap();
    });
    assert_eq!(m.gpr(RBX), 0x42);
    let (v, err, _) = m.rec();
    assert_eq!((v, err), (vector::PF as u64, pf_err::P as u64));
    assert_eq!(m.read_u64(REC + 40), USER_VA, "CR2");
    let e = &m.cpu.mmu.tlb[0][crate::mmu::tlb_index(USER_VA)];
    assert_eq!(e.tag_read & !0xfff, USER_VA);
    assert_ne!(e.tag_read & TAG_SLOW, 0);
    assert_ne!(e.tag_write & TAG_SLOW, 0);
}

#[test]
fn xsave_and_xrstor_carry_pkru() {
    const AREA: u64 = 0x40000;
    let m = run64_model(FeatureSet::all(), |a| {
        a.mov(rax, cr4).unwrap();
        a.or(rax, (cr4::OSXSAVE | cr4::PKE) as i32).unwrap();
        a.mov(cr4, rax).unwrap();
        a.xor(ecx, ecx).unwrap();
        a.xor(edx, edx).unwrap();
        a.mov(eax, 0x203).unwrap();
        a.xsetbv().unwrap();
        a.mov(eax, 0xcu32).unwrap();
        a.wrpkru().unwrap();
        a.mov(eax, 0x200u32).unwrap(); // RFBM: PKRU only
        a.xsave(ptr(AREA)).unwrap();
        a.xsavec(ptr(AREA + 0x1000)).unwrap();
        a.xor(eax, eax).unwrap();
        a.wrpkru().unwrap();
        a.mov(eax, 0x200u32).unwrap();
        a.xrstor(ptr(AREA)).unwrap();
        a.rdpkru().unwrap();
        a.mov(ebx, eax).unwrap();
        a.xor(eax, eax).unwrap();
        a.wrpkru().unwrap();
        a.mov(eax, 0x200u32).unwrap();
        a.xrstor(ptr(AREA + 0x1000)).unwrap();
        a.rdpkru().unwrap();
        a.hlt().unwrap();
    });
    assert_eq!(m.rec().0, u64::MAX, "no exception");
    assert_eq!(
        m.read_u64(AREA + 0xa80),
        0xc,
        "standard form: PKRU at 0xA80"
    );
    assert_eq!(m.read_u64(AREA + 512), 0x200, "XSTATE_BV");
    assert_eq!(
        m.read_u64(AREA + 0x1000 + 576),
        0xc,
        "compacted: after the header"
    );
    assert_eq!(
        m.read_u64(AREA + 0x1000 + 520),
        (1 << 63) | 0x200,
        "XCOMP_BV"
    );
    assert_eq!(
        (m.gpr(RBX), m.gpr(RAX)),
        (0xc, 0xc),
        "restored from both forms"
    );
}
