//! 32- and 16-bit modes: code, state and data below 4 GiB; an LDT (made
//! with `modify_ldt`) with 16-bit code and data segments; the interpreter
//! in legacy protected mode (32-bit paging) and in compatibility mode
//! (4-level paging), CPL 3, with the same GDT/LDT contents.
//!
//! Native flow: 64-bit code at [`LCODE`] loads XMM0..15 and far-jumps to
//! the mode's prologue (in the 32-bit user code segment 0x23 or a 32-bit
//! LDT code segment based at `LCODE`, or in the 16-bit LDT code segment),
//! which loads GS (the state segment), RFLAGS,
//! the data segment registers, SS:ESP and the GPRs from the state page and
//! jumps to the sequence; the epilogue after it stores GPRs, selectors and
//! RFLAGS through GS and far-jumps to 64-bit code that stores the XMM
//! registers and calls exit_group.

use iced_x86::code_asm::*;
use x86::consts::{cr0, cr4, efer, seg_attr};
use x86::interp::DebugStop;
use x86::{CpuState, DescriptorTable, ExitReason, Segment, StepResult, TestBus};

use crate::gen_low::{gen_one, Ctx};
use crate::native::{self, Shared};
use crate::{Case, Mode, Outcome, Rng, St, DF, STATUS};

/// Virtual layout (identical natively and in the guest).
pub const LCODE: u64 = 0x4000_0000;
const CODE_LEN: usize = 0x2000;
const LSTATE: u64 = LCODE + 0x2000;
/// Guest only (supervisor pages): the descriptor tables.
const GDT_VA: u64 = LCODE + 0x3000;
const LDT_VA: u64 = LCODE + 0x4000;
/// The data area: 64 KiB (what 16-bit segments based here reach) and one
/// more page for 32-bit accesses near the end.
pub const LDATA: u64 = LCODE + 0x1_0000;
const DATA_LEN: usize = 0x1_1000;

/// Offsets in the code pages.
const PRO64: u64 = 0;
const EPI64: u64 = 0x200;
const PRO: u64 = 0x300;
pub const SEQ: u64 = 0x400;
const STUB_BASE: u64 = 0x1f00;

/// The state page: records at IN and OUT (GPRs EAX..EDI as u32, EFLAGS,
/// selectors ES..GS as u16, SS:ESP as a far pointer, XMM0..15), far
/// pointers to the prologue and the 64-bit epilogue, a temporary stack.
const IN: u64 = 0;
const OUT: u64 = 0x400;
const O_FLAGS: u64 = 0x20;
const O_SREGS: u64 = 0x28;
const O_SSESP: u64 = 0x38;
const O_XMM: u64 = 0x100;
const FAR_PRO: u64 = 0x800;
const FAR_EPI: u64 = 0x808;
const TMP_STACK: u32 = 0xff0;

/// The host's (Linux x86-64) GDT user selectors.
pub const SEL_USER32_CS: u16 = 0x23;
pub const SEL_USER_DS: u16 = 0x2b;
const SEL_USER_CS: u16 = 0x33;

/// LDT selector of entry `i` (RPL 3).
pub const fn sel(i: u16) -> u16 {
    (i << 3) | 7
}
/// 16-bit code based at LCODE.
pub const SEL_CODE16: u16 = sel(0);
/// 16-bit data (B = 0) based at LDATA, limit 0xFFFF.
pub const SEL_DATA16: u16 = sel(1);
/// The state page (32-bit data, limit 0xFFF).
const SEL_STATE: u16 = sel(2);
/// 32-bit data based at LDATA, 4 GiB limit.
pub const SEL_DATA32: u16 = sel(3);
/// 32-bit code based at LCODE.
pub const SEL_CODE32: u16 = sel(4);
// sel(5): expand-down 16-bit data (offsets 0x8000..=0xFFFF); sel(6):
// read-only 16-bit data; sel(7): not present.

