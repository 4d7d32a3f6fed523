use super::*;
use crate::elf::testimg;
use crate::layout::MIB;
use crate::memory::create_guest_memory;
use vm_memory::{Bytes, GuestAddress};
use x86::consts::{cr0, efer};
use x86::{CpuMode, SegReg};

fn mem(size: u64) -> GuestMemoryMmap {
    create_guest_memory(size, None).unwrap().0
}

#[test]
fn detects_formats() {
    assert_eq!(detect(b""), KernelFormat::Unknown);
    assert_eq!(detect(&[0u8; 100]), KernelFormat::Unknown);
    let e = testimg::build(true, 0, &[(MIB, b"x", 1)]);
    assert_eq!(detect(&e), KernelFormat::Elf64);
    let e = testimg::build(false, 0, &[(MIB, b"x", 1)]);
    assert_eq!(detect(&e), KernelFormat::Elf32);
    let mut bz = vec![0u8; 0x300];
    bz[0x202..0x206].copy_from_slice(b"HdrS");
    bz[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    let f = detect(&bz);
    assert_eq!(f, KernelFormat::BzImage { version: 0x020f });
    assert_eq!(f.describe(), "Linux bzImage (boot protocol 2.15)");
    let mut mb = vec![0u8; 0x2000];
    let off = 0x40;
    let flags = 0x3u32;
    let magic = crate::multiboot::mb1::HEADER_MAGIC;
    mb[off..off + 4].copy_from_slice(&magic.to_le_bytes());
    mb[off + 4..off + 8].copy_from_slice(&flags.to_le_bytes());
    let sum = 0u32.wrapping_sub(magic).wrapping_sub(flags);
    mb[off + 8..off + 12].copy_from_slice(&sum.to_le_bytes());
    assert_eq!(detect(&mb), KernelFormat::Multiboot { version: 1 });
    // A bad checksum is still a (malformed) multiboot kernel, for loading
    // to say what is wrong.
    mb[off + 8] ^= 1;
    assert_eq!(detect(&mb), KernelFormat::Multiboot { version: 1 });
    // Truncated right after the magic: no panic.
    assert_eq!(
        detect(&mb[..off + 6]),
        KernelFormat::Multiboot { version: 1 }
    );
    assert_eq!(detect(&mb[..off + 2]), KernelFormat::Unknown);
}

#[test]
fn refuses_other_formats() {
    let m = mem(4 * MIB);
    let mut bz = vec![0u8; 0x300];
    bz[0x202..0x206].copy_from_slice(b"HdrS");
    bz[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    let e = load_kernel(&m, &bz, "", 4 * MIB).unwrap_err();
    assert!(matches!(e, Error::Unsupported { .. }));
    let msg = e.to_string();
    assert!(msg.contains("Linux bzImage (boot protocol 2.15)"), "{msg}");
    assert!(msg.contains("not yet supported"), "{msg}");
    let e = load_kernel(&m, b"hello", "", 4 * MIB).unwrap_err();
    assert_eq!(e.to_string(), "not an ELF, bzImage or multiboot kernel");
}

#[test]
fn loads_elf32() {
    let m = mem(4 * MIB);
    let img = testimg::build(false, 0x100010, &[(0x100000, &[0xAB; 0x20], 0x1000)]);
    // Dirty the bss first to see it zeroed.
    m.write_slice(&[0xFF; 16], GuestAddress(0x100020)).unwrap();
    let s = load_kernel(&m, &img, "console=ttyS0", 4 * MIB).unwrap();
    assert_eq!(s.mode(), CpuMode::Protected32);
    assert_eq!(s.rip, 0x100010);
    assert_eq!(s.gpr[gpr::RSP], 0x7000);
    assert_eq!(s.gpr[gpr::RDI], 0x20000);
    assert_eq!(s.gpr[gpr::RSI], 4 * MIB);
    assert_eq!(s.seg(SegReg::Cs).selector, 0x10);
    assert_eq!(s.seg(SegReg::Ds).selector, 0x18);
    assert_eq!(s.cr0 & cr0::PG, 0);
    assert_eq!(m.read_obj::<u8>(GuestAddress(0x10001F)).unwrap(), 0xAB);
    assert_eq!(m.read_obj::<u8>(GuestAddress(0x100020)).unwrap(), 0);
    let mut cl = [0u8; 14];
    m.read_slice(&mut cl, GuestAddress(0x20000)).unwrap();
    assert_eq!(&cl, b"console=ttyS0\0");
    // The GDT entry CS points at matches the hidden part.
    let d: u64 = m.read_obj(GuestAddress(0x500 + 0x10)).unwrap();
    assert_eq!(x86::Segment::from_descriptor(0x10, d), *s.seg(SegReg::Cs));
}

#[test]
fn loads_elf64_with_identity_map() {
    let m = mem(8 * MIB);
    let img = testimg::build(true, 0x200000, &[(0x200000, &[0xF4; 4], 4)]);
    let s = load_kernel(&m, &img, "", 8 * MIB).unwrap();
    assert_eq!(s.mode(), CpuMode::Long64);
    assert_eq!(s.rip, 0x200000);
    assert_eq!(s.gpr[gpr::RDI], 0);
    assert_eq!(s.cr3, 0x9000);
    assert_eq!(s.efer, efer::LME | efer::LMA);
    let pml4: u64 = m.read_obj(GuestAddress(0x9000)).unwrap();
    assert_eq!(pml4, 0xA003);
    let pdpt3: u64 = m.read_obj(GuestAddress(0xA000 + 24)).unwrap();
    assert_eq!(pdpt3, 0xE003);
    // Last 2 MiB page below 4 GiB.
    let last: u64 = m.read_obj(GuestAddress(0xB000 + 2047 * 8)).unwrap();
    assert_eq!(last, 0xFFE0_0083);
}

#[test]
fn elf_placement_errors() {
    let m = mem(4 * MIB);
    let outside = testimg::build(true, 0x100000, &[(0x300000, b"x", 0x200000)]);
    let e = load_kernel(&m, &outside, "", 4 * MIB).unwrap_err();
    assert!(
        matches!(e, Error::SegmentOutsideRam { index: 0, .. }),
        "{e}"
    );
    let hole = testimg::build(false, 0x9F000, &[(0x9F000, b"x", 0x2000)]);
    assert!(load_kernel(&m, &hole, "", 4 * MIB).is_err());
    let boot = testimg::build(false, 0x8000, &[(0x8000, b"x", 0x2000)]);
    let e = load_kernel(&m, &boot, "", 4 * MIB).unwrap_err();
    assert!(e.to_string().contains("boot page tables"), "{e}");
    let wrap = testimg::build(true, 0, &[(u64::MAX - 1, b"x", 16)]);
    assert!(load_kernel(&m, &wrap, "", 4 * MIB).is_err());
    let ok = testimg::build(false, MIB, &[(MIB, b"x", 1)]);
    let e = load_kernel(&m, &ok, "a\0b", 4 * MIB).unwrap_err();
    assert!(matches!(e, Error::CmdlineNul));
}

#[test]
fn mutated_headers_never_panic() {
    let m = mem(4 * MIB);
    for is64 in [false, true] {
        let good = testimg::build(is64, MIB, &[(MIB, &[0x90; 32], 0x1000)]);
        let hdr_len = if is64 { 64 + 56 } else { 52 + 32 };
        for i in 0..hdr_len {
            for v in [0x00, 0x7F, 0x80, 0xFF] {
                let mut img = good.clone();
                img[i] = v;
                let _ = load_kernel(&m, &img, "x", 4 * MIB);
            }
        }
    }
}
