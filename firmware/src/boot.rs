//! Boot structures shared by the `-kernel` loaders: GDT, IDT, identity page
//! tables, command line, and the flat entry states built on them.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use x86::{CpuState, DescriptorTable};

use crate::layout::{
    BOOT_GDT_ENTRIES, BOOT_GDT_START, BOOT_IDT_START, BOOT_STACK_TOP, CMDLINE_MAX_SIZE,
    CMDLINE_START, PDPT_START, PD_START, PML4_START,
};
use crate::Error;

/// Flat 4 GiB 64-bit code segment (L=1, accessed, readable).
pub const DESC_CODE64: u64 = x86::state::flat_desc::CODE64;
/// Flat 4 GiB 32-bit code segment (D=1, accessed, readable).
pub const DESC_CODE32: u64 = x86::state::flat_desc::CODE32;
/// Flat 4 GiB data segment (B=1, accessed, writable).
pub const DESC_DATA: u64 = x86::state::flat_desc::DATA;

/// Selector of the entry code segment (Linux's `__BOOT_CS`).
pub const BOOT_CS: u16 = 0x10;
/// Selector of the flat data segment (Linux's `__BOOT_DS`).
pub const BOOT_DS: u16 = 0x18;
/// Selector of a 64-bit code segment, present in every boot GDT.
pub const CODE64_SEL: u16 = 0x08;
/// Selector of a 32-bit code segment, present in every boot GDT.
pub const CODE32_SEL: u16 = 0x20;

/// The boot GDT: 0x08 = 64-bit code, 0x10 = entry code (64-bit for a
/// long-mode entry, else 32-bit), 0x18 = data, 0x20 = 32-bit code; all
/// flat (base 0, limit 4 GiB) and with the accessed bit preset so that
/// loading them never writes the GDT.
pub fn gdt(long: bool) -> [u64; 5] {
    let entry_code = if long { DESC_CODE64 } else { DESC_CODE32 };
    [0, DESC_CODE64, entry_code, DESC_DATA, DESC_CODE32]
}

fn write(mem: &GuestMemoryMmap, addr: u64, data: &[u8]) -> Result<(), Error> {
    mem.write_slice(data, GuestAddress(addr))
        .map_err(|e| Error::write(addr, data.len(), e))
}

/// Writes `len` zero bytes at `addr`, in bounded chunks.
pub fn zero(mem: &GuestMemoryMmap, addr: u64, len: u64) -> Result<(), Error> {
    let chunk = vec![0u8; len.min(0x1_0000) as usize];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(chunk.len() as u64);
        write(mem, addr + done, &chunk[..n as usize])?;
        done += n;
    }
    Ok(())
}

pub(crate) fn write_bytes(mem: &GuestMemoryMmap, addr: u64, data: &[u8]) -> Result<(), Error> {
    write(mem, addr, data)
}

/// Writes the GDT at [`BOOT_GDT_START`] and an empty IDT at [`BOOT_IDT_START`].
pub fn write_gdt_idt(mem: &GuestMemoryMmap, long: bool) -> Result<(), Error> {
    let mut table = [0u8; (BOOT_GDT_ENTRIES * 8) as usize];
    for (i, d) in gdt(long).iter().enumerate() {
        table[i * 8..i * 8 + 8].copy_from_slice(&d.to_le_bytes());
    }
    write(mem, BOOT_GDT_START, &table)?;
    write(mem, BOOT_IDT_START, &[0; 8])
}

