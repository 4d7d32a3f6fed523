//! The CPU as gdb sees it: one fixed register file and its target
//! description XML, whatever mode the guest is in.
//!
//! gdb fixes the size of the `g` packet from the target description it
//! reads when it connects, so the layout here never changes: the CPU is
//! always described as `i386:x86-64`, with 64-bit general registers, and
//! the 16- and 32-bit views are the low halves of those.
//!
//! Addresses are **linear** in every mode: the `rip` register is reported
//! as `CS.base + rIP` (the address the instruction is fetched from, before
//! paging), so that a breakpoint at `0xfffffff0` matches the first
//! instruction after reset (CS base `0xffff0000`, IP `0xfff0`). Writing
//! `rip` translates back (`rIP = value - CS.base`). In 64-bit mode the CS
//! base is 0 and `rip` is simply RIP.
//!
//! Register numbers (the `p`/`P` packets) follow [`REGS`]; the `g` packet is
//! their concatenation, little-endian.

use crate::consts::{cr0, rflags, seg_attr};
use crate::state::{gpr, CpuMode, CpuState, SegReg, Segment};

/// What a register holds, for reading and writing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A general register, by [`gpr`] index.
    Gpr(usize),
    /// The linear program counter.
    Pc,
    Eflags,
    /// A segment selector.
    Sel(SegReg),
    /// An x87 data register ST(i), 80 bits.
    St(usize),
    Fctrl,
    Fstat,
    Ftag,
    Fiseg,
    Fioff,
    Foseg,
    Fooff,
    Fop,
    Xmm(usize),
    Mxcsr,
    /// The hidden base of a segment register.
    SegBase(SegReg),
    KGsBase,
    Cr0,
    Cr2,
    Cr3,
    Cr4,
    Cr8,
    Efer,
    GdtrBase,
    GdtrLimit,
    IdtrBase,
    IdtrLimit,
}

/// One register of the gdb register file.
#[derive(Clone, Copy, Debug)]
pub struct RegInfo {
    pub name: &'static str,
    /// Size in bytes.
    pub size: usize,
    kind: Kind,
}

const fn r(name: &'static str, size: usize, kind: Kind) -> RegInfo {
    RegInfo { name, size, kind }
}

/// The register file in gdb's numbering (the order of the target XML).
pub const REGS: [RegInfo; 74] = [
    r("rax", 8, Kind::Gpr(gpr::RAX)),
    r("rbx", 8, Kind::Gpr(gpr::RBX)),
    r("rcx", 8, Kind::Gpr(gpr::RCX)),
    r("rdx", 8, Kind::Gpr(gpr::RDX)),
    r("rsi", 8, Kind::Gpr(gpr::RSI)),
    r("rdi", 8, Kind::Gpr(gpr::RDI)),
    r("rbp", 8, Kind::Gpr(gpr::RBP)),
    r("rsp", 8, Kind::Gpr(gpr::RSP)),
    r("r8", 8, Kind::Gpr(gpr::R8)),
    r("r9", 8, Kind::Gpr(gpr::R9)),
    r("r10", 8, Kind::Gpr(gpr::R10)),
    r("r11", 8, Kind::Gpr(gpr::R11)),
    r("r12", 8, Kind::Gpr(gpr::R12)),
    r("r13", 8, Kind::Gpr(gpr::R13)),
    r("r14", 8, Kind::Gpr(gpr::R14)),
    r("r15", 8, Kind::Gpr(gpr::R15)),
    r("rip", 8, Kind::Pc),
    r("eflags", 4, Kind::Eflags),
    r("cs", 4, Kind::Sel(SegReg::Cs)),
    r("ss", 4, Kind::Sel(SegReg::Ss)),
    r("ds", 4, Kind::Sel(SegReg::Ds)),
    r("es", 4, Kind::Sel(SegReg::Es)),
    r("fs", 4, Kind::Sel(SegReg::Fs)),
    r("gs", 4, Kind::Sel(SegReg::Gs)),
    r("st0", 10, Kind::St(0)),
    r("st1", 10, Kind::St(1)),
    r("st2", 10, Kind::St(2)),
    r("st3", 10, Kind::St(3)),
    r("st4", 10, Kind::St(4)),
    r("st5", 10, Kind::St(5)),
    r("st6", 10, Kind::St(6)),
    r("st7", 10, Kind::St(7)),
    r("fctrl", 4, Kind::Fctrl),
    r("fstat", 4, Kind::Fstat),
    r("ftag", 4, Kind::Ftag),
    r("fiseg", 4, Kind::Fiseg),
    r("fioff", 4, Kind::Fioff),
    r("foseg", 4, Kind::Foseg),
    r("fooff", 4, Kind::Fooff),
    r("fop", 4, Kind::Fop),
    r("xmm0", 16, Kind::Xmm(0)),
    r("xmm1", 16, Kind::Xmm(1)),
    r("xmm2", 16, Kind::Xmm(2)),
    r("xmm3", 16, Kind::Xmm(3)),
    r("xmm4", 16, Kind::Xmm(4)),
    r("xmm5", 16, Kind::Xmm(5)),
    r("xmm6", 16, Kind::Xmm(6)),
    r("xmm7", 16, Kind::Xmm(7)),
    r("xmm8", 16, Kind::Xmm(8)),
    r("xmm9", 16, Kind::Xmm(9)),
    r("xmm10", 16, Kind::Xmm(10)),
    r("xmm11", 16, Kind::Xmm(11)),
    r("xmm12", 16, Kind::Xmm(12)),
    r("xmm13", 16, Kind::Xmm(13)),
    r("xmm14", 16, Kind::Xmm(14)),
    r("xmm15", 16, Kind::Xmm(15)),
    r("mxcsr", 4, Kind::Mxcsr),
    r("fs_base", 8, Kind::SegBase(SegReg::Fs)),
    r("gs_base", 8, Kind::SegBase(SegReg::Gs)),
    r("k_gs_base", 8, Kind::KGsBase),
    r("cr0", 8, Kind::Cr0),
    r("cr2", 8, Kind::Cr2),
    r("cr3", 8, Kind::Cr3),
    r("cr4", 8, Kind::Cr4),
    r("cr8", 8, Kind::Cr8),
    r("efer", 8, Kind::Efer),
    r("es_base", 8, Kind::SegBase(SegReg::Es)),
    r("cs_base", 8, Kind::SegBase(SegReg::Cs)),
    r("ss_base", 8, Kind::SegBase(SegReg::Ss)),
    r("ds_base", 8, Kind::SegBase(SegReg::Ds)),
    r("gdtr_base", 8, Kind::GdtrBase),
    r("gdtr_limit", 4, Kind::GdtrLimit),
    r("idtr_base", 8, Kind::IdtrBase),
    r("idtr_limit", 4, Kind::IdtrLimit),
];

