//! Port I/O: IN/OUT and the permission check (IOPL, TSS I/O bitmap).

use iced_x86::{Instruction, OpKind};

use super::Cpu;
use crate::bus::{BusAction, CpuBus};
use crate::consts::{rflags, seg_attr};
use crate::exception::{Exception, XResult};
use crate::state::gpr::{RAX, RDX};

/// #GP(0) unless the current privilege may access `size` ports at `port`:
/// CPL <= IOPL (protected mode, not v8086), else every bit in the TSS I/O
/// permission bitmap must be clear.
pub fn check_io(cpu: &mut Cpu, bus: &mut dyn CpuBus, port: u16, size: u32) -> XResult<()> {
    let pe = cpu.state.cr0 & crate::consts::cr0::PE != 0;
    if !pe {
        return Ok(());
    }
    let vm = cpu.state.rflags & rflags::VM != 0;
    let iopl = ((cpu.state.rflags & rflags::IOPL) >> 12) as u8;
    if !vm && cpu.cpl <= iopl {
        return Ok(());
    }
    let tr = cpu.state.tr;
    let ty = tr.attr & seg_attr::TYPE_MASK;
    if tr.attr & seg_attr::S != 0
        || (ty != seg_attr::SYS_TSS_AVAIL && ty != seg_attr::SYS_TSS_BUSY)
        || tr.limit < 0x67
    {
        return Err(Exception::gp0());
    }
    let base16 = cpu.sys_read_u16(bus, tr.base.wrapping_add(0x66))? as u64;
    let off = base16 + (port as u64 >> 3);
    if off + 1 > tr.limit as u64 {
        return Err(Exception::gp0());
    }
    let bits = cpu.sys_read_u16(bus, tr.base.wrapping_add(off))? as u32;
    let m = ((1u32 << size) - 1) << (port & 7);
    if bits & m != 0 {
        return Err(Exception::gp0());
    }
    Ok(())
}

fn port_of(cpu: &Cpu, i: &Instruction, n: u32) -> u16 {
    if i.op_kind(n) == OpKind::Register {
        cpu.gpr_sized(RDX, 2) as u16
    } else {
        i.immediate8() as u16
    }
}

pub fn in_(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let size = cpu.op_size(i, 0);
    let port = port_of(cpu, i, 1);
    check_io(cpu, bus, port, size)?;
    let v = bus.io_in(port, size as u8);
    cpu.set_gpr_sized(RAX, size, v as u64);
    Ok(())
}

pub fn out(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let size = cpu.op_size(i, 1);
    let port = port_of(cpu, i, 0);
    check_io(cpu, bus, port, size)?;
    let v = cpu.gpr_sized(RAX, size) as u32;
    let act = bus.io_out(port, size as u8, v);
    if act != BusAction::Continue {
        cpu.mmu.pending_action = Some(act);
    }
    // A device write may raise an interrupt line: the block ends here and
    // interrupts are checked before the next instruction, as for MMIO.
    cpu.mmu.mmio_written = true;
    cpu.end_block = true;
    Ok(())
}