/// `struct user_desc` of modify_ldt(2).
#[repr(C)]
struct UserDesc {
    entry_number: u32,
    base_addr: u32,
    limit: u32,
    /// seg_32bit:1, contents:2, read_exec_only:1, limit_in_pages:1,
    /// seg_not_present:1, useable:1, lm:1.
    flags: u32,
}

const LDT: [(u64, u32, u32); 8] = [
    (LCODE, 0xffff, 2 << 1),
    (LDATA, 0xffff, 1 << 6),
    (LSTATE, 0xfff, 1),
    (LDATA, 0xf_ffff, 1 | 1 << 4 | 1 << 6),
    (LCODE, 0xf_ffff, 1 | 2 << 1 | 1 << 4),
    (LDATA, 0x7fff, 1 << 1),
    (LDATA, 0xffff, 1 << 3),
    (LDATA, 0xffff, 1 << 5),
];

/// A far-call target: code at `off` in the code pages, entered through
/// `sel`, returning with a RETF of the call's operand size (`o32`) that
/// releases `args` stack slots.
pub struct Stub {
    pub sel: u16,
    pub off: u64,
    pub o32: bool,
    pub args: u32,
}

/// Stub code: (offset, code size, bytes). A: 32-bit BSWAP EAX; RETF.
/// B: 32-bit BSWAP EAX; O16 RETF. C: 16-bit XCHG AL,AH; RETF. D: 16-bit
/// XCHG AL,AH; O32 RETF. E: 32-bit RETF 4. F: 16-bit RETF 2.
const STUB_CODE: [(u64, &[u8]); 6] = [
    (STUB_BASE, &[0x0f, 0xc8, 0xcb]),
    (STUB_BASE + 0x10, &[0x0f, 0xc8, 0x66, 0xcb]),
    (STUB_BASE + 0x20, &[0x86, 0xc4, 0xcb]),
    (STUB_BASE + 0x30, &[0x86, 0xc4, 0x66, 0xcb]),
    (STUB_BASE + 0x40, &[0xca, 4, 0]),
    (STUB_BASE + 0x50, &[0xca, 2, 0]),
];

pub const STUBS: [Stub; 7] = [
    Stub {
        sel: SEL_USER32_CS,
        off: STUB_BASE,
        o32: true,
        args: 0,
    },
    Stub {
        sel: SEL_CODE32,
        off: STUB_BASE,
        o32: true,
        args: 0,
    },
    Stub {
        sel: SEL_CODE32,
        off: STUB_BASE + 0x10,
        o32: false,
        args: 0,
    },
    Stub {
        sel: SEL_CODE16,
        off: STUB_BASE + 0x20,
        o32: false,
        args: 0,
    },
    Stub {
        sel: SEL_CODE16,
        off: STUB_BASE + 0x30,
        o32: true,
        args: 0,
    },
    Stub {
        sel: SEL_USER32_CS,
        off: STUB_BASE + 0x40,
        o32: true,
        args: 1,
    },
    Stub {
        sel: SEL_CODE16,
        off: STUB_BASE + 0x50,
        o32: false,
        args: 1,
    },
];

/// The GDT as Linux x86-64 lays it out (the entries a user process can
/// name), with the LDT descriptor pointing at [`LDT_VA`].
fn gdt() -> [u64; 16] {
    let mut g = [0u64; 16];
    g[1] = 0x00cf_9b00_0000_ffff; // kernel 32-bit code
    g[2] = 0x00af_9b00_0000_ffff; // kernel code
    g[3] = 0x00cf_9300_0000_ffff; // kernel data
    g[4] = 0x00cf_fb00_0000_ffff; // 0x23: user 32-bit code
    g[5] = 0x00cf_f300_0000_ffff; // 0x2b: user data
    g[6] = 0x00af_fb00_0000_ffff; // 0x33: user code
    g[8] = 0x0000_8b00_0000_0067; // TSS (busy)
    let ldt = Segment {
        base: LDT_VA,
        limit: (LDT.len() * 8 - 1) as u32,
        selector: 0x50,
        attr: seg_attr::SYS_LDT | seg_attr::P,
    };
    g[10] = ldt.to_descriptor();
    g
}

