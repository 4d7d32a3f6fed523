//! The conformance harness: builds a guest (memory image + starting
//! [`CpuState`]) for one of the CPU modes, runs it under every available
//! backend through the `accel` traits, checks each outcome against the
//! case's architectural expectations and requires the backends to agree.
//!
//! Guest physical layout (identity mapped when paging is on):
//!
//! | range | what |
//! |---|---|
//! | `0x0000` | real-mode IVT |
//! | `GDT` `0x1000` | the GDT (see the `sel` module) |
//! | `IDT` `0x2000` | the IDT (32-bit or 64-bit gates) |
//! | `TSS` `0x3000` | 32-bit or 64-bit TSS |
//! | `0x4000` | 64-bit exception stubs, `0x5000` their common handler |
//! | `0x5800` | 32-bit common handler, `0x6000` real-mode stubs + handler |
//! | `0x7000` | 32-bit exception stubs |
//! | `PT` `0x8000` | page tables |
//! | `CODE` `0x10000` | the case's code |
//! | `DATA` `0x20000` | the case's data area |
//! | `DUMP` `0x21000` | what the default exception handler records |
//! | `STACK_TOP` `0x30000` | ring-0 stack (grows down) |
//! | `USER_STACK_TOP` `0x38000`, `IST_TOP` `0x3c000` | ring-3 and IST stacks |
//! | `SCRATCH` `0x40000` | free for cases |
//!
//! A guest ends by `out 0xf4, al` (see [`end`]), followed by `jmp $`: the
//! backends' final states must then agree in every architecturally defined
//! field, and all of guest RAM must be identical. The default handler of
//! every vector records the vector, the error code, the interrupt frame and
//! CR2 in `DUMP` and exits through port `0xf5`.
#![allow(dead_code)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use accel::{Accelerator, GuestMemory, IoAction, IoHandler, VcpuExit};
use iced_x86::code_asm::*;
use iced_x86::BlockEncoderOptions;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use x86::consts::{cr0, cr4, efer, rflags};
use x86::{CpuState, DescriptorTable, SegReg, Segment};

pub const RAM: usize = 4 << 20;
pub const GDT: u64 = 0x1000;
pub const IDT: u64 = 0x2000;
pub const TSS: u64 = 0x3000;
const STUBS64: u64 = 0x4000;
const COMMON64: u64 = 0x5000;
const COMMON32: u64 = 0x5800;
const RSTUBS: u64 = 0x6000;
const RCOMMON: u64 = 0x6800;
const STUBS32: u64 = 0x7000;
pub const PT: u64 = 0x8000;
pub const CODE: u64 = 0x10000;
pub const DATA: u64 = 0x20000;
pub const DUMP: u64 = 0x21000;
pub const STACK_TOP: u64 = 0x30000;
pub const USER_STACK_TOP: u64 = 0x38000;
pub const IST_TOP: u64 = 0x3c000;
pub const SCRATCH: u64 = 0x40000;

/// Port whose write ends the guest normally.
pub const EXIT_PORT: u16 = 0xf4;
/// Port the default exception handler writes.
pub const EXC_PORT: u16 = 0xf5;

/// GDT selectors of the standard layout.
pub mod sel {
    pub const CODE32: u16 = 0x08;
    pub const CODE64: u16 = 0x10;
    pub const DATA: u16 = 0x18;
    pub const UCODE32: u16 = 0x20 | 3;
    pub const UDATA: u16 = 0x28 | 3;
    pub const UCODE64: u16 = 0x30 | 3;
    /// 16-bit code, base `CODE`, limit 0xffff.
    pub const CODE16: u16 = 0x38;
    /// 16-bit data, base `DATA`, limit 0xffff.
    pub const DATA16: u16 = 0x40;
    pub const TSS: u16 = 0x48;
    /// First free GDT slot for the cases (up to 0xff8).
    pub const FREE: u16 = 0x58;
}

/// Raw descriptors of the standard GDT (accessed bits clear: the CPU sets
/// them on loads, and the comparison of guest memory checks that).
pub mod desc {
    pub const CODE32: u64 = 0x00cf_9a00_0000_ffff;
    pub const CODE64: u64 = 0x00af_9a00_0000_ffff;
    pub const DATA: u64 = 0x00cf_9200_0000_ffff;
    pub const UCODE32: u64 = 0x00cf_fa00_0000_ffff;
    pub const UDATA: u64 = 0x00cf_f200_0000_ffff;
    pub const UCODE64: u64 = 0x00af_fa00_0000_ffff;
    pub const CODE16: u64 = 0x0000_9a01_0000_ffff;
    pub const DATA16: u64 = 0x0000_9202_0000_ffff;
}

/// The CPU mode a guest starts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Real,
    Prot16,
    Prot32,
    Long64,
    /// Long mode, 32-bit compatibility-mode code segment.
    Compat32,
}

/// Paging set up before the guest starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Paging {
    None,
    /// 32-bit paging with 4 KiB pages (PD at PT, page table at PT+0x1000).
    Bits32,
    /// 32-bit paging with 4 MiB pages (CR4.PSE): PDE 0 and 1 both map PA 0.
    Pse,
    /// PAE: PDPT at PT, PD at PT+0x1000, page tables at PT+0x2000/0x3000.
    Pae,
    /// 4-level: PML4 at PT, PDPT +0x1000, PD +0x2000, PTs +0x3000/+0x4000.
    Level4,
}

/// Vectors that push an error code.
pub fn has_error_code(v: u8) -> bool {
    matches!(v, 8 | 10..=14 | 17 | 21 | 29 | 30)
}

/// A guest under construction: its memory image and starting state.
#[derive(Clone)]
pub struct Guest {
    pub mode: Mode,
    pub paging: Paging,
    pub mem: Vec<u8>,
    pub state: CpuState,
}

fn flat(sel: u16, d: u64) -> Segment {
    // The hidden part as after a load: accessed set.
    Segment::from_descriptor(sel, d | (1 << 40))
}

impl Guest {
    /// A guest in `mode`, with paging off (long modes: 4-level paging).
    pub fn new(mode: Mode) -> Guest {
        let paging = match mode {
            Mode::Long64 | Mode::Compat32 => Paging::Level4,
            _ => Paging::None,
        };
        Guest::with_paging(mode, paging)
    }

