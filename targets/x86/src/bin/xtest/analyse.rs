//! Static analysis of a generated sequence: its disassembly and the flags
//! it leaves undefined.

use iced_x86::{
    Decoder, DecoderOptions, Formatter, Instruction, InstructionInfoFactory, IntelFormatter,
    Mnemonic, OpKind, Register, RflagsBits,
};

/// What [`analyse`] found.
pub struct Analysis {
    /// One line per instruction: address and Intel syntax.
    pub lines: Vec<String>,
    /// Flags (RFLAGS bits) undefined at the end of the sequence.
    pub undef: u64,
    /// An instruction reads a flag that is undefined at that point.
    pub reads_undef: bool,
}

/// The sequence's instructions (`bytes`, decoded as `bits`-bit code at
/// `ip`), disassembled, the flags left undefined, and whether an
/// instruction reads a flag that is undefined at that point (LAHF, SETcc,
/// CMOVcc, ADC, RCL, INTO, PUSHF, ... after e.g. MUL or BSF): its result is
/// then implementation-specific and the sequence is not compared.
pub fn analyse(bytes: &[u8], bits: u32, ip: u64) -> Analysis {
    let mut dec = Decoder::with_ip(bits, bytes, ip, DecoderOptions::NONE);
    let mut fmt = IntelFormatter::new();
    let mut info = InstructionInfoFactory::new();
    let mut undef = 0u64;
    let mut reads_undef = false;
    let mut branch_end = 0u64;
    let mut lines = Vec::new();
    let mut ins = Instruction::default();
    while dec.can_decode() {
        dec.decode_out(&mut ins);
        let mut s = String::new();
        fmt.format(&ins, &mut s);
        lines.push(format!("{:#x}: {s}", ins.ip()));
        let _ = info.info(&ins);
        reads_undef |= flags64(ins.rflags_read()) & undef != 0;
        let mut u = flags64(ins.rflags_undefined());
        let defined = flags64(ins.rflags_written() | ins.rflags_set() | ins.rflags_cleared());
        let shift = matches!(
            ins.mnemonic(),
            Mnemonic::Shl
                | Mnemonic::Shr
                | Mnemonic::Sar
                | Mnemonic::Rol
                | Mnemonic::Ror
                | Mnemonic::Rcl
                | Mnemonic::Rcr
                | Mnemonic::Shld
                | Mnemonic::Shrd
        );
        // OF is defined only for a masked count of 1 (SDM), whatever iced
        // says for a rotate by an immediate (e.g. RCL r8, 1Bh: 27 mod 9 = 0).
        let last = ins.op_count().max(1) - 1;
        let count_mask = if ins.op0_register().size() == 8 || ins.memory_size().size() == 8 {
            0x3f
        } else {
            0x1f
        };
        if shift
            && !(matches!(
                ins.op_kind(last),
                OpKind::Immediate8 | OpKind::Immediate8_2nd
            ) && ins.immediate(last) & count_mask == 1)
        {
            u |= 0x800;
        }
        let var_count = shift
            && (ins.op_kind(last) == OpKind::Register
            && ins.op_register(last) == Register::CL
            || ins.op_kind(last) != OpKind::Register)
            // REP CMPS/SCAS with a count of 0 does not touch the flags.
            || ins.has_rep_prefix()
            || ins.has_repne_prefix();
        // A shift/rotate by a count that may be 0 (mod the mask) leaves
        // flags as they were: they stay undefined if they were. So does an
        // instruction a forward branch may skip.
        let skippable = ins.ip() < branch_end;
        if ins.is_jcc_short_or_near() || ins.is_jcx_short() || ins.is_loop() || ins.is_loopcc() {
            branch_end = branch_end.max(ins.near_branch_target());
        }
        undef = if var_count || skippable {
            undef | u
        } else {
            (undef & !defined) | u
        };
    }
    Analysis {
        lines,
        undef,
        reads_undef,
    }
}

/// iced's flag bits as RFLAGS bits.
pub fn flags64(f: u32) -> u64 {
    let mut r = 0;
    for (b, v) in [
        (RflagsBits::CF, 0x1u64),
        (RflagsBits::PF, 0x4),
        (RflagsBits::AF, 0x10),
        (RflagsBits::ZF, 0x40),
        (RflagsBits::SF, 0x80),
        (RflagsBits::OF, 0x800),
        (RflagsBits::DF, 0x400),
        (RflagsBits::AC, 0x4_0000),
    ] {
        if f & b != 0 {
            r |= v;
        }
    }
    r
}
