//! Native emitters, one per instruction family: MOV/MOVZX/MOVSX/LEA,
//! ALU (ADD OR ADC SBB AND SUB XOR CMP TEST), INC/DEC/NEG/NOT, SETcc,
//! CMOVcc, XCHG, sign extensions, and the control transfers (Jcc, JMP,
//! CALL, RET, PUSH, POP). Anything else (and any form these do not cover)
//! is a helper call into the interpreter.

use dynasmrt::{dynasm, DynasmApi, DynasmLabelApi};
use iced_x86::{ConditionCode, FlowControl, Instruction, Mnemonic as M, OpKind, Register};

use super::emit::{gpr_off, Acc, Fl, Tr, R10, R9, RIP, RSI, RSP_OFF};

/// How the instruction was emitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Emitted {
    /// Native code, falls through to the next instruction.
    Native,
    /// Native code that left the block itself.
    NativeExit,
    /// Not handled natively: the caller emits a helper call.
    Helper,
}

/// A guest GPR operand as (number 0..15, size in bytes, AH..BH).
pub(super) fn gpr_number(r: Register) -> Option<(usize, u32, bool)> {
    let n = r as usize;
    Some(match n {
        1..=4 => (n - 1, 1, false),
        5..=8 => (n - 5, 1, true),
        9..=20 => ((n - 5) & 15, 1, false),
        21..=36 => ((n - 21) & 15, 2, false),
        37..=52 => ((n - 37) & 15, 4, false),
        53..=68 => ((n - 53) & 15, 8, false),
        _ => return None,
    })
}

/// A guest GPR as (offset in `Cpu`, size in bytes).
fn greg(r: Register) -> Option<(i32, u32)> {
    let (n, size, high) = gpr_number(r)?;
    Some((gpr_off(n) + high as i32, size))
}

#[derive(Clone, Copy, Debug)]
enum Opd {
    Reg(i32, u32),
    Mem,
    Imm(u64),
}

fn opd(i: &Instruction, n: u32) -> Option<Opd> {
    match i.op_kind(n) {
        OpKind::Register => greg(i.op_register(n)).map(|(o, s)| Opd::Reg(o, s)),
        OpKind::Memory => Some(Opd::Mem),
        OpKind::Immediate8
        | OpKind::Immediate16
        | OpKind::Immediate32
        | OpKind::Immediate64
        | OpKind::Immediate8to16
        | OpKind::Immediate8to32
        | OpKind::Immediate8to64
        | OpKind::Immediate32to64 => Some(Opd::Imm(i.immediate(n))),
        _ => None,
    }
}

fn opd_size(i: &Instruction, o: Opd) -> u32 {
    match o {
        Opd::Reg(_, s) => s,
        _ => i.memory_size().size() as u32,
    }
}

// ---- raw encodings (host register numbers 0..15) -------------------------

fn prefixes(tr: &mut Tr, size: u32, reg: u8, rm: u8) {
    if size == 2 {
        tr.a.push(0x66);
    }
    let rex = 0x40 | (((size == 8) as u8) << 3) | (((reg >> 3) & 1) << 2) | ((rm >> 3) & 1);
    let byte_needs = size == 1 && ((4..8).contains(&reg) || (4..8).contains(&rm));
    if rex != 0x40 || byte_needs {
        tr.a.push(rex);
    }
}

fn modrm(tr: &mut Tr, reg: u8, rm: u8) {
    tr.a.push(0xc0 | ((reg & 7) << 3) | (rm & 7));
}

/// `op dst, src` for ALU op `/digit` (0 ADD .. 7 CMP).
fn alu_rr(tr: &mut Tr, op: u8, size: u32, dst: u8, src: u8) {
    prefixes(tr, size, src, dst);
    tr.a.push(op * 8 + (size != 1) as u8);
    modrm(tr, src, dst);
}

fn imm_bytes(tr: &mut Tr, size: u32, imm: u64) {
    match size {
        1 => tr.a.push(imm as u8),
        2 => tr.a.extend((imm as u16).to_le_bytes()),
        _ => tr.a.extend((imm as u32).to_le_bytes()),
    }
}

fn alu_ri(tr: &mut Tr, op: u8, size: u32, dst: u8, imm: u64) {
    prefixes(tr, size, 0, dst);
    let fits8 = match size {
        2 => imm as u16 as i16 as i8 as i16 == imm as u16 as i16,
        _ => imm as u32 as i32 as i8 as i32 == imm as u32 as i32,
    };
    if size == 1 {
        tr.a.push(0x80);
        modrm(tr, op, dst);
        tr.a.push(imm as u8);
    } else if fits8 {
        tr.a.push(0x83);
        modrm(tr, op, dst);
        tr.a.push(imm as u8);
    } else {
        tr.a.push(0x81);
        modrm(tr, op, dst);
        imm_bytes(tr, size, imm);
    }
}

fn test_rr(tr: &mut Tr, size: u32, dst: u8, src: u8) {
    prefixes(tr, size, src, dst);
    tr.a.push(if size == 1 { 0x84 } else { 0x85 });
    modrm(tr, src, dst);
}

fn test_ri(tr: &mut Tr, size: u32, dst: u8, imm: u64) {
    prefixes(tr, size, 0, dst);
    tr.a.push(if size == 1 { 0xf6 } else { 0xf7 });
    modrm(tr, 0, dst);
    imm_bytes(tr, size, imm);
}