/// Number of registers.
pub const NUM_REGS: usize = REGS.len();

/// Register number `n`.
pub fn reg(n: usize) -> Option<&'static RegInfo> {
    REGS.get(n)
}

/// The register numbered `n` by name (`rip` is 16).
pub fn reg_number(name: &str) -> Option<usize> {
    (0..NUM_REGS).find(|&n| reg(n).is_some_and(|r| r.name == name))
}

/// Byte size of the whole register file (the `g` packet).
pub const fn g_size() -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < REGS.len() {
        n += REGS[i].size;
        i += 1;
    }
    n
}

/// Byte offset of register `n` in the `g` packet.
pub fn offset_of(n: usize) -> Option<usize> {
    reg(n)?;
    Some((0..n).filter_map(reg).map(|r| r.size).sum())
}

/// The program counter as gdb sees it: the linear address of the next
/// instruction (`CS.base + rIP`, 32 bits wide outside long mode).
pub fn pc(st: &CpuState) -> u64 {
    st.linear_pc()
}

/// Sets the program counter from a linear address (the inverse of [`pc`]).
/// In real and virtual-8086 mode an address outside the current code
/// segment's 64 KiB reloads CS (selector `(addr >> 4) & 0xf000`).
pub fn set_pc(st: &mut CpuState, lin: u64) -> Result<(), RegError> {
    match st.mode() {
        CpuMode::Long64 => st.rip = lin,
        CpuMode::Real | CpuMode::Virtual8086 => {
            let base = st.seg(SegReg::Cs).base;
            let off = lin.wrapping_sub(base) & 0xffff_ffff;
            if off <= 0xffff {
                st.rip = off;
            } else if lin < 0x11_0000 {
                let sel = ((lin >> 4) & 0xf000) as u16;
                let cs = st.seg_mut(SegReg::Cs);
                cs.selector = sel;
                cs.base = (sel as u64) << 4;
                st.rip = lin - ((sel as u64) << 4);
            } else {
                return Err(RegError::Invalid(format!(
                    "{lin:#x} is not reachable from real mode (CS base {base:#x})"
                )));
            }
        }
        _ => {
            let base = st.seg(SegReg::Cs).base;
            st.rip = lin.wrapping_sub(base) & 0xffff_ffff;
        }
    }
    Ok(())
}

/// Why a register write was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegError {
    /// No such register number.
    NoSuchRegister(usize),
    /// The value has the wrong size.
    BadSize {
        reg: &'static str,
        want: usize,
        got: usize,
    },
    /// The value is not acceptable (e.g. a selector whose descriptor
    /// cannot be read).
    Invalid(String),
}

