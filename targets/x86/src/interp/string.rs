//! String instructions with REP/REPE/REPNE and every address size:
//! MOVS, CMPS, STOS, LODS, SCAS, INS, OUTS. A repeated instruction runs at
//! most [`REP_CHUNK`] iterations per execution and then restarts itself, so
//! interrupts and kicks are seen and every fault is precise (registers
//! reflect the iterations done, RIP stays on the instruction).

use iced_x86::{Instruction, Mnemonic, OpKind};

use super::flags::{self, mask, ARITH};
use super::Cpu;
use crate::bus::CpuBus;
use crate::consts::rflags::DF;
use crate::exception::XResult;
use crate::state::gpr::{RAX, RCX, RDI, RDX, RSI};
use crate::SegReg;

pub const REP_CHUNK: u32 = 4096;

/// Address size in bytes of a string instruction.
fn addr_size(i: &Instruction) -> u32 {
    for n in 0..i.op_count() {
        match i.op_kind(n) {
            OpKind::MemorySegSI | OpKind::MemoryESDI => return 2,
            OpKind::MemorySegESI | OpKind::MemoryESEDI => return 4,
            OpKind::MemorySegRSI | OpKind::MemoryESRDI => return 8,
            _ => {}
        }
    }
    8
}

fn elem_size(i: &Instruction) -> u32 {
    match i.mnemonic() {
        Mnemonic::Movsb
        | Mnemonic::Cmpsb
        | Mnemonic::Stosb
        | Mnemonic::Lodsb
        | Mnemonic::Scasb
        | Mnemonic::Insb
        | Mnemonic::Outsb => 1,
        Mnemonic::Movsw
        | Mnemonic::Cmpsw
        | Mnemonic::Stosw
        | Mnemonic::Lodsw
        | Mnemonic::Scasw
        | Mnemonic::Insw
        | Mnemonic::Outsw => 2,
        Mnemonic::Movsq | Mnemonic::Cmpsq | Mnemonic::Stosq | Mnemonic::Lodsq | Mnemonic::Scasq => {
            8
        }
        _ => 4,
    }
}

struct Rep {
    rep: bool,
    asz: u32,
    size: u32,
    step: u64,
}

impl Rep {
    fn new(cpu: &Cpu, i: &Instruction) -> Self {
        let size = elem_size(i);
        let step = if cpu.state.rflags & DF != 0 {
            (size as u64).wrapping_neg()
        } else {
            size as u64
        };
        Rep {
            rep: i.has_rep_prefix() || i.has_repne_prefix(),
            asz: addr_size(i),
            size,
            step,
        }
    }
}

fn src_seg(cpu: &Cpu, i: &Instruction) -> SegReg {
    cpu.mem_seg(i)
}

fn adv(cpu: &mut Cpu, reg: usize, r: &Rep) {
    let v = cpu.gpr_sized(reg, r.asz).wrapping_add(r.step) & mask(r.asz);
    cpu.set_gpr_sized(reg, r.asz, v);
}

/// Runs `body` per iteration with the REP protocol. `body` returns whether
/// to continue (for REPE/REPNE termination).
fn rep_loop(
    cpu: &mut Cpu,
    bus: &mut dyn CpuBus,
    i: &Instruction,
    r: &Rep,
    mut body: impl FnMut(&mut Cpu, &mut dyn CpuBus) -> XResult<bool>,
) -> XResult<()> {
    if !r.rep {
        body(cpu, bus)?;
        return Ok(());
    }
    let _ = i;
    let mut n = 0;
    loop {
        let c = cpu.gpr_sized(RCX, r.asz);
        if c == 0 {
            return Ok(());
        }
        let cont = body(cpu, bus)?;
        cpu.set_gpr_sized(RCX, r.asz, c.wrapping_sub(1) & mask(r.asz));
        if !cont || c == 1 {
            return Ok(());
        }
        n += 1;
        if n >= REP_CHUNK || cpu.mmu.pending_action.is_some() || !cpu.mmu.dirty_code.is_empty() {
            // Restart the instruction later.
            cpu.next_rip = cpu.state.rip;
            cpu.end_block = true;
            return Ok(());
        }
    }
}

