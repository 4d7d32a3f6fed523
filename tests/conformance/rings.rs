//! Ring transitions: interrupt gates from ring 3 through the TSS and IRET
//! back, IST stacks, call gates, SYSCALL/SYSRET, SYSENTER/SYSEXIT.

use crate::harness::*;
use crate::paging::ring3_64;
use iced_x86::code_asm::*;

const UCODE: u64 = CODE + 0x1000;

/// This host's KVM (PVM) runs ring-3 code natively and turns `INT n`
/// (other than INT3) into #UD there.
/// This host's KVM (PVM) fails SYSRET with #GP(0) (reported with the user CS).
const KVM_SYSRET: &str = "this KVM (PVM) raises #GP(0) on SYSRET";

pub const KVM_USER_INT: &str = "this KVM (PVM) raises #UD for INT n (n != 3) from ring 3";

/// Enters ring 3 at `UCODE` from 32-bit protected mode.
fn ring3_32(g: &mut Guest, user: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) {
    let mut a = g.asm();
    user_data_segments(&mut a).unwrap();
    a.push(sel::UDATA as u32).unwrap();
    a.push(USER_STACK_TOP as u32).unwrap();
    a.push(USER_RFLAGS as u32).unwrap();
    a.push(sel::UCODE32 as u32).unwrap();
    a.push(UCODE as u32).unwrap();
    a.iretd().unwrap();
    g.load(&mut a);
    let mut u = CodeAssembler::new(32).unwrap();
    user(&mut u).unwrap();
    u.int3().unwrap();
    g.load_at(&mut u, UCODE, UCODE);
}

#[test]
fn ring3_int3_64() {
    let mut g = Guest::new(Mode::Long64);
    ring3_64(&mut g, |a| a.mov(rax, 7u64));
    Case::new("ring3_int3_64", g)
        .check(|o| {
            let e = o.faulted(3, 0);
            assert_eq!((e.cs, e.ss), (sel::UCODE64 as u64, sel::UDATA as u64));
            assert_eq!(e.rip, UCODE + 11);
            assert_eq!(e.rsp, USER_STACK_TOP);
            // The handler ran on RSP0 from the TSS: 7 qwords below it.
            assert_eq!(o.gpr(4), STACK_TOP - 7 * 8);
        })
        .run();
}

#[test]
fn ring3_int_iret_round_trip_64() {
    let mut g = Guest::new(Mode::Long64);
    // Handler for 0x80 (DPL 3): record RSP and the frame, add 1 to RAX, IRET.
    let mut h = CodeAssembler::new(64).unwrap();
    h.mov(qword_ptr(DATA), rsp).unwrap();
    for i in 0..5 {
        h.mov(rbx, qword_ptr(rsp + i * 8)).unwrap();
        h.mov(qword_ptr(DATA + 8 + i as u64 * 8), rbx).unwrap();
    }
    h.inc(rax).unwrap();
    h.iretq().unwrap();
    g.load_at(&mut h, SCRATCH, SCRATCH);
    g.set_gate64(0x80, sel::CODE64, SCRATCH, 3, 0, false);
    ring3_64(&mut g, |a| {
        a.mov(eax, 41u32)?;
        a.int(0x80)?;
        a.mov(rcx, rax)?;
        a.push(rcx)?;
        a.pop(rdx)
    });
    Case::new("ring3_int_iret_round_trip_64", g)
        .kvm_cannot(KVM_USER_INT)
        .check(|o| {
            let e = o.faulted(3, 0);
            assert_eq!(e.cs, sel::UCODE64 as u64, "back in ring 3");
            assert_eq!(o.gpr(2), 42);
            assert_eq!(o.u64(DATA), STACK_TOP - 40, "RSP0 from the TSS");
            assert_eq!(o.u64(DATA + 8), UCODE + 7, "return RIP after INT 0x80");
            assert_eq!(o.u64(DATA + 16), sel::UCODE64 as u64);
            assert_eq!(o.u64(DATA + 32), USER_STACK_TOP);
            assert_eq!(o.u64(DATA + 40), sel::UDATA as u64);
        })
        .run();
}

