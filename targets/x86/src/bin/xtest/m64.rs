//! 64-bit mode: code and data pages above 4 GiB, the interpreter in 64-bit
//! user mode (4-level paging).

use x86::consts::{cr0, cr4, efer};
use x86::interp::DebugStop;
use x86::{CpuState, ExitReason, Segment, StepResult, TestBus};

use crate::gen64::{build, AREA, CODE, DATA, GPR_IDX, IN, OUT, SEQ};
use crate::native::{self, Shared};
use crate::{Case, Mode, Outcome, Rng, St, DF, STATUS};

/// Guest-physical layout for the interpreter.
const P_PML4: u64 = 0x1000;
const P_CODE: u64 = 0x10000;
const P_DATA: u64 = 0x11000;

pub struct M64 {
    code: Shared,
    data: Shared,
}

impl M64 {
    pub fn new() -> M64 {
        M64 {
            code: Shared::map(
                CODE,
                0x1000,
                libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
            ),
            data: Shared::map(DATA, 0x1000, libc::PROT_READ | libc::PROT_WRITE),
        }
    }
}

fn user_state(st: &St) -> CpuState {
    let mut s = CpuState::reset();
    s.gpr = st.gpr;
    s.gpr[15] = DATA;
    s.gpr[4] = DATA + IN; // unused by the sequences
    s.rflags = st.flags;
    s.rip = SEQ;
    s.cr0 = cr0::PE | cr0::PG | cr0::ET | cr0::NE | cr0::MP | cr0::WP;
    s.cr4 = cr4::PAE | cr4::OSFXSR | cr4::OSXMMEXCPT;
    s.cr3 = P_PML4;
    s.efer = efer::LME | efer::LMA | efer::NXE;
    let data = Segment::from_descriptor(0x2b, 0x00cf_f300_0000_ffff);
    s.segs = [data; 6];
    s.segs[1] = Segment::from_descriptor(0x33, 0x00af_fb00_0000_ffff);
    s.idtr.limit = 0; // any exception ends in a shutdown
    s.fpu.xmm = st.xmm;
    s
}

/// A bus with 4-level tables mapping CODE and DATA (user, RW).
fn guest_bus(code: &[u8], data: &[u8]) -> TestBus {
    let mut b = TestBus::new(0x12000);
    let w = |b: &mut TestBus, a: u64, v: u64| b.load(a, &v.to_le_bytes());
    // CODE = 64 GiB: PML4[0] -> PDPT[64] -> PD[0] -> PT[0] / PT[1].
    w(&mut b, P_PML4, 0x2000 | 7);
    w(&mut b, 0x2000 + 64 * 8, 0x3000 | 7);
    w(&mut b, 0x3000, 0x4000 | 7);
    w(&mut b, 0x4000, P_CODE | 7);
    w(&mut b, 0x4008, P_DATA | 7);
    b.load(P_CODE, code);
    b.load(P_DATA, data);
    b
}

fn final_st(cpu: &x86::Cpu) -> St {
    let s = &cpu.state;
    let mut gpr = s.gpr;
    gpr[4] = 0;
    gpr[15] = 0;
    St {
        gpr,
        flags: s.rflags,
        xmm: s.fpu.xmm,
        sregs: [0; 6],
    }
}

fn area(bus: &TestBus) -> Vec<u8> {
    bus.ram[P_DATA as usize..P_DATA as usize + 0x400].to_vec()
}

fn read_st(d: &[u8], off: u64) -> St {
    let q = |i: u64| {
        u64::from_le_bytes(
            d[(off + i) as usize..(off + i) as usize + 8]
                .try_into()
                .unwrap(),
        )
    };
    let mut st = St::zero();
    for &i in &GPR_IDX {
        st.gpr[i] = q(i as u64 * 8);
    }
    for (i, x) in st.xmm.iter_mut().enumerate() {
        let o = (off + 0x100 + i as u64 * 16) as usize;
        x.copy_from_slice(&d[o..o + 16]);
    }
    st.flags = q(16 * 8);
    st
}