pub struct Low {
    bits: u32,
    code: Shared,
    state: Shared,
    data: Shared,
    /// The LDT as the kernel installed it.
    ldt: Vec<u64>,
    /// The code pages without a sequence: 64-bit prologue and epilogue, the
    /// stubs.
    template: Vec<u8>,
    /// The mode's prologue for each code segment sequences run in.
    prologues: Vec<(u16, Vec<u8>)>,
}

/// The IP of code-page offset `off` in code segment `cs` (the user code
/// segment 0x23 is flat, the LDT ones are based at LCODE).
fn ip_of(code_sel: u16, off: u64) -> u64 {
    if code_sel == SEL_USER32_CS {
        LCODE + off
    } else {
        off
    }
}

fn asm_err(e: IcedError) -> String {
    format!("assembler: {e}")
}

impl Low {
    pub fn new(bits: u32) -> Result<Low, String> {
        let rwx = libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC;
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        let mut m = Low {
            bits,
            code: Shared::map(LCODE, CODE_LEN, rwx),
            state: Shared::map(LSTATE, 0x1000, rw),
            data: Shared::map(LDATA, DATA_LEN, rw),
            ldt: Vec::new(),
            template: Vec::new(),
            prologues: Vec::new(),
        };
        for (i, &(base, limit, flags)) in LDT.iter().enumerate() {
            let d = UserDesc {
                entry_number: i as u32,
                base_addr: base as u32,
                limit,
                flags,
            };
            // SAFETY: modify_ldt(1, desc, size) reads one `user_desc`
            // from our live struct.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_modify_ldt,
                    1,
                    &d as *const UserDesc,
                    std::mem::size_of::<UserDesc>(),
                )
            };
            if r != 0 {
                return Err(format!("modify_ldt: {}", std::io::Error::last_os_error()));
            }
        }
        let mut raw = [0u64; LDT.len()];
        // SAFETY: modify_ldt(0, buf, size) writes at most `size` bytes of
        // the LDT into our buffer.
        let n = unsafe {
            libc::syscall(
                libc::SYS_modify_ldt,
                0,
                raw.as_mut_ptr(),
                std::mem::size_of_val(&raw),
            )
        };
        if n != std::mem::size_of_val(&raw) as i64 {
            return Err(format!("reading the LDT back: {n}"));
        }
        m.ldt = raw.to_vec();
        m.template = m.template().map_err(asm_err)?;
        let css: &[u16] = if bits == 32 {
            &[SEL_USER32_CS, SEL_CODE32]
        } else {
            &[SEL_CODE16]
        };
        for &code_sel in css {
            let p = m.prologue(code_sel).map_err(asm_err)?;
            m.prologues.push((code_sel, p));
        }
        // The host must run an empty sequence.
        let mut rng = Rng(1);
        let case = m.build(&mut rng, 0, false);
        let (st, data) = m.start(&mut rng, &case);
        match m.native(&case, &st, &data) {
            Outcome::Done(..) => Ok(m),
            Outcome::Fault(e) => Err(e),
        }
    }

    fn template(&self) -> Result<Vec<u8>, IcedError> {
        let xs = [
            xmm0, xmm1, xmm2, xmm3, xmm4, xmm5, xmm6, xmm7, xmm8, xmm9, xmm10, xmm11, xmm12, xmm13,
            xmm14, xmm15,
        ];
        let mut page = vec![0xccu8; CODE_LEN];
        let mut put = |off: u64, b: &[u8]| {
            page[off as usize..off as usize + b.len()].copy_from_slice(b);
        };
        let mut p = CodeAssembler::new(64)?;
        for (i, &x) in xs.iter().enumerate() {
            p.movdqu(x, xmmword_ptr(LSTATE + IN + O_XMM + i as u64 * 16))?;
        }
        p.jmp(fword_ptr(LSTATE + FAR_PRO))?;
        let b = p.assemble(LCODE + PRO64)?;
        assert!(b.len() <= (EPI64 - PRO64) as usize);
        put(PRO64, &b);
        let mut e = CodeAssembler::new(64)?;
        for (i, &x) in xs.iter().enumerate() {
            e.movdqu(xmmword_ptr(LSTATE + OUT + O_XMM + i as u64 * 16), x)?;
        }
        e.mov(eax, 231u32)?; // exit_group(0)
        e.xor(edi, edi)?;
        e.syscall()?;
        let b = e.assemble(LCODE + EPI64)?;
        assert!(b.len() <= (PRO - EPI64) as usize);
        put(EPI64, &b);
        for (off, b) in STUB_CODE {
            put(off, b);
        }
        Ok(page)
    }

    /// The mode's prologue in code segment `cs` (at PRO): loads the state
    /// at IN, jumps to the sequence.
    fn prologue(&self, code_sel: u16) -> Result<Vec<u8>, IcedError> {
        let mut a = CodeAssembler::new(self.bits)?;
        let g = |o: u64| ptr(o).gs();
        a.mov(ax, SEL_STATE as u32)?;
        a.mov(gs, ax)?;
        a.mov(ss, ax)?;
        a.mov(esp, TMP_STACK)?;
        a.push(dword_ptr(g(IN + O_FLAGS)))?;
        a.popfd()?;
        for (k, s) in [(0, es), (3, ds), (4, fs)] {
            a.mov(ax, word_ptr(g(IN + O_SREGS + 2 * k)))?;
            a.mov(s, ax)?;
        }
        a.lss(esp, fword_ptr(g(IN + O_SSESP)))?;
        let r32 = [eax, ecx, edx, ebx, esp, ebp, esi, edi];
        for (i, &r) in r32.iter().enumerate() {
            if i != 4 {
                a.mov(r, dword_ptr(g(IN + 4 * i as u64)))?;
            }
        }
        a.jmp(ip_of(code_sel, SEQ))?;
        let b = a.assemble(ip_of(code_sel, PRO))?;
        assert!(b.len() <= (SEQ - PRO) as usize);
        Ok(b)
    }

    /// The epilogue at `ip`: GPRs, selectors and EFLAGS to OUT, then the
    /// 64-bit epilogue.
    fn epilogue(&self, ip: u64) -> Result<Vec<u8>, IcedError> {
        let mut a = CodeAssembler::new(self.bits)?;
        let g = |o: u64| ptr(o).gs();
        let r32 = [eax, ecx, edx, ebx, esp, ebp, esi, edi];
        for (i, &r) in r32.iter().enumerate() {
            a.mov(dword_ptr(g(OUT + 4 * i as u64)), r)?;
        }
        for (k, s) in [(0, es), (2, ss), (3, ds), (4, fs), (5, gs)] {
            a.mov(word_ptr(g(OUT + O_SREGS + 2 * k)), s)?;
        }
        a.mov(ax, gs)?;
        a.mov(ss, ax)?;
        a.mov(esp, TMP_STACK)?;
        a.pushfd()?;
        a.pop(dword_ptr(g(OUT + O_FLAGS)))?;
        a.jmp(fword_ptr(g(FAR_EPI)))?;
        a.assemble(ip)
    }

    /// The 8-byte descriptor of `sel` in the GDT or the LDT (0 if none).
    fn desc(&self, sel: u16) -> u64 {
        let i = (sel >> 3) as usize;
        if sel & 4 != 0 {
            self.ldt.get(i).copied().unwrap_or(0)
        } else {
            gdt().get(i).copied().unwrap_or(0)
        }
    }

    /// The state page with `st` at IN and the far pointers.
    fn state_page(&self, st: &St) -> Vec<u8> {
        let mut d = vec![0u8; 0x1000];
        let mut w = |o: u64, b: &[u8]| d[o as usize..o as usize + b.len()].copy_from_slice(b);
        for i in 0..8 {
            w(IN + 4 * i, &(st.gpr[i as usize] as u32).to_le_bytes());
        }
        w(IN + O_FLAGS, &(st.flags as u32).to_le_bytes());
        for (k, s) in st.sregs.iter().enumerate() {
            w(IN + O_SREGS + 2 * k as u64, &s.to_le_bytes());
        }
        w(IN + O_SSESP, &(st.gpr[4] as u32).to_le_bytes());
        w(IN + O_SSESP + 4, &st.sregs[2].to_le_bytes());
        for (i, x) in st.xmm.iter().enumerate() {
            w(IN + O_XMM + 16 * i as u64, x);
        }
        let code_sel = st.sregs[1];
        w(FAR_PRO, &(ip_of(code_sel, PRO) as u32).to_le_bytes());
        w(FAR_PRO + 4, &code_sel.to_le_bytes());
        w(FAR_EPI, &((LCODE + EPI64) as u32).to_le_bytes());
        w(FAR_EPI + 4, &SEL_USER_CS.to_le_bytes());
        d
    }

    /// The interpreter's start state: CPL 3 in legacy protected mode with
    /// 32-bit paging, or in compatibility mode.
    fn cpu_state(&self, st: &St, ip: u64, compat: bool, rng: &mut Rng) -> CpuState {
        let mut s = CpuState::reset();
        for i in 0..16 {
            // Outside 64-bit mode the upper halves are not visible: fill
            // them with garbage the interpreter must ignore.
            let hi = if rng.below(2) == 0 {
                rng.next() << 32
            } else {
                0
            };
            s.gpr[i] = (st.gpr[i] & 0xffff_ffff) | hi;
        }
        s.rip = ip;
        s.rflags = st.flags | 2;
        for (k, &sel) in st.sregs.iter().enumerate() {
            s.segs[k] = Segment::from_descriptor(sel, self.desc(sel));
        }
        s.ldtr = Segment::from_descriptor(0x50, gdt()[10]);
        s.tr = Segment::from_descriptor(0x40, gdt()[8]);
        s.gdtr = DescriptorTable {
            base: GDT_VA,
            limit: 0x7f,
        };
        s.idtr.limit = 0; // any exception ends in a shutdown
        s.cr0 = cr0::PE | cr0::PG | cr0::ET | cr0::NE | cr0::MP | cr0::WP | cr0::AM;
        s.cr4 = cr4::OSFXSR | cr4::OSXMMEXCPT;
        s.cr3 = P_TABLES;
        if compat {
            s.cr4 |= cr4::PAE;
            s.efer = efer::LME | efer::LMA | efer::NXE;
        }
        s.fpu.xmm = st.xmm;
        s
    }

    /// Guest-physical memory: the page tables, the code pages, the state
    /// page, GDT and LDT (supervisor), the data area.
    fn guest_bus(&self, code: &[u8], state: &[u8], data: &[u8], compat: bool) -> TestBus {
        let mut b = TestBus::new(P_DATA as usize + DATA_LEN);
        let w32 = |b: &mut TestBus, a: u64, v: u64| b.load(a, &(v as u32).to_le_bytes());
        let w64 = |b: &mut TestBus, a: u64, v: u64| b.load(a, &v.to_le_bytes());
        let mut pages = vec![
            (0, P_CODE | 7),
            (1, (P_CODE + 0x1000) | 7),
            (2, P_STATE | 7),
            (3, P_GDT | 3),
            (4, P_LDT | 3),
        ];
        for k in 0..(DATA_LEN / 0x1000) as u64 {
            pages.push((0x10 + k, (P_DATA + k * 0x1000) | 7));
        }
        if compat {
            // LCODE = 1 GiB: PML4[0] -> PDPT[1] -> PD[0] -> PT.
            w64(&mut b, P_TABLES, 0x3000 | 7);
            w64(&mut b, 0x3000 + 8, 0x4000 | 7);
            w64(&mut b, 0x4000, 0x5000 | 7);
            for (i, e) in pages {
                w64(&mut b, 0x5000 + i * 8, e);
            }
        } else {
            // PD[0x100] -> PT.
            w32(&mut b, P_TABLES + (LCODE >> 22) * 4, 0x2000 | 7);
            for (i, e) in pages {
                w32(&mut b, 0x2000 + i * 4, e);
            }
        }
        for (i, d) in gdt().iter().enumerate() {
            w64(&mut b, P_GDT + i as u64 * 8, *d);
        }
        for (i, d) in self.ldt.iter().enumerate() {
            w64(&mut b, P_LDT + i as u64 * 8, *d);
        }
        b.load(P_CODE, code);
        b.load(P_STATE, state);
        b.load(P_DATA, data);
        b
    }
}

