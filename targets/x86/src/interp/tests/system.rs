//! System and miscellaneous semantics: self-modifying code, SYSCALL/
//! SYSRET, SYSENTER, CPUID/MSRs, far transfers and call gates, I/O
//! permission bitmap, POPF IOPL rules, strings, MUL/DIV, CMPXCHG8B/16B,
//! BCD, PUSHA/POPA, ENTER/LEAVE.

use iced_x86::code_asm::*;

use super::*;
use crate::consts::rflags;
use crate::exception::vector;
use crate::state::gpr::*;

fn run64(f: impl FnOnce(&mut CodeAssembler)) -> M {
    let code = asm(64, CODE, f);
    let mut m = M::long64(&code);
    m.install_handlers64();
    assert_eq!(m.run(), ExitReason::Halt);
    m
}

fn run32(f: impl FnOnce(&mut CodeAssembler)) -> M {
    let code = asm(32, CODE, f);
    let mut m = M::prot32(&code);
    m.install_handlers32();
    assert_eq!(m.run(), ExitReason::Halt);
    m
}

#[test]
fn self_modifying_code_in_the_same_block_and_a_loop() {
    // `mov eax, imm32` whose immediate is patched by the instruction
    // before it, and a loop body patched between iterations.
    let m = run64(|a| {
        // CODE+0: 11 bytes; CODE+11: B8 imm32 (immediate at CODE+12).
        a.mov(dword_ptr(CODE + 12), 0x4242).unwrap();
        a.mov(eax, 0x1111).unwrap();
        a.xor(ecx, ecx).unwrap();
        a.xor(ebx, ebx).unwrap();
        // CODE+20: 83 C3 01 (immediate at CODE+22).
        let mut top = a.create_label();
        a.set_label(&mut top).unwrap();
        a.add(ebx, 1).unwrap();
        a.mov(byte_ptr(CODE + 22), 10).unwrap();
        a.inc(ecx).unwrap();
        a.cmp(ecx, 3).unwrap();
        a.jne(top).unwrap();
        a.hlt().unwrap();
    });
    assert_eq!(m.gpr(RAX), 0x4242);
    assert_eq!(m.gpr(RBX), 1 + 10 + 10);
}

#[test]
fn syscall_sysret_round_trip() {
    let user = CODE + 0x200;
    let kernel = CODE + 0x400;
    let code = asm(64, CODE, |a| {
        a.mov(ecx, 0xC000_0081u32 as i32).unwrap();
        a.mov(edx, ((0x30u32) << 16) | CS64 as u32).unwrap();
        a.xor(eax, eax).unwrap();
        a.wrmsr().unwrap();
        a.mov(ecx, 0xC000_0082u32 as i32).unwrap();
        a.mov(eax, kernel as u32).unwrap();
        a.xor(edx, edx).unwrap();
        a.wrmsr().unwrap();
        a.mov(ecx, 0xC000_0084u32 as i32).unwrap();
        a.mov(eax, 0x200).unwrap();
        a.wrmsr().unwrap();
        a.mov(rcx, user).unwrap();
        a.mov(r11, 0x202u64).unwrap();
        a.sysretq().unwrap();
    });
    let ucode = asm(64, user, |a| {
        a.mov(ebx, 0x99).unwrap();
        a.syscall().unwrap();
    });
    let kcode = asm(64, kernel, |a| {
        a.mov(qword_ptr(REC + 0x100), rcx).unwrap();
        a.mov(qword_ptr(REC + 0x108), r11).unwrap();
        a.hlt().unwrap();
    });
    let mut m = M::long64(&code);
    m.install_handlers64();
    m.bus.load(user, &ucode);
    m.bus.load(kernel, &kcode);
    m.bus.load(PML4, &(PML4 + 0x1007).to_le_bytes());
    m.bus.load(PML4 + 0x1000, &(PML4 + 0x2007).to_le_bytes());
    for k in 0..512u64 {
        m.bus
            .load(PML4 + 0x2000 + k * 8, &((k << 21) | 0x87).to_le_bytes());
    }
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(m.gpr(RBX), 0x99);
    assert_eq!(m.read_u64(REC + 0x100), user + ucode.len() as u64);
    assert_eq!(m.read_u64(REC + 0x108) & rflags::IF, rflags::IF);
    assert_eq!(m.cpu.state.rflags & rflags::IF, 0, "FMASK cleared IF");
    assert_eq!(m.cpu.state.segs[SegReg::Cs as usize].selector, CS64);
    assert_eq!(m.cpu.state.segs[SegReg::Ss as usize].selector, CS64 + 8);
}

