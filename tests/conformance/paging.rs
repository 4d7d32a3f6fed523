//! Paging: 32-bit, PSE, PAE and 4-level walks, accessed/dirty bits as the
//! hardware sets them, #PF error codes and CR2, WP, U/S, NX, reserved bits,
//! INVLPG.

use crate::harness::*;
use iced_x86::code_asm::*;

const A: u64 = 1 << 5;
const D: u64 = 1 << 6;

/// Reads SCRATCH, writes SCRATCH+0x1000, reads SCRATCH+0x2008.
fn touch(a: &mut CodeAssembler, bits: u32) -> Result<(), IcedError> {
    if bits == 64 {
        a.mov(rax, qword_ptr(SCRATCH))?;
        a.mov(qword_ptr(SCRATCH + 0x1000), rax)?;
        a.mov(rbx, qword_ptr(SCRATCH + 0x2008))
    } else {
        a.mov(eax, dword_ptr(SCRATCH))?;
        a.mov(dword_ptr(SCRATCH + 0x1000), eax)?;
        a.mov(ebx, dword_ptr(SCRATCH + 0x2008))
    }
}

fn ad_case(name: &'static str, mode: Mode, paging: Paging) -> Case {
    let mut g = Guest::with_paging(mode, paging);
    let mut a = g.asm();
    touch(&mut a, g.bits()).unwrap();
    end(&mut a).unwrap();
    g.load(&mut a);
    let ptes: Vec<u64> = [
        SCRATCH,
        SCRATCH + 0x1000,
        SCRATCH + 0x2000,
        SCRATCH + 0x3000,
    ]
    .iter()
    .map(|&va| g.pte_addr(va))
    .collect();
    let wide = paging != Paging::Bits32;
    let upper: Vec<u64> = match paging {
        Paging::Bits32 => vec![PT],
        Paging::Pae => vec![PT + 0x1000],
        _ => vec![PT, PT + 0x1000, PT + 0x2000],
    };
    Case::new(name, g).check(move |o| {
        o.ended();
        let rd = |a: u64| if wide { o.u64(a) } else { o.u32(a) as u64 };
        assert_eq!(rd(ptes[0]) & (A | D), A, "read page: A only");
        assert_eq!(rd(ptes[1]) & (A | D), A | D, "written page: A and D");
        assert_eq!(rd(ptes[2]) & (A | D), A, "read page: A only");
        assert_eq!(rd(ptes[3]) & (A | D), 0, "untouched page");
        for &u in &upper {
            assert_eq!(rd(u) & A, A, "non-leaf entry at {u:#x}: A");
        }
    })
}

#[test]
fn paging32_accessed_dirty() {
    ad_case("paging32_accessed_dirty", Mode::Prot32, Paging::Bits32).run();
}

#[test]
fn pae_accessed_dirty() {
    ad_case("pae_accessed_dirty", Mode::Prot32, Paging::Pae).run();
}

#[test]
fn level4_accessed_dirty() {
    ad_case("level4_accessed_dirty", Mode::Long64, Paging::Level4).run();
}

#[test]
fn pse_4m_pages() {
    let mut g = Guest::with_paging(Mode::Prot32, Paging::Pse);
    let mut a = g.asm();
    // PDE 1 aliases physical 0 at 4 MiB.
    a.mov(dword_ptr(0x40_0000 + SCRATCH), 0xfeed_f00du32)
        .unwrap();
    a.mov(eax, dword_ptr(SCRATCH)).unwrap();
    end(&mut a).unwrap();
    g.load(&mut a);
    Case::new("pse_4m_pages", g)
        .check(|o| {
            o.ended();
            assert_eq!(o.gpr(0), 0xfeed_f00d);
            assert_eq!(o.u32(PT) as u64 & (A | D), A, "PDE 0 (code, reads)");
            assert_eq!(o.u32(PT + 4) as u64 & (A | D), A | D, "PDE 1 (written)");
        })
        .run();
}

/// A #PF case: `body` faults on a page whose PTE `pte` replaced.
#[allow(clippy::too_many_arguments)]
fn pf_case(
    name: &'static str,
    mode: Mode,
    paging: Paging,
    va: u64,
    pte: u64,
    setup: impl FnOnce(&mut Guest),
    body: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>,
    error: u64,
    fault_addr: u64,
) -> Case {
    let mut g = Guest::with_paging(mode, paging);
    g.set_pte(va, pte);
    setup(&mut g);
    let mut a = g.asm();
    body(&mut a).unwrap();
    end(&mut a).unwrap();
    g.load(&mut a);
    Case::new(name, g).check(move |o| {
        let e = o.faulted(14, error);
        assert_eq!(e.cr2 & 0xffff_ffff, fault_addr, "CR2");
        assert_eq!(o.state.cr2 & 0xffff_ffff, fault_addr, "CR2 register");
    })
}

