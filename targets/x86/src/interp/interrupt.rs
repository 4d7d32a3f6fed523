//! Exception and interrupt delivery (SDM vol. 3, chapter 6): real mode
//! (IVT), protected mode (IDT gates, stack switch through the TSS, error
//! codes, v8086 exits) and long mode (64-bit IDT, IST, 16-byte stack
//! alignment); double-fault classes and triple fault.

use super::segment::{desc_attr, sel_err};
use super::{Cpu, ExitReason};
use crate::bus::CpuBus;
use crate::consts::{rflags, seg_attr as sa};
use crate::exception::{vector, vector_name, Exception, XResult};
use crate::mmu::seg::is_canonical;
use crate::{SegReg, Segment};

/// What kind of event is delivered (decides privilege checks, EXT, and
/// error-code pushing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A fault/trap raised by the processor.
    Exception,
    /// An external interrupt or NMI.
    External,
    /// INT n.
    SoftInt,
    /// INT3 / INTO (gate DPL checked, no EXT).
    SoftException,
    /// INT1 (ICEBP): like an exception, no DPL check.
    Icebp,
}

impl EventKind {
    fn ext(self) -> u32 {
        match self {
            EventKind::Exception | EventKind::External | EventKind::Icebp => 1,
            _ => 0,
        }
    }
    fn soft(self) -> bool {
        matches!(self, EventKind::SoftInt | EventKind::SoftException)
    }
}

/// The RFLAGS image an event pushes: RF is set for every fault-class
/// exception but an instruction-breakpoint #DB (SDM Vol. 3A 17.3.1.1), so
/// that IRET back to the faulting instruction does not retrigger an
/// instruction breakpoint on it. #DF (an abort, raised by a fault during a
/// fault's delivery) has it set too, as on hardware.
fn pushed_rflags(flags: u64, v: u8, kind: EventKind) -> u64 {
    let fault = matches!(v, 0 | 5..=8 | 10..=14 | 16 | 17 | 19 | 20 | 21);
    if kind == EventKind::Exception && fault {
        flags | rflags::RF
    } else {
        flags
    }
}

/// Limit-checked linear address on a stack segment (not the current one).
fn stack_lin(seg: &Segment, off: u64, size: u64, long: bool, err: u32) -> XResult<u64> {
    if long {
        if !is_canonical(off) {
            return Err(Exception::ss(err));
        }
        return Ok(off);
    }
    let last = off.wrapping_add(size - 1);
    let expand_down = seg.attr & (sa::CODE | sa::DC) == sa::DC;
    let ok = if expand_down {
        let upper: u64 = if seg.attr & sa::DB != 0 {
            0xffff_ffff
        } else {
            0xffff
        };
        off > seg.limit as u64 && last <= upper
    } else {
        last <= seg.limit as u64
    };
    if !ok {
        return Err(Exception::ss(err));
    }
    Ok(seg.base.wrapping_add(off) & 0xffff_ffff)
}

/// Pushes onto a stack that may not be the current SS.
pub(crate) struct Pusher {
    pub seg: Segment,
    pub sp: u64,
    pub sp_mask: u64,
    pub long: bool,
    pub user: bool,
    pub err: u32,
}

impl Pusher {
    pub fn push(&mut self, cpu: &mut Cpu, bus: &mut dyn CpuBus, v: u64, size: u32) -> XResult<()> {
        let sp = self.sp.wrapping_sub(size as u64) & self.sp_mask;
        let lin = stack_lin(&self.seg, sp, size as u64, self.long, self.err)?;
        cpu.write_lin_sized_as(bus, lin, size, v, self.user)?;
        self.sp = sp;
        Ok(())
    }
}

impl Cpu {
    /// Delivers an exception raised while executing at `state.rip`, with the
    /// double-fault and triple-fault rules.
    pub(crate) fn deliver_exception(&mut self, bus: &mut dyn CpuBus, e: Exception) {
        self.deliver_with_rules(bus, e.vector, e.error_code, e.address, EventKind::Exception);
    }