#[test]
fn cpuid_and_msrs() {
    let m = run64(|a| {
        a.xor(eax, eax).unwrap();
        a.cpuid().unwrap();
        a.mov(dword_ptr(REC + 0x100), ebx).unwrap();
        a.mov(dword_ptr(REC + 0x104), edx).unwrap();
        a.mov(dword_ptr(REC + 0x108), ecx).unwrap();
        a.mov(ecx, 0x277).unwrap();
        a.rdmsr().unwrap();
        a.mov(dword_ptr(REC + 0x110), eax).unwrap();
        a.mov(ecx, 0x12345).unwrap();
        a.rdmsr().unwrap();
        a.hlt().unwrap();
    });
    assert_eq!(
        &m.bus.ram[(REC + 0x100) as usize..(REC + 0x10c) as usize],
        b"GenuineIntel"
    );
    assert_eq!(m.read_u64(REC + 0x110) & 0xffff_ffff, 0x0007_0406);
    assert_eq!(m.rec().0, vector::GP as u64, "unknown MSR");
}

#[test]
fn mul_div_values() {
    let m = run64(|a| {
        a.mov(rax, 0xffff_ffff_ffff_ffffu64).unwrap();
        a.mov(rcx, 3u64).unwrap();
        a.mul(rcx).unwrap();
        a.mov(qword_ptr(REC + 0x100), rax).unwrap();
        a.mov(qword_ptr(REC + 0x108), rdx).unwrap();
        a.mov(rdx, 2u64).unwrap();
        a.mov(rax, 5u64).unwrap();
        a.mov(rcx, 7u64).unwrap();
        a.div(rcx).unwrap();
        a.mov(qword_ptr(REC + 0x110), rax).unwrap();
        a.mov(qword_ptr(REC + 0x118), rdx).unwrap();
        a.mov(ax, -7i32).unwrap();
        a.mov(cl, 2).unwrap();
        a.idiv(cl).unwrap();
        a.mov(word_ptr(REC + 0x120), ax).unwrap();
        a.mov(eax, -3).unwrap();
        a.mov(ecx, 5).unwrap();
        a.imul(ecx).unwrap();
        a.mov(dword_ptr(REC + 0x128), eax).unwrap();
        a.mov(dword_ptr(REC + 0x12c), edx).unwrap();
        a.hlt().unwrap();
    });
    assert_eq!(m.read_u64(REC + 0x100), 0xffff_ffff_ffff_fffd);
    assert_eq!(m.read_u64(REC + 0x108), 2);
    let n: u128 = (2u128 << 64) | 5;
    assert_eq!(m.read_u64(REC + 0x110), (n / 7) as u64);
    assert_eq!(m.read_u64(REC + 0x118), (n % 7) as u64);
    // -7 / 2 = -3 rem -1: AL = 0xfd, AH = 0xff.
    assert_eq!(m.read_u64(REC + 0x120) & 0xffff, 0xfffd);
    assert_eq!(m.read_u64(REC + 0x128), 0xffff_ffff_ffff_fff1);
    assert!(m.cpu.state.rflags & rflags::CF == 0);
}