/// Guest-physical layout for the interpreter.
const P_TABLES: u64 = 0x1000;
const P_CODE: u64 = 0x1_0000;
const P_STATE: u64 = 0x1_2000;
const P_GDT: u64 = 0x1_3000;
const P_LDT: u64 = 0x1_4000;
const P_DATA: u64 = 0x2_0000;

fn final_st(cpu: &x86::Cpu) -> St {
    let s = &cpu.state;
    let mut st = St::zero();
    for i in 0..8 {
        st.gpr[i] = s.gpr[i] & 0xffff_ffff;
    }
    st.flags = s.rflags;
    st.xmm = s.fpu.xmm;
    for (k, seg) in s.segs.iter().enumerate() {
        st.sregs[k] = seg.selector;
    }
    st
}

impl Mode for Low {
    fn build(&mut self, rng: &mut Rng, len: usize, sse: bool) -> Case {
        let bits = self.bits;
        // Segment registers: SS flat, or based at LDATA with a 16- or
        // 32-bit stack; in 16-bit code ES/FS vary too.
        let (ss_s, es_s, fs_s) = if bits == 32 {
            let ss_v = match rng.below(8) {
                0 => SEL_DATA16,
                1 => SEL_DATA32,
                _ => SEL_USER_DS,
            };
            (ss_v, SEL_USER_DS, SEL_DATA16)
        } else {
            let ss_v = if rng.below(5) == 0 {
                SEL_DATA32
            } else {
                SEL_DATA16
            };
            let es_v = if rng.below(4) == 0 {
                SEL_DATA32
            } else {
                SEL_DATA16
            };
            let fs_v = match rng.below(10) {
                0 => sel(5),
                1 => sel(6),
                _ => SEL_DATA16,
            };
            (ss_v, es_v, fs_v)
        };
        // DS and ES flat or based at LDATA (32-bit code), 16- or 32-bit
        // (16-bit code).
        let ds_s = match (bits, rng.below(4)) {
            (32, 0) => SEL_DATA32,
            (32, _) => SEL_USER_DS,
            (_, 0) => SEL_DATA32,
            _ => SEL_DATA16,
        };
        let es_s = if bits == 32 && rng.below(4) == 0 {
            SEL_DATA32
        } else {
            es_s
        };
        // 32-bit code in the flat user code segment, or in one based at
        // LCODE.
        let code_sel = match (bits, rng.below(5)) {
            (32, 0) => SEL_CODE32,
            (32, _) => SEL_USER32_CS,
            _ => SEL_CODE16,
        };
        let sregs = [es_s, code_sel, ss_s, ds_s, fs_s, SEL_STATE];
        let ctx = Ctx {
            bits,
            sse,
            ss_data: ss_s != SEL_USER_DS,
            ss_big: ss_s != SEL_DATA16,
            ds_abs: if ds_s == SEL_USER_DS { LDATA } else { 0 },
            es_abs: if es_s == SEL_USER_DS { LDATA } else { 0 },
            es_sel: es_s,
            cs_abs: ip_of(code_sel, 0),
        };
        let ip = ip_of(code_sel, SEQ);
        let mut s = CodeAssembler::new(bits).unwrap();
        for _ in 0..len {
            // A rare generator mismatch (e.g. an invalid operand
            // combination) simply yields no instruction.
            let _ = gen_one(&mut s, rng, &ctx);
        }
        s.nop().unwrap();
        let seq = s.assemble(ip).expect("assemble sequence");
        let end = ip + seq.len() as u64;
        let epi = self.epilogue(end).unwrap();
        let mut code = self.template.clone();
        let pro = &self.prologues.iter().find(|p| p.0 == code_sel).unwrap().1;
        code[PRO as usize..PRO as usize + pro.len()].copy_from_slice(pro);
        let o = SEQ as usize;
        assert!(
            o + seq.len() + epi.len() <= STUB_BASE as usize,
            "sequence too long"
        );
        code[o..o + seq.len()].copy_from_slice(&seq);
        code[o + seq.len()..o + seq.len() + epi.len()].copy_from_slice(&epi);
        Case {
            code,
            bits,
            seq_off: o,
            seq_len: seq.len(),
            ip,
            end,
            sregs,
        }
    }

