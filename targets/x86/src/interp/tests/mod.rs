//! Interpreter tests: instruction semantics byte-in/state-out (flags
//! checked against the host CPU where the SDM defines them), exceptions
//! with error codes, paging, mode switches, self-modifying code.

#![allow(dead_code)]

// Integer results and flags checked against the host CPU's: only where
// it is an x86-64 (the inline asm assembles nowhere else).
#[cfg(target_arch = "x86_64")]
mod alu;
mod boot;
mod debugreg;
mod exceptions;
mod features;
mod paging;
mod strings;
mod system;

use iced_x86::code_asm::CodeAssembler;

use super::{Cpu, ExitReason};
use crate::bus::TestBus;
use crate::consts::{cr0, cr4, efer, seg_attr as sa};
use crate::{CpuState, DescriptorTable, SegReg, Segment};

pub const RAM: usize = 4 << 20;
/// Whether the host CPU can be the reference of a host-checked test (it
/// is an x86-64); elsewhere prints that the running test is skipped.
pub fn host_is_reference() -> bool {
    if cfg!(target_arch = "x86_64") {
        return true;
    }
    let t = std::thread::current();
    eprintln!(
        "{}: SKIPPED: the host CPU is the reference and this host is {}, not x86-64",
        t.name().unwrap_or("test"),
        std::env::consts::ARCH
    );
    false
}

/// Where test code is loaded.
pub const CODE: u64 = 0x10000;
pub const GDT: u64 = 0x500;
pub const IDT: u64 = 0x1000;
pub const PML4: u64 = 0x80000;
pub const STACK_TOP: u64 = 0x70000;

/// GDT selectors of the test machine.
pub const CS32: u16 = 0x08;
pub const DS32: u16 = 0x10;
pub const CS64: u16 = 0x18;
pub const CS16: u16 = 0x20;
pub const DS16: u16 = 0x28;
pub const UCS32: u16 = 0x33;
pub const UDS: u16 = 0x3b;
pub const UCS64: u16 = 0x43;
pub const TSS_SEL: u16 = 0x48;
pub const TSS: u64 = 0x3000;

pub const GDT_ENTRIES: [u64; 9] = [
    0,
    0x00cf_9b00_0000_ffff,
    0x00cf_9300_0000_ffff,
    0x00af_9b00_0000_ffff,
    0x0000_9b00_0000_ffff,
    0x0000_9300_0000_ffff,
    0x00cf_fb00_0000_ffff,
    0x00cf_f300_0000_ffff,
    0x00af_fb00_0000_ffff,
];

#[allow(dead_code)]
pub struct M {
    pub cpu: Cpu,
    pub bus: TestBus,
}

/// Assembles with code_asm at `ip`.
pub fn asm(bitness: u32, ip: u64, f: impl FnOnce(&mut CodeAssembler)) -> Vec<u8> {
    let mut a = CodeAssembler::new(bitness).unwrap();
    f(&mut a);
    a.assemble(ip).unwrap()
}

fn seg(sel: u16) -> Segment {
    Segment::from_descriptor(sel, GDT_ENTRIES[(sel >> 3) as usize] | (1 << 40))
}

#[allow(dead_code)]
impl M {
    fn with_bus(st: CpuState) -> M {
        let mut bus = TestBus::new(RAM);
        for (k, d) in GDT_ENTRIES.iter().enumerate() {
            bus.load(GDT + k as u64 * 8, &d.to_le_bytes());
        }
        // 64-bit TSS descriptor at 0x48 (limit 0x67, available).
        let tss = 0x0000_8900_0000_0067u64 | ((TSS & 0xff_ffff) << 16);
        bus.load(GDT + 0x48, &tss.to_le_bytes());
        bus.load(GDT + 0x50, &0u64.to_le_bytes());
        M {
            cpu: Cpu::new(st),
            bus,
        }
    }

    /// Real mode, CS = 0, IP = CODE, SS:SP = 0:0x7000.
    pub fn real(code: &[u8]) -> M {
        let mut st = CpuState::reset();
        st.segs[SegReg::Cs as usize] = Segment::real_mode((CODE >> 4) as u16, true);
        st.rip = 0;
        st.gpr[4] = 0x7000;
        st.idtr = DescriptorTable {
            base: 0,
            limit: 0x3ff,
        };
        let mut m = M::with_bus(st);
        m.bus.load(CODE, code);
        m
    }

    fn prot_state() -> CpuState {
        let mut st = CpuState::reset();
        st.cr0 = cr0::PE | cr0::ET | cr0::NE;
        for s in [SegReg::Ds, SegReg::Es, SegReg::Fs, SegReg::Gs, SegReg::Ss] {
            st.segs[s as usize] = seg(DS32);
        }
        st.segs[SegReg::Cs as usize] = seg(CS32);
        st.gdtr = DescriptorTable {
            base: GDT,
            limit: 0x57,
        };
        st.idtr = DescriptorTable {
            base: IDT,
            limit: 0x7ff,
        };
        st.tr = Segment {
            base: TSS,
            limit: 0x67,
            selector: TSS_SEL,
            attr: sa::SYS_TSS_BUSY | sa::P,
        };
        st.rip = CODE;
        st.gpr[4] = STACK_TOP;
        st
    }

