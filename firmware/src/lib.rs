//! What puts a guest into memory and the vCPU into its first state.
//!
//! * [`layout`]: every guest-physical address of the PC machine model.
//! * [`memory`]: [`create_guest_memory`], RAM and the BIOS ROM per the layout.
//! * [`kernel`]: `-kernel` images: format detection, ELF32/ELF64 loading and
//!   the documented entry states.
//! * [`boot`]: boot GDT, identity page tables, command line, flat entry states.
//! * [`linux`]: the Linux boot protocol: bzImage/vmlinux, initrd, zero page, e820.
//! * [`multiboot`]: Multiboot 1 and 2 kernels, their modules and boot information.
//! * [`acpi`]: ACPI tables (RSDP, RSDT/XSDT, FADT, FACS, MADT, DSDT).
//! * [`mptable`]: the Intel MP table, for kernels booted without ACPI.
//! * [`bios`]: the state a `-bios` ROM starts in.
//! * [`demo`]: the built-in demo guest ROM.
//! * [`compute`]: a CPU-bound benchmark guest ROM (sieve, CRC32, sort).
//!
//! Every loader validates its input and fails with a typed [`Error`] whose
//! message is meant for the user; no input file makes it panic.

pub mod acpi;
pub mod bios;
pub mod boot;
mod bootrom;
pub mod compute;
pub mod demo;
mod elf;
mod error;
pub mod kernel;
pub mod layout;
pub mod linux;
pub mod memory;
pub mod mptable;
pub mod multiboot;
pub mod smp;

pub use acpi::{write_acpi_tables, AcpiConfig};
pub use error::Error;
pub use kernel::{detect, load_kernel, KernelFormat};
pub use linux::{e820_map, load_linux, load_linux_with, E820Entry, LinuxBootOptions};
pub use memory::create_guest_memory;