    pub fn with_paging(mode: Mode, paging: Paging) -> Guest {
        let mut g = Guest {
            mode,
            paging,
            mem: vec![0; RAM],
            state: CpuState::reset(),
        };
        g.build();
        g
    }

    fn long(&self) -> bool {
        matches!(self.mode, Mode::Long64 | Mode::Compat32)
    }

    fn build(&mut self) {
        let long = self.long();
        // GDT.
        for (s, d) in [
            (sel::CODE32, desc::CODE32),
            (sel::CODE64, desc::CODE64),
            (sel::DATA, desc::DATA),
            (sel::UCODE32, desc::UCODE32),
            (sel::UDATA, desc::UDATA),
            (sel::UCODE64, desc::UCODE64),
            (sel::CODE16, desc::CODE16),
            (sel::DATA16, desc::DATA16),
        ] {
            self.set_gdt(s, d);
        }
        // TSS (marked busy, as after LTR).
        let tss_limit = 0x67u64;
        let tss_desc = tss_limit | ((TSS & 0xff_ffff) << 16) | (0x8bu64 << 40);
        self.set_gdt(sel::TSS, tss_desc);
        self.write_u16(TSS + 0x66, 0x68); // I/O map base beyond the limit
        if long {
            self.write_u64(TSS + 4, STACK_TOP); // RSP0
            self.write_u64(TSS + 0x24, IST_TOP); // IST1
        } else {
            self.write_u32(TSS + 4, STACK_TOP as u32); // ESP0
            self.write_u16(TSS + 8, sel::DATA); // SS0
        }
        // Exception stubs and common handlers.
        self.build_handlers();
        // IDT.
        for v in 0..=255u8 {
            let dpl = if matches!(v, 3 | 4 | 0x80) { 3 } else { 0 };
            match self.mode {
                Mode::Real => {
                    let off = (RSTUBS + v as u64 * 8) as u16;
                    self.write_u32(v as u64 * 4, off as u32);
                }
                Mode::Long64 | Mode::Compat32 => {
                    self.set_gate64(v, sel::CODE64, STUBS64 + v as u64 * 16, dpl, 0, false)
                }
                Mode::Prot16 | Mode::Prot32 => {
                    self.set_gate32(v, sel::CODE32, STUBS32 + v as u64 * 16, dpl, false)
                }
            }
        }
        // Page tables.
        self.write_page_tables(self.paging);
        // The starting state.
        let mut s = CpuState::reset();
        s.gpr = [0; 16];
        s.rflags = rflags::FIXED1;
        s.gdtr = DescriptorTable {
            base: GDT,
            limit: 0xfff,
        };
        s.tr = Segment::from_descriptor(sel::TSS, tss_desc);
        s.fpu = Default::default();
        s.cr4 = cr4::OSFXSR | cr4::OSXMMEXCPT;
        s.cr0 = cr0::ET | cr0::NE | cr0::MP;
        match self.mode {
            Mode::Real => {
                s.segs = [Segment::real_mode(0x2000, false); 6];
                s.segs[SegReg::Cs as usize] = Segment::real_mode(0x1000, true);
                s.gpr[4] = 0xfff0;
                s.idtr = DescriptorTable {
                    base: 0,
                    limit: 0x3ff,
                };
                s.rip = 0;
            }
            Mode::Prot16 => {
                s.cr0 |= cr0::PE;
                s.segs = [flat(sel::DATA16, desc::DATA16); 6];
                s.segs[SegReg::Cs as usize] = flat(sel::CODE16, desc::CODE16);
                s.gpr[4] = 0xfff0;
                s.idtr = DescriptorTable {
                    base: IDT,
                    limit: 0x7ff,
                };
                s.rip = 0;
            }
            Mode::Prot32 => {
                s.cr0 |= cr0::PE;
                s.segs = [flat(sel::DATA, desc::DATA); 6];
                s.segs[SegReg::Cs as usize] = flat(sel::CODE32, desc::CODE32);
                s.gpr[4] = STACK_TOP;
                s.idtr = DescriptorTable {
                    base: IDT,
                    limit: 0x7ff,
                };
                s.rip = CODE;
            }
            Mode::Long64 | Mode::Compat32 => {
                s.cr0 |= cr0::PE;
                s.efer = efer::LME | efer::LMA;
                s.segs = [flat(sel::DATA, desc::DATA); 6];
                s.segs[SegReg::Cs as usize] = if self.mode == Mode::Long64 {
                    flat(sel::CODE64, desc::CODE64)
                } else {
                    flat(sel::CODE32, desc::CODE32)
                };
                s.gpr[4] = STACK_TOP;
                s.idtr = DescriptorTable {
                    base: IDT,
                    limit: 0xfff,
                };
                s.rip = CODE;
            }
        }
        match self.paging {
            Paging::None => {}
            Paging::Bits32 => {
                s.cr0 |= cr0::PG;
                s.cr3 = PT;
            }
            Paging::Pse => {
                s.cr0 |= cr0::PG;
                s.cr4 |= cr4::PSE;
                s.cr3 = PT;
            }
            Paging::Pae | Paging::Level4 => {
                s.cr0 |= cr0::PG;
                s.cr4 |= cr4::PAE;
                s.cr3 = PT;
            }
        }
        self.state = s;
    }