#[test]
fn ring3_int_iret_round_trip_32() {
    let mut g = Guest::new(Mode::Prot32);
    let mut h = CodeAssembler::new(32).unwrap();
    h.mov(dword_ptr(DATA), esp).unwrap();
    for i in 0..5 {
        h.mov(ebx, dword_ptr(esp + i * 4)).unwrap();
        h.mov(dword_ptr(DATA + 4 + i as u64 * 4), ebx).unwrap();
    }
    h.inc(eax).unwrap();
    h.iretd().unwrap();
    g.load_at(&mut h, SCRATCH, SCRATCH);
    g.set_gate32(0x80, sel::CODE32, SCRATCH, 3, false);
    ring3_32(&mut g, |a| {
        a.mov(eax, 41u32)?;
        a.int(0x80)?;
        a.mov(edx, eax)
    });
    Case::new("ring3_int_iret_round_trip_32", g)
        .check(|o| {
            let e = o.faulted(3, 0);
            assert_eq!(e.cs, sel::UCODE32 as u64);
            assert_eq!(o.gpr(2), 42);
            assert_eq!(o.u32(DATA) as u64, STACK_TOP - 20, "ESP0 from the TSS");
            assert_eq!(o.u32(DATA + 4) as u64, UCODE + 7);
            assert_eq!(o.u32(DATA + 16) as u64, USER_STACK_TOP);
            assert_eq!(o.u32(DATA + 20), sel::UDATA as u32);
        })
        .run();
}

#[test]
fn ist_stack_64() {
    let mut g = Guest::new(Mode::Long64);
    g.set_gate64(0x41, sel::CODE64, 0x4000 + 0x41 * 16, 0, 1, false);
    let mut a = g.asm();
    a.mov(rsp, 0x3_1234u64).unwrap(); // unaligned: IST stacks are used as is
    a.int(0x41).unwrap();
    end(&mut a).unwrap();
    g.load(&mut a);
    Case::new("ist_stack_64", g)
        .check(|o| {
            let e = o.faulted(0x41, 0);
            assert_eq!(e.rsp, 0x3_1234);
            assert_eq!(o.gpr(4), IST_TOP - 7 * 8);
        })
        .run();
}

#[test]
fn call_gate_32_with_parameters() {
    let mut g = Guest::new(Mode::Prot32);
    // Call gate (DPL 3) to CODE32:SCRATCH, copying 2 dwords.
    let gate = (SCRATCH & 0xffff)
        | ((sel::CODE32 as u64) << 16)
        | (2u64 << 32)
        | (0xecu64 << 40)
        | ((SCRATCH >> 16) << 48);
    g.set_gdt(sel::FREE, gate);
    let mut h = CodeAssembler::new(32).unwrap();
    h.mov(dword_ptr(DATA), esp).unwrap();
    for i in 0..6 {
        h.mov(ebx, dword_ptr(esp + i * 4)).unwrap();
        h.mov(dword_ptr(DATA + 4 + i as u64 * 4), ebx).unwrap();
    }
    h.mov(ax, cs).unwrap();
    h.retf_1(8).unwrap();
    g.load_at(&mut h, SCRATCH, SCRATCH);
    ring3_32(&mut g, |a| {
        a.push(0x1111u32)?;
        a.push(0x2222u32)?;
        a.call_far(sel::FREE | 3, 0)?;
        a.mov(edx, esp)
    });
    Case::new("call_gate_32_with_parameters", g)
        .check(|o| {
            let e = o.faulted(3, 0);
            assert_eq!(e.cs, sel::UCODE32 as u64);
            assert_eq!(o.gpr(2), USER_STACK_TOP, "RETF 8 popped the parameters");
            assert_eq!(
                o.gpr(0) & 0xffff,
                sel::CODE32 as u64,
                "CS in the gate's target"
            );
            assert_eq!(o.u32(DATA) as u64, STACK_TOP - 24);
            let frame: Vec<u32> = (0..6).map(|i| o.u32(DATA + 4 + i * 4)).collect();
            assert_eq!(
                frame,
                vec![
                    (UCODE + 17) as u32,
                    sel::UCODE32 as u32,
                    0x2222,
                    0x1111,
                    (USER_STACK_TOP - 8) as u32,
                    sel::UDATA as u32
                ]
            );
        })
        .run();
}

#[test]
fn call_gate_64() {
    let mut g = Guest::new(Mode::Long64);
    let lo = (SCRATCH & 0xffff)
        | ((sel::CODE64 as u64) << 16)
        | (0xecu64 << 40)
        | ((SCRATCH >> 16) << 48);
    g.set_gdt(sel::FREE, lo);
    g.set_gdt(sel::FREE + 8, SCRATCH >> 32);
    // Far pointer m16:32 for `call far [mem]` (the offset is ignored).
    g.write_u32(DATA + 0x100, 0);
    g.write_u16(DATA + 0x104, sel::FREE | 3);
    let mut h = CodeAssembler::new(64).unwrap();
    h.mov(qword_ptr(DATA), rsp).unwrap();
    for i in 0..4 {
        h.mov(rbx, qword_ptr(rsp + i * 8)).unwrap();
        h.mov(qword_ptr(DATA + 8 + i as u64 * 8), rbx).unwrap();
    }
    h.db(&[0x48, 0xcb]).unwrap(); // retfq
    g.load_at(&mut h, SCRATCH, SCRATCH);
    ring3_64(&mut g, |a| {
        a.call(fword_ptr(DATA + 0x100))?;
        a.mov(rdx, rsp)
    });
    Case::new("call_gate_64", g)
        .kvm_cannot("this KVM (PVM) raises #UD for a far call through a call gate from ring 3")
        .check(|o| {
            let e = o.faulted(3, 0);
            assert_eq!(e.cs, sel::UCODE64 as u64);
            assert_eq!(o.gpr(2), USER_STACK_TOP);
            assert_eq!(o.u64(DATA), STACK_TOP - 32);
            assert_eq!(o.u64(DATA + 16), sel::UCODE64 as u64);
            assert_eq!(o.u64(DATA + 24), USER_STACK_TOP);
            assert_eq!(o.u64(DATA + 32), sel::UDATA as u64);
        })
        .run();
}

