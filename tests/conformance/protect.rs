//! Protection features (SDM vol. 3, 2.5 and 4.6): UMIP, SMEP, SMAP (with
//! the EFLAGS.AC override and implicit supervisor accesses), protection
//! keys for user pages (PKU) and for supervisor pages (PKS). Each case
//! makes every page of the guest supervisor-only except the ones it
//! names, as a kernel would.

use crate::harness::*;
use crate::paging::ring3_64_after;
use iced_x86::code_asm::*;
use x86::consts::{cr0, cr4};

const PAGE: u64 = SCRATCH + 0x5000;
const LDT: u64 = SCRATCH + 0x6000;
const PK: u64 = 1 << 5;

/// Why KVM cannot run a case needing `flag` here (None: it can try).
fn host_lacks(flag: &str) -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let has = info
        .lines()
        .find(|l| l.starts_with("flags"))
        .is_some_and(|l| l.split_whitespace().any(|f| f == flag));
    (!has).then(|| format!("the host CPU has no {flag}"))
}

fn kvm_needs(c: Case, flag: &str) -> Case {
    match host_lacks(flag) {
        Some(why) => c.kvm_cannot(&why),
        None => c,
    }
}

/// Clears U/S in every leaf PTE of the identity map except `user`'s pages.
fn supervisor_only(g: &mut Guest, user: &[u64]) {
    for va in (0..RAM as u64).step_by(0x1000) {
        if !user.contains(&(va & !0xfff)) {
            let p = g.pte(va);
            g.set_pte(va, p & !4);
        }
    }
}

/// `cr4 |= bits` (clobbers RAX).
fn set_cr4(a: &mut CodeAssembler, bits: u64) -> Result<(), IcedError> {
    a.mov(rax, cr4)?;
    a.or(rax, bits as i32)?;
    a.mov(cr4, rax)
}

/// The pages ring 3 code needs: its code and its stack.
const RING3_PAGES: [u64; 2] = [CODE + 0x1000, USER_STACK_TOP - 0x1000];

#[test]
fn umip_ring3_smsw_gp() {
    let mut g = Guest::new(Mode::Long64);
    supervisor_only(&mut g, &RING3_PAGES);
    ring3_64_after(
        &mut g,
        |a| {
            set_cr4(a, cr4::UMIP)?;
            // CPL 0 still may.
            a.sgdt(ptr(DATA))?;
            a.sidt(ptr(DATA + 0x10))?;
            a.smsw(word_ptr(DATA + 0x20))?;
            a.str(word_ptr(DATA + 0x28))?;
            a.sldt(word_ptr(DATA + 0x30))
        },
        |u| {
            u.mov(ebx, 0x55u32)?;
            u.smsw(eax)
        },
    );
    let c = Case::new("umip_ring3_smsw_gp", g).check(|o| {
        let e = o.faulted(13, 0);
        assert_eq!(e.cs, sel::UCODE64 as u64, "faulted in ring 3");
        assert_eq!(o.gpr(3), 0x55);
        assert_eq!(o.u16(DATA), 0xfff, "SGDT at CPL 0: the GDT limit");
        assert_eq!(o.u64(DATA + 2), GDT);
        assert_eq!(o.u64(DATA + 0x12), IDT);
        assert_eq!(o.u16(DATA + 0x28), sel::TSS);
    });
    kvm_needs(c, "umip").run();
}

#[test]
fn smep_supervisor_fetch_from_user_page() {
    let mut g = Guest::new(Mode::Long64);
    supervisor_only(&mut g, &[PAGE]);
    g.write(PAGE, &[0xc3]); // ret
    let mut a = g.asm();
    set_cr4(&mut a, cr4::SMEP).unwrap();
    a.mov(rbx, PAGE).unwrap();
    a.call(rbx).unwrap();
    end(&mut a).unwrap();
    g.load(&mut a);
    let c = Case::new("smep_supervisor_fetch_from_user_page", g).check(|o| {
        // P | I/D (set with SMEP even without EFER.NXE).
        let e = o.faulted(14, 0x11);
        assert_eq!((e.cr2, e.rip), (PAGE, PAGE));
    });
    kvm_needs(c, "smep").run();
}