    /// Writes identity-mapping page tables of kind `p` at `PT` (the starting
    /// state uses them when `p` is the guest's paging).
    pub fn write_page_tables(&mut self, p: Paging) {
        const F: u64 = 0x7; // P | RW | US
        match p {
            Paging::None => {}
            Paging::Bits32 => {
                self.write_u32(PT, (PT + 0x1000) as u32 | F as u32);
                for i in 0..1024u64 {
                    self.write_u32(PT + 0x1000 + i * 4, (i << 12) as u32 | F as u32);
                }
            }
            Paging::Pse => {
                self.write_u32(PT, 0x87);
                self.write_u32(PT + 4, 0x87);
            }
            Paging::Pae => {
                self.write_u64(PT, (PT + 0x1000) | 1);
                for j in 0..2u64 {
                    let pt = PT + 0x2000 + j * 0x1000;
                    self.write_u64(PT + 0x1000 + j * 8, pt | F);
                    for i in 0..512u64 {
                        self.write_u64(pt + i * 8, ((j * 512 + i) << 12) | F);
                    }
                }
            }
            Paging::Level4 => {
                self.write_u64(PT, (PT + 0x1000) | F);
                self.write_u64(PT + 0x1000, (PT + 0x2000) | F);
                for j in 0..2u64 {
                    let pt = PT + 0x3000 + j * 0x1000;
                    self.write_u64(PT + 0x2000 + j * 8, pt | F);
                    for i in 0..512u64 {
                        self.write_u64(pt + i * 8, ((j * 512 + i) << 12) | F);
                    }
                }
            }
        }
    }

    /// Physical address of the 4 KiB leaf entry mapping `va` (< 4 MiB).
    pub fn pte_addr(&self, va: u64) -> u64 {
        assert!(va < RAM as u64);
        match self.paging {
            Paging::Bits32 => PT + 0x1000 + (va >> 12) * 4,
            Paging::Pae => PT + 0x2000 + (va >> 12) * 8,
            Paging::Level4 => PT + 0x3000 + (va >> 12) * 8,
            p => panic!("no 4 KiB page tables with {p:?}"),
        }
    }

    /// Reads the leaf PTE of `va`.
    pub fn pte(&self, va: u64) -> u64 {
        let a = self.pte_addr(va);
        if self.paging == Paging::Bits32 {
            self.read_u32(a) as u64
        } else {
            self.read_u64(a)
        }
    }

    /// Replaces the leaf PTE of `va`.
    pub fn set_pte(&mut self, va: u64, v: u64) {
        let a = self.pte_addr(va);
        if self.paging == Paging::Bits32 {
            self.write_u32(a, v as u32)
        } else {
            self.write_u64(a, v)
        }
    }

    fn build_handlers(&mut self) {
        // Stubs: [push 0]; push vector; jmp common. 16 bytes (real: 8) each.
        for v in 0..=255u8 {
            for (base, common, size, real) in [
                (STUBS64, COMMON64, 16u64, false),
                (STUBS32, COMMON32, 16, false),
                (RSTUBS, RCOMMON, 8, true),
            ] {
                let at = base + v as u64 * size;
                let mut b = Vec::new();
                if !has_error_code(v) || real {
                    b.extend_from_slice(&[0x6a, 0x00]);
                }
                b.push(0x68);
                if real {
                    b.extend_from_slice(&(v as u16).to_le_bytes());
                    let rel = common as i64 - (at as i64 + b.len() as i64 + 3);
                    b.push(0xe9);
                    b.extend_from_slice(&(rel as i16).to_le_bytes());
                } else {
                    b.extend_from_slice(&(v as u32).to_le_bytes());
                    let rel = common as i64 - (at as i64 + b.len() as i64 + 5);
                    b.push(0xe9);
                    b.extend_from_slice(&(rel as i32).to_le_bytes());
                }
                self.write(at, &b);
            }
        }
        let c64 = assemble(64, COMMON64, |a| {
            a.mov(qword_ptr(DUMP + 8), rax)?;
            for i in 0..7u64 {
                a.mov(rax, qword_ptr(rsp + (i * 8) as i32))?;
                a.mov(qword_ptr(DUMP + 0x18 + i * 8), rax)?;
            }
            a.mov(rax, cr2)?;
            a.mov(qword_ptr(DUMP + 0x50), rax)?;
            a.mov(qword_ptr(DUMP), 1)?;
            a.mov(rax, qword_ptr(DUMP + 8))?;
            a.out(EXC_PORT as u32, al)?;
            spin(a)
        });
        self.write(COMMON64, &c64);
        let c32 = assemble(32, COMMON32, |a| {
            a.push(ds)?;
            a.push(eax)?;
            a.mov(ax, sel::DATA as u32)?;
            a.mov(ds, ax)?;
            a.mov(eax, dword_ptr(esp))?;
            a.mov(dword_ptr(DUMP + 8), eax)?;
            for i in 0..7u64 {
                a.mov(eax, dword_ptr(esp + (8 + i * 4) as i32))?;
                a.mov(dword_ptr(DUMP + 0x18 + i * 8), eax)?;
            }
            a.mov(eax, cr2)?;
            a.mov(dword_ptr(DUMP + 0x50), eax)?;
            a.mov(dword_ptr(DUMP), 1)?;
            a.pop(eax)?;
            a.pop(ds)?;
            a.out(EXC_PORT as u32, al)?;
            spin(a)
        });
        self.write(COMMON32, &c32);
        let cr = assemble(16, RCOMMON, |a| {
            a.push(bp)?;
            a.mov(bp, sp)?;
            a.push(ds)?;
            a.push(ax)?;
            a.mov(ax, 0x2000u32)?;
            a.mov(ds, ax)?;
            let d = (DUMP - DATA) as i32;
            for i in 0..5 {
                a.mov(ax, word_ptr(bp + 2 + i * 2))?;
                a.mov(word_ptr(d + 0x18 + i * 8), ax)?;
            }
            a.mov(word_ptr(d), 1)?;
            a.pop(ax)?;
            a.mov(word_ptr(d + 8), ax)?;
            a.pop(ds)?;
            a.pop(bp)?;
            a.out(EXC_PORT as u32, al)?;
            spin(a)
        });
        self.write(RCOMMON, &cr);
    }

    pub fn set_gdt(&mut self, selector: u16, desc: u64) {
        self.write_u64(GDT + (selector & !7) as u64, desc);
    }

    /// A 32-bit interrupt (or trap) gate.
    pub fn set_gate32(&mut self, v: u8, selector: u16, off: u64, dpl: u8, trap: bool) {
        let ty: u64 = if trap { 0xf } else { 0xe };
        let d = (off & 0xffff)
            | ((selector as u64) << 16)
            | ((0x80 | ((dpl as u64) << 5) | ty) << 40)
            | ((off >> 16) & 0xffff) << 48;
        self.write_u64(IDT + v as u64 * 8, d);
    }