fn syscall_guest() -> Guest {
    let mut g = Guest::new(Mode::Long64);
    g.state.efer |= 1; // SCE
    g.state.msr.star = (0x23u64 << 48) | ((sel::CODE64 as u64) << 32);
    g.state.msr.lstar = SCRATCH;
    g.state.msr.fmask = 0x700; // TF IF DF
    g
}

#[test]
fn syscall_sysret_64() {
    let mut g = syscall_guest();
    let mut h = CodeAssembler::new(64).unwrap();
    h.mov(qword_ptr(DATA), rcx).unwrap();
    h.mov(qword_ptr(DATA + 8), r11).unwrap();
    h.mov(qword_ptr(DATA + 16), rsp).unwrap();
    h.mov(ax, cs).unwrap();
    h.mov(word_ptr(DATA + 24), ax).unwrap();
    h.mov(ax, ss).unwrap();
    h.mov(word_ptr(DATA + 26), ax).unwrap();
    h.pushfq().unwrap();
    h.pop(qword_ptr(DATA + 32)).unwrap();
    h.sysretq().unwrap();
    g.load_at(&mut h, SCRATCH, SCRATCH);
    ring3_64(&mut g, |a| {
        a.std()?;
        a.syscall()?;
        a.mov(rdx, 0x5a5au64)?;
        a.cld()
    });
    Case::new("syscall_sysret_64", g)
        .kvm_cannot(KVM_SYSRET)
        .check(|o| {
            let e = o.faulted(3, 0);
            assert_eq!(
                (e.cs, e.ss),
                (0x33, 0x2b),
                "SYSRET: CS = STAR[63:48]+16, SS = +8"
            );
            assert_eq!(o.gpr(2), 0x5a5a);
            assert_eq!(o.u64(DATA), UCODE + 3, "RCX = return RIP");
            assert_eq!(
                o.u64(DATA + 8),
                USER_RFLAGS | 0x400,
                "R11 = RFLAGS (DF set)"
            );
            assert_eq!(o.u64(DATA + 16), USER_STACK_TOP, "SYSCALL keeps RSP");
            assert_eq!(o.u16(DATA + 24), sel::CODE64);
            assert_eq!(o.u16(DATA + 26), sel::DATA);
            assert_eq!(o.u64(DATA + 32) & 0x700, 0, "FMASK cleared DF");
        })
        .run();
}

#[test]
fn sysret_to_compat_mode() {
    let mut g = syscall_guest();
    let mut h = CodeAssembler::new(64).unwrap();
    h.mov(ecx, (CODE + 0x1800) as u32).unwrap();
    h.mov(r11d, 0x202u32).unwrap();
    h.db(&[0x0f, 0x07]).unwrap(); // sysretd
    g.load_at(&mut h, SCRATCH, SCRATCH);
    let mut c = CodeAssembler::new(32).unwrap();
    c.mov(eax, 0xc0de_u32).unwrap();
    c.int3().unwrap();
    g.load_at(&mut c, CODE + 0x1800, CODE + 0x1800);
    ring3_64(&mut g, |a| a.syscall());
    Case::new("sysret_to_compat_mode", g)
        .kvm_cannot(KVM_SYSRET)
        .check(|o| {
            let e = o.faulted(3, 0);
            assert_eq!(e.cs, 0x23);
            assert_eq!(e.rip, CODE + 0x1806);
            assert_eq!(e.rflags & 0x200, 0x200, "IF from R11");
            assert_eq!(o.gpr(0), 0xc0de);
        })
        .run();
}

