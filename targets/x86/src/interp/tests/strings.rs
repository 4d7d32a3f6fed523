//! Long REP MOVS/STOS in 64-bit mode (the whole-page fast path): page
//! crossings, overlap that replicates data, every element size.

use iced_x86::code_asm::*;

use super::{asm, CODE, M};
use crate::interp::ExitReason;

const SRC: u64 = 0x10_0ffd;
const DST: u64 = 0x20_0003;

fn run(f: impl FnOnce(&mut CodeAssembler)) -> M {
    let code = asm(64, CODE, |a| {
        f(a);
        a.hlt().unwrap();
    });
    let mut m = M::long64(&code);
    for k in 0..20_000u64 {
        m.bus.ram[(SRC + k) as usize] = (k * 7 + k / 251) as u8;
    }
    assert_eq!(m.run(), ExitReason::Halt);
    m
}

#[test]
fn rep_movs_long_and_across_pages() {
    for (size, count) in [(1u64, 10_001u64), (2, 3000), (4, 2500), (8, 1234)] {
        let m = run(|a| {
            a.mov(rsi, SRC).unwrap();
            a.mov(rdi, DST).unwrap();
            a.mov(rcx, count).unwrap();
            match size {
                1 => a.rep().movsb().unwrap(),
                2 => a.rep().movsw().unwrap(),
                4 => a.rep().movsd().unwrap(),
                _ => a.rep().movsq().unwrap(),
            }
        });
        let n = (size * count) as usize;
        assert_eq!(
            m.bus.ram[DST as usize..DST as usize + n],
            m.bus.ram[SRC as usize..SRC as usize + n],
            "size {size}"
        );
        assert_eq!(
            m.bus.ram[DST as usize + n],
            0,
            "size {size}: wrote past the end"
        );
        assert_eq!(m.cpu.state.gpr[1], 0);
        assert_eq!(m.cpu.state.gpr[6], SRC + n as u64);
        assert_eq!(m.cpu.state.gpr[7], DST + n as u64);
    }
}

#[test]
fn rep_movsb_overlap_replicates_forward() {
    // dst = src + 1: each byte copies the one just written.
    let m = run(|a| {
        a.mov(rsi, SRC).unwrap();
        a.lea(rdi, qword_ptr(rsi + 1)).unwrap();
        a.mov(rcx, 9000u64).unwrap();
        a.rep().movsb().unwrap();
    });
    let first = m.bus.ram[SRC as usize];
    assert!(m.bus.ram[SRC as usize..SRC as usize + 9001]
        .iter()
        .all(|&b| b == first));
}

#[test]
fn rep_stos_every_size_across_pages() {
    for (size, count) in [(1u64, 9999u64), (2, 4097), (4, 3001), (8, 1500)] {
        let m = run(|a| {
            a.mov(rax, 0x1122_3344_5566_7788u64).unwrap();
            a.mov(rdi, DST).unwrap();
            a.mov(rcx, count).unwrap();
            match size {
                1 => a.rep().stosb().unwrap(),
                2 => a.rep().stosw().unwrap(),
                4 => a.rep().stosd().unwrap(),
                _ => a.rep().stosq().unwrap(),
            }
        });
        let pat = 0x1122_3344_5566_7788u64.to_le_bytes();
        let n = (size * count) as usize;
        for k in 0..n {
            assert_eq!(
                m.bus.ram[DST as usize + k],
                pat[k % size as usize],
                "size {size} byte {k}"
            );
        }
        assert_eq!(m.bus.ram[DST as usize + n], 0);
        assert_eq!(m.cpu.state.gpr[7], DST + n as u64);
    }
}