#[test]
fn cmpxchg8b_16b_and_cmpxchg() {
    let m = run64(|a| {
        a.mov(qword_ptr(0x7000), 0x1234).unwrap();
        a.mov(eax, 0x1234).unwrap();
        a.xor(edx, edx).unwrap();
        a.mov(ebx, 0x5678).unwrap();
        a.mov(ecx, 0x9).unwrap();
        a.cmpxchg8b(qword_ptr(0x7000)).unwrap();
        a.setz(byte_ptr(REC + 0x100)).unwrap();
        a.cmpxchg8b(qword_ptr(0x7000)).unwrap();
        a.setz(byte_ptr(REC + 0x101)).unwrap();
        a.mov(qword_ptr(REC + 0x108), rax).unwrap();
        a.mov(rax, 0u64).unwrap();
        a.mov(rdx, 0u64).unwrap();
        a.mov(rbx, 1u64).unwrap();
        a.mov(rcx, 2u64).unwrap();
        a.cmpxchg16b(xmmword_ptr(0x7100)).unwrap();
        a.setz(byte_ptr(REC + 0x102)).unwrap();
        a.mov(r8d, 7).unwrap();
        a.mov(eax, 1).unwrap();
        a.cmpxchg(dword_ptr(0x7100), r8d).unwrap();
        a.setz(byte_ptr(REC + 0x103)).unwrap();
        // Misaligned CMPXCHG16B: #GP(0).
        a.cmpxchg16b(xmmword_ptr(0x7108)).unwrap();
        a.hlt().unwrap();
    });
    assert_eq!(
        m.bus.ram[(REC + 0x100) as usize..(REC + 0x104) as usize],
        [1, 0, 1, 1]
    );
    assert_eq!(m.read_u64(0x7000), 0x9_0000_5678);
    assert_eq!(m.read_u64(REC + 0x108), 0x5678);
    assert_eq!(m.read_u64(0x7100), 7);
    assert_eq!(m.read_u64(0x7108), 2);
    assert_eq!(m.rec().0, vector::GP as u64);
}

#[test]
fn strings_with_rep_df_and_repe() {
    let m = run64(|a| {
        // rep movsb forward 5 bytes.
        a.mov(rsi, 0x7000u64).unwrap();
        a.mov(rdi, 0x7100u64).unwrap();
        a.mov(ecx, 5).unwrap();
        a.rep().movsb().unwrap();
        // std; rep stosw backwards 3 words ending at 0x7204.
        a.std().unwrap();
        a.mov(rdi, 0x7204u64).unwrap();
        a.mov(ax, 0xabcd).unwrap();
        a.mov(ecx, 3).unwrap();
        a.rep().stosw().unwrap();
        a.cld().unwrap();
        a.mov(qword_ptr(REC + 0x100), rdi).unwrap();
        // repe cmpsb: first difference at index 3.
        a.mov(rsi, 0x7000u64).unwrap();
        a.mov(rdi, 0x7300u64).unwrap();
        a.mov(ecx, 8).unwrap();
        a.repe().cmpsb().unwrap();
        a.mov(qword_ptr(REC + 0x108), rcx).unwrap();
        // repne scasb for 0x33.
        a.mov(rdi, 0x7000u64).unwrap();
        a.mov(al, 0x33).unwrap();
        a.mov(ecx, 8).unwrap();
        a.repne().scasb().unwrap();
        a.mov(qword_ptr(REC + 0x110), rdi).unwrap();
        a.hlt().unwrap();
    });
    let _ = m;
    let code = asm(64, CODE, |_| {});
    let _ = code;
}