impl std::fmt::Display for RegError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegError::NoSuchRegister(n) => write!(f, "no register number {n}"),
            RegError::BadSize { reg, want, got } => {
                write!(f, "{reg}: {got} bytes given, {want} expected")
            }
            RegError::Invalid(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for RegError {}

/// The full 16-bit x87 tag word (2 bits per physical register) from the
/// abridged FXSAVE tag byte and the register contents.
fn full_tag(st: &CpuState) -> u16 {
    let top = ((st.fpu.fsw >> 11) & 7) as usize;
    let mut tag = 0u16;
    for phys in 0..8 {
        let t = if st.fpu.ftw & (1 << phys) == 0 {
            3 // empty
        } else {
            let v = &st.fpu.st[(phys + 8 - top) % 8];
            let exp = u16::from_le_bytes([v[8], v[9]]) & 0x7fff;
            let mant = u64::from_le_bytes([v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]]);
            if exp == 0x7fff || (exp != 0 && mant >> 63 == 0) || (exp == 0 && mant != 0) {
                2 // special
            } else if exp == 0 {
                1 // zero
            } else {
                0 // valid
            }
        };
        tag |= t << (phys * 2);
    }
    tag
}

/// The abridged tag byte from a full tag word.
fn abridged_tag(full: u16) -> u8 {
    let mut t = 0u8;
    for phys in 0..8 {
        if (full >> (phys * 2)) & 3 != 3 {
            t |= 1 << phys;
        }
    }
    t
}

/// Appends register `n`'s current value (little-endian) to `out`.
pub fn read_reg(st: &CpuState, n: usize, out: &mut Vec<u8>) -> Result<(), RegError> {
    let info = reg(n).ok_or(RegError::NoSuchRegister(n))?;
    let u64v = |out: &mut Vec<u8>, v: u64| out.extend_from_slice(&v.to_le_bytes());
    let u32v = |out: &mut Vec<u8>, v: u32| out.extend_from_slice(&v.to_le_bytes());
    match info.kind {
        Kind::Gpr(i) => u64v(out, st.gpr[i]),
        Kind::Pc => u64v(out, pc(st)),
        Kind::Eflags => u32v(out, st.rflags as u32),
        Kind::Sel(s) => u32v(out, st.seg(s).selector as u32),
        Kind::St(i) => out.extend_from_slice(&st.fpu.st[i][..10]),
        Kind::Fctrl => u32v(out, st.fpu.fcw as u32),
        Kind::Fstat => u32v(out, st.fpu.fsw as u32),
        Kind::Ftag => u32v(out, full_tag(st) as u32),
        Kind::Fiseg => u32v(out, ((st.fpu.fip >> 32) & 0xffff) as u32),
        Kind::Fioff => u32v(out, st.fpu.fip as u32),
        Kind::Foseg => u32v(out, ((st.fpu.fdp >> 32) & 0xffff) as u32),
        Kind::Fooff => u32v(out, st.fpu.fdp as u32),
        Kind::Fop => u32v(out, st.fpu.fop as u32 & 0x7ff),
        Kind::Xmm(i) => out.extend_from_slice(&st.fpu.xmm[i]),
        Kind::Mxcsr => u32v(out, st.fpu.mxcsr),
        Kind::SegBase(s) => u64v(out, st.seg(s).base),
        Kind::KGsBase => u64v(out, st.msr.kernel_gs_base),
        Kind::Cr0 => u64v(out, st.cr0),
        Kind::Cr2 => u64v(out, st.cr2),
        Kind::Cr3 => u64v(out, st.cr3),
        Kind::Cr4 => u64v(out, st.cr4),
        Kind::Cr8 => u64v(out, st.cr8),
        Kind::Efer => u64v(out, st.efer),
        Kind::GdtrBase => u64v(out, st.gdtr.base),
        Kind::GdtrLimit => u32v(out, st.gdtr.limit as u32),
        Kind::IdtrBase => u64v(out, st.idtr.base),
        Kind::IdtrLimit => u32v(out, st.idtr.limit as u32),
    }
    Ok(())
}

/// The whole register file (the `g` packet's bytes).
pub fn read_all(st: &CpuState) -> Vec<u8> {
    let mut out = Vec::with_capacity(g_size());
    for n in 0..NUM_REGS {
        // Every number below NUM_REGS exists.
        let _ = read_reg(st, n, &mut out);
    }
    out
}

/// Reads guest memory at a linear address for descriptor loads; returns
/// false when the address cannot be read.
pub type LinearReader<'a> = &'a mut dyn FnMut(u64, &mut [u8]) -> bool;

