//! Every CPU mode: real, 16/32-bit protected, long, compatibility, and the
//! switches between them.

use crate::harness::*;
use iced_x86::code_asm::*;

#[test]
fn long64_basic() {
    simple("long64_basic", Mode::Long64, |a| {
        a.mov(rax, 0x1122_3344_5566_7788u64)?;
        a.mov(rbx, rax)?;
        a.add(rbx, 1)?;
        a.mov(qword_ptr(DATA), rbx)?;
        a.push(rbx)?;
        a.pop(rcx)?;
        a.mov(r15, -1i64)?;
        a.inc(r15)
    })
    .check(|o| {
        o.ended();
        assert_eq!(o.gpr(3), 0x1122_3344_5566_7789);
        assert_eq!(o.u64(DATA), 0x1122_3344_5566_7789);
        assert_eq!(o.gpr(15), 0);
    })
    .run();
}

#[test]
fn real_basic() {
    simple("real_basic", Mode::Real, |a| {
        a.mov(ax, 0x1234u32)?;
        a.mov(word_ptr(0), ax)?;
        a.push(ax)?;
        a.pop(bx)?;
        a.add(bx, 0x10)
    })
    .check(|o| {
        o.ended();
        assert_eq!(o.u16(DATA), 0x1234);
        assert_eq!(o.gpr(3), 0x1244);
    })
    .run();
}

#[test]
fn prot32_basic() {
    simple("prot32_basic", Mode::Prot32, |a| {
        a.mov(eax, 0x8000_0000u32)?;
        a.add(eax, eax)?;
        a.mov(dword_ptr(DATA), 0x55)
    })
    .check(|o| {
        o.ended();
        assert_eq!(o.gpr(0), 0);
        assert_eq!(o.u32(DATA), 0x55);
    })
    .run();
}

#[test]
fn prot16_basic() {
    simple("prot16_basic", Mode::Prot16, |a| {
        a.mov(ax, 0xffffu32)?;
        a.inc(ax)?;
        a.mov(word_ptr(4), 0x77)
    })
    .check(|o| {
        o.ended();
        assert_eq!(o.gpr(0), 0);
        assert_eq!(o.u16(DATA + 4), 0x77);
    })
    .run();
}

#[test]
fn compat32_basic() {
    simple("compat32_basic", Mode::Compat32, |a| {
        a.mov(eax, 7u32)?;
        a.imul_3(eax, eax, 6)?;
        a.mov(dword_ptr(DATA), eax)
    })
    .check(|o| {
        o.ended();
        assert_eq!(o.u32(DATA), 42);
    })
    .run();
}

#[test]
fn long64_ud_default_handler() {
    simple("long64_ud", Mode::Long64, |a| a.ud2())
        .check(|o| {
            let e = o.faulted(6, 0);
            assert_eq!(e.rip, CODE);
        })
        .run();
}

/// `jmp far ptr16:32` (valid in 16-bit code with a 66 prefix and in 32-bit code).
fn jmp_far32(a: &mut CodeAssembler, o16: bool, sel: u16, off: u32) -> Result<(), IcedError> {
    let mut b = Vec::new();
    if o16 {
        b.push(0x66);
    }
    b.push(0xea);
    b.extend_from_slice(&off.to_le_bytes());
    b.extend_from_slice(&sel.to_le_bytes());
    a.db(&b)
}

fn accessed(o: &Outcome, s: u16) -> bool {
    o.u8(GDT + (s & !7) as u64 + 5) & 1 != 0
}