/// F6/F7 /ext (2 NOT, 3 NEG) or FE/FF /ext (0 INC, 1 DEC).
fn unary(tr: &mut Tr, group: u8, ext: u8, size: u32, r: u8) {
    prefixes(tr, size, 0, r);
    tr.a.push(group + (size != 1) as u8);
    modrm(tr, ext, r);
}

fn setcc(tr: &mut Tr, cc: u8, r: u8) {
    prefixes(tr, 1, 0, r);
    tr.a.extend([0x0f, 0x90 + cc]);
    modrm(tr, 0, r);
}

fn cmovcc(tr: &mut Tr, cc: u8, size: u32, dst: u8, src: u8) {
    prefixes(tr, size, dst, src);
    tr.a.extend([0x0f, 0x40 + cc]);
    modrm(tr, dst, src);
}

// ---- guest register and memory access ----------------------------------

fn load_reg(tr: &mut Tr, hr: u8, off: i32, size: u32) {
    // r9 may still hold this register: the last thing emitted stored it
    // (nothing since, not even a label a slow path joins at).
    if let Some((coff, csz)) = tr.r9_holds() {
        if coff == off && size >= 4 {
            match (hr, size) {
                (R9, 8) => {}
                (R9, _) if csz == 4 => {}
                (R9, _) => dynasm!(tr.a ; .arch x64 ; mov r9d, r9d),
                (_, 8) => dynasm!(tr.a ; .arch x64 ; mov Rq(hr), r9),
                _ => dynasm!(tr.a ; .arch x64 ; mov Rd(hr), r9d),
            }
            if hr != R9 || size == csz || csz == 4 {
                tr.set_r9_holds(off, csz.min(if hr == R9 { size } else { 8 }));
            }
            return;
        }
    }
    if let Some(h) = tr.cached(off) {
        match size {
            1 => dynasm!(tr.a ; .arch x64 ; movzx Rd(hr), Rb(h)),
            2 => dynasm!(tr.a ; .arch x64 ; movzx Rd(hr), Rw(h)),
            4 => dynasm!(tr.a ; .arch x64 ; mov Rd(hr), Rd(h)),
            _ => dynasm!(tr.a ; .arch x64 ; mov Rq(hr), Rq(h)),
        }
        return;
    }
    match size {
        1 => dynasm!(tr.a ; .arch x64 ; movzx Rd(hr), BYTE [rbx + off]),
        2 => dynasm!(tr.a ; .arch x64 ; movzx Rd(hr), WORD [rbx + off]),
        4 => dynasm!(tr.a ; .arch x64 ; mov Rd(hr), DWORD [rbx + off]),
        _ => dynasm!(tr.a ; .arch x64 ; mov Rq(hr), QWORD [rbx + off]),
    }
}

/// Stores a result; a 4-byte result must be zero-extended in `hr` (every
/// 32-bit host operation leaves it so), which gives x86's zero-extension.
fn store_reg(tr: &mut Tr, hr: u8, off: i32, size: u32) {
    // A whole-register write needs no load of the old value first.
    let cached = if size >= 4 {
        tr.cached_for_write(off)
    } else {
        tr.cached(off)
    };
    if let Some(h) = cached {
        match size {
            1 => dynasm!(tr.a ; .arch x64 ; mov Rb(h), Rb(hr)),
            2 => dynasm!(tr.a ; .arch x64 ; mov Rw(h), Rw(hr)),
            4 => dynasm!(tr.a ; .arch x64 ; mov Rd(h), Rd(hr)),
            _ => dynasm!(tr.a ; .arch x64 ; mov Rq(h), Rq(hr)),
        }
        tr.dirty(off);
    } else {
        match size {
            1 => dynasm!(tr.a ; .arch x64 ; mov BYTE [rbx + off], Rb(hr)),
            2 => dynasm!(tr.a ; .arch x64 ; mov WORD [rbx + off], Rw(hr)),
            _ => dynasm!(tr.a ; .arch x64 ; mov QWORD [rbx + off], Rq(hr)),
        }
    }
    if hr == R9 && size >= 4 {
        tr.set_r9_holds(off, size);
    }
}

fn load_mem(tr: &mut Tr, hr: u8, size: u32) {
    match size {
        1 => dynasm!(tr.a ; .arch x64 ; movzx Rd(hr), BYTE [rsi]),
        2 => dynasm!(tr.a ; .arch x64 ; movzx Rd(hr), WORD [rsi]),
        4 => dynasm!(tr.a ; .arch x64 ; mov Rd(hr), DWORD [rsi]),
        _ => dynasm!(tr.a ; .arch x64 ; mov Rq(hr), QWORD [rsi]),
    }
}

fn store_mem(tr: &mut Tr, hr: u8, size: u32) {
    match size {
        1 => dynasm!(tr.a ; .arch x64 ; mov BYTE [rsi], Rb(hr)),
        2 => dynasm!(tr.a ; .arch x64 ; mov WORD [rsi], Rw(hr)),
        4 => dynasm!(tr.a ; .arch x64 ; mov DWORD [rsi], Rd(hr)),
        _ => dynasm!(tr.a ; .arch x64 ; mov QWORD [rsi], Rq(hr)),
    }
}

fn load_imm(tr: &mut Tr, hr: u8, size: u32, v: u64) {
    match size {
        8 => dynasm!(tr.a ; .arch x64 ; mov Rq(hr), QWORD v as i64),
        _ => dynasm!(tr.a ; .arch x64 ; mov Rd(hr), (v as u32) as i32),
    }
}