/// Loads a segment register from `sel` as `MOV Sreg` would in the current
/// mode (without the privilege checks): real/v8086 mode computes the base,
/// protected mode reads the descriptor from the GDT or LDT.
fn load_segment(
    st: &mut CpuState,
    s: SegReg,
    sel: u16,
    read: LinearReader<'_>,
) -> Result<(), RegError> {
    match st.mode() {
        CpuMode::Real | CpuMode::Virtual8086 => {
            let old = *st.seg(s);
            let mut seg = Segment::real_mode(sel, s == SegReg::Cs);
            if st.mode() == CpuMode::Real {
                // Real mode keeps the hidden limit and attributes (unreal mode).
                seg.limit = old.limit;
                seg.attr = old.attr;
            }
            *st.seg_mut(s) = seg;
            Ok(())
        }
        _ => {
            if sel & !3 == 0 {
                if matches!(s, SegReg::Cs) || (s == SegReg::Ss && st.mode() != CpuMode::Long64) {
                    return Err(RegError::Invalid(format!(
                        "{}: a null selector cannot be loaded here",
                        s.name()
                    )));
                }
                let seg = st.seg_mut(s);
                seg.selector = sel;
                seg.attr &= !seg_attr::P;
                return Ok(());
            }
            let (base, limit) = if sel & 4 != 0 {
                if st.ldtr.attr & seg_attr::P == 0 {
                    return Err(RegError::Invalid(format!(
                        "{}={sel:#x}: the selector points into the LDT and there is none",
                        s.name()
                    )));
                }
                (st.ldtr.base, st.ldtr.limit as u64)
            } else {
                (st.gdtr.base, st.gdtr.limit as u64)
            };
            let off = (sel & !7) as u64;
            if off + 7 > limit {
                return Err(RegError::Invalid(format!(
                    "{}={sel:#x}: beyond the descriptor table limit {limit:#x}",
                    s.name()
                )));
            }
            let mut b = [0u8; 8];
            if !read(base.wrapping_add(off), &mut b) {
                return Err(RegError::Invalid(format!(
                    "{}={sel:#x}: the descriptor at {:#x} cannot be read",
                    s.name(),
                    base.wrapping_add(off)
                )));
            }
            let seg = Segment::from_descriptor(sel, u64::from_le_bytes(b));
            if seg.attr & seg_attr::S == 0 || !seg.present() {
                return Err(RegError::Invalid(format!(
                    "{}={sel:#x}: not a present code or data descriptor",
                    s.name()
                )));
            }
            if s == SegReg::Cs && !seg.is_code() {
                return Err(RegError::Invalid(format!(
                    "cs={sel:#x}: not a code descriptor"
                )));
            }
            // In 64-bit mode FS and GS keep their 64-bit bases.
            let keep_base = st.mode() == CpuMode::Long64 && matches!(s, SegReg::Fs | SegReg::Gs);
            let old_base = st.seg(s).base;
            let pc = pc(st);
            *st.seg_mut(s) = seg;
            if keep_base {
                st.seg_mut(s).base = old_base;
            }
            if s == SegReg::Cs {
                // Keep the linear program counter where it was.
                let _ = set_pc(st, pc);
            }
            Ok(())
        }
    }
}

fn le_u64(b: &[u8]) -> u64 {
    let mut v = [0u8; 8];
    v[..b.len().min(8)].copy_from_slice(&b[..b.len().min(8)]);
    u64::from_le_bytes(v)
}

