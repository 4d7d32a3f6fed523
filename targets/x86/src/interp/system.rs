//! System instructions: HLT, CLI/STI, descriptor-table registers,
//! control/debug registers, CLTS/LMSW/SMSW, INVLPG, cache control,
//! RDTSC(P), SYSCALL/SYSRET, SYSENTER/SYSEXIT, SWAPGS, STAC/CLAC,
//! RDPKRU/WRPKRU; UMIP's CPL check.

use iced_x86::{Instruction, Mnemonic, OpKind, Register};

use super::segment::{desc_attr, sel_err};
use super::Cpu;
use crate::bus::CpuBus;
use crate::consts::{cr0, cr4, efer, rflags, seg_attr as sa};
use crate::cpu_model::Feature;
use crate::exception::{Exception, XResult};
use crate::mmu::seg::SegAccess;
use crate::state::gpr::{RAX, RCX, RDX, RSP};
use crate::{DescriptorTable, SegReg, Segment};

/// #GP(0) unless CPL is 0 (#UD-free system instructions).
#[inline]
pub(crate) fn require_cpl0(cpu: &Cpu) -> XResult<()> {
    if cpu.cpl != 0 {
        return Err(Exception::gp0());
    }
    Ok(())
}

fn require_pm(cpu: &Cpu) -> XResult<()> {
    if cpu.real {
        return Err(Exception::ud());
    }
    Ok(())
}

pub fn hlt(cpu: &mut Cpu) -> XResult<()> {
    require_cpl0(cpu)?;
    cpu.state.halted = true;
    cpu.end_block = true;
    Ok(())
}

fn may_change_if(cpu: &Cpu) -> bool {
    let iopl = ((cpu.state.rflags & rflags::IOPL) >> 12) as u8;
    if cpu.state.cr0 & cr0::PE == 0 {
        return true;
    }
    if cpu.state.rflags & rflags::VM != 0 {
        return iopl == 3;
    }
    cpu.cpl <= iopl
}

pub fn cli(cpu: &mut Cpu) -> XResult<()> {
    if !may_change_if(cpu) {
        return Err(Exception::gp0());
    }
    cpu.state.rflags &= !rflags::IF;
    Ok(())
}

pub fn sti(cpu: &mut Cpu) -> XResult<()> {
    if !may_change_if(cpu) {
        return Err(Exception::gp0());
    }
    if cpu.state.rflags & rflags::IF == 0 {
        cpu.state.rflags |= rflags::IF;
        cpu.state.interrupt_shadow = true;
    }
    cpu.end_block = true;
    Ok(())
}

pub fn lgdt_lidt(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    require_cpl0(cpu)?;
    let seg = cpu.mem_seg(i);
    let ea = cpu.ea(i);
    let limit = cpu.read_u16(bus, seg, ea)?;
    let base = if cpu.long64 {
        cpu.read_u64(bus, seg, cpu.ea_add(i, ea, 2))?
    } else {
        let b = cpu.read_u32(bus, seg, cpu.ea_add(i, ea, 2))? as u64;
        // 16-bit operand size loads 24 bits of base.
        if i.code() == iced_x86::Code::Lgdt_m1632_16 || i.code() == iced_x86::Code::Lidt_m1632_16 {
            b & 0xff_ffff
        } else {
            b
        }
    };
    if cpu.long64 && !crate::mmu::seg::is_canonical(base) {
        return Err(Exception::gp0());
    }
    let t = DescriptorTable { base, limit };
    if i.mnemonic() == Mnemonic::Lgdt {
        cpu.state.gdtr = t;
    } else {
        cpu.state.idtr = t;
    }
    Ok(())
}

/// UMIP: SGDT, SIDT, SLDT, SMSW and STR are #GP(0) above CPL 0.
fn umip_check(cpu: &Cpu) -> XResult<()> {
    if cpu.state.cr4 & cr4::UMIP != 0 && cpu.cpl > 0 {
        return Err(Exception::gp0());
    }
    Ok(())
}

pub fn sgdt_sidt(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    umip_check(cpu)?;
    let t = if i.mnemonic() == Mnemonic::Sgdt {
        cpu.state.gdtr
    } else {
        cpu.state.idtr
    };
    let seg = cpu.mem_seg(i);
    let ea = cpu.ea(i);
    let n = if cpu.long64 { 10 } else { 6 };
    let mut b = [0u8; 10];
    b[..2].copy_from_slice(&t.limit.to_le_bytes());
    b[2..].copy_from_slice(&t.base.to_le_bytes());
    cpu.write_bytes(bus, seg, ea, &b[..n])
}