/// Whether the memory operand can be accessed inline (64-bit mode, 32/64
/// bit addressing, GPR base/index or RIP-relative, a real segment).
fn mem_ok(tr: &Tr, i: &Instruction) -> bool {
    use iced_x86::Register as R;
    if !tr.ctx.long64 || Tr::addr_size(i) == 2 {
        return false;
    }
    let gpr_or_none = |r: R| r == R::None || (21..=68).contains(&(r as usize));
    let base_ok = gpr_or_none(i.memory_base()) || i.memory_base() == R::RIP;
    base_ok
        && gpr_or_none(i.memory_index())
        && matches!(
            i.memory_segment(),
            R::ES | R::CS | R::SS | R::DS | R::FS | R::GS
        )
}

/// Computes the linear address and does the TLB check: RSI = host pointer.
fn mem_access(tr: &mut Tr, i: &Instruction, acc: Acc, size: u32) {
    tr.slow_label();
    tr.lin(i).expect("mem_ok checked");
    tr.tlb(acc, size);
}

fn cc(i: &Instruction) -> u8 {
    crate::interp::cond_code(i)
}

// ---- instruction families -------------------------------------------------

/// Emits instruction `i` natively if it can.
pub(super) fn emit(tr: &mut Tr, i: &Instruction) -> Emitted {
    if i.has_lock_prefix() || i.has_rep_prefix() || i.has_repne_prefix() {
        return Emitted::Helper;
    }
    let mem = (0..i.op_count()).any(|n| i.op_kind(n) == OpKind::Memory);
    if mem && !matches!(i.mnemonic(), M::Lea | M::Nop) && !mem_ok(tr, i) {
        return Emitted::Helper;
    }
    let r = match i.mnemonic() {
        M::Mov
            if i.op_count() == 2
                && i.op0_kind() == OpKind::Register
                && i.op1_kind() == OpKind::Register
                && i.op1_register().is_segment_register() =>
        {
            mov_from_sreg(tr, i)
        }
        M::Mov => mov(tr, i),
        M::Movzx => ext(tr, i, false),
        M::Movsx | M::Movsxd => ext(tr, i, true),
        M::Lea => lea(tr, i),
        M::Add => alu(tr, i, 0),
        M::Or => alu(tr, i, 1),
        M::Adc => alu(tr, i, 2),
        M::Sbb => alu(tr, i, 3),
        M::And => alu(tr, i, 4),
        M::Sub => alu(tr, i, 5),
        M::Xor => alu(tr, i, 6),
        M::Cmp => alu(tr, i, 7),
        M::Test => alu(tr, i, 8),
        M::Inc => un(tr, i, 0xfe, 0),
        M::Dec => un(tr, i, 0xfe, 1),
        M::Not => un(tr, i, 0xf6, 2),
        M::Neg => un(tr, i, 0xf6, 3),
        M::Nop => Some(Emitted::Native),
        M::Xchg => xchg(tr, i),
        M::Cdqe | M::Cwde | M::Cbw | M::Cqo | M::Cdq | M::Cwd => sext_acc(tr, i),
        // Jcc, SETcc, CMOVcc (LOOPcc, also with a condition, are helpers).
        m if i.condition_code() != ConditionCode::None && !matches!(m, M::Loope | M::Loopne) => {
            match (i.flow_control(), i.op_count()) {
                (FlowControl::ConditionalBranch, _) => jcc(tr, i),
                (FlowControl::Next, 1) => set(tr, i),
                (FlowControl::Next, 2) => cmov(tr, i),
                _ => None,
            }
        }
        M::Jmp => jmp(tr, i),
        M::Call => call(tr, i),
        M::Ret => ret(tr, i),
        M::Push => push(tr, i),
        M::Pop => pop(tr, i),
        M::Rol => shift(tr, i, 0),
        M::Ror => shift(tr, i, 1),
        M::Shl | M::Sal => shift(tr, i, 4),
        M::Shr => shift(tr, i, 5),
        M::Sar => shift(tr, i, 7),
        M::Imul => imul(tr, i),
        M::Bswap => bswap(tr, i),
        M::Prefetchnta | M::Prefetcht0 | M::Prefetcht1 | M::Prefetcht2 | M::Prefetchw => {
            // Hints: no access, no fault.
            tr.end_insn();
            Some(Emitted::Native)
        }
        M::Cli => cli(tr),
        M::Pushfq => pushfq(tr),
        _ => None,
    };
    r.unwrap_or(Emitted::Helper)
}

fn mov(tr: &mut Tr, i: &Instruction) -> Option<Emitted> {
    let (d, s) = (opd(i, 0)?, opd(i, 1)?);
    let size = opd_size(i, d);
    match (d, s) {
        (Opd::Reg(..), Opd::Reg(..)) | (Opd::Reg(..), Opd::Imm(_)) | (Opd::Reg(..), Opd::Mem) => {}
        (Opd::Mem, Opd::Reg(..)) | (Opd::Mem, Opd::Imm(_)) => {}
        _ => return None,
    }
    match s {
        Opd::Reg(o, sz) => load_reg(tr, R9, o, sz),
        Opd::Imm(v) => load_imm(tr, R9, size, v),
        Opd::Mem => {
            mem_access(tr, i, Acc::Read, size);
            load_mem(tr, R9, size);
        }
    }
    match d {
        Opd::Reg(o, sz) => store_reg(tr, R9, o, sz),
        _ => {
            mem_access(tr, i, Acc::Write, size);
            store_mem(tr, R9, size);
        }
    }
    tr.end_insn();
    Some(Emitted::Native)
}