const PAGE: u64 = SCRATCH + 0x5000;

#[test]
fn pf_not_present_read_64() {
    pf_case(
        "pf_not_present_read_64",
        Mode::Long64,
        Paging::Level4,
        PAGE,
        0,
        |_| {},
        |a| a.mov(rax, qword_ptr(PAGE + 0x18)),
        0,
        PAGE + 0x18,
    )
    .run();
}

#[test]
fn pf_not_present_write_32() {
    pf_case(
        "pf_not_present_write_32",
        Mode::Prot32,
        Paging::Bits32,
        PAGE,
        PAGE | 6, // P clear, other bits set
        |_| {},
        |a| a.mov(dword_ptr(PAGE + 0xffe), 1),
        2,
        PAGE + 0xffe,
    )
    .run();
}

#[test]
fn pf_write_protect_supervisor() {
    pf_case(
        "pf_write_protect_supervisor",
        Mode::Long64,
        Paging::Level4,
        PAGE,
        PAGE | 5,                   // P | US, read-only
        |g| g.state.cr0 |= 1 << 16, // WP
        |a| a.mov(byte_ptr(PAGE + 7), 1),
        3,
        PAGE + 7,
    )
    .run();
}

#[test]
fn wp_clear_supervisor_may_write_read_only() {
    let mut g = Guest::new(Mode::Long64);
    g.set_pte(PAGE, PAGE | 5);
    let pte = g.pte_addr(PAGE);
    let mut a = g.asm();
    a.mov(byte_ptr(PAGE + 7), 0x42).unwrap();
    end(&mut a).unwrap();
    g.load(&mut a);
    Case::new("wp_clear_supervisor_may_write_read_only", g)
        .check(move |o| {
            o.ended();
            assert_eq!(o.u8(PAGE + 7), 0x42);
            assert_eq!(o.u64(pte), PAGE | 5 | A | D);
        })
        .run();
}

#[test]
fn pf_reserved_bit_in_pml4e() {
    pf_case(
        "pf_reserved_bit_in_pml4e",
        Mode::Long64,
        Paging::Level4,
        PAGE,
        PAGE | 7,
        // A second PML4 entry (512 GiB) with PS set, which is reserved there.
        |g| g.write_u64(PT + 8, (PT + 0x1000) | 0x87),
        |a| a.mov(rax, qword_ptr(0x80_0000_0000u64 + 0x10)),
        9, // P | RSVD
        0x10,
    )
    .run();
}

#[test]
fn pf_nx_fetch_64() {
    pf_case(
        "pf_nx_fetch_64",
        Mode::Long64,
        Paging::Level4,
        PAGE,
        PAGE | 7 | (1 << 63),
        |g| {
            g.state.efer |= 1 << 11; // NXE
            g.write(PAGE, &[0xc3]);
        },
        |a| {
            a.mov(eax, PAGE as u32)?;
            a.call(rax)
        },
        0x11, // P | I/D
        PAGE,
    )
    .run();
}

#[test]
fn pf_nx_fetch_pae() {
    pf_case(
        "pf_nx_fetch_pae",
        Mode::Prot32,
        Paging::Pae,
        PAGE,
        PAGE | 7 | (1 << 63),
        |g| {
            g.state.efer |= 1 << 11;
            g.write(PAGE, &[0xc3]);
        },
        |a| {
            a.mov(eax, PAGE as u32)?;
            a.call(eax)
        },
        0x11,
        PAGE,
    )
    .run();
}

#[test]
fn nx_data_access_is_allowed() {
    let mut g = Guest::new(Mode::Long64);
    g.state.efer |= 1 << 11;
    g.set_pte(PAGE, PAGE | 7 | (1 << 63));
    let mut a = g.asm();
    a.mov(qword_ptr(PAGE), 0x1234).unwrap();
    a.mov(rax, qword_ptr(PAGE)).unwrap();
    end(&mut a).unwrap();
    g.load(&mut a);
    Case::new("nx_data_access_is_allowed", g)
        .check(|o| {
            o.ended();
            assert_eq!(o.gpr(0), 0x1234);
        })
        .run();
}

