//! String instructions with REP prefixes: both directions, all sizes,
//! conditional repeats, zero counts, 16-bit addressing, and a #PF in the
//! middle of a REP MOVS (registers reflect the completed iterations).

use crate::harness::*;
use crate::paging::ring3_64;
use iced_x86::code_asm::*;

fn pattern(g: &mut Guest, at: u64, n: usize) {
    let p: Vec<u8> = (0..n)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(3))
        .collect();
    g.write(at, &p);
}

#[test]
fn rep_movs_stos_forward_backward_64() {
    let mut g = Guest::new(Mode::Long64);
    pattern(&mut g, SCRATCH, 0x200);
    ring3_64(&mut g, |a| {
        a.mov(esi, SCRATCH as u32)?;
        a.mov(edi, (SCRATCH + 0x1000) as u32)?;
        a.mov(ecx, 37u32)?;
        a.rep().movsb()?;
        a.mov(r8, rsi)?;
        a.mov(r9, rdi)?;
        // Backward dwords.
        a.std()?;
        a.mov(esi, (SCRATCH + 0x100) as u32)?;
        a.mov(edi, (SCRATCH + 0x2100) as u32)?;
        a.mov(ecx, 9u32)?;
        a.rep().movsd()?;
        a.cld()?;
        a.mov(r10, rsi)?;
        a.mov(r11, rdi)?;
        // Overlapping forward byte copy (replicates the first 3 bytes).
        a.mov(esi, (SCRATCH + 0x1000) as u32)?;
        a.mov(edi, (SCRATCH + 0x1003) as u32)?;
        a.mov(ecx, 20u32)?;
        a.rep().movsb()?;
        // Stores.
        a.mov(rax, 0x1122_3344_5566_7788u64)?;
        a.mov(edi, (SCRATCH + 0x3000) as u32)?;
        a.mov(ecx, 5u32)?;
        a.rep().stosq()?;
        a.mov(ecx, 3u32)?;
        a.rep().stosw()?;
        // A zero count does nothing.
        a.xor(ecx, ecx)?;
        a.rep().stosb()?;
        a.mov(r12, rdi)?;
        // LODS keeps the last element.
        a.mov(esi, SCRATCH as u32)?;
        a.mov(ecx, 4u32)?;
        a.rep().lodsd()
    });
    Case::new("rep_movs_stos_forward_backward_64", g)
        .check(|o| {
            let e = o.faulted(3, 0);
            assert_eq!(e.cs, sel::UCODE64 as u64);
            assert_eq!((o.gpr(8), o.gpr(9)), (SCRATCH + 37, SCRATCH + 0x1025));
            assert_eq!(
                (o.gpr(10), o.gpr(11)),
                (SCRATCH + 0x100 - 36, SCRATCH + 0x2100 - 36)
            );
            assert_eq!(o.u64(SCRATCH + 0x3020), 0x1122_3344_5566_7788);
            assert_eq!(o.gpr(12), SCRATCH + 0x3000 + 40 + 6);
            assert_eq!(o.gpr(0), o.u32(SCRATCH + 12) as u64);
            assert_eq!(o.u8(SCRATCH + 0x1003), o.u8(SCRATCH + 0x1000));
        })
        .run();
}

#[test]
fn repe_cmps_and_repne_scas_64() {
    let mut g = Guest::new(Mode::Long64);
    g.write(SCRATCH, b"hello, world!");
    g.write(SCRATCH + 0x100, b"hello, there!");
    ring3_64(&mut g, |a| {
        a.mov(esi, SCRATCH as u32)?;
        a.mov(edi, (SCRATCH + 0x100) as u32)?;
        a.mov(ecx, 13u32)?;
        a.repe().cmpsb()?;
        a.pushfq()?;
        a.pop(r8)?;
        a.and(r8, 0x8d5)?; // status flags (this KVM shows IF=1 in ring 3)
        a.mov(r9, rcx)?;
        a.mov(r10, rsi)?;
        a.mov(edi, SCRATCH as u32)?;
        a.mov(al, b'w' as u32)?;
        a.mov(ecx, 13u32)?;
        a.repne().scasb()?;
        a.pushfq()?;
        a.pop(r11)?;
        a.and(r11, 0x8d5)?;
        a.mov(r12, rcx)?;
        a.mov(al, b'#' as u32)?;
        a.mov(edi, SCRATCH as u32)?;
        a.mov(ecx, 13u32)?;
        a.repne().scasb()
    });
    Case::new("repe_cmps_and_repne_scas_64", g)
        .check(|o| {
            o.faulted(3, 0);
            assert_eq!(o.gpr(9), 5, "mismatch at index 7: 13 - 8 left");
            assert_eq!(o.gpr(10), SCRATCH + 8);
            assert_eq!(o.gpr(8) & 0x40, 0, "ZF clear after a mismatch");
            assert_eq!(o.gpr(12), 5, "'w' found at index 7");
            assert_eq!(o.gpr(11) & 0x40, 0x40);
            assert_eq!(o.gpr(1), 0, "not found: RCX exhausted");
        })
        .run();
}

#[test]
fn rep_movsw_real_mode() {
    let mut g = Guest::new(Mode::Real);
    pattern(&mut g, DATA + 0x200, 0x100);
    let mut a = g.asm();
    a.push(ds).unwrap();
    a.pop(es).unwrap();
    a.mov(si, 0x200u32).unwrap();
    a.mov(di, 0x400u32).unwrap();
    a.mov(cx, 0x30u32).unwrap();
    a.rep().movsw().unwrap();
    a.mov(di, 0x600u32).unwrap();
    a.mov(ax, 0xbeefu32).unwrap();
    a.mov(cx, 4u32).unwrap();
    a.rep().stosw().unwrap();
    end(&mut a).unwrap();
    g.load(&mut a);
    Case::new("rep_movsw_real_mode", g)
        .check(|o| {
            o.ended();
            assert_eq!(o.gpr(6) & 0xffff, 0x260);
            assert_eq!(o.u16(DATA + 0x606), 0xbeef);
            assert_eq!(o.u8(DATA + 0x45f), o.u8(DATA + 0x25f));
        })
        .run();
}

#[test]
fn rep_movs_page_fault_midway() {
    let mut g = Guest::new(Mode::Long64);
    pattern(&mut g, SCRATCH + 0xf00, 0x100);
    g.set_pte(SCRATCH + 0x1000, 0); // the source runs into a missing page
    ring3_64(&mut g, |a| {
        a.mov(esi, (SCRATCH + 0xff0) as u32)?;
        a.mov(edi, (SCRATCH + 0x4000) as u32)?;
        a.mov(ecx, 0x20u32)?;
        a.rep().movsb()
    });
    Case::new("rep_movs_page_fault_midway", g)
        .check(|o| {
            let e = o.faulted(14, 4); // not present, read, user
            assert_eq!(e.cr2, SCRATCH + 0x1000);
            assert_eq!(e.rip, CODE + 0x1000 + 15, "RIP at the REP MOVSB");
            assert_eq!(o.gpr(1), 0x10, "RCX: 16 bytes copied");
            assert_eq!(o.gpr(6), SCRATCH + 0x1000);
            assert_eq!(o.gpr(7), SCRATCH + 0x4010);
        })
        .run();
}