fn ext(tr: &mut Tr, i: &Instruction, sign: bool) -> Option<Emitted> {
    let Opd::Reg(doff, dsz) = opd(i, 0)? else {
        return None;
    };
    let s = opd(i, 1)?;
    let ssz = opd_size(i, s);
    let src_is_mem = matches!(s, Opd::Mem);
    if src_is_mem {
        mem_access(tr, i, Acc::Read, ssz);
    }
    let soff = match s {
        Opd::Reg(o, _) => o,
        Opd::Mem => 0,
        Opd::Imm(_) => return None,
    };
    if src_is_mem {
        load_mem(tr, R9, ssz);
    } else {
        load_reg(tr, R9, soff, ssz);
    }
    if sign {
        match ssz {
            1 => dynasm!(tr.a ; .arch x64 ; movsx r9, r9b),
            2 => dynasm!(tr.a ; .arch x64 ; movsx r9, r9w),
            4 => dynasm!(tr.a ; .arch x64 ; movsxd r9, r9d),
            _ => {}
        }
    }
    if sign && dsz == 4 {
        dynasm!(tr.a ; .arch x64 ; mov r9d, r9d);
    }
    store_reg(tr, R9, doff, dsz);
    tr.end_insn();
    Some(Emitted::Native)
}

fn lea(tr: &mut Tr, i: &Instruction) -> Option<Emitted> {
    use iced_x86::Register as R;
    let Opd::Reg(doff, dsz) = opd(i, 0)? else {
        return None;
    };
    let gpr_or_none = |r: R| r == R::None || (21..=68).contains(&(r as usize));
    if !(gpr_or_none(i.memory_base()) || i.memory_base() == R::RIP)
        || !gpr_or_none(i.memory_index())
    {
        return None;
    }
    tr.ea(i)?;
    let t = dsz.min(Tr::addr_size(i));
    match t {
        2 => dynasm!(tr.a ; .arch x64 ; movzx esi, si),
        4 => dynasm!(tr.a ; .arch x64 ; mov esi, esi),
        _ => {}
    }
    store_reg(tr, RSI, doff, dsz);
    tr.end_insn();
    Some(Emitted::Native)
}

/// ALU op `/digit` 0..7, or 8 for TEST.
fn alu(tr: &mut Tr, i: &Instruction, op: u8) -> Option<Emitted> {
    let (d, s) = (opd(i, 0)?, opd(i, 1)?);
    let size = opd_size(i, d);
    let writes = op != 7 && op != 8;
    match (d, s) {
        (Opd::Imm(_), _) | (Opd::Mem, Opd::Mem) => return None,
        _ => {}
    }
    // A register source first: it may still be in r9 from the previous
    // instruction.
    if let Opd::Reg(o, sz) = s {
        load_reg(tr, R10, o, sz);
    }
    match d {
        Opd::Reg(o, sz) => load_reg(tr, R9, o, sz),
        _ => {
            mem_access(tr, i, if writes { Acc::Write } else { Acc::Read }, size);
            load_mem(tr, R9, size);
        }
    }
    if let Opd::Mem = s {
        mem_access(tr, i, Acc::Read, size);
        load_mem(tr, R10, size);
    }
    if op == 2 || op == 3 {
        tr.fl_to_host();
    }
    match (s, op) {
        (Opd::Imm(v), 8) => test_ri(tr, size, R9, v),
        (Opd::Imm(v), _) => alu_ri(tr, op, size, R9, v),
        (_, 8) => test_rr(tr, size, R9, R10),
        _ => alu_rr(tr, op, size, R9, R10),
    }
    tr.fl = Fl::Host;
    if writes {
        match d {
            Opd::Reg(o, sz) => store_reg(tr, R9, o, sz),
            _ => store_mem(tr, R9, size),
        }
    }
    tr.end_insn();
    Some(Emitted::Native)
}

fn un(tr: &mut Tr, i: &Instruction, group: u8, ext: u8) -> Option<Emitted> {
    if i.op_count() != 1 {
        return None;
    }
    let d = opd(i, 0)?;
    let size = opd_size(i, d);
    match d {
        Opd::Reg(o, sz) => load_reg(tr, R9, o, sz),
        Opd::Mem => {
            mem_access(tr, i, Acc::Write, size);
            load_mem(tr, R9, size);
        }
        Opd::Imm(_) => return None,
    }
    if group == 0xfe {
        // INC/DEC keep CF.
        tr.fl_to_host();
    }
    unary(tr, group, ext, size, R9);
    if !(group == 0xf6 && ext == 2) {
        tr.fl = Fl::Host;
    }
    match d {
        Opd::Reg(o, sz) => store_reg(tr, R9, o, sz),
        _ => store_mem(tr, R9, size),
    }
    tr.end_insn();
    Some(Emitted::Native)
}

fn xchg(tr: &mut Tr, i: &Instruction) -> Option<Emitted> {
    let (Opd::Reg(a, sa), Opd::Reg(b, sb)) = (opd(i, 0)?, opd(i, 1)?) else {
        return None;
    };
    load_reg(tr, R9, a, sa);
    load_reg(tr, R10, b, sb);
    store_reg(tr, R10, a, sa);
    store_reg(tr, R9, b, sb);
    tr.end_insn();
    Some(Emitted::Native)
}

