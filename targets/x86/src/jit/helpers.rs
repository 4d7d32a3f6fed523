//! Functions generated code calls. They never unwind into generated code:
//! every outcome is a status, and a Rust panic inside one aborts (it
//! cannot cross an `extern "sysv64"` boundary).

use crate::bus::CpuBus;
use crate::interp::{Cpu, Op};

/// What helpers get from generated code (`Cpu::jit_ctx`): the bus.
pub struct Ctx<'a> {
    pub bus: &'a mut dyn CpuBus,
}

/// Interprets one instruction with the state the generated code left in
/// memory (RIP of the instruction, flags materialised). Returns nonzero
/// when the block must end after it: a fault was delivered, the
/// instruction ended the block on purpose (mode change, STI, HLT, ...),
/// code was overwritten or the machine wants something (bus action).
/// RIP then holds where execution continues.
///
/// # Safety
/// `cpu`, `ctx` and `op` are the live objects the dispatcher passed to
/// the generated code (no other reference to them is in use).
pub unsafe extern "sysv64" fn jit_exec(cpu: *mut Cpu, ctx: *mut Ctx<'_>, op: *const Op) -> u32 {
    // SAFETY: see the function's contract.
    let (cpu, ctx, op) = unsafe { (&mut *cpu, &mut *ctx, &*op) };
    cpu.exec_for_jit(ctx.bus, op) as u32
}
