//! Exception delivery: vectors, error codes, pushed RIP (faults precise),
//! double and triple faults, privilege changes, IST, real mode.

use iced_x86::code_asm::*;

use super::*;
use crate::consts::rflags;
use crate::exception::vector;

fn run64(f: impl FnOnce(&mut CodeAssembler)) -> M {
    let code = asm(64, CODE, f);
    let mut m = M::long64(&code);
    m.install_handlers64();
    assert_eq!(m.run(), ExitReason::Halt);
    m
}

#[test]
fn divide_error_is_a_fault_at_the_div() {
    let m = run64(|a| {
        a.mov(eax, 5).unwrap();
        a.xor(ecx, ecx).unwrap();
        a.div(ecx).unwrap();
        a.hlt().unwrap();
    });
    let (v, e, rip) = m.rec();
    assert_eq!((v, e), (vector::DE as u64, u64::MAX));
    assert_eq!(rip, CODE + 7);
}

#[test]
fn idiv_overflow_raises_de() {
    let m = run64(|a| {
        a.mov(eax, 0x8000_0000u32 as i32).unwrap();
        a.cdq().unwrap();
        a.mov(ecx, -1).unwrap();
        a.idiv(ecx).unwrap();
        a.hlt().unwrap();
    });
    assert_eq!(m.rec().0, vector::DE as u64);
}

#[test]
fn bad_selector_gives_gp_with_selector_error_code() {
    let m = run64(|a| {
        a.mov(eax, 0x1238).unwrap();
        a.mov(ds, ax).unwrap();
        a.hlt().unwrap();
    });
    assert_eq!(m.rec().0, vector::GP as u64);
    assert_eq!(m.rec().1, 0x1238);
}

#[test]
fn non_present_page_gives_pf_with_cr2_and_state_unchanged() {
    let m = run64(|a| {
        a.mov(rbx, 0x80_0000_0010u64).unwrap();
        a.mov(rcx, 0x1234u64).unwrap();
        a.add(qword_ptr(rbx), rcx).unwrap();
        a.hlt().unwrap();
    });
    let (v, e, rip) = m.rec();
    assert_eq!(v, vector::PF as u64);
    assert_eq!(e, 0, "read, supervisor, not present");
    assert_eq!(m.read_u64(REC + 40), 0x80_0000_0010);
    assert_eq!(rip, CODE + 20);
    assert_eq!(m.read_u64(REC + 32), STACK_TOP);
    // A push to an unmapped stack cannot deliver #PF on that stack: #DF,
    // and without a usable stack for #DF either, a triple fault.
    let code = asm(64, CODE, |a| {
        a.mov(rsp, 0x80_0000_0010u64).unwrap();
        a.push(rbx).unwrap();
    });
    let mut m = M::long64(&code);
    m.install_handlers64();
    assert_eq!(m.run(), ExitReason::Shutdown);
    assert_eq!(
        m.gpr(4),
        0x80_0000_0010,
        "RSP unchanged by the faulting push"
    );
}

#[test]
fn ud2_and_unimplemented_instructions_raise_ud() {
    let m = run64(|a| {
        a.ud2().unwrap();
    });
    assert_eq!(m.rec().0, vector::UD as u64);
    let m = run64(|a| {
        a.vzeroupper().unwrap();
    });
    assert_eq!(m.rec().0, vector::UD as u64);
    assert_eq!(m.rec().2, CODE);
}

#[test]
fn any_byte_sequence_never_panics() {
    // Pseudo-random code in every mode: must only ever fault.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..30 {
        let mut code = vec![0u8; 256];
        for b in code.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let mut m = match round % 3 {
            0 => M::long64(&code),
            1 => M::prot32(&code),
            _ => M::real(&code),
        };
        if round % 3 == 0 {
            m.install_handlers64();
        }
        let _ = m.cpu.run(&mut m.bus, 20_000);
    }
}

#[test]
fn missing_gate_gives_double_fault_then_triple_fault() {
    let code = asm(64, CODE, |a| {
        a.mov(eax, 0x1238).unwrap();
        a.mov(ds, ax).unwrap();
        a.hlt().unwrap();
    });
    let mut m = M::long64(&code);
    m.install_handlers64();
    // #GP gate not present: #NP while delivering #GP → #DF.
    m.bus.load(IDT + 13 * 16, &[0u8; 16]);
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(m.rec().0, vector::DF as u64);
    assert_eq!(m.rec().1, 0);
    // No #DF gate either: triple fault.
    let mut m = M::long64(&code);
    assert_eq!(m.run(), ExitReason::Shutdown);
}