fn sext_acc(tr: &mut Tr, i: &Instruction) -> Option<Emitted> {
    let oax = gpr_off(0);
    let odx = gpr_off(2);
    match i.mnemonic() {
        M::Cdqe => {
            load_reg(tr, R9, oax, 4);
            dynasm!(tr.a ; .arch x64 ; movsxd r9, r9d);
            store_reg(tr, R9, oax, 8);
        }
        M::Cwde => {
            load_reg(tr, R9, oax, 2);
            dynasm!(tr.a ; .arch x64 ; movsx r9d, r9w);
            store_reg(tr, R9, oax, 4);
        }
        M::Cbw => {
            load_reg(tr, R9, oax, 1);
            dynasm!(tr.a ; .arch x64 ; movsx r9d, r9b);
            store_reg(tr, R9, oax, 2);
        }
        M::Cqo => {
            tr.fl_spill();
            load_reg(tr, R9, oax, 8);
            dynasm!(tr.a ; .arch x64 ; sar r9, 63);
            store_reg(tr, R9, odx, 8);
        }
        M::Cdq => {
            tr.fl_spill();
            load_reg(tr, R9, oax, 4);
            dynasm!(tr.a ; .arch x64 ; sar r9d, 31);
            store_reg(tr, R9, odx, 4);
        }
        _ => {
            tr.fl_spill();
            load_reg(tr, R9, oax, 2);
            dynasm!(tr.a ; .arch x64 ; movsx r9d, r9w ; sar r9d, 15);
            store_reg(tr, R9, odx, 2);
        }
    }
    tr.end_insn();
    Some(Emitted::Native)
}

fn set(tr: &mut Tr, i: &Instruction) -> Option<Emitted> {
    let d = opd(i, 0)?;
    if let Opd::Mem = d {
        mem_access(tr, i, Acc::Write, 1);
    }
    tr.fl_to_host();
    setcc(tr, cc(i), R9);
    match d {
        Opd::Reg(o, _) => store_reg(tr, R9, o, 1),
        Opd::Mem => store_mem(tr, R9, 1),
        Opd::Imm(_) => return None,
    }
    tr.end_insn();
    Some(Emitted::Native)
}

fn cmov(tr: &mut Tr, i: &Instruction) -> Option<Emitted> {
    let Opd::Reg(doff, size) = opd(i, 0)? else {
        return None;
    };
    match opd(i, 1)? {
        Opd::Reg(o, sz) => load_reg(tr, R10, o, sz),
        Opd::Mem => {
            mem_access(tr, i, Acc::Read, size);
            load_mem(tr, R10, size);
        }
        Opd::Imm(_) => return None,
    }
    load_reg(tr, R9, doff, size);
    tr.fl_to_host();
    cmovcc(tr, cc(i), size, R9, R10);
    store_reg(tr, R9, doff, size);
    tr.end_insn();
    Some(Emitted::Native)
}

/// A direct branch target the translation may use (the interpreter's
/// `branch` checks: canonical in 64-bit mode, within the CS limit
/// otherwise).
fn target_ok(tr: &Tr, t: u64) -> bool {
    if tr.ctx.long64 {
        crate::mmu::seg::is_canonical(t)
    } else {
        t <= tr.ctx.cs_limit
    }
}

fn jcc(tr: &mut Tr, i: &Instruction) -> Option<Emitted> {
    let t = i.near_branch_target();
    if !target_ok(tr, t) {
        return None;
    }
    let next = tr.cur.next;
    let count = tr.cur.count + 1;
    tr.fl_to_host();
    let taken = tr.a.new_dynamic_label();
    jcc_to(tr, cc(i), taken);
    tr.end_insn();
    let rc = tr.rc;
    let link = tr.linkable(next);
    tr.exit(count, Some(next), link);
    dynasm!(tr.a ; .arch x64 ; =>taken);
    tr.fl = Fl::Host;
    tr.rc = rc;
    let link = tr.linkable(t);
    tr.exit(count, Some(t), link);
    Some(Emitted::NativeExit)
}

fn jcc_to(tr: &mut Tr, cc: u8, l: dynasmrt::DynamicLabel) {
    match cc {
        0 => dynasm!(tr.a ; .arch x64 ; jo =>l),
        1 => dynasm!(tr.a ; .arch x64 ; jno =>l),
        2 => dynasm!(tr.a ; .arch x64 ; jb =>l),
        3 => dynasm!(tr.a ; .arch x64 ; jae =>l),
        4 => dynasm!(tr.a ; .arch x64 ; je =>l),
        5 => dynasm!(tr.a ; .arch x64 ; jne =>l),
        6 => dynasm!(tr.a ; .arch x64 ; jbe =>l),
        7 => dynasm!(tr.a ; .arch x64 ; ja =>l),
        8 => dynasm!(tr.a ; .arch x64 ; js =>l),
        9 => dynasm!(tr.a ; .arch x64 ; jns =>l),
        10 => dynasm!(tr.a ; .arch x64 ; jp =>l),
        11 => dynasm!(tr.a ; .arch x64 ; jnp =>l),
        12 => dynasm!(tr.a ; .arch x64 ; jl =>l),
        13 => dynasm!(tr.a ; .arch x64 ; jge =>l),
        14 => dynasm!(tr.a ; .arch x64 ; jle =>l),
        _ => dynasm!(tr.a ; .arch x64 ; jg =>l),
    }
}

fn is_near_direct(i: &Instruction) -> bool {
    matches!(
        i.op0_kind(),
        OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
    )
}

/// Loads an indirect branch target (register or memory) into r9.
fn indirect_target(tr: &mut Tr, i: &Instruction) -> Option<()> {
    match opd(i, 0)? {
        Opd::Reg(o, 8) => load_reg(tr, R9, o, 8),
        Opd::Mem if i.memory_size().size() == 8 => {
            mem_access(tr, i, Acc::Read, 8);
            load_mem(tr, R9, 8);
        }
        _ => return None,
    }
    tr.slow_label();
    tr.check_canonical(R9);
    Some(())
}