#[test]
fn smap_ac_override_then_read_fault() {
    let mut g = Guest::new(Mode::Long64);
    supervisor_only(&mut g, &[PAGE]);
    g.write_u64(PAGE, 0x1234_5678);
    let mut a = g.asm();
    set_cr4(&mut a, cr4::SMAP).unwrap();
    a.stac().unwrap();
    a.mov(rbx, qword_ptr(PAGE)).unwrap();
    a.mov(qword_ptr(PAGE + 8), rbx).unwrap();
    // A supervisor push onto a user stack is explicit: AC lets it through.
    a.mov(rsi, rsp).unwrap();
    a.mov(rsp, PAGE + 0x800).unwrap();
    a.push(0x77).unwrap();
    a.mov(rsp, rsi).unwrap();
    a.clac().unwrap();
    a.mov(rcx, qword_ptr(PAGE)).unwrap();
    end(&mut a).unwrap();
    g.load(&mut a);
    let c = Case::new("smap_ac_override_then_read_fault", g).check(|o| {
        let e = o.faulted(14, 1); // P: a supervisor read
        assert_eq!(e.cr2, PAGE);
        assert_eq!(o.gpr(3), 0x1234_5678, "read with AC=1");
        assert_eq!(o.u64(PAGE + 8), 0x1234_5678, "write with AC=1");
        assert_eq!(o.u64(PAGE + 0x7f8), 0x77, "push with AC=1");
        assert_eq!(e.rflags & (1 << 18), 0, "AC clear when faulting");
    });
    kvm_needs(c, "smap").run();
}

#[test]
fn smap_write_fault() {
    let mut g = Guest::new(Mode::Long64);
    supervisor_only(&mut g, &[PAGE]);
    let mut a = g.asm();
    set_cr4(&mut a, cr4::SMAP).unwrap();
    a.mov(qword_ptr(SCRATCH), 1).unwrap(); // supervisor page: fine
    a.mov(qword_ptr(PAGE), 2).unwrap();
    end(&mut a).unwrap();
    g.load(&mut a);
    let c = Case::new("smap_write_fault", g).check(|o| {
        let e = o.faulted(14, 3); // P | W
        assert_eq!(e.cr2, PAGE);
        assert_eq!((o.u64(SCRATCH), o.u64(PAGE)), (1, 0));
    });
    kvm_needs(c, "smap").run();
}

#[test]
fn smap_implicit_access_ignores_ac() {
    // An LDT on a user page: loading DS from it is an implicit supervisor
    // access, which SMAP stops even with EFLAGS.AC set.
    let mut g = Guest::new(Mode::Long64);
    supervisor_only(&mut g, &[LDT]);
    g.write_u64(LDT, desc::DATA);
    let lo = 0xf | ((LDT & 0xff_ffff) << 16) | (0x82u64 << 40) | ((LDT >> 24) << 56);
    g.set_gdt(sel::FREE, lo);
    g.set_gdt(sel::FREE + 8, LDT >> 32);
    let mut a = g.asm();
    set_cr4(&mut a, cr4::SMAP).unwrap();
    a.mov(eax, sel::FREE as u32).unwrap();
    a.lldt(ax).unwrap();
    a.stac().unwrap();
    a.mov(eax, 4u32).unwrap(); // LDT index 0
    a.mov(ds, ax).unwrap();
    end(&mut a).unwrap();
    g.load(&mut a);
    let c = Case::new("smap_implicit_access_ignores_ac", g).check(|o| {
        let e = o.faulted(14, 1);
        assert_eq!(e.cr2, LDT);
        assert_ne!(e.rflags & (1 << 18), 0, "AC was set");
    });
    kvm_needs(c, "smap").run();
}