    /// A 64-bit interrupt (or trap) gate.
    pub fn set_gate64(&mut self, v: u8, selector: u16, off: u64, dpl: u8, ist: u8, trap: bool) {
        let ty: u64 = if trap { 0xf } else { 0xe };
        let lo = (off & 0xffff)
            | ((selector as u64) << 16)
            | ((ist as u64) << 32)
            | ((0x80 | ((dpl as u64) << 5) | ty) << 40)
            | ((off >> 16) & 0xffff) << 48;
        self.write_u64(IDT + v as u64 * 16, lo);
        self.write_u64(IDT + v as u64 * 16 + 8, off >> 32);
    }

    /// Points vector `v` at `handler` with the mode's code selector (real
    /// mode: segment 0).
    pub fn set_handler(&mut self, v: u8, handler: u64) {
        match self.mode {
            Mode::Real => self.write_u32(v as u64 * 4, handler as u32 & 0xffff),
            Mode::Long64 | Mode::Compat32 => {
                let dpl = if matches!(v, 3 | 4 | 0x80) { 3 } else { 0 };
                self.set_gate64(v, sel::CODE64, handler, dpl, 0, false)
            }
            _ => {
                let dpl = if matches!(v, 3 | 4 | 0x80) { 3 } else { 0 };
                self.set_gate32(v, sel::CODE32, handler, dpl, false)
            }
        }
    }

    /// Code size of the starting mode.
    pub fn bits(&self) -> u32 {
        match self.mode {
            Mode::Real | Mode::Prot16 => 16,
            Mode::Prot32 | Mode::Compat32 => 32,
            Mode::Long64 => 64,
        }
    }

    /// A fresh assembler for the starting mode.
    pub fn asm(&self) -> CodeAssembler {
        CodeAssembler::new(self.bits()).unwrap()
    }

    /// Assembles `a` at `CODE` (IP 0 in the 16-bit modes, whose code
    /// segment starts at `CODE`) and loads it.
    pub fn load(&mut self, a: &mut CodeAssembler) -> Code {
        let ip = match self.mode {
            Mode::Real | Mode::Prot16 => 0,
            _ => CODE,
        };
        self.load_at(a, CODE, ip)
    }

    /// Assembles `a` for IP `ip` and loads it at physical `phys`.
    pub fn load_at(&mut self, a: &mut CodeAssembler, phys: u64, ip: u64) -> Code {
        let r = a
            .assemble_options(ip, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)
            .expect("assemble");
        let bytes = r.inner.code_buffer.clone();
        self.write(phys, &bytes);
        Code {
            r,
            len: bytes.len(),
        }
    }

    pub fn write(&mut self, addr: u64, b: &[u8]) {
        self.mem[addr as usize..addr as usize + b.len()].copy_from_slice(b);
    }
    pub fn write_u16(&mut self, addr: u64, v: u16) {
        self.write(addr, &v.to_le_bytes())
    }
    pub fn write_u32(&mut self, addr: u64, v: u32) {
        self.write(addr, &v.to_le_bytes())
    }
    pub fn write_u64(&mut self, addr: u64, v: u64) {
        self.write(addr, &v.to_le_bytes())
    }
    pub fn read_u32(&self, addr: u64) -> u32 {
        u32::from_le_bytes(
            self.mem[addr as usize..addr as usize + 4]
                .try_into()
                .unwrap(),
        )
    }
    pub fn read_u64(&self, addr: u64) -> u64 {
        u64::from_le_bytes(
            self.mem[addr as usize..addr as usize + 8]
                .try_into()
                .unwrap(),
        )
    }
}

/// Assembled code and its labels.
pub struct Code {
    r: CodeAssemblerResult,
    pub len: usize,
}

impl Code {
    pub fn ip(&self, l: &CodeLabel) -> u64 {
        self.r.label_ip(l).expect("label")
    }
}

/// Assembles a closure's code at `ip` (for helpers).
pub fn assemble(
    bits: u32,
    ip: u64,
    f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>,
) -> Vec<u8> {
    let mut a = CodeAssembler::new(bits).unwrap();
    f(&mut a).expect("assemble");
    a.assemble(ip).expect("assemble")
}

/// RFLAGS of ring-3 code: IF set, as this host's KVM (PVM) runs ring 3
/// natively and shows IF=1 to PUSHF there whatever the guest's IF. No
/// interrupt source is active in these guests.
pub const USER_RFLAGS: u64 = 0x202;

/// Loads the ring-3 data selector into DS, ES, FS and GS (before an IRET
/// to ring 3, as an OS does: IRET would null DPL-0 data segments).
pub fn user_data_segments(a: &mut CodeAssembler) -> Result<(), IcedError> {
    a.mov(ax, sel::UDATA as u32)?;
    a.mov(ds, ax)?;
    a.mov(es, ax)?;
    a.mov(fs, ax)?;
    a.mov(gs, ax)
}

/// Ends the guest normally: `out 0xf4, al; jmp $`.
pub fn end(a: &mut CodeAssembler) -> Result<(), IcedError> {
    a.out(EXIT_PORT as u32, al)?;
    spin(a)
}

/// `jmp $`.
pub fn spin(a: &mut CodeAssembler) -> Result<(), IcedError> {
    let mut l = a.create_label();
    a.set_label(&mut l)?;
    a.jmp(l)
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// `out 0xf4`.
    End,
    /// The default exception handler ran (see [`Outcome::exc`]).
    Exception,
    Halt,
    Shutdown,
    /// The watchdog stopped a guest that did not finish.
    Timeout,
    Other(VcpuExit),
}

/// What the default handler recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exc {
    pub vector: u64,
    pub error: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    /// Only meaningful after a privilege change (or always in long mode).
    pub rsp: u64,
    pub ss: u64,
    pub cr2: u64,
}

/// The result of one run under one backend.
pub struct Outcome {
    pub backend: &'static str,
    pub exit: Exit,
    pub state: CpuState,
    pub mem: Vec<u8>,
    /// Every port write other than the exit ports, in order.
    pub io: Vec<(u16, Vec<u8>)>,
}