#[test]
fn int_n_from_ring3_switches_to_the_tss_stack() {
    // Kernel: iretq to ring-3 code that does `int 0x80`.
    let user = CODE + 0x100;
    let code = asm(64, CODE, |a| {
        a.push(UDS as i32).unwrap();
        a.push(0x50000).unwrap();
        a.push(0x202).unwrap();
        a.push(UCS64 as i32).unwrap();
        a.push(user as i32).unwrap();
        a.iretq().unwrap();
    });
    let ucode = asm(64, user, |a| {
        a.mov(eax, 7).unwrap();
        a.int(0x80).unwrap();
    });
    let mut m = M::long64(&code);
    m.install_handlers64();
    m.bus.load(user, &ucode);
    // Make the low 1 GiB user-accessible (2 MiB pages with U).
    m.bus.load(PML4, &(PML4 + 0x1007).to_le_bytes());
    m.bus.load(PML4 + 0x1000, &(PML4 + 0x2007).to_le_bytes());
    for k in 0..512u64 {
        m.bus
            .load(PML4 + 0x2000 + k * 8, &((k << 21) | 0x87).to_le_bytes());
    }
    // int 0x80 gate with DPL 3 → a handler at HANDLERS+0x80*0x100.
    let h = HANDLERS + 0x8000;
    let hc = asm(64, h, |a| {
        a.mov(rax, qword_ptr(rsp + 24)).unwrap();
        a.mov(qword_ptr(REC + 32), rax).unwrap();
        a.mov(rax, qword_ptr(rsp + 8)).unwrap();
        a.mov(qword_ptr(REC + 24), rax).unwrap();
        a.mov(qword_ptr(REC + 48), rsp).unwrap();
        a.hlt().unwrap();
    });
    m.bus.load(h, &hc);
    m.idt64_gate(0x80, h, 3);
    // TSS.RSP0.
    m.bus.load(TSS + 4, &0x60000u64.to_le_bytes());
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(m.read_u64(REC + 24), UCS64 as u64, "pushed CS");
    assert_eq!(m.read_u64(REC + 32), 0x50000, "pushed RSP");
    assert_eq!(
        m.read_u64(REC + 48),
        0x60000 - 40,
        "handler RSP on the RSP0 stack"
    );
    assert_eq!(m.cpu.cpl, 0);
    assert_eq!(m.gpr(0) & 0xffff_ffff, m.gpr(0) & 0xffff_ffff);
}

#[test]
fn gate_dpl_blocks_int_n_from_ring3_with_gp() {
    let user = CODE + 0x100;
    let code = asm(64, CODE, |a| {
        a.push(UDS as i32).unwrap();
        a.push(0x50000).unwrap();
        a.push(0x2).unwrap();
        a.push(UCS64 as i32).unwrap();
        a.push(user as i32).unwrap();
        a.iretq().unwrap();
    });
    let ucode = asm(64, user, |a| {
        a.int(0x30).unwrap();
    });
    let mut m = M::long64(&code);
    m.install_handlers64();
    m.bus.load(user, &ucode);
    m.bus.load(PML4, &(PML4 + 0x1007).to_le_bytes());
    m.bus.load(PML4 + 0x1000, &(PML4 + 0x2007).to_le_bytes());
    for k in 0..512u64 {
        m.bus
            .load(PML4 + 0x2000 + k * 8, &((k << 21) | 0x87).to_le_bytes());
    }
    m.idt64_gate(0x30, HANDLERS, 0);
    m.bus.load(TSS + 4, &0x60000u64.to_le_bytes());
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(m.rec().0, vector::GP as u64);
    assert_eq!(m.rec().1, 0x30 * 8 + 2);
    assert_eq!(m.rec().2, user);
}

