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

pub fn movs(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let r = Rep::new(cpu, i);
    let seg = src_seg(cpu, i);
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

    use crate::consts::{cr0, rflags};
    use crate::exception::vector;
    use crate::interp::tests::{asm, CODE, DS32, GDT_ENTRIES, M, TSS, UCS32, UDS};
    use crate::interp::ExitReason;
    use crate::{SegReg, Segment};

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
            let mut m = M::prot32(&code);
            m.install_handlers32();
            m.bus.load(TSS + 4, &0x60000u32.to_le_bytes());
            m.bus.load(TSS + 8, &(DS32 as u32).to_le_bytes());
            let st = &mut m.cpu.state;
            let user = |sel: u16| {
                Segment::from_descriptor(sel, GDT_ENTRIES[(sel >> 3) as usize] | 1 << 40)
            };
            st.segs[SegReg::Cs as usize] = user(UCS32);
            for s in [SegReg::Ds, SegReg::Es, SegReg::Ss, SegReg::Fs, SegReg::Gs] {
                st.segs[s as usize] = user(UDS);
            }
            st.gpr[4] = 0x50000;
            st.cr0 |= cr0::AM;
            st.rflags |= rflags::AC;
            m.cpu.update_mode();
            assert_eq!(m.run(), ExitReason::Halt);
            assert_eq!(m.rec().0, expect as u64, "EDI = {dst:#x}");
        }
    }
}