impl Outcome {
    pub fn u8(&self, a: u64) -> u8 {
        self.mem[a as usize]
    }
    pub fn u16(&self, a: u64) -> u16 {
        u16::from_le_bytes(self.mem[a as usize..a as usize + 2].try_into().unwrap())
    }
    pub fn u32(&self, a: u64) -> u32 {
        u32::from_le_bytes(self.mem[a as usize..a as usize + 4].try_into().unwrap())
    }
    pub fn u64(&self, a: u64) -> u64 {
        u64::from_le_bytes(self.mem[a as usize..a as usize + 8].try_into().unwrap())
    }
    pub fn gpr(&self, i: usize) -> u64 {
        self.state.gpr[i]
    }
    /// The exception the default handler recorded, if it ran.
    pub fn exc(&self) -> Option<Exc> {
        if self.u64(DUMP) == 0 {
            return None;
        }
        let s = |i: u64| self.u64(DUMP + 0x18 + i * 8);
        Some(Exc {
            vector: s(0),
            error: s(1),
            rip: s(2),
            cs: s(3),
            rflags: s(4),
            rsp: s(5),
            ss: s(6),
            cr2: self.u64(DUMP + 0x50),
        })
    }
    /// Asserts the guest ended normally.
    pub fn ended(&self) {
        assert_eq!(
            self.exit,
            Exit::End,
            "guest did not end normally; exception: {:x?}",
            self.exc()
        );
    }
    /// Asserts the default handler caught `vector` with `error`.
    pub fn faulted(&self, vector: u8, error: u64) -> Exc {
        assert_eq!(self.exit, Exit::Exception, "expected an exception");
        let e = self.exc().expect("exception record");
        assert_eq!(
            (e.vector, e.error),
            (vector as u64, error),
            "(vector, error code): {e:x?}"
        );
        e
    }
}

struct TestIo {
    log: Mutex<Vec<(u16, Vec<u8>)>>,
}

impl IoHandler for TestIo {
    fn pio_read(&self, _port: u16, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn pio_write(&self, port: u16, data: &[u8]) -> IoAction {
        match port {
            EXIT_PORT => IoAction::Exit(data[0] as i32),
            EXC_PORT => IoAction::Exit(0x100 | data[0] as i32),
            _ => {
                self.log.lock().unwrap().push((port, data.to_vec()));
                IoAction::Continue
            }
        }
    }
    fn mmio_read(&self, _addr: u64, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn mmio_write(&self, _addr: u64, _data: &[u8]) -> IoAction {
        IoAction::Continue
    }
}

/// Why a backend did not run a case.
pub enum Skip {
    Unavailable(String),
}

/// What this host's KVM (paravirtual, without VT-x/AMD-V underneath) does
/// with paging outside long mode: `mov cr0` setting PG raises #GP(0), and a
/// state with CR0.PG set is not entered (triple fault), with 32-bit and PAE
/// tables alike.
pub const KVM_NO_LEGACY_PAGING: &str =
    "this KVM rejects CR0.PG outside long mode (#GP(0) on mov cr0; shutdown when set in the state)";

const WATCHDOG: Duration = Duration::from_secs(60);

/// Runs `g` under `accel`. `Err` when the backend cannot run guests at all.
pub fn run_on(accel: &dyn Accelerator, g: &Guest) -> Result<Outcome, String> {
    let mem =
        GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM)]).map_err(|e| e.to_string())?;
    mem.write_slice(&g.mem, GuestAddress(0))
        .map_err(|e| e.to_string())?;
    let io = Arc::new(TestIo {
        log: Mutex::new(Vec::new()),
    });
    let vm = accel
        .create_vm(
            GuestMemory {
                mem: mem.clone(),
                rom: Vec::new(),
            },
            io.clone(),
        )
        .map_err(|e| e.to_string())?;
    let mut vcpu = vm.create_vcpu(0).map_err(|e| e.to_string())?;
    vcpu.set_state(&g.state).map_err(|e| e.to_string())?;
    let kicker = vcpu.kicker();
    // A watchdog for guests that never finish (not an assertion on time:
    // it only turns a hang into a reported failure).
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let fired = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let wd = {
        let kicker = kicker.clone();
        let fired = fired.clone();
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(WATCHDOG) {
                fired.store(true, std::sync::atomic::Ordering::SeqCst);
                kicker.kick();
            }
        })
    };
    let mut exit = loop {
        match vcpu.run() {
            Ok(VcpuExit::GuestExit(c)) if c & 0x100 != 0 => break Exit::Exception,
            Ok(VcpuExit::GuestExit(_)) => break Exit::End,
            Ok(VcpuExit::Halt) => break Exit::Halt,
            Ok(VcpuExit::Shutdown) => break Exit::Shutdown,
            Ok(VcpuExit::Interrupted) => {
                if fired.load(std::sync::atomic::Ordering::SeqCst) {
                    break Exit::Timeout;
                }
            }
            Ok(e) => break Exit::Other(e),
            Err(e) => {
                let _ = done_tx.send(());
                let _ = wd.join();
                return Err(format!("run: {e}"));
            }
        }
    };
    let _ = done_tx.send(());
    let _ = wd.join();
    let mut state = vcpu.state().map_err(|e| e.to_string())?;
    if matches!(exit, Exit::End | Exit::Exception) && accel.name() == "kvm" {
        // KVM completes an OUT (advances RIP) only when KVM_RUN is entered
        // again. Re-enter: the guest spins on the `jmp $` after the OUT
        // until a kick stops it.
        state = complete_io(&mut *vcpu, &mem, state).unwrap_or_else(|e| {
            exit = Exit::Other(VcpuExit::Interrupted);
            eprintln!("  kvm: could not complete the final OUT: {e}");
            state
        });
    }
    let mut image = vec![0u8; RAM];
    mem.read_slice(&mut image, GuestAddress(0))
        .map_err(|e| e.to_string())?;
    let io = std::mem::take(&mut *io.log.lock().unwrap());
    Ok(Outcome {
        backend: accel.name(),
        exit,
        state,
        mem: image,
        io,
    })
}

fn spins_at(mem: &GuestMemoryMmap, s: &CpuState) -> bool {
    let mut b = [0u8; 2];
    let pc = s.linear_pc();
    // The code of the cases is identity mapped.
    mem.read_slice(&mut b, GuestAddress(pc)).is_ok() && b == [0xeb, 0xfe]
}