/// REP MOVS / REP STOS over RAM in 64-bit mode with DF=0: whole runs that
/// stay inside one source and one destination page are copied (or filled)
/// at once. Anything else — MMIO, ROM, pages holding code or watched by
/// gdb, a missing translation (the fault), a page-crossing element, an
/// overlap where the forward element order matters — is left to the
/// element loop, which handles it exactly; so is every register update
/// after a fault. `src`: MOVS's source segment, `None` for STOS.
fn bulk(cpu: &mut Cpu, bus: &mut dyn CpuBus, r: &Rep, src: Option<SegReg>) {
    use crate::mmu::seg::is_canonical;
    use crate::mmu::tlb::{ATTR_RAM_READ, PAGE_MASK};
    use crate::mmu::Access;
    if !r.rep || !cpu.long64 || r.asz != 8 || cpu.ac || cpu.mmu.watching() {
        return;
    }
    if cpu.state.rflags & DF != 0 {
        return;
    }
    let size = r.size as u64;
    let base = match src {
        Some(s @ (SegReg::Fs | SegReg::Gs)) => cpu.state.seg(s).base,
        _ => 0,
    };
    let fill = cpu.gpr_sized(RAX, r.size);
    let mut done = 0u64;
    while done < 64 * 1024 {
        let c = cpu.state.gpr[RCX];
        let d = cpu.state.gpr[RDI];
        if c == 0 || !is_canonical(d) {
            return;
        }
        // The source first: the element order reads it before writing.
        let mut bytes = (0x1000 - (d & 0xfff)).min(c.saturating_mul(size));
        let mut hs = 0;
        if src.is_some() {
            let s = base.wrapping_add(cpu.state.gpr[RSI]);
            if !is_canonical(s) {
                return;
            }
            let Ok(se) = cpu
                .mmu
                .translate(&cpu.state, bus, s, Access::Read, cpu.user)
            else {
                return;
            };
            if se.tag_read != s & PAGE_MASK || se.attrs & ATTR_RAM_READ == 0 {
                return;
            }
            bytes = bytes.min(0x1000 - (s & 0xfff));
            hs = se.addend.wrapping_add(s);
        }
        let Ok(de) = cpu
            .mmu
            .translate(&cpu.state, bus, d, Access::Write, cpu.user)
        else {
            return;
        };
        if de.tag_write != d & PAGE_MASK {
            return;
        }
        let hd = de.addend.wrapping_add(d);
        bytes -= bytes % size;
        if bytes == 0 {
            return;
        }
        if src.is_some() {
            if hd > hs && hd < hs + bytes {
                // Forward element order replicates data here: memmove
                // would not.
                return;
            }
            // SAFETY: both TLB entries map their whole 4 KiB page on the
            // host (RAM, the destination writable and free of translated
            // code), and `bytes` stays inside both pages; `copy` allows
            // the remaining overlaps, which give the same result as the
            // forward element order.
            unsafe { std::ptr::copy(hs as *const u8, hd as *mut u8, bytes as usize) };
            cpu.state.gpr[RSI] = cpu.state.gpr[RSI].wrapping_add(bytes);
        } else {
            let n = (bytes / size) as usize;
            // SAFETY: as above for the destination page; unaligned writes
            // of the element, never a reference into guest memory.
            unsafe {
                match r.size {
                    1 => std::ptr::write_bytes(hd as *mut u8, fill as u8, n),
                    2 => (0..n).for_each(|k| {
                        std::ptr::write_unaligned((hd as *mut u16).add(k), (fill as u16).to_le())
                    }),
                    4 => (0..n).for_each(|k| {
                        std::ptr::write_unaligned((hd as *mut u32).add(k), (fill as u32).to_le())
                    }),
                    _ => (0..n).for_each(|k| {
                        std::ptr::write_unaligned((hd as *mut u64).add(k), fill.to_le())
                    }),
                }
            }
        }
        cpu.state.gpr[RDI] = d.wrapping_add(bytes);
        cpu.state.gpr[RCX] = c - bytes / size;
        done += bytes;
    }
}

pub fn movs(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let r = Rep::new(cpu, i);
    let seg = src_seg(cpu, i);
    bulk(cpu, bus, &r, Some(seg));
    rep_loop(cpu, bus, i, &r, |cpu, bus| {
        let s = cpu.gpr_sized(RSI, r.asz);
        let d = cpu.gpr_sized(RDI, r.asz);
        let v = cpu.read_sized(bus, seg, s, r.size)?;
        cpu.write_sized(bus, SegReg::Es, d, r.size, v)?;
        adv(cpu, RSI, &r);
        adv(cpu, RDI, &r);
        Ok(true)
    })
}

pub fn stos(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let r = Rep::new(cpu, i);
    let v = cpu.gpr_sized(RAX, r.size);
    bulk(cpu, bus, &r, None);
    rep_loop(cpu, bus, i, &r, |cpu, bus| {
        let d = cpu.gpr_sized(RDI, r.asz);
        cpu.write_sized(bus, SegReg::Es, d, r.size, v)?;
        adv(cpu, RDI, &r);
        Ok(true)
    })
}

