//! Watchpoints by single-stepping, for accelerators whose data
//! breakpoints do not fire (see [`super::probe`]): before each step the
//! next instruction is decoded for the memory it reads and writes, and the
//! watched bytes are compared after it.

use accel::WatchKind;
use iced_x86::{Decoder, DecoderOptions, InstructionInfoFactory, OpAccess, Register};
use x86::{CpuState, SegReg};

/// One memory access of an instruction: linear address, size, read, write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemAccess {
    pub addr: u64,
    pub size: u64,
    pub read: bool,
    pub write: bool,
}

fn seg_of(r: Register) -> Option<SegReg> {
    Some(match r {
        Register::ES => SegReg::Es,
        Register::CS => SegReg::Cs,
        Register::SS => SegReg::Ss,
        Register::DS => SegReg::Ds,
        Register::FS => SegReg::Fs,
        Register::GS => SegReg::Gs,
        _ => return None,
    })
}

fn gpr_index(full: Register) -> Option<usize> {
    use x86::gpr::*;
    Some(match full {
        Register::RAX => RAX,
        Register::RCX => RCX,
        Register::RDX => RDX,
        Register::RBX => RBX,
        Register::RSP => RSP,
        Register::RBP => RBP,
        Register::RSI => RSI,
        Register::RDI => RDI,
        Register::R8 => R8,
        Register::R9 => R9,
        Register::R10 => R10,
        Register::R11 => R11,
        Register::R12 => R12,
        Register::R13 => R13,
        Register::R14 => R14,
        Register::R15 => R15,
        _ => return None,
    })
}

/// A register's value for address computation (segment registers give
/// their base, as iced-x86 expects).
fn reg_value(st: &CpuState, next_ip: u64, r: Register) -> Option<u64> {
    if let Some(s) = seg_of(r) {
        return Some(st.seg(s).base);
    }
    match r {
        Register::RIP => return Some(next_ip),
        Register::EIP => return Some(next_ip & 0xffff_ffff),
        _ => {}
    }
    let v = st.gpr[gpr_index(r.full_register())?];
    Some(match r {
        Register::AH | Register::CH | Register::DH | Register::BH => (v >> 8) & 0xff,
        _ => match r.size() {
            1 => v & 0xff,
            2 => v & 0xffff,
            4 => v & 0xffff_ffff,
            _ => v,
        },
    })
}

/// The memory accesses of the instruction in `code` (fetched at the
/// current pc) for the state `st`. Empty when it cannot be decoded.
pub fn accesses(st: &CpuState, code: &[u8]) -> Vec<MemAccess> {
    let bitness = st.mode().bitness();
    let mut dec = Decoder::with_ip(bitness, code, st.rip, DecoderOptions::NONE);
    if !dec.can_decode() {
        return Vec::new();
    }
    let ins = dec.decode();
    if ins.is_invalid() {
        return Vec::new();
    }
    let next_ip = ins.next_ip();
    let mut factory = InstructionInfoFactory::new();
    let info = factory.info(&ins);
    let mut out = Vec::new();
    for m in info.used_memory() {
        let (read, write) = match m.access() {
            OpAccess::Read | OpAccess::CondRead => (true, false),
            OpAccess::Write | OpAccess::CondWrite => (false, true),
            OpAccess::ReadWrite | OpAccess::ReadCondWrite => (true, true),
            _ => continue,
        };
        let Some(addr) = m.virtual_address(0, |r, _, _| reg_value(st, next_ip, r)) else {
            continue;
        };
        let addr = if st.mode().bitness() == 64 {
            addr
        } else {
            addr & 0xffff_ffff
        };
        out.push(MemAccess {
            addr,
            size: m.memory_size().size().max(1) as u64,
            read,
            write,
        });
    }
    out
}

/// Whether an access hits a watched range of the given kind.
pub fn hits(acc: &MemAccess, start: u64, len: u64, kind: WatchKind) -> bool {
    let overlap = acc.addr < start.wrapping_add(len) && start < acc.addr.wrapping_add(acc.size);
    overlap
        && match kind {
            WatchKind::Write => acc.write,
            WatchKind::Read => acc.read,
            WatchKind::Access => acc.read || acc.write,
        }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x86::consts::cr0;

    #[test]
    fn decodes_reads_and_writes_with_segment_bases() {
        // Real mode: mov [0x2000], al with DS base 0x10000.
        let mut st = CpuState::reset();
        *st.seg_mut(SegReg::Ds) = x86::Segment::real_mode(0x1000, false);
        let a = accesses(&st, &[0xa2, 0x00, 0x20]);
        assert_eq!(
            a,
            vec![MemAccess {
                addr: 0x12000,
                size: 1,
                read: false,
                write: true
            }]
        );
        assert!(hits(&a[0], 0x12000, 4, WatchKind::Write));
        assert!(!hits(&a[0], 0x12000, 4, WatchKind::Read));
        assert!(!hits(&a[0], 0x12001, 4, WatchKind::Access));
        // 32-bit: add [ebx+4], ecx reads and writes 4 bytes.
        st.cr0 |= cr0::PE;
        *st.seg_mut(SegReg::Cs) = x86::Segment::from_descriptor(8, 0x00cf_9b00_0000_ffff);
        *st.seg_mut(SegReg::Ds) = x86::Segment::from_descriptor(0x10, 0x00cf_9300_0000_ffff);
        st.gpr[x86::gpr::RBX] = 0x5000;
        let a = accesses(&st, &[0x01, 0x4b, 0x04]);
        assert_eq!(a.len(), 1);
        assert_eq!(
            (a[0].addr, a[0].size, a[0].read, a[0].write),
            (0x5004, 4, true, true)
        );
        assert!(hits(&a[0], 0x5006, 1, WatchKind::Read));
        // Garbage decodes to nothing.
        assert!(accesses(&st, &[]).is_empty());
    }
}