fn complete_io(
    vcpu: &mut dyn accel::Vcpu,
    mem: &GuestMemoryMmap,
    mut state: CpuState,
) -> Result<CpuState, String> {
    for _ in 0..50 {
        if spins_at(mem, &state) {
            return Ok(state);
        }
        let kicker = vcpu.kicker();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            kicker.kick();
        });
        let r = vcpu.run();
        let _ = t.join();
        match r {
            Ok(VcpuExit::Interrupted) => {}
            Ok(e) => return Err(format!("unexpected exit {e:?}")),
            Err(e) => return Err(e.to_string()),
        }
        state = vcpu.state().map_err(|e| e.to_string())?;
    }
    if spins_at(mem, &state) {
        Ok(state)
    } else {
        Err(format!("RIP {:#x} is not at the final jmp $", state.rip))
    }
}

/// Architectural differences between two outcomes (empty when they agree).
///
/// When `a` comes from KVM, two deviations of this host's KVM (PVM) are
/// tolerated (and the SDM checks of the cases cover them for the DBT): its
/// emulated event delivery and far transfers do not set the accessed bit
/// of the descriptors they load (neither in the GDT nor in the hidden
/// attributes), and KVM_GET_FPU reports MXCSR as 0.
pub fn diff(a: &Outcome, b: &Outcome, flags_mask: u64, g: &Guest) -> Vec<String> {
    let mut d = Vec::new();
    let quirks = a.backend == "kvm";
    let acc = |attr: u16| {
        if quirks && attr & 0x10 != 0 {
            attr & !1
        } else {
            attr
        }
    };
    let (x, y) = (&a.state, &b.state);
    let (na, nb) = (a.backend, b.backend);
    macro_rules! cmp {
        ($name:expr, $l:expr, $r:expr) => {
            if $l != $r {
                d.push(format!("{}: {na} {:#x?} vs {nb} {:#x?}", $name, $l, $r));
            }
        };
    }
    cmp!("exit", format!("{:?}", a.exit), format!("{:?}", b.exit));
    for i in 0..16 {
        cmp!(x86::gpr::NAMES[i], x.gpr[i], y.gpr[i]);
    }
    cmp!("rip", x.rip, y.rip);
    cmp!("rflags", x.rflags & flags_mask, y.rflags & flags_mask);
    let long = x.efer & efer::LMA != 0;
    for s in SegReg::ALL {
        let (p, q) = (x.seg(s), y.seg(s));
        cmp!(format!("{}.selector", s.name()), p.selector, q.selector);
        // A null data selector's hidden part is not architecturally visible.
        let null = p.selector & !3 == 0 && !matches!(s, SegReg::Cs | SegReg::Ss);
        if x.cr0 & cr0::PE != 0 && null {
            continue;
        }
        if long && matches!(s, SegReg::Es | SegReg::Ds | SegReg::Ss) && p.selector & !3 == 0 {
            continue;
        }
        if long && matches!(s, SegReg::Fs | SegReg::Gs) {
            cmp!(format!("{}.base", s.name()), p.base, q.base);
            continue;
        }
        cmp!(format!("{}.base", s.name()), p.base, q.base);
        cmp!(format!("{}.limit", s.name()), p.limit, q.limit);
        cmp!(format!("{}.attr", s.name()), acc(p.attr), acc(q.attr));
    }
    for (n, p, q) in [("tr", &x.tr, &y.tr), ("ldtr", &x.ldtr, &y.ldtr)] {
        cmp!(format!("{n}.selector"), p.selector, q.selector);
        if p.selector & !3 != 0 {
            cmp!(format!("{n}.base"), p.base, q.base);
            cmp!(format!("{n}.limit"), p.limit, q.limit);
            cmp!(format!("{n}.attr"), p.attr & 0xff, q.attr & 0xff);
        }
    }
    cmp!("gdtr", x.gdtr, y.gdtr);
    cmp!("idtr", x.idtr, y.idtr);
    cmp!("cr0", x.cr0, y.cr0);
    cmp!("cr2", x.cr2, y.cr2);
    cmp!("cr3", x.cr3, y.cr3);
    cmp!("cr4", x.cr4, y.cr4);
    cmp!("efer", x.efer, y.efer);
    let (m, n) = (&x.msr, &y.msr);
    cmp!("star", m.star, n.star);
    cmp!("lstar", m.lstar, n.lstar);
    cmp!("cstar", m.cstar, n.cstar);
    cmp!("fmask", m.fmask, n.fmask);
    cmp!("kernel_gs_base", m.kernel_gs_base, n.kernel_gs_base);
    cmp!("sysenter_cs", m.sysenter_cs, n.sysenter_cs);
    cmp!("sysenter_esp", m.sysenter_esp, n.sysenter_esp);
    cmp!("sysenter_eip", m.sysenter_eip, n.sysenter_eip);
    for i in 0..16 {
        cmp!(
            format!("xmm{i}"),
            u128::from_le_bytes(x.fpu.xmm[i]),
            u128::from_le_bytes(y.fpu.xmm[i])
        );
    }
    if !quirks {
        cmp!("mxcsr", x.fpu.mxcsr, y.fpu.mxcsr);
    }
    cmp!("io", format!("{:x?}", a.io), format!("{:x?}", b.io));
    // The GDT page's PTE (whose D bit the accessed-bit writes set).
    let gdt_pte = if g.state.cr0 & cr0::PG != 0 && g.paging != Paging::Pse {
        Some(g.pte_addr(GDT) & !7)
    } else {
        None
    };
    let mut shown = 0;
    for (i, (p, q)) in a.mem.chunks(8).zip(b.mem.chunks(8)).enumerate() {
        let addr = (i * 8) as u64;
        let (mut p, mut q) = (
            u64::from_le_bytes(p.try_into().unwrap()),
            u64::from_le_bytes(q.try_into().unwrap()),
        );
        if quirks && (GDT..GDT + 0x1000).contains(&addr) && p & (1 << 44) != 0 {
            p &= !(1 << 40);
            q &= !(1 << 40);
        }
        if quirks && Some(addr) == gdt_pte {
            p &= !0x40_0000_0040;
            q &= !0x40_0000_0040;
        }
        if p != q {
            if shown < 16 {
                d.push(format!("mem[{addr:#x}]: {na} {p:016x} vs {nb} {q:016x}"));
            }
            shown += 1;
        }
    }
    if shown > 16 {
        d.push(format!("... {} differing 8-byte words in all", shown));
    }
    d
}

