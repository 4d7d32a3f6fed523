//! gdbstub's view of the x86 register file: one fixed `i386:x86-64`
//! layout, whatever mode the guest is in (see `x86::gdb`).

use std::num::NonZeroUsize;

use gdbstub::arch::{Arch, RegId, Registers};

/// hx86's x86 architecture for gdbstub.
pub enum X86Hx {}

impl Arch for X86Hx {
    type Usize = u64;
    type Registers = Regs;
    type RegId = Reg;
    type BreakpointKind = usize;

    fn target_description_xml() -> Option<&'static str> {
        Some(x86::gdb::TARGET_XML)
    }
}

/// The register file as the bytes of a `g` packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Regs {
    pub bytes: Vec<u8>,
}

impl Default for Regs {
    fn default() -> Self {
        Regs {
            bytes: vec![0; x86::gdb::g_size()],
        }
    }
}

/// Offset of `rip` in the `g` packet.
const RIP: usize = 16 * 8;

impl Registers for Regs {
    type ProgramCounter = u64;

    fn pc(&self) -> u64 {
        let mut b = [0u8; 8];
        if let Some(s) = self.bytes.get(RIP..RIP + 8) {
            b.copy_from_slice(s);
        }
        u64::from_le_bytes(b)
    }

    fn gdb_serialize(&self, mut write_byte: impl FnMut(Option<u8>)) {
        for &b in &self.bytes {
            write_byte(Some(b));
        }
    }

    fn gdb_deserialize(&mut self, bytes: &[u8]) -> Result<(), ()> {
        if bytes.len() != x86::gdb::g_size() {
            return Err(());
        }
        self.bytes.clear();
        self.bytes.extend_from_slice(bytes);
        Ok(())
    }
}

/// A register number of [`x86::gdb::REGS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reg(pub usize);

impl RegId for Reg {
    fn from_raw_id(id: usize) -> Option<(Self, Option<NonZeroUsize>)> {
        let r = x86::gdb::reg(id)?;
        Some((Reg(id), NonZeroUsize::new(r.size)))
    }

    fn to_raw_id(&self) -> Option<usize> {
        Some(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pc_is_read_from_the_rip_slot() {
        let st = x86::CpuState::reset();
        let regs = Regs {
            bytes: x86::gdb::read_all(&st),
        };
        assert_eq!(regs.pc(), 0xffff_fff0);
        assert_eq!(x86::gdb::offset_of(16), Some(RIP));
        let mut r2 = Regs::default();
        assert!(r2.gdb_deserialize(&regs.bytes[1..]).is_err());
        r2.gdb_deserialize(&regs.bytes).unwrap();
        assert_eq!(r2, regs);
        assert!(Reg::from_raw_id(x86::gdb::NUM_REGS).is_none());
        assert_eq!(Reg::from_raw_id(24).unwrap().1.unwrap().get(), 10);
    }
}