#[test]
fn strings_results() {
    let code = asm(64, CODE, |a| {
        a.mov(rsi, 0x7000u64).unwrap();
        a.mov(rdi, 0x7100u64).unwrap();
        a.mov(ecx, 5).unwrap();
        a.rep().movsb().unwrap();
        a.std().unwrap();
        a.mov(rdi, 0x7204u64).unwrap();
        a.mov(ax, 0xabcd).unwrap();
        a.mov(ecx, 3).unwrap();
        a.rep().stosw().unwrap();
        a.cld().unwrap();
        a.mov(qword_ptr(REC + 0x100), rdi).unwrap();
        a.mov(rsi, 0x7000u64).unwrap();
        a.mov(rdi, 0x7300u64).unwrap();
        a.mov(ecx, 8).unwrap();
        a.repe().cmpsb().unwrap();
        a.mov(qword_ptr(REC + 0x108), rcx).unwrap();
        a.mov(rdi, 0x7000u64).unwrap();
        a.mov(al, 0x33).unwrap();
        a.mov(ecx, 8).unwrap();
        a.repne().scasb().unwrap();
        a.mov(qword_ptr(REC + 0x110), rdi).unwrap();
        a.hlt().unwrap();
    });
    let mut m = M::long64(&code);
    m.bus
        .load(0x7000, &[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]);
    m.bus.load(0x7300, &[0x11, 0x22, 0x33, 0x99]);
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(m.bus.ram[0x7100..0x7106], [0x11, 0x22, 0x33, 0x44, 0x55, 0]);
    assert_eq!(
        m.bus.ram[0x71ff..0x7206],
        [0, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab]
    );
    assert_eq!(m.read_u64(REC + 0x100), 0x71fe);
    assert_eq!(m.read_u64(REC + 0x108), 4, "stopped after the 4th byte");
    assert_eq!(m.read_u64(REC + 0x110), 0x7003);
}

#[test]
fn rep_movs_with_16_bit_addresses_wraps() {
    let code = asm(16, 0, |a| {
        a.mov(ax, 0x2000).unwrap();
        a.mov(ds, ax).unwrap();
        a.mov(es, ax).unwrap();
        a.mov(si, 0xfffe).unwrap();
        a.mov(di, 0x100).unwrap();
        a.mov(cx, 4).unwrap();
        a.rep().movsb().unwrap();
        a.hlt().unwrap();
    });
    let mut m = M::real(&code);
    m.bus.load(0x2fffe, &[1, 2]);
    m.bus.load(0x20000, &[3, 4]);
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(m.bus.ram[0x20100..0x20104], [1, 2, 3, 4]);
    assert_eq!(m.gpr(RSI) & 0xffff, 2);
}

#[test]
fn far_call_retf_and_call_gate_to_ring0() {
    // 32-bit: ring 0 IRETs to ring 3, which far-calls through a call gate
    // (DPL 3, 1 parameter) into ring 0 code that returns with RETF 4.
    let user = CODE + 0x200;
    let kernel = CODE + 0x400;
    let code = asm(32, CODE, |a| {
        a.push(UDS as u32).unwrap();
        a.push(0x50000).unwrap();
        a.push(0x2).unwrap();
        a.push(UCS32 as u32).unwrap();
        a.push(user as u32).unwrap();
        a.iretd().unwrap();
    });
    let ucode = asm(32, user, |a| {
        // IRET to ring 3 nulled DS/ES (DPL 0): load ring-3 data segments.
        a.mov(eax, UDS as u32).unwrap();
        a.mov(ds, ax).unwrap();
        a.push(0x77).unwrap();
        a.add_instruction(
            iced_x86::Instruction::with_far_branch(iced_x86::Code::Call_ptr1632, 0x50 | 3, 0)
                .unwrap(),
        )
        .unwrap();
        a.mov(dword_ptr(REC as u32 + 0x120), esp).unwrap();
        a.hlt().unwrap();
    });
    let kcode = asm(32, kernel, |a| {
        a.mov(eax, dword_ptr(esp + 8)).unwrap();
        a.mov(dword_ptr(REC as u32 + 0x100), eax).unwrap();
        a.mov(dword_ptr(REC as u32 + 0x108), esp).unwrap();
        a.mov(eax, dword_ptr(esp + 4)).unwrap();
        a.mov(dword_ptr(REC as u32 + 0x110), eax).unwrap();
        a.add_instruction(iced_x86::Instruction::with1(iced_x86::Code::Retfd_imm16, 4u32).unwrap())
            .unwrap();
    });
    let mut m = M::prot32(&code);
    m.install_handlers32();
    m.bus.load(user, &ucode);
    m.bus.load(kernel, &kcode);
    // Call gate at 0x50: DPL 3, 1 dword parameter, → CS32:kernel.
    let gate = (kernel & 0xffff)
        | ((CS32 as u64) << 16)
        | (1u64 << 32)
        | (0xecu64 << 40)
        | ((kernel >> 16) << 48);
    m.bus.load(GDT + 0x50, &gate.to_le_bytes());
    // 32-bit TSS: ESP0 / SS0.
    m.bus.load(TSS + 4, &0x60000u32.to_le_bytes());
    m.bus.load(TSS + 8, &(DS32 as u32).to_le_bytes());
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(
        m.rec().0,
        vector::GP as u64,
        "HLT at CPL 3 faults after the return"
    );
    assert_eq!(
        m.read_u64(REC + 0x100) & 0xffff_ffff,
        0x77,
        "parameter copied"
    );
    assert_eq!(
        m.read_u64(REC + 0x108) & 0xffff_ffff,
        0x60000 - 20,
        "inner stack from the TSS"
    );
    assert_eq!(m.read_u64(REC + 0x110) & 0xffff, UCS32 as u64, "return CS");
    assert_eq!(
        m.read_u64(REC + 0x120) & 0xffff_ffff,
        0x50000,
        "RETF 4 popped the parameter"
    );
}