fn jmp(tr: &mut Tr, i: &Instruction) -> Option<Emitted> {
    let count = tr.cur.count + 1;
    if is_near_direct(i) {
        let t = i.near_branch_target();
        if !target_ok(tr, t) {
            return None;
        }
        tr.end_insn();
        let link = tr.linkable(t);
        tr.exit(count, Some(t), link);
        return Some(Emitted::NativeExit);
    }
    if !tr.ctx.long64 || i.op0_kind() == OpKind::Memory && !mem_ok(tr, i) {
        return None;
    }
    indirect_target(tr, i)?;
    dynasm!(tr.a ; .arch x64 ; mov QWORD [rbx + RIP], r9);
    tr.end_insn();
    tr.exit_lookup(count, None);
    Some(Emitted::NativeExit)
}

/// 64-bit push of r9 (flags already spilled by the caller's slow label).
fn push_r9(tr: &mut Tr) {
    dynasm!(tr.a ; .arch x64 ; mov rsi, QWORD [rbx + RSP_OFF] ; lea rsi, [rsi - 8]);
    tr.tlb(Acc::Write, 8);
    dynasm!(tr.a
        ; .arch x64
        ; mov QWORD [rsi], r9
        ; mov rdi, QWORD [rbx + RSP_OFF]
        ; lea rdi, [rdi - 8]
        ; mov QWORD [rbx + RSP_OFF], rdi
    );
}

fn call(tr: &mut Tr, i: &Instruction) -> Option<Emitted> {
    if !tr.ctx.long64 || i.stack_pointer_increment() != -8 {
        return None;
    }
    let count = tr.cur.count + 1;
    let next = tr.cur.next;
    if is_near_direct(i) {
        let t = i.near_branch_target();
        if !target_ok(tr, t) {
            return None;
        }
        tr.slow_label();
        load_imm(tr, R9, 8, next);
        push_r9(tr);
        tr.end_insn();
        let link = tr.linkable(t);
        tr.exit(count, Some(t), link);
        return Some(Emitted::NativeExit);
    }
    if i.op0_kind() == OpKind::Memory && !mem_ok(tr, i) {
        return None;
    }
    indirect_target(tr, i)?;
    dynasm!(tr.a ; .arch x64 ; mov r10, r9);
    load_imm(tr, R9, 8, next);
    push_r9(tr);
    dynasm!(tr.a ; .arch x64 ; mov QWORD [rbx + RIP], r10);
    tr.end_insn();
    tr.exit_lookup(count, None);
    Some(Emitted::NativeExit)
}

fn ret(tr: &mut Tr, i: &Instruction) -> Option<Emitted> {
    if !tr.ctx.long64
        || !matches!(
            i.code(),
            iced_x86::Code::Retnq | iced_x86::Code::Retnq_imm16
        )
    {
        return None;
    }
    let count = tr.cur.count + 1;
    let extra = if i.op_count() == 1 {
        i.immediate(0) as i32
    } else {
        0
    };
    tr.slow_label();
    dynasm!(tr.a ; .arch x64 ; mov rsi, QWORD [rbx + RSP_OFF]);
    tr.tlb(Acc::Read, 8);
    load_mem(tr, R9, 8);
    tr.check_canonical(R9);
    dynasm!(tr.a
        ; .arch x64
        ; mov rdi, QWORD [rbx + RSP_OFF]
        ; lea rdi, [rdi + 8 + extra]
        ; mov QWORD [rbx + RSP_OFF], rdi
        ; mov QWORD [rbx + RIP], r9
    );
    tr.end_insn();
    tr.exit_lookup(count, None);
    Some(Emitted::NativeExit)
}

fn push(tr: &mut Tr, i: &Instruction) -> Option<Emitted> {
    if !tr.ctx.long64 || i.stack_pointer_increment() != -8 {
        return None;
    }
    match opd(i, 0)? {
        Opd::Reg(o, 8) => load_reg(tr, R9, o, 8),
        Opd::Imm(v) => load_imm(tr, R9, 8, v),
        _ => return None,
    }
    tr.slow_label();
    push_r9(tr);
    tr.end_insn();
    Some(Emitted::Native)
}

fn pop(tr: &mut Tr, i: &Instruction) -> Option<Emitted> {
    if !tr.ctx.long64 || i.stack_pointer_increment() != 8 {
        return None;
    }
    let Opd::Reg(o, 8) = opd(i, 0)? else {
        return None;
    };
    tr.slow_label();
    dynasm!(tr.a ; .arch x64 ; mov rsi, QWORD [rbx + RSP_OFF]);
    tr.tlb(Acc::Read, 8);
    load_mem(tr, R9, 8);
    dynasm!(tr.a
        ; .arch x64
        ; mov rdi, QWORD [rbx + RSP_OFF]
        ; lea rdi, [rdi + 8]
        ; mov QWORD [rbx + RSP_OFF], rdi
    );
    store_reg(tr, R9, o, 8);
    tr.end_insn();
    Some(Emitted::Native)
}

/// Arithmetic flags.
pub(super) const ARITH: u32 = 0x3f;

/// Flags (iced `RflagsBits`, arithmetic ones) the instruction writes when
/// emitted natively; shifts by a masked count of 0 write none.
pub(super) fn written(i: &Instruction) -> u32 {
    if let Some(c) = shift_count(i) {
        if c == 0 {
            return 0;
        }
    }
    if cl_shift(i).is_some() {
        // A count of 0 (known only at run time) writes nothing.
        return 0;
    }
    i.rflags_modified() & ARITH
}