    /// Delivers an external interrupt.
    pub(crate) fn deliver_interrupt(&mut self, bus: &mut dyn CpuBus, v: u8) {
        self.deliver_with_rules(bus, v, None, 0, EventKind::External);
    }

    /// Delivers an NMI (vector 2).
    pub(crate) fn deliver_nmi(&mut self, bus: &mut dyn CpuBus) {
        self.deliver_with_rules(bus, vector::NMI, None, 0, EventKind::External);
    }

    fn deliver_with_rules(
        &mut self,
        bus: &mut dyn CpuBus,
        v: u8,
        code: Option<u32>,
        addr: u64,
        kind: EventKind,
    ) {
        let mut cur = Exception {
            vector: v,
            error_code: code,
            address: addr,
        };
        let mut kind = kind;
        self.end_block = true;
        for _ in 0..4 {
            log::debug!(target: "int", "deliver {} ({}) err {:?} at {:#x} cr2 {:#x} kind {:?}",
                cur.vector, vector_name(cur.vector), cur.error_code, self.state.rip, cur.address, kind);
            if cur.vector == vector::PF && kind == EventKind::Exception {
                self.state.cr2 = cur.address;
            }
            self.delivering = Some(cur.vector);
            let r = self.deliver_event(bus, cur.vector, cur.error_code, kind, self.state.rip);
            self.delivering = None;
            match r {
                Ok(()) => return,
                Err(e2) => {
                    if cur.vector == vector::DF && kind == EventKind::Exception {
                        break;
                    }
                    let df = kind != EventKind::External
                        && ((cur.is_contributory() && e2.is_contributory())
                            || (cur.vector == vector::PF
                                && (e2.is_contributory() || e2.vector == vector::PF)));
                    log::debug!(target: "int", "fault {} during delivery of {}", vector_name(e2.vector), vector_name(cur.vector));
                    cur = if df {
                        Exception::with_code(vector::DF, 0)
                    } else {
                        e2
                    };
                    kind = EventKind::Exception;
                }
            }
        }
        log::warn!(target: "int", "triple fault at {:#x} (cs {:#x}): shutdown", self.state.rip, self.state.segs[1].selector);
        self.exit = Some(ExitReason::Shutdown);
    }

    /// Delivers one event through the IVT/IDT. `ret` is the RIP pushed.
    /// Nothing architectural changes unless it succeeds.
    pub(crate) fn deliver_event(
        &mut self,
        bus: &mut dyn CpuBus,
        v: u8,
        code: Option<u32>,
        kind: EventKind,
        ret: u64,
    ) -> XResult<()> {
        // Real mode: no error codes.
        if self.state.cr0 & crate::consts::cr0::PE == 0 {
            return self.deliver_real(bus, v, ret);
        }
        let code = if kind.soft() || kind == EventKind::External {
            None
        } else {
            code
        };
        if self.state.efer & crate::consts::efer::LMA != 0 {
            self.deliver_long(bus, v, code, kind, ret)
        } else {
            self.deliver_prot(bus, v, code, kind, ret)
        }
    }

    fn deliver_real(&mut self, bus: &mut dyn CpuBus, v: u8, ret: u64) -> XResult<()> {
        let off = v as u64 * 4;
        if off + 3 > self.state.idtr.limit as u64 {
            return Err(Exception::gp(v as u32 * 8 + 2));
        }
        let ent = self.sys_read_u32(bus, self.state.idtr.base.wrapping_add(off))?;
        let flags = self.state.rflags;
        let cs = self.state.seg(SegReg::Cs).selector;
        let saved_sp = self.state.gpr[4];
        let r = (|| -> XResult<()> {
            self.push(bus, flags & 0xffff, 2)?;
            self.push(bus, cs as u64, 2)?;
            self.push(bus, ret & 0xffff, 2)
        })();
        if let Err(e) = r {
            self.state.gpr[4] = saved_sp;
            return Err(e);
        }
        let sel = (ent >> 16) as u16;
        let mut seg = self.state.segs[SegReg::Cs as usize];
        seg.selector = sel;
        seg.base = (sel as u64) << 4;
        self.state.rflags &= !(rflags::IF | rflags::TF | rflags::AC | rflags::RF);
        self.set_seg(SegReg::Cs, seg);
        self.state.rip = (ent & 0xffff) as u64;
        self.state.halted = false;
        Ok(())
    }