    fn start(&mut self, rng: &mut Rng, case: &Case) -> (St, Vec<u8>) {
        let mut st = St::zero();
        for i in [0, 1, 2, 3, 5, 6, 7] {
            st.gpr[i] = rng.value() & 0xffff_ffff;
        }
        let ss_s = case.sregs[2];
        let off = (0x8000 + rng.below(0x4000)) & !(rng.below(2) * 3);
        st.gpr[4] = if ss_s == SEL_USER_DS {
            LDATA + off
        } else if ss_s == SEL_DATA16 {
            // A 16-bit stack: anywhere in the segment (SP wraps), the
            // upper half of ESP kept.
            let spv = if rng.below(4) == 0 {
                rng.below(0x10000)
            } else {
                off
            };
            spv | (rng.below(2) * rng.next()) << 16 & 0xffff_0000
        } else {
            off
        };
        let mut f = 0x202 | (rng.value() & (STATUS | DF));
        if rng.below(4) == 0 {
            f |= 0x20_0000; // ID
        }
        if rng.below(16) == 0 {
            f |= 0x4_0000; // AC: alignment checks (CR0.AM is set)
        }
        if rng.below(16) == 0 {
            f |= 0x4000; // NT
        }
        st.flags = f;
        st.sregs = case.sregs;
        for x in st.xmm.iter_mut() {
            x[..8].copy_from_slice(&rng.value().to_le_bytes());
            x[8..].copy_from_slice(&rng.value().to_le_bytes());
        }
        let mut data = vec![0u8; DATA_LEN];
        for c in data.chunks_mut(8) {
            c.copy_from_slice(&rng.next().to_le_bytes()[..c.len()]);
        }
        (st, data)
    }

