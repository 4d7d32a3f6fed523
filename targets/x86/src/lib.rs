//! The guest ISA, independent of any accelerator backend.
//!
//! * [`state`]: [`CpuState`], the one architectural register file that every
//!   backend, the boot code, gdb and the tests share.
//! * [`consts`]: architectural bit names (CR0, CR4, EFER, RFLAGS, MSR numbers).
//! * [`bus`]: [`CpuBus`], what the interpreter needs from the machine.
//! * [`mmu`]: the memory path (segmentation, page walk, TLB, MMIO dispatch)
//!   shared by the interpreter and the JIT.
//! * [`exception`]: [`Exception`], what instruction semantics raise.
//! * [`cpu_model`]: CPU models and feature flags (`-cpu`).
//! * [`interp`]: the interpreter ([`Cpu`]).

pub mod bus;
pub mod consts;
pub mod cpu_model;
pub mod exception;
pub mod gdb;
pub mod interp;
#[cfg(target_arch = "x86_64")]
pub mod jit;
pub mod mmu;
pub mod state;
pub mod testprog;
pub mod topology;

pub use bus::{BusAction, CpuBus, MsrFault, RamPtr, TestBus};
pub use exception::{Exception, XResult};
pub use interp::{Cpu, CpuConfig, ExitReason, JitConfig, StepResult};
pub use state::{gpr, CpuMode, CpuState, DescriptorTable, FpuState, Msrs, SegReg, Segment};