#[test]
fn pku_write_disable_with_wp() {
    let mut g = Guest::new(Mode::Long64);
    g.set_pte(PAGE, PAGE | 7 | (1 << 59)); // user page, key 1
    let mut a = g.asm();
    set_cr4(&mut a, cr4::PKE).unwrap();
    a.xor(ecx, ecx).unwrap();
    a.xor(edx, edx).unwrap();
    a.mov(eax, 8u32).unwrap(); // WD for key 1
    a.wrpkru().unwrap();
    a.mov(eax, 0u32).unwrap();
    a.rdpkru().unwrap();
    a.mov(dword_ptr(DATA), eax).unwrap();
    // CR0.WP = 0: supervisor writes ignore WD.
    a.mov(dword_ptr(PAGE), 1).unwrap();
    a.mov(rax, cr0).unwrap();
    a.or(rax, cr0::WP as i32).unwrap();
    a.mov(cr0, rax).unwrap();
    a.mov(ebx, dword_ptr(PAGE)).unwrap(); // reads stay allowed
    a.mov(dword_ptr(PAGE), 2).unwrap();
    end(&mut a).unwrap();
    g.load(&mut a);
    let c = Case::new("pku_write_disable_with_wp", g).check(|o| {
        let e = o.faulted(14, 3 | PK);
        assert_eq!(e.cr2, PAGE);
        assert_eq!(o.u32(DATA), 8, "RDPKRU");
        assert_eq!((o.u32(PAGE), o.gpr(3)), (1, 1));
    });
    kvm_needs(c, "pku").run();
}

#[test]
fn pku_access_disable_user_read() {
    let mut g = Guest::new(Mode::Long64);
    g.set_pte(PAGE, PAGE | 7 | (3 << 59)); // user page, key 3
    ring3_64_after(
        &mut g,
        |a| {
            set_cr4(a, cr4::PKE)?;
            a.xor(ecx, ecx)?;
            a.xor(edx, edx)?;
            a.mov(eax, 1u32 << 6)?; // AD for key 3
            a.wrpkru()
        },
        |u| {
            u.mov(rbx, qword_ptr(SCRATCH))?; // key 0: fine
            u.mov(rcx, qword_ptr(PAGE))
        },
    );
    let c = Case::new("pku_access_disable_user_read", g).check(|o| {
        let e = o.faulted(14, 5 | PK); // P | U | PK
        assert_eq!(e.cr2, PAGE);
        assert_eq!(e.cs, sel::UCODE64 as u64);
    });
    kvm_needs(c, "pku").run();
}

#[test]
fn pks_access_disable_supervisor_read() {
    let mut g = Guest::new(Mode::Long64);
    g.set_pte(PAGE, PAGE | 3 | (2 << 59)); // supervisor page, key 2
    g.write_u64(PAGE, 0x99);
    let mut a = g.asm();
    set_cr4(&mut a, cr4::PKS).unwrap();
    a.mov(rbx, qword_ptr(PAGE)).unwrap(); // IA32_PKRS = 0: fine
    a.mov(ecx, 0x6e1u32).unwrap();
    a.xor(edx, edx).unwrap();
    a.mov(eax, 1u32 << 4).unwrap(); // AD for key 2
    a.wrmsr().unwrap();
    a.rdmsr().unwrap();
    a.mov(dword_ptr(DATA), eax).unwrap();
    a.mov(rcx, qword_ptr(PAGE)).unwrap();
    end(&mut a).unwrap();
    g.load(&mut a);
    let c = Case::new("pks_access_disable_supervisor_read", g).check(|o| {
        let e = o.faulted(14, 1 | PK);
        assert_eq!(e.cr2, PAGE);
        assert_eq!(o.gpr(3), 0x99);
        assert_eq!(o.u32(DATA), 0x10, "RDMSR IA32_PKRS");
    });
    kvm_needs(c, "pks").run();
}