type Check = Box<dyn Fn(&Outcome)>;

/// One conformance case.
pub struct Case {
    pub name: &'static str,
    pub guest: Guest,
    check: Option<Check>,
    kvm_cannot: Option<String>,
    dbt_known: Option<String>,
    flags_mask: u64,
}

impl Case {
    pub fn new(name: &'static str, guest: Guest) -> Case {
        Case {
            name,
            guest,
            check: None,
            kvm_cannot: None,
            dbt_known: None,
            flags_mask: !0,
        }
    }
    /// Architectural expectations, checked on every backend's outcome.
    pub fn check(mut self, f: impl Fn(&Outcome) + 'static) -> Case {
        self.check = Some(Box::new(f));
        self
    }
    /// Compare only these RFLAGS bits (others are undefined at the end).
    pub fn flags_mask(mut self, m: u64) -> Case {
        self.flags_mask = m;
        self
    }
    /// KVM cannot run this case here (printed, not run).
    pub fn kvm_cannot(mut self, why: &str) -> Case {
        self.kvm_cannot = Some(why.to_string());
        self
    }
    /// The DBT is known to fail this case (reported, not failing), unless
    /// `HX86_CONFORMANCE_STRICT=1`.
    pub fn dbt_known_failure(mut self, why: &str) -> Case {
        self.dbt_known = Some(why.to_string());
        self
    }

    fn checked(&self, o: &Outcome) -> Result<(), String> {
        let Some(f) = &self.check else {
            return Ok(());
        };
        catch_unwind(AssertUnwindSafe(|| f(o))).map_err(|p| {
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "check panicked".into())
        })
    }

    /// Runs the case under every backend and asserts they conform.
    pub fn run(mut self) {
        let name = self.name;
        if self.guest.state.cr0 & cr0::PG != 0
            && self.guest.state.efer & efer::LMA == 0
            && self.kvm_cannot.is_none()
        {
            self.kvm_cannot = Some(KVM_NO_LEGACY_PAGING.into());
        }
        let mut kvm_out = None;
        match kvm() {
            Err(why) => eprintln!("[{name}] kvm: SKIPPED: KVM unusable: {why}"),
            Ok(_) if self.kvm_cannot.is_some() => eprintln!(
                "[{name}] kvm: SKIPPED: KVM cannot run this case here: {}",
                self.kvm_cannot.as_deref().unwrap()
            ),
            Ok(k) => 'kvm: {
                let o = match run_on(&*k, &self.guest) {
                    Ok(o) => o,
                    // This host's KVM (PVM) emulates supervisor code and
                    // gives up on some instructions.
                    Err(e) if e.contains("emulation failure") => {
                        eprintln!("[{name}] kvm: SKIPPED: KVM cannot run this case here: {e}");
                        break 'kvm;
                    }
                    Err(e) => panic!("[{name}] kvm: {e}"),
                };
                if let Err(e) = self.checked(&o) {
                    panic!(
                        "[{name}] kvm: architectural check failed: {e}\nstate: {:#x?}\nexc: {:x?}",
                        o.state,
                        o.exc()
                    );
                }
                eprintln!("[{name}] kvm: ok");
                if std::env::var("HX86_CONFORMANCE_SELFCHECK").is_ok_and(|v| v == "1") {
                    let again = run_on(&*k, &self.guest).unwrap();
                    let d = diff(&o, &again, self.flags_mask, &self.guest);
                    assert!(
                        d.is_empty(),
                        "[{name}] kvm is not deterministic:\n  {}",
                        d.join("\n  ")
                    );
                }
                kvm_out = Some(o);
            }
        }
        let dbt = accel::dbt::DbtAccel::with_options(accel::dbt::DbtOptions {
            features: x86::cpu_model::FeatureSet::all(),
            ..accel::dbt::DbtOptions::interpreter()
        });
        let d = match run_on(&dbt, &self.guest) {
            Err(e) => {
                eprintln!("[{name}] dbt: NOT YET SUPPORTED: {e}");
                return;
            }
            Ok(d) => d,
        };
        let mut problems = Vec::new();
        if let Err(e) = self.checked(&d) {
            problems.push(format!("architectural check failed: {e}"));
        }
        if let Some(k) = &kvm_out {
            problems.extend(diff(k, &d, self.flags_mask, &self.guest));
        }
        // The JIT, translating every block at its first execution, must
        // agree with the interpreter exactly (state, memory, exception
        // record, output).
        if cfg!(target_arch = "x86_64") {
            let jit = jit_accel();
            let j = run_on(&jit, &self.guest).unwrap_or_else(|e| panic!("[{name}] jit: {e}"));
            let jd = diff(&d, &j, u64::MAX, &self.guest);
            assert!(
                jd.is_empty(),
                "[{name}] jit: differs from the interpreter:\n  {}",
                jd.join("\n  ")
            );
            assert_eq!(d.exc(), j.exc(), "[{name}] jit: exception record differs");
            eprintln!("[{name}] jit: same as the interpreter");
        } else {
            eprintln!("[{name}] jit: SKIPPED: the JIT needs an x86-64 host");
        }
        if problems.is_empty() {
            eprintln!("[{name}] dbt: ok");
            if let Some(why) = &self.dbt_known {
                eprintln!("[{name}] dbt: note: marked as a known failure ({why}) but passes");
            }
            return;
        }
        let report = format!(
            "[{name}] dbt: FAIL:\n  {}\n  dbt exception record: {:x?}",
            problems.join("\n  "),
            d.exc()
        );
        match &self.dbt_known {
            Some(why) if !strict() => eprintln!("{report}\n  (known DBT failure: {why})"),
            _ => panic!("{report}"),
        }
    }
}