/// Writes register `n` from `val` (exactly the register's size,
/// little-endian). `read` reads guest memory at linear addresses (for
/// segment descriptors).
pub fn write_reg(
    st: &mut CpuState,
    n: usize,
    val: &[u8],
    read: LinearReader<'_>,
) -> Result<(), RegError> {
    let info = reg(n).ok_or(RegError::NoSuchRegister(n))?;
    if val.len() != info.size {
        return Err(RegError::BadSize {
            reg: info.name,
            want: info.size,
            got: val.len(),
        });
    }
    let v = le_u64(val);
    match info.kind {
        Kind::Gpr(i) => st.gpr[i] = v,
        Kind::Pc => set_pc(st, v)?,
        Kind::Eflags => {
            st.rflags = (st.rflags & !0xffff_ffff) | (v & 0x003f_7fd5) | rflags::FIXED1;
        }
        Kind::Sel(s) => {
            let sel = v as u16;
            if v > 0xffff {
                return Err(RegError::Invalid(format!(
                    "{}: {v:#x} is not a selector",
                    s.name()
                )));
            }
            if sel != st.seg(s).selector {
                load_segment(st, s, sel, read)?;
            }
        }
        Kind::St(i) => st.fpu.st[i][..10].copy_from_slice(val),
        Kind::Fctrl => st.fpu.fcw = v as u16,
        Kind::Fstat => st.fpu.fsw = v as u16,
        Kind::Ftag => st.fpu.ftw = abridged_tag(v as u16),
        Kind::Fiseg => st.fpu.fip = (st.fpu.fip & 0xffff_ffff) | ((v & 0xffff) << 32),
        Kind::Fioff => st.fpu.fip = (st.fpu.fip & !0xffff_ffff) | (v & 0xffff_ffff),
        Kind::Foseg => st.fpu.fdp = (st.fpu.fdp & 0xffff_ffff) | ((v & 0xffff) << 32),
        Kind::Fooff => st.fpu.fdp = (st.fpu.fdp & !0xffff_ffff) | (v & 0xffff_ffff),
        Kind::Fop => st.fpu.fop = (v & 0x7ff) as u16,
        Kind::Xmm(i) => st.fpu.xmm[i].copy_from_slice(val),
        Kind::Mxcsr => st.fpu.mxcsr = v as u32,
        // A new CS base moves the linear pc (rIP is kept).
        Kind::SegBase(s) => st.seg_mut(s).base = v,
        Kind::KGsBase => st.msr.kernel_gs_base = v,
        Kind::Cr0 => {
            if v >> 32 != 0 {
                return Err(RegError::Invalid(format!(
                    "cr0: {v:#x}: bits 63:32 are reserved"
                )));
            }
            if v & cr0::PG != 0 && v & cr0::PE == 0 {
                return Err(RegError::Invalid(format!("cr0: {v:#x}: PG without PE")));
            }
            st.cr0 = v;
        }
        Kind::Cr2 => st.cr2 = v,
        Kind::Cr3 => st.cr3 = v,
        Kind::Cr4 => st.cr4 = v,
        Kind::Cr8 => {
            if v > 15 {
                return Err(RegError::Invalid(format!("cr8: {v:#x}: only 0..15")));
            }
            st.cr8 = v;
        }
        Kind::Efer => st.efer = v,
        Kind::GdtrBase => st.gdtr.base = v,
        Kind::GdtrLimit => st.gdtr.limit = v as u16,
        Kind::IdtrBase => st.idtr.base = v,
        Kind::IdtrLimit => st.idtr.limit = v as u16,
    }
    Ok(())
}

/// Writes the whole register file (a `G` packet). Only registers whose
/// value differs from the current one are written, in the order of
/// [`REGS`], so that an unchanged segment selector is not reloaded.
/// Nothing is changed when any write fails.
pub fn write_all(st: &mut CpuState, bytes: &[u8], read: LinearReader<'_>) -> Result<(), RegError> {
    if bytes.len() != g_size() {
        return Err(RegError::BadSize {
            reg: "(all registers)",
            want: g_size(),
            got: bytes.len(),
        });
    }
    let mut new = *st;
    let mut off = 0;
    let mut cur = Vec::with_capacity(16);
    for n in 0..NUM_REGS {
        let size = reg(n).map_or(0, |r| r.size);
        let val = &bytes[off..off + size];
        off += size;
        cur.clear();
        read_reg(&new, n, &mut cur)?;
        if cur != val {
            write_reg(&mut new, n, val, read)?;
        }
    }
    *st = new;
    Ok(())
}

/// The target description: `i386:x86-64` with the standard core, SSE and
/// segment-base features and an hx86 feature for the system registers.
pub const TARGET_XML: &str = r#"<?xml version="1.0"?>
<!DOCTYPE target SYSTEM "gdb-target.dtd">
<target version="1.0">
<architecture>i386:x86-64</architecture>
<feature name="org.gnu.gdb.i386.core">
  <flags id="i386_eflags" size="4">
    <field name="CF" start="0" end="0"/>
    <field name="" start="1" end="1"/>
    <field name="PF" start="2" end="2"/>
    <field name="AF" start="4" end="4"/>
    <field name="ZF" start="6" end="6"/>
    <field name="SF" start="7" end="7"/>
    <field name="TF" start="8" end="8"/>
    <field name="IF" start="9" end="9"/>
    <field name="DF" start="10" end="10"/>
    <field name="OF" start="11" end="11"/>
    <field name="NT" start="14" end="14"/>
    <field name="RF" start="16" end="16"/>
    <field name="VM" start="17" end="17"/>
    <field name="AC" start="18" end="18"/>
    <field name="VIF" start="19" end="19"/>
    <field name="VIP" start="20" end="20"/>
    <field name="ID" start="21" end="21"/>
  </flags>
  <reg name="rax" bitsize="64" type="int64" regnum="0"/>
  <reg name="rbx" bitsize="64" type="int64"/>
  <reg name="rcx" bitsize="64" type="int64"/>
  <reg name="rdx" bitsize="64" type="int64"/>
  <reg name="rsi" bitsize="64" type="int64"/>
  <reg name="rdi" bitsize="64" type="int64"/>
  <reg name="rbp" bitsize="64" type="data_ptr"/>
  <reg name="rsp" bitsize="64" type="data_ptr"/>
  <reg name="r8" bitsize="64" type="int64"/>
  <reg name="r9" bitsize="64" type="int64"/>
  <reg name="r10" bitsize="64" type="int64"/>
  <reg name="r11" bitsize="64" type="int64"/>
  <reg name="r12" bitsize="64" type="int64"/>
  <reg name="r13" bitsize="64" type="int64"/>
  <reg name="r14" bitsize="64" type="int64"/>
  <reg name="r15" bitsize="64" type="int64"/>
  <reg name="rip" bitsize="64" type="code_ptr"/>
  <reg name="eflags" bitsize="32" type="i386_eflags"/>
  <reg name="cs" bitsize="32" type="int32"/>
  <reg name="ss" bitsize="32" type="int32"/>
  <reg name="ds" bitsize="32" type="int32"/>
  <reg name="es" bitsize="32" type="int32"/>
  <reg name="fs" bitsize="32" type="int32"/>
  <reg name="gs" bitsize="32" type="int32"/>
  <reg name="st0" bitsize="80" type="i387_ext"/>
  <reg name="st1" bitsize="80" type="i387_ext"/>
  <reg name="st2" bitsize="80" type="i387_ext"/>
  <reg name="st3" bitsize="80" type="i387_ext"/>
  <reg name="st4" bitsize="80" type="i387_ext"/>
  <reg name="st5" bitsize="80" type="i387_ext"/>
  <reg name="st6" bitsize="80" type="i387_ext"/>
  <reg name="st7" bitsize="80" type="i387_ext"/>
  <reg name="fctrl" bitsize="32" type="int" group="float"/>
  <reg name="fstat" bitsize="32" type="int" group="float"/>
  <reg name="ftag" bitsize="32" type="int" group="float"/>
  <reg name="fiseg" bitsize="32" type="int" group="float"/>
  <reg name="fioff" bitsize="32" type="int" group="float"/>
  <reg name="foseg" bitsize="32" type="int" group="float"/>
  <reg name="fooff" bitsize="32" type="int" group="float"/>
  <reg name="fop" bitsize="32" type="int" group="float"/>