pub fn lods(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let r = Rep::new(cpu, i);
    let seg = src_seg(cpu, i);
    rep_loop(cpu, bus, i, &r, |cpu, bus| {
        let s = cpu.gpr_sized(RSI, r.asz);
        let v = cpu.read_sized(bus, seg, s, r.size)?;
        cpu.set_gpr_sized(RAX, r.size, v);
        adv(cpu, RSI, &r);
        Ok(true)
    })
}

pub fn cmps(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let r = Rep::new(cpu, i);
    let seg = src_seg(cpu, i);
    let repne = i.has_repne_prefix();
    rep_loop(cpu, bus, i, &r, |cpu, bus| {
        let s = cpu.gpr_sized(RSI, r.asz);
        let d = cpu.gpr_sized(RDI, r.asz);
        // ES:(E)DI is read first (on Intel CPUs a fault there, e.g. #AC,
        // wins over one at the source).
        let b = cpu.read_sized(bus, SegReg::Es, d, r.size)?;
        let a = cpu.read_sized(bus, seg, s, r.size)?;
        let (res, f) = flags::sub(a, b, 0, r.size);
        cpu.set_flags(ARITH, f);
        adv(cpu, RSI, &r);
        adv(cpu, RDI, &r);
        Ok((res == 0) != repne)
    })
}

pub fn scas(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let r = Rep::new(cpu, i);
    let repne = i.has_repne_prefix();
    let a = cpu.gpr_sized(RAX, r.size);
    rep_loop(cpu, bus, i, &r, |cpu, bus| {
        let d = cpu.gpr_sized(RDI, r.asz);
        let b = cpu.read_sized(bus, SegReg::Es, d, r.size)?;
        let (res, f) = flags::sub(a, b, 0, r.size);
        cpu.set_flags(ARITH, f);
        adv(cpu, RDI, &r);
        Ok((res == 0) != repne)
    })
}

pub fn ins(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let r = Rep::new(cpu, i);
    let port = cpu.gpr_sized(RDX, 2) as u16;
    super::io::check_io(cpu, bus, port, r.size)?;
    rep_loop(cpu, bus, i, &r, |cpu, bus| {
        let d = cpu.gpr_sized(RDI, r.asz);
        // Probe the destination before the (side-effecting) port read.
        let lin = cpu.lin(
            SegReg::Es,
            d,
            r.size as u64,
            crate::mmu::seg::SegAccess::Write,
        )?;
        cpu.mmu
            .probe_write(&cpu.state, bus, lin, r.size as usize, cpu.user)?;
        let v = bus.io_in(port, r.size as u8);
        cpu.write_lin_sized(bus, lin, r.size, v as u64)?;
        adv(cpu, RDI, &r);
        Ok(true)
    })
}

pub fn outs(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let r = Rep::new(cpu, i);
    let port = cpu.gpr_sized(RDX, 2) as u16;
    let seg = src_seg(cpu, i);
    super::io::check_io(cpu, bus, port, r.size)?;
    rep_loop(cpu, bus, i, &r, |cpu, bus| {
        let s = cpu.gpr_sized(RSI, r.asz);
        let v = cpu.read_sized(bus, seg, s, r.size)?;
        let act = bus.io_out(port, r.size as u8, v as u32);
        if act != crate::bus::BusAction::Continue {
            cpu.mmu.pending_action = Some(act);
        }
        adv(cpu, RSI, &r);
        Ok(true)
    })
}

#[cfg(test)]
mod tests {
    use iced_x86::code_asm::*;
    use iced_x86::{Instruction, Register, RepPrefixKind};

    use crate::exception::vector;
    use crate::interp::tests::{asm, CODE, M};
    use crate::interp::ExitReason;

    #[test]
    fn cmps_reads_the_destination_first() {
        // CPL 3, alignment checks on: CMPSD FS:[ESI], ES:[EDI] with a null
        // FS (#GP on use) and a misaligned EDI (#AC) raises #AC, as on
        // Intel CPUs (the ES:EDI read comes first); with EDI aligned, #GP.
        for (dst, expect) in [(0x7002u32, vector::AC), (0x7000, vector::GP)] {
            let code = asm(32, CODE, |a| {
                a.xor(eax, eax).unwrap();
                a.mov(fs, ax).unwrap();
                a.mov(esi, 0x7100).unwrap();
                a.mov(edi, dst).unwrap();
                a.add_instruction(
                    Instruction::with_cmpsd(32, Register::FS, RepPrefixKind::None).unwrap(),
                )
                .unwrap();
                a.hlt().unwrap();
            });
            let mut m = M::prot32_user_ac(&code);
            assert_eq!(m.run(), ExitReason::Halt);
            assert_eq!(m.rec().0, expect as u64, "EDI = {dst:#x}");
        }
    }
}