#[test]
fn real_to_prot32() {
    let mut g = Guest::new(Mode::Real);
    // GDT pointer at DS:0x100 (DS = 0x2000).
    g.write_u16(DATA + 0x100, 0xfff);
    g.write_u32(DATA + 0x102, GDT as u32);
    let mut a = g.asm();
    a.cli().unwrap();
    a.lgdt(ptr(0x100)).unwrap();
    a.mov(eax, cr0).unwrap();
    a.or(eax, 1).unwrap();
    a.mov(cr0, eax).unwrap();
    jmp_far32(&mut a, true, sel::CODE32, (CODE + 0x100) as u32).unwrap();
    g.load(&mut a);
    let mut b = CodeAssembler::new(32).unwrap();
    b.mov(ax, sel::DATA as u32).unwrap();
    b.mov(ds, ax).unwrap();
    b.mov(es, ax).unwrap();
    b.mov(ss, ax).unwrap();
    b.mov(esp, STACK_TOP as u32).unwrap();
    b.push(0x1234_5678).unwrap();
    b.pop(dword_ptr(DATA)).unwrap();
    end(&mut b).unwrap();
    g.load_at(&mut b, CODE + 0x100, CODE + 0x100);
    Case::new("real_to_prot32", g)
        .check(|o| {
            o.ended();
            assert_eq!(o.state.mode(), x86::CpuMode::Protected32);
            assert_eq!(o.u32(DATA), 0x1234_5678);
            assert_eq!(o.state.seg(x86::SegReg::Cs).selector, sel::CODE32);
            assert!(accessed(o, sel::CODE32), "CS descriptor accessed bit");
            assert!(accessed(o, sel::DATA), "DS descriptor accessed bit");
        })
        .run();
}

#[test]
fn prot32_to_long64() {
    let mut g = Guest::new(Mode::Prot32);
    g.write_page_tables(Paging::Level4);
    let mut a = g.asm();
    a.mov(eax, cr4).unwrap();
    a.or(eax, 1 << 5).unwrap(); // PAE
    a.mov(cr4, eax).unwrap();
    a.mov(eax, PT as u32).unwrap();
    a.mov(cr3, eax).unwrap();
    a.mov(ecx, 0xc000_0080u32).unwrap();
    a.rdmsr().unwrap();
    a.or(eax, 1 << 8).unwrap(); // LME
    a.wrmsr().unwrap();
    a.mov(eax, cr0).unwrap();
    a.or(eax, 0x8000_0000u32).unwrap();
    a.mov(cr0, eax).unwrap();
    jmp_far32(&mut a, false, sel::CODE64, (CODE + 0x100) as u32).unwrap();
    g.load(&mut a);
    let mut b = CodeAssembler::new(64).unwrap();
    b.mov(rax, 0x1_2345_6789u64).unwrap();
    b.mov(qword_ptr(DATA), rax).unwrap();
    b.mov(r9, rsp).unwrap();
    b.push(rax).unwrap();
    end(&mut b).unwrap();
    g.load_at(&mut b, CODE + 0x100, CODE + 0x100);
    Case::new("prot32_to_long64", g)
        .check(|o| {
            o.ended();
            assert_eq!(o.state.mode(), x86::CpuMode::Long64);
            assert_eq!(o.state.efer & 0x500, 0x500, "EFER.LME|LMA");
            assert_eq!(o.u64(DATA), 0x1_2345_6789);
            assert!(accessed(o, sel::CODE64));
        })
        .run();
}

#[test]
fn long64_compat32_round_trip() {
    let mut g = Guest::new(Mode::Long64);
    let mut a = g.asm();
    a.push(sel::CODE32 as i32).unwrap();
    a.mov(eax, (CODE + 0x100) as u32).unwrap();
    a.push(rax).unwrap();
    a.db(&[0x48, 0xcb]).unwrap(); // retfq
    g.load(&mut a);
    let mut b = CodeAssembler::new(32).unwrap();
    b.mov(eax, 0xffff_fff0u32).unwrap();
    b.add(eax, 0x20).unwrap(); // wraps at 32 bits in compatibility mode
    b.mov(dword_ptr(DATA), eax).unwrap();
    b.pushfd().unwrap();
    b.pop(ebx).unwrap();
    jmp_far32(&mut b, false, sel::CODE64, (CODE + 0x200) as u32).unwrap();
    g.load_at(&mut b, CODE + 0x100, CODE + 0x100);
    let mut c = CodeAssembler::new(64).unwrap();
    c.mov(rcx, -1i64).unwrap();
    c.mov(ecx, 5u32).unwrap(); // zero-extends in 64-bit mode
    end(&mut c).unwrap();
    g.load_at(&mut c, CODE + 0x200, CODE + 0x200);
    Case::new("long64_compat32_round_trip", g)
        .check(|o| {
            o.ended();
            assert_eq!(o.state.mode(), x86::CpuMode::Long64);
            assert_eq!(o.u32(DATA), 0x10);
            assert_eq!(o.gpr(3) & 1, 1, "CF from the 32-bit add");
            assert_eq!(o.gpr(1), 5);
        })
        .run();
}