</feature>
<feature name="org.gnu.gdb.i386.sse">
  <vector id="v8bf16" type="bfloat16" count="8"/>
  <vector id="v4f" type="ieee_single" count="4"/>
  <vector id="v2d" type="ieee_double" count="2"/>
  <vector id="v16i8" type="int8" count="16"/>
  <vector id="v8i16" type="int16" count="8"/>
  <vector id="v4i32" type="int32" count="4"/>
  <vector id="v2i64" type="int64" count="2"/>
  <union id="vec128">
    <field name="v8_bfloat16" type="v8bf16"/>
    <field name="v4_float" type="v4f"/>
    <field name="v2_double" type="v2d"/>
    <field name="v16_int8" type="v16i8"/>
    <field name="v8_int16" type="v8i16"/>
    <field name="v4_int32" type="v4i32"/>
    <field name="v2_int64" type="v2i64"/>
    <field name="uint128" type="uint128"/>
  </union>
  <flags id="i386_mxcsr" size="4">
    <field name="IE" start="0" end="0"/>
    <field name="DE" start="1" end="1"/>
    <field name="ZE" start="2" end="2"/>
    <field name="OE" start="3" end="3"/>
    <field name="UE" start="4" end="4"/>
    <field name="PE" start="5" end="5"/>
    <field name="DAZ" start="6" end="6"/>
    <field name="IM" start="7" end="7"/>
    <field name="DM" start="8" end="8"/>
    <field name="ZM" start="9" end="9"/>
    <field name="OM" start="10" end="10"/>
    <field name="UM" start="11" end="11"/>
    <field name="PM" start="12" end="12"/>
    <field name="FZ" start="15" end="15"/>
  </flags>
  <reg name="xmm0" bitsize="128" type="vec128"/>
  <reg name="xmm1" bitsize="128" type="vec128"/>
  <reg name="xmm2" bitsize="128" type="vec128"/>
  <reg name="xmm3" bitsize="128" type="vec128"/>
  <reg name="xmm4" bitsize="128" type="vec128"/>
  <reg name="xmm5" bitsize="128" type="vec128"/>
  <reg name="xmm6" bitsize="128" type="vec128"/>
  <reg name="xmm7" bitsize="128" type="vec128"/>
  <reg name="xmm8" bitsize="128" type="vec128"/>
  <reg name="xmm9" bitsize="128" type="vec128"/>
  <reg name="xmm10" bitsize="128" type="vec128"/>
  <reg name="xmm11" bitsize="128" type="vec128"/>
  <reg name="xmm12" bitsize="128" type="vec128"/>
  <reg name="xmm13" bitsize="128" type="vec128"/>
  <reg name="xmm14" bitsize="128" type="vec128"/>
  <reg name="xmm15" bitsize="128" type="vec128"/>
  <reg name="mxcsr" bitsize="32" type="i386_mxcsr" group="vector"/>