    /// Flat 32-bit protected mode, no paging.
    pub fn prot32(code: &[u8]) -> M {
        let mut m = M::with_bus(Self::prot_state());
        m.bus.load(CODE, code);
        m
    }

    /// Flat 32-bit protected mode at CPL 3 with alignment checking on
    /// (CR0.AM, EFLAGS.AC), ESP 0x50000, exception handlers installed and
    /// a ring-0 stack in the TSS.
    pub fn prot32_user_ac(code: &[u8]) -> M {
        let mut m = M::prot32(code);
        m.install_handlers32();
        m.bus.load(TSS + 4, &0x60000u32.to_le_bytes());
        m.bus.load(TSS + 8, &(DS32 as u32).to_le_bytes());
        let st = &mut m.cpu.state;
        st.segs[SegReg::Cs as usize] = seg(UCS32);
        for s in [SegReg::Ds, SegReg::Es, SegReg::Ss, SegReg::Fs, SegReg::Gs] {
            st.segs[s as usize] = seg(UDS);
        }
        st.gpr[4] = 0x50000;
        st.cr0 |= cr0::AM;
        st.rflags |= crate::consts::rflags::AC;
        m.cpu.update_mode();
        m
    }

    /// 64-bit mode with an identity map of the first 1 GiB (2 MiB pages).
    pub fn long64(code: &[u8]) -> M {
        let mut st = Self::prot_state();
        st.cr0 |= cr0::PG | cr0::WP;
        st.cr4 = cr4::PAE | cr4::PGE;
        st.efer = efer::LME | efer::LMA | efer::NXE | efer::SCE;
        st.cr3 = PML4;
        st.segs[SegReg::Cs as usize] = seg(CS64);
        st.gdtr.limit = 0x57;
        st.idtr = DescriptorTable {
            base: IDT,
            limit: 0xfff,
        };
        let mut m = M::with_bus(st);
        m.bus.load(PML4, &(PML4 + 0x1003).to_le_bytes());
        m.bus.load(PML4 + 0x1000, &(PML4 + 0x2003).to_le_bytes());
        for k in 0..512u64 {
            m.bus
                .load(PML4 + 0x2000 + k * 8, &((k << 21) | 0x83).to_le_bytes());
        }
        m.bus.load(CODE, code);
        m
    }

    pub fn run(&mut self) -> ExitReason {
        self.cpu.run(&mut self.bus, 50_000_000)
    }

    pub fn gpr(&self, n: usize) -> u64 {
        self.cpu.state.gpr[n]
    }

    /// Writes a 64-bit interrupt gate for `vector` → `handler` (CS64, IST 0).
    pub fn idt64_gate(&mut self, vector: u8, handler: u64, dpl: u8) {
        let lo = (handler & 0xffff)
            | ((CS64 as u64) << 16)
            | (0x8e00u64 | ((dpl as u64) << 13)) << 32
            | ((handler >> 16) & 0xffff) << 48;
        let hi = handler >> 32;
        self.bus.load(IDT + vector as u64 * 16, &lo.to_le_bytes());
        self.bus
            .load(IDT + vector as u64 * 16 + 8, &hi.to_le_bytes());
    }

    /// Writes a 32-bit interrupt gate for `vector` → `CS32:handler`.
    pub fn idt32_gate(&mut self, vector: u8, handler: u32, dpl: u8) {
        let d = (handler as u64 & 0xffff)
            | ((CS32 as u64) << 16)
            | (0x8e00u64 | ((dpl as u64) << 13)) << 32
            | ((handler as u64 >> 16) & 0xffff) << 48;
        self.bus.load(IDT + vector as u64 * 8, &d.to_le_bytes());
    }

    pub fn read_u64(&self, a: u64) -> u64 {
        u64::from_le_bytes(self.bus.ram[a as usize..a as usize + 8].try_into().unwrap())
    }
}

/// Where exception handlers record what they saw.
pub const REC: u64 = 0x6000;
/// Handlers are placed at HANDLERS + vector * 0x100.
pub const HANDLERS: u64 = 0x20000;

/// Vectors that push an error code.
pub fn has_error_code(v: u8) -> bool {
    matches!(v, 8 | 10..=14 | 17)
}