fn sel_operand(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<u16> {
    Ok(match i.op0_kind() {
        OpKind::Register => cpu.reg(i.op0_register()) as u16,
        _ => {
            let a = cpu.mem_lin(i, 2, SegAccess::Read)?;
            cpu.read_lin_sized(bus, a, 2)? as u16
        }
    })
}

/// Reads a system descriptor from the GDT (8 or 16 bytes in long mode,
/// where a non-canonical base is #GP(selector), as for LLDT and LTR).
fn system_desc(cpu: &mut Cpu, bus: &mut dyn CpuBus, sel: u16) -> XResult<Segment> {
    if sel & 4 != 0 {
        return Err(Exception::gp(sel_err(sel)));
    }
    if cpu.state.efer & efer::LMA != 0 {
        let (lo, hi) = cpu.read_desc16(bus, sel)?;
        let mut s = Segment::from_descriptor(sel, lo);
        s.base |= (hi & 0xffff_ffff) << 32;
        if !crate::mmu::seg::is_canonical(s.base) {
            return Err(Exception::gp(sel_err(sel)));
        }
        Ok(s)
    } else {
        let d = cpu.read_desc(bus, sel)?;
        Ok(Segment::from_descriptor(sel, d))
    }
}

pub fn lldt(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    require_pm(cpu)?;
    require_cpl0(cpu)?;
    let sel = sel_operand(cpu, bus, i)?;
    if sel & !3 == 0 {
        cpu.state.ldtr = Segment {
            base: 0,
            limit: 0,
            selector: sel,
            attr: 0,
        };
        return Ok(());
    }
    let s = system_desc(cpu, bus, sel)?;
    if s.attr & sa::S != 0 || s.attr & sa::TYPE_MASK != sa::SYS_LDT {
        return Err(Exception::gp(sel_err(sel)));
    }
    if !s.present() {
        return Err(Exception::np(sel_err(sel)));
    }
    cpu.state.ldtr = s;
    Ok(())
}

pub fn ltr(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    require_pm(cpu)?;
    require_cpl0(cpu)?;
    let sel = sel_operand(cpu, bus, i)?;
    if sel & !3 == 0 {
        return Err(Exception::gp0());
    }
    let mut s = system_desc(cpu, bus, sel)?;
    let t = s.attr & sa::TYPE_MASK;
    let lma = cpu.state.efer & efer::LMA != 0;
    let ok = s.attr & sa::S == 0 && (t == sa::SYS_TSS_AVAIL || (!lma && t == sa::SYS_TSS16_AVAIL));
    if !ok {
        return Err(Exception::gp(sel_err(sel)));
    }
    if !s.present() {
        return Err(Exception::np(sel_err(sel)));
    }
    // Mark busy in the GDT.
    let a = cpu.desc_addr(sel, 8)?;
    let d = cpu.sys_read_u64(bus, a)?;
    cpu.sys_write_u8(bus, a.wrapping_add(5), ((desc_attr(d) | 2) & 0xff) as u8)?;
    s.attr |= 2;
    cpu.state.tr = s;
    Ok(())
}

pub fn sldt_str(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    require_pm(cpu)?;
    umip_check(cpu)?;
    let v = if i.mnemonic() == Mnemonic::Sldt {
        cpu.state.ldtr.selector
    } else {
        cpu.state.tr.selector
    } as u64;
    if i.op0_kind() == OpKind::Register {
        cpu.set_reg(i.op0_register(), v);
        Ok(())
    } else {
        cpu.write_op(bus, i, 0, 2, v)
    }
}

pub fn clts(cpu: &mut Cpu) -> XResult<()> {
    require_cpl0(cpu)?;
    cpu.state.cr0 &= !cr0::TS;
    Ok(())
}

pub fn lmsw(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    require_cpl0(cpu)?;
    let v = cpu.read_op(bus, i, 0, 2)?;
    // PE can be set but not cleared; MP, EM, TS loaded.
    let n = (cpu.state.cr0 & !0xe) | (v & 0xf) | (cpu.state.cr0 & cr0::PE);
    write_cr0(cpu, n)
}

pub fn smsw(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    umip_check(cpu)?;
    let v = cpu.state.cr0;
    if i.op0_kind() == OpKind::Register {
        let r = i.op0_register();
        let size = super::operand::reg_size(r);
        cpu.set_reg(r, v & super::flags::mask(size));
        Ok(())
    } else {
        cpu.write_op(bus, i, 0, 2, v & 0xffff)
    }
}

pub fn invlpg(cpu: &mut Cpu, i: &Instruction) -> XResult<()> {
    require_cpl0(cpu)?;
    let lin = cpu.mem_lin(i, 1, SegAccess::None)?;
    cpu.mmu.invlpg(lin);
    cpu.end_block = true;
    Ok(())
}

pub fn wbinvd(cpu: &mut Cpu) -> XResult<()> {
    require_cpl0(cpu)
}

pub fn clflush(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let lin = cpu.mem_lin(i, 1, SegAccess::Read)?;
    cpu.mmu
        .translate(&cpu.state, bus, lin, crate::mmu::Access::Read, cpu.user)?;
    Ok(())
}

pub fn rdtsc(cpu: &mut Cpu, p: bool) -> XResult<()> {
    if cpu.state.cr4 & cr4::TSD != 0 && cpu.cpl != 0 {
        return Err(Exception::gp0());
    }
    let t = cpu.read_tsc();
    cpu.set_gpr_sized(RAX, 4, t & 0xffff_ffff);
    cpu.set_gpr_sized(RDX, 4, t >> 32);
    if p {
        let aux = cpu.state.msr.tsc_aux & 0xffff_ffff;
        cpu.set_gpr_sized(RCX, 4, aux);
    }
    Ok(())
}

/// RDRAND/RDSEED are not advertised: #UD as on CPUs without them.
pub fn rdrand(_cpu: &mut Cpu, _i: &Instruction) -> XResult<()> {
    Err(Exception::ud())
}

/// Checks and installs a new CR0.
pub(crate) fn write_cr0(cpu: &mut Cpu, v: u64) -> XResult<()> {
    let v = v | cr0::ET;
    if v >> 32 != 0 {
        return Err(Exception::gp0());
    }
    if v & cr0::PG != 0 && v & cr0::PE == 0 {
        return Err(Exception::gp0());
    }
    if v & cr0::NW != 0 && v & cr0::CD == 0 {
        return Err(Exception::gp0());
    }
    let old = cpu.state.cr0;
    let mut new_efer = cpu.state.efer;
    if v & cr0::PG != 0 && old & cr0::PG == 0 && cpu.state.efer & efer::LME != 0 {
        if cpu.state.cr4 & cr4::PAE == 0 {
            return Err(Exception::gp0());
        }
        new_efer |= efer::LMA;
    }
    if v & cr0::PG == 0 && old & cr0::PG != 0 && cpu.state.efer & efer::LMA != 0 {
        if cpu.long64 {
            return Err(Exception::gp0());
        }
        new_efer &= !efer::LMA;
    }
    cpu.state.cr0 = v;
    cpu.state.efer = new_efer;
    if (old ^ v) & (cr0::PG | cr0::PE | cr0::WP) != 0 {
        cpu.mmu.flush_all();
    }
    cpu.update_mode();
    Ok(())
}

/// CR4 bits every model supports (VME/PVI, FSGSBASE, PCIDE are not
/// implemented and #GP when set; MCE is accepted: the machine-check
/// architecture is advertised with no banks).
const CR4_BASE: u64 = cr4::TSD
    | cr4::DE
    | cr4::MCE
    | cr4::PSE
    | cr4::PAE
    | cr4::PGE
    | cr4::PCE
    | cr4::OSFXSR
    | cr4::OSXMMEXCPT;

/// CR4 bits the vCPU's model allows.
fn cr4_valid(cpu: &Cpu) -> u64 {
    let f = cpu.config.features;
    [
        (Feature::Xsave, cr4::OSXSAVE),
        (Feature::Umip, cr4::UMIP),
        (Feature::Smep, cr4::SMEP),
        (Feature::Smap, cr4::SMAP),
        (Feature::Pku, cr4::PKE),
        (Feature::Pks, cr4::PKS),
    ]
    .iter()
    .filter(|(x, _)| f.has(*x))
    .fold(CR4_BASE, |v, (_, b)| v | b)
}

/// CR4 bits that change access rights cached in the TLB.
const CR4_FLUSH: u64 = cr4::PGE | cr4::PAE | cr4::PSE | cr4::SMEP | cr4::SMAP | cr4::PKE | cr4::PKS;

pub(crate) fn write_cr4(cpu: &mut Cpu, v: u64) -> XResult<()> {
    if v & !cr4_valid(cpu) != 0 {
        return Err(Exception::gp0());
    }
    if cpu.state.efer & efer::LMA != 0 && v & cr4::PAE == 0 {
        return Err(Exception::gp0());
    }
    let old = cpu.state.cr4;
    cpu.state.cr4 = v;
    if (old ^ v) & CR4_FLUSH != 0 {
        cpu.mmu.flush_all();
    }
    cpu.end_block = true;
    Ok(())
}

/// STAC/CLAC: set or clear EFLAGS.AC (#UD without SMAP or above CPL 0).
pub fn stac_clac(cpu: &mut Cpu, set: bool) -> XResult<()> {
    if !cpu.config.features.has(Feature::Smap) || cpu.cpl != 0 {
        return Err(Exception::ud());
    }
    if set {
        cpu.state.rflags |= rflags::AC;
    } else {
        cpu.state.rflags &= !rflags::AC;
    }
    Ok(())
}

/// Installs a new PKRU (WRPKRU, XRSTOR): the TLB caches rights it gave.
pub(crate) fn set_pkru(cpu: &mut Cpu, v: u32) {
    if cpu.state.pkru != v {
        cpu.state.pkru = v;
        cpu.mmu.flush_all();
    }
}

/// RDPKRU (`wr` false) and WRPKRU: #UD unless CR4.PKE; ECX (and for
/// WRPKRU EDX) must be 0.
pub fn rdwrpkru(cpu: &mut Cpu, wr: bool) -> XResult<()> {
    if cpu.state.cr4 & cr4::PKE == 0 {
        return Err(Exception::ud());
    }
    if cpu.state.gpr[RCX] as u32 != 0 || (wr && cpu.state.gpr[RDX] as u32 != 0) {
        return Err(Exception::gp0());
    }
    if wr {
        let v = cpu.state.gpr[RAX] as u32;
        set_pkru(cpu, v);
    } else {
        cpu.state.gpr[RAX] = cpu.state.pkru as u64;
        cpu.state.gpr[RDX] = 0;
    }
    Ok(())
}

fn cr_index(r: Register) -> usize {
    (r as usize).wrapping_sub(Register::CR0 as usize)
}
fn dr_index(r: Register) -> usize {
    (r as usize).wrapping_sub(Register::DR0 as usize)
}

pub fn mov_to_crdr(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    require_cpl0(cpu)?;
    let r = i.op0_register();
    let v = cpu.reg(i.op1_register());
    let v = if cpu.long64 { v } else { v & 0xffff_ffff };
    if cr_index(r) < 16 {
        match cr_index(r) {
            0 => write_cr0(cpu, v)?,
            2 => cpu.state.cr2 = v,
            3 => {
                let mask = (1u64 << crate::mmu::walk::MAXPHYADDR) - 1;
                if cpu.long64 && v & !mask != 0 {
                    return Err(Exception::gp0());
                }
                cpu.state.cr3 = v;
                cpu.mmu.flush_nonglobal();
                cpu.end_block = true;
            }
            4 => write_cr4(cpu, v)?,
            8 => {
                if v & !0xf != 0 {
                    return Err(Exception::gp0());
                }
                // CR8 is the APIC's TPR[7:4] (SDM 10.8.6.1); a lowered
                // priority may let a pending interrupt in at once.
                cpu.state.cr8 = v;
                if bus.set_apic_tpr((v as u8) << 4) {
                    cpu.mmu.mmio_written = true;
                    cpu.end_block = true;
                }
            }
            _ => return Err(Exception::ud()),
        }
        return Ok(());
    }
    cpu.dr_general_detect()?;
    let n = dr_index(r);
    let n = match n {
        4 | 5 if cpu.state.cr4 & cr4::DE != 0 => return Err(Exception::ud()),
        4 | 5 => n + 2,
        n => n,
    };
    match n {
        0..=3 => {
            cpu.state.dr[n] = v;
            cpu.sync_guest_breakpoints();
            cpu.end_block = true;
        }
        6 => {
            if v >> 32 != 0 {
                return Err(Exception::gp0());
            }
            cpu.state.dr[6] = (v & 0xf00f) | 0xffff_0ff0;
        }
        7 => {
            if v >> 32 != 0 {
                return Err(Exception::gp0());
            }
            cpu.state.dr[7] = (v & 0xffff_2bff) | 0x400;
            cpu.sync_guest_breakpoints();
            cpu.end_block = true;
        }
        _ => return Err(Exception::ud()),
    }
    Ok(())
}

pub fn mov_from_crdr(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    require_cpl0(cpu)?;
    let r = i.op1_register();
    let v = if cr_index(r) < 16 {
        match cr_index(r) {
            0 => cpu.state.cr0,
            2 => cpu.state.cr2,
            3 => cpu.state.cr3,
            4 => cpu.state.cr4,
            8 => match bus.apic_tpr() {
                Some(tpr) => u64::from(tpr >> 4),
                None => cpu.state.cr8,
            },
            _ => return Err(Exception::ud()),
        }
    } else {
        cpu.dr_general_detect()?;
        match dr_index(r) {
            n @ 0..=3 => cpu.state.dr[n],
            4 | 5 if cpu.state.cr4 & cr4::DE != 0 => return Err(Exception::ud()),
            4 | 6 => cpu.state.dr[6],
            5 | 7 => cpu.state.dr[7],
            _ => return Err(Exception::ud()),
        }
    };
    let v = if cpu.long64 { v } else { v & 0xffff_ffff };
    cpu.set_reg(i.op0_register(), v);
    Ok(())
}

fn flat_code(sel: u16, dpl: u16, long: bool) -> Segment {
    let mut attr =
        sa::P | sa::S | sa::CODE | sa::RW | sa::ACCESSED | sa::G | (dpl << sa::DPL_SHIFT);
    attr |= if long { sa::L } else { sa::DB };
    Segment {
        base: 0,
        limit: 0xffff_ffff,
        selector: sel,
        attr,
    }
}

fn flat_data(sel: u16, dpl: u16) -> Segment {
    let attr = sa::P | sa::S | sa::RW | sa::ACCESSED | sa::G | sa::DB | (dpl << sa::DPL_SHIFT);
    Segment {
        base: 0,
        limit: 0xffff_ffff,
        selector: sel,
        attr,
    }
}

/// SYSCALL: in 64-bit mode on every vendor; in compatibility and legacy
/// mode only on AMD (Intel raises #UD there).
pub fn syscall(cpu: &mut Cpu) -> XResult<()> {
    let amd = cpu.config.vendor == crate::cpu_model::Vendor::Amd;
    if cpu.state.efer & efer::SCE == 0 || !(cpu.long64 || amd) {
        return Err(Exception::ud());
    }
    let star = cpu.state.msr.star;
    let sel = ((star >> 32) & 0xfffc) as u16;
    if cpu.state.efer & efer::LMA == 0 {
        // Legacy mode (AMD): a flat 32-bit CS and SS from STAR, EIP from
        // STAR[31:0]; only IF, VM and RF are cleared.
        cpu.state.gpr[RCX] = cpu.next_rip & 0xffff_ffff;
        cpu.state.rflags &= !(rflags::IF | rflags::VM | rflags::RF);
        cpu.state.segs[SegReg::Cs as usize] = flat_code(sel, 0, false);
        cpu.state.segs[SegReg::Ss as usize] = flat_data(sel.wrapping_add(8), 0);
        cpu.next_rip = star & 0xffff_ffff;
        cpu.update_mode();
        return Ok(());
    }
    // 64-bit mode enters at LSTAR, compatibility mode (AMD) at CSTAR.
    let target = if cpu.long64 {
        cpu.state.msr.lstar
    } else {
        cpu.state.msr.cstar
    };
    cpu.state.gpr[RCX] = cpu.next_rip;
    cpu.state.gpr[11] = cpu.state.rflags & !rflags::RF;
    cpu.state.rflags &= !(cpu.state.msr.fmask | rflags::RF);
    cpu.state.rflags |= rflags::FIXED1;
    cpu.state.segs[SegReg::Cs as usize] = flat_code(sel, 0, true);
    cpu.state.segs[SegReg::Ss as usize] = flat_data(sel.wrapping_add(8), 0);
    cpu.next_rip = target;
    cpu.update_mode();
    Ok(())
}

pub fn sysret(cpu: &mut Cpu, i: &Instruction) -> XResult<()> {
    if cpu.state.efer & efer::SCE == 0 || !cpu.long64 {
        return Err(Exception::ud());
    }
    require_cpl0(cpu)?;
    let star = cpu.state.msr.star;
    let base = ((star >> 48) & 0xffff) as u16;
    let q = i.code() == iced_x86::Code::Sysretq;
    let rip = if q {
        cpu.state.gpr[RCX]
    } else {
        cpu.state.gpr[RCX] & 0xffff_ffff
    };
    if q && !crate::mmu::seg::is_canonical(rip) {
        return Err(Exception::gp0());
    }
    let cs = if q {
        flat_code(base.wrapping_add(16) | 3, 3, true)
    } else {
        flat_code(base | 3, 3, false)
    };
    cpu.state.rflags = (cpu.state.gpr[11] & 0x3c_7fd7) | rflags::FIXED1;
    // A TF that SYSRET sets traps right after it (at the user RIP).
    if cpu.state.rflags & rflags::TF != 0 {
        cpu.tf_trap_pending = true;
        cpu.end_block = true;
    }
    cpu.state.segs[SegReg::Cs as usize] = cs;
    cpu.state.segs[SegReg::Ss as usize] = flat_data(base.wrapping_add(8) | 3, 3);
    cpu.next_rip = rip;
    cpu.update_mode();
    Ok(())
}

pub fn sysenter(cpu: &mut Cpu) -> XResult<()> {
    if cpu.real {
        return Err(Exception::gp0());
    }
    let cs = (cpu.state.msr.sysenter_cs & 0xfffc) as u16;
    if cs == 0 {
        return Err(Exception::gp0());
    }
    let lma = cpu.state.efer & efer::LMA != 0;
    cpu.state.rflags &= !(rflags::VM | rflags::IF | rflags::RF);
    cpu.state.segs[SegReg::Cs as usize] = flat_code(cs, 0, lma);
    cpu.state.segs[SegReg::Ss as usize] = flat_data(cs.wrapping_add(8), 0);
    let (ip, sp) = (cpu.state.msr.sysenter_eip, cpu.state.msr.sysenter_esp);
    cpu.state.gpr[RSP] = if lma { sp } else { sp & 0xffff_ffff };
    cpu.next_rip = if lma { ip } else { ip & 0xffff_ffff };
    cpu.update_mode();
    Ok(())
}

pub fn sysexit(cpu: &mut Cpu, i: &Instruction) -> XResult<()> {
    let base = (cpu.state.msr.sysenter_cs & 0xfffc) as u16;
    if cpu.real || cpu.cpl != 0 || base == 0 {
        return Err(Exception::gp0());
    }
    let q = i.code() == iced_x86::Code::Sysexitq;
    if q {
        let rip = cpu.state.gpr[RDX];
        if !crate::mmu::seg::is_canonical(rip) {
            return Err(Exception::gp0());
        }
        cpu.state.segs[SegReg::Cs as usize] = flat_code(base.wrapping_add(32) | 3, 3, true);
        cpu.state.segs[SegReg::Ss as usize] = flat_data(base.wrapping_add(40) | 3, 3);
        cpu.state.gpr[RSP] = cpu.state.gpr[RCX];
        cpu.next_rip = rip;
    } else {
        cpu.state.segs[SegReg::Cs as usize] = flat_code(base.wrapping_add(16) | 3, 3, false);
        cpu.state.segs[SegReg::Ss as usize] = flat_data(base.wrapping_add(24) | 3, 3);
        cpu.state.gpr[RSP] = cpu.state.gpr[RCX] & 0xffff_ffff;
        cpu.next_rip = cpu.state.gpr[RDX] & 0xffff_ffff;
    }
    cpu.update_mode();
    Ok(())
}

pub fn swapgs(cpu: &mut Cpu) -> XResult<()> {
    if !cpu.long64 {
        return Err(Exception::ud());
    }
    require_cpl0(cpu)?;
    std::mem::swap(
        &mut cpu.state.segs[SegReg::Gs as usize].base,
        &mut cpu.state.msr.kernel_gs_base,
    );
    Ok(())
}

/// Everything not dispatched elsewhere: x87/SSE families, or #UD.
pub fn other(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let _ = bus;
    Err(cpu.unimplemented(i))
}