    /// Reads the inner stack pointer for `dpl` from the TSS (32- or 16-bit).
    fn tss_stack(&mut self, bus: &mut dyn CpuBus, dpl: u8, ext: u32) -> XResult<(u16, u64)> {
        let tr = self.state.tr;
        let ty = tr.attr & sa::TYPE_MASK;
        let err = Exception::ts(sel_err(tr.selector) | ext);
        if ty == sa::SYS_TSS16_BUSY || ty == sa::SYS_TSS16_AVAIL {
            let off = 2 + dpl as u64 * 4;
            if off + 3 > tr.limit as u64 {
                return Err(err);
            }
            let sp = self.sys_read_u16(bus, tr.base.wrapping_add(off))? as u64;
            let ss = self.sys_read_u16(bus, tr.base.wrapping_add(off + 2))?;
            Ok((ss, sp))
        } else {
            let off = 4 + dpl as u64 * 8;
            if off + 5 > tr.limit as u64 {
                return Err(err);
            }
            let sp = self.sys_read_u32(bus, tr.base.wrapping_add(off))? as u64;
            let ss = self.sys_read_u16(bus, tr.base.wrapping_add(off + 4))?;
            Ok((ss, sp))
        }
    }

    /// Validates a new inner SS for privilege `dpl` (#TS on failure).
    pub(crate) fn check_inner_ss(
        &mut self,
        bus: &mut dyn CpuBus,
        ss: u16,
        dpl: u8,
        ext: u32,
    ) -> XResult<Segment> {
        let err = Exception::ts(sel_err(ss) | ext);
        if ss & !3 == 0 || (ss & 3) as u8 != dpl {
            return Err(err);
        }
        let d = self.read_desc(bus, ss).map_err(|_| err)?;
        let a = desc_attr(d);
        let sdpl = ((a & sa::DPL_MASK) >> sa::DPL_SHIFT) as u8;
        if a & sa::S == 0 || a & sa::CODE != 0 || a & sa::RW == 0 || sdpl != dpl {
            return Err(err);
        }
        if a & sa::P == 0 {
            return Err(Exception::ss(sel_err(ss) | ext));
        }
        self.set_desc_accessed(bus, ss, d)?;
        Ok(Segment::from_descriptor(ss, d | (1 << 40)))
    }

    /// Reads and checks the gate's target code segment: (segment, dpl).
    fn gate_target(
        &mut self,
        bus: &mut dyn CpuBus,
        sel: u16,
        ext: u32,
    ) -> XResult<(Segment, u8, u64)> {
        if sel & !3 == 0 {
            return Err(Exception::gp(ext));
        }
        let d = self
            .read_desc(bus, sel)
            .map_err(|_| Exception::gp(sel_err(sel) | ext))?;
        let a = desc_attr(d);
        let dpl = ((a & sa::DPL_MASK) >> sa::DPL_SHIFT) as u8;
        if a & sa::S == 0 || a & sa::CODE == 0 || dpl > self.cpl {
            return Err(Exception::gp(sel_err(sel) | ext));
        }
        if a & sa::P == 0 {
            return Err(Exception::np(sel_err(sel) | ext));
        }
        Ok((Segment::from_descriptor(sel, d), dpl, d))
    }

