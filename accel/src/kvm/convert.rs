//! Conversion between [`CpuState`] and KVM's register structs. Nothing outside
//! `accel/kvm` ever sees a KVM type.

use kvm_bindings::{kvm_dtable, kvm_fpu, kvm_regs, kvm_segment, kvm_sregs};
use x86::consts::seg_attr;
use x86::{CpuState, DescriptorTable, FpuState, SegReg, Segment};

pub fn seg_to_kvm(s: &Segment) -> kvm_segment {
    let a = s.attr;
    let present = (a & seg_attr::P != 0) as u8;
    kvm_segment {
        base: s.base,
        limit: s.limit,
        selector: s.selector,
        type_: (a & seg_attr::TYPE_MASK) as u8,
        present,
        dpl: ((a & seg_attr::DPL_MASK) >> seg_attr::DPL_SHIFT) as u8,
        db: (a & seg_attr::DB != 0) as u8,
        s: (a & seg_attr::S != 0) as u8,
        l: (a & seg_attr::L != 0) as u8,
        g: (a & seg_attr::G != 0) as u8,
        avl: (a & seg_attr::AVL != 0) as u8,
        unusable: (present == 0) as u8,
        padding: 0,
    }
}

pub fn seg_from_kvm(k: &kvm_segment) -> Segment {
    let mut attr = (k.type_ as u16) & seg_attr::TYPE_MASK;
    if k.s != 0 {
        attr |= seg_attr::S;
    }
    attr |= ((k.dpl as u16) & 3) << seg_attr::DPL_SHIFT;
    if k.present != 0 && k.unusable == 0 {
        attr |= seg_attr::P;
    }
    if k.avl != 0 {
        attr |= seg_attr::AVL;
    }
    if k.l != 0 {
        attr |= seg_attr::L;
    }
    if k.db != 0 {
        attr |= seg_attr::DB;
    }
    if k.g != 0 {
        attr |= seg_attr::G;
    }
    Segment {
        base: k.base,
        limit: k.limit,
        selector: k.selector,
        attr,
    }
}

fn dt_to_kvm(d: &DescriptorTable) -> kvm_dtable {
    kvm_dtable {
        base: d.base,
        limit: d.limit,
        padding: [0; 3],
    }
}

fn dt_from_kvm(d: &kvm_dtable) -> DescriptorTable {
    DescriptorTable {
        base: d.base,
        limit: d.limit,
    }
}

pub fn regs_to_kvm(s: &CpuState) -> kvm_regs {
    let g = &s.gpr;
    kvm_regs {
        rax: g[0],
        rcx: g[1],
        rdx: g[2],
        rbx: g[3],
        rsp: g[4],
        rbp: g[5],
        rsi: g[6],
        rdi: g[7],
        r8: g[8],
        r9: g[9],
        r10: g[10],
        r11: g[11],
        r12: g[12],
        r13: g[13],
        r14: g[14],
        r15: g[15],
        rip: s.rip,
        rflags: s.rflags,
    }
}

pub fn regs_from_kvm(r: &kvm_regs, s: &mut CpuState) {
    s.gpr = [
        r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi, r.r8, r.r9, r.r10, r.r11, r.r12,
        r.r13, r.r14, r.r15,
    ];
    s.rip = r.rip;
    s.rflags = r.rflags;
}

/// Builds `kvm_sregs` from `s`, keeping KVM's pending-interrupt bitmap from `base`.
pub fn sregs_to_kvm(s: &CpuState, base: &kvm_sregs) -> kvm_sregs {
    let mut k = *base;
    k.es = seg_to_kvm(s.seg(SegReg::Es));
    k.cs = seg_to_kvm(s.seg(SegReg::Cs));
    k.ss = seg_to_kvm(s.seg(SegReg::Ss));
    k.ds = seg_to_kvm(s.seg(SegReg::Ds));
    k.fs = seg_to_kvm(s.seg(SegReg::Fs));
    k.gs = seg_to_kvm(s.seg(SegReg::Gs));
    k.ldt = seg_to_kvm(&s.ldtr);
    k.tr = seg_to_kvm(&s.tr);
    // The TR and LDTR must stay "usable" for KVM's entry checks when present.
    k.gdt = dt_to_kvm(&s.gdtr);
    k.idt = dt_to_kvm(&s.idtr);
    k.cr0 = s.cr0;
    k.cr2 = s.cr2;
    k.cr3 = s.cr3;
    k.cr4 = s.cr4;
    k.cr8 = s.cr8;
    k.efer = s.efer;
    k.apic_base = s.msr.apic_base;
    k
}