/// Writes page tables identity-mapping [0, 4 GiB) with 2 MiB pages:
/// PML4 at [`PML4_START`] -> one PDPT at [`PDPT_START`] -> 4 page
/// directories from [`PD_START`]. Returns the CR3 value.
pub fn write_identity_page_tables(mem: &GuestMemoryMmap) -> Result<u64, Error> {
    const P_RW: u64 = 0x3;
    const PS: u64 = 0x80;
    let mut pml4 = [0u8; 4096];
    pml4[..8].copy_from_slice(&(PDPT_START | P_RW).to_le_bytes());
    write(mem, PML4_START, &pml4)?;
    let mut pdpt = [0u8; 4096];
    for i in 0..4u64 {
        let e = (PD_START + i * 0x1000) | P_RW;
        pdpt[i as usize * 8..i as usize * 8 + 8].copy_from_slice(&e.to_le_bytes());
    }
    write(mem, PDPT_START, &pdpt)?;
    let mut pd = vec![0u8; 4 * 4096];
    for i in 0..2048u64 {
        let e = (i << 21) | PS | P_RW;
        pd[i as usize * 8..i as usize * 8 + 8].copy_from_slice(&e.to_le_bytes());
    }
    write(mem, PD_START, &pd)?;
    Ok(PML4_START)
}

/// Checks a command line: no NUL inside, and room for it plus its NUL.
pub fn check_cmdline(cmdline: &str, max_with_nul: u64) -> Result<(), Error> {
    if cmdline.as_bytes().contains(&0) {
        return Err(Error::CmdlineNul);
    }
    let max = max_with_nul.min(CMDLINE_MAX_SIZE) as usize;
    if cmdline.len() + 1 > max {
        return Err(Error::CmdlineTooLong {
            len: cmdline.len(),
            max: max.saturating_sub(1),
        });
    }
    Ok(())
}

/// Writes the NUL-terminated command line at [`CMDLINE_START`].
pub fn write_cmdline(mem: &GuestMemoryMmap, cmdline: &str) -> Result<u64, Error> {
    check_cmdline(cmdline, CMDLINE_MAX_SIZE)?;
    let mut bytes = Vec::with_capacity(cmdline.len() + 1);
    bytes.extend_from_slice(cmdline.as_bytes());
    bytes.push(0);
    write(mem, CMDLINE_START, &bytes)?;
    Ok(CMDLINE_START)
}

/// The flat entry state on the boot GDT: CS = 0x10 (64-bit code when
/// `long`, else 32-bit), DS/ES/SS/FS/GS = 0x18, GDTR/IDTR on the boot
/// tables, interrupts off, all GPRs 0, RSP = top of the boot stack,
/// CR0 = PE|ET (and PG, CR4.PAE, EFER.LME|LMA, CR3 = `cr3` when `long`).
pub fn flat_entry_state(long: bool, cr3: u64, rip: u64) -> CpuState {
    let mut s = CpuState::flat(long, BOOT_CS, BOOT_DS, cr3, rip);
    s.gpr[x86::gpr::RSP] = BOOT_STACK_TOP;
    s.gdtr = DescriptorTable {
        base: BOOT_GDT_START,
        limit: (gdt(long).len() * 8 - 1) as u16,
    };
    s.idtr = DescriptorTable {
        base: BOOT_IDT_START,
        limit: 0,
    };
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use x86::consts::rflags;
    use x86::{CpuMode, SegReg};

    #[test]
    fn entry_states() {
        let s = flat_entry_state(false, 0, 0x100000);
        assert_eq!(s.mode(), CpuMode::Protected32);
        assert_eq!(s.seg(SegReg::Cs).limit, 0xffff_ffff);
        assert_eq!(s.seg(SegReg::Ss).selector, 0x18);
        assert_eq!(s.rflags & rflags::IF, 0);
        let l = flat_entry_state(true, PML4_START, 0x100000);
        assert_eq!(l.mode(), CpuMode::Long64);
        assert_eq!(l.seg(SegReg::Cs).selector, 0x10);
        assert_eq!(l.cr3, PML4_START);
    }

    #[test]
    fn cmdline_checks() {
        assert!(check_cmdline("console=ttyS0", 2048).is_ok());
        assert!(matches!(
            check_cmdline("a\0b", 2048),
            Err(Error::CmdlineNul)
        ));
        let long = "x".repeat(2048);
        assert!(matches!(
            check_cmdline(&long, 2048),
            Err(Error::CmdlineTooLong { max: 2047, .. })
        ));
    }
}