    fn deliver_prot(
        &mut self,
        bus: &mut dyn CpuBus,
        v: u8,
        code: Option<u32>,
        kind: EventKind,
        ret: u64,
    ) -> XResult<()> {
        let ext = kind.ext();
        let idt_err = v as u32 * 8 + 2 + ext;
        if v as u64 * 8 + 7 > self.state.idtr.limit as u64 {
            return Err(Exception::gp(idt_err));
        }
        let gate = self.sys_read_u64(bus, self.state.idtr.base.wrapping_add(v as u64 * 8))?;
        let ga = desc_attr(gate);
        let gtype = ga & 0x1f;
        let gdpl = ((ga & sa::DPL_MASK) >> sa::DPL_SHIFT) as u8;
        let (is32, is_int) = match gtype {
            0x06 => (false, true),
            0x07 => (false, false),
            0x0e => (true, true),
            0x0f => (true, false),
            0x05 => {
                log::warn!(target: "unimp", "task gate in IDT vector {v}: task switching not implemented");
                return Err(Exception::gp(idt_err));
            }
            _ => return Err(Exception::gp(idt_err)),
        };
        if kind.soft() && gdpl < self.cpl {
            return Err(Exception::gp(v as u32 * 8 + 2));
        }
        if ga & sa::P == 0 {
            return Err(Exception::np(idt_err));
        }
        let sel = (gate >> 16) as u16;
        let off = if is32 {
            (gate & 0xffff) | ((gate >> 32) & 0xffff_0000)
        } else {
            gate & 0xffff
        };
        let (mut cs, dpl, cs_desc) = self.gate_target(bus, sel, ext)?;
        let conforming = cs.attr & sa::DC != 0;
        let vm = self.state.rflags & rflags::VM != 0;
        let psize = if is32 { 4 } else { 2 };
        let old_flags = pushed_rflags(self.state.rflags, v, kind);
        let old_cs = self.state.seg(SegReg::Cs).selector as u64;
        let old_ss = self.state.seg(SegReg::Ss).selector as u64;
        let old_sp = self.state.gpr[4];
        if off > cs.limit as u64 {
            return Err(Exception::gp(ext));
        }
        let inner = !conforming && dpl < self.cpl;
        if vm && (!inner || dpl != 0) {
            return Err(Exception::gp(sel_err(sel) | ext));
        }
        let mut p;
        let new_cpl;
        if inner {
            let (ss_sel, sp) = self.tss_stack(bus, dpl, ext)?;
            let ss = self.check_inner_ss(bus, ss_sel, dpl, ext)?;
            let sp_mask = if ss.big() { 0xffff_ffff } else { 0xffff };
            p = Pusher {
                seg: ss,
                sp,
                sp_mask,
                long: false,
                user: dpl == 3,
                err: sel_err(ss_sel) | ext,
            };
            if vm {
                for s in [SegReg::Gs, SegReg::Fs, SegReg::Ds, SegReg::Es] {
                    p.push(self, bus, self.state.seg(s).selector as u64, psize)?;
                }
            }
            p.push(self, bus, old_ss, psize)?;
            p.push(
                self,
                bus,
                old_sp & if is32 { 0xffff_ffff } else { 0xffff },
                psize,
            )?;
            new_cpl = dpl;
        } else {
            let ss = *self.state.seg(SegReg::Ss);
            let sp_mask = if ss.big() { 0xffff_ffff } else { 0xffff };
            p = Pusher {
                seg: ss,
                sp: old_sp & sp_mask,
                sp_mask,
                long: false,
                user: self.cpl == 3,
                err: 0,
            };
            new_cpl = self.cpl;
        }
        p.push(self, bus, old_flags & 0xffff_ffff, psize)?;
        p.push(self, bus, old_cs, psize)?;
        p.push(self, bus, ret, psize)?;
        if let Some(c) = code {
            p.push(self, bus, c as u64, psize)?;
        }
        // Commit.
        self.set_desc_accessed(bus, sel, cs_desc)?;
        cs.selector = (sel & !3) | new_cpl as u16;
        cs.attr |= sa::ACCESSED;
        if inner {
            if vm {
                for s in [SegReg::Gs, SegReg::Fs, SegReg::Ds, SegReg::Es] {
                    self.state.segs[s as usize] = Segment {
                        base: 0,
                        limit: 0,
                        selector: 0,
                        attr: 0,
                    };
                }
            }
            self.state.segs[SegReg::Ss as usize] = p.seg;
        }
        let spm = p.sp_mask;
        self.state.gpr[4] = (self.state.gpr[4] & !spm) | (p.sp & spm);
        self.state.rflags &= !(rflags::TF | rflags::NT | rflags::RF | rflags::VM);
        if is_int {
            self.state.rflags &= !rflags::IF;
        }
        self.set_seg(SegReg::Cs, cs);
        self.state.rip = off;
        self.state.halted = false;
        Ok(())
    }