</feature>
<feature name="org.gnu.gdb.i386.segments">
  <reg name="fs_base" bitsize="64" type="int"/>
  <reg name="gs_base" bitsize="64" type="int"/>
</feature>
<feature name="org.hx86.gdb.i386.system">
  <flags id="hx86_cr0" size="8">
    <field name="PE" start="0" end="0"/>
    <field name="MP" start="1" end="1"/>
    <field name="EM" start="2" end="2"/>
    <field name="TS" start="3" end="3"/>
    <field name="ET" start="4" end="4"/>
    <field name="NE" start="5" end="5"/>
    <field name="WP" start="16" end="16"/>
    <field name="AM" start="18" end="18"/>
    <field name="NW" start="29" end="29"/>
    <field name="CD" start="30" end="30"/>
    <field name="PG" start="31" end="31"/>
  </flags>
  <flags id="hx86_cr4" size="8">
    <field name="VME" start="0" end="0"/>
    <field name="PVI" start="1" end="1"/>
    <field name="TSD" start="2" end="2"/>
    <field name="DE" start="3" end="3"/>
    <field name="PSE" start="4" end="4"/>
    <field name="PAE" start="5" end="5"/>
    <field name="MCE" start="6" end="6"/>
    <field name="PGE" start="7" end="7"/>
    <field name="PCE" start="8" end="8"/>
    <field name="OSFXSR" start="9" end="9"/>
    <field name="OSXMMEXCPT" start="10" end="10"/>
    <field name="UMIP" start="11" end="11"/>
    <field name="LA57" start="12" end="12"/>
    <field name="VMXE" start="13" end="13"/>
    <field name="SMXE" start="14" end="14"/>
    <field name="FSGSBASE" start="16" end="16"/>
    <field name="PCIDE" start="17" end="17"/>
    <field name="OSXSAVE" start="18" end="18"/>
    <field name="SMEP" start="20" end="20"/>
    <field name="SMAP" start="21" end="21"/>
    <field name="PKE" start="22" end="22"/>
  </flags>
  <flags id="hx86_efer" size="8">
    <field name="SCE" start="0" end="0"/>
    <field name="LME" start="8" end="8"/>
    <field name="LMA" start="10" end="10"/>
    <field name="NXE" start="11" end="11"/>
    <field name="SVME" start="12" end="12"/>
    <field name="LMSLE" start="13" end="13"/>
    <field name="FFXSR" start="14" end="14"/>
    <field name="TCE" start="15" end="15"/>
  </flags>
  <reg name="k_gs_base" bitsize="64" type="int"/>
  <reg name="cr0" bitsize="64" type="hx86_cr0"/>
  <reg name="cr2" bitsize="64" type="int"/>
  <reg name="cr3" bitsize="64" type="int"/>
  <reg name="cr4" bitsize="64" type="hx86_cr4"/>
  <reg name="cr8" bitsize="64" type="int"/>
  <reg name="efer" bitsize="64" type="hx86_efer"/>
  <reg name="es_base" bitsize="64" type="int" group="system"/>
  <reg name="cs_base" bitsize="64" type="int" group="system"/>
  <reg name="ss_base" bitsize="64" type="int" group="system"/>
  <reg name="ds_base" bitsize="64" type="int" group="system"/>
  <reg name="gdtr_base" bitsize="64" type="int" group="system"/>
  <reg name="gdtr_limit" bitsize="32" type="int" group="system"/>
  <reg name="idtr_base" bitsize="64" type="int" group="system"/>
  <reg name="idtr_limit" bitsize="32" type="int" group="system"/>