/// A 32/64-bit shift or rotate of a register by CL: its size.
fn cl_shift(i: &Instruction) -> Option<u32> {
    if !matches!(
        i.mnemonic(),
        M::Rol | M::Ror | M::Shl | M::Sal | M::Shr | M::Sar
    ) || i.op_count() != 2
        || i.op1_kind() != OpKind::Register
        || i.op1_register() != Register::CL
    {
        return None;
    }
    match opd(i, 0)? {
        Opd::Reg(_, s) if s >= 4 => Some(s),
        _ => None,
    }
}

/// Flags the instruction reads.
pub(super) fn read(i: &Instruction) -> u32 {
    i.rflags_read() & ARITH
}

/// The instruction is emitted natively, touches only registers and cannot
/// fault: flags it writes are unobservable if a later pure instruction
/// overwrites them first (see `Tr::dead`).
pub(super) fn pure(i: &Instruction) -> bool {
    if i.has_lock_prefix() || i.has_rep_prefix() || i.has_repne_prefix() {
        return false;
    }
    let regs =
        (0..i.op_count()).all(|n| matches!(opd(i, n), Some(Opd::Reg(..)) | Some(Opd::Imm(_))));
    match i.mnemonic() {
        M::Lea | M::Nop => true,
        M::Mov | M::Movzx | M::Movsx | M::Movsxd | M::Xchg => regs,
        M::Add | M::Or | M::Adc | M::Sbb | M::And | M::Sub | M::Xor | M::Cmp | M::Test => regs,
        M::Inc | M::Dec | M::Not | M::Neg => regs,
        M::Cdqe | M::Cwde | M::Cbw | M::Cqo | M::Cdq | M::Cwd => true,
        M::Rol | M::Ror | M::Shl | M::Sal | M::Shr | M::Sar => {
            regs && (shift_count(i).is_some() || cl_shift(i).is_some())
        }
        M::Imul => regs && i.op_count() >= 2,
        _ => {
            i.condition_code() != iced_x86::ConditionCode::None
                && regs
                && !matches!(i.flow_control(), iced_x86::FlowControl::ConditionalBranch)
        }
    }
}

/// The masked immediate count of a shift/rotate (None: not a shift by an
/// immediate).
fn shift_count(i: &Instruction) -> Option<u32> {
    if !matches!(
        i.mnemonic(),
        M::Rol | M::Ror | M::Shl | M::Sal | M::Shr | M::Sar
    ) || i.op_count() != 2
    {
        return None;
    }
    if i.op1_kind() != OpKind::Immediate8 {
        return None;
    }
    let size = match opd(i, 0)? {
        Opd::Reg(_, s) => s,
        _ => i.memory_size().size() as u32,
    };
    Some(i.immediate(1) as u32 & if size == 8 { 63 } else { 31 })
}

/// Shifts and rotates of a register by an immediate (below the operand
/// width) or, for 32/64-bit registers, by CL. The host computes the
/// defined flags; where the SDM leaves one undefined (OF for counts above
/// 1, AF) the interpreter's choice is patched in (via the stash) unless
/// the flags are dead anyway.
fn shift(tr: &mut Tr, i: &Instruction, ext: u8) -> Option<Emitted> {
    let Opd::Reg(off, size) = opd(i, 0)? else {
        return None;
    };
    let bits = (size * 8) as i8;
    let imm = shift_count(i);
    let by_cl = cl_shift(i).is_some();
    match imm {
        Some(c) if c < bits as u32 => {}
        _ if by_cl => {}
        _ => return None,
    }
    let live = i.rflags_modified() & ARITH & !tr.dead() != 0;
    let rotate = ext < 4;
    load_reg(tr, R9, off, size);
    if imm == Some(0) {
        store_reg(tr, R9, off, size);
        tr.end_insn();
        return Some(Emitted::Native);
    }
    if live && (rotate || by_cl) {
        // Rotates keep SF ZF AF PF; a CL count of 0 keeps everything.
        tr.fl_to_host();
    }
    if live && ext == 5 {
        dynasm!(tr.a ; .arch x64 ; mov r11, r9);
    }
    if by_cl {
        // The count into CL (host rcx is free scratch here).
        load_reg(tr, 1, gpr_off(1), 1);
        prefixes(tr, size, 0, R9);
        tr.a.push(0xd3);
        modrm(tr, ext, R9);
    } else {
        prefixes(tr, size, 0, R9);
        tr.a.push(if size == 1 { 0xc0 } else { 0xc1 });
        modrm(tr, ext, R9);
        tr.a.push(imm.unwrap_or(0) as u8);
    }
    if !live {
        if !(rotate || by_cl) || tr.fl == Fl::Host {
            tr.fl = Fl::Host;
        }
    } else {
        dynasm!(tr.a ; .arch x64 ; lahf ; seto al);
        let skip = tr.a.new_dynamic_label();
        if by_cl {
            // Count 0: the flags stay as they were.
            let m = if size == 8 { 63 } else { 31 };
            dynasm!(tr.a ; .arch x64 ; test ecx, m ; jz =>skip);
        }
        if !rotate {
            // AF: the interpreter leaves it clear.
            dynasm!(tr.a ; .arch x64 ; and ah, -17i8);
        }
        match ext {
            // SHL, ROL: OF = MSB(result) XOR CF.
            4 | 0 => dynasm!(tr.a
                ; .arch x64
                ; mov r11, r9
                ; shr r11, bits - 1
                ; mov al, ah
                ; and al, 1
                ; xor al, r11b
            ),
            // SHR: OF = MSB(original).
            5 => dynasm!(tr.a ; .arch x64 ; shr r11, bits - 1 ; mov al, r11b),
            // ROR: OF = MSB(result) XOR the bit below it.
            1 => dynasm!(tr.a
                ; .arch x64
                ; mov r11, r9
                ; shr r11, bits - 2
                ; mov al, r11b
                ; shr al, 1
                ; xor al, r11b
                ; and al, 1
            ),
            // SAR: OF = 0.
            _ => dynasm!(tr.a ; .arch x64 ; mov al, 0),
        }
        dynasm!(tr.a ; .arch x64 ; =>skip);
        tr.fl = Fl::Ax;
    }
    store_reg(tr, R9, off, size);
    tr.end_insn();
    Some(Emitted::Native)
}

