//! Page walks: 4-level 4 KiB pages with A/D bits, WP, U/S, NX, reserved
//! bits, INVLPG and CR3 reloads with global pages, 32-bit and PAE paging.

use iced_x86::code_asm::*;

use super::*;
use crate::exception::{pf_err, vector};

const VA: u64 = 0x4000_0000;
const PA: u64 = 0x20_0000;

fn long_with(code: &[u8], flags: u64) -> M {
    let mut m = M::long64(code);
    m.install_handlers64();
    m.map4k(VA, PA, flags);
    m
}

#[test]
fn four_level_walk_sets_accessed_and_dirty() {
    let code = asm(64, CODE, |a| {
        a.mov(rbx, VA + 8).unwrap();
        a.mov(rax, qword_ptr(rbx)).unwrap();
        a.mov(qword_ptr(REC + 0x100), rax).unwrap();
        a.hlt().unwrap();
    });
    let mut m = long_with(&code, 3);
    m.bus.load(PA + 8, &0xdead_beefu64.to_le_bytes());
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(m.read_u64(REC + 0x100), 0xdead_beef);
    let pte = m.read_u64(m.pte_addr(VA));
    assert_eq!(pte & 0x60, 0x20, "A set, D clear after a read");

    let code = asm(64, CODE, |a| {
        a.mov(rbx, VA + 16).unwrap();
        a.mov(qword_ptr(rbx), 0x55).unwrap();
        a.hlt().unwrap();
    });
    let mut m = long_with(&code, 3);
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(m.read_u64(PA + 16), 0x55);
    assert_eq!(
        m.read_u64(m.pte_addr(VA)) & 0x60,
        0x60,
        "A and D set after a write"
    );
}

#[test]
fn write_protect_and_read_only_pages() {
    let code = asm(64, CODE, |a| {
        a.mov(rbx, VA).unwrap();
        a.mov(qword_ptr(rbx), 1).unwrap();
        a.hlt().unwrap();
    });
    let mut m = long_with(&code, 1);
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(m.rec().0, vector::PF as u64);
    assert_eq!(m.rec().1, (pf_err::P | pf_err::W) as u64);
    assert_eq!(m.read_u64(REC + 40), VA);
    // CR0.WP = 0: supervisor writes to read-only pages succeed.
    let mut m = long_with(&code, 1);
    m.cpu.state.cr0 &= !crate::consts::cr0::WP;
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(m.rec().0, u64::MAX);
    assert_eq!(m.read_u64(PA), 1);
}

#[test]
fn nx_and_reserved_bits() {
    let code = asm(64, CODE, |a| {
        a.mov(rax, VA).unwrap();
        a.jmp(rax).unwrap();
    });
    let mut m = long_with(&code, 3 | (1 << 63));
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(m.rec().0, vector::PF as u64);
    assert_eq!(m.rec().1, (pf_err::P | pf_err::ID) as u64);
    assert_eq!(m.rec().2, VA);
    // A reserved physical-address bit.
    let code = asm(64, CODE, |a| {
        a.mov(rax, VA).unwrap();
        a.mov(rax, qword_ptr(rax)).unwrap();
        a.hlt().unwrap();
    });
    let mut m = long_with(&code, 3 | (1 << 51));
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(m.rec().1, (pf_err::P | pf_err::RSVD) as u64);
}

#[test]
fn user_access_to_supervisor_page_faults_with_us() {
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
        a.mov(rax, VA).unwrap();
        a.mov(rax, qword_ptr(rax)).unwrap();
        a.hlt().unwrap();
    });
    let mut m = long_with(&code, 3);
    m.bus.load(user, &ucode);
    // Low 1 GiB user-accessible; VA's tables have U set by map4k, PTE not.
    m.bus.load(PML4, &(PML4 + 0x1007).to_le_bytes());
    m.bus.load(PML4 + 0x1000, &(PML4 + 0x2007).to_le_bytes());
    for k in 0..512u64 {
        m.bus
            .load(PML4 + 0x2000 + k * 8, &((k << 21) | 0x87).to_le_bytes());
    }
    m.bus.load(TSS + 4, &0x60000u64.to_le_bytes());
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(m.rec().0, vector::PF as u64);
    assert_eq!(m.rec().1, (pf_err::P | pf_err::U) as u64);
}

