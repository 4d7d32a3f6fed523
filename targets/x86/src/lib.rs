//! The guest ISA, independent of any accelerator backend.
//!
//! * [`state`]: [`CpuState`], the one architectural register file that every
//!   backend, the boot code, gdb and the tests share.
//! * [`consts`]: architectural bit names (CR0, CR4, EFER, RFLAGS, MSR numbers).

pub mod consts;
pub mod state;

pub use state::{gpr, CpuMode, CpuState, DescriptorTable, FpuState, Msrs, SegReg, Segment};