fn write_st(d: &mut [u8], off: u64, st: &St) {
    for &i in &GPR_IDX {
        let o = (off + i as u64 * 8) as usize;
        d[o..o + 8].copy_from_slice(&st.gpr[i].to_le_bytes());
    }
    let o = (off + 16 * 8) as usize;
    d[o..o + 8].copy_from_slice(&st.flags.to_le_bytes());
    for i in 0..16 {
        let o = (off + 0x100 + i as u64 * 16) as usize;
        d[o..o + 16].copy_from_slice(&st.xmm[i]);
    }
}

impl Mode for M64 {
    fn build(&mut self, rng: &mut Rng, len: usize, sse: bool) -> Case {
        let (code, end) = build(rng, len, sse);
        Case {
            code,
            bits: 64,
            seq_off: (SEQ - CODE) as usize,
            seq_len: (end - SEQ) as usize,
            ip: SEQ,
            end,
            sregs: [0; 6],
        }
    }

    fn start(&mut self, rng: &mut Rng, _case: &Case) -> (St, Vec<u8>) {
        let mut start = St::zero();
        start.flags = 0x202 | (rng.value() & STATUS);
        for &i in &GPR_IDX {
            start.gpr[i] = rng.value();
        }
        for x in start.xmm.iter_mut() {
            x[..8].copy_from_slice(&rng.value().to_le_bytes());
            x[8..].copy_from_slice(&rng.value().to_le_bytes());
        }
        let mut data = vec![0u8; 0x1000];
        for b in data[..0x400].iter_mut() {
            *b = rng.next() as u8;
        }
        write_st(&mut data, IN, &start);
        (start, data)
    }

    fn native(&mut self, case: &Case, _st: &St, data: &[u8]) -> Outcome {
        self.code.bytes().copy_from_slice(&case.code);
        self.data.bytes().copy_from_slice(data);
        match native::run(CODE) {
            Ok(()) => {
                let d = self.data.bytes().to_vec();
                let mut s = read_st(&d, OUT);
                s.gpr[4] = 0;
                s.gpr[15] = 0;
                Outcome::Done(s, d[..0x400].to_vec())
            }
            Err(e) => Outcome::Fault(e),
        }
    }

    fn variants(&self) -> &'static [&'static str] {
        &[
            "stepped",
            "in blocks only",
            "in blocks, JIT (translated at once)",
        ]
    }

    /// Stepped, or in blocks (`Cpu::run`, the fast path with flags elided
    /// when later instructions overwrite them, stopping at an INT3 placed
    /// at the end with debugger breakpoints on).
    fn interp(&self, case: &Case, st: &St, data: &[u8], variant: usize, _: &mut Rng) -> Outcome {
        let end = case.end;
        crate::clear_log();
        let mut cpu = x86::Cpu::new(user_state(st));
        if variant == 2 {
            crate::jit_on(&mut cpu);
        }
        if variant >= 1 {
            let mut code = case.code.clone();
            code[(end - CODE) as usize] = 0xcc;
            let mut bus = guest_bus(&code, data);
            cpu.debug_int3 = true;
            let r = cpu.run(&mut bus, 100_000);
            if r != ExitReason::Debug(DebugStop::Breakpoint) || cpu.state.rip != end {
                crate::note_fault(cpu.state.rip);
                return Outcome::Fault(format!(
                    "{r:?} at rip {:#x} ({})",
                    cpu.state.rip,
                    crate::first_exception()
                ));
            }
            return Outcome::Done(final_st(&cpu), area(&bus));
        }
        let mut bus = guest_bus(&case.code, data);
        for _ in 0..10_000 {
            if cpu.state.rip == end {
                return Outcome::Done(final_st(&cpu), area(&bus));
            }
            if let StepResult::Exit(e) = cpu.step(&mut bus) {
                crate::note_fault(cpu.state.rip);
                return Outcome::Fault(format!(
                    "{e:?} at rip {:#x} ({})",
                    cpu.state.rip,
                    crate::first_exception()
                ));
            }
        }
        Outcome::Fault(format!("did not reach the end (rip {:#x})", cpu.state.rip))
    }

    fn gprs(&self) -> (&'static [usize], u64) {
        (&GPR_IDX, u64::MAX)
    }

    fn flags_mask(&self) -> u64 {
        STATUS | DF
    }

    fn truncate(&self, _: &Case, _: usize) -> Option<Case> {
        None
    }

    fn mem_name(&self, off: usize) -> String {
        format!("[r15{:+#x}]", off as u64 + AREA - 0x400)
    }
}