/// The DBT with the JIT translating every block at once (both DBT tiers
/// run the `max` CPU model: every feature a case may enable).
fn jit_accel() -> accel::dbt::DbtAccel {
    let mut o = accel::dbt::DbtOptions {
        features: x86::cpu_model::FeatureSet::all(),
        ..Default::default()
    };
    if let Some(j) = o.jit.as_mut() {
        j.threshold = 1;
    }
    accel::dbt::DbtAccel::with_options(o)
}

fn strict() -> bool {
    std::env::var("HX86_CONFORMANCE_STRICT").is_ok_and(|v| v == "1")
}

fn kvm() -> Result<Box<dyn Accelerator>, String> {
    if std::env::var("HX86_CONFORMANCE_NO_KVM").is_ok_and(|v| v == "1") {
        return Err("HX86_CONFORMANCE_NO_KVM=1".into());
    }
    accel::kvm_accel().map_err(|e| e.to_string())
}

/// Convenience: a case whose code is `body` followed by [`end`], in a
/// fresh guest of `mode`.
pub fn simple(
    name: &'static str,
    mode: Mode,
    body: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>,
) -> Case {
    let mut g = Guest::new(mode);
    let mut a = g.asm();
    body(&mut a).expect("assemble");
    end(&mut a).unwrap();
    g.load(&mut a);
    Case::new(name, g)
}

/// The flags that are always defined (CF PF AF ZF SF OF DF IF and the fixed bit).
pub const STATUS: u64 = rflags::CF | rflags::PF | rflags::AF | rflags::ZF | rflags::SF | rflags::OF;

/// Where [`table_case`] puts its function, its input and its output.
pub const TABLE_BODY: u64 = 0x10_0000;
pub const TABLE_IN: u64 = 0x1c_0000;
pub const TABLE_OUT: u64 = 0x20_0000;
const TABLE_OUT_MAX: usize = 0x10_0000;

/// Assembles `body` as a 64-bit function `fn(out: rdi, input: rsi)` that
/// stores its results through RDI (advancing it) and returns the end of
/// its output in RAX. It may use the caller-saved registers only.
pub fn table_fn(body: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    body(&mut a).expect("assemble");
    a.mov(rax, rdi).unwrap();
    a.ret().unwrap();
    a.assemble(TABLE_BODY).expect("assemble")
}

/// Runs a [`table_fn`] natively in this (x86-64) process; returns its output.
#[cfg(target_arch = "x86_64")]
pub fn run_native(code: &[u8], input: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; TABLE_OUT_MAX];
    let len = code.len().div_ceil(4096) * 4096;
    // SAFETY: an anonymous private mapping with no address hint; checked below.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED, "mmap");
    // SAFETY: `p` is a fresh writable mapping of `len >= code.len()` bytes.
    unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), p as *mut u8, code.len()) };
    // SAFETY: the code is a table function (only caller-saved registers,
    // DF left clear, returns with RET) following the SysV ABI for two
    // pointer arguments; it writes below `out`'s end (the table sizes are
    // far below TABLE_OUT_MAX) and reads only `input`.
    let end = unsafe {
        let f: extern "sysv64" fn(*mut u8, *const u8) -> *mut u8 = std::mem::transmute(p);
        f(out.as_mut_ptr(), input.as_ptr())
    };
    let n = end as usize - out.as_ptr() as usize;
    // SAFETY: unmapping the mapping created above, no longer used.
    unsafe { libc::munmap(p, len) };
    assert!(n <= TABLE_OUT_MAX);
    out.truncate(n);
    out
}

/// A case running a [`table_fn`] in ring 3 of a long-mode guest, with
/// `input` at `TABLE_IN`; every backend's output must equal the host
/// CPU's (the oracle for user-level instructions).
/// `entry` is the size of one output entry and `descs` names the entries
/// (for the failure message).
pub fn table_case(
    name: &'static str,
    code: Vec<u8>,
    input: &[u8],
    entry: usize,
    descs: Vec<String>,
) -> Case {
    let mut g = Guest::new(Mode::Long64);
    g.write(TABLE_BODY, &code);
    g.write(TABLE_IN, input);
    let mut a = g.asm();
    user_data_segments(&mut a).unwrap();
    a.push(sel::UDATA as i32).unwrap();
    a.push(USER_STACK_TOP as i32).unwrap();
    a.push(USER_RFLAGS as i32).unwrap();
    a.push(sel::UCODE64 as i32).unwrap();
    a.push((CODE + 0x100) as i32).unwrap();
    a.iretq().unwrap();
    g.load(&mut a);
    let mut u = CodeAssembler::new(64).unwrap();
    u.mov(edi, TABLE_OUT as u32).unwrap();
    u.mov(esi, TABLE_IN as u32).unwrap();
    u.mov(eax, TABLE_BODY as u32).unwrap();
    u.call(rax).unwrap();
    u.int3().unwrap();
    g.load_at(&mut u, CODE + 0x100, CODE + 0x100);
    #[cfg(target_arch = "x86_64")]
    let native = Some(run_native(&code, input));
    #[cfg(not(target_arch = "x86_64"))]
    let native: Option<Vec<u8>> = {
        eprintln!("[{name}] host check SKIPPED: the host CPU is the reference and is not x86-64");
        None
    };
    Case::new(name, g).check(move |o| {
        let e = o.faulted(3, 0);
        assert_eq!(e.cs, sel::UCODE64 as u64, "ended by the INT3 in ring 3");
        let Some(native) = &native else {
            return;
        };
        let got = &o.mem[TABLE_OUT as usize..TABLE_OUT as usize + native.len()];
        if got != native.as_slice() {
            let i = got
                .iter()
                .zip(native.iter())
                .position(|(a, b)| a != b)
                .unwrap();
            let q = i / 8 * 8;
            let what = descs.get(i / entry).map(String::as_str).unwrap_or("?");
            panic!(
                "{} differs from the host CPU in entry {} `{what}` (byte {:#x} of the entry): {:016x} vs host {:016x}",
                o.backend,
                i / entry,
                q % entry,
                u64::from_le_bytes(got[q..q + 8].try_into().unwrap()),
                u64::from_le_bytes(native[q..q + 8].try_into().unwrap())
            );
        }
    })
}