#[allow(dead_code)]
impl M {
    /// 64-bit handlers for vectors 0..32 recording at REC: [0] error code
    /// (or u64::MAX), [8] vector + 0x100, [16] pushed RIP, [24] pushed CS,
    /// [32] pushed RSP, [40] CR2, [48] pushed RFLAGS, then `cli; hlt`.
    pub fn install_handlers64(&mut self) {
        for v in 0u8..32 {
            let at = HANDLERS + v as u64 * 0x100;
            let code = asm(64, at, |a| {
                use iced_x86::code_asm::*;
                if has_error_code(v) {
                    a.pop(rax).unwrap();
                } else {
                    a.mov(rax, -1i64).unwrap();
                }
                a.mov(qword_ptr(REC), rax).unwrap();
                a.mov(qword_ptr(REC + 8), 0x100 + v as i32).unwrap();
                a.mov(rax, qword_ptr(rsp)).unwrap();
                a.mov(qword_ptr(REC + 16), rax).unwrap();
                a.mov(rax, qword_ptr(rsp + 8)).unwrap();
                a.mov(qword_ptr(REC + 24), rax).unwrap();
                a.mov(rax, qword_ptr(rsp + 24)).unwrap();
                a.mov(qword_ptr(REC + 32), rax).unwrap();
                a.mov(rax, cr2).unwrap();
                a.mov(qword_ptr(REC + 40), rax).unwrap();
                a.mov(rax, qword_ptr(rsp + 16)).unwrap();
                a.mov(qword_ptr(REC + 48), rax).unwrap();
                a.cli().unwrap();
                a.hlt().unwrap();
            });
            self.bus.load(at, &code);
            self.idt64_gate(v, at, 0);
        }
    }

    /// 32-bit handlers (same record layout, 32-bit values zero-extended).
    pub fn install_handlers32(&mut self) {
        for v in 0u8..32 {
            let at = HANDLERS + v as u64 * 0x100;
            let code = asm(32, at, |a| {
                use iced_x86::code_asm::*;
                if has_error_code(v) {
                    a.pop(eax).unwrap();
                } else {
                    a.mov(eax, -1).unwrap();
                }
                a.mov(dword_ptr(REC as u32), eax).unwrap();
                a.mov(dword_ptr(REC as u32 + 8), 0x100 + v as u32).unwrap();
                a.mov(eax, dword_ptr(esp)).unwrap();
                a.mov(dword_ptr(REC as u32 + 16), eax).unwrap();
                a.mov(eax, dword_ptr(esp + 4)).unwrap();
                a.mov(dword_ptr(REC as u32 + 24), eax).unwrap();
                a.mov(eax, dword_ptr(esp + 12)).unwrap();
                a.mov(dword_ptr(REC as u32 + 32), eax).unwrap();
                a.mov(eax, cr2).unwrap();
                a.mov(dword_ptr(REC as u32 + 40), eax).unwrap();
                a.cli().unwrap();
                a.hlt().unwrap();
            });
            self.bus.load(at, &code);
            self.idt32_gate(v, at as u32, 0);
        }
    }

    /// (vector, error code, pushed RIP) recorded by a handler.
    /// The RFLAGS image the 64-bit handler found pushed.
    pub fn rec_rflags(&self) -> u64 {
        self.read_u64(REC + 48)
    }

    pub fn rec(&self) -> (u64, u64, u64) {
        let v = self.read_u64(REC + 8);
        let v = if v >= 0x100 { v - 0x100 } else { u64::MAX };
        (v, self.read_u64(REC), self.read_u64(REC + 16))
    }

    /// Maps `virt` → `phys` with a 4 KiB page and the given PTE flags in
    /// the 64-bit tables (page tables allocated from 0x90000 up).
    pub fn map4k(&mut self, virt: u64, phys: u64, flags: u64) {
        let mut table = PML4;
        let mut next = 0x90000u64 + self.read_u64(0x8fff8);
        for shift in [39u64, 30, 21] {
            let idx = (virt >> shift) & 0x1ff;
            let e = self.read_u64(table + idx * 8);
            let t = if e & 1 == 0 || e & 0x80 != 0 {
                let t = next;
                next += 0x1000;
                self.bus.load(t, &[0u8; 4096]);
                self.bus.load(table + idx * 8, &(t | 7).to_le_bytes());
                t
            } else {
                e & 0x000f_ffff_ffff_f000
            };
            table = t;
        }
        self.bus.load(
            table + ((virt >> 12) & 0x1ff) * 8,
            &(phys | flags).to_le_bytes(),
        );
        self.bus.load(0x8fff8, &(next - 0x90000).to_le_bytes());
    }

    /// Linear address of the PTE that maps `virt` (after [`M::map4k`]).
    pub fn pte_addr(&self, virt: u64) -> u64 {
        let mut table = PML4;
        for shift in [39u64, 30, 21] {
            table = self.read_u64(table + ((virt >> shift) & 0x1ff) * 8) & 0x000f_ffff_ffff_f000;
        }
        table + ((virt >> 12) & 0x1ff) * 8
    }
}