/// Runs `user` in ring 3 (64-bit) from a fresh long-mode guest; the user
/// code is at `CODE + 0x1000`, its stack at `USER_STACK_TOP`.
pub fn ring3_64(g: &mut Guest, user: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) {
    ring3_64_after(g, |_| Ok(()), user)
}

/// [`ring3_64`] after ring 0 ran `setup`.
pub fn ring3_64_after(
    g: &mut Guest,
    setup: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>,
    user: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>,
) {
    let mut a = g.asm();
    setup(&mut a).unwrap();
    user_data_segments(&mut a).unwrap();
    a.push(sel::UDATA as i32).unwrap();
    a.push(USER_STACK_TOP as i32).unwrap();
    a.push(USER_RFLAGS as i32).unwrap();
    a.push(sel::UCODE64 as i32).unwrap();
    a.push((CODE + 0x1000) as i32).unwrap();
    a.iretq().unwrap();
    g.load(&mut a);
    let mut u = CodeAssembler::new(64).unwrap();
    user(&mut u).unwrap();
    u.int3().unwrap();
    g.load_at(&mut u, CODE + 0x1000, CODE + 0x1000);
}

#[test]
fn pf_user_reads_supervisor_page() {
    let mut g = Guest::new(Mode::Long64);
    g.set_pte(PAGE, PAGE | 3); // P | RW, supervisor
    ring3_64(&mut g, |a| a.mov(rax, qword_ptr(PAGE + 0x40)));
    Case::new("pf_user_reads_supervisor_page", g)
        .check(|o| {
            let e = o.faulted(14, 5); // P | U
            assert_eq!(e.cr2, PAGE + 0x40);
            assert_eq!(e.cs, sel::UCODE64 as u64);
            assert_eq!(e.ss, sel::UDATA as u64);
            assert_eq!(e.rsp, USER_STACK_TOP);
        })
        .run();
}

#[test]
fn pf_user_writes_read_only_page() {
    let mut g = Guest::new(Mode::Long64);
    g.set_pte(PAGE, PAGE | 5); // P | US
    ring3_64(&mut g, |a| a.mov(dword_ptr(PAGE + 0x40), eax));
    Case::new("pf_user_writes_read_only_page", g)
        .check(|o| {
            let e = o.faulted(14, 7); // P | W | U
            assert_eq!(e.cr2, PAGE + 0x40);
        })
        .run();
}

#[test]
fn pf_user_upper_level_supervisor() {
    let mut g = Guest::new(Mode::Long64);
    // The PDE covering the first 2 MiB loses U/S: every user access faults.
    let pde = g.read_u64(PT + 0x2000);
    g.write_u64(PT + 0x2000, pde & !4);
    ring3_64(&mut g, |a| a.nop());
    Case::new("pf_user_upper_level_supervisor", g)
        .check(|o| {
            // P | U; I/D stays clear: EFER.NXE = CR4.SMEP = 0 (SDM 4.7).
            let e = o.faulted(14, 5);
            assert_eq!(e.cr2, CODE + 0x1000);
        })
        .run();
}

#[test]
fn invlpg_and_cr3_reload() {
    let mut g = Guest::new(Mode::Long64);
    g.write_u64(SCRATCH + 0x6000, 0x6666);
    g.write_u64(SCRATCH + 0x7000, 0x7777);
    let pte = g.pte_addr(PAGE);
    let mut a = g.asm();
    a.mov(rax, qword_ptr(PAGE)).unwrap(); // the original page (zero)
    a.mov(qword_ptr(pte), (SCRATCH + 0x6000 + 7) as i32)
        .unwrap();
    a.invlpg(byte_ptr(PAGE)).unwrap();
    a.mov(rbx, qword_ptr(PAGE)).unwrap(); // 0x6666
    a.mov(qword_ptr(pte), (SCRATCH + 0x7000 + 7) as i32)
        .unwrap();
    a.mov(rdx, cr3).unwrap();
    a.mov(cr3, rdx).unwrap();
    a.mov(rcx, qword_ptr(PAGE)).unwrap(); // 0x7777
    end(&mut a).unwrap();
    g.load(&mut a);
    Case::new("invlpg_and_cr3_reload", g)
        .check(|o| {
            o.ended();
            assert_eq!((o.gpr(0), o.gpr(3), o.gpr(1)), (0, 0x6666, 0x7777));
        })
        .run();
}