    fn native(&mut self, case: &Case, st: &St, data: &[u8]) -> Outcome {
        self.code.bytes().copy_from_slice(&case.code);
        let state = self.state_page(st);
        self.state.bytes().copy_from_slice(&state);
        self.data.bytes().copy_from_slice(data);
        match native::run(LCODE + PRO64) {
            Ok(()) => {
                let d = self.state.bytes().to_vec();
                let u32_at =
                    |o: u64| u32::from_le_bytes(d[o as usize..o as usize + 4].try_into().unwrap());
                let mut s = St::zero();
                for i in 0..8 {
                    s.gpr[i] = u32_at(OUT + 4 * i as u64) as u64;
                }
                s.flags = u32_at(OUT + O_FLAGS) as u64;
                for k in 0..6 {
                    let o = (OUT + O_SREGS) as usize + 2 * k;
                    s.sregs[k] = u16::from_le_bytes([d[o], d[o + 1]]);
                }
                s.sregs[1] = case.sregs[1];
                for (i, x) in s.xmm.iter_mut().enumerate() {
                    let o = (OUT + O_XMM) as usize + 16 * i;
                    x.copy_from_slice(&d[o..o + 16]);
                }
                Outcome::Done(s, self.data.bytes().to_vec())
            }
            Err(e) => Outcome::Fault(e),
        }
    }