#[test]
fn ist_stack_is_used_and_aligned() {
    let code = asm(64, CODE, |a| {
        a.mov(rsp, 0x50008u64).unwrap();
        a.ud2().unwrap();
    });
    let mut m = M::long64(&code);
    m.install_handlers64();
    // Gate 6 with IST 1.
    let mut g = m.read_u64(IDT + 6 * 16);
    g |= 1 << 32;
    m.bus.load(IDT + 6 * 16, &g.to_le_bytes());
    m.bus.load(TSS + 0x24, &0x40008u64.to_le_bytes());
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(m.rec().0, vector::UD as u64);
    assert_eq!(m.read_u64(REC + 32), 0x50008);
    // Handler ran on IST1 aligned down to 16: 0x40000 - 5*8.
    assert_eq!(m.gpr(4), 0x40000 - 40);
}

#[test]
fn protected_mode_exception_pushes_error_code_and_eip() {
    let code = asm(32, CODE, |a| {
        a.mov(eax, 0x1238).unwrap();
        a.mov(es, ax).unwrap();
        a.hlt().unwrap();
    });
    let mut m = M::prot32(&code);
    m.install_handlers32();
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(m.rec().0, vector::GP as u64);
    assert_eq!(m.rec().1 & 0xffff_ffff, 0x1238);
    assert_eq!(m.rec().2 & 0xffff_ffff, CODE + 5);
    assert_eq!(m.read_u64(REC + 24) & 0xffff, CS32 as u64);
}

#[test]
fn real_mode_int_uses_the_ivt_and_iret_returns() {
    let code = asm(16, 0, |a| {
        a.mov(ax, 1).unwrap();
        a.int(0x21).unwrap();
        a.add(ax, 0x10).unwrap();
        a.hlt().unwrap();
    });
    let mut m = M::real(&code);
    // Handler at 0x0000:0x0800: ax += 0x100; iret.
    let h = asm(16, 0x800, |a| {
        a.add(ax, 0x100).unwrap();
        a.iret().unwrap();
    });
    m.bus.load(0x800, &h);
    m.bus.load(0x21 * 4, &[0x00, 0x08, 0x00, 0x00]);
    m.cpu.state.rflags |= crate::consts::rflags::IF;
    assert_eq!(m.cpu.run(&mut m.bus, 1000), ExitReason::Halt);
    assert_eq!(m.gpr(0) & 0xffff, 0x111);
    assert_eq!(m.gpr(4) & 0xffff, 0x7000);
    assert!(
        m.cpu.state.rflags & crate::consts::rflags::IF != 0,
        "IF restored by IRET"
    );
}

/// A real-mode IRETD of a stack image with every bit but TF set loads the flags
/// but not the reserved bits 3, 5, 15 and 22-31 (realmode.flat of
/// kvm-unit-tests saw them in later PUSHFs).
#[test]
fn real_mode_iretd_drops_reserved_flag_bits() {
    let code = asm(16, 0, |a| {
        a.iretd().unwrap();
    });
    let mut m = M::real(&code);
    m.bus.load(0x10, &[0xf4]); // hlt
                               // EIP 0x10, CS 0, EFLAGS all ones, at SS:SP.
    let frame_at = 0x6ff4u64;
    let mut frame = Vec::new();
    frame.extend(0x10u32.to_le_bytes());
    frame.extend(0u32.to_le_bytes());
    frame.extend((!0x100u32).to_le_bytes()); // all but TF
    m.bus.load(frame_at, &frame);
    m.cpu.state.gpr[4] = frame_at;
    let _ = m.cpu.run(&mut m.bus, 100);
    let f = m.cpu.state.rflags;
    assert_eq!(f & 0xffc0_8028, 0, "reserved bits set: {f:#x}");
    assert_eq!(f & 0xd5, 0xd5, "arithmetic flags from the stack: {f:#x}");
}

#[test]
fn real_mode_divide_error_goes_through_the_ivt() {
    let code = asm(16, 0, |a| {
        a.xor(cx, cx).unwrap();
        a.div(cx).unwrap();
        a.hlt().unwrap();
    });
    let mut m = M::real(&code);
    let h = asm(16, 0x900, |a| {
        a.mov(bx, 0x5555).unwrap();
        a.hlt().unwrap();
    });
    m.bus.load(0x900, &h);
    m.bus.load(0, &[0x00, 0x09, 0x00, 0x00]);
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(m.gpr(3) & 0xffff, 0x5555);
    // IP pushed = the DIV.
    assert_eq!(
        m.bus.ram[0x7000 - 6] as u64 | (m.bus.ram[0x7000 - 5] as u64) << 8,
        2
    );
    assert_eq!(
        m.bus.ram[0x7000 - 4] as u64 | (m.bus.ram[0x7000 - 3] as u64) << 8,
        CODE >> 4
    );
}