#[test]
fn io_permission_bitmap_and_popf_iopl() {
    let user = CODE + 0x200;
    let code = asm(32, CODE, |a| {
        a.push(UDS as u32).unwrap();
        a.push(0x50000).unwrap();
        a.push(0x202).unwrap();
        a.push(UCS32 as u32).unwrap();
        a.push(user as u32).unwrap();
        a.iretd().unwrap();
    });
    let ucode = asm(32, user, |a| {
        a.mov(eax, UDS as u32).unwrap();
        a.mov(ds, ax).unwrap();
        // POPF at CPL 3 > IOPL 0 leaves IF alone.
        a.push(0).unwrap();
        a.popfd().unwrap();
        a.pushfd().unwrap();
        a.pop(eax).unwrap();
        a.mov(dword_ptr(REC as u32 + 0x100), eax).unwrap();
        a.mov(al, 0x41).unwrap();
        a.out(0x80, al).unwrap();
        a.out(0x81, al).unwrap();
    });
    let mut m = M::prot32(&code);
    m.install_handlers32();
    m.bus.load(user, &ucode);
    // TSS limit must cover the bitmap: patch the descriptor limit to 0x100.
    let d = 0x0000_8900_0000_0100u64 | ((TSS & 0xff_ffff) << 16);
    m.bus.load(GDT + 0x48, &d.to_le_bytes());
    m.cpu.state.tr.limit = 0x100;
    m.bus.load(TSS + 0x66, &0x80u16.to_le_bytes());
    // Port 0x80 allowed, 0x81 denied.
    m.bus.load(TSS + 0x80 + 0x10, &[0xfe]);
    m.bus.load(TSS + 0x80 + 0x11, &[0xff]);
    m.bus.load(TSS + 4, &0x60000u32.to_le_bytes());
    m.bus.load(TSS + 8, &(DS32 as u32).to_le_bytes());
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(m.read_u64(REC + 0x100) & rflags::IF, rflags::IF);
    assert_eq!(m.bus.out_log, vec![(0x80, 1, 0x41)]);
    assert_eq!(m.rec().0, vector::GP as u64);
    assert_eq!(m.rec().2 & 0xffff_ffff, user + ucode.len() as u64 - 2);
}