/// Two- and three-operand IMUL. CF/OF are exact on every host; SF ZF AF PF
/// (undefined) are patched to the interpreter's values when live.
fn imul(tr: &mut Tr, i: &Instruction) -> Option<Emitted> {
    if i.op_count() < 2 {
        return None;
    }
    let Opd::Reg(doff, size) = opd(i, 0)? else {
        return None;
    };
    if size == 1 {
        return None;
    }
    // SF ZF AF PF are undefined: when they are live, set them as the
    // interpreter does (from the result, AF clear).
    let exact =
        written(i) & !tr.dead() & !(iced_x86::RflagsBits::OF | iced_x86::RflagsBits::CF) != 0;
    let src = opd(i, 1)?;
    if let Opd::Imm(_) = src {
        return None;
    }
    let imm = if i.op_count() == 3 {
        Some(i.immediate(2))
    } else {
        None
    };
    match src {
        Opd::Reg(o, sz) => load_reg(tr, R10, o, sz),
        _ => {
            mem_access(tr, i, Acc::Read, size);
            load_mem(tr, R10, size);
        }
    }
    match imm {
        None => {
            load_reg(tr, R9, doff, size);
            prefixes(tr, size, R9, R10);
            tr.a.extend([0x0f, 0xaf]);
            modrm(tr, R9, R10);
        }
        Some(v) => {
            prefixes(tr, size, R9, R10);
            tr.a.push(0x69);
            modrm(tr, R9, R10);
            imm_bytes(tr, size, v);
        }
    }
    if exact {
        // OF = CF after IMUL; TEST gives SF ZF PF of the result.
        dynasm!(tr.a ; .arch x64 ; seto r11b);
        test_rr(tr, size, R9, R9);
        dynasm!(tr.a
            ; .arch x64
            ; lahf
            ; mov al, r11b
            ; or ah, al
            ; and ah, -17i8
        );
        tr.fl = Fl::Ax;
    } else {
        tr.fl = Fl::Host;
    }
    store_reg(tr, R9, doff, size);
    tr.end_insn();
    Some(Emitted::Native)
}

fn bswap(tr: &mut Tr, i: &Instruction) -> Option<Emitted> {
    let Opd::Reg(off, size) = opd(i, 0)? else {
        return None;
    };
    if size < 4 {
        return None;
    }
    load_reg(tr, R9, off, size);
    if size == 8 {
        dynasm!(tr.a ; .arch x64 ; bswap r9);
    } else {
        dynasm!(tr.a ; .arch x64 ; bswap r9d);
    }
    store_reg(tr, R9, off, size);
    tr.end_insn();
    Some(Emitted::Native)
}

/// CLI at CPL 0 in 64-bit mode (always allowed there).
fn cli(tr: &mut Tr) -> Option<Emitted> {
    if !tr.ctx.long64 || tr.ctx.cpl != 0 {
        return None;
    }
    tr.fl_spill();
    let keep = !(crate::consts::rflags::IF as i32);
    dynasm!(tr.a ; .arch x64 ; and QWORD [rbx + super::emit::RFLAGS], keep);
    tr.end_insn();
    Some(Emitted::Native)
}

/// PUSHFQ: RFLAGS without RF (and VM, clear in 64-bit mode).
fn pushfq(tr: &mut Tr) -> Option<Emitted> {
    if !tr.ctx.long64 {
        return None;
    }
    tr.fl_to_mem();
    tr.slow_label();
    let mask = !((crate::consts::rflags::VM | crate::consts::rflags::RF) as i32);
    dynasm!(tr.a
        ; .arch x64
        ; mov r9, QWORD [rbx + super::emit::RFLAGS]
        ; and r9, mask
    );
    push_r9(tr);
    tr.end_insn();
    Some(Emitted::Native)
}

/// MOV r16/r32/r64, Sreg: the selector, zero-extended.
fn mov_from_sreg(tr: &mut Tr, i: &Instruction) -> Option<Emitted> {
    let Opd::Reg(off, size) = opd(i, 0)? else {
        return None;
    };
    let s = match i.op1_register() {
        Register::ES => 0,
        Register::CS => 1,
        Register::SS => 2,
        Register::DS => 3,
        Register::FS => 4,
        Register::GS => 5,
        _ => return None,
    };
    let sel = super::emit::seg_sel_off(s);
    dynasm!(tr.a ; .arch x64 ; movzx r9d, WORD [rbx + sel]);
    store_reg(tr, R9, off, size);
    tr.end_insn();
    Some(Emitted::Native)
}
