//! Segment-register loads with the protected-mode checks, descriptor table
//! access, LDS/LES/LFS/LGS/LSS, LAR/LSL/VERR/VERW, ARPL.

use iced_x86::{Instruction, Mnemonic, OpKind};

use super::Cpu;
use crate::bus::CpuBus;
use crate::consts::{rflags, seg_attr as sa};
use crate::exception::{Exception, XResult};
use crate::mmu::seg::SegAccess;
use crate::{SegReg, Segment};

/// Error code of a selector fault.
#[inline]
pub fn sel_err(sel: u16) -> u32 {
    (sel & 0xfffc) as u32
}

impl Cpu {
    /// Linear address of the descriptor for `sel` (GDT or LDT), checking the
    /// table limit for `len` bytes: #GP(sel) otherwise.
    pub(crate) fn desc_addr(&self, sel: u16, len: u64) -> XResult<u64> {
        let idx = (sel & !7) as u64;
        let (base, limit) = if sel & 4 != 0 {
            let l = &self.state.ldtr;
            if l.attr & sa::P == 0 || l.selector & !3 == 0 {
                return Err(Exception::gp(sel_err(sel)));
            }
            (l.base, l.limit as u64)
        } else {
            (self.state.gdtr.base, self.state.gdtr.limit as u64)
        };
        if idx + len - 1 > limit {
            return Err(Exception::gp(sel_err(sel)));
        }
        Ok(base.wrapping_add(idx))
    }

    /// Reads the 8-byte descriptor of `sel`.
    pub(crate) fn read_desc(&mut self, bus: &mut dyn CpuBus, sel: u16) -> XResult<u64> {
        let a = self.desc_addr(sel, 8)?;
        self.sys_read_u64(bus, a)
    }

    /// Reads a 16-byte system descriptor (long mode): (low, high).
    pub(crate) fn read_desc16(&mut self, bus: &mut dyn CpuBus, sel: u16) -> XResult<(u64, u64)> {
        let a = self.desc_addr(sel, 16)?;
        let lo = self.sys_read_u64(bus, a)?;
        let hi = self.sys_read_u64(bus, a.wrapping_add(8))?;
        Ok((lo, hi))
    }

    /// Sets the accessed bit of a code/data descriptor in memory.
    pub(crate) fn set_desc_accessed(
        &mut self,
        bus: &mut dyn CpuBus,
        sel: u16,
        desc: u64,
    ) -> XResult<()> {
        if desc & (1 << 40) == 0 {
            let a = self.desc_addr(sel, 8)?;
            let b = ((desc >> 40) as u8) | 1;
            self.sys_write_u8(bus, a.wrapping_add(5), b)?;
        }
        Ok(())
    }

    /// Installs a segment register value (hidden part included) and updates
    /// cached mode state.
    pub(crate) fn set_seg(&mut self, s: SegReg, seg: Segment) {
        self.state.segs[s as usize] = seg;
        if matches!(s, SegReg::Cs | SegReg::Ss) {
            self.update_mode();
        }
    }
}

/// Attributes of a descriptor, in [`Segment::attr`] packing.
#[inline]
pub fn desc_attr(desc: u64) -> u16 {
    (((desc >> 40) & 0xff) | (((desc >> 52) & 0xf) << 8)) as u16
}

/// Loads a data/stack segment register in protected mode with all checks
/// (SDM MOV/POP/LDS), or the real/v8086 form.
pub fn load_seg(cpu: &mut Cpu, bus: &mut dyn CpuBus, s: SegReg, sel: u16) -> XResult<()> {
    if cpu.real {
        let mut seg = cpu.state.segs[s as usize];
        seg.selector = sel;
        seg.base = (sel as u64) << 4;
        if cpu.state.rflags & rflags::VM != 0 {
            seg = Segment::real_mode(sel, s == SegReg::Cs);
            seg.attr |= 3 << sa::DPL_SHIFT;
        } else {
            seg.attr |= sa::P | sa::S;
        }
        cpu.set_seg(s, seg);
        return Ok(());
    }
    let rpl = (sel & 3) as u8;
    let cpl = cpu.cpl;
    if sel & !3 == 0 {
        if s == SegReg::Ss {
            if cpu.long64 && cpl != 3 && rpl == cpl {
                let attr = sa::P | sa::S | sa::RW | sa::ACCESSED | ((cpl as u16) << sa::DPL_SHIFT);
                cpu.set_seg(
                    s,
                    Segment {
                        base: 0,
                        limit: 0,
                        selector: sel,
                        attr,
                    },
                );
                return Ok(());
            }
            return Err(Exception::gp0());
        }
        let base = if cpu.long64 && matches!(s, SegReg::Fs | SegReg::Gs) {
            cpu.state.segs[s as usize].base
        } else {
            0
        };
        cpu.set_seg(
            s,
            Segment {
                base,
                limit: 0,
                selector: sel,
                attr: 0,
            },
        );
        return Ok(());
    }
    let desc = cpu.read_desc(bus, sel)?;
    let attr = desc_attr(desc);
    let dpl = ((attr & sa::DPL_MASK) >> sa::DPL_SHIFT) as u8;
    let code = attr & sa::CODE != 0;
    let err = Exception::gp(sel_err(sel));
    if attr & sa::S == 0 {
        return Err(err);
    }
    if s == SegReg::Ss {
        if rpl != cpl || code || attr & sa::RW == 0 || dpl != cpl {
            return Err(err);
        }
        if attr & sa::P == 0 {
            return Err(Exception::ss(sel_err(sel)));
        }
    } else {
        if code && attr & sa::RW == 0 {
            return Err(err);
        }
        let conforming = code && attr & sa::DC != 0;
        if !conforming && (rpl > dpl || cpl > dpl) {
            return Err(err);
        }
        if attr & sa::P == 0 {
            return Err(Exception::np(sel_err(sel)));
        }
    }
    cpu.set_desc_accessed(bus, sel, desc)?;
    let mut seg = Segment::from_descriptor(sel, desc | (1 << 40));
    if cpu.long64 && matches!(s, SegReg::Fs | SegReg::Gs) {
        // The 64-bit base comes from the MSR; a descriptor load sets the low 32 bits.
        seg.base &= 0xffff_ffff;
    }
    cpu.set_seg(s, seg);
    Ok(())
}