#[test]
fn bcd_pusha_enter_leave() {
    let m = run32(|a| {
        a.mov(al, 0x19).unwrap();
        a.add(al, 0x28).unwrap();
        a.daa().unwrap();
        a.mov(byte_ptr(REC as u32 + 0x100), al).unwrap();
        a.mov(ax, 0x0109).unwrap();
        a.add(al, 0x05).unwrap();
        a.aaa().unwrap();
        a.mov(word_ptr(REC as u32 + 0x102), ax).unwrap();
        a.mov(ebx, 0x1111).unwrap();
        a.pushad().unwrap();
        a.mov(ebx, 0).unwrap();
        a.popad().unwrap();
        a.mov(dword_ptr(REC as u32 + 0x104), ebx).unwrap();
        a.mov(ebp, 0x1234).unwrap();
        a.enter(16, 0).unwrap();
        a.mov(dword_ptr(REC as u32 + 0x108), esp).unwrap();
        a.leave().unwrap();
        a.mov(dword_ptr(REC as u32 + 0x10c), ebp).unwrap();
        a.mov(dword_ptr(REC as u32 + 0x110), esp).unwrap();
        a.hlt().unwrap();
    });
    assert_eq!(m.bus.ram[(REC + 0x100) as usize], 0x47);
    assert_eq!(m.read_u64(REC + 0x102) & 0xffff, 0x0204);
    assert_eq!(m.read_u64(REC + 0x104) & 0xffff_ffff, 0x1111);
    assert_eq!(m.read_u64(REC + 0x108) & 0xffff_ffff, STACK_TOP - 4 - 16);
    assert_eq!(m.read_u64(REC + 0x10c) & 0xffff_ffff, 0x1234);
    assert_eq!(m.read_u64(REC + 0x110) & 0xffff_ffff, STACK_TOP);
}

#[test]
fn sti_shadow_and_mov_ss_shadow_delay_interrupts() {
    struct IntBus {
        inner: TestBus,
        pending: bool,
    }
    impl crate::bus::CpuBus for IntBus {
        fn read_phys(&mut self, p: u64, d: &mut [u8]) {
            self.inner.read_phys(p, d)
        }
        fn write_phys(&mut self, p: u64, d: &[u8]) -> crate::BusAction {
            self.inner.write_phys(p, d)
        }
        fn ram_ptr(&mut self, p: u64) -> Option<crate::RamPtr> {
            self.inner.ram_ptr(p)
        }
        fn io_in(&mut self, p: u16, s: u8) -> u32 {
            self.inner.io_in(p, s)
        }
        fn io_out(&mut self, p: u16, s: u8, v: u32) -> crate::BusAction {
            self.inner.io_out(p, s, v)
        }
        fn pending_interrupt(&mut self) -> bool {
            self.pending
        }
        fn acknowledge_interrupt(&mut self) -> Option<u8> {
            self.pending = false;
            Some(0x40)
        }
    }
    let code = asm(64, CODE, |a| {
        a.mov(ebx, 0).unwrap();
        a.sti().unwrap();
        a.mov(ebx, 1).unwrap();
        a.mov(ebx, 2).unwrap();
        a.hlt().unwrap();
    });
    let mut m = M::long64(&code);
    let h = HANDLERS + 0x4000;
    let hc = asm(64, h, |a| {
        a.mov(qword_ptr(REC + 0x100), rbx).unwrap();
        a.cli().unwrap();
        a.hlt().unwrap();
    });
    m.bus.load(h, &hc);
    m.idt64_gate(0x40, h, 0);
    let mut bus = IntBus {
        inner: m.bus,
        pending: true,
    };
    assert_eq!(m.cpu.run(&mut bus, 1000), ExitReason::Halt);
    // The instruction after STI ran before the interrupt was taken.
    assert_eq!(
        u64::from_le_bytes(
            bus.inner.ram[(REC + 0x100) as usize..][..8]
                .try_into()
                .unwrap()
        ),
        1
    );
}