#[test]
fn invlpg_and_cr3_reload_with_global_pages() {
    // Read VA, retarget the PTE, read again (stale TLB), INVLPG, read.
    let code = asm(64, CODE, |a| {
        a.mov(rbx, VA).unwrap();
        a.mov(rax, qword_ptr(rbx)).unwrap();
        a.mov(qword_ptr(REC + 0x100), rax).unwrap();
        a.mov(rcx, 0x30_0000 | 3u64).unwrap();
        a.mov(rdx, 0u64).unwrap(); // patched: PTE address
        a.mov(qword_ptr(rdx), rcx).unwrap();
        a.mov(rax, qword_ptr(rbx)).unwrap();
        a.mov(qword_ptr(REC + 0x108), rax).unwrap();
        a.invlpg(byte_ptr(rbx)).unwrap();
        a.mov(rax, qword_ptr(rbx)).unwrap();
        a.mov(qword_ptr(REC + 0x110), rax).unwrap();
        a.hlt().unwrap();
    });
    let mut m = long_with(&code, 3);
    let pte = m.pte_addr(VA);
    m.bus.load(PA, &1u64.to_le_bytes());
    m.bus.load(0x30_0000, &2u64.to_le_bytes());
    // Patch the `mov rdx, imm64` (4th instruction) immediate.
    let pos = code.windows(2).position(|w| w == [0x48, 0xba]).unwrap();
    m.bus.load(CODE + pos as u64 + 2, &pte.to_le_bytes());
    assert_eq!(m.run(), ExitReason::Halt);
    assert_eq!(m.read_u64(REC + 0x100), 1);
    assert_eq!(m.read_u64(REC + 0x108), 1, "stale translation until INVLPG");
    assert_eq!(m.read_u64(REC + 0x110), 2);

    // CR3 reload flushes non-global entries but keeps global ones.
    let mut tr = M::long64(&[]);
    tr.map4k(VA, PA, 3 | 0x100);
    tr.map4k(VA + 0x1000, PA + 0x1000, 3);
    let (ga, na) = (tr.pte_addr(VA), tr.pte_addr(VA + 0x1000));
    let st = tr.cpu.state;
    let mut mmu = crate::mmu::Mmu::new();
    let p1 = mmu
        .phys_addr(&st, &mut tr.bus, VA, crate::mmu::Access::Read, false)
        .unwrap();
    let p2 = mmu
        .phys_addr(
            &st,
            &mut tr.bus,
            VA + 0x1000,
            crate::mmu::Access::Read,
            false,
        )
        .unwrap();
    assert_eq!((p1, p2), (PA, PA + 0x1000));
    tr.bus.load(ga, &(0x30_0000u64 | 0x103).to_le_bytes());
    tr.bus.load(na, &(0x31_0000u64 | 3).to_le_bytes());
    mmu.flush_nonglobal();
    let p1 = mmu
        .phys_addr(&st, &mut tr.bus, VA, crate::mmu::Access::Read, false)
        .unwrap();
    let p2 = mmu
        .phys_addr(
            &st,
            &mut tr.bus,
            VA + 0x1000,
            crate::mmu::Access::Read,
            false,
        )
        .unwrap();
    assert_eq!(p1, PA, "global entry survives");
    assert_eq!(p2, 0x31_0000, "non-global entry re-walked");
}

/// 32-bit paging (4 KiB and PSE 4 MiB pages) and PAE, through the walker.
#[test]
fn legacy_and_pae_walks() {
    use crate::consts::{cr0, cr4};
    use crate::mmu::{walk, Access};
    let mut bus = TestBus::new(RAM);
    let mut st = CpuState::reset();
    st.cr0 = cr0::PE | cr0::PG;
    st.cr3 = 0x10000;
    // PDE 1 → PT at 0x11000; PTE 2 → 0x123000. PDE 2: 4 MiB page at 8 MiB.
    bus.load(0x10000 + 4, &0x11003u32.to_le_bytes());
    bus.load(0x11000 + 8, &0x0012_3007u32.to_le_bytes());
    bus.load(0x10000 + 8, &0x0080_0083u32.to_le_bytes());
    let w = walk(&st, &mut bus, 0x0040_2abc, Access::Write, false).unwrap();
    assert_eq!(w.paddr, 0x123000);
    assert_eq!(
        u32::from_le_bytes(bus.ram[0x11008..0x1100c].try_into().unwrap()) & 0x60,
        0x60
    );
    // PDE 1 lacks U: user read faults with P|U.
    let e = walk(&st, &mut bus, 0x0040_2abc, Access::Read, true);
    assert!(e.is_err());
    let e = walk(&st, &mut bus, 0x0040_2abc, Access::Read, false).unwrap();
    assert_eq!(e.paddr, 0x123000);
    // With CR4.PSE, PDE 2 maps a 4 MiB page.
    st.cr4 = cr4::PSE;
    let w = walk(&st, &mut bus, 0x0091_2345, Access::Read, false).unwrap();
    assert_eq!(w.paddr, 0x0091_2000);
    assert!(w.large);
    // Not present.
    let e = walk(&st, &mut bus, 0x0100_0000, Access::Read, false).unwrap_err();
    assert_eq!(
        (e.vector, e.error_code, e.address),
        (14, Some(0), 0x0100_0000)
    );

    // PAE: CR3 → 4 PDPTEs at 0x20000; PDPTE 0 → PD 0x21000; PDE 0 → PT 0x22000.
    st.cr4 = cr4::PAE;
    st.cr3 = 0x20000;
    bus.load(0x20000, &0x21001u64.to_le_bytes());
    bus.load(0x21000, &0x22003u64.to_le_bytes());
    bus.load(0x22000 + 5 * 8, &0x0045_6003u64.to_le_bytes());
    bus.load(0x21008, &0x0060_0083u64.to_le_bytes());
    let w = walk(&st, &mut bus, 0x5123, Access::Read, false).unwrap();
    assert_eq!(w.paddr, 0x456000);
    let w = walk(&st, &mut bus, 0x0020_1000, Access::Read, false).unwrap();
    assert_eq!(w.paddr, 0x0060_1000, "2 MiB PAE page");
    // NX bit without EFER.NXE is reserved.
    bus.load(0x22000 + 6 * 8, &(0x0045_7003u64 | (1 << 63)).to_le_bytes());
    let e = walk(&st, &mut bus, 0x6000, Access::Read, false).unwrap_err();
    assert_eq!(e.error_code, Some(pf_err::P | pf_err::RSVD));
}