/// MOV Sreg / POP Sreg: the load plus the interrupt shadow for SS.
pub fn mov_to_sreg(cpu: &mut Cpu, bus: &mut dyn CpuBus, s: SegReg, sel: u16) -> XResult<()> {
    if s == SegReg::Cs {
        return Err(Exception::ud());
    }
    load_seg(cpu, bus, s, sel)?;
    if s == SegReg::Ss {
        cpu.state.interrupt_shadow = true;
        cpu.db_shadow = true;
        cpu.end_block = true;
    }
    Ok(())
}

/// LDS/LES/LFS/LGS/LSS r, m16:16/32/64.
pub fn lxs(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let size = super::operand::reg_size(i.op0_register());
    let seg = cpu.mem_seg(i);
    let ea = cpu.ea(i);
    let off = cpu.read_sized(bus, seg, ea, size)?;
    let sel = cpu.read_u16(bus, seg, cpu.ea_add(i, ea, size as u64))?;
    let s = match i.mnemonic() {
        Mnemonic::Lds => SegReg::Ds,
        Mnemonic::Les => SegReg::Es,
        Mnemonic::Lfs => SegReg::Fs,
        Mnemonic::Lgs => SegReg::Gs,
        _ => SegReg::Ss,
    };
    mov_to_sreg(cpu, bus, s, sel)?;
    cpu.set_reg(i.op0_register(), off);
    Ok(())
}

/// Descriptor of `sel` if it is visible at CPL/RPL for LAR/LSL/VERR/VERW.
fn visible_desc(cpu: &mut Cpu, bus: &mut dyn CpuBus, sel: u16) -> XResult<Option<u64>> {
    if sel & !3 == 0 {
        return Ok(None);
    }
    let desc = match cpu.read_desc(bus, sel) {
        Ok(d) => d,
        Err(e) if e.vector == crate::exception::vector::GP => return Ok(None),
        Err(e) => return Err(e),
    };
    let attr = desc_attr(desc);
    let dpl = ((attr & sa::DPL_MASK) >> sa::DPL_SHIFT) as u8;
    let conforming_code = attr & sa::S != 0 && attr & sa::CODE != 0 && attr & sa::DC != 0;
    if !conforming_code && (cpu.cpl > dpl || (sel & 3) as u8 > dpl) {
        return Ok(None);
    }
    Ok(Some(desc))
}

fn require_pm(cpu: &Cpu) -> XResult<()> {
    if cpu.real {
        return Err(Exception::ud());
    }
    Ok(())
}

fn set_zf(cpu: &mut Cpu, v: bool) {
    cpu.set_flags(rflags::ZF, if v { rflags::ZF } else { 0 });
}

fn sel_operand(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction, n: u32) -> XResult<u16> {
    Ok(match i.op_kind(n) {
        OpKind::Register => cpu.reg(i.op_register(n)) as u16,
        _ => {
            let a = cpu.mem_lin(i, 2, SegAccess::Read)?;
            cpu.read_lin_sized(bus, a, 2)? as u16
        }
    })
}

fn sys_type_ok(attr: u16, long: bool, lsl: bool) -> bool {
    if attr & sa::S != 0 {
        return true;
    }
    let t = attr & sa::TYPE_MASK;
    if long {
        matches!(t, 2 | 9 | 11) || (!lsl && t == 12)
    } else {
        matches!(t, 1 | 2 | 3 | 9 | 11) || (!lsl && matches!(t, 4 | 5 | 12))
    }
}