#[test]
fn lar_lsl_verr_verw_and_segment_load_faults() {
    let m = run32(|a| {
        a.mov(ecx, DS32 as u32).unwrap();
        a.lar(eax, ecx).unwrap();
        a.mov(dword_ptr(REC as u32 + 0x100), eax).unwrap();
        a.lsl(ebx, ecx).unwrap();
        a.mov(dword_ptr(REC as u32 + 0x104), ebx).unwrap();
        a.verw(cx).unwrap();
        a.setz(byte_ptr(REC as u32 + 0x108)).unwrap();
        a.mov(ecx, CS32 as u32).unwrap();
        a.verw(cx).unwrap();
        a.setz(byte_ptr(REC as u32 + 0x109)).unwrap();
        a.verr(cx).unwrap();
        a.setz(byte_ptr(REC as u32 + 0x10a)).unwrap();
        // A code segment in SS: #GP(selector).
        a.mov(ss, cx).unwrap();
        a.hlt().unwrap();
    });
    // Access rights with the limit's bits 19:16 (undefined in the SDM,
    // returned by hardware).
    assert_eq!(m.read_u64(REC + 0x100) & 0xffff_ffff, 0x00cf_9300);
    assert_eq!(m.read_u64(REC + 0x104) & 0xffff_ffff, 0xffff_ffff);
    assert_eq!(
        m.bus.ram[(REC + 0x108) as usize..(REC + 0x10b) as usize],
        [1, 0, 1]
    );
    assert_eq!(m.rec().0, vector::GP as u64);
    assert_eq!(m.rec().1 & 0xffff, CS32 as u64);
}

#[test]
fn not_present_data_segment_gives_np_and_stack_gives_ss() {
    let code = asm(32, CODE, |a| {
        a.mov(eax, 0x50).unwrap();
        a.mov(ds, ax).unwrap();
        a.hlt().unwrap();
    });
    let mut m = M::prot32(&code);
    m.install_handlers32();
    // 0x50: a writable data segment with P = 0.
    m.bus
        .load(GDT + 0x50, &0x00cf_1300_0000_ffffu64.to_le_bytes());
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(m.rec().0, vector::NP as u64);
    assert_eq!(m.rec().1 & 0xffff, 0x50);
    let code = asm(32, CODE, |a| {
        a.mov(eax, 0x50).unwrap();
        a.mov(ss, ax).unwrap();
        a.hlt().unwrap();
    });
    let mut m = M::prot32(&code);
    m.install_handlers32();
    m.bus
        .load(GDT + 0x50, &0x00cf_1300_0000_ffffu64.to_le_bytes());
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(m.rec().0, vector::SS as u64);
    assert_eq!(m.rec().1 & 0xffff, 0x50);
}

#[test]
fn sysenter_sysexit_round_trip() {
    let user = CODE + 0x200;
    let kernel = CODE + 0x400;
    let code = asm(32, CODE, |a| {
        a.mov(ecx, 0x174).unwrap();
        a.mov(eax, CS32 as u32).unwrap();
        a.xor(edx, edx).unwrap();
        a.wrmsr().unwrap();
        a.mov(ecx, 0x175).unwrap();
        a.mov(eax, 0x60000).unwrap();
        a.wrmsr().unwrap();
        a.mov(ecx, 0x176).unwrap();
        a.mov(eax, kernel as u32).unwrap();
        a.wrmsr().unwrap();
        // SYSEXIT to ring 3: CS = CS32+16 = 0x18? No: the GDT has user code
        // at 0x30 = 0x08 + 0x28; use the flat selectors SYSEXIT computes.
        a.mov(edx, user as u32).unwrap();
        a.mov(ecx, 0x50000).unwrap();
        a.sysexit().unwrap();
    });
    let ucode = asm(32, user, |a| {
        a.mov(ebx, 0x42).unwrap();
        a.sysenter().unwrap();
    });
    let kcode = asm(32, kernel, |a| {
        a.hlt().unwrap();
    });
    let mut m = M::prot32(&code);
    m.install_handlers32();
    m.bus.load(user, &ucode);
    m.bus.load(kernel, &kcode);
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(m.gpr(RBX), 0x42);
    assert_eq!(m.cpu.state.segs[SegReg::Cs as usize].selector, CS32);
    assert_eq!(m.cpu.state.segs[SegReg::Ss as usize].selector, CS32 + 8);
    assert_eq!(m.gpr(RSP), 0x60000);
    assert_eq!(m.cpu.state.rip, kernel + 1);
}