#[test]
fn sysenter_sysexit_32() {
    let mut g = Guest::new(Mode::Prot32);
    // SYSENTER_CS = FREE: FREE code, +8 data, +16 user code, +24 user data.
    g.set_gdt(sel::FREE, desc::CODE32);
    g.set_gdt(sel::FREE + 8, desc::DATA);
    g.set_gdt(sel::FREE + 16, desc::UCODE32);
    g.set_gdt(sel::FREE + 24, desc::UDATA);
    g.state.msr.sysenter_cs = sel::FREE as u64;
    g.state.msr.sysenter_esp = STACK_TOP - 0x100;
    g.state.msr.sysenter_eip = SCRATCH;
    let mut h = CodeAssembler::new(32).unwrap();
    h.mov(dword_ptr(DATA), esp).unwrap();
    h.mov(ax, cs).unwrap();
    h.mov(word_ptr(DATA + 4), ax).unwrap();
    h.mov(ax, ss).unwrap();
    h.mov(word_ptr(DATA + 6), ax).unwrap();
    h.pushfd().unwrap();
    h.pop(dword_ptr(DATA + 8)).unwrap();
    h.sysexit().unwrap(); // to EDX with ESP = ECX
    g.load_at(&mut h, SCRATCH, SCRATCH);
    let mut c = CodeAssembler::new(32).unwrap();
    c.mov(ax, ss).unwrap();
    c.int3().unwrap();
    g.load_at(&mut c, CODE + 0x1800, CODE + 0x1800);
    ring3_32(&mut g, |a| {
        a.mov(ecx, (USER_STACK_TOP - 0x40) as u32)?;
        a.mov(edx, (CODE + 0x1800) as u32)?;
        a.sysenter()
    });
    Case::new("sysenter_sysexit_32", g)
        .check(|o| {
            let e = o.faulted(3, 0);
            assert_eq!(e.cs, (sel::FREE + 16) as u64 | 3);
            assert_eq!(e.rip, CODE + 0x1804);
            assert_eq!(e.rsp & 0xffff_ffff, USER_STACK_TOP - 0x40);
            assert_eq!(o.gpr(0) & 0xffff, (sel::FREE + 24) as u64 | 3);
            assert_eq!(o.u32(DATA) as u64, STACK_TOP - 0x100);
            assert_eq!(o.u16(DATA + 4), sel::FREE);
            assert_eq!(o.u16(DATA + 6), sel::FREE + 8);
        })
        .run();
}

#[test]
fn far_call_and_return_same_privilege() {
    simple("far_call_and_return_32", Mode::Prot32, |a| {
        let mut f = a.create_label();
        let mut done = a.create_label();
        a.jmp(done)?;
        a.set_label(&mut f)?;
        a.mov(ebx, dword_ptr(esp))?;
        a.mov(ecx, dword_ptr(esp + 4))?;
        a.retf()?;
        a.set_label(&mut done)?;
        a.call_far(sel::CODE32, (CODE + 2) as u32)?;
        a.mov(edx, esp)
    })
    .check(|o| {
        o.ended();
        assert_eq!(o.gpr(1), sel::CODE32 as u64);
        assert_eq!(o.gpr(2), STACK_TOP);
    })
    .run();
}

#[test]
fn iret_to_ring3_nulls_dpl0_data_segments() {
    let mut g = Guest::new(Mode::Long64);
    let mut a = g.asm();
    a.mov(ax, sel::UDATA as u32).unwrap();
    a.mov(fs, ax).unwrap(); // DPL 3: kept
    a.push(sel::UDATA as i32).unwrap();
    a.push(USER_STACK_TOP as i32).unwrap();
    a.push(USER_RFLAGS as i32).unwrap();
    a.push(sel::UCODE64 as i32).unwrap();
    a.push(UCODE as i32).unwrap();
    a.iretq().unwrap();
    g.load(&mut a);
    let mut u = CodeAssembler::new(64).unwrap();
    u.mov(ax, ds).unwrap();
    u.mov(bx, es).unwrap();
    u.mov(cx, fs).unwrap();
    u.mov(dx, gs).unwrap();
    u.int3().unwrap();
    g.load_at(&mut u, UCODE, UCODE);
    Case::new("iret_to_ring3_nulls_dpl0_data_segments", g)
        .kvm_cannot("this KVM (PVM) keeps DPL-0 data selectors in DS/ES/GS on IRET to ring 3")
        .check(|o| {
            o.faulted(3, 0);
            // SDM IRET, RETURN-TO-OUTER-PRIVILEGE-LEVEL: data segments
            // with DPL < CPL become null.
            assert_eq!(
                (
                    o.gpr(0) & 0xffff,
                    o.gpr(3) & 0xffff,
                    o.gpr(1) & 0xffff,
                    o.gpr(2) & 0xffff
                ),
                (0, 0, sel::UDATA as u64, 0)
            );
        })
        .run();
}