pub fn lar(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    require_pm(cpu)?;
    let sel = sel_operand(cpu, bus, i, 1)?;
    match visible_desc(cpu, bus, sel)? {
        Some(d)
            if sys_type_ok(
                desc_attr(d),
                cpu.state.efer & crate::consts::efer::LMA != 0,
                false,
            ) =>
        {
            let size = super::operand::reg_size(i.op0_register());
            // Bits 19:16 (the limit's top) are undefined in the SDM;
            // Intel and AMD CPUs return them, so does this.
            cpu.set_reg(
                i.op0_register(),
                (d >> 32) & 0x00ff_ff00 & super::flags::mask(size),
            );
            set_zf(cpu, true);
        }
        _ => set_zf(cpu, false),
    }
    Ok(())
}

pub fn lsl(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    require_pm(cpu)?;
    let sel = sel_operand(cpu, bus, i, 1)?;
    match visible_desc(cpu, bus, sel)? {
        Some(d)
            if sys_type_ok(
                desc_attr(d),
                cpu.state.efer & crate::consts::efer::LMA != 0,
                true,
            ) =>
        {
            let s = Segment::from_descriptor(sel, d);
            cpu.set_reg(i.op0_register(), s.limit as u64);
            set_zf(cpu, true);
        }
        _ => set_zf(cpu, false),
    }
    Ok(())
}

pub fn verr(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction, write: bool) -> XResult<()> {
    require_pm(cpu)?;
    let sel = sel_operand(cpu, bus, i, 0)?;
    let ok = match visible_desc(cpu, bus, sel)? {
        Some(d) => {
            let a = desc_attr(d);
            let code = a & sa::CODE != 0;
            a & sa::S != 0
                && if write {
                    !code && a & sa::RW != 0
                } else {
                    !code || a & sa::RW != 0
                }
        }
        None => false,
    };
    set_zf(cpu, ok);
    Ok(())
}

pub fn arpl(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    require_pm(cpu)?;
    let loc = cpu.loc(i, 0, 2, SegAccess::Read)?;
    let d = cpu.read_loc(bus, loc, 2)?;
    let s = cpu.reg(i.op1_register());
    if d & 3 < s & 3 {
        // Only an adjustment writes (an unchanged operand may be in a
        // read-only segment).
        let loc = cpu.loc(i, 0, 2, SegAccess::Write)?;
        cpu.write_loc(bus, loc, 2, (d & !3) | (s & 3))?;
        set_zf(cpu, true);
    } else {
        set_zf(cpu, false);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use iced_x86::code_asm::*;

    use crate::exception::vector;
    use crate::interp::tests::{asm, CODE, DS16, GDT, M};
    use crate::interp::ExitReason;
    use crate::SegReg;

    #[test]
    fn far_pointer_selector_wraps_with_16bit_addressing() {
        // LDS SI, [BX] with BX = 0xFFFE: the offset at 0xFFFE, the
        // selector at (0xFFFE + 2) mod 64 KiB = 0.
        let code = asm(32, CODE, |a| {
            a.mov(ebx, 0xfffe).unwrap();
            a.lds(si, dword_ptr(bx)).unwrap();
            a.hlt().unwrap();
        });
        let mut m = M::prot32(&code);
        m.install_handlers32();
        m.bus.load(0xfffe, &0x1234u16.to_le_bytes());
        m.bus.load(0, &DS16.to_le_bytes());
        assert_eq!(m.run(), ExitReason::Halt);
        assert_eq!(m.rec().0, u64::MAX, "no exception");
        assert_eq!(m.gpr(6) & 0xffff, 0x1234);
        assert_eq!(m.cpu.state.seg(SegReg::Ds).selector, DS16);
    }

    #[test]
    fn arpl_writes_only_an_adjusted_selector() {
        // ES = a read-only data segment: ARPL that leaves the selector
        // alone (ZF = 0) runs, one that raises its RPL faults (#GP).
        for (rpl, expect) in [(0u32, u64::MAX), (3, vector::GP as u64)] {
            let code = asm(32, CODE, |a| {
                a.mov(eax, 0x50).unwrap();
                a.mov(es, ax).unwrap();
                a.mov(ecx, rpl).unwrap();
                a.arpl(word_ptr(0x7000).es(), cx).unwrap();
                a.hlt().unwrap();
            });
            let mut m = M::prot32(&code);
            m.install_handlers32();
            // 0x50: read-only flat data.
            m.bus
                .load(GDT + 0x50, &0x00cf_9100_0000_ffffu64.to_le_bytes());
            m.bus.load(0x7000, &0x11u16.to_le_bytes());
            assert_eq!(m.run(), ExitReason::Halt);
            assert_eq!(m.rec().0, expect, "RPL {rpl}");
        }
    }
}