    fn deliver_long(
        &mut self,
        bus: &mut dyn CpuBus,
        v: u8,
        code: Option<u32>,
        kind: EventKind,
        ret: u64,
    ) -> XResult<()> {
        let ext = kind.ext();
        let idt_err = v as u32 * 8 + 2 + ext;
        if v as u64 * 16 + 15 > self.state.idtr.limit as u64 {
            return Err(Exception::gp(idt_err));
        }
        let base = self.state.idtr.base.wrapping_add(v as u64 * 16);
        let lo = self.sys_read_u64(bus, base)?;
        let hi = self.sys_read_u64(bus, base.wrapping_add(8))?;
        let ga = desc_attr(lo);
        let gdpl = ((ga & sa::DPL_MASK) >> sa::DPL_SHIFT) as u8;
        let is_int = match ga & 0x1f {
            0x0e => true,
            0x0f => false,
            _ => return Err(Exception::gp(idt_err)),
        };
        if kind.soft() && gdpl < self.cpl {
            return Err(Exception::gp(v as u32 * 8 + 2));
        }
        if ga & sa::P == 0 {
            return Err(Exception::np(idt_err));
        }
        let sel = (lo >> 16) as u16;
        let off = (lo & 0xffff) | ((lo >> 32) & 0xffff_0000) | (hi << 32);
        let ist = (lo >> 32) & 7;
        let (mut cs, dpl, cs_desc) = self.gate_target(bus, sel, ext)?;
        if !cs.long() || cs.big() {
            return Err(Exception::gp(sel_err(sel) | ext));
        }
        if !is_canonical(off) {
            return Err(Exception::gp(ext));
        }
        let conforming = cs.attr & sa::DC != 0;
        let inner = !conforming && dpl < self.cpl;
        let new_cpl = if inner { dpl } else { self.cpl };
        let tr = self.state.tr;
        let mut rsp = self.state.gpr[4];
        if inner || ist != 0 {
            let toff = if ist != 0 {
                0x24 + (ist - 1) * 8
            } else {
                4 + dpl as u64 * 8
            };
            if toff + 7 > tr.limit as u64 {
                return Err(Exception::ts(sel_err(tr.selector) | ext));
            }
            rsp = self.sys_read_u64(bus, tr.base.wrapping_add(toff))?;
        }
        rsp &= !0xf;
        let old_ss = self.state.seg(SegReg::Ss).selector as u64;
        let ss_seg = Segment {
            base: 0,
            limit: 0xffff_ffff,
            selector: 0,
            attr: 0,
        };
        let mut p = Pusher {
            seg: ss_seg,
            sp: rsp,
            sp_mask: u64::MAX,
            long: true,
            user: new_cpl == 3,
            err: ext,
        };
        p.push(self, bus, old_ss, 8)?;
        p.push(self, bus, self.state.gpr[4], 8)?;
        p.push(self, bus, pushed_rflags(self.state.rflags, v, kind), 8)?;
        p.push(self, bus, self.state.seg(SegReg::Cs).selector as u64, 8)?;
        p.push(self, bus, ret, 8)?;
        if let Some(c) = code {
            p.push(self, bus, c as u64, 8)?;
        }
        self.set_desc_accessed(bus, sel, cs_desc)?;
        if inner {
            let attr = sa::P
                | sa::S
                | sa::RW
                | sa::ACCESSED
                | sa::DB
                | sa::G
                | ((dpl as u16) << sa::DPL_SHIFT);
            self.state.segs[SegReg::Ss as usize] = Segment {
                base: 0,
                limit: 0xffff_ffff,
                selector: dpl as u16,
                attr,
            };
        }
        cs.selector = (sel & !3) | new_cpl as u16;
        cs.attr |= sa::ACCESSED;
        self.state.gpr[4] = p.sp;
        self.state.rflags &= !(rflags::TF | rflags::NT | rflags::RF | rflags::VM);
        if is_int {
            self.state.rflags &= !rflags::IF;
        }
        self.set_seg(SegReg::Cs, cs);
        self.state.rip = off;
        self.state.halted = false;
        Ok(())
    }
}