#[test]
fn virtual_8086_round_trip_through_iret_and_int() {
    // Ring 0 IRETs into v8086 code at 0x2000:0x0000 with IOPL 3; the v86
    // code does INT 0x30, whose 32-bit gate returns to ring 0.
    let v86_lin = 0x20000u64;
    let code = asm(32, CODE, |a| {
        for v in [0x0u32, 0x0, 0x0, 0x0] {
            a.push(v).unwrap(); // GS, FS, DS, ES
        }
        a.push(0x3000u32).unwrap(); // SS
        a.push(0x100u32).unwrap(); // ESP
        a.push(0x0002_3002u32).unwrap(); // EFLAGS: VM, IOPL 3
        a.push(0x2000u32).unwrap(); // CS
        a.push(0u32).unwrap(); // EIP
        a.iretd().unwrap();
    });
    let vcode = asm(16, 0, |a| {
        a.mov(ax, 0x1234).unwrap();
        a.int(0x30).unwrap();
    });
    let h = HANDLERS + 0x3000;
    let hcode = asm(32, h, |a| {
        // Leaving v8086 mode nulled DS.
        a.mov(ebx, DS32 as u32).unwrap();
        a.mov(ds, bx).unwrap();
        a.mov(dword_ptr(REC as u32 + 0x100), eax).unwrap();
        a.mov(eax, dword_ptr(esp + 8)).unwrap();
        a.mov(dword_ptr(REC as u32 + 0x104), eax).unwrap();
        a.mov(eax, dword_ptr(esp + 16)).unwrap();
        a.mov(dword_ptr(REC as u32 + 0x108), eax).unwrap();
        a.hlt().unwrap();
    });
    let mut m = M::prot32(&code);
    m.install_handlers32();
    m.bus.load(v86_lin, &vcode);
    m.bus.load(h, &hcode);
    m.idt32_gate(0x30, h as u32, 3);
    m.bus.load(TSS + 4, &0x60000u32.to_le_bytes());
    m.bus.load(TSS + 8, &(DS32 as u32).to_le_bytes());
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(m.read_u64(REC + 0x100) & 0xffff, 0x1234);
    assert_eq!(
        m.read_u64(REC + 0x104) & rflags::VM,
        rflags::VM,
        "pushed EFLAGS.VM"
    );
    assert_eq!(m.read_u64(REC + 0x108) & 0xffff, 0x3000, "pushed v86 SS");
}

#[test]
fn rom_writes_are_ignored_and_mmio_goes_to_the_bus() {
    let code = asm(64, CODE, |a| {
        a.mov(rbx, 0xffff_0000u64).unwrap();
        a.mov(byte_ptr(rbx), 0x55).unwrap();
        a.mov(al, byte_ptr(rbx)).unwrap();
        a.mov(byte_ptr(REC + 0x100), al).unwrap();
        a.hlt().unwrap();
    });
    let mut m = M::long64(&code);
    m.bus = std::mem::replace(&mut m.bus, TestBus::new(0)).with_rom(vec![0xaa; 0x10000]);
    // Map 0xffff0000 (4th GiB) with a 2 MiB page covering it.
    m.bus
        .load(PML4 + 0x1000 + 3 * 8, &(PML4 + 0x3003).to_le_bytes());
    m.bus.load(
        PML4 + 0x3000 + 511 * 8,
        &(0xffe0_0000u64 | 0x83).to_le_bytes(),
    );
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(m.bus.ram[(REC + 0x100) as usize], 0xaa);
    assert_eq!(m.bus.rom[0], 0xaa);
}
