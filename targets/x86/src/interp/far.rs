//! Far control transfer: JMP/CALL far (direct, through call gates, with
//! the privilege-changing stack switch), RETF, IRET in every mode. Task
//! switches (TSS / task-gate targets, IRET with NT) are not implemented:
//! they log once under `unimp` and raise #GP.

use iced_x86::{Code, Instruction, OpKind};

use super::flags::mask;
use super::interrupt::Pusher;
use super::segment::{desc_attr, sel_err};
use super::Cpu;
use crate::bus::CpuBus;
use crate::consts::{efer, rflags, seg_attr as sa};
use crate::exception::{Exception, XResult};
use crate::state::gpr::RSP;
use crate::{SegReg, Segment};

/// Target of a far JMP/CALL: (selector, offset, operand size).
fn far_target(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<(u16, u64, u32)> {
    match i.op0_kind() {
        OpKind::FarBranch16 => Ok((i.far_branch_selector(), i.far_branch16() as u64, 2)),
        OpKind::FarBranch32 => Ok((i.far_branch_selector(), i.far_branch32() as u64, 4)),
        _ => {
            let size = match i.code() {
                Code::Jmp_m1616 | Code::Call_m1616 => 2,
                Code::Jmp_m1632 | Code::Call_m1632 => 4,
                _ => 8,
            };
            let seg = cpu.mem_seg(i);
            let ea = cpu.ea(i);
            let off = cpu.read_sized(bus, seg, ea, size)?;
            let sel = cpu.read_u16(bus, seg, cpu.ea_add(i, ea, size as u64))?;
            Ok((sel, off, size))
        }
    }
}

impl Cpu {
    fn check_target_offset(&self, cs: &Segment, off: u64) -> XResult<()> {
        let long = self.state.efer & efer::LMA != 0 && cs.long();
        if long {
            if !crate::mmu::seg::is_canonical(off) {
                return Err(Exception::gp0());
            }
        } else if off > cs.limit as u64 {
            return Err(Exception::gp0());
        }
        Ok(())
    }

    /// Loads CS:RIP for a real/v8086-mode far transfer.
    fn far_real(&mut self, sel: u16, off: u64) -> XResult<()> {
        let mut cs = self.state.segs[SegReg::Cs as usize];
        if off > cs.limit as u64 {
            return Err(Exception::gp0());
        }
        cs.selector = sel;
        cs.base = (sel as u64) << 4;
        self.set_seg(SegReg::Cs, cs);
        self.next_rip = off;
        Ok(())
    }

    /// Code-segment target checks for a direct far JMP/CALL; returns the
    /// segment to load (RPL = CPL).
    fn direct_code_target(&self, sel: u16, desc: u64) -> XResult<Segment> {
        let a = desc_attr(desc);
        let dpl = ((a & sa::DPL_MASK) >> sa::DPL_SHIFT) as u8;
        let rpl = (sel & 3) as u8;
        let err = Exception::gp(sel_err(sel));
        if a & sa::DC != 0 {
            if dpl > self.cpl {
                return Err(err);
            }
        } else if rpl > self.cpl || dpl != self.cpl {
            return Err(err);
        }
        if a & sa::P == 0 {
            return Err(Exception::np(sel_err(sel)));
        }
        if self.state.efer & efer::LMA != 0 && a & sa::L != 0 && a & sa::DB != 0 {
            return Err(err);
        }
        let mut cs = Segment::from_descriptor(sel, desc | (1 << 40));
        cs.selector = (sel & !3) | self.cpl as u16;
        Ok(cs)
    }

    /// Reads a call gate: (target selector, offset, param count, gate dpl).
    fn read_call_gate(
        &mut self,
        bus: &mut dyn CpuBus,
        sel: u16,
        desc: u64,
    ) -> XResult<(u16, u64, u32, bool)> {
        let a = desc_attr(desc);
        let gdpl = ((a & sa::DPL_MASK) >> sa::DPL_SHIFT) as u8;
        let err = Exception::gp(sel_err(sel));
        if gdpl < self.cpl || gdpl < (sel & 3) as u8 {
            return Err(err);
        }
        if a & sa::P == 0 {
            return Err(Exception::np(sel_err(sel)));
        }
        let tsel = (desc >> 16) as u16;
        let lma = self.state.efer & efer::LMA != 0;
        let t = a & 0xf;
        if lma {
            if t != 0xc {
                return Err(err);
            }
            let (lo, hi) = self.read_desc16(bus, sel)?;
            if (hi >> 40) & 0x1f != 0 {
                return Err(err);
            }
            let off = (lo & 0xffff) | ((lo >> 32) & 0xffff_0000) | ((hi & 0xffff_ffff) << 32);
            Ok((tsel, off, 0, true))
        } else {
            let is32 = t == 0xc;
            let off = if is32 {
                (desc & 0xffff) | ((desc >> 32) & 0xffff_0000)
            } else {
                desc & 0xffff
            };
            Ok((tsel, off, ((desc >> 32) & 0x1f) as u32, is32))
        }
    }

    /// Gate target code segment: (descriptor, dpl).
    fn gate_code(&mut self, bus: &mut dyn CpuBus, tsel: u16) -> XResult<(u64, u8)> {
        if tsel & !3 == 0 {
            return Err(Exception::gp0());
        }
        let d = self.read_desc(bus, tsel)?;
        let a = desc_attr(d);
        let dpl = ((a & sa::DPL_MASK) >> sa::DPL_SHIFT) as u8;
        if a & sa::S == 0 || a & sa::CODE == 0 || dpl > self.cpl {
            return Err(Exception::gp(sel_err(tsel)));
        }
        if self.state.efer & efer::LMA != 0 && (a & sa::L == 0 || a & sa::DB != 0) {
            return Err(Exception::gp(sel_err(tsel)));
        }
        if a & sa::P == 0 {
            return Err(Exception::np(sel_err(tsel)));
        }
        Ok((d, dpl))
    }
}

fn task_switch_unimp(cpu: &mut Cpu, i: &Instruction, sel: u16) -> Exception {
    let _ = cpu.unimplemented(i);
    Exception::gp(sel_err(sel))
}

pub fn jmp_far(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let (sel, off, _) = far_target(cpu, bus, i)?;
    if cpu.real {
        return cpu.far_real(sel, off & 0xffff_ffff);
    }
    if sel & !3 == 0 {
        return Err(Exception::gp0());
    }
    let desc = cpu.read_desc(bus, sel)?;
    let a = desc_attr(desc);
    if a & sa::S != 0 {
        if a & sa::CODE == 0 {
            return Err(Exception::gp(sel_err(sel)));
        }
        let cs = cpu.direct_code_target(sel, desc)?;
        cpu.check_target_offset(&cs, off)?;
        cpu.set_desc_accessed(bus, sel, desc)?;
        cpu.set_seg(SegReg::Cs, cs);
        cpu.next_rip = off;
        return Ok(());
    }
    match a & 0xf {
        0x4 | 0xc => {
            let (tsel, toff, _, _) = cpu.read_call_gate(bus, sel, desc)?;
            let (d, dpl) = cpu.gate_code(bus, tsel)?;
            let ta = desc_attr(d);
            if ta & sa::DC == 0 && dpl != cpu.cpl {
                return Err(Exception::gp(sel_err(tsel)));
            }
            let mut cs = Segment::from_descriptor(tsel, d | (1 << 40));
            cs.selector = (tsel & !3) | cpu.cpl as u16;
            cpu.check_target_offset(&cs, toff)?;
            cpu.set_desc_accessed(bus, tsel, d)?;
            cpu.set_seg(SegReg::Cs, cs);
            cpu.next_rip = toff;
            Ok(())
        }
        _ => Err(task_switch_unimp(cpu, i, sel)),
    }
}

pub fn call_far(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let (sel, off, size) = far_target(cpu, bus, i)?;
    let ret = cpu.next_rip;
    let old_cs = cpu.state.seg(SegReg::Cs).selector as u64;
    if cpu.real {
        let sp = cpu.state.gpr[RSP];
        let r = (|| -> XResult<()> {
            cpu.push(bus, old_cs, size)?;
            cpu.push(bus, ret, size)?;
            cpu.far_real(sel, off & mask(size))
        })();
        if r.is_err() {
            cpu.state.gpr[RSP] = sp;
        }
        return r;
    }
    if sel & !3 == 0 {
        return Err(Exception::gp0());
    }
    let desc = cpu.read_desc(bus, sel)?;
    let a = desc_attr(desc);
    if a & sa::S != 0 {
        if a & sa::CODE == 0 {
            return Err(Exception::gp(sel_err(sel)));
        }
        let cs = cpu.direct_code_target(sel, desc)?;
        cpu.check_target_offset(&cs, off)?;
        let sp = cpu.state.gpr[RSP];
        let r = cpu
            .push(bus, old_cs, size)
            .and_then(|_| cpu.push(bus, ret, size));
        if let Err(e) = r {
            cpu.state.gpr[RSP] = sp;
            return Err(e);
        }
        cpu.set_desc_accessed(bus, sel, desc)?;
        cpu.set_seg(SegReg::Cs, cs);
        cpu.next_rip = off;
        return Ok(());
    }
    if !matches!(a & 0xf, 0x4 | 0xc) {
        return Err(task_switch_unimp(cpu, i, sel));
    }
    let (tsel, toff, params, is32) = cpu.read_call_gate(bus, sel, desc)?;
    let (d, dpl) = cpu.gate_code(bus, tsel)?;
    let ta = desc_attr(d);
    let lma = cpu.state.efer & efer::LMA != 0;
    let psize: u32 = if lma {
        8
    } else if is32 {
        4
    } else {
        2
    };
    let mut cs = Segment::from_descriptor(tsel, d | (1 << 40));
    let old_ss = *cpu.state.seg(SegReg::Ss);
    let old_sp = cpu.state.gpr[RSP];
    if ta & sa::DC == 0 && dpl < cpu.cpl {
        // More privileged: switch stacks.
        let (nss, nsp, pusher_seg) = if lma {
            let toff2 = 4 + dpl as u64 * 8;
            let tr = cpu.state.tr;
            if toff2 + 7 > tr.limit as u64 {
                return Err(Exception::ts(sel_err(tr.selector)));
            }
            let rsp = cpu.sys_read_u64(bus, tr.base.wrapping_add(toff2))?;
            let attr = sa::P | sa::S | sa::RW | sa::ACCESSED | ((dpl as u16) << sa::DPL_SHIFT);
            (
                Segment {
                    base: 0,
                    limit: 0xffff_ffff,
                    selector: dpl as u16,
                    attr,
                },
                rsp,
                None,
            )
        } else {
            let tr = cpu.state.tr;
            let off = 4 + dpl as u64 * 8;
            if off + 5 > tr.limit as u64 {
                return Err(Exception::ts(sel_err(tr.selector)));
            }
            let sp = cpu.sys_read_u32(bus, tr.base.wrapping_add(off))? as u64;
            let ss_sel = cpu.sys_read_u16(bus, tr.base.wrapping_add(off + 4))?;
            let ss = cpu.check_inner_ss(bus, ss_sel, dpl, 0)?;
            (ss, sp, Some(ss))
        };
        let _ = pusher_seg;
        let sp_mask = if lma {
            u64::MAX
        } else if nss.big() {
            0xffff_ffff
        } else {
            0xffff
        };
        let mut p = Pusher {
            seg: nss,
            sp: nsp,
            sp_mask,
            long: lma,
            user: dpl == 3,
            err: sel_err(nss.selector),
        };
        p.push(cpu, bus, old_ss.selector as u64, psize)?;
        p.push(cpu, bus, old_sp & mask(psize), psize)?;
        let old_sp_size = if old_ss.big() { 4 } else { 2 };
        for k in (0..params as u64).rev() {
            let a = old_sp.wrapping_add(k * psize as u64) & mask(old_sp_size);
            let v = cpu.read_sized(bus, SegReg::Ss, a, psize)?;
            p.push(cpu, bus, v, psize)?;
        }
        p.push(cpu, bus, old_cs, psize)?;
        p.push(cpu, bus, ret, psize)?;
        cs.selector = (tsel & !3) | dpl as u16;
        cpu.check_target_offset(&cs, toff)?;
        cpu.set_desc_accessed(bus, tsel, d)?;
        cpu.state.segs[SegReg::Ss as usize] = p.seg;
        cpu.state.gpr[RSP] = (cpu.state.gpr[RSP] & !p.sp_mask) | (p.sp & p.sp_mask);
        cpu.set_seg(SegReg::Cs, cs);
    } else {
        cs.selector = (tsel & !3) | cpu.cpl as u16;
        cpu.check_target_offset(&cs, toff)?;
        let r = cpu
            .push(bus, old_cs, psize)
            .and_then(|_| cpu.push(bus, ret, psize));
        if let Err(e) = r {
            cpu.state.gpr[RSP] = old_sp;
            return Err(e);
        }
        cpu.set_desc_accessed(bus, tsel, d)?;
        cpu.set_seg(SegReg::Cs, cs);
    }
    cpu.next_rip = toff;
    Ok(())
}

impl Cpu {
    /// Checks the CS a RETF/IRET returns to.
    fn check_ret_cs(&mut self, bus: &mut dyn CpuBus, sel: u16) -> XResult<(Segment, u64)> {
        if sel & !3 == 0 {
            return Err(Exception::gp0());
        }
        let d = self.read_desc(bus, sel)?;
        let a = desc_attr(d);
        let dpl = ((a & sa::DPL_MASK) >> sa::DPL_SHIFT) as u8;
        let rpl = (sel & 3) as u8;
        let err = Exception::gp(sel_err(sel));
        if a & sa::S == 0 || a & sa::CODE == 0 || rpl < self.cpl {
            return Err(err);
        }
        if a & sa::DC != 0 {
            if dpl > rpl {
                return Err(err);
            }
        } else if dpl != rpl {
            return Err(err);
        }
        if a & sa::P == 0 {
            return Err(Exception::np(sel_err(sel)));
        }
        if self.state.efer & efer::LMA != 0 && a & sa::L != 0 && a & sa::DB != 0 {
            return Err(err);
        }
        Ok((Segment::from_descriptor(sel, d | (1 << 40)), d))
    }

    /// Checks the SS popped on a return to an outer level `rpl`.
    fn check_outer_ss(
        &mut self,
        bus: &mut dyn CpuBus,
        sel: u16,
        rpl: u8,
        to_long: bool,
    ) -> XResult<Segment> {
        if sel & !3 == 0 {
            if self.state.efer & efer::LMA != 0 && to_long && rpl != 3 {
                let attr = sa::P | sa::S | sa::RW | sa::ACCESSED | ((rpl as u16) << sa::DPL_SHIFT);
                return Ok(Segment {
                    base: 0,
                    limit: 0xffff_ffff,
                    selector: sel,
                    attr,
                });
            }
            return Err(Exception::gp0());
        }
        let err = Exception::gp(sel_err(sel));
        if (sel & 3) as u8 != rpl {
            return Err(err);
        }
        let d = self.read_desc(bus, sel)?;
        let a = desc_attr(d);
        let dpl = ((a & sa::DPL_MASK) >> sa::DPL_SHIFT) as u8;
        if a & sa::S == 0 || a & sa::CODE != 0 || a & sa::RW == 0 || dpl != rpl {
            return Err(err);
        }
        if a & sa::P == 0 {
            return Err(Exception::ss(sel_err(sel)));
        }
        self.set_desc_accessed(bus, sel, d)?;
        Ok(Segment::from_descriptor(sel, d | (1 << 40)))
    }

    /// Nulls data segment registers not accessible at the new CPL.
    fn invalidate_data_segs(&mut self) {
        for s in [SegReg::Es, SegReg::Ds, SegReg::Fs, SegReg::Gs] {
            let seg = self.state.segs[s as usize];
            let conforming_code = seg.attr & sa::CODE != 0 && seg.attr & sa::DC != 0;
            if !conforming_code && seg.dpl() < self.cpl && seg.attr & sa::S != 0 {
                let base = if self.long64 && matches!(s, SegReg::Fs | SegReg::Gs) {
                    seg.base
                } else {
                    0
                };
                self.state.segs[s as usize] = Segment {
                    base,
                    limit: 0,
                    selector: 0,
                    attr: 0,
                };
            }
        }
    }
}

pub fn retf(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let size = match i.code() {
        Code::Retfw | Code::Retfw_imm16 => 2,
        Code::Retfd | Code::Retfd_imm16 => 4,
        _ => 8,
    };
    let imm = if i.op_count() > 0 {
        i.immediate16() as u64
    } else {
        0
    };
    let off = cpu.peek(bus, 0, size)?;
    let sel = cpu.peek(bus, size as u64, size)? as u16;
    if cpu.real {
        cpu.far_real(sel, off)?;
        cpu.sp_add(2 * size as u64 + imm);
        return Ok(());
    }
    let (mut cs, d) = cpu.check_ret_cs(bus, sel)?;
    let rpl = (sel & 3) as u8;
    cs.selector = sel;
    cpu.check_target_offset(&cs, off)?;
    if rpl > cpu.cpl {
        let nsp = cpu.peek(bus, 2 * size as u64 + imm, size)?;
        let nss = cpu.peek(bus, 3 * size as u64 + imm, size)? as u16;
        let to_long = cs.long();
        let ss = cpu.check_outer_ss(bus, nss, rpl, to_long)?;
        cpu.set_desc_accessed(bus, sel, d)?;
        cpu.set_seg(SegReg::Cs, cs);
        cpu.set_seg(SegReg::Ss, ss);
        let spm = if cpu.long64 {
            u64::MAX
        } else if ss.big() {
            0xffff_ffff
        } else {
            0xffff
        };
        let v = nsp.wrapping_add(imm) & spm;
        cpu.state.gpr[RSP] = (cpu.state.gpr[RSP] & !spm) | v;
        cpu.invalidate_data_segs();
    } else {
        cpu.set_desc_accessed(bus, sel, d)?;
        cpu.sp_add(2 * size as u64 + imm);
        cpu.set_seg(SegReg::Cs, cs);
    }
    cpu.next_rip = off;
    Ok(())
}

pub fn iret(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let size: u32 = match i.code() {
        Code::Iretw => 2,
        Code::Iretd => 4,
        _ => 8,
    };
    cpu.end_block = true;
    let vm = cpu.state.rflags & rflags::VM != 0;
    let iopl = ((cpu.state.rflags & rflags::IOPL) >> 12) as u8;
    if cpu.state.cr0 & crate::consts::cr0::PE == 0 || vm {
        if vm && iopl < 3 {
            return Err(Exception::gp0());
        }
        let ip = cpu.peek(bus, 0, size)?;
        let sel = cpu.peek(bus, size as u64, size)? as u16;
        let fl = cpu.peek(bus, 2 * size as u64, size)?;
        cpu.far_real(sel, ip)?;
        cpu.sp_add(3 * size as u64);
        let mut keep = rflags::VM | rflags::VIF | rflags::VIP;
        if vm {
            keep |= rflags::IOPL;
        }
        // Reserved bits (1, 3, 5, 15, 22-31) never come from the stack.
        let m = mask(size) & !keep & 0x003f_7fd5;
        cpu.state.rflags = (cpu.state.rflags & !m) | (fl & m) | rflags::FIXED1;
        cpu.state.rflags &= !rflags::RF | (fl & rflags::RF);
        cpu.state.nmi_blocked = false;
        cpu.update_mode();
        return Ok(());
    }
    let lma = cpu.state.efer & efer::LMA != 0;
    if cpu.state.rflags & rflags::NT != 0 {
        if lma {
            return Err(Exception::gp0());
        }
        let link = cpu.sys_read_u16(bus, cpu.state.tr.base)?;
        return Err(task_switch_unimp(cpu, i, link));
    }
    let ip = cpu.peek(bus, 0, size)?;
    let sel = cpu.peek(bus, size as u64, size)? as u16;
    let fl = cpu.peek(bus, 2 * size as u64, size)?;
    if fl & rflags::VM != 0 && cpu.cpl == 0 && !lma && size == 4 {
        // Return to virtual-8086 mode.
        let mut v = [0u64; 6];
        for (k, slot) in v.iter_mut().enumerate() {
            *slot = cpu.peek(bus, (3 + k as u64) * 4, 4)?;
        }
        let [esp, ss, es, ds, fs, gs] = v;
        cpu.state.rflags = (fl & 0x003f_7fd7) | rflags::FIXED1;
        let mk = |sel: u64, code: bool| {
            let mut s = Segment::real_mode(sel as u16, code);
            s.attr |= 3 << sa::DPL_SHIFT;
            s
        };
        cpu.state.segs[SegReg::Es as usize] = mk(es, false);
        cpu.state.segs[SegReg::Ds as usize] = mk(ds, false);
        cpu.state.segs[SegReg::Fs as usize] = mk(fs, false);
        cpu.state.segs[SegReg::Gs as usize] = mk(gs, false);
        cpu.state.segs[SegReg::Ss as usize] = mk(ss, false);
        cpu.state.segs[SegReg::Cs as usize] = mk(sel as u64, true);
        cpu.state.gpr[RSP] = esp & 0xffff_ffff;
        cpu.next_rip = ip & 0xffff;
        cpu.state.nmi_blocked = false;
        cpu.update_mode();
        return Ok(());
    }
    let (mut cs, d) = cpu.check_ret_cs(bus, sel)?;
    let rpl = (sel & 3) as u8;
    cs.selector = sel;
    cpu.check_target_offset(&cs, ip)?;
    let pop_stack = rpl > cpu.cpl || cpu.long64;
    let (nsp, ss) = if pop_stack {
        let nsp = cpu.peek(bus, 3 * size as u64, size)?;
        let nss = cpu.peek(bus, 4 * size as u64, size)? as u16;
        let ss = if rpl > cpu.cpl || nss & !3 != 0 || !cs.long() {
            Some(cpu.check_outer_ss(bus, nss, rpl, cs.long())?)
        } else {
            // Same-level IRETQ with a null SS: keep it null at RPL.
            let attr = sa::P | sa::S | sa::RW | sa::ACCESSED | ((rpl as u16) << sa::DPL_SHIFT);
            Some(Segment {
                base: 0,
                limit: 0xffff_ffff,
                selector: nss,
                attr,
            })
        };
        (nsp, ss)
    } else {
        (0, None)
    };
    // Flags: which bits the current privilege may change.
    let old_cpl = cpu.cpl;
    let mut changeable = rflags::CF
        | rflags::PF
        | rflags::AF
        | rflags::ZF
        | rflags::SF
        | rflags::TF
        | rflags::DF
        | rflags::OF
        | rflags::NT
        | rflags::RF
        | rflags::AC
        | rflags::ID;
    if old_cpl <= iopl {
        changeable |= rflags::IF;
    }
    if old_cpl == 0 {
        changeable |= rflags::IOPL | rflags::VIF | rflags::VIP;
    }
    changeable &= mask(size);
    cpu.set_desc_accessed(bus, sel, d)?;
    cpu.state.rflags = (cpu.state.rflags & !changeable) | (fl & changeable) | rflags::FIXED1;
    cpu.set_seg(SegReg::Cs, cs);
    match ss {
        Some(ss) => {
            cpu.set_seg(SegReg::Ss, ss);
            let spm = if cpu.long64 || size == 8 {
                u64::MAX
            } else if ss.big() {
                0xffff_ffff
            } else {
                0xffff
            };
            cpu.state.gpr[RSP] = (cpu.state.gpr[RSP] & !spm) | (nsp & spm);
        }
        None => cpu.sp_add(3 * size as u64),
    }
    if rpl > old_cpl {
        cpu.invalidate_data_segs();
    }
    cpu.state.nmi_blocked = false;
    cpu.next_rip = ip;
    cpu.update_mode();
    Ok(())
}

#[cfg(test)]
mod tests {
    use iced_x86::code_asm::*;
    use iced_x86::{Code, Instruction, MemoryOperand, Register};

    use crate::interp::tests::{asm, CODE, CS32, M};
    use crate::interp::ExitReason;
    use crate::SegReg;

    #[test]
    fn far_call_pointer_selector_wraps_with_16bit_addressing() {
        // CALL FAR m16:16 at [BX] = 0xFFFE: the selector is read at 0.
        let code = asm(32, CODE, |a| {
            a.mov(ebx, 0xfffe).unwrap();
            a.add_instruction(
                Instruction::with1(Code::Call_m1616, MemoryOperand::with_base(Register::BX))
                    .unwrap(),
            )
            .unwrap();
        });
        let mut m = M::prot32(&code);
        m.install_handlers32();
        m.bus.load(0xfffe, &0x8000u16.to_le_bytes());
        m.bus.load(0, &CS32.to_le_bytes());
        m.bus.load(0x8000, &[0xf4]);
        assert_eq!(m.run(), ExitReason::Halt);
        assert_eq!(m.rec().0, u64::MAX, "no exception");
        assert_eq!(m.cpu.state.rip, 0x8001);
        assert_eq!(m.cpu.state.seg(SegReg::Cs).selector, CS32);
    }
}