pub fn sregs_from_kvm(k: &kvm_sregs, s: &mut CpuState) {
    s.segs[SegReg::Es as usize] = seg_from_kvm(&k.es);
    s.segs[SegReg::Cs as usize] = seg_from_kvm(&k.cs);
    s.segs[SegReg::Ss as usize] = seg_from_kvm(&k.ss);
    s.segs[SegReg::Ds as usize] = seg_from_kvm(&k.ds);
    s.segs[SegReg::Fs as usize] = seg_from_kvm(&k.fs);
    s.segs[SegReg::Gs as usize] = seg_from_kvm(&k.gs);
    s.ldtr = seg_from_kvm(&k.ldt);
    s.tr = seg_from_kvm(&k.tr);
    s.gdtr = dt_from_kvm(&k.gdt);
    s.idtr = dt_from_kvm(&k.idt);
    s.cr0 = k.cr0;
    s.cr2 = k.cr2;
    s.cr3 = k.cr3;
    s.cr4 = k.cr4;
    s.cr8 = k.cr8;
    s.efer = k.efer;
    s.msr.apic_base = k.apic_base;
}

pub fn fpu_to_kvm(f: &FpuState) -> kvm_fpu {
    kvm_fpu {
        fpr: f.st,
        fcw: f.fcw,
        fsw: f.fsw,
        ftwx: f.ftw,
        pad1: 0,
        last_opcode: f.fop,
        last_ip: f.fip,
        last_dp: f.fdp,
        xmm: f.xmm,
        mxcsr: f.mxcsr,
        pad2: 0,
    }
}

pub fn fpu_from_kvm(k: &kvm_fpu, f: &mut FpuState) {
    f.st = k.fpr;
    f.fcw = k.fcw;
    f.fsw = k.fsw;
    f.ftw = k.ftwx;
    f.fop = k.last_opcode;
    f.fip = k.last_ip;
    f.fdp = k.last_dp;
    f.xmm = k.xmm;
    f.mxcsr = k.mxcsr;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_state() -> CpuState {
        let mut s = CpuState::reset();
        for (i, r) in s.gpr.iter_mut().enumerate() {
            *r = 0x1111_1111_1111_1111u64.wrapping_mul(i as u64 + 1);
        }
        s.rip = 0xffff_ffff_8100_0000;
        s.rflags = 0x246;
        s.segs[SegReg::Cs as usize] = Segment::from_descriptor(0x10, 0x00af_9b00_0000_ffff);
        s.segs[SegReg::Ss as usize] = Segment::from_descriptor(0x18, 0x00cf_9300_0000_ffff);
        s.segs[SegReg::Fs as usize].base = 0x7fff_dead_b000;
        s.gdtr = DescriptorTable {
            base: 0x500,
            limit: 0x27,
        };
        s.idtr = DescriptorTable {
            base: 0x1000,
            limit: 0xfff,
        };
        s.cr0 = 0x8005_0033;
        s.cr2 = 0x1234;
        s.cr3 = 0x9000;
        s.cr4 = 0x6a0;
        s.cr8 = 2;
        s.efer = 0xd01;
        s.fpu.xmm[3] = [7; 16];
        s.fpu.st[1][..10].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 0x40]);
        s.fpu.fcw = 0x27f;
        s.fpu.ftw = 0x81;
        s.fpu.mxcsr = 0x1fa0;
        s
    }

    #[test]
    fn regs_round_trip() {
        let s = sample_state();
        let mut t = CpuState::reset();
        regs_from_kvm(&regs_to_kvm(&s), &mut t);
        assert_eq!(t.gpr, s.gpr);
        assert_eq!(t.rip, s.rip);
        assert_eq!(t.rflags, s.rflags);
    }

    #[test]
    fn sregs_round_trip() {
        let s = sample_state();
        let mut t = CpuState::reset();
        sregs_from_kvm(&sregs_to_kvm(&s, &kvm_sregs::default()), &mut t);
        assert_eq!(t.segs, s.segs);
        assert_eq!(t.ldtr, s.ldtr);
        assert_eq!(t.tr, s.tr);
        assert_eq!(t.gdtr, s.gdtr);
        assert_eq!(t.idtr, s.idtr);
        assert_eq!(
            (t.cr0, t.cr2, t.cr3, t.cr4, t.cr8, t.efer),
            (s.cr0, s.cr2, s.cr3, s.cr4, s.cr8, s.efer)
        );
    }

    #[test]
    fn fpu_round_trip() {
        let s = sample_state();
        let mut f = FpuState::default();
        fpu_from_kvm(&fpu_to_kvm(&s.fpu), &mut f);
        assert_eq!(f, s.fpu);
    }

    #[test]
    fn segment_attr_bits_map_to_kvm_fields() {
        let cs = Segment::from_descriptor(0x10, 0x00af_9b00_0000_ffff);
        let k = seg_to_kvm(&cs);
        assert_eq!(
            (k.type_, k.s, k.dpl, k.present, k.l, k.db, k.g),
            (0xb, 1, 0, 1, 1, 0, 1)
        );
        assert_eq!(k.unusable, 0);
        let null = Segment::default();
        assert_eq!(seg_to_kvm(&null).unusable, 1);
    }
}