</feature>
</target>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn no_mem() -> impl FnMut(u64, &mut [u8]) -> bool {
        |_, _| false
    }

    #[test]
    fn layout_matches_the_xml() {
        // Every register of the XML, in order, with its size.
        let mut names = Vec::new();
        for line in TARGET_XML.lines() {
            let l = line.trim();
            if let Some(rest) = l.strip_prefix("<reg name=\"") {
                let name = &rest[..rest.find('"').unwrap()];
                let bits: usize = {
                    let b = &l[l.find("bitsize=\"").unwrap() + 9..];
                    b[..b.find('"').unwrap()].parse().unwrap()
                };
                names.push((name.to_string(), bits / 8));
            }
        }
        assert_eq!(names.len(), NUM_REGS);
        for (n, (name, size)) in names.iter().enumerate() {
            let r = reg(n).unwrap();
            assert_eq!((r.name, r.size), (name.as_str(), *size), "register {n}");
        }
        assert_eq!(read_all(&CpuState::reset()).len(), g_size());
        assert_eq!(reg_number("rip"), Some(16));
        assert_eq!(offset_of(16), Some(128));
    }

    #[test]
    fn real_mode_pc_is_linear_and_writes_translate_back() {
        let mut st = CpuState::reset();
        assert_eq!(pc(&st), 0xffff_fff0);
        let rip = reg_number("rip").unwrap();
        let mut v = Vec::new();
        read_reg(&st, rip, &mut v).unwrap();
        assert_eq!(v, 0xffff_fff0u64.to_le_bytes());
        write_reg(&mut st, rip, &0xffff_e000u64.to_le_bytes(), &mut no_mem()).unwrap();
        assert_eq!(st.rip, 0xe000);
        assert_eq!(st.seg(SegReg::Cs).selector, 0xf000);
        // Outside CS's 64 KiB: CS is reloaded.
        write_reg(&mut st, rip, &0x7c00u64.to_le_bytes(), &mut no_mem()).unwrap();
        assert_eq!((st.seg(SegReg::Cs).selector, st.rip), (0, 0x7c00));
        assert_eq!(pc(&st), 0x7c00);
        assert!(write_reg(&mut st, rip, &0x20_0000u64.to_le_bytes(), &mut no_mem()).is_err());
    }

    #[test]
    fn real_mode_selector_writes_set_the_base() {
        let mut st = CpuState::reset();
        let ds = reg_number("ds").unwrap();
        write_reg(&mut st, ds, &0x1234u32.to_le_bytes(), &mut no_mem()).unwrap();
        assert_eq!(st.seg(SegReg::Ds).base, 0x12340);
    }

    #[test]
    fn protected_mode_selector_writes_load_the_descriptor() {
        let mut st = CpuState::reset();
        st.cr0 |= cr0::PE;
        st.gdtr.base = 0x1000;
        st.gdtr.limit = 0x17;
        *st.seg_mut(SegReg::Cs) = Segment::from_descriptor(8, 0x00cf_9b00_0000_ffff);
        st.rip = 0x1000;
        let gdt: [u64; 3] = [0, 0x00cf_9b00_0000_ffff, 0x00cf_9300_0000_ffff];
        let mut mem = |a: u64, b: &mut [u8]| {
            if (0x1000..0x1018).contains(&a) && b.len() == 8 {
                b.copy_from_slice(&gdt[((a - 0x1000) / 8) as usize].to_le_bytes());
                true
            } else {
                false
            }
        };
        let ds = reg_number("ds").unwrap();
        write_reg(&mut st, ds, &0x10u32.to_le_bytes(), &mut mem).unwrap();
        assert_eq!(st.seg(SegReg::Ds).limit, 0xffff_ffff);
        assert!(st.seg(SegReg::Ds).present());
        // Beyond the limit, and a data descriptor in CS: refused, unchanged.
        assert!(write_reg(&mut st, ds, &0x18u32.to_le_bytes(), &mut mem).is_err());
        let cs = reg_number("cs").unwrap();
        assert!(write_reg(&mut st, cs, &0x10u32.to_le_bytes(), &mut mem).is_err());
        assert_eq!(st.seg(SegReg::Cs).selector, 8);
    }

    #[test]
    fn g_packet_round_trips_and_applies_changes_only() {
        let mut st = CpuState::reset();
        st.gpr[gpr::RBX] = 0x1122_3344_5566_7788;
        st.fpu.xmm[3] = [7; 16];
        let mut bytes = read_all(&st);
        let mut copy = st;
        write_all(&mut copy, &bytes, &mut no_mem()).unwrap();
        assert_eq!(copy, st);
        // Change RAX only.
        bytes[..8].copy_from_slice(&42u64.to_le_bytes());
        write_all(&mut copy, &bytes, &mut no_mem()).unwrap();
        assert_eq!(copy.gpr[gpr::RAX], 42);
        assert_eq!(copy.gpr[gpr::RBX], st.gpr[gpr::RBX]);
        assert!(write_all(&mut copy, &bytes[1..], &mut no_mem()).is_err());
    }

    #[test]
    fn x87_tag_word_round_trips() {
        let mut st = CpuState::reset();
        // TOP = 7, ST(0) = 1.0 (physical register 7).
        st.fpu.fsw = 7 << 11;
        st.fpu.ftw = 1 << 7;
        st.fpu.st[0][..10].copy_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x80, 0xff, 0x3f]);
        let t = full_tag(&st);
        assert_eq!(t, 0x3fff);
        assert_eq!(abridged_tag(t), 1 << 7);
    }

    #[test]
    fn bad_sizes_and_numbers_are_errors() {
        let mut st = CpuState::reset();
        assert!(matches!(
            write_reg(&mut st, 0, &[1, 2, 3], &mut no_mem()),
            Err(RegError::BadSize { .. })
        ));
        assert!(write_reg(&mut st, NUM_REGS, &[0; 8], &mut no_mem()).is_err());
        let mut v = Vec::new();
        assert!(read_reg(&st, 999, &mut v).is_err());
    }
}