    fn variants(&self) -> &'static [&'static str] {
        &[
            "protected mode, stepped",
            "protected mode, in blocks",
            "compatibility mode, stepped",
            "compatibility mode, in blocks",
            "legacy protected mode, JIT (translated at once)",
            "compatibility mode, JIT (translated at once)",
        ]
    }

    fn interp(&self, case: &Case, st: &St, data: &[u8], variant: usize, rng: &mut Rng) -> Outcome {
        // 0..3: (legacy, compat) x (stepped, blocks); 4, 5: the JIT.
        let jit = variant >= 4;
        let compat = if jit { variant == 5 } else { variant >= 2 };
        let blocks = jit || variant & 1 == 1;
        let end = case.end;
        let cs_sel = case.sregs[1];
        crate::clear_log();
        let mut cpu = x86::Cpu::new(self.cpu_state(st, case.ip, compat, rng));
        if jit {
            crate::jit_on(&mut cpu);
        }
        let state = self.state_page(st);
        let base = ip_of(cs_sel, 0);
        let code = if blocks {
            let mut code = case.code.clone();
            code[(end - base) as usize] = 0xcc;
            code
        } else {
            case.code.clone()
        };
        let mut bus = self.guest_bus(&code, &state, data, compat);
        let at_end = |cpu: &x86::Cpu| cpu.state.rip == end && cpu.state.segs[1].selector == cs_sel;
        let done = |cpu: &x86::Cpu, bus: &TestBus| {
            let d = &bus.ram[P_DATA as usize..P_DATA as usize + DATA_LEN];
            Outcome::Done(final_st(cpu), d.to_vec())
        };
        if blocks {
            cpu.debug_int3 = true;
            let r = cpu.run(&mut bus, 100_000);
            if r != ExitReason::Debug(DebugStop::Breakpoint) || !at_end(&cpu) {
                crate::note_fault(cpu.state.rip);
                return Outcome::Fault(format!(
                    "{r:?} at {:#x}:{:#x} ({})",
                    cpu.state.segs[1].selector,
                    cpu.state.rip,
                    crate::first_exception()
                ));
            }
            return done(&cpu, &bus);
        }
        for _ in 0..10_000 {
            if at_end(&cpu) {
                return done(&cpu, &bus);
            }
            if let StepResult::Exit(e) = cpu.step(&mut bus) {
                crate::note_fault(cpu.state.rip);
                return Outcome::Fault(format!(
                    "{e:?} at {:#x}:{:#x} ({})",
                    cpu.state.segs[1].selector,
                    cpu.state.rip,
                    crate::first_exception()
                ));
            }
        }
        Outcome::Fault(format!("did not reach the end (rip {:#x})", cpu.state.rip))
    }

    fn gprs(&self) -> (&'static [usize], u64) {
        (&[0, 1, 2, 3, 4, 5, 6, 7], 0xffff_ffff)
    }

    /// Status flags, DF, and what POPF at CPL 3 may or may not change: IF,
    /// IOPL, NT, AC, ID.
    fn flags_mask(&self) -> u64 {
        STATUS | DF | 0x200 | 0x3000 | 0x4000 | 0x4_0000 | 0x20_0000
    }

    fn truncate(&self, case: &Case, len: usize) -> Option<Case> {
        let end = case.ip + len as u64;
        let epi = self.epilogue(end).ok()?;
        let mut code = case.code.clone();
        let o = case.seq_off;
        code[o + len..o + len + epi.len()].copy_from_slice(&epi);
        Some(Case {
            code,
            seq_len: len,
            end,
            sregs: case.sregs,
            ..*case
        })
    }

    fn mem_name(&self, off: usize) -> String {
        format!("[{:#x}] (data area + {off:#x})", LDATA + off as u64)
    }
}