/// Random code in random (even inconsistent) states: the interpreter must
/// only ever fault, halt or shut down. `cargo test -- --ignored fuzz` for
/// a longer run; a short one is always on.
fn fuzz_rounds(rounds: u64, seed: u64) {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..rounds {
        let mut code = vec![0u8; 512];
        for b in code.iter_mut() {
            *b = next() as u8;
        }
        // Bias towards real opcodes: splice in common prefixes/opcodes.
        for _ in 0..32 {
            let p = (next() % 500) as usize;
            const HOT: [u8; 16] = [
                0x0f, 0x66, 0x67, 0xf3, 0xf2, 0x48, 0x8b, 0x89, 0xc7, 0xff, 0xf7, 0xd3, 0xa5, 0xcd,
                0x8e, 0xcf,
            ];
            code[p] = HOT[(next() % 16) as usize];
        }
        let mut m = match round % 4 {
            0 => M::long64(&code),
            1 => M::prot32(&code),
            2 => M::real(&code),
            _ => {
                let mut m = M::long64(&code);
                m.cpu.state.gpr.iter_mut().for_each(|g| *g = next());
                m.cpu.state.rflags = (next() & 0x3f_7fd5) | 2;
                m.cpu.state.cr4 ^= next() & 0x30;
                m.cpu.state.segs[SegReg::Ss as usize].attr = next() as u16;
                m.cpu.state.idtr.limit = next() as u16;
                m.cpu.state.gdtr.limit = next() as u16;
                let st = m.cpu.state;
                m.cpu.set_state(&st);
                m
            }
        };
        if round % 4 == 0 {
            m.install_handlers64();
        }
        for _ in 0..50 {
            match m.cpu.run(&mut m.bus, 2_000) {
                ExitReason::Budget => {}
                ExitReason::Halt => {
                    m.cpu.state.halted = false;
                    m.cpu.state.rip = m.cpu.state.rip.wrapping_add(1);
                }
                _ => break,
            }
        }
    }
}

#[test]
fn fuzz_short() {
    fuzz_rounds(40, 0x51_7cc1_b727_220a);
}

#[test]
#[ignore]
fn fuzz_long() {
    let seed = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    fuzz_rounds(4000, seed);
}

#[test]
fn fault_frames_have_rf_set_and_trap_frames_do_not() {
    // #DE (a fault): RF set in the pushed RFLAGS image.
    let m = run64(|a| {
        a.mov(eax, 5).unwrap();
        a.xor(ecx, ecx).unwrap();
        a.div(ecx).unwrap();
        a.hlt().unwrap();
    });
    assert_ne!(m.rec_rflags() & rflags::RF, 0);
    // INT3 (a trap): RF clear.
    let m = run64(|a| {
        a.int3().unwrap();
        a.hlt().unwrap();
    });
    assert_eq!(m.rec().0, vector::BP as u64);
    assert_eq!(m.rec_rflags() & rflags::RF, 0);
}

/// LTR (and LLDT) in long mode: a 16-byte descriptor whose base is not
/// canonical is #GP(selector); a canonical high base loads.
#[test]
fn ltr_refuses_a_non_canonical_base() {
    let code = asm(64, CODE, |a| {
        a.mov(eax, TSS_SEL as i32).unwrap();
        a.ltr(ax).unwrap();
        a.hlt().unwrap();
    });
    for (high, ok) in [(0xaaaa_aaaau64, false), (0xffff_ffff, true)] {
        let mut m = M::long64(&code);
        m.install_handlers64();
        m.bus.load(GDT + TSS_SEL as u64 + 8, &high.to_le_bytes());
        assert_eq!(m.run(), ExitReason::Halt);
        if ok {
            assert_eq!(m.cpu.state.tr.base >> 32, high);
            assert_eq!(m.cpu.state.tr.selector, TSS_SEL);
        } else {
            assert_eq!(m.rec().0, vector::GP as u64);
            assert_eq!(m.rec().1, TSS_SEL as u64);
        }
    }
}