#[test]
fn prot32_to_prot16_to_real() {
    let mut g = Guest::new(Mode::Prot32);
    let mut a = g.asm();
    // To 16-bit protected mode (CODE16 has base CODE).
    a.db(&[0xea]).unwrap();
    a.db(&0x100u32.to_le_bytes()).unwrap();
    a.db(&sel::CODE16.to_le_bytes()).unwrap();
    g.load(&mut a);
    let mut b = CodeAssembler::new(16).unwrap();
    b.mov(ax, sel::DATA16 as u32).unwrap();
    b.mov(ds, ax).unwrap();
    b.mov(word_ptr(0x10), 0x1616).unwrap(); // DS base = DATA
    b.mov(eax, cr0).unwrap();
    b.and(eax, !1i32).unwrap();
    b.mov(cr0, eax).unwrap();
    b.db(&[0xea]).unwrap(); // jmp 0x1000:0x200
    b.db(&0x200u16.to_le_bytes()).unwrap();
    b.db(&0x1000u16.to_le_bytes()).unwrap();
    g.load_at(&mut b, CODE + 0x100, 0x100);
    let mut c = CodeAssembler::new(16).unwrap();
    c.mov(ax, 0x2000u32).unwrap();
    c.mov(ds, ax).unwrap();
    c.mov(ss, ax).unwrap();
    c.mov(sp, 0xff00u32).unwrap();
    c.mov(word_ptr(0x12), 0x8086).unwrap();
    c.push(cs).unwrap();
    c.pop(bx).unwrap();
    end(&mut c).unwrap();
    g.load_at(&mut c, CODE + 0x200, 0x200);
    Case::new("prot32_to_prot16_to_real", g)
        .check(|o| {
            o.ended();
            assert_eq!(o.state.mode(), x86::CpuMode::Real);
            assert_eq!(o.u16(DATA + 0x10), 0x1616);
            assert_eq!(o.u16(DATA + 0x12), 0x8086);
            assert_eq!(o.gpr(3), 0x1000);
        })
        .run();
}

#[test]
fn prot16_operand_size_prefixes() {
    simple("prot16_operand_size_prefixes", Mode::Prot16, |a| {
        a.mov(eax, 0x1234_5678u32)?; // 66 prefix
        a.mov(dword_ptr(0x20), eax)?;
        a.mov(bx, 0x20u32)?;
        a.mov(cx, word_ptr(bx + 2))?;
        a.mov(esi, 0x10u32)?;
        a.mov(dx, word_ptr(esi + 0x10))?; // 67 prefix, 32-bit address
        a.movzx(edi, byte_ptr(bx + 3))
    })
    .check(|o| {
        o.ended();
        assert_eq!(o.gpr(1) & 0xffff, 0x1234);
        assert_eq!(o.gpr(2) & 0xffff, 0x5678);
        assert_eq!(o.gpr(7), 0x12);
    })
    .run();
}

#[test]
fn real_segment_arithmetic() {
    simple("real_segment_arithmetic", Mode::Real, |a| {
        a.mov(ax, 0x2010u32)?;
        a.mov(es, ax)?;
        a.mov(word_ptr(0x100), 0xaaaa)?; // DS:0x100 = 0x20100
        a.mov(bx, word_ptr(0).es())?; // ES:0 = 0x20100 too
        a.mov(di, 0xffffu32)?;
        a.mov(byte_ptr(di).es(), 0x5a)?; // 0x20100 + 0xffff
        a.xor(si, si)?;
        a.dec(si)?;
        a.mov(cl, byte_ptr(si + 0x100)) // offset wraps at 64 KiB: DS:0xff
    })
    .check(|o| {
        o.ended();
        assert_eq!(o.gpr(3) & 0xffff, 0xaaaa);
        assert_eq!(o.u8(0x20100 + 0xffff), 0x5a);
    })
    .run();
}
